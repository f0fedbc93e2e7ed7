//===- CudaMatrixTest.cpp - newton_schulz on CUDA, without a device -------===//
//
// KernelABI.h "Matrix functions on CUDA". The block code of the module's
// matrix kernels (optim/MatrixBlock.h) runs here on one CPU thread standing
// for a block's 256: its products must be the fused multiply-add chains the
// ABI promises, bit for bit, on awkward sizes and strides. Then a fake
// driver runs those blocks where the kernels would run, and the hand-written
// kernels of a small rule with a matrix function where its rule and reduce
// kernels would, so that cuda::Optimizer (matrix buffers in the chunk
// table, the launch sequence of NS(X), stream order) must give what
// optim::Optimizer gives on the same rule, to the rounding of the products'
// other summation order.
//
//===----------------------------------------------------------------------===//

#include "../lib/CudaMatrix.h"
#include "CudaVsCpu.h"
#include "FakeDriver.h"
#include "optim/Manifest.h"
#include "optim/MatrixBlock.h"
#include "optim/Optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

using namespace optim;
using namespace optim::cuda;
namespace mb = optim::matrixblock;

namespace {

/// All of a block's threads on one CPU thread.
struct CpuTeam {
  static constexpr int kPer = mb::kThreads;
  int tid = 0;
  void sync() {}
};

/// Every block of a product launch.
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t ars,
          int64_t acs, const T *B, int64_t brs, int64_t bcs, T beta, const T *D,
          T *C) {
  std::vector<T> shared(mb::gemmSharedBytes(sizeof(T)) / sizeof(T));
  CpuTeam team;
  for (int64_t bi = 0; bi < (M + mb::kTile - 1) / mb::kTile; ++bi)
    for (int64_t bj = 0; bj < (N + mb::kTile - 1) / mb::kTile; ++bj)
      mb::gemmBlock<T>(team, bi, bj, M, N, K, alpha, A, ars, acs, B, brs, bcs,
                       beta, D, C, shared.data());
}

template <typename T> void expectProductsAreFmaChains() {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  struct Case {
    int64_t M, N, K;
    bool transA, transB, withD;
  };
  const Case cases[] = {
      {1, 1, 1, false, false, false},   {1, 7, 3, false, true, true},
      {63, 65, 17, false, false, true}, {64, 64, 64, true, false, false},
      {130, 70, 129, true, true, true}, {5, 200, 1, false, true, false},
      {3, 3, 0, false, false, true}};
  for (const Case &c : cases) {
    SCOPED_TRACE(std::to_string(c.M) + "x" + std::to_string(c.N) + "x" +
                 std::to_string(c.K));
    std::vector<T> A(c.M * c.K), B(c.K * c.N), D(c.M * c.N), C(c.M * c.N);
    for (T &x : A)
      x = T(u(rng));
    for (T &x : B)
      x = T(u(rng));
    for (T &x : D)
      x = T(u(rng));
    // A transposed operand is stored K x M (N x K) and read with strides
    // (1, ld), as NS reads Y^T.
    int64_t ars = c.transA ? 1 : c.K, acs = c.transA ? c.M : 1;
    int64_t brs = c.transB ? 1 : c.N, bcs = c.transB ? c.K : 1;
    const T alpha = T(0.75), beta = T(-1.25);
    gemm<T>(c.M, c.N, c.K, alpha, A.data(), ars, acs, B.data(), brs, bcs, beta,
            c.withD ? D.data() : nullptr, C.data());
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) {
        T acc = T(0);
        for (int64_t k = 0; k < c.K; ++k)
          acc = std::fma(A[i * ars + k * acs], B[k * brs + j * bcs], acc);
        T want = alpha * acc;
        if (c.withD)
          want = std::fma(beta, D[i * c.N + j], want);
        ASSERT_EQ(0, std::memcmp(&want, &C[i * c.N + j], sizeof(T)))
            << "C(" << i << ", " << j << ") = " << C[i * c.N + j] << ", want "
            << want;
      }
  }
}

TEST(MatrixBlock, ProductsAreFmaChainsF32) {
  expectProductsAreFmaChains<float>();
}

TEST(MatrixBlock, AChainEndingAtMinusZeroStaysThere) {
  // (-1e-30) (1e-30) underflows to -0 in f32; K = 1 leaves 15 steps of the
  // tile's zero padding, which must not run (fma(0, 0, -0) = +0).
  const float A = -1e-30f, B = 1e-30f;
  float C = 1.f;
  gemm<float>(1, 1, 1, 1.f, &A, 1, 1, &B, 1, 1, 0.f, nullptr, &C);
  EXPECT_EQ(C, 0.f);
  EXPECT_TRUE(std::signbit(C));
}
TEST(MatrixBlock, ProductsAreFmaChainsF64) {
  expectProductsAreFmaChains<double>();
}

