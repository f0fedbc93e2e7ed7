//===- AxesTest.cpp - row and column states and reductions ---------------===//
//
// Kernel ABI 10, "Axes": a rule that keeps a state per row or per column of
// a parameter and reduces along rows and columns. Hand-written kernels that
// follow the ABI as compiled ones do (the chunk table of rectangles with
// four lengths per chunk, the next buffers, the per-chunk row and column
// partials, the combined results offset per chunk) for a small factored
// rule, against a direct double reference over whole matrices: shapes of
// every kind (empty, 1-D, matrices, a batch of matrices, rows split into
// parts), parameter groups, thread counts and chunk sizes, skipped steps,
// checkpoints, state sizes, shape validation, the C API and the manifest
// reader.
//
//===----------------------------------------------------------------------===//

#include "../lib/Reductions.h"
#include "FactoredRule.h"
#include "optim/CApiSupport.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Trajectory.h"
#include "optim/optim.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

using namespace optim;
using namespace factored;
using json = nlohmann::json;

namespace {

template <typename T> Rule makeRule() {
  bool f32 = std::is_same_v<T, float>;
  return Rule(factoredInfo(f32 ? DType::F32 : DType::F64), reduceKernel<T>,
              ruleKernel<T>, nullptr);
}

/// Shapes in groups: empty ones, 1-D, matrices both ways, a batch, rows
/// longer than the chunk sizes below, many short rows; an empty group.
const std::vector<std::vector<std::vector<int64_t>>> kGroups = {
    {{0}, {1}, {7}, {3, 5}},
    {{5, 3}, {2, 3, 4}, {3, 0}, {0, 4}},
    {},
    {{1, 70001}, {4097, 3}}};
const double kGroupLr[] = {-1, 0.02, -1, 0.1}; // -1: the default

int64_t count(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// [B, R, C] of a shape (KernelABI.h).
void view(const std::vector<int64_t> &shape, int64_t &B, int64_t &R,
          int64_t &C) {
  C = shape.back();
  R = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
  B = 1;
  for (size_t d = 0; d + 2 < shape.size(); ++d)
    B *= shape[d];
}

template <typename T> struct Model {
  std::vector<std::vector<int64_t>> shapes;
  std::vector<size_t> group;
  std::vector<std::vector<T>> params;
  std::vector<std::vector<std::vector<T>>> grads; // [step][tensor]
};

template <typename T> Model<T> makeModel(int steps, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Model<T> m;
  for (size_t gi = 0; gi < kGroups.size(); ++gi)
    for (const auto &shape : kGroups[gi]) {
      m.shapes.push_back(shape);
      m.group.push_back(gi);
      m.params.emplace_back(size_t(count(shape)));
      for (T &x : m.params.back())
        x = T(u(rng));
    }
  m.grads.resize(size_t(steps));
  for (auto &step : m.grads)
    for (const auto &p : m.params) {
      step.emplace_back(p.size());
      for (T &x : step.back())
        x = T(u(rng));
    }
  return m;
}

template <typename T> struct Outcome {
  std::vector<std::vector<T>> params;
  std::vector<std::vector<std::vector<T>>> states; // [tensor][state]
};

template <typename T>
std::vector<ParamGroup> groupsOf(std::vector<std::vector<T>> &params,
                                 const Model<T> &model, bool shaped = true) {
  std::vector<ParamGroup> groups(kGroups.size());
  for (size_t k = 0; k < params.size(); ++k) {
    Param p(params[k].data(), int64_t(params[k].size()));
    groups[model.group[k]].params.push_back(shaped ? p.shaped(model.shapes[k])
                                                   : p);
  }
  for (size_t gi = 0; gi < groups.size(); ++gi)
    if (kGroupLr[gi] > 0)
      groups[gi].hypers = {{"lr", kGroupLr[gi]}};
  return groups;
}

template <typename T>
std::vector<Grad> gradsOf(const std::vector<std::vector<T>> &step) {
  std::vector<Grad> grads;
  for (const auto &g : step)
    grads.emplace_back(g.data(), int64_t(g.size()));
  return grads;
}

template <typename T>
Outcome<T> statesOf(const Optimizer &opt, std::vector<std::vector<T>> params) {
  Outcome<T> out;
  out.params = std::move(params);
  for (size_t k = 0; k < out.params.size(); ++k) {
    out.states.emplace_back();
    for (const StateSpec &s : opt.rule().info().states) {
      const T *data = static_cast<const T *>(opt.state(k, s.name));
      out.states.back().emplace_back(data, data + opt.stateSize(k, s.name));
    }
  }
  return out;
}

template <typename T>
Outcome<T> runOptimizer(const Rule &rule, const Model<T> &model,
                        unsigned threads, int64_t chunkSize) {
  std::vector<std::vector<T>> params = model.params;
  OptimizerOptions options;
  options.threads = threads;
  options.chunkSize = chunkSize;
  Optimizer opt(rule, groupsOf(params, model), options);
  for (const auto &step : model.grads)
    EXPECT_TRUE(opt.step(gradsOf(step)));
  return statesOf(opt, std::move(params));
}

/// The same steps over whole matrices, in double, with the kernels' per
/// coordinate functions.
template <typename T> Outcome<T> runReference(const Model<T> &model) {
  RuleInfo info = factoredInfo(DType::F64);
  size_t K = model.params.size();
  std::vector<std::vector<double>> hypers;
  for (double lr : kGroupLr) {
    std::vector<double> h;
    for (const HyperParam &hp : info.hypers)
      h.push_back(hp.name == "lr" && lr > 0 ? lr : hp.defaultValue);
    hypers.push_back(h);
  }
  Outcome<T> out;
  out.params = model.params;
  for (size_t k = 0; k < K; ++k) {
    int64_t B, R, C;
    view(model.shapes[k], B, R, C);
    out.states.push_back({std::vector<T>(size_t(B * R), T(0.5)),
                          std::vector<T>(size_t(B * C), T(0.25)),
                          std::vector<T>(out.params[k].size(), T(0))});
  }
  for (const auto &grads : model.grads) {
    double total = 0;
    for (size_t k = 0; k < K; ++k)
      for (T g : grads[k])
        total += double(g);
    for (size_t k = 0; k < K; ++k) {
      if (out.params[k].empty())
        continue;
      const double *h = hypers[model.group[k]].data();
      int64_t B, R, C;
      view(model.shapes[k], B, R, C);
      const std::vector<T> &g = grads[k];
      std::vector<T> &p = out.params[k], &r = out.states[k][0],
                     &cs = out.states[k][1], &m = out.states[k][2];
      std::vector<double> red0(size_t(B * R)), red1(size_t(B * C), 0.0),
          rn(size_t(B * R)), cn(size_t(B * C));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < R; ++i) {
          double acc = 0;
          for (int64_t j = 0; j < C; ++j) {
            double v = double(g[size_t((b * R + i) * C + j)]);
            acc += v * v;
            red1[size_t(b * C + j)] += v * v;
          }
          red0[size_t(b * R + i)] = acc / double(C);
        }
      for (double &v : red1)
        v /= double(R);
      double mean = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < R; ++i) {
          size_t row = size_t(b * R + i);
          rn[row] = rowNew(double(r[row]), rounded<T>(red0[row]), h);
          mean += rn[row] * double(C);
        }
      mean /= double(p.size());
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < C; ++j) {
          size_t col = size_t(b * C + j);
          cn[col] = colNew(double(cs[col]), rounded<T>(red1[col]), h);
        }
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < R; ++i)
          for (int64_t j = 0; j < C; ++j) {
            size_t at = size_t((b * R + i) * C + j);
            double mn = momentNew(double(m[at]), double(g[at]), h);
            p[at] = T(paramNew(double(p[at]), mn, rn[size_t(b * R + i)],
                               cn[size_t(b * C + j)], rounded<T>(mean),
                               rounded<T>(total), h));
            m[at] = T(mn);
          }
      for (size_t i = 0; i < rn.size(); ++i)
        r[i] = T(rn[i]);
      for (size_t j = 0; j < cn.size(); ++j)
        cs[j] = T(cn[j]);
    }
  }
  return out;
}

