//===- InputsTest.cpp - rules with per-coordinate inputs (ABI version 7) --===//
//
// Rules that read per-coordinate inputs besides g (`input h`: Sophia's
// Hessian diagonal, SGLD's noise), from the hand-written kernels of
// InputKernels.c, loaded with optim::loadRule through manifests that list
// the inputs: optim::Optimizer's step with inputs in the one-pass and the
// two-pass (tensor reductions) paths against straightforward references,
// bit-identical for 1 and 3 threads; every refused call, and that it changed
// nothing; skipNonFinite; the manifest's "inputs"; Trajectory's refusal of
// kernels without a reverse mode; the C API; and the CUDA executor's chunk
// table against a fake driver.
//
//===----------------------------------------------------------------------===//

#include "optim/CApiSupport.h"
#include "optim/Cuda.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Trajectory.h"
#include "optim/optim.h"

#include "../lib/Sha256.h"
#include "FakeDriver.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

using namespace optim;
using json = nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string tempDir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/optim-inputs-XXXXXX";
    const char *d = ::mkdtemp(tmpl);
    return std::string(d ? d : "/tmp");
  }();
  return dir;
}

Manifest sophiaManifest(DType dtype) {
  Manifest m;
  m.info.name = dtype == DType::F32 ? "sophia32" : "sophia64";
  m.info.dtype = dtype;
  m.info.hypers = {{"lr", 0.01, false},
                   {"b1", 0.9, false},
                   {"b2", 0.99, false},
                   {"rho", 0.5, false},
                   {"eps", 1e-3, false}};
  m.info.states = {{"m", 1, 0.0}, {"hh", 1, 0.0}};
  m.info.inputs = {"h"};
  m.symbol = OPTIM_RULE_SYMBOL_PREFIX + m.info.name;
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

Manifest pairManifest() {
  Manifest m;
  m.info.name = "pair";
  m.info.dtype = DType::F64;
  m.info.hypers = {{"lr", 0.05, false}};
  m.info.states = {{"s", 1, 0.5}};
  m.info.inputs = {"a", "b"};
  m.symbol = "optim_rule_pair";
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

Manifest scaledManifest() {
  Manifest m;
  m.info.name = "scaled";
  m.info.dtype = DType::F64;
  m.info.hypers = {{"lr", 0.1, false}};
  m.info.inputs = {"h"};
  m.info.reductions = {{ReductionKind::Norm, false},
                       {ReductionKind::Sum, true}};
  m.symbol = "optim_rule_scaled";
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

/// The rule of `m` from InputKernels.c, through a manifest file (with the
/// library's SHA-256, which loadRule requires).
Rule load(Manifest m) {
  std::ifstream library(OPTIM_INPUT_KERNELS, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(library)),
                    std::istreambuf_iterator<char>());
  m.artifactSha256 = detail::sha256Hex(bytes);
  std::string path = tempDir() + "/" + m.info.name + ".manifest.json";
  writeFileAtomically(path, writeManifest(m));
  return loadRule(OPTIM_INPUT_KERNELS, path);
}

template <typename T> std::vector<T> random(size_t n, std::mt19937 &rng,
                                            double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (T &x : v)
    x = T(u(rng));
  return v;
}

template <typename T>
bool bitIdentical(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

const std::vector<int64_t> kSizes = {0, 1, 7, 1000, 40009};

/// Parameters, gradients and inputs for `steps` steps.
template <typename T> struct Data {
  std::vector<std::vector<T>> params;
  // [step][input][tensor]; input 0 is the gradient.
  std::vector<std::vector<std::vector<std::vector<T>>>> read;
};

template <typename T>
Data<T> makeData(size_t numInputs, int steps, unsigned seed,
                 bool positiveInputs) {
  std::mt19937 rng(seed);
  Data<T> d;
  for (int64_t n : kSizes)
    d.params.push_back(random<T>(size_t(n), rng));
  d.read.resize(steps);
  for (auto &step : d.read) {
    step.resize(1 + numInputs);
    for (size_t k = 0; k <= numInputs; ++k)
      for (int64_t n : kSizes)
        step[k].push_back(k > 0 && positiveInputs
                              ? random<T>(size_t(n), rng, 0, 2)
                              : random<T>(size_t(n), rng));
  }
  return d;
}

struct Result {
  std::vector<std::vector<double>> params, states; // states[tensor * S + s]
};

template <typename T>
Result toResult(const std::vector<std::vector<T>> &params,
                const std::vector<std::vector<std::vector<T>>> &states) {
  Result r;
  for (const auto &p : params)
    r.params.emplace_back(p.begin(), p.end());
  for (const auto &perTensor : states)
    for (const auto &s : perTensor)
      r.states.emplace_back(s.begin(), s.end());
  return r;
}

/// Runs optim::Optimizer over the data; inputs are passed in `order` (a
/// permutation of the rule's input indices) to check matching by name.
template <typename T>
Result runOptimizer(const Rule &rule, const Data<T> &d, unsigned threads,
                    int64_t chunkSize, const std::vector<size_t> &order,
                    std::vector<std::vector<T>> *paramsOut = nullptr) {
  const RuleInfo &info = rule.info();
  std::vector<std::vector<T>> params = d.params;
  std::vector<Param> refs;
  for (auto &p : params)
    refs.emplace_back(p.data(), p.size());
  OptimizerOptions o;
  o.threads = threads;
  o.chunkSize = chunkSize;
  Optimizer opt(rule, refs, o);
  for (const auto &step : d.read) {
    std::vector<Grad> grads;
    for (const auto &g : step[0])
      grads.emplace_back(g.data(), g.size());
    std::vector<Input> inputs;
    for (size_t k : order) {
      Input in{info.inputs[k], {}};
      for (const auto &x : step[1 + k])
        in.tensors.emplace_back(x.data(), x.size());
      inputs.push_back(std::move(in));
    }
    EXPECT_TRUE(opt.step(grads, inputs));
  }
  EXPECT_EQ(opt.stepCount(), int64_t(d.read.size()));
  std::vector<std::vector<std::vector<T>>> states;
  for (size_t k = 0; k < params.size(); ++k) {
    states.emplace_back();
    for (const StateSpec &s : info.states) {
      const T *data = static_cast<const T *>(opt.state(k, s.name));
      states.back().emplace_back(data, data + params[k].size());
    }
  }
  if (paramsOut)
    *paramsOut = params;
  return toResult(params, states);
}

/// Sophia on whole tensors, in T with the kernel's operations.
template <typename T> Result sophiaReference(const Data<T> &d) {
  const T lr = T(0.01), b1 = T(0.9), b2 = T(0.99), rho = T(0.5),
          eps = T(1e-3);
  std::vector<std::vector<T>> params = d.params;
  std::vector<std::vector<std::vector<T>>> states;
  for (const auto &p : params)
    states.push_back({std::vector<T>(p.size()), std::vector<T>(p.size())});
  for (const auto &step : d.read)
    for (size_t k = 0; k < params.size(); ++k)
      for (size_t i = 0; i < params[k].size(); ++i) {
        T &m = states[k][0][i], &hh = states[k][1][i];
        m = b1 * m + (1 - b1) * step[0][k][i];
        hh = b2 * hh + (1 - b2) * step[1][k][i];
        T den = std::max(rho * hh, eps);
        params[k][i] -= lr * std::clamp(m / den, T(-1), T(1));
      }
  return toResult(params, states);
}

Result pairReference(const Data<double> &d) {
  std::vector<std::vector<double>> params = d.params;
  std::vector<std::vector<std::vector<double>>> states;
  for (const auto &p : params)
    states.push_back({std::vector<double>(p.size(), 0.5)});
  for (const auto &step : d.read)
    for (size_t k = 0; k < params.size(); ++k)
      for (size_t i = 0; i < params[k].size(); ++i) {
        double g = step[0][k][i], a = step[1][k][i], b = step[2][k][i];
        double &s = states[k][0][i];
        s = s + a * g;
        params[k][i] -= 0.05 * (g + 2 * a - b) + 0.125 * s * b;
      }
  return toResult(params, states);
}

Result scaledReference(const Data<double> &d) {
  std::vector<std::vector<double>> params = d.params;
  for (const auto &step : d.read) {
    double q = 0;
    for (size_t k = 0; k < params.size(); ++k)
      for (size_t i = 0; i < params[k].size(); ++i)
        q += step[0][k][i] * step[1][k][i];
    for (size_t k = 0; k < params.size(); ++k) {
      double squares = 0;
      for (double h : step[1][k])
        squares += h * h;
      double n = std::sqrt(squares);
      for (size_t i = 0; i < params[k].size(); ++i)
        params[k][i] -= 0.1 * (step[1][k][i] / (n + 1) + 0.001 * q);
    }
  }
  return toResult(params, std::vector<std::vector<std::vector<double>>>{});
}

void expectClose(const Result &got, const Result &want, double tol) {
  auto check = [&](const std::vector<std::vector<double>> &a,
                   const std::vector<std::vector<double>> &b,
                   const char *what) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) {
      ASSERT_EQ(a[k].size(), b[k].size());
      size_t bad = 0;
      for (size_t i = 0; i < a[k].size() && bad < 5; ++i)
        if (!(std::fabs(a[k][i] - b[k][i]) <=
              tol * std::max(1.0, std::fabs(b[k][i]))))
          ADD_FAILURE() << what << " " << k << "[" << i << "] = " << a[k][i]
                        << ", the reference has " << b[k][i] << " (" << ++bad
                        << ")";
    }
  };
  check(got.params, want.params, "param");
  check(got.states, want.states, "state");
}

void expectBitIdentical(const Result &a, const Result &b) {
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t k = 0; k < a.params.size(); ++k)
    EXPECT_TRUE(bitIdentical(a.params[k], b.params[k])) << "param " << k;
  ASSERT_EQ(a.states.size(), b.states.size());
  for (size_t k = 0; k < a.states.size(); ++k)
    EXPECT_TRUE(bitIdentical(a.states[k], b.states[k])) << "state " << k;
}

