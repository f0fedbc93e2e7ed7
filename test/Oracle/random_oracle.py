#!/usr/bin/env python3
"""Oracle test: the random numbers rules draw (rand(), randn()) against numpy.

KernelABI.h (version 8, "Random numbers") specifies every draw: site k (the
k-th call of rand()/randn() in the rule, in source order) at global
coordinate i (the coordinate's position in the concatenation of all the
optimizer's parameters) and step t is Philox4x32-10 with

    key = (seed mod 2^32, seed >> 32),  counter = (i mod 2^32, i >> 32,
                                                   t mod 2^32, k),

converted in the rule's element type:

    U32(w) = (w >> 8) 2^-24,  U64(a, b) = ((b << 32 | a) >> 11) 2^-53,
    rand():  f32 U32(w0), f64 U64(w0, w1);
    randn(): sqrt(-2 log(1 - Ua)) cos(2 pi Ub), f32 Ua = U32(w0), Ub = U32(w1),
             f64 Ua = U64(w0, w1), Ub = U64(w2, w3).

This file implements that independently in numpy (Philox vectorized over
coordinates in uint64 arithmetic), checks its Philox against Random123's
known-answer vectors (a failure there stops everything), then runs rules
compiled from source through the Python binding (python/optim_mlir.py) on
liboptim.so and compares what they drew, exposed through states:

- SITES (below): four sites, a state started from a draw (`state z0 =
  randn()`, assigned at t == 1 only), a draw bound by `let` and used twice.
  Uniform draws must equal the reference bit for bit (the conversion is
  exact). Normal draws go through the target's log, sqrt and cos, which may
  round differently from numpy's: the f32 kernel must be within
        4 * 2^-23 * max(s, 1),   s = sqrt(-2 log u1) >= |z|,
  of the float64 value of the formula at the kernel's float32 arguments
  (u1 = 1 - Ua exact, a = 2pi * Ub rounded to float32 as the kernel
  rounds it): glibc's logf and cosf are within one ulp, sqrtf and the
  product round once, so the kernel is within ~3 ulps of s (the modulus
  scales the cosine's absolute error), and 4 * 2^-23 * s is 2 to 4 ulps of
  s. f64: within 1e-13 * max(s, 1) (glibc's and numpy's log and cos are
  within a few ulps of 2^-52; the bound leaves room for a vectorized libm,
  and a wrong draw is off by O(1)). Measured on x86-64 with glibc: f32
  within 1.25 * 2^-23 * max(s, 1) (65% of the draws equal the rounded
  reference), f64 within 1.0 * 2^-52 * max(s, 1). Tensors of 0, 1, 7,
  1000 and 33001 coordinates (two chunks of the CPU executor), 30 steps
  (--steps; t is part of the counter), seeds 0, 1, 2^32 (the key's high
  word), 0x243f6a8885a308d3 and 2^64 - 1 (3 steps each); f32 and f64.
- The draws do not depend on how the step is cut up: 3 threads, chunk sizes
  1000 and 7, and two parameter groups (the global index runs across them)
  give the same bits as 1 thread. A run saved after a few steps and loaded
  into an optimizer created with another seed continues with the same bits
  as the uninterrupted run (save() records the seed, load() restores it),
  and a checkpoint whose step counter is moved by 2^32 draws the numbers of
  the original step (the counter holds t mod 2^32).
- Statistics of the kernel's draws (~10^6 per site at the default 30 steps):
  mean and variance within 5 standard errors of the uniform's (1/2, 1/12)
  and the normal's (0, 1); Kolmogorov-Smirnov distance to the CDF (x, and
  Phi by math.erf) below its 10^-6 quantile, sqrt(ln(2 / 1e-6) / (2 n));
  Pearson correlations between two sites, between steps t and t + 1 of a
  coordinate, between neighbouring coordinates and between seeds 0 and 1
  within 5 / sqrt(n); f32 normals within the Box-Muller bound
  sqrt(-2 log 2^-24) ~ 5.7683, uniforms in [0, 1).
- Rules from the literature that draw their own noise (every rule of
  examples/ and of test/Run/Inputs/literature.optim that calls rand() or
  randn() must have a case here; rule_oracle.py leaves them to this file):
  SGLD (Welling & Teh, 2011), pSGLD (Li et al., 2016), annealed gradient
  noise (Neelakantan et al., 2015) and perturbed gradient descent (Jin et
  al., 2017), against numpy references written from the papers with the
  reference draws, tolerance as rule_oracle.py's plus the normal draws'
  bound above times the noise's coefficient, summed over the steps.
- Misuse through the binding: a seed that is not an int raises TypeError,
  one outside [0, 2^64) ValueError; Rule.random lists the sites' kinds; the
  C API's optim_options_init sets seed 0 (the last field of optim_options)
  and optim_rule_random refuses an index past the sites; a rule that draws
  nothing ignores the seed.

--wrong {seed,site,step,index} makes the REFERENCE draw with seed + 1, sites
0 <-> 1 and 2 <-> 3 swapped, step t + 1, or the index within the tensor
instead of the global index: the lit test checks that such a run fails.

Usage: random_oracle.py --library build/lib/liboptim.so --examples examples
           --literature test/Run/Inputs/literature.optim [--steps N]
           [--wrong KIND]
"""

