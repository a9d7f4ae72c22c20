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
import json
import os
import struct
import sys

import numpy as np
import torch
import abcond

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abcond_ref.compare import rel_err  # noqa: E402
from abcond_ref.optim import TORCH_OPTIM, torch_optimizer, torch_scheduler  # noqa: E402
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
    xK = [p.detach().clone() for p in ref.parameters()]
    train_mode = batchnorm and policy == "batch-stats"

    def per_example(m, idx):
        m.train(train_mode)
        return m(*[t[idx] for t in data])

    def saved(m):
        return [b.clone() for b in m.abcond_buffers()]

    def restore(m, bufs):
        """After the backward pass (autograd saved the running statistics)."""
        with torch.no_grad():
            for b, s in zip(m.abcond_buffers(), bufs):
                b.copy_(s)

    failures, worst, current = [], {}, None
    n = data[0].shape[0]
    for r in land_table.to_pylist():
        k = r["step"]
        if current != k:
            load(model, k)
            current = k
        where = f"step={k} probe={r['probe']}"
        idx = torch.as_tensor(r["batch_indices"] if r["batch_indices"] is not None else list(range(n)), dtype=torch.long)
        model.zero_grad()
        before = saved(model)
        per = per_example(model, idx)
        (per.sum() / len(idx)).backward()
        restore(model, before)
        loss_k = per.double().sum().item() / len(idx)
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
        before = saved(ref)
        with torch.no_grad():
            loss_ref = per_example(ref, idx).double().sum().item() / len(idx)
        restore(ref, before)
        d = torch.cat([(p.detach() - q).reshape(-1) for p, q in zip(model.parameters(), xK)]).double()
        inner, gn, dist = torch.dot(g, d).item(), g.norm().item(), d.norm().item()
        got = {"loss_k": loss_k, "loss_ref": loss_ref, "inner": inner, "grad_norm": gn, "dist": dist}
        if dist > 0:
            got["cos"] = inner / (gn * dist)
        for what, theirs in got.items():
            floor = gn * dist if what == "inner" else 0.0
            e = rel_err(r[what], theirs, floor)
            if e > worst.get(what, (-1,))[0]:
                worst[what] = (e, where)
            if not e <= tol:
                failures.append(f"{what} at {where}: abcond {r[what]!r} vs PyTorch {theirs!r} (rel err {e:.3e})")
        if r["probe"] == "train" and (policy == "batch-stats" or not batchnorm):
            e = rel_err(steps[k]["loss"], r["loss_k"])
            if not e <= tol:
                failures.append(f"steps.loss at {k}: {steps[k]['loss']!r} vs probe loss_k {r['loss_k']!r}")
    # Replay the first steps with torch.optim from x^0 on the stored
    # minibatches, as far as snapshots are consecutive (train mode: BatchNorm
    # on batch statistics, running statistics updated, as abcond trains).
    snaps = sorted(int(e.split("=")[1]) for e in os.listdir(os.path.join(args.run_dir, "iterates")))
    m = 0
    while m + 1 in snaps and m + 1 < K and cfg["optim"]["name"] in TORCH_OPTIM:
        m += 1
    replay = module()
    load(replay, 0)
    opt = torch_optimizer(replay.parameters(), cfg["optim"])
    sched = torch_scheduler(opt, cfg["schedule"], cfg["optim"]["lr"], K)
    replay_tol = 1e-10 if dtype == torch.float64 else 1e-4
    for k in range(m):
        idx = torch.as_tensor(steps[k]["batch_indices"])
        opt.zero_grad()
        replay.train(True)
        loss = replay(*[t[idx] for t in data]).mean()
        e = rel_err(steps[k]["loss"], loss.item())
        if not e <= replay_tol:
            failures.append(f"replay loss at step {k}: abcond {steps[k]['loss']!r} vs torch.optim {loss.item()!r}")
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        nxt, _ = read_snapshot(args.run_dir, k + 1, dtype)
        bufs = dict(zip((n[len(prefix):] for n in names), replay.abcond_buffers()))
        tensors = [(n[len(prefix):], p) for n, p in replay.named_parameters()] + [(n, b) for n, b in bufs.items() if n in nxt]
        for name, p in tensors:
            err = (p.detach().double() - nxt[name].double()).abs().max().item()
            scale = max(nxt[name].double().abs().max().item(), 1.0)
            if not err / scale <= replay_tol:
                failures.append(f"x^{k + 1} {name} vs torch.optim replay: rel err {err / scale:.2e}")
    print(f"replayed {m} steps with torch.optim (tolerance {replay_tol:g})")
    for what, (e, where) in sorted(worst.items()):
        print(f"{what:10s} worst rel err {e:.2e} at {where}")
    if failures:
        print("\n".join(failures[:20]))
        sys.exit(1)
    print(f"ok: {land_table.num_rows} rows agree with PyTorch (tol {tol:g}, policy {policy}, train mode {train_mode})")


if __name__ == "__main__":
    main()
