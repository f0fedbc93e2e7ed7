//===- CudaMatrix.h - newton_schulz as a sequence of CUDA launches --------===//
//
// The runtime's side of KernelABI.h "Matrix functions on CUDA": NS(X) of
// one matrix as launches of the module's matrix kernels on a stream.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_CUDAMATRIX_H
#define OPTIM_RUNTIME_CUDAMATRIX_H

#include "optim/Cuda.h"

namespace optim::cuda {

/// Enqueues NS(X) of the R x C row-major matrix at `x` (device memory, in
/// place) on `stream`: `work` holds 2 m n + 2 m m elements and `partials`
/// matrixblock::kSumBlocks doubles (m = min(R, C), n = max(R, C)), both
/// free until the launches are done. Nothing for an empty matrix.
void enqueueNewtonSchulz(const DriverAPI &d, const Rule::MatrixKernels &k,
                         CUstream stream, DType dtype, CUdeviceptr x, int64_t R,
                         int64_t C, const ReductionSpec &spec, CUdeviceptr work,
                         CUdeviceptr partials);

} // namespace optim::cuda

#endif // OPTIM_RUNTIME_CUDAMATRIX_H
