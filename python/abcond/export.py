"""Your PyTorch model and data, in the forms the abcond binary trains and
probes: a TorchScript module that returns per-example losses
(``model.kind: torchscript``) and a safetensors file of named tensors
(``data.dataset: tensors``)."""

import importlib.util
import json
import keyword
import os
import struct
import tempfile

import numpy as np

PROTOCOL = "abcond.torchscript/1"

_TEMPLATE = '''import torch
from typing import Dict, List


class AbcondModule(torch.nn.Module):
    """Written by abcond.export: the per-example losses of a minibatch."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, {args}) -> torch.Tensor:
        return self.loss_fn(self.model({inputs}), {targets})

    @torch.jit.export
    def abcond_info(self) -> Dict[str, str]:
        return {info}

    @torch.jit.export
    def abcond_buffers(self) -> List[torch.Tensor]:
        out: List[torch.Tensor] = [{buffers}]
        return out
'''


def _attr_path(name):
    """``layer1.0.bn1.running_mean`` → ``self.model.layer1[0].bn1.running_mean``."""
    code = "self.model"
    for part in name.split("."):
        if part.isdigit():
            code += f"[{part}]"
        elif part.isidentifier() and not keyword.iskeyword(part):
            code += f".{part}"
        else:
            raise ValueError(f"buffer `{name}`: the name part {part!r} cannot be written in TorchScript; rename the submodule")
    return code


def _atomic_write(path, write):
    from .store import atomic_write

    atomic_write(path, write, visible=True)


def export(model, loss_fn, example_batch, path, targets=1):
    """Writes ``model`` as a TorchScript module for ``model.kind: torchscript``.

    The module's forward pass takes a minibatch as the tensors of your data
    set in order, ``(*inputs, *targets)``, and returns the per-example losses
    ``loss_fn(model(*inputs), *targets)``, shape [B]. ``loss_fn`` is an
    ``nn.Module`` computing one loss per example (``reduction="none"``, e.g.
    ``nn.CrossEntropyLoss(reduction="none")``). ``example_batch`` (a tuple of
    tensors) is used to check the module. Parameters and buffers keep the
    names of ``model.state_dict()``; x^0 is the model's current weights.

    Raises ValueError when the module would not give one loss per example,
    or when the scripted module disagrees with the eager one.
    """
    import torch

    if not isinstance(loss_fn, torch.nn.Module):
        raise ValueError(
            "loss_fn must be an nn.Module with one loss per example, e.g. "
            "torch.nn.CrossEntropyLoss(reduction='none'); wrap a function in a small nn.Module"
        )
    batch = tuple(example_batch)
    if len(batch) <= targets:
        raise ValueError(f"example_batch has {len(batch)} tensors; expected the inputs and then {targets} target tensor(s)")
    n_in = len(batch) - targets
    args = ", ".join(f"t{i}: torch.Tensor" for i in range(len(batch)))
    buffers = [n for n, _ in model.named_buffers()]
    bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    drop = any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())
    info = {
        "protocol": PROTOCOL,
        "prefix": "model.",
        "buffers": ",".join(f"model.{n}" for n in buffers),
        "batchnorm": "true" if bn else "false",
        "dropout": "true" if drop else "false",
    }
    source = _TEMPLATE.format(
        args=args,
        inputs=", ".join(f"t{i}" for i in range(n_in)),
        targets=", ".join(f"t{i}" for i in range(n_in, len(batch))),
        info=json.dumps(info),
        buffers=", ".join(_attr_path(n) for n in buffers),
    )
    with tempfile.TemporaryDirectory() as d:
        # TorchScript compiles from source files: the wrapper is written to one.
        src = os.path.join(d, "abcond_export_module.py")
        with open(src, "w") as f:
            f.write(source)
        spec = importlib.util.spec_from_file_location("abcond_export_module", src)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        wrapper = mod.AbcondModule(model, loss_fn)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                eager = wrapper(*batch)
            scripted = torch.jit.script(wrapper)
            with torch.no_grad():
                got = scripted(*batch)
        finally:
            model.train(was_training)
        b = batch[0].shape[0]
        if tuple(eager.shape) != (b,):
            raise ValueError(
                f"loss_fn(model(*inputs), *targets) has shape {tuple(eager.shape)} on a batch of {b}; "
                f"expected the per-example losses, shape ({b},): use reduction='none' (and average over "
                "non-batch dimensions inside loss_fn)"
            )
        if not torch.allclose(eager, got, rtol=1e-6, atol=1e-7):
            raise ValueError("the scripted module's losses differ from the eager model's: the model does not script faithfully")
        _atomic_write(path, lambda tmp: torch.jit.save(scripted, tmp))
    return path


_DTYPES = {
    "float32": "F32",
    "float64": "F64",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def _as_numpy(name, t):
    if hasattr(t, "detach"):  # a torch tensor
        import torch

        if t.dtype == torch.bfloat16:
            raise ValueError(f"tensor `{name}`: bfloat16 is not supported; convert it to float32")
        t = t.detach().cpu().contiguous().numpy()
    a = np.ascontiguousarray(np.asarray(t))
    if a.dtype.name not in _DTYPES:
        raise ValueError(f"tensor `{name}`: dtype {a.dtype} cannot be stored (supported: {', '.join(_DTYPES)})")
    if a.ndim == 0:
        raise ValueError(f"tensor `{name}` is a scalar; every tensor needs a first dimension, the examples")
    return a


def save_tensors(path, **tensors):
    """Writes named tensors (torch or numpy, first dimension = the examples) as
    a safetensors file for ``data.dataset: tensors``, recording their order
    (the keyword order: the order the model takes them) in the metadata entry
    ``abcond.inputs``. Written atomically."""
    if not tensors:
        raise ValueError("save_tensors needs at least one tensor")
    arrays = {n: _as_numpy(n, t) for n, t in tensors.items()}
    lengths = {n: a.shape[0] for n, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the tensors disagree in length (first dimension): {lengths}")
    header, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[a.dtype.name], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"abcond.inputs": ",".join(arrays)}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for b in blobs:
                f.write(b)

    _atomic_write(path, write)
    return path
