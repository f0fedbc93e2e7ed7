//===- NestedReductionsTest.cpp - reductions of reductions (ABI 9) --------===//
//
// A rule may reduce a value computed from another reduction's result
// (KernelABI.h version 9, "Nested reductions"): reduction r has a level, and
// optim_reduce_ is called once per level, `stage` s = 0 .. L, each call
// overwriting the partials of level s only and reading the combined values
// of lower levels from `reduced`; then optim_rule_ runs with every value.
// These tests JIT-compile such rules and drive the raw kernels stage by
// stage as the runtime does, with the combine written here (chunk order, per
// tensor or global), on chunk tables built here: tensors of 0, 1, 7, 33 and
// 1001 coordinates, two or three at a time, in chunks of several sizes, f32
// and f64, vector widths 16 and 4. They check
//   - the descriptor's levels (RuleInfo::reductions, "mean,norm:1");
//   - that stage s writes the level-s slots of every chunk and leaves the
//     others as they were (partials start as a NaN sentinel, compared bit
//     for bit), that a stage outside [0, L] writes nothing, and that stage
//     0 takes reduced = NULL;
//   - that `reduced` slots of levels >= s are never read (they hold the
//     sentinel NaN until combined: reading one would make results NaN);
//   - that a chunk's partials do not depend on how the chunks are split
//     between calls (bit for bit);
//   - the combined values and the new p against a straightforward double
//     precision reference written out below, with relative tolerances of
//     1e-12 (f64) and 2e-5 (f32) of the magnitude of the terms.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace optim;

namespace {

//===----------------------------------------------------------------------===//
// An independent Philox4x32-10 (Random123's philox4x32_10), for rand().
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

constexpr uint64_t kSeed = 0x0123456789ABCDEFull;
/// The global index of the first coordinate (the runtime starts at 0; a base
/// near 2^32 exercises the counter's high word).
constexpr uint64_t kFirst = (uint64_t(1) << 32) - 517;

/// rand() of site 0 at global index i and step t, in T (KernelABI.h,
/// version 8), as a double.
template <typename T> double uniformAt(uint64_t i, int64_t t) {
  Words w = philox({uint32_t(i), uint32_t(i >> 32), uint32_t(uint64_t(t)), 0},
                   uint32_t(kSeed), uint32_t(kSeed >> 32));
  if constexpr (std::is_same_v<T, float>)
    return double(float(w[0] >> 8) * 0x1p-24f);
  else
    return double(((uint64_t(w[1]) << 32) | w[0]) >> 11) * 0x1p-53;
}

//===----------------------------------------------------------------------===//
// The reference: straightforward double precision.
//===----------------------------------------------------------------------===//

/// A reduced value and the magnitude of its terms (for the tolerance).
struct Red {
  double value = 0, magnitude = 0;
};

Red sumOf(const std::vector<double> &x) {
  Red r;
  for (double v : x) {
    r.value += v;
    r.magnitude += std::fabs(v);
  }
  return r;
}
Red meanOf(const std::vector<double> &x) {
  Red r = sumOf(x);
  if (!x.empty()) {
    r.value /= double(x.size());
    r.magnitude /= double(x.size());
  }
  return r;
}
Red normOf(const std::vector<double> &x) {
  double s = 0;
  for (double v : x)
    s += v * v;
  return {std::sqrt(s), std::sqrt(s)};
}
Red maxOf(const std::vector<double> &x) {
  Red r{-std::numeric_limits<double>::infinity(), 0};
  for (double v : x) {
    r.value = std::max(r.value, v);
    r.magnitude = std::max(r.magnitude, std::fabs(v));
  }
  return r;
}

/// One step of a rule on tensors given as doubles: the new p of each
/// tensor, and each reduction's value per tensor ([tensor][r]; a global
/// one the same for every tensor). `u` holds rand() per coordinate.
using Tensors = std::vector<std::vector<double>>;
using Reference = std::function<void(Tensors &p, const Tensors &g,
                                     const Tensors &u,
                                     std::vector<std::vector<Red>> &reduced)>;

struct Case {
  const char *name;
  const char *source;
  const char *descriptor;
  std::vector<double> hypers;
  Reference reference;
};

/// The standardized gradient: the mean (level 0), then the centred norm
/// (level 1).
const Case kStandardize = {
    "standardize",
    R"(
rule standardize(lr = 0.1, eps = 1e-3) {
  let m = tensor_mean(g)
  let c = g - m
  p -= lr * c / (tensor_norm(c) + eps)
}
)",
    "mean,norm:1",
    {0.1, 1e-3},
    [](Tensors &p, const Tensors &g, const Tensors &,
       std::vector<std::vector<Red>> &reduced) {
      for (size_t k = 0; k < p.size(); ++k) {
        Red m = meanOf(g[k]);
        std::vector<double> c;
        for (double x : g[k])
          c.push_back(x - m.value);
        Red n = normOf(c);
        for (size_t i = 0; i < p[k].size(); ++i)
          p[k][i] -= 0.1 * c[i] / (n.value + 1e-3);
        reduced.push_back({m, n});
      }
    }};

