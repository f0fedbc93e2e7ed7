//===- QPBlockTest.cpp - the GPU's block QP solver, emulated on the CPU ---===//
//
// optim/QPBlock.h is the solver that each thread block of a compiled layer's
// CUDA kernel runs on one problem. Here the same code runs on the CPU with a
// team of std::threads and a barrier for the block (and with one thread), on
// random problems of every class of the oracle (strictly convex with
// equalities and inequalities, inequality-only, equality-only,
// unconstrained, an LP, G = -I as in the Sudoku layer, infeasible,
// unbounded, the bench's n = 100 shape), and is compared with the CPU solver
// (QPSolver): same statuses, solutions within 1e-6 relative. The two reduce
// sums in different orders, so they agree to rounding, not bitwise. The
// backward pass likewise, and at singular KKT systems (non-unique
// solutions) the least-squares gradients of QPSolver.
//
//===----------------------------------------------------------------------===//

#include "optim/QP.h"
#include "optim/QPBlock.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

/// A reusable barrier for nt threads (C++17 has no std::barrier).
class Barrier {
public:
  explicit Barrier(int count) : count(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mu);
    const unsigned gen = generation;
    if (++waiting == count) {
      waiting = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    cv.wait(lock, [&] { return gen != generation; });
  }

private:
  std::mutex mu;
  std::condition_variable cv;
  int count, waiting = 0;
  unsigned generation = 0;
};

struct CpuTeam {
  int tid, nt;
  Barrier *barrier;
  void sync() {
    if (nt > 1)
      barrier->wait();
  }
};

struct Data {
  int64_t n = 0, m = 0, p = 0;
  bool hasQ = true;
  std::vector<double> Q, q, A, b, G, h;
};

struct Result {
  int32_t status = -1, iterations = 0;
  std::vector<double> z, nu, lam;
};

/// d for the block solver (tol and maxIter at their defaults).
optim::qpblock::Problem blockProblem(const Data &d) {
  optim::qpblock::Problem P;
  P.n = d.n;
  P.m = d.m;
  P.p = d.p;
  P.Q = d.hasQ ? d.Q.data() : nullptr;
  P.q = d.q.data();
  P.A = d.m ? d.A.data() : nullptr;
  P.b = d.m ? d.b.data() : nullptr;
  P.G = d.p ? d.G.data() : nullptr;
  P.h = d.p ? d.h.data() : nullptr;
  return P;
}

/// d for the CPU solver (optim::QPSolver), float64.
optim::QPProblem cpuProblem(const Data &d) {
  optim::QPProblem pb;
  pb.dtype = optim::DType::F64;
  if (d.hasQ)
    pb.Q = {d.Q.data(), {d.n, d.n}};
  pb.q = {d.q.data(), {d.n}};
  if (d.m) {
    pb.A = {d.A.data(), {d.m, d.n}};
    pb.b = {d.b.data(), {d.m}};
  }
  if (d.p) {
    pb.G = {d.G.data(), {d.p, d.n}};
    pb.h = {d.h.data(), {d.p}};
  }
  return pb;
}

/// The block solver with `nt` threads, shared memory of `sharedCap` doubles.
Result solveBlock(const Data &d, int nt, int64_t sharedCap, double tol) {
  using namespace optim::qpblock;
  Footprint fp = plan(d.n, d.m, d.p, nt, sharedCap);
  EXPECT_LE(fp.sharedDoubles, sharedCap);
  // Sentinels after each region catch writes past the planned sizes.
  const double sentinel = 12345.678;
  std::vector<double> shared(fp.sharedDoubles + 8, sentinel),
      global(fp.globalDoubles + 8, sentinel);
  Work w;
  carve(w, d.n, d.m, d.p, nt, shared.data(), sharedCap, global.data());
  Problem P = blockProblem(d);
  P.tol = tol;
  Result r;
  r.z.assign(d.n, 0);
  r.nu.assign(d.m, 0);
  r.lam.assign(d.p, 0);
  Barrier barrier(nt);
  std::vector<std::thread> threads;
  for (int t = 0; t < nt; ++t)
    threads.emplace_back([&, t] {
      CpuTeam team{t, nt, &barrier};
      solveProblem(team, P, w, r.z.data(), r.nu.data(), r.lam.data(),
                   /*f32=*/false, &r.status, &r.iterations);
    });
  for (auto &th : threads)
    th.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(shared[fp.sharedDoubles + i], sentinel);
    EXPECT_EQ(global[fp.globalDoubles + i], sentinel);
  }
  return r;
}

Result solveCpu(const Data &d, double tol) {
  optim::QPProblem pb = cpuProblem(d);
  Result r;
  r.z.assign(d.n, 0);
  r.nu.assign(d.m, 0);
  r.lam.assign(d.p, 0);
  optim::QPStatus status;
  optim::QPSolver solver({tol, 100, 1});
  solver.forward(pb, {r.z.data(), r.nu.data(), r.lam.data(), &status,
                      &r.iterations});
  r.status = int32_t(status);
  return r;
}

