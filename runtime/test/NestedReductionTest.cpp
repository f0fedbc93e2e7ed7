//===- NestedReductionTest.cpp - rules with nested tensor reductions ------===//
//
// Kernel ABI 9, "Nested reductions": a reduction of a value computed from
// another reduction's result. optim::Optimizer runs stages 0..L of
// optim_reduce_, combining the level-s slots after stage s, then the rule.
// Hand-written kernels that follow the ABI as compiled ones do (each stage
// writes its level's slots only, reading lower levels' reduced values)
// against a direct double reference over whole tensors; the order of the
// calls and what each stage sees; thread counts and chunk sizes; the
// combine of one level; the levels in descriptors, manifests, RuleInfo
// checks and the C API; Trajectory's refusal; loadRule of a library with a
// two-stage rule (ReductionKernels.c).
//
//===----------------------------------------------------------------------===//

#include "../lib/Reductions.h"
#include "../lib/Sha256.h"
#include "CApiStepCheck.h"
#include "optim/CApiSupport.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Trajectory.h"
#include "optim/optim.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

using namespace optim;
using json = nlohmann::json;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Coord {
  double p, g, s[1];
};

double identity(ReductionKind k) {
  return k == ReductionKind::Max ? -kInf : k == ReductionKind::Min ? kInf : 0.0;
}

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

double finish(ReductionKind k, double acc, size_t count) {
  return k == ReductionKind::Mean   ? acc / double(count)
         : k == ReductionKind::Norm ? std::sqrt(acc)
                                    : acc;
}

ReductionSpec spec(ReductionKind kind, bool global, unsigned level) {
  ReductionSpec r;
  r.kind = kind;
  r.global = global;
  r.level = level;
  return r;
}

// The rules: their signature, the value reduction r reduces at a
// coordinate (reading `red`, the chunk's reduced values, for the levels
// below r's only), and the update. Kernels and reference share them, so a
// value computed from reduced values is the same in both passes.

/// Standardization (two stages): m = tensor_mean(g), v = tensor_mean((g -
/// m)^2) (level 1), n = global_norm(p) (level 0, after a level-1 slot);
/// p -= lr * (g - m) / (sqrt(v) + eps) + 1e-3 * p / (n + 1).
struct Standardize {
  static constexpr size_t S = 0;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "standardize";
    i.hypers = {{"lr", 0.1, false}, {"eps", 1e-8, false}};
    i.reductions = {spec(ReductionKind::Mean, false, 0),
                    spec(ReductionKind::Mean, false, 1),
                    spec(ReductionKind::Norm, true, 0)};
    return i;
  }
  static double value(size_t r, const Coord &x, const double *, int64_t,
                      const double *red) {
    if (r == 1) {
      double d = x.g - red[0];
      return d * d;
    }
    return r == 0 ? x.g : x.p;
  }
  static void update(Coord &x, const double *h, int64_t, const double *red) {
    x.p -= h[0] * (x.g - red[0]) / (std::sqrt(red[1]) + h[1]) +
           1e-3 * x.p / (red[2] + 1);
  }
};

/// Three stages, a state, global reductions at levels 1 and 2, every kind:
///   r0 = tensor_mean(g)                                        level 0
///   r1 = global_norm(g - r0)                                   level 1
///   r2 = tensor_max(|m' + (g - r0) / (r1 + 1e-12)|)             level 2
///   r3 = tensor_min(g)                                         level 0
///   r4 = global_mean(p * r3)                                   level 1
///   r5 = tensor_sum(p * r4 + r1 * g)                           level 2
/// with m' = beta m + (1 - beta) g (the new state, computed in the reduce
/// stages without being written); p -= lr u / (r2 + 1) + 1e-4 r4 + 1e-6 r5,
/// u = m' + (g - r0) / (r1 + 1e-12).
struct Deep {
  static constexpr size_t S = 1;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "deep";
    i.hypers = {{"lr", 0.01, false}, {"beta", 0.9, false}};
    i.states = {{"m", 1, 0.25}};
    i.reductions = {spec(ReductionKind::Mean, false, 0),
                    spec(ReductionKind::Norm, true, 1),
                    spec(ReductionKind::Max, false, 2),
                    spec(ReductionKind::Min, false, 0),
                    spec(ReductionKind::Mean, true, 1),
                    spec(ReductionKind::Sum, false, 2)};
    return i;
  }
  static double moment(const Coord &x, const double *h) {
    return h[1] * x.s[0] + (1 - h[1]) * x.g;
  }
  static double direction(const Coord &x, const double *h, const double *red) {
    return moment(x, h) + (x.g - red[0]) / (red[1] + 1e-12);
  }
  static double value(size_t r, const Coord &x, const double *h, int64_t,
                      const double *red) {
    switch (r) {
    case 0:
    case 3:
      return x.g;
    case 1:
      return x.g - red[0];
    case 2:
      return std::fabs(direction(x, h, red));
    case 4:
      return x.p * red[3];
    default:
      return x.p * red[4] + red[1] * x.g;
    }
  }
  static void update(Coord &x, const double *h, int64_t, const double *red) {
    double u = direction(x, h, red);
    x.s[0] = moment(x, h);
    x.p -= h[0] * u / (red[2] + 1) + 1e-4 * red[4] + 1e-6 * red[5];
  }
};

