#!/usr/bin/env python3
"""Writes Tests/Fixtures/model/losses.safetensors: values and gradients of the losses of
zero-train's ZeroModels/Losses.swift, computed by PyTorch CPU in float64 from float32 inputs
(so the reference carries no fp32 rounding of its own; the tests state their tolerance).

Run: Tests/Fixtures/make_venv.sh && .venv-fixtures/bin/python Tests/Fixtures/make_loss_fixtures.py

Each case <c> holds its inputs, <c>.loss (shape [1]) and <c>.grad.<input> (float32):
- ce: torch.nn.functional.cross_entropy(logits [6, 5], targets, label_smoothing=0.1), mean.
- focal_sigmoid: torchvision.ops.sigmoid_focal_loss(logits [8], targets in {0, 1},
  alpha=0.25, gamma=2, reduction="mean"), written out as torchvision defines it.
- focal_softmax: mean over rows of -alpha (1 - p_y)^gamma log p_y, p = softmax(logits [6, 5]),
  alpha=0.25, gamma=2 (the multi-class form of Lin et al.).
- infonce: NT-Xent (SimCLR) over z [8, 4]: rows i and (i + 4) mod 8 are the two views of one
  example; cosine similarities / temperature 0.5, the diagonal excluded, cross-entropy to the
  other view, mean over the 8 rows.
- triplet: torch.nn.TripletMarginLoss(margin=1.0, p=2, eps=1e-6) over anchor, positive,
  negative [5, 4], mean; one triplet is arranged to be inactive (loss 0 there).
"""
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(20261206)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "losses.safetensors")
tensors = {}


def record(name, inputs, loss_fn, ints=()):
    """Stores fp32 inputs, then the float64 loss and gradients of `loss_fn(*inputs)`."""
    xs = [x.to(torch.float32) for x in inputs]
    leaves = [x.to(torch.float64).requires_grad_(x.is_floating_point() and i not in ints)
              for i, x in enumerate(xs)]
    loss = loss_fn(*leaves)
    loss.backward()
    tensors[f"{name}.loss"] = loss.detach().to(torch.float32).reshape(1)
    for i, (x, leaf) in enumerate(zip(xs, leaves)):
        tensors[f"{name}.in{i}"] = x.clone().contiguous()
        if leaf.requires_grad:
            tensors[f"{name}.grad.in{i}"] = leaf.grad.to(torch.float32).contiguous()


def focal_sigmoid(x, t, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return (alpha_t * loss).mean()


def focal_softmax(x, y, alpha=0.25, gamma=2.0):
    logp = F.log_softmax(x, dim=1).gather(1, y.long().unsqueeze(1)).squeeze(1)
    return (-alpha * (1 - logp.exp()) ** gamma * logp).mean()


def nt_xent(z, temperature=0.5):
    n2 = z.shape[0]
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.T / temperature
    sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    targets = (torch.arange(n2) + n2 // 2) % n2
    return F.cross_entropy(sim, targets)


logits = torch.randn(6, 5) * 2
targets = torch.tensor([0, 4, 2, 2, 1, 3], dtype=torch.float32)
record("ce", [logits, targets], lambda x, t: F.cross_entropy(x, t.long(), label_smoothing=0.1), ints=(1,))
record("focal_sigmoid", [torch.randn(8) * 2, torch.tensor([1, 0, 0, 1, 0, 0, 0, 1], dtype=torch.float32)],
       focal_sigmoid, ints=(1,))
record("focal_softmax", [logits, targets], focal_softmax, ints=(1,))
record("infonce", [torch.randn(8, 4)], nt_xent)
a, p, n = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4)
n[0] = a[0] + 5.0  # far negative: this triplet's hinge is inactive
p[0] = a[0] + 0.1
record("triplet", [a, p, n], lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=1.0, p=2, eps=1e-6))
save_file(tensors, OUT, metadata={"generator": "Tests/Fixtures/make_loss_fixtures.py", "torch": torch.__version__})
print(f"wrote {OUT}: {len(tensors)} tensors")

