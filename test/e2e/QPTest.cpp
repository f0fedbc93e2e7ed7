//===- QPTest.cpp - the batched QP solver: solutions, gradients, errors ---===//
//
// Gradients are checked against central finite differences of the forward
// pass in float64; solutions of problems built around a known KKT point;
// batches against their elements solved one by one; 1 vs 2 threads bitwise.
// (The comparison with an independent solver is test/Oracle/qp-oracle.test.)
//
//===----------------------------------------------------------------------===//

#include "optim/QP.h"
#include "optim/KernelABI.h"

#include "QPKnown.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace optim;

namespace {

using Vec = std::vector<double>;
using qptest::Known;
using qptest::makeKnown;
using qptest::shared;

struct Out {
  Vec z, nu, lam;
  std::vector<QPStatus> status;
  std::vector<int32_t> iters;
  Out(int64_t B, int64_t n, int64_t m, int64_t p)
      : z(B * n), nu(B * m), lam(B * p), status(B), iters(B) {}
  QPSolutionBuffers buffers() {
    return {z.data(), nu.data(), lam.data(), status.data(), iters.data()};
  }
};

double maxAbsDiff(const Vec &a, const Vec &b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i)
    d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

TEST(QP, KnownSolutionsOfVariedShape) {
  std::mt19937_64 rng(7);
  // With m = 0 and 2p <= n (the last three), the solver takes its
  // low-rank mode (Woodbury over the p inequalities).
  const int64_t shapes[][3] = {{1, 0, 0},   {1, 0, 1},    {1, 1, 0},
                               {2, 1, 3},   {5, 0, 7},    {7, 3, 0},
                               {13, 4, 20}, {40, 10, 60}, {30, 0, 6},
                               {61, 0, 17}, {100, 0, 50}};
  for (auto &sh : shapes) {
    Known k = makeKnown(rng, sh[0], sh[1], sh[2]);
    QPSolver solver;
    Out o(1, k.n, k.m, k.p);
    solver.forward(shared(k), o.buffers());
    ASSERT_EQ(o.status[0], QPStatus::Solved) << sh[0] << " " << sh[1];
    EXPECT_LT(maxAbsDiff(o.z, k.z), 1e-7) << "n=" << sh[0];
    EXPECT_LT(maxAbsDiff(o.nu, k.nu), 1e-6) << "n=" << sh[0];
    EXPECT_LT(maxAbsDiff(o.lam, k.lam), 1e-6) << "n=" << sh[0];
  }
}

TEST(QP, Float32IsSolvedInFloat64Arithmetic) {
  std::mt19937_64 rng(8);
  Known k = makeKnown(rng, 12, 3, 15);
  auto f = [](const Vec &v) { return std::vector<float>(v.begin(), v.end()); };
  std::vector<float> Q = f(k.Q), q = f(k.q), A = f(k.A), b = f(k.b), G = f(k.G),
                     h = f(k.h);
  QPProblem p;
  p.dtype = DType::F32;
  p.Q = {Q.data(), {12, 12}};
  p.q = {q.data(), {12}};
  p.A = {A.data(), {3, 12}};
  p.b = {b.data(), {3}};
  p.G = {G.data(), {15, 12}};
  p.h = {h.data(), {15}};
  std::vector<float> z(12), nu(3), lam(15);
  QPStatus st;
  QPSolver().forward(p, {z.data(), nu.data(), lam.data(), &st, nullptr});
  ASSERT_EQ(st, QPStatus::Solved);
  for (int i = 0; i < 12; ++i) // data rounding, not the solver, limits it
    EXPECT_NEAR(z[i], k.z[i], 1e-4 * std::max(1.0, std::abs(k.z[i])));
}

TEST(QP, LinearProgramEqualityOnlyAndUnconstrained) {
  // LP: minimize -z0 - z1 s.t. z0 + 2 z1 <= 4, 3 z0 + z1 <= 6, z >= 0:
  // vertex (1.6, 1.2).
  Vec q = {-1, -1}, G = {1, 2, 3, 1, -1, 0, 0, -1}, h = {4, 6, 0, 0};
  QPProblem lp;
  lp.q = {q.data(), {2}};
  lp.G = {G.data(), {4, 2}};
  lp.h = {h.data(), {4}};
  Out o(1, 2, 0, 4);
  QPSolver().forward(lp, o.buffers());
  ASSERT_EQ(o.status[0], QPStatus::Solved);
  EXPECT_NEAR(o.z[0], 1.6, 1e-9);
  EXPECT_NEAR(o.z[1], 1.2, 1e-9);
  // Duals: (1, 1) = lam0 (1, 2) + lam1 (3, 1) -> lam = (0.4, 0.2).
  EXPECT_NEAR(o.lam[0], 0.4, 1e-9);
  EXPECT_NEAR(o.lam[1], 0.2, 1e-9);

  // Equality only: minimize 1/2 |z|^2 s.t. z0 + z1 + z2 = 3 -> (1, 1, 1).
  Vec I3 = {1, 0, 0, 0, 1, 0, 0, 0, 1}, zero3 = {0, 0, 0}, A = {1, 1, 1},
      b = {3};
  QPProblem eq;
  eq.Q = {I3.data(), {3, 3}};
  eq.q = {zero3.data(), {3}};
  eq.A = {A.data(), {1, 3}};
  eq.b = {b.data(), {1}};
  Out e(1, 3, 1, 0);
  QPSolver().forward(eq, e.buffers());
  ASSERT_EQ(e.status[0], QPStatus::Solved);
  for (double v : e.z)
    EXPECT_NEAR(v, 1.0, 1e-12);
  EXPECT_NEAR(e.nu[0], -1.0, 1e-12);

  // Unconstrained: z = -Q^{-1} q.
  Vec Q2 = {2, 1, 1, 3}, q2 = {1, -1};
  QPProblem un;
  un.Q = {Q2.data(), {2, 2}};
  un.q = {q2.data(), {2}};
  Out u(1, 2, 0, 0);
  QPSolver().forward(un, u.buffers());
  ASSERT_EQ(u.status[0], QPStatus::Solved);
  EXPECT_NEAR(u.z[0], -0.8, 1e-12);
  EXPECT_NEAR(u.z[1], 0.6, 1e-12);
}

TEST(QP, IllConditionedMinimizerIsNotUnbounded) {
  // Q = diag(1, 1e-10), q = (1, 1): z = (-1, -1e10), a finite minimum. Its
  // Q z is below 1e-9 |z| |Q|, which the unboundedness test took for a
  // direction of unbounded descent; the objective's slope along z, zero
  // there, now rules it out.
  Vec Q = {1, 0, 0, 1e-10}, q = {1, 1};
  QPProblem pb;
  pb.Q = {Q.data(), {2, 2}};
  pb.q = {q.data(), {2}};
  Out o(1, 2, 0, 0);
  QPSolver().forward(pb, o.buffers());
  ASSERT_EQ(o.status[0], QPStatus::Solved);
  EXPECT_NEAR(o.z[0], -1.0, 1e-9);
  EXPECT_NEAR(o.z[1] / 1e10, -1.0, 1e-8);
}

TEST(QP, BackwardAtNonUniqueSolutionIsLeastSquares) {
  // minimize -z0 over the box |z| <= 1: every z = (1, t) is a solution. The
  // KKT system at it is singular along z1; the regularized solve turned the
  // incoming gradient's z1 part into dq1 ~ 1e10. The least-squares solution:
  // K = [[0, 0, 1], [0, 0, 0], [1, 0, 0]] (z0, z1, lam0), rhs = -(0.5, 1, 0)
  // -> d = (0, 0, -0.5): dq = 0, dh0 = 0.5, dG0 = -0.5 (z0, z1).
  Vec q = {-1, 0}, G = {1, 0, 0, 1, -1, 0, 0, -1}, h = {1, 1, 1, 1};
  QPProblem lp;
  lp.q = {q.data(), {2}};
  lp.G = {G.data(), {4, 2}};
  lp.h = {h.data(), {4}};
  Out o(1, 2, 0, 4);
  QPSolver solver;
  solver.forward(lp, o.buffers());
  ASSERT_EQ(o.status[0], QPStatus::Solved);
  EXPECT_NEAR(o.z[0], 1.0, 1e-9);
  Vec dz = {0.5, 1}, dq(2), dG(8), dh(4);
  QPGradientBuffers gb;
  gb.dz = dz.data();
  gb.dq = dq.data();
  gb.dG = dG.data();
  gb.dh = dh.data();
  solver.backward(lp, gb);
  EXPECT_NEAR(dq[0], 0.0, 1e-9);
  EXPECT_NEAR(dq[1], 0.0, 1e-9);
  EXPECT_NEAR(dh[0], 0.5, 1e-9);
  EXPECT_NEAR(dG[0], -0.5, 1e-9);
  EXPECT_NEAR(dG[1], -0.5 * o.z[1], 1e-9);
  for (int k = 1; k < 4; ++k)
    EXPECT_NEAR(dh[k], 0.0, 1e-9);
}

TEST(QP, InfeasibleAndUnboundedStatuses) {
  // z <= -1 and -z <= -1.
  Vec q = {1}, G = {1, -1}, h = {-1, -1};
  QPProblem inf;
  inf.q = {q.data(), {1}};
  inf.G = {G.data(), {2, 1}};
  inf.h = {h.data(), {2}};
  Out o(1, 1, 0, 2);
  QPSolver solver;
  solver.forward(inf, o.buffers());
  EXPECT_EQ(o.status[0], QPStatus::PrimalInfeasible);
  // The certificate: G^T lam ~ 0, h^T lam < 0, lam >= 0, max = 1.
  EXPECT_NEAR(o.lam[0] - o.lam[1], 0.0, 1e-6);
  EXPECT_NEAR(std::max(o.lam[0], o.lam[1]), 1.0, 1e-12);
  try {
    solver.backward(inf, {});
    FAIL() << "backward of an infeasible problem";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("primal infeasible"),
              std::string::npos)
        << e.what();
  }
  // Unbounded LP: minimize -z0 s.t. -z1 <= 0 (z0 free).
  Vec q2 = {-1, 0}, G2 = {0, -1}, h2 = {0};
  QPProblem unb;
  unb.q = {q2.data(), {2}};
  unb.G = {G2.data(), {1, 2}};
  unb.h = {h2.data(), {1}};
  Out u(1, 2, 0, 1);
  QPSolver().forward(unb, u.buffers());
  EXPECT_EQ(u.status[0], QPStatus::DualInfeasible);
  EXPECT_NEAR(u.z[0], 1.0, 1e-9); // the direction of descent
  // Unbounded QP: Q = diag(1, 0), q = (0, -1), no constraints.
  Vec Q3 = {1, 0, 0, 0};
  QPProblem unq;
  unq.Q = {Q3.data(), {2, 2}};
  unq.q = {q2.data(), {2}};
  std::swap(q2[0], q2[1]);
  Out w(1, 2, 0, 0);
  QPSolver().forward(unq, w.buffers());
  EXPECT_EQ(w.status[0], QPStatus::DualInfeasible);
}

