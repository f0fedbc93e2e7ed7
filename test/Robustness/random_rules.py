#!/usr/bin/env python3
"""Random rules through the whole pipeline, two checks (deterministic for a
given --seed):

--mode pipeline: rules drawn from most of the language (states of every
  axis, vector states, const hyperparameters, compound assignments, every
  built-in of rules, tensor, global, row and column reductions nested at
  random, newton_schulz, rows(), cols(), rand(), randn()) go through
  `optimc --emit=obj` (f32), `--emit=llvm --precision=f64`, `--target=cuda
  --emit=cubin` (ptxas; sm_90 f32 and sm_80 f64), `optimc run` (the JIT and
  the runtime on the quadratic task)
  and `hypergradient` (the reverse mode and optim::Trajectory). Each run must
  end in exit 0, or exit 1 with an error message: never a signal, an
  assertion, a hang or a silent failure.
--mode gradients: rules of smooth operations only (+, -, *, divisions by
  1 + x^2, tanh, sigmoid, exp, cos and sin of tanh, log and sqrt of 1 + x^2,
  atan, atan2(x, 2 + tanh(x)), squares, and sums, means and norms over tensors and over all parameters,
  of values that depend on p or a state, nested at random; a vector state
  with indexing, sum, mean and dot) must give
  hypergradient's dL/dlr within a relative 1e-4 of its central difference
  of the unrolled loss (f64), besides the rounding error of that difference.
  Sines and cosines take bounded arguments: of a sum over every coordinate
  they make the loss chaotic, and no step resolves it.
--mode piecewise: the same with abs, max, min, clamp, select and tensor and
  global max and min too. Random points are almost never at a kink, where a
  central difference is not the derivative; the constants and
  hyperparameters differ so that no two of them tie.
--axes (gradients, piecewise): also row and column states (assigned values
  the same along their row or column), row and column reductions and
  newton_schulz (hypergradient's first tensor is an 8 x 5 matrix).
"""

import argparse
import random
import re
import subprocess
import sys

UNARY = ["sqrt", "exp", "log", "abs", "tanh", "sigmoid", "sign", "floor",
         "ceil", "cos", "sin", "cbrt", "atan"]
BINARY = ["max", "min", "pow", "mod", "atan2"]
RED = [f"{scope}_{kind}" for scope in ("tensor", "global")
       for kind in ("sum", "mean", "norm", "max", "min")]
AXRED = [f"{axis}_{kind}" for axis in ("row", "col")
         for kind in ("sum", "mean", "norm", "max", "min")]
SMOOTH_RED = [f"{scope}_{kind}" for scope in ("tensor", "global")
              for kind in ("sum", "mean", "norm")]
PIECEWISE_RED = [f"{scope}_{kind}" for scope in ("tensor", "global")
                 for kind in ("max", "min")]
SMOOTH_UNARY = ["tanh({})", "sigmoid({})", "exp(tanh({}))", "log(1 + ({}) ** 2)",
                "sqrt(1 + ({}) ** 2)", "cos(tanh({}))", "sin(tanh({}))", "(({}) ** 2)",
                "atan({})", "atan2({0}, 2 + tanh({0}))"]


def add_lets(rng, lines, avail, most, e):
    """Up to `most` let bindings of random values, then usable by name."""
    for i in range(rng.randint(0, most)):
        lines.append(f"  let v{i} = {e(3)}")
        avail.append(f"v{i}")


def rule_text(idx, params, lines):
    return f"rule r{idx}({params}) {{\n" + "\n".join(lines) + "\n}\n"


