#!/usr/bin/env python3
"""Oracle test: every update rule against a numpy reference (via liboptim.so).

torch_oracle.py needs torch, which the test run does not install; this oracle
needs numpy only. Each rule of examples/ (but l2l, a learned rule) and of
test/Run/Inputs/literature.optim has a reference below, written from the
published algorithm, not from the .optim file: the comment above it cites the
paper and says where the rule follows a library's variant (eps placement,
bias correction). Rules that draw random numbers (rand(), randn()) are
random_oracle.py's, which has the reference draws. A reference keeps its own
state, in the paper's notation where that differs from ours (momentum and
nesterov keep Sutskever's velocity v = -lr * buf), mapped to the rule's state
for the comparison.

Each rule runs STEPS (500) steps over tensors of awkward sizes (0, 1, 7, 1000
and 33001: two chunks of the CPU executor, of 32768 coordinates and a tail of
233, which is also not a multiple of the vector width), every hyperparameter
set away from its default, from identical parameters with identical
gradients: normal signs and shapes scaled by 10^U(-5, 2), a scale drawn
once per coordinate, about 10% exact zeros, and every 97th coordinate and
the first of each tensor larger than one always 0. All
data is representable in float32, so one float64 reference run serves both
precisions.

Four runs per rule: the kernel in float32 and in float64, the reference in
float32 (every literal and hyperparameter rounded to float32, arithmetic in
float32) and in float64. The kernel in precision P must agree with the
reference in P, parameters and every state, per tensor and quantity:

    |ours - reference| <= rtol * |reference| + atol,
    atol = 16 * eps(P) * max|reference's values in that tensor|,

rtol 1e-5 in float32, 1e-12 in float64 (as torch_oracle.py). Both sides
compute the same formula in the same precision, but not always in the same
order (nesterov's reference steps Sutskever's velocity, AdamW's decays and
steps in one expression, NAdam sums its two terms before dividing), so a step
may round differently by a few units in the last place (ulp), and 500 steps
accumulate that: rtol allows ~84 ulps in float32 and ~4,500 in float64.
Relative error cannot judge values that end near 0 after cancellation (a
moment of gradients of both signs, a parameter that crossed 0): their error
is a few ulps of the terms that cancelled, not of the result. Hence atol, 16
ulps of the largest value of the tensor, the scale of every coordinate's
terms since all coordinates draw gradients from one distribution. Measured:
most rules agree bit for bit (same operations in the same order; beta ** t
of the kernel and of numpy agree too), the others within 0.3 of the
tolerance. A wrong rule is far outside it: beta2 off by 1e-4, or t + 1 for t
in a bias correction, gives errors of hundreds to thousands of tolerances in
float32 and 1e9 and more in float64 (--kernel-hyper sets a hyperparameter of
the kernel only; the lit test checks that such a run fails).

Lion, Signum and Yogi take the sign of a rounded value, and a one-ulp
difference flips it where the value is within an ulp of 0. Their references
compute that value in the same order as the rules (the order the papers
write), so that it rounds the same; a flip would show as a failure (none
happens with this data: Lion and Signum agree bit for bit).

The float32 kernel's parameters are also compared with the float64 reference
(printed, not checked): their drift, the largest |error| in ulps of the
largest value of the tensor, shows the rounding of float32 itself: ~10 ulps
for most rules; thousands for Lion, whose sign(c) flips where c is near 0;
hundreds for Adan, whose 1 + lr * wd rounded to float32 is off by up to 0.15%
of lr * wd.

Rules that reduce over a tensor (LAMB, LARS, NovoGrad, Adafactor, global
norm clipping, ...) have references that reduce each tensor (or all of
them) as the language defines it: the reduced value in the run's dtype,
summed in float64, the result rounded once. Their kernels also run with
THREADS_CHECK threads, which must give the same bits as one thread.

Rules with schedules of the step (SGDR, step decay, Lookahead) compute them
with floor, mod and cos; their references count steps in integers. SGDR's
float32 cos is libm's cosf in the kernel and numpy's own float32 cos in the
reference, which may differ by an ulp: measured 0.02 of the tolerance.

Rules of 2018-2024 (schedule-free SGD and AdamW, MADGRAD, AccSGD, Prodigy,
AdEMAMix, LaProp, PID, Adam with warmup and cosine decay, AdaPNM, Padam,
Tiger) keep a copy of the initial point, a running sum or a distance
estimate shared by every coordinate (Prodigy's, from two sums over all
parameters), a parity of the step or a half-life schedule. Their references
follow the algorithm boxes: AccSGD's is the paper's form, not the authors'
code's (whose long expression rounds differently, up to 1.1 tolerances);
MADGRAD's cube root is np.cbrt, the rule's pow(nu, 1 / 3) (0.03 of the
tolerance in float32). AdEMAMix's beta3 schedule goes through exp and log:
h.rounded (below).

--shard K/N checks every N-th rule from the K-th: two lit tests run the
halves in parallel.

Prints one line per rule and precision, then "N passed, M failed"; exits 1 if
any failed.
"""

import argparse
import math
import os
import re
import sys
import time
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "python"))
import optim_mlir  # noqa: E402

SIZES = (0, 1, 7, 1000, 33001)
STEPS = 500
SEED = 20261127
RTOL = {"f32": 1e-5, "f64": 1e-12}
ATOL_ULPS = 16  # atol, in units of eps(dtype) * max|reference in the tensor|
DTYPES = {"f32": np.float32, "f64": np.float64}
# One thread: the kernel still runs over chunks of 32768 coordinates, and a
# step takes ~0.1 ms; with workers, waking them takes milliseconds on a
# loaded machine (measured: 3 ms a step while the lit suite runs), 30 s here.
THREADS = 1


# The references. Each is step(h, t, p, g, s) -> new p: h holds the
# hyperparameters as scalars of the run's dtype, h.c(x) rounds a literal to
# it (numpy 1.x would widen float32 * 0.5 to float64), t is the 1-based step
# in that dtype, p and g the flat arrays of all tensors, s the state (a dict,
# updated). Every rule is coordinatewise, so the tensors are concatenated.
# h.rounded(fn, x) applies a function of Python's math module (libm's double
# one) to a scalar and rounds the result once to the dtype: numpy's own
# float32 exp is an ulp off for ~40% of arguments (measured over 2000 steps
# of a schedule), where libm's expf, which the kernel calls, is correctly
# rounded for all but 3; an ulp of AdEMAMix's beta3 schedule, 0.995, is an
# error of 1e-5 in 1 - beta3.

def ref_sgd(h, t, p, g, s):
    # Robbins & Monro (1951): theta <- theta - lr * g.
    return p - h.lr * g


def ref_momentum(h, t, p, g, s):
    # Heavy ball (Polyak, 1964) in the form of Sutskever et al. (2013),
    # eq. 1-2, with v = -lr * buf (torch.optim.SGD keeps buf):
    # v <- mu v - lr g; theta <- theta + v.
    s["v"] = h.mu * s["v"] - h.lr * g
    return p + s["v"]


def ref_nesterov(h, t, p, g, s):
    # Nesterov's accelerated gradient as Sutskever et al. (2013), eq. 3-4:
    # v <- mu v - lr grad f(theta + mu v); theta <- theta + v. The gradient
    # is taken at the look-ahead point Theta = theta + mu v, and the
    # optimizer holds Theta (Bengio, Boulanger-Lewandowski & Pascanu, 2013,
    # "Advances in optimizing recurrent networks"; torch.optim.SGD with
    # nesterov=True): Theta' = theta' + mu v' = Theta - mu v + (1 + mu) v'.
    v_old = s["v"]
    s["v"] = h.mu * v_old - h.lr * g
    return p - h.mu * v_old + (h.c(1) + h.mu) * s["v"]


def ref_adagrad(h, t, p, g, s):
    # Duchi, Hazan & Singer (2011), diagonal version (section 1.1):
    # G <- G + g^2; theta <- theta - lr g / (sqrt(G) + eps), eps outside the
    # root as torch.optim.Adagrad.
    s["G"] = s["G"] + g * g
    return p - h.lr * g / (np.sqrt(s["G"]) + h.eps)


def ref_rmsprop(h, t, p, g, s):
    # Tieleman & Hinton (2012), lecture 6e: MeanSquare <- alpha MeanSquare
    # + (1 - alpha) g^2; theta <- theta - lr g / (sqrt(MeanSquare) + eps).
    s["ms"] = h.alpha * s["ms"] + (h.c(1) - h.alpha) * g * g
    return p - h.lr * g / (np.sqrt(s["ms"]) + h.eps)


def adam_moments(h, t, g, s):
    # Kingma & Ba (2015), Algorithm 1: the biased moments and their bias
    # corrections m_hat, v_hat.
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    return (s["m"] / (h.c(1) - h.beta1 ** t),
            s["v"] / (h.c(1) - h.beta2 ** t))


def ref_adam(h, t, p, g, s):
    # Kingma & Ba (2015), Algorithm 1:
    # theta <- theta - alpha m_hat / (sqrt(v_hat) + eps).
    m_hat, v_hat = adam_moments(h, t, g, s)
    return p - h.lr * m_hat / (np.sqrt(v_hat) + h.eps)


