#!/usr/bin/env python3
"""Oracle test: floor, ceil, cos, sin and mod against numpy (via liboptim.so).

mod(x, y) is documented as np.mod: the remainder of the division rounded
toward minus infinity, with the sign of y (docs/language.md, section 6). This
compares the compiled kernels with numpy on awkward inputs, in float32 and
float64, over tensors of sizes 1, 7, 1000 and 33001 (the vector loop, the
scalar tail and two chunks of the CPU executor):

- mod of per-coordinate values (the kernel's vector and scalar loops), bit
  for bit, signs of zeros included: every sign combination of x and y, x a
  multiple of y, |x| below, at and far above |y| (x / y up to 1e38 in
  float32, where x - y * floor(x / y) loses every digit), negative x so
  small that x + y rounds to y (numpy, too, then returns y), subnormals,
  infinite x or y, y = +-0 and NaN, then random values over 12 decades;
- the same of a vector state (elementwise on vectors);
- mod(t, k) and floor(t / k), values of the step computed once per call, at
  steps from 1 to 3 * 2^50 (an optimizer checkpoint whose step counter is
  rewritten): t above 2^24 is rounded to float32 as numpy rounds it, and k
  takes the values 7, -3, 0.75 and 1e-3;
- floor and ceil bit for bit; cos and sin within COS_ULPS units in the last
  place of numpy's result (numpy has its own float32 code, the kernel calls
  libm: they differ by an ulp here and there), arguments up to 1e30;
- cbrt (the real cube root, negative x included) within CBRT_ULPS ulps of
  np.cbrt, zeros, infinities and NaN included; atan and atan2 within
  ATAN_ULPS of np.arctan and np.arctan2, atan2's special cases (signed
  zeros, infinities, NaN: the pairs of mod) included; isfinite (and 'not' of it)
  as np.isfinite; pi and -inf as constants (nothing compares below -inf).

Prints one line per check and precision, then "N passed, M failed"; exits 1
if any failed.
"""

import argparse
import json
import os
import struct
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "python"))
import optim_mlir  # noqa: E402

SIZES = (1, 7, 1000, 33001)
SEED = 20261127
COS_ULPS = 2
# glibc's cbrt, which the kernel calls, is within about 3 ulps of the exact
# root in float64 (numpy's own code within 1-2): 5 bounds their difference.
CBRT_ULPS = 5
# atan and atan2: libm's (glibc: within 1 ulp) against numpy's (which calls
# the same libm or its own SIMD code: within 1 ulp).
ATAN_ULPS = 2
DTYPES = {"f32": np.float32, "f64": np.float64}

SOURCE = """
rule check(k = 7) {
  state md = 0, fl = 0, ce = 0, co = 0, si = 0, mt = 0, ft = 0
  state vm[3] = 2.5
  state cb = 0, fi = 0, ip = 0, at = 0, a2 = 0
  cb = cbrt(p)
  at = atan(p)
  a2 = atan2(p, g)
  fi = select(isfinite(p), 1, 0) + select(not isfinite(g), 2, 0)
  ip = select(p < -inf or p > inf, 0, pi)
  md = mod(p, g)
  vm = mod(vm * p, g)
  fl = floor(p)
  ce = ceil(p)
  co = cos(p)
  si = sin(p)
  mt = mod(t, k)
  ft = floor(t / k)
  p = p
}
"""

# Steps at which mod(t, k) and floor(t / k) are checked, and the values of k.
STEPS = (1, 2, 7, 8, 2**24 - 1, 2**24 + 1, 2**24 + 3, 10**9 + 7, 2**31 + 5,
         2**40 + 3, 3 * 2**50 + 1)
KS = (7.0, -3.0, 0.75, 1e-3)


# --naive: mod as the formula x - y * floor(x / y), which rounds twice.
NAIVE = {"mod(p, g)": "p - g * floor(p / g)",
         "mod(vm * p, g)": "vm * p - g * floor(vm * p / g)",
         "mod(t, k)": "t - k * floor(t / k)"}


