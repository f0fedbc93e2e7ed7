#!/usr/bin/env python3
"""The cost of nested tensor reductions: one more pass over memory per level.

Usage: python3 bench/rules/nested_passes.py [--library build/lib/liboptim.so]
           [--size N] [--tensors N] [--threads N] [--reps N]

Compiles, through the Python binding, rules with reductions in pairs that
differ by their nesting only, and times one f32 step of each over --tensors
tensors of --size coordinates in all, taking turns (rep by rep) in one
process so that the machine's noise hits all of them alike:

- gc_momentum (literature.optim: g minus its tensor mean, momentum; level 0
  only, two passes) against gs_sgd (the same and divided by the centred
  gradient's standard deviation: level 1, three passes);
- LAMB (examples/lamb.optim, two passes) against LANS (literature.optim: the
  gradient normalized by its norm first, so the trust ratios' norms are
  level 1, three passes);
- the chain of test/Oracle/nested_oracle.py (levels 0 to 3, five passes).

Each row gives the median step time, the streams the step moves (arrays of
the tensors' size read or written: each pass reads what its level needs;
the rule reads p, g and the state and writes p and the state), and the time
per stream relative to the pair's first rule: 1.0 means the extra passes
cost what their bytes cost. No target: this documents what nesting costs.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "test", "Oracle"))
import optim_mlir  # noqa: E402
import nested_oracle  # noqa: E402

LIT = os.path.join(ROOT, "test", "Run", "Inputs", "literature.optim")
# name, (path or source, rule), streams per coordinate: the reduce passes'
# reads, then the rule's reads and writes.
ROWS = [
    ("gc_momentum", (LIT, "gc_momentum"), 1 + 5),        # g | p g buf, p buf
    ("gs_sgd", (LIT, "gs_sgd"), 1 + 1 + 5),              # g | g | ...
    ("lamb", (os.path.join(ROOT, "examples", "lamb.optim"), None),
     4 + 7),                                             # p g m v | ...
    ("lans", (LIT, "lans"), 2 + 4 + 7),                  # g p | p g m v | ...
    ("chain", (nested_oracle.CHAIN, "chain"),
     3 + 2 + 2 + 3 + 5),                                 # m g p | m g | ...
]
BASE = {"gc_momentum": "gc_momentum", "gs_sgd": "gc_momentum",
        "lamb": "lamb", "lans": "lamb", "chain": "gc_momentum"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library",
                    default=os.path.join(ROOT, "build/lib/liboptim.so"))
    ap.add_argument("--size", type=int, default=1 << 24)
    ap.add_argument("--tensors", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    optim_mlir.load(a.library)
    rng = np.random.default_rng(0)
    per = a.size // a.tensors
    grads = [rng.standard_normal(per).astype(np.float32)
             for _ in range(a.tensors)]
    opts = {}
    for name, (where, rule_name), _ in ROWS:
        if os.path.exists(where):
            rule = optim_mlir.compile_file(where, rule=rule_name)
        else:
            rule = optim_mlir.compile_source(where, rule=rule_name)
        params = [np.ones(per, np.float32) for _ in range(a.tensors)]
        opt = optim_mlir.Optimizer(rule, params, threads=a.threads)
        opt.step(grads)  # first touch of the state
        opts[name] = (opt, rule)
    times = {name: [] for name in opts}
    for _ in range(a.reps):
        for name, (opt, _) in opts.items():
            start = time.perf_counter()
            opt.step(grads)
            times[name].append(time.perf_counter() - start)
    print("one f32 step on %d tensors of %d coordinates, %d threads, median "
          "of %d interleaved reps" % (a.tensors, per, a.threads, a.reps))
    print("| rule | passes | streams | ms | time per stream vs %s |"
          % "the pair's first")
    print("| --- | ---: | ---: | ---: | ---: |")
    med = {n: float(np.median(t)) * 1e3 for n, t in times.items()}
    for name, _, streams in ROWS:
        rule = opts[name][1]
        passes = max(getattr(rule, "reduction_levels", [0]) or [0]) + 2
        base = BASE[name]
        base_streams = [s for n, _, s in ROWS if n == base][0]
        print("| %s | %d | %d | %.2f | %.2f |" % (
            name, passes, streams, med[name],
            (med[name] / streams) / (med[base] / base_streams)))


if __name__ == "__main__":
    main()
