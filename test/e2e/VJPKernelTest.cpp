//===- VJPKernelTest.cpp - the fused VJP kernel vs finite differences -----===//
//
// Every rule below is compiled in f64 with its reverse mode (the pipeline
// optim-differentiate -> optim-lower-vjp-to-kernels), and its VJP kernel is
// checked against central finite differences of the FORWARD kernel: for
// random cotangents (dp', ds') and F = sum over coordinates of
// dp' p_out + ds' . s_out, the kernel's dp, ds (per coordinate) and its
// summed dhypers, dweights must match (F(x + e) - F(x - e)) / 2e. Sizes are
// awkward (13 coordinates in chunks of 5 with 4 SIMD lanes: vector loops,
// scalar tails, several chunks), so every code path of the kernel runs.
// Then the weight gradient of examples/l2l.optim through optim::Trajectory
// must be bitwise identical on 1 and 2 threads.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Trajectory.h"

#include "SourceFiles.h"
#include "gtest/gtest.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <tuple>

using namespace optim;
using testsource::readExample;
using testsource::readFile;

namespace {

Rule compileF64(const std::string &source, unsigned width = 4) {
  CompileOptions options;
  options.precision = DType::F64;
  options.vectorWidth = width;
  options.vjp = true;
  options.useCache = false;
  return Compiler(options).compileSource(source, "vjp-test.optim");
}

int64_t countOf(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// One parameter tensor of `n` coordinates, cut into chunks of `chunk`.
struct Problem {
  const RuleInfo &info;
  int64_t n, chunk;
  std::vector<double> p, g, dp;
  /// The rule's per-coordinate inputs (`input h`): constants, like g.
  std::vector<std::vector<double>> inputs;
  std::vector<std::vector<double>> states, ds; // Component-major.
  std::vector<double> hypers;
  std::vector<std::vector<double>> weights;
  std::vector<int64_t> lengths, strides;

  Problem(const RuleInfo &info, int64_t n, int64_t chunk, std::mt19937 &rng,
          double weightScale)
      : info(info), n(n), chunk(chunk) {
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    auto fill = [&](std::vector<double> &v, size_t count, double scale) {
      v.resize(count);
      for (double &x : v)
        x = scale * u(rng);
    };
    fill(p, n, 1.0);
    fill(g, n, 1.0);
    fill(dp, n, 1.0);
    // Gradients of several magnitudes, for both branches of log_sign.
    for (int64_t i = 0; i < n; i += 3)
      g[i] *= 1e-6;
    for (size_t k = 0; k < info.inputs.size(); ++k) {
      inputs.emplace_back();
      fill(inputs.back(), n, 1.0);
    }
    for (const StateSpec &s : info.states) {
      states.emplace_back();
      ds.emplace_back();
      // Positive-ish states keep sqrt and log of states away from 0.
      fill(states.back(), n * s.size, 0.5);
      for (double &x : states.back())
        x += 0.6;
      fill(ds.back(), n * s.size, 1.0);
    }
    for (const HyperParam &h : info.hypers)
      hypers.push_back(h.defaultValue);
    for (const WeightSpec &w : info.weights) {
      weights.emplace_back();
      fill(weights.back(), countOf(w.shape), weightScale);
    }
    for (int64_t off = 0; off < n; off += chunk) {
      lengths.push_back(std::min(chunk, n - off));
      strides.push_back(n);
    }
  }

  std::vector<const void *> weightPtrs() const {
    std::vector<const void *> out;
    for (const auto &w : weights)
      out.push_back(w.data());
    return out;
  }

  /// F after one forward step from the current inputs.
  double objective(const Rule &rule, int64_t t) const {
    std::vector<double> pp = p;
    std::vector<std::vector<double>> ss = states;
    std::vector<void *> ptrs;
    for (size_t c = 0; c < lengths.size(); ++c) {
      int64_t off = int64_t(c) * chunk;
      ptrs.push_back(pp.data() + off);
      ptrs.push_back(const_cast<double *>(g.data()) + off);
      for (auto &in : inputs)
        ptrs.push_back(const_cast<double *>(in.data()) + off);
      for (auto &s : ss)
        ptrs.push_back(s.data() + off);
    }
    auto w = weightPtrs();
    rule.kernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                  int64_t(lengths.size()), hypers.data(), t,
                  w.empty() ? nullptr : w.data(), /*rng=*/nullptr);
    double f = 0;
    for (int64_t i = 0; i < n; ++i)
      f += dp[i] * pp[i];
    for (size_t s = 0; s < ss.size(); ++s)
      for (size_t i = 0; i < ss[s].size(); ++i)
        f += ds[s][i] * ss[s][i];
    return f;
  }

  struct Result {
    std::vector<double> dp;
    std::vector<std::vector<double>> ds;
    std::vector<double> partials; // Summed over chunks.
  };
  Result vjp(const Rule &rule, int64_t t) const {
    Result r{dp, ds, {}};
    std::vector<void *> ptrs;
    for (size_t c = 0; c < lengths.size(); ++c) {
      int64_t off = int64_t(c) * chunk;
      ptrs.push_back(const_cast<double *>(p.data()) + off);
      ptrs.push_back(const_cast<double *>(g.data()) + off);
      for (auto &in : inputs)
        ptrs.push_back(const_cast<double *>(in.data()) + off);
      for (auto &s : states)
        ptrs.push_back(const_cast<double *>(s.data()) + off);
      ptrs.push_back(r.dp.data() + off);
      for (auto &s : r.ds)
        ptrs.push_back(s.data() + off);
    }
    size_t numPartials = hypers.size();
    for (const auto &w : weights)
      numPartials += w.size();
    std::vector<double> partials(lengths.size() * numPartials, NAN);
    auto w = weightPtrs();
    rule.vjpKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                     int64_t(lengths.size()), hypers.data(), t,
                     w.empty() ? nullptr : w.data(), partials.data(),
                     /*rng=*/nullptr);
    r.partials.assign(numPartials, 0.0);
    for (size_t c = 0; c < lengths.size(); ++c)
      for (size_t k = 0; k < numPartials; ++k)
        r.partials[k] += partials[c * numPartials + k];
    return r;
  }

