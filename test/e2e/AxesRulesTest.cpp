//===- AxesRulesTest.cpp - row and column states end to end (ABI 10) -----===//
//
// The literature rules with row and column states and reductions
// (test/Run/Inputs/literature.optim: adafactor_factored, sm3; KernelABI.h
// version 10, "Axes") compiled by optim::Compiler and run by
// optim::Optimizer over parameters given their shapes with
// Param(...).shaped({...}): a matrix, a stack of matrices, a vector (one
// row), a parameter without a shape (one row) and a wide matrix whose rows
// the chunk size cuts in parts. Checked:
//   - against straightforward double precision references written below
//     from the papers (Shazeer & Stern, 2018, as transformers.Adafactor;
//     Anil et al., 2019, SM3-II with row and column covers), parameters and
//     row and column states (B * R and B * C values), in float64 within
//     1e-12 of each tensor's largest value, float32 within 1e-4 of it;
//   - the same bits with 2 threads as with 1, in both precisions;
//   - a step skipped for a non-finite gradient changes nothing (the new row
//     and column values are not copied in): the run goes on as without it;
//   - wrong use: a shape whose product is not the parameter's size (an
//     error naming the parameter and both counts, for a rule with axes and
//     for one without), and a checkpoint loaded into an optimizer whose
//     parameter has another shape of the same size (an error naming the
//     state and the parameter; nothing changes).
// test/Oracle/axis_oracle.py checks every such rule further against numpy.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

using namespace optim;