def awkward_pairs(dtype):
    """(x, y) pairs for mod, as float64 values exact in `dtype`."""
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    big = float(info.max)
    inf, nan = np.inf, np.nan
    pairs = []
    for x in (5.5, -5.5, 6.0, -6.0, 0.0, -0.0, 1.0, -1.0, 2.75, -2.75):
        for y in (3.0, -3.0, 2.75, -2.75, 1.0, -1.0):
            pairs.append((x, y))
    pairs += [
        (12.0, 3.0), (-12.0, 3.0), (12.0, -3.0), (-12.0, -3.0),  # multiples
        (1e-30, 3.0), (-1e-30, 3.0), (1e-30, -3.0), (-1e-30, -3.0),
        (-1e-8, 3.0), (1e-8, -3.0),  # x + y rounds to y
        (1e30, 3.3), (-1e30, 3.3), (1e30, -3.3), (1e30, 1e-30),
        (3e38 if dtype == np.float32 else 1e300, 7.0),
        (-big, big), (big, -big), (big, tiny), (-big, tiny),
        (tiny, 1.0), (-tiny, 1.0), (tiny, -1.0), (3 * tiny, 2 * tiny),
        (-3 * tiny, 2 * tiny), (1.0, tiny),
        (5.0, inf), (-5.0, inf), (5.0, -inf), (-5.0, -inf), (0.0, -inf),
        (-0.0, inf), (inf, 3.0), (-inf, 3.0), (inf, inf), (inf, -inf),
        (5.0, 0.0), (5.0, -0.0), (0.0, 0.0), (-5.0, 0.0),
        (nan, 3.0), (3.0, nan), (nan, nan), (nan, 0.0),
        (16777217.0, 7.0), (2.0**24, 0.75), (123456789.0, 1e-3),
        (-123456789.0, 1e-3), (0.1, 0.01), (-0.1, 0.01), (0.7, 0.1),
    ]
    return pairs


def inputs(dtype, total, rng):
    """p (x) and g (y) over all tensors: the awkward pairs at the start of
    every tensor where they fit and of the whole run, random values after."""
    pairs = awkward_pairs(dtype)
    mag = lambda n: 10.0 ** rng.uniform(-6, 6, n)
    x = rng.standard_normal(total) * mag(total)
    y = rng.standard_normal(total) * mag(total)
    # Integers, as a step count would be, against integer and other moduli.
    ints = rng.integers(-2**20, 2**20, total // 4)
    x[: ints.size] = ints
    x = x.astype(dtype)
    y = y.astype(dtype)
    offsets = np.cumsum((0,) + SIZES)
    for lo, hi in zip(offsets[:-1], offsets[1:]):
        n = min(len(pairs), hi - lo)
        x[lo:lo + n] = [a for a, _ in pairs[:n]]
        y[lo:lo + n] = [b for _, b in pairs[:n]]
    # The last tensor's tail too: its scalar loop.
    n = len(pairs)
    x[-n:] = [a for a, _ in pairs]
    y[-n:] = [b for _, b in pairs]
    return x, y


def same_bits(a, b):
    """Equal values with equal signs of zero; NaN equals NaN."""
    both_nan = np.isnan(a) & np.isnan(b)
    equal = (a == b) & (np.signbit(a) == np.signbit(b))
    return both_nan | equal


def ulps(a, b):
    """|a - b| in units of the spacing of b (infinite if one is NaN)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    spacing = np.spacing(np.abs(b)).astype(np.float64)
    d = np.abs(a64 - b64) / spacing
    d[np.isnan(a) != np.isnan(b)] = np.inf
    d[np.isnan(a) & np.isnan(b)] = 0
    return d


def set_step(path, step):
    """Rewrites the step counter of an optimizer checkpoint (safetensors:
    an 8-byte header length, a JSON header, then the tensors' bytes, which
    the header addresses relative to its end)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["step"] = str(step)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what, detail):
        print("%s %s%s" % ("PASS" if ok else "FAIL", what,
                            "" if ok else "; " + detail))
        self.passed += ok
        self.failed += not ok


def first_mismatch(mask, x, y, a, b):
    """How many values differ, and the first that differs by more than the
    sign of a zero (else the first)."""
    bad = ~mask
    wrong = bad & ~((a == b) | (np.isnan(a) & np.isnan(b)))
    j = int(np.argmax(wrong)) if wrong.any() else int(np.argmax(bad))
    return "%d values differ (%d not only in the sign of 0); at %d: x %r, " \
        "y %r: kernel %r, numpy %r" % (bad.sum(), wrong.sum(), j, x[j], y[j],
                                       a[j], b[j])


