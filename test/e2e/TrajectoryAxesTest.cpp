//===- TrajectoryAxesTest.cpp - reverse mode of row and column values ----===//
//
// optim::Trajectory with rules that keep row or column states or reduce
// along rows or columns (KernelABI.h version 10): the forward steps are an
// optim::Optimizer's, and backward() gives the VJP kernels each
// coordinate's row and column values and sums what comes back over the row
// or column (KernelABI.h, "Reverse mode of rules with axes"). SM3 (row and
// column maxima), Adafactor (examples/adafactor.optim: factored second
// moments, a tensor mean of a row state) and a rule with every kind of row
// and column reduction over three levels, against central differences of
// unrolled losses (TrajectoryCheck.h) in every hyperparameter, coordinate
// of θ0 and value of the initial states (row and column ones included), on
// matrices, a stack, 1-D, unshaped and empty tensors (one of them [0, 5]:
// five columns, no coordinate), with chunks that split rows; a rule with
// an input and cols() too; the backward bit for bit on 1, 2 and 3 threads;
// stateSize.
//
//===----------------------------------------------------------------------===//

#include "SourceFiles.h"
#include "TrajectoryCheck.h"

#include <string>
#include <vector>

using namespace optim;
using namespace trajectorycheck;
using testsource::readExample;

namespace {

const char *kSM3 = R"(
rule sm3(lr = 0.1, eps = 0.5) {
  row state r = 0
  col state c = 0
  let nu = min(r, c) + g * g
  r = row_max(nu)
  c = col_max(nu)
  p -= lr * g / sqrt(nu + eps)
}
)";

/// Row and column states, every kind of row and column reduction, levels 0
/// to 2 (a row sum of a column norm, a column minimum of a row mean, a
/// tensor mean of a level-1 row value), per-coordinate and vector states.
const char *kLevels = R"(
rule levels(lr = 0.05, beta = 0.8, c1 = 0.3) {
  row state r = 0.5
  col state q = 0.5
  state m = 0, h[2] = 0
  m = beta * m + g
  let a = row_mean(g * g + c1 * p)
  let b = col_norm(m + p * r)
  let x = row_max(p * m)
  let y = col_sum(h[0] * p)
  let s = row_sum(p * b + q)
  let n = col_min(m * a + y)
  let e = col_mean(p * x)
  let z = tensor_mean(p * s)
  h = c1 * h - 0.1 * p + 0.1 * g
  r = beta * r + (1 - beta) * a * 0.5 + 0.01 * s + 0.1 * x
  q = beta * q + 0.1 * b + 0.01 * n + 0.1 * e
  p -= lr * (m / (1 + b) + 0.1 * r * g + 0.01 * s + 0.1 * n + 0.01 * z * q
             + 0.1 * h[1] + 0.01 * y)
}
)";
const Hypers kLevelsHypers = {{"lr", 0.05}, {"beta", 0.8}, {"c1", 0.3}};

/// Chunks of 5: rows of 4 go one to a chunk, rows of 13 are cut in three.
const std::vector<int64_t> kSizes = {12, 1, 0, 6, 13, 0};
const std::vector<std::vector<int64_t>> kShapes = {{3, 4}, {1, 1}, {0, 5},
                                                   {2, 1, 3}, {}, {3, 0}};

TEST(TrajectoryAxes, SM3MatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(kSM3, {{"lr", 0.1}, {"eps", 0.5}}, 2, kSizes,
                                kShapes);
}

TEST(TrajectoryAxes, AdafactorMatchesUnrolledFiniteDifferences) {
  // The hyperparameters that matter away from Adafactor's kinks (eps1,
  // eps2 and d only choose a side of a max here).
  checkAgainstFiniteDifferences(
      readExample("adafactor"),
      {{"lr", 0.05}, {"beta2_decay", -0.8}, {"weight_decay", 0.1}}, 5, kSizes,
      kShapes);
}

TEST(TrajectoryAxes, EveryKindOverLevelsMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(kLevels, kLevelsHypers, 8, kSizes, kShapes);
}

// Inputs and shape values in a rule with axes: the optimizer's forward
// step takes the recorded inputs, and the VJP kernels read the tensor
// reductions' slots (cols()) in the trajectory's own chunk table.
TEST(TrajectoryAxes, InputsAndShapeValuesMatchUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(R"(
rule withinput(lr = 0.05, beta = 0.9) {
  input h
  col state c = 0.5
  c = beta * c + (1 - beta) * col_mean(h * g * g)
  p -= lr * g * h / sqrt(c + 0.1) + lr * 0.01 * row_sum(p * h) / cols()
}
)",
                                {{"lr", 0.05}, {"beta", 0.9}}, 3, kSizes,
                                kShapes);
}

