#!/usr/bin/env python3
"""Oracle test: rules with row and column states and reductions against numpy.

A rule may keep a state per row or per column of a parameter (`row state r`,
`col state c`) and reduce a value along each row or column (row_sum(x),
col_mean(x), ...; KernelABI.h version 10, "Axes"). The runtime sees each
parameter as B matrices of R rows and C columns (C its last dimension, R the
one before, 1 for a vector, B the product of the others; a parameter given
without a shape is one row). This file runs seven such rules through the C API
(optim_optimizer_create_shaped, for chunk sizes and a parameter without a
shape) and the Python binding (python/optim_mlir.py, which passes each numpy
array's shape) on liboptim.so, and compares them with numpy references
written from the papers and the authors' code with reshapes to [B, R, C] and
reductions along axis -1 (rows) and -2 (columns), not from the .optim text:

- adafactor_factored (test/Run/Inputs/literature.optim): Shazeer & Stern
  (2018) as transformers.Adafactor (scale_parameter=False,
  relative_step=False, warmup_init=False, beta1=None). Also compared, on its
  2-D parameters in float64, with a transcription of HF's step itself
  (_approx_sq_grad: rsqrt(row / row.mean(-1)) times rsqrt(col), _rms,
  clamp_(min=1.0), the weight decay's p.add_(p, alpha=-wd lr)).
- sm3 (literature.optim): SM3-II (Anil et al., 2019) with row and column
  covers; the update 0 where nu = 0, as the authors' code.
- came (literature.optim): CAME (Luo et al., 2023), Algorithm 1 as the
  authors' came_pytorch code.
- adam_mini_rows (literature.optim): Adam-mini (Zhang et al., 2024) with one
  second moment per row.
- nero (literature.optim): Nero (Liu et al., 2021), Algorithm 1 per row as
  the authors' nero.py (projection at the first step, update normalized per
  row, rows re-centred and re-normalized: levels 0 to 3).
- adafactor (examples/adafactor.optim): torch.optim.Adafactor (PyTorch >=
  2.5): relative step, torch's lerp, V = R C / max(mean(R), eps1),
  rsqrt(max(V, eps1^2)), update clipping. The example departs from torch in
  two ways, which the reference models (ref_torch_adafactor): a vector is
  one row, so V = R C / max(R, eps1) is torch's per-coordinate V only while
  R >= eps1, and a stack of matrices shares one mean(R). A "#" line gives
  the worst error against torch's exact algorithm (not checked).
- axes (below): every row and column reduction (sum, mean, norm, max, min),
  column states read before their assignment, a row reduction of a value
  using a tensor reduction (level 1), a row reduction of a column state and
  a column reduction of a row state (across axes), a tensor reduction of a
  row state after its assignment (level 2).

Parameters (shapes): (0,), (1,), (7,), (3, 5), (5, 3), (1, 1), (2, 3, 4),
(0, 5), (33, 1025), (3, 70001) and 12 coordinates registered without a
shape. The 7-vector's gradient is always 0 (Adafactor's eps1 alone, SM3's
nu = 0, Nero's 0 / 0), (5, 3)'s is 0 in row 0 and column 2, (3, 5)'s is the
same number everywhere (new each step: centred values exactly 0), one row of
(2, 3, 4) is 0; the others are normal times a scale 10^U(-5, 2) drawn once
per coordinate, about 10% exact zeros (nested_oracle.py's data). Parameters
start standard normal. All data is representable in float32.

Checks, for each rule in float32 and float64:

- Rule.state_axes, Rule.reduction_axes, Rule.reductions and
  Rule.reduction_levels are the expected ones.
- The kernel, 1 thread, at chunk sizes 32768 (the default: (33, 1025) in
  chunks of 31 whole rows, (3, 70001)'s rows cut into 3 parts), 1000 (rows
  of 1025 cut in two) and 7 (every row of more than 7 columns cut), against
  the reference in the same precision: the parameters and every state (a
  row state's B * R values, a column state's B * C, from
  optim_optimizer_state, whose count is checked), per tensor and quantity,
      |ours - reference| <= rtol * |reference| + atol,
      atol = A(P) * max|reference's values in that tensor and quantity|,
  rtol 1e-12 in float64 and 1e-5 (about 84 ulps) in float32 (the
  tolerances of rule_oracle.py and nested_oracle.py), A 16 ulps of float32
  (as theirs) and 1e-12 in float64 (theirs is 16 ulps: a row of 70001
  coordinates summed in another order moves its mean by ~sqrt(n) ulps of
  the terms, which centring leaves in the row's smallest values). The reference in
  float32 rounds every literal, hyperparameter and operation to float32; its
  reductions sum the (rounded) argument in float64 and round the result
  once, as the language defines them. What may differ: the order of the
  float64 sums (numpy's pairwise sums along an axis, the kernels' chunk
  partials; a tensor_mean of a row state sums each row's value C times in
  the kernel, R values here), which can change a rounded reduction by one
  ulp, the association of a few products (HF's rsqrt(a) rsqrt(c) g is
  g / (sqrt(a) sqrt(c)) in the rule and g / sqrt(a c) in the reference)
  and pow (libm's powf against the kernel's): each a few ulps per step, far
  below the tolerance over the steps run (measured below).
- The float32 kernel against the float64 reference: per tensor, at most
  DRIFT_ULPS (256) ulps of float32 times the reference's largest |value|.
- Two parameter groups (parameters 0-5 and 6-10, the second with other
  values of some hyperparameters, GROUP2) at chunk size 1000 against the
  reference with each parameter's group's values.
- The same bits with 3 threads (chunks 32768 and 1000, two groups) and 2
  (chunk 7) as with 1: every row's and column's partials are combined in chunk order.
  Between chunk sizes the float64 sums' order changes, so bits may differ:
  printed ("#"), not checked.
- The Python binding (Optimizer(rule, arrays): shapes from the arrays, the
  shapeless parameter as its 1-D array, which is the same single row) gives
  the bits of the C API's run at the default chunk size, and its
  Optimizer.state of a row (column) state has B * R (B * C) values.
- A run saved at half the steps and loaded into a new optimizer (2 threads,
  the same shapes) ends with the uninterrupted run's bits.
- The references can fail: each rule has perturbed references (a mean over
  the wrong axis or set of coordinates, column-major rows, a value read
  after its update where the rule reads it before, or before where after),
  and the kernel must be outside the tolerance of every one of them
  ("rejected", with the worst error in tolerances). --wrong makes each
  rule's first perturbed reference the reference: the lit test checks that
  such a run fails.

Measured (x86-64, numpy 2.4, 50 steps, 70-100 s on a loaded 2-core machine):
in float32 SM3, Nero, the example's Adafactor and the synthetic rule equal
the float32 reference bit for bit; adafactor_factored, CAME and Adam-mini
are within 0.11, 0.24 and 0.29 of the tolerance (their references associate
a few products otherwise), at every chunk size; in float64 everything is
within 0.0013 of the tolerance at chunk sizes 32768 and 1000 and 0.042 at
chunk size 7. The float32 kernels drift 3.4 to 14 ulps from the float64
references; HF's step agrees with the float64 kernel to 0.0014 of the
tolerance. The perturbed references are off by 1.5e4 to 3e6 tolerances in
float32, 3e10 to 2e13 in float64. The example against torch's exact
algorithm: 3.9e4 tolerances off in float32 (the (2, 3, 4) stack; the (1,)
vector, RMS gradient 3.5e-4 < sqrt(eps1), 5e3), bits equal elsewhere.

Prints one line per check, then "N passed, M failed"; exits 1 if any failed.

Usage: axis_oracle.py --library build/lib/liboptim.so
           --literature test/Run/Inputs/literature.optim
           --examples examples [--steps N]
           [--rule NAME] [--wrong]
"""

