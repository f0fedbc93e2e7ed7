#!/usr/bin/env python3
"""Oracle test: random rules against numpy, written side by side.

Each rule is drawn at random together with its numpy transcription: every
node of the expression tree is generated twice, as .optim text and as the
numpy computation it means (docs/language.md), so the reference is not read
back from the compiler's output. The rules mix the parameter, the gradient,
t, hyperparameters, scalar states (started from 0, a constant, p or g),
a vector state (indexing, sum, mean, dot, elementwise updates), let
bindings, +, -, *, /, the continuous built-ins (tanh, sigmoid, exp, log,
sqrt, cbrt, cos, sin, abs, max, min, clamp, powers) and tensor and global
sums, means, norms, maxima and minima of any of it, nested at random (a
reduction of a value computed from another's result: several passes over
memory). Discontinuous built-ins (floor, mod, sign, select) are left out:
an ulp between two libms could flip them.

Each rule runs STEPS steps through the Python binding (python/optim_mlir.py,
the JIT and the runtime) in float64 on 7 tensors of 0, 1, 2, 7, 33, 1000 and
70001 coordinates (three chunks of the default 32768), 2 threads, with
normal gradients, and must match the transcription after every step:
parameters and every state, per tensor,
    |ours - reference| <= 1e-9 |reference| + 1e-9 max|reference|,
NaN and infinities in the same places. The reference sums in numpy's order,
the kernels chunk by chunk: reduced values may differ in their last bits,
which a few steps of these bounded operations do not amplify past 1e-9.
--wrong perturbs the reference (every sum, mean and norm a relative 1e-6
off) and must fail.
"""

import argparse
import random
import sys

import numpy as np

SIZES = [0, 1, 2, 7, 33, 1000, 70001]


class Ctx:
    """The values of one step: each per-coordinate value is a list with one
    array per tensor (a vector state's arrays have a leading axis of its
    components); a uniform value is a Python float."""

    def __init__(self, wrong, nudge):
        self.wrong = wrong
        # Every sum moved by `nudge` times 4 ulps: the spread of references
        # nudged up and down measures how much the rule amplifies the last
        # bits of a sum, which the kernels add in another order than numpy.
        self.total = lambda x: float(np.sum(x)) * (1 + nudge * 2.0**-50)

    def ew(self, fn, *args):
        if not any(isinstance(a, list) for a in args):
            return fn(*args)
        return [fn(*[a[k] if isinstance(a, list) else a for a in args])
                for k in range(len(SIZES))]

    def _reduce(self, kind, x, count):
        if self.wrong and kind in ("sum", "mean", "norm"):
            # A relative 1e-6 off: far beyond the tolerance.
            return (1 + 1e-6) * self._exact(kind, x, count)
        return self._exact(kind, x, count)

    def _exact(self, kind, x, count):
        if kind == "sum":
            return self.total(x)
        if kind == "mean":
            return self.total(x) / count if count else float("nan")
        if kind == "norm":
            return float(np.sqrt(self.total(x * x)))
        if kind == "max":
            return float(np.max(x)) if x.size else float("-inf")
        return float(np.min(x)) if x.size else float("inf")

    def tensor(self, kind, x):
        out = []
        for k, n in enumerate(SIZES):
            xk = np.broadcast_to(x[k] if isinstance(x, list) else x, (n,))
            out.append(self._reduce(kind, np.asarray(xk, np.float64), n))
        return out

    def glob(self, kind, x):
        parts = [np.broadcast_to(x[k] if isinstance(x, list) else x, (n,))
                 for k, n in enumerate(SIZES)]
        whole = np.concatenate(parts).astype(np.float64)
        return self._reduce(kind, whole, whole.size)


UNARY = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "exp": lambda x: np.exp(x),
    "cos": np.cos,
    "sin": np.sin,
    "abs": np.abs,
    "cbrt": np.cbrt,
}


