//===- LowerRulesToKernels.cpp - optim.rule to a fused CPU kernel
//----------===//
//
// One rule becomes one function with the ABI of KernelABI.h. Values of the
// body that do not depend on p, g or the state ("uniform": hyperparameters,
// the step, bias corrections) are computed once per call before any loop;
// the rest ("varying") is cloned into a vector loop whose lanes are
// coordinates, and into a scalar loop for the tail of each chunk. Every
// coordinate is read once and written once: the kernel is fused by
// construction.
//
//===----------------------------------------------------------------------===//

#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::optim {
#define GEN_PASS_DEF_LOWERRULESTOKERNELS
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

namespace {

/// The prefix of kernel symbols; must match OPTIM_RULE_SYMBOL_PREFIX.
constexpr llvm::StringLiteral kSymbolPrefix = "optim_rule_";

class RuleLowering {
public:
  RuleLowering(RuleOp rule, unsigned width, bool relaxed)
      : rule(rule), width(width), relaxed(relaxed) {}

  LogicalResult run();

private:
  LogicalResult classify();
  Value i64Const(OpBuilder &b, int64_t v) {
    return arith::ConstantIntOp::create(b, rule.getLoc(), v, 64);
  }
  Value index(OpBuilder &b, Value i64) {
    return arith::IndexCastOp::create(b, rule.getLoc(), b.getIndexType(), i64);
  }
  Value gep(OpBuilder &b, Type elt, Value base, Value i64Index) {
    return LLVM::GEPOp::create(b, rule.getLoc(), ptrType, elt, base,
                               ValueRange{i64Index});
  }
  /// Emits the per-coordinate loop over [lb, ub) with `lanes` coordinates per
  /// iteration.
  void emitCoordinateLoop(OpBuilder &b, Value lb, Value ub, unsigned lanes,
                          ArrayRef<Value> bases);

  RuleOp rule;
  unsigned width;
  /// Relaxed rounding (relaxed-fp).
  bool relaxed;
  /// Uniform divisors of varying divisions -> their reciprocal (when
  /// `relaxed`), computed once per call.
  llvm::DenseMap<Value, Value> reciprocals;
  Type ptrType;
  FloatType elt;
  llvm::DenseSet<Value> varying;
  SmallVector<Operation *> varyingOps;
  IRMapping uniform; // Rule values -> their scalar value in the kernel.
};

} // namespace

LogicalResult RuleLowering::classify() {
  if (rule.isLearned())
    return rule.emitOpError(
        "has learned weights: CPU code generation of learned rules is not "
        "implemented yet");
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    if (isa<VectorType>(rule.getState(i).getType()))
      return rule.emitOpError("state '")
             << cast<StringAttr>(rule.getStateNames()[i]).getValue()
             << "' is a vector: CPU code generation of vector states is not "
                "implemented yet";
  varying.insert(rule.getParam());
  varying.insert(rule.getGrad());
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    varying.insert(rule.getState(i));
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    bool isVarying = llvm::any_of(op.getOperands(),
                                  [&](Value v) { return varying.contains(v); });
    if (!isVarying)
      continue;
    bool scalarResults = llvm::all_of(op.getResultTypes(), [&](Type t) {
      return t == elt || t.isInteger(1);
    });
    if (!op.hasTrait<OpTrait::Elementwise>() || !scalarResults ||
        op.getNumRegions() != 0)
      return op.emitOpError("cannot be computed per coordinate by the CPU "
                            "code generator yet");
    varyingOps.push_back(&op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  return success();
}

void RuleLowering::emitCoordinateLoop(OpBuilder &b, Value lb, Value ub,
                                      unsigned lanes, ArrayRef<Value> bases) {
  Location loc = rule.getLoc();
  Value step = arith::ConstantIndexOp::create(b, loc, lanes);
  auto loop = scf::ForOp::create(b, loc, lb, ub, step);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  Type valueType = lanes == 1 ? Type(elt) : VectorType::get({lanes}, elt);
  unsigned align = elt.getWidth() / 8;

  IRMapping map;
  // bases: p, g, state_0 .. state_{S-1}.
  SmallVector<Value> addrs;
  SmallVector<Value> inputs = {rule.getParam(), rule.getGrad()};
  for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s)
    inputs.push_back(rule.getState(s));
  for (auto [input, base] : llvm::zip(inputs, bases)) {
    Value addr = gep(b, elt, base, i);
    addrs.push_back(addr);
    if (input.use_empty())
      continue;
    map.map(input, LLVM::LoadOp::create(b, loc, valueType, addr, align));
  }

  llvm::DenseMap<Value, Value> broadcasts;
  auto operand = [&](Value v) -> Value {
    if (varying.contains(v))
      return map.lookup(v);
    Value s = uniform.lookup(v);
    if (lanes == 1)
      return s;
    Value &splat = broadcasts[v];
    if (!splat)
      splat = vector::BroadcastOp::create(
          b, loc, VectorType::get({lanes}, s.getType()), s);
    return splat;
  };
  for (Operation *op : varyingOps) {
    if (auto div = dyn_cast<arith::DivFOp>(op)) {
      auto it = reciprocals.find(div.getRhs());
      if (it != reciprocals.end()) {
        Value r = it->second;
        if (lanes != 1)
          r = vector::BroadcastOp::create(
              b, loc, VectorType::get({lanes}, r.getType()), r);
        Value product = arith::MulFOp::create(
            b, loc, operand(div.getLhs()), r,
            arith::FastMathFlags::contract);
        map.map(div.getResult(), product);
        continue;
      }
    }
    IRMapping opMap;
    for (Value v : op->getOperands())
      opMap.map(v, operand(v));
    Operation *clone = b.clone(*op, opMap);
    if (relaxed)
      if (auto fm = dyn_cast<arith::ArithFastMathInterface>(clone))
        clone->setAttr(fm.getFastMathAttrName(),
                       arith::FastMathFlagsAttr::get(
                           b.getContext(), arith::FastMathFlags::contract));
    if (lanes != 1)
      for (Value r : clone->getResults())
        r.setType(VectorType::get({lanes}, r.getType()));
    map.map(op->getResults(), clone->getResults());
  }

  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  // Outputs: new p (index 0 of the yield, base 0) and states (bases 2..).
  for (auto [k, value] : llvm::enumerate(yield.getValues())) {
    Value input = k == 0 ? rule.getParam() : rule.getState(k - 1);
    if (value == input)
      continue; // Unchanged: nothing to write.
    Value addr = addrs[k == 0 ? 0 : k + 1];
    LLVM::StoreOp::create(b, loc, operand(value), addr, align);
  }
}

