#!/usr/bin/env python3
"""One round of `bench/run qp`: the batched QP layer, forward and backward,
ours (liboptim.so's optim_qp_* through ctypes: one call per batch) against
qpth and proxsuite's QPLayer (PyPI), side by side in one process.

OptNet's timing setup: a batch of 128 problems with n variables and p
inequalities, Q = U'U + 1e-3 I, G Gaussian, h = G z0 + s0 (s0 > 0, so the
problems are feasible), q Gaussian, all batched; no equalities. The backward
pass gets dz = 1 (the gradient of sum(z)). The same tolerance for the three
(eps / tol), the same threads (torch.set_num_threads, proxsuite's
solve_in_parallel through omp_parallel). Accuracy: max |z - z_ref| /
max(1, |z_ref|).

Two references: our float64 solution at tol 1e-10 and proxsuite's at eps
1e-10; a solver's error is the larger of its distances to the two (so that no
solver is judged only against itself), and "reference" is their distance.
Prints one JSON object: {"rows": [{size, p, dtype, solver, fwd_ms, bwd_ms,
err, unsolved}], "reference": [{size, dtype, unsolved, err}]}; times are the best of --reps calls.
A peer left out with --skip has a row with "skipped" (the reason) and null
figures.
"""

import argparse
import ctypes
import json
import os
import sys
import time

import numpy as np


class Problem(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int32), ("batched", ctypes.c_uint32),
                ("batch", ctypes.c_int64), ("n", ctypes.c_int64),
                ("m", ctypes.c_int64), ("p", ctypes.c_int64),
                ("Q", ctypes.c_void_p), ("q", ctypes.c_void_p),
                ("A", ctypes.c_void_p), ("b", ctypes.c_void_p),
                ("G", ctypes.c_void_p), ("h", ctypes.c_void_p)]


class Ours:
    def __init__(self, lib, tol, threads):
        self.lib = lib
        self.handle = lib.optim_qp_create(tol, 100, threads)
        if not self.handle:
            raise RuntimeError("optim_qp_create failed")

    def setup(self, data, dtype):
        t = np.float64 if dtype == "f64" else np.float32
        self.arr = {k: np.ascontiguousarray(v, t) for k, v in data.items()}
        B, n = self.arr["q"].shape
        p = self.arr["h"].shape[1]
        # Bits Q, q, G, h batched (A, b absent).
        batched = 1 | 2 | 16 | 32
        a = self.arr
        self.pr = Problem(1 if dtype == "f64" else 0, batched, B, n, 0, p,
                          a["Q"].ctypes.data, a["q"].ctypes.data, None, None,
                          a["G"].ctypes.data, a["h"].ctypes.data)
        self.z = np.zeros((B, n), t)
        self.nu = np.zeros((B, 1), t)
        self.lam = np.zeros((B, p), t)
        self.status = np.zeros(B, np.int32)
        self.dz = np.ones((B, n), t)
        self.grads = {k: np.zeros_like(v) for k, v in a.items()}

    def forward(self):
        rc = self.lib.optim_qp_forward(
            self.handle, ctypes.byref(self.pr), self.z.ctypes.data,
            self.nu.ctypes.data, self.lam.ctypes.data,
            self.status.ctypes.data, None)
        if rc != 0:
            raise RuntimeError(self.lib.optim_qp_error(self.handle).decode())
        # Unsolved problems are reported (a row's "unsolved"), not fatal.
        self.unsolved = int(np.count_nonzero(self.status != 0))
        return self.z.astype(np.float64)

    def backward(self):
        g = self.grads
        rc = self.lib.optim_qp_backward(
            self.handle, ctypes.byref(self.pr), self.dz.ctypes.data, None,
            None, g["Q"].ctypes.data, g["q"].ctypes.data, None, None,
            g["G"].ctypes.data, g["h"].ctypes.data)
        if rc != 0:
            raise RuntimeError(self.lib.optim_qp_error(self.handle).decode())


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.optim_qp_create.restype = ctypes.c_void_p
    lib.optim_qp_create.argtypes = [ctypes.c_double, ctypes.c_int64,
                                    ctypes.c_int32]
    lib.optim_qp_error.restype = ctypes.c_char_p
    lib.optim_qp_error.argtypes = [ctypes.c_void_p]
    lib.optim_qp_forward.argtypes = [ctypes.c_void_p,
                                     ctypes.POINTER(Problem)] + \
        [ctypes.c_void_p] * 5
    lib.optim_qp_backward.argtypes = [ctypes.c_void_p,
                                      ctypes.POINTER(Problem)] + \
        [ctypes.c_void_p] * 9
    lib.optim_qp_destroy.argtypes = [ctypes.c_void_p]
    return lib


