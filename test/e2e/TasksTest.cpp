//===- TasksTest.cpp - the built-in training tasks ------------------------===//
//
// Gradients are checked against central finite differences of the loss in
// double (Task::lossAndGradient runs the same templated code as step()):
// float cannot resolve a difference quotient, so the float gradient of
// step() is compared with the double one instead, to float precision.
//
//===----------------------------------------------------------------------===//

#include "optim/Rule.h"
#include "optim/Tasks/IDX.h"
#include "optim/Tasks/Task.h"

#include "gtest/gtest.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

using namespace optim;
using namespace optim::tasks;

namespace {

using Tensors = std::vector<std::vector<double>>;
using FloatTensors = std::vector<std::vector<float>>;

/// Expects `fn` to throw optim::Error whose message contains every needle.
template <typename Fn>
void expectError(Fn fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing: " << *needles.begin();
  } catch (const Error &e) {
    for (const std::string &needle : needles)
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
          << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

Tensors toDouble(const FloatTensors &t) {
  Tensors d;
  for (const auto &v : t)
    d.emplace_back(v.begin(), v.end());
  return d;
}

/// Compares the double gradient at the task's parameters with central
/// differences (h = 1e-6: truncation ~1e-12, rounding ~1e-10 to 1e-9) on up
/// to `perTensor` random coordinates of every tensor, and the float gradient
/// of step() with the double one on all of them, both to a tolerance
/// relative to the tensor's largest gradient (at the initialization, W1's
/// are tiny).
void checkGradient(Task &task, int perTensor, uint64_t seed) {
  FloatTensors fgrads;
  task.step(fgrads);
  Tensors params = toDouble(task.parameters()), grads;
  task.lossAndGradient(params, &grads);
  if (fgrads.size() != params.size() || grads.size() != params.size()) {
    ADD_FAILURE() << "wrong number of gradients";
    return;
  }
  std::mt19937_64 pick(seed);
  int failures = 0;
  // The first few failures only: a wrong backward pass fails everywhere.
  auto check = [&](double got, double want, double tol, const char *what,
                   size_t k, size_t i) {
    if (!(std::abs(got - want) <= tol) && ++failures <= 5)
      ADD_FAILURE() << what << ": tensor " << k << " coordinate " << i << ": "
                    << got << " vs " << want << " (tolerance " << tol << ")";
  };
  for (size_t k = 0; k < params.size(); ++k) {
    if (fgrads[k].size() != params[k].size()) {
      ADD_FAILURE() << "gradient " << k << " has the wrong size";
      return;
    }
    double scale = 0;
    for (double g : grads[k])
      scale = std::max(scale, std::abs(g));
    for (size_t i = 0; i < grads[k].size(); ++i)
      check(fgrads[k][i], grads[k][i], 1e-5 * scale + 1e-12,
            "float vs double gradient", k, i);

    size_t n = params[k].size();
    for (int c = 0; c < perTensor && c < int(n); ++c) {
      size_t i = n <= size_t(perTensor) ? size_t(c) : size_t(pick() % n);
      const double h = 1e-6, saved = params[k][i];
      params[k][i] = saved + h;
      double up = task.lossAndGradient(params, nullptr);
      params[k][i] = saved - h;
      double down = task.lossAndGradient(params, nullptr);
      params[k][i] = saved;
      double fd = (up - down) / (2 * h);
      // The floor is the rounding of the quotient: ~1e-15 * loss / h.
      check(grads[k][i], fd, 1e-6 * std::max(scale, std::abs(fd)) + 1e-9,
            "finite difference", k, i);
    }
  }
}

/// Plain SGD; returns the minibatch losses.
std::vector<double> runSGD(Task &task, int steps, double lr) {
  std::vector<double> losses;
  FloatTensors grads;
  for (int t = 0; t < steps; ++t) {
    losses.push_back(task.step(grads));
    for (size_t k = 0; k < grads.size(); ++k)
      for (size_t i = 0; i < grads[k].size(); ++i)
        task.parameters()[k][i] -= float(lr * grads[k][i]);
  }
  return losses;
}

double mean(const std::vector<double> &v, size_t first, size_t last) {
  double s = 0;
  for (size_t i = first; i < last; ++i)
    s += v[i];
  return s / double(last - first);
}

TEST(TaskRegistry, NamesAndUnknownName) {
  std::vector<std::string> names = taskNames();
  for (const char *n : {"quadratic", "mnist", "fashion-mnist"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  expectError([] { makeTask("cifar", 1); },
              {"unknown task 'cifar'", "quadratic"});
}

TEST(TaskQuadratic, GradientMatchesFiniteDifferences) {
  for (uint64_t seed : {1, 2, 3}) {
    auto task = makeTask("quadratic", seed);
    EXPECT_EQ(task->name(), "quadratic");
    ASSERT_EQ(task->parameters().size(), 1u);
    ASSERT_EQ(task->parameters()[0].size(), 10u);
    // Worst errors measured: 1e-3 of the tolerance, float 4e-3.
    checkGradient(*task, 10, seed);
  }
}

TEST(TaskQuadratic, SeedDeterminesProblem) {
  auto a = makeTask("quadratic", 7), b = makeTask("quadratic", 7),
       c = makeTask("quadratic", 8);
  EXPECT_EQ(a->shapes(), (std::vector<std::vector<int64_t>>{{10}}));
  EXPECT_EQ(a->parameters(), b->parameters());
  EXPECT_NE(a->parameters(), c->parameters());
  FloatTensors ga, gb, gc;
  EXPECT_EQ(a->step(ga), b->step(gb));
  EXPECT_EQ(ga, gb);
  // The same θ on another seed's problem: W and y differ too, not only θ0.
  c->parameters() = a->parameters();
  EXPECT_NE(a->step(ga), c->step(gc));
  EXPECT_EQ(a->evaluate(), a->step(ga));
}

TEST(TaskQuadratic, GradientDescentConverges) {
  auto task = makeTask("quadratic", 4);
  double before = task->evaluate();
  runSGD(*task, 500, 0.01);
  EXPECT_LT(task->evaluate(), 0.01 * before);
}

/// The quadratic's Hessian (2 W^T W) column by column, exactly up to
/// rounding: its gradient is linear, so H e_j = grad(e_j) - grad(0), with
/// no step size, independently of hessianVectorProduct's difference.
Tensors quadraticHessian(Task &task) {
  Tensors zero = {std::vector<double>(10, 0.0)}, g0, gj;
  task.lossAndGradient(zero, &g0);
  Tensors columns(10);
  for (int j = 0; j < 10; ++j) {
    Tensors e = zero;
    e[0][j] = 1.0;
    task.lossAndGradient(e, &gj);
    for (int i = 0; i < 10; ++i)
      columns[j].push_back(gj[0][i] - g0[0][i]);
  }
  return columns;
}

TEST(TaskInputs, HessianVectorProductOfTheQuadraticIsExact) {
  for (uint64_t seed : {1, 2, 3}) {
    auto task = makeTask("quadratic", seed);
    FloatTensors grads;
    task->step(grads);
    Tensors H = quadraticHessian(*task);
    std::mt19937_64 rng(seed);
    for (int trial = 0; trial < 5; ++trial) {
      Tensors z = {std::vector<double>(10)}, hz;
      for (double &x : z[0])
        x = rng() & 1 ? 1.0 : -1.0;
      hessianVectorProduct(*task, z, hz);
      ASSERT_EQ(hz.size(), 1u);
      ASSERT_EQ(hz[0].size(), 10u);
      for (int i = 0; i < 10; ++i) {
        double ref = 0.0, scale = 0.0;
        for (int j = 0; j < 10; ++j) {
          ref += H[j][i] * z[0][j];
          scale += std::fabs(H[j][i]);
        }
        EXPECT_NEAR(hz[0][i], ref, 1e-8 * scale) << seed << " " << i;
      }
    }
  }
}

/// A small v is scaled up, not lost under the parameters' rounding; v = 0
/// gives 0.
TEST(TaskInputs, HessianVectorProductOfASmallVector) {
  auto task = makeTask("quadratic", 1);
  FloatTensors grads;
  task->step(grads);
  Tensors H = quadraticHessian(*task);
  for (double s : {1.0, 1e-8, 1e-12, 1e-30}) {
    Tensors v = {std::vector<double>(10, 0.0)}, hv;
    v[0][3] = s;
    hessianVectorProduct(*task, v, hv);
    for (int i = 0; i < 10; ++i)
      EXPECT_NEAR(hv[0][i] / s, H[3][i], 1e-7 * (1 + std::fabs(H[3][i])))
          << s << " " << i;
  }
  Tensors zero = {std::vector<double>(10, 0.0)}, hv;
  hessianVectorProduct(*task, zero, hv);
  ASSERT_EQ(hv.size(), 1u);
  for (double x : hv[0])
    EXPECT_EQ(x, 0.0);
}

TEST(TaskInputs, HutchinsonMeanApproachesTheDiagonal) {
  auto task = makeTask("quadratic", 5);
  FloatTensors grads, out;
  task->step(grads);
  Tensors H = quadraticHessian(*task);
  InputGenerator gen(InputSource::Hutchinson, 5, 0);
  const int n = 20000;
  std::vector<double> sum(10, 0.0);
  for (int k = 0; k < n; ++k) {
    gen.next(*task, out);
    for (int i = 0; i < 10; ++i)
      sum[i] += out[0][i];
  }
  for (int i = 0; i < 10; ++i) {
    // Var[z_i (H z)_i] = sum over j != i of H_ij^2: 5 standard errors.
    double var = 0.0;
    for (int j = 0; j < 10; ++j)
      if (j != i)
        var += H[j][i] * H[j][i];
    EXPECT_NEAR(sum[i] / n, H[i][i], 5.0 * std::sqrt(var / n) + 1e-6) << i;
  }
}

TEST(TaskInputs, NoiseIsSeededAndDistributed) {
  auto task = makeTask("quadratic", 1);
  FloatTensors a, b, c;
  InputGenerator g1(InputSource::Normal, 9, 0), g2(InputSource::Normal, 9, 0),
      g3(InputSource::Normal, 9, 1);
  g1.next(*task, a);
  g2.next(*task, b);
  g3.next(*task, c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double s = 0, s2 = 0, us = 0, umin = 1, umax = 0;
  const int n = 5000;
  InputGenerator u(InputSource::Uniform, 9, 0);
  for (int k = 0; k < n; ++k) {
    g1.next(*task, a);
    u.next(*task, b);
    for (int i = 0; i < 10; ++i) {
      s += a[0][i];
      s2 += double(a[0][i]) * a[0][i];
      us += b[0][i];
      umin = std::min(umin, double(b[0][i]));
      umax = std::max(umax, double(b[0][i]));
    }
  }
  EXPECT_NEAR(s / (10 * n), 0.0, 0.03);
  EXPECT_NEAR(s2 / (10 * n), 1.0, 0.05);
  EXPECT_NEAR(us / (10 * n), 0.5, 0.01);
  EXPECT_GE(umin, 0.0);
  EXPECT_LT(umax, 1.0);
  EXPECT_EQ(parseInputSource("hutchinson"), InputSource::Hutchinson);
  expectError([] { parseInputSource("gauss"); },
              {"unknown input source 'gauss'", "normal, uniform, hutchinson"});
}

TaskOptions smallMLP(const std::string &activation, int layers) {
  TaskOptions o;
  o.activation = activation;
  o.hiddenLayers = layers;
  o.hiddenUnits = 7;
  o.batchSize = 16;
  return o;
}

/// Weights large enough for the nonlinearities to matter (the N(0, 0.01²)
/// initialization leaves every unit in its linear range).
void randomize(Task &task, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  auto &params = task.parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    // Scaled by fan-in, a bias by 1.
    float scale = k % 2 ? 0.5f
                        : 3.0f / std::sqrt(float(params[k].size()) /
                                           float(params[k + 1].size()));
    for (float &p : params[k])
      p = scale * u(rng);
  }
}

TEST(TaskMnist, GradientMatchesFiniteDifferences) {
  // Worst errors measured, as fractions of the tolerances: finite
  // differences 0.45 at the initialization (sigmoid, 2 layers: W1's gradient
  // near the rounding floor), under 0.01 at random weights; float vs double
  // under 0.14.
  for (const char *activation : {"sigmoid", "relu"})
    for (int layers : {1, 2}) {
      SCOPED_TRACE(std::string(activation) + ", " + std::to_string(layers) +
                   " hidden layers");
      auto task = makeTask("mnist", 5, smallMLP(activation, layers));
      ASSERT_EQ(task->parameters().size(), size_t(2 * layers + 2));
      EXPECT_EQ(task->parameters()[0].size(), 784u * 7);
      EXPECT_EQ(task->parameters().back().size(), 10u);
      // At the initialization, then where units saturate or switch off.
      checkGradient(*task, 40, 1);
      randomize(*task, 2);
      checkGradient(*task, 40, 3);
    }
}

TEST(TaskMnist, Initialization) {
  auto task = makeTask("mnist", 1);
  auto &p = task->parameters();
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0].size(), 784u * 20);
  EXPECT_EQ(p[1], std::vector<float>(20, 0.0f));
  EXPECT_EQ(p[2].size(), 20u * 10);
  EXPECT_EQ(p[3], std::vector<float>(10, 0.0f));
  // The shapes as stored (W row-major [fan-in][fan-out]), for rules with
  // row and column states.
  EXPECT_EQ(task->shapes(), (std::vector<std::vector<int64_t>>{
                                {784, 20}, {20}, {20, 10}, {10}}));
  double sum = 0, sq = 0;
  for (float w : p[0]) {
    sum += w;
    sq += double(w) * w;
  }
  double n = double(p[0].size());
  EXPECT_NEAR(sum / n, 0.0, 3e-4);
  EXPECT_NEAR(std::sqrt(sq / n), 0.01, 3e-4);
}

TEST(TaskMnist, SeedDeterminesEverything) {
  auto a = makeTask("mnist", 11), b = makeTask("mnist", 11),
       c = makeTask("mnist", 12);
  EXPECT_EQ(a->parameters(), b->parameters());
  EXPECT_NE(a->parameters(), c->parameters());
  c->parameters() = a->parameters();
  FloatTensors ga, gb, gc;
  bool batchesDiffer = false;
  for (int t = 0; t < 5; ++t) {
    double la = a->step(ga);
    EXPECT_EQ(la, b->step(gb));
    EXPECT_EQ(ga, gb);
    // Same weights, other seed: other minibatches.
    batchesDiffer |= la != c->step(gc);
  }
  EXPECT_TRUE(batchesDiffer);
  EXPECT_EQ(a->evaluate(), b->evaluate());
}

TEST(TaskMnist, SGDLowersTheLoss) {
  // Measured on seeds 1-5: the first minibatch 2.300-2.308, the mean of the
  // last 20 of 200 minibatches 0.39-0.42, evaluate() 0.33-0.35 (from 2.30).
  auto task = makeTask("mnist", 1);
  double before = task->evaluate();
  EXPECT_NEAR(before, std::log(10.0), 0.02);
  std::vector<double> losses = runSGD(*task, 200, 1.0);
  EXPECT_NEAR(losses[0], std::log(10.0), 0.05);
  EXPECT_LT(mean(losses, 180, 200), 0.8);
  EXPECT_LT(task->evaluate(), 0.7);
}

TEST(TaskMnist, EvaluateAveragesTheHeldOutImages) {
  // 300 images: more than one chunk of the evaluation.
  TaskOptions all;
  all.evalFirst = 9700;
  all.evalCount = 300;
  auto task = makeTask("mnist", 3, all);
  runSGD(*task, 20, 1.0);
  double whole = task->evaluate();
  EXPECT_EQ(whole, task->evaluate());

  double sum = 0;
  for (int64_t i = 9700; i < 10000; ++i) {
    TaskOptions one = all;
    one.evalFirst = i;
    one.evalCount = 1;
    auto single = makeTask("mnist", 3, one);
    single->parameters() = task->parameters();
    sum += single->evaluate();
  }
  EXPECT_NEAR(whole, sum / 300, 1e-6);
  // Held out: other images give another loss.
  TaskOptions other = all;
  other.evalFirst = 0;
  auto onTrain = makeTask("mnist", 3, other);
  onTrain->parameters() = task->parameters();
  EXPECT_NE(onTrain->evaluate(), whole);
}

TEST(TaskMnist, BadOptions) {
  TaskOptions o;
  o.activation = "tanh";
  expectError([&] { makeTask("mnist", 1, o); }, {"unknown activation 'tanh'"});
  o = {};
  o.evalFirst = 9000;
  o.evalCount = 2000;
  expectError([&] { makeTask("mnist", 1, o); },
              {"evaluation range", "10000 images", "t10k-images"});
  o = {};
  o.trainCount = 0;
  expectError([&] { makeTask("mnist", 1, o); }, {"training range"});
  o = {};
  o.batchSize = 0;
  expectError([&] { makeTask("mnist", 1, o); }, {"batchSize"});
  expectError([] { makeTask("mnist", 1)->lossAndGradient({}, nullptr); },
              {"step() first"});
}

TEST(TaskFashionMnist, UsesTheTrainingSet) {
  if (findIDXFile("/usr/share/datasets/fashion-mnist", "train", "images")
          .empty() &&
      !std::getenv("OPTIM_FASHION_MNIST_DIR"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  // Only the 60,000 training images reach this far.
  TaskOptions o;
  o.trainFirst = 0;
  o.trainCount = 50000;
  o.evalFirst = 50000;
  o.evalCount = 10000;
  auto task = makeTask("fashion-mnist", 1, o);
  EXPECT_EQ(task->name(), "fashion-mnist");
  std::vector<double> losses = runSGD(*task, 50, 1.0);
  EXPECT_NEAR(losses[0], std::log(10.0), 0.05);
  EXPECT_LT(task->evaluate(), 2.0);
}

//===----------------------------------------------------------------------===//
// IDX files
//===----------------------------------------------------------------------===//

class IDXTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = std::filesystem::path(::testing::TempDir()) /
          ("optim-idx-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  static std::vector<uint8_t> header(uint32_t magic,
                                     std::vector<uint32_t> dims) {
    std::vector<uint8_t> b;
    for (uint32_t v : {magic})
      for (int s = 24; s >= 0; s -= 8)
        b.push_back(uint8_t(v >> s));
    for (uint32_t v : dims)
      for (int s = 24; s >= 0; s -= 8)
        b.push_back(uint8_t(v >> s));
    return b;
  }
  /// `n` images of 2×3 pixels (image i: pixels 10i..10i+5) and labels i%10.
  static std::vector<uint8_t> images(uint32_t n, uint32_t claimed) {
    std::vector<uint8_t> b = header(0x803, {claimed, 2, 3});
    for (uint32_t i = 0; i < n; ++i)
      for (int p = 0; p < 6; ++p)
        b.push_back(uint8_t(10 * i + p));
    return b;
  }
  static std::vector<uint8_t> labels(uint32_t n) {
    std::vector<uint8_t> b = header(0x801, {n});
    for (uint32_t i = 0; i < n; ++i)
      b.push_back(uint8_t(i % 10));
    return b;
  }
  std::string write(const std::string &name, const std::vector<uint8_t> &b) {
    std::string path = (dir / name).string();
    if (name.size() > 3 && name.substr(name.size() - 3) == ".gz") {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, b.data(), unsigned(b.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary)
          .write(reinterpret_cast<const char *>(b.data()),
                 std::streamsize(b.size()));
    }
    return path;
  }

  std::filesystem::path dir;
};

TEST_F(IDXTest, ReadsPlainAndGzipUnderEitherSpelling) {
  write("t10k-images-idx3-ubyte.gz", images(5, 5));
  write("t10k-labels.idx1-ubyte", labels(5));
  ImageSet set = loadImageSet(dir.string(), "t10k");
  EXPECT_EQ(set.count, 5);
  EXPECT_EQ(set.rows, 2);
  EXPECT_EQ(set.cols, 3);
  EXPECT_EQ(set.image(4)[5], 45);
  EXPECT_EQ(set.labels, (std::vector<uint8_t>{0, 1, 2, 3, 4}));

  // A task on it: 6 inputs, 3 training and 2 evaluation images.
  TaskOptions o;
  o.dataDir = dir.string();
  o.trainCount = 3;
  o.evalFirst = 3;
  o.evalCount = 2;
  o.batchSize = 4;
  auto task = makeTask("mnist", 1, o);
  EXPECT_EQ(task->parameters()[0].size(), 6u * 20);
  FloatTensors grads;
  EXPECT_NEAR(task->step(grads), std::log(10.0), 0.05);
  EXPECT_NEAR(task->evaluate(), std::log(10.0), 0.05);
}

TEST_F(IDXTest, MinibatchesComeFromTheTrainingRangeOnly) {
  // Images 3..8 are black, the others white: a black input gives W1 a zero
  // gradient, so one image from outside the range would show in it.
  const uint32_t n = 12;
  std::vector<uint8_t> b = header(0x803, {n, 2, 3});
  for (uint32_t i = 0; i < n; ++i)
    for (int p = 0; p < 6; ++p)
      b.push_back(i >= 3 && i < 9 ? 0 : 255);
  write("t10k-images-idx3-ubyte", b);
  write("t10k-labels-idx1-ubyte", labels(n));
  TaskOptions o;
  o.dataDir = dir.string();
  parseImageRange("3:9", "--train-images", o.trainFirst, o.trainCount);
  parseImageRange("0:3", "--eval-images", o.evalFirst, o.evalCount);
  o.batchSize = 5;
  auto task = makeTask("mnist", 1, o);
  FloatTensors grads;
  double w1Norm = 0, b1Norm = 0;
  for (int t = 0; t < 200; ++t) {
    task->step(grads);
    for (float g : grads[0])
      w1Norm += std::fabs(g);
    for (float g : grads[1])
      b1Norm += std::fabs(g);
  }
  EXPECT_EQ(w1Norm, 0.0);
  EXPECT_GT(b1Norm, 0.0); // The minibatches did train something.

  // The same with a range that reaches a white image: W1 moves.
  parseImageRange("3:10", "--train-images", o.trainFirst, o.trainCount);
  auto leaky = makeTask("mnist", 1, o);
  w1Norm = 0;
  for (int t = 0; t < 200; ++t) {
    leaky->step(grads);
    for (float g : grads[0])
      w1Norm += std::fabs(g);
  }
  EXPECT_GT(w1Norm, 0.0);

  // The held-out images 0-2 are white: the loss on them depends on W1,
  // which it would not if evaluate() read the black training images.
  auto a = makeTask("mnist", 1, o);
  double before = a->evaluate();
  for (float &w : a->parameters()[0])
    w += 0.5f;
  EXPECT_NE(a->evaluate(), before);
}

TEST(TaskRanges, ParseImageRange) {
  int64_t first = -1, count = -1;
  parseImageRange("0:8000", "--train-images", first, count);
  EXPECT_EQ(first, 0);
  EXPECT_EQ(count, 8000);
  parseImageRange("8000:10000", "--eval-images", first, count);
  EXPECT_EQ(first, 8000);
  EXPECT_EQ(count, 2000);
  parseImageRange("59999:60000", "--eval-images", first, count);
  EXPECT_EQ(first, 59999);
  EXPECT_EQ(count, 1);
  // Errors leave the outputs alone and name the flag and the text.
  for (const char *bad :
       {"", "8000", ":", "5:", ":5", "-1:5", "+1:5", " 1:5", "1:5 ", "1e3:2e3",
        "1:2:3", "0x10:20", "5:5", "6:5", "1:99999999999999999999"}) {
    first = count = -7;
    expectError(
        [&] { parseImageRange(bad, "--train-images", first, count); },
        {"--train-images expects FIRST:END", std::string("'") + bad + "'"});
    EXPECT_EQ(first, -7) << bad;
    EXPECT_EQ(count, -7) << bad;
  }
  expectError([&] { parseImageRange("7:7", "--eval-images", first, count); },
              {"--eval-images", "the range is empty"});
}

TEST(TaskRanges, DefaultsAreTheMetaTrainingSplit) {
  // Meta-training draws from images 0-7999; evaluation holds 8000-9999 out.
  TaskOptions o;
  EXPECT_EQ(o.trainFirst, 0);
  EXPECT_EQ(o.trainCount, 8000);
  EXPECT_EQ(o.evalFirst, 8000);
  EXPECT_EQ(o.evalCount, 2000);
}

TEST_F(IDXTest, PrefersTheListedSplit) {
  write("train-images-idx3-ubyte", images(4, 4));
  write("train-labels-idx1-ubyte", labels(4));
  write("t10k-images-idx3-ubyte", images(3, 3));
  write("t10k-labels-idx1-ubyte", labels(3));
  EXPECT_EQ(loadCachedImageSet(dir.string(), {"train", "t10k"})->count, 4);
  EXPECT_EQ(loadCachedImageSet(dir.string(), {"t10k", "train"})->count, 3);
}

TEST_F(IDXTest, TruncatedData) {
  std::string path = write("t10k-images-idx3-ubyte", images(4, 5));
  expectError([&] { readIDX(path, 3); },
              {path, "truncated", "promises 30 bytes", "has 24"});
  std::vector<uint8_t> cut = images(0, 5);
  cut.resize(10);
  path = write("short-idx3-ubyte", cut);
  expectError([&] { readIDX(path, 3); }, {path, "truncated", "header"});
}

TEST_F(IDXTest, TruncatedGzip) {
  std::string path = write("t10k-images-idx3-ubyte.gz", images(200, 200));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  expectError([&] { readIDX(path, 3); }, {path, "truncated"});
}

TEST_F(IDXTest, WrongMagic) {
  std::string path = write("t10k-images-idx3-ubyte", labels(5));
  expectError([&] { readIDX(path, 3); },
              {path, "wrong magic 0x00000801", "expected 0x00000803"});
  // Labels where images are expected, found through the folder.
  write("t10k-labels-idx1-ubyte", labels(5));
  expectError([&] { loadImageSet(dir.string(), "t10k"); }, {"wrong magic"});
}

TEST_F(IDXTest, CountMismatch) {
  write("t10k-images-idx3-ubyte", images(5, 5));
  write("t10k-labels-idx1-ubyte", labels(4));
  expectError([&] { loadImageSet(dir.string(), "t10k"); },
              {"count mismatch", "5 images", "4 labels"});
}

TEST_F(IDXTest, LabelOutOfRange) {
  write("t10k-images-idx3-ubyte", images(2, 2));
  std::vector<uint8_t> l = labels(2);
  l.back() = 10;
  write("t10k-labels-idx1-ubyte", l);
  expectError([&] { loadImageSet(dir.string(), "t10k"); },
              {"label 10 of image 1"});
}

TEST_F(IDXTest, MissingFiles) {
  TaskOptions o;
  o.dataDir = dir.string();
  expectError([&] { makeTask("mnist", 1, o); },
              {dir.string(), "no MNIST-format image file"});
  write("t10k-images-idx3-ubyte", images(2, 2));
  expectError([&] { makeTask("mnist", 1, o); }, {"no t10k labels file"});
  o.dataDir = (dir / "nowhere").string();
  expectError([&] { makeTask("mnist", 1, o); }, {"not a folder"});
}

} // namespace
