//===- Differentiate.cpp - per-coordinate step and its reverse mode -------===//
//
// Rule bodies are straight-line code on scalars, so reverse mode needs no
// tape: the VJP function recomputes the forward values, then walks the body
// backwards, accumulating each value's adjoint from the adjoints of the
// values computed from it.
//
// A rule with tensor reductions reads each reduction's result from an
// argument (the runtime computed it over the whole tensor); its reverse mode
// is two functions around the runtime's combine of the reductions'
// cotangents (KernelABI.h, "Reverse mode of rules with tensor reductions"):
// @optim_vjp_ holds the reduced values constant and also returns each
// coordinate's share of their cotangents, @optim_vjp_reductions_ carries the
// combined cotangents back through the reduced operands. Nested reductions
// (an operand computed from another reduction's result) make the second
// function also return the lower levels' shares: the runtime calls it once
// per level, highest first, with the cotangents of that level's reductions
// only, and adds what it returns for the lower ones before their turn.
//
//===----------------------------------------------------------------------===//

#include "optim/Dialect/OptimOps.h"
#include "optim/Transforms/Passes.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"

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
  /// @optim_vjp_reductions_<rule>: the VJP through the reduced operands.
  void emitReductionsVJP(OpBuilder &b);
  /// Recomputes the body into `map` at the builder, each reduction's result
  /// read from `reduced` (its argument) instead of being reduced.
  void recompute(OpBuilder &b, IRMapping &map, ValueRange reduced);
  /// Sets optim.vjp_of and optim.vjp_layout on a VJP function.
  void markVJP(OpBuilder &b, func::FuncOp func);
  /// Adds `contribution` to the adjoint of the rule value `v`.
  void accumulate(OpBuilder &b, Value v, Value contribution);
  /// Whether every component of the scalar or vector `d` is 0 (an i1).
  Value allZero(OpBuilder &b, Location loc, Value d) {
    auto vec = dyn_cast<VectorType>(d.getType());
    if (!vec)
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, d,
                                   constant(b, 0.0));
    Value all;
    for (int64_t k = 0; k < vec.getNumElements(); ++k) {
      Value x = vector::ExtractOp::create(b, loc, d, ArrayRef<int64_t>{k});
      Value z = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, x,
                                      constant(b, 0.0));
      all = all ? arith::AndIOp::create(b, loc, all, z).getResult() : z;
    }
    return all;
  }
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
  /// The rule's tensor_reduce ops in body order: reduction r is rho_r.
  SmallVector<TensorReduceOp> reductions;
  /// Its row and column reductions, in body order: pseudo-states of the VJP
  /// functions (KernelABI.h, "Reverse mode of rules with axes").
  SmallVector<TensorReduceOp> axisReductions;
  /// The VJP functions' per-coordinate arguments (stepInputs with the
  /// pseudo-states after the states) and what they return adjoints of.
  SmallVector<Value> vjpArgs();
  SmallVector<Value> vjpOutputs();
  /// The largest level of a reduction (KernelABI.h version 9).
  unsigned maxLevel = 0;
  IRMapping forward;                     // Rule value -> recomputed value.
  llvm::DenseMap<Value, Value> adjoints; // Rule value -> its adjoint.
  /// Rule values whose adjoint may be an exact zero sent by a select, max or
  /// min to the side it did not take (see backpropagate).
  llvm::DenseSet<Value> mayBeZero;
};

} // namespace

