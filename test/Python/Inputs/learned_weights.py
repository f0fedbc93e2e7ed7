#!/usr/bin/env python3
"""The learned-weights API of python/optim_mlir.py: a learned rule trained
through the binding against a numpy reference of examples/l2l.optim (written
from docs/language.md, in float64), weights from memory and from a file, and
every wrong call raising OptimError while changing nothing.

Usage: learned_weights.py LIBOPTIM EXAMPLES_DIR WEIGHTS.safetensors"""

import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

library, examples, weights_path = sys.argv[1:4]
optim_mlir.load(library)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAILED:", what, file=sys.stderr)


def expect_error(fn, status, needle, what):
    try:
        fn()
    except optim_mlir.OptimError as e:
        check(e.status_name == status and needle in e.message,
              "%s: got %s %r" % (what, e.status_name, e.message))
        return
    check(False, what + ": no error")


def read_safetensors(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + a:8 + n + b],
                                  np.float32).reshape(t["shape"])
    return out


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm(w, x, h, c):
    """w: [4H, I+H+1] = [W_ih | W_hh | b], gates i, f, g, o; x: [I, n]."""
    hidden = h.shape[0]
    z = w[:, :-1] @ np.concatenate([x, h]) + w[:, -1:]
    i, f = sigmoid(z[:hidden]), sigmoid(z[hidden:2 * hidden])
    g, o = np.tanh(z[2 * hidden:3 * hidden]), sigmoid(z[3 * hidden:])
    c = f * c + i * g
    return o * np.tanh(c), c


def l2l_step(p, g, state, w):
    k = 10.0
    big = np.abs(g) >= np.exp(-k)
    x = np.where(big, np.log(np.maximum(np.abs(g), 1e-300)) / k, -1.0)
    s = np.where(big, np.sign(g), np.exp(k) * g)
    h1, c1 = lstm(w["lstm1"], np.stack([x, s]), state[0], state[1])
    h2, c2 = lstm(w["lstm2"], h1, state[2], state[3])
    out = w["head"][:, :-1] @ h2 + w["head"][:, -1:]
    state[:] = [h1, c1, h2, c2]
    return p + 0.1 * out[0]


rule = optim_mlir.compile_file(os.path.join(examples, "l2l.optim"))
check(rule.weights == {"lstm1": (80, 23), "lstm2": (80, 41),
                       "head": (1, 21)}, "rule.weights: %r" % rule.weights)
adam = optim_mlir.compile_file(os.path.join(examples, "adam.optim"))
check(adam.weights == {}, "adam has no weights")

w = read_safetensors(weights_path)
n = 53  # not a multiple of any vector width
p_mem = np.linspace(-2, 2, n).astype(np.float32)
p_file = p_mem.copy()
start = p_mem.astype(np.float64)
opt_mem = optim_mlir.Optimizer(rule, [p_mem], threads=1)
opt_file = optim_mlir.Optimizer(rule, [p_file], threads=2)

g0 = np.ones(n, np.float32)
expect_error(lambda: opt_mem.step([g0]), "OPTIM_ERROR_INVALID_ARGUMENT",
             "not set", "step before the weights")
check(np.array_equal(p_mem, start.astype(np.float32)), "no step happened")

for name, a in w.items():
    opt_mem.set_weights(name, np.ascontiguousarray(a))
other = np.full(80 * 41, 7.0, np.float32)
expect_error(lambda: opt_mem.set_weights("lstm9", other),
             "OPTIM_ERROR_NOT_FOUND", "no weights 'lstm9'", "unknown name")
expect_error(lambda: opt_mem.set_weights("lstm2", other[:-1]),
             "OPTIM_ERROR_INVALID_ARGUMENT", "needs 3280 elements, got 3279",
             "wrong size")
try:
    opt_mem.set_weights("lstm2", other.astype(np.float64))
    check(False, "float64 weights for an f32 rule: no error")
except TypeError as e:
    check("float64" in str(e), "float64 weights: %s" % e)

opt_file.load_weights(weights_path)
truncated = weights_path + ".truncated"
with open(truncated, "wb") as f:
    f.write(open(weights_path, "rb").read()[:-100])
expect_error(lambda: opt_file.load_weights(truncated), "OPTIM_ERROR_IO",
             "truncated", "truncated file")
expect_error(lambda: opt_file.load_weights(truncated + ".missing"),
             "OPTIM_ERROR_IO", ".missing", "missing file")
adam_opt = optim_mlir.Optimizer(adam, [np.zeros(3, np.float32)])
expect_error(lambda: adam_opt.load_weights(weights_path),
             "OPTIM_ERROR_NOT_FOUND", "no learned weights", "adam")

wd = {k: v.astype(np.float64) for k, v in w.items()}
ref = start.copy()
state = [np.zeros((20, n)) for _ in range(4)]
rng = np.random.default_rng(3)
for t in range(5):
    # Magnitudes from 1e-7 (log_sign's small branch) to 10.
    g = (rng.standard_normal(n) * 10.0 ** rng.integers(-7, 2, n))
    g = g.astype(np.float32)
    ref = l2l_step(ref, g.astype(np.float64), state, wd)
    opt_mem.step([g])
    opt_file.step([g])
err = np.max(np.abs(p_mem - ref) / (np.abs(ref) + 1e-2))
# float32 kernels against a float64 reference, 5 steps.
check(err < 2e-5, "reference: worst relative error %.3g" % err)
check(np.array_equal(p_mem, p_file), "memory and file weights agree")
state_h2 = opt_mem.state(0, "h2")
check(state_h2.shape == (20, n) and
      np.max(np.abs(state_h2 - state[2])) < 2e-5, "state h2")

os.remove(truncated)
print("learned weights: worst relative error %.2g, %d failures"
      % (err, len(failures)))
sys.exit(1 if failures else 0)
