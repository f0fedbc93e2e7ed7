//===- MatrixFunctionsTest.cpp - newton_schulz and rows()/cols() ---------===//
//
// Kernel ABI 11, "Matrix functions and shape values". NS(X) of
// MatrixFunctions.h (the CBLAS path when the runtime has one, and the
// runtime's own loops) against a naive triple-loop reference in double;
// then hand-written kernels, following the ABI as compiled ones do, of a
// small Muon-like rule (stage 0 writes newton_schulz's operand into the
// matrix buffer, the rule reads NS(X) and the shape values) and of rules
// that read rows() and cols() without axes, driving optim::Optimizer: the
// shape values every kernel sees, groups, thread counts and chunk sizes,
// skipped and refused steps, checkpoints; descriptors, manifests and
// RuleInfos that are refused; the C API.
//
//===----------------------------------------------------------------------===//

#include "../lib/MatrixFunctions.h"
#include "../lib/Reductions.h"
#include "../lib/Sha256.h"
#include "../lib/ThreadPool.h"
#include "optim/CApiSupport.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Trajectory.h"
#include "optim/optim.h"

#include <gtest/gtest.h>

#include <clocale>
#include <thread>
#include <atomic>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <unistd.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif
#include <vector>

using namespace optim;
using json = nlohmann::json;

namespace {

// ---- NS(X) against a naive reference ----------------------------------------

ReductionSpec nsSpec(int steps = 5, double a = 3.4445, double b = -4.7750,
                     double c = 2.0315, double eps = 1e-7) {
  ReductionSpec s;
  s.kind = ReductionKind::NewtonSchulz;
  s.axis = Axis::Matrix;
  s.nsSteps = steps;
  s.nsCoefficients[0] = a;
  s.nsCoefficients[1] = b;
  s.nsCoefficients[2] = c;
  s.nsEps = eps;
  return s;
}

/// NS(X) of KernelABI.h written out directly, in double, with plain triple
/// loops: no blocking, no BLAS, no shared code with the runtime.
std::vector<double> referenceNS(const std::vector<double> &x, int64_t R,
                                int64_t C, const ReductionSpec &spec) {
  if (R == 0 || C == 0)
    return x;
  bool tr = R > C;
  int64_t m = tr ? C : R, n = tr ? R : C;
  std::vector<double> Y(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      Y[size_t(i * n + j)] = tr ? x[size_t(j * C + i)] : x[size_t(i * C + j)];
  double s = 0;
  for (double v : Y)
    s += v * v;
  s = std::max(std::sqrt(s), spec.nsEps);
  for (double &v : Y)
    v /= s;
  const double a = spec.nsCoefficients[0], b = spec.nsCoefficients[1],
               c = spec.nsCoefficients[2];
  for (int k = 0; k < spec.nsSteps; ++k) {
    std::vector<double> A(size_t(m * m), 0.0), AA(size_t(m * m), 0.0),
        BY(size_t(m * n), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t l = 0; l < n; ++l)
          A[size_t(i * m + j)] += Y[size_t(i * n + l)] * Y[size_t(j * n + l)];
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t l = 0; l < m; ++l)
          AA[size_t(i * m + j)] += A[size_t(i * m + l)] * A[size_t(l * m + j)];
    std::vector<double> B(size_t(m * m));
    for (size_t i = 0; i < B.size(); ++i)
      B[i] = b * A[i] + c * AA[i];
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t l = 0; l < m; ++l)
          BY[size_t(i * n + j)] += B[size_t(i * m + l)] * Y[size_t(l * n + j)];
    for (size_t i = 0; i < Y.size(); ++i)
      Y[i] = a * Y[i] + BY[i];
  }
  std::vector<double> out(x.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      (tr ? out[size_t(j * C + i)] : out[size_t(i * C + j)]) =
          Y[size_t(i * n + j)];
  return out;
}

template <typename T>
std::vector<T> runNS(std::vector<T> x, int64_t R, int64_t C,
                     const ReductionSpec &spec, bool portable,
                     ThreadPool *pool = nullptr) {
  std::vector<T> work(detail::newtonSchulzWorkCount(R, C) + 1,
                      std::numeric_limits<T>::quiet_NaN());
  if (portable)
    detail::newtonSchulzPortable(x.data(), R, C, spec, work.data(), pool);
  else
    detail::newtonSchulz(x.data(), R, C, spec, work.data(), pool);
  return x;
}

std::vector<double> randomMatrix(int64_t R, int64_t C, unsigned seed,
                                 double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> x(size_t(R * C));
  for (double &v : x)
    v = scale * normal(rng);
  return x;
}

/// The largest |got - want| over the largest |want| (1 when all are 0).
template <typename T>
double relativeError(const std::vector<T> &got, const std::vector<double> &want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(double(got[i]) - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
    if (std::isnan(double(got[i])))
      return std::numeric_limits<double>::infinity();
  }
  return err / (scale > 0 ? scale : 1.0);
}

struct Shape {
  int64_t R, C;
};
const Shape kShapes[] = {{1, 1}, {1, 9}, {9, 1}, {3, 5},
                         {7, 3}, {4, 4}, {64, 200}, {130, 40}};

// Tolerances, relative to the largest entry of the reference: f64 1e-12
// (measured: at most 4e-15 with OpenBLAS, 0 with the runtime's loops, which
// sum in the reference's order); f32 1e-5 against the reference of the
// same f32 input in double (measured: at most 2.4e-6, 5 iterations on
// 64x200; each iteration amplifies rounding by up to a ~ 3.4).
TEST(MatrixFunctions, NewtonSchulzMatchesANaiveReference) {
  const ReductionSpec specs[] = {nsSpec(), nsSpec(3, 2.0, -1.5, 0.5, 1e-3),
                                 nsSpec(1, 1.5, -0.5, 0.0, 1e-7)};
  unsigned seed = 1;
  for (const ReductionSpec &spec : specs)
    for (Shape s : kShapes)
      for (bool portable : {false, true}) {
        SCOPED_TRACE(std::to_string(s.R) + "x" + std::to_string(s.C) +
                     " steps " + std::to_string(spec.nsSteps) +
                     (portable ? " portable" : " default"));
        std::vector<double> x = randomMatrix(s.R, s.C, ++seed);
        std::vector<double> want = referenceNS(x, s.R, s.C, spec);
        EXPECT_LE(relativeError(runNS(x, s.R, s.C, spec, portable), want),
                  1e-12);
        std::vector<float> xf(x.begin(), x.end());
        // The reference of the f32 input, so that only the arithmetic
        // differs.
        std::vector<double> xr(xf.begin(), xf.end());
        EXPECT_LE(relativeError(runNS(xf, s.R, s.C, spec, portable),
                                referenceNS(xr, s.R, s.C, spec)),
                  1e-5);
      }
}

TEST(MatrixFunctions, NewtonSchulzOrthogonalizes) {
  // Five default iterations bring every singular value of a well
  // conditioned matrix near 1 (Muon's coefficients oscillate in about
  // [0.7, 1.2]): Y Y^T is near the identity.
  std::vector<double> x = randomMatrix(16, 48, 7);
  std::vector<double> y = runNS(x, 16, 48, nsSpec(), false);
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < 16; ++j) {
      double d = 0;
      for (int64_t k = 0; k < 48; ++k)
        d += y[size_t(i * 48 + k)] * y[size_t(j * 48 + k)];
      if (i == j) {
        EXPECT_GT(d, 0.4);
        EXPECT_LT(d, 1.5);
      } else {
        EXPECT_LT(std::fabs(d), 0.35);
      }
    }
}

