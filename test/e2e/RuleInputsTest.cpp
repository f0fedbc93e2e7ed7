//===- RuleInputsTest.cpp - rules with per-coordinate inputs (ABI 7) ------===//
//
// Rules that declare `input h` read one more stream per coordinate. These
// tests JIT-compile such rules and call their raw kernels on chunk tables
// built here as KernelABI.h (version 7) lays them out: per chunk the
// pointers p, g, the inputs in declaration order, then the states. The
// results are compared with references written out below (no runtime API:
// the Optimizer's handling of inputs is tested with it). Sizes 0, 1, 7 and
// 1000 in chunks of at most 300 (several chunks, vector loops, scalar
// tails), f32 and f64, several steps.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace optim;

namespace {

Rule compile(const char *source, DType dtype, bool vjp = false) {
  CompileOptions options;
  options.precision = dtype;
  options.useCache = false;
  options.vjp = vjp;
  return Compiler(options).compileSource(source, "inputs-test.optim");
}

/// Sophia (Liu et al., 2023), its update as written in the paper, with the
/// Hessian estimate h supplied per coordinate. The hyperparameters make the
/// clamp and the max(rho * hh, eps) bite on some coordinates.
const char *kSophia = R"(
rule sophia(lr = 0.05, beta1 = 0.9, beta2 = 0.95, rho = 0.5, eps = 1e-3) {
  input h
  state m = 0, hh = 0
  m = beta1 * m + (1 - beta1) * g
  hh = beta2 * hh + (1 - beta2) * h
  p -= lr * clamp(m / max(rho * hh, eps), -1, 1)
}
)";

/// Coordinates of one tensor cut into chunks of at most `chunk`; a tensor of
/// 0 coordinates is one empty chunk (the kernel must do nothing).
std::vector<int64_t> chunkLengths(int64_t n, int64_t chunk) {
  std::vector<int64_t> lengths;
  for (int64_t off = 0; off < n; off += chunk)
    lengths.push_back(std::min(chunk, n - off));
  if (lengths.empty())
    lengths.push_back(0);
  return lengths;
}

/// Pointers per chunk (p, g, inputs..., states...), each offset to the
/// chunk's first coordinate.
template <typename T>
std::vector<void *> chunkTable(const std::vector<int64_t> &lengths,
                               std::vector<std::vector<T> *> streams) {
  std::vector<void *> ptrs;
  int64_t off = 0;
  for (int64_t len : lengths) {
    for (std::vector<T> *s : streams)
      ptrs.push_back(s->data() + off);
    off += len;
  }
  return ptrs;
}

template <typename T> T clampRef(T x, T lo, T hi) {
  return std::min(std::max(x, lo), hi);
}

template <typename T> void expectClose(T actual, T expected, const char *what,
                                       int64_t i) {
  T tol = std::numeric_limits<T>::epsilon() * 8 *
          std::max(T(1), std::fabs(expected));
  EXPECT_NEAR(actual, expected, tol) << what << "[" << i << "]";
}

template <typename T> void checkSophia(DType dtype, int64_t n) {
  Rule rule = compile(kSophia, dtype);
  ASSERT_TRUE(rule.kernel());
  ASSERT_EQ(rule.info().inputs, std::vector<std::string>{"h"});
  ASSERT_EQ(rule.info().states.size(), 2u);
  const std::vector<double> hypers = {0.05, 0.9, 0.95, 0.5, 1e-3};
  const T lr = T(hypers[0]), b1 = T(hypers[1]), b2 = T(hypers[2]),
          rho = T(hypers[3]), eps = T(hypers[4]);

  std::mt19937 rng(7 + n);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  // One spare element past the end of every stream, never to be written.
  const T sentinel = T(12345);
  auto stream = [&](double scale, double shift) {
    std::vector<T> v(n + 1);
    for (int64_t i = 0; i < n; ++i)
      v[i] = T(scale * u(rng) + shift);
    v[n] = sentinel;
    return v;
  };
  std::vector<T> p = stream(1.0, 0.0), m(n + 1, T(0)), hh(n + 1, T(0));
  m[n] = hh[n] = sentinel;
  std::vector<T> pRef(p.begin(), p.end() - 1), mRef(n, T(0)), hhRef(n, T(0));
  std::vector<int64_t> lengths = chunkLengths(n, 300);
  std::vector<int64_t> strides(lengths.size(), n);

  for (int64_t t = 1; t <= 4; ++t) {
    std::vector<T> g = stream(1.0, 0.0);
    // Nonnegative Hessian estimates, some exactly 0 (eps takes over), some
    // large (no clamp).
    std::vector<T> h = stream(0.5, 0.5);
    for (int64_t i = 0; i < n; i += 5)
      h[i] = T(0);
    for (int64_t i = 2; i < n; i += 7)
      h[i] = T(40);
    const std::vector<T> gBefore = g, hBefore = h;
    std::vector<void *> ptrs = chunkTable<T>(lengths, {&p, &g, &h, &m, &hh});
    rule.kernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                  int64_t(lengths.size()), hypers.data(), t, nullptr,
                  /*rng=*/nullptr);
    for (int64_t i = 0; i < n; ++i) {
      mRef[i] = b1 * mRef[i] + (T(1) - b1) * g[i];
      hhRef[i] = b2 * hhRef[i] + (T(1) - b2) * h[i];
      pRef[i] = pRef[i] -
                lr * clampRef(mRef[i] / std::max(rho * hhRef[i], eps), T(-1),
                              T(1));
    }
    for (int64_t i = 0; i < n; ++i) {
      expectClose(m[i], mRef[i], "m", i);
      expectClose(hh[i], hhRef[i], "hh", i);
      expectClose(p[i], pRef[i], "p", i);
    }
    // Inputs and gradients are read only; nothing past the end is touched.
    EXPECT_EQ(p[n], sentinel);
    EXPECT_EQ(m[n], sentinel);
    EXPECT_EQ(hh[n], sentinel);
    EXPECT_EQ(h, hBefore);
    EXPECT_EQ(g, gBefore);
  }
}

