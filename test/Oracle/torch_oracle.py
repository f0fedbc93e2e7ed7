#!/usr/bin/env python3
"""Oracle test: the example rules against torch.optim, through liboptim.so.

For each rule that torch.optim implements, one optimizer of ours and one of
torch's take 1,000 steps over tensors of awkward sizes (0, 1, 7, 1000,
100003) from identical parameters with identical gradients, in float32 and in
float64, and their parameters and state must agree after every run:

    |ours - torch| <= rtol * |torch| + atol.

rtol is 1e-5 in float32 and 1e-12 in float64. The formulas are the same but
arranged differently (torch's Adam divides by sqrt(v) / sqrt(1 - beta2^t) + eps
and scales by lr / (1 - beta1^t), both computed in double precision and
rounded once; its m is lerp(m, g, 1 - beta1); ours computes mhat and vhat in
the kernel's precision), so each step may round differently by a few units in
the last place (ulp), and 1,000 steps accumulate that: rtol allows ~84 ulps
in float32 and ~4,500 in float64, well above the few ulps measured. Relative
error cannot judge values that end near 0 after cancellation (a moment of
gradients of both signs, a parameter that crossed 0): their error is a few
ulps of the terms that cancelled, not of the result. Hence the absolute term,
per tensor and quantity:

    atol = 16 * eps(dtype) * max|torch's values in that tensor|,

16 ulps of the largest value; gradients have the same distribution in every
coordinate, so that is the scale of every coordinate's terms. (Measured: at
most 9 ulps of the largest value, for Adam's v in float32, and 3 for p.)

One difference is systematic and handled separately: torch's AdamW multiplies
p by (1 - lr * wd), computed in double and then rounded to the tensor's dtype
(float32: 0.9995 becomes 0.99949997..., 2.3e-8 low), where the rule subtracts
lr * wd * p. Every step, torch's p is then off the exact decay by 2.3e-8 * |p|;
over 1,000 steps that is ~2.3e-5 relative, more than rtol. For AdamW's
parameters the tolerance gains that known term, d * sum over steps of |p_t|
(d from decay_error, |p_t| torch's parameter before step t), and the line
says so. The float32 run also steps torch in float64 from the same data and
prints how far each float32 result is from it (in the same units of
tolerance): for AdamW ours is within tolerance of it and torch's float32 is
not, so the difference is torch's rounding, not the rule.

Lion (examples/lion.optim) and LAMB (examples/lamb.optim) are not checked:
torch.optim has neither (rule_oracle.py checks both against numpy).

Prints one line per rule and precision: the largest relative error (over the
values of magnitude at least atol / rtol) and the largest error as a fraction
of its tolerance (1 at most to pass), then "N passed, M failed"; exits 1 if
any failed.
"""

import argparse
import math
from fractions import Fraction
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "python"))
import optim_mlir  # noqa: E402

SIZES = (0, 1, 7, 1000, 100003)
STEPS = 1000
SEED = 20240601
RTOL = {"f32": 1e-5, "f64": 1e-12}
ATOL_ULPS = 16  # atol, in units of eps(dtype) * max|torch value in the tensor|

