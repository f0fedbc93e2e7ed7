#!/usr/bin/env python3
"""Learned rules other than examples/l2l.optim (the .optim files next to this
script) against independent numpy references, through liboptim.so.

Each reference below is written from docs/language.md §6-§7 (LSTM layout
[W_ih | W_hh | b], gates i, f, g, o; linear [W | b]; log_sign of appendix A
of Andrychowicz et al.), not from the kernels, and runs in float64. Each
rule runs STEPS steps in float32 and in float64 over three tensors of 1, 53
and 33001 coordinates (33001 = a chunk of 32768 and a tail of 233, not a
multiple of the vector width), on 2 threads, with random weights
(N(0, 0.5^2): gates neither saturated nor linear), every runtime
hyperparameter set away from its default, and gradients of magnitudes
10^U(-7, 1) with ~10% exact zeros (both branches of log_sign). After every
step the kernel's parameters and every state must agree with the reference:

    |ours - reference| <= TOL * (|reference| + max|reference|)

per tensor and quantity, TOL = 1e-5 in float32 and 1e-12 in float64. The
float32 kernels evaluate the activations with rational approximations
(about 1e-7 relative) and the float32 inputs round every weight; over 8 steps
the measured errors stay below a tenth of that tolerance. float64 kernels use
exact activations: measured errors are a few ulps.

With --optimc OPTIMC, each rule also runs as an AOT kernel (optimc
--emit=shared) at odd vector widths (--widths, default 3 and 5: whole
vectors and scalar tails of other shapes than the default 16 lanes), called
through the kernel ABI with ctypes: one tensor of 53 coordinates in chunks of
40 and 13, the same steps and tolerances.

Usage: learned_variants.py LIBOPTIM INPUTS_DIR [--only NAME,...]
       [--scale-off X] [--optimc OPTIMC [--widths 3,5]]
(--scale-off multiplies the hyperparameter `scale` of the KERNELS only, so
the lit test can check that a wrong kernel fails). Prints one line per rule
and precision, then "N passed, M failed"; exits 1 if any failed."""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "..", "python"))
import optim_mlir  # noqa: E402

SIZES = (1, 53, 33001)
STEPS = 8
TOL = {"f32": 1e-5, "f64": 1e-12}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm(w, x, h, c):
    """One LSTM cell step for every coordinate: w [4H, I+H+1], x [I, n],
    h and c [H, n]."""
    hidden = h.shape[0]
    z = w[:, :-1] @ np.concatenate([x, h]) + w[:, -1:]
    i, f = sigmoid(z[:hidden]), sigmoid(z[hidden:2 * hidden])
    gg, o = np.tanh(z[2 * hidden:3 * hidden]), sigmoid(z[3 * hidden:])
    c = f * c + i * gg
    return o * np.tanh(c), c


def linear(w, x):
    return w[:, :-1] @ x + w[:, -1:]


def log_sign(g, k):
    big = np.abs(g) >= np.exp(-k)
    with np.errstate(divide="ignore"):
        x = np.where(big, np.log(np.abs(g)) / k, -1.0)
    s = np.where(big, np.sign(g), np.exp(k) * g)
    return np.stack([x, s])


# Each reference: (p, g, state dict of [size, n] arrays, weights, hypers
# and the step t) -> new p; it updates the state dict in place.

def ref_lstm1(p, g, s, w, hy):
    s["h"], s["c"] = lstm(w["cell"], log_sign(g, 10.0), s["h"], s["c"])
    return p + hy["scale"] * linear(w["head"], s["h"])[0]


def ref_stack3(p, g, s, w, hy):
    s["h1"], s["c1"] = lstm(w["l1"], log_sign(g, 10.0), s["h1"], s["c1"])
    s["h2"], s["c2"] = lstm(w["l2"], s["h1"], s["h2"], s["c2"])
    s["h3"], s["c3"] = lstm(w["l3"], s["h2"], s["h3"], s["c3"])
    return p + hy["scale"] * linear(w["head"], s["h3"])[0]


def ref_hidden1(p, g, s, w, hy):
    s["h"], s["c"] = lstm(w["cell"], g[None], s["h"], s["c"])
    return p - hy["scale"] * s["h"][0]