TEST(QP, IndefiniteQIsNotSolved) {
  // A stationary point of a nonconvex problem is no solution. Before the
  // check, Q = -I on the box |z| <= 1 came back "solved" at z = 0 (its
  // maximum), and Q = -I with sum z = 1 (unbounded below) at z = 1/3.
  Vec Q = {-1, 0, 0, 0, -1, 0, 0, 0, -1}, q = {0, 0, 0};
  Vec G = {1, 0, 0, 0, 1, 0, 0, 0, 1, -1, 0, 0, 0, -1, 0, 0, 0, -1};
  Vec h(6, 1.0), A = {1, 1, 1}, b = {1};
  for (DType dtype : {DType::F64, DType::F32}) {
    std::vector<float> Q32(Q.begin(), Q.end()), q32(q.begin(), q.end()),
        G32(G.begin(), G.end()), h32(h.begin(), h.end()),
        A32(A.begin(), A.end()), b32(b.begin(), b.end());
    bool f64 = dtype == DType::F64;
    auto ptr = [&](Vec &v, std::vector<float> &w) -> const void * {
      return f64 ? static_cast<const void *>(v.data()) : w.data();
    };
    QPProblem box;
    box.dtype = dtype;
    box.Q = {ptr(Q, Q32), {3, 3}};
    box.q = {ptr(q, q32), {3}};
    box.G = {ptr(G, G32), {6, 3}};
    box.h = {ptr(h, h32), {6}};
    QPProblem eq = box;
    eq.G = eq.h = {};
    eq.A = {ptr(A, A32), {1, 3}};
    eq.b = {ptr(b, b32), {1}};
    for (const QPProblem *pb : {&box, &eq}) {
      std::vector<double> z(3), nu(1), lam(6); // room for either dtype
      std::vector<QPStatus> st(1);
      QPSolver solver;
      solver.forward(*pb, {z.data(), nu.data(), lam.data(), st.data()});
      EXPECT_EQ(st[0], QPStatus::NumericalError)
          << (f64 ? "f64 " : "f32 ") << (pb == &box ? "box" : "sum z = 1");
      try {
        QPSolver::requireSolved(st.data(), 1);
        FAIL() << "requireSolved accepted a nonconvex problem";
      } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("is Q positive semidefinite?"),
                  std::string::npos)
            << e.what();
      }
    }
  }
  // Indefinite within rounding (eigenvalue -1e-12): still a convex problem
  // for the solver, solved at the box's projection of -q.
  Vec Qr = {1, 0, 0, 0, 1, 0, 0, 0, -1e-12}, qr = {0.5, -3, 0.25};
  QPProblem near;
  near.Q = {Qr.data(), {3, 3}};
  near.q = {qr.data(), {3}};
  near.G = {G.data(), {6, 3}};
  near.h = {h.data(), {6}};
  Out o(1, 3, 0, 6);
  QPSolver().forward(near, o.buffers());
  ASSERT_EQ(o.status[0], QPStatus::Solved);
  EXPECT_NEAR(o.z[0], -0.5, 1e-9);
  EXPECT_NEAR(o.z[1], 1.0, 1e-9);
  EXPECT_NEAR(o.z[2], -1.0, 1e-9);
}

