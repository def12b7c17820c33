#!/usr/bin/env python3
"""Writes Tests/Fixtures/optim/lbfgs.json: torch.optim.LBFGS iterates on a small smooth
problem, for zero-train's LBFGS (Sources/ZeroOptim/LBFGS.swift).

Run: Tests/Fixtures/make_venv.sh && .venv-fixtures/bin/python Tests/Fixtures/make_lbfgs_fixtures.py
(also writes optim/lbfgs_mlp.json, for the trainer: see the end of this file)

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

# ---------------------------------------------------------------- through the trainer
# Tests/Fixtures/optim/lbfgs_mlp.json: torch.optim.LBFGS on zero-train's `mlp` model
# (V = 256, hidden [256, 256]: h = relu(W0[tokens] + b0), h = relu(h W1 + b1), logits = h W2 + b2,
# mean cross-entropy), weights from an integer formula both sides compute exactly in fp32, one
# sequence of T = 32 tokens (zero-train's data then holds exactly T + 1 tokens, so every row of
# every micro-batch is this sequence). LBFGS(lr=1, max_iter=4, history_size=5), three step()
# calls per line search; stored: the loss each call returned, and after each call every
# tensor's L2 norm and 64 elements at a fixed stride (the whole weights would be 3 x 66k floats).
V, H, T = 256, 256, 32


def formula_weights():
    out = []
    for k in range(3):
        i = torch.arange(V if k == 0 else H).reshape(-1, 1)
        j = torch.arange(H if k < 2 else V).reshape(1, -1)
        n = ((i * 131 + j * 71 + k * 29) % 199 - 99).float()
        W = n / torch.tensor(99.0) * (0.5 if k == 0 else 0.0625)
        jj = torch.arange(H if k < 2 else V)
        b = (((jj * 37 + k * 11) % 23) - 11).float() / torch.tensor(110.0)
        out.append((W.contiguous(), b.contiguous()))
    return out


def samples(t):
    flat = t.detach().flatten()
    stride = max(1, flat.numel() // 64)
    return flat[::stride][:64]


g = torch.Generator().manual_seed(11)
seq = torch.randint(0, V, (T + 1,), generator=g)
mlp = {"generator": "Tests/Fixtures/make_lbfgs_fixtures.py", "torch": torch.__version__, "tokens": seq.tolist(),
       "seq": T, "max_iter": 4, "history": 5, "lr": 1.0, "tensors": {}}
for name, ls in (("none", None), ("strong_wolfe", "strong_wolfe")):
    params = [p.requires_grad_(True) for wb in formula_weights() for p in wb]
    opt = torch.optim.LBFGS(params, lr=1, max_iter=4, history_size=5, line_search_fn=ls)
    tokens, targets = seq[:T], seq[1:]

    def closure():
        opt.zero_grad()
        W0, b0, W1, b1, W2, b2 = params
        h = torch.relu(W0[tokens] + b0)
        h = torch.relu(h @ W1 + b1)
        loss = torch.nn.functional.cross_entropy(h @ W2 + b2, targets)
        loss.backward()
        return loss

    losses = []
    for k in range(1, 4):
        losses.append(float(opt.step(closure).detach()))
        state = opt.state[opt._params[0]]
        mlp["tensors"][f"{name}.step{k}.func_evals"] = [float(state["func_evals"])]
        mlp["tensors"][f"{name}.step{k}.n_iter"] = [float(state["n_iter"])]
        for idx, p in enumerate(params):
            tname = f"layers.{idx // 2}.{'weight' if idx % 2 == 0 else 'bias'}"
            mlp["tensors"][f"{name}.step{k}.{tname}.norm"] = [float(p.detach().norm())]
            mlp["tensors"][f"{name}.step{k}.{tname}.samples"] = samples(p).tolist()
    mlp["tensors"][f"{name}.loss"] = losses
out = os.path.join(os.path.dirname(OUT), "lbfgs_mlp.json")
with open(out, "w") as f:
    json.dump(mlp, f)
print(f"wrote {out}", {k: v for k, v in mlp["tensors"].items() if k.endswith((".loss", "func_evals", "n_iter"))})
