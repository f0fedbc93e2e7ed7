//===- LearnedRuleTest.cpp - the coordinatewise LSTM optimizer ------------===//
//
// examples/l2l.optim (Andrychowicz et al., 2016) JIT-compiled and run with
// random weights, against a reference written from the equations of
// optim.lstm_cell / optim.linear (docs/dialect.md) and the paper's
// preprocessing: z = b + W [x; h] (bias first, then the inputs in order),
// gates i, f, g, o.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

using namespace optim;

namespace {

template <typename T> T sigmoid(T z) { return T(1) / (T(1) + std::exp(-z)); }

/// One LSTM cell: weights [4H, I+H+1] = [W_ih | W_hh | b].
template <typename T>
void lstm(const std::vector<float> &w, const std::vector<T> &x,
          std::vector<T> &h, std::vector<T> &c) {
  size_t hidden = h.size(), in = x.size(), cols = in + hidden + 1;
  std::vector<T> input = x;
  input.insert(input.end(), h.begin(), h.end());
  std::vector<T> z(4 * hidden);
  for (size_t r = 0; r < 4 * hidden; ++r) {
    T acc = w[r * cols + cols - 1];
    for (size_t j = 0; j + 1 < cols; ++j)
      acc = acc + T(w[r * cols + j]) * input[j];
    z[r] = acc;
  }
  for (size_t j = 0; j < hidden; ++j) {
    T i = sigmoid(z[j]), f = sigmoid(z[hidden + j]);
    T g = std::tanh(z[2 * hidden + j]), o = sigmoid(z[3 * hidden + j]);
    c[j] = f * c[j] + i * g;
    h[j] = o * std::tanh(c[j]);
  }
}

/// One coordinate of the learned optimizer, computed in T (float, or double
/// for a reference more accurate than the kernel).
template <typename T> struct CoordinateT {
  T p;
  std::vector<T> h1 = std::vector<T>(20), c1 = std::vector<T>(20),
                 h2 = std::vector<T>(20), c2 = std::vector<T>(20);

  void step(float g, const std::vector<float> &w1, const std::vector<float> &w2,
            const std::vector<float> &head) {
    const T k = 10, scale = T(0.1f);
    std::vector<T> x(2);
    if (std::fabs(g) >= float(std::exp(-10.0f))) {
      x[0] = T(std::log(std::fabs(g))) / k;
      x[1] = g > 0 ? T(1) : g < 0 ? T(-1) : T(g);
    } else {
      x[0] = -1;
      x[1] = T(std::exp(10.0f)) * T(g);
    }
    lstm(w1, x, h1, c1);
    lstm(w2, h1, h2, c2);
    T out = head[20];
    for (int j = 0; j < 20; ++j)
      out = out + T(head[j]) * h2[j];
    p = p + scale * out;
  }
};
using Coordinate = CoordinateT<float>;

std::vector<float> randomWeights(std::mt19937 &rng, size_t n, float sd = 0.3f) {
  std::normal_distribution<float> normal(0.0f, sd);
  std::vector<float> w(n);
  for (float &v : w)
    v = normal(rng);
  return w;
}

TEST(LearnedRule, L2LMatchesTheLSTMEquations) {
  Compiler compiler;
  Rule rule =
      compiler.compileFile(std::string(OPTIM_EXAMPLES_DIR) + "/l2l.optim");
  const RuleInfo &ri = rule.info();
  ASSERT_EQ(ri.weights.size(), 3u);
  EXPECT_EQ(ri.weights[0].shape, (std::vector<int64_t>{80, 23}));
  EXPECT_EQ(ri.weights[1].shape, (std::vector<int64_t>{80, 41}));
  EXPECT_EQ(ri.weights[2].shape, (std::vector<int64_t>{1, 21}));
  std::mt19937 rng(11);
  std::vector<float> w1 = randomWeights(rng, 80 * 23),
                     w2 = randomWeights(rng, 80 * 41),
                     head = randomWeights(rng, 21);

  std::vector<int64_t> sizes = {1, 7, 40, 0, 19};
  std::vector<std::vector<float>> params, grads(sizes.size());
  std::vector<std::vector<Coordinate>> refs;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t n : sizes) {
    params.emplace_back(n);
    refs.emplace_back(n);
    for (int64_t i = 0; i < n; ++i)
      params.back()[i] = refs.back()[i].p = normal(rng);
  }
  std::vector<Param> ps;
  for (auto &p : params)
    ps.emplace_back(p.data(), int64_t(p.size()));
  OptimizerOptions options;
  options.chunkSize = 24;
  Optimizer opt(rule, ps, options);
  std::vector<Grad> none;
  for (auto &p : params)
    none.emplace_back(p.data(), int64_t(p.size()));
  EXPECT_THROW(opt.step(none), Error); // Weights not set yet.
  EXPECT_THROW(opt.setWeights("lstm1", w1.data(), 5), Error);
  EXPECT_THROW(opt.setWeights("lstm3", w1.data(), 80 * 23), Error);
  opt.setWeights("lstm1", w1.data(), int64_t(w1.size()));
  opt.setWeights("lstm2", w2.data(), int64_t(w2.size()));
  opt.setWeights("head", head.data(), int64_t(head.size()));

