#!/usr/bin/env python3
"""Oracle test: rules with per-coordinate inputs against numpy (liboptim.so).

Rules that declare `input NAME` read one host-computed tensor per parameter
and input at every step, besides the gradients (KernelABI.h, version 7).
This runs two of them end to end, compiled by the JIT and stepped through
the ctypes binding (python/optim_mlir.py, Optimizer.step(grads, inputs=...)),
against numpy references written from the papers:

- Sophia (Liu et al., 2023, Algorithm 3 without weight decay), h the host's
  estimate of the Hessian's diagonal:
      m = b1 m + (1 - b1) g;  hh = b2 hh + (1 - b2) h;
      p -= lr * clip(m / max(rho * hh, eps), -1, 1)
  with h drawn so that rho * hh falls below eps on some coordinates (h of
  both signs, as a Gauss-Newton-Bartlett estimate may be) and m / (rho hh)
  beyond +-1 on others: both the max and the clip bite.
- SGLD (Welling and Teh, 2011), the host's standard normal noise:
      p -= lr / 2 * g + sqrt(lr) * noise
- pair, two inputs given in the other order than declared (the binding
  passes them by name; the chunk table has them in declaration order):
      p -= lr * (a * g - b)

STEPS (200) steps over tensors of 0, 1, 7, 1000 and 33001 coordinates (two
chunks of the CPU executor), every hyperparameter set away from its
default, in float32 and float64; each precision's kernel against the
reference in that precision (float32: every hyperparameter and literal
rounded to float32, arithmetic in float32). Tolerance, per tensor and
quantity (parameters and every state), as rule_oracle.py:

    |ours - reference| <= rtol * |reference| + atol,
    atol = 16 * eps(P) * max|reference's values in that tensor|,

rtol 1e-5 in float32, 1e-12 in float64: the two compute the same formulas
in the same precision but need not round identically (a fused or reordered
operation is a few ulps, 200 steps accumulate them). A wrong rule is far
outside (--kernel-hyper changes a hyperparameter of the kernel only; the lit
test checks that such a run fails). Each rule also runs with 3 threads,
which must give the same bits as 1.

The misuse of the inputs through the binding is checked too: step() without
the inputs, an unknown, missing or extra name, arrays of the wrong count,
size or dtype all raise, naming the problem, and change nothing.

Usage: input_oracle.py --library build/lib/liboptim.so [--steps N]
                       [--kernel-hyper RULE:NAME=VALUE]
"""

import argparse
import os
import sys

import numpy as np

SOURCE = """
rule sophia(lr = 0.01, beta1 = 0.965, beta2 = 0.99, rho = 0.04, eps = 1e-3) {
  input h
  state m = 0, hh = 0
  m = beta1 * m + (1 - beta1) * g
  hh = beta2 * hh + (1 - beta2) * h
  p -= lr * clamp(m / max(rho * hh, eps), -1, 1)
}

rule sgld(lr = 1e-3) {
  input noise
  p -= lr / 2 * g + sqrt(lr) * noise
}

rule pair(lr = 0.1) {
  input a
  input b
  p -= lr * (a * g - b)
}
"""

SIZES = [0, 1, 7, 1000, 33001]

# Away from the defaults.
HYPERS = {
    "sophia": {"lr": 0.02, "beta1": 0.9, "beta2": 0.95, "rho": 0.05,
               "eps": 2e-3},
    "sgld": {"lr": 3e-4},
    "pair": {"lr": 0.05},
}
INPUTS = {"sophia": ["h"], "sgld": ["noise"], "pair": ["a", "b"]}
STATES = {"sophia": ["m", "hh"], "sgld": [], "pair": []}


def sophia_ref(dt, h, p, g, inp, st):
    c = {k: dt(v) for k, v in h.items()}
    one = dt(1)
    st["m"] = c["beta1"] * st["m"] + (one - c["beta1"]) * g
    st["hh"] = c["beta2"] * st["hh"] + (one - c["beta2"]) * inp["h"]
    den = np.maximum(c["rho"] * st["hh"], c["eps"])
    return p - c["lr"] * np.clip(st["m"] / den, dt(-1), dt(1))


def sgld_ref(dt, h, p, g, inp, st):
    lr = dt(h["lr"])
    return p - (lr / dt(2) * g + np.sqrt(lr) * inp["noise"])


