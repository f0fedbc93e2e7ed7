//===- RuleNumericsTest.cpp - compiled rules against published formulas ---===//
//
// Every rule of examples/ is JIT-compiled and run for many steps on tensors
// of awkward sizes, then compared with a reference written here straight
// from the rule's published formula (PyTorch's documented algorithms), not
// from the .optim file. Tolerance: relative 1e-5 plus absolute 1e-6, in f32
// (the reference computes in f32 too, with contraction disabled).
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

using namespace optim;

namespace {

using Hypers = std::map<std::string, double>;

/// The hyperparameters of the references, resolved once (a lookup by name
/// per coordinate would dominate the run time).
struct H {
  float lr = 0, mu = 0, alpha = 0, beta1 = 0, beta2 = 0, eps = 0,
        weight_decay = 0, k = 0;
  explicit H(const Hypers &m) {
    auto get = [&](const char *name, float &field) {
      auto it = m.find(name);
      if (it != m.end())
        field = float(it->second);
    };
    get("lr", lr);
    get("mu", mu);
    get("alpha", alpha);
    get("beta1", beta1);
    get("beta2", beta2);
    get("eps", eps);
    get("weight_decay", weight_decay);
    get("k", k);
  }
};

/// One coordinate of a rule: p, g and the state in, p and the state out.
using RefStep = std::function<void(float &p, float g, std::vector<float> &s,
                                   int64_t t, const H &h)>;

/// beta ** t as std::pow computes it, memoized: the references call it for
/// every coordinate of a step with the same arguments.
float powt(float base, int64_t t) {
  struct Entry {
    float base;
    int64_t t;
    float value;
  };
  static thread_local Entry memo[4] = {};
  static thread_local unsigned next = 0;
  for (const Entry &e : memo)
    if (e.t == t && e.base == base && t != 0)
      return e.value;
  Entry &e = memo[next++ % 4];
  e = {base, t, std::pow(base, float(t))};
  return e.value;
}

float signOf(float x) { return x > 0 ? 1.0f : x < 0 ? -1.0f : x; }

struct Case {
  const char *file; // examples/<file>.optim, or the name of `source`.
  unsigned numStates;
  Hypers hypers; // Every hyperparameter, with test values.
  RefStep ref;
  const char *source = nullptr; // A rule written here instead of a file.
};

/// Every built-in function a per-coordinate rule can use, in one rule, so
/// that the code generator's mapping of each is checked against <cmath>
/// (whose tanhf and logf may differ from the kernel's by an ulp or two: the
/// tolerance covers that).
const char *kBuiltinsRule = R"(
rule builtins(lr = 0.01, k = 2.0) {
  state th = 0, sg = 0, ex = 0, lg = 0, pw = 0, mx = 0, cl = 0, sn = 0,
        sl = 0, sq = 0
  th = tanh(g)
  sg = sigmoid(g)
  ex = exp(-abs(g))
  lg = log(1 + abs(g))
  pw = pow(abs(g) + 1, 0.5)
  mx = max(g, 0) - min(g, 0)
  cl = clamp(g, -1, 1)
  sn = sign(g)
  sl = select(g >= 0, g, -2 * g)
  sq = g ** 2 / k
  p -= lr * (th + sl) / (1 + t)
}
)";