template <typename T> void checkSophia() {
  SCOPED_TRACE((std::is_same_v<T, float> ? "f32" : "f64"));
  Rule rule = load(sophiaManifest(std::is_same_v<T, float> ? DType::F32
                                                           : DType::F64));
  ASSERT_EQ(rule.info().inputs, std::vector<std::string>{"h"});
  Data<T> d = makeData<T>(1, 12, 3, /*positiveInputs=*/true);
  Result want = sophiaReference(d);
  for (int64_t chunk : {int64_t(5), int64_t(32768)}) {
    SCOPED_TRACE("chunkSize " + std::to_string(chunk));
    Result one = runOptimizer(rule, d, 1, chunk, {0});
    // The same operations in the same type: only the compilers' choices
    // (none expected) could differ.
    expectClose(one, want, std::is_same_v<T, float> ? 1e-6 : 1e-14);
    Result three = runOptimizer(rule, d, 3, chunk, {0});
    expectBitIdentical(three, one);
  }
}

TEST(RuleInputs, SophiaOnePassF32AndF64) {
  checkSophia<float>();
  checkSophia<double>();
}

TEST(RuleInputs, TwoInputsAreMatchedByNameInDeclarationOrder) {
  Rule rule = load(pairManifest());
  ASSERT_EQ(rule.info().inputs, (std::vector<std::string>{"a", "b"}));
  Data<double> d = makeData<double>(2, 6, 5, false);
  Result want = pairReference(d);
  Result given = runOptimizer(rule, d, 1, 7, {0, 1});
  expectClose(given, want, 1e-13);
  // Given b first: the table still has a, then b.
  Result reversed = runOptimizer(rule, d, 3, 7, {1, 0});
  expectBitIdentical(reversed, given);
}

