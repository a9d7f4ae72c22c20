"""The PyTorch (Python, eager) side of the probe benchmark: the work of
`abcond probe RUN_DIR --set probe.extra_batches=0 --set probe.full=false` (the
minibatch i_k of each snapshot only), written as a plain PyTorch script, on the
same run directory (bench/run.py compares the two; docs/benchmarks.md).

Setup (timed separately): the data as abcond loaded it (tests/abcond_ref/runs.py
`Run`, from data.parquet and the source files), the model and a second copy
holding x^K (read from iterates/step=<K>/part-0.parquet), the minibatches i_k
from steps.parquet.

Per snapshot k < K (timed, time.perf_counter), the same work as abcond's probe:
  1. read iterates/step=<k>/part-0.parquet with pyarrow (chunks joined) and copy
     the tensors (parameters and BatchNorm buffers) into the model;
  2. dist = ||x^k − x^K||, the difference and the sum in f64;
  3. loss_ref = f_i(x^K): a forward pass without gradients on i_k;
  4. loss_k = f_i(x^k) and ∇f_i(x^k): forward and backward on i_k, the
     per-example losses summed in f64;
  5. inner = <∇f_i(x^k), x^k − x^K> and ||∇f_i(x^k)||, in f64;
  6. write the snapshot's row to a Parquet part file (abcond writes
     probe-parts/step=<k>.parquet).
BatchNorm uses the probed minibatch's statistics without touching the running
statistics (abcond's default `probe.batchnorm: batch-stats`).

Prints one JSON object on stdout: setup_seconds, snapshots,
seconds_per_snapshot_median, seconds_per_snapshot_mean, read_seconds.

    PYTHONPATH=tests python bench/torch_probe.py RUN_DIR --parts WORK/torch-parts [--device cuda] [--threads N]

(from the repository root; PYTHONPATH=tests makes the package tests/abcond_ref
importable, bench/run.py sets it for the scripts it runs.)
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import abcond
from abcond_ref import models
from abcond_ref import dlrm, translation, unet
from abcond_ref.gnn import GNN, batch as graph_batch, per_graph_loss, read_ogb
from abcond_ref.runs import Run
from abcond_ref.transformer import Transformer

# The reference modules switch BatchNorm per forward pass for the parity tests;
# here the modules are put once into the state abcond's batch-stats policy means.
models.bn_policy = lambda model: contextlib.nullcontext()
# Arrow's buffers are read-only; they are only copied from (into the parameters).
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def batch_stats_mode(model):
    """Train-mode BatchNorm that neither reads nor updates the running statistics
    (F.batch_norm(x, None, None, w, b, training=True)), as abcond's batch-stats."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats = False
    return model


def read_snapshot(path):
    """{name: flat numpy array} of an abcond tensor file, chunks joined in order.

    A plain pyarrow reader on purpose, not abcond.read_tensors: this is the
    timed baseline, what an eager PyTorch probe costs, and the companion's
    checksum verification would slow the baseline, not abcond."""
    t = pq.read_table(path, columns=["name", "chunk", "values"])
    names = t.column("name").to_pylist()
    chunks = t.column("chunk").to_pylist()
    values = t.column("values").combine_chunks()
    flat = values.values.to_numpy(zero_copy_only=False)
    offsets = values.offsets.to_numpy()
    parts = {}
    for i in sorted(range(len(names)), key=lambda i: (names[i], chunks[i])):
        parts.setdefault(names[i], []).append(flat[offsets[i] : offsets[i + 1]])
    return {n: p[0] if len(p) == 1 else np.concatenate(p) for n, p in parts.items()}


def load(tensors, path):
    """Copies snapshot `path` into `tensors` ({name: parameter or buffer})."""
    state = read_snapshot(path)
    if set(state) != set(tensors):
        sys.exit(f"{path}: tensor names differ from the model's: {sorted(set(state) ^ set(tensors))}")
    with torch.no_grad():
        for n, t in tensors.items():
            t.copy_(torch.from_numpy(state[n]).view(t.shape))


