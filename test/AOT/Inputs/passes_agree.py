#!/usr/bin/env python3
"""The two passes of a rule with reductions compute a reduced value bit for
bit alike, for every vector width and with --relaxed-fp (KernelABI.h,
version 6; the lowering keeps the ops of a reduced value out of FMA
contraction for this).

Compiles Inputs/argmax.optim with `optimc --emit=shared` and the given
flags, then drives its kernels through the ABI with ctypes: tensors of 1, 5,
17, 100, 1000, 33 and 7001 coordinates in chunks of 64, the first pass,
the partials combined per tensor (max and min), the second pass. The rule
sets p to 1 where u equals its tensor's maximum and adds 10 where w equals
its minimum: each tensor sums to exactly 11 only if both passes agree.

Usage: passes_agree.py OPTIMC RULE.optim TMPDIR [--nudge] [optimc flags...]
(--nudge moves every reduced value one float32 ulp up before the second
pass: the check must then fail.) Prints "passes agree: N tensors x S steps"
or the tensors that do not, and exits 1."""

import ctypes
import json
import os
import subprocess
import sys

import numpy as np

SIZES = (1, 5, 17, 100, 1000, 33, 7001)
CHUNK = 64
STEPS = 5


def main():
    optimc, source, tmp = sys.argv[1:4]
    flags = [f for f in sys.argv[4:] if f != "--nudge"]
    nudge = "--nudge" in sys.argv[4:]
    lib = os.path.join(tmp, "argmax%s.so" % "".join(
        f.replace("=", "").replace("-", "") for f in flags))
    subprocess.run([optimc, source, "--emit=shared", "-o", lib] + flags,
                   check=True)
    manifest = json.load(open(lib[:-3] + ".manifest.json"))
    kinds = [r["kind"] for r in manifest["reductions"]]
    so = ctypes.CDLL(lib)
    reduce_kernel = getattr(so, "optim_reduce_" + manifest["rule"])
    rule_kernel = getattr(so, manifest["symbol"])
    reduce_kernel.restype = rule_kernel.restype = None
    hypers = [h["default"] for h in manifest["hyperparameters"]]

    rng = np.random.default_rng(7)
    p = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    m = [np.zeros(n, np.float32) for n in SIZES]
    bad = []
    for step in range(1, STEPS + 1):
        g = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
        ptrs, lengths, strides, tensor = [], [], [], []
        for i, n in enumerate(SIZES):
            for begin in range(0, n, CHUNK):
                ptrs += [a.ctypes.data + 4 * begin for a in (p[i], g[i], m[i])]
                lengths.append(min(CHUNK, n - begin))
                strides.append(n)
                tensor.append(i)
        chunks, r = len(lengths), len(kinds)
        args = [(ctypes.c_void_p * len(ptrs))(*ptrs),
                (ctypes.c_int64 * chunks)(*lengths),
                (ctypes.c_int64 * chunks)(*strides),
                ctypes.c_int64(0), ctypes.c_int64(chunks),
                (ctypes.c_double * len(hypers))(*hypers),
                ctypes.c_int64(step), None]
        # One call of the reduce kernel per level (KernelABI.h, version 9:
        # `reduced` and `stage` before `rng`), each followed by the combine
        # of that level's slots; argmax.optim has level 0 only.
        levels = [red.get("level", 0) for red in manifest["reductions"]]
        partials = (ctypes.c_double * (chunks * r))()
        reduced = [float("nan")] * (chunks * r)
        for stage in range(max(levels) + 1):
            reduce_kernel(*args, partials,
                          (ctypes.c_double * len(reduced))(*reduced)
                          if stage else None,
                          ctypes.c_int64(stage), None)
            totals = {}
            for c in range(chunks):
                for k, kind in enumerate(kinds):
                    if levels[k] != stage:
                        continue
                    x = partials[c * r + k]
                    old = totals.get((tensor[c], k))
                    totals[(tensor[c], k)] = x if old is None else \
                        (max(old, x) if kind == "max" else min(old, x))
            for (i, k), value in totals.items():
                for c in range(chunks):
                    if tensor[c] == i:
                        reduced[c * r + k] = value
        if nudge:
            reduced = [float(np.nextafter(np.float32(x), np.float32(np.inf)))
                       for x in reduced]
        rule_kernel(*args, (ctypes.c_double * len(reduced))(*reduced), None)
        for i in range(len(SIZES)):
            if float(np.sum(p[i], dtype=np.float64)) != 11.0:
                bad.append("step %d tensor %d (%d coordinates): p sums to %g"
                           % (step, i, SIZES[i], np.sum(p[i])))
            # Fresh parameters for the next step, as in training.
            p[i] = rng.standard_normal(SIZES[i]).astype(np.float32)
    if bad:
        print("passes disagree: " + "; ".join(bad[:5]))
        return 1
    print("passes agree: %d tensors x %d steps" % (len(SIZES), STEPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
