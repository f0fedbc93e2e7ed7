//===- Passes.h - optim lowering passes -------------------------*- C++ -*-===//

#ifndef OPTIM_CONVERSION_PASSES_H
#define OPTIM_CONVERSION_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::optim {

class LayerOp;
class QPOp;

/// The qp that a layer's lowering compiles, or null after an error at the
/// source construct that prevents it (no qp, a second one, an output that
/// is not one of its results): what optim-lower-layers and
/// optim-lower-layers-to-gpu check first, for drivers that need the qp
/// before lowering.
QPOp findCompilableQP(LayerOp layer);

#define GEN_PASS_DECL
#include "optim/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "optim/Conversion/Passes.h.inc"

} // namespace mlir::optim

#endif // OPTIM_CONVERSION_PASSES_H