TEST(MatrixFunctions, EdgeCases) {
  // Empty matrices need no work and are left alone (even at a null
  // pointer).
  EXPECT_EQ(detail::newtonSchulzWorkCount(0, 5), 0u);
  EXPECT_EQ(detail::newtonSchulzWorkCount(5, 0), 0u);
  EXPECT_EQ(detail::newtonSchulzWorkCount(3, 5), 15u + 18u);
  EXPECT_EQ(detail::newtonSchulzWorkCount(7, 3), 21u + 18u);
  detail::newtonSchulz(static_cast<double *>(nullptr), 0, 5, nsSpec(),
                       nullptr, nullptr);
  detail::newtonSchulz(static_cast<float *>(nullptr), 4, 0, nsSpec(), nullptr,
                       nullptr);
  // Zero stays zero: the norm is 0, divided by eps instead.
  for (bool portable : {false, true}) {
    EXPECT_EQ(runNS(std::vector<double>(12, 0.0), 3, 4, nsSpec(), portable),
              std::vector<double>(12, 0.0));
    EXPECT_EQ(runNS(std::vector<float>(12, 0.0f), 4, 3, nsSpec(), portable),
              std::vector<float>(12, 0.0f));
  }
  // A subnormal f32 eps under flush-to-zero (a host built with
  // -ffast-math): the divisor is 0 and a zero matrix stays zero, not NaN.
#if defined(__SSE2__)
  {
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040); // FTZ | DAZ
    std::vector<float> zero = runNS(std::vector<float>(12, 0.0f), 4, 3,
                                    nsSpec(5, 3.4445, -4.7750, 2.0315, 1e-45),
                                    false),
                       zeroPortable =
                           runNS(std::vector<float>(12, 0.0f), 3, 4,
                                 nsSpec(5, 3.4445, -4.7750, 2.0315, 1e-45),
                                 true);
    _mm_setcsr(csr);
    EXPECT_EQ(zero, std::vector<float>(12, 0.0f));
    EXPECT_EQ(zeroPortable, std::vector<float>(12, 0.0f));
  }
#endif
  // Zero steps: only the normalization, x / max(||x||, eps), in T.
  std::vector<double> x = {3, 0, 0, 4}; // ||x|| = 5
  EXPECT_EQ(runNS(x, 2, 2, nsSpec(0), false),
            (std::vector<double>{0.6, 0, 0, 0.8}));
  EXPECT_EQ(runNS(x, 4, 1, nsSpec(0), true),
            (std::vector<double>{0.6, 0, 0, 0.8}));
  // A tiny matrix is divided by eps, not by its norm.
  std::vector<double> tiny = {1e-9, 0, 0, 0};
  EXPECT_EQ(runNS(tiny, 2, 2, nsSpec(0, 1, 0, 0, 1e-3), false)[0], 1e-6);
  // One coordinate: NS of a 1x1 matrix x is p(x / |x|) for the quintic p.
  double p1 = 1.0;
  for (int k = 0; k < 5; ++k)
    p1 = 3.4445 * p1 + (-4.7750 * p1 * p1 + 2.0315 * p1 * p1 * p1 * p1) * p1;
  EXPECT_NEAR(runNS(std::vector<double>{-2.5}, 1, 1, nsSpec(), false)[0], -p1,
              1e-14);
}

TEST(MatrixFunctions, PortableProductsGiveTheSameBitsOnAnyPool) {
  // The last two are large enough for the CBLAS path's blocks (by rows for
  // Y Y^T and A A, by columns for B Y), which must not depend on the pool.
  std::printf("[ info ] CBLAS: %s\n",
              detail::matrixFunctionsUseCBLAS()
                  ? detail::matrixFunctionsCBLAS().c_str()
                  : "none (the runtime's own loops)");
  for (Shape s : {Shape{64, 200}, Shape{150, 33}, Shape{5, 7}, Shape{300, 700},
                  Shape{700, 260}}) {
    std::vector<double> x = randomMatrix(s.R, s.C, 99);
    std::vector<float> xf(x.begin(), x.end());
    std::vector<double> one = runNS(x, s.R, s.C, nsSpec(), true);
    std::vector<float> onef = runNS(xf, s.R, s.C, nsSpec(), true);
    for (unsigned threads : {1u, 2u, 3u, 4u}) {
      ThreadPool pool(threads);
      EXPECT_EQ(runNS(x, s.R, s.C, nsSpec(), true, &pool), one) << threads;
      EXPECT_EQ(runNS(xf, s.R, s.C, nsSpec(), true, &pool), onef) << threads;
      EXPECT_EQ(runNS(x, s.R, s.C, nsSpec(), false, &pool),
                runNS(x, s.R, s.C, nsSpec(), false))
          << threads;
    }
  }
}

// The reverse mode's VJP of NS (newtonSchulzVJP: one dgemm per product when
// a CBLAS was found) against the runtime's loops (newtonSchulzVJPPortable)
// and against central differences of the double forward pass along a random
// direction: <dy, J v> = <J^T dy, v>.
TEST(MatrixFunctions, TheVJPOfNewtonSchulzTakesEitherProducts) {
  for (Shape s : {Shape{1, 1}, Shape{1, 13}, Shape{9, 4}, Shape{33, 70},
                  Shape{130, 47}}) {
    const size_t mn = size_t(s.R * s.C);
    std::vector<double> x = randomMatrix(s.R, s.C, 5);
    std::vector<double> dy = randomMatrix(s.R, s.C, 6);
    std::vector<double> v = randomMatrix(s.R, s.C, 7);
    std::vector<double> blas(mn), portable(mn);
    detail::newtonSchulzVJP(x.data(), dy.data(), blas.data(), s.R, s.C,
                            nsSpec());
    detail::newtonSchulzVJPPortable(x.data(), dy.data(), portable.data(), s.R,
                                    s.C, nsSpec());
    double scale = 0;
    for (double d : portable)
      scale = std::max(scale, std::fabs(d));
    for (size_t i = 0; i < mn; ++i)
      ASSERT_NEAR(blas[i], portable[i], 1e-12 * (1 + scale))
          << s.R << "x" << s.C << " " << i;
    const double h = 1e-6;
    std::vector<double> plus(mn), minus(mn);
    for (size_t i = 0; i < mn; ++i) {
      plus[i] = x[i] + h * v[i];
      minus[i] = x[i] - h * v[i];
    }
    plus = runNS(plus, s.R, s.C, nsSpec(), false);
    minus = runNS(minus, s.R, s.C, nsSpec(), false);
    double central = 0, adjoint = 0;
    for (size_t i = 0; i < mn; ++i) {
      central += dy[i] * (plus[i] - minus[i]) / (2 * h);
      adjoint += blas[i] * v[i];
    }
    EXPECT_NEAR(adjoint, central, 1e-6 * (1 + std::fabs(central)))
        << s.R << "x" << s.C;
  }
}

