//===- hypergradient.cpp - learn a rule's learning rate by its gradient ---===//
//
// Hypergradient descent on the learning rate (Maclaurin et al., 2015; Baydin
// et al., 2018): the reverse mode that meta-trains learned rules,
// optim::Trajectory, also gives dL/dlr for any rule compiled with
// CompileOptions::vjp, where L = sum_{t=1..T} f(θ_t) over T steps of the
// rule. Each meta-iteration restarts from the same θ0, runs T steps, takes
// dL/dlr from backward() and moves log lr against it.
//
// The optimizee is this program's own: f(θ) = 1/2 |A θ - b|^2, θ split into
// two tensors of different sizes (per-tensor reductions such as LAMB's trust
// ratio see two different norms), A random with column scales spanning two
// decades (ill-conditioned). Only the public headers below are used.
//
// backward() takes the gradients fed to the rule as constants (second
// derivatives of f dropped, as in meta-training): dL/dlr is that of the L
// with ∇f(θ_t) frozen, which the check below verifies, next to the true
// derivative. The two agree at small lr; near the best lr, or with
// momentum over long horizons, they may not.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Trajectory.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#ifndef OPTIM_EXAMPLES_DIR
#define OPTIM_EXAMPLES_DIR "examples"
#endif

namespace {

const char *const Usage =
    "usage: hypergradient [RULE.optim] [options]\n"
    "Learns the learning rate `lr` of a rule (default: examples/lamb.optim)\n"
    "by hypergradient descent on L = sum_t f(theta_t), f a least-squares\n"
    "problem over two tensors (40 and 8 values).\n"
    "  --rule NAME     the rule of a file with several\n"
    "  --iters N       meta-iterations (default 40)\n"
    "  --steps T       steps of the rule per meta-iteration (default 50)\n"
    "  --lr LR         initial learning rate (default: the rule's)\n"
    "  --meta-lr ETA   step in log lr per unit of dlogL/dlog lr (default 1)\n"
    "  --seed S        seed of A, b, theta0 and the rule's random numbers\n"
    "                  (default 1)\n"
    "  --help          this text\n";

[[noreturn]] void fail(const std::string &message) {
  std::fflush(stdout);
  // The compiler's diagnostics ("file:line:col: error: ...") name their
  // place themselves: a prefix would say "error" twice.
  if (message.find(": error: ") != std::string::npos)
    std::fprintf(stderr, "%s\n", message.c_str());
  else
    std::fprintf(stderr, "hypergradient: error: %s\n", message.c_str());
  std::exit(1);
}

/// A number in [lo, hi] (an integer if `integer`), the whole argument, or
/// an error naming the option.
double parseNumber(const std::string &option, const std::string &text,
                   double lo, double hi, bool integer = false) {
  char *end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= lo && value <= hi) ||
      (integer && value != std::floor(value))) {
    char range[64];
    std::snprintf(range, sizeof(range), "[%g, %g]", lo, hi);
    fail(option + " expects " + (integer ? "an integer" : "a number") +
         " in " + range + ", got '" + text + "'");
  }
  return value;
}

/// f(θ) = 1/2 |A θ - b|^2 over the concatenation θ = (θ_0, θ_1).
struct Problem {
  int64_t rows = 64;
  int64_t sizes[2] = {40, 8};
  std::vector<double> a, b; // A row-major, rows x cols
  int64_t cols() const { return sizes[0] + sizes[1]; }

  /// f(θ), and ∇f(θ) = Aᵀ (A θ - b) into `grad`.
  double eval(const double *theta, double *grad) const {
    std::fill(grad, grad + cols(), 0.0);
    double f = 0;
    for (int64_t i = 0; i < rows; ++i) {
      const double *row = &a[i * cols()];
      double r = -b[i];
      for (int64_t j = 0; j < cols(); ++j)
        r += row[j] * theta[j];
      f += 0.5 * r * r;
      for (int64_t j = 0; j < cols(); ++j)
        grad[j] += r * row[j];
    }
    return f;
  }
};

/// Uniform in [-1, 1). mt19937_64's output is fixed by the standard, unlike
/// std::*_distribution's: the same problem on every standard library.
double uniform(std::mt19937_64 &rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-52 - 1.0;
}

