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