// Several optimizers step at once in one process (each on its own pool):
// the serial OpenBLAS's packing buffers are not locked, so the runtime must
// never call it from two threads at once (an unlocked run gave wrong
// products intermittently, OpenBLAS issues 1755 and 2126).
TEST(MatrixFunctions, ConcurrentCallsGiveTheSameBits) {
  const int64_t R = 200, C = 330;
  std::vector<double> x = randomMatrix(R, C, 7);
  std::vector<float> xf(x.begin(), x.end());
  std::vector<float> want = runNS(xf, R, C, nsSpec(), false);
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 25; ++rep)
        if (runNS(xf, R, C, nsSpec(), false) != want)
          ++mismatches;
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- A Muon-like rule ---------------------------------------------------------
//
// hypers lr, momentum; state buf (per coordinate, 0); reductions
//   0: o = newton_schulz(u)@matrix, u = lerp(buf, g, 1 - momentum)  level 0
//   1: rows,  2: cols
//   buf' = u;  p' = p - lr * sqrt(max(1, rows / cols)) * o
// The chunk table of "Axes": p, g, buf, then the matrix buffer's two
// pointers; four lengths per chunk.
constexpr size_t kMuonP = 5, kMuonR = 3;

template <typename T> T momentumNew(T buf, T g, const double *h) {
  return buf + (T(1) - T(h[1])) * (g - buf);
}
template <typename T> T muonParam(T p, T o, double rows, double cols,
                                  const double *h) {
  T scale = T(std::sqrt(std::max(1.0, rows / cols)));
  return p - T(h[0]) * scale * o;
}

/// What a kernel saw of the shape values: the chunk's parameter pointer,
/// the stage (-1: the rule kernel), rows and cols; and whether `reduced`
/// was null.
struct Seen {
  const void *p;
  int stage;
  double rows, cols;
  bool nullReduced;
};
std::mutex seenMutex;
std::vector<Seen> *seen = nullptr;
int reduceCalls = 0; // Calls of a reduce kernel that must not be called.

void record(const void *p, int stage, const double *reduced, size_t c,
            size_t R, size_t rowsSlot, size_t colsSlot) {
  if (!seen)
    return;
  std::lock_guard<std::mutex> lock(seenMutex);
  seen->push_back({p, stage, reduced ? reduced[c * R + rowsSlot] : -1,
                   reduced ? reduced[c * R + colsSlot] : -1, !reduced});
}

template <typename T>
void muonReduce(void *const *ptrs, const int64_t *lengths, const int64_t *,
                int64_t begin, int64_t end, const double *h, int64_t,
                const void *const *, double *, const double *reduced,
                int64_t stage, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * kMuonP;
    record(cp[0], int(stage), reduced, size_t(c), kMuonR, 1, 2);
    if (stage != 0)
      continue;
    int64_t n = lengths[4 * c] * lengths[4 * c + 1];
    const T *g = static_cast<const T *>(cp[1]);
    const T *buf = static_cast<const T *>(cp[2]);
    T *x = static_cast<T *>(cp[3]);
    for (int64_t i = 0; i < n; ++i)
      x[i] = momentumNew(buf[i], g[i], h);
  }
}

template <typename T>
void muonRule(void *const *ptrs, const int64_t *lengths, const int64_t *,
              int64_t begin, int64_t end, const double *h, int64_t,
              const void *const *, const double *reduced, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * kMuonP;
    record(cp[0], -1, reduced, size_t(c), kMuonR, 1, 2);
    int64_t n = lengths[4 * c] * lengths[4 * c + 1];
    T *p = static_cast<T *>(cp[0]);
    const T *g = static_cast<const T *>(cp[1]);
    T *buf = static_cast<T *>(cp[2]);
    const T *o = static_cast<const T *>(cp[4]);
    double rows = reduced[c * kMuonR + 1], cols = reduced[c * kMuonR + 2];
    for (int64_t i = 0; i < n; ++i) {
      buf[i] = momentumNew(buf[i], g[i], h);
      p[i] = muonParam(p[i], o[i], rows, cols, h);
    }
  }
}

RuleInfo muonInfo(DType dtype, ReductionSpec ns = nsSpec()) {
  RuleInfo i;
  i.name = "muon";
  i.dtype = dtype;
  i.hypers = {{"lr", 0.02, false}, {"momentum", 0.9, false}};
  i.states = {{"buf", 1, 0.0}};
  ReductionSpec rows, cols;
  rows.kind = ReductionKind::Rows;
  cols.kind = ReductionKind::Cols;
  i.reductions = {ns, rows, cols};
  return i;
}

template <typename T> Rule muonRuleOf(ReductionSpec ns = nsSpec()) {
  return Rule(muonInfo(std::is_same_v<T, float> ? DType::F32 : DType::F64, ns),
              muonReduce<T>, muonRule<T>, nullptr);
}

/// Parameters of every kind: matrices (transposed ones too), a batch of
/// matrices, 1-D, no shape, empty, one coordinate, columns of one.
struct Model {
  std::vector<std::vector<int64_t>> shapes = {
      {3, 5}, {7, 3}, {2, 3, 4}, {6}, {}, {0, 4}, {1}, {4, 4, 1}, {9, 17}};
  std::vector<int64_t> sizes = {15, 21, 24, 6, 5, 0, 1, 16, 153};
  // Parameters 0..3 in group 0 (default lr), the others in group 1.
  size_t split = 4;
  double lr1 = 0.05;
};

template <typename T> struct State {
  std::vector<std::vector<T>> params, bufs;
  bool operator==(const State &o) const {
    return params == o.params && bufs == o.bufs;
  }
};

template <typename T>
std::vector<std::vector<std::vector<T>>> makeGrads(const Model &m, int steps,
                                                   unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<std::vector<std::vector<T>>> grads((size_t(steps)));
  for (auto &step : grads)
    for (int64_t n : m.sizes) {
      std::vector<T> g((size_t(n)));
      for (T &v : g)
        v = T(normal(rng));
      step.push_back(g);
    }
  return grads;
}

template <typename T> std::vector<std::vector<T>> initialParams(const Model &m) {
  std::vector<std::vector<T>> params;
  for (size_t k = 0; k < m.sizes.size(); ++k) {
    std::vector<T> p((size_t(m.sizes[k])));
    for (size_t i = 0; i < p.size(); ++i)
      p[i] = T(0.1 * double(k + 1) + 0.01 * double(i));
    params.push_back(p);
  }
  return params;
}

template <typename T>
std::vector<ParamGroup> groupsOf(std::vector<std::vector<T>> &params,
                                 const Model &m, bool shaped = true) {
  std::vector<ParamGroup> groups(2);
  for (size_t k = 0; k < params.size(); ++k) {
    Param p(params[k].data(), params[k].size());
    if (shaped && !m.shapes[k].empty())
      p = p.shaped(m.shapes[k]);
    groups[k < m.split ? 0 : 1].params.push_back(p);
  }
  groups[1].hypers = {{"lr", m.lr1}};
  return groups;
}

