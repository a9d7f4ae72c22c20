#!/usr/bin/env python3
"""Dense-Hessian check of an abcond run's curvature.parquet (PyTorch + numpy, no abcond code).

For every row (snapshot x^k, probe loss f_i) it rebuilds the model in PyTorch
(tests/abcond_ref: runs.py, models.py), loads x^k, and computes the exact Hessian of the mean
loss over the row's examples (the minibatch, or all data for `full`) with
torch.autograd.functional.hessian over the flattened parameters, in float64
(the snapshot values converted exactly); numpy's eigvalsh gives the spectrum.
Checks, as relative errors against the dense spectrum:
  - eigenvalue = the eigenvalue of largest magnitude, with its sign;
  - lambda_max and lambda_min (where reported), relative to max |λ| (the other
    end is resolved to a precision absolute in ||H||);
  - converged rows meet --tol; rows that did not converge are reported and only
    allowed when the two largest magnitudes are within 1 % of each other
    (power iteration cannot separate them);
  - the row's batch_indices / batch_size agree with landscape.parquet.

usage: check_curvature.py RUN_DIR [--tol T]      exit status 1 on any disagreement
"""

import argparse
import os
import sys

import numpy as np
import torch
import abcond

from abcond_ref.runs import Run


def dense_hessian(model, run, idx):
    """The Hessian of (1/n) Σ_i f_i over the flattened parameters, float64."""
    model = model.double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    x0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    xs = run.x[idx].double() if run.x.is_floating_point() else run.x[idx]
    ys = run.y[idx].double() if run.y.is_floating_point() else run.y[idx]

    def f(flat):
        params = {}
        off = 0
        for n, s, k in zip(names, shapes, sizes):
            params[n] = flat[off : off + k].reshape(s)
            off += k
        per = torch.func.functional_call(model, params, (xs, ys))
        return per.sum() / len(idx)

    return torch.autograd.functional.hessian(f, x0, vectorize=True).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--tol", type=float, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Run(args.run_dir)
    curv = abcond.read_table(os.path.join(args.run_dir, "curvature.parquet")).to_pylist()
    land = abcond.read_table(os.path.join(args.run_dir, "landscape.parquet")).to_pylist()
    land_idx = {(r["step"], r["probe"]): r for r in land}
    n = len(run.y)
    failures, worst = [], {}
    signs = {"negative": 0, "positive": 0}
    unconverged = 0
    cache = {}
    for r in curv:
        k, probe = r["step"], r["probe"]
        where = f"step={k} probe={probe}"
        idx = r["batch_indices"] if r["batch_indices"] is not None else list(range(n))
        if len(idx) != r["batch_size"]:
            failures.append(f"{where}: batch_size {r['batch_size']} but {len(idx)} indices")
        lr = land_idx.get((k, probe))
        if lr is not None and lr["batch_indices"] != r["batch_indices"]:
            failures.append(f"{where}: examples differ from landscape.parquet's row")
        if k not in cache:
            cache.clear()
            cache[k] = run.load(run.model(), k)
        H = dense_hessian(cache[k], run, torch.as_tensor(idx, dtype=torch.long))
        if not np.allclose(H, H.T, rtol=1e-10, atol=1e-12):
            failures.append(f"{where}: dense Hessian not symmetric")
        ev = np.linalg.eigvalsh((H + H.T) / 2)
        lo, hi = ev[0], ev[-1]
        top = hi if abs(hi) >= abs(lo) else lo
        mags = np.sort(np.abs(ev))[::-1]
        scale = max(mags[0], 1e-300)
        signs["negative" if top < 0 else "positive"] += 1
        if not r["converged"]:
            unconverged += 1
            near_tie = len(mags) > 1 and mags[1] >= 0.99 * mags[0]
            if not near_tie:
                failures.append(
                    f"{where}: power iteration did not converge although |λ1| = {mags[0]:.6g} and |λ2| = {mags[1]:.6g} are apart"
                )
            continue
        checks = [("eigenvalue", r["eigenvalue"], top, abs(top))]
        if r["lambda_max"] is not None:
            checks.append(("lambda_max", r["lambda_max"], hi, scale))
        if r["lambda_min"] is not None:
            checks.append(("lambda_min", r["lambda_min"], lo, scale))
        if r["other_converged"] is False:
            checks = checks[:1] + [c for c in checks[1:] if (c[2] == top)]
        for what, ours, want, denom in checks:
            e = abs(ours - want) / max(denom, 1e-300)
            if e > worst.get(what, (-1.0,))[0]:
                worst[what] = (e, where)
            if not e <= args.tol:
                failures.append(f"{where}: {what} abcond {ours!r} vs dense {want!r} (rel err {e:.3e} > {args.tol:.0e})")
    print(
        f"curvature {args.run_dir}: {len(curv)} rows vs dense Hessians, tolerance {args.tol:.0e}; "
        f"largest-magnitude eigenvalue negative in {signs['negative']}, positive in {signs['positive']} rows; "
        f"{unconverged} rows not converged (near ties)"
    )
    print(f"  signs negative={signs['negative']} positive={signs['positive']}")
    for what, (e, where) in sorted(worst.items()):
        print(f"  max rel err {what:<11} {e:.3e}  ({where})")
    if failures:
        print(f"{len(failures)} disagreements:")
        for f in failures[:20]:
            print("  " + f)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
