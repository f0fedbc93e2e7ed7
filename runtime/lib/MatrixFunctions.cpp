//===- MatrixFunctions.cpp - functions of whole matrices ------------------===//

#include "MatrixFunctions.h"

#include "ThreadPool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <dlfcn.h>

using namespace optim;

// The products go to a single-threaded OpenBLAS when one is installed
// (Debian's libopenblas0-serial), loaded with dlopen so that the runtime
// neither links nor needs it, one call at a time. Single-threaded, because a
// threaded BLAS sums differently with its thread count (the bits would
// change from machine to machine) and ignores OptimizerOptions::threads. Loaded
// RTLD_LOCAL (and RTLD_DEEPBIND, so that a threaded BLAS the host already
// loaded cannot interpose its own functions), its symbols never meet the
// host's.
namespace {

// CBLAS's enum values (cblas.h), fixed by the standard's reference header.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float *,
                         int, const float *, int, float, float *, int);
using DgemmFn = void (*)(int, int, int, int, int, int, double,
                         const double *, int, const double *, int, double,
                         double *, int);

struct Cblas {
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
  std::string path;
};

const Cblas &cblas() {
  static const Cblas loaded = [] {
    Cblas c;
    const char *candidates[] = {
#ifdef OPTIM_SERIAL_OPENBLAS
        OPTIM_SERIAL_OPENBLAS,
#endif
        "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/openblas-serial/libopenblas.so.0",
    };
    int flags = RTLD_NOW | RTLD_LOCAL;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    // The sanitizers' runtime refuses RTLD_DEEPBIND.
#elif defined(__has_feature)
#if !__has_feature(address_sanitizer) && !__has_feature(memory_sanitizer) &&  \
    !__has_feature(thread_sanitizer)
    flags |= RTLD_DEEPBIND;
#endif
#else
    flags |= RTLD_DEEPBIND;
#endif
    for (const char *path : candidates) {
      void *handle = dlopen(path, flags);
      if (!handle)
        continue;
      // Only a build that says it is single-threaded: a threaded one sums
      // differently with its own thread count.
      auto config = reinterpret_cast<char *(*)()>(
          dlsym(handle, "openblas_get_config"));
      auto s = reinterpret_cast<SgemmFn>(dlsym(handle, "cblas_sgemm"));
      auto d = reinterpret_cast<DgemmFn>(dlsym(handle, "cblas_dgemm"));
      if (config && s && d && std::strstr(config(), "SINGLE_THREADED")) {
        c.sgemm = s;
        c.dgemm = d;
        c.path = path;
        break;
      }
      dlclose(handle);
    }
    return c;
  }();
  return loaded;
}

/// C = A op(B) through the CBLAS: M x N, inner dimension K, row-major,
/// leading dimensions lda, ldb, ldc.
void blasGemm(bool transB, int64_t M, int64_t N, int64_t K, const float *a,
              int64_t lda, const float *b, int64_t ldb, float *c,
              int64_t ldc) {
  cblas().sgemm(kRowMajor, kNoTrans, transB ? kTrans : kNoTrans, int(M),
                int(N), int(K), 1.0f, a, int(lda), b, int(ldb), 0.0f, c,
                int(ldc));
}
void blasGemm(bool transB, int64_t M, int64_t N, int64_t K, const double *a,
              int64_t lda, const double *b, int64_t ldb, double *c,
              int64_t ldc) {
  cblas().dgemm(kRowMajor, kNoTrans, transB ? kTrans : kNoTrans, int(M),
                int(N), int(K), 1.0, a, int(lda), b, int(ldb), 0.0, c,
                int(ldc));
}

/// C (M x N) = A (M x K) op(B), where op(B) is B (K x N) or B^T (B: N x K),
/// in one CBLAS call, one call at a time in the process: Debian's serial
/// OpenBLAS is built without USE_LOCKING, so two calls at once can take the
/// same packing buffer (OpenBLAS issues 1755, 2126) and silently give wrong
/// products. One whole call also keeps every entry's sum the same whatever
/// the optimizer's threads.
template <typename T>
void blasProduct(bool transB, int64_t M, int64_t N, int64_t K, const T *a,
                 const T *b, T *c) {
  static std::mutex serial;
  std::lock_guard<std::mutex> lock(serial);
  blasGemm(transB, M, N, K, a, K, b, transB ? K : N, c, N);
}

