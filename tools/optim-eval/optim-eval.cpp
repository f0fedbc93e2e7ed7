//===- optim-eval.cpp - optimizers compared over many random inits -------===//
//
// The evaluation of Andrychowicz et al. (2016), section 3: each rule trains
// the same task from K fresh random optimizee initializations (seeds), and
// the tool reports the mean and spread of the final held-out loss and of
// the meta-objective sum_{t=1..N} f(theta_t). A rule given a --grid has its
// learning rate tuned first, on seeds disjoint from the evaluation seeds, by
// the mean of --metric over them; a learned rule runs with its weights.
//
// Runs are independent, so they are spread over threads (the per-step work
// of these small models is too little to split); each result depends only
// on its rule, learning rate and seed, and every sum is taken in a fixed
// order afterwards, so the output is identical for any --jobs.
//
// Compiled with exceptions: the compiler, runtime and task APIs report
// errors with optim::Error.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"
#include "optim/Tasks/Task.h"

#include "InputFlags.h"
#include "RepeatedOptions.h"
#include "ToolSupport.h"
#include "TrainedSettings.h"
#include "WriteError.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unistd.h>

using namespace optim;
namespace cl = llvm::cl;

namespace {

cl::OptionCategory category("optim-eval options");
cl::list<std::string>
    ruleFiles("rule",
              cl::desc("A rule to evaluate (.optim file; repeatable, "
                       "reported in this order)"),
              cl::value_desc("file"), cl::OneOrMore, cl::cat(category));
cl::list<std::string>
    grids("grid",
          cl::desc("Tune rule NAME's lr over N values spaced evenly in log "
                   "from MIN to MAX, e.g. sgd=0.01:10:7 (repeatable)"),
          cl::value_desc("NAME=MIN:MAX:N"), cl::cat(category));
cl::list<std::string> weightsFlags(
    "weights",
    cl::desc("Weights of the learned rules (safetensors): FILE for every "
             "learned rule, or NAME=FILE for rule NAME (repeatable)"),
    cl::value_desc("[NAME=]file"), cl::cat(category));
cl::list<std::string>
    setFlags("set",
             cl::desc("A hyperparameter's value for every rule that has it, or "
                      "RULE.NAME=VALUE for one rule (repeatable), e.g. --set "
                      "scale=0.05"),
             cl::value_desc("[RULE.]NAME=VALUE"), cl::cat(category));
cl::list<std::string> inputFlags(
    "input",
    cl::desc("Where a per-coordinate input of the rules comes from at every "
             "step: normal, uniform or hutchinson (z * Hz), e.g. --input "
             "h=hutchinson; for every rule with an input of that name "
             "(repeatable)"),
    cl::value_desc("name=source"), cl::cat(category));
cl::opt<std::string> taskName("task",
                              cl::desc("quadratic | mnist | fashion-mnist"),
                              cl::Required, cl::cat(category));
cl::opt<int64_t> steps("steps", cl::desc("Optimizer steps per run (100)"),
                       cl::init(100), cl::cat(category));
cl::opt<int64_t> inits("inits", cl::desc("Evaluation runs, one per seed (100)"),
                       cl::init(100), cl::cat(category));
cl::opt<uint64_t> seed("seed",
                       cl::desc("First evaluation seed (1); a run's seed also "
                                "keys the rule's random numbers"),
                       cl::init(1), cl::cat(category));
cl::opt<int64_t> tuneInits("tune-inits",
                           cl::desc("Runs per grid point when tuning (20)"),
                           cl::init(20), cl::cat(category));
cl::opt<uint64_t> tuneSeed("tune-seed", cl::desc("First tuning seed (1000001)"),
                           cl::init(1000001), cl::cat(category));
enum class Metric { Final, Sum };
cl::opt<Metric>
    metric("metric", cl::desc("What tuning minimizes (the row's headline)"),
           cl::values(clEnumValN(Metric::Final, "final",
                                 "the final held-out loss (default)"),
                      clEnumValN(Metric::Sum, "sum",
                                 "sum of f(theta_t), t = 1..steps")),
           cl::init(Metric::Final), cl::cat(category));
cl::opt<unsigned>
    jobs("jobs",
         cl::desc("Runs in parallel, one thread each, at most 1024 (0: one "
                  "per core)"),
         cl::init(0), cl::cat(category));
cl::opt<std::string> jsonFile("json", cl::desc("Write the results as JSON"),
                              cl::value_desc("file"), cl::cat(category));
cl::opt<std::string>
    curveFile("curve", cl::desc("Write the mean training loss per step as CSV"),
              cl::value_desc("file"), cl::cat(category));
cl::opt<std::string> dataDir("data",
                             cl::desc("MNIST-format folder for the MLP tasks"),
                             cl::value_desc("dir"), cl::cat(category));
cl::opt<int> hidden("hidden", cl::desc("MLP hidden units (20)"), cl::init(20),
                    cl::cat(category));
cl::opt<int> layers("layers", cl::desc("MLP hidden layers (1)"), cl::init(1),
                    cl::cat(category));
cl::opt<std::string> activation("activation",
                                cl::desc("sigmoid (default) | relu"),
                                cl::init("sigmoid"), cl::cat(category));
cl::opt<int> batch("batch", cl::desc("Minibatch size (128)"), cl::init(128),
                   cl::cat(category));
cl::opt<std::string>
    trainImages("train-images",
                cl::desc("Images of the training minibatches, FIRST:END "
                         "(default 0:8000)"),
                cl::value_desc("range"), cl::cat(category));
cl::opt<std::string>
    evalImages("eval-images",
               cl::desc("Held-out images of the final loss, FIRST:END "
                        "(default 8000:10000)"),
               cl::value_desc("range"), cl::cat(category));

struct Grid {
  double min = 0, max = 0;
  int count = 0;
  std::vector<double> values() const {
    std::vector<double> v;
    for (int i = 0; i < count; ++i)
      // Powers of ten through pow(10, .), so that a half-decade grid gives
      // 0.01 and 0.1 exactly, not one ulp off.
      v.push_back(i == 0 ? min
                  : i == count - 1
                      ? max
                      : std::pow(10.0, std::log10(min) +
                                           (std::log10(max) - std::log10(min)) *
                                               i / (count - 1)));
    return v;
  }
};

struct Candidate {
  std::string file;
  Rule rule;
  bool learned = false;
  bool hasGrid = false;
  Grid grid;
  std::vector<double> lrs;      // the grid's values
  std::vector<double> scores;   // mean metric over the tuning seeds
  std::vector<int64_t> tuneBad; // diverged tuning runs per grid point
  double lr = NAN;              // the chosen (or default) lr; NaN: none
  std::string weights;          // a learned rule's weights file
  /// --set values other than lr (which goes to `lr`).
  std::vector<std::pair<std::string, double>> hypers;
};

struct RunResult {
  double finalLoss = NAN;
  double sumF = NAN;
  bool diverged = false;
  std::vector<double> curve; // f(theta_t), t = 0..steps
};

struct Stats {
  double mean, std, median, q1, q3, min, max;
};

/// Over every run; a diverged run counts as +inf, so that its mean is inf
/// and the quartiles say how many of the runs are finite.
Stats statsOf(std::vector<double> v) {
  Stats s{};
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  double sum = 0;
  for (double x : v)
    sum += x;
  s.mean = sum / double(n);
  double ss = 0;
  for (double x : v)
    ss += (x - s.mean) * (x - s.mean);
  s.std = n > 1 ? std::sqrt(ss / double(n - 1)) : 0.0;
  if (!std::isfinite(s.mean))
    s.std = NAN;
  // Linear interpolation between order statistics (R's type 7).
  auto quantile = [&](double q) {
    double pos = q * double(n - 1);
    size_t lo = size_t(std::floor(pos));
    size_t hi = std::min(lo + 1, n - 1);
    double frac = pos - double(lo);
    if (frac == 0 || v[lo] == v[hi])
      return v[lo];
    return v[lo] + frac * (v[hi] - v[lo]);
  };
  s.median = quantile(0.5);
  s.q1 = quantile(0.25);
  s.q3 = quantile(0.75);
  s.min = v.front();
  s.max = v.back();
  return s;
}

Grid parseGrid(const std::string &text, std::string &name) {
  auto bad = [&](const std::string &why) {
    return Error("--grid expects NAME=MIN:MAX:N, e.g. sgd=0.01:10:7, got '" +
                 text + "': " + why);
  };
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw bad("no rule name");
  name = text.substr(0, eq);
  std::string rest = text.substr(eq + 1);
  size_t c1 = rest.find(':'), c2 = rest.rfind(':');
  if (c1 == std::string::npos || c1 == c2)
    throw bad("expected three values after '='");
  auto number = [&](const std::string &s, const char *what) {
    char *end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v) || v <= 0)
      throw bad(std::string(what) + " is not a positive number");
    return v;
  };
  Grid g;
  g.min = number(rest.substr(0, c1), "MIN");
  g.max = number(rest.substr(c1 + 1, c2 - c1 - 1), "MAX");
  std::string n = rest.substr(c2 + 1);
  if (n.empty() || n.size() > 4 ||
      n.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(n) < 1)
    throw bad("N is not a positive integer (at most 9999)");
  g.count = std::stoi(n);
  if (g.max < g.min)
    throw bad("MAX is below MIN");
  if (g.count == 1 && g.max != g.min)
    throw bad("one value needs MIN = MAX");
  return g;
}