import argparse
import ctypes
import math
import os
import sys
import tempfile
import time
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "python"))
import optim_mlir  # noqa: E402

# The parameters: the shape given (None: registered without one) and the
# number of coordinates.
SHAPES = [(0,), (1,), (7,), (3, 5), (5, 3), (1, 1), (2, 3, 4), (0, 5),
          (33, 1025), (3, 70001), None]
NOSHAPE_SIZE = 12
SIZES = [NOSHAPE_SIZE if s is None else int(np.prod(s)) for s in SHAPES]
OFFSETS = np.cumsum([0] + SIZES)
BOUNDS = list(zip(OFFSETS[:-1], OFFSETS[1:]))
ZERO_TENSOR = SHAPES.index((7,))
HOLES_TENSOR = SHAPES.index((5, 3))
CONST_TENSOR = SHAPES.index((3, 5))
ROW_TENSOR = SHAPES.index((2, 3, 4))
STEPS = 50
SEED = 20261128
RTOL = {"f32": 1e-5, "f64": 1e-12}
# atol, relative to the largest |value| of the tensor's quantity: 16 ulps of
# float32; 1e-12 in float64 (about 4,500 ulps), where the order of float64
# sums of up to 70001 terms (rows of (3, 70001)) changes a row mean by up to
# ~sqrt(n) eps of the terms (chunk size 7 combines a row's 10001 parts in
# order: with 16 ulps, Adafactor's and the synthetic rule's parameters in
# (3, 70001) were 8.3 and 3.9 tolerances off numpy's pairwise sums, 0.04 and
# 0.02 of this one), and centring a row leaves that as an absolute error in
# its smallest values.
ATOL = {"f32": 16 * 2.0 ** -23, "f64": 1e-12}
DRIFT_ULPS = 256
DTYPES = {"f32": np.float32, "f64": np.float64}
DEFAULT_CHUNK = 32768
# (chunk size, thread counts): the first count's run is compared with the
# reference, the others must give its bits.
CONFIGS = ((DEFAULT_CHUNK, (1, 3)), (1000, (1, 3)), (7, (1, 2)))
RESUME_THREADS = 2
# Two parameter groups: parameters 0-5 with the case's hyperparameters,
# 6-10 with GROUP2's values in place of some (chunk size 1000, 1 and 3
# threads).
GROUP_SPLIT = 6
GROUP_CHUNK, GROUP_THREADS = 1000, (1, 3)
GROUP2 = {
    "adafactor_factored": {"lr": 0.01, "d": 0.8, "weight_decay": 0.05},
    "sm3": {"lr": 0.02},
    "came": {"lr": 2e-3, "beta1": 0.7, "d": 1.5},
    "adam_mini_rows": {"lr": 1e-3, "beta2": 0.95, "weight_decay": 0.0},
    "nero": {"lr": 0.05, "beta": 0.9},
    "adafactor": {"lr": 0.01, "eps2": 1e-3, "d": 0.9},
    "axes": {"lr": 0.01, "beta": 0.6, "k": 0.7},
}


def view_dims(shape, size):
    """[B, R, C] of a parameter (KernelABI.h, "Axes")."""
    if shape is None or len(shape) == 1:
        return 1, 1, size
    return int(np.prod(shape[:-2])), shape[-2], shape[-1]


DIMS = [view_dims(s, n) for s, n in zip(SHAPES, SIZES)]

# ---- The synthetic rule ------------------------------------------------------
# Every row and column reduction; c and e read (in cm) before the body
# assigns them: the previous step's values, level 0; a (a row state) from a
# row mean of |g - k tensor_mean(g)| (level 1; of a magnitude, so that
# float64 sums in another order agree to the tolerance: a mean of signed
# values cancels); b from the four other row reductions of g; c, e from the
# column ones; rc a row maximum of the new c
# (level 1), ta the tensor mean of the new a (level 2), ca a column minimum
# of it (level 2).
AXES = """
rule axes(lr = 0.01, beta = 0.9, k = 0.5) {
  row state a = 0, b = 0
  col state c = 0, e = 0
  state m = 0
  let cm = col_max(c * g + e)
  let gc = g - k * tensor_mean(g)
  a = beta * a + (1 - beta) * row_mean(abs(gc))
  b = row_sum(g) / (1 + row_norm(g)) + row_max(g) - row_min(g)
  c = beta * c + (1 - beta) * col_mean(g * g)
  e = col_sum(g) / (1 + col_norm(g)) + col_min(g) + k * cm
  let rc = row_max(c)
  let ta = tensor_mean(a)
  let ca = col_min(a)
  m = beta * m + gc
  p -= lr * (m / (1 + abs(ta)) + k * (a - b) * c / (1 + rc) + k * ca * e / (1 + abs(e)))
}
"""


# ---- Reductions as the language defines them -------------------------------
def reduce(kind, x, axis, dtype):
    """x (B, R, C) or (B, R) or (B, C), in the run's dtype, reduced along
    `axis` (None: all of it) in float64 (norm: the root of the float64 sum of
    squares; mean: the sum over the count), rounded once to dtype."""
    y = x.astype(np.float64)
    count = y.size if axis is None else y.shape[axis]
    if kind == "sum":
        v = np.sum(y, axis=axis)
    elif kind == "mean":
        v = np.sum(y, axis=axis) / count
    elif kind == "norm":
        v = np.sqrt(np.sum(y * y, axis=axis))
    elif kind == "max":
        v = np.max(y, axis=axis)
    else:
        v = np.min(y, axis=axis)
    return np.asarray(v).astype(dtype)


# ---- The references ----------------------------------------------------------
# step(h, t, P, G, S, memo, wrong) -> new P, for ONE non-empty tensor. P and
# G are the parameter and gradient viewed as [B, R, C] (numpy arrays of the
# run's dtype), S the states: a row state (B, R), a column state (B, C), a
# coordinate's state (B, R, C); updated in place in S. h holds the
# hyperparameters (scalars of the dtype), h.c rounds a literal to it,
# h.rows(kind, X) reduces X (B, R, C) along each row to (B, R), h.cols(kind,
# X) along each column to (B, C), h.all(kind, X) over all of X to a scalar.
# R(x) and C(x) broadcast a row (column) quantity to the coordinates. t is
# the 1-based step in the dtype; memo the reference's own memory; wrong the
# perturbation's name or None.

def R(x):
    return x[:, :, None]


def C(x):
    return x[:, None, :]


