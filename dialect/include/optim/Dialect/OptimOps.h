//===- OptimOps.h - optim dialect operations --------------------*- C++ -*-===//

#ifndef OPTIM_DIALECT_OPTIMOPS_H
#define OPTIM_DIALECT_OPTIMOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "optim/Dialect/OptimDialect.h"

namespace mlir::optim {
/// The largest per-coordinate vector, and the largest extent of a layer's
/// tensors: the language's limit (Sema's kMaxSize), which keeps every size
/// that the verifiers and the lowerings derive from them (4 H, I + H + 1,
/// n * n, element counts) far from int64_t overflow.
constexpr int64_t kMaxExtent = 65536;
/// The most elements of one learned weight tensor: an LSTM of the largest
/// sizes has 4 * 65536 * (2 * 65536 + 1).
constexpr int64_t kMaxWeightElements = int64_t(1) << 40;
} // namespace mlir::optim

#define GET_OP_CLASSES
#include "optim/Dialect/OptimOps.h.inc"

#endif // OPTIM_DIALECT_OPTIMOPS_H