tasks::TaskOptions taskOptions() {
  tasks::TaskOptions o;
  o.dataDir = dataDir;
  o.hiddenUnits = hidden;
  o.hiddenLayers = layers;
  o.activation = activation;
  o.batchSize = batch;
  if (!trainImages.empty())
    tasks::parseImageRange(trainImages, "--train-images", o.trainFirst,
                           o.trainCount);
  if (!evalImages.empty())
    tasks::parseImageRange(evalImages, "--eval-images", o.evalFirst,
                           o.evalCount);
  return o;
}

/// One run: `steps` updates from the task's initialization for `runSeed`.
/// f(theta_t) is the minibatch loss step() reports at theta_t, so t = steps
/// Gives each learned rule its --weights file: NAME=FILE for rule NAME, a
/// plain FILE for the others. A flag that no rule takes is an error (a typo,
/// or a forgotten --rule), as is a plain FILE given twice (which would
/// silently win).
void assignWeights(std::vector<Candidate> &cands) {
  std::string plain;
  std::vector<std::pair<std::string, std::string>> named;
  for (const std::string &flag : weightsFlags) {
    llvm::StringRef text(flag);
    auto [name, file] = text.split('=');
    bool isNamed =
        !file.empty() && !name.empty() && llvm::all_of(name, [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
        });
    if (!isNamed) {
      if (!plain.empty())
        throw Error("--weights " + flag +
                    ": a weights file for every "
                    "learned rule is given twice (" +
                    plain +
                    "); name each "
                    "rule's with --weights NAME=FILE");
      plain = flag;
      continue;
    }
    for (const auto &[earlier, f] : named)
      if (earlier == name)
        throw Error("--weights " + flag + ": rule '" + earlier +
                    "' is given weights twice");
    auto it = std::find_if(cands.begin(), cands.end(), [&](const Candidate &c) {
      return c.rule.info().name == name;
    });
    if (it == cands.end())
      throw Error("--weights " + flag + ": no --rule is named '" + name.str() +
                  "'");
    if (!it->learned)
      throw Error("--weights " + flag + ": rule '" + name.str() +
                  "' is not a learned rule");
    named.emplace_back(name.str(), file.str());
    it->weights = file.str();
  }
  bool plainUsed = false;
  for (Candidate &c : cands) {
    if (!c.learned || !c.weights.empty())
      continue;
    if (plain.empty())
      throw Error("rule '" + c.rule.info().name +
                  "' is a learned rule: give its weights with --weights "
                  "FILE.safetensors (or --weights " +
                  c.rule.info().name + "=FILE)");
    c.weights = plain;
    plainUsed = true;
  }
  if (!plain.empty() && !plainUsed)
    throw Error(std::none_of(cands.begin(), cands.end(),
                             [](const Candidate &c) { return c.learned; })
                    ? "--weights is given but no rule is a learned rule"
                    : "--weights " + plain +
                          ": every learned rule has weights of its own "
                          "(NAME=FILE)");
}

