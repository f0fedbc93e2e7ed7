//===- CudaVsCpu.h - one rule on both optimizers, from the same data ------===//
//
// What the CUDA runtime's tests against optim::Optimizer share
// (CudaAxesTest.cpp, CudaMatrixTest.cpp): random parameters of the given
// shapes and random gradients for a few steps, optim::Optimizer on the
// rule's CPU-ABI kernels, cuda::Optimizer on device copies of the same
// values (over a fake driver that runs those kernels where the GPU's would
// run), the same chunk size, and every step on both. Each test compares
// what it promises (bits, or a tolerance).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_TEST_CUDAVSCPU_H
#define OPTIM_RUNTIME_TEST_CUDAVSCPU_H

#include "optim/Cuda.h"
#include "optim/Optimizer.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

namespace cudavscpu {

/// The element count of a shape; an empty shape stands for an unshaped
/// tensor of `unshaped` elements.
inline int64_t countOf(const std::vector<int64_t> &shape, int64_t unshaped) {
  if (shape.empty())
    return unshaped;
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

template <typename T> struct CudaVsCpu {
  std::vector<std::vector<int64_t>> shapes;
  /// The initial parameters, the CPU optimizer's (updated in place) and the
  /// gradients [step][tensor], uniform on [-1, 1).
  std::vector<std::vector<T>> p0, cpuParams;
  std::vector<std::vector<std::vector<T>>> grads;
  std::unique_ptr<optim::Optimizer> cpu;
  std::vector<optim::cuda::Buffer> dp, dg;
  std::vector<optim::cuda::DeviceTensor> dparams, dgrads;
  std::unique_ptr<optim::cuda::Optimizer> gpu;

  CudaVsCpu(const std::vector<std::vector<int64_t>> &shapes, int64_t unshaped,
            int steps, unsigned seed, optim::Rule cpuRule,
            const optim::cuda::Rule &gpuRule, int64_t chunkSize,
            unsigned cpuThreads = 1)
      : shapes(shapes), grads(size_t(steps)) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(-1, 1);
    for (const auto &shape : shapes) {
      p0.emplace_back(size_t(countOf(shape, unshaped)));
      for (T &x : p0.back())
        x = T(u(rng));
      for (auto &g : grads) {
        g.emplace_back(p0.back().size());
        for (T &x : g.back())
          x = T(u(rng));
      }
    }
    cpuParams = p0;
    std::vector<optim::Param> params;
    for (size_t k = 0; k < shapes.size(); ++k) {
      optim::Param p(cpuParams[k].data(), int64_t(cpuParams[k].size()));
      params.push_back(shapes[k].empty() ? p : p.shaped(shapes[k]));
    }
    optim::OptimizerOptions cpuOptions;
    cpuOptions.threads = cpuThreads;
    cpuOptions.chunkSize = chunkSize;
    cpu = std::make_unique<optim::Optimizer>(std::move(cpuRule), params,
                                             cpuOptions);
    const auto &dev = gpuRule.device();
    for (size_t k = 0; k < shapes.size(); ++k) {
      size_t bytes = p0[k].size() * sizeof(T);
      dp.emplace_back(dev, bytes);
      dg.emplace_back(dev, bytes);
      if (bytes)
        dp.back().upload(p0[k].data(), bytes);
      dparams.push_back({dp.back().get(), int64_t(p0[k].size()), shapes[k]});
      dgrads.push_back({dg.back().get(), int64_t(p0[k].size())});
    }
    optim::cuda::OptimizerOptions options;
    options.chunkSize = chunkSize;
    options.blockSize = 64;
    gpu = std::make_unique<optim::cuda::Optimizer>(gpuRule, dparams, options);
  }

  /// Sets a hyperparameter on both.
  void set(const std::string &name, double value) {
    cpu->set(name, value);
    gpu->set(name, value);
  }

  /// Every step on both, then waits for the device.
  void run() {
    for (size_t s = 0; s < grads.size(); ++s) {
      std::vector<optim::Grad> g;
      for (size_t k = 0; k < shapes.size(); ++k) {
        g.emplace_back(grads[s][k].data(), int64_t(grads[s][k].size()));
        if (!grads[s][k].empty())
          dg[k].upload(grads[s][k].data(), grads[s][k].size() * sizeof(T));
      }
      ASSERT_TRUE(cpu->step(g));
      gpu->step(dgrads);
    }
    gpu->synchronize();
  }

  /// Tensor k's parameters on the device.
  std::vector<T> gpuParam(size_t k) const {
    std::vector<T> got(p0[k].size());
    if (!got.empty())
      dp[k].download(got.data(), got.size() * sizeof(T));
    return got;
  }
};

} // namespace cudavscpu

#endif // OPTIM_RUNTIME_TEST_CUDAVSCPU_H
