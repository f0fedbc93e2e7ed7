//===- Run.cpp - `optimc run`: train a built-in task with a rule ----------===//
//
// Compiled with exceptions: the compiler and runtime APIs report errors with
// optim::Error, caught here and printed.
//
//===----------------------------------------------------------------------===//

#include "Run.h"

#include "optim/Compiler/Compiler.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Tasks/Task.h"

#include "InputFlags.h"
#include "ToolSupport.h"
#include "TrainedSettings.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>
#include <sys/stat.h>

using namespace optim;

int optim::runTask(const RunOptions &o) {
  try {
    if (o.steps < 0)
      throw Error("--steps must not be negative");
    if (o.every < 0)
      throw Error("--every must not be negative, got " +
                  std::to_string(o.every));
    // The CSV's folder must exist before the run, not after it.
    if (!o.csv.empty()) {
      const size_t slash = o.csv.find_last_of('/');
      const std::string dir = slash == std::string::npos ? "."
                              : slash == 0               ? "/"
                                           : o.csv.substr(0, slash);
      struct stat st;
      if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error("--csv: the folder '" + dir + "' of '" + o.csv +
                    "' does not exist");
    }
    // Checked here for every task, by the flags' names: the MLP tasks would
    // name their own fields.
    if (o.batchSize < 1)
      throw Error("--batch must be at least 1, got " +
                  std::to_string(o.batchSize));
    if (o.hiddenUnits < 1)
      throw Error("--hidden must be at least 1, got " +
                  std::to_string(o.hiddenUnits));
    if (o.hiddenLayers < 0)
      throw Error("--layers must not be negative, got " +
                  std::to_string(o.hiddenLayers));
    std::string unused = tools::mlpOptionsUnused(o.task, o.mlpOptionsGiven);
    if (!unused.empty())
      throw Error(unused);
    auto start = std::chrono::steady_clock::now();
    CompileOptions compileOptions;
    compileOptions.precision = o.f64 ? DType::F64 : DType::F32;
    if (o.f64)
      throw Error("the built-in tasks compute in f32: compile the rule with "
                  "--precision=f32");
    Compiler compiler(compileOptions);
    Rule rule = [&] {
      try {
        if (o.ruleFile == "-") { // As the compiler's own command line.
          std::string text{std::istreambuf_iterator<char>(std::cin),
                           std::istreambuf_iterator<char>()};
          if (std::cin.bad())
            throw Error("cannot read the rule from standard input");
          return compiler.compileSource(text, "<stdin>", Target::cpu(),
                                        o.ruleName);
        }
        return compiler.compileFile(o.ruleFile, Target::cpu(), o.ruleName);
      } catch (const Error &e) {
        // The compiler's "name the one to compile" gets the option that
        // does.
        std::string what = e.what();
        if (o.ruleName.empty() &&
            what.find("name the one") != std::string::npos)
          throw Error(what + " with --rule=NAME");
        throw;
      }
    }();
    tools::printWarnings(compiler.lastWarnings());
    // The inputs' sources, checked before the task reads its data.
    const std::vector<std::string> &ruleInputs = rule.info().inputs;
    std::vector<tools::InputFlag> sources = tools::parseInputFlags(o.inputs);
    for (const tools::InputFlag &given : sources) {
      if (ruleInputs.empty())
        throw Error("--input " + given.text + ": rule '" + rule.info().name +
                    "' has no per-coordinate inputs");
      if (std::find(ruleInputs.begin(), ruleInputs.end(), given.name) ==
          ruleInputs.end())
        throw Error("--input " + given.text + ": rule '" + rule.info().name +
                    "' has no input '" + given.name + "' (its inputs: " +
                    tools::quotedList(ruleInputs) + ")");
    }
    std::vector<std::string> missing;
    for (const std::string &n : ruleInputs)
      if (std::none_of(sources.begin(), sources.end(),
                       [&](const tools::InputFlag &s) { return s.name == n; }))
        missing.push_back(n);
    std::string sourceNames = tools::inputSourceList();
    // Some given, some not: name what is missing, not the whole signature.
    if (!sources.empty() && !missing.empty()) {
      throw Error("no --input for " + tools::quotedList(missing) +
                  " of rule '" +
                  rule.info().name + "', which takes " +
                  std::to_string(ruleInputs.size()) +
                  " inputs: add --input " + missing[0] +
                  "=SOURCE (SOURCE: " + sourceNames + ")" +
                  (missing.size() > 1 ? " for each" : ""));
    }
    std::string unsupplied = tools::inputsUnsupplied(
        rule.info().name, missing,
        "--input NAME=SOURCE (SOURCE: " + sourceNames + ")");
    if (!unsupplied.empty())
      throw Error(unsupplied);
    double compileMs = std::chrono::duration<double, std::milli>(
                           std::chrono::steady_clock::now() - start)
                           .count();

    tasks::TaskOptions taskOptions;
    taskOptions.dataDir = o.dataDir;
    taskOptions.hiddenUnits = o.hiddenUnits;
    taskOptions.hiddenLayers = o.hiddenLayers;
    taskOptions.activation = o.activation;
    taskOptions.batchSize = o.batchSize;
    if (!o.trainImages.empty())
      tasks::parseImageRange(o.trainImages, "--train-images",
                             taskOptions.trainFirst, taskOptions.trainCount);
    if (!o.evalImages.empty())
      tasks::parseImageRange(o.evalImages, "--eval-images",
                             taskOptions.evalFirst, taskOptions.evalCount);
    std::unique_ptr<tasks::Task> task =
        tasks::makeTask(o.task, o.seed, taskOptions);

    std::vector<std::vector<float>> &params = task->parameters();
    std::vector<Param> refs;
    // With their shapes, so that a rule with row or column states sees the
    // weight matrices (others ignore shapes).
    std::vector<std::vector<int64_t>> shapes = task->shapes();
    for (size_t i = 0; i < params.size(); ++i) {
      refs.emplace_back(params[i].data(), int64_t(params[i].size()));
      if (i < shapes.size())
        refs.back().shape = shapes[i];
    }
    // In the rule's order; each from its own stream of the seed.
    tools::RunInputs runInputs(ruleInputs, sources, o.seed);
    OptimizerOptions optimizerOptions;
    optimizerOptions.threads = o.threads;
    // The rule's random numbers (`rand()`, `randn()`) are keyed by the run's
    // seed too; rules that draw nothing ignore it.
    optimizerOptions.seed = o.seed;
    Optimizer opt(rule, refs, optimizerOptions);
    for (const auto &[name, value] : o.hypers)
      opt.set(name, value);
    if (!o.weights.empty()) {
      opt.loadWeights(o.weights);
      tools::noteTrainedSettings(
          "optimc run", o.weights, rule.info(),
          [&](const std::string &name) { return opt.get(name); });
    } else if (!rule.info().weights.empty())
      throw Error("rule '" + rule.info().name +
                  "' is a learned rule: give its weights with --weights "
                  "FILE.safetensors");

    int64_t every = o.every > 0 ? o.every : std::max<int64_t>(1, o.steps / 20);
    std::ostringstream settings;
    for (const HyperParam &h : rule.info().hypers)
      settings << " " << h.name << "=" << opt.get(h.name);
    if (!o.quiet) {
      std::printf(
          "rule %s (%s), kernel %s in %.0f ms\n", rule.info().name.c_str(),
          o.ruleFile == "-" ? "<stdin>" : o.ruleFile.c_str(),
          compiler.lastWasCached() ? "loaded from the cache" : "compiled",
          compileMs);
      // The inputs' sources in the rule's order: two runs that differ only
      // in them print different headers.
      std::string inputSettings;
      for (const std::string &n : ruleInputs)
        for (const std::string &given : o.inputs)
          if (given.compare(0, n.size() + 1, n + "=") == 0)
            inputSettings += (!inputSettings.empty()      ? " "
                              : settings.str().empty() ? " inputs "
                                                       : ", inputs ") +
                             given;
      std::printf("task %s, seed %llu, %lld steps,%s%s\n", o.task.c_str(),
                  (unsigned long long)o.seed, (long long)o.steps,
                  settings.str().c_str(), inputSettings.c_str());
      std::printf("%8s %12s %12s\n", "step", "train loss", "eval loss");
    }
    std::string csv = "step,train_loss,eval_loss\n";
    std::vector<std::vector<float>> grads;
    std::vector<Grad> gradRefs;
    double last = NAN;
    for (int64_t t = 0; t <= o.steps; ++t) {
      bool report = t % every == 0 || t == o.steps;
      if (t == o.steps) {
        if (report) {
          double eval = task->evaluate();
          csv += std::to_string(t) + ",," + std::to_string(eval) + "\n";
          if (!o.quiet)
            std::printf("%8lld %12s %12.6f\n", (long long)t, "", eval);
        }
        break;
      }
      last = task->step(grads);
      if (!std::isfinite(last))
        throw Error("the training loss is not finite at step " +
                    std::to_string(t) + " (diverged? try a smaller lr)");
      if (report) {
        double eval = task->evaluate();
        char line[128];
        std::snprintf(line, sizeof(line), "%lld,%.9g,%.9g\n", (long long)t,
                      last, eval);
        csv += line;
        if (!o.quiet)
          std::printf("%8lld %12.6f %12.6f\n", (long long)t, last, eval);
      }
      gradRefs.clear();
      for (auto &g : grads)
        gradRefs.emplace_back(g.data(), int64_t(g.size()));
      if (runInputs.empty())
        opt.step(gradRefs);
      else // After task->step(): Hutchinson's estimate uses its minibatch.
        opt.step(gradRefs, runInputs.next(*task));
    }
    double finalEval = task->evaluate();
    if (o.steps == 0) // No minibatch was drawn: no training loss to show.
      std::printf("final: eval loss %.6f (no steps)\n", finalEval);
    else
      std::printf("final: train loss %.6f (last minibatch), eval loss %.6f\n",
                  last, finalEval);
    if (!o.csv.empty())
      writeFileAtomically(o.csv, csv);
    return 0;
  } catch (const Error &e) {
    // The compiler's located diagnostics print as optimc's own do.
    tools::printToolError("optimc run", e);
    return 1;
  }
}