TEST(RuleInputs, BothPassesOfARuleWithReductionsReadTheInputs) {
  Rule rule = load(scaledManifest());
  ASSERT_TRUE(rule.reduceKernel());
  Data<double> d = makeData<double>(1, 5, 9, false);
  Result want = scaledReference(d);
  for (int64_t chunk : {int64_t(3), int64_t(32768)}) {
    Result one = runOptimizer(rule, d, 1, chunk, {0});
    // The sums are added per chunk, then in chunk order.
    expectClose(one, want, 1e-11);
    Result three = runOptimizer(rule, d, 3, chunk, {0});
    expectBitIdentical(three, one);
  }
}

/// An optimizer of sophia64 over two tensors, to refuse calls on.
struct Fixture {
  Rule rule = load(sophiaManifest(DType::F64));
  std::vector<double> p0 = {1, 2, 3}, p1 = {4, 5};
  std::vector<double> g0 = {0.5, -1, 2}, g1 = {1, 1};
  std::vector<double> h0 = {1, 2, 0.5}, h1 = {0.25, 3};
  std::unique_ptr<Optimizer> opt;
  Fixture(OptimizerOptions o = {}) {
    o.threads = 2;
    o.chunkSize = 2;
    opt = std::make_unique<Optimizer>(
        rule, std::vector<Param>{{p0.data(), p0.size()},
                                 {p1.data(), p1.size()}},
        o);
  }
  std::vector<Grad> grads() {
    return {{g0.data(), g0.size()}, {g1.data(), g1.size()}};
  }
  std::vector<Input> inputs() {
    return {{"h", {{h0.data(), h0.size()}, {h1.data(), h1.size()}}}};
  }
  /// The message of a step that must throw; and that nothing changed.
  std::string refused(const std::vector<Grad> &g,
                      const std::vector<Input> &in) {
    std::vector<double> q0 = p0, q1 = p1;
    const double *m = static_cast<const double *>(opt->state(0, "m"));
    std::vector<double> m0(m, m + 3);
    int64_t steps = opt->stepCount();
    std::string what = "no error";
    try {
      opt->step(g, in);
    } catch (const Error &e) {
      what = e.what();
    }
    EXPECT_TRUE(bitIdentical(p0, q0) && bitIdentical(p1, q1))
        << "a refused step changed the parameters: " << what;
    EXPECT_TRUE(bitIdentical(std::vector<double>(m, m + 3), m0));
    EXPECT_EQ(opt->stepCount(), steps);
    return what;
  }
};

