#!/usr/bin/env python3
"""The Python companion (python/abcond) against a native abcond run.

usage: check_companion.py RUN_DIR OUT_DIR

- readers: every table of the run read with its checksum verified and equal
  to pyarrow's plain read; every snapshot loads into the PyTorch MLP with
  load_state_dict(strict=True) and equals tests/abcond_ref's reader; a
  flipped byte in a snapshot, a table and run.yaml raises ChecksumError;
  load_run / load_experiment give Polars and pandas frames;
- writers: abcond.export of an MLP (fc1, fc2, fc3 returning logits, with
  nn.CrossEntropyLoss(reduction="none")) from the run's x^0 → OUT/exported.pt;
  of a Sequential with BatchNorm1d → OUT/seqbn.pt; abcond.save_tensors of the
  run's data → OUT/companion.safetensors; and the errors: a mean loss, a loss
  function that is not a module, tensors of different lengths.
"""

import os
import shutil
import sys

import pyarrow.parquet as pq
import torch

import abcond
from abcond_ref.models import MLPLogits
from abcond_ref.runs import Run


def read_snapshot(run_dir, step, dtype):
    """The chunk rows of a snapshot joined with plain pyarrow (no checksums):
    the reference the companion's reader is compared with."""
    import numpy as np

    t = pq.read_table(os.path.join(run_dir, "iterates", f"step={step}", "part-0.parquet")).to_pylist()
    parts = {}
    for r in sorted(t, key=lambda r: (r["name"], r["chunk"])):
        parts.setdefault(r["name"], (r["shape"], []))[1].append(np.asarray(r["values"]))
    return {n: torch.from_numpy(np.concatenate(p).astype(np.float64)).to(dtype).reshape(s) for n, (s, p) in parts.items()}, None


def expect_error(kind, what, fn):
    try:
        fn()
    except kind as e:
        print(f"refused as expected ({what}): {str(e)[:100]}")
        return
    raise AssertionError(f"{what}: no {kind.__name__}")


def flip(path, at, out):
    b = bytearray(open(path, "rb").read())
    b[at(len(b))] ^= 0x10
    with open(out, "wb") as f:
        f.write(b)


def main():
    run_dir, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    ref = Run(run_dir)

    # Readers.
    for name in ["steps", "landscape", "data"]:
        p = os.path.join(run_dir, f"{name}.parquet")
        ours, plain = abcond.read_table(p), pq.read_table(p)
        assert ours.equals(plain), name
    for f in os.listdir(os.path.join(run_dir, "analysis")):
        if f.endswith(".parquet"):
            abcond.read_table(os.path.join(run_dir, "analysis", f))
    snaps = sorted(int(d.split("=")[1]) for d in os.listdir(os.path.join(run_dir, "iterates")))
    d = int(ref.x[0].numel())
    width = ref.manifest["config"]["model"]["width"]
    model = MLPLogits(d, width, 10)
    for k in snaps:
        state = abcond.load_iterate(run_dir, k)
        model.load_state_dict(state, strict=True)
        theirs, _ = read_snapshot(run_dir, k, torch.float32)
        for n, t in state.items():
            assert torch.equal(t, theirs[n]), (k, n)
    run = abcond.load_run(run_dir)
    assert run.steps.shape[0] == ref.manifest["training"]["total_steps"], run.steps.shape
    assert run.landscape.shape[0] == pq.read_table(os.path.join(run_dir, "landscape.parquet")).num_rows
    exp = abcond.load_experiment(os.path.dirname(run_dir), frame="pandas")
    assert list(exp.steps["run_id"].unique()) == [ref.manifest["run_id"]]
    print(f"read {len(snaps)} snapshots and every table, checksums verified")

    # Damage: always refused.
    bad = os.path.join(out, "bad")
    shutil.copytree(run_dir, bad, dirs_exist_ok=True)
    snap = os.path.join(bad, "iterates", f"step={snaps[1]}", "part-0.parquet")
    flip(snap, lambda n: n // 2, snap)
    expect_error(Exception, "flipped snapshot", lambda: abcond.load_iterate(bad, snaps[1]))
    steps = os.path.join(bad, "steps.parquet")
    flip(steps, lambda n: n // 3, steps)
    expect_error(Exception, "flipped steps.parquet", lambda: abcond.read_table(steps))
    manifest = os.path.join(bad, "run.yaml")
    text = open(manifest).read().replace("status: completed", "status: running")
    open(manifest, "w").write(text)
    expect_error(abcond.ChecksumError, "edited run.yaml", lambda: abcond.read_manifest(bad))

    # Writers.
    model.load_state_dict(abcond.load_iterate(run_dir, 0), strict=True)
    x, y = ref.x.to(torch.float32), ref.y
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    abcond.export(model, loss, (x[:4], y[:4]), os.path.join(out, "exported.pt"))
    torch.manual_seed(1)
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(), torch.nn.Linear(12, 10))
    abcond.export(seq, loss, (x[:4], y[:4]), os.path.join(out, "seqbn.pt"))
    scripted = torch.jit.load(os.path.join(out, "seqbn.pt"))
    info = scripted.abcond_info()
    assert info["batchnorm"] == "true" and info["buffers"].startswith("model.2.running_mean"), info
    assert [tuple(b.shape) for b in scripted.abcond_buffers()] == [(12,), (12,), ()]
    abcond.save_tensors(os.path.join(out, "companion.safetensors"), x=x, y=y)
    expect_error(ValueError, "mean loss", lambda: abcond.export(model, torch.nn.CrossEntropyLoss(), (x[:4], y[:4]), os.path.join(out, "no.pt")))
    expect_error(ValueError, "loss function", lambda: abcond.export(model, torch.nn.functional.cross_entropy, (x[:4], y[:4]), os.path.join(out, "no.pt")))
    expect_error(ValueError, "lengths", lambda: abcond.save_tensors(os.path.join(out, "no.safetensors"), x=x, y=y[:-1]))
    assert not os.path.exists(os.path.join(out, "no.pt")) and not os.path.exists(os.path.join(out, "no.safetensors"))
    print("companion ok")


if __name__ == "__main__":
    main()
