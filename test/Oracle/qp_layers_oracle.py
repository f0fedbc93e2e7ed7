#!/usr/bin/env python3
"""Oracle test: compiled QP layers end to end, forward and backward.

Each layer program of Inputs/layers/ is compiled and run by optim-layer
(optim::Compiler::compileLayerFile + optim::Layer) on seeded random data, and
checked against references that share no code with ours:

  forward   cvxopt (solvers.qp / solvers.lp at 1e-11) gives the active set
            {k : lam_k > s_k}; numpy then solves the equality-constrained KKT
            system on it (least squares where rows are dependent), which must
            agree with cvxopt to 1e-6 and is exact up to rounding. Compared:
            z, and nu and lam where they are unique ([A; G_active] of full
            row rank).
  backward  random incoming gradients of z, nu and lam; the QP operands'
            gradients from numpy's solve of the transposed KKT system on that
            active set (OptNet, Amos & Kolter 2017, eqs. (6)-(8)); chained to
            the layer's inputs and weights through a numpy copy of the layer's
            data expressions, differentiated by central differences (they are
            smooth: step 1e-6, error ~1e-10).

Tolerances (relative to max(1, max|reference|) per tensor): float64 1e-6
for z, nu, lam and 1e-5 for gradients; float32 (data rounded to float32,
references from the rounded data in float64) 1e-4 for everything (measured
errors: float64 below 1e-9, float32 below 1e-6).

Closed forms where there are: the projection onto the simplex (sorting, and
its Jacobian diag(s) - s s^T / |s| on the support s) and n = 1.

Layers: simplex (no weights), boxls (inequalities only, a non-symmetric
weight Q, nu of size 0), eqonly (equalities only, lam of size 0, sigmoid, a
layer parameter as a scalar), nonlin (exp, tanh, sqrt, log, / in the data;
Q = diag(exp(D)) + 0.1 * ones), periodic (cos, sin, floor, ceil, mod), lp (no Q: a vertex; dz/dc = 0), one (n = 1),
big (n = 200, p = 200, dense Q), lowrank (n = 24, p = 4: the solver's
low-rank mode), mix (an input and weights in several
operands), bmat (A, G and Q batched, from input matrices), shared (no inputs:
every operand shared), dup (redundant equalities, duplicated active
inequalities, a weakly active constraint: the gradient must be one of the two
one-sided derivatives), general (infeasible, unbounded and nonconvex
problems: statuses and errors), capped (an iteration cap), batch 0 and 1,
threads 1 vs 2 bitwise, non-finite data.

Prints one line per check, the failures and "N passed, M failed"; exits 1 on
any failure.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import cvxopt
import cvxopt.solvers

SEED = 20261127
HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = os.path.join(HERE, "Inputs", "layers")
TOL = {"f64": (1e-6, 1e-5), "f32": (1e-4, 1e-4)}  # (solution, gradients)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failures = []

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
        return cond

    def close(self, name, got, ref, tol):
        got = np.asarray(got, np.float64)
        ref = np.asarray(ref, np.float64)
        if got.shape != ref.shape:
            return self.ok(False, "%s: shape %s, expected %s" % (
                name, got.shape, ref.shape))
        if ref.size == 0:
            return self.ok(True, name)
        scale = max(1.0, float(np.max(np.abs(ref))))
        err = float(np.max(np.abs(got - ref))) / scale
        good = np.all(np.isfinite(got)) and err <= tol
        print("  %-34s %.2e (tol %g)%s" % (name, err, tol,
                                          "" if good else "  FAIL"))
        return self.ok(good, "%s: error %.3g > %g" % (name, err, tol))


# --- Running a layer ---------------------------------------------------------


class Tool:
    def __init__(self, path):
        self.path = path

    def run(self, layer, prec, batch, inputs, weights, douts=None,
            statuses=False, threads=1):
        """Returns (rc, info, stderr, outputs, statuses, grads)."""
        t = np.float64 if prec == "f64" else np.float32
        d = tempfile.mkdtemp(prefix="qp-layers-")
        try:
            for name, v in list(inputs.items()) + list(weights.items()):
                np.ascontiguousarray(v, t).tofile(os.path.join(d, name + ".bin"))
            for name, v in (douts or {}).items():
                np.ascontiguousarray(v, t).tofile(
                    os.path.join(d, "dout_" + name + ".bin"))
            cmd = [self.path, os.path.join(LAYERS, layer + ".optim"),
                   "--precision", prec, "--data", d, "--batch", str(batch),
                   "--threads", str(threads)]
            if statuses:
                cmd.append("--statuses")
            if douts is not None:
                cmd.append("--backward")
            r = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=300)
            info = json.loads(r.stdout) if r.stdout.strip() else None
            outs, grads, st = {}, {}, None
            if info:
                for o in info["outputs"]:
                    outs[o["name"]] = np.fromfile(os.path.join(
                        d, "out_" + o["name"] + ".bin"), t).reshape(
                            [batch] + o["shape"]).astype(np.float64)
                st = info["statuses"]
                for kind in ("inputs", "weights"):
                    for x in info[kind]:
                        f = os.path.join(d, "grad_" + x["name"] + ".bin")
                        if os.path.exists(f):
                            shape = ([batch] if kind == "inputs" else []) + \
                                x["shape"]
                            grads[x["name"]] = np.fromfile(f, t).reshape(
                                shape).astype(np.float64)
            return r.returncode, info, r.stderr, outs, st, grads
        finally:
            shutil.rmtree(d)


# --- References ----------------------------------------------------------------


def cvx(Q, q, A, b, G, h):
    """cvxopt's (status, z, nu, lam, s), at 1e-11, else 1e-9, else its
    defaults (it sometimes breaks down near the end at 1e-11)."""
    mat = lambda x: None if x is None else cvxopt.matrix(np.asarray(x, float))
    last = "exception"
    for tol in (1e-11, 1e-9, None):
        cvxopt.solvers.options.clear()
        cvxopt.solvers.options["show_progress"] = False
        if tol is not None:
            cvxopt.solvers.options.update(abstol=tol, reltol=tol, feastol=tol,
                                          maxiters=300)
        args = dict(A=mat(A), b=mat(b)) if A is not None else {}
        try:
            if Q is None:
                r = cvxopt.solvers.lp(mat(q), mat(G), mat(h), **args)
            else:
                r = cvxopt.solvers.qp(mat(Q), mat(q), mat(G), mat(h), **args)
        except (ValueError, ArithmeticError):
            continue
        last = r["status"]
        if last == "optimal":
            arr = lambda k: np.zeros(0) if r[k] is None else \
                np.array(r[k]).ravel()
            return last, arr("x"), arr("y"), arr("z"), arr("s")
    return last, None, None, None, None


def independent_rows(M):
    """Indices of a maximal set of linearly independent rows, in order."""
    keep = []
    for i in range(M.shape[0]):
        if np.linalg.matrix_rank(M[keep + [i]], tol=1e-9) == len(keep) + 1:
            keep.append(i)
    return keep


def sym(Q):
    return None if Q is None else 0.5 * (Q + Q.T)


class Ref:
    """The solution of one problem and its KKT system on the active set."""

    def __init__(self, ops, active=None):
        Q, q, A, b, G, h = (ops[k] for k in "QqAbGh")
        self.ops = ops
        n = q.size
        self.n = n
        self.Q = np.zeros((n, n)) if Q is None else sym(Q)
        m = 0 if A is None else A.shape[0]
        p = 0 if G is None else G.shape[0]
        self.m, self.p = m, p
        self.note = None
        if active is None:
            # cvxopt needs rank(A) = m: it gets the independent rows.
            rows = independent_rows(A) if m else []
            st, zc, nuc, lamc, sc = cvx(sym(Q), q, A[rows] if m else None,
                                        b[rows] if m else None, G, h)
            self.status = st
            if st != "optimal":
                return
            active = np.flatnonzero(lamc > sc) if p else np.zeros(0, int)
            self.zc = zc
        self.active = np.asarray(active, int)
        C = np.vstack([A if m else np.zeros((0, n)),
                       G[self.active] if p else np.zeros((0, n))])
        d = np.concatenate([b if m else [], h[self.active] if p else []])
        k = C.shape[0]
        self.K = np.block([[self.Q, C.T], [C, np.zeros((k, k))]])
        self.unique = k == 0 or np.linalg.matrix_rank(C, tol=1e-9) == k
        sol = np.linalg.lstsq(self.K, np.concatenate([-q, d]), rcond=1e-12)[0]
        self.z = sol[:n]
        self.nu = sol[n:n + m]
        self.lam = np.zeros(p)
        self.lam[self.active] = sol[n + m:]
        self.status = "optimal"

    def check(self, tol=1e-3):
        """The KKT point is a solution: stationary (by construction), primal
        and dual feasible, which proves optimality of a convex QP. cvxopt's
        point must be near it (it can be 1e-3 off at weakly active
        constraints, docs/qp.md)."""
        G, h = self.ops["G"], self.ops["h"]
        scale = max(1.0, np.max(np.abs(self.z)))
        good = True
        if self.p:
            good &= np.max(G @ self.z - h) <= 1e-9 * max(1, np.max(np.abs(h)))
            good &= np.min(self.lam) >= -1e-9 * max(1, np.max(self.lam))
        if hasattr(self, "zc"):
            good &= np.max(np.abs(self.z - self.zc)) <= tol * scale
        return bool(good)

    def qp_grads(self, gz, gnu, glam):
        """Gradients of <gz, z> + <gnu, nu> + <glam, lam> w.r.t. the
        operands (the OptNet backward on the active set)."""
        n, m = self.n, self.m
        rhs = -np.concatenate([gz, gnu, glam[self.active]])
        d = np.linalg.lstsq(self.K, rhs, rcond=1e-12)[0]
        dz, dnu, dlam_a = d[:n], d[n:n + m], d[n + m:]
        z = self.z
        dlam = np.zeros(self.p)
        dlam[self.active] = dlam_a
        g = {"Q": 0.5 * (np.outer(dz, z) + np.outer(z, dz)), "q": dz}
        if m:
            g["A"] = np.outer(dnu, z) + np.outer(self.nu, dz)
            g["b"] = -dnu
        if self.p:
            g["G"] = np.outer(dlam, z) + np.outer(self.lam, dz)
            g["h"] = -dlam
        return g


def chain(datafn, inputs, weights, B, qpgrads, eps=1e-6):
    """Gradients w.r.t. inputs and weights of sum_e <qpgrads[e][k], op_k(e)>
    by central differences of the (smooth) numpy data function."""
    def dot(e, ins, ws):
        ops = datafn({k: v[e] for k, v in ins.items()}, ws)
        return sum(float(np.sum(qpgrads[e][k] * ops[k]))
                   for k in qpgrads[e] if ops.get(k) is not None)

    out = {}
    for name, v in inputs.items():
        g = np.zeros_like(v)
        for e in range(B):
            for idx in np.ndindex(v.shape[1:]):
                keep = v[(e,) + idx]
                v[(e,) + idx] = keep + eps
                up = dot(e, inputs, weights)
                v[(e,) + idx] = keep - eps
                down = dot(e, inputs, weights)
                v[(e,) + idx] = keep
                g[(e,) + idx] = (up - down) / (2 * eps)
        out[name] = g
    for name, v in weights.items():
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            keep = v[idx]
            v[idx] = keep + eps
            up = sum(dot(e, inputs, weights) for e in range(B))
            v[idx] = keep - eps
            down = sum(dot(e, inputs, weights) for e in range(B))
            v[idx] = keep
            g[idx] = (up - down) / (2 * eps)
        out[name] = g
    return out


# --- The layers' data, as the programs in Inputs/layers/ write it ------------


def ops(Q=None, q=None, A=None, b=None, G=None, h=None):
    return dict(Q=Q, q=q, A=A, b=b, G=G, h=h)


DATA = {
    "simplex": lambda x, w: ops(np.eye(10), -x["y"], np.ones((1, 10)),
                                np.ones(1), -np.eye(10), np.zeros(10)),
    "boxls": lambda x, w: ops(w["P"] + 1e-3 * np.eye(5), -(w["Mt"] @ x["y"]),
                              G=w["G"], h=np.exp(w["r"])),
    "eqonly": lambda x, w: ops(np.eye(6) + 0.2 * np.ones((6, 6)),
                               w["c"] / (1 + np.exp(-x["y"])), w["W"],
                               np.tanh(x["t"])),
    "nonlin": lambda x, w: ops(
        np.eye(5) * np.exp(w["D"]) + 0.1 * np.ones((5, 5)),
        np.tanh(w["W"] @ x["x"]) / 0.2, G=w["G"],
        h=np.exp(w["v"]) + np.sqrt(x["s"] ** 2 + 1) - np.log(1 + x["s"] ** 2)),
    "periodic": lambda x, w: ops(
        np.eye(4), np.cos(w["W"] @ x["x"]) - np.sin(w["u"]) * x["y"]
        + np.floor(2 * x["y"]) - np.ceil(x["y"]), G=w["G"],
        h=0.5 + np.mod(x["s"], 1 + np.exp(w["c"])) - np.mod(3 * x["s"], -2.0)),
    "guarded": lambda x, w: ops(
        np.eye(4), -x["y"], G=w["G"],
        h=np.where(w["c"] > 0, np.sqrt(np.abs(w["c"])) + 0.5, 0.5 - w["c"])
        + np.where(w["c"] < 0, 0.25, np.log(np.abs(w["c"])) + 2.0)),
    "lp": lambda x, w: ops(None, x["c"], G=w["G"], h=x["h"]),
    "one": lambda x, w: ops(np.eye(1), -x["y"], G=w["a"], h=np.ones(1)),
    "big": lambda x, w: ops(np.eye(200) + 0.01 * np.ones((200, 200)),
                            w["w"] - x["y"], np.ones((1, 200)), np.ones(1),
                            -np.eye(200), np.zeros(200)),
    "dup": lambda x, w: ops(np.eye(4), -x["y"], w["A"], w["b"], w["G"],
                            x["h"]),
    "general": lambda x, w: ops(w["Q"], x["q"], w["A"], x["b"], w["G"],
                                x["h"]),
    "mix": lambda x, w: ops(2 * np.eye(4), x["x"] * np.exp(w["u"]) - w["u"],
                            np.ones((1, 4)), np.ones((1, 4)) @ np.tanh(x["x"]),
                            w["W"], w["W"] @ np.tanh(x["x"]) +
                            np.exp(w["W"] @ w["u"])),
    "bmat": lambda x, w: ops(w["Q0"] + np.eye(5) * np.exp(x["S"]), -x["y"],
                             x["M"], x["M"] @ x["y"] * 0.5, x["K"],
                             x["K"] @ x["y"] * 0.5 + 1.0),
    "lowrank": lambda x, w: ops(w["P"] + 0.01 * np.eye(24), -x["y"],
                                G=w["G"], h=x["h"]),
    "shared": lambda x, w: ops(np.eye(3), w["c"], G=w["g"], h=np.ones(1)),
    "capped": lambda x, w: ops(np.eye(30), -x["y"], G=w["G"], h=x["h"]),
    "optnet": lambda x, w: ops(w["L"] @ w["L"].T + 0.1 * np.eye(5), x["x"],
                               w["A"], w["A"] @ w["z0"], w["G"],
                               w["G"] @ w["z0"] + np.exp(w["s0"])),
    "elements": lambda x, w: elements_data(x, w),
    "box": lambda x, w: ops(
        np.diag(np.exp(w["d"])) + 0.5 * np.eye(5),
        -(np.diag(np.exp(w["d"])) @ x["y"]),
        G=np.vstack([np.eye(5), -np.eye(5)]),
        h=np.concatenate([w["lo"] + np.exp(w["width"]), -w["lo"]])),
    "choose": lambda x, w: ops(
        np.eye(3), x["x"] if 0 < x["s"][0] <= 5 else w["w"] * x["s"][0],
        G=w["G"], h=np.full(2, 0.1)),
}


def elements_data(x, w):
    s0, s1 = x["s"]
    M = x["X"] @ w["W"]
    scale = 1 + abs(s0) + (abs(s1) + 0.5) ** 1.5
    y, u = x["y"], w["u"]
    q = (np.maximum(y, -1) * np.sign(u) + np.minimum(u, 0.5 * y)
         - s1 * np.clip(y, -0.5, 0.5))
    return ops(M.T @ M + scale * np.eye(4), q, G=w["C"] @ M,
               h=0.05 + 0.1 * np.abs(w["C"] @ (M @ u)))


def round_to(prec, d):
    t = np.float64 if prec == "f64" else np.float32
    return {k: np.asarray(v, t).astype(np.float64) for k, v in d.items()}


def element_ops(layer, inputs, weights, e):
    return DATA[layer]({k: v[e] for k, v in inputs.items()}, weights)


def end_to_end(ck, tool, rng, layer, prec, B, inputs, weights,
               closed_form=None, grad_only=None, weak=None):
    """Forward and backward of `layer` against the references. grad_only:
    compare only these gradients (the others: finite); weak: {e: k},
    constraint k of element e is weakly active (either one-sided derivative
    is right)."""
    inputs, weights = round_to(prec, inputs), round_to(prec, weights)
    tz, tg = TOL[prec]
    label = "%s %s B=%d" % (layer, prec, B)
    refs = []
    for e in range(B):
        r = Ref(element_ops(layer, inputs, weights, e))
        if not ck.ok(r.status == "optimal" and r.check(),
                     "%s: no reference for element %d (cvxopt: %s)" % (
                         label, e, r.status)):
            return
        refs.append(r)
    print("%s (active inequalities per element: %s)" % (
        label, " ".join(str(r.active.size) for r in refs)))
    n, m, p = refs[0].n, refs[0].m, refs[0].p
    douts = {"z": rng.standard_normal((B, n)),
             "nu": rng.standard_normal((B, m)),
             "lam": rng.standard_normal((B, p))}
    if grad_only is not None:
        douts = {"z": douts["z"]}  # multipliers not unique: through z only
    douts = round_to(prec, douts)
    rc, info, err, outs, st, grads = tool.run(layer, prec, B, inputs,
                                              weights, douts)
    if not ck.ok(rc == 0, "%s: optim-layer failed: %s" % (label, err.strip())):
        return
    ck.ok(st == ["solved"] * B, "%s: statuses %s" % (label, st))
    ck.close(label + " z", outs["z"], np.array([r.z for r in refs]), tz)
    if all(r.unique for r in refs):
        ck.close(label + " nu", outs["nu"], np.array([r.nu for r in refs]), tz)
        ck.close(label + " lam", outs["lam"], np.array([r.lam for r in refs]),
                 tz)
    if closed_form:
        # The closed forms know z only: a second backward from z alone.
        z, g = closed_form(inputs, weights, douts["z"])
        ck.close(label + " z (closed form)", outs["z"], z, tz)
        rc, _, err, _, _, zgrads = tool.run(layer, prec, B, inputs, weights,
                                            {"z": douts["z"]})
        for k, v in g.items():
            ck.close(label + " grad %s (closed form)" % k, zgrads.get(k), v,
                     tg)
    gz = douts["z"]
    gnu = douts.get("nu", np.zeros((B, m)))
    glam = douts.get("lam", np.zeros((B, p)))
    qpg = [refs[e].qp_grads(gz[e], gnu[e], glam[e]) for e in range(B)]
    want = chain(lambda x, w: DATA[layer](x, w), inputs, weights, B, qpg)
    alt = None
    if weak:
        # Weakly active constraint: the derivative with it in the active set
        # is the other admissible answer.
        qpg2 = []
        for e in range(B):
            r = refs[e]
            if e in weak:
                act = sorted(set(r.active) ^ {weak[e]})
                r = Ref(element_ops(layer, inputs, weights, e), act)
            qpg2.append(r.qp_grads(gz[e], gnu[e], glam[e]))
        alt = chain(lambda x, w: DATA[layer](x, w), inputs, weights, B, qpg2)
    for k in want:
        if grad_only is not None and k not in grad_only:
            ck.ok(np.all(np.isfinite(grads[k])), "%s: grad %s not finite" % (
                label, k))
            continue
        if alt is not None:
            scale = max(1.0, np.max(np.abs(want[k])))
            e1 = np.max(np.abs(grads[k] - want[k])) / scale
            e2 = np.max(np.abs(grads[k] - alt[k])) / max(
                1.0, np.max(np.abs(alt[k])))
            # Per element, either side: compare element by element.
            per = []
            for e in range(B):
                a = np.max(np.abs(grads[k][e] - want[k][e]))
                c = np.max(np.abs(grads[k][e] - alt[k][e]))
                per.append(min(a, c))
            err = max(per) / scale
            print("  %-34s %.2e (tol %g; inactive %.1e, active %.1e)" % (
                label + " grad " + k + " (weak)", err, tg, e1, e2))
            ck.ok(err <= tg, "%s grad %s (weakly active): error %.3g" % (
                label, k, err))
            continue
        ck.close(label + " grad " + k, grads[k], want[k], tg)


# --- Closed forms ----------------------------------------------------------------


def simplex_closed(inputs, weights, gz):
    Y = inputs["y"]
    Z, G = [], []
    for y, g in zip(Y, gz):
        u = np.sort(y)[::-1]
        css = np.cumsum(u)
        k = np.flatnonzero(u - (css - 1) / np.arange(1, y.size + 1) > 0)[-1]
        tau = (css[k] - 1) / (k + 1)
        z = np.maximum(y - tau, 0)
        s = (z > 0).astype(float)
        J = np.diag(s) - np.outer(s, s) / s.sum()
        Z.append(z)
        G.append(J.T @ g)
    return np.array(Z), {"y": np.array(G)}


def one_closed(inputs, weights, gz):
    a = weights["a"][0, 0]
    y = inputs["y"][:, 0]
    z = np.minimum(y, 1 / a)
    gy = np.where(y < 1 / a, gz[:, 0], 0.0)
    ga = np.sum(np.where(y < 1 / a, 0.0, -gz[:, 0] / a ** 2))
    return z[:, None], {"y": gy[:, None], "a": np.array([[ga]])}


# --- The cases ---------------------------------------------------------------------


def feasible_cases(ck, tool, rng, precs):
    N = rng.standard_normal
    for prec in precs:
        end_to_end(ck, tool, rng, "simplex", prec, 6,
                   {"y": 1.5 * N((6, 10))}, {}, closed_form=simplex_closed)
    end_to_end(ck, tool, rng, "simplex", "f64", 1, {"y": N((1, 10))}, {},
               closed_form=simplex_closed)
    M = N((8, 5))
    skew = N((5, 5))
    P = M.T @ M / 8 + 0.5 * (skew - skew.T)  # the solver uses (P + P^T) / 2
    for prec in precs:
        end_to_end(ck, tool, rng, "boxls", prec, 4, {"y": 3 * N((4, 8))},
                   {"P": P, "Mt": N((5, 8)) / 2, "G": N((10, 5)),
                    "r": np.log(rng.uniform(0.2, 1.0, 10))})
        end_to_end(ck, tool, rng, "eqonly", prec, 3,
                   {"y": N((3, 6)), "t": N((3, 3))},
                   {"W": N((3, 6)), "c": N(6)})
        end_to_end(ck, tool, rng, "nonlin", prec, 4,
                   {"x": N((4, 3)), "s": N((4, 7))},
                   {"D": 0.3 * N((5, 5)) - 0.5, "W": N((5, 3)),
                    "G": N((7, 5)), "v": 0.3 * N(7)})
        end_to_end(ck, tool, rng, "periodic", prec, 4,
                   {"x": N((4, 3)), "y": 2 * N((4, 4)), "s": 3 * N((4, 6))},
                   {"W": N((4, 3)), "u": N(4), "G": N((6, 4)),
                    "c": 0.5 * N(6)})
        end_to_end(ck, tool, rng, "guarded", prec, 3, {"y": 2 * N((3, 4))},
                   {"c": np.array([1.0, -1.0, 1.0, -1.0])
                    * rng.uniform(0.3, 1.5, 4), "G": N((4, 4))})
        box = np.vstack([np.eye(4), -np.eye(4), N((4, 4))])
        h = np.concatenate([np.ones(8), rng.uniform(0.5, 2.0, 4)])
        end_to_end(ck, tool, rng, "lp", prec, 4,
                   {"c": N((4, 4)), "h": h + 0.2 * rng.random((4, 12))},
                   {"G": box})
    end_to_end(ck, tool, rng, "one", "f64", 4,
               {"y": np.array([[-1.0], [0.5], [2.0], [3.0]])},
               {"a": np.array([[0.8]])}, closed_form=one_closed)
    end_to_end(ck, tool, rng, "big", "f64", 2, {"y": N((2, 200)) / 10},
               {"w": 0.01 * N(200)})
    for prec in precs:
        end_to_end(ck, tool, rng, "mix", prec, 4, {"x": 2 * N((4, 4))},
                   {"W": N((3, 4)), "u": 0.5 * N(4)})
        M = N((5, 5))
        end_to_end(ck, tool, rng, "bmat", prec, 3,
                   {"S": N((3, 5, 5)), "M": N((3, 2, 5)), "K": N((3, 3, 5)),
                    "y": 3 * N((3, 5))}, {"Q0": M.T @ M / 5})
        end_to_end(ck, tool, rng, "optnet", prec, 5, {"x": 2 * N((5, 5))},
                   {"L": N((5, 5)) / 2, "A": N((2, 5)), "G": N((4, 5)),
                    "z0": N(5), "s0": 0.5 * N(4) - 1})
        end_to_end(ck, tool, rng, "elements", prec, 4,
                   {"X": N((4, 3, 3)), "y": 2 * N((4, 4)), "s": N((4, 2))},
                   {"W": N((3, 4)), "C": N((3, 3)), "u": N(4)})
        end_to_end(ck, tool, rng, "box", prec, 5, {"y": 2 * N((5, 5))},
                   {"d": 0.5 * N(5), "lo": N(5) - 0.5, "width": 0.3 * N(5)})
        end_to_end(ck, tool, rng, "choose", prec, 4,
                   {"x": N((4, 3)), "s": np.array([[1.5], [-0.7], [6.0],
                                                   [0.2]])},
                   {"w": N(3), "G": N((2, 3))})
    M = N((12, 24))
    end_to_end(ck, tool, rng, "lowrank", "f64", 3,
               {"y": 3 * N((3, 24)), "h": rng.uniform(0.5, 1.0, (3, 4))},
               {"P": M.T @ M / 24, "G": N((4, 24))})
    end_to_end(ck, tool, rng, "shared", "f64", 3, {},
               {"c": np.array([1.0, -2.0, -0.5]),
                "g": np.array([[0.2, 1.0, -0.3]])})  # active
    # dup: A's third row is twice its first (b consistent), G's second row
    # repeats its first (both active), and in element 2 constraint 5 is
    # weakly active (on the boundary with a zero multiplier).
    A = N((3, 4))
    A[2] = 2 * A[0]
    z0 = N(4)
    b = A @ z0
    G = N((6, 4))
    G[1] = G[0]
    y = 3 * N((3, 4))
    h = np.empty((3, 6))
    for e in range(3):
        # The projection of y onto {A z = b}, then G0 cut through it.
        r = Ref(ops(np.eye(4), -y[e], A, b), active=[])
        h[e] = G @ r.z + rng.uniform(0.5, 1.0, 6)
        h[e, :2] = G[0] @ r.z - 0.3
    e, k = 2, 5
    h[e, 2:] += 10.0  # only the pair and k active: multipliers stay >= 0
    without = Ref(ops(np.eye(4), -y[e], A, b, G, h[e]))
    h[e, k] = G[k] @ without.z  # weakly active: touches the solution
    end_to_end(ck, tool, rng, "dup", "f64", 3, {"y": y, "h": h},
               {"A": A, "G": G, "b": b}, grad_only={"y"}, weak={e: k})


def expect_error(ck, label, rc, err, text):
    print("%s: %s" % (label, err.strip().splitlines()[-1] if err.strip()
                      else "(no error)"))
    ck.ok(rc == 1 and text in err, "%s: expected an error with '%s', got "
          "rc %d: %s" % (label, text, rc, err.strip()))


def ill_posed_cases(ck, tool, rng, precs):
    """The general layer (n = 3, m = 1, p = 4) on bad data."""
    N = rng.standard_normal
    box = np.vstack([np.eye(3), -np.eye(3)])[[0, 1, 3, 4]]  # z0, z1 in a box
    good = {"Q": np.eye(3) + 0.1, "A": np.array([[1.0, 1.0, 1.0]]), "G": box}
    gi = {"q": N((1, 3)), "b": np.ones((1, 1)), "h": np.ones((1, 4))}
    for prec in precs:
        # Element 1 infeasible (z0 <= -2 and z0 >= 1), 0 and 2 not.
        B = 3
        q = N((B, 3))
        b = np.ones((B, 1))
        h = np.ones((B, 4))
        h[1, 0], h[1, 2] = -2.0, -1.0   # z0 <= -2, -z0 <= -1
        ins = {"q": q, "b": b, "h": h}
        label = "general %s infeasible element 1" % prec
        rc, info, err, outs, st, _ = tool.run("general", prec, B, ins, good,
                                              statuses=True)
        print("%s: statuses %s" % (label, st))
        ck.ok(rc == 0 and st == ["solved", "primal infeasible", "solved"],
              "%s: rc %d, statuses %s: %s" % (label, rc, st, err))
        if rc == 0:
            # The solved elements are right despite their neighbour.
            for e in (0, 2):
                r = Ref(element_ops("general", round_to(prec, ins),
                                    round_to(prec, good), e))
                ck.close("%s z[%d]" % (label, e), outs["z"][e], r.z,
                         TOL[prec][0])
            cert_nu, cert_lam = outs["nu"][1], outs["lam"][1]
            # Farkas: A^T nu + G^T lam ~ 0, lam >= 0, b^T nu + h^T lam < 0.
            res = good["A"].T @ cert_nu + good["G"].T @ cert_lam
            ck.ok(np.max(np.abs(res)) < 1e-6 and np.min(cert_lam) >= -1e-9
                  and b[1] @ cert_nu + h[1] @ cert_lam < 0,
                  "%s: not a Farkas certificate: nu %s lam %s" % (
                      label, cert_nu, cert_lam))
        rc, _, err, _, _, _ = tool.run("general", prec, B, ins, good)
        expect_error(ck, label + " (no statuses)", rc, err,
                     "layer 'general': qp: problem 1 of the batch is primal "
                     "infeasible")
        rc, _, err, _, _, _ = tool.run("general", prec, B, ins, good,
                                       douts={"z": np.ones((B, 3))},
                                       statuses=True)
        expect_error(ck, label + " backward", rc, err,
                     "backward() needs a forward() whose problems were all "
                     "solved")
        # Inconsistent equality: A = 0, b = 1.
        w = dict(good, A=np.zeros((1, 3)))
        rc, _, err, _, st, _ = tool.run("general", prec, 1, gi, w,
                                        statuses=True)
        print("general %s 0 z = 1: statuses %s" % (prec, st))
        ck.ok(rc == 0 and st == ["primal infeasible"],
              "general %s 0 z = 1: rc %d statuses %s %s" % (prec, rc, st, err))
        # Unbounded: Q = 0, z0 = 0.5, z1 boxed, z2 free with cost 1: the
        # certificate is the direction -e2.
        w = dict(good, Q=np.zeros((3, 3)), A=np.array([[1.0, 0.0, 0.0]]))
        ins1 = dict(gi, q=np.array([[0.3, -0.2, 1.0]]),
                    b=np.array([[0.5]]))
        rc, _, err, outs, st, _ = tool.run("general", prec, 1, ins1, w,
                                           statuses=True)
        print("general %s unbounded: statuses %s, z %s" % (
            prec, st, None if rc else outs["z"][0]))
        ck.ok(rc == 0 and st == ["dual infeasible (unbounded)"] and
              outs["z"][0][2] < -0.5,
              "general %s unbounded: rc %d statuses %s %s" % (prec, rc, st,
                                                              err))
        rc, _, err, _, _, _ = tool.run("general", prec, 1, ins1, w)
        expect_error(ck, "general %s unbounded (no statuses)" % prec, rc, err,
                     "problem 0 of the batch is dual infeasible")
        # Nonconvex: Q = diag(1, 1, -1) is indefinite on the feasible set
        # (z2 = 1 - z0 - z1): a KKT point need not be a minimum, so the layer
        # must not return one as "solved" without a word.
        # Q = -I: z = 0 is stationary (the maximum over the box) and was
        # returned as "solved" before the solver checked Q.
        for Q in (np.diag([1.0, 1.0, -1.0]), -np.eye(3)):
            w = dict(good, Q=Q)
            ins0 = dict(gi, q=np.zeros((1, 3)))
            rc, _, err, outs, st, _ = tool.run("general", prec, 1, ins0, w,
                                               statuses=True)
            label = "general %s indefinite Q %s" % (prec, np.diag(Q))
            print("%s: statuses %s" % (label, st))
            ck.ok(rc == 0 and st == ["numerical error"],
                  "%s: rc %d statuses %s z %s %s" % (
                      label, rc, st, None if rc else outs["z"][0], err))
            rc, _, err, _, _, _ = tool.run("general", prec, 1, ins0, w)
            expect_error(ck, label + " (no statuses)", rc, err,
                         "problem 0 of the batch failed with a numerical "
                         "error; it has "
                         "no solution to use (a factorization failed or an "
                         "iterate was not finite: is Q positive "
                         "semidefinite?")
    # Non-finite data.
    ins = {"q": N((2, 3)), "b": np.ones((2, 1)), "h": np.ones((2, 4))}
    ins["q"][1, 2] = np.nan
    rc, _, err, _, _, _ = tool.run("general", "f64", 2, ins, good)
    expect_error(ck, "general nan input", rc, err,
                 "input 'q' has a non-finite value (nan) at batch element 1, "
                 "flat index 2")
    w = dict(good, G=good["G"].copy())
    w["G"][3, 1] = np.inf
    ins["q"][1, 2] = 0
    rc, _, err, _, _, _ = tool.run("general", "f64", 2, ins, w)
    expect_error(ck, "general inf weight", rc, err,
                 "weights 'G' has a non-finite value (inf) at flat index 10")
    rc, _, err, _, _, _ = tool.run("nonlin", "f64", 1,
                                   {"x": N((1, 3)), "s": N((1, 7))},
                                   {"D": np.zeros((5, 5)), "W": N((5, 3)),
                                    "G": N((7, 5)), "v": np.full(7, 1000.0)})
    expect_error(ck, "nonlin exp overflow", rc, err,
                 "layer 'nonlin': the QP data it computed is invalid: qp: h "
                 "has a non-finite value (inf)")
    # A file of the wrong size (9 numbers per element instead of 10).
    rc, _, err, _, _, _ = tool.run("simplex", "f64", 2,
                                   {"y": np.zeros((2, 9))}, {})
    expect_error(ck, "simplex wrong input size", rc, err,
                 "y.bin' has 144 bytes; expected 160")
    # Batch 0: a clear error, not an empty success or a crash (optim-layer
    # refuses it before reading the files; the layer's own check of it is
    # test/e2e's).
    rc, _, err, _, _, _ = tool.run("simplex", "f64", 0,
                                   {"y": np.zeros((0, 10))}, {})
    expect_error(ck, "simplex batch 0", rc, err,
                 "--batch must be at least 1, got 0")


def capped_case(ck, tool, rng):
    """max_iter: 1 at tol 1e-12 on n = 30, p = 40: "iteration limit", or, if
    the polish of the best iterate met the tolerance, the right solution."""
    N = rng.standard_normal
    B = 24  # about 1 in 100 such batches would all be solved by the polish
    G = N((40, 30))
    ins = {"y": 3 * N((B, 30)), "h": rng.uniform(0.5, 1.5, (B, 40))}
    rc, _, err, outs, st, _ = tool.run("capped", "f64", B, ins, {"G": G},
                                       statuses=True)
    print("capped f64 B=%d: statuses %s" % (B, st))
    if not ck.ok(rc == 0, "capped: optim-layer failed: %s" % err):
        return
    ck.ok("iteration limit" in st, "capped: no problem hit the cap: %s" % st)
    for e in range(B):
        if st[e] == "solved":
            r = Ref(element_ops("capped", ins, {"G": G}, e))
            ck.close("capped z[%d] (solved by the polish)" % e, outs["z"][e],
                     r.z, 1e-6)
        else:
            ck.ok(st[e] == "iteration limit", "capped: status %s" % st[e])
    rc, _, err, _, _, _ = tool.run("capped", "f64", B, ins, {"G": G})
    expect_error(ck, "capped (no statuses)", rc, err,
                 "of the batch hit the iteration limit; it has no solution to "
                 "use (raise the iteration limit, max_iter, or the tolerance, "
                 "tol)")


def threads_case(ck, tool, rng):
    """The result does not depend on the number of threads (bitwise)."""
    ins = {"y": rng.standard_normal((3, 200)) / 10}
    w = {"w": 0.01 * rng.standard_normal(200)}
    dz = {"z": rng.standard_normal((3, 200)), "nu": rng.standard_normal((3, 1)),
          "lam": rng.standard_normal((3, 200))}
    r1 = tool.run("big", "f64", 3, ins, w, dz, threads=1)
    r2 = tool.run("big", "f64", 3, ins, w, dz, threads=2)
    same = r1[0] == 0 and r2[0] == 0 and all(
        np.array_equal(r1[3][k], r2[3][k]) for k in r1[3]) and all(
            np.array_equal(r1[5][k], r2[5][k]) for k in r1[5])
    print("big threads 1 vs 2: %s" % ("bitwise equal" if same else "DIFFER"))
    ck.ok(same, "big: threads 1 and 2 differ")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", required=True, help="optim-layer")
    parser.add_argument("--precisions", default="f64,f32")
    args = parser.parse_args()
    start = time.time()
    rng = np.random.default_rng(SEED)
    tool = Tool(args.tool)
    ck = Checks()
    precs = args.precisions.split(",")
    # Each group draws from its own stream: a layer added to one leaves the
    # others' data as it was.
    feasible_cases(ck, tool, rng, precs)
    ill_posed_cases(ck, tool, np.random.default_rng(SEED + 1), precs)
    capped_case(ck, tool, np.random.default_rng(SEED + 2))
    threads_case(ck, tool, np.random.default_rng(SEED + 3))
    print("%.1fs" % (time.time() - start))
    for f in ck.failures:
        print("FAIL", f)
    print("%d passed, %d failed" % (ck.passed, len(ck.failures)))
    return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
