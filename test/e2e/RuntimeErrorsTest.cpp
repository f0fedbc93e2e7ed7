//===- RuntimeErrorsTest.cpp - the host API refuses bad input cleanly -----===//
//
// Every wrong call throws optim::Error with a message that says what was
// wrong, and changes nothing: parameters, state and step count stay as they
// were.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace optim;

namespace {

std::string example(const char *name) {
  return std::string(OPTIM_EXAMPLES_DIR) + "/" + name + ".optim";
}

/// Expects `fn` to throw optim::Error whose message contains `needle`.
template <typename Fn> void expectError(Fn fn, const std::string &needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing: " << needle;
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

std::string tempPath(const char *name) {
  return std::string(::testing::TempDir()) + "/optim-" +
         std::to_string(::getpid()) + "-" + name;
}

class RuntimeTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    compiler = new Compiler();
    adam = new Rule(compiler->compileFile(example("adam")));
    sgd = new Rule(compiler->compileFile(example("sgd")));
  }
  static void TearDownTestSuite() {
    delete adam;
    delete sgd;
    delete compiler;
  }
  static Compiler *compiler;
  static Rule *adam, *sgd;
};
Compiler *RuntimeTest::compiler;
Rule *RuntimeTest::adam;
Rule *RuntimeTest::sgd;

TEST_F(RuntimeTest, CompileErrorsCarryLocatedDiagnostics) {
  expectError(
      [] { compiler->compileSource("rule r() {\n  p -= q\n}\n", "bad.optim"); },
      "bad.optim:2:8: error: use of undeclared identifier 'q'");
  expectError([] { compiler->compileFile("/nonexistent/x.optim"); },
              "cannot read '/nonexistent/x.optim'");
  expectError([] { compiler->compileFile(example("sudoku")); }, "has no rule");
  expectError(
      [] {
        compiler->compileSource("rule a() { p -= g }\nrule b() { p += g }",
                                "two.optim");
      },
      "defines several rules (a, b)");
  Rule b = compiler->compileSource("rule a() { p -= g }\nrule b() { p += g }",
                                   "two.optim", Target::cpu(), "b");
  EXPECT_EQ(b.info().name, "b");
}

TEST_F(RuntimeTest, RuleSignatureIsDescribed) {
  const RuleInfo &ri = adam->info();
  EXPECT_EQ(ri.name, "adam");
  EXPECT_EQ(ri.dtype, DType::F32);
  ASSERT_EQ(ri.hypers.size(), 4u);
  EXPECT_EQ(ri.hypers[0].name, "lr");
  EXPECT_DOUBLE_EQ(ri.hypers[0].defaultValue, 1e-3);
  ASSERT_EQ(ri.states.size(), 2u);
  EXPECT_EQ(ri.states[1].name, "v");
}

TEST_F(RuntimeTest, ConstructorRejectsBadParameters) {
  std::vector<float> a(10), b(10);
  std::vector<double> d(10);
  expectError([&] { Optimizer(Rule(), {Param(a.data(), 10)}); },
              "the rule is empty");
  expectError([&] { Optimizer(*adam, {Param(d.data(), 10)}); },
              "parameter 0 is f64 but rule 'adam' is compiled for f32");
  expectError(
      [&] { Optimizer(*adam, {Param(static_cast<float *>(nullptr), 3)}); },
      "parameter 0 is a null pointer");
  expectError([&] { Optimizer(*adam, {Param(a.data(), -1)}); },
              "negative size");
  expectError(
      [&] {
        Optimizer(*adam, {Param(reinterpret_cast<float *>(
                                    reinterpret_cast<char *>(a.data()) + 1),
                                4)});
      },
      "not aligned");
  expectError(
      [&] {
        Optimizer(*adam, {Param(a.data(), 10), Param(a.data() + 5, 5)});
      },
      "parameter 0 and parameter 1 overlap in memory");
  expectError(
      [&] {
        Optimizer(*adam, std::vector<ParamGroup>{
                             ParamGroup{{Param(a.data(), 10)}, {{"lrr", 1}}}});
      },
      "sets 'lrr', which is not a hyperparameter of rule 'adam'");
  // Empty tensors and a null pointer with zero elements are fine.
  Optimizer ok(*adam,
               {Param(static_cast<float *>(nullptr), 0), Param(b.data(), 10)});
  EXPECT_EQ(ok.numParams(), 2u);
}

