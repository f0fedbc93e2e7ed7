#!/usr/bin/env python3
"""Oracle test: rules with nested tensor reductions against numpy references.

A nested reduction reduces a value computed from another reduction's result
(KernelABI.h, "Nested reductions (version 9)"): reduction r has level 0 when
its argument depends on no reduction, else 1 + the largest level it depends
on, and a rule of largest level L makes L + 2 passes over memory (stages
0..L of the reduce kernel, then the rule). This file runs four such rules
through the Python binding (python/optim_mlir.py) on liboptim.so and
compares them with numpy references written from the papers' formulas (or,
for the two synthetic rules, from the comments above them), not from the
.optim text:

- gs_sgd (test/Run/Inputs/literature.optim): gradient standardization, ZNorm
  (Yun & Kim, 2024, arXiv:2408.01215), (g - mean) / (std + eps) per tensor,
  with SGD momentum; std = sqrt(mean((g - mean)^2)) is level 1.
- lans (literature.optim): LANS (Zheng et al., 2020, arXiv:2006.13484,
  Algorithm 2; the formula checked against NVIDIA apex's LANS test
  reference): g / |g| per tensor (level 0), Adam's moments of it, two
  LAMB-like terms weighted by beta1 and 1 - beta1, each scaled by its trust
  ratio |p| / |term|, the term norms level 1.
- chain (below): a chain of levels 0 to 3 mixing per-tensor and global
  reductions, and a state reduced before the body assigns it (its value from
  the previous step: level 0): L = 3, five passes.
- edges (below): a state whose initial value is a reduction, g reassigned
  from one, the norm of p's step after p is updated, max and min at level
  1, global sums at levels 1 (unused) and 2.

Each rule runs STEPS (100) steps over 8 tensors of 0, 1, 3, 5, 7, 1000,
33001 and 70001 coordinates (70001: three chunks at the default chunk size,
32768, the last a tail of 4465, not a multiple of the vector width). The
3-coordinate tensor's gradient is always 0 (|g| = 0: LANS's guard, a centred
value and a standard deviation of exactly 0), the 5-coordinate one's is the
same number in every coordinate, new at every step (its mean is exact, the
centred gradient exactly 0). The others' gradients are normal, times a
scale 10^U(-5, 2) drawn once per coordinate, about 10% exact zeros
(rule_oracle.py's data). Parameters start standard normal. All data is
representable in float32: one stream serves both precisions.

Checks, for each rule in float32 and float64:

- The rule's reductions as compiled (Rule.reductions and
  Rule.reduction_levels) are the expected kinds, scopes and levels.
- The kernel, 1 thread, at chunk sizes 32768 (the default), 1000 and 7
  (15,000 chunks per step and stage), and with two parameter groups
  (tensors 0-5 and 6-7; the second with other hyperparameters, so that a
  global reduction adds arguments computed with each group's own), against
  the reference run in the same precision (for the groups, with one
  hyperparameter value per coordinate): parameters and every state, per
  tensor,
      |ours - reference| <= rtol * |reference| + atol,
      atol = 16 * eps(P) * max|reference's values in that tensor|,
  rtol 1e-12 in float64 and 1e-5 in float32 (rule_oracle.py's tolerances).
  The reference in float32 rounds every literal, hyperparameter and
  operation to float32; its reductions, as the language defines them, sum
  the (rounded) argument in float64 and round the result once, and a nested
  one reads the lower level's rounded result, as the kernels do. The sums'
  order differs (numpy sums pairwise, the kernels chunk by chunk), so a
  reduced value may differ in its last bit (measured below).
- The float32 kernel against the float64 reference, looser, since float32
  itself rounds: per tensor, |ours - reference| <= DRIFT_ULPS (256) ulps of
  float32 times the reference's largest |value| in the tensor.
- The same bits with 3 (chunk 32768), 4 (chunk 1000), 3 (chunk 7) and 3
  (two groups) threads as with 1 thread in that configuration: every stage
  combines the chunks' partials in chunk order. Between chunk sizes the
  order of the float64 sums changes, so the bits may differ
  (docs/language.md); whether they do is printed (a "#" line), not checked:
  each chunk size meets the tolerance.
- The references can fail: each rule has perturbed references, each the
  mistake a staged kernel could make (a lower level's value read as 0, a
  state or p read before its update in a nested slice, a stale level, a
  state reduced after its assignment instead of before, a state's initial
  value taken at every step), and the kernel must be outside the tolerance
  of every one of them ("rejected", with the worst error in tolerances).
  --wrong makes each rule's first perturbed reference the reference: the
  lit test checks that such a run fails.

Measured (x86-64, numpy 2.4, 100 steps, ~30 s): in float32 every kernel
run equals the float32 reference bit for bit (LANS's groups run within
0.014 of the tolerance: numpy's pow of an array of betas may round
differently from its pow of a scalar) and every chunk size gives the same
bits; in float64 the worst errors are 0.01 to 0.22 of the tolerance, and
chunk sizes 1000 and 7 differ from 32768 in the last bits. The float32
kernels drift 3.8 (chain), 4.9 (gs_sgd), 9.2 (lans) and 20 (edges) ulps from
the float64 reference. The perturbed references are off by 5e3 to 7e4
tolerances in float32, 6e10 to 9e12 in float64.

Prints one line per check, then "N passed, M failed"; exits 1 if any failed.

Usage: nested_oracle.py --library build/lib/liboptim.so
           --literature test/Run/Inputs/literature.optim [--steps N]
           [--rule NAME] [--wrong]
"""