/// A product split in slices of kc (z = slice), then combined, against the
/// ABI's definition: per slice the FMA chain over its k, the slices summed
/// in order, times alpha, then fma(beta, D, .).
template <typename T> void expectSplitProductsAreOrderedSums() {
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> u(-1, 1);
  const int64_t M = 67, N = 5, K = 1000, kc = 300, S = 4;
  std::vector<T> A(M * K), B(K * N), D(M * N), C(M * N), P(S * M * N);
  for (auto *v : {&A, &B, &D})
    for (T &x : *v)
      x = T(u(rng));
  std::vector<T> shared(mb::gemmSharedBytes(sizeof(T)) / sizeof(T));
  CpuTeam team;
  const T alpha = T(0.5), beta = T(-2);
  for (int64_t z = 0; z < S; ++z)
    for (int64_t bi = 0; bi < 2; ++bi)
      mb::gemmSplitBlock<T>(team, z, bi, 0, M, N, K, alpha, A.data(), K, 1, 0,
                            B.data(), N, 1, 0, beta, D.data(), 0, C.data(), 0,
                            kc, P.data(), shared.data());
  mb::combineBlock<T>(team, 0, 0, 1, M, N, alpha, P.data(), S, beta, D.data(),
                      0, C.data(), 0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T sum = T(0);
      for (int64_t s = 0; s < S; ++s) {
        T acc = T(0);
        for (int64_t k = s * kc; k < std::min(K, (s + 1) * kc); ++k)
          acc = std::fma(A[i * K + k], B[k * N + j], acc);
        sum = s ? sum + acc : acc;
      }
      T want = std::fma(beta, D[i * N + j], alpha * sum);
      ASSERT_EQ(0, std::memcmp(&want, &C[i * N + j], sizeof(T)))
          << i << ", " << j;
    }
}

TEST(MatrixBlock, SplitProductsAreOrderedSumsOfSlices) {
  expectSplitProductsAreOrderedSums<float>();
  expectSplitProductsAreOrderedSums<double>();
}

TEST(MatrixBlock, SumOfSquaresAndScaledTransposedCopy) {
  // 7 x 300: more elements than one block's threads, fewer than all blocks.
  const int64_t m = 7, n = 300;
  std::vector<float> x(m * n);
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-2, 2);
  for (float &v : x)
    v = float(u(rng));
  const int64_t blocks = mb::sumBlocks(m * n);
  ASSERT_EQ(blocks, (m * n + 255) / 256);
  std::vector<double> partials(blocks), shared(mb::kThreads);
  CpuTeam team;
  for (int64_t b = 0; b < blocks; ++b)
    mb::sumSquaresBlock<float>(team, b, blocks, x.data(), m * n,
                               partials.data(), shared.data());
  double sum = 0, want = 0;
  for (double p : partials)
    sum += p;
  for (float v : x)
    want += double(v) * double(v);
  EXPECT_NEAR(sum, want, 1e-12 * want);
  // y = x^T / max(||x||, eps), over 3 blocks of a grid-stride loop.
  std::vector<float> y(n * m);
  for (int64_t b = 0; b < 3; ++b)
    mb::scaleBlock<float>(team, b, 3, y.data(), 1, m, x.data(), n, 1, m, n,
                          partials.data(), blocks, 1e-7);
  const float norm = float(std::sqrt(sum));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      ASSERT_EQ(y[j * m + i], x[i * n + j] / norm) << i << ", " << j;
  // A zero matrix with a zero eps (as a flushed subnormal eps) stays 0.
  std::vector<float> zeros(5, 0.f), out(5, 1.f);
  double zero = 0;
  mb::scaleBlock<float>(team, 0, 1, out.data(), 5, 1, zeros.data(), 5, 1, 1, 5,
                        &zero, 1, 0.0);
  EXPECT_EQ(out, zeros);
}

//===----------------------------------------------------------------------===//
// cuda::Optimizer on a rule with a matrix function
//===----------------------------------------------------------------------===//

// The rule "orth" (hyper lr): o = newton_schulz(g) (level 0, the defaults),
// p -= lr o. Chunk table (KernelABI.h, "Axes" and version 11): p, g, then
// the matrix function's pair, both its buffer at the chunk's first
// coordinate.
constexpr size_t kPtrs = 4;