def ref_adamw(h, t, p, g, s):
    # Loshchilov & Hutter (2019), Algorithm 2, line 12: theta <- theta -
    # eta (alpha m_hat / (sqrt(v_hat) + eps) + lambda theta), with eta = 1,
    # alpha = lr and lambda = lr * wd as torch.optim.AdamW.
    m_hat, v_hat = adam_moments(h, t, g, s)
    return p - (h.lr * m_hat / (np.sqrt(v_hat) + h.eps)
                + h.lr * h.weight_decay * p)


def ref_amsgrad(h, t, p, g, s):
    # Reddi, Kale & Kumar (2018), Algorithm 2: v_hat <- max(v_hat, v), the
    # step divides by sqrt(v_hat). The paper has neither bias correction nor
    # eps; as torch.optim.Adam(amsgrad=True), m is bias-corrected and the
    # denominator is sqrt(v_hat / (1 - beta2^t)) + eps.
    m_hat, _ = adam_moments(h, t, g, s)
    s["vmax"] = np.maximum(s["vmax"], s["v"])
    return p - h.lr * m_hat / (np.sqrt(s["vmax"])
                               / np.sqrt(h.c(1) - h.beta2 ** t) + h.eps)


def ref_lion(h, t, p, g, s):
    # Chen et al. (2023), "Symbolic Discovery of Optimization Algorithms",
    # Algorithm 2: c = beta1 m + (1 - beta1) g; theta <- theta - lr (sign(c)
    # + lambda theta); m <- beta2 m + (1 - beta2) g.
    c = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    p = p - h.lr * (np.sign(c) + h.weight_decay * p)
    s["m"] = h.beta2 * s["m"] + (h.c(1) - h.beta2) * g
    return p


def ref_adamax(h, t, p, g, s):
    # Kingma & Ba (2015), Algorithm 2 (AdaMax): u <- max(beta2 u, |g|);
    # theta <- theta - (alpha / (1 - beta1^t)) m / u; eps added to |g| as
    # torch.optim.Adamax, so that u > 0.
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["u"] = np.maximum(h.beta2 * s["u"], np.abs(g) + h.eps)
    return p - (h.lr / (h.c(1) - h.beta1 ** t)) * s["m"] / s["u"]


def ref_yogi(h, t, p, g, s):
    # Zaheer et al. (2018), "Adaptive Methods for Nonconvex Optimization",
    # Algorithm 2: v <- v - (1 - beta2) sign(v - g^2) g^2; theta <- theta -
    # lr m / (sqrt(v) + eps); no bias correction; v starts at 1e-6 (the
    # initial_accumulator_value of tfa.optimizers.Yogi).
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    g2 = g * g
    s["v"] = s["v"] - (h.c(1) - h.beta2) * np.sign(s["v"] - g2) * g2
    return p - h.lr * s["m"] / (np.sqrt(s["v"]) + h.eps)


def ref_adabelief(h, t, p, g, s):
    # Zhuang et al. (2020), Algorithm 2: s <- beta2 s + (1 - beta2) (g - m)^2
    # + eps, bias-corrected like Adam's v; theta <- theta - alpha m_hat /
    # (sqrt(s_hat) + eps).
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    d = g - s["m"]
    s["s"] = h.beta2 * s["s"] + (h.c(1) - h.beta2) * d * d + h.eps
    m_hat = s["m"] / (h.c(1) - h.beta1 ** t)
    s_hat = s["s"] / (h.c(1) - h.beta2 ** t)
    return p - h.lr * m_hat / (np.sqrt(s_hat) + h.eps)


def ref_adadelta(h, t, p, g, s):
    # Zeiler (2012), Algorithm 1, with a learning rate as torch.optim.
    # Adadelta: E[g^2] <- rho E[g^2] + (1 - rho) g^2; dx = -RMS[dx]_{t-1} /
    # RMS[g]_t g (RMS[y] = sqrt(E[y^2] + eps)); E[dx^2] <- rho E[dx^2] +
    # (1 - rho) dx^2; theta <- theta + lr dx.
    s["Eg2"] = h.rho * s["Eg2"] + (h.c(1) - h.rho) * g * g
    dx = -(np.sqrt(s["Edx2"] + h.eps) / np.sqrt(s["Eg2"] + h.eps)) * g
    s["Edx2"] = h.rho * s["Edx2"] + (h.c(1) - h.rho) * dx * dx
    return p + h.lr * dx


def ref_radam(h, t, p, g, s):
    # Liu et al. (2020), "On the Variance of the Adaptive Learning Rate and
    # Beyond", Algorithm 2: rho_inf = 2 / (1 - beta2) - 1, rho_t = rho_inf -
    # 2 t beta2^t / (1 - beta2^t); if the variance is tractable the step is
    # the rectified adaptive one, r_t m_hat l_t, else the momentum m_hat.
    # Threshold rho_t > 5 as torch.optim.RAdam (the paper: > 4), and eps
    # added to sqrt(v_hat) as in Adam (l_t = 1 / (sqrt(v_hat) + eps)).
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    m_hat = s["m"] / (h.c(1) - h.beta1 ** t)
    b2t = h.beta2 ** t
    rho_inf = h.c(2) / (h.c(1) - h.beta2) - h.c(1)
    rho_t = rho_inf - h.c(2) * t * b2t / (h.c(1) - b2t)
    if rho_t > 5:
        r = np.sqrt((rho_t - h.c(4)) * (rho_t - h.c(2)) * rho_inf
                    / ((rho_inf - h.c(4)) * (rho_inf - h.c(2)) * rho_t))
        l = h.c(1) / (np.sqrt(s["v"] / (h.c(1) - b2t)) + h.eps)
        return p - h.lr * (r * m_hat * l)
    return p - h.lr * m_hat


def ref_sgd_wd(h, t, p, g, s):
    # SGD with L2 regularization (the gradient of wd/2 |theta|^2 added to
    # g), then elementwise gradient clipping to [-clip, clip].
    return p - h.lr * np.clip(g + h.wd * p, -h.clip, h.clip)


def ref_nadam(h, t, p, g, s):
    # Dozat (2016), "Incorporating Nesterov Momentum into Adam", Algorithm 2,
    # in the form of torch.optim.NAdam: the momentum schedule mu_t = beta1
    # (1 - 0.5 * 0.96^(t psi)) (the paper: psi = 1/250), its product
    # prod_{i <= t} mu_i, and theta <- theta - lr ((1 - mu_t) / (1 - prod_t)
    # g + mu_{t+1} / (1 - prod_{t+1}) m) / (sqrt(v_hat) + eps).
    mu = h.beta1 * (h.c(1) - h.c(0.5) * h.c(0.96) ** (t * h.psi))
    mu_next = h.beta1 * (h.c(1) - h.c(0.5)
                         * h.c(0.96) ** ((t + h.c(1)) * h.psi))
    s["prod"] = s["prod"] * mu
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    denom = np.sqrt(s["v"] / (h.c(1) - h.beta2 ** t)) + h.eps
    g_hat = (h.c(1) - mu) / (h.c(1) - s["prod"]) * g
    m_hat = mu_next / (h.c(1) - s["prod"] * mu_next) * s["m"]
    return p - h.lr * (g_hat + m_hat) / denom


def ref_qhadam(h, t, p, g, s):
    # Ma & Yarats (2019), "Quasi-hyperbolic momentum and Adam for deep
    # learning", section 4 (QHAdam): theta <- theta - alpha ((1 - nu1) g +
    # nu1 g_hat) / (sqrt((1 - nu2) g^2 + nu2 s_hat) + eps), g_hat and s_hat
    # Adam's bias-corrected moments.
    m_hat, v_hat = adam_moments(h, t, g, s)
    num = (h.c(1) - h.nu1) * g + h.nu1 * m_hat
    return p - h.lr * num / (np.sqrt((h.c(1) - h.nu2) * g * g
                                     + h.nu2 * v_hat) + h.eps)


def ref_adabound(h, t, p, g, s):
    # Luo et al. (2019), "Adaptive Gradient Methods with Dynamic Bound of
    # Learning Rate", Algorithm 2 as the authors' code (Luolc/AdaBound):
    # eta = clip(alpha_t / (sqrt(v) + eps), eta_l(t), eta_u(t)) with Adam's
    # alpha_t = lr sqrt(1 - beta2^t) / (1 - beta1^t) and the bounds of
    # section 4, eta_l = final_lr (1 - 1 / (gamma t + 1)), eta_u = final_lr
    # (1 + 1 / (gamma t)); theta <- theta - eta m. (Algorithm 2 also divides
    # eta by sqrt(t); the code does not, and neither does the rule.)
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    alpha_t = h.lr * np.sqrt(h.c(1) - h.beta2 ** t) / (h.c(1) - h.beta1 ** t)
    lower = h.final_lr * (h.c(1) - h.c(1) / (h.gamma * t + h.c(1)))
    upper = h.final_lr * (h.c(1) + h.c(1) / (h.gamma * t))
    eta = np.clip(alpha_t / (np.sqrt(s["v"]) + h.eps), lower, upper)
    return p - eta * s["m"]


