//===- QPBlockNVPTX.cpp - the block QP solver's entry point on NVPTX -----===//
//
// Compiled by clang for nvptx64-nvidia-cuda into LLVM bitcode at build time
// (lib/Device/CMakeLists.txt) and linked by MLIR's NVVM target into every
// compiled layer's kernel (lib/Compiler/GPUCodeGen.cpp), the way libdevice
// is: the kernel, generated from the layer by optim-lower-layers-to-gpu,
// computes its problem's data and calls optim_qp_block_solve with all the
// threads of its block. The solver itself is optim/QPBlock.h, which the
// CPU emulation test runs too.
//
// Freestanding: no CUDA headers, only clang's NVPTX builtins.
//
//===----------------------------------------------------------------------===//

#include "optim/QPBlock.h"

/// The block's dynamic shared memory (the launch's sharedMemBytes).
extern __attribute__((address_space(3))) double optim_qp_shared[];

namespace {
struct BlockTeam {
  int tid, nt;
  void sync() { __syncthreads(); }
};
// The solver's reads of the thread index and block size (QPBlock.h,
// teamTid): the special registers, read where they are used (volatile, so
// that they are not hoisted and kept live across the solver: as pure
// intrinsics they were, and the Sudoku layer's forward kernel spilled).
int teamTid(const BlockTeam &) {
  unsigned r;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(r));
  return int(r);
}
int teamSize(const BlockTeam &) {
  unsigned r;
  asm volatile("mov.u32 %0, %%ntid.x;" : "=r"(r));
  return int(r);
}

/// P's operands and sizes, filled in place and always inlined: helpers that
/// returned the Work and the Problem by value made the layer kernels spill
/// registers (test/GPU/layer-sudoku.test checks that they do not).
__attribute__((always_inline)) inline void
setOperands(optim::qpblock::Problem &P, const double *Q, const double *q,
            const double *A, const double *b, const double *G,
            const double *h, int64_t n, int64_t m, int64_t p) {
  P.n = n;
  P.m = m;
  P.p = p;
  P.Q = Q;
  P.q = q;
  P.A = A;
  P.b = b;
  P.G = G;
  P.h = h;
}
} // namespace

/// Must match the declaration that optim-lower-layers-to-gpu emits
/// (lib/Conversion/LowerLayers.cpp, kSolveSymbol).
extern "C" void optim_qp_block_solve(const double *Q, const double *q,
                                     const double *A, const double *b,
                                     const double *G, const double *h,
                                     int64_t n, int64_t m, int64_t p,
                                     double tol, int64_t maxIter, void *z,
                                     void *nu, void *lam, int32_t f32,
                                     int32_t *status, int32_t *iterations,
                                     double *work, double *keep,
                                     int64_t sharedDoubles) {
  using namespace optim::qpblock;
  BlockTeam team{int(__nvvm_read_ptx_sreg_tid_x()),
                 int(__nvvm_read_ptx_sreg_ntid_x())};
  Work w;
  carve(w, n, m, p, team.nt, (double *)optim_qp_shared, sharedDoubles, work);
  Problem P;
  setOperands(P, Q, q, A, b, G, h, n, m, p);
  P.tol = tol;
  P.maxIter = maxIter;
  solveProblem(team, P, w, z, nu, lam, f32 != 0, status, iterations, keep);
}

/// The backward pass of problem e (its operands Q..h, its scratch `work`
/// and what its forward kept in `keep`): incoming gradients from gz, gnu,
/// glam ([batch, n], [batch, m], [batch, p] of the layer's type; null:
/// zero), the operands' cotangents to dops (problem e's, float64, at the
/// offsets oQ..oh, -1 for an absent operand).
extern "C" void optim_qp_block_backward(
    const double *Q, const double *q, const double *A, const double *b,
    const double *G, const double *h, int64_t n, int64_t m, int64_t p,
    const void *gz, const void *gnu, const void *glam, int32_t f32, int64_t e,
    double *dops, int64_t oQ, int64_t oq, int64_t oA, int64_t ob, int64_t oG,
    int64_t oh, double *work, double *keep, int64_t sharedDoubles) {
  using namespace optim::qpblock;
  BlockTeam team{int(__nvvm_read_ptx_sreg_tid_x()),
                 int(__nvvm_read_ptx_sreg_ntid_x())};
  Work w;
  carve(w, n, m, p, team.nt, (double *)optim_qp_shared, sharedDoubles, work);
  Problem P;
  setOperands(P, Q, q, A, b, G, h, n, m, p);
  const int64_t elt = f32 ? 4 : 8;
  auto slice = [&](const void *base, int64_t count) -> const void * {
    return base ? static_cast<const char *>(base) + e * count * elt : nullptr;
  };
  const int64_t offset[6] = {oQ, oq, oA, ob, oG, oh};
  backwardProblem(team, P, w, keep, slice(gz, n), slice(gnu, m),
                  slice(glam, p), f32 != 0, dops, offset);
}
