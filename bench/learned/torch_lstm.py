#!/usr/bin/env python3
"""One step of the coordinatewise 2x20 LSTM optimizer in PyTorch, the way
public reproductions of Andrychowicz et al. (2016) write it: two nn.LSTMCell
batched over the coordinates plus nn.Linear, on the CPU, under torch.no_grad().
The work is that of examples/l2l.optim: log/sign preprocessing with k = 10,
state (h1, c1, h2, c2) carried per coordinate, p += 0.1 * head(h2).

Usage: torch_lstm.py [--threads N] [--reps N] [--sizes N,N,...]
Prints one JSON object: {"threads", "torch", "learned_gflops": {N: GFLOP/s}},
counting 2 (4*20*22 + 4*20*40 + 20) flops per coordinate like the C++ bench.
"""

import argparse
import json
import statistics
import time

import torch

from l2l_torch import L2L

FLOPS_PER_COORDINATE = 2 * (4 * 20 * 22 + 4 * 20 * 40 + 20)


def gflops(model, n, reps, budget=0.5):
    torch.manual_seed(1)
    p = torch.zeros(n)
    g = torch.randn(n)
    g[0::3] *= 1e-6
    g[1::3] *= 1e-2
    g[2::3] *= 1e-2
    state = tuple(torch.zeros(n, 20) for _ in range(4))
    with torch.no_grad():
        update, state = model(g, state)  # warm-up
        p.add_(update)
        times = []
        begin = time.perf_counter()
        while len(times) < reps or time.perf_counter() - begin < budget:
            start = time.perf_counter()
            update, state = model(g, state)
            p.add_(update)
            times.append(time.perf_counter() - start)
            if len(times) >= 2000:
                break
    return FLOPS_PER_COORDINATE * n / statistics.median(times) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(2)
    model = L2L()
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {"threads": args.threads, "torch": torch.__version__,
              "learned_gflops": {}}
    for n in sizes:
        # At 10^7 coordinates a step takes seconds: at most 3 repetitions.
        reps = args.reps if n < 10**7 else min(args.reps, 3)
        result["learned_gflops"][str(n)] = gflops(model, n, reps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
