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

/// The slice depth of a product of `blocks` tiles (all matrices of its
/// launch) over K on a device of `sms` multiprocessors: K (no split) when
/// the tiles are at least `sms`, else K / S rounded up for S = ceil(2 sms /
/// blocks) slices, at most `maxSlices` and one per 256 of K.
int64_t splitDepth(int64_t blocks, int64_t K, int64_t sms, int64_t maxSlices);

/// Elements of slice products that a group of `group` R x C matrices needs
/// for its split products (Y Y^T over max(R, C), A A over min(R, C)): 0
/// when neither splits.
int64_t newtonSchulzSlices(int64_t group, int64_t R, int64_t C, int64_t sms);

/// Enqueues NS(X) of the `count` row-major R x C matrices from `x` (device
/// memory, one after the other, in place) on `stream`, `group` of them per
/// launch: `work` holds group * newtonSchulzWork(R, C) elements, `partials`
/// group * matrixblock::kSumBlocks doubles, and `slices` (`sliceCapacity`
/// elements) the slices of products split for a device of `sms`
/// multiprocessors; all free until the launches are done. Nothing for
/// empty matrices.
void enqueueNewtonSchulz(const DriverAPI &d, const Rule::MatrixKernels &k,
                         CUstream stream, DType dtype, CUdeviceptr x,
                         int64_t count, int64_t R, int64_t C,
                         const ReductionSpec &spec, int64_t group,
                         CUdeviceptr work, CUdeviceptr partials,
                         CUdeviceptr slices, int64_t sliceCapacity,
                         int64_t sms);

} // namespace optim::cuda

#endif // OPTIM_RUNTIME_CUDAMATRIX_H
