//===- TrainedSettings.h - hyperparameters a weights file was trained with ===//
//
// optim-train records its --set values in the weights files it writes
// (metadata "set", "scale=0.05,k=10"): learned weights are trained for those
// values, and a run at other ones (the rule's defaults) evaluates something
// else, often a diverging rule. optimc run and optim-eval say so.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_COMMON_TRAINEDSETTINGS_H
#define OPTIM_TOOLS_COMMON_TRAINEDSETTINGS_H

#include "optim/Rule.h"
#include "optim/Safetensors.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>

namespace optim::tools {

/// Prints, for each hyperparameter of `info` that `weightsPath` was trained
/// with another value of than `valueOf(name)` gives this run, a note to
/// stderr naming both and the --set that matches the training. An
/// unreadable file or one without the record gives nothing (loading it
/// reports the file's own errors).
inline void noteTrainedSettings(
    const char *tool, const std::string &weightsPath, const RuleInfo &info,
    const std::function<double(const std::string &)> &valueOf) {
  std::string recorded;
  try {
    SafetensorsFile file = SafetensorsFile::read(weightsPath);
    if (!file.hasMetadata("set"))
      return;
    recorded = file.metadata("set");
  } catch (const Error &) {
    return;
  }
  std::istringstream in(recorded);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t eq = item.find('=');
    if (eq == std::string::npos)
      continue;
    std::string name = item.substr(0, eq);
    char *end = nullptr;
    double trained = std::strtod(item.c_str() + eq + 1, &end);
    if (*end || info.findHyper(name) < 0)
      continue;
    double now = valueOf(name);
    if (now == trained)
      continue;
    // The shortest spelling that reads back as the value: "0.1".
    char spelled[32];
    for (int digits = 6; digits <= 17; ++digits) {
      std::snprintf(spelled, sizeof spelled, "%.*g", digits, now);
      if (std::strtod(spelled, nullptr) == now)
        break;
    }
    std::fflush(stdout);
    std::fprintf(stderr,
                 "%s: note: '%s' was trained with %s=%s; this run uses "
                 "%s=%s (--set %s to run it as trained)\n",
                 tool, weightsPath.c_str(), name.c_str(),
                 item.substr(eq + 1).c_str(), name.c_str(), spelled,
                 item.c_str());
  }
}

} // namespace optim::tools

#endif // OPTIM_TOOLS_COMMON_TRAINEDSETTINGS_H