template <typename T>
bool bitIdentical(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <typename T> bool sameRun(const Outcome<T> &a, const Outcome<T> &b) {
  if (a.params.size() != b.params.size())
    return false;
  for (size_t k = 0; k < a.params.size(); ++k) {
    if (!bitIdentical(a.params[k], b.params[k]))
      return false;
    for (size_t s = 0; s < a.states[k].size(); ++s)
      if (!bitIdentical(a.states[k][s], b.states[k][s]))
        return false;
  }
  return true;
}

template <typename T>
void expectClose(const Outcome<T> &got, const Outcome<T> &want, double tol) {
  auto check = [&](const std::vector<T> &a, const std::vector<T> &b,
                   const std::string &name) {
    ASSERT_EQ(a.size(), b.size()) << name;
    size_t bad = 0;
    for (size_t i = 0; i < a.size() && bad < 5; ++i)
      if (!(std::fabs(double(a[i]) - double(b[i])) <=
            tol * std::max(1.0, std::fabs(double(b[i])))))
        ADD_FAILURE() << name << "[" << i << "] = " << a[i]
                      << ", the reference has " << b[i] << " (" << ++bad << ")";
  };
  ASSERT_EQ(got.params.size(), want.params.size());
  for (size_t k = 0; k < want.params.size(); ++k) {
    check(got.params[k], want.params[k], "param " + std::to_string(k));
    for (size_t s = 0; s < want.states[k].size(); ++s)
      check(got.states[k][s], want.states[k][s],
            "state " + std::to_string(s) + " of param " + std::to_string(k));
  }
}

template <typename T> void checkAgainstReference() {
  SCOPED_TRACE((std::is_same_v<T, float> ? "f32" : "f64"));
  Model<T> model = makeModel<T>(/*steps=*/6, /*seed=*/11);
  Rule rule = makeRule<T>();
  Outcome<T> want = runReference(model);
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-11;
  for (int64_t chunkSize :
       {int64_t(1), int64_t(4), int64_t(7), int64_t(4096), int64_t(32768)}) {
    SCOPED_TRACE("chunkSize " + std::to_string(chunkSize));
    Outcome<T> one = runOptimizer(rule, model, 1, chunkSize);
    expectClose(one, want, tol);
    if (chunkSize == 1) // ~100k chunks: thread counts are checked below.
      continue;
    for (unsigned threads : {2u, 3u, 4u})
      EXPECT_TRUE(sameRun(runOptimizer(rule, model, threads, chunkSize), one))
          << threads << " threads";
  }
}

TEST(Axes, FactoredRuleMatchesADirectComputationF32) {
  checkAgainstReference<float>();
}

TEST(Axes, FactoredRuleMatchesADirectComputationF64) {
  checkAgainstReference<double>();
}

TEST(Axes, ThreadCountsGiveTheSameBitsWithSplitRows) {
  // chunkSize 1000 (chunks of 16000: the rule has a column reduction)
  // splits the row of [1, 70001] into 5 parts, and 5333 rows of [4097, 3] go
  // to a chunk.
  Model<double> model = makeModel<double>(3, 23);
  Rule rule = makeRule<double>();
  Outcome<double> one = runOptimizer(rule, model, 1, 1000);
  for (unsigned threads : {2u, 3u, 4u})
    EXPECT_TRUE(sameRun(runOptimizer(rule, model, threads, 1000), one))
        << threads << " threads";
  expectClose(one, runReference(model), 1e-11);
}

/// What the kernels saw of the chunk table: checks the rectangles and the
/// pointers' offsets of a few shapes, recorded by a rule kernel that only
/// looks.
struct SeenChunk {
  int64_t nr, nc, r0, c0, stride;
  uint64_t first;
  ptrdiff_t p, r, c, rNext, cNext, red0, red1;
};
std::vector<SeenChunk> *seen = nullptr;

void lookKernel(void *const *ptrs, const int64_t *lengths,
                const int64_t *strides, int64_t begin, int64_t end,
                const double *, int64_t, const void *const *, const double *,
                const uint64_t *rng) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * P;
    auto at = [&](size_t i) { return reinterpret_cast<intptr_t>(cp[i]); };
    seen->push_back({lengths[4 * c], lengths[4 * c + 1], lengths[4 * c + 2],
                     lengths[4 * c + 3], strides[c], rng[1 + c], at(0), at(2),
                     at(3), at(5), at(6), at(9), at(10)});
  }
}