/// Every combine exact (max, min, sums of small integers), so that any
/// chunking gives the same bits:
///   r0 = tensor_max(|g|) (0), r1 = global_sum(g * r0) (1),
///   r2 = tensor_min(p - g * r1) (2), r3 = tensor_sum(g) (0);
/// p = p - 0.5 g + 1e-9 r2 + 1e-3 r3 (g holds integers).
struct Exact {
  static constexpr size_t S = 0;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "exact";
    i.reductions = {
        spec(ReductionKind::Max, false, 0), spec(ReductionKind::Sum, true, 1),
        spec(ReductionKind::Min, false, 2), spec(ReductionKind::Sum, false, 0)};
    return i;
  }
  static double value(size_t r, const Coord &x, const double *, int64_t,
                      const double *red) {
    switch (r) {
    case 0:
      return std::fabs(x.g);
    case 1:
      return x.g * red[0];
    case 2:
      return x.p - x.g * red[1];
    default:
      return x.g;
    }
  }
  static void update(Coord &x, const double *, int64_t, const double *red) {
    x.p = x.p - 0.5 * x.g + 1e-9 * red[2] + 1e-3 * red[3];
  }
};

/// What the kernels saw, when recording (one test at a time).
struct Call {
  int64_t stage; // -1: the rule kernel
  int64_t begin, end;
  std::vector<double> reduced; // a copy of the whole buffer
  bool reducedNull;
};
std::mutex recordMutex;
std::vector<Call> *recording = nullptr;
size_t recordedSlots = 0; // chunks * R, to copy `reduced`

void record(int64_t stage, int64_t begin, int64_t end, const double *reduced) {
  std::lock_guard<std::mutex> lock(recordMutex);
  if (!recording)
    return;
  Call call{stage, begin, end, {}, reduced == nullptr};
  if (reduced)
    call.reduced.assign(reduced, reduced + recordedSlots);
  recording->push_back(std::move(call));
}

template <typename Spec, typename T> Coord load(void *const *cp, int64_t i) {
  Coord x{double(static_cast<T *>(cp[0])[i]),
          double(static_cast<T *>(cp[1])[i]),
          {0}};
  for (size_t s = 0; s < Spec::S; ++s)
    x.s[s] = double(static_cast<T *>(cp[2 + s])[i]);
  return x;
}

/// optim_reduce_<name> of ABI 9: stage `stage` overwrites the partials of
/// that level's reductions only.
template <typename Spec, typename T>
void reduceKernel(void *const *ptrs, const int64_t *lengths, const int64_t *,
                  int64_t begin, int64_t end, const double *hypers,
                  int64_t step, const void *const *, double *partials,
                  const double *reduced, int64_t stage, const uint64_t *) {
  static const std::vector<ReductionSpec> red = Spec::info().reductions;
  size_t R = red.size();
  record(stage, begin, end, reduced);
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * (2 + Spec::S);
    const double *chunkReduced = reduced ? reduced + c * R : nullptr;
    for (size_t r = 0; r < R; ++r) {
      if (int64_t(red[r].level) != stage)
        continue;
      double acc = identity(red[r].kind);
      for (int64_t i = 0; i < lengths[c]; ++i)
        acc = accumulate(
            red[r].kind, acc,
            Spec::value(r, load<Spec, T>(cp, i), hypers, step, chunkReduced));
      partials[c * R + r] = acc;
    }
  }
}

template <typename Spec, typename T>
void ruleKernel(void *const *ptrs, const int64_t *lengths, const int64_t *,
                int64_t begin, int64_t end, const double *hypers, int64_t step,
                const void *const *, const double *reduced, const uint64_t *) {
  static const size_t R = Spec::info().reductions.size();
  record(-1, begin, end, reduced);
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
  return Rule(info, reduceKernel<Spec, T>, ruleKernel<Spec, T>, nullptr);
}

/// Tensors in groups: sizes 0, 1, odd and large, an empty group, and a
/// learning rate per group where the rule has one.
const std::vector<std::vector<int64_t>> kGroups = {
    {0, 1, 7}, {3, 100003}, {}, {5}};
const double kGroupLr[] = {-1, 0.05, -1, 0.2}; // -1: the default

template <typename T> struct Model {
  std::vector<std::vector<T>> params;
  std::vector<std::vector<std::vector<T>>> grads; // [step][tensor]
  std::vector<size_t> group;
};

template <typename T>
Model<T> makeModel(int steps, unsigned seed, bool integers = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  auto draw = [&] { return integers ? T(std::round(8 * u(rng))) : T(u(rng)); };
  Model<T> m;
  for (size_t gi = 0; gi < kGroups.size(); ++gi)
    for (int64_t n : kGroups[gi]) {
      m.params.emplace_back(n);
      for (T &x : m.params.back())
        x = draw();
      m.group.push_back(gi);
    }
  m.grads.resize(steps);
  for (auto &step : m.grads)
    for (const auto &p : m.params) {
      step.emplace_back(p.size());
      for (T &x : step.back())
        x = draw();
    }
  return m;
}

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