LogicalResult RuleDifferentiator::check() {
  elt = rule.getElementType();
  // A reduction of a value computed from another reduction's result (level
  // > 0, KernelABI.h version 9) sends part of its operand's cotangent to the
  // lower levels' results: the runtime runs the reductions function once per
  // level, highest first (emitReductionsVJP).
  llvm::DenseMap<Operation *, unsigned> levels = getReductionLevels(rule);
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    if (auto red = dyn_cast<TensorReduceOp>(op)) {
      if (red.getValue().getType() != elt)
        return red.emitOpError("cannot be differentiated: it reduces a value "
                               "of type ")
               << red.getValue().getType() << " in a rule of element type "
               << elt;
      maxLevel = std::max(maxLevel, levels.lookup(red));
      reductions.push_back(red);
      if (red.getAxis())
        axisReductions.push_back(red);
      continue;
    }
    bool ok = isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp,
                  arith::NegFOp, arith::MaximumFOp, arith::MinimumFOp,
                  arith::SelectOp, arith::CmpFOp, arith::CmpIOp,
                  arith::AndIOp, arith::OrIOp, arith::XOrIOp,
                  arith::ConstantOp, arith::SIToFPOp, math::SqrtOp,
                  math::CbrtOp, math::ExpOp,
                  math::LogOp, math::PowFOp, math::TanhOp, math::AbsFOp,
                  math::FloorOp, math::CeilOp, math::CosOp, math::SinOp,
                  math::AtanOp, math::Atan2Op, arith::RemFOp, LogSignOp, LSTMCellOp, LinearOp,
                  RandomOp>(op);
    if (auto red = dyn_cast<vector::ReductionOp>(op))
      ok = red.getKind() == vector::CombiningKind::ADD && !red.getAcc();
    if (auto bc = dyn_cast<vector::BroadcastOp>(op))
      ok = !isa<VectorType>(bc.getSource().getType());
    if (auto ex = dyn_cast<vector::ExtractOp>(op))
      ok = ex.getDynamicPosition().empty() &&
           ex.getStaticPosition().size() == 1 &&
           !isa<VectorType>(ex.getResult().getType());
    if (auto fe = dyn_cast<vector::FromElementsOp>(op))
      ok = cast<VectorType>(fe.getType()).getRank() == 1;
    if (!ok)
      return op.emitOpError("cannot be differentiated yet");
  }
  return success();
}

/// The per-coordinate inputs, in the order of both functions' arguments.
/// The rule's own inputs (`input h`) come last, as in the rule's block, so
/// that a rule without them gets the functions it always got.
/// With `axisReductions`, each one's result and a null (a tie slot) go after
/// the states: the VJP functions' pseudo-states (vjpArgs).
static SmallVector<Value>
stepInputs(RuleOp rule, ArrayRef<TensorReduceOp> axisReductions = {}) {
  SmallVector<Value> inputs = {rule.getParam(), rule.getGrad(), rule.getStep()};
  for (unsigned i = 0, e = rule.getNumHypers(); i < e; ++i)
    inputs.push_back(rule.getHyper(i));
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    inputs.push_back(rule.getState(i));
  for (TensorReduceOp red : axisReductions)
    inputs.append({red.getResult(), Value()});
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i)
    inputs.push_back(rule.getWeight(i));
  for (unsigned i = 0, e = rule.getNumInputs(); i < e; ++i)
    inputs.push_back(rule.getInput(i));
  return inputs;
}

void RuleDifferentiator::recompute(OpBuilder &b, IRMapping &map,
                                   ValueRange reduced) {
  unsigned r = 0; // Body order, as `reductions`.
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    if (auto red = dyn_cast<TensorReduceOp>(op)) {
      // The VJP functions map row and column reductions to their
      // pseudo-states beforehand.
      if (!map.contains(red.getResult()))
        map.map(red.getResult(), reduced[r]);
      ++r;
      continue;
    }
    b.clone(op, map);
  }
}

/// The types of the reduced values: one scalar of the element type each.
static SmallVector<Type> reducedTypes(ArrayRef<TensorReduceOp> reductions) {
  SmallVector<Type> types;
  for (TensorReduceOp red : reductions)
    types.push_back(red.getResult().getType());
  return types;
}