import argparse
import ctypes
import json
import math
import os
import re
import struct
import sys
import tempfile

import numpy as np

M32 = np.uint64(0xFFFFFFFF)

# ---- Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32_10) -------
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)


def philox4x32_10(ctr, key):
    """ctr: four arrays (or ints) of 32-bit words, key: two. Returns the four
    output words as uint64 arrays holding 32-bit values. The products of two
    32-bit words fit in uint64 exactly: hi = p >> 32, lo = p & (2^32 - 1)."""
    x0, x1, x2, x3 = (np.asarray(c, np.uint64) & M32 for c in ctr)
    k0, k1 = (np.asarray(k, np.uint64) & M32 for k in key)
    for r in range(10):
        if r:
            k0 = (k0 + PHILOX_W0) & M32
            k1 = (k1 + PHILOX_W1) & M32
        p0 = PHILOX_M0 * x0
        p1 = PHILOX_M1 * x2
        hi0, lo0 = p0 >> np.uint64(32), p0 & M32
        hi1, lo1 = p1 >> np.uint64(32), p1 & M32
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
    return x0, x1, x2, x3


# Random123, tests/kat_vectors: philox4x32 10, ctr[4] key[2] -> out[4].
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2,
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344),
     (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def check_kat():
    """The reference itself: Random123's vectors, or nothing is worth
    comparing."""
    for ctr, key, want in KAT:
        got = tuple(int(w) for w in philox4x32_10(ctr, key))
        if got != want:
            print("FAIL Philox4x32-10 reference: ctr %s key %s gives %s, "
                  "Random123 says %s" % (
                      " ".join("%08x" % c for c in ctr),
                      " ".join("%08x" % k for k in key),
                      " ".join("%08x" % w for w in got),
                      " ".join("%08x" % w for w in want)))
            sys.exit(2)
    # Vectorized evaluation agrees with the scalar one.
    ctr = [np.array([c[i] for c, _, _ in KAT], np.uint64) for i in range(4)]
    key = [np.array([k[i] for _, k, _ in KAT], np.uint64) for i in range(2)]
    out = philox4x32_10(ctr, key)
    for j, (_, _, want) in enumerate(KAT):
        if tuple(int(w[j]) for w in out) != want:
            print("FAIL Philox4x32-10 reference: vectorized differs")
            sys.exit(2)
    print("PASS Philox4x32-10 reference: Random123's %d known-answer vectors"
          % len(KAT))


# ---- The contract's conversions ------------------------------------------
TWO_PI = {np.float32: np.float32(2 * math.pi), np.float64: 2 * math.pi}
EPS = {np.float32: 2.0 ** -23, np.float64: 2.0 ** -52}
F32_NORMAL_BOUND = math.sqrt(-2 * math.log(2.0 ** -24))  # 5.76828...


def u32(w):
    return ((w >> np.uint64(8)).astype(np.float64) * 2.0 ** -24).astype(
        np.float32)  # exact: 24 bits


def u64(a, b):
    return ((b << np.uint64(32) | a) >> np.uint64(11)).astype(
        np.float64) * 2.0 ** -53  # exact: 53 bits


def uniform(w, dt):
    return u32(w[0]) if dt == np.float32 else u64(w[0], w[1])


def normal(w, dt):
    """(z, s): the float64 value of Box-Muller's cosine branch at the
    arguments the kernel computes in `dt` (1 - Ua is exact; 2pi * Ub rounds
    once, as in the kernel), and its modulus s = sqrt(-2 log u1)."""
    if dt == np.float32:
        ua, ub = u32(w[0]), u32(w[1])
    else:
        ua, ub = u64(w[0], w[1]), u64(w[2], w[3])
    u1 = (dt(1) - ua).astype(np.float64)
    a = (TWO_PI[dt] * ub).astype(dt).astype(np.float64)
    s = np.sqrt(-2.0 * np.log(u1))
    return s * np.cos(a), s


def normal_tol(s, dt):
    if dt == np.float32:
        return 4 * EPS[dt] * np.maximum(s, 1.0)
    return 1e-13 * np.maximum(s, 1.0)


class Draws:
    """The reference's draws for one optimizer (sizes, seed), with the
    --wrong alterations."""

    def __init__(self, sizes, seed, wrong=None):
        self.seed = (seed + 1) % 2**64 if wrong == "seed" else seed
        self.wrong = wrong
        if wrong == "index":
            idx = np.concatenate([np.arange(n) for n in sizes] +
                                 [np.zeros(0)])
        else:
            idx = np.arange(sum(sizes))
        self.idx = idx.astype(np.uint64)

    def words(self, t, site):
        if self.wrong == "step":
            t += 1
        if self.wrong == "site":
            site ^= 1
        i = self.idx
        return philox4x32_10(
            (i & M32, i >> np.uint64(32), np.uint64(t % 2**32), site),
            (self.seed % 2**32, self.seed >> 32))

    def uniform(self, t, site, dt):
        return uniform(self.words(t, site), dt)

    def normal(self, t, site, dt):
        return normal(self.words(t, site), dt)


# ---- The binding, and what it does not expose (groups, chunk sizes) -------
SIZES = [0, 1, 7, 1000, 33001]
TOTAL = sum(SIZES)
OFFSETS = np.cumsum([0] + SIZES)

SITES = """
rule sites(lr = 0.5) {
  state z0 = randn()
  state u = 0, n = 0, n2 = 0, v = 0
  u = rand()
  let z = randn()
  n = z
  n2 = z * z
  v = rand()
  p -= lr * g
}
"""
SITE_KINDS = ["normal", "uniform", "normal", "uniform"]
SITE_STATES = ["z0", "u", "n", "n2", "v"]


class Raw:
    """Entry points of liboptim.so on a handle of our own (the binding's
    functions carry its argtypes): optimizers with a chunk size or parameter
    groups, and the C API's options and random descriptors."""

    class Options(ctypes.Structure):
        # optim.h: seed is the last field (KernelABI.h version 8).
        _fields_ = [("threads", ctypes.c_uint32),
                    ("chunk_size", ctypes.c_int64),
                    ("skip_non_finite", ctypes.c_int),
                    ("seed", ctypes.c_uint64)]

    class HyperValue(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_double)]

    class Group(ctypes.Structure):
        _fields_ = [("params", ctypes.POINTER(ctypes.c_void_p)),
                    ("sizes", ctypes.POINTER(ctypes.c_int64)),
                    ("num_params", ctypes.c_size_t),
                    ("hypers", ctypes.c_void_p),
                    ("num_hypers", ctypes.c_size_t)]

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        v, P = ctypes.c_void_p, ctypes.POINTER
        sig = {
            "optim_options_init": (P(Raw.Options),),
            "optim_optimizer_create_f32": (v, P(v), P(ctypes.c_int64),
                                           ctypes.c_size_t, P(Raw.Options),
                                           P(v)),
            "optim_optimizer_create_f64": (v, P(v), P(ctypes.c_int64),
                                           ctypes.c_size_t, P(Raw.Options),
                                           P(v)),
            "optim_optimizer_create_groups": (v, ctypes.c_int, P(Raw.Group),
                                              ctypes.c_size_t,
                                              P(Raw.Options), P(v)),
            "optim_rule_num_random": (v, P(ctypes.c_size_t)),
            "optim_rule_random": (v, ctypes.c_size_t, P(ctypes.c_char_p)),
        }
        for name, args in sig.items():
            fn = getattr(self.lib, name)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        self.lib.optim_last_error.restype = ctypes.c_char_p

    def check(self, status, what):
        if status != 0:
            raise RuntimeError("%s: status %d: %s" % (
                what, status, self.lib.optim_last_error().decode()))


