#!/usr/bin/env python3
"""What row, column and tensor reductions cost on one wide matrix.

Usage: python3 bench/rules/axis_costs.py [--library build/lib/liboptim.so]
           [--rows 768] [--cols 12288] [--threads 2] [--reps 7]

One f32 step, median of --reps, of: the compiled examples/adam.optim (the
memory yardstick: 7 arrays of the matrix's size moved), a rule whose
second moment is a row_mean of g*g, one with a col_mean, one with a
tensor_mean (each two passes: 3 arrays moved in all), and
examples/adafactor.optim (four passes). No target: it shows what each kind
of reduction costs beyond its bytes.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import optim_mlir  # noqa: E402


def read(name):
    with open(os.path.join(ROOT, "examples", name)) as f:
        return f.read()


RULES = [
    ("adam", read("adam.optim")),
    ("row_mean", "rule a(lr = 0.1) { row state r = 0\n"
                 "r = row_mean(g * g)\np -= lr * g / sqrt(r + 1e-8) }"),
    ("col_mean", "rule a(lr = 0.1) { col state c = 0\n"
                 "c = col_mean(g * g)\np -= lr * g / sqrt(c + 1e-8) }"),
    ("tensor_mean", "rule a(lr = 0.1) { state v = 0\n"
                    "v = tensor_mean(g * g)\np -= lr * g / sqrt(v + 1e-8) }"),
    ("adafactor", read("adafactor.optim")),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library",
                    default=os.path.join(ROOT, "build/lib/liboptim.so"))
    ap.add_argument("--rows", type=int, default=768)
    ap.add_argument("--cols", type=int, default=12288)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    optim_mlir.load(a.library)
    shape = (a.rows, a.cols)
    g = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
    print("one f32 step on a %d x %d matrix, %d threads, median of %d reps"
          % (a.rows, a.cols, a.threads, a.reps))
    print("| rule | passes | ms |")
    print("| --- | ---: | ---: |")
    for name, source in RULES:
        rule = optim_mlir.compile_source(source, name=name + ".optim")
        params = [np.ones(shape, np.float32)]
        opt = optim_mlir.Optimizer(rule, params, threads=a.threads)
        opt.step(g)  # first touch of the state
        times = []
        for _ in range(a.reps):
            start = time.perf_counter()
            opt.step(g)
            times.append(time.perf_counter() - start)
        passes = max(rule.reduction_levels) + 2 if rule.reduction_levels \
            else 1
        print("| %s | %d | %.2f |" % (name, passes,
                                       float(np.median(times)) * 1e3))


if __name__ == "__main__":
    main()
