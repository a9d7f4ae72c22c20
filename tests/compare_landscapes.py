#!/usr/bin/env python3
"""Compares two landscape.parquet files row by row (same steps and probes),
e.g. the CPU and the GPU probe of the same snapshots.

usage: compare_landscapes.py A B [--tol T]     exit status 1 beyond the tolerance
"""

import argparse
import sys

import pyarrow.parquet as pq

ap = argparse.ArgumentParser()
ap.add_argument("a")
ap.add_argument("b")
ap.add_argument("--tol", type=float, default=1e-4)
args = ap.parse_args()
ra = pq.read_table(args.a).to_pylist()
rb = pq.read_table(args.b).to_pylist()
key = lambda r: (r["step"], r["probe"])  # noqa: E731
ra = {key(r): r for r in ra}
rb = {key(r): r for r in rb}
if set(ra) != set(rb):
    print(f"different rows: only in A {sorted(set(ra) - set(rb))[:5]}, only in B {sorted(set(rb) - set(ra))[:5]}")
    sys.exit(1)
worst = {}
for k in ra:
    for col in ["loss_k", "loss_ref", "inner", "grad_norm", "dist", "cos"]:
        a, b = ra[k][col], rb[k][col]
        if a != a and b != b:  # both NaN (cos at x^K)
            continue
        scale = max(abs(a), abs(b), 1e-300)
        if col == "inner":  # relative to the Cauchy–Schwarz scale when inner ≈ 0
            scale = max(scale, 1e-3 * ra[k]["grad_norm"] * ra[k]["dist"])
        e = abs(a - b) / scale
        if e > worst.get(col, (-1.0, None))[0]:
            worst[col] = (e, k)
bad = {c: v for c, v in worst.items() if v[0] > args.tol}
print(f"compared {len(ra)} rows of {args.a} and {args.b} (tolerance {args.tol:.0e})")
for c, (e, k) in sorted(worst.items()):
    print(f"  max rel err {c:<10} {e:.3e} at step={k[0]} probe={k[1]}")
if bad:
    print("FAIL")
    sys.exit(1)
print("OK")