def ref_adan(h, t, p, g, s):
    # Xie et al. (2022), "Adan: Adaptive Nesterov Momentum Algorithm for
    # Faster Optimizing Deep Models", Algorithm 1, as the authors' code
    # (sail-sg/Adan): its betas are the paper's 1 - beta; m, the gradient
    # difference's average d and n are bias-corrected; the difference is 0 at
    # the first step; weight decay is the proximal step of Algorithm 1:
    # theta <- (theta - lr (m_hat + beta2 d_hat) / (sqrt(n_hat) + eps)) /
    # (1 + lr wd).
    diff = g - s["g_prev"] if t > 1 else np.zeros_like(g)
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["d"] = h.beta2 * s["d"] + (h.c(1) - h.beta2) * diff
    u = g + h.beta2 * diff
    s["n"] = h.beta3 * s["n"] + (h.c(1) - h.beta3) * u * u
    s["g_prev"] = g.copy()
    eta = h.lr / (np.sqrt(s["n"]) / np.sqrt(h.c(1) - h.beta3 ** t) + h.eps)
    step = eta * (s["m"] / (h.c(1) - h.beta1 ** t)
                  + h.beta2 * s["d"] / (h.c(1) - h.beta2 ** t))
    return (p - step) / (h.c(1) + h.lr * h.weight_decay)


def ref_signsgd(h, t, p, g, s):
    # Bernstein et al. (2018), "signSGD: Compressed Optimisation for
    # Non-Convex Problems", Algorithm 1: theta <- theta - lr sign(g).
    return p - h.lr * np.sign(g)


def ref_signum(h, t, p, g, s):
    # Bernstein et al. (2018), Algorithm 3 (Signum): m <- beta m + (1 - beta)
    # g; theta <- theta - lr sign(m).
    s["m"] = h.beta * s["m"] + (h.c(1) - h.beta) * g
    return p - h.lr * np.sign(s["m"])


def ref_adamod(h, t, p, g, s):
    # Ding et al. (2019), "An Adaptive and Momental Bound Method for
    # Stochastic Learning", Algorithm 1: eta_t = alpha_t / (sqrt(v) + eps)
    # (Adam's bias-corrected step size alpha_t = lr sqrt(1 - beta2^t) /
    # (1 - beta1^t), eps as the authors' code, lancopku/AdaMod); its
    # exponential average s <- beta3 s + (1 - beta3) eta_t bounds it:
    # theta <- theta - min(eta_t, s) m.
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    alpha_t = h.lr * np.sqrt(h.c(1) - h.beta2 ** t) / (h.c(1) - h.beta1 ** t)
    eta = alpha_t / (np.sqrt(s["v"]) + h.eps)
    s["s"] = h.beta3 * s["s"] + (h.c(1) - h.beta3) * eta
    return p - np.minimum(eta, s["s"]) * s["m"]


def ref_qhm(h, t, p, g, s):
    # Ma & Yarats (2019), section 3 (QHM): g_buf <- beta g_buf + (1 - beta)
    # g; theta <- theta - alpha ((1 - nu) g + nu g_buf).
    s["buf"] = h.beta * s["buf"] + (h.c(1) - h.beta) * g
    return p - h.lr * ((h.c(1) - h.nu) * g + h.nu * s["buf"])


def ref_adashift(h, t, p, g, s):
    # Zhou, Zhang, Ye et al. (2019), "AdaShift: Decorrelation and
    # Convergence of Adaptive Learning Rate Methods", Algorithm 3 with
    # n = 4 and phi the identity (blocks of one coordinate): a FIFO of the
    # last n gradients; m_t = sum_i beta1^i g_{t-i} / sum_i beta1^i over the
    # queue; v_t = beta2 v + (1 - beta2) g_{t-n}^2 with the gradient that
    # left the queue; no update while t <= n. eps added to sqrt(v), as
    # implementations do.
    old = s["q0"]
    s["q0"], s["q1"], s["q2"], s["q3"] = s["q1"], s["q2"], s["q3"], g
    w = [h.beta1 ** h.c(3), h.beta1 ** h.c(2), h.beta1, h.c(1)]
    m = ((w[0] * s["q0"] + w[1] * s["q1"]) + w[2] * s["q2"]) + w[3] * s["q3"]
    if t <= 4:
        return p
    s["v"] = h.beta2 * s["v"] + (1 - h.beta2) * old * old
    return p - h.lr * m / (((w[0] + w[1]) + w[2]) + w[3]) / (
        np.sqrt(s["v"]) + h.eps)


def ref_aggmo(h, t, p, g, s):
    # Lucas, Sun, Zemel & Grosse (2019), "Aggregated Momentum: Stability
    # Through Passive Damping", Algorithm 1: K velocities v_i <- beta_i v_i
    # - g; theta <- theta + (gamma / K) sum_i v_i. Here K = 3.
    betas = (h.beta1, h.beta2, h.beta3)
    for i, beta in enumerate(betas):
        s["v%d" % i] = beta * s["v%d" % i] - g
    total = s["v0"]
    for i in range(1, len(betas)):
        total = total + s["v%d" % i]
    return p + h.lr / h.c(len(betas)) * total


# Rules with reductions over a tensor. h.tensor(kind, x) and h.all(kind, x)
# are a reference's reductions over each tensor and over all of them, as the
# language defines them: x (already in the run's dtype) summed in float64,
# squared in float64 for norm, mean = sum / coordinates, the result rounded
# once to the dtype.
def reduction(kind, x, bounds, dtype):
    out = np.empty_like(x)
    x64 = x.astype(np.float64)
    for lo, hi in bounds:
        if hi == lo:
            continue
        y = x64[lo:hi]
        value = {"sum": lambda: np.sum(y),
                 "mean": lambda: np.sum(y) / (hi - lo),
                 "norm": lambda: np.sqrt(np.sum(y * y)),
                 "max": lambda: np.max(y),
                 "min": lambda: np.min(y)}[kind]()
        out[lo:hi] = dtype(value)
    return out


def ratio_or_one(a, b, h):
    """a / b where a > 0 and b > 0, else 1 (the trust ratios' guard)."""
    ok = (a > 0) & (b > 0)
    return np.where(ok, a / np.where(ok, b, h.c(1)), h.c(1))


def ref_lamb(h, t, p, g, s):
    # You et al. (2020), Algorithm 2 (LAMB): Adam's bias-corrected update
    # plus decoupled weight decay, u = m_hat / (sqrt(v_hat) + eps) + wd x,
    # scaled per tensor by the trust ratio |x| / |u| (1 where a norm is 0).
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    u = (s["m"] / (h.c(1) - h.beta1 ** t)
         / (np.sqrt(s["v"] / (h.c(1) - h.beta2 ** t)) + h.eps)
         + h.weight_decay * p)
    ratio = ratio_or_one(h.tensor("norm", p), h.tensor("norm", u), h)
    return p - h.lr * ratio * u


def ref_lars(h, t, p, g, s):
    # You, Gitman & Ginsburg (2017), Algorithm 1: local lr lambda = eta |w|
    # / (|grad| + beta |w|) per layer; v <- m v + gamma lambda (grad + beta
    # w); w <- w - v.
    wn, gn = h.tensor("norm", p), h.tensor("norm", g)
    ok = (wn > 0) & (gn > 0)
    trust = np.where(ok, h.eta * wn / np.where(ok, gn + h.weight_decay * wn,
                                               h.c(1)), h.c(1))
    s["v"] = h.momentum * s["v"] + h.lr * trust * (g + h.weight_decay * p)
    return p - s["v"]


def ref_novograd(h, t, p, g, s):
    # Ginsburg et al. (2019), Algorithm 1: per-layer v_1 = |g_1|^2, v_t =
    # beta2 v + (1 - beta2) |g_t|^2; m_t = beta1 m + (g / (sqrt(v_t) + eps)
    # + d w); w <- w - lr m.
    gg = h.tensor("sum", g * g)
    s["v"] = gg if t == 1 else h.beta2 * s["v"] + (h.c(1) - h.beta2) * gg
    s["m"] = h.beta1 * s["m"] + (g / (np.sqrt(s["v"]) + h.eps)
                                 + h.weight_decay * p)
    return p - h.lr * s["m"]


def ref_adafactor(h, t, p, g, s):
    # Shazeer & Stern (2018), Algorithm 2 for a vector (unfactored), with
    # section 8's relative step and clipping: rho_t = min(1e-2, 1/sqrt(t)),
    # beta2_t = 1 - t^-0.8, V_t = beta2_t V + (1 - beta2_t)(G^2 + eps1),
    # U = G / sqrt(V), U_hat = U / max(1, RMS(U) / d), alpha_t =
    # max(eps2, RMS(X)) rho_t, X <- X - alpha_t U_hat.
    rho = min(h.max_lr, h.c(1) / np.sqrt(t))
    beta2 = h.c(1) - t ** (-h.decay)
    s["v"] = beta2 * s["v"] + (h.c(1) - beta2) * (g * g + h.eps1)
    u = g / np.sqrt(s["v"])
    u_hat = u / np.maximum(h.c(1), np.sqrt(h.tensor("mean", u * u)) / h.d)
    alpha = np.maximum(h.eps2, np.sqrt(h.tensor("mean", p * p))) * rho
    return p - alpha * u_hat


def ref_sgd_clip(h, t, p, g, s):
    # Pascanu et al. (2013), gradient clipping by the global norm, as
    # torch.nn.utils.clip_grad_norm_: coefficient min(1, max_norm /
    # (|g| + 1e-6)) over all parameters together.
    total = h.all("norm", g)
    return p - h.lr * np.minimum(h.c(1), h.max_norm / (total + h.c(1e-6))) * g


