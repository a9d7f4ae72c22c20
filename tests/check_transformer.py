#!/usr/bin/env python3
"""PyTorch parity of abcond's WMT Transformer on synthetic-translation data
(tests/transformer.rs).

usage: check_transformer.py RUN_DIR CASES.npz [--tol T]
       check_transformer.py --counts

The reference module below is written from AlgoPerf's definition
(mlcommons/algorithmic-efficiency, algoperf/workloads/wmt/wmt_pytorch/models.py:
pre-LayerNorm encoder-decoder, bias-free attention projections, shared embedding,
sinusoidal positions with sin in the first and cos in the last half, logits
h Eᵀ/√d), independently of the Rust code, with PyTorch's
scaled_dot_product_attention (is_causal for the decoder). Checks, against an
abcond run:
  - data.parquet: tokens in 1..V−1, target = reversed source shifted by one;
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
import math
import os
import sys

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
import yaml
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import rel_vec  # noqa: E402

WMT_PARAMS = 133_521_408
CHUNK = 1 << 20


def positions(length, d, dtype):
    half = d // 2
    scale = -math.log(10000.0) / (half - 1)
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    ang = pos * torch.exp(torch.arange(half, dtype=torch.float64) * scale)[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).to(dtype)


class Attention(nn.Module):
    def __init__(self, d, heads, cross):
        super().__init__()
        self.heads, self.cross = heads, cross
        if cross:
            self.q_proj = nn.Linear(d, d, bias=False)
            self.kv_proj = nn.Linear(d, 2 * d, bias=False)
        else:
            self.in_proj = nn.Linear(d, 3 * d, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, mem=None, causal=False):
        b, t, d = x.shape
        if self.cross:
            q = self.q_proj(x)
            k, v = self.kv_proj(mem).split(d, dim=2)
        else:
            q, k, v = self.in_proj(x).split(d, dim=2)
        h = lambda u: u.reshape(b, u.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(h(q), h(k), h(v), is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.self_attn = Attention(d, heads, False)
        self.linear1, self.linear2 = nn.Linear(d, mlp), nn.Linear(mlp, d)
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        x = x + self.self_attn(self.norm1(x))
        return x + self.linear2(F.relu(self.linear1(self.norm2(x))))


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.self_attn = Attention(d, heads, False)
        self.multihead_attn = Attention(d, heads, True)
        self.linear1, self.linear2 = nn.Linear(d, mlp), nn.Linear(mlp, d)
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.norm3 = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x, mem):
        x = x + self.self_attn(self.norm1(x), causal=True)
        x = x + self.multihead_attn(self.norm2(x), mem)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class Stack(nn.Module):
    def __init__(self, layers, d):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d, eps=1e-6)


class Side(nn.Module):
    """AlgoPerf's Encoder/Decoder wrappers: parameters under `encoder.encoder.` etc."""

    def __init__(self, name, stack):
        super().__init__()
        setattr(self, name, stack)


class Transformer(nn.Module):
    def __init__(self, vocab=32000, d=1024, heads=16, mlp=1024, depth=6):
        super().__init__()
        self.d = d
        self.shared_embedding = nn.Embedding(vocab, d)
        self.encoder = Side("encoder", Stack([EncoderLayer(d, heads, mlp) for _ in range(depth)], d))
        self.decoder = Side("decoder", Stack([DecoderLayer(d, heads, mlp) for _ in range(depth)], d))

    def forward(self, src, tgt):
        """Per-example loss: mean over target positions of the cross-entropy."""
        emb = self.shared_embedding
        e, dec = self.encoder.encoder, self.decoder.decoder
        h = emb(src) + positions(src.shape[1], self.d, emb.weight.dtype)
        for layer in e.layers:
            h = layer(h)
        mem = e.norm(h)
        shifted = F.pad(tgt, (1, 0))[:, :-1]
        h = emb(shifted) + positions(tgt.shape[1], self.d, emb.weight.dtype)
        for layer in dec.layers:
            h = layer(h, mem)
        logits = dec.norm(h) @ emb.weight.T / math.sqrt(self.d)
        b, t, v = logits.shape
        ce = F.cross_entropy(logits.reshape(b * t, v), tgt.reshape(b * t), reduction="none")
        return ce.reshape(b, t).mean(dim=1)


def snapshot(run_dir, step, dtype):
    """{name: tensor}, the chunk rows joined; also the number of rows per name."""
    t = pq.read_table(os.path.join(run_dir, "iterates", f"step={step}", "part-0.parquet")).to_pylist()
    parts, rows = {}, {}
    for r in sorted(t, key=lambda r: (r["name"], r["chunk"])):
        parts.setdefault(r["name"], (r["shape"], []))[1].append(np.asarray(r["values"]))
        rows[r["name"]] = rows.get(r["name"], 0) + 1
    state = {n: torch.from_numpy(np.concatenate(p).astype(np.float64)).to(dtype).reshape(s) for n, (s, p) in parts.items()}
    return state, rows


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
    with open(os.path.join(a.run_dir, "run.yaml")) as f:
        cfg = yaml.safe_load(f)["config"]
    m, data = cfg["model"], cfg["data"]
    dtype = {"f32": torch.float32, "f64": torch.float64}[m["dtype"]]
    vocab, length = data["vocab"], data["seq_len"]

    # data.parquet: the generator's contract.
    table = pq.read_table(os.path.join(a.run_dir, "data.parquet")).to_pydict()
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
    land = pq.read_table(os.path.join(a.run_dir, "landscape.parquet")).to_pylist()
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
    print(f"landscape: {checked} train rows (loss_k, loss_ref, inner, grad_norm, dist) match PyTorch")
    if worst > a.tol:
        print(f"FAIL: worst relative error {worst:.2e} > {a.tol:.0e}")
        sys.exit(1)
    print(f"OK worst relative error {worst:.2e}")


if __name__ == "__main__":
    main()