/// Applies --set [RULE.]NAME=VALUE; returns the rules whose lr it set.
std::vector<std::string> applySets(std::vector<Candidate> &cands) {
  std::vector<std::string> lrSet;
  // (rule.name, the flag that set it), for every hyperparameter set.
  std::vector<std::pair<std::string, std::string>> given;
  std::vector<std::string> seen;
  for (const std::string &flag : setFlags) {
    auto [lhs, value] = llvm::StringRef(flag).split('=');
    double number;
    if (lhs.empty() || value.trim().getAsDouble(number) ||
        !std::isfinite(number))
      throw Error("--set expects [RULE.]NAME=VALUE with a finite number, "
                  "got '" +
                  flag + "'");
    auto [ruleName, name] = lhs.trim().rsplit('.');
    if (name.empty())
      std::swap(ruleName, name);
    std::string key = (ruleName + "." + name).str();
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw Error("--set " + flag + ": given twice");
    seen.push_back(key);
    bool any = false;
    for (Candidate &c : cands) {
      const RuleInfo &ri = c.rule.info();
      if (!ruleName.empty() && ri.name != ruleName)
        continue;
      // `--set scale=0.05 --set l2l.scale=0.1`: which wins would depend
      // on their order.
      std::string mine = ri.name + "." + name.str();
      auto earlier =
          std::find_if(given.begin(), given.end(),
                       [&](const std::pair<std::string, std::string> &g) {
                         return g.first == mine;
                       });
      if (earlier != given.end())
        throw Error("--set " + flag + ": '" + name.str() + "' of rule '" +
                    ri.name + "' is also set by --set " + earlier->second +
                    "; give it once");
      int h = ri.findHyper(name.str());
      if (h < 0) {
        if (!ruleName.empty())
          throw Error("--set " + flag + ": rule '" + ri.name +
                      "' has no hyperparameter '" + name.str() + "'");
        continue;
      }
      if (ri.hypers[h].isConst)
        throw Error("--set " + flag + ": '" + name.str() + "' of rule '" +
                    ri.name + "' is const (compiled in)");
      any = true;
      given.emplace_back(mine, flag);
      if (name == "lr") {
        c.lr = number;
        lrSet.push_back(ri.name);
      } else {
        c.hypers.emplace_back(name.str(), number);
      }
    }
    if (!any)
      throw Error(
          "--set " + flag + ": " +
          (ruleName.empty()
               ? "no rule given has a hyperparameter '" + name.str() + "'"
               : "no --rule is named '" + ruleName.str() + "'"));
  }
  return lrSet;
}

