#!/usr/bin/env python3
"""The PyTorch side of bench/gpu/run.sh's learned-rule row: one step of the
coordinatewise 2x20 LSTM optimizer (examples/l2l.optim) written with
nn.LSTMCell the way public reproductions of Andrychowicz et al. (2016) do
(bench/learned/l2l_torch.py, shared with the CPU benches), on N coordinates
(default 10M, one batch, as optim-gpu-learned --bench), float32, under
torch.no_grad(), after warm-up steps; the median of --steps steps, each timed
between two synchronizations. Also times fp32 sgemm (TF32 off) as a sanity
check of optim-gpu-learned's measured FMA peak: cuBLAS cannot beat the peak.

Usage: torch_lstm.py [--coordinates N] [--steps N] [--device cuda|cpu]
Prints one JSON line. --device cpu (with a small N) exercises the script on
a machine without a GPU; run.sh uses cuda.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "learned"))
from l2l_torch import L2L  # noqa: E402

FLOPS_PER_COORDINATE = 2 * (4 * 20 * 22 + 4 * 20 * 40 + 20)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(body, steps, device, warmup=3):
    for _ in range(warmup):
        body()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        body()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coordinates", type=int, default=10_000_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--sgemm-size", type=int, default=8192)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_lstm.py: torch sees no CUDA device "
                 f"(torch {torch.__version__}); --device cpu runs on the CPU")
    device = torch.device(args.device)
    n = args.coordinates
    torch.manual_seed(2)
    model = L2L().to(device)
    # Gradients spanning both branches of the preprocessing, as in
    # bench/learned/torch_lstm.py.
    g = torch.randn(n, device=device)
    g[0::3] *= 1e-6
    g[1::3] *= 1e-2
    p = torch.zeros(n, device=device)
    state = [tuple(torch.zeros(n, 20, device=device) for _ in range(4))]

    def step():
        update, state[0] = model(g, state[0])
        p.add_(update)

    with torch.no_grad():
        step_ms, min_ms = median_ms(step, args.steps, device)
        # fp32 sgemm without TF32: the FMA units cuBLAS reaches.
        torch.backends.cuda.matmul.allow_tf32 = False
        s = args.sgemm_size
        a = torch.randn(s, s, device=device)
        b = torch.randn(s, s, device=device)
        c = torch.empty(s, s, device=device)
        mm_ms, _ = median_ms(lambda: torch.mm(a, b, out=c), 5, device, 1)
    print(json.dumps({
        "device": (torch.cuda.get_device_name() if device.type == "cuda"
                   else "cpu"),
        "torch": torch.__version__,
        "coordinates": n,
        "steps": args.steps,
        "torch_lstm_step_ms": round(step_ms, 4),
        "torch_lstm_min_ms": round(min_ms, 4),
        "torch_lstm_gflops": round(FLOPS_PER_COORDINATE * n / step_ms / 1e6, 1),
        "non_finite": int((~torch.isfinite(p)).sum().item()),
        "sgemm_size": s,
        "sgemm_gflops": round(2.0 * s ** 3 / mm_ms / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
