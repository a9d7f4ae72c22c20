#!/usr/bin/env python3
"""PyTorch parity check of an abcond run directory.

Rebuilds the run's model in PyTorch (tests/abcond_ref: runs.py, models.py), loads the snapshots
x^k and x^K from the iterate Parquet files, and for every row of
landscape.parquet recomputes loss_k, loss_ref, inner, grad_norm, dist and cos
on the same minibatch with autograd; all must agree within the tolerance
(relative error; 1e-5 for f32 models, 1e-10 for f64 ones). Also checks that
  - x^0 equals PyTorch's initialisation after torch.manual_seed(seed),
  - steps.parquet's loss at each probed step equals the probe's loss_k on i_k,
  - replaying the first steps with torch.optim and its lr_scheduler from x^0 on the
    stored minibatches reproduces lr, loss and the consecutive snapshots x^1, x^2, …
    (relative error ≤ 1e-4 for f32, 1e-10 for f64: PyTorch fuses some multiply-adds).

Runs trained with `train.autocast: bf16`: the landscape rows are still checked
against PyTorch without autocast at the f32 tolerance (the probe never
autocasts), while the steps' losses and the replay run their forward passes
under torch.autocast("cpu", torch.bfloat16) and are checked at --autocast-tol
(a CUDA-trained run differs from CPU autocast by bf16 roundings).

usage: parity.py RUN_DIR [--tol T] [--autocast-tol T]     exit status 1 on any disagreement
"""

import argparse
import contextlib
import os
import sys

import abcond
import torch

