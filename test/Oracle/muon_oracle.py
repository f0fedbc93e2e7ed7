#!/usr/bin/env python3
"""Oracle test: matrix functions (newton_schulz) and shape values (rows(),
cols()) against numpy.

A rule may orthogonalize a per-coordinate value over each matrix of a
parameter with `newton_schulz(x[, steps[, a, b, c[, eps]]])` and read the
matrices' numbers of rows and columns with `rows()` and `cols()`
(KernelABI.h version 11, "Matrix functions and shape values"). The runtime
sees each parameter as B matrices of R rows and C columns (C its last
dimension, R the one before, 1 for a vector, B the product of the others; a
parameter without a shape is one row). This file runs nine such rules
through the C API (optim_optimizer_create_shaped: chunk sizes, groups, a
parameter without a shape) and the Python binding (shapes from the arrays)
on liboptim.so and compares them with numpy references written from the
papers and torch's code, not from the .optim text:

- muon (examples/muon.optim): torch.optim.Muon (PyTorch 2.9+,
  _single_tensor_muon, adjust_lr_fn "original"): buf.lerp_(g, 1 - momentum),
  g.lerp(buf, momentum) with nesterov, _zeropower_via_newtonschulz, p (1 -
  lr wd) - lr sqrt(max(1, A / B)) O. torch's lerp: start + w (end - start)
  for |w| < 0.5, else end - (end - start) (1 - w).
- muon_sgd (test/Run/Inputs/literature.optim): Keller Jordan's first Muon,
  buf = momentum buf + g, Nesterov's g + momentum buf, no weight decay.
- muon_moonlight (literature.optim): Liu et al. (2025), the update scaled by
  0.2 sqrt(max(A, B)), decoupled weight decay.
- muon_spectral (literature.optim): torch's momentum and decay, the scale
  sqrt(A / B) unclamped (Bernstein, "Deriving Muon").
- mup_adam, spectral_sgd, ns_cubic, ns_variants, ns_nested
  (Inputs/muon_rules.optim, which says what each exercises): shape values
  without a matrix function (in a reduction's operand too; a rule of shape
  values only, one pass), the cubic Newton-Schulz iteration (10 steps,
  a = 1.5, b = -0.5, c = 0, eps 1e-5), 0, 1, 2 and 3 steps, an eps above
  every norm, a matrix function of another (level 1), and a matrix function
  of a value centred by a tensor mean with its result normalized per row
  and per tensor (levels 0 to 2).

Newton-Schulz (torch's _zeropower_via_newtonschulz in float64): X (R x C)
transposed if R > C, divided by max(|X|_F, eps), then `steps` times
A = X X^T, X = a X + (b A + c A A) X, transposed back; for every matrix of
the stack on its own. The references compute in float64 from the inputs the
kernel saw (parameters and gradients are float32 values; the float32 run's
hyperparameters rounded to float32).

Parameters (shapes): (0,), (1,), (7,), (3, 5), (5, 3), (1, 1), (2, 3, 4),
(0, 5), (70, 30), (30, 70), (33, 1025), (3, 7001) and 12 coordinates
without a shape. The 7-vector's gradient is always 0 (Newton-Schulz of 0 is
0: the division by eps), (5, 3)'s is 0 in row 0 and column 2, (3, 5)'s is
one number everywhere (a rank-1 matrix), one row of (2, 3, 4) is 0; the
others are normal times a scale 10^U(-3, 1) per tensor and step, about 10%
exact zeros. Parameters start standard normal.

Checks, for each rule in float64 and float32:

- Rule.reductions, reduction_axes ("matrix" for newton_schulz, "none" for
  rows and cols) and reduction_levels are the expected ones.
- The kernel, 1 thread, at chunk sizes 32768 (the default), 1000 and 7
  (rows cut in parts; the matrix buffer takes any chunking), against the
  reference: the parameters and every state, per tensor and quantity,
      |ours - reference| <= TOL[P] * max|reference's values|,
  TOL 1e-12 in float64: the kernel and numpy sum the matrix products, the
  Frobenius norm and the reductions in other orders (a few ulps per step),
  which Newton-Schulz amplifies in the directions of small singular values
  by up to its slope at 0 per step (3.4445^5 ~ 490 for five default
  steps); 1e-4 in float32 against the float64 reference: the kernel rounds
  every operation and its products to float32 (6e-8), amplified the same
  way, most where a matrix is rank-deficient (the rank-1 (3, 5), (5, 3)
  with a zero row and column), where rounding makes the zero singular values
  ~1e-7 and five steps could take them to ~5e-5 of the largest entry of an
  update (the worst measured, below, is 4.3e-6: a margin of 23). The update
  enters the parameters times lr (at most 0.1 here).
- The same bits with 2 threads as with 1 at every chunk size and with two
  groups. Rules whose only reductions are matrix functions and shape
  values give the same bits at every chunk size (nothing is summed by
  chunk); the others may differ in the last bits (printed "#").
- Two parameter groups (parameters 0-6 and 7-12, the second with other
  values of some hyperparameters, GROUP2) at chunk size 1000.
- Newton-Schulz alone: one step of examples/muon.optim from p = 0 with
  lr 1, weight decay 0, momentum 0 and nesterov 0 gives
  -sqrt(max(1, R / C)) NS(g) (tolerance as above; the worst error printed).
- The Python binding gives the bits of the C API's run; a run saved at
  half the steps and loaded into a new optimizer (2 threads) ends with the
  uninterrupted run's bits.
- The references can fail: each rule has perturbed references (a lerp
  weight, rows and columns swapped in a scale, a stack orthogonalized as one
  matrix, other coefficients or steps, a norm of the operand instead of the
  result, ...), and the kernel must be outside the tolerance of every one
  ("rejected"). --wrong makes each rule's first perturbed reference the
  reference: the lit test checks that such a run fails.

Measured (x86-64, numpy 2.4, OpenBLAS, 50 steps, 35 s on a loaded 2-core
machine): the float64 kernels within 4.3e-14 of each tensor's largest value
(Newton-Schulz alone 1.9e-14), the float32 kernels within 4.3e-6 (3.8e-6);
the perturbed references 646 tolerances off at least in float32, 6.5e10 in
float64. The references were checked once against torch's own algorithm
(torch 2.15 _single_tensor_muon with _zeropower_via_newtonschulz in float64
instead of bfloat16): 5e-16.

Prints one line per check, then "N passed, M failed"; exits 1 if any failed.

Usage: muon_oracle.py --library build/lib/liboptim.so
           --literature test/Run/Inputs/literature.optim
           --examples examples [--steps N] [--rule NAME] [--wrong]
"""

