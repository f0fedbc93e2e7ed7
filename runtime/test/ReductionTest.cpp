//===- ReductionTest.cpp - rules with tensor reductions on the CPU --------===//
//
// optim::Optimizer running rules with tensor reductions (KernelABI.h,
// version 6) from hand-written kernels that follow the ABI as compiled ones
// do: against a straightforward double reference, with several tensors and
// parameter groups, sizes 0, 1, odd and large, chunks small enough that a
// tensor spans thousands of them, and bit-identical results for 1, 2 and 3
// threads. Also the combination of partials on its own, NaN, skipped steps,
// what refuses such rules, and the C API.
//
//===----------------------------------------------------------------------===//

#include "../lib/Reductions.h"
#include "CApiStepCheck.h"
#include "optim/CApiSupport.h"
#include "optim/Optimizer.h"
#include "optim/optim.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

using namespace optim;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// One coordinate as a rule body sees it, in double.
struct Coord {
  double p, g, s[2];
};

double identity(ReductionKind k) {
  return k == ReductionKind::Max   ? -kInf
         : k == ReductionKind::Min ? kInf
                                   : 0.0;
}

/// Adds `v` (the reduced value at one coordinate) to a partial, as the ABI
/// says a reduce kernel does: squares for norm, NaN through max and min.
double accumulate(ReductionKind k, double acc, double v) {
  switch (k) {
  case ReductionKind::Max:
    return v > acc || std::isnan(v) ? v : acc;
  case ReductionKind::Min:
    return v < acc || std::isnan(v) ? v : acc;
  case ReductionKind::Norm:
    return acc + v * v;
  default:
    return acc + v;
  }
}

// The rules. Each gives its signature, the value reduction r reduces at a
// coordinate, and the update with the reduced values; the kernels below and
// the reference apply them.

/// p -= lr * g / global_norm(g): clipping by the global norm.
struct Clip {
  static constexpr size_t S = 0;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "clip";
    i.hypers = {{"lr", 0.1, false}};
    i.reductions = {{ReductionKind::Norm, true}};
    return i;
  }
  static double value(size_t, const Coord &x, const double *, int64_t) {
    return x.g;
  }
  static void update(Coord &x, const double *h, int64_t, const double *red) {
    x.p -= h[0] * x.g / red[0];
  }
};

/// p -= tensor_mean(g): no hyperparameters.
struct Center {
  static constexpr size_t S = 0;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "center";
    i.reductions = {{ReductionKind::Mean, false}};
    return i;
  }
  static double value(size_t, const Coord &x, const double *, int64_t) {
    return x.g;
  }
  static void update(Coord &x, const double *, int64_t, const double *red) {
    x.p -= red[0];
  }
};

/// LAMB (You et al., 2020): Adam's update u scaled by ||p|| / ||u|| per
/// tensor. u depends on the new moments, so the reduce pass computes them
/// without writing them.
struct Lamb {
  static constexpr size_t S = 2;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "lamb";
    i.hypers = {{"lr", 0.01, false},
                {"beta1", 0.9, false},
                {"beta2", 0.999, false},
                {"eps", 1e-6, false},
                {"wd", 0.01, false}};
    i.states = {{"m", 1, 0.0}, {"v", 1, 0.0}};
    i.reductions = {{ReductionKind::Norm, false},
                    {ReductionKind::Norm, false}};
    return i;
  }
  static double adam(Coord &x, const double *h, int64_t t) {
    x.s[0] = h[1] * x.s[0] + (1 - h[1]) * x.g;
    x.s[1] = h[2] * x.s[1] + (1 - h[2]) * x.g * x.g;
    double mhat = x.s[0] / (1 - std::pow(h[1], double(t)));
    double vhat = x.s[1] / (1 - std::pow(h[2], double(t)));
    return mhat / (std::sqrt(vhat) + h[3]) + h[4] * x.p;
  }
  static double value(size_t r, const Coord &x, const double *h, int64_t t) {
    Coord copy = x;
    return r == 0 ? x.p : adam(copy, h, t);
  }
  static void update(Coord &x, const double *h, int64_t t, const double *red) {
    double u = adam(x, h, t);
    double ratio = red[0] > 0 && red[1] > 0 ? red[0] / red[1] : 1.0;
    x.p -= h[0] * ratio * u;
  }
};