  for (int t = 1; t <= 30; ++t) {
    std::vector<Grad> gs;
    for (size_t k = 0; k < sizes.size(); ++k) {
      grads[k].resize(sizes[k]);
      for (int64_t i = 0; i < sizes[k]; ++i) {
        float g = normal(rng) * std::pow(10.0f, float(int(rng() % 9)) - 6);
        grads[k][i] = (rng() % 16 == 0) ? 0.0f : g;
        refs[k][i].step(grads[k][i], w1, w2, head);
      }
      gs.emplace_back(grads[k].data(), sizes[k]);
    }
    opt.step(gs);
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    int64_t n = sizes[k];
    auto h2 = static_cast<const float *>(opt.state(k, "h2"));
    auto c1 = static_cast<const float *>(opt.state(k, "c1"));
    for (int64_t i = 0; i < n; ++i) {
      const Coordinate &ref = refs[k][i];
      EXPECT_NEAR(params[k][i], ref.p, 1e-5f * std::fabs(ref.p) + 1e-6f)
          << "p of tensor " << k << " at " << i;
      for (int j = 0; j < 20; ++j) {
        EXPECT_NEAR(h2[j * n + i], ref.h2[j], 1e-5f)
            << "h2 " << j << " at " << i;
        EXPECT_NEAR(c1[j * n + i], ref.c1[j], 1e-5f)
            << "c1 " << j << " at " << i;
      }
    }
  }
}