  void setHyper(const std::string &name, double value) {
    int index = info.findHyper(name);
    ASSERT_GE(index, 0) << name;
    hypers[index] = value;
  }
};

/// Checks the VJP kernel of `rule` (f64) against central differences.
/// `maxWeights` caps how many weights (chosen at random) are checked.
void check(const Rule &rule, double weightScale = 0.5,
           size_t maxWeights = 1000, int64_t n = 13, int64_t chunk = 5,
           const std::map<std::string, double> &hypers = {}) {
  ASSERT_TRUE(rule.vjpKernel());
  // Problem::objective calls the one-pass kernel; a rule with tensor
  // reductions has none (VJPReductionsTest.cpp checks those).
  ASSERT_TRUE(rule.info().reductions.empty() && rule.kernel());
  const RuleInfo &info = rule.info();
  std::mt19937 rng(42);
  Problem pb(info, n, chunk, rng, weightScale);
  for (const auto &[name, value] : hypers)
    pb.setHyper(name, value);
  const int64_t t = 3;
  Problem::Result an = pb.vjp(rule, t);
  const double eps = 1e-6;
  auto expectClose = [&](double analytic, double numeric,
                         const std::string &what) {
    EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::fabs(numeric)))
        << info.name << ": d/d" << what;
  };
  auto central = [&](double &x) {
    double saved = x;
    x = saved + eps;
    double up = pb.objective(rule, t);
    x = saved - eps;
    double down = pb.objective(rule, t);
    x = saved;
    return (up - down) / (2 * eps);
  };
  for (int64_t i = 0; i < n; ++i)
    expectClose(an.dp[i], central(pb.p[i]), "p[" + std::to_string(i) + "]");
  for (size_t s = 0; s < info.states.size(); ++s)
    for (size_t i = 0; i < pb.states[s].size(); ++i)
      expectClose(an.ds[s][i], central(pb.states[s][i]),
                  info.states[s].name + "[" + std::to_string(i) + "]");
  for (size_t h = 0; h < info.hypers.size(); ++h) {
    if (info.hypers[h].isConst) {
      EXPECT_EQ(an.partials[h], 0.0) << "const " << info.hypers[h].name;
      continue;
    }
    expectClose(an.partials[h], central(pb.hypers[h]), info.hypers[h].name);
  }
  size_t offset = info.hypers.size();
  for (size_t w = 0; w < pb.weights.size(); ++w) {
    std::vector<size_t> which(pb.weights[w].size());
    for (size_t k = 0; k < which.size(); ++k)
      which[k] = k;
    std::shuffle(which.begin(), which.end(), rng);
    which.resize(std::min(which.size(), maxWeights));
    for (size_t k : which)
      expectClose(an.partials[offset + k], central(pb.weights[w][k]),
                  info.weights[w].name + "[" + std::to_string(k) + "]");
    offset += pb.weights[w].size();
  }
}

void check(const std::string &source, double weightScale = 0.5,
           size_t maxWeights = 1000, int64_t n = 13, int64_t chunk = 5,
           unsigned width = 4) {
  check(compileF64(source, width), weightScale, maxWeights, n, chunk);
}

class VJPKernelExample : public ::testing::TestWithParam<const char *> {};

