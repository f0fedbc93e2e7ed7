#!/usr/bin/env python3
"""What python/optim_mlir.py hands to ctypes cannot be turned into something
else by the caller: the parameter arrays the C optimizer writes stay alive
and in place (Optimizer.params is a tuple, set once, with the shapes recorded
at creation), indices and counts that ctypes would wrap (2**64 as 0, -1 as
2**64 - 1) or take as 0 or 1 (a bool) are refused, as are names and paths
with a NUL character (ctypes would cut them there: "lr\\0x" would set lr).
Numpy integers are ints everywhere. Each wrong call raises TypeError or
ValueError naming the argument and changes nothing: afterwards the optimizer
steps exactly as a twin that never saw them.

Usage: kept_arrays.py LIBOPTIM EXAMPLES_DIR"""

import gc
import os
import pathlib
import sys
import tempfile

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


def expect_raises(fn, kind, needle, what):
    try:
        fn()
    except kind as e:
        check(needle in str(e), "%s: got %r" % (what, e))
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
grads = [np.sin(np.arange(12, dtype=np.float32)), np.ones(5, np.float32)]


def fresh():
    # The arrays are referenced by the optimizer only.
    return optim_mlir.Optimizer(adam, [np.zeros((3, 4), np.float32),
                                       np.zeros(5, np.float32)])


opt, twin = fresh(), fresh()
for o in (opt, twin):
    o.step(grads)
before = snapshot(opt)

# 1. The kept parameters: nothing can replace or drop one (the C optimizer
# writes it at its address; a dropped array would be freed under it).
first = opt.params[0]


def replace_param():
    opt.params[0] = np.zeros((3, 4), np.float32)


expect_raises(replace_param, TypeError, "does not support item assignment",
              "opt.params[0] = other")
expect_raises(lambda: opt.params.clear(), AttributeError, "clear",
              "opt.params.clear()")
expect_raises(lambda: opt.params.pop(), AttributeError, "pop",
              "opt.params.pop()")


def assign_params():
    opt.params = []


def delete_params():
    del opt.params


def assign_rule():
    opt.rule = optim_mlir.compile_file(os.path.join(examples, "sgd.optim"))


expect_raises(assign_params, AttributeError, "params cannot be replaced",
              "opt.params = []")
expect_raises(delete_params, AttributeError, "", "del opt.params")
expect_raises(assign_rule, AttributeError, "rule cannot be replaced",
              "opt.rule = another rule")
# Nor can numpy move one: the optimizer is its only holder here, so its
# reference count alone would let resize() through.
expect_raises(lambda: opt.params[1].resize(1 << 20), ValueError,
              "cannot resize", "resizing a kept parameter")
expect_raises(lambda: opt.params[0].resize(1 << 20, refcheck=False),
              ValueError, "cannot resize",
              "resizing a kept parameter, refcheck=False")
check(isinstance(opt.params, tuple) and opt.params[0] is first
      and opt.rule is adam, "the kept parameters or rule changed")
del first
gc.collect()

# 2. Indices: ints (numpy integers too) >= 0 below 2**64; a nonexistent one
# is the C API's to report.
for bad in (2**64, 2**64 + 1, 2**70, -1, -2**63, np.int64(-1)):
    expect_raises(lambda: opt.get("lr", bad), ValueError,
                  "group must be in [0, 2**64), got %d" % bad,
                  "get('lr', group=%r)" % (bad,))
    expect_raises(lambda: opt.state(bad, "m"), ValueError,
                  "param must be in [0, 2**64), got %d" % bad,
                  "state(%r, 'm')" % (bad,))
for bad in (True, False, np.bool_(False), 0.0, np.float64(1), "0", None):
    expect_raises(lambda: opt.get("lr", bad), TypeError,
                  "group must be an int", "get('lr', group=%r)" % (bad,))
    expect_raises(lambda: opt.state(bad, "m"), TypeError,
                  "param must be an int", "state(%r, 'm')" % (bad,))
# A hyperparameter's value is a number: float() would have read "0.01" and
# True (as 1.0).
for bad in ("0.01", b"1", True, np.bool_(True), None, [0.1]):
    expect_raises(lambda: opt.set("lr", bad), TypeError,
                  "value must be a number", "set('lr', %r)" % (bad,))
expect_raises(lambda: opt.get("lr", np.uint64(2**64 - 1)),
              optim_mlir.OptimError, "does not exist", "group 2**64 - 1")
expect_raises(lambda: opt.state(2, "m"), optim_mlir.OptimError,
              "parameter 2 does not exist", "parameter 2")
check(opt.get("lr", np.int64(0)) == opt.get("lr", 0) == opt.get("lr"),
      "get('lr', np.int64(0)) differs from group 0")
check(opt.state(np.uint8(1), "m").tobytes() == opt.state(1, "m").tobytes()
      and opt.state(np.int32(0), "v").tobytes() == opt.state(0, "v")
      .tobytes(), "state(numpy index) differs from state(int index)")

