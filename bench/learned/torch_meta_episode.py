#!/usr/bin/env python3
"""One meta-training episode of the coordinatewise 2x20 LSTM optimizer in
PyTorch, the way public reproductions of Andrychowicz et al. (2016) write it,
doing the work of `optim-train --task=mnist` (bench/learned/MetaEpisodeBench):

- the optimizer: nn.LSTMCell(2, 20), nn.LSTMCell(20, 20), nn.Linear(20, 1)
  batched over the coordinates, log/sign preprocessing with k = 10, update
  theta += 0.1 * head(h2) (examples/l2l.optim), PyTorch's default init;
- the optimizee: the MNIST MLP 784-20-10, sigmoid hidden units, softmax
  cross-entropy, minibatches of 128 drawn with replacement from images
  0-7999 of t10k, weights N(0, 0.01^2), biases 0; its 15,910 parameters are
  one flat tensor, so one batch of 15,910 coordinates for the LSTM;
- 100 optimizee steps in 5 truncations of 20: the meta-loss sum_t f(theta_t)
  of a truncation, loss.backward(), one torch.optim.Adam step (lr 1e-3);
  theta and the LSTM state carried across truncations, detached; the
  gradients of f fed to the LSTM are detached (second derivatives dropped).

Usage: torch_meta_episode.py [--threads N] [--episodes N]
                             [--warmup-truncations N] [--data-dir DIR]
(--warmup-truncations: truncations of a throwaway episode run first, default
1: a whole episode takes tens of seconds.)
Prints one JSON object: {"threads", "torch", "episode_s" (median),
"episode_times_s", "mean_meta_loss"}.
"""

import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import torch

from l2l_torch import HIDDEN, L2L

BATCH = 128
STEPS, UNROLL = 100, 20


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
             for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8,
                         offset=4 + 4 * dims).reshape(shape)


def find_file(folder, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise SystemExit(f"torch_meta_episode.py: no {stem}[.gz] in {folder}")


def load_mnist(folder):
    images = read_idx(find_file(folder, "t10k-images-idx3-ubyte"))
    labels = read_idx(find_file(folder, "t10k-labels-idx1-ubyte"))
    x = torch.from_numpy(images[:8000].reshape(8000, -1).astype(np.float32))
    return x / 255.0, torch.from_numpy(labels[:8000].astype(np.int64))




SIZES = [784 * HIDDEN, HIDDEN, HIDDEN * 10, 10]


def mlp_loss(theta, x, y):
    w1, b1, w2, b2 = torch.split(theta, SIZES)
    hidden = torch.sigmoid(x @ w1.view(784, HIDDEN) + b1)
    logits = hidden @ w2.view(HIDDEN, 10) + b2
    return torch.nn.functional.cross_entropy(logits, y)


def episode(model, meta_opt, images, labels, gen, truncations=STEPS // UNROLL):
    n = sum(SIZES)
    theta = torch.zeros(n)
    theta[:SIZES[0]] = 0.01 * torch.randn(SIZES[0], generator=gen)
    theta[SIZES[0] + SIZES[1]:SIZES[0] + SIZES[1] + SIZES[2]] = \
        0.01 * torch.randn(SIZES[2], generator=gen)
    state = tuple(torch.zeros(n, HIDDEN) for _ in range(4))

    def batch():
        idx = torch.randint(0, images.shape[0], (BATCH,), generator=gen)
        return images[idx], labels[idx]

    leaf = theta.clone().requires_grad_(True)
    g = torch.autograd.grad(mlp_loss(leaf, *batch()), leaf)[0]
    total = 0.0
    for _ in range(truncations):
        meta_opt.zero_grad(set_to_none=True)
        theta = theta.detach()
        state = tuple(s.detach() for s in state)
        meta_loss = 0.0
        for _ in range(UNROLL):
            update, state = model(g.detach(), state)
            theta = theta + update
            f = mlp_loss(theta, *batch())
            meta_loss = meta_loss + f
            # dL/dtheta_t reaches theta_t through f (first order); the LSTM
            # sees g as a constant.
            g = torch.autograd.grad(f, theta, retain_graph=True)[0]
        meta_loss.backward()
        meta_opt.step()
        total += float(meta_loss.detach())
    return total / STEPS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--warmup-truncations", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    folder = args.data_dir or os.environ.get("OPTIM_MNIST_DIR")
    if not folder:
        here = os.path.dirname(os.path.abspath(__file__))
        for candidate in (os.path.join(here, "..", "..", "..", "shared",
                                       "data", "mnist"),
                          "/work/shared/data/mnist"):
            if os.path.isdir(candidate):
                folder = candidate
                break
    if not folder:
        raise SystemExit("torch_meta_episode.py: no MNIST folder "
                         "(--data-dir or OPTIM_MNIST_DIR)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    images, labels = load_mnist(folder)
    model = L2L()
    meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(2)
    times, losses = [], []
    if args.warmup_truncations > 0:
        episode(model, meta_opt, images, labels, gen, args.warmup_truncations)
    for _ in range(args.episodes):
        start = time.perf_counter()
        losses.append(episode(model, meta_opt, images, labels, gen))
        times.append(time.perf_counter() - start)
    print(json.dumps({"threads": args.threads, "torch": torch.__version__,
                      "episode_s": statistics.median(times),
                      "episode_times_s": times,
                      "mean_meta_loss": statistics.mean(losses)}))


if __name__ == "__main__":
    main()
