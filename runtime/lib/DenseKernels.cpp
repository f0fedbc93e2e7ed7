//===- DenseKernels.cpp - small dense float64 kernels for the QP solver ---===//
//
// The kernels are written once, as templates over the vector width W (in
// doubles) with GCC/Clang vector extensions, and instantiated three times:
// W = 8 inside functions compiled for AVX-512, W = 4 for AVX2 + FMA, W = 2
// for the baseline (SSE2 on x86-64). The runtime is built without
// -march=native, so the wide versions exist only through the target
// attributes; a table of function pointers picks one at the first call.
// The templates are always inlined, so each instantiation is compiled for
// its caller's instruction set.
//
// Every output element that is a sum over k (gemmTN, hence the Cholesky
// update) is accumulated in order of k in one lane, so the AVX2 and AVX-512
// versions give identical results (both fuse multiply-adds); dot products
// and the triangular solves that use them reduce across lanes, so their
// last bits depend on W. Either way a run on one machine is deterministic
// and independent of the number of threads, which the solver relies on.
//
//===----------------------------------------------------------------------===//

#include "DenseKernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define OPTIM_DENSE_X86 1
#define OPTIM_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define OPTIM_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define OPTIM_DENSE_X86 0
#endif

#define OPTIM_INLINE inline __attribute__((always_inline))