# name: (example file, our hyperparameters, torch factory, state map
# {ours: torch's}). Every hyperparameter differs from its default.
CASES = [
    ("sgd", "sgd.optim", {"lr": 0.03},
     lambda ps: torch.optim.SGD(ps, lr=0.03, foreach=False), {}),
    ("momentum", "momentum.optim", {"lr": 0.02, "mu": 0.8},
     lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.8, dampening=0,
                                foreach=False),
     {"buf": "momentum_buffer"}),
    ("nesterov", "nesterov.optim", {"lr": 0.02, "mu": 0.85},
     lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.85, dampening=0,
                                nesterov=True, foreach=False),
     {"buf": "momentum_buffer"}),
    ("adagrad", "adagrad.optim", {"lr": 0.05, "eps": 1e-9},
     lambda ps: torch.optim.Adagrad(ps, lr=0.05, eps=1e-9, foreach=False),
     {"sum": "sum"}),
    ("rmsprop", "rmsprop.optim", {"lr": 0.003, "alpha": 0.95, "eps": 1e-7},
     lambda ps: torch.optim.RMSprop(ps, lr=0.003, alpha=0.95, eps=1e-7,
                                    foreach=False),
     {"v": "square_avg"}),
    ("adam", "adam.optim",
     {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7},
     lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7,
                                 foreach=False),
     {"m": "exp_avg", "v": "exp_avg_sq"}),
    ("adamw", "adamw.optim",
     {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7,
      "weight_decay": 0.05},
     lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-7,
                                  weight_decay=0.05, foreach=False),
     {"m": "exp_avg", "v": "exp_avg_sq"}),
    ("amsgrad", "amsgrad.optim",
     {"lr": 0.005, "beta1": 0.85, "beta2": 0.995, "eps": 1e-6},
     lambda ps: torch.optim.Adam(ps, lr=0.005, betas=(0.85, 0.995), eps=1e-6,
                                 amsgrad=True, foreach=False),
     {"m": "exp_avg", "v": "exp_avg_sq", "vmax": "max_exp_avg_sq"}),
]


def gradients(rng, dtype):
    """One step's gradients: normal signs and shapes scaled by 10^U(-5, 2),
    about 10% exact zeros, and coordinates 0, 97, 194, ... always 0."""
    out = []
    for n in SIZES:
        g = rng.standard_normal(n) * 10.0 ** rng.uniform(-5.0, 2.0, n)
        g[rng.random(n) < 0.1] = 0.0
        g[::97] = 0.0
        out.append(g.astype(dtype))
    return out


class Worst:
    """The worst element of comparisons |a - b| <= rtol * |b| + atol."""

    def __init__(self):
        self.ratio = 0.0  # max |a - b| / (rtol * |b| + atol): pass if <= 1
        self.rel = 0.0  # max |a - b| / |b| where |b| >= atol / rtol
        self.where = ""

    def add(self, a, b, rtol, atol, where, extra=0.0):
        """Checks |a - b| <= rtol * |b| + atol + extra (extra: an array of
        per-element terms, or 0); rel ignores extra."""
        a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            self.ratio, self.where = math.inf, where + ": not finite"
            return
        diff = np.abs(a - b)
        bound = rtol * np.abs(b) + atol + np.ravel(extra)
        ratio = np.where(diff == 0, 0.0,
                         diff / np.where(bound == 0, 1.0, bound))
        ratio[(diff != 0) & (bound == 0)] = math.inf
        if ratio.size and ratio.max() > self.ratio:
            j = int(np.argmax(ratio))
            self.ratio = float(ratio[j])
            self.where = "%s[%d]: %.9g vs torch %.9g" % (where, j, a[j], b[j])
        big = np.abs(b) >= atol / rtol
        if np.any(big & (diff != 0)):
            self.rel = max(self.rel,
                           float(np.max(diff[big] / np.abs(b[big]))))


def decay_error(case, dtype):
    """How far torch's AdamW decay factor, 1 - lr * wd computed in double and
    rounded to dtype, is from the rule's exact 1 - lr * wd (lr and wd in
    dtype): p moves off by this times |p| every step. 0 for other rules."""
    if case[0] != "adamw":
        return 0.0
    lr, wd = case[2]["lr"], case[2]["weight_decay"]
    theirs = Fraction(float(np.array(1.0 - lr * wd, dtype)))
    exact = 1 - Fraction(float(np.array(lr, dtype))) * Fraction(
        float(np.array(wd, dtype)))
    return float(abs(theirs - exact))


def torch_state(topt, param, name):
    return topt.state[param][name].numpy() if name else \
        param.detach().numpy()


