//===- ApiMisuseTest.cpp - wrong calls to the runtime change nothing ------===//
//
// Every public entry point of the runtime called wrongly on purpose, through
// the C++ API and the C API: null pointers, wrong, negative and huge sizes,
// wrong dtypes, unknown names, non-finite values, aliased buffers, thread
// counts that are not counts, steps before the learned weights, files of
// another rule or shape, handles used after release. Each call must fail with
// a message that says what was wrong and leave the object bitwise as it was;
// and the next correct calls must give what they give to a twin object that
// never saw the mistakes.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Compiler/optim_compiler.h"
#include "optim/Layer.h"
#include "optim/Optimizer.h"
#include "optim/QP.h"
#include "optim/Safetensors.h"
#include "optim/Trajectory.h"
#include "optim/optim.h"

#include "gtest/gtest.h"

#include <atomic>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace optim;

namespace {

std::string example(const char *name) {
  return std::string(OPTIM_EXAMPLES_DIR) + "/" + name + ".optim";
}

/// A fresh directory for the files of one test.
std::string tempDir(const char *name) {
  std::string dir = std::string(::testing::TempDir()) + "/optim-misuse-" +
                    std::to_string(::getpid()) + "-" + name;
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

/// The names in `dir`, but for . and ..
std::vector<std::string> listDir(const std::string &dir) {
  std::vector<std::string> names;
  if (DIR *d = ::opendir(dir.c_str())) {
    while (dirent *e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
        names.push_back(e->d_name);
    ::closedir(d);
  }
  return names;
}

/// Expects `fn` to throw optim::Error whose message contains `needle`.
template <typename Fn> void expectError(Fn fn, const std::string &needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing: " << needle;
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

/// Everything of an optimizer a call could change, as bytes: its
/// parameters, every state of every parameter, the step counters and the
/// hyperparameters of every group.
std::string snapshot(const Optimizer &opt,
                     const std::vector<std::vector<float> *> &params) {
  const RuleInfo &ri = opt.rule().info();
  std::string s;
  auto put = [&](const void *data, size_t bytes) {
    s.append(static_cast<const char *>(data), bytes);
  };
  for (size_t p = 0; p < params.size(); ++p) {
    put(params[p]->data(), params[p]->size() * sizeof(float));
    for (const StateSpec &st : ri.states)
      put(opt.state(p, st.name), params[p]->size() * st.size * sizeof(float));
  }
  int64_t counters[2] = {opt.stepCount(), opt.skippedSteps()};
  put(counters, sizeof counters);
  for (size_t g = 0; g < opt.numGroups(); ++g)
    for (const HyperParam &h : ri.hypers) {
      double v = opt.get(h.name, g);
      put(&v, sizeof v);
    }
  return s;
}

/// Deterministic gradients for step `t`.
std::vector<float> gradient(size_t n, int t, int salt) {
  std::vector<float> g(n);
  for (size_t i = 0; i < n; ++i)
    g[i] = std::sin(0.37f * float(i) + 1.3f * float(t) + float(salt));
  return g;
}

class MisuseTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    compiler = new Compiler();
    adam = new Rule(compiler->compileFile(example("adam")));
    l2l = new Rule(compiler->compileFile(example("l2l")));
    CompileOptions o;
    o.vjp = true;
    adamVjp = new Rule(Compiler(o).compileFile(example("adam")));
  }
  static void TearDownTestSuite() {
    delete adam;
    delete l2l;
    delete adamVjp;
    delete compiler;
  }
  static Compiler *compiler;
  static Rule *adam, *l2l, *adamVjp;
};
Compiler *MisuseTest::compiler;
Rule *MisuseTest::adam;
Rule *MisuseTest::l2l;
Rule *MisuseTest::adamVjp;

//===----------------------------------------------------------------------===//
// optim::Optimizer
//===----------------------------------------------------------------------===//

TEST_F(MisuseTest, ConstructorRefusesBadOptionsSizesAndGroups) {
  std::vector<float> a(16), b(16);
  auto withThreads = [&](unsigned threads) {
    OptimizerOptions o;
    o.threads = threads;
    Optimizer(*adam, {Param(a.data(), 16)}, o);
  };
  // A negative count converted to unsigned, and merely too many.
  expectError([&] { withThreads(UINT_MAX); },
              "optim::Optimizer: threads must be at most 1024 (0: one per "
              "hardware thread), got 4294967295");
  expectError([&] { withThreads(1025); }, "threads must be at most 1024");
  for (int64_t chunk : {int64_t(0), int64_t(-5)}) {
    OptimizerOptions o;
    o.chunkSize = chunk;
    expectError([&] { Optimizer(*adam, {Param(a.data(), 16)}, o); },
                "chunkSize must be positive, got " + std::to_string(chunk));
  }
  // Sizes whose byte counts overflow: refused before any arithmetic.
  for (int64_t huge : {INT64_MAX, int64_t(1) << 62, INT64_MAX / 4 + 1})
    expectError([&] { Optimizer(*adam, {Param(a.data(), huge)}); },
                "parameter 0 has " + std::to_string(huge) +
                    " elements, more than the address space holds");
  expectError([&] { Optimizer(*adam, {Param(a.data(), INT64_MIN)}); },
              "parameter 0 has a negative size");
  expectError([&] { Optimizer(*adam, std::vector<ParamGroup>{}); },
              "no parameter group given");
  // The same buffer twice.
  expectError(
      [&] { Optimizer(*adam, {Param(a.data(), 16), Param(a.data(), 16)}); },
      "parameter 0 and parameter 1 overlap in memory");
  for (double bad : {double(NAN), double(INFINITY), -double(INFINITY)})
    expectError(
        [&] {
          Optimizer(*adam, std::vector<ParamGroup>{ParamGroup{
                               {Param(a.data(), 16)}, {{"lr", bad}}}});
        },
        "group 0 sets 'lr' to a non-finite value");
  Rule withConst = compiler->compileSource(
      "rule r(lr = 0.5, const k = 2) { p -= lr * k * g }", "c.optim");
  expectError(
      [&] {
        Optimizer(withConst, std::vector<ParamGroup>{ParamGroup{
                                 {Param(a.data(), 16)}, {{"k", 3}}}});
      },
      "'k' is const in rule 'r'");

  // An optimizer moved from is refused, not dereferenced.
  Optimizer moved(*adam, {Param(a.data(), 16)});
  Optimizer owner = std::move(moved);
  std::vector<float> g0(16);
  expectError([&] { moved.step({Grad(g0.data(), 16)}); },
              "optim::Optimizer::step: the optimizer was moved from");
  expectError([&] { moved.set("lr", 0.1); }, "set: the optimizer was moved");
  expectError([&] { moved.save("x"); }, "save: the optimizer was moved");
  EXPECT_EQ(owner.numParams(), 1u);

  // Any thread count gives the same result, bit for bit.
  std::vector<float> g = gradient(16, 1, 0);
  OptimizerOptions three;
  three.threads = 3;
  three.chunkSize = 4;
  Optimizer one(*adam, {Param(a.data(), 16)});
  Optimizer many(*adam, {Param(b.data(), 16)}, three);
  for (int t = 0; t < 3; ++t) {
    one.step({Grad(g.data(), 16)});
    many.step({Grad(g.data(), 16)});
  }
  EXPECT_EQ(a, b);
}

TEST_F(MisuseTest, FailedStepsChangeNothingAndLaterStepsMatchATwin) {
  std::vector<float> a0(100, 0.5f), a1(7, -0.25f), b0 = a0, b1 = a1;
  Optimizer a(*adam, {Param(a0.data(), 100), Param(a1.data(), 7)});
  Optimizer b(*adam, {Param(b0.data(), 100), Param(b1.data(), 7)});
  std::vector<float> g0 = gradient(100, 1, 0), g1 = gradient(7, 1, 1);
  a.step({Grad(g0.data(), 100), Grad(g1.data(), 7)});
  b.step({Grad(g0.data(), 100), Grad(g1.data(), 7)});
  const std::string before = snapshot(a, {&a0, &a1});

  expectError([&] { a.step({}); }, "expected 2 gradients (one per "
                                   "parameter), got 0");
  expectError(
      [&] {
        a.step({Grad(g0.data(), 100), Grad(g1.data(), 7),
                Grad(g1.data(), 7)});
      },
      "expected 2 gradients (one per parameter), got 3");
  for (int64_t n : {int64_t(99), int64_t(-1), INT64_MAX, int64_t(0)})
    expectError(
        [&] { a.step({Grad(g0.data(), n), Grad(g1.data(), 7)}); },
        "gradient 0 has " + std::to_string(n) +
            " elements but its parameter has 100");
  expectError(
      [&] {
        a.step({Grad(g0.data(), 100),
                Grad(static_cast<const float *>(nullptr), 7)});
      },
      "optim::Optimizer::step: gradient 1 is a null pointer");
  std::vector<double> d(7);
  expectError([&] { a.step({Grad(g0.data(), 100), Grad(d.data(), 7)}); },
              "gradient 1 is f64, the rule is f32");
  expectError(
      [&] {
        a.step({Grad(reinterpret_cast<const float *>(
                         reinterpret_cast<const char *>(g0.data()) + 2),
                     100),
                Grad(g1.data(), 7)});
      },
      "gradient 0 is not aligned to its 4-byte elements");
  // Aliasing: a gradient in memory that the step writes.
  expectError([&] { a.step({Grad(a0.data(), 100), Grad(g1.data(), 7)}); },
              "gradient 0 overlaps parameter 0 in memory");
  expectError(
      [&] { a.step({Grad(g0.data(), 100), Grad(a0.data() + 50, 7)}); },
      "gradient 1 overlaps parameter 0 in memory");
  expectError(
      [&] { a.step({Grad(g0.data(), 100), Grad(a1.data(), 7)}); },
      "gradient 1 overlaps parameter 1 in memory");
  const float *m0 = static_cast<const float *>(a.state(0, "m"));
  const float *v0 = static_cast<const float *>(a.state(0, "v"));
  expectError([&] { a.step({Grad(m0, 100), Grad(g1.data(), 7)}); },
              "gradient 0 overlaps state 'm' of parameter 0 in memory");
  expectError([&] { a.step({Grad(g0.data(), 100), Grad(v0 + 95, 7)}); },
              "gradient 1 overlaps state 'v' of parameter 0 in memory");
  EXPECT_TRUE(snapshot(a, {&a0, &a1}) == before);

  // Gradients may share memory with each other: they are only read.
  std::vector<float> shared = gradient(100, 2, 0);
  for (int t = 2; t <= 4; ++t) {
    a.step({Grad(shared.data(), 100), Grad(shared.data() + 10, 7)});
    b.step({Grad(shared.data(), 100), Grad(shared.data() + 10, 7)});
  }
  EXPECT_TRUE(snapshot(a, {&a0, &a1}) == snapshot(b, {&b0, &b1}));
}

TEST_F(MisuseTest, BadHyperparameterCallsChangeNothing) {
  std::vector<float> a0(20, 1.0f), b0 = a0;
  Optimizer a(*adam, std::vector<ParamGroup>{
                         ParamGroup{{Param(a0.data(), 10)}, {{"lr", 0.01}}},
                         ParamGroup{{Param(a0.data() + 10, 10)}, {}}});
  Optimizer b(*adam, std::vector<ParamGroup>{
                         ParamGroup{{Param(b0.data(), 10)}, {{"lr", 0.01}}},
                         ParamGroup{{Param(b0.data() + 10, 10)}, {}}});
  std::vector<float> first(a0.begin(), a0.begin() + 10),
      second(a0.begin() + 10, a0.end());
  auto snap = [&] {
    first.assign(a0.begin(), a0.begin() + 10);
    second.assign(a0.begin() + 10, a0.end());
    return snapshot(a, {&first, &second});
  };
  const std::string before = snap();

  expectError([&] { a.set("lrate", 0.1); },
              "optim::Optimizer::set: rule 'adam' has no hyperparameter "
              "'lrate' (it has: lr, beta1, beta2, eps)");
  expectError([&] { a.set("", 0.1); }, "has no hyperparameter ''");
  for (double bad : {double(NAN), double(INFINITY), -double(INFINITY)}) {
    expectError([&] { a.set("lr", bad); }, "'lr' must be finite");
    expectError([&] { a.set(1, "beta1", bad); }, "'beta1' must be finite");
  }
  expectError([&] { a.set(2, "lr", 0.1); },
              "optim::Optimizer::set: group 2 does not exist (there are 2)");
  expectError([&] { a.set(SIZE_MAX, "lr", 0.1); }, "does not exist");
  // An unknown name in an existing group, and a NaN in a missing one.
  expectError([&] { a.set(1, "nope", 0.1); }, "has no hyperparameter 'nope'");
  expectError([&] { a.set(7, "lr", NAN); }, "group 7 does not exist");
  expectError([&] { a.get("nope"); }, "has no hyperparameter 'nope'");
  expectError([&] { a.get("lr", 2); }, "group 2 does not exist");
  expectError([&] { a.state(2, "m"); },
              "optim::Optimizer::state: parameter 2 does not exist (there "
              "are 2)");
  expectError([&] { a.state(0, "M"); }, "rule 'adam' has no state 'M'");
  EXPECT_TRUE(snap() == before);

  std::vector<float> g = gradient(10, 1, 0);
  for (Optimizer *o : {&a, &b}) {
    o->set(1, "lr", 0.05);
    for (int t = 0; t < 3; ++t)
      o->step({Grad(g.data(), 10), Grad(g.data(), 10)});
  }
  EXPECT_EQ(a0, b0);
}

/// Writes the weights of examples/l2l.optim, with `shapes` overriding the
/// rule's shapes by name and `skip` left out.
void writeL2LWeights(const RuleInfo &ri, const std::string &path, float salt,
                     std::vector<std::vector<float>> &data,
                     const std::vector<std::pair<std::string,
                                                 std::vector<int64_t>>>
                         &shapes = {},
                     const std::string &skip = "") {
  std::vector<TensorRef> tensors;
  data.clear();
  data.reserve(ri.weights.size());
  for (const WeightSpec &w : ri.weights) {
    if (w.name == skip)
      continue;
    std::vector<int64_t> shape = w.shape;
    for (const auto &[name, s] : shapes)
      if (name == w.name)
        shape = s;
    int64_t n = 1;
    for (int64_t dim : shape)
      n *= dim;
    std::vector<float> values(n);
    for (int64_t i = 0; i < n; ++i)
      values[i] = 0.2f * std::sin(salt + 0.7f * float(i));
    data.push_back(std::move(values));
    tensors.push_back({w.name, DType::F32, shape, data.back().data()});
  }
  writeSafetensors(path, tensors);
}

TEST_F(MisuseTest, LearnedRuleRefusesStepsBeforeItsWeightsAndWrongWeights) {
  const RuleInfo &ri = l2l->info();
  ASSERT_EQ(ri.weights.size(), 3u);
  std::string dir = tempDir("weights");
  std::vector<std::vector<float>> good, other, scratch;
  writeL2LWeights(ri, dir + "/good.safetensors", 1.0f, good);
  writeL2LWeights(ri, dir + "/other.safetensors", 2.0f, other);

  std::vector<float> a0(40, 0.5f), b0 = a0;
  Optimizer a(*l2l, {Param(a0.data(), 40)});
  Optimizer b(*l2l, {Param(b0.data(), 40)});
  std::vector<float> g = gradient(40, 1, 0);
  const std::string fresh = snapshot(a, {&a0});

  // No weights yet, then only some of them.
  expectError([&] { a.step({Grad(g.data(), 40)}); },
              "optim::Optimizer::step: weights 'lstm1' of rule 'l2l' are not "
              "set (setWeights)");
  a.setWeights("lstm1", good[0].data(), int64_t(good[0].size()));
  expectError([&] { a.step({Grad(g.data(), 40)}); },
              "weights 'lstm2' of rule 'l2l' are not set");
  EXPECT_TRUE(snapshot(a, {&a0}) == fresh);

  const int64_t n1 = int64_t(good[0].size());
  expectError([&] { a.setWeights("lstm3", good[0].data(), n1); },
              "rule 'l2l' has no weights 'lstm3' (it has: lstm1, lstm2, "
              "head)");
  for (int64_t n : {n1 - 1, n1 + 1, int64_t(0), int64_t(-1), INT64_MAX})
    expectError([&] { a.setWeights("lstm1", other[0].data(), n); },
                "'lstm1' needs " + std::to_string(n1) + " elements, got " +
                    std::to_string(n));
  expectError(
      [&] { a.setWeights("lstm1", static_cast<const float *>(nullptr), n1); },
      "'lstm1' is a null pointer");
  std::vector<double> wide(n1);
  expectError([&] { a.setWeights("lstm1", wide.data(), n1); },
              "'lstm1' is f64, the rule is f32");

  // Files: missing, of another shape (the first tensor valid, so that a
  // loader setting tensors one by one would be caught), missing a tensor,
  // another kind of file.
  expectError([&] { a.loadWeights(dir + "/none.safetensors"); },
              "optim::Optimizer::loadWeights: '" + dir +
                  "/none.safetensors': cannot open");
  writeL2LWeights(ri, dir + "/shape.safetensors", 3.0f, scratch,
                  {{"head", {21, 1}}});
  expectError([&] { a.loadWeights(dir + "/shape.safetensors"); },
              "tensor 'head' has shape [21,1], expected [1,21]");
  writeL2LWeights(ri, dir + "/partial.safetensors", 3.0f, scratch, {},
                  "lstm2");
  expectError([&] { a.loadWeights(dir + "/partial.safetensors"); },
              "missing tensor 'lstm2'");
  std::vector<float> w(4);
  Optimizer adamOpt(*adam, {Param(w.data(), 4)});
  adamOpt.save(dir + "/adam.safetensors");
  expectError([&] { a.loadWeights(dir + "/adam.safetensors"); },
              "missing tensor 'lstm1'");
  // Weights for a rule that has none, and a checkpoint as weights.
  expectError([&] { adamOpt.loadWeights(dir + "/good.safetensors"); },
              "rule 'adam' has no learned weights");
  expectError([&] { adamOpt.setWeights("lstm1", good[0].data(), n1); },
              "rule 'adam' has no weights 'lstm1' (it has: none)");
  // Still only lstm1 set, to the good values: the next step fails alike.
  expectError([&] { a.step({Grad(g.data(), 40)}); },
              "weights 'lstm2' of rule 'l2l' are not set");
  EXPECT_TRUE(snapshot(a, {&a0}) == fresh);

  a.loadWeights(dir + "/good.safetensors");
  for (size_t k = 0; k < ri.weights.size(); ++k)
    b.setWeights(ri.weights[k].name, good[k].data(),
                 int64_t(good[k].size()));
  a.step({Grad(g.data(), 40)});
  b.step({Grad(g.data(), 40)});
  // A failed load after the first step keeps the weights in use.
  const std::string stepped = snapshot(a, {&a0});
  expectError([&] { a.loadWeights(dir + "/shape.safetensors"); },
              "tensor 'head' has shape");
  expectError([&] { a.setWeights("head", other[2].data(), 3); },
              "'head' needs 21 elements, got 3");
  EXPECT_TRUE(snapshot(a, {&a0}) == stepped);
  for (int t = 2; t <= 3; ++t) {
    std::vector<float> gt = gradient(40, t, 0);
    a.step({Grad(gt.data(), 40)});
    b.step({Grad(gt.data(), 40)});
  }
  EXPECT_TRUE(snapshot(a, {&a0}) == snapshot(b, {&b0}));
  for (const std::string &f : listDir(dir))
    std::remove((dir + "/" + f).c_str());
  ::rmdir(dir.c_str());
}

//===----------------------------------------------------------------------===//
// Checkpoints: wrong files refused, writes atomic
//===----------------------------------------------------------------------===//

/// Sets RLIMIT_FSIZE for its lifetime: a write past `bytes` fails with EFBIG
/// (SIGXFSZ ignored), which works even for root, unlike file permissions.
class FileSizeLimit {
public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved);
    oldHandler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, oldHandler);
  }

