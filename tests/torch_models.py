"""PyTorch reference implementations of abcond's models and data, written
independently of the Rust code from the model definitions in the paper and the
layout documented in README.md (Schemas). Used by the parity tests.

Reading an abcond run directory:
    run = Run(path)           # run.yaml, data, snapshots
    model = run.model()       # torch.nn.Module with abcond's parameter names
    run.load(model, step)     # x^k from iterates/step=<k>/part-0.parquet
    losses = model(x, y)      # per-example losses f_i, shape [B]
"""

import gzip
import math
import os

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

DTYPES = {"f32": torch.float32, "f64": torch.float64}
NORM = {"fashion-mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}


class MLP(torch.nn.Module):
    """Paper §5.1: Linear(d, W) → ReLU → Linear(W, W) → ReLU → Linear(W, C), cross-entropy."""

    def __init__(self, d, width, classes):
        super().__init__()
        self.fc1 = torch.nn.Linear(d, width)
        self.fc2 = torch.nn.Linear(width, width)
        self.fc3 = torch.nn.Linear(width, classes)

    def forward(self, x, y):
        h = torch.relu(self.fc1(x.flatten(1)))
        h = torch.relu(self.fc2(h))
        return torch.nn.functional.cross_entropy(self.fc3(h), y, reduction="none")


class TwoLayer(torch.nn.Module):
    """Paper Example 5: log(1 + exp(−y v·relu(W x))), y in {−1, +1}."""

    def __init__(self, d, width):
        super().__init__()
        self.hidden = torch.nn.Linear(d, width, bias=False)
        self.output = torch.nn.Linear(width, 1, bias=False)

    def forward(self, x, y):
        out = self.output(torch.relu(self.hidden(x.flatten(1)))).squeeze(1)
        b = 2.0 * y.to(out.dtype) - 1.0
        return torch.nn.functional.softplus(-b * out)


class Halfspace(torch.nn.Module):
    """sigmoid(−b x·a) + (λ/2)||x||²."""

    def __init__(self, d, lam, init_std):
        super().__init__()
        self.lam = lam
        self.weight = torch.nn.Parameter(torch.randn(d) * init_std)

    def forward(self, a, y):
        b = 2.0 * y.to(self.weight.dtype) - 1.0
        return torch.sigmoid(-b * (a @ self.weight)) + self.lam / 2 * (self.weight**2).sum()


class MatrixFactorisation(torch.nn.Module):
    """½ (X_ij − w_i·s_j)² with W = row_factors (k × n), S = col_factors (k × m)."""

    def __init__(self, rows, cols, rank, init_std):
        super().__init__()
        self.row_factors = torch.nn.Parameter(torch.randn(rank, rows) * init_std)
        self.col_factors = torch.nn.Parameter(torch.randn(rank, cols) * init_std)

    def forward(self, ij, target):
        w = self.row_factors[:, ij[:, 0]]
        s = self.col_factors[:, ij[:, 1]]
        return 0.5 * (target - (w * s).sum(0)) ** 2


# --- CIFAR vision models ---
# Written from the layouts in the paper and the references cited in src/model/*.rs,
# with stock torch.nn modules (default initialisation). Parameter names are the
# state_dict names abcond uses.
CIFAR_NORM = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
BN_POLICY = "batch-stats"  # how BatchNorm measures: "train", "batch-stats", "running-stats"


class CNN(torch.nn.Module):
    """Paper §5.2: conv(C→32, 5×5) → maxpool 2 → ReLU → conv(32→W, 5×5) → maxpool 2 → ReLU → Linear."""

    def __init__(self, shape, width, classes):
        super().__init__()
        c, h, w = shape
        side = lambda s: ((s - 4) // 2 - 4) // 2  # noqa: E731
        self.conv1 = torch.nn.Conv2d(c, 32, 5)
        self.conv2 = torch.nn.Conv2d(32, width, 5)
        self.fc = torch.nn.Linear(width * side(h) * side(w), classes)

    def forward(self, x, y):
        h = torch.relu(torch.nn.functional.max_pool2d(self.conv1(x), 2))
        h = torch.relu(torch.nn.functional.max_pool2d(self.conv2(h), 2))
        return torch.nn.functional.cross_entropy(self.fc(h.flatten(1)), y, reduction="none")


def conv_block(c_in, c_out, pool=False):
    layers = [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out), torch.nn.ReLU()]
    if pool:
        layers.append(torch.nn.MaxPool2d(2))
    return torch.nn.Sequential(*layers)


class ResNet9(torch.nn.Module):
    """The 'ResNet9 on CIFAR-100' notebook's model (Myrtle/DAWNBench layout), no dropout."""

    def __init__(self, c, classes):
        super().__init__()
        self.conv1 = conv_block(c, 64)
        self.conv2 = conv_block(64, 128, pool=True)
        self.res1 = torch.nn.Sequential(conv_block(128, 128), conv_block(128, 128))
        self.conv3 = conv_block(128, 256, pool=True)
        self.conv4 = conv_block(256, 512, pool=True)
        self.res2 = torch.nn.Sequential(conv_block(512, 512), conv_block(512, 512))
        self.classifier = torch.nn.Sequential(torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(512, classes))

    def forward(self, x, y):
        with bn_policy(self):
            out = self.conv2(self.conv1(x))
            out = self.res1(out) + out
            out = self.conv4(self.conv3(out))
            out = self.res2(out) + out
            return torch.nn.functional.cross_entropy(self.classifier(out), y, reduction="none")


class BasicBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False), torch.nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetCifar(torch.nn.Module):
    """torchvision-named ResNet with a 3×3 stride-1 stem and no max-pool (CIFAR form)."""

    def __init__(self, layers, c, classes):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, 64, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        c_in = 64
        for i, n in enumerate(layers):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(c_in, 64 << i, 2 if i > 0 and b == 0 else 1))
                c_in = 64 << i
            setattr(self, f"layer{i + 1}", torch.nn.Sequential(*blocks))
        self.fc = torch.nn.Linear(512, classes)

    def forward(self, x, y):
        with bn_policy(self):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
            h = torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1)
            return torch.nn.functional.cross_entropy(self.fc(h), y, reduction="none")