void RuleDifferentiator::emitStep(OpBuilder &b) {
  SmallVector<Value> inputs = stepInputs(rule);
  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  SmallVector<Type> argTypes(ValueRange(inputs).getTypes());
  llvm::append_range(argTypes, reducedTypes(reductions));
  auto type = b.getFunctionType(argTypes, yield.getValues().getTypes());
  auto func = func::FuncOp::create(
      b, rule.getLoc(), ("optim_step_" + rule.getSymName()).str(), type);
  // The mark that lets the verifier accept the rule's per-coordinate ops
  // (lstm_cell, ...) outside the rule.
  func->setAttr(kStepOfAttrName, FlatSymbolRefAttr::get(rule.getSymNameAttr()));
  Block *entry = func.addEntryBlock();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(entry);
  IRMapping map;
  map.map(inputs, entry->getArguments().take_front(inputs.size()));
  recompute(b, map, entry->getArguments().drop_front(inputs.size()));
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
  // A select (and max, min) sends a zero cotangent to the operand it did not
  // take, whose forward values may be inf or NaN there (RAdam's sqrt of a
  // negative number before its warm-up ends): 0 * NaN would poison the
  // gradient of the taken side. Upstream of such a zero, what an op sends
  // back is 0 where its cotangent is 0 (a "strong zero"); rules without
  // select, max or min get no extra ops.
  bool picks = isa<arith::SelectOp, arith::MaximumFOp, arith::MinimumFOp>(op);
  bool zeroable = llvm::any_of(op->getResults(),
                               [&](Value r) { return mayBeZero.contains(r); });
  // Contributions that are the cotangent itself, or a sum or sign flip of it.
  bool linear =
      picks ||
      isa<arith::AddFOp, arith::SubFOp, arith::NegFOp, vector::ExtractOp,
          vector::BroadcastOp, vector::ReductionOp, vector::FromElementsOp>(op);
  // Elementwise ops: each component of a contribution is a multiple of the
  // same component of the cotangent, so it is masked component by
  // component. log_sign's scalar contributions come from both components of
  // its cotangent: masked where both are 0. (lstm_cell and linear mix
  // components and give weight tensors: their forward inputs are masked
  // instead, below.)
  bool maskEach = zeroable && !linear && op->getNumResults() == 1 &&
                  op->hasTrait<OpTrait::Elementwise>();
  bool maskAll = zeroable && isa<LogSignOp>(op);
  auto add = [&](unsigned i, Value c) {
    Value d =
        op->getNumResults() == 1 ? adjoints.lookup(op->getResult(0)) : Value();
    if ((maskEach && d.getType() == c.getType()) || maskAll) {
      Value zero = constant(b, 0.0, c.getType());
      Value isZero = maskEach ? arith::CmpFOp::create(
                                    b, loc, arith::CmpFPredicate::OEQ, d, zero)
                                    .getResult()
                              : allZero(b, loc, d);
      c = arith::SelectOp::create(b, loc, isZero, zero, c);
    }
    if (zeroable || picks)
      mayBeZero.insert(op->getOperand(i));
    accumulate(b, op->getOperand(i), c);
  };
  // The recomputed operand `i`, or zeros where the cotangents `ds` are all
  // 0 and the op's cotangent may be a strong zero: a learned block's
  // backward pass multiplies its inputs by its cotangents.
  auto maskedFwd = [&](unsigned i, ValueRange ds) -> Value {
    Value x = fwd(i);
    if (!zeroable)
      return x;
    Value none = allZero(b, loc, ds.front());
    for (Value d : ds.drop_front())
      none = arith::AndIOp::create(b, loc, none, allZero(b, loc, d));
    return arith::SelectOp::create(b, loc, none, constant(b, 0.0, x.getType()),
                                   x);
  };
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
  // A reduced value is an argument here: its adjoint is a result of the
  // VJP, and the reductions function carries it back to the operand.
  if (isa<TensorReduceOp>(op))
    return success();
  // A draw is a constant of the reverse mode (KernelABI.h, version 8): the
  // VJP kernels recompute it from rng, and it has no operand to pass a
  // cotangent to.
  if (isa<RandomOp>(op))
    return success();

  // The learned-rule blocks have adjoint ops of their own: the kernel
  // lowering expands them into loops over the weights.
  if (auto cell = dyn_cast<LSTMCellOp>(op)) {
    Type h = cell.getH().getType();
    Value dh = adjointOf(0), dc = adjointOf(1);
    auto vjp = LSTMCellVJPOp::create(
        b, loc,
        TypeRange{cell.getX().getType(), h, h, cell.getWeights().getType()},
        ValueRange{maskedFwd(0, {dh, dc}), maskedFwd(1, {dh, dc}),
                   maskedFwd(2, {dh, dc}), fwd(3), dh, dc});
    for (unsigned i = 0; i < 4; ++i)
      add(i, vjp->getResult(i));
    return success();
  }
  if (isa<LinearOp>(op)) {
    auto vjp = LinearVJPOp::create(
        b, loc,
        TypeRange{op->getOperand(0).getType(), op->getOperand(1).getType()},
        ValueRange{maskedFwd(0, adjointOf(0)), fwd(1), adjointOf(0)});
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
  if (isa<vector::FromElementsOp>(op)) {
    for (unsigned i = 0, e = op->getNumOperands(); i < e; ++i)
      add(i, vector::ExtractOp::create(b, loc, d, ArrayRef<int64_t>{i}));
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
  } else if (isa<math::CbrtOp>(op)) {
    // d / (3 cbrt(x)^2); infinite at x = 0, taken as 0 there (as sqrt's and
    // pow(x, 1 / 3)'s), so that a state still at 0 gives no NaN.
    Value nonzero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE,
                                          res, zeroConstant());
    Value safe = arith::SelectOp::create(b, loc, nonzero, res, cst(1.0));
    Value dx = arith::DivFOp::create(
        b, loc, d,
        arith::MulFOp::create(b, loc, cst(3.0),
                              arith::MulFOp::create(b, loc, safe, safe)));
    add(0, arith::SelectOp::create(b, loc, nonzero, dx, zeroConstant()));
  } else if (isa<math::ExpOp>(op)) {
    add(0, arith::MulFOp::create(b, loc, d, res));
  } else if (isa<math::LogOp>(op)) {
    add(0, arith::DivFOp::create(b, loc, d, fwd(0)));
  } else if (isa<math::CosOp>(op)) {
    add(0, arith::NegFOp::create(
               b, loc,
               arith::MulFOp::create(b, loc, d,
                                     math::SinOp::create(b, loc, fwd(0)))));
  } else if (isa<math::SinOp>(op)) {
    add(0,
        arith::MulFOp::create(b, loc, d, math::CosOp::create(b, loc, fwd(0))));
  } else if (isa<math::AtanOp>(op)) {
    // d / (1 + x^2): 0 for infinite x, never NaN.
    Value x = fwd(0);
    add(0, arith::DivFOp::create(
               b, loc, d,
               arith::AddFOp::create(b, loc, cst(1.0),
                                     arith::MulFOp::create(b, loc, x, x))));
  } else if (isa<math::Atan2Op>(op)) {
    // atan2(y, x): dy = d x / r2, dx = -d y / r2, r2 = x^2 + y^2; at the
    // origin, where the angle jumps, both taken as 0 (as sqrt's slope at
    // 0), so that a state still at 0 gives no NaN.
    Value y = fwd(0), x = fwd(1);
    Value r2 = arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, x, x),
                                     arith::MulFOp::create(b, loc, y, y));
    Value nonzero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE,
                                          r2, zeroConstant());
    Value safe = arith::SelectOp::create(b, loc, nonzero, r2, cst(1.0));
    Value scale = arith::DivFOp::create(b, loc, d, safe);
    add(0, arith::SelectOp::create(b, loc, nonzero,
                                   arith::MulFOp::create(b, loc, scale, x),
                                   zeroConstant()));
    add(1, arith::SelectOp::create(
               b, loc, nonzero,
               arith::NegFOp::create(b, loc,
                                     arith::MulFOp::create(b, loc, scale, y)),
               zeroConstant()));
  } else if (isa<arith::RemFOp>(op)) {
    // fmod(a, b) = a - b trunc(a / b), exact; trunc is piecewise constant.
    Value a = fwd(0), bv = fwd(1);
    add(0, d);
    Value q =
        math::TruncOp::create(b, loc, arith::DivFOp::create(b, loc, a, bv));
    add(1, arith::NegFOp::create(b, loc, arith::MulFOp::create(b, loc, d, q)));
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
    // At a = 0 with b < 1 the slope b a^(b-1) is infinite: taken as 0, as
    // sqrt's at 0, so that a second moment that is still 0 (MADGRAD's
    // pow(nu, 1 / 3), Padam's pow(v, partial)) gives no NaN (0 * inf).
    Value a = fwd(0), e = fwd(1);
    Value em1 = arith::SubFOp::create(b, loc, e, cst(1.0));
    Value da = arith::MulFOp::create(
        b, loc, d,
        arith::MulFOp::create(b, loc, e, math::PowFOp::create(b, loc, a, em1)));
    Value zeroBase = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ,
                                           a, zeroConstant());
    Value steep = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, e,
                                        cst(1.0));
    add(0, arith::SelectOp::create(
               b, loc, zeroBase,
               arith::SelectOp::create(b, loc, steep, zeroConstant(), da),
               da));
    Value positive = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, a,
                                           zeroConstant());
    Value safeA = arith::SelectOp::create(b, loc, positive, a, cst(1.0));
    Value db = arith::MulFOp::create(
        b, loc, d,
        arith::MulFOp::create(b, loc, res, math::LogOp::create(b, loc, safeA)));
    add(1, arith::SelectOp::create(b, loc, positive, db, zeroConstant()));
  }
  // arith.constant, arith.cmpf, arith.sitofp (of t) and arith.cmpi (the
  // canonical form of comparing t with an integral constant) have no
  // adjoint; math.floor and math.ceil have a zero derivative wherever they
  // have one.
  return success();
}

