//===- LowerVJPToKernels.cpp - a rule's VJP to one fused CPU kernel -------===//
//
// optim-differentiate writes the reverse mode of a rule as a per-coordinate
// function (@optim_vjp_<rule>) whose weight cotangents are tensors: one
// coordinate's contribution. Here that function becomes one kernel over the
// chunk table (KernelABI.h, optim_vjp_kernel_<rule>): each coordinate
// recomputes its forward step, overwrites its cotangent buffers with the
// cotangents of its inputs, and adds its weight and hyperparameter
// contributions to per-lane accumulators. Each chunk's accumulators are
// reduced in a fixed order into the chunk's own slot of `partials`, so the
// sum does not depend on which thread ran which chunk; the runtime adds the
// chunks in chunk order.
//
// Tensors never reach the kernel: a weight-cotangent tensor is a sum (addf)
// of the contributions of lstm_cell_vjp / linear_vjp ops (and zeros), so each
// of those ops accumulates straight into the slots of the weights it belongs
// to.
//
//===----------------------------------------------------------------------===//

#include "optim/Conversion/Passes.h"

#include "ChunkTable.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::optim {
#define GEN_PASS_DEF_LOWERVJPTOKERNELS
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

namespace {

/// Must match OPTIM_VJP_SYMBOL_PREFIX of KernelABI.h.
constexpr llvm::StringLiteral kSymbolPrefix = "optim_vjp_kernel_";

using Comps = SmallVector<Value, 4>;

/// The number of per-coordinate components of a value: N for vector<N>.
unsigned numComponents(Type type) {
  if (auto vec = dyn_cast<VectorType>(type))
    return vec.getNumElements();
  return 1;
}

class VJPLowering {
public:
  VJPLowering(func::FuncOp func, unsigned width) : func(func), width(width) {}
  LogicalResult run();

private:
  LogicalResult analyze();
  LogicalResult traceWeightCotangent(Value v, unsigned slot);
  void emitCoordinateLoop(OpBuilder &b, Value lb, Value ub, unsigned lanes,
                          ArrayRef<Value> bases, Value stride, Value acc);
  Value i64Const(OpBuilder &b, int64_t v) {
    return arith::ConstantIntOp::create(b, loc, v, 64);
  }
  Value gep(OpBuilder &b, Type type, Value base, Value i64Index) {
    return LLVM::GEPOp::create(b, loc, ptrType, type, base,
                               ValueRange{i64Index});
  }

  func::FuncOp func;
  unsigned width;
  Location loc = func.getLoc();
  Type ptrType;
  FloatType elt;
  unsigned numHypers = 0, numStates = 0, numWeights = 0;
  /// Partial sums per chunk: hyperparameters, then each weights tensor.
  int64_t numPartials = 0;
  SmallVector<int64_t> weightOffset, weightSize;

  BlockArgument param() { return func.getArgument(0); }
  BlockArgument grad() { return func.getArgument(1); }
  BlockArgument step() { return func.getArgument(2); }
  BlockArgument hyper(unsigned i) { return func.getArgument(3 + i); }
  BlockArgument state(unsigned i) {
    return func.getArgument(3 + numHypers + i);
  }
  BlockArgument weight(unsigned i) {
    return func.getArgument(3 + numHypers + numStates + i);
  }
  /// The cotangent of the new p (i = 0) or of new state i - 1.
  BlockArgument cotangent(unsigned i) {
    return func.getArgument(3 + numHypers + numStates + numWeights + i);
  }

  llvm::DenseSet<Value> varying;
  SmallVector<Operation *> varyingOps;
  IRMapping uniform;
  /// Weights arguments -> their data pointer, loaded once per call.
  llvm::DenseMap<Value, Value> weightPtrs;
  /// lstm_cell_vjp / linear_vjp ops -> the weights slot their weight
  /// cotangent is added to (absent: the contribution is unused).
  llvm::DenseMap<Operation *, unsigned> weightSlot;
  Block *funcEntry = nullptr;
};

} // namespace

