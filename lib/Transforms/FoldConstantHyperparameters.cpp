//===- FoldConstantHyperparameters.cpp - substitute const hyperparameters -===//

#include "optim/Dialect/OptimOps.h"
#include "optim/Transforms/Passes.h"

#include "mlir/IR/Builders.h"

namespace mlir::optim {
#define GEN_PASS_DEF_FOLDCONSTANTHYPERPARAMETERS
#include "optim/Transforms/Passes.h.inc"
} // namespace mlir::optim

namespace mlir::optim {
namespace {
struct FoldConstantHyperparameters
    : public impl::FoldConstantHyperparametersBase<
          FoldConstantHyperparameters> {
  using Base::Base;

  void runOnOperation() override {
    getOperation().walk([&](RuleOp rule) {
      OpBuilder builder = OpBuilder::atBlockBegin(&rule.getBodyBlock());
      for (unsigned i = 0, e = rule.getNumHypers(); i < e; ++i) {
        if (!all && !rule.getHyperConst()[i])
          continue;
        BlockArgument arg = rule.getHyper(i);
        if (arg.use_empty())
          continue;
        auto type = cast<FloatType>(arg.getType());
        Value value = arith::ConstantOp::create(
            builder, arg.getLoc(),
            builder.getFloatAttr(type, rule.getHyperDefaults()[i]));
        arg.replaceAllUsesWith(value);
      }
      if (all) {
        SmallVector<bool> flags(rule.getNumHypers(), true);
        rule.setHyperConst(flags);
      }
    });
  }
};
} // namespace
} // namespace mlir::optim
