//===- CudaMatrix.cpp - newton_schulz as a sequence of CUDA launches ------===//
//
// The order of KernelABI.h "Matrix functions on CUDA": one sum of squares,
// one scaled copy into the work buffer (transposing when R > C), three
// products per step, one copy back; each launch covers a group of matrices
// (grid z). Each launch's arguments are the kernel's in the ABI's order;
// scalars of the element type go by value as that type.
//
//===----------------------------------------------------------------------===//

#include "CudaMatrix.h"

#include "optim/MatrixBlock.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace optim;
using namespace optim::cuda;
namespace mb = optim::matrixblock;

namespace {

/// Launches on one stream with 256-thread blocks; the T-typed scalars are
/// stored as T.
struct Launcher {
  const DriverAPI &d;
  CUstream stream;
  DType dtype;

  void run(CUfunction fn, const char *name, unsigned gx, unsigned gy,
           unsigned gz, int64_t shared, std::vector<void *> args) const {
    CUresult r =
        d.cuLaunchKernel(fn, gx, gy, gz, mb::kThreads, 1, 1, unsigned(shared),
                         stream, args.data(), nullptr);
    // The call's name only when it failed: launches are many.
    if (r != 0)
      d.check(r, (std::string("cuLaunchKernel(" OPTIM_MATRIX_SYMBOL_PREFIX) +
                  name + (dtype == DType::F32 ? "_f32)" : "_f64)"))
                     .c_str());
  }
};

/// A T scalar as the launch passes it.
struct Scalar {
  float f;
  double d;
  Scalar(double v) : f(float(v)), d(v) {}
  void *ptr(DType t) { return t == DType::F32 ? static_cast<void *>(&f) : &d; }
};

unsigned blocksOf(int64_t count) {
  // Grid-stride kernels: enough blocks to fill a device, no more.
  return unsigned(
      std::clamp<int64_t>((count + mb::kThreads - 1) / mb::kThreads, 1, 4096));
}

} // namespace

int64_t cuda::newtonSchulzWork(int64_t R, int64_t C) {
  const int64_t m = std::min(R, C), n = std::max(R, C);
  return 2 * m * n + 2 * m * m;
}

int64_t cuda::newtonSchulzGroup(int64_t count, int64_t R, int64_t C) {
  const int64_t budget = int64_t(1) << 22;
  const int64_t each = std::max<int64_t>(newtonSchulzWork(R, C), 1);
  return std::max<int64_t>(1, std::min({count, int64_t(65535),
                                        std::max<int64_t>(budget / each, 1)}));
}

int64_t cuda::splitDepth(int64_t blocks, int64_t K, int64_t sms,
                         int64_t maxSlices) {
  if (blocks <= 0 || K <= 0 || blocks >= sms)
    return K;
  const int64_t S =
      std::min({(2 * sms + blocks - 1) / blocks, K / 256, maxSlices});
  if (S <= 1)
    return K;
  return (K + S - 1) / S;
}

static int64_t tilesOf(int64_t count) {
  return (count + mb::kTile - 1) / mb::kTile;
}

int64_t cuda::newtonSchulzSlices(int64_t group, int64_t R, int64_t C,
                                 int64_t sms) {
  const int64_t m = std::min(R, C), n = std::max(R, C);
  const int64_t blocks = tilesOf(m) * tilesOf(m) * group;
  int64_t most = 0;
  for (int64_t K : {n, m}) {
    const int64_t kc = splitDepth(blocks, K, sms, INT64_MAX);
    if (kc < K)
      most = std::max(most, (K + kc - 1) / kc);
  }
  return most * group * m * m;
}