RuleInfo orthInfo(DType dtype) {
  RuleInfo i;
  i.name = "orth";
  i.dtype = dtype;
  i.hypers = {{"lr", 0.25, false}};
  ReductionSpec ns;
  ns.kind = ReductionKind::NewtonSchulz;
  ns.axis = Axis::Matrix;
  i.reductions = {ns};
  return i;
}

template <typename T>
void orthReduce(void *const *ptrs, const int64_t *lengths, const int64_t *,
                int64_t begin, int64_t end, const double *, int64_t,
                const void *const *, double *, const double *, int64_t stage,
                const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * kPtrs;
    const int64_t n = lengths[4 * c] * lengths[4 * c + 1];
    if (stage == 0)
      std::memcpy(cp[2], cp[1], size_t(n) * sizeof(T));
  }
}

template <typename T>
void orthRule(void *const *ptrs, const int64_t *lengths, const int64_t *,
              int64_t begin, int64_t end, const double *h, int64_t,
              const void *const *, const double *, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * kPtrs;
    const int64_t n = lengths[4 * c] * lengths[4 * c + 1];
    T *p = static_cast<T *>(cp[0]);
    const T *o = static_cast<const T *>(cp[3]);
    for (int64_t k = 0; k < n; ++k)
      p[k] = p[k] - T(h[0]) * o[k];
  }
}

const CUfunction kReduce = reinterpret_cast<CUfunction>(0x6100);
const CUfunction kRuleFn = reinterpret_cast<CUfunction>(0x6200);
const CUfunction kGemm = reinterpret_cast<CUfunction>(0x6300);
const CUfunction kSumSq = reinterpret_cast<CUfunction>(0x6400);
const CUfunction kScale = reinterpret_cast<CUfunction>(0x6500);
const CUfunction kCombine = reinterpret_cast<CUfunction>(0x6700);
const CUmodule kModule = reinterpret_cast<CUmodule>(0x6600);

struct MatrixState : fakecuda::Memory {
  bool f32 = true, withMatrixKernels = true;
  std::string descriptor;
  int gemms = 0, sums = 0, scales = 0, combines = 0, matrices = 0;
  std::vector<std::string> calls;
};
MatrixState *fake = nullptr;

// 8 multiprocessors: a product of fewer tiles over a K of 512 or more is
// split (CudaMatrix.h, splitDepth).
CUresult attr(int *v, int attribute, CUdevice) {
  *v = attribute == kAttrComputeCapabilityMajor ? 9
       : attribute == kAttrMultiprocessorCount  ? 8
                                                : 0;
  return 0;
}
CUresult setCurrent(CUcontext c) { return c == fakecuda::kContext ? 0 : 201; }
CUresult load(CUmodule *m, const void *) {
  *m = kModule;
  return 0;
}
CUresult getFunction(CUfunction *f, CUmodule, const char *name) {
  std::string n = name, t = fake->f32 ? "f32" : "f64";
  if (n == "optim_rule_orth")
    *f = kRuleFn;
  else if (n == "optim_reduce_orth")
    *f = kReduce;
  else if (fake->withMatrixKernels && n == "optim_matrix_gemm_" + t)
    *f = kGemm;
  else if (fake->withMatrixKernels && n == "optim_matrix_sumsq_" + t)
    *f = kSumSq;
  else if (fake->withMatrixKernels && n == "optim_matrix_scale_" + t)
    *f = kScale;
  else if (fake->withMatrixKernels && n == "optim_matrix_combine_" + t)
    *f = kCombine;
  else
    return kErrorNotFound;
  return 0;
}
CUresult getGlobal(CUdeviceptr *ptr, size_t *bytes, CUmodule,
                   const char *name) {
  if (std::string(name) != "optim_reductions_orth")
    return kErrorNotFound;
  *ptr = reinterpret_cast<CUdeviceptr>(fake->descriptor.c_str());
  *bytes = fake->descriptor.size() + 1;
  return 0;
}
CUresult streamCreate(CUstream *s, unsigned) {
  *s = reinterpret_cast<CUstream>(0x77);
  return 0;
}
CUresult htodAsync(CUdeviceptr dst, const void *src, size_t bytes, CUstream) {
  return fakecuda::htod(dst, src, bytes);
}

template <typename A> A arg(void **params, int k) {
  return *static_cast<A *>(params[k]);
}