TEST(Axes, ChunksAreRectanglesOfTheShapeAndChunkSize) {
  std::vector<double> a(2 * 3 * 64), b(160);
  std::vector<SeenChunk> chunks;
  seen = &chunks;
  Rule rule(factoredInfo(DType::F64), reduceKernel<double>, lookKernel,
            nullptr);
  OptimizerOptions options;
  options.threads = 1;
  // A rule with a column reduction takes chunks of 16 x chunkSize = 128:
  // [2,3,64]: 2 rows a chunk; [160]: parts of 128.
  options.chunkSize = 8;
  Optimizer opt(
      rule,
      {Param(a.data(), a.size()).shaped({2, 3, 64}), Param(b.data(), b.size())},
      options);
  std::vector<double> ga(a.size()), gb(b.size());
  opt.step({{ga.data(), ga.size()}, {gb.data(), gb.size()}});
  seen = nullptr;
  ASSERT_EQ(chunks.size(), 6u);
  const intptr_t pa = reinterpret_cast<intptr_t>(a.data());
  const intptr_t pb = reinterpret_cast<intptr_t>(b.data());
  auto base = [&](size_t param, const char *state) {
    return reinterpret_cast<intptr_t>(opt.state(param, state));
  };
  // [nr, nc, r0, c0, first coordinate, matrix] of each chunk.
  const int64_t want[6][6] = {{2, 64, 0, 0, 0, 0},    {1, 64, 2, 0, 128, 0},
                              {2, 64, 0, 0, 192, 1},  {1, 64, 2, 0, 320, 1},
                              {1, 128, 0, 0, 0, 0},   {1, 32, 0, 128, 128, 0}};
  for (size_t c = 0; c < 6; ++c) {
    SCOPED_TRACE("chunk " + std::to_string(c));
    const SeenChunk &s = chunks[c];
    const int64_t *w = want[c];
    EXPECT_EQ(s.nr, w[0]);
    EXPECT_EQ(s.nc, w[1]);
    EXPECT_EQ(s.r0, w[2]);
    EXPECT_EQ(s.c0, w[3]);
    size_t param = c < 4 ? 0 : 1;
    int64_t R = param == 0 ? 3 : 1, C = param == 0 ? 64 : 160;
    EXPECT_EQ(s.stride, param == 0 ? 384 : 160);
    EXPECT_EQ(s.first, uint64_t((param == 0 ? 0 : 384) + w[4]));
    EXPECT_EQ(s.p, (param == 0 ? pa : pb) + w[4] * 8);
    int64_t row = w[5] * R + w[2], col = w[5] * C + w[3];
    EXPECT_EQ(s.r, base(param, "r") + row * 8);
    EXPECT_EQ(s.c, base(param, "c") + col * 8);
    // The next buffers and results are apart from the current state, offset
    // alike.
    EXPECT_NE(s.rNext, s.r);
    EXPECT_NE(s.cNext, s.c);
  }
  EXPECT_EQ(chunks[1].rNext - chunks[0].rNext, 2 * 8);
  EXPECT_EQ(chunks[3].cNext, chunks[2].cNext);
  EXPECT_EQ(chunks[2].cNext - chunks[0].cNext, 64 * 8);
  EXPECT_EQ(chunks[1].red0 - chunks[0].red0, 2 * 8);
  EXPECT_EQ(chunks[5].red1 - chunks[4].red1, 128 * 8);
}

