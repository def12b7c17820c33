#!/usr/bin/env python3
"""Driver of bench/vs_pytorch.sh: zero-train against PyTorch on the same GPT configs, 2 ranks x
1 thread, all variants alternating round-robin in one run. Prints per variant the median
tokens/s over all timed steps (warm-up steps excluded), peak RSS per rank, and our/their
ratios: ours bf16 against the faster torch bf16 variant, ours fp32 against ddp-fp32.

Run it through bench/vs_pytorch.sh, which builds the release binary and the Python venv.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANKS = 2
TORCH_VARIANTS = ["ddp-bf16", "ddp-fp32", "fsdp2-bf16"]
OURS_VARIANTS = ["ours-s0-bf16", "ours-s3-bf16", "ours-s0-fp32", "ours-s3-fp32"]
# Micro-batch B and sequence length T per model (the configs).
BATCH = {"gpt-tiny": (8, 64), "gpt-small": (8, 128), "gpt-medium": (4, 256)}
TIMEOUT = 1800  # seconds for one variant run


def presets():
    """Model shapes parsed from GPTConfig.swift, so both sides always train the same model."""
    text = open(os.path.join(ROOT, "Sources/ZeroModels/GPTConfig.swift")).read()
    pat = (r'GPTConfig\(name: "([\w-]+)", vocabularySize: (\d+), contextLength: (\d+), '
           r'layers: (\d+), heads: (\d+), channels: (\d+)\)')
    found = {m[0]: tuple(int(v) for v in m[1:]) for m in re.findall(pat, text)}
    if not found:
        sys.exit("vs_pytorch: no GPT presets found in Sources/ZeroModels/GPTConfig.swift")
    return found  # name -> (V, T_max, L, NH, C)


def parameter_count(shape):
    """GPTConfig.parameterCount: embeddings, L blocks of 12 C^2 + 13 C, ln_f; tied head."""
    V, T_max, L, _, C = shape
    return (V + T_max) * C + L * (12 * C * C + 13 * C) + 2 * C


def thread_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torch(variant, shape, B, T, steps, work):
    """Two torch_gpt.py ranks on gloo; returns their JSON results (a rank that died
    after writing its figures still counts)."""
    out = os.path.join(work, f"torch-{variant}")
    env = thread_env()
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(RANKS))
    cmd = [sys.executable, os.path.join(ROOT, "bench/torch_gpt.py"), "--variant", variant,
           "--shape", ",".join(map(str, shape)), "--micro-batch", str(B), "--seq-len", str(T),
           "--steps", str(steps), "--out", out]
    procs = []
    for r in range(RANKS):
        log = open(f"{out}.log.{r}", "w")
        procs.append(subprocess.Popen(cmd, env=dict(env, RANK=str(r)), stdout=log, stderr=subprocess.STDOUT))
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=TIMEOUT))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            codes.append("timeout")
    results = []
    for r in range(RANKS):
        try:
            results.append(json.load(open(f"{out}.{r}")))
        except (OSError, ValueError):
            tail = open(f"{out}.log.{r}").read()[-2000:]
            print(f"  {variant}: rank {r} wrote no figures (exit {codes[r]}):\n{tail}", file=sys.stderr)
            return None
    if any(c != 0 for c in codes):
        print(f"  {variant}: exit codes {codes} at teardown; figures kept", file=sys.stderr)
    r0 = results[0]
    return {"step_seconds": r0["step_seconds"],
            "tokens_per_second": [r0["tokens_per_step"] / s for s in r0["step_seconds"]],
            "peak_rss_bytes": [r["peak_rss_bytes"] for r in results], "params": r0["params"],
            "loss_last": r0["losses"][-1], "optimizer": r0["optimizer"],
            "info": {k: r0[k] for k in ("torch", "cpu_capability", "threads")}}


def run_ours(variant, model, B, T, steps, work, binary):
    """launch/mpirun.sh -n 2 zero-train, each rank wrapped by this script's --rss-wrap so its
    peak RSS is measured as for torch (getrusage of the process)."""
    _, stage, precision = variant.split("-")
    metrics = os.path.join(work, f"{variant}.jsonl")
    rss = os.path.join(work, f"{variant}.rss")
    cmd = [os.path.join(ROOT, "launch/mpirun.sh"), "-n", str(RANKS), "-x", "OMP_NUM_THREADS=1", "--",
           sys.executable, os.path.abspath(__file__), "--rss-wrap", rss, binary,
           "--model", model, "--stage", stage[1:], "--precision", precision, "--steps", str(steps),
           "--micro-batch", str(B), "--seq-len", str(T), "--global-micro-batches", str(RANKS),
           "--blas-threads", "1", "--metrics", metrics, "--log-every", "0"]
    try:
        proc = subprocess.run(cmd, env=thread_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=TIMEOUT)
        code, output = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        code, output = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    try:
        rows = [json.loads(line) for line in open(metrics)]
    except (OSError, ValueError):
        rows = []
    step_rows = [r for r in rows if not r.get("final")]
    final = next((r for r in rows if r.get("final")), {})
    if not step_rows:
        print(f"  {variant}: no metrics (exit {code}):\n{output[-2000:]}", file=sys.stderr)
        return None
    if code != 0:
        print(f"  {variant}: exit {code}; figures kept", file=sys.stderr)
    peaks = []
    for r in range(RANKS):
        try:
            peaks.append(int(open(f"{rss}.{r}").read()))
        except (OSError, ValueError):
            peaks.append(final.get("peak_rss_bytes", 0) if r == 0 else 0)
    return {"step_seconds": [r["step_seconds"] for r in step_rows],
            "tokens_per_second": [r["tokens_per_second"] for r in step_rows],
            "peak_rss_bytes": peaks, "params": final.get("params"), "loss_last": step_rows[-1]["loss"],
            # what zero-train says about its compute path (OpenBLAS, oneDNN, fallbacks)
            "says": [l for l in output.splitlines() if re.search(r"onednn|dnnl|openblas|blas|isa|fallback", l, re.I)]}


def rss_wrap(argv):
    """`vs_pytorch.py --rss-wrap PREFIX PROGRAM ARGS...`: runs PROGRAM, then writes its peak RSS
    in bytes to PREFIX.<MPI rank>. Exits with PROGRAM's status."""
    prefix, cmd = argv[0], argv[1:]
    code = subprocess.call(cmd)
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0"))
    with open(f"{prefix}.{rank}", "w") as f:
        f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
    sys.exit(code)


