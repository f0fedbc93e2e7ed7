//===- LearnedBench.cpp - one step of the learned LSTM optimizer -----------===//
//
// Times examples/l2l.optim on 1,000,000 coordinates (both threads by
// default) and prints the achieved GFLOP/s, counting 2 (4*20*22 + 4*20*40 +
// 20) flops per coordinate for the two LSTM layers and the head, as the
// issue does. A first measurement: the kernel is not tuned yet.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace optim;

int main(int argc, char **argv) {
  std::string examples = argc > 1 ? argv[1] : "examples";
  unsigned threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const int64_t n = 1000000;
  try {
    Rule rule = Compiler().compileFile(examples + "/l2l.optim");
    std::vector<float> p(n, 0.0f), g(n);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1e-3f);
    for (float &v : g)
      v = normal(rng);
    OptimizerOptions options;
    options.threads = threads;
    Optimizer opt(rule, {Param(p.data(), n)}, options);
    for (const WeightSpec &w : rule.info().weights) {
      int64_t count = 1;
      for (int64_t d : w.shape)
        count *= d;
      std::vector<float> values(count);
      for (float &v : values)
        v = normal(rng) * 100.0f;
      opt.setWeights(w.name, values.data(), count);
    }
    std::vector<double> times;
    for (int r = 0; r < 6; ++r) {
      auto start = std::chrono::steady_clock::now();
      opt.step({Grad(g.data(), n)});
      times.push_back(std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - start)
                          .count());
    }
    std::sort(times.begin(), times.end());
    double t = times[times.size() / 2];
    double flops = 2.0 * (4 * 20 * 22 + 4 * 20 * 40 + 20) * double(n);
    std::printf("{\"threads\": %u, \"coordinates\": %lld, \"step_s\": %.6g, "
                "\"gflops\": %.4g}\n",
                threads, (long long)n, t, flops / t / 1e9);
  } catch (const Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
