#!/usr/bin/env python3
"""The cost of the random numbers a rule draws (rand(), randn(); kernel ABI 8).

Usage: python3 bench/rules/random_draws.py [--library build/lib/liboptim.so]
           [--size N] [--threads N] [--reps N]

Compiles, through the Python binding, SGD, SGD scaled by one uniform draw per
coordinate, SGLD (one normal draw per coordinate) and examples/adam.optim,
in f32 and f64, and times one step of each on one tensor of --size
coordinates, taking turns (rep by rep) in one process so that the machine's
noise hits all of them alike. Prints the median step time of each and the
ratios to SGD (the same memory traffic as the drawing rules: read p and g,
write p) and to Adam. No target: this documents what a draw costs.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import optim_mlir  # noqa: E402

RULES = {
    "sgd": "rule sgd(lr = 0.01) { p -= lr * g }",
    "uniform": "rule uniform(lr = 0.01) { p -= lr * g * rand() }",
    "sgld": "rule sgld(lr = 0.01) { p -= 0.5 * lr * g - sqrt(lr) * randn() }",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", default=os.path.join(ROOT, "build/lib/liboptim.so"))
    ap.add_argument("--size", type=int, default=1 << 22)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=21)
    a = ap.parse_args()
    optim_mlir.load(a.library)
    with open(os.path.join(ROOT, "examples/adam.optim")) as f:
        rules = dict(RULES, adam=f.read())
    print("one step on %d coordinates, %d threads, median of %d interleaved reps"
          % (a.size, a.threads, a.reps))
    for f64 in (False, True):
        dtype = np.float64 if f64 else np.float32
        opts = {}
        for name, src in rules.items():
            rule = optim_mlir.compile_source(src, f64=f64)
            p = np.zeros(a.size, dtype)
            g = np.full(a.size, 1e-3, dtype)
            opts[name] = (optim_mlir.Optimizer(rule, [p], threads=a.threads), g, p)
        for o, g, _ in opts.values():  # warm up: page faults, thread start
            o.step([g])
        times = {name: [] for name in opts}
        for _ in range(a.reps):
            for name, (o, g, _) in opts.items():
                t0 = time.perf_counter()
                o.step([g])
                times[name].append(time.perf_counter() - t0)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        prec = "f64" if f64 else "f32"
        for name in opts:
            print("%s %-8s %8.2f ms  %6.2fx sgd  %6.2fx adam  %6.2f ns/coordinate"
                  % (prec, name, 1e3 * med[name], med[name] / med["sgd"],
                     med[name] / med["adam"], 1e9 * med[name] / a.size))


if __name__ == "__main__":
    main()