namespace {

std::string literaturePath() {
  return std::string(OPTIM_TEST_DIR) + "/Run/Inputs/literature.optim";
}

Rule compileLiterature(const std::string &name, DType precision) {
  CompileOptions options;
  options.precision = precision;
  return Compiler(options).compileFile(literaturePath(), Target::cpu(), name);
}

/// The [B, R, C] view of a parameter (KernelABI.h, "Axes").
struct View {
  int64_t B = 1, R = 1, C = 0;
};

View viewOf(const std::vector<int64_t> &shape, int64_t size) {
  View v;
  v.C = size;
  if (shape.empty())
    return v;
  v.C = shape.back();
  v.R = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
  for (size_t d = 0; d + 2 < shape.size(); ++d)
    v.B *= shape[d];
  return v;
}

/// One parameter: its shape (empty: not given), size and view.
struct Tensor {
  std::vector<int64_t> shape;
  int64_t size;
  View view;
};

std::vector<Tensor> tensors() {
  std::vector<Tensor> out;
  auto add = [&](std::vector<int64_t> shape, int64_t size) {
    out.push_back({shape, size, viewOf(shape, size)});
  };
  add({3, 5}, 15);
  add({2, 3, 4}, 24);
  add({7}, 7);
  add({}, 9);         // no shape: one row
  add({4, 1500}, 6000); // rows cut by chunk size 1000
  add({5, 3}, 15);    // its gradient is 0 in row 1 and column 0
  return out;
}
constexpr size_t kHoles = 5;

/// Step t's gradient of tensor k (double values that float32 holds).
std::vector<double> gradient(size_t k, const Tensor &x, int64_t t) {
  std::mt19937_64 gen(1000003u * uint64_t(t) + 7919u * k);
  std::normal_distribution<double> normal;
  std::vector<double> g(size_t(x.size));
  for (int64_t i = 0; i < x.size; ++i) {
    double scale = std::pow(10.0, double(int64_t((i * 37 + k) % 6)) - 3.0);
    g[size_t(i)] = double(float(normal(gen) * scale));
    if ((i * 7 + t) % 11 == 0)
      g[size_t(i)] = 0;
  }
  if (k == kHoles)
    for (int64_t i = 0; i < x.size; ++i)
      if (i / 3 == 1 || i % 3 == 0)
        g[size_t(i)] = 0;
  return g;
}

std::vector<double> initial(size_t k, const Tensor &x) {
  std::mt19937_64 gen(424242u + k);
  std::normal_distribution<double> normal;
  std::vector<double> p(size_t(x.size));
  for (double &v : p)
    v = double(float(normal(gen)));
  return p;
}

//===----------------------------------------------------------------------===//
// References, double precision, one tensor, p and the states in place.
//===----------------------------------------------------------------------===//

struct RefState {
  std::vector<double> p, r, c; // r: B * R values, c: B * C
};

RefState refInit(size_t k, const Tensor &x) {
  return {initial(k, x), std::vector<double>(size_t(x.view.B * x.view.R)),
          std::vector<double>(size_t(x.view.B * x.view.C))};
}

/// Row sums and column sums of f over the view.
template <typename F>
void rowColMeans(const View &v, F f, std::vector<double> &rowMean,
                 std::vector<double> &colMean) {
  rowMean.assign(size_t(v.B * v.R), 0);
  colMean.assign(size_t(v.B * v.C), 0);
  for (int64_t b = 0; b < v.B; ++b)
    for (int64_t i = 0; i < v.R; ++i)
      for (int64_t j = 0; j < v.C; ++j) {
        double x = f((b * v.R + i) * v.C + j);
        rowMean[size_t(b * v.R + i)] += x;
        colMean[size_t(b * v.C + j)] += x;
      }
  for (double &x : rowMean)
    x /= double(v.C);
  for (double &x : colMean)
    x /= double(v.R);
}

/// Adafactor, factored (Shazeer & Stern, 2018, Algorithm 4 with update
/// clipping; HF transformers.Adafactor without relative step or momentum):
/// beta2t = 1 - t^-decay; R, C averages of g^2 + eps1 along rows and
/// columns; V = R C / mean(R); U = g / sqrt(V) clipped to RMS d;
/// p -= lr wd p + lr U.
struct AdafactorHypers {
  double lr = 0.02, decay = 0.7, eps1 = 1e-30, d = 1.2, wd = 0.01;
};

void adafactorStep(RefState &s, const Tensor &x, const std::vector<double> &g,
                   int64_t t, const AdafactorHypers &h) {
  if (!x.size)
    return;
  const View &v = x.view;
  double beta2t = 1 - std::pow(double(t), -h.decay);
  std::vector<double> rowMean, colMean;
  rowColMeans(
      v, [&](int64_t k) { return g[size_t(k)] * g[size_t(k)] + h.eps1; },
      rowMean, colMean);
  for (size_t i = 0; i < s.r.size(); ++i)
    s.r[i] = beta2t * s.r[i] + (1 - beta2t) * rowMean[i];
  for (size_t j = 0; j < s.c.size(); ++j)
    s.c[j] = beta2t * s.c[j] + (1 - beta2t) * colMean[j];
  double rMean = 0;
  for (double r : s.r)
    rMean += r;
  rMean /= double(s.r.size());
  std::vector<double> u(size_t(x.size));
  double sq = 0;
  for (int64_t b = 0; b < v.B; ++b)
    for (int64_t i = 0; i < v.R; ++i)
      for (int64_t j = 0; j < v.C; ++j) {
        int64_t k = (b * v.R + i) * v.C + j;
        double vhat = s.r[size_t(b * v.R + i)] / rMean * s.c[size_t(b * v.C + j)];
        u[size_t(k)] = g[size_t(k)] / std::sqrt(vhat);
        sq += u[size_t(k)] * u[size_t(k)];
      }
  double clip = std::max(1.0, std::sqrt(sq / double(x.size)) / h.d);
  for (int64_t k = 0; k < x.size; ++k)
    s.p[size_t(k)] -= h.lr * h.wd * s.p[size_t(k)] + h.lr * u[size_t(k)] / clip;
}

/// SM3-II (Anil et al., 2019) with row and column covers: nu = min(mu_row,
/// mu_col) + g^2, p -= lr g / sqrt(nu) (0 where nu = 0), then mu_row and
/// mu_col the maxima of nu over each row and column.
void sm3Step(RefState &s, const Tensor &x, const std::vector<double> &g,
             double lr) {
  if (!x.size)
    return;
  const View &v = x.view;
  std::vector<double> rowMax(s.r.size(), -INFINITY),
      colMax(s.c.size(), -INFINITY);
  for (int64_t b = 0; b < v.B; ++b)
    for (int64_t i = 0; i < v.R; ++i)
      for (int64_t j = 0; j < v.C; ++j) {
        size_t k = size_t((b * v.R + i) * v.C + j);
        size_t ri = size_t(b * v.R + i), cj = size_t(b * v.C + j);
        double nu = std::min(s.r[ri], s.c[cj]) + g[k] * g[k];
        rowMax[ri] = std::max(rowMax[ri], nu);
        colMax[cj] = std::max(colMax[cj], nu);
        if (nu > 0)
          s.p[k] -= lr * g[k] / std::sqrt(nu);
      }
  s.r = rowMax;
  s.c = colMax;
}

//===----------------------------------------------------------------------===//
// Kernel runs.
//===----------------------------------------------------------------------===//

template <typename T> struct Run {
  std::vector<std::vector<T>> params;
  std::unique_ptr<Optimizer> opt;
};

template <typename T>
std::vector<Param> shapedParams(std::vector<std::vector<T>> &params,
                                const std::vector<Tensor> &ts) {
  std::vector<Param> out;
  for (size_t k = 0; k < ts.size(); ++k) {
    Param p(params[k].data(), params[k].size());
    out.push_back(ts[k].shape.empty() ? p : p.shaped(ts[k].shape));
  }
  return out;
}

template <typename T>
std::unique_ptr<Run<T>>
makeRun(const Rule &rule, const std::vector<Tensor> &ts, unsigned threads,
        const std::vector<std::pair<std::string, double>> &hypers) {
  std::vector<std::vector<T>> params;
  for (size_t k = 0; k < ts.size(); ++k) {
    std::vector<double> p0 = initial(k, ts[k]);
    params.emplace_back(p0.begin(), p0.end());
  }
  OptimizerOptions options;
  options.threads = threads;
  options.chunkSize = 1000;
  auto run = std::make_unique<Run<T>>();
  run->params = std::move(params);
  run->opt = std::make_unique<Optimizer>(
      rule, shapedParams(run->params, ts), options);
  for (auto &[name, value] : hypers)
    run->opt->set(name, value);
  return run;
}

template <typename T>
void stepRun(Run<T> &run, const std::vector<Tensor> &ts, int64_t t) {
  std::vector<std::vector<T>> grads;
  std::vector<Grad> gs;
  for (size_t k = 0; k < ts.size(); ++k) {
    std::vector<double> g = gradient(k, ts[k], t);
    grads.emplace_back(g.begin(), g.end());
  }
  for (auto &g : grads)
    gs.emplace_back(g.data(), g.size());
  ASSERT_TRUE(run.opt->step(gs));
}

template <typename T>
std::vector<double> stateOf(const Optimizer &opt, size_t k,
                            const std::string &name, size_t count) {
  const T *data = static_cast<const T *>(opt.state(k, name));
  return std::vector<double>(data, data + count);
}

/// |ours - reference| <= tol * max|reference| per tensor and quantity.
void expectNear(const std::vector<double> &ours,
                const std::vector<double> &ref, double tol,
                const std::string &what) {
  ASSERT_EQ(ours.size(), ref.size()) << what;
  double scale = 0;
  for (double x : ref)
    scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < ref.size(); ++i)
    ASSERT_LE(std::fabs(ours[i] - ref[i]), tol * scale)
        << what << "[" << i << "]: " << ours[i] << " vs reference " << ref[i];
}