LogicalResult VJPLowering::traceWeightCotangent(Value v, unsigned slot) {
  Operation *def = v.getDefiningOp();
  if (def && matchPattern(v, m_AnyZeroFloat()))
    return success();
  if (auto add = dyn_cast_or_null<arith::AddFOp>(def))
    return failure(failed(traceWeightCotangent(add.getLhs(), slot)) ||
                   failed(traceWeightCotangent(add.getRhs(), slot)));
  if (def && isa<LSTMCellVJPOp, LinearVJPOp>(def) &&
      v == def->getResults().back()) {
    auto [it, inserted] = weightSlot.try_emplace(def, slot);
    if (!inserted && it->second != slot)
      return def->emitOpError("weight cotangent flows into two results");
    return success();
  }
  return func.emitOpError("weight cotangent ")
         << slot << " is not a sum of lstm_cell_vjp and "
         << "linear_vjp contributions";
}

LogicalResult VJPLowering::analyze() {
  auto layout = func->getAttrOfType<DenseI64ArrayAttr>("optim.vjp_layout");
  if (!layout || layout.size() != 3)
    return func.emitOpError("has no valid optim.vjp_layout");
  numHypers = layout[0];
  numStates = layout[1];
  numWeights = layout[2];
  unsigned numArgs = 3 + numHypers + 2 * numStates + numWeights + 1;
  if (func.getNumArguments() != numArgs ||
      func.getNumResults() != 1 + numStates + numHypers + numWeights)
    return func.emitOpError("signature does not match its optim.vjp_layout");
  elt = dyn_cast<FloatType>(param().getType());
  if (!elt || !(elt.isF32() || elt.isF64()))
    return func.emitOpError("CPU code generation supports f32 and f64 rules");

  numPartials = numHypers;
  for (unsigned w = 0; w < numWeights; ++w) {
    auto type = dyn_cast<RankedTensorType>(weight(w).getType());
    if (!type || !type.hasStaticShape() || type.getElementType() != elt)
      return func.emitOpError("weights ") << w << " must be a static tensor";
    weightOffset.push_back(numPartials);
    weightSize.push_back(type.getNumElements());
    numPartials += type.getNumElements();
  }

  auto ret = cast<func::ReturnOp>(func.front().getTerminator());
  for (unsigned w = 0; w < numWeights; ++w)
    if (failed(traceWeightCotangent(
            ret.getOperand(1 + numStates + numHypers + w), w)))
      return failure();

  varying.insert(param());
  varying.insert(grad());
  for (unsigned s = 0; s < numStates; ++s)
    varying.insert(state(s));
  for (unsigned i = 0; i <= numStates; ++i)
    varying.insert(cotangent(i));
  llvm::DenseSet<Value> weights;
  for (unsigned w = 0; w < numWeights; ++w)
    weights.insert(weight(w));

  for (Operation &op : func.front().without_terminator()) {
    bool tensorResult = llvm::any_of(op.getResultTypes(),
                                     [](Type t) { return isa<TensorType>(t); });
    if (tensorResult && !isa<LSTMCellVJPOp, LinearVJPOp>(op)) {
      // Weight cotangent sums and zeros: accounted for by weightSlot.
      if (!isa<arith::AddFOp, arith::ConstantOp>(op))
        return op.emitOpError("cannot be part of a weight cotangent");
      for (Operation *user : op.getUsers())
        if (!isa<arith::AddFOp, func::ReturnOp>(user))
          return user->emitOpError("uses a weight cotangent");
      continue;
    }
    bool isVarying = llvm::any_of(op.getOperands(), [&](Value v) {
      return varying.contains(v) || weights.contains(v);
    });
    if (!isVarying)
      continue;
    bool supported = false;
    if (isa<LogSignOp, LSTMCellOp, LinearOp, LSTMCellVJPOp, LinearVJPOp,
            vector::BroadcastOp, vector::FromElementsOp>(op))
      supported = true;
    else if (auto red = dyn_cast<vector::ReductionOp>(op))
      supported = red.getKind() == vector::CombiningKind::ADD && !red.getAcc();
    else if (auto ex = dyn_cast<vector::ExtractOp>(op))
      supported =
          ex.getDynamicPosition().empty() && ex.getStaticPosition().size() == 1;
    else if (auto ins = dyn_cast<vector::InsertOp>(op))
      supported = ins.getDynamicPosition().empty() &&
                  ins.getStaticPosition().size() == 1 &&
                  !isa<VectorType>(ins.getValueToStore().getType());
    else
      supported =
          op.hasTrait<OpTrait::Elementwise>() && op.getNumRegions() == 0;
    if (isa<vector::BroadcastOp>(op) &&
        isa<VectorType>(cast<vector::BroadcastOp>(op).getSource().getType()))
      supported = false;
    if (!supported)
      return op.emitOpError("cannot be computed per coordinate by the VJP "
                            "kernel generator");
    varyingOps.push_back(&op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  return success();
}

void VJPLowering::emitCoordinateLoop(OpBuilder &b, Value lb, Value ub,
                                     unsigned lanes, ArrayRef<Value> bases,
                                     Value stride, Value acc) {
  Value stepC = arith::ConstantIndexOp::create(b, loc, lanes);
  auto loop = scf::ForOp::create(b, loc, lb, ub, stepC);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  auto laneType = [&](Type scalar) -> Type {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  };
  Type valueType = laneType(elt);
  unsigned align = elt.getWidth() / 8;
  unsigned valueAlign = lanes * align;
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
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulFOp::create(b, loc, x, y);
  };
  auto add = [&](Value x, Value y) -> Value {
    return arith::AddFOp::create(b, loc, x, y);
  };
  auto sub = [&](Value x, Value y) -> Value {
    return arith::SubFOp::create(b, loc, x, y);
  };
  auto sigmoid = [&](Value z) -> Value {
    Value one = splat(1.0);
    Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, z));
    return arith::DivFOp::create(b, loc, one, add(one, e));
  };

  // Inputs p, g, states, then cotangents of p' and states' (component j of
  // a vector at base + j * stride).
  SmallVector<Value> inputs = {param(), grad()};
  for (unsigned s = 0; s < numStates; ++s)
    inputs.push_back(state(s));
  for (unsigned s = 0; s <= numStates; ++s)
    inputs.push_back(cotangent(s));
  llvm::DenseMap<Value, Comps> map;
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

  // Stack buffers of lane values, allocated once in the entry block.
  auto buffer = [&](int64_t count) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(funcEntry);
    return LLVM::AllocaOp::create(b, loc, ptrType, valueType,
                                  i64Const(b, count), valueAlign)
        .getResult();
  };
  auto at = [&](Value buf, Value index) {
    return gep(b, valueType, buf, index);
  };
  auto load = [&](Value buf, Value index) -> Value {
    return LLVM::LoadOp::create(b, loc, valueType, at(buf, index), valueAlign);
  };
  auto storeAt = [&](Value v, Value buf, Value index) {
    LLVM::StoreOp::create(b, loc, v, at(buf, index), valueAlign);
  };
  auto store = [&](ArrayRef<Value> values, Value buf) {
    for (auto [j, v] : llvm::enumerate(values))
      storeAt(v, buf, i64Const(b, j));
  };
  auto loadAll = [&](Value buf, int64_t count, int64_t first = 0) {
    Comps out;
    for (int64_t j = 0; j < count; ++j)
      out.push_back(load(buf, i64Const(b, first + j)));
    return out;
  };
  auto i64Of = [&](Value idx) -> Value {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), idx);
  };
  auto countedLoop = [&](int64_t n, ValueRange iterArgs = {}) {
    return scf::ForOp::create(b, loc, arith::ConstantIndexOp::create(b, loc, 0),
                              arith::ConstantIndexOp::create(b, loc, n),
                              arith::ConstantIndexOp::create(b, loc, 1),
                              iterArgs);
  };
  auto weightAt = [&](Value ptr, Value row, int64_t cols, Value col) {
    Value idx = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, row, i64Const(b, cols)), col);
    return broadcast(
        LLVM::LoadOp::create(b, loc, elt, gep(b, elt, ptr, idx), align));
  };
  // acc[slot] += v, for a partial-sum slot given as i64.
  auto accumulate = [&](Value slot, Value v) {
    storeAt(add(load(acc, slot), v), acc, slot);
  };
  // z[r] = W[r][cols - 1] + sum_j W[r][j] in[j] (bias first, as the forward
  // kernel), in a buffer of `rows` values; `inBuf` holds cols - 1 values.
  auto affine = [&](Value ptr, int64_t rows, int64_t cols, Value inBuf) {
    Value outBuf = buffer(rows);
    auto rowLoop = countedLoop(rows);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(rowLoop.getBody());
    Value r = i64Of(rowLoop.getInductionVar());
    auto colLoop = countedLoop(
        cols - 1, ValueRange{weightAt(ptr, r, cols, i64Const(b, cols - 1))});
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(colLoop.getBody());
      Value j = i64Of(colLoop.getInductionVar());
      scf::YieldOp::create(b, loc,
                           add(colLoop.getRegionIterArgs()[0],
                               mul(weightAt(ptr, r, cols, j), load(inBuf, j))));
    }
    storeAt(colLoop.getResult(0), outBuf, r);
    return outBuf;
  };
  // The transposed product and the outer product of one affine map's
  // backward: din[j] = sum_r W[r][j] dz[r] (rows in order), and, when
  // `slot` >= 0, acc[slot + r * cols + j] += dz[r] [in; 1][j].
  auto affineBackward = [&](Value ptr, int64_t rows, int64_t cols, Value inBuf,
                            Value dzBuf, int64_t slot) {
    Value din = buffer(cols - 1);
    Value zero = splat(0.0);
    {
      auto clear = countedLoop(cols - 1);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(clear.getBody());
      storeAt(zero, din, i64Of(clear.getInductionVar()));
    }
    auto rowLoop = countedLoop(rows);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(rowLoop.getBody());
    Value r = i64Of(rowLoop.getInductionVar());
    Value dz = load(dzBuf, r);
    Value rowSlot;
    if (slot >= 0)
      rowSlot = arith::AddIOp::create(
          b, loc, i64Const(b, slot),
          arith::MulIOp::create(b, loc, r, i64Const(b, cols)));
    auto colLoop = countedLoop(cols - 1);
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(colLoop.getBody());
      Value j = i64Of(colLoop.getInductionVar());
      storeAt(add(load(din, j), mul(weightAt(ptr, r, cols, j), dz)), din, j);
      if (rowSlot)
        accumulate(arith::AddIOp::create(b, loc, rowSlot, j),
                   mul(dz, load(inBuf, j)));
    }
    if (rowSlot)
      accumulate(arith::AddIOp::create(b, loc, rowSlot, i64Const(b, cols - 1)),
                 dz);
    return din;
  };

  // The forward activations of each lstm_cell, by operands, for its VJP:
  // (i, f, g, o, c', tanh c') per hidden unit, 6H values.
  struct Cell {
    Value inBuf, cBuf, act;
  };
  llvm::DenseMap<std::tuple<Value, Value, Value, Value>, Cell> cells;
  auto cellForward = [&](Value x, Value h, Value c, Value w) -> Cell {
    auto key = std::make_tuple(x, h, c, w);
    auto it = cells.find(key);
    if (it != cells.end())
      return it->second;
    Comps in = operand(x), hc = operand(h), cc = operand(c);
    in.append(hc.begin(), hc.end());
    auto shape = cast<RankedTensorType>(w.getType()).getShape();
    int64_t hidden = hc.size();
    Cell cell{buffer(shape[1] - 1), buffer(hidden), buffer(6 * hidden)};
    store(in, cell.inBuf);
    store(cc, cell.cBuf);
    Value z = affine(weightPtrs.lookup(w), shape[0], shape[1], cell.inBuf);
    auto gates = countedLoop(hidden);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(gates.getBody());
      Value j = i64Of(gates.getInductionVar());
      auto idx = [&](int64_t which) {
        return arith::AddIOp::create(b, loc, j, i64Const(b, which * hidden));
      };
      // Gates in PyTorch's order: input, forget, cell, output.
      Value ig = sigmoid(load(z, idx(0))), fg = sigmoid(load(z, idx(1)));
      Value gg = math::TanhOp::create(b, loc, load(z, idx(2)));
      Value og = sigmoid(load(z, idx(3)));
      Value cj = add(mul(fg, load(cell.cBuf, j)), mul(ig, gg));
      Value tc = math::TanhOp::create(b, loc, cj);
      Value acts[] = {ig, fg, gg, og, cj, tc};
      for (auto [k, v] : llvm::enumerate(acts))
        storeAt(v, cell.act, idx(k));
    }
    cells[key] = cell;
    return cell;
  };

  for (Operation *op : varyingOps) {
    if (auto bc = dyn_cast<vector::BroadcastOp>(op)) {
      Comps src = operand(bc.getSource());
      map[bc.getResult()] =
          Comps(numComponents(bc.getResult().getType()), src.front());
      continue;
    }
    if (auto red = dyn_cast<vector::ReductionOp>(op)) {
      Comps src = operand(red.getVector());
      Value sum = src.front();
      for (Value x : ArrayRef<Value>(src).drop_front())
        sum = add(sum, x);
      map[red.getResult()] = {sum};
      continue;
    }
    if (auto ex = dyn_cast<vector::ExtractOp>(op)) {
      map[ex.getResult()] = {
          operand(ex.getSource())[ex.getStaticPosition()[0]]};
      continue;
    }
    if (auto ins = dyn_cast<vector::InsertOp>(op)) {
      Comps dest = operand(ins.getDest());
      dest[ins.getStaticPosition()[0]] = operand(ins.getValueToStore()).front();
      map[ins.getResult()] = dest;
      continue;
    }
    if (auto fe = dyn_cast<vector::FromElementsOp>(op)) {
      Comps out;
      for (Value v : fe.getElements())
        out.push_back(operand(v).front());
      map[fe.getResult()] = out;
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
      Value inBuf = buffer(shape[1] - 1);
      store(operand(lin.getX()), inBuf);
      map[lin.getResult()] = loadAll(affine(weightPtrs.lookup(lin.getWeights()),
                                            shape[0], shape[1], inBuf),
                                     shape[0]);
      continue;
    }
    if (auto cell = dyn_cast<LSTMCellOp>(op)) {
      Cell fwd =
          cellForward(cell.getX(), cell.getH(), cell.getC(), cell.getWeights());
      int64_t hidden = cell.getH().getType().getNumElements();
      Comps hOut;
      for (int64_t j = 0; j < hidden; ++j)
        hOut.push_back(mul(load(fwd.act, i64Const(b, 3 * hidden + j)),
                           load(fwd.act, i64Const(b, 5 * hidden + j))));
      map[cell.getHOut()] = hOut;
      map[cell.getCOut()] = loadAll(fwd.act, hidden, 4 * hidden);
      continue;
    }
    if (auto lin = dyn_cast<LinearVJPOp>(op)) {
      auto shape = lin.getWeights().getType().getShape();
      Value inBuf = buffer(shape[1] - 1), dyBuf = buffer(shape[0]);
      store(operand(lin.getX()), inBuf);
      store(operand(lin.getDy()), dyBuf);
      auto it = weightSlot.find(op);
      int64_t slot = it == weightSlot.end() ? -1 : weightOffset[it->second];
      Value din = affineBackward(weightPtrs.lookup(lin.getWeights()), shape[0],
                                 shape[1], inBuf, dyBuf, slot);
      map[lin.getDx()] = loadAll(din, shape[1] - 1);
      continue;
    }
    if (auto vjp = dyn_cast<LSTMCellVJPOp>(op)) {
      Cell fwd =
          cellForward(vjp.getX(), vjp.getH(), vjp.getC(), vjp.getWeights());
      int64_t hidden = vjp.getH().getType().getNumElements();
      auto shape = vjp.getWeights().getType().getShape();
      Value dhBuf = buffer(hidden), dcBuf = buffer(hidden);
      store(operand(vjp.getDhOut()), dhBuf);
      store(operand(vjp.getDcOut()), dcBuf);
      Value dz = buffer(4 * hidden), dc = buffer(hidden);
      auto gates = countedLoop(hidden);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(gates.getBody());
        Value j = i64Of(gates.getInductionVar());
        auto idx = [&](int64_t which) -> Value {
          return arith::AddIOp::create(b, loc, j, i64Const(b, which * hidden));
        };
        auto act = [&](int64_t which) { return load(fwd.act, idx(which)); };
        Value ig = act(0), fg = act(1), gg = act(2), og = act(3), tc = act(5);
        Value one = splat(1.0);
        Value dh = load(dhBuf, j);
        // dc' = dc_out + dh_out o (1 - tanh^2 c')
        Value dcp =
            add(load(dcBuf, j), mul(mul(dh, og), sub(one, mul(tc, tc))));
        auto sigmoidSlope = [&](Value s) { return mul(s, sub(one, s)); };
        storeAt(mul(mul(dcp, gg), sigmoidSlope(ig)), dz, idx(0));
        storeAt(mul(mul(dcp, load(fwd.cBuf, j)), sigmoidSlope(fg)), dz, idx(1));
        storeAt(mul(mul(dcp, ig), sub(one, mul(gg, gg))), dz, idx(2));
        storeAt(mul(mul(dh, tc), sigmoidSlope(og)), dz, idx(3));
        storeAt(mul(dcp, fg), dc, j);
      }
      auto it = weightSlot.find(op);
      int64_t slot = it == weightSlot.end() ? -1 : weightOffset[it->second];
      Value din = affineBackward(weightPtrs.lookup(vjp.getWeights()), shape[0],
                                 shape[1], fwd.inBuf, dz, slot);
      int64_t in = shape[1] - 1 - hidden;
      map[vjp.getDx()] = loadAll(din, in);
      map[vjp.getDh()] = loadAll(din, hidden, in);
      map[vjp.getDc()] = loadAll(dc, hidden);
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
      for (auto [k, r] : llvm::enumerate(clone->getResults())) {
        r.setType(laneType(getElementTypeOrSelf(r.getType())));
        results[k].push_back(r);
      }
    }
    for (auto [r, comps] : llvm::zip(op->getResults(), results))
      map[r] = comps;
  }

  // Outputs: the cotangents of p and of each state overwrite the incoming
  // ones; hyperparameter contributions go to their accumulators.
  auto ret = cast<func::ReturnOp>(func.front().getTerminator());
  for (unsigned k = 0; k <= numStates; ++k) {
    Comps comps = operand(ret.getOperand(k));
    for (auto [j, addr] : llvm::enumerate(addrs[2 + numStates + k]))
      LLVM::StoreOp::create(b, loc, comps.size() == 1 ? comps[0] : comps[j],
                            addr, align);
  }
  for (unsigned h = 0; h < numHypers; ++h) {
    Value v = ret.getOperand(1 + numStates + h);
    if (matchPattern(v, m_AnyZeroFloat()))
      continue;
    accumulate(i64Const(b, h), operand(v).front());
  }
}

