//===- QPLayerTest.cpp - compiled QP layers: forward, backward, errors ----===//
//
// A layer compiled from the language against the same QP built by hand and
// solved by the runtime's solver directly; its gradients with respect to its
// inputs and weights against central finite differences (float64); the
// Sudoku example end to end in float32; bad calls.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Layer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace optim;

namespace {

// Every supported construct: an input, weights, eye, zeros, ones, a matvec of
// an input, broadcast scalars, add/sub/mul/div/neg/exp, equalities and
// inequalities, all three results.
const char *kLayer = R"(
layer t(n = 3, neq = 2) {
  weights W[neq, n], c[n], lz[n]
  input y[n]
  let u = W @ exp(lz)
  output z, nu, lam = qp(Q: eye(n) * 2.0 + zeros(n, n), q: c - y / 2.0, A: W, b: u, G: ones(1, n), h: ones(1) * 5.0 - zeros(1, n) @ y)
}
)";

CompileOptions f64Options() {
  CompileOptions o;
  o.precision = DType::F64;
  o.useCache = false;
  return o;
}

struct Data {
  int64_t B = 4;
  std::vector<double> y, W, c, lz;
  Data() {
    std::mt19937_64 rng(1);
    std::normal_distribution<double> N;
    for (int i = 0; i < B * 3; ++i)
      y.push_back(N(rng));
    for (int i = 0; i < 6; ++i)
      W.push_back(N(rng));
    for (int i = 0; i < 3; ++i) {
      c.push_back(N(rng));
      lz.push_back(0.3 * N(rng));
    }
  }
};

TEST(QPLayer, ForwardMatchesTheSolverOnTheSameData) {
  Compiler compiler(f64Options());
  Layer layer = compiler.compileLayerSource(kLayer, "t.optim");
  const LayerInfo &info = layer.info();
  EXPECT_EQ(info.n, 3);
  EXPECT_EQ(info.m, 2);
  EXPECT_EQ(info.p, 1);
  ASSERT_EQ(info.outputs.size(), 3u);
  // Q, A, b shared; q (from y) and h (y @ zeros) batched.
  EXPECT_FALSE(info.batched[0]);
  EXPECT_TRUE(info.batched[1]);
  EXPECT_FALSE(info.batched[2]);
  EXPECT_FALSE(info.batched[3]);
  EXPECT_FALSE(info.batched[4]);
  EXPECT_TRUE(info.batched[5]);

  Data d;
  std::vector<double> z(d.B * 3), nu(d.B * 2), lam(d.B);
  layer.forward(d.B, {d.y.data()}, {d.W.data(), d.c.data(), d.lz.data()},
                {z.data(), nu.data(), lam.data()});

  // The same QP by hand.
  std::vector<double> Q = {2, 0, 0, 0, 2, 0, 0, 0, 2}, q(d.B * 3), b(2),
                      G = {1, 1, 1}, h(d.B, 5.0);
  for (int64_t e = 0; e < d.B; ++e)
    for (int j = 0; j < 3; ++j)
      q[e * 3 + j] = d.c[j] - d.y[e * 3 + j] / 2.0;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      b[i] += d.W[i * 3 + j] * std::exp(d.lz[j]);
  QPProblem pb;
  pb.Q = {Q.data(), {3, 3}};
  pb.q = {q.data(), {d.B, 3}};
  pb.A = {d.W.data(), {2, 3}};
  pb.b = {b.data(), {2}};
  pb.G = {G.data(), {1, 3}};
  pb.h = {h.data(), {d.B, 1}};
  std::vector<double> z2(d.B * 3), nu2(d.B * 2), lam2(d.B);
  std::vector<QPStatus> st(d.B);
  QPSolver().forward(pb,
                     {z2.data(), nu2.data(), lam2.data(), st.data(), nullptr});
  for (size_t i = 0; i < z.size(); ++i)
    EXPECT_NEAR(z[i], z2[i], 1e-12);
  for (size_t i = 0; i < nu.size(); ++i)
    EXPECT_NEAR(nu[i], nu2[i], 1e-10);
  for (size_t i = 0; i < lam.size(); ++i)
    EXPECT_NEAR(lam[i], lam2[i], 1e-10);
}