template <typename T>
void expectSameBits(const Run<T> &a, const Run<T> &b,
                    const std::vector<Tensor> &ts) {
  for (size_t k = 0; k < ts.size(); ++k) {
    ASSERT_EQ(0, std::memcmp(a.params[k].data(), b.params[k].data(),
                             a.params[k].size() * sizeof(T)))
        << "p of parameter " << k;
    size_t rows = size_t(ts[k].view.B * ts[k].view.R);
    size_t cols = size_t(ts[k].view.B * ts[k].view.C);
    if (rows)
      ASSERT_EQ(0, std::memcmp(a.opt->state(k, "r"), b.opt->state(k, "r"),
                               rows * sizeof(T)))
          << "r of parameter " << k;
    if (cols)
      ASSERT_EQ(0, std::memcmp(a.opt->state(k, "c"), b.opt->state(k, "c"),
                               cols * sizeof(T)))
          << "c of parameter " << k;
  }
}

template <typename T, typename Step>
void checkRule(const std::string &name, DType precision,
               const std::vector<std::pair<std::string, double>> &hypers,
               Step refStep, double tol) {
  SCOPED_TRACE(name + (precision == DType::F64 ? " f64" : " f32"));
  Rule rule = compileLiterature(name, precision);
  ASSERT_TRUE(rule.info().hasAxes());
  std::vector<Tensor> ts = tensors();
  auto one = makeRun<T>(rule, ts, 1, hypers);
  auto two = makeRun<T>(rule, ts, 2, hypers);
  std::vector<RefState> refs;
  for (size_t k = 0; k < ts.size(); ++k)
    refs.push_back(refInit(k, ts[k]));
  constexpr int64_t kSteps = 25;
  for (int64_t t = 1; t <= kSteps; ++t) {
    stepRun(*one, ts, t);
    stepRun(*two, ts, t);
    if (::testing::Test::HasFatalFailure())
      return;
    for (size_t k = 0; k < ts.size(); ++k)
      refStep(refs[k], ts[k], gradient(k, ts[k], t), t);
  }
  for (size_t k = 0; k < ts.size(); ++k) {
    SCOPED_TRACE("parameter " + std::to_string(k));
    const View &v = ts[k].view;
    expectNear(std::vector<double>(one->params[k].begin(),
                                   one->params[k].end()),
               refs[k].p, tol, "p");
    expectNear(stateOf<T>(*one->opt, k, "r", size_t(v.B * v.R)), refs[k].r,
               tol, "r");
    expectNear(stateOf<T>(*one->opt, k, "c", size_t(v.B * v.C)), refs[k].c,
               tol, "c");
  }
  expectSameBits(*one, *two, ts);
}

