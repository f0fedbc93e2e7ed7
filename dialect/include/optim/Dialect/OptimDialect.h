//===- OptimDialect.h - the optim dialect -----------------------*- C++ -*-===//

#ifndef OPTIM_DIALECT_OPTIMDIALECT_H
#define OPTIM_DIALECT_OPTIMDIALECT_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Dialect.h"

#include "optim/Dialect/OptimOpsDialect.h.inc"

#endif // OPTIM_DIALECT_OPTIMDIALECT_H
