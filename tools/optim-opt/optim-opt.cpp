//===- optim-opt.cpp - mlir-opt for the optim dialect ---------------------===//
//
// Registers the optim dialect and every pass of the project, plus the
// upstream dialects and general-purpose passes that its pipelines use.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Pipelines.h"
#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimDialect.h"
#include "optim/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::registerTransformsPasses();
  mlir::optim::registerOptimPasses();
  mlir::optim::registerOptimConversionPasses();
  optim::registerPipelines();

  // gpu: what optim-lower-rules-to-gpu and optim-lower-layers-to-gpu emit,
  // so that optim-opt reads its own output back.
  mlir::DialectRegistry registry;
  registry.insert<mlir::optim::OptimDialect, mlir::arith::ArithDialect,
                  mlir::math::MathDialect, mlir::vector::VectorDialect,
                  mlir::tensor::TensorDialect, mlir::func::FuncDialect,
                  mlir::scf::SCFDialect, mlir::memref::MemRefDialect,
                  mlir::linalg::LinalgDialect, mlir::LLVM::LLVMDialect,
                  mlir::gpu::GPUDialect>();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "optim optimizer driver\n", registry));
}