TEST(Axes, StateSizesFollowTheShape) {
  std::vector<float> a(24), b(12), c(5), e;
  Optimizer opt(makeRule<float>(),
                {Param(a.data(), a.size()).shaped({2, 3, 4}),
                 Param(b.data(), b.size()).shaped({12}),
                 Param(c.data(), c.size()), Param(e.data(), 0).shaped({3, 0})},
                {});
  const int64_t rows[] = {6, 1, 1, 3}, cols[] = {8, 12, 5, 0},
                sizes[] = {24, 12, 5, 0};
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(opt.stateSize(k, "r"), rows[k]) << k;
    EXPECT_EQ(opt.stateSize(k, "c"), cols[k]) << k;
    EXPECT_EQ(opt.stateSize(k, "m"), sizes[k]) << k;
    const float *r = static_cast<const float *>(opt.state(k, "r"));
    for (int64_t i = 0; i < rows[k]; ++i)
      EXPECT_EQ(r[i], 0.5f);
  }
  EXPECT_THROW(opt.stateSize(4, "r"), Error);
  EXPECT_THROW(opt.stateSize(0, "q"), Error);
  // A step leaves the empty tensor's row state at its initial value.
  std::vector<float> ga(24, 0.5f), gb(12, 1.0f), gc(5, -1.0f);
  ASSERT_TRUE(opt.step({{ga.data(), ga.size()},
                        {gb.data(), gb.size()},
                        {gc.data(), gc.size()},
                        {e.data(), 0}}));
  const float *r3 = static_cast<const float *>(opt.state(3, "r"));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(r3[i], 0.5f);
  // Row r of [12]: 0.9 * 0.5 + 0.1 * mean(g^2) = 0.55.
  EXPECT_FLOAT_EQ(static_cast<const float *>(opt.state(1, "r"))[0], 0.55f);
  EXPECT_FLOAT_EQ(static_cast<const float *>(opt.state(0, "c"))[7],
                  0.9f * 0.25f + 0.1f * 0.25f);
}

std::string constructionError(const Rule &rule, std::vector<Param> params) {
  try {
    Optimizer opt(rule, std::move(params));
  } catch (const Error &e) {
    return e.what();
  }
  return "no error";
}

TEST(Axes, ShapesAreCheckedForEveryRule) {
  std::vector<double> a(12), b(13);
  // A rule without axes: the same checks (and a valid shape is ignored).
  RuleInfo plain;
  plain.name = "plain";
  plain.dtype = DType::F64;
  Rule noAxes(
      plain,
      +[](void *const *, const int64_t *, const int64_t *, int64_t, int64_t,
          const double *, int64_t, const void *const *, const uint64_t *) {},
      nullptr);
  for (const Rule &rule : {makeRule<double>(), noAxes}) {
    SCOPED_TRACE(rule.info().name);
    Param pa(a.data(), a.size()), pb(b.data(), b.size());
    EXPECT_EQ(constructionError(rule, {pa.shaped({3, 4}), pb.shaped({3, 4})}),
              "optim::Optimizer: parameter 1: shape [3, 4] has 12 elements, "
              "its size is 13");
    EXPECT_EQ(constructionError(rule, {pa.shaped({-3, -4})}),
              "optim::Optimizer: parameter 0: shape [-3, -4] has a negative "
              "dimension");
    // Up to numpy's 64 dimensions are fine (for any rule: Python passes
    // every array's shape); 65 are refused.
    std::vector<int64_t> many(64, 1);
    many.back() = 12;
    EXPECT_EQ(constructionError(rule, {pa.shaped(many)}), "no error");
    many.push_back(1);
    EXPECT_EQ(constructionError(rule, {pa.shaped(many)}).substr(0, 60),
              "optim::Optimizer: parameter 0: shape [1, 1, 1, 1, 1, 1, 1, 1");
    EXPECT_NE(constructionError(rule, {pa.shaped(many)})
                  .find("has 65 dimensions, more than 64"),
              std::string::npos);
    EXPECT_EQ(constructionError(
                  rule, {pa.shaped({int64_t(1) << 32, int64_t(1) << 32, 12})}),
              "optim::Optimizer: parameter 0: shape [4294967296, 4294967296, "
              "12] has more elements than a 64-bit count holds, its size is "
              "12");
    EXPECT_EQ(constructionError(
                  rule, {pa.shaped({1, 1, 1, 1, 1, 1, 3, 4}), pb.shaped({13})}),
              "no error");
  }
  // A zero dimension makes the count 0 whatever the others; rows of a row
  // state past the address space are refused for a rule with axes only.
  std::vector<double> none;
  Param empty(none.data(), 0);
  EXPECT_EQ(constructionError(noAxes, {empty.shaped({int64_t(1) << 62, 4, 0})}),
            "no error");
  EXPECT_EQ(constructionError(makeRule<double>(),
                              {empty.shaped({int64_t(1) << 62, 4, 0})}),
            "optim::Optimizer: parameter 0: shape [4611686018427387904, 4, 0] "
            "has more rows or columns than the address space holds");
}