TEST(RuleInputs, StepWithoutInputsNamesThemAndTheCall) {
  Fixture f;
  std::vector<double> q0 = f.p0;
  try {
    f.opt->step(f.grads());
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(),
                 "optim::Optimizer::step: rule 'sophia64' takes the "
                 "per-coordinate input 'h' with every step, besides the "
                 "gradients: call step(grads, inputs) with one tensor per "
                 "parameter for it, e.g. {{\"h\", {...}}}");
  }
  EXPECT_TRUE(bitIdentical(f.p0, q0));
  EXPECT_EQ(f.opt->stepCount(), 0);
  // Two inputs: both named.
  Rule pair = load(pairManifest());
  std::vector<double> p(3), g(3);
  Optimizer opt(pair, {Param(p.data(), 3)});
  try {
    opt.step({Grad(g.data(), 3)});
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(
                  "takes the per-coordinate inputs 'a' and 'b' with every "
                  "step"),
              std::string::npos)
        << e.what();
  }
}

TEST(RuleInputs, RefusedStepsSayWhatWasWrongAndChangeNothing) {
  Fixture f;
  auto inputs = f.inputs();
  auto has = [](const std::string &msg, const std::string &part) {
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
  };
  // Names.
  has(f.refused(f.grads(), {}),
      "optim::Optimizer::step: rule 'sophia64' needs its input 'h' with "
      "every step; it is missing");
  std::vector<Input> unknown = inputs;
  unknown.push_back({"noise", inputs[0].tensors});
  has(f.refused(f.grads(), unknown),
      "rule 'sophia64' has no input 'noise' (its inputs: 'h')");
  std::vector<Input> twice = inputs;
  twice.push_back(inputs[0]);
  has(f.refused(f.grads(), twice), "input 'h' is given twice");
  // Counts, sizes, dtypes, pointers.
  std::vector<Input> one = inputs;
  one[0].tensors.pop_back();
  has(f.refused(f.grads(), one),
      "input 'h' has 1 tensors; expected 2 (one per parameter)");
  std::vector<Input> size = inputs;
  size[0].tensors[1].size = 1;
  has(f.refused(f.grads(), size),
      "input 'h' of parameter 1 has 1 elements but its parameter has 2");
  std::vector<float> hf(2);
  std::vector<Input> dtype = inputs;
  dtype[0].tensors[1] = Grad(hf.data(), 2);
  has(f.refused(f.grads(), dtype),
      "input 'h' of parameter 1 is f32, the rule is f64");
  std::vector<Input> null = inputs;
  null[0].tensors[0] = Grad(static_cast<const double *>(nullptr), 3);
  has(f.refused(f.grads(), null), "input 'h' of parameter 0 is a null pointer");
  std::vector<char> raw(64);
  std::vector<Input> misaligned = inputs;
  misaligned[0].tensors[1].data = raw.data() + 1;
  has(f.refused(f.grads(), misaligned),
      "input 'h' of parameter 1 is not aligned to its 8-byte elements");
  // Overlap with what the step writes.
  std::vector<Input> onParam = inputs;
  onParam[0].tensors[1] = Grad(f.p0.data(), 2);
  has(f.refused(f.grads(), onParam),
      "input 'h' of parameter 1 overlaps parameter 0 in memory (the step "
      "writes there while it reads the input)");
  std::vector<Input> onState = inputs;
  onState[0].tensors[1] =
      Grad(static_cast<const double *>(f.opt->state(0, "hh")), 2);
  has(f.refused(f.grads(), onState),
      "input 'h' of parameter 1 overlaps state 'hh' of parameter 0");
  // The gradients are still checked (first).
  std::vector<Grad> badGrads = f.grads();
  badGrads[0].size = 2;
  has(f.refused(badGrads, inputs),
      "gradient 0 has 2 elements but its parameter has 3");
  has(f.refused({f.grads()[0]}, inputs), "expected 2 gradients");
  // A rule without inputs: none may be given.
  std::vector<double> p(2), g(2);
  Rule plain(RuleInfo{"plain", DType::F64, {}, {}, {}, {}, {}, {}},
             +[](void *const *, const int64_t *, const int64_t *, int64_t,
                int64_t, const double *, int64_t, const void *const *,
                const uint64_t *) {},
             nullptr);
  Optimizer opt(plain, {Param(p.data(), 2)});
  EXPECT_TRUE(opt.step({Grad(g.data(), 2)}, {}));
  try {
    opt.step({Grad(g.data(), 2)}, {{"h", {Grad(g.data(), 2)}}});
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    has(e.what(), "rule 'plain' has no input 'h' (it has none)");
  }
  EXPECT_EQ(opt.stepCount(), 1);
  // After all that, a good step takes.
  EXPECT_TRUE(f.opt->step(f.grads(), inputs));
  EXPECT_EQ(f.opt->stepCount(), 1);
}

TEST(RuleInputs, InputsMayOverlapTheGradientsAndEachOther) {
  Rule rule = load(pairManifest());
  std::vector<double> p = {1, 2, 3}, g = {0.5, 0.25, -1};
  Optimizer opt(rule, {Param(p.data(), 3)});
  EXPECT_TRUE(opt.step({Grad(g.data(), 3)}, {{"a", {Grad(g.data(), 3)}},
                                             {"b", {Grad(g.data(), 3)}}}));
  // s = 0.5 + g^2; p -= 0.05 * (g + 2g - g) + 0.125 * s * g
  for (int i = 0; i < 3; ++i) {
    double gi = g[i], s = 0.5 + gi * gi;
    EXPECT_DOUBLE_EQ(p[i], (i + 1) - (0.05 * (gi + 2 * gi - gi) +
                                      0.125 * s * gi));
  }
}

