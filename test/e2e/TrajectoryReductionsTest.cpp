//===- TrajectoryReductionsTest.cpp - compiled reductions, reverse mode ---===//
//
// optim::Trajectory with rules that have tensor reductions, compiled with
// their reverse mode (the VJP kernels optim_vjp_reduced_kernel_ and
// optim_vjp_reductions_kernel_ around the runtime's combine, KernelABI.h):
// examples/lamb.optim, a rule with every kind of reduction, per tensor and
// global, and a learned rule with reductions (weights and vector states in
// the kernels' partials and chunk tables). The unrolled loss
// L = Σ_k c_k · θ_{k+1} over a few steps with gradients fixed in advance
// (the rule sees constants, exactly as backward assumes) is differentiated
// by central differences in every hyperparameter, weight, coordinate of θ0
// and of the initial state, with tensors of awkward sizes (1 included, and
// empty) in chunks that split them across SIMD lanes and tails. Then the
// whole backward of LAMB must be the same bit for bit on 1, 2 and 3
// threads, in f32 and f64, and so must that of a rule with nested
// reductions (levels 0 to 3), whose reverse mode runs the second kernel once
// per level.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"
#include "optim/Trajectory.h"

#include "SourceFiles.h"
#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace optim;
using testsource::readExample;
using testsource::readFile;

namespace {

Rule compileWithVJP(const std::string &source, DType precision) {
  CompileOptions options;
  options.precision = precision;
  options.vjp = true;
  options.useCache = false;
  return Compiler(options).compileSource(source, "reductions.optim");
}

using Hypers = std::vector<std::pair<std::string, double>>;

/// LAMB with eps large enough to matter, and decay rates that keep the
/// bias correction away from 0/0 in a few steps.
const Hypers kLambHypers = {{"lr", 0.05},
                            {"beta1", 0.8},
                            {"beta2", 0.9},
                            {"eps", 1e-3},
                            {"weight_decay", 0.1}};

/// Every kind of reduction, per tensor and global, of operands that go
/// through the state and the hyperparameters.
const char *kEveryKind = R"(
rule every(lr = 0.05, c = 0.1, beta = 0.8) {
  state m = 0
  m = beta * m + g
  let a = tensor_max(p * m)
  let b = global_max(c * g)
  let s = tensor_sum(m)
  let q = global_sum(p * p)
  let k = tensor_mean(c * g)
  let e = global_mean(m)
  let n = tensor_norm(m)
  let w = global_norm(p + m)
  let lo = tensor_min(p)
  let glo = global_min(m * g)
  p -= lr * (g * a + b + 0.1 * s + c * p * q + k + e + m / (n + 1) + p * w
             + g * g * lo + glo)
}
)";

/// Nested reductions (KernelABI.h version 9), levels 0 to 3, per tensor and
/// global, max and min among them: every level's operand depends on p, on
/// the state and on lower levels' results, so each pass of the reverse mode
/// sends cotangents to p, m and the levels below.
const char *kNested = R"(
rule deep(lr = 0.05, c = 0.3, beta = 0.8) {
  state m = 0
  m = beta * m + g
  let a = tensor_mean(p * m)
  let b = global_norm(p - c * a)
  let x = tensor_max(m * b + p)
  let n = global_min(c * m / (1 + b * b) + a)
  let y = global_sum(p * x - a * m + n * p)
  p -= lr * (m * a + p / (1 + b) + 0.1 * x * g + 0.01 * y + n)
}
)";
const Hypers kNestedHypers = {{"lr", 0.05}, {"c", 0.3}, {"beta", 0.8}};

/// Gradient standardization of a value that depends on p (level 1: the
/// standard deviation of the centered value).
const char *kStandardized = R"(
rule standardized(lr = 0.1, mu = 0.9, eps = 1e-3) {
  state buf = 0
  let d = g + 0.5 * p
  let c = d - tensor_mean(d)
  let sd = sqrt(tensor_mean(c * c))
  buf = mu * buf + c / (sd + eps)
  p -= lr * buf
}
)";