/// The batch: element e has its own q and h (batched), Q, A, b, G shared.
struct Batch {
  int64_t B, n, m, p;
  Known base;
  Vec q, h;
  QPProblem problem() const {
    QPProblem pb = shared(base);
    pb.batch = 0;
    pb.q = {q.data(), {B, n}};
    pb.h = {h.data(), {B, p}};
    return pb;
  }
};

Batch makeBatch(uint64_t seed, int64_t B, int64_t n, int64_t m, int64_t p) {
  std::mt19937_64 rng(seed);
  Batch bt{B, n, m, p, makeKnown(rng, n, m, p), {}, {}};
  std::normal_distribution<double> N(0, 0.1);
  for (int64_t e = 0; e < B; ++e) {
    for (int64_t j = 0; j < n; ++j)
      bt.q.push_back(bt.base.q[j] + (e ? N(rng) : 0.0));
    for (int64_t k = 0; k < p; ++k)
      bt.h.push_back(bt.base.h[k] + (e ? N(rng) : 0.0));
  }
  return bt;
}

void checkBatchMatchesElementsAndThreadsAgree(const Batch &bt) {
  SCOPED_TRACE("n " + std::to_string(bt.n) + " m " + std::to_string(bt.m) +
               " p " + std::to_string(bt.p));
  const int64_t B = bt.B, n = bt.n, m = bt.m, p = bt.p;
  Vec gz(B * n), gnu(B * m), glam(B * p);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> N;
  for (Vec *v : {&gz, &gnu, &glam})
    for (double &x : *v)
      x = N(rng);
  Out runs[2] = {Out(B, n, m, p), Out(B, n, m, p)};
  Vec grads[2][6];
  for (int t = 0; t < 2; ++t) {
    QPOptions opt;
    opt.threads = t + 1;
    QPSolver solver(opt);
    solver.forward(bt.problem(), runs[t].buffers());
    for (auto s : runs[t].status)
      ASSERT_EQ(s, QPStatus::Solved);
    Vec *g = grads[t];
    g[0].assign(n * n, 0); // shared Q: summed
    g[1].assign(B * n, 0); // batched q
    g[2].assign(m * n, 0);
    g[3].assign(m, 0);
    g[4].assign(p * n, 0);
    g[5].assign(B * p, 0);
    QPGradientBuffers gb;
    gb.dz = gz.data();
    gb.dnu = gnu.data();
    gb.dlam = glam.data();
    gb.dQ = g[0].data();
    gb.dq = g[1].data();
    gb.dA = g[2].data();
    gb.db = g[3].data();
    gb.dG = g[4].data();
    gb.dh = g[5].data();
    solver.backward(bt.problem(), gb);
  }
  // Bitwise. With m = 0 the vectors of nu, dA and db are empty, and the
  // null data() of an empty vector must not reach memcmp, even for 0 bytes.
  auto sameBits = [](const Vec &a, const Vec &b) {
    return a.size() == b.size() &&
           (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 8) == 0);
  };
  EXPECT_TRUE(sameBits(runs[0].z, runs[1].z));
  EXPECT_TRUE(sameBits(runs[0].lam, runs[1].lam));
  EXPECT_TRUE(sameBits(runs[0].nu, runs[1].nu));
  for (int i = 0; i < 6; ++i)
    EXPECT_TRUE(sameBits(grads[0][i], grads[1][i])) << "gradient " << i;

  // Each element alone gives the same solution, and the shared gradients
  // are the sums of the elements' gradients.
  Vec sumQ(n * n, 0.0);
  for (int64_t e = 0; e < B; ++e) {
    Known k = bt.base;
    std::copy(bt.q.begin() + e * n, bt.q.begin() + (e + 1) * n, k.q.begin());
    std::copy(bt.h.begin() + e * p, bt.h.begin() + (e + 1) * p, k.h.begin());
    QPSolver one;
    Out o(1, n, m, p);
    one.forward(shared(k), o.buffers());
    Vec ze(runs[0].z.begin() + e * n, runs[0].z.begin() + (e + 1) * n);
    EXPECT_EQ(0, std::memcmp(o.z.data(), ze.data(), n * 8)) << "element " << e;
    Vec dQ(n * n);
    QPGradientBuffers gb;
    gb.dz = gz.data() + e * n;
    gb.dnu = gnu.data() + e * m;
    gb.dlam = glam.data() + e * p;
    gb.dQ = dQ.data();
    one.backward(shared(k), gb);
    for (int64_t i = 0; i < n * n; ++i)
      sumQ[i] += dQ[i];
  }
  EXPECT_LT(maxAbsDiff(sumQ, grads[0][0]), 1e-12);
}

