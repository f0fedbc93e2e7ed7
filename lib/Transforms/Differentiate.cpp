//===- Differentiate.cpp - per-coordinate step and its reverse mode -------===//
//
// Rule bodies are straight-line code on scalars, so reverse mode needs no
// tape: the VJP function recomputes the forward values, then walks the body
// backwards, accumulating each value's adjoint from the adjoints of the
// values computed from it.
//
//===----------------------------------------------------------------------===//

#include "optim/Dialect/OptimOps.h"
#include "optim/Transforms/Passes.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir::optim {
#define GEN_PASS_DEF_DIFFERENTIATE
#include "optim/Transforms/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

namespace {

class RuleDifferentiator {
public:
  RuleDifferentiator(RuleOp rule) : rule(rule) {}
  LogicalResult run();

private:
  LogicalResult check();
  void emitStep(OpBuilder &b);
  void emitVJP(OpBuilder &b);
  /// Adds `contribution` to the adjoint of the rule value `v`.
  void accumulate(OpBuilder &b, Value v, Value contribution);
  /// Emits the contributions of `op`'s operands from its results' adjoints.
  LogicalResult backpropagate(OpBuilder &b, Operation *op);
  Value constant(OpBuilder &b, double value) {
    return arith::ConstantOp::create(b, rule.getLoc(),
                                     b.getFloatAttr(elt, value));
  }
  /// A constant of `type`: a scalar, or a splat vector or tensor.
  Value constant(OpBuilder &b, double value, Type type) {
    if (auto shaped = dyn_cast<ShapedType>(type))
      return arith::ConstantOp::create(
          b, rule.getLoc(),
          DenseElementsAttr::get(shaped, b.getFloatAttr(elt, value)));
    return constant(b, value);
  }

  RuleOp rule;
  FloatType elt;
  IRMapping forward;                     // Rule value -> recomputed value.
  llvm::DenseMap<Value, Value> adjoints; // Rule value -> its adjoint.
};

} // namespace

LogicalResult RuleDifferentiator::check() {
  elt = rule.getElementType();
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    // The adjoint of a reduction is a value per coordinate that depends on
    // every coordinate of the tensor: not a per-coordinate VJP.
    if (isa<TensorReduceOp>(op))
      return op.emitOpError("cannot be differentiated: the reverse mode of "
                            "tensor reductions is not implemented");
    bool ok =
        isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp,
            arith::NegFOp, arith::MaximumFOp, arith::MinimumFOp,
            arith::SelectOp, arith::CmpFOp, arith::ConstantOp, arith::SIToFPOp,
            math::SqrtOp, math::ExpOp, math::LogOp, math::PowFOp, math::TanhOp,
            math::AbsFOp, LogSignOp, LSTMCellOp, LinearOp>(op);
    if (auto red = dyn_cast<vector::ReductionOp>(op))
      ok = red.getKind() == vector::CombiningKind::ADD && !red.getAcc();
    if (auto bc = dyn_cast<vector::BroadcastOp>(op))
      ok = !isa<VectorType>(bc.getSource().getType());
    if (auto ex = dyn_cast<vector::ExtractOp>(op))
      ok = ex.getDynamicPosition().empty() &&
           ex.getStaticPosition().size() == 1 &&
           !isa<VectorType>(ex.getResult().getType());
    if (!ok)
      return op.emitOpError("cannot be differentiated yet");
  }
  return success();
}

/// The per-coordinate inputs, in the order of both functions' arguments.
static SmallVector<Value> stepInputs(RuleOp rule) {
  SmallVector<Value> inputs = {rule.getParam(), rule.getGrad(), rule.getStep()};
  for (unsigned i = 0, e = rule.getNumHypers(); i < e; ++i)
    inputs.push_back(rule.getHyper(i));
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    inputs.push_back(rule.getState(i));
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i)
    inputs.push_back(rule.getWeight(i));
  return inputs;
}