import os

# numpy's OpenBLAS (and the runtime's, when it uses one) with one thread:
# on a loaded machine, threads that spin waiting for a core made a
# 33 x 1025 Newton-Schulz 50 times slower (140 ms against 2.7 ms). The
# runtime's own threads (OptimizerOptions::threads) are what is checked.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import optim_mlir  # noqa: E402

RULES_FILE = os.path.join(HERE, "Inputs", "muon_rules.optim")
SHAPES = [(0,), (1,), (7,), (3, 5), (5, 3), (1, 1), (2, 3, 4), (0, 5),
          (70, 30), (30, 70), (33, 1025), (3, 7001), None]
NOSHAPE_SIZE = 12
SIZES = [NOSHAPE_SIZE if s is None else int(np.prod(s)) for s in SHAPES]
OFFSETS = np.cumsum([0] + SIZES)
BOUNDS = list(zip(OFFSETS[:-1], OFFSETS[1:]))
ZERO_TENSOR = SHAPES.index((7,))
HOLES_TENSOR = SHAPES.index((5, 3))
CONST_TENSOR = SHAPES.index((3, 5))
ROW_TENSOR = SHAPES.index((2, 3, 4))
STEPS = 50
SEED = 20261129
TOL = {"f32": 1e-4, "f64": 1e-12}
DTYPES = {"f32": np.float32, "f64": np.float64}
DEFAULT_CHUNK = 32768
CHUNKS = (DEFAULT_CHUNK, 1000, 7)
THREADS = (1, 2)
RESUME_THREADS = 2
GROUP_SPLIT = 7
GROUP_CHUNK = 1000
NS_DEFAULT = (5, (3.4445, -4.775, 2.0315), 1e-7)


def view_dims(shape, size):
    """[B, R, C] of a parameter (KernelABI.h, "Axes")."""
    if shape is None or len(shape) == 1:
        return 1, 1, size
    return int(np.prod(shape[:-2])), shape[-2], shape[-1]


DIMS = [view_dims(s, n) for s, n in zip(SHAPES, SIZES)]


def label_of(i):
    s = SHAPES[i]
    return "noshape%d" % NOSHAPE_SIZE if s is None else "x".join(map(str, s))


