//===- DenseKernelsTest.cpp - the QP solver's dense kernels vs naive code -===//
//
// Each kernel against a plain loop in long double, for every instruction set
// the CPU supports (the dispatch normally picks the widest), on sizes that
// are not multiples of the vector widths (2, 4, 8 doubles) nor of the
// register tiles (4 rows by 6, 12 or 24 columns), including 0 and 1, and
// with leading dimensions larger than the rows. The tolerances are a few
// units of rounding of each result's sum of absolute terms.
//
//===----------------------------------------------------------------------===//

#include "../lib/DenseKernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace optim::dense;

namespace {

const int64_t kSizes[] = {0, 1, 2, 7, 17, 64, 100, 201};
const double kEps = std::numeric_limits<double>::epsilon();
const double kSentinel = -12345.25;

std::vector<Isa> supportedIsas() {
  std::vector<Isa> out;
  for (Isa i : {Isa::Generic, Isa::Avx2, Isa::Avx512})
    if (isaSupported(i))
      out.push_back(i);
  return out;
}

/// Runs the body once per supported instruction set, then restores the
/// default.
template <class Fn> void forEachIsa(Fn fn) {
  Isa saved = isa();
  for (Isa i : supportedIsas()) {
    ASSERT_TRUE(setIsa(i));
    SCOPED_TRACE(std::string("isa ") + isaName(i));
    fn(i);
  }
  setIsa(saved);
}

std::vector<double> randomVector(int64_t n, std::mt19937_64 &rng,
                                 double lo = -1, double hi = 1) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(size_t(std::max<int64_t>(n, 0)));
  for (double &x : v)
    x = d(rng);
  return v;
}

/// A symmetric positive definite [n, n] matrix, full (both triangles):
/// B^T B / n + I for B uniform in [-1, 1].
std::vector<double> spdMatrix(int64_t n, int64_t lda, std::mt19937_64 &rng) {
  std::vector<double> B = randomVector(n * n, rng), A(size_t(n * lda), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      long double s = 0;
      for (int64_t k = 0; k < n; ++k)
        s += (long double)B[k * n + i] * B[k * n + j];
      A[i * lda + j] = double(s / n) + (i == j ? 1.0 : 0.0);
    }
  return A;
}

/// An upper triangular, well conditioned [n, n] matrix (diagonal in [1, 2],
/// off-diagonal entries in [-1, 1] / n); the lower triangle holds sentinels.
std::vector<double> upperMatrix(int64_t n, int64_t ldu, std::mt19937_64 &rng) {
  std::vector<double> U(size_t(n * ldu), kSentinel);
  std::uniform_real_distribution<double> diag(1, 2), off(-1, 1);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j)
      U[i * ldu + j] = i == j ? diag(rng) : off(rng) / double(n);
  return U;
}

TEST(DenseKernels, IsaDispatch) {
  EXPECT_TRUE(isaSupported(Isa::Generic));
  EXPECT_TRUE(isaSupported(isa()));
  // The default is the widest supported one (unless OPTIM_DENSE_ISA says
  // otherwise, which the test environment does not set).
  if (!std::getenv("OPTIM_DENSE_ISA")) {
    Isa widest = supportedIsas().back();
    EXPECT_EQ(isa(), widest);
  }
}