private:
  rlimit saved;
  void (*oldHandler)(int);
};

TEST_F(MisuseTest, CheckpointWritesAreAtomicAndFailuresClear) {
  std::string dir = tempDir("ckpt");
  std::vector<float> w(1000, 1.0f), g = gradient(1000, 1, 0);
  Optimizer opt(*adam, {Param(w.data(), 1000)});
  opt.step({Grad(g.data(), 1000)});
  const std::string path = dir + "/ckpt.safetensors";
  opt.save(path);
  const std::string saved = readFile(path);
  opt.step({Grad(g.data(), 1000)}); // The next save differs.

  // A write that fails half way (the file size limit) leaves the old file.
  {
    FileSizeLimit limit(1024);
    expectError([&] { opt.save(path); },
                "optim::Optimizer::save: cannot write '" + path + ".tmp.");
  }
  EXPECT_TRUE(readFile(path) == saved);
  EXPECT_EQ(listDir(dir), std::vector<std::string>{"ckpt.safetensors"});

  // Paths that cannot be written.
  expectError(
      [&] { opt.save(dir + "/no/such/dir/ckpt"); },
      "optim::Optimizer::save: cannot create a temporary file beside '" + dir +
          "/no/such/dir/ckpt': No such file or directory");
  expectError([&] { opt.save(path + "/below-a-file"); }, "Not a directory");
  ::mkdir((dir + "/sub").c_str(), 0755);
  expectError([&] { opt.save(dir + "/sub"); },
              "optim::Optimizer::save: cannot rename");
  struct stat st;
  EXPECT_EQ(::stat((dir + "/sub").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ::rmdir((dir + "/sub").c_str());
  EXPECT_EQ(listDir(dir), std::vector<std::string>{"ckpt.safetensors"});

  // The same for writeSafetensors (learned weights, optim-train's files).
  {
    FileSizeLimit limit(1024);
    expectError(
        [&] {
          writeSafetensors(path, {{"x", DType::F32, {1000}, w.data()}});
        },
        "writeSafetensors: cannot write '" + path + ".tmp.");
  }
  EXPECT_TRUE(readFile(path) == saved);
  EXPECT_EQ(listDir(dir), std::vector<std::string>{"ckpt.safetensors"});
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

TEST_F(MisuseTest, ConcurrentSavesToOnePathLeaveOneWholeFile) {
  // Two optimizers saving to one path from two threads: each save writes
  // its own temporary file (a name shared per process once let them write
  // into one file: 27 torn checkpoints of 400, and renames that failed), so
  // every save succeeds and the file is always one of the two, whole.
  std::string dir = tempDir("race");
  const std::string path = dir + "/ckpt.safetensors";
  std::vector<float> wa(3000, 1.0f), wb(3000, 2.0f), ga = gradient(3000, 1, 0),
                                                     gb = gradient(3000, 2, 0);
  Optimizer a(*adam, {Param(wa.data(), 3000)});
  Optimizer b(*adam, {Param(wb.data(), 3000)});
  a.step({Grad(ga.data(), 3000)});
  b.step({Grad(gb.data(), 3000)});
  a.save(path);
  const std::string savedA = readFile(path);
  b.save(path);
  const std::string savedB = readFile(path);
  ASSERT_FALSE(savedA == savedB);
  std::atomic<int> failures{0};
  auto saver = [&](Optimizer &o) {
    for (int i = 0; i < 100; ++i) {
      try {
        o.save(path);
      } catch (const Error &) {
        ++failures;
      }
    }
  };
  std::thread ta(saver, std::ref(a)), tb(saver, std::ref(b));
  for (int i = 0; i < 100; ++i) {
    const std::string now = readFile(path);
    EXPECT_TRUE(now == savedA || now == savedB) << "a torn file, read " << i;
  }
  ta.join();
  tb.join();
  EXPECT_EQ(failures.load(), 0);
  const std::string last = readFile(path);
  EXPECT_TRUE(last == savedA || last == savedB);
  EXPECT_EQ(listDir(dir), std::vector<std::string>{"ckpt.safetensors"});

  // A symbolic link is followed: its target is replaced, the link kept,
  // and the target keeps its mode.
  const std::string target = dir + "/target.safetensors",
                    link = dir + "/link.safetensors";
  a.save(target);
  ::chmod(target.c_str(), 0600);
  ASSERT_EQ(::symlink("target.safetensors", link.c_str()), 0);
  b.save(link);
  struct stat st;
  ASSERT_EQ(::lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_TRUE(readFile(target) == savedB);
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  for (const std::string &f : listDir(dir))
    std::remove((dir + "/" + f).c_str());
  ::rmdir(dir.c_str());
}

TEST_F(MisuseTest, CheckpointsOfAnotherRuleOrCorruptOnesChangeNothing) {
  std::string dir = tempDir("load");
  // Same rule name, states and hyperparameters; another const value.
  Rule k2 = compiler->compileSource(
      "rule r(lr = 0.5, const k = 2) { state m = 0\n m = m + g\n p -= lr * "
      "k * m }",
      "k2.optim");
  Rule k3 = compiler->compileSource(
      "rule r(lr = 0.5, const k = 3) { state m = 0\n m = m + g\n p -= lr * "
      "k * m }",
      "k3.optim");
  std::vector<float> a(10, 1.0f), b(10, 1.0f), g = gradient(10, 1, 0);
  Optimizer two(k2, {Param(a.data(), 10)});
  Optimizer three(k3, {Param(b.data(), 10)});
  two.step({Grad(g.data(), 10)});
  two.save(dir + "/k2.safetensors");
  three.step({Grad(g.data(), 10)});
  const std::string before = snapshot(three, {&b});
  expectError([&] { three.load(dir + "/k2.safetensors"); },
              "sets the const hyperparameter 'k' to 2.0; rule 'r' has it "
              "compiled in");
  EXPECT_TRUE(snapshot(three, {&b}) == before);

  // Headers edited in place (same lengths, so the offsets stay right): a
  // tensor without its shape, a hyperparameter too large for a double.
  std::string bytes = readFile(dir + "/k2.safetensors");
  auto edited = [&](const std::string &from, const std::string &to) {
    std::string copy = bytes;
    size_t at = copy.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos)
      copy.replace(at, from.size(), to);
    std::string path = dir + "/edited.safetensors";
    std::ofstream(path, std::ios::binary) << copy;
    return path;
  };
  const std::string twoBefore = snapshot(two, {&a});
  expectError([&] { two.load(edited("\"shape\"", "\"shapf\"")); },
              "tensor 'param0.m' has no shape");
  expectError([&] { two.load(edited("[[0.5,2.0]]", "[[1e999,2]]")); },
              "corrupt hyperparameters");
  EXPECT_TRUE(snapshot(two, {&a}) == twoBefore);

  // Step counters: decimal digits only (std::stoll read "1e3" as 1 and
  // "2 junk" as 2), and below 2^63 - 1 steps past which step() would wrap.
  // The header rewritten with its new length (the data stays where it is).
  auto rewritten = [&](const std::string &from, const std::string &to) {
    uint64_t length = 0;
    for (int i = 0; i < 8; ++i)
      length |= uint64_t(uint8_t(bytes[i])) << (8 * i);
    std::string header = bytes.substr(8, length),
                data = bytes.substr(8 + length);
    size_t at = header.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos)
      header.replace(at, from.size(), to);
    while (header.size() % 8)
      header += ' ';
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i)
      out[i] = char(uint8_t(header.size() >> (8 * i)));
    std::string path = dir + "/rewritten.safetensors";
    std::ofstream(path, std::ios::binary) << out << header << data;
    return path;
  };
  for (const char *bad : {"1e3", "1.5", "0x3", "2 junk", "3abc", "-1", "+1", "",
                          "99999999999999999999"})
    expectError(
        [&] {
          two.load(rewritten("\"step\":\"1\"",
                             "\"step\":\"" + std::string(bad) + "\""));
        },
        "corrupt step counter step '" + std::string(bad) + "'");
  expectError(
      [&] { two.load(rewritten("\"skipped\":\"0\"", "\"skipped\":\"0.0\"")); },
      "corrupt step counter skipped '0.0'");
  EXPECT_TRUE(snapshot(two, {&a}) == twoBefore);
  two.load(rewritten("\"step\":\"1\"", "\"step\":\"9223372036854775807\""));
  EXPECT_EQ(two.stepCount(), INT64_MAX);
  const std::string atLimit = snapshot(two, {&a});
  expectError([&] { two.step({Grad(g.data(), 10)}); },
              "the step counter is at its limit");
  EXPECT_TRUE(snapshot(two, {&a}) == atLimit);
  two.load(dir + "/k2.safetensors");
  EXPECT_TRUE(snapshot(two, {&a}) == twoBefore);
  for (const std::string &f : listDir(dir))
    std::remove((dir + "/" + f).c_str());
  ::rmdir(dir.c_str());
}

//===----------------------------------------------------------------------===//
// optim::Trajectory
//===----------------------------------------------------------------------===//

TEST_F(MisuseTest, TrajectoryRefusesWrongCallsAndStaysAsItWas) {
  TrajectoryOptions many;
  many.threads = UINT_MAX;
  expectError([&] { Trajectory(*adamVjp, {10}, many); },
              "optim::Trajectory: threads must be at most 1024");
  expectError([&] { Trajectory(*adamVjp, {10, -1}); },
              "parameter 1 has a negative size");
  expectError([&] { Trajectory(*adamVjp, {INT64_MAX}); },
              "parameter 0 has 9223372036854775807 elements, more than the "
              "address space holds");
  // Each fits, their sum does not.
  expectError([&] { Trajectory(*adamVjp, {INT64_MAX / 6, INT64_MAX / 6}); },
              "parameter 1 has 1537228672809129301 elements, more than the "
              "address space holds");
  expectError([&] { Trajectory(*adam, {10}); },
              "rule 'adam' has no reverse mode");
  TrajectoryOptions chunk;
  chunk.chunkSize = 0;
  expectError([&] { Trajectory(*adamVjp, {10}, chunk); },
              "chunkSize must be positive");

  Trajectory moved(*adamVjp, {10});
  Trajectory owner = std::move(moved);
  expectError([&] { moved.step({nullptr}); },
              "optim::Trajectory::step: the trajectory was moved from");
  expectError([&] { moved.param(0); }, "param: the trajectory was moved");
  EXPECT_EQ(owner.numParams(), 1u);

  Trajectory a(*adamVjp, {10, 3}), b(*adamVjp, {10, 3});
  for (Trajectory *t : {&a, &b})
    for (size_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < t->paramSize(i); ++k)
        static_cast<float *>(t->param(i))[k] = 0.1f * float(k + 1);
  std::vector<float> g0 = gradient(10, 1, 0), g1 = gradient(3, 1, 1);
  a.step({g0.data(), g1.data()});
  b.step({g0.data(), g1.data()});
  auto snap = [](Trajectory &t) {
    std::string s;
    for (size_t i = 0; i < 2; ++i) {
      size_t bytes = size_t(t.paramSize(i)) * sizeof(float);
      s.append(static_cast<const char *>(t.param(i)), bytes);
      s.append(static_cast<const char *>(t.state(i, "m")), bytes);
      s.append(static_cast<const char *>(t.state(i, "v")), bytes);
    }
    s += std::to_string(t.stepCount()) + "/" + std::to_string(t.tapeLength());
    s += "/" + std::to_string(t.get("lr"));
    return s;
  };
  const std::string before = snap(a);

  expectError([&] { a.step({g0.data()}); }, "expected 2 gradients, got 1");
  expectError([&] { a.step({g0.data(), nullptr}); },
              "gradient 1 is a null pointer");
  expectError([&] { a.step({a.param(0), g1.data()}); },
              "gradient 0 overlaps the trajectory's own parameters");
  expectError([&] { a.step({g0.data(), a.param(0)}); },
              "gradient 1 overlaps the trajectory's own parameters");
  expectError([&] { a.step({g0.data(), a.state(1, "v")}); },
              "gradient 1 overlaps the trajectory's own state");
  expectError([&] { a.set("lr", NAN); }, "'lr' must be finite");
  expectError([&] { a.set("nope", 1); }, "has no hyperparameter 'nope'");
  expectError([&] { a.setWeights("lstm1", g0.data(), 10); },
              "rule 'adam' has no weights 'lstm1'");
  expectError([&] { a.loadWeights("/nonexistent.safetensors"); },
              "rule 'adam' has no learned weights");
  expectError([&] { a.param(2); }, "parameter 2 does not exist (there are 2)");
  expectError([&] { a.state(0, "q"); }, "has no state 'q'");
  expectError([&] { a.backward({}); },
              "expected 1 lists of cotangents (one per recorded step), got 0");
  expectError([&] { a.backward({{g0.data()}}); },
              "step 0 has 1 cotangents, expected one per parameter (2)");
  EXPECT_EQ(snap(a), before);

  std::vector<float> h0 = gradient(10, 2, 0), h1 = gradient(3, 2, 1);
  a.step({h0.data(), h1.data()});
  b.step({h0.data(), h1.data()});
  EXPECT_EQ(snap(a), snap(b));
  std::vector<std::vector<const void *>> cotangents = {
      {g0.data(), g1.data()}, {h0.data(), h1.data()}};
  RuleGradient ga = a.backward(cotangents), gb = b.backward(cotangents);
  EXPECT_EQ(ga.hypers, gb.hypers);
}

// The tape does not record the weights: changing them under recorded steps
// would differentiate those steps with weights they did not run with.
TEST_F(MisuseTest, TrajectoryKeepsItsWeightsWhileStepsAreRecorded) {
  CompileOptions o;
  o.vjp = true;
  Rule rule = Compiler(o).compileSource(R"(
learned rule tiny(scale = 0.1) {
  weights head = linear(in: 1, out: 1)
  state h[1] = 0
  h = h * 0.5 + g
  p += scale * head(h)
}
)",
                                        "tiny.optim");
  Trajectory t(rule, {5});
  std::vector<float> w = {0.5f, 0.1f}, w2 = {2.0f, 0.0f};
  t.setWeights("head", w.data(), 2);
  std::vector<float> g = gradient(5, 1, 0);
  t.step({g.data()});
  const char *why = "optim::Trajectory::setWeights: 1 recorded steps ran with "
                    "the current weights; call truncate() or resetState() "
                    "before changing them";
  expectError([&] { t.setWeights("head", w2.data(), 2); }, why);
  expectError([&] { t.loadWeights("/nonexistent.safetensors"); },
              "optim::Trajectory::loadWeights: 1 recorded steps");
  EXPECT_EQ(static_cast<const float *>(t.weights("head"))[0], 0.5f);
  EXPECT_EQ(t.tapeLength(), 1u);
  t.truncate();
  t.setWeights("head", w2.data(), 2);
  EXPECT_EQ(static_cast<const float *>(t.weights("head"))[0], 2.0f);
}

