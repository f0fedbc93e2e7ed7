//===- TrajectoryInputsTest.cpp - reverse mode of rules with inputs -------===//
//
// optim::Trajectory with rules that read per-coordinate inputs besides g
// (`input h`, KernelABI.h version 7): the tape records each step's inputs
// and the VJP kernels read them as constants, like g. Sophia
// (test/Run/Inputs/input-sophia.optim) and a rule whose two inputs reach a
// tensor and a global reduction (both VJP kernels read them) against
// central differences of unrolled losses, with every step's inputs
// different; the backward of the second bit for bit on 1, 2 and 3 threads;
// the forward like optim::Optimizer::step(grads, inputs), bit for bit; and
// every refused call to step, each naming what was wrong and changing
// nothing.
//
//===----------------------------------------------------------------------===//

#include "SourceFiles.h"
#include "TrajectoryCheck.h"

#include <cstring>
#include <functional>
#include <string>
#include <vector>

using namespace optim;
using namespace trajectorycheck;
using testsource::readFile;

namespace {

std::string sophiaSource() {
  std::string text =
      readFile(std::string(OPTIM_TEST_DIR) + "/Run/Inputs/input-sophia.optim");
  size_t at = text.find("rule sophia(");
  return text.substr(at);
}

// rho and eps put m / max(rho * hh, eps) on both sides of the clamp and
// both arguments of max at some coordinates: every hyperparameter matters.
const Hypers kSophiaHypers = {
    {"lr", 0.05}, {"beta1", 0.8}, {"beta2", 0.9}, {"rho", 1.0}, {"eps", 0.4}};

/// Inputs in the per-coordinate path and in the operands of a tensor and a
/// global reduction: the reduced VJP kernel and the reductions one both
/// read them.
const char *kReduced = R"(
rule reduced(lr = 0.05, c = 0.3) {
  input h
  input z
  state m = 0
  m = 0.9 * m + g * h
  let n = tensor_norm(m + c * z)
  let s = global_sum(p * h)
  p -= lr * (m / (1 + n) + 0.01 * s * z + c * h * p)
}
)";
const Hypers kReducedHypers = {{"lr", 0.05}, {"c", 0.3}};

TEST(TrajectoryInputs, SophiaMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(sophiaSource(), kSophiaHypers, 0);
}

TEST(TrajectoryInputs, ReductionsOfInputsMatchUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(kReduced, kReducedHypers, 2);
}

TEST(TrajectoryInputs, BackwardIsIndependentOfThreads) {
  expectThreadIndependent<float>(kReduced, kReducedHypers, DType::F32);
  expectThreadIndependent<double>(kReduced, kReducedHypers, DType::F64);
  expectThreadIndependent<double>(sophiaSource(), kSophiaHypers, DType::F64);
}

TEST(TrajectoryInputs, ForwardIsTheOptimizersStep) {
  expectForwardLikeOptimizer<float>(kReduced, kReducedHypers, DType::F32,
                                    {13, 1, 0, 6});
  expectForwardLikeOptimizer<double>(kReduced, kReducedHypers, DType::F64,
                                     {13, 1, 0, 6});
}

// Every refused step throws before it records or writes anything.
TEST(TrajectoryInputs, RefusedStepsChangeNothing) {
  Rule rule = compileWithVJP(kReduced, DType::F64);
  std::vector<int64_t> sizes = {4, 0, 3};
  Trajectory traj(rule, sizes, {});
  std::vector<double> g0(4, 0.5), g2(3, -0.25), h0(4, 2.0), h2(3, 1.0);
  std::vector<const void *> grads = {g0.data(), nullptr, g2.data()};
  std::vector<const void *> h = {h0.data(), nullptr, h0.data()};
  ASSERT_NO_THROW(traj.step(grads, {{"h", h}, {"z", h}}));
  traj.truncate();
  std::vector<double> before(static_cast<const double *>(traj.param(0)),
                             static_cast<const double *>(traj.param(0)) + 4);
  auto expectRefused = [&](const std::function<void()> &call,
                           const std::string &message) {
    try {
      call();
      ADD_FAILURE() << "no error; expected: " << message;
    } catch (const Error &e) {
      EXPECT_EQ(e.what(), message);
    }
    EXPECT_EQ(traj.tapeLength(), 0u) << message;
    EXPECT_EQ(traj.stepCount(), 1) << message;
    EXPECT_EQ(0, std::memcmp(traj.param(0), before.data(), 4 * sizeof(double)))
        << message;
  };
  expectRefused([&] { traj.step(grads); },
                "optim::Trajectory::step: rule 'reduced' takes the "
                "per-coordinate inputs 'h' and 'z' with every step, besides "
                "the gradients: call step(grads, inputs) with one tensor per "
                "parameter for each");
  expectRefused([&] { traj.step(grads, {{"h", h}}); },
                "optim::Trajectory::step: rule 'reduced' needs its input 'z' "
                "with every step; it is missing");
  expectRefused([&] { traj.step(grads, {}); },
                "optim::Trajectory::step: rule 'reduced' needs its inputs "
                "'h' and 'z' with every step; they are missing");
  expectRefused([&] { traj.step(grads, {{"h", h}, {"z", h}, {"w", h}}); },
                "optim::Trajectory::step: rule 'reduced' has no input 'w' "
                "(its inputs: 'h' and 'z')");
  expectRefused([&] { traj.step(grads, {{"h", h}, {"h", h}, {"z", h}}); },
                "optim::Trajectory::step: input 'h' is given twice");
  expectRefused([&] { traj.step(grads, {{"h", h}, {"z", {h0.data()}}}); },
                "optim::Trajectory::step: input 'z' has 1 tensors; expected "
                "3 (one per parameter)");
  expectRefused(
      [&] {
        traj.step(grads, {{"h", h}, {"z", {h0.data(), nullptr, nullptr}}});
      },
      "optim::Trajectory::step: input 'z' of parameter 2 is a null pointer");
  expectRefused(
      [&] {
        traj.step(grads, {{"h", {traj.param(0), nullptr, h2.data()}},
                          {"z", h}});
      },
      "optim::Trajectory::step: input 'h' of parameter 0 overlaps the "
      "trajectory's own parameters (copy it first)");
  expectRefused(
      [&] {
        traj.step(grads, {{"h", h}, {"z", {h0.data(), nullptr,
                                           traj.state(0, "m")}}});
      },
      "optim::Trajectory::step: input 'z' of parameter 2 overlaps the "
      "trajectory's own state (copy it first)");
  // The trajectory still works after all of that.
  ASSERT_NO_THROW(traj.step(grads, {{"z", h}, {"h", h}}));
  EXPECT_EQ(traj.tapeLength(), 1u);
}

// A rule without inputs takes an empty list, as optim::Optimizer.
TEST(TrajectoryInputs, RulesWithoutInputsTakeAnEmptyList) {
  Rule rule = compileWithVJP("rule sgd(lr = 0.1) { p -= lr * g }",
                             DType::F64);
  Trajectory traj(rule, {2}, {});
  std::vector<double> g = {1.0, -2.0};
  traj.step({g.data()}, {});
  const double *p = static_cast<const double *>(traj.param(0));
  EXPECT_EQ(p[0], -0.1);
  EXPECT_EQ(p[1], 0.2);
  try {
    traj.step({g.data()}, {{"h", {g.data()}}});
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim::Trajectory::step: rule 'sgd' has no input "
                           "'h' (it has none)");
  }
}

} // namespace
