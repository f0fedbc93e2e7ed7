//===- TrajectoryCheck.h - unrolled episodes of a rule, checked ---------===//
//
// What the trajectory tests share: a rule compiled with its reverse mode,
// an episode of a few steps from random θ0 and initial state with fixed
// gradients and inputs (the rule sees constants, exactly as backward
// assumes), the unrolled loss L = Σ_k c_k · θ_{k+1}, its gradient checked
// against central differences in every hyperparameter, weight, coordinate of
// θ0 and of the initial state, and the bits of a backward pass compared
// across thread counts.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TEST_E2E_TRAJECTORYCHECK_H
#define OPTIM_TEST_E2E_TRAJECTORYCHECK_H

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"
#include "optim/Trajectory.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace trajectorycheck {

using namespace optim;

inline Rule compileWithVJP(const std::string &source, DType precision) {
  CompileOptions options;
  options.precision = precision;
  options.vjp = true;
  options.useCache = false;
  return Compiler(options).compileSource(source, "reductions.optim");
}

using Hypers = std::vector<std::pair<std::string, double>>;

/// The values of a row or column state of a tensor of n coordinates and
/// the given shape (none: one row), as the runtime sees it: [B, R, C].
inline int64_t axisStateCount(Axis axis, const std::vector<int64_t> &shape,
                              int64_t n) {
  int64_t B = 1, R = 1, C = n;
  if (!shape.empty()) {
    C = shape.back();
    R = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
    for (size_t d = 0; d + 2 < shape.size(); ++d)
      B *= shape[d];
  }
  return B * (axis == Axis::Row ? R : C);
}

/// Steps from θ0 and the initial state with fixed gradients, inputs (and
/// weights), and the cotangents c_k.
template <typename T> struct Episode {
  const RuleInfo &info;
  std::vector<int64_t> sizes;
  int64_t chunkSize;
  Hypers hypers;
  std::vector<std::vector<T>> theta0, weights;       // [tensor], [weights]
  std::vector<std::vector<std::vector<T>>> state0;   // [state][tensor]
  std::vector<std::vector<std::vector<T>>> grads, c; // [step][tensor]
  /// [step][input][tensor], positive (Sophia's Hessian estimate h).
  std::vector<std::vector<std::vector<std::vector<T>>>> inputs;

  Episode(const RuleInfo &info, Hypers hypers, std::vector<int64_t> sizesIn,
          int steps, int64_t chunk, unsigned seed,
          const std::vector<std::vector<int64_t>> &shapes = {})
      : info(info), sizes(std::move(sizesIn)), chunkSize(chunk),
        hypers(std::move(hypers)) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    auto random = [&](int64_t n, bool positive) {
      std::vector<T> v(n);
      for (T &x : v)
        x = T(positive ? 0.1 + std::fabs(u(rng)) : u(rng));
      return v;
    };
    for (int64_t n : sizes)
      theta0.push_back(random(n, false));
    // LAMB's v, Sophia's hh and Adafactor's r and c are positive, as the
    // rules keep them. Vector states are component-major, s.size values
    // per coordinate; row and column states have one per row or column.
    for (const StateSpec &s : info.states) {
      state0.emplace_back();
      bool positive =
          s.name == "v" || s.name == "hh" || s.name == "r" || s.name == "c";
      for (size_t i = 0; i < sizes.size(); ++i) {
        int64_t count =
            s.axis == Axis::None
                ? sizes[i] * s.size
                : axisStateCount(s.axis, shapes.empty() ? std::vector<int64_t>()
                                                        : shapes[i],
                                 sizes[i]);
        state0.back().push_back(random(count, positive));
      }
    }
    for (const WeightSpec &w : info.weights) {
      int64_t count = 1;
      for (int64_t d : w.shape)
        count *= d;
      weights.push_back(random(count, false));
    }
    grads.resize(steps);
    c.resize(steps);
    for (int k = 0; k < steps; ++k)
      for (int64_t n : sizes) {
        grads[k].push_back(random(n, false));
        c[k].push_back(random(n, false));
      }
    // Drawn last: rules without inputs see the values they always saw.
    inputs.resize(steps);
    for (int k = 0; k < steps; ++k)
      for (size_t in = 0; in < info.inputs.size(); ++in) {
        inputs[k].emplace_back();
        for (int64_t n : sizes)
          inputs[k].back().push_back(random(n, true));
      }
  }

  double run(Trajectory &traj) const {
    // memcpy must not see an empty vector's data(), which may be null.
    auto copyIn = [](void *to, const std::vector<T> &from) {
      if (!from.empty())
        std::memcpy(to, from.data(), from.size() * sizeof(T));
    };
    for (size_t i = 0; i < sizes.size(); ++i) {
      copyIn(traj.param(i), theta0[i]);
      for (size_t s = 0; s < info.states.size(); ++s)
        copyIn(traj.state(i, info.states[s].name), state0[s][i]);
    }
    for (const auto &[name, value] : hypers)
      traj.set(name, value);
    for (size_t w = 0; w < weights.size(); ++w)
      traj.setWeights(info.weights[w].name, weights[w].data(),
                      int64_t(weights[w].size()));
    double loss = 0;
    for (size_t k = 0; k < grads.size(); ++k) {
      std::vector<const void *> g;
      for (const auto &x : grads[k])
        g.push_back(x.data());
      if (info.inputs.empty()) {
        traj.step(g);
      } else {
        std::vector<TrajectoryInput> in;
        for (size_t j = 0; j < info.inputs.size(); ++j) {
          in.push_back({info.inputs[j], {}});
          for (const auto &x : inputs[k][j])
            in.back().tensors.push_back(x.data());
        }
        traj.step(g, in);
      }
      for (size_t i = 0; i < sizes.size(); ++i) {
        const T *p = static_cast<const T *>(traj.param(i));
        for (int64_t j = 0; j < sizes[i]; ++j)
          loss += double(c[k][i][j]) * double(p[j]);
      }
    }
    return loss;
  }

  std::vector<std::vector<const void *>> cotangents() const {
    std::vector<std::vector<const void *>> out;
    for (const auto &step : c) {
      out.emplace_back();
      for (const auto &x : step)
        out.back().push_back(x.data());
    }
    return out;
  }
};