TEST(QP, BatchMatchesElementsAndThreadsAgree) {
  checkBatchMatchesElementsAndThreadsAgree(makeBatch(11, 9, 10, 2, 14));
  // The low-rank mode (m = 0, 2p <= n).
  checkBatchMatchesElementsAndThreadsAgree(makeBatch(12, 7, 30, 0, 6));
}

TEST(QP, LowRankModeOnIllConditionedQ) {
  // Q = V diag(10^U(-9, 0)) V^T with few inequalities: the low-rank mode's
  // Q + rho I is badly conditioned; whether the Woodbury solves hold up or
  // the problem goes back to the dense mode, the known solution comes out.
  std::mt19937_64 rng(21);
  for (int64_t n : {20, 64}) {
    const int64_t p = n / 4;
    Known k = makeKnown(rng, n, 0, p);
    std::normal_distribution<double> N;
    std::uniform_real_distribution<double> E(-9, 0);
    // Orthonormal V by Gram-Schmidt.
    Vec V(n * n);
    for (double &x : V)
      x = N(rng);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < i; ++j) {
        double d = 0;
        for (int64_t r = 0; r < n; ++r)
          d += V[i * n + r] * V[j * n + r];
        for (int64_t r = 0; r < n; ++r)
          V[i * n + r] -= d * V[j * n + r];
      }
      double nn = 0;
      for (int64_t r = 0; r < n; ++r)
        nn += V[i * n + r] * V[i * n + r];
      for (int64_t r = 0; r < n; ++r)
        V[i * n + r] /= std::sqrt(nn);
    }
    Vec ev(n);
    for (double &e : ev)
      e = std::pow(10.0, E(rng));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t r = 0; r < n; ++r)
          s += V[r * n + i] * ev[r] * V[r * n + j];
        k.Q[i * n + j] = s;
      }
    // q from the KKT conditions at the known point, for the new Q.
    for (int64_t i = 0; i < n; ++i) {
      double v = 0;
      for (int64_t j = 0; j < n; ++j)
        v += k.Q[i * n + j] * k.z[j];
      for (int64_t r = 0; r < p; ++r)
        v += k.G[r * n + i] * k.lam[r];
      k.q[i] = -v;
    }
    QPSolver solver;
    Out o(1, n, 0, p);
    solver.forward(shared(k), o.buffers());
    ASSERT_EQ(o.status[0], QPStatus::Solved) << "n=" << n;
    // The error bound grows with the condition number (up to 1e9 here).
    EXPECT_LT(maxAbsDiff(o.z, k.z), 1e-5) << "n=" << n;
    EXPECT_LT(maxAbsDiff(o.lam, k.lam), 1e-5) << "n=" << n;
  }
}