/// Three levels: mean, variance about it, the largest standardized value.
const Case kThree = {
    "three",
    R"(
rule three(lr = 0.1, eps = 1e-3) {
  let m = tensor_mean(g)
  let sd = sqrt(tensor_mean((g - m) * (g - m)))
  let z = (g - m) / (sd + eps)
  p -= lr * z / (tensor_max(abs(z)) + 1)
}
)",
    "mean,mean:1,max:2",
    {0.1, 1e-3},
    [](Tensors &p, const Tensors &g, const Tensors &,
       std::vector<std::vector<Red>> &reduced) {
      for (size_t k = 0; k < p.size(); ++k) {
        Red m = meanOf(g[k]);
        std::vector<double> sq, z, az;
        for (double x : g[k])
          sq.push_back((x - m.value) * (x - m.value));
        Red v = meanOf(sq);
        double sd = std::sqrt(v.value);
        for (double x : g[k]) {
          z.push_back((x - m.value) / (sd + 1e-3));
          az.push_back(std::fabs(z.back()));
        }
        Red mx = maxOf(az);
        for (size_t i = 0; i < p[k].size(); ++i)
          p[k][i] -= 0.1 * z[i] / (mx.value + 1);
        reduced.push_back({m, v, mx});
      }
    }};

/// Global reductions at levels 0 and 1, over every tensor.
const Case kGlobal = {
    "global_nested",
    R"(
rule global_nested(lr = 0.1) {
  let u = g / (global_norm(g) + 1e-6)
  let s = global_sum(u * p)
  p -= lr * (u - s * p)
}
)",
    "norm@global,sum@global:1",
    {0.1},
    [](Tensors &p, const Tensors &g, const Tensors &,
       std::vector<std::vector<Red>> &reduced) {
      std::vector<double> all, up;
      for (const auto &t : g)
        all.insert(all.end(), t.begin(), t.end());
      Red gn = normOf(all);
      for (size_t k = 0; k < p.size(); ++k)
        for (size_t i = 0; i < p[k].size(); ++i)
          up.push_back(g[k][i] / (gn.value + 1e-6) * p[k][i]);
      Red s = sumOf(up);
      for (size_t k = 0; k < p.size(); ++k) {
        for (size_t i = 0; i < p[k].size(); ++i) {
          double u = g[k][i] / (gn.value + 1e-6);
          p[k][i] -= 0.1 * (u - s.value * p[k][i]);
        }
        reduced.push_back({gn, s});
      }
    }};

/// A level-1 reduction whose operand draws: the reduce kernel's stage 1
/// draws what the rule kernel would (same seed, coordinate, step, site).
const Case kNoisy = {
    "noisy",
    R"(
rule noisy(lr = 0.1) {
  let c = g - tensor_mean(g)
  let r = tensor_sum(c * rand())
  p -= lr * c * r / (1 + abs(r))
}
)",
    "mean,sum:1",
    {0.1},
    [](Tensors &p, const Tensors &g, const Tensors &u,
       std::vector<std::vector<Red>> &reduced) {
      for (size_t k = 0; k < p.size(); ++k) {
        Red m = meanOf(g[k]);
        std::vector<double> cu;
        for (size_t i = 0; i < g[k].size(); ++i)
          cu.push_back((g[k][i] - m.value) * u[k][i]);
        Red r = sumOf(cu);
        for (size_t i = 0; i < p[k].size(); ++i)
          p[k][i] -= 0.1 * (g[k][i] - m.value) * r.value /
                     (1 + std::fabs(r.value));
        reduced.push_back({m, r});
      }
    }};