/// Every kind, tensor and global, in one rule.
struct Mix {
  static constexpr size_t S = 1;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "mix";
    i.hypers = {{"lr", 0.01, false}};
    i.states = {{"a", 1, 0.5}};
    i.reductions = {{ReductionKind::Sum, false},  {ReductionKind::Max, true},
                    {ReductionKind::Min, false},  {ReductionKind::Mean, true},
                    {ReductionKind::Norm, true},  {ReductionKind::Max, false},
                    {ReductionKind::Sum, true},   {ReductionKind::Min, true},
                    {ReductionKind::Mean, false}, {ReductionKind::Norm, false}};
    return i;
  }
  static double value(size_t r, const Coord &x, const double *, int64_t) {
    return r % 2 ? x.g : x.p + x.s[0];
  }
  static void update(Coord &x, const double *h, int64_t t, const double *red) {
    double sum = 0;
    for (size_t r = 0; r < 10; ++r)
      sum += red[r] / double(r + 1);
    x.s[0] = 0.5 * x.s[0] + 0.1 * x.g;
    x.p -= h[0] * (sum * 1e-3 + x.g * red[9] / double(t));
  }
};

template <typename Spec, typename T>
Coord load(void *const *cp, int64_t i) {
  Coord x{double(static_cast<T *>(cp[0])[i]),
          double(static_cast<T *>(cp[1])[i]),
          {0, 0}};
  for (size_t s = 0; s < Spec::S; ++s)
    x.s[s] = double(static_cast<T *>(cp[2 + s])[i]);
  return x;
}

/// optim_reduce_<name>: chunk c's partials, coordinates in order.
template <typename Spec, typename T>
void reduceKernel(void *const *ptrs, const int64_t *lengths, const int64_t *,
                  int64_t begin, int64_t end, const double *hypers,
                  int64_t step, const void *const *, double *partials,
                  const double *, int64_t stage, const uint64_t *) {
  static const std::vector<ReductionSpec> red = Spec::info().reductions;
  size_t R = red.size();
  if (stage != 0) // Level 0 only: later stages write nothing.
    return;
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * (2 + Spec::S);
    for (size_t r = 0; r < R; ++r) {
      double acc = identity(red[r].kind);
      for (int64_t i = 0; i < lengths[c]; ++i)
        acc = accumulate(red[r].kind, acc,
                         Spec::value(r, load<Spec, T>(cp, i), hypers, step));
      partials[c * R + r] = acc;
    }
  }
}

/// optim_rule_<name> of a rule with reductions.
template <typename Spec, typename T>
void reducedKernel(void *const *ptrs, const int64_t *lengths, const int64_t *,
                   int64_t begin, int64_t end, const double *hypers,
                   int64_t step, const void *const *, const double *reduced,
                   const uint64_t *) {
  static const size_t R = Spec::info().reductions.size();
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * (2 + Spec::S);
    for (int64_t i = 0; i < lengths[c]; ++i) {
      Coord x = load<Spec, T>(cp, i);
      Spec::update(x, hypers, step, reduced + c * R);
      static_cast<T *>(cp[0])[i] = T(x.p);
      for (size_t s = 0; s < Spec::S; ++s)
        static_cast<T *>(cp[2 + s])[i] = T(x.s[s]);
    }
  }
}

template <typename Spec, typename T> Rule makeRule() {
  RuleInfo info = Spec::info();
  info.dtype = std::is_same_v<T, float> ? DType::F32 : DType::F64;
  return Rule(info, reduceKernel<Spec, T>, reducedKernel<Spec, T>, nullptr);
}

/// Tensors in groups: sizes 0, 1, odd and large, an empty group, and a
/// learning rate per group where the rule has one.
const std::vector<std::vector<int64_t>> kGroups = {
    {0, 1, 7}, {3, 100003}, {}, {5}};
const double kGroupLr[] = {-1, 0.05, -1, 0.2}; // -1: the default

template <typename T> struct Model {
  std::vector<std::vector<T>> params;
  std::vector<std::vector<std::vector<T>>> grads; // [step][tensor]
  std::vector<size_t> group;                      // of each tensor
};

template <typename T> Model<T> makeModel(int steps, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Model<T> m;
  for (size_t gi = 0; gi < kGroups.size(); ++gi)
    for (int64_t n : kGroups[gi]) {
      m.params.emplace_back(n);
      for (T &x : m.params.back())
        x = T(u(rng));
      m.group.push_back(gi);
    }
  m.grads.resize(steps);
  for (auto &step : m.grads)
    for (const auto &p : m.params) {
      step.emplace_back(p.size());
      for (T &x : step.back())
        x = T(u(rng));
    }
  return m;
}

