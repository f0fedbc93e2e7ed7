//===- VJPBench.cpp - a rule's VJP kernels against its step ---------------===//
//
// optim-bench-vjp [COORDINATES] [THREADS] [FILE.optim[:RULE] ...]: each rule
// (f32; default examples/l2l.optim) runs T = 5 steps recorded by optim::Trajectory,
// then their backward pass, repeated, the rules taking turns so that they
// see the same machine; prints the time per step of each and their ratio.
// For l2l it also counts 2 (4*20*22 + 4*20*40 + 20) = 9,960 flops per
// coordinate for a forward step; the backward one recomputes the step and
// runs the two products of each affine map's backward pass, 3x that. Rules
// with tensor reductions run two passes forward and three backward (the
// reduce kernel is not rerun: the tape keeps the reduced values).
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Trajectory.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace optim;

namespace {
struct Case {
  std::string path, name;
  Rule rule;
  std::unique_ptr<Trajectory> traj;
  double fwd = 1e30, bwd = 1e30;
};
} // namespace

int main(int argc, char **argv) {
  int64_t n = argc > 1 ? std::atoll(argv[1]) : 200000;
  unsigned threads = argc > 2 ? unsigned(std::atoi(argv[2])) : 0;
  std::vector<std::string> paths;
  for (int i = 3; i < argc; ++i)
    paths.push_back(argv[i]);
  if (paths.empty())
    paths.push_back(std::string(OPTIM_EXAMPLES_DIR) + "/l2l.optim");
  try {
    CompileOptions options;
    options.vjp = true;
    Compiler compiler(options);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<Case> cases(paths.size());
    for (size_t c = 0; c < paths.size(); ++c) {
      Case &k = cases[c];
      k.path = paths[c];
      std::string rule;
      size_t colon = k.path.rfind(':');
      if (colon != std::string::npos &&
          k.path.find('/', colon) == std::string::npos) {
        rule = k.path.substr(colon + 1);
        k.path.resize(colon);
      }
      k.rule = compiler.compileFile(k.path, Target::cpu(), rule);
      k.name = k.rule.info().name;
      TrajectoryOptions trajOptions;
      trajOptions.threads = threads;
      k.traj = std::make_unique<Trajectory>(k.rule, std::vector<int64_t>{n},
                                            trajOptions);
      for (const WeightSpec &w : k.rule.info().weights) {
        int64_t count = w.shape[0] * w.shape[1];
        std::vector<float> data(count);
        for (float &x : data)
          x = 0.2f * normal(rng);
        k.traj->setWeights(w.name, data.data(), count);
      }
      float *theta = static_cast<float *>(k.traj->param(0));
      for (int64_t i = 0; i < n; ++i)
        theta[i] = normal(rng);
    }
    std::vector<float> grad(n), cot(n);
    for (int64_t i = 0; i < n; ++i) {
      grad[i] = normal(rng);
      cot[i] = normal(rng);
    }
    const int steps = 5, reps = 3;
    std::vector<std::vector<const void *>> dL(steps, {cot.data()});
    for (int r = 0; r < reps; ++r)
      for (Case &k : cases) {
        k.traj->truncate();
        auto t0 = std::chrono::steady_clock::now();
        for (int s = 0; s < steps; ++s)
          k.traj->step({grad.data()});
        auto t1 = std::chrono::steady_clock::now();
        k.traj->backward(dL);
        auto t2 = std::chrono::steady_clock::now();
        k.fwd = std::min(k.fwd, std::chrono::duration<double>(t1 - t0).count());
        k.bwd = std::min(k.bwd, std::chrono::duration<double>(t2 - t1).count());
      }
    std::printf("f32, %lld coordinates, %d steps, best of %d, rules taking "
                "turns\n",
                (long long)n, steps, reps);
    std::printf("%-12s %12s %12s %10s %14s\n", "rule", "fwd ms/step",
                "bwd ms/step", "bwd/fwd", "bwd/first bwd");
    for (const Case &k : cases)
      std::printf("%-12s %12.3f %12.3f %10.2f %14.2f\n", k.name.c_str(),
                  1e3 * k.fwd / steps, 1e3 * k.bwd / steps, k.bwd / k.fwd,
                  k.bwd / cases.front().bwd);
    for (const Case &k : cases)
      if (k.name == "l2l") {
        double flops = 9960.0 * double(n) * steps;
        std::printf("l2l: forward %.2f GFLOP/s, backward %.2f GFLOP/s (3x the "
                    "forward flops)\n",
                    flops / k.fwd * 1e-9, 3 * flops / k.bwd * 1e-9);
      }
  } catch (const Error &e) {
    std::fprintf(stderr, "optim-bench-vjp: error: %s\n", e.what());
    return 1;
  }
}
