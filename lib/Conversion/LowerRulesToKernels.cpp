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
#include "mlir/IR/TypeUtilities.h"
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
                          ArrayRef<Value> bases, Value stride);

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
  /// Weights tensors -> the pointer to their data, loaded once per call.
  llvm::DenseMap<Value, Value> weightPtrs;
  /// The kernel's entry block, where stack buffers are allocated.
  Block *funcEntry = nullptr;
  using Comps = SmallVector<Value, 4>;
};

} // namespace

/// The number of per-coordinate components of a value: N for vector<N>.
static unsigned numComponents(Type type) {
  if (auto vec = dyn_cast<VectorType>(type))
    return vec.getNumElements();
  return 1;
}

LogicalResult RuleLowering::classify() {
  varying.insert(rule.getParam());
  varying.insert(rule.getGrad());
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    varying.insert(rule.getState(i));
  llvm::DenseSet<Value> weights;
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i)
    weights.insert(rule.getWeight(i));
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    // Ops on the weights run per coordinate: their other operands are
    // per-coordinate values in every rule the front end produces.
    bool isVarying = llvm::any_of(op.getOperands(), [&](Value v) {
      return varying.contains(v) || weights.contains(v);
    });
    if (!isVarying)
      continue;
    auto isCoordinateValue = [&](Type t) {
      Type scalar = getElementTypeOrSelf(t);
      auto vec = dyn_cast<VectorType>(t);
      return (scalar == elt || scalar.isInteger(1)) &&
             (!vec || (vec.getRank() == 1 && !vec.isScalable()));
    };
    bool supported = false;
    if (isa<LogSignOp, LSTMCellOp, LinearOp, vector::BroadcastOp,
            vector::ExtractOp>(op))
      supported = true;
    else if (auto red = dyn_cast<vector::ReductionOp>(op))
      supported = red.getKind() == vector::CombiningKind::ADD && !red.getAcc();
    else
      supported = op.hasTrait<OpTrait::Elementwise>() &&
                  op.getNumRegions() == 0 &&
                  llvm::all_of(op.getResultTypes(), isCoordinateValue);
    if (auto extract = dyn_cast<vector::ExtractOp>(op))
      supported = extract.getDynamicPosition().empty() &&
                  extract.getStaticPosition().size() == 1;
    if (!supported)
      return op.emitOpError("cannot be computed per coordinate by the CPU "
                            "code generator yet");
    varyingOps.push_back(&op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  return success();
}