TEST(Axes, ShapesDoNotChangeARuleWithoutAxes) {
  // The per-coordinate rule of the factored one's moment: a shape changes
  // neither chunking nor results.
  RuleInfo info;
  info.name = "momentum";
  info.dtype = DType::F64;
  info.states = {{"m", 1, 0.0}};
  Rule rule(
      info,
      +[](void *const *ptrs, const int64_t *lengths, const int64_t *,
          int64_t begin, int64_t end, const double *, int64_t,
          const void *const *, const uint64_t *) {
        for (int64_t c = begin; c < end; ++c) {
          double *p = static_cast<double *>(ptrs[3 * c]);
          const double *g = static_cast<const double *>(ptrs[3 * c + 1]);
          double *m = static_cast<double *>(ptrs[3 * c + 2]);
          for (int64_t i = 0; i < lengths[c]; ++i) {
            m[i] = 0.9 * m[i] + g[i];
            p[i] -= 0.1 * m[i] + double(c);
          }
        }
      },
      nullptr);
  std::vector<double> a(15, 1.0), b(15, 1.0), g(15, 0.5);
  OptimizerOptions options;
  options.chunkSize = 4;
  Optimizer shaped(rule, {Param(a.data(), a.size()).shaped({3, 5})}, options);
  Optimizer flat(rule, {Param(b.data(), b.size())}, options);
  shaped.step({{g.data(), g.size()}});
  flat.step({{g.data(), g.size()}});
  EXPECT_EQ(a, b);
  EXPECT_EQ(shaped.stateSize(0, "m"), 15);
}

TEST(Axes, ASkippedStepChangesNothing) {
  Model<float> model = makeModel<float>(4, 31);
  Rule rule = makeRule<float>();
  OptimizerOptions options;
  options.threads = 2;
  options.chunkSize = 5;
  options.skipNonFinite = true;
  // Steps 0, 1, a NaN step, 2, 3 against steps 0..3.
  std::vector<std::vector<float>> params = model.params;
  Optimizer opt(rule, groupsOf(params, model), options);
  ASSERT_TRUE(opt.step(gradsOf(model.grads[0])));
  ASSERT_TRUE(opt.step(gradsOf(model.grads[1])));
  Outcome<float> before = statesOf(opt, params);
  auto bad = model.grads[2];
  bad[5][7] = std::numeric_limits<float>::quiet_NaN(); // [2, 3, 4]
  EXPECT_FALSE(opt.step(gradsOf(bad)));
  EXPECT_EQ(opt.skippedSteps(), 1);
  EXPECT_EQ(opt.stepCount(), 2);
  EXPECT_TRUE(sameRun(statesOf(opt, params), before));
  ASSERT_TRUE(opt.step(gradsOf(model.grads[2])));
  ASSERT_TRUE(opt.step(gradsOf(model.grads[3])));
  EXPECT_TRUE(sameRun(statesOf(opt, params), runOptimizer(rule, model, 2, 5)));
}

TEST(Axes, CheckpointsRoundTripAndRefuseAnotherShape) {
  Model<double> model = makeModel<double>(5, 41);
  Rule rule = makeRule<double>();
  OptimizerOptions options;
  options.threads = 3;
  options.chunkSize = 6;
  std::string path = "axes-ckpt-" + std::to_string(::getpid()) + ".safetensors";
  std::vector<std::vector<double>> params = model.params;
  {
    Optimizer opt(rule, groupsOf(params, model), options);
    for (int t = 0; t < 3; ++t)
      opt.step(gradsOf(model.grads[t]));
    opt.save(path);
  }
  // Resumed in a fresh optimizer, with other threads: the same bits as the
  // uninterrupted run.
  options.threads = 1;
  Optimizer resumed(rule, groupsOf(params, model), options);
  resumed.load(path);
  EXPECT_EQ(resumed.stepCount(), 3);
  for (int t = 3; t < 5; ++t)
    resumed.step(gradsOf(model.grads[t]));
  EXPECT_TRUE(
      sameRun(statesOf(resumed, params), runOptimizer(rule, model, 1, 6)));

  // Parameter 4 is [5, 3]; as [3, 5] its row state has 3 values, not 5.
  std::vector<std::vector<double>> other = model.params;
  Model<double> transposed = model;
  transposed.shapes[4] = {3, 5};
  Optimizer wrong(rule, groupsOf(other, transposed), options);
  wrong.step(gradsOf(model.grads[0]));
  Outcome<double> before = statesOf(wrong, other);
  try {
    wrong.load(path);
    ADD_FAILURE() << "loaded a checkpoint of another shape";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "optim::Optimizer::load: '" + path +
                  "': row state 'r' of parameter 4 holds 5 values, this "
                  "optimizer has 3 (one per row): the checkpoint was written "
                  "for another shape of parameter 4");
  }
  EXPECT_TRUE(sameRun(statesOf(wrong, other), before));
  EXPECT_EQ(wrong.stepCount(), 1);
  ::unlink(path.c_str());
}

