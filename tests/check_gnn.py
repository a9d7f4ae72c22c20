#!/usr/bin/env python3
"""PyTorch parity of abcond's graph network on OGB-format graphs (tests/gnn.rs).

usage: check_gnn.py RUN_DIR CASES.npz [--tol T]
       check_gnn.py --counts

The reference (tests/abcond_ref/gnn.py) is AlgoPerf's ogbg GNN and input
pipeline written from their definition, independently of the Rust code, and
reads the OGB raw CSVs itself. Checks, against an abcond run:
  - names and shapes of every snapshot tensor equal the reference's;
  - at x^K on the minibatch of CASES.npz: abcond's loss and whole gradient
    (computed by the Rust test) against the reference's, relative error ≤ tol;
  - every row of landscape.parquet (train, extra, full): loss_k, loss_ref,
    inner, grad_norm, dist and cos recomputed from the snapshots
    (abcond_ref/landscape.py's recompute_rows; inner relative to ‖g‖‖x^k − x^K‖),
    ≤ tol.
--counts: the full-size reference's parameter count (3,554,176).
"""

import argparse
import os

import torch
import abcond

from abcond_ref.gnn import GNN, OGBG_PARAMS, batch, count, per_graph_loss, read_ogb
from abcond_ref.landscape import Failures, grad_case, loader, recompute_rows, snapshots


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("cases", nargs="?")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--counts", action="store_true")
    a = ap.parse_args()
    if a.counts:
        n = count()
        print(f"gnn-ogbg params {n}")
        assert n == OGBG_PARAMS, n
        print("OK counts")
        return
    torch.set_num_threads(1)
    cfg = abcond.read_manifest(a.run_dir)["config"]
    m, data = cfg["model"], cfg["data"]
    dtype = {"f32": torch.float32, "f64": torch.float64}[m["dtype"]]
    graphs = read_ogb(data["path"])
    assert m["activation"] == "relu" and m["mlp_layers"] == 1, m
    tasks = len(graphs[0]["label"])
    edge_dim = next((g["edge_feat"].shape[1] for g in graphs if len(g["edge_feat"])), 3)

    def build():
        torch.set_default_dtype(dtype)
        net = GNN(tasks, m["latent_dim"], (m["hidden_dim"],), m["message_passing_steps"], graphs[0]["node_feat"].shape[1], edge_dim)
        torch.set_default_dtype(torch.float32)
        return net

    ref = build()
    states = snapshots(a.run_dir, ref, dtype)
    load = loader(states)
    total = cfg["train"]["steps"]

    def losses(model, idx):
        b = batch(graphs, idx, dtype)
        return per_graph_loss(model(b), b["labels"])

    load(ref, total)
    e_loss, e_grad = grad_case(ref, losses, a.cases)
    worst = max(e_loss, e_grad)
    failures = Failures()
    failures.bound("x^K loss", e_loss, a.tol, "cases")
    failures.bound("x^K grad", e_grad, a.tol, "cases")

    # Every landscape row (train, extra and full) recomputed from the
    # snapshots: the shared recomputation of abcond_ref/landscape.py.
    land = abcond.read_table(os.path.join(a.run_dir, "landscape.parquet")).to_pylist()
    ref_model = build()
    load(ref_model, total)
    recompute_rows(land, ref, ref_model, load, lambda net, idx: losses(net, idx.tolist()), len(graphs), a.tol, failures)
    print(f"landscape: {sum(r['probe'] == 'train' for r in land)} train rows and {len(land)} rows in all recomputed")
    failures.finish(f"OK worst relative error {worst:.2e} at x^K; landscape rows within {a.tol:g}")


if __name__ == "__main__":
    main()