/// The matrix kernels' blocks, in the ABI's argument order: matrix z of
/// the batch (grid z) at its operands' strides, as MatrixNVPTX.cpp.
template <typename T>
CUresult matrixLaunch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                      unsigned shared, void **params) {
  CpuTeam team;
  fake->matrices += f == kSumSq ? int(gz) : 0;
  if (f == kGemm) {
    ++fake->gemms;
    if (shared < mb::gemmSharedBytes(sizeof(T)))
      return 1;
    std::vector<T> smem(shared / sizeof(T) + 1);
    for (unsigned z = 0; z < gz; ++z)
      for (unsigned by = 0; by < gy; ++by)
        for (unsigned bx = 0; bx < gx; ++bx)
          mb::gemmSplitBlock<T>(
              team, z, by, bx, arg<int64_t>(params, 0), arg<int64_t>(params, 1),
              arg<int64_t>(params, 2), arg<T>(params, 3),
              arg<const T *>(params, 4), arg<int64_t>(params, 5),
              arg<int64_t>(params, 6), arg<int64_t>(params, 7),
              arg<const T *>(params, 8), arg<int64_t>(params, 9),
              arg<int64_t>(params, 10), arg<int64_t>(params, 11),
              arg<T>(params, 12), arg<const T *>(params, 13),
              arg<int64_t>(params, 14), arg<T *>(params, 15),
              arg<int64_t>(params, 16), arg<int64_t>(params, 17),
              arg<T *>(params, 18), smem.data());
    fake->calls.push_back("gemm");
    return 0;
  }
  if (f == kCombine) {
    ++fake->combines;
    if (gy != 1 || shared)
      return 1;
    for (unsigned z = 0; z < gz; ++z)
      for (unsigned b = 0; b < gx; ++b)
        mb::combineBlock<T>(team, z, b, gx, arg<int64_t>(params, 0),
                            arg<int64_t>(params, 1), arg<T>(params, 2),
                            arg<const T *>(params, 3), arg<int64_t>(params, 4),
                            arg<T>(params, 5), arg<const T *>(params, 6),
                            arg<int64_t>(params, 7), arg<T *>(params, 8),
                            arg<int64_t>(params, 9));
    fake->calls.push_back("combine");
    return 0;
  }
  if (gy != 1)
    return 1;
  if (f == kSumSq) {
    ++fake->sums;
    if (shared < mb::kSumSharedBytes)
      return 1;
    std::vector<double> smem(mb::kThreads);
    for (unsigned z = 0; z < gz; ++z)
      for (unsigned b = 0; b < gx; ++b)
        mb::sumSquaresBlock<T>(team, b, gx,
                               arg<const T *>(params, 0) +
                                   z * arg<int64_t>(params, 2),
                               arg<int64_t>(params, 1),
                               arg<double *>(params, 3) + z * gx, smem.data());
    fake->calls.push_back("sumsq");
    return 0;
  }
  ++fake->scales;
  const double *partials = arg<const double *>(params, 10);
  const int64_t numPartials = arg<int64_t>(params, 11);
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned b = 0; b < gx; ++b)
      mb::scaleBlock<T>(team, b, gx,
                        arg<T *>(params, 0) + z * arg<int64_t>(params, 3),
                        arg<int64_t>(params, 1), arg<int64_t>(params, 2),
                        arg<const T *>(params, 4) + z * arg<int64_t>(params, 7),
                        arg<int64_t>(params, 5), arg<int64_t>(params, 6),
                        arg<int64_t>(params, 8), arg<int64_t>(params, 9),
                        partials ? partials + z * numPartials : partials,
                        numPartials, arg<double>(params, 12));
  fake->calls.push_back("scale");
  return 0;
}

/// The rule's kernels: hyperparameters by value (T) become the CPU ABI's
/// doubles.
template <typename T>
CUresult ruleLaunch(CUfunction f, unsigned grid, void **params) {
  auto ptrs = arg<void *const *>(params, 0);
  auto lengths = arg<const int64_t *>(params, 1);
  int64_t begin = arg<int64_t>(params, 3);
  double h[1] = {double(arg<T>(params, 5))};
  if (f == kReduce) {
    fake->calls.push_back("reduce");
    orthReduce<T>(ptrs, lengths, nullptr, begin, begin + grid, h, 0, nullptr,
                  nullptr, nullptr, arg<int64_t>(params, 8), nullptr);
    return 0;
  }
  fake->calls.push_back("rule");
  orthRule<T>(ptrs, lengths, nullptr, begin, begin + grid, h, 0, nullptr,
              nullptr, nullptr);
  return 0;
}