class SophiaInputs : public ::testing::TestWithParam<int64_t> {};

TEST_P(SophiaInputs, F32) { checkSophia<float>(DType::F32, GetParam()); }
TEST_P(SophiaInputs, F64) { checkSophia<double>(DType::F64, GetParam()); }

INSTANTIATE_TEST_SUITE_P(Sizes, SophiaInputs,
                         ::testing::Values(0, 1, 7, 1000));

/// Two inputs declared apart, one of them read only by a tensor reduction
/// and a state's initial value, the other (host noise, as in SGLD) added to
/// p: the two-pass kernels read the same table.
const char *kTwoInputs = R"(
rule two(lr = 0.1) {
  input a
  state z = a
  input noise
  let s = tensor_sum(a * g)
  z = 0.5 * z + g
  p -= lr * (z + s) - noise
}
)";

template <typename T> void checkTwoInputs(DType dtype, int64_t n) {
  Rule rule = compile(kTwoInputs, dtype);
  ASSERT_TRUE(rule.reduceKernel() && rule.reducedKernel());
  ASSERT_EQ(rule.info().inputs, (std::vector<std::string>{"a", "noise"}));
  ASSERT_EQ(rule.info().reductions.size(), 1u);
  const std::vector<double> hypers = {0.1};
  const T lr = T(hypers[0]);
  std::mt19937 rng(11 + n);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  auto stream = [&] {
    std::vector<T> v(n);
    for (T &x : v)
      x = T(u(rng));
    return v;
  };
  std::vector<T> p = stream(), z(n, T(0));
  std::vector<T> pRef = p, zRef = z;
  std::vector<int64_t> lengths = chunkLengths(n, 300);
  std::vector<int64_t> strides(lengths.size(), n);
  for (int64_t t = 1; t <= 3; ++t) {
    std::vector<T> g = stream(), a = stream(), noise = stream();
    std::vector<void *> ptrs = chunkTable<T>(lengths, {&p, &g, &a, &noise, &z});
    std::vector<double> partials(lengths.size(), NAN);
    rule.reduceKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                        int64_t(lengths.size()), hypers.data(), t, nullptr,
                        partials.data(), /*reduced=*/nullptr, /*stage=*/0,
                        /*rng=*/nullptr);
    // One tensor: the reduced value of every chunk is the sum of all.
    double total = 0;
    for (double x : partials)
      total += x;
    std::vector<double> reduced(lengths.size(), total);
    rule.reducedKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                         int64_t(lengths.size()), hypers.data(), t, nullptr,
                         reduced.data(), /*rng=*/nullptr);
    // The operand a * g is rounded to the element type, then summed in
    // double (KernelABI.h, version 6).
    double sRef = 0;
    for (int64_t i = 0; i < n; ++i)
      sRef += double(T(a[i] * g[i]));
    // The kernel's sum adds lanes in another order: close, not equal.
    EXPECT_NEAR(total, sRef, 1e-12 * std::max(1.0, std::fabs(sRef)));
    T s = T(total);
    for (int64_t i = 0; i < n; ++i) {
      if (t == 1)
        zRef[i] = a[i];
      zRef[i] = T(0.5) * zRef[i] + g[i];
      pRef[i] = pRef[i] - (lr * (zRef[i] + s) - noise[i]);
    }
    for (int64_t i = 0; i < n; ++i) {
      expectClose(z[i], zRef[i], "z", i);
      expectClose(p[i], pRef[i], "p", i);
    }
  }
}

class TwoInputs : public ::testing::TestWithParam<int64_t> {};

TEST_P(TwoInputs, F32) { checkTwoInputs<float>(DType::F32, GetParam()); }
TEST_P(TwoInputs, F64) { checkTwoInputs<double>(DType::F64, GetParam()); }

INSTANTIATE_TEST_SUITE_P(Sizes, TwoInputs, ::testing::Values(0, 1, 7, 1000));

/// Without inputs, the table is what it always was (2 + S pointers).
TEST(RuleInputs, RulesWithoutInputsKeepTheirTable) {
  Rule rule = compile(R"(
rule momentum(lr = 0.1, mu = 0.9) {
  state buf = 0
  buf = mu * buf + g
  p -= lr * buf
}
)",
                      DType::F32);
  EXPECT_TRUE(rule.info().inputs.empty());
  std::vector<float> p = {1, 2, 3}, g = {1, 1, 1}, buf = {0, 0, 0};
  std::vector<int64_t> lengths = {3}, strides = {3};
  std::vector<void *> ptrs = chunkTable<float>(lengths, {&p, &g, &buf});
  std::vector<double> hypers = {0.1, 0.9};
  rule.kernel()(ptrs.data(), lengths.data(), strides.data(), 0, 1,
                hypers.data(), 1, nullptr, /*rng=*/nullptr);
  EXPECT_FLOAT_EQ(p[2], 3 - 0.1f);
  EXPECT_FLOAT_EQ(buf[0], 1.0f);
}

} // namespace
