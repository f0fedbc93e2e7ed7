#!/usr/bin/env python3
"""Oracle test: the QP solver (optim_qp_*, KernelABI.h) on hard and odd QPs.

qp_oracle.py covers random problems by class; this covers what it does not
generate, each case a few problems, against cvxopt, numpy (closed forms and
least squares) and central finite differences of our own forward pass:

  shapes     n = 1; no constraints; equalities only with m > n (consistent:
             solved; inconsistent: primal infeasible); n = 300 with m = 40,
             p = 300; a batch whose elements are different problems (every
             operand batched), one of them nonconvex and one infeasible.
  hard       an LP's degenerate vertex and a tie along a face; duplicated
             and rank-deficient constraints; Q of condition 1e8 (free,
             equality and box constrained) and 1e10 (free: not "unbounded";
             the solver declared their minimizers a direction of unbounded
             descent; docs/qp.md says where that limit is); Q = 0 given as a matrix (an LP); a feasible
             set that is one point (no interior); infeasible and unbounded
             problems; non-symmetric Q (its symmetric part used) and
             indefinite Q (numerical error, also where the problem is convex
             on the equality constraints' subspace: docs/qp.md, a
             limitation); NaN and inf in each operand.
  gradients  central differences of the forward pass (step 1e-6; 1e-5
             relative in float64, 1e-3 in float32) w.r.t. Q, q, A, b, G, h
             where the solution is unique and strictly complementary; at
             non-unique solutions (an LP tie, PSD Q with a free direction,
             dependent equality rows, duplicated active inequalities with
             incoming gradients of nu and lam) the backward pass must
             return the least-squares solution of the active-set KKT system
             (numpy's lstsq, as diffcp/cvxpylayers): before, it returned
             components of order 1e10.
  row scales a bound of 1e17 to 1e30 beside finite ones (as a user writes
             "no bound"), and constraints inactive by 1e-7 that an
             interior point takes for active: z and dq against the known
             solution and the true active set's KKT system.
  variables  z = s * w with s = 10^U(-3, 3), 10^U(-6, 6), 1e-6 or 1e6 per
             variable (dense constraints, bounds, an LP): z and dq against
             the known solution and KKT system.

Prints one line per check, the failures and "N passed, M failed"; exits 1 on
any failure. A few seconds.
"""

import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qp_oracle  # noqa: E402
from qp_oracle import Problem, STATUS, cvx_qp  # noqa: E402

BITS = dict(Q=1, q=2, A=4, b=8, G=16, h=32)


class Solver(qp_oracle.Solver):
    """forward and backward of one batch through the C ABI."""

    def __init__(self, path, tol=0.0):
        super().__init__(path, tol)
        self.lib.optim_qp_backward.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(Problem)] + [ctypes.c_void_p] * 9

    def run(self, prec, ops, B=1, batched="", grads=None):
        """ops: Q, q, A, b, G, h (None: absent), with a leading B for the
        names in `batched`. grads: (gz, gnu, glam), [B, ...] or None each.
        Returns a dict: rc, err, z, nu, lam, st, and with grads brc, berr
        and g (the operands' gradients)."""
        t = np.float64 if prec == "f64" else np.float32
        arr = {k: None if ops.get(k) is None else
               np.ascontiguousarray(ops[k], t) for k in "QqAbGh"}
        n = arr["q"].shape[-1]
        m = 0 if arr["A"] is None else arr["A"].shape[-2]
        p = 0 if arr["G"] is None else arr["G"].shape[-2]
        pr = Problem(1 if prec == "f64" else 0,
                     sum(BITS[k] for k in batched), B, n, m, p,
                     *[None if arr[k] is None else arr[k].ctypes.data
                       for k in "QqAbGh"])
        z = np.zeros((B, n), t)
        nu = np.zeros((B, max(m, 1)), t)
        lam = np.zeros((B, max(p, 1)), t)
        st = np.zeros(B, np.int32)
        rc = self.lib.optim_qp_forward(self.handle, ctypes.byref(pr),
                                       z.ctypes.data, nu.ctypes.data,
                                       lam.ctypes.data, st.ctypes.data, None)
        out = dict(rc=rc, err=self.error(rc), z=z.astype(float),
                   nu=nu[:, :m].astype(float), lam=lam[:, :p].astype(float),
                   st=[STATUS[int(s)] for s in st])
        if grads is None or rc != 0:
            return out
        gin = [None if x is None else np.ascontiguousarray(x, t)
               for x in grads]
        g = {k: None if arr[k] is None else np.zeros_like(arr[k])
             for k in "QqAbGh"}
        rc = self.lib.optim_qp_backward(
            self.handle, ctypes.byref(pr),
            *[None if x is None else x.ctypes.data for x in gin],
            *[None if g[k] is None else g[k].ctypes.data for k in "QqAbGh"])
        out.update(brc=rc, berr=self.error(rc),
                   g={k: None if v is None else v.astype(float)
                      for k, v in g.items()})
        return out

    def error(self, rc):
        return None if rc == 0 else self.lib.optim_qp_error(
            self.handle).decode()


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
        got, ref = np.asarray(got, float), np.asarray(ref, float)
        if got.shape != ref.shape:
            return self.ok(False, "%s: shape %s, expected %s" % (
                name, got.shape, ref.shape))
        err = float(np.max(np.abs(got - ref), initial=0.0)) / max(
            1.0, float(np.max(np.abs(ref), initial=0.0)))
        good = bool(np.all(np.isfinite(got))) and err <= tol
        print("  %-46s %.2e (tol %g)%s" % (name, err, tol,
                                          "" if good else "  FAIL"))
        return self.ok(good, "%s: error %.3g > %g" % (name, err, tol))

    def status(self, name, got, want):
        print("  %-46s %s" % (name, got))
        return self.ok(got == want, "%s: status %s, expected %s" % (
            name, got, want))


