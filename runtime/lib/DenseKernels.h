//===- DenseKernels.h - small dense float64 kernels for the QP solver -----===//
//
// Row-major float64 kernels for the interior-point solver's per-iteration
// linear algebra (runtime/lib/QP.cpp): the symmetric rank-p update
// H = Q + G^T D G, a blocked Cholesky factorization, triangular solves and
// matrix-vector products. Each problem of a batch is solved by one thread,
// so the kernels are single-threaded; they are compiled for AVX-512, for
// AVX2 + FMA and for baseline x86-64 (or the target's baseline elsewhere),
// and the widest that the CPU supports is chosen once, at the first call.
//
// A symmetric matrix is held in its upper triangle (row-major: a[i*lda+j],
// j >= i), and a Cholesky factor is the upper triangular U with A = U^T U;
// the strictly lower triangle is never read nor written.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_DENSEKERNELS_H
#define OPTIM_RUNTIME_DENSEKERNELS_H

#include <cstdint>

namespace optim {
namespace dense {

/// The instruction sets the kernels are compiled for.
enum class Isa { Generic, Avx2, Avx512 };

/// The instruction set in use: the widest the CPU supports, unless
/// OPTIM_DENSE_ISA (generic, avx2 or avx512) names a narrower one or
/// setIsa() chose another.
Isa isa();
const char *isaName(Isa isa);
/// Whether the CPU (and the OS) can run `isa`.
bool isaSupported(Isa isa);
/// Selects `isa` for the kernels (tests run every supported one); false,
/// and no change, when the CPU cannot run it. Not thread-safe: call it
/// before the kernels run.
bool setIsa(Isa isa);

/// C += alpha * X^T Y: C[i,j] += alpha * sum_k X[k,i] Y[k,j] for i < m,
/// j < n, k < kdim (X is [kdim, m], Y is [kdim, n]). With `upper`, only the
/// elements with j >= i are computed and written (m <= n then: the upper
/// triangle, or trapezoid, of a block on the diagonal). Each
/// element's sum over k is accumulated in order of k before it is added.
void gemmTN(int64_t m, int64_t n, int64_t kdim, const double *X, int64_t ldx,
            const double *Y, int64_t ldy, double *C, int64_t ldc, double alpha,
            bool upper);

/// In-place Cholesky factorization A = U^T U of the symmetric [n, n] matrix
/// held in the upper triangle of `a`. False (and `a` partly overwritten) if
/// a pivot is not above minPivot.
bool choleskyUpper(int64_t n, double *a, int64_t lda, double minPivot);

/// Solves U^T x = b in place (forward substitution) for upper triangular U.
void solveUpperT(int64_t n, const double *U, int64_t ldu, double *x);
/// Solves U x = b in place (back substitution) for upper triangular U.
void solveUpper(int64_t n, const double *U, int64_t ldu, double *x);
/// Solves U^T X = B in place for the [n, nrhs] matrix B (a right-hand side
/// per column).
void solveUpperTMulti(int64_t n, int64_t nrhs, const double *U, int64_t ldu,
                      double *B, int64_t ldb);

double dot(int64_t n, const double *x, const double *y);
/// y = M x for M [r, c].
void gemv(int64_t r, int64_t c, const double *M, int64_t ldm, const double *x,
          double *y);
/// y += M^T x for M [r, c] (x has r entries, y has c).
void gemvTAdd(int64_t r, int64_t c, const double *M, int64_t ldm,
              const double *x, double *y);
/// y = S x for the symmetric [n, n] S held in its upper triangle.
void symvUpper(int64_t n, const double *S, int64_t lds, const double *x,
               double *y);

} // namespace dense
} // namespace optim

#endif // OPTIM_RUNTIME_DENSEKERNELS_H
