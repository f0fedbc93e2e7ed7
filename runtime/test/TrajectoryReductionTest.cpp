//===- TrajectoryReductionTest.cpp - reverse mode of tensor reductions ----===//
//
// optim::Trajectory with rules that have tensor reductions, run by
// hand-written kernels that implement the ABI as compiled ones do
// (KernelABI.h: the two forward passes, and the two VJP kernels around the
// runtime's combine). The gradients of the unrolled loss with respect to the
// hyperparameters, θ0 and the initial state are checked against central
// finite differences, with several tensors of awkward sizes (0 and 1
// included) and chunks that split them; exactly against hand-derived values
// where ties share a max or min, and where a mean divides by its tensor's
// coordinates; bit for bit across 1, 2 and 3 threads. Also the combine of
// the cotangents on its own, the tape's size, and the rules refused.
//
//===----------------------------------------------------------------------===//

#include "../lib/Reductions.h"
#include "optim/Trajectory.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

using namespace optim;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// One coordinate as a rule body sees it (p, g, states), in double; also
/// the cotangents of p and the states.
struct Coord {
  double p = 0, g = 0, s[1] = {0};
};

// The rules. Each gives the per-coordinate operand x_r of reduction r, the
// update with the reduced values rho, and, derived by hand, the reverse of
// both: updateVJP with rho held constant (bar holds dL/dp', dL/ds' on entry
// and dL/dp, dL/ds on return; it adds to dL/dhyper and dL/drho) and
// valueVJP, which adds xbar * dx_r/d(p, s, hyper). The kernels below wrap
// them in the ABI's chunk tables and partials.

/// LAMB-like trust ratio: m' = beta m + g,
/// p' = p - lr * m' * norm(p) / (norm(beta m + g) + eps), norms per tensor.
/// The second operand goes through a state and a hyperparameter.
struct Trust {
  static constexpr size_t S = 1, H = 3, R = 2;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "trust";
    i.hypers = {{"lr", 0.05, false}, {"beta", 0.8, false}, {"eps", 0.1, false}};
    i.states = {{"m", 1, 0.0}};
    i.reductions = {{ReductionKind::Norm, false},
                    {ReductionKind::Norm, false}};
    return i;
  }
  static double value(size_t r, const Coord &x, const double *h) {
    return r == 0 ? x.p : h[1] * x.s[0] + x.g;
  }
  static void update(Coord &x, const double *h, const double *rho) {
    double m = h[1] * x.s[0] + x.g;
    x.s[0] = m;
    x.p -= h[0] * m * (rho[0] / (rho[1] + h[2]));
  }
  static void updateVJP(const Coord &x, const double *h, const double *rho,
                        Coord &bar, double *hbar, double *rhobar) {
    double m = h[1] * x.s[0] + x.g, den = rho[1] + h[2], q = rho[0] / den;
    double dm = bar.s[0] - h[0] * q * bar.p;
    hbar[0] += -q * m * bar.p;
    hbar[1] += dm * x.s[0];
    hbar[2] += bar.p * h[0] * m * rho[0] / (den * den);
    rhobar[0] += -bar.p * h[0] * m / den;
    rhobar[1] += bar.p * h[0] * m * rho[0] / (den * den);
    bar.s[0] = dm * h[1];
  }
  static void valueVJP(size_t r, const Coord &x, const double *h, double xbar,
                       Coord &bar, double *hbar) {
    if (r == 0) {
      bar.p += xbar;
      return;
    }
    bar.s[0] += xbar * h[1];
    hbar[1] += xbar * x.s[0];
  }
};