def model_tensors(model):
    out = dict(model.named_parameters())
    out.update((n, b) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--parts", required=True, help="directory for the per-snapshot row files (emptied first)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    shutil.rmtree(a.parts, ignore_errors=True)
    os.makedirs(a.parts)

    setup_start = time.perf_counter()
    manifest = abcond.read_manifest(a.run_dir)
    cfg = manifest["config"]
    total = manifest["training"]["total_steps"]
    if cfg["model"]["kind"] == "gnn":
        # AlgoPerf's GNN (the parity reference) on the run's OGB graphs; each
        # minibatch concatenated as the reference pipeline does.
        graphs = read_ogb(cfg["data"]["path"])
        m = cfg["model"]
        make = lambda: GNN(len(graphs[0]["label"]), m["latent_dim"], (m["hidden_dim"],), m["message_passing_steps"], graphs[0]["node_feat"].shape[1], 3).eval()  # noqa: E731
        model, reference = make().to(device), make().to(device)

        def losses(net, idx):
            b = graph_batch(graphs, idx, torch.float32)
            return per_graph_loss(net(b), b["labels"])

    elif cfg["model"]["kind"] in ("dlrm", "transformer", "unet") and cfg["data"]["dataset"] != "synthetic-translation":
        # The parity references on the data read again from the run's files
        # (data.parquet's source_index picks the examples).
        m, d = cfg["model"], cfg["data"]
        rows = abcond.read_table(os.path.join(a.run_dir, "data.parquet")).column("source_index").to_pylist()
        if m["kind"] == "dlrm":
            label, dense, cat = (t[rows].to(device) for t in dlrm.read_days(d["path"], d.get("examples")))
            make = lambda: dlrm.DlrmSmall(m["vocab"], m["embed_dim"], dlrm.NUM_DENSE, tuple(m["bottom"]), tuple(m["top"])).eval()  # noqa: E731

            def losses(net, idx):
                idx = torch.as_tensor(idx, dtype=torch.long, device=device)
                return dlrm.per_example_loss(net, dense[idx], cat[idx], label[idx])

        elif m["kind"] == "unet":
            xs, ys = (torch.from_numpy(t[rows]).float().to(device) for t in unet.run_slices(d))
            make = lambda: unet.UNet(m["in_chans"], m["out_chans"], m["channels"], m["pool_layers"], m["dropout"]).eval()  # noqa: E731

            def losses(net, idx):
                idx = torch.as_tensor(idx, dtype=torch.long, device=device)
                return unet.per_example_l1(net, xs[idx], ys[idx])

        else:
            src, tgt = (torch.from_numpy(t).to(device) for t in translation.read_run_pairs(d, rows))
            make = lambda: Transformer(d["vocab"], m["width"], m["heads"], m["mlp_dim"], m["depth"]).eval()  # noqa: E731

            def losses(net, idx):
                idx = torch.as_tensor(idx, dtype=torch.long, device=device)
                return net(src[idx], tgt[idx])

        model, reference = make().to(device), make().to(device)

    else:
        run = Run(a.run_dir)
        x, y = run.x.to(device), run.y.to(device)
        model = batch_stats_mode(run.model().to(device))
        reference = batch_stats_mode(run.model().to(device))

        def losses(net, idx):
            idx = torch.as_tensor(idx, dtype=torch.long, device=device)
            return net(x.index_select(0, idx), y.index_select(0, idx))

    it = os.path.join(a.run_dir, "iterates")
    snap = lambda k: os.path.join(it, f"step={k}", "part-0.parquet")  # noqa: E731
    load(model_tensors(reference), snap(total))
    params = list(model.parameters())
    ref_params = [p.detach() for p in reference.parameters()]
    steps = pq.read_table(os.path.join(a.run_dir, "steps.parquet"), columns=["step", "batch_indices"]).to_pydict()
    batches = {s: b for s, b in zip(steps["step"], steps["batch_indices"]) if b is not None}
    todo = sorted(int(d.split("=")[1]) for d in os.listdir(it) if d.startswith("step="))
    todo = [k for k in todo if k != total]
    tensors = model_tensors(model)
    if device.type == "cuda":
        torch.cuda.synchronize()
    setup_seconds = time.perf_counter() - setup_start

    times, read_seconds = [], 0.0
    for k in todo:
        t0 = time.perf_counter()
        load(tensors, snap(k))
        read_seconds += time.perf_counter() - t0
        with torch.no_grad():
            diffs = [p.detach().double() - r.double() for p, r in zip(params, ref_params)]
            dist = math.sqrt(torch.stack([(d * d).sum() for d in diffs]).sum().item())
        b = len(batches[k])
        with torch.no_grad():
            loss_ref = losses(reference, batches[k]).double().sum().item() / b
        model.zero_grad()
        per = losses(model, batches[k])
        loss_k = per.double().sum().item() / b
        (per.sum() / b).backward()
        with torch.no_grad():
            inner = torch.stack([(p.grad.double() * d).sum() for p, d in zip(params, diffs)]).sum().item()
            norms = [torch.linalg.vector_norm(p.grad, dtype=torch.float64) for p in params]
            grad_norm = torch.linalg.vector_norm(torch.stack(norms)).item()
        row = {
            "step": [k],
            "probe": ["train"],
            "batch_size": [b],
            "loss_k": [loss_k],
            "loss_ref": [loss_ref],
            "inner": [inner],
            "grad_norm": [grad_norm],
            "dist": [dist],
            "cos": [inner / (grad_norm * dist) if grad_norm * dist > 0 else float("nan")],
            "batch_indices": [list(batches[k])],
        }
        pq.write_table(pa.table(row), os.path.join(a.parts, f"step={k}.parquet"))
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "side": "pytorch",
                "device": str(device),
                "threads": torch.get_num_threads(),
                "setup_seconds": setup_seconds,
                "snapshots": len(times),
                "seconds_per_snapshot_median": statistics.median(times) if times else None,
                "seconds_per_snapshot_mean": statistics.fmean(times) if times else None,
                "read_seconds": read_seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
