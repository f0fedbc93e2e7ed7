//===- MatrixFunctions.h - functions of whole matrices ----------*- C++ -*-===//
//
// Internal to the runtime. The matrix functions of KernelABI.h (version 11,
// "Matrix functions and shape values"): NS(X), the Newton-Schulz
// orthogonalization of torch.optim.Muon, which the Optimizer applies to each
// matrix of a newton_schulz reduction's buffer between the stages of a step.
// Products go to cblas_?gemm of a single-threaded OpenBLAS when one is
// installed (found at run time, MatrixFunctions.cpp), one whole product per
// call, one call at a time; else to the runtime's own loops on the
// optimizer's pool.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_MATRIXFUNCTIONS_H
#define OPTIM_RUNTIME_LIB_MATRIXFUNCTIONS_H

#include "optim/Rule.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace optim {

class ThreadPool;

namespace detail {

/// The elements of T that newtonSchulz needs besides the matrix: m * n +
/// 2 * m * m for an R x C matrix, m = min(R, C), n = max(R, C). 0 for an
/// empty matrix.
size_t newtonSchulzWorkCount(int64_t R, int64_t C);

/// Replaces the R x C row-major matrix `x` by NS(x) (KernelABI.h): Y = x^T
/// when R > C, else x; Y / max(||Y||_F, eps) with the norm accumulated in
/// double and rounded to T; then spec.nsSteps times A = Y Y^T,
/// B = b A + c (A A), Y = a Y + B Y, each product and each elementwise
/// operation in T; transposed back. `work` holds newtonSchulzWorkCount(R, C)
/// elements (its contents are scratch). The runtime's own loops run on
/// `pool` (may be null: the calling thread), split by rows of the result;
/// a CBLAS gets each whole product: every entry is summed in the same order
/// for any number of threads. An empty matrix is left alone.
void newtonSchulz(float *x, int64_t R, int64_t C, const ReductionSpec &spec,
                  float *work, ThreadPool *pool);
void newtonSchulz(double *x, int64_t R, int64_t C, const ReductionSpec &spec,
                  double *work, ThreadPool *pool);

/// The same with the runtime's own loops even when built with a CBLAS (so
/// that tests cover both).
void newtonSchulzPortable(float *x, int64_t R, int64_t C,
                          const ReductionSpec &spec, float *work,
                          ThreadPool *pool);
void newtonSchulzPortable(double *x, int64_t R, int64_t C,
                          const ReductionSpec &spec, double *work,
                          ThreadPool *pool);

/// The vector-Jacobian product of NS (newtonSchulz above, with the same
/// spec) at the R x C row-major matrix `x`: `dx` = (dNS/dx)^T `dy`, all in
/// double, on the calling thread (the same sums for any number of the
/// trajectory's threads): each product one cblas_dgemm call when the
/// forward pass's CBLAS was found, else the runtime's own loops
/// (newtonSchulzVJPPortable; the two differ by the order of the sums). The
/// forward iterates are recomputed from x in double; the norm's derivative
/// is taken where it is above eps (below it the divisor is the constant
/// eps). An empty matrix is left alone.
void newtonSchulzVJP(const double *x, const double *dy, double *dx,
                     int64_t R, int64_t C, const ReductionSpec &spec);
void newtonSchulzVJPPortable(const double *x, const double *dy, double *dx,
                             int64_t R, int64_t C, const ReductionSpec &spec);

/// Whether the products go to a CBLAS (a single-threaded OpenBLAS was
/// found), and the path it was loaded from ("" when none).
bool matrixFunctionsUseCBLAS();
std::string matrixFunctionsCBLAS();

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_MATRIXFUNCTIONS_H
