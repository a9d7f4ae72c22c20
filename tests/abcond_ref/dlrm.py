"""AlgoPerf's DLRM-small (workload criteo1tb) and a Criteo TSV reader, written
for the tests from their definition (mlcommons/algorithmic-efficiency,
algoperf/workloads/criteo1tb/criteo1tb_pytorch/models.py class DlrmSmall,
criteo1tb_pytorch/workload.py and criteo1tb/input_pipeline.py), independently
of the Rust code. Parameter names are AlgoPerf's state_dict keys:

    embedding_chunk_0..3         [V/4, 128]  the table, split in 4 row blocks
    bot_mlp.{0,2,4}.{weight,bias}            13 -> 512 -> 256 -> 128, ReLU each
    top_mlp.{0,2,4,6,9}.{weight,bias}        506 -> 1024 -> 1024 -> 512 -> 256 -> 1
                                             (top_mlp.8 is the dropout slot)

    model.logits(dense, cat)       -> [B, 1]
    model(dense, cat, label)       -> per-example sigmoid BCE [B]
    per_example_loss(model, dense, cat, label) -> [B]
    read_criteo_tsv(path, limit=None) -> (label [N], dense [N, 13], cat [N, 26])
    read_days(path, limit, dtype) -> the same over a file or a directory of day files
    write_criteo_tsv(path, rows)

Differences from AlgoPerf, all in the input pipeline: AlgoPerf hashes a
categorical string with TensorFlow's to_hash_bucket_fast (FarmHash
Fingerprint64) of `field + str(column)` modulo a per-column raw vocab size,
carries the id as float32 and takes it modulo V in the model. abcond's value
(documented in docs/configs.md) keeps AlgoPerf's string and changes the hash:

    value = fnv1a64(field + str(column)) & (2**63 - 1)    (column 0..25)

an empty field being AlgoPerf's default "00000000"; the model takes the value
modulo V (no per-column modulus, no float32 rounding). Dense features are AlgoPerf's:
log(max(x, 0) + 1), an empty field (or "-1", TF's na_value) counting as 0.
Only torch and numpy are needed."""

import gzip
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_DENSE = 13
NUM_SPARSE = 26
#: AlgoPerf's criteo1tb vocab (32 * 128 * 1024) and criteo1tb_test vocab (32 * 128 * 16).
VOCAB_FULL = 4_194_304
VOCAB_TEST = 65_536

#: MLP parameters at the default dims: bottom 7,168 + 131,328 + 32,896 = 171,392;
#: top 519,168 + 1,049,600 + 524,800 + 131,328 + 257 = 2,225,153.
MLP_PARAMS = 2_396_545
#: criteo1tb: 4,194,304 * 128 = 536,870,912 embedding + MLPs.
DLRM_SMALL_PARAMS = 539_267_457
#: criteo1tb_test: 65,536 * 128 = 8,388,608 embedding + MLPs.
DLRM_SMALL_TEST_PARAMS = 10_785_153

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def param_count(vocab_size, embed_dim=128, num_dense=NUM_DENSE, bottom=(512, 256, 128), top=(1024, 1024, 512, 256, 1), num_sparse=NUM_SPARSE):
    """Parameters of DlrmSmall, by formula (no model built)."""
    n, fan_in = vocab_size * embed_dim, num_dense
    for d in bottom:
        n, fan_in = n + fan_in * d + d, d
    fan_in = interaction_dim(bottom[-1], num_sparse)
    for d in top:
        n, fan_in = n + fan_in * d + d, d
    return n


def interaction_dim(bottom_out, num_sparse=NUM_SPARSE):
    """Width of the top MLP's input: the bottom output and the upper triangle,
    diagonal included, of the (1 + num_sparse)^2 dot products (AlgoPerf
    hard-codes 506 = 128 + 27 * 28 / 2)."""
    k = num_sparse + 1
    return bottom_out + k * (k + 1) // 2


class DotInteract(nn.Module):
    """Stack [bottom output; 26 embeddings] as [B, 27, D], take all dot
    products, keep the upper triangle with the diagonal in row-major order
    ((0,0), (0,1), ..., (0,26), (1,1), ..., (26,26)) and put the bottom output
    in front: [B, D + 378]."""

    def __init__(self, num_sparse=NUM_SPARSE):
        super().__init__()
        k = num_sparse + 1
        rows, cols = zip(*[(i, j) for i in range(k) for j in range(i, k)])
        # plain attributes, as in AlgoPerf: not in the state_dict
        self.rows, self.cols = torch.tensor(rows), torch.tensor(cols)

    def forward(self, dense, sparse):
        stack = torch.cat([dense.unsqueeze(1), sparse], dim=1)
        gram = stack @ stack.transpose(1, 2)
        return torch.cat([dense, gram[:, self.rows, self.cols]], dim=1)