std::vector<Case> cases() {
  return {
      {"sgd",
       0,
       {{"lr", 0.05}},
       [](float &p, float g, std::vector<float> &, int64_t, const H &h) {
         p = p - h.lr * g;
       }},
      {"momentum",
       1,
       {{"lr", 0.01}, {"mu", 0.9}},
       [](float &p, float g, std::vector<float> &s, int64_t, const H &h) {
         s[0] = h.mu * s[0] + g;
         p = p - h.lr * s[0];
       }},
      {"nesterov",
       1,
       {{"lr", 0.01}, {"mu", 0.8}},
       [](float &p, float g, std::vector<float> &s, int64_t, const H &h) {
         s[0] = h.mu * s[0] + g;
         p = p - h.lr * (g + h.mu * s[0]);
       }},
      {"adagrad",
       1,
       {{"lr", 0.02}, {"eps", 1e-10}},
       [](float &p, float g, std::vector<float> &s, int64_t, const H &h) {
         s[0] = s[0] + g * g;
         p = p - h.lr * g / (std::sqrt(s[0]) + h.eps);
       }},
      {"rmsprop",
       1,
       {{"lr", 0.01}, {"alpha", 0.99}, {"eps", 1e-8}},
       [](float &p, float g, std::vector<float> &s, int64_t, const H &h) {
         float a = h.alpha;
         s[0] = a * s[0] + (1 - a) * g * g;
         p = p - h.lr * g / (std::sqrt(s[0]) + h.eps);
       }},
      {"adam",
       2,
       {{"lr", 1e-3}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}},
       [](float &p, float g, std::vector<float> &s, int64_t t, const H &h) {
         float b1 = h.beta1, b2 = h.beta2;
         s[0] = b1 * s[0] + (1 - b1) * g;
         s[1] = b2 * s[1] + (1 - b2) * g * g;
         float mhat = s[0] / (1 - powt(b1, t));
         float vhat = s[1] / (1 - powt(b2, t));
         p = p - h.lr * mhat / (std::sqrt(vhat) + h.eps);
       }},
      {"adamw",
       2,
       {{"lr", 1e-3},
        {"beta1", 0.9},
        {"beta2", 0.999},
        {"eps", 1e-8},
        {"weight_decay", 0.01}},
       [](float &p, float g, std::vector<float> &s, int64_t t, const H &h) {
         float b1 = h.beta1, b2 = h.beta2, lr = h.lr;
         // Loshchilov & Hutter (2019), Algorithm 2: the decay uses the
         // parameter before the step, decoupled from the adaptive term.
         s[0] = b1 * s[0] + (1 - b1) * g;
         s[1] = b2 * s[1] + (1 - b2) * g * g;
         float bc1 = 1 - powt(b1, t);
         float bc2 = 1 - powt(b2, t);
         float decay = lr * h.weight_decay * p;
         float adaptive = lr * (s[0] / bc1) / (std::sqrt(s[1] / bc2) + h.eps);
         p = (p - decay) - adaptive;
       }},
      {"amsgrad",
       3,
       {{"lr", 1e-3}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}},
       [](float &p, float g, std::vector<float> &s, int64_t t, const H &h) {
         float b1 = h.beta1, b2 = h.beta2;
         s[0] = b1 * s[0] + (1 - b1) * g;
         s[1] = b2 * s[1] + (1 - b2) * g * g;
         s[2] = std::max(s[2], s[1]);
         float bc1 = 1 - powt(b1, t);
         float bc2 = 1 - powt(b2, t);
         // torch.optim.Adam(amsgrad=True): denom = sqrt(vmax)/sqrt(bc2) + eps.
         p = p -
             (h.lr / bc1) * s[0] / (std::sqrt(s[2]) / std::sqrt(bc2) + h.eps);
       }},
      {"builtins",
       10,
       {{"lr", 0.01}, {"k", 3.0}},
       [](float &p, float g, std::vector<float> &s, int64_t t, const H &h) {
         // Each state holds one built-in of the last gradient.
         s[0] = std::tanh(g);
         s[1] = 1.0f / (1.0f + std::exp(-g));
         s[2] = std::exp(-std::fabs(g));
         s[3] = std::log(1 + std::fabs(g));
         s[4] = std::pow(std::fabs(g) + 1, 0.5f);
         s[5] = std::fmax(g, 0.0f) - std::fmin(g, 0.0f);
         s[6] = std::fmin(std::fmax(g, -1.0f), 1.0f);
         s[7] = signOf(g);
         s[8] = g >= 0 ? g : -2 * g;
         s[9] = std::pow(g, 2.0f) / h.k;
         p = p - h.lr * (s[0] + s[8]) / (1 + float(t));
       },
       kBuiltinsRule},
      {"lion",
       1,
       {{"lr", 1e-4}, {"beta1", 0.9}, {"beta2", 0.99}, {"weight_decay", 0.1}},
       [](float &p, float g, std::vector<float> &s, int64_t, const H &h) {
         float b1 = h.beta1, b2 = h.beta2, lr = h.lr;
         float c = b1 * s[0] + (1 - b1) * g;
         p = p - lr * (signOf(c) + h.weight_decay * p);
         s[0] = b2 * s[0] + (1 - b2) * g;
       }},
  };
}

