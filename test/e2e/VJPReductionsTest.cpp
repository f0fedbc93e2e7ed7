//===- VJPReductionsTest.cpp - reverse mode of tensor reductions ----------===//
//
// A rule with tensor reductions has no one-pass kernel and no one-pass VJP:
// its step is optim_reduce_ + a combine + optim_rule_, and its reverse mode
// optim_vjp_reduced_kernel_ + a combine of the reductions' cotangents +
// optim_vjp_reductions_kernel_ (KernelABI.h, "Reverse mode of rules with
// tensor reductions"). This test drives the four kernels by hand for ONE
// step on one or two tensors, with both combines written here from the
// formulas of KernelABI.h (deliberately not the runtime's
// runtime/lib/Reductions.cpp), and checks the cotangents of p, the states,
// the hyperparameters and the weights against central differences of the
// forward two-pass step, F = sum over coordinates of dp' p' + ds' . s'.
// Sizes are awkward (13 and 7 coordinates in chunks of 5, 4 or 3 lanes):
// vector loops, scalar tails, several chunks per tensor, chunks of two
// tensors in one call. Max and min get forced ties, across chunks and (for
// a global one) across tensors: the central difference of a max at a tie of
// two is half the one-sided slope, which is what sharing the cotangent
// between the tied coordinates gives. The f32 kernels must find the same
// ties (exact and relaxed-fp) and agree with the f64 ones.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"

#include "SourceFiles.h"
#include "gtest/gtest.h"

#include <cmath>
#include <functional>
#include <map>
#include <random>

using namespace optim;
using testsource::readFile;

namespace {

Rule compileF64(const std::string &source, unsigned width,
                const std::string &rule = "") {
  CompileOptions options;
  options.precision = DType::F64;
  options.vectorWidth = width;
  options.vjp = true;
  options.useCache = false;
  return Compiler(options).compileSource(source, "vjp-reductions.optim",
                                         Target::cpu(), rule);
}

/// One or more parameter tensors, each cut into chunks of `chunk`.
struct Problem {
  const RuleInfo &info;
  std::vector<int64_t> sizes;
  // Per tensor; states component-major ([tensor][state]).
  std::vector<std::vector<double>> p, g, dp;
  std::vector<std::vector<std::vector<double>>> states, ds;
  std::vector<double> hypers;
  std::vector<std::vector<double>> weights;
  // The chunk table: chunk c is coordinates [offset, offset + length) of
  // tensor chunkTensor[c].
  std::vector<size_t> chunkTensor;
  std::vector<int64_t> offsets, lengths, strides;

  Problem(const RuleInfo &info, std::vector<int64_t> sizes, int64_t chunk,
          std::mt19937 &rng)
      : info(info), sizes(std::move(sizes)) {
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    auto fill = [&](std::vector<double> &v, size_t count, double scale,
                    double shift) {
      v.resize(count);
      for (double &x : v)
        x = scale * u(rng) + shift;
    };
    for (size_t k = 0; k < this->sizes.size(); ++k) {
      int64_t n = this->sizes[k];
      p.emplace_back();
      g.emplace_back();
      dp.emplace_back();
      fill(p.back(), n, 1.0, 0.0);
      fill(g.back(), n, 1.0, 0.0);
      fill(dp.back(), n, 1.0, 0.0);
      states.emplace_back();
      ds.emplace_back();
      for (const StateSpec &s : info.states) {
        // Positive-ish states keep sqrt and log of states away from 0.
        states.back().emplace_back();
        fill(states.back().back(), n * s.size, 0.5, 0.6);
        ds.back().emplace_back();
        fill(ds.back().back(), n * s.size, 1.0, 0.0);
      }
      for (int64_t off = 0; off < n; off += chunk) {
        chunkTensor.push_back(k);
        offsets.push_back(off);
        lengths.push_back(std::min(chunk, n - off));
        strides.push_back(n);
      }
    }
    for (const HyperParam &h : info.hypers)
      hypers.push_back(h.defaultValue);
    for (const WeightSpec &w : info.weights) {
      int64_t count = 1;
      for (int64_t d : w.shape)
        count *= d;
      weights.emplace_back();
      fill(weights.back(), count, 0.5, 0.0);
    }
  }