# --- model/feature_mlp.safetensors: the feature MLP of --task classify / contrastive, end to end.
# A 5 -> 8 -> 8 -> K MLP (Linear weights [in, out] as zero-train stores them, y = x W + b, ReLU
# between layers) on fp32 inputs, forward and backward in float64; for each loss the value and
# the gradient of every parameter. Classifier: 6 rows, K = 4 (cross_entropy with label smoothing
# 0.1, softmax focal alpha 0.25 gamma 2, torchvision sigmoid focal over the one-hot labels alpha
# 0.25 gamma 2, mean over N x K). Contrastive: 4 examples x 2 views = 8 rows, 3 outputs
# (NT-Xent temperature 0.5; triplet margin 1: anchor row b, positive row 4 + b, negative row
# 4 + (b + 1) mod 4).
torch.manual_seed(20261207)
FEATURE_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "feature_mlp.safetensors")
feature_tensors = {}


def store_case(name, x, loss, params, leaves):
    """Records one case: the input rows, the fp64 loss and each layer's weights and gradients (fp32)."""
    feature_tensors[f"{name}.x"] = x.contiguous()
    feature_tensors[f"{name}.loss"] = loss.detach().to(torch.float32).reshape(1)
    for k in range(3):
        feature_tensors[f"{name}.layers.{k}.weight"] = params[2 * k].contiguous()
        feature_tensors[f"{name}.layers.{k}.bias"] = params[2 * k + 1].contiguous()
        feature_tensors[f"{name}.grad.layers.{k}.weight"] = leaves[2 * k].grad.to(torch.float32).contiguous()
        feature_tensors[f"{name}.grad.layers.{k}.bias"] = leaves[2 * k + 1].grad.to(torch.float32).contiguous()


def mlp_case(name, rows, outputs, loss_fn):
    widths = [5, 8, 8, outputs]
    params = []
    for k in range(3):
        params.append((torch.randn(widths[k], widths[k + 1]) * (0.6 if k < 2 else 0.4)).to(torch.float32))
        params.append((torch.randn(widths[k + 1]) * 0.1).to(torch.float32))
    x = torch.randn(rows, 5).to(torch.float32)
    leaves = [p.to(torch.float64).requires_grad_(True) for p in params]
    h = x.to(torch.float64)
    for k in range(3):
        h = h @ leaves[2 * k] + leaves[2 * k + 1]
        if k < 2:
            h = torch.relu(h)
    loss = loss_fn(h)
    loss.backward()
    store_case(name, x, loss, params, leaves)


labels = torch.tensor([0, 3, 1, 0, 2, 3])
feature_tensors["labels"] = labels.to(torch.float32)
mlp_case("cross_entropy", 6, 4, lambda h: F.cross_entropy(h, labels, label_smoothing=0.1))
mlp_case("focal", 6, 4, lambda h: focal_softmax(h, labels))
mlp_case("sigmoid_focal", 6, 4, lambda h: focal_sigmoid(h, F.one_hot(labels, 4).to(torch.float64)))
mlp_case("infonce", 8, 3, nt_xent)
mlp_case("triplet", 8, 3, lambda h: F.triplet_margin_loss(h[:4], h[4:], h[4:].roll(-1, 0), margin=1.0, p=2, eps=1e-6))


# Dropout (--dropout 0.3) on both hidden layers, cross_entropy: the keep masks are zero-train's,
# SplitMix64 keyed by (seed ^ 0x44524F50, step, micro-batch, layer), u >= p in element order
# (Dropout.keepMask), here for seed 7, step 2, micro-batch 1; kept values scaled by 1 / (1 - p)
# as torch.nn.functional.dropout does.
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def keep_mask(seed, keys, count, p):
    state = mix(seed)
    for k in keys:
        state = mix(state ^ mix((k + GOLDEN) & MASK64))
    out = []
    for _ in range(count):
        state = (state + GOLDEN) & MASK64
        out.append((mix(state) >> 11) * 2.0 ** -53 >= p)
    return torch.tensor(out, dtype=torch.float64)


