//===- VectorStateTest.cpp - rules with per-coordinate vector states ------===//
//
// A rule with vector states (component-major storage), log_sign, vector
// selects, reductions and indexing, JIT-compiled and run on awkward sizes,
// against a reference written from the same definitions (language docs).
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

const char *kRule = R"(
rule multi(lr = 0.05, const k = 4) {
  state h[3] = 0.5, e[2] = 0
  let x = log_sign(g, k)
  e = 0.9 * e + x
  h = select(h > g, 0.5 * h + g, h - 0.25 * g)
  p -= lr * (sum(h) / 3 + e[0] * 0.1 + mean(e) - dot(h, h) * 0.01 + h[2])
}
)";

struct Coordinate {
  float p, h[3] = {0.5f, 0.5f, 0.5f}, e[2] = {0, 0};

  void step(float g, float lr) {
    const float k = 4;
    float x[2];
    if (std::fabs(g) >= std::exp(-k)) {
      x[0] = std::log(std::fabs(g)) / k;
      x[1] = g > 0 ? 1.0f : g < 0 ? -1.0f : g;
    } else {
      x[0] = -1;
      x[1] = std::exp(k) * g;
    }
    for (int j = 0; j < 2; ++j)
      e[j] = 0.9f * e[j] + x[j];
    for (int j = 0; j < 3; ++j)
      h[j] = h[j] > g ? 0.5f * h[j] + g : h[j] - 0.25f * g;
    float sum = (h[0] + h[1]) + h[2];
    float mean = (e[0] + e[1]) / 2;
    float dot = (h[0] * h[0] + h[1] * h[1]) + h[2] * h[2];
    p = p - lr * ((((sum / 3 + e[0] * 0.1f) + mean) - dot * 0.01f) + h[2]);
  }
};

void expectClose(float got, float want, const char *what, size_t i) {
  EXPECT_LE(std::fabs(got - want), 1e-5f * std::fabs(want) + 1e-6f)
      << what << " at " << i << ": got " << got << ", want " << want;
}

TEST(VectorStates, MatchReferenceOnAwkwardSizes) {
  Compiler compiler;
  Rule rule = compiler.compileSource(kRule, "multi.optim");
  ASSERT_EQ(rule.info().states.size(), 2u);
  EXPECT_EQ(rule.info().states[0].size, 3);
  for (unsigned threads : {1u, 2u}) {
    std::vector<int64_t> sizes = {1, 7, 40, 1000, 0};
    std::vector<std::vector<float>> params, grads(sizes.size());
    std::vector<std::vector<Coordinate>> refs;
    std::mt19937 rng(7);
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
    options.threads = threads;
    options.chunkSize = 24; // Several chunks, and chunks shorter than 16.
    Optimizer opt(rule, ps, options);
    opt.set("lr", 0.02);
    for (int t = 1; t <= 200; ++t) {
      std::vector<Grad> gs;
      for (size_t k = 0; k < sizes.size(); ++k) {
        grads[k].resize(sizes[k]);
        for (int64_t i = 0; i < sizes[k]; ++i) {
          float g = normal(rng) * std::pow(10.0f, float(int(rng() % 7)) - 4);
          grads[k][i] = (rng() % 16 == 0) ? 0.0f : g;
          refs[k][i].step(grads[k][i], 0.02f);
        }
        gs.emplace_back(grads[k].data(), sizes[k]);
      }
      opt.step(gs);
    }
    for (size_t k = 0; k < sizes.size(); ++k) {
      int64_t n = sizes[k];
      auto h = static_cast<const float *>(opt.state(k, "h"));
      auto e = static_cast<const float *>(opt.state(k, "e"));
      for (int64_t i = 0; i < n; ++i) {
        expectClose(params[k][i], refs[k][i].p, "p", i);
        for (int j = 0; j < 3; ++j)
          expectClose(h[j * n + i], refs[k][i].h[j], "h", i);
        for (int j = 0; j < 2; ++j)
          expectClose(e[j * n + i], refs[k][i].e[j], "e", i);
      }
    }
  }
}