TEST(AxesRules, AdafactorFactored) {
  AdafactorHypers h;
  std::vector<std::pair<std::string, double>> hypers = {
      {"lr", h.lr}, {"decay", h.decay}, {"eps1", h.eps1}, {"d", h.d},
      {"weight_decay", h.wd}};
  auto step = [&](RefState &s, const Tensor &x, const std::vector<double> &g,
                  int64_t t) { adafactorStep(s, x, g, t, h); };
  checkRule<double>("adafactor_factored", DType::F64, hypers, step, 1e-12);
  checkRule<float>("adafactor_factored", DType::F32, hypers, step, 1e-4);
}

TEST(AxesRules, SM3) {
  double lr = 0.05;
  auto step = [&](RefState &s, const Tensor &x, const std::vector<double> &g,
                  int64_t) { sm3Step(s, x, g, lr); };
  checkRule<double>("sm3", DType::F64, {{"lr", lr}}, step, 1e-12);
  checkRule<float>("sm3", DType::F32, {{"lr", lr}}, step, 1e-4);
}

std::string errorOf(const std::function<void()> &fn) {
  try {
    fn();
  } catch (const Error &e) {
    return e.what();
  }
  return "(no error)";
}

TEST(AxesRules, ShapeOfAnotherSize) {
  std::vector<float> a(6), b(13);
  for (const char *name : {"sm3", "adafactor_factored"}) {
    Rule rule = compileLiterature(name, DType::F32);
    std::string what = errorOf([&] {
      Optimizer o(rule, {Param(a.data(), a.size()).shaped({2, 3}),
                         Param(b.data(), b.size()).shaped({3, 4})});
    });
    EXPECT_NE(what.find("parameter 1"), std::string::npos) << what;
    EXPECT_NE(what.find("shape [3, 4] has 12 elements, its size is 13"),
              std::string::npos)
        << what;
    // A negative dimension whose product happens to match.
    what = errorOf([&] {
      Optimizer o(rule, {Param(a.data(), a.size()).shaped({-2, -3})});
    });
    EXPECT_NE(what.find("parameter 0"), std::string::npos) << what;
  }
  // Every rule checks the shapes given, also one without axes.
  Rule adam = Compiler().compileFile(std::string(OPTIM_EXAMPLES_DIR) +
                                     "/adam.optim");
  std::string what = errorOf([&] {
    Optimizer o(adam, {Param(b.data(), b.size()).shaped({3, 4})});
  });
  EXPECT_NE(what.find("shape [3, 4] has 12 elements, its size is 13"),
            std::string::npos)
      << what;
}