LogicalResult RuleLowering::run() {
  MLIRContext *ctx = rule.getContext();
  Location loc = rule.getLoc();
  ptrType = LLVM::LLVMPointerType::get(ctx);
  elt = rule.getElementType();
  if (!elt || !(elt.isF32() || elt.isF64()))
    return rule.emitOpError("CPU code generation supports f32 and f64 rules");
  if (failed(classify()))
    return failure();

  OpBuilder b(rule);
  Type i64 = b.getI64Type();
  auto fnType = b.getFunctionType(
      {ptrType, ptrType, ptrType, i64, i64, ptrType, i64, ptrType}, {});
  auto func = func::FuncOp::create(
      b, loc, (kSymbolPrefix + rule.getSymName()).str(), fnType);
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value ptrs = entry->getArgument(0), lengths = entry->getArgument(1),
        strides = entry->getArgument(2), begin = entry->getArgument(3),
        end = entry->getArgument(4), hypers = entry->getArgument(5),
        step = entry->getArgument(6);
  (void)strides; // Only vector states use strides.

  // Uniform inputs: hyperparameters (const ones are compiled in) and t.
  for (unsigned h = 0, e = rule.getNumHypers(); h < e; ++h) {
    BlockArgument arg = rule.getHyper(h);
    if (arg.use_empty())
      continue;
    Value value;
    if (rule.getHyperConst()[h]) {
      value = arith::ConstantOp::create(
          b, loc, b.getFloatAttr(elt, rule.getHyperDefaults()[h]));
    } else {
      Value addr = gep(b, b.getF64Type(), hypers, i64Const(b, h));
      value = LLVM::LoadOp::create(b, loc, b.getF64Type(), addr, 8);
      if (!elt.isF64())
        value = arith::TruncFOp::create(b, loc, elt, value);
    }
    uniform.map(arg, value);
  }
  uniform.map(rule.getStep(), step);
  // Uniform computations, once per call.
  for (Operation &op : rule.getBodyBlock().without_terminator())
    if (!llvm::is_contained(varyingOps, &op))
      b.clone(op, uniform);

  if (relaxed)
    for (Operation *op : varyingOps)
      if (auto div = dyn_cast<arith::DivFOp>(op))
        if (!varying.contains(div.getRhs()) && !reciprocals.count(div.getRhs()))
          reciprocals[div.getRhs()] = arith::DivFOp::create(
              b, loc, arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 1.0)),
              uniform.lookup(div.getRhs()));

  // The chunk loop.
  unsigned numPtrs = 2 + rule.getNumStates();
  auto chunks = scf::ForOp::create(b, loc, index(b, begin), index(b, end),
                                   arith::ConstantIndexOp::create(b, loc, 1));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(chunks.getBody());
    Value c = arith::IndexCastOp::create(b, loc, i64, chunks.getInductionVar());
    Value first = arith::MulIOp::create(b, loc, c, i64Const(b, numPtrs));
    SmallVector<Value> bases;
    for (unsigned k = 0; k < numPtrs; ++k) {
      Value slot = gep(b, ptrType, ptrs,
                       arith::AddIOp::create(b, loc, first, i64Const(b, k)));
      bases.push_back(LLVM::LoadOp::create(b, loc, ptrType, slot, 8));
    }
    Value n = LLVM::LoadOp::create(b, loc, i64, gep(b, i64, lengths, c), 8);
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value nIdx = index(b, n);
    Value vectorEnd = zero;
    if (width > 1) {
      Value lanes = arith::ConstantIndexOp::create(b, loc, width);
      vectorEnd = arith::SubIOp::create(
          b, loc, nIdx, arith::RemUIOp::create(b, loc, nIdx, lanes));
      emitCoordinateLoop(b, zero, vectorEnd, width, bases);
    }
    emitCoordinateLoop(b, vectorEnd, nIdx, 1, bases);
  }
  func::ReturnOp::create(b, loc);
  rule.erase();
  return success();
}

namespace {
struct LowerRulesToKernels
    : public mlir::optim::impl::LowerRulesToKernelsBase<LowerRulesToKernels> {
  using Base::Base;
  void runOnOperation() override {
    SmallVector<RuleOp> rules(getOperation().getOps<RuleOp>());
    for (RuleOp rule : rules)
      if (failed(RuleLowering(rule, std::max(1u, unsigned(vectorWidth)),
                              relaxedFP)
                     .run()))
        return signalPassFailure();
  }
};
} // namespace