/// A problem built around a known KKT point: Q = M^T M + c I (c = 0 for a
/// PSD Q of rank n/2 when `psd`), half of the inequalities active.
Data makeProblem(std::mt19937_64 &rng, int64_t n, int64_t m, int64_t p,
                 bool hasQ = true, bool negIdentityG = false) {
  std::normal_distribution<double> N(0, 1);
  std::uniform_real_distribution<double> U(0.1, 1.0);
  Data d;
  d.n = n;
  d.m = m;
  d.p = p;
  d.hasQ = hasQ;
  std::vector<double> z(n), nu(m), lam(p), s(p);
  for (auto &v : z)
    v = N(rng);
  for (auto &v : nu)
    v = N(rng);
  for (int64_t k = 0; k < p; ++k) {
    bool act = k % 2 == 0;
    lam[k] = act ? U(rng) : 0;
    s[k] = act ? 0 : U(rng);
  }
  d.Q.assign(n * n, 0);
  if (hasQ) {
    std::vector<double> M(n * n);
    for (auto &v : M)
      v = N(rng);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = i == j ? 1.0 : 0.0;
        for (int64_t k = 0; k < n; ++k)
          acc += M[k * n + i] * M[k * n + j] / double(n);
        d.Q[i * n + j] = acc;
      }
  }
  d.A.resize(m * n);
  for (auto &v : d.A)
    v = N(rng);
  d.G.assign(p * n, 0);
  for (int64_t k = 0; k < p; ++k)
    if (negIdentityG)
      d.G[k * n + k % n] = -1;
    else
      for (int64_t j = 0; j < n; ++j)
        d.G[k * n + j] = N(rng);
  d.b.resize(m);
  d.h.resize(p);
  d.q.resize(n);
  for (int64_t k = 0; k < m; ++k) {
    double acc = 0;
    for (int64_t j = 0; j < n; ++j)
      acc += d.A[k * n + j] * z[j];
    d.b[k] = acc;
  }
  for (int64_t k = 0; k < p; ++k) {
    double acc = 0;
    for (int64_t j = 0; j < n; ++j)
      acc += d.G[k * n + j] * z[j];
    d.h[k] = acc + s[k];
  }
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < n; ++j)
      acc += d.Q[i * n + j] * z[j];
    for (int64_t k = 0; k < m; ++k)
      acc += d.A[k * n + i] * nu[k];
    for (int64_t k = 0; k < p; ++k)
      acc += d.G[k * n + i] * lam[k];
    d.q[i] = -acc;
  }
  return d;
}

double relErr(const std::vector<double> &x, const std::vector<double> &ref) {
  double e = 0, s = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    e = std::max(e, std::abs(x[i] - ref[i]));
    s = std::max(s, std::abs(ref[i]));
  }
  return e / s;
}

void expectSame(const Data &d, const char *what, int nt,
                int64_t sharedCap = 1 << 20, double tol = 1e-8) {
  SCOPED_TRACE(std::string(what) + ", " + std::to_string(nt) + " threads");
  Result cpu = solveCpu(d, tol);
  Result blk = solveBlock(d, nt, sharedCap, tol);
  ASSERT_EQ(blk.status, cpu.status);
  if (cpu.status == 0) {
    EXPECT_LT(relErr(blk.z, cpu.z), 1e-6);
    EXPECT_LT(relErr(blk.nu, cpu.nu), 1e-6);
    EXPECT_LT(relErr(blk.lam, cpu.lam), 1e-6);
    EXPECT_LE(std::abs(blk.iterations - cpu.iterations), 2);
  } else if (cpu.status == 2) { // Farkas certificates, both scaled to 1
    EXPECT_LT(relErr(blk.nu, cpu.nu), 1e-3);
    EXPECT_LT(relErr(blk.lam, cpu.lam), 1e-3);
  } else if (cpu.status == 3) {
    EXPECT_LT(relErr(blk.z, cpu.z), 1e-3);
  }
}

/// Forward then backward with the block solver (nt threads), gradients
/// dz, dnu, dlam in; the operands' cotangents out, in the order Q, q, A, b,
/// G, h (empty for an absent operand).
/// `poisonRegs`: the kept rho and delta are replaced by NaN between the
/// forward and the backward pass, so that any use of them (the
/// least-squares correction at a singular KKT system) shows in the result.
std::vector<std::vector<double>>
gradientsBlock(const Data &d, int nt, const std::vector<double> &gz,
               const std::vector<double> &gnu,
               const std::vector<double> &glam, bool poisonRegs = false) {
  using namespace optim::qpblock;
  KernelLayout lay = kernelLayout(d.n, d.m, d.p, d.hasQ, nt, 1 << 16);
  std::vector<double> shared(lay.sharedDoubles),
      global(lay.workDoubles - lay.dataDoubles), dops(lay.dataDoubles);
  Work w;
  carve(w, d.n, d.m, d.p, nt, shared.data(), lay.sharedDoubles,
        global.data());
  double *keep = global.data() + (lay.keepOffset - lay.dataDoubles);
  Problem P = blockProblem(d);
  int32_t status = -1;
  Barrier barrier(nt);
  std::vector<std::thread> threads;
  for (int t = 0; t < nt; ++t)
    threads.emplace_back([&, t] {
      CpuTeam team{t, nt, &barrier};
      // solveProblem: thread 0 writes the status, then a barrier.
      int32_t its = 0;
      solveProblem(team, P, w, nullptr, nullptr, nullptr, /*f32=*/false,
                   &status, &its, keep);
      if (poisonRegs) {
        // keepDoubles()'s layout: z, nu, lam, rowOf, m + k, rho, delta.
        if (t == 0)
          for (int64_t i : {1, 2})
            keep[d.n + d.m + 2 * d.p + i] = std::nan("");
        team.sync();
      }
      if (status == Solved)
        backwardProblem(team, P, w, keep, gz.data(),
                        d.m ? gnu.data() : nullptr,
                        d.p ? glam.data() : nullptr, /*f32=*/false,
                        dops.data(), lay.offset);
    });
  for (auto &th : threads)
    th.join();
  EXPECT_EQ(status, Solved);
  std::vector<std::vector<double>> out(6);
  const int64_t sizes[6] = {d.n * d.n, d.n, d.m * d.n, d.m, d.p * d.n, d.p};
  for (int k = 0; k < 6; ++k)
    if (lay.offset[k] >= 0)
      out[k].assign(dops.begin() + lay.offset[k],
                    dops.begin() + lay.offset[k] + sizes[k]);
  return out;
}