# ---- Newton-Schulz as torch.optim.Muon computes it, in float64 --------------
def newton_schulz(x, steps, coefficients, eps):
    """torch.optim._muon._zeropower_via_newtonschulz on one R x C matrix."""
    a, b, c = coefficients
    y = np.array(x, dtype=np.float64)
    tall = y.shape[0] > y.shape[1]
    if tall:
        y = y.T
    y = y / max(np.linalg.norm(y), eps)
    for _ in range(steps):
        gram = y @ y.T
        y = a * y + (b * gram + c * (gram @ gram)) @ y
    return y.T if tall else y


# The references of a rule run one after the other on the same step, most
# of them orthogonalizing the same matrices (the grouped reference's first
# group, perturbations of a scale): results are remembered for a step.
MEMO = {"step": None, "results": {}}


def memo_step(t):
    if MEMO["step"] != t:
        MEMO["step"], MEMO["results"] = t, {}


def ns_memo(x, steps, coefficients, eps):
    key = (x.shape, x.tobytes(), steps, tuple(coefficients), eps)
    if key not in MEMO["results"]:
        MEMO["results"][key] = newton_schulz(x, steps, coefficients, eps)
    return MEMO["results"][key]


def ns3(X, steps=NS_DEFAULT[0], coefficients=NS_DEFAULT[1],
        eps=NS_DEFAULT[2], flattened=False):
    """Newton-Schulz of each matrix of X [B, R, C]; flattened: of the whole
    stack as one (B R) x C matrix (a perturbation)."""
    if flattened:
        B, R, C = X.shape
        return ns_memo(X.reshape(B * R, C), steps, coefficients,
                       eps).reshape(X.shape)
    return np.stack([ns_memo(m, steps, coefficients, eps) for m in X])