TEST_P(VJPKernelExample, MatchesFiniteDifferences) {
  check(readExample(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Examples, VJPKernelExample,
                         ::testing::Values("sgd", "momentum", "nesterov",
                                           "adagrad", "rmsprop", "adam",
                                           "adamw", "amsgrad", "lion"),
                         [](const auto &info) {
                           return std::string(info.param);
                         });

TEST(VJPKernel, EveryScalarBuiltin) {
  check(R"(
rule builtins(lr = 0.3, k = 1.7) {
  state a = 0, b = 0
  let x = tanh(a * g) + sigmoid(b) - exp(-abs(a - 0.05)) + log(1 + b * b)
  let y = pow(a + 1, k) + max(a, b) - min(a, g) + clamp(b, -0.5, 0.5)
  a = select(g >= 0, 0.9 * a + x / k, 0.8 * a - y) + sign(g) * a
  b = sqrt(b + 0.1) * lr - a ** 2
  p -= lr * (a + b) / (1 + t)
}
)");
}

// The literature rules of test/Run/Inputs/literature.optim that have no
// tensor reductions (VJPReductionsTest.cpp has those): the hyperparameters
// of every rule the numpy oracle checks can be meta-learned.
class VJPKernelLiterature : public ::testing::TestWithParam<const char *> {};

TEST_P(VJPKernelLiterature, MatchesFiniteDifferences) {
  CompileOptions options;
  options.precision = DType::F64;
  options.vectorWidth = 4;
  options.vjp = true;
  options.useCache = false;
  // AdEMAMix's beta3 = 0.9999 by default: a difference of 1e-6 moves
  // log(beta3), in its schedule, by 1%, too far for central differences.
  std::map<std::string, double> hypers;
  if (std::string(GetParam()) == "ademamix")
    hypers["beta3"] = 0.99;
  check(Compiler(options).compileFile(std::string(OPTIM_TEST_DIR) +
                                          "/Run/Inputs/literature.optim",
                                      Target::cpu(), GetParam()),
        0.5, 1000, 13, 5, hypers);
}

INSTANTIATE_TEST_SUITE_P(
    Literature, VJPKernelLiterature,
    ::testing::Values("adamax", "yogi", "adabelief", "adadelta", "radam",
                      "sgd_wd", "nadam", "qhadam", "adabound", "adan",
                      "signsgd", "signum", "adamod", "qhm", "adashift", "aggmo",
                      "sgdr", "step_momentum", "lookahead_adam", "sf_sgd",
                      "sf_adamw", "madgrad", "accsgd", "ademamix", "laprop",
                      "pid", "adam_warmup_cosine", "adapnm", "padam", "tiger",
                      "diffgrad", "rprop", "adopt"),
    [](const auto &info) { return std::string(info.param); });

TEST(VJPKernel, PerCoordinateInputs) {
  // Inputs are constants like g (no cotangent): Sophia with its Hessian
  // estimate h, and a rule whose two inputs reach p, a state's initial
  // value and a select (KernelABI.h, version 7: pointers p, g, inputs,
  // states, cotangents).
  check(R"(
rule sophia(lr = 0.05, beta1 = 0.9, beta2 = 0.95, rho = 5, eps = 1e-3) {
  input h
  state m = 0, hh = 0.5
  m = beta1 * m + (1 - beta1) * g
  hh = beta2 * hh + (1 - beta2) * h * h
  p -= lr * clamp(m / max(rho * hh, eps), -1, 1)
}
)");
  check(R"(
rule two(lr = 0.3, k = 0.7) {
  input a, z
  state w = a * k
  w = select(z > 0, w * a + g, w - z * g)
  p -= lr * w * a + k * z * p
}
)");
}

TEST(VJPKernel, BooleansAndFirstStepStates) {
  // Booleans (i1, vector<4xi1>) carry no derivative: the adjoint flows
  // through the selected branch only. `state z = p` is a select at t == 1,
  // not taken at t = 3: z's own value passes through; so is `lo = -inf`.
  // cbrt of negative and positive values; pi a constant.
  check(R"(
rule logic(lr = 0.3, k = 0.2) {
  state z = p, h[4] = g * k, lo = -inf
  lo = max(lo, select(isfinite(p), cbrt(p - 0.5) * pi, 0))
  let even = mod(t, 2) == 0
  let up = g > 0 and not even or p > 1
  h = select(h > 0 and not (h > 0.5 or even), 0.9 * h + k * g, 0.5 * h)
  z -= lr * select(up, g, z * k)
  p = select(not up, z, p - lr * sum(h)) + 0.1 * lo
}
)");
}

TEST(VJPKernel, RoundingAndPeriodicBuiltins) {
  // floor and ceil have derivative 0 away from their jumps; mod (fmod, then
  // a sign fix) has 1 in x and -floor(x / y) in y, also for a negative y and
  // a hyperparameter period. The seed puts no coordinate within a finite
  // difference of a jump.
  check(R"(
rule periodic(lr = 0.3, T = 2.5, y = -0.7) {
  state a = 0, b = 0
  let phase = mod(t + a, T)
  a = 0.5 * cos(a * 3 + g) + sin(b) * floor(t / 2) + ceil(g) * a
  b = mod(b + p, y) + mod(p * 1.3, 0.9) - 0.25 * floor(b * 3)
  p -= lr * (a + b) * cos(3.14159 * phase / T) + sin(lr * p)
}
)");
}

TEST(VJPKernel, Arctangents) {
  // atan and atan2 (Adam-atan2's update: atan2(m, sqrt(v)) needs no eps),
  // of values of every sign, so that atan2's angle crosses quadrants; the
  // seed keeps every (x, y) away from the origin, where its slope is taken
  // as 0.
  check(R"(
rule arctangents(lr = 0.3, a = 1.27, b = 0.8) {
  state m = 0.1, v = 0.2
  m = 0.9 * m + 0.1 * g
  v = 0.99 * v + 0.01 * g * g
  p -= lr * a * atan2(m, b * sqrt(v)) + 0.1 * atan(p * g - m) + atan2(p, g - 0.3) * m
}
)");
}

// Strong zeros (Differentiate.cpp): what flows back from the side a select,
// max or min did not take is 0 where its cotangent is 0, even where that
// side is NaN or inf; and only elementwise ops are masked component by
// component (a relu after a square linear map must not zero dx_i where
// dz_i is 0: dx_i depends on every dz_j).
TEST(VJPKernel, StrongZerosThroughLearnedBlocks) {
  check(R"(
learned rule relu(scale = 0.1) {
  weights l1 = linear(in: 2, out: 2)
  weights head = linear(in: 2, out: 1)
  state h[2] = 0
  let z = max(l1(h), 0)
  h = z
  p += scale * head(z)
}
)",
        /*weightScale=*/1.0);
  check(R"(
learned rule relu_lstm(scale = 0.1) {
  weights cell = lstm(in: 1, hidden: 3)
  weights l1 = linear(in: 3, out: 3)
  weights head = linear(in: 3, out: 1)
  state h[3] = 0, c[3] = 0
  h, c = cell(g, h, c)
  p += scale * head(max(l1(h), 0))
}
)",
        /*weightScale=*/1.0);
}