std::vector<std::vector<double>>
gradientsCpu(const Data &d, const std::vector<double> &gz,
             const std::vector<double> &gnu, const std::vector<double> &glam) {
  optim::QPProblem pb = cpuProblem(d);
  std::vector<double> z(d.n), nu(d.m), lam(d.p);
  optim::QPStatus status;
  optim::QPSolver solver({1e-8, 100, 1});
  solver.forward(pb, {z.data(), nu.data(), lam.data(), &status});
  EXPECT_EQ(status, optim::QPStatus::Solved);
  std::vector<std::vector<double>> out(6);
  const int64_t sizes[6] = {d.n * d.n, d.n, d.m * d.n, d.m, d.p * d.n, d.p};
  const bool present[6] = {d.hasQ, true, d.m > 0, d.m > 0, d.p > 0, d.p > 0};
  void *ptr[6] = {};
  for (int k = 0; k < 6; ++k)
    if (present[k]) {
      out[k].assign(sizes[k], 0);
      ptr[k] = out[k].data();
    }
  solver.backward(pb, {gz.data(), d.m ? gnu.data() : nullptr,
                       d.p ? glam.data() : nullptr, ptr[0], ptr[1], ptr[2],
                       ptr[3], ptr[4], ptr[5]});
  return out;
}

TEST(QPBlock, MatchesTheCpuSolverOnEveryClass) {
  std::mt19937_64 rng(7);
  for (int nt : {1, 5, 32}) {
    for (int rep = 0; rep < 3; ++rep) {
      expectSame(makeProblem(rng, 12, 3, 8), "strict", nt);
      expectSame(makeProblem(rng, 9, 0, 14), "ineq", nt);
      expectSame(makeProblem(rng, 7, 4, 0), "eq", nt);
      expectSame(makeProblem(rng, 6, 0, 0), "free", nt);
      expectSame(makeProblem(rng, 10, 2, 16, /*hasQ=*/false), "lp", nt);
      expectSame(makeProblem(rng, 16, 5, 16, true, /*negIdentityG=*/true),
                 "G = -I", nt);
    }
    expectSame(makeProblem(rng, 1, 0, 1), "n = 1", nt);
  }
}

TEST(QPBlock, TeamReductionsGiveEveryThreadTheSameFold) {
  // The two-level reduction (teamFold) for team sizes around its group
  // boundaries and up to the largest block: integer parts, so every order
  // gives the exact sum and a part left out or counted twice shows.
  for (int nt : {1, 2, 3, 4, 5, 15, 16, 17, 32, 33, 100, 255, 256, 257, 1000,
                 1024}) {
    const int64_t g = optim::qpblock::reductionGroups(nt);
    ASSERT_LE(g * g, nt);
    ASSERT_GT(4 * g * g, nt);
    std::vector<double> red(nt + g);
    Barrier barrier(nt);
    std::vector<double> sums(nt), maxs(nt), mins(nt);
    std::vector<std::thread> threads;
    for (int t = 0; t < nt; ++t)
      threads.emplace_back([&, t] {
        CpuTeam team{t, nt, &barrier};
        auto plus = [](double a, double b) { return a + b; };
        auto most = [](double a, double b) { return a < b ? b : a; };
        auto least = [](double a, double b) { return b < a ? b : a; };
        // Back to back, as the solver calls them.
        sums[t] = optim::qpblock::teamFold(team, red.data(), t + 1.0, plus);
        maxs[t] = optim::qpblock::teamFold(
            team, red.data(), double((t * 7919) % nt), most);
        mins[t] = optim::qpblock::teamFold(team, red.data(), 5.0 + t, least);
      });
    for (std::thread &th : threads)
      th.join();
    const double sum = double(nt) * (nt + 1) / 2;
    for (int t = 0; t < nt; ++t) {
      ASSERT_EQ(sums[t], sum) << nt << " threads, thread " << t;
      ASSERT_EQ(maxs[t], nt - 1.0) << nt << " threads, thread " << t;
      ASSERT_EQ(mins[t], 5.0) << nt << " threads, thread " << t;
    }
  }
}

TEST(QPBlock, LargeTeamsAsTheGPUDefaultUses) {
  // 256 threads, the default block of a layer with more than 32 variables
  // or constraints (16 partials in each two-level reduction); one small
  // problem (n and p above 16, so that the second level folds parts of
  // several threads), since every barrier wakes the whole team on this machine's
  // cores (1024 threads took 15 s; a standalone check of the reductions
  // covered 1 to 1024 threads in review).
  std::mt19937_64 rng(11);
  expectSame(makeProblem(rng, 20, 2, 24), "strict, large team", 256);
}

