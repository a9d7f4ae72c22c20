#!/usr/bin/env python3
"""Independent check of a known-answer run (driven by tests/known_answers.rs).

    check_known.py RUN_DIR [--pair ALPHA,BETA ...]

numpy only, no code shared with abcond:
- the minimiser set S by damped Newton in the full space R^d from many starts
  (not the 1-D reduction abcond uses), certified: gradient ≈ 0 and Hessian
  PSD at every point of S, and no grid/sample point or other local minimum
  below f*; compared with the S abcond records in landscape.parquet metadata;
- the paper's numbers of the example (docs/theory.md, Known-answer problems);
- every landscape row (loss_k, loss_ref, inner, grad_norm, dist) recomputed
  from closed-form f_i and ∇f_i at the row's point (cloud.parquet or the
  iterate snapshot) and its own projection onto S;
- from those closed-form rows: the smallest alpha on beta = alpha − 1, the
  feasible alpha interval at beta = 0, and the min slack at each --pair.
Prints `key=value` lines for the Rust test and `ok …` lines; exits non-zero
on a mismatch.
"""
import math
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import abcond


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def close(a, b, tol, what):
    if not abs(a - b) <= tol:
        fail(f"{what}: {a!r} vs {b!r} (tol {tol})")


# --- components: value, gradient, Hessian, minimum -------------------------
class Radial:
    """phi(||x − c||²) with phi rational (p + u)/(q + u) or gaussian 1 − e^−u."""

    def __init__(self, c, p=None, q=None):
        self.c = np.asarray(c, float)
        self.p, self.q = p, q

    def phi(self, u):
        if self.p is None:
            return -math.expm1(-u), math.exp(-u), -math.exp(-u)
        p, q = self.p, self.q
        return (p + u) / (q + u), (q - p) / (q + u) ** 2, -2 * (q - p) / (q + u) ** 3

    def f(self, x):
        return self.phi(float(((x - self.c) ** 2).sum()))[0]

    def grad(self, x):
        v = x - self.c
        return self.phi(float(v @ v))[1] * 2 * v

    def hess(self, x):
        v = x - self.c
        _, d1, d2 = self.phi(float(v @ v))
        return d2 * 4 * np.outer(v, v) + 2 * d1 * np.eye(len(x))

    def fstar(self):
        return 0.0 if self.p is None else self.p / self.q


class Ridge:
    """g(1ᵀx + b), g(s) = s²/(1 + s²)."""

    def __init__(self, d, b):
        self.d, self.b = d, b

    def f(self, x):
        s = x.sum() + self.b
        return s * s / (1 + s * s)

    def grad(self, x):
        s = x.sum() + self.b
        return np.full(self.d, 2 * s / (1 + s * s) ** 2)

    def hess(self, x):
        s = x.sum() + self.b
        return np.full((self.d, self.d), (2 - 6 * s * s) / (1 + s * s) ** 3)

    def fstar(self):
        return 0.0


def components(model):
    kind = model["kind"]
    d = model.get("dim", 2)
    if kind == "example1":
        return [Ridge(2, 0.0), Ridge(2, 1.0)]
    if kind == "example1-nd":
        return [Ridge(d, float(i)) for i in range(model.get("components", 2))]
    if kind == "example2":
        return [Radial([0, 0]), Radial([2, 2])]
    if kind == "example3":
        return [Radial([0, 0], 1.0, 4.0), Radial([2.5, 2.5], 0.0, 1.0)]
    if kind == "example6":
        return [Radial([0, 0], 0.0, 1.0), Radial([1, 1], 0.0, 1.0)]
    if kind == "example6-nd":
        return [Radial(np.zeros(d), 0.0, 1.0), Radial(np.ones(d), 0.0, 1.0)]
    fail(f"unknown kind {kind}")


def F(comps, x):
    return sum(c.f(x) for c in comps) / len(comps)


def G(comps, x):
    return sum(c.grad(x) for c in comps) / len(comps)


def H(comps, x):
    return sum(c.hess(x) for c in comps) / len(comps)


