#!/usr/bin/env python3
"""qpth's forward pass on CUDA for issue 6's QP row (bench/gpu/run.sh):
bench/qp's problems (OptNet's timing setup: Q = U'U + 1e-3 I, G Gaussian,
h = G z0 + s0 with s0 > 0, q Gaussian, all batched, no equalities), batch
128, n = p = 100 by default, the same tolerance as the compiled layer
(eps 1e-8). Times the best and the median of --reps calls after a warm-up,
each followed by torch.cuda.synchronize(), of the forward and of the backward
of sum(z) (dz = 1, as bench/qp). Prints one JSON line; when torch,
CUDA or qpth is missing it prints {"skipped": reason} and exits 0."""
import argparse
import json
import time


def make_problems(np, B, n, p, seed):
    # bench/qp/qp_bench.py's make_problems.
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((B, n, n))
    Q = np.einsum("bki,bkj->bij", U, U) + 1e-3 * np.eye(n)
    q = rng.standard_normal((B, n))
    G = rng.standard_normal((B, p, n))
    z0 = rng.standard_normal((B, n))
    s0 = rng.random((B, p)) + 0.1
    h = np.einsum("bij,bj->bi", G, z0) + s0
    return Q, q, G, h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--p", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtype", choices=["f64", "f32"], default="f64")
    ap.add_argument("--eps", type=float, default=1e-8)
    args = ap.parse_args()
    cvxpy_note = "installed"
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        # qpth imports cvxpy when it is imported, for its CVXPY solver only;
        # PDIPM_BATCHED, the one timed here, never calls it. The device
        # image has no cvxpy and no package registry, so an empty module
        # stands in for it; any use of it would fail loudly (no attributes).
        import sys
        import types
        sys.modules["cvxpy"] = types.ModuleType("cvxpy")
        cvxpy_note = "absent: an empty module stood in (qpth's CVXPY solver unused)"
    try:
        import numpy as np
        import torch
        from qpth.qp import QPFunction, QPSolvers
    except Exception as e:  # ImportError, or a broken install
        print(json.dumps({"skipped": f"cannot import qpth/torch/numpy: {e}"}))
        return
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "torch sees no CUDA device"}))
        return
    dev = torch.device("cuda")
    t = torch.float64 if args.dtype == "f64" else torch.float32
    Q, q, G, h = (torch.tensor(x, dtype=t, device=dev).requires_grad_()
                  for x in make_problems(np, args.batch, args.n, args.p, 1))
    e = torch.empty(0, dtype=t, device=dev)
    fn = QPFunction(eps=args.eps, verbose=-1, solver=QPSolvers.PDIPM_BATCHED)

    state = {}

    def forward():
        state["z"] = fn(Q, q, G, h, e, e)
        torch.cuda.synchronize()

    def backward():
        for x in (Q, q, G, h):
            x.grad = None
        state["z"].sum().backward(retain_graph=True)
        torch.cuda.synchronize()

    def timed(body):
        body()  # warm-up: CUDA context, cuBLAS/cuSOLVER handles
        ms = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            body()
            ms.append((time.perf_counter() - t0) * 1e3)
        ms.sort()
        return ms

    ms = timed(forward)
    bms = timed(backward)
    print(json.dumps({"qpth_fwd_ms": ms[0], "qpth_fwd_ms_median": ms[len(ms) // 2],
                      "qpth_bwd_ms": bms[0], "qpth_bwd_ms_median": bms[len(bms) // 2],
                      "dtype": args.dtype, "batch": args.batch, "n": args.n,
                      "p": args.p, "eps": args.eps, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(), "cvxpy": cvxpy_note}))


if __name__ == "__main__":
    main()