TEST(RuleInputs, ANonFiniteInputSkipsTheStepWithSkipNonFinite) {
  OptimizerOptions o;
  o.skipNonFinite = true;
  Fixture f(o);
  std::vector<double> q0 = f.p0, q1 = f.p1;
  for (double bad : {kNaN, kInf, -kInf}) {
    f.h1[1] = bad;
    EXPECT_FALSE(f.opt->step(f.grads(), f.inputs()));
    EXPECT_TRUE(bitIdentical(f.p0, q0) && bitIdentical(f.p1, q1));
  }
  EXPECT_EQ(f.opt->skippedSteps(), 3);
  EXPECT_EQ(f.opt->stepCount(), 0);
  const double *hh = static_cast<const double *>(f.opt->state(1, "hh"));
  EXPECT_EQ(hh[1], 0.0);
  f.h1[1] = 3;
  EXPECT_TRUE(f.opt->step(f.grads(), f.inputs()));
  EXPECT_EQ(f.opt->stepCount(), 1);
  EXPECT_EQ(hh[1], (1 - 0.99) * 3.0); // b2 hh + (1 - b2) h from hh = 0
  // Without the option the NaN goes through, as a gradient's would.
  Fixture plain;
  plain.h0[0] = kNaN;
  EXPECT_TRUE(plain.opt->step(plain.grads(), plain.inputs()));
  EXPECT_TRUE(std::isnan(
      static_cast<const double *>(plain.opt->state(0, "hh"))[0]));
}

