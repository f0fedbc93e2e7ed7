#!/usr/bin/env python3
"""Oracle test: the batched QP solver (KernelABI.h, optim_qp_*) against cvxopt.

Random problems, seeded, of varied shape (n from 1 to 200, m equalities, p
inequalities), each solved by cvxopt (solvers.qp / solvers.lp, tolerances
1e-11) and by ours through liboptim.so, in float64 and float32:

  class           what                                              compared
  strict          Q = U^T U + c I (PD), eq + ineq                   z
  ineq            Q PD, inequalities only                           z
  eq              Q PD, equalities only                             z
  free            Q PD, no constraints (oracle: numpy.linalg.solve) z
  illcond         Q with eigenvalues 10^U(-6, 0) (cond up to 1e6)   z
  degenerate      duplicated equality rows, duplicated inequalities,
                  constraints active with zero multiplier           z
  lp              Q = 0, bounded feasible region (box)              objective
  psd             Q of rank n/2, bounded region                     objective

Problems are built from a known primal-dual point (z*, nu*, lam*, s*) with
lam* . s* = 0, so the solution is known exactly as well; cvxopt is the oracle.
Where the solution is unique (Q positive definite on the feasible set) z must
agree:
    max|z - z_cvxopt| <= tol * max(1, max|z_cvxopt|),
tol = 1e-6 in float64 and 1e-3 in float32 (data rounded to float32 first,
the reference computed in float64 from the rounded data). LPs and PSD
problems may have many solutions: there the objective must agree to the same
tolerance (relative to max(1, |objective|)) and our z must be feasible to it.

Scaling: each problem is also solved by ours with (Q, q) multiplied by 1e-8
and by 1e8, and with (A, b) and (G, h) multiplied by 1e-8 and 1e8 (one up,
the other down), which changes neither z nor the statuses (nu and lam scale):
z is judged against the same reference with the same tolerance. In float32
the factors are 2^-27 and 2^27 (7.5e-9, 1.3e8): rounding data multiplied by
1e-8 to float32 changes the problem itself (measured: an ill-conditioned
n = 2 problem's solution by 1e-2, and a degenerate one, whose equalities
pin z on an active inequality, became infeasible by 1.3e-7 relative), by
powers of two it is the same problem exactly.

Also: 20 infeasible problems (contradictory bounds, inconsistent equalities,
random infeasible systems; cvxopt's lp confirms the LPs) must come back
"primal infeasible", and 20 unbounded ones (LPs and PSD QPs with a free
descent direction) "dual infeasible", in both precisions.

Prints the worst error per class and precision, the failures, and
"N passed, M failed"; exits 1 on any failure.
"""

import argparse
import ctypes
import math
import sys
import time

import numpy as np
import cvxopt
import cvxopt.solvers

SEED = 20261127
STATUS = {0: "solved", 1: "iteration limit", 2: "primal infeasible",
          3: "dual infeasible", 4: "numerical error"}
TOL = {"f64": 1e-6, "f32": 1e-3}
# (objective, equalities, inequalities) factors of the scaled copies.
SCALINGS = {"f64": ((1e-8, 1, 1), (1e8, 1, 1), (1, 1e-8, 1e8),
                    (1, 1e8, 1e-8)),
            "f32": ((2.0**-27, 1, 1), (2.0**27, 1, 1), (1, 2.0**-27, 2.0**27),
                    (1, 2.0**27, 2.0**-27))}


def scaled(Q, q, A, b, G, h, c, a, g):
    """The problem with (Q, q) * c, (A, b) * a, (G, h) * g."""
    f = lambda x, k: None if x is None else x * k
    return f(Q, c), f(q, c), f(A, a), f(b, a), f(G, g), f(h, g)


class Problem(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int32), ("batched", ctypes.c_uint32),
                ("batch", ctypes.c_int64), ("n", ctypes.c_int64),
                ("m", ctypes.c_int64), ("p", ctypes.c_int64),
                ("Q", ctypes.c_void_p), ("q", ctypes.c_void_p),
                ("A", ctypes.c_void_p), ("b", ctypes.c_void_p),
                ("G", ctypes.c_void_p), ("h", ctypes.c_void_p)]