/// A max per tensor and a global sum, with a mean of each kind and a global
/// min: p' = p - lr * (g max(p g) + c p sum@global(p p) + mean(c g)
///                     + g g min@global(p) + mean@global(p)).
struct Peak {
  static constexpr size_t S = 0, H = 2, R = 5;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "peak";
    i.hypers = {{"lr", 0.05, false}, {"c", 0.1, false}};
    i.reductions = {{ReductionKind::Max, false},
                    {ReductionKind::Sum, true},
                    {ReductionKind::Mean, false},
                    {ReductionKind::Min, true},
                    {ReductionKind::Mean, true}};
    return i;
  }
  static double value(size_t r, const Coord &x, const double *h) {
    switch (r) {
    case 0:
      return x.p * x.g;
    case 1:
      return x.p * x.p;
    case 2:
      return h[1] * x.g;
    default:
      return x.p;
    }
  }
  static double inner(const Coord &x, const double *h, const double *rho) {
    return x.g * rho[0] + h[1] * x.p * rho[1] + rho[2] +
           x.g * x.g * rho[3] + rho[4];
  }
  static void update(Coord &x, const double *h, const double *rho) {
    x.p -= h[0] * inner(x, h, rho);
  }
  static void updateVJP(const Coord &x, const double *h, const double *rho,
                        Coord &bar, double *hbar, double *rhobar) {
    double pb = bar.p;
    hbar[0] += -inner(x, h, rho) * pb;
    hbar[1] += -h[0] * x.p * rho[1] * pb;
    rhobar[0] += -h[0] * x.g * pb;
    rhobar[1] += -h[0] * h[1] * x.p * pb;
    rhobar[2] += -h[0] * pb;
    rhobar[3] += -h[0] * x.g * x.g * pb;
    rhobar[4] += -h[0] * pb;
    bar.p = pb * (1 - h[0] * h[1] * rho[1]);
  }
  static void valueVJP(size_t r, const Coord &x, const double *h, double xbar,
                       Coord &bar, double *hbar) {
    switch (r) {
    case 0:
      bar.p += xbar * x.g;
      break;
    case 1:
      bar.p += 2 * x.p * xbar;
      break;
    case 2:
      hbar[1] += xbar * x.g;
      break;
    default:
      bar.p += xbar;
    }
  }
};

/// p' = p - lr * (max(p) + min@global(p) + mean(p) + mean@global(p)): its
/// gradient is simple enough to write down, ties and all.
struct Exact {
  static constexpr size_t S = 0, H = 1, R = 4;
  static RuleInfo info() {
    RuleInfo i;
    i.name = "exact";
    i.hypers = {{"lr", 0.5, false}};
    i.reductions = {{ReductionKind::Max, false},
                    {ReductionKind::Min, true},
                    {ReductionKind::Mean, false},
                    {ReductionKind::Mean, true}};
    return i;
  }
  static double value(size_t, const Coord &x, const double *) { return x.p; }
  static void update(Coord &x, const double *h, const double *rho) {
    x.p -= h[0] * (rho[0] + rho[1] + rho[2] + rho[3]);
  }
  static void updateVJP(const Coord &, const double *h, const double *rho,
                        Coord &bar, double *hbar, double *rhobar) {
    hbar[0] += -(rho[0] + rho[1] + rho[2] + rho[3]) * bar.p;
    for (size_t r = 0; r < R; ++r)
      rhobar[r] += -h[0] * bar.p;
  }
  static void valueVJP(size_t, const Coord &, const double *, double xbar,
                       Coord &bar, double *) {
    bar.p += xbar;
  }
};

// The kernels: the ABI's plumbing around a rule, in the rule's element type
// T, each chunk's values accumulated in a fixed order.

template <typename Spec> const std::vector<ReductionSpec> &reductionsOf() {
  static const std::vector<ReductionSpec> red = Spec::info().reductions;
  return red;
}

bool extremum(ReductionKind k) {
  return k == ReductionKind::Max || k == ReductionKind::Min;
}

template <typename Spec, typename T>
Coord load(void *const *cp, int64_t i) {
  Coord x;
  x.p = double(static_cast<const T *>(cp[0])[i]);
  x.g = double(static_cast<const T *>(cp[1])[i]);
  for (size_t s = 0; s < Spec::S; ++s)
    x.s[s] = double(static_cast<const T *>(cp[2 + s])[i]);
  return x;
}

/// optim_reduce_<name>.
template <typename Spec, typename T>
void reduceKernel(void *const *ptrs, const int64_t *lengths, const int64_t *,
                  int64_t begin, int64_t end, const double *hypers, int64_t,
                  const void *const *, double *partials, const double *,
                  int64_t stage, const uint64_t *) {
  const auto &red = reductionsOf<Spec>();
  if (stage != 0) // Level 0 only: later stages write nothing.
    return;
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * (2 + Spec::S);
    for (size_t r = 0; r < Spec::R; ++r) {
      ReductionKind k = red[r].kind;
      double acc = k == ReductionKind::Max   ? -kInf
                   : k == ReductionKind::Min ? kInf
                                             : 0.0;
      for (int64_t i = 0; i < lengths[c]; ++i) {
        double v = Spec::value(r, load<Spec, T>(cp, i), hypers);
        acc = k == ReductionKind::Max    ? std::max(acc, v)
              : k == ReductionKind::Min  ? std::min(acc, v)
              : k == ReductionKind::Norm ? acc + v * v
                                         : acc + v;
      }
      partials[c * Spec::R + r] = acc;
    }
  }
}

