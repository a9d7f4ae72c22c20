#!/usr/bin/env python3
"""PyTorch check of an abcond run of a TorchScript model (`model.kind: torchscript`).

Loads the run's module with torch.jit.load (the file run.yaml names), and for
every row of landscape.parquet loads x^k and x^K from the iterate files into
it (parameters and the buffers abcond_info() names, less its prefix) and
recomputes loss_k, loss_ref, inner, grad_norm, dist and cos on the row's
minibatch with autograd, in the mode the probe measures in: eval, or for a
module with BatchNorm under `probe.batchnorm: batch-stats` train mode with the
buffers restored afterwards. Data: a `tensors` file (safetensors parsed here
by hand, or .npz) or the run's native data set (tests/abcond_ref). Also checks
that steps.parquet's loss at each probed step equals loss_k of its train row.

usage: check_torchscript.py RUN_DIR [--tol T]      exit status 1 on any disagreement
"""

import argparse
import contextlib
import json
import os
import struct
import sys

import numpy as np
import torch
import abcond

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abcond_ref.landscape import Failures, recompute_rows, replay  # noqa: E402
from abcond_ref.runs import Run, read_snapshot  # noqa: E402

NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(raw[8 + n + b : 8 + n + e], dtype=NP[h["dtype"]]).reshape(h["shape"]).copy())
    return out, meta.get("abcond.inputs", "").split(",")


def data_tensors(run_dir, cfg, dtype):
    d = cfg["data"]
    if d["dataset"] != "tensors":
        run = Run(run_dir)
        return [run.x.to(dtype), run.y]
    path = d["path"]
    if path.endswith(".npz"):
        z = np.load(path)
        tensors = {k: torch.from_numpy(z[k]) for k in z.files}
        order = list(z.files)
    else:
        tensors, order = read_safetensors(path)
    order = d.get("inputs") or order
    out = [tensors[n] for n in order]
    return [t.to(dtype) if t.is_floating_point() else t for t in out]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--tol", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = abcond.read_manifest(args.run_dir)
    cfg = manifest["config"]
    assert cfg["model"]["kind"] == "torchscript", cfg["model"]
    dtype = torch.float64 if cfg["model"].get("dtype") == "f64" else torch.float32
    tol = args.tol if args.tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    K = manifest["training"]["total_steps"]

    def module():
        m = torch.jit.load(cfg["model"]["path"])
        m.to(dtype)
        return m

    model, ref = module(), module()
    info = model.abcond_info()
    prefix = info["prefix"]
    names = [n for n in info["buffers"].split(",") if n]
    batchnorm = info["batchnorm"] == "true"

    def load(m, step):
        state, _ = read_snapshot(args.run_dir, step, dtype)
        params = {n[len(prefix):]: p for n, p in m.named_parameters()}
        bufs = dict(zip((n[len(prefix):] for n in names), m.abcond_buffers()))
        assert set(params) <= set(state) <= set(params) | set(bufs), (set(params), set(bufs), set(state))
        with torch.no_grad():
            for n, p in list(params.items()) + list(bufs.items()):
                if n in state:
                    p.copy_(state[n].to(p.dtype))

    data = data_tensors(args.run_dir, cfg, dtype)
    land_table = abcond.read_table(os.path.join(args.run_dir, "landscape.parquet"))
    policy = land_table.schema.metadata[b"abcond.batchnorm"].decode()
    steps = abcond.read_table(os.path.join(args.run_dir, "steps.parquet")).to_pylist()
    load(ref, K)
    train_mode = batchnorm and policy == "batch-stats"

    def per_example(m, idx):
        m.train(train_mode)
        return m(*[t[idx] for t in data])

    @contextlib.contextmanager
    def keep(m):
        """Restores the buffers after the pass (and its backward: autograd
        saved the running statistics)."""
        saved = [b.clone() for b in m.abcond_buffers()]
        yield
        with torch.no_grad():
            for b, v in zip(m.abcond_buffers(), saved):
                b.copy_(v)

    failures = Failures()
    land = land_table.to_pylist()
    recompute_rows(land, model, ref, load, per_example, data[0].shape[0], tol, failures, keep)
    if policy == "batch-stats" or not batchnorm:
        for r in land:
            if r["probe"] == "train":
                failures.check("steps.loss", steps[r["step"]]["loss"], r["loss_k"], tol, f"step {r['step']}", reference="probe loss_k")
    # Replay the first steps with torch.optim from x^0 on the stored
    # minibatches (train mode: BatchNorm on batch statistics, running
    # statistics updated, as abcond trains); the buffers the snapshots hold
    # are compared too.
    stored = set(read_snapshot(args.run_dir, 0, dtype)[0])

    def tensors(m):
        bufs = zip((n[len(prefix):] for n in names), m.abcond_buffers())
        return [(n[len(prefix):], p) for n, p in m.named_parameters()] + [(n, b) for n, b in bufs if n in stored]

    def train_example(m, idx):
        m.train(True)
        return m(*[t[idx] for t in data])

    replay_tol = 1e-10 if dtype == torch.float64 else 1e-4
    m = replay(args.run_dir, cfg, K, module(), load, train_example, steps, tensors, replay_tol, failures)
    print(f"replayed {m} steps with torch.optim (tolerance {replay_tol:g})")
    failures.finish(f"ok: {land_table.num_rows} rows agree with PyTorch (tol {tol:g}, policy {policy}, train mode {train_mode})")


if __name__ == "__main__":
    main()
