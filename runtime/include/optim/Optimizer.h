//===- Optimizer.h - apply a compiled rule to a model's parameters --------===//
//
// Part of the runtime: no LLVM or MLIR header may be included here.
//
//   optim::Compiler compiler;
//   optim::Rule adam = compiler.compileFile("examples/adam.optim");
//   optim::Optimizer opt(adam, {{w.data(), w.size()}, {b.data(), b.size()}});
//   opt.set("lr", 3e-3);                  // any step, no recompilation
//   opt.step({{gw.data(), gw.size()}, {gb.data(), gb.size()}});
//   opt.save("ckpt.safetensors");         // state + step count, atomic
//
// A rule with row or column states or reductions (`row state r`,
// row_mean(...); RuleInfo::hasAxes()) needs each parameter's shape:
//
//   optim::Optimizer opt(adafactor, {optim::Param(w.data(), w.size())
//                                        .shaped({out, in}),
//                                    {b.data(), b.size()}});
//
// A rule with per-coordinate inputs (`input h`, RuleInfo::inputs) takes them
// with every step, one tensor per parameter, by name:
//
//   opt.step({{gw, nw}, {gb, nb}}, {{"h", {{hw, nw}, {hb, nb}}}});
//
// Ownership: the optimizer never owns parameters or gradients; the caller
// keeps them alive and does not move them while the optimizer exists. It
// owns the state. Every method that throws optim::Error changed nothing.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_OPTIMIZER_H
#define OPTIM_RUNTIME_OPTIMIZER_H