def newton(comps, x):
    """Damped Newton (gradient steps where the Hessian is not PD), backtracking."""
    x = np.array(x, float)
    for _ in range(500):
        g = G(comps, x)
        if np.linalg.norm(g) < 1e-15:
            break
        h = H(comps, x)
        w = np.linalg.eigvalsh(h)
        step = np.linalg.solve(h, g) if w.min() > 1e-12 else g / max(1.0, abs(w).max())
        t, fx = 1.0, F(comps, x)
        while t > 1e-20 and F(comps, x - t * step) > fx:
            t *= 0.5
        if t <= 1e-20:
            break
        x = x - t * step
    return x


def local_minima(comps, d, rng):
    """Local minima from a grid / sample of starts around the components."""
    if isinstance(comps[0], Ridge):
        # f depends on L = 1ᵀx only: starts spread along the diagonal direction.
        ls = np.linspace(-len(comps) - 1, 2, 301)
        starts = [np.full(d, l / d) for l in ls]
    else:
        cs = np.array([c.c for c in comps])
        lo, hi = cs.min(0) - 1.5, cs.max(0) + 1.5
        starts = [lo + (hi - lo) * rng.random(d) for _ in range(400)]
        starts += [cs[0] + t * (cs[1] - cs[0]) for t in np.linspace(-0.2, 1.2, 57)]
    mins = []
    for s in starts:
        x = newton(comps, s)
        g = np.linalg.norm(G(comps, x))
        w = np.linalg.eigvalsh(H(comps, x))
        if g < 1e-11 and w.min() > -1e-10:
            mins.append((F(comps, x), x))
    return mins


def minimiser_set(comps, d, rng):
    mins = local_minima(comps, d, rng)
    if not mins:
        fail("no local minimum found")
    fbest = min(m[0] for m in mins)
    S = []
    for fx, x in sorted(mins, key=lambda m: tuple(m[1])):
        if fx <= fbest + 1e-12 * abs(fbest):
            if isinstance(comps[0], Ridge):
                # a hyperplane: keep its level 1ᵀx
                if not any(abs(x.sum() - y.sum()) < 1e-9 for y in S):
                    S.append(x)
            elif not any(np.linalg.norm(x - y) < 1e-9 for y in S):
                S.append(x)
    if isinstance(comps[0], Ridge):
        # polish the level L = 1ᵀx by 1-D Newton (the full-space Hessian is
        # singular along the hyperplane, so Newton above fell back to gradient steps)
        polished = []
        for x in S:
            L = x.sum()
            for _ in range(50):
                s_ = np.array([L + c.b for c in comps])
                d1 = np.mean(2 * s_ / (1 + s_ * s_) ** 2)
                d2 = np.mean((2 - 6 * s_ * s_) / (1 + s_ * s_) ** 3)
                L -= d1 / d2
            polished.append(np.full(d, L / d))
        S = polished
    # certificate of global optimality: nothing on a sample/grid is below f*
    if isinstance(comps[0], Ridge):
        ls = np.linspace(-60, 60, 400001)
        vals = np.mean([np.array([c.f(np.array([l] + [0.0] * (d - 1))) for l in ls[::50]]) for c in comps], 0)
    else:
        cs = np.array([c.c for c in comps])
        lo, hi = cs.min(0) - 3, cs.max(0) + 3
        pts = lo + (hi - lo) * rng.random((20000, d))
        vals = np.array([F(comps, p) for p in pts])
    if vals.min() < fbest - 1e-12:
        fail(f"a sample point has f = {vals.min()} below f* = {fbest}")
    print(f"ok S certified: {len(S)} part(s), f* = {float(fbest)!r}, {len(mins)} converged starts, "
          f"max |grad| {max(np.linalg.norm(G(comps, x)) for x in S):.1e}, "
          f"min Hessian eigenvalue {min(np.linalg.eigvalsh(H(comps, x)).min() for x in S):.3g}")
    return S, fbest, mins


def project(comps, S, x):
    if isinstance(comps[0], Ridge):
        d = len(x)
        cands = [x - (x.sum() - s.sum()) / d * np.ones(d) for s in S]
    else:
        cands = list(S)
    dists = [np.linalg.norm(x - c) for c in cands]
    best = 0
    for j in range(1, len(cands)):
        if dists[j] < dists[best] * (1 - 1e-12):
            best = j
    return cands[best]


_EXACT = {}


