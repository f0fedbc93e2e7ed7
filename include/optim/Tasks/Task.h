//===- Task.h - built-in training tasks for optimizers ---------*- C++ -*-===//
//
// The problems an optimizer is run on by `optimc run`, by the tests and by the
// meta-training of learned optimizers (Andrychowicz et al., 2016): a random
// 10-d quadratic and an MLP on MNIST-format images. Plain C++17 and zlib, no
// LLVM or MLIR, so a host program needs only the runtime next to it.
//
//   auto task = optim::tasks::makeTask("mnist", /*seed=*/1);
//   std::vector<std::vector<float>> grads;
//   for (int t = 0; t < 100; ++t) {
//     double loss = task->step(grads);   // new minibatch, loss and gradient
//     ...                                // update task->parameters()
//   }
//   double heldOut = task->evaluate();
//
// Everything (problem, initialization, minibatches) depends only on the
// seed, identically on every platform.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TASKS_TASK_H
#define OPTIM_TASKS_TASK_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace optim::tasks {

/// The MLP's limits (an error beyond them, not an allocation that fails):
/// per-layer width, depth, minibatch, and parameters in all (2^27 floats,
/// 512 MiB).
constexpr int kMaxHiddenUnits = 65536, kMaxHiddenLayers = 64,
              kMaxBatchSize = 65536;
constexpr int64_t kMaxParameters = int64_t(1) << 27;

struct TaskOptions {
  /// An MNIST-format folder (IDX files, .gz or not). When empty, "mnist"
  /// reads $OPTIM_MNIST_DIR, else ../shared/data/mnist relative to the
  /// current directory, else /work/shared/data/mnist; "fashion-mnist" reads
  /// $OPTIM_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist
  /// (Debian's dataset-fashion-mnist).
  std::string dataDir;
  /// MLP width.
  int hiddenUnits = 20;
  /// MLP depth; 0 gives multinomial logistic regression.
  int hiddenLayers = 1;
  /// "sigmoid" or "relu".
  std::string activation = "sigmoid";
  int batchSize = 128;
  /// The task uses ONE image set of the folder: "mnist" prefers t10k (the
  /// only one in shared/data/mnist), "fashion-mnist" prefers train; each
  /// falls back to the other. Both ranges index into that set and must fit.
  /// Images used for training minibatches.
  int64_t trainFirst = 0, trainCount = 8000;
  /// Held-out images for evaluate().
  int64_t evalFirst = 8000, evalCount = 2000;
};

class Task {
public:
  virtual ~Task() = default;
  virtual const std::string &name() const = 0;
  /// The parameter tensors in a fixed order (for the MLP: W1, b1, W2, b2,
  /// ..., each W row-major [fan-in][fan-out]), initialized from the seed;
  /// the optimizer updates them in place.
  virtual std::vector<std::vector<float>> &parameters() = 0;
  /// The shape of each tensor of parameters(), row-major as stored (the
  /// MLP's W [fan-in, fan-out], its b [fan-out]), for optim::Param::shaped:
  /// rules with row or column states see the matrices. Empty: not given.
  virtual std::vector<std::vector<int64_t>> shapes() const { return {}; }
  /// Draws the next minibatch (the quadratic has none) and returns the loss
  /// at the current parameters, writing d loss/d parameter into grads
  /// (resized to match parameters()).
  virtual double step(std::vector<std::vector<float>> &grads) = 0;
  /// Loss on held-out data at the current parameters (the quadratic: its
  /// loss).
  virtual double evaluate() = 0;
  /// The loss of the minibatch last drawn by step() (the quadratic: its
  /// loss) at `params`, laid out as parameters(), computed in double with
  /// the same code as step(); with `grads`, also its gradient. For gradient
  /// checks by finite differences, which float cannot resolve.
  virtual double lossAndGradient(const std::vector<std::vector<double>> &params,
                                 std::vector<std::vector<double>> *grads) = 0;
};

/// "quadratic" or "mnist" (also "fashion-mnist": the MNIST MLP on Debian's
/// dataset-fashion-mnist files). Throws optim::Error (optim/Rule.h) on an
/// unknown name, invalid options, or unreadable or malformed data, with a
/// message saying what and where.
std::unique_ptr<Task> makeTask(const std::string &name, uint64_t seed,
                               const TaskOptions &options = {});
std::vector<std::string> taskNames();

/// Where a rule's per-coordinate input (`input h`) comes from when a tool
/// runs the rule on a task (`optimc run --input h=hutchinson`).
enum class InputSource {
  /// I.i.d. standard normal per coordinate, fresh each step (SGLD's noise).
  Normal,
  /// I.i.d. uniform on [0, 1), fresh each step.
  Uniform,
  /// Hutchinson's estimate z * (H z) of the Hessian's diagonal, with a fresh
  /// Rademacher z each step and H z by hessianVectorProduct (Sophia-H,
  /// AdaHessian): unbiased, E[z * (H z)] = diag(H).
  Hutchinson,
};
/// "normal", "uniform", "hutchinson"; the parser throws optim::Error on any
/// other name, listing these.
std::vector<std::string> inputSourceNames();
InputSource parseInputSource(const std::string &name);

/// H v, H the Hessian of the loss of the minibatch last drawn by
/// task.step() at the current parameters, by a central difference of the
/// gradient in double (Task::lossAndGradient):
///   H v ~ (grad f(theta + eps v) - grad f(theta - eps v)) / (2 eps),
///   eps = cbrt(2^-52) * max(1, max_i |theta_i|) / max_i |v_i|
/// (about 6e-6 for |theta| <= 1 and max |v| = 1; v = 0 gives 0): the step that balances the
/// difference's truncation error, O(eps^2), and its rounding error,
/// O(2^-52 / eps), relative to the parameters' scale. Exact up to rounding
/// for a quadratic loss. `v` and `hv` are laid out as parameters().
void hessianVectorProduct(Task &task, const std::vector<std::vector<double>> &v,
                          std::vector<std::vector<double>> &hv);

/// Draws one input per step for a rule run on a task. Seeded by the run's
/// seed and `stream` (the input's index), from streams of its own: the
/// task's draws (initialization, minibatches) are the same with or without
/// inputs, and two inputs draw independently. Deterministic for a seed.
class InputGenerator {
public:
  InputGenerator(InputSource source, uint64_t seed, uint64_t stream);
  ~InputGenerator();
  InputGenerator(InputGenerator &&) noexcept;
  InputGenerator &operator=(InputGenerator &&) noexcept;
  /// Fills `out` (resized as task.parameters()) with this step's input;
  /// Hutchinson's after task.step() has drawn the step's minibatch.
  void next(Task &task, std::vector<std::vector<float>> &out);

private:
  struct Impl;
  InputSource source;
  std::unique_ptr<Impl> impl;
};

/// Parses a range of images "FIRST:END" (images FIRST to END - 1, as a
/// Python slice without its step) into TaskOptions' first and count, for
/// command-line flags such as `--train-images=0:8000`. `flag` names the flag
/// in the error. Throws optim::Error on anything but two non-negative
/// decimal integers with FIRST < END; whether the range fits a data set is
/// checked by makeTask.
void parseImageRange(const std::string &text, const std::string &flag,
                     int64_t &first, int64_t &count);

} // namespace optim::tasks

#endif // OPTIM_TASKS_TASK_H
