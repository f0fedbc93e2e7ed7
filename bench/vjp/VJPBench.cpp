//===- VJPBench.cpp - the learned rule's VJP kernel against its step ------===//
//
// optim-bench-vjp [COORDINATES] [THREADS]: examples/l2l.optim (f32), T = 5
// steps recorded by optim::Trajectory, then their backward pass, repeated;
// prints the time per step of each and their ratio, measured side by side in
// one run. Counts 2 (4*20*22 + 4*20*40 + 20) = 9,960 flops per coordinate
// for a forward step; the backward one recomputes the step and runs the two
// products of each affine map's backward pass, 3x that.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Trajectory.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

using namespace optim;

int main(int argc, char **argv) {
  int64_t n = argc > 1 ? std::atoll(argv[1]) : 200000;
  unsigned threads = argc > 2 ? unsigned(std::atoi(argv[2])) : 0;
  try {
    CompileOptions options;
    options.vjp = true;
    Rule rule = Compiler(options).compileFile(
        std::string(OPTIM_EXAMPLES_DIR) + "/l2l.optim");
    TrajectoryOptions trajOptions;
    trajOptions.threads = threads;
    Trajectory traj(rule, {n}, trajOptions);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (const WeightSpec &w : rule.info().weights) {
      int64_t count = w.shape[0] * w.shape[1];
      std::vector<float> data(count);
      for (float &x : data)
        x = 0.2f * normal(rng);
      traj.setWeights(w.name, data.data(), count);
    }
    std::vector<float> grad(n), cot(n);
    for (int64_t i = 0; i < n; ++i) {
      grad[i] = normal(rng);
      cot[i] = normal(rng);
    }
    const int steps = 5, reps = 3;
    double fwd = 1e30, bwd = 1e30;
    for (int r = 0; r < reps; ++r) {
      traj.truncate();
      auto t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < steps; ++k)
        traj.step({grad.data()});
      auto t1 = std::chrono::steady_clock::now();
      std::vector<std::vector<const void *>> dL(steps, {cot.data()});
      traj.backward(dL);
      auto t2 = std::chrono::steady_clock::now();
      fwd = std::min(fwd, std::chrono::duration<double>(t1 - t0).count());
      bwd = std::min(bwd, std::chrono::duration<double>(t2 - t1).count());
    }
    double flops = 9960.0 * double(n) * steps;
    std::printf("l2l f32, %lld coordinates, %d steps, best of %d\n",
                (long long)n, steps, reps);
    std::printf("forward step  (tape + kernel): %8.3f ms/step  %6.2f GFLOP/s\n",
                1e3 * fwd / steps, flops / fwd * 1e-9);
    std::printf("backward step (VJP kernel)   : %8.3f ms/step  %6.2f GFLOP/s "
                "(3x the forward flops)\n",
                1e3 * bwd / steps, 3 * flops / bwd * 1e-9);
    std::printf("backward / forward time: %.2f\n", bwd / fwd);
  } catch (const Error &e) {
    std::fprintf(stderr, "optim-bench-vjp: error: %s\n", e.what());
    return 1;
  }
}
