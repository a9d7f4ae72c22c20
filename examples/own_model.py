#!/usr/bin/env python3
"""Bring your own PyTorch model to abcond.

An MLP with LayerNorm and GELU (a model abcond does not ship) on real
Fashion-MNIST: this script writes the model as a TorchScript module that
returns per-example losses, the data as a safetensors file, and a config;
abcond then trains the model, probes its snapshots and analyses them.

    .venv/bin/python examples/own_model.py            # → examples/out/
    target/release/abcond run examples/out/own-model.yaml

Options: --data DIR (the Fashion-MNIST IDX files; default the Debian
package's /usr/share/datasets/fashion-mnist), --examples N (default 10000),
--epochs E (default 10), --out DIR.
"""

import argparse
import gzip
import os

import numpy as np
import torch
from torch import nn

import abcond


class Net(nn.Module):
    """784 → 128 → LayerNorm → GELU → 10."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.norm = nn.LayerNorm(128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.norm(self.fc1(x.flatten(1)))))


def read_idx(path):
    """An IDX file (optionally gzipped) as a numpy array."""
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            raw = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
            ndim = raw[3]
            dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise FileNotFoundError(f"{path}(.gz): install Fashion-MNIST (apt-get install dataset-fashion-mnist) or pass --data")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--examples", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte"))[: args.examples]
    labels = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte"))[: args.examples]
    x = torch.from_numpy((images.astype(np.float32) / 255 - 0.2860) / 0.3530).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))

    torch.manual_seed(0)
    model = Net()
    data = abcond.save_tensors(os.path.join(args.out, "fmnist.safetensors"), x=x, y=y)
    module = abcond.export(model, nn.CrossEntropyLoss(reduction="none"), (x[:8], y[:8]), os.path.join(args.out, "model.pt"))

    config = os.path.join(args.out, "own-model.yaml")
    with open(config, "w") as f:
        f.write(f"""# Written by examples/own_model.py: your model (model.pt) on your data.
experiment: own-model
seed: 0
model: {{kind: torchscript, path: {os.path.abspath(module)}}}
data: {{dataset: tensors, path: {os.path.abspath(data)}}}
train: {{batch_size: 64, epochs: {args.epochs}}}
optim: {{name: sgd, lr: 0.05}}
snapshots: {{log_spaced: 20, every: 200}}
probe: {{extra_batches: 2, full: true, full_subset: 2000}}
""")
    print(f"wrote {module}, {data} and {config}\nnext: abcond run {config}")


if __name__ == "__main__":
    main()
