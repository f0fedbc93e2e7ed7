/*===- ReductionKernels.c - a shared library of reduction kernels ---------===*
 *
 * What `optimc --emit=shared` makes of a rule with tensor reductions
 * (KernelABI.h, version 6), written by hand for the loader's tests
 * (ReductionManifestTest.cpp): rule "shrink", p -= lr * p / tensor_norm(p)
 * in f64, with its two passes and the descriptor of its reductions, and
 * rule "lonely", whose first pass is missing; and rules with nested
 * reductions (version 9), below.
 *
 *===----------------------------------------------------------------------===*/

#include "optim/KernelABI.h"

#include <math.h>

const char optim_reductions_shrink[] = "norm";
const char optim_reductions_lonely[] = "norm";

void optim_reduce_shrink(void *const *ptrs, const int64_t *lengths,
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
    const double *p = (const double *)ptrs[2 * c];
    double sum = 0;
    for (int64_t i = 0; i < lengths[c]; ++i)
      sum += p[i] * p[i];
    partials[c] = sum;
  }
}

void optim_rule_shrink(void *const *ptrs, const int64_t *lengths,
                       const int64_t *strides, int64_t begin, int64_t end,
                       const double *hypers, int64_t step,
                       const void *const *weights, const double *reduced,
                       const uint64_t *rng) {
  (void)strides, (void)step, (void)weights, (void)rng;
  for (int64_t c = begin; c < end; ++c) {
    double *p = (double *)ptrs[2 * c];
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] -= hypers[0] * p[i] / reduced[c];
  }
}

void optim_rule_lonely(void *const *ptrs, const int64_t *lengths,
                       const int64_t *strides, int64_t begin, int64_t end,
                       const double *hypers, int64_t step,
                       const void *const *weights, const double *reduced,
                       const uint64_t *rng) {
  (void)ptrs, (void)lengths, (void)strides, (void)begin, (void)end;
  (void)hypers, (void)step, (void)weights, (void)reduced, (void)rng;
}

/* Rule "centre" (KernelABI.h, version 9: nested reductions), f64, hypers
 * lr and eps: m = tensor_mean(g) (level 0), v = tensor_mean((g - m) *
 * (g - m)) (level 1), p -= lr * (g - m) / (sqrt(v) + eps). Stage 0 writes
 * slot 0 only, stage 1 slot 1 only (reading reduced slot 0). Rules
 * "crooked" and "gapped" are the same kernels with descriptors no compiler
 * writes. */
const char optim_reductions_centre[] = "mean,mean:1";
const char optim_reductions_crooked[] = "mean,mean:01";
const char optim_reductions_gapped[] = "mean:1,mean:2";

void optim_reduce_centre(void *const *ptrs, const int64_t *lengths,
                         const int64_t *strides, int64_t begin, int64_t end,
                         const double *hypers, int64_t step,
                         const void *const *weights, double *partials,
                         const double *reduced, int64_t stage,
                         const uint64_t *rng) {
  (void)strides, (void)hypers, (void)step, (void)weights, (void)rng;
  if (stage != 0 && stage != 1)
    return;
  for (int64_t c = begin; c < end; ++c) {
    const double *g = (const double *)ptrs[2 * c + 1];
    double sum = 0;
    if (stage == 0) {
      for (int64_t i = 0; i < lengths[c]; ++i)
        sum += g[i];
      partials[2 * c] = sum;
    } else {
      double m = reduced[2 * c];
      for (int64_t i = 0; i < lengths[c]; ++i)
        sum += (g[i] - m) * (g[i] - m);
      partials[2 * c + 1] = sum;
    }
  }
}

void optim_rule_centre(void *const *ptrs, const int64_t *lengths,
                       const int64_t *strides, int64_t begin, int64_t end,
                       const double *hypers, int64_t step,
                       const void *const *weights, const double *reduced,
                       const uint64_t *rng) {
  (void)strides, (void)step, (void)weights, (void)rng;
  for (int64_t c = begin; c < end; ++c) {
    double *p = (double *)ptrs[2 * c];
    const double *g = (const double *)ptrs[2 * c + 1];
    double m = reduced[2 * c], sd = sqrt(reduced[2 * c + 1]);
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] -= hypers[0] * (g[i] - m) / (sd + hypers[1]);
  }
}

void optim_reduce_crooked(void *const *ptrs, const int64_t *lengths,
                          const int64_t *strides, int64_t begin, int64_t end,
                          const double *hypers, int64_t step,
                          const void *const *weights, double *partials,
                          const double *reduced, int64_t stage,
                          const uint64_t *rng) {
  optim_reduce_centre(ptrs, lengths, strides, begin, end, hypers, step, weights,
                      partials, reduced, stage, rng);
}
void optim_rule_crooked(void *const *ptrs, const int64_t *lengths,
                        const int64_t *strides, int64_t begin, int64_t end,
                        const double *hypers, int64_t step,
                        const void *const *weights, const double *reduced,
                        const uint64_t *rng) {
  optim_rule_centre(ptrs, lengths, strides, begin, end, hypers, step, weights,
                    reduced, rng);
}
void optim_reduce_gapped(void *const *ptrs, const int64_t *lengths,
                         const int64_t *strides, int64_t begin, int64_t end,
                         const double *hypers, int64_t step,
                         const void *const *weights, double *partials,
                         const double *reduced, int64_t stage,
                         const uint64_t *rng) {
  optim_reduce_centre(ptrs, lengths, strides, begin, end, hypers, step, weights,
                      partials, reduced, stage, rng);
}
void optim_rule_gapped(void *const *ptrs, const int64_t *lengths,
                       const int64_t *strides, int64_t begin, int64_t end,
                       const double *hypers, int64_t step,
                       const void *const *weights, const double *reduced,
                       const uint64_t *rng) {
  optim_rule_centre(ptrs, lengths, strides, begin, end, hypers, step, weights,
                    reduced, rng);
}

/* Rule "muonlib" (KernelABI.h, version 11): the descriptors of a Muon-like
 * rule (newton_schulz with the default parameters, rows, cols; one state)
 * for the loader's checks; the kernels do nothing. */
const char optim_reductions_muonlib[] =
    "newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix,rows,cols";
const char optim_states_muonlib[] = "1";

void optim_reduce_muonlib(void *const *ptrs, const int64_t *lengths,
                          const int64_t *strides, int64_t begin, int64_t end,
                          const double *hypers, int64_t step,
                          const void *const *weights, double *partials,
                          const double *reduced, int64_t stage,
                          const uint64_t *rng) {
  (void)ptrs, (void)lengths, (void)strides, (void)begin, (void)end;
  (void)hypers, (void)step, (void)weights, (void)partials, (void)reduced;
  (void)stage, (void)rng;
}
void optim_rule_muonlib(void *const *ptrs, const int64_t *lengths,
                        const int64_t *strides, int64_t begin, int64_t end,
                        const double *hypers, int64_t step,
                        const void *const *weights, const double *reduced,
                        const uint64_t *rng) {
  (void)ptrs, (void)lengths, (void)strides, (void)begin, (void)end;
  (void)hypers, (void)step, (void)weights, (void)reduced, (void)rng;
}