  size_t numChunks() const { return lengths.size(); }
  size_t numReductions() const { return info.reductions.size(); }
  size_t numWeights() const {
    size_t n = 0;
    for (const auto &w : weights)
      n += w.size();
    return n;
  }
  void setHyper(const std::string &name, double value) {
    int index = info.findHyper(name);
    ASSERT_GE(index, 0) << name;
    hypers[index] = value;
  }

  /// The chunks that reduction r combines with chunk c's: its tensor's, or
  /// every chunk (global); and how many coordinates they cover.
  std::vector<size_t> group(size_t r, size_t c, int64_t &coordinates) const {
    std::vector<size_t> out;
    coordinates = 0;
    bool global = info.reductions[r].global;
    for (size_t k = 0; k < sizes.size(); ++k)
      if (global || k == chunkTensor[c])
        coordinates += sizes[k];
    for (size_t d = 0; d < numChunks(); ++d)
      if (global || chunkTensor[d] == chunkTensor[c])
        out.push_back(d);
    return out;
  }

  /// The forward combine (KernelABI.h, version 6): partials of a group in
  /// chunk order (sum, max or min), then mean = sum / N, norm = sqrt(sum).
  std::vector<double> combine(const std::vector<double> &partials) const {
    size_t R = numReductions();
    std::vector<double> rho(numChunks() * R);
    for (size_t c = 0; c < numChunks(); ++c)
      for (size_t r = 0; r < R; ++r) {
        int64_t n;
        std::vector<size_t> chunks = group(r, c, n);
        ReductionKind kind = info.reductions[r].kind;
        double acc = partials[chunks[0] * R + r];
        for (size_t i = 1; i < chunks.size(); ++i) {
          double x = partials[chunks[i] * R + r];
          acc = kind == ReductionKind::Max   ? std::max(acc, x)
                : kind == ReductionKind::Min ? std::min(acc, x)
                                             : acc + x;
        }
        if (kind == ReductionKind::Mean)
          acc /= double(n);
        if (kind == ReductionKind::Norm)
          acc = std::sqrt(acc);
        rho[c * R + r] = acc;
      }
    return rho;
  }

  /// The data in the kernels' element type T (the hyperparameters stay
  /// double: the ABI's).
  template <typename T> struct Copy {
    std::vector<std::vector<T>> p, g, dp, weights;
    std::vector<std::vector<std::vector<T>>> states, ds;
    std::vector<const void *> weightPtrs;

    static std::vector<T> of(const std::vector<double> &v) {
      return std::vector<T>(v.begin(), v.end());
    }
    explicit Copy(const Problem &pb) {
      for (size_t k = 0; k < pb.sizes.size(); ++k) {
        p.push_back(of(pb.p[k]));
        g.push_back(of(pb.g[k]));
        dp.push_back(of(pb.dp[k]));
        states.emplace_back();
        ds.emplace_back();
        for (size_t s = 0; s < pb.states[k].size(); ++s) {
          states.back().push_back(of(pb.states[k][s]));
          ds.back().push_back(of(pb.ds[k][s]));
        }
      }
      for (const auto &w : pb.weights)
        weights.push_back(of(w));
      for (const auto &w : weights)
        weightPtrs.push_back(w.data());
    }
    const void *const *weightTable() const {
      return weightPtrs.empty() ? nullptr : weightPtrs.data();
    }
    /// Pointers of the chunk table: p, g, the states, then (with
    /// `cotangents`) the cotangents of p and the states.
    std::vector<void *> table(const Problem &pb, bool cotangents) {
      std::vector<void *> ptrs;
      for (size_t c = 0; c < pb.numChunks(); ++c) {
        size_t k = pb.chunkTensor[c];
        int64_t off = pb.offsets[c];
        ptrs.push_back(p[k].data() + off);
        ptrs.push_back(g[k].data() + off);
        for (auto &s : states[k])
          ptrs.push_back(s.data() + off);
        if (!cotangents)
          continue;
        ptrs.push_back(dp[k].data() + off);
        for (auto &s : ds[k])
          ptrs.push_back(s.data() + off);
      }
      return ptrs;
    }
  };

  /// The reduced values of one step from the current inputs.
  template <typename T>
  std::vector<double> reduce(const Rule &rule, int64_t t) const {
    Copy<T> x(*this);
    std::vector<void *> ptrs = x.table(*this, false);
    std::vector<double> partials(numChunks() * numReductions(), NAN);
    rule.reduceKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                        int64_t(numChunks()), hypers.data(), t, x.weightTable(),
                        partials.data(), /*reduced=*/nullptr,
                        /*stage=*/0, /*rng=*/nullptr);
    return combine(partials);
  }