def ref_adafactor(h, t, P, G, S, memo, wrong):
    # Shazeer & Stern (2018), Algorithm 4 (factored second moment, Adafactor
    # for a matrix) with update clipping (section 6), no relative step, as
    # HF transformers.Adafactor: beta2t = 1 - t^(-0.8);
    # R = beta2t R + (1 - beta2t) mean_cols(G^2 + eps1),
    # C = beta2t C + (1 - beta2t) mean_rows(G^2 + eps1),
    # V = R C / mean(R), U = G / sqrt(V), U / max(1, RMS(U) / d);
    # X <- X - lr wd X - lr U (HF's weight decay on the X before the step).
    # mean(R): over all the tensor's rows (the rule's; HF's per matrix).
    beta2t = h.c(1) - t ** (-h.decay)
    sq = G * G + h.eps1
    r_old = S["r"]
    if wrong == "tensor-mean":
        # The row factor from the mean of the tensor instead of each row's.
        S["r"] = beta2t * S["r"] + (h.c(1) - beta2t) * np.broadcast_to(
            h.all("mean", sq), S["r"].shape)
    else:
        S["r"] = beta2t * S["r"] + (h.c(1) - beta2t) * h.rows("mean", sq)
    S["c"] = beta2t * S["c"] + (h.c(1) - beta2t) * h.cols("mean", sq)
    # stale-mean: mean(R) of R before this step's update.
    rmean = h.all("mean", r_old if wrong == "stale-mean" else S["r"])
    # U = G / sqrt(V) as HF's _approx_sq_grad: rsqrt(R / mean(R)) rsqrt(C)
    # G (V itself underflows in float32 where a row and a column of G are
    # 0: R / mean(R) ~ 1e-32 times C ~ eps1).
    U = G * (R(h.c(1) / np.sqrt(S["r"] / rmean))
             * C(h.c(1) / np.sqrt(S["c"])))
    rms = np.sqrt(h.all("mean", U * U))
    U = U / np.maximum(h.c(1), rms / h.d)
    return P - h.lr * h.weight_decay * P - h.lr * U


def lerp(start, end, weight):
    """torch's lerp: start + w (end - start) for w < 0.5, else end - (end -
    start) (1 - w) (exact at w = 1)."""
    one = start.dtype.type(1)
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (one - weight)


def ref_torch_adafactor(h, t, P, G, S, memo, wrong):
    # torch.optim.Adafactor (PyTorch >= 2.5, _single_tensor_adafactor), as
    # examples/adafactor.optim says it is: w = t^beta2_decay (1 - beta2_t),
    # rho = min(lr, 1 / sqrt(t)), alpha = max(eps2, RMS(X)) rho from the X
    # before the weight decay X (1 - lr wd); a matrix (dim > 1): R, C lerped
    # towards the row and column means of G^2 with weight w (torch's lerp),
    # V = R C / max(mean of each matrix's R, eps1); a vector: V lerped
    # towards G^2 per coordinate; U = G rsqrt(max(V, eps1^2)),
    # X -= alpha / max(1, RMS(U) / d) U.
    # The example departs from torch in two ways, modelled here unless
    # wrong == "torch" (printed, not checked, by run()): a vector is one row,
    # so its V = R C / max(R, eps1), which is torch's C only while R >= eps1
    # (an RMS gradient of at least sqrt(eps1)); and mean(R) is over all the
    # rows of a stack of matrices (B > 1), torch's over each matrix's.
    w = t ** h.beta2_decay
    rho = np.minimum(h.lr, h.c(1) / np.sqrt(t))
    alpha = np.maximum(h.eps2, np.sqrt(h.all("mean", P * P))) * rho
    P = P * (h.c(1) - h.lr * h.weight_decay)
    # The row state of a vector: not torch's (it keeps none); the rule's.
    S["r"] = lerp(S["r"], h.rows("mean", G * G), w)
    if wrong != "torch" or memo["ndim"] > 1:
        S["c"] = lerp(S["c"], h.cols("mean", G * G), w)
        if wrong == "torch":
            rmean = reduce("mean", S["r"], -1, h.c)[:, None, None]
        else:
            rmean = h.all("mean", S["r"])
        V = R(S["r"]) * C(S["c"]) / np.maximum(rmean, h.eps1)
    else:
        # One row: the column state is torch's per-coordinate variance.
        S["c"] = lerp(S["c"], (G * G)[:, 0, :], w)
        V = C(S["c"])
    if wrong == "rms-unclipped":
        U = h.c(1) / np.sqrt(np.maximum(V, h.eps1 * h.eps1)) * G
        return P - alpha * U
    U = h.c(1) / np.sqrt(np.maximum(V, h.eps1 * h.eps1)) * G
    denom = np.maximum(h.c(1), np.sqrt(h.all("mean", U * U)) / h.d)
    return P - alpha / denom * U


def ref_sm3(h, t, P, G, S, memo, wrong):
    # Anil et al. (2019), SM3-II with covers {rows} and {columns}:
    # nu'(i) = min over the covers S_r holding i of mu'(r), + g(i)^2;
    # w(i) -= eta g(i) / sqrt(nu'(i)) (0 where nu' = 0, the authors'
    # tf.where(nu > 0, rsqrt(nu), 0)); mu'(r) = max over S_r of nu'.
    if wrong == "row-cover-only":
        # The row covers' maxima alone, as if the columns were not covers.
        nu = R(S["r"]) + G * G
    else:
        combine = np.maximum if wrong == "max-of-covers" else np.minimum
        nu = combine(R(S["r"]), C(S["c"])) + G * G
    S["r"] = h.rows("max", nu)
    S["c"] = h.cols("max", nu)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(nu > 0, G / np.sqrt(nu), h.c(0))
    return P - h.lr * step


def ref_came(h, t, P, G, S, memo, wrong):
    # Luo et al. (2023), Algorithm 1, as came_pytorch/CAME.py: the factored
    # second moment of Adafactor (beta2, means, no bias correction), u_hat
    # = u / max(1, RMS(u) / d), m = beta1 m + (1 - beta1) u_hat,
    # res = (u_hat - m)^2 + eps2 (the new m), R_res, C_res its row and
    # column means averaged with beta3, S = R_res C_res / mean(R_res),
    # X <- X - lr wd X - lr m / sqrt(S).
    sq = G * G + h.eps1
    S["r"] = h.beta2 * S["r"] + (h.c(1) - h.beta2) * h.rows("mean", sq)
    S["c"] = h.beta2 * S["c"] + (h.c(1) - h.beta2) * h.cols("mean", sq)
    # As ref_adafactor: the code's _approx_sq_grad.
    U = G * (R(h.c(1) / np.sqrt(S["r"] / h.all("mean", S["r"])))
             * C(h.c(1) / np.sqrt(S["c"])))
    U = U / np.maximum(h.c(1), np.sqrt(h.all("mean", U * U)) / h.d)
    m_old = S["m"]
    S["m"] = h.beta1 * S["m"] + (h.c(1) - h.beta1) * U
    # stale-m: the instability from the momentum before its update.
    diff = U - (m_old if wrong == "stale-m" else S["m"])
    res = diff * diff + h.eps2
    S["rr"] = h.beta3 * S["rr"] + (h.c(1) - h.beta3) * h.rows("mean", res)
    S["cr"] = h.beta3 * S["cr"] + (h.c(1) - h.beta3) * h.cols("mean", res)
    approx = (R(h.c(1) / np.sqrt(S["rr"] / h.all("mean", S["rr"])))
              * C(h.c(1) / np.sqrt(S["cr"])))
    return P - h.lr * h.weight_decay * P - h.lr * (approx * S["m"])


