#!/usr/bin/env python3
"""Writes Tests/Fixtures/model/gpt_bf16_compute.safetensors: the GPT parity fixture for bf16
compute (every matmul input rounded to bf16, fp32 accumulation and output).

Run: Tests/Fixtures/make_venv.sh && .venv-fixtures/bin/python Tests/Fixtures/make_bf16_compute_fixtures.py
(after make_model_fixtures.py: the parameters and batch are gpt_fp32.safetensors's, so this
file holds only the results). Deterministic (torch CPU, one thread).

The reference is a plain GPT-2 (tanh GELU, LayerNorm eps 1e-5, tied head, no dropout) in
torch where every matmul is `bf16mm`: both inputs rounded to bf16 with torch's RNE (denormals
kept), the product summed in fp32, the output fp32; its backward does the same to the two
matmuls it runs (dA = dY B^T, dB = A^T dY). Attention: S = bf16mm(q, k^T) / sqrt(hs),
softmax in fp32, y = bf16mm(P, v). Everything else (embeddings, LayerNorm, GELU, residuals,
softmax, the loss) is fp32, as in zero-train's bf16 compute mode.

Contents: grad.<name> (fp32), loss, logits; metadata "spread" is, per gradient tensor, the
relative L2 distance between this reference and the same computation with every matmul summed
in fp64 instead (then rounded to fp32): how far two correct implementations that only sum in
a different order drift apart. "fp32_distance" is the same distance to the all-fp32 model
(no bf16 rounding anywhere): what a missing rounding looks like.
"""
import json, os
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")


def rb(t):
    return t.to(torch.bfloat16).to(torch.float32)


def make_mm(acc, rounding):
    """A matmul whose forward and backward products use bf16-rounded inputs (if rounding)
    summed in `acc` (torch.float32 or torch.float64), outputs fp32."""
    r = rb if rounding else (lambda t: t)

    def mul(a, b):
        return (r(a).to(acc) @ r(b).to(acc)).to(torch.float32)

    class MM(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return mul(a, b)

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return mul(g, b.transpose(-1, -2)), mul(a.transpose(-1, -2), g)

    return MM.apply


def gpt(params, tokens, meta, mm):
    L, NH, C = int(meta["layers"]), int(meta["heads"]), int(meta["channels"])
    B, T = tokens.shape
    hs = C // NH
    x = params["wte.weight"][tokens] + params["wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(L):
        p = lambda n: params[f"h.{l}.{n}"]
        h = F.layer_norm(x, (C,), p("ln_1.weight"), p("ln_1.bias"), 1e-5)
        qkv = mm(h, p("attn.c_attn.weight")) + p("attn.c_attn.bias")
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.reshape(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        s = mm(q, k.transpose(-1, -2)) * (1 / hs ** 0.5)
        a = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
        y = mm(a, v).transpose(1, 2).reshape(B, T, C)
        x = x + mm(y, p("attn.c_proj.weight")) + p("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), p("ln_2.weight"), p("ln_2.bias"), 1e-5)
        f = F.gelu(mm(h, p("mlp.c_fc.weight")) + p("mlp.c_fc.bias"), approximate="tanh")
        x = x + mm(f, p("mlp.c_proj.weight")) + p("mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), params["ln_f.weight"], params["ln_f.bias"], 1e-5)
    return mm(x, params["wte.weight"].transpose(0, 1))


def run(source, meta, mm):
    params = {k[len("param."):]: v.clone().requires_grad_() for k, v in source.items() if k.startswith("param.")}
    tokens, targets = source["tokens"].long(), source["targets"].long()
    logits = gpt(params, tokens, meta, mm)
    V = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    return loss.detach(), logits.detach(), {n: p.grad.detach() for n, p in params.items()}


def rel_l2(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def main():
    from safetensors import safe_open
    src_path = os.path.join(OUT, "gpt_fp32.safetensors")
    source = load_file(src_path)
    with safe_open(src_path, "pt") as f:
        meta = f.metadata()
    hs = int(meta["channels"]) // int(meta["heads"])
    assert hs in (4, 16, 64, 256), "1/sqrt(hs) must be a power of two: scaling before or after rounding then agree"
    loss, logits, grads = run(source, meta, make_mm(torch.float32, True))
    loss64, _, grads64 = run(source, meta, make_mm(torch.float64, True))
    loss32, _, grads32 = run(source, meta, make_mm(torch.float32, False))
    spread = {n: rel_l2(grads[n], grads64[n]) for n in grads}
    fp32_distance = {n: rel_l2(grads32[n], grads[n]) for n in grads}
    out = {"grad." + n: g.contiguous() for n, g in grads.items()}
    out["loss"] = loss.reshape(1)
    out["logits"] = logits.contiguous()
    out_meta = dict(meta)
    out_meta.update(mode="bf16-compute", source="gpt_fp32.safetensors",
                    spread=json.dumps(spread, sort_keys=True), fp32_distance=json.dumps(fp32_distance, sort_keys=True),
                    loss_spread=repr(abs(loss.item() - loss64.item()) / abs(loss64.item())),
                    loss_fp32_distance=repr(abs(loss.item() - loss32.item()) / abs(loss.item())))
    fn = os.path.join(OUT, "gpt_bf16_compute.safetensors")
    save_file(out, fn, metadata=out_meta)
    print(fn, "loss", loss.item(), "fp64-sum loss", loss64.item(), "fp32-compute loss", loss32.item())
    print("max spread", max(spread.values()), "min fp32 distance", min(fp32_distance.values()))
    for n in sorted(grads):
        print(f"  {n:28s} spread {spread[n]:.2e}  fp32 distance {fp32_distance[n]:.2e}")


if __name__ == "__main__":
    main()
