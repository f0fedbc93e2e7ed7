//===- optim-sudoku.cpp - OptNet's 4x4 Sudoku experiment, reproduced ------===//
//
// Amos & Kolter (ICML 2017), section 5.2: a QP layer learns the rules of
// 4x4 Sudoku from puzzles and their solutions. Everything is this project's:
// the puzzles come from the generator below (a counting backtracker proves
// each has exactly one solution), the layer is examples/sudoku.optim
// compiled by optim::Compiler (its QP solved and differentiated by the
// runtime's batched solver), and both models are trained by
// examples/adam.optim compiled and run by optim::Optimizer. The baseline is
// a fully connected network of about the same number of parameters, with a
// plain C++ forward and backward pass.
//
//   optim-sudoku --out DIR [--epochs 20] [--train 9000] [--test 1000] ...
//   optim-sudoku --dump-puzzles FILE --puzzles N [--seed S]
//   optim-sudoku --steps-on-one-batch K --batch B
//
// Writes DIR/sudoku.csv: model,epoch,train_loss,train_error,test_loss,
// test_error,train_seconds,test_seconds (error: the fraction of boards not
// fully solved when each cell takes the digit of its largest output).
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Layer.h"
#include "optim/Optimizer.h"

#include "ExamplesDir.h"
#include "ToolSupport.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace optim;

namespace {

constexpr int kCells = 16, kDigits = 4, kVars = kCells * kDigits;

//===----------------------------------------------------------------------===//
// The generator
//===----------------------------------------------------------------------===//

using Grid = std::array<int, kCells>; // digits 1..4, 0 = blank

bool allowed(const Grid &g, int cell, int d) {
  int r = cell / 4, c = cell % 4, br = r / 2 * 2, bc = c / 2 * 2;
  for (int k = 0; k < 4; ++k)
    if (g[r * 4 + k] == d || g[k * 4 + c] == d ||
        g[(br + k / 2) * 4 + bc + k % 2] == d)
      return false;
  return true;
}

/// The number of completions of g, counting up to `limit`.
int countSolutions(Grid &g, int limit) {
  int cell = 0;
  while (cell < kCells && g[cell] != 0)
    ++cell;
  if (cell == kCells)
    return 1;
  int count = 0;
  for (int d = 1; d <= kDigits && count < limit; ++d)
    if (allowed(g, cell, d)) {
      g[cell] = d;
      count += countSolutions(g, limit - count);
      g[cell] = 0;
    }
  return count;
}

/// Fills g's blanks with a uniformly ordered search: a random valid grid.
bool fillRandom(Grid &g, std::mt19937_64 &rng) {
  int cell = 0;
  while (cell < kCells && g[cell] != 0)
    ++cell;
  if (cell == kCells)
    return true;
  std::array<int, 4> digits = {1, 2, 3, 4};
  std::shuffle(digits.begin(), digits.end(), rng);
  for (int d : digits)
    if (allowed(g, cell, d)) {
      g[cell] = d;
      if (fillRandom(g, rng))
        return true;
      g[cell] = 0;
    }
  return false;
}

struct Puzzle {
  Grid puzzle, solution;
};

/// `count` distinct puzzles with exactly one solution each: a random full
/// grid, then its cells blanked in random order, each only if the puzzle
/// keeps a unique solution, until a target number of clues (uniform in
/// 4..10) is reached or no clue can go. Distinct puzzles keep the train and
/// test sets disjoint (minimal 4x4 puzzles alone are too few for 10,000).
std::vector<Puzzle> generate(int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Puzzle> out;
  std::set<Grid> seen;
  while ((int)out.size() < count) {
    Puzzle p;
    p.solution.fill(0);
    fillRandom(p.solution, rng);
    p.puzzle = p.solution;
    int target = std::uniform_int_distribution<int>(4, 10)(rng);
    std::array<int, kCells> order;
    for (int i = 0; i < kCells; ++i)
      order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    int clues = kCells;
    for (int cell : order) {
      if (clues == target)
        break;
      int saved = p.puzzle[cell];
      p.puzzle[cell] = 0;
      Grid copy = p.puzzle;
      if (countSolutions(copy, 2) == 1)
        --clues;
      else
        p.puzzle[cell] = saved;
    }
    if (seen.insert(p.puzzle).second)
      out.push_back(p);
  }
  return out;
}

/// One-hot: variable (cell * 4 + digit - 1); a blank cell is all zeros.
void oneHot(const Grid &g, double *x) {
  std::fill(x, x + kVars, 0.0);
  for (int c = 0; c < kCells; ++c)
    if (g[c])
      x[c * kDigits + g[c] - 1] = 1.0;
}

//===----------------------------------------------------------------------===//
// Models
//===----------------------------------------------------------------------===//

struct Model {
  virtual ~Model() = default;
  virtual const char *name() const = 0;
  virtual int64_t numParams() const = 0;
  /// out = model(x) for B boards.
  virtual void forward(int64_t B, const double *x, double *out) = 0;
  /// Gradients of the last forward's loss from dout; one Adam step.
  virtual void backwardAndStep(const double *dout) = 0;
  /// Whether the last forward can be differentiated (OptNet: every QP
  /// solved).
  virtual bool lastForwardUsable() const { return true; }
};

CompileOptions f64() {
  CompileOptions o;
  o.precision = DType::F64;
  return o;
}

/// examples/sudoku.optim, compiled; A ~ U(0, 1) and log z0 = 0 as in
/// locuslab/optnet's OptNetEq.
struct OptNet : Model {
  Layer layer;
  std::vector<double> A, logz, dA, dlogz;
  std::vector<QPStatus> status;
  std::unique_ptr<Optimizer> opt;
  bool usable = false;