def ref_bngd(h, t, p, g, s):
    # Yu et al. (2017), block-normalized gradient: each tensor's gradient
    # divided by its infinity norm max|g| (+ eps).
    linf = np.maximum(h.tensor("max", g), -h.tensor("min", g))
    return p - h.lr * g / (linf + h.eps)


def ref_gc_momentum(h, t, p, g, s):
    # Yong et al. (2020), gradient centralization: g - mean(g) over the
    # tensor, then SGD with momentum (buf <- mu buf + g; p <- p - lr buf).
    s["buf"] = h.mu * s["buf"] + (g - h.tensor("mean", g))
    return p - h.lr * s["buf"]


# Rules with nested reductions: the reference reduces values computed from
# another reduction's result (already rounded to the run's dtype), in the
# paper's order; test/Oracle/nested_oracle.py checks them further (thread
# counts, chunk sizes, perturbed references).

def ref_gs_sgd(h, t, p, g, s):
    # Gradient standardization (ZNorm, Yun & Kim, 2024, arXiv:2408.01215):
    # (g - mean(g)) / (std(g) + eps) per tensor, std the population
    # standard deviation (the RMS of the centred gradient), then SGD with
    # momentum (buf <- mu buf + g~; p <- p - lr buf).
    c = g - h.tensor("mean", g)
    sd = np.sqrt(h.tensor("mean", c * c))
    s["buf"] = h.mu * s["buf"] + c / (sd + h.eps)
    return p - h.lr * s["buf"]


def ref_lans(h, t, p, g, s):
    # Zheng et al. (2020), "Accelerated Large Batch Optimization of BERT
    # Pretraining in 54 Minutes", Algorithm 2 (LANS): g~ = g / |g| per
    # tensor (0 where |g| = 0), Adam's moments of g~ with bias correction,
    # r = m_hat / (sqrt(v_hat) + eps) + wd x and c = g~ / (sqrt(v_hat) + eps)
    # + wd x; x <- x - lr (beta1 |x| / |r| r + (1 - beta1) |x| / |c| c),
    # each ratio 1 where a norm is 0 (as LAMB's).
    gn = h.tensor("norm", g)
    gt = np.where(gn > 0, g / np.where(gn > 0, gn, h.c(1)), h.c(0))
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * gt
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * gt * gt
    den = np.sqrt(s["v"] / (h.c(1) - h.beta2 ** t)) + h.eps
    r = s["m"] / (h.c(1) - h.beta1 ** t) / den + h.weight_decay * p
    c = gt / den + h.weight_decay * p
    wn = h.tensor("norm", p)
    return p - h.lr * (h.beta1 * ratio_or_one(wn, h.tensor("norm", r), h) * r
                       + (h.c(1) - h.beta1)
                       * ratio_or_one(wn, h.tensor("norm", c), h) * c)


# Rules with schedules of the step. Each reference follows its schedule in
# integer arithmetic on the step (the 1-based t as an int), independently of
# the rule's floor and mod, and rounds once where the paper computes a real.

def ref_sgdr(h, t, p, g, s):
    # Loshchilov & Hutter (2017), "SGDR: Stochastic Gradient Descent with
    # Warm Restarts", eq. 5 with T_mult = 1: eta_t = eta_min + 1/2 (eta_max -
    # eta_min)(1 + cos(pi T_cur / T)), T_cur the steps since the last restart
    # (0 at a restart, as torch's CosineAnnealingWarmRestarts); SGD with
    # momentum: buf <- mu buf + g; theta <- theta - eta_t buf.
    t_cur = h.c((int(t) - 1) % int(h.T))
    lr = h.lr_min + h.c(0.5) * (h.lr_max - h.lr_min) * (
        h.c(1) + np.cos(h.c(np.pi) * t_cur / h.T))
    s["buf"] = h.mu * s["buf"] + g
    return p - lr * s["buf"]


def ref_step_momentum(h, t, p, g, s):
    # Step decay (torch.optim.lr_scheduler.StepLR): lr gamma^i during the
    # i-th block of step_size steps (i from 0); SGD with momentum.
    decays = (int(t) - 1) // int(h.step_size)
    s["buf"] = h.mu * s["buf"] + g
    return p - h.lr * h.gamma ** h.c(decays) * s["buf"]


def ref_lookahead_adam(h, t, p, g, s):
    # Zhang, Lucas, Hinton & Ba (2019), "Lookahead Optimizer: k steps
    # forward, 1 step back", Algorithm 1, with Adam as the inner optimizer
    # (its moments and step count carry over): phi starts at theta_0; every
    # k-th step, phi <- phi + alpha (theta - phi) and theta <- phi.
    if int(t) == 1:
        s["phi"] = p.copy()
    m_hat, v_hat = adam_moments(h, t, g, s)
    p = p - h.lr * m_hat / (np.sqrt(v_hat) + h.eps)
    if int(t) % int(h.k) == 0:
        s["phi"] = s["phi"] + h.alpha * (p - s["phi"])
        p = s["phi"].copy()
    return p


# Rules of 2018-2024 that keep a copy of the initial point (schedule-free,
# MADGRAD, Prodigy, AccSGD), a running sum shared by every coordinate, a
# parity of the step or a half-life schedule. Each reference starts its
# copies at step 1 from theta_1, as the papers' "z_1 = x_1".

def ref_sf_sgd(h, t, p, g, s):
    # Defazio et al. (2024), "The Road Less Scheduled", Algorithm 1 (the
    # SGD form, no warmup): y_t = (1 - beta) z_t + beta x_t is where the
    # gradient is taken (the optimizer's theta); z_{t+1} = z_t - gamma g_t
    # (weight decay taken at y_t, as the authors' code); c_{t+1} = 1 / (t +
    # 1); x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}; z_1 = x_1 = theta_1.
    if int(t) == 1:
        s["z"], s["x"] = p.copy(), p.copy()
    s["z"] = s["z"] - h.lr * g - h.lr * h.weight_decay * p
    c = h.c(1) / h.c(int(t) + 1)
    s["x"] = (h.c(1) - c) * s["x"] + c * s["z"]
    return (h.c(1) - h.beta) * s["z"] + h.beta * s["x"]


def ref_sf_adamw(h, t, p, g, s):
    # Defazio et al. (2024), Algorithm 1 (Schedule-Free AdamW): v_t = beta2
    # v + (1 - beta2) g^2; gamma_t = gamma sqrt(1 - beta2^t) min(1, t /
    # T_warmup); z_{t+1} = z_t - gamma_t g / (sqrt(v_t) + eps) - gamma_t
    # lambda y_t; c_{t+1} = gamma_t^2 / sum_{i <= t} gamma_i^2; x_{t+1} =
    # (1 - c) x_t + c z_{t+1}; y_{t+1} = (1 - beta1) z_{t+1} + beta1 x_{t+1}.
    if int(t) == 1:
        s["z"], s["x"] = p.copy(), p.copy()
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    gamma = h.lr * np.sqrt(h.c(1) - h.beta2 ** t) * min(h.c(1), t / h.warmup)
    s["z"] = s["z"] - gamma * g / (np.sqrt(s["v"]) + h.eps) \
        - gamma * h.weight_decay * p
    s["gsum"] = s["gsum"] + gamma * gamma
    c = gamma * gamma / s["gsum"]
    s["x"] = (h.c(1) - c) * s["x"] + c * s["z"]
    return (h.c(1) - h.beta1) * s["z"] + h.beta1 * s["x"]


def ref_prodigy(h, t, p, g, s):
    # Mishchenko & Defazio (2023), "Prodigy: An Expeditiously Adaptive
    # Parameter-Free Learner", Algorithm 4 (Adam version): m = beta1 m + (1 -
    # beta1) d g; v = beta2 v + (1 - beta2) d^2 g^2; r = sqrt(beta2) r + (1 -
    # sqrt(beta2)) gamma d^2 <g, x_0 - x>; s = sqrt(beta2) s + (1 -
    # sqrt(beta2)) gamma d^2 g; d_{k+1} = max(d, r / |s|_1); x <- x - gamma d
    # m / (sqrt(v) + d eps), with d the estimate before this step's update.
    # Inner product and 1-norm over the whole model; d_hat = 0 where |s|_1 =
    # 0 (the authors' code skips such a step).
    if int(t) == 1:
        s["x0"], s["d"] = p.copy(), np.full_like(p, h.d0)
    d = s["d"]
    root = np.sqrt(h.beta2)
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * d * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * d * d * g * g
    s["r"] = root * s["r"] + (h.c(1) - root) * h.lr * d * d \
        * h.all("sum", g * (s["x0"] - p))
    s["s"] = root * s["s"] + (h.c(1) - root) * h.lr * d * d * g
    norm1 = h.all("sum", np.abs(s["s"]))
    ok = norm1 > 0
    d_hat = np.where(ok, s["r"] / np.where(ok, norm1, h.c(1)), h.c(0))
    s["d"] = np.maximum(d, d_hat)
    return p - h.lr * d * s["m"] / (np.sqrt(s["v"]) + d * h.eps)