def cvx(o, lp=False):
    return cvx_qp(o.get("Q"), o["q"], o.get("A"), o.get("b"), o.get("G"),
                  o.get("h"), lp=lp)


def rounded(prec, o):
    t = np.float64 if prec == "f64" else np.float32
    return {k: None if v is None else np.asarray(v, t).astype(float)
            for k, v in o.items()}


def pow2floor(x):
    """QPScale.h's pow2Floor: 2^floor(log2 x), 1 for 0."""
    return 2.0 ** np.floor(np.log2(x)) if x > 0 else 1.0


def kkt_lstsq(o, z, nu, lam, gz, gnu, glam, active):
    """The operands' gradients from the least-squares (minimum-norm)
    solution of the active-set KKT system, OptNet's eqs. (6)-(8), in the
    solver's scaled terms (docs/qp.md, "Scaling" and "Non-unique
    solutions"): [Q/c, C^T Dc^-1; Dc^-1 C, 0] (dz, y^) = (-gz/c, -Dc^-1 g)
    with Dc = diag(a rho_i, g rho_i) (rho_i: each row's equilibration) and
    y = c Dc^-1 y^. Where rows are dependent the least-squares solution
    depends on that scaling; with uniform rows it is the plain one."""
    n = z.size
    Q = np.zeros((n, n)) if o.get("Q") is None else 0.5 * (o["Q"] + o["Q"].T)
    A = o.get("A")
    m = 0 if A is None else A.shape[0]
    G = o.get("G")
    c = pow2floor(np.max(np.abs(Q)) if np.any(Q) else
                  np.max(np.abs(o["q"])))
    dc = []
    if m:
        a = pow2floor(np.max(np.abs(A)))
        dc += [a * pow2floor(np.max(np.abs(row / a))) for row in A]
    if len(active):
        g = pow2floor(np.max(np.abs(G)))
        dc += [g * pow2floor(np.max(np.abs(G[i] / g))) for i in active]
    dc = np.array(dc, float)
    C = np.vstack(([A] if m else []) + ([G[active]] if len(active)
                                        else []) + [np.zeros((0, n))])
    k = C.shape[0]
    Cs = C / dc[:, None] if k else C
    K = np.block([[Q / c, Cs.T], [Cs, np.zeros((k, k))]])
    rhs = -np.concatenate([gz / c, np.concatenate([gnu, glam[active]]) /
                           (dc if k else 1)])
    d = np.linalg.lstsq(K, rhs, rcond=1e-10)[0]
    if k:
        d[n:] *= c / dc
    dz, dnu = d[:n], d[n:n + m]
    dl = np.zeros(lam.size)
    dl[active] = d[n + m:]
    g = {"Q": 0.5 * (np.outer(dz, z) + np.outer(z, dz)), "q": dz}
    if m:
        g.update(A=np.outer(dnu, z) + np.outer(nu, dz), b=-dnu)
    if lam.size:
        g.update(G=np.outer(dl, z) + np.outer(lam, dz), h=-dl)
    return g


def finite_differences(S, prec, o, gz, eps):
    """d<gz, z>/d(operand) by central differences of our forward pass."""
    out = {}
    for k in "QqAbGh":
        if o.get(k) is None:
            continue
        g = np.zeros_like(o[k])
        for idx in np.ndindex(o[k].shape):
            v = {kk: None if x is None else x.copy() for kk, x in o.items()}
            v[k][idx] += eps
            up = S.run(prec, v)["z"][0]
            v[k][idx] -= 2 * eps
            down = S.run(prec, v)["z"][0]
            g[idx] = gz @ (up - down) / (2 * eps)
        out[k] = g
    return out


def box(n, r=1.0):
    return np.vstack([np.eye(n), -np.eye(n)]), np.full(2 * n, r)


def psd(rng, n, cond=None):
    if cond is None:
        M = rng.standard_normal((n, n))
        return M @ M.T / n + 0.1 * np.eye(n)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    Q = (U * np.logspace(-np.log10(cond), 0, n)) @ U.T
    return (Q + Q.T) / 2


# --- Shapes ---------------------------------------------------------------


