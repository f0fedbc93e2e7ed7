#!/usr/bin/env python3
"""Wrong calls through python/optim_mlir.py: each raises (OptimError with
the C API's status and message, or TypeError/ValueError before the C API is
reached), and changes nothing: after them the optimizer steps exactly as a
twin that never saw them.

Usage: api_misuse.py LIBOPTIM EXAMPLES_DIR"""

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

library, examples = sys.argv[1:3]
optim_mlir.load(library)
failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAILED:", what, file=sys.stderr)


def expect_raises(fn, kind, needle, what, status=None):
    try:
        fn()
    except kind as e:
        text = e.message if isinstance(e, optim_mlir.OptimError) else str(e)
        check(needle in text and (status is None or e.status_name == status),
              "%s: got %r" % (what, e))
        return
    except Exception as e:  # the wrong kind of error
        check(False, "%s: got %r" % (what, e))
        return
    check(False, what + ": no error")


def snapshot(opt):
    parts = [p.tobytes() for p in opt.params]
    for i in range(len(opt.params)):
        for name in opt.rule.states:
            parts.append(opt.state(i, name).tobytes())
    parts.append(str(opt.step_count).encode())
    parts += [repr(opt.get(h)).encode() for h in opt.rule.hypers]
    return b"|".join(parts)


adam = optim_mlir.compile_file(os.path.join(examples, "adam.optim"))
w = np.linspace(-1, 1, 50).astype(np.float32)
b = np.zeros(3, np.float32)
twin_w, twin_b = w.copy(), b.copy()
# Thread counts that ctypes would wrap silently into other numbers, or take
# as 1 (True); a float is not a count.
for threads in (-1, 2**32, 2**40):
    expect_raises(lambda: optim_mlir.Optimizer(adam, [w], threads=threads),
                  ValueError, "threads must be in [0, 2**32)",
                  "threads=%r" % (threads,))
for threads in (1.5, True):
    expect_raises(lambda: optim_mlir.Optimizer(adam, [w], threads=threads),
                  TypeError, "threads must be an int",
                  "threads=%r" % (threads,))
expect_raises(lambda: optim_mlir.Optimizer(adam, [w], threads=5000),
              optim_mlir.OptimError, "threads must be at most 1024",
              "threads=5000", "OPTIM_ERROR_INVALID_ARGUMENT")
expect_raises(lambda: optim_mlir.Optimizer(adam, [w, w]),
              optim_mlir.OptimError, "overlap in memory", "a parameter twice",
              "OPTIM_ERROR_INVALID_ARGUMENT")

opt = optim_mlir.Optimizer(adam, [w, b], threads=2)
twin = optim_mlir.Optimizer(adam, [twin_w, twin_b])
gw = np.sin(np.arange(50, dtype=np.float32))
gb = np.ones(3, np.float32)
opt.step([gw, gb])
twin.step([gw, gb])
before = snapshot(opt)

invalid = "OPTIM_ERROR_INVALID_ARGUMENT"
expect_raises(lambda: opt.step([w, gb]), optim_mlir.OptimError,
              "gradient 0 overlaps parameter 0 in memory", "g aliases p",
              invalid)
expect_raises(lambda: opt.step([gw, w[:3]]), optim_mlir.OptimError,
              "gradient 1 overlaps parameter 0 in memory",
              "g aliases another p", invalid)
expect_raises(lambda: opt.step([gw]), optim_mlir.OptimError,
              "expected 2 gradients", "one gradient short", invalid)
expect_raises(lambda: opt.step([gw, gb[:2]]), optim_mlir.OptimError,
              "gradient 1 has 2 elements but its parameter has 3",
              "short gradient", invalid)
expect_raises(lambda: opt.step([gw.astype(np.float64), gb]), TypeError,
              "has dtype float64", "float64 gradient")
expect_raises(lambda: opt.step([np.zeros(100, np.float32)[::2], gb]),
              ValueError, "not C-contiguous", "strided gradient")
expect_raises(lambda: opt.step([list(gw), gb]), TypeError,
              "not a numpy array", "a list as gradient")
expect_raises(lambda: opt.set("lr", math.nan), optim_mlir.OptimError,
              "'lr' must be finite", "NaN lr", invalid)
expect_raises(lambda: opt.set("lr", math.inf), optim_mlir.OptimError,
              "'lr' must be finite", "inf lr", invalid)
