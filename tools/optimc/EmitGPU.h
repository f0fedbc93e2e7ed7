//===- EmitGPU.h - optimc's CUDA outputs (lowered, ptx, cubin) --*- C++ -*-===//

#ifndef OPTIM_TOOLS_OPTIMC_EMITGPU_H
#define OPTIM_TOOLS_OPTIMC_EMITGPU_H

#include "optim/Compiler/GPUCodeGen.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace optim {

enum class GPUEmit { Lowered, PTX, Cubin };

struct GPUEmitOptions {
  GPUEmit what = GPUEmit::PTX;
  GPUPipelineOptions pipeline;
  /// "-": standard output (lowered, ptx); for a cubin, empty or "-" means
  /// <rule>.cubin. A cubin's manifest goes next to it (.manifest.json).
  std::string output = "-";
  /// Print ptxas's -v report (registers, spills) to standard error.
  bool ptxasVerbose = false;
};

/// Runs the GPU code generator on `module` (rules only); returns the exit
/// status (1 after printing an error).
int emitGPU(mlir::ModuleOp module, const GPUEmitOptions &options);

} // namespace optim

#endif // OPTIM_TOOLS_OPTIMC_EMITGPU_H