def ref_adam_mini(h, t, P, G, S, memo, wrong):
    # Zhang et al. (2024), Adam-mini, Algorithm 1 with one block per row:
    # m = beta1 m + (1 - beta1) g per coordinate, v_b = beta2 v_b +
    # (1 - beta2) mean_{i in b}(g_i^2) per block, both bias-corrected,
    # X <- X - lr wd X - lr m_hat / (sqrt(v_hat) + eps).
    S["m"] = h.beta1 * S["m"] + (h.c(1) - h.beta1) * G
    if wrong == "tensor-mean":
        # One block per tensor: Adam-mini's partition for other parameters.
        block = np.broadcast_to(h.all("mean", G * G), S["v"].shape)
    else:
        block = h.rows("mean", G * G)
    S["v"] = h.beta2 * S["v"] + (h.c(1) - h.beta2) * block
    mhat = S["m"] / (h.c(1) - h.beta1 ** t)
    vhat = S["v"] / (h.c(1) - h.beta2 ** t)
    return P - h.lr * h.weight_decay * P - h.lr * mhat / (np.sqrt(R(vhat))
                                                          + h.eps)


def project(h, X):
    """Each row centred and normalized (a row of norm 0 stays centred)."""
    X = X - R(h.rows("mean", X))
    n = R(h.rows("norm", X))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, X / n, X)


def ref_nero(h, t, P, G, S, memo, wrong):
    # Liu et al. (2021), Nero, Algorithm 1 per neuron (row), as nero.py with
    # constraints: at the first step the weights are projected (state
    # initialization); v = beta v + (1 - beta) |g_row|^2,
    # g / sqrt(v / (1 - beta^t)) with NaN set to 0, w -= lr * that (scale 1:
    # the mean norm of projected rows), then rows re-centred and
    # re-normalized.
    if t == 1:
        P = project(h, P)
    gn = h.rows("norm", G)
    S["v"] = h.beta * S["v"] + (h.c(1) - h.beta) * gn * gn
    with np.errstate(divide="ignore", invalid="ignore"):
        step = G / np.sqrt(R(S["v"] / (h.c(1) - h.beta ** t)))
    step[np.isnan(step)] = 0
    Q = P - h.lr * step
    if wrong == "centre-before":
        # Centred by the row means of the weights before the update.
        Q = Q - R(h.rows("mean", P))
        n = R(h.rows("norm", Q))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, Q / n, Q)
    return project(h, Q)


def ref_axes(h, t, P, G, S, memo, wrong):
    # The synthetic rule AXES above, from its comment.
    c_read, e_read = S["c"], S["e"]
    gc = G - h.k * h.all("mean", G)
    S["a"] = h.beta * S["a"] + (h.c(1) - h.beta) * h.rows("mean", np.abs(gc))
    S["b"] = (h.rows("sum", G) / (h.c(1) + h.rows("norm", G))
              + h.rows("max", G) - h.rows("min", G))
    S["c"] = h.beta * S["c"] + (h.c(1) - h.beta) * h.cols("mean", G * G)
    if wrong == "c-after":
        # cm from the column states after their assignment.
        c_read = S["c"]
    cm = h.cols("max", C(c_read) * G + C(e_read))
    S["e"] = (h.cols("sum", G) / (h.c(1) + h.cols("norm", G))
              + h.cols("min", G) + h.k * cm)
    if wrong == "wrong-axis":
        # The maximum of c down each column (c itself) instead of along
        # each row.
        rc = C(h.cols("max", np.broadcast_to(C(S["c"]), G.shape)))
    else:
        rc = R(h.rows("max", np.broadcast_to(C(S["c"]), G.shape)))
    ta = h.all("mean", S["a"])
    ca = h.cols("min", np.broadcast_to(R(S["a"]), G.shape))
    S["m"] = h.beta * S["m"] + gc
    return P - h.lr * (S["m"] / (h.c(1) + np.abs(ta))
                       + h.k * (R(S["a"]) - R(S["b"])) * C(S["c"])
                       / (h.c(1) + rc)
                       + h.k * C(ca) * C(S["e"]) / (h.c(1) + np.abs(C(S["e"]))))


LIT, EX = "literature", "examples"
# name, source, reference, hyperparameters (away from the defaults), the
# states {name: (axis, init)} in declaration order, the reductions (kind,
# axis, level) in body order, the perturbations (the first for --wrong;
# "column-major" is the generic one: rows read down the columns).
# References printed as "#" lines, not checked: examples/adafactor.optim
# against torch's exact algorithm (see ref_torch_adafactor).
NOTES = {"adafactor": ["torch"]}
CASES = [
    ("adafactor_factored", LIT, ref_adafactor,
     {"lr": 0.02, "decay": 0.7, "eps1": 1e-30, "d": 1.2,
      "weight_decay": 0.01},
     [("r", "row", 0), ("c", "col", 0)],
     [("mean", "row", 0), ("mean", "col", 0), ("mean", "none", 1),
      ("mean", "none", 2)],
     ["tensor-mean", "stale-mean", "column-major"]),
    ("sm3", LIT, ref_sm3, {"lr": 0.05},
     [("r", "row", 0), ("c", "col", 0)],
     [("max", "row", 0), ("max", "col", 0)],
     ["max-of-covers", "row-cover-only", "column-major"]),
    ("came", LIT, ref_came,
     {"lr": 1e-3, "beta1": 0.85, "beta2": 0.99, "beta3": 0.995,
      "eps1": 1e-30, "eps2": 1e-16, "d": 1.0, "weight_decay": 0.02},
     [("r", "row", 0), ("c", "col", 0), ("m", "none", 0), ("rr", "row", 0),
      ("cr", "col", 0)],
     [("mean", "row", 0), ("mean", "col", 0), ("mean", "none", 1),
      ("mean", "none", 2), ("mean", "row", 3), ("mean", "col", 3),
      ("mean", "none", 4)],
     ["stale-m", "column-major"]),
    ("adam_mini_rows", LIT, ref_adam_mini,
     {"lr": 2e-3, "beta1": 0.85, "beta2": 0.99, "eps": 1e-6,
      "weight_decay": 0.01},
     [("m", "none", 0), ("v", "row", 0)],
     [("mean", "row", 0)],
     ["tensor-mean", "column-major"]),
    ("nero", LIT, ref_nero, {"lr": 0.02, "beta": 0.95},
     [("v", "row", 0)],
     [("mean", "row", 0), ("norm", "row", 1), ("norm", "row", 0),
      ("mean", "row", 2), ("norm", "row", 3)],
     ["centre-before", "column-major"]),
    ("adafactor", EX, ref_torch_adafactor,
     {"lr": 0.02, "beta2_decay": -0.7, "eps1": 1e-6, "eps2": 2e-3, "d": 1.3,
      "weight_decay": 0.01},
     [("r", "row", 0), ("c", "col", 0)],
     [("mean", "none", 0), ("mean", "row", 0), ("mean", "col", 0),
      ("mean", "none", 1), ("mean", "none", 2)],
     ["rms-unclipped", "column-major"]),
    ("axes", AXES, ref_axes, {"lr": 0.02, "beta": 0.8, "k": 0.3},
     [("a", "row", 0), ("b", "row", 0), ("c", "col", 0), ("e", "col", 0),
      ("m", "none", 0)],
     [("max", "col", 0), ("mean", "none", 0), ("mean", "row", 1),
      ("sum", "row", 0), ("norm", "row", 0), ("max", "row", 0),
      ("min", "row", 0), ("mean", "col", 0), ("sum", "col", 0),
      ("norm", "col", 0), ("min", "col", 0), ("max", "row", 1),
      ("mean", "none", 2), ("min", "col", 2)],
     ["c-after", "wrong-axis", "column-major"]),
]