/// optim_rule_<name> of a rule with reductions.
template <typename Spec, typename T>
void ruleKernel(void *const *ptrs, const int64_t *lengths, const int64_t *,
                int64_t begin, int64_t end, const double *hypers, int64_t,
                const void *const *, const double *reduced, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * (2 + Spec::S);
    for (int64_t i = 0; i < lengths[c]; ++i) {
      Coord x = load<Spec, T>(cp, i);
      Spec::update(x, hypers, reduced + c * Spec::R);
      static_cast<T *>(cp[0])[i] = T(x.p);
      for (size_t s = 0; s < Spec::S; ++s)
        static_cast<T *>(cp[2 + s])[i] = T(x.s[s]);
    }
  }
}

/// The cotangents of a VJP chunk: p then the states, after p, g, states.
template <typename Spec, typename T>
Coord loadBar(void *const *cp, int64_t i) {
  Coord b;
  b.p = double(static_cast<T *>(cp[2 + Spec::S])[i]);
  for (size_t s = 0; s < Spec::S; ++s)
    b.s[s] = double(static_cast<T *>(cp[3 + Spec::S + s])[i]);
  return b;
}
template <typename Spec, typename T>
void storeBar(void *const *cp, int64_t i, const Coord &b) {
  static_cast<T *>(cp[2 + Spec::S])[i] = T(b.p);
  for (size_t s = 0; s < Spec::S; ++s)
    static_cast<T *>(cp[3 + Spec::S + s])[i] = T(b.s[s]);
}

/// optim_vjp_reduced_kernel_<name>: P1 = H + 2R partials per chunk.
template <typename Spec, typename T>
void reducedVJPKernel(void *const *ptrs, const int64_t *lengths,
                      const int64_t *, int64_t begin, int64_t end,
                      const double *hypers, int64_t, const void *const *,
                      void *partials, const double *rho, const uint64_t *) {
  const auto &red = reductionsOf<Spec>();
  constexpr size_t P1 = Spec::H + 2 * Spec::R;
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * (3 + 2 * Spec::S);
    const double *cr = rho + c * Spec::R;
    double sums[P1] = {};
    for (int64_t i = 0; i < lengths[c]; ++i) {
      Coord x = load<Spec, T>(cp, i), bar = loadBar<Spec, T>(cp, i);
      Spec::updateVJP(x, hypers, cr, bar, sums, sums + Spec::H);
      storeBar<Spec, T>(cp, i, bar);
      for (size_t r = 0; r < Spec::R; ++r)
        if (extremum(red[r].kind) && Spec::value(r, x, hypers) == cr[r])
          sums[Spec::H + Spec::R + r] += 1;
    }
    for (size_t j = 0; j < P1; ++j)
      static_cast<T *>(partials)[c * P1 + j] = T(sums[j]);
  }
}

/// optim_vjp_reductions_kernel_<name>: P = H + R partials per chunk, the
/// last R (what flows back to the reduced values) 0: every reduction here
/// is of level 0.
template <typename Spec, typename T>
void reductionsVJPKernel(void *const *ptrs, const int64_t *lengths,
                         const int64_t *, int64_t begin, int64_t end,
                         const double *hypers, int64_t, const void *const *,
                         void *partials, const double *ru, const uint64_t *) {
  const auto &red = reductionsOf<Spec>();
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * (3 + 2 * Spec::S);
    const double *rho = ru + c * 2 * Spec::R, *u = rho + Spec::R;
    double sums[Spec::H] = {};
    for (int64_t i = 0; i < lengths[c]; ++i) {
      Coord x = load<Spec, T>(cp, i), bar = loadBar<Spec, T>(cp, i);
      for (size_t r = 0; r < Spec::R; ++r) {
        double xr = Spec::value(r, x, hypers), xbar;
        switch (red[r].kind) {
        case ReductionKind::Sum:
        case ReductionKind::Mean:
          xbar = u[r];
          break;
        case ReductionKind::Norm:
          xbar = u[r] * xr;
          break;
        default:
          xbar = xr == rho[r] ? u[r] : 0.0;
        }
        Spec::valueVJP(r, x, hypers, xbar, bar, sums);
      }
      storeBar<Spec, T>(cp, i, bar);
    }
    constexpr size_t P = Spec::H + Spec::R;
    for (size_t j = 0; j < P; ++j)
      static_cast<T *>(partials)[c * P + j] = j < Spec::H ? T(sums[j]) : T(0);
  }
}

template <typename T> DType dtypeOf() {
  return std::is_same_v<T, float> ? DType::F32 : DType::F64;
}