def any_rule(rng, idx):
    hypers = ["lr"] + rng.sample(["beta", "eps", "c", "wd", "k"], rng.randint(0, 3))
    axes = rng.random() < 0.25
    vec = rng.random() < 0.15
    lines, states = [], []
    for s in range(rng.randint(0, 3)):
        kind = rng.choice(["row ", "col "]) if axes and rng.random() < 0.5 else ""
        init = rng.choice(["0", "1", "0.5"] + ([] if kind else ["p", "g"]))
        lines.append(f"  {kind}state s{s} = {init}")
        states.append(f"s{s}")
    if vec:
        lines.append("  state h[3] = 0")
    avail = ["p", "g", "t"] + hypers + states

    def e(d):
        if d <= 0 or rng.random() < 0.25:
            return rng.choice(avail + ["0", "1", "2", "0.5", "1e-8", "3.0"])
        r = rng.random()
        if r < 0.3:
            return f"({e(d - 1)} {rng.choice('+-*/')} {e(d - 1)})"
        if r < 0.45:
            return f"{rng.choice(UNARY)}({e(d - 1)})"
        if r < 0.55:
            return f"{rng.choice(BINARY)}({e(d - 1)}, {e(d - 1)})"
        if r < 0.65:
            return f"{rng.choice(RED)}({e(d - 1)})"
        if r < 0.70 and axes:
            return f"{rng.choice(AXRED)}({e(d - 1)})"
        if r < 0.72 and axes:
            return rng.choice([f"newton_schulz({e(d - 1)})", "rows()", "cols()",
                               f"newton_schulz({e(d - 1)}, 3)"])
        if r < 0.78:
            cmp = rng.choice(["<", ">", "<=", ">=", "==", "!="])
            return f"select({e(d - 1)} {cmp} {e(d - 1)}, {e(d - 1)}, {e(d - 1)})"
        if r < 0.82:
            return rng.choice(["rand()", "randn()"])
        if r < 0.86:
            return f"clamp({e(d - 1)}, {e(d - 1)}, {e(d - 1)})"
        if r < 0.89:
            return f"({e(d - 1)} ** {rng.choice(['2', '0.5', e(d - 1)])})"
        if r < 0.92 and vec:
            return rng.choice(["sum(h)", "mean(h)", "h[0]", "dot(h, h)"])
        if r < 0.94:
            return f"-{e(d - 1)}"
        return e(d - 1)

    add_lets(rng, lines, avail, 4, e)
    for s in states:
        if rng.random() < 0.8:
            op = rng.choice(["=", "=", "+=", "*=", "-=", "/="])
            lines.append(f"  {s} {op} {e(rng.randint(1, 5))}")
    if vec:
        lines.append(f"  h = h * 0.5 + {e(2)}")
    lines.append(f"  p {rng.choice(['-=', '='])} lr * {e(3)}")
    # lr stays a runtime hyperparameter: hypergradient differentiates it.
    params = ", ".join(
        f"{'const ' if h != 'lr' and rng.random() < 0.3 else ''}{h} = "
        f"{rng.choice(['0.1', '0.9', '1e-3', '2', '-1'])}" for h in hypers)
    return rule_text(idx, params, lines)


def smooth_rule(rng, idx, piecewise, axes=False):
    hypers = ["lr"] + rng.sample(["beta", "c", "wd"], rng.randint(0, 2))
    states = [f"s{i}" for i in range(rng.randint(0, 2))]
    lines = [f"  state {s} = {rng.choice(['0', '0.5', 'p', 'g'])}" for s in states]
    vec = rng.random() < 0.3
    if vec:
        lines.append(f"  state h[3] = {rng.choice(['0', '0.5', 'p'])}")
    avail = ["p", "g"] + hypers + states
    moving = ["p"] + states
    if vec:
        avail += ["h[0]", "h[2]", "sum(h)", "mean(h)", "dot(h, h * p)"]
    # --axes: a row and a column state, each maybe, and row and column
    # reductions (hypergradient's first tensor is an 8 x 5 matrix).
    own = {"row": [], "col": []}
    if axes:
        for axis, name in (("row", "ra"), ("col", "ca")):
            if rng.random() < 0.7:
                own[axis].append(name)
                lines.append(f"  {axis} state {name} = {rng.choice(['0', '0.5'])}")
                avail.append(name)
                moving.append(name)
    axis_kinds = ["sum", "mean", "norm"] + (["max", "min"] if piecewise else [])

    def e(d):
        if d <= 0 or rng.random() < 0.2:
            return rng.choice(avail + ["0.37", "1.7", "t"])
        r = rng.random()
        if r < 0.3:
            return f"({e(d - 1)} {rng.choice('+-*')} {e(d - 1)})"
        if r < 0.38:
            return f"({e(d - 1)} / (1 + {e(d - 1)} ** 2))"
        if r < 0.55:
            return rng.choice(SMOOTH_UNARY).format(e(d - 1))
        if axes and r < 0.62:
            return (f"{rng.choice(['row', 'col'])}_{rng.choice(axis_kinds)}"
                    f"({rng.choice(moving)} * {e(d - 1)})")
        if axes and r < 0.65:
            return f"newton_schulz({rng.choice(moving)} * {e(d - 1)}, {rng.randint(1, 5)})"
        if r < 0.75:
            # A reduced value that depends on the parameter or a state.
            reds = SMOOTH_RED + (PIECEWISE_RED if piecewise else [])
            return f"{rng.choice(reds)}({rng.choice(moving)} * {e(d - 1)})"
        if r < 0.85 and piecewise:
            return rng.choice([f"abs({e(d - 1)})", f"max({e(d - 1)}, {e(d - 1)})",
                               f"min({e(d - 1)}, {e(d - 1)})",
                               f"clamp({e(d - 1)}, -0.73, 0.81)",
                               f"select({e(d - 1)} > {e(d - 1)}, {e(d - 1)}, {e(d - 1)})"])
        return e(d - 1)

    def uniform(axis, d):
        """A value the same along a row (column): its states, the
        hyperparameters, constants and its reductions."""
        if d <= 0 or rng.random() < 0.25:
            return rng.choice(own[axis] + hypers + ["0.37", "1.7"])
        r = rng.random()
        if r < 0.35:
            return f"({uniform(axis, d - 1)} {rng.choice('+-*')} {uniform(axis, d - 1)})"
        if r < 0.5:
            return rng.choice(SMOOTH_UNARY).format(uniform(axis, d - 1))
        return f"{axis}_{rng.choice(axis_kinds)}({rng.choice(moving)} * {e(d - 1)})"

    add_lets(rng, lines, avail, 3, e)
    for s in states:
        lines.append(f"  {s} = {e(3)}")
    for axis, names in own.items():
        for s in names:
            lines.append(f"  {s} = {uniform(axis, 3)}")
    if vec:
        lines.append(f"  h = h * {e(1)} + {e(2)}")
    lines.append(f"  p -= lr * {e(3)}")
    # Small learning rates keep the unrolled loss close to quadratic over
    # hypergradient's step (1e-5 lr): at lr = 0.5 some rules curve enough
    # for the central difference's truncation error to pass 1e-4 (checked:
    # it shrinks 100-fold per 10-fold smaller step, to the VJP's value).
    params = ", ".join(
        f"{h} = {rng.choice(['0.01', '0.05'] if h == 'lr' else ['0.013', '0.11', '0.53'])}"
        for h in hypers)
    return rule_text(idx, params, lines)


