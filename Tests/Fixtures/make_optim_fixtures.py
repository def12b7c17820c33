#!/usr/bin/env python3
"""Writes Tests/Fixtures/optim/*.json: what torch.optim (and reference ports) produce.

Run with the fixtures venv (Tests/Fixtures/make_venv.sh):
    .venv-fixtures/bin/python Tests/Fixtures/make_optim_fixtures.py
Inputs are not stored: parameters and gradients come from an integer hash that the Swift tests
reimplement (ZeroOptimTests/Fixtures.swift), producing float32 values exactly. Outputs are
float32 bit patterns (uint32), doubles as hex bit patterns, so comparisons are exact.
"""
import json, math, os, struct
import numpy as np
import torch

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim")
M = 0xFFFFFFFF


def mix(x):
    x = np.asarray(x, dtype=np.uint64) & M
    x ^= x >> 16; x = (x * 0x7FEB352D) & M
    x ^= x >> 15; x = (x * 0x846CA68B) & M
    x ^= x >> 16
    return x


def uniform(seed, n):
    """float32 in [-1, 1) with 24-bit resolution, element i from hash(seed, i)."""
    i = np.arange(n, dtype=np.uint64)
    h = mix(i * 0x9E3779B9 + np.uint64(seed) * 0x85EBCA6B + 0x165667B1)
    s = h.astype(np.int64)
    s = np.where(s >= 2**31, s - 2**32, s)
    return ((s >> 8).astype(np.float64) * 2.0**-23).astype(np.float32)


def params0(seed, n):
    return uniform(seed, n) * np.float32(0.5)


def gradient(seed, step, n):
    """Mixed magnitudes: u * 2^-(k), k in 0..7 from a second hash (exact in float32)."""
    u = uniform(seed * 1000 + step, n)
    k = mix(np.arange(n, dtype=np.uint64) + np.uint64(step) * 7919 + np.uint64(seed)) % 8
    return (u * (2.0 ** -k.astype(np.float64)).astype(np.float32)).astype(np.float32)


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32).tolist()


def dbits(x):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", x))[0]


def write(name, obj):
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def split_tensors(flat, sizes):
    out, at = [], 0
    for s in sizes:
        out.append(torch.tensor(flat[at:at + s]))
        at += s
    return out


class ieee_sqrt:
    """Within the block, Tensor.sqrt / sqrt_ are numpy's correctly rounded sqrt: torch's CPU sqrt
    (MKL vsSqrt) is 1 ulp off on about a fifth of inputs, which ZeroOptim does not imitate."""

    def __enter__(self):
        self.saved = torch.Tensor.sqrt, torch.Tensor.sqrt_
        torch.Tensor.sqrt = lambda t: torch.from_numpy(np.sqrt(t.detach().numpy()))
        torch.Tensor.sqrt_ = lambda t: t.copy_(torch.from_numpy(np.sqrt(t.detach().numpy())))

    def __exit__(self, *a):
        torch.Tensor.sqrt, torch.Tensor.sqrt_ = self.saved


def run_torch(name, make_opt, n, seed, steps, segments, decay, lrs=None, record_state=(), ieee=False):
    """segments: list of (size, decays); one torch tensor per segment, one param group each.
    With ieee=True also records the trajectory under a correctly rounded sqrt."""
    out = run_torch_once(name, make_opt, n, seed, steps, segments, decay, lrs, record_state)
    if ieee:
        with ieee_sqrt():
            out["params_ieee_sqrt"] = run_torch_once(name, make_opt, n, seed, steps, segments, decay, lrs, ())["params"]
    return out