def ref_hidden7(p, g, s, w, hy):
    s["h"], s["c"] = lstm(w["cell"], np.stack([g, p]), s["h"], s["c"])
    return p + hy["scale"] * linear(w["head"], s["h"])[0]


def ref_hidden33(p, g, s, w, hy):
    s["x"] = g[None].copy()
    s["h"], s["c"] = lstm(w["cell"], s["x"], s["h"], s["c"])
    s["h2"], s["c2"] = lstm(w["cell2"], s["h"], s["h2"], s["c2"])
    return p + hy["scale"] * linear(w["head"], s["h2"])[0]


def ref_linear(p, g, s, w, hy):
    return p + hy["scale"] * linear(w["head"], log_sign(g, 10.0))[0]


def ref_mlp(p, g, s, w, hy):
    hidden = np.tanh(linear(w["l1"], log_sign(g, 10.0)))
    return p + hy["scale"] * linear(w["l2"], hidden)[0]


def ref_twoheads(p, g, s, w, hy):
    s["h"], s["c"] = lstm(w["cell"], log_sign(g, 10.0), s["h"], s["c"])
    y = linear(w["head"], s["h"])
    return p + hy["scale"] * y[0] * np.exp(y[1])


def ref_lmomentum(p, g, s, w, hy):
    s["m"] = hy["beta"] * s["m"] + (1 - hy["beta"]) * g[None]
    s["h"], s["c"] = lstm(w["cell"], np.stack([g, s["m"][0]]), s["h"], s["c"])
    return p + hy["scale"] * linear(w["head"], s["h"])[0] - 0.01 * s["m"][0]


def ref_shared(p, g, s, w, hy):
    x = log_sign(g, 10.0)
    s["h"], s["c"] = lstm(w["cell"], x, s["h"], s["c"])
    h2, c2 = lstm(w["cell"], x, s["h"], s["c"])
    head = w["head"]
    return p + hy["scale"] * (linear(head, h2)[0] -
                              linear(head, c2)[0] * linear(head, s["h"])[0])


def ref_vecin(p, g, s, w, hy):
    s["h"], s["c"] = lstm(w["cell"], linear(w["pre"], g[None]), s["h"],
                          s["c"])
    y, yc = linear(w["head"], s["h"]), linear(w["head"], s["c"])
    return p - (hy["scale"] * np.sum(y * y, axis=0) + np.mean(y, axis=0) +
                np.sum(y * yc, axis=0))


def ref_clipped(p, g, s, w, hy):
    h, c = lstm(w["cell"], g[None], s["h"], s["c"])
    s["h"] = np.where(h > 0, h, 0.1 * h)
    s["c"] = np.clip(c, -0.3, 0.3)
    return p - hy["scale"] * (s["h"][0] - s["h"][1])


def ref_swapped(p, g, s, w, hy):
    h, c = lstm(w["cell"], g[None], s["h"], s["c"])
    s["c"], s["h"] = h, c
    return p - hy["scale"] * np.sum(h, axis=0) / np.sqrt(hy["t"])


def ref_reduced(p, g, s, w, hy):
    # Tensor reductions feeding the network (docs/language.md, Reductions
    # over tensors): the gradient over its tensor's RMS, and the output
    # scaled by the largest |p| of the tensor. Reductions in float64, as the
    # kernels accumulate.
    rms = np.sqrt(np.mean(g * g)) + 1e-6
    s["x"] = (g / rms)[None]
    s["h"], s["c"] = lstm(w["cell"], s["x"], s["h"], s["c"])
    return p + hy["scale"] * linear(w["head"], s["h"])[0] * np.max(np.abs(p))


def ref_features(p, g, s, w, hy):
    # Vector literals (docs/language.md §4): [log_sign(g, k), m, p] is a
    # vector[4], [h, m, g] a vector[5].
    s["m"] = hy["beta"] * s["m"] + (1 - hy["beta"]) * g[None]
    x = np.concatenate([log_sign(g, 10.0), s["m"], p[None]])
    s["h"], s["c"] = lstm(w["cell"], x, s["h"], s["c"])
    y = linear(w["head"], np.concatenate([s["h"], s["m"], g[None]]))
    return p + hy["scale"] * y[0]


