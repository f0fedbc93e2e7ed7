//===- Run.h - `optimc run`: train a built-in task with a rule --*- C++ -*-===//

#ifndef OPTIM_TOOLS_OPTIMC_RUN_H
#define OPTIM_TOOLS_OPTIMC_RUN_H

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace optim {

struct RunOptions {
  std::string ruleFile;
  std::string ruleName;
  bool f64 = false;
  std::string task;
  int64_t steps = 100;
  uint64_t seed = 1;
  std::vector<std::pair<std::string, double>> hypers;
  std::string csv;
  unsigned threads = 0;
  int64_t every = 0; // 0: about 20 rows.
  std::string dataDir;
  int hiddenUnits = 20;
  int hiddenLayers = 1;
  std::string activation = "sigmoid";
  int batchSize = 128;
  // "FIRST:END" image ranges of the MLP tasks; empty: the task's defaults.
  std::string trainImages, evalImages;
  bool quiet = false;
  std::string weights; // safetensors file of a learned rule's weights.
  /// --input NAME=SOURCE as given (repeatable): a source for each
  /// per-coordinate input of the rule (tasks::InputSource).
  std::vector<std::string> inputs;
  /// The MLP options given on the command line ("--hidden", ...).
  std::vector<std::string> mlpOptionsGiven;
};

/// Compiles the rule, trains the task, prints the loss curve; returns the
/// exit status (1 after printing an error).
int runTask(const RunOptions &options);

} // namespace optim

#endif // OPTIM_TOOLS_OPTIMC_RUN_H
