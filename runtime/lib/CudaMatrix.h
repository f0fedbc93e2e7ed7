//===- CudaMatrix.h - newton_schulz as a sequence of CUDA launches --------===//
//
// The runtime's side of KernelABI.h "Matrix functions on CUDA": NS(X) of a
// stack of matrices as launches of the module's matrix kernels on a stream,
// a group of matrices per launch (the grid's z).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_CUDAMATRIX_H
#define OPTIM_RUNTIME_CUDAMATRIX_H

#include "optim/Cuda.h"

namespace optim::cuda {

/// NS's scratch for one R x C matrix, in elements: 2 m n + 2 m m (m =
/// min(R, C), n = max(R, C)).
int64_t newtonSchulzWork(int64_t R, int64_t C);

/// How many R x C matrices one group of launches takes: all `count`, but
/// within the grid's 65535 in z and a scratch of about 4M elements (or one
/// matrix's, if larger).
int64_t newtonSchulzGroup(int64_t count, int64_t R, int64_t C);

/// Enqueues NS(X) of the `count` row-major R x C matrices from `x` (device
/// memory, one after the other, in place) on `stream`, `group` of them per
/// launch: `work` holds group * newtonSchulzWork(R, C) elements and
/// `partials` group * matrixblock::kSumBlocks doubles, both free until the
/// launches are done. Nothing for empty matrices.
void enqueueNewtonSchulz(const DriverAPI &d, const Rule::MatrixKernels &k,
                         CUstream stream, DType dtype, CUdeviceptr x,
                         int64_t count, int64_t R, int64_t C,
                         const ReductionSpec &spec, int64_t group,
                         CUdeviceptr work, CUdeviceptr partials);

} // namespace optim::cuda

#endif // OPTIM_RUNTIME_CUDAMATRIX_H
