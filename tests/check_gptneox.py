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
from abcond_ref.landscape import Failures, recompute_rows, replay  # noqa: E402
from abcond_ref.text import lm_data  # noqa: E402

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
    x, y, V, _ = lm_data(cfg["data"])

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

    failures = Failures()
    net, ref = model(), model()
    load(ref, K)
    land = abcond.read_table(os.path.join(args.run_dir, "landscape.parquet")).to_pylist()
    steps = abcond.read_table(os.path.join(args.run_dir, "steps.parquet")).to_pylist()
    recompute_rows(land, net, ref, load, per_example, x.shape[0], tol, failures, reference="transformers")
    replay_tol = 1e-10 if dtype == torch.float64 else 1e-4
    m = replay(args.run_dir, cfg, K, model().train(), load, per_example, steps, lambda mod: list(mod.named_parameters()), replay_tol, failures)
    print(f"replayed {m} steps with torch.optim (tolerance {replay_tol:g})")
    failures.finish(f"ok: {len(land)} rows agree with transformers' GPTNeoXForCausalLM (tol {tol:g})")


if __name__ == "__main__":
    main()