from abcond_ref import models
from abcond_ref.compare import flat, rel_err
from abcond_ref.optim import TORCH_OPTIM, torch_optimizer, torch_scheduler
from abcond_ref.runs import Run, grad_at, loss_at


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--tol", type=float, default=None)
    ap.add_argument("--autocast-tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Run(args.run_dir)
    f64 = run.dtype == torch.float64
    tol = args.tol if args.tol is not None else (1e-10 if f64 else 1e-5)
    cfg = run.config
    autocast = cfg["train"].get("autocast")
    assert autocast in (None, "bf16"), autocast

    def forward_ctx():
        """The training forward pass's precision: bf16 autocast or none."""
        if autocast:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    K = run.manifest["training"]["total_steps"]
    failures = []
    worst = {}

    def check(what, ours, theirs, where, floor=0.0, tolerance=None):
        t = tol if tolerance is None else tolerance
        e = rel_err(ours, theirs, floor)
        if e > worst.get(what, (-1,))[0]:
            worst[what] = (e, where)
        if not e <= t:
            failures.append(f"{what} at {where}: abcond {ours!r} vs PyTorch {theirs!r} (rel err {e:.3e} > {t:.0e})")

    def check_loose(what, ours, theirs, where, tolerance):
        check(what, ours, theirs, where, floor=1.0 if ours == 0.0 else 0.0, tolerance=tolerance)

    # x^0 is PyTorch's initialisation.
    init = run.model(seed=cfg["seed"])
    snap0 = run.snapshot(0)
    for n, p in init.named_parameters():
        if not torch.equal(p.detach(), snap0[n]):
            failures.append(f"x^0 tensor {n} differs from torch.manual_seed({cfg['seed']}) initialisation")

    land_table = abcond.read_table(os.path.join(args.run_dir, "landscape.parquet"))
    land = land_table.to_pylist()
    # BatchNorm models: the probe's policy for the rows, train() for the replay.
    policy = land_table.schema.metadata[b"abcond.batchnorm"].decode()
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in init.modules())
    models.BN_POLICY = policy
    steps = abcond.read_table(os.path.join(args.run_dir, "steps.parquet")).to_pylist()
    ref = run.load(run.model(), K)
    xK = [p.detach().clone() for p in ref.parameters()]
    model = run.model()
    n = len(run.y)
    current = None
    autocast_effect = 0.0  # largest rel. difference of autocast and f32 losses
    for r in land:
        k = r["step"]
        if current != k:
            run.load(model, k)
            current = k
        where = f"step={k} probe={r['probe']}"
        idx = r["batch_indices"] if r["batch_indices"] is not None else list(range(n))
        assert len(idx) == r["batch_size"], where
        # The train row is minibatch i_k as step k saw it (augmented, if data.augment).
        aug = k if r["probe"] == "train" else None
        loss_k, grads = grad_at(model, run, idx, aug)
        loss_ref = loss_at(ref, run, idx, aug)
        g = flat(grads)
        d = flat([p.detach() for p in model.parameters()]) - flat(xK)
        inner = torch.dot(g, d).item()
        gn = g.norm().item()
        dist = d.norm().item()
        check("loss_k", r["loss_k"], loss_k, where)
        check("loss_ref", r["loss_ref"], loss_ref, where)
        check("inner", r["inner"], inner, where)
        check("grad_norm", r["grad_norm"], gn, where)
        check("dist", r["dist"], dist, where)
        if dist > 0:
            check("cos", r["cos"], inner / (gn * dist), where)
        # Training normalises by batch statistics: only the batch-stats probe
        # measures the same f_i on a BatchNorm model.
        if r["probe"] == "train" and (policy == "batch-stats" or not has_bn):
            if autocast:
                # steps.parquet holds the autocast loss of step k.
                with forward_ctx():
                    ac_loss = loss_at(model, run, idx, aug)
                check("steps.loss vs autocast loss", steps[k]["loss"], ac_loss, where, tolerance=args.autocast_tol)
                autocast_effect = max(autocast_effect, rel_err(ac_loss, loss_k))
            else:
                check("steps.loss vs probe loss_k", steps[k]["loss"], r["loss_k"], where)

    # Replay the first steps with torch.optim and torch.optim.lr_scheduler from
    # x^0 on the stored minibatches, as far as snapshots are consecutive.
    snaps = sorted(int(e.split("=")[1]) for e in os.listdir(os.path.join(args.run_dir, "iterates")))
    m = 0
    while m + 1 in snaps and m + 1 < K:
        m += 1
    replay_tol = 1e-10 if f64 else (args.autocast_tol if autocast else 1e-4)
    # Other optimisers and weight-decay groups are replayed by tests/check_optim.py.
    if cfg["optim"]["name"] not in TORCH_OPTIM or cfg["optim"].get("weight_decay_exclude"):
        m = 0
    if m > 0:
        models.BN_POLICY = "train"
        model = run.load(run.model(), 0)
        opt = torch_optimizer(model.parameters(), cfg["optim"])
        sched = torch_scheduler(opt, cfg["schedule"], cfg["optim"]["lr"], K)
        for k in range(m):
            lr = opt.param_groups[0]["lr"]
            check("lr vs torch scheduler", steps[k]["lr"], lr, f"step {k}")
            idx = torch.as_tensor(steps[k]["batch_indices"])
            opt.zero_grad()
            with forward_ctx():
                loss = model(run.batch_x(steps[k]["batch_indices"], k), run.y[idx]).mean()
            check_loose("loss vs torch replay", steps[k]["loss"], loss.item(), f"step {k}", replay_tol)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            nxt = run.snapshot(k + 1)
            # parameters, and the BatchNorm running statistics train() updated
            tensors = list(model.named_parameters()) + [
                (n, b) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")
            ]
            for name, p in tensors:
                err = (p.detach().double() - nxt[name].double()).abs().max().item()
                scale = max(nxt[name].double().abs().max().item(), 1e-300)
                check_loose(f"x^k vs torch.optim replay", 0.0, err / scale, f"step {k + 1} {name}", replay_tol)

    print(
        f"parity {args.run_dir}: {len(land)} landscape rows, tolerance {tol:.0e}; "
        f"{'bf16 autocast training, ' if autocast else ''}"
        f"replayed {m} steps with torch.optim.{TORCH_OPTIM.get(cfg['optim']['name'], '-')} (tolerance {replay_tol:.0e})"
    )
    for what, (e, where) in sorted(worst.items()):
        print(f"  max rel err {what:<28} {e:.3e}  ({where})")
    if autocast:
        print(f"  bf16 autocast loss vs f32 loss at the same x^k: max rel diff {autocast_effect:.3e}")
        # bf16 keeps 8 bits of mantissa: an autocast forward that changed nothing did not run.
        if not autocast_effect > 1e-5:
            failures.append(f"the autocast losses equal the f32 ones (max rel diff {autocast_effect:.1e}): autocast did not take effect")
    if failures:
        print(f"{len(failures)} disagreements:")
        for f in failures[:20]:
            print("  " + f)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