TEST(VJPKernel, StrongZerosOfUntakenGarbage) {
  // log_sign of NaN: its k contribution (e^k x) must not be NaN.
  check(R"(
rule ls(lr = 0.3, k = 3) {
  let x = log_sign(sqrt(p), k)
  p -= lr * select(p > 0, x[0] + x[1], p)
}
)");
  // linear of inf: its weight cotangent (dy x) must not be NaN.
  check(R"(
learned rule li(scale = 0.1) {
  weights head = linear(in: 1, out: 1)
  state h[1] = 0
  h = h * 0.5 + g
  p += scale * select(p > 0, head(h / sqrt(p)), p)
}
)");
}

// pow(x, e) at a base of 0 with e < 1 has an infinite slope: taken as 0, as
// sqrt's at 0. Without that, MADGRAD's pow(nu, 1 / 3) and Padam's pow(v,
// partial) of a coordinate whose gradients were all 0 so far (every
// coordinate at step 1 where g = 0) made 0 * inf = NaN, and through the sums
// every hyperparameter's gradient NaN. Away from 0 the literature rules'
// tests above check the same derivative against differences.
TEST(VJPKernel, PowOfZeroBase) {
  Rule rule = compileF64(R"(
rule partial_powers(lr = 0.1, beta2 = 0.9, partial = 0.2, eps = 1e-8) {
  state m = 0, v = 0
  m = 0.9 * m + 0.1 * g
  v = beta2 * v + (1 - beta2) * g * g
  p -= lr * m / (pow(v, partial) + eps) + lr * pow(v, 1 / 3) * p
}
)");
  ASSERT_TRUE(rule.vjpKernel());
  std::mt19937 rng(42);
  Problem pb(rule.info(), /*n=*/13, /*chunk=*/5, rng, /*weightScale=*/0.5);
  for (int64_t i = 0; i < pb.n; i += 2) {
    pb.g[i] = 0;
    pb.states[0][i] = pb.states[1][i] = 0;
  }
  Problem::Result r = pb.vjp(rule, /*t=*/1);
  for (int64_t i = 0; i < pb.n; ++i) {
    EXPECT_TRUE(std::isfinite(r.dp[i])) << "dp[" << i << "]";
    EXPECT_TRUE(std::isfinite(r.ds[0][i])) << "dm[" << i << "]";
    // m = v = 0 there: the slope of pow(v, .) is taken as 0, and dv is
    // what flows back through beta2 * v.
    if (i % 2 == 0)
      EXPECT_EQ(r.ds[1][i], pb.ds[1][i] * 0.9) << "dv[" << i << "]";
    else
      EXPECT_TRUE(std::isfinite(r.ds[1][i])) << "dv[" << i << "]";
  }
  for (size_t k = 0; k < r.partials.size(); ++k)
    EXPECT_TRUE(std::isfinite(r.partials[k])) << "partial " << k;
}