TEST(QPBlock, BackwardMatchesTheCpuSolversGradients) {
  // The active-set KKT system solved with the factorization that the
  // forward pass kept, and the operands' cotangents, against QPSolver's
  // backward on the same problem (every operand shared, batch 1).
  std::mt19937_64 rng(5);
  std::normal_distribution<double> N(0, 1);
  const char *names[6] = {"dQ", "dq", "dA", "db", "dG", "dh"};
  for (int nt : {1, 6}) {
    Data problems[] = {makeProblem(rng, 12, 3, 8), makeProblem(rng, 9, 0, 14),
                       makeProblem(rng, 7, 4, 0),
                       makeProblem(rng, 16, 5, 16, true, true)};
    for (const Data &d : problems) {
      std::vector<double> gz(d.n), gnu(d.m), glam(d.p);
      for (auto *v : {&gz, &gnu, &glam})
        for (double &x : *v)
          x = N(rng);
      auto blk = gradientsBlock(d, nt, gz, gnu, glam);
      auto cpu = gradientsCpu(d, gz, gnu, glam);
      for (int k = 0; k < 6; ++k) {
        SCOPED_TRACE(std::string(names[k]) + ", n = " + std::to_string(d.n) +
                     ", " + std::to_string(nt) + " threads");
        ASSERT_EQ(blk[k].size(), cpu[k].size());
        if (!cpu[k].empty())
          EXPECT_LT(relErr(blk[k], cpu[k]), 1e-6);
      }
    }
  }
}

TEST(QPBlock, RegularBackwardDoesNotUseTheLeastSquaresCorrection) {
  // On problems with a unique solution and multipliers the active-set
  // system is regular, and the backward pass is the refined solve alone,
  // as before the least-squares correction existed: with the kept rho and
  // delta (which only the correction reads) replaced by NaN, the gradients
  // are the same bits.
  std::mt19937_64 rng(23);
  std::normal_distribution<double> N(0, 1);
  for (int nt : {1, 5}) {
    for (int rep = 0; rep < 4; ++rep) {
      Data problems[] = {
          makeProblem(rng, 12, 3, 8), makeProblem(rng, 9, 0, 14),
          makeProblem(rng, 7, 4, 0), makeProblem(rng, 6, 0, 0),
          makeProblem(rng, 16, 5, 16, true, /*negIdentityG=*/true)};
      for (const Data &d : problems) {
        SCOPED_TRACE("n = " + std::to_string(d.n) + ", m = " +
                     std::to_string(d.m) + ", p = " + std::to_string(d.p) +
                     ", " + std::to_string(nt) + " threads");
        std::vector<double> gz(d.n), gnu(d.m), glam(d.p);
        for (auto *v : {&gz, &gnu, &glam})
          for (double &x : *v)
            x = N(rng);
        auto plain = gradientsBlock(d, nt, gz, gnu, glam);
        auto poisoned = gradientsBlock(d, nt, gz, gnu, glam, true);
        for (int k = 0; k < 6; ++k)
          EXPECT_EQ(plain[k], poisoned[k]) << "operand " << k;
      }
    }
  }
}

/// The cases of test/Oracle/qp_hard_oracle.py's non_unique(): problems
/// whose solution or multipliers are not unique, so that the backward's
/// active-set KKT system is singular.
std::vector<std::pair<std::string, Data>> singularKKTProblems() {
  std::mt19937_64 rng(29);
  std::normal_distribution<double> N(0, 1);
  std::vector<std::pair<std::string, Data>> out;
  auto gaussian = [&](size_t count) {
    std::vector<double> v(count);
    for (double &x : v)
      x = N(rng);
    return v;
  };
  auto matvec = [](const std::vector<double> &M, const std::vector<double> &x,
                   int64_t rows) {
    const int64_t cols = int64_t(x.size());
    std::vector<double> y(rows, 0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        y[i] += M[i * cols + j] * x[j];
    return y;
  };
  {
    // min -z1 over a box: z = (1, t) for every t in [-1, 1] (an LP tie).
    Data d;
    d.n = 2;
    d.p = 5;
    d.hasQ = false;
    d.Q.assign(4, 0);
    d.q = {-1, 0};
    d.G = {1, 0, 0, 1, 1, 1, -1, 0, 0, -1};
    d.h = {1, 1, 2, 0, 1};
    out.push_back({"LP tie", d});
  }
  {
    // A PSD Q flat along z2, nothing constraining z2.
    Data d;
    d.n = 2;
    d.Q = {1, 0, 0, 0};
    d.q = {-1, 0};
    out.push_back({"PSD Q, flat direction", d});
  }
  {
    // A flat direction of a PSD Q along a face of the constraints: z3 is
    // free on the face z1 + z2 <= 1.
    Data d;
    d.n = 3;
    d.p = 2;
    d.Q = {1, 0, 0, 0, 1, 0, 0, 0, 0};
    d.q = {-2, -2, 0};
    d.G = {1, 1, 0, 0, 0, 1};
    d.h = {1, 4};
    out.push_back({"PSD Q, flat on a face", d});
  }
  {
    Data d;
    d.n = 2;
    d.Q.assign(4, 0);
    d.q = {0, 0};
    out.push_back({"Q = 0, q = 0", d});
  }
  {
    // An LP whose q is in the range of A^T: every feasible z is optimal.
    Data d;
    d.n = 3;
    d.m = 1;
    d.hasQ = false;
    d.Q.assign(9, 0);
    d.q = {1, 1, 0};
    d.A = {1, 1, 0};
    d.b = {1};
    out.push_back({"LP, q in the range of A^T", d});
  }
  {
    // Row 3 of A is row 1 minus row 2.
    Data d;
    d.n = 4;
    d.m = 3;
    std::vector<double> M = gaussian(16), A = gaussian(8), z0 = gaussian(4);
    d.Q.assign(16, 0);
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 4; ++j)
        for (int64_t k = 0; k < 4; ++k)
          d.Q[i * 4 + j] += M[k * 4 + i] * M[k * 4 + j] / 4;
    d.q = gaussian(4);
    d.A = A;
    for (int64_t j = 0; j < 4; ++j)
      d.A.push_back(A[j] - A[4 + j]);
    d.b = matvec(d.A, z0, 3);
    out.push_back({"dependent equality rows", d});
  }
  {
    // Rows 1 and 4 of G are the same constraint, active at the solution:
    // its multiplier splits between them in any proportion.
    Data d;
    d.n = 4;
    d.p = 4;
    std::vector<double> G = gaussian(12), z0 = gaussian(4);
    d.Q = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    d.G = G;
    d.G.insert(d.G.end(), G.begin(), G.begin() + 4);
    std::vector<double> Gz = matvec(d.G, z0, 4);
    d.h = {Gz[0], Gz[1] + 5, Gz[2] + 5, Gz[3]};
    d.q.resize(4);
    for (int64_t j = 0; j < 4; ++j)
      d.q[j] = -(z0[j] + 2 * G[j]);
    out.push_back({"two identical active inequality rows", d});
  }
  return out;
}

