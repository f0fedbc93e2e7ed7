//===- Pipelines.h - pass pipelines from the dialect to LLVM ----*- C++ -*-===//

#ifndef OPTIM_COMPILER_PIPELINES_H
#define OPTIM_COMPILER_PIPELINES_H

#include "mlir/Pass/PassManager.h"

namespace optim {

struct CPUPipelineOptions {
  unsigned vectorWidth = 16;
  /// vectorWidth of learned rules' kernels; 0: vectorWidth.
  unsigned learnedVectorWidth = 0;
  /// The target's SIMD registers (bytes each, how many), which size the
  /// register tiles of learned rules' VJP kernels; AVX-512's by default.
  unsigned vectorRegisterBytes = 64, vectorRegisters = 32;
  bool relaxedFP = false;
  unsigned prefetchDistance = 1024;
  /// Also generate the reverse mode: optim_vjp_kernel_<rule> (KernelABI.h).
  bool vjp = false;
};

/// optim dialect -> fused kernels (scf/vector/arith/math on llvm.ptr).
void buildLowerRulesPipeline(mlir::OpPassManager &pm,
                             const CPUPipelineOptions &options);
/// Fused kernels -> the LLVM dialect.
void buildKernelsToLLVMPipeline(mlir::OpPassManager &pm);

/// Registers `optim-lower-to-llvm` with optim-opt.
void registerPipelines();

} // namespace optim

#endif // OPTIM_COMPILER_PIPELINES_H