def ref_madgrad(h, t, p, g, s):
    # Defazio & Jelassi (2021), "Adaptivity without Compromise", Algorithm 1
    # (MADGRAD): lambda_k = gamma sqrt(k + 1) (k = t - 1); s += lambda g; nu
    # += lambda g^2; z = x_0 - s / (nu^(1/3) + eps); x <- (1 - c) x + c z with
    # c = 1 - momentum.
    if int(t) == 1:
        s["x0"] = p.copy()
    lam = h.lr * np.sqrt(t)
    s["s"] = s["s"] + lam * g
    s["nu"] = s["nu"] + lam * g * g
    z = s["x0"] - s["s"] / (np.cbrt(s["nu"]) + h.eps)
    c = h.c(1) - h.momentum
    return (h.c(1) - c) * p + c * z


def ref_ademamix(h, t, p, g, s):
    # Pagliardini, Ablin & Grangier (2024), "The AdEMAMix Optimizer",
    # Algorithm 1 with its schedulers: alpha(t) = min(t alpha / T, alpha);
    # beta3(t) = min(exp(ln beta1 ln beta3 / ((1 - t/T) ln beta3 + t/T ln
    # beta1)), beta3); m1, nu bias-corrected as Adam, m2 not; theta <- theta
    # - lr ((m1_hat + alpha(t) m2) / (sqrt(nu_hat) + eps) + lambda theta).
    a = min(t * h.alpha / h.T, h.alpha)
    frac = t / h.T
    ln1, ln3 = h.rounded(math.log, h.beta1), h.rounded(math.log, h.beta3)
    b3 = min(h.rounded(math.exp, ln1 * ln3 / ((h.c(1) - frac) * ln3
                                            + frac * ln1)), h.beta3)
    s["m1"] = h.beta1 * s["m1"] + (h.c(1) - h.beta1) * g
    s["m2"] = b3 * s["m2"] + (h.c(1) - b3) * g
    s["nu"] = h.beta2 * s["nu"] + (h.c(1) - h.beta2) * g * g
    m1_hat = s["m1"] / (h.c(1) - h.beta1 ** t)
    nu_hat = s["nu"] / (h.c(1) - h.beta2 ** t)
    return p - h.lr * ((m1_hat + a * s["m2"]) / (np.sqrt(nu_hat) + h.eps)
                       + h.weight_decay * p)


def ref_laprop(h, t, p, g, s):
    # Ziyin, Wang & Ueda (2020), "LaProp: Separating Momentum and Adaptivity
    # in Adam", Algorithm 1: n = nu n + (1 - nu) g^2; m = mu m + (1 - mu) g
    # / (sqrt(n / c_n) + eps); theta <- theta - lr m / c_m, c_n = 1 - nu^t,
    # c_m = 1 - mu^t (mu = beta1, nu = beta2).
    s["n"] = h.beta2 * s["n"] + (h.c(1) - h.beta2) * g * g
    c_n, c_m = h.c(1) - h.beta2 ** t, h.c(1) - h.beta1 ** t
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g / (
        np.sqrt(s["n"] / c_n) + h.eps)
    return p - h.lr * s["m"] / c_m


def ref_pid(h, t, p, g, s):
    # An et al. (2018), "A PID Controller Approach for Stochastic
    # Optimization of Deep Networks", eq. 11: V <- alpha V - r g; D <- alpha
    # D + (1 - alpha)(g_t - g_{t-1}); theta <- theta + V - K_d D, with K_d =
    # lr kd: the derivative term opposes the change of the gradient, scaled
    # by the learning rate as in the authors' code (tensorboy/PIDOptimizer);
    # the first step's difference is 0.
    diff = g - s["g_prev"] if int(t) > 1 else np.zeros_like(g)
    s["V"] = h.alpha * s["V"] - h.lr * g
    s["D"] = h.alpha * s["D"] + (h.c(1) - h.alpha) * diff
    s["g_prev"] = g.copy()
    return p + s["V"] - h.lr * h.kd * s["D"]


def ref_accsgd(h, t, p, g, s):
    # Kidambi, Netrapalli, Jain & Kakade (2018), "On the insufficiency of
    # existing momentum schemes for stochastic optimization", Algorithm 1
    # (ASGD), with the paper's constant 0.7 as small_const: alpha = 1 -
    # 0.7^2 xi / kappa; w_bar <- alpha w_bar + (1 - alpha)(w - kappa delta /
    # 0.7 g); w <- 0.7 / (0.7 + 1 - alpha) (w - delta g) + (1 - alpha) / (0.7
    # + 1 - alpha) w_bar; w_bar_0 = w_0.
    if int(t) == 1:
        s["w_bar"] = p.copy()
    k = h.small_const
    alpha = h.c(1) - k * k * h.xi / h.kappa
    s["w_bar"] = alpha * s["w_bar"] + (h.c(1) - alpha) * (
        p - h.kappa * h.lr / k * g)
    den = k + (h.c(1) - alpha)
    return k / den * (p - h.lr * g) + (h.c(1) - alpha) / den * s["w_bar"]


def ref_adam_warmup_cosine(h, t, p, g, s):
    # Adam (Kingma & Ba, 2015) under the usual transformer schedule: lr t /
    # warmup for the first warmup steps, then a half cosine from lr down to
    # min_ratio lr at step total, constant after it.
    step, w, n = int(t), int(h.warmup), int(h.total)
    if step <= w:
        lr = h.lr * h.c(step) / h.warmup
    else:
        progress = h.c(min(step - w, n - w)) / h.c(n - w)
        lr = h.lr * (h.min_ratio + (h.c(1) - h.min_ratio) * h.c(0.5)
                     * (h.c(1) + np.cos(h.c(np.pi) * progress)))
    m_hat, v_hat = adam_moments(h, t, g, s)
    return p - lr * m_hat / (np.sqrt(v_hat) + h.eps)


def ref_adapnm(h, t, p, g, s):
    # Xie et al. (2021), "Positive-Negative Momentum", Algorithm 2 (AdaPNM,
    # with AMSGrad's maximum): two momenta, one updated at odd steps and one
    # at even ones, m_t = beta1^2 m_{t-2} + (1 - beta1^2) g; the update is
    # ((1 + beta0) m_t - beta0 m_{t-1}) / sqrt((1 + beta0)^2 + beta0^2),
    # divided by 1 - beta1^t and by sqrt(v_max / (1 - beta2^t)) + eps.
    b = h.beta1 * h.beta1
    cur, other = ("odd", "even") if int(t) % 2 else ("even", "odd")
    s[cur] = b * s[cur] + (h.c(1) - b) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    s["vmax"] = np.maximum(s["vmax"], s["v"])
    noise = np.sqrt((h.c(1) + h.beta0) ** 2 + h.beta0 ** 2)
    m_hat = ((h.c(1) + h.beta0) * s[cur] - h.beta0 * s[other]) / noise
    return p - h.lr / (h.c(1) - h.beta1 ** t) * m_hat / (
        np.sqrt(s["vmax"] / (h.c(1) - h.beta2 ** t)) + h.eps)


def ref_padam(h, t, p, g, s):
    # Chen & Gu (2018), "Closing the Generalization Gap of Adaptive Gradient
    # Methods in Training Deep Neural Networks", Algorithm 1 (Padam): AMSGrad
    # with v_hat^p, p in (0, 1/2]; eps added as the authors' code.
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    s["vmax"] = np.maximum(s["vmax"], s["v"])
    return p - h.lr * s["m"] / (np.power(s["vmax"], h.partial) + h.eps)


def ref_tiger(h, t, p, g, s):
    # Su (2023), Tiger ("a tight-fisted optimizer"): Lion with beta1 = beta2
    # = beta: m <- beta m + (1 - beta) g; theta <- theta - lr (sign(m) +
    # lambda theta).
    s["m"] = h.beta * s["m"] + (h.c(1) - h.beta) * g
    return p - h.lr * (np.sign(s["m"]) + h.weight_decay * p)


def ref_adam_atan2(h, t, p, g, s):
    # Everett et al. (2024, arXiv:2407.05872), Adam-atan2: m and v as Adam's,
    # bias-corrected, and the update a atan2(m_hat, b sqrt(v_hat)) instead of
    # m_hat / (sqrt(v_hat) + eps); AdamW's decoupled weight decay.
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    mhat = s["m"] / (h.c(1) - h.beta1 ** t)
    den = h.b * np.sqrt(s["v"] / (h.c(1) - h.beta2 ** t))
    return (p * (h.c(1) - h.lr * h.weight_decay)
            - h.lr * h.a * np.arctan2(mhat, den))


def ref_diffgrad(h, t, p, g, s):
    # Dubey et al. (2019), "diffGrad", eq. 4-6: Adam's bias-corrected moments;
    # the friction xi = 1 / (1 + exp(-|g_prev - g|)) scales the step;
    # theta <- theta - lr xi m_hat / (sqrt(v_hat) + eps); g_prev = 0 at t = 1.
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    xi = h.c(1) / (h.c(1) + np.exp(-np.abs(s["g_prev"] - g)))
    s["g_prev"] = g.copy()
    m_hat = s["m"] / (h.c(1) - h.beta1 ** t)
    v_hat = s["v"] / (h.c(1) - h.beta2 ** t)
    return p - h.lr * xi * m_hat / (np.sqrt(v_hat) + h.eps)


