//===- CheckLowered.cpp - no optim op may outlive the lowerings -----------===//
//
// The upstream conversions to LLVM are partial: an op they do not know stays
// where it is, and the first to notice would be LLVM IR translation (with a
// message about a missing translation interface) or nobody at all (a host
// function that the GPU pipeline never serializes). This pass ends the
// optim part of each pipeline with one error per optim op that is left,
// at the op's location.
//
//===----------------------------------------------------------------------===//

#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimOps.h"

namespace mlir::optim {
#define GEN_PASS_DEF_CHECKLOWERED
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

/// The function around `op` that optim-differentiate derived from a rule,
/// if any.
static Operation *derivedFunction(Operation *op) {
  for (Operation *parent = op->getParentOp(); parent;
       parent = parent->getParentOp())
    if (getDerivedFromRule(parent))
      return parent;
  return nullptr;
}

namespace {
struct CheckLowered : public mlir::optim::impl::CheckLoweredBase<CheckLowered> {
  void runOnOperation() override {
    bool failed = false;
    getOperation()->walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (!isa_and_nonnull<OptimDialect>(op->getDialect()))
        return WalkResult::advance();
      failed = true;
      if (isa<RuleOp, LayerOp>(op)) {
        // One error for the program, none for each op of its body.
        op->emitOpError("was not lowered: the lowerings take the rules and "
                        "layers at the top level of the module");
        return WalkResult::skip();
      }
      InFlightDiagnostic diag =
          op->emitOpError("outside an 'optim.rule' or 'optim.layer' is not "
                          "lowered");
      if (Operation *fn = derivedFunction(op))
        diag.attachNote(fn->getLoc())
            << "in a function that optim-differentiate derived from rule "
            << getDerivedFromRule(fn)
            << ": optim-lower-vjp-to-kernels lowers it (with the rule's "
               "optim.vjp_of function), as optim-lower-to-llvm{vjp=true} "
               "does";
      return WalkResult::advance();
    });
    if (failed)
      signalPassFailure();
  }
};
} // namespace