import argparse
import ctypes
import os
import sys
import time
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "python"))
import optim_mlir  # noqa: E402

SIZES = (0, 1, 3, 5, 7, 1000, 33001, 70001)
ZERO, CONST = 2, 3  # tensors whose gradient is 0 / one value everywhere
OFFSETS = np.cumsum((0,) + SIZES)
BOUNDS = list(zip(OFFSETS[:-1], OFFSETS[1:]))
STEPS = 100
SEED = 20261128
RTOL = {"f32": 1e-5, "f64": 1e-12}
ATOL_ULPS = 16
DRIFT_ULPS = 256
DTYPES = {"f32": np.float32, "f64": np.float64}
DEFAULT_CHUNK = 32768
# (chunk size, thread counts): the first count's run is compared with the
# reference, the others must give its bits.
CONFIGS = ((DEFAULT_CHUNK, (1, 3)), (1000, (1, 4)), (7, (1, 3)))
# Two parameter groups: tensors 0-5 with the case's hyperparameters, 6-7
# with the case's group overrides (at the default chunk size, 1 and 3
# threads). A global reduction adds each group's own argument.
GROUP_SPLIT = 6
GROUP_CHUNK, GROUP_THREADS = DEFAULT_CHUNK, (1, 3)

# The three-level chain: levels 0 (|m| of the previous step, the global
# |g|, |p|), 1 (the mean of the updated m), 2 (the global mean square of
# the centred m) and 3 (|d|, d from the level-2 value).
CHAIN = """
rule chain(lr = 0.01, beta = 0.9, eps = 1e-8, weight_decay = 0.01) {
  state m = 0
  let mn = tensor_norm(m)
  let u = g / (global_norm(g) + eps)
  m = beta * m + u
  let c = m - tensor_mean(m)
  let sd = sqrt(global_mean(c * c))
  let d = c / (sd + eps) + weight_decay * p
  let wn = tensor_norm(p)
  let ratio = select(wn > 0, wn / (tensor_norm(d) + eps), 1)
  p -= lr * ratio * d / (1 + mn)
}
"""

# The other ways a value depends on a reduction: a state whose initial value
# is one (assigned at t = 1 only: levels above 0 ever after), g reassigned
# from one, p updated before it is reduced (the norm of the step); max and
# min at level 1, an unused global sum (still computed), a global sum at
# level 2.
EDGES = """
rule edges(lr = 0.05, k = 0.5) {
  state n = tensor_norm(g)
  g = g - tensor_mean(g)
  let gmax = tensor_max(g)
  let gmin = tensor_min(g)
  let unused = global_sum(g * g)
  let p0 = p
  p -= lr * g / (max(gmax, -gmin) + 1)
  let sn = tensor_norm(p - p0)
  let total = global_sum(n * p)
  p = p * (1 - lr * k * sn / (1 + sn)) + lr * k * total / (1 + abs(total))
}
"""


