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

#define GET_OP_CLASSES
#include "optim/Dialect/OptimOps.h.inc"

#endif // OPTIM_DIALECT_OPTIMOPS_H