def make_optimizer(om, raw, rule, params, seed, threads=1, chunk=None,
                   groups=None):
    """An om.Optimizer over `params`; with `chunk` or `groups` (a list of
    (first, end, {hyper: value})) created through the C API and wrapped."""
    if chunk is None and groups is None:
        return om.Optimizer(rule, params, threads=threads, seed=seed)
    opts = Raw.Options()
    raw.check(raw.lib.optim_options_init(ctypes.byref(opts)), "options")
    opts.threads = threads
    opts.seed = seed
    if chunk is not None:
        opts.chunk_size = chunk
    keep = []
    out = ctypes.c_void_p()
    if groups is None:
        groups = [(0, len(params), {})]
    table = (Raw.Group * len(groups))()
    for k, (first, end, hypers) in enumerate(groups):
        ps = params[first:end]
        ptrs = (ctypes.c_void_p * max(len(ps), 1))(
            *[p.ctypes.data if p.size else None for p in ps])
        sizes = (ctypes.c_int64 * max(len(ps), 1))(*[p.size for p in ps])
        hv = (Raw.HyperValue * max(len(hypers), 1))(
            *[Raw.HyperValue(n.encode(), v) for n, v in hypers.items()])
        keep += [ptrs, sizes, hv]
        table[k].params = ctypes.cast(ptrs, ctypes.POINTER(ctypes.c_void_p))
        table[k].sizes = ctypes.cast(sizes, ctypes.POINTER(ctypes.c_int64))
        table[k].num_params = len(ps)
        table[k].hypers = ctypes.cast(hv, ctypes.c_void_p)
        table[k].num_hypers = len(hypers)
    raw.check(raw.lib.optim_optimizer_create_groups(
        rule._handle, 1 if rule.dtype == "f64" else 0, table, len(groups),
        ctypes.byref(opts), ctypes.byref(out)), "create_groups")
    opt = object.__new__(om.Optimizer)
    opt.rule = rule
    opt._dtype = np.dtype(np.float64 if rule.dtype == "f64" else np.float32)
    opt.params = params
    opt._sizes = [p.size for p in params]
    opt._handle = out
    return opt


