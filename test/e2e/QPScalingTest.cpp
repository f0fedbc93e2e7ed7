//===- QPScalingTest.cpp - QP solutions do not depend on the data's scale -===//
//
// A QP's solution z does not change when (Q, q) is multiplied by c > 0,
// (A, b) by a > 0 or (G, h) by g > 0; nu and lam are multiplied by c/a and
// c/g. The solver scales every problem (QPScale.h), so it must give the same
// z, statuses and (scaled) multipliers and gradients at scales 1e-8 and 1e8
// as at 1. Before it did, Q and q multiplied by 1e-8 came back "solved"
// 0.2 away from the solution, by 1e8 or with constraints multiplied by
// 1e-8 at the iteration limit.
//
//===----------------------------------------------------------------------===//

#include "optim/QP.h"

#include "QPKnown.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace optim;

namespace {

using Vec = std::vector<double>;
using qptest::Known;
using qptest::makeKnown;

/// (objective, equalities, inequalities) factors.
struct Scale {
  double c, a, g;
};
const Scale kScales[] = {
    {1e-8, 1, 1},   {1e8, 1, 1},   {1, 1e-8, 1e-8},   {1, 1e8, 1e8},
    {1, 1e-8, 1e8}, {1, 1e8, 1e-8}, {1e-8, 1e8, 1e-8}, {1e8, 1e-8, 1e8}};

std::string describe(const Scale &s, DType dtype) {
  std::ostringstream os;
  os << (dtype == DType::F64 ? "f64" : "f32") << " (Q, q) * " << s.c
     << ", (A, b) * " << s.a << ", (G, h) * " << s.g;
  return os.str();
}

/// A problem's data multiplied by s and stored in the dtype (float32:
/// rounded once, as a caller's float32 data would be), and the solver's
/// answer to it in float64.
struct Scaled {
  int64_t n, m, p;
  DType dtype;
  std::vector<double> d64[6];
  std::vector<float> d32[6];
  bool hasQ;

  Scaled(const Vec &Q, const Vec &q, const Vec &A, const Vec &b, const Vec &G,
         const Vec &h, int64_t n, int64_t m, int64_t p, const Scale &s,
         DType dtype)
      : n(n), m(m), p(p), dtype(dtype), hasQ(!Q.empty()) {
    const Vec *src[6] = {&Q, &q, &A, &b, &G, &h};
    const double f[6] = {s.c, s.c, s.a, s.a, s.g, s.g};
    for (int k = 0; k < 6; ++k)
      for (double x : *src[k]) {
        d64[k].push_back(x * f[k]);
        d32[k].push_back(float(x * f[k]));
      }
  }