/// A deterministic value with awkward magnitudes: eight decades, exact
/// zeros, both signs.
float awkward(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t x = (a + 1) * 0x9E3779B97F4A7C15ull ^ b * 0xBF58476D1CE4E5B9ull ^
               c * 0x94D049BB133111EBull;
  x ^= x >> 31;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 29;
  if ((x & 63) == 0)
    return 0.0f;
  float unit = float((x >> 11) & 0xFFFFFF) / float(0xFFFFFF) * 2.0f - 1.0f;
  float scale = std::pow(10.0f, float(int((x >> 40) % 8)) - 5.0f);
  return unit * scale;
}

/// Gradients come from a fixed pool of awkward values: step t of tensor k
/// reads it at a rotating offset, so that every step differs while making a
/// gradient of a million elements costs a copy, not a million hashes.
constexpr int64_t kPoolSize = (int64_t(1) << 20) + 7;

const std::vector<float> &gradientPool() {
  static const std::vector<float> pool = [] {
    std::vector<float> p(kPoolSize);
    for (int64_t i = 0; i < kPoolSize; ++i)
      p[i] = awkward(7, 0, uint64_t(i));
    return p;
  }();
  return pool;
}

int64_t poolOffset(uint64_t tensor, int64_t t) {
  return int64_t((tensor * 104729 + uint64_t(t) * 7919) % kPoolSize);
}

float gradient(uint64_t tensor, int64_t t, int64_t i) {
  return gradientPool()[(i + poolOffset(tensor, t)) % kPoolSize];
}

void fillGradient(uint64_t tensor, int64_t t, std::vector<float> &g) {
  const std::vector<float> &pool = gradientPool();
  int64_t at = poolOffset(tensor, t);
  for (size_t i = 0; i < g.size();) {
    size_t n = std::min<size_t>(g.size() - i, size_t(kPoolSize - at));
    std::copy(pool.begin() + at, pool.begin() + at + n, g.begin() + i);
    i += n;
    at = 0;
  }
}

float initialParam(uint64_t tensor, int64_t i) {
  return awkward(tensor, 1000, uint64_t(i)) * 10.0f;
}

struct Trajectory {
  std::vector<std::vector<float>> params;
  std::vector<std::vector<float>> states; // [tensor * S + s]
};

Trajectory runCompiled(const Rule &rule, const Case &c,
                       const std::vector<int64_t> &sizes, int64_t steps,
                       unsigned threads) {
  Trajectory run;
  for (size_t k = 0; k < sizes.size(); ++k) {
    run.params.emplace_back(sizes[k]);
    for (int64_t i = 0; i < sizes[k]; ++i)
      run.params[k][i] = initialParam(k, i);
  }
  std::vector<Param> params;
  for (auto &p : run.params)
    params.emplace_back(p.data(), int64_t(p.size()));
  OptimizerOptions options;
  options.threads = threads;
  options.chunkSize = 4096; // Several chunks per large tensor.
  Optimizer opt(rule, params, options);
  for (const auto &[name, value] : c.hypers)
    opt.set(name, value);
  std::vector<std::vector<float>> grads(sizes.size());
  for (int64_t t = 1; t <= steps; ++t) {
    std::vector<Grad> gs;
    for (size_t k = 0; k < sizes.size(); ++k) {
      grads[k].resize(sizes[k]);
      fillGradient(k, t, grads[k]);
      gs.emplace_back(grads[k].data(), sizes[k]);
    }
    opt.step(gs);
  }
  EXPECT_EQ(opt.stepCount(), steps);
  for (size_t k = 0; k < sizes.size(); ++k)
    for (const StateSpec &s : rule.info().states) {
      const float *data = static_cast<const float *>(opt.state(k, s.name));
      run.states.emplace_back(data, data + sizes[k]);
    }
  return run;
}