TEST(RuleInputs, ManifestsListTheInputs) {
  Manifest m = sophiaManifest(DType::F32);
  std::string text = writeManifest(m);
  json doc = json::parse(text);
  EXPECT_EQ(doc["abi_version"], OPTIM_KERNEL_ABI_VERSION);
  EXPECT_EQ(doc["inputs"], json::array({"h"}));
  EXPECT_EQ(readManifest(text, "m.json").info.inputs,
            std::vector<std::string>{"h"});
  EXPECT_EQ(writeManifest(readManifest(text, "m.json")), text);
  // None: absent, and absent reads as none.
  m.info.inputs.clear();
  EXPECT_FALSE(json::parse(writeManifest(m)).contains("inputs"));
  EXPECT_TRUE(readManifest(writeManifest(m), "m.json").info.inputs.empty());

  auto message = [](const json &d) {
    try {
      readManifest(d.dump(), "sophia.manifest.json");
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  json bad = doc;
  bad["inputs"] = "h";
  EXPECT_EQ(message(bad), "optim: manifest 'sophia.manifest.json': "
                          "\"inputs\" must be a list of names");
  bad["inputs"] = json::array({"h", 3});
  EXPECT_EQ(message(bad), "optim: manifest 'sophia.manifest.json': input 1 "
                          "is not a name (a string)");
  bad["inputs"] = json::array({""});
  EXPECT_EQ(message(bad), "optim: manifest 'sophia.manifest.json': input 0 "
                          "has an empty name");
  bad["inputs"] = json::array({"h", "h"});
  EXPECT_EQ(message(bad), "optim: manifest 'sophia.manifest.json': input "
                          "'h' is listed twice");
  // Version 6 manifests predate inputs (and their tables): recompile.
  bad = doc;
  bad["abi_version"] = 6;
  EXPECT_EQ(message(bad), "optim: manifest 'sophia.manifest.json': compiled "
                          "for kernel ABI 6, this runtime implements " +
                              std::to_string(OPTIM_KERNEL_ABI_VERSION) +
                              "; recompile it");
}

// Trajectories take rules with inputs (test/e2e/TrajectoryInputsTest.cpp)
// but need their reverse mode, which hand-written kernels do not have.
TEST(RuleInputs, TrajectoriesNeedTheReverseMode) {
  Rule rule = load(sophiaManifest(DType::F64));
  try {
    Trajectory traj(rule, {3});
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim::Trajectory: rule 'sophia64' has no reverse "
                           "mode; compile it with CompileOptions::vjp");
  }
}

//===----------------------------------------------------------------------===//
// C API
//===----------------------------------------------------------------------===//

optim_rule *handleOf(const Rule &rule) {
  auto handle = std::make_unique<optim_rule>();
  handle->rule = rule;
  capi::trackHandle(handle.get(), capi::HandleKind::Rule);
  return handle.release();
}

TEST(RuleInputs, ThroughTheCApi) {
  optim_rule *rule = handleOf(load(sophiaManifest(DType::F32)));
  size_t n = 0;
  ASSERT_EQ(optim_rule_num_inputs(rule, &n), OPTIM_OK);
  EXPECT_EQ(n, 1u);
  const char *name = nullptr;
  ASSERT_EQ(optim_rule_input(rule, 0, &name), OPTIM_OK);
  EXPECT_STREQ(name, "h");
  EXPECT_EQ(optim_rule_input(rule, 1, &name), OPTIM_ERROR_NOT_FOUND);
  EXPECT_STREQ(optim_last_error(), "optim_rule_input: index 1 is out of "
                                   "range: rule 'sophia32' has 1 inputs");
  EXPECT_EQ(optim_rule_input(rule, 0, nullptr), OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(optim_rule_num_inputs(nullptr, &n), OPTIM_ERROR_INVALID_ARGUMENT);

  Data<float> d = makeData<float>(1, 4, 21, true);
  std::vector<std::vector<float>> params = d.params;
  std::vector<float *> ptrs;
  std::vector<int64_t> sizes;
  for (auto &p : params) {
    ptrs.push_back(p.data());
    sizes.push_back(int64_t(p.size()));
  }
  optim_options options;
  optim_options_init(&options);
  options.threads = 3;
  options.chunk_size = 5;
  optim_optimizer *opt = nullptr;
  ASSERT_EQ(optim_optimizer_create_f32(rule, ptrs.data(), sizes.data(),
                                       ptrs.size(), &options, &opt),
            OPTIM_OK)
      << optim_last_error();
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);

  auto pointers = [](const std::vector<std::vector<float>> &v) {
    std::vector<const float *> out;
    for (const auto &x : v)
      out.push_back(x.data());
    return out;
  };
  // Refused calls first; each changes nothing.
  std::vector<const float *> g = pointers(d.read[0][0]),
                             h = pointers(d.read[0][1]);
  int stepped = -1;
  EXPECT_EQ(optim_optimizer_step_f32(opt, g.data(), sizes.data(), g.size(),
                                     &stepped),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(optim_last_error(),
               "optim_optimizer_step_f32: rule 'sophia32' takes the "
               "per-coordinate input 'h' with every step, besides the "
               "gradients: call optim_optimizer_step_inputs_f32 instead");
  optim_input_f32 in = {"h", h.data(), sizes.data()};
  optim_input_f32 wrongName = {"noise", h.data(), sizes.data()};
  EXPECT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                            g.size(), &wrongName, 1, &stepped),
            OPTIM_ERROR_NOT_FOUND);
  EXPECT_NE(std::string(optim_last_error())
                .find("rule 'sophia32' has no input 'noise' (its inputs: "
                      "'h')"),
            std::string::npos);
  EXPECT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                            g.size(), nullptr, 0, &stepped),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(optim_last_error()).find("it is missing"),
            std::string::npos);
  optim_input_f32 twice[2] = {in, in};
  EXPECT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                            g.size(), twice, 2, &stepped),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(optim_last_error()).find("is given twice"),
            std::string::npos);
  optim_input_f32 noName = {nullptr, h.data(), sizes.data()};
  EXPECT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                            g.size(), &noName, 1, &stepped),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(optim_last_error(),
               "optim_optimizer_step_inputs_f32: input 0: name is NULL");
  optim_input_f32 noData = {"h", nullptr, sizes.data()};
  EXPECT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                            g.size(), &noData, 1, &stepped),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(optim_last_error(),
               "optim_optimizer_step_inputs_f32: input 0 ('h'): data is NULL "
               "but num_grads is not 0");
  std::vector<int64_t> shortSizes = sizes;
  shortSizes[3] = 999;
  optim_input_f32 badSize = {"h", h.data(), shortSizes.data()};
  EXPECT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                            g.size(), &badSize, 1, &stepped),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(optim_last_error())
                .find("input 'h' of parameter 3 has 999 elements but its "
                      "parameter has 1000"),
            std::string::npos);
  EXPECT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                            g.size(), nullptr, 1, &stepped),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(stepped, -1);
  int64_t count = -1;
  ASSERT_EQ(optim_optimizer_step_count(opt, &count), OPTIM_OK);
  EXPECT_EQ(count, 0);
  EXPECT_TRUE(bitIdentical(params[3], d.params[3]));

  for (const auto &step : d.read) {
    g = pointers(step[0]);
    h = pointers(step[1]);
    in = {"h", h.data(), sizes.data()};
    ASSERT_EQ(optim_optimizer_step_inputs_f32(opt, g.data(), sizes.data(),
                                              g.size(), &in, 1, &stepped),
              OPTIM_OK)
        << optim_last_error();
    EXPECT_EQ(stepped, 1);
  }
  EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK);
  // The same as the C++ API with one thread.
  std::vector<std::vector<float>> want;
  runOptimizer(load(sophiaManifest(DType::F32)), d, 1, 5, {0}, &want);
  for (size_t k = 0; k < want.size(); ++k)
    EXPECT_TRUE(bitIdentical(params[k], want[k])) << "param " << k;
}

