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
        state = self.snapshot(step)
        missing = set(dict(model.named_parameters())) ^ set(state)
        assert not missing, f"snapshot/model names differ: {missing}"
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(state[n])
        return model


def rel_err(a, b, floor=0.0):
    return abs(a - b) / max(abs(a), abs(b), floor, 1e-300)


def flat(tensors):
    return torch.cat([t.reshape(-1).double() for t in tensors])


def grad_at(model, run, indices):
    """f_i(x) as the f64 mean of per-example losses and ∇f_i(x) (model dtype)."""
    model.zero_grad()
    idx = torch.as_tensor(indices, dtype=torch.long)
    per = model(run.x[idx], run.y[idx])
    (per.sum() / len(indices)).backward()
    return per.double().sum().item() / len(indices), [p.grad.detach().clone() for p in model.parameters()]


def loss_at(model, run, indices):
    idx = torch.as_tensor(indices, dtype=torch.long)
    with torch.no_grad():
        return model(run.x[idx], run.y[idx]).double().sum().item() / len(indices)


def steps_per_epoch(run):
    return run.manifest["training"]["steps_per_epoch"]


__all__ = ["Run", "rel_err", "flat", "grad_at", "loss_at", "math"]
