#!/usr/bin/env python3
"""PyTorch check of an abcond run of the LSTM language model (`model.kind: lstm`).

Independently of the Rust code (tests/abcond_ref/text.py): rebuilds the data
(corpus files, words, vocabulary, windows) from the config and compares the
vocabulary with vocab.parquet; builds PyTorch's word-language-model RNNModel
(nn.Embedding, nn.LSTM, nn.Linear) and checks that x^0 equals its
initialisation after torch.manual_seed(seed), bit for bit; loads every
snapshot with load_state_dict(strict=True) and recomputes each landscape row
(loss_k, loss_ref, inner, grad_norm, dist, cos) with autograd in eval mode;
checks steps.parquet's loss against the probe's train rows; and, without
dropout, replays the first steps with torch.optim from x^0.

usage: check_lstm.py RUN_DIR [--tol T]      exit status 1 on any disagreement
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abcond  # noqa: E402
from abcond_ref.landscape import Failures, recompute_rows, replay  # noqa: E402
from abcond_ref.text import lm_data, lstm_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--tol", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = abcond.read_manifest(args.run_dir)
    cfg = manifest["config"]
    dtype = torch.float64 if cfg["model"]["dtype"] == "f64" else torch.float32
    tol = args.tol if args.tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    K = manifest["training"]["total_steps"]
    tied = cfg["model"].get("tie_weights", False)
    failures = Failures()

    x, y, V, vocab = lm_data(cfg["data"])
    if vocab is not None:
        theirs = [(r["token"], r["count"]) for r in abcond.read_table(os.path.join(args.run_dir, "vocab.parquet")).to_pylist()]
        if theirs != vocab:
            diff = next((i for i, (a, b) in enumerate(zip(theirs, vocab)) if a != b), min(len(theirs), len(vocab)))
            failures.lines.append(f"vocab.parquet differs from the Python vocabulary at id {diff} ({len(theirs)} vs {len(vocab)} entries)")
    if x.shape[0] != manifest["training"]["examples"]:
        failures.lines.append(f"{x.shape[0]} windows here, {manifest['training']['examples']} in run.yaml")

    def model():
        return lstm_model(cfg["model"], V, cfg["seed"])

    x0 = abcond.load_iterate(args.run_dir, 0)
    for n, t in model().state_dict().items():
        if not (n == "decoder.weight" and tied) and not torch.equal(t, x0[n].to(t.dtype)):
            failures.lines.append(f"x^0 tensor {n} differs from torch.manual_seed({cfg['seed']}) initialisation of RNNModel")

    def load(m, k):
        state = {n: t.to(dtype) for n, t in abcond.load_iterate(args.run_dir, k).items()}
        if tied:
            state["decoder.weight"] = state["encoder.weight"]
        m.load_state_dict(state, strict=True)

    def per_example(m, idx):
        return m(x[idx], y[idx])

    net, ref = model().eval(), model().eval()
    load(ref, K)
    land = abcond.read_table(os.path.join(args.run_dir, "landscape.parquet")).to_pylist()
    steps = abcond.read_table(os.path.join(args.run_dir, "steps.parquet")).to_pylist()
    recompute_rows(land, net, ref, load, per_example, x.shape[0], tol, failures)
    dropout = cfg["model"].get("dropout", 0.0)
    if dropout == 0.0:
        for r in land:
            if r["probe"] == "train":
                failures.check("steps.loss", steps[r["step"]]["loss"], r["loss_k"], tol, f"step {r['step']}", reference="probe loss_k")
    # Replayed without dropout only: its random masks are libtorch's
    # generator state inside abcond's run.
    replay_tol = 1e-10 if dtype == torch.float64 else 1e-4
    m = 0
    if dropout == 0.0:
        tensors = lambda mod: [(n, p) for n, p in mod.named_parameters() if not (tied and n == "decoder.weight")]  # noqa: E731
        m = replay(args.run_dir, cfg, K, model().train(), load, per_example, steps, tensors, replay_tol, failures)
    print(f"replayed {m} steps with torch.optim (tolerance {replay_tol:g})")
    failures.finish(f"ok: {len(land)} rows agree with PyTorch's nn.LSTM (tol {tol:g}); vocabulary and x^0 identical")


if __name__ == "__main__":
    main()