# file, reference, the hyperparameters the kernels run with, and the
# expected signature (weights shapes, state sizes): the shapes check the
# layout of docs/language.md §7.
VARIANTS = [
    ("lstm1", ref_lstm1, {"scale": 0.07},
     {"cell": (32, 11), "head": (1, 9)}, {"h": 8, "c": 8}),
    ("stack3", ref_stack3, {"scale": 0.3},
     {"l1": (20, 8), "l2": (12, 9), "l3": (24, 10), "head": (1, 7)},
     {"h1": 5, "c1": 5, "h2": 3, "c2": 3, "h3": 6, "c3": 6}),
    ("hidden1", ref_hidden1, {"scale": 0.2},
     {"cell": (4, 3)}, {"h": 1, "c": 1}),
    ("hidden7", ref_hidden7, {"scale": 0.13},
     {"cell": (28, 10), "head": (1, 8)}, {"h": 7, "c": 7}),
    ("hidden33", ref_hidden33, {"scale": 0.11},
     {"cell": (132, 35), "cell2": (8, 36), "head": (1, 3)},
     {"x": 1, "h": 33, "c": 33, "h2": 2, "c2": 2}),
    ("linear", ref_linear, {"scale": 0.03},
     {"head": (1, 3)}, {}),
    ("mlp", ref_mlp, {"scale": 0.21},
     {"l1": (6, 3), "l2": (1, 7)}, {}),
    ("twoheads", ref_twoheads, {"scale": 0.17},
     {"cell": (16, 7), "head": (2, 5)}, {"h": 4, "c": 4}),
    ("momentum", ref_lmomentum, {"scale": 0.3, "beta": 0.7},
     {"cell": (20, 8), "head": (1, 6)}, {"m": 1, "h": 5, "c": 5}),
    ("shared", ref_shared, {"scale": 0.4},
     {"cell": (12, 6), "head": (1, 4)}, {"h": (3, 0.25), "c": (3, -0.5)}),
    ("vecin", ref_vecin, {"scale": 0.3},
     {"pre": (4, 2), "cell": (8, 7), "head": (3, 3)}, {"h": 2, "c": 2}),
    ("clipped", ref_clipped, {"scale": 0.3},
     {"cell": (8, 4)}, {"h": 2, "c": 2}),
    ("swapped", ref_swapped, {"scale": 0.3},
     {"cell": (12, 5)}, {"h": 3, "c": 3}),
    ("reduced", ref_reduced, {"scale": 0.2},
     {"cell": (12, 5), "head": (1, 4)}, {"x": 1, "h": 3, "c": 3}),
    ("features", ref_features, {"scale": 0.3, "beta": 0.6},
     {"cell": (12, 8), "head": (1, 6)}, {"m": 1, "h": 3, "c": 3}),
]


def gradients(rng, n):
    g = rng.standard_normal(n) * 10.0 ** rng.uniform(-7, 1, n)
    g[rng.random(n) < 0.1] = 0.0
    return g.astype(np.float32).astype(np.float64)


def run(library_dir, name, reference, hypers, weights, states, dtype,
        scale_off, seed):
    """Returns (worst error / tolerance, problems)."""
    problems = []
    rule = optim_mlir.compile_file(os.path.join(library_dir, name + ".optim"),
                                   f64=(dtype == "f64"))
    if rule.weights != weights:
        problems.append("weights %r, expected %r" % (rule.weights, weights))
    # A state is expected as its size, or (size, initial value).
    states = {k: v if isinstance(v, tuple) else (v, 0.0)
              for k, v in states.items()}
    got_states = {k: (v[0], v[1]) for k, v in rule.states.items()}
    if got_states != states:
        problems.append("states %r, expected %r" % (got_states, states))
    if problems:
        return float("inf"), problems
    np_type = np.float64 if dtype == "f64" else np.float32
    rng = np.random.default_rng(seed)
    # float32-representable data: both precisions start from the same values.
    w = {k: (0.5 * rng.standard_normal(shape)).astype(np.float32)
         .astype(np.float64) for k, shape in weights.items()}
    params = [rng.uniform(-2, 2, n).astype(np.float32).astype(np.float64)
              for n in SIZES]
    ours = [p.astype(np_type) for p in params]
    opt = optim_mlir.Optimizer(rule, ours, threads=2)
    for k, v in w.items():
        opt.set_weights(k, np.ascontiguousarray(v, np_type))
    for k, v in hypers.items():
        opt.set(k, v * (scale_off if k == "scale" else 1.0))
    ref_states = [{k: np.full((size, n), init)
                   for k, (size, init) in states.items()} for n in SIZES]
    worst = 0.0
    for step in range(STEPS):
        grads = [gradients(rng, n) for n in SIZES]
        opt.step([gr.astype(np_type) for gr in grads])
        for i in range(len(SIZES)):
            params[i] = reference(params[i], grads[i], ref_states[i], w,
                                  dict(hypers, t=step + 1))
            pairs = [("p", ours[i], params[i])]
            for k, (size, _) in states.items():
                mine = opt.state(i, k).reshape(size, SIZES[i])
                pairs.append((k, mine, ref_states[i][k]))
            for what, mine, ref in pairs:
                err = np.abs(mine.astype(np.float64) - ref)
                bound = TOL[dtype] * (np.abs(ref) + np.max(np.abs(ref)))
                if not np.all(np.isfinite(mine)):
                    problems.append("step %d tensor %d %s: not finite"
                                    % (step + 1, i, what))
                    continue
                ratio = np.max(err / np.maximum(bound, 1e-300))
                worst = max(worst, ratio)
                if ratio > 1:
                    j = int(np.argmax(err / np.maximum(bound, 1e-300)))
                    problems.append(
                        "step %d tensor %d %s[%d]: %r vs %r (%.3g x tol)"
                        % (step + 1, i, what, j, mine.flat[j], ref.flat[j],
                           ratio))
        if problems:
            break
    return worst, problems