/// Row and column values (KernelABI.h, "Reverse mode of rules with axes")
/// are per-coordinate values of the VJP functions: the runtime gives each
/// coordinate its row's (column's) value and sums what comes back over the
/// row (column). A row or column state is one of the rule's states already;
/// each row or column reduction adds two pseudo-states after them: its
/// result (value: rho at the coordinate; returned: the coordinate's share of
/// its cotangent) and a tie slot (returned: the max and min tie indicator).
/// Null stands for a tie slot.
SmallVector<Value> RuleDifferentiator::vjpArgs() {
  return stepInputs(rule, axisReductions);
}

/// What the VJP functions return the adjoints of: p, the states and the
/// pseudo-states, the hyperparameters and the weights, in that order.
SmallVector<Value> RuleDifferentiator::vjpOutputs() {
  SmallVector<Value> wrt = {rule.getParam()};
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    wrt.push_back(rule.getState(i));
  for (TensorReduceOp red : axisReductions)
    wrt.append({red.getResult(), Value()});
  for (unsigned i = 0, e = rule.getNumHypers(); i < e; ++i)
    wrt.push_back(rule.getHyper(i));
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i)
    wrt.push_back(rule.getWeight(i));
  return wrt;
}

void RuleDifferentiator::markVJP(OpBuilder &b, func::FuncOp func) {
  // What optim-lower-vjp-to-kernels needs to read the signature back.
  func->setAttr(kVJPOfAttrName, FlatSymbolRefAttr::get(rule.getSymNameAttr()));
  SmallVector<int64_t> layout = {
      rule.getNumHypers(),
      int64_t(rule.getNumStates() + 2 * axisReductions.size()),
      rule.getNumWeights()};
  // [H, S, W], [H, S, W, R], or with inputs [H, S, W, R, I] (R may be 0).
  if (!reductions.empty() || rule.getNumInputs())
    layout.push_back(reductions.size());
  if (rule.getNumInputs())
    layout.push_back(rule.getNumInputs());
  func->setAttr(kVJPLayoutAttrName, b.getDenseI64ArrayAttr(layout));
}

