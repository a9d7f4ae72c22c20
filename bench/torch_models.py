"""The PyTorch (Python, eager) side of the DLRM, padded-Transformer and U-Net
training-step benchmarks: the work of `abcond train` on
bench/configs/dlrm-criteo.yaml, wmt-pairs.yaml or unet-fastmri.yaml written the way
a plain PyTorch script would do it, and timed the same way (bench/run.py
compares the two; docs/benchmarks.md).

Same as abcond: the parity references (tests/abcond_ref/dlrm.py: AlgoPerf's
DlrmSmall, its four chunks concatenated at each forward pass as AlgoPerf does;
tests/abcond_ref/transformer.py: AlgoPerf's masks and torch's label-smoothed
cross-entropy; tests/abcond_ref/unet.py: AlgoPerf's U-Net, the inputs made
from the volumes by its numpy pipeline) at the config's sizes, f32, the data read once before the loop
by the reference readers, the loss read back every step, the gradient norm in
f64 every step, torch.optim.Adam (its default CPU code path), the same number
of steps and intra-op threads. Different: the permutations come from
torch.randperm.

Timed per step (time.perf_counter): from gathering the minibatch to the end of
the optimiser step. Prints one JSON object on stdout, as bench/torch_train.py.

    PYTHONPATH=tests python bench/torch_models.py --model dlrm --data DIR --steps 100
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import yaml

from abcond_ref import dlrm, translation, unet
from abcond_ref.transformer import Transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "dlrm": "bench/configs/dlrm-criteo.yaml",
    "wmt": "bench/configs/wmt-pairs.yaml",
    "unet": "bench/configs/unet-fastmri.yaml",
}


def build(model, data_path):
    """(module, number of examples, losses(module, idx) -> per-example [B])."""
    cfg = yaml.safe_load(open(os.path.join(ROOT, CONFIGS[model])))
    m, d = cfg["model"], dict(cfg["data"], path=data_path)
    if model == "dlrm":
        preset = yaml.safe_load(open(os.path.join(ROOT, "models", m["preset"] + ".yaml")))
        label, dense, cat = dlrm.read_days(data_path, d.get("examples"))
        net = dlrm.DlrmSmall(preset["vocab"], preset["embed_dim"], dlrm.NUM_DENSE, tuple(preset["bottom"]), tuple(preset["top"]))

        def losses(net, idx, smoothing=True):
            return dlrm.per_example_loss(net, dense[idx], cat[idx], label[idx])

        return net, len(label), cfg, losses
    if model == "unet":
        preset = yaml.safe_load(open(os.path.join(ROOT, "models", m["preset"] + ".yaml")))
        preset.update({k: v for k, v in m.items() if k != "preset"})
        xs, ys = (torch.from_numpy(a).float() for a in unet.run_slices(d))
        net = unet.UNet(preset["in_chans"], preset["out_chans"], preset["channels"], preset["pool_layers"], preset["dropout"])

        def losses(net, idx, smoothing=True):
            return unet.per_example_l1(net, xs[idx], ys[idx])

        return net, len(xs), cfg, losses
    pairs = []
    files = sorted(os.path.join(data_path, f) for f in os.listdir(data_path) if ".tfrecord" in f)
    for f in files:
        pairs += translation.read_tfrecord(f)
    _, src, tgt = translation.padded(pairs, d["seq_len"])
    src, tgt = torch.from_numpy(src), torch.from_numpy(tgt)
    net = Transformer(d["vocab"], m["width"], m["heads"], m["mlp_dim"], m["depth"])
    eps = m.get("label_smoothing", 0.0)

    def losses(net, idx, smoothing=True):
        return net(src[idx], tgt[idx], eps if smoothing else 0.0)

    return net, len(src), cfg, losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device != "cpu":
        sys.exit("bench/torch_models.py: CPU only")
    setup_start = time.perf_counter()
    torch.manual_seed(a.seed)
    model, n, cfg, losses = build(a.model, a.data)
    batch = a.batch or cfg["train"]["batch_size"]
    model.train()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg["optim"]["lr"])
    per_epoch = n // batch
    gen = torch.Generator().manual_seed(a.seed)
    setup_seconds = time.perf_counter() - setup_start

    times, loss_value = [], float("nan")
    loop_start = time.perf_counter()
    for k in range(a.steps):
        t0 = time.perf_counter()
        if k % per_epoch == 0:
            order = torch.randperm(n, generator=gen)
        pos = (k % per_epoch) * batch
        idx = order[pos : pos + batch]
        opt.zero_grad()
        loss = losses(model, idx).mean()
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
                "model": a.model,
                "device": a.device,
                "threads": torch.get_num_threads(),
                "batch": batch,
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