template <typename Spec, typename T> Rule makeRule() {
  RuleInfo info = Spec::info();
  info.dtype = dtypeOf<T>();
  return Rule(info, reduceKernel<Spec, T>, ruleKernel<Spec, T>,
              reducedVJPKernel<Spec, T>, reductionsVJPKernel<Spec, T>,
              nullptr);
}

/// A few steps from θ0 and s0 with fixed gradients, and the loss
/// L = Σ_k Σ_i w[k][i] · θ_{k+1, i}: what backward differentiates (g is a
/// constant of the backward pass). An empty w[k][i] is a null cotangent.
template <typename T> struct Problem {
  std::vector<int64_t> sizes;
  int64_t chunkSize = 3;
  std::vector<double> hypers;               // In declaration order.
  std::vector<std::vector<T>> theta0;       // [tensor]
  std::vector<std::vector<T>> state0;       // [tensor], the first state
  std::vector<std::vector<std::vector<T>>> grads, w; // [step][tensor]
};

template <typename Spec, typename T>
Problem<T> makeProblem(std::vector<int64_t> sizes, int steps, unsigned seed,
                       int64_t chunkSize) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  auto randoms = [&](int64_t n) {
    std::vector<T> v(n);
    for (T &x : v)
      x = T(u(rng));
    return v;
  };
  Problem<T> pr;
  pr.sizes = sizes;
  pr.chunkSize = chunkSize;
  for (const HyperParam &h : Spec::info().hypers)
    pr.hypers.push_back(h.defaultValue);
  for (int64_t n : sizes) {
    pr.theta0.push_back(randoms(n));
    pr.state0.push_back(randoms(n));
  }
  pr.grads.resize(steps);
  pr.w.resize(steps);
  for (int k = 0; k < steps; ++k)
    for (size_t i = 0; i < sizes.size(); ++i) {
      pr.grads[k].push_back(randoms(sizes[i]));
      // One null cotangent: nothing explicit for that tensor at that step.
      pr.w[k].push_back(k == 1 && i + 1 == sizes.size() ? std::vector<T>()
                                                       : randoms(sizes[i]));
    }
  return pr;
}

/// Copies a vector into the trajectory's memory (nothing for an empty one,
/// whose data() may be null, which memcpy must not see).
template <typename T> void copyIn(void *to, const std::vector<T> &from) {
  if (!from.empty())
    std::memcpy(to, from.data(), from.size() * sizeof(T));
}

/// A trajectory at θ0 and s0 after every step of the problem, and the loss.
template <typename Spec, typename T>
double run(const Problem<T> &pr, Trajectory &traj) {
  const RuleInfo info = Spec::info();
  for (size_t h = 0; h < info.hypers.size(); ++h)
    traj.set(info.hypers[h].name, pr.hypers[h]);
  for (size_t i = 0; i < pr.sizes.size(); ++i) {
    copyIn(traj.param(i), pr.theta0[i]);
    if (Spec::S)
      copyIn(traj.state(i, info.states[0].name), pr.state0[i]);
  }
  double loss = 0;
  for (size_t k = 0; k < pr.grads.size(); ++k) {
    std::vector<const void *> g;
    for (const auto &x : pr.grads[k])
      g.push_back(x.data());
    traj.step(g);
    for (size_t i = 0; i < pr.sizes.size(); ++i) {
      const T *p = static_cast<const T *>(traj.param(i));
      for (size_t j = 0; j < pr.w[k][i].size(); ++j)
        loss += double(pr.w[k][i][j]) * double(p[j]);
    }
  }
  return loss;
}

template <typename T>
std::vector<std::vector<const void *>> cotangents(const Problem<T> &pr) {
  std::vector<std::vector<const void *>> out;
  for (const auto &step : pr.w) {
    out.emplace_back();
    for (const auto &x : step)
      out.back().push_back(x.empty() ? nullptr : x.data());
  }
  return out;
}

template <typename Spec, typename T>
double lossAt(const Rule &rule, const Problem<T> &pr) {
  TrajectoryOptions o;
  o.threads = 1;
  o.chunkSize = pr.chunkSize;
  Trajectory traj(rule, pr.sizes, o);
  return run<Spec>(pr, traj);
}