void RuleDifferentiator::emitVJP(OpBuilder &b) {
  SmallVector<Value> args = vjpArgs();
  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  auto typeOf = [&](Value v) { return v ? v.getType() : Type(elt); };
  SmallVector<Type> argTypes = llvm::map_to_vector(args, typeOf);
  // The cotangents of p' and the states', then of the pseudo-states (read
  // by nothing: a row or column reduction's result is no output).
  for (Value v : yield.getValues())
    argTypes.push_back(v.getType());
  argTypes.append(2 * axisReductions.size(), elt);
  SmallVector<Type> rhoTypes = reducedTypes(reductions);
  llvm::append_range(argTypes, rhoTypes);
  SmallVector<Value> wrt = vjpOutputs();
  SmallVector<Type> resultTypes = llvm::map_to_vector(wrt, typeOf);
  // drho_r, then the tie indicators.
  llvm::append_range(resultTypes, rhoTypes);
  llvm::append_range(resultTypes, rhoTypes);
  auto func = func::FuncOp::create(b, rule.getLoc(),
                                   ("optim_vjp_" + rule.getSymName()).str(),
                                   b.getFunctionType(argTypes, resultTypes));
  markVJP(b, func);
  Block *entry = func.addEntryBlock();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(entry);
  unsigned numOutputs = yield.getValues().size();
  ValueRange cotangents = entry->getArguments().slice(args.size(), numOutputs);
  ValueRange rho = entry->getArguments().take_back(reductions.size());
  for (auto [v, arg] : llvm::zip(args, entry->getArguments()))
    if (v)
      forward.map(v, arg);
  recompute(b, forward, rho);

  // Seed with the cotangents of the outputs, then walk back.
  for (auto [value, cotangent] : llvm::zip(yield.getValues(), cotangents))
    accumulate(b, value, cotangent);
  for (Operation &op : llvm::reverse(rule.getBodyBlock().without_terminator()))
    (void)backpropagate(b, &op);

  // Max and min: the coordinates where the operand attains the reduced
  // value share its cotangent; the runtime counts them.
  auto tieOf = [&](TensorReduceOp red) -> Value {
    if (red.getKind() != ReductionKind::Max &&
        red.getKind() != ReductionKind::Min)
      return constant(b, 0.0);
    Value tie = arith::CmpFOp::create(
        b, rule.getLoc(), arith::CmpFPredicate::OEQ,
        forward.lookup(red.getValue()), forward.lookup(red.getResult()));
    return arith::SelectOp::create(b, rule.getLoc(), tie, constant(b, 1.0),
                                   constant(b, 0.0));
  };
  SmallVector<Value> results;
  unsigned axis = 0; // The tie slots' reductions, in order.
  for (Value v : wrt) {
    if (!v) {
      results.push_back(tieOf(axisReductions[axis++]));
      continue;
    }
    Value adjoint = adjoints.lookup(v);
    results.push_back(adjoint ? adjoint : constant(b, 0.0, v.getType()));
  }
  // A row or column reduction's share went to its pseudo-state: its slots
  // here are 0, as its slots of the forward's partials are never written.
  for (TensorReduceOp red : reductions) {
    Value adjoint = red.getAxis() ? Value() : adjoints.lookup(red.getResult());
    results.push_back(adjoint ? adjoint : constant(b, 0.0));
  }
  for (TensorReduceOp red : reductions)
    results.push_back(red.getAxis() ? constant(b, 0.0) : tieOf(red));
  func::ReturnOp::create(b, rule.getLoc(), results);
}