CUresult launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                unsigned bx, unsigned, unsigned, unsigned shared, CUstream,
                void **params, void **extra) {
  if (extra)
    return 1;
  if (f == kGemm || f == kSumSq || f == kScale || f == kCombine) {
    if (bx != unsigned(mb::kThreads) || gz < 1 || gz > 65535)
      return 1;
    return fake->f32 ? matrixLaunch<float>(f, gx, gy, gz, shared, params)
                     : matrixLaunch<double>(f, gx, gy, gz, shared, params);
  }
  if ((f != kReduce && f != kRuleFn) || gy != 1 || gz != 1 || bx % 32 || shared)
    return 1;
  return fake->f32 ? ruleLaunch<float>(f, gx, params)
                   : ruleLaunch<double>(f, gx, params);
}

std::shared_ptr<const DriverAPI> matrixDriver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = attr;
  d->cuCtxSetCurrent = setCurrent;
  d->cuModuleLoadData = load;
  d->cuModuleGetFunction = getFunction;
  d->cuModuleGetGlobal = getGlobal;
  d->cuStreamCreate = streamCreate;
  d->cuMemcpyHtoDAsync = htodAsync;
  d->cuLaunchKernel = launch;
  return d;
}

std::string manifestFor(DType dtype) {
  Manifest m;
  m.info = orthInfo(dtype);
  m.symbol = "optim_rule_orth";
  m.target = "nvptx64-nvidia-cuda sm_90";
  return writeManifest(m);
}

class CudaMatrix : public ::testing::Test {
protected:
  void SetUp() override {
    fake = &state;
    fakecuda::memory = &state;
  }
  void TearDown() override {
    EXPECT_TRUE(state.live.empty()) << state.live.size() << " buffers leaked";
    fake = nullptr;
    fakecuda::memory = nullptr;
  }
  MatrixState state;
};

/// Empty, a scalar, vectors (one row), wide and tall matrices (Y = X^T),
/// batches of matrices (one launch group each), more rows and columns than
/// one product tile, and an unshaped tensor (one row).
const std::vector<std::vector<int64_t>> kShapes = {
    {0},       {1},       {7},      {3, 5},     {5, 3},    {2, 3, 4}, {3, 0},
    {70, 130}, {130, 70}, {1, 300}, {40, 3, 5}, {3, 1100}, {}};
const int64_t kUnshaped = 33;

template <typename T> void expectAsTheCpuRuntime(int64_t chunkSize) {
  const bool f32 = std::is_same_v<T, float>;
  const DType dtype = f32 ? DType::F32 : DType::F64;
  MatrixState &st = *fake;
  st.f32 = f32;
  RuleInfo info = orthInfo(dtype);
  st.descriptor = reductionsDescriptor(info.reductions);
  auto dev = Device::open(matrixDriver());
  const int steps = 3;
  cudavscpu::CudaVsCpu<T> both(
      kShapes, kUnshaped, steps, 11,
      optim::Rule(info, orthReduce<T>, orthRule<T>, nullptr),
      dev->loadRule("X", manifestFor(dtype), "orth.json"), chunkSize);
  both.run();
  // Per non-empty tensor and step, all its matrices in one group (grid z):
  // a sum of squares, two copies, 3 products a step of NS. Matrices:
  // 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 40 + 1 + 1 (the empty tensors have
  // none). [3, 1100]'s Y Y^T (one tile over 1100, 8 multiprocessors) is
  // split in 4 slices, combined: 5 combines a step.
  const int tensors = 11, matrices = 51;
  EXPECT_EQ(st.sums, steps * tensors);
  EXPECT_EQ(st.scales, 2 * steps * tensors);
  EXPECT_EQ(st.gemms, 15 * steps * tensors);
  EXPECT_EQ(st.combines, 5 * steps);
  EXPECT_EQ(st.matrices, steps * matrices);
  // The products sum in another order than the CPU's (OpenBLAS or the
  // runtime's loops): NS's result to the element type's rounding, over a
  // few iterations of a map that amplifies it a little.
  const double tol = f32 ? 2e-5 : 1e-12;
  for (size_t k = 0; k < kShapes.size(); ++k) {
    std::vector<T> got = both.gpuParam(k);
    const std::vector<T> &want = both.cpuParams[k], &p0 = both.p0[k];
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(double(got[i]), double(want[i]), tol)
          << "parameter " << k << ", coordinate " << i;
    // And NS did something: a vector of n moves by about 0.7 lr / sqrt(n)
    // per step.
    if (!got.empty()) {
      double moved = 0;
      for (size_t i = 0; i < got.size(); ++i)
        moved = std::max(moved, std::abs(double(got[i]) - double(p0[i])));
      EXPECT_GT(moved, 0.01) << "parameter " << k;
    }
  }
}

