#!/usr/bin/env python3
"""Replays abcond training runs step by step, independently of the Rust code,
and compares every iterate x^k, the learning rate and the step size gamma_k.

Each run must have a snapshot at every step (snapshots.every: 1), so that
steps.parquet holds every minibatch i_k. From x^0 the script applies
  - torch.optim.SGD / Adam / AdamW / NAdam (foreach=False) with param groups
    for optim.weight_decay_exclude, the learning rate of step k taken from
    torch.optim.lr_scheduler (tests/abcond_ref/optim.py: torch_scheduler);
  - AlgoPerf's NAdamW, normalised SGD with momentum, SPS_max, DecSPS, NGN and
    AdaGrad-norm-max written here from their published formulas (docs/theory.md, Optimisers, and
    mlcommons/algorithmic-efficiency reference_algorithms/paper_baselines/nadamw),
    with f_i(x^k) and ||∇f_i(x^k)|| from autograd;
and checks x^{k+1} against the snapshot, lr and step_size against
steps.parquet (relative error ≤ 1e-12 for f64 models). Each update starts from
abcond's x^k (the snapshot), the replay's optimiser state is its own.

usage: check_optim.py [--tol T] RUN_DIR…     exit status 1 on any disagreement
"""

import math
import os
import sys

import torch
import abcond

from abcond_ref.compare import rel_err
from abcond_ref.optim import torch_scheduler
from abcond_ref.runs import Run

# torch.optim.NAdam keeps its mu-product in the default dtype; abcond keeps it in f64.
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)


def excluded(name, p, exclude):
    last = name.rsplit(".", 1)[-1]
    return ("biases" in exclude and last == "bias") or ("norms" in exclude and last == "weight" and p.dim() == 1)