/// Steps from θ0 and the initial state with fixed gradients (and weights),
/// and the cotangents c_k.
template <typename T> struct Episode {
  const RuleInfo &info;
  std::vector<int64_t> sizes;
  int64_t chunkSize;
  Hypers hypers;
  std::vector<std::vector<T>> theta0, weights;       // [tensor], [weights]
  std::vector<std::vector<std::vector<T>>> state0;   // [state][tensor]
  std::vector<std::vector<std::vector<T>>> grads, c; // [step][tensor]

  Episode(const RuleInfo &info, Hypers hypers, std::vector<int64_t> sizesIn,
          int steps, int64_t chunk, unsigned seed)
      : info(info), sizes(std::move(sizesIn)), chunkSize(chunk),
        hypers(std::move(hypers)) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    auto random = [&](int64_t n, bool positive) {
      std::vector<T> v(n);
      for (T &x : v)
        x = T(positive ? 0.1 + std::fabs(u(rng)) : u(rng));
      return v;
    };
    for (int64_t n : sizes)
      theta0.push_back(random(n, false));
    // LAMB's v is positive, as the rule keeps it. Vector states are
    // component-major, s.size values per coordinate.
    for (const StateSpec &s : info.states) {
      state0.emplace_back();
      for (int64_t n : sizes)
        state0.back().push_back(random(n * s.size, s.name == "v"));
    }
    for (const WeightSpec &w : info.weights) {
      int64_t count = 1;
      for (int64_t d : w.shape)
        count *= d;
      weights.push_back(random(count, false));
    }
    grads.resize(steps);
    c.resize(steps);
    for (int k = 0; k < steps; ++k)
      for (int64_t n : sizes) {
        grads[k].push_back(random(n, false));
        c[k].push_back(random(n, false));
      }
  }

  double run(Trajectory &traj) const {
    // memcpy must not see an empty vector's data(), which may be null.
    auto copyIn = [](void *to, const std::vector<T> &from) {
      if (!from.empty())
        std::memcpy(to, from.data(), from.size() * sizeof(T));
    };
    for (size_t i = 0; i < sizes.size(); ++i) {
      copyIn(traj.param(i), theta0[i]);
      for (size_t s = 0; s < info.states.size(); ++s)
        copyIn(traj.state(i, info.states[s].name), state0[s][i]);
    }
    for (const auto &[name, value] : hypers)
      traj.set(name, value);
    for (size_t w = 0; w < weights.size(); ++w)
      traj.setWeights(info.weights[w].name, weights[w].data(),
                      int64_t(weights[w].size()));
    double loss = 0;
    for (size_t k = 0; k < grads.size(); ++k) {
      std::vector<const void *> g;
      for (const auto &x : grads[k])
        g.push_back(x.data());
      traj.step(g);
      for (size_t i = 0; i < sizes.size(); ++i) {
        const T *p = static_cast<const T *>(traj.param(i));
        for (int64_t j = 0; j < sizes[i]; ++j)
          loss += double(c[k][i][j]) * double(p[j]);
      }
    }
    return loss;
  }

  std::vector<std::vector<const void *>> cotangents() const {
    std::vector<std::vector<const void *>> out;
    for (const auto &step : c) {
      out.emplace_back();
      for (const auto &x : step)
        out.back().push_back(x.data());
    }
    return out;
  }
};

