#!/usr/bin/env python3
"""Your own PyTorch training loop, recorded as an abcond run.

The MLP with LayerNorm and GELU of examples/own_model.py, on real
Fashion-MNIST, trained by a plain PyTorch loop (torch.optim.SGD with
momentum, shuffled minibatches). Four lines of abcond.Logger record it in
abcond's run-directory format; abcond then probes and analyses the run as if
it had trained it:

    .venv/bin/python examples/own_model_loop.py        # → examples/out-loop/
    target/release/abcond probe   examples/out-loop/results/own-model-loop/seed0
    target/release/abcond analyze examples/out-loop/results/own-model-loop/seed0

Options: --data DIR (Fashion-MNIST IDX files; default the Debian package's
/usr/share/datasets/fashion-mnist), --examples N (default 10000), --epochs E
(default 10), --out DIR, --device D (where the loop trains; default cpu).
"""

import argparse
import os

import numpy as np
import torch
from torch import nn

import abcond
from own_model import Net, read_idx


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--examples", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out-loop"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte"))[: args.examples]
    labels = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte"))[: args.examples]
    x = torch.from_numpy((images.astype(np.float32) / 255 - 0.2860) / 0.3530).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    n, batch_size = len(x), 64

    torch.manual_seed(0)
    model = Net()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    # What abcond needs to measure the run: the data with their example
    # indices, and the model as a module returning per-example losses.
    data = abcond.save_tensors(os.path.join(args.out, "fmnist.safetensors"), x=x, y=y)
    module = abcond.export(model, nn.CrossEntropyLoss(reduction="none"), (x[:8], y[:8]), os.path.join(args.out, "model.pt"))
    config = {
        "experiment": "own-model-loop",
        "model": {"kind": "torchscript", "path": module},
        "data": {"dataset": "tensors", "path": data},
        "train": {"batch_size": batch_size, "epochs": args.epochs},
        "snapshots": {"log_spaced": 20, "every": 200},
        "probe": {"extra_batches": 2, "full": True, "full_subset": 2000},
    }
    run = os.path.join(args.out, "results", "own-model-loop", "seed0")
    model.to(args.device)
    x, y = x.to(args.device), y.to(args.device)

    # The training loop, as you would write it; the Logger's lines are marked.
    shuffle = torch.Generator().manual_seed(0)
    with abcond.Logger(run, config, model, optimizer, replace=True) as log:  # abcond
        for epoch in range(args.epochs):
            for idx in torch.randperm(n, generator=shuffle).split(batch_size)[: n // batch_size]:
                loss = loss_fn(model(x[idx.to(args.device)]), y[idx.to(args.device)])
                optimizer.zero_grad()
                loss.backward()
                log.step(loss, idx)  # abcond: after backward(), before step()
                optimizer.step()
            print(f"epoch {epoch + 1}/{args.epochs}: minibatch loss {loss.item():.4f}")
    print(f"run directory: {run}\nnext: abcond probe {run} && abcond analyze {run}")


if __name__ == "__main__":
    main()