TEST(AxesRules, CheckpointOfAnotherShape) {
  Rule rule = compileLiterature("adafactor_factored", DType::F64);
  std::vector<double> w(12), g(12);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = 0.1 * double(i) - 0.5;
    g[i] = 0.3 - 0.07 * double(i * i % 5);
  }
  std::string path = ::testing::TempDir() + "axes_ckpt_" +
                     std::to_string(::getpid()) + ".safetensors";
  Optimizer saved(rule, {Param(w.data(), w.size()).shaped({3, 4})});
  ASSERT_TRUE(saved.step({Grad(g.data(), g.size())}));
  saved.save(path);

  // The same shape loads; the state is the saved one.
  std::vector<double> w2 = w;
  Optimizer same(rule, {Param(w2.data(), w2.size()).shaped({3, 4})});
  same.load(path);
  EXPECT_EQ(same.stepCount(), 1);
  EXPECT_EQ(0, std::memcmp(same.state(0, "r"), saved.state(0, "r"),
                           3 * sizeof(double)));
  EXPECT_EQ(0, std::memcmp(same.state(0, "c"), saved.state(0, "c"),
                           4 * sizeof(double)));

  // [4, 3]: as many coordinates, 4 rows and 3 columns. Refused, naming the
  // state and the parameter; nothing changes.
  std::vector<double> w3 = w;
  Optimizer other(rule, {Param(w3.data(), w3.size()).shaped({4, 3})});
  ASSERT_TRUE(other.step({Grad(g.data(), g.size())}));
  ASSERT_TRUE(other.step({Grad(g.data(), g.size())}));
  std::vector<double> r(static_cast<const double *>(other.state(0, "r")),
                        static_cast<const double *>(other.state(0, "r")) + 4);
  std::vector<double> c(static_cast<const double *>(other.state(0, "c")),
                        static_cast<const double *>(other.state(0, "c")) + 3);
  std::string what = errorOf([&] { other.load(path); });
  EXPECT_NE(what.find("state 'r' of parameter 0"), std::string::npos) << what;
  EXPECT_NE(what.find("another shape"), std::string::npos) << what;
  EXPECT_EQ(other.stepCount(), 2);
  EXPECT_EQ(0, std::memcmp(other.state(0, "r"), r.data(), 4 * sizeof(double)));
  EXPECT_EQ(0, std::memcmp(other.state(0, "c"), c.data(), 3 * sizeof(double)));

  // Without a shape the parameter is one row of 12: refused too.
  std::vector<double> w4 = w;
  Optimizer flat(rule, {Param(w4.data(), w4.size())});
  what = errorOf([&] { flat.load(path); });
  EXPECT_NE(what.find("of parameter 0"), std::string::npos) << what;
  EXPECT_EQ(flat.stepCount(), 0);
  std::remove(path.c_str());
}

// A step skipped for a non-finite gradient changes nothing: the new row and
// column values the kernels wrote are not copied into the current buffers,
// so the run continues as if the step had not been taken.
TEST(AxesRules, SkippedStepChangesNothing) {
  Rule rule = compileLiterature("sm3", DType::F64);
  std::vector<Tensor> ts = tensors();
  OptimizerOptions options;
  options.threads = 2;
  options.chunkSize = 1000;
  options.skipNonFinite = true;
  auto makeOpt = [&](std::vector<std::vector<double>> &params) {
    for (size_t k = 0; k < ts.size(); ++k)
      params.push_back(initial(k, ts[k]));
    return std::make_unique<Optimizer>(rule, shapedParams(params, ts),
                                       options);
  };
  std::vector<std::vector<double>> pa, pb;
  auto a = makeOpt(pa), b = makeOpt(pb);
  auto step = [&](Optimizer &opt, int64_t t, bool poison) {
    std::vector<std::vector<double>> grads;
    std::vector<Grad> gs;
    for (size_t k = 0; k < ts.size(); ++k)
      grads.push_back(gradient(k, ts[k], t));
    if (poison)
      grads[4][1234] = NAN;
    for (auto &g : grads)
      gs.emplace_back(g.data(), g.size());
    return opt.step(gs);
  };
  ASSERT_TRUE(step(*a, 1, false));
  ASSERT_TRUE(step(*b, 1, false));
  ASSERT_FALSE(step(*a, 2, true));
  EXPECT_EQ(a->skippedSteps(), 1);
  ASSERT_TRUE(step(*a, 3, false));
  ASSERT_TRUE(step(*b, 3, false));
  for (size_t k = 0; k < ts.size(); ++k) {
    EXPECT_EQ(pa[k], pb[k]) << "p of parameter " << k;
    size_t rows = size_t(ts[k].view.B * ts[k].view.R);
    size_t cols = size_t(ts[k].view.B * ts[k].view.C);
    EXPECT_EQ(stateOf<double>(*a, k, "r", rows), stateOf<double>(*b, k, "r", rows))
        << "r of parameter " << k;
    EXPECT_EQ(stateOf<double>(*a, k, "c", cols), stateOf<double>(*b, k, "c", cols))
        << "c of parameter " << k;
  }
}

} // namespace