/// The kernel's approximations (rational tanh and sigmoid, fused
/// multiply-adds, polynomial log; see LowerRulesToKernels.cpp) against a
/// double-precision reference, with gates in their linear range (weights of
/// standard deviation 0.3) and saturated (3.0), on sizes that take every
/// path of the kernel (blocks of 64 coordinates, vectors of 16, single
/// coordinates) and chunks split among threads: results must be bitwise
/// identical for 1 and 2 threads, and within the stated error of the double
/// reference: 5e-5 relative to max(1, |x|) for the state, 1e-5 for p
/// (measured: 3e-7 and 4e-7 in the linear range, as close as the float
/// reference through <cmath>; 6e-6 and 2e-6 saturated, where the float
/// reference is 4e-6 away; each run prints them).
TEST(LearnedRule, L2LAccuracyAndThreadsOnAwkwardSizes) {
  Compiler compiler;
  Rule rule =
      compiler.compileFile(std::string(OPTIM_EXAMPLES_DIR) + "/l2l.optim");
  const std::vector<int64_t> sizes = {1000, 85, 64, 63, 17, 16, 1};
  for (float sd : {0.3f, 3.0f}) {
    std::mt19937 rng(sd > 1 ? 5 : 7);
    std::vector<float> w1 = randomWeights(rng, 80 * 23, sd),
                       w2 = randomWeights(rng, 80 * 41, sd),
                       head = randomWeights(rng, 21, sd);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<std::vector<float>> params[2];
    std::vector<std::vector<CoordinateT<double>>> refs;
    std::vector<std::vector<Coordinate>> floatRefs;
    for (int64_t n : sizes) {
      refs.emplace_back(n);
      floatRefs.emplace_back(n);
      std::vector<float> p(n);
      for (int64_t i = 0; i < n; ++i) {
        p[i] = normal(rng);
        refs.back()[i].p = p[i];
        floatRefs.back()[i].p = p[i];
      }
      params[0].push_back(p);
      params[1].push_back(p);
    }
    std::vector<std::unique_ptr<Optimizer>> opts;
    for (unsigned threads : {1u, 2u}) {
      std::vector<Param> ps;
      for (auto &p : params[opts.size()])
        ps.emplace_back(p.data(), int64_t(p.size()));
      OptimizerOptions options;
      options.threads = threads;
      options.chunkSize = 100; // 1000 splits into chunks over the threads.
      opts.push_back(std::make_unique<Optimizer>(rule, ps, options));
      opts.back()->setWeights("lstm1", w1.data(), int64_t(w1.size()));
      opts.back()->setWeights("lstm2", w2.data(), int64_t(w2.size()));
      opts.back()->setWeights("head", head.data(), int64_t(head.size()));
    }
    std::vector<std::vector<float>> grads(sizes.size());
    // Saturated, the recurrence is chaotic (the float reference itself
    // drifts away from the double one within a few steps): two steps then
    // measure the activations, not the divergence of trajectories.
    const int steps = sd > 1 ? 2 : 20;
    for (int t = 1; t <= steps; ++t) {
      std::vector<Grad> gs;
      for (size_t k = 0; k < sizes.size(); ++k) {
        grads[k].resize(sizes[k]);
        for (int64_t i = 0; i < sizes[k]; ++i) {
          float g = normal(rng) * std::pow(10.0f, float(int(rng() % 9)) - 6);
          grads[k][i] = (rng() % 16 == 0) ? 0.0f : g;
          refs[k][i].step(grads[k][i], w1, w2, head);
          floatRefs[k][i].step(grads[k][i], w1, w2, head);
        }
        gs.emplace_back(grads[k].data(), sizes[k]);
      }
      opts[0]->step(gs);
      opts[1]->step(gs);
    }
    double err = 0, floatErr = 0, pErr = 0;
    for (size_t k = 0; k < sizes.size(); ++k) {
      int64_t n = sizes[k];
      for (const char *name : {"h1", "c1", "h2", "c2"}) {
        auto one = static_cast<const float *>(opts[0]->state(k, name));
        auto two = static_cast<const float *>(opts[1]->state(k, name));
        ASSERT_EQ(0, std::memcmp(one, two, sizeof(float) * 20 * n))
            << name << " of tensor " << k << " differs between 1 and 2 threads";
        for (int64_t i = 0; i < n; ++i)
          for (int j = 0; j < 20; ++j) {
            const auto &ref = refs[k][i];
            const auto &fref = floatRefs[k][i];
            std::string s = name;
            const std::vector<double> &r = s == "h1"   ? ref.h1
                                           : s == "c1" ? ref.c1
                                           : s == "h2" ? ref.h2
                                                       : ref.c2;
            const std::vector<float> &f = s == "h1"   ? fref.h1
                                          : s == "c1" ? fref.c1
                                          : s == "h2" ? fref.h2
                                                      : fref.c2;
            // Relative to max(1, |x|): c grows without bound in principle.
            double scale = std::max(1.0, std::fabs(r[j]));
            err = std::max(err, std::fabs(one[j * n + i] - r[j]) / scale);
            floatErr = std::max(floatErr, std::fabs(f[j] - r[j]) / scale);
          }
      }
      ASSERT_EQ(0, std::memcmp(params[0][k].data(), params[1][k].data(),
                               sizeof(float) * n));
      for (int64_t i = 0; i < n; ++i)
        pErr = std::max(pErr, std::fabs(params[0][k][i] - refs[k][i].p) /
                                  std::max(1.0, std::fabs(refs[k][i].p)));
    }
    std::printf("weights sd %.1f, %d steps: max error of the state %.3g "
                "(float <cmath> reference: %.3g), of p %.3g\n",
                sd, steps, err, floatErr, pErr);
    EXPECT_LE(err, 5e-5) << "weights sd " << sd;
    EXPECT_LE(pErr, 1e-5) << "weights sd " << sd;
  }
}

} // namespace