/// backward() against central differences of the loss, for every
/// hyperparameter, every coordinate of θ0 and of the initial state.
template <typename Spec> void checkAgainstFiniteDifferences(unsigned seed) {
  Rule rule = makeRule<Spec, double>();
  Problem<double> pr =
      makeProblem<Spec, double>({0, 1, 7, 13, 0, 2}, 4, seed, 3);
  TrajectoryOptions o;
  o.threads = 2;
  o.chunkSize = pr.chunkSize;
  Trajectory traj(rule, pr.sizes, o);
  run<Spec>(pr, traj);
  RuleGradient grad = traj.backward(cotangents(pr));

  const double eps = 1e-6;
  auto central = [&](const std::function<void(Problem<double> &, double)> &at) {
    Problem<double> plus = pr, minus = pr;
    at(plus, eps);
    at(minus, -eps);
    return (lossAt<Spec>(rule, plus) - lossAt<Spec>(rule, minus)) / (2 * eps);
  };
  auto near = [](double got, double want) {
    return std::abs(got - want) <= 1e-6 * std::max(1.0, std::abs(want));
  };
  const RuleInfo info = Spec::info();
  ASSERT_EQ(grad.hypers.size(), info.hypers.size());
  for (size_t h = 0; h < info.hypers.size(); ++h) {
    double fd =
        central([&](Problem<double> &p, double d) { p.hypers[h] += d; });
    EXPECT_PRED2(near, grad.hypers[h], fd) << "d/d" << info.hypers[h].name;
    // Not vacuous: every hyperparameter of these rules matters.
    EXPECT_GT(std::abs(fd), 1e-4) << info.hypers[h].name;
  }
  for (size_t i = 0; i < pr.sizes.size(); ++i)
    for (int64_t j = 0; j < pr.sizes[i]; ++j) {
      double fd = central(
          [&](Problem<double> &p, double d) { p.theta0[i][j] += d; });
      EXPECT_PRED2(near,
                   static_cast<const double *>(traj.paramAdjoint(i))[j], fd)
          << "d/dtheta0 of tensor " << i << " coordinate " << j;
      if (!Spec::S)
        continue;
      fd = central([&](Problem<double> &p, double d) { p.state0[i][j] += d; });
      EXPECT_PRED2(near,
                   static_cast<const double *>(traj.stateAdjoint(
                       i, info.states[0].name))[j],
                   fd)
          << "d/dstate0 of tensor " << i << " coordinate " << j;
    }
}

TEST(TrajectoryReductions, NormsThroughAStateAgainstFiniteDifferences) {
  checkAgainstFiniteDifferences<Trust>(1);
}

TEST(TrajectoryReductions, MaxGlobalSumMinAndMeansAgainstFiniteDifferences) {
  checkAgainstFiniteDifferences<Peak>(2);
}

/// Everything a backward pass gives, as bytes.
template <typename T> struct Outcome {
  std::vector<std::vector<T>> theta, adjTheta, adjState;
  RuleGradient grad;
  size_t tapeBytes = 0;
};

template <typename Spec, typename T>
Outcome<T> runBackward(const Problem<T> &pr, unsigned threads) {
  TrajectoryOptions o;
  o.threads = threads;
  o.chunkSize = pr.chunkSize;
  Trajectory traj(makeRule<Spec, T>(), pr.sizes, o);
  run<Spec>(pr, traj);
  Outcome<T> out;
  out.grad = traj.backward(cotangents(pr));
  out.tapeBytes = traj.tapeBytes();
  for (size_t i = 0; i < pr.sizes.size(); ++i) {
    auto copy = [&](const void *data) {
      const T *d = static_cast<const T *>(data);
      return std::vector<T>(d, d + pr.sizes[i]);
    };
    out.theta.push_back(copy(traj.param(i)));
    out.adjTheta.push_back(copy(traj.paramAdjoint(i)));
    if (Spec::S)
      out.adjState.push_back(
          copy(traj.stateAdjoint(i, Spec::info().states[0].name)));
  }
  return out;
}

template <typename T>
void expectSameBits(const Outcome<T> &a, const Outcome<T> &b,
                    const char *what) {
  auto same = [](const auto &x, const auto &y) {
    if (x.size() != y.size())
      return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i].size() != y[i].size() ||
          (!x[i].empty() && std::memcmp(x[i].data(), y[i].data(),
                                        x[i].size() * sizeof(x[i][0])) != 0))
        return false;
    return true;
  };
  EXPECT_TRUE(same(a.theta, b.theta)) << what;
  EXPECT_TRUE(same(a.adjTheta, b.adjTheta)) << what;
  EXPECT_TRUE(same(a.adjState, b.adjState)) << what;
  EXPECT_TRUE(same(a.grad.weights, b.grad.weights)) << what;
  ASSERT_EQ(a.grad.hypers.size(), b.grad.hypers.size());
  EXPECT_EQ(std::memcmp(a.grad.hypers.data(), b.grad.hypers.data(),
                        a.grad.hypers.size() * sizeof(double)),
            0)
      << what;
}

