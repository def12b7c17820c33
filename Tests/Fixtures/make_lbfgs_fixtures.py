#!/usr/bin/env python3
"""Writes Tests/Fixtures/optim/lbfgs.json: torch.optim.LBFGS iterates on a small smooth
problem, for zero-train's LBFGS (Sources/ZeroOptim/LBFGS.swift).

Run: Tests/Fixtures/make_venv.sh && .venv-fixtures/bin/python Tests/Fixtures/make_lbfgs_fixtures.py

Problem: L2-regularized logistic regression, f(w) = mean_i log(1 + exp(-y_i x_i.w)) + 0.5 lam ||w||^2
with X [64, 20] and labels y in {-1, 1} (float32), lam = 0.001, w0 small random. For line_search
in (none, strong_wolfe): LBFGS(lr=1, max_iter=4, history_size=3), three step() calls; stored
are w after each call (<ls>.w1..w3), torch's func_evals and n_iter after each call, and the
loss each call returned (<ls>.loss, [3]).
"""
import os
import torch
import json

torch.manual_seed(7)
torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim", "lbfgs.json")
X = torch.randn(64, 20)
y = torch.sign(X @ torch.randn(20) + 0.5 * torch.randn(64))
w0 = 0.1 * torch.randn(20)
lam = 0.001
tensors = {"X": X, "y": y, "w0": w0.clone()}
for name, ls in (("none", None), ("strong_wolfe", "strong_wolfe")):
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=4, history_size=3, line_search_fn=ls)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-y * (X @ w)).mean() + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    losses = []
    for k in range(1, 4):
        losses.append(float(opt.step(closure).detach()))
        tensors[f"{name}.w{k}"] = w.detach().clone()
        tensors[f"{name}.func_evals{k}"] = torch.tensor([float(opt.state[w]["func_evals"])])
        tensors[f"{name}.n_iter{k}"] = torch.tensor([float(opt.state[w]["n_iter"])])
    tensors[f"{name}.loss"] = torch.tensor(losses, dtype=torch.float32)
doc = {"generator": "Tests/Fixtures/make_lbfgs_fixtures.py", "torch": torch.__version__, "lam": lam,
       "tensors": {k: v.flatten().tolist() for k, v in tensors.items()}}
with open(OUT, "w") as f:
    json.dump(doc, f)
print(f"wrote {OUT}")
