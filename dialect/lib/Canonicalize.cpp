//===- Canonicalize.cpp - dialect-wide canonicalization patterns ----------===//
//
// Patterns on upstream ops that are only valid under the semantics of an
// optim.rule body, where signed zeros are not significant (see the dialect
// description). Upstream arith already folds `x * 1.0`, `x - 0.0` and
// `x + -0.0`; it must keep `x + 0.0` because (-0.0) + 0.0 is +0.0.
//
//===----------------------------------------------------------------------===//

#include "optim/Dialect/OptimDialect.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::optim;

namespace {
/// `x + 0.0` and `0.0 + x` to `x`, scalars and splat vectors alike.
struct AddZeroInRule : public OpRewritePattern<arith::AddFOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(arith::AddFOp op,
                                PatternRewriter &rewriter) const override {
    if (!op->getParentOfType<RuleOp>())
      return rewriter.notifyMatchFailure(op, "signed zeros matter here");
    Value other;
    if (matchPattern(op.getRhs(), m_AnyZeroFloat()))
      other = op.getLhs();
    else if (matchPattern(op.getLhs(), m_AnyZeroFloat()))
      other = op.getRhs();
    else
      return failure();
    rewriter.replaceOp(op, other);
    return success();
  }
};
} // namespace

void OptimDialect::getCanonicalizationPatterns(
    RewritePatternSet &results) const {
  results.add<AddZeroInRule>(getContext());
}
