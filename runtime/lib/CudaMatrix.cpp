//===- CudaMatrix.cpp - newton_schulz as a sequence of CUDA launches ------===//
//
// The order of KernelABI.h "Matrix functions on CUDA": one sum of squares,
// one scaled copy into the work buffer (transposing when R > C), three
// products per step, one copy back. Each launch's arguments are the
// kernel's in the ABI's order; scalars of the element type go by value as
// that type.
//
//===----------------------------------------------------------------------===//

#include "CudaMatrix.h"

#include "optim/MatrixBlock.h"

#include <algorithm>
#include <string>
#include <utility>

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
           int64_t shared, std::vector<void *> args) const {
    CUresult r =
        d.cuLaunchKernel(fn, gx, gy, 1, mb::kThreads, 1, 1, unsigned(shared),
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

void cuda::enqueueNewtonSchulz(const DriverAPI &d, const Rule::MatrixKernels &k,
                               CUstream stream, DType dtype, CUdeviceptr x,
                               int64_t R, int64_t C, const ReductionSpec &spec,
                               CUdeviceptr work, CUdeviceptr partials) {
  if (R <= 0 || C <= 0)
    return;
  const Launcher launch{d, stream, dtype};
  const size_t elt = dtypeSize(dtype);
  const bool transposed = R > C;
  // Launch arguments are addresses of non-const locals.
  int64_t m = transposed ? C : R, n = transposed ? R : C;
  // X's element (i, j) of Y = X^T (or X) is at x[i * xrs + j * xcs].
  int64_t xrs = transposed ? 1 : C, xcs = transposed ? C : 1;
  int64_t mn = m * n, one = 1, zero = 0;
  CUdeviceptr Y = work, Z = work + size_t(mn) * elt;
  CUdeviceptr A = Z + size_t(mn) * elt, B = A + size_t(m * m) * elt;
  CUdeviceptr null = 0;

  // s = ||X||_F, then Y = X / max(s, eps) in the work buffer.
  int64_t sumBlocks = mb::sumBlocks(mn);
  launch.run(k.sumSquares, "sumsq", unsigned(sumBlocks), 1, mb::kSumSharedBytes,
             {&x, &mn, &partials});
  double eps = spec.nsEps;
  launch.run(
      k.scale, "scale", blocksOf(mn), 1, 0,
      {&Y, &n, &one, &x, &xrs, &xcs, &m, &n, &partials, &sumBlocks, &eps});

  Scalar a(spec.nsCoefficients[0]), b(spec.nsCoefficients[1]),
      c(spec.nsCoefficients[2]), unit(1.0), nothing(0.0);
  const int64_t shared = mb::gemmSharedBytes(int64_t(elt));
  auto tiles = [](int64_t count) {
    return unsigned((count + mb::kTile - 1) / mb::kTile);
  };
  for (int step = 0; step < spec.nsSteps; ++step) {
    // A = Y Y^T: B(k, j) = Y(j, k).
    launch.run(k.gemm, "gemm", tiles(m), tiles(m), shared,
               {&m, &m, &n, unit.ptr(dtype), &Y, &n, &one, &Y, &one, &n,
                nothing.ptr(dtype), &null, &A});
    // B = c (A A) + b A.
    launch.run(k.gemm, "gemm", tiles(m), tiles(m), shared,
               {&m, &m, &m, c.ptr(dtype), &A, &m, &one, &A, &m, &one,
                b.ptr(dtype), &A, &B});
    // Z = B Y + a Y, the next Y.
    launch.run(k.gemm, "gemm", tiles(n), tiles(m), shared,
               {&m, &n, &m, unit.ptr(dtype), &B, &m, &one, &Y, &n, &one,
                a.ptr(dtype), &Y, &Z});
    std::swap(Y, Z);
  }
  // The result back into X (transposed back when R > C).
  launch.run(k.scale, "scale", blocksOf(mn), 1, 0,
             {&x, &xrs, &xcs, &Y, &n, &one, &m, &n, &null, &zero, &eps});
}