def global_state(opt, name):
    return np.concatenate([opt.state(i, name).ravel()
                           for i in range(len(SIZES))])


def run_sites(om, raw, rule, dt, seed, steps, **kw):
    """Steps the SITES rule; returns the optimizer and, per step, the states
    (global arrays)."""
    params = [np.zeros(n, dt) for n in SIZES]
    grads = [np.full(n, 0.25, dt) for n in SIZES]
    opt = make_optimizer(om, raw, rule, params, seed, **kw)
    seen = []
    for _ in range(steps):
        if not opt.step(grads):
            raise AssertionError("step skipped")
        seen.append({s: global_state(opt, s) for s in SITE_STATES})
    return opt, params, seen


def bits(a):
    return np.ascontiguousarray(a).tobytes()


def compare_sites(seen, draws, dt, first_step=1):
    """Worst normal error / tolerance, and the first mismatch (or None)."""
    worst = 0.0
    z0, s0 = draws.normal(1, 0, dt)
    for k, st in enumerate(seen):
        t = first_step + k
        for name, site in (("u", 1), ("v", 3)):
            want = draws.uniform(t, site, dt)
            if bits(st[name]) != bits(want):
                bad = int(np.argmax(st[name] != want))
                return worst, "%s at step %d differs first at index %d: " \
                    "%r, reference %r" % (name, t, bad, st[name][bad],
                                          want[bad])
        z, s = draws.normal(t, 2, dt)
        for name, value, ref, mod in (("n", st["n"], z, s),
                                      ("z0", st["z0"], z0, s0)):
            if value.size == 0:
                continue
            err = np.abs(value.astype(np.float64) - ref) / normal_tol(mod, dt)
            if not np.all(np.isfinite(err)):
                return worst, "%s at step %d is not finite" % (name, t)
            worst = max(worst, float(np.max(err)))
            if worst > 1:
                bad = int(np.argmax(err))
                return worst, "%s at step %d, index %d: %r, reference %r" % (
                    name, t, bad, value[bad], ref[bad])
        if bits(st["n2"]) != bits((st["n"] * st["n"]).astype(dt)):
            return worst, "n2 != n * n at step %d: let does not reuse the " \
                "draw" % t
    return worst, None


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def __call__(self, ok, text, why=None):
        print("%s %s%s" % ("PASS" if ok else "FAIL", text,
                           "" if ok or not why else ": " + why))
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def guard(self, text, fn):
        """Runs a check; an exception (a missing feature, a refused call)
        is its failure, not the end of the run."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported, not raised
            self(False, text, "%s: %s" % (type(e).__name__, e))


SEEDS = [0, 1, 2**32, 0x243f6a8885a308d3, 2**64 - 1]


def check_draws(om, raw, report, args):
    results = {}
    for dt, pn in ((np.float32, "f32"), (np.float64, "f64")):
        def one(dt=dt, pn=pn):
            rule = om.compile_source(SITES, rule="sites",
                                     f64=dt == np.float64, name="sites.optim")
            report(rule.random == SITE_KINDS, "%s Rule.random lists the "
                   "sites' kinds in source order" % pn,
                   "%r" % (rule.random,))
            for seed in SEEDS:
                steps = args.steps if seed == 0 else 3
                opt, _, seen = run_sites(om, raw, rule, dt, seed, steps)
                worst, why = compare_sites(seen, Draws(SIZES, seed,
                                                       args.wrong), dt)
                ok = why is None and opt.seed == seed
                if why is None and opt.seed != seed:
                    why = "Optimizer.seed is %d" % opt.seed
                report(ok, "%s draws of seed %#x, %d steps%s" % (
                    pn, seed, steps, ": uniform bit-exact, normal within "
                    "%.2f of the tolerance, let reuses a draw, state z0 = "
                    "randn() drawn at t = 1" % worst if ok else ""), why)
                if seed == 0:
                    results[pn] = seen
                elif seed == 1:
                    results[pn + "/1"] = seen
            check_invariance(om, raw, report, rule, dt, pn, results[pn],
                             args)
        report.guard("%s draws" % pn, one)
    return results


def check_invariance(om, raw, report, rule, dt, pn, base, args):
    steps = len(base)

    def same(seen):
        return len(seen) == steps and all(
            bits(a[s]) == bits(b[s]) for a, b in zip(seen, base)
            for s in SITE_STATES)

    configs = [
        ("3 threads", dict(threads=3)),
        ("chunk size 1000, 3 threads", dict(threads=3, chunk=1000)),
        ("chunk size 7", dict(threads=1, chunk=7)),
        ("two groups, 3 threads",
         dict(threads=3, chunk=1000,
              groups=[(0, 3, {}), (3, len(SIZES), {"lr": 0.125})])),
    ]
    for what, kw in configs:
        def one(what=what, kw=kw):
            _, _, seen = run_sites(om, raw, rule, dt, 0, steps, **kw)
            report(same(seen), "%s %s: the same bits as 1 thread" % (pn,
                                                                      what))
        report.guard("%s %s" % (pn, what), one)

    def resume():
        # Save after `half` steps, load into an optimizer of another seed on
        # copies of the parameters (save() writes states, not parameters).
        half = max(steps // 2, 1)
        opt, params, seen = run_sites(om, raw, rule, dt, 0, half)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "ckpt.safetensors")
            opt.save(path)
            copies = [p.copy() for p in params]
            other = om.Optimizer(rule, copies, seed=12345)
            other.load(path)
            restored = other.seed
            grads = [np.full(n, 0.25, dt) for n in SIZES]
            for _ in range(steps - half):
                other.step(grads)
                seen.append({s: global_state(other, s) for s in SITE_STATES})
            ok = same(seen) and restored == 0 and all(
                np.array_equal(a, b) for a, b in zip(copies, run_sites(
                    om, raw, rule, dt, 0, steps)[1]))
            report(ok, "%s save after %d steps, load into an optimizer of "
                   "seed 12345: seed %d restored, the same bits as the "
                   "uninterrupted run" % (pn, half, restored))

            # The step counter moved by 2^32: the counter's word 2 is
            # t mod 2^32, so the next step draws step half + 1's numbers.
            edit_step(path, half + 2**32)
            moved = om.Optimizer(rule, [p.copy() for p in params], seed=0)
            moved.load(path)
            moved.step(grads)
            got = {s: global_state(moved, s) for s in ("u", "v", "n")}
            ok = moved.step_count == half + 2**32 + 1 and all(
                bits(got[s]) == bits(base[half][s]) for s in got)
            report(ok, "%s step 2^32 + %d draws step %d's numbers"
                   % (pn, half + 1, half + 1))
    report.guard("%s save/load" % pn, resume)


def edit_step(path, step):
    """Rewrites the checkpoint's "step" metadata (safetensors: an 8-byte
    little-endian header length, the JSON header, the data, whose offsets
    are relative to its start)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["__metadata__"]["step"] = str(step)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])


