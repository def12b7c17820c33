#!/usr/bin/env python3
"""One rank of the PyTorch side of bench/vs_pytorch.sh: GPT-2 as zero-train builds it, trained
for a few steps under DDP or FSDP2 on gloo, one thread. bench/vs_pytorch.py starts two of these
(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment) and reads the JSON each writes.

The model matches Sources/ZeroModels/GPT.swift: byte-level vocabulary, learned positions,
pre-LN blocks (ln_1 -> causal self-attention -> residual, ln_2 -> MLP with tanh GELU ->
residual), ln_f, and a head tied to wte; biases everywhere, no dropout. The parameter count
equals GPTConfig.parameterCount. The training step matches zero-train's: mean cross-entropy,
global-norm clipping at 1.0, AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices
only), a learning rate set every step.

Variants:
  ddp-bf16    DDP, torch.autocast("cpu", bfloat16) around forward and loss, fused AdamW
  ddp-fp32    DDP, fp32 throughout, fused AdamW
  fsdp2-bf16  fully_shard per block and on the root (FULL_SHARD: reshard after forward),
              MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32), fused AdamW
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ("ddp-bf16", "ddp-fp32", "fsdp2-bf16")


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, T_max, L, NH, C):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T_max, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        proj_std = 0.02 / math.sqrt(2 * L)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, std=proj_std if name.endswith("_proj.weight") else 0.02)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def parameter_count(V, T_max, L, NH, C):
    """GPTConfig.parameterCount: embeddings, L blocks, ln_f; the tied head adds none."""
    return (V + T_max) * C + L * (12 * C * C + 13 * C) + 2 * C


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=VARIANTS, required=True)
    ap.add_argument("--shape", required=True, help="V,T_max,L,NH,C")
    ap.add_argument("--micro-batch", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True, help="all steps, warm-up included")
    ap.add_argument("--out", required=True, help="JSON file (rank r writes OUT.r)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    V, T_max, L, NH, C = (int(s) for s in args.shape.split(","))
    B, T = args.micro_batch, args.seq_len

    torch.manual_seed(1337)
    model = GPT(V, T_max, L, NH, C)
    params = sum(p.numel() for p in model.parameters())
    bf16 = args.variant.endswith("bf16")
    if args.variant.startswith("ddp"):
        model = nn.parallel.DistributedDataParallel(model)
    else:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in model.h:
            fully_shard(block, mp_policy=mp, reshard_after_forward=True)
        fully_shard(model, mp_policy=mp, reshard_after_forward=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, fused=True)
        optimizer = "fused"
    except (RuntimeError, ValueError):  # fused unsupported for these tensors: say so
        opt = torch.optim.AdamW(groups, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, foreach=True)
        optimizer = "foreach"

    gen = torch.Generator().manual_seed(1000 + rank)  # each rank its own micro-batch
    seconds, losses = [], []
    for step in range(args.steps):
        x = torch.randint(0, V, (B, T + 1), generator=gen)
        inputs, targets = x[:, :-1].contiguous(), x[:, 1:].contiguous()
        start = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = 3e-3 * min(1.0, (step + 1) / 20)
        if bf16 and args.variant.startswith("ddp"):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(inputs, targets)
        else:
            loss = model(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        seconds.append(time.perf_counter() - start)

    result = {
        "variant": args.variant, "rank": rank, "world": world, "params": params,
        "expected_params": parameter_count(V, T_max, L, NH, C), "optimizer": optimizer,
        "tokens_per_step": world * B * T, "step_seconds": seconds, "losses": losses,
        "peak_rss_bytes": peak_rss_bytes(), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
    with open(f"{args.out}.{rank}", "w") as f:
        json.dump(result, f)
    # Gloo may abort a worker while tearing down; the figures are written already.
    try:
        dist.barrier()
        dist.destroy_process_group()
    except Exception as e:  # noqa: BLE001 - any teardown failure is harmless here
        print(f"torch_gpt rank {rank}: teardown: {e}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