TEST(Axes, BadRuleInfosAndTrajectoriesAreRefused) {
  RuleInfo info = factoredInfo(DType::F64);
  info.states[0].size = 2;
  std::vector<double> a(4);
  EXPECT_EQ(constructionError(
                Rule(info, reduceKernel<double>, ruleKernel<double>, nullptr),
                {Param(a.data(), a.size())}),
            "optim::Optimizer: rule 'factored': row state 'r' has size 2; "
            "row and column states are scalars");
  info = factoredInfo(DType::F64);
  info.reductions[1].global = true;
  EXPECT_EQ(constructionError(
                Rule(info, reduceKernel<double>, ruleKernel<double>, nullptr),
                {Param(a.data(), a.size())}),
            "optim::Optimizer: rule 'factored': reduction 1 is global and "
            "per column; a row or column reduction is per tensor");
  // Trajectories take rules with axes (test/e2e/TrajectoryAxesTest.cpp)
  // but need their reverse mode, which hand-written kernels do not have.
  try {
    Trajectory traj(makeRule<double>(), {4});
    ADD_FAILURE() << "a trajectory of a rule without its reverse mode";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "optim::Trajectory: rule 'factored' has no reverse mode (its "
              "reductions need optim_vjp_reduced_kernel_factored and "
              "optim_vjp_reductions_kernel_factored); compile it with "
              "CompileOptions::vjp");
  }
}

// ---- The C API --------------------------------------------------------------

optim_rule *handleOf(const Rule &rule) {
  auto handle = std::make_unique<optim_rule>();
  handle->rule = rule;
  capi::trackHandle(handle.get(), capi::HandleKind::Rule);
  return handle.release();
}