/// A random A with column scales from 1 down to 1e-2, b = A θ* (min f = 0,
/// so L measures how far T steps get, not a floor), and a random θ0.
Problem makeProblem(uint64_t seed, std::vector<double> &theta0) {
  Problem prob;
  std::mt19937_64 rng(seed);
  int64_t n = prob.cols();
  std::vector<double> thetaStar(n);
  for (int64_t i = 0; i < prob.rows * n; ++i)
    prob.a.push_back(uniform(rng) * std::pow(10.0, -2.0 * (i % n) / (n - 1)));
  for (double &v : thetaStar)
    v = uniform(rng);
  theta0.resize(n);
  for (double &v : theta0)
    v = uniform(rng);
  prob.b.assign(prob.rows, 0.0);
  for (int64_t i = 0; i < prob.rows; ++i)
    for (int64_t j = 0; j < n; ++j)
      prob.b[i] += prob.a[i * n + j] * thetaStar[j];
  return prob;
}

/// Restarts from θ0 and the rule's initial state, runs grads.size() - 1
/// steps recording them, and returns L = sum_{t=1..T} f(θ_t). grads[t] is
/// ∇f(θ_t): the gradient step t+1 sees and dL/dθ_t for backward(). With
/// `replay`, the steps see the gradients already in `grads` instead: the L
/// that backward() differentiates, which takes the gradients fed to the
/// rule as constants (second derivatives of f dropped).
double runEpisode(optim::Trajectory &traj, const Problem &prob,
                  const std::vector<double> &theta0,
                  std::vector<std::vector<double>> &grads, bool replay) {
  traj.resetState();
  int64_t n0 = prob.sizes[0];
  auto *p0 = static_cast<double *>(traj.param(0));
  auto *p1 = static_cast<double *>(traj.param(1));
  std::copy(theta0.begin(), theta0.begin() + n0, p0);
  std::copy(theta0.begin() + n0, theta0.end(), p1);
  std::vector<double> theta = theta0, scratch(theta0.size());
  if (!replay)
    prob.eval(theta.data(), grads[0].data());
  double loss = 0;
  for (size_t t = 0; t + 1 < grads.size(); ++t) {
    traj.step({grads[t].data(), grads[t].data() + n0});
    std::copy(p0, p0 + n0, theta.begin());
    std::copy(p1, p1 + prob.sizes[1], theta.begin() + n0);
    loss += prob.eval(theta.data(),
                      replay ? scratch.data() : grads[t + 1].data());
  }
  return loss;
}

} // namespace

