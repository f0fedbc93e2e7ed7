//===- optim-train.cpp - meta-training of learned rules -------------------===//
//
// Learning to learn by gradient descent by gradient descent (Andrychowicz et
// al., 2016): the learned rule (a coordinatewise LSTM) runs `--horizon`
// steps on a fresh random optimizee per episode; every `--unroll` steps the
// meta-loss sum_t f(θ_t) of those steps is backpropagated through them
// (optim::Trajectory, the rule's fused VJP kernel) to the rule's weights,
// which the meta-optimizer (Adam, compiled from examples/adam.optim by this
// project and run by optim::Optimizer) updates. θ and the LSTM state carry
// across truncations; nothing flows back across one. Gradients of f fed to
// the rule are constants of the backward pass (second derivatives dropped).
//
// Outputs in --out: weights.safetensors (the layout Optimizer::loadWeights
// reads), checkpoint.safetensors (weights, meta-optimizer state, episode,
// RNG state; written atomically every --checkpoint-every episodes; --resume
// continues from it), log.csv, and meta-loss.png (gnuplot, if installed).
//
//===----------------------------------------------------------------------===//

#include "ExamplesDir.h"
#include "MetaEpisode.h"
#include "ToolSupport.h"

#include "optim/Compiler/Compiler.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Safetensors.h"
#include "optim/Tasks/Task.h"
#include "optim/Trajectory.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/SHA256.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>
#include <vector>

using namespace optim;

namespace {

/// examples/NAME.optim of the current folder, else of the installed or the
/// source tree's examples.
std::string defaultExample(const char *name) {
  std::string local = std::string("examples/") + name + ".optim";
  if (::access(local.c_str(), R_OK) == 0)
    return local;
  return tools::examplesDir(OPTIM_EXAMPLES_DIR) + "/" + name + ".optim";
}

struct Options {
  std::string rule = defaultExample("l2l");
  std::string metaRule = defaultExample("adam");
  /// Which rule of a file that defines several (empty: its only one).
  std::string ruleName, metaRuleName;
  std::string task = "quadratic";
  std::string out = "optim-train-out";
  std::string dataDir;
  std::string trainImages = "0:8000";
  std::string evalImages = "8000:10000";
  std::string init; // Initial weights (safetensors); empty: random.
  int64_t episodes = 100;
  int64_t horizon = 100;
  int64_t unroll = 20;
  double metaLr = 1e-3;
  uint64_t seed = 1;
  int64_t checkpointEvery = 10;
  int64_t evalEvery = 0; // Episodes between selection evaluations; 0: none.
  int64_t evalRuns = 20;
  int64_t stopAfter = -1; // Testing: stop (as if killed) after N episodes.
  unsigned threads = 0;
  int hiddenUnits = 20, hiddenLayers = 1, batchSize = 128;
  std::string activation = "sigmoid";
  bool resume = false, quiet = false, plot = true;
  std::vector<std::pair<std::string, double>> hypers; // --set name=value
  /// The options given on the command line (as "--name"): --resume takes
  /// the others from the checkpoint.
  std::set<std::string> given;
};

const char *kUsage = R"(usage: optim-train [options]
Meta-trains a learned rule (Andrychowicz et al., 2016) on a built-in task.
A valued option takes its value as --key VALUE or --key=VALUE.

  --rule FILE            learned rule (default examples/l2l.optim)
  --rule-name NAME       which rule of a --rule file that defines several
  --meta-rule FILE       meta-optimizer rule (default examples/adam.optim)
  --meta-rule-name NAME  which rule of a --meta-rule file
  --meta-lr X            meta-optimizer learning rate (default 1e-3)
  --task NAME            quadratic | mnist | fashion-mnist (default
                         quadratic)
  --episodes N           optimizees to train on (default 100)
  --horizon N            optimizee steps per episode (default 100)
  --unroll N             steps per truncation of BPTT (default 20)
  --seed N               seeds weights, optimizees and the rule's random
                         numbers (default 1)
  --out DIR              outputs (default optim-train-out)
  --checkpoint-every N   episodes between checkpoints (default 10)
  --resume               continue from DIR/checkpoint.safetensors, with the
                         options of its run (--task, --seed, --horizon,
                         --unroll, --set, the MLP's, ...; --meta-lr and
                         --eval-every may change)
  --eval-every N         every N episodes, run the current weights on
                         --eval-runs fixed optimizees (seeds 2000001...,
                         apart from optim-eval's) and keep the weights with
                         the lowest mean sum of f in DIR/best-weights
                         .safetensors, as the paper's code does (default 0:
                         off); the evaluations go to DIR/eval.csv
  --eval-runs N          optimizees per evaluation (default 20)
  --init FILE            initial weights (safetensors) instead of random
  --set NAME=VALUE       a hyperparameter of the learned rule (e.g. scale)
  --threads N            worker threads (default: all)
  --data-dir DIR         MNIST-format folder (default: $OPTIM_MNIST_DIR,
                         else ../shared/data/mnist if it exists, else
                         /work/shared/data/mnist; fashion-mnist:
                         $OPTIM_FASHION_MNIST_DIR, else
                         /usr/share/datasets/fashion-mnist)
  --train-images A:B     images of meta-training (default 0:8000)
  --eval-images A:B      held-out images (default 8000:10000)
  --hidden-units N --hidden-layers N --activation sigmoid|relu
  --batch-size N         the MNIST MLP (defaults 20, 1, sigmoid, 128)
  --no-plot              do not run gnuplot
  --quiet                no progress bar

Exit status: 0 on success, 1 on any error (a usage error included).
)";

