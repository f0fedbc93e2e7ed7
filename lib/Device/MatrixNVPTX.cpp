//===- MatrixNVPTX.cpp - newton_schulz's block kernels on NVPTX ----------===//
//
// Compiled by clang for nvptx64-nvidia-cuda into LLVM bitcode at build time
// (lib/Device/CMakeLists.txt) and linked by MLIR's NVVM target into the
// CUDA module of every rule with a matrix function (lib/Compiler/
// GPUCodeGen.cpp), as the block QP solver is into layers'. The kernels,
// optim_matrix_<op>_<f32|f64> (emitted by optim-lower-rules-to-gpu), pass
// their block's coordinates and arguments to these functions; the work is
// optim/MatrixBlock.h's, which the runtime's tests and fake drivers run on
// the CPU.
//
// Freestanding: no CUDA headers, only clang's NVPTX builtins.
//
//===----------------------------------------------------------------------===//

#include "optim/MatrixBlock.h"

/// The block's dynamic shared memory (the launch's sharedMemBytes, from
/// optim/MatrixBlock.h), 16-byte aligned for the product's vector loads.
extern __attribute__((address_space(3), aligned(16))) double
    optim_matrix_shared[];

namespace {
struct BlockTeam {
  static constexpr int kPer = 1;
  int tid;
  void sync() { __syncthreads(); }
};
BlockTeam team() { return BlockTeam{int(__nvvm_read_ptx_sreg_tid_x())}; }
} // namespace

using namespace optim::matrixblock;

// Must match the declarations that optim-lower-rules-to-gpu emits
// (lib/Conversion/MatrixKernelsGPU.cpp): the block's coordinates first, z
// (the batch's matrix, whose operands are s* elements past the first's, or
// for a split product its matrix and slice) leading. Inlined into those kernels after linking: one body per kernel,
// no call.
#define OPTIM_ENTRY extern "C" __attribute__((always_inline)) void
#define OPTIM_MATRIX_ENTRIES(T, SUFFIX)                                        \
  OPTIM_ENTRY optim_matrix_gemm_##SUFFIX##_block(                              \
      int64_t z, int64_t bi, int64_t bj, int64_t M, int64_t N, int64_t K,      \
      T alpha, const T *A, int64_t ars, int64_t acs, int64_t sA, const T *B,   \
      int64_t brs, int64_t bcs, int64_t sB, T beta, const T *D, int64_t sD,    \
      T *C, int64_t sC, int64_t kc, T *P) {                                    \
    BlockTeam t = team();                                                      \
    gemmSplitBlock<T>(t, z, bi, bj, M, N, K, alpha, A, ars, acs, sA, B, brs,   \
                      bcs, sB, beta, D, sD, C, sC, kc, P,                      \
                      (T *)optim_matrix_shared);                               \
  }                                                                            \
  OPTIM_ENTRY optim_matrix_combine_##SUFFIX##_block(                           \
      int64_t z, int64_t block, int64_t blocks, int64_t M, int64_t N,          \
      T alpha, const T *P, int64_t S, T beta, const T *D, int64_t sD, T *C,    \
      int64_t sC) {                                                            \
    BlockTeam t = team();                                                      \
    combineBlock<T>(t, z, block, blocks, M, N, alpha, P, S, beta, D, sD, C,    \
                    sC);                                                       \
  }                                                                            \
  OPTIM_ENTRY optim_matrix_sumsq_##SUFFIX##_block(                             \
      int64_t z, int64_t block, int64_t blocks, const T *x, int64_t n,         \
      int64_t sx, double *partials) {                                          \
    BlockTeam t = team();                                                      \
    sumSquaresBlock<T>(t, block, blocks, x + z * sx, n, partials + z * blocks, \
                       (double *)optim_matrix_shared);                         \
  }                                                                            \
  OPTIM_ENTRY optim_matrix_scale_##SUFFIX##_block(                             \
      int64_t z, int64_t block, int64_t blocks, T *y, int64_t yrs,             \
      int64_t ycs, int64_t sy, const T *x, int64_t xrs, int64_t xcs,           \
      int64_t sx, int64_t m, int64_t n, const double *partials,                \
      int64_t numPartials, double eps) {                                       \
    BlockTeam t = team();                                                      \
    scaleBlock<T>(t, block, blocks, y + z * sy, yrs, ycs, x + z * sx, xrs,     \
                  xcs, m, n, partials ? partials + z * numPartials : partials, \
                  numPartials, eps);                                           \
  }

OPTIM_MATRIX_ENTRIES(float, f32)
OPTIM_MATRIX_ENTRIES(double, f64)
