"""What the torch scripts of bench/gpu share: the mean time of a step on the
current CUDA device, by CUDA events after warm-up steps."""
import torch


def timed(body, steps, warmup=3):
    for _ in range(warmup):
        body()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        body()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps
