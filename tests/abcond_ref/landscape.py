"""The two checks every model checker makes of an abcond run, given the
model as PyTorch code: recompute each landscape row with autograd, and
replay the first training steps with torch.optim (check_torchscript.py,
check_lstm.py, check_gptneox.py).

A checker supplies `load(model, k)` (x^k into a module), `per_example(model,
idx)` (f_i of each example of the minibatch, shape [B], in the mode the
probe measures in) and, where forward passes change state (BatchNorm's
running statistics), `keep(model)`: a context manager that restores it."""

import contextlib
import os

import numpy as np
import torch

import abcond

from .compare import rel_err, rel_vec
from .optim import TORCH_OPTIM, torch_optimizer, torch_scheduler
from .runs import read_snapshot


class Failures:
    """Disagreements and the worst relative error per quantity."""

    def __init__(self):
        self.lines, self.worst = [], {}

    def check(self, what, ours, theirs, tol, where, floor=0.0, reference="PyTorch"):
        e = rel_err(ours, theirs, floor)
        if e > self.worst.get(what, (-1,))[0]:
            self.worst[what] = (e, where)
        if not e <= tol:
            self.lines.append(f"{what} at {where}: abcond {ours!r} vs {reference} {theirs!r} (rel err {e:.3e})")

    def bound(self, what, value, tol, where):
        """A quantity that must stay at most `tol` (an error already relative)."""
        if value > self.worst.get(what, (-1,))[0]:
            self.worst[what] = (value, where)
        if not value <= tol:
            self.lines.append(f"{what} at {where}: {value:.2e} > {tol:g}")

    def finish(self, ok_line):
        """Prints the worst errors, then the failures (exit status 1) or `ok_line`."""
        for what, (e, where) in sorted(self.worst.items()):
            print(f"{what:10s} worst rel err {e:.2e} at {where}")
        if self.lines:
            print("\n".join(self.lines[:20]))
            raise SystemExit(1)
        print(ok_line)


def snapshots(run_dir, module, dtype, what="the reference's"):
    """{step: {name: tensor}} of every snapshot of a run, each checked to hold
    exactly the parameters of `module`, with their shapes."""
    names = dict(module.named_parameters())
    steps = sorted(int(d.split("=")[1]) for d in os.listdir(os.path.join(run_dir, "iterates")))
    states = {}
    for k in steps:
        state, _ = read_snapshot(run_dir, k, dtype)
        assert set(state) == set(names), f"snapshot/model names differ: {set(state) ^ set(names)}"
        for n, p in names.items():
            assert tuple(state[n].shape) == tuple(p.shape), (n, state[n].shape, p.shape)
        states[k] = state
    print(f"snapshots {steps}: {len(names)} tensors named and shaped as {what}")
    return states


def loader(states):
    """`load(net, k)`: copies snapshot k into the module's parameters."""

    def load(net, step):
        with torch.no_grad():
            for n, p in net.named_parameters():
                p.copy_(states[step][n])

    return load


def grad_case(model, losses, cases_path):
    """The loss and whole gradient of `model` (holding x^K) on the minibatch
    of a CASES.npz (tests/common write_grad_cases) against abcond's: returns
    (relative error of the loss, of the gradient) and prints both."""
    cases = np.load(cases_path)
    idx = [int(i) for i in cases["indices"]]
    model.zero_grad()
    per = losses(model, idx)
    (per.sum() / len(per)).backward()
    g_ref = np.concatenate([p.grad.double().numpy().ravel() for _, p in model.named_parameters()])
    g_rust = np.concatenate([cases[f"grad.{n}"].astype(np.float64).ravel() for n, _ in model.named_parameters()])
    e_loss = rel_vec(per.double().mean().item(), float(cases["loss"]))
    e_grad = rel_vec(g_ref, g_rust)
    print(f"x^K: loss {per.double().mean().item():.6f} rel err {e_loss:.2e}, gradient ({g_ref.size} values) rel err {e_grad:.2e}")
    return e_loss, e_grad


def recompute_rows(rows, net, ref, load, per_example, examples, tol, failures, keep=contextlib.nullcontext, reference="PyTorch"):
    """Recomputes loss_k, loss_ref, inner, grad_norm, dist and cos of every
    landscape row (inner's error relative to ‖g‖·‖x^k − x^K‖) with `net` at
    x^k and `ref` holding x^K."""
    xK = [p.detach().clone() for p in ref.parameters()]
    current = None
    for r in rows:
        k = r["step"]
        if current != k:
            load(net, k)
            current = k
        idx = torch.as_tensor(r["batch_indices"] if r["batch_indices"] is not None else list(range(examples)), dtype=torch.long)
        net.zero_grad()
        with keep(net):
            per = per_example(net, idx)
            (per.sum() / len(idx)).backward()
        loss_k = per.double().sum().item() / len(idx)
        g = torch.cat([p.grad.reshape(-1) for p in net.parameters()]).double()
        with keep(ref), torch.no_grad():
            loss_ref = per_example(ref, idx).double().sum().item() / len(idx)
        d = torch.cat([(p.detach() - q).reshape(-1) for p, q in zip(net.parameters(), xK)]).double()
        inner, gn, dist = torch.dot(g, d).item(), g.norm().item(), d.norm().item()
        got = {"loss_k": loss_k, "loss_ref": loss_ref, "inner": inner, "grad_norm": gn, "dist": dist}
        if dist > 0:
            got["cos"] = inner / (gn * dist)
        where = f"step={k} probe={r['probe']}"
        for what, v in got.items():
            failures.check(what, r[what], v, tol, where, gn * dist if what == "inner" else 0.0, reference)


def replay(run_dir, cfg, total, replay_model, load, per_example, steps, tensors, tol, failures):
    """Replays steps 0, 1, … with torch.optim from x^0 on the stored
    minibatches, as far as snapshots are consecutive, and compares each loss
    and every tensor of x^{k+1} (`tensors(model)`: (snapshot name, tensor)
    pairs). `replay_model` is in train mode; returns the steps replayed."""
    snaps = {int(e.split("=")[1]) for e in os.listdir(os.path.join(run_dir, "iterates"))}
    m = 0
    if cfg["optim"]["name"] in TORCH_OPTIM:
        while m + 1 in snaps and m + 1 <= total:
            m += 1
    if not m:
        return 0
    load(replay_model, 0)
    opt = torch_optimizer(replay_model.parameters(), cfg["optim"])
    sched = torch_scheduler(opt, cfg["schedule"], cfg["optim"]["lr"], total)
    for k in range(m):
        idx = torch.as_tensor(steps[k]["batch_indices"])
        opt.zero_grad()
        loss = per_example(replay_model, idx).mean()
        failures.check("replay loss", steps[k]["loss"], loss.item(), tol, f"step {k}", reference="torch.optim")
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        nxt = abcond.load_iterate(run_dir, k + 1, torch_tensors=False)
        for name, p in tensors(replay_model):
            if name not in nxt:
                failures.lines.append(f"x^{k + 1}: tensor {name} is not in the snapshot")
                continue
            want = torch.from_numpy(nxt[name]).double()
            err = (p.detach().double() - want).abs().max().item()
            failures.bound("replay x", err / max(want.abs().max().item(), 1.0), tol, f"x^{k + 1} {name}")
    return m
