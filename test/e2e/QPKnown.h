//===- QPKnown.h - QP test problems built around a known solution ---------===//
//
// Shared by the QP solver's tests (QPTest.cpp, QPScalingTest.cpp): a problem
// whose solution z*, nu*, lam* is known by construction, and the QPProblem
// that shares its data.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TEST_E2E_QPKNOWN_H
#define OPTIM_TEST_E2E_QPKNOWN_H

#include "optim/QP.h"

#include <random>
#include <vector>

namespace optim {
namespace qptest {

using Vec = std::vector<double>;

/// A problem with a known, nondegenerate solution: z*, nu*, lam* (active:
/// lam in [0.5, 2], s = 0; inactive: lam = 0, s in [0.5, 2]); Q = U^T U / n
/// + 0.5 I.
struct Known {
  int64_t n, m, p;
  Vec Q, q, A, b, G, h, z, nu, lam;
};

inline Known makeKnown(std::mt19937_64 &rng, int64_t n, int64_t m,
                       int64_t p) {
  std::normal_distribution<double> N;
  std::uniform_real_distribution<double> U(0.5, 2.0);
  Known k{n, m, p, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  Vec u(n * n);
  for (double &x : u)
    x = N(rng);
  k.Q.assign(n * n, 0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t r = 0; r < n; ++r)
        s += u[r * n + i] * u[r * n + j];
      k.Q[i * n + j] = s / n + (i == j ? 0.5 : 0.0);
    }
  k.A.resize(m * n);
  k.G.resize(p * n);
  k.z.resize(n);
  k.nu.resize(m);
  k.lam.assign(p, 0);
  for (double &x : k.A)
    x = N(rng);
  for (double &x : k.G)
    x = N(rng);
  for (double &x : k.z)
    x = N(rng);
  for (double &x : k.nu)
    x = N(rng);
  Vec s(p);
  int64_t active = 0;
  for (int64_t i = 0; i < p; ++i) {
    // Every other constraint active, while they stay independent.
    if (i % 2 == 0 && active < n - m) {
      k.lam[i] = U(rng);
      ++active;
    } else {
      s[i] = U(rng);
    }
  }
  k.q.assign(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    double v = 0;
    for (int64_t j = 0; j < n; ++j)
      v += k.Q[i * n + j] * k.z[j];
    for (int64_t r = 0; r < m; ++r)
      v += k.A[r * n + i] * k.nu[r];
    for (int64_t r = 0; r < p; ++r)
      v += k.G[r * n + i] * k.lam[r];
    k.q[i] = -v;
  }
  k.b.resize(m);
  for (int64_t r = 0; r < m; ++r) {
    double v = 0;
    for (int64_t j = 0; j < n; ++j)
      v += k.A[r * n + j] * k.z[j];
    k.b[r] = v;
  }
  k.h.resize(p);
  for (int64_t r = 0; r < p; ++r) {
    double v = 0;
    for (int64_t j = 0; j < n; ++j)
      v += k.G[r * n + j] * k.z[j];
    k.h[r] = v + s[r];
  }
  return k;
}

inline QPProblem shared(const Known &k, int64_t batch = 1) {
  QPProblem p;
  p.dtype = DType::F64;
  p.batch = batch;
  p.Q = {k.Q.data(), {k.n, k.n}};
  p.q = {k.q.data(), {k.n}};
  if (k.m) {
    p.A = {k.A.data(), {k.m, k.n}};
    p.b = {k.b.data(), {k.m}};
  }
  if (k.p) {
    p.G = {k.G.data(), {k.p, k.n}};
    p.h = {k.h.data(), {k.p}};
  }
  return p;
}

} // namespace qptest
} // namespace optim

#endif // OPTIM_TEST_E2E_QPKNOWN_H
