#!/usr/bin/env python3
"""examples/adafactor.optim against a numpy transcription of the algorithm
torch.optim.Adafactor documents (PyTorch 2.5+, torch/optim/_adafactor.py:
row and column variances of the last two dimensions, lerp with weight
t ** beta2_decay, the outer product divided by the mean of the row
variances clamped at eps1, rsqrt clamped at eps1**2, the relative step
min(lr, 1/sqrt(t)) * max(eps2, RMS(p)) and the update clipped to RMS d;
1-D parameters keep an unfactored variance).

Usage: adafactor_torch_ref.py LIBOPTIM EXAMPLE

100 steps in float32 and float64 on matrices, a batch of matrices is NOT
used (torch factors each matrix with its own mean; the example's
tensor_mean(r) averages over the whole tensor: docs/language.md), vectors
and a 1 x 1 parameter; with 2 threads and 1 (same bits). A reference with
the variances' lerp weight 1 - t ** beta2_decay (a plausible misreading of
beta2) must be rejected. The bench (bench/rules/adafactor_torch.py)
compares with torch itself, which CI does not install."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

SHAPES = [(33, 17), (5, 300), (1, 9), (64,), (3,), (1,), (1, 1), (40, 2)]
STEPS = 100


def lerp(a, b, w):
    # torch's CPU lerp: exact at both ends.
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w)


class Reference:
    def __init__(self, params, dtype, eps1, wrong_weight=False):
        self.p = [a.astype(np.float64) for a in params]
        self.dtype = dtype
        self.eps1 = eps1
        self.wrong = wrong_weight
        self.row = [np.zeros(a.shape[:-1]) if a.ndim > 1 else None
                    for a in params]
        self.col = [np.zeros(a.shape[:-2] + a.shape[-1:]) if a.ndim > 1
                    else None for a in params]
        self.var = [np.zeros(a.shape) if a.ndim == 1 else None
                    for a in params]

    def step(self, t, grads, lr=1e-2, beta2_decay=-0.8, eps2=1e-3, d=1.0):
        w = t ** beta2_decay
        if self.wrong:
            w = 1 - w
        rho = min(lr, 1 / np.sqrt(t))
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            p = self.p[i]
            alpha = max(eps2, np.sqrt(np.mean(p * p))) * rho
            if p.ndim > 1:
                self.row[i] = lerp(self.row[i], np.mean(g * g, axis=-1), w)
                self.col[i] = lerp(self.col[i], np.mean(g * g, axis=-2), w)
                v = self.row[i][..., :, None] * self.col[i][..., None, :]
                v = v / max(np.mean(self.row[i]), self.eps1)
            else:
                self.var[i] = lerp(self.var[i], g * g, w)
                v = self.var[i].copy()
            u = g / np.sqrt(np.maximum(v, self.eps1 * self.eps1))
            denom = max(1.0, np.sqrt(np.mean(u * u)) / d)
            self.p[i] = p - alpha / denom * u


def run(library_rule, dtype, threads, params0, grads):
    params = [a.copy() for a in params0]
    opt = optim_mlir.Optimizer(library_rule, params, threads=threads)
    opt.set("eps1", float(np.finfo(dtype).eps))
    for k in range(STEPS):
        opt.step(grads[k])
    return params, opt


def main():
    optim_mlir.load(sys.argv[1])
    example = sys.argv[2]
    failures = 0
    for dtype, tol in ((np.float32, 2e-5), (np.float64, 1e-12)):
        name = "f32" if dtype == np.float32 else "f64"
        rng = np.random.default_rng(11)
        params0 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        grads = [[(rng.standard_normal(s) * (1 + k % 3)).astype(dtype)
                  for s in SHAPES] for k in range(STEPS)]
        rule = optim_mlir.compile_file(example, f64=(dtype == np.float64))
        got, opt = run(rule, dtype, 2, params0, grads)
        got1, _ = run(rule, dtype, 1, params0, grads)
        same = all(np.array_equal(a, b) for a, b in zip(got, got1))
        print("%s threads 1 vs 2: %s" % (name, "same bits" if same
                                         else "DIFFERENT"))
        failures += not same
        eps1 = float(np.finfo(dtype).eps)
        for wrong in (False, True):
            ref = Reference(params0, dtype, eps1, wrong_weight=wrong)
            for k in range(STEPS):
                ref.step(k + 1, grads[k])
            worst = 0.0
            for a, b in zip(got, ref.p):
                scale = max(np.abs(b).max(), 1e-300)
                worst = max(worst, float(np.abs(a - b).max() / scale))
            for i, s in enumerate(SHAPES):
                if len(s) > 1:
                    for st, refst in (("r", ref.row[i]), ("c", ref.col[i])):
                        a = np.asarray(opt.state(i, st)).reshape(-1)
                        b = refst.reshape(-1)
                        scale = max(np.abs(b).max(), 1e-300)
                        worst = max(worst,
                                    float(np.abs(a - b).max() / scale))
            ok = worst <= tol
            if wrong:
                print("%s perturbed reference (lerp weight 1 - t^decay): %s "
                      "(max rel diff %.1e)" % (name, "rejected" if not ok
                                               else "ACCEPTED", worst))
                failures += ok
            else:
                print("%s %d steps, %d parameters: %s (max rel diff %.1e, "
                      "tolerance %.0e)" % (name, STEPS, len(SHAPES),
                                           "PASS" if ok else "FAIL", worst,
                                           tol))
                failures += not ok
    print("adafactor example: %d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
