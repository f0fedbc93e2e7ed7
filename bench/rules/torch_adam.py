#!/usr/bin/env python3
"""PyTorch's CPU Adam on the parameter lists of RulesBench.cpp.

Builds the same lists as gpt2Shaped() and manySmall() in RulesBench.cpp
(same shapes, fp32, parameters 0.01, the same gradients, set once) and
times optimizer.step() for torch.optim.Adam(foreach=True) and
Adam(fused=True): the median of --reps interleaved repetitions after one
warm-up step each, with torch.set_num_threads(--threads). Prints one JSON
object of seconds; a variant that this torch cannot run is reported as null
with the reason under "errors".
"""

import argparse
import json
import statistics
import sys
import time

import torch


def gpt2_shaped():
    """GPT-2 small's 148 tensor sizes, width 384, vocabulary 8850."""
    d, ctx, vocab = 384, 1024, 8850
    sizes = [vocab * d, ctx * d]
    for _ in range(12):
        sizes += [d, d, d * 3 * d, 3 * d, d * d, d, d, d, d * 4 * d, 4 * d,
                  4 * d * d, d]
    sizes += [d, d]
    return sizes


def many_small():
    return [1000] * 2000


def make_params(sizes):
    """Parameters filled with 0.01 and RulesBench.cpp's gradients."""
    params = []
    for n in sizes:
        p = torch.full((n,), 0.01, dtype=torch.float32, requires_grad=True)
        i = torch.arange(n, dtype=torch.int64)
        p.grad = (1e-3 * ((i * 7919) % 2001 - 1000).to(torch.float32)
                  / 1000.0)
        params.append(p)
    return params


def time_variants(sizes, variants, reps):
    """Median step() seconds of each variant, repetitions interleaved."""
    optimizers, errors = {}, {}
    for name, kwargs in variants.items():
        try:
            opt = torch.optim.Adam(make_params(sizes), lr=1e-3, **kwargs)
            opt.step()  # warm-up: allocates the state, faults the pages
            optimizers[name] = opt
        except (RuntimeError, TypeError, ValueError) as e:
            errors[name] = f"{type(e).__name__}: {e}"
    times = {name: [] for name in optimizers}
    for _ in range(reps):
        for name, opt in optimizers.items():
            start = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name in errors:
        medians[name] = None
    return medians, errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    if args.threads < 1 or args.reps < 1:
        parser.error("--threads and --reps must be positive")

    torch.set_num_threads(args.threads)
    variants = {"foreach": {"foreach": True}, "fused": {"fused": True}}
    out = {"torch_version": torch.__version__,
           "threads": torch.get_num_threads(), "reps": args.reps}
    errors = {}
    with torch.no_grad():
        for label, sizes in (("gpt2", gpt2_shaped()),
                             ("small", many_small())):
            medians, errs = time_variants(sizes, variants, args.reps)
            out[f"{label}_params"] = sum(sizes)
            out[f"{label}_tensors"] = len(sizes)
            for name, value in medians.items():
                out[f"{label}_torch_{name}_s"] = value
            errors.update({f"{label}_{k}": v for k, v in errs.items()})
    out["errors"] = errors
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