//===----------------------------------------------------------------------===//
// Chunk tables and the runtime's combine, written out.
//===----------------------------------------------------------------------===//

/// Tensors of `sizes` concatenated in p and g, cut into chunks of at most
/// `chunk` coordinates that never cross tensors (an empty tensor is one
/// empty chunk).
template <typename T> struct Problem {
  std::vector<int64_t> sizes, offsets;
  std::vector<int64_t> lengths, strides, chunkTensor, chunkStart;
  std::vector<uint64_t> rng;
  std::vector<T> p, g;
  int64_t total = 0;

  Problem(std::vector<int64_t> tensorSizes, int64_t chunk)
      : sizes(std::move(tensorSizes)) {
    rng.push_back(kSeed);
    for (size_t k = 0; k < sizes.size(); ++k) {
      offsets.push_back(total);
      int64_t off = 0;
      do {
        int64_t len = std::min(chunk, sizes[k] - off);
        lengths.push_back(len);
        strides.push_back(sizes[k]);
        chunkTensor.push_back(int64_t(k));
        chunkStart.push_back(total + off);
        rng.push_back(kFirst + uint64_t(total + off));
        off += len;
      } while (off < sizes[k]);
      total += sizes[k];
    }
    p.resize(total);
    g.resize(total);
  }
  int64_t chunks() const { return int64_t(lengths.size()); }
  std::vector<void *> ptrs() {
    std::vector<void *> out;
    for (int64_t c = 0; c < chunks(); ++c) {
      out.push_back(p.data() + chunkStart[c]);
      out.push_back(g.data() + chunkStart[c]);
    }
    return out;
  }
  Tensors split(const std::vector<T> &x) const {
    Tensors out;
    for (size_t k = 0; k < sizes.size(); ++k)
      out.emplace_back(x.begin() + offsets[k],
                       x.begin() + offsets[k] + sizes[k]);
    return out;
  }
};

double merge(ReductionKind kind, double acc, double x) {
  switch (kind) {
  case ReductionKind::Max:
    return std::isnan(acc) || std::isnan(x) ? NAN : std::max(acc, x);
  case ReductionKind::Min:
    return std::isnan(acc) || std::isnan(x) ? NAN : std::min(acc, x);
  default:
    return acc + x;
  }
}

/// The runtime's combine of the level-`level` slots: in chunk order, per
/// tensor (or over every tensor for a global reduction); mean = sum / n,
/// norm = sqrt(sum). Writes reduced[c * R + r] for every chunk c.
template <typename T>
void combine(const Problem<T> &pb, const std::vector<ReductionSpec> &specs,
             unsigned level, const std::vector<double> &partials,
             std::vector<double> &reduced) {
  const size_t R = specs.size();
  for (size_t r = 0; r < R; ++r) {
    if (specs[r].level != level)
      continue;
    auto finish = [&](double acc, int64_t n) {
      if (specs[r].kind == ReductionKind::Mean)
        return acc / double(n);
      if (specs[r].kind == ReductionKind::Norm)
        return std::sqrt(acc);
      return acc;
    };
    if (specs[r].global) {
      double acc = partials[r];
      for (int64_t c = 1; c < pb.chunks(); ++c)
        acc = merge(specs[r].kind, acc, partials[c * R + r]);
      double value = finish(acc, pb.total);
      for (int64_t c = 0; c < pb.chunks(); ++c)
        reduced[c * R + r] = value;
      continue;
    }
    for (size_t k = 0; k < pb.sizes.size(); ++k) {
      std::vector<int64_t> mine;
      for (int64_t c = 0; c < pb.chunks(); ++c)
        if (pb.chunkTensor[c] == int64_t(k))
          mine.push_back(c);
      double acc = partials[mine[0] * R + r];
      for (size_t i = 1; i < mine.size(); ++i)
        acc = merge(specs[r].kind, acc, partials[mine[i] * R + r]);
      double value = finish(acc, pb.sizes[k]);
      for (int64_t c : mine)
        reduced[c * R + r] = value;
    }
  }
}

