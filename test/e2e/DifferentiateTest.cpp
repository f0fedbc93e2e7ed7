//===- DifferentiateTest.cpp - reverse mode against finite differences ----===//
//
// optim-differentiate's VJP of every example rule (and of a rule using every
// differentiable built-in), JIT-compiled in f64, against central finite
// differences of <cotangent, step(x)> with respect to p, each state and
// each hyperparameter.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Dialect/OptimOps.h"
#include "optim/Frontend/Frontend.h"
#include "optim/Transforms/Passes.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "SourceFiles.h"
#include "gtest/gtest.h"

#include <cmath>
#include <random>

using namespace optim;
using testsource::readExample;

namespace {

struct Compiled {
  std::unique_ptr<mlir::ExecutionEngine> engine;
  unsigned numHypers = 0, numStates = 0;
  std::vector<double> defaults;
  std::string name;
};

/// Front end, optim-differentiate, and the LLVM pipeline, in f64.
Compiled compile(const std::string &source) {
  Compiled out;
  static mlir::MLIRContext context;
  llvm::SourceMgr sm;
  sm.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(source, "r.optim"),
                        llvm::SMLoc());
  std::string diags;
  llvm::raw_string_ostream os(diags);
  DiagnosticEngine engine(sm, os);
  FrontendOptions options;
  options.precision = Precision::F64;
  auto module = compileToMLIR(context, engine, options);
  EXPECT_TRUE(module) << diags;
  if (!module)
    return out;
  auto rule = *module->getOps<mlir::optim::RuleOp>().begin();
  out.name = rule.getSymName().str();
  out.numHypers = rule.getNumHypers();
  out.numStates = rule.getNumStates();
  for (double d : rule.getHyperDefaults())
    out.defaults.push_back(d);
  mlir::PassManager pm(&context);
  pm.addPass(mlir::optim::createDifferentiate());
  EXPECT_TRUE(mlir::succeeded(pm.run(*module)));
  rule.erase();
  mlir::PassManager lower(&context);
  buildKernelsToLLVMPipeline(lower);
  EXPECT_TRUE(mlir::succeeded(lower.run(*module)));
  mlir::registerBuiltinDialectTranslation(context);
  mlir::registerLLVMDialectTranslation(context);
  initializeNativeTarget();
  auto created = mlir::ExecutionEngine::create(*module);
  EXPECT_TRUE(bool(created));
  if (created)
    out.engine = std::move(*created);
  return out;
}

struct Point {
  double p, g;
  int64_t t;
  std::vector<double> hypers, states;
};

std::vector<double> step(Compiled &c, Point x) {
  std::vector<void *> args = {&x.p, &x.g, &x.t};
  for (double &h : x.hypers)
    args.push_back(&h);
  for (double &s : x.states)
    args.push_back(&s);
  std::vector<double> out(1 + c.numStates);
  args.push_back(out.data());
  llvm::Error err = c.engine->invokePacked("optim_step_" + c.name, args);
  EXPECT_FALSE(bool(err)) << llvm::toString(std::move(err));
  return out;
}

std::vector<double> vjp(Compiled &c, Point x, std::vector<double> cot) {
  std::vector<void *> args = {&x.p, &x.g, &x.t};
  for (double &h : x.hypers)
    args.push_back(&h);
  for (double &s : x.states)
    args.push_back(&s);
  for (double &d : cot)
    args.push_back(&d);
  std::vector<double> out(1 + c.numStates + c.numHypers);
  args.push_back(out.data());
  llvm::Error err = c.engine->invokePacked("optim_vjp_" + c.name, args);
  EXPECT_FALSE(bool(err)) << llvm::toString(std::move(err));
  return out;
}

void checkAgainstFiniteDifferences(const std::string &source) {
  Compiled c = compile(source);
  ASSERT_TRUE(c.engine) << source;
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0.1, 1.0);
  std::uniform_int_distribution<int> coin(0, 1);
  for (int trial = 0; trial < 20; ++trial) {
    Point x;
    x.p = u(rng) * (coin(rng) ? 1 : -1);
    x.g = u(rng) * (coin(rng) ? 1 : -1);
    x.t = 1 + trial % 7;
    x.hypers = c.defaults;
    for (unsigned i = 0; i < c.numStates; ++i)
      x.states.push_back(u(rng)); // Positive: sqrt of accumulators.
    std::vector<double> cot;
    for (unsigned i = 0; i < 1 + c.numStates; ++i)
      cot.push_back(u(rng) * (coin(rng) ? 1 : -1));
    std::vector<double> got = vjp(c, x, cot);

    // <cot, step(x)> along each input.
    auto objective = [&](const Point &y) {
      std::vector<double> out = step(c, y);
      double sum = 0;
      for (size_t k = 0; k < out.size(); ++k)
        sum += cot[k] * out[k];
      return sum;
    };
    auto check = [&](double Point::*scalar, std::vector<double> Point::*list,
                     unsigned index, unsigned resultIndex,
                     const std::string &what) {
      Point plus = x, minus = x;
      double &vp = scalar ? plus.*scalar : (plus.*list)[index];
      double &vm = scalar ? minus.*scalar : (minus.*list)[index];
      double h = 1e-6 * std::max(1.0, std::fabs(vp));
      vp += h;
      vm -= h;
      double fd = (objective(plus) - objective(minus)) / (2 * h);
      EXPECT_NEAR(got[resultIndex], fd, 1e-6 * std::max(1.0, std::fabs(fd)))
          << c.name << ": d/d " << what << " at trial " << trial;
    };
    check(&Point::p, nullptr, 0, 0, "p");
    for (unsigned i = 0; i < c.numStates; ++i)
      check(nullptr, &Point::states, i, 1 + i, "state " + std::to_string(i));
    for (unsigned i = 0; i < c.numHypers; ++i)
      check(nullptr, &Point::hypers, i, 1 + c.numStates + i,
            "hyperparameter " + std::to_string(i));
  }
}

class DifferentiateExample : public ::testing::TestWithParam<const char *> {};

TEST_P(DifferentiateExample, MatchesCentralDifferences) {
  checkAgainstFiniteDifferences(readExample(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Examples, DifferentiateExample,
                         ::testing::Values("sgd", "momentum", "nesterov",
                                           "adagrad", "rmsprop", "adam",
                                           "adamw", "amsgrad", "lion"),
                         [](const auto &info) {
                           return std::string(info.param);
                         });

TEST(Differentiate, EveryDifferentiableBuiltin) {
  checkAgainstFiniteDifferences(R"(
rule builtins(lr = 0.3, k = 1.7) {
  state a = 0, b = 0
  let x = tanh(a * g) + sigmoid(b) - exp(-abs(a - 0.05)) + log(1 + b * b)
  let y = pow(a + 1, k) + max(a, b) - min(a, g) + clamp(b, -0.5, 0.5)
  a = select(g >= 0, 0.9 * a + x / k, 0.8 * a - y)
  b = sqrt(b + 0.1) * lr - a ** 2
  p -= lr * (a + b) / (1 + t)
}
)");
}

} // namespace