int main(int argc, char **argv) {
  std::string path = OPTIM_EXAMPLES_DIR "/lamb.optim", ruleName;
  int iters = 40, steps = 50;
  double lr = NAN, metaLR = 1;
  uint64_t seed = 1;
  bool havePath = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "--help" || arg == "-h") {
      std::fputs(Usage, stdout);
      return 0;
    }
    if (arg.rfind("--", 0) != 0) {
      if (havePath)
        fail("one rule file expected, got '" + path + "' and '" + arg + "'");
      path = arg;
      havePath = true;
      continue;
    }
    // --key=value or --key value.
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    }
    static const char *const valued[] = {"--rule", "--iters", "--steps",
                                         "--lr",   "--meta-lr", "--seed"};
    if (std::find(std::begin(valued), std::end(valued), arg) ==
        std::end(valued))
      fail("unknown option '" + arg + "' (see --help)");
    if (eq == std::string::npos) {
      if (i + 1 == argc)
        fail(arg + " expects a value");
      value = argv[++i];
    }
    if (arg == "--rule")
      ruleName = value;
    else if (arg == "--iters")
      iters = static_cast<int>(parseNumber(arg, value, 1, 1e6, true));
    else if (arg == "--steps")
      steps = static_cast<int>(parseNumber(arg, value, 1, 1e5, true));
    else if (arg == "--lr")
      lr = parseNumber(arg, value, 1e-300, 1e300);
    else if (arg == "--meta-lr")
      metaLR = parseNumber(arg, value, 0, 1e6);
    else
      seed = static_cast<uint64_t>(parseNumber(arg, value, 0, 1e15, true));
  }

  try {
    // f64: the check against finite differences below divides differences
    // of L by 2h; in f32 rounding would swamp them. The problem is tiny, so
    // the precision costs nothing here.
    optim::CompileOptions options;
    options.precision = optim::DType::F64;
    options.vjp = true;
    optim::Rule rule = optim::Compiler(options).compileFile(
        path, optim::Target::cpu(), ruleName);
    const optim::RuleInfo &info = rule.info();
    int lrIndex = info.findHyper("lr");
    if (lrIndex < 0 || info.hypers[lrIndex].isConst)
      fail("rule '" + info.name + "' has no runtime hyperparameter 'lr'");
    if (!info.weights.empty())
      fail("rule '" + info.name + "' has learned weights; this example "
           "learns hyperparameters of update rules only");
    // optim::Trajectory::step(grads, inputs) takes them, but the problem
    // below has nothing to give them (a Hessian estimate, noise, ...).
    if (!info.inputs.empty())
      fail("rule '" + info.name + "' takes per-coordinate inputs besides "
           "the gradient, which this example's least-squares problem does "
           "not supply");
    if (std::isnan(lr))
      lr = info.hypers[lrIndex].defaultValue;

    std::vector<double> theta0;
    Problem prob = makeProblem(seed, theta0);
    int64_t n = prob.cols();
    // A rule that draws random numbers draws them from the same seed.
    optim::TrajectoryOptions trajOptions;
    trajOptions.seed = seed;
    // θ_0 as an 8 x 5 matrix, θ_1 as a vector: what rows() and cols() read.
    trajOptions.shapes = {{8, 5}, {prob.sizes[1]}};
    optim::Trajectory traj(rule, {prob.sizes[0], prob.sizes[1]}, trajOptions);
    std::vector<std::vector<double>> grads(steps + 1,
                                           std::vector<double>(n));
    std::vector<std::vector<const void *>> dLdTheta(steps);
    for (int t = 0; t < steps; ++t)
      dLdTheta[t] = {grads[t + 1].data(), grads[t + 1].data() + prob.sizes[0]};

    std::printf("rule %s, f64, tensors of %lld and %lld, %d steps per "
                "meta-iteration\n",
                info.name.c_str(), (long long)prob.sizes[0],
                (long long)prob.sizes[1], steps);
    double lr0 = lr, firstL = 0, loss = 0;
    for (int iter = 0; iter <= iters; ++iter) {
      traj.set("lr", lr);
      loss = runEpisode(traj, prob, theta0, grads, /*replay=*/false);
      if (iter == iters)
        break; // L at the learned lr, for the summary
      double dLdlr = traj.backward(dLdTheta).hypers[lrIndex];
      if (!std::isfinite(loss) || !std::isfinite(dLdlr)) {
        char text[128];
        std::snprintf(text, sizeof(text),
                      "L or dL/dlr is not finite at lr %g: the rule "
                      "diverges; start from a smaller --lr",
                      lr);
        fail(text);
      }
      std::printf("iter %3d  lr %.6e  L %.6e  dL/dlr %.6e\n", iter, lr, loss,
                  dLdlr);
      if (iter == 0) {
        firstL = loss;
        // The check that makes this a test: backward() against central
        // differences of the L it differentiates (gradients replayed), and
        // of the true L (gradients recomputed along the perturbed path),
        // whose difference is what dropping second derivatives costs.
        auto centralDifference = [&](bool replay) {
          double h = 1e-5 * lr;
          traj.set("lr", lr + h);
          double plus = runEpisode(traj, prob, theta0, grads, replay);
          traj.set("lr", lr - h);
          return (plus - runEpisode(traj, prob, theta0, grads, replay)) /
                 (2 * h);
        };
        double fd = centralDifference(true), trueFD = centralDifference(false);
        std::printf("check: dL/dlr %.9e, central difference %.9e, relative "
                    "error %.2e\n",
                    dLdlr, fd, std::fabs(dLdlr - fd) / std::fabs(fd));
        std::printf("true L (gradients recomputed): central difference "
                    "%.9e\n",
                    trueFD);
        if (trueFD * fd < 0)
          std::printf("warning: the true dL/dlr has the other sign: over "
                      "this horizon the first-order\nhypergradient "
                      "misleads, and the learned lr may make L worse\n");
      }
      // d log L / d log lr = lr dL/dlr / L: a step that does not depend on
      // the scale of f. Clamped to a factor e^0.5: larger steps cycle around
      // the optimum, where L is steep in log lr.
      double step = metaLR * lr * dLdlr / loss;
      lr *= std::exp(-std::clamp(step, -0.5, 0.5));
    }
    std::printf("final: lr %.6e (from %.6e), L %.6e (from %.6e, ratio %.4f)\n",
                lr, lr0, loss, firstL, loss / firstL);
  } catch (const optim::Error &e) {
    fail(e.what());
  }
  return 0;
}