  /// F after one forward step (both passes, f64) from the current inputs.
  double objective(const Rule &rule, int64_t t) const {
    std::vector<double> rho = reduce<double>(rule, t);
    Copy<double> x(*this);
    std::vector<void *> ptrs = x.table(*this, false);
    rule.reducedKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                         int64_t(numChunks()), hypers.data(), t,
                         x.weightTable(), rho.data(), /*rng=*/nullptr);
    double f = 0;
    for (size_t k = 0; k < sizes.size(); ++k) {
      for (int64_t i = 0; i < sizes[k]; ++i)
        f += dp[k][i] * x.p[k][i];
      for (size_t s = 0; s < x.states[k].size(); ++s)
        for (size_t i = 0; i < x.states[k][s].size(); ++i)
          f += ds[k][s][i] * x.states[k][s][i];
    }
    return f;
  }

  struct Result {
    std::vector<std::vector<double>> dp;
    std::vector<std::vector<std::vector<double>>> ds;
    /// dhypers then dweights, both kernels' partials summed over chunks.
    std::vector<double> partials;
    /// Per chunk and reduction: the tie count n_r of its group.
    std::vector<double> ties;
  };

  /// The reverse mode of one step: both VJP kernels around the combine of
  /// the cotangents of the reductions (KernelABI.h).
  template <typename T = double>
  Result vjp(const Rule &rule, int64_t t) const {
    size_t R = numReductions(), C = numChunks();
    size_t P = hypers.size() + numWeights(), P1 = P + 2 * R;
    std::vector<double> rho = reduce<T>(rule, t);
    Copy<T> x(*this);
    std::vector<void *> ptrs = x.table(*this, true);
    std::vector<T> partials1(C * P1, T(NAN));
    rule.reducedVJPKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                            int64_t(C), hypers.data(), t, x.weightTable(),
                            partials1.data(), rho.data(), /*rng=*/nullptr);
    // D_r and n_r per group in chunk order, then u_r.
    Result res{{}, {}, std::vector<double>(P, 0.0),
               std::vector<double>(C * R, 0.0)};
    std::vector<double> ru(C * 2 * R);
    for (size_t c = 0; c < C; ++c)
      for (size_t r = 0; r < R; ++r) {
        int64_t n;
        double d = 0, ties = 0;
        for (size_t e : group(r, c, n)) {
          d += partials1[e * P1 + P + r];
          ties += partials1[e * P1 + P + R + r];
        }
        double rhoR = rho[c * R + r], u = 0;
        switch (info.reductions[r].kind) {
        case ReductionKind::Sum:
          u = d;
          break;
        case ReductionKind::Mean:
          u = d / double(n);
          break;
        case ReductionKind::Norm:
          u = rhoR > 0 ? d / rhoR : 0;
          break;
        case ReductionKind::Max:
        case ReductionKind::Min:
          u = ties > 0 ? d / ties : 0;
          break;
        // None of the rules here has a matrix function or a shape value.
        case ReductionKind::NewtonSchulz:
        case ReductionKind::Rows:
        case ReductionKind::Cols:
          ADD_FAILURE() << "no reverse mode for "
                        << reductionKindName(info.reductions[r].kind);
          break;
        }
        ru[c * 2 * R + r] = rhoR;
        ru[c * 2 * R + R + r] = u;
        res.ties[c * R + r] = ties;
      }
    // P + R per chunk: the last R (what flows back to lower levels'
    // reduced values) are 0, every reduction here being of level 0.
    size_t P2 = P + R;
    std::vector<T> partials2(C * P2, T(NAN));
    rule.reductionsVJPKernel()(ptrs.data(), lengths.data(), strides.data(), 0,
                               int64_t(C), hypers.data(), t, x.weightTable(),
                               partials2.data(), ru.data(), /*rng=*/nullptr);
    for (size_t c = 0; c < C; ++c) {
      for (size_t k = 0; k < P; ++k)
        res.partials[k] += double(partials1[c * P1 + k]) +
                           double(partials2[c * P2 + k]);
      for (size_t r = 0; r < R; ++r)
        EXPECT_EQ(double(partials2[c * P2 + P + r]), 0.0)
            << info.name << ": chunk " << c << ", reduction " << r;
    }
    auto toDouble = [](const std::vector<T> &v) {
      return std::vector<double>(v.begin(), v.end());
    };
    for (size_t k = 0; k < sizes.size(); ++k) {
      res.dp.push_back(toDouble(x.dp[k]));
      res.ds.emplace_back();
      for (const auto &s : x.ds[k])
        res.ds.back().push_back(toDouble(s));
    }
    return res;
  }
};

