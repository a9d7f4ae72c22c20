"""Comparison helpers of the checkers: relative errors and a row-by-row
comparison of two landscape.parquet tables (tests/compare_landscapes.py)."""

import numpy as np
import torch


def rel_err(a, b, floor=0.0):
    return abs(a - b) / max(abs(a), abs(b), floor, 1e-300)


def rel_vec(a, b):
    """‖a − b‖ / max(‖a‖, ‖b‖) of two arrays of any shape, in f64."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def flat(tensors):
    return torch.cat([t.reshape(-1).double() for t in tensors])


# The landscape columns whose errors are checked against the tolerance; the
# others landscape_errors reports are informative.
LANDSCAPE_CHECKED = ["loss_k", "loss_ref", "grad_norm", "dist", "inner", "cos"]


def landscape_errors(ra, rb):
    """The largest error per (group, measure) of two landscape tables given as
    {(step, probe): row} with the same keys: {(group, measure): (err, key)},
    group "full" or "minibatch". Errors:
      loss_k, loss_ref, grad_norm, dist   |a − b| / max(|a|, |b|)
      inner                               |a − b| / (‖g‖‖x^k − x^K‖)   (Cauchy–Schwarz scale)
      inner/|inner|                       |a − b| / max(|a|, |b|)      (not in LANDSCAPE_CHECKED)
      cos                                 |a − b|
    Rows at x^K itself (dist = 0 on both sides) are skipped for inner and cos."""
    worst = {}  # (group, measure) -> (err, key)

    def note(group, measure, e, k):
        if e > worst.get((group, measure), (-1.0, None))[0]:
            worst[(group, measure)] = (e, k)

    for k in sorted(ra):
        a, b = ra[k], rb[k]
        group = "full" if k[1] == "full" else "minibatch"
        for col in ["loss_k", "loss_ref", "grad_norm", "dist"]:
            x, y = a[col], b[col]
            note(group, col, abs(x - y) / max(abs(x), abs(y), 1e-300), k)
        if a["dist"] == 0.0 and b["dist"] == 0.0:
            continue
        cs = max(a["grad_norm"], b["grad_norm"]) * max(a["dist"], b["dist"])
        diff = abs(a["inner"] - b["inner"])
        note(group, "inner", diff / max(cs, 1e-300), k)
        note(group, "inner/|inner|", diff / max(abs(a["inner"]), abs(b["inner"]), 1e-300), k)
        note(group, "cos", abs(a["cos"] - b["cos"]), k)
    return worst