TEST(VJPKernel, VectorStatesIndexingReductions) {
  // log_sign with a runtime k (its derivative in k), vector select,
  // broadcasts, sum / mean / dot, indexing.
  check(R"(
rule vectors(lr = 0.05, k = 4) {
  state h[3] = 0.5, e[2] = 0
  let x = log_sign(g, k)
  e = 0.9 * e + x * tanh(h[1])
  h = select(h > g, 0.5 * h + g * h, h - 0.25 * exp(-h))
  p -= lr * (sum(h) / 3 + e[0] * 0.1 + mean(e * e) - dot(h, h) * 0.01 + h[2] * p)
}
)");
}

const char *kBlocks = R"(
learned rule blocks(lr = 0.3, k = 3) {
  weights cell1 = lstm(in: 1, hidden: 3)
  weights cell2 = lstm(in: 2, hidden: 4)
  weights head = linear(in: 4, out: 2)
  weights mix = linear(in: 3, out: 1)
  state h[3] = 0, c[3] = 0, h2[4] = 0, c2[4] = 0
  h, c = cell1(p * g, h, c)
  h2, c2 = cell2(log_sign(g, k), h2, c2)
  let y = head(h2)
  p += lr * (y[0] * y[1] + mix(h) * tanh(sum(c)))
}
)";

TEST(VJPKernel, LearnedBlocks) {
  // A scalar-input LSTM cell, a vector-input one, and linear maps to a
  // vector and to a scalar, with every weight checked.
  check(kBlocks, /*weightScale=*/0.8);
}

TEST(VJPKernel, L2LExample) {
  // The paper's 2x20 LSTM, in f64: every p and state component, the
  // hyperparameter, and 150 random weights of each tensor.
  check(readExample("l2l"), /*weightScale=*/0.3, /*maxWeights=*/150);
}

// Chunks of 40 and 5 coordinates with 4 lanes: learned rules run blocks of
// 16 coordinates (two per chunk of 40, with the transposed weight
// gradient), then vectors of 4, then single coordinates, all adding into the
// same per-chunk accumulators.
TEST(VJPKernel, LearnedBlocksEveryLanePath) {
  check(kBlocks, /*weightScale=*/0.8, /*maxWeights=*/1000, /*n=*/45,
        /*chunk=*/40);
}

// 3 lanes, not a power of two: the transposes of the weight gradient take
// their element-by-element path (blocks of 12, vectors of 3, singles). The
// reference is the 4-lane kernel, which the tests above check against
// central differences (the forward kernel, which those differences need,
// is not tested with odd widths here).
TEST(VJPKernel, OddWidthMatchesWidthFour) {
  for (const std::string &source : {std::string(kBlocks), readExample("l2l")}) {
    Rule three = compileF64(source, 3), four = compileF64(source, 4);
    std::mt19937 rng(11);
    Problem pb(three.info(), /*n=*/45, /*chunk=*/40, rng, /*weightScale=*/0.5);
    Problem::Result a = pb.vjp(three, 3), b = pb.vjp(four, 3);
    auto near = [](double x, double y) {
      return std::fabs(x - y) <= 1e-12 * std::max(1.0, std::fabs(y));
    };
    for (size_t i = 0; i < a.dp.size(); ++i)
      EXPECT_TRUE(near(a.dp[i], b.dp[i])) << "dp[" << i << "]";
    for (size_t s = 0; s < a.ds.size(); ++s)
      for (size_t i = 0; i < a.ds[s].size(); ++i)
        EXPECT_TRUE(near(a.ds[s][i], b.ds[s][i]))
            << three.info().states[s].name << "[" << i << "]";
    for (size_t k = 0; k < a.partials.size(); ++k)
      EXPECT_TRUE(near(a.partials[k], b.partials[k]))
          << "partial " << k << ": " << a.partials[k] << " vs "
          << b.partials[k];
  }
}

TEST(VJPKernel, L2LEveryLanePath) {
  check(readExample("l2l"), /*weightScale=*/0.3, /*maxWeights=*/150,
        /*n=*/45, /*chunk=*/40);
}