TEST_F(RuntimeTest, BadStepsChangeNothing) {
  std::vector<float> w(100, 1.0f), b(3, 2.0f);
  std::vector<float> gw(100, 0.5f), gb(3, 0.5f), wrong(4, 0.5f);
  Optimizer opt(*adam, {Param(w.data(), 100), Param(b.data(), 3)});
  ASSERT_TRUE(opt.step({Grad(gw.data(), 100), Grad(gb.data(), 3)}));
  std::vector<float> w1 = w, b1 = b;
  std::vector<float> m1(static_cast<const float *>(opt.state(0, "m")),
                        static_cast<const float *>(opt.state(0, "m")) + 100);

  expectError([&] { opt.step({Grad(gw.data(), 100)}); },
              "expected 2 gradients (one per parameter), got 1");
  expectError(
      [&] {
        opt.step({Grad(gw.data(), 100), Grad(wrong.data(), 4)});
      },
      "gradient 1 has 4 elements but its parameter has 3");
  expectError(
      [&] {
        opt.step({Grad(gw.data(), 100),
                  Grad(static_cast<const float *>(nullptr), 3)});
      },
      "gradient 1 is a null pointer");
  std::vector<double> gd(3);
  expectError(
      [&] {
        opt.step({Grad(gw.data(), 100), Grad(gd.data(), 3)});
      },
      "gradient 1 is f64, the rule is f32");
  expectError([&] { opt.set("learning_rate", 0.1); },
              "rule 'adam' has no hyperparameter 'learning_rate' (it has: lr, "
              "beta1, beta2, eps)");
  expectError([&] { opt.set("lr", NAN); }, "'lr' must be finite");
  expectError([&] { opt.set(3, "lr", 0.1); }, "group 3 does not exist");
  expectError([&] { opt.state(5, "m"); }, "parameter 5 does not exist");
  expectError([&] { opt.state(0, "q"); }, "rule 'adam' has no state 'q'");

  EXPECT_EQ(w, w1);
  EXPECT_EQ(b, b1);
  EXPECT_EQ(opt.stepCount(), 1);
  EXPECT_DOUBLE_EQ(opt.get("lr"), 1e-3);
  EXPECT_EQ(0, std::memcmp(opt.state(0, "m"), m1.data(), 400));
}

TEST_F(RuntimeTest, ConstHyperparametersCannotBeSet) {
  Rule rule = compiler->compileSource(
      "rule r(lr = 0.5, const k = 2) { p -= lr * k * g }", "c.optim");
  std::vector<float> w(5, 1.0f), g(5, 1.0f);
  Optimizer opt(rule, {Param(w.data(), 5)});
  expectError([&] { opt.set("k", 3); }, "'k' is const in rule 'r'");
  opt.step({Grad(g.data(), 5)});
  EXPECT_FLOAT_EQ(w[0], 0.0f); // 1 - 0.5 * 2 * 1
}

TEST_F(RuntimeTest, HyperparametersChangeWithoutRecompiling) {
  std::vector<float> w(3, 1.0f), g(3, 1.0f);
  Optimizer opt(*sgd, {Param(w.data(), 3)});
  opt.set("lr", 0.25);
  opt.step({Grad(g.data(), 3)});
  EXPECT_FLOAT_EQ(w[2], 0.75f);
  opt.set("lr", 0.5);
  opt.step({Grad(g.data(), 3)});
  EXPECT_FLOAT_EQ(w[2], 0.25f);
}

TEST_F(RuntimeTest, ParameterGroupsHaveTheirOwnHyperparameters) {
  std::vector<float> a(4, 1.0f), b(4, 1.0f), g(4, 1.0f);
  Optimizer opt(*sgd, std::vector<ParamGroup>{
                          ParamGroup{{Param(a.data(), 4)}, {{"lr", 0.5}}},
                          ParamGroup{{Param(b.data(), 4)}, {}}});
  EXPECT_EQ(opt.numGroups(), 2u);
  opt.set(1, "lr", 0.0);
  opt.step({Grad(g.data(), 4), Grad(g.data(), 4)});
  EXPECT_FLOAT_EQ(a[0], 0.5f);
  EXPECT_FLOAT_EQ(b[0], 1.0f);
}