def lerp(start, end, weight):
    """torch's lerp (aten/src/ATen/native/Lerp.h): exact at both ends."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


# ---- The references ---------------------------------------------------------
# fn(h, t, P, G, S, wrong) -> new P for ONE non-empty tensor: P and G its
# [B, R, C] views (float64), S its states (B, R, C) updated in place, h the
# hyperparameters (floats), h.R and h.C the matrices' rows and columns, t the
# 1-based step, wrong the perturbation's name or None.

def ref_muon(h, t, P, G, S, wrong):
    w = h.momentum if wrong == "momentum-weight" else 1 - h.momentum
    S["buf"] = lerp(S["buf"], G, w)
    u = lerp(G, S["buf"], h.momentum) if h.nesterov != 0 else S["buf"]
    o = ns3(u, flattened=wrong == "flattened-stack")
    R, C = (h.C, h.R) if wrong == "swapped" else (h.R, h.C)
    return (P * (1 - h.lr * h.weight_decay)
            - h.lr * math.sqrt(max(1, R / C)) * o)


def ref_muon_sgd(h, t, P, G, S, wrong):
    S["buf"] = h.momentum * S["buf"] + G
    nesterov = h.nesterov != 0 and wrong != "no-nesterov"
    u = G + h.momentum * S["buf"] if nesterov else S["buf"]
    o = ns3(u, flattened=wrong == "flattened-stack")
    return P - h.lr * math.sqrt(max(1, h.R / h.C)) * o


def ref_muon_moonlight(h, t, P, G, S, wrong):
    S["buf"] = h.momentum * S["buf"] + G
    o = ns3(G + h.momentum * S["buf"])
    if wrong == "original-scale":
        scale = math.sqrt(max(1, h.R / h.C))
    else:
        scale = 0.2 * math.sqrt(max(h.R, h.C))
    return P * (1 - h.lr * h.weight_decay) - h.lr * scale * o


def ref_muon_spectral(h, t, P, G, S, wrong):
    S["buf"] = lerp(S["buf"], G, 1 - h.momentum)
    o = ns3(lerp(G, S["buf"], h.momentum))
    ratio = h.R / h.C
    if wrong == "clamped":
        ratio = max(1, ratio)
    return P * (1 - h.lr * h.weight_decay) - h.lr * math.sqrt(ratio) * o


def ref_mup_adam(h, t, P, G, S, wrong):
    # muP (Tensor Programs V): Adam's step of a hidden matrix over its
    # fan-in (the columns of [out, in]); the gradient clipped to an RMS of
    # `clip` computed as |G|_F / sqrt(R C) (the tensor's norm).
    rms = np.linalg.norm(G) / math.sqrt(h.R * h.C)
    gc = G / max(1, rms / h.clip)
    S["m"] = h.beta1 * S["m"] + (1 - h.beta1) * gc
    S["v"] = h.beta2 * S["v"] + (1 - h.beta2) * gc * gc
    mhat = S["m"] / (1 - h.beta1 ** t)
    vhat = S["v"] / (1 - h.beta2 ** t)
    fan_in = h.R if wrong == "rows-for-cols" else h.C
    return P - (h.lr * h.base / fan_in * mhat / (np.sqrt(vhat) + h.eps)
                + h.lr * np.mean(P) * 1e-2)


def ref_spectral_sgd(h, t, P, G, S, wrong):
    S["m"] = h.mu * S["m"] + G
    R, C = (h.C, h.R) if wrong == "swapped" else (h.R, h.C)
    return P - (h.lr * math.sqrt(R / C) * S["m"]
                + h.lr * 1e-3 * (h.R + h.C) * G)


def ref_ns_cubic(h, t, P, G, S, wrong):
    S["m"] = h.mu * S["m"] + G
    if wrong == "default-coefficients":
        o = ns3(S["m"], 10)
    else:
        o = ns3(S["m"], 10, (1.5, -0.5, 0.0), 1e-5)
    return P - h.lr * o


def ref_ns_variants(h, t, P, G, S, wrong):
    n0 = ns3(G, 0)
    n2 = ns3(G, 3 if wrong == "steps-3" else 2)
    big = ns3(G, 1, (2.0, -1.5, 0.5), 1e6)
    twice = ns3(2 * n2 + G, 3)
    return P - h.lr * (n0 + n2 + 1e3 * big + twice)


def ref_ns_nested(h, t, P, G, S, wrong):
    c = G - h.k * np.mean(G)
    o = ns3(c, flattened=wrong == "flattened-stack")
    on = o / np.maximum(np.sqrt(np.sum(o * o, axis=-1, keepdims=True)), 1e-6)
    n = np.linalg.norm(c if wrong == "norm-of-operand" else o)
    S["m"] = h.beta * S["m"] + on
    return P - h.lr * (S["m"] + o / max(n, 1e-6)) * math.sqrt(
        max(1, h.R / h.C))


EX, LIT, RULES = "examples", "literature", "rules"
NS5 = "newton_schulz(5;3.4445;-4.775;2.0315;1e-07)"
# name, file, reference, hyperparameters, second group's changes, states,
# reductions (kind, axis, level) in body order, perturbations (the first
# for --wrong).
CASES = [
    ("muon", EX, ref_muon,
     {"lr": 0.02, "weight_decay": 0.05, "momentum": 0.9, "nesterov": 1},
     {"lr": 0.01, "momentum": 0.8, "nesterov": 0},
     ["buf"],
     [("newton_schulz", "matrix", 0), ("rows", "none", 0),
      ("cols", "none", 0)],
     ["momentum-weight", "flattened-stack", "swapped"]),
    ("muon_sgd", LIT, ref_muon_sgd,
     {"lr": 0.02, "momentum": 0.9, "nesterov": 1},
     {"momentum": 0.85, "nesterov": 0},
     ["buf"],
     [("newton_schulz", "matrix", 0), ("rows", "none", 0),
      ("cols", "none", 0)],
     ["no-nesterov", "flattened-stack"]),
    ("muon_moonlight", LIT, ref_muon_moonlight,
     {"lr": 0.01, "weight_decay": 0.05, "momentum": 0.9},
     {"lr": 0.005, "weight_decay": 0.2},
     ["buf"],
     [("newton_schulz", "matrix", 0), ("rows", "none", 0),
      ("cols", "none", 0)],
     ["original-scale"]),
    ("muon_spectral", LIT, ref_muon_spectral,
     {"lr": 0.02, "weight_decay": 0.05, "momentum": 0.9},
     {"momentum": 0.4},
     ["buf"],
     [("rows", "none", 0), ("cols", "none", 0),
      ("newton_schulz", "matrix", 0)],
     ["clamped"]),
    ("mup_adam", RULES, ref_mup_adam,
     {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "base": 4,
      "clip": 0.5},
     {"lr": 0.02, "clip": 2.0},
     ["m", "v"],
     [("norm", "none", 0), ("rows", "none", 0), ("cols", "none", 0),
      ("cols", "none", 0), ("rows", "none", 0), ("mean", "none", 0),
      ("rows", "none", 0)],
     ["rows-for-cols"]),
    ("spectral_sgd", RULES, ref_spectral_sgd, {"lr": 0.02, "mu": 0.9},
     {"lr": 0.01, "mu": 0.5},
     ["m"],
     [("rows", "none", 0), ("cols", "none", 0), ("rows", "none", 0),
      ("cols", "none", 0)],
     ["swapped"]),
    ("ns_cubic", RULES, ref_ns_cubic, {"lr": 0.05, "mu": 0.9},
     {"lr": 0.02, "mu": 0.6},
     ["m"],
     [("newton_schulz", "matrix", 0)],
     ["default-coefficients"]),
    ("ns_variants", RULES, ref_ns_variants, {"lr": 0.05}, {"lr": 0.01},
     [],
     [("newton_schulz", "matrix", 0), ("newton_schulz", "matrix", 0),
      ("newton_schulz", "matrix", 0), ("newton_schulz", "matrix", 1)],
     ["steps-3"]),
    ("ns_nested", RULES, ref_ns_nested, {"lr": 0.02, "k": 0.5, "beta": 0.9},
     {"k": 1.0, "beta": 0.5},
     ["m"],
     [("mean", "none", 0), ("newton_schulz", "matrix", 1),
      ("norm", "row", 2), ("norm", "none", 2), ("rows", "none", 0),
      ("cols", "none", 0)],
     ["norm-of-operand", "flattened-stack"]),
]
# Rules whose reductions are all matrix functions and shape values: nothing
# is summed by chunk, so every chunk size gives the same bits.
SUMMED = {"mean", "norm", "sum", "max", "min"}


class Reference:
    """One run of a reference over all the tensors, in float64, each tensor
    kept as its [B, R, C] view."""

    def __init__(self, case, dtype, p0, wrong=None, grouped=False):
        self.fn, self.wrong = case[2], wrong

        def hypers(values, i):
            B, R, C = DIMS[i]
            # The float32 kernel has float32 hyperparameters.
            return types.SimpleNamespace(
                R=float(R), C=float(C),
                **{k: float(dtype(v)) for k, v in values.items()})
        second = dict(case[3], **case[4])
        self.hs = [hypers(second if grouped and i >= GROUP_SPLIT
                          else case[3], i) for i in range(len(BOUNDS))]
        self.p, self.s = [], []
        for i, (lo, hi) in enumerate(BOUNDS):
            self.p.append(p0[lo:hi].astype(np.float64).reshape(DIMS[i]))
            self.s.append({name: np.zeros(DIMS[i]) for name in case[5]})

    def step(self, t, g):
        memo_step(t)
        for i, (lo, hi) in enumerate(BOUNDS):
            if hi == lo:
                continue  # an empty tensor: nothing runs
            G = g[lo:hi].astype(np.float64).reshape(DIMS[i])
            with np.errstate(divide="ignore", invalid="ignore"):
                self.p[i] = self.fn(self.hs[i], float(t), self.p[i], G,
                                    self.s[i], self.wrong)

    def param(self, i):
        return self.p[i].reshape(-1)

    def state(self, i, name):
        return self.s[i][name].reshape(-1)


# ---- Optimizers through the C API (shapes, chunk size, groups) --------------
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
    """An optim_mlir.Optimizer over `params` (flat arrays) created through
    optim_optimizer_create_shaped with SHAPES (None: rank 0), `threads`,
    `chunk` and the hyperparameters `hypers` (one group; with `hypers2`,
    two: parameters GROUP_SPLIT on with hypers2's values)."""
    v, P = ctypes.c_void_p, ctypes.POINTER
    lib.optim_options_init.argtypes = (P(Options),)
    lib.optim_options_init.restype = ctypes.c_int
    create = lib.optim_optimizer_create_shaped
    create.argtypes = (v, ctypes.c_int, P(Group), ctypes.c_size_t, P(Shape),
                       P(Options), P(v))
    create.restype = ctypes.c_int
    lib.optim_last_error.restype = ctypes.c_char_p
    opts = Options()
    if lib.optim_options_init(ctypes.byref(opts)):
        raise AssertionError("optim_options_init failed")
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
            *[HyperValue(n.encode(), float(x)) for n, x in values.items()])
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
    """State `name` of parameter i as optim_optimizer_state gives it."""
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