# ---- Reductions as the language defines them -------------------------------
def reduction(kind, x, bounds, dtype):
    """x (in the run's dtype) reduced over each [lo, hi) of bounds, in
    float64 (norm: the root of the float64 sum of squares; mean: the sum over
    the coordinates), the result rounded once to dtype, at every coordinate
    of the range."""
    out = np.empty_like(x)
    x64 = x.astype(np.float64)
    for lo, hi in bounds:
        if hi == lo:
            continue
        y = x64[lo:hi]
        value = {"sum": lambda: np.sum(y),
                 "mean": lambda: np.sum(y) / (hi - lo),
                 "norm": lambda: np.sqrt(np.sum(y * y)),
                 "max": lambda: np.max(y),
                 "min": lambda: np.min(y)}[kind]()
        out[lo:hi] = dtype(value)
    return out


def ratio_or_one(a, b, h):
    """a / b where a > 0 and b > 0, else 1 (the trust ratios' guard)."""
    ok = (a > 0) & (b > 0)
    return np.where(ok, a / np.where(ok, b, h.c(1)), h.c(1))


# ---- The references ---------------------------------------------------------
# step(h, t, p, g, s, memo, wrong) -> new p. h holds the hyperparameters as
# scalars of the run's dtype (with two groups, arrays of one value per
# coordinate), h.c(x) rounds a literal to it, h.tensor(kind,
# x) and h.all(kind, x) reduce per tensor and over all tensors; t is the
# 1-based step in the dtype, p and g the concatenated tensors, s the state
# (updated), memo the reference's own memory (for perturbations only), wrong
# the perturbation's name or None.

def ref_gs_sgd(h, t, p, g, s, memo, wrong):
    # ZNorm (Yun & Kim, 2024): g~ = (g - mu) / (sigma + eps) per tensor,
    # sigma the population standard deviation; then SGD with momentum as
    # torch.optim.SGD (buf <- mu buf + g~; p <- p - lr buf).
    c = g - h.tensor("mean", g)
    if wrong == "uncentred":
        # The level-1 stage reading the level-0 mean as 0.
        sd = np.sqrt(h.tensor("mean", g * g))
    else:
        sd = np.sqrt(h.tensor("mean", c * c))
    s["buf"] = h.mu * s["buf"] + c / (sd + h.eps)
    return p - h.lr * s["buf"]


def ref_lans(h, t, p, g, s, memo, wrong):
    # Zheng et al. (2020), Algorithm 2 (LANS): g~ = g / |g| per block (0
    # where |g| = 0); m = beta1 m + (1 - beta1) g~, v = beta2 v + (1 -
    # beta2) g~^2, bias-corrected; r = m_hat / (sqrt(v_hat) + eps) + wd x,
    # c = g~ / (sqrt(v_hat) + eps) + wd x; x <- x - lr (beta1 phi(|x|) / |r|
    # r + (1 - beta1) phi(|x|) / |c| c), phi the identity, each ratio 1 where
    # a norm is 0 (as LAMB's).
    gn = h.tensor("norm", g)
    gt = np.where(gn > 0, g / np.where(gn > 0, gn, h.c(1)), h.c(0))
    m_old, v_old = s["m"], s["v"]
    s["m"] = h.beta1 * m_old + (h.c(1) - h.beta1) * gt
    s["v"] = h.beta2 * v_old + (h.c(1) - h.beta2) * gt * gt

    def terms(m, v):
        den = np.sqrt(v / (h.c(1) - h.beta2 ** t)) + h.eps
        return (m / (h.c(1) - h.beta1 ** t) / den + h.weight_decay * p,
                gt / den + h.weight_decay * p)

    r, c = terms(s["m"], s["v"])
    # The level-1 norms of a nested slice that read the stored moments
    # instead of this step's.
    nr, nc = terms(m_old, v_old) if wrong == "stale-moments" else (r, c)
    wn = h.tensor("norm", p)
    return p - h.lr * (h.beta1 * ratio_or_one(wn, h.tensor("norm", nr), h) * r
                       + (h.c(1) - h.beta1)
                       * ratio_or_one(wn, h.tensor("norm", nc), h) * c)