/// The f32 VJP kernel (rational activations, 16 lanes: blocks of 64
/// coordinates, vectors of 16, single coordinates) against the f64 one on
/// the same inputs rounded to float: per-coordinate cotangents within 5e-6
/// of max(1, |x|), and each weight gradient summed over the coordinates
/// within 5e-6 of the largest of its tensor (both are sums of the same
/// products; f32 accumulation over 150 coordinates).
void floatMatchesDouble(const std::string &source, const std::string &name) {
  CompileOptions options;
  options.vjp = true;
  options.useCache = false;
  Rule f32 = Compiler(options).compileSource(source, name + ".optim");
  Rule f64 = compileF64(source, /*width=*/16);
  const RuleInfo &info = f64.info();
  std::mt19937 rng(5);
  const int64_t n = 150, chunk = 100;
  Problem pb(info, n, chunk, rng, /*weightScale=*/0.3);
  // States in the range an LSTM produces (h, c of either sign).
  for (auto &s : pb.states)
    for (double &x : s)
      x -= 1.1;
  auto roundAll = [](std::vector<double> &v) {
    for (double &x : v)
      x = double(float(x));
  };
  roundAll(pb.p);
  roundAll(pb.g);
  roundAll(pb.dp);
  for (auto *vs : {&pb.states, &pb.ds, &pb.weights})
    for (auto &v : *vs)
      roundAll(v);
  const int64_t t = 3;
  Problem::Result ref = pb.vjp(f64, t);

  auto toFloat = [](const std::vector<double> &v) {
    return std::vector<float>(v.begin(), v.end());
  };
  std::vector<float> p = toFloat(pb.p), g = toFloat(pb.g), dp = toFloat(pb.dp);
  std::vector<std::vector<float>> states, ds, weights;
  for (auto &s : pb.states)
    states.push_back(toFloat(s));
  for (auto &s : pb.ds)
    ds.push_back(toFloat(s));
  for (auto &w : pb.weights)
    weights.push_back(toFloat(w));
  std::vector<void *> ptrs;
  for (size_t c = 0; c < pb.lengths.size(); ++c) {
    int64_t off = int64_t(c) * chunk;
    ptrs.push_back(p.data() + off);
    ptrs.push_back(g.data() + off);
    for (auto &s : states)
      ptrs.push_back(s.data() + off);
    ptrs.push_back(dp.data() + off);
    for (auto &s : ds)
      ptrs.push_back(s.data() + off);
  }
  size_t numPartials = pb.hypers.size();
  for (const auto &w : weights)
    numPartials += w.size();
  std::vector<float> partials(pb.lengths.size() * numPartials, NAN);
  std::vector<const void *> w;
  for (auto &v : weights)
    w.push_back(v.data());
  f32.vjpKernel()(ptrs.data(), pb.lengths.data(), pb.strides.data(), 0,
                  int64_t(pb.lengths.size()), pb.hypers.data(), t, w.data(),
                  partials.data(), /*rng=*/nullptr);

  double worst = 0;
  auto expectNear = [&](double got, double want, double scale,
                        const std::string &what) {
    double err = std::fabs(got - want) / std::max(1.0, scale);
    worst = std::max(worst, err);
    EXPECT_LE(err, 5e-6) << what << ": " << got << " vs " << want;
  };
  for (int64_t i = 0; i < n; ++i)
    expectNear(dp[i], ref.dp[i], std::fabs(ref.dp[i]),
               "dp[" + std::to_string(i) + "]");
  for (size_t s = 0; s < ds.size(); ++s)
    for (size_t i = 0; i < ds[s].size(); ++i)
      expectNear(ds[s][i], ref.ds[s][i], std::fabs(ref.ds[s][i]),
                 info.states[s].name + "[" + std::to_string(i) + "]");
  size_t offset = 0;
  for (size_t h = 0; h < pb.hypers.size(); ++h, ++offset) {
    double sum = 0;
    for (size_t c = 0; c < pb.lengths.size(); ++c)
      sum += partials[c * numPartials + offset];
    expectNear(sum, ref.partials[offset], std::fabs(ref.partials[offset]),
               info.hypers[h].name);
  }
  for (size_t k = 0; k < weights.size(); ++k) {
    double largest = 0;
    for (size_t j = 0; j < weights[k].size(); ++j)
      largest = std::max(largest, std::fabs(ref.partials[offset + j]));
    for (size_t j = 0; j < weights[k].size(); ++j) {
      double sum = 0;
      for (size_t c = 0; c < pb.lengths.size(); ++c)
        sum += partials[c * numPartials + offset + j];
      expectNear(sum, ref.partials[offset + j], largest,
                 info.weights[k].name + "[" + std::to_string(j) + "]");
    }
    offset += weights[k].size();
  }
  std::printf("%s: f32 VJP kernel, worst scaled error %.3g\n", name.c_str(),
              worst);
}

TEST(VJPKernel, L2LFloatMatchesDouble) {
  floatMatchesDouble(readExample("l2l"), "l2l");
}

// The learned rules of test/Learned/Inputs, shapes l2l does not have (one,
// two and three layers, hidden sizes 1, 7 and 33, a scalar, a vector[1] and
// a raw (g, p) input, no LSTM at all, a two-output head, a classic momentum
// state fed to the LSTM, weights used twice in a step, a vector input from
// a linear map, states changed after the cell, h and c swapping states,
// t in the update): the f64 VJP kernel against central differences in
// chunks of 5 and of 40 (every lane path), and the f32 kernel that
// optim-train runs (16 lanes, where 4H is rarely a multiple of the 16 x 16
// transposes) against the f64 one. test/Learned/variants.test checks their
// forward step against numpy.
class VJPKernelLearnedVariant : public ::testing::TestWithParam<const char *> {
protected:
  std::string source() const {
    return readFile(std::string(OPTIM_TEST_DIR) + "/Learned/Inputs/" +
                    GetParam() + ".optim");
  }
};

