#!/usr/bin/env python3
"""Writes Tests/Fixtures/optim/reg_*.json: torch trajectories with coupled L1 and L2 (--l1, --l2).

Run with the fixtures venv (Tests/Fixtures/make_venv.sh):
    .venv-fixtures/bin/python Tests/Fixtures/make_regularization_fixtures.py
Inputs come from the same integer hash as make_optim_fixtures.py. Each step the parameters'
gradient is that of loss = sum(p * g_t) + l1 * sum |p| (L1 in the loss, on the decaying
tensors only, differentiated by autograd), so p.grad = g_t + l1 sign(p). L2 is torch's own
coupled `weight_decay` for Adam and SGD; for AdamW (decoupled `weight_decay`) the coupled L2 is
added by hand, p.grad.add_(p, alpha=l2), exactly the line torch's Adam runs.
"""
import os, sys
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_optim_fixtures import OUT, bits, gradient, ieee_sqrt, params0, split_tensors, write

torch.set_num_threads(1)


def trajectory(make_opt, n, seed, steps, segments, l1, l2, optimizer_decay, manual_l2):
    p0 = params0(seed, n)
    sizes = [s for s, _ in segments]
    ps = [t.clone().requires_grad_(True) for t in split_tensors(p0, sizes)]
    groups = [{"params": [p], "weight_decay": optimizer_decay(d)} for p, (_, d) in zip(ps, segments)]
    opt = make_opt(groups)
    out = []
    for t in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        gs = split_tensors(gradient(seed, t, n), sizes)
        loss = sum((p * g).sum() for p, g in zip(ps, gs))
        loss = loss + sum(l1 * p.abs().sum() for p, (_, d) in zip(ps, segments) if d)
        loss.backward()
        if manual_l2:
            with torch.no_grad():
                for p, (_, d) in zip(ps, segments):
                    if d:
                        p.grad.add_(p, alpha=l2)
        opt.step()
        out.append(bits(torch.cat([p.detach() for p in ps]).numpy()))
    return out


def case(name, kind, make_opt, config, l1, l2, wd, manual_l2, sqrt):
    n, seed, steps = 151, 21, 10
    segments = [(60, True), (30, False), (61, True)]
    # Adam, SGD: weight_decay is the coupled L2. AdamW: weight_decay is decoupled (wd), L2 by hand.
    decay = (lambda d: wd if d else 0.0) if manual_l2 else (lambda d: l2 if d else 0.0)
    ranges, at = [], 0
    for s, d in segments:
        if d:
            ranges.append([at, at + s])
        at += s
    record = dict(name=name, n=n, seed=seed, steps=steps, decay_segments=ranges, state={}, l1=l1, l2=l2,
                  config=dict(kind=kind, weight_decay=wd, **config),
                  params=trajectory(make_opt, n, seed, steps, segments, l1, l2, decay, manual_l2))
    if sqrt:
        with ieee_sqrt():
            record["params_ieee_sqrt"] = trajectory(make_opt, n, seed, steps, segments, l1, l2, decay, manual_l2)
    write(name, record)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    case("reg_adam", "adam", lambda g: torch.optim.Adam(g, lr=1e-2, foreach=False),
         dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8), l1=0.01, l2=0.05, wd=0.0, manual_l2=False, sqrt=True)
    case("reg_sgd", "sgd", lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9, foreach=False),
         dict(lr=0.05, momentum=0.9), l1=0.02, l2=0.03, wd=0.0, manual_l2=False, sqrt=False)
    case("reg_adamw", "adamw", lambda g: torch.optim.AdamW(g, lr=1e-2, foreach=False),
         dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8), l1=0.005, l2=0.02, wd=0.1, manual_l2=True, sqrt=True)
    print("wrote reg_adam, reg_sgd, reg_adamw")