template <typename Spec, typename T> void checkThreads() {
  // Thousands of chunks of odd length, fewer and more chunks than threads
  // in the small tensors.
  Problem<T> pr =
      makeProblem<Spec, T>({0, 1, 1000, 37, 5003, 2}, 3, 7, 61);
  // Peak's step scales p by 1 - lr c Σp²: keep it near 1 at this size.
  if constexpr (std::is_same_v<Spec, Peak>)
    pr.hypers[1] = 1e-4;
  Outcome<T> one = runBackward<Spec>(pr, 1);
  EXPECT_NE(one.grad.hypers[0], 0.0);
  for (unsigned threads : {2u, 3u})
    expectSameBits(one, runBackward<Spec>(pr, threads),
                   threads == 2 ? "2 threads" : "3 threads");
}

TEST(TrajectoryReductions, ThreadCountDoesNotChangeABit) {
  checkThreads<Trust, float>();
  checkThreads<Trust, double>();
  checkThreads<Peak, float>();
  checkThreads<Peak, double>();
}

TEST(TrajectoryReductions, TiesShareTheCotangentAndMeansDivideByTheirTensor) {
  // Tensor 0 attains its max 3 three times, across chunks (size 2); the
  // global min -2 is attained in tensors 0 and 2; tensor 1 is empty.
  // Integer cotangents and lr = 1/2 keep every share exact.
  std::vector<std::vector<double>> theta = {{1, 3, 3, -2, 3}, {}, {-2, 0.5}};
  std::vector<std::vector<double>> w = {{1, 2, 3, 1, 2}, {}, {1, 2}};
  TrajectoryOptions o;
  o.threads = 3;
  o.chunkSize = 2;
  Trajectory traj(makeRule<Exact, double>(), {5, 0, 2}, o);
  for (size_t i = 0; i < theta.size(); ++i)
    copyIn(traj.param(i), theta[i]);
  std::vector<double> g0(5, 0.0), g2(2, 0.0);
  traj.step({g0.data(), nullptr, g2.data()});
  RuleGradient grad = traj.backward({{w[0].data(), nullptr, w[2].data()}});

  const double lr = 0.5;
  // ΣW over tensor 0 is 9, over tensor 2 is 3, over all 12; N is 5, 2, 7.
  const double W[] = {9, 0, 3}, N[] = {5, 0, 2};
  const double maxOf[] = {3, 0, 0.5};
  const size_t ties[] = {3, 0, 1};
  for (size_t i : {size_t(0), size_t(2)}) {
    const double *adj = static_cast<const double *>(traj.paramAdjoint(i));
    for (size_t j = 0; j < theta[i].size(); ++j) {
      double want = w[i][j] - lr * 12 / 7 - lr * W[i] / N[i];
      if (theta[i][j] == maxOf[i])
        want -= lr * W[i] / double(ties[i]);
      if (theta[i][j] == -2)
        want -= lr * 12 / 2;
      EXPECT_DOUBLE_EQ(adj[j], want) << "tensor " << i << " coordinate " << j;
    }
  }
  // dL/dlr = -Σ_i W_i (max_i + min + mean_i + mean).
  double mean0 = (1 + 3 + 3 - 2 + 3) / 5.0, mean2 = (-2 + 0.5) / 2;
  double mean = (1 + 3 + 3 - 2 + 3 - 2 + 0.5) / 7;
  EXPECT_DOUBLE_EQ(grad.hypers[0], -(9 * (3 - 2 + mean0 + mean) +
                                     3 * (0.5 - 2 + mean2 + mean)));
}