def gen_rule(rng, idx):
    """Returns (source, hypers, states, body): `body` is Python code that
    runs one step on a Ctx `C` with P, G, T, the hyperparameters and the
    states bound, and sets P_new and each state."""
    hypers = {"lr": rng.choice([0.01, 0.05, 0.1])}
    for h in rng.sample(["beta", "c", "wd"], rng.randint(0, 2)):
        hypers[h] = rng.choice([0.013, 0.11, 0.53, 1.7])
    states = {}
    for i in range(rng.randint(0, 2)):
        states[f"s{i}"] = rng.choice(["0", "0.5", "p", "g"])
    vec = rng.random() < 0.35
    if vec:
        states["h"] = rng.choice(["0", "0.25", "p"])
    scalars = ["p", "g", "t"] + list(hypers) + [s for s in states if s != "h"]
    py = {"p": "P", "g": "G", "t": "T"}

    def leaf():
        r = rng.random()
        if vec and r < 0.2:
            # The components stay equal (updated by scalars): h[2] - mean(h)
            # would be rounding noise, amplified. One of each kind of read.
            return rng.choice([("h[1]", "C.ew(lambda h: h[1], H)"),
                               ("sum(h)", "C.ew(lambda h: h.sum(axis=0), H)"),
                               ("dot(h, h * p)",
                                "C.ew(lambda h, p: (h * (h * p)).sum(axis=0), H, P)")])
        if r < 0.3:
            c = rng.choice(["0.37", "1.7", "2", "0.5"])
            return c, c
        name = rng.choice(scalars)
        return name, py.get(name, name)

    def e(d):
        if d <= 0 or rng.random() < 0.2:
            return leaf()
        r = rng.random()
        if r < 0.3:
            (a, pa), (b, pb) = e(d - 1), e(d - 1)
            op = rng.choice("+-*")
            return f"({a} {op} {b})", f"C.ew(lambda x, y: x {op} y, {pa}, {pb})"
        if r < 0.37:
            (a, pa), (b, pb) = e(d - 1), e(d - 1)
            return (f"({a} / (1 + {b} * {b}))",
                    f"C.ew(lambda x, y: x / (1 + y * y), {pa}, {pb})")
        if r < 0.52:
            a, pa = e(d - 1)
            f = rng.choice(list(UNARY) + ["log1", "sqrt1", "sq"])
            if f == "log1":
                return f"log(1 + {a} * {a})", f"C.ew(lambda x: np.log(1 + x * x), {pa})"
            if f == "sqrt1":
                return f"sqrt(1 + {a} * {a})", f"C.ew(lambda x: np.sqrt(1 + x * x), {pa})"
            if f == "sq":
                return f"({a}) ** 2", f"C.ew(lambda x: np.power(x, 2.0), {pa})"
            if f in ("exp", "cos", "sin"):
                # Bounded arguments: no overflow, no chaos.
                return (f"{f}(tanh({a}))",
                        f"C.ew(lambda x: UNARY['{f}'](np.tanh(x)), {pa})")
            return f"{f}({a})", f"C.ew(UNARY['{f}'], {pa})"
        if r < 0.6:
            (a, pa), (b, pb) = e(d - 1), e(d - 1)
            f = rng.choice(["max", "min", "clamp"])
            if f == "clamp":
                return (f"clamp({a}, -0.73, {b})",
                        f"C.ew(lambda x, y: np.minimum(np.maximum(x, -0.73), y), {pa}, {pb})")
            npf = "np.maximum" if f == "max" else "np.minimum"
            return f"{f}({a}, {b})", f"C.ew({npf}, {pa}, {pb})"
        if r < 0.8:
            a, pa = e(d - 1)
            scope = rng.choice(["tensor", "global"])
            kind = rng.choice(["sum", "mean", "norm", "max", "min"])
            fn = "C.tensor" if scope == "tensor" else "C.glob"
            return f"{scope}_{kind}({a})", f"{fn}('{kind}', {pa})"
        return e(d - 1)

    lines, body = [], []
    for name, init in states.items():
        size = "[3]" if name == "h" else ""
        lines.append(f"  state {name}{size} = {init}")
    for i in range(rng.randint(0, 3)):
        a, pa = e(3)
        lines.append(f"  let v{i} = {a}")
        body.append(f"v{i} = {pa}")
        scalars.append(f"v{i}")
    for name in states:
        if name == "h":
            (a, pa), (b, pb) = e(1), e(2)
            lines.append(f"  h = h * {a} + {b}")
            body.append(f"H = C.ew(lambda h, a, b: h * a + b, H, {pa}, {pb})")
        elif rng.random() < 0.85:
            a, pa = e(3)
            lines.append(f"  {name} = {a}")
            body.append(f"{name} = {pa}")
    a, pa = e(3)
    lines.append(f"  p -= lr * {a}")
    body.append(f"P_new = C.ew(lambda p, e: p - lr * e, P, {pa})")
    params = ", ".join(f"{h} = {v}" for h, v in hypers.items())
    source = f"rule r{idx}({params}) {{\n" + "\n".join(lines) + "\n}\n"
    return source, hypers, states, "\n".join(body)