/// Whether (z, lam) satisfies the KKT conditions of the float32 problem
/// (Q, q, G, h) (evaluated in float64) to `rtol` relative to the size of
/// their terms; `what` says which failed.
bool kktHolds(int64_t n, int64_t p, const std::vector<float> &Q,
              const std::vector<float> &q, const std::vector<float> &G,
              const std::vector<float> &h, const std::vector<float> &z,
              const std::vector<float> &lam, double rtol, std::string &what) {
  double stat = 0, terms = 0, viol = 0, comp = 0, hsize = 1, neg = 0;
  for (int64_t i = 0; i < n; ++i) {
    double v = q[i];
    terms = std::max(terms, std::abs(double(q[i])));
    double qz = 0, gl = 0;
    for (int64_t j = 0; j < n; ++j)
      qz += double(Q[i * n + j]) * z[j];
    for (int64_t k = 0; k < p; ++k)
      gl += double(G[k * n + i]) * lam[k];
    terms = std::max({terms, std::abs(qz), std::abs(gl)});
    stat = std::max(stat, std::abs(v + qz + gl));
  }
  for (int64_t k = 0; k < p; ++k) {
    double gz = 0;
    for (int64_t j = 0; j < n; ++j)
      gz += double(G[k * n + j]) * z[j];
    hsize = std::max({hsize, std::abs(double(h[k])), std::abs(gz)});
    viol = std::max(viol, gz - h[k]);
    comp = std::max(comp, std::abs(lam[k] * (gz - h[k])));
    neg = std::max(neg, -double(lam[k]));
  }
  what = "stationarity " + std::to_string(stat / terms) + ", violation " +
         std::to_string(viol / hsize) + ", complementarity " +
         std::to_string(comp / (terms * hsize)) + ", lam >= " +
         std::to_string(-neg);
  return stat <= rtol * terms && viol <= rtol * hsize &&
         comp <= rtol * terms * hsize && neg == 0;
}