void RuleLowering::emitCoordinateLoop(OpBuilder &b, Value lb, Value ub,
                                      unsigned lanes, ArrayRef<Value> bases,
                                      Value stride) {
  Location loc = rule.getLoc();
  Value step = arith::ConstantIndexOp::create(b, loc, lanes);
  auto loop = scf::ForOp::create(b, loc, lb, ub, step);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  auto laneType = [&](Type scalar) -> Type {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  };
  Type valueType = laneType(elt);
  unsigned align = elt.getWidth() / 8;
  auto splat = [&](double value) -> Value {
    if (lanes == 1)
      return arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, value));
    return arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(cast<ShapedType>(valueType),
                               b.getFloatAttr(elt, value)));
  };
  auto broadcast = [&](Value scalar) -> Value {
    if (lanes == 1)
      return scalar;
    return vector::BroadcastOp::create(
        b, loc, VectorType::get({lanes}, scalar.getType()), scalar);
  };

  // Every per-coordinate value is a list of components, each holding one
  // element of it for `lanes` coordinates: a vector<N> value has N.
  llvm::DenseMap<Value, Comps> map;
  // Inputs: p, g, then each state (component j of a vector state at
  // base + j * stride).
  SmallVector<Value> inputs = {rule.getParam(), rule.getGrad()};
  for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s)
    inputs.push_back(rule.getState(s));
  SmallVector<SmallVector<Value>> addrs;
  for (auto [input, base] : llvm::zip(inputs, bases)) {
    SmallVector<Value> componentAddrs;
    unsigned n = numComponents(input.getType());
    for (unsigned j = 0; j < n; ++j) {
      Value offset = i;
      if (j)
        offset = arith::AddIOp::create(
            b, loc, i, arith::MulIOp::create(b, loc, stride, i64Const(b, j)));
      componentAddrs.push_back(gep(b, elt, base, offset));
    }
    if (!input.use_empty())
      for (Value addr : componentAddrs)
        map[input].push_back(
            LLVM::LoadOp::create(b, loc, valueType, addr, align));
    addrs.push_back(std::move(componentAddrs));
  }

  llvm::DenseMap<Value, Comps> broadcasts;
  auto operand = [&](Value v) -> Comps {
    if (varying.contains(v))
      return map.lookup(v);
    Comps &cached = broadcasts[v];
    if (!cached.empty())
      return cached;
    Value u = uniform.lookup(v);
    if (auto vec = dyn_cast<VectorType>(u.getType())) {
      for (int64_t j = 0; j < vec.getNumElements(); ++j)
        cached.push_back(broadcast(
            vector::ExtractOp::create(b, loc, u, ArrayRef<int64_t>{j})));
    } else {
      cached.push_back(broadcast(u));
    }
    return cached;
  };
  auto fm = [&]() {
    return relaxed ? arith::FastMathFlags::contract
                   : arith::FastMathFlags::none;
  };
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulFOp::create(b, loc, x, y, fm());
  };
  auto add = [&](Value x, Value y) -> Value {
    return arith::AddFOp::create(b, loc, x, y, fm());
  };
  auto sigmoid = [&](Value z) -> Value {
    Value one = splat(1.0);
    Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, z));
    return arith::DivFOp::create(b, loc, one, add(one, e));
  };
  // Matrix-vector products run as loops over a stack buffer, not unrolled:
  // a 2x20 LSTM unrolled is ~10k instructions that LLVM takes close to a
  // minute to optimize.
  unsigned valueAlign = lanes * align;
  auto buffer = [&](int64_t count) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(funcEntry);
    return LLVM::AllocaOp::create(b, loc, ptrType, valueType,
                                  i64Const(b, count), valueAlign)
        .getResult();
  };
  auto store = [&](ArrayRef<Value> values, Value buf) {
    for (auto [j, v] : llvm::enumerate(values))
      LLVM::StoreOp::create(b, loc, v, gep(b, valueType, buf, i64Const(b, j)),
                            valueAlign);
  };
  auto load = [&](Value buf, Value index) -> Value {
    return LLVM::LoadOp::create(b, loc, valueType,
                                gep(b, valueType, buf, index), valueAlign);
  };
  auto loadAll = [&](Value buf, int64_t count) {
    Comps out;
    for (int64_t j = 0; j < count; ++j)
      out.push_back(load(buf, i64Const(b, j)));
    return out;
  };
  auto i64Of = [&](Value idx) -> Value {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), idx);
  };
  // for i in [0, n), carrying `iterArgs`.
  auto countedLoop = [&](int64_t n, ValueRange iterArgs = {}) {
    return scf::ForOp::create(b, loc, arith::ConstantIndexOp::create(b, loc, 0),
                              arith::ConstantIndexOp::create(b, loc, n),
                              arith::ConstantIndexOp::create(b, loc, 1),
                              iterArgs);
  };
  // z[r] = W[r][cols - 1] + sum_j W[r][j] in_j: the bias first, then the
  // inputs in order (the documented layout [W | b]). Returns a buffer of
  // `rows` values.
  auto affine = [&](Value weights, int64_t rows, int64_t cols,
                    ArrayRef<Value> in) -> Value {
    Value ptr = weightPtrs.lookup(weights);
    Value inBuf = buffer(cols - 1), outBuf = buffer(rows);
    store(in, inBuf);
    auto weight = [&](Value row, Value col) {
      Value at = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, row, i64Const(b, cols)), col);
      return broadcast(
          LLVM::LoadOp::create(b, loc, elt, gep(b, elt, ptr, at), align));
    };
    auto rowLoop = countedLoop(rows);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(rowLoop.getBody());
      Value r = i64Of(rowLoop.getInductionVar());
      Value bias = weight(r, i64Const(b, cols - 1));
      auto colLoop = countedLoop(cols - 1, ValueRange{bias});
      {
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(colLoop.getBody());
        Value j = i64Of(colLoop.getInductionVar());
        Value acc = add(colLoop.getRegionIterArgs()[0],
                        mul(weight(r, j), load(inBuf, j)));
        scf::YieldOp::create(b, loc, acc);
      }
      LLVM::StoreOp::create(b, loc, colLoop.getResult(0),
                            gep(b, valueType, outBuf, r), valueAlign);
    }
    return outBuf;
  };

  for (Operation *op : varyingOps) {
    if (auto div = dyn_cast<arith::DivFOp>(op)) {
      auto it = reciprocals.find(div.getRhs());
      if (it != reciprocals.end()) {
        Value r = broadcast(it->second);
        Comps out;
        for (Value x : operand(div.getLhs()))
          out.push_back(arith::MulFOp::create(b, loc, x, r,
                                              arith::FastMathFlags::contract));
        map[div.getResult()] = out;
        continue;
      }
    }
    if (auto bc = dyn_cast<vector::BroadcastOp>(op)) {
      Comps src = operand(bc.getSource());
      map[bc.getResult()] =
          Comps(numComponents(bc.getResult().getType()), src.front());
      continue;
    }
    if (auto red = dyn_cast<vector::ReductionOp>(op)) {
      Comps src = operand(red.getVector());
      Value acc = src.front();
      for (Value x : ArrayRef<Value>(src).drop_front())
        acc = add(acc, x);
      map[red.getResult()] = {acc};
      continue;
    }
    if (auto ex = dyn_cast<vector::ExtractOp>(op)) {
      map[ex.getResult()] = {
          operand(ex.getSource())[ex.getStaticPosition()[0]]};
      continue;
    }
    if (auto ls = dyn_cast<LogSignOp>(op)) {
      // (log|g| / k, sign g) if |g| >= exp(-k), else (-1, exp(k) g).
      Value g = operand(ls.getG()).front(), k = operand(ls.getK()).front();
      Value absG = math::AbsFOp::create(b, loc, g);
      Value big = arith::CmpFOp::create(
          b, loc, arith::CmpFPredicate::OGE, absG,
          math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, k)));
      Value first = arith::SelectOp::create(
          b, loc, big,
          arith::DivFOp::create(b, loc, math::LogOp::create(b, loc, absG), k),
          splat(-1.0));
      Value zero = splat(0.0);
      Value sign = arith::SelectOp::create(
          b, loc,
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, g, zero),
          splat(1.0),
          arith::SelectOp::create(
              b, loc,
              arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, g, zero),
              splat(-1.0), g));
      Value second = arith::SelectOp::create(
          b, loc, big, sign, mul(math::ExpOp::create(b, loc, k), g));
      map[ls.getResult()] = {first, second};
      continue;
    }
    if (auto lin = dyn_cast<LinearOp>(op)) {
      auto shape = lin.getWeights().getType().getShape();
      map[lin.getResult()] = loadAll(
          affine(lin.getWeights(), shape[0], shape[1], operand(lin.getX())),
          shape[0]);
      continue;
    }
    if (auto cell = dyn_cast<LSTMCellOp>(op)) {
      Comps in = operand(cell.getX());
      Comps h = operand(cell.getH()), c = operand(cell.getC());
      in.append(h.begin(), h.end());
      auto shape = cell.getWeights().getType().getShape();
      Value z = affine(cell.getWeights(), shape[0], shape[1], in);
      int64_t hidden = h.size();
      Value cBuf = buffer(hidden), hOut = buffer(hidden), cOut = buffer(hidden);
      store(c, cBuf);
      auto gates = countedLoop(hidden);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(gates.getBody());
        Value j = i64Of(gates.getInductionVar());
        auto gate = [&](int64_t which) {
          return load(
              z, arith::AddIOp::create(b, loc, j, i64Const(b, which * hidden)));
        };
        // Gates in PyTorch's order: input, forget, cell, output.
        Value ig = sigmoid(gate(0)), fg = sigmoid(gate(1));
        Value gg = math::TanhOp::create(b, loc, gate(2));
        Value og = sigmoid(gate(3));
        Value cj = add(mul(fg, load(cBuf, j)), mul(ig, gg));
        LLVM::StoreOp::create(b, loc, cj, gep(b, valueType, cOut, j),
                              valueAlign);
        LLVM::StoreOp::create(b, loc, mul(og, math::TanhOp::create(b, loc, cj)),
                              gep(b, valueType, hOut, j), valueAlign);
      }
      map[cell.getHOut()] = loadAll(hOut, hidden);
      map[cell.getCOut()] = loadAll(cOut, hidden);
      continue;
    }
    // Elementwise arith and math: once per component.
    unsigned n = numComponents(op->getResult(0).getType());
    SmallVector<Comps> operands;
    for (Value v : op->getOperands())
      operands.push_back(operand(v));
    SmallVector<Comps> results(op->getNumResults());
    for (unsigned j = 0; j < n; ++j) {
      IRMapping opMap;
      for (auto [v, comps] : llvm::zip(op->getOperands(), operands))
        opMap.map(v, comps.size() == 1 ? comps.front() : comps[j]);
      Operation *clone = b.clone(*op, opMap);
      if (relaxed)
        if (auto fmi = dyn_cast<arith::ArithFastMathInterface>(clone))
          clone->setAttr(fmi.getFastMathAttrName(),
                         arith::FastMathFlagsAttr::get(
                             b.getContext(), arith::FastMathFlags::contract));
      for (auto [k, r] : llvm::enumerate(clone->getResults())) {
        r.setType(laneType(getElementTypeOrSelf(r.getType())));
        results[k].push_back(r);
      }
    }
    for (auto [r, comps] : llvm::zip(op->getResults(), results))
      map[r] = comps;
  }

  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  // Outputs: new p (index 0 of the yield, input 0) and states (inputs 2..).
  for (auto [k, value] : llvm::enumerate(yield.getValues())) {
    Value input = k == 0 ? rule.getParam() : rule.getState(k - 1);
    if (value == input)
      continue; // Unchanged: nothing to write.
    Comps comps = operand(value);
    for (auto [j, addr] : llvm::enumerate(addrs[k == 0 ? 0 : k + 1]))
      LLVM::StoreOp::create(b, loc, comps.size() == 1 ? comps[0] : comps[j],
                            addr, align);
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
  funcEntry = entry;
  b.setInsertionPointToStart(entry);
  Value ptrs = entry->getArgument(0), lengths = entry->getArgument(1),
        strides = entry->getArgument(2), begin = entry->getArgument(3),
        end = entry->getArgument(4), hypers = entry->getArgument(5),
        step = entry->getArgument(6);
  Value weights = entry->getArgument(7);

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
  for (unsigned w = 0, e = rule.getNumWeights(); w < e; ++w)
    weightPtrs[rule.getWeight(w)] = LLVM::LoadOp::create(
        b, loc, ptrType, gep(b, ptrType, weights, i64Const(b, w)), 8);
  // Uniform computations, once per call.
  for (Operation &op : rule.getBodyBlock().without_terminator())
    if (!llvm::is_contained(varyingOps, &op))
      b.clone(op, uniform);

  if (relaxed)
    for (Operation *op : varyingOps)
      if (auto div = dyn_cast<arith::DivFOp>(op))
        if (!varying.contains(div.getRhs()) && !reciprocals.count(div.getRhs()))
          reciprocals[div.getRhs()] = arith::DivFOp::create(
              b, loc,
              arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 1.0)),
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
    Value stride =
        LLVM::LoadOp::create(b, loc, i64, gep(b, i64, strides, c), 8);
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value nIdx = index(b, n);
    Value vectorEnd = zero;
    if (width > 1) {
      Value lanes = arith::ConstantIndexOp::create(b, loc, width);
      vectorEnd = arith::SubIOp::create(
          b, loc, nIdx, arith::RemUIOp::create(b, loc, nIdx, lanes));
      emitCoordinateLoop(b, zero, vectorEnd, width, bases, stride);
    }
    emitCoordinateLoop(b, vectorEnd, nIdx, 1, bases, stride);
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
      if (failed(
              RuleLowering(rule, std::max(1u, unsigned(vectorWidth)), relaxedFP)
                  .run()))
        return signalPassFailure();
  }
};
} // namespace