TEST_F(RuntimeTest, NonFiniteGradientsCanBeSkipped) {
  std::vector<float> w(50, 1.0f), g(50, 0.1f);
  OptimizerOptions options;
  options.skipNonFinite = true;
  Optimizer opt(*adam, {Param(w.data(), 50)}, options);
  ASSERT_TRUE(opt.step({Grad(g.data(), 50)}));
  std::vector<float> before = w;
  g[37] = NAN;
  EXPECT_FALSE(opt.step({Grad(g.data(), 50)}));
  g[37] = INFINITY;
  EXPECT_FALSE(opt.step({Grad(g.data(), 50)}));
  EXPECT_EQ(w, before);
  EXPECT_EQ(opt.stepCount(), 1);
  EXPECT_EQ(opt.skippedSteps(), 2);
  g[37] = 0.1f;
  EXPECT_TRUE(opt.step({Grad(g.data(), 50)}));
  EXPECT_EQ(opt.stepCount(), 2);
}

TEST_F(RuntimeTest, CheckpointResumesBitwise) {
  const int n = 1000;
  auto grad = [](int t, int i) { return std::sin(0.37f * i + t); };
  std::vector<float> a(n, 0.5f), b(n, 0.5f), g(n);
  Optimizer straight(*adam, {Param(a.data(), n)});
  straight.set("lr", 0.01);
  std::string path = tempPath("ckpt.safetensors");
  {
    Optimizer first(*adam, {Param(b.data(), n)});
    first.set("lr", 0.01);
    for (int t = 1; t <= 5; ++t) {
      for (int i = 0; i < n; ++i)
        g[i] = grad(t, i);
      straight.step({Grad(g.data(), n)});
      first.step({Grad(g.data(), n)});
    }
    first.save(path);
  }
  Optimizer resumed(*adam, {Param(b.data(), n)});
  resumed.load(path);
  EXPECT_EQ(resumed.stepCount(), 5);
  EXPECT_DOUBLE_EQ(resumed.get("lr"), 0.01);
  for (int t = 6; t <= 10; ++t) {
    for (int i = 0; i < n; ++i)
      g[i] = grad(t, i);
    straight.step({Grad(g.data(), n)});
    resumed.step({Grad(g.data(), n)});
  }
  EXPECT_EQ(a, b);
  std::remove(path.c_str());
}

TEST_F(RuntimeTest, BadCheckpointsAreRefusedAndChangeNothing) {
  std::vector<float> w(10, 1.0f), g(10, 1.0f), v(10, 1.0f);
  Optimizer opt(*adam, {Param(w.data(), 10)});
  opt.step({Grad(g.data(), 10)});
  std::string good = tempPath("good.safetensors");
  opt.save(good);

  std::vector<float> mBefore(static_cast<const float *>(opt.state(0, "m")),
                             static_cast<const float *>(opt.state(0, "m")) +
                                 10);
  auto unchanged = [&] {
    EXPECT_EQ(opt.stepCount(), 1);
    EXPECT_EQ(0, std::memcmp(opt.state(0, "m"), mBefore.data(), 40));
  };

  // Another rule's checkpoint.
  Optimizer other(*sgd, {Param(v.data(), 10)});
  std::string sgdPath = tempPath("sgd.safetensors");
  other.save(sgdPath);
  expectError([&] { opt.load(sgdPath); }, "written by rule 'sgd', not 'adam'");
  unchanged();

  // Other parameter sizes.
  std::vector<float> big(11, 1.0f);
  Optimizer bigger(*adam, {Param(big.data(), 11)});
  std::string bigPath = tempPath("big.safetensors");
  bigger.save(bigPath);
  expectError([&] { opt.load(bigPath); }, "has shape [11], expected [10]");
  unchanged();

  // Truncated and garbage files.
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  std::string cut = tempPath("cut.safetensors");
  for (size_t keep : {size_t(0), size_t(5), size_t(20), bytes.size() - 1}) {
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, keep);
    expectError([&] { opt.load(cut); }, "optim::Optimizer::load: '" + cut);
    unchanged();
  }
  std::ofstream(cut, std::ios::binary) << "this is not a checkpoint at all";
  expectError([&] { opt.load(cut); }, "optim::Optimizer::load");
  expectError([&] { opt.load("/nonexistent/ckpt"); }, "cannot open");
  unchanged();
  opt.load(good);
  EXPECT_EQ(opt.stepCount(), 1);
  for (const std::string &p : {good, sgdPath, bigPath, cut})
    std::remove(p.c_str());
}

} // namespace