//===----------------------------------------------------------------------===//
// optim::Layer and optim::QPSolver
//===----------------------------------------------------------------------===//

// h = y: feasible for y >= 0 (0 <= y), primal infeasible for y < 0.
const char *kLayer = R"(
layer f(n = 2) {
  weights c[n]
  input y[1]
  output z = qp(Q: eye(n), q: c, G: zeros(1, n), h: y)
}
)";

TEST_F(MisuseTest, LayerRefusesWrongCallsAndKeepsItsLastForward) {
  CompileOptions o;
  o.precision = DType::F64;
  Layer layer = Compiler(o).compileLayerSource(kLayer, "f.optim");
  std::vector<double> c = {0.5, -1.0}, y = {1.0, 2.0, 3.0}, z(6, 7.0);
  auto forward = [&](int64_t batch) {
    layer.forward(batch, {y.data()}, {c.data()}, {z.data()});
  };
  expectError([&] { forward(0); },
              "layer 'f': the batch size must be positive, got 0");
  expectError([&] { forward(-3); }, "the batch size must be positive");
  expectError([&] { forward(INT64_MAX); },
              "layer 'f': the batch size 9223372036854775807 is too large");
  expectError([&] { layer.forward(3, {}, {c.data()}, {z.data()}); },
              "forward() takes 1 inputs, 1 weights and 1 outputs; got 0, 1 "
              "and 1");
  expectError([&] { layer.forward(3, {nullptr}, {c.data()}, {z.data()}); },
              "input 'y' is null");
  expectError([&] { layer.forward(3, {y.data()}, {c.data()}, {nullptr}); },
              "output 'z' is null");
  expectError([&] { layer.setThreads(UINT_MAX); },
              "threads must be at most 1024");
  expectError([&] { layer.backward({z.data()}, {nullptr}, {nullptr}); },
              "layer 'f': backward() needs a forward() first");
  // Outputs in the inputs or weights, which backward() reads again.
  std::vector<double> both(6, 1.0);
  expectError(
      [&] { layer.forward(3, {both.data()}, {c.data()}, {both.data()}); },
      "layer 'f': output 'z' overlaps input 'y' in memory");
  expectError(
      [&] { layer.forward(3, {y.data()}, {both.data()}, {both.data() + 1}); },
      "output 'z' overlaps weights 'c' in memory");
  y[1] = NAN;
  expectError([&] { forward(3); },
              "input 'y' has a non-finite value (nan) at batch element 1");
  y[1] = 2.0;
  EXPECT_EQ(z, std::vector<double>(6, 7.0));

  forward(3);
  const std::vector<double> z1 = z;
  std::vector<double> dz = {1, 2, 3, 4, 5, 6}, dy(3), dc(2);
  layer.backward({dz.data()}, {dy.data()}, {dc.data()});
  const std::vector<double> dc1 = dc, dy1 = dy;
  // Gradients written over what the vjp reads, or over each other.
  expectError([&] { layer.backward({dz.data()}, {y.data()}, {dc.data()}); },
              "the gradient of input 'y' overlaps input 'y' in memory");
  expectError([&] { layer.backward({dz.data()}, {dy.data()}, {c.data()}); },
              "the gradient of weights 'c' overlaps weights 'c' in memory");
  expectError(
      [&] { layer.backward({dz.data()}, {dy.data()}, {dy.data() + 1}); },
      "the gradient of weights 'c' overlaps the gradient of input 'y'");
  EXPECT_EQ(y, (std::vector<double>{1.0, 2.0, 3.0}));
  EXPECT_EQ(c, (std::vector<double>{0.5, -1.0}));

  // An infeasible problem without a status array: an error, the outputs
  // untouched, and the last forward still the one backward() uses.
  std::vector<double> bad = {1.0, -1.0, 3.0};
  expectError(
      [&] { layer.forward(3, {bad.data()}, {c.data()}, {z.data()}); },
      "layer 'f': qp: problem 1 of the batch is primal infeasible");
  EXPECT_EQ(z, z1);
  expectError([&] { layer.backward({}, {dy.data()}, {dc.data()}); },
              "backward() takes 1 output gradients, 1 input gradients and 1 "
              "weight gradients");
  // A NaN incoming gradient, named as the layer's output (the solver's own
  // check said "dz").
  dz[4] = NAN;
  expectError([&] { layer.backward({dz.data()}, {dy.data()}, {dc.data()}); },
              "layer 'f': the gradient of output 'z' has a non-finite value "
              "(nan) at batch element 2, flat index 0");
  dz[4] = 5;
  std::fill(dc.begin(), dc.end(), 0.0);
  std::fill(dy.begin(), dy.end(), 0.0);
  layer.backward({dz.data()}, {dy.data()}, {dc.data()});
  EXPECT_EQ(dc, dc1);
  EXPECT_EQ(dy, dy1);
  // setThreads drops the last forward: backward() says so (it said "needs a
  // forward() whose problems were all solved", found by a blind tester).
  layer.setThreads(2);
  expectError([&] { layer.backward({dz.data()}, {dy.data()}, {dc.data()}); },
              "layer 'f': setThreads() dropped the last forward(); run "
              "forward() again before backward()");

  QPOptions qo;
  qo.threads = UINT_MAX;
  expectError([&] { QPSolver solver(qo); },
              "qp: threads must be at most 1024");
}

