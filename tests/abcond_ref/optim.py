"""The torch.optim optimiser and torch.optim.lr_scheduler scheduler a resolved
`optim` / `schedule` section of an abcond config describes (tests/parity.py
replays training with them; tests/check_optim.py takes the scheduler)."""

import torch


TORCH_OPTIM = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


def torch_optimizer(params, o):
    """The torch.optim optimiser a resolved `optim` section describes."""
    if o["name"] == "sgd":
        return torch.optim.SGD(
            params,
            lr=o["lr"],
            momentum=o["momentum"],
            dampening=o["dampening"],
            nesterov=o["nesterov"],
            weight_decay=o["weight_decay"],
            foreach=False,
        )
    cls = torch.optim.Adam if o["name"] == "adam" else torch.optim.AdamW
    return cls(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"], foreach=False)


def torch_scheduler(opt, s, lr, K):
    """The torch.optim.lr_scheduler a resolved `schedule` section describes."""
    S = torch.optim.lr_scheduler
    name = s["name"]
    if name == "constant":
        return None
    if name == "cosine":
        return S.CosineAnnealingLR(opt, T_max=K, eta_min=s["floor"])
    if name == "one-cycle":
        return S.OneCycleLR(
            opt,
            max_lr=lr,
            total_steps=K,
            pct_start=s["pct_start"],
            div_factor=s["div_factor"],
            final_div_factor=s["final_div_factor"],
            anneal_strategy="cos",
            cycle_momentum=False,
        )
    if name == "inverse-power":  # gamma_0 (k+1)^(-power)
        return S.LambdaLR(opt, lambda k: (k + 1) ** -s["power"])
    if name == "polynomial":
        if s["floor"] == 0:
            return S.PolynomialLR(opt, total_iters=K, power=s["power"])
        return S.LambdaLR(opt, lambda k: (s["floor"] + (lr - s["floor"]) * (1 - min(k, K) / K) ** s["power"]) / lr)
    if name == "warmup-cosine":  # AlgoPerf's baseline schedule
        w = s["warmup_steps"] if s.get("warmup_steps") is not None else int(s["warmup_fraction"] * K)
        if w == 0:
            return S.CosineAnnealingLR(opt, T_max=K, eta_min=s["floor"])
        warm = S.LinearLR(opt, start_factor=1e-10, end_factor=1.0, total_iters=w)
        cos = S.CosineAnnealingLR(opt, T_max=max(K - w, 1), eta_min=s["floor"])
        return S.SequentialLR(opt, schedulers=[warm, cos], milestones=[w])
    raise ValueError(name)
