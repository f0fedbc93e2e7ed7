//===- InputFlags.h - `--input NAME=SOURCE` of the tools -------*- C++ -*-===//
//
// A rule with per-coordinate inputs (`input h`) needs one value per
// coordinate with every step besides the gradient. The built-in tasks can
// draw them (tasks::InputGenerator: normal or uniform noise, Hutchinson's
// z * Hz); `optimc run` and `optim-eval` choose the source of each input by
// name with `--input NAME=SOURCE`, parsed and drawn here so that both tools
// draw the same values for the same run seed.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_COMMON_INPUTFLAGS_H
#define OPTIM_TOOLS_COMMON_INPUTFLAGS_H

#include "optim/Optimizer.h"
#include "optim/Tasks/Task.h"

#include <string>
#include <vector>

namespace optim::tools {

/// One `--input NAME=SOURCE`, as given (`text`) and parsed.
struct InputFlag {
  std::string text;
  std::string name;
  tasks::InputSource source;
};

/// "normal, uniform, hutchinson": the sources, for messages.
inline std::string inputSourceList() {
  std::string names;
  for (const std::string &n : tasks::inputSourceNames())
    names += (names.empty() ? "" : ", ") + n;
  return names;
}

/// Parses `--input` values; throws optim::Error naming the flag on a value
/// without NAME=, an unknown SOURCE, or a NAME given twice.
inline std::vector<InputFlag>
parseInputFlags(const std::vector<std::string> &given) {
  std::vector<InputFlag> flags;
  for (const std::string &text : given) {
    size_t eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error("--input expects NAME=SOURCE (e.g. h=hutchinson), got '" +
                  text + "'");
    InputFlag flag{text, text.substr(0, eq), tasks::InputSource()};
    try {
      flag.source = tasks::parseInputSource(text.substr(eq + 1));
    } catch (const Error &e) {
      throw Error("--input " + text + ": " + e.what());
    }
    for (const InputFlag &other : flags)
      if (other.name == flag.name)
        throw Error("--input " + text + ": input '" + flag.name +
                    "' is given twice");
    flags.push_back(flag);
  }
  return flags;
}

/// The inputs of one run of a rule on a task: one generator per input of
/// the rule, in the rule's order, seeded by the run's seed and the input's
/// index (tasks::InputGenerator), so that a run is reproducible from its
/// seed and its draws do not depend on the other rules of a tool's command.
class RunInputs {
public:
  /// Every name of `ruleInputs` must have a flag (checked by the tools
  /// first, with messages about their own command lines).
  RunInputs(const std::vector<std::string> &ruleInputs,
            const std::vector<InputFlag> &flags, uint64_t seed)
      : names(ruleInputs), values(ruleInputs.size()),
        inputs(ruleInputs.size()) {
    for (size_t i = 0; i < ruleInputs.size(); ++i) {
      const InputFlag *flag = nullptr;
      for (const InputFlag &f : flags)
        if (f.name == ruleInputs[i])
          flag = &f;
      if (!flag)
        throw Error("no --input for the rule's input '" + ruleInputs[i] +
                    "'");
      generators.emplace_back(flag->source, seed, i);
    }
  }

  bool empty() const { return names.empty(); }

  /// This step's inputs. Call after task.step(): Hutchinson's estimate is
  /// of the minibatch that step drew.
  const std::vector<Input> &next(tasks::Task &task) {
    for (size_t i = 0; i < names.size(); ++i) {
      generators[i].next(task, values[i]);
      inputs[i].name = names[i];
      inputs[i].tensors.clear();
      for (std::vector<float> &v : values[i])
        inputs[i].tensors.emplace_back(v.data(), int64_t(v.size()));
    }
    return inputs;
  }

private:
  std::vector<std::string> names;
  std::vector<tasks::InputGenerator> generators;
  std::vector<std::vector<std::vector<float>>> values;
  std::vector<Input> inputs;
};

} // namespace optim::tools

#endif // OPTIM_TOOLS_COMMON_INPUTFLAGS_H