def ref_rprop(h, t, p, g, s):
    # Riedmiller & Braun (1993) as torch.optim.Rprop: factor etaplus where
    # g g_prev > 0, etaminus where < 0, else 1; step clamped to [step_min,
    # step_max]; the gradient zeroed where the sign flipped; theta <- theta -
    # sign(g) step; g_prev <- that gradient. Initial step lr, g_prev 0.
    prod = g * s["g_prev"]
    factor = np.where(prod > 0, h.etaplus,
                      np.where(prod < 0, h.etaminus, h.c(1)))
    s["step"] = np.clip(s["step"] * factor, h.step_min, h.step_max)
    d = np.where(prod < 0, h.c(0), g)
    s["g_prev"] = d
    return p - np.sign(d) * s["step"]


def ref_mars(h, t, p, g, s):
    # Yuan et al. (2024), "MARS", Algorithm 2 (approximate: the previous
    # step's gradient), as the authors' mars-adamw: c = (g - g_prev) gamma
    # beta1 / (1 - beta1) + g, c / |c| per tensor where |c| > 1; m, v AdamW's
    # of c; theta <- theta - lr (wd theta + (m / bc1) / (sqrt(v) / sqrt(bc2)
    # + eps)).
    c = (g - s["g_prev"]) * (h.gamma * (h.beta1 / (h.c(1) - h.beta1))) + g
    cn = h.tensor("norm", c)
    c = np.where(cn > 1, c / np.where(cn > 1, cn, h.c(1)), c)
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * c
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * c * c
    s["g_prev"] = g.copy()
    denom = np.sqrt(s["v"]) / np.sqrt(h.c(1) - h.beta2 ** t) + h.eps
    return p - h.lr * (p * h.weight_decay
                       + s["m"] / (h.c(1) - h.beta1 ** t) / denom)


def ref_cautious_adam(h, t, p, g, s):
    # Liang et al. (2024), "Cautious Optimizers", Algorithm 1 as the authors'
    # C-AdamW (no weight decay): mask = [m g > 0] * numel / (sum(mask) + 1)
    # per tensor; theta <- theta - lr sqrt(bc2) / bc1 (m / (sqrt(v) + eps)
    # mask).
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * g
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    keep = np.where(s["m"] * g > 0, h.c(1), h.c(0))
    mask = keep * (h.tensor("sum", np.ones_like(keep))
                   / (h.tensor("sum", keep) + h.c(1)))
    step_size = h.lr * np.sqrt(h.c(1) - h.beta2 ** t) / (h.c(1) - h.beta1 ** t)
    return p - step_size * (s["m"] / (np.sqrt(s["v"]) + h.eps) * mask)


def ref_fromage(h, t, p, g, s):
    # Bernstein et al. (2020), Fromage, Algorithm 1 as the authors' code: per
    # tensor, p <- (p - lr g |p| / |g|) / sqrt(1 + lr^2), a plain step of g
    # where |p| or |g| is 0.
    pn, gn = h.tensor("norm", p), h.tensor("norm", g)
    ok = (pn > 0) & (gn > 0)
    d = np.where(ok, g * (pn / np.where(ok, gn, h.c(1))), g)
    return (p - h.lr * d) / np.sqrt(h.c(1) + h.lr * h.lr)


def ref_adopt(h, t, p, g, s):
    # Taniguchi et al. (2024), "ADOPT", Algorithm 1 with the authors'
    # clipping: v_0 = g_0^2 at the first step, nothing else; then x =
    # clip(g / max(sqrt(v), eps), (t - 1)^(1/4)), m <- beta1 m + (1 - beta1)
    # x, theta <- theta - lr m, v <- beta2 v + (1 - beta2) g^2.
    if int(t) == 1:
        s["v"] = g * g
        return p
    clip = (t - h.c(1)) ** h.c(0.25)
    x = np.clip(g / np.maximum(np.sqrt(s["v"]), h.eps), -clip, clip)
    s["m"] = h.beta1 * s["m"] + (h.c(1) - h.beta1) * x
    s["v"] = h.beta2 * s["v"] + (h.c(1) - h.beta2) * g * g
    return p - h.lr * s["m"]


def neg_over_lr(name):
    """Our buf from Sutskever's velocity: buf = -v / lr."""
    return lambda s, h: -s[name] / h.lr


