#!/usr/bin/env python3
"""PyTorch parity of abcond's DLRM-small on Criteo TSV click logs (tests/dlrm.rs).

usage: check_dlrm.py RUN_DIR CASES.npz [--tol T]
       check_dlrm.py --counts

The reference (tests/abcond_ref/dlrm.py) is AlgoPerf's DlrmSmall (its
parameter names, the four table chunks concatenated as AlgoPerf does) and a
Criteo TSV reader with the documented hash, written independently of the Rust
code. Checks, against an abcond run:
  - the data: the day files read again here, in name order; data.parquet's
    labels (`targets`) and row numbers equal the reference reader's;
  - names and shapes of every snapshot tensor equal the reference's;
  - at x^K on the minibatch of CASES.npz: abcond's loss and whole gradient
    (computed by the Rust test) against the reference's, relative error ≤ tol;
  - every row of landscape.parquet (train, extra, full) recomputed from the
    snapshots (abcond_ref/landscape.py), ≤ tol;
  - the first training steps replayed with torch.optim from x^0 on the
    stored minibatches.
--counts: the parameter counts of the full-size and criteo1tb_test references.
"""

import argparse
import os

import torch
import abcond

from abcond_ref import dlrm
from abcond_ref.landscape import Failures, grad_case, loader, recompute_rows, replay, snapshots


def counts():
    for v, want in [(dlrm.VOCAB_TEST, dlrm.DLRM_SMALL_TEST_PARAMS), (dlrm.VOCAB_FULL, dlrm.DLRM_SMALL_PARAMS)]:
        n = dlrm.param_count(v)
        print(f"dlrm-small vocab {v} params {n}")
        assert n == want, (n, want)
    n = sum(p.numel() for p in dlrm.DlrmSmall(dlrm.VOCAB_TEST).parameters())
    assert n == dlrm.DLRM_SMALL_TEST_PARAMS, n
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
    m, data = cfg["model"], cfg["data"]
    dtype = {"f32": torch.float32, "f64": torch.float64}[m["dtype"]]
    label, dense, cat = dlrm.read_days(data["path"], data.get("examples"), dtype)
    table = abcond.read_table(os.path.join(a.run_dir, "data.parquet")).to_pydict()
    rows = torch.tensor(table["source_index"])
    assert table["target"] == label[rows].double().tolist(), "labels differ from the reference reader's"
    label, dense, cat = label[rows], dense[rows], cat[rows]
    print(f"data: {len(rows)} lines read again ({int(label.sum())} clicks)")

    def build():
        torch.set_default_dtype(dtype)
        net = dlrm.DlrmSmall(m["vocab"], m["embed_dim"], dlrm.NUM_DENSE, tuple(m["bottom"]), tuple(m["top"]))
        torch.set_default_dtype(torch.float32)
        return net

    ref = build()
    states = snapshots(a.run_dir, ref, dtype, "AlgoPerf's DlrmSmall")
    load = loader(states)
    total = cfg["train"]["steps"]

    def losses(net, idx):
        idx = torch.as_tensor(idx)
        return dlrm.per_example_loss(net, dense[idx], cat[idx], label[idx])

    load(ref, total)
    e_loss, e_grad = grad_case(ref, losses, a.cases)
    worst = max(e_loss, e_grad)
    failures = Failures()
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
    failures.finish(f"OK worst relative error {worst:.2e} at x^K; landscape rows and replay within {a.tol:g}")


if __name__ == "__main__":
    main()