def run(cmd, failures, label):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        failures.append(f"{label}: hang: {' '.join(cmd)}")
        return None
    out = r.stdout + r.stderr
    if r.returncode == 0 or (r.returncode == 1 and "error: " in out):
        return r
    failures.append(f"{label}: exit {r.returncode}: {' '.join(cmd)}\n{out[-2000:]}")
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["pipeline", "gradients", "piecewise"],
                    required=True)
    ap.add_argument("--bin", required=True, help="folder of optimc and hypergradient")
    ap.add_argument("--tmp", required=True, help="scratch folder")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--axes", action="store_true",
                    help="gradients, piecewise: row and column states and reductions too")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    failures, checked = [], 0
    for i in range(args.count):
        if args.mode == "pipeline":
            src = any_rule(rng, i)
        else:
            src = smooth_rule(rng, i, args.mode == "piecewise", args.axes)
        path = f"{args.tmp}/rule{i}.optim"
        with open(path, "w") as f:
            f.write(src)
        label = f"{path}\n{src}"
        hyper = [f"{args.bin}/hypergradient", path, "--iters", "1", "--steps", "3"]
        if args.mode == "pipeline":
            optimc = f"{args.bin}/optimc"
            for cmd in ([optimc, path, "--emit=obj", "-o", f"{args.tmp}/r.o"],
                        [optimc, path, "--emit=llvm", "--precision=f64", "-o", f"{args.tmp}/r.ll"],
                        [optimc, path, "--target=cuda", "--emit=cubin", "-o", f"{args.tmp}/r.cubin"],
                        [optimc, path, "--target=cuda", "--gpu-arch=sm_80", "--precision=f64",
                         "--emit=cubin", "-o", f"{args.tmp}/r64.cubin"],
                        [optimc, "run", path, "--task", "quadratic", "--steps", "5", "--threads", "2"],
                        hyper):
                run(cmd, failures, label)
            continue
        r = run(hyper, failures, label)
        m = r and re.search(r"dL/dlr (\S+), central difference (\S+), relative error (\S+)", r.stdout)
        if not m:
            continue  # Diverged (a located error): nothing to compare.
        analytic, numeric, rel = map(float, m.groups())
        it = re.search(r"iter +0 +lr (\S+) +L (\S+)", r.stdout)
        lr, loss = map(float, it.groups())
        # hypergradient's step is h = 1e-5 lr: the difference of two losses
        # rounded to an ulp of L each has an error up to about eps L / h;
        # a hundred times that is allowed besides the relative 1e-4.
        noise = 100 * 2.2e-16 * abs(loss) / (1e-5 * lr)
        # A rule that blows the loss up (from about 1e2) is chaotic there
        # (a sine of a sum over every coordinate): no step resolves it.
        if abs(loss) > 1e4:
            continue
        checked += 1
        if abs(analytic - numeric) > 1e-4 * abs(numeric) + noise:
            failures.append(f"{label}: dL/dlr {analytic} against the central difference {numeric} (relative error {rel:.2e}, L {loss}, lr {lr})")
    for f in failures:
        print("FAILURE", f)
    if args.mode == "pipeline":
        print(f"random rules: {args.count} through the pipeline, {len(failures)} failures")
    else:
        print(f"random rules: {checked} of {args.count} gradients checked, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