TEST(QPBlock, BackwardIsTheLeastSquaresSolutionAtASingularKKTSystem) {
  // QP.cpp's convention (docs/qp.md, "Non-unique solutions"; checked there
  // against numpy's lstsq by qp-hard-oracle.test): the least-squares,
  // minimum-norm solution of the singular system, not the null-space
  // component of the right-hand side divided by rho (gradients of 1e10:
  // measured 1e9 to 3e10 on these cases before the block solver had it).
  // Tolerance 1e-5 relative: where nu is not unique (dependent rows of A)
  // the two forwards' nu differ by ~1e-6 relative, and dA = dnu z^T +
  // nu dz^T with them (measured: 6e-7 for dA, at most 1e-10 elsewhere).
  std::mt19937_64 rng(31);
  std::normal_distribution<double> N(0, 1);
  const char *names[6] = {"dQ", "dq", "dA", "db", "dG", "dh"};
  for (const auto &[name, d] : singularKKTProblems())
    for (int nt : {1, 4}) {
      std::vector<double> gz(d.n), gnu(d.m), glam(d.p);
      for (auto *v : {&gz, &gnu, &glam})
        for (double &x : *v)
          x = N(rng);
      auto blk = gradientsBlock(d, nt, gz, gnu, glam);
      auto cpu = gradientsCpu(d, gz, gnu, glam);
      for (int k = 0; k < 6; ++k) {
        SCOPED_TRACE(name + ", " + names[k] + ", " + std::to_string(nt) +
                     " threads");
        ASSERT_EQ(blk[k].size(), cpu[k].size());
        if (cpu[k].empty())
          continue;
        double big = 0;
        for (double x : blk[k])
          big = std::max(big, std::abs(x));
        EXPECT_LT(big, 1e3);
        EXPECT_LT(relErr(blk[k], cpu[k]), 1e-5);
      }
    }
}

TEST(QPBlock, SharedMemoryBudgetDoesNotChangeTheAnswer) {
  // Everything in shared memory, only the factor, and nothing: the same
  // result bitwise (the layout changes where, not how, it computes).
  std::mt19937_64 rng(11);
  Data d = makeProblem(rng, 20, 4, 12);
  Result all = solveBlock(d, 8, 1 << 20, 1e-8);
  Result some = solveBlock(d, 8, 8 + 400, 1e-8);
  Result none = solveBlock(d, 8, 0, 1e-8);
  ASSERT_EQ(all.status, 0);
  EXPECT_EQ(all.z, some.z);
  EXPECT_EQ(all.z, none.z);
  EXPECT_EQ(all.lam, none.lam);
}

TEST(QPBlock, InfeasibleAndUnboundedStatuses) {
  for (int nt : {1, 4}) {
    // x1 >= 1 and x1 <= 0: primal infeasible.
    Data inf;
    inf.n = 2;
    inf.p = 2;
    inf.Q = {1, 0, 0, 1};
    inf.q = {0, 0};
    inf.G = {-1, 0, 1, 0};
    inf.h = {-1, 0};
    expectSame(inf, "infeasible", nt);
    EXPECT_EQ(solveBlock(inf, nt, 1 << 20, 1e-8).status,
              optim::qpblock::PrimalInfeasible);
    // An LP without lower bounds: minimize -x1 - x2 s.t. x1 + x2 >= 1... no:
    // min -x1 subject to x2 <= 1: unbounded along x1.
    Data unb;
    unb.n = 2;
    unb.p = 1;
    unb.hasQ = false;
    unb.Q.assign(4, 0);
    unb.q = {-1, 0};
    unb.G = {0, 1};
    unb.h = {1};
    expectSame(unb, "unbounded", nt);
    EXPECT_EQ(solveBlock(unb, nt, 1 << 20, 1e-8).status,
              optim::qpblock::DualInfeasible);
  }
}

TEST(QPBlock, IndefiniteQIsNotSolvedAsOnTheCpu) {
  for (int nt : {1, 4}) {
    // Q = -I on the box [-1, 1]^2: z = 0 is stationary (the maximum).
    Data box;
    box.n = 2;
    box.p = 4;
    box.Q = {-1, 0, 0, -1};
    box.q = {0, 0};
    box.G = {1, 0, 0, 1, -1, 0, 0, -1};
    box.h = {1, 1, 1, 1};
    expectSame(box, "indefinite box", nt);
    int32_t status = solveBlock(box, nt, 1 << 20, 1e-8).status;
    EXPECT_TRUE(status == optim::qpblock::NumericalError ||
                status == optim::qpblock::DualInfeasible)
        << status;
    EXPECT_NE(status, optim::qpblock::Solved);
    // Q = -I with z1 + z2 + z3 = 1: unbounded below, stationary at 1/3.
    Data plane;
    plane.n = 3;
    plane.m = 1;
    plane.Q = {-1, 0, 0, 0, -1, 0, 0, 0, -1};
    plane.q = {0, 0, 0};
    plane.A = {1, 1, 1};
    plane.b = {1};
    expectSame(plane, "indefinite plane", nt);
    EXPECT_NE(solveBlock(plane, nt, 1 << 20, 1e-8).status,
              optim::qpblock::Solved);
  }
}