def run(examples, precision):
    dtype = np.float32 if precision == "f32" else np.float64
    eps = float(np.finfo(dtype).eps)
    rtol = RTOL[precision]
    init_rng = np.random.default_rng(SEED)
    init = [init_rng.standard_normal(n).astype(dtype) for n in SIZES]

    runs = []
    for case in CASES:
        rule = optim_mlir.compile_file(os.path.join(examples, case[1]),
                                       f64=precision == "f64")
        ours = [p.copy() for p in init]
        opt = optim_mlir.Optimizer(rule, ours)
        for k, v in case[2].items():
            opt.set(k, v)
        theirs = [torch.nn.Parameter(torch.from_numpy(p.copy()))
                  for p in init]
        # In float32, also torch in float64 from the same data: a more exact
        # answer, to tell which side a difference comes from (printed only).
        wide = None
        if precision == "f32":
            wide = [torch.nn.Parameter(torch.from_numpy(p.astype(np.float64)))
                    for p in init]
            wide = (wide, case[3](wide))
        runs.append({"case": case, "opt": opt, "ours": ours,
                     "theirs": theirs, "topt": case[3](theirs),
                     "wide": wide, "decay": decay_error(case, dtype),
                     "sum_abs_p": [np.zeros(n) for n in SIZES]})

    rng = np.random.default_rng(SEED + 1)
    for _ in range(STEPS):
        grads = gradients(rng, dtype)
        tgrads = [torch.from_numpy(g) for g in grads]
        wgrads = [torch.from_numpy(g.astype(np.float64)) for g in grads]
        for r in runs:
            if r["decay"]:
                for acc, p in zip(r["sum_abs_p"], r["theirs"]):
                    acc += np.abs(p.detach().numpy())
            r["opt"].step(grads)
            for p, g in zip(r["theirs"], tgrads):
                p.grad = g
            r["topt"].step()
            if r["wide"]:
                for p, g in zip(r["wide"][0], wgrads):
                    p.grad = g
                r["wide"][1].step()

    failed = 0
    for r in runs:
        name, states = r["case"][0], r["case"][4]
        worst = Worst()
        vs_wide = [Worst(), Worst()]  # ours, torch's; vs torch in float64
        for i in range(len(SIZES)):
            for mine, key in [("p", None)] + list(states.items()):
                a = r["ours"][i] if mine == "p" else r["opt"].state(i, mine)
                b = torch_state(r["topt"], r["theirs"][i], key)
                if a.shape != b.shape:
                    raise AssertionError("%s %s[%d]: shape %s vs %s"
                                         % (name, mine, i, a.shape, b.shape))
                atol = ATOL_ULPS * eps * float(np.max(np.abs(b), initial=0))
                where = "%s[%d]" % (mine, i)
                extra = r["decay"] * r["sum_abs_p"][i] if mine == "p" else 0
                worst.add(a, b, rtol, atol, where, extra)
                if r["wide"]:
                    c = torch_state(r["wide"][1], r["wide"][0][i], key)
                    vs_wide[0].add(a, c, rtol, atol, where)
                    vs_wide[1].add(b, c, rtol, atol, where)
        ok = worst.ratio <= 1.0
        failed += not ok
        print("%s %s %-8s max rel err %.2e; worst error %.3f of the tolerance"
              "%s%s" % ("PASS" if ok else "FAIL", precision, name, worst.rel,
                        worst.ratio,
                        " (p: + torch's decay rounding %.2g * sum |p_t|)"
                        % r["decay"] if r["decay"] else "",
                        "" if ok else "; at " + worst.where))
        if r["wide"]:
            print("     vs torch in float64 on the same data, worst error / "
                  "tolerance: ours %.3f, torch's %.3f"
                  % (vs_wide[0].ratio, vs_wide[1].ratio))
    return len(runs) - failed, failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", required=True,
                        help="the examples/ directory")
    parser.add_argument("--library", help="liboptim.so (else $OPTIM_LIBRARY)")
    parser.add_argument("--precision", choices=("f32", "f64", "both"),
                        default="both")
    args = parser.parse_args()
    optim_mlir.load(args.library)
    torch.set_num_threads(1)
    print("torch %s, numpy %s; lion: skipped (torch.optim has no Lion)"
          % (torch.__version__, np.__version__))
    passed = failed = 0
    for precision in ("f32", "f64"):
        if args.precision in (precision, "both"):
            start = time.time()
            p, f = run(args.examples, precision)
            passed, failed = passed + p, failed + f
            print("# %s: %.1fs" % (precision, time.time() - start))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
