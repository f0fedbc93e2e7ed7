//===- RandomKernelTest.cpp - rand() and randn() in raw kernels (ABI 8) ---===//
//
// Rules that call rand() / randn() draw per coordinate from Philox4x32-10
// keyed by rng[0] with the counter (global index, step, site) (KernelABI.h,
// version 8, "Random numbers"). These tests JIT-compile such rules and call
// their raw kernels (rule, reduce, VJP) on chunk tables built here, with
// `rng` laid out as the ABI says, and compare the values with an
// independent Philox written below (checked against Random123's known-answer
// vectors): uniform values bit for bit, normal ones to a few ulps of the
// formula evaluated with std::log, std::sqrt and std::cos in the element
// type. Tensors of 0, 1, 7, 33 and 1001 coordinates, split into chunks in
// several ways, global indices crossing 2^32, several vector widths: the
// values depend on the seed, the coordinate, the step and the site only.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"

#include "gtest/gtest.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

using namespace optim;

namespace {

//===----------------------------------------------------------------------===//
// An independent Philox4x32-10 (Salmon et al., SC'11), as Random123 writes it.
//===----------------------------------------------------------------------===//

using Words = std::array<uint32_t, 4>;

Words philox(Words ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint64_t p0 = uint64_t(0xD2511F53u) * ctr[0];
    uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr[2];
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = {hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0};
  }
  return ctr;
}