  OptNet(Compiler &compiler, const Rule &adam, const std::string &examples,
         uint64_t seed, unsigned threads, double lr) {
    layer = compiler.compileLayerFile(examples + "/sudoku.optim");
    layer.setThreads(threads);
    const LayerInfo &info = layer.info();
    if (info.n != kVars || info.weights.size() != 2)
      throw Error("examples/sudoku.optim: expected a layer of 64 variables "
                  "with weights A and log_z0");
    int64_t m = info.m;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> U(0.0, 1.0);
    A.resize(m * kVars);
    for (double &a : A)
      a = U(rng);
    logz.assign(kVars, 0.0);
    dA.resize(A.size());
    dlogz.resize(kVars);
    OptimizerOptions oo;
    oo.threads = 1;
    opt = std::make_unique<Optimizer>(
        adam,
        std::vector<Param>{{A.data(), (int64_t)A.size()},
                           {logz.data(), (int64_t)logz.size()}},
        oo);
    opt->set("lr", lr);
  }
  const char *name() const override { return "optnet"; }
  int64_t numParams() const override { return A.size() + logz.size(); }
  void forward(int64_t B, const double *x, double *out) override {
    status.assign(B, QPStatus::Solved);
    layer.forward(B, {x}, {A.data(), logz.data()}, {out}, status.data());
    usable = std::all_of(status.begin(), status.end(),
                         [](QPStatus s) { return s == QPStatus::Solved; });
  }
  bool lastForwardUsable() const override { return usable; }
  void backwardAndStep(const double *dout) override {
    std::fill(dA.begin(), dA.end(), 0.0);
    std::fill(dlogz.begin(), dlogz.end(), 0.0);
    layer.backward({dout}, {nullptr}, {dA.data(), dlogz.data()});
    opt->step({{dA.data(), (int64_t)dA.size()},
               {dlogz.data(), (int64_t)dlogz.size()}});
  }
};

/// 64 -> H (tanh) -> 64, PyTorch's default initialization
/// (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases). tanh, not
/// ReLU: at Adam's lr 0.1 every ReLU unit died within the first epoch
/// (measured: the output became the constant 1/4, loss 0.1875).
struct FC : Model {
  int64_t H, B = 0;
  std::vector<double> W1, b1, W2, b2, dW1, db1, dW2, db2;
  std::vector<double> x, hid; // saved for backward
  std::unique_ptr<Optimizer> opt;