def state_count(axis, dims):
    B, Rn, Cn = dims
    return {"row": B * Rn, "col": B * Cn, "none": B * Rn * Cn}[axis]


class Reference:
    """One run of a reference in one dtype over all the tensors, each kept as
    its [B, R, C] view (column-major for that perturbation)."""

    def __init__(self, case, dtype, p0, wrong=None, grouped=False):
        """grouped: tensors GROUP_SPLIT on take GROUP2[case]'s values."""
        self.fn, self.dtype, self.wrong = case[2], dtype, wrong
        self.colmajor = wrong == "column-major"

        def namespace(values):
            return types.SimpleNamespace(
                c=dtype,
                rows=lambda kind, x: reduce(kind, x, -1, dtype),
                cols=lambda kind, x: reduce(kind, x, -2, dtype),
                all=lambda kind, x: reduce(kind, x, None, dtype),
                **{k: dtype(v) for k, v in values.items()})
        first = namespace(case[3])
        second = namespace(dict(case[3], **GROUP2[case[0]]))
        self.hs = [second if grouped and i >= GROUP_SPLIT else first
                   for i in range(len(BOUNDS))]
        self.states = case[4]
        self.p, self.s = [], []
        for i, (lo, hi) in enumerate(BOUNDS):
            B, Rn, Cn = DIMS[i]
            self.p.append(self.view(p0[lo:hi].astype(dtype), i))
            s = {}
            for name, axis, init in self.states:
                shape = {"row": (B, Rn), "col": (B, Cn),
                         "none": (B, Rn, Cn)}[axis]
                s[name] = np.full(shape, init, dtype)
            self.s.append(s)
        # The dimensions the host gave (torch's Adafactor factors only
        # those of more than one).
        self.memo = [{"ndim": 1 if s is None else len(s)} for s in SHAPES]

    def view(self, flat, i):
        B, Rn, Cn = DIMS[i]
        if self.colmajor:
            return flat.reshape(B, Cn, Rn).transpose(0, 2, 1)
        return flat.reshape(B, Rn, Cn)

    def flat(self, x3):
        if self.colmajor:
            return np.ascontiguousarray(x3.transpose(0, 2, 1)).reshape(-1)
        return np.ascontiguousarray(x3).reshape(-1)

    def param(self, i):
        return self.flat(self.p[i])

    def state(self, i, name):
        x = self.s[i][name]
        return self.flat(x) if x.ndim == 3 else x.reshape(-1)

    def step(self, t, g):
        for i, (lo, hi) in enumerate(BOUNDS):
            if hi == lo:
                continue  # an empty tensor: nothing runs, states keep init
            G = self.view(g[lo:hi].astype(self.dtype), i)
            with np.errstate(divide="ignore", invalid="ignore",
                             over="ignore", under="ignore"):
                P = self.fn(self.hs[i], self.dtype(t), self.p[i], G, self.s[i],
                            self.memo[i], self.wrong)
            for name, a in [("p", P)] + list(self.s[i].items()):
                if a.dtype != self.dtype:
                    raise AssertionError("reference %s: %s became %s"
                                         % (self.fn.__name__, name, a.dtype))
            if P.shape != self.p[i].shape:
                raise AssertionError("reference %s: p became %s"
                                     % (self.fn.__name__, P.shape))
            self.p[i] = P


# ---- HF transformers.Adafactor's step, transcribed (float64, 2-D) ------------
def hf_adafactor_step(p, grad, state, lr, decay_rate, eps1, clip_threshold,
                      weight_decay):
    """Adafactor.step of transformers (beta1=None, scale_parameter=False,
    relative_step=False, warmup_init=False) for one 2-D parameter, with
    torch's operations written in numpy: returns the new p."""
    state["step"] += 1
    beta2t = 1.0 - math.pow(state["step"], decay_rate)
    update = grad ** 2 + eps1
    state["exp_avg_sq_row"] = (state["exp_avg_sq_row"] * beta2t
                               + update.mean(axis=-1) * (1.0 - beta2t))
    state["exp_avg_sq_col"] = (state["exp_avg_sq_col"] * beta2t
                               + update.mean(axis=-2) * (1.0 - beta2t))
    # _approx_sq_grad
    row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
    r_factor = (1.0 / np.sqrt(row / row.mean(axis=-1, keepdims=True)))[
        ..., None]
    c_factor = (1.0 / np.sqrt(col))[..., None, :]
    update = (r_factor * c_factor) * grad
    # _rms: tensor.norm(2) / (tensor.numel() ** 0.5)
    rms = np.linalg.norm(update) / (update.size ** 0.5)
    update = update / max(rms / clip_threshold, 1.0)
    update = update * lr
    if weight_decay != 0:
        p = p + p * (-weight_decay * lr)
    return p - update


# ---- Optimizers through the C API (shapes, chunk size) -----------------------
class Options(ctypes.Structure):
    # optim.h's optim_options.
    _fields_ = [("threads", ctypes.c_uint32), ("chunk_size", ctypes.c_int64),
                ("skip_non_finite", ctypes.c_int), ("seed", ctypes.c_uint64)]


class HyperValue(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_double)]


class Group(ctypes.Structure):
    _fields_ = [("params", ctypes.POINTER(ctypes.c_void_p)),
                ("sizes", ctypes.POINTER(ctypes.c_int64)),
                ("num_params", ctypes.c_size_t),
                ("hypers", ctypes.POINTER(HyperValue)),
                ("num_hypers", ctypes.c_size_t)]


class Shape(ctypes.Structure):
    _fields_ = [("dims", ctypes.POINTER(ctypes.c_int64)),
                ("rank", ctypes.c_size_t)]