/// Group hyperparameters of the optimizer and the reference.
std::vector<std::vector<double>> groupHypers(const RuleInfo &info) {
  std::vector<std::vector<double>> out;
  for (double lr : kGroupLr) {
    std::vector<double> h;
    for (const HyperParam &hp : info.hypers)
      h.push_back(hp.name == "lr" && lr > 0 ? lr : hp.defaultValue);
    out.push_back(h);
  }
  return out;
}

/// The parameters and states after every step, run by optim::Optimizer.
template <typename T> struct Run {
  std::vector<std::vector<T>> params;
  std::vector<std::vector<std::vector<T>>> states; // [tensor][state]
};

template <typename T>
Run<T> runOptimizer(const Rule &rule, const Model<T> &model, unsigned threads,
                    int64_t chunkSize) {
  const RuleInfo &info = rule.info();
  Run<T> out;
  out.params = model.params;
  std::vector<ParamGroup> groups(kGroups.size());
  for (size_t k = 0; k < out.params.size(); ++k)
    groups[model.group[k]].params.emplace_back(
        out.params[k].data(), int64_t(out.params[k].size()));
  for (size_t gi = 0; gi < groups.size(); ++gi)
    if (kGroupLr[gi] > 0 && info.findHyper("lr") >= 0)
      groups[gi].hypers = {{"lr", kGroupLr[gi]}};
  OptimizerOptions options;
  options.threads = threads;
  options.chunkSize = chunkSize;
  Optimizer opt(rule, groups, options);
  for (const auto &step : model.grads) {
    std::vector<Grad> grads;
    for (const auto &g : step)
      grads.emplace_back(g.data(), int64_t(g.size()));
    EXPECT_TRUE(opt.step(grads));
  }
  for (size_t k = 0; k < out.params.size(); ++k) {
    out.states.emplace_back();
    for (const StateSpec &s : info.states) {
      const T *data = static_cast<const T *>(opt.state(k, s.name));
      out.states.back().emplace_back(data, data + out.params[k].size());
    }
  }
  return out;
}

/// The same steps, straightforwardly: each reduction over the coordinates
/// of the whole tensor (or all tensors) in order, then every update.
/// Parameters and states are stored as T between steps, as the kernels do.
template <typename Spec, typename T>
Run<T> runReference(const Model<T> &model) {
  RuleInfo info = Spec::info();
  std::vector<std::vector<double>> hypers = groupHypers(info);
  size_t K = model.params.size(), R = info.reductions.size();
  Run<T> out;
  out.params = model.params;
  for (size_t k = 0; k < K; ++k) {
    out.states.emplace_back();
    for (const StateSpec &s : info.states)
      out.states.back().emplace_back(model.params[k].size(), T(s.init));
  }
  auto coord = [&](size_t k, size_t i, const std::vector<T> &g) {
    Coord x{double(out.params[k][i]), double(g[i]), {0, 0}};
    for (size_t s = 0; s < Spec::S; ++s)
      x.s[s] = double(out.states[k][s][i]);
    return x;
  };
  for (size_t step = 0; step < model.grads.size(); ++step) {
    int64_t t = int64_t(step) + 1;
    const auto &grads = model.grads[step];
    std::vector<std::vector<double>> red(K, std::vector<double>(R));
    for (size_t r = 0; r < R; ++r) {
      ReductionKind kind = info.reductions[r].kind;
      auto finish = [&](double acc, size_t count) {
        return kind == ReductionKind::Mean   ? acc / double(count)
               : kind == ReductionKind::Norm ? std::sqrt(acc)
                                             : acc;
      };
      double all = identity(kind);
      size_t allCount = 0;
      for (size_t k = 0; k < K; ++k) {
        double acc = identity(kind);
        for (size_t i = 0; i < out.params[k].size(); ++i) {
          double v = Spec::value(r, coord(k, i, grads[k]),
                                 hypers[model.group[k]].data(), t);
          acc = accumulate(kind, acc, v);
          all = accumulate(kind, all, v);
        }
        allCount += out.params[k].size();
        red[k][r] = finish(acc, out.params[k].size());
      }
      if (info.reductions[r].global)
        for (size_t k = 0; k < K; ++k)
          red[k][r] = finish(all, allCount);
    }
    for (size_t k = 0; k < K; ++k)
      for (size_t i = 0; i < out.params[k].size(); ++i) {
        Coord x = coord(k, i, grads[k]);
        Spec::update(x, hypers[model.group[k]].data(), t, red[k].data());
        out.params[k][i] = T(x.p);
        for (size_t s = 0; s < Spec::S; ++s)
          out.states[k][s][i] = T(x.s[s]);
      }
  }
  return out;
}