// AggMo (Lucas et al., 2019) twice: three scalar states, as in
// test/Run/Inputs/literature.optim (rule_oracle.py checks it against
// numpy), and one vector state multiplied by a vector literal of its
// hyperparameters. Same operations in the same order, so the two must agree
// bit for bit, in both precisions, on every thread count.
const char *kAggMoScalars = R"(
rule aggmo(lr = 1e-2, beta1 = 0.0, beta2 = 0.9, beta3 = 0.99) {
  state v1 = 0, v2 = 0, v3 = 0
  v1 = beta1 * v1 - g
  v2 = beta2 * v2 - g
  v3 = beta3 * v3 - g
  p += lr / 3 * (v1 + v2 + v3)
}
)";
const char *kAggMoVector = R"(
rule aggmo(lr = 1e-2, beta1 = 0.0, beta2 = 0.9, beta3 = 0.99) {
  state v[3] = 0
  v = [beta1, beta2, beta3] * v - g
  p += lr / 3 * sum(v)
}
)";

template <typename T> void checkAggMoLiteral(DType precision) {
  CompileOptions options;
  options.precision = precision;
  Compiler compiler(options);
  Rule scalars = compiler.compileSource(kAggMoScalars, "scalars.optim");
  Rule literal = compiler.compileSource(kAggMoVector, "vector.optim");
  for (unsigned threads : {1u, 2u}) {
    std::vector<int64_t> sizes = {1, 37, 1000, 0, 33001};
    std::mt19937 rng(11);
    std::normal_distribution<T> normal(0, 1);
    std::vector<std::vector<T>> a, b, grads;
    for (int64_t n : sizes) {
      a.emplace_back(n);
      grads.emplace_back(n);
      for (T &x : a.back())
        x = normal(rng);
      b.push_back(a.back());
    }
    std::vector<Param> pa, pb;
    for (size_t k = 0; k < sizes.size(); ++k) {
      pa.emplace_back(a[k].data(), sizes[k]);
      pb.emplace_back(b[k].data(), sizes[k]);
    }
    OptimizerOptions oo;
    oo.threads = threads;
    Optimizer oa(scalars, pa, oo), ob(literal, pb, oo);
    for (Optimizer *o : {&oa, &ob}) {
      o->set("lr", 0.003);
      o->set("beta1", 0.5);
      o->set("beta2", 0.8);
      o->set("beta3", 0.95);
    }
    for (int t = 1; t <= 50; ++t) {
      std::vector<Grad> gs;
      for (size_t k = 0; k < sizes.size(); ++k) {
        for (T &g : grads[k])
          g = normal(rng) * std::pow(T(10), T(int(rng() % 5)) - 2);
        gs.emplace_back(grads[k].data(), sizes[k]);
      }
      oa.step(gs);
      ob.step(gs);
    }
    for (size_t k = 0; k < sizes.size(); ++k) {
      int64_t n = sizes[k];
      const char *names[] = {"v1", "v2", "v3"};
      auto v = static_cast<const T *>(ob.state(k, "v"));
      for (int j = 0; j < 3; ++j) {
        auto vj = static_cast<const T *>(oa.state(k, names[j]));
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(v[j * n + i], vj[i])
              << names[j] << " of tensor " << k << " at " << i << ", "
              << threads << " threads";
      }
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(b[k][i], a[k][i]) << "p of tensor " << k << " at " << i
                                    << ", " << threads << " threads";
    }
  }
}

TEST(VectorStates, LiteralOfHyperparametersMatchesScalarStatesF32) {
  checkAggMoLiteral<float>(DType::F32);
}

TEST(VectorStates, LiteralOfHyperparametersMatchesScalarStatesF64) {
  checkAggMoLiteral<double>(DType::F64);
}

} // namespace