def make_optimizer(lib, rule, params, threads, chunk, hypers, hypers2=None):
    """An optim_mlir.Optimizer over `params` created through
    optim_optimizer_create_shaped with SHAPES (None: rank 0, no shape),
    `threads`, `chunk` and the hyperparameters `hypers` (one group; with
    `hypers2`, two: parameters GROUP_SPLIT on with hypers2's values)."""
    v, P = ctypes.c_void_p, ctypes.POINTER
    init = lib.optim_options_init
    init.argtypes, init.restype = (P(Options),), ctypes.c_int
    create = lib.optim_optimizer_create_shaped
    create.argtypes = (v, ctypes.c_int, P(Group), ctypes.c_size_t, P(Shape),
                       P(Options), P(v))
    create.restype = ctypes.c_int
    lib.optim_last_error.restype = ctypes.c_char_p
    opts = Options()
    if init(ctypes.byref(opts)):
        raise AssertionError("optim_options_init failed")
    if opts.chunk_size != DEFAULT_CHUNK:
        raise AssertionError("the default chunk size is %d, not %d"
                             % (opts.chunk_size, DEFAULT_CHUNK))
    opts.threads, opts.chunk_size = threads, chunk
    ptrs = (v * len(params))(*[p.ctypes.data if p.size else None
                               for p in params])
    sizes = (ctypes.c_int64 * len(params))(*[p.size for p in params])
    spans = [(0, len(params), hypers)] if hypers2 is None else [
        (0, GROUP_SPLIT, hypers),
        (GROUP_SPLIT, len(params), dict(hypers, **hypers2))]
    groups = (Group * len(spans))()
    keep = []
    for k, (first, end, values) in enumerate(spans):
        hv = (HyperValue * len(values))(
            *[HyperValue(n.encode(), x) for n, x in values.items()])
        keep.append(hv)
        groups[k] = Group(
            ctypes.cast(ctypes.addressof(ptrs) + first * ctypes.sizeof(v),
                        P(v)),
            ctypes.cast(ctypes.addressof(sizes) + first * 8,
                        P(ctypes.c_int64)),
            end - first, ctypes.cast(hv, P(HyperValue)), len(values))
    shapes = (Shape * len(params))()
    for k, s in enumerate(SHAPES):
        if s is None:
            shapes[k] = Shape(None, 0)
        else:
            dims = (ctypes.c_int64 * len(s))(*s)
            keep.append(dims)
            shapes[k] = Shape(ctypes.cast(dims, P(ctypes.c_int64)), len(s))
    out = v()
    if create(rule._handle, 1 if rule.dtype == "f64" else 0, groups,
              len(spans), shapes, ctypes.byref(opts), ctypes.byref(out)):
        raise AssertionError("optim_optimizer_create_shaped: %s"
                             % lib.optim_last_error().decode())
    opt = object.__new__(optim_mlir.Optimizer)
    opt.rule = rule
    opt._dtype = np.dtype(DTYPES[rule.dtype])
    opt.params = params
    opt._sizes = [p.size for p in params]
    opt._handle = out
    return opt


def raw_state(lib, opt, i, name):
    """State `name` of parameter i as optim_optimizer_state gives it: a flat
    copy of its `count` values."""
    fn = lib.optim_optimizer_state
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                   ctypes.POINTER(ctypes.c_void_p),
                   ctypes.POINTER(ctypes.c_int64))
    fn.restype = ctypes.c_int
    data, count = ctypes.c_void_p(), ctypes.c_int64()
    if fn(opt._handle, i, name.encode(), ctypes.byref(data),
          ctypes.byref(count)):
        raise AssertionError("optim_optimizer_state(%d, %s): %s"
                             % (i, name, lib.optim_last_error().decode()))
    if count.value == 0:
        return np.zeros(0, opt._dtype)
    ctype = ctypes.c_double if opt._dtype == np.float64 else ctypes.c_float
    buf = (ctype * count.value).from_address(data.value)
    return np.ctypeslib.as_array(buf).copy()


def gradients(rng, scales):
    """One step's gradients of all tensors, concatenated (float32 values)."""
    g = rng.standard_normal(scales.size) * scales
    g[rng.random(scales.size) < 0.1] = 0.0
    lo, hi = BOUNDS[ZERO_TENSOR]
    g[lo:hi] = 0.0
    lo, hi = BOUNDS[HOLES_TENSOR]
    holes = g[lo:hi].reshape(SHAPES[HOLES_TENSOR])
    holes[0, :] = 0.0
    holes[:, 2] = 0.0
    lo, hi = BOUNDS[CONST_TENSOR]
    g[lo:hi] = rng.standard_normal() * 10.0 ** rng.uniform(-3.0, 1.0)
    lo, hi = BOUNDS[ROW_TENSOR]
    g[lo:hi].reshape(SHAPES[ROW_TENSOR])[1, 2, :] = 0.0
    return g.astype(np.float32)


def compile_case(case, args, precision):
    if case[1] == LIT:
        return optim_mlir.compile_file(args.literature, rule=case[0],
                                       f64=precision == "f64")
    if case[1] == EX:
        return optim_mlir.compile_file(
            os.path.join(args.examples, case[0] + ".optim"), rule=case[0],
            f64=precision == "f64")
    return optim_mlir.compile_source(case[1], rule=case[0],
                                     f64=precision == "f64",
                                     name="<axis_oracle %s>" % case[0])


class Tally:
    def __init__(self):
        self.passed = self.failed = 0

    def report(self, ok, text):
        print("%s %s" % ("PASS" if ok else "FAIL", text))
        sys.stdout.flush()
        if ok:
            self.passed += 1
        else:
            self.failed += 1


class Worst:
    """The worst element of comparisons |a - b| <= rtol * |b| + atol, atol =
    ATOL[P] * max|b| per tensor and quantity."""

    def __init__(self):
        self.ratio = 0.0  # max |a - b| / (rtol * |b| + atol): pass if <= 1
        self.ulps = 0.0  # max |a - b| / (eps * max|b|)
        self.where = ""

    def add(self, a, b, rtol, eps, where):
        """eps: the precision's; the atol is ATOL of it."""
        atol = ATOL["f32" if eps > 1e-10 else "f64"]
        a, b = a.astype(np.float64), b.astype(np.float64)
        if a.shape != b.shape:
            self.ratio, self.ulps = np.inf, np.inf
            self.where = "%s: %d values, the reference %d" % (where, a.size,
                                                              b.size)
            return
        if not a.size:
            return
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            if self.ratio != np.inf:
                j = int(np.argmax(~(np.isfinite(a) & np.isfinite(b))))
                self.ratio, self.ulps = np.inf, np.inf
                self.where = "%s[%d]: %.9g vs reference %.9g: not finite" % (
                    where, j, a[j], b[j])
            return
        scale = float(np.max(np.abs(b)))
        diff = np.abs(a - b)
        bound = rtol * np.abs(b) + atol * scale
        ratio = np.where(diff == 0, 0.0,
                         diff / np.where(bound == 0, 1.0, bound))
        ratio[(diff != 0) & (bound == 0)] = np.inf
        if ratio.max() > self.ratio:
            j = int(np.argmax(ratio))
            self.ratio = float(ratio[j])
            self.where = "%s[%d]: %.9g vs reference %.9g" % (where, j, a[j],
                                                             b[j])
        if scale:
            self.ulps = max(self.ulps, float(diff.max()) / (eps * scale))
        elif diff.max():
            self.ulps = np.inf


def label_of(i):
    return "p%d%s" % (i, "(noshape)" if SHAPES[i] is None
                      else str(list(SHAPES[i])).replace(" ", ""))


def compare(lib, opt, params, ref, case, rtol, eps):
    worst = Worst()
    for i in range(len(SHAPES)):
        worst.add(params[i].reshape(-1), ref.param(i), rtol, eps,
                  "p of %s" % label_of(i))
        for name, axis, _ in case[4]:
            worst.add(raw_state(lib, opt, i, name), ref.state(i, name), rtol,
                      eps, "%s of %s" % (name, label_of(i)))
    return worst


def same_bits(lib, a_params, a_opt, b_params, b_opt, case):
    for i in range(len(SHAPES)):
        if a_params[i].tobytes() != b_params[i].tobytes():
            return "p of %s" % label_of(i)
        for name, _, _ in case[4]:
            if raw_state(lib, a_opt, i, name).tobytes() != raw_state(
                    lib, b_opt, i, name).tobytes():
                return "%s of %s" % (name, label_of(i))
    return None


