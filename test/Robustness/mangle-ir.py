#!/usr/bin/env python3
"""Runs optim-opt's passes and pipelines over mangled optim-dialect IR and
checks that each run ends cleanly: exit status 0 with output that parses and
verifies again, or exit 1 with every error located (file:line:col) -- never
a signal, an assertion, a hang, invalid IR or an unlocated error.

The inputs are the dialect form of every example (optimc), hand-written
programs that the front end never emits (Inputs/ir-seeds.mlir: rules without
state, size-1 vectors, f64 and f16 types, odd weights, layers with unusual
qp operands, optim ops outside a program), and mutants of both: SSA values
substituted or swapped, op lines deleted or duplicated, element types and
sizes changed, op names swapped within a family, literals replaced by
extreme values. Deterministic for a given --seed.

All inputs go to each pass in one optim-opt run (-split-input-file); when a
run fails, bisection names the inputs that fail (--keep writes them out).
"""

import argparse
import bisect
import glob
import os
import random
import re
import subprocess
import sys
import tempfile

SPLIT = "// -----"

# Every pass of the project and its pipeline, with options at their edges,
# and the upstream passes that run on the optim dialect's ops.
PASSES = [
    "optim-fold-constant-hyperparameters",
    "optim-fold-constant-hyperparameters{all=true}",
    "canonicalize",
    "cse",
    "sccp",
    "symbol-dce",
    "optim-differentiate",
    "optim-differentiate,canonicalize,cse,optim-lower-vjp-to-kernels{vector-width=4}",
    "optim-lower-vjp-to-kernels",
    "optim-lower-rules-to-kernels",
    "optim-lower-rules-to-kernels{vector-width=1}",
    "optim-lower-rules-to-kernels{vector-width=3 relaxed-fp=true prefetch-distance=0}",
    "optim-lower-rules-to-gpu",
    "optim-lower-rules-to-gpu{relaxed-fp=true vector-bits=32}",
    "optim-lower-layers",
    "optim-lower-layers-to-gpu",
    "optim-lower-layers-to-gpu{threads=32 shared-bytes=0}",
    "optim-lower-to-llvm",
    "optim-lower-to-llvm{vjp=true vector-width=1}",
    "optim-lower-to-llvm{vjp=true relaxed-fp=true vector-width=8}",
]

LOCATED = re.compile(r"^\S+:\d+:\d+: error: ", re.M)
ANY_ERROR = re.compile(r"error: ", re.M)
VALUE = re.compile(r"%[A-Za-z_0-9]+")
OP_LINE = re.compile(r"^(\s*)((?:%[A-Za-z_0-9]+(?:, )?)+) = (\S+)(.*)$")

FAMILIES = [
    ["arith.addf", "arith.subf", "arith.mulf", "arith.divf", "arith.maximumf",
     "arith.minimumf", "arith.remf", "math.powf", "math.atan2",
     "math.copysign"],
    ["math.sqrt", "math.exp", "math.log", "math.tanh", "math.absf",
     "math.rsqrt", "math.log1p", "math.expm1", "math.sin", "math.erf",
     "math.floor", "arith.negf", "math.cbrt"],
    ["optim.lstm_cell", "optim.lstm_cell_vjp"],
    ["optim.linear", "optim.linear_vjp"],
]
ELEMENT_TYPES = ["f32", "f64", "f16", "bf16", "i32", "index"]
LITERALS = ["0.0", "-0.0", "1.0e+300", "-1.0e+38", "1.0e-320", "0x7FC00000",
            "0x7F800000", "3.4028235e+38", "1.0e+39"]
SIZES = ["0", "1", "2", "3", "17", "300", "65537", "4611686018427387904"]


def defined_values(lines):
    names = []
    for line in lines:
        m = OP_LINE.match(line)
        if m:
            names += VALUE.findall(m.group(2))
        for arg in re.findall(r"(%[A-Za-z_0-9]+): ", line):
            names.append(arg)
    return names