Trajectory runReference(const Case &c, const std::vector<int64_t> &sizes,
                        int64_t steps) {
  Trajectory run;
  for (size_t k = 0; k < sizes.size(); ++k) {
    run.params.emplace_back(sizes[k]);
    for (int64_t i = 0; i < sizes[k]; ++i)
      run.params[k][i] = initialParam(k, i);
    for (unsigned j = 0; j < c.numStates; ++j)
      run.states.emplace_back(sizes[k], 0.0f);
  }
  // Step by step, as training does.
  H h(c.hypers);
  std::vector<float> local(c.numStates);
  for (int64_t t = 1; t <= steps; ++t)
    for (size_t k = 0; k < sizes.size(); ++k)
      for (int64_t i = 0; i < sizes[k]; ++i) {
        for (unsigned j = 0; j < c.numStates; ++j)
          local[j] = run.states[k * c.numStates + j][i];
        c.ref(run.params[k][i], gradient(k, t, i), local, t, h);
        for (unsigned j = 0; j < c.numStates; ++j)
          run.states[k * c.numStates + j][i] = local[j];
      }
  return run;
}

/// |got - want| <= 1e-5 |want| + atol, with atol = 1e-6, or, with a
/// `scaleAtol`, that times the largest |want| of the tensor (for relaxed
/// rounding, whose differences are relative to the size of the operands of
/// the cancelling updates, not of the result).
void expectClose(const std::vector<float> &got, const std::vector<float> &want,
                 const std::string &what, double scaleAtol = 0) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double atol = 1e-6;
  if (scaleAtol > 0) {
    double largest = 0;
    for (float w : want)
      largest = std::max(largest, std::fabs(double(w)));
    atol = std::max(atol, scaleAtol * largest);
  }
  double worst = 0;
  size_t bad = 0, firstBad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::fabs(double(got[i]) - double(want[i]));
    double allowed = 1e-5 * std::fabs(double(want[i])) + atol;
    worst = std::max(worst, err / allowed);
    if (!(err <= allowed) && bad++ == 0)
      firstBad = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " values out of tolerance; first at " << firstBad
                     << ": got " << got[firstBad] << ", want "
                     << want[firstBad];
}

Rule compileCase(Compiler &compiler, const Case &c) {
  if (c.source)
    return compiler.compileSource(c.source, std::string(c.file) + ".optim");
  return compiler.compileFile(std::string(OPTIM_EXAMPLES_DIR) + "/" + c.file +
                              ".optim");
}

class RuleNumerics : public ::testing::TestWithParam<Case> {};

TEST_P(RuleNumerics, MatchesPublishedFormulaOverManySteps) {
  const Case &c = GetParam();
  Compiler compiler;
  Rule rule = compileCase(compiler, c);
  ASSERT_EQ(rule.info().states.size(), c.numStates);
  ASSERT_EQ(rule.info().hypers.size(), c.hypers.size());

  // 1,000 steps on small awkward sizes, several tensors in one call.
  std::vector<int64_t> small = {0, 1, 7, 1000, 33};
  Trajectory got = runCompiled(rule, c, small, 1000, 2);
  Trajectory want = runReference(c, small, 1000);
  for (size_t k = 0; k < small.size(); ++k)
    expectClose(got.params[k], want.params[k],
                std::string(c.file) + " p of tensor " + std::to_string(k));
  for (size_t k = 0; k < got.states.size(); ++k)
    expectClose(got.states[k], want.states[k],
                std::string(c.file) + " state " + std::to_string(k));
}