void checkAgainstFiniteDifferences(
    const std::string &source, const Hypers &hypers, size_t reductions,
    std::vector<int64_t> sizes = {13, 1, 0, 6}) {
  Rule rule = compileWithVJP(source, DType::F64);
  const RuleInfo &info = rule.info();
  ASSERT_TRUE(rule.hasVJP());
  ASSERT_EQ(info.reductions.size(), reductions);
  // 13 coordinates in chunks of 5 with 4 lanes: vector loops and scalar
  // tails, values combined over 3 chunks; a tensor of 1, an empty one.
  Episode<double> ep(info, hypers, std::move(sizes), 4, 5, 11);
  TrajectoryOptions options;
  options.threads = 2;
  options.chunkSize = ep.chunkSize;
  Trajectory traj(rule, ep.sizes, options);
  ep.run(traj);
  RuleGradient grad = traj.backward(ep.cotangents());

  auto loss = [&](const Episode<double> &e) {
    Trajectory fresh(rule, e.sizes, options);
    return e.run(fresh);
  };
  const double eps = 1e-6;
  auto central = [&](auto perturb) {
    Episode<double> up = ep, down = ep;
    perturb(up, eps);
    perturb(down, -eps);
    return (loss(up) - loss(down)) / (2 * eps);
  };
  auto near = [](double a, double n) {
    return std::fabs(a - n) <= 1e-6 * std::max(1.0, std::fabs(n));
  };
  for (size_t h = 0; h < ep.hypers.size(); ++h) {
    const std::string &name = ep.hypers[h].first;
    double numeric = central(
        [&](Episode<double> &e, double d) { e.hypers[h].second += d; });
    int at = info.findHyper(name);
    ASSERT_GE(at, 0) << name;
    EXPECT_TRUE(near(grad.hypers[at], numeric))
        << name << ": " << grad.hypers[at] << " vs " << numeric;
    EXPECT_GT(std::fabs(numeric), 1e-6) << name; // Not vacuous.
  }
  ASSERT_EQ(grad.weights.size(), info.weights.size());
  for (size_t w = 0; w < info.weights.size(); ++w) {
    double largest = 0;
    for (size_t k = 0; k < ep.weights[w].size(); ++k) {
      double numeric = central(
          [&](Episode<double> &e, double d) { e.weights[w][k] += d; });
      EXPECT_TRUE(near(grad.weights[w][k], numeric))
          << info.weights[w].name << "[" << k << "]: " << grad.weights[w][k]
          << " vs " << numeric;
      largest = std::max(largest, std::fabs(numeric));
    }
    EXPECT_GT(largest, 1e-3) << info.weights[w].name;
  }
  for (size_t i = 0; i < ep.sizes.size(); ++i) {
    const double *dp = static_cast<const double *>(traj.paramAdjoint(i));
    for (int64_t j = 0; j < ep.sizes[i]; ++j) {
      std::string at = "[" + std::to_string(i) + "][" + std::to_string(j) + "]";
      double numeric = central(
          [&](Episode<double> &e, double d) { e.theta0[i][j] += d; });
      EXPECT_TRUE(near(dp[j], numeric))
          << "theta0" << at << ": " << dp[j] << " vs " << numeric;
      for (size_t s = 0; s < info.states.size(); ++s) {
        const double *ds = static_cast<const double *>(
            traj.stateAdjoint(i, info.states[s].name));
        // Component q of coordinate j: at q * sizes[i] + j.
        for (int64_t q = 0; q < info.states[s].size; ++q) {
          size_t k = size_t(q * ep.sizes[i] + j);
          numeric = central(
              [&](Episode<double> &e, double d) { e.state0[s][i][k] += d; });
          EXPECT_TRUE(near(ds[k], numeric))
              << info.states[s].name << "0" << at << "." << q << ": "
              << ds[k] << " vs " << numeric;
        }
      }
    }
  }
}

TEST(TrajectoryReductions, LambMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(readExample("lamb"), kLambHypers, 2);
}

TEST(TrajectoryReductions, EveryKindMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(kEveryKind,
                                {{"lr", 0.05}, {"c", 0.1}, {"beta", 0.8}}, 10);
}

TEST(TrajectoryReductions, LearnedRuleMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(
      readFile(std::string(OPTIM_TEST_DIR) + "/Learned/Inputs/reduced.optim"),
      {{"scale", 0.3}}, 2);
}

TEST(TrajectoryReductions, NestedLevelsMatchUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(kNested, kNestedHypers, 5);
}

TEST(TrajectoryReductions, StandardizationMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(
      kStandardized, {{"lr", 0.1}, {"mu", 0.9}, {"eps", 1e-3}}, 2);
}

// LANS (test/Run/Inputs/literature.optim): level-1 trust ratios of values
// normalized by a level-0 norm of g.
TEST(TrajectoryReductions, LansMatchesUnrolledFiniteDifferences) {
  std::string literature =
      readFile(std::string(OPTIM_TEST_DIR) + "/Run/Inputs/literature.optim");
  size_t at = literature.find("rule lans(");
  ASSERT_NE(at, std::string::npos);
  std::string lans =
      literature.substr(at, literature.find("\n}\n", at) + 3 - at);
  checkAgainstFiniteDifferences(lans,
                                {{"lr", 0.05},
                                 {"beta1", 0.8},
                                 {"beta2", 0.9},
                                 {"eps", 1e-3},
                                 {"weight_decay", 0.1}},
                                4);
}