# 3. NUL characters in names and paths, as open() refuses them.
tmp = tempfile.mkdtemp(prefix="kept_arrays_")
nul_calls = [
    ("set('lr\\0garbage')", lambda: opt.set("lr\0garbage", 0.5), "name"),
    ("set(b'lr\\0')", lambda: opt.set(b"lr\0", 0.5), "name"),
    ("get('lr\\0x')", lambda: opt.get("lr\0x"), "name"),
    ("state(0, 'm\\0')", lambda: opt.state(0, "m\0"), "name"),
    ("set_weights('w\\0')", lambda: opt.set_weights("w\0", grads[1]), "name"),
    ("save('x\\0y')", lambda: opt.save(os.path.join(tmp, "x\0y.ckpt")),
     "path"),
    ("save(Path('x\\0y'))",
     lambda: opt.save(pathlib.Path(tmp) / "x\0y.ckpt"), "path"),
    ("load('x\\0y')", lambda: opt.load(os.path.join(tmp, "x\0y.ckpt")),
     "path"),
    ("load_weights('x\\0y')",
     lambda: opt.load_weights(os.path.join(tmp, "x\0y")), "path"),
    ("compile_file('adam.optim\\0')", lambda: optim_mlir.compile_file(
        os.path.join(examples, "adam.optim\0.txt")), "path"),
    ("compile_file(rule='adam\\0x')", lambda: optim_mlir.compile_file(
        os.path.join(examples, "adam.optim"), rule="adam\0x"), "rule"),
    ("compile_source with a NUL", lambda: optim_mlir.compile_source(
        "rule s(lr = 0.1) { p -= lr * g }\0 garbage"), "source"),
    ("compile_source(name='a\\0b')", lambda: optim_mlir.compile_source(
        "rule s(lr = 0.1) { p -= lr * g }", name="a\0b"), "name"),
]
for what, fn, arg in nul_calls:
    expect_raises(fn, ValueError, arg + " contains a NUL character", what)
check(os.listdir(tmp) == [], "a path with a NUL wrote %r" % os.listdir(tmp))
expect_raises(lambda: opt.save(5), TypeError,
              "path must be a str, bytes or os.PathLike", "save(5)")
sophia = optim_mlir.compile_file(os.path.join(
    os.path.dirname(__file__), "..", "..", "Run", "Inputs",
    "input-sophia.optim"))
s_w = np.ones(4, np.float32)
s_opt = optim_mlir.Optimizer(sophia, [s_w])
expect_raises(lambda: s_opt.step([np.ones(4, np.float32)],
                                 inputs={"h\0x": [np.ones(4, np.float32)]}),
              ValueError, "input name contains a NUL character",
              "step(inputs={'h\\0x': ...})")
check(s_opt.step_count == 0 and s_w.tobytes() ==
      np.ones(4, np.float32).tobytes(), "the refused step changed sophia")

check(snapshot(opt) == before, "the failed calls changed the optimizer")
# The optimizer still writes the arrays it was created with, which only it
# references: a freed one would crash here or differ from the twin.
for t in range(3):
    g = [np.cos(np.arange(12, dtype=np.float32) * (t + 1)),
         np.full(5, t, np.float32)]
    opt.step(g)
    twin.step(g)
check(snapshot(opt) == snapshot(twin), "steps after failed calls differ "
      "from the twin's")

# os.PathLike and bytes paths work.
ckpt = pathlib.Path(tmp) / "adam.ckpt"
opt.save(ckpt)
other = fresh()
other.load(os.fsencode(ckpt))
check(other.step_count == opt.step_count == 4
      and other.state(0, "m").tobytes() == opt.state(0, "m").tobytes(),
      "save(Path) then load(bytes) differ")
check(optim_mlir.compile_file(pathlib.Path(examples) / "adam.optim").name
      == "adam", "compile_file(Path) failed")
os.remove(ckpt)
os.rmdir(tmp)

# 4. threads: an int (numpy integers too) in [0, 2**32), as seed.
for good in (np.int64(2), np.uint32(3), np.int8(1), 0, 2):
    try:
        optim_mlir.Optimizer(adam, [np.ones(3, np.float32)], threads=good)
        check(True, "")
    except Exception as e:  # noqa: BLE001
        check(False, "threads=%r: got %r" % (good, e))
for bad in (True, np.bool_(True), 1.5, np.float64(2), "2"):
    expect_raises(lambda: optim_mlir.Optimizer(
        adam, [np.ones(3, np.float32)], threads=bad), TypeError,
        "threads must be an int", "threads=%r" % (bad,))
for bad in (-1, np.int64(-1), 2**32, np.uint64(2**63)):
    expect_raises(lambda: optim_mlir.Optimizer(
        adam, [np.ones(3, np.float32)], threads=bad), ValueError,
        "threads must be in [0, 2**32)", "threads=%r" % (bad,))

# 5. Shapes are recorded at creation: an array reshaped in place afterwards
# (w.shape = ...) changes neither what the rule sees nor state()'s shapes.
rows = optim_mlir.compile_source("""
rule rows(lr = 0.1) {
  row state r = 0
  state m = 0
  r = 0.5 * r + row_mean(g * g)
  m = 0.5 * m + g
  p -= lr * (m + r)
}
""", name="rows.optim")
w = np.zeros((3, 4), np.float32)
ref = np.zeros((3, 4), np.float32)
r_opt = optim_mlir.Optimizer(rows, [w])
r_twin = optim_mlir.Optimizer(rows, [ref])
g = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
r_opt.step([g.reshape(-1)])
w.shape = (4, 3)
check(r_opt.params[0] is w, "opt.params[0] is not the array given")
try:
    shapes = (r_opt.state(0, "r").shape, r_opt.state(0, "m").shape)
    check(shapes == ((3,), (3, 4)), "state shapes after w.shape = (4, 3): "
          "%r, not ((3,), (3, 4))" % (shapes,))
except Exception as e:  # noqa: BLE001
    check(False, "state() after w.shape = (4, 3): got %r" % (e,))
r_opt.step([g.reshape(-1)])
r_twin.step([g])
r_twin.step([g])
check(w.tobytes() == ref.tobytes() and r_opt.state(0, "r").tobytes() ==
      r_twin.state(0, "r").tobytes(),
      "the reshaped array's rows differ from a twin's")

print("kept arrays: %d checks, %d failures" % (checks, len(failures)))
sys.exit(1 if failures else 0)