// The helpers that take or return vectors are always inlined, so no vector
// crosses a call between code of different instruction sets; GCC warns
// about the ABI of such calls all the same.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace optim {
namespace dense {
namespace {

// W doubles (GCC does not apply a vector_size that depends on a template
// parameter, so one specialization per width).
template <int W> struct VecOf;
template <> struct VecOf<2> {
  typedef double type __attribute__((vector_size(16)));
};
template <> struct VecOf<4> {
  typedef double type __attribute__((vector_size(32)));
};
template <> struct VecOf<8> {
  typedef double type __attribute__((vector_size(64)));
};

template <int W> struct Kernels {
  using V = typename VecOf<W>::type;

  // Register tile of the product kernel: MR rows by NV vectors of columns
  // (12 accumulators: they and the operands fit the 16 registers of AVX2
  // and SSE2, and half those of AVX-512).
  static constexpr int MR = 4, NV = 3, NR = NV * W;

  static OPTIM_INLINE V load(const double *p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static OPTIM_INLINE void store(double *p, const V &v) {
    std::memcpy(p, &v, sizeof v);
  }
  static OPTIM_INLINE V splat(double x) {
    V v;
    for (int i = 0; i < W; ++i)
      v[i] = x;
    return v;
  }
  static OPTIM_INLINE double hsum(const V &v) {
    double s = 0;
    for (int i = 0; i < W; ++i)
      s += v[i];
    return s;
  }

  //===--------------------------------------------------------------------===//
  // C += alpha X^T Y
  //===--------------------------------------------------------------------===//

  /// Adds alpha times the R x (NVT W) tile of X^T Y at rows i0, columns j0
  /// to C; in upper mode only the elements with j >= i.
  template <int R, int NVT>
  static OPTIM_INLINE void tile(int64_t i0, int64_t j0, int64_t kdim,
                                const double *X, int64_t ldx, const double *Y,
                                int64_t ldy, double *C, int64_t ldc,
                                double alpha, bool upper) {
    V acc[R][NVT];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NVT; ++v)
        acc[r][v] = V{};
    const double *x = X + i0, *y = Y + j0;
    for (int64_t k = 0; k < kdim; ++k, x += ldx, y += ldy) {
      V yv[NVT];
      for (int v = 0; v < NVT; ++v)
        yv[v] = load(y + v * W);
      for (int r = 0; r < R; ++r) {
        V xr = splat(x[r]);
        for (int v = 0; v < NVT; ++v)
          acc[r][v] += xr * yv[v];
      }
    }
    const V va = splat(alpha);
    // Column c of the tile is written in row r when j0 + c >= i0 + r.
    const int64_t off = upper ? i0 - j0 : -int64_t(NVT) * W - R;
    for (int r = 0; r < R; ++r) {
      double *c = C + (i0 + r) * ldc + j0;
      if (off + r <= 0) {
        for (int v = 0; v < NVT; ++v)
          store(c + v * W, load(c + v * W) + va * acc[r][v]);
        continue;
      }
      for (int64_t col = off + r; col < int64_t(NVT) * W; ++col)
        c[col] += alpha * acc[r][col / W][col % W];
    }
  }

  /// One column of the product, for the last columns that fill no vector.
  template <int R>
  static OPTIM_INLINE void column(int64_t i0, int64_t j, int64_t kdim,
                                  const double *X, int64_t ldx, const double *Y,
                                  int64_t ldy, double *C, int64_t ldc,
                                  double alpha, bool upper) {
    double acc[R] = {};
    for (int64_t k = 0; k < kdim; ++k) {
      double y = Y[k * ldy + j];
      for (int r = 0; r < R; ++r)
        acc[r] += X[k * ldx + i0 + r] * y;
    }
    for (int r = 0; r < R; ++r)
      if (!upper || j >= i0 + r)
        C[(i0 + r) * ldc + j] += alpha * acc[r];
  }

  /// Rows i0 .. i0 + R of the product. Tiles are aligned to the right end
  /// of the row so that the columns left over are at the left, where in
  /// upper mode a tile can reach into the (unwritten) lower triangle
  /// instead of being cut.
  template <int R>
  static OPTIM_INLINE void rowBlock(int64_t i0, int64_t n, int64_t kdim,
                                    const double *X, int64_t ldx,
                                    const double *Y, int64_t ldy, double *C,
                                    int64_t ldc, double alpha, bool upper) {
    const int64_t begin = upper ? i0 : 0;
    int64_t j = n;
    for (; j - NR >= begin; j -= NR)
      tile<R, NV>(i0, j - NR, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
    if (j == begin)
      return;
    if (upper && j - NR >= 0) {
      tile<R, NV>(i0, j - NR, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
      return;
    }
    for (; j - W >= begin; j -= W)
      tile<R, 1>(i0, j - W, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
    if (j == begin)
      return;
    if (upper && j - W >= 0) {
      tile<R, 1>(i0, j - W, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
      return;
    }
    for (; j > begin; --j)
      column<R>(i0, j - 1, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
  }

  static OPTIM_INLINE void gemmTN(int64_t m, int64_t n, int64_t kdim,
                                  const double *X, int64_t ldx, const double *Y,
                                  int64_t ldy, double *C, int64_t ldc,
                                  double alpha, bool upper) {
    if (m <= 0 || n <= 0 || kdim <= 0)
      return;
    int64_t i0 = 0;
    for (; i0 + MR <= m; i0 += MR)
      rowBlock<MR>(i0, n, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
    switch (m - i0) {
    case 3:
      rowBlock<3>(i0, n, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
      break;
    case 2:
      rowBlock<2>(i0, n, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
      break;
    case 1:
      rowBlock<1>(i0, n, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
      break;
    default:
      break;
    }
  }

  //===--------------------------------------------------------------------===//
  // Level 1 and 2
  //===--------------------------------------------------------------------===//

  /// y += a x.
  static OPTIM_INLINE void axpy(int64_t n, double a, const double *x,
                                double *y) {
    const V va = splat(a);
    int64_t i = 0;
    for (; i + W <= n; i += W)
      store(y + i, load(y + i) + va * load(x + i));
    for (; i < n; ++i)
      y[i] += a * x[i];
  }

  static OPTIM_INLINE double dotInline(int64_t n, const double *x,
                                       const double *y) {
    V a0 = V{}, a1 = V{}, a2 = V{}, a3 = V{};
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
      a0 += load(x + i) * load(y + i);
      a1 += load(x + i + W) * load(y + i + W);
      a2 += load(x + i + 2 * W) * load(y + i + 2 * W);
      a3 += load(x + i + 3 * W) * load(y + i + 3 * W);
    }
    for (; i + W <= n; i += W)
      a0 += load(x + i) * load(y + i);
    double s = hsum((a0 + a1) + (a2 + a3));
    for (; i < n; ++i)
      s += x[i] * y[i];
    return s;
  }

  static OPTIM_INLINE double dot(int64_t n, const double *x, const double *y) {
    return dotInline(n, x, y);
  }

  /// s[r] = dot(M row r, x) for 4 rows at once (one load of x for four).
  static OPTIM_INLINE void dot4(int64_t n, const double *m0, const double *m1,
                                const double *m2, const double *m3,
                                const double *x, double s[4]) {
    V a0 = V{}, a1 = V{}, a2 = V{}, a3 = V{};
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      V xv = load(x + i);
      a0 += load(m0 + i) * xv;
      a1 += load(m1 + i) * xv;
      a2 += load(m2 + i) * xv;
      a3 += load(m3 + i) * xv;
    }
    s[0] = hsum(a0);
    s[1] = hsum(a1);
    s[2] = hsum(a2);
    s[3] = hsum(a3);
    for (; i < n; ++i) {
      s[0] += m0[i] * x[i];
      s[1] += m1[i] * x[i];
      s[2] += m2[i] * x[i];
      s[3] += m3[i] * x[i];
    }
  }

  static OPTIM_INLINE void gemv(int64_t r, int64_t c, const double *M,
                                int64_t ldm, const double *x, double *y) {
    int64_t i = 0;
    for (; i + 4 <= r; i += 4) {
      const double *m = M + i * ldm;
      dot4(c, m, m + ldm, m + 2 * ldm, m + 3 * ldm, x, y + i);
    }
    for (; i < r; ++i)
      y[i] = dotInline(c, M + i * ldm, x);
  }

  /// y += a0 m0 + a1 m1 + a2 m2 + a3 m3 (one load and store of y for four).
  static OPTIM_INLINE void axpy4(int64_t n, const double a[4], const double *m0,
                                 const double *m1, const double *m2,
                                 const double *m3, double *y) {
    const V v0 = splat(a[0]), v1 = splat(a[1]), v2 = splat(a[2]),
            v3 = splat(a[3]);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      V t = load(y + i);
      t += v0 * load(m0 + i);
      t += v1 * load(m1 + i);
      t += v2 * load(m2 + i);
      t += v3 * load(m3 + i);
      store(y + i, t);
    }
    for (; i < n; ++i) {
      double t = y[i];
      t += a[0] * m0[i];
      t += a[1] * m1[i];
      t += a[2] * m2[i];
      t += a[3] * m3[i];
      y[i] = t;
    }
  }

  static OPTIM_INLINE void gemvTAdd(int64_t r, int64_t c, const double *M,
                                    int64_t ldm, const double *x, double *y) {
    int64_t i = 0;
    for (; i + 4 <= r; i += 4) {
      const double *m = M + i * ldm;
      axpy4(c, x + i, m, m + ldm, m + 2 * ldm, m + 3 * ldm, y);
    }
    for (; i < r; ++i)
      axpy(c, x[i], M + i * ldm, y);
  }

  static OPTIM_INLINE void symvUpper(int64_t n, const double *S, int64_t lds,
                                     const double *x, double *y) {
    std::fill(y, y + n, 0.0);
    // Four rows at a time: rows i..i+3 of the upper triangle give their own
    // y's part j >= i + 4 (dot products), and, as columns of the lower
    // triangle, x_i..x_i+3's contributions to y_j (one load and store of y
    // for four rows); then their 4x4 diagonal block.
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      const double *s0 = S + i * lds, *s1 = s0 + lds, *s2 = s1 + lds,
                   *s3 = s2 + lds;
      const double x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
      const V v0 = splat(x0), v1 = splat(x1), v2 = splat(x2), v3 = splat(x3);
      V a0 = V{}, a1 = V{}, a2 = V{}, a3 = V{};
      int64_t j = i + 4;
      for (; j + W <= n; j += W) {
        const V xv = load(x + j), w0 = load(s0 + j), w1 = load(s1 + j),
                w2 = load(s2 + j), w3 = load(s3 + j);
        a0 += w0 * xv;
        a1 += w1 * xv;
        a2 += w2 * xv;
        a3 += w3 * xv;
        V t = load(y + j);
        t += v0 * w0;
        t += v1 * w1;
        t += v2 * w2;
        t += v3 * w3;
        store(y + j, t);
      }
      double t0 = hsum(a0), t1 = hsum(a1), t2 = hsum(a2), t3 = hsum(a3);
      for (; j < n; ++j) {
        t0 += s0[j] * x[j];
        t1 += s1[j] * x[j];
        t2 += s2[j] * x[j];
        t3 += s3[j] * x[j];
        y[j] += x0 * s0[j] + x1 * s1[j] + x2 * s2[j] + x3 * s3[j];
      }
      y[i] += s0[i] * x0 + s0[i + 1] * x1 + s0[i + 2] * x2 + s0[i + 3] * x3 +
              t0;
      y[i + 1] += s0[i + 1] * x0 + s1[i + 1] * x1 + s1[i + 2] * x2 +
                  s1[i + 3] * x3 + t1;
      y[i + 2] += s0[i + 2] * x0 + s1[i + 2] * x1 + s2[i + 2] * x2 +
                  s2[i + 3] * x3 + t2;
      y[i + 3] += s0[i + 3] * x0 + s1[i + 3] * x1 + s2[i + 3] * x2 +
                  s3[i + 3] * x3 + t3;
    }
    // The last rows (and their columns), one at a time.
    for (; i < n; ++i) {
      const double *s = S + i * lds;
      const double xi = x[i];
      double t = 0;
      for (int64_t j = i + 1; j < n; ++j) {
        t += s[j] * x[j];
        y[j] += xi * s[j];
      }
      y[i] += s[i] * xi + t;
    }
  }

  //===--------------------------------------------------------------------===//
  // Cholesky and triangular solves
  //===--------------------------------------------------------------------===//

  /// Rank-1 updates on rows [k0, k0 + kb) of the upper trapezoid
  /// a[k0:k0+kb, k0:n] (the base case of choleskyUpper).
  static OPTIM_INLINE bool choleskyLeaf(int64_t k0, int64_t kb, int64_t n,
                                        double *a, int64_t lda,
                                        double minPivot) {
    for (int64_t k = k0; k < k0 + kb; ++k) {
      double *rk = a + k * lda;
      const double d = rk[k];
      if (!(d > minPivot))
        return false;
      const double u = std::sqrt(d), inv = 1.0 / u;
      rk[k] = u;
      const V vinv = splat(inv);
      int64_t j = k + 1;
      for (; j + W <= n; j += W)
        store(rk + j, load(rk + j) * vinv);
      for (; j < n; ++j)
        rk[j] *= inv;
      for (int64_t i = k + 1; i < k0 + kb; ++i)
        axpy(n - i, -rk[i], rk + i, a + i * lda + i);
    }
    return true;
  }

  /// Recursive Cholesky, by rows: to factor rows [k0, k0 + kb) of the
  /// trapezoid a[k0:k0+kb, k0:n], factor the first half of them, update the
  /// second half with the product kernel (A22 -= U12^T U12), then factor
  /// the second half. Nearly all the work is in the product kernel. The
  /// recursion is run with an explicit stack: the kernels must be inlined
  /// into their instruction set's entry point, which a recursive function
  /// cannot be.
  static OPTIM_INLINE bool choleskyUpper(int64_t n, double *a, int64_t lda,
                                         double minPivot) {
    struct Frame {
      int64_t k0, kb;
      int stage;
    };
    Frame stack[64]; // depth <= log2(n) + 1
    int top = 0;
    stack[0] = {0, n, 0};
    while (top >= 0) {
      const Frame f = stack[top];
      if (f.kb <= MR) {
        if (!choleskyLeaf(f.k0, f.kb, n, a, lda, minPivot))
          return false;
        --top;
        continue;
      }
      // The first half a multiple of MR, so that the update's rows fill
      // tiles.
      const int64_t h = std::min(f.kb - 1, (f.kb / 2 + MR - 1) / MR * MR);
      const int64_t r = f.k0 + h;
      if (f.stage == 0) {
        stack[top].stage = 1;
        stack[++top] = {f.k0, h, 0};
      } else if (f.stage == 1) {
        gemmTN(f.kb - h, n - r, h, a + f.k0 * lda + r, lda, a + f.k0 * lda + r,
               lda, a + r * lda + r, lda, -1.0,
               /*upper=*/true);
        stack[top].stage = 2;
        stack[++top] = {r, f.kb - h, 0};
      } else {
        --top;
      }
    }
    return true;
  }

  static OPTIM_INLINE void solveUpperT(int64_t n, const double *U, int64_t ldu,
                                       double *x) {
    // Column-oriented forward substitution, four unknowns at a time: solve
    // them in the 4x4 diagonal block, then one pass over the rest of x.
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const double *u0 = U + j * ldu, *u1 = u0 + ldu, *u2 = u1 + ldu,
                   *u3 = u2 + ldu;
      double v[4];
      v[0] = x[j] / u0[j];
      v[1] = (x[j + 1] - u0[j + 1] * v[0]) / u1[j + 1];
      v[2] = (x[j + 2] - u0[j + 2] * v[0] - u1[j + 2] * v[1]) / u2[j + 2];
      v[3] =
          (x[j + 3] - u0[j + 3] * v[0] - u1[j + 3] * v[1] - u2[j + 3] * v[2]) /
          u3[j + 3];
      std::copy(v, v + 4, x + j);
      double a[4] = {-v[0], -v[1], -v[2], -v[3]};
      axpy4(n - j - 4, a, u0 + j + 4, u1 + j + 4, u2 + j + 4, u3 + j + 4,
            x + j + 4);
    }
    for (; j < n; ++j) {
      const double *uj = U + j * ldu;
      x[j] /= uj[j];
      axpy(n - j - 1, -x[j], uj + j + 1, x + j + 1);
    }
  }

  static OPTIM_INLINE void solveUpper(int64_t n, const double *U, int64_t ldu,
                                      double *x) {
    // Row-oriented back substitution, four rows at a time: their dot
    // products with the solved part of x in one pass, then the 4x4 block.
    int64_t i = n;
    for (; i - 4 >= 0; i -= 4) {
      const int64_t b = i - 4;
      const double *u0 = U + b * ldu, *u1 = u0 + ldu, *u2 = u1 + ldu,
                   *u3 = u2 + ldu;
      double s[4];
      dot4(n - i, u0 + i, u1 + i, u2 + i, u3 + i, x + i, s);
      double v3 = (x[b + 3] - s[3]) / u3[b + 3];
      double v2 = (x[b + 2] - s[2] - u2[b + 3] * v3) / u2[b + 2];
      double v1 =
          (x[b + 1] - s[1] - u1[b + 2] * v2 - u1[b + 3] * v3) / u1[b + 1];
      double v0 =
          (x[b] - s[0] - u0[b + 1] * v1 - u0[b + 2] * v2 - u0[b + 3] * v3) /
          u0[b];
      x[b] = v0;
      x[b + 1] = v1;
      x[b + 2] = v2;
      x[b + 3] = v3;
    }
    for (--i; i >= 0; --i) {
      const double *ui = U + i * ldu;
      x[i] = (x[i] - dotInline(n - i - 1, ui + i + 1, x + i + 1)) / ui[i];
    }
  }

  static OPTIM_INLINE void solveUpperTMulti(int64_t n, int64_t nrhs,
                                            const double *U, int64_t ldu,
                                            double *B, int64_t ldb) {
    // Blocked forward substitution: the rows of a block of NB unknowns
    // with row operations, then the rows below with the product kernel.
    const int64_t NB = 16;
    for (int64_t j0 = 0; j0 < n; j0 += NB) {
      const int64_t jb = std::min(NB, n - j0);
      for (int64_t j = j0; j < j0 + jb; ++j) {
        const double *uj = U + j * ldu;
        double *bj = B + j * ldb;
        const double inv = 1.0 / uj[j];
        const V vinv = splat(inv);
        int64_t c = 0;
        for (; c + W <= nrhs; c += W)
          store(bj + c, load(bj + c) * vinv);
        for (; c < nrhs; ++c)
          bj[c] *= inv;
        for (int64_t i = j + 1; i < j0 + jb; ++i)
          axpy(nrhs, -uj[i], bj, B + i * ldb);
      }
      const int64_t r = j0 + jb;
      if (r < n)
        gemmTN(n - r, nrhs, jb, U + j0 * ldu + r, ldu, B + j0 * ldb, ldb,
               B + r * ldb, ldb, -1.0, false);
    }
  }
};

//===----------------------------------------------------------------------===//
// Instantiation per instruction set, and dispatch
//===----------------------------------------------------------------------===//

struct Table {
  void (*gemmTN)(int64_t, int64_t, int64_t, const double *, int64_t,
                 const double *, int64_t, double *, int64_t, double, bool);
  bool (*choleskyUpper)(int64_t, double *, int64_t, double);
  void (*solveUpperT)(int64_t, const double *, int64_t, double *);
  void (*solveUpper)(int64_t, const double *, int64_t, double *);
  void (*solveUpperTMulti)(int64_t, int64_t, const double *, int64_t, double *,
                           int64_t);
  double (*dot)(int64_t, const double *, const double *);
  void (*gemv)(int64_t, int64_t, const double *, int64_t, const double *,
               double *);
  void (*gemvTAdd)(int64_t, int64_t, const double *, int64_t, const double *,
                   double *);
  void (*symvUpper)(int64_t, const double *, int64_t, const double *, double *);
};

// Each entry point below is a separate function compiled for its
// instruction set, with the template inlined into it.
#define OPTIM_DENSE_ENTRIES(PREFIX, ATTR, W)                                   \
  ATTR void PREFIX##GemmTN(int64_t m, int64_t n, int64_t k, const double *X,   \
                           int64_t ldx, const double *Y, int64_t ldy,          \
                           double *C, int64_t ldc, double alpha, bool upper) { \
    Kernels<W>::gemmTN(m, n, k, X, ldx, Y, ldy, C, ldc, alpha, upper);         \
  }                                                                            \
  ATTR bool PREFIX##Cholesky(int64_t n, double *a, int64_t lda, double mp) {   \
    return Kernels<W>::choleskyUpper(n, a, lda, mp);                           \
  }                                                                            \
  ATTR void PREFIX##SolveUpperT(int64_t n, const double *U, int64_t ldu,       \
                                double *x) {                                   \
    Kernels<W>::solveUpperT(n, U, ldu, x);                                     \
  }                                                                            \
  ATTR void PREFIX##SolveUpper(int64_t n, const double *U, int64_t ldu,        \
                               double *x) {                                    \
    Kernels<W>::solveUpper(n, U, ldu, x);                                      \
  }                                                                            \
  ATTR void PREFIX##SolveUpperTMulti(int64_t n, int64_t nrhs, const double *U, \
                                     int64_t ldu, double *B, int64_t ldb) {    \
    Kernels<W>::solveUpperTMulti(n, nrhs, U, ldu, B, ldb);                     \
  }                                                                            \
  ATTR double PREFIX##Dot(int64_t n, const double *x, const double *y) {       \
    return Kernels<W>::dot(n, x, y);                                           \
  }                                                                            \
  ATTR void PREFIX##Gemv(int64_t r, int64_t c, const double *M, int64_t ldm,   \
                         const double *x, double *y) {                         \
    Kernels<W>::gemv(r, c, M, ldm, x, y);                                      \
  }                                                                            \
  ATTR void PREFIX##GemvTAdd(int64_t r, int64_t c, const double *M,            \
                             int64_t ldm, const double *x, double *y) {        \
    Kernels<W>::gemvTAdd(r, c, M, ldm, x, y);                                  \
  }                                                                            \
  ATTR void PREFIX##SymvUpper(int64_t n, const double *S, int64_t lds,         \
                              const double *x, double *y) {                    \
    Kernels<W>::symvUpper(n, S, lds, x, y);                                    \
  }                                                                            \
  const Table PREFIX##Table = {                                                \
      PREFIX##GemmTN,     PREFIX##Cholesky,         PREFIX##SolveUpperT,       \
      PREFIX##SolveUpper, PREFIX##SolveUpperTMulti, PREFIX##Dot,               \
      PREFIX##Gemv,       PREFIX##GemvTAdd,         PREFIX##SymvUpper};