expect_raises(lambda: opt.set("nope", 1.0), optim_mlir.OptimError,
              "has no hyperparameter 'nope'", "unknown hyperparameter",
              "OPTIM_ERROR_NOT_FOUND")
expect_raises(lambda: opt.get("lr", 3), optim_mlir.OptimError,
              "group 3 does not exist", "missing group",
              "OPTIM_ERROR_NOT_FOUND")
expect_raises(lambda: opt.state(5, "m"), optim_mlir.OptimError,
              "parameter 5 does not exist", "missing parameter",
              "OPTIM_ERROR_NOT_FOUND")
expect_raises(lambda: opt.set_weights("lstm1", gw), optim_mlir.OptimError,
              "has no weights 'lstm1'", "weights of an update rule",
              "OPTIM_ERROR_NOT_FOUND")
expect_raises(lambda: opt.load("/nonexistent/ckpt.safetensors"),
              optim_mlir.OptimError, "cannot open", "missing checkpoint",
              "OPTIM_ERROR_IO")
check(snapshot(opt) == before, "the failed calls changed the optimizer")

for t in range(3):
    g = np.cos(np.arange(50, dtype=np.float32) * (t + 1))
    opt.step([g, gb])
    twin.step([g, gb])
check(w.tobytes() == twin_w.tobytes() and b.tobytes() == twin_b.tobytes(),
      "steps after failed calls differ from the twin's")

# skip_non_finite: a bool only (ctypes would take 2 or "yes"); with it, a
# NaN gradient skips the step and changes nothing; without it, it goes in.
for bad in (1, "yes", None):
    expect_raises(lambda: optim_mlir.Optimizer(adam, [w], skip_non_finite=bad),
                  TypeError, "skip_non_finite must be a bool",
                  "skip_non_finite=%r" % (bad,))
x = np.ones(5, np.float32)
guarded = optim_mlir.Optimizer(adam, [x], skip_non_finite=np.bool_(True))
nan_grad = np.array([1, 2, float("nan"), 4, 5], np.float32)
check(guarded.step([nan_grad]) is False and x.tobytes() ==
      np.ones(5, np.float32).tobytes(), "skip_non_finite=True took a NaN step")
check(guarded.step([np.ones(5, np.float32)]) is True and x[0] < 1,
      "skip_non_finite=True refused a finite step")
y = np.ones(5, np.float32)
plain = optim_mlir.Optimizer(adam, [y])
check(plain.step([nan_grad]) is True and math.isnan(y[2]),
      "without skip_non_finite a NaN gradient did not go through")

# seed: an int in [0, 2**64) (ctypes would wrap -1, truncate 1.5 and take
# True as 1); numpy integers are ints; save() records it, load() restores it.
for bad in (1.5, True, np.bool_(False), "7", None, np.float64(3)):
    expect_raises(lambda: optim_mlir.Optimizer(adam, [w], seed=bad),
                  TypeError, "seed must be an int", "seed=%r" % (bad,))
for bad in (-1, 2**64, 2**70):
    expect_raises(lambda: optim_mlir.Optimizer(adam, [w], seed=bad),
                  ValueError, "seed must be in [0, 2**64)", "seed=%r" % (bad,))
check(adam.random == [], "adam draws %r" % (adam.random,))
check(optim_mlir.Optimizer(adam, [np.ones(3, np.float32)]).seed == 0,
      "the default seed is not 0")
for good in (0, 1, 2**63, 2**64 - 1, np.uint64(2**64 - 1), np.int8(5)):
    check(optim_mlir.Optimizer(adam, [np.ones(3, np.float32)],
                               seed=good).seed == int(good),
          "seed=%r did not come back" % (good,))
ckpt = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                    "api_misuse_seed_%d.safetensors" % os.getpid())
s1 = np.ones(3, np.float32)
seeded = optim_mlir.Optimizer(adam, [s1], seed=2**64 - 3)
seeded.step([np.ones(3, np.float32)])
seeded.save(ckpt)
resumed = optim_mlir.Optimizer(adam, [np.ones(3, np.float32)], seed=5)
resumed.load(ckpt)
os.remove(ckpt)
check(resumed.seed == 2**64 - 3 and resumed.step_count == 1,
      "load() did not restore the seed (%d)" % resumed.seed)

print("api misuse: %d checks, %d failures" % (checks, len(failures)))
sys.exit(1 if failures else 0)