Options parse(int argc, char **argv) {
  Options o;
  tools::ArgParser args("optim-train", kUsage, argc, argv);
  args.allowRepeated({"--set"});
  while (args.next()) {
    const std::string &arg = args.argument();
    o.given.insert(arg.substr(0, arg.find('=')));
    if (args.is("--rule"))
      o.rule = args.value();
    else if (args.is("--rule-name"))
      o.ruleName = args.value();
    else if (args.is("--meta-rule"))
      o.metaRule = args.value();
    else if (args.is("--meta-rule-name"))
      o.metaRuleName = args.value();
    else if (args.is("--meta-lr")) {
      o.metaLr = args.number();
      if (o.metaLr <= 0)
        args.error("--meta-lr must be positive");
    } else if (args.is("--task"))
      o.task = args.value();
    else if (args.is("--episodes"))
      o.episodes = args.integer(0);
    else if (args.is("--horizon"))
      o.horizon = args.integer(1);
    else if (args.is("--unroll"))
      o.unroll = args.integer(1);
    else if (args.is("--seed"))
      o.seed = uint64_t(args.integer(0));
    else if (args.is("--out"))
      o.out = args.value();
    else if (args.is("--checkpoint-every"))
      o.checkpointEvery = args.integer(1);
    else if (args.is("--eval-every"))
      o.evalEvery = args.integer(0);
    else if (args.is("--eval-runs"))
      o.evalRuns = args.integer(1);
    else if (args.is("--stop-after"))
      o.stopAfter = args.integer(0);
    else if (args.is("--resume")) {
      args.flag();
      o.resume = true;
    } else if (args.is("--init"))
      o.init = args.value();
    else if (args.is("--set")) {
      std::string v = args.value();
      size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0)
        args.error("--set expects NAME=VALUE, got '" + v + "'");
      std::string number = v.substr(eq + 1);
      char *end = nullptr;
      double x = std::strtod(number.c_str(), &end);
      if (number.empty() || *end || !std::isfinite(x))
        args.error("--set " + v.substr(0, eq) +
                   " expects a finite number, got '" + number + "'");
      for (const auto &[name, value] : o.hypers)
        if (name == v.substr(0, eq))
          args.error("--set " + name + " is given twice; give it once");
      o.hypers.push_back({v.substr(0, eq), x});
    } else if (args.is("--threads"))
      o.threads = unsigned(args.integer(1, UINT32_MAX));
    else if (args.is("--data-dir"))
      o.dataDir = args.value();
    else if (args.is("--train-images"))
      o.trainImages = args.value();
    else if (args.is("--eval-images"))
      o.evalImages = args.value();
    else if (args.is("--hidden-units"))
      o.hiddenUnits = int(args.integer(1, INT32_MAX));
    else if (args.is("--hidden-layers"))
      o.hiddenLayers = int(args.integer(0, INT32_MAX));
    else if (args.is("--activation"))
      o.activation = args.value();
    else if (args.is("--batch-size"))
      o.batchSize = int(args.integer(1, INT32_MAX));
    else if (args.is("--no-plot")) {
      args.flag();
      o.plot = false;
    } else if (args.is("--quiet")) {
      args.flag();
      o.quiet = true;
    } else
      args.unknown();
  }
  if (o.horizon % o.unroll != 0)
    args.error("--horizon (" + std::to_string(o.horizon) +
               ") must be a multiple of --unroll (" +
               std::to_string(o.unroll) + ")");
  return o;
}

