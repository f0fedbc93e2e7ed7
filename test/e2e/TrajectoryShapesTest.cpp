//===- TrajectoryShapesTest.cpp - reverse mode of rows() and cols() -------===//
//
// optim::Trajectory with rules that read the shape values rows() and cols()
// (KernelABI.h version 11) of shaped parameters (TrajectoryOptions::shapes):
// constants of the reverse mode, filled in before the forward's stage 0 and
// read by both VJP kernels. A rule whose only "reductions" are shape values
// (one forward pass, no reduce stage) and one with them beside a tensor
// norm and a level-1 global sum, against central differences of unrolled
// losses (TrajectoryCheck.h) on matrices, a stack, 1-D, unshaped and empty
// tensors; their backward bit for bit on 1, 2 and 3 threads; their forward
// bit for bit with optim::Optimizer on the same shapes (which is what shows
// that the trajectory reads the right R and C: central differences would
// agree with any); and the refused shapes.
//
//===----------------------------------------------------------------------===//

#include "TrajectoryCheck.h"

#include <string>
#include <utility>
#include <vector>

using namespace optim;
using namespace trajectorycheck;

namespace {

/// Muon's shape factor without its matrix function, and a column count in
/// the state's decay: rows() and cols() reach p, the state and every
/// hyperparameter's derivative.
const char *kShapeOnly = R"(
rule shaped(lr = 0.05, beta = 0.8) {
  state m = 0
  m = beta * m + g / cols()
  p -= lr * sqrt(max(1, rows() / cols())) * m + lr * 0.1 * rows() * p
}
)";
const Hypers kShapeOnlyHypers = {{"lr", 0.05}, {"beta", 0.8}};

/// Shape values beside reductions: a level-0 norm of an operand scaled by
/// rows() (shape values do not raise levels) and a level-1 global sum of a
/// value computed from it.
const char *kBeside = R"(
rule beside(lr = 0.05, c = 0.3) {
  state m = 0
  m = 0.9 * m + g
  let n = tensor_norm(m * rows() + c * p)
  let s = global_sum(p * n / cols())
  p -= lr * (m / (1 + n) + 0.01 * s * cols() + c * p / rows())
}
)";
const Hypers kBesideHypers = {{"lr", 0.05}, {"c", 0.3}};

/// 13 coordinates can only be [13] or unshaped; 12 as a 3 x 4 matrix.
const std::vector<int64_t> kSizes = {12, 1, 0, 6, 13};
const std::vector<std::vector<int64_t>> kShapes = {
    {3, 4}, {1, 1}, {0, 5}, {2, 1, 3}, {}};

TEST(TrajectoryShapes, ShapeValuesOnlyMatchUnrolledFiniteDifferences) {
  // Each call of rows() or cols() is a reduction of its own.
  checkAgainstFiniteDifferences(kShapeOnly, kShapeOnlyHypers, 4, kSizes,
                                kShapes);
}

TEST(TrajectoryShapes, ShapeValuesBesideReductionsMatchFiniteDifferences) {
  checkAgainstFiniteDifferences(kBeside, kBesideHypers, 6, kSizes, kShapes);
}

TEST(TrajectoryShapes, BackwardIsIndependentOfThreads) {
  // backwardOn's sizes: 1000, 37, 1, 5003, 0, 2.
  const std::vector<std::vector<int64_t>> shapes = {
      {40, 25}, {37}, {}, {5003, 1}, {3, 0}, {2, 1, 1}};
  expectThreadIndependent<float>(kBeside, kBesideHypers, DType::F32, shapes);
  expectThreadIndependent<double>(kBeside, kBesideHypers, DType::F64, shapes);
  expectThreadIndependent<double>(kShapeOnly, kShapeOnlyHypers, DType::F64,
                                  shapes);
}

TEST(TrajectoryShapes, ForwardIsTheOptimizersStep) {
  expectForwardLikeOptimizer<float>(kShapeOnly, kShapeOnlyHypers, DType::F32,
                                    kSizes, kShapes);
  expectForwardLikeOptimizer<double>(kShapeOnly, kShapeOnlyHypers,
                                     DType::F64, kSizes, kShapes);
  expectForwardLikeOptimizer<float>(kBeside, kBesideHypers, DType::F32,
                                    kSizes, kShapes);
  expectForwardLikeOptimizer<double>(kBeside, kBesideHypers, DType::F64,
                                     kSizes, kShapes);
}

// Without shapes every tensor is one row: rows() = 1, cols() = its size.
TEST(TrajectoryShapes, UnshapedTensorsAreOneRow) {
  Rule rule = compileWithVJP("rule rc(lr = 1) { p = rows() * 100 + cols() }",
                             DType::F64);
  TrajectoryOptions options;
  options.chunkSize = 2;
  Trajectory traj(rule, {5, 3}, options);
  std::vector<double> g(5, 0.0);
  traj.step({g.data(), g.data()});
  for (size_t i = 0; i < 2; ++i) {
    const double *p = static_cast<const double *>(traj.param(i));
    for (int64_t j = 0; j < traj.paramSize(i); ++j)
      EXPECT_EQ(p[j], 100.0 + double(traj.paramSize(i))) << i << " " << j;
  }
  options.shapes = {{5, 1}, {1, 3}};
  Trajectory shaped(rule, {5, 3}, options);
  shaped.step({g.data(), g.data()});
  EXPECT_EQ(static_cast<const double *>(shaped.param(0))[4], 501.0);
  EXPECT_EQ(static_cast<const double *>(shaped.param(1))[2], 103.0);
}

TEST(TrajectoryShapes, BadShapesAreRefused) {
  Rule rule = compileWithVJP(kShapeOnly, DType::F64);
  auto message = [&](std::vector<std::vector<int64_t>> shapes) {
    TrajectoryOptions options;
    options.shapes = std::move(shapes);
    try {
      Trajectory traj(rule, {12, 0}, options);
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({{3, 4}}),
            "optim::Trajectory: TrajectoryOptions::shapes has 1 shapes for 2 "
            "parameters (one per parameter, or none)");
  EXPECT_EQ(message({{3, 5}, {}}), "optim::Trajectory: parameter 0: shape "
                                   "[3, 5] has 15 elements, its size is 12");
  EXPECT_EQ(message({{12}, {4, -1}}),
            "optim::Trajectory: parameter 1: shape [4, -1] has a negative "
            "dimension");
  EXPECT_EQ(message({std::vector<int64_t>(65, 1), {}}),
            "optim::Trajectory: parameter 0: shape [" +
                [] {
                  std::string ones;
                  for (int i = 0; i < 65; ++i)
                    ones += i ? ", 1" : "1";
                  return ones;
                }() +
                "] has 65 dimensions, more than 64");
  EXPECT_EQ(message({{12}, {0, 7}}), "no error");
}

} // namespace