inline void checkAgainstFiniteDifferences(
    const std::string &source, const Hypers &hypers, size_t reductions,
    std::vector<int64_t> sizes = {13, 1, 0, 6},
    std::vector<std::vector<int64_t>> shapes = {}) {
  Rule rule = compileWithVJP(source, DType::F64);
  const RuleInfo &info = rule.info();
  ASSERT_TRUE(rule.hasVJP());
  ASSERT_EQ(info.reductions.size(), reductions);
  // 13 coordinates in chunks of 5 with 4 lanes: vector loops and scalar
  // tails, values combined over 3 chunks; a tensor of 1, an empty one.
  Episode<double> ep(info, hypers, std::move(sizes), 4, 5, 11, shapes);
  TrajectoryOptions options;
  options.threads = 2;
  options.chunkSize = ep.chunkSize;
  options.shapes = std::move(shapes);
  Trajectory traj(rule, ep.sizes, options);
  ep.run(traj);
  RuleGradient grad = traj.backward(ep.cotangents());

  auto loss = [&](const Episode<double> &e) {
    Trajectory fresh(rule, e.sizes, options);
    return e.run(fresh);
  };
  const double eps = 1e-6;
  auto central = [&](auto perturb) {
    Episode<double> up = ep, down = ep;
    perturb(up, eps);
    perturb(down, -eps);
    return (loss(up) - loss(down)) / (2 * eps);
  };
  auto near = [](double a, double n) {
    return std::fabs(a - n) <= 1e-6 * std::max(1.0, std::fabs(n));
  };
  for (size_t h = 0; h < ep.hypers.size(); ++h) {
    const std::string &name = ep.hypers[h].first;
    double numeric = central(
        [&](Episode<double> &e, double d) { e.hypers[h].second += d; });
    int at = info.findHyper(name);
    ASSERT_GE(at, 0) << name;
    EXPECT_TRUE(near(grad.hypers[at], numeric))
        << name << ": " << grad.hypers[at] << " vs " << numeric;
    EXPECT_GT(std::fabs(numeric), 1e-6) << name; // Not vacuous.
  }
  ASSERT_EQ(grad.weights.size(), info.weights.size());
  for (size_t w = 0; w < info.weights.size(); ++w) {
    double largest = 0;
    for (size_t k = 0; k < ep.weights[w].size(); ++k) {
      double numeric = central(
          [&](Episode<double> &e, double d) { e.weights[w][k] += d; });
      EXPECT_TRUE(near(grad.weights[w][k], numeric))
          << info.weights[w].name << "[" << k << "]: " << grad.weights[w][k]
          << " vs " << numeric;
      largest = std::max(largest, std::fabs(numeric));
    }
    EXPECT_GT(largest, 1e-3) << info.weights[w].name;
  }
  for (size_t i = 0; i < ep.sizes.size(); ++i) {
    const double *dp = static_cast<const double *>(traj.paramAdjoint(i));
    for (int64_t j = 0; j < ep.sizes[i]; ++j) {
      std::string at = "[" + std::to_string(i) + "][" + std::to_string(j) + "]";
      double numeric = central(
          [&](Episode<double> &e, double d) { e.theta0[i][j] += d; });
      EXPECT_TRUE(near(dp[j], numeric))
          << "theta0" << at << ": " << dp[j] << " vs " << numeric;
    }
    // Component q of coordinate j at q * sizes[i] + j; a row or column
    // state's row or column k at k.
    for (size_t s = 0; s < info.states.size(); ++s) {
      const double *ds = static_cast<const double *>(
          traj.stateAdjoint(i, info.states[s].name));
      ASSERT_EQ(size_t(traj.stateSize(i, info.states[s].name)),
                ep.state0[s][i].size());
      for (size_t k = 0; k < ep.state0[s][i].size(); ++k) {
        double numeric = central(
            [&](Episode<double> &e, double d) { e.state0[s][i][k] += d; });
        EXPECT_TRUE(near(ds[k], numeric))
            << info.states[s].name << "0[" << i << "][" << k
            << "]: " << ds[k] << " vs " << numeric;
      }
    }
  }
}

