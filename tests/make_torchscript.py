#!/usr/bin/env python3
"""Writes TorchScript modules and tensor files for tests/torchscript.rs.

From a native abcond run of `preset: mlp` (RUN_DIR), written independently of
the Rust code: the paper MLP of tests/abcond_ref (same parameter names) with
the run's x^0, as a per-example-loss module following abcond's TorchScript
protocol (`abcond.torchscript/1`: forward(x, y) → f_i of shape [B],
abcond_info(), abcond_buffers()), and the run's data set as a safetensors
file (the format written by hand: 8-byte little-endian header length, JSON
header, raw little-endian values) and as an .npz. Plus the bad inputs: a
module returning a scalar, a module without parameters, a module that is not
an abcond module, tensors that disagree in length, integer inputs.

usage: make_torchscript.py RUN_DIR OUT_DIR
"""

import json
import os
import struct
import sys
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from abcond_ref.runs import Run  # noqa: E402


class PerExample(torch.nn.Module):
    """The protocol wrapper: the user's module as `self.model`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        return self.model(x, y)

    @torch.jit.export
    def abcond_info(self) -> Dict[str, str]:
        return {
            "protocol": "abcond.torchscript/1",
            "prefix": "model.",
            "buffers": "",
            "batchnorm": "false",
            "dropout": "false",
        }

    @torch.jit.export
    def abcond_buffers(self) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        return out


class BNNet(torch.nn.Module):
    """Linear → BatchNorm1d → ReLU → (Dropout) → Linear, cross-entropy per example."""

    def __init__(self, d, width, classes, dropout):
        super().__init__()
        self.fc1 = torch.nn.Linear(d, width)
        self.bn = torch.nn.BatchNorm1d(width)
        self.drop = torch.nn.Dropout(0.5 if dropout else 0.0)
        self.fc2 = torch.nn.Linear(width, classes)

    def forward(self, x, y):
        h = self.drop(torch.relu(self.bn(self.fc1(x.flatten(1)))))
        return torch.nn.functional.cross_entropy(self.fc2(h), y, reduction="none")


class PerExampleBN(torch.nn.Module):
    """The protocol wrapper of a BNNet: its buffers named and returned."""

    def __init__(self, model, dropout: bool):
        super().__init__()
        self.model = model
        self.dropout = "true" if dropout else "false"

    def forward(self, x, y):
        return self.model(x, y)

    @torch.jit.export
    def abcond_info(self) -> Dict[str, str]:
        return {
            "protocol": "abcond.torchscript/1",
            "prefix": "model.",
            "buffers": "model.bn.running_mean,model.bn.running_var,model.bn.num_batches_tracked",
            "batchnorm": "true",
            "dropout": self.dropout,
        }

    @torch.jit.export
    def abcond_buffers(self) -> List[torch.Tensor]:
        return [self.model.bn.running_mean, self.model.bn.running_var, self.model.bn.num_batches_tracked]


class Scalar(PerExample):
    """Returns the mean loss, not the per-example losses."""

    def forward(self, x, y):
        return self.model(x, y).mean()


class NoParams(torch.nn.Module):
    def forward(self, x, y):
        return (x.flatten(1) ** 2).sum(1)

    @torch.jit.export
    def abcond_info(self) -> Dict[str, str]:
        return {"protocol": "abcond.torchscript/1", "prefix": "", "buffers": "", "batchnorm": "false", "dropout": "false"}

    @torch.jit.export
    def abcond_buffers(self) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        return out


class Plain(torch.nn.Module):
    """A scripted module without the protocol methods."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        return self.model(x, y)


DTYPE = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def save_safetensors(path, tensors, order=None):
    """tensors: {name: tensor}; order: the abcond.inputs metadata (None: none)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if order is not None:
        header["__metadata__"] = {"abcond.inputs": ",".join(order)}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    run_dir, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    run = Run(run_dir)
    model = run.model()
    run.load(model, 0)
    torch.jit.save(torch.jit.script(PerExample(model)), os.path.join(out, "mlp.pt"))
    torch.jit.save(torch.jit.script(Scalar(model)), os.path.join(out, "scalar.pt"))
    torch.jit.save(torch.jit.script(NoParams()), os.path.join(out, "noparams.pt"))
    torch.jit.save(torch.jit.script(Plain(model)), os.path.join(out, "plain.pt"))
    torch.manual_seed(5)
    d = int(run.x[0].numel())
    for name, dropout in (("bn", False), ("bndrop", True)):
        net = PerExampleBN(BNNet(d, 16, 10, dropout), dropout)
        torch.jit.save(torch.jit.script(net), os.path.join(out, f"{name}.pt"))
    x = run.x.to(torch.float32)
    y = run.y.to(torch.int64)
    # Deliberately not in alphabetical order of the names: "y" sorts after "x",
    # so the order comes from the metadata.
    save_safetensors(os.path.join(out, "data.safetensors"), {"x": x, "y": y}, order=["x", "y"])
    save_safetensors(os.path.join(out, "unordered.safetensors"), {"x": x, "y": y})
    save_safetensors(os.path.join(out, "short.safetensors"), {"x": x, "y": y[:-3]}, order=["x", "y"])
    save_safetensors(os.path.join(out, "intx.safetensors"), {"x": (x * 100).to(torch.int32), "y": y}, order=["x", "y"])
    np.savez(os.path.join(out, "data.npz"), x=x.numpy(), y=y.numpy())
    print("ok")


if __name__ == "__main__":
    main()