/// d with (Q, q) * c, (A, b) * a, (G, h) * g.
Data scaledData(Data d, double c, double a, double g) {
  for (auto *v : {&d.Q, &d.q})
    for (double &x : *v)
      x *= c;
  for (auto *v : {&d.A, &d.b})
    for (double &x : *v)
      x *= a;
  for (auto *v : {&d.G, &d.h})
    for (double &x : *v)
      x *= g;
  return d;
}

TEST(QPBlock, ScaledProblemsAreSolvedAsTheUnscaledOnes) {
  // Both solvers scale each problem the same way (optim/QPScale.h): at
  // scales 1e-8 and 1e8 of the objective and of the constraints the block
  // solver still matches the CPU solver, its z the unscaled problem's, its
  // multipliers the unscaled ones times c/a and c/g, and its gradients the
  // unscaled ones divided by the operand's factor.
  std::mt19937_64 rng(17);
  std::normal_distribution<double> N(0, 1);
  const Data problems[] = {makeProblem(rng, 12, 3, 8),
                           makeProblem(rng, 9, 0, 14),
                           makeProblem(rng, 7, 4, 0),
                           makeProblem(rng, 10, 2, 16, /*hasQ=*/false),
                           makeProblem(rng, 16, 5, 16, true, true)};
  const double scales[][3] = {{1e-8, 1, 1},    {1e8, 1, 1},
                              {1, 1e-8, 1e8},  {1, 1e8, 1e-8},
                              {1e-8, 1e-8, 1e-8}};
  for (const Data &d : problems) {
    Result ref = solveBlock(d, 4, 1 << 20, 1e-8);
    ASSERT_EQ(ref.status, optim::qpblock::Solved);
    std::vector<double> gz(d.n), gnu(d.m), glam(d.p);
    for (double &x : gz)
      x = N(rng);
    auto gref = gradientsBlock(d, 4, gz, gnu, glam);
    for (auto &sc : scales) {
      const double c = sc[0], a = sc[1], g = sc[2];
      std::ostringstream os;
      os << "n = " << d.n << " scaled by (" << c << ", " << a << ", " << g
         << ")";
      const std::string what = os.str();
      SCOPED_TRACE(what);
      const Data s = scaledData(d, c, a, g);
      expectSame(s, what.c_str(), 4);
      Result r = solveBlock(s, 4, 1 << 20, 1e-8);
      ASSERT_EQ(r.status, optim::qpblock::Solved);
      EXPECT_LT(relErr(r.z, ref.z), 1e-9);
      for (double &x : r.nu)
        x *= a / c;
      for (double &x : r.lam)
        x *= g / c;
      EXPECT_LT(relErr(r.nu, ref.nu), 1e-8);
      EXPECT_LT(relErr(r.lam, ref.lam), 1e-8);
      auto grad = gradientsBlock(s, 4, gz, gnu, glam);
      const double f[6] = {c, c, a, a, g, g};
      for (int k = 0; k < 6; ++k) {
        for (double &x : grad[k])
          x *= f[k];
        EXPECT_LT(relErr(grad[k], gref[k]), 1e-8) << "operand " << k;
      }
    }
  }
}

TEST(QPBlock, NearlyLinearObjectivesAreSolvedRightOrNotAtAll) {
  // Q = eps I on the simplex {z >= 0, sum z = 1}, q ~ N(0, 1): the solution
  // is sparsemax(-q / eps), a vertex for these eps. Scaled by Q's size, q
  // is 1e12 to 1e16 times larger; the interior point then stalls at z ~ 0
  // (sum z = 0) and the polish from its active set used to report it
  // "solved" from the refused polish's residuals (22-79 of 200 problems
  // 1.0 off), while refusing the right polish (residuals of 1e3 beside
  // q / c ~ 1e14). Both solvers: solved and right, or not solved.
  std::mt19937_64 rng(29);
  std::normal_distribution<double> N(0, 1);
  const int64_t n = 6;
  for (double eps : {1e-12, 1e-13, 1e-14, 1e-15, 1e-16}) {
    int solvedCpu = 0, solvedBlock = 0, count = 40;
    for (int e = 0; e < count; ++e) {
      Data d;
      d.n = n;
      d.m = 1;
      d.p = n;
      d.Q.assign(n * n, 0);
      d.G.assign(n * n, 0);
      for (int64_t i = 0; i < n; ++i) {
        d.Q[i * n + i] = eps;
        d.G[i * n + i] = -1;
      }
      d.q.resize(n);
      for (double &v : d.q)
        v = N(rng);
      d.A.assign(n, 1);
      d.b = {1};
      d.h.assign(n, 0);
      // The vertex of the smallest q (ties have probability 0; the next
      // smallest is farther than eps from it for these eps).
      std::vector<double> want(n, 0);
      want[std::min_element(d.q.begin(), d.q.end()) - d.q.begin()] = 1;
      SCOPED_TRACE("eps " + std::to_string(eps) + " problem " +
                   std::to_string(e));
      Result c = solveCpu(d, 1e-8), b = solveBlock(d, 4, 1 << 20, 1e-8);
      if (c.status == int32_t(optim::QPStatus::Solved)) {
        ++solvedCpu;
        EXPECT_LT(relErr(c.z, want), 1e-6);
      }
      if (b.status == optim::qpblock::Solved) {
        ++solvedBlock;
        EXPECT_LT(relErr(b.z, want), 1e-6);
      }
    }
    // Measured: all but 0-2 of each 40 solved (the others at the
    // iteration limit).
    EXPECT_GE(solvedCpu, count * 9 / 10) << "eps " << eps;
    EXPECT_GE(solvedBlock, count * 9 / 10) << "eps " << eps;
  }
}