  FC(const Rule &adam, int64_t H, uint64_t seed, double lr) : H(H) {
    std::mt19937_64 rng(seed);
    auto init = [&](std::vector<double> &v, int64_t size, int64_t fanIn) {
      double k = 1.0 / std::sqrt((double)fanIn);
      std::uniform_real_distribution<double> U(-k, k);
      v.resize(size);
      for (double &e : v)
        e = U(rng);
    };
    init(W1, H * kVars, kVars);
    init(b1, H, kVars);
    init(W2, kVars * H, H);
    init(b2, kVars, H);
    dW1.resize(W1.size());
    db1.resize(b1.size());
    dW2.resize(W2.size());
    db2.resize(b2.size());
    OptimizerOptions oo;
    oo.threads = 1;
    opt = std::make_unique<Optimizer>(
        adam,
        std::vector<Param>{{W1.data(), (int64_t)W1.size()},
                           {b1.data(), (int64_t)b1.size()},
                           {W2.data(), (int64_t)W2.size()},
                           {b2.data(), (int64_t)b2.size()}},
        oo);
    opt->set("lr", lr);
  }
  const char *name() const override { return "fc"; }
  int64_t numParams() const override {
    return W1.size() + b1.size() + W2.size() + b2.size();
  }
  void forward(int64_t batch, const double *in, double *out) override {
    B = batch;
    x.assign(in, in + B * kVars);
    hid.resize(B * H);
    for (int64_t e = 0; e < B; ++e) {
      const double *xe = &x[e * kVars];
      for (int64_t j = 0; j < H; ++j) {
        double s = b1[j];
        for (int k = 0; k < kVars; ++k)
          s += W1[j * kVars + k] * xe[k];
        hid[e * H + j] = std::tanh(s);
      }
      for (int k = 0; k < kVars; ++k) {
        double s = b2[k];
        for (int64_t j = 0; j < H; ++j)
          s += W2[k * H + j] * hid[e * H + j];
        out[e * kVars + k] = s;
      }
    }
  }
  void backwardAndStep(const double *dout) override {
    for (auto *v : {&dW1, &db1, &dW2, &db2})
      std::fill(v->begin(), v->end(), 0.0);
    std::vector<double> dh(H);
    for (int64_t e = 0; e < B; ++e) {
      const double *de = dout + e * kVars;
      std::fill(dh.begin(), dh.end(), 0.0);
      for (int k = 0; k < kVars; ++k) {
        db2[k] += de[k];
        for (int64_t j = 0; j < H; ++j) {
          dW2[k * H + j] += de[k] * hid[e * H + j];
          dh[j] += W2[k * H + j] * de[k];
        }
      }
      for (int64_t j = 0; j < H; ++j) {
        double hj = hid[e * H + j];
        dh[j] *= 1.0 - hj * hj;
        db1[j] += dh[j];
        for (int k = 0; k < kVars; ++k)
          dW1[j * kVars + k] += dh[j] * x[e * kVars + k];
      }
    }
    opt->step({{dW1.data(), (int64_t)dW1.size()},
               {db1.data(), (int64_t)db1.size()},
               {dW2.data(), (int64_t)dW2.size()},
               {db2.data(), (int64_t)db2.size()}});
  }
};

//===----------------------------------------------------------------------===//
// Training
//===----------------------------------------------------------------------===//

/// Mean squared error over B boards, its gradient (if dout) and the number
/// of boards whose every cell's largest output is the solution's digit.
double mseAndErrors(int64_t B, const double *out, const double *y, double *dout,
                    int64_t &wrongBoards) {
  double loss = 0;
  wrongBoards = 0;
  double scale = 1.0 / (double)(B * kVars);
  for (int64_t e = 0; e < B; ++e) {
    bool solved = true;
    for (int c = 0; c < kCells; ++c) {
      const double *o = out + e * kVars + c * kDigits;
      const double *t = y + e * kVars + c * kDigits;
      int best = 0;
      for (int d = 0; d < kDigits; ++d) {
        double r = o[d] - t[d];
        loss += r * r;
        if (dout)
          dout[e * kVars + c * kDigits + d] = 2.0 * r * scale;
        if (o[d] > o[best])
          best = d;
      }
      solved = solved && t[best] == 1.0;
    }
    wrongBoards += !solved;
  }
  return loss * scale;
}

struct Options {
  std::string out, examples = tools::examplesDir(OPTIM_EXAMPLES_DIR), dump,
                    models = "optnet,fc";
  int train = 9000, test = 1000, epochs = 20, batch = 150, hidden = 20;
  int stepsOnOneBatch = 0, puzzles = 10000;
  double lr = 0.1;
  uint64_t seed = 1;
  unsigned threads = 2;
  bool quiet = false;
};

const char *kUsage =
    R"(usage: optim-sudoku --out DIR [--epochs N] [--train N] [--test N]
                    [--batch N] [--lr X] [--seed N] [--threads N]
                    [--hidden N] [--models optnet,fc] [--examples DIR]
                    [--quiet]
       optim-sudoku --dump-puzzles FILE [--puzzles N] [--seed N]
       optim-sudoku --steps-on-one-batch K [--batch N] [--models ...]
OptNet's 4x4 Sudoku experiment (Amos & Kolter, 2017): trains the QP layer
of examples/sudoku.optim and a fully connected baseline on generated
puzzles and writes DIR/sudoku.csv. A valued option takes its value as
--key VALUE or --key=VALUE.