void RuleDifferentiator::emitStep(OpBuilder &b) {
  SmallVector<Value> inputs = stepInputs(rule);
  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  auto type = b.getFunctionType(ValueRange(inputs).getTypes(),
                                yield.getValues().getTypes());
  auto func = func::FuncOp::create(
      b, rule.getLoc(), ("optim_step_" + rule.getSymName()).str(), type);
  // The mark that lets the verifier accept the rule's per-coordinate ops
  // (lstm_cell, ...) outside the rule.
  func->setAttr(kStepOfAttrName, FlatSymbolRefAttr::get(rule.getSymNameAttr()));
  Block *entry = func.addEntryBlock();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(entry);
  IRMapping map;
  map.map(inputs, entry->getArguments());
  for (Operation &op : rule.getBodyBlock().without_terminator())
    b.clone(op, map);
  SmallVector<Value> results;
  for (Value v : yield.getValues())
    results.push_back(map.lookup(v));
  func::ReturnOp::create(b, rule.getLoc(), results);
}

void RuleDifferentiator::accumulate(OpBuilder &b, Value v, Value contribution) {
  Value &adjoint = adjoints[v];
  adjoint = adjoint
                ? arith::AddFOp::create(b, rule.getLoc(), adjoint, contribution)
                      .getResult()
                : contribution;
}