/// A NaN whose payload no kernel produces: a slot that still holds it was
/// not written.
double sentinel() {
  uint64_t bits = 0x7FF8DEADBEEF1234ull;
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}
bool sameBits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

Rule compile(const Case &c, DType dtype, unsigned width) {
  CompileOptions options;
  options.precision = dtype;
  options.vectorWidth = width;
  options.useCache = false;
  return Compiler(options).compileSource(c.source, "nested-test.optim");
}

template <typename T> void runCase(const Case &cs, unsigned width) {
  DType dtype = std::is_same_v<T, float> ? DType::F32 : DType::F64;
  Rule rule = compile(cs, dtype, width);
  const RuleInfo &info = rule.info();
  ASSERT_TRUE(rule.reduceKernel() && rule.reducedKernel());
  EXPECT_EQ(reductionsDescriptor(info.reductions), cs.descriptor);
  const std::vector<ReductionSpec> &specs = info.reductions;
  const size_t R = specs.size();
  unsigned L = 0;
  for (const ReductionSpec &s : specs)
    L = std::max(L, s.level);
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;

  const std::vector<std::vector<int64_t>> sizeSets = {
      {0, 1, 1001}, {7, 33}, {1001, 0, 7}};
  for (const auto &sizes : sizeSets) {
    for (int64_t chunk : {int64_t(1) << 20, int64_t(64), int64_t(7),
                          int64_t(1)}) {
      SCOPED_TRACE(testing::Message()
                   << "sizes " << sizes.size() << " tensors from " << sizes[0]
                   << ", chunk " << chunk);
      Problem<T> pb(sizes, chunk);
      std::mt19937 gen(unsigned(chunk + 31 * sizes[0]));
      std::uniform_real_distribution<double> dist(-1.0, 1.0);
      for (T &x : pb.p)
        x = T(dist(gen));
      std::vector<void *> ptrs = pb.ptrs();
      const int64_t C = pb.chunks();
      for (int64_t t = 1; t <= 2; ++t) {
        for (T &x : pb.g)
          x = T(dist(gen) + 0.25);
        // The reference from this step's inputs, as doubles.
        Tensors p = pb.split(pb.p), g = pb.split(pb.g), u;
        for (size_t k = 0; k < sizes.size(); ++k) {
          u.emplace_back();
          for (int64_t i = 0; i < sizes[k]; ++i)
            u.back().push_back(
                uniformAt<T>(kFirst + uint64_t(pb.offsets[k] + i), t));
        }
        std::vector<std::vector<Red>> want;
        cs.reference(p, g, u, want);

        std::vector<double> partials(C * R, sentinel()),
            reduced(C * R, sentinel());
        for (unsigned s = 0; s <= L; ++s) {
          std::vector<double> before = partials;
          rule.reduceKernel()(ptrs.data(), pb.lengths.data(),
                              pb.strides.data(), 0, C, cs.hypers.data(), t,
                              nullptr, partials.data(),
                              s == 0 ? nullptr : reduced.data(), s,
                              pb.rng.data());
          for (int64_t c = 0; c < C; ++c)
            for (size_t r = 0; r < R; ++r) {
              double now = partials[c * R + r];
              if (specs[r].level == s)
                EXPECT_FALSE(sameBits(now, sentinel()))
                    << "stage " << s << " left slot " << r << " of chunk "
                    << c << " unwritten";
              else
                EXPECT_TRUE(sameBits(now, before[c * R + r]))
                    << "stage " << s << " wrote slot " << r << " (level "
                    << specs[r].level << ") of chunk " << c;
            }
          // Split between two calls, the chunks' partials are the same.
          std::vector<double> split = before;
          int64_t half = C / 2;
          for (auto [b, e] : {std::pair{int64_t(0), half}, std::pair{half, C}})
            rule.reduceKernel()(ptrs.data(), pb.lengths.data(),
                                pb.strides.data(), b, e, cs.hypers.data(), t,
                                nullptr, split.data(),
                                s == 0 ? nullptr : reduced.data(), s,
                                pb.rng.data());
          for (int64_t k = 0; k < C * int64_t(R); ++k)
            EXPECT_TRUE(sameBits(split[k], partials[k]))
                << "stage " << s << ", slot " << k % R << " of chunk "
                << k / R;
          combine(pb, specs, s, partials, reduced);
        }
        // Stages outside [0, L] write nothing.
        for (int64_t s : {int64_t(-1), int64_t(L) + 1, int64_t(1) << 40}) {
          std::vector<double> before = partials;
          rule.reduceKernel()(ptrs.data(), pb.lengths.data(),
                              pb.strides.data(), 0, C, cs.hypers.data(), t,
                              nullptr, partials.data(), reduced.data(), s,
                              pb.rng.data());
          for (int64_t k = 0; k < C * int64_t(R); ++k)
            EXPECT_TRUE(sameBits(partials[k], before[k])) << "stage " << s;
        }
        // The combined values against the reference.
        for (int64_t c = 0; c < C; ++c) {
          if (pb.lengths[c] == 0 && !pb.sizes[pb.chunkTensor[c]])
            continue; // An empty tensor's mean is 0 / 0: nothing reads it.
          for (size_t r = 0; r < R; ++r) {
            const Red &w = want[pb.chunkTensor[c]][r];
            EXPECT_NEAR(reduced[c * R + r], w.value,
                        tol * (std::fabs(w.value) + w.magnitude) + 1e-300)
                << "reduction " << r << " of chunk " << c << " at step " << t;
          }
        }

        rule.reducedKernel()(ptrs.data(), pb.lengths.data(), pb.strides.data(),
                             0, C, cs.hypers.data(), t, nullptr,
                             reduced.data(), pb.rng.data());
        for (size_t k = 0; k < sizes.size(); ++k)
          for (int64_t i = 0; i < sizes[k]; ++i) {
            double got = double(pb.p[pb.offsets[k] + i]);
            double expected = p[k][i];
            EXPECT_NEAR(got, expected, tol * (std::fabs(expected) + 1))
                << "p of tensor " << k << " at " << i << ", step " << t;
            if (::testing::Test::HasFailure())
              return;
          }
      }
    }
  }
}

