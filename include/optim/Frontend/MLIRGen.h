//===- MLIRGen.h - checked syntax tree to the optim dialect -----*- C++ -*-===//

#ifndef OPTIM_FRONTEND_MLIRGEN_H
#define OPTIM_FRONTEND_MLIRGEN_H

#include "optim/Frontend/Sema.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace optim {

/// Builds one `optim.rule` or `optim.layer` per program of a module that
/// Sema accepted. The element type of every value is f32 or f64.
mlir::OwningOpRef<mlir::ModuleOp> mlirGen(mlir::MLIRContext &context,
                                          const CheckedModule &module,
                                          const llvm::SourceMgr &sourceMgr,
                                          Precision precision);

} // namespace optim

#endif // OPTIM_FRONTEND_MLIRGEN_H