// The same layer with atan and atan2 in its data (of inputs and weights,
// away from atan2's origin).
const char *kArctangentLayer = R"(
layer t(n = 3, neq = 2) {
  weights W[neq, n], c[n], lz[n]
  input y[n]
  let u = W @ (exp(lz) + atan(lz))
  output z, nu, lam = qp(Q: eye(n) * 2.0 + zeros(n, n), q: c - atan2(y, c * c + 1.0), A: W, b: u, G: ones(1, n), h: ones(1) * 5.0 - zeros(1, n) @ y)
}
)";

void expectGradientsMatchFiniteDifferences(const char *source) {
  Compiler compiler(f64Options());
  Layer layer = compiler.compileLayerSource(source, "t.optim");
  Data d;
  // Make the inequality active for some elements: sum z <= 5 - 0.
  for (int64_t e = 0; e < d.B; e += 2)
    for (int j = 0; j < 3; ++j)
      d.y[e * 3 + j] = 8.0 + j;
  std::mt19937_64 rng(2);
  std::normal_distribution<double> N;
  std::vector<double> gz(d.B * 3), gnu(d.B * 2), glam(d.B);
  for (auto *v : {&gz, &gnu, &glam})
    for (double &x : *v)
      x = N(rng);
  auto loss = [&](Layer &l) {
    std::vector<double> z(d.B * 3), nu(d.B * 2), lam(d.B);
    l.forward(d.B, {d.y.data()}, {d.W.data(), d.c.data(), d.lz.data()},
              {z.data(), nu.data(), lam.data()});
    double s = 0;
    for (size_t i = 0; i < z.size(); ++i)
      s += gz[i] * z[i];
    for (size_t i = 0; i < nu.size(); ++i)
      s += gnu[i] * nu[i];
    for (size_t i = 0; i < lam.size(); ++i)
      s += glam[i] * lam[i];
    return s;
  };
  loss(layer);
  std::vector<double> dy(d.y.size()), dW(6), dc(3), dlz(3);
  layer.backward({gz.data(), gnu.data(), glam.data()}, {dy.data()},
                 {dW.data(), dc.data(), dlz.data()});
  std::vector<double> *params[4] = {&d.y, &d.W, &d.c, &d.lz};
  std::vector<double> *grads[4] = {&dy, &dW, &dc, &dlz};
  const char *names[4] = {"y", "W", "c", "lz"};
  Layer probe = compiler.compileLayerSource(source, "t.optim");
  const double eps = 1e-6;
  for (int k = 0; k < 4; ++k)
    for (size_t i = 0; i < params[k]->size(); ++i) {
      double keep = (*params[k])[i];
      (*params[k])[i] = keep + eps;
      double up = loss(probe);
      (*params[k])[i] = keep - eps;
      double down = loss(probe);
      (*params[k])[i] = keep;
      double fd = (up - down) / (2 * eps);
      EXPECT_NEAR((*grads[k])[i], fd, 1e-5 * std::max(1.0, std::abs(fd)))
          << names[k] << "[" << i << "]";
    }
}

TEST(QPLayer, GradientsOfInputsAndWeightsMatchFiniteDifferences) {
  expectGradientsMatchFiniteDifferences(kLayer);
}

TEST(QPLayer, ArctangentsInTheDataHaveTheirDerivatives) {
  expectGradientsMatchFiniteDifferences(kArctangentLayer);
}