void checkGemm(int64_t m, int64_t n, int64_t kdim, bool upper, double alpha,
               std::mt19937_64 &rng) {
  SCOPED_TRACE("m " + std::to_string(m) + " n " + std::to_string(n) + " k " +
               std::to_string(kdim) + (upper ? " upper" : ""));
  const int64_t ldx = m + 3, ldy = n + 1, ldc = n + 2;
  std::vector<double> X = randomVector(kdim * ldx, rng),
                      Y = randomVector(kdim * ldy, rng),
                      C = randomVector(m * ldc, rng);
  for (int64_t i = 0; i < m; ++i) // columns outside [0, n): must stay
    for (int64_t j = n; j < ldc; ++j)
      C[i * ldc + j] = kSentinel;
  if (upper)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < std::min(i, n); ++j)
        C[i * ldc + j] = kSentinel;
  std::vector<double> got = C;
  gemmTN(m, n, kdim, X.data(), ldx, Y.data(), ldy, got.data(), ldc, alpha,
         upper);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const double before = C[i * ldc + j], after = got[i * ldc + j];
      if (j >= n || (upper && j < i)) {
        ASSERT_EQ(after, before) << "wrote outside at " << i << "," << j;
        continue;
      }
      long double s = 0, mag = 0;
      for (int64_t k = 0; k < kdim; ++k) {
        long double t = (long double)X[k * ldx + i] * Y[k * ldy + j];
        s += t;
        mag += std::fabs(t);
      }
      const double want = double(before + alpha * s);
      const double tol =
          4 * (kdim + 2) * kEps * double(std::fabs(before) + mag);
      ASSERT_NEAR(after, want, tol) << "at " << i << "," << j;
    }
}

TEST(DenseKernels, GemmTNUpper) {
  std::mt19937_64 rng(1);
  forEachIsa([&](Isa) {
    for (int64_t n : kSizes)
      for (int64_t k : {int64_t(0), int64_t(1), int64_t(13), n})
        checkGemm(n, n, k, /*upper=*/true, k % 2 ? -1.0 : 1.0, rng);
  });
}

TEST(DenseKernels, GemmTNRectangular) {
  std::mt19937_64 rng(2);
  forEachIsa([&](Isa) {
    for (int64_t m : kSizes)
      for (int64_t n : kSizes)
        checkGemm(m, n, (m + n) % 19 + (n == 201 ? 40 : 0), false,
                  n % 2 ? -0.5 : 1.0, rng);
  });
}

TEST(DenseKernels, GemmTNSameResultsAvx2Avx512) {
  // Sums over k in order in each lane: AVX2 and AVX-512 agree bit for bit.
  if (!isaSupported(Isa::Avx512) || !isaSupported(Isa::Avx2))
    GTEST_SKIP() << "needs AVX2 and AVX-512";
  std::mt19937_64 rng(3);
  const int64_t n = 100, k = 37;
  std::vector<double> X = randomVector(k * n, rng),
                      Y = randomVector(k * n, rng),
                      C0 = randomVector(n * n, rng);
  Isa saved = isa();
  std::vector<double> a = C0, b = C0;
  setIsa(Isa::Avx2);
  gemmTN(n, n, k, X.data(), n, Y.data(), n, a.data(), n, 1.0, true);
  setIsa(Isa::Avx512);
  gemmTN(n, n, k, X.data(), n, Y.data(), n, b.data(), n, 1.0, true);
  setIsa(saved);
  EXPECT_EQ(a, b);
}

/// Naive Cholesky (upper, A = U^T U) in long double.
std::vector<double> naiveCholesky(const std::vector<double> &A, int64_t n,
                                  int64_t lda) {
  std::vector<long double> U(size_t(n * n), 0);
  for (int64_t j = 0; j < n; ++j) {
    long double d = A[j * lda + j];
    for (int64_t k = 0; k < j; ++k)
      d -= U[k * n + j] * U[k * n + j];
    U[j * n + j] = std::sqrt(d);
    for (int64_t i = j + 1; i < n; ++i) {
      long double s = A[j * lda + i];
      for (int64_t k = 0; k < j; ++k)
        s -= U[k * n + j] * U[k * n + i];
      U[j * n + i] = s / U[j * n + j];
    }
  }
  return std::vector<double>(U.begin(), U.end());
}

