//===- Passes.h - optim dialect passes --------------------------*- C++ -*-===//

#ifndef OPTIM_TRANSFORMS_PASSES_H
#define OPTIM_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::optim {

#define GEN_PASS_DECL
#include "optim/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "optim/Transforms/Passes.h.inc"

} // namespace mlir::optim

#endif // OPTIM_TRANSFORMS_PASSES_H