/// The JSON of the weights: null, one file for every learned rule, or
/// {rule: file}.
llvm::json::Value weightsJSON(const std::vector<Candidate> &cands) {
  llvm::json::Object byRule;
  std::string first;
  bool same = true;
  for (const Candidate &c : cands)
    if (c.learned) {
      byRule[c.rule.info().name] = c.weights;
      if (first.empty())
        first = c.weights;
      same &= c.weights == first;
    }
  if (byRule.empty())
    return nullptr;
  if (same)
    return first;
  return llvm::json::Value(std::move(byRule));
}

/// takes one more minibatch, whose gradient is not used.
RunResult runOnce(const Candidate &c, double lr,
                  const tasks::TaskOptions &options,
                  const std::vector<tools::InputFlag> &flags,
                  uint64_t runSeed, bool keepCurve) {
  std::unique_ptr<tasks::Task> task =
      tasks::makeTask(taskName, runSeed, options);
  std::vector<Param> refs;
  // With their shapes: rules with row or column states see the matrices.
  std::vector<std::vector<int64_t>> shapes = task->shapes();
  for (auto &p : task->parameters()) {
    refs.emplace_back(p.data(), int64_t(p.size()));
    if (refs.size() <= shapes.size())
      refs.back().shape = shapes[refs.size() - 1];
  }
  OptimizerOptions oo;
  oo.threads = 1; // The runs are the parallel unit.
  // A rule that draws random numbers draws the same ones on the same seed,
  // whatever the rule (common random numbers across candidates).
  oo.seed = runSeed;
  Optimizer opt(c.rule, refs, oo);
  if (!std::isnan(lr))
    opt.set("lr", lr);
  for (const auto &[name, value] : c.hypers)
    opt.set(name, value);
  if (c.learned)
    opt.loadWeights(c.weights);
  // Drawn from the run's seed: every rule with an input `h` sees the same
  // values on the same seed while their parameters agree.
  tools::RunInputs inputs(c.rule.info().inputs, flags, runSeed);

  RunResult r;
  r.sumF = 0;
  std::vector<std::vector<float>> grads;
  std::vector<Grad> gradRefs;
  for (int64_t t = 0; t <= steps; ++t) {
    double f = task->step(grads);
    if (!std::isfinite(f)) {
      r.diverged = true;
      break;
    }
    if (keepCurve)
      r.curve.push_back(f);
    if (t > 0)
      r.sumF += f;
    if (t == steps)
      break;
    gradRefs.clear();
    for (auto &g : grads)
      gradRefs.emplace_back(g.data(), int64_t(g.size()));
    if (inputs.empty())
      opt.step(gradRefs);
    else // After task->step(): Hutchinson's estimate uses its minibatch.
      opt.step(gradRefs, inputs.next(*task));
  }
  if (!r.diverged) {
    r.finalLoss = task->evaluate();
    r.diverged = !std::isfinite(r.finalLoss);
  }
  if (r.diverged) {
    r.finalLoss = r.sumF = INFINITY;
    r.curve.clear();
  }
  return r;
}