def openblas_core():
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "unknown"


def torch_onednn():
    """oneDNN version, ISA and the kernel torch picks for a bf16 matmul, from ONEDNN_VERBOSE."""
    probe = ("import torch; torch.set_num_threads(1); a = torch.randn(64, 64, dtype=torch.bfloat16); a @ a")
    try:
        out = subprocess.run([sys.executable, "-c", probe], env=dict(thread_env(), ONEDNN_VERBOSE="1"),
                             capture_output=True, text=True, timeout=300).stdout
    except subprocess.TimeoutExpired:
        return "unknown"
    version = re.search(r"info,(oneDNN v[\d.]+)", out)
    isa = re.search(r"info,cpu,isa:(.*)", out)
    kernel = re.search(r"exec,cpu,matmul,([^,]+)", out)
    return ", ".join(m.group(1).strip() for m in (version, isa, kernel) if m) or "unknown"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-wrap":
        rss_wrap(sys.argv[2:])
    ap = argparse.ArgumentParser(description="zero-train against PyTorch, 2 ranks x 1 thread")
    ap.add_argument("--quick", action="store_true", help="1 round, 3 timed steps, 1 warm-up (a smoke run)")
    ap.add_argument("--models", default="gpt-small,gpt-medium")
    ap.add_argument("--steps", type=int, help="timed steps per variant and round (default 10)")
    ap.add_argument("--warmup", type=int, help="untimed steps before them (default 2)")
    ap.add_argument("--rounds", type=int, help="round-robin rounds over all variants (default 3)")
    ap.add_argument("--variants", default=",".join(TORCH_VARIANTS + OURS_VARIANTS))
    ap.add_argument("--json", help="write every figure to FILE")
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/zero-train"))
    a = ap.parse_args()
    steps = a.steps if a.steps is not None else (3 if a.quick else 10)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    shapes = presets()
    models = [m for m in a.models.split(",") if m]
    variants = [v for v in a.variants.split(",") if v]
    for m in models:
        if m not in shapes or m not in BATCH:
            sys.exit(f"vs_pytorch: unknown model '{m}' (known: {', '.join(n for n in BATCH if n in shapes)})")
    for v in variants:
        if v not in TORCH_VARIANTS + OURS_VARIANTS:
            sys.exit(f"vs_pytorch: unknown variant '{v}' (known: {', '.join(TORCH_VARIANTS + OURS_VARIANTS)})")
    if steps < 1 or warmup < 0 or rounds < 1:
        sys.exit("vs_pytorch: --steps and --rounds must be at least 1, --warmup at least 0")
    if any(v.startswith("ours") for v in variants) and not os.access(a.binary, os.X_OK):
        sys.exit(f"vs_pytorch: {a.binary} not found; build it (swift build -c release) or drop --no-build")

    import torch  # only for the header; the ranks import it themselves
    load = open("/proc/loadavg").read().split()[:3]
    header = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
              "cores": os.cpu_count(), "torch": torch.__version__,
              "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "openblas_core": openblas_core(),
              "torch_onednn": torch_onednn(),
              "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", ""), "python": platform.python_version(),
              "load_before": load, "ranks": RANKS, "threads_per_rank": 1,
              "steps": steps, "warmup": warmup, "rounds": rounds}
    print(f"vs_pytorch: {header['date']}, {header['cpu']} x {header['cores']} cores, load {' '.join(load)}")
    print(f"  torch {header['torch']} (CPU capability {header['torch_cpu_capability']}), "
          f"OpenBLAS core {header['openblas_core']} (OPENBLAS_CORETYPE={header['OPENBLAS_CORETYPE'] or 'unset'})")
    print(f"  torch oneDNN: {header['torch_onednn']}")
    print(f"  {RANKS} ranks x 1 thread, {rounds} round(s) x ({warmup} warm-up + {steps} timed steps) per variant")

    data = {m: {v: {"tokens_per_second": [], "peak_rss_bytes": [], "rounds": []} for v in variants} for m in models}
    work = tempfile.mkdtemp(prefix="vs_pytorch-")
    for rnd in range(rounds):
        for m in models:
            B, T = BATCH[m]
            order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]  # rotate the start
            for v in order:
                if v.startswith("ours"):
                    res = run_ours(v, m, B, T, warmup + steps, work, a.binary)
                else:
                    res = run_torch(v, shapes[m], B, T, warmup + steps, work)
                if res is None:
                    continue
                timed = res["tokens_per_second"][warmup:]
                d = data[m][v]
                d["tokens_per_second"] += timed
                d["peak_rss_bytes"] = [max(x, y) for x, y in zip(d["peak_rss_bytes"] or [0] * RANKS, res["peak_rss_bytes"])]
                d["rounds"].append({"round": rnd, "median_tokens_per_second": median(timed),
                                    **{k: res[k] for k in res if k not in ("tokens_per_second",)}})
                d["params"] = res["params"]
                print(f"  round {rnd + 1}/{rounds} {m:10s} {v:13s} {median(timed):9,.0f} tok/s  "
                      f"rss {'/'.join(f'{b / 2**20:.0f}' for b in res['peak_rss_bytes'])} MiB  "
                      f"loss {res['loss_last']:.3f}{'  AdamW ' + res['optimizer'] if 'optimizer' in res else ''}", flush=True)
    header["load_after"] = open("/proc/loadavg").read().split()[:3]
    shutil.rmtree(work, ignore_errors=True)

    print()
    for m in models:
        B, T = BATCH[m]
        expected = parameter_count(shapes[m])
        counts = {v: data[m][v].get("params") for v in variants if data[m][v].get("params") is not None}
        same = bool(counts) and all(c == expected for c in counts.values())
        print(f"{m}: B {B}, T {T}, {RANKS} x {B * T} tokens per step, params {expected:,} "
              f"({'every variant has exactly these' if same else 'MISMATCH: ' + str(counts) if counts else 'no results'})")
        med = {v: median(data[m][v]["tokens_per_second"]) for v in variants if data[m][v]["tokens_per_second"]}
        torch_bf16 = max((med[v] for v in ("ddp-bf16", "fsdp2-bf16") if v in med), default=None)
        print("| variant | tokens/s (median) | peak RSS/rank MiB | ours/torch |")
        print("|---|---|---|---|")
        for v in variants:
            if v not in med:
                print(f"| {v} | failed | | |")
                continue
            base = torch_bf16 if v.endswith("bf16") else med.get("ddp-fp32")
            ratio = f"{med[v] / base:.2f}x" if v.startswith("ours") and base else ""
            data[m][v]["median_tokens_per_second"] = med[v]
            data[m][v]["ratio"] = med[v] / base if ratio else None
            rss = " / ".join(f"{b / 2**20:,.0f}" for b in data[m][v]["peak_rss_bytes"])
            print(f"| {v} | {med[v]:,.0f} | {rss} | {ratio} |")
        if counts and not same:
            print(f"vs_pytorch: parameter counts differ for {m}", file=sys.stderr)
        print()
    says = sorted({l for m in models for v in variants for r in data[m][v]["rounds"] for l in r.get("says", [])})
    for line in says:
        print(f"zero-train: {line}")
    print("ratios: ours bf16 / best torch bf16 (ddp-bf16, fsdp2-bf16); ours fp32 / ddp-fp32")
    print(f"load after: {' '.join(header['load_after'])}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": header, "models": data}, f, indent=1)
    mismatch = any(data[m][v].get("params") not in (None, parameter_count(shapes[m])) for m in models for v in variants)
    sys.exit(1 if mismatch else 0)


if __name__ == "__main__":
    main()