OPTIM_DENSE_ENTRIES(generic, , 2)
#if OPTIM_DENSE_X86
OPTIM_DENSE_ENTRIES(avx2, OPTIM_TARGET_AVX2, 4)
OPTIM_DENSE_ENTRIES(avx512, OPTIM_TARGET_AVX512, 8)
#endif

const Table &tableFor(Isa isa) {
#if OPTIM_DENSE_X86
  if (isa == Isa::Avx512)
    return avx512Table;
  if (isa == Isa::Avx2)
    return avx2Table;
#endif
  return genericTable;
}

Isa widestSupported() {
  if (isaSupported(Isa::Avx512))
    return Isa::Avx512;
  if (isaSupported(Isa::Avx2))
    return Isa::Avx2;
  return Isa::Generic;
}

Isa initialIsa() {
  Isa best = widestSupported();
  if (const char *env = std::getenv("OPTIM_DENSE_ISA")) {
    for (Isa i : {Isa::Generic, Isa::Avx2, Isa::Avx512})
      if (std::strcmp(env, isaName(i)) == 0 && isaSupported(i))
        return i;
  }
  return best;
}

std::atomic<const Table *> current{nullptr};
std::atomic<int> currentIsa{-1};

const Table &table() {
  const Table *t = current.load(std::memory_order_acquire);
  if (t)
    return *t;
  Isa i = initialIsa();
  currentIsa.store(int(i), std::memory_order_relaxed);
  current.store(&tableFor(i), std::memory_order_release);
  return tableFor(i);
}

} // namespace