EX, LIT = "examples", "literature"
# (name, file, reference, hyperparameters (all away from their defaults),
# the reference's initial state, the rule's state from the reference's:
# {ours: reference's name, or a function of (state, h)}).
CASES = [
    ("sgd", EX, ref_sgd, {"lr": 0.03}, {}, {}),
    ("momentum", EX, ref_momentum, {"lr": 0.02, "mu": 0.8}, {"v": 0},
     {"buf": neg_over_lr("v")}),
    ("nesterov", EX, ref_nesterov, {"lr": 0.02, "mu": 0.85}, {"v": 0},
     {"buf": neg_over_lr("v")}),
    ("adagrad", EX, ref_adagrad, {"lr": 0.05, "eps": 1e-9}, {"G": 0},
     {"sum": "G"}),
    ("rmsprop", EX, ref_rmsprop, {"lr": 0.003, "alpha": 0.95, "eps": 1e-7},
     {"ms": 0}, {"v": "ms"}),
    ("adam", EX, ref_adam,
     {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("adamw", EX, ref_adamw,
     {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7,
      "weight_decay": 0.05},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("amsgrad", EX, ref_amsgrad,
     {"lr": 0.005, "beta1": 0.85, "beta2": 0.995, "eps": 1e-6},
     {"m": 0, "v": 0, "vmax": 0}, {"m": "m", "v": "v", "vmax": "vmax"}),
    ("lion", EX, ref_lion,
     {"lr": 3e-4, "beta1": 0.85, "beta2": 0.98, "weight_decay": 0.1},
     {"m": 0}, {"m": "m"}),
    ("adamax", LIT, ref_adamax,
     {"lr": 0.003, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7},
     {"m": 0, "u": 0}, {"m": "m", "u": "u"}),
    ("yogi", LIT, ref_yogi,
     {"lr": 0.02, "beta1": 0.85, "beta2": 0.995, "eps": 1e-4},
     {"m": 0, "v": 1e-6}, {"m": "m", "v": "v"}),
    ("adabelief", LIT, ref_adabelief,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "eps": 1e-12},
     {"m": 0, "s": 0}, {"m": "m", "s": "s"}),
    ("adadelta", LIT, ref_adadelta, {"lr": 0.5, "rho": 0.95, "eps": 1e-7},
     {"Eg2": 0, "Edx2": 0}, {"v": "Eg2", "u": "Edx2"}),
    ("radam", LIT, ref_radam,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("sgd_wd", LIT, ref_sgd_wd, {"lr": 0.05, "wd": 0.01, "clip": 2.0}, {},
     {}),
    ("nadam", LIT, ref_nadam,
     {"lr": 0.003, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7, "psi": 0.01},
     {"m": 0, "v": 0, "prod": 1}, {"m": "m", "v": "v", "mu_prod": "prod"}),
    ("qhadam", LIT, ref_qhadam,
     {"lr": 0.002, "beta1": 0.9, "beta2": 0.995, "nu1": 0.8, "nu2": 0.9,
      "eps": 1e-7},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("adabound", LIT, ref_adabound,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "final_lr": 0.05,
      "gamma": 0.002, "eps": 1e-7},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("adan", LIT, ref_adan,
     {"lr": 0.002, "beta1": 0.95, "beta2": 0.9, "beta3": 0.995, "eps": 1e-7,
      "weight_decay": 0.02},
     {"m": 0, "d": 0, "n": 0, "g_prev": 0},
     {"m": "m", "d": "d", "n": "n", "g_prev": "g_prev"}),
    ("signsgd", LIT, ref_signsgd, {"lr": 0.002}, {}, {}),
    ("signum", LIT, ref_signum, {"lr": 0.002, "beta": 0.8}, {"m": 0},
     {"m": "m"}),
    ("adamod", LIT, ref_adamod,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "beta3": 0.99, "eps": 1e-7},
     {"m": 0, "v": 0, "s": 0}, {"m": "m", "v": "v", "s": "s"}),
    ("qhm", LIT, ref_qhm, {"lr": 0.05, "beta": 0.95, "nu": 0.6}, {"buf": 0},
     {"buf": "buf"}),
    ("adashift", LIT, ref_adashift,
     {"lr": 0.003, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6},
     {"q0": 0, "q1": 0, "q2": 0, "q3": 0, "v": 0},
     {"q": lambda s, h: np.stack([s["q0"], s["q1"], s["q2"], s["q3"]]),
      "v": "v"}),
    ("aggmo", LIT, ref_aggmo,
     {"lr": 0.003, "beta1": 0.5, "beta2": 0.8, "beta3": 0.95},
     {"v0": 0, "v1": 0, "v2": 0}, {"v1": "v0", "v2": "v1", "v3": "v2"}),
    ("lamb", EX, ref_lamb,
     {"lr": 0.003, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7,
      "weight_decay": 0.02},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("lars", LIT, ref_lars,
     {"lr": 0.05, "momentum": 0.8, "weight_decay": 1e-3, "eta": 2e-3},
     {"v": 0}, {"v": "v"}),
    ("novograd", LIT, ref_novograd,
     {"lr": 0.003, "beta1": 0.9, "beta2": 0.95, "eps": 1e-7,
      "weight_decay": 0.01},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("adafactor", LIT, ref_adafactor,
     {"max_lr": 0.02, "decay": 0.7, "d": 1.5, "eps1": 1e-20, "eps2": 2e-3},
     {"v": 0}, {"v": "v"}),
    ("sgd_clip", LIT, ref_sgd_clip, {"lr": 0.05, "max_norm": 30.0}, {}, {}),
    ("bngd", LIT, ref_bngd, {"lr": 0.02, "eps": 1e-9}, {}, {}),
    ("gc_momentum", LIT, ref_gc_momentum, {"lr": 0.003, "mu": 0.8},
     {"buf": 0}, {"buf": "buf"}),
    ("gs_sgd", LIT, ref_gs_sgd, {"lr": 0.003, "mu": 0.8, "eps": 1e-6},
     {"buf": 0}, {"buf": "buf"}),
    ("lans", LIT, ref_lans,
     {"lr": 0.003, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7,
      "weight_decay": 0.02},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    # T = 37: 13 restarts in 500 steps, the last one mid-cycle; 11 decays.
    ("sgdr", LIT, ref_sgdr,
     {"lr_max": 0.02, "lr_min": 0.002, "T": 37, "mu": 0.85},
     {"buf": 0}, {"buf": "buf"}),
    ("step_momentum", LIT, ref_step_momentum,
     {"lr": 0.02, "mu": 0.8, "gamma": 0.6, "step_size": 45},
     {"buf": 0}, {"buf": "buf"}),
    # k = 7: 71 cycles, 500 ends 3 steps into the 72nd.
    ("lookahead_adam", LIT, ref_lookahead_adam,
     {"lr": 0.003, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7, "k": 7,
      "alpha": 0.6},
     {"m": 0, "v": 0, "phi": 0}, {"m": "m", "v": "v", "slow": "phi"}),
    ("sf_sgd", LIT, ref_sf_sgd, {"lr": 0.02, "beta": 0.8,
                                 "weight_decay": 0.01},
     {"z": 0, "x": 0}, {"z": "z", "x": "x"}),
    # warmup = 25 steps of a growing gamma_t, then the weights 1 / t.
    ("sf_adamw", LIT, ref_sf_adamw,
     {"lr": 0.004, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7,
      "weight_decay": 0.02, "warmup": 25},
     {"z": 0, "x": 0, "v": 0, "gsum": 0},
     {"z": "z", "x": "x", "v": "v", "lr_sum": "gsum"}),
    ("prodigy", LIT, ref_prodigy,
     {"lr": 0.5, "beta1": 0.85, "beta2": 0.99, "eps": 1e-7, "d0": 1e-3},
     {"m": 0, "v": 0, "s": 0, "r": 0, "d": 0, "x0": 0},
     {"m": "m", "v": "v", "s": "s", "r": "r", "d": "d", "x0": "x0"}),
    ("madgrad", LIT, ref_madgrad,
     {"lr": 0.003, "momentum": 0.8, "eps": 1e-7},
     {"s": 0, "nu": 0, "x0": 0}, {"s": "s", "nu": "nu", "x0": "x0"}),
    # T = 300: the half-life schedule of beta3 and alpha's ramp end 200
    # steps before the last.
    ("ademamix", LIT, ref_ademamix,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "beta3": 0.995,
      "alpha": 4.0, "T": 300, "eps": 1e-7, "weight_decay": 0.02},
     {"m1": 0, "m2": 0, "nu": 0}, {"m1": "m1", "m2": "m2", "v": "nu"}),
    ("laprop", LIT, ref_laprop,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "eps": 1e-9},
     {"m": 0, "n": 0}, {"m": "m", "n": "n"}),
    ("pid", LIT, ref_pid, {"lr": 0.02, "alpha": 0.8, "kd": 5.0},
     {"V": 0, "D": 0, "g_prev": 0},
     {"v": "V", "d": "D", "g_prev": "g_prev"}),
    ("accsgd", LIT, ref_accsgd,
     {"lr": 0.002, "kappa": 500, "xi": 5, "small_const": 0.6},
     {"w_bar": 0}, {"buf": "w_bar"}),
    # 40 warmup steps, the cosine to step 400, then 100 steps at its end.
    ("adam_warmup_cosine", LIT, ref_adam_warmup_cosine,
     {"lr": 0.003, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7,
      "warmup": 40, "total": 400, "min_ratio": 0.2},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("adapnm", LIT, ref_adapnm,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "beta0": 0.8,
      "eps": 1e-7},
     {"odd": 0, "even": 0, "v": 0, "vmax": 0},
     {"ma": "odd", "mb": "even", "v": "v", "vmax": "vmax"}),
    ("padam", LIT, ref_padam,
     {"lr": 0.05, "beta1": 0.85, "beta2": 0.995, "partial": 0.2,
      "eps": 1e-7},
     {"m": 0, "v": 0, "vmax": 0}, {"m": "m", "v": "v", "vmax": "vmax"}),
    ("tiger", LIT, ref_tiger, {"lr": 0.002, "beta": 0.9,
                               "weight_decay": 0.02},
     {"m": 0}, {"m": "m"}),
    ("adam_atan2", LIT, ref_adam_atan2,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "a": 1.1, "b": 0.9,
      "weight_decay": 0.02},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("diffgrad", LIT, ref_diffgrad,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7},
     {"m": 0, "v": 0, "g_prev": 0}, {"m": "m", "v": "v", "g_prev": "g_prev"}),
    ("rprop", LIT, ref_rprop,
     {"lr": 0.02, "etaminus": 0.4, "etaplus": 1.3, "step_min": 1e-5,
      "step_max": 5.0},
     {"step": 0.02, "g_prev": 0}, {"step": "step", "g_prev": "g_prev"}),
    ("mars", LIT, ref_mars,
     {"lr": 0.002, "beta1": 0.9, "beta2": 0.995, "gamma": 0.05, "eps": 1e-7,
      "weight_decay": 0.02},
     {"m": 0, "v": 0, "g_prev": 0}, {"m": "m", "v": "v", "g_prev": "g_prev"}),
    ("cautious_adam", LIT, ref_cautious_adam,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "eps": 1e-7},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
    ("fromage", LIT, ref_fromage, {"lr": 0.02}, {}, {}),
    ("adopt", LIT, ref_adopt,
     {"lr": 0.002, "beta1": 0.85, "beta2": 0.995, "eps": 1e-5},
     {"m": 0, "v": 0}, {"m": "m", "v": "v"}),
]
# Rules whose kernels reduce over tensors: also run with THREADS_CHECK
# threads, which must give the same bits.
REDUCING = {"lamb", "lars", "novograd", "adafactor", "sgd_clip", "bngd",
            "gc_momentum", "gs_sgd", "lans", "prodigy", "mars", "cautious_adam",
            "fromage"}
THREADS_CHECK = 3


def gradients(rng, scales):
    """One step's gradients of all tensors, concatenated (float32 values):
    normal, times each coordinate's own scale (`scales`, fixed for the run,
    so that a coordinate stays in its regime, small gradients included),
    about 10% exact zeros, and every 97th coordinate and the first of every
    tensor larger than one always 0 (the size-1 tensor gets gradients)."""
    g = rng.standard_normal(scales.size) * scales
    g[rng.random(scales.size) < 0.1] = 0.0
    g[::97] = 0.0
    starts = np.cumsum((0,) + SIZES[:-1])
    g[starts[np.array(SIZES) > 1]] = 0.0
    return g.astype(np.float32)


class Reference:
    """One run of a reference in one dtype over the concatenated tensors."""

    def __init__(self, case, dtype, p0):
        self.fn, self.dtype = case[2], dtype
        c = dtype
        offsets = np.cumsum((0,) + SIZES)
        bounds = list(zip(offsets[:-1], offsets[1:]))
        self.h = types.SimpleNamespace(
            c=c,
            tensor=lambda kind, x: reduction(kind, x, bounds, dtype),
            all=lambda kind, x: reduction(kind, x, [(0, x.size)], dtype),
            rounded=lambda fn, x: dtype(fn(float(x))),
            **{k: c(v) for k, v in case[3].items()})
        self.s = {k: np.full(p0.size, v, dtype) for k, v in case[4].items()}
        self.p = p0.astype(dtype)

    def step(self, t, g):
        self.p = self.fn(self.h, self.dtype(t), self.p, g.astype(self.dtype),
                         self.s)
        for name, a in [("p", self.p)] + list(self.s.items()):
            if a.dtype != self.dtype or a.shape != self.p.shape:
                raise AssertionError("reference %s: %s became %s%s"
                                     % (self.fn.__name__, name, a.dtype,
                                        a.shape))

    def quantity(self, key):
        if key is None:
            return self.p
        return key(self.s, self.h) if callable(key) else self.s[key]


class Worst:
    """The worst element of comparisons |a - b| <= rtol * |b| + atol."""

    def __init__(self):
        self.ratio = 0.0  # max |a - b| / (rtol * |b| + atol): pass if <= 1
        self.rel = 0.0  # max |a - b| / |b| where |b| >= atol / rtol
        self.ulps = 0.0  # max |a - b| / (eps * max|b|), per tensor
        self.where = ""

    def add(self, a, b, rtol, eps, where):
        a, b = a.astype(np.float64), b.astype(np.float64)
        if a.shape != b.shape:
            raise AssertionError("%s: shape %s vs %s" % (where, a.shape,
                                                         b.shape))
        if not a.size:
            return
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            self.ratio, self.where = np.inf, where + ": not finite"
            return
        scale = float(np.max(np.abs(b)))
        atol = ATOL_ULPS * eps * scale
        diff = np.abs(a - b)
        bound = rtol * np.abs(b) + atol
        ratio = np.where(diff == 0, 0.0,
                         diff / np.where(bound == 0, 1.0, bound))
        ratio[(diff != 0) & (bound == 0)] = np.inf
        if ratio.max() > self.ratio:
            j = int(np.argmax(ratio))
            self.ratio = float(ratio[j])
            self.where = "%s[%d]: %.9g vs reference %.9g" % (where, j, a[j],
                                                             b[j])
        big = np.abs(b) >= atol / rtol
        if np.any(big & (diff != 0)):
            self.rel = max(self.rel,
                           float(np.max(diff[big] / np.abs(b[big]))))
        if scale:
            self.ulps = max(self.ulps, float(diff.max()) / (eps * scale))


def compile_case(case, paths, precision):
    """Compiles the case's rule, checking that the table names all of its
    state and sets every hyperparameter away from its default."""
    source = os.path.join(paths[EX], case[0] + ".optim") if case[1] == EX \
        else paths[LIT]
    rule = optim_mlir.compile_file(source, rule=case[0],
                                   f64=precision == "f64")
    if set(rule.states) != set(case[5]):
        raise AssertionError("%s: the rule's state is %s, the table's %s"
                             % (case[0], sorted(rule.states),
                                sorted(case[5])))
    if set(rule.hypers) != set(case[3]) or any(
            case[3][k] == d for k, (d, _) in rule.hypers.items()):
        raise AssertionError("%s: hyperparameters %s (defaults %s), the "
                             "table sets %s"
                             % (case[0], sorted(rule.hypers), rule.hypers,
                                case[3]))
    if bool(rule.reductions) != (case[0] in REDUCING):
        raise AssertionError("%s: the rule's reductions are %s"
                             % (case[0], rule.reductions))
    return rule


def unreferenced_rules(paths):
    """The rules of examples/ and of the literature file that have no case
    here (l2l is a learned rule: test/Python/learned-weights.test). Rules
    that call rand() or randn() are random_oracle.py's, which has the
    reference draws; rules with row or column states or reductions are
    axis_oracle.py's, which runs them on shaped parameters, and rules with
    matrix functions or shape values (newton_schulz, rows(), cols())
    muon_oracle.py's."""
    names = set()
    files = [os.path.join(paths[EX], f) for f in os.listdir(paths[EX])
             if f.endswith(".optim")] + [paths[LIT]]
    for path in files:
        with open(path) as f:
            text = f.read()
        for m in re.finditer(r"^rule\s+(\w+)[^{]*\{(.*?)^\}", text,
                             re.M | re.S):
            body = re.sub(r"//[^\n]*", "", m.group(2))
            if not re.search(r"\brandn?\s*\(", body) and not re.search(
                    r"\b(row|col)\s+state\b|\b(row|col)_(sum|mean|norm|max"
                    r"|min)\s*\(|\b(newton_schulz|rows|cols)\s*\(", body):
                names.add(m.group(1))
    return sorted(names - {c[0] for c in CASES})


def run(cases, paths, precisions, steps, kernel_hyper):
    offsets = np.cumsum((0,) + SIZES)
    total = int(offsets[-1])
    init = np.random.default_rng(SEED).standard_normal(total).astype(
        np.float32)
    runs = []
    for case in cases:
        r = {"case": case, "kernels": {}, "refs": {}, "threads": {}}
        for precision in precisions:
            dtype = DTYPES[precision]
            rule = compile_case(case, paths, precision)
            for threads in (THREADS, THREADS_CHECK):
                if threads != THREADS and case[0] not in REDUCING:
                    continue
                params = [init[offsets[i]:offsets[i + 1]].astype(dtype)
                          for i in range(len(SIZES))]
                opt = optim_mlir.Optimizer(rule, params, threads=threads)
                for k, v in case[3].items():
                    opt.set(k, v)
                for k, v in kernel_hyper.items():
                    if k in opt.rule.hypers:
                        opt.set(k, v)
                key = "kernels" if threads == THREADS else "threads"
                r[key][precision] = (opt, params)
        # The float64 reference always runs: the float32 kernel's drift is
        # measured against it.
        for precision in set(precisions) | {"f64"}:
            r["refs"][precision] = Reference(case, DTYPES[precision], init)
        runs.append(r)

    rng = np.random.default_rng(SEED + 1)
    scales = 10.0 ** rng.uniform(-5.0, 2.0, total)
    for t in range(1, steps + 1):
        g = gradients(rng, scales)
        grads = {p: g.astype(DTYPES[p]) for p in DTYPES}
        split = {p: [grads[p][offsets[i]:offsets[i + 1]]
                     for i in range(len(SIZES))] for p in DTYPES}
        for r in runs:
            for key in ("kernels", "threads"):
                for precision, (opt, _) in r[key].items():
                    opt.step(split[precision])
            for precision, ref in r["refs"].items():
                ref.step(t, grads[precision])

    failed = 0
    for r in runs:
        name, states = r["case"][0], r["case"][5]
        for precision in precisions:
            opt, params = r["kernels"][precision]
            eps = float(np.finfo(DTYPES[precision]).eps)
            worst, drift = Worst(), Worst()
            for i in range(len(SIZES)):
                lo, hi = offsets[i], offsets[i + 1]
                for mine, key in [("p", None)] + list(states.items()):
                    a = params[i] if mine == "p" else opt.state(i, mine)
                    where = "%s[%d]" % (mine, i)
                    worst.add(a, r["refs"][precision].quantity(key)[..., lo:hi],
                              RTOL[precision], eps, where)
                    if precision == "f32" and mine == "p":
                        drift.add(a, r["refs"]["f64"].quantity(key)[..., lo:hi],
                                  RTOL[precision], eps, where)
            ok = worst.ratio <= 1.0
            if precision in r["threads"]:
                # The reductions add chunks in a fixed order: any number of
                # threads gives the same bits.
                other, other_params = r["threads"][precision]
                for i in range(len(SIZES)):
                    for mine in ["p"] + list(states):
                        a = params[i] if mine == "p" else opt.state(i, mine)
                        b = other_params[i] if mine == "p" \
                            else other.state(i, mine)
                        if a.tobytes() != b.tobytes():
                            ok = False
                            worst.where = "%s[%d] differs with %d threads" \
                                % (mine, i, THREADS_CHECK)
            failed += not ok
            print("%s %s %-9s max rel err %.2e; worst error %.3f of the "
                  "tolerance%s%s"
                  % ("PASS" if ok else "FAIL", precision, name, worst.rel,
                     worst.ratio,
                     "; drift from float64 %.3g ulps" % drift.ulps
                     if precision == "f32" else "",
                     "" if ok else "; at " + worst.where))
    return len(runs) * len(precisions) - failed, failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", required=True,
                        help="the examples/ directory")
    parser.add_argument("--literature", required=True,
                        help="test/Run/Inputs/literature.optim")
    parser.add_argument("--library", help="liboptim.so (else $OPTIM_LIBRARY)")
    parser.add_argument("--precision", choices=("f32", "f64", "both"),
                        default="both")
    parser.add_argument("--rule", action="append",
                        help="check only this rule (repeatable)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--shard", default="0/1", metavar="K/N",
                        help="check only the K-th of N interleaved parts of "
                        "the rules (0-based), so that lit runs the parts in "
                        "parallel")
    parser.add_argument("--kernel-hyper", action="append", default=[],
                        metavar="NAME=VALUE",
                        help="set a hyperparameter of the kernel only, not "
                        "of the reference (shows that a wrong rule fails)")
    args = parser.parse_args()
    optim_mlir.load(args.library)
    shard, _, shards = args.shard.partition("/")
    if not (shard.isdigit() and shards.isdigit()
            and int(shard) < int(shards)):
        parser.error("--shard %s: expected K/N with 0 <= K < N" % args.shard)
    shard, shards = int(shard), int(shards)
    cases = [c for i, c in enumerate(CASES)
             if (not args.rule or c[0] in args.rule) and i % shards == shard]
    unknown = set(args.rule or ()) - {c[0] for c in CASES}
    if unknown:
        parser.error("no reference for rule(s) %s" % ", ".join(sorted(
            unknown)))
    kernel_hyper = {}
    for item in args.kernel_hyper:
        name, _, value = item.partition("=")
        if not any(name in c[3] for c in cases):
            parser.error("--kernel-hyper %s: no rule checked has it" % name)
        kernel_hyper[name] = float(value)
    paths = {EX: args.examples, LIT: args.literature}
    precisions = [p for p in ("f32", "f64") if args.precision in (p, "both")]
    print("numpy %s; %d rules, %d steps, sizes %s"
          % (np.__version__, len(cases), args.steps,
             ", ".join(map(str, SIZES))))
    start = time.time()
    passed, failed = run(cases, paths, precisions, args.steps, kernel_hyper)
    if not args.rule:
        for name in unreferenced_rules(paths):
            print("FAIL %s: no reference here" % name)
            failed += 1
    print("# %.1fs" % (time.time() - start))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