TEST(DenseKernels, Cholesky) {
  std::mt19937_64 rng(4);
  forEachIsa([&](Isa) {
    for (int64_t n : kSizes) {
      SCOPED_TRACE("n " + std::to_string(n));
      const int64_t lda = n + 5;
      std::vector<double> A = spdMatrix(n, lda, rng);
      // Only the upper triangle is read and written.
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j)
          A[i * lda + j] = kSentinel;
      std::vector<double> U = A;
      ASSERT_TRUE(choleskyUpper(n, U.data(), lda, 0.0));
      std::vector<double> want = naiveCholesky(A, n, lda);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < lda; ++j) {
          if (j < i || j >= n) {
            ASSERT_EQ(U[i * lda + j], A[i * lda + j]) << i << "," << j;
            continue;
          }
          // The matrix is well conditioned (eigenvalues in [1, 1 + n/3]).
          ASSERT_NEAR(U[i * lda + j], want[i * n + j], 1e-13 * (n + 1))
              << i << "," << j;
        }
    }
  });
}

TEST(DenseKernels, CholeskyRejectsIndefinite) {
  std::mt19937_64 rng(5);
  forEachIsa([&](Isa) {
    for (int64_t n : kSizes) {
      if (n == 0)
        continue;
      SCOPED_TRACE("n " + std::to_string(n));
      std::vector<double> A = spdMatrix(n, n, rng);
      // A - 2 lambda_max-ish I: the last pivot at least is negative.
      for (int64_t i = 0; i < n; ++i)
        A[i * n + i] -= 2.0 + double(n);
      std::vector<double> U = A;
      EXPECT_FALSE(choleskyUpper(n, U.data(), n, 0.0));
      // A pivot must exceed minPivot, not only 0.
      std::vector<double> I(size_t(n * n), 0.0);
      for (int64_t i = 0; i < n; ++i)
        I[i * n + i] = 1.0;
      EXPECT_FALSE(choleskyUpper(n, I.data(), n, 1.0));
      // A non-finite entry fails rather than producing NaNs silently.
      std::vector<double> P = spdMatrix(n, n, rng);
      P[(n - 1) * n + (n - 1)] = std::nan("");
      EXPECT_FALSE(choleskyUpper(n, P.data(), n, 0.0));
    }
  });
}

TEST(DenseKernels, TriangularSolves) {
  std::mt19937_64 rng(6);
  forEachIsa([&](Isa) {
    for (int64_t n : kSizes) {
      SCOPED_TRACE("n " + std::to_string(n));
      const int64_t ldu = n + 3;
      std::vector<double> U = upperMatrix(n, ldu, rng);
      std::vector<double> b = randomVector(n, rng);
      // Forward: U^T x = b.
      std::vector<long double> want(b.begin(), b.end());
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t k = 0; k < j; ++k)
          want[j] -= (long double)U[k * ldu + j] * want[k];
        want[j] /= U[j * ldu + j];
      }
      std::vector<double> x = b;
      solveUpperT(n, U.data(), ldu, x.data());
      for (int64_t j = 0; j < n; ++j)
        ASSERT_NEAR(x[j], double(want[j]), 1e-14 * (n + 1)) << j;
      // Backward: U x = b.
      want.assign(b.begin(), b.end());
      for (int64_t i = n - 1; i >= 0; --i) {
        for (int64_t k = i + 1; k < n; ++k)
          want[i] -= (long double)U[i * ldu + k] * want[k];
        want[i] /= U[i * ldu + i];
      }
      x = b;
      solveUpper(n, U.data(), ldu, x.data());
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(x[i], double(want[i]), 1e-14 * (n + 1)) << i;
    }
  });
}

TEST(DenseKernels, TriangularSolveMultipleRightHandSides) {
  std::mt19937_64 rng(7);
  forEachIsa([&](Isa) {
    for (int64_t n : kSizes)
      for (int64_t nrhs : kSizes) {
        SCOPED_TRACE("n " + std::to_string(n) + " nrhs " +
                     std::to_string(nrhs));
        const int64_t ldu = n + 1, ldb = nrhs + 2;
        std::vector<double> U = upperMatrix(n, ldu, rng);
        std::vector<double> B = randomVector(n * ldb, rng);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = nrhs; c < ldb; ++c)
            B[i * ldb + c] = kSentinel;
        std::vector<double> X = B;
        solveUpperTMulti(n, nrhs, U.data(), ldu, X.data(), ldb);
        for (int64_t c = 0; c < nrhs; ++c) {
          std::vector<long double> want(static_cast<size_t>(n));
          for (int64_t j = 0; j < n; ++j) {
            long double s = B[j * ldb + c];
            for (int64_t k = 0; k < j; ++k)
              s -= (long double)U[k * ldu + j] * want[k];
            want[j] = s / U[j * ldu + j];
          }
          for (int64_t j = 0; j < n; ++j)
            ASSERT_NEAR(X[j * ldb + c], double(want[j]), 1e-14 * (n + 1))
                << j << "," << c;
        }
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = nrhs; c < ldb; ++c)
            ASSERT_EQ(X[i * ldb + c], kSentinel);
      }
  });
}