def run(precision, report, tmpdir, source):
    dtype = DTYPES[precision]
    rule = optim_mlir.compile_source(source, f64=precision == "f64",
                                     name="check.optim")
    rng = np.random.default_rng(SEED)
    offsets = np.cumsum((0,) + SIZES)
    x, y = inputs(dtype, int(offsets[-1]), rng)
    params = [x[lo:hi].copy() for lo, hi in zip(offsets[:-1], offsets[1:])]
    grads = [y[lo:hi].copy() for lo, hi in zip(offsets[:-1], offsets[1:])]
    opt = optim_mlir.Optimizer(rule, params, threads=1)
    with np.errstate(all="ignore"):
        opt.step(grads)
        state = lambda name: np.concatenate(
            [opt.state(i, name) for i in range(len(SIZES))], axis=-1)
        expected_md = np.mod(x, y)
        md = state("md")
        ok = same_bits(md, expected_md)
        report.check(ok.all(), "%s mod(x, y) == np.mod, %d values"
                     % (precision, x.size),
                     first_mismatch(ok, x, y, md, expected_md))
        vx = dtype(2.5) * x
        vm = state("vm")
        expected_vm = np.mod(vx, y)
        ok = np.all([same_bits(vm[i], expected_vm) for i in range(3)], axis=0)
        report.check(ok.all(), "%s mod of a vector state == np.mod"
                     % precision, first_mismatch(ok, vx, y, vm[0],
                                                 expected_vm))
        for name, fn in (("fl", np.floor), ("ce", np.ceil)):
            got, want = state(name), fn(x)
            ok = same_bits(got, want)
            report.check(ok.all(), "%s %s(x) == np.%s"
                         % (precision, fn.__name__, fn.__name__),
                         first_mismatch(ok, x, x, got, want))
        for name, fn in (("co", np.cos), ("si", np.sin)):
            got, want = state(name), fn(x)
            d = ulps(got, want)
            j = int(np.argmax(d))
            report.check(d.max() <= COS_ULPS,
                         "%s %s(x) within %d ulps of np.%s (worst %.0f)"
                         % (precision, fn.__name__, COS_ULPS, fn.__name__,
                            d.max()),
                         "at %d: x %r: kernel %r, numpy %r"
                         % (j, x[j], got[j], want[j]))

        got, want = state("cb"), np.cbrt(x)
        d = np.where(same_bits(got, want), 0, ulps(got, want))
        j = int(np.argmax(d))
        report.check(d.max() <= CBRT_ULPS and (got < 0).sum() > 0,
                     "%s cbrt(x) within %d ulps of np.cbrt (worst %.0f)"
                     % (precision, CBRT_ULPS, d.max()),
                     "at %d: x %r: kernel %r, numpy %r"
                     % (j, x[j], got[j], want[j]))
        for name, want, what in (
                ("at", np.arctan(x), "atan(x) within %d ulps of np.arctan"),
                ("a2", np.arctan2(x, y),
                 "atan2(x, y) within %d ulps of np.arctan2 (zeros, "
                 "infinities, NaN of every sign)")):
            got = state(name)
            d = np.where(same_bits(got, want), 0, ulps(got, want))
            j = int(np.argmax(d))
            report.check(d.max() <= ATAN_ULPS,
                         "%s %s (worst %.0f)"
                         % (precision, what % ATAN_ULPS, d.max()),
                         "at %d: x %r, y %r: kernel %r, numpy %r"
                         % (j, x[j], y[j], got[j], want[j]))
        got = state("fi")
        want = (np.isfinite(x) * 1 + ~np.isfinite(y) * 2).astype(dtype)
        ok = same_bits(got, want)
        report.check(ok.all() and (~np.isfinite(y)).any(),
                     "%s isfinite(x) == np.isfinite" % precision,
                     first_mismatch(ok, x, y, got, want))
        got = state("ip")
        ok = got == dtype(np.pi)
        report.check(ok.all(), "%s pi and -inf are constants" % precision,
                     first_mismatch(ok, x, y, got,
                                    np.full_like(got, np.pi)))

    # mod(t, k) and floor(t / k): values of the step, computed once per call.
    path = os.path.join(tmpdir, "check-%s.safetensors" % precision)
    bad = []
    for step in STEPS:
        for k in KS:
            opt.save(path)
            set_step(path, step - 1)
            opt.load(path)
            opt.set("k", k)
            opt.step(grads)
            if opt.step_count != step:
                bad.append("step count %d, not %d" % (opt.step_count, step))
                continue
            tf, kf = dtype(step), dtype(k)
            for name, want in (("mt", np.mod(tf, kf)),
                               ("ft", np.floor(tf / kf))):
                got = opt.state(len(SIZES) - 1, name)
                ok = same_bits(got, np.full_like(got, want))
                if not ok.all():
                    bad.append("t %d, k %r: %s %r, numpy %r"
                               % (step, k, name, got[int(np.argmin(ok))],
                                  want))
    report.check(not bad, "%s mod(t, k) and floor(t / k) == numpy at %d "
                 "steps up to %d, k in %s"
                 % (precision, len(STEPS), STEPS[-1], KS),
                 "; ".join(bad[:3]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", help="liboptim.so (else $OPTIM_LIBRARY)")
    parser.add_argument("--naive", action="store_true",
                        help="compute mod as x - y * floor(x / y) in the "
                        "kernel (shows that the comparison can fail)")
    args = parser.parse_args()
    optim_mlir.load(args.library)
    source = SOURCE
    if args.naive:
        for call, formula in NAIVE.items():
            source = source.replace(call, formula)
    print("numpy %s; sizes %s" % (np.__version__,
                                  ", ".join(map(str, SIZES))))
    report = Report()
    with tempfile.TemporaryDirectory() as tmpdir:
        for precision in DTYPES:
            run(precision, report, tmpdir, source)
    print("%d passed, %d failed" % (report.passed, report.failed))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