TEST(Axes, TheCApiGivesAxesAndTakesShapes) {
  Rule rule = makeRule<double>();
  optim_rule *h = handleOf(rule);
  const char *axis = nullptr;
  const char *states[] = {"row", "col", "none"};
  for (size_t s = 0; s < 3; ++s) {
    ASSERT_EQ(optim_rule_state_axis(h, s, &axis), OPTIM_OK);
    EXPECT_STREQ(axis, states[s]);
  }
  const char *reductions[] = {"row", "col", "none", "none"};
  for (size_t r = 0; r < 4; ++r) {
    ASSERT_EQ(optim_rule_reduction_axis(h, r, &axis), OPTIM_OK);
    EXPECT_STREQ(axis, reductions[r]);
  }
  axis = "unchanged";
  EXPECT_EQ(optim_rule_state_axis(h, 3, &axis), OPTIM_ERROR_NOT_FOUND);
  EXPECT_STREQ(optim_last_error(), "optim_rule_state_axis: index 3 is out of "
                                   "range: rule 'factored' has 3 states");
  EXPECT_EQ(optim_rule_reduction_axis(h, 4, &axis), OPTIM_ERROR_NOT_FOUND);
  EXPECT_STREQ(optim_last_error(),
               "optim_rule_reduction_axis: index 4 is out of range: rule "
               "'factored' has 4 reductions");
  EXPECT_STREQ(axis, "unchanged");
  EXPECT_EQ(optim_rule_state_axis(h, 0, nullptr), OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(optim_rule_reduction_axis(nullptr, 0, &axis),
            OPTIM_ERROR_INVALID_ARGUMENT);

  // Two groups: [2, 3, 4] and [5] (no shape: one row) in the first, [3, 5]
  // in the second.
  Model<double> model;
  model.shapes = {{2, 3, 4}, {5}, {3, 5}};
  std::vector<std::vector<double>> params = {std::vector<double>(24, 0.5),
                                             std::vector<double>(5, -1.0),
                                             std::vector<double>(15, 2.0)};
  std::vector<double> grad24(24), grad5(5), grad15(15);
  for (size_t i = 0; i < 24; ++i)
    grad24[i] = std::sin(double(i));
  for (size_t i = 0; i < 5; ++i)
    grad5[i] = 0.1 * double(i);
  for (size_t i = 0; i < 15; ++i)
    grad15[i] = std::cos(double(i));
  void *g0[] = {params[0].data(), params[1].data()}, *g1[] = {params[2].data()};
  int64_t s0[] = {24, 5}, s1[] = {15};
  optim_hyper_value lr{"lr", 0.02};
  optim_group groups[] = {{g0, s0, 2, nullptr, 0}, {g1, s1, 1, &lr, 1}};
  const int64_t d0[] = {2, 3, 4}, d2[] = {3, 5};
  optim_shape shapes[] = {{d0, 3}, {nullptr, 0}, {d2, 2}};
  optim_options options;
  optim_options_init(&options);
  options.threads = 2;
  options.chunk_size = 7;
  optim_optimizer *opt = nullptr;
  ASSERT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, groups, 2, shapes,
                                          &options, &opt),
            OPTIM_OK)
      << optim_last_error();
  const double *gs[] = {grad24.data(), grad5.data(), grad15.data()};
  int64_t sizes[] = {24, 5, 15};
  for (int t = 0; t < 3; ++t)
    ASSERT_EQ(optim_optimizer_step_f64(opt, gs, sizes, 3, nullptr), OPTIM_OK);

  // The same through optim::Optimizer.
  std::vector<std::vector<double>> cxx = {std::vector<double>(24, 0.5),
                                          std::vector<double>(5, -1.0),
                                          std::vector<double>(15, 2.0)};
  std::vector<ParamGroup> cxxGroups(2);
  cxxGroups[0].params = {Param(cxx[0].data(), 24).shaped({2, 3, 4}),
                         Param(cxx[1].data(), 5)};
  cxxGroups[1].params = {Param(cxx[2].data(), 15).shaped({3, 5})};
  cxxGroups[1].hypers = {{"lr", 0.02}};
  OptimizerOptions cxxOptions;
  cxxOptions.threads = 1;
  cxxOptions.chunkSize = 7;
  Optimizer ref(rule, cxxGroups, cxxOptions);
  for (int t = 0; t < 3; ++t)
    ref.step({{grad24.data(), 24}, {grad5.data(), 5}, {grad15.data(), 15}});
  EXPECT_EQ(params, cxx);
  const int64_t rows[] = {6, 1, 3}, cols[] = {8, 5, 5};
  for (size_t k = 0; k < 3; ++k) {
    const void *data = nullptr;
    int64_t n = -1;
    ASSERT_EQ(optim_optimizer_state(opt, k, "r", &data, &n), OPTIM_OK);
    EXPECT_EQ(n, rows[k]);
    EXPECT_EQ(std::memcmp(data, ref.state(k, "r"), size_t(n) * 8), 0);
    ASSERT_EQ(optim_optimizer_state(opt, k, "c", &data, &n), OPTIM_OK);
    EXPECT_EQ(n, cols[k]);
    EXPECT_EQ(std::memcmp(data, ref.state(k, "c"), size_t(n) * 8), 0);
    ASSERT_EQ(optim_optimizer_state(opt, k, "m", &data, &n), OPTIM_OK);
    EXPECT_EQ(n, sizes[k]);
  }
  optim_optimizer_release(opt);

  // Wrong shapes: refused, *out unchanged.
  optim_optimizer *untouched = reinterpret_cast<optim_optimizer *>(0x8);
  const int64_t bad[] = {4, 7};
  optim_shape badShapes[] = {{bad, 2}, {nullptr, 0}, {d2, 2}};
  EXPECT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, groups, 2, badShapes,
                                          &options, &untouched),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(optim_last_error(), "optim::Optimizer: parameter 0: shape "
                                   "[4, 7] has 28 elements, its size is 24");
  optim_shape nullDims[] = {{d0, 3}, {nullptr, 1}, {d2, 2}};
  EXPECT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, groups, 2, nullDims,
                                          &options, &untouched),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(optim_last_error(), "optim_optimizer_create_shaped: shape of "
                                   "parameter 1: dims is NULL but rank is 1");
  std::vector<int64_t> dims65(65, 1);
  dims65.back() = 24;
  optim_shape tooMany[] = {{dims65.data(), 65}, {nullptr, 0}, {d2, 2}};
  EXPECT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, groups, 2, tooMany,
                                          &options, &untouched),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(optim_last_error(), "optim_optimizer_create_shaped: shape of "
                                   "parameter 0 has rank 65, more than 64");
  // The status names the first failure: a bad shape of group 0's
  // parameters comes before an unknown hyperparameter of group 0.
  optim_hyper_value nope{"nope", 1.0};
  optim_group badHyper[] = {{g0, s0, 2, &nope, 1}, {g1, s1, 1, &lr, 1}};
  EXPECT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, badHyper, 2, badShapes,
                                          &options, &untouched),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(optim_last_error(), "optim::Optimizer: parameter 0: shape "
                                   "[4, 7] has 28 elements, its size is 24");
  EXPECT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, badHyper, 2, shapes,
                                          &options, &untouched),
            OPTIM_ERROR_NOT_FOUND);
  EXPECT_EQ(untouched, reinterpret_cast<optim_optimizer *>(0x8));
  // No shapes at all: every parameter is one row.
  ASSERT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, groups, 2, nullptr,
                                          &options, &opt),
            OPTIM_OK);
  const void *data = nullptr;
  int64_t n = -1;
  ASSERT_EQ(optim_optimizer_state(opt, 0, "r", &data, &n), OPTIM_OK);
  EXPECT_EQ(n, 1);
  ASSERT_EQ(optim_optimizer_state(opt, 0, "c", &data, &n), OPTIM_OK);
  EXPECT_EQ(n, 24);
  optim_optimizer_release(opt);
  optim_rule_release(h);
}

