// Loads a rule that the installed optimc compiled ahead of time (--emit=shared)
// with the runtime alone, and takes Adam's first step.
#include "optim/Manifest.h"
#include "optim/Optimizer.h"

#include <cmath>
#include <cstdio>
#include <vector>

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: aot-step RULE.so RULE.manifest.json\n");
    return 1;
  }
  try {
    optim::Rule adam = optim::loadRule(argv[1], argv[2]);
    std::vector<float> w = {1.0f, -2.0f}, gw = {0.5f, -0.25f};
    optim::Optimizer opt(adam, {{w.data(), w.size()}});
    opt.set("lr", 0.1);
    opt.step({{gw.data(), gw.size()}});
    if (std::fabs(w[0] - 0.9) > 1e-6 || std::fabs(w[1] + 1.9) > 1e-6) {
      std::printf("aot-step: w = %.9g %.9g, expected 0.9 -1.9\n", w[0], w[1]);
      return 1;
    }
    std::printf("aot-step: w = %g %g\n", w[0], w[1]);
  } catch (const optim::Error &e) {
    std::fprintf(stderr, "aot-step: %s\n", e.what());
    return 1;
  }
  return 0;
}