def pair_ref(dt, h, p, g, inp, st):
    return p - dt(h["lr"]) * (inp["a"] * g - inp["b"])


REFS = {"sophia": sophia_ref, "sgld": sgld_ref, "pair": pair_ref}


def data(rule, steps, seed):
    """Parameters, then per step the gradients and the inputs, per tensor:
    values representable in float32, so both precisions see the same."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)
    params = [f32(rng.normal(size=n)) for n in SIZES]
    scale = [f32(10.0 ** rng.uniform(-3, 1, size=n)) for n in SIZES]
    run = []
    for _ in range(steps):
        grads = [f32(rng.normal(size=n) * s) for n, s in zip(SIZES, scale)]
        inputs = {}
        for name in INPUTS[rule]:
            if name == "h":
                # Mostly positive curvature of varied size, some negative.
                x = [f32(np.abs(rng.normal(size=n)) * 10.0 **
                         rng.uniform(-4, 1, size=n) *
                         np.where(rng.uniform(size=n) < 0.1, -1, 1))
                     for n in SIZES]
            else:
                x = [f32(rng.normal(size=n)) for n in SIZES]
            inputs[name] = x
        run.append((grads, inputs))
    return params, run


def run_kernel(om, rule_obj, rule, params, run, dtype, threads, hypers):
    ps = [p.astype(dtype) for p in params]
    opt = om.Optimizer(rule_obj, ps, threads=threads)
    for k, v in hypers.items():
        opt.set(k, v)
    names = list(reversed(INPUTS[rule]))  # not the declaration order
    for grads, inputs in run:
        g = [x.astype(dtype) for x in grads]
        inp = {n: [x.astype(dtype) for x in inputs[n]] for n in names}
        if not opt.step(g, inputs=inp):
            raise AssertionError("step skipped")
    states = {s: [opt.state(i, s) for i in range(len(ps))]
              for s in STATES[rule]}
    return ps, states, opt.step_count


def run_ref(rule, params, run, dtype, hypers):
    dt = np.dtype(dtype).type
    ps = [p.astype(dtype) for p in params]
    st = [{s: np.zeros(p.size, dtype) for s in STATES[rule]} for p in ps]
    for grads, inputs in run:
        for i in range(len(ps)):
            inp = {n: inputs[n][i].astype(dtype) for n in INPUTS[rule]}
            ps[i] = REFS[rule](dt, hypers, ps[i], grads[i].astype(dtype),
                               inp, st[i])
    states = {s: [st[i][s] for i in range(len(ps))] for s in STATES[rule]}
    return ps, states


def compare(got, want, dtype):
    """The worst |error| / tolerance over the tensors."""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    eps = np.finfo(dtype).eps
    worst = 0.0
    for a, b in zip(got, want):
        if b.size == 0:
            continue
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
            return float("inf")
        atol = 16 * eps * np.max(np.abs(b))
        tol = rtol * np.abs(b) + atol
        worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(tol,
                                                                   1e-300))))
    return worst


def check_misuse(om, failures):
    """Wrong calls raise, say what was wrong and change nothing."""
    rule = om.compile_source(SOURCE, rule="sophia", name="inputs.optim")
    p = [np.ones(3, np.float32), np.ones(2, np.float32)]
    before = [x.copy() for x in p]
    opt = om.Optimizer(rule, p)
    g = [np.ones(3, np.float32), np.ones(2, np.float32)]
    h = [np.ones(3, np.float32), np.ones(2, np.float32)]
    cases = [
        ("no inputs", lambda: opt.step(g), TypeError,
         "takes the per-coordinate input 'h' with every step"),
        ("unknown name", lambda: opt.step(g, inputs={"h": h, "x": h}),
         om.OptimError, "OPTIM_ERROR_NOT_FOUND"),
        ("missing", lambda: opt.step(g, inputs={}), om.OptimError,
         "needs its input 'h' with every step; it is missing"),
        ("count", lambda: opt.step(g, inputs={"h": h[:1]}), ValueError,
         "input 'h' has 1 arrays; expected 2"),
        ("size", lambda: opt.step(g, inputs={"h": [h[0], np.ones(
            3, np.float32)]}), om.OptimError,
         "input 'h' of parameter 1 has 3 elements but its parameter has 2"),
        ("dtype", lambda: opt.step(g, inputs={"h": [h[0], np.ones(
            2, np.float64)]}), TypeError, "has dtype float64"),
        ("not a list", lambda: opt.step(g, inputs={"h": h[0]}), TypeError,
         "must be a list of arrays"),
        ("not a dict", lambda: opt.step(g, inputs=[h]), TypeError,
         "inputs must be a dict"),
        ("on a parameter", lambda: opt.step(g, inputs={"h": [p[0], h[1]]}),
         om.OptimError, "overlaps parameter 0"),
    ]
    for what, call, exc, text in cases:
        try:
            call()
            failures.append("misuse %s: no error" % what)
        except exc as e:
            if text not in str(e):
                failures.append("misuse %s: %r lacks %r" % (what, str(e),
                                                            text))
        except Exception as e:  # noqa: BLE001 - reported, not raised
            failures.append("misuse %s: %s instead of %s: %s"
                            % (what, type(e).__name__, exc.__name__, e))
    if opt.step_count != 0 or any(not np.array_equal(a, b)
                                  for a, b in zip(p, before)):
        failures.append("misuse: a refused step changed something")
    if rule.inputs != ["h"]:
        failures.append("Rule.inputs is %r" % (rule.inputs,))
    # A rule without inputs takes none, and refuses a name.
    plain = om.compile_source(SOURCE.replace("input noise\n", "").replace(
        "sqrt(lr) * noise", "sqrt(lr)"), rule="sgld")
    q = [np.ones(2, np.float32)]
    opt2 = om.Optimizer(plain, q)
    opt2.step([np.ones(2, np.float32)], inputs={})
    try:
        opt2.step([np.ones(2, np.float32)], inputs={"h": [q[0].copy()]})
        failures.append("misuse: an input for a rule without inputs")
    except om.OptimError as e:
        if "has no input 'h' (it has none)" not in str(e):
            failures.append("misuse: %s" % e)
    if plain.inputs != [] or opt2.step_count != 1:
        failures.append("misuse: a rule without inputs")
    return len(cases) + 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--kernel-hyper", action="append", default=[],
                    help="RULE:NAME=VALUE, set on the kernel only")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "..", "..", "python"))
    import optim_mlir as om
    om.load(args.library)

    kernel_hypers = {r: dict(h) for r, h in HYPERS.items()}
    for spec in args.kernel_hyper:
        rule, rest = spec.split(":", 1)
        name, value = rest.split("=", 1)
        kernel_hypers[rule][name] = float(value)

    failures = []
    checks = check_misuse(om, failures)
    print("%d rules, %d steps, sizes %s" % (len(REFS), args.steps,
                                           " ".join(map(str, SIZES))))
    passed = failed = 0
    for seed, rule in enumerate(REFS):
        params, run = data(rule, args.steps, 100 + seed)
        for dtype, name in ((np.float32, "f32"), (np.float64, "f64")):
            compiled = om.compile_source(SOURCE, rule=rule,
                                         f64=dtype == np.float64)
            ok = compiled.inputs == INPUTS[rule]
            ps, states, count = run_kernel(om, compiled, rule, params, run,
                                           dtype, 1, kernel_hypers[rule])
            ps3, states3, _ = run_kernel(om, compiled, rule, params, run,
                                         dtype, 3, kernel_hypers[rule])
            same = all(np.array_equal(a, b) for a, b in zip(ps, ps3)) and all(
                np.array_equal(a, b) for s in states
                for a, b in zip(states[s], states3[s]))
            rps, rstates = run_ref(rule, params, run, dtype, HYPERS[rule])
            worst = compare(ps, rps, dtype)
            for s in states:
                worst = max(worst, compare(states[s], rstates[s], dtype))
            ok = ok and same and worst <= 1 and count == args.steps
            print("%s %s %s: worst %.3g of the tolerance, 3 threads %s"
                  % ("PASS" if ok else "FAIL", name, rule, worst,
                     "bit-identical" if same else "DIFFER"))
            if ok:
                passed += 1
            else:
                failed += 1
    for f in failures:
        print("FAIL", f)
    print("misuse: %d checks, %d failures" % (checks, len(failures)))
    print("%d passed, %d failed" % (passed, failed + len(failures)))
    return 0 if failed == 0 and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