/// Rows [lo, hi) of C = A B (A: M x K, B: K x N, C: M x N, row-major),
/// each entry summed in T over k = 0 .. K - 1 in order (whatever the
/// blocking: k blocks are visited in order), so that the result does not
/// depend on how rows are split among threads.
template <typename T>
void gemmRows(int64_t lo, int64_t hi, int64_t N, int64_t K, const T *a,
              const T *b, T *c) {
  constexpr int64_t kBlock = 128, jBlock = 1024;
  for (int64_t i = lo; i < hi; ++i)
    std::fill(c + i * N, c + (i + 1) * N, T(0));
  for (int64_t j0 = 0; j0 < N; j0 += jBlock) {
    int64_t j1 = std::min(N, j0 + jBlock);
    for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
      int64_t k1 = std::min(K, k0 + kBlock);
      for (int64_t i = lo; i < hi; ++i) {
        T *ci = c + i * N;
        const T *ai = a + i * K;
        for (int64_t k = k0; k < k1; ++k) {
          T aik = ai[k];
          const T *bk = b + k * N;
          for (int64_t j = j0; j < j1; ++j)
            ci[j] += aik * bk[j];
        }
      }
    }
  }
}

/// C = A B, split by rows of C over `pool` when the product is large
/// enough to be worth waking it.
template <typename T>
void gemmNN(int64_t M, int64_t N, int64_t K, const T *a, const T *b, T *c,
            ThreadPool *pool) {
  unsigned workers = pool ? pool->size() : 1;
  if (workers <= 1 || double(M) * double(N) * double(K) < 65536.0 || M < 2) {
    gemmRows(0, M, N, K, a, b, c);
    return;
  }
  pool->run([&](unsigned w) {
    int64_t lo = M * int64_t(w) / int64_t(workers);
    int64_t hi = M * int64_t(w + 1) / int64_t(workers);
    if (lo < hi)
      gemmRows(lo, hi, N, K, a, b, c);
  });
}

/// out (cols x rows) = in^T (in: rows x cols).
template <typename T>
void transpose(const T *in, int64_t rows, int64_t cols, T *out) {
  constexpr int64_t kTile = 32;
  for (int64_t i0 = 0; i0 < rows; i0 += kTile)
    for (int64_t j0 = 0; j0 < cols; j0 += kTile)
      for (int64_t i = i0; i < std::min(rows, i0 + kTile); ++i)
        for (int64_t j = j0; j < std::min(cols, j0 + kTile); ++j)
          out[j * rows + i] = in[i * cols + j];
}

