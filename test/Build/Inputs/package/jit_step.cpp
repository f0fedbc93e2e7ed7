// JIT-compiles the installed examples/adam.optim through the C++ API and
// takes one step, checked against Adam's first step written out by hand.
#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  try {
    optim::Compiler compiler;
    optim::Rule adam = compiler.compileFile(EXAMPLES_DIR "/adam.optim");
    std::vector<float> w = {1.0f, -2.0f, 0.5f}, gw = {0.5f, -0.25f, 2.0f};
    optim::Optimizer opt(adam, {{w.data(), w.size()}});
    opt.set("lr", 0.1);
    opt.step({{gw.data(), gw.size()}});
    // t = 1: mhat = g and vhat = g*g, so p -= lr * g / (|g| + eps).
    const float before[] = {1.0f, -2.0f, 0.5f};
    for (size_t i = 0; i < w.size(); ++i) {
      double want = before[i] - 0.1 * gw[i] / (std::fabs(gw[i]) + 1e-8);
      if (std::fabs(w[i] - want) > 1e-6) {
        std::printf("jit-step: w[%zu] = %.9g, expected %.9g\n", i, w[i], want);
        return 1;
      }
    }
    std::printf("jit-step: %s, step %lld, w = %g %g %g\n",
                adam.info().name.c_str(), (long long)opt.stepCount(), w[0],
                w[1], w[2]);
  } catch (const optim::Error &e) {
    std::fprintf(stderr, "jit-step: %s\n", e.what());
    return 1;
  }
  return 0;
}
