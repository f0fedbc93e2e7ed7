//===- CodeGen.h - LLVM-dialect modules to host machine code ----*- C++ -*-===//

#ifndef OPTIM_COMPILER_CODEGEN_H
#define OPTIM_COMPILER_CODEGEN_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/Error.h"
#include "llvm/Target/TargetMachine.h"

#include <memory>
#include <string>

namespace optim {

/// Initializes LLVM's native target once per process.
void initializeNativeTarget();

/// A target machine for this host's CPU and features, position-independent
/// so that its objects can go into shared libraries.
llvm::Expected<std::unique_ptr<llvm::TargetMachine>> createHostTargetMachine();

/// The vector width that suits a learned rule's kernel on this host: 16
/// coordinates with AVX-512 (32 registers of 16 floats), else 4. The kernel
/// keeps 16 x width accumulators in registers; 16 on an AVX2 host (16
/// registers of 8 floats) spill them (docs/benchmarks.md).
unsigned hostLearnedVectorWidth();

/// "triple cpu +feature,..." of a target machine: what a cache key and a
/// manifest record about the code.
std::string describeTarget(const llvm::TargetMachine &tm);

/// Translates a module in the LLVM dialect and optimizes it at O3 for `tm`.
llvm::Expected<std::unique_ptr<llvm::Module>>
translateAndOptimize(mlir::ModuleOp module, llvm::LLVMContext &context,
                     llvm::TargetMachine &tm);

/// Emits an ELF object file for `module`.
llvm::Expected<std::string> emitObject(llvm::Module &module,
                                       llvm::TargetMachine &tm);

} // namespace optim

#endif // OPTIM_COMPILER_CODEGEN_H