template <typename T>
void newtonSchulzImpl(T *x, int64_t R, int64_t C, const ReductionSpec &spec,
                      T *work, ThreadPool *pool, bool useCBLAS) {
  useCBLAS = useCBLAS && cblas().sgemm;
  if (R <= 0 || C <= 0)
    return;
  const bool transposed = R > C;
  const int64_t m = transposed ? C : R, n = transposed ? R : C;
  const size_t mn = size_t(m) * size_t(n), mm = size_t(m) * size_t(m);
  // Two m x n buffers (Y and the next Y), A and B: the matrix's own storage
  // is one of the former.
  T *Y = x, *Z = work;
  if (transposed) {
    transpose(x, R, C, work);
    std::swap(Y, Z);
  }
  T *A = work + mn, *B = A + mm;

  double sum = 0.0;
  for (size_t i = 0; i < mn; ++i)
    sum += double(Y[i]) * double(Y[i]);
  const T norm = T(std::sqrt(sum));
  const T divisor = std::max(norm, T(spec.nsEps));
  // A subnormal f32 eps is 0 where the host flushes subnormals (a program
  // built with -ffast-math sets FTZ/DAZ at startup): a zero matrix then
  // stays zero instead of becoming 0 / 0. Otherwise divisor >= eps > 0.
  if (divisor != T(0))
    for (size_t i = 0; i < mn; ++i)
      Y[i] = Y[i] / divisor;

  const T a = T(spec.nsCoefficients[0]), b = T(spec.nsCoefficients[1]),
          c = T(spec.nsCoefficients[2]);
  for (int step = 0; step < spec.nsSteps; ++step) {
    if (useCBLAS) {
      blasProduct(/*transB=*/true, m, m, n, Y, Y, A); // A = Y Y^T
      blasProduct(false, m, m, m, A, A, B);           // A A
    } else {
      transpose(Y, m, n, Z); // Z is free until Y's next value goes there.
      gemmNN(m, m, n, Y, Z, A, pool);
      gemmNN(m, m, m, A, A, B, pool);
    }
    for (size_t i = 0; i < mm; ++i)
      B[i] = b * A[i] + c * B[i];
    if (useCBLAS) {
      blasProduct(false, m, n, m, B, Y, Z); // B Y
    } else {
      gemmNN(m, n, m, B, Y, Z, pool);
    }
    for (size_t i = 0; i < mn; ++i)
      Z[i] = a * Y[i] + Z[i];
    std::swap(Y, Z);
  }

  if (!transposed) {
    if (Y != x)
      std::memcpy(x, Y, mn * sizeof(T));
    return;
  }
  // x = Y^T, from a buffer other than x.
  if (Y == x) {
    std::memcpy(work, x, mn * sizeof(T));
    Y = work;
  }
  transpose(Y, m, n, x);
}

} // namespace

static void newtonSchulzVJPImpl(const double *x, const double *dy,
                                double *dx, int64_t R, int64_t C,
                                const ReductionSpec &spec, bool useCBLAS) {
  useCBLAS = useCBLAS && cblas().dgemm;
  if (R <= 0 || C <= 0)
    return;
  const bool transposed = R > C;
  const int64_t m = transposed ? C : R, n = transposed ? R : C;
  const size_t mn = size_t(m) * size_t(n), mm = size_t(m) * size_t(m);
  std::vector<double> X(mn), G(mn);
  if (transposed) {
    transpose(x, R, C, X.data());
    transpose(dy, R, C, G.data());
  } else {
    std::copy_n(x, mn, X.data());
    std::copy_n(dy, mn, G.data());
  }
  double sum = 0.0;
  for (double v : X)
    sum += v * v;
  const double norm = std::sqrt(sum);
  const double divisor = std::max(norm, spec.nsEps);
  const double a = spec.nsCoefficients[0], b = spec.nsCoefficients[1],
               c = spec.nsCoefficients[2];
  const int steps = spec.nsSteps;
  // The iterates Y_0 .. Y_k and each step's A = Y Y^T and B = b A + c A A
  // (symmetric).
  const size_t k = size_t(std::max(steps, 0));
  std::vector<std::vector<double>> Y(k + 1, std::vector<double>(mn));
  std::vector<std::vector<double>> A(k, std::vector<double>(mm));
  std::vector<std::vector<double>> B(k, std::vector<double>(mm));
  std::vector<double> Yt(mn), Z(mn), T1(mm), T2(mm);
  // C (M x N) = A (M x K) op(B), op(B) = B (K x N) or B^T (B: N x K): one
  // dgemm call (one at a time in the process, as the forward pass's), or
  // the runtime's loops, a transposed B going through Yt (only Y's and G's
  // are transposed: m x n).
  auto product = [&](bool transB, int64_t M, int64_t N, int64_t K,
                     const double *a, const double *bm, double *out) {
    if (useCBLAS) {
      blasProduct(transB, M, N, K, a, bm, out);
      return;
    }
    if (transB) {
      transpose(bm, N, K, Yt.data());
      bm = Yt.data();
    }
    gemmNN(M, N, K, a, bm, out, nullptr);
  };
  for (size_t i = 0; i < mn; ++i)
    Y[0][i] = divisor != 0 ? X[i] / divisor : X[i];
  for (int s = 0; s < steps; ++s) {
    product(/*transB=*/true, m, m, n, Y[s].data(), Y[s].data(), A[s].data());
    product(false, m, m, m, A[s].data(), A[s].data(), T1.data());
    for (size_t i = 0; i < mm; ++i)
      B[s][i] = b * A[s][i] + c * T1[i];
    product(false, m, n, m, B[s].data(), Y[s].data(), Z.data());
    for (size_t i = 0; i < mn; ++i)
      Y[s + 1][i] = a * Y[s][i] + Z[i];
  }
  // Y' = a Y + B Y: dY = a G + B G + (dA + dA^T) Y with dB = G Y^T and
  // dA = b dB + c (dB A + A dB) (A and B symmetric).
  std::vector<double> dB(mm), dA(mm), Gn(mn);
  for (int s = steps - 1; s >= 0; --s) {
    product(/*transB=*/true, m, m, n, G.data(), Y[s].data(), dB.data());
    product(false, m, n, m, B[s].data(), G.data(), Gn.data());
    for (size_t i = 0; i < mn; ++i)
      Gn[i] += a * G[i];
    product(false, m, m, m, dB.data(), A[s].data(), T1.data());
    product(false, m, m, m, A[s].data(), dB.data(), T2.data());
    for (size_t i = 0; i < mm; ++i)
      dA[i] = b * dB[i] + c * (T1[i] + T2[i]);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j)
        T1[size_t(i * m + j)] = dA[size_t(i * m + j)] + dA[size_t(j * m + i)];
    product(false, m, n, m, T1.data(), Y[s].data(), Z.data());
    for (size_t i = 0; i < mn; ++i)
      G[i] = Gn[i] + Z[i];
  }
  // Y_0 = X / max(|X|, eps): the norm's term where it is the divisor.
  std::vector<double> D(mn);
  if (norm > spec.nsEps) {
    double dot = 0.0;
    for (size_t i = 0; i < mn; ++i)
      dot += G[i] * X[i];
    for (size_t i = 0; i < mn; ++i)
      D[i] = G[i] / norm - X[i] * (dot / (norm * norm * norm));
  } else {
    for (size_t i = 0; i < mn; ++i)
      D[i] = divisor != 0 ? G[i] / divisor : G[i];
  }
  if (transposed)
    transpose(D.data(), m, n, dx);
  else
    std::copy_n(D.data(), mn, dx);
}