template <typename T>
std::vector<Grad> gradsOf(const std::vector<std::vector<T>> &step) {
  std::vector<Grad> grads;
  for (const std::vector<T> &g : step)
    grads.push_back({g.data(), g.size()});
  return grads;
}

void viewOf(const std::vector<int64_t> &shape, int64_t size, int64_t &B,
            int64_t &R, int64_t &C) {
  B = 1;
  R = 1;
  C = size;
  if (shape.empty())
    return;
  C = shape.back();
  R = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
  for (size_t d = 0; d + 2 < shape.size(); ++d)
    B *= shape[d];
}

template <typename T>
State<T> runMuon(const Rule &rule, const Model &m,
                 const std::vector<std::vector<std::vector<T>>> &grads,
                 unsigned threads, int64_t chunkSize) {
  State<T> out;
  out.params = initialParams<T>(m);
  OptimizerOptions options;
  options.threads = threads;
  options.chunkSize = chunkSize;
  Optimizer opt(rule, groupsOf(out.params, m), options);
  for (const auto &step : grads)
    EXPECT_TRUE(opt.step(gradsOf(step)));
  for (size_t k = 0; k < out.params.size(); ++k) {
    const T *b = static_cast<const T *>(opt.state(k, "buf"));
    out.bufs.emplace_back(b, b + out.params[k].size());
  }
  return out;
}

/// The same steps over whole matrices, with the kernels' functions and NS
/// of MatrixFunctions.h on each matrix (tested above against its own
/// reference): equal bits expected.
template <typename T>
State<T> referenceMuon(const Model &m, const ReductionSpec &ns,
                       const std::vector<std::vector<std::vector<T>>> &grads) {
  State<T> out;
  out.params = initialParams<T>(m);
  for (int64_t n : m.sizes)
    out.bufs.emplace_back(size_t(n), T(0));
  for (const auto &step : grads)
    for (size_t k = 0; k < m.sizes.size(); ++k) {
      double h[2] = {k < m.split ? 0.02 : m.lr1, 0.9};
      int64_t B, R, C;
      viewOf(m.shapes[k], m.sizes[k], B, R, C);
      std::vector<T> &p = out.params[k], &buf = out.bufs[k];
      std::vector<T> x(p.size());
      for (size_t i = 0; i < p.size(); ++i)
        x[i] = buf[i] = momentumNew(buf[i], step[k][i], h);
      for (int64_t b = 0; b < B && R * C > 0; ++b) {
        std::vector<T> mat(x.begin() + b * R * C, x.begin() + (b + 1) * R * C);
        mat = runNS(mat, R, C, ns, false);
        std::copy(mat.begin(), mat.end(), x.begin() + b * R * C);
      }
      for (size_t i = 0; i < p.size(); ++i)
        p[i] = muonParam(p[i], x[i], double(R), double(C), h);
    }
  return out;
}

template <typename T> void checkMuon() {
  SCOPED_TRACE((std::is_same_v<T, float> ? "f32" : "f64"));
  Model m;
  ReductionSpec ns = nsSpec(4, 3.0, -3.2, 1.2, 1e-6);
  Rule rule = muonRuleOf<T>(ns);
  auto grads = makeGrads<T>(m, 3, 5);
  State<T> want = referenceMuon(m, ns, grads);
  for (int64_t chunkSize : {int64_t(1), int64_t(2), int64_t(3), int64_t(5),
                            int64_t(16), int64_t(16384)})
    for (unsigned threads : {1u, 2u, 3u, 4u}) {
      SCOPED_TRACE("chunkSize " + std::to_string(chunkSize) + ", " +
                   std::to_string(threads) + " threads");
      EXPECT_TRUE(runMuon(rule, m, grads, threads, chunkSize) == want);
    }
}

TEST(MatrixFunctions, MuonRuleMatchesTheReferenceBitForBitF32) {
  checkMuon<float>();
}
TEST(MatrixFunctions, MuonRuleMatchesTheReferenceBitForBitF64) {
  checkMuon<double>();
}

TEST(MatrixFunctions, EveryKernelSeesTheShapeValuesOfItsTensor) {
  Model m;
  std::vector<Seen> log;
  seen = &log;
  auto grads = makeGrads<double>(m, 1, 3);
  std::vector<std::vector<double>> params = initialParams<double>(m);
  OptimizerOptions options;
  options.threads = 3;
  options.chunkSize = 4;
  {
    Optimizer opt(muonRuleOf<double>(), groupsOf(params, m), options);
    opt.step(gradsOf(grads[0]));
  }
  seen = nullptr;
  size_t stage0 = 0, rule = 0;
  for (const Seen &s : log) {
    size_t k = 0;
    while (k < params.size() &&
           !(s.p >= static_cast<const void *>(params[k].data()) &&
             s.p < static_cast<const void *>(params[k].data() +
                                             params[k].size())))
      ++k;
    ASSERT_LT(k, params.size());
    int64_t B, R, C;
    viewOf(m.shapes[k], m.sizes[k], B, R, C);
    EXPECT_FALSE(s.nullReduced);
    EXPECT_EQ(s.rows, double(R)) << "parameter " << k;
    EXPECT_EQ(s.cols, double(C)) << "parameter " << k;
    ++(s.stage == 0 ? stage0 : rule);
    EXPECT_TRUE(s.stage == 0 || s.stage == -1) << s.stage;
  }
  // Every chunk, once by stage 0 and once by the rule kernel: [3, 5] has 5
  // chunks of rows (chunkSize 4 < C: parts of a row), ...
  EXPECT_EQ(stage0, rule);
  EXPECT_GT(stage0, 20u);
}

TEST(MatrixFunctions, ARefusedOrSkippedStepChangesNothing) {
  Model m;
  Rule rule = muonRuleOf<double>();
  auto grads = makeGrads<double>(m, 2, 8);
  std::vector<std::vector<double>> params = initialParams<double>(m);
  OptimizerOptions options;
  options.threads = 2;
  options.chunkSize = 3;
  options.skipNonFinite = true;
  Optimizer opt(rule, groupsOf(params, m), options);
  auto bad = grads[0];
  bad[8][100] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(opt.step(gradsOf(bad)));
  auto wrong = gradsOf(grads[0]);
  wrong.pop_back();
  EXPECT_THROW(opt.step(wrong), Error);
  wrong = gradsOf(grads[0]);
  wrong[2].size = 5;
  EXPECT_THROW(opt.step(wrong), Error);
  EXPECT_EQ(params, initialParams<double>(m));
  for (size_t k = 0; k < params.size(); ++k)
    for (int64_t i = 0; i < m.sizes[k]; ++i)
      ASSERT_EQ(static_cast<const double *>(opt.state(k, "buf"))[i], 0.0);
  for (const auto &step : grads)
    EXPECT_TRUE(opt.step(gradsOf(step)));
  EXPECT_EQ(params, referenceMuon<double>(m, nsSpec(), grads).params);
  EXPECT_EQ(opt.stepCount(), 2);
  EXPECT_EQ(opt.skippedSteps(), 1);
}

