#!/usr/bin/env python3
"""PyTorch parity of abcond's WMT Transformer on synthetic-translation data and
on tokenised sentence pairs read from TFRecord or token-id files
(tests/transformer.rs).

usage: check_transformer.py RUN_DIR CASES.npz [--tol T]
       check_transformer.py --counts

The reference module (tests/abcond_ref/transformer.py) is written from AlgoPerf's
definition (mlcommons/algorithmic-efficiency, algoperf/workloads/wmt/wmt_pytorch/models.py:
pre-LayerNorm encoder-decoder, bias-free attention projections, shared embedding,
sinusoidal positions with sin in the first and cos in the last half, logits
h Eᵀ/√d), independently of the Rust code, with PyTorch's
scaled_dot_product_attention (is_causal for the decoder). Checks, against an
abcond run:
  - synthetic data: data.parquet's tokens in 1..V−1, target = reversed source
    shifted by one; `translation` data: the files read again here
    (abcond_ref.translation), the pairs kept (both sides of 1..seq_len
    tokens) and their record numbers equal to data.parquet's source_index;
  - steps.parquet (model.label_smoothing > 0): each recorded training loss is
    the label-smoothed loss of torch's cross_entropy at x^k on i_k, and differs
    from the plain one;
  - every snapshot: one row per 2^20-value chunk (the embedding spans several
    when V·d > 2^20), names and shapes of the reference's parameters;
  - at x^K on the minibatch of CASES.npz: abcond's loss and whole gradient
    (computed by the Rust test) against the reference's, relative error ≤ tol;
  - every `train` row of landscape.parquet: loss_k, loss_ref, inner =
    <∇f_i(x^k), x^k − x^K>, grad_norm and dist recomputed from the snapshots
    (f64 accumulation), relative error ≤ tol (absolute for values near 0).
--counts: the parameter count of the full-size reference (133,521,408).
"""

import argparse
import os
import sys

import numpy as np
import torch
import abcond

from abcond_ref.compare import rel_vec
from abcond_ref.runs import read_snapshot as snapshot
from abcond_ref.transformer import WMT_PARAMS, Transformer
from abcond_ref import translation

CHUNK = 1 << 20