//===----------------------------------------------------------------------===//
// The C API
//===----------------------------------------------------------------------===//

/// Expects status `want` and a last error containing `needle`.
void expectStatus(optim_status got, optim_status want,
                  const std::string &needle) {
  EXPECT_EQ(got, want) << optim_status_name(got) << ": " << optim_last_error();
  EXPECT_NE(std::string(optim_last_error()).find(needle), std::string::npos)
      << "message: " << optim_last_error() << "\nexpected: " << needle;
}

TEST(CApiMisuse, HandlesAreCheckedAndDoubleReleasesRefused) {
  optim_rule *rule = nullptr;
  std::string path = example("adam");
  ASSERT_EQ(optim_compile_file(path.c_str(), nullptr, 0, &rule), OPTIM_OK)
      << optim_last_error();
  optim_rule *untouched = reinterpret_cast<optim_rule *>(0x1234);
  expectStatus(optim_compile_file(nullptr, nullptr, 0, &untouched),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "optim_compile_file: path is NULL");
  expectStatus(optim_compile_file("", nullptr, 0, &untouched),
               OPTIM_ERROR_INVALID_ARGUMENT, "path is empty");
  expectStatus(optim_compile_source(nullptr, nullptr, nullptr, 0, &untouched),
               OPTIM_ERROR_INVALID_ARGUMENT, "source is NULL");
  expectStatus(optim_compile_file(path.c_str(), "nope", 0, &untouched),
               OPTIM_ERROR_COMPILE, "nope");
  EXPECT_EQ(untouched, reinterpret_cast<optim_rule *>(0x1234));

  float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, g[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  float *params[1] = {w};
  int64_t sizes[1] = {8};
  optim_options options;
  ASSERT_EQ(optim_options_init(&options), OPTIM_OK);
  optim_optimizer *opt = reinterpret_cast<optim_optimizer *>(0x5678);
  options.threads = UINT32_MAX; // threads = -1 from a careless binding
  expectStatus(optim_optimizer_create_f32(rule, params, sizes, 1, &options,
                                          &opt),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "threads must be at most 1024 (0: one per hardware thread), "
               "got 4294967295");
  options.threads = 0;
  int64_t huge[1] = {INT64_MAX};
  expectStatus(
      optim_optimizer_create_f32(rule, params, huge, 1, &options, &opt),
      OPTIM_ERROR_INVALID_ARGUMENT, "more than the address space holds");
  float *twice[2] = {w, w};
  int64_t twiceSizes[2] = {8, 8};
  expectStatus(optim_optimizer_create_f32(rule, twice, twiceSizes, 2,
                                          &options, &opt),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "parameter 0 and parameter 1 overlap in memory");
  expectStatus(
      optim_optimizer_create_f32(rule, nullptr, sizes, 1, &options, &opt),
      OPTIM_ERROR_INVALID_ARGUMENT, "params is NULL but numParams is not 0");
  EXPECT_EQ(opt, reinterpret_cast<optim_optimizer *>(0x5678));
  ASSERT_EQ(optim_optimizer_create_f32(rule, params, sizes, 1, &options, &opt),
            OPTIM_OK);

  // Aliased gradients.
  const float *grads[1] = {w};
  expectStatus(optim_optimizer_step_f32(opt, grads, sizes, 1, nullptr),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "gradient 0 overlaps parameter 0 in memory");
  const void *m = nullptr;
  ASSERT_EQ(optim_optimizer_state(opt, 0, "m", &m, nullptr), OPTIM_OK);
  grads[0] = static_cast<const float *>(m);
  expectStatus(optim_optimizer_step_f32(opt, grads, sizes, 1, nullptr),
               OPTIM_ERROR_INVALID_ARGUMENT, "overlaps state 'm'");
  double value = 42;
  expectStatus(optim_optimizer_set(opt, "lr", NAN),
               OPTIM_ERROR_INVALID_ARGUMENT, "'lr' must be finite");
  expectStatus(optim_optimizer_set(opt, "lrr", 0.1), OPTIM_ERROR_NOT_FOUND,
               "has no hyperparameter 'lrr'");
  expectStatus(optim_optimizer_set(opt, nullptr, 0.1),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "optim_optimizer_set: name is NULL");
  expectStatus(optim_optimizer_get(opt, 1, "lr", &value),
               OPTIM_ERROR_NOT_FOUND, "group 1 does not exist");
  EXPECT_EQ(value, 42);
  expectStatus(optim_optimizer_load_weights(opt, "x.safetensors"),
               OPTIM_ERROR_NOT_FOUND, "rule 'adam' has no learned weights");

  // The rule an optimizer lends is not the caller's to release.
  const optim_rule *lent = nullptr;
  ASSERT_EQ(optim_optimizer_rule(opt, &lent), OPTIM_OK);
  expectStatus(optim_rule_release(const_cast<optim_rule *>(lent)),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "rule belongs to its optimizer (optim_optimizer_rule lent it)");
  const char *name = nullptr;
  ASSERT_EQ(optim_rule_name(lent, &name), OPTIM_OK);
  EXPECT_STREQ(name, "adam");

  // After all that, the optimizer steps as a fresh one does.
  float twin[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  float *twinParams[1] = {twin};
  optim_optimizer *other = nullptr;
  ASSERT_EQ(optim_optimizer_create_f32(rule, twinParams, sizes, 1, nullptr,
                                       &other),
            OPTIM_OK);
  const float *good[1] = {g};
  for (int t = 0; t < 3; ++t) {
    ASSERT_EQ(optim_optimizer_step_f32(opt, good, sizes, 1, nullptr), OPTIM_OK);
    ASSERT_EQ(optim_optimizer_step_f32(other, good, sizes, 1, nullptr),
              OPTIM_OK);
  }
  EXPECT_EQ(0, std::memcmp(w, twin, sizeof w));

  // Released handles: every use and a second release are refused.
  ASSERT_EQ(optim_optimizer_release(other), OPTIM_OK);
  expectStatus(optim_optimizer_release(other), OPTIM_ERROR_INVALID_ARGUMENT,
               "optim_optimizer_release: opt is not a live optimizer handle "
               "(released twice?)");
  expectStatus(optim_optimizer_step_f32(other, good, sizes, 1, nullptr),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "optim_optimizer_step_f32: opt is not a live optimizer handle");
  int64_t count = -7;
  expectStatus(optim_optimizer_step_count(other, &count),
               OPTIM_ERROR_INVALID_ARGUMENT, "not a live optimizer handle");
  EXPECT_EQ(count, -7);
  ASSERT_EQ(optim_optimizer_release(opt), OPTIM_OK);
  expectStatus(optim_rule_name(lent, &name), OPTIM_ERROR_INVALID_ARGUMENT,
               "optim_rule_name: rule is not a live rule handle");
  // The caller's own rule outlives the optimizers.
  ASSERT_EQ(optim_rule_name(rule, &name), OPTIM_OK);
  ASSERT_EQ(optim_rule_release(rule), OPTIM_OK);
  expectStatus(optim_rule_release(rule), OPTIM_ERROR_INVALID_ARGUMENT,
               "optim_rule_release: rule is not a live rule handle (released "
               "twice?)");
  size_t n = 99;
  expectStatus(optim_rule_num_hypers(rule, &n), OPTIM_ERROR_INVALID_ARGUMENT,
               "not a live rule handle");
  EXPECT_EQ(n, 99u);
  // A pointer that never was a handle.
  int notAHandle = 0;
  expectStatus(optim_optimizer_release(
                   reinterpret_cast<optim_optimizer *>(&notAHandle)),
               OPTIM_ERROR_INVALID_ARGUMENT, "not a live optimizer handle");
  EXPECT_EQ(optim_rule_release(nullptr), OPTIM_OK);
  EXPECT_EQ(optim_optimizer_release(nullptr), OPTIM_OK);
  EXPECT_STREQ(optim_status_name(static_cast<optim_status>(99)),
               "OPTIM_ERROR_UNKNOWN_STATUS");
}

TEST(CApiMisuse, LayerHandlesAndArgumentsAreChecked) {
  const char *source = "layer proj(n = 3) {\n"
                       "  weights c[n]\n"
                       "  input y[n]\n"
                       "  output z, nu, lam = qp(Q: eye(n), q: c - y, "
                       "G: -eye(n), h: zeros(n))\n"
                       "}\n";
  optim_layer *layer = nullptr;
  expectStatus(optim_compile_layer_source(source, "p.optim", nullptr,
                                          OPTIM_COMPILE_REVERSE, &layer),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "a layer takes only OPTIM_COMPILE_F64");
  expectStatus(optim_compile_layer_source(source, "p.optim", nullptr,
                                          OPTIM_COMPILE_F64, nullptr),
               OPTIM_ERROR_INVALID_ARGUMENT, "out is NULL");
  expectStatus(optim_compile_layer_file(nullptr, nullptr, 0, &layer),
               OPTIM_ERROR_INVALID_ARGUMENT, "path is NULL");
  expectStatus(optim_compile_layer_source("layer l(n = 2) {\n}\n", "e.optim",
                                          nullptr, 0, &layer),
               OPTIM_ERROR_COMPILE, "e.optim:1:7: error:");
  ASSERT_EQ(optim_compile_layer_source(source, "p.optim", nullptr,
                                       OPTIM_COMPILE_F64, &layer),
            OPTIM_OK)
      << optim_last_error();
  const char *name = nullptr;
  ASSERT_EQ(optim_layer_name(layer, &name), OPTIM_OK);
  EXPECT_STREQ(name, "proj");
  size_t count = 0;
  ASSERT_EQ(optim_layer_num_tensors(layer, OPTIM_LAYER_OUTPUT, &count),
            OPTIM_OK);
  EXPECT_EQ(count, 3u);
  optim_layer_tensor_info info{};
  ASSERT_EQ(optim_layer_tensor(layer, OPTIM_LAYER_OUTPUT, 2, &info), OPTIM_OK);
  EXPECT_STREQ(info.name, "lam");
  EXPECT_EQ(info.output_kind, 2);
  EXPECT_EQ(info.size, 3);
  expectStatus(optim_layer_tensor(layer, OPTIM_LAYER_INPUT, 1, &info),
               OPTIM_ERROR_NOT_FOUND, "index 1 is out of range");
  expectStatus(
      optim_layer_num_tensors(layer, optim_layer_tensor_kind(7), &count),
      OPTIM_ERROR_INVALID_ARGUMENT, "kind 7 is not OPTIM_LAYER_INPUT");

  std::vector<double> y = {1, 2, 3, 4, 5, 6}, c = {0.5, -1, 2}, z(6), nu,
                      lam(6), dz(6, 1.0), dy(6), dc(3);
  const void *ins[] = {y.data()}, *ws[] = {c.data()};
  void *outs[] = {z.data(), nu.data(), lam.data()};
  expectStatus(optim_layer_forward(layer, 2, ins, 1, ws, 1, outs, 2, nullptr),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "optim_layer_forward: the layer has 3 outputs, got 2");
  expectStatus(
      optim_layer_forward(layer, 2, nullptr, 1, ws, 1, outs, 3, nullptr),
      OPTIM_ERROR_INVALID_ARGUMENT, "the array of inputs is NULL");
  expectStatus(optim_layer_forward(layer, 0, ins, 1, ws, 1, outs, 3, nullptr),
               OPTIM_ERROR_INVALID_ARGUMENT, "the batch size must be positive");
  const void *douts[] = {dz.data(), nullptr, nullptr};
  void *dins[] = {dy.data()}, *dws[] = {dc.data()};
  expectStatus(optim_layer_backward(layer, douts, 3, dins, 1, dws, 1),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "backward() needs a forward() first");
  int32_t status[2] = {-1, -1};
  ASSERT_EQ(optim_layer_forward(layer, 2, ins, 1, ws, 1, outs, 3, status),
            OPTIM_OK)
      << optim_last_error();
  EXPECT_EQ(status[0], 0);
  EXPECT_EQ(status[1], 0);
  // z = max(y - c, 0) for the projection onto z >= 0.
  EXPECT_EQ(z, (std::vector<double>{0.5, 3, 1, 3.5, 6, 4}));
  ASSERT_EQ(optim_layer_backward(layer, douts, 3, dins, 1, dws, 1), OPTIM_OK)
      << optim_last_error();
  EXPECT_EQ(dy, (std::vector<double>{1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(dc, (std::vector<double>{-2, -2, -2}));
  expectStatus(optim_layer_set_threads(layer, 2000),
               OPTIM_ERROR_INVALID_ARGUMENT, "at most 1024");

  ASSERT_EQ(optim_layer_release(layer), OPTIM_OK);
  expectStatus(optim_layer_release(layer), OPTIM_ERROR_INVALID_ARGUMENT,
               "layer is not a live layer handle (released already?)");
  expectStatus(optim_layer_name(layer, &name), OPTIM_ERROR_INVALID_ARGUMENT,
               "not a live layer handle");
  EXPECT_EQ(optim_layer_release(nullptr), OPTIM_OK);
  // A rule handle is not a layer handle.
  optim_rule *rule = nullptr;
  std::string path = example("sgd");
  ASSERT_EQ(optim_compile_file(path.c_str(), nullptr, 0, &rule), OPTIM_OK);
  expectStatus(optim_layer_name(reinterpret_cast<optim_layer *>(rule), &name),
               OPTIM_ERROR_INVALID_ARGUMENT, "not a live layer handle");
  optim_rule_release(rule);
}

TEST(CApiMisuse, TrajectoryHandlesAndArgumentsAreChecked) {
  optim_rule *plain = nullptr, *rule = nullptr;
  std::string path = example("adam");
  ASSERT_EQ(optim_compile_file(path.c_str(), nullptr, 0, &plain), OPTIM_OK);
  expectStatus(optim_compile_file_flags(path.c_str(), nullptr, 4, &rule),
               OPTIM_ERROR_INVALID_ARGUMENT, "flags has unknown bits (4)");
  ASSERT_EQ(optim_compile_file_flags(path.c_str(), nullptr,
                                     OPTIM_COMPILE_REVERSE, &rule),
            OPTIM_OK)
      << optim_last_error();
  int64_t sizes[2] = {5, 3};
  optim_trajectory *traj = reinterpret_cast<optim_trajectory *>(0x42);
  expectStatus(
      optim_trajectory_create(plain, sizes, 2, nullptr, nullptr, &traj),
      OPTIM_ERROR_INVALID_ARGUMENT,
      "compiled without its reverse mode; compile it with "
      "OPTIM_COMPILE_REVERSE");
  optim_options options;
  ASSERT_EQ(optim_options_init(&options), OPTIM_OK);
  options.skip_non_finite = 1;
  expectStatus(
      optim_trajectory_create(rule, sizes, 2, nullptr, &options, &traj),
      OPTIM_ERROR_INVALID_ARGUMENT,
      "skip_non_finite does not apply to a trajectory");
  expectStatus(
      optim_trajectory_create(rule, nullptr, 2, nullptr, nullptr, &traj),
      OPTIM_ERROR_INVALID_ARGUMENT, "sizes is NULL");
  EXPECT_EQ(traj, reinterpret_cast<optim_trajectory *>(0x42));
  int64_t dims[1] = {5};
  optim_shape garbage[2] = {{dims, size_t(1) << 28}, {nullptr, 0}};
  expectStatus(optim_trajectory_create(rule, sizes, 2, garbage, nullptr, &traj),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "shape of parameter 0 has 268435456 dimensions, more than 64");
  ASSERT_EQ(optim_trajectory_create(rule, sizes, 2, nullptr, nullptr, &traj),
            OPTIM_OK)
      << optim_last_error();
  expectStatus(optim_trajectory_set(traj, "lr", NAN),
               OPTIM_ERROR_INVALID_ARGUMENT, "'lr' must be finite");

  void *theta = nullptr;
  int64_t count = 0;
  ASSERT_EQ(optim_trajectory_param(traj, 1, &theta, &count), OPTIM_OK);
  EXPECT_EQ(count, 3);
  expectStatus(optim_trajectory_param(traj, 2, &theta, &count),
               OPTIM_ERROR_NOT_FOUND, "");
  float g0[5] = {1, 2, 3, 4, 5}, g1[3] = {1, 1, 1};
  const float *grads[2] = {g0, g1};
  const double *wrongType[2] = {nullptr, nullptr};
  expectStatus(optim_trajectory_step_f64(traj, wrongType, sizes, 2, nullptr, 0),
               OPTIM_ERROR_INVALID_ARGUMENT, "steps f32 parameters");
  int64_t shortSizes[2] = {5, 2};
  expectStatus(
      optim_trajectory_step_f32(traj, grads, shortSizes, 2, nullptr, 0),
      OPTIM_ERROR_INVALID_ARGUMENT,
      "gradient 1 has 2 elements, parameter 1 has 3");
  const float *aliased[2] = {g0, static_cast<const float *>(theta)};
  expectStatus(optim_trajectory_step_f32(traj, aliased, sizes, 2, nullptr, 0),
               OPTIM_ERROR_INVALID_ARGUMENT, "");
  size_t tape = 9;
  ASSERT_EQ(optim_trajectory_tape_length(traj, &tape), OPTIM_OK);
  EXPECT_EQ(tape, 0u);
  double dlr = 7;
  expectStatus(optim_trajectory_hyper_gradient(traj, "lr", &dlr),
               OPTIM_ERROR_INVALID_ARGUMENT, "no backward pass has run yet");
  ASSERT_EQ(optim_trajectory_step_f32(traj, grads, sizes, 2, nullptr, 0),
            OPTIM_OK);
  const float *dl[2] = {g0, nullptr};
  expectStatus(optim_trajectory_backward_f32(traj, dl, 1),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "give tape_length * num_params = 2 pointers");
  ASSERT_EQ(optim_trajectory_backward_f32(traj, dl, 2), OPTIM_OK);
  // The adjoints backward writes are no cotangents to read.
  const void *adj = nullptr;
  ASSERT_EQ(optim_trajectory_param_adjoint(traj, 0, &adj, &count), OPTIM_OK);
  const float *fromAdjoint[2] = {static_cast<const float *>(adj), nullptr};
  expectStatus(optim_trajectory_backward_f32(traj, fromAdjoint, 2),
               OPTIM_ERROR_INVALID_ARGUMENT,
               "lies in the trajectory's own adjoints");
  ASSERT_EQ(optim_trajectory_hyper_gradient(traj, "lr", &dlr), OPTIM_OK);
  EXPECT_TRUE(std::isfinite(dlr) && dlr != 0) << dlr;
  expectStatus(optim_trajectory_hyper_gradient(traj, "lrr", &dlr),
               OPTIM_ERROR_NOT_FOUND, "has no hyperparameter 'lrr'");
  const double *wg = nullptr;
  expectStatus(optim_trajectory_weights_gradient(traj, "w", &wg, &count),
               OPTIM_ERROR_NOT_FOUND, "has no weights 'w'");

  ASSERT_EQ(optim_trajectory_release(traj), OPTIM_OK);
  expectStatus(optim_trajectory_release(traj), OPTIM_ERROR_INVALID_ARGUMENT,
               "not a live trajectory handle (released twice?)");
  expectStatus(optim_trajectory_tape_length(traj, &tape),
               OPTIM_ERROR_INVALID_ARGUMENT, "not a live trajectory handle");
  EXPECT_EQ(optim_trajectory_release(nullptr), OPTIM_OK);
  ASSERT_EQ(optim_rule_release(rule), OPTIM_OK);
  ASSERT_EQ(optim_rule_release(plain), OPTIM_OK);
}

TEST(CApiMisuse, LearnedRuleStepsAndWeightsRefusedChangeNothing) {
  optim_rule *rule = nullptr;
  std::string path = example("l2l");
  ASSERT_EQ(optim_compile_file(path.c_str(), nullptr, 0, &rule), OPTIM_OK)
      << optim_last_error();
  float w[4] = {1, 2, 3, 4}, g[4] = {0.1f, -0.2f, 0.3f, -0.4f};
  float *params[1] = {w};
  int64_t sizes[1] = {4};
  optim_optimizer *opt = nullptr;
  ASSERT_EQ(optim_optimizer_create_f32(rule, params, sizes, 1, nullptr, &opt),
            OPTIM_OK);
  const float *grads[1] = {g};
  int stepped = 5;
  expectStatus(optim_optimizer_step_f32(opt, grads, sizes, 1, &stepped),
               OPTIM_ERROR_INVALID_ARGUMENT, "weights 'lstm1' of rule 'l2l' "
                                             "are not set");
  EXPECT_EQ(stepped, 5);
  float data[4] = {};
  expectStatus(optim_optimizer_set_weights_f32(opt, "lstm9", data, 4),
               OPTIM_ERROR_NOT_FOUND, "has no weights 'lstm9'");
  expectStatus(optim_optimizer_set_weights_f32(opt, "head", data, 4),
               OPTIM_ERROR_INVALID_ARGUMENT, "'head' needs 21 elements, got 4");
  expectStatus(optim_optimizer_set_weights_f32(opt, "head", nullptr, 21),
               OPTIM_ERROR_INVALID_ARGUMENT, "data is NULL but count is not 0");
  double wide[21] = {};
  expectStatus(optim_optimizer_set_weights_f64(opt, "head", wide, 21),
               OPTIM_ERROR_INVALID_ARGUMENT, "'head' is f64, the rule is f32");
  expectStatus(optim_optimizer_load_weights(opt, "/nonexistent.safetensors"),
               OPTIM_ERROR_IO, "cannot open");
  int64_t steps = -1;
  ASSERT_EQ(optim_optimizer_step_count(opt, &steps), OPTIM_OK);
  EXPECT_EQ(steps, 0);
  const float expected[4] = {1, 2, 3, 4};
  EXPECT_EQ(0, std::memcmp(w, expected, sizeof w));
  EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK);
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

TEST(QPSolverMisuse, MovedFromNullStatusAndBadDTypeAreErrors) {
  // A moved-from solver throws like a moved-from Optimizer (it crashed),
  // requireSolved checks its pointer, and a dtype outside the enum is
  // refused (it was read as float32 data).
  double Q[4] = {1, 0, 0, 1}, q[2] = {1, 1}, z[2] = {7, 7};
  QPProblem pb;
  pb.dtype = DType::F64;
  pb.Q = {Q, {2, 2}};
  pb.q = {q, {2}};
  QPStatus st = QPStatus::NumericalError;
  QPSolver solver;
  QPSolver other(std::move(solver));
  expectError(
      [&] {
        solver.forward(pb, {z, nullptr, nullptr, &st});
      },
      "forward: the QP solver was moved from");
  expectError([&] { solver.backward(pb, {}); },
              "backward: the QP solver was moved from");
  expectError([&] { (void)solver.dims(); },
              "dims: the QP solver was moved from");
  expectError([&] { QPSolver::requireSolved(nullptr, 1); },
              "requireSolved: status is null");
  pb.dtype = DType(5);
  expectError(
      [&] {
        other.forward(pb, {z, nullptr, nullptr, &st});
      },
      "dtype must be F32 or F64, got 5");
  EXPECT_EQ(z[0], 7);
  pb.dtype = DType::F64;
  other.forward(pb, {z, nullptr, nullptr, &st});
  EXPECT_EQ(st, QPStatus::Solved);
}

TEST(CApiMisuse, QPSolverHandlesAreCheckedAndFailuresExplained) {
  EXPECT_EQ(optim_qp_create(0, 100, INT32_MAX), nullptr);
  EXPECT_NE(std::string(optim_qp_error(nullptr))
                .find("qp: threads must be at most 1024"),
            std::string::npos)
      << optim_qp_error(nullptr);
  EXPECT_EQ(optim_qp_create(0, -1, 1), nullptr);
  EXPECT_STREQ(optim_qp_error(nullptr), "qp: max_iter must be >= 0");
  EXPECT_EQ(optim_qp_create(NAN, 10, 1), nullptr);
  EXPECT_STREQ(optim_qp_error(nullptr), "qp: tol is NaN");

  optim_qp_solver *solver = optim_qp_create(0, 100, 1);
  ASSERT_NE(solver, nullptr);
  int32_t status = -1;
  double z[2] = {7, 7};
  EXPECT_EQ(optim_qp_forward(solver, nullptr, z, nullptr, nullptr, &status,
                             nullptr),
            -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: problem and status must not be NULL");
  // minimize 1/2 |z|^2 + z_0 + z_1: z = -1.
  double q[2] = {1, 1};
  optim_qp_problem problem = {};
  problem.dtype = OPTIM_QP_F64;
  problem.batch = 1;
  problem.n = 2;
  problem.q = q;
  ASSERT_EQ(optim_qp_backward(solver, &problem, z, nullptr, nullptr, nullptr,
                              nullptr, nullptr, nullptr, nullptr, nullptr),
            -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: backward() called before forward()");
  problem.n = -2;
  EXPECT_EQ(optim_qp_forward(solver, &problem, z, nullptr, nullptr, &status,
                             nullptr),
            -1);
  EXPECT_STREQ(optim_qp_error(solver), "qp: negative dimension");
  EXPECT_EQ(z[0], 7);
  EXPECT_EQ(status, -1);
  problem.n = 2;
  ASSERT_EQ(optim_qp_forward(solver, &problem, z, nullptr, nullptr, &status,
                             nullptr),
            0)
      << optim_qp_error(solver);
  EXPECT_NEAR(z[0], -1, 1e-8);

  // Flags the ABI does not define, and constraints given for m = 0 or
  // p = 0, are refused (they were ignored).
  problem.batched = 64;
  EXPECT_EQ(
      optim_qp_forward(solver, &problem, z, nullptr, nullptr, &status, nullptr),
      -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: batched has unknown bits (64); only the "
               "OPTIM_QP_BATCHED_* flags");
  problem.batched = 0;
  double A[2] = {1, 1}, b[1] = {0};
  problem.A = A;
  problem.b = b;
  EXPECT_EQ(
      optim_qp_forward(solver, &problem, z, nullptr, nullptr, &status, nullptr),
      -1);
  EXPECT_STREQ(optim_qp_error(solver), "qp: A or b is given but m = 0");
  problem.A = problem.b = nullptr;

  // With Q = I (the problem above, without Q, is unbounded: z is its
  // direction): the solution over the operand q, and a misaligned z.
  double Q[4] = {1, 0, 0, 1};
  problem.Q = Q;
  EXPECT_EQ(
      optim_qp_forward(solver, &problem, q, nullptr, nullptr, &status, nullptr),
      -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: forward: z overlaps q (each output needs its own memory)");
  EXPECT_EQ(q[0], 1);
  alignas(8) unsigned char raw[40] = {};
  EXPECT_EQ(optim_qp_forward(solver, &problem, raw + 4, nullptr, nullptr,
                             &status, nullptr),
            -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: forward: z is not aligned to its 8-byte elements");
  ASSERT_EQ(
      optim_qp_forward(solver, &problem, z, nullptr, nullptr, &status, nullptr),
      0);
  // Backward: dq written over q; a NaN incoming gradient.
  double dz[2] = {1, 1}, dq[2] = {5, 5};
  EXPECT_EQ(optim_qp_backward(solver, &problem, dz, nullptr, nullptr, nullptr,
                              q, nullptr, nullptr, nullptr, nullptr),
            -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: backward: dq overlaps q (each output needs its own "
               "memory)");
  EXPECT_EQ(q[0], 1);
  dz[1] = NAN;
  EXPECT_EQ(optim_qp_backward(solver, &problem, dz, nullptr, nullptr, nullptr,
                              dq, nullptr, nullptr, nullptr, nullptr),
            -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: dz has a non-finite value (nan) at batch element 0, flat "
               "index 1");
  EXPECT_EQ(dq[0], 5);
  dz[1] = 1;
  ASSERT_EQ(optim_qp_backward(solver, &problem, dz, nullptr, nullptr, nullptr,
                              dq, nullptr, nullptr, nullptr, nullptr),
            0)
      << optim_qp_error(solver);
  EXPECT_NEAR(dq[0], -1, 1e-8);

  optim_qp_destroy(solver);
  optim_qp_destroy(solver); // Refused, not a double free.
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: not a live solver (destroyed already?)");
  EXPECT_EQ(optim_qp_forward(solver, &problem, z, nullptr, nullptr, &status,
                             nullptr),
            -1);
  EXPECT_STREQ(optim_qp_error(solver),
               "qp: not a live solver (destroyed already?)");
  optim_qp_destroy(nullptr);
}

} // namespace