def shapes(ck, S, rng):
    print("shapes")
    for prec in ("f64", "f32"):
        tol = 1e-6 if prec == "f64" else 1e-5
        r = S.run(prec, dict(Q=np.array([[2.0]]), q=np.array([-3.0])))
        ck.status("n=1 free %s" % prec, r["st"], ["solved"])
        ck.close("n=1 free %s z" % prec, r["z"][0], [1.5], tol)
        r = S.run(prec, dict(Q=np.array([[2.0]]), q=np.array([-3.0]),
                             G=np.array([[-4.0]]), h=np.array([-8.0])))
        ck.close("n=1 z >= 2 %s z" % prec, r["z"][0], [2.0], tol)
        ck.close("n=1 z >= 2 %s lam" % prec, r["lam"][0], [0.25], tol)
        # m = 5 > n = 3, consistent: A z = A z0 pins z = z0.
        A = rng.standard_normal((5, 3))
        z0 = np.array([0.5, -1.0, 0.25])
        o = dict(Q=np.eye(3), q=rng.standard_normal(3), A=A, b=A @ z0)
        if prec == "f32":  # A z0 in float32 arithmetic: consistent there
            o["A"] = np.asarray(A, np.float32).astype(float)
            o["b"] = (np.asarray(o["A"], np.float32) @
                      np.asarray(z0, np.float32)).astype(float)
        r = S.run(prec, o)
        ck.status("eq only m=5 > n=3 %s" % prec, r["st"], ["solved"])
        ck.close("eq only m=5 > n=3 %s z" % prec, r["z"][0], z0,
                 1e-6 if prec == "f64" else 1e-4)
        o["b"] = o["b"] + np.array([0.0, 0.0, 0.0, 0.0, 0.5])
        r = S.run(prec, o)
        ck.status("eq only m=5 > n=3 inconsistent %s" % prec, r["st"],
                  ["primal infeasible"])
    # n = 300, m = 40, p = 300 (dense mode), against cvxopt.
    n, m, p = 300, 40, 300
    z0 = rng.standard_normal(n)
    A, G = rng.standard_normal((m, n)), rng.standard_normal((p, n))
    o = dict(Q=psd(rng, n), q=rng.standard_normal(n), A=A, b=A @ z0, G=G,
             h=G @ z0 + rng.uniform(0.0, 1.0, p))
    r = S.run("f64", o)
    st, ref = cvx(o)
    ck.ok(st == "optimal", "n=300: cvxopt %s" % st)
    ck.status("n=300 m=40 p=300", r["st"], ["solved"])
    if ref is not None:
        ck.close("n=300 m=40 p=300 z vs cvxopt", r["z"][0], ref, 1e-6)
    # A batch of different problems: element 2 nonconvex, 3 infeasible.
    B, n, m, p = 5, 6, 2, 8
    ops = {k: [] for k in "QqAbGh"}
    for e in range(B):
        z0 = rng.standard_normal(n)
        A, G = rng.standard_normal((m, n)), rng.standard_normal((p, n))
        h = G @ z0 + rng.uniform(0.1, 1.0, p)
        Q = -np.eye(n) if e == 2 else psd(rng, n)
        if e == 3:  # a^T z <= b - 1 and a^T z = b
            G[0], h[0] = A[0], A[0] @ z0 - 1.0
        for k, v in zip("QqAbGh", (Q, rng.standard_normal(n), A, A @ z0, G,
                                   h)):
            ops[k].append(v)
    ops = {k: np.array(v) for k, v in ops.items()}
    want = ["solved", "solved", "numerical error", "primal infeasible",
            "solved"]
    for prec in ("f64", "f32"):
        o = rounded(prec, ops)
        r = S.run(prec, o, B=B, batched="QqAbGh",
                  grads=(np.ones((B, n)), None, None))
        ck.status("batch of 5 different problems %s" % prec, r["st"], want)
        for e in (0, 1, 4):
            st, ref = cvx({k: v[e] for k, v in o.items()})
            ck.close("batch %s element %d z vs cvxopt" % (prec, e),
                     r["z"][e], ref, 1e-6 if prec == "f64" else 1e-4)
        ck.ok(r["brc"] != 0 and "problem 2 of the batch failed with a numerical error"
              in (r["berr"] or ""), "batch %s backward: %s" % (prec,
                                                                r["berr"]))


# --- Hard cases ------------------------------------------------------------