TEST(QPBlock, VariablesOnTheirOwnScalesAreSolvedAsTheUnscaledOnes) {
  // z = S w with S = diag(s): Q' = S Q S, q' = S q, A' = A S, G' = G S.
  // Both solvers scale the variables back (QPScale.h's columnStep and
  // rhsScale; without it, s of 10^+-3 or s = 1e6 came back "solved" far
  // from the solution): S w is the unscaled problem's z, the multipliers
  // are the same, and the gradients are the unscaled ones over the
  // operands' factors (dq' = S^-1 dq, dA' = dA S^-1, dQ' = S^-1 dQ S^-1;
  // the incoming gradient of w is S gz).
  std::mt19937_64 rng(23);
  std::normal_distribution<double> N(0, 1);
  std::uniform_real_distribution<double> U(-4, 4);
  const Data problems[] = {
      makeProblem(rng, 12, 3, 8), makeProblem(rng, 9, 0, 14),
      makeProblem(rng, 7, 4, 0), makeProblem(rng, 10, 2, 16, /*hasQ=*/false),
      makeProblem(rng, 16, 5, 16, true, true)};
  for (const Data &d : problems) {
    Result ref = solveBlock(d, 4, 1 << 20, 1e-8);
    ASSERT_EQ(ref.status, optim::qpblock::Solved);
    std::vector<double> gz(d.n), gnu(d.m), glam(d.p);
    for (double &x : gz)
      x = N(rng);
    auto gref = gradientsBlock(d, 4, gz, gnu, glam);
    for (int pattern = 0; pattern < 3; ++pattern) {
      std::vector<double> sv(d.n);
      for (double &x : sv)
        x = pattern == 0 ? std::pow(10.0, U(rng)) : pattern == 1 ? 1e6 : 1e-6;
      const std::string what =
          "n = " + std::to_string(d.n) + ", pattern " + std::to_string(pattern);
      SCOPED_TRACE(what);
      const int64_t n = d.n;
      Data s = d;
      for (int64_t i = 0; i < n; ++i) {
        s.q[i] *= sv[i];
        for (int64_t j = 0; j < n; ++j)
          s.Q[i * n + j] *= sv[i] * sv[j];
      }
      for (int64_t k = 0; k < d.m * n; ++k)
        s.A[k] *= sv[k % n];
      for (int64_t k = 0; k < d.p * n; ++k)
        s.G[k] *= sv[k % n];
      expectSame(s, what.c_str(), 4);
      Result r = solveBlock(s, 4, 1 << 20, 1e-8);
      ASSERT_EQ(r.status, optim::qpblock::Solved);
      for (int64_t j = 0; j < n; ++j)
        r.z[j] *= sv[j];
      EXPECT_LT(relErr(r.z, ref.z), 1e-8);
      EXPECT_LT(relErr(r.nu, ref.nu), 1e-8);
      EXPECT_LT(relErr(r.lam, ref.lam), 1e-8);
      std::vector<double> gw(n);
      for (int64_t j = 0; j < n; ++j)
        gw[j] = gz[j] * sv[j];
      auto grad = gradientsBlock(s, 4, gw, gnu, glam);
      auto gcpu = gradientsCpu(s, gw, gnu, glam);
      for (int k = 0; k < 6; ++k) {
        if (grad[k].empty())
          continue;
        const int64_t len = int64_t(grad[k].size());
        for (int64_t e = 0; e < len; ++e) {
          const double f = k == 0             ? sv[e / n] * sv[e % n]
                           : k == 1           ? sv[e]
                           : k == 2 || k == 4 ? sv[e % n]
                                              : 1.0;
          grad[k][e] *= f;
          gcpu[k][e] *= f;
        }
        EXPECT_LT(relErr(grad[k], gref[k]), 1e-7) << "operand " << k;
        EXPECT_LT(relErr(gcpu[k], gref[k]), 1e-7) << "operand " << k;
      }
    }
  }
}

TEST(QPBlock, BenchShapeN100) {
  // bench/qp's problem: Q = U^T U + 1e-3 I (batched), G Gaussian 100 x 100,
  // h = G z0 + s0, no equalities.
  std::mt19937_64 rng(3);
  std::normal_distribution<double> N(0, 1);
  std::uniform_real_distribution<double> U01(0, 1);
  const int64_t n = 100, p = 100;
  Data d;
  d.n = n;
  d.p = p;
  std::vector<double> Um(n * n), z0(n);
  for (auto &v : Um)
    v = N(rng);
  d.Q.assign(n * n, 0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = i == j ? 1e-3 : 0;
      for (int64_t k = 0; k < n; ++k)
        acc += Um[k * n + i] * Um[k * n + j];
      d.Q[i * n + j] = acc;
    }
  d.q.resize(n);
  for (auto &v : d.q)
    v = N(rng);
  d.G.resize(p * n);
  for (auto &v : d.G)
    v = N(rng);
  for (auto &v : z0)
    v = N(rng);
  d.h.resize(p);
  for (int64_t k = 0; k < p; ++k) {
    double acc = U01(rng) + 0.1;
    for (int64_t j = 0; j < n; ++j)
      acc += d.G[k * n + j] * z0[j];
    d.h[k] = acc;
  }
  // The CPU solver takes its low-rank mode only for 2p <= n: both dense here.
  expectSame(d, "bench n = 100", 1);
  expectSame(d, "bench n = 100", 16, 12672);
}