LogicalResult VJPLowering::run() {
  MLIRContext *ctx = func.getContext();
  ptrType = LLVM::LLVMPointerType::get(ctx);
  if (failed(analyze()))
    return failure();
  std::string name =
      func->getAttrOfType<FlatSymbolRefAttr>("optim.vjp_of").getValue().str();

  OpBuilder b(func);
  Type i64 = b.getI64Type();
  auto fnType = b.getFunctionType(
      {ptrType, ptrType, ptrType, i64, i64, ptrType, i64, ptrType, ptrType},
      {});
  auto kernel =
      func::FuncOp::create(b, loc, (kSymbolPrefix + name).str(), fnType);
  Block *entry = kernel.addEntryBlock();
  funcEntry = entry;
  b.setInsertionPointToStart(entry);
  Value ptrs = entry->getArgument(0), lengths = entry->getArgument(1),
        strides = entry->getArgument(2), begin = entry->getArgument(3),
        end = entry->getArgument(4), hypers = entry->getArgument(5),
        stepArg = entry->getArgument(6), weights = entry->getArgument(7),
        partials = entry->getArgument(8);

  for (unsigned h = 0; h < numHypers; ++h) {
    if (hyper(h).use_empty())
      continue;
    Value v =
        LLVM::LoadOp::create(b, loc, b.getF64Type(),
                             gep(b, b.getF64Type(), hypers, i64Const(b, h)), 8);
    if (!elt.isF64())
      v = arith::TruncFOp::create(b, loc, elt, v);
    uniform.map(hyper(h), v);
  }
  uniform.map(step(), stepArg);
  for (unsigned w = 0; w < numWeights; ++w)
    weightPtrs[weight(w)] = LLVM::LoadOp::create(
        b, loc, ptrType, gep(b, ptrType, weights, i64Const(b, w)), 8);
  for (Operation &op : func.front().without_terminator())
    if (!llvm::is_contained(varyingOps, &op) &&
        llvm::none_of(op.getResultTypes(),
                      [](Type t) { return isa<TensorType>(t); }))
      b.clone(op, uniform);

  // Per-lane accumulators of the vector loop and of the scalar tail.
  Type vecType = VectorType::get({width}, elt);
  unsigned align = elt.getWidth() / 8;
  Value vacc, sacc;
  Value count = i64Const(b, std::max<int64_t>(numPartials, 1));
  if (width > 1)
    vacc =
        LLVM::AllocaOp::create(b, loc, ptrType, vecType, count, width * align);
  sacc = LLVM::AllocaOp::create(b, loc, ptrType, elt, count, align);

  unsigned numPtrs = 3 + 2 * numStates;
  auto index = [&](Value v) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
  };
  auto chunks = scf::ForOp::create(b, loc, index(begin), index(end),
                                   arith::ConstantIndexOp::create(b, loc, 1));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(chunks.getBody());
    Value c = arith::IndexCastOp::create(b, loc, i64, chunks.getInductionVar());
    ChunkView chunk = loadChunk(b, loc, ptrs, lengths, strides, c, numPtrs);
    ArrayRef<Value> bases = chunk.bases;
    Value n = chunk.length, stride = chunk.stride;

    auto overPartials = [&](auto body) {
      auto loop = scf::ForOp::create(
          b, loc, arith::ConstantIndexOp::create(b, loc, 0),
          arith::ConstantIndexOp::create(b, loc, numPartials),
          arith::ConstantIndexOp::create(b, loc, 1));
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(loop.getBody());
      body(arith::IndexCastOp::create(b, loc, i64, loop.getInductionVar()));
    };
    overPartials([&](Value k) {
      Value zero = arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 0.0));
      if (vacc)
        LLVM::StoreOp::create(
            b, loc, vector::BroadcastOp::create(b, loc, vecType, zero),
            gep(b, vecType, vacc, k), width * align);
      LLVM::StoreOp::create(b, loc, zero, gep(b, elt, sacc, k), align);
    });

    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value nIdx = index(n);
    Value vectorEnd = zero;
    if (width > 1) {
      Value lanes = arith::ConstantIndexOp::create(b, loc, width);
      vectorEnd = arith::SubIOp::create(
          b, loc, nIdx, arith::RemUIOp::create(b, loc, nIdx, lanes));
      emitCoordinateLoop(b, zero, vectorEnd, width, bases, stride, vacc);
    }
    emitCoordinateLoop(b, vectorEnd, nIdx, 1, bases, stride, sacc);

    // partials[c * P + k] = (lanes of vacc[k], in order) + sacc[k].
    Value chunkBase =
        arith::MulIOp::create(b, loc, c, i64Const(b, numPartials));
    overPartials([&](Value k) {
      Value sum =
          LLVM::LoadOp::create(b, loc, elt, gep(b, elt, sacc, k), align);
      if (vacc) {
        Value v = LLVM::LoadOp::create(b, loc, vecType,
                                       gep(b, vecType, vacc, k), width * align);
        Value lanesSum =
            vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, v);
        sum = arith::AddFOp::create(b, loc, lanesSum, sum);
      }
      LLVM::StoreOp::create(
          b, loc, sum,
          gep(b, elt, partials, arith::AddIOp::create(b, loc, chunkBase, k)),
          align);
    });
  }
  func::ReturnOp::create(b, loc);
  return success();
}

namespace {
struct LowerVJPToKernels
    : public mlir::optim::impl::LowerVJPToKernelsBase<LowerVJPToKernels> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> vjps;
    for (auto f : module.getOps<func::FuncOp>())
      if (f->hasAttr("optim.vjp_of"))
        vjps.push_back(f);
    for (func::FuncOp f : vjps) {
      if (failed(VJPLowering(f, std::max(1u, unsigned(vectorWidth))).run()))
        return signalPassFailure();
      // The per-coordinate step of the same rule has no use in a kernel
      // module (and its weights are tensors): drop both functions.
      auto rule = f->getAttrOfType<FlatSymbolRefAttr>("optim.vjp_of");
      if (auto stepFn = module.lookupSymbol<func::FuncOp>(
              ("optim_step_" + rule.getValue()).str()))
        stepFn.erase();
      f.erase();
    }
  }
};
} // namespace
