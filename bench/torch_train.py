"""The PyTorch (Python, eager) side of the training-step benchmark: the work of
`abcond train` on bench/configs/{mlp-fmnist,resnet18-cifar}.yaml, written the way a
plain PyTorch script would do it, and timed the same way (bench/run.py compares
the two; docs/benchmarks.md).

Same as abcond: the model (tests/abcond_ref/models.py mirrors abcond's MLP and
ResNet-18-CIFAR with abcond's parameter names), f32, the data files and their
normalisation, the whole data set preloaded as one tensor on the device and
each minibatch taken with index_select, epochs as permutations cut into blocks
of B (the last N mod B examples skipped), cross-entropy as the mean of the
per-example losses, the loss read back every step (abcond records it), the
gradient norm over all parameters accumulated in f64 every step (abcond records
it too), torch.optim.SGD (with its default code path) with a constant learning
rate, the same number of steps and intra-op threads. BatchNorm runs in train
mode (batch statistics, running statistics updated), as in abcond's steps.
Different from abcond, on purpose or because it does not matter for time: the
permutations come from torch.randperm rather than abcond's xoshiro stream (same
shapes, other indices), and nothing is written to disk (abcond writes x^K and
steps.parquet after its loop, outside the per-step times).

Timed per step (time.perf_counter): from cutting the minibatch to the end of the
optimiser step. The loss and gradient norm are read back to the host each step,
which also synchronises a GPU, as abcond does. Prints one JSON object on stdout:
setup_seconds (data and model, after the imports), steps, loop_seconds, step_seconds_median,
step_seconds_mean, final_loss.

    PYTHONPATH=tests python bench/torch_train.py --model mlp --data /usr/share/datasets/fashion-mnist --steps 2000
    PYTHONPATH=tests python bench/torch_train.py --model resnet18 --data WORK/cifar10 --steps 20 --device cuda

(from the repository root; PYTHONPATH=tests makes the package tests/abcond_ref
importable, bench/run.py sets it for the scripts it runs.)
"""

import argparse
import contextlib
import json
import statistics
import sys
import time

import numpy as np
import torch

from abcond_ref import models
from abcond_ref.runs import CIFAR_NORM, NORM, find, read_cifar, read_idx

# The reference modules switch BatchNorm per forward pass for the parity tests;
# a training script just leaves the model in train mode.
models.bn_policy = lambda model: contextlib.nullcontext()

MODELS = {
    # name: (dataset, batch, lr, momentum) — bench/configs/*.yaml
    "mlp": ("fashion-mnist", 64, 0.09, 0.0),
    "resnet18": ("cifar10", 128, 0.01, 0.9),
}


def load_data(model, path):
    """The training set as abcond loads it: (x [N, C, H, W] f32, y [N] int64)."""
    if MODELS[model][0] == "fashion-mnist":
        images = read_idx(find(path, "train-images-idx3-ubyte"))
        labels = read_idx(find(path, "train-labels-idx1-ubyte")).astype(np.int64)
        mean, std = NORM["fashion-mnist"]
        x = (images.astype(np.float64)[:, None, :, :] / 255.0 - mean) / std
    else:
        labels, images = read_cifar(path, "cifar10")
        mean, std = (np.array(v).reshape(1, 3, 1, 1) for v in CIFAR_NORM["cifar10"])
        x = (images.astype(np.float64) / 255.0 - mean) / std
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels.copy())


def build(model, x, classes=10):
    if model == "mlp":
        return models.MLP(int(np.prod(x.shape[1:])), 128, classes)
    return models.ResNetCifar([2, 2, 2, 2], x.shape[1], classes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--data", required=True, help="directory of the IDX (mlp) or CIFAR-10 binary (resnet18) files")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, help="default: the bench config's")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    _, batch, lr, momentum = MODELS[a.model]
    batch = a.batch or batch
    device = torch.device(a.device)

    setup_start = time.perf_counter()  # after the imports: abcond's setup excludes loading libtorch too
    torch.manual_seed(a.seed)
    x, y = load_data(a.model, a.data)
    x, y = x.to(device), y.to(device)
    model = build(a.model, x).to(device)
    model.train()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    n = x.shape[0]
    per_epoch = n // batch
    if per_epoch == 0:
        sys.exit(f"--batch {batch} is larger than the data ({n} examples)")
    gen = torch.Generator().manual_seed(a.seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    setup_seconds = time.perf_counter() - setup_start

    times = []
    loss_value = float("nan")
    loop_start = time.perf_counter()
    for k in range(a.steps):
        t0 = time.perf_counter()
        if k % per_epoch == 0:
            order = torch.randperm(n, generator=gen).to(device)
        pos = (k % per_epoch) * batch
        idx = order[pos : pos + batch]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        opt.zero_grad()
        loss = model(xb, yb).mean()
        loss_value = loss.item()
        loss.backward()
        with torch.no_grad():  # as clip_grad_norm_ does it, in f64
            norms = [torch.linalg.vector_norm(p.grad, dtype=torch.float64) for p in params]
            grad_norm = torch.linalg.vector_norm(torch.stack(norms)).item()
        if not (np.isfinite(loss_value) and np.isfinite(grad_norm)):
            sys.exit(f"diverged at step {k}: loss {loss_value}, gradient norm {grad_norm}")
        opt.step()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    loop_seconds = time.perf_counter() - loop_start
    print(
        json.dumps(
            {
                "side": "pytorch",
                "model": a.model,
                "device": str(device),
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
