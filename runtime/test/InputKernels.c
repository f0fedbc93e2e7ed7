/*===- InputKernels.c - a shared library of rules with inputs -------------===*
 *
 * What `optimc --emit=shared` makes of rules with per-coordinate inputs
 * (KernelABI.h, version 7: chunk c has 2 + I + S pointers, p, g, the inputs
 * in declaration order, then the states), written by hand for the runtime's
 * tests (InputsTest.cpp), which load them with optim::loadRule:
 *
 * - sophia32 / sophia64, Sophia (Liu et al., 2023) with the Hessian
 *   diagonal estimate as input h:
 *     m = b1 m + (1 - b1) g;  hh = b2 hh + (1 - b2) h;
 *     p -= lr * clamp(m / max(rho * hh, eps), -1, 1)
 *   hypers lr, b1, b2, rho, eps; states m, hh; in float / double.
 * - pair (f64), two inputs a and b (whose order the table must keep) and a
 *   state s:  s = s + a * g;  p -= lr * (g + 2 a - b) + 0.125 * s * b
 * - scaled (f64), an input h read by both passes of a rule with tensor
 *   reductions "norm,sum@global": n = tensor_norm(h), q = global_sum(g * h);
 *     p -= lr * (h / (n + 1) + 0.001 * q)
 *
 *===----------------------------------------------------------------------===*/

#include "optim/KernelABI.h"

#define SOPHIA(NAME, T)                                                        \
  void optim_rule_##NAME(void *const *ptrs, const int64_t *lengths,            \
                         const int64_t *strides, int64_t begin, int64_t end,   \
                         const double *hypers, int64_t step,                   \
                         const void *const *weights, const uint64_t *rng) {    \
    (void)strides, (void)step, (void)weights, (void)rng;                       \
    const T lr = (T)hypers[0], b1 = (T)hypers[1], b2 = (T)hypers[2],           \
            rho = (T)hypers[3], eps = (T)hypers[4];                            \
    for (int64_t c = begin; c < end; ++c) {                                    \
      void *const *cp = ptrs + c * 5;                                          \
      T *p = (T *)cp[0], *m = (T *)cp[3], *hh = (T *)cp[4];                    \
      const T *g = (const T *)cp[1], *h = (const T *)cp[2];                    \
      for (int64_t i = 0; i < lengths[c]; ++i) {                               \
        m[i] = b1 * m[i] + (1 - b1) * g[i];                                    \
        hh[i] = b2 * hh[i] + (1 - b2) * h[i];                                  \
        T d = rho * hh[i];                                                     \
        if (!(d >= eps))                                                       \
          d = eps;                                                             \
        T r = m[i] / d;                                                        \
        if (r > 1)                                                             \
          r = 1;                                                               \
        if (r < -1)                                                            \
          r = -1;                                                              \
        p[i] -= lr * r;                                                        \
      }                                                                        \
    }                                                                          \
  }

SOPHIA(sophia32, float)
SOPHIA(sophia64, double)

/* The states the kernels were compiled for (KernelABI.h, version 10). */
const char optim_states_sophia32[] = "1,1";
const char optim_states_sophia64[] = "1,1";
const char optim_states_pair[] = "1";

void optim_rule_pair(void *const *ptrs, const int64_t *lengths,
                     const int64_t *strides, int64_t begin, int64_t end,
                     const double *hypers, int64_t step,
                     const void *const *weights, const uint64_t *rng) {
  (void)strides, (void)step, (void)weights, (void)rng;
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * 5;
    double *p = (double *)cp[0], *s = (double *)cp[4];
    const double *g = (const double *)cp[1], *a = (const double *)cp[2],
                 *b = (const double *)cp[3];
    for (int64_t i = 0; i < lengths[c]; ++i) {
      s[i] = s[i] + a[i] * g[i];
      p[i] -= hypers[0] * (g[i] + 2 * a[i] - b[i]) + 0.125 * s[i] * b[i];
    }
  }
}

const char optim_reductions_scaled[] = "norm,sum@global";

void optim_reduce_scaled(void *const *ptrs, const int64_t *lengths,
                         const int64_t *strides, int64_t begin, int64_t end,
                         const double *hypers, int64_t step,
                         const void *const *weights, double *partials,
                         const double *reduced, int64_t stage,
                         const uint64_t *rng) {
  (void)reduced;
  if (stage != 0) /* level 0 only: later stages write nothing */
    return;
  (void)strides, (void)hypers, (void)step, (void)weights, (void)rng;
  for (int64_t c = begin; c < end; ++c) {
    const double *g = (const double *)ptrs[3 * c + 1];
    const double *h = (const double *)ptrs[3 * c + 2];
    double squares = 0, dot = 0;
    for (int64_t i = 0; i < lengths[c]; ++i) {
      squares += h[i] * h[i];
      dot += g[i] * h[i];
    }
    partials[2 * c] = squares;
    partials[2 * c + 1] = dot;
  }
}

void optim_rule_scaled(void *const *ptrs, const int64_t *lengths,
                       const int64_t *strides, int64_t begin, int64_t end,
                       const double *hypers, int64_t step,
                       const void *const *weights, const double *reduced,
                       const uint64_t *rng) {
  (void)strides, (void)step, (void)weights, (void)rng;
  for (int64_t c = begin; c < end; ++c) {
    double *p = (double *)ptrs[3 * c];
    const double *h = (const double *)ptrs[3 * c + 2];
    double n = reduced[2 * c], q = reduced[2 * c + 1];
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] -= hypers[0] * (h[i] / (n + 1) + 0.001 * q);
  }
}