TEST_F(CudaMatrix, AgreesWithTheCpuRuntimeF32) {
  expectAsTheCpuRuntime<float>(4096);
}

TEST_F(CudaMatrix, AgreesWithTheCpuRuntimeF64SplitRows) {
  // 4: [1, 300] and [70, 130] in parts of rows; the matrix buffer is
  // written chunk by chunk.
  expectAsTheCpuRuntime<double>(4);
}

TEST_F(CudaMatrix, MatrixFunctionsRunBetweenTheStageAndTheRule) {
  state.descriptor = reductionsDescriptor(orthInfo(DType::F32).reductions);
  auto dev = Device::open(matrixDriver());
  cuda::Rule rule = dev->loadRule("X", manifestFor(DType::F32), "orth.json");
  Buffer p(dev, 6 * 4), g(dev, 6 * 4);
  std::vector<float> ones(6, 1.f);
  p.upload(ones.data(), 24);
  g.upload(ones.data(), 24);
  cuda::Optimizer opt(rule, {{p.get(), 6, {2, 3}}});
  opt.step({{g.get(), 6}});
  opt.synchronize();
  std::vector<std::string> want = {"reduce", "sumsq", "scale"};
  want.insert(want.end(), 15, "gemm");
  want.insert(want.end(), {"scale", "rule"});
  EXPECT_EQ(state.calls, want);
}

TEST(CudaMatrixGroups, FewTilesOverALongKAreSplit) {
  // Enough tiles for the device: no split.
  EXPECT_EQ(splitDepth(144, 3072, 132, INT64_MAX), 3072);
  // One tile over 1100 on 8 multiprocessors: 16 slices wanted, one per 256
  // of K allowed: 4 slices of 275.
  EXPECT_EQ(splitDepth(1, 1100, 8, INT64_MAX), 275);
  // 64 tiles of a 512 x 512 on 132: 5 wanted, 2 allowed.
  EXPECT_EQ(splitDepth(64, 512, 132, INT64_MAX), 256);
  // No room for slices, or a short K: no split.
  EXPECT_EQ(splitDepth(1, 1100, 8, 1), 1100);
  EXPECT_EQ(splitDepth(1, 300, 132, INT64_MAX), 300);
  // The slices' elements: Y Y^T of [3, 1100] in 4 slices of 3 x 3.
  EXPECT_EQ(newtonSchulzSlices(1, 3, 1100, 8), 4 * 9);
  EXPECT_EQ(newtonSchulzSlices(1, 768, 3072, 132), 0);
}

TEST(CudaMatrixGroups, StacksGoInGroupsWithinTheGridAndTheScratch) {
  // 2 m n + 2 m m elements each.
  EXPECT_EQ(newtonSchulzWork(3, 5), 2 * 15 + 2 * 9);
  EXPECT_EQ(newtonSchulzWork(5, 3), 2 * 15 + 2 * 9);
  // A convolution kernel seen as 4096 matrices of 3 x 3: one group.
  EXPECT_EQ(newtonSchulzGroup(4096, 3, 3), 4096);
  // More than the grid's 65535 in z.
  EXPECT_EQ(newtonSchulzGroup(100000, 3, 3), 65535);
  // About 4M elements of scratch: 256 matrices of 64 x 64 (16384 each).
  EXPECT_EQ(newtonSchulzGroup(1000, 64, 64), 256);
  // A matrix larger than that alone.
  EXPECT_EQ(newtonSchulzGroup(12, 768, 3072), 1);
  EXPECT_EQ(newtonSchulzGroup(1, 1, 1), 1);
}

TEST_F(CudaMatrix, RefusesAModuleWithoutTheMatrixKernels) {
  state.withMatrixKernels = false;
  state.descriptor = reductionsDescriptor(orthInfo(DType::F64).reductions);
  state.f32 = false;
  auto dev = Device::open(matrixDriver());
  try {
    dev->loadRule("X", manifestFor(DType::F64), "orth.json");
    ADD_FAILURE() << "loaded a rule whose module lacks its matrix kernels";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(
                  "cuModuleGetFunction(optim_matrix_gemm_f64)"),
              std::string::npos)
        << e.what();
  }
}

} // namespace