def ref_chain(h, t, p, g, s, memo, wrong):
    # A synthetic chain: u = g / (|g|_all + eps), m <- beta m + u, c = m -
    # mean(m) per tensor, sd = sqrt(mean(c^2)) over all tensors, d = c / (sd
    # + eps) + wd p, and a trust ratio |p| / (|d| + eps); the step is divided
    # by 1 + |m| of the previous step.
    mn = h.tensor("norm", s["m"])
    u = g / (h.all("norm", g) + h.eps)
    s["m"] = h.beta * s["m"] + u
    if wrong == "state-after":
        # |m| of the state after the body's assignment.
        mn = h.tensor("norm", s["m"])
    c = s["m"] - h.tensor("mean", s["m"])
    sd = np.sqrt(h.all("mean", c * c))
    d = c / (sd + h.eps) + h.weight_decay * p
    nd = d
    if wrong == "stale-level-2":
        # |d| from the previous step's level-2 value.
        nd = c / (memo.get("sd", sd) + h.eps) + h.weight_decay * p
        memo["sd"] = sd
    wn = h.tensor("norm", p)
    ratio = np.where(wn > 0, wn / (h.tensor("norm", nd) + h.eps), h.c(1))
    return p - h.lr * ratio * d / (h.c(1) + mn)


def ref_edges(h, t, p, g, s, memo, wrong):
    # n = |g| of the first step (a state's initial value is assigned at
    # t = 1); g centred per tensor; a step scaled by the centred gradient's
    # largest magnitude, then p shrunk by the norm of the step and moved by
    # the global sum of n p.
    if t == 1 or wrong == "n-every-step":
        # The perturbation: the initial value taken at every step.
        s["n"] = h.tensor("norm", g)
    g = g - h.tensor("mean", g)
    p1 = p - h.lr * g / (np.maximum(h.tensor("max", g), -h.tensor("min", g))
                         + h.c(1))
    # The perturbation: the level-2 slice reading p before its update.
    sn = h.tensor("norm", (p if wrong == "p-before" else p1) - p)
    total = h.all("sum", s["n"] * p1)
    return (p1 * (h.c(1) - h.lr * h.k * sn / (h.c(1) + sn))
            + h.lr * h.k * total / (h.c(1) + np.abs(total)))


LIT = "literature"
# name, source (LIT or program text), reference, hyperparameters (each away
# from its default), the reference's states and initial values, the rule's
# state -> the reference's, the reductions (kind, is global, level) in body
# order, the perturbations, the second parameter group's hyperparameters.
CASES = [
    ("gs_sgd", LIT, ref_gs_sgd, {"lr": 0.003, "mu": 0.8, "eps": 1e-6},
     {"buf": 0}, {"buf": "buf"},
     [("mean", False, 0), ("mean", False, 1)], ["uncentred"],
     {"lr": 0.005, "mu": 0.6, "eps": 1e-3}),
    ("lans", LIT, ref_lans,
     {"lr": 0.003, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7,
      "weight_decay": 0.02},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"},
     [("norm", False, 0), ("norm", False, 0), ("norm", False, 1),
      ("norm", False, 1)], ["stale-moments"],
     {"lr": 0.002, "beta1": 0.7, "eps": 1e-4, "weight_decay": 0.1}),
    ("chain", CHAIN, ref_chain,
     {"lr": 0.02, "beta": 0.8, "eps": 1e-6, "weight_decay": 0.05},
     {"m": 0}, {"m": "m"},
     [("norm", False, 0), ("norm", True, 0), ("mean", False, 1),
      ("mean", True, 2), ("norm", False, 0), ("norm", False, 3)],
     ["stale-level-2", "state-after"],
     {"lr": 0.01, "eps": 1e-2, "weight_decay": 0.2}),
    ("edges", EDGES, ref_edges, {"lr": 0.03, "k": 0.4}, {"n": 0},
     {"n": "n"},
     [("norm", False, 0), ("mean", False, 0), ("max", False, 1),
      ("min", False, 1), ("sum", True, 1), ("norm", False, 2),
      ("sum", True, 2)], ["n-every-step", "p-before"],
     {"lr": 0.02, "k": 0.8}),
]


