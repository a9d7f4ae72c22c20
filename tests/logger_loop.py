#!/usr/bin/env python3
"""Plain PyTorch training loops recorded with abcond.Logger, for tests/logger.rs.

usage:
  logger_loop.py replay ABCOND_RUN OUT_RUN
      Replays a run `abcond train` made of examples/own_model.py's exported
      MLP: the same x^0 (torch.manual_seed(0); Net()), the minibatches its
      steps.parquet records, torch.optim.SGD with its lr; logged with the
      same snapshots, probe settings and seed. abcond must then measure both
      runs alike.
  logger_loop.py kill DATA_DIR OUT_RUN
      A deterministic loop (an MLP of 784 → 256 → 10, a snapshot every step)
      for SIGKILL tests: prints `logging` once the Logger is set up and the
      loop's seconds at the end.
  logger_loop.py cases DATA_DIR SCRATCH ABCOND_TRAINED_RUN ABCOND_BIN
      Misuse and edge cases, each checked here; leaves runs under SCRATCH
      for tests/logger.rs to probe: early (stopped early), diverged, failed,
      recorded (an LR scheduler), adam, external (RMSprop), nesterov (SGD with
      Nesterov momentum and weight decay), adamw (with weight decay), clipped
      (gradients clipped after log.step). Prints `ok: N cases`.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import abcond  # noqa: E402
from own_model import Net  # noqa: E402


def fixture(data_dir, n):
    """x, y of the test suite's Fashion-MNIST-format fixture."""
    from own_model import read_idx

    images = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte"))[:n]
    labels = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte"))[:n]
    x = torch.from_numpy((images.astype(np.float32) / 255 - 0.2860) / 0.3530).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def replay(abcond_run, out_run):
    manifest = abcond.read_manifest(abcond_run)
    cfg = manifest["config"]
    steps = abcond.read_table(os.path.join(abcond_run, "steps.parquet")).to_pylist()
    from check_torchscript import read_safetensors

    tensors, _ = read_safetensors(cfg["data"]["path"])
    x, y = tensors["x"], tensors["y"]
    torch.manual_seed(0)
    model = Net()
    x0 = abcond.load_iterate(abcond_run, 0)
    for n, t in model.state_dict().items():
        assert torch.equal(t, x0[n]), f"x^0 differs at {n}"
    opt = torch.optim.SGD(model.parameters(), lr=cfg["optim"]["lr"])
    loss_fn = nn.CrossEntropyLoss()
    config = {k: cfg[k] for k in ("experiment", "seed", "device", "snapshots", "probe")}
    config["experiment"] = "logged"
    config["model"] = {"kind": "torchscript", "path": cfg["model"]["path"]}
    config["data"] = {"dataset": "tensors", "path": cfg["data"]["path"]}
    config["train"] = {"batch_size": cfg["train"]["batch_size"], "steps": manifest["training"]["total_steps"]}
    with abcond.Logger(out_run, config, model, opt) as log:
        for row in steps:
            idx = torch.tensor(row["batch_indices"])
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            log.step(loss, idx, epoch=row["epoch"])
            opt.step()
    print(f"replayed {len(steps)} steps into {out_run}")


class Wide(nn.Module):
    def __init__(self, width=256):
        super().__init__()
        self.fc1 = nn.Linear(784, width)
        self.fc2 = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def kill_loop(data_dir, out_run):
    torch.set_num_threads(1)
    x, y = fixture(data_dir, 400)
    work = os.path.dirname(os.path.dirname(os.path.abspath(out_run)))
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(1)
    model = Wide()
    data = abcond.save_tensors(os.path.join(work, "kill-data.safetensors"), x=x, y=y)
    module = os.path.join(work, "kill-model.pt")
    if not os.path.exists(module):
        abcond.export(model, nn.CrossEntropyLoss(reduction="none"), (x[:4], y[:4]), module)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    config = {
        "experiment": "kill",
        "seed": 2,
        "model": {"kind": "torchscript", "path": module},
        "data": {"dataset": "tensors", "path": data},
        "train": {"batch_size": 40, "steps": 40},
        "snapshots": {"every": 1},
        "probe": {"extra_batches": 1},
    }
    log = abcond.Logger(out_run, config, model, opt, replace=True)
    print("logging", flush=True)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(3)
    for k in range(40):
        idx = torch.randperm(400, generator=g)[:40]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        log.step(loss, idx)
        opt.step()
    log.finish()
    print(f"loop seconds {time.perf_counter() - t0:.4f}", flush=True)