TEST(QP, LowRankFloat32ConvexQWithRaisedRegularizationIsSolved) {
  // The polish refuses Q as not positive semidefinite when Q + rho I
  // needed a rho beyond what rounding explains. In the low-rank mode it
  // reuses the rho of Q + rho I from the start of the solve, and a
  // reviewer asked whether a rho raised for another reason (the IPM's
  // H = Q + G^T D G with D up to 1e25 near the end of a tight solve) could
  // reach that check and fail a convex problem. It cannot: the low-rank
  // mode factors Q + rho I once (the same loop as the polish's own), and
  // once it falls back to the dense mode the polish factors Q afresh. These
  // problems exercise both paths (measured with tracing, since removed):
  //  - Q = V V^T + diag(10^U(-8, 0)) rounded to float32, n = 40, p = 10:
  //    the rounding leaves eigenvalues near -1e-9 max|Q|, the low-rank
  //    mode's Q + rho I needs rho raised 100x, the polish reuses it;
  //  - the same with V in quarters and the diagonal in powers of two, so
  //    that float32 holds Q exactly (positive semidefinite, condition
  //    ~1e10): the low-rank mode falls back to the dense one, whose rho
  //    rises to 1e20 times its base in the last iterations (at tol 1e-10
  //    and, for some seeds, at the default tol), and the polish solves it.
  // (With the first kind at tol 1e-10, some seeds end as numerical error:
  // Q's rounding makes the polish's system indefinite by -1e-9 relative,
  // beyond what refinement can converge on; not this check's doing.)
  for (bool exact : {false, true})
    for (uint64_t seed = 1; seed <= 6; ++seed)
      for (double tol : {0.0, 1e-10}) {
        if (!exact && tol != 0)
          continue;
        const int64_t n = 40, p = 10, r = 4;
        std::mt19937_64 rng(seed);
        std::normal_distribution<double> N;
        std::uniform_real_distribution<double> U(0.5, 2), E(-8, 0);
        Vec V(n * r), d(n), Q(n * n), G(p * n), z(n), lam(p), s(p), q(n),
            h(p);
        for (double &x : V)
          x = exact ? std::round(N(rng) * 2) / 4 : N(rng);
        for (double &x : d)
          x = exact ? std::ldexp(1.0, -int(std::round(-E(rng) * 3.32)))
                    : std::pow(10.0, E(rng));
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double t = i == j ? d[i] : 0.0;
            for (int64_t k = 0; k < r; ++k)
              t += V[i * r + k] * V[j * r + k];
            Q[i * n + j] = t;
          }
        for (double &x : G)
          x = N(rng);
        for (double &x : z)
          x = N(rng);
        for (int64_t k = 0; k < p; ++k)
          (k % 2 == 0 ? lam[k] : s[k]) = U(rng); // every other one active
        for (int64_t i = 0; i < n; ++i) {
          double v = 0;
          for (int64_t j = 0; j < n; ++j)
            v += Q[i * n + j] * z[j];
          for (int64_t k = 0; k < p; ++k)
            v += G[k * n + i] * lam[k];
          q[i] = -v;
        }
        for (int64_t k = 0; k < p; ++k) {
          double v = s[k];
          for (int64_t j = 0; j < n; ++j)
            v += G[k * n + j] * z[j];
          h[k] = v;
        }
        auto f32 = [](const Vec &v) {
          return std::vector<float>(v.begin(), v.end());
        };
        std::vector<float> Qf = f32(Q), qf = f32(q), Gf = f32(G), hf = f32(h),
                           zf(n), lf(p);
        QPProblem pb;
        pb.dtype = DType::F32;
        pb.Q = {Qf.data(), {n, n}};
        pb.q = {qf.data(), {n}};
        pb.G = {Gf.data(), {p, n}};
        pb.h = {hf.data(), {p}};
        QPOptions opt;
        opt.tol = tol;
        QPStatus st;
        QPSolver(opt).forward(pb,
                              {zf.data(), nullptr, lf.data(), &st, nullptr});
        std::string trace = std::string(exact ? "exact" : "rounded") +
                            " seed " + std::to_string(seed) +
                            (tol == 0 ? ", default tol" : ", tol 1e-10");
        ASSERT_EQ(st, QPStatus::Solved) << trace;
        // z and lam are rounded to float32: 1e-5 of the terms' size.
        std::string what;
        EXPECT_TRUE(kktHolds(n, p, Qf, qf, Gf, hf, zf, lf, 1e-5, what))
            << trace << ": " << what;
      }
}

