#!/usr/bin/env python3
"""Factored Adafactor compiled by optim-mlir against torch.optim.Adafactor.

Usage: python3 bench/rules/adafactor_torch.py [--library build/lib/liboptim.so]
           [--threads 2] [--reps 9] [--blocks 6] [--steps 100]

Needs numpy and PyTorch (>= 2.5, for torch.optim.Adafactor) on the CPU.
examples/adafactor.optim is written to torch's algorithm (row and column
second moments, relative step, update clipping). In one process:

1. Agreement: both run --steps steps from the same parameters and gradients
   on matrices and vectors (shapes below), in float32 and float64; the table
   gives the largest difference of the parameters relative to their
   largest magnitude, and of the row and column states. Expected: rounding
   only (the reductions sum in another order: ours in f64, torch's norms in
   the tensor's type).
2. Speed: one float32 step over a GPT-2-small-shaped parameter list (--blocks
   transformer blocks of 768 wide, their biases and layer norms, and the
   768 x 1024 position embedding; no token embedding), torch with
   torch.set_num_threads(--threads) and the compiled rule with as many
   threads, taking turns rep by rep; the median time of each and the ratio.
   torch's default on the CPU is its for-loop implementation (foreach=None);
   foreach=True is timed too and the faster of the two is the reference.
   The compiled examples/adam.optim on the same list is timed alongside as
   a memory yardstick (7 arrays of the parameters' size moved a step
   against Adafactor's 6).
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

EXAMPLE = os.path.join(ROOT, "examples", "adafactor.optim")
AGREE_SHAPES = [(33, 17), (5, 300), (1, 9), (64,), (3,), (1,), (128, 96)]


def gpt2_shapes(blocks):
    shapes = [(1024, 768)]  # position embedding
    for _ in range(blocks):
        shapes += [(768,), (768,),            # ln_1
                   (768, 2304), (2304,),      # attn.c_attn
                   (768, 768), (768,),        # attn.c_proj
                   (768,), (768,),            # ln_2
                   (768, 3072), (3072,),      # mlp.c_fc
                   (3072, 768), (768,)]       # mlp.c_proj
    return shapes + [(768,), (768,)]          # ln_f


def torch_opt(torch, params, foreach):
    return torch.optim.Adafactor(params, lr=1e-2, foreach=foreach)


def agreement(torch, dtype, steps):
    np_dtype = np.float32 if dtype == "f32" else np.float64
    tdtype = torch.float32 if dtype == "f32" else torch.float64
    rng = np.random.default_rng(7)
    init = [rng.standard_normal(s).astype(np_dtype) for s in AGREE_SHAPES]
    grads = [[(rng.standard_normal(s) * (1 + k % 3)).astype(np_dtype)
              for s in AGREE_SHAPES] for k in range(steps)]
    rule = optim_mlir.compile_file(EXAMPLE, f64=(dtype == "f64"))
    ours = [a.copy() for a in init]
    opt = optim_mlir.Optimizer(rule, ours, threads=2)
    # torch's eps1 default is the dtype's machine epsilon.
    opt.set("eps1", float(np.finfo(np_dtype).eps))
    theirs = [torch.tensor(a.copy(), dtype=tdtype) for a in init]
    topt = torch_opt(torch, theirs, foreach=False)
    for k in range(steps):
        opt.step(grads[k])
        for t, g in zip(theirs, grads[k]):
            t.grad = torch.tensor(g, dtype=tdtype)
        topt.step()
    worst_p = worst_s = 0.0
    for i, (a, t) in enumerate(zip(ours, theirs)):
        ref = t.detach().numpy()
        scale = max(np.abs(ref).max(), 1e-30)
        worst_p = max(worst_p, float(np.abs(a - ref).max() / scale))
        st = topt.state[t]
        if st.get("row_var") is not None:
            for ours_name, key in (("r", "row_var"), ("c", "col_var")):
                ref_s = st[key].detach().numpy().reshape(-1)
                got = np.asarray(opt.state(i, ours_name)).reshape(-1)
                s_scale = max(np.abs(ref_s).max(), 1e-30)
                worst_s = max(worst_s, float(np.abs(got - ref_s).max() /
                                             s_scale))
    return worst_p, worst_s


def speed(torch, blocks, threads, reps):
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    shapes = gpt2_shapes(blocks)
    count = sum(int(np.prod(s)) for s in shapes)
    init = [(rng.standard_normal(s) * 0.02).astype(np.float32)
            for s in shapes]
    grads = [(rng.standard_normal(s) * 1e-3).astype(np.float32)
             for s in shapes]
    rule = optim_mlir.compile_file(EXAMPLE)
    ours = [a.copy() for a in init]
    opt = optim_mlir.Optimizer(rule, ours, threads=threads)
    runs = {"optim-mlir": lambda: opt.step(grads)}
    # The memory yardstick: the compiled Adam moves 7 arrays of the
    # parameters' size a step; Adafactor's four passes move 6 (p and g to
    # reduce, g again for the update's RMS, p and g read and p written).
    adam = optim_mlir.compile_file(os.path.join(ROOT, "examples",
                                                "adam.optim"))
    adam_params = [a.copy() for a in init]
    adam_opt = optim_mlir.Optimizer(adam, adam_params, threads=threads)
    runs["optim-mlir adam (yardstick)"] = lambda: adam_opt.step(grads)
    for foreach in (False, True):
        params = [torch.tensor(a.copy()) for a in init]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        t_opt = torch_opt(torch, params, foreach)
        runs["torch foreach=%s" % foreach] = t_opt.step
    for run in runs.values():  # first touch of the state
        run()
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return count, {n: float(np.median(t)) * 1e3 for n, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library",
                    default=os.path.join(ROOT, "build/lib/liboptim.so"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args()
    import torch
    optim_mlir.load(a.library)
    print("torch %s, %d threads" % (torch.__version__, a.threads))
    print("agreement with torch.optim.Adafactor over %d steps, shapes %s"
          % (a.steps, " ".join("x".join(map(str, s)) for s in AGREE_SHAPES)))
    print("| dtype | max param diff / max abs | max row/col state diff "
          "/ max abs |")
    print("| --- | ---: | ---: |")
    for dtype in ("f32", "f64"):
        p, s = agreement(torch, dtype, a.steps)
        print("| %s | %.2e | %.2e |" % (dtype, p, s))
    count, med = speed(torch, a.blocks, a.threads, a.reps)
    print("one f32 step, GPT-2-small shapes with %d blocks (%.1fM "
          "parameters), median of %d interleaved reps" %
          (a.blocks, count / 1e6, a.reps))
    print("| implementation | ms | speed-up of optim-mlir |")
    print("| --- | ---: | ---: |")
    for name, ms in med.items():
        print("| %s | %.2f | %.2fx |" % (name, ms, ms / med["optim-mlir"]))


if __name__ == "__main__":
    main()