void detail::newtonSchulzVJP(const double *x, const double *dy, double *dx,
                             int64_t R, int64_t C, const ReductionSpec &spec) {
  newtonSchulzVJPImpl(x, dy, dx, R, C, spec, /*useCBLAS=*/true);
}

void detail::newtonSchulzVJPPortable(const double *x, const double *dy,
                                     double *dx, int64_t R, int64_t C,
                                     const ReductionSpec &spec) {
  newtonSchulzVJPImpl(x, dy, dx, R, C, spec, /*useCBLAS=*/false);
}

size_t detail::newtonSchulzWorkCount(int64_t R, int64_t C) {
  if (R <= 0 || C <= 0)
    return 0;
  size_t m = size_t(std::min(R, C)), n = size_t(std::max(R, C));
  return m * n + 2 * m * m;
}

void detail::newtonSchulz(float *x, int64_t R, int64_t C,
                          const ReductionSpec &spec, float *work,
                          ThreadPool *pool) {
  newtonSchulzImpl(x, R, C, spec, work, pool, true);
}

void detail::newtonSchulz(double *x, int64_t R, int64_t C,
                          const ReductionSpec &spec, double *work,
                          ThreadPool *pool) {
  newtonSchulzImpl(x, R, C, spec, work, pool, true);
}

void detail::newtonSchulzPortable(float *x, int64_t R, int64_t C,
                                  const ReductionSpec &spec, float *work,
                                  ThreadPool *pool) {
  newtonSchulzImpl(x, R, C, spec, work, pool, false);
}

void detail::newtonSchulzPortable(double *x, int64_t R, int64_t C,
                                  const ReductionSpec &spec, double *work,
                                  ThreadPool *pool) {
  newtonSchulzImpl(x, R, C, spec, work, pool, false);
}

bool detail::matrixFunctionsUseCBLAS() { return cblas().sgemm != nullptr; }

std::string detail::matrixFunctionsCBLAS() { return cblas().path; }