  QPProblem problem() const {
    QPProblem pb;
    pb.dtype = dtype;
    auto ptr = [&](int k) -> const void * {
      return dtype == DType::F64 ? static_cast<const void *>(d64[k].data())
                                 : static_cast<const void *>(d32[k].data());
    };
    if (hasQ)
      pb.Q = {ptr(0), {n, n}};
    pb.q = {ptr(1), {n}};
    if (m) {
      pb.A = {ptr(2), {m, n}};
      pb.b = {ptr(3), {m}};
    }
    if (p) {
      pb.G = {ptr(4), {p, n}};
      pb.h = {ptr(5), {p}};
    }
    return pb;
  }
};

/// Solution and status, in float64 whatever the dtype.
struct Result {
  Vec z, nu, lam;
  QPStatus status = QPStatus::NumericalError;
};

/// Forward on `s` with `solver`; the outputs widened to float64.
Result solve(QPSolver &solver, const Scaled &s) {
  Result r;
  std::vector<double> z(s.n), nu(s.m), lam(s.p);
  std::vector<float> z32(s.n), nu32(s.m), lam32(s.p);
  const bool f64 = s.dtype == DType::F64;
  solver.forward(s.problem(),
                 {f64 ? (void *)z.data() : z32.data(),
                  f64 ? (void *)nu.data() : nu32.data(),
                  f64 ? (void *)lam.data() : lam32.data(), &r.status,
                  nullptr});
  r.z = f64 ? z : Vec(z32.begin(), z32.end());
  r.nu = f64 ? nu : Vec(nu32.begin(), nu32.end());
  r.lam = f64 ? lam : Vec(lam32.begin(), lam32.end());
  return r;
}

/// max_i |x_i * f - y_i| / max(1, max |y|).
double relDiff(const Vec &x, double f, const Vec &y) {
  double d = 0, scale = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    d = std::max(d, std::abs(x[i] * f - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return d / scale;
}

TEST(QPScaling, ScaledDataGiveTheSameSolution) {
  // Shapes of every mode: inequalities and equalities, inequalities only
  // (dense and, with 2p <= n, low-rank), equalities only, unconstrained.
  std::mt19937_64 rng(11);
  const int64_t shapes[][3] = {{4, 0, 4},  {10, 3, 12}, {40, 10, 60},
                               {30, 0, 6}, {7, 3, 0},   {6, 0, 0}};
  for (auto &sh : shapes) {
    Known k = makeKnown(rng, sh[0], sh[1], sh[2]);
    for (DType dtype : {DType::F64, DType::F32}) {
      // Float32 rounds the data (the scaled data differently from the
      // unscaled): the solution moves by about the rounding times the
      // problem's condition (measured: below 1e-6 here).
      const double tol = dtype == DType::F64 ? 1e-9 : 1e-4;
      QPSolver solver;
      Scaled unit(k.Q, k.q, k.A, k.b, k.G, k.h, k.n, k.m, k.p, {1, 1, 1},
                  dtype);
      Result ref = solve(solver, unit);
      ASSERT_EQ(ref.status, QPStatus::Solved);
      EXPECT_LT(relDiff(ref.z, 1, k.z), dtype == DType::F64 ? 1e-7 : 1e-4);
      for (const Scale &s : kScales) {
        SCOPED_TRACE(describe(s, dtype) + ", n = " + std::to_string(k.n) +
                     ", m = " + std::to_string(k.m) +
                     ", p = " + std::to_string(k.p));
        Result r = solve(solver, Scaled(k.Q, k.q, k.A, k.b, k.G, k.h, k.n,
                                        k.m, k.p, s, dtype));
        ASSERT_EQ(r.status, QPStatus::Solved);
        EXPECT_LT(relDiff(r.z, 1, ref.z), tol);
        // The multipliers of the scaled problem are c/a nu and c/g lam.
        EXPECT_LT(relDiff(r.nu, s.a / s.c, ref.nu), 10 * tol);
        EXPECT_LT(relDiff(r.lam, s.g / s.c, ref.lam), 10 * tol);
      }
    }
  }
}

TEST(QPScaling, StatusesDoNotDependOnTheScale) {
  // An LP (no Q: the objective's scale comes from q) with its vertex
  // (1.6, 1.2), an infeasible and an unbounded problem, and a nonconvex
  // one (Q = -I on a box, whose stationary point z = 0 is no solution).
  const Vec none;
  const Vec lpq = {-1, -1}, lpG = {1, 2, 3, 1, -1, 0, 0, -1},
            lph = {4, 6, 0, 0};
  const Vec iq = {1}, iG = {1, -1}, ih = {-1, -1};
  const Vec uq = {-1, 0}, uG = {0, -1}, uh = {0};
  const Vec nQ = {-1, 0, 0, -1}, nq = {0.25, 0},
            nG = {1, 0, 0, 1, -1, 0, 0, -1}, nh = {1, 1, 1, 1};
  for (DType dtype : {DType::F64, DType::F32})
    for (const Scale &s : kScales) {
      SCOPED_TRACE(describe(s, dtype));
      QPSolver solver;
      Result lp = solve(solver, Scaled(none, lpq, none, none, lpG, lph, 2, 0,
                                       4, s, dtype));
      ASSERT_EQ(lp.status, QPStatus::Solved);
      EXPECT_NEAR(lp.z[0], 1.6, dtype == DType::F64 ? 1e-9 : 1e-5);
      EXPECT_NEAR(lp.z[1], 1.2, dtype == DType::F64 ? 1e-9 : 1e-5);
      Result inf = solve(
          solver, Scaled(none, iq, none, none, iG, ih, 1, 0, 2, s, dtype));
      EXPECT_EQ(inf.status, QPStatus::PrimalInfeasible);
      // The certificate is normalized to max |lam| = 1 at every scale.
      EXPECT_NEAR(std::max(inf.lam[0], inf.lam[1]), 1.0, 1e-6);
      Result unb = solve(
          solver, Scaled(none, uq, none, none, uG, uh, 2, 0, 1, s, dtype));
      EXPECT_EQ(unb.status, QPStatus::DualInfeasible);
      Result ncv =
          solve(solver, Scaled(nQ, nq, none, none, nG, nh, 2, 0, 4, s, dtype));
      EXPECT_EQ(ncv.status, QPStatus::NumericalError);
    }
}

TEST(QPScaling, GradientsScaleAsTheData) {
  // A loss of z alone, L = gz.z: z does not depend on the scale, so the
  // gradient of each scaled operand is the unscaled one divided by the
  // operand's factor (dL/d(c q) = dL/dq / c, ...). The backward pass solves
  // the scaled system and must scale its right-hand side and result back.
  std::mt19937_64 rng(12);
  std::normal_distribution<double> N;
  Known k = makeKnown(rng, 9, 2, 11);
  Vec gz(k.n);
  for (double &x : gz)
    x = N(rng);
  auto grads = [&](const Scale &s) {
    Scaled d(k.Q, k.q, k.A, k.b, k.G, k.h, k.n, k.m, k.p, s, DType::F64);
    QPSolver solver;
    Result r = solve(solver, d);
    EXPECT_EQ(r.status, QPStatus::Solved);
    std::vector<Vec> g = {Vec(k.n * k.n), Vec(k.n),       Vec(k.m * k.n),
                          Vec(k.m),       Vec(k.p * k.n), Vec(k.p)};
    QPGradientBuffers gb;
    gb.dz = gz.data();
    gb.dQ = g[0].data();
    gb.dq = g[1].data();
    gb.dA = g[2].data();
    gb.db = g[3].data();
    gb.dG = g[4].data();
    gb.dh = g[5].data();
    solver.backward(d.problem(), gb);
    return g;
  };
  const std::vector<Vec> ref = grads({1, 1, 1});
  const char *names[6] = {"dQ", "dq", "dA", "db", "dG", "dh"};
  for (const Scale &s : kScales) {
    const std::vector<Vec> g = grads(s);
    const double f[6] = {s.c, s.c, s.a, s.a, s.g, s.g};
    for (int op = 0; op < 6; ++op)
      EXPECT_LT(relDiff(g[op], f[op], ref[op]), 1e-8)
          << names[op] << ", " << describe(s, DType::F64);
  }
}

TEST(QPScaling, EachProblemOfABatchHasItsOwnScale) {
  // Batched Q and q: element e is (Q, q) * 10^(8 (e - 1)); one z for all.
  std::mt19937_64 rng(13);
  Known k = makeKnown(rng, 8, 2, 10);
  const int64_t B = 3, n = k.n;
  Vec Q, q;
  for (int64_t e = 0; e < B; ++e) {
    const double c = std::pow(10.0, 8.0 * double(e - 1));
    for (double x : k.Q)
      Q.push_back(x * c);
    for (double x : k.q)
      q.push_back(x * c);
  }
  QPProblem pb = qptest::shared(k);
  pb.batch = 0;
  pb.Q = {Q.data(), {B, n, n}};
  pb.q = {q.data(), {B, n}};
  Vec z(B * n), nu(B * k.m), lam(B * k.p);
  std::vector<QPStatus> st(B);
  QPSolver().forward(pb, {z.data(), nu.data(), lam.data(), st.data()});
  for (int64_t e = 0; e < B; ++e) {
    ASSERT_EQ(st[e], QPStatus::Solved) << "element " << e;
    EXPECT_LT(relDiff(Vec(z.begin() + e * n, z.begin() + (e + 1) * n), 1,
                      k.z),
              1e-7)
        << "element " << e;
  }
}

} // namespace
