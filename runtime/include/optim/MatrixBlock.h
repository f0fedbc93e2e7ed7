//===- MatrixBlock.h - newton_schulz's block kernels (CUDA and emulated) --===//
//
// What one thread block of the CUDA matrix kernels does (KernelABI.h,
// "Matrix functions on CUDA"): a tile of a general matrix product, a slice
// of a sum of squares, a slice of a scaled strided copy. The CUDA runtime
// runs NS(X) of each matrix as a sequence of these launches. On a GPU a
// team is a thread block of kThreads threads (lib/Device/MatrixNVPTX.cpp);
// the runtime's tests and the fake driver run the same code with one CPU
// thread standing for all of them (Team::kPer == kThreads), so the fakes
// compute what a device computes, bit for bit:
// - every product entry is one chain of fused multiply-adds over k < K in
//   ascending order, from +0, then alpha * acc, then fma(beta, D, that):
//   written with explicit fma, so no compiler contracts anything else;
// - the sum of squares is a fixed tree over kThreads slots per block and
//   the blocks' partials summed in order by every thread that needs them.
// A team's thread `tid` stands for the kPer virtual threads tid * kPer + v;
// the sum over them is kThreads. Every loop over virtual threads sits
// between team.sync() calls, so one thread doing all of them in turn
// computes what kThreads threads do at once.
//
// Freestanding C++17 (clang compiles it for NVPTX as well as for the host).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_MATRIXBLOCK_H
#define OPTIM_MATRIXBLOCK_H

#include <stdint.h>