class Solver:
    def __init__(self, path, tol=0.0, max_iter=100, threads=1):
        lib = ctypes.CDLL(path)
        lib.optim_qp_create.restype = ctypes.c_void_p
        lib.optim_qp_create.argtypes = [ctypes.c_double, ctypes.c_int64,
                                        ctypes.c_int32]
        lib.optim_qp_error.restype = ctypes.c_char_p
        lib.optim_qp_error.argtypes = [ctypes.c_void_p]
        lib.optim_qp_forward.argtypes = [ctypes.c_void_p,
                                         ctypes.POINTER(Problem)] + \
            [ctypes.c_void_p] * 5
        lib.optim_qp_destroy.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.handle = lib.optim_qp_create(tol, max_iter, threads)
        assert self.handle

    def solve(self, dtype, Q, q, A=None, b=None, G=None, h=None):
        """One problem; returns (status, z, nu, lam, iterations)."""
        t = np.float64 if dtype == "f64" else np.float32
        arrs = {}
        for k, v in (("Q", Q), ("q", q), ("A", A), ("b", b), ("G", G),
                     ("h", h)):
            arrs[k] = None if v is None else np.ascontiguousarray(v, t)
        n = q.shape[0]
        m = 0 if A is None else A.shape[0]
        p = 0 if G is None else G.shape[0]
        pr = Problem(1 if dtype == "f64" else 0, 0, 1, n, m, p,
                     *[None if arrs[k] is None else arrs[k].ctypes.data
                       for k in ("Q", "q", "A", "b", "G", "h")])
        z, nu, lam = np.zeros(n, t), np.zeros(max(m, 1), t), \
            np.zeros(max(p, 1), t)
        status = np.zeros(1, np.int32)
        iters = np.zeros(1, np.int32)
        rc = self.lib.optim_qp_forward(self.handle, ctypes.byref(pr),
                                       z.ctypes.data, nu.ctypes.data,
                                       lam.ctypes.data, status.ctypes.data,
                                       iters.ctypes.data)
        if rc != 0:
            raise RuntimeError(self.lib.optim_qp_error(self.handle).decode())
        return int(status[0]), z.astype(np.float64), nu[:m], lam[:p], \
            int(iters[0])


def cvx_qp(Q, q, A, b, G, h, lp=False):
    """cvxopt's solution; at 1e-11 it sometimes breaks down (a domain error
    in its scaling update) or stops with "unknown" near the end: then again
    at 1e-9, then at cvxopt's defaults (abstol 1e-7, reltol 1e-6)."""
    status = "exception"
    for tol in (1e-11, 1e-9, None):
        try:
            status, x = cvx_qp_at(Q, q, A, b, G, h, lp, tol)
        except (ValueError, ArithmeticError):
            continue
        # "unknown" at 1e-11 can be far off (measured: an LP whose answer
        # violated its equalities by 0.4): only "optimal" is a reference.
        if status != "unknown":
            return status, x
    return status, None


def cvx_qp_at(Q, q, A, b, G, h, lp, tol):
    if tol is None:
        cvxopt.solvers.options.clear()
        cvxopt.solvers.options["show_progress"] = False
    else:
        cvxopt.solvers.options.update(show_progress=False, abstol=tol,
                                      reltol=tol, feastol=tol, maxiters=300)
    mat = lambda x: None if x is None else cvxopt.matrix(np.asarray(x, float))
    args = dict(A=mat(A), b=mat(b)) if A is not None else {}
    if lp:
        r = cvxopt.solvers.lp(mat(q), mat(G), mat(h), **args)
    else:
        r = cvxopt.solvers.qp(mat(Q), mat(q), mat(G), mat(h), **args)
    x = None if r["x"] is None else np.array(r["x"]).ravel()
    return r["status"], x