TEST(MatrixFunctions, MatricesBeyondCBLASDimensionsAreRefused) {
  // A matrix with more than 2^31 - 1 rows or columns cannot go to a CBLAS
  // product (int dimensions): refused when the optimizer is built, before
  // any memory of the tensor is read or any state allocated.
  Rule rule = muonRuleOf<float>();
  alignas(16) static float storage[4] = {};
  const int64_t big = int64_t(std::numeric_limits<int>::max()) + 1;
  for (std::vector<int64_t> shape :
       {std::vector<int64_t>{1, big}, std::vector<int64_t>{big, 1}}) {
    ParamGroup group;
    group.params.push_back(Param(storage, big).shaped(shape));
    try {
      Optimizer opt(rule, {group});
      ADD_FAILURE() << "no error";
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(
                    "has matrices of more than 2^31 - 1 rows or columns, "
                    "which newton_schulz does not support"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(MatrixFunctions, CheckpointsHoldTheStatesNotTheMatrices) {
  Model m;
  Rule rule = muonRuleOf<float>();
  auto grads = makeGrads<float>(m, 4, 21);
  std::string path =
      "muon-ckpt-" + std::to_string(::getpid()) + ".safetensors";
  std::vector<std::vector<float>> params = initialParams<float>(m);
  OptimizerOptions options;
  options.threads = 2;
  options.chunkSize = 7;
  {
    Optimizer opt(rule, groupsOf(params, m), options);
    for (int t = 0; t < 2; ++t)
      opt.step(gradsOf(grads[t]));
    opt.save(path);
  }
  options.threads = 1;
  Optimizer resumed(rule, groupsOf(params, m), options);
  resumed.load(path);
  for (int t = 2; t < 4; ++t)
    resumed.step(gradsOf(grads[t]));
  EXPECT_EQ(params, referenceMuon<float>(m, nsSpec(), grads).params);
  ::unlink(path.c_str());
}

// ---- Shape values without axes ---------------------------------------------
//
// "scaled": hyper lr, no state, reductions {cols, rows}:
//   p' = p - lr * (1000 rows + cols) * g
// A rule whose reductions are all shape values runs optim_rule_ only.
constexpr size_t kScaledP = 2;

void scaledReduce(void *const *, const int64_t *, const int64_t *, int64_t,
                  int64_t, const double *, int64_t, const void *const *,
                  double *, const double *, int64_t, const uint64_t *) {
  std::lock_guard<std::mutex> lock(seenMutex);
  ++reduceCalls;
}

void scaledRule(void *const *ptrs, const int64_t *lengths, const int64_t *,
                int64_t begin, int64_t end, const double *h, int64_t,
                const void *const *, const double *reduced, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * kScaledP;
    record(cp[0], -1, reduced, size_t(c), 2, 1, 0);
    double *p = static_cast<double *>(cp[0]);
    const double *g = static_cast<const double *>(cp[1]);
    double rows = reduced[c * 2 + 1], cols = reduced[c * 2];
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] -= h[0] * (1000 * rows + cols) * g[i];
  }
}

Rule scaledRuleOf() {
  RuleInfo i;
  i.name = "scaled";
  i.dtype = DType::F64;
  i.hypers = {{"lr", 1e-3, false}};
  ReductionSpec rows, cols;
  rows.kind = ReductionKind::Rows;
  cols.kind = ReductionKind::Cols;
  i.reductions = {cols, rows};
  return Rule(i, scaledReduce, scaledRule, nullptr);
}

std::vector<std::vector<double>>
referenceScaled(const Model &m, bool shaped,
                const std::vector<std::vector<std::vector<double>>> &grads) {
  std::vector<std::vector<double>> params = initialParams<double>(m);
  for (const auto &step : grads)
    for (size_t k = 0; k < params.size(); ++k) {
      int64_t B, R, C;
      viewOf(shaped ? m.shapes[k] : std::vector<int64_t>{}, m.sizes[k], B, R,
             C);
      double lr = k < m.split ? 1e-3 : m.lr1;
      for (size_t i = 0; i < params[k].size(); ++i)
        params[k][i] -= lr * (1000 * double(R) + double(C)) * step[k][i];
    }
  return params;
}

TEST(ShapeValues, ARuleWithoutAxesSeesTheShapesAndNeverReduces) {
  Model m;
  auto grads = makeGrads<double>(m, 2, 4);
  Rule rule = scaledRuleOf();
  EXPECT_FALSE(rule.info().hasAxes());
  reduceCalls = 0;
  for (bool shaped : {true, false})
    for (int64_t chunkSize : {int64_t(1), int64_t(4), int64_t(1000)})
      for (unsigned threads : {1u, 3u}) {
        SCOPED_TRACE(std::string(shaped ? "shaped" : "unshaped") +
                     ", chunkSize " + std::to_string(chunkSize));
        std::vector<Seen> log;
        seen = &log;
        std::vector<std::vector<double>> params = initialParams<double>(m);
        OptimizerOptions options;
        options.threads = threads;
        options.chunkSize = chunkSize;
        Optimizer opt(rule, groupsOf(params, m, shaped), options);
        for (const auto &step : grads)
          EXPECT_TRUE(opt.step(gradsOf(step)));
        seen = nullptr;
        EXPECT_EQ(params, referenceScaled(m, shaped, grads));
        EXPECT_FALSE(log.empty());
        for (const Seen &s : log)
          EXPECT_FALSE(s.nullReduced);
      }
  EXPECT_EQ(reduceCalls, 0);
}

// "mixed": reductions {rows, s = tensor_sum(g), cols, t = tensor_mean(g * s)
// (level 1)}: both stages and the rule read the shape values, and the
// combines leave them alone.
constexpr size_t kMixedR = 4;
void mixedReduce(void *const *ptrs, const int64_t *lengths, const int64_t *,
                 int64_t begin, int64_t end, const double *, int64_t,
                 const void *const *, double *partials, const double *reduced,
                 int64_t stage, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * 2;
    record(cp[0], int(stage), reduced, size_t(c), kMixedR, 0, 2);
    const double *g = static_cast<const double *>(cp[1]);
    double acc = 0;
    for (int64_t i = 0; i < lengths[c]; ++i)
      acc += stage == 0 ? g[i] : g[i] * reduced[c * kMixedR + 1];
    partials[c * kMixedR + (stage == 0 ? 1 : 3)] = acc;
  }
}
void mixedRule(void *const *ptrs, const int64_t *lengths, const int64_t *,
               int64_t begin, int64_t end, const double *, int64_t,
               const void *const *, const double *reduced, const uint64_t *) {
  for (int64_t c = begin; c < end; ++c) {
    void *const *cp = ptrs + c * 2;
    record(cp[0], -1, reduced, size_t(c), kMixedR, 0, 2);
    double *p = static_cast<double *>(cp[0]);
    const double *r = reduced + c * kMixedR;
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] = 1000 * r[0] + r[2] + r[1] + r[3];
  }
}

