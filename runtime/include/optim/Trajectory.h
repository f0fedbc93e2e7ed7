//===- Trajectory.h - unrolled steps of a rule and their reverse mode -----===//
//
// Part of the runtime: no LLVM or MLIR header may be included here.
//
// Meta-training (Andrychowicz et al., 2016) runs a rule for T steps on an
// optimizee's parameters θ, then backpropagates a loss Σ f(θ_t) through
// those steps to the rule's learned weights (and hyperparameters). A
// Trajectory owns θ and the rule's state, records what the backward pass
// needs at each step (θ_t, g_t, the rule's inputs and the state before the
// step), and runs the rule's VJP kernel over the recorded steps, newest
// first:
//
//   optim::CompileOptions o; o.vjp = true;
//   optim::Rule l2l = optim::Compiler(o).compileFile("examples/l2l.optim");
//   optim::Trajectory traj(l2l, {784 * 20 + 20, 20 * 10 + 10});
//   traj.loadWeights("weights.safetensors");
//   init θ through traj.param(i) ...
//   for (t = 0; t < 20; ++t) { grads = ∇f(θ); traj.step(grads); }
//   auto grad = traj.backward(dLdTheta);   // dL/dweights, dL/dhypers
//   traj.truncate();                        // keep θ and state, drop tape
//
// The gradient g fed to the rule is a constant of the backward pass (second
// derivatives of f dropped, as in the paper): dL/dθ_t is whatever the caller
// passes (∇f(θ_t) for L = Σ f(θ_t)) plus the adjoint carried back from
// θ_{t+1} by the rule. Weight gradients are summed per chunk by the kernel
// and over chunks and steps here, in a fixed order: the result is the same
// bit for bit whatever the number of threads.
//
// A rule with tensor reductions (norms, means, ... of a tensor or of all of
// them) takes its two forward passes as optim::Optimizer does, and each
// record also keeps the reduced values the step ran with. Backward runs the
// two VJP kernels of KernelABI.h ("Reverse mode of rules with tensor
// reductions") around the runtime's combine of the reduced values'
// cotangents, in chunk order too.
//
// A rule with row or column states or reductions (Adafactor, SM3) runs its
// forward steps on an optim::Optimizer of its own over θ, with the shapes
// of TrajectoryOptions::shapes; backward gives each coordinate its row's
// and column's values and sums what flows back to them over the row or
// column (KernelABI.h, "Reverse mode of rules with axes").
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_TRAJECTORY_H
#define OPTIM_RUNTIME_TRAJECTORY_H

#include "optim/Rule.h"

#include <memory>
#include <string>
#include <vector>

namespace optim {

struct TrajectoryOptions {
  /// Worker threads; 0 means one per hardware thread. At most 1024.
  unsigned threads = 0;
  /// Coordinates per chunk, the unit of work of a thread. The gradient's
  /// rounding depends on it (not on the number of threads).
  int64_t chunkSize = 32768;
  /// The key of the rule's random numbers (`rand()`, `randn()`; KernelABI.h
  /// version 8), as OptimizerOptions::seed: a coordinate's draws depend on
  /// the seed, its global index (its position in the parameters
  /// concatenated in order), the step and the draw site only, not on the
  /// threads or chunkSize. backward() passes the VJP kernels the rng the
  /// forward kernels had, so that they recompute the same draws. Ignored by
  /// rules that draw nothing.
  uint64_t seed = 0;
  /// The dimensions of each parameter, row-major, as Param::shape of
  /// optim::Optimizer: empty for all of them, else one per parameter (an
  /// empty one for a parameter without a shape). Rules with row or column
  /// states or reductions (KernelABI.h version 10) and rules that read the
  /// shape values rows() and cols() (version 11) see a tensor as [B, R, C]
  /// (C the last dimension, R the one before it, 1 for 1-D, B the product
  /// of the others); a tensor without a shape is one row, [1, 1, size].
  /// Other rules ignore it. A shape whose element count is not the
  /// parameter's size, with a negative dimension or more than 64 of them is
  /// refused.
  std::vector<std::vector<int64_t>> shapes;
};

/// The tensors of one per-coordinate input of a rule (`input h`) for
/// Trajectory::step: `name` as the rule declares it (RuleInfo::inputs), one
/// pointer per parameter, in parameter order, to as many elements of the
/// rule's dtype as the parameter has (null for an empty parameter). Like
/// the gradient, an input is a constant of the backward pass (no
/// cotangent), and the tape records a copy of it.
struct TrajectoryInput {
  std::string name;
  std::vector<const void *> tensors;
};

/// dL/d(learned weights) and dL/d(hyperparameters) of a backward pass.
struct RuleGradient {
  /// One per weights tensor of the rule, row-major, in declaration order.
  std::vector<std::vector<double>> weights;
  /// One per hyperparameter, in declaration order (0 for const ones).
  std::vector<double> hypers;
};

class Trajectory {
public:
  /// A trajectory over parameter tensors of the given sizes, owned by it,
  /// of the rule's dtype, initialized to 0. The rule must have its reverse
  /// mode (compiled with CompileOptions::vjp).
  Trajectory(Rule rule, std::vector<int64_t> sizes,
             TrajectoryOptions options = {});
  ~Trajectory();
  Trajectory(Trajectory &&) noexcept;
  Trajectory &operator=(Trajectory &&) noexcept;

