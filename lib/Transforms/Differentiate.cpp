//===- Differentiate.cpp - per-coordinate step and its reverse mode
//--------===//
//
// Rule bodies are straight-line code on scalars, so reverse mode needs no
// tape: the VJP function recomputes the forward values, then walks the body
// backwards, accumulating each value's adjoint from the adjoints of the
// values computed from it.
//
//===----------------------------------------------------------------------===//

#include "optim/Dialect/OptimOps.h"
#include "optim/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
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

  RuleOp rule;
  FloatType elt;
  IRMapping forward;                     // Rule value -> recomputed value.
  llvm::DenseMap<Value, Value> adjoints; // Rule value -> its adjoint.
};

} // namespace

LogicalResult RuleDifferentiator::check() {
  elt = rule.getElementType();
  if (rule.isLearned())
    return rule.emitOpError("has learned weights: differentiating learned "
                            "rules is not implemented yet");
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    if (rule.getState(i).getType() != elt)
      return rule.emitOpError("state '")
             << cast<StringAttr>(rule.getStateNames()[i]).getValue()
             << "' is a vector: differentiating vector states is not "
                "implemented yet";
  for (Operation &op : rule.getBodyBlock().without_terminator())
    if (!isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp,
             arith::NegFOp, arith::MaximumFOp, arith::MinimumFOp,
             arith::SelectOp, arith::CmpFOp, arith::ConstantOp, arith::SIToFPOp,
             math::SqrtOp, math::ExpOp, math::LogOp, math::PowFOp, math::TanhOp,
             math::AbsFOp>(op))
      return op.emitOpError("cannot be differentiated yet");
  return success();
}

/// The per-coordinate inputs, in the order of both functions' arguments.
static SmallVector<Value> stepInputs(RuleOp rule) {
  SmallVector<Value> inputs = {rule.getParam(), rule.getGrad(), rule.getStep()};
  for (unsigned i = 0, e = rule.getNumHypers(); i < e; ++i)
    inputs.push_back(rule.getHyper(i));
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    inputs.push_back(rule.getState(i));
  return inputs;
}

void RuleDifferentiator::emitStep(OpBuilder &b) {
  SmallVector<Value> inputs = stepInputs(rule);
  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  auto type = b.getFunctionType(ValueRange(inputs).getTypes(),
                                yield.getValues().getTypes());
  auto func = func::FuncOp::create(
      b, rule.getLoc(), ("optim_step_" + rule.getSymName()).str(), type);
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
  if (op->getNumResults() != 1)
    return success();
  Value result = op->getResult(0);
  auto it = adjoints.find(result);
  if (it == adjoints.end() || !isa<FloatType>(result.getType()))
    return success(); // Nothing depends on it, or it is not differentiable.
  Value d = it->second;
  Value res = forward.lookup(result);
  auto fwd = [&](unsigned i) { return forward.lookup(op->getOperand(i)); };
  auto add = [&](unsigned i, Value c) { accumulate(b, op->getOperand(i), c); };
  Value zeroValue;
  auto zeroConstant = [&]() {
    if (!zeroValue)
      zeroValue = constant(b, 0.0);
    return zeroValue;
  };

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
    Value safe =
        arith::SelectOp::create(b, loc, positive, res, constant(b, 1.0));
    Value dx = arith::DivFOp::create(
        b, loc, arith::MulFOp::create(b, loc, d, constant(b, 0.5)), safe);
    add(0, arith::SelectOp::create(b, loc, positive, dx, zeroConstant()));
  } else if (isa<math::ExpOp>(op)) {
    add(0, arith::MulFOp::create(b, loc, d, res));
  } else if (isa<math::LogOp>(op)) {
    add(0, arith::DivFOp::create(b, loc, d, fwd(0)));
  } else if (isa<math::TanhOp>(op)) {
    Value one = constant(b, 1.0);
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
        b, loc, pos, constant(b, 1.0),
        arith::SelectOp::create(b, loc, neg, constant(b, -1.0),
                                zeroConstant()));
    add(0, arith::MulFOp::create(b, loc, d, sign));
  } else if (isa<math::PowFOp>(op)) {
    // d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log a, taken as 0 for a <= 0.
    Value a = fwd(0), e = fwd(1);
    Value em1 = arith::SubFOp::create(b, loc, e, constant(b, 1.0));
    Value da = arith::MulFOp::create(
        b, loc, d,
        arith::MulFOp::create(b, loc, e, math::PowFOp::create(b, loc, a, em1)));
    add(0, da);
    Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, a,
                                           zeroConstant());
    Value safeA =
        arith::SelectOp::create(b, loc, positive, a, constant(b, 1.0));
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
  SmallVector<Type> resultTypes(wrt.size(), elt);
  auto func = func::FuncOp::create(b, rule.getLoc(),
                                   ("optim_vjp_" + rule.getSymName()).str(),
                                   b.getFunctionType(argTypes, resultTypes));
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
    results.push_back(adjoint ? adjoint : constant(b, 0.0));
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