const char *isaName(Isa isa) {
  switch (isa) {
  case Isa::Generic:
    return "generic";
  case Isa::Avx2:
    return "avx2";
  case Isa::Avx512:
    return "avx512";
  }
  return "unknown";
}

bool isaSupported(Isa isa) {
  if (isa == Isa::Generic)
    return true;
#if OPTIM_DENSE_X86
  __builtin_cpu_init();
  if (isa == Isa::Avx2)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::Avx512)
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return false;
}

Isa isa() {
  table();
  return Isa(currentIsa.load(std::memory_order_relaxed));
}

bool setIsa(Isa isa) {
  if (!isaSupported(isa))
    return false;
  currentIsa.store(int(isa), std::memory_order_relaxed);
  current.store(&tableFor(isa), std::memory_order_release);
  return true;
}

void gemmTN(int64_t m, int64_t n, int64_t kdim, const double *X, int64_t ldx,
            const double *Y, int64_t ldy, double *C, int64_t ldc, double alpha,
            bool upper) {
  table().gemmTN(m, n, kdim, X, ldx, Y, ldy, C, ldc, alpha, upper);
}
bool choleskyUpper(int64_t n, double *a, int64_t lda, double minPivot) {
  return table().choleskyUpper(n, a, lda, minPivot);
}
void solveUpperT(int64_t n, const double *U, int64_t ldu, double *x) {
  table().solveUpperT(n, U, ldu, x);
}
void solveUpper(int64_t n, const double *U, int64_t ldu, double *x) {
  table().solveUpper(n, U, ldu, x);
}
void solveUpperTMulti(int64_t n, int64_t nrhs, const double *U, int64_t ldu,
                      double *B, int64_t ldb) {
  table().solveUpperTMulti(n, nrhs, U, ldu, B, ldb);
}
double dot(int64_t n, const double *x, const double *y) {
  return table().dot(n, x, y);
}
void gemv(int64_t r, int64_t c, const double *M, int64_t ldm, const double *x,
          double *y) {
  table().gemv(r, c, M, ldm, x, y);
}
void gemvTAdd(int64_t r, int64_t c, const double *M, int64_t ldm,
              const double *x, double *y) {
  table().gemvTAdd(r, c, M, ldm, x, y);
}
void symvUpper(int64_t n, const double *S, int64_t lds, const double *x,
               double *y) {
  table().symvUpper(n, S, lds, x, y);
}

} // namespace dense
} // namespace optim