LogicalResult RuleDifferentiator::backpropagate(OpBuilder &b, Operation *op) {
  Location loc = op->getLoc();
  auto fwd = [&](unsigned i) { return forward.lookup(op->getOperand(i)); };
  auto add = [&](unsigned i, Value c) { accumulate(b, op->getOperand(i), c); };
  // The adjoint of result `i`, or zeros when nothing used it.
  auto adjointOf = [&](unsigned i) -> Value {
    Value r = op->getResult(i);
    if (Value a = adjoints.lookup(r))
      return a;
    return constant(b, 0.0, r.getType());
  };
  if (llvm::none_of(op->getResults(),
                    [&](Value r) { return adjoints.count(r); }))
    return success(); // Nothing depends on it.

  // The learned-rule blocks have adjoint ops of their own: the kernel
  // lowering expands them into loops over the weights.
  if (auto cell = dyn_cast<LSTMCellOp>(op)) {
    Type h = cell.getH().getType();
    auto vjp = LSTMCellVJPOp::create(
        b, loc,
        TypeRange{cell.getX().getType(), h, h, cell.getWeights().getType()},
        ValueRange{fwd(0), fwd(1), fwd(2), fwd(3), adjointOf(0), adjointOf(1)});
    for (unsigned i = 0; i < 4; ++i)
      add(i, vjp->getResult(i));
    return success();
  }
  if (isa<LinearOp>(op)) {
    auto vjp = LinearVJPOp::create(
        b, loc,
        TypeRange{op->getOperand(0).getType(), op->getOperand(1).getType()},
        ValueRange{fwd(0), fwd(1), adjointOf(0)});
    add(0, vjp.getDx());
    add(1, vjp.getDweights());
    return success();
  }
  if (op->getNumResults() != 1)
    return success();
  Value result = op->getResult(0);
  Type type = result.getType();
  if (!isa<FloatType>(getElementTypeOrSelf(type)))
    return success(); // Not differentiable (comparisons).
  Value d = adjoints.lookup(result);
  Value res = forward.lookup(result);
  auto cst = [&](double value) { return constant(b, value, type); };
  Value zeroValue;
  auto zeroConstant = [&]() {
    if (!zeroValue)
      zeroValue = cst(0.0);
    return zeroValue;
  };

  if (auto ls = dyn_cast<LogSignOp>(op)) {
    // (log|x|/k, sign x) where |x| >= e^-k, else (-1, e^k x): the first
    // feature depends on x and k above the threshold, the second below it.
    Value x = fwd(0), k = fwd(1);
    auto scalar = [&](double v) { return constant(b, v); };
    Value da = vector::ExtractOp::create(b, loc, d, ArrayRef<int64_t>{0});
    Value ds = vector::ExtractOp::create(b, loc, d, ArrayRef<int64_t>{1});
    Value absX = math::AbsFOp::create(b, loc, x);
    Value big = arith::CmpFOp::create(
        b, loc, arith::CmpFPredicate::OGE, absX,
        math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, k)));
    Value expK = math::ExpOp::create(b, loc, k);
    // x = 0 is never above the threshold; the select keeps 1/x out of it.
    Value safeX = arith::SelectOp::create(b, loc, big, x, scalar(1.0));
    Value dxBig = arith::DivFOp::create(
        b, loc, da, arith::MulFOp::create(b, loc, k, safeX));
    Value dxSmall = arith::MulFOp::create(b, loc, ds, expK);
    add(0, arith::SelectOp::create(b, loc, big, dxBig, dxSmall));
    Value first =
        arith::DivFOp::create(b, loc, math::LogOp::create(b, loc, absX), k);
    Value dkBig = arith::NegFOp::create(
        b, loc,
        arith::DivFOp::create(b, loc, arith::MulFOp::create(b, loc, da, first),
                              k));
    Value dkSmall = arith::MulFOp::create(
        b, loc, ds, arith::MulFOp::create(b, loc, expK, x));
    add(1, arith::SelectOp::create(b, loc, big, dkBig, dkSmall));
    return success();
  }
  if (isa<vector::ExtractOp>(op)) {
    auto ex = cast<vector::ExtractOp>(op);
    Value zeros = constant(b, 0.0, ex.getSource().getType());
    add(0, vector::InsertOp::create(
               b, loc, d, zeros, ArrayRef<int64_t>{ex.getStaticPosition()[0]}));
    return success();
  }
  if (isa<vector::BroadcastOp>(op)) {
    add(0, vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, d));
    return success();
  }
  if (auto red = dyn_cast<vector::ReductionOp>(op)) {
    add(0, vector::BroadcastOp::create(b, loc, red.getVector().getType(), d));
    return success();
  }

  if (isa<arith::AddFOp>(op)) {
    add(0, d);
    add(1, d);
  } else if (isa<arith::SubFOp>(op)) {
    add(0, d);
    add(1, arith::NegFOp::create(b, loc, d));
  } else if (isa<arith::MulFOp>(op)) {
    add(0, arith::MulFOp::create(b, loc, d, fwd(1)));
    add(1, arith::MulFOp::create(b, loc, d, fwd(0)));
  } else if (isa<arith::DivFOp>(op)) {
    Value da = arith::DivFOp::create(b, loc, d, fwd(1));
    add(0, da);
    add(1,
        arith::NegFOp::create(b, loc, arith::MulFOp::create(b, loc, da, res)));
  } else if (isa<arith::NegFOp>(op)) {
    add(0, arith::NegFOp::create(b, loc, d));
  } else if (isa<arith::MaximumFOp, arith::MinimumFOp>(op)) {
    auto pred = isa<arith::MaximumFOp>(op) ? arith::CmpFPredicate::OGE
                                           : arith::CmpFPredicate::OLE;
    Value first = arith::CmpFOp::create(b, loc, pred, fwd(0), fwd(1));
    add(0, arith::SelectOp::create(b, loc, first, d, zeroConstant()));
    add(1, arith::SelectOp::create(b, loc, first, zeroConstant(), d));
  } else if (isa<arith::SelectOp>(op)) {
    Value cond = fwd(0);
    add(1, arith::SelectOp::create(b, loc, cond, d, zeroConstant()));
    add(2, arith::SelectOp::create(b, loc, cond, zeroConstant(), d));
  } else if (isa<math::SqrtOp>(op)) {
    Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                           res, zeroConstant());
    Value safe = arith::SelectOp::create(b, loc, positive, res, cst(1.0));
    Value dx = arith::DivFOp::create(
        b, loc, arith::MulFOp::create(b, loc, d, cst(0.5)), safe);
    add(0, arith::SelectOp::create(b, loc, positive, dx, zeroConstant()));
  } else if (isa<math::ExpOp>(op)) {
    add(0, arith::MulFOp::create(b, loc, d, res));
  } else if (isa<math::LogOp>(op)) {
    add(0, arith::DivFOp::create(b, loc, d, fwd(0)));
  } else if (isa<math::TanhOp>(op)) {
    Value one = cst(1.0);
    Value slope = arith::SubFOp::create(
        b, loc, one, arith::MulFOp::create(b, loc, res, res));
    add(0, arith::MulFOp::create(b, loc, d, slope));
  } else if (isa<math::AbsFOp>(op)) {
    Value x = fwd(0);
    Value pos = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x,
                                      zeroConstant());
    Value neg = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x,
                                      zeroConstant());
    Value sign = arith::SelectOp::create(
        b, loc, pos, cst(1.0),
        arith::SelectOp::create(b, loc, neg, cst(-1.0), zeroConstant()));
    add(0, arith::MulFOp::create(b, loc, d, sign));
  } else if (isa<math::PowFOp>(op)) {
    // d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log a, taken as 0 for a <= 0.
    Value a = fwd(0), e = fwd(1);
    Value em1 = arith::SubFOp::create(b, loc, e, cst(1.0));
    Value da = arith::MulFOp::create(
        b, loc, d,
        arith::MulFOp::create(b, loc, e, math::PowFOp::create(b, loc, a, em1)));
    add(0, da);
    Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, a,
                                           zeroConstant());
    Value safeA = arith::SelectOp::create(b, loc, positive, a, cst(1.0));
    Value db = arith::MulFOp::create(
        b, loc, d,
        arith::MulFOp::create(b, loc, res, math::LogOp::create(b, loc, safeA)));
    add(1, arith::SelectOp::create(b, loc, positive, db, zeroConstant()));
  }
  // arith.constant, arith.cmpf and arith.sitofp (of t) have no adjoint.
  return success();
}