class bn_policy:
    """Sets the BatchNorm layers of `model` per BN_POLICY for one forward pass:
    "train": train() (batch stats, running stats updated); "batch-stats": batch
    stats with the running stats left as they are; "running-stats": eval()."""

    def __init__(self, model):
        self.bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def __enter__(self):
        self.saved = [(m.training, m.momentum) for m in self.bns]
        for m in self.bns:
            m.train(BN_POLICY != "running-stats")
            if BN_POLICY == "batch-stats":
                m.momentum = 0.0  # running ← 1·running + 0·batch: unchanged

    def __exit__(self, *exc):
        for m, (t, mom) in zip(self.bns, self.saved):
            m.train(t)
            m.momentum = mom


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


class Run:
    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "run.yaml")) as f:
            self.manifest = yaml.safe_load(f)
        self.config = self.manifest["config"]
        self.dtype = DTYPES[self.config["model"]["dtype"]]
        self._load_data()

    def _load_data(self):
        table = pq.read_table(os.path.join(self.path, "data.parquet"))
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
            m = self.config["model"]
            d = int(np.prod(self.x.shape[1:]))
            if m["kind"] == "mlp":
                return MLP(d, m["width"], self.classes)
            if m["kind"] == "two-layer-relu":
                return TwoLayer(d, m["width"])
            if m["kind"] == "cnn":
                return CNN(tuple(self.x.shape[1:]), m["width"], self.classes)
            if m["kind"] == "resnet9":
                return ResNet9(self.x.shape[1], self.classes)
            if m["kind"] in ("resnet18", "resnet34"):
                layers = [2, 2, 2, 2] if m["kind"] == "resnet18" else [3, 4, 6, 3]
                return ResNetCifar(layers, self.x.shape[1], self.classes)
            if m["kind"] == "halfspace":
                return Halfspace(d, m["lambda"], m["init_std"])
            if m["kind"] == "matrix-factorisation":
                return MatrixFactorisation(self.rows, self.cols, m["rank"], m["init_std"])
            raise ValueError(m["kind"])
        finally:
            torch.set_default_dtype(old)

    def snapshot(self, step):
        """{name: tensor} of iterates/step=<step>/part-0.parquet, chunks joined."""
        t = pq.read_table(os.path.join(self.path, "iterates", f"step={step}", "part-0.parquet"))
        out = {}
        rows = t.to_pylist()
        for r in sorted(rows, key=lambda r: (r["name"], r["chunk"])):
            out.setdefault(r["name"], (r["shape"], []))[1].append(np.asarray(r["values"]))
        return {
            n: torch.from_numpy(np.concatenate(parts).astype(np.float64)).to(self.dtype).reshape(shape)
            for n, (shape, parts) in out.items()
        }

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


# The portable generator of src/util/rng.rs (SplitMix64-seeded xoshiro256**,
# Lemire's bounded integers), reimplemented for the augmentation draws.
M64 = (1 << 64) - 1
AUGMENT_STREAM = 9


def _splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def derive(seed, tags):
    _, out = _splitmix(seed)
    for t in tags:
        _, out = _splitmix(out ^ ((t * 0xD6E8FEB86659FD93) & M64))
    return out


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro:
    def __init__(self, seed):
        st, self.s = seed, []
        for _ in range(4):
            st, v = _splitmix(st)
            self.s.append(v)

    def next(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, n):
        while True:
            m = self.next() * n
            if (m & M64) >= ((1 << 64) - n) % n:
                return m >> 64


def rel_err(a, b, floor=0.0):
    return abs(a - b) / max(abs(a), abs(b), floor, 1e-300)


def rel_vec(a, b):
    """‖a − b‖ / max(‖a‖, ‖b‖) of two arrays of any shape, in f64."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def flat(tensors):
    return torch.cat([t.reshape(-1).double() for t in tensors])


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


__all__ = ["Run", "rel_err", "flat", "grad_at", "loss_at", "math", "Xoshiro", "derive"]
