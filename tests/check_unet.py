#!/usr/bin/env python3
"""PyTorch parity of abcond's fastMRI U-Net on HDF5 volumes (tests/unet.rs).

usage: check_unet.py RUN_DIR CASES.npz BATCH.npz [--tol T]
       check_unet.py --counts

The reference (tests/abcond_ref/unet.py) is AlgoPerf's U-Net and the
deterministic part of its fastMRI input pipeline written from their
definition, independently of the Rust code, in numpy (its own FFT) reading
the volumes with h5py; the k-space masks are drawn with abcond's documented
generator (abcond_ref.rng: stream 11, the slice's number in file order).
Checks, against an abcond run:
  - BATCH.npz (the inputs and targets abcond made of some slices) equals the
    reference pipeline's, ≤ tol;
  - names and shapes of every snapshot tensor equal AlgoPerf's;
  - at x^K on the minibatch of CASES.npz: loss and whole gradient ≤ tol;
  - every row of landscape.parquet recomputed (abcond_ref/landscape.py);
  - the first training steps replayed with torch.optim.
--counts: the full-size reference's parameter count (7,756,097).
"""

import argparse
import os

import numpy as np
import torch
import abcond

from abcond_ref import unet
from abcond_ref.compare import rel_vec
from abcond_ref.landscape import Failures, grad_case, loader, recompute_rows, replay, snapshots

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("cases", nargs="?")
    ap.add_argument("batch", nargs="?")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--counts", action="store_true")
    a = ap.parse_args()
    if a.counts:
        n = sum(p.numel() for p in unet.UNet().parameters())
        print(f"unet-fastmri params {n}")
        assert n == unet.UNET_PARAMS, n
        print("OK counts")
        return
    torch.set_num_threads(1)
    cfg = abcond.read_manifest(a.run_dir)["config"]
    m, data = cfg["model"], cfg["data"]
    dtype = {"f32": torch.float32, "f64": torch.float64}[m["dtype"]]
    xs, ys = unet.run_slices(data)
    rows = abcond.read_table(os.path.join(a.run_dir, "data.parquet")).column("source_index").to_pylist()
    x_all, y_all = torch.from_numpy(xs[rows]).to(dtype), torch.from_numpy(ys[rows]).to(dtype)
    failures = Failures()
    made = np.load(a.batch)
    idx = made["indices"]
    e_x = rel_vec(x_all[idx].double().numpy(), made["x"].astype(np.float64))
    e_y = rel_vec(y_all[idx].double().numpy(), made["y"].astype(np.float64))
    failures.bound("inputs", e_x, a.tol, "batch")
    failures.bound("targets", e_y, a.tol, "batch")
    print(f"data: {len(rows)} slices made again from the volumes; inputs rel err {e_x:.2e}, targets {e_y:.2e}")

    def build():
        torch.set_default_dtype(dtype)
        net = unet.UNet(m["in_chans"], m["out_chans"], m["channels"], m["pool_layers"], m["dropout"])
        torch.set_default_dtype(torch.float32)
        return net

    ref = build()
    states = snapshots(a.run_dir, ref, dtype, "AlgoPerf's U-Net")
    load = loader(states)
    total = cfg["train"]["steps"]

    def losses(net, idx):
        idx = torch.as_tensor(idx)
        return unet.per_example_l1(net, x_all[idx], y_all[idx])

    load(ref, total)
    e_loss, e_grad = grad_case(ref, losses, a.cases)
    failures.bound("x^K loss", e_loss, a.tol, "cases")
    failures.bound("x^K grad", e_grad, a.tol, "cases")

    land = abcond.read_table(os.path.join(a.run_dir, "landscape.parquet")).to_pylist()
    ref_model = build()
    load(ref_model, total)
    recompute_rows(land, ref, ref_model, load, losses, len(rows), a.tol, failures)
    print(f"landscape: {sum(r['probe'] == 'train' for r in land)} train rows and {len(land)} rows in all recomputed")
    steps_t = abcond.read_table(os.path.join(a.run_dir, "steps.parquet")).to_pylist()
    net = build()
    n = replay(a.run_dir, cfg, total, net, load, losses, steps_t, lambda mdl: list(mdl.named_parameters()), a.tol, failures)
    print(f"replay: {n} steps with torch.optim equal the snapshots")
    failures.finish(f"OK worst relative error {max(e_loss, e_grad):.2e} at x^K; inputs, landscape rows and replay within {a.tol:g}")


if __name__ == "__main__":
    main()
