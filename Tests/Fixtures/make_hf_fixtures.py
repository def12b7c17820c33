#!/usr/bin/env python3
"""Writes the Hugging Face directory fixtures into Tests/Fixtures/hf/.

Run: Tests/Fixtures/make_venv.sh && .venv-fixtures/bin/python Tests/Fixtures/make_hf_fixtures.py
Deterministic (fixed seed, torch CPU float32, one thread). Files:
  hf/tiny/              GPT2LMHeadModel.save_pretrained of a random model whose shape is no
                        preset (n_layer 2, n_head 4, n_embd 32, n_positions 48, vocab_size 260):
                        config.json + model.safetensors, exactly as transformers writes them
  hf/tiny_logits.safetensors  tokens [2, 16] (as F32) and the logits [2, 16, 260] transformers
                        computes for them in float32 (eager attention)
Also `--check DIR OUT`: loads DIR with GPT2LMHeadModel.from_pretrained (no edits), writes the
logits of the same tokens and the load report (missing/unexpected keys, dtype) to OUT
(a safetensors file with metadata); the Swift round-trip test calls it when the venv exists.
"""
import json, os, shutil, sys
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "hf")
V, T, L, NH, C = 260, 48, 2, 4, 32


def tokens():
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, V, (2, 16), generator=g)


def make():
    torch.manual_seed(1234)
    cfg = GPT2Config(vocab_size=V, n_positions=T, n_embd=C, n_layer=L, n_head=NH,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=None, eos_token_id=None)
    m = GPT2LMHeadModel(cfg).float().eval()
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():   # every parameter random (biases and norms too)
        for name, p in m.named_parameters():
            if name.startswith("lm_head"):
                continue
            scale = 0.1 if ("ln_" in name and name.endswith("weight")) else 0.05
            base = 1.0 if ("ln_" in name and name.endswith("weight")) else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=g))
    d = os.path.join(OUT, "tiny")
    shutil.rmtree(d, ignore_errors=True)
    m.save_pretrained(d)
    ids = tokens()
    with torch.no_grad():
        logits = m(input_ids=ids).logits
    save_file({"tokens": ids.float().contiguous(), "logits": logits.contiguous()},
              os.path.join(OUT, "tiny_logits.safetensors"))
    print("wrote", d, sorted(os.listdir(d)), "logits", tuple(logits.shape))


def check(directory, out):
    m, info = GPT2LMHeadModel.from_pretrained(directory, output_loading_info=True)
    m = m.float().eval()
    cfg = m.config
    ids = tokens() % cfg.vocab_size
    with torch.no_grad():
        logits = m(input_ids=ids).logits
    tied = m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()
    report = {k: sorted(v) if isinstance(v, (list, set)) else str(v) for k, v in info.items()}
    report.update(tied=tied, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                  n_positions=cfg.n_positions, vocab_size=cfg.vocab_size)
    save_file({"tokens": ids.float().contiguous(), "logits": logits.contiguous()}, out,
              metadata={"report": json.dumps(report)})
    print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    else:
        make()