TEST(Philox, KnownAnswers) {
  // Random123's tests/kat_vectors, philox4x32_10: ctr[4] key[2] -> out[4].
  EXPECT_EQ(philox({0, 0, 0, 0}, 0, 0),
            (Words{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                   0xffffffff, 0xffffffff),
            (Words{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                   0xa4093822, 0x299f31d0),
            (Words{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

/// The words of site `site` at global index i and step t.
Words draw(uint64_t seed, uint64_t i, int64_t t, uint32_t site) {
  return philox({uint32_t(i), uint32_t(i >> 32), uint32_t(uint64_t(t)), site},
                uint32_t(seed), uint32_t(seed >> 32));
}

template <typename T> T uniformRef(const Words &w, int first = 0) {
  if constexpr (std::is_same_v<T, float>)
    return float(w[first] >> 8) * 0x1p-24f;
  else
    return double(((uint64_t(w[first + 1]) << 32) | w[first]) >> 11) *
           0x1p-53;
}

template <typename T> T normalRef(const Words &w) {
  T ua = uniformRef<T>(w, 0);
  T ub = std::is_same_v<T, float> ? uniformRef<T>(w, 1) : uniformRef<T>(w, 2);
  T twoPi = T(6.283185307179586476925286766559);
  T radius = std::sqrt(T(-2) * std::log(T(1) - ua));
  return radius * std::cos(twoPi * ub);
}

template <typename T> void expectNormal(T actual, T expected, const char *what,
                                        int64_t i) {
  T tol = 4 * std::numeric_limits<T>::epsilon() *
          std::max(T(1), std::fabs(expected));
  EXPECT_NEAR(actual, expected, tol) << what << " at global index " << i;
}

Rule compile(const char *source, DType dtype, unsigned width,
             bool vjp = false) {
  CompileOptions options;
  options.precision = dtype;
  options.vectorWidth = width;
  options.useCache = false;
  options.vjp = vjp;
  return Compiler(options).compileSource(source, "random-test.optim");
}

/// Tensors of these sizes, concatenated: a coordinate's global index is its
/// position in the concatenation, plus `kFirst` (the runtime would start at
/// 0; a base near 2^32 checks the counter's high word).
const std::vector<int64_t> kSizes = {0, 1, 7, 33, 1001};
constexpr uint64_t kFirst = (uint64_t(1) << 32) - 517;
constexpr uint64_t kSeed = 0x0123456789ABCDEFull;

/// A chunk table over the concatenation: chunks of at most `chunk`
/// coordinates, never across tensors (an empty tensor is one empty chunk);
/// `rng` gets the seed and each chunk's first global index.
struct Table {
  std::vector<int64_t> lengths, strides, starts;
  std::vector<uint64_t> rng;
  int64_t total = 0;

  Table(int64_t chunk) {
    rng.push_back(kSeed);
    int64_t at = 0;
    for (int64_t size : kSizes) {
      int64_t off = 0;
      do {
        int64_t len = std::min(chunk, size - off);
        lengths.push_back(len);
        strides.push_back(size);
        starts.push_back(at + off);
        rng.push_back(kFirst + uint64_t(at + off));
        off += len;
      } while (off < size);
      at += size;
    }
    total = at;
  }
  int64_t chunks() const { return int64_t(lengths.size()); }
  /// Pointers per chunk into `streams` (each of `total` elements).
  template <typename T>
  std::vector<void *> ptrs(std::vector<std::vector<T> *> streams) const {
    std::vector<void *> out;
    for (int64_t c = 0; c < chunks(); ++c)
      for (std::vector<T> *s : streams)
        out.push_back(s->data() + starts[c]);
    return out;
  }
};

/// Two sites: u = rand() (site 0), z = randn() (site 1), kept in states.
const char *kDraws = R"(
rule draws(lr = 0.25) {
  state u = 0, z = 0
  u = rand()
  z = randn()
  p -= lr * g
}
)";

template <typename T> void checkDraws(DType dtype, unsigned width) {
  Rule rule = compile(kDraws, dtype, width);
  ASSERT_TRUE(rule.kernel());
  ASSERT_EQ(rule.info().random,
            (std::vector<RandomKind>{RandomKind::Uniform, RandomKind::Normal}));
  const std::vector<double> hypers = {0.25};
  for (int64_t chunk : {int64_t(1) << 20, int64_t(300), int64_t(16)}) {
    Table table(chunk);
    int64_t n = table.total;
    for (int64_t t : {int64_t(1), int64_t(3), (int64_t(1) << 32) + 3}) {
      std::vector<T> p(n, T(1)), g(n, T(0.5)), u(n, T(-7)), z(n, T(-7));
      std::vector<void *> ptrs = table.ptrs<T>({&p, &g, &u, &z});
      rule.kernel()(ptrs.data(), table.lengths.data(), table.strides.data(), 0,
                    table.chunks(), hypers.data(), t, nullptr,
                    table.rng.data());
      for (int64_t i = 0; i < n; ++i) {
        uint64_t global = kFirst + uint64_t(i);
        T uRef = uniformRef<T>(draw(kSeed, global, t, 0));
        ASSERT_EQ(u[i], uRef) << "rand() at global index " << global
                              << ", chunks of " << chunk << ", t " << t;
        expectNormal(z[i], normalRef<T>(draw(kSeed, global, t, 1)), "randn()",
                     int64_t(global));
        EXPECT_EQ(p[i], T(1) - T(0.25) * T(0.5));
      }
    }
  }
}

class RandomDraws : public ::testing::TestWithParam<unsigned> {};
TEST_P(RandomDraws, F32) { checkDraws<float>(DType::F32, GetParam()); }
TEST_P(RandomDraws, F64) { checkDraws<double>(DType::F64, GetParam()); }
// 16: the default; 3: lanes that are not a power of two; 1: scalar only.
INSTANTIATE_TEST_SUITE_P(Widths, RandomDraws, ::testing::Values(16u, 4u, 3u, 1u));

/// Steps t and t + 2^32 draw alike, t and t + 1 do not; the seed matters.
TEST(RandomSites, StepAndSeed) {
  Rule rule = compile(kDraws, DType::F32, 8);
  Table table(64);
  int64_t n = table.total;
  auto run = [&](int64_t t, uint64_t seed) {
    std::vector<float> p(n), g(n), u(n), z(n);
    std::vector<uint64_t> rng = table.rng;
    rng[0] = seed;
    std::vector<void *> ptrs = table.ptrs<float>({&p, &g, &u, &z});
    std::vector<double> hypers = {0.25};
    rule.kernel()(ptrs.data(), table.lengths.data(), table.strides.data(), 0,
                  table.chunks(), hypers.data(), t, nullptr, rng.data());
    return u;
  };
  EXPECT_EQ(run(5, kSeed), run(5 + (int64_t(1) << 32), kSeed));
  EXPECT_NE(run(5, kSeed), run(6, kSeed));
  EXPECT_NE(run(5, kSeed), run(5, kSeed + 1));
  EXPECT_NE(run(5, kSeed), run(5, kSeed + (uint64_t(1) << 32)));
}

/// A rule that draws nothing never reads rng: NULL is allowed, and it has
/// no draw sites.
TEST(RandomSites, NoDrawsTakeNullRng) {
  Rule rule = compile("rule sgd(lr = 0.5) { p -= lr * g }", DType::F32, 16);
  EXPECT_TRUE(rule.info().random.empty());
  Table table(300);
  int64_t n = table.total;
  std::vector<float> p(n, 1.0f), g(n, 1.0f);
  std::vector<void *> ptrs = table.ptrs<float>({&p, &g});
  std::vector<double> hypers = {0.5};
  rule.kernel()(ptrs.data(), table.lengths.data(), table.strides.data(), 0,
                table.chunks(), hypers.data(), 1, nullptr, nullptr);
  for (float x : p)
    EXPECT_EQ(x, 0.5f);
}

/// A dead draw keeps its site: the live one after it still draws with
/// counter word 3 = 1, and the rule lists both.
TEST(RandomSites, DeadSiteKeepsNumbers) {
  Rule rule = compile(R"(
rule dead(lr = 0.5) {
  state u = 0
  let unused = randn()
  u = rand()
  p -= lr * g
}
)",
                      DType::F64, 4);
  ASSERT_EQ(rule.info().random,
            (std::vector<RandomKind>{RandomKind::Normal, RandomKind::Uniform}));
  Table table(10);
  int64_t n = table.total;
  std::vector<double> p(n), g(n), u(n);
  std::vector<void *> ptrs = table.ptrs<double>({&p, &g, &u});
  std::vector<double> hypers = {0.5};
  rule.kernel()(ptrs.data(), table.lengths.data(), table.strides.data(), 0,
                table.chunks(), hypers.data(), 2, nullptr, table.rng.data());
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(u[i], uniformRef<double>(draw(kSeed, kFirst + i, 2, 1))) << i;
}

/// With a tensor reduction the reduce kernel recomputes the rule kernel's
/// draws: u = x exactly, and each chunk's partial is the sum of its x.
const char *kReduced = R"(
rule red(lr = 0.25) {
  state u = 0, z = 0
  let x = rand()
  u = x
  z = randn()
  p -= lr * tensor_sum(x)
}
)";

template <typename T> void checkReduced(DType dtype, unsigned width) {
  Rule rule = compile(kReduced, dtype, width);
  ASSERT_TRUE(rule.reduceKernel() && rule.reducedKernel());
  for (int64_t chunk : {int64_t(1) << 20, int64_t(33)}) {
    Table table(chunk);
    int64_t n = table.total;
    const int64_t t = 7;
    std::vector<T> p(n, T(0)), g(n, T(0)), u(n), z(n);
    std::vector<void *> ptrs = table.ptrs<T>({&p, &g, &u, &z});
    std::vector<double> hypers = {0.25};
    std::vector<double> partials(table.chunks(), NAN);
    rule.reduceKernel()(ptrs.data(), table.lengths.data(), table.strides.data(),
                        0, table.chunks(), hypers.data(), t, nullptr,
                        partials.data(), /*reduced=*/nullptr, /*stage=*/0,
                        table.rng.data());
    for (int64_t c = 0; c < table.chunks(); ++c) {
      double sum = 0;
      for (int64_t k = 0; k < table.lengths[c]; ++k)
        sum += double(uniformRef<T>(
            draw(kSeed, kFirst + uint64_t(table.starts[c] + k), t, 0)));
      EXPECT_NEAR(partials[c], sum, 1e-12 * std::max(1.0, sum)) << c;
    }
    std::vector<double> reduced(partials.begin(), partials.end());
    rule.reducedKernel()(ptrs.data(), table.lengths.data(),
                         table.strides.data(), 0, table.chunks(),
                         hypers.data(), t, nullptr, reduced.data(),
                         table.rng.data());
    for (int64_t i = 0; i < n; ++i) {
      uint64_t global = kFirst + uint64_t(i);
      ASSERT_EQ(u[i], uniformRef<T>(draw(kSeed, global, t, 0))) << i;
      expectNormal(z[i], normalRef<T>(draw(kSeed, global, t, 1)), "randn()",
                   int64_t(global));
    }
  }
}

TEST(RandomReduced, F32) {
  for (unsigned width : {16u, 3u, 1u})
    checkReduced<float>(DType::F32, width);
}
TEST(RandomReduced, F64) {
  for (unsigned width : {8u, 1u})
    checkReduced<double>(DType::F64, width);
}

/// Reverse mode: a draw is a constant, and the VJP kernel recomputes the
/// forward step's draws from rng. L = sum(p'), p' = p - lr (g + sigma z):
/// dL/dp = 1, dL/dlr = -sum(g + sigma z), dL/dsigma = -lr sum(z), checked
/// against the reference draws and against central differences of the
/// forward kernel (same rng).
const char *kNoisy = R"(
rule noisy(lr = 0.1, sigma = 0.5) {
  p -= lr * (g + sigma * randn())
}
)";

TEST(RandomVJP, MatchesReferenceAndFiniteDifferences) {
  for (unsigned width : {8u, 3u, 1u}) {
    Rule rule = compile(kNoisy, DType::F64, width, /*vjp=*/true);
    ASSERT_TRUE(rule.kernel() && rule.vjpKernel());
    Table table(40);
    int64_t n = table.total;
    const int64_t t = 11;
    std::vector<double> p0(n), g(n);
    for (int64_t i = 0; i < n; ++i) {
      p0[i] = std::sin(0.1 * double(i));
      g[i] = std::cos(0.3 * double(i));
    }
    auto loss = [&](double lr, double sigma) {
      std::vector<double> p = p0, gg = g;
      std::vector<void *> ptrs = table.ptrs<double>({&p, &gg});
      std::vector<double> hypers = {lr, sigma};
      rule.kernel()(ptrs.data(), table.lengths.data(), table.strides.data(), 0,
                    table.chunks(), hypers.data(), t, nullptr,
                    table.rng.data());
      double sum = 0;
      for (double x : p)
        sum += x;
      return sum;
    };
    std::vector<double> p = p0, gg = g, dp(n, 1.0);
    std::vector<void *> ptrs = table.ptrs<double>({&p, &gg, &dp});
    std::vector<double> hypers = {0.1, 0.5};
    std::vector<double> partials(table.chunks() * 2, NAN);
    rule.vjpKernel()(ptrs.data(), table.lengths.data(), table.strides.data(),
                     0, table.chunks(), hypers.data(), t, nullptr,
                     partials.data(), table.rng.data());
    double dlr = 0, dsigma = 0;
    for (int64_t c = 0; c < table.chunks(); ++c) {
      dlr += partials[2 * c];
      dsigma += partials[2 * c + 1];
    }
    double dlrRef = 0, dsigmaRef = 0;
    for (int64_t i = 0; i < n; ++i) {
      double z = normalRef<double>(draw(kSeed, kFirst + uint64_t(i), t, 0));
      dlrRef -= g[i] + 0.5 * z;
      dsigmaRef -= 0.1 * z;
      EXPECT_EQ(dp[i], 1.0) << i;
    }
    EXPECT_NEAR(dlr, dlrRef, 1e-9 * std::fabs(dlrRef));
    EXPECT_NEAR(dsigma, dsigmaRef, 1e-9 * std::fabs(dsigmaRef));
    const double h = 1e-5;
    double fdLr = (loss(0.1 + h, 0.5) - loss(0.1 - h, 0.5)) / (2 * h);
    double fdSigma = (loss(0.1, 0.5 + h) - loss(0.1, 0.5 - h)) / (2 * h);
    EXPECT_NEAR(dlr, fdLr, 1e-6 * std::max(1.0, std::fabs(fdLr)));
    EXPECT_NEAR(dsigma, fdSigma, 1e-6 * std::max(1.0, std::fabs(fdSigma)));
  }
}

/// A learned rule may draw too (a noisy feature): the LSTM path computes
/// the draws per coordinate like update rules.
TEST(RandomLearned, DrawsInLearnedRule) {
  Rule rule = compile(R"(
learned rule l2ln(lr = 0.1) {
  weights cell = lstm(in: 2, hidden: 4)
  weights head = linear(in: 4, out: 1)
  state h[4] = 0, c[4] = 0
  state u = 0
  let x = rand()
  u = x
  h, c = cell(log_sign(g + x, 10), h, c)
  p -= lr * head(h)
}
)",
                      DType::F32, 4);
  ASSERT_TRUE(rule.kernel());
  ASSERT_EQ(rule.info().random, std::vector<RandomKind>{RandomKind::Uniform});
  Table table(29);
  int64_t n = table.total;
  std::vector<float> p(n), g(n), u(n);
  std::vector<float> h(4 * n), c(4 * n);
  // Vector states are component-major per tensor: strides = tensor size.
  std::vector<void *> ptrs;
  {
    int64_t tensorStart = 0, idx = 0;
    for (int64_t size : kSizes) {
      int64_t off = 0;
      do {
        int64_t at = tensorStart + off;
        ptrs.push_back(p.data() + at);
        ptrs.push_back(g.data() + at);
        ptrs.push_back(h.data() + 4 * tensorStart + off);
        ptrs.push_back(c.data() + 4 * tensorStart + off);
        ptrs.push_back(u.data() + at);
        off += table.lengths[idx++];
      } while (off < size);
      tensorStart += size;
    }
  }
  std::vector<float> cellW(16 * 7, 0.01f), headW(5, 0.02f);
  std::vector<const void *> weights = {cellW.data(), headW.data()};
  std::vector<double> hypers = {0.1};
  rule.kernel()(ptrs.data(), table.lengths.data(), table.strides.data(), 0,
                table.chunks(), hypers.data(), 4, weights.data(),
                table.rng.data());
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(u[i], uniformRef<float>(draw(kSeed, kFirst + i, 4, 0))) << i;
}

/// The reverse mode of a learned rule that draws: the VJP kernel's dL/dlr
/// (L = sum of the new p) matches central differences of the forward
/// kernel with the same rng, so both compute the same draws.
TEST(RandomLearned, VJPMatchesFiniteDifferences) {
  const char *source = R"(
learned rule l2ln(lr = 0.1) {
  weights cell = lstm(in: 2, hidden: 3)
  weights head = linear(in: 3, out: 1)
  state h[3] = 0, c[3] = 0
  h, c = cell(log_sign(g + randn(), 5), h, c)
  p -= lr * head(h) * rand()
}
)";
  Rule rule = compile(source, DType::F64, 4, /*vjp=*/true);
  ASSERT_TRUE(rule.kernel() && rule.vjpKernel());
  // One tensor in chunks of 13: p, g, h[3], c[3] component-major.
  const int64_t n = 61, chunk = 13;
  std::vector<int64_t> lengths, strides;
  std::vector<uint64_t> rng = {kSeed};
  for (int64_t off = 0; off < n; off += chunk) {
    lengths.push_back(std::min(chunk, n - off));
    strides.push_back(n);
    rng.push_back(kFirst + uint64_t(off));
  }
  std::vector<double> p0(n), g(n), h0(3 * n), c0(3 * n);
  for (int64_t i = 0; i < n; ++i) {
    p0[i] = std::sin(0.7 * double(i));
    g[i] = std::cos(0.2 * double(i));
  }
  for (int64_t i = 0; i < 3 * n; ++i) {
    h0[i] = 0.3 * std::sin(0.11 * double(i));
    c0[i] = 0.2 * std::cos(0.13 * double(i));
  }
  std::vector<double> cellW(12 * 6), headW(4);
  for (size_t k = 0; k < cellW.size(); ++k)
    cellW[k] = 0.3 * std::sin(double(k) + 1);
  for (size_t k = 0; k < headW.size(); ++k)
    headW[k] = 0.5 * std::cos(double(k));
  std::vector<const void *> weights = {cellW.data(), headW.data()};
  const int64_t t = 3;
  auto loss = [&](double lr) {
    std::vector<double> p = p0, gg = g, h = h0, c = c0;
    std::vector<void *> ptrs;
    for (size_t k = 0; k < lengths.size(); ++k) {
      int64_t off = int64_t(k) * chunk;
      for (std::vector<double> *s : {&p, &gg, &h, &c})
        ptrs.push_back(s->data() + off);
    }
    std::vector<double> hypers = {lr};
    rule.kernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                  int64_t(lengths.size()), hypers.data(), t, weights.data(),
                  rng.data());
    double sum = 0;
    for (double x : p)
      sum += x;
    return sum;
  };
  std::vector<double> p = p0, gg = g, h = h0, c = c0, dp(n, 1.0),
                      dh(3 * n, 0.0), dc(3 * n, 0.0);
  std::vector<void *> ptrs;
  for (size_t k = 0; k < lengths.size(); ++k) {
    int64_t off = int64_t(k) * chunk;
    for (std::vector<double> *s : {&p, &gg, &h, &c, &dp, &dh, &dc})
      ptrs.push_back(s->data() + off);
  }
  const size_t numPartials = 1 + cellW.size() + headW.size();
  std::vector<double> partials(lengths.size() * numPartials, NAN);
  std::vector<double> hypers = {0.1};
  rule.vjpKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                   int64_t(lengths.size()), hypers.data(), t, weights.data(),
                   partials.data(), rng.data());
  double dlr = 0;
  for (size_t k = 0; k < lengths.size(); ++k)
    dlr += partials[k * numPartials];
  const double step = 1e-6;
  double fd = (loss(0.1 + step) - loss(0.1 - step)) / (2 * step);
  EXPECT_NEAR(dlr, fd, 1e-7 * std::max(1.0, std::fabs(fd)));
}

} // namespace