TEST(DenseKernels, LevelOneAndTwo) {
  std::mt19937_64 rng(8);
  forEachIsa([&](Isa) {
    for (int64_t r : kSizes)
      for (int64_t c : kSizes) {
        SCOPED_TRACE("r " + std::to_string(r) + " c " + std::to_string(c));
        const int64_t ldm = c + 3;
        std::vector<double> M = randomVector(r * ldm, rng),
                            x = randomVector(c, rng), xr = randomVector(r, rng),
                            y0 = randomVector(c, rng);
        // dot (r == c only, for the vectors' length).
        if (r == c) {
          std::vector<double> u = randomVector(c, rng);
          long double s = 0, mag = 0;
          for (int64_t i = 0; i < c; ++i) {
            s += (long double)u[i] * x[i];
            mag += std::fabs((long double)u[i] * x[i]);
          }
          ASSERT_NEAR(dot(c, u.data(), x.data()), double(s),
                      4 * (c + 1) * kEps * double(mag));
        }
        // y = M x.
        std::vector<double> y(size_t(r), kSentinel);
        gemv(r, c, M.data(), ldm, x.data(), y.data());
        for (int64_t i = 0; i < r; ++i) {
          long double s = 0, mag = 0;
          for (int64_t j = 0; j < c; ++j) {
            s += (long double)M[i * ldm + j] * x[j];
            mag += std::fabs((long double)M[i * ldm + j] * x[j]);
          }
          ASSERT_NEAR(y[i], double(s), 4 * (c + 1) * kEps * double(mag)) << i;
        }
        // y += M^T xr.
        std::vector<double> yt = y0;
        gemvTAdd(r, c, M.data(), ldm, xr.data(), yt.data());
        for (int64_t j = 0; j < c; ++j) {
          long double s = y0[j], mag = std::fabs(y0[j]);
          for (int64_t i = 0; i < r; ++i) {
            s += (long double)M[i * ldm + j] * xr[i];
            mag += std::fabs((long double)M[i * ldm + j] * xr[i]);
          }
          ASSERT_NEAR(yt[j], double(s), 4 * (r + 2) * kEps * double(mag)) << j;
        }
      }
  });
}

TEST(DenseKernels, SymmetricMatrixVector) {
  std::mt19937_64 rng(9);
  forEachIsa([&](Isa) {
    for (int64_t n : kSizes) {
      SCOPED_TRACE("n " + std::to_string(n));
      const int64_t lds = n + 2;
      std::vector<double> S = randomVector(n * lds, rng),
                          x = randomVector(n, rng);
      // The lower triangle must not be read: poison it.
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j)
          S[i * lds + j] = std::nan("");
      std::vector<double> y(size_t(n), kSentinel);
      symvUpper(n, S.data(), lds, x.data(), y.data());
      for (int64_t i = 0; i < n; ++i) {
        long double s = 0, mag = 0;
        for (int64_t j = 0; j < n; ++j) {
          double sij = j >= i ? S[i * lds + j] : S[j * lds + i];
          s += (long double)sij * x[j];
          mag += std::fabs((long double)sij * x[j]);
        }
        ASSERT_NEAR(y[i], double(s), 4 * (n + 1) * kEps * double(mag)) << i;
      }
    }
  });
}

} // namespace