namespace optim {
namespace matrixblock {

/// Threads of every matrix kernel's block (blockDim.x).
constexpr int kThreads = 256;
/// A product block computes a kTile x kTile tile of C, kDepth columns of A
/// and rows of B at a time; thread (ty, tx) of the 16 x 16 block computes
/// rows 4 ty + u and columns 4 tx + w, u, w < kPerSide: its four values of
/// each shared tile row are adjacent, one 128-bit shared load on a GPU
/// (with 2 of them feeding 16 FMAs, the loop is not bound by shared loads).
constexpr int kTile = 64, kDepth = 16, kSide = 16, kPerSide = 4;
/// Shared tile rows are kTile + 4 elements apart: a multiple of four, so
/// that those loads stay 16-byte aligned, and not of the 32 banks, so that
/// neither loading mapping stores a warp's elements into a few banks.
constexpr int kStride = kTile + 4;
/// Blocks of a sum of squares (fewer for small matrices: sumBlocks).
constexpr int kSumBlocks = 64;

/// Dynamic shared memory of a product launch, in bytes.
constexpr int64_t gemmSharedBytes(int64_t eltBytes) {
  return 2 * int64_t(kDepth) * kStride * eltBytes;
}
/// Dynamic shared memory of a sum-of-squares launch (one double per
/// thread).
constexpr int64_t kSumSharedBytes = int64_t(kThreads) * 8;
/// The blocks of a sum of squares over n > 0 elements.
constexpr int64_t sumBlocks(int64_t n) {
  return (n + kThreads - 1) / kThreads < kSumBlocks
             ? (n + kThreads - 1) / kThreads
             : kSumBlocks;
}

inline float fmaT(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double fmaT(double a, double b, double c) {
  return __builtin_fma(a, b, c);
}

/// Tile (bi, bj) of C (M x N, row-major, contiguous) = alpha (A B) + beta D,
/// where A(i, k) = A[i * ars + k * acs], B(k, j) = B[k * brs + j * bcs] and
/// D is laid out as C (not read when null: C = alpha A B). C must not
/// overlap A, B or D. `shared`: gemmSharedBytes(sizeof(T)) bytes, 16-byte
/// aligned.
template <typename T, typename Team>
void gemmBlock(Team &team, int64_t bi, int64_t bj, int64_t M, int64_t N,
               int64_t K, T alpha, const T *A, int64_t ars, int64_t acs,
               const T *B, int64_t brs, int64_t bcs, T beta, const T *D, T *C,
               T *shared) {
  constexpr int P = Team::kPer;
  static_assert(P >= 1 && kThreads % P == 0, "a team covers kThreads");
  constexpr int kLoads = kTile * kDepth / kThreads;
  T *As = shared, *Bs = shared + kDepth * kStride;
  const int64_t i0 = bi * kTile, j0 = bj * kTile;
  // Consecutive threads read consecutive addresses of whichever stride is
  // 1 (a transposed operand comes as strides (1, ld)); where the tile goes
  // in shared memory does not depend on it.
  const bool aAlongK = acs == 1, bAlongJ = bcs == 1 || brs != 1;
  T acc[P][kPerSide][kPerSide];
  for (int v = 0; v < P; ++v)
    for (int u = 0; u < kPerSide; ++u)
      for (int w = 0; w < kPerSide; ++w)
        acc[v][u][w] = T(0);
  for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
    for (int v = 0; v < P; ++v) {
      const int t = team.tid * P + v;
      for (int q = 0; q < kLoads; ++q) {
        const int e = t + q * kThreads;
        const int r = aAlongK ? e / kDepth : e % kTile;
        const int ka = aAlongK ? e % kDepth : e / kTile;
        const int64_t i = i0 + r, k = k0 + ka;
        As[ka * kStride + r] = i < M && k < K ? A[i * ars + k * acs] : T(0);
        const int c = bAlongJ ? e % kTile : e / kDepth;
        const int kb = bAlongJ ? e / kTile : e % kDepth;
        const int64_t kk = k0 + kb, j = j0 + c;
        Bs[kb * kStride + c] = kk < K && j < N ? B[kk * brs + j * bcs] : T(0);
      }
    }
    team.sync();
    // Step kk of the tile: its products into the accumulators. The last tile
    // stops at K, not at its zero padding, whose fma(0, 0, -0) would give
    // +0: each entry is the chain over k < K exactly (the bound is the same
    // for every thread, as the barriers need).
    auto step = [&](int v, int kk) {
      const int t = team.tid * P + v, ty = t / kSide, tx = t % kSide;
      // 16-byte aligned (kStride and the offsets are multiples of 4
      // elements, `shared` is 16-byte aligned): said so, the loads merge
      // into 128-bit ones.
      const T *ar = static_cast<const T *>(
          __builtin_assume_aligned(As + kk * kStride + kPerSide * ty, 16));
      const T *br = static_cast<const T *>(
          __builtin_assume_aligned(Bs + kk * kStride + kPerSide * tx, 16));
      T a[kPerSide], b[kPerSide];
      for (int u = 0; u < kPerSide; ++u)
        a[u] = ar[u];
      for (int w = 0; w < kPerSide; ++w)
        b[w] = br[w];
      for (int u = 0; u < kPerSide; ++u)
        for (int w = 0; w < kPerSide; ++w)
          acc[v][u][w] = fmaT(a[u], b[w], acc[v][u][w]);
    };
    if (K - k0 >= kDepth) {
      for (int v = 0; v < P; ++v)
        for (int kk = 0; kk < kDepth; ++kk)
          step(v, kk);
    } else {
      const int depth = int(K - k0);
      for (int v = 0; v < P; ++v)
        for (int kk = 0; kk < depth; ++kk)
          step(v, kk);
    }
    team.sync();
  }
  for (int v = 0; v < P; ++v) {
    const int t = team.tid * P + v, ty = t / kSide, tx = t % kSide;
    for (int u = 0; u < kPerSide; ++u)
      for (int w = 0; w < kPerSide; ++w) {
        const int64_t i = i0 + kPerSide * ty + u, j = j0 + kPerSide * tx + w;
        if (i >= M || j >= N)
          continue;
        T r = alpha * acc[v][u][w];
        if (D)
          r = fmaT(beta, D[i * N + j], r);
        C[i * N + j] = r;
      }
  }
}

/// Block (z, bi, bj) of a product launch (KernelABI.h, "Matrix functions on
/// CUDA"): matrix z / S of the batch (operands s* elements apart), and, when
/// K is split in S = ceil(K / kc) slices of kc (kc < K), slice z % S: the
/// chain over its k into P (M x N per matrix and slice, matrix-major), for
/// combineBlock to finish. Without a split, gemmBlock into C.
template <typename T, typename Team>
void gemmSplitBlock(Team &team, int64_t z, int64_t bi, int64_t bj, int64_t M,
                    int64_t N, int64_t K, T alpha, const T *A, int64_t ars,
                    int64_t acs, int64_t sA, const T *B, int64_t brs,
                    int64_t bcs, int64_t sB, T beta, const T *D, int64_t sD,
                    T *C, int64_t sC, int64_t kc, T *P, T *shared) {
  const int64_t S = kc > 0 && kc < K ? (K + kc - 1) / kc : 1;
  const int64_t matrix = z / S, slice = z - matrix * S;
  A += matrix * sA;
  B += matrix * sB;
  if (S == 1) {
    gemmBlock<T>(team, bi, bj, M, N, K, alpha, A, ars, acs, B, brs, bcs, beta,
                 D ? D + matrix * sD : D, C + matrix * sC, shared);
    return;
  }
  const int64_t k0 = slice * kc, len = K - k0 < kc ? K - k0 : kc;
  gemmBlock<T>(team, bi, bj, M, N, len, T(1), A + k0 * acs, ars, acs,
               B + k0 * brs, brs, bcs, T(0), nullptr, P + z * M * N, shared);
}

/// Block `block` of `blocks` (grid-stride) of matrix z's
/// C = alpha (P_0 + P_1 + ... + P_{S-1}) + beta D, the slices of a split
/// product summed in order (P_s at P + (z S + s) M N), then fma(beta, D, .)
/// as gemmBlock's epilogue; D (or NULL) and C at z sD and z sC.
template <typename T, typename Team>
void combineBlock(Team &team, int64_t z, int64_t block, int64_t blocks,
                  int64_t M, int64_t N, T alpha, const T *P, int64_t S, T beta,
                  const T *D, int64_t sD, T *C, int64_t sC) {
  constexpr int Per = Team::kPer;
  const int64_t count = M * N;
  const T *first = P + z * S * count;
  for (int v = 0; v < Per; ++v) {
    const int t = team.tid * Per + v;
    for (int64_t e = block * kThreads + t; e < count; e += blocks * kThreads) {
      T acc = first[e];
      for (int64_t s = 1; s < S; ++s)
        acc = acc + first[s * count + e];
      T r = alpha * acc;
      if (D)
        r = fmaT(beta, D[z * sD + e], r);
      C[z * sC + e] = r;
    }
  }
}

/// Block `block` of `blocks` of the sum of squares of x[0, n), in double:
/// thread t accumulates x[block * kThreads + t + s * blocks * kThreads] in
/// order, a tree of fixed shape combines the threads, and thread 0 writes
/// partials[block]. `shared`: kSumSharedBytes bytes.
template <typename T, typename Team>
void sumSquaresBlock(Team &team, int64_t block, int64_t blocks, const T *x,
                     int64_t n, double *partials, double *shared) {
  constexpr int P = Team::kPer;
  for (int v = 0; v < P; ++v) {
    const int t = team.tid * P + v;
    double acc = 0.0;
    for (int64_t i = block * kThreads + t; i < n; i += blocks * kThreads)
      acc = fmaT(double(x[i]), double(x[i]), acc);
    shared[t] = acc;
  }
  team.sync();
  for (int s = kThreads / 2; s > 0; s /= 2) {
    for (int v = 0; v < P; ++v) {
      const int t = team.tid * P + v;
      if (t < s)
        shared[t] = shared[t] + shared[t + s];
    }
    team.sync();
  }
  if (team.tid == 0)
    partials[block] = shared[0];
}

/// Block `block` of `blocks` of y(i, j) = x(i, j) / d over an m x n index
/// space, y(i, j) at y[i * yrs + j * ycs] and x(i, j) at x[i * xrs + j *
/// xcs]: with numPartials > 0, d = max(T(sqrt(sum of partials in order)),
/// T(eps)) and no division where d is 0 (KernelABI.h: NS's scaling); with
/// none, a plain copy. y must not overlap x.
template <typename T, typename Team>
void scaleBlock(Team &team, int64_t block, int64_t blocks, T *y, int64_t yrs,
                int64_t ycs, const T *x, int64_t xrs, int64_t xcs, int64_t m,
                int64_t n, const double *partials, int64_t numPartials,
                double eps) {
  constexpr int P = Team::kPer;
  T divisor = T(1);
  bool scale = false;
  if (numPartials > 0) {
    double sum = 0.0;
    for (int64_t p = 0; p < numPartials; ++p)
      sum = sum + partials[p];
    const T norm = T(__builtin_sqrt(sum)), floor = T(eps);
    divisor = norm < floor ? floor : norm; // std::max(norm, floor)
    scale = divisor != T(0);
  }
  const int64_t count = m * n;
  for (int v = 0; v < P; ++v) {
    const int t = team.tid * P + v;
    for (int64_t e = block * kThreads + t; e < count; e += blocks * kThreads) {
      const int64_t i = e / n, j = e - i * n;
      const T value = x[i * xrs + j * xcs];
      y[i * yrs + j * ycs] = scale ? value / divisor : value;
    }
  }
}

} // namespace matrixblock
} // namespace optim

#endif // OPTIM_MATRIXBLOCK_H