# ---- Statistics of the kernel's draws --------------------------------------
def ks_uniform(x):
    x = np.sort(x.astype(np.float64))
    n = x.size
    i = np.arange(1, n + 1)
    return max(float(np.max(i / n - x)), float(np.max(x - (i - 1) / n)))


def ks_normal(x):
    x = np.sort(x.astype(np.float64))
    n = x.size
    erf = np.frompyfunc(math.erf, 1, 1)
    cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))
    i = np.arange(1, n + 1)
    return max(float(np.max(i / n - cdf)), float(np.max(cdf - (i - 1) / n)))


def ks_threshold(n, alpha=1e-6):
    # Kolmogorov's tail: P(sqrt(n) D > x) ~ 2 exp(-2 x^2).
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def corr(x, y):
    x = x.astype(np.float64) - np.mean(x, dtype=np.float64)
    y = y.astype(np.float64) - np.mean(y, dtype=np.float64)
    return float(np.sum(x * y) / math.sqrt(np.sum(x * x) * np.sum(y * y)))


def check_statistics(report, results):
    for pn in ("f32", "f64"):
        seen = results.get(pn)
        if not seen:
            report(False, "%s statistics" % pn, "no draws")
            continue
        u = np.concatenate([s["u"] for s in seen])
        v = np.concatenate([s["v"] for s in seen])
        z = np.concatenate([s["n"] for s in seen])
        z0 = seen[0]["z0"]
        for name, x, mean, var, mu4 in (
                ("uniform u", u, 0.5, 1 / 12, 1 / 80),
                ("uniform v", v, 0.5, 1 / 12, 1 / 80),
                ("normal n", z, 0.0, 1.0, 3.0),
                ("normal z0", z0, 0.0, 1.0, 3.0)):
            m = x.size
            xm = float(np.mean(x, dtype=np.float64))
            xv = float(np.var(x.astype(np.float64)))
            zm = (xm - mean) / math.sqrt(var / m)
            zv = (xv - var) / math.sqrt((mu4 - var * var) / m)
            if name.startswith("uniform"):
                d = ks_uniform(x)
                inside = bool(np.all((x >= 0) & (x < 1)))
                bound = "in [0, 1)"
            else:
                d = ks_normal(x)
                inside = bool(np.all(np.isfinite(x))) and (
                    pn == "f64" or float(np.max(np.abs(x))) <=
                    F32_NORMAL_BOUND + 1e-6)
                bound = "finite" if pn == "f64" else \
                    "|z| <= %.4f (max %.4f)" % (F32_NORMAL_BOUND,
                                                 float(np.max(np.abs(x))))
            lim = ks_threshold(m)
            ok = abs(zm) <= 5 and abs(zv) <= 5 and d <= lim and inside
            report(ok, "%s %s, %d draws: mean %+.2f and variance %+.2f "
                   "standard errors off, KS %.5f (limit %.5f), %s"
                   % (pn, name, m, zm, zv, d, lim, bound))
        per = seen[0]["u"].size
        pairs = [
            ("sites u, v", u, v),
            ("sites u, n", u, z),
            ("steps t, t + 1 (n)", z[:-per], z[per:]),
            ("steps t, t + 1 (u)", u[:-per], u[per:]),
            ("coordinates i, i + 1 (n)",
             np.concatenate([s["n"][:-1] for s in seen]),
             np.concatenate([s["n"][1:] for s in seen])),
        ]
        other = results.get(pn + "/1")
        if other:
            k = min(len(other), len(seen))
            pairs.append(("seeds 0, 1 (n)",
                          np.concatenate([s["n"] for s in seen[:k]]),
                          np.concatenate([s["n"] for s in other[:k]])))
        worst = 0.0
        text = []
        for name, x, y in pairs:
            r = corr(x, y) * math.sqrt(x.size)
            worst = max(worst, abs(r))
            text.append("%s %+.2f" % (name, r))
        report(worst <= 5, "%s correlations within 5 standard errors: %s"
               % (pn, ", ".join(text)))