def hard(ck, S, rng):
    print("hard cases")
    G = np.array([[1.0, 0], [0, 1], [1, 1], [-1, 0], [0, -1]])
    h = np.array([1.0, 1, 2, 0, 0])  # the vertex (1, 1) is degenerate
    for prec in ("f64", "f32"):
        r = S.run(prec, dict(q=np.array([-1.0, -1]), G=G, h=h))
        ck.close("LP degenerate vertex %s z" % prec, r["z"][0], [1, 1], 1e-6)
        # A tie: every z = (1, t), t in [0, 1], is optimal.
        r = S.run(prec, dict(Q=np.zeros((2, 2)), q=np.array([-1.0, 0]), G=G,
                             h=h))
        z = r["z"][0]
        ck.ok(r["st"] == ["solved"] and abs(z[0] - 1) < 1e-6 and
              -1e-6 <= z[1] <= 1 + 1e-6, "LP tie %s: %s %s" % (
                  prec, r["st"], z))
        # One feasible point, from inequalities only (no interior).
        c = np.array([0.3, -0.2, 0.5])
        r = S.run(prec, dict(Q=np.eye(3), q=rng.standard_normal(3),
                             G=np.vstack([np.eye(3), -np.eye(3)]),
                             h=np.concatenate([c, -c])))
        ck.status("feasible set one point %s" % prec, r["st"], ["solved"])
        ck.close("feasible set one point %s z" % prec, r["z"][0], c, 1e-6)
    # Duplicated inequalities and dependent equality rows.
    n = 6
    z0 = rng.standard_normal(n)
    A = rng.standard_normal((3, n))
    A = np.vstack([A, A[0] + 2 * A[1], A[2]])
    G = rng.standard_normal((8, n))
    G = np.vstack([G, G[:3]])
    h = G @ z0 + np.concatenate([rng.uniform(0.1, 1, 8), [0.0] * 3])
    h[8:] = h[:3]
    o = dict(Q=psd(rng, n), q=3 * rng.standard_normal(n), A=A, b=A @ z0,
             G=G, h=h)
    st, ref = cvx(dict(o, A=A[:3], b=o["b"][:3], G=G[:8], h=h[:8]))
    for prec in ("f64", "f32"):
        r = S.run(prec, rounded(prec, o))
        ck.close("dependent and duplicated rows %s z" % prec, r["z"][0], ref,
                 1e-6 if prec == "f64" else 1e-4)
    # Ill-conditioned Q, default tolerance.
    for cond in (1e8,):
        Q = psd(rng, 8, cond)
        q = rng.standard_normal(8)
        r = S.run("f64", dict(Q=Q, q=q))
        # The condition bounds what any solver can do: cond * eps.
        ck.close("cond %g free z" % cond, r["z"][0],
                 np.linalg.solve(Q, -q), 1e-6)
        A = rng.standard_normal((3, 8))
        o = dict(Q=Q, q=q, A=A, b=A @ rng.standard_normal(8))
        st, ref = cvx(o)
        ck.close("cond %g equalities z vs cvxopt" % cond,
                 S.run("f64", o)["z"][0], ref, 1e-6)
        Gb, hb = box(8)
        o = dict(Q=Q, q=q, G=Gb, h=hb)
        st, ref = cvx(o)
        ck.close("cond %g box z vs cvxopt" % cond, S.run("f64", o)["z"][0],
                 ref, 1e-6)
    for cond in (1e10,):
        bad = 0
        for i in range(10):
            Q = psd(rng, int(rng.integers(2, 20)), cond)
            r = S.run("f64", dict(Q=Q, q=rng.standard_normal(len(Q))))
            bad += r["st"] == ["dual infeasible"]
        print("  %-46s %d of 10" % ("cond %g free: 'unbounded'" % cond, bad))
        ck.ok(bad == 0, "cond %g: %d of 10 positive definite problems "
              "declared unbounded" % (cond, bad))
    # Infeasible and unbounded.
    for prec in ("f64", "f32"):
        r = S.run(prec, dict(Q=np.eye(2), q=np.zeros(2),
                             A=np.array([[1.0, 1], [1, 1]]),
                             b=np.array([1.0, 2])))
        ck.status("duplicated equality, other b %s" % prec, r["st"],
                  ["primal infeasible"])
        r = S.run(prec, dict(Q=np.eye(2), q=np.zeros(2), A=np.eye(2),
                             b=np.array([1.0, 2]), G=np.array([[1.0, 0]]),
                             h=np.array([0.5])))
        ck.status("equalities pin z outside G z <= h %s" % prec, r["st"],
                  ["primal infeasible"])
        r = S.run(prec, dict(q=np.array([1.0, 0.0])))
        ck.status("LP without constraints %s" % prec, r["st"],
                  ["dual infeasible"])
        r = S.run(prec, dict(Q=np.diag([1.0, 0]), q=np.array([-1.0, 1])))
        ck.status("PSD Q, q not in its range %s" % prec, r["st"],
                  ["dual infeasible"])
        r = S.run(prec, dict(Q=np.diag([1.0, 0]), q=np.array([-1.0, 0])))
        ck.status("PSD Q, q in its range %s" % prec, r["st"], ["solved"])
        ck.close("PSD Q, q in its range %s z" % prec, r["z"][0], [1, 0], 1e-6)
    # Non-symmetric and indefinite Q.
    for prec in ("f64", "f32"):
        r = S.run(prec, dict(Q=np.array([[1.0, 5], [-5, 1]]),
                             q=np.array([1.0, -1])))
        ck.close("Q = I + skew %s z" % prec, r["z"][0], [-1, 1], 1e-6)
        for name, Q, extra in (
                ("Q non-symmetric, indefinite symmetric part",
                 np.array([[1.0, 4], [0, 1]]), {}),
                ("Q indefinite on a box", np.diag([1.0, -1]),
                 dict(G=box(2)[0], h=box(2)[1])),
                ("Q indefinite, convex on A z = b", np.diag([1.0, -1]),
                 dict(A=np.array([[0.0, 1]]), b=np.zeros(1)))):
            r = S.run(prec, dict(Q=Q, q=np.array([1.0, -1]), **extra))
            ck.status("%s %s" % (name, prec), r["st"], ["numerical error"])
    # NaN and inf: an error naming the operand.
    base = dict(Q=np.eye(2), q=np.array([1.0, -1]), A=np.ones((1, 2)),
                b=np.zeros(1), G=np.eye(2), h=np.ones(2))
    for k in "QqAbGh":
        for bad in (np.nan, np.inf, -np.inf):
            o = {kk: v.copy() for kk, v in base.items()}
            o[k].flat[-1] = bad
            r = S.run("f64", o)
            ck.ok(r["rc"] != 0 and ("qp: %s has a non-finite value" % k) in
                  (r["err"] or ""), "%s = %s: %s" % (k, bad, r["err"]))
    print("  non-finite operands: errors checked")