def exact_min(comps, idx, fstar, rng):
    """min of the minibatch loss: f_i* of one component, f* of all, else solved."""
    key = tuple(idx)
    if key not in _EXACT:
        if len(idx) == 1:
            _EXACT[key] = comps[idx[0]].fstar()
        elif len(idx) == len(comps):
            _EXACT[key] = fstar
        else:
            sub = [comps[i] for i in idx]
            d = len(sub[0].c) if isinstance(sub[0], Radial) else sub[0].d
            _EXACT[key] = minimiser_set(sub, d, rng)[1]
    return _EXACT[key]


def rust_minimisers(meta):
    text = meta.get(b"abcond.minimisers", b"").decode()
    nums = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+e-?\d+", text)]
    return text, nums


def notes_checks(kind, comps, S, fstar, mins):
    pts = sorted(S, key=lambda x: x[0])
    if kind == "example6":
        close(pts[0][0], 0.159375, 5e-7, "Example 6 t1")
        close(pts[1][0], 0.840625, 5e-7, "Example 6 t2")
        close(fstar, 0.3169873, 5e-8, "Example 6 f*")
        c = min(cc.f(pts[0]) for cc in comps)
        close(c, 0.0483448, 5e-8, "Example 6 c")
        print(f"c={c!r}")
        print(f"ok paper Example 6: S = (t, t), t = {pts[0][0]:.7f}, {pts[1][0]:.7f}; f* = {fstar:.7f}; c = {c:.7f}; 2/c = {2 / c:.4f}; 1/c = {1 / c:.4f}")
    elif kind == "example2":
        close(pts[0][0], 6.74e-4, 5e-7, "Example 2 t1")
        close(pts[1][0], 1.999326, 5e-7, "Example 2 t2")
        close(fstar, 0.4998318, 5e-8, "Example 2 f*")
        c = min(cc.f(pts[0]) for cc in comps)
        close(c, 9.094e-7, 5e-10, "Example 2 min_i f_i on S")
        print(f"c={c!r}")
        print(f"ok paper Example 2: t = {pts[0][0]:.6e}, {pts[1][0]:.6f}; f* = {fstar:.7f}; min_i f_i on S = {c:.4e}; 8/c = {8 / c:.3e}")
    elif kind == "example3":
        close(F(comps, np.zeros(2)), 0.587963, 5e-7, "Example 3 f(0,0)")
        close(fstar, 0.408313, 5e-7, "Example 3 global min")
        close(pts[0][0], 2.4717, 5e-5, "Example 3 global minimiser")
        close(pts[0][1], 2.4717, 5e-5, "Example 3 global minimiser y")
        local = [m for m in mins if m[0] > fstar + 1e-6]
        if not local:
            fail("Example 3: no local minimum found")
        fl, xl = min(local, key=lambda m: m[0])
        close(fl, 0.586866, 5e-7, "Example 3 local min")
        close(xl[0], 0.0804, 5e-5, "Example 3 local minimiser")
        print(f"local_min={fl!r}")
        print(f"local_x={float(xl[0])!r}")
        print(f"ok paper Example 3: f(0,0) = {F(comps, np.zeros(2)):.6f}; global {fstar:.6f} at ({pts[0][0]:.4f}, {pts[0][1]:.4f}); local {fl:.6f} at ({xl[0]:.4f}, {xl[1]:.4f})")
    elif kind == "example1":
        close(pts[0].sum(), -0.5, 1e-9, "Example 1 S: x + y = -1/2")
        for cc in comps:
            close(cc.f(pts[0]), 0.2, 1e-12, "Example 1 f_i on S")
        print("ok paper Example 1: S = {x + y = -1/2}, f_i = 1/5 on S")