/// An option that shapes a run, kept in its checkpoint as "run.NAME". A
/// resumed run takes the checkpoint's value of each one the command line
/// omits (a resume that forgot --task=mnist or --meta-lr=0.01 would
/// otherwise continue another run than the checkpoint's). Given with
/// another value, one that changes what is trained is refused; --meta-lr
/// and --eval-every, which change how, are taken.
struct RunSetting {
  const char *name; // The option without "--".
  bool mayChange;
  std::function<std::string(const Options &)> get;
  /// Sets the option from a value that `get` wrote; false if malformed.
  std::function<bool(Options &, const std::string &)> set;
};

/// The shortest of %.15g, %.16g, %.17g that reads back as `x` (0.2, not
/// 0.20000000000000001, in the messages that show it).
std::string formatDouble(double x) {
  char text[32];
  for (int digits = 15; digits <= 17; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, x);
    if (std::strtod(text, nullptr) == x)
      break;
  }
  return text;
}

bool parseInt(const std::string &text, int64_t &out) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end || errno == ERANGE || v < 0)
    return false;
  out = v;
  return true;
}

/// --set's values, one per name,
/// sorted by name: "k=10,scale=0.5".
std::string formatHypers(const Options &o) {
  std::map<std::string, double> byName;
  for (const auto &[name, value] : o.hypers)
    byName[name] = value;
  std::string text;
  for (const auto &[name, value] : byName)
    text += (text.empty() ? "" : ",") + name + "=" + formatDouble(value);
  return text;
}

bool parseHypers(Options &o, const std::string &text) {
  o.hypers.clear();
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t eq = item.find('=');
    char *end = nullptr;
    if (eq == std::string::npos || eq == 0)
      return false;
    double v = std::strtod(item.c_str() + eq + 1, &end);
    if (*end || end == item.c_str() + eq + 1)
      return false;
    o.hypers.push_back({item.substr(0, eq), v});
  }
  return true;
}

const std::vector<RunSetting> &runSettings() {
  auto text = [](std::string Options::*field) {
    return RunSetting{
        nullptr, false, [=](const Options &o) { return o.*field; },
        [=](Options &o, const std::string &v) { return (o.*field = v, true); }};
  };
  auto path = [](std::string Options::*field) {
    return RunSetting{nullptr, false,
                      [=](const Options &o) {
                        char *real = ::realpath((o.*field).c_str(), nullptr);
                        std::string abs = real ? real : o.*field;
                        std::free(real);
                        return abs;
                      },
                      [=](Options &o, const std::string &v) {
                        return (o.*field = v, true);
                      }};
  };
  // In [lo, hi], the range the command line allows (a checkpoint's
  // run.unroll=0 looped forever).
  auto integer = [](auto Options::*field, int64_t lo = 0,
                    int64_t hi = INT64_MAX) {
    return RunSetting{
        nullptr, false,
        [=](const Options &o) { return std::to_string(o.*field); },
        [=](Options &o, const std::string &v) {
          int64_t x;
          if (!parseInt(v, x) || x < lo || x > hi)
            return false;
          o.*field = decltype(o.*field + 0)(x);
          return true;
        }};
  };
  auto named = [](const char *name, bool mayChange, RunSetting s) {
    s.name = name;
    s.mayChange = mayChange;
    return s;
  };
  static const std::vector<RunSetting> settings = {
      // The rule files as absolute paths, so that a resume from another
      // folder finds them; another file is taken, with a note (the weights'
      // shapes are checked against it when the checkpoint is read).
      named("rule", true, path(&Options::rule)),
      named("rule-name", true, text(&Options::ruleName)),
      named("meta-rule", true, path(&Options::metaRule)),
      named("meta-rule-name", true, text(&Options::metaRuleName)),
      named("task", false, text(&Options::task)),
      named("seed", false, integer(&Options::seed)),
      named("horizon", false, integer(&Options::horizon, 1)),
      named("unroll", false, integer(&Options::unroll, 1)),
      named("hidden-units", false,
            integer(&Options::hiddenUnits, 1, INT32_MAX)),
      named("hidden-layers", false,
            integer(&Options::hiddenLayers, 0, INT32_MAX)),
      named("activation", false, text(&Options::activation)),
      named("batch-size", false, integer(&Options::batchSize, 1, INT32_MAX)),
      named("train-images", false, text(&Options::trainImages)),
      named("eval-images", false, text(&Options::evalImages)),
      named("eval-runs", false, integer(&Options::evalRuns, 1)),
      named("set", false,
            RunSetting{nullptr, false, formatHypers, parseHypers}),
      named("meta-lr", true,
            RunSetting{nullptr, false,
                       [](const Options &o) { return formatDouble(o.metaLr); },
                       [](Options &o, const std::string &v) {
                         char *end = nullptr;
                         o.metaLr = std::strtod(v.c_str(), &end);
                         return !v.empty() && !*end && o.metaLr > 0;
                       }}),
      named("eval-every", true, integer(&Options::evalEvery)),
  };
  return settings;
}

