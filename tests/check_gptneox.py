#!/usr/bin/env python3
"""Hugging Face transformers check of an abcond run of the GPT-NeoX decoder
(`model.kind: gpt-neox`, models/pythia-*.yaml).

Builds transformers' GPTNeoXForCausalLM from the run's model settings (eager
attention), loads every snapshot with load_state_dict(strict=True), and
recomputes each landscape row (loss_k, loss_ref, inner, grad_norm, dist, cos)
with autograd: f_i = mean next-token cross-entropy of window i, the windows
rebuilt from the token file (tests/abcond_ref/text.py). Replays the first
steps with torch.optim.

usage: check_gptneox.py RUN_DIR [--tol T]      exit status 1 on any disagreement
       check_gptneox.py --counts                 parameter counts and state_dict
                                                 shapes of Pythia-70M/160M (preset, name, shape per line)
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abcond  # noqa: E402
from abcond_ref.compare import rel_err  # noqa: E402
from abcond_ref.optim import TORCH_OPTIM, torch_optimizer, torch_scheduler  # noqa: E402
from abcond_ref.text import text_data, token_data  # noqa: E402

PYTHIA = {"pythia-70m": (512, 6, 8, 2048), "pythia-160m": (768, 12, 12, 3072)}


def hf_config(m, vocab):
    from transformers import GPTNeoXConfig

    c = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=m["width"],
        num_hidden_layers=m["depth"],
        num_attention_heads=m["heads"],
        intermediate_size=m["mlp_dim"],
        rotary_pct=m["rotary_pct"],
        rotary_emb_base=m["rotary_base"],
        max_position_embeddings=4096,
        use_parallel_residual=m["parallel_residual"],
        tie_word_embeddings=False,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        attention_dropout=0.0,
        hidden_dropout=0.0,
    )
    # SDPA: eager attention takes its softmax in f32 even for f64 models.
    c._attn_implementation = "sdpa"
    return c


def counts():
    from transformers import GPTNeoXForCausalLM

    for name, (w, d, h, f) in PYTHIA.items():
        cfg = hf_config({"width": w, "depth": d, "heads": h, "mlp_dim": f, "rotary_pct": 0.25, "rotary_base": 10000.0, "parallel_residual": True}, 50304)
        with torch.device("meta"):
            m = GPTNeoXForCausalLM(cfg)
        print(f"{name}\tparameters\t{sum(p.numel() for p in m.parameters())}")
        for k, v in m.state_dict().items():
            print(f"{name}\t{k}\t{','.join(str(d) for d in v.shape)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--tol", type=float, default=None)
    ap.add_argument("--counts", action="store_true")
    args = ap.parse_args()
    if args.counts:
        return counts()
    from transformers import GPTNeoXForCausalLM

    torch.set_num_threads(1)
    manifest = abcond.read_manifest(args.run_dir)
    cfg = manifest["config"]
    dtype = torch.float64 if cfg["model"]["dtype"] == "f64" else torch.float32
    tol = args.tol if args.tol is not None else (1e-10 if dtype == torch.float64 else 1e-5)
    K = manifest["training"]["total_steps"]
    if cfg["data"]["dataset"] == "text":
        x, y, vocab = text_data(cfg["data"])
        V = len(vocab)
    else:
        x, y, V = token_data(cfg["data"])

    def model():
        m = GPTNeoXForCausalLM(hf_config(cfg["model"], V)).to(dtype)
        m.eval()
        return m

    def load(m, k):
        state = {n: t.to(dtype) for n, t in abcond.load_iterate(args.run_dir, k).items()}
        m.load_state_dict(state, strict=True)

    def per_example(m, idx):
        logits = m(input_ids=x[idx]).logits
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y[idx], reduction="none")
        return nll.mean(1)

    failures, worst = [], {}
    net, ref = model(), model()
    load(ref, K)
    xK = [p.detach().clone() for p in ref.parameters()]
    land = abcond.read_table(os.path.join(args.run_dir, "landscape.parquet")).to_pylist()
    steps = abcond.read_table(os.path.join(args.run_dir, "steps.parquet")).to_pylist()
    current = None
    for r in land:
        k = r["step"]
        if current != k:
            load(net, k)
            current = k
        idx = torch.as_tensor(r["batch_indices"] if r["batch_indices"] is not None else list(range(x.shape[0])))
        net.zero_grad()
        per = per_example(net, idx)
        (per.sum() / len(idx)).backward()
        loss_k = per.double().sum().item() / len(idx)
        g = torch.cat([p.grad.reshape(-1) for p in net.parameters()]).double()
        with torch.no_grad():
            loss_ref = per_example(ref, idx).double().sum().item() / len(idx)
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
                failures.append(f"{what} at step={k} probe={r['probe']}: abcond {r[what]!r} vs transformers {v!r} (rel err {e:.3e})")
    snaps = sorted(int(e.split("=")[1]) for e in os.listdir(os.path.join(args.run_dir, "iterates")))
    m = 0
    if cfg["optim"]["name"] in TORCH_OPTIM:
        while m + 1 in snaps and m + 1 <= K:
            m += 1
    replay = model()
    load(replay, 0)
    replay.train()
    replay_tol = 1e-10 if dtype == torch.float64 else 1e-4
    if m:
        opt = torch_optimizer(replay.parameters(), cfg["optim"])
        sched = torch_scheduler(opt, cfg["schedule"], cfg["optim"]["lr"], K)
    for k in range(m):
        idx = torch.as_tensor(steps[k]["batch_indices"])
        opt.zero_grad()
        loss = per_example(replay, idx).mean()
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
    print(f"ok: {len(land)} rows agree with transformers' GPTNeoXForCausalLM (tol {tol:g})")


if __name__ == "__main__":
    main()
