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
// per level (the checks: TrajectoryCheck.h).
//
//===----------------------------------------------------------------------===//

#include "optim/Optimizer.h"

#include "SourceFiles.h"
#include "TrajectoryCheck.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace optim;
using namespace trajectorycheck;
using testsource::readExample;
using testsource::readFile;

namespace {

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