class Dropout(nn.Module):
    """The dropout slot top_mlp.8 (AlgoPerf's CustomDropout): the rate comes
    with each call, active only in training mode; it has no parameters."""

    def forward(self, x, p=0.0):
        return F.dropout(x, p, training=self.training) if p else x


class DlrmSmall(nn.Module):
    """AlgoPerf's DlrmSmall (use_layer_norm=False). Built in float32 in
    AlgoPerf's order of random draws (the 4 chunks, the bottom Linears with
    their default init, the bottom re-init, the top Linears, the top re-init),
    so under the same torch seed on CPU its initial parameters are AlgoPerf's;
    call .double() for a float64 model.

    Init: embedding U[0, 1) * 1/sqrt(V) (embedding_init_multiplier replaces
    1/sqrt(V) when given); bottom weights Glorot uniform
    U(+-sqrt(6 / (fan_in + fan_out))); top weights N(0, sqrt(2 / (fan_in +
    fan_out))); every bias N(0, sqrt(1 / fan_out))."""

    def __init__(self, vocab_size, embed_dim=128, num_dense=NUM_DENSE, bottom=(512, 256, 128), top=(1024, 1024, 512, 256, 1), chunks=4, embedding_init_multiplier=None):
        super().__init__()
        assert vocab_size % chunks == 0, "AlgoPerf requires vocab_size % 4 == 0"
        assert bottom[-1] == embed_dim, "the dot interaction needs bottom[-1] == embed_dim"
        self.vocab_size, self.embed_dim, self.num_dense, self.chunks = vocab_size, embed_dim, num_dense, chunks
        if embedding_init_multiplier is None:
            scale = 1.0 / torch.sqrt(torch.tensor(vocab_size, dtype=torch.float32))
        else:
            scale = embedding_init_multiplier
        for i in range(chunks):
            chunk = torch.empty(vocab_size // chunks, embed_dim).uniform_(0, 1)
            self.register_parameter(f"embedding_chunk_{i}", nn.Parameter(scale * chunk))

        layers, fan_in = [], num_dense
        for d in bottom:
            layers += [nn.Linear(fan_in, d), nn.ReLU()]
            fan_in = d
        self.bot_mlp = nn.Sequential(*layers)
        for m in self.bot_mlp:
            if isinstance(m, nn.Linear):
                limit = math.sqrt(6.0 / (m.in_features + m.out_features))
                nn.init.uniform_(m.weight, -limit, limit)
                nn.init.normal_(m.bias, 0.0, math.sqrt(1.0 / m.out_features))

        self.dot_interact = DotInteract(NUM_SPARSE)
        layers, fan_in = [], interaction_dim(bottom[-1])
        for i, d in enumerate(top):
            layers.append(nn.Linear(fan_in, d))
            if i < len(top) - 1:
                layers.append(nn.ReLU())
            if i == len(top) - 2:
                layers.append(Dropout())
            fan_in = d
        self.top_mlp = nn.Sequential(*layers)
        for m in self.top_mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.in_features + m.out_features)))
                nn.init.normal_(m.bias, 0.0, math.sqrt(1.0 / m.out_features))

    def table(self):
        """The full [V, D] table: the chunks stacked in order, so global row r
        is row r % (V/4) of embedding_chunk_{r // (V/4)}."""
        return torch.cat([getattr(self, f"embedding_chunk_{i}") for i in range(self.chunks)], dim=0)

    def logits(self, dense, cat, dropout_rate=0.0):
        """dense [B, 13] float (already log-transformed), cat [B, 26] integer
        ids -> logits [B, 1]. Ids are taken modulo V, as AlgoPerf does."""
        b = dense.shape[0]
        bottom = self.bot_mlp(dense)
        emb = self.table()[(cat.long() % self.vocab_size).reshape(-1)].reshape(b, -1, self.embed_dim)
        x = self.dot_interact(bottom, emb)
        for m in self.top_mlp:
            x = m(x, dropout_rate) if isinstance(m, Dropout) else m(x)
        return x

    def logits_packed(self, x, dropout_rate=0.0):
        """AlgoPerf's own input: x [B, 39] float, the 13 dense features then
        the 26 ids as floats (cast to int32 in the model)."""
        return self.logits(x[:, : self.num_dense], x[:, self.num_dense :].to(torch.int32), dropout_rate)

    def forward(self, dense, cat, label):
        return per_example_loss(self, dense, cat, label)


def sigmoid_bce(logits, label):
    """AlgoPerf's per-example loss: -(y log sigmoid(z) + (1 - y) log sigmoid(-z)),
    no label smoothing (the workload drops it)."""
    z, y = logits.reshape(-1), label.reshape(-1).to(logits.dtype)
    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))


