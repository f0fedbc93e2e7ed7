//===- OptimDialect.cpp - the optim dialect -------------------------------===//

#include "optim/Dialect/OptimDialect.h"
#include "optim/Dialect/OptimOps.h"

using namespace mlir;
using namespace mlir::optim;

#include "optim/Dialect/OptimOpsDialect.cpp.inc"

void OptimDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "optim/Dialect/OptimOps.cpp.inc"
      >();
}

Operation *OptimDialect::materializeConstant(OpBuilder &builder,
                                             Attribute value, Type type,
                                             Location loc) {
  // Folders of this dialect only produce plain numeric constants.
  if (auto typed = dyn_cast<TypedAttr>(value))
    if (arith::ConstantOp::isBuildableWith(typed, type))
      return arith::ConstantOp::create(builder, loc, type, typed);
  return nullptr;
}