# ---- Rules of the literature that draw their own noise ---------------------
def f32able(a):
    return a.astype(np.float32).astype(np.float64)


class Case:
    """A rule of examples/ or the literature file, its hyperparameters (set
    away from the defaults), its states and a reference step
    ref(dt, h, t, p, g, st, draws) -> (new p, noise bound per coordinate)."""

    def __init__(self, name, where, hypers, states, ref):
        self.name, self.where, self.hypers = name, where, hypers
        self.states, self.ref = states, ref


def ref_sgld(dt, h, t, p, g, st, draws):
    # Welling & Teh (2011), eq. 4: half a step down the negative log
    # posterior's gradient, plus N(0, lr * temperature).
    z, s = draws.normal(t, 0, dt)
    c = np.sqrt(dt(h["lr"]) * dt(h["temperature"]))
    new = p - (dt(0.5) * dt(h["lr"]) * g - c * z.astype(dt))
    return new, abs(float(c)) * (normal_tol(s, dt) + EPS[dt] * np.abs(z))


def ref_psgld(dt, h, t, p, g, st, draws):
    # Li et al. (2016), Algorithm 1 without Gamma: RMSprop's V, the
    # preconditioner G = 1 / (lambda + sqrt(V)), step lr / 2 * G g and noise
    # N(0, lr G).
    a, lam, lr = dt(h["alpha"]), dt(h["lam"]), dt(h["lr"])
    st["v"] = a * st["v"] + (dt(1) - a) * g * g
    G = dt(1) / (lam + np.sqrt(st["v"]))
    z, s = draws.normal(t, 0, dt)
    c = np.sqrt(lr * G)
    new = p - (dt(0.5) * lr * G * g - c * z.astype(dt))
    return new, np.abs(c.astype(np.float64)) * (normal_tol(s, dt) +
                                                 EPS[dt] * np.abs(z))


def ref_noisy_sgd(dt, h, t, p, g, st, draws):
    # Neelakantan et al. (2015): g + N(0, eta / (1 + t)^gamma), then SGD.
    eta, gamma, lr = dt(h["eta"]), dt(h["gamma"]), dt(h["lr"])
    sigma = np.sqrt(eta / (dt(1) + dt(t)) ** gamma)
    z, s = draws.normal(t, 0, dt)
    new = p - lr * (g + sigma * z.astype(dt))
    return new, abs(float(lr * sigma)) * (normal_tol(s, dt) +
                                          EPS[dt] * np.abs(z))