  const Rule &rule() const;
  size_t numParams() const;
  int64_t paramSize(size_t i) const;
  /// θ_i now (after the last step), of the rule's dtype; write it to set the
  /// initial parameters (before the first step of a tape).
  void *param(size_t i);
  const void *param(size_t i) const;
  /// The state `name` of parameter `i` now: stateSize(i, name) elements,
  /// component-major for vectors; a row (column) state holds B * R (B * C)
  /// values, one per row (column) of the parameter's [B, R, C] view
  /// (TrajectoryOptions::shapes).
  void *state(size_t i, const std::string &name);
  int64_t stateSize(size_t i, const std::string &name) const;

  /// A hyperparameter for the following steps (a schedule may change it
  /// between steps: backward() differentiates each recorded step with the
  /// values it ran with).
  void set(const std::string &hyper, double value);
  double get(const std::string &hyper) const;
  /// Learned weights, as optim::Optimizer::setWeights / loadWeights. Only
  /// while no step is recorded (after truncate() or resetState()): the
  /// backward pass differentiates the recorded steps with the weights in
  /// use, which are not recorded per step.
  void setWeights(const std::string &name, const void *data, int64_t count);
  void loadWeights(const std::string &path);
  /// The weights `name` in use (count elements of the rule's dtype).
  const void *weights(const std::string &name) const;
  /// The seed of the rule's random numbers for the following steps
  /// (TrajectoryOptions::seed at construction). Only while no step is
  /// recorded, as setWeights: backward() recomputes the recorded steps'
  /// draws from the seed in use. Meta-training sets one per episode, so
  /// that each optimizee sees its own noise.
  void setSeed(uint64_t seed);
  uint64_t seed() const;

  /// Sets every state to its initial value, the step count to 0 and drops
  /// the tape (θ is left as it is).
  void resetState();
  /// Drops the tape, keeping θ, the state and the step count: the start of
  /// the next truncation of truncated backpropagation through time. Its
  /// buffers are kept and reused by the next steps (no allocation, no page
  /// faults); they are freed with the trajectory.
  void truncate();

  /// One step of the rule with one gradient per parameter (the rule's
  /// dtype), recording θ, g and the state before it. A gradient must not
  /// lie in the trajectory's own θ or state (copy it out first).
  void step(const std::vector<const void *> &grads);
  /// The same for a rule with per-coordinate inputs (RuleInfo::inputs,
  /// KernelABI.h version 7): `inputs` names every input of the rule exactly
  /// once, in any order; the tape records them with g, and backward() runs
  /// the VJP kernels with the inputs each step had. A rule without inputs
  /// takes an empty list; step(grads) refuses a rule with inputs. Nothing is
  /// recorded or changed when an argument is refused.
  void step(const std::vector<const void *> &grads,
            const std::vector<TrajectoryInput> &inputs);
  /// Steps recorded since the last truncate() / resetState().
  size_t tapeLength() const;
  /// Steps taken since the last resetState() (t of the last one).
  int64_t stepCount() const;

  /// Backward over the recorded steps. `dLdParams[k][i]` is the explicit
  /// dL/dθ_i after recorded step k (k = 0 .. tapeLength() - 1), of the
  /// rule's dtype, or null for none. The cotangents of θ and the state after
  /// the last step start at zero (nothing flows back across a truncation).
  /// Afterwards paramAdjoint / stateAdjoint hold dL/dθ and dL/dstate before
  /// the first recorded step. The tape is kept: backward may run again.
  RuleGradient
  backward(const std::vector<std::vector<const void *>> &dLdParams);
  /// dL/dθ_i and dL/dstate before the first recorded step (after backward),
  /// laid out as param(i) and state(i, name).
  const void *paramAdjoint(size_t i) const;
  const void *stateAdjoint(size_t i, const std::string &name) const;

  /// Bytes held by the tape (θ, g, the inputs and the state per recorded
  /// step, and the reduced values, R doubles per chunk, of a rule with
  /// reductions).
  size_t tapeBytes() const;

  struct Impl;

private:
  /// The state, or an optim::Error naming `fn` when moved from.
  Impl &live(const char *fn) const;

  std::unique_ptr<Impl> impl;
};

} // namespace optim

#endif // OPTIM_RUNTIME_TRAJECTORY_H