/// Reconciles the options with the run settings of the checkpoint `file`
/// (see RunSetting). Checkpoints written before they were kept have none.
void resumeRunSettings(Options &o, const SafetensorsFile &file,
                       const std::string &ckpt) {
  for (const RunSetting &s : runSettings()) {
    std::string key = std::string("run.") + s.name;
    if (!file.hasMetadata(key))
      continue;
    std::string option = std::string("--") + s.name;
    std::string stored = file.metadata(key), mine = s.get(o);
    if (!o.given.count(option)) {
      if (!s.set(o, stored))
        throw Error("'" + ckpt + "': corrupt metadata '" + key + "'");
      continue;
    }
    if (mine == stored)
      continue;
    if (!s.mayChange)
      throw Error("--resume: '" + ckpt + "' is a run with " + option + "=" +
                  stored + ", not " + mine +
                  "; omit " + option + " to continue it, or start another "
                  "run with another --out");
    std::fprintf(stderr,
                 "optim-train: %s=%s replaces the checkpoint's %s\n",
                 option.c_str(), mine.c_str(), stored.c_str());
  }
  // What the command line checks across options, for the settings taken.
  if (o.horizon % o.unroll != 0)
    throw Error("'" + ckpt + "': corrupt metadata: run.horizon (" +
                std::to_string(o.horizon) +
                ") is not a multiple of run.unroll (" +
                std::to_string(o.unroll) + ")");
}

double peakRssMiB() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0; // Linux: kilobytes.
}

bool fileExists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void writeWeights(const std::string &path, const RuleInfo &info,
                  const std::vector<std::vector<float>> &weights,
                  std::map<std::string, std::string> meta) {
  std::vector<TensorRef> tensors;
  for (size_t w = 0; w < weights.size(); ++w)
    tensors.push_back({info.weights[w].name, DType::F32, info.weights[w].shape,
                       weights[w].data()});
  writeSafetensors(path, tensors, meta);
}

/// Keeps the header and the rows of episodes < `episodes` of a CSV log.
void truncateLog(const std::string &path, int64_t episodes) {
  std::ifstream in(path);
  if (!in)
    return;
  std::string line, kept;
  bool header = true;
  while (std::getline(in, line)) {
    if (header || std::strtoll(line.c_str(), nullptr, 10) < episodes)
      kept += line + "\n";
    header = false;
  }
  in.close();
  // Atomically: a run killed here must not lose the log of its episodes.
  writeFileAtomically(path, kept);
}

/// The selection criterion of the paper's code: the mean over `o.evalRuns`
/// fixed optimizees of sum_{t=1..horizon} f(theta_t), the losses of the
/// minibatches the optimizee trains on, with the learned rule run forward
/// only. Seeds 2000001... keep it apart from optim-eval's (1... for the
/// evaluation, 1000001... for tuning). A run whose loss stops being finite
/// makes the mean infinite.
double selectionLoss(const Options &o, const Rule &rule,
                     const std::vector<std::vector<float>> &weights,
                     const tasks::TaskOptions &taskOptions) {
  const RuleInfo &info = rule.info();
  double total = 0;
  for (int64_t k = 0; k < o.evalRuns; ++k) {
    std::unique_ptr<tasks::Task> task =
        tasks::makeTask(o.task, 2000001 + uint64_t(k), taskOptions);
    std::vector<Param> params;
    for (auto &p : task->parameters())
      params.emplace_back(p.data(), int64_t(p.size()));
    OptimizerOptions options;
    options.threads = o.threads;
    // The rule's random numbers, if it draws: fixed per optimizee, as the
    // optimizees are.
    options.seed = 2000001 + uint64_t(k);
    Optimizer opt(rule, params, options);
    for (size_t w = 0; w < weights.size(); ++w)
      opt.setWeights(info.weights[w].name, weights[w].data(),
                     int64_t(weights[w].size()));
    for (const auto &[name, value] : o.hypers)
      opt.set(name, value);
    std::vector<std::vector<float>> grad;
    task->step(grad);
    for (int64_t t = 0; t < o.horizon; ++t) {
      std::vector<Grad> g;
      for (auto &v : grad)
        g.emplace_back(v.data(), int64_t(v.size()));
      opt.step(g);
      double loss = task->step(grad);
      if (!std::isfinite(loss))
        return INFINITY;
      total += loss;
    }
  }
  return total / double(o.evalRuns);
}