def mutate_once(text, rng):
    lines = text.split("\n")
    ops = [i for i, l in enumerate(lines) if OP_LINE.match(l)]
    kind = rng.randrange(9)
    if kind == 0 and ops:  # substitute one use by another value
        values = defined_values(lines)
        i = rng.choice(ops)
        m = OP_LINE.match(lines[i])
        uses = list(VALUE.finditer(m.group(4)))
        if uses and values:
            u = rng.choice(uses)
            start = len(m.group(1)) + len(m.group(2)) + 3 + len(m.group(3))
            rest = m.group(4)
            rest = rest[: u.start()] + rng.choice(values) + rest[u.end():]
            lines[i] = lines[i][:start] + rest
    elif kind == 1 and ops:  # swap two operands of an op
        i = rng.choice(ops)
        m = OP_LINE.match(lines[i])
        uses = VALUE.findall(m.group(4))
        if len(uses) >= 2:
            a, b = rng.sample(range(len(uses)), 2)
            uses[a], uses[b] = uses[b], uses[a]
            it = iter(uses)
            rest = VALUE.sub(lambda _: next(it), m.group(4))
            lines[i] = "%s%s = %s%s" % (m.group(1), m.group(2), m.group(3), rest)
    elif kind == 2 and ops:  # delete an op
        del lines[rng.choice(ops)]
    elif kind == 3 and ops:  # duplicate an op, its results unused
        i = rng.choice(ops)
        m = OP_LINE.match(lines[i])
        results = VALUE.sub(lambda r: r.group(0) + "_dup", m.group(2))
        lines.insert(i + 1, "%s%s = %s%s" % (m.group(1), results, m.group(3),
                                            m.group(4)))
    elif kind == 4:  # change an element type, everywhere or once
        old = rng.choice(["f32", "f64"])
        new = rng.choice(ELEMENT_TYPES)
        pattern = re.compile(r"\b%s\b" % old)
        if rng.randrange(2):
            text = pattern.sub(new, "\n".join(lines))
            return text
        hits = [m for m in pattern.finditer("\n".join(lines))]
        if hits:
            whole = "\n".join(lines)
            h = rng.choice(hits)
            return whole[: h.start()] + new + whole[h.end():]
    elif kind == 5:  # change a size in a vector or tensor type
        whole = "\n".join(lines)
        hits = list(re.finditer(r"(?<=[<x])\d+(?=x)", whole))
        if hits:
            h = rng.choice(hits)
            size = rng.choice(SIZES)
            if rng.randrange(2):  # every occurrence of that size
                return re.sub(r"(?<=[<x])%s(?=x)" % h.group(0), size, whole)
            return whole[: h.start()] + size + whole[h.end():]
    elif kind == 6 and ops:  # another op of the same family
        i = rng.choice(ops)
        m = OP_LINE.match(lines[i])
        for family in FAMILIES:
            if m.group(3) in family:
                lines[i] = "%s%s = %s%s" % (m.group(1), m.group(2),
                                            rng.choice(family), m.group(4))
    elif kind == 7:  # an extreme literal
        whole = "\n".join(lines)
        hits = list(re.finditer(r"(?<=[= ])-?\d+\.\d*(?:e[-+]?\d+)?", whole))
        if hits:
            h = rng.choice(hits)
            return whole[: h.start()] + rng.choice(LITERALS) + whole[h.end():]
    else:  # a const flag added or removed, a yield operand dropped
        whole = "\n".join(lines)
        if " const" in whole and rng.randrange(2):
            return whole.replace(" const", "", 1)
        defaults = list(re.finditer(r"= -?[0-9.e+-]+(?=[,)])", whole))
        if defaults and rng.randrange(2):
            h = rng.choice(defaults)
            return whole[: h.end()] + " const" + whole[h.end():]
        m = re.search(r"optim\.(yield|return) (%[^:]*?), (%[^:]*) : (.*?), (.*)$",
                      whole, re.M)
        if m:
            return (whole[: m.start()] + "optim.%s %s : %s" %
                    (m.group(1), m.group(2), m.group(4)) + whole[m.end():])
    return "\n".join(lines)


def mutate(text, rng):
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        text = mutate_once(text, rng)
    return text


def run(cmd, timeout):
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(errors="replace"), \
            r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return "timeout", "", ""