def ref_pgd(dt, h, t, p, g, st, draws):
    # Jin et al. (2017), Algorithm 2 (PGD): where the whole gradient's norm
    # is at most g_thres and no perturbation happened in the last t_thres
    # steps, the step is x + xi, xi uniform in the ball of radius r (a
    # direction z / |z| of i.i.d. normals, times r U^(1/d), U^(1/d) the
    # largest of d uniforms); else a gradient step. t_noise starts at
    # -t_thres - 1.
    lr, gt, tt, r = (dt(h[k]) for k in ("lr", "g_thres", "t_thres", "r"))
    if t == 1:
        st["last"] = np.full(p.size, -tt - dt(1), dt)
    gn = dt(math.sqrt(float(np.sum(np.square(g.astype(np.float64))))))
    z, s = draws.normal(t, 0, dt)
    zk = z.astype(dt)
    umax = dt(np.max(draws.uniform(t, 1, dt))) if p.size else dt(0)
    zn = dt(math.sqrt(float(np.sum(np.square(zk.astype(np.float64))))))
    radius = r * umax
    perturb = (gn <= gt) & (dt(t) - st["last"] > tt)
    st["last"] = np.where(perturb, dt(t), st["last"]).astype(dt)
    st["perturbed"] = st.get("perturbed", 0) + int(np.any(perturb))
    new = np.where(perturb, p + radius * zk / zn, p - lr * g).astype(dt)
    bound = np.where(perturb, float(radius) / max(float(zn), 1e-30) *
                     (normal_tol(s, dt) + EPS[dt] * np.abs(z)), 0.0)
    return new, bound


EX, LIT = "examples/sgld.optim", "literature.optim"
CASES = [
    Case("sgld", EX, {"lr": 2e-3, "temperature": 0.5}, [], ref_sgld),
    Case("sgld", LIT, {"lr": 2e-3, "temperature": 0.5}, [], ref_sgld),
    Case("psgld", LIT, {"lr": 1e-3, "alpha": 0.95, "lam": 1e-3}, ["v"],
         ref_psgld),
    Case("noisy_sgd", LIT, {"lr": 0.05, "eta": 0.3, "gamma": 0.5}, [],
         ref_noisy_sgd),
    Case("pgd", LIT, {"lr": 0.02, "g_thres": 1e-2, "t_thres": 3, "r": 0.1},
         ["last"], ref_pgd),
]
# PGD's gradient is tiny (norm below g_thres) at these steps.
SMALL_STEPS = {1, 4, 5, 9, 20, 21}
LIT_SEED = 0x9E3779B97F4A7C15


def drawing_rules(paths):
    """(file, rule) of every rule in examples/ and the literature file whose
    body calls rand() or randn()."""
    found = set()
    files = [(os.path.join("examples", f), os.path.join(paths["examples"], f))
             for f in sorted(os.listdir(paths["examples"]))
             if f.endswith(".optim")] + [(LIT, paths["literature"])]
    for label, path in files:
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"^(?:learned\s+)?rule\s+(\w+)[^{]*\{(.*?)^\}",
                             text, re.M | re.S):
            body = re.sub(r"//[^\n]*", "", m.group(2))
            if re.search(r"\brandn?\s*\(", body):
                found.add((label, m.group(1)))
    return found


def check_literature(om, report, paths, args):
    missing = drawing_rules(paths) - {(c.where, c.name) for c in CASES}
    for where, name in sorted(missing):
        report(False, "%s of %s draws random numbers and has no case here"
               % (name, where))
    rng = np.random.default_rng(2015)
    scale = f32able(10.0 ** rng.uniform(-2, 0.5, TOTAL))
    init = f32able(rng.normal(size=TOTAL))
    grads = []
    for t in range(1, args.steps + 1):
        g = f32able(rng.normal(size=TOTAL) * scale)
        if t in SMALL_STEPS:
            g = f32able(g * 1e-9)
        grads.append(g)
    for case in CASES:
        path = paths["examples"] + "/sgld.optim" if case.where == EX \
            else paths["literature"]
        for dt, pn in ((np.float32, "f32"), (np.float64, "f64")):
            def one(case=case, path=path, dt=dt, pn=pn):
                rule = om.compile_file(path, rule=case.name,
                                       f64=dt == np.float64)
                params = [init[OFFSETS[i]:OFFSETS[i + 1]].astype(dt)
                          for i in range(len(SIZES))]
                opt = om.Optimizer(rule, params, seed=LIT_SEED)
                for k, v in case.hypers.items():
                    opt.set(k, v)
                draws = Draws(SIZES, LIT_SEED, args.wrong)
                p = init.astype(dt)
                st = {s: np.zeros(TOTAL, dt) for s in case.states}
                noise = np.zeros(TOTAL)
                for t, g in enumerate(grads, 1):
                    gk = g.astype(dt)
                    opt.step([gk[OFFSETS[i]:OFFSETS[i + 1]]
                              for i in range(len(SIZES))])
                    p, bound = case.ref(dt, case.hypers, t, p, gk, st, draws)
                    noise += bound
                got = {"p": np.concatenate(params)}
                want = {"p": p}
                for s in case.states:
                    got[s] = global_state(opt, s)
                    want[s] = st[s]
                worst = 0.0
                rtol = 1e-5 if dt == np.float32 else 1e-12
                for q in got:
                    a = got[q].astype(np.float64)
                    b = want[q].astype(np.float64)
                    for i in range(len(SIZES)):
                        lo, hi = OFFSETS[i], OFFSETS[i + 1]
                        if hi == lo:
                            continue
                        if not np.all(np.isfinite(a[lo:hi])):
                            worst = float("inf")
                            continue
                        tol = (rtol * np.abs(b[lo:hi]) + 16 * EPS[dt] *
                               np.max(np.abs(b[lo:hi])) +
                               (noise[lo:hi] if q == "p" else 0.0))
                        worst = max(worst, float(np.max(
                            np.abs(a[lo:hi] - b[lo:hi]) /
                            np.maximum(tol, 1e-300))))
                extra = ", %d perturbations" % st["perturbed"] \
                    if "perturbed" in st else ""
                kinds = ["normal", "uniform"][:1 + (case.name == "pgd")]
                report(worst <= 1 and rule.random == kinds,
                       "%s %s (%s): %d steps, worst %.3g of the tolerance%s"
                       % (pn, case.name, case.where, args.steps, worst,
                          extra), None if rule.random == kinds else
                       "Rule.random is %r" % (rule.random,))
            report.guard("%s %s (%s)" % (pn, case.name, case.where), one)


