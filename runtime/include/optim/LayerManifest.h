//===- LayerManifest.h - describe a QP layer's CUDA kernel ------*- C++ -*-===//
//
// Part of the runtime: no LLVM or MLIR header may be included here.
//
// `optimc LAYER.optim --emit=cubin` writes the layer's cubin and this JSON
// manifest next to it: the layer's signature (LayerInfo), the kernel's
// symbol (optim_layer_<name>_qp), the target, and the launch that the kernel
// was compiled for (threads per block, dynamic shared memory, global
// workspace per problem; optim::qpblock::kernelLayout). The CUDA executor
// (optim::cuda::Device::loadLayer) reads it.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LAYERMANIFEST_H
#define OPTIM_RUNTIME_LAYERMANIFEST_H

#include "optim/Layer.h"

#include <string>

namespace optim {

/// The kernel's symbol is this prefix, the layer's name and "_qp".
#define OPTIM_LAYER_GPU_SUFFIX "_qp"

struct LayerManifest {
  LayerInfo info;
  std::string symbol;
  /// "nvptx64-nvidia-cuda sm_90".
  std::string target;
  int abiVersion = OPTIM_KERNEL_ABI_VERSION;
  /// The launch: threads per block (one block per problem), dynamic shared
  /// memory per block in bytes, float64 workspace per problem, and of it
  /// the operands' (the stride of the backward's operand cotangents).
  int64_t threads = 0, sharedBytes = 0, workDoubles = 0, dataDoubles = 0;
  /// The SHA-256 of the cubin and of the PTX beside it ("artifact_sha256",
  /// "ptx_sha256", as in a rule's Manifest); empty: not recorded. loadLayer
  /// from a file requires the first and refuses a mismatch of either.
  std::string artifactSha256{}, ptxSha256{};
};

std::string writeLayerManifest(const LayerManifest &manifest);
/// Parses and checks a layer manifest; throws optim::Error naming `origin`
/// when it is malformed, of another ABI version, or a rule's.
LayerManifest readLayerManifest(const std::string &json,
                                const std::string &origin);

} // namespace optim

#endif // OPTIM_RUNTIME_LAYERMANIFEST_H
