#!/usr/bin/env python3
"""Muon on GPT-2 small's 48 hidden matrices (the shapes of optim-gpu-bench
--bench-muon), in PyTorch on the current CUDA device; prints one JSON line.

- "torch_f32_ms": examples/muon.optim's step written with torch ops in float32
  (momentum lerp, Nesterov's look-ahead, Newton-Schulz with cuBLAS SGEMM,
  TF32 off: the arithmetic optimc's kernels do), one matrix at a time as
  torch.optim.Muon goes;
- "torch_muon_ms": torch.optim.Muon itself (PyTorch 2.9 and later), whose
  Newton-Schulz runs in bfloat16 on tensor cores: not the same arithmetic,
  reported for scale; null where this torch has no Muon.
Timed with CUDA events after two warm-up steps."""
import argparse
import json

import torch

from cuda_timing import timed


def gpt2_matrices(d):
    return [s for _ in range(12) for s in ((d, 3 * d), (d, d), (d, 4 * d), (4 * d, d))]


def newton_schulz(x, steps=5, a=3.4445, b=-4.7750, c=2.0315, eps=1e-7):
    y = x.T if x.size(0) > x.size(1) else x
    y = y / torch.clamp(y.norm(), min=eps)
    for _ in range(steps):
        A = y @ y.T
        B = b * A + c * (A @ A)
        y = a * y + B @ y
    return y.T if x.size(0) > x.size(1) else y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--width", type=int, default=768)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    torch.manual_seed(2)
    params = [torch.nn.Parameter(torch.randn(*s, device=dev) * 0.02) for s in gpt2_matrices(args.width)]
    for p in params:
        p.grad = torch.randn_like(p) * 0.002
    bufs = [torch.zeros_like(p) for p in params]
    lr, wd, mom = 1e-3, 0.1, 0.95

    @torch.no_grad()
    def f32_step():
        for p, buf in zip(params, bufs):
            buf.lerp_(p.grad, 1 - mom)
            o = newton_schulz(p.grad.lerp(buf, mom))
            p.mul_(1 - lr * wd).add_(o, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)

    f32_ms = timed(f32_step, args.steps, warmup=2)
    muon_ms = None
    if hasattr(torch.optim, "Muon"):
        opt = torch.optim.Muon(params, lr=lr, weight_decay=wd, momentum=mom)
        muon_ms = round(timed(opt.step, args.steps, warmup=2), 3)
    print(json.dumps({
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "matrices": len(params),
        "torch_f32_ms": round(f32_ms, 3),
        "torch_muon_ms": muon_ms,
    }))


if __name__ == "__main__":
    main()