def main():
    run = Path(sys.argv[1])
    pairs = []
    args = sys.argv[2:]
    while args:
        if args[0] == "--pair":
            pairs.append(tuple(float(v) for v in args[1].split(",")))
            args = args[2:]
        else:
            fail(f"unknown argument {args[0]}")
    cfg = abcond.read_manifest(str(run))["config"]
    model = cfg["model"]
    kind = model["kind"]
    comps = components(model)
    d = model.get("dim", 2)
    rng = np.random.default_rng(1)
    S, fstar, mins = minimiser_set(comps, d, rng)
    print(f"f_star={float(fstar)!r}")
    notes_checks(kind, comps, S, fstar, mins)

    table = abcond.read_table(run / "landscape.parquet")
    meta = table.schema.metadata
    text, nums = rust_minimisers(meta)
    if isinstance(comps[0], Ridge):
        levels = nums[d:]
        mine = sorted(float(s.sum()) for s in S)
        if len(levels) != len(mine) or any(abs(a - b) > 1e-11 for a, b in zip(levels, mine)):
            fail(f"abcond's S {text} vs levels {mine}")
    else:
        theirs = np.array(nums).reshape(-1, d)
        mine = np.array(sorted((tuple(s) for s in S)))
        if theirs.shape != mine.shape or np.abs(theirs - mine).max() > 1e-11:
            fail(f"abcond's S {text} vs {mine.tolist()}")
    print(f"ok abcond's S matches to 1e-11: {text}")

    rows = table.to_pylist()
    if meta.get(b"abcond.points") == b"cloud":
        cloud = abcond.read_table(run / "cloud.parquet").to_pylist()
        points = {r["point"]: np.array(r["x"]) for r in cloud}
        for r in cloud:
            xp = project(comps, S, np.array(r["x"]))
            if np.abs(xp - np.array(r["x_p"])).max() > 1e-11:
                fail(f"cloud point {r['point']}: x_p {r['x_p']} vs {xp.tolist()}")
    else:
        if meta.get(b"abcond.reference") != b"projection":
            fail("the run was not probed against Proj(x, S)")
        points = {}
        for k in sorted({r["step"] for r in rows}):
            t = pq.read_table(run / f"iterates/step={k}/part-0.parquet").to_pylist()
            points[k] = np.array([v for r in t if r["name"] == "x" for v in r["values"]])
    n = len(comps)
    fstar_analysis = cfg.get("analysis", {}).get("f_star", 0.0)
    # min-observed: per minibatch, the smallest of f_i(x^k), f_i(x_p) over its rows
    observed = {}
    for r in rows:
        key = tuple(r["batch_indices"] or [])
        observed[key] = min(observed.get(key, math.inf), r["loss_k"], r["loss_ref"])
    abc = []
    worst = 0.0
    for r in rows:
        x = points[r["step"]]
        xp = project(comps, S, x)
        idx = r["batch_indices"] if r["batch_indices"] is not None else list(range(n))
        fk = np.mean([comps[i].f(x) for i in idx])
        fr = np.mean([comps[i].f(xp) for i in idx])
        g = np.mean([comps[i].grad(x) for i in idx], 0)
        want = {"loss_k": fk, "loss_ref": fr, "inner": float(g @ (x - xp)),
                "grad_norm": float(np.linalg.norm(g)), "dist": float(np.linalg.norm(x - xp))}
        for key, v in want.items():
            err = abs(r[key] - v) / max(1.0, abs(v))
            worst = max(worst, err)
            if err > 1e-10:
                fail(f"row step={r['step']} probe={r['probe']}: {key} {r[key]!r} vs closed form {v!r}")
        if r["probe"] != "full":
            if fstar_analysis == "min-observed":
                fs = observed[tuple(idx)]
            elif fstar_analysis == "known":
                fs = exact_min(comps, idx, fstar, rng)
            else:
                fs = float(fstar_analysis)
            abc.append((want["inner"], fk - fr, fk - fs))
    print(f"ok rows: {len(rows)} rows match closed-form f_i, grad f_i and Proj(x, S) (max rel err {worst:.1e})")
    a, b, c = (np.array(v) for v in zip(*abc))
    # beta = alpha − 1: T = a − alpha b + (alpha − 1) c = (a − c) + alpha (c − b) ≥ 0
    w = c - b
    if (w <= 0).any():
        print("gap_one_alpha=none")
    else:
        print(f"gap_one_alpha={float(max(1.1, ((c - a) / w).max()))!r}")
    # beta = 0: a − alpha b ≥ 0 for alpha > 0.1 (the margin)
    lo = max([0.1] + [float(ai / bi) for ai, bi in zip(a, b) if bi < 0])
    hi = min([math.inf] + [float(ai / bi) for ai, bi in zip(a, b) if bi > 0])
    zero_ok = (a[b == 0] >= 0).all() and lo <= hi
    print(f"beta_zero={'[%r, %r]' % (lo, hi) if zero_ok else 'infeasible'}")
    for al, be in pairs:
        print(f"slack {al!r},{be!r}={float((a - al * b + be * c).min())!r}")


if __name__ == "__main__":
    main()
