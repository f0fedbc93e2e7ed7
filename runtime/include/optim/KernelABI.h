/*===- KernelABI.h - the contract between compiled kernels and the runtime -===*
 *
 * This header is the ONLY thing the compiler and the runtime share. It is
 * plain C so that kernels, the C++ runtime and foreign callers agree on it
 * without LLVM or MLIR headers.
 *
 * An update rule compiles to one function that applies the rule to every
 * coordinate of a range of chunks:
 *
 *   void optim_rule_<name>(void *const *ptrs, const int64_t *lengths,
 *                          const int64_t *strides, int64_t begin,
 *                          int64_t end, const double *hypers, int64_t step,
 *                          const void *const *weights);
 *
 * - A chunk is a contiguous run of coordinates of one parameter tensor.
 *   Chunk c has `lengths[c]` coordinates and 2 + S pointers at
 *   `ptrs[c * (2 + S)]`: the parameters, the gradients, then one per state
 *   (S = number of states of the rule), each already offset to the chunk's
 *   first coordinate. Elements are of the rule's element type (f32 or f64).
 * - A vector state `h[N]` is stored component-major for the whole tensor:
 *   component j of coordinate i of the chunk lives at
 *   `state_ptr + j * strides[c] + i`, where strides[c] is the number of
 *   coordinates of the chunk's tensor. Scalar states ignore strides.
 * - Chunks [begin, end) are processed; threads take disjoint ranges, and
 *   every coordinate is computed independently, so the result does not
 *   depend on how chunks are split among threads.
 * - `hypers` holds the value of every hyperparameter in declaration order
 *   (const ones included, which the kernel ignores: their value is compiled
 *   in). `step` is t, 1-based.
 * - `weights` holds one pointer per declared weights tensor (learned rules),
 *   row-major, of the rule's element type; NULL when there are none.
 * - Pointers must be aligned to the element type; nothing more is needed.
 *
 *===----------------------------------------------------------------------===*/

#ifndef OPTIM_KERNELABI_H
#define OPTIM_KERNELABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever anything above changes; recorded in AOT manifests. */
#define OPTIM_KERNEL_ABI_VERSION 1

/* The prefix of every rule kernel's symbol: optim_rule_<rule name>. */
#define OPTIM_RULE_SYMBOL_PREFIX "optim_rule_"

typedef void (*optim_rule_kernel)(void *const *ptrs, const int64_t *lengths,
                                  const int64_t *strides, int64_t begin,
                                  int64_t end, const double *hypers,
                                  int64_t step, const void *const *weights);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OPTIM_KERNELABI_H */