class Nested : public ::testing::TestWithParam<const Case *> {};

TEST_P(Nested, F32Width16) { runCase<float>(*GetParam(), 16); }
TEST_P(Nested, F64Width16) { runCase<double>(*GetParam(), 16); }
TEST_P(Nested, F32Width4) { runCase<float>(*GetParam(), 4); }
TEST_P(Nested, F64Width4) { runCase<double>(*GetParam(), 4); }

INSTANTIATE_TEST_SUITE_P(Rules, Nested,
                         ::testing::Values(&kStandardize, &kThree, &kGlobal,
                                           &kNoisy),
                         [](const testing::TestParamInfo<const Case *> &i) {
                           return std::string(i.param->name);
                         });

/// A state started from a reduction depends on it: reducing the state is
/// level 1 (its initial value is a select of the reduction's result).
TEST(NestedLevels, StateStartedFromAReduction) {
  CompileOptions options;
  options.useCache = false;
  Rule rule = Compiler(options).compileSource(R"(
rule started(lr = 0.1) {
  state n = tensor_norm(g)
  let c = g - tensor_mean(g)
  p -= lr * g / (tensor_sum(n) + global_max(abs(c) * n) + 1)
}
)",
                                              "nested-levels.optim");
  EXPECT_EQ(reductionsDescriptor(rule.info().reductions),
            "norm,mean,sum:1,max@global:1");
}