# --- Gradients -----------------------------------------------------------------


def gradients(ck, S, S12, rng):
    print("gradients")
    n = 5
    z0 = rng.standard_normal(n)
    G = rng.standard_normal((8, n))
    A = rng.standard_normal((2, n))
    Qn = psd(rng, n) + np.triu(0.3 * rng.standard_normal((n, n)), 1)
    cases = [
        ("n=1 active", dict(Q=np.array([[2.0]]), q=np.array([-4.0]),
                            G=np.array([[1.5]]), h=np.array([1.0]))),
        ("free", dict(Q=psd(rng, n), q=rng.standard_normal(n))),
        ("equalities only", dict(Q=psd(rng, n), q=rng.standard_normal(n),
                                 A=A, b=A @ z0)),
        ("inequalities", dict(Q=psd(rng, n), q=3 * rng.standard_normal(n),
                              G=G, h=G @ z0 + rng.uniform(0.1, 1, 8))),
        ("both, non-symmetric Q", dict(Q=Qn, q=3 * rng.standard_normal(n),
                                       A=A, b=A @ z0, G=G,
                                       h=G @ z0 + rng.uniform(0.1, 1, 8))),
        ("cond 1e4 box", dict(Q=psd(rng, 4, 1e4), q=rng.standard_normal(4),
                              G=box(4, 0.5)[0], h=box(4, 0.5)[1])),
        ("LP vertex", dict(q=rng.standard_normal(3),
                           G=np.vstack([box(3)[0], [[1.0, 1, 1]]]),
                           h=np.concatenate([box(3)[1], [1.5]]))),
    ]
    for name, o in cases:
        for prec in ("f64", "f32"):
            o2 = rounded(prec, o)
            gz = rng.standard_normal(o2["q"].size)
            r = S.run(prec, o2, grads=(gz[None], None, None))
            if not ck.ok(r["st"] == ["solved"] and r["brc"] == 0,
                         "%s %s: %s %s" % (name, prec, r["st"], r.get(
                             "berr"))):
                continue
            # The differences in float64 at 1e-12, for a smooth reference.
            want = finite_differences(S12, "f64", o2, gz, 1e-6)
            tol = 1e-5 if prec == "f64" else 1e-3
            for k, v in want.items():
                ck.close("%s %s d%s" % (name, prec, k), r["g"][k], v, tol)


def non_unique(ck, S, rng):
    """Where the solution (or the multipliers) is not unique, the KKT system
    of the backward pass is singular: the least-squares solution."""
    print("gradients at non-unique solutions (least squares)")
    Gt = np.array([[1.0, 0], [0, 1], [1, 1], [-1, 0], [0, -1]])
    ht = np.array([1.0, 1, 2, 0, 1])
    A = rng.standard_normal((2, 4))
    Ad = np.vstack([A, A[0] - A[1]])
    G = rng.standard_normal((3, 4))
    Gd = np.vstack([G, G[0]])
    z0 = rng.standard_normal(4)
    cases = [
        # min -z0 over the box: z = (1, t) for every t in [-1, 1].
        ("LP tie", dict(q=np.array([-1.0, 0]), G=Gt, h=ht)),
        ("PSD Q, free direction", dict(Q=np.diag([1.0, 0]),
                                       q=np.array([-1.0, 0]))),
        ("Q = 0, q = 0", dict(Q=np.zeros((2, 2)), q=np.zeros(2))),
        ("LP, q in the range of A^T", dict(q=np.array([1.0, 1, 0]),
                                           A=np.array([[1.0, 1, 0]]),
                                           b=np.ones(1))),
        ("dependent equality rows", dict(Q=psd(rng, 4),
                                         q=rng.standard_normal(4), A=Ad,
                                         b=Ad @ z0)),
        ("duplicated active inequality", dict(
            Q=np.eye(4), q=-(z0 + 2 * G[0]), G=Gd,
            h=np.concatenate([[G[0] @ z0], G[1:] @ z0 + 5, [G[0] @ z0]]))),
    ]
    for name, o in cases:
        n = o["q"].size
        m = 0 if o.get("A") is None else o["A"].shape[0]
        p = 0 if o.get("G") is None else o["G"].shape[0]
        gz, gnu, glam = (rng.standard_normal(k) for k in (n, m, p))
        r = S.run("f64", o, grads=(gz[None], gnu[None] if m else None,
                                   glam[None] if p else None))
        if not ck.ok(r["st"] == ["solved"] and r["brc"] == 0,
                     "%s: %s %s" % (name, r["st"], r.get("berr"))):
            continue
        z, nu, lam = r["z"][0], r["nu"][0], r["lam"][0]
        active = np.flatnonzero(lam > 1e-9) if p else np.zeros(0, int)
        want = kkt_lstsq(o, z, nu, lam, gz, gnu, glam, active)
        for k, v in want.items():
            if o.get(k) is not None:
                ck.close("%s d%s" % (name, k), r["g"][k], v, 1e-6)