// ---- Manifests
// ---------------------------------------------------------------

Manifest factoredManifest() {
  Manifest m;
  m.info = factoredInfo(DType::F32);
  m.symbol = "optim_rule_factored";
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

/// The manifest of factoredInfo as the front end's writer spells it:
/// "axis" on row and column states and reductions only.
json factoredJson() {
  json doc = json::parse(writeManifest(factoredManifest()));
  doc["states"][0]["axis"] = "row";
  doc["states"][1]["axis"] = "col";
  doc["reductions"][0]["axis"] = "row";
  doc["reductions"][1]["axis"] = "col";
  return doc;
}

std::string readError(const json &doc) {
  try {
    readManifest(doc.dump(), "factored.manifest.json");
  } catch (const Error &e) {
    return e.what();
  }
  return "no error";
}

TEST(Axes, ManifestsGiveAxes) {
  json doc = factoredJson();
  Manifest m = readManifest(doc.dump(), "factored.manifest.json");
  ASSERT_EQ(m.info.states.size(), 3u);
  EXPECT_EQ(m.info.states[0].axis, Axis::Row);
  EXPECT_EQ(m.info.states[1].axis, Axis::Col);
  EXPECT_EQ(m.info.states[2].axis, Axis::None);
  EXPECT_EQ(reductionsDescriptor(m.info.reductions),
            "mean@row,mean@col,mean:1,sum@global");
  EXPECT_TRUE(m.info.hasAxes());
  // Without the keys: a rule without axes, as before.
  json plain = json::parse(writeManifest(factoredManifest()));
  for (json &s : plain["states"])
    s.erase("axis");
  for (json &r : plain["reductions"])
    r.erase("axis");
  EXPECT_FALSE(readManifest(plain.dump(), "m.json").info.hasAxes());
}

TEST(Axes, ManifestsWithBadAxesAreRefused) {
  const std::string where = "optim: manifest 'factored.manifest.json': ";
  json doc = factoredJson();
  doc["states"][0]["axis"] = "diagonal";
  EXPECT_EQ(readError(doc),
            where + "state 0 ('r') has axis \"diagonal\"; an axis is \"row\" "
                    "or \"col\", absent for a per-coordinate state");
  doc = factoredJson();
  doc["states"][2]["axis"] = 1;
  EXPECT_EQ(readError(doc),
            where + "state 2 ('m') has axis 1; an axis is \"row\" or \"col\", "
                    "absent for a per-coordinate state");
  doc = factoredJson();
  doc["states"][1]["size"] = 3;
  EXPECT_EQ(readError(doc), where + "state 1 ('c') is a col state of size 3; "
                                    "row and column states are scalars");
  doc = factoredJson();
  doc["reductions"][0]["axis"] = "none";
  EXPECT_EQ(readError(doc),
            where + "reduction 0 ('mean') has axis \"none\"; an axis is "
                    "\"row\" or \"col\", absent for a tensor or global "
                    "reduction");
  doc = factoredJson();
  doc["reductions"][3]["axis"] = "col";
  EXPECT_EQ(readError(doc),
            where + "reduction 3 ('sum@global') has axis \"col\" and is "
                    "global; a row or column reduction is per tensor");
}

TEST(Axes, DescriptorsSpellAxes) {
  std::vector<ReductionSpec> specs;
  ASSERT_EQ(detail::parseReductionsDescriptor(
                "mean@row,max@col:1,sum@global,norm", specs),
            "");
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[0].axis, Axis::Row);
  EXPECT_EQ(specs[1].axis, Axis::Col);
  EXPECT_EQ(specs[1].level, 1u);
  EXPECT_TRUE(specs[2].global);
  EXPECT_EQ(specs[2].axis, Axis::None);
  EXPECT_EQ(reductionsDescriptor(specs), "mean@row,max@col:1,sum@global,norm");
  for (const char *bad :
       {"mean@diag", "mean@row@global", "mean@global@col", "@row", "mean@rows"})
    EXPECT_NE(detail::parseReductionsDescriptor(bad, specs), "") << bad;
}

// optim_states_<name>: sizes in declaration order, "@row" / "@col" for axis
// states (the lowering's spelling; test/AOT/states-descriptor.test).
TEST(Axes, StatesDescriptorSpellsSizesAndAxes) {
  std::vector<StateSpec> states = {
      {"m", 1, 0.0}, {"r", 1, 0.0, Axis::Row}, {"c", 1, 1.0, Axis::Col},
      {"h", 20, 0.0}};
  EXPECT_EQ(statesDescriptor(states), "1,1@row,1@col,20");
  EXPECT_EQ(statesDescriptor({}), "");
}

} // namespace