def gradients(rng):
    """One step's gradients of all tensors, concatenated (float32 values)."""
    scales = np.repeat(10.0 ** rng.uniform(-3.0, 1.0, len(SIZES)), SIZES)
    g = rng.standard_normal(int(OFFSETS[-1])) * scales
    g[rng.random(g.size) < 0.1] = 0.0
    lo, hi = BOUNDS[ZERO_TENSOR]
    g[lo:hi] = 0.0
    lo, hi = BOUNDS[HOLES_TENSOR]
    holes = g[lo:hi].reshape(SHAPES[HOLES_TENSOR])
    holes[0, :] = 0.0
    holes[:, 2] = 0.0
    lo, hi = BOUNDS[CONST_TENSOR]
    g[lo:hi] = rng.standard_normal() * 10.0 ** rng.uniform(-2.0, 1.0)
    lo, hi = BOUNDS[ROW_TENSOR]
    g[lo:hi].reshape(SHAPES[ROW_TENSOR])[1, 2, :] = 0.0
    return g.astype(np.float32)


def compile_case(case, args, precision):
    path = {EX: os.path.join(args.examples, case[0] + ".optim"),
            LIT: args.literature, RULES: RULES_FILE}[case[1]]
    return optim_mlir.compile_file(path, rule=case[0],
                                   f64=precision == "f64")


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