template <typename T> struct Outcome {
  std::vector<std::vector<T>> params;
  std::vector<std::vector<std::vector<T>>> states;
};

template <typename T>
Outcome<T> runOptimizer(const Rule &rule, const Model<T> &model,
                        unsigned threads, int64_t chunkSize) {
  const RuleInfo &info = rule.info();
  Outcome<T> out;
  out.params = model.params;
  std::vector<ParamGroup> groups(kGroups.size());
  for (size_t k = 0; k < out.params.size(); ++k)
    groups[model.group[k]].params.emplace_back(out.params[k].data(),
                                               int64_t(out.params[k].size()));
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

/// The same steps, directly: level by level, each reduction over the
/// coordinates of its whole tensor (or of all tensors) in order, reading
/// the values of lower levels; then every update.
template <typename Spec, typename T>
Outcome<T> runReference(const Model<T> &model) {
  RuleInfo info = Spec::info();
  std::vector<std::vector<double>> hypers = groupHypers(info);
  size_t K = model.params.size(), R = info.reductions.size();
  unsigned L = detail::maxReductionLevel(info.reductions);
  Outcome<T> out;
  out.params = model.params;
  for (size_t k = 0; k < K; ++k) {
    out.states.emplace_back();
    for (const StateSpec &s : info.states)
      out.states.back().emplace_back(model.params[k].size(), T(s.init));
  }
  auto coord = [&](size_t k, size_t i, const std::vector<T> &g) {
    Coord x{double(out.params[k][i]), double(g[i]), {0}};
    for (size_t s = 0; s < Spec::S; ++s)
      x.s[s] = double(out.states[k][s][i]);
    return x;
  };
  for (size_t step = 0; step < model.grads.size(); ++step) {
    int64_t t = int64_t(step) + 1;
    const auto &grads = model.grads[step];
    std::vector<std::vector<double>> red(K, std::vector<double>(R, 0.0));
    for (unsigned level = 0; level <= L; ++level)
      for (size_t r = 0; r < R; ++r) {
        if (info.reductions[r].level != level)
          continue;
        ReductionKind kind = info.reductions[r].kind;
        double all = identity(kind);
        size_t allCount = 0;
        std::vector<double> mine(K);
        for (size_t k = 0; k < K; ++k) {
          double acc = identity(kind);
          for (size_t i = 0; i < out.params[k].size(); ++i) {
            double v =
                Spec::value(r, coord(k, i, grads[k]),
                            hypers[model.group[k]].data(), t, red[k].data());
            acc = accumulate(kind, acc, v);
            all = accumulate(kind, all, v);
          }
          allCount += out.params[k].size();
          mine[k] = finish(kind, acc, out.params[k].size());
        }
        for (size_t k = 0; k < K; ++k)
          red[k][r] =
              info.reductions[r].global ? finish(kind, all, allCount) : mine[k];
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
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <typename T> bool sameRun(const Outcome<T> &a, const Outcome<T> &b) {
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
    ASSERT_EQ(a.size(), b.size());
    size_t bad = 0;
    for (size_t i = 0; i < a.size() && bad < 5; ++i)
      if (!(std::fabs(double(a[i]) - double(b[i])) <=
            tol * std::max(1.0, std::fabs(double(b[i])))))
        ADD_FAILURE() << name << "[" << i << "] = " << a[i]
                      << ", the reference has " << b[i] << " (" << ++bad << ")";
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
  Model<T> model = makeModel<T>(/*steps=*/3, /*seed=*/5);
  Rule rule = makeRule<Spec, T>();
  Outcome<T> want = runReference<Spec, T>(model);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  for (int64_t chunkSize : {int64_t(5), int64_t(1), int64_t(32768)}) {
    SCOPED_TRACE("chunkSize " + std::to_string(chunkSize));
    Outcome<T> one = runOptimizer(rule, model, 1, chunkSize);
    expectClose(one, want, tol);
    if (chunkSize == 1) // 100k chunks: thread counts are checked once.
      continue;
    for (unsigned threads : {2u, 3u})
      EXPECT_TRUE(sameRun(runOptimizer(rule, model, threads, chunkSize), one))
          << threads << " threads";
  }
}

TEST(NestedReductions, TwoStagesAgainstADirectComputation) {
  checkRule<Standardize, float>();
  checkRule<Standardize, double>();
}

TEST(NestedReductions, ThreeStagesWithStateAndGlobalsAtLevelsOneAndTwo) {
  checkRule<Deep, float>();
  checkRule<Deep, double>();
}

TEST(NestedReductions, ExactCombinesGiveTheSameBitsForEveryChunking) {
  Model<double> model = makeModel<double>(3, 17, /*integers=*/true);
  Rule rule = makeRule<Exact, double>();
  Outcome<double> first = runOptimizer(rule, model, 1, 5);
  expectClose(first, runReference<Exact, double>(model), 1e-12);
  for (int64_t chunkSize : {1, 2, 3, 64, 4096, 1 << 20})
    for (unsigned threads : {1u, 2u, 3u}) {
      if (chunkSize == 1 && threads > 1)
        continue;
      EXPECT_TRUE(sameRun(runOptimizer(rule, model, threads, chunkSize), first))
          << "chunk size " << chunkSize << ", " << threads << " threads";
    }
}

/// Records the kernels' calls of steps of `Deep` on small tensors.
std::vector<Call> recordSteps(unsigned threads, int64_t chunkSize,
                              std::vector<std::vector<double>> &params,
                              int steps, size_t &numChunks) {
  Rule rule = makeRule<Deep, double>();
  std::vector<Param> ps;
  numChunks = 0;
  for (auto &p : params) {
    ps.emplace_back(p.data(), int64_t(p.size()));
    numChunks += (p.size() + size_t(chunkSize) - 1) / size_t(chunkSize);
  }
  OptimizerOptions o;
  o.threads = threads;
  o.chunkSize = chunkSize;
  Optimizer opt(rule, ps, o);
  std::vector<std::vector<double>> grads;
  for (auto &p : params) {
    grads.emplace_back(p.size());
    for (size_t i = 0; i < p.size(); ++i)
      grads.back()[i] = 0.25 * double(i % 7) - 0.5;
  }
  std::vector<Call> calls;
  {
    std::lock_guard<std::mutex> lock(recordMutex);
    recording = &calls;
    recordedSlots = numChunks * Deep::info().reductions.size();
  }
  for (int s = 0; s < steps; ++s) {
    std::vector<Grad> gs;
    for (auto &g : grads)
      gs.emplace_back(g.data(), int64_t(g.size()));
    opt.step(gs);
  }
  std::lock_guard<std::mutex> lock(recordMutex);
  recording = nullptr;
  return calls;
}

TEST(NestedReductions, StagesRunInOrderAndSeeTheLowerLevelsCombined) {
  const std::vector<ReductionSpec> red = Deep::info().reductions;
  const size_t R = red.size();
  for (unsigned threads : {1u, 3u}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    std::vector<std::vector<double>> params = {std::vector<double>(10, 0.5),
                                               {},
                                               std::vector<double>(1, -2.0),
                                               std::vector<double>(7, 1.5)};
    size_t C = 0;
    std::vector<Call> calls = recordSteps(threads, 3, params, 2, C);
    // Per step: stage 0, 1 and 2 over every chunk, then the rule; each
    // pass's calls cover the chunks exactly once.
    size_t at = 0;
    for (int step = 0; step < 2; ++step) {
      std::vector<double> finalReduced;
      std::vector<std::vector<double>> seen; // per stage
      for (int64_t pass : {0, 1, 2, -1}) {
        std::vector<int> covered(C, 0);
        std::vector<double> snapshot;
        while (at < calls.size() && calls[at].stage == pass) {
          for (int64_t c = calls[at].begin; c < calls[at].end; ++c)
            ++covered[size_t(c)];
          ASSERT_FALSE(calls[at].reducedNull) << "pass " << pass;
          snapshot = calls[at].reduced;
          ++at;
        }
        for (size_t c = 0; c < C; ++c)
          ASSERT_EQ(covered[c], 1)
              << "step " << step << ", pass " << pass << ", chunk " << c;
        if (pass >= 0)
          seen.push_back(snapshot);
        else
          finalReduced = snapshot;
      }
      // What stage s read of levels below s is what the rule reads: no
      // later combine touched it.
      for (size_t s = 1; s < seen.size(); ++s)
        for (size_t c = 0; c < C; ++c)
          for (size_t r = 0; r < R; ++r)
            if (red[r].level < s)
              EXPECT_EQ(seen[s][c * R + r], finalReduced[c * R + r])
                  << "stage " << s << " chunk " << c << " slot " << r;
    }
    EXPECT_EQ(at, calls.size()) << "calls after the last step's rule";
  }
}

TEST(NestedReductions, CombiningOneLevelLeavesTheOtherSlots) {
  // Tensors of 2 chunks and 1 chunk; R = 4 with levels 0, 1, 0, 2.
  std::vector<ReductionSpec> red = {
      spec(ReductionKind::Sum, false, 0), spec(ReductionKind::Mean, true, 1),
      spec(ReductionKind::Max, false, 0), spec(ReductionKind::Norm, false, 2)};
  std::vector<size_t> chunkTensor = {0, 0, 1};
  std::vector<int64_t> sizes = {6, 2};
  std::vector<double> partials = {1, 2, 3, 9, 4, 5, 6, 16, 7, 8, -1, 25};
  const double sentinel = -12345.5;
  for (unsigned level : {0u, 1u, 2u, 3u}) {
    std::vector<double> reduced(12, sentinel);
    detail::combineReductions(red, level, chunkTensor, sizes, partials.data(),
                              reduced.data());
    for (size_t c = 0; c < 3; ++c)
      for (size_t r = 0; r < 4; ++r) {
        double got = reduced[c * 4 + r];
        if (red[r].level != level) {
          EXPECT_EQ(got, sentinel) << "level " << level << " slot " << r;
          continue;
        }
        double want = r == 0   ? (c < 2 ? 1 + 4 : 7)
                      : r == 1 ? (2 + 5 + 8) / 8.0
                      : r == 2 ? (c < 2 ? 6 : -1)
                               : (c < 2 ? std::sqrt(9.0 + 16) : 5.0);
        EXPECT_EQ(got, want) << "chunk " << c << " slot " << r;
      }
  }
  EXPECT_EQ(detail::maxReductionLevel(red), 2u);
  EXPECT_EQ(detail::maxReductionLevel({}), 0u);
  // All levels at once, as before version 9.
  std::vector<double> all(12, sentinel), byLevel(12, sentinel);
  detail::combineReductions(red, chunkTensor, sizes, partials.data(),
                            all.data());
  for (unsigned level : {0u, 1u, 2u})
    detail::combineReductions(red, level, chunkTensor, sizes, partials.data(),
                              byLevel.data());
  EXPECT_TRUE(bitIdentical(all, byLevel));
}

TEST(NestedReductions, StagesOutsideTheRuleWriteNothing) {
  // The hand-written kernels follow the ABI: stage L + 1 (or -1) writes no
  // partial. (The runtime never calls them; compiled kernels are checked
  // by the compiler's tests.)
  std::vector<double> p(4, 1.0), g(4, 2.0), m(4, 0.0);
  void *ptrs[3] = {p.data(), g.data(), m.data()};
  int64_t lengths[1] = {4}, strides[1] = {4};
  double hypers[2] = {0.01, 0.9};
  std::vector<double> partials(6, -7.0), reduced(6, 1.0);
  for (int64_t stage : {int64_t(-1), int64_t(3), int64_t(99)}) {
    reduceKernel<Deep, double>(ptrs, lengths, strides, 0, 1, hypers, 1, nullptr,
                               partials.data(), reduced.data(), stage, nullptr);
    for (double x : partials)
      EXPECT_EQ(x, -7.0) << "stage " << stage;
  }
}

TEST(NestedReductions, DescriptorsParseExactlyTheContractsSyntax) {
  auto parse = [](const std::string &text) {
    std::vector<ReductionSpec> out;
    std::string why = detail::parseReductionsDescriptor(text, out);
    return why.empty() ? "ok " + reductionsDescriptor(out) : why;
  };
  // Accepted, and printed back the same.
  for (const char *text :
       {"", "norm", "norm,mean:1,sum@global:2", "mean,mean:1",
        "max@global,min:1,sum@global:1,mean:2,norm:3",
        "sum:1,mean,norm:2,max:3,min:4,sum:5,sum:6,sum:7,sum:8,sum:9,sum:10"})
    EXPECT_EQ(parse(text), std::string("ok ") + text);
  std::vector<ReductionSpec> out;
  ASSERT_EQ(detail::parseReductionsDescriptor("norm,sum@global:1", out), "");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].kind, ReductionKind::Sum);
  EXPECT_TRUE(out[1].global);
  EXPECT_EQ(out[1].level, 1u);
  EXPECT_EQ(out[0].level, 0u);
  // 65535 is the largest level (with every level below it present).
  std::string deep = "sum";
  for (int level = 1; level <= 65535; ++level)
    deep += ",sum:" + std::to_string(level);
  EXPECT_EQ(parse(deep).substr(0, 3), "ok ");

  const std::string syntax =
      " (an entry is a kind, sum, mean, norm, max or min, then \"@global\" "
      "for a global one or \"@row\" / \"@col\" for a row or column one, "
      "then \":<level>\" for a level 1..65535 in decimal without sign or "
      "leading zeros)";
  auto level = [&](const std::string &text, size_t index,
                   const std::string &entry, const std::string &lvl) {
    EXPECT_EQ(parse(text), "entry " + std::to_string(index) + " '" + entry +
                               "' has a malformed level '" + lvl + "'" + syntax)
        << text;
  };
  level("norm,mean:0", 1, "mean:0", "0");
  level("norm:", 0, "norm:", "");
  level("norm,mean:-1", 1, "mean:-1", "-1");
  level("norm,mean:+1", 1, "mean:+1", "+1");
  level("norm,mean:01", 1, "mean:01", "01");
  level("norm,mean:x", 1, "mean:x", "x");
  level("norm,mean:1:2", 1, "mean:1:2", "1:2");
  level("norm,mean: 1", 1, "mean: 1", " 1");
  level("norm,mean:1 ", 1, "mean:1 ", "1 ");
  level("norm,sum@global:99999999999", 1, "sum@global:99999999999",
        "99999999999");
  level("norm,sum:65536", 1, "sum:65536", "65536");
  level("norm,sum:1e3", 1, "sum:1e3", "1e3");
  auto entry = [&](const std::string &text, size_t index,
                   const std::string &e) {
    EXPECT_EQ(parse(text), "entry " + std::to_string(index) + " '" + e +
                               "' is not a reduction" + syntax)
        << text;
  };
  entry("norm,", 1, "");
  entry(",norm", 0, "");
  entry("norm,,sum", 1, "");
  entry("median:1", 0, "median:1");
  entry("norm@local", 0, "norm@local");
  entry("@global", 0, "@global");
  entry("norm@global@global", 0, "norm@global@global");
  entry("Norm", 0, "Norm");
  entry("norm :1", 0, "norm :1");
  level("norm:1@global", 0, "norm:1@global", "1@global");
  // Levels with a gap: not a compiler's.
  EXPECT_EQ(parse("norm:2"),
            "reduction 0 ('norm:2') has level 2, but no reduction has level 1");
  EXPECT_EQ(parse("mean:1"),
            "reduction 0 ('mean:1') has level 1, but no reduction has level 0");
  EXPECT_EQ(parse("norm,mean:1,sum@global:3"),
            "reduction 2 ('sum@global:3') has level 3, but no reduction has "
            "level 2");
  // The lower level may come later in body order (slot order is the
  // compiler's); only a missing level is refused.
  EXPECT_EQ(parse("mean:1,norm"), "ok mean:1,norm");
}

TEST(NestedReductions, InconsistentLevelsInARuleInfoAreRefused) {
  std::vector<double> p(4);
  auto message = [&](std::vector<ReductionSpec> red) {
    RuleInfo info = Standardize::info();
    info.dtype = DType::F64;
    info.reductions = std::move(red);
    try {
      Optimizer opt(Rule(info, reduceKernel<Standardize, double>,
                         ruleKernel<Standardize, double>, nullptr),
                    {Param(p.data(), 4)});
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({spec(ReductionKind::Mean, false, 0),
                     spec(ReductionKind::Mean, false, 2),
                     spec(ReductionKind::Norm, true, 0)}),
            "optim::Optimizer: rule 'standardize' has reductions of "
            "inconsistent levels: reduction 1 ('mean:2') has level 2, but no "
            "reduction has level 1");
  EXPECT_EQ(message({spec(ReductionKind::Mean, false, 0),
                     spec(ReductionKind::Mean, false, 70000),
                     spec(ReductionKind::Norm, true, 0)}),
            "optim::Optimizer: rule 'standardize' has reductions of "
            "inconsistent levels: reduction 1 ('mean:70000') has level "
            "70000, more than 65535");
  EXPECT_EQ(message(Standardize::info().reductions), "no error");
}

TEST(NestedReductions, TrajectoriesNeedTheirReverseMode) {
  // Nested reductions have a reverse mode (a pass of the second VJP kernel
  // per level: TrajectoryReductionsTest.cpp in test/e2e checks it); a rule
  // without the VJP kernels is refused, naming them.
  auto vjp = [](void *const *, const int64_t *, const int64_t *, int64_t,
                int64_t, const double *, int64_t, const void *const *, void *,
                const double *, const uint64_t *) {};
  RuleInfo info = Standardize::info();
  info.dtype = DType::F64;
  Rule with(info, reduceKernel<Standardize, double>,
            ruleKernel<Standardize, double>, +vjp, +vjp, nullptr);
  EXPECT_NO_THROW(Trajectory(with, {4, 3}));
  Rule without(info, reduceKernel<Standardize, double>,
               ruleKernel<Standardize, double>, nullptr);
  try {
    Trajectory traj(without, {4, 3});
    ADD_FAILURE() << "a trajectory without a reverse mode";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "optim::Trajectory: rule 'standardize' has no reverse mode (its "
              "reductions need optim_vjp_reduced_kernel_standardize "
              "and optim_vjp_reductions_kernel_standardize); compile it with "
              "CompileOptions::vjp");
  }
}

TEST(NestedReductions, TheCApiGivesEachLevel) {
  Rule rule = makeRule<Deep, double>();
  auto handle = std::make_unique<optim_rule>();
  handle->rule = rule;
  capi::trackHandle(handle.get(), capi::HandleKind::Rule);
  optim_rule *h = handle.release();

  size_t n = 0;
  ASSERT_EQ(optim_rule_num_reductions(h, &n), OPTIM_OK);
  ASSERT_EQ(n, 6u);
  const unsigned want[] = {0, 1, 2, 0, 1, 2};
  for (size_t r = 0; r < n; ++r) {
    unsigned level = 99;
    ASSERT_EQ(optim_rule_reduction_level(h, r, &level), OPTIM_OK);
    EXPECT_EQ(level, want[r]) << r;
  }
  optim_reduction_info info{};
  ASSERT_EQ(optim_rule_reduction(h, 1, &info), OPTIM_OK);
  EXPECT_STREQ(info.kind, "norm");
  EXPECT_EQ(info.global, 1);
  unsigned level = 99;
  EXPECT_EQ(optim_rule_reduction_level(h, 6, &level), OPTIM_ERROR_NOT_FOUND);
  EXPECT_STREQ(optim_last_error(),
               "optim_rule_reduction_level: index 6 is out of range: rule "
               "'deep' has 6 reductions");
  EXPECT_EQ(level, 99u);
  EXPECT_EQ(optim_rule_reduction_level(h, size_t(-1), &level),
            OPTIM_ERROR_NOT_FOUND);
  EXPECT_EQ(optim_rule_reduction_level(h, 0, nullptr),
            OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(optim_last_error()).find("optim_rule_reduction_level"),
            std::string::npos)
      << optim_last_error();
  EXPECT_EQ(optim_rule_reduction_level(nullptr, 0, &level),
            OPTIM_ERROR_INVALID_ARGUMENT);

  // Steps through the C API equal optim::Optimizer's.
  Model<double> model = makeModel<double>(2, 3);
  test::expectCApiStepsMatch(h, rule, model.params, model.grads, 2, 7);
}

// ---- Manifests and libraries ----------------------------------------------

Manifest centreManifest() {
  Manifest m;
  m.info.name = "centre";
  m.info.dtype = DType::F64;
  m.info.hypers = {{"lr", 0.5, false}, {"eps", 1e-8, false}};
  m.info.reductions = {spec(ReductionKind::Mean, false, 0),
                       spec(ReductionKind::Mean, false, 1)};
  m.symbol = "optim_rule_centre";
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

std::string readError(const std::string &text) {
  try {
    readManifest(text, "centre.manifest.json");
  } catch (const Error &e) {
    return e.what();
  }
  return "no error";
}

TEST(NestedReductionManifest, LevelsRoundTripAndAreAbsentForZero) {
  Manifest m = centreManifest();
  m.info.reductions = {
      spec(ReductionKind::Norm, false, 0), spec(ReductionKind::Mean, false, 1),
      spec(ReductionKind::Sum, true, 2), spec(ReductionKind::Max, true, 1)};
  std::string text = writeManifest(m);
  json doc = json::parse(text);
  EXPECT_FALSE(doc["reductions"][0].contains("level"));
  EXPECT_EQ(doc["reductions"][1]["level"], 1);
  EXPECT_EQ(doc["reductions"][2]["level"], 2);
  EXPECT_EQ(doc["reductions"][2]["global"], true);
  Manifest back = readManifest(text, "m.json");
  EXPECT_EQ(reductionsDescriptor(back.info.reductions),
            "norm,mean:1,sum@global:2,max@global:1");
  EXPECT_EQ(writeManifest(back), text);
  // A manifest of a rule without nested reductions reads as before.
  m.info.reductions = {spec(ReductionKind::Norm, false, 0)};
  EXPECT_EQ(json::parse(writeManifest(m))["reductions"][0].size(), 2u);
}

TEST(NestedReductionManifest, MalformedLevelsAndGapsNameTheEntry) {
  json doc = json::parse(writeManifest(centreManifest()));
  auto withLevel = [&](json level) {
    json d = doc;
    d["reductions"][1]["level"] = std::move(level);
    return readError(d.dump());
  };
  const std::string prefix =
      "optim: manifest 'centre.manifest.json': reduction 1 ('mean') has "
      "level ";
  const std::string rest =
      "; a level is an integer 1..65535, absent for level 0";
  EXPECT_EQ(withLevel(0), prefix + "0" + rest);
  EXPECT_EQ(withLevel(-1), prefix + "-1" + rest);
  EXPECT_EQ(withLevel(65536), prefix + "65536" + rest);
  EXPECT_EQ(withLevel(99999999999), prefix + "99999999999" + rest);
  EXPECT_EQ(withLevel(json::parse("18446744073709551615")),
            prefix + "18446744073709551615" + rest);
  EXPECT_EQ(withLevel("1"), prefix + "\"1\"" + rest);
  EXPECT_EQ(withLevel(1.0), prefix + "1.0" + rest);
  EXPECT_EQ(withLevel(true), prefix + "true" + rest);
  EXPECT_EQ(withLevel(nullptr), prefix + "null" + rest);
  EXPECT_EQ(withLevel(1), "no error");
  EXPECT_EQ(withLevel(65535),
            "optim: manifest 'centre.manifest.json': reduction 1 "
            "('mean:65535') has level 65535, but no reduction has level "
            "65534 (not a manifest of optimc)");
  // "norm:2" alone, "mean:1" with no level 0.
  json d = doc;
  d["reductions"] =
      json::parse(R"([{"kind": "norm", "global": false, "level": 2}])");
  EXPECT_EQ(readError(d.dump()),
            "optim: manifest 'centre.manifest.json': reduction 0 ('norm:2') "
            "has level 2, but no reduction has level 1 (not a manifest of "
            "optimc)");
  d["reductions"] =
      json::parse(R"([{"kind": "mean", "global": true, "level": 1}])");
  EXPECT_EQ(readError(d.dump()),
            "optim: manifest 'centre.manifest.json': reduction 0 "
            "('mean@global:1') has level 1, but no reduction has level 0 "
            "(not a manifest of optimc)");
}

TEST(NestedReductionManifest, ManifestsOfABI8AreRefused) {
  // Their reduce kernels take no `reduced` and `stage`.
  json doc = json::parse(writeManifest(centreManifest()));
  doc["abi_version"] = 8;
  EXPECT_EQ(readError(doc.dump()),
            "optim: manifest 'centre.manifest.json': compiled for kernel ABI "
            "8, this runtime implements " +
                std::to_string(OPTIM_KERNEL_ABI_VERSION) + "; recompile it");
}

class NestedLibrary : public ::testing::Test {
protected:
  void SetUp() override {
    dir = ::testing::TempDir() + "optim-nested-" + std::to_string(::getpid());
    ASSERT_EQ(system(("mkdir -p '" + dir + "'").c_str()), 0);
  }
  void TearDown() override { system(("rm -rf '" + dir + "'").c_str()); }
  std::string writeManifestFile(Manifest m) {
    std::ifstream in(OPTIM_REDUCTION_KERNELS, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    m.artifactSha256 = detail::sha256Hex(bytes.str());
    std::string path = dir + "/" + m.info.name + ".manifest.json";
    writeFileAtomically(path, writeManifest(m));
    return path;
  }
  std::string loadError(const Manifest &m) {
    try {
      loadRule(OPTIM_REDUCTION_KERNELS, writeManifestFile(m));
    } catch (const Error &e) {
      return e.what();
    }
    return "no error";
  }
  std::string dir;
};

TEST_F(NestedLibrary, LoadsATwoStageRuleAndSteps) {
  Rule rule =
      loadRule(OPTIM_REDUCTION_KERNELS, writeManifestFile(centreManifest()));
  ASSERT_TRUE(rule.reduceKernel() && rule.reducedKernel());
  EXPECT_EQ(reductionsDescriptor(rule.info().reductions), "mean,mean:1");
  // Tensors of 5 (two chunks), 4 and 1 coordinates: each standardized by
  // its own mean and standard deviation.
  std::vector<double> a = {1, 2, 3, 4, 5}, b = {0, 0, 1, 1}, c = {3};
  std::vector<double> ga = {1, -1, 2, 0, 3}, gb = {2, 2, 2, 6}, gc = {7};
  for (unsigned threads : {1u, 2u}) {
    std::vector<double> pa = a, pb = b, pc = c;
    OptimizerOptions o;
    o.chunkSize = 3;
    o.threads = threads;
    Optimizer opt(
        rule, {Param(pa.data(), 5), Param(pb.data(), 4), Param(pc.data(), 1)},
        o);
    opt.step({Grad(ga.data(), 5), Grad(gb.data(), 4), Grad(gc.data(), 1)});
    auto expect = [](const std::vector<double> &p0,
                     const std::vector<double> &g,
                     const std::vector<double> &got) {
      double m = 0, v = 0;
      for (double x : g)
        m += x;
      m /= double(g.size());
      for (double x : g)
        v += (x - m) * (x - m);
      v /= double(g.size());
      for (size_t i = 0; i < g.size(); ++i)
        EXPECT_NEAR(got[i], p0[i] - 0.5 * (g[i] - m) / (std::sqrt(v) + 1e-8),
                    1e-12)
            << i;
    };
    expect(a, ga, pa);
    expect(b, gb, pb);
    expect(c, gc, pc);
  }
}

TEST_F(NestedLibrary, ADisagreementOnLevelsIsRefused) {
  Manifest m = centreManifest();
  m.info.reductions[1].level = 0;
  std::string why = loadError(m);
  EXPECT_NE(why.find("lists the tensor reductions 'mean,mean' but the kernels "
                     "of '" OPTIM_REDUCTION_KERNELS
                     "' were compiled for 'mean,mean:1' (does the manifest "
                     "belong to it?)"),
            std::string::npos)
      << why;
  m.info.reductions = {spec(ReductionKind::Mean, false, 0),
                       spec(ReductionKind::Mean, false, 1),
                       spec(ReductionKind::Mean, false, 2)};
  why = loadError(m);
  EXPECT_NE(why.find("lists the tensor reductions 'mean,mean:1,mean:2' but "
                     "the kernels"),
            std::string::npos)
      << why;
}

TEST_F(NestedLibrary, MalformedDescriptorsInALibraryNameTheEntry) {
  Manifest m = centreManifest();
  m.info.name = "crooked";
  m.symbol = "optim_rule_crooked";
  EXPECT_EQ(loadError(m),
            "optim: '" OPTIM_REDUCTION_KERNELS
            "' has a malformed 'optim_reductions_crooked' (\"mean,mean:01\"): "
            "entry 1 'mean:01' has a malformed level '01' (an entry is a "
            "kind, sum, mean, norm, max or min, then \"@global\" for a global "
            "one or \"@row\" / \"@col\" for a row or column one, then "
            "\":<level>\" for a level 1..65535 in decimal without sign or "
            "leading zeros); was it compiled by optimc?");
  m.info.name = "gapped";
  m.symbol = "optim_rule_gapped";
  EXPECT_EQ(loadError(m),
            "optim: '" OPTIM_REDUCTION_KERNELS
            "' has a malformed 'optim_reductions_gapped' (\"mean:1,mean:2\"): "
            "reduction 0 ('mean:1') has level 1, but no reduction has level "
            "0; was it compiled by optimc?");
}

} // namespace