template <typename T>
bool bitIdentical(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) ==
                           0);
}

template <typename T>
void expectClose(const Run<T> &got, const Run<T> &want, const char *what) {
  // The sums are added in another order (chunks, then chunk partials);
  // everything else is the same arithmetic, so only rounding differs.
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-11;
  auto check = [&](const std::vector<T> &a, const std::vector<T> &b,
                   const std::string &name) {
    ASSERT_EQ(a.size(), b.size());
    size_t bad = 0;
    for (size_t i = 0; i < a.size() && bad < 5; ++i)
      if (!(std::fabs(double(a[i]) - double(b[i])) <=
            tol * std::max(1.0, std::fabs(double(b[i])))))
        ADD_FAILURE() << what << ": " << name << "[" << i << "] = " << a[i]
                      << ", the reference has " << b[i] << " (" << ++bad
                      << ")";
  };
  for (size_t k = 0; k < want.params.size(); ++k) {
    check(got.params[k], want.params[k], "param " + std::to_string(k));
    for (size_t s = 0; s < want.states[k].size(); ++s)
      check(got.states[k][s], want.states[k][s],
            "state " + std::to_string(s) + " of param " + std::to_string(k));
  }
}

template <typename Spec, typename T> void checkRule() {
  SCOPED_TRACE(Spec::info().name +
               (std::is_same_v<T, float> ? " f32" : " f64"));
  Model<T> model = makeModel<T>(/*steps=*/3, /*seed=*/7);
  Rule rule = makeRule<Spec, T>();
  Run<T> want = runReference<Spec, T>(model);
  for (int64_t chunkSize : {int64_t(5), int64_t(1), int64_t(32768)}) {
    SCOPED_TRACE("chunkSize " + std::to_string(chunkSize));
    Run<T> one = runOptimizer(rule, model, 1, chunkSize);
    expectClose(one, want, "1 thread");
    // Chunk size 1 has 100k chunks: enough to check thread counts once.
    if (chunkSize == 1)
      continue;
    for (unsigned threads : {2u, 3u}) {
      Run<T> many = runOptimizer(rule, model, threads, chunkSize);
      for (size_t k = 0; k < one.params.size(); ++k) {
        EXPECT_TRUE(bitIdentical(many.params[k], one.params[k]))
            << threads << " threads, param " << k;
        for (size_t s = 0; s < one.states[k].size(); ++s)
          EXPECT_TRUE(bitIdentical(many.states[k][s], one.states[k][s]))
              << threads << " threads, state " << s << " of param " << k;
      }
    }
  }
}

TEST(TensorReductions, GlobalNormClipping) {
  checkRule<Clip, float>();
  checkRule<Clip, double>();
}

TEST(TensorReductions, TensorMean) {
  checkRule<Center, float>();
  checkRule<Center, double>();
}

TEST(TensorReductions, LambWithStatesAndGroupHypers) {
  checkRule<Lamb, float>();
  checkRule<Lamb, double>();
}

TEST(TensorReductions, EveryKindTensorAndGlobal) {
  checkRule<Mix, float>();
  checkRule<Mix, double>();
}

TEST(TensorReductions, ThreadsFewerThanChunksAndMoreThanChunks) {
  // One tensor of 3 chunks and 3 threads: each thread one chunk; 16
  // threads: most with none. Same bits as 1 thread.
  Rule rule = makeRule<Mix, double>();
  std::vector<double> base = {0.5, -1, 2, 0.25, 3, -0.125, 1.5};
  std::vector<double> g = {1, 2, -3, 0.5, -0.25, 4, 1};
  std::vector<std::vector<double>> results;
  for (unsigned threads : {1u, 3u, 16u}) {
    std::vector<double> p = base;
    OptimizerOptions o;
    o.threads = threads;
    o.chunkSize = 3;
    Optimizer opt(rule, {Param(p.data(), 7)}, o);
    opt.step({Grad(g.data(), 7)});
    opt.step({Grad(g.data(), 7)});
    results.push_back(p);
  }
  EXPECT_TRUE(bitIdentical(results[1], results[0]));
  EXPECT_TRUE(bitIdentical(results[2], results[0]));
  EXPECT_FALSE(bitIdentical(results[0], base));
}