  --out DIR               folder of sudoku.csv
  --epochs N              passes over the training puzzles (default 20)
  --train N, --test N     puzzles of each set (defaults 9000, 1000)
  --batch N               puzzles per step (default 150)
  --lr X                  Adam's learning rate (default 0.1)
  --seed N                seeds the puzzles and the models (default 1)
  --threads N             threads of the QP layer (default 2)
  --hidden N              hidden units of the baseline (default 20)
  --models M              optnet, fc or optnet,fc (default optnet,fc)
  --examples DIR          folder of sudoku.optim and adam.optim
  --dump-puzzles FILE     write --puzzles puzzles (default 10000) and stop
  --steps-on-one-batch K  K steps on one batch, the loss after each
  --quiet                 no progress lines

Exit status: 0 on success, 1 on any error (a usage error included).
)";

Options parse(int argc, char **argv) {
  Options o;
  tools::ArgParser args("optim-sudoku", kUsage, argc, argv);
  while (args.next()) {
    auto integer = [&](int lo) { return int(args.integer(lo, 100000000)); };
    if (args.is("--out"))
      o.out = args.value();
    else if (args.is("--examples"))
      o.examples = args.value();
    else if (args.is("--dump-puzzles"))
      o.dump = args.value();
    else if (args.is("--models"))
      o.models = args.value();
    else if (args.is("--train"))
      o.train = integer(1);
    else if (args.is("--test"))
      o.test = integer(1);
    else if (args.is("--epochs"))
      o.epochs = integer(1);
    else if (args.is("--batch"))
      o.batch = integer(1);
    else if (args.is("--hidden"))
      o.hidden = integer(1);
    else if (args.is("--puzzles"))
      o.puzzles = integer(1);
    else if (args.is("--steps-on-one-batch"))
      o.stepsOnOneBatch = integer(1);
    else if (args.is("--seed"))
      o.seed = integer(0);
    else if (args.is("--threads"))
      o.threads = integer(1);
    else if (args.is("--lr")) {
      o.lr = args.number();
      if (!(o.lr > 0))
        args.error("--lr must be positive");
    } else if (args.is("--quiet")) {
      args.flag();
      o.quiet = true;
    } else
      args.unknown();
  }
  if (o.models != "optnet" && o.models != "fc" && o.models != "optnet,fc" &&
      o.models != "fc,optnet")
    args.error("--models: expected optnet, fc or optnet,fc; got '" +
               o.models + "'");
  if (o.dump.empty() && !o.stepsOnOneBatch && o.out.empty())
    args.error(
        "one of --out, --dump-puzzles or --steps-on-one-batch is required");
  return o;
}

double seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

std::vector<std::unique_ptr<Model>>
makeModels(const Options &o, Compiler &compiler, const Rule &adam) {
  std::vector<std::unique_ptr<Model>> models;
  if (o.models.find("optnet") != std::string::npos)
    models.push_back(std::make_unique<OptNet>(compiler, adam, o.examples,
                                              o.seed + 100, o.threads, o.lr));
  if (o.models.find("fc") != std::string::npos)
    models.push_back(std::make_unique<FC>(adam, o.hidden, o.seed + 200, o.lr));
  return models;
}

int run(const Options &o) {
  if (!o.dump.empty()) {
    std::vector<Puzzle> ps = generate(o.puzzles, o.seed);
    std::ofstream f(o.dump);
    if (!f)
      throw Error("cannot write '" + o.dump + "'");
    // One line per puzzle: its 16 cells (0 = blank), a space, the solution.
    for (const Puzzle &p : ps) {
      for (int v : p.puzzle)
        f << v;
      f << ' ';
      for (int v : p.solution)
        f << v;
      f << '\n';
    }
    return 0;
  }

  Compiler compiler(f64());
  Rule adam = compiler.compileFile(o.examples + "/adam.optim");

  if (o.stepsOnOneBatch) {
    // A tiny batch, the same every step: the loss must go down.
    std::vector<Puzzle> ps = generate(o.batch, o.seed);
    std::vector<double> x(o.batch * kVars), y(o.batch * kVars),
        out(o.batch * kVars), dout(o.batch * kVars);
    for (int e = 0; e < o.batch; ++e) {
      oneHot(ps[e].puzzle, &x[e * kVars]);
      oneHot(ps[e].solution, &y[e * kVars]);
    }
    for (auto &m : makeModels(o, compiler, adam)) {
      for (int s = 0; s <= o.stepsOnOneBatch; ++s) {
        m->forward(o.batch, x.data(), out.data());
        int64_t wrong;
        double loss =
            mseAndErrors(o.batch, out.data(), y.data(), dout.data(), wrong);
        std::printf("%s step %d loss %.9g\n", m->name(), s, loss);
        if (s == o.stepsOnOneBatch)
          break;
        if (!m->lastForwardUsable())
          throw Error("a QP of the batch was not solved");
        m->backwardAndStep(dout.data());
      }
    }
    return 0;
  }

  auto t0 = std::chrono::steady_clock::now();
  std::vector<Puzzle> ps = generate(o.train + o.test, o.seed);
  auto encode = [&](int from, int count, std::vector<double> &x,
                    std::vector<double> &y) {
    x.resize((size_t)count * kVars);
    y.resize((size_t)count * kVars);
    for (int e = 0; e < count; ++e) {
      oneHot(ps[from + e].puzzle, &x[(size_t)e * kVars]);
      oneHot(ps[from + e].solution, &y[(size_t)e * kVars]);
    }
  };
  std::vector<double> xTrain, yTrain, xTest, yTest;
  encode(0, o.train, xTrain, yTrain);
  encode(o.train, o.test, xTest, yTest);
  std::printf("optim-sudoku: %d distinct puzzles with unique solutions "
              "(seed %llu) in %.2f s: %d train, %d test\n",
              o.train + o.test, (unsigned long long)o.seed, seconds(t0),
              o.train, o.test);

  std::string csvPath = o.out + "/sudoku.csv";
  if (std::system(("mkdir -p '" + o.out + "'").c_str()) != 0)
    throw Error("cannot create '" + o.out + "'");
  std::ofstream csv(csvPath);
  if (!csv)
    throw Error("cannot write '" + csvPath + "'");
  csv << "model,epoch,train_loss,train_error,test_loss,test_error,"
         "train_seconds,test_seconds,skipped_batches\n";

  auto models = makeModels(o, compiler, adam);
  int B = o.batch;
  std::vector<double> out((size_t)B * kVars), dout((size_t)B * kVars);
  for (auto &m : models) {
    // Each model its own order: --models fc alone gives the same numbers.
    std::mt19937_64 shuffleRng(o.seed + 300);
    std::printf("optim-sudoku: %s, %lld parameters, Adam lr %g, batch %d\n",
                m->name(), (long long)m->numParams(), o.lr, B);
    auto evaluate = [&](const std::vector<double> &x,
                        const std::vector<double> &y, int count, double &loss,
                        double &error) {
      double sum = 0;
      int64_t wrongAll = 0;
      for (int from = 0; from < count; from += B) {
        int n = std::min(B, count - from);
        m->forward(n, &x[(size_t)from * kVars], out.data());
        int64_t wrong;
        sum += n * mseAndErrors(n, out.data(), &y[(size_t)from * kVars],
                                nullptr, wrong);
        wrongAll += wrong;
      }
      loss = sum / count;
      error = (double)wrongAll / count;
    };
    double l0, e0;
    auto te = std::chrono::steady_clock::now();
    evaluate(xTest, yTest, o.test, l0, e0);
    csv << m->name() << ",0,,," << l0 << ',' << e0 << ",0," << seconds(te)
        << ",0\n";
    std::printf("%s epoch 0: test loss %.5f error %.4f\n", m->name(), l0, e0);
    std::vector<int> order(o.train);
    std::vector<double> xb((size_t)B * kVars), yb((size_t)B * kVars);
    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
      for (int i = 0; i < o.train; ++i)
        order[i] = i;
      std::shuffle(order.begin(), order.end(), shuffleRng);
      auto tt = std::chrono::steady_clock::now();
      double lossSum = 0;
      int64_t wrongSum = 0, seen = 0, skipped = 0;
      for (int from = 0; from < o.train; from += B) {
        int n = std::min(B, o.train - from);
        for (int e = 0; e < n; ++e) {
          std::memcpy(&xb[(size_t)e * kVars],
                      &xTrain[(size_t)order[from + e] * kVars],
                      kVars * sizeof(double));
          std::memcpy(&yb[(size_t)e * kVars],
                      &yTrain[(size_t)order[from + e] * kVars],
                      kVars * sizeof(double));
        }
        m->forward(n, xb.data(), out.data());
        int64_t wrong;
        double loss =
            mseAndErrors(n, out.data(), yb.data(), dout.data(), wrong);
        lossSum += loss * n;
        wrongSum += wrong;
        seen += n;
        if (m->lastForwardUsable())
          m->backwardAndStep(dout.data());
        else
          ++skipped; // a QP not solved: no gradient through a non-solution
      }
      double trainSeconds = seconds(tt);
      double trainLoss = lossSum / seen, trainError = (double)wrongSum / seen;
      te = std::chrono::steady_clock::now();
      double testLoss, testError;
      evaluate(xTest, yTest, o.test, testLoss, testError);
      double testSeconds = seconds(te);
      csv << m->name() << ',' << epoch << ',' << trainLoss << ',' << trainError
          << ',' << testLoss << ',' << testError << ',' << trainSeconds << ','
          << testSeconds << ',' << skipped << '\n';
      csv.flush();
      std::printf("%s epoch %d: train loss %.5f error %.4f | test loss %.5f "
                  "error %.4f | %.1f s train, %.1f s test%s\n",
                  m->name(), epoch, trainLoss, trainError, testLoss, testError,
                  trainSeconds, testSeconds,
                  skipped ? " (batches skipped: a QP unsolved)" : "");
      std::fflush(stdout);
    }
  }
  std::printf("optim-sudoku: wrote %s\n", csvPath.c_str());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception &e) {
    tools::printToolError("optim-sudoku", e);
    return 1;
  }
}