TEST(ShapeValues, EveryStageSeesThemAndCombinesLeaveThemAlone) {
  RuleInfo i;
  i.name = "mixed";
  i.dtype = DType::F64;
  ReductionSpec rows, sum, cols, mean;
  rows.kind = ReductionKind::Rows;
  cols.kind = ReductionKind::Cols;
  mean.kind = ReductionKind::Mean;
  mean.level = 1;
  i.reductions = {rows, sum, cols, mean};
  EXPECT_EQ(reductionsDescriptor(i.reductions), "rows,sum,cols,mean:1");
  Rule rule(i, mixedReduce, mixedRule, nullptr);
  std::vector<double> a(12), b(7);
  std::vector<double> ga(12, 0.5), gb(7, 2.0);
  std::vector<Seen> log;
  seen = &log;
  OptimizerOptions options;
  options.chunkSize = 5;
  options.threads = 2;
  Optimizer opt(rule,
                {Param(a.data(), a.size()).shaped({3, 4}),
                 Param(b.data(), b.size())},
                options);
  opt.step({{ga.data(), ga.size()}, {gb.data(), gb.size()}});
  seen = nullptr;
  // sum: 6 and 14; mean of g * sum: 3 and 28.
  EXPECT_EQ(a, std::vector<double>(12, 3000 + 4 + 6 + 3));
  EXPECT_EQ(b, std::vector<double>(7, 1000 + 7 + 14 + 28));
  std::map<int, size_t> perStage;
  for (const Seen &s : log) {
    bool inA = s.p >= static_cast<const void *>(a.data()) &&
               s.p < static_cast<const void *>(a.data() + a.size());
    EXPECT_FALSE(s.nullReduced);
    EXPECT_EQ(s.rows, inA ? 3.0 : 1.0);
    EXPECT_EQ(s.cols, inA ? 4.0 : 7.0);
    ++perStage[s.stage];
  }
  // 3 + 2 chunks, each seen by stages 0 and 1 and the rule.
  EXPECT_EQ(perStage, (std::map<int, size_t>{{-1, 5}, {0, 5}, {1, 5}}));
}

// ---- Descriptors, manifests, bad signatures -----------------------------------

TEST(MatrixFunctions, DescriptorsRoundTrip) {
  RuleInfo info = muonInfo(DType::F32, nsSpec(3, 2.5, -1e-3, 0.25, 1e-9));
  ReductionSpec second = nsSpec();
  second.level = 1;
  info.reductions.push_back(second);
  std::string text = reductionsDescriptor(info.reductions);
  EXPECT_EQ(text, "newton_schulz(3;2.5;-0.001;0.25;1e-09)@matrix,rows,cols,"
                  "newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix:1");
  std::vector<ReductionSpec> parsed;
  ASSERT_EQ(detail::parseReductionsDescriptor(text, parsed), "");
  EXPECT_EQ(reductionsDescriptor(parsed), text);
  ASSERT_EQ(parsed.size(), 4u);
  EXPECT_EQ(parsed[0].nsSteps, 3);
  EXPECT_EQ(parsed[0].nsCoefficients[1], -1e-3);
  EXPECT_EQ(parsed[0].nsEps, 1e-9);
  EXPECT_EQ(parsed[0].axis, Axis::Matrix);
  EXPECT_EQ(parsed[1].kind, ReductionKind::Rows);
  EXPECT_EQ(parsed[2].kind, ReductionKind::Cols);
  EXPECT_EQ(parsed[3].level, 1u);
  // Numbers as strtod reads them; the loaders compare spellings.
  ASSERT_EQ(detail::parseReductionsDescriptor(
                "newton_schulz(0;1;0;0;0.5)@matrix", parsed),
            "");
  EXPECT_EQ(parsed[0].nsSteps, 0);
}

// A host that sets LC_NUMERIC to a comma locale must neither change the
// descriptors the compiler prints nor make the loaders refuse them (strtod
// and printf read the locale). The locale is built with localedef into a
// temporary folder; the test skips where that is impossible.
TEST(MatrixFunctions, DescriptorsDoNotDependOnTheLocale) {
  std::string dir = ::testing::TempDir() + "optim-locale";
  std::string cmd = "mkdir -p '" + dir + "' && localedef -i de_DE -f UTF-8 '" +
                    dir + "/de_DE.UTF-8' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    GTEST_SKIP() << "localedef cannot build de_DE.UTF-8 here";
  setenv("LOCPATH", dir.c_str(), 1);
  if (!std::setlocale(LC_NUMERIC, "de_DE.UTF-8")) {
    unsetenv("LOCPATH");
    GTEST_SKIP() << "no de_DE.UTF-8 locale";
  }
  char probe[16];
  std::snprintf(probe, sizeof probe, "%.1f", 0.5);
  std::string text = reductionsDescriptor({nsSpec()});
  double parsed = 0;
  bool ok = parseDescriptorNumber("3.4445", parsed);
  std::vector<ReductionSpec> specs;
  std::string why = detail::parseReductionsDescriptor(text, specs);
  std::setlocale(LC_NUMERIC, "C");
  unsetenv("LOCPATH");
  EXPECT_STREQ(probe, "0,5"); // the locale is in effect
  EXPECT_EQ(text, "newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix");
  EXPECT_TRUE(ok);
  EXPECT_EQ(parsed, 3.4445);
  EXPECT_EQ(why, "");
}

TEST(MatrixFunctions, MalformedDescriptorsAreRefused) {
  const std::string ns = "newton_schulz(5;3.4445;-4.775;2.0315;1e-07)";
  const std::pair<std::string, std::string> cases[] = {
      {"newton_schulz@matrix", "entry 0 'newton_schulz@matrix' lacks its "
                               "parameters"},
      {ns, "is invalid: newton_schulz is per none; a matrix function has axis "
           "matrix and is not global"},
      {ns + "@global", "is invalid: newton_schulz is global"},
      {ns + "@row", "is invalid: newton_schulz is per row"},
      {"newton_schulz(101;1;2;3;1e-7)@matrix",
       "is invalid: newton_schulz has 101 steps; the steps are 0..100"},
      {"newton_schulz(05;1;2;3;1e-7)@matrix", "has malformed steps '05'"},
      {"newton_schulz(-1;1;2;3;1e-7)@matrix", "has malformed steps '-1'"},
      {"newton_schulz(;1;2;3;1e-7)@matrix", "has malformed steps ''"},
      {"newton_schulz(5;1;2;3)@matrix",
       "has 4 parameters; newton_schulz has 5 (steps, a, b, c, eps)"},
      {"newton_schulz(5;1;2;3;4;5)@matrix", "has 6 parameters"},
      {"newton_schulz(5;1;x;3;1e-7)@matrix", "has a malformed number 'x'"},
      {"newton_schulz(5;1; 2;3;1e-7)@matrix", "has a malformed number ' 2'"},
      {"newton_schulz(5;1;2;3;)@matrix", "has a malformed number ''"},
      // descriptorNumber never spells a non-finite number.
      {"newton_schulz(5;1;2;nan;1e-7)@matrix", "has a malformed number 'nan'"},
      {"newton_schulz(5;inf;2;3;1e-7)@matrix", "has a malformed number 'inf'"},
      {"newton_schulz(5;1;2;3;0)@matrix",
       "is invalid: newton_schulz has epsilon 0; it must be finite and "
       "positive"},
      {"newton_schulz(5;1;2;3;-1e-7)@matrix", "has epsilon -1e-07"},
      {"newton_schulz(5;1;2;3;1e-7)x@matrix", "is not a reduction"},
      {"newton_schulz(5;1;2;3;1e-7@matrix", "is not a reduction"},
      {"sum(1)", "has parameters; only newton_schulz has"},
      {"sum@matrix",
       "is invalid: sum has axis matrix; only newton_schulz is a matrix "
       "function"},
      {"rows@global", "is invalid: rows is a shape value: it has no axis, is "
                      "not global and has level 0"},
      {"cols@row", "is invalid: cols is a shape value"},
      {"sum,rows:1", "is invalid: rows is a shape value"},
      {"cols(1)", "has parameters"},
      {"row", "is not a reduction"},
      // A shape value makes no level present.
      {"rows,mean:1",
       "reduction 1 ('mean:1') has level 1, but no reduction has level 0"},
  };
  for (const auto &[text, why] : cases) {
    std::vector<ReductionSpec> out;
    std::string got = detail::parseReductionsDescriptor(text, out);
    EXPECT_NE(got.find(why), std::string::npos)
        << "'" << text << "' gave: " << got;
  }
}

