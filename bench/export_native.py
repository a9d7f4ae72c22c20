#!/usr/bin/env python3
"""Exports the model of a native abcond run (mlp or resnet18) at its x^0 as a
TorchScript module with the Python companion (abcond.export), for the
`tsprobe-*` cases of bench/run.py: the same architecture as abcond's native
model, written in PyTorch (tests/abcond_ref), returning logits, with
nn.CrossEntropyLoss(reduction="none").

usage: export_native.py RUN_DIR OUT.pt
"""

import sys

import torch

import abcond
from abcond_ref import models
from abcond_ref.runs import Run


def main():
    run_dir, out = sys.argv[1], sys.argv[2]
    run = Run(run_dir)
    m = run.config["model"]
    shape = tuple(run.x.shape[1:])
    if m["kind"] == "mlp":
        model = models.MLPLogits(int(run.x[0].numel()), m["width"], run.classes)
    elif m["kind"] == "resnet18":
        model = models.ResNetCifarLogits([2, 2, 2, 2], shape[0], run.classes)
    else:
        sys.exit(f"export_native.py: model kind {m['kind']} is not benchmarked")
    run.load(model, 0)
    x, y = run.x[:2].to(torch.float32), run.y[:2]
    abcond.export(model, torch.nn.CrossEntropyLoss(reduction="none"), (x, y), out)
    print(out)


if __name__ == "__main__":
    main()
