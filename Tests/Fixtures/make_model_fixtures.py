#!/usr/bin/env python3
"""Writes the ZeroTensor/ZeroModels parity fixtures into Tests/Fixtures/model/.

Run: Tests/Fixtures/make_venv.sh && .venv-fixtures/bin/python Tests/Fixtures/make_model_fixtures.py
Deterministic (fixed seeds, torch CPU float32, one thread). Files:
  gpt_fp32.safetensors   GPT-2 (Hugging Face GPT2LMHeadModel, eager attention): param.*, grad.*,
                         tokens, targets (as F32), logits, loss
  gpt_bf16.safetensors   same with weights rounded through bfloat16 (stored BF16), fp32 compute,
                         gradients rounded to bfloat16 (stored BF16)
  mlp_fp32/mlp_bf16      the token MLP, same contents
  hf_gpt2_tiny.safetensors   a random GPT2LMHeadModel written by save_pretrained
  hf_gpt2_batch.safetensors  tokens, targets and the loss torch computes with that model
  bf16_conversion.json   float32 -> bf16 (RNE) and bf16 -> float32 checks: special values with
                         expected bits, and FNV-1a hashes of torch's outputs over exhaustive and
                         LCG-generated patterns
"""
import json, os, shutil, tempfile
import numpy as np
import torch
import torch.nn.functional as F
import ml_dtypes
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")
os.makedirs(OUT, exist_ok=True)


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


# ---------------------------------------------------------------- GPT-2