def problem(opt, pipeline, path, timeout, split):
    """None if optim-opt ends cleanly on `path`, else what went wrong."""
    args = [opt, "--verify-each=0", "--pass-pipeline=builtin.module(%s)" % pipeline]
    if split:
        args.append("-split-input-file")
    rc, out, err = run(args + [path], timeout)
    if rc == "timeout":
        return "hang (over %ds)" % timeout
    errors = ANY_ERROR.findall(err)
    if rc not in (0, 1) or "Assertion" in err or "Sanitizer" in err:
        return "exit %s: %s" % (rc, err[-800:])
    if len(errors) != len(LOCATED.findall(err)):
        return "an error without file:line:col: " + err[-800:]
    if rc == 1 and not errors:
        return "exit 1 without an error: " + err[-800:]
    if rc == 0:
        # The output must parse and verify again (-verify-each=0 above lets
        # a pass's invalid IR through to here).
        with tempfile.NamedTemporaryFile("w", suffix=".mlir", delete=False) as f:
            f.write(out)
        try:
            args = [opt, f.name] + (["-split-input-file"] if split else [])
            rc2, _, err2 = run(args, timeout)
        finally:
            os.unlink(f.name)
        if rc2 != 0:
            return "invalid output IR: " + str(err2)[-800:]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--optim-opt", required=True)
    ap.add_argument("--optimc", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--seeds", required=True, help="hand-written IR, split by // -----")
    ap.add_argument("--count", type=int, default=10, help="mutants per input")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--keep", help="write the failing inputs to this folder")
    args = ap.parse_args()

    inputs = []
    for path in sorted(glob.glob(os.path.join(args.examples, "*.optim"))):
        rc, out, err = run([args.optimc, path], args.timeout)
        if rc != 0:
            print("optimc failed on", path, err)
            return 1
        inputs.append(out.strip())
    inputs += [s.strip() for s in open(args.seeds).read().split(SPLIT) if s.strip()]
    rng = random.Random(args.seed)
    cases = list(inputs)
    for text in inputs:
        cases += [mutate(text, rng) for _ in range(args.count)]

    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        def write(name, texts):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(("\n%s\n" % SPLIT).join(texts) + "\n")
            return path

        # Which inputs are valid IR: one run of the parser and verifier; an
        # error's line names its input. Inputs with an error that names no
        # line are run alone (and fail, unless the error was another's).
        rc, _, err = run([args.optim_opt, "-split-input-file",
                          write("all.mlir", cases)], args.timeout)
        first_lines, line = [], 1
        for text in cases:
            first_lines.append(line)
            line += text.count("\n") + 2
        invalid = set()
        for m in re.finditer(r"^\S+:(\d+):\d+: error: ", err, re.M):
            invalid.add(bisect.bisect_right(first_lines, int(m.group(1))) - 1)
        if rc not in (0, 1) or \
                len(ANY_ERROR.findall(err)) != len(LOCATED.findall(err)):
            invalid = set()
            for i, text in enumerate(cases):
                rc, _, err = run([args.optim_opt, write("one.mlir", [text])],
                                 args.timeout)
                if rc == 0:
                    continue
                invalid.add(i)
                if rc != 1 or len(ANY_ERROR.findall(err)) != \
                        len(LOCATED.findall(err)) or not LOCATED.search(err):
                    failures.append(("parse and verify", text,
                                     "exit %s: %s" % (rc, err[-800:])))
        valid = [t for i, t in enumerate(cases) if i not in invalid]

        def failing(pipeline, texts):
            """The inputs among `texts` that fail `pipeline`, by bisection."""
            if problem(args.optim_opt, pipeline, write("batch.mlir", texts),
                       args.timeout, True) is None:
                return []
            if len(texts) == 1:
                return [(texts[0], problem(args.optim_opt, pipeline,
                                           write("one.mlir", texts),
                                           args.timeout, False))]
            half = len(texts) // 2
            return failing(pipeline, texts[:half]) + \
                failing(pipeline, texts[half:])

        for pipeline in PASSES:
            for text, why in failing(pipeline, valid):
                failures.append((pipeline, text, why or "fails only among others"))
        rejected = len(cases) - len(valid)

    for n, (pipeline, text, why) in enumerate(failures):
        print("FAIL: %s\n--- input:\n%s\n--- %s\n" % (pipeline, text, why))
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            with open(os.path.join(args.keep, "fail-%d.mlir" % n), "w") as f:
                f.write("// %s\n%s\n" % (pipeline, text))
    print("mangled IR: %d inputs, %d rejected by the verifier with a located "
          "diagnostic, %d valid ones through %d pipelines, %d failures"
          % (len(cases), rejected, len(valid), len(PASSES), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
