/*===- RandomKernels.c - a shared library of rules that draw --------------===*
 *
 * What `optimc --emit=shared` makes of rules that draw random numbers
 * (KernelABI.h, version 8: every kernel takes `const uint64_t *rng` last,
 * rng[0] the seed, rng[1 + c] the global index of chunk c's first
 * coordinate; the library defines optim_random_<name> for rules that draw),
 * written by hand for the runtime's tests (RandomTest.cpp). Instead of
 * Philox draws they write what they were given, so that the tests see the
 * rng array itself:
 *
 * - stamp (f64, no state; draws "normal,uniform"): p's bits become
 *   rng[0] ^ (rng[1 + c] + i), i.e. seed ^ (global index of the coordinate).
 * - stampsum (f64, state s; draws "uniform"; reductions "sum"): the first
 *   pass sums the global indices of the chunk's coordinates (in double,
 *   exact for the tests' sizes); the second stamps p as stamp does and sets
 *   s to the reduced value: the sum of the global indices of the tensor.
 * - hidden (f64): stamps as stamp does but has no descriptor: a manifest
 *   that lists draws for it is refused.
 *
 *===----------------------------------------------------------------------===*/

#include "optim/KernelABI.h"

#include <string.h>

const char optim_random_stamp[] = "normal,uniform";
const char optim_random_stampsum[] = "uniform";
const char optim_reductions_stampsum[] = "sum";
const char optim_states_stampsum[] = "1";

static void stampChunks(void *const *ptrs, size_t perChunk,
                        const int64_t *lengths, int64_t begin, int64_t end,
                        const uint64_t *rng) {
  for (int64_t c = begin; c < end; ++c) {
    double *p = (double *)ptrs[c * perChunk];
    for (int64_t i = 0; i < lengths[c]; ++i) {
      uint64_t bits = rng[0] ^ (rng[1 + c] + (uint64_t)i);
      memcpy(&p[i], &bits, 8);
    }
  }
}

void optim_rule_stamp(void *const *ptrs, const int64_t *lengths,
                      const int64_t *strides, int64_t begin, int64_t end,
                      const double *hypers, int64_t step,
                      const void *const *weights, const uint64_t *rng) {
  (void)strides, (void)hypers, (void)step, (void)weights;
  stampChunks(ptrs, 2, lengths, begin, end, rng);
}

void optim_rule_hidden(void *const *ptrs, const int64_t *lengths,
                       const int64_t *strides, int64_t begin, int64_t end,
                       const double *hypers, int64_t step,
                       const void *const *weights, const uint64_t *rng) {
  (void)strides, (void)hypers, (void)step, (void)weights;
  stampChunks(ptrs, 2, lengths, begin, end, rng);
}

void optim_reduce_stampsum(void *const *ptrs, const int64_t *lengths,
                           const int64_t *strides, int64_t begin, int64_t end,
                           const double *hypers, int64_t step,
                           const void *const *weights, double *partials,
                           const double *reduced, int64_t stage,
                           const uint64_t *rng) {
  (void)reduced;
  if (stage != 0) /* level 0 only: later stages write nothing */
    return;
  (void)ptrs, (void)strides, (void)hypers, (void)step, (void)weights;
  for (int64_t c = begin; c < end; ++c) {
    double sum = 0;
    for (int64_t i = 0; i < lengths[c]; ++i)
      sum += (double)(rng[1 + c] + (uint64_t)i);
    partials[c] = sum;
  }
}

void optim_rule_stampsum(void *const *ptrs, const int64_t *lengths,
                         const int64_t *strides, int64_t begin, int64_t end,
                         const double *hypers, int64_t step,
                         const void *const *weights, const double *reduced,
                         const uint64_t *rng) {
  (void)strides, (void)hypers, (void)step, (void)weights;
  stampChunks(ptrs, 3, lengths, begin, end, rng);
  for (int64_t c = begin; c < end; ++c) {
    double *s = (double *)ptrs[c * 3 + 2];
    for (int64_t i = 0; i < lengths[c]; ++i)
      s[i] = reduced[c];
  }
}
