//===- Layer.h - a compiled QP layer: forward and backward on batches -----===//
//
// A `layer` of the language (docs/language.md section 8, docs/qp.md)
// compiled by optim::Compiler::compileLayer: its data functions (KernelABI.h,
// optim_layer_<name>_data / _vjp) around the batched QP solver (QP.h).
//
//   optim::Layer sudoku = compiler.compileLayerFile("examples/sudoku.optim");
//   sudoku.forward(B, {puzzles}, {A, log_z0}, {z});       // z: [B, 64]
//   sudoku.backward({dz}, {nullptr}, {dA, dlog_z0});      // sums over B
//
// Shapes and dtypes: every buffer is row-major of the layer's element type
// (info().dtype, the compiler's precision). Input i is [B, info().inputs[i]
// .shape...], weights w is info().weights[w].shape (shared by the batch),
// output o is [B, info().outputs[o].shape...]. Gradients have the shape of
// what they are the gradient of; a weight's is summed over the batch.
//
// Ownership: the caller owns every buffer. forward() computes the QP data
// into buffers of its own and keeps the pointers to the inputs and weights:
// backward() reads them again, so they must stay valid and unchanged until
// it returns.
//
// Errors throw optim::Error and leave the layer as it was (the last
// forward() stays the one backward() uses): wrong numbers of buffers, null
// pointers, a batch size <= 0, non-finite inputs or weights (named, with the
// batch element and index), an output or gradient buffer overlapping an
// input, weights or another buffer it writes, a problem of the batch that
// is infeasible, unbounded or not solved within the iteration cap (unless a
// status array is passed, which then receives the statuses), backward()
// before a forward() whose problems were all solved.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LAYER_H
#define OPTIM_LAYER_H

#include "optim/KernelABI.h"
#include "optim/QP.h"

#include <memory>
#include <string>
#include <vector>

namespace optim {

struct LayerTensor {
  std::string name;
  std::vector<int64_t> shape; ///< per batch element for inputs and outputs
};

/// The signature of a compiled layer.
struct LayerInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<LayerTensor> inputs, weights, outputs;
  /// What each output is: 0 = z, 1 = nu, 2 = lam.
  std::vector<int> outputKinds;
  /// The QP: n variables, m equalities, p inequalities; Q present or not
  /// (an LP); which operands (Q, q, A, b, G, h) depend on the inputs.
  int64_t n = 0, m = 0, p = 0;
  bool hasQ = true;
  bool batched[6] = {};
  /// The qp op's attributes.
  double tol = 1e-8;
  int64_t maxIter = 100;
};

class Layer {
public:
  Layer();
  Layer(LayerInfo info, optim_layer_data_fn data, optim_layer_vjp_fn vjp,
        std::shared_ptr<void> owner);
  ~Layer();
  Layer(Layer &&) noexcept;
  Layer &operator=(Layer &&) noexcept;

  explicit operator bool() const;
  const LayerInfo &info() const;
  /// Solver threads over the batch (0: one per hardware thread, at most
  /// 1024; results do not depend on it). Drops the last forward(): the next
  /// backward() needs a new one.
  void setThreads(unsigned threads);

  /// The layer on a batch of `batch` elements. `status` (optional, [batch]):
  /// receives each problem's status instead of an error for unsolved ones
  /// (their outputs are then the solver's last iterate or certificate).
  /// An output of size 0 (nu without equalities, lam without inequalities)
  /// may be null.
  void forward(int64_t batch, const std::vector<const void *> &inputs,
               const std::vector<const void *> &weights,
               const std::vector<void *> &outputs, QPStatus *status = nullptr);

  /// Gradients through the last forward(): doutputs[o] ([batch, ...], null:
  /// zero) to dinputs[i] and dweights[w] (null: not wanted).
  void backward(const std::vector<const void *> &doutputs,
                const std::vector<void *> &dinputs,
                const std::vector<void *> &dweights);

  struct Impl;

private:
  std::unique_ptr<Impl> impl;
};

} // namespace optim

#endif // OPTIM_LAYER_H