/// Runs one step of `rule` on `pb` as the runtime does: stages 0 .. L of
/// the reduce kernel, each followed by the combine of its level, then the
/// rule kernel.
template <typename T>
void runStep(const Rule &rule, Problem<T> &pb,
             const std::vector<double> &hypers, int64_t t) {
  const std::vector<ReductionSpec> &specs = rule.info().reductions;
  const size_t R = specs.size();
  unsigned L = 0;
  for (const ReductionSpec &s : specs)
    L = std::max(L, s.level);
  std::vector<void *> ptrs = pb.ptrs();
  const int64_t C = pb.chunks();
  std::vector<double> partials(C * R, sentinel()), reduced(C * R, sentinel());
  for (unsigned s = 0; s <= L; ++s) {
    rule.reduceKernel()(ptrs.data(), pb.lengths.data(), pb.strides.data(), 0,
                        C, hypers.data(), t, nullptr, partials.data(),
                        s ? reduced.data() : nullptr, s, pb.rng.data());
    combine(pb, specs, s, partials, reduced);
  }
  rule.reducedKernel()(ptrs.data(), pb.lengths.data(), pb.strides.data(), 0,
                       C, hypers.data(), t, nullptr, reduced.data(),
                       pb.rng.data());
}

/// The reduce kernel's stages compute a reduced value bit for bit as the
/// rule kernel does, also from lower levels' values and with relaxed-fp
/// (no contraction of c * 3 + 1, no reciprocal of the per-chunk divisor in
/// a reduction's slice): the rule sets p to 1 exactly where its value equals
/// the tensor's maximum, so every non-empty tensor has a 1.
TEST(NestedLevels, StagesAgreeWithTheRuleKernelBitForBit) {
  const char *source = R"(
rule argmax(eps = 1e-3) {
  let c = (g - tensor_mean(g)) / (sqrt(tensor_mean(g * g)) + eps)
  p = select(c * 3 + 1 >= tensor_max(c * 3 + 1), 1, 0)
}
)";
  for (bool relaxed : {false, true})
    for (DType dtype : {DType::F32, DType::F64})
      for (unsigned width : {16u, 4u, 1u}) {
        SCOPED_TRACE(testing::Message()
                     << (relaxed ? "relaxed " : "") << width << " lanes "
                     << (dtype == DType::F32 ? "f32" : "f64"));
        CompileOptions options;
        options.useCache = false;
        options.precision = dtype;
        options.vectorWidth = width;
        options.relaxedFP = relaxed;
        Rule rule = Compiler(options).compileSource(source, "argmax.optim");
        EXPECT_EQ(reductionsDescriptor(rule.info().reductions),
                  "mean,mean,max:1");
        auto check = [&](auto zero) {
          using T = decltype(zero);
          for (int64_t chunk : {int64_t(1) << 20, int64_t(64), int64_t(5)}) {
            Problem<T> pb({1001, 33, 1, 0, 7}, chunk);
            std::mt19937 gen{unsigned(chunk)};
            std::uniform_real_distribution<double> dist(-1.0, 3.0);
            for (int64_t t = 1; t <= 3; ++t) {
              for (T &x : pb.g)
                x = T(dist(gen));
              runStep(rule, pb, {1e-3}, t);
              for (size_t k = 0; k < pb.sizes.size(); ++k) {
                double ones = 0;
                for (int64_t i = 0; i < pb.sizes[k]; ++i)
                  ones += double(pb.p[pb.offsets[k] + i]);
                if (pb.sizes[k])
                  EXPECT_GE(ones, 1.0) << "tensor " << k << ", chunk " << chunk
                                       << ", step " << t;
              }
            }
          }
        };
        if (dtype == DType::F32)
          check(float());
        else
          check(double());
      }
}

/// CompileOptions::vjp (the reverse mode, for Trajectory and
/// hypergradients) compiles a rule with a reduction of level > 0: both VJP
/// kernels, the second run once per level (TrajectoryReductionsTest.cpp
/// checks the gradients).
TEST(NestedLevels, ReverseModeCompiles) {
  CompileOptions options;
  options.useCache = false;
  options.vjp = true;
  Rule rule =
      Compiler(options).compileSource(kStandardize.source, "nested-vjp.optim");
  EXPECT_TRUE(rule.reduceKernel() && rule.reducedKernel());
  EXPECT_TRUE(rule.reducedVJPKernel() && rule.reductionsVJPKernel());
  EXPECT_TRUE(rule.hasVJP());
  ASSERT_EQ(rule.info().reductions.size(), 2u);
  EXPECT_EQ(rule.info().reductions[1].level, 1u);
}

} // namespace