def reference(states, hypers, code, theta0, grads, wrong, nudge):
    """The transcription's parameters and states after each step."""
    ref_p = [p.copy() for p in theta0]
    ref_states, out = {}, []
    for t, g in enumerate(grads, start=1):
        # States started from a value take it at the first step.
        if t == 1:
            for name, init in states.items():
                if init == "p":
                    v = [x.copy() for x in ref_p]
                elif init == "g":
                    v = [x.copy() for x in g]
                else:
                    v = [np.full(n, float(init)) for n in SIZES]
                if name == "h":
                    v = [np.broadcast_to(x, (3, n)).copy()
                         for x, n in zip(v, SIZES)]
                ref_states[name] = v
        env = {"C": Ctx(wrong, nudge), "np": np, "UNARY": UNARY, "P": ref_p,
               "G": g, "T": float(t), **hypers}
        for name, v in ref_states.items():
            env["H" if name == "h" else name] = v
        with np.errstate(all="ignore"):
            exec(code, env)
        ref_p = [np.broadcast_to(x, (n,)).astype(np.float64)
                 for x, n in zip(env["P_new"], SIZES)]
        for name in ref_states:
            v = env["H" if name == "h" else name]
            shape = (lambda n: (3, n)) if name == "h" else (lambda n: (n,))
            ref_states[name] = [
                np.broadcast_to(v[k] if isinstance(v, list) else v,
                                shape(n)).astype(np.float64)
                for k, n in enumerate(SIZES)]
        out.append((ref_p, dict(ref_states)))
    return out


def run_case(optim_mlir, rng, idx, steps, wrong):
    source, hypers, states, body = gen_rule(rng, idx)
    rule = optim_mlir.compile_source(source, f64=True, name=f"random{idx}.optim")
    params = [rng_np.standard_normal(n) for n in SIZES]
    grads = [[rng_np.standard_normal(n) for n in SIZES] for _ in range(steps)]
    code = compile(body, f"<rule {idx}>", "exec")
    refs = [reference(states, hypers, code, params, grads, wrong, nudge)
            for nudge in (0, 1, -1)]
    opt = optim_mlir.Optimizer(rule, params, threads=2)
    problems = []
    for t in range(1, steps + 1):
        opt.step(grads[t - 1])

        def compare(what, ours, ref, up, down):
            with np.errstate(all="ignore"):
                same_special = np.array_equal(np.isnan(ours), np.isnan(ref)) and \
                    np.array_equal(np.isinf(ours), np.isinf(ref)) and \
                    np.array_equal(ours[np.isinf(ours)], ref[np.isinf(ref)])
                fin = np.isfinite(ref) & np.isfinite(ours) & \
                    np.isfinite(up) & np.isfinite(down)
                scale = np.max(np.abs(ref[fin])) if fin.any() else 0.0
                err = np.abs(ours[fin] - ref[fin])
                # Ten times what nudging the sums by 4 ulps moves: a sum's
                # last bits that the rule amplifies (a difference of nearly
                # equal values) are no error.
                spread = 10 * np.maximum(np.abs(up[fin] - ref[fin]),
                                         np.abs(down[fin] - ref[fin]))
                ok = np.all(err <= 1e-9 * np.abs(ref[fin]) + 1e-9 * scale + spread)
            if not (same_special and ok):
                worst = float(np.max(err)) if err.size else float("nan")
                problems.append(f"step {t}, {what}: largest difference {worst:.3e}"
                                f" (scale {scale:.3e}), special values "
                                f"{'agree' if same_special else 'differ'}")

        (ref_p, ref_s), (up_p, up_s), (down_p, down_s) = [r[t - 1] for r in refs]
        for k, n in enumerate(SIZES):
            compare(f"p of tensor {k} ({n})", params[k], ref_p[k], up_p[k],
                    down_p[k])
            for name in ref_s:
                compare(f"state {name} of tensor {k} ({n})",
                        opt.state(k, name), ref_s[name][k], up_s[name][k],
                        down_s[name][k])
        if problems:
            break
    return source, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--wrong", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, __import__("os").path.join(
        __import__("os").path.dirname(__file__), "..", "..", "python"))
    import optim_mlir
    optim_mlir.load(args.library)
    global rng_np
    rng = random.Random(args.seed)
    rng_np = np.random.default_rng(args.seed)
    failed = 0
    for i in range(args.count):
        source, problems = run_case(optim_mlir, rng, i, args.steps, args.wrong)
        if problems:
            failed += 1
            print(f"FAIL rule {i}:\n{source}" + "\n".join(problems[:5]))
    print(f"random rules against numpy: {args.count} rules, {args.steps} steps, "
          f"{failed} failed")
    return 1 if failed else 0


rng_np = None

if __name__ == "__main__":
    sys.exit(main())