def worst_error(lib, opt, params, ref, case, precision):
    """max over tensors and quantities of |ours - ref| / (TOL max|ref|),
    and where."""
    worst, where = 0.0, ""
    for i in range(len(SHAPES)):
        pairs = [("p", params[i].reshape(-1), ref.param(i))]
        pairs += [(n, raw_state(lib, opt, i, n), ref.state(i, n))
                  for n in case[5]]
        for name, a, b in pairs:
            if a.size != b.size:
                return np.inf, "%s of %s: %d values, the reference %d" % (
                    name, label_of(i), a.size, b.size)
            if not b.size:
                continue
            a = a.astype(np.float64)
            if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
                return np.inf, "%s of %s: not finite" % (name, label_of(i))
            scale = TOL[precision] * max(np.abs(b).max(), 1e-300)
            r = float(np.abs(a - b).max() / scale)
            if r > worst:
                worst, where = r, "%s of %s" % (name, label_of(i))
    return worst, where


def same_bits(lib, a_params, a_opt, b_params, b_opt, case):
    for i in range(len(SHAPES)):
        if a_params[i].tobytes() != b_params[i].tobytes():
            return "p of %s" % label_of(i)
        for name in case[5]:
            if raw_state(lib, a_opt, i, name).tobytes() != raw_state(
                    lib, b_opt, i, name).tobytes():
                return "%s of %s" % (name, label_of(i))
    return None


def check_reductions(tally, rule, case, precision):
    want = case[6]
    got = None
    axes = getattr(rule, "reduction_axes", None)
    levels = getattr(rule, "reduction_levels", None)
    if axes is not None and levels is not None and len(axes) == len(
            rule.reductions) == len(levels):
        got = [(k, a, lv) for (k, gl), a, lv in zip(rule.reductions, axes,
                                                    levels)
               if not gl]
        if len(got) != len(rule.reductions):
            got = None  # a global one

    def text(rs):
        return ",".join("%s%s%s" % (k, "" if a == "none" else "@" + a,
                                    ":%d" % lv if lv else "")
                        for k, a, lv in rs)
    ok = got == want
    tally.report(ok, "%s %s reductions %s%s" % (
        precision, case[0], text(want),
        "" if ok else " (got %s)" % (text(got) if got is not None
                                     else rule.reductions)))


def ns_alone(lib, tally, args, precision, init, g):
    """One step of examples/muon.optim from p = 0 (lr 1, no decay, momentum
    0, nesterov 0): p = -sqrt(max(1, R / C)) NS(g)."""
    dtype = DTYPES[precision]
    rule = optim_mlir.compile_file(os.path.join(args.examples, "muon.optim"),
                                   f64=precision == "f64")
    params = [np.zeros(hi - lo, dtype) for lo, hi in BOUNDS]
    opt = make_optimizer(lib, rule, params, 2, DEFAULT_CHUNK,
                         {"lr": 1.0, "weight_decay": 0.0, "momentum": 0.0,
                          "nesterov": 0.0})
    opt.step([g[lo:hi].astype(dtype) for lo, hi in BOUNDS])
    worst, where = 0.0, ""
    for i, (lo, hi) in enumerate(BOUNDS):
        if hi == lo:
            continue
        B, R, C = DIMS[i]
        want = -math.sqrt(max(1.0, R / C)) * ns3(
            g[lo:hi].astype(np.float64).reshape(DIMS[i]))
        scale = max(np.abs(want).max(), 1e-300)
        r = float(np.abs(params[i].astype(np.float64) - want.reshape(-1))
                  .max() / scale)
        if r > worst:
            worst, where = r, label_of(i)
    ok = worst <= TOL[precision]
    tally.report(ok, "%s Newton-Schulz alone (one step of muon from p = 0): "
                 "worst error %.3g of the largest entry (tolerance %.0e; at "
                 "%s)" % (precision, worst, TOL[precision], where))