// The forward pass of a trajectory runs every level's stage: the step of
// kNested matches a transcription of the rule (levels computed in order)
// and, bit for bit, optim::Optimizer's, over several steps, in f64 and f32.
template <typename T> void expectNestedForwardLikeOptimizer(DType precision) {
  Rule rule = compileWithVJP(kNested, precision);
  std::vector<int64_t> sizes = {13, 1, 0, 6};
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<std::vector<T>> theta(sizes.size()), m(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t j = 0; j < sizes[i]; ++j) {
      theta[i].push_back(T(u(rng)));
      m[i].push_back(T(0));
    }
  std::vector<std::vector<T>> viaOptimizer = theta;
  TrajectoryOptions topt;
  topt.threads = 2;
  topt.chunkSize = 5;
  Trajectory traj(rule, sizes, topt);
  std::vector<Param> params;
  for (auto &x : viaOptimizer)
    params.emplace_back(x.data(), int64_t(x.size()));
  OptimizerOptions oopt;
  oopt.threads = 3;
  oopt.chunkSize = 5; // The partials depend on the chunks.
  Optimizer opt(rule, params, oopt);
  for (size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i])
      std::memcpy(traj.param(i), theta[i].data(), sizes[i] * sizeof(T));
  const double lr = 0.05, c = 0.3, beta = 0.8;
  for (int step = 0; step < 3; ++step) {
    std::vector<std::vector<T>> g(sizes.size());
    std::vector<const void *> gp;
    std::vector<Grad> grads;
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (int64_t j = 0; j < sizes[i]; ++j)
        g[i].push_back(T(u(rng)));
      gp.push_back(g[i].data());
      grads.emplace_back(g[i].data(), sizes[i]);
    }
    traj.step(gp);
    ASSERT_TRUE(opt.step(grads));
    // The reference, in double from the values of the step before.
    double b = 0, n = INFINITY, y = 0;
    std::vector<double> a(sizes.size(), 0.0), x(sizes.size(), -INFINITY);
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (int64_t j = 0; j < sizes[i]; ++j) {
        m[i][j] = T(beta * double(m[i][j]) + double(g[i][j]));
        a[i] += double(theta[i][j]) * double(m[i][j]);
      }
      a[i] /= double(std::max<int64_t>(sizes[i], 1));
    }
    for (size_t i = 0; i < sizes.size(); ++i)
      for (int64_t j = 0; j < sizes[i]; ++j)
        b += std::pow(double(theta[i][j]) - c * a[i], 2);
    b = std::sqrt(b);
    for (size_t i = 0; i < sizes.size(); ++i)
      for (int64_t j = 0; j < sizes[i]; ++j) {
        x[i] = std::max(x[i], double(m[i][j]) * b + double(theta[i][j]));
        n = std::min(n, c * double(m[i][j]) / (1 + b * b) + a[i]);
      }
    for (size_t i = 0; i < sizes.size(); ++i)
      for (int64_t j = 0; j < sizes[i]; ++j)
        y += double(theta[i][j]) * x[i] - a[i] * double(m[i][j]) +
             n * double(theta[i][j]);
    double tol = precision == DType::F64 ? 1e-13 : 1e-5;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const T *p = static_cast<const T *>(traj.param(i));
      for (int64_t j = 0; j < sizes[i]; ++j) {
        double th = double(theta[i][j]);
        double want =
            th - lr * (double(m[i][j]) * a[i] + th / (1 + b) +
                       0.1 * x[i] * double(g[i][j]) + 0.01 * y + n);
        EXPECT_NEAR(double(p[j]), want, tol * std::max(1.0, std::fabs(want)))
            << "step " << step << " [" << i << "][" << j << "]";
        EXPECT_EQ(0, std::memcmp(&p[j], &viaOptimizer[i][j], sizeof(T)))
            << "step " << step << " [" << i << "][" << j << "]: trajectory "
            << double(p[j]) << ", optimizer " << double(viaOptimizer[i][j]);
        theta[i][j] = p[j];
      }
    }
  }
}

TEST(TrajectoryReductions, NestedForwardIsTheOptimizersStep) {
  expectNestedForwardLikeOptimizer<double>(DType::F64);
  expectNestedForwardLikeOptimizer<float>(DType::F32);
}

