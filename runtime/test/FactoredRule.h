//===- FactoredRule.h - a hand-written rule with row and column states ----===//
//
// Kernel ABI 10, "Axes": the kernels of a small factored rule written by
// hand as compiled ones are, shared by the CPU runtime's tests (AxesTest.cpp)
// and the CUDA runtime's (CudaAxesTest.cpp, whose fake driver runs them where
// the GPU kernels would run: the GPU ABI of rules with axes is the CPU's
// chunk table, launched one block per chunk).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_TEST_FACTOREDRULE_H
#define OPTIM_RUNTIME_TEST_FACTOREDRULE_H

#include "optim/Rule.h"

#include <cmath>
#include <cstdint>

namespace factored {

using namespace optim;

// The rule (hypers lr, beta, eps; states r (row, 0.5), c (col, 0.25),
// m (per coordinate, 0)):
//   red0 = row_mean(g * g)                        level 0, row
//   red1 = col_mean(g * g)                        level 0, col
//   red2 = tensor_mean(r')                        level 1
//   red3 = global_sum(g)                          level 0
//   r' = beta r + (1 - beta) red0,  c' = beta c + (1 - beta) red1
//   m' = beta m + (1 - beta) g
//   p -= lr m' / sqrt(r' c' / red2 + eps) + 1e-4 red3
// Kernels and the reference share these functions, so that a value computed
// from reduced values is the same in both.
constexpr size_t S = 3, A = 2, X = 2, NR = 4;
constexpr size_t P = 2 + S + A + 2 * X; // Pointers per chunk.

inline double rowNew(double r, double red0, const double *h) {
  return h[1] * r + (1 - h[1]) * red0;
}
inline double colNew(double c, double red1, const double *h) {
  return h[1] * c + (1 - h[1]) * red1;
}
inline double momentNew(double m, double g, const double *h) {
  return h[1] * m + (1 - h[1]) * g;
}
inline double paramNew(double p, double mn, double rn, double cn,
                       double red2, double red3, const double *h) {
  return p - h[0] * mn / std::sqrt(rn * cn / red2 + h[2]) + 1e-4 * red3;
}

inline RuleInfo factoredInfo(DType dtype) {
  RuleInfo i;
  i.name = "factored";
  i.dtype = dtype;
  i.hypers = {{"lr", 0.05, false}, {"beta", 0.9, false}, {"eps", 1e-3, false}};
  StateSpec r{"r", 1, 0.5}, c{"c", 1, 0.25}, m{"m", 1, 0.0};
  r.axis = Axis::Row;
  c.axis = Axis::Col;
  i.states = {r, c, m};
  ReductionSpec r0, r1, r2, r3;
  r0.kind = ReductionKind::Mean;
  r0.axis = Axis::Row;
  r1.kind = ReductionKind::Mean;
  r1.axis = Axis::Col;
  r2.kind = ReductionKind::Mean;
  r2.level = 1;
  r3.kind = ReductionKind::Sum;
  r3.global = true;
  i.reductions = {r0, r1, r2, r3};
  return i;
}

/// A reduced value as a compiled kernel reads it: rounded to T.
template <typename T> inline double rounded(double v) { return double(T(v)); }

template <typename T>
inline void reduceKernel(void *const *ptrs, const int64_t *lengths,
                         const int64_t *, int64_t begin, int64_t end,
                         const double *h, int64_t, const void *const *,
                         double *partials, const double *reduced,
                         int64_t stage, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * P;
    int64_t nr = lengths[4 * c], nc = lengths[4 * c + 1];
    const T *g = static_cast<const T *>(cp[1]);
    const T *r = static_cast<const T *>(cp[2]);
    double *rowPart = static_cast<double *>(cp[7]);
    double *colPart = static_cast<double *>(cp[8]);
    const double *rowRed = static_cast<const double *>(cp[9]);
    if (stage == 0) {
      double sum = 0;
      for (int64_t i = 0; i < nr; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < nc; ++j) {
          double v = double(g[i * nc + j]);
          acc += v * v;
          sum += v;
        }
        rowPart[i] = acc;
      }
      for (int64_t j = 0; j < nc; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < nr; ++i) {
          double v = double(g[i * nc + j]);
          acc += v * v;
        }
        colPart[j] = acc;
      }
      partials[c * NR + 3] = sum;
    } else if (stage == 1) {
      double acc = 0;
      for (int64_t i = 0; i < nr; ++i) {
        double rn = rowNew(double(r[i]), rounded<T>(rowRed[i]), h);
        for (int64_t j = 0; j < nc; ++j)
          acc += rn;
      }
      partials[c * NR + 2] = acc;
    }
  }
}

template <typename T>
inline void ruleKernel(void *const *ptrs, const int64_t *lengths,
                       const int64_t *, int64_t begin, int64_t end,
                       const double *h, int64_t, const void *const *,
                       const double *reduced, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * P;
    int64_t nr = lengths[4 * c], nc = lengths[4 * c + 1],
            r0 = lengths[4 * c + 2], c0 = lengths[4 * c + 3];
    T *p = static_cast<T *>(cp[0]);
    const T *g = static_cast<const T *>(cp[1]);
    const T *r = static_cast<const T *>(cp[2]);
    const T *cs = static_cast<const T *>(cp[3]);
    T *m = static_cast<T *>(cp[4]);
    T *rNext = static_cast<T *>(cp[5]);
    T *cNext = static_cast<T *>(cp[6]);
    const double *rowRed = static_cast<const double *>(cp[9]);
    const double *colRed = static_cast<const double *>(cp[10]);
    double red2 = rounded<T>(reduced[c * NR + 2]);
    double red3 = rounded<T>(reduced[c * NR + 3]);
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j) {
        int64_t k = i * nc + j;
        double rn = rowNew(double(r[i]), rounded<T>(rowRed[i]), h);
        double cn = colNew(double(cs[j]), rounded<T>(colRed[j]), h);
        double mn = momentNew(double(m[k]), double(g[k]), h);
        p[k] = T(paramNew(double(p[k]), mn, rn, cn, red2, red3, h));
        m[k] = T(mn);
        if (c0 == 0 && j == 0)
          rNext[i] = T(rn);
        if (r0 == 0 && i == 0)
          cNext[j] = T(cn);
      }
  }
}

} // namespace factored

#endif // OPTIM_RUNTIME_TEST_FACTOREDRULE_H