/// Checks the reverse mode of `rule` against central differences on
/// tensors of `sizes` in chunks of `chunk`; `prepare` may change the inputs
/// (ties). Returns the reverse mode's result, for further checks.
Problem::Result check(const Rule &rule, std::vector<int64_t> sizes,
                      int64_t chunk = 5,
                      const std::map<std::string, double> &hypers = {},
                      const std::function<void(Problem &)> &prepare = {}) {
  const RuleInfo &info = rule.info();
  EXPECT_FALSE(info.reductions.empty()) << info.name;
  EXPECT_TRUE(rule.reduceKernel() && rule.reducedKernel()) << info.name;
  EXPECT_TRUE(rule.reducedVJPKernel() && rule.reductionsVJPKernel())
      << info.name;
  EXPECT_TRUE(rule.hasVJP()) << info.name;
  EXPECT_FALSE(rule.vjpKernel()) << info.name;
  if (!rule.reducedVJPKernel() || !rule.reductionsVJPKernel())
    return {};
  std::mt19937 rng(42);
  Problem pb(info, std::move(sizes), chunk, rng);
  for (const auto &[name, value] : hypers)
    pb.setHyper(name, value);
  if (prepare)
    prepare(pb);
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
  for (size_t k = 0; k < pb.sizes.size(); ++k) {
    std::string tensor = "[" + std::to_string(k) + "][";
    for (int64_t i = 0; i < pb.sizes[k]; ++i)
      expectClose(an.dp[k][i], central(pb.p[k][i]),
                  "p" + tensor + std::to_string(i) + "]");
    for (size_t s = 0; s < info.states.size(); ++s)
      for (size_t i = 0; i < pb.states[k][s].size(); ++i)
        expectClose(an.ds[k][s][i], central(pb.states[k][s][i]),
                    info.states[s].name + tensor + std::to_string(i) + "]");
  }
  for (size_t h = 0; h < info.hypers.size(); ++h) {
    if (info.hypers[h].isConst) {
      EXPECT_EQ(an.partials[h], 0.0) << "const " << info.hypers[h].name;
      continue;
    }
    expectClose(an.partials[h], central(pb.hypers[h]), info.hypers[h].name);
  }
  size_t offset = info.hypers.size();
  for (size_t w = 0; w < pb.weights.size(); ++w) {
    for (size_t k = 0; k < pb.weights[w].size(); ++k)
      expectClose(an.partials[offset + k], central(pb.weights[w][k]),
                  info.weights[w].name + "[" + std::to_string(k) + "]");
    offset += pb.weights[w].size();
  }
  return an;
}

std::string lamb() {
  return readFile(std::string(OPTIM_EXAMPLES_DIR) + "/lamb.optim");
}
std::string literature() {
  return readFile(std::string(OPTIM_TEST_DIR) +
                  "/Run/Inputs/literature.optim");
}

// |p| and |u|, u from both moments, the bias corrections and the weight
// decay: the reduced operands depend on p, on both states and on four
// hyperparameters. A larger lr makes the paths through the norms weigh.
TEST(VJPReductions, Lamb) {
  for (unsigned width : {4u, 3u}) {
    SCOPED_TRACE("width " + std::to_string(width));
    check(compileF64(lamb(), width), {13, 7}, 5, {{"lr", 0.5}});
  }
}