def check_descriptor(tally, rule, case, precision):
    want_states = [a for _, a, _ in case[4]]
    got_states = getattr(rule, "state_axes", None)
    ok = (got_states is not None and list(got_states) == want_states
          and list(rule.states) == [n for n, _, _ in case[4]])
    tally.report(ok, "%s %s state_axes %s%s" % (
        precision, case[0], ",".join(want_states),
        "" if ok else " (got %s, states %s)" % (got_states,
                                                 list(rule.states))))
    want = case[5]
    axes = getattr(rule, "reduction_axes", None)
    levels = getattr(rule, "reduction_levels", None)
    got = None
    if axes is not None and levels is not None:
        got = [(k, a, lv) for (k, gl), a, lv in zip(rule.reductions, axes,
                                                    levels)]
        if len(axes) != len(rule.reductions) or len(levels) != len(axes):
            got = None
    text = ",".join("%s%s%s" % (k, "" if a == "none" else "@" + a,
                                ":%d" % lv if lv else "")
                    for k, a, lv in want)
    ok = got == want and not any(gl for _, gl in rule.reductions)
    tally.report(ok, "%s %s reductions %s%s" % (
        precision, case[0], text, "" if ok else
        " (got %s, axes %s, levels %s)" % (rule.reductions, axes, levels)))