def per_example_loss(model, dense, cat, label, dropout_rate=0.0):
    """Per-example sigmoid binary cross-entropy of DlrmSmall, shape [B].
    AlgoPerf's loss_fn sums these (times the 0/1 padding weights in eval) and
    divides by the number of valid examples."""
    return sigmoid_bce(model.logits(dense, cat, dropout_rate), label)


def fnv1a64(data):
    """64-bit FNV-1a of bytes (a str is encoded as ASCII/UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = FNV64_OFFSET
    for b in data:
        h = ((h ^ b) * FNV64_PRIME) & _MASK64
    return h


def cat_id(field, column):
    """The categorical value of a field as written (empty: "00000000") in
    column 0..25: the low 63 bits of FNV-1a 64 of the field and the column."""
    return fnv1a64((field or "00000000") + str(column)) & ((1 << 63) - 1)


def dense_value(field):
    """AlgoPerf's transform of one integer field: log(max(x, 0) + 1); an
    empty field, or "-1" (TF's na_value), is 0 before the log."""
    x = float(field) if field not in ("", "-1") else 0.0
    return math.log1p(max(x, 0.0))


def _open(path, mode):
    return gzip.open(path, mode + "t") if str(path).endswith(".gz") else open(path, mode, newline="\n")


def read_criteo_tsv(path, limit=None, dtype=torch.float32):
    """Criteo TSV lines `label \\t I1..I13 \\t C1..C26` (40 tab-separated
    fields, any of them possibly empty; gzipped when the name ends in .gz) ->
    (label [N] dtype, dense [N, 13] dtype, cat [N, 26] int64). The transform is
    computed in float64 and then cast (AlgoPerf computes it in float32). An
    empty label is 0, like AlgoPerf's record default. Only the line ending
    ('\\n' or '\\r\\n') is stripped; blank lines are skipped."""
    labels, dense, cat, memo = [], [], [], {}
    with _open(path, "r") as f:
        for line in f:
            if limit is not None and len(labels) >= limit:
                break
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 1 + NUM_DENSE + NUM_SPARSE:
                raise ValueError(f"{path}: a line with {len(fields)} fields, not {1 + NUM_DENSE + NUM_SPARSE}")
            labels.append(float(fields[0]) if fields[0] else 0.0)
            dense.append([dense_value(v) for v in fields[1 : 1 + NUM_DENSE]])
            ids = []
            for j, v in enumerate(fields[1 + NUM_DENSE :]):
                if (v, j) not in memo:
                    memo[v, j] = cat_id(v, j)
                ids.append(memo[v, j])
            cat.append(ids)
    n = len(labels)
    return (
        torch.tensor(labels, dtype=torch.float64).to(dtype),
        torch.tensor(np.array(dense, dtype=np.float64).reshape(n, NUM_DENSE)).to(dtype),
        torch.tensor(np.array(cat, dtype=np.int64).reshape(n, NUM_SPARSE)),
    )


def write_criteo_tsv(path, rows):
    """Write fixture rows (label, ints, cats): label 0/1 (int or float), 13
    ints (None for an empty field), 26 hex strings (None or "" for empty).
    One line each, '\\n'-terminated; gzipped when the name ends in .gz."""
    with _open(path, "w") as f:
        for label, ints, cats in rows:
            assert len(ints) == NUM_DENSE and len(cats) == NUM_SPARSE
            lab = str(int(label)) if float(label).is_integer() else repr(float(label))
            fields = [lab] + ["" if v is None else str(int(v)) for v in ints] + ["" if c is None else str(c) for c in cats]
            f.write("\t".join(fields) + "\n")


def random_rows(n, seed=0, missing=0.1):
    """n synthetic Criteo-like rows for fixtures: labels 0/1, ints from -3 up
    (heavy tailed), 8-digit lowercase hex strings from small per-column pools,
    about `missing` of the fields empty."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ints = [None if rng.random() < missing else int(rng.geometric(0.05)) - 4 for _ in range(NUM_DENSE)]
        cats = ["" if rng.random() < missing else f"{int(rng.integers(0, 50 + 10 * j)) * 2654435761 % 2**32:08x}" for j in range(NUM_SPARSE)]
        rows.append((int(rng.random() < 0.25), ints, cats))
    return rows


def read_days(path, limit=None, dtype=torch.float32):
    """read_criteo_tsv over `path`: a file, or every file of a directory not
    starting with "." in name order, stopping after `limit` lines."""
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if not f.startswith("."))
    parts, left = [], limit
    for f in files:
        if left is not None and left <= 0:
            break
        parts.append(read_criteo_tsv(f, limit=left, dtype=dtype))
        if left is not None:
            left -= len(parts[-1][0])
    return [torch.cat([p[i] for p in parts]) for i in range(3)]