void plot(const std::string &dir) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "optim-train: warning: gnuplot not found, no plot "
                         "(install gnuplot-nox)\n");
    return;
  }
  std::string script = dir + "/plot.gp";
  std::ofstream gp(script);
  gp << "set terminal pngcairo size 900,540 noenhanced\n"
     << "set output '" << dir << "/meta-loss.png'\n"
     << "set datafile separator ','\n"
     << "set key autotitle columnhead\n"
     << "set xlabel 'episode'\nset ylabel 'loss'\nset logscale y\n"
     << "set title 'optim-train: mean optimizee loss per episode'\n"
     << "plot '" << dir << "/log.csv' using 1:2 with lines title "
     << "'meta-loss (mean f over the horizon)', '' using 1:3 with lines "
     << "title 'final training loss', '' using 1:4 with lines title "
     << "'final held-out loss'\n";
  gp.close();
  std::string cmd = "gnuplot '" + script + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    // pngcairo may be missing from a gnuplot build: fall back to png.
    std::string fallback = "sed -i 's/pngcairo/png/' '" + script +
                           "' && gnuplot '" + script + "' 2>&1";
    if (std::system(fallback.c_str()) != 0)
      std::fprintf(stderr, "optim-train: warning: gnuplot failed; no plot\n");
  }
}

/// The SHA-256 of a rule file's text ("" when it cannot be read): kept in
/// the checkpoint, so that a resume whose rule file was edited since (the
/// same path, another rule body) says that it does not continue the run bit
/// for bit.
std::string ruleDigest(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return "";
  std::stringstream text;
  text << in.rdbuf();
  const std::string bytes = text.str();
  return llvm::toHex(llvm::SHA256::hash(llvm::arrayRefFromStringRef(bytes)),
                     /*LowerCase=*/true);
}

