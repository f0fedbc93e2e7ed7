//===- CudaLayer.h - run compiled QP layers on NVIDIA GPUs ------*- C++ -*-===//
//
// Part of the runtime: no LLVM, MLIR or CUDA header may be included here.
//
//   auto gpu = optim::cuda::Device::open(optim::cuda::loadDriver());
//   auto sudoku = optim::cuda::loadLayer(gpu, "sudoku.sm_90.cubin");
//   optim::cuda::LayerRunner run(sudoku);
//   run.forward(B, {puzzles}, {A, log_z0}, {z});   // device pointers, async
//   run.requireSolved();                           // synchronizes
//
// One launch per forward(): `batch` blocks of the manifest's threads, each
// building and solving one problem (docs/gpu.md, "QP layers"); three per
// backward(): the solver's backward (a block per problem, reusing the
// factorization its forward kept in the workspace), the sum over the batch
// of the shared operands' cotangents, and the layer's VJP. The runner owns
// the workspace, the statuses and the buffers the caller does not ask for,
// in device memory.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_CUDALAYER_H
#define OPTIM_RUNTIME_CUDALAYER_H

#include "optim/Cuda.h"
#include "optim/LayerManifest.h"
#include "optim/QP.h"

namespace optim::cuda {

/// A layer's cubin loaded on a device, and its manifest.
struct LayerKernel {
  LayerManifest manifest;
  std::shared_ptr<Device> device;
  std::shared_ptr<CUmod_st> module;
  /// optim_layer_<name>_qp and its backward kernels _qp_grad, _qp_reduce,
  /// _qp_vjp.
  CUfunction function = nullptr, grad = nullptr, reduce = nullptr,
             vjp = nullptr;
  CodeSource source = CodeSource::Cubin;
};

/// Loads a cubin compiled by `optimc LAYER.optim --emit=cubin`, its
/// manifest (default: the cubin's path with ".manifest.json" for its
/// extension) and its PTX when it is there (".ptx", as for rules:
/// Device::loadRule). Refuses another architecture's kernel, a rule's
/// manifest, a kernel needing more shared memory than the device grants
/// a block, and a cubin or PTX whose SHA-256 is not the one the manifest
/// records (or a manifest that records none).
LayerKernel loadLayer(const std::shared_ptr<Device> &device,
                      const std::string &cubinPath,
                      const std::string &manifestPath = "");
/// The same from bytes in memory; `origin` names them in errors; `ptx` may
/// be empty. The hashes are checked where the manifest records them.
LayerKernel loadLayer(const std::shared_ptr<Device> &device,
                      const std::string &cubin,
                      const std::string &manifestJSON,
                      const std::string &origin, const std::string &ptx = "");

class LayerRunner {
public:
  /// `stream`: where to launch (null: the runner creates its own).
  explicit LayerRunner(LayerKernel kernel, CUstream stream = nullptr);
  ~LayerRunner();
  LayerRunner(const LayerRunner &) = delete;
  LayerRunner &operator=(const LayerRunner &) = delete;

  const LayerInfo &info() const { return kernel_.manifest.info; }
  CUstream stream() const { return stream_; }

  /// Enqueues the layer on `batch` elements (asynchronous): inputs[i] is
  /// [batch, shape...], weights[w] its shape, outputs[o] [batch, shape...],
  /// all device pointers of the layer's dtype, in the manifest's order.
  void forward(int64_t batch, const std::vector<CUdeviceptr> &inputs,
               const std::vector<CUdeviceptr> &weights,
               const std::vector<CUdeviceptr> &outputs);
  /// The statuses and iteration counts of the last forward()
  /// (synchronizes).
  std::vector<QPStatus> statuses() const;
  std::vector<int32_t> iterations() const;
  /// Throws optim::Error naming the first problem that is not solved.
  void requireSolved() const;
  /// Enqueues the gradients through the last forward() (asynchronous):
  /// doutputs[o] ([batch, shape...]; 0: zero) to dinputs[i] ([batch, ...])
  /// and dweights[w] (summed over the batch); 0 where not wanted. The
  /// inputs and weights of that forward() must be unchanged. Throws if a
  /// problem of the batch is not solved (synchronizes to know).
  void backward(const std::vector<CUdeviceptr> &doutputs,
                const std::vector<CUdeviceptr> &dinputs,
                const std::vector<CUdeviceptr> &dweights);
  void synchronize() const;

private:
  void ensureCapacity(int64_t batch);
  /// cuLaunchKernel with the pointers (then *batch, if given) as arguments.
  void launch(CUfunction fn, unsigned grid, unsigned block, unsigned shared,
              std::vector<CUdeviceptr> pointers, const int64_t *batch);
  LayerKernel kernel_;
  CUstream stream_ = nullptr;
  bool ownsStream_ = false;
  int64_t capacity_ = 0, batch_ = 0;
  Buffer work_, status_, iterations_;
  /// z, nu, lam for the kinds that no output asks for.
  Buffer scratch_[3];
  /// -1 per problem, the statuses before a launch (kept alive for the
  /// asynchronous copy).
  std::vector<int32_t> unset_;
  /// The last forward()'s inputs and weights, for backward().
  std::vector<CUdeviceptr> inputs_, weights_;
  /// The backward's operand cotangents (per problem, float64) and their
  /// sums over the batch; gradients nobody asked for.
  Buffer dops_, dshared_;
  std::vector<Buffer> unwanted_;
};

} // namespace optim::cuda

#endif // OPTIM_RUNTIME_CUDALAYER_H