def run(cases, args, tally):
    # Its own handle: argtypes set here must not change the binding's.
    lib = ctypes.CDLL(optim_mlir._lib._name)
    half = args.steps // 2
    rng = np.random.default_rng(SEED)
    init = rng.standard_normal(int(OFFSETS[-1])).astype(np.float32)
    grads = [gradients(rng) for _ in range(args.steps)]
    if not args.rule or "muon" in args.rule:
        for precision in DTYPES:
            ns_alone(lib, tally, args, precision, init, grads[0])
    tmp = tempfile.mkdtemp(prefix="muon_oracle.")
    for case in cases:
        name = case[0]
        for precision, dtype in DTYPES.items():
            try:
                rule = compile_case(case, args, precision)
            except optim_mlir.OptimError as e:
                tally.report(False, "%s %s: does not compile: %s"
                             % (precision, name, e))
                continue
            check_reductions(tally, rule, case, precision)
            summed = any(k in SUMMED for k, _, _ in case[6])

            def flat_params():
                return [init[lo:hi].astype(dtype) for lo, hi in BOUNDS]
            kernels = {}
            try:
                for chunk in CHUNKS:
                    for threads in THREADS:
                        p = flat_params()
                        kernels[chunk, threads] = (make_optimizer(
                            lib, rule, p, threads, chunk, case[3]), p)
                for threads in THREADS:
                    p = flat_params()
                    kernels["groups", threads] = (make_optimizer(
                        lib, rule, p, threads, GROUP_CHUNK, case[3],
                        case[4]), p)
            except AssertionError as e:
                tally.report(False, "%s %s: %s" % (precision, name, e))
                continue
            py_params = [init[lo:hi].astype(dtype).reshape(
                s if s is not None else (NOSHAPE_SIZE,))
                for (lo, hi), s in zip(BOUNDS, SHAPES)]
            py_opt = optim_mlir.Optimizer(rule, py_params, threads=1)
            for k, x in case[3].items():
                py_opt.set(k, float(x))
            main = case[7][0] if args.wrong else None
            ref = Reference(case, dtype, init, main)
            gref = Reference(case, dtype, init, main, grouped=True)
            wrongs = [] if args.wrong else [Reference(case, dtype, init, w)
                                            for w in case[7]]
            resumed = None
            for t in range(1, args.steps + 1):
                g = grads[t - 1]
                split = [g[lo:hi].astype(dtype) for lo, hi in BOUNDS]
                for opt, _ in kernels.values():
                    if not opt.step(split):
                        raise AssertionError("step %d skipped" % t)
                py_opt.step([x.reshape(p.shape)
                             for x, p in zip(split, py_params)])
                if resumed is not None:
                    resumed[0].step(split)
                for r in [ref, gref] + wrongs:
                    r.step(t, g)
                if t == half:
                    opt, params = kernels[DEFAULT_CHUNK, 1]
                    path = os.path.join(tmp, "%s.%s.safetensors"
                                        % (name, precision))
                    try:
                        opt.save(path)
                        copies = [p.copy() for p in params]
                        other = make_optimizer(lib, rule, copies,
                                               RESUME_THREADS, DEFAULT_CHUNK,
                                               case[3])
                        other.load(path)
                        resumed = (other, copies)
                    except (optim_mlir.OptimError, AssertionError) as e:
                        tally.report(False, "%s %s: save and load at step "
                                     "%d: %s" % (precision, name, half, e))
            opt0, p0 = kernels[DEFAULT_CHUNK, 1]
            for chunk in CHUNKS:
                opt, params = kernels[chunk, 1]
                worst, where = worst_error(lib, opt, params, ref, case,
                                           precision)
                tally.report(worst <= 1.0, "%s %s 1 thread, chunk %d, %d "
                             "steps: worst error %.3g of the tolerance%s"
                             % (precision, name, chunk, args.steps, worst,
                                "" if worst <= 1.0 else "; at " + where))
                print("# %s %s chunk %d: worst error %.3g of the largest "
                      "value (at %s)" % (precision, name, chunk,
                                         worst * TOL[precision], where))
                other, other_params = kernels[chunk, 2]
                diff = same_bits(lib, params, opt, other_params, other, case)
                tally.report(diff is None, "%s %s chunk %d: 2 threads give "
                             "the same bits as 1%s" % (
                                 precision, name, chunk,
                                 "" if diff is None else "; not " + diff))
                if chunk != DEFAULT_CHUNK:
                    diff = same_bits(lib, params, opt, p0, opt0, case)
                    if summed:
                        print("# %s %s chunk %d: %s" % (
                            precision, name, chunk,
                            "the bits of chunk %d" % DEFAULT_CHUNK
                            if diff is None else "bits differ from chunk "
                            "%d (the sums' order)" % DEFAULT_CHUNK))
                    else:
                        tally.report(diff is None, "%s %s chunk %d: the bits "
                                     "of chunk %d (matrix functions and "
                                     "shape values only)%s" % (
                                         precision, name, chunk,
                                         DEFAULT_CHUNK, "" if diff is None
                                         else "; not " + diff))
            opt, params = kernels["groups", 1]
            worst, where = worst_error(lib, opt, params, gref, case,
                                       precision)
            tally.report(worst <= 1.0, "%s %s two groups, chunk %d, 1 thread:"
                         " worst error %.3g of the tolerance%s"
                         % (precision, name, GROUP_CHUNK, worst,
                            "" if worst <= 1.0 else "; at " + where))
            other, other_params = kernels["groups", 2]
            diff = same_bits(lib, params, opt, other_params, other, case)
            tally.report(diff is None, "%s %s two groups: 2 threads give the "
                         "same bits as 1%s" % (precision, name,
                                               "" if diff is None
                                               else "; not " + diff))
            diff = same_bits(lib, [p.reshape(-1) for p in py_params], py_opt,
                             p0, opt0, case)
            tally.report(diff is None, "%s %s Python binding (shapes from the "
                         "arrays): the bits of the C API's run%s"
                         % (precision, name,
                            "" if diff is None else "; not " + diff))
            if resumed is not None:
                diff = same_bits(lib, resumed[1], resumed[0], p0, opt0, case)
                tally.report(diff is None, "%s %s saved at step %d, loaded, "
                             "resumed (%d threads): the same bits%s"
                             % (precision, name, half, RESUME_THREADS,
                                "" if diff is None else "; not " + diff))
            for w, wref in zip(case[7], wrongs):
                worst, _ = worst_error(lib, opt0, p0, wref, case, precision)
                tally.report(worst > 1.0, "%s %s: the perturbed reference "
                             "(%s) is rejected: worst error %.3g of the "
                             "tolerance" % (precision, name, w, worst))