class Reference:
    """One run of a reference in one dtype over the concatenated tensors."""

    def __init__(self, case, dtype, p0, wrong=None, grouped=False):
        """grouped: the second group's coordinates (tensors GROUP_SPLIT on)
        take the case's overrides, the hyperparameters become arrays of one
        value per coordinate."""
        self.fn, self.dtype, self.wrong = case[2], dtype, wrong
        hypers = {k: dtype(v) for k, v in case[3].items()}
        if grouped:
            split = OFFSETS[GROUP_SPLIT]
            for k in hypers:
                a = np.full(p0.size, hypers[k], dtype)
                a[split:] = dtype(case[8].get(k, case[3][k]))
                hypers[k] = a
        self.h = types.SimpleNamespace(
            c=dtype,
            tensor=lambda kind, x: reduction(kind, x, BOUNDS, dtype),
            all=lambda kind, x: reduction(kind, x, [(0, x.size)], dtype),
            **hypers)
        self.s = {k: np.full(p0.size, v, dtype) for k, v in case[4].items()}
        self.memo = {}
        self.p = p0.astype(dtype)

    def step(self, t, g):
        with np.errstate(divide="ignore", invalid="ignore"):
            self.p = self.fn(self.h, self.dtype(t), self.p,
                             g.astype(self.dtype), self.s, self.memo,
                             self.wrong)
        for name, a in [("p", self.p)] + list(self.s.items()):
            if a.dtype != self.dtype or a.shape != self.p.shape:
                raise AssertionError("reference %s: %s became %s%s"
                                     % (self.fn.__name__, name, a.dtype,
                                        a.shape))


class Worst:
    """The worst element of comparisons |a - b| <= rtol * |b| + atol, atol =
    ATOL_ULPS * eps * max|b| per tensor."""

    def __init__(self):
        self.ratio = 0.0  # max |a - b| / (rtol * |b| + atol): pass if <= 1
        self.ulps = 0.0  # max |a - b| / (eps * max|b|), per tensor
        self.where = ""

    def add(self, a, b, rtol, eps, where):
        a, b = a.astype(np.float64), b.astype(np.float64)
        if a.shape != b.shape:
            raise AssertionError("%s: shape %s vs %s" % (where, a.shape,
                                                         b.shape))
        if not a.size:
            return
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            self.ratio, self.where = np.inf, where + ": not finite"
            return
        scale = float(np.max(np.abs(b)))
        diff = np.abs(a - b)
        bound = rtol * np.abs(b) + ATOL_ULPS * eps * scale
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


# ---- Optimizers with a chunk size or groups (the binding has neither) ------
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


