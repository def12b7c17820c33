#!/usr/bin/env python3
"""torch.optim.AdamW on one 16M-parameter fp32 tensor, one thread: the comparison figure for
`zero-train bench optimizer`. Prints params/s (median) for the for-loop default, foreach and fused.

    /work/main/.venv-fixtures/bin/python bench/torch_adamw.py [--params N] [--repeats R] [--json]
"""
import argparse, json, statistics, time
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--params", type=int, default=16_777_216)
ap.add_argument("--repeats", type=int, default=9)
ap.add_argument("--json", action="store_true")
args = ap.parse_args()
torch.set_num_threads(1)

n = args.params
variants = [("for-loop", dict(foreach=False)), ("foreach", dict(foreach=True)), ("fused", dict(fused=True))]
if not args.json:
    print(f"torch {torch.__version__}, {n} params, 1 thread, median of {args.repeats}")
    print("variant     seconds   Mparam/s   GB/s@28B")
for name, kw in variants:
    p = torch.nn.Parameter(torch.linspace(-0.5, 0.5, n))
    p.grad = torch.linspace(-0.05, 0.05, n)
    try:
        opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, **kw)
        opt.step()  # allocate state
    except Exception as e:  # fused may be unavailable for a device/dtype
        print(f"{name}: unavailable ({e})")
        continue
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    pps = n / t
    if args.json:
        print(json.dumps({"bench": "torch_adamw", "variant": name, "params": n, "seconds": t,
                          "params_per_second": pps, "bytes_per_second": pps * 28, "torch": torch.__version__}))
    else:
        print(f"{name:10s} {t:8.4f} {pps / 1e6:10.1f} {pps * 28 / 1e9:8.2f}")