template <typename T> struct Outcome {
  std::vector<std::vector<T>> theta, adj;
  RuleGradient grad;
};

template <typename T>
Outcome<T> backwardOn(const Rule &rule, const Hypers &hypers, unsigned threads,
                      const std::vector<std::vector<int64_t>> &shapes) {
  // Hundreds of chunks of odd length; fewer chunks than threads in the
  // smallest tensors.
  Episode<T> ep(rule.info(), hypers, {1000, 37, 1, 5003, 0, 2}, 3, 61, 5,
                shapes);
  TrajectoryOptions options;
  options.threads = threads;
  options.chunkSize = ep.chunkSize;
  options.shapes = shapes;
  Trajectory traj(rule, ep.sizes, options);
  ep.run(traj);
  Outcome<T> out;
  out.grad = traj.backward(ep.cotangents());
  for (size_t i = 0; i < ep.sizes.size(); ++i) {
    auto copy = [&](const void *data, int64_t count) {
      const T *d = static_cast<const T *>(data);
      return std::vector<T>(d, d + count);
    };
    out.theta.push_back(copy(traj.param(i), ep.sizes[i]));
    out.adj.push_back(copy(traj.paramAdjoint(i), ep.sizes[i]));
    for (const StateSpec &s : rule.info().states)
      out.adj.push_back(
          copy(traj.stateAdjoint(i, s.name), traj.stateSize(i, s.name)));
  }
  return out;
}

