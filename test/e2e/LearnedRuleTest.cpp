//===- LearnedRuleTest.cpp - the coordinatewise LSTM optimizer
//-------------===//
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
#include <random>
#include <vector>

using namespace optim;

namespace {

float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

/// One LSTM cell: weights [4H, I+H+1] = [W_ih | W_hh | b].
void lstm(const std::vector<float> &w, const std::vector<float> &x,
          std::vector<float> &h, std::vector<float> &c) {
  size_t hidden = h.size(), in = x.size(), cols = in + hidden + 1;
  std::vector<float> input = x;
  input.insert(input.end(), h.begin(), h.end());
  std::vector<float> z(4 * hidden);
  for (size_t r = 0; r < 4 * hidden; ++r) {
    float acc = w[r * cols + cols - 1];
    for (size_t j = 0; j + 1 < cols; ++j)
      acc = acc + w[r * cols + j] * input[j];
    z[r] = acc;
  }
  for (size_t j = 0; j < hidden; ++j) {
    float i = sigmoid(z[j]), f = sigmoid(z[hidden + j]);
    float g = std::tanh(z[2 * hidden + j]), o = sigmoid(z[3 * hidden + j]);
    c[j] = f * c[j] + i * g;
    h[j] = o * std::tanh(c[j]);
  }
}

struct Coordinate {
  float p;
  std::vector<float> h1 = std::vector<float>(20), c1 = std::vector<float>(20),
                     h2 = std::vector<float>(20), c2 = std::vector<float>(20);

  void step(float g, const std::vector<float> &w1, const std::vector<float> &w2,
            const std::vector<float> &head) {
    const float k = 10, scale = 0.1f;
    std::vector<float> x(2);
    if (std::fabs(g) >= std::exp(-k)) {
      x[0] = std::log(std::fabs(g)) / k;
      x[1] = g > 0 ? 1.0f : g < 0 ? -1.0f : g;
    } else {
      x[0] = -1;
      x[1] = std::exp(k) * g;
    }
    lstm(w1, x, h1, c1);
    lstm(w2, h1, h2, c2);
    float out = head[20];
    for (int j = 0; j < 20; ++j)
      out = out + head[j] * h2[j];
    p = p + scale * out;
  }
};

std::vector<float> randomWeights(std::mt19937 &rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 0.3f);
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

} // namespace