def torch_optim(model, o):
    """torch.optim for sgd/adam/adamw/nadam, or None."""
    exclude = o.get("weight_decay_exclude", [])
    wd = o["weight_decay"]
    decay = [p for n, p in model.named_parameters() if not excluded(n, p, exclude)]
    no_decay = [p for n, p in model.named_parameters() if excluded(n, p, exclude)]
    groups = [{"params": decay}] + ([{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
    name = o["name"]
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=o["lr"],
            momentum=o["momentum"],
            dampening=o["dampening"],
            nesterov=o["nesterov"],
            weight_decay=wd,
            foreach=False,
        )
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(groups, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=wd, foreach=False)
    if name == "nadam":
        return torch.optim.NAdam(
            groups,
            lr=o["lr"],
            betas=tuple(o["betas"]),
            eps=o["eps"],
            weight_decay=wd,
            momentum_decay=o["momentum_decay"],
            decoupled_weight_decay=o["decoupled_weight_decay"],
            foreach=False,
        )
    return None


class Reference:
    """The methods torch.optim lacks, from their formulas."""

    def __init__(self, model, o):
        self.o = o
        self.params = list(model.named_parameters())
        self.t = 0
        self.state = {}
        self.decsps_bound = o.get("c", 1.0) * o["lr"]  # c_{-1} gamma_{-1} = c_0 gamma_b
        self.c2 = 0.0
        self.b2 = o.get("b0", 0.0) ** 2

    @torch.no_grad()
    def step(self, lr, loss, gnorm):
        """Updates the parameters; returns gamma_k (None for NAdamW)."""
        o, name = self.o, self.o["name"]
        self.t += 1
        t = self.t
        grads = [p.grad for _, p in self.params]
        if name == "nadamw":
            b1, b2 = o["betas"]
            exclude = o.get("weight_decay_exclude", [])
            for n, p in self.params:
                g = p.grad
                wd = 0.0 if excluded(n, p, exclude) else o["weight_decay"]
                st = self.state.setdefault(n, {"m": torch.zeros_like(p), "v": torch.zeros_like(p)})
                p.mul_(1 - lr * wd)
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                nesterov = st["m"] * b1 + g * (1 - b1)
                denom = st["v"].sqrt() / math.sqrt(1 - b2**t) + o["eps"]
                p.addcdiv_(nesterov, denom, value=-lr / (1 - b1**t))
            return None
        if name == "normalized-sgd":
            beta = 1.0 - t ** (-o["momentum_power"])
            for n, p in self.params:
                if n not in self.state:
                    self.state[n] = p.grad.clone()
                else:
                    self.state[n] = beta * self.state[n] + (1 - beta) * p.grad
            norm = math.sqrt(sum(float((m * m).sum()) for m in self.state.values()))
            gamma = lr / norm
            for n, p in self.params:
                p.sub_(gamma * self.state[n])
            return gamma
        g2 = gnorm**2
        if name == "sps-max":
            gamma = min((loss - o["f_star"]) / (o["c"] * g2), lr)
        elif name == "decsps":
            c_k = o["c"] * (t) ** o["c_power"]  # c_k with k = t - 1: c_0 (k+1)^p
            gamma = min((loss - o["f_star"]) / g2, self.decsps_bound) / c_k
            self.decsps_bound = c_k * gamma
        elif name == "ngn":
            gamma = lr / (1 + lr / (2 * loss) * g2)
        elif name == "adagrad-norm-max":
            self.c2 = max(self.c2, g2)
            self.b2 += self.c2
            gamma = lr / math.sqrt(self.b2)
        else:
            raise ValueError(name)
        for (_, p), g in zip(self.params, grads):
            p.sub_(gamma * g)
        return gamma


def check_run(path, tol=None):
    run = Run(path)
    cfg = run.config
    o, K = cfg["optim"], run.manifest["training"]["total_steps"]
    f64 = run.dtype == torch.float64
    tol = tol if tol is not None else (1e-12 if f64 else 1e-5)
    steps = abcond.read_table(os.path.join(path, "steps.parquet")).to_pylist()
    assert len(steps) == K, f"{path}: {len(steps)} step rows, expected {K}"
    # The schedule's learning rates, from torch.optim.lr_scheduler on a dummy optimiser.
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=o["lr"])
    sched = torch_scheduler(dummy, cfg["schedule"], o["lr"], K)
    lrs = []
    for _ in range(K):
        lrs.append(dummy.param_groups[0]["lr"])
        dummy.step()
        if sched is not None:
            sched.step()
    model = run.load(run.model(), 0)
    opt = torch_optim(model, o)
    ref = None if opt is not None else Reference(model, o)
    worst = {"x": 0.0, "lr": 0.0, "step_size": 0.0, "loss": 0.0}
    failures = []
    for k in range(K):
        row = steps[k]
        idx = row["batch_indices"]
        if idx is None:
            failures.append(f"step {k} has no batch_indices (the run needs snapshots.every: 1)")
            break
        lr = lrs[k]
        model.zero_grad()
        loss = model(run.x[idx], run.y[idx]).mean()
        loss.backward()
        gnorm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters()))
        if opt is not None:
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            gamma = lr if o["name"] == "sgd" else None
        else:
            gamma = ref.step(lr, loss.item(), gnorm)
        errs = {"lr": rel_err(row["lr"], lr), "loss": rel_err(row["loss"], loss.item())}
        if (gamma is None) != (row["step_size"] is None):
            failures.append(f"step {k}: step_size {row['step_size']!r}, expected {gamma!r}")
        elif gamma is not None:
            errs["step_size"] = rel_err(row["step_size"], gamma)
        nxt = run.snapshot(k + 1)
        for name, p in model.named_parameters():
            err = (p.detach() - nxt[name].to(p.dtype)).abs().max().item()
            scale = max(nxt[name].abs().max().item(), 1e-300)
            errs["x"] = max(errs.get("x", 0.0), err / scale)
            # Continue from abcond's x^{k+1}: each update is checked from the
            # same point, so rounding differences cannot grow along a chaotic
            # trajectory (large SPS steps amplify 1e-16 to 1e-7 within 50 steps),
            # while the optimiser state is still the replay's own.
            with torch.no_grad():
                p.copy_(nxt[name].to(p.dtype))
        for what, e in errs.items():
            worst[what] = max(worst[what], e)
            if not e <= tol:
                failures.append(f"step {k}: {what} rel err {e:.3e} > {tol:.0e}")
    label = o["name"] + (f" (wd {o['weight_decay']}, exclude {o['weight_decay_exclude']})" if o.get("weight_decay_exclude") else "")
    print(
        f"{label:<40} schedule {cfg['schedule']['name']:<14} {K} steps replayed: "
        + ", ".join(f"max rel err {w} {e:.1e}" for w, e in worst.items())
    )
    return [f"{path}: {f}" for f in failures]


def main():
    args = sys.argv[1:]
    tol = None
    if args[:1] == ["--tol"]:
        tol, args = float(args[1]), args[2:]
    failures = []
    for path in args:
        failures += check_run(path, tol)
    if failures:
        print(f"{len(failures)} disagreements:")
        for f in failures[:30]:
            print("  " + f)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