// The team kernels that replaced element-at-a-time loops must give those
// loops' bits: every element sums its terms in the same order.

/// Runs body(team) on a team of nt std::threads.
template <class F> void onTeam(int nt, F body) {
  Barrier barrier(nt);
  std::vector<std::thread> threads;
  for (int t = 0; t < nt; ++t)
    threads.emplace_back([&, t] {
      CpuTeam team{t, nt, &barrier};
      body(team);
    });
  for (auto &th : threads)
    th.join();
}

TEST(QPBlockKernels, TriWalkVisitsEachUpperElementOnce) {
  using namespace optim::qpblock;
  for (int w = 0; w <= 70; ++w)
    for (int nt : {1, 2, 3, 7, 32, 256}) {
      std::vector<int> seen(size_t(w) * w, 0);
      for (int t = 0; t < nt; ++t) {
        TriWalk at(t, nt, w);
        for (int64_t e = t; e < triangle(w); e += nt, at.next()) {
          ASSERT_LE(0, at.i()) << "w " << w << " nt " << nt;
          ASSERT_LE(at.i(), at.j()) << "w " << w << " nt " << nt;
          ASSERT_LT(at.j(), w) << "w " << w << " nt " << nt;
          ++seen[size_t(at.i()) * w + at.j()];
        }
      }
      for (int i = 0; i < w; ++i)
        for (int j = i; j < w; ++j)
          ASSERT_EQ(seen[size_t(i) * w + j], 1)
              << "(" << i << ", " << j << ") of w " << w << ", nt " << nt;
    }
}

TEST(QPBlockKernels, TiledSyrkGivesTheElementLoopsBits) {
  using namespace optim::qpblock;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> N;
  for (int64_t c : {0, 1, 2, 3, 4, 5, 7, 8, 13, 33, 100})
    for (int64_t rows : {0, 1, 5, 64})
      for (bool weighted : {false, true}) {
        std::vector<double> X(rows * c), wr(rows);
        for (double &x : X)
          x = N(rng);
        for (double &x : wr)
          x = std::exp(N(rng));
        const double *w = weighted ? wr.data() : nullptr;
        const double pad = -12345.0;
        std::vector<double> want(c * c, pad);
        for (int64_t i = 0; i < c; ++i)
          for (int64_t j = i; j < c; ++j) {
            double s = 0;
            for (int64_t r = 0; r < rows; ++r)
              s += (w ? w[r] * X[r * c + i] : X[r * c + i]) * X[r * c + j];
            want[i * c + j] = s + (i == j ? 0.5 : 0.0);
          }
        for (int nt : {1, 3, 7, 32}) {
          std::vector<double> got(c * c, pad);
          onTeam(nt, [&](CpuTeam &team) {
            teamSyrkUpper(team, X.data(), w, rows, c, got.data(),
                          [](int64_t i, int64_t j, double s) {
                            return s + (i == j ? 0.5 : 0.0);
                          });
          });
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(),
                                   want.size() * sizeof(double)))
              << "c " << c << " rows " << rows << " weighted " << weighted
              << " nt " << nt;
          // Mirrored: both triangles hold the upper one's values.
          std::vector<double> both(c * c, pad);
          onTeam(nt, [&](CpuTeam &team) {
            teamSyrkUpper(
                team, X.data(), w, rows, c, both.data(),
                [](int64_t i, int64_t j, double s) {
                  return s + (i == j ? 0.5 : 0.0);
                },
                /*mirror=*/true);
          });
          for (int64_t i = 0; i < c; ++i)
            for (int64_t j = 0; j < c; ++j) {
              const double v = want[std::min(i, j) * c + std::max(i, j)];
              ASSERT_EQ(0, std::memcmp(&both[i * c + j], &v, sizeof v))
                  << "(" << i << ", " << j << ") c " << c << " nt " << nt;
            }
        }
      }
}

TEST(QPBlockKernels, TeamMultiSolveGivesTheColumnLoopsBits) {
  using namespace optim::qpblock;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> N;
  for (int64_t n : {0, 1, 2, 5, 17, 64})
    for (int64_t c : {0, 1, 3, 40}) {
      std::vector<double> U(n * n, 0.0), Y(n * c);
      for (int64_t i = 0; i < n; ++i) {
        U[i * n + i] = 1 + std::abs(N(rng));
        for (int64_t j = i + 1; j < n; ++j)
          U[i * n + j] = 0.3 * N(rng);
      }
      for (double &y : Y)
        y = N(rng);
      std::vector<double> want = Y;
      for (int64_t col = 0; col < c; ++col)
        for (int64_t k = 0; k < n; ++k) {
          const double xk = want[k * c + col] / U[k * n + k];
          want[k * c + col] = xk;
          for (int64_t j = k + 1; j < n; ++j)
            want[j * c + col] -= U[k * n + j] * xk;
        }
      for (int nt : {1, 3, 7, 32}) {
        std::vector<double> got = Y;
        onTeam(nt, [&](CpuTeam &team) {
          teamSolveUpperTMulti(team, U.data(), got.data(), n, c);
        });
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(),
                                 want.size() * sizeof(double)))
            << "n " << n << " c " << c << " nt " << nt;
      }
    }
}

} // namespace
