/*===- ReductionKernels.c - a shared library of reduction kernels ---------===*
 *
 * What `optimc --emit=shared` makes of a rule with tensor reductions
 * (KernelABI.h, version 6), written by hand for the loader's tests
 * (ReductionManifestTest.cpp): rule "shrink", p -= lr * p / tensor_norm(p)
 * in f64, with its two passes and the descriptor of its reductions, and
 * rule "lonely", whose first pass is missing.
 *
 *===----------------------------------------------------------------------===*/

#include "optim/KernelABI.h"

const char optim_reductions_shrink[] = "norm";
const char optim_reductions_lonely[] = "norm";

void optim_reduce_shrink(void *const *ptrs, const int64_t *lengths,
                         const int64_t *strides, int64_t begin, int64_t end,
                         const double *hypers, int64_t step,
                         const void *const *weights, double *partials,
                         const uint64_t *rng) {
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
