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

With --axes the rules also have row and column states (started from a
constant, assigned values shared by the row or column: uniform values, their
own axis's states and row or column reductions of anything) and row and
column reductions anywhere, on 1-D parameters, matrices, a stack of
matrices, rows longer than a chunk and empty parameters.

Each rule runs STEPS steps through the Python binding (python/optim_mlir.py,
the JIT and the runtime) in float64 on 7 tensors of 0, 1, 2, 7, 33, 1000 and
70001 coordinates (three chunks of the default 32768; with --axes the
shapes of AXES_SHAPES), 2 threads, with normal gradients, and must match the
transcription after every step:
parameters and every state, per tensor,
    |ours - reference| <= 1e-9 |reference| + 1e-9 max|reference|,
NaN and infinities in the same places. The reference sums in numpy's order,
the kernels chunk by chunk: reduced values may differ in their last bits,
which a few steps of these bounded operations do not amplify past 1e-9.
--f32 runs float32 kernels against a reference that rounds every value to
float32 as the kernels do (numpy computes float32 in float32; reductions sum
in float64 and round once), within 1e-4.

--wrong perturbs the reference (every sum, mean and norm ten times the
tolerance off) and must fail.
"""

import argparse
import random
import sys

import numpy as np

# The parameters' shapes: 1-D for rules without rows and columns (which
# ignore shapes), matrices and a stack of them for rules with row and column
# states and reductions (--axes), rows of 70001 cut into parts by the
# chunking, an empty matrix.
SHAPES = [(0,), (1,), (2,), (7,), (33,), (1000,), (70001,)]
AXES_SHAPES = [(0,), (1,), (7,), (3, 5), (5, 3), (1, 1), (0, 4), (2, 3, 4),
               (33, 257), (3, 70001)]


def view(shape):
    """The [batch, rows, cols] view of a shape (docs/language.md, Rows and
    columns): a 1-D shape is one row."""
    if len(shape) == 1:
        return (1, 1, shape[0])
    batch = 1
    for d in shape[:-2]:
        batch *= d
    return (batch, shape[-2], shape[-1])


class Ctx:
    """The values of one step: each per-coordinate value is a list with one
    array per tensor (a vector state's arrays have a leading axis of its
    components); a uniform value is a Python float."""

    def __init__(self, views, wrong, nudge, dtype):
        self.views = views
        self.wrong = wrong
        # Every sum moved by `nudge` times 4 ulps (of the element type): the
        # spread of references nudged up and down measures how much the rule
        # amplifies the last bits of a sum, which the kernels add in another
        # order than numpy.
        self.nudge = nudge * (2.0**-50 if dtype == np.float64 else 2.0**-21)
        # float32: every value is rounded to float32 (numpy computes float32
        # arrays and scalars in float32), reductions sum in float64 and
        # round once, as the kernels do.
        self.dtype = dtype

    def round(self, v):
        return v.astype(self.dtype) if isinstance(v, np.ndarray) else self.dtype(v)

    def ew(self, fn, *args):
        if not any(isinstance(a, list) for a in args):
            return self.round(fn(*args))
        return [self.round(fn(*[a[k] if isinstance(a, list) else a for a in args]))
                for k in range(len(self.views))]

    def _reduce(self, kind, x, axis, count):
        if self.wrong and kind in ("sum", "mean", "norm"):
            # Ten times the tolerance off.
            off = 1e-8 if self.dtype == np.float64 else 1e-3
            return (1 + off) * self._exact(kind, x, axis, count)
        return self._exact(kind, x, axis, count)

    def _exact(self, kind, x, axis, count):
        total = lambda v: np.sum(v, axis=axis, keepdims=axis is not None) * \
            (1 + self.nudge)
        if kind == "sum":
            return total(x)
        if kind == "mean":
            return total(x) / count if count else np.nan * total(x)
        if kind == "norm":
            return np.sqrt(total(x * x))
        if kind == "max":
            return np.max(x, axis=axis, keepdims=axis is not None,
                          initial=-np.inf)
        return np.min(x, axis=axis, keepdims=axis is not None, initial=np.inf)

    def _full(self, x, k):
        return np.broadcast_to(x[k] if isinstance(x, list) else x,
                               self.views[k]).astype(np.float64)

    def tensor(self, kind, x):
        return [self.round(self._reduce(kind, self._full(x, k), None,
                                        int(np.prod(v))))
                for k, v in enumerate(self.views)]

    def glob(self, kind, x):
        whole = np.concatenate([self._full(x, k).ravel()
                                for k in range(len(self.views))])
        return self.round(self._reduce(kind, whole, None, whole.size))

    def row(self, kind, x):
        """At each coordinate, the reduction of x over its row: [B, R, 1]."""
        return [self.round(self._reduce(kind, self._full(x, k), 2, v[2]))
                for k, v in enumerate(self.views)]

    def col(self, kind, x):
        """Over its column: [B, 1, C]."""
        return [self.round(self._reduce(kind, self._full(x, k), 1, v[1]))
                for k, v in enumerate(self.views)]

    def rows(self):
        return [self.dtype(v[1]) for v in self.views]

    def cols(self):
        return [self.dtype(v[2]) for v in self.views]


UNARY = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "exp": lambda x: np.exp(x),
    "cos": np.cos,
    "sin": np.sin,
    "abs": np.abs,
    "cbrt": np.cbrt,
}


def gen_rule(rng, idx, axes):
    """Returns (source, hypers, states, body): `states` maps each state to
    (initial value, axis: none, row, col or vec); `body` is Python code that
    runs one step on a Ctx `C` with P, G, T, the hyperparameters and the
    states bound, and sets P_new and each state."""
    hypers = {"lr": rng.choice([0.01, 0.05, 0.1])}
    for h in rng.sample(["beta", "c", "wd"], rng.randint(0, 2)):
        hypers[h] = rng.choice([0.013, 0.11, 0.53, 1.7])
    states = {}
    for i in range(rng.randint(0, 2)):
        states[f"s{i}"] = (rng.choice(["0", "0.5", "p", "g"]), "none")
    if axes:
        for i in range(rng.randint(1, 2)):
            states[f"r{i}"] = (rng.choice(["0", "0.5", "1"]), "row")
        for i in range(rng.randint(0, 2)):
            states[f"c{i}"] = (rng.choice(["0", "0.5", "1"]), "col")
    vec = rng.random() < 0.3
    if vec:
        states["h"] = (rng.choice(["0", "0.25", "p"]), "vec")
    uniform = ["t"] + list(hypers)
    shared = {"coord": ["p", "g"] + [n for n, (_, a) in states.items() if a == "none"],
              "row": [n for n, (_, a) in states.items() if a == "row"],
              "col": [n for n, (_, a) in states.items() if a == "col"]}
    py = {"p": "P", "g": "G", "t": "T"}

    def leaf(share):
        r = rng.random()
        if vec and share == "coord" and r < 0.2:
            # The components stay equal (updated by scalars): h[2] - mean(h)
            # would be rounding noise, amplified. One of each kind of read.
            return rng.choice([("h[1]", "C.ew(lambda h: h[1], H)"),
                               ("sum(h)", "C.ew(lambda h: h.sum(axis=0), H)"),
                               ("dot(h, h * p)",
                                "C.ew(lambda h, p: (h * (h * p)).sum(axis=0), H, P)")])
        if r < 0.3:
            c = rng.choice(["0.37", "1.7", "2", "0.5"])
            return c, c
        if axes and r < 0.36:
            return rng.choice([("rows()", "C.rows()"), ("cols()", "C.cols()")])
        names = uniform + shared[share]
        if share == "coord" and axes:
            names = names + shared["row"] + shared["col"]
        name = rng.choice(names)
        return name, py.get(name, name)

    def e(d, share="coord"):
        if d <= 0 or rng.random() < 0.2:
            return leaf(share)
        r = rng.random()
        if r < 0.3:
            (a, pa), (b, pb) = e(d - 1, share), e(d - 1, share)
            op = rng.choice("+-*")
            return f"({a} {op} {b})", f"C.ew(lambda x, y: x {op} y, {pa}, {pb})"
        if r < 0.37:
            (a, pa), (b, pb) = e(d - 1, share), e(d - 1, share)
            return (f"({a} / (1 + {b} * {b}))",
                    f"C.ew(lambda x, y: x / (1 + y * y), {pa}, {pb})")
        if r < 0.52:
            a, pa = e(d - 1, share)
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
            (a, pa), (b, pb) = e(d - 1, share), e(d - 1, share)
            f = rng.choice(["max", "min", "clamp"])
            if f == "clamp":
                return (f"clamp({a}, -0.73, {b})",
                        f"C.ew(lambda x, y: np.minimum(np.maximum(x, -0.73), y), {pa}, {pb})")
            npf = "np.maximum" if f == "max" else "np.minimum"
            return f"{f}({a}, {b})", f"C.ew({npf}, {pa}, {pb})"
        if r < 0.8:
            # A reduction of any per-coordinate value: uniform over the
            # tensor (or all of them), or over the coordinate's row or
            # column, which a row (column) value may use.
            a, pa = e(d - 1)
            kind = rng.choice(["sum", "mean", "norm", "max", "min"])
            scopes = ["tensor", "global"]
            if axes and share in ("coord", "row"):
                scopes.append("row")
            if axes and share in ("coord", "col"):
                scopes.append("col")
            scope = rng.choice(scopes)
            fn = {"tensor": "C.tensor", "global": "C.glob", "row": "C.row",
                  "col": "C.col"}[scope]
            return f"{scope}_{kind}({a})", f"{fn}('{kind}', {pa})"
        return e(d - 1, share)

    lines, body = [], []
    for name, (init, axis) in states.items():
        size = "[3]" if axis == "vec" else ""
        prefix = f"{axis} " if axis in ("row", "col") else ""
        lines.append(f"  {prefix}state {name}{size} = {init}")
    for i in range(rng.randint(0, 3)):
        a, pa = e(3)
        lines.append(f"  let v{i} = {a}")
        body.append(f"v{i} = {pa}")
        shared["coord"].append(f"v{i}")
    for name, (_, axis) in states.items():
        if axis == "vec":
            (a, pa), (b, pb) = e(1), e(2)
            lines.append(f"  h = h * {a} + {b}")
            body.append(f"H = C.ew(lambda h, a, b: h * a + b, H, {pa}, {pb})")
        elif rng.random() < 0.85:
            a, pa = e(3, "coord" if axis == "none" else axis)
            lines.append(f"  {name} = {a}")
            body.append(f"{name} = {pa}")
    a, pa = e(3)
    lines.append(f"  p -= lr * {a}")
    body.append(f"P_new = C.ew(lambda p, e: p - lr * e, P, {pa})")
    params = ", ".join(f"{h} = {v}" for h, v in hypers.items())
    source = f"rule r{idx}({params}) {{\n" + "\n".join(lines) + "\n}\n"
    return source, hypers, states, "\n".join(body)


def state_shape(axis, v):
    """A state's array in the reference: [B, R, C] per coordinate, [B, R, 1]
    per row, [B, 1, C] per column, [3, B, R, C] for the vector state."""
    b, r, c = v
    return {"none": (b, r, c), "row": (b, r, 1), "col": (b, 1, c),
            "vec": (3, b, r, c)}[axis]


def reference(views, states, hypers, code, theta0, grads, wrong, nudge):
    """The transcription's parameters and states after each step, in the
    parameters' type."""
    dtype = theta0[0].dtype.type
    ref_p = [p.reshape(v).copy() for p, v in zip(theta0, views)]
    ref_states, out = {}, []
    for t, g in enumerate(grads, start=1):
        g = [x.reshape(v) for x, v in zip(g, views)]
        # States started from a value take it at the first step.
        if t == 1:
            for name, (init, axis) in states.items():
                src = ref_p if init == "p" else g if init == "g" else None
                ref_states[name] = [
                    np.broadcast_to(src[k] if src else dtype(float(init)),
                                    state_shape(axis, v)).astype(dtype)
                    for k, v in enumerate(views)]
        env = {"C": Ctx(views, wrong, nudge, dtype), "np": np, "UNARY": UNARY,
               "P": ref_p, "G": g, "T": dtype(t),
               **{h: dtype(v) for h, v in hypers.items()}}
        for name, v in ref_states.items():
            env["H" if name == "h" else name] = v
        with np.errstate(all="ignore"):
            exec(code, env)
        ref_p = [np.broadcast_to(x, v).astype(dtype)
                 for x, v in zip(env["P_new"], views)]
        for name, (_, axis) in states.items():
            new = env["H" if name == "h" else name]
            # A row or column state of a tensor without coordinates keeps
            # its value (KernelABI.h, "Axes": nothing computes a new one).
            ref_states[name] = [
                ref_states[name][k] if axis in ("row", "col") and not np.prod(v)
                else np.broadcast_to(new[k] if isinstance(new, list) else new,
                                     state_shape(axis, v)).astype(dtype)
                for k, v in enumerate(views)]
        out.append((ref_p, dict(ref_states)))
    return out


def run_case(optim_mlir, rng, idx, steps, wrong, axes, f32):
    source, hypers, states, body = gen_rule(rng, idx, axes)
    shapes = AXES_SHAPES if axes else SHAPES
    views = [view(sh) for sh in shapes]
    try:
        rule = optim_mlir.compile_source(source, f64=not f32,
                                         name=f"random{idx}.optim")
    except optim_mlir.OptimError as e:
        return source, [f"does not compile: {e}"]
    # float32 data (exact in float64): the float64 reference starts from the
    # float32 kernel's own values.
    dtype = np.float32 if f32 else np.float64
    params = [rng_np.standard_normal(sh).astype(dtype) for sh in shapes]
    grads = [[rng_np.standard_normal(sh).astype(dtype) for sh in shapes]
             for _ in range(steps)]
    # The reference rounds as the kernels do; what remains are a few ulps
    # of the built-ins (numpy's float32 functions against the kernels') and
    # of the sums of vector components (in another order), which a few
    # steps amplify little, except near a cube root's infinite slope at 0
    # (measured: 1.7e-5 of the scale).
    tol = 1e-4 if f32 else 1e-9
    code = compile(body, f"<rule {idx}>", "exec")
    refs = [reference(views, states, hypers, code, params, grads, wrong, nudge)
            for nudge in (0, 1, -1)]
    opt = optim_mlir.Optimizer(rule, params, threads=2)
    problems = []
    for t in range(1, steps + 1):
        opt.step(grads[t - 1])

        def compare(what, ours, ref, up, down):
            ours = ours.reshape(ref.shape).astype(np.float64)
            ref, up, down = (a.astype(np.float64) for a in (ref, up, down))
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
                ok = np.all(err <= tol * np.abs(ref[fin]) + tol * scale + spread)
            if not (same_special and ok):
                worst = float(np.max(err)) if err.size else float("nan")
                problems.append(f"step {t}, {what}: largest difference {worst:.3e}"
                                f" (scale {scale:.3e}), special values "
                                f"{'agree' if same_special else 'differ'}")

        (ref_p, ref_s), (up_p, up_s), (down_p, down_s) = [r[t - 1] for r in refs]
        for k, sh in enumerate(shapes):
            compare(f"p of tensor {k} {sh}", params[k], ref_p[k], up_p[k],
                    down_p[k])
            for name in ref_s:
                compare(f"state {name} of tensor {k} {sh}",
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
    ap.add_argument("--f32", action="store_true",
                    help="float32 kernels against the float64 reference")
    ap.add_argument("--axes", action="store_true",
                    help="rules with row and column states and reductions, "
                         "on matrices")
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
        source, problems = run_case(optim_mlir, rng, i, args.steps, args.wrong,
                                    args.axes, args.f32)
        if problems:
            failed += 1
            print(f"FAIL rule {i}:\n{source}" + "\n".join(problems[:5]))
    kind = "rules with rows and columns" if args.axes else "rules"
    kind += " in float32" if args.f32 else ""
    print(f"random {kind} against numpy: {args.count} rules, {args.steps} "
          f"steps, {failed} failed")
    return 1 if failed else 0


rng_np = None

if __name__ == "__main__":
    sys.exit(main())