/// Runs `job(i)` for i in [0, n) on `workers` threads. The first error (by
/// index) is rethrown after every worker has stopped.
void parallelFor(int64_t n, unsigned workers,
                 const std::function<void(int64_t)> &job, const char *what) {
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mutex;
  int64_t errorIndex = n;
  std::string errorMessage;
  bool tty = isatty(2);
  auto work = [&] {
    for (;;) {
      int64_t i = next.fetch_add(1);
      if (i >= n)
        return;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (errorIndex < n)
          return;
      }
      try {
        job(i);
      } catch (const std::exception &e) {
        std::lock_guard<std::mutex> lock(mutex);
        if (i < errorIndex) {
          errorIndex = i;
          errorMessage = e.what();
        }
        return;
      }
      int64_t d = done.fetch_add(1) + 1;
      if (tty && (d % 16 == 0 || d == n)) {
        std::lock_guard<std::mutex> lock(mutex);
        std::fprintf(stderr, "\r%s: %lld/%lld runs", what, (long long)d,
                     (long long)n);
        if (d == n)
          std::fprintf(stderr, "\n");
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < workers; ++w)
    pool.emplace_back(work);
  work();
  for (std::thread &t : pool)
    t.join();
  if (errorIndex < n)
    throw Error(errorMessage);
}

std::string fmt(double v) {
  if (std::isnan(v))
    return "nan";
  if (std::isinf(v))
    return "inf";
  char b[32];
  std::snprintf(b, sizeof(b), "%.4g", v);
  return b;
}

llvm::json::Value num(double v) {
  if (!std::isfinite(v))
    return nullptr;
  return v;
}

llvm::json::Object statsJSON(const Stats &s) {
  return llvm::json::Object{{"mean", num(s.mean)},     {"std", num(s.std)},
                            {"median", num(s.median)}, {"q1", num(s.q1)},
                            {"q3", num(s.q3)},         {"min", num(s.min)},
                            {"max", num(s.max)}};
}

void writeFile(const std::string &path,
               llvm::function_ref<void(llvm::raw_ostream &)> body) {
  if (llvm::Error err = llvm::writeToOutput(path, [&](llvm::raw_ostream &os) {
        body(os);
        return llvm::Error::success();
      }))
    throw Error("cannot write '" + path +
                "': " + tools::writeErrorReason(std::move(err)));
}

int evaluate() {
  if (steps < 1)
    throw Error("--steps must be at least 1");
  if (inits < 1)
    throw Error("--inits must be at least 1");
  if (tuneInits < 1)
    throw Error("--tune-inits must be at least 1");
  // Checked for every task, by the flags' names: the MLP tasks would name
  // their own fields.
  if (batch < 1)
    throw Error("--batch must be at least 1, got " + std::to_string(batch));
  if (hidden < 1)
    throw Error("--hidden must be at least 1, got " + std::to_string(hidden));
  if (layers < 0)
    throw Error("--layers must not be negative, got " +
                std::to_string(layers));
  std::vector<std::string> mlpGiven;
  for (const cl::Option *opt : std::initializer_list<const cl::Option *>{
           &dataDir, &hidden, &layers, &activation, &batch, &trainImages,
           &evalImages})
    if (opt->getNumOccurrences())
      mlpGiven.push_back(("--" + opt->ArgStr).str());
  std::string unused = tools::mlpOptionsUnused(taskName, mlpGiven);
  if (!unused.empty())
    throw Error(unused);
  tasks::TaskOptions options = taskOptions();
  std::vector<tools::InputFlag> flags = tools::parseInputFlags(inputFlags);
  // Reads and checks the task's data once, before anything is compiled.
  tasks::makeTask(taskName, seed, options);

  Compiler compiler;
  std::vector<Candidate> cands;
  for (const std::string &file : ruleFiles) {
    Candidate c;
    c.file = file;
    c.rule = compiler.compileFile(file);
    tools::printWarnings(compiler.lastWarnings());
    c.learned = !c.rule.info().weights.empty();
    std::vector<std::string> missing;
    for (const std::string &n : c.rule.info().inputs)
      if (std::none_of(flags.begin(), flags.end(),
                       [&](const tools::InputFlag &f) { return f.name == n; }))
        missing.push_back(n);
    std::string unsupplied = tools::inputsUnsupplied(
        c.rule.info().name, missing,
        "--input NAME=SOURCE (SOURCE: " + tools::inputSourceList() + ")");
    if (!unsupplied.empty())
      throw Error(unsupplied + " (" + file + ")");
    for (const Candidate &other : cands)
      if (other.rule.info().name == c.rule.info().name)
        throw Error("rule '" + c.rule.info().name + "' is given twice (" +
                    other.file + ", " + file + ")");
    if (c.rule.info().findHyper("lr") >= 0)
      c.lr = c.rule.info().hypers[c.rule.info().findHyper("lr")].defaultValue;
    cands.push_back(std::move(c));
  }
  // A source that no rule reads is a typo or a forgotten --rule.
  for (const tools::InputFlag &f : flags)
    if (std::none_of(cands.begin(), cands.end(), [&](const Candidate &c) {
          const std::vector<std::string> &in = c.rule.info().inputs;
          return std::find(in.begin(), in.end(), f.name) != in.end();
        }))
      throw Error("--input " + f.text + ": no rule given takes an input '" +
                  f.name + "'");
  assignWeights(cands);
  std::vector<std::string> setLR = applySets(cands);
  for (const Candidate &c : cands)
    if (c.learned)
      tools::noteTrainedSettings(
          "optim-eval", c.weights, c.rule.info(), [&](const std::string &n) {
            if (n == "lr" && !std::isnan(c.lr))
              return c.lr;
            for (const auto &[name, value] : c.hypers)
              if (name == n)
                return value;
            const RuleInfo &ri = c.rule.info();
            return ri.hypers[ri.findHyper(n)].defaultValue;
          });
  for (const std::string &text : grids) {
    std::string name;
    Grid g = parseGrid(text, name);
    auto it = std::find_if(cands.begin(), cands.end(), [&](const Candidate &c) {
      return c.rule.info().name == name;
    });
    if (it == cands.end())
      throw Error("--grid " + text + ": no --rule is named '" + name + "'");
    const HyperParam *lrParam = nullptr;
    for (const HyperParam &h : it->rule.info().hypers)
      if (h.name == "lr")
        lrParam = &h;
    if (!lrParam)
      throw Error("--grid " + text + ": rule '" + name +
                  "' has no hyperparameter 'lr'");
    if (lrParam->isConst)
      throw Error("--grid " + text + ": 'lr' of rule '" + name +
                  "' is const (compiled in)");
    if (it->hasGrid)
      throw Error("--grid " + text + ": rule '" + name +
                  "' already has a grid");
    if (std::find(setLR.begin(), setLR.end(), name) != setLR.end())
      throw Error("--grid " + text + ": --set also gives rule '" + name +
                  "' an lr; tune it or set it, not both");
    it->hasGrid = true;
    it->grid = g;
    it->lrs = g.values();
  }
  bool anyGrid = std::any_of(cands.begin(), cands.end(),
                             [](const Candidate &c) { return c.hasGrid; });
  // Seeds [seed, seed + inits) and [tuneSeed, tuneSeed + tuneInits).
  if (anyGrid && seed < tuneSeed + uint64_t(tuneInits) &&
      tuneSeed < seed + uint64_t(inits))
    throw Error("the tuning seeds " + std::to_string(tuneSeed) + ".." +
                std::to_string(tuneSeed + tuneInits - 1) +
                " overlap the evaluation seeds " + std::to_string(seed) + ".." +
                std::to_string(seed + inits - 1) + ": move --tune-seed");
  // As the runtime's thread counts: 20000 threads were started, and 100000
  // ended in std::terminate.
  if (jobs > 1024)
    throw Error("--jobs must be at most 1024, got " + std::to_string(jobs));
  unsigned workers =
      jobs ? jobs : std::max(1u, std::thread::hardware_concurrency());

  const char *metricName = metric == Metric::Final
                               ? "mean final held-out loss"
                               : "mean sum of f(theta_t), t = 1..steps";
  std::printf("task %s", taskName.c_str());
  if (taskName != "quadratic")
    std::printf(" (MLP %dx%d %s, batch %d, training images %lld:%lld, "
                "held-out images %lld:%lld)",
                layers.getValue(), hidden.getValue(), activation.c_str(),
                batch.getValue(), (long long)options.trainFirst,
                (long long)(options.trainFirst + options.trainCount),
                (long long)options.evalFirst,
                (long long)(options.evalFirst + options.evalCount));
  std::printf(", %lld steps", (long long)steps);
  // Which rule reads what: two commands that differ only in it print
  // different headers.
  for (const tools::InputFlag &f : flags)
    std::printf("%s%s", &f == &flags.front() ? ", inputs " : " ",
                f.text.c_str());
  std::printf("\n");

  // Tuning: every grid point of every rule on the tuning seeds.
  if (anyGrid) {
    std::vector<std::pair<size_t, size_t>> points; // (rule, grid index)
    for (size_t c = 0; c < cands.size(); ++c)
      for (size_t k = 0; k < cands[c].lrs.size(); ++k)
        points.emplace_back(c, k);
    int64_t n = int64_t(points.size()) * tuneInits;
    std::vector<RunResult> results(static_cast<size_t>(n));
    parallelFor(
        n, workers,
        [&](int64_t i) {
          auto [c, k] = points[size_t(i / tuneInits)];
          results[size_t(i)] =
              runOnce(cands[c], cands[c].lrs[k], options, flags,
                      tuneSeed + uint64_t(i % tuneInits), false);
        },
        "tuning");
    std::printf("tuning: %lld inits per lr (seeds %llu..%llu), by the %s\n",
                (long long)tuneInits, (unsigned long long)tuneSeed,
                (unsigned long long)(tuneSeed + tuneInits - 1), metricName);
    for (size_t p = 0; p < points.size(); ++p) {
      auto [c, k] = points[p];
      Candidate &cand = cands[c];
      double sum = 0;
      int64_t bad = 0;
      for (int64_t s = 0; s < tuneInits; ++s) {
        const RunResult &r = results[size_t(int64_t(p) * tuneInits + s)];
        bad += r.diverged;
        sum += metric == Metric::Final ? r.finalLoss : r.sumF;
      }
      // A learning rate that diverges on any seed is not a candidate.
      cand.scores.push_back(bad ? INFINITY : sum / double(tuneInits));
      cand.tuneBad.push_back(bad);
    }
    for (Candidate &cand : cands) {
      if (!cand.hasGrid)
        continue;
      size_t best = 0;
      for (size_t k = 1; k < cand.scores.size(); ++k)
        if (cand.scores[k] < cand.scores[best])
          best = k;
      if (!std::isfinite(cand.scores[best]))
        throw Error("rule '" + cand.rule.info().name +
                    "' diverges at every lr of its grid");
      cand.lr = cand.lrs[best];
      std::printf("  %-10s", cand.rule.info().name.c_str());
      for (size_t k = 0; k < cand.lrs.size(); ++k)
        std::printf(" %s%s:%s%s", k == best ? "[" : "",
                    fmt(cand.lrs[k]).c_str(),
                    cand.tuneBad[k] ? "diverged" : fmt(cand.scores[k]).c_str(),
                    k == best ? "]" : "");
      if (cand.lrs.size() > 1 && (best == 0 || best + 1 == cand.lrs.size()))
        std::printf("  (best at the grid's edge)");
      std::printf("\n");
    }
  }

  // Evaluation: every rule on the evaluation seeds.
  int64_t n = int64_t(cands.size()) * inits;
  std::vector<RunResult> results(static_cast<size_t>(n));
  parallelFor(
      n, workers,
      [&](int64_t i) {
        const Candidate &c = cands[size_t(i / inits)];
        results[size_t(i)] =
            runOnce(c, c.lr, options, flags, seed + uint64_t(i % inits), true);
      },
      "evaluation");

  std::printf("evaluation: %lld inits (seeds %llu..%llu); mean std median "
              "q1 q3\n",
              (long long)inits, (unsigned long long)seed,
              (unsigned long long)(seed + inits - 1));
  // What --set changed besides lr, so that a table says what it ran.
  for (const Candidate &c : cands)
    if (!c.hypers.empty()) {
      std::printf("%s runs with", c.rule.info().name.c_str());
      for (const auto &[name, value] : c.hypers)
        std::printf(" %s=%s", name.c_str(), fmt(value).c_str());
      std::printf(" (--set)\n");
    }
  std::printf("%-10s %10s | %-45s | %-45s | %s\n", "rule", "lr",
              "final held-out loss", "sum f(theta_t), t = 1..steps",
              "diverged");
  llvm::json::Array rulesJSON;
  std::vector<std::vector<double>> curves;
  for (size_t c = 0; c < cands.size(); ++c) {
    const Candidate &cand = cands[c];
    std::vector<double> finals, sums;
    int64_t diverged = 0;
    std::vector<double> curve(size_t(steps + 1), 0.0);
    for (int64_t s = 0; s < inits; ++s) {
      const RunResult &r = results[size_t(int64_t(c) * inits + s)];
      finals.push_back(r.finalLoss);
      sums.push_back(r.sumF);
      diverged += r.diverged;
      for (size_t t = 0; t < r.curve.size(); ++t)
        curve[t] += r.curve[t];
    }
    // The curve averages the runs that did not diverge.
    for (double &x : curve)
      x = diverged == inits ? NAN : x / double(inits - diverged);
    curves.push_back(curve);
    Stats fs = statsOf(finals), ss = statsOf(sums);
    auto cell = [](const Stats &s) {
      char b[128];
      std::snprintf(b, sizeof(b), "%9s %9s %8s %8s %8s", fmt(s.mean).c_str(),
                    fmt(s.std).c_str(), fmt(s.median).c_str(),
                    fmt(s.q1).c_str(), fmt(s.q3).c_str());
      return std::string(b);
    };
    std::printf("%-10s %10s | %-45s | %-45s | %lld/%lld\n",
                cand.rule.info().name.c_str(),
                std::isnan(cand.lr) ? "-" : fmt(cand.lr).c_str(),
                cell(fs).c_str(), cell(ss).c_str(), (long long)diverged,
                (long long)inits);

    llvm::json::Array gridJSON;
    for (size_t k = 0; k < cand.lrs.size(); ++k)
      gridJSON.push_back(llvm::json::Object{{"lr", cand.lrs[k]},
                                            {"score", num(cand.scores[k])},
                                            {"diverged", cand.tuneBad[k]}});
    size_t best = 0;
    while (best < cand.lrs.size() && cand.lrs[best] != cand.lr)
      ++best;
    llvm::json::Array curveJSON;
    for (double x : curve)
      curveJSON.push_back(num(x));
    llvm::json::Object inputsJSON;
    for (const std::string &in : cand.rule.info().inputs)
      for (const tools::InputFlag &f : flags)
        if (f.name == in)
          inputsJSON[in] = f.text.substr(f.text.find('=') + 1);
    llvm::json::Object setJSON;
    for (const auto &[name, value] : cand.hypers)
      setJSON[name] = value;
    rulesJSON.push_back(llvm::json::Object{
        {"name", cand.rule.info().name},
        {"file", cand.file},
        {"set", std::move(setJSON)},
        {"learned", cand.learned},
        {"inputs", std::move(inputsJSON)},
        {"lr", num(cand.lr)},
        {"tuned", cand.hasGrid},
        {"grid", std::move(gridJSON)},
        {"best_at_edge",
         cand.lrs.size() > 1 && (best == 0 || best + 1 == cand.lrs.size())},
        {"final", statsJSON(fs)},
        {"sum", statsJSON(ss)},
        {"diverged", diverged},
        {"curve", std::move(curveJSON)}});
  }

  if (!jsonFile.empty()) {
    llvm::json::Object taskJSON{{"name", taskName}};
    if (taskName != "quadratic") {
      taskJSON["hidden"] = hidden.getValue();
      taskJSON["layers"] = layers.getValue();
      taskJSON["activation"] = activation.getValue();
      taskJSON["batch"] = batch.getValue();
      taskJSON["train_images"] = llvm::json::Array{
          options.trainFirst, options.trainFirst + options.trainCount};
      taskJSON["eval_images"] = llvm::json::Array{
          options.evalFirst, options.evalFirst + options.evalCount};
    }
    llvm::json::Object root{
        {"task", std::move(taskJSON)},
        {"steps", steps.getValue()},
        {"inits", inits.getValue()},
        {"seeds", llvm::json::Array{int64_t(seed), int64_t(seed + inits - 1)}},
        {"tune_inits", anyGrid ? llvm::json::Value(tuneInits.getValue())
                               : llvm::json::Value(nullptr)},
        {"tune_seeds",
         anyGrid ? llvm::json::Value(llvm::json::Array{
                       int64_t(tuneSeed), int64_t(tuneSeed + tuneInits - 1)})
                 : llvm::json::Value(nullptr)},
        {"metric", metric == Metric::Final ? "final" : "sum"},
        {"weights", weightsJSON(cands)},
        {"rules", std::move(rulesJSON)}};
    writeFile(jsonFile, [&](llvm::raw_ostream &os) {
      os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
    });
  }
  if (!curveFile.empty())
    writeFile(curveFile, [&](llvm::raw_ostream &os) {
      os << "step";
      for (const Candidate &c : cands)
        os << "," << c.rule.info().name;
      os << "\n";
      for (int64_t t = 0; t <= steps; ++t) {
        os << t;
        for (const auto &curve : curves)
          os << "," << fmt(curve[size_t(t)]);
        os << "\n";
      }
    });
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "optim-eval: optimizers compared on a built-in task over many random "
      "initializations, learning rates tuned on other seeds\n\n"
      "Exit status: 0 on success, 1 on any error (a usage error included).\n");
  if (std::string repeated =
          tools::repeatedOption({&cl::SubCommand::getTopLevel()});
      !repeated.empty()) {
    tools::printToolError("optim-eval", repeated);
    return 1;
  }
  try {
    return evaluate();
  } catch (const Error &e) {
    // The compiler's located diagnostics print as optimc's own do.
    tools::printToolError("optim-eval", e);
    return 1;
  }
}
