#!/usr/bin/env python3
"""Row and column states through python/optim_mlir.py (kernel ABI 10): the
Optimizer passes each array's shape, Rule.state_axes / reduction_axes, the
shapes of state(), a factored rule (Adafactor's, as in the contract) against
numpy over several steps, and a checkpoint refused for another shape.

Usage: axes.py LIBOPTIM"""

import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

optim_mlir.load(sys.argv[1])
failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAILED:", what, file=sys.stderr)


SOURCE = """
rule adafactor(lr = 1e-2, beta2 = 0.9, eps1 = 1e-30, d = 1.0) {
  row state r = 0
  col state c = 0
  state m = 0
  let g2 = g * g + eps1
  r = beta2 * r + (1 - beta2) * row_mean(g2)
  c = beta2 * c + (1 - beta2) * col_mean(g2)
  m = beta2 * m + g
  let v = r * c / tensor_mean(r)
  let u = g / sqrt(v)
  p -= lr * u / max(1, sqrt(tensor_mean(u * u)) / d) + 1e-3 * m
}
"""

rule = optim_mlir.compile_source(SOURCE, f64=True, name="adafactor.optim")
check(rule.state_axes == ["row", "col", "none"], "state_axes %r"
      % rule.state_axes)
check(rule.reduction_axes[:2] == ["row", "col"]
      and set(rule.reduction_axes[2:]) == {"none"},
      "reduction_axes %r" % rule.reduction_axes)

rng = np.random.default_rng(7)
shapes = [(4, 6), (2, 3, 5), (7,), (1, 9), (5, 1)]
params = [rng.standard_normal(s) for s in shapes]
ref = [p.copy() for p in params]
opt = optim_mlir.Optimizer(rule, params, threads=2)


def view(shape):
    c = shape[-1]
    r = shape[-2] if len(shape) >= 2 else 1
    return (-1, r, c)


ref_r = [np.zeros((int(np.prod(s[:-1])),)) for s in shapes]
ref_c = [np.zeros((int(np.prod(s[:-2])) * s[-1],)) for s in shapes]
ref_m = [np.zeros(s) for s in shapes]
lr, beta2, eps1, d = 1e-2, 0.9, 1e-30, 1.0
for step in range(6):
    grads = [rng.standard_normal(s) for s in shapes]
    opt.step(grads)
    for k, g in enumerate(grads):
        gv = g.reshape(view(g.shape))
        g2 = gv * gv + eps1
        ref_r[k] = beta2 * ref_r[k] + (1 - beta2) * g2.mean(axis=2).ravel()
        ref_c[k] = beta2 * ref_c[k] + (1 - beta2) * g2.mean(axis=1).ravel()
        ref_m[k] = beta2 * ref_m[k] + g
        rr = ref_r[k].reshape(gv.shape[0], gv.shape[1], 1)
        cc = ref_c[k].reshape(gv.shape[0], 1, gv.shape[2])
        v = rr * cc / ref_r[k].mean()
        u = gv / np.sqrt(v)
        scale = max(1.0, np.sqrt(np.mean(u * u)) / d)
        ref[k] -= (lr * u / scale).reshape(g.shape) + 1e-3 * ref_m[k]
for k, s in enumerate(shapes):
    check(np.allclose(params[k], ref[k], rtol=1e-10, atol=0),
          "parameter %d %r: max error %g" % (
              k, s, np.abs(params[k] - ref[k]).max()))
    r, c = opt.state(k, "r"), opt.state(k, "c")
    want_r = s[:-1] if len(s) >= 2 else (1,)
    want_c = s[:-2] + s[-1:]
    check(r.shape == want_r and c.shape == want_c,
          "state shapes of %r: %r %r" % (s, r.shape, c.shape))
    check(np.allclose(r.ravel(), ref_r[k], rtol=1e-12, atol=0)
          and np.allclose(c.ravel(), ref_c[k], rtol=1e-12, atol=0),
          "row and column states of %r: max relative error %g %g" % (
              s, np.max(np.abs(r.ravel() / ref_r[k] - 1)),
              np.max(np.abs(c.ravel() / ref_c[k] - 1))))
    check(opt.state(k, "m").shape == s, "state m of %r" % (s,))

# A checkpoint of [4, 6] does not load into [6, 4]: the row state differs.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "ckpt.safetensors")
    opt.save(path)
    other = [p.copy() for p in params]
    other[0] = other[0].reshape(6, 4)
    twin = optim_mlir.Optimizer(rule, other)
    before = twin.state(0, "r").copy()
    try:
        twin.load(path)
        check(False, "loaded a checkpoint of another shape")
    except optim_mlir.OptimError as e:
        check(e.status_name == "OPTIM_ERROR_IO"
              and "row state 'r' of parameter 0 holds 4 values, this "
                  "optimizer has 6" in e.message, "refusal: %r" % e)
    check(np.array_equal(twin.state(0, "r"), before)
          and twin.step_count == 0, "the refused load changed nothing")
    same = optim_mlir.Optimizer(rule, [p.copy() for p in params])
    same.load(path)
    check(same.step_count == 6 and np.array_equal(same.state(1, "c"),
                                                  opt.state(1, "c")),
          "a checkpoint of the same shapes loads")

# Every array's shape goes to the C API, whatever the rule: a rule without
# axes takes arrays of any rank numpy allows (64 dimensions), as it did
# before shapes existed.
plain = optim_mlir.compile_source(
    "rule sgd(lr = 0.5) { p -= lr * g }", f64=True, name="sgd.optim")
deep = np.ones((2,) + (1,) * 62 + (3,))
sgd = optim_mlir.Optimizer(plain, [deep])
sgd.step([np.ones_like(deep)])
check(deep.ndim == 64 and np.all(deep == 0.5), "a 64-d array with sgd")

print("axes: %d checks, %d failures" % (checks, len(failures)))
sys.exit(1 if failures else 0)
