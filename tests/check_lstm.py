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
from abcond_ref.compare import rel_err  # noqa: E402
from abcond_ref.optim import TORCH_OPTIM, torch_optimizer, torch_scheduler  # noqa: E402
from abcond_ref.text import lstm_model, text_data, token_data  # noqa: E402


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
    failures = []

    if cfg["data"]["dataset"] == "text":
        x, y, vocab = text_data(cfg["data"])
        theirs = abcond.read_table(os.path.join(args.run_dir, "vocab.parquet")).to_pylist()
        if [(r["token"], r["count"]) for r in theirs] != vocab:
            diff = next(i for i, (r, v) in enumerate(zip(theirs, vocab + [None] * len(theirs))) if (r["token"], r["count"]) != v)
            failures.append(f"vocab.parquet differs from the Python vocabulary at id {diff}: {theirs[diff]} vs {vocab[diff] if diff < len(vocab) else None} ({len(theirs)} vs {len(vocab)} entries)")
        V = len(vocab)
    else:
        x, y, V = token_data(cfg["data"])
    if x.shape[0] != manifest["training"]["examples"]:
        failures.append(f"{x.shape[0]} windows here, {manifest['training']['examples']} in run.yaml")

    def model():
        return lstm_model(cfg["model"], V, cfg["seed"])

    ref_init = model()
    x0 = abcond.load_iterate(args.run_dir, 0)
    for n, t in ref_init.state_dict().items():
        if n == "decoder.weight" and cfg["model"].get("tie_weights"):
            continue
        if not torch.equal(t, x0[n].to(t.dtype)):
            failures.append(f"x^0 tensor {n} differs from torch.manual_seed({cfg['seed']}) initialisation of RNNModel")

    def load(m, k):
        state = {n: t.to(dtype) for n, t in abcond.load_iterate(args.run_dir, k).items()}
        if cfg["model"].get("tie_weights"):
            state["decoder.weight"] = state["encoder.weight"]
        m.load_state_dict(state, strict=True)

    net, ref = model(), model()
    net.eval()
    ref.eval()
    load(ref, K)
    xK = [p.detach().clone() for p in ref.parameters()]
    land = abcond.read_table(os.path.join(args.run_dir, "landscape.parquet")).to_pylist()
    steps = abcond.read_table(os.path.join(args.run_dir, "steps.parquet")).to_pylist()
    worst, current = {}, None
    for r in land:
        k = r["step"]
        if current != k:
            load(net, k)
            current = k
        idx = torch.as_tensor(r["batch_indices"] if r["batch_indices"] is not None else list(range(x.shape[0])))
        net.zero_grad()
        per = net(x[idx], y[idx])
        (per.sum() / len(idx)).backward()
        loss_k = per.double().sum().item() / len(idx)
        g = torch.cat([p.grad.reshape(-1) for p in net.parameters()]).double()
        with torch.no_grad():
            loss_ref = ref(x[idx], y[idx]).double().sum().item() / len(idx)
        d = torch.cat([(p.detach() - q).reshape(-1) for p, q in zip(net.parameters(), xK)]).double()
        inner, gn, dist = torch.dot(g, d).item(), g.norm().item(), d.norm().item()
        got = {"loss_k": loss_k, "loss_ref": loss_ref, "inner": inner, "grad_norm": gn, "dist": dist}
        if dist > 0:
            got["cos"] = inner / (gn * dist)
        for what, v in got.items():
            e = rel_err(r[what], v, gn * dist if what == "inner" else 0.0)
            if e > worst.get(what, (-1,))[0]:
                worst[what] = (e, f"step={k} probe={r['probe']}")
            if not e <= tol:
                failures.append(f"{what} at step={k} probe={r['probe']}: abcond {r[what]!r} vs PyTorch {v!r} (rel err {e:.3e})")
        if r["probe"] == "train" and cfg["model"].get("dropout", 0.0) == 0.0:
            e = rel_err(steps[k]["loss"], r["loss_k"])
            if not e <= tol:
                failures.append(f"steps.loss at {k}: {steps[k]['loss']!r} vs probe loss_k {r['loss_k']!r}")
    # Replay with torch.optim (no dropout: its random masks are libtorch's
    # generator state inside abcond's run).
    m = 0
    snaps = sorted(int(e.split("=")[1]) for e in os.listdir(os.path.join(args.run_dir, "iterates")))
    if cfg["model"].get("dropout", 0.0) == 0.0 and cfg["optim"]["name"] in TORCH_OPTIM:
        while m + 1 in snaps and m + 1 <= K:
            m += 1
    replay = model()
    load(replay, 0)
    replay.train()
    if m:
        opt = torch_optimizer(replay.parameters(), cfg["optim"])
        sched = torch_scheduler(opt, cfg["schedule"], cfg["optim"]["lr"], K)
    replay_tol = 1e-10 if dtype == torch.float64 else 1e-4
    for k in range(m):
        idx = torch.as_tensor(steps[k]["batch_indices"])
        opt.zero_grad()
        loss = replay(x[idx], y[idx]).mean()
        if not rel_err(steps[k]["loss"], loss.item()) <= replay_tol:
            failures.append(f"replay loss at step {k}: abcond {steps[k]['loss']!r} vs torch.optim {loss.item()!r}")
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        nxt = abcond.load_iterate(args.run_dir, k + 1)
        for name, p in replay.named_parameters():
            err = (p.detach().double() - nxt[name].double()).abs().max().item()
            scale = max(nxt[name].double().abs().max().item(), 1.0)
            if not err / scale <= replay_tol:
                failures.append(f"x^{k + 1} {name} vs torch.optim replay: rel err {err / scale:.2e}")
    print(f"replayed {m} steps with torch.optim (tolerance {replay_tol:g})")
    for what, (e, where) in sorted(worst.items()):
        print(f"{what:10s} worst rel err {e:.2e} at {where}")
    if failures:
        print("\n".join(failures[:20]))
        sys.exit(1)
    print(f"ok: {len(land)} rows agree with PyTorch's nn.LSTM (tol {tol:g}); vocabulary and x^0 identical")


if __name__ == "__main__":
    main()
