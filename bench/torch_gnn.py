"""The PyTorch (Python, eager) side of the GNN training-step benchmark: the work
of `abcond train` on bench/configs/gnn-molecules.yaml written the way a plain
PyTorch script would do it, and timed the same way (bench/run.py compares the
two; docs/benchmarks.md).

Same as abcond: AlgoPerf's ogbg graph network at the config's widths
(tests/abcond_ref/gnn.py, the parity reference: scatter_add_ sums,
repeat_interleave for the globals), f32, the OGB raw files read once before the
loop, each minibatch of 64 molecules concatenated per step with every bond
made two directed edges, the masked binary cross-entropy averaged per graph
and over the minibatch, the loss read back every step, the gradient norm in
f64 every step, torch.optim.Adam (its default CPU code path), the same number
of steps and intra-op threads. Different: the permutations come from
torch.randperm, and the minibatch is assembled with numpy from per-graph
arrays (as a plain script does), not from abcond's index tables.

Timed per step (time.perf_counter): from building the minibatch to the end of
the optimiser step. Prints one JSON object on stdout, as bench/torch_train.py.

    PYTHONPATH=tests python bench/torch_gnn.py --data data/ogbg-nci-tpsa --steps 300
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from abcond_ref.gnn import GNN, batch as make_batch, per_graph_loss, read_ogb


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="an OGB raw directory (scripts/molecules-to-ogb.py)")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--message-passing-steps", type=int, default=3)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device != "cpu":
        sys.exit("bench/torch_gnn.py: CPU only (the reference batches on the host)")
    setup_start = time.perf_counter()
    torch.manual_seed(a.seed)
    graphs = read_ogb(a.data)
    tasks = len(graphs[0]["label"])
    model = GNN(tasks, a.width, (a.width,), a.message_passing_steps, graphs[0]["node_feat"].shape[1], 3)
    model.train()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    n = len(graphs)
    per_epoch = n // a.batch
    gen = torch.Generator().manual_seed(a.seed)
    setup_seconds = time.perf_counter() - setup_start

    times, loss_value = [], float("nan")
    loop_start = time.perf_counter()
    for k in range(a.steps):
        t0 = time.perf_counter()
        if k % per_epoch == 0:
            order = torch.randperm(n, generator=gen).tolist()
        pos = (k % per_epoch) * a.batch
        b = make_batch(graphs, order[pos : pos + a.batch], torch.float32)
        opt.zero_grad()
        loss = per_graph_loss(model(b), b["labels"]).mean()
        loss_value = loss.item()
        loss.backward()
        with torch.no_grad():
            norms = [torch.linalg.vector_norm(p.grad, dtype=torch.float64) for p in params]
            grad_norm = torch.linalg.vector_norm(torch.stack(norms)).item()
        if not (np.isfinite(loss_value) and np.isfinite(grad_norm)):
            sys.exit(f"diverged at step {k}: loss {loss_value}, gradient norm {grad_norm}")
        opt.step()
        times.append(time.perf_counter() - t0)
    loop_seconds = time.perf_counter() - loop_start
    print(
        json.dumps(
            {
                "side": "pytorch",
                "model": "gnn",
                "device": a.device,
                "threads": torch.get_num_threads(),
                "batch": a.batch,
                "setup_seconds": setup_seconds,
                "steps": a.steps,
                "loop_seconds": loop_seconds,
                "step_seconds_median": statistics.median(times),
                "step_seconds_mean": statistics.fmean(times),
                "final_loss": loss_value,
            }
        )
    )


if __name__ == "__main__":
    main()