// Relaxed rounding (reciprocals of uniform divisors, fused multiply-adds)
// stays within the same tolerance of the formula over 1,000 steps.
TEST_P(RuleNumerics, RelaxedRoundingStaysClose) {
  const Case &c = GetParam();
  CompileOptions options;
  options.relaxedFP = true;
  Compiler compiler(options);
  Rule rule = compileCase(compiler, c);
  std::vector<int64_t> sizes = {1, 7, 1000, 33};
  Trajectory got = runCompiled(rule, c, sizes, 1000, 2);
  Trajectory want = runReference(c, sizes, 1000);
  for (size_t k = 0; k < sizes.size(); ++k)
    expectClose(got.params[k], want.params[k],
                std::string(c.file) + " relaxed p of tensor " +
                    std::to_string(k),
                /*scaleAtol=*/2e-6);
  for (size_t k = 0; k < got.states.size(); ++k)
    expectClose(got.states[k], want.states[k],
                std::string(c.file) + " relaxed state " + std::to_string(k),
                /*scaleAtol=*/2e-6);
}

// A large tensor (many chunks, vector loops and a scalar tail) next to a
// small one, 1,000 steps; the result is bitwise the same on 1 and 2 threads.
TEST_P(RuleNumerics, LargeTensorsMatchAndDoNotDependOnThreads) {
  const Case &c = GetParam();
  Compiler compiler;
  Rule rule = compileCase(compiler, c);
  std::vector<int64_t> large = {1000003, 5};
  Trajectory two = runCompiled(rule, c, large, 1000, 2);
  Trajectory one = runCompiled(rule, c, large, 1000, 1);
  Trajectory ref = runReference(c, large, 1000);
  for (size_t k = 0; k < large.size(); ++k) {
    expectClose(two.params[k], ref.params[k],
                std::string(c.file) + " large p " + std::to_string(k));
    EXPECT_EQ(0, std::memcmp(two.params[k].data(), one.params[k].data(),
                             sizeof(float) * large[k]))
        << c.file << ": 1 and 2 threads differ";
  }
  for (size_t k = 0; k < two.states.size(); ++k) {
    expectClose(two.states[k], ref.states[k],
                std::string(c.file) + " large state " + std::to_string(k));
    EXPECT_EQ(0, std::memcmp(two.states[k].data(), one.states[k].data(),
                             sizeof(float) * two.states[k].size()))
        << c.file << ": 1 and 2 threads differ in state " << k;
  }
}

// The stream prefetches of the vector loop (on chunks of at least four
// prefetch distances) change no bit of the result.
TEST_P(RuleNumerics, PrefetchingChangesNoBits) {
  const Case &c = GetParam();
  CompileOptions none;
  none.prefetchDistance = 0;
  none.useCache = false;
  CompileOptions far = none;
  far.prefetchDistance = 4096;
  Compiler withoutPrefetch(none), withPrefetch(far);
  Rule plain = compileCase(withoutPrefetch, c);
  Rule prefetching = compileCase(withPrefetch, c);
  std::vector<int64_t> sizes = {100003, 4096, 17};
  Trajectory a = runCompiled(plain, c, sizes, 20, 2);
  Trajectory b = runCompiled(prefetching, c, sizes, 20, 2);
  for (size_t k = 0; k < sizes.size(); ++k)
    EXPECT_EQ(0, std::memcmp(a.params[k].data(), b.params[k].data(),
                             sizeof(float) * sizes[k]))
        << c.file << ": prefetching changed tensor " << k;
  for (size_t k = 0; k < a.states.size(); ++k)
    EXPECT_EQ(0, std::memcmp(a.states[k].data(), b.states[k].data(),
                             sizeof(float) * a.states[k].size()))
        << c.file << ": prefetching changed state " << k;
}

INSTANTIATE_TEST_SUITE_P(Examples, RuleNumerics, ::testing::ValuesIn(cases()),
                         [](const auto &info) {
                           return std::string(info.param.file);
                         });

} // namespace

TEST(CompileOptionsErrors, OutOfRangeOptionsAreRejected) {
  auto expectRejected = [](const CompileOptions &options,
                           const std::string &message) {
    try {
      Compiler compiler(options);
      ADD_FAILURE() << "accepted; expected: " << message;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos)
          << e.what();
    }
  };
  CompileOptions wide;
  wide.vectorWidth = 65;
  expectRejected(wide, "vectorWidth must be between 1 and 64, got 65");
  CompileOptions far;
  far.prefetchDistance = 1u << 21;
  expectRejected(far,
                 "prefetchDistance must be at most 1048576 bytes, got 2097152");
}