P = 0.3
masks = [keep_mask(7 ^ 0x44524F50, [2, 1, k], 6 * 8, P).reshape(6, 8) for k in range(2)]
feature_tensors["dropout.mask"] = torch.stack(masks).to(torch.float32)


def dropout_mlp_case(name):
    widths = [5, 8, 8, 4]
    params = [(torch.randn(widths[k], widths[k + 1]) * 0.6).to(torch.float32) if i == 0 else (torch.randn(widths[k + 1]) * 0.1).to(torch.float32)
              for k in range(3) for i in range(2)]
    x = torch.randn(6, 5).to(torch.float32)
    leaves = [p.to(torch.float64).requires_grad_(True) for p in params]
    h = x.to(torch.float64)
    for k in range(3):
        h = h @ leaves[2 * k] + leaves[2 * k + 1]
        if k < 2:
            h = torch.relu(h) * masks[k] / (1 - P)
    loss = F.cross_entropy(h, labels)
    loss.backward()
    store_case(name, x, loss, params, leaves)


dropout_mlp_case("dropout")
save_file(feature_tensors, FEATURE_OUT, metadata={"generator": "Tests/Fixtures/make_loss_fixtures.py", "torch": torch.__version__})
print(f"wrote {FEATURE_OUT}: {len(feature_tensors)} tensors")


# The token MLP (`MLP`, --model mlp --task lm) with --dropout 0.3: layer 0 looks up the token's
# row and adds the bias, then ReLU and dropout; layer 1 is Linear + ReLU + dropout; layer 2 a
# Linear to V logits and mean cross-entropy over the B x T = 6 positions. Masks as above, for
# seed 7, step 2, micro-batch 1, layers 0 and 1 ([6 positions, 6 units] each).
TOKEN_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "token_mlp_dropout.safetensors")


def token_mlp_dropout_case():
    widths = [8, 6, 6, 8]
    params = [(torch.randn(widths[k], widths[k + 1]) * 0.6).to(torch.float32) if i == 0 else (torch.randn(widths[k + 1]) * 0.1).to(torch.float32)
              for k in range(3) for i in range(2)]
    tokens = torch.tensor([1, 4, 0, 7, 3, 4])
    targets = torch.tensor([4, 0, 7, 3, 4, 2])
    masks = [keep_mask(7 ^ 0x44524F50, [2, 1, k], 6 * 6, P).reshape(6, 6) for k in range(2)]
    leaves = [p.to(torch.float64).requires_grad_(True) for p in params]
    h = torch.relu(leaves[0][tokens] + leaves[1]) * masks[0] / (1 - P)
    h = torch.relu(h @ leaves[2] + leaves[3]) * masks[1] / (1 - P)
    loss = F.cross_entropy(h @ leaves[4] + leaves[5], targets)
    loss.backward()
    out = {"tokens": tokens.to(torch.float32), "targets": targets.to(torch.float32),
           "mask": torch.stack(masks).to(torch.float32), "loss": loss.detach().to(torch.float32).reshape(1)}
    for k in range(3):
        out[f"layers.{k}.weight"] = params[2 * k].contiguous()
        out[f"layers.{k}.bias"] = params[2 * k + 1].contiguous()
        out[f"grad.layers.{k}.weight"] = leaves[2 * k].grad.to(torch.float32).contiguous()
        out[f"grad.layers.{k}.bias"] = leaves[2 * k + 1].grad.to(torch.float32).contiguous()
    save_file(out, TOKEN_OUT, metadata={"generator": "Tests/Fixtures/make_loss_fixtures.py", "torch": torch.__version__})
    print(f"wrote {TOKEN_OUT}: {len(out)} tensors")


token_mlp_dropout_case()