TEST(TrajectoryReductions, BackwardAgainAndAfterATruncation) {
  using T = double;
  Problem<T> pr = makeProblem<Trust, T>({5, 0, 9}, 5, 3, 4);
  TrajectoryOptions o;
  o.threads = 2;
  o.chunkSize = pr.chunkSize;
  Rule rule = makeRule<Trust, T>();
  // Three steps, truncated, then the last two (whose records reuse the
  // dropped ones' buffers) ...
  Trajectory traj(rule, pr.sizes, o);
  Problem<T> head = pr, tail = pr;
  head.grads.resize(3);
  head.w.resize(3);
  run<Trust>(head, traj);
  traj.truncate();
  for (size_t i = 0; i < pr.sizes.size(); ++i) {
    const T *p = static_cast<const T *>(traj.param(i));
    const T *m = static_cast<const T *>(traj.state(i, "m"));
    tail.theta0[i].assign(p, p + pr.sizes[i]);
    tail.state0[i].assign(m, m + pr.sizes[i]);
  }
  tail.grads.erase(tail.grads.begin(), tail.grads.begin() + 3);
  tail.w.erase(tail.w.begin(), tail.w.begin() + 3);
  for (size_t k = 0; k < tail.grads.size(); ++k) {
    std::vector<const void *> g;
    for (const auto &x : tail.grads[k])
      g.push_back(x.data());
    traj.step(g);
  }
  EXPECT_EQ(traj.tapeLength(), 2u);
  RuleGradient first = traj.backward(cotangents(tail));
  std::vector<T> adj(static_cast<const T *>(traj.paramAdjoint(2)),
                     static_cast<const T *>(traj.paramAdjoint(2)) + 9);
  // ... give what a fresh trajectory from there gives, and again.
  RuleGradient again = traj.backward(cotangents(tail));
  EXPECT_EQ(first.hypers, again.hypers);
  Outcome<T> fresh = runBackward<Trust>(tail, 2);
  EXPECT_EQ(first.hypers, fresh.grad.hypers);
  EXPECT_EQ(adj, fresh.adjTheta[2]);
}

TEST(TrajectoryReductions, TapeBytesCountTheReducedValues) {
  // Per step: θ and g (8 bytes each per coordinate), the state m, and R = 2
  // doubles per chunk (21 coordinates in chunks of 4: 2 + 0 + 4 chunks).
  Problem<double> pr = makeProblem<Trust, double>({5, 0, 16}, 3, 4, 4);
  Outcome<double> out = runBackward<Trust>(pr, 1);
  EXPECT_EQ(out.tapeBytes, 3u * (3 * 21 * 8 + 6 * 2 * 8));
}

TEST(TrajectoryReductions, CombineCotangents) {
  // Tensors 0 (3 chunks, 10 coordinates), 1 (empty: no chunk), 2 (2
  // chunks, 4 coordinates), 3 (1 chunk, 1 coordinate). Each chunk's
  // partials: H + W = 2 values the combine ignores, R sums, R tie counts.
  std::vector<size_t> chunkTensor = {0, 0, 0, 2, 2, 3};
  std::vector<int64_t> sizes = {10, 0, 4, 1};
  std::vector<ReductionSpec> red = {
      {ReductionKind::Sum, false},  {ReductionKind::Mean, false},
      {ReductionKind::Norm, false}, {ReductionKind::Max, true},
      {ReductionKind::Min, false},  {ReductionKind::Mean, true}};
  const size_t R = red.size(), P1 = 2 + 2 * R;
  // rho of each reduction, per tensor (as the forward combine gave them);
  // tensor 3's norm is 0.
  const double rhoOf[4][6] = {{6, 0.6, 4, 7, -1, 1.5},
                              {0, 0, 0, 0, 0, 0},
                              {9, 2.25, 2, 7, 9, 1.5},
                              {6, 6, 0, 7, 0, 1.5}};
  const double d[6] = {1, 2, 3, 4, 5, 6};
  const double n[6] = {1, 0, 2, 1, 1, 0};
  std::vector<double> reduced(6 * R);
  for (size_t c = 0; c < 6; ++c)
    for (size_t r = 0; r < R; ++r)
      reduced[c * R + r] = rhoOf[chunkTensor[c]][r];
  auto check = [&](auto zero) {
    using T = decltype(zero);
    std::vector<T> partials(6 * P1, T(-99));
    for (size_t c = 0; c < 6; ++c)
      for (size_t r = 0; r < R; ++r) {
        partials[c * P1 + 2 + r] = T(d[c] * double(r + 1));
        partials[c * P1 + 2 + R + r] = extremum(red[r].kind) ? T(n[c]) : T(0);
      }
    std::vector<double> ru(6 * 2 * R, -7);
    detail::combineReductionCotangents(red, chunkTensor, sizes,
                                       reduced.data(), dtypeOf<T>(),
                                       partials.data(), P1, ru.data());
    // D_r per tensor: (1 + 2 + 3)(r + 1), (4 + 5)(r + 1), 6(r + 1); over
    // all chunks 21(r + 1). Ties: 3, 2 and 0 per tensor, 5 in all.
    const double want[4][6] = {
        {6, 12 / 10.0, 18 / 4.0, 84 / 5.0, 30 / 3.0, 126 / 15.0},
        {0, 0, 0, 0, 0, 0},
        {9, 18 / 4.0, 27 / 2.0, 84 / 5.0, 45 / 2.0, 126 / 15.0},
        // The norm at 0 and a min without a tie give 0.
        {6, 12 / 1.0, 0, 84 / 5.0, 0, 126 / 15.0}};
    for (size_t c = 0; c < 6; ++c)
      for (size_t r = 0; r < R; ++r) {
        size_t t = chunkTensor[c];
        EXPECT_EQ(ru[c * 2 * R + r], rhoOf[t][r]) << "chunk " << c;
        EXPECT_EQ(ru[c * 2 * R + R + r], want[t][r])
            << "chunk " << c << " reduction " << r << " ("
            << reductionKindName(red[r].kind) << ")";
      }
  };
  check(0.0);
  check(0.0f);

  // Added in chunk order, in double: 1e16 + 1 - 1e16 is 0, not 1 (as in
  // any other order); f32 partials are widened first (2^24 + 1 would be
  // lost in float).
  std::vector<ReductionSpec> sum = {{ReductionKind::Sum, true}};
  std::vector<double> big = {1e16, 0, 1, 0, -1e16, 0}, rho(3, 5), ru(6);
  detail::combineReductionCotangents(sum, {0, 0, 1}, {4, 4}, rho.data(),
                                     DType::F64, big.data(), 2, ru.data());
  EXPECT_EQ(ru[1], 0.0);
  std::vector<float> wide = {16777216.0f, 0, 1, 0, 0, 0};
  detail::combineReductionCotangents(sum, {0, 0, 1}, {4, 4}, rho.data(),
                                     DType::F32, wide.data(), 2, ru.data());
  EXPECT_EQ(ru[1], 16777217.0);
  EXPECT_EQ(ru[0], 5.0);

  // A NaN rho (a max over NaN) has no tie: no cotangent, not a NaN one.
  std::vector<ReductionSpec> mx = {{ReductionKind::Max, false}};
  std::vector<double> nanRho = {std::nan("")}, one = {3, 0};
  std::vector<double> out(2);
  detail::combineReductionCotangents(mx, {0}, {1}, nanRho.data(), DType::F64,
                                     one.data(), 2, out.data());
  EXPECT_EQ(out[1], 0.0);

  // Fewer partials per chunk than the sums and counts need.
  try {
    detail::combineReductionCotangents(red, chunkTensor, sizes,
                                       reduced.data(), DType::F64,
                                       reduced.data(), 2 * R - 1, ru.data());
    ADD_FAILURE() << "combined too few partials";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("cannot hold"), std::string::npos)
        << e.what();
  }
}