Manifest muonManifest() {
  Manifest m;
  m.info = muonInfo(DType::F32, nsSpec(3, 2.5, -1e-3, 0.25, 1e-9));
  m.symbol = "optim_rule_muon";
  m.target = "x86_64-unknown-linux-gnu";
  return m;
}

TEST(MatrixFunctions, ManifestsRoundTrip) {
  std::string text = writeManifest(muonManifest());
  json doc = json::parse(text);
  EXPECT_EQ(doc["abi_version"], 11);
  EXPECT_EQ(doc["reductions"][0],
            json::parse(R"({"kind": "newton_schulz", "global": false,
                "axis": "matrix", "ns": {"steps": 3,
                "coefficients": [2.5, -0.001, 0.25], "eps": 1e-9}})"));
  EXPECT_EQ(doc["reductions"][1], json::parse(R"({"kind": "rows",
                                                  "global": false})"));
  EXPECT_EQ(doc["reductions"][2], json::parse(R"({"kind": "cols",
                                                  "global": false})"));
  Manifest back = readManifest(text, "muon.json");
  EXPECT_EQ(reductionsDescriptor(back.info.reductions),
            reductionsDescriptor(muonManifest().info.reductions));
  EXPECT_EQ(writeManifest(back), text);
}

TEST(MatrixFunctions, TamperedManifestsAreRefused) {
  json good = json::parse(writeManifest(muonManifest()));
  auto refused = [&](const std::function<void(json &)> &edit,
                     const std::string &why) {
    json doc = good;
    edit(doc);
    try {
      readManifest(doc.dump(), "m.json");
      ADD_FAILURE() << "accepted: " << doc["reductions"].dump();
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos)
          << e.what();
    }
  };
  refused([](json &d) { d["reductions"][0].erase("ns"); },
          "reduction 0 ('newton_schulz') has no \"ns\" (its steps, "
          "coefficients and eps)");
  refused([](json &d) { d["reductions"][0].erase("axis"); },
          "reduction 0 ('newton_schulz') has no axis; a newton_schulz "
          "reduction has axis \"matrix\"");
  refused([](json &d) { d["reductions"][0]["axis"] = "row"; },
          "reduction 0 ('newton_schulz') has axis \"row\"; a newton_schulz "
          "reduction has axis \"matrix\"");
  refused([](json &d) { d["reductions"][0]["global"] = true; },
          "reduction 0 ('newton_schulz'): newton_schulz is global");
  refused([](json &d) { d["reductions"][0]["ns"]["steps"] = 101; },
          "reduction 0 ('newton_schulz') has steps 101; \"ns\" is "
          "{\"steps\": an integer 0..100");
  refused([](json &d) { d["reductions"][0]["ns"]["steps"] = -1; },
          "has steps -1");
  refused([](json &d) { d["reductions"][0]["ns"]["steps"] = 2.5; },
          "has steps 2.5");
  refused([](json &d) { d["reductions"][0]["ns"]["steps"] = "5"; },
          "has steps \"5\"");
  refused(
      [](json &d) { d["reductions"][0]["ns"]["coefficients"] = {1.0, 2.0}; },
      "has coefficients [1.0,2.0]");
  refused(
      [](json &d) {
        d["reductions"][0]["ns"]["coefficients"] = {1.0, "2", 3.0};
      },
      "has coefficients [1.0,\"2\",3.0] (three finite numbers)");
  refused([](json &d) { d["reductions"][0]["ns"]["eps"] = 0; }, "has eps 0");
  refused([](json &d) { d["reductions"][0]["ns"]["eps"] = -1e-7; },
          "has eps -1e-07");
  refused([](json &d) { d["reductions"][0]["ns"]["extra"] = 1; },
          "has malformed \"ns\"");
  refused([](json &d) { d["reductions"][0]["ns"] = 5; },
          "has malformed \"ns\" 5");
  refused([](json &d) { d["reductions"][1]["ns"] = d["reductions"][0]["ns"]; },
          "reduction 1 ('rows') has \"ns\", the parameters of a newton_schulz "
          "reduction");
  refused([](json &d) { d["reductions"][1]["axis"] = "matrix"; },
          "reduction 1 ('rows') has axis \"matrix\"; an axis is \"row\" or "
          "\"col\", absent for a tensor or global reduction");
  refused([](json &d) { d["reductions"][2]["axis"] = "row"; },
          "reduction 2 ('cols'): cols is a shape value: it has no axis, is "
          "not global and has level 0");
  refused([](json &d) { d["reductions"][1]["global"] = true; },
          "reduction 1 ('rows'): rows is a shape value");
  refused([](json &d) { d["reductions"][2]["level"] = 1; },
          "reduction 2 ('cols'): cols is a shape value");
  refused([](json &d) { d["reductions"][0]["kind"] = "newton"; },
          "reduction 0 has an unknown kind 'newton' (known: sum, mean, norm, "
          "max, min, newton_schulz, rows, cols)");
  refused([](json &d) { d["abi_version"] = 10; }, "compiled for kernel ABI 10");
}