TEST(RuleInputs, ThroughTheCApiInF64AndWithoutInputs) {
  optim_rule *rule = handleOf(load(pairManifest()));
  std::vector<double> p = {1, 2}, g = {0.5, -0.5}, a = {1, 1}, b = {2, 0};
  double *pp = p.data();
  const double *gp = g.data(), *ap = a.data(), *bp = b.data();
  int64_t size = 2;
  optim_optimizer *opt = nullptr;
  ASSERT_EQ(optim_optimizer_create_f64(rule, &pp, &size, 1, nullptr, &opt),
            OPTIM_OK);
  optim_input_f64 in[2] = {{"b", &bp, &size}, {"a", &ap, &size}};
  int stepped = 0;
  ASSERT_EQ(optim_optimizer_step_inputs_f64(opt, &gp, &size, 1, in, 2,
                                            &stepped),
            OPTIM_OK)
      << optim_last_error();
  EXPECT_EQ(stepped, 1);
  // s = 0.5 + a g; p -= 0.05 (g + 2a - b) + 0.125 s b
  EXPECT_DOUBLE_EQ(p[0], 1 - (0.05 * (0.5 + 2 - 2) + 0.125 * 1.0 * 2));
  EXPECT_DOUBLE_EQ(p[1], 2 - (0.05 * (-0.5 + 2 - 0) + 0.125 * 0.0 * 0));
  EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK);
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

//===----------------------------------------------------------------------===//
// CUDA executor, against a fake driver
//===----------------------------------------------------------------------===//

struct FakeGPU : fakecuda::Memory {
  int launches = 0;
};
FakeGPU *gpu = nullptr;
cuda::CUfunction kSophia = reinterpret_cast<cuda::CUfunction>(0x5150);
cuda::CUmodule kModule = reinterpret_cast<cuda::CUmodule>(0x5678);

cuda::CUresult gAttr(int *v, int attr, cuda::CUdevice) {
  *v = attr == cuda::kAttrComputeCapabilityMajor ? 9 : 0;
  return 0;
}
cuda::CUresult gSetCurrent(cuda::CUcontext) { return 0; }
cuda::CUresult gLoad(cuda::CUmodule *m, const void *) {
  *m = kModule;
  return 0;
}
cuda::CUresult gGetFunction(cuda::CUfunction *f, cuda::CUmodule,
                            const char *name) {
  if (std::string(name) != "optim_rule_sophia")
    return 500;
  *f = kSophia;
  return 0;
}
cuda::CUresult gStreamCreate(cuda::CUstream *s, unsigned) {
  *s = reinterpret_cast<cuda::CUstream>(0x77);
  return 0;
}

/// Sophia in f32 as the GPU kernel ABI hands it over: the chunk table
/// (p, g, h, m, hh per chunk) in "device" memory, the hypers by value.
cuda::CUresult gLaunch(cuda::CUfunction f, unsigned gx, unsigned, unsigned,
                       unsigned, unsigned, unsigned, unsigned, cuda::CUstream,
                       void **params, void **) {
  if (f != kSophia)
    return 1;
  ++gpu->launches;
  auto ptrs = *static_cast<float **const *>(params[0]);
  auto lengths = *static_cast<const int64_t *const *>(params[1]);
  int64_t begin = *static_cast<int64_t *>(params[3]);
  float h[5];
  for (int k = 0; k < 5; ++k)
    h[k] = *static_cast<float *>(params[5 + k]);
  for (unsigned blk = 0; blk < gx; ++blk) {
    int64_t c = begin + blk;
    float *p = ptrs[c * 5], *g = ptrs[c * 5 + 1], *in = ptrs[c * 5 + 2],
          *m = ptrs[c * 5 + 3], *hh = ptrs[c * 5 + 4];
    for (int64_t i = 0; i < lengths[c]; ++i) {
      m[i] = h[1] * m[i] + (1 - h[1]) * g[i];
      hh[i] = h[2] * hh[i] + (1 - h[2]) * in[i];
      float den = std::max(h[3] * hh[i], h[4]);
      p[i] -= h[0] * std::clamp(m[i] / den, -1.0f, 1.0f);
    }
  }
  return 0;
}

std::shared_ptr<const cuda::DriverAPI> gpuDriver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = gAttr;
  d->cuCtxSetCurrent = gSetCurrent;
  d->cuModuleLoadData = gLoad;
  d->cuModuleGetFunction = gGetFunction;
  d->cuStreamCreate = gStreamCreate;
  d->cuLaunchKernel = gLaunch;
  return d;
}

class CudaInputs : public ::testing::Test {
protected:
  void SetUp() override {
    gpu = &state;
    fakecuda::memory = &state;
  }
  void TearDown() override {
    gpu = nullptr;
    fakecuda::memory = nullptr;
  }
  FakeGPU state;
};

std::string gpuManifest() {
  Manifest m = sophiaManifest(DType::F32);
  m.info.name = "sophia";
  m.symbol = "optim_rule_sophia";
  m.target = "nvptx64-nvidia-cuda sm_90";
  return writeManifest(m);
}

