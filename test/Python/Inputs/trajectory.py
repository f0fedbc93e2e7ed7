#!/usr/bin/env python3
"""The reverse mode from Python (optim_mlir.Trajectory over the C API's
optim_trajectory_*) against central differences, in float64.

Each case runs STEPS steps whose gradients g_k are fixed in advance (the
rule sees them as constants, exactly as the reverse mode assumes), and the
loss is L = sum_k c_k . theta_{k+1} with fixed random c_k. L is then a
smooth function of the hyperparameters, the learned weights and theta_0, and
its central differences (step h = 1e-6 relative, forward runs through
optim_mlir.Optimizer) are the reference for backward()'s dL/dhyper,
dL/dweights (a sample of entries) and dL/dtheta_0:

    |backward - difference| <= 1e-6 * (|difference| + scale)

with scale the largest |difference| of that quantity (truncation error
O(h^2) and rounding O(eps / h) are both below 1e-8 of it here). Cases:
Adam (lr, beta1, beta2, eps), a learned rule whose LSTM reads a vector
literal of features (test/Learned/Inputs/features.optim), on three
parameters of 1, 7 and 40 coordinates. The gradients do not depend on the
number of threads (bit for bit), and wrong calls raise with the C API's
status.

With --shift (a check that the comparison can fail), backward() gets the
dL/dtheta of each step one step late.

Usage: trajectory.py LIBOPTIM EXAMPLES_DIR LEARNED_INPUTS_DIR [--shift]"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

library, examples, learned = sys.argv[1:4]
SHIFT = "--shift" in sys.argv[4:]
optim_mlir.load(library)
SIZES = (1, 7, 40)
STEPS = 6
failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAILED:", what)


def run_loss(rule, theta0, hypers, weights, grads, cs):
    """L for the given values, through an Optimizer (the forward only)."""
    params = [t.copy() for t in theta0]
    opt = optim_mlir.Optimizer(rule, params, threads=1)
    for name, value in hypers.items():
        opt.set(name, value)
    for name, w in weights.items():
        opt.set_weights(name, w)
    total = 0.0
    for k in range(STEPS):
        opt.step(grads[k])
        total += sum(float(np.dot(c, p)) for c, p in zip(cs[k], opt.params))
    return total


def compare(name, got, want):
    got, want = np.asarray(got, float), np.asarray(want, float)
    scale = np.max(np.abs(want)) if want.size else 0.0
    err = np.max(np.abs(got - want) / (np.abs(want) + scale + 1e-300))
    check(err <= 1e-6, "%s: worst relative error %.3g (got %s, want %s)"
          % (name, err, got.ravel()[:4], want.ravel()[:4]))
    return err


def case(label, rule, hypers, weights, rng):
    theta0 = [rng.standard_normal(n) for n in SIZES]
    grads = [[rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 0, n)
              for n in SIZES] for _ in range(STEPS)]
    cs = [[rng.standard_normal(n) for n in SIZES] for _ in range(STEPS)]
    results = []
    for threads in (1, 2):
        traj = optim_mlir.Trajectory(rule, SIZES, threads=threads)
        for i, t in enumerate(theta0):
            traj.set_param(i, t)
        for name, value in hypers.items():
            traj.set(name, value)
        for name, w in weights.items():
            traj.set_weights(name, w)
        for k in range(STEPS):
            traj.step(grads[k])
        check(traj.tape_length == STEPS and traj.step_count == STEPS,
              "%s: tape %d, steps %d" % (label, traj.tape_length,
                                         traj.step_count))
        got = traj.backward([[None] * len(SIZES)] + cs[:-1] if SHIFT
                            else cs)
        got["theta0"] = [traj.param_adjoint(i) for i in range(len(SIZES))]
        results.append(got)
    worst = 0.0
    for name, value in hypers.items():
        h = 1e-6 * max(abs(value), 1e-3)
        up = run_loss(rule, theta0, dict(hypers, **{name: value + h}),
                      weights, grads, cs)
        down = run_loss(rule, theta0, dict(hypers, **{name: value - h}),
                        weights, grads, cs)
        worst = max(worst, compare("%s dL/d%s" % (label, name),
                                   results[0]["hypers"][name],
                                   (up - down) / (2 * h)))
    for name, w in weights.items():
        flat = w.reshape(-1)
        idx = rng.choice(flat.size, size=min(12, flat.size), replace=False)
        fd = []
        for j in idx:
            h = 1e-6
            wp, wm = flat.copy(), flat.copy()
            wp[j] += h
            wm[j] -= h
            up = run_loss(rule, theta0, hypers,
                          dict(weights, **{name: wp.reshape(w.shape)}),
                          grads, cs)
            down = run_loss(rule, theta0, hypers,
                            dict(weights, **{name: wm.reshape(w.shape)}),
                            grads, cs)
            fd.append((up - down) / (2 * h))
        worst = max(worst, compare("%s dL/d%s" % (label, name),
                                   results[0]["weights"][name].reshape(-1)[idx],
                                   np.array(fd)))
    for i, n in enumerate(SIZES):
        fd = []
        for j in range(min(n, 5)):
            h = 1e-6
            tp = [t.copy() for t in theta0]
            tm = [t.copy() for t in theta0]
            tp[i][j] += h
            tm[i][j] -= h
            fd.append((run_loss(rule, tp, hypers, weights, grads, cs) -
                       run_loss(rule, tm, hypers, weights, grads, cs)) /
                      (2 * h))
        worst = max(worst, compare("%s dL/dtheta0[%d]" % (label, i),
                                   results[0]["theta0"][i][:len(fd)],
                                   np.array(fd)))
    same = all(np.array_equal(results[0]["hypers"][k], results[1]["hypers"][k])
               for k in hypers) and all(
        np.array_equal(results[0]["weights"][k], results[1]["weights"][k])
        for k in weights)
    check(same, "%s: 1 and 2 threads differ" % label)
    print("%s: worst %.2g of the tolerance, threads 1 and 2 %s"
          % (label, worst / 1e-6, "identical" if same else "DIFFER"))


rng = np.random.default_rng(5)
adam = optim_mlir.compile_file(os.path.join(examples, "adam.optim"), f64=True,
                               reverse=True)
case("adam", adam, {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-3},
     {}, rng)
features = optim_mlir.compile_file(os.path.join(learned, "features.optim"),
                                   f64=True, reverse=True)
weights = {name: rng.standard_normal(shape) * 0.5
           for name, shape in features.weights.items()}
case("features", features, {"scale": 0.3, "beta": 0.6}, weights, rng)


def raises(fn, status, needle, what):
    try:
        fn()
    except optim_mlir.OptimError as e:
        check(e.status_name == status and needle in e.message,
              "%s: got %s %r" % (what, e.status_name, e.message))
        return
    except (TypeError, ValueError) as e:
        check(status is None and needle in str(e),
              "%s: got %r" % (what, e))
        return
    check(False, "%s: no error" % what)


plain = optim_mlir.compile_file(os.path.join(examples, "adam.optim"),
                                f64=True)
raises(lambda: optim_mlir.Trajectory(plain, [3]),
       "OPTIM_ERROR_INVALID_ARGUMENT", "without its reverse mode",
       "a rule without reverse mode")
traj = optim_mlir.Trajectory(features, [3])
raises(lambda: traj.backward([]), "OPTIM_ERROR_INVALID_ARGUMENT",
       "no step is recorded", "backward before any step")
raises(lambda: traj.step([np.zeros(3)]), "OPTIM_ERROR_INVALID_ARGUMENT",
       "weights", "a step before the weights are set")
for name, w in weights.items():
    traj.set_weights(name, w)
traj.step([np.ones(3)])
raises(lambda: traj.set_weights("cell", weights["cell"]),
       "OPTIM_ERROR_INVALID_ARGUMENT", "", "weights changed with steps recorded")
raises(lambda: traj.step([np.ones(4)]), "OPTIM_ERROR_INVALID_ARGUMENT",
       "has 4 elements, parameter 0 has 3", "a gradient of the wrong size")
raises(lambda: traj.step([np.ones(3), np.ones(3)]),
       "OPTIM_ERROR_INVALID_ARGUMENT", "2 gradients for 1 parameters",
       "too many gradients")
raises(lambda: traj.backward([[None], [None]]), "OPTIM_ERROR_INVALID_ARGUMENT",
       "give tape_length * num_params = 1", "dl_dparams of the wrong length")
raises(lambda: traj.set("nope", 1.0), "OPTIM_ERROR_NOT_FOUND",
       "no hyperparameter 'nope'", "an unknown hyperparameter")
raises(lambda: traj.step([np.ones(3, np.float32)]), None, "dtype",
       "a float32 gradient for a float64 rule")
check(traj.tape_length == 1, "refused steps recorded nothing")
# θ and the states change only while no step is recorded: a set_param
# between recorded steps gave a wrong hypergradient.
raises(lambda: traj.set_param(0, np.zeros(3)), None,
       "only while no step is recorded", "set_param with steps recorded")
raises(lambda: traj.set_state(0, "m", 0.5), None,
       "only while no step is recorded", "set_state with steps recorded")
raises(lambda: traj.param(7), "OPTIM_ERROR_NOT_FOUND", "",
       "a parameter that does not exist")
raises(lambda: optim_mlir.Trajectory("adam", [3]), None,
       "rule must be an optim_mlir.Rule", "a rule given by name")
raises(lambda: optim_mlir.Trajectory(adam, [2**40]),
       "OPTIM_ERROR_OUT_OF_MEMORY", "out of memory allocating",
       "a trajectory larger than memory")
g = traj.backward([[np.ones(3)]])
check(set(g["weights"]) == set(features.weights) and
      g["weights"]["cell"].shape == features.weights["cell"],
      "weights gradients by name, in their shapes")
traj.truncate()
check(traj.tape_length == 0 and traj.step_count == 1, "truncate")
raises(lambda: traj.set_weights("head", np.full(6, np.nan)),
       "OPTIM_ERROR_INVALID_ARGUMENT", "non-finite value (nan)",
       "NaN learned weights")
raises(lambda: traj.set_param(0, None), None, "must be real numbers",
       "set_param(None)")
raises(lambda: traj.set_param(0, ["1", "2", "3"]), None,
       "must be real numbers", "set_param of strings")
raises(lambda: traj.set_param(0, np.ones(3) * 1j), None,
       "must be real numbers", "set_param of complex numbers")
raises(lambda: traj.set_param(0, np.ones(4)), None,
       "parameter 0 has 3 elements, got 4", "set_param of the wrong size")
traj.set_param(0, [1, 2, 3])
traj.set_state(0, "m", [0.5, 0.25, 0.125])
check(np.array_equal(traj.param(0), [1, 2, 3]) and
      np.array_equal(traj.state(0, "m"), [0.5, 0.25, 0.125]),
      "set_param and set_state after truncate")
sophia = optim_mlir.compile_source(
    "rule s(lr = 0.1) {\n  input h\n  p -= lr * g * h\n}\n", f64=True,
    reverse=True)
raises(lambda: optim_mlir.Trajectory(sophia, [2]).step([np.ones(2)]), None,
       "takes the per-coordinate input 'h'", "a rule with inputs, none given")
# Row and column states are shaped as Optimizer.state's.
ada = optim_mlir.compile_file(os.path.join(examples, "adafactor.optim"),
                              f64=True, reverse=True)
row = [n for n, a in zip(ada.states, ada.state_axes) if a == "row"]
if row:
    shaped = optim_mlir.Trajectory(ada, [(2, 3, 4)])
    check(shaped.state(0, row[0]).shape == (2, 3),
          "a row state of a (2, 3, 4) parameter is (2, 3), got %s"
          % (shaped.state(0, row[0]).shape,))
traj.reset_state()
check(traj.step_count == 0, "reset_state")
print("trajectory: %d checks, %d failures" % (checks, len(failures)))
sys.exit(1 if failures else 0)