TEST_P(VJPKernelLearnedVariant, MatchesFiniteDifferences) {
  std::string text = source();
  ASSERT_FALSE(text.empty()) << GetParam();
  Rule rule = compileF64(text);
  check(rule, /*weightScale=*/0.5, /*maxWeights=*/60);
  check(rule, /*weightScale=*/0.5, /*maxWeights=*/60, /*n=*/45, /*chunk=*/40);
}

TEST_P(VJPKernelLearnedVariant, FloatMatchesDouble) {
  std::string text = source();
  ASSERT_FALSE(text.empty()) << GetParam();
  floatMatchesDouble(text, GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Learned, VJPKernelLearnedVariant,
    ::testing::Values("lstm1", "stack3", "hidden1", "hidden7", "hidden33",
                      "linear", "mlp", "twoheads", "momentum", "shared",
                      "vecin", "clipped", "features", "swapped"),
    [](const auto &info) { return std::string(info.param); });

TEST(VJPKernel, TrajectoryBackwardMatchesUnrolledFiniteDifferences) {
  // L = sum_k c_k . theta_{k+1} over 6 steps whose gradients g_k are fixed
  // in advance: the rule sees constant gradients, exactly as backward()
  // assumes, so L's central differences in the weights, in lr and in
  // theta_0 are the exact reference for the trajectory's reverse pass
  // (state adjoints carried from step to step, dL/dtheta added per step).
  Rule rule = compileF64(kBlocks);
  const RuleInfo &info = rule.info();
  std::vector<int64_t> sizes = {7, 4};
  const int steps = 6;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  auto random = [&](size_t n, double scale) {
    std::vector<double> v(n);
    for (double &x : v)
      x = scale * u(rng);
    return v;
  };
  std::vector<std::vector<double>> weights;
  for (const WeightSpec &w : info.weights)
    weights.push_back(random(countOf(w.shape), 0.7));
  std::vector<std::vector<double>> theta0 = {random(7, 1.0), random(4, 1.0)};
  std::vector<std::vector<std::vector<double>>> grads(steps), cots(steps);
  for (int k = 0; k < steps; ++k)
    for (int64_t n : sizes) {
      grads[k].push_back(random(n, 1.0));
      cots[k].push_back(random(n, 1.0));
    }
  // A schedule, lr + 0.05 k at step k: each step must be differentiated
  // with the value it ran with, and dL/dlr is the sum of the steps' partials.
  double lr = 0.3;
  TrajectoryOptions options;
  options.chunkSize = 3;
  auto run = [&](Trajectory &traj) {
    for (size_t w = 0; w < weights.size(); ++w)
      traj.setWeights(info.weights[w].name, weights[w].data(),
                      int64_t(weights[w].size()));
    for (size_t i = 0; i < sizes.size(); ++i)
      std::memcpy(traj.param(i), theta0[i].data(), sizes[i] * sizeof(double));
    double loss = 0;
    for (int k = 0; k < steps; ++k) {
      traj.set("lr", lr + 0.05 * k);
      traj.step({grads[k][0].data(), grads[k][1].data()});
      for (size_t i = 0; i < sizes.size(); ++i) {
        const double *p = static_cast<const double *>(traj.param(i));
        for (int64_t j = 0; j < sizes[i]; ++j)
          loss += cots[k][i][j] * p[j];
      }
    }
    return loss;
  };
  auto loss = [&]() {
    Trajectory traj(rule, sizes, options);
    return run(traj);
  };
  Trajectory traj(rule, sizes, options);
  run(traj);
  EXPECT_EQ(traj.tapeLength(), size_t(steps));
  std::vector<std::vector<const void *>> dL(steps);
  for (int k = 0; k < steps; ++k)
    dL[k] = {cots[k][0].data(), cots[k][1].data()};
  RuleGradient grad = traj.backward(dL);

  const double eps = 1e-6;
  auto central = [&](double &x) {
    double saved = x;
    x = saved + eps;
    double up = loss();
    x = saved - eps;
    double down = loss();
    x = saved;
    return (up - down) / (2 * eps);
  };
  auto near = [](double a, double n) {
    return std::fabs(a - n) <= 1e-6 * std::max(1.0, std::fabs(n));
  };
  for (size_t w = 0; w < weights.size(); ++w)
    for (size_t k = 0; k < weights[w].size(); ++k) {
      double numeric = central(weights[w][k]);
      EXPECT_TRUE(near(grad.weights[w][k], numeric))
          << info.weights[w].name << "[" << k << "]: " << grad.weights[w][k]
          << " vs " << numeric;
    }
  int lrIndex = info.findHyper("lr");
  EXPECT_TRUE(near(grad.hypers[lrIndex], central(lr)));
  for (size_t i = 0; i < sizes.size(); ++i) {
    const double *adj = static_cast<const double *>(traj.paramAdjoint(i));
    for (int64_t j = 0; j < sizes[i]; ++j) {
      double numeric = central(theta0[i][j]);
      EXPECT_TRUE(near(adj[j], numeric))
          << "theta0[" << i << "][" << j << "]: " << adj[j] << " vs "
          << numeric;
    }
  }
}

TEST(VJPKernel, RejectsTrajectoryWithoutVJP) {
  CompileOptions options;
  options.useCache = false;
  Rule sgd = Compiler(options).compileSource(readExample("sgd"), "sgd.optim");
  EXPECT_THROW(Trajectory(sgd, {4}), Error);
}

/// Runs 5 steps and the backward of examples/l2l.optim (f32, as in
/// meta-training) on `threads` threads; returns the weight gradient.
RuleGradient l2lGradient(const Rule &rule, unsigned threads) {
  TrajectoryOptions options;
  options.threads = threads;
  options.chunkSize = 1000;
  std::vector<int64_t> sizes = {2345, 1003, 7};
  Trajectory traj(rule, sizes, options);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (const WeightSpec &w : rule.info().weights) {
    std::vector<float> data(countOf(w.shape));
    for (float &x : data)
      x = 0.2f * normal(rng);
    traj.setWeights(w.name, data.data(), int64_t(data.size()));
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    float *p = static_cast<float *>(traj.param(i));
    for (int64_t j = 0; j < sizes[i]; ++j)
      p[j] = normal(rng);
  }
  // f(θ) = 1/2 |θ|^2: ∇f = θ, and the cotangents of the loss are θ_t.
  std::vector<std::vector<std::vector<float>>> thetas;
  for (int step = 0; step < 5; ++step) {
    std::vector<std::vector<float>> grads;
    std::vector<const void *> ptrs;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const float *p = static_cast<const float *>(traj.param(i));
      grads.emplace_back(p, p + sizes[i]);
    }
    for (auto &gv : grads)
      ptrs.push_back(gv.data());
    traj.step(ptrs);
    std::vector<std::vector<float>> after;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const float *p = static_cast<const float *>(traj.param(i));
      after.emplace_back(p, p + sizes[i]);
    }
    thetas.push_back(std::move(after));
  }
  std::vector<std::vector<const void *>> cot;
  for (auto &step : thetas) {
    cot.emplace_back();
    for (auto &v : step)
      cot.back().push_back(v.data());
  }
  return traj.backward(cot);
}

