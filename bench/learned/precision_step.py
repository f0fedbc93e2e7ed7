#!/usr/bin/env python3
"""One learned-rule step (examples/l2l.optim) in f32 and in f64, side by side.

Times optim_mlir.Optimizer.step on N coordinates with random weights (sd
0.3) and gradients (sd 1e-3), best of --reps steps after one warm-up, and
prints GFLOP/s for each precision, counting 2 (4*20*22 + 4*20*40 + 20) flops
per coordinate as bench/learned/LearnedBench.cpp does. OPTIM_LIBRARY selects
the liboptim.so to time (python/optim_mlir.py), so that two builds can be
compared A/B in alternation:

  for lib in before after; do OPTIM_LIBRARY=/path/$lib/liboptim.so \\
    python3 bench/learned/precision_step.py --threads 1; done
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
import optim_mlir as om  # noqa: E402

FLOPS = 2 * (4 * 20 * 22 + 4 * 20 * 40 + 20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=200000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    out = {}
    for f64 in (False, True):
        rule = om.compile_file(os.path.join(ROOT, "examples", "l2l.optim"),
                               f64=f64)
        dt = np.float64 if f64 else np.float32
        rng = np.random.default_rng(0)
        p = rng.standard_normal(args.size).astype(dt)
        opt = om.Optimizer(rule, [p], threads=args.threads)
        for name, shape in (("lstm1", (80, 23)), ("lstm2", (80, 41)),
                            ("head", (1, 21))):
            opt.set_weights(name, (rng.standard_normal(shape) * 0.3).astype(dt))
        g = (rng.standard_normal(args.size) * 1e-3).astype(dt)
        opt.step([g])
        best = float("inf")
        for _ in range(args.reps):
            start = time.perf_counter()
            opt.step([g])
            best = min(best, time.perf_counter() - start)
        out["f64" if f64 else "f32"] = args.size * FLOPS / best / 1e9
    print("learned step, %d coordinates, %d threads: f32 %.1f GFLOP/s, "
          "f64 %.1f GFLOP/s (f64/f32 %.2f)" % (
              args.size, args.threads, out["f32"], out["f64"],
              out["f64"] / out["f32"]))


if __name__ == "__main__":
    main()