std::string refusal(const Rule &rule) {
  try {
    Trajectory traj(rule, {4});
  } catch (const Error &e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(TrajectoryReductions, RulesWithoutTheirKernelsAreRefused) {
  RuleInfo info = Trust::info();
  // The forward passes without the reverse mode.
  EXPECT_EQ(refusal(Rule(info, reduceKernel<Trust, float>,
                         ruleKernel<Trust, float>, nullptr)),
            "optim::Trajectory: rule 'trust' has no reverse mode ("
            "its reductions need optim_vjp_reduced_kernel_trust and "
            "optim_vjp_reductions_kernel_trust); compile it with "
            "CompileOptions::vjp");
  // Either VJP kernel alone.
  EXPECT_NE(refusal(Rule(info, reduceKernel<Trust, float>,
                         ruleKernel<Trust, float>,
                         reducedVJPKernel<Trust, float>, nullptr, nullptr))
                .find("has no reverse mode (its reductions need"),
            std::string::npos);
  EXPECT_NE(refusal(Rule(info, reduceKernel<Trust, float>,
                         ruleKernel<Trust, float>, nullptr,
                         reductionsVJPKernel<Trust, float>, nullptr))
                .find("has no reverse mode (its reductions need"),
            std::string::npos);
  // The reverse mode without the reduce pass.
  EXPECT_NE(refusal(Rule(info, nullptr, ruleKernel<Trust, float>,
                         reducedVJPKernel<Trust, float>,
                         reductionsVJPKernel<Trust, float>, nullptr))
                .find("has tensor reductions but not the kernels of both "
                      "passes (optim_reduce_trust"),
            std::string::npos);
  // Kernels of a rule with reductions, a signature without.
  RuleInfo without = info;
  without.reductions.clear();
  EXPECT_NE(refusal(Rule(without, reduceKernel<Trust, float>,
                         ruleKernel<Trust, float>,
                         reducedVJPKernel<Trust, float>,
                         reductionsVJPKernel<Trust, float>, nullptr))
                .find("its signature lists none"),
            std::string::npos);
  // All there: accepted.
  EXPECT_EQ(refusal(makeRule<Trust, float>()), "(accepted)");
}

} // namespace
