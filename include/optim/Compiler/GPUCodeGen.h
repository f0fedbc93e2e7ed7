//===- GPUCodeGen.h - optim rules to PTX and cubins -------------*- C++ -*-===//
//
// The CUDA back end: rules lower to one kernel each (optim-lower-rules-to-gpu)
// in a gpu.module, which MLIR's NVVM path (convert-gpu-to-nvvm, the NVVM
// target, LLVM's NVPTX back end) turns into PTX; the CUDA toolkit's ptxas,
// run as a subprocess, assembles the PTX into a cubin for one architecture.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_COMPILER_GPUCODEGEN_H
#define OPTIM_COMPILER_GPUCODEGEN_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace optim {

struct GPUPipelineOptions {
  /// sm_80, sm_90, ... (sm_75 or newer: what CUDA 13's ptxas accepts).
  std::string arch = "sm_90";
  /// Bits read per thread, input and iteration on aligned chunks.
  unsigned vectorBits = 128;
  bool relaxedFP = false;
  /// QP layers (optim-lower-layers-to-gpu): threads per block (0: chosen
  /// from the problem's size) and the dynamic shared memory per block at
  /// most (0: all that `arch` lets a block opt in to,
  /// optim::qpblock::sharedCapBytesFor; layerSharedBytes() resolves it).
  int64_t layerThreads = 0;
  int64_t layerSharedBytes = 0;
};

/// The shared memory budget a QP layer's kernels are compiled for.
int64_t layerSharedBytes(const GPUPipelineOptions &options);

/// Checks an architecture name ("sm_<digits>", 75 or newer); returns a
/// message saying what is wrong, or an empty string.
std::string checkGPUArch(const std::string &arch);

/// The PTX ISA version the kernels for `arch` are emitted for: "+ptx80" up
/// to sm_90a (what drivers since CUDA 12.0 compile), else "" (LLVM's
/// default, the oldest version the architecture needs: 8.6 for sm_100).
std::string gpuPTXFeatures(const std::string &arch);

/// Registers the dialects, NVVM target and LLVM IR translations the GPU
/// pipeline needs with `context`.
void registerGPUCodeGen(mlir::MLIRContext &context);

/// optim dialect -> gpu.module of kernels (scf/arith/math/llvm on global
/// pointers). `--emit=lowered --target=cuda` prints this.
void buildLowerRulesToGPUPipeline(mlir::OpPassManager &pm,
                                  const GPUPipelineOptions &options);
/// gpu.module -> NVVM/LLVM dialect with the NVVM target attached, which
/// links the bitcode files `linkLibs` (the block QP solver's for layers).
void buildGPUKernelsToNVVMPipeline(
    mlir::OpPassManager &pm, const GPUPipelineOptions &options,
    const std::vector<std::string> &linkLibs = {});

/// Runs both pipelines and the NVPTX back end on `module` (which they
/// change) and returns the PTX of all its kernels.
llvm::Expected<std::string> compileToPTX(mlir::ModuleOp module,
                                         const GPUPipelineOptions &options);

/// "nvptx64-nvidia-cuda sm_90": the target string of manifests.
std::string describeGPUTarget(const std::string &arch);

/// The ptxas of the CUDA toolkit: $OPTIM_PTXAS if set (and nothing else),
/// else $CUDA_PATH/bin/ptxas, $CUDA_HOME/bin/ptxas, $CUDA_ROOT/bin/ptxas,
/// /usr/local/cuda/bin/ptxas, then PATH.
llvm::Expected<std::string> findPtxas();

/// Assembles `ptx` for `arch` with ptxas -O3. `info`, when given, receives
/// ptxas's -v report (registers, spills per kernel).
llvm::Expected<std::string> assemblePTX(const std::string &ptx,
                                        const std::string &arch,
                                        std::string *info = nullptr);

} // namespace optim

#endif // OPTIM_COMPILER_GPUCODEGEN_H