# ---- Misuse -----------------------------------------------------------------
def check_misuse(om, raw, report):
    failures = []
    rule = om.compile_source(SITES, rule="sites", name="sites.optim")
    p = [np.zeros(3, np.float32)]
    cases = [
        ("seed -1", -1, ValueError),
        ("seed 2^64", 2**64, ValueError),
        ("seed 1.5", 1.5, TypeError),
        ("seed '3'", "3", TypeError),
        ("seed True", True, TypeError),
        ("seed None", None, TypeError),
    ]
    for what, seed, exc in cases:
        try:
            om.Optimizer(rule, p, seed=seed)
            failures.append("%s: no error" % what)
        except exc as e:
            if "seed" not in str(e):
                failures.append("%s: %r does not name the seed" % (what,
                                                                   str(e)))
        except Exception as e:  # noqa: BLE001 - reported, not raised
            failures.append("%s: %s instead of %s: %s"
                            % (what, type(e).__name__, exc.__name__, e))
    checks = len(cases)

    checks += 1
    if om.Optimizer(rule, p).seed != 0:
        failures.append("the default seed is not 0")
    checks += 1
    if om.Optimizer(rule, p, seed=np.uint64(2**64 - 1)).seed != 2**64 - 1:
        failures.append("seed np.uint64(2^64 - 1) is not kept")

    # The C API: optim_options_init sets seed 0 (the struct's last field),
    # optim_rule_random refuses an index past the sites.
    checks += 1
    opts = Raw.Options()
    opts.seed = 77
    raw.lib.optim_options_init(ctypes.byref(opts))
    if opts.seed != 0:
        failures.append("optim_options_init leaves seed %d" % opts.seed)
    checks += 2
    count = ctypes.c_size_t(99)
    if raw.lib.optim_rule_num_random(rule._handle, ctypes.byref(count)) != 0 \
            or count.value != len(SITE_KINDS):
        failures.append("optim_rule_num_random gives %d" % count.value)
    kind = ctypes.c_char_p(b"unchanged")
    if raw.lib.optim_rule_random(rule._handle, len(SITE_KINDS),
                                 ctypes.byref(kind)) == 0:
        failures.append("optim_rule_random accepts index %d" %
                        len(SITE_KINDS))

    # A rule that draws nothing: no sites, and the seed changes nothing.
    checks += 2
    plain = om.compile_source("rule sgd(lr = 0.1) {\n  p -= lr * g\n}\n",
                              rule="sgd")
    if plain.random != []:
        failures.append("Rule.random of sgd is %r" % (plain.random,))
    out = []
    for seed in (0, 2**64 - 1):
        q = [np.linspace(-1, 1, 7, dtype=np.float32)]
        o = om.Optimizer(plain, q, seed=seed)
        o.step([np.ones(7, np.float32)])
        out.append(q[0].tobytes())
    if out[0] != out[1]:
        failures.append("the seed changes a rule that draws nothing")
    for f in failures:
        report(False, "misuse: " + f)
    print("misuse: %d checks, %d failures" % (checks, len(failures)))
    report.passed += checks - len(failures)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--literature", required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--wrong", choices=("seed", "site", "step", "index"),
                    help="the reference draws wrongly (the run must fail)")
    args = ap.parse_args()
    check_kat()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "..", "..", "python"))
    import optim_mlir as om
    om.load(args.library)
    raw = Raw(args.library)
    paths = {"examples": args.examples, "literature": args.literature}
    print("sizes %s, %d steps, seeds %s" % (
        " ".join(map(str, SIZES)), args.steps,
        " ".join("%#x" % s for s in SEEDS)))
    report = Report()
    results = check_draws(om, raw, report, args)
    report.guard("statistics", lambda: check_statistics(report, results))
    report.guard("literature", lambda: check_literature(om, report, paths,
                                                        args))
    report.guard("misuse", lambda: check_misuse(om, raw, report))
    print("%d passed, %d failed" % (report.passed, report.failed))
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
