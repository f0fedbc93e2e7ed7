//===- Task.cpp - the registry of built-in tasks --------------------------===//

#include "Internal.h"

#include <cstdlib>
#include <filesystem>

namespace optim::tasks {
namespace {

std::string envOr(const char *var, const std::string &fallback) {
  const char *v = std::getenv(var);
  return v && *v ? std::string(v) : fallback;
}

/// The project's tests and examples run from build folders or the project
/// root, next to the shared data; the absolute path is for anywhere else.
std::string defaultMnistDir() {
  std::error_code ec;
  std::string relative = "../shared/data/mnist";
  if (std::filesystem::is_directory(relative, ec))
    return relative;
  return "/work/shared/data/mnist";
}

} // namespace

std::vector<std::string> taskNames() {
  return {"quadratic", "mnist", "fashion-mnist"};
}

std::unique_ptr<Task> makeTask(const std::string &name, uint64_t seed,
                               const TaskOptions &options) {
  if (name == "quadratic")
    return makeQuadratic(seed);
  // shared/data/mnist holds only the t10k digits; Fashion-MNIST's training
  // set is 6 times larger than its test set.
  if (name == "mnist")
    return makeMnistMLP(name,
                        !options.dataDir.empty()
                            ? options.dataDir
                            : envOr("OPTIM_MNIST_DIR", defaultMnistDir()),
                        {"t10k", "train"}, seed, options);
  if (name == "fashion-mnist")
    return makeMnistMLP(name,
                        !options.dataDir.empty()
                            ? options.dataDir
                            : envOr("OPTIM_FASHION_MNIST_DIR",
                                    "/usr/share/datasets/fashion-mnist"),
                        {"train", "t10k"}, seed, options);
  std::string known;
  for (const std::string &n : taskNames())
    known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown task '" + name + "' (known: " + known + ")");
}

void parseImageRange(const std::string &text, const std::string &flag,
                     int64_t &first, int64_t &count) {
  auto bad = [&](const std::string &why) {
    return Error(flag + " expects FIRST:END (images FIRST to END-1, e.g. " +
                 "0:8000), got '" + text + "': " + why);
  };
  size_t colon = text.find(':');
  if (colon == std::string::npos)
    throw bad("no ':'");
  // Digits only: no sign, space or exponent that strtoll would let through.
  auto parse = [&](const std::string &part, const char *what) {
    if (part.empty() || part.size() > 15 ||
        part.find_first_not_of("0123456789") != std::string::npos)
      throw bad(std::string(what) + " is not a non-negative integer");
    return int64_t(std::stoll(part));
  };
  int64_t a = parse(text.substr(0, colon), "FIRST");
  int64_t b = parse(text.substr(colon + 1), "END");
  if (b <= a)
    throw bad("the range is empty");
  first = a;
  count = b - a;
}

} // namespace optim::tasks
