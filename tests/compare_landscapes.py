#!/usr/bin/env python3
"""Compares two landscape.parquet files row by row (same steps and probes),
e.g. the CPU and the GPU probe of the same snapshots.

Errors, per column:
  loss_k, loss_ref, grad_norm, dist   |a − b| / max(|a|, |b|)
  inner                               |a − b| / (‖g‖‖x^k − x^K‖)   (Cauchy–Schwarz scale)
  cos                                 |a − b|                       (cos is inner on that scale)
The inner product is a sum of ±terms whose rounding errors scale with
Σ|g_i d_i| ≤ ‖g‖‖d‖, not with |inner|, which is ≈ 0 where the gradient is
nearly orthogonal to x^k − x^K; |a − b| / |inner| is reported too (as
"inner/|inner|") but not checked. Rows at x^K itself (dist = 0) have no
inner error to speak of and are skipped for inner and cos. Minibatch rows
(train, extra-*) and full-data rows are reported separately; all are checked.

usage: compare_landscapes.py A B [--tol T]     exit status 1 beyond the tolerance
"""

import argparse
import sys

import abcond

from abcond_ref.compare import LANDSCAPE_CHECKED as CHECKED
from abcond_ref.compare import landscape_errors

ap = argparse.ArgumentParser()
ap.add_argument("a")
ap.add_argument("b")
ap.add_argument("--tol", type=float, default=1e-4)
args = ap.parse_args()
ra = abcond.read_table(args.a).to_pylist()
rb = abcond.read_table(args.b).to_pylist()
key = lambda r: (r["step"], r["probe"])  # noqa: E731
ra = {key(r): r for r in ra}
rb = {key(r): r for r in rb}
if set(ra) != set(rb):
    print(f"different rows: only in A {sorted(set(ra) - set(rb))[:5]}, only in B {sorted(set(rb) - set(ra))[:5]}")
    sys.exit(1)

worst = landscape_errors(ra, rb)

print(f"compared {len(ra)} rows of {args.a} and {args.b} (tolerance {args.tol:.0e})")
bad = []
for (group, measure), (e, k) in sorted(worst.items()):
    checked = measure in CHECKED
    if checked and not e <= args.tol:
        bad.append((group, measure))
    flag = "" if checked else "   (reported, not checked)"
    print(f"  {group:<9} max err {measure:<14} {e:.3e} at step={k[0]} probe={k[1]}{flag}")
if bad:
    print("FAIL: " + ", ".join(f"{g} {m}" for g, m in bad))
    sys.exit(1)
print("OK")