def row_scales(ck, S, rng):
    """Constraints on their own scales. A bound of 1e20 (a user's "no
    bound") beside z1 >= -0.5: the stopping test once measured every
    inequality against the largest |h|, and returned z1 = -1 as "solved".
    Then a constraint inactive by a slack of 1e-7 that the interior point
    takes for active (s and lam both ~1e-4): its multiplier in the polish
    comes out slightly negative, and the polish, clipped, lost to the
    interior point, whose z is O(sqrt(mu)) off (1.4e-4 measured on 22 of
    300 such problems), while the backward pass kept the polish's active
    set (its gradient 0.3 off the solution's)."""
    print("rows on their own scales")
    n = 3
    for prec in ("f64", "f32"):
        for big in (1e17, 1e20, 1e30):
            # z1 <= big and -z1 <= 0.5; then the same as a box.
            for name, G, h, zs, gq in (
                    ("z1 <= %g" % big, np.array([[1.0, 0, 0], [-1, 0, 0]]),
                     np.array([big, 0.5]), [-0.5, -1, -1], [0, -1, -1]),
                    ("box up to %g" % big, np.vstack([np.eye(n), -np.eye(n)]),
                     np.array([big] * n + [0.5] * n), [-0.5] * n, [0] * n)):
                r = S.run(prec, dict(Q=np.eye(n), q=np.ones(n), G=G, h=h),
                          grads=(np.ones((1, n)), None, None))
                what = "%s %s" % (name, prec)
                ck.status(what, r["st"], ["solved"])
                ck.close(what + " z", r["z"][0], zs, 1e-12 if prec == "f64"
                         else 1e-6)
                ck.close(what + " dq", r["g"]["q"].reshape(-1), gq, 1e-9 if
                         prec == "f64" else 1e-5)
    # An infeasible problem beside a row of tiny entries with a moderate
    # bound: the rows' equilibration multiplies that bound by 2^20, and the
    # Farkas test, had it read the equilibrated bounds, would no longer
    # certify it (it ended at the iteration limit).
    for prec in ("f64", "f32"):
        r = S.run(prec, dict(Q=np.eye(2), q=np.ones(2),
                             G=np.array([[1e-6, 0], [1, 0], [-1, 0]]),
                             h=np.array([1.0, -1, -1])))
        ck.status("infeasible beside a row of 1e-6 %s" % prec, r["st"],
                  ["primal infeasible"])
    # Nearly active: n = 8, 3 active constraints (multipliers 1 to 10), one
    # inactive by 1e-7, two by 0.5 to 1; Q of condition 10; a known z.
    n, p, count = 8, 6, 200
    worst = worst_g = 0.0
    for _ in range(count):
        U = np.linalg.qr(rng.standard_normal((n, n)))[0]
        Q = U @ np.diag(np.geomspace(1, 10, n)) @ U.T
        G = rng.standard_normal((p, n))
        zs = rng.standard_normal(n)
        lam = np.concatenate([rng.uniform(1, 10, 3), [0.0] * 3])
        slack = np.concatenate([[0.0] * 3, [1e-7], rng.uniform(0.5, 1, 2)])
        o = dict(Q=Q, q=-Q @ zs - G.T @ lam, G=G, h=G @ zs + slack)
        gz = np.ones(n)
        r = S.run("f64", o, grads=(gz[None], None, None))
        worst = max(worst, float(np.max(np.abs(r["z"][0] - zs))) /
                    max(1.0, float(np.max(np.abs(zs)))))
        # grad q = the z part of K^-1 [-gz; 0] on the true active set.
        Ga = G[:3]
        K = np.block([[Q, Ga.T], [Ga, np.zeros((3, 3))]])
        gq = np.linalg.solve(K, np.concatenate([-gz, np.zeros(3)]))[:n]
        worst_g = max(worst_g, float(np.max(np.abs(r["g"]["q"].reshape(-1) - gq))) /
                      max(1.0, float(np.max(np.abs(gq)))))
        ck.ok(r["st"] == ["solved"], "nearly active: status %s" % r["st"])
    print("  %-46s %.2g (tol 1e-9)" % ("nearly active (1e-7) z, %d problems"
                                      % count, worst))
    print("  %-46s %.2g (tol 1e-9)" % ("nearly active (1e-7) dq", worst_g))
    ck.ok(worst <= 1e-9, "nearly active z: %.3g" % worst)
    ck.ok(worst_g <= 1e-9, "nearly active dq: %.3g" % worst_g)
    # Rows of A (and b) and of G (and h) of very different scales, 1e-2 to
    # 1e2 and 1e-4 to 1e4: the interior point's start (a least-squares solve weighted by the
    # rows, then shifts of s and lam to 1) is not invariant under row
    # scaling, and a row far below the largest is below the polish's
    # regularization; the solver equilibrates the rows (docs/qp.md). Before,
    # 34 of 100 ended at the iteration limit at 1e-4..1e4 (G's rows), and the
    # solved ones were up to 1.7 off; with A's rows, 54 and 0.45. n = 8,
    # m = 4, 3 of 6 active; z against the known solution, dq, db and dh (f64)
    # against the true active set's KKT system (invariant under row
    # scaling).
    n, m, p, count = 8, 4, 6, 100
    for spread in (2, 4):
        for prec in ("f64", "f32"):
            worst = worst_g = 0.0
            unsolved = 0
            for _ in range(count):
                U = np.linalg.qr(rng.standard_normal((n, n)))[0]
                Q = U @ np.diag(np.geomspace(1, 10, n)) @ U.T
                A = rng.standard_normal((m, n))
                G = rng.standard_normal((p, n))
                zs = rng.standard_normal(n)
                lam = np.concatenate([rng.uniform(1, 10, 3), [0.0] * 3])
                nu = rng.standard_normal(m)
                slack = np.concatenate([[0.0] * 3, rng.uniform(0.5, 1, 3)])
                r = rng.permutation(np.logspace(-spread, spread, p))
                rA = rng.permutation(np.logspace(-spread, spread, m))
                Gr, Ar = r[:, None] * G, rA[:, None] * A
                o = dict(Q=Q, q=-Q @ zs - A.T @ nu - G.T @ lam, A=Ar,
                         b=rA * (A @ zs), G=Gr, h=r * (G @ zs + slack))
                gz = np.ones(n)
                out = S.run(prec, rounded(prec, o), grads=(
                    gz[None], None, None) if prec == "f64" else None)
                if out["st"] != ["solved"]:
                    unsolved += 1
                    continue
                worst = max(worst, float(np.max(np.abs(out["z"][0] - zs)))
                            / max(1.0, float(np.max(np.abs(zs)))))
                if prec != "f64":
                    continue
                Ga = Gr[:3]
                K = np.block([[Q, Ar.T, Ga.T],
                              [Ar, np.zeros((m, m + 3))],
                              [Ga, np.zeros((3, m + 3))]])
                w = np.linalg.solve(K, np.concatenate([-gz, np.zeros(m + 3)]))
                gq, gb = w[:n], -w[n:n + m]
                gh = np.concatenate([-w[n + m:], np.zeros(3)])
                for got, want in ((out["g"]["q"].reshape(-1), gq),
                                  (out["g"]["b"].reshape(-1), gb),
                                  (out["g"]["h"].reshape(-1), gh)):
                    worst_g = max(worst_g, float(np.max(np.abs(got - want)))
                                  / max(1.0, float(np.max(np.abs(want)))))
            tol = 1e-9 if prec == "f64" else 1e-3
            print("  %-46s %d not solved; z %.2g (tol %g)%s" % (
                "rows of A, G scaled 1e-%d..1e%d %s, %d" % (
                    spread, spread, prec, count), unsolved, worst, tol,
                "; dq, db, dh %.2g (tol 1e-8)" % worst_g if prec == "f64"
                else ""))
            ck.ok(unsolved == 0, "rows scaled 1e%d %s: %d not solved" % (
                spread, prec, unsolved))
            ck.ok(worst <= tol, "rows scaled 1e%d %s: z %.3g off" %
                  (spread, prec, worst))
            ck.ok(worst_g <= 1e-8, "rows scaled 1e%d %s: dq, db, dh %.3g off" %
                  (spread, prec, worst_g))