// Every vector width computes each coordinate with the same operations, so
// widths that are not powers of two (whose lane vectors LLVM pads in
// memory) must give the bits of the default width, in f32 and f64.
TEST(LearnedRule, EveryVectorWidthGivesTheSameBits) {
  std::mt19937 rng(11);
  std::vector<float> w1 = randomWeights(rng, 80 * 23),
                     w2 = randomWeights(rng, 80 * 41),
                     head = randomWeights(rng, 21);
  const std::vector<int64_t> sizes = {70, 13, 1};
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<std::vector<float>>> grads(3);
  for (auto &step : grads)
    for (int64_t n : sizes) {
      step.emplace_back(n);
      for (float &g : step.back())
        g = normal(rng) * 1e-3f;
    }
  for (DType precision : {DType::F32, DType::F64}) {
    std::vector<std::vector<char>> reference;
    for (unsigned width : {16u, 1u, 3u, 4u, 5u, 8u, 12u}) {
      CompileOptions copts;
      copts.precision = precision;
      copts.vectorWidth = width;
      copts.learnedVectorWidth = width;
      copts.useCache = false;
      Rule rule = Compiler(copts).compileFile(std::string(OPTIM_EXAMPLES_DIR) +
                                              "/l2l.optim");
      size_t eltSize = precision == DType::F64 ? 8 : 4;
      std::vector<std::vector<char>> params;
      std::vector<Param> ps;
      for (int64_t n : sizes) {
        params.emplace_back(n * eltSize, 0);
        void *data = params.back().data();
        ps.push_back(precision == DType::F64
                         ? Param(static_cast<double *>(data), n)
                         : Param(static_cast<float *>(data), n));
      }
      Optimizer opt(rule, ps);
      for (auto [name, w] : {std::pair{"lstm1", &w1}, {"lstm2", &w2},
                             {"head", &head}}) {
        std::vector<double> w64(w->begin(), w->end());
        if (precision == DType::F64)
          opt.setWeights(name, w64.data(), int64_t(w64.size()));
        else
          opt.setWeights(name, w->data(), int64_t(w->size()));
      }
      std::vector<std::vector<double>> g64(sizes.size());
      for (auto &step : grads) {
        std::vector<Grad> gs;
        for (size_t k = 0; k < sizes.size(); ++k) {
          if (precision == DType::F64) {
            g64[k].assign(step[k].begin(), step[k].end());
            gs.emplace_back(g64[k].data(), sizes[k]);
          } else {
            gs.emplace_back(step[k].data(), sizes[k]);
          }
        }
        opt.step(gs);
      }
      std::vector<std::vector<char>> bits;
      for (size_t k = 0; k < sizes.size(); ++k) {
        bits.push_back(params[k]);
        for (const char *name : {"h1", "c1", "h2", "c2"}) {
          auto s = static_cast<const char *>(opt.state(k, name));
          bits.emplace_back(s, s + 20 * sizes[k] * eltSize);
        }
      }
      if (reference.empty())
        reference = bits;
      else
        for (size_t b = 0; b < bits.size(); ++b)
          ASSERT_EQ(reference[b], bits[b])
              << "vector width " << width << " ("
              << (precision == DType::F64 ? "f64" : "f32")
              << ") differs from width 16 in buffer " << b;
    }
  }
}

