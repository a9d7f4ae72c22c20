"""An abcond run directory read independently of the Rust code, from the layout
documented in docs/schemas.md:

    run = Run(path)           # run.yaml, data.parquet and the dataset files
    model = run.model()       # the reference module (models.py), abcond's parameter names
    run.load(model, step)     # x^k from iterates/step=<k>/part-0.parquet
    losses = model(x, y)      # per-example losses f_i, shape [B]

read_snapshot(run_dir, step, dtype): one snapshot's tensors (and rows per name);
read_idx / find / read_cifar: the dataset files; grad_at / loss_at: f_i and
∇f_i on a run's examples.
"""

import gzip
import os

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from .models import build
from .rng import AUGMENT_STREAM, Xoshiro, derive

DTYPES = {"f32": torch.float32, "f64": torch.float64}
NORM = {"fashion-mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}
CIFAR_NORM = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def read_cifar(dirname, kind):
    """(labels, images uint8 [N, 3, 32, 32]) of the training files."""
    files = ["train.bin"] if kind == "cifar100" else [f"data_batch_{i}.bin" for i in range(1, 6)]
    head = 2 if kind == "cifar100" else 1
    raw = np.concatenate([np.fromfile(os.path.join(dirname, f), dtype=np.uint8) for f in files])
    rec = raw.reshape(-1, head + 3072)
    return rec[:, head - 1].astype(np.int64), rec[:, head:].reshape(-1, 3, 32, 32)


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(dirname, stem):
    for name in (stem, stem.replace("-idx", ".idx")):
        for cand in (name, name + ".gz"):
            p = os.path.join(dirname, cand)
            if os.path.exists(p):
                return p
    raise FileNotFoundError(f"{stem} in {dirname}")


def read_snapshot(run_dir, step, dtype):
    """({name: tensor}, {name: rows}) of iterates/step=<step>/part-0.parquet:
    the tensors in `dtype`, read by the Python companion (python/abcond, which
    verifies every checksum), and the number of chunk rows per name."""
    import abcond

    path = os.path.join(run_dir, "iterates", f"step={step}", "part-0.parquet")
    tensors, _, _ = abcond.read_tensors(path)
    rows = {}
    for n in pq.read_table(path, columns=["name"]).column("name").to_pylist():
        rows[n] = rows.get(n, 0) + 1
    state = {n: torch.from_numpy(v.astype(np.float64)).to(dtype) for n, v in tensors.items()}
    return state, rows


class Run:
    def __init__(self, path):
        self.path = path
        import abcond

        # run.yaml and data.parquet through the companion: checksums verified.
        self.manifest = abcond.read_manifest(path)
        self.config = self.manifest["config"]
        self.dtype = DTYPES[self.config["model"]["dtype"]]
        self._load_data()

    def _load_data(self):
        import abcond

        table = abcond.read_table(os.path.join(self.path, "data.parquet"))
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        data = self.config["data"]
        kind = data["dataset"]
        src = table.column("source_index").to_numpy()
        if kind in ("fashion-mnist", "mnist"):
            d = meta["abcond.source_dir"]
            images = read_idx(find(d, "train-images-idx3-ubyte"))
            labels = read_idx(find(d, "train-labels-idx1-ubyte")).astype(np.int64)
            x = images[src].astype(np.float64)[:, None, :, :] / 255.0
            if data.get("normalize", "standard") == "standard":
                mean, std = NORM[kind]
                x = (x - mean) / std
            y = labels[src]
            if data.get("classes"):
                # relabel independently, then check abcond's mapping
                y = np.array([data["classes"].index(int(v)) for v in y], dtype=np.int64)
            assert (y == table.column("label").to_numpy()).all(), "data.parquet labels disagree with the IDX files"
            self.x = torch.from_numpy(x).to(self.dtype)
            self.y = torch.from_numpy(y)
            self.classes = len(data["classes"]) if data.get("classes") else 10
        elif kind in ("cifar10", "cifar100"):
            labels, images = read_cifar(meta["abcond.source_dir"], kind)
            x = images[src].astype(np.float64) / 255.0
            if data.get("normalize", "standard") == "standard":
                mean, std = (np.array(v).reshape(1, 3, 1, 1) for v in CIFAR_NORM[kind])
                x = (x - mean) / std
            self.pad_fill = -np.array(CIFAR_NORM[kind][0]) / np.array(CIFAR_NORM[kind][1])
            y = labels[src]
            if data.get("classes"):
                y = np.array([data["classes"].index(int(v)) for v in y], dtype=np.int64)
            assert (y == table.column("label").to_numpy()).all(), "data.parquet labels disagree with the CIFAR files"
            self.x = torch.from_numpy(x).to(self.dtype)
            self.y = torch.from_numpy(y)
            self.classes = len(data["classes"]) if data.get("classes") else (100 if kind == "cifar100" else 10)
        elif kind == "halfspace":
            feats = np.stack(table.column("features").to_numpy(zero_copy_only=False))
            self.x = torch.from_numpy(feats).to(self.dtype)
            self.y = torch.from_numpy(table.column("label").to_numpy().copy())
            self.classes = 2
        elif kind == "matrix-factorisation":
            feats = np.stack(table.column("features").to_numpy(zero_copy_only=False))
            self.x = torch.from_numpy(feats.astype(np.int64))
            self.y = torch.from_numpy(table.column("target").to_numpy().copy()).to(self.dtype)
            self.rows, self.cols = data["rows"], data["cols"]
        else:
            raise ValueError(kind)

    def model(self, seed=None):
        """The model; with `seed`, initialised as torch.manual_seed(seed) would."""
        if seed is not None:
            torch.manual_seed(seed)
        old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            shape = tuple(self.x.shape[1:])
            return build(self.config["model"], shape, getattr(self, "classes", None), getattr(self, "rows", None), getattr(self, "cols", None))
        finally:
            torch.set_default_dtype(old)

    def snapshot(self, step):
        """{name: tensor} of iterates/step=<step>/part-0.parquet, chunks joined."""
        return read_snapshot(self.path, step, self.dtype)[0]

    def load(self, model, step):
        """x^k into the parameters, and BatchNorm running statistics into the buffers."""
        state = self.snapshot(step)
        tensors = dict(model.named_parameters())
        tensors.update((n, b) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
        missing = set(tensors) ^ set(state)
        assert not missing, f"snapshot/model names differ: {missing}"
        with torch.no_grad():
            for n, p in tensors.items():
                p.copy_(state[n])
        return model

    def batch_x(self, indices, step=None):
        """Inputs of examples `indices`; with `step`, augmented as training step
        `step` saw them (data.augment), independently of abcond's code."""
        x = self.x[torch.as_tensor(indices, dtype=torch.long)]
        if step is None or not self.config["data"].get("augment"):
            return x
        assert self.config["data"]["augment"] == "crop-flip"
        fill = torch.tensor(self.pad_fill, dtype=x.dtype).view(1, 3, 1, 1)
        padded = fill.expand(x.shape[0], 3, 40, 40).clone()
        padded[:, :, 4:36, 4:36] = x
        out = []
        for row, i in enumerate(indices):
            r = Xoshiro(derive(self.config["seed"], [AUGMENT_STREAM, step, int(i)]))
            top, left, flip = r.below(9), r.below(9), r.below(2) == 1
            crop = padded[row, :, top : top + 32, left : left + 32]
            out.append(crop.flip(2) if flip else crop)
        return torch.stack(out)


def grad_at(model, run, indices, step=None):
    """f_i(x) as the f64 mean of per-example losses and ∇f_i(x) (model dtype);
    `step`: the examples augmented as that training step saw them."""
    model.zero_grad()
    idx = torch.as_tensor(indices, dtype=torch.long)
    per = model(run.batch_x(indices, step), run.y[idx])
    (per.sum() / len(indices)).backward()
    return per.double().sum().item() / len(indices), [p.grad.detach().clone() for p in model.parameters()]


def loss_at(model, run, indices, step=None):
    idx = torch.as_tensor(indices, dtype=torch.long)
    with torch.no_grad():
        return model(run.batch_x(indices, step), run.y[idx]).double().sum().item() / len(indices)


def steps_per_epoch(run):
    return run.manifest["training"]["steps_per_epoch"]
