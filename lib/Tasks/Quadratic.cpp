//===- Quadratic.cpp - f(θ) = ‖Wθ − y‖², the paper's first task ----------===//
//
// Andrychowicz et al. (2016), section 3.1: 10-d, W and y Gaussian (DeepMind's
// code draws U[0,1) instead; we follow the paper). A fresh problem per seed.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

namespace optim::tasks {
namespace {

constexpr int kDim = 10;

class Quadratic final : public Task {
public:
  explicit Quadratic(uint64_t seed) : params(1, std::vector<float>(kDim)) {
    NormalRng rng(deriveSeed(seed, 0));
    for (double &w : W)
      w = rng.normal();
    for (double &v : y)
      v = rng.normal();
    for (float &p : params[0])
      p = float(rng.normal());
  }

  const std::string &name() const override { return taskName; }
  std::vector<std::vector<float>> &parameters() override { return params; }
  std::vector<std::vector<int64_t>> shapes() const override { return {{kDim}}; }

  double step(std::vector<std::vector<float>> &grads) override {
    double theta[kDim], g[kDim];
    for (int i = 0; i < kDim; ++i)
      theta[i] = params[0][i];
    double loss = evaluateAt(theta, g);
    grads.resize(1);
    grads[0].resize(kDim);
    for (int i = 0; i < kDim; ++i)
      grads[0][i] = float(g[i]);
    return loss;
  }

  double evaluate() override {
    double theta[kDim];
    for (int i = 0; i < kDim; ++i)
      theta[i] = params[0][i];
    return evaluateAt(theta, nullptr);
  }

  double lossAndGradient(const std::vector<std::vector<double>> &p,
                         std::vector<std::vector<double>> *grads) override {
    if (p.size() != 1 || p[0].size() != kDim)
      throw Error("quadratic: expected one parameter tensor of 10");
    double g[kDim];
    double loss = evaluateAt(p[0].data(), grads ? g : nullptr);
    if (grads)
      *grads = {std::vector<double>(g, g + kDim)};
    return loss;
  }

private:
  /// In double whatever the parameters' type: the problem is tiny, and its
  /// conditioning (W Gaussian) can be poor.
  double evaluateAt(const double *theta, double *grad) const {
    double r[kDim];
    double loss = 0.0;
    for (int i = 0; i < kDim; ++i) {
      double s = -y[i];
      for (int j = 0; j < kDim; ++j)
        s += W[i * kDim + j] * theta[j];
      r[i] = s;
      loss += s * s;
    }
    if (grad)
      for (int j = 0; j < kDim; ++j) {
        double s = 0.0;
        for (int i = 0; i < kDim; ++i)
          s += W[i * kDim + j] * r[i];
        grad[j] = 2.0 * s;
      }
    return loss;
  }

  std::string taskName = "quadratic";
  double W[kDim * kDim];
  double y[kDim];
  std::vector<std::vector<float>> params;
};

} // namespace

std::unique_ptr<Task> makeQuadratic(uint64_t seed) {
  return std::make_unique<Quadratic>(seed);
}

} // namespace optim::tasks