// Matrix functions: newton_schulz's cotangent is mapped from NS(X) to X
// per matrix (detail::newtonSchulzVJP). Muon (examples/muon.optim) on wide,
// tall (transposed), 1 x 1, 1 x 13 and empty matrices; and an operand that
// depends on p with a level-1 norm of the result, whose pass sends a
// cotangent back to NS(X) before NS's own level.
const std::vector<int64_t> kMatrixSizes = {12, 6, 1, 13, 0};
const std::vector<std::vector<int64_t>> kMatrixShapes = {
    {3, 4}, {3, 2}, {1, 1}, {}, {0, 5}};

TEST(TrajectoryAxes, MuonMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(
      readExample("muon"),
      {{"lr", 0.05}, {"momentum", 0.8}, {"weight_decay", 0.1}}, 3,
      kMatrixSizes, kMatrixShapes);
}

TEST(TrajectoryAxes, MatrixFunctionOfPMatchesUnrolledFiniteDifferences) {
  checkAgainstFiniteDifferences(R"(
rule nsp(lr = 0.05, c = 0.3, beta = 0.8) {
  state buf = 0
  buf = beta * buf + g
  let o = newton_schulz(buf + c * p, 3)
  let n = tensor_norm(o * p)
  p -= lr * (o + 0.1 * n * p)
}
)",
                                {{"lr", 0.05}, {"c", 0.3}, {"beta", 0.8}}, 2,
                                kMatrixSizes, kMatrixShapes);
}

TEST(TrajectoryAxes, BackwardIsIndependentOfThreads) {
  // backwardOn's sizes: 1000, 37, 1, 5003, 0, 2.
  const std::vector<std::vector<int64_t>> fitting = {
      {40, 25}, {37}, {}, {5003, 1}, {3, 0}, {2, 1, 1}};
  expectThreadIndependent<float>(kLevels, kLevelsHypers, DType::F32, fitting);
  expectThreadIndependent<double>(kLevels, kLevelsHypers, DType::F64,
                                  fitting);
  expectThreadIndependent<float>(kSM3, {{"lr", 0.1}, {"eps", 0.5}},
                                 DType::F32, fitting);
  expectThreadIndependent<double>(readExample("muon"),
                                  {{"lr", 0.05}, {"momentum", 0.8}},
                                  DType::F64, fitting);
}

// The trajectory's forward steps are its optimizer's: the same as a user's
// optim::Optimizer on the same shapes.
TEST(TrajectoryAxes, ForwardIsTheOptimizersStep) {
  expectForwardLikeOptimizer<float>(kLevels, kLevelsHypers, DType::F32,
                                    kSizes, kShapes);
  expectForwardLikeOptimizer<double>(readExample("adafactor"),
                                     {{"lr", 0.05}}, DType::F64, kSizes,
                                     kShapes);
}

TEST(TrajectoryAxes, StateSizesFollowTheShapes) {
  Rule rule = compileWithVJP(kLevels, DType::F64);
  TrajectoryOptions options;
  options.shapes = kShapes;
  Trajectory traj(rule, kSizes, options);
  const std::vector<int64_t> rows = {3, 1, 0, 2, 1, 3};
  const std::vector<int64_t> cols = {4, 1, 5, 6, 13, 0};
  for (size_t i = 0; i < kSizes.size(); ++i) {
    EXPECT_EQ(traj.stateSize(i, "r"), rows[i]) << i;
    EXPECT_EQ(traj.stateSize(i, "q"), cols[i]) << i;
    EXPECT_EQ(traj.stateSize(i, "m"), kSizes[i]) << i;
    EXPECT_EQ(traj.stateSize(i, "h"), 2 * kSizes[i]) << i;
    // Initial values, as the rule declares them.
    const double *r = static_cast<const double *>(traj.state(i, "r"));
    for (int64_t k = 0; k < rows[i]; ++k)
      EXPECT_EQ(r[k], 0.5);
  }
  try {
    traj.stateSize(0, "z");
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim::Trajectory::stateSize: rule 'levels' has "
                           "no state 'z'");
  }
}

} // namespace