void cuda::enqueueNewtonSchulz(const DriverAPI &d, const Rule::MatrixKernels &k,
                               CUstream stream, DType dtype, CUdeviceptr x,
                               int64_t count, int64_t R, int64_t C,
                               const ReductionSpec &spec, int64_t group,
                               CUdeviceptr work, CUdeviceptr partials,
                               CUdeviceptr slices, int64_t sliceCapacity,
                               int64_t sms) {
  if (R <= 0 || C <= 0 || count <= 0)
    return;
  const Launcher launch{d, stream, dtype};
  const size_t elt = dtypeSize(dtype);
  const bool transposed = R > C;
  // Launch arguments are addresses of non-const locals.
  int64_t m = transposed ? C : R, n = transposed ? R : C;
  // X's element (i, j) of Y = X^T (or X) is at x[i * xrs + j * xcs]; the
  // next matrix's at sx more.
  int64_t xrs = transposed ? 1 : C, xcs = transposed ? C : 1, sx = R * C;
  int64_t mn = m * n, mm = m * m, one = 1, zero = 0;
  CUdeviceptr null = 0;
  Scalar a(spec.nsCoefficients[0]), b(spec.nsCoefficients[1]),
      c(spec.nsCoefficients[2]), unit(1.0), nothing(0.0);
  double eps = spec.nsEps;
  int64_t sumBlocks = mb::sumBlocks(mn);
  const int64_t shared = mb::gemmSharedBytes(int64_t(elt));
  auto tiles = [](int64_t count) { return unsigned(tilesOf(count)); };
  for (int64_t first = 0; first < count; first += group) {
    const unsigned g = unsigned(std::min(group, count - first));
    CUdeviceptr X = x + size_t(first) * size_t(sx) * elt;
    // The group's scratch: its Ys, then Zs, As and Bs, each matrix's
    // mn or mm elements after the previous one's.
    CUdeviceptr Y = work, Z = work + size_t(g) * size_t(mn) * elt;
    CUdeviceptr A = Z + size_t(g) * size_t(mn) * elt;
    CUdeviceptr B = A + size_t(g) * size_t(mm) * elt;

    // s = ||X||_F, then Y = X / max(s, eps).
    launch.run(k.sumSquares, "sumsq", unsigned(sumBlocks), 1, g,
               mb::kSumSharedBytes, {&X, &mn, &sx, &partials});
    launch.run(k.scale, "scale", blocksOf(mn), 1, g, 0,
               {&Y, &n, &one, &mn, &X, &xrs, &xcs, &sx, &m, &n, &partials,
                &sumBlocks, &eps});
    // C = alpha (A B) + beta D for each matrix of the group (M x N over K,
    // operands s* apart), K in slices of kc when kc < K: their products
    // summed in order by a combine launch. The arguments are this call's
    // own copies, whose addresses the launches take.
    auto product = [&](int64_t M, int64_t N, int64_t K, int64_t kc, void *alpha,
                       CUdeviceptr Ap, int64_t ars, int64_t acs, int64_t sA,
                       CUdeviceptr Bp, int64_t brs, int64_t bcs, int64_t sB,
                       void *beta, CUdeviceptr D, int64_t sD, CUdeviceptr out,
                       int64_t sC) {
      int64_t S = (K + kc - 1) / kc;
      launch.run(k.gemm, "gemm", tiles(N), tiles(M), unsigned(g * S), shared,
                 {&M, &N, &K, alpha, &Ap, &ars, &acs, &sA, &Bp, &brs, &bcs, &sB,
                  beta, &D, &sD, &out, &sC, &kc, &slices});
      if (S > 1)
        launch.run(k.combine, "combine", blocksOf(M * N), 1, g, 0,
                   {&M, &N, alpha, &slices, &S, beta, &D, &sD, &out, &sC});
    };
    // The m x m products (over n, then over m) have few tiles when m is
    // small: split, unless the group's tiles already fill the device.
    const int64_t mTiles = tilesOf(m) * tilesOf(m) * int64_t(g);
    const int64_t fits = sliceCapacity / (int64_t(g) * mm);
    const int64_t kcN = splitDepth(mTiles, n, sms, fits);
    const int64_t kcM = splitDepth(mTiles, m, sms, fits);
    for (int step = 0; step < spec.nsSteps; ++step) {
      // A = Y Y^T: B(k, j) = Y(j, k).
      product(m, m, n, kcN, unit.ptr(dtype), Y, n, 1, mn, Y, 1, n, mn,
              nothing.ptr(dtype), null, 0, A, mm);
      // B = c (A A) + b A.
      product(m, m, m, kcM, c.ptr(dtype), A, m, 1, mm, A, m, 1, mm,
              b.ptr(dtype), A, mm, B, mm);
      // Z = B Y + a Y, the next Y (m x n tiles: no split).
      product(m, n, m, m, unit.ptr(dtype), B, m, 1, mm, Y, n, 1, mn,
              a.ptr(dtype), Y, mn, Z, mn);
      std::swap(Y, Z);
    }
    // The results back into X (transposed back when R > C).
    launch.run(
        k.scale, "scale", blocksOf(mn), 1, g, 0,
        {&X, &xrs, &xcs, &sx, &Y, &n, &one, &mn, &m, &n, &null, &zero, &eps});
  }
}