// The f64 activations (exp, tanh and the logistic function of LearnedMath.h,
// vectorized arithmetic instead of libm) against long double <cmath>: a
// one-unit cell whose four gates all read g (z = g), so that
// c1 = s(g) tanh(g) and h1 = s(g) tanh(c1) after one step, and
// c2 = s(g) c1 + s(g) tanh(g), h2 = s(g) tanh(c2) after two. The gradients
// cover both sides of every branch: 0, -0, subnormals, the expm1 range
// |2g| <= ln(2)/2, where tanh rounds to 1 (|g| ~ 19-20, past the cap of 20),
// where e^-g leaves the normal range (g ~ -708 to -746), overflows (g <
// -709.8) and underflows (g > 745.2), infinities and NaN, and a sweep of
// magnitudes; each sits at several positions so that the block, vector and
// single-coordinate paths all see it, at widths 1, 3 and the host's, which
// must give the same bits (NaN aside). Tolerance: 8 ulps of the result (the
// functions are within about 2 ulps; the products add a few), or 1e-300
// absolute where the result is subnormal.
TEST(LearnedRule, NaNPropagatesThroughTheCellInBothPrecisions) {
  // A NaN gradient (or weight) must give NaN h and c, as IEEE arithmetic
  // does: the f32 cell's clamp of its activations' arguments once turned
  // NaN into +-8, tanh(NaN) into -1, and a diverging f32 meta-training
  // into finite losses. +-inf keeps the activations' limits. The step and
  // its VJP (every width, the forward and the backward's own forward).
  const char *source = "learned rule probe() {\n"
                       "  weights cell = lstm(in: 1, hidden: 1)\n"
                       "  state h[1] = 0, c[1] = 0\n"
                       "  h, c = cell(g, h, c)\n"
                       "  p -= h[0]\n"
                       "}\n";
  const float nan = std::nanf(""), inf = HUGE_VALF;
  for (DType precision : {DType::F32, DType::F64})
    for (unsigned width : {0u, 1u}) {
      CompileOptions copts;
      copts.precision = precision;
      copts.learnedVectorWidth = width;
      copts.useCache = false;
      Rule rule = Compiler(copts).compileSource(source);
      // 37 coordinates: NaN in a vector block and in the scalar tail.
      const int64_t n = 37;
      std::vector<double> g(n, 0.5);
      g[3] = nan;
      g[36] = nan;
      g[5] = inf;
      g[6] = -inf;
      const double w[] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
                          0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
      std::vector<float> pf(n, 0), gf(g.begin(), g.end()), wf(w, w + 12);
      std::vector<double> pd(n, 0);
      const bool f32 = precision == DType::F32;
      Optimizer opt(rule, {f32 ? Param(pf.data(), n) : Param(pd.data(), n)});
      if (f32)
        opt.setWeights("cell", wf.data(), 12);
      else
        opt.setWeights("cell", w, 12);
      opt.step({f32 ? Grad(gf.data(), n) : Grad(g.data(), n)});
      auto at = [&](const char *state, int64_t i) {
        const void *s = opt.state(0, state);
        return f32 ? double(static_cast<const float *>(s)[i])
                   : static_cast<const double *>(s)[i];
      };
      for (int64_t i = 0; i < n; ++i) {
        SCOPED_TRACE(std::string(f32 ? "f32" : "f64") + ", width " +
                     std::to_string(width) + ", coordinate " +
                     std::to_string(i));
        const double p = f32 ? pf[i] : pd[i];
        if (std::isnan(g[i])) {
          EXPECT_TRUE(std::isnan(at("h", i))) << at("h", i);
          EXPECT_TRUE(std::isnan(at("c", i))) << at("c", i);
          EXPECT_TRUE(std::isnan(p)) << p;
        } else {
          EXPECT_TRUE(std::isfinite(at("h", i))) << at("h", i);
          EXPECT_TRUE(std::isfinite(p)) << p;
        }
      }
      // Non-finite weights are refused, as non-finite hyperparameters are.
      std::vector<float> badf(wf);
      std::vector<double> badd(w, w + 12);
      badf[4] = nan;
      badd[4] = nan;
      try {
        if (f32)
          opt.setWeights("cell", badf.data(), 12);
        else
          opt.setWeights("cell", badd.data(), 12);
        ADD_FAILURE() << "a NaN weight was accepted";
      } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find(
                      "'cell' has a non-finite value (nan) at index 4"),
                  std::string::npos)
            << e.what();
      }
    }
}

