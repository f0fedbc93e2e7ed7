#!/usr/bin/env python3
"""Oracle test: the example rules against torch.optim, through liboptim.so.

For each rule that torch.optim implements, one optimizer of ours and one of
torch's take 1,000 steps over tensors of awkward sizes (0, 1, 7, 1000,
100003) from identical parameters with identical gradients, in float32 and in
float64, and their parameters and state must agree after every run:

    |ours - torch| <= rtol * |torch| + atol.

rtol is 1e-5 in float32 and 1e-12 in float64. The formulas are the same but
arranged differently (torch's Adam divides by sqrt(v) / sqrt(1 - beta2^t)
with lr / (1 - beta1^t) computed in double precision and rounded once; its m
is lerp(m, g, 1 - beta1); ours computes mhat and vhat in the kernel's
precision), so each step may round differently by a few units in the last
place (ulp), and 1,000 steps accumulate that. Relative to the value, that is
what rtol covers. It cannot cover values that pass near 0 by cancellation (a
moment of gradients of both signs, a parameter crossing 0): there the error is
a few ulps of the terms that cancelled, not of the result. Hence the absolute
term, per tensor and quantity:

    atol = 8 * sqrt(steps) * eps(dtype) * max|torch value in that tensor|

that is, a handful of ulps of the tensor's largest value, grown like a random
walk over the steps: the rounding differences of successive steps have no
common sign. (Gradients have the same distribution in every coordinate, so
the tensor's largest value is the scale of every coordinate's terms.)

One difference is systematic and is stated separately: torch's AdamW
multiplies p by (1 - lr * wd) rounded to float32 (0.9995 -> 0.99949997...,
2.3e-8 off), every step, where the rule subtracts lr * wd * p; in float32
torch's p therefore drifts by steps * 2.3e-8 = 2.3e-5 relative to the exact
decay, which ours does not (a float64 check of this is in the report of the
change). That term, steps * |fl(1 - lr * wd) - (1 - lr * wd)|, is added to
rtol for AdamW's parameters and printed.

Lion (examples/lion.optim) is not checked: torch.optim has no Lion.

Prints one line per rule and precision with the largest error relative to the
tolerance, then "N passed, M failed"; exits 1 if any failed.
"""

import argparse
import math
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


def decay_drift(case, dtype):
    """torch's AdamW decay factor 1 - lr * wd, rounded to dtype, is off the
    exact one by this much, relative, every step."""
    if case[0] != "adamw":
        return 0.0
    h = case[2]
    exact = 1.0 - h["lr"] * h["weight_decay"]
    return abs(float(np.array(exact, dtype)) - exact) / exact


def run(examples, precision):
    dtype = np.float32 if precision == "f32" else np.float64
    eps = float(np.finfo(dtype).eps)
    init_rng = np.random.default_rng(SEED)
    init = [init_rng.standard_normal(n).astype(dtype) for n in SIZES]

    runs = []
    for case in CASES:
        name, path, hypers, factory, states = case
        rule = optim_mlir.compile_file(os.path.join(examples, path),
                                       f64=precision == "f64")
        ours = [p.copy() for p in init]
        opt = optim_mlir.Optimizer(rule, ours)
        for k, v in hypers.items():
            opt.set(k, v)
        theirs = [torch.nn.Parameter(torch.from_numpy(p.copy()))
                  for p in init]
        runs.append((case, opt, ours, theirs, factory(theirs)))

    rng = np.random.default_rng(SEED + 1)
    for _ in range(STEPS):
        grads = gradients(rng, dtype)
        tgrads = [torch.from_numpy(g) for g in grads]
        for _, opt, _, theirs, topt in runs:
            opt.step(grads)
            for p, g in zip(theirs, tgrads):
                p.grad = g
            topt.step()

    failed = 0
    for case, opt, ours, theirs, topt in runs:
        name, states = case[0], case[4]
        drift = STEPS * decay_drift(case, dtype)
        worst, where = 0.0, ""
        for i, n in enumerate(SIZES):
            pairs = [("p", ours[i], theirs[i].detach().numpy(), drift)]
            for mine, torchs in states.items():
                ref = topt.state[theirs[i]][torchs].numpy()
                pairs.append((mine, opt.state(i, mine), ref, 0.0))
            for q, a, b, extra in pairs:
                if a.shape != b.shape:
                    raise AssertionError("%s %s[%d]: shape %s vs %s"
                                         % (name, q, i, a.shape, b.shape))
                if n == 0:
                    continue
                rtol = RTOL[precision] + extra
                atol = 8 * math.sqrt(STEPS) * eps * float(np.max(np.abs(b)))
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                if not np.all(np.isfinite(a64)) or not np.all(
                        np.isfinite(b64)):
                    raise AssertionError("%s %s[%d]: non-finite values"
                                         % (name, q, i))
                # The error relative to |torch| + atol / rtol: <= rtol
                # exactly when |ours - torch| <= rtol * |torch| + atol.
                err = np.abs(a64 - b64) / (np.abs(b64) + atol / rtol) * (
                    RTOL[precision] / rtol)
                j = int(np.argmax(err))
                if err[j] > worst:
                    worst = float(err[j])
                    where = "%s[%d][%d]: %.9g vs torch %.9g" % (
                        q, i, j, a64[j], b64[j])
        ok = worst <= RTOL[precision]
        failed += not ok
        note = (" (+ torch's %s decay rounding: rtol %.2g on p)"
                % (precision, RTOL[precision] + drift) if drift else "")
        print("%-5s %-4s %-9s max rel err %.3g (rtol %.0e)%s%s" % (
            "PASS" if ok else "FAIL", precision, name, worst,
            RTOL[precision], note, "" if ok else "  worst " + where))
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