def run(cases, args, tally):
    # A handle of our own on the library the binding loaded: its functions
    # carry our argtypes, not the binding's.
    lib = ctypes.CDLL(optim_mlir._lib._name)
    init = np.random.default_rng(SEED).standard_normal(
        int(OFFSETS[-1])).astype(np.float32)
    tmp = tempfile.mkdtemp(prefix="axis_oracle.")
    half = args.steps // 2
    runs = []
    for case in cases:
        r = {"case": case, "kernels": {}, "refs": {}, "grefs": {},
             "wrong": {},
             "python": {}, "resume": {}, "hf": None}
        for precision, dtype in DTYPES.items():
            try:
                rule = compile_case(case, args, precision)
            except optim_mlir.OptimError as e:
                tally.report(False, "%s %s does not compile: %s"
                             % (precision, case[0], e))
                continue
            check_descriptor(tally, rule, case, precision)
            r["rule", precision] = rule
            try:
                for chunk, counts in CONFIGS:
                    for threads in counts:
                        params = [init[lo:hi].astype(dtype) for lo, hi in
                                  BOUNDS]
                        r["kernels"][precision, chunk, threads] = (
                            make_optimizer(lib, rule, params, threads, chunk,
                                           case[3]), params)
                for threads in GROUP_THREADS:
                    params = [init[lo:hi].astype(dtype) for lo, hi in
                              BOUNDS]
                    r["kernels"][precision, "groups", threads] = (
                        make_optimizer(lib, rule, params, threads,
                                       GROUP_CHUNK, case[3],
                                       GROUP2[case[0]]), params)
            except AssertionError as e:
                tally.report(False, "%s %s: %s" % (precision, case[0], e))
                r["kernels"] = {k: x for k, x in r["kernels"].items()
                                if k[0] != precision}
                continue
            # The binding: shapes from the arrays (the shapeless parameter
            # as a vector), default options but 1 thread.
            params = [init[lo:hi].astype(dtype).reshape(
                s if s is not None else (NOSHAPE_SIZE,))
                for (lo, hi), s in zip(BOUNDS, SHAPES)]
            try:
                opt = optim_mlir.Optimizer(rule, params, threads=1)
                for k, x in case[3].items():
                    opt.set(k, x)
                r["python"][precision] = (opt, params)
            except (optim_mlir.OptimError, TypeError, ValueError) as e:
                tally.report(False, "%s %s: the Python binding refuses "
                             "shaped arrays: %s" % (precision, case[0], e))
            main = case[6][0] if args.wrong else None
            r["refs"][precision] = Reference(case, dtype, init, main)
            r["grefs"][precision] = Reference(case, dtype, init, main,
                                              grouped=True)
            if not args.wrong:
                r["wrong"][precision] = [Reference(case, dtype, init, w)
                                         for w in case[6]]
            r["notes", precision] = [Reference(case, dtype, init, w)
                                     for w in NOTES.get(case[0], [])]
        if case[0] == "adafactor_factored" and "f64" in r["refs"]:
            h = case[3]
            r["hf"] = {i: (init[lo:hi].astype(np.float64).reshape(s),
                           {"step": 0,
                            "exp_avg_sq_row": np.zeros(s[0]),
                            "exp_avg_sq_col": np.zeros(s[1])})
                       for i, ((lo, hi), s) in enumerate(zip(BOUNDS, SHAPES))
                       if s is not None and len(s) == 2 and hi > lo}
        runs.append(r)

    rng = np.random.default_rng(SEED + 1)
    scales = 10.0 ** rng.uniform(-5.0, 2.0, int(OFFSETS[-1]))
    for t in range(1, args.steps + 1):
        g = gradients(rng, scales)
        split = {p: [g[lo:hi].astype(d) for lo, hi in BOUNDS]
                 for p, d in DTYPES.items()}
        for r in runs:
            for (precision, _, _), (opt, _) in r["kernels"].items():
                if not opt.step(split[precision]):
                    raise AssertionError("step %d skipped" % t)
            for precision, (opt, params) in r["python"].items():
                opt.step([x.reshape(p.shape) for x, p in
                          zip(split[precision], params)])
            for (opt, _) in r["resume"].values():
                opt.step(split[opt.rule.dtype])
            for ref in list(r["refs"].values()) + list(
                    r["grefs"].values()):
                ref.step(t, g)
            for refs in r["wrong"].values():
                for ref in refs:
                    ref.step(t, g)
            for precision in DTYPES:
                for ref in r.get(("notes", precision), []):
                    ref.step(t, g)
            if r["hf"]:
                h = r["case"][3]
                for i, (p, state) in r["hf"].items():
                    lo, hi = BOUNDS[i]
                    r["hf"][i] = (hf_adafactor_step(
                        p, g[lo:hi].astype(np.float64).reshape(p.shape),
                        state, h["lr"], -h["decay"], h["eps1"], h["d"],
                        h["weight_decay"]), state)
            if t == half:
                # Saved and loaded into a new optimizer with copies of the
                # parameters: it continues as the uninterrupted run.
                for precision in list(DTYPES):
                    key = (precision, DEFAULT_CHUNK, 1)
                    if key not in r["kernels"]:
                        continue
                    opt, params = r["kernels"][key]
                    path = os.path.join(tmp, "%s.%s.safetensors"
                                        % (r["case"][0], precision))
                    try:
                        opt.save(path)
                        copies = [p.copy() for p in params]
                        other = make_optimizer(lib, r["rule", precision],
                                               copies, RESUME_THREADS,
                                               DEFAULT_CHUNK, r["case"][3])
                        other.load(path)
                        r["resume"][precision] = (other, copies)
                    except (optim_mlir.OptimError, AssertionError) as e:
                        tally.report(False, "%s %s: save and load at step "
                                     "%d: %s" % (precision, r["case"][0],
                                                 half, e))

    for r in runs:
        case = r["case"]
        name = case[0]
        for precision in DTYPES:
            if precision not in r["refs"] or not any(
                    k[0] == precision for k in r["kernels"]):
                continue
            eps = float(np.finfo(DTYPES[precision]).eps)
            ref = r["refs"][precision]
            # State sizes: B * R, B * C or B * R * C values.
            opt0, p0 = r["kernels"][precision, DEFAULT_CHUNK, 1]
            bad = []
            for i in range(len(SHAPES)):
                for sname, axis, _ in case[4]:
                    n = raw_state(lib, opt0, i, sname).size
                    if n != state_count(axis, DIMS[i]):
                        bad.append("%s of %s: %d values, not %d" % (
                            sname, label_of(i), n,
                            state_count(axis, DIMS[i])))
            tally.report(not bad, "%s %s state sizes B*R, B*C, B*R*C%s"
                         % (precision, name, "" if not bad
                            else ": " + "; ".join(bad[:4])))
            for chunk, counts in CONFIGS:
                opt, params = r["kernels"][precision, chunk, counts[0]]
                worst = compare(lib, opt, params, ref, case, RTOL[precision],
                                eps)
                tally.report(worst.ratio <= 1.0,
                             "%s %s 1 thread, chunk %d, %d steps: worst "
                             "error %.3g of the tolerance%s"
                             % (precision, name, chunk, args.steps,
                                worst.ratio, "" if worst.ratio <= 1.0
                                else "; at " + worst.where))
                for threads in counts[1:]:
                    other, other_params = r["kernels"][precision, chunk,
                                                       threads]
                    where = same_bits(lib, params, opt, other_params, other,
                                      case)
                    tally.report(where is None,
                                 "%s %s chunk %d: %d threads give the same "
                                 "bits as 1%s" % (precision, name, chunk,
                                                  threads, "" if where is None
                                                  else "; not " + where))
            opt, params = r["kernels"][precision, "groups", 1]
            worst = compare(lib, opt, params, r["grefs"][precision], case,
                            RTOL[precision], eps)
            tally.report(worst.ratio <= 1.0,
                         "%s %s 1 thread, two groups, chunk %d, %d steps: "
                         "worst error %.3g of the tolerance%s"
                         % (precision, name, GROUP_CHUNK, args.steps,
                            worst.ratio, "" if worst.ratio <= 1.0
                            else "; at " + worst.where))
            for threads in GROUP_THREADS[1:]:
                other, other_params = r["kernels"][precision, "groups",
                                                   threads]
                where = same_bits(lib, params, opt, other_params, other, case)
                tally.report(where is None,
                             "%s %s two groups: %d threads give the same "
                             "bits as 1%s" % (precision, name, threads,
                                              "" if where is None
                                              else "; not " + where))
            differ = [str(chunk) for chunk, counts in CONFIGS[1:]
                      if same_bits(lib, p0, opt0,
                                   r["kernels"][precision, chunk,
                                                counts[0]][1],
                                   r["kernels"][precision, chunk,
                                                counts[0]][0],
                                   case) is not None]
            print("# %s %s chunk sizes %s: %s" % (
                precision, name, ", ".join(str(c) for c, _ in CONFIGS),
                "the same bits" if not differ else
                "bits differ from chunk %d at chunk %s" % (
                    DEFAULT_CHUNK, ", ".join(differ))))
            if precision in r["python"]:
                opt, params = r["python"][precision]
                where = same_bits(lib, [p.reshape(-1) for p in params], opt,
                                  p0, opt0, case)
                sizes = []
                for i in range(len(SHAPES)):
                    for sname, axis, _ in case[4]:
                        try:
                            got = opt.state(i, sname).size
                        except Exception as e:  # noqa: BLE001
                            got = "error: %s" % e
                        if got != state_count(axis, DIMS[i]):
                            sizes.append("%s of %s: %s" % (sname,
                                                           label_of(i), got))
                tally.report(where is None and not sizes,
                             "%s %s Python binding (shapes from the arrays):"
                             " the bits of the C API's run, Optimizer.state "
                             "sizes%s%s" % (precision, name,
                                            "" if where is None
                                            else "; not " + where,
                                            "" if not sizes else "; "
                                            + "; ".join(sizes[:4])))
            if precision in r["resume"]:
                other, copies = r["resume"][precision]
                where = same_bits(lib, copies, other, p0, opt0, case)
                tally.report(where is None,
                             "%s %s saved at step %d, loaded, resumed (%d "
                             "threads): the same bits%s" % (
                                 precision, name, half, RESUME_THREADS,
                                 "" if where is None else "; not " + where))
            if precision == "f32" and "f64" in r["refs"]:
                drift = compare(lib, opt0, p0, r["refs"]["f64"], case, 0.0,
                                eps)
                tally.report(drift.ulps <= DRIFT_ULPS,
                             "f32 %s against the float64 reference: %.3g "
                             "ulps of the tensor's largest value (bound %d)%s"
                             % (name, drift.ulps, DRIFT_ULPS,
                                "" if drift.ulps <= DRIFT_ULPS
                                else "; at " + drift.where))
            if precision == "f64" and r["hf"]:
                worst = Worst()
                for i, (p, _) in r["hf"].items():
                    worst.add(p0[i].reshape(-1), p.reshape(-1),
                              RTOL["f64"], eps, "p of %s" % label_of(i))
                    worst.add(ref.param(i), p.reshape(-1), RTOL["f64"], eps,
                              "reference p of %s" % label_of(i))
                tally.report(worst.ratio <= 1.0,
                             "f64 %s and its reference against HF "
                             "Adafactor's step (_approx_sq_grad), 2-D "
                             "parameters: worst error %.3g of the tolerance%s"
                             % (name, worst.ratio, "" if worst.ratio <= 1.0
                                else "; at " + worst.where))
            for note in r.get(("notes", precision), []):
                worst = compare(lib, opt0, p0, note, case, RTOL[precision],
                                eps)
                print("# %s %s against the %s reference: worst error %.3g of "
                      "the tolerance%s" % (precision, name, note.wrong,
                                           worst.ratio, "" if worst.ratio <= 1
                                           else "; at " + worst.where))
            for wrong, wref in zip(case[6], r["wrong"].get(precision, [])):
                worst = compare(lib, opt0, p0, wref, case, RTOL[precision],
                                eps)
                tally.report(worst.ratio > 1.0,
                             "%s %s: the perturbed reference (%s) is "
                             "rejected: worst error %.3g of the tolerance"
                             % (precision, name, wrong, worst.ratio))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", help="liboptim.so (else $OPTIM_LIBRARY)")
    parser.add_argument("--literature", required=True,
                        help="test/Run/Inputs/literature.optim")
    parser.add_argument("--examples", required=True,
                        help="examples/ (adafactor.optim)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--rule", action="append",
                        help="check only this rule (repeatable)")
    parser.add_argument("--wrong", action="store_true",
                        help="compare with each rule's first perturbed "
                        "reference instead (must fail)")
    args = parser.parse_args()
    optim_mlir.load(args.library)
    cases = [c for c in CASES if not args.rule or c[0] in args.rule]
    unknown = set(args.rule or ()) - {c[0] for c in CASES}
    if unknown:
        parser.error("no such rule: %s" % ", ".join(sorted(unknown)))
    print("numpy %s; %d rules, %d steps, shapes %s" % (
        np.__version__, len(cases), args.steps,
        " ".join("noshape%d" % NOSHAPE_SIZE if s is None
                 else "x".join(map(str, s)) for s in SHAPES)))
    start = time.time()
    tally = Tally()
    run(cases, args, tally)
    print("# %.1fs" % (time.time() - start))
    print("%d passed, %d failed" % (tally.passed, tally.failed))
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