def matrix_rules(args):
    """The rules of examples/ and of the literature file whose body calls
    newton_schulz, rows or cols (rule_oracle.py leaves them here)."""
    found = set()
    files = [os.path.join(args.examples, f)
             for f in sorted(os.listdir(args.examples))
             if f.endswith(".optim")] + [args.literature]
    for path in files:
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"^rule\s+(\w+)[^{]*\{(.*?)^\}", text,
                             re.M | re.S):
            body = re.sub(r"//[^\n]*", "", m.group(2))
            if re.search(r"\b(newton_schulz|rows|cols)\s*\(", body):
                found.add(m.group(1))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", help="liboptim.so (else $OPTIM_LIBRARY)")
    parser.add_argument("--literature", required=True,
                        help="test/Run/Inputs/literature.optim")
    parser.add_argument("--examples", required=True,
                        help="examples/ (muon.optim)")
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
    if not args.rule:
        missing = sorted(matrix_rules(args) - {c[0] for c in CASES})
        tally.report(not missing, "every rule of examples/ and "
                     "literature.optim with newton_schulz, rows() or cols() "
                     "has a case here%s" % ("" if not missing else
                                            ": not " + ", ".join(missing)))
    print("# %.1fs" % (time.time() - start))
    print("%d passed, %d failed" % (tally.passed, tally.failed))
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