TEST(VJPReductions, LiteratureRules) {
  std::string source = literature();
  // LARS: |p| and |g| per tensor; Adafactor: two means (of u^2, from the
  // state and two hyperparameters, and of p^2); global-norm clipping (of g
  // only: its reverse mode is the per-coordinate one); gradient
  // centralization (a mean of g) and block normalization (max and min of
  // g).
  check(compileF64(source, 4, "lars"), {13, 7}, 5,
        {{"eta", 0.5}, {"weight_decay", 0.1}});
  check(compileF64(source, 4, "adafactor"), {13, 7}, 5);
  check(compileF64(source, 4, "sgd_clip"), {13, 7}, 5, {{"max_norm", 0.5}});
  check(compileF64(source, 4, "gc_momentum"), {13}, 5);
  check(compileF64(source, 3, "bngd"), {13, 7}, 5);
  // Prodigy: two global sums, of g (x0 - p) (p and a state copied from it
  // at the first step) and of |s| (a state updated before it is reduced),
  // both scaled by the distance estimate d, a state of its own.
  check(compileF64(source, 4, "prodigy"), {13, 7}, 5, {{"d0", 0.1}});
  // MARS: the norm of a corrected gradient (of a state) scales it where it
  // exceeds 1; Fromage: |p| / |g| per tensor; cautious Adam: a count of the
  // coordinates where m g > 0 (piecewise constant: its derivative is 0).
  check(compileF64(source, 4, "mars"), {13, 7}, 5, {{"gamma", 0.3}});
  check(compileF64(source, 4, "fromage"), {13, 7}, 5);
  check(compileF64(source, 4, "cautious_adam"), {13, 7}, 5);
}

// Every kind, per tensor and global, of operands that depend on p, on a
// state and on hyperparameters, with unused and duplicated reductions.
const char *kMix = R"(
rule mix(lr = 0.3, wd = 0.2, k = 0.7, const c = 0.5) {
  state m = 0
  let m1 = 0.9 * m + g
  let s = tensor_sum(p * m + k * g)
  let a = tensor_mean(m * m * wd + p)
  let hi = tensor_max(p + k * m)
  let lo = tensor_min(p * g - wd * m)
  let gn = global_norm(p + wd * m)
  let gs = global_sum(k * p * p)
  let gm = global_mean(c * p * m)
  let unused = global_max(exp(p))
  let twice = tensor_sum(p * m + k * g)
  m = m1 + 0.01 * s * g * twice
  p -= lr * (a * p + hi * g - lo * m1 + 0.1 * gn * m + 0.05 * gs * g + gm)
}
)";

TEST(VJPReductions, EveryKind) {
  for (unsigned width : {4u, 3u, 1u}) {
    SCOPED_TRACE("width " + std::to_string(width));
    Rule rule = compileF64(kMix, width);
    ASSERT_EQ(rule.info().reductions.size(), 9u);
    check(rule, {13, 7});
    check(rule, {13}, 13);
  }
}

// A learned rule: the LSTM and the head's weights get their cotangents
// through the per-coordinate path (partials after the hyperparameters in
// both kernels), vector states, a mean of g and a max of |p|.
TEST(VJPReductions, LearnedRule) {
  Rule rule = compileF64(
      readFile(std::string(OPTIM_TEST_DIR) + "/Learned/Inputs/reduced.optim"),
      4);
  check(rule, {13, 7});
}

// Two coordinates attain the max (in different chunks of one tensor) and
// two the global min (one in each tensor): each gets half the cotangent.
const char *kTies = R"(
rule ties(lr = 0.4, k = 0.5) {
  state m = 0
  let hi = tensor_max(p + k * m)
  let lo = global_min(p * m)
  m = 0.9 * m + g
  p -= lr * (hi * g + lo * m)
}
)";

TEST(VJPReductions, TiesShareTheCotangent) {
  for (unsigned width : {4u, 3u}) {
    SCOPED_TRACE("width " + std::to_string(width));
    Rule rule = compileF64(kTies, width);
    Problem::Result tied = check(rule, {13, 7}, 5, {}, [](Problem &pb) {
      // The max of tensor 0 at coordinates 2 and 11 (chunks 0 and 2).
      for (int64_t i : {2, 11}) {
        pb.p[0][i] = 2.0;
        pb.g[0][i] = 0.25;
        pb.states[0][0][i] = 0.75;
      }
      // The global min at coordinate 6 of tensor 0 and 3 of tensor 1.
      pb.p[0][6] = pb.p[1][3] = -2.0;
      pb.g[0][6] = pb.g[1][3] = -0.5;
      pb.states[0][0][6] = pb.states[1][0][3] = 1.0;
    });
    ASSERT_EQ(tied.ties.size(), 5u * 2u); // 3 + 2 chunks, 2 reductions.
    for (size_t c = 0; c < 5; ++c) {
      // Chunks 0-2 are tensor 0's; its max is tied, tensor 1's is not.
      EXPECT_EQ(tied.ties[c * 2 + 0], c < 3 ? 2.0 : 1.0) << "chunk " << c;
      EXPECT_EQ(tied.ties[c * 2 + 1], 2.0) << "chunk " << c;
    }
    // Without the forced ties, one coordinate of each.
    Problem::Result plain = check(rule, {13, 7});
    for (double n : plain.ties)
      EXPECT_EQ(n, 1.0);
  }
}