template <typename T>
void expectThreadIndependent(
    const std::string &source, const Hypers &hypers, DType precision,
    const std::vector<std::vector<int64_t>> &shapes = {}) {
  Rule rule = compileWithVJP(source, precision);
  size_t perParam = 1 + rule.info().states.size();
  Outcome<T> one = backwardOn<T>(rule, hypers, 1, shapes);
  double norm = 0;
  for (double x : one.grad.hypers)
    norm += x * x;
  EXPECT_GT(norm, 0.0);
  // Bit for bit (== would take -0 for 0); empty tensors have nothing.
  auto same = [](const std::vector<T> &a, const std::vector<T> &b) {
    return a.size() == b.size() &&
           (a.empty() ||
            std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
  };
  for (unsigned threads : {2u, 3u}) {
    Outcome<T> other = backwardOn<T>(rule, hypers, threads, shapes);
    EXPECT_EQ(0, std::memcmp(one.grad.hypers.data(), other.grad.hypers.data(),
                             one.grad.hypers.size() * sizeof(double)))
        << threads << " threads";
    ASSERT_EQ(one.adj.size(), other.adj.size());
    for (size_t k = 0; k < one.adj.size(); ++k) {
      EXPECT_TRUE(same(one.adj[k], other.adj[k]))
          << threads << " threads, adjoint " << k;
      EXPECT_TRUE(same(one.theta[k / perParam], other.theta[k / perParam]))
          << threads << " threads, parameter " << k / perParam;
    }
  }
}


/// The trajectory's forward steps are optim::Optimizer's, bit for bit: from
/// the rule's initial state, with an episode's gradients, inputs and
/// hyperparameters, on the same shapes and chunks (the reductions' partials
/// follow the chunks), on other thread counts.
template <typename T>
void expectForwardLikeOptimizer(
    const std::string &source, const Hypers &hypers, DType precision,
    const std::vector<int64_t> &sizes,
    const std::vector<std::vector<int64_t>> &shapes = {}) {
  Rule rule = compileWithVJP(source, precision);
  Episode<T> ep(rule.info(), hypers, sizes, 3, 5, 9, shapes);
  for (auto &state : ep.state0)
    for (auto &tensor : state)
      tensor.clear(); // Keep the initial state (Episode::run copies none).
  TrajectoryOptions topt;
  topt.threads = 2;
  topt.chunkSize = ep.chunkSize;
  topt.shapes = shapes;
  Trajectory traj(rule, ep.sizes, topt);
  ep.run(traj);

  std::vector<std::vector<T>> theta = ep.theta0;
  std::vector<Param> params;
  for (size_t i = 0; i < theta.size(); ++i) {
    params.emplace_back(theta[i].data(), int64_t(theta[i].size()));
    if (!shapes.empty())
      params.back().shape = shapes[i];
  }
  OptimizerOptions oopt;
  oopt.threads = 3;
  oopt.chunkSize = ep.chunkSize;
  Optimizer opt(rule, params, oopt);
  for (const auto &[name, value] : ep.hypers)
    opt.set(name, value);
  for (size_t k = 0; k < ep.grads.size(); ++k) {
    std::vector<Grad> grads;
    for (const auto &g : ep.grads[k])
      grads.emplace_back(g.data(), int64_t(g.size()));
    std::vector<Input> inputs;
    for (size_t j = 0; j < rule.info().inputs.size(); ++j) {
      inputs.push_back({rule.info().inputs[j], {}});
      for (const auto &x : ep.inputs[k][j])
        inputs.back().tensors.emplace_back(x.data(), int64_t(x.size()));
    }
    ASSERT_TRUE(opt.step(grads, inputs));
  }
  for (size_t i = 0; i < ep.sizes.size(); ++i)
    if (ep.sizes[i] > 0)
      EXPECT_EQ(0, std::memcmp(traj.param(i), theta[i].data(),
                               theta[i].size() * sizeof(T)))
          << source << " parameter " << i;
}

} // namespace trajectorycheck

#endif // OPTIM_TEST_E2E_TRAJECTORYCHECK_H