void RuleDifferentiator::emitReductionsVJP(OpBuilder &b) {
  SmallVector<Value> args = vjpArgs();
  SmallVector<Value> wrt = vjpOutputs();
  auto typeOf = [&](Value v) { return v ? v.getType() : Type(elt); };
  SmallVector<Type> argTypes = llvm::map_to_vector(args, typeOf);
  // The cotangents of p, the states and the pseudo-states so far (the other
  // VJP's results), except that a row or column reduction's carries its
  // u_r at the coordinate (the runtime's, per row or column).
  unsigned numCarried = 1 + rule.getNumStates() + 2 * axisReductions.size();
  for (Value v : ArrayRef<Value>(wrt).take_front(numCarried))
    argTypes.push_back(typeOf(v));
  SmallVector<Type> rhoTypes = reducedTypes(reductions);
  llvm::append_range(argTypes, rhoTypes); // rho_r
  llvm::append_range(argTypes, rhoTypes); // u_r
  SmallVector<Type> resultTypes = llvm::map_to_vector(wrt, typeOf);
  // drho_r: what flows back to the reduced values of lower levels (nested
  // reductions; 0 for a rule whose reductions are all of level 0).
  llvm::append_range(resultTypes, rhoTypes);
  auto func = func::FuncOp::create(
      b, rule.getLoc(), ("optim_vjp_reductions_" + rule.getSymName()).str(),
      b.getFunctionType(argTypes, resultTypes));
  markVJP(b, func);
  func->setAttr(kVJPReductionsAttrName, b.getUnitAttr());
  Block *entry = func.addEntryBlock();
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(entry);
  ValueRange all = entry->getArguments();
  ValueRange carried = all.slice(args.size(), numCarried);
  ValueRange rho = all.slice(args.size() + numCarried, reductions.size());
  ValueRange u = all.take_back(reductions.size());
  forward.clear();
  adjoints.clear();
  mayBeZero.clear();
  for (auto [v, arg] : llvm::zip(args, all))
    if (v)
      forward.map(v, arg);
  recompute(b, forward, rho);

  // The cotangent of each coordinate's reduced operand x_r: D_r d rho_r /
  // d x_r, with the runtime's factor u_r (D_r, D_r / N, D_r / rho_r or D_r
  // / ties) times 1, x_r or the tie indicator.
  Location loc = rule.getLoc();
  unsigned axis = 0;
  for (auto [red, ur] : llvm::zip(reductions, u)) {
    // The shape values rows() and cols() are constants of the parameter's
    // shape (KernelABI.h version 11): their operand gets nothing (the
    // runtime gives them u_r = 0).
    if (red.getKind() == ReductionKind::Rows ||
        red.getKind() == ReductionKind::Cols)
      continue;
    // A row or column reduction's u_r is its row's (column's), carried in
    // its pseudo-state's cotangent; a matrix function's is the cotangent of
    // its operand itself (the runtime's NS VJP of the whole matrix).
    Value factor = ur;
    if (red.getAxis())
      factor = carried[1 + rule.getNumStates() + 2 * axis++];
    Value x = forward.lookup(red.getValue());
    Value r = forward.lookup(red.getResult());
    Value seed = factor;
    // With nested reductions each call seeds one level and gets u_r = 0 for
    // the others: a strong zero, so that an operand whose derivative is
    // infinite there (a log of 0) does not make 0 * inf = NaN in a pass
    // that is not its own.
    if (maxLevel > 0)
      mayBeZero.insert(red.getValue());
    switch (red.getKind()) {
    case ReductionKind::Sum:
    case ReductionKind::Mean:
    case ReductionKind::NewtonSchulz:
      break;
    case ReductionKind::Norm:
      seed = arith::MulFOp::create(b, loc, factor, x);
      break;
    case ReductionKind::Max:
    case ReductionKind::Min: {
      Value tie =
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, x, r);
      seed = arith::SelectOp::create(b, loc, tie, factor, constant(b, 0.0));
      mayBeZero.insert(red.getValue());
      break;
    }
    // Skipped above.
    case ReductionKind::Rows:
    case ReductionKind::Cols:
      llvm_unreachable("shape values have no seed");
    }
    accumulate(b, red.getValue(), seed);
  }
  for (Operation &op : llvm::reverse(rule.getBodyBlock().without_terminator()))
    (void)backpropagate(b, &op);

  SmallVector<Value> results;
  Value zero;
  auto zeroConstant = [&]() {
    if (!zero)
      zero = constant(b, 0.0);
    return zero;
  };
  for (auto [k, v] : llvm::enumerate(wrt)) {
    Value adjoint = v ? adjoints.lookup(v) : Value();
    if (k >= numCarried) {
      results.push_back(adjoint ? adjoint : constant(b, 0.0, v.getType()));
    } else if (k > rule.getNumStates()) {
      // A pseudo-state: what reaches the row or column reduction's result
      // (from operands of higher levels), not added to its u_r; 0 for a
      // tie slot.
      results.push_back(adjoint ? adjoint : zeroConstant());
    } else {
      results.push_back(adjoint ? arith::AddFOp::create(b, loc, carried[k],
                                                        adjoint)
                                      .getResult()
                                : carried[k]);
    }
  }
  for (TensorReduceOp red : reductions) {
    Value adjoint = red.getAxis() ? Value() : adjoints.lookup(red.getResult());
    results.push_back(adjoint ? adjoint : zeroConstant());
  }
  func::ReturnOp::create(b, loc, results);
}

LogicalResult RuleDifferentiator::run() {
  if (failed(check()))
    return failure();
  OpBuilder b(rule);
  b.setInsertionPointAfter(rule);
  emitStep(b);
  emitVJP(b);
  if (!reductions.empty())
    emitReductionsVJP(b);
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