def variable_scales(ck, S, rng):
    """Variables on their own scales: z = s * w with s = 10^U(-k, k) per
    variable, or one s for all (1e-6, 1e6): Q' = S Q S, q' = S q,
    A' = A S, G' = G S, as a user who writes a problem in other units
    would. The solver scales the variables back (docs/qp.md, "Scaling");
    before, s of 10^+-3 came back "solved" up to 0.7 off (120 of 200), and
    s = 1e6 (a solution of size 1e-6) up to 47x off. Dense constraints and
    bounds (rows of one nonzero, which say nothing of a variable's scale);
    an LP. z (in the unscaled units, s * w) against the known solution,
    and dq' (= dq / s) against the true active set's KKT system."""
    print("variables on their own scales")
    n, m, p, count = 8, 2, 6, 60
    for kind in ("dense", "bounds", "lp"):
        for spread in (3, 6, "1e-6", "1e6"):
            for prec in ("f64", "f32"):
                if prec == "f32" and spread not in (3, "1e-6", "1e6"):
                    continue
                worst = worst_g = 0.0
                unsolved = 0
                for _ in range(count):
                    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
                    Q = U @ np.diag(np.geomspace(1, 10, n)) @ U.T
                    if kind == "lp":
                        Q = np.zeros((n, n))
                    A = rng.standard_normal((m, n))
                    if kind == "bounds":
                        G = np.vstack([np.eye(n), -np.eye(n)])[:p]
                    else:
                        G = rng.standard_normal((p, n))
                    if kind == "lp":
                        # A vertex: n - m active inequalities of 2n bounds
                        # and rows, each with a positive multiplier.
                        G = np.vstack([rng.standard_normal((n - m, n)),
                                       np.eye(n), -np.eye(n)])
                    pp = G.shape[0]
                    zs = rng.standard_normal(n)
                    act = n - m if kind == "lp" else 3
                    lam = np.concatenate([rng.uniform(1, 10, act),
                                          [0.0] * (pp - act)])
                    slack = np.concatenate([[0.0] * act,
                                            rng.uniform(0.5, 1, pp - act)])
                    if kind == "lp":
                        slack[act:] += 5  # the bounds far from zs
                    nu = rng.standard_normal(m)
                    q = -Q @ zs - A.T @ nu - G.T @ lam
                    if isinstance(spread, str):
                        sv = np.full(n, float(spread))
                    else:
                        sv = 10.0 ** rng.uniform(-spread, spread, n)
                    o = dict(Q=None if kind == "lp" else sv[:, None] * Q * sv,
                             q=sv * q, A=A * sv, b=A @ zs, G=G * sv,
                             h=G @ zs + slack)
                    gz = np.ones(n)
                    out = S.run(prec, rounded(prec, o), grads=(
                        (gz * sv)[None], None, None)
                        if prec == "f64" and kind != "lp" else None)
                    if out["st"] != ["solved"]:
                        unsolved += 1
                        continue
                    worst = max(worst, float(np.max(np.abs(
                        sv * out["z"][0] - zs))) / max(1.0, float(np.max(
                            np.abs(zs)))))
                    if prec != "f64" or kind == "lp":
                        continue
                    # dq = the z part of K^-1 [-gz; 0] on the true active
                    # set, in the unscaled problem; dq' = dq / s.
                    C = np.vstack([A, G[:act]])
                    K = np.block([[Q, C.T], [C, np.zeros((m + act,) * 2)]])
                    gq = np.linalg.solve(
                        K, np.concatenate([-gz, np.zeros(m + act)]))[:n]
                    got = out["g"]["q"].reshape(-1) * sv
                    worst_g = max(worst_g, float(np.max(np.abs(got - gq))) /
                                  max(1.0, float(np.max(np.abs(gq)))))
                tol = 1e-9 if prec == "f64" else 1e-3
                if kind == "lp" and spread == "1e-6" and prec == "f64":
                    # A solution of size 1e6: an LP's stays at the stopping
                    # test's relative accuracy (measured 2e-8; the same
                    # with b and h multiplied by 1e6 and no variables
                    # scaled, and 8e-15 at tol = 1e-12). Only solutions
                    # below 1 are scaled (QPScale.h's rhsScale): above, a
                    # bound of 1e20 would count as the solution's size.
                    tol = 1e-7
                name = "%s, s %s %s" % (kind, spread if isinstance(
                    spread, str) else "10^+-%d" % spread, prec)
                print("  %-46s %d not solved; z %.2g (tol %g)%s" % (
                    name, unsolved, worst, tol,
                    "; dq %.2g (tol 1e-8)" % worst_g
                    if prec == "f64" and kind != "lp" else ""))
                ck.ok(unsolved == 0, "%s: %d not solved" % (name, unsolved))
                ck.ok(worst <= tol, "%s: z %.3g off" % (name, worst))
                ck.ok(worst_g <= 1e-8, "%s: dq %.3g off" % (name, worst_g))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", required=True, help="liboptim.so")
    args = parser.parse_args()
    rng = np.random.default_rng(20261127)
    S = Solver(args.library)
    S12 = Solver(args.library, tol=1e-12)
    ck = Checks()
    shapes(ck, S, rng)
    hard(ck, S, rng)
    gradients(ck, S, S12, rng)
    non_unique(ck, S, rng)
    row_scales(ck, S, rng)
    variable_scales(ck, S, rng)
    for f in ck.failures:
        print("FAIL", f)
    print("%d passed, %d failed" % (ck.passed, len(ck.failures)))
    return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