def make_problems(B, n, p, seed):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((B, n, n))
    Q = np.einsum("bki,bkj->bij", U, U) + 1e-3 * np.eye(n)
    q = rng.standard_normal((B, n))
    G = rng.standard_normal((B, p, n))
    z0 = rng.standard_normal((B, n))
    s0 = rng.random((B, p)) + 0.1
    h = np.einsum("bij,bj->bi", G, z0) + s0
    return {"Q": Q, "q": q, "G": G, "h": h}


def timed(fn, reps):
    best = None
    out = None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best * 1e3, out


def rel_err(z, ref):
    return float(np.max(np.abs(z - ref)) / max(1.0, np.max(np.abs(ref))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--sizes", default="10,50,100,500")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--solvers", default="ours,qpth,qplayer")
    ap.add_argument("--skip", default="",
                    help="peers not to run at a size, as SOLVER:N,...; "
                    "their rows say 'skipped' (qpth at n = 500 runs for "
                    "tens of minutes: docs/benchmarks.md)")
    args = ap.parse_args()
    skip = set()
    for item in filter(None, args.skip.split(",")):
        solver, _, size = item.partition(":")
        if solver not in ("qpth", "qplayer") or not size.isdigit():
            ap.error(f"--skip wants qpth:N or qplayer:N, not {item!r}")
        skip.add((solver, int(size)))

    import torch
    torch.set_num_threads(args.threads)
    solvers = args.solvers.split(",")
    lib = load_lib(args.library)
    rows = []
    agreement = []
    for n in [int(s) for s in args.sizes.split(",")]:
        # OptNet's table has p = n; the setup 100 inequalities.
        # n = 10 keeps p = n (100 random cuts of a 10-d box is not the
        # paper's problem and mostly inactive).
        p = n if n < 100 else 100
        data64 = make_problems(args.batch, n, p, args.seed + n)
        for dtype in ("f64", "f32"):
            # The float32 rows are judged against the solution of the data
            # rounded to float32 (what every solver is given), solved in
            # float64: the solvers' own error, not the rounding's.
            data = data64 if dtype == "f64" else {
                k: v.astype(np.float32).astype(np.float64)
                for k, v in data64.items()}
            ref_solver = Ours(lib, 1e-10, args.threads)
            ref_solver.setup(data, "f64")
            ref = ref_solver.forward()
            # The reference checked against an independent solver: proxsuite
            # at the same tolerance.
            import torch as _t
            import proxsuite.torch.qplayer as _qpl
            _qpl.os.cpu_count = lambda: 2 * args.threads
            T64 = {k: _t.tensor(v, dtype=_t.float64) for k, v in data.items()}
            e64 = _t.empty(0, dtype=_t.float64)
            zp = _qpl.QPFunction(eps=1e-10, omp_parallel=True)(
                T64["Q"], T64["q"], e64, e64, T64["G"],
                _t.full_like(T64["h"], -1e20), T64["h"])[0]
            ref_prox = zp.detach().numpy()
            okr = ref_solver.status == 0
            agreement.append({"size": n, "dtype": dtype,
                              "unsolved": ref_solver.unsolved,
                              "err": rel_err(ref_prox[okr], ref[okr])
                              if okr.any() else None})

            ok = ref_solver.status == 0

            def err(z):
                # Against both references, the worse: neither solver is judged
                # only by itself (ours only where it solved the problem).
                e = rel_err(z, ref_prox)
                if ok.any():
                    e = max(e, rel_err(z[ok], ref[ok]))
                return e
            tol = 1e-8 if dtype == "f64" else 1e-6
            if "ours" in solvers:
                s = Ours(lib, tol, args.threads)
                s.setup(data, dtype)
                fwd, z = timed(s.forward, args.reps)
                # backward() refuses a batch with an unsolved problem.
                bwd = None if s.unsolved else timed(s.backward,
                                                    args.reps)[0]
                rows.append({"size": n, "p": p, "dtype": dtype,
                             "solver": "ours", "fwd_ms": fwd,
                             "bwd_ms": bwd, "err": err(z),
                             "unsolved": s.unsolved})
            tdt = torch.float64 if dtype == "f64" else torch.float32
            T = {k: torch.tensor(v, dtype=tdt) for k, v in data.items()}
            e = torch.empty(0, dtype=tdt)
            for peer in ("qpth", "qplayer"):
                if peer in solvers and (peer, n) in skip:
                    print(f"qp_bench: {peer} at n={n} {dtype} skipped "
                          f"(--skip {peer}:{n})", file=sys.stderr, flush=True)
                    rows.append({"size": n, "p": p, "dtype": dtype,
                                 "solver": peer, "fwd_ms": None,
                                 "bwd_ms": None, "err": None,
                                 "skipped": f"--skip {peer}:{n}"})
            if "qpth" in solvers and ("qpth", n) not in skip:
                from qpth.qp import QPFunction, QPSolvers
                Qt = T["Q"].clone().requires_grad_()
                qt = T["q"].clone().requires_grad_()
                Gt = T["G"].clone().requires_grad_()
                ht = T["h"].clone().requires_grad_()
                state = {}

                def qfwd():
                    state["z"] = QPFunction(eps=tol, verbose=-1,
                                            solver=QPSolvers.PDIPM_BATCHED)(
                        Qt, qt, Gt, ht, e, e)
                    return state["z"]

                def qbwd():
                    for x in (Qt, qt, Gt, ht):
                        x.grad = None
                    state["z"].sum().backward(retain_graph=True)

                fwd, z = timed(qfwd, args.reps)
                bwd, _ = timed(qbwd, args.reps)
                rows.append({"size": n, "p": p, "dtype": dtype,
                             "solver": "qpth", "fwd_ms": fwd,
                             "bwd_ms": bwd,
                             "err": err(z.detach().double().numpy())})
            if "qplayer" in solvers and ("qplayer", n) not in skip:
                import proxsuite.torch.qplayer as qpl
                # QPLayer runs solve_in_parallel on os.cpu_count() / 2
                # threads: ask it for args.threads.
                qpl.os.cpu_count = lambda: 2 * args.threads
                # QPLayer computes in float64 (numpy) whatever the dtype:
                # for the f32 rows it gets the data rounded to float32.
                T64 = {k: torch.tensor(v, dtype=torch.float64)
                       for k, v in data.items()}
                Qt = T64["Q"].clone().requires_grad_()
                qt = T64["q"].clone().requires_grad_()
                Gt = T64["G"].clone().requires_grad_()
                ut = T64["h"].clone().requires_grad_()
                lt = torch.full_like(ut, -1e20)
                e64 = torch.empty(0, dtype=torch.float64)
                state = {}

                def pfwd():
                    state["out"] = qpl.QPFunction(eps=tol, omp_parallel=True)(
                        Qt, qt, e64, e64, Gt, lt, ut)
                    return state["out"][0]

                def pbwd():
                    for x in (Qt, qt, Gt, ut):
                        x.grad = None
                    state["out"][0].sum().backward(retain_graph=True)

                fwd, z = timed(pfwd, args.reps)
                bwd, _ = timed(pbwd, args.reps)
                rows.append({"size": n, "p": p, "dtype": dtype,
                             "solver": "qplayer", "fwd_ms": fwd,
                             "bwd_ms": bwd,
                             "err": err(z.detach().numpy())})
            print(f"qp_bench: n={n} {dtype} done", file=sys.stderr,
                  flush=True)
    json.dump({"rows": rows, "reference": agreement}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
