#!/usr/bin/env python3
"""torch.optim.Adam(fused=True) on the GPT-2-small-shaped parameter list
(the same shapes as optim-gpu-bench --bench), and a device-to-device copy
moving the same number of bytes; prints one JSON line. Timed with CUDA
events after warm-up steps, on the current device."""
import argparse
import json

import torch

from cuda_timing import timed


def gpt2_sizes():
    d, vocab, ctx, layers = 768, 50257, 1024, 12
    s = [vocab * d, ctx * d]
    for _ in range(layers):
        s += [d, d, d * 3 * d, 3 * d, d * d, d, d, d, d * 4 * d, 4 * d, 4 * d * d, d]
    return s + [d, d]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(n, device=dev) * 0.02) for n in gpt2_sizes()]
    for p in params:
        p.grad = torch.randn_like(p) * 0.002
    total = sum(p.numel() for p in params)
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    step_ms = timed(opt.step, args.steps)
    bytes_moved = 28.0 * total  # p r+w, g r, m r+w, v r+w
    n = int(bytes_moved / 2) // 4
    src = torch.empty(n, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    copy_ms = timed(lambda: dst.copy_(src), args.steps)
    print(json.dumps({
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "coordinates": total,
        "torch_fused_adam_ms": round(step_ms, 4),
        "torch_fused_adam_GBps": round(bytes_moved / step_ms / 1e6, 1),
        "torch_copy_ms": round(copy_ms, 4),
        "torch_copy_GBps": round(2 * n * 4 / copy_ms / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