def rand_psd(rng, n, kind):
    if kind == "illcond":
        U, _ = np.linalg.qr(rng.standard_normal((n, n)))
        return (U * 10.0 ** rng.uniform(-6, 0, n)) @ U.T
    if kind == "psd":
        r = max(1, n // 2)
        U = rng.standard_normal((r, n))
        return U.T @ U / n
    U = rng.standard_normal((n, n))
    return U.T @ U / n + 0.1 * np.eye(n)


def make(rng, kind, n):
    """A problem with a known optimal point."""
    Q = np.zeros((n, n)) if kind == "lp" else rand_psd(rng, n, kind)
    m = {"eq": rng.integers(1, n + 1), "ineq": 0, "free": 0}.get(
        kind, rng.integers(0, max(1, n // 2) + 1))
    p = {"eq": 0, "free": 0}.get(kind, rng.integers(1, 2 * n + 2))
    A = rng.standard_normal((m, n)) if m else None
    G = rng.standard_normal((p, n)) if p else None
    if kind in ("lp", "psd"):  # a box keeps them bounded
        box = np.vstack([np.eye(n), -np.eye(n)])
        G = box if G is None else np.vstack([G, box])
        p = G.shape[0]
    if kind == "degenerate" and m:
        A = np.vstack([A, A[:1] * 2.0])  # a redundant equality
        m += 1
    if kind == "degenerate" and p:
        G = np.vstack([G, G[:1]])  # a duplicated inequality
        p += 1
    z = rng.standard_normal(n)
    s = np.zeros(p)
    lam = np.zeros(p)
    if p:
        active = rng.random(p) < 0.3
        if kind != "degenerate":
            # At most n - m active: linearly independent active constraints
            # (LICQ) and a unique, bounded set of multipliers.
            idx = np.flatnonzero(active)
            active[idx[max(0, n - m):]] = False
        if kind in ("lp", "psd"):
            active[:] = False  # random costs below pick the vertex
        s[~active] = rng.uniform(0.1, 2.0, (~active).sum())
        lam[active] = rng.uniform(0.1, 2.0, active.sum())
        if kind == "degenerate":  # weakly active: s = lam = 0
            weak = active & (rng.random(p) < 0.5)
            lam[weak] = 0.0
    if kind == "lp" or kind == "psd":
        # z0 strictly inside: the box |z| <= 2 and random rows loose at z0.
        q = rng.standard_normal(n)
        z0 = rng.uniform(-0.1, 0.1, n)
        h = G @ z0 + rng.uniform(0.5, 2.0, p)
        h[p - 2 * n:] = 2.0
        b = A @ z0 if m else None
        return dict(Q=Q, q=q, A=A, b=b, G=G, h=h, z=None, unique=False)
    nu = rng.standard_normal(m) if m else np.zeros(0)
    q = -Q @ z
    if m:
        q -= A.T @ nu
    if p:
        q -= G.T @ lam
    b = A @ z if m else None
    h = G @ z + s if p else None
    return dict(Q=Q, q=q, A=A, b=b, G=G, h=h, z=z, unique=True)


def infeasible(rng, n):
    k = rng.integers(0, 3)
    Q = rand_psd(rng, n, "strict") if rng.random() < 0.5 else np.zeros((n, n))
    q = rng.standard_normal(n)
    box = np.vstack([np.eye(n), -np.eye(n)])
    if k == 0:  # z_0 <= -1 and z_0 >= 1
        G = np.vstack([box, np.eye(n)[:1], -np.eye(n)[:1]])
        h = np.concatenate([np.full(2 * n, 5.0), [-1.0, -1.0]])
        return Q, q, None, None, G, h
    if k == 1:  # a_1 z = 1 and 2 a_1 z = 3
        A = rng.standard_normal((2, n))
        A[1] = 2 * A[0]
        b = np.array([1.0, 3.0])
        return Q, q, A, b, box, np.full(2 * n, 5.0)
    # sum z >= n + 1 inside the box |z| <= 1
    G = np.vstack([box, -np.ones((1, n))])
    h = np.concatenate([np.ones(2 * n), [-(n + 1.0)]])
    return Q, q, None, None, G, h


def unbounded(rng, n):
    """Unbounded along d, exactly so in float32 too: an LP along a random d,
    or a PSD Q with a zero row and column j along d = e_j."""
    if rng.random() < 0.5:  # LP: minimize -d^T z subject to d^T z >= -1/2
        d = rng.standard_normal(n)
        d /= np.linalg.norm(d)
        Q = np.zeros((n, n))
        q = -d + (np.eye(n) - np.outer(d, d)) @ rng.standard_normal(n) * 0.3
    else:
        j = int(rng.integers(0, n))
        d = np.eye(n)[j]
        U = rng.standard_normal((n, n))
        U[:, j] = 0.0
        Q = U.T @ U / n
        q = rng.standard_normal(n)
        q[j] = -1.0
    G = -d[None, :]
    h = np.array([0.5])
    return Q, q, None, None, G, h


def sizes(rng, count):
    """n from 1 to 200, log-uniform, with the ends always present."""
    ns = np.unique(np.round(np.exp(rng.uniform(0, math.log(200), count))))
    out = list(np.exp(rng.uniform(0, math.log(200), count)).round().astype(int))
    out[:3] = [1, 2, 200]
    return [max(1, int(x)) for x in out]


def dump(name, **arrays):
    """With $QP_ORACLE_DUMP set, saves a failing problem there (npz)."""
    import os
    folder = os.environ.get("QP_ORACLE_DUMP")
    if folder:
        os.makedirs(folder, exist_ok=True)
        np.savez(os.path.join(folder, name.replace(" ", "_") + ".npz"),
                 **{k: v for k, v in arrays.items() if v is not None})


def objective(Q, q, z):
    return 0.5 * z @ Q @ z + q @ z


def judge(kind, prec, n, tag, pb, ref, st, z, it, rounded, worst, truth,
          iters, notes, failures):
    """Our solution (status st, z) of problem pb (possibly scaled: tag)
    against the reference ref; returns 1 if it passes. The worst errors,
    distances from the known solution and iterations are those of the
    unscaled problems; the scaled copies' worst errors go under
    ("scaled", prec)."""
    Q, q, A, b, G, h = (pb[k] for k in "Q q A b G h".split())
    Qr, qr, Ar, br, Gr, hr = rounded
    tol = TOL[prec]
    if not tag:
        iters[prec].append(it)
    shape = "%s %s n=%d m=%d p=%d%s" % (kind, prec, n, 0 if A is None else
                                       A.shape[0], 0 if G is None else
                                       G.shape[0], tag)
    if st != 0:
        dump("%s_%s_%d" % (kind, prec, n), Q=Q, q=q, A=A, b=b,
             G=G, h=h, zstar=pb["z"], ref=ref)
        failures.append("%s: status %s after %d iterations" % (
            shape, STATUS[st], it))
        return 0
    if pb["unique"]:
        scale = max(1.0, np.max(np.abs(ref)))
        err = np.max(np.abs(z - ref)) / scale
        # Problems are built around a known solution z*: where
        # cvxopt is itself farther than tol from it (weakly
        # active constraints), judge by z* instead, and say so.
        cvx_off = np.max(np.abs(ref - pb["z"])) / scale
        ours_off = np.max(np.abs(z - pb["z"])) / scale
        if not tag:
            truth[(kind, prec)] = max(truth.get((kind, prec), 0.0),
                                      ours_off)
            truth[(kind, "cvx" + prec)] = max(
                truth.get((kind, "cvx" + prec), 0.0), cvx_off)
        if err > tol and cvx_off > tol and ours_off <= tol:
            if not tag:
                notes.append("%s %s n=%d: cvxopt %.2g from the known "
                             "solution, ours %.2g" % (
                                 kind, prec, n, cvx_off, ours_off))
            err = ours_off
    else:
        fo, fr = objective(Qr, qr, z), objective(Qr, qr, ref)
        err = abs(fo - fr) / max(1.0, abs(fr))
        viol = 0.0
        if Ar is not None:
            viol = np.max(np.abs(Ar @ z - br))
        if Gr is not None:
            viol = max(viol, np.max(Gr @ z - hr))
        err = max(err, viol / max(1.0, np.max(np.abs(hr))))
    key = ("scaled" if tag else kind, prec)
    worst[key] = max(worst.get(key, 0.0), err)
    if err <= tol:
        return 1
    dump("%s_%s_%d" % (kind, prec, n), Q=Q, q=q, A=A, b=b,
         G=G, h=h, zstar=pb["z"], ref=ref, z=z)
    failures.append("%s: error %.3g > %g" % (shape, err, tol))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", required=True, help="liboptim.so")
    parser.add_argument("--tol64", type=float, default=1e-10,
                        help="the solver's tolerance in float64")
    parser.add_argument("--tol32", type=float, default=0.0,
                        help="the solver's tolerance in float32 (0: its "
                        "default, 1e-5)")
    parser.add_argument("--kinds", default="strict,ineq,eq,free,illcond,"
                        "degenerate,lp,psd", help="classes to run")
    parser.add_argument("--count", type=int, default=70,
                        help="problems per class (8 classes)")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    solvers = {"f64": Solver(args.library, tol=args.tol64),
               "f32": Solver(args.library, tol=args.tol32)}
    kinds = args.kinds.split(",")
    failures = []
    notes = []
    passed = 0
    skipped = 0
    compared = 0
    t_ref = t_ours = 0.0
    worst = {}
    truth = {}  # worst distance from the known solution: ours, cvxopt's
    iters = {"f64": [], "f32": []}
    start = time.time()
    total = 0
    for kind in kinds:
        for n in sizes(rng, args.count):
            pb = make(rng, kind, n)
            total += 1
            Q, q, A, b, G, h = (pb[k] for k in "Q q A b G h".split())
            lp = kind == "lp"
            for prec in ("f64", "f32"):
                t = np.float64 if prec == "f64" else np.float32
                rd = lambda x: None if x is None else \
                    np.asarray(x, t).astype(np.float64)
                Qr, qr, Ar, br, Gr, hr = map(rd, (Q, q, A, b, G, h))
                if prec == "f32" and kind == "illcond" and \
                        np.linalg.cond(Q) > 1e4:
                    # Rounding a PSD Q of condition > 1e4 to float32 can make
                    # it indefinite: that is not a convex problem any more.
                    skipped += 1
                    continue
                t0 = time.time()
                if kind == "free":
                    ref, rstat = np.linalg.solve(Qr, -qr), "optimal"
                elif kind == "degenerate" and Ar is not None:
                    # cvxopt needs rank(A) = m: it gets the same problem
                    # without the redundant last row, ours gets it with.
                    rstat, ref = cvx_qp(Qr, qr, Ar[:-1], br[:-1], Gr, hr)
                else:
                    rstat, ref = cvx_qp(Qr, qr, Ar, br, Gr, hr, lp=lp)
                if ref is None or rstat != "optimal":
                    # No reference: not counted either way.
                    notes.append("%s %s n=%d: no reference (cvxopt: %s)" % (
                        kind, prec, n, rstat))
                    continue
                compared += prec == "f64"
                t1 = time.time()
                t_ref += t1 - t0
                for c, a, g in ((1, 1, 1),) + SCALINGS[prec]:
                    t1 = time.time()
                    st, z, nu, lam, it = solvers[prec].solve(
                        prec, *scaled(None if lp else Q, q, A, b, G, h, c, a,
                                      g))
                    t_ours += time.time() - t1
                    tag = "" if (c, a, g) == (1, 1, 1) else \
                        " scaled (%g, %g, %g)" % (c, a, g)
                    passed += judge(kind, prec, n, tag, pb, ref, st, z, it,
                                    (Qr, qr, Ar, br, Gr, hr), worst, truth,
                                    iters, notes, failures)
    # Infeasible and unbounded problems.
    for label, gen, want in (("infeasible", infeasible, 2),
                             ("unbounded", unbounded, 3)):
        for i in range(20):
            n = int(rng.integers(1, 60))
            Q, q, A, b, G, h = gen(rng, n)
            if label == "infeasible" and not Q.any():
                rstat, _ = cvx_qp(None, q, A, b, G, h, lp=True)
                if rstat != "primal infeasible":
                    notes.append("infeasible LP n=%d: cvxopt says %s" % (
                        n, rstat))
            for prec in ("f64", "f32"):
                for c, a, g in ((1, 1, 1),) + SCALINGS[prec]:
                    st, z, nu, lam, it = solvers[prec].solve(
                        prec, *scaled(None if not Q.any() else Q, q, A, b, G,
                                      h, c, a, g))
                    if st == want:
                        passed += 1
                    else:
                        failures.append("%s %s n=%d scaled (%g, %g, %g): "
                                        "status %s after %d iterations" % (
                                            label, prec, n, c, a, g,
                                            STATUS[st], it))
    for kind in kinds:
        print("%-10s worst error: f64 %.2e (tol 1e-6), f32 %.2e (tol 1e-3)"
              % (kind, worst.get((kind, "f64"), float("nan")),
                 worst.get((kind, "f32"), float("nan"))))
    print("scaled     worst error: f64 %.2e (tol 1e-6), f32 %.2e (tol 1e-3)"
          % (worst.get(("scaled", "f64"), float("nan")),
             worst.get(("scaled", "f32"), float("nan"))))
    for kind in kinds:
        if (kind, "f64") in truth:
            print("%-10s from the known solution: ours f64 %.2e, f32 %.2e; "
                  "cvxopt's f64 %.2e" % (
                      kind, truth[(kind, "f64")],
                      truth.get((kind, "f32"), float("nan")),
                      truth[(kind, "cvxf64")]))
    for prec in ("f64", "f32"):
        print("%s iterations: median %d, max %d" % (
            prec, int(np.median(iters[prec])), max(iters[prec])))
    print("%d problems compared with a reference in float64" % compared)
    if compared < 500:
        failures.append("only %d comparisons (at least 500 wanted)" % compared)
    print("%d problems, %.1fs (references %.1fs, ours %.1fs); %d ill-"
          "conditioned ones (cond > 1e4) not run in float32" % (
              total, time.time() - start, t_ref, t_ours, skipped))
    for note in notes:
        print("NOTE", note)
    for f in failures:
        print("FAIL", f)
    print("%d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