/// L = gz.z + gnu.nu + glam.lam for one problem, through the solver.
double loss(const Known &k, const Vec &gz, const Vec &gnu, const Vec &glam) {
  QPOptions opt;
  opt.tol = 1e-13;
  QPSolver s(opt);
  Out o(1, k.n, k.m, k.p);
  s.forward(shared(k), o.buffers());
  EXPECT_EQ(o.status[0], QPStatus::Solved);
  double v = 0;
  for (int64_t i = 0; i < k.n; ++i)
    v += gz[i] * o.z[i];
  for (int64_t i = 0; i < k.m; ++i)
    v += gnu[i] * o.nu[i];
  for (int64_t i = 0; i < k.p; ++i)
    v += glam[i] * o.lam[i];
  return v;
}

TEST(QP, GradientsMatchCentralFiniteDifferences) {
  const int64_t shapes[][3] = {{1, 0, 1}, {4, 1, 5},  {7, 2, 9}, {9, 0, 0},
                               {6, 3, 0}, {8, 0, 12}, {10, 0, 3}};
  std::mt19937_64 rng(5);
  std::normal_distribution<double> N;
  for (auto &sh : shapes) {
    Known k = makeKnown(rng, sh[0], sh[1], sh[2]);
    Vec gz(k.n), gnu(k.m), glam(k.p);
    for (Vec *v : {&gz, &gnu, &glam})
      for (double &x : *v)
        x = N(rng);
    QPSolver s;
    Out o(1, k.n, k.m, k.p);
    s.forward(shared(k), o.buffers());
    ASSERT_EQ(o.status[0], QPStatus::Solved);
    Vec d[6] = {Vec(k.n * k.n), Vec(k.n),       Vec(k.m * k.n),
                Vec(k.m),       Vec(k.p * k.n), Vec(k.p)};
    QPGradientBuffers gb;
    gb.dz = gz.data();
    gb.dnu = gnu.data();
    gb.dlam = glam.data();
    gb.dQ = d[0].data();
    gb.dq = d[1].data();
    gb.dA = d[2].data();
    gb.db = d[3].data();
    gb.dG = d[4].data();
    gb.dh = d[5].data();
    s.backward(shared(k), gb);
    Vec *data[6] = {&k.Q, &k.q, &k.A, &k.b, &k.G, &k.h};
    const char *names[6] = {"Q", "q", "A", "b", "G", "h"};
    const double eps = 1e-6;
    for (int op = 0; op < 6; ++op)
      for (size_t i = 0; i < data[op]->size(); ++i) {
        double keep = (*data[op])[i];
        (*data[op])[i] = keep + eps;
        double up = loss(k, gz, gnu, glam);
        (*data[op])[i] = keep - eps;
        double down = loss(k, gz, gnu, glam);
        (*data[op])[i] = keep;
        double fd = (up - down) / (2 * eps);
        EXPECT_NEAR(d[op][i], fd, 1e-5 * std::max(1.0, std::abs(fd)))
            << names[op] << "[" << i << "] n=" << k.n << " m=" << k.m
            << " p=" << k.p;
      }
  }
}