def run_torch_once(name, make_opt, n, seed, steps, segments, decay, lrs, record_state):
    p0 = params0(seed, n)
    ps = [t.clone().requires_grad_(True) for t in split_tensors(p0, [s for s, _ in segments])]
    groups = [{"params": [p], "weight_decay": decay if d else 0.0} for p, (_, d) in zip(ps, segments)]
    opt = make_opt(groups)
    per_step = []
    for t in range(1, steps + 1):
        g = gradient(seed, t, n)
        for p, gt in zip(ps, split_tensors(g, [s for s, _ in segments])):
            p.grad = gt.clone()
        if lrs is not None:
            for grp in opt.param_groups:
                grp["lr"] = lrs[t - 1]
        opt.step()
        per_step.append(bits(torch.cat([p.detach() for p in ps]).numpy()))
    state = {}
    for key in record_state:
        state[key] = bits(torch.cat([opt.state[p][key] for p in ps]).numpy())
    ranges, at = [], 0
    for s, d in segments:
        if d:
            ranges.append([at, at + s])
        at += s
    return {"name": name, "n": n, "seed": seed, "steps": steps, "decay_segments": ranges,
            "lrs": lrs, "params": per_step, "state": state}


def ieee_sqrt_trajectory(n, seed, steps, segments, decay, lr, b1, b2, eps, decoupled, lrs=None):
    """torch's _single_tensor_adam op for op, but with a correctly rounded sqrt (numpy's):
    torch's CPU sqrt goes through MKL's vsSqrt, which is 1 ulp off on about a fifth of inputs.
    ZeroOptim must match this trajectory bit for bit."""
    p = torch.tensor(params0(seed, n))
    mask = torch.zeros(n, dtype=torch.bool)
    at = 0
    for s, d in segments:
        mask[at:at + s] = d
        at += s
    m, v = torch.zeros(n), torch.zeros(n)
    out = []
    for t in range(1, steps + 1):
        rate = lrs[t - 1] if lrs else lr
        g = torch.tensor(gradient(seed, t, n))
        parts = []
        at = 0
        for s, d in segments:
            sl = slice(at, at + s)
            pp, gg, mm, vv = p[sl], g[sl], m[sl], v[sl]
            wd = decay if d else 0.0
            if wd != 0:
                if decoupled:
                    pp.mul_(1 - rate * wd)
                else:
                    gg = gg.add(pp, alpha=wd)
            mm.lerp_(gg, 1 - b1)
            vv.mul_(b2).addcmul_(gg, gg, value=1 - b2)
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            root = torch.tensor(np.sqrt(vv.numpy()))
            denom = (root / (bc2 ** 0.5)).add_(eps)
            pp.addcdiv_(mm, denom, value=-(rate / bc1))
            at += s
        out.append(bits(p.numpy()))
    return out


