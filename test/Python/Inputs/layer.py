#!/usr/bin/env python3
"""QP layers from Python: optim_mlir.Layer (the C API's optim_layer_*).

- The simplex projection (sparsemax) layer against its closed form, forward
  (z within 1e-12) and backward (the Jacobian of sparsemax, dz/dy = I -
  1 1^T / k on the support, within 1e-10), batch 7, float64; float32 within
  1e-5.
- OptNet's learned layer (Q = L L^T + 0.1 I, equalities and inequalities,
  Inputs/layers/optnet.optim) against central differences of the layer's
  own forward pass in float64 (h = 1e-6; |backward - difference| <= 1e-6 *
  (|difference| + scale), scale the largest |difference| of that tensor),
  for every input and weights tensor.
- Threads 1 and 2 give the same bits.
- Wrong calls raise: unknown names (KeyError), wrong shapes (ValueError),
  an infeasible problem (OptimError, or a status with statuses=True),
  backward() after set_threads, a program that does not compile (the
  diagnostics located), a flag the layer does not take.

With --wrong (a check that the comparison can fail), the reference of the
OptNet gradients is the difference of z's first coordinate only.

Usage: layer.py LIBOPTIM LAYERS_DIR [--wrong]"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

library, layers = sys.argv[1:3]
WRONG = "--wrong" in sys.argv[3:]
optim_mlir.load(library)
failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print("FAILED:", what)


def sparsemax(y):
    s = np.sort(y)[::-1]
    c = np.cumsum(s)
    k = np.arange(1, y.size + 1)
    kk = k[1 + k * s > c].max()
    tau = (c[kk - 1] - 1) / kk
    return np.maximum(y - tau, 0)


# --- sparsemax: closed form --------------------------------------------------
rng = np.random.default_rng(7)
for f64, tol in ((True, 1e-10), (False, 1e-5)):
    layer = optim_mlir.compile_layer_file(os.path.join(layers, "simplex.optim"),
                                          f64=f64)
    assert layer.inputs == {"y": (10,)} and layer.weights == {}
    y = 1.5 * rng.standard_normal((7, 10))
    out = layer.forward({"y": y})
    dtype = np.float64 if f64 else np.float32
    yr = y.astype(dtype).astype(np.float64)
    want = np.array([sparsemax(r) for r in yr])
    err = np.max(np.abs(out["z"] - want))
    check(err <= tol, "sparsemax %s z: %.3g" % (layer.dtype, err))
    dz = rng.standard_normal((7, 10))
    dins, dws = layer.backward({"z": dz})
    ref = np.zeros_like(dz)
    for e in range(7):
        sup = want[e] > 0
        g = dz[e].astype(dtype).astype(np.float64)
        ref[e, sup] = g[sup] - g[sup].mean()
    err = np.max(np.abs(dins["y"] - ref))
    check(err <= tol * 10, "sparsemax %s dy: %.3g" % (layer.dtype, err))
    print("sparsemax %s: z within %.1e, dy within %.1e" % (
        layer.dtype, np.max(np.abs(out["z"] - want)), err))

# --- OptNet: central differences ---------------------------------------------
layer = optim_mlir.compile_layer_file(os.path.join(layers, "optnet.optim"),
                                      f64=True)
N = rng.standard_normal
B = 3
x = 2 * N((B, 5))
w = {"L": N((5, 5)) / 2, "A": N((2, 5)), "G": N((4, 5)), "z0": N(5),
     "s0": 0.5 * N(4) - 1}
douts = {"z": N((B, 5)), "nu": N((B, 2)), "lam": N((B, 4))}


def loss(xv, wv):
    out = layer.forward({"x": xv}, wv)
    if WRONG:
        return float(np.sum(out["z"][:, 0]))
    return float(sum(np.sum(douts[k] * out[k]) for k in douts))


layer.forward({"x": x}, w)
dins, dws = layer.backward(douts)
h = 1e-6
worst = 0.0
for name, value, grad in [("x", x, dins["x"])] + [
        (k, w[k], dws[k]) for k in w]:
    diff = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        keep = value[idx]
        value[idx] = keep + h
        up = loss(x, w)
        value[idx] = keep - h
        down = loss(x, w)
        value[idx] = keep
        diff[idx] = (up - down) / (2 * h)
    scale = np.max(np.abs(diff))
    bound = 1e-6 * (np.abs(diff) + scale)
    ratio = np.max(np.abs(grad - diff) / bound)
    worst = max(worst, ratio)
    check(ratio <= 1, "optnet d%s: %.3g of the tolerance" % (name, ratio))
print("optnet: worst %.2g of the tolerance" % worst)

# --- threads ---------------------------------------------------------------
layer.set_threads(1)
one = layer.forward({"x": x}, w)
g1 = layer.backward(douts)
layer.set_threads(2)
two = layer.forward({"x": x}, w)
g2 = layer.backward(douts)
same = all(np.array_equal(one[k], two[k]) for k in one) and all(
    np.array_equal(g1[i][k], g2[i][k]) for i in range(2) for k in g1[i])
check(same, "threads 1 and 2 differ")
print("optnet: threads 1 and 2 %s" % ("identical" if same else "differ"))


# --- wrong calls ------------------------------------------------------------
def raises(kind, needle, fn, what):
    try:
        fn()
    except kind as e:
        check(needle in str(e), "%s: message %r lacks %r" % (what, str(e),
                                                             needle))
        return
    except Exception as e:  # noqa: BLE001
        check(False, "%s: raised %s: %s" % (what, type(e).__name__, e))
        return
    check(False, "%s: no error" % what)


raises(KeyError, "layer optnet has no inputs 'y'",
       lambda: layer.forward({"y": x}, w), "unknown input")
raises(ValueError, "must have shape (B,) + (5,) with a leading batch dimension B, got (3, 4)",
       lambda: layer.forward({"x": x[:, :4]}, w), "input shape")
raises(ValueError, "must have shape (5, 5), got (4, 4)",
       lambda: layer.forward({"x": x}, dict(w, L=w["L"][:4, :4])),
       "weights shape")
raises(ValueError, "layer optnet needs 'G'",
       lambda: layer.forward({"x": x}, {k: v for k, v in w.items()
                                        if k != "G"}), "missing weights")
layer.forward({"x": x}, w)
layer.set_threads(1)
raises(optim_mlir.OptimError, "setThreads() dropped the last forward()",
       lambda: layer.backward(douts), "backward after set_threads")
simplex = optim_mlir.compile_layer_file(os.path.join(layers, "general.optim"),
                                        f64=True)
bad = {"Q": np.eye(3), "A": np.zeros((1, 3)), "G": np.zeros((4, 3))}
ins = {"q": np.ones((2, 3)), "b": np.ones((2, 1)), "h": np.ones((2, 4))}
raises(optim_mlir.OptimError, "problem 0 of the batch is primal infeasible",
       lambda: simplex.forward(ins, bad), "infeasible")
out, st = simplex.forward(ins, bad, statuses=True)
check(st == ["primal infeasible"] * 2, "statuses %s" % st)
raises(optim_mlir.OptimError, "whose problems were all solved",
       lambda: simplex.backward({"z": np.ones((2, 3))}),
       "backward after an unsolved forward")
raises(optim_mlir.OptimError, "bad.optim:3:14: error: a layer solves one qp",
       lambda: optim_mlir.compile_layer_source(
           "layer t(n = 2) {\n  let z = qp(Q: eye(n), q: ones(n))\n"
           "  output y = qp(Q: eye(n), q: z)\n}\n", name="bad.optim"),
       "two qps")
raises(optim_mlir.OptimError, "has no layer named 'nope' (it has: simplex)",
       lambda: optim_mlir.compile_layer_file(
           os.path.join(layers, "simplex.optim"), layer="nope"),
       "unknown layer")

# Slopes taken as 0 where sqrt, cbrt and atan2 have none (at 0, at the
# origin), as in rules: they were NaN and -inf (found by a blind tester).
zero = optim_mlir.compile_layer_source(
    "layer zs(n = 2) {\n  weights w[n]\n  input x[n]\n"
    "  output z = qp(Q: eye(n), q: atan2(x, w) + cbrt(x) + sqrt(w * w) + "
    "cbrt(w))\n}\n", f64=True)
zero.forward({"x": np.array([[0.0, 1.0]])}, {"w": np.array([0.0, -2.0])})
zi, zw = zero.backward({"z": np.ones((1, 2))})
# Element 1 by hand: d/dx [atan2(x, w) + cbrt(x)] = w / r2 + 1 / (3 x^(2/3))
# at (1, -2); d/dw [atan2 + |w| + cbrt(w)] = -x / r2 - 1 + 1 / (3 4^(1/3)).
# z = -q, so the gradients of sum z are minus those.
want_x = -np.array([0.0, -2.0 / 5 + 1.0 / 3])
want_w = -np.array([0.0, -1.0 / 5 - 1 + 1 / (3 * 4 ** (1 / 3))])
check(np.allclose(zi["x"][0], want_x, rtol=1e-12, atol=0)
      and zi["x"][0][0] == 0, "slopes at 0: dx %s, want %s" % (zi["x"][0],
                                                              want_x))
check(np.allclose(zw["w"], want_w, rtol=1e-12, atol=0) and zw["w"][0] == 0,
      "slopes at 0: dw %s, want %s" % (zw["w"], want_w))

# Arguments numpy would convert into something else.
raises(TypeError, "must be an array of real numbers, got dtype complex128",
       lambda: layer.forward({"x": x + 1j}, w), "complex input")
raises(TypeError, "got dtype object",
       lambda: layer.forward({"x": [[None] * 5] * 3}, w), "None input")
raises(ValueError, "with a leading batch dimension B, got (5,)",
       lambda: layer.forward({"x": x[0]}, w), "input without the batch")
raises(TypeError, "batch must be an int, got True",
       lambda: layer.forward({"x": x}, w, batch=True), "bool batch")
raises(TypeError, "statuses must be True or False",
       lambda: layer.forward({"x": x}, w, statuses="yes"), "statuses")
raises(TypeError, "f64 must be True or False",
       lambda: optim_mlir.compile_layer_file(
           os.path.join(layers, "simplex.optim"), f64="x"), "f64")

print("layer: %d checks, %d failures" % (checks, len(failures)))
sys.exit(1 if failures else 0)
