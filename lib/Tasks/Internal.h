//===- Internal.h - shared by the task implementations ---------*- C++ -*-===//

#ifndef OPTIM_LIB_TASKS_INTERNAL_H
#define OPTIM_LIB_TASKS_INTERNAL_H

#include "optim/Rule.h"
#include "optim/Tasks/Task.h"

#include <cmath>
#include <random>

namespace optim::tasks {

/// Standard normal draws that are the same on every platform:
/// std::normal_distribution's algorithm is implementation-defined, the
/// engine's output and this Box-Muller transform are not.
class NormalRng {
public:
  explicit NormalRng(uint64_t seed) : engine(seed) {}

  /// Uniform in [0, 1), from the top 53 bits.
  double uniform() { return double(engine() >> 11) * 0x1.0p-53; }
  /// Uniform integer in [0, n), without modulo bias worth mentioning for
  /// n far below 2^64 (the data sets' sizes).
  int64_t below(int64_t n) { return int64_t(uniform() * double(n)); }

  double normal() {
    if (hasSpare) {
      hasSpare = false;
      return spare;
    }
    double u1 = 1.0 - uniform(); // (0, 1]: the log is finite
    double u2 = uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    const double twoPi = 6.283185307179586;
    spare = r * std::sin(twoPi * u2);
    hasSpare = true;
    return r * std::cos(twoPi * u2);
  }

private:
  std::mt19937_64 engine;
  bool hasSpare = false;
  double spare = 0.0;
};

/// Independent streams from one seed (SplitMix64's finalizer), so that, e.g.,
/// the minibatch order does not depend on how many weights were drawn.
inline uint64_t deriveSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::unique_ptr<Task> makeQuadratic(uint64_t seed);
std::unique_ptr<Task> makeMnistMLP(const std::string &name,
                                   const std::string &dataDir,
                                   const std::vector<std::string> &splits,
                                   uint64_t seed, const TaskOptions &options);

} // namespace optim::tasks

#endif // OPTIM_LIB_TASKS_INTERNAL_H
