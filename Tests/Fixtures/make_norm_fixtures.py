#!/usr/bin/env python3
"""Writes the normalization fixtures (--norm batch|layer) into Tests/Fixtures/model:

  batchnorm.safetensors       torch.nn.BatchNorm1d in training mode on x [24, 5] (4 parts of 6
                              rows): y, dx, dweight, dbias for a given dy, running statistics
  mlp_norm_batch.safetensors  two SGD steps of zero-train's mlp (V 256, hidden 256, 256) with
  mlp_norm_layer.safetensors  BatchNorm1d / LayerNorm after each hidden Linear, on the concatenated
                              global batch of G micro-batches, then the validation loss in eval()

Run with the fixtures venv:  .venv-fixtures/bin/python Tests/Fixtures/make_norm_fixtures.py

The MLP fixtures need no weights or token windows on file: this script recomputes zero-train's
seeded initialization (SplitMix64 keyed by (seed, tensor name), Box-Muller normals) and its
window placement (keyed by (seed, step, g, row)) from their definitions in
Sources/ZeroTensor/Random.swift and Sources/ZeroModels/TokenDataset.swift. It stores the
window starts so that the Swift test checks that replication first.
"""
import math, os
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")
M64 = (1 << 64) - 1


def mix(x):
    z = x & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Seeded:
    """zero-train's SeededGenerator."""

    def __init__(self, seed, key=None, keys=None):
        if key is not None:
            h = 0xCBF29CE484222325
            for b in key.encode():
                h = ((h ^ b) * 0x100000001B3) & M64
            self.state = mix(seed ^ mix(h))
        else:
            s = mix(seed)
            for k in keys:
                s = mix(s ^ mix((k + 0x9E3779B97F4A7C15) & M64))
            self.state = s
        self.spare = None

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        return mix(self.state)

    def normal(self):
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        u1 = (self.next() >> 11) * 2.0 ** -53
        u2 = (self.next() >> 11) * 2.0 ** -53
        r = math.sqrt(-2 * math.log(1 - u1))
        self.spare = r * math.sin(2 * math.pi * u2)
        return r * math.cos(2 * math.pi * u2)


def window_start(seed, step, g, b, count, T):
    return Seeded(seed, keys=[step & M64, g, b]).next() % (count - T)


def mlp_init(seed, widths):
    """MLP.initialize: embedding N(0, 1), hidden He N(0, 2/fan_in), output N(0, 1/fan_in), zero biases
    (the std is a Float, as in Swift)."""
    params, n = [], len(widths) - 2
    for k in range(len(widths) - 1):
        fan_in, out = widths[k], widths[k + 1]
        std = 1.0 if k == 0 else float(np.float32(1) / np.sqrt(np.float32(fan_in))) if k == n else float(np.sqrt(np.float32(2) / np.float32(fan_in)))
        rng = Seeded(seed, key=f"layers.{k}.weight")
        w = np.array([rng.normal() * std for _ in range(fan_in * out)], dtype=np.float64).astype(np.float32)
        params.append(torch.tensor(w).reshape(fan_in, out))
        params.append(torch.zeros(out))
    return params


def batchnorm_kernel_fixture():
    g = torch.Generator().manual_seed(11)
    M, C, parts = 24, 5, 4
    x = (torch.randn(M, C, generator=g) * torch.tensor([1.0, 3.0, 0.5, 10.0, 2.0]) + torch.tensor([0.0, 5.0, -2.0, 100.0, 1.0]))
    bn = torch.nn.BatchNorm1d(C)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(C, generator=g) * 0.5 + 1)
        bn.bias.copy_(torch.randn(C, generator=g) * 0.5)
    dy = torch.randn(M, C, generator=g)
    xr = x.clone().requires_grad_(True)
    y = bn(xr)
    y.backward(dy)
    out = dict(x=x, weight=bn.weight.detach().clone(), bias=bn.bias.detach().clone(), dy=dy, y=y.detach(),
               dx=xr.grad.detach(), dweight=bn.weight.grad.detach(), dbias=bn.bias.grad.detach(),
               running_mean=bn.running_mean.clone(), running_var=bn.running_var.clone())
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "batchnorm.safetensors"),
              metadata=dict(parts=str(parts)))


