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

/// This host's SIMD register file, which sizes the register tiles of
/// learned rules' kernels: 32 registers of 64 bytes with AVX-512, 16 of 32
/// with AVX, 16 of 16 otherwise on x86, 32 of 16 on AArch64.
struct HostVectorRegisters {
  unsigned bytes = 64, count = 32;
};
HostVectorRegisters hostVectorRegisters();

/// The vector width that suits a learned rule's kernel on this host: its
/// blocks of 4 x width coordinates keep 16 vectors of width accumulators,
/// half of the register file: 16 with AVX-512, 4 with AVX2 (where 16
/// spills them: docs/benchmarks.md).
unsigned hostLearnedVectorWidth(
    const HostVectorRegisters &registers = hostVectorRegisters());

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