def counts():
    n = sum(p.numel() for p in Transformer().parameters())
    print(f"transformer-wmt params {n}")
    assert n == WMT_PARAMS, n
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
    vocab, length = data["vocab"], data["seq_len"]

    table = abcond.read_table(os.path.join(a.run_dir, "data.parquet")).to_pydict()
    if data["dataset"] == "translation":
        src, tgt = translation.read_run_pairs(data, table["source_index"])
        pad = (src == 0).sum() + (tgt == 0).sum()
        print(f"data: {len(src)} sentence pairs read again from the files, {pad} padding tokens")
    else:
        # data.parquet: the generator's contract.
        feats = np.array(table["features"], dtype=np.float64)
        src, tgt = feats[:, :length].astype(np.int64), feats[:, length:].astype(np.int64)
        assert src.min() >= 1 and src.max() <= vocab - 1, (src.min(), src.max())
        assert (tgt == 1 + src[:, ::-1] % (vocab - 1)).all(), "targets are not the shifted reversal"
        print(f"data: {len(src)} sentence pairs of {length} tokens, vocabulary {vocab}")
    src, tgt = torch.from_numpy(src), torch.from_numpy(tgt)

    torch.set_default_dtype(dtype)
    ref = Transformer(vocab, m["width"], m["heads"], m["mlp_dim"], m["depth"])
    torch.set_default_dtype(torch.float32)
    names = dict(ref.named_parameters())
    total = cfg["train"]["steps"]
    steps = sorted(int(d.split("=")[1]) for d in os.listdir(os.path.join(a.run_dir, "iterates")))

    def load(step):
        state, rows = snapshot(a.run_dir, step, dtype)
        assert set(state) == set(names), f"snapshot/model names differ: {set(state) ^ set(names)}"
        for n, p in names.items():
            assert tuple(state[n].shape) == tuple(p.shape), (n, state[n].shape, p.shape)
            want = max(1, -(-p.numel() // CHUNK))
            assert rows[n] == want, f"step {step}: {n} has {rows[n]} rows, expected {want}"
        return state

    states = {k: load(k) for k in steps}
    multi = [n for n, p in names.items() if p.numel() > CHUNK]
    print(f"snapshots {steps}: one row per 2^20-value chunk; {multi} span several")

    def at(step):
        with torch.no_grad():
            for n, p in names.items():
                p.copy_(states[step][n])
        return ref

    worst = 0.0
    # x^K, the minibatch of CASES.npz: loss and the whole gradient.
    cases = np.load(a.cases)
    idx = torch.from_numpy(cases["indices"]).long()
    model = at(total)
    model.zero_grad()
    per = model(src[idx], tgt[idx])
    (per.sum() / len(per)).backward()
    g_ref = np.concatenate([p.grad.double().numpy().ravel() for _, p in model.named_parameters()])
    g_rust = np.concatenate([cases[f"grad.{n}"].astype(np.float64).ravel() for n, _ in model.named_parameters()])
    e_loss = rel_vec(per.double().mean().item(), float(cases["loss"]))
    e_grad = rel_vec(g_ref, g_rust)
    print(f"x^K: loss {per.double().mean().item():.6f} rel err {e_loss:.2e}, gradient ({g_ref.size} values) rel err {e_grad:.2e}")
    worst = max(worst, e_loss, e_grad)

    # Landscape rows: every quantity recomputed from the snapshots.
    land = abcond.read_table(os.path.join(a.run_dir, "landscape.parquet")).to_pylist()
    ref_vec = torch.cat([states[total][n].double().ravel() for n in names])
    checked = 0
    for r in land:
        if r["probe"] != "train":
            continue
        k, rows_idx = r["step"], torch.tensor(r["batch_indices"])
        with torch.no_grad():
            loss_ref = at(total)(src[rows_idx], tgt[rows_idx]).double().mean().item()
        model = at(k)
        model.zero_grad()
        per = model(src[rows_idx], tgt[rows_idx])
        (per.sum() / len(per)).backward()
        g = torch.cat([p.grad.double().ravel() for p in names.values()])
        x = torch.cat([p.detach().double().ravel() for p in names.values()])
        want = {
            "loss_k": per.double().mean().item(),
            "loss_ref": loss_ref,
            "inner": float(g @ (x - ref_vec)),
            "grad_norm": float(g.norm()),
            "dist": float((x - ref_vec).norm()),
        }
        for key, v in want.items():
            e = abs(r[key] - v) / max(abs(v), 1e-3)
            worst = max(worst, e)
            assert e <= a.tol, f"step {k} {key}: abcond {r[key]} vs PyTorch {v} (rel err {e:.2e})"
        checked += 1
    assert checked > 0, "no train rows in landscape.parquet"

    # Training losses with label smoothing: steps.parquet records the loss
    # training differentiated.
    eps = m.get("label_smoothing", 0.0)
    if eps > 0:
        steps_t = abcond.read_table(os.path.join(a.run_dir, "steps.parquet")).to_pylist()
        n_smooth = 0
        for r in steps_t:
            if r["batch_indices"] is None or r["step"] not in states:
                continue
            rows_idx = torch.tensor(r["batch_indices"])
            with torch.no_grad():
                smooth = at(r["step"])(src[rows_idx], tgt[rows_idx], eps).double().mean().item()
                plain = at(r["step"])(src[rows_idx], tgt[rows_idx]).double().mean().item()
            e = abs(r["loss"] - smooth) / abs(smooth)
            worst = max(worst, e)
            assert e <= a.tol, f"step {r['step']}: training loss {r['loss']} vs smoothed {smooth} (rel err {e:.2e})"
            # The check can tell the two apart: they differ by far more than tol.
            assert abs(smooth - plain) > 10 * a.tol * abs(plain), (smooth, plain)
            n_smooth += 1
        assert n_smooth > 0, "no step rows with batch indices"
        print(f"label smoothing {eps}: {n_smooth} training losses equal torch's smoothed cross-entropy (not the plain one)")
    print(f"landscape: {checked} train rows (loss_k, loss_ref, inner, grad_norm, dist) match PyTorch")
    if worst > a.tol:
        print(f"FAIL: worst relative error {worst:.2e} > {a.tol:.0e}")
        sys.exit(1)
    print(f"OK worst relative error {worst:.2e}")


if __name__ == "__main__":
    main()