TEST(VJPKernel, L2LWeightGradientIsIndependentOfThreads) {
  CompileOptions options;
  options.vjp = true;
  options.useCache = false;
  Rule rule = Compiler(options).compileSource(readExample("l2l"), "l2l.optim");
  RuleGradient one = l2lGradient(rule, 1), two = l2lGradient(rule, 2);
  ASSERT_EQ(one.weights.size(), 3u);
  double norm = 0;
  for (size_t w = 0; w < one.weights.size(); ++w) {
    ASSERT_EQ(one.weights[w].size(), two.weights[w].size());
    EXPECT_EQ(0, std::memcmp(one.weights[w].data(), two.weights[w].data(),
                             one.weights[w].size() * sizeof(double)))
        << rule.info().weights[w].name;
    for (double x : one.weights[w])
      norm += x * x;
  }
  EXPECT_GT(norm, 0.0); // The weights do get a gradient.
  EXPECT_EQ(0, std::memcmp(one.hypers.data(), two.hypers.data(),
                           one.hypers.size() * sizeof(double)));
}

// The compiler sizes the VJP kernel's register tiles and the forward
// kernel's blocks for the host (AVX-512: 32 registers of 64 bytes, width
// 16; AVX2: 16 of 32, width 4): meta-training must give the same bits on
// every host, so neither may change the gradient.
TEST(VJPKernel, L2LWeightGradientIsIndependentOfTheHostsRegisters) {
  std::vector<RuleGradient> gradients;
  for (auto [bytes, count, learnedWidth] : {std::tuple{64u, 32u, 16u},
                                            {32u, 16u, 4u},
                                            {16u, 16u, 2u},
                                            {32u, 16u, 16u}}) {
    CompileOptions options;
    options.vjp = true;
    options.useCache = false;
    options.vectorRegisterBytes = bytes;
    options.vectorRegisters = count;
    options.learnedVectorWidth = learnedWidth;
    Rule rule =
        Compiler(options).compileSource(readExample("l2l"), "l2l.optim");
    gradients.push_back(l2lGradient(rule, 2));
  }
  for (size_t k = 1; k < gradients.size(); ++k) {
    for (size_t w = 0; w < gradients[0].weights.size(); ++w)
      EXPECT_EQ(0, std::memcmp(gradients[0].weights[w].data(),
                               gradients[k].weights[w].data(),
                               gradients[0].weights[w].size() * sizeof(double)))
          << "registers case " << k << ", weights " << w;
    EXPECT_EQ(0, std::memcmp(gradients[0].hypers.data(),
                             gradients[k].hypers.data(),
                             gradients[0].hypers.size() * sizeof(double)))
        << "registers case " << k;
  }
}

} // namespace