#include "optim/Rule.h"

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace optim {

namespace detail {
/// The size of a Param or Grad from any integer type, so that
/// `{v.data(), v.size()}` is no narrowing error; a size_t beyond int64_t's
/// range becomes negative, which the optimizer refuses. The int64_t
/// constructors stay for what converts to an integer (enums, index types).
template <typename Int>
using IfInteger = std::enable_if_t<std::is_integral_v<Int>, int>;
} // namespace detail

/// A parameter tensor, updated in place (not owned), of the rule's dtype.
struct Param {
  void *data = nullptr;
  int64_t size = 0;
  DType dtype = DType::F32;
  /// The tensor's dimensions, row-major (e.g. a weight matrix [out, in] as
  /// stored); empty when not given. Rules with row or column states or
  /// reductions (RuleInfo::hasAxes(), KernelABI.h version 10, "Axes") see
  /// the tensor as [B, R, C]: C the last dimension, R the one before it (1
  /// for a 1-D shape), B the product of the others; without a shape as
  /// [1, 1, size] (one row). So do rules that read rows() or cols()
  /// (KernelABI.h version 11), with axes or without. Other rules ignore it.
  /// The Optimizer refuses,
  /// for every rule, a shape with a negative dimension, more than 64
  /// dimensions or another number of elements than `size`.
  std::vector<int64_t> shape;

  Param() = default;
  Param(float *data, int64_t size) : data(data), size(size) {}
  Param(double *data, int64_t size)
      : data(data), size(size), dtype(DType::F64) {}
  template <typename Int, detail::IfInteger<Int> = 0>
  Param(float *data, Int size) : data(data), size(static_cast<int64_t>(size)) {}
  template <typename Int, detail::IfInteger<Int> = 0>
  Param(double *data, Int size)
      : data(data), size(static_cast<int64_t>(size)), dtype(DType::F64) {}

  /// A copy with the shape `dims`: `{w.data(), w.size()}.shaped({out, in})`.
  Param shaped(std::vector<int64_t> dims) const {
    Param p = *this;
    p.shape = std::move(dims);
    return p;
  }
};

/// A gradient, read only (not owned), of the rule's dtype.
struct Grad {
  const void *data = nullptr;
  int64_t size = 0;
  DType dtype = DType::F32;

  Grad() = default;
  Grad(const float *data, int64_t size) : data(data), size(size) {}
  Grad(const double *data, int64_t size)
      : data(data), size(size), dtype(DType::F64) {}
  template <typename Int, detail::IfInteger<Int> = 0>
  Grad(const float *data, Int size)
      : data(data), size(static_cast<int64_t>(size)) {}
  template <typename Int, detail::IfInteger<Int> = 0>
  Grad(const double *data, Int size)
      : data(data), size(static_cast<int64_t>(size)), dtype(DType::F64) {}
};

/// The tensors of one per-coordinate input of a rule (`input h`): `name` as
/// the rule declares it (RuleInfo::inputs), and one read-only tensor per
/// parameter, in parameter order, of the parameter's size and the rule's
/// dtype, as the gradients.
struct Input {
  std::string name;
  std::vector<Grad> tensors;
};

/// Parameters sharing hyperparameter values, as in torch.optim.
struct ParamGroup {
  std::vector<Param> params;
  /// Values that differ from the rule's defaults, e.g. {{"lr", 0.1}}.
  std::vector<std::pair<std::string, double>> hypers;
};

struct OptimizerOptions {
  /// Worker threads; 0 means one per hardware thread. At most 1024.
  unsigned threads = 0;
  /// Coordinates per chunk, the unit of work of a thread.
  int64_t chunkSize = 32768;
  /// When a gradient holds a NaN or an infinity, skip the whole step (and
  /// count it) instead of writing non-finite values into the parameters.
  /// A rule's per-coordinate inputs are checked too: a non-finite Hessian
  /// estimate or noise sample skips the step as a gradient would.
  bool skipNonFinite = false;
  /// The key of the rule's random numbers (`rand()`, `randn()`; KernelABI.h
  /// version 8): a coordinate's draws depend on the seed, its global index
  /// in the concatenated parameters, the step and the draw site only, so
  /// they do not change with threads or chunkSize. save() records it and
  /// load() restores it, so that a resumed run draws what the uninterrupted
  /// one would have. Ignored by rules that draw nothing.
  uint64_t seed = 0;
};

class Optimizer {
public:
  Optimizer(Rule rule, std::vector<Param> params,
            OptimizerOptions options = {});
  Optimizer(Rule rule, std::vector<ParamGroup> groups,
            OptimizerOptions options = {});
  ~Optimizer();
  Optimizer(Optimizer &&) noexcept;
  Optimizer &operator=(Optimizer &&) noexcept;

  /// Sets a hyperparameter in every group, or in one group.
  void set(const std::string &name, double value);
  void set(size_t group, const std::string &name, double value);
  double get(const std::string &name, size_t group = 0) const;

  /// Applies one step with one gradient per parameter, in the order the
  /// parameters were given (groups flattened). A gradient must not overlap
  /// a parameter or the optimizer's state (the step writes those while it
  /// reads the gradients). Returns false when the step was skipped because
  /// of a non-finite gradient (skipNonFinite). A rule with tensor reductions
  /// (RuleInfo::reductions) makes two passes over the chunks, with the same
  /// result for any number of threads (KernelABI.h, version 6); one more per
  /// level of nested reductions (ReductionSpec::level, version 9). A rule with
  /// row or column states or reductions (version 10) sees each parameter as
  /// matrices (Param::shape) and updates those states only once the step
  /// completes; its results do not depend on the number of threads either.
  /// A rule with per-coordinate inputs refuses this form: it needs the one
  /// below.
  bool step(const std::vector<Grad> &grads);

  /// The same for a rule with per-coordinate inputs (RuleInfo::inputs,
  /// KernelABI.h version 7): `inputs` names every input of the rule exactly
  /// once (any order), each with one tensor per parameter, checked as the
  /// gradients are (dtype, size, alignment, no overlap with a parameter or
  /// the state; an input may overlap a gradient or another input, all being
  /// read only). An unknown, repeated or missing name throws. A rule without
  /// inputs takes an empty list. With skipNonFinite, a NaN or an infinity in
  /// an input skips the step as one in a gradient does.
  bool step(const std::vector<Grad> &grads, const std::vector<Input> &inputs);

  /// Sets the learned weights `name` of a learned rule (copied):
  /// `count` elements of the rule's dtype, row-major in the shape the rule
  /// declares (RuleInfo::weights). Every weights tensor must be set before
  /// the first step.
  void setWeights(const std::string &name, const float *data, int64_t count);
  void setWeights(const std::string &name, const double *data, int64_t count);

  /// Sets every weights tensor of a learned rule from a safetensors file
  /// holding one tensor per name, of the rule's dtype and shape. Throws,
  /// changing nothing, on a missing tensor, another shape or dtype, a
  /// truncated file, or a rule without weights.
  void loadWeights(const std::string &path);

  /// The number of steps taken (t of the last one); skipped ones excluded.
  int64_t stepCount() const;
  int64_t skippedSteps() const;
  /// The seed of the rule's random numbers: OptimizerOptions::seed, or the
  /// one the last load() restored.
  uint64_t seed() const;
  size_t numParams() const;
  size_t numGroups() const;
  const Rule &rule() const;

  /// The state `name` of parameter `param`: `size` elements of the rule's
  /// dtype for a scalar state, `N * size` (component-major) for `state x[N]`,
  /// B * R for a row state and B * C for a column state (the parameter seen
  /// as [B, R, C], Param::shape; row b * R + r, column b * C + j). A row or
  /// column state keeps the value of the last completed step (the step
  /// writes the new values apart and copies them in once it is done).
  const void *state(size_t param, const std::string &name) const;
  /// The number of elements of state(param, name).
  int64_t stateSize(size_t param, const std::string &name) const;

  /// Writes the state, the step counters and the hyperparameters in the
  /// safetensors layout, atomically (a temporary file renamed over `path`).
  void save(const std::string &path) const;
  /// Restores what save() wrote (the seed included; a checkpoint written
  /// before seeds were recorded keeps this optimizer's seed). Throws,
  /// changing nothing, on a file from another rule or other parameter
  /// sizes, a row or column state of another size (a parameter of another
  /// shape), or a truncated or corrupt file.
  void load(const std::string &path);

  struct Impl;

private:
  /// Runs the forward steps of rules with row or column states or
  /// reductions on an Optimizer of its own, whose reduced values its
  /// backward pass reads.
  friend class Trajectory;

  /// The state, or an optim::Error naming `fn` when moved from.
  Impl &live(const char *fn) const;

  std::unique_ptr<Impl> impl;
};

} // namespace optim

#endif // OPTIM_RUNTIME_OPTIMIZER_H
