#!/usr/bin/env python3
"""PyTorch parity check of an abcond run directory.

Rebuilds the run's model in PyTorch (tests/torch_models.py), loads the snapshots
x^k and x^K from the iterate Parquet files, and for every row of
landscape.parquet recomputes loss_k, loss_ref, inner, grad_norm, dist and cos
on the same minibatch with autograd; all must agree within the tolerance
(relative error; 1e-5 for f32 models, 1e-10 for f64 ones). Also checks that
  - x^0 equals PyTorch's initialisation after torch.manual_seed(seed),
  - steps.parquet's loss at each probed step equals the probe's loss_k on i_k,
  - for plain SGD, consecutive snapshots x^{k+1} = x^k − lr_k ∇f_{i_k}(x^k).

usage: parity.py RUN_DIR [--tol T]     exit status 1 on any disagreement
"""

import argparse
import os
import sys

import pyarrow.parquet as pq
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import Run, flat, grad_at, loss_at, rel_err  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--tol", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Run(args.run_dir)
    f64 = run.dtype == torch.float64
    tol = args.tol if args.tol is not None else (1e-10 if f64 else 1e-5)
    cfg = run.config
    K = run.manifest["training"]["total_steps"]
    failures = []
    worst = {}

    def check(what, ours, theirs, where, floor=0.0):
        e = rel_err(ours, theirs, floor)
        if e > worst.get(what, (-1,))[0]:
            worst[what] = (e, where)
        if not e <= tol:
            failures.append(f"{what} at {where}: abcond {ours!r} vs PyTorch {theirs!r} (rel err {e:.3e} > {tol:.0e})")

    # x^0 is PyTorch's initialisation.
    init = run.model(seed=cfg["seed"])
    snap0 = run.snapshot(0)
    for n, p in init.named_parameters():
        if not torch.equal(p.detach(), snap0[n]):
            failures.append(f"x^0 tensor {n} differs from torch.manual_seed({cfg['seed']}) initialisation")

    land = pq.read_table(os.path.join(args.run_dir, "landscape.parquet")).to_pylist()
    steps = pq.read_table(os.path.join(args.run_dir, "steps.parquet")).to_pylist()
    ref = run.load(run.model(), K)
    xK = [p.detach().clone() for p in ref.parameters()]
    model = run.model()
    n = len(run.y)
    current = None
    for r in land:
        k = r["step"]
        if current != k:
            run.load(model, k)
            current = k
        where = f"step={k} probe={r['probe']}"
        idx = r["batch_indices"] if r["batch_indices"] is not None else list(range(n))
        assert len(idx) == r["batch_size"], where
        loss_k, grads = grad_at(model, run, idx)
        loss_ref = loss_at(ref, run, idx)
        g = flat(grads)
        d = flat([p.detach() for p in model.parameters()]) - flat(xK)
        inner = torch.dot(g, d).item()
        gn = g.norm().item()
        dist = d.norm().item()
        check("loss_k", r["loss_k"], loss_k, where)
        check("loss_ref", r["loss_ref"], loss_ref, where)
        check("inner", r["inner"], inner, where)
        check("grad_norm", r["grad_norm"], gn, where)
        check("dist", r["dist"], dist, where)
        if dist > 0:
            check("cos", r["cos"], inner / (gn * dist), where)
        if r["probe"] == "train":
            check("steps.loss vs probe loss_k", steps[k]["loss"], r["loss_k"], where)

    # Plain SGD: one update between consecutive snapshots.
    o = cfg["optim"]
    plain = o["name"] == "sgd" and o.get("momentum", 0) == 0 and o.get("weight_decay", 0) == 0
    snaps = sorted(int(e.split("=")[1]) for e in os.listdir(os.path.join(args.run_dir, "iterates")))
    pairs = [(k, k + 1) for k in snaps if k + 1 in snaps][:5] if plain else []
    for k, k1 in pairs:
        run.load(model, k)
        _, grads = grad_at(model, run, steps[k]["batch_indices"])
        lr = steps[k]["lr"]
        with torch.no_grad():
            for p, gr in zip(model.parameters(), grads):
                p.add_(gr, alpha=-lr)
        nxt = run.snapshot(k1)
        for name, p in model.named_parameters():
            err = (p.detach().double() - nxt[name].double()).abs().max().item()
            scale = nxt[name].double().abs().max().item()
            check(f"SGD update x^{k}→x^{k1}", 0.0, err / max(scale, 1e-300), f"{name}", floor=1.0)

    print(f"parity {args.run_dir}: {len(land)} landscape rows, {len(pairs)} SGD updates, tolerance {tol:.0e}")
    for what, (e, where) in sorted(worst.items()):
        print(f"  max rel err {what:<28} {e:.3e}  ({where})")
    if failures:
        print(f"{len(failures)} disagreements:")
        for f in failures[:20]:
            print("  " + f)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
