//===- AOTLoadCheck.cpp - run an AOT-compiled rule with the runtime alone -===//
//
// Links optim_runtime only (no LLVM, no MLIR): loads a shared library made
// by `optimc --emit=shared` with its manifest, checks the signature, and runs
// SGD-like steps whose result it checks against `expected` for p after the
// steps, printed for FileCheck.
//
//   optim-aot-check LIBRARY.so [hyper=value ...]
//
//===----------------------------------------------------------------------===//

#include "optim/Manifest.h"
#include "optim/Optimizer.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s LIBRARY.so [hyper=value ...]\n", argv[0]);
    return 2;
  }
  try {
    optim::Rule rule = optim::loadRule(argv[1]);
    const optim::RuleInfo &info = rule.info();
    std::printf("rule %s %s, %zu hyperparameters, %zu states",
                info.name.c_str(), optim::dtypeName(info.dtype),
                info.hypers.size(), info.states.size());
    // Tensor reductions, in slot order, when the rule has any.
    for (size_t r = 0; r < info.reductions.size(); ++r)
      std::printf("%s%s%s", r ? ", " : ", reductions: ",
                  info.reductions[r].global ? "global " : "",
                  optim::reductionKindName(info.reductions[r].kind));
    std::printf("\n");
    std::vector<float> p(37, 1.0f), g(37);
    optim::Optimizer opt(rule, {optim::Param(p.data(), 37)});
    for (int i = 2; i < argc; ++i) {
      const char *eq = std::strchr(argv[i], '=');
      if (!eq)
        throw optim::Error(std::string("expected hyper=value, got ") + argv[i]);
      opt.set(std::string(argv[i], size_t(eq - argv[i])), std::atof(eq + 1));
    }
    for (int t = 1; t <= 3; ++t) {
      for (int i = 0; i < 37; ++i)
        g[i] = 0.5f * float(t);
      opt.step({optim::Grad(g.data(), 37)});
    }
    std::printf("after %lld steps: p[0] = %.6g, p[36] = %.6g\n",
                (long long)opt.stepCount(), p[0], p[36]);
  } catch (const optim::Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