def run_aot(optimc, tmp, library_dir, name, reference, hypers, weights,
            states, dtype, width, scale_off, seed):
    """The kernel of `optimc --emit=shared --vector-width=WIDTH`, called
    through the kernel ABI (runtime/include/optim/KernelABI.h) with ctypes:
    53 coordinates in chunks of 40 and 13, so that an odd width runs whole
    vectors and a scalar tail in both. Returns (worst error / tolerance,
    problems)."""
    lib = os.path.join(tmp, "%s-%s-w%d.so" % (name, dtype, width))
    subprocess.run([optimc, os.path.join(library_dir, name + ".optim"),
                    "--emit=shared", "--precision=" + dtype,
                    "--vector-width=%d" % width, "-o", lib], check=True)
    manifest = json.load(open(lib[:-3] + ".manifest.json"))
    kernel = getattr(ctypes.CDLL(lib), manifest["symbol"])
    kernel.restype = None
    # A rule with reductions (KernelABI.h, version 6): the first pass's
    # partials, combined here as the runtime does (one tensor: tensor and
    # global reductions agree), then the rule kernel with the results.
    reductions = manifest.get("reductions", [])
    if reductions:
        reduce_kernel = getattr(ctypes.CDLL(lib),
                                "optim_reduce_" + manifest["rule"])
        reduce_kernel.restype = None
    states = {k: v if isinstance(v, tuple) else (v, 0.0)
              for k, v in states.items()}
    np_type = np.float64 if dtype == "f64" else np.float32
    rng = np.random.default_rng(seed)
    n, chunks = 53, ((0, 40), (40, 53))
    w = {k: (0.5 * rng.standard_normal(shape)).astype(np.float32)
         .astype(np.float64) for k, shape in weights.items()}
    # The manifest's order: hyperparameters (defaults where not set),
    # states, weights.
    hyper_values = [hypers.get(h["name"], h["default"]) *
                    (scale_off if h["name"] == "scale" else 1.0)
                    for h in manifest["hyperparameters"]]
    state_names = [st["name"] for st in manifest["states"]]
    weight_names = [wt["name"] for wt in manifest["weights"]]
    if state_names != list(states) or weight_names != list(weights):
        return float("inf"), ["manifest: states %r, weights %r"
                              % (state_names, weight_names)]
    p = rng.uniform(-2, 2, n).astype(np.float32).astype(np.float64)
    ours = p.astype(np_type)
    ours_states = {k: np.full((size, n), init, np_type)
                   for k, (size, init) in states.items()}
    ref_states = {k: np.full((size, n), init)
                  for k, (size, init) in states.items()}
    weight_arrays = [np.ascontiguousarray(w[k], np_type) for k in weights]
    worst, problems = 0.0, []
    for step in range(1, STEPS + 1):
        g = gradients(rng, n)
        g_ours = g.astype(np_type)
        ptrs, lengths, strides = [], [], []
        item = np.dtype(np_type).itemsize
        for begin, end in chunks:
            ptrs += [ours.ctypes.data + begin * item,
                     g_ours.ctypes.data + begin * item]
            ptrs += [ours_states[k].ctypes.data + begin * item
                     for k in states]
            lengths.append(end - begin)
            strides.append(n)
        args = [(ctypes.c_void_p * len(ptrs))(*ptrs),
                (ctypes.c_int64 * 2)(*lengths),
                (ctypes.c_int64 * 2)(*strides),
                ctypes.c_int64(0), ctypes.c_int64(2),
                (ctypes.c_double * max(len(hyper_values), 1))(*hyper_values),
                ctypes.c_int64(step),
                (ctypes.c_void_p * max(len(weight_arrays), 1))(
                    *[a.ctypes.data for a in weight_arrays])]
        if reductions:
            r = len(reductions)
            # One call per level (KernelABI.h, version 9: `reduced` and
            # `stage` before `rng`), each followed by the combine of that
            # level's slots.
            levels = [red.get("level", 0) for red in reductions]
            partials = (ctypes.c_double * (2 * r))()
            reduced = [float("nan")] * r
            for stage in range(max(levels) + 1):
                reduce_kernel(*args, partials,
                              (ctypes.c_double * (2 * r))(*(reduced * 2))
                              if stage else None,
                              ctypes.c_int64(stage), None)
                for j, red in enumerate(reductions):
                    if levels[j] != stage:
                        continue
                    a, b = partials[j], partials[r + j]
                    kind = red["kind"]
                    value = max(a, b) if kind == "max" else \
                        min(a, b) if kind == "min" else a + b
                    value = value / n if kind == "mean" else \
                        np.sqrt(value) if kind == "norm" else value
                    reduced[j] = value
            kernel(*args, (ctypes.c_double * (2 * r))(*(reduced * 2)), None)
        else:
            kernel(*args)
        p = reference(p, g, ref_states, w, dict(hypers, t=step))
        pairs = [("p", ours, p)] + [(k, ours_states[k], ref_states[k])
                                    for k in states]
        for what, mine, ref in pairs:
            err = np.abs(mine.astype(np.float64) - ref)
            bound = np.maximum(
                TOL[dtype] * (np.abs(ref) + np.max(np.abs(ref))), 1e-300)
            ratio = np.max(err / bound) if np.all(np.isfinite(mine)) \
                else float("inf")
            worst = max(worst, ratio)
            if ratio > 1:
                problems.append("step %d %s: worst %.3g x tol"
                                % (step, what, ratio))
        if problems:
            break
    return worst, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("library")
    ap.add_argument("inputs")
    ap.add_argument("--only")
    ap.add_argument("--scale-off", type=float, default=1.0)
    ap.add_argument("--optimc", help="also run the AOT kernels of optimc "
                    "--emit=shared at odd vector widths")
    ap.add_argument("--widths", default="3,5")
    args = ap.parse_args()
    optim_mlir.load(args.library)
    passed = failed = 0
    for seed, (name, reference, hypers, weights, states) in \
            enumerate(VARIANTS):
        if args.only and name not in args.only.split(","):
            continue
        for dtype in ("f32", "f64"):
            worst, problems = run(args.inputs, name, reference, hypers,
                                  weights, states, dtype, args.scale_off,
                                  1000 + seed)
            if problems:
                failed += 1
                print("FAIL %s %s: %s" % (dtype, name, "; ".join(problems[:3])))
            else:
                passed += 1
                print("ok %s %s: worst %.3g of the tolerance" % (dtype, name,
                                                                  worst))
            if not args.optimc:
                continue
            for width in [int(x) for x in args.widths.split(",")]:
                with tempfile.TemporaryDirectory() as tmp:
                    worst, problems = run_aot(
                        args.optimc, tmp, args.inputs, name, reference,
                        hypers, weights, states, dtype, width,
                        args.scale_off, 2000 + seed)
                what = "%s %s width %d" % (dtype, name, width)
                if problems:
                    failed += 1
                    print("FAIL %s: %s" % (what, "; ".join(problems[:3])))
                else:
                    passed += 1
                    print("ok %s: worst %.3g of the tolerance" % (what,
                                                                  worst))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