/// `o` by value: --resume completes it with the checkpoint's run settings.
int run(Options o) {
  std::string ckpt = o.out + "/checkpoint.safetensors";
  std::string logPath = o.out + "/log.csv";
  if (o.resume && !fileExists(ckpt))
    throw Error("--resume: no checkpoint at '" + ckpt + "'");
  // The rule files' text as compiled (read once: an edit during the run
  // does not change what the checkpoints say was trained).
  std::string ruleSha, metaRuleSha;
  if (o.resume) {
    SafetensorsFile file = SafetensorsFile::read(ckpt);
    resumeRunSettings(o, file, ckpt);
    ruleSha = ruleDigest(o.rule);
    metaRuleSha = ruleDigest(o.metaRule);
    for (auto [key, path, sha] :
         {std::tuple{"rule-sha256", &o.rule, &ruleSha},
          std::tuple{"meta-rule-sha256", &o.metaRule, &metaRuleSha}}) {
      const std::string name = std::string("run.") + key;
      // A file that replaced the checkpoint's (--rule=other.optim) is not
      // "changed": the rule check below says whether it may continue.
      const std::string pathKey =
          key == std::string("rule-sha256") ? "run.rule" : "run.meta-rule";
      char *real = ::realpath(path->c_str(), nullptr);
      bool sameFile = !file.hasMetadata(pathKey) ||
                      file.metadata(pathKey) == (real ? real : *path);
      std::free(real);
      if (sameFile && file.hasMetadata(name) && file.metadata(name) != *sha)
        std::fprintf(stderr,
                     "optim-train: note: '%s' changed since the checkpoint "
                     "was written; the run continues with its new text, "
                     "not as the uninterrupted run would have\n",
                     path->c_str());
    }
  } else {
    ruleSha = ruleDigest(o.rule);
    metaRuleSha = ruleDigest(o.metaRule);
  }
  // After the checkpoint's settings: the task may come from there.
  std::vector<std::string> mlpGiven;
  for (const char *name :
       {"--data-dir", "--hidden-units", "--hidden-layers", "--activation",
        "--batch-size", "--train-images", "--eval-images"})
    if (o.given.count(name))
      mlpGiven.push_back(name);
  std::string unused = tools::mlpOptionsUnused(o.task, mlpGiven);
  if (!unused.empty())
    throw Error(unused);
  if (!o.resume && fileExists(ckpt))
    throw Error("'" + ckpt +
                "' exists: pass --resume to continue that run, or "
                "choose another --out");

  CompileOptions learnedOptions;
  learnedOptions.vjp = true;
  // The compiler's "name the one to compile" gets the option that does.
  auto compile = [](Compiler &&compiler, const std::string &file,
                    const std::string &name, const char *option) {
    try {
      Rule compiled = compiler.compileFile(file, Target::cpu(), name);
      tools::printWarnings(compiler.lastWarnings());
      return compiled;
    } catch (const Error &e) {
      std::string what = e.what();
      if (name.empty() && what.find("name the one") != std::string::npos)
        throw Error(what + " with " + option + "=NAME");
      throw;
    }
  };
  Rule rule =
      compile(Compiler(learnedOptions), o.rule, o.ruleName, "--rule-name");
  const RuleInfo &info = rule.info();
  if (info.weights.empty())
    throw Error("rule '" + info.name + "' of '" + o.rule +
                "' has no learned weights: nothing to meta-train");
  Rule metaRule =
      compile(Compiler(), o.metaRule, o.metaRuleName, "--meta-rule-name");
  // The episodes feed both rules gradients only (the meta-rule gets the
  // meta-gradient of the weights): nothing supplies per-coordinate inputs.
  for (const Rule *r : {&rule, &metaRule}) {
    std::string unsupplied =
        tools::inputsUnsupplied(r->info().name, r->info().inputs);
    if (!unsupplied.empty())
      throw Error(unsupplied);
  }

  tasks::TaskOptions taskOptions;
  taskOptions.dataDir = o.dataDir;
  taskOptions.hiddenUnits = o.hiddenUnits;
  taskOptions.hiddenLayers = o.hiddenLayers;
  taskOptions.activation = o.activation;
  taskOptions.batchSize = o.batchSize;
  tasks::parseImageRange(o.trainImages, "--train-images",
                         taskOptions.trainFirst, taskOptions.trainCount);
  tasks::parseImageRange(o.evalImages, "--eval-images", taskOptions.evalFirst,
                         taskOptions.evalCount);
  // Checks the task and its options once, before anything is written.
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> shapes;
  {
    std::unique_ptr<tasks::Task> probe =
        tasks::makeTask(o.task, 0, taskOptions);
    for (auto &p : probe->parameters())
      sizes.push_back(int64_t(p.size()));
    shapes = probe->shapes();
    shapes.resize(sizes.size()); // Tasks may leave tensors unshaped.
  }

  for (const auto &[name, value] : o.hypers) {
    int h = info.findHyper(name);
    if (h < 0)
      throw Error("--set: rule '" + info.name + "' has no hyperparameter '" +
                  name + "'");
    if (info.hypers[h].isConst)
      throw Error("--set: '" + name + "' is const in rule '" + info.name +
                  "'; its value is compiled in");
  }

  // The weights and the meta-optimizer over them.
  std::mt19937_64 rng(o.seed);
  std::vector<std::vector<float>> weights = train::randomWeights(info, rng);
  if (!o.init.empty()) {
    SafetensorsFile file = SafetensorsFile::read(o.init);
    for (size_t w = 0; w < weights.size(); ++w)
      std::memcpy(
          weights[w].data(),
          file.tensor(info.weights[w].name, DType::F32, info.weights[w].shape),
          weights[w].size() * sizeof(float));
  }
  std::vector<Param> refs;
  for (auto &w : weights)
    refs.emplace_back(w.data(), int64_t(w.size()));
  OptimizerOptions metaOptions;
  metaOptions.threads = 1; // 5k weights: threads would only cost.
  metaOptions.seed = o.seed;
  Optimizer meta(metaRule, refs, metaOptions);
  if (metaRule.info().findHyper("lr") < 0)
    throw Error("meta-rule '" + metaRule.info().name + "' has no 'lr'");
  meta.set("lr", o.metaLr);

  if (::mkdir(o.out.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error("cannot create --out folder '" + o.out +
                "': " + std::strerror(errno));

  int64_t firstEpisode = 0;
  // The best selection evaluation so far (--eval-every), kept in the
  // checkpoint so that a resumed run keeps the same best weights.
  double bestLoss = INFINITY;
  int64_t bestEpisode = -1;
  std::string evalPath = o.out + "/eval.csv";
  if (o.resume) {
    SafetensorsFile file = SafetensorsFile::read(ckpt);
    if (file.metadata("rule") != metaRule.info().name ||
        file.metadata("learned_rule") != info.name)
      throw Error("--resume: '" + ckpt + "' is a run of learned rule '" +
                  file.metadata("learned_rule") + "' with meta-rule '" +
                  file.metadata("rule") + "', not of '" + info.name +
                  "' with '" + metaRule.info().name +
                  "'; resume it with its own rules, or start another run "
                  "with another --out");
    for (size_t w = 0; w < weights.size(); ++w)
      std::memcpy(weights[w].data(),
                  file.tensor("weights." + info.weights[w].name, DType::F32,
                              info.weights[w].shape),
                  weights[w].size() * sizeof(float));
    meta.load(ckpt);
    meta.set("lr", o.metaLr);
    // Counters and the generator are checked, not trusted: std::stoll's
    // own exception ("stoll") would name neither the file nor the field.
    auto corrupt = [&](const char *key) {
      return Error("'" + ckpt + "': corrupt metadata '" + key + "'");
    };
    auto counter = [&](const char *key) {
      std::string text = file.metadata(key);
      char *end = nullptr;
      errno = 0;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end || errno == ERANGE || v < 0)
        throw corrupt(key);
      return int64_t(v);
    };
    firstEpisode = counter("episode");
    if (firstEpisode >= o.episodes) {
      std::printf("optim-train: '%s' is at episode %lld and --episodes is "
                  "%lld: nothing to train (its weights: "
                  "%s/weights.safetensors)\n",
                  ckpt.c_str(), (long long)firstEpisode,
                  (long long)o.episodes, o.out.c_str());
      return 0;
    }
    std::istringstream rngText(file.metadata("rng"));
    if (!(rngText >> rng))
      throw corrupt("rng");
    if (file.hasMetadata("best_episode")) {
      bestEpisode = counter("best_episode");
      std::string text = file.metadata("best_sum_f");
      char *end = nullptr;
      bestLoss = std::strtod(text.c_str(), &end);
      if (text.empty() || *end)
        throw corrupt("best_sum_f");
    }
    truncateLog(logPath, firstEpisode);
    truncateLog(evalPath, firstEpisode + 1);
  }

  bool newLog = !fileExists(logPath) || !o.resume;
  std::ofstream log(logPath, newLog ? std::ios::trunc : std::ios::app);
  if (!log)
    throw Error("cannot write '" + logPath + "'");
  if (newLog)
    log << "episode,meta_loss,final_loss,eval_loss,seconds,peak_rss_mib,"
           "tape_mib\n";

  auto saveCheckpoint = [&](int64_t episodesDone) {
    std::string tmp = o.out + "/meta-optimizer.tmp";
    meta.save(tmp);
    SafetensorsFile metaFile = SafetensorsFile::read(tmp);
    std::vector<TensorRef> tensors;
    std::vector<std::vector<float>> metaStates;
    const RuleInfo &mi = metaRule.info();
    for (size_t w = 0; w < weights.size(); ++w) {
      tensors.push_back({"weights." + info.weights[w].name, DType::F32,
                         info.weights[w].shape, weights[w].data()});
      for (const StateSpec &s : mi.states) {
        std::string name = "param" + std::to_string(w) + "." + s.name;
        std::vector<int64_t> shape = metaFile.shape(name);
        tensors.push_back({name, DType::F32, shape,
                           metaFile.tensor(name, DType::F32, shape)});
      }
    }
    std::map<std::string, std::string> meta;
    for (const char *key : {"format", "abi", "rule", "dtype", "states",
                            "params", "step", "skipped", "hypers"})
      meta[key] = metaFile.metadata(key);
    std::ostringstream rngText;
    rngText << rng;
    meta["learned_rule"] = info.name;
    meta["episode"] = std::to_string(episodesDone);
    meta["seed"] = std::to_string(o.seed);
    meta["rng"] = rngText.str();
    for (const RunSetting &s : runSettings())
      meta[std::string("run.") + s.name] = s.get(o);
    meta["run.rule-sha256"] = ruleSha;
    meta["run.meta-rule-sha256"] = metaRuleSha;
    if (bestEpisode >= 0) {
      char text[32];
      std::snprintf(text, sizeof text, "%.17g", bestLoss);
      meta["best_sum_f"] = text;
      meta["best_episode"] = std::to_string(bestEpisode);
    }
    writeSafetensors(ckpt, tensors, meta);
    ::unlink(tmp.c_str());
    writeWeights(o.out + "/weights.safetensors", info, weights,
                 {{"rule", info.name},
                  {"episodes", std::to_string(episodesDone)},
                  {"seed", std::to_string(o.seed)},
                  {"task", o.task},
                  {"set", formatHypers(o)}});
    log.flush();
  };

  TrajectoryOptions trajOptions;
  trajOptions.threads = o.threads;
  trajOptions.chunkSize = train::kChunkSize;
  // The rule's random numbers (`rand()`, `randn()`), if it draws: keyed by
  // each episode's optimizee seed (below), which the run's RNG draws and the
  // checkpoint saves, so that a run and its resumption are deterministic.
  trajOptions.seed = o.seed;
  // The optimizee's matrices, for a rule that reads rows() or cols(), as
  // optim-eval gives them to optim::Optimizer.
  trajOptions.shapes = shapes;
  // One trajectory for the run (runEpisode resets it): its tape buffers are
  // reused from episode to episode.
  Trajectory traj(rule, sizes, trajOptions);
  for (const auto &[name, value] : o.hypers)
    traj.set(name, value);
  auto start = std::chrono::steady_clock::now();
  bool tty = !o.quiet && ::isatty(STDERR_FILENO);
  double smoothed = NAN;
  int64_t last = o.episodes;
  if (o.stopAfter >= 0)
    last = std::min(o.episodes, firstEpisode + o.stopAfter);
  size_t tapeBytes = 0;
  for (int64_t e = firstEpisode; e < last; ++e) {
    // A fresh optimizee: its seed comes from the run's RNG, which the
    // checkpoint saves.
    uint64_t optimizeeSeed = rng();
    std::unique_ptr<tasks::Task> task =
        tasks::makeTask(o.task, optimizeeSeed, taskOptions);
    // The rule's random numbers, if it draws, are the optimizee's own too:
    // one noise sequence for every episode would be a fixed input that the
    // weights could fit.
    traj.resetState();
    traj.setSeed(optimizeeSeed);
    train::EpisodeResult ep = train::runEpisode(
        traj, *task, info, weights, meta, o.horizon, o.unroll, e);
    tapeBytes = std::max(tapeBytes, ep.tapeBytes);
    double lossSum = ep.lossSum, finalLoss = ep.finalLoss;
    double metaLoss = lossSum / double(o.horizon);
    double evalLoss = task->evaluate();
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    log << e << "," << metaLoss << "," << finalLoss << "," << evalLoss << ","
        << seconds << "," << peakRssMiB() << ","
        << double(tapeBytes) / (1024.0 * 1024.0) << "\n";
    smoothed =
        std::isnan(smoothed) ? metaLoss : 0.9 * smoothed + 0.1 * metaLoss;
    if (tty) {
      int width = 30;
      int done = int(width * double(e + 1) / double(o.episodes));
      std::fprintf(stderr, "\r[%s%s] %lld/%lld meta-loss %.4g (avg %.4g) %.0fs",
                   std::string(done, '#').c_str(),
                   std::string(width - done, '.').c_str(), (long long)(e + 1),
                   (long long)o.episodes, metaLoss, smoothed, seconds);
      std::fflush(stderr);
    }
    if (o.evalEvery > 0 && (e + 1) % o.evalEvery == 0) {
      double sel = selectionLoss(o, rule, weights, taskOptions);
      bool better = sel < bestLoss;
      if (better) {
        bestLoss = sel;
        bestEpisode = e + 1;
        writeWeights(o.out + "/best-weights.safetensors", info, weights,
                     {{"rule", info.name},
                      {"episodes", std::to_string(e + 1)},
                      {"seed", std::to_string(o.seed)},
                      {"task", o.task},
                      {"set", formatHypers(o)},
                      {"selection_sum_f", std::to_string(sel)}});
      }
      bool newEval = !fileExists(evalPath);
      std::ofstream evalLog(evalPath, std::ios::app);
      if (!evalLog)
        throw Error("cannot write '" + evalPath + "'");
      if (newEval)
        evalLog << "episode,mean_sum_f,best_episode\n";
      evalLog << (e + 1) << "," << sel << "," << bestEpisode << "\n";
      if (!tty && !o.quiet)
        std::fprintf(stderr,
                     "optim-train: episode %lld: selection mean sum f %.6g "
                     "(best %.6g at episode %lld)\n",
                     (long long)(e + 1), sel, bestLoss,
                     (long long)bestEpisode);
    }
    if ((e + 1) % o.checkpointEvery == 0 || e + 1 == o.episodes) {
      saveCheckpoint(e + 1);
      if (!tty && !o.quiet)
        std::fprintf(stderr,
                     "optim-train: episode %lld/%lld meta-loss %.6g (avg "
                     "%.6g), checkpoint written\n",
                     (long long)(e + 1), (long long)o.episodes, metaLoss,
                     smoothed);
    }
  }
  if (tty)
    std::fputc('\n', stderr);
  log.close();
  // One episode is one point: no line to draw, and gnuplot warns of an
  // empty x range.
  if (o.plot && last > firstEpisode && last >= 2)
    plot(o.out);
  std::printf("optim-train: %lld episodes of %s, unroll %lld: peak RSS %.1f "
              "MiB, tape %.1f MiB; weights in %s/weights.safetensors\n",
              (long long)last, o.task.c_str(), (long long)o.unroll,
              peakRssMiB(), double(tapeBytes) / (1024.0 * 1024.0),
              o.out.c_str());
  if (bestEpisode >= 0)
    std::printf("optim-train: best selection mean sum f %.6g at episode "
                "%lld: %s/best-weights.safetensors\n",
                bestLoss, (long long)bestEpisode, o.out.c_str());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception &e) {
    // optim::Error included: the compiler's located diagnostics print as
    // they are, without a second "error:".
    tools::printToolError("optim-train", e);
    return 1;
  }
}
