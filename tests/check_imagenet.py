#!/usr/bin/env python3
"""PyTorch parity of abcond's ImageNet models (tests/imagenet.rs).

usage: check_imagenet.py RUN_DIR CASES.npz [--tol T]
       check_imagenet.py --counts

RUN_DIR: an abcond run (run.yaml, iterates/). CASES.npz (written by the Rust test):
x, y (the minibatch abcond built), step (the snapshot), and per mode M in
{train, batch-stats, running-stats}: M.loss and M.grad.<param> computed by abcond,
and for `train` the running statistics after the forward (M.buffer.<name>).
The reference module (tests/abcond_ref/vision.py) loads the snapshot's
parameters and buffers and recomputes; loss and the whole flattened gradient must
agree to relative error ≤ tol (1e-5). Also checks steps.parquet loss at each
probed step against landscape.parquet's loss_k of the `train` row.
--counts: parameter counts of the full-size references (ResNet-50, ViT-S/16).
"""

import argparse
import copy
import os
import sys

import numpy as np
import torch
import abcond

from abcond_ref.compare import rel_vec
from abcond_ref.runs import read_snapshot
from abcond_ref.vision import ResNet50, ViT, build, num_params

RESNET50_PARAMS = 25_557_032
VIT_S16_PARAMS = 22_122_472


def counts():
    r = num_params(ResNet50(64, 1000))
    v = num_params(ViT(1000, 384, 12, 6, 1536, 16))
    print(f"resnet50 params {r}\nvit-s16 params {v}")
    assert r == RESNET50_PARAMS, r
    assert v == VIT_S16_PARAMS, v
    print("OK counts")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("cases", nargs="?")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--counts", action="store_true")
    a = ap.parse_args()
    if a.counts:
        return counts()
    torch.set_num_threads(1)
    cfg = abcond.read_manifest(a.run_dir)["config"]
    dtype = {"f32": torch.float32, "f64": torch.float64}[cfg["model"]["dtype"]]
    cases = np.load(a.cases)
    x = torch.from_numpy(cases["x"]).to(dtype)
    y = torch.from_numpy(cases["y"]).long()
    step = int(cases["step"])
    classes = len([d for d in os.listdir(cfg["data"]["path"]) if os.path.isdir(os.path.join(cfg["data"]["path"], d))])
    torch.set_default_dtype(dtype)
    base = build(cfg["model"], classes)
    torch.set_default_dtype(torch.float32)
    state, _ = read_snapshot(a.run_dir, step, dtype)
    own = dict(base.state_dict())
    expected = {k for k in own if not k.endswith("num_batches_tracked")}
    assert set(state) == expected, f"snapshot/model names differ: {set(state) ^ expected}"
    own.update(state)
    base.load_state_dict(own)
    worst = 0.0
    modes = ["train", "batch-stats", "running-stats"] if cfg["model"]["kind"] == "resnet50" else ["train", "running-stats"]
    for mode in modes:
        m = copy.deepcopy(base)
        # batch-stats: train-mode normalisation; the running-stat update of the copy is discarded.
        m.train(mode != "running-stats")
        m.zero_grad()
        per = m(x, y)
        loss = per.double().mean().item()
        (per.sum() / len(per)).backward()
        names = [n for n, _ in m.named_parameters()]
        g_torch = np.concatenate([p.grad.detach().double().numpy().ravel() for _, p in m.named_parameters()])
        g_rust = np.concatenate([cases[f"{mode}.grad.{n}"].astype(np.float64).ravel() for n in names])
        e_loss = rel_vec(loss, float(cases[f"{mode}.loss"]))
        e_grad = rel_vec(g_torch, g_rust)
        line = f"{cfg['model']['kind']} {mode}: loss {loss:.6f} rel err {e_loss:.2e}, gradient ({g_torch.size} values, norm {np.linalg.norm(g_torch):.3e}) rel err {e_grad:.2e}"
        if mode == "train":
            bufs = {n: b for n, b in m.named_buffers() if not n.endswith("num_batches_tracked")}
            if bufs:
                e_buf = max(rel_vec(b.numpy(), cases[f"train.buffer.{n}"]) for n, b in bufs.items())
                line += f", running stats after the step rel err {e_buf:.2e}"
                worst = max(worst, e_buf)
        print(line)
        worst = max(worst, e_loss, e_grad)
    # steps.parquet loss of step k == landscape loss_k of its `train` row
    steps = abcond.read_table(os.path.join(a.run_dir, "steps.parquet")).to_pydict()
    land = abcond.read_table(os.path.join(a.run_dir, "landscape.parquet")).to_pydict()
    step_loss = dict(zip(steps["step"], steps["loss"]))
    n = 0
    for k, probe, lk in zip(land["step"], land["probe"], land["loss_k"]):
        if probe == "train":
            e = abs(step_loss[k] - lk) / max(abs(lk), 1e-30)
            assert e <= a.tol, f"step {k}: steps.parquet loss {step_loss[k]} vs landscape loss_k {lk}"
            n += 1
    assert n > 0, "no train rows in landscape.parquet"
    print(f"steps.parquet loss == landscape loss_k on {n} train rows")
    if worst > a.tol:
        print(f"FAIL: worst relative error {worst:.2e} > {a.tol:.0e}")
        sys.exit(1)
    print(f"OK worst relative error {worst:.2e}")


if __name__ == "__main__":
    main()