def adam_family():
    n, seed = 267, 1
    whole = [(n, True)]
    write("adamw_default", dict(run_torch(
        "adamw_default", lambda g: torch.optim.AdamW(g, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, foreach=False),
        n, seed, 10, whole, 0.01, record_state=("exp_avg", "exp_avg_sq")),
        config=dict(kind="adamw", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
        params_ieee_sqrt=ieee_sqrt_trajectory(n, seed, 10, whole, 0.01, 1e-3, 0.9, 0.999, 1e-8, True)))
    lrs = [0.05 * (0.9 ** k) for k in range(10)]
    write("adamw_large", dict(run_torch(
        "adamw_large", lambda g: torch.optim.AdamW(g, lr=0.05, betas=(0.8, 0.95), eps=1e-6, foreach=False),
        n, 2, 10, whole, 0.3, lrs=lrs, record_state=("exp_avg", "exp_avg_sq")),
        config=dict(kind="adamw", lr=0.05, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.3),
        params_ieee_sqrt=ieee_sqrt_trajectory(n, 2, 10, whole, 0.3, 0.05, 0.8, 0.95, 1e-6, True, lrs)))
    masked = [(100, True), (50, False), (117, True)]
    write("adamw_masked", dict(run_torch(
        "adamw_masked", lambda g: torch.optim.AdamW(g, lr=1e-2, foreach=False),
        n, 3, 10, masked, 0.1, record_state=("exp_avg", "exp_avg_sq")),
        config=dict(kind="adamw", lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1),
        params_ieee_sqrt=ieee_sqrt_trajectory(n, 3, 10, masked, 0.1, 1e-2, 0.9, 0.999, 1e-8, True)))
    write("adam_l2", dict(run_torch(
        "adam_l2", lambda g: torch.optim.Adam(g, lr=1e-2, foreach=False),
        n, 4, 10, masked, 0.05, record_state=("exp_avg", "exp_avg_sq")),
        config=dict(kind="adam", lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05),
        params_ieee_sqrt=ieee_sqrt_trajectory(n, 4, 10, masked, 0.05, 1e-2, 0.9, 0.999, 1e-8, False)))


def classic_family():
    n = 203
    segs = [(80, True), (43, False), (80, True)]
    cases = [
        ("sgd_momentum", dict(kind="sgd", lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
         lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9, dampening=0.1, foreach=False), 0.01, ()),
        ("sgd_nesterov", dict(kind="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
         lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9, nesterov=True, foreach=False), 0.01, ()),
        ("sgd_plain", dict(kind="sgd", lr=0.1, weight_decay=0.0),
         lambda g: torch.optim.SGD(g, lr=0.1, foreach=False), 0.0, ()),
        ("adagrad", dict(kind="adagrad", lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-10, weight_decay=0.01),
         lambda g: torch.optim.Adagrad(g, lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1, foreach=False), 0.01, ("sum",)),
        ("rmsprop", dict(kind="rmsprop", lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.01),
         lambda g: torch.optim.RMSprop(g, lr=0.01, foreach=False), 0.01, ("square_avg",)),
        ("rmsprop_centered_momentum", dict(kind="rmsprop", lr=0.01, alpha=0.9, eps=1e-8, momentum=0.5, centered=True, weight_decay=0.0),
         lambda g: torch.optim.RMSprop(g, lr=0.01, alpha=0.9, momentum=0.5, centered=True, foreach=False), 0.0, ("square_avg",)),
    ]
    for k, (name, cfg, make, wd, st) in enumerate(cases):
        write(name, dict(run_torch(name, make, n, 10 + k, 10, segs, wd, record_state=st, ieee=bool(st)), config=cfg))


class Lion(torch.optim.Optimizer):
    """lucidrains/lion-pytorch's update_fn, verbatim in torch ops."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                grad, lr, wd = p.grad, group["lr"], group["weight_decay"]
                beta1, beta2 = group["betas"]
                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.data.mul_(1. - lr * wd)
                update = exp_avg.clone().mul_(beta1).add(grad, alpha=1. - beta1).sign_()
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(grad, alpha=1. - beta2)


def lion():
    n, segs = 203, [(80, True), (43, False), (80, True)]
    write("lion", dict(run_torch("lion", lambda g: Lion(g, lr=1e-3, betas=(0.9, 0.99)), n, 20, 10, segs, 0.1,
                                 record_state=("exp_avg",)),
                       config=dict(kind="lion", lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1)))


def dynamic_map(signed):
    """Same construction as DynamicQuantizationMap in AdamW8bit.swift."""
    scales = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    data = []
    for i in range(7):
        n = 2 ** i + 1 if signed else 2 ** (i + 1) + 1
        b = [0.1 + (1.0 - 0.1) * j / (n - 1) for j in range(n)]
        for j in range(n - 1):
            mean = (b[j] + b[j + 1]) / 2.0
            data.append(scales[i] * mean)
            if signed:
                data.append(-(scales[i] * mean))
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.sort(np.array(data, dtype=np.float32))


def adamw8bit():
    """Reference of ZeroOptim's 8-bit AdamW: dequantize, torch's AdamW ops, requantize per block."""
    n, seed, steps, block = 600, 30, 10, 256
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.01
    smap, umap = torch.tensor(dynamic_map(True)), torch.tensor(dynamic_map(False))
    smid, umid = (smap[:-1] + smap[1:]) * 0.5, (umap[:-1] + umap[1:]) * 0.5
    p = torch.tensor(params0(seed, n))
    nb = (n + block - 1) // block
    qm = torch.full((n,), int((smap == 0).nonzero()[0]), dtype=torch.long)
    qv = torch.full((n,), int((umap == 0).nonzero()[0]), dtype=torch.long)
    am, av = torch.zeros(nb), torch.zeros(nb)
    per_step = []
    for t in range(1, steps + 1):
        g = torch.tensor(gradient(seed, t, n))
        for b in range(nb):
            s = slice(b * block, min(n, (b + 1) * block))
            m = smap[qm[s]] * am[b]
            v = umap[qv[s]] * av[b]
            pb = p[s]
            pb.mul_(1 - lr * wd)
            m.lerp_(g[s], 1 - b1)
            v.mul_(b2).addcmul_(g[s], g[s], value=1 - b2)
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            denom = (torch.from_numpy(np.sqrt(v.numpy())) / (bc2 ** 0.5)).add_(eps)  # IEEE sqrt
            pb.addcdiv_(m, denom, value=-(lr / bc1))
            am[b], av[b] = m.abs().max(), v.abs().max()
            nm = m / am[b] if am[b] != 0 else torch.zeros_like(m)
            nv = v / av[b] if av[b] != 0 else torch.zeros_like(v)
            qm[s] = torch.searchsorted(smid, nm, side="left")
            qv[s] = torch.searchsorted(umid, nv, side="left")
        per_step.append(bits(p.numpy()))
    write("adamw8bit", {"name": "adamw8bit", "n": n, "seed": seed, "steps": steps, "decay_segments": [[0, n]],
                        "lrs": None, "params": per_step,
                        "state": {"exp_avg_q": qm.tolist(), "exp_avg_sq_q": qv.tolist(),
                                  "exp_avg_absmax": bits(am.numpy()), "exp_avg_sq_absmax": bits(av.numpy())},
                        "signed_map": bits(smap.numpy()), "unsigned_map": bits(umap.numpy()),
                        "config": dict(kind="adamw8bit", lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)})


def adafactor():
    shapes = [(12, 20), (1, 20), (16, 8), (1, 7)]
    sizes = [r * c for r, c in shapes]
    n, seed, steps = sum(sizes), 40, 10
    p0 = params0(seed, n)
    ps = [torch.tensor(p0[a:a + s]).reshape(r, c) if r > 1 else torch.tensor(p0[a:a + s])
          for (r, c), s, a in zip(shapes, sizes, np.cumsum([0] + sizes[:-1]))]
    ps = [p.clone().requires_grad_(True) for p in ps]
    opt = torch.optim.Adafactor([{"params": ps[:1] + ps[2:3], "weight_decay": 0.02},
                                 {"params": ps[1:2] + ps[3:], "weight_decay": 0.0}], lr=1e-2, foreach=False)
    per_step = []
    for t in range(1, steps + 1):
        g = gradient(seed, t, n)
        at = 0
        for p, s in zip(ps, sizes):
            p.grad = torch.tensor(g[at:at + s]).reshape(p.shape)
            at += s
        opt.step()
        per_step.append(bits(torch.cat([p.detach().reshape(-1) for p in ps]).numpy()))
    write("adafactor", {"name": "adafactor", "n": n, "seed": seed, "steps": steps, "shapes": shapes,
                        "decay_segments": [[0, 240], [260, 388]], "lrs": None, "params": per_step, "state": {},
                        "config": dict(kind="adafactor", lr=1e-2, weight_decay=0.02)})


def clipping():
    sizes = [700, 1500, 33, 2100]
    seed = 50
    flat = gradient(seed, 1, sum(sizes)) * np.float32(4.0)
    flat[5] = np.float32(3.0)
    gs = split_tensors(flat, sizes)
    ps = [torch.zeros(s, requires_grad=True) for s in sizes]
    for p, g in zip(ps, gs):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm=1.0)
    # Our fp64 definition: per unit, 1024-element blocks, sequential sums, then sequential over blocks.
    acc = 0.0
    for g in gs:
        x = g.numpy().astype(np.float64)
        for b in range(0, len(x), 1024):
            s = 0.0
            for v in x[b:b + 1024]:
                s += float(v) * float(v)
            acc += s
    write("clip", {"sizes": sizes, "seed": seed, "scale": 4.0, "special": [5, 3.0], "max_norm": 1.0,
                   "torch_total_norm": bits(np.array([total.item()], dtype=np.float32))[0],
                   "sum_of_squares": dbits(acc),
                   "clipped": bits(torch.cat([p.grad for p in ps]).numpy())})


def schedules():
    out = []

    def record(name, cfg, make, n, metrics=None):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=cfg.get("base_lr", 0.1), momentum=0.9)
        sch = make(opt)
        lrs = []
        for i in range(n):
            lrs.append(dbits(opt.param_groups[0]["lr"]))
            opt.step()
            if metrics is not None:
                sch.step(metrics[i])
            else:
                sch.step()
        out.append({"name": name, "config": cfg, "lrs": lrs, "metrics": metrics})

    W, T, base, floor = 10, 60, 6e-4, 0.1

    def nanogpt(it):
        if it < W:
            return (it + 1) / (W + 1)
        if it > T:
            return floor
        decay_ratio = (it - W) / (T - W)
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
        return floor + coeff * (1.0 - floor)

    record("warmup_cosine", dict(kind="warmup_cosine", base_lr=base, warmup=W, total=T, floor=floor),
           lambda o: torch.optim.lr_scheduler.LambdaLR(o, nanogpt), 70)
    record("constant", dict(kind="constant", base_lr=0.1),
           lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda i: 1.0), 5)
    for strat in ("cos", "linear"):
        record("one_cycle_" + strat, dict(kind="one_cycle", base_lr=0.1, max_lr=0.01, total=50, pct_start=0.25,
                                          div_factor=25.0, final_div_factor=1e4, anneal=strat),
               lambda o, s=strat: torch.optim.lr_scheduler.OneCycleLR(
                   o, max_lr=0.01, total_steps=50, pct_start=0.25, anneal_strategy=s, cycle_momentum=False), 50)
    record("step", dict(kind="step", base_lr=0.1, step_size=7, gamma=0.5),
           lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5), 40)
    record("cyclic", dict(kind="cyclic", base_lr=0.001, max_lr=0.006, up=5, down=8),
           lambda o: torch.optim.lr_scheduler.CyclicLR(o, base_lr=0.001, max_lr=0.006, step_size_up=5,
                                                       step_size_down=8, mode="triangular", cycle_momentum=False), 40)
    metrics = [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.9, 0.905, 0.899, 0.91, 0.92, 0.93, 0.94, 0.7, 0.8, 0.8, 0.8,
               0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]
    record("plateau_min", dict(kind="reduce_on_plateau", base_lr=0.1, mode="min", factor=0.5, patience=2,
                               threshold=1e-2, threshold_mode="rel", cooldown=1, min_lr=0.01),
           lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=1e-2,
                                                                threshold_mode="rel", cooldown=1, min_lr=0.01),
           len(metrics), metrics)
    acc = [0.1 * k for k in range(5)] + [0.4] * 15
    record("plateau_max_abs", dict(kind="reduce_on_plateau", base_lr=0.1, mode="max", factor=0.1, patience=3,
                                   threshold=0.05, threshold_mode="abs", cooldown=0, min_lr=0.0),
           lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="max", factor=0.1, patience=3, threshold=0.05,
                                                                threshold_mode="abs"), len(acc), acc)
    write("schedules", out)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    adam_family()
    classic_family()
    lion()
    adamw8bit()
    adafactor()
    clipping()
    schedules()
    print("wrote", sorted(os.listdir(OUT)), sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT)), "bytes")