void RuleDifferentiator::emitVJP(OpBuilder &b) {
  SmallVector<Value> inputs = stepInputs(rule);
  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  SmallVector<Type> argTypes(ValueRange(inputs).getTypes());
  for (Value v : yield.getValues())
    argTypes.push_back(v.getType());
  SmallVector<Value> wrt = {rule.getParam()};
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    wrt.push_back(rule.getState(i));
  for (unsigned i = 0, e = rule.getNumHypers(); i < e; ++i)
    wrt.push_back(rule.getHyper(i));
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i)
    wrt.push_back(rule.getWeight(i));
  SmallVector<Type> resultTypes(ValueRange(wrt).getTypes());
  auto func = func::FuncOp::create(b, rule.getLoc(),
                                   ("optim_vjp_" + rule.getSymName()).str(),
                                   b.getFunctionType(argTypes, resultTypes));
  // What optim-lower-vjp-to-kernels needs to read the signature back.
  func->setAttr(kVJPOfAttrName, FlatSymbolRefAttr::get(rule.getSymNameAttr()));
  func->setAttr(
      kVJPLayoutAttrName,
      b.getDenseI64ArrayAttr(
          {rule.getNumHypers(), rule.getNumStates(), rule.getNumWeights()}));
  Block *entry = func.addEntryBlock();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(entry);
  forward.map(inputs, entry->getArguments().take_front(inputs.size()));
  for (Operation &op : rule.getBodyBlock().without_terminator())
    b.clone(op, forward);

  // Seed with the cotangents of the outputs, then walk back.
  for (auto [value, cotangent] : llvm::zip(
           yield.getValues(), entry->getArguments().drop_front(inputs.size())))
    accumulate(b, value, cotangent);
  for (Operation &op : llvm::reverse(rule.getBodyBlock().without_terminator()))
    (void)backpropagate(b, &op);

  SmallVector<Value> results;
  for (Value v : wrt) {
    Value adjoint = adjoints.lookup(v);
    results.push_back(adjoint ? adjoint : constant(b, 0.0, v.getType()));
  }
  func::ReturnOp::create(b, rule.getLoc(), results);
}

LogicalResult RuleDifferentiator::run() {
  if (failed(check()))
    return failure();
  OpBuilder b(rule);
  b.setInsertionPointAfter(rule);
  emitStep(b);
  emitVJP(b);
  return success();
}

namespace {
struct Differentiate
    : public mlir::optim::impl::DifferentiateBase<Differentiate> {
  void runOnOperation() override {
    SmallVector<RuleOp> rules(getOperation().getOps<RuleOp>());
    for (RuleOp rule : rules)
      if (failed(RuleDifferentiator(rule).run()))
        return signalPassFailure();
  }
};
} // namespace
