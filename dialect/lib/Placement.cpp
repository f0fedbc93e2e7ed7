//===- Placement.cpp - where optim ops and attributes may appear ----------===//
//
// Per-coordinate ops are computed only by the lowerings of rules and of the
// functions optim-differentiate derives from them, layer ops only by those of
// layers: elsewhere an op would pass through every lowering untouched and
// leave IR that no backend accepts, so the verifier rejects it where it is
// written. The discardable attributes that mark the derived functions are the
// dialect's, and verified here too: the lowerings read them without checks.
//
//===----------------------------------------------------------------------===//

#include "optim/Dialect/OptimOps.h"

#include "mlir/Interfaces/FunctionInterfaces.h"

using namespace mlir;
using namespace mlir::optim;

/// The nearest enclosing op isolated from above: the rule, layer or
/// function whose body the op is in, whatever regions lie in between.
static Operation *enclosingBody(Operation *op) {
  Operation *parent = op->getParentOp();
  while (parent && !parent->hasTrait<mlir::OpTrait::IsIsolatedFromAbove>())
    parent = parent->getParentOp();
  return parent;
}

FlatSymbolRefAttr mlir::optim::getDerivedFromRule(Operation *fn) {
  if (!fn)
    return {};
  if (auto rule = fn->getAttrOfType<FlatSymbolRefAttr>(kStepOfAttrName))
    return rule;
  return fn->getAttrOfType<FlatSymbolRefAttr>(kVJPOfAttrName);
}

LogicalResult mlir::optim::verifyInPerCoordinateBody(Operation *op) {
  Operation *body = enclosingBody(op);
  if (body && (isa<RuleOp>(body) || getDerivedFromRule(body)))
    return success();
  return op->emitOpError("outside an 'optim.rule': per-coordinate ops belong "
                         "in a rule body, or in a function that "
                         "optim-differentiate derived from one ('")
         << kStepOfAttrName << "', '" << kVJPOfAttrName << "')";
}

LogicalResult mlir::optim::verifyInLayerBody(Operation *op) {
  if (isa_and_nonnull<LayerOp>(enclosingBody(op)))
    return success();
  return op->emitOpError("outside an 'optim.layer': layer ops belong in a "
                         "layer body");
}

LogicalResult OptimDialect::verifyOperationAttribute(Operation *op,
                                                     NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name != kStepOfAttrName && name != kVJPOfAttrName &&
      name != kVJPLayoutAttrName && name != kVJPReductionsAttrName)
    return success(); // Not one of the markers; nothing reads it.
  auto fn = dyn_cast<FunctionOpInterface>(op);
  if (!fn)
    return op->emitOpError("'") << name << "' marks a function, not this op";
  if (name == kVJPReductionsAttrName) {
    if (!isa<UnitAttr>(attr.getValue()))
      return op->emitOpError("'")
             << name << "' is a unit attribute, got " << attr.getValue();
    return success();
  }
  if (name != kVJPLayoutAttrName) {
    if (!isa<FlatSymbolRefAttr>(attr.getValue()))
      return op->emitOpError("'")
             << name << "' must name the rule (@rule), got " << attr.getValue();
    return success();
  }
  // Counts of hyperparameters, states, weights, (a rule with tensor
  // reductions) reductions and (a rule with per-coordinate inputs, then
  // with a count of reductions that may be 0) inputs, from which
  // optim-lower-vjp-to-kernels computes the signature: bounded by the number
  // of arguments, so that no sum of them can wrap around.
  auto layout = dyn_cast<DenseI64ArrayAttr>(attr.getValue());
  int64_t numArgs = fn.getNumArguments();
  if (!layout || layout.size() < 3 || layout.size() > 5 ||
      llvm::any_of(layout.asArrayRef(),
                   [&](int64_t n) { return n < 0 || n > numArgs; }))
    return op->emitOpError("'")
           << name
           << "' must be array<i64: hyperparameters, states, weights> or "
              "array<i64: hyperparameters, states, weights, reductions>, "
              "or array<i64: hyperparameters, states, weights, reductions, "
              "inputs>, each count between 0 and the number of arguments, got "
           << attr.getValue();
  return success();
}