TEST(TensorReductions, OnlyEmptyTensors) {
  // No chunk at all: nothing to reduce and nothing to update.
  Rule rule = makeRule<Clip, float>();
  Optimizer opt(rule, {Param(static_cast<float *>(nullptr), 0),
                       Param(static_cast<float *>(nullptr), 0)});
  EXPECT_TRUE(opt.step({Grad(static_cast<const float *>(nullptr), 0),
                        Grad(static_cast<const float *>(nullptr), 0)}));
  EXPECT_EQ(opt.stepCount(), 1);
}

TEST(TensorReductions, NaNPropagatesThroughMaxAndMin) {
  // A NaN gradient reaches the global max, which every coordinate of every
  // tensor reads: all become NaN, whatever the thread count.
  Rule rule = makeRule<Mix, double>();
  for (unsigned threads : {1u, 3u}) {
    std::vector<double> a(10, 1.0), b(5, 2.0);
    std::vector<double> ga(10, 0.5), gb(5, 0.25);
    gb[3] = kNaN;
    OptimizerOptions o;
    o.threads = threads;
    o.chunkSize = 2;
    Optimizer opt(rule, {Param(a.data(), 10), Param(b.data(), 5)}, o);
    EXPECT_TRUE(opt.step({Grad(ga.data(), 10), Grad(gb.data(), 5)}));
    for (double x : a)
      EXPECT_TRUE(std::isnan(x));
    for (double x : b)
      EXPECT_TRUE(std::isnan(x));
  }
}

TEST(TensorReductions, SkipNonFiniteSkipsBothPasses) {
  Rule rule = makeRule<Lamb, float>();
  std::vector<float> p = {1, 2, 3, 4, 5}, before = p;
  std::vector<float> bad = {1, kInf, 1, 1, 1}, good = {1, 1, -1, 1, 0.5};
  OptimizerOptions o;
  o.skipNonFinite = true;
  o.chunkSize = 2;
  Optimizer opt(rule, {Param(p.data(), 5)}, o);
  EXPECT_FALSE(opt.step({Grad(bad.data(), 5)}));
  EXPECT_TRUE(bitIdentical(p, before));
  EXPECT_EQ(opt.skippedSteps(), 1);
  EXPECT_EQ(opt.stepCount(), 0);
  const float *m = static_cast<const float *>(opt.state(0, "m"));
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(m[i], 0.0f);
  // The next finite step is the first one.
  EXPECT_TRUE(opt.step({Grad(good.data(), 5)}));
  std::vector<float> fresh = before;
  Optimizer ref(rule, {Param(fresh.data(), 5)}, o);
  ref.step({Grad(good.data(), 5)});
  EXPECT_TRUE(bitIdentical(p, fresh));
}