// Outputs of the VJP kernels that are incoming cotangents themselves: a
// state assigned a reduced value passes its cotangent to the reduction
// (drho = ds'), and a rule that swaps p and a state passes each one's
// cotangent to the other (dp = dm', dm = dp'). The kernels overwrite the
// incoming cotangents with the outgoing ones; reading one after its buffer
// was overwritten made dL/dlr wrong in both (found by
// test/Robustness/random_rules.py).
TEST(TrajectoryReductions, StateAssignedAReducedValue) {
  checkAgainstFiniteDifferences(R"(
rule from_sum(lr = 0.1) {
  state s = 0
  let v = (0.5 + s) * lr
  s = tensor_sum(v)
  p -= v * p
}
)",
                                {{"lr", 0.1}}, 1);
}

TEST(TrajectoryReductions, CotangentsSwappedBetweenOutputs) {
  checkAgainstFiniteDifferences(R"(
rule swap(lr = 0.1) {
  state m = 0.5
  let q = m
  m = p - lr * g
  p = q
}
)",
                                {{"lr", 0.1}}, 0);
}

template <typename T> struct Outcome {
  std::vector<std::vector<T>> theta, adj;
  RuleGradient grad;
};

template <typename T>
Outcome<T> backwardOn(const Rule &rule, const Hypers &hypers,
                      unsigned threads) {
  // Hundreds of chunks of odd length; fewer chunks than threads in the
  // smallest tensors.
  Episode<T> ep(rule.info(), hypers, {1000, 37, 1, 5003, 0, 2}, 3, 61, 5);
  TrajectoryOptions options;
  options.threads = threads;
  options.chunkSize = ep.chunkSize;
  Trajectory traj(rule, ep.sizes, options);
  ep.run(traj);
  Outcome<T> out;
  out.grad = traj.backward(ep.cotangents());
  for (size_t i = 0; i < ep.sizes.size(); ++i) {
    auto copy = [&](const void *data) {
      const T *d = static_cast<const T *>(data);
      return std::vector<T>(d, d + ep.sizes[i]);
    };
    out.theta.push_back(copy(traj.param(i)));
    out.adj.push_back(copy(traj.paramAdjoint(i)));
    for (const StateSpec &s : rule.info().states)
      out.adj.push_back(copy(traj.stateAdjoint(i, s.name)));
  }
  return out;
}

template <typename T>
void expectThreadIndependent(const std::string &source, const Hypers &hypers,
                             DType precision) {
  Rule rule = compileWithVJP(source, precision);
  size_t perParam = 1 + rule.info().states.size();
  Outcome<T> one = backwardOn<T>(rule, hypers, 1);
  double norm = 0;
  for (double x : one.grad.hypers)
    norm += x * x;
  EXPECT_GT(norm, 0.0);
  // Bit for bit (== would take -0 for 0); empty tensors have nothing.
  auto same = [](const std::vector<T> &a, const std::vector<T> &b) {
    return a.size() == b.size() &&
           (a.empty() ||
            std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
  };
  for (unsigned threads : {2u, 3u}) {
    Outcome<T> other = backwardOn<T>(rule, hypers, threads);
    EXPECT_EQ(0, std::memcmp(one.grad.hypers.data(), other.grad.hypers.data(),
                             one.grad.hypers.size() * sizeof(double)))
        << threads << " threads";
    ASSERT_EQ(one.adj.size(), other.adj.size());
    for (size_t k = 0; k < one.adj.size(); ++k) {
      EXPECT_TRUE(same(one.adj[k], other.adj[k]))
          << threads << " threads, adjoint " << k;
      EXPECT_TRUE(same(one.theta[k / perParam], other.theta[k / perParam]))
          << threads << " threads, parameter " << k / perParam;
    }
  }
}

TEST(TrajectoryReductions, LambIsIndependentOfThreads) {
  expectThreadIndependent<float>(readExample("lamb"), kLambHypers, DType::F32);
  expectThreadIndependent<double>(readExample("lamb"), kLambHypers,
                                  DType::F64);
}

TEST(TrajectoryReductions, NestedLevelsAreIndependentOfThreads) {
  expectThreadIndependent<float>(kNested, kNestedHypers, DType::F32);
  expectThreadIndependent<double>(kNested, kNestedHypers, DType::F64);
}

} // namespace