def make_optimizer(lib, rule, params, threads, chunk, groups):
    """An optim_mlir.Optimizer over `params` created through the C API's
    optim_optimizer_create_groups with `threads` and `chunk`; groups: a list
    of (first, end, {hyper: value}), every hyperparameter given."""
    v, P = ctypes.c_void_p, ctypes.POINTER
    init = lib.optim_options_init
    init.argtypes, init.restype = (P(Options),), ctypes.c_int
    create = lib.optim_optimizer_create_groups
    create.argtypes = (v, ctypes.c_int, P(Group), ctypes.c_size_t,
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
    keep = []
    table = (Group * len(groups))()
    for k, (first, end, hypers) in enumerate(groups):
        ps = params[first:end]
        ptrs = (v * len(ps))(*[p.ctypes.data if p.size else None for p in ps])
        sizes = (ctypes.c_int64 * len(ps))(*[p.size for p in ps])
        hv = (HyperValue * len(hypers))(
            *[HyperValue(n.encode(), x) for n, x in hypers.items()])
        keep += [ptrs, sizes, hv]
        table[k].params = ctypes.cast(ptrs, P(v))
        table[k].sizes = ctypes.cast(sizes, P(ctypes.c_int64))
        table[k].num_params = len(ps)
        table[k].hypers = ctypes.cast(hv, P(HyperValue))
        table[k].num_hypers = len(hypers)
    out = v()
    if create(rule._handle, 1 if rule.dtype == "f64" else 0, table,
              len(groups), ctypes.byref(opts), ctypes.byref(out)):
        raise AssertionError("optim_optimizer_create_groups: %s"
                             % lib.optim_last_error().decode())
    opt = object.__new__(optim_mlir.Optimizer)
    opt.rule = rule
    opt._dtype = np.dtype(DTYPES[rule.dtype])
    opt.params = params
    opt._sizes = [p.size for p in params]
    opt._handle = out
    return opt


def gradients(rng, scales):
    """One step's gradients of all tensors, concatenated (float32 values)."""
    g = rng.standard_normal(scales.size) * scales
    g[rng.random(scales.size) < 0.1] = 0.0
    lo, hi = BOUNDS[ZERO]
    g[lo:hi] = 0.0
    lo, hi = BOUNDS[CONST]
    g[lo:hi] = rng.standard_normal() * 10.0 ** rng.uniform(-3.0, 1.0)
    return g.astype(np.float32)


def compile_case(case, literature, precision):
    if case[1] == LIT:
        return optim_mlir.compile_file(literature, rule=case[0],
                                       f64=precision == "f64")
    return optim_mlir.compile_source(case[1], rule=case[0],
                                     f64=precision == "f64",
                                     name="<nested_oracle %s>" % case[0])


class Tally:
    def __init__(self):
        self.passed = self.failed = 0

    def report(self, ok, text):
        print("%s %s" % ("PASS" if ok else "FAIL", text))
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def check_descriptor(tally, rule, case, precision):
    want = case[6]
    got = list(rule.reductions)
    levels = getattr(rule, "reduction_levels", None)
    text = ",".join("%s%s%s" % (k, "@global" if gl else "",
                                ":%d" % lv if lv else "")
                    for k, gl, lv in want)
    ok = (levels is not None and len(levels) == len(got)
          and [(k, gl, lv) for (k, gl), lv in zip(got, levels)] == want)
    tally.report(ok, "%s %s reductions %s%s"
                 % (precision, case[0], text, "" if ok else
                    " (got %s, levels %s)" % (got, levels)))


def compare(opt_params, opt, ref, case, precision, rtol, eps):
    worst = Worst()
    for i, (lo, hi) in enumerate(BOUNDS):
        worst.add(opt_params[i], ref.p[lo:hi], rtol, eps, "p[%d]" % i)
        for mine, theirs in case[5].items():
            worst.add(opt.state(i, mine), ref.s[theirs][lo:hi], rtol, eps,
                      "%s[%d]" % (mine, i))
    return worst


def same_bits(a_params, a_opt, b_params, b_opt, case):
    for i in range(len(SIZES)):
        if a_params[i].tobytes() != b_params[i].tobytes():
            return "p[%d]" % i
        for mine in case[5]:
            if a_opt.state(i, mine).tobytes() != b_opt.state(
                    i, mine).tobytes():
                return "%s[%d]" % (mine, i)
    return None


def check_kernels(tally, r, precision, label, configs, ref, steps):
    """Compares each configuration's 1-thread run with `ref`, and its other
    thread counts' bits with that run. Returns {label: (opt, params)} of the
    1-thread runs."""
    case = r["case"]
    eps = float(np.finfo(DTYPES[precision]).eps)
    runs = {}
    for key, counts in configs:
        opt, params = r["kernels"][precision, key, counts[0]]
        worst = compare(params, opt, ref, case, precision, RTOL[precision],
                        eps)
        tally.report(worst.ratio <= 1.0,
                     "%s %s 1 thread, %s, %d steps: worst error %.3g of the "
                     "tolerance%s" % (precision, case[0], label(key), steps,
                                      worst.ratio, "" if worst.ratio <= 1.0
                                      else "; at " + worst.where))
        for threads in counts[1:]:
            other, other_params = r["kernels"][precision, key, threads]
            where = same_bits(params, opt, other_params, other, case)
            tally.report(where is None,
                         "%s %s %s: %d threads give the same bits as 1%s"
                         % (precision, case[0], label(key), threads,
                            "" if where is None else "; not " + where))
        runs[key] = (opt, params)
    return runs


def run(cases, args, tally):
    # A handle of our own on the library the binding loaded: its functions
    # carry our argtypes, not the binding's.
    lib = ctypes.CDLL(optim_mlir._lib._name)
    init = np.random.default_rng(SEED).standard_normal(
        int(OFFSETS[-1])).astype(np.float32)
    n = len(SIZES)
    runs = []
    for case in cases:
        r = {"case": case, "kernels": {}, "refs": {}, "grefs": {},
             "wrong": {}}
        one = [(0, n, dict(case[3]))]
        two = [(0, GROUP_SPLIT, dict(case[3])),
               (GROUP_SPLIT, n, dict(case[3], **case[8]))]
        configs = [((chunk, 1), counts, chunk, one)
                   for chunk, counts in CONFIGS]
        configs.append(((GROUP_CHUNK, 2), GROUP_THREADS, GROUP_CHUNK, two))
        for precision, dtype in DTYPES.items():
            try:
                rule = compile_case(case, args.literature, precision)
            except optim_mlir.OptimError as e:
                tally.report(False, "%s %s does not compile: %s"
                             % (precision, case[0], e))
                continue
            check_descriptor(tally, rule, case, precision)
            for key, counts, chunk, groups in configs:
                for threads in counts:
                    params = [init[lo:hi].astype(dtype) for lo, hi in BOUNDS]
                    r["kernels"][precision, key, threads] = (
                        make_optimizer(lib, rule, params, threads, chunk,
                                       groups), params)
            main = case[7][0] if args.wrong else None
            r["refs"][precision] = Reference(case, dtype, init, main)
            r["grefs"][precision] = Reference(case, dtype, init, main,
                                              grouped=True)
            if not args.wrong:
                r["wrong"][precision] = [Reference(case, dtype, init, w)
                                         for w in case[7]]
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
            for ref in list(r["refs"].values()) + list(r["grefs"].values()):
                ref.step(t, g)
            for refs in r["wrong"].values():
                for ref in refs:
                    ref.step(t, g)

    def label(key):
        return "chunk %d" % key[0] if key[1] == 1 \
            else "two groups, chunk %d" % key[0]

    for r in runs:
        case = r["case"]
        name = case[0]
        for precision in DTYPES:
            if precision not in r["refs"]:
                continue
            eps = float(np.finfo(DTYPES[precision]).eps)
            bits = check_kernels(
                tally, r, precision, label,
                [((chunk, 1), counts) for chunk, counts in CONFIGS],
                r["refs"][precision], args.steps)
            check_kernels(tally, r, precision, label,
                          [((GROUP_CHUNK, 2), GROUP_THREADS)],
                          r["grefs"][precision], args.steps)
            # Chunk sizes change the order of the float64 sums: reported.
            opt0, p0 = bits[DEFAULT_CHUNK, 1]
            differ = [str(key[0]) for key, (o, p) in bits.items()
                      if same_bits(p0, opt0, p, o, case) is not None]
            print("# %s %s chunk sizes %s: %s" % (
                precision, name, ", ".join(str(c) for c, _ in CONFIGS),
                "the same bits" if not differ else
                "bits differ from chunk %d at chunk %s" % (
                    DEFAULT_CHUNK, ", ".join(differ))))
            if precision == "f32" and "f64" in r["refs"]:
                drift = compare(p0, opt0, r["refs"]["f64"], case,
                                precision, 0.0, eps)
                tally.report(drift.ulps <= DRIFT_ULPS,
                             "f32 %s against the float64 reference: %.3g "
                             "ulps of the tensor's largest value (bound %d)%s"
                             % (name, drift.ulps, DRIFT_ULPS,
                                "" if drift.ulps <= DRIFT_ULPS
                                else "; at " + drift.where))
            for wrong, wref in zip(case[7], r["wrong"].get(precision, [])):
                worst = compare(p0, opt0, wref, case, precision,
                                RTOL[precision], eps)
                tally.report(worst.ratio > 1.0,
                             "%s %s: the perturbed reference (%s) is "
                             "rejected: worst error %.3g of the tolerance"
                             % (precision, name, wrong, worst.ratio))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", help="liboptim.so (else $OPTIM_LIBRARY)")
    parser.add_argument("--literature", required=True,
                        help="test/Run/Inputs/literature.optim")
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
    print("numpy %s; %d rules, %d steps, sizes %s"
          % (np.__version__, len(cases), args.steps,
             " ".join(map(str, SIZES))))
    start = time.time()
    tally = Tally()
    run(cases, args, tally)
    print("# %.1fs" % (time.time() - start))
    print("%d passed, %d failed" % (tally.passed, tally.failed))
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