TEST(TensorReductions, CombineInChunkOrder) {
  // Tensors 0 (3 chunks, 10 coordinates), 1 (empty: no chunk), 2 (2
  // chunks, 4 coordinates), 3 (1 chunk, 1 coordinate).
  std::vector<size_t> chunkTensor = {0, 0, 0, 2, 2, 3};
  std::vector<int64_t> sizes = {10, 0, 4, 1};
  std::vector<ReductionSpec> red = {
      {ReductionKind::Sum, false}, {ReductionKind::Mean, false},
      {ReductionKind::Norm, true}, {ReductionKind::Max, true},
      {ReductionKind::Min, false}, {ReductionKind::Mean, true}};
  const size_t R = red.size();
  std::vector<double> sums = {1, 2, 3, 4, 5, 6};
  std::vector<double> squares = {1, 2, 3, 4, 5, 1};
  std::vector<double> maxes = {1, 7, -kInf, 3, 2, -5};
  std::vector<double> mins = {4, -kInf, 2, kInf, 9, 0};
  std::vector<double> partials(6 * R), reduced(6 * R, -99);
  for (size_t c = 0; c < 6; ++c) {
    partials[c * R + 0] = sums[c];
    partials[c * R + 1] = sums[c];
    partials[c * R + 2] = squares[c];
    partials[c * R + 3] = maxes[c];
    partials[c * R + 4] = mins[c];
    partials[c * R + 5] = sums[c];
  }
  detail::combineReductions(red, chunkTensor, sizes, partials.data(),
                            reduced.data());
  double want[6][6] = {
      {6, 0.6, 4, 7, -kInf, 21.0 / 15}, {6, 0.6, 4, 7, -kInf, 21.0 / 15},
      {6, 0.6, 4, 7, -kInf, 21.0 / 15}, {9, 2.25, 4, 7, 9, 21.0 / 15},
      {9, 2.25, 4, 7, 9, 21.0 / 15},    {6, 6, 4, 7, 0, 21.0 / 15}};
  for (size_t c = 0; c < 6; ++c)
    for (size_t r = 0; r < R; ++r)
      EXPECT_EQ(reduced[c * R + r], want[c][r]) << "chunk " << c << " r " << r;

  // NaN wins wherever it is among the chunks, for max and min.
  for (size_t at = 0; at < 3; ++at) {
    std::vector<ReductionSpec> mm = {{ReductionKind::Max, false},
                                     {ReductionKind::Min, true},
                                     {ReductionKind::Sum, false}};
    std::vector<double> part = {1, 1, 1, 5, -5, 5, 2, 2, 2};
    part[at * 3] = part[at * 3 + 1] = part[at * 3 + 2] = kNaN;
    std::vector<double> out(9);
    detail::combineReductions(mm, {0, 0, 0}, {9}, part.data(), out.data());
    for (double x : out)
      EXPECT_TRUE(std::isnan(x)) << "NaN in chunk " << at;
  }
}

TEST(TensorReductions, RulesThatDoNotMatchTheirSignatureAreRefused) {
  std::vector<float> p(4), g(4);
  auto message = [&](Rule rule) {
    try {
      Optimizer opt(std::move(rule), {Param(p.data(), 4)});
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // Reductions in the signature, the one-pass kernel only.
  RuleInfo withReductions = Clip::info();
  auto onePass = [](void *const *, const int64_t *, const int64_t *, int64_t,
                    int64_t, const double *, int64_t, const void *const *,
                    const uint64_t *) {};
  EXPECT_NE(message(Rule(withReductions, +onePass, nullptr))
                .find("rule 'clip' has tensor reductions but not the "
                      "kernels of both passes (optim_reduce_clip and the "
                      "reduced optim_rule_clip)"),
            std::string::npos);
  EXPECT_NE(message(Rule(withReductions, optim_reduce_kernel(nullptr),
                         reducedKernel<Clip, float>, nullptr))
                .find("optim_reduce_clip"),
            std::string::npos);
  // The two passes, a signature without reductions.
  RuleInfo without = Clip::info();
  without.reductions.clear();
  EXPECT_NE(message(Rule(without, reduceKernel<Clip, float>,
                         reducedKernel<Clip, float>, nullptr))
                .find("its signature lists none"),
            std::string::npos);
}

TEST(TensorReductions, ThroughTheCApi) {
  // A handle as optim_compile_* makes one (CApiSupport.h).
  Rule rule = makeRule<Mix, double>();
  auto handle = std::make_unique<optim_rule>();
  handle->rule = rule;
  capi::trackHandle(handle.get(), capi::HandleKind::Rule);
  optim_rule *h = handle.release();

  size_t n = 0;
  ASSERT_EQ(optim_rule_num_reductions(h, &n), OPTIM_OK);
  EXPECT_EQ(n, 10u);
  optim_reduction_info info{};
  ASSERT_EQ(optim_rule_reduction(h, 1, &info), OPTIM_OK);
  EXPECT_STREQ(info.kind, "max");
  EXPECT_EQ(info.global, 1);
  ASSERT_EQ(optim_rule_reduction(h, 9, &info), OPTIM_OK);
  EXPECT_STREQ(info.kind, "norm");
  EXPECT_EQ(info.global, 0);
  EXPECT_EQ(optim_rule_reduction(h, 10, &info), OPTIM_ERROR_NOT_FOUND);
  EXPECT_NE(std::string(optim_last_error()).find("has 10 reductions"),
            std::string::npos);
  EXPECT_EQ(optim_rule_reduction(h, 0, nullptr),
            OPTIM_ERROR_INVALID_ARGUMENT);

  // The same as optim::Optimizer with one group and one thread.
  Model<double> model = makeModel<double>(2, 11);
  test::expectCApiStepsMatch(h, rule, model.params, model.grads, 2, 5);
}

} // namespace