// f32, what meta-training runs: the VJP kernels recompute each reduced
// operand and compare it with rho rounded to f32, which must find the
// coordinates that attain a max or a min (one ulp off, a reduction's
// cotangent would be lost, not approximated), here with a division by a
// uniform value, sqrt and exp in the operands, and with relaxed-fp (the
// forward kernels take reciprocals of uniform divisors, but not in what is
// reduced). The cotangents must match the f64 kernels' on the same inputs
// rounded to float.
const char *kTiesFloat = R"(
rule ties32(lr = 0.4, k = 0.3, d = 3) {
  state m = 0
  let hi = tensor_max(p * k + sqrt(m) / d)
  let lo = global_min(exp(p) * m / d)
  let n = tensor_norm(p - k * m)
  m = 0.9 * m + g
  p -= lr * (hi * g + lo * m + 0.1 * n * p / d)
}
)";

TEST(VJPReductions, FloatFindsTiesAndMatchesDouble) {
  for (bool relaxed : {false, true}) {
    SCOPED_TRACE(relaxed ? "relaxed-fp" : "exact-fp");
    CompileOptions options;
    options.vjp = true;
    options.useCache = false;
    options.vectorWidth = 4;
    options.relaxedFP = relaxed;
    Rule f32 = Compiler(options).compileSource(kTiesFloat, "ties32.optim");
    Rule f64 = compileF64(kTiesFloat, 4);
    std::mt19937 rng(5);
    Problem pb(f64.info(), {13, 7}, 5, rng);
    // Coordinate 2 of tensor 0 copied to 11 (chunks 0 and 2), coordinate 6
    // of tensor 0 to 3 of tensor 1, at values that attain the max and the
    // min.
    auto copy = [&](size_t k0, int64_t i0, size_t k1, int64_t i1) {
      pb.p[k1][i1] = pb.p[k0][i0];
      pb.g[k1][i1] = pb.g[k0][i0];
      pb.states[k1][0][i1] = pb.states[k0][0][i0];
    };
    pb.p[0][2] = 1.7;
    pb.states[0][0][2] = 1.0;
    copy(0, 2, 0, 11);
    pb.p[0][6] = -1.7;
    pb.states[0][0][6] = 0.05;
    copy(0, 6, 1, 3);
    auto round = [](std::vector<double> &v) {
      for (double &x : v)
        x = double(float(x));
    };
    for (size_t k = 0; k < pb.sizes.size(); ++k) {
      round(pb.p[k]);
      round(pb.g[k]);
      round(pb.dp[k]);
      round(pb.states[k][0]);
      round(pb.ds[k][0]);
    }
    const int64_t t = 3;
    Problem::Result a = pb.vjp<float>(f32, t), b = pb.vjp<double>(f64, t);
    // Reductions hi (tensor 0 tied, tensor 1 not), lo (global, tied), n.
    for (size_t c = 0; c < pb.numChunks(); ++c) {
      EXPECT_EQ(a.ties[c * 3 + 0], c < 3 ? 2.0 : 1.0) << "chunk " << c;
      EXPECT_EQ(a.ties[c * 3 + 1], 2.0) << "chunk " << c;
      EXPECT_EQ(a.ties[c * 3 + 2], 0.0) << "chunk " << c;
      for (size_t r = 0; r < 3; ++r)
        EXPECT_EQ(a.ties[c * 3 + r], b.ties[c * 3 + r]) << "chunk " << c;
    }
    auto near = [](double x, double y) {
      return std::fabs(x - y) <= 1e-4 * std::max(1.0, std::fabs(y));
    };
    for (size_t k = 0; k < pb.sizes.size(); ++k) {
      for (size_t i = 0; i < a.dp[k].size(); ++i)
        EXPECT_PRED2(near, a.dp[k][i], b.dp[k][i]) << "dp" << k << "[" << i
                                                   << "]";
      for (size_t i = 0; i < a.ds[k][0].size(); ++i)
        EXPECT_PRED2(near, a.ds[k][0][i], b.ds[k][0][i])
            << "dm" << k << "[" << i << "]";
    }
    for (size_t h = 0; h < a.partials.size(); ++h)
      EXPECT_PRED2(near, a.partials[h], b.partials[h])
          << f64.info().hypers[h].name;
  }
}

} // namespace