def gpt_model(V, T, L, NH, C):
    cfg = GPT2Config(vocab_size=V, n_positions=T, n_embd=C, n_layer=L, n_head=NH,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    cfg._attn_implementation = "eager"
    m = GPT2LMHeadModel(cfg).float().eval()
    return m


def randomize(m, seed):
    """Every parameter random (biases and norm weights too, so every path is exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("lm_head"):
                continue
            if "ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias") or "ln_" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif "wte" in name or "wpe" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def our_name(hf):
    return hf[len("transformer."):] if hf.startswith("transformer.") else hf


def gpt_fixture(bf16):
    V, TMAX, L, NH, C, B, T = 64, 16, 2, 2, 32, 2, 12
    torch.manual_seed(0)
    m = gpt_model(V, TMAX, L, NH, C)
    randomize(m, 1234)
    if bf16:
        with torch.no_grad():
            for _, p in m.named_parameters():
                p.copy_(bf16_round(p))
    g = torch.Generator().manual_seed(99)
    data = torch.randint(0, V, (B, T + 1), generator=g)
    tokens, targets = data[:, :T], data[:, 1:]
    logits = m(input_ids=tokens).logits
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    out = {}
    for name, p in m.named_parameters():
        if name.startswith("lm_head"):
            continue
        n = our_name(name)
        if bf16:
            out["param." + n] = p.detach().to(torch.bfloat16).contiguous()
            out["grad." + n] = p.grad.detach().to(torch.bfloat16).contiguous()
        else:
            out["param." + n] = p.detach().contiguous()
            out["grad." + n] = p.grad.detach().contiguous()
    out["tokens"] = tokens.float().contiguous()
    out["targets"] = targets.float().contiguous()
    out["logits"] = logits.detach().contiguous()
    out["loss"] = loss.detach().reshape(1)
    meta = dict(vocab=str(V), context=str(TMAX), layers=str(L), heads=str(NH), channels=str(C),
                batch=str(B), seq=str(T), mode="bf16" if bf16 else "fp32")
    fn = os.path.join(OUT, "gpt_bf16.safetensors" if bf16 else "gpt_fp32.safetensors")
    save_file(out, fn, metadata=meta)
    print(fn, "loss", loss.item())


# ---------------------------------------------------------------- MLP

def mlp_fixture(bf16):
    V, H, B, T = 32, [24, 16], 2, 8
    g = torch.Generator().manual_seed(7)
    widths = [V] + H + [V]
    params = []
    for k in range(len(widths) - 1):
        fan_in = 1 if k == 0 else widths[k]
        W = (torch.randn(widths[k], widths[k + 1], generator=g) / fan_in ** 0.5).requires_grad_()
        b = (0.1 * torch.randn(widths[k + 1], generator=g)).requires_grad_()
        params.append((W, b))
    if bf16:
        with torch.no_grad():
            for W, b in params:
                W.copy_(bf16_round(W)); b.copy_(bf16_round(b))
    data = torch.randint(0, V, (B, T + 1), generator=g)
    tokens, targets = data[:, :T], data[:, 1:]
    h = F.relu(params[0][0][tokens] + params[0][1])
    for W, b in params[1:-1]:
        h = F.relu(h @ W + b)
    logits = h @ params[-1][0] + params[-1][1]
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    out = {}
    for k, (W, b) in enumerate(params):
        for suffix, p in (("weight", W), ("bias", b)):
            n = f"layers.{k}.{suffix}"
            cast = (lambda t: t.to(torch.bfloat16)) if bf16 else (lambda t: t)
            out["param." + n] = cast(p.detach()).contiguous()
            out["grad." + n] = cast(p.grad.detach()).contiguous()
    out["tokens"] = tokens.float().contiguous()
    out["targets"] = targets.float().contiguous()
    out["logits"] = logits.detach().contiguous()
    out["loss"] = loss.detach().reshape(1)
    meta = dict(vocab=str(V), hidden=",".join(map(str, H)), batch=str(B), seq=str(T), mode="bf16" if bf16 else "fp32")
    fn = os.path.join(OUT, "mlp_bf16.safetensors" if bf16 else "mlp_fp32.safetensors")
    save_file(out, fn, metadata=meta)
    print(fn, "loss", loss.item())


# ---------------------------------------------------------------- Hugging Face file

def hf_fixture():
    V, TMAX, L, NH, C, B, T = 256, 32, 2, 4, 32, 2, 32
    torch.manual_seed(42)
    m = gpt_model(V, TMAX, L, NH, C)  # HF's own GPT-2 init, default biases (zeros)
    with tempfile.TemporaryDirectory() as d:
        m.save_pretrained(d, safe_serialization=True)
        shutil.copy(os.path.join(d, "model.safetensors"), os.path.join(OUT, "hf_gpt2_tiny.safetensors"))
    text = b"In the beginning God created the heaven and the earth. And the earth was without form"
    data = torch.tensor(list(text[: B * (T + 1)]), dtype=torch.long).reshape(B, T + 1)
    tokens, targets = data[:, :T], data[:, 1:]
    with torch.no_grad():
        logits = m(input_ids=tokens).logits
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    save_file({"tokens": tokens.float().contiguous(), "targets": targets.float().contiguous(), "loss": loss.reshape(1)},
              os.path.join(OUT, "hf_gpt2_batch.safetensors"),
              metadata=dict(vocab=str(V), context=str(TMAX), layers=str(L), heads=str(NH), channels=str(C)))
    print("hf loss", loss.item())


# ---------------------------------------------------------------- bf16 conversion

FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fnv(values):
    """FNV-1a over a sequence of integers, one integer per step: h = (h ^ v) * prime mod 2^64."""
    h = FNV_OFFSET
    for v in values.tolist():
        h = ((h ^ v) * FNV_PRIME) & MASK
    return h


def torch_round(u32):
    f = torch.from_numpy(u32.view(np.float32).copy())
    out = f.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).astype(np.uint32)
    nan = ((out & 0x7F80) == 0x7F80) & ((out & 0x7F) != 0)
    out[nan] = 0x7FC0  # NaN payload/sign differs between implementations; compare NaN-ness only
    ref = u32.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16).astype(np.uint32)
    ref[((ref & 0x7F80) == 0x7F80) & ((ref & 0x7F) != 0)] = 0x7FC0
    assert (ref == out).all(), "torch and ml_dtypes disagree"
    return out


def bf16_fixture():
    lows = [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
    hi = np.arange(65536, dtype=np.uint32)
    exhaustive = np.concatenate([(hi << 16) | lo for lo in lows]).astype(np.uint32)
    r_exh = torch_round(exhaustive)
    # LCG (Knuth MMIX constants), pattern = top 32 bits of the state, state starts at 1
    count = 1 << 22
    a, c = 6364136223846793005, 1442695040888963407
    # jump-ahead in numpy: x_{i} for i in blocks, using uint64 wraparound arithmetic
    xs = np.empty(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = np.uint64(1)
        A, Cc = np.uint64(a), np.uint64(c)
        for i in range(count):
            x = x * A + Cc
            xs[i] = x
    lcg = (xs >> np.uint64(32)).astype(np.uint32)
    r_lcg = torch_round(lcg)
    widen = torch.from_numpy(np.arange(65536, dtype=np.uint16).view(np.int16).copy()).view(torch.bfloat16).float()
    w = widen.numpy().view(np.uint32)
    specials = [0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
                0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0x3F808000, 0x3F818000,
                0x3F808001, 0x3F817FFF, 0x3F800000, 0x7F7F8000, 0x7F7F7FFF, 0x00008000, 0x00018000, 0x3FFFFFFF]
    sp = torch_round(np.array(specials, dtype=np.uint32))
    doc = {
        "fnv": "FNV-1a 64, one integer per step: h = (h ^ v) * 0x100000001B3 mod 2^64, h0 = 0xCBF29CE484222325",
        "nan": "every NaN output is replaced by 0x7FC0 before hashing",
        "specials": [[int(i), int(o)] for i, o in zip(specials, sp)],
        "exhaustive": {"lows": lows, "order": "for low in lows, for high in 0..<65536: (high << 16) | low",
                       "count": int(exhaustive.size), "hash": str(fnv(r_exh))},
        "lcg": {"a": str(a), "c": str(c), "x0": 1, "count": count,
                "pattern": "x = a*x + c mod 2^64 (then use), pattern = x >> 32", "hash": str(fnv(r_lcg))},
        "widen": {"order": "bf16 patterns 0..<65536", "hash": str(fnv(w))},
    }
    with open(os.path.join(OUT, "bf16_conversion.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print("bf16 fixture written")


if __name__ == "__main__":
    gpt_fixture(False)
    gpt_fixture(True)
    mlp_fixture(False)
    mlp_fixture(True)
    hf_fixture()
    bf16_fixture()