/// loadRule of the hand-written library's "muonlib" (ReductionKernels.c,
/// descriptor "newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix,rows,
/// cols") with the manifest of `info`: its error, or "no error".
std::string loadMuonLib(RuleInfo info) {
  Manifest m;
  info.name = "muonlib";
  m.info = info;
  m.symbol = "optim_rule_muonlib";
  m.target = "x86_64-unknown-linux-gnu";
  std::ifstream in(OPTIM_REDUCTION_KERNELS, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  m.artifactSha256 = detail::sha256Hex(bytes.str());
  std::string path = ::testing::TempDir() + "muonlib-" +
                     std::to_string(::getpid()) + ".manifest.json";
  writeFileAtomically(path, writeManifest(m));
  std::string result = "no error";
  try {
    Rule rule = loadRule(OPTIM_REDUCTION_KERNELS, path);
    EXPECT_EQ(reductionsDescriptor(rule.info().reductions),
              reductionsDescriptor(info.reductions));
  } catch (const Error &e) {
    result = e.what();
  }
  ::unlink(path.c_str());
  return result;
}

TEST(MatrixFunctions, LibrariesRefuseManifestsWithOtherParameters) {
  EXPECT_EQ(loadMuonLib(muonInfo(DType::F64)), "no error");
  const std::string compiled =
      "' were compiled for 'newton_schulz(5;3.4445;-4.775;2.0315;1e-07)"
      "@matrix,rows,cols' (does the manifest belong to it?)";
  RuleInfo info = muonInfo(DType::F64, nsSpec(4));
  EXPECT_NE(loadMuonLib(info).find(
                "lists the tensor reductions "
                "'newton_schulz(4;3.4445;-4.775;2.0315;1e-07)@matrix,rows,"
                "cols' but the kernels of '" OPTIM_REDUCTION_KERNELS +
                compiled),
            std::string::npos)
      << loadMuonLib(info);
  info = muonInfo(DType::F64, nsSpec(5, 3.4445, -4.775, 2.0315, 1e-8));
  EXPECT_NE(loadMuonLib(info).find("newton_schulz(5;3.4445;-4.775;2.0315;"
                                   "1e-08)@matrix,rows,cols' but"),
            std::string::npos)
      << loadMuonLib(info);
  info = muonInfo(DType::F64);
  std::swap(info.reductions[1], info.reductions[2]);
  EXPECT_NE(loadMuonLib(info).find("@matrix,cols,rows' but"),
            std::string::npos)
      << loadMuonLib(info);
}

std::string constructionError(const Rule &rule, std::vector<Param> params) {
  try {
    Optimizer opt(rule, std::move(params));
  } catch (const Error &e) {
    return e.what();
  }
  return "no error";
}

TEST(MatrixFunctions, BadRuleInfosAndTrajectoriesAreRefused) {
  std::vector<double> a(4);
  auto error = [&](RuleInfo info) {
    return constructionError(
        Rule(info, muonReduce<double>, muonRule<double>, nullptr),
        {Param(a.data(), a.size())});
  };
  RuleInfo info = muonInfo(DType::F64);
  info.reductions[0].axis = Axis::None;
  EXPECT_EQ(error(info),
            "optim::Optimizer: rule 'muon': reduction 0: newton_schulz is "
            "per none; a matrix function has axis matrix and is not global");
  info = muonInfo(DType::F64);
  info.reductions[0].nsSteps = -1;
  EXPECT_EQ(error(info), "optim::Optimizer: rule 'muon': reduction 0: "
                         "newton_schulz has -1 steps; the steps are 0..100");
  info = muonInfo(DType::F64);
  info.reductions[0].nsEps = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(error(info),
            "optim::Optimizer: rule 'muon': reduction 0: newton_schulz has "
            "epsilon nan; it must be finite and positive");
  info = muonInfo(DType::F64);
  info.reductions[1].axis = Axis::Row;
  EXPECT_EQ(error(info),
            "optim::Optimizer: rule 'muon': reduction 1: rows is a shape "
            "value: it has no axis, is not global and has level 0");
  info = muonInfo(DType::F64);
  info.reductions[2].kind = ReductionKind::Sum;
  info.reductions[2].axis = Axis::Matrix;
  EXPECT_EQ(error(info),
            "optim::Optimizer: rule 'muon': reduction 2: sum has axis matrix; "
            "only newton_schulz is a matrix function");
  EXPECT_EQ(error(muonInfo(DType::F64)), "no error");
  // Trajectories take shape values (test/e2e/TrajectoryShapesTest.cpp)
  // but need the reverse mode, which hand-written kernels do not have.
  try {
    Trajectory traj(scaledRuleOf(), {4});
    ADD_FAILURE() << "a trajectory of a rule without its reverse mode";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "optim::Trajectory: rule 'scaled' has no reverse mode (its "
              "reductions need optim_vjp_reduced_kernel_scaled and "
              "optim_vjp_reductions_kernel_scaled); compile it with "
              "CompileOptions::vjp");
  }
  try {
    Trajectory traj(muonRuleOf<double>(), {4});
    ADD_FAILURE() << "a trajectory of a rule with newton_schulz";
  } catch (const Error &) {
  }
}

// ---- The C API --------------------------------------------------------------

optim_rule *handleOf(const Rule &rule) {
  auto handle = std::make_unique<optim_rule>();
  handle->rule = rule;
  capi::trackHandle(handle.get(), capi::HandleKind::Rule);
  return handle.release();
}

TEST(MatrixFunctions, TheCApiGivesKindsAndAxesAndTakesShapes) {
  optim_rule *h = handleOf(muonRuleOf<double>());
  const char *kinds[] = {"newton_schulz", "rows", "cols"};
  const char *axes[] = {"matrix", "none", "none"};
  for (size_t r = 0; r < 3; ++r) {
    optim_reduction_info info;
    ASSERT_EQ(optim_rule_reduction(h, r, &info), OPTIM_OK);
    EXPECT_STREQ(info.kind, kinds[r]);
    EXPECT_EQ(info.global, 0);
    const char *axis = nullptr;
    ASSERT_EQ(optim_rule_reduction_axis(h, r, &axis), OPTIM_OK);
    EXPECT_STREQ(axis, axes[r]);
  }
  optim_rule_release(h);

  // The shape-values rule through optim_optimizer_create_shaped: [3, 5]
  // and [2, 3, 4] in group 0, a 1-D [6] and one without a shape in group 1.
  h = handleOf(scaledRuleOf());
  Model m;
  m.shapes = {{3, 5}, {2, 3, 4}, {6}, {}};
  m.sizes = {15, 24, 6, 5};
  m.split = 2;
  auto grads = makeGrads<double>(m, 2, 77);
  std::vector<std::vector<double>> params = initialParams<double>(m);
  void *g0[] = {params[0].data(), params[1].data()},
       *g1[] = {params[2].data(), params[3].data()};
  int64_t s0[] = {15, 24}, s1[] = {6, 5};
  optim_hyper_value lr{"lr", m.lr1};
  optim_group groups[] = {{g0, s0, 2, nullptr, 0}, {g1, s1, 2, &lr, 1}};
  const int64_t d0[] = {3, 5}, d1[] = {2, 3, 4}, d2[] = {6};
  optim_shape shapes[] = {{d0, 2}, {d1, 3}, {d2, 1}, {nullptr, 0}};
  optim_options options;
  optim_options_init(&options);
  options.threads = 2;
  options.chunk_size = 4;
  optim_optimizer *opt = nullptr;
  ASSERT_EQ(optim_optimizer_create_shaped(h, OPTIM_F64, groups, 2, shapes,
                                          &options, &opt),
            OPTIM_OK)
      << optim_last_error();
  int64_t sizes[] = {15, 24, 6, 5};
  for (const auto &step : grads) {
    const double *gs[] = {step[0].data(), step[1].data(), step[2].data(),
                          step[3].data()};
    ASSERT_EQ(optim_optimizer_step_f64(opt, gs, sizes, 4, nullptr), OPTIM_OK);
  }
  optim_optimizer_release(opt);
  EXPECT_EQ(params, referenceScaled(m, true, grads));
  optim_rule_release(h);
}

} // namespace
