//===- MetaEpisode.h - one episode of meta-training -------------*- C++ -*-===//
//
// The work of one meta-training episode of optim-train (Andrychowicz et al.,
// 2016), shared with the episode benchmark (bench/learned/MetaEpisodeBench)
// so that the benchmark times exactly what optim-train runs: `horizon` steps
// of the learned rule on the task's parameters, cut into truncations of
// `unroll` steps; after each truncation, the meta-loss sum_t f(θ_t) of its
// steps is backpropagated through them (optim::Trajectory and the rule's VJP
// kernel) to the rule's weights, which the meta-optimizer updates. θ and the
// LSTM state carry across truncations; nothing flows back across one. The
// gradients of f fed to the rule are constants of the backward pass (second
// derivatives dropped).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_OPTIM_TRAIN_META_EPISODE_H
#define OPTIM_TOOLS_OPTIM_TRAIN_META_EPISODE_H

#include "optim/Optimizer.h"
#include "optim/Tasks/Task.h"
#include "optim/Trajectory.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace optim::train {

/// Coordinates per chunk of the trajectory: fixed (the meta-gradient's
/// rounding depends on it, never on the number of threads), small enough
/// that the MNIST MLP's 15,910 parameters give both threads work.
constexpr int64_t kChunkSize = 2048;

/// Seconds spent in each part of episodes (added up).
struct EpisodeTimes {
  double forward = 0;  // Trajectory::step: tape and forward kernel
  double task = 0;     // the optimizee's loss and gradient, θ copies
  double backward = 0; // Trajectory::backward: the VJP kernel
  double meta = 0;     // the meta-optimizer's step
};

struct EpisodeResult {
  double lossSum = 0;   // sum of f(θ_t), t = 1..horizon
  double finalLoss = 0; // f(θ_horizon) on its minibatch
  size_t tapeBytes = 0; // the largest tape
};

inline int64_t elementCount(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// PyTorch's default initialization of LSTMCell / Linear: U(-1/sqrt(H),
/// 1/sqrt(H)) for an LSTM of hidden size H, U(-1/sqrt(in), 1/sqrt(in)) for
/// a linear map with `in` inputs.
inline std::vector<std::vector<float>> randomWeights(const RuleInfo &info,
                                                     std::mt19937_64 &rng) {
  std::vector<std::vector<float>> out;
  for (const WeightSpec &w : info.weights) {
    int64_t rows = w.shape.at(0), cols = w.shape.at(1);
    bool lstm = rows % 4 == 0 && rows / 4 < cols;
    double fan = lstm ? double(rows / 4) : double(cols - 1);
    double bound = 1.0 / std::sqrt(std::max(1.0, fan));
    std::uniform_real_distribution<double> u(-bound, bound);
    std::vector<float> data(elementCount(w.shape));
    for (float &x : data)
      x = float(u(rng));
    out.push_back(std::move(data));
  }
  return out;
}

/// One episode on `task` (fresh), with `traj` (its hyperparameters set; its
/// θ, state and tape are reset here) and the learned `weights`, which `meta`
/// updates once per truncation. `episode` names the episode in errors.
inline EpisodeResult runEpisode(Trajectory &traj, tasks::Task &task,
                                const RuleInfo &info,
                                std::vector<std::vector<float>> &weights,
                                Optimizer &meta, int64_t horizon,
                                int64_t unroll, int64_t episode,
                                EpisodeTimes *times = nullptr) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  EpisodeTimes local;
  EpisodeTimes &t = times ? *times : local;
  std::vector<std::vector<float>> &theta = task.parameters();
  traj.resetState();
  for (size_t i = 0; i < theta.size(); ++i)
    std::memcpy(traj.param(i), theta[i].data(),
                theta[i].size() * sizeof(float));

  EpisodeResult result;
  auto t0 = Clock::now();
  std::vector<std::vector<float>> grad;
  task.step(grad); // ∇f(θ_0): the rule's first input.
  t.task += seconds(t0, Clock::now());
  // dL/dθ_{t+1} = ∇f(θ_{t+1}), which is also the next step's input.
  std::vector<std::vector<std::vector<float>>> cot(static_cast<size_t>(unroll));
  for (int64_t t0Step = 0; t0Step < horizon; t0Step += unroll) {
    for (size_t w = 0; w < weights.size(); ++w)
      traj.setWeights(info.weights[w].name, weights[w].data(),
                      int64_t(weights[w].size()));
    for (int64_t k = 0; k < unroll; ++k) {
      std::vector<const void *> g;
      for (auto &v : grad)
        g.push_back(v.data());
      auto a = Clock::now();
      traj.step(g);
      auto b = Clock::now();
      for (size_t i = 0; i < theta.size(); ++i)
        std::memcpy(theta[i].data(), traj.param(i),
                    theta[i].size() * sizeof(float));
      double loss = task.step(grad);
      t.forward += seconds(a, b);
      t.task += seconds(b, Clock::now());
      if (!std::isfinite(loss))
        // Before the first meta-step the weights are the initial ones: the
        // meta-lr cannot be the cause then.
        throw Error(
            "episode " + std::to_string(episode) +
            ": the optimizee's loss is not finite at step " +
            std::to_string(t0Step + k + 1) +
            (meta.stepCount() == 0
                 ? " with the initial weights, before any meta-step: the rule "
                   "diverges as written (check its update and its scale, or "
                   "start from other weights with --init)"
                 : " (lower --meta-lr?)"));
      result.lossSum += loss;
      result.finalLoss = loss;
      cot[size_t(k)] = grad;
    }
    std::vector<std::vector<const void *>> dL;
    for (auto &step : cot) {
      dL.emplace_back();
      for (auto &v : step)
        dL.back().push_back(v.data());
    }
    result.tapeBytes = std::max(result.tapeBytes, traj.tapeBytes());
    auto a = Clock::now();
    RuleGradient rg = traj.backward(dL);
    auto b = Clock::now();
    std::vector<std::vector<float>> metaGrad;
    for (auto &gw : rg.weights)
      metaGrad.emplace_back(gw.begin(), gw.end());
    std::vector<Grad> grads;
    for (auto &gw : metaGrad)
      grads.emplace_back(gw.data(), int64_t(gw.size()));
    meta.step(grads);
    // The next truncation would refuse them (Trajectory::setWeights) with
    // a message that does not say why they went bad.
    for (size_t w = 0; w < weights.size(); ++w)
      for (float x : weights[w])
        if (!std::isfinite(x))
          throw Error("episode " + std::to_string(episode) +
                      ": the meta-step made the learned weights '" +
                      info.weights[w].name +
                      "' non-finite (a non-finite meta-gradient, or a "
                      "diverging meta-optimizer: lower --meta-lr?)");
    traj.truncate();
    t.backward += seconds(a, b);
    t.meta += seconds(b, Clock::now());
  }
  return result;
}

} // namespace optim::train

#endif // OPTIM_TOOLS_OPTIM_TRAIN_META_EPISODE_H
