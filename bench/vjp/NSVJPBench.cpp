//===- NSVJPBench.cpp - the VJP of newton_schulz: dgemm against loops -----===//
//
// optim-bench-ns-vjp [RxC,RxC,...] [ROUNDS]: the reverse mode's
// vector-Jacobian product of Muon's Newton-Schulz orthogonalization
// (runtime/lib/MatrixFunctions.h, 5 steps of (3.4445, -4.7750, 2.0315)) on
// each matrix shape, with one cblas_dgemm per product (the default when the
// forward pass's CBLAS is found) and with the runtime's own loops, the two
// taking turns in one process so that they see the same machine. Prints the
// best time of each per shape and their ratio, and the largest difference
// between the two results relative to the largest entry. Both run on the
// calling thread (the trajectory calls it once per matrix and step).
//
//===----------------------------------------------------------------------===//

#include "MatrixFunctions.h"
#include "optim/Rule.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace optim;

int main(int argc, char **argv) {
  std::string shapes = argc > 1 ? argv[1] : "256x1024,512x512,768x768";
  int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  if (rounds < 1)
    rounds = 1;
  ReductionSpec spec;
  spec.kind = ReductionKind::NewtonSchulz;
  spec.axis = Axis::Matrix;
  spec.nsSteps = 5;
  spec.nsCoefficients[0] = 3.4445;
  spec.nsCoefficients[1] = -4.7750;
  spec.nsCoefficients[2] = 2.0315;
  spec.nsEps = 1e-7;
  std::printf("CBLAS: %s\n", detail::matrixFunctionsUseCBLAS()
                                 ? detail::matrixFunctionsCBLAS().c_str()
                                 : "none (both rows run the loops)");
  std::printf("%-12s %12s %12s %8s %10s\n", "shape", "dgemm ms", "loops ms",
              "ratio", "max diff");
  std::stringstream list(shapes);
  std::string item;
  while (std::getline(list, item, ',')) {
    int64_t R = 0, C = 0;
    if (std::sscanf(item.c_str(), "%ldx%ld", &R, &C) != 2 || R < 1 || C < 1) {
      std::fprintf(stderr, "optim-bench-ns-vjp: bad shape '%s' (RxC)\n",
                   item.c_str());
      return 2;
    }
    size_t mn = size_t(R * C);
    std::mt19937 rng(1);
    std::normal_distribution<double> normal;
    std::vector<double> x(mn), dy(mn), blas(mn), loops(mn);
    for (size_t i = 0; i < mn; ++i) {
      x[i] = normal(rng);
      dy[i] = normal(rng);
    }
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < rounds; ++r)
      for (int which = 0; which < 2; ++which) {
        auto t0 = std::chrono::steady_clock::now();
        if (which == 0)
          detail::newtonSchulzVJP(x.data(), dy.data(), blas.data(), R, C,
                                  spec);
        else
          detail::newtonSchulzVJPPortable(x.data(), dy.data(), loops.data(),
                                          R, C, spec);
        double ms = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
        best[which] = std::min(best[which], ms);
      }
    double scale = 0, diff = 0;
    for (size_t i = 0; i < mn; ++i) {
      scale = std::max(scale, std::fabs(loops[i]));
      diff = std::max(diff, std::fabs(blas[i] - loops[i]));
    }
    std::printf("%-12s %12.1f %12.1f %7.1fx %10.2g\n", item.c_str(), best[0],
                best[1], best[1] / best[0], scale > 0 ? diff / scale : diff);
  }
  return 0;
}