TEST(LearnedRule, F64ActivationsAgreeWithLongDouble) {
  const char *source = "learned rule probe() {\n"
                       "  weights cell = lstm(in: 1, hidden: 1)\n"
                       "  state h[1] = 0, c[1] = 0\n"
                       "  h, c = cell(g, h, c)\n"
                       "  p = p\n"
                       "}\n";
  std::vector<double> specials = {
      0.0,    -0.0,    4.9e-324, -2.2e-308, 1e-300,      -1e-20, 1e-8,
      0.17,   -0.1733, 0.1734,   0.35,      -0.5,        1.0,    -2.5,
      7.99,   18.9,    -19.99,   20.01,     36.0,        -300.0, -700.0,
      -708.5, -709.7,  -709.9,   -745.0,    745.1,       745.2,  746.0,
      800.0,  -800.0,  HUGE_VAL, -HUGE_VAL, std::nan("")};
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> exponent(-12.0, 3.0);
  for (int k = 0; k < 200; ++k)
    specials.push_back((k % 2 ? -1 : 1) * std::pow(10.0, exponent(rng)));
  // Every value at a multiple-of-16 position, in the middle of a block, and
  // among the last (single) coordinates.
  std::vector<double> g;
  for (double v : specials)
    g.insert(g.end(), {v, 1.0, 1.0, v, v});
  g.insert(g.end(), specials.begin(), specials.end());
  const int64_t n = int64_t(g.size());
  const double w[] = {1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0}; // [W_ih | W_hh | b]
  auto sigmoid = [](long double z) { return 1 / (1 + std::exp(-z)); };
  std::vector<std::vector<double>> reference;
  double worst = 0; // In ulps of the result.
  for (unsigned width : {0u, 1u, 3u}) {
    CompileOptions copts;
    copts.precision = DType::F64;
    copts.vectorWidth = width ? width : 16;
    copts.learnedVectorWidth = width;
    copts.useCache = false;
    Rule rule = Compiler(copts).compileSource(source);
    std::vector<double> p(n, 0.0);
    Optimizer opt(rule, {Param(p.data(), n)});
    opt.setWeights("cell", w, 12);
    std::vector<std::vector<double>> results;
    for (int step = 1; step <= 2; ++step) {
      opt.step({Grad(g.data(), n)});
      auto h = static_cast<const double *>(opt.state(0, "h"));
      auto c = static_cast<const double *>(opt.state(0, "c"));
      results.emplace_back(h, h + n);
      results.emplace_back(c, c + n);
      for (int64_t i = 0; i < n; ++i) {
        long double x = g[i], s = sigmoid(x), t = std::tanh(x);
        long double c1 = s * t, c2 = s * c1 + s * t;
        long double cRef = step == 1 ? c1 : c2, hRef = s * std::tanh(cRef);
        for (auto [name, got, want] :
             {std::tuple{"c", c[i], cRef}, std::tuple{"h", h[i], hRef}}) {
          if (std::isnan(x)) {
            EXPECT_TRUE(std::isnan(got)) << name << " for NaN: " << got;
            continue;
          }
          const double eps = std::numeric_limits<double>::epsilon();
          double tol = std::max(8 * eps * double(std::fabs(want)), 1e-300);
          if (std::fabs(want) > 1e-300 && std::isfinite(got))
            worst = std::max(
                worst, double(std::fabs(got - want) / (eps * std::fabs(want))));
          EXPECT_NEAR(got, double(want), tol)
              << name << " after step " << step << " for g = " << x
              << " (coordinate " << i << ", width " << width << ")";
        }
      }
    }
    if (reference.empty())
      reference = results;
    else
      // NaN for NaN, whatever its sign: x86 propagates the NaN of one
      // operand or the other, which the register allocation decides.
      for (size_t k = 0; k < results.size(); ++k)
        for (int64_t i = 0; i < n; ++i)
          ASSERT_TRUE(
              (std::isnan(reference[k][i]) && std::isnan(results[k][i])) ||
              !std::memcmp(&reference[k][i], &results[k][i], sizeof(double)))
              << "width " << width << " differs from the host's in buffer " << k
              << " at coordinate " << i << " (g = " << g[i]
              << "): " << results[k][i] << " vs " << reference[k][i];
  }
  std::printf("f64 activations: worst error %.2f ulps of the result\n", worst);
}