class TorchMLP(torch.nn.Module):
    def __init__(self, params, widths, norm):
        super().__init__()
        self.p = torch.nn.ParameterList([torch.nn.Parameter(t.clone()) for t in params])
        hidden = widths[1:-1]
        make = {"batch": lambda c: torch.nn.BatchNorm1d(c), "layer": lambda c: torch.nn.LayerNorm(c)}[norm]
        self.norms = torch.nn.ModuleList([make(c) for c in hidden])

    def forward(self, tokens):
        p, n = self.p, len(self.norms)
        h = p[0][tokens] + p[1]
        h = F.relu(self.norms[0](h))
        for k in range(1, n):
            h = F.relu(self.norms[k](h @ p[2 * k] + p[2 * k + 1]))
        return h @ p[2 * n] + p[2 * n + 1]


def mlp_norm_fixture(norm):
    V, hidden, B, T, G, steps, seed, lr = 256, [256, 256], 2, 4, 4, 2, 5, 0.1
    widths = [V] + hidden + [V]
    g = torch.Generator().manual_seed(3)
    stream = torch.randint(0, V, (300,), generator=g)
    model = TorchMLP(mlp_init(seed, widths), widths, norm)
    # zero-train's decay policy does not matter here: SGD without weight decay.
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def batch(step, micro_batches):
        starts = [[window_start(seed, step, m, b, len(stream), T) for b in range(B)] for m in range(micro_batches)]
        idx = torch.tensor([s + t for row in starts for s in row for t in range(T)])
        return stream[idx], stream[idx + 1], starts

    losses, all_starts = [], []
    for step in range(steps):
        tokens, targets, starts = batch(step, G)
        all_starts += starts
        opt.zero_grad()
        loss = F.cross_entropy(model(tokens), targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    val_batches = 3
    vt, vy, vstarts = batch(-1, val_batches)
    with torch.no_grad():
        val = F.cross_entropy(model(vt), vy).item()
    out = {"stream": stream.float(), "losses": torch.tensor(losses, dtype=torch.float32), "val_loss": torch.tensor([val], dtype=torch.float32),
           "window_starts": torch.tensor(all_starts + vstarts, dtype=torch.float32).reshape(-1)}
    names = []
    for k in range(len(widths) - 1):
        names += [f"layers.{k}.weight", f"layers.{k}.bias"]
    for name, p in zip(names, model.p):
        out["param." + name] = p.detach().reshape(-1).contiguous()
    for k, m in enumerate(model.norms):
        out[f"param.layers.{k}.norm.weight"] = m.weight.detach().clone()
        out[f"param.layers.{k}.norm.bias"] = m.bias.detach().clone()
        if norm == "batch":
            out[f"buffer.layers.{k}.norm.running_mean"] = m.running_mean.clone()
            out[f"buffer.layers.{k}.norm.running_var"] = m.running_var.clone()
    # The matrices are large: keep every 61st element (indices i = 61 j), the rest whole.
    for name in list(out):
        if name.startswith("param.") and out[name].numel() > 4096:
            out[name] = out[name][::61].contiguous()
    meta = dict(norm=norm, seed=str(seed), micro_batch=str(B), seq_len=str(T), global_micro_batches=str(G), steps=str(steps),
                lr=str(lr), val_batches=str(val_batches), matrix_stride="61")
    fn = os.path.join(OUT, f"mlp_norm_{norm}.safetensors")
    save_file(out, fn, metadata=meta)
    print(fn, "losses", losses, "val", val)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    batchnorm_kernel_fixture()
    mlp_norm_fixture("batch")
    mlp_norm_fixture("layer")