TEST_F(CudaInputs, TheChunkTableCarriesTheInputsAndFollowsThemWhenTheyMove) {
  auto dev = cuda::Device::open(gpuDriver());
  cuda::Rule rule = dev->loadRule("CUBIN", gpuManifest(), "sophia.manifest");
  ASSERT_EQ(rule.info().inputs, std::vector<std::string>{"h"});
  Data<float> d = makeData<float>(1, 6, 17, true);
  // Two copies of the inputs, used on alternate steps: the table must be
  // rebuilt whenever the input's address changes (the gradient's does not).
  std::vector<std::vector<cuda::Buffer>> hBufs(2);
  std::vector<cuda::Buffer> pBufs, gBufs;
  std::vector<cuda::DeviceTensor> params, grads;
  for (size_t k = 0; k < kSizes.size(); ++k) {
    size_t bytes = size_t(kSizes[k]) * 4;
    pBufs.emplace_back(dev, bytes);
    pBufs.back().upload(d.params[k].data(), bytes);
    gBufs.emplace_back(dev, bytes);
    for (auto &hb : hBufs)
      hb.emplace_back(dev, bytes);
    params.push_back({pBufs.back().get(), kSizes[k]});
    grads.push_back({gBufs.back().get(), kSizes[k]});
  }
  cuda::OptimizerOptions o;
  o.chunkSize = 8;
  cuda::Optimizer opt(rule, params, o);
  try {
    opt.step(grads);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: CUDA: rule 'sophia' takes the "
                           "per-coordinate input 'h' with every step, besides "
                           "the gradients: call step(grads, inputs) with one "
                           "device tensor per parameter for it");
  }
  for (size_t s = 0; s < d.read.size(); ++s) {
    std::vector<cuda::DeviceTensor> h;
    for (size_t k = 0; k < kSizes.size(); ++k) {
      size_t bytes = size_t(kSizes[k]) * 4;
      gBufs[k].upload(d.read[s][0][k].data(), bytes);
      hBufs[s % 2][k].upload(d.read[s][1][k].data(), bytes);
      h.push_back({hBufs[s % 2][k].get(), kSizes[k]});
    }
    opt.step(grads, {{"h", h}});
  }
  opt.synchronize();
  EXPECT_EQ(state.launches, int(d.read.size()));
  EXPECT_EQ(opt.stepCount(), int64_t(d.read.size()));
  Result want = sophiaReference(d);
  for (size_t k = 0; k < kSizes.size(); ++k) {
    std::vector<float> got(static_cast<size_t>(kSizes[k]));
    std::vector<float> m(got.size());
    pBufs[k].download(got.data(), got.size() * 4);
    opt.readState("m", k, m.data());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(double(got[i]), want.params[k][i]) << k << " " << i;
      ASSERT_EQ(double(m[i]), want.states[2 * k][i]) << k << " " << i;
    }
  }
}

TEST_F(CudaInputs, RefusedStepsLaunchNothing) {
  auto dev = cuda::Device::open(gpuDriver());
  cuda::Rule rule = dev->loadRule("CUBIN", gpuManifest(), "sophia.manifest");
  cuda::Buffer p(dev, 64), g(dev, 64), h(dev, 64);
  cuda::Optimizer opt(rule, {{p.get(), 16}});
  auto message = [&](const std::vector<cuda::DeviceInput> &in) {
    try {
      opt.step({{g.get(), 16}}, in);
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({}), "optim: CUDA: rule 'sophia' needs its input 'h' "
                         "with every step; it is missing");
  EXPECT_EQ(message({{"h", {{h.get(), 16}}}, {"x", {{h.get(), 16}}}}),
            "optim: CUDA: rule 'sophia' has no input 'x' (its inputs: 'h')");
  EXPECT_EQ(message({{"h", {{h.get(), 16}}}, {"h", {{h.get(), 16}}}}),
            "optim: CUDA: input 'h' is given twice");
  EXPECT_EQ(message({{"h", {}}}),
            "optim: CUDA: input 'h' has 0 tensors for 1 parameter tensors "
            "(one per parameter)");
  EXPECT_EQ(message({{"h", {{h.get(), 15}}}}),
            "optim: CUDA: input 'h' of parameter 0 has 15 elements, its "
            "parameter 16");
  EXPECT_EQ(message({{"h", {{h.get() + 2, 16}}}}),
            "optim: CUDA: input 'h' of parameter 0 is null or not aligned to "
            "its element type");
  EXPECT_EQ(message({{"h", {{0, 16}}}}),
            "optim: CUDA: input 'h' of parameter 0 is null or not aligned to "
            "its element type");
  EXPECT_EQ(state.launches, 0);
  EXPECT_EQ(opt.stepCount(), 0);
  EXPECT_EQ(message({{"h", {{h.get(), 16}}}}), "no error");
  EXPECT_EQ(state.launches, 1);
}

} // namespace