def expect(kind, words, fn):
    """Runs fn, which must raise `kind` with every one of `words` in its message."""
    try:
        fn()
    except kind as e:
        msg = str(e)
        missing = [w for w in words if w not in msg]
        assert not missing, f"{kind.__name__} lacks {missing}: {msg}"
        return msg
    raise AssertionError(f"no {kind.__name__} (expected one mentioning {words})")


def cases(data_dir, scratch, trained_run, abcond_bin):
    torch.set_num_threads(1)
    x, y = fixture(data_dir, 200)
    os.makedirs(scratch, exist_ok=True)
    data = abcond.save_tensors(os.path.join(scratch, "data.safetensors"), x=x, y=y)
    torch.manual_seed(0)
    module = abcond.export(Net(), nn.CrossEntropyLoss(reduction="none"), (x[:4], y[:4]), os.path.join(scratch, "model.pt"))

    def config(**over):
        c = {
            "experiment": "cases",
            "model": {"kind": "torchscript", "path": module},
            "data": {"dataset": "tensors", "path": data},
            "train": {"batch_size": 20, "steps": 10},
            "snapshots": {"every": 2},
        }
        c.update(over)
        return c

    def fresh(name, opt_fn=lambda m: torch.optim.SGD(m.parameters(), lr=0.05), **over):
        torch.manual_seed(0)
        m = Net()
        opt = opt_fn(m)
        return m, opt, abcond.Logger(os.path.join(scratch, name), config(**over), m, opt, replace=True)

    def one(m, opt, log, k, update=True, loss_scale=1.0, clip=None):
        idx = torch.arange(20 * (k % 10), 20 * (k % 10) + 20)
        loss = nn.functional.cross_entropy(m(x[idx]), y[idx]) * loss_scale
        opt.zero_grad()
        loss.backward()
        log.step(loss, idx)
        if clip is not None:
            nn.utils.clip_grad_norm_(m.parameters(), clip)
        if update:
            opt.step()

    n = 0
    # Order: optimizer.step() before log.step.
    m, opt, log = fresh("order")
    idx = torch.arange(20)
    nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
    expect(RuntimeError, ["before log.step"], opt.step)
    log.close()
    n += 1
    # step() twice without an update; finish() before the last update.
    m, opt, log = fresh("twice")
    one(m, opt, log, 0, update=False)
    expect(RuntimeError, ["twice"], lambda: one(m, opt, log, 1))
    expect(RuntimeError, ["before the optimizer.step()"], log.finish)
    log.close()
    n += 2
    # Indices outside the data set; not whole numbers.
    m, opt, log = fresh("indices")
    idx = torch.arange(190, 210)
    nn.functional.cross_entropy(m(x[idx % 200]), y[idx % 200]).backward()
    expect(ValueError, ["209", "outside 0..200"], lambda: log.step(1.0, idx))
    expect(ValueError, ["whole numbers"], lambda: log.step(1.0, [0.5, 1.5]))
    log.close()
    n += 2
    # Config keys abcond would take but a logged run cannot have.
    torch.manual_seed(0)
    m = Net()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    bad = os.path.join(scratch, "bad")
    expect(ValueError, ["train.checkpoint_every", "does not apply"], lambda: abcond.Logger(bad, config(train={"batch_size": 20, "steps": 10, "checkpoint_every": 5}), m, opt))
    expect(ValueError, ["optim", "recorded from the optimiser"], lambda: abcond.Logger(bad, config(optim={"name": "sgd", "lr": 0.1}), m, opt))
    expect(ValueError, ["model.kind", "torchscript"], lambda: abcond.Logger(bad, config(model={"kind": "mlp", "path": module}), m, opt))
    expect(FileNotFoundError, ["data.path", "not a file"], lambda: abcond.Logger(bad, config(data={"dataset": "tensors", "path": "missing.safetensors"}), m, opt))
    expect(ValueError, ["train.batch_size", "only 200 examples"], lambda: abcond.Logger(bad, config(train={"batch_size": 500, "steps": 10}), m, opt))
    n += 5
    # A model whose tensors are not the exported module's.
    expect(ValueError, ["does not hold this model's tensors"], lambda: abcond.Logger(bad, config(), Wide(32), torch.optim.SGD(Wide(32).parameters(), lr=0.1)))
    n += 1
    # Directories the Logger must not write into: a foreign one, a run abcond trained.
    foreign = os.path.join(scratch, "foreign")
    os.makedirs(foreign, exist_ok=True)
    with open(os.path.join(foreign, "notes.txt"), "w") as f:
        f.write("mine")
    expect(FileExistsError, ["not an abcond run directory"], lambda: abcond.Logger(foreign, config(), m, opt, replace=True))
    before = {e: os.path.getmtime(os.path.join(trained_run, e)) for e in os.listdir(trained_run)}
    expect(FileExistsError, ["abcond trained", "never writes over it"], lambda: abcond.Logger(trained_run, config(), m, opt, replace=True))
    assert open(os.path.join(foreign, "notes.txt")).read() == "mine"
    assert before == {e: os.path.getmtime(os.path.join(trained_run, e)) for e in os.listdir(trained_run)}, "the trained run was touched"
    n += 2
    # A logged run: refused without replace=True, and with a file the Logger did not write.
    m, opt, log = fresh("again")
    log.close()
    expect(FileExistsError, ["replace=True"], lambda: abcond.Logger(os.path.join(scratch, "again"), config(), m, opt))
    with open(os.path.join(scratch, "again", "mine.txt"), "w") as f:
        f.write("x")
    expect(FileExistsError, ["mine.txt", "did not write"], lambda: abcond.Logger(os.path.join(scratch, "again"), config(), m, opt, replace=True))
    n += 2
    # A logged run probed and analysed by abcond is replaced whole; a file of
    # yours in its analysis/ stops the replace.
    m, opt, log = fresh("analysed")
    for k in range(10):
        one(m, opt, log, k)
    log.finish()
    analysed = os.path.join(scratch, "analysed")
    for cmd in ("probe", "analyze"):
        subprocess.run([abcond_bin, "-q", cmd, analysed], check=True, capture_output=True)
    with open(os.path.join(analysed, "analysis", "notes.md"), "w") as f:
        f.write("mine")
    expect(FileExistsError, ["analysis/notes.md", "did not write"], lambda: fresh("analysed"))
    os.unlink(os.path.join(analysed, "analysis", "notes.md"))
    fresh("analysed")[2].close()
    assert sorted(os.listdir(analysed)) == [".lock", "data.parquet", "run.yaml"], os.listdir(analysed)
    n += 2
    # A second Logger (or abcond) while one writes the run: the lock.
    m, opt, log = fresh("locked")
    one(m, opt, log, 0)
    expect(RuntimeError, ["locked by another process", "what: log"], lambda: abcond.Logger(os.path.join(scratch, "locked"), config(), m, opt, replace=True))
    probe = subprocess.run([abcond_bin, "probe", os.path.join(scratch, "locked")], capture_output=True, text=True)
    assert probe.returncode != 0 and "locked" in probe.stderr, probe.stderr
    log.close()
    n += 2
    # More steps than planned.
    m, opt, log = fresh("over", train={"batch_size": 20, "steps": 2})
    one(m, opt, log, 0)
    one(m, opt, log, 1)
    expect(RuntimeError, ["past the 2 steps"], lambda: one(m, opt, log, 2))
    log.close()
    n += 1
    # Stopped early: a completed run of 5 steps with the snapshots written.
    m, opt, log = fresh("early")
    for k in range(5):
        one(m, opt, log, k)
    log.finish()
    man = abcond.read_manifest(os.path.join(scratch, "early"))
    assert man["status"] == "completed" and man["training"]["total_steps"] == 5, man
    assert man["config"]["snapshots"] == {"at": [0, 2, 4, 5]}, man["config"]["snapshots"]
    assert "stopped at step 5 of the 10 planned" in man["message"], man
    n += 1
    # A non-finite loss: recorded as diverged.
    m, opt, log = fresh("diverged")
    one(m, opt, log, 0)
    expect(FloatingPointError, ["nan", "diverged"], lambda: one(m, opt, log, 1, loss_scale=float("nan")))
    assert abcond.read_manifest(os.path.join(scratch, "diverged"))["status"] == "diverged"
    n += 1
    # An exception in the loop: failed.
    try:
        with fresh("failed")[2] as log:
            raise KeyError("boom")
    except KeyError:
        pass
    man = abcond.read_manifest(os.path.join(scratch, "failed"))
    assert man["status"] == "failed" and "boom" in man["message"], man
    n += 1
    # An LR scheduler: schedule `recorded`; Adam → adam; RMSprop → external.
    m, opt, log = fresh("recorded")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for k in range(10):
        one(m, opt, log, k)
        sched.step()
    log.finish()
    man = abcond.read_manifest(os.path.join(scratch, "recorded"))
    assert man["config"]["schedule"] == {"name": "recorded"} and man["config"]["optim"]["name"] == "sgd", man["config"]
    lrs = [r["lr"] for r in abcond.read_table(os.path.join(scratch, "recorded", "steps.parquet")).to_pylist()]
    assert lrs == [0.05] * 3 + [0.025] * 3 + [0.0125] * 3 + [0.00625], lrs
    n += 1
    for name, make, want in (
        ("adam", lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}),
        ("external", lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-3), {"name": "external", "lr": 1e-3}),
    ):
        m, opt, log = fresh(name, make)
        for k in range(10):
            one(m, opt, log, k)
        log.finish()
        man = abcond.read_manifest(os.path.join(scratch, name))
        assert man["config"]["optim"] == want and man["config"]["schedule"] == {"name": "constant"}, man["config"]
        assert all(r["step_size"] is None for r in abcond.read_table(os.path.join(scratch, name, "steps.parquet")).to_pylist())
        n += 1
    assert man["trainer"]["optimizer"].startswith("torch.optim.rmsprop.RMSprop("), man["trainer"]
    # The snapshots load into the model (load_iterate), the steps read back.
    state = abcond.load_iterate(os.path.join(scratch, "external"), 10)
    fresh_model = Net()
    fresh_model.load_state_dict(state, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh_model.state_dict().values(), m.state_dict().values()))
    n += 1
    # For the replay: SGD with Nesterov momentum and weight decay; a loop
    # that clips the gradient after logging it (an update abcond does not know).
    m, opt, log = fresh("nesterov", lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3))
    for k in range(10):
        one(m, opt, log, k)
    log.finish()
    assert abcond.read_manifest(os.path.join(scratch, "nesterov"))["config"]["optim"]["nesterov"] is True
    m, opt, log = fresh("adamw", lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05))
    for k in range(10):
        one(m, opt, log, k)
    log.finish()
    assert abcond.read_manifest(os.path.join(scratch, "adamw"))["config"]["optim"]["name"] == "adamw"
    m, opt, log = fresh("clipped")
    for k in range(10):
        one(m, opt, log, k, clip=0.01)
    log.finish()
    n += 3
    print(f"ok: {n} cases")


def main():
    mode = sys.argv[1]
    if mode == "replay":
        replay(*sys.argv[2:4])
    elif mode == "kill":
        kill_loop(*sys.argv[2:4])
    elif mode == "cases":
        cases(*sys.argv[2:6])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
