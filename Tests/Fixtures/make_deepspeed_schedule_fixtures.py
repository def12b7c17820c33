"""Reference learning rates of DeepSpeed's schedulers, as DeepSpeed's engine applies them.

Each scheduler below follows the formulas of deepspeed.runtime.lr_schedules (WarmupLR,
WarmupDecayLR, WarmupCosineLR, OneCycle; DeepSpeed's documented definitions, restated here):
the scheduler is built with last_batch_iteration = -1 and writes its start value into the
optimizer; the engine calls step() after every optimizer step. So the rate of optimizer step
i (0-based) is get_lr() at last_batch_iteration = i - 1. The file records, for each case,
the rate each optimizer step uses, as repr() strings (exact doubles).

Run: python3 Tests/Fixtures/make_deepspeed_schedule_fixtures.py
Writes Tests/Fixtures/optim/deepspeed_schedules.json
"""
import json
import math
import os


class Warmup:
    def __init__(self, opt_lr, warmup_min_lr=0.0, warmup_max_lr=None, warmup_num_steps=1000,
                 warmup_type="log", total_num_steps=None, decay=False):
        self.min_lr = warmup_min_lr
        self.max_lr = opt_lr if warmup_max_lr is None else warmup_max_lr
        self.delta = self.max_lr - self.min_lr
        self.w = max(2, warmup_num_steps)
        self.inv_log = 1.0 / math.log(self.w)
        self.type = warmup_type
        self.total = total_num_steps
        self.decay = decay
        self.t = -1

    def gamma(self):
        if self.t < self.w:
            if self.type == "log":
                return self.inv_log * math.log(self.t + 1)
            return self.t / self.w
        if not self.decay:
            return 1.0
        return max(0.0, float(self.total - self.t) / float(max(1.0, self.total - self.w)))

    def get_lr(self):
        if self.t < 0:
            return self.min_lr
        return self.min_lr + (self.delta * self.gamma())


class Cosine:
    def __init__(self, opt_lr, total_num_steps, warmup_min_ratio=0.0, warmup_num_steps=1000,
                 cos_min_ratio=0.0001, warmup_type="log"):
        self.org = opt_lr
        self.total = total_num_steps
        self.wmin = warmup_min_ratio
        self.w = max(2, warmup_num_steps)
        self.inv_log = 1.0 / math.log(self.w)
        self.cmin = cos_min_ratio
        self.type = warmup_type
        self.t = -1

    def ratio(self):
        if self.t < self.w:
            r = self.inv_log * math.log(self.t + 1) if self.type == "log" else self.t / self.w
            return self.wmin + r * (1. - self.wmin)
        real_last = self.t - self.w + 1
        real_total = self.total - self.w
        r = (1 + math.cos(math.pi * real_last / real_total)) / 2
        return max(0.0, self.cmin + (1. - self.cmin) * r)

    def get_lr(self):
        if self.t < 0:
            return 0.0
        return self.org * self.ratio()


class OneCycle:
    def __init__(self, cycle_min_lr, cycle_max_lr, decay_lr_rate=0., cycle_first_step_size=2000,
                 cycle_second_step_size=None, decay_step_size=0):
        first = float(cycle_first_step_size)
        second = float(cycle_second_step_size) if cycle_second_step_size is not None else first
        self.total = first + second
        self.ratio = first / self.total
        self.min_lr, self.max_lr = cycle_min_lr, cycle_max_lr
        self.rate, self.decay_step = decay_lr_rate, decay_step_size
        self.skip = math.isclose(decay_step_size, 0) or math.isclose(decay_lr_rate, 0)
        self.t = -1

    def get_lr(self):
        if self.t < 0:
            return self.min_lr  # written into the optimizer at construction
        if self.t < self.total:
            b = self.t + 1
            cycle = math.floor(1 + b / self.total)
            x = 1. + b / self.total - cycle
            scale = x / self.ratio if x <= self.ratio else (x - 1) / (self.ratio - 1)
            return self.min_lr + (self.max_lr - self.min_lr) * scale
        if self.skip:
            return self.min_lr
        interval = (self.t - self.total + 1) / self.decay_step
        return self.min_lr / (1 + self.rate * interval)


def engine_rates(sched, steps):
    """The rate of each optimizer step: the value in the optimizer, then scheduler.step()."""
    out = []
    for _ in range(steps):
        out.append(sched.get_lr())
        sched.t += 1
    return out


CASES = [
    ("warmup_lr_log", "WarmupLR", 6e-4, dict(warmup_min_lr=0.0, warmup_max_lr=0.001, warmup_num_steps=10), 16),
    ("warmup_lr_linear", "WarmupLR", 6e-4, dict(warmup_min_lr=1e-5, warmup_max_lr=3e-4, warmup_num_steps=7, warmup_type="linear"), 12),
    ("warmup_lr_optimizer_max", "WarmupLR", 6e-4, dict(warmup_num_steps=1), 5),
    ("warmup_decay_log", "WarmupDecayLR", 6e-4, dict(warmup_min_lr=0.0, warmup_max_lr=1e-3, warmup_num_steps=5, total_num_steps=20), 26),
    ("warmup_decay_linear", "WarmupDecayLR", 6e-4, dict(warmup_min_lr=2e-5, warmup_num_steps=4, total_num_steps=12, warmup_type="linear"), 15),
    ("warmup_cosine_log", "WarmupCosineLR", 3e-4, dict(total_num_steps=20, warmup_num_steps=5), 26),
    ("warmup_cosine_linear", "WarmupCosineLR", 3e-4, dict(total_num_steps=16, warmup_num_steps=6, warmup_min_ratio=0.1, cos_min_ratio=0.05, warmup_type="linear"), 18),
    ("one_cycle_decay", "OneCycle", 6e-4, dict(cycle_min_lr=1e-4, cycle_max_lr=1e-3, cycle_first_step_size=4, cycle_second_step_size=6, decay_lr_rate=0.5, decay_step_size=2), 20),
    ("one_cycle_flat", "OneCycle", 6e-4, dict(cycle_min_lr=2e-4, cycle_max_lr=8e-4, cycle_first_step_size=3), 10),
]


def build(kind, opt_lr, p):
    if kind == "WarmupLR":
        return Warmup(opt_lr, **p)
    if kind == "WarmupDecayLR":
        q = dict(p)
        q.setdefault("warmup_max_lr", 0.001)
        return Warmup(opt_lr, decay=True, **q)
    if kind == "WarmupCosineLR":
        return Cosine(opt_lr, **p)
    return OneCycle(**p)


def main():
    out = []
    for name, kind, opt_lr, params, steps in CASES:
        rates = engine_rates(build(kind, opt_lr, params), steps)
        out.append({"name": name, "type": kind, "optimizer_lr": opt_lr, "params": params,
                    "lrs": [repr(r) for r in rates]})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim", "deepspeed_schedules.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