TEST(QP, BadInputIsAClearError) {
  Vec Q = {1, 0, 0, 1}, q = {1, 2}, G = {1, 1}, h = {1};
  auto expectError = [](const QPProblem &p, const char *what) {
    Vec z(8), lam(8);
    QPStatus st[4];
    try {
      QPSolver().forward(p, {z.data(), nullptr, lam.data(), st, nullptr});
      FAIL() << "no error for " << what;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos)
          << e.what();
    }
  };
  QPProblem p;
  p.Q = {Q.data(), {2, 2}};
  p.q = {q.data(), {2}};
  p.G = {G.data(), {1, 2}};
  p.h = {h.data(), {1}};
  QPProblem bad = p;
  bad.G.shape = {1, 3};
  expectError(bad, "G has shape [1, 3]; expected [1, 2]");
  bad = p;
  bad.h = {};
  expectError(bad, "G and h must be given together");
  bad = p;
  bad.q.shape = {0, 2};
  expectError(bad, "batch size 0");
  bad = p;
  bad.q.shape = {2, 2};
  bad.h.shape = {3, 1};
  expectError(bad, "has batch size 3 but an earlier operand has 2");
  Vec qnan = {1, std::nan("")};
  bad = p;
  bad.q.data = qnan.data();
  expectError(bad, "q has a non-finite value");
  bad = p;
  bad.Q.shape = {2, 2, 2, 2};
  expectError(bad, "expected rank 2 (shared) or 3 (batched)");

  QPSolver fresh;
  EXPECT_THROW(fresh.backward(p, {}), Error);

  // The C ABI reports the same message instead of throwing.
  optim_qp_solver *c = optim_qp_create(0, 100, 1);
  ASSERT_NE(c, nullptr);
  optim_qp_problem cp{
      OPTIM_QP_F64, 0,           1,       2,       0,        1,
      Q.data(),     qnan.data(), nullptr, nullptr, G.data(), h.data()};
  double z[2], lam[1];
  int32_t st;
  EXPECT_EQ(-1, optim_qp_forward(c, &cp, z, nullptr, lam, &st, nullptr));
  EXPECT_NE(std::string(optim_qp_error(c)).find("non-finite"),
            std::string::npos);
  cp.q = q.data();
  EXPECT_EQ(0, optim_qp_forward(c, &cp, z, nullptr, lam, &st, nullptr));
  EXPECT_EQ(st, OPTIM_QP_SOLVED);
  optim_qp_destroy(c);
  EXPECT_EQ(optim_qp_create(0, -1, 1), nullptr);
}

} // namespace