TEST(QPLayer, SudokuExampleInFloat32) {
  CompileOptions o;
  o.useCache = false;
  Compiler compiler(o);
  Layer sudoku = compiler.compileLayerFile(OPTIM_EXAMPLES_DIR "/sudoku.optim");
  const LayerInfo &info = sudoku.info();
  ASSERT_EQ(info.dtype, DType::F32);
  ASSERT_EQ(info.n, 64);
  ASSERT_EQ(info.m, 40);
  ASSERT_EQ(info.p, 64);
  const int64_t B = 5;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> N;
  std::vector<float> puzzle(B * 64), A(40 * 64), logz0(64);
  for (float &x : puzzle)
    x = (rng() % 4 == 0) ? 1.0f : 0.0f;
  for (float &x : A)
    x = N(rng) * 0.3f;
  for (float &x : logz0)
    x = N(rng) * 0.5f - 1.0f;
  std::vector<float> z(B * 64);
  sudoku.forward(B, {puzzle.data()}, {A.data(), logz0.data()}, {z.data()});
  // Feasible: A z = A exp(log_z0) and z >= 0.
  for (int64_t e = 0; e < B; ++e) {
    for (int i = 0; i < 40; ++i) {
      double az = 0, b = 0;
      for (int j = 0; j < 64; ++j) {
        az += A[i * 64 + j] * z[e * 64 + j];
        b += A[i * 64 + j] * std::exp(double(logz0[j]));
      }
      EXPECT_NEAR(az, b, 1e-4 * std::max(1.0, std::abs(b)));
    }
    for (int j = 0; j < 64; ++j)
      EXPECT_GE(z[e * 64 + j], -1e-6f);
  }
  std::vector<float> dz(B * 64, 1.0f), dA(40 * 64), dlz(64);
  sudoku.backward({dz.data()}, {nullptr}, {dA.data(), dlz.data()});
  for (float v : dA)
    ASSERT_TRUE(std::isfinite(v));
  for (float v : dlz)
    ASSERT_TRUE(std::isfinite(v));
}

TEST(QPLayer, BadCallsAreClearErrors) {
  Compiler compiler(f64Options());
  Layer layer = compiler.compileLayerSource(kLayer, "t.optim");
  Data d;
  std::vector<double> z(d.B * 3), nu(d.B * 2), lam(d.B);
  auto expectError = [&](auto fn, const char *what) {
    try {
      fn();
      FAIL() << "no error for " << what;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos)
          << e.what();
    }
  };
  expectError(
      [&] {
        layer.backward({nullptr, nullptr, nullptr}, {nullptr},
                       {nullptr, nullptr, nullptr});
      },
      "needs a forward()");
  expectError(
      [&] {
        layer.forward(0, {d.y.data()}, {d.W.data(), d.c.data(), d.lz.data()},
                      {z.data(), nu.data(), lam.data()});
      },
      "the batch size must be positive");
  expectError(
      [&] {
        layer.forward(d.B, {}, {d.W.data(), d.c.data(), d.lz.data()},
                      {z.data(), nu.data(), lam.data()});
      },
      "forward() takes 1 inputs, 3 weights and 3 outputs");
  d.y[5] = std::nan("");
  expectError(
      [&] {
        layer.forward(d.B, {d.y.data()}, {d.W.data(), d.c.data(), d.lz.data()},
                      {z.data(), nu.data(), lam.data()});
      },
      "input 'y' has a non-finite value (nan) at batch element 1, flat index "
      "2");
  d.y[5] = 0;
  d.lz[0] = 1000; // exp overflows: the QP data is not finite
  expectError(
      [&] {
        layer.forward(d.B, {d.y.data()}, {d.W.data(), d.c.data(), d.lz.data()},
                      {z.data(), nu.data(), lam.data()});
      },
      "the QP data it computed is invalid: qp: b has a non-finite value");
  d.lz[0] = 0;
  // Infeasible: sum z <= 5, but A's first row says sum z = e^5 + e^5 + 1.
  std::vector<double> bigW = {1, 1, 1, 0, 1, 0};
  std::vector<double> bigLz = {5, 5, 0};
  expectError(
      [&] {
        layer.forward(d.B, {d.y.data()},
                      {bigW.data(), d.c.data(), bigLz.data()},
                      {z.data(), nu.data(), lam.data()});
      },
      "of the batch is primal infeasible");
  std::vector<QPStatus> st(d.B);
  layer.forward(d.B, {d.y.data()}, {bigW.data(), d.c.data(), bigLz.data()},
                {z.data(), nu.data(), lam.data()}, st.data());
  for (QPStatus s : st)
    EXPECT_EQ(s, QPStatus::PrimalInfeasible);

  // Compile-time errors of the lowering are located: a second qp.
  try {
    compiler.compileLayerSource(R"(
layer bad(n = 2) {
  input y[n]
  let w = qp(Q: eye(n), q: y)
  output z = qp(Q: eye(n), q: abs(w))
}
)",
                                "bad.optim");
    FAIL() << "a layer with two qp compiled";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("a layer solves one qp"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.optim:5:14"), std::string::npos)
        << e.what();
  }
}

} // namespace
