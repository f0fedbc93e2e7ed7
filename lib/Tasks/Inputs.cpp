//===- Inputs.cpp - per-coordinate inputs of rules run on a task ----------===//
//
// `optimc run --input NAME=SOURCE` supplies a rule's `input` from the task:
// noise (normal, uniform) or Hutchinson's Hessian-diagonal estimate.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <algorithm>

namespace optim::tasks {

std::vector<std::string> inputSourceNames() {
  return {"normal", "uniform", "hutchinson"};
}

InputSource parseInputSource(const std::string &name) {
  if (name == "normal")
    return InputSource::Normal;
  if (name == "uniform")
    return InputSource::Uniform;
  if (name == "hutchinson")
    return InputSource::Hutchinson;
  std::string known;
  for (const std::string &n : inputSourceNames())
    known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown input source '" + name + "' (known: " + known + ")");
}

void hessianVectorProduct(Task &task, const std::vector<std::vector<double>> &v,
                          std::vector<std::vector<double>> &hv) {
  const std::vector<std::vector<float>> &params = task.parameters();
  if (v.size() != params.size())
    throw Error("hessianVectorProduct: expected " +
                std::to_string(params.size()) + " tensors, got " +
                std::to_string(v.size()));
  double thetaMax = 0.0, vMax = 0.0;
  for (size_t k = 0; k < params.size(); ++k) {
    if (v[k].size() != params[k].size())
      throw Error("hessianVectorProduct: tensor " + std::to_string(k) +
                  " has " + std::to_string(v[k].size()) +
                  " elements, the parameter " +
                  std::to_string(params[k].size()));
    for (float p : params[k])
      thetaMax = std::max(thetaMax, std::fabs(double(p)));
    for (double x : v[k])
      vMax = std::max(vMax, std::fabs(x));
  }
  // cbrt of double's epsilon: the central difference's truncation error
  // grows as eps^2, its rounding error as 1/eps (see Task.h).
  // Scaled by |v| itself (not max(1, |v|)): a small v would otherwise move
  // the parameters by less than their rounding.
  if (vMax == 0) {
    hv.resize(params.size());
    for (size_t k = 0; k < params.size(); ++k)
      hv[k].assign(params[k].size(), 0.0);
    return;
  }
  const double eps = 6.0554544523933395e-06 * std::max(1.0, thetaMax) / vMax;
  std::vector<std::vector<double>> plus(params.size()), minus(params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    plus[k].resize(params[k].size());
    minus[k].resize(params[k].size());
    for (size_t i = 0; i < params[k].size(); ++i) {
      plus[k][i] = double(params[k][i]) + eps * v[k][i];
      minus[k][i] = double(params[k][i]) - eps * v[k][i];
    }
  }
  std::vector<std::vector<double>> gPlus, gMinus;
  task.lossAndGradient(plus, &gPlus);
  task.lossAndGradient(minus, &gMinus);
  hv.resize(params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    hv[k].resize(params[k].size());
    for (size_t i = 0; i < params[k].size(); ++i)
      hv[k][i] = (gPlus[k][i] - gMinus[k][i]) / (2.0 * eps);
  }
}

struct InputGenerator::Impl {
  explicit Impl(uint64_t seed) : rng(seed) {}
  NormalRng rng;
  std::vector<std::vector<double>> z, hz;
};

// Streams 0 and 1 are the tasks' (initialization, minibatches); the inputs
// take streams from 1000 on.
InputGenerator::InputGenerator(InputSource source, uint64_t seed,
                               uint64_t stream)
    : source(source),
      impl(std::make_unique<Impl>(deriveSeed(seed, 1000 + stream))) {}
InputGenerator::~InputGenerator() = default;
InputGenerator::InputGenerator(InputGenerator &&) noexcept = default;
InputGenerator &InputGenerator::operator=(InputGenerator &&) noexcept = default;

void InputGenerator::next(Task &task, std::vector<std::vector<float>> &out) {
  const std::vector<std::vector<float>> &params = task.parameters();
  out.resize(params.size());
  for (size_t k = 0; k < params.size(); ++k)
    out[k].resize(params[k].size());
  NormalRng &rng = impl->rng;
  switch (source) {
  case InputSource::Normal:
    for (auto &t : out)
      for (float &x : t)
        x = float(rng.normal());
    return;
  case InputSource::Uniform:
    for (auto &t : out)
      for (float &x : t) {
        // Rounding to float could give 1.0: keep [0, 1).
        x = float(rng.uniform());
        if (x >= 1.0f)
          x = std::nextafter(1.0f, 0.0f);
      }
    return;
  case InputSource::Hutchinson: {
    std::vector<std::vector<double>> &z = impl->z;
    z.resize(params.size());
    for (size_t k = 0; k < params.size(); ++k) {
      z[k].resize(params[k].size());
      for (double &x : z[k])
        x = rng.uniform() < 0.5 ? -1.0 : 1.0;
    }
    hessianVectorProduct(task, z, impl->hz);
    for (size_t k = 0; k < params.size(); ++k)
      for (size_t i = 0; i < params[k].size(); ++i)
        out[k][i] = float(z[k][i] * impl->hz[k][i]);
    return;
  }
  }
}

} // namespace optim::tasks
