#!/usr/bin/env python3
"""examples/muon.optim against a numpy transcription of the algorithm
torch.optim.Muon implements (PyTorch 2.9+, torch/optim/_muon.py,
_single_tensor_muon with adjust_lr_fn "original"):

    buf.lerp_(g, 1 - momentum)
    update = g.lerp(buf, momentum) if nesterov else buf
    update = _zeropower_via_newtonschulz(update, (a, b, c), steps, eps)
    p.mul_(1 - lr * weight_decay)
    p.add_(update, alpha=-lr * sqrt(max(1, A / B)))     # A, B = p.shape

with _zeropower_via_newtonschulz: X transposed if A > B, X / max(|X|_F,
eps), then `steps` times G = X X^T, X = a X + (b G + c G G) X, transposed
back. torch runs the iteration in bfloat16; this reference runs it in
float64 (as the example does in its element type: the example's comment).
torch refuses anything but 2-D parameters; a vector here is one row (1 x n)
and an empty (0, 4) parameter is left alone, as the example's runtime does.

Usage: muon_torch_ref.py LIBOPTIM EXAMPLE

60 steps in float64 and float32 on (1, 1), (3, 5), (70, 30) (more rows than
columns: the transposed path), (5,) and (0, 4), with nesterov on and off
(opt.set("nesterov", 0)), 1 and 2 threads the same bits. Checked: the
parameters and the momentum buffer, |ours - reference| <= tol * (the
reference tensor's largest magnitude), against the float64 reference:

- f64: 1e-12. The only differences are the order of the sums in the
  matrix products (BLAS or the runtime's loops against numpy's) and in the
  Frobenius norm: a few ulps per step, which the iteration may amplify by
  its slope at 0 (a = 3.4445 per step, 3.4445^5 ~ 490 over five) in the
  directions of small singular values.
- f32: 2e-5. The float32 kernel rounds the momentum, the iteration's
  products (each about sqrt(n) ulps of float32 = 6e-8) and the step; the
  same amplification can bring an entry of an update to 1e-5 relative, and
  the parameters move lr sqrt(max(1, A/B)) times that per step (measured
  below: 1.2e-6).

A reference whose momentum lerp takes the weight `momentum` instead of
`1 - momentum`, and one whose step scale is sqrt(max(1, B / A)) (rows and
columns swapped), must both be rejected (outside the tolerance).

Measured (x86-64, numpy 2.4, the runtime with OpenBLAS): 2.7e-16 in
float64, 1.2e-6 in float32; the perturbed references 0.16 to 0.97 off. This
reference and torch's own algorithm (torch 2.15, _single_tensor_muon with
the bfloat16 cast taken out, float64) agreed to 5e-16 over 60 steps."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

SHAPES = [(1, 1), (3, 5), (70, 30), (5,), (0, 4)]
STEPS = 60
# Away from the defaults (lr 1e-3, weight decay 0.1): a larger step makes
# the parameters depend on the update more than on the decay.
HYPERS = {"lr": 0.02, "weight_decay": 0.05, "momentum": 0.95}
NS = (5, (3.4445, -4.7750, 2.0315), 1e-7)
TOL = {"f64": 1e-12, "f32": 2e-5}


def lerp(start, end, weight):
    # torch's lerp (aten/src/ATen/native/Lerp.h): exact at both ends.
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


def newton_schulz(x, steps, coefficients, eps):
    """torch.optim._muon._zeropower_via_newtonschulz on one matrix, in
    float64."""
    a, b, c = coefficients
    y = x.astype(np.float64, copy=True)
    tall = y.shape[0] > y.shape[1]
    if tall:
        y = y.T
    y = y / max(np.linalg.norm(y), eps)
    for _ in range(steps):
        gram = y @ y.T
        update = b * gram + c * (gram @ gram)
        y = a * y + update @ y
    return y.T if tall else y


class Reference:
    def __init__(self, params, nesterov, wrong=None):
        self.p = [a.astype(np.float64) for a in params]
        self.buf = [np.zeros(a.shape) for a in params]
        self.nesterov = nesterov
        self.wrong = wrong

    def step(self, grads, lr, weight_decay, momentum):
        for i, g in enumerate(grads):
            if g.size == 0:
                continue
            g = g.astype(np.float64)
            shape = g.shape if g.ndim == 2 else (1, g.size)
            g2 = g.reshape(shape)
            buf = self.buf[i].reshape(shape)
            w = momentum if self.wrong == "momentum-weight" else 1 - momentum
            buf = lerp(buf, g2, w)
            self.buf[i] = buf.reshape(g.shape)
            update = lerp(g2, buf, momentum) if self.nesterov else buf
            o = newton_schulz(update, *NS)
            rows, cols = shape
            if self.wrong == "swapped":
                rows, cols = cols, rows
            adjusted = lr * np.sqrt(max(1, rows / cols))
            p = self.p[i].reshape(shape) * (1 - lr * weight_decay)
            self.p[i] = (p + -adjusted * o).reshape(g.shape)


def run(rule, threads, nesterov, params0, grads):
    params = [a.copy() for a in params0]
    opt = optim_mlir.Optimizer(rule, params, threads=threads)
    for k, v in HYPERS.items():
        opt.set(k, v)
    opt.set("nesterov", 1.0 if nesterov else 0.0)
    for k in range(STEPS):
        opt.step(grads[k])
    return params, opt


def worst_error(got, opt, ref):
    worst = 0.0
    for i, (a, b) in enumerate(zip(got, ref.p)):
        if b.size == 0:
            continue
        for x, y in ((a, b), (np.asarray(opt.state(i, "buf")), ref.buf[i])):
            scale = max(np.abs(y).max(), 1e-300)
            worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()
                                     / scale))
    return worst


def main():
    optim_mlir.load(sys.argv[1])
    example = sys.argv[2]
    failures = 0
    rng = np.random.default_rng(20261128)
    params0 = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) * (1 + k % 3) for s in SHAPES]
             for k in range(STEPS)]
    for name, dtype in (("f64", np.float64), ("f32", np.float32)):
        rule = optim_mlir.compile_file(example, f64=(dtype == np.float64))
        p0 = [a.astype(dtype) for a in params0]
        gs = [[g.astype(dtype) for g in step] for step in grads]
        for nesterov in (True, False):
            label = "%s nesterov %s" % (name, "on" if nesterov else "off")
            got, opt = run(rule, 2, nesterov, p0, gs)
            got1, _ = run(rule, 1, nesterov, p0, gs)
            same = all(np.array_equal(a, b) for a, b in zip(got, got1))
            print("%s: threads 1 vs 2: %s" % (label, "same bits" if same
                                               else "DIFFERENT"))
            failures += not same
            empty = SHAPES.index((0, 4))
            if got[empty].size != 0:
                print("%s: the empty parameter changed size" % label)
                failures += 1
            # The reference starts from the parameters and gradients the
            # kernel saw (rounded to the dtype).
            for wrong in (None, "momentum-weight", "swapped"):
                ref = Reference(p0, nesterov, wrong)
                for k in range(STEPS):
                    ref.step(gs[k], **HYPERS)
                worst = worst_error(got, opt, ref)
                ok = worst <= TOL[name]
                if wrong:
                    print("%s: perturbed reference (%s): %s (max rel diff "
                          "%.1e)" % (label, wrong, "rejected" if not ok
                                     else "ACCEPTED", worst))
                    failures += ok
                else:
                    print("%s: %d steps, %d parameters: %s (max rel diff "
                          "%.1e, tolerance %.0e)"
                          % (label, STEPS, len(SHAPES),
                             "PASS" if ok else "FAIL", worst, TOL[name]))
                    failures += not ok
    print("muon example: %d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
