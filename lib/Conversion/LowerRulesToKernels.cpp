//===- LowerRulesToKernels.cpp - optim.rule to a fused CPU kernel ------===//
//
// One rule becomes one function with the ABI of KernelABI.h. Values of the
// body that do not depend on p, g or the state ("uniform": hyperparameters,
// the step, bias corrections) are computed once per call before any loop;
// the rest ("varying") is cloned into a vector loop whose lanes are
// coordinates, and into a scalar loop for the tail of each chunk. Every
// coordinate is read once and written once: the kernel is fused by
// construction.
//
// Learned rules (lstm_cell, linear) are compute-bound and get a loop of
// their own first, over blocks of four vectors of coordinates: each hidden
// unit's four gate rows accumulate side by side (16 independent FMA chains
// fed by each input load and weight broadcast), inputs are read where they
// lie (state memory, or the buffer of the previous cell), new states are
// written as soon as they are computed, the activations are rational
// polynomials with two divisions per cell (lstmCellUpdate), and the next
// block's state lines are prefetched. The approximations apply to the
// learned ops only, in f32; update rules keep their exact arithmetic.
//
// A rule with tensor reductions (optim.tensor_reduce) makes two passes over
// memory (KernelABI.h, version 6), or one more per level of nesting (version
// 9): optim_reduce_<name> (ReduceKernel.cpp) computes each chunk's partials
// of one level per call, and this kernel takes one more argument, the
// reduced values of every chunk. Their results and what depends on them
// and on uniform values only ("per-chunk") are computed once per chunk,
// before its coordinate loops, and broadcast to lanes like uniform values.
//
// A rule with row or column states or reductions (version 10) takes chunks
// that are rectangles and runs these coordinate loops once per row of each;
// AxisKernels.cpp has what differs.
//
//===----------------------------------------------------------------------===//

#include "HeapBuffers.h"
#include "optim/Conversion/Passes.h"

#include "ChunkTable.h"
#include "LearnedMath.h"
#include "Philox.h"
#include "RuleLowering.h"

#include "mlir/IR/TypeUtilities.h"

namespace mlir::optim {
#define GEN_PASS_DEF_LOWERRULESTOKERNELS
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

/// The prefix of kernel symbols; must match OPTIM_RULE_SYMBOL_PREFIX.
static constexpr llvm::StringLiteral kSymbolPrefix = "optim_rule_";

/// The largest power of two that divides `bytes`: LLVM alignments must be
/// powers of two, and a vector of 3 doubles lies at multiples of 24 bytes.
static unsigned powerOfTwoAlignment(unsigned bytes) {
  return bytes & (~bytes + 1);
}

LogicalResult RuleLowering::classify() {
  if (failed(classifyAxes()))
    return failure();
  for (Value stream : rule.getChunkStreams())
    varying.insert(stream);
  llvm::DenseSet<Value> weights;
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i)
    weights.insert(rule.getWeight(i));
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    // Ops on the weights run per coordinate: their other operands are
    // per-coordinate values in every rule the front end produces. log_sign
    // of a value shared by the coordinates (a hyperparameter, a reduction)
    // runs per coordinate too: only the coordinate loops expand it, and the
    // op itself cannot live outside a rule.
    // A draw is per coordinate (its global index) though it reads nothing.
    bool isVarying =
        isa<LogSignOp, RandomOp>(op) || llvm::any_of(op.getOperands(), [&](Value v) {
          return varying.contains(v) || weights.contains(v);
        });
    // A row or column reduction has one slot among the reductions, but its
    // result is a row or column value, read per coordinate (AxisKernels.cpp).
    if (isAxisReduction(&op)) {
      auto red = cast<TensorReduceOp>(op);
      if (red.getValue().getType() != elt)
        return red.emitOpError("reduces a value of type ")
               << red.getValue().getType() << " in a rule of element type "
               << elt;
      reductions.push_back(red);
      varying.insert(red.getResult());
      continue;
    }
    if (isa<TensorReduceOp>(op) || !isVarying) {
      if (failed(classifyShared(op, elt, reductions, perChunk, perChunkOps)))
        return failure();
      continue;
    }
    auto isCoordinateValue = [&](Type t) { return isCoordinateType(t, elt); };
    bool supported = false;
    if (isa<LogSignOp, LSTMCellOp, LinearOp, RandomOp>(op))
      supported = true;
    else if (isComponentMove(&op))
      supported = isSupportedComponentMove(&op);
    else
      supported = op.hasTrait<OpTrait::Elementwise>() &&
                  op.getNumRegions() == 0 &&
                  llvm::all_of(op.getResultTypes(), isCoordinateValue);
    if (!supported)
      return op.emitOpError("cannot be computed per coordinate by the CPU "
                            "code generator yet");
    varyingOps.push_back(&op);
    learned |= isa<LSTMCellOp, LinearOp>(op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  collectRuleOps(rule.getBodyBlock(), varying, ruleOpSet);
  for (Operation *op : varyingOps)
    if (ruleOpSet.contains(op))
      ruleOps.push_back(op);
  classifyRowOps();
  return success();
}

bool RuleLowering::readByRule(Value input) {
  return llvm::any_of(input.getUsers(), [&](Operation *user) {
    return isa<YieldOp>(user) || ruleOpSet.contains(user);
  });
}

LogicalResult RuleLowering::checkReductions() {
  levels = reductionLevelsOf(rule, reductions);
  for (unsigned level : levels)
    maxLevel = std::max(maxLevel, level);
  return collectReductionSlices(reductions, levels, stageSlices, reductionSlice,
                                /*refuseLearned=*/true);
}

SmallVector<unsigned> RuleLowering::laneCounts() const {
  // Learned rules are compute-bound: blocks of four vectors of coordinates
  // give every broadcast weight four independent FMAs per row, then one
  // vector, then single coordinates for the tail. Every path runs the same
  // operations per lane, so a coordinate's result does not depend on which
  // one it takes.
  SmallVector<unsigned> counts;
  if (width > 1 && learned)
    counts.push_back(4 * width);
  if (width > 1)
    counts.push_back(width);
  return counts;
}

void RuleLowering::mapCoordinateOp(OpBuilder &b, Operation *op, unsigned lanes,
                                   CompMap &map,
                                   llvm::function_ref<Comps(Value)> operand) {
  Location loc = rule.getLoc();
  // LLVM contracts a multiply and an add depending on the code around them,
  // which differs between the two kernels: a value that is reduced must be
  // rounded alike in both, so its ops never contract. Nor do they divide by
  // a reciprocal: the reverse mode recomputes reduced values exactly
  // (optim-lower-vjp-to-kernels) and finds the coordinates that attain a
  // max or min by comparing them with the reduced value.
  bool contract = relaxed && !reductionSlice.contains(op);
  auto fm = [&]() {
    return contract ? arith::FastMathFlags::contract
                    : arith::FastMathFlags::none;
  };
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulFOp::create(b, loc, x, y, fm());
  };
  auto add = [&](Value x, Value y) -> Value {
    return arith::AddFOp::create(b, loc, x, y, fm());
  };
  auto div = dyn_cast<arith::DivFOp>(op);
  if (div && !reductionSlice.contains(op)) {
    auto it = reciprocals.find(div.getRhs());
    if (it != reciprocals.end()) {
      Value r = broadcast(b, it->second, lanes);
      Comps out;
      for (Value x : operand(div.getLhs()))
        out.push_back(arith::MulFOp::create(b, loc, x, r, fm()));
      map[div.getResult()] = out;
      return;
    }
  }
  if (mapComponentMoves(op, map, operand, add))
    return;
  if (auto draw = dyn_cast<RandomOp>(op)) {
    map[draw.getResult()] = {emitRandomDraw(
        b, loc, draw.getKind(), draw.getSite(), elt, rngSeed,
        uniform.lookup(rule.getStep()), drawIndex, lanes)};
    return;
  }
  if (auto ls = dyn_cast<LogSignOp>(op)) {
    // (log|g| / k, sign g) if |g| >= exp(-k), else (-1, exp(k) g).
    auto splat = [&](double value) -> Value {
      if (lanes == 1)
        return arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, value));
      return arith::ConstantOp::create(
          b, loc,
          DenseElementsAttr::get(cast<ShapedType>(laneType(elt, lanes)),
                                 b.getFloatAttr(elt, value)));
    };
    LogSign f = emitLogSign(b, loc, operand(ls.getG()).front(),
                            operand(ls.getK()).front(), splat, mul);
    if (learned)
      approximate.push_back(f.log);
    map[ls.getResult()] = {f.first, f.second};
    return;
  }
  // Elementwise arith and math: once per component.
  mapElementwise(
      b, op, map, operand,
      [&](Type scalar) { return laneType(scalar, lanes); }, contract);
}

void RuleLowering::emitCoordinateLoop(OpBuilder &b, Value lb, Value ub,
                                      unsigned lanes, ArrayRef<Value> bases,
                                      Value stride, bool prefetch) {
  Location loc = rule.getLoc();
  Value step = arith::ConstantIndexOp::create(b, loc, lanes);
  auto loop = scf::ForOp::create(b, loc, lb, ub, step);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  setDrawIndex(b, i);
  Type valueType = laneType(elt, lanes);
  unsigned align = elt.getWidth() / 8;
  // Prefetches the cache lines of this iteration's `lanes` coordinates of a
  // stream, starting `offset` elements past element `at` of `base`; hint 3
  // fetches into L1, 2 into L2.
  auto prefetchLines = [&](Value base, Value at, int64_t offset, int hint) {
    int64_t lineElts = std::max<int64_t>(1, 64 / align);
    for (int64_t l = 0; l < int64_t(lanes); l += lineElts) {
      Value element =
          offset + l ? arith::AddIOp::create(b, loc, at, i64Const(b, offset + l))
                     : at;
      LLVM::Prefetch::create(b, loc, gep(b, elt, base, element), /*rw=*/0,
                             hint, /*cache=*/1);
    }
  };
  // Stack buffers hold lane vectors back to back, `lanes` elements apart,
  // also for widths that are not a power of two (whose vector types LLVM
  // pads); a slot is aligned to the largest power of two dividing its offset.
  unsigned valueAlign = powerOfTwoAlignment(lanes * align);
  auto slot = [&](Value buf, Value index) -> Value {
    return gep(b, elt, buf,
               arith::MulIOp::create(b, loc, index, i64Const(b, lanes)));
  };
  auto broadcast = [&](Value scalar) -> Value {
    return this->broadcast(b, scalar, lanes);
  };

  // Every per-coordinate value is a list of components, each holding one
  // element of it for `lanes` coordinates: a vector<N> value has N.
  llvm::DenseMap<Value, Comps> map;
  // Inputs: p, g, the rule's inputs, then each state (component j of a
  // vector state at base + j * stride): the chunk table's order.
  SmallVector<Value> inputs = rule.getChunkStreams();
  SmallVector<SmallVector<Value>> addrs;
  for (auto [input, base] : llvm::zip(inputs, bases)) {
    SmallVector<Value> componentAddrs;
    // Row and column states are read where the row says (loadAxisValue) and
    // written to their next buffers (storeAxisState).
    if (axisOf.count(input)) {
      // Row states are read once per row, where first used (rowValue).
      bool perRow = rowAnchor && axisOf.lookup(input) == ValueAxis::Row;
      if (readByRule(input) && !perRow)
        map[input] = loadAxisValue(b, input, lanes, i);
      addrs.push_back(std::move(componentAddrs));
      continue;
    }
    unsigned n = numComponents(input.getType());
    for (unsigned j = 0; j < n; ++j) {
      Value offset = i;
      if (j)
        offset = arith::AddIOp::create(
            b, loc, i, arith::MulIOp::create(b, loc, stride, i64Const(b, j)));
      componentAddrs.push_back(gep(b, elt, base, offset));
    }
    // Learned rules load each input where it is first used: loaded up
    // front, the 80 state vectors would stay live across the LSTM loops and
    // be spilled.
    if (readByRule(input) && !learned)
      for (Value addr : componentAddrs)
        map[input].push_back(
            LLVM::LoadOp::create(b, loc, valueType, addr, align));
    addrs.push_back(std::move(componentAddrs));
  }
  // Update rules stream every input once. Memory latency is covered by the
  // loads in flight, which the reorder buffer bounds: a rule whose
  // arithmetic has many micro-ops (Adam: three divisions and a square root
  // per coordinate) keeps fewer lines in flight than a copy and falls below
  // the memory limit. Prefetches retire at once and keep lines in flight
  // whatever the arithmetic. Clamped to the loop's range, so that a short
  // tensor fetches nothing beyond its end.
  if (prefetch) {
    Value last = arith::SubIOp::create(
        b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), ub),
        i64Const(b, lanes));
    Value ahead = arith::MinSIOp::create(
        b, loc,
        arith::AddIOp::create(b, loc, i, i64Const(b, prefetchBytes / align)),
        last);
    for (auto [input, base] : llvm::zip(inputs, bases)) {
      // p and the states are written back (their lines are fetched
      // anyway); g and the inputs only when they are read.
      if ((rule.isReadOnlyStream(input) && !readByRule(input)) ||
          axisOf.count(input))
        continue;
      for (unsigned j = 0, n = numComponents(input.getType()); j < n; ++j) {
        Value at = ahead;
        if (j)
          at = arith::AddIOp::create(
              b, loc, at,
              arith::MulIOp::create(b, loc, stride, i64Const(b, j)));
        prefetchLines(base, at, 0, /*hint=*/3);
      }
    }
  }
  llvm::DenseMap<Value, unsigned> inputIndex;
  for (auto [k, input] : llvm::enumerate(inputs))
    inputIndex[input] = k;
  // State s is written by the op that computes its new value, as soon as it
  // is computed, when no later op reads its old value (lastRead; the yield
  // reads at the end, when it stores a state's old value to another state).
  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  llvm::DenseMap<Value, unsigned> lastRead;
  for (auto [k, op] : llvm::enumerate(ruleOps))
    for (Value v : op->getOperands())
      if (inputIndex.count(v))
        lastRead[v] = k;
  for (auto [k, value] : llvm::enumerate(yield.getValues()))
    if (inputIndex.count(value) &&
        value != (k == 0 ? rule.getParam() : rule.getState(k - 1)))
      lastRead[value] = ruleOps.size();
  llvm::SmallDenseSet<unsigned> written; // States already stored.
  auto directTarget = [&](Value result, unsigned opIndex) -> int {
    if (!learned)
      return -1;
    for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s) {
      Value state = rule.getState(s);
      if (yield.getValues()[s + 1] == result && !written.count(s) &&
          (!lastRead.count(state) || lastRead[state] <= opIndex))
        return s;
    }
    return -1;
  };

  llvm::DenseMap<Value, Comps> broadcasts;
  // Per-coordinate values that lstm_cell left in a stack buffer of `count`
  // lane vectors, loaded where first used.
  llvm::DenseMap<Value, std::pair<Value, int64_t>> bufferedValues;
  auto operand = [&](Value v) -> Comps {
    if (varying.contains(v)) {
      if (rowAnchor && !map.count(v) && isRowOpResult(v))
        map[v] = broadcastRow(b, rowValue(b, v), lanes);
      auto buffered = bufferedValues.find(v);
      if (buffered != bufferedValues.end() && !map.count(v))
        for (int64_t j = 0; j < buffered->second.second; ++j)
          map[v].push_back(LLVM::LoadOp::create(
              b, loc, valueType,
              slot(buffered->second.first, i64Const(b, j)), valueAlign));
      if (axes && !map.count(v) && axisOf.count(v))
        map[v] = loadAxisValue(b, v, lanes, i);
      auto it = inputIndex.find(v);
      if (it != inputIndex.end() && !map.count(v))
        for (Value addr : addrs[it->second])
          map[v].push_back(
              LLVM::LoadOp::create(b, loc, valueType, addr, align));
      return map.lookup(v);
    }
    Comps &cached = broadcasts[v];
    if (cached.empty())
      cached = spreadUniform(b, loc, uniform.lookup(v), broadcast);
    return cached;
  };
  // Matrix-vector products run as loops over a stack buffer, not unrolled:
  // a 2x20 LSTM unrolled is ~10k instructions that LLVM takes close to a
  // minute to optimize.
  auto buffer = [&](int64_t count) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(funcEntry);
    return LLVM::AllocaOp::create(b, loc, ptrType, elt,
                                  i64Const(b, count * int64_t(lanes)),
                                  std::max(valueAlign, 64u))
        .getResult();
  };
  auto store = [&](ArrayRef<Value> values, Value buf) {
    for (auto [j, v] : llvm::enumerate(values))
      LLVM::StoreOp::create(b, loc, v, slot(buf, i64Const(b, j)), valueAlign);
  };
  auto load = [&](Value buf, Value index) -> Value {
    return LLVM::LoadOp::create(b, loc, valueType, slot(buf, index),
                                valueAlign);
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
  // Where the components of a per-coordinate operand of lstm_cell/linear
  // are read: component k of this block's lanes at ptr + k * step.
  struct Segment {
    Value ptr, step;
    int64_t count;
  };
  auto stateSegment = [&](unsigned input) {
    return Segment{gep(b, elt, bases[input], i), stride,
                   numComponents(inputs[input].getType())};
  };
  auto bufferSegment = [&](Value buf, int64_t count) {
    return Segment{buf, i64Const(b, lanes), count};
  };
  // Copies `seg` into a new buffer with a loop (straight-line copies get
  // their loads scheduled ahead of the stores, and spilled).
  auto copySegment = [&](Segment seg) {
    Value buf = buffer(seg.count);
    auto loop = countedLoop(seg.count);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(loop.getBody());
      Value k = i64Of(loop.getInductionVar());
      Value v = LLVM::LoadOp::create(
          b, loc, valueType,
          gep(b, elt, seg.ptr, arith::MulIOp::create(b, loc, k, seg.step)),
          align);
      LLVM::StoreOp::create(b, loc, v, slot(buf, k), valueAlign);
    }
    return bufferSegment(buf, seg.count);
  };
  // The operand v in memory: a state not loaded yet is read in place (or
  // copied first when `copyState`), a value lstm_cell left in a buffer is
  // read there, and anything else is stored to a new buffer.
  auto segmentOf = [&](Value v, bool copyState) -> Segment {
    auto input = inputIndex.find(v);
    if (input != inputIndex.end() && !map.count(v)) {
      Segment seg = stateSegment(input->second);
      return copyState ? copySegment(seg) : seg;
    }
    auto buffered = bufferedValues.find(v);
    if (buffered != bufferedValues.end())
      return bufferSegment(buffered->second.first, buffered->second.second);
    Comps comps = operand(v);
    Value buf = buffer(comps.size());
    store(comps, buf);
    return bufferSegment(buf, comps.size());
  };
  // Rows `rows` of z = W [in; 1] for `lanes` coordinates, `in` the
  // concatenation of `segments`, with the bias first and then the inputs in
  // order (the documented layout [W | b]), one fused multiply-add per
  // weight. The rows share every input load and run as independent
  // accumulator chains, so that the FMA pipes stay busy (one chain per row
  // would wait on the FMA latency).
  auto rowGroup = [&](Value weights, int64_t cols, ArrayRef<Value> rows,
                      ArrayRef<Segment> segments) -> SmallVector<Value> {
    Value ptr = weightPtrs.lookup(weights);
    SmallVector<Value> rowPtrs, acc;
    for (Value r : rows) {
      Value rowPtr =
          gep(b, elt, ptr, arith::MulIOp::create(b, loc, r, i64Const(b, cols)));
      rowPtrs.push_back(rowPtr);
      acc.push_back(broadcast(LLVM::LoadOp::create(
          b, loc, elt, gep(b, elt, rowPtr, i64Const(b, cols - 1)), align)));
    }
    int64_t first = 0;
    for (const Segment &seg : segments) {
      auto colLoop = countedLoop(seg.count, acc);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(colLoop.getBody());
      Value k = i64Of(colLoop.getInductionVar());
      Value x = LLVM::LoadOp::create(
          b, loc, valueType,
          gep(b, elt, seg.ptr, arith::MulIOp::create(b, loc, k, seg.step)),
          align);
      Value col = arith::AddIOp::create(b, loc, k, i64Const(b, first));
      SmallVector<Value> next;
      for (auto [rowPtr, a] : llvm::zip(rowPtrs, colLoop.getRegionIterArgs()))
        next.push_back(math::FmaOp::create(
            b, loc,
            broadcast(LLVM::LoadOp::create(b, loc, elt,
                                           gep(b, elt, rowPtr, col), align)),
            x, a));
      scf::YieldOp::create(b, loc, next);
      acc.assign(colLoop.getResults().begin(), colLoop.getResults().end());
      first += seg.count;
    }
    return acc;
  };
  // A learned rule streams ~80 state vectors per coordinate, more streams
  // than the hardware prefetchers follow: every block fetches the next
  // block's lines itself, a whole block of compute ahead of use. The states
  // that an lstm_cell produces are fetched by the cell, one hidden unit at a
  // time, spread over the block's compute (all of them at the start of the
  // block queue up behind each other and stall the loads: 0.34-0.35 of the
  // FMA peak at 10^6 coordinates instead of 0.38-0.42); the other inputs
  // (p, g, other states) here, into L2.
  auto cellStates = [&](LSTMCellOp cell) {
    SmallVector<int> states;
    for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s)
      if (yield.getValues()[s + 1] == cell.getCOut() ||
          yield.getValues()[s + 1] == cell.getHOut())
        states.push_back(s);
    return states;
  };
  llvm::SmallDenseSet<int> fetchedByCells;
  const bool prefetchNext = learned && lanes > width;
  if (prefetchNext)
    for (Operation *op : ruleOps)
      if (auto cell = dyn_cast<LSTMCellOp>(op))
        for (int s : cellStates(cell))
          fetchedByCells.insert(s);
  if (prefetchNext) {
    for (auto [k, input, base] : llvm::enumerate(inputs, bases)) {
      if (!readByRule(input) ||
          fetchedByCells.count(int(k) - int(rule.getStateSlot(0))))
        continue;
      auto comps = countedLoop(numComponents(input.getType()));
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(comps.getBody());
      Value next = arith::AddIOp::create(
          b, loc, i,
          arith::MulIOp::create(b, loc, i64Of(comps.getInductionVar()),
                                stride));
      prefetchLines(base, next, lanes, /*hint=*/2);
    }
  }
  for (auto [opIndex, op] : llvm::enumerate(ruleOps)) {
    // Row values are computed once per row, where first read (rowValue).
    if (rowAnchor && rowOps.contains(op))
      continue;
    if (auto lin = dyn_cast<LinearOp>(op)) {
      auto shape = lin.getWeights().getType().getShape();
      int64_t rows = shape[0], cols = shape[1];
      Value outBuf = buffer(rows);
      Segment in = segmentOf(lin.getX(), /*copyState=*/false);
      // Four rows at a time where they divide evenly, else one.
      int64_t group = rows % 4 == 0 ? 4 : 1;
      auto rowLoop = countedLoop(rows / group);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(rowLoop.getBody());
        Value first = arith::MulIOp::create(
            b, loc, i64Of(rowLoop.getInductionVar()), i64Const(b, group));
        SmallVector<Value> rowIdx;
        for (int64_t r = 0; r < group; ++r)
          rowIdx.push_back(
              r ? arith::AddIOp::create(b, loc, first, i64Const(b, r)) : first);
        for (auto [r, z] :
             llvm::zip(rowIdx, rowGroup(lin.getWeights(), cols, rowIdx, {in})))
          LLVM::StoreOp::create(b, loc, z, slot(outBuf, r), valueAlign);
      }
      map[lin.getResult()] = loadAll(outBuf, rows);
      continue;
    }
    if (auto cell = dyn_cast<LSTMCellOp>(op)) {
      int64_t cols = cell.getWeights().getType().getShape()[1];
      int64_t hidden = numComponents(cell.getH().getType());
      int cTarget = directTarget(cell.getCOut(), opIndex);
      int hTarget = directTarget(cell.getHOut(), opIndex);
      // An input state that this op overwrites as it goes is copied first;
      // c may be its own target (read, then written, by the same lanes of
      // the same iteration).
      auto overwritten = [&](Value v, bool isC) {
        return (hTarget >= 0 && v == rule.getState(hTarget)) ||
               (!isC && cTarget >= 0 && v == rule.getState(cTarget));
      };
      Segment x = segmentOf(cell.getX(), overwritten(cell.getX(), false));
      Segment h = segmentOf(cell.getH(), overwritten(cell.getH(), false));
      Segment c = segmentOf(cell.getC(), overwritten(cell.getC(), true));
      Value hOut = buffer(hidden), cOut = buffer(hidden), zBuf = buffer(4);
      // The activations run on two vectors (`sub` lanes) at a time: enough
      // independent work to hide their latency (the chain through two
      // divisions and two polynomials is long), few enough registers not to
      // spill (the whole block would need more than there are).
      unsigned sub = lanes % (2 * width) == 0 ? 2 * width : lanes;
      Type subType = sub == 1 ? Type(elt) : VectorType::get({sub}, elt);
      auto subAddr = [&](Value buf, Value component, Value part) {
        Value at = arith::AddIOp::create(
            b, loc,
            arith::MulIOp::create(b, loc, component, i64Const(b, lanes)),
            arith::MulIOp::create(b, loc, part, i64Const(b, sub)));
        return gep(b, elt, buf, at);
      };
      unsigned subAlign = powerOfTwoAlignment(sub * align);
      // One hidden unit per iteration: its four gate rows (PyTorch's order:
      // input, forget, cell, output) accumulate side by side.
      auto units = countedLoop(hidden);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(units.getBody());
        Value j = i64Of(units.getInductionVar());
        SmallVector<Value> rows;
        for (int64_t which = 0; which < 4; ++which)
          rows.push_back(which ? arith::AddIOp::create(
                                     b, loc, j, i64Const(b, which * hidden))
                               : j);
        if (prefetchNext) {
          Value next = arith::AddIOp::create(
              b, loc, i, arith::MulIOp::create(b, loc, j, stride));
          // Into L1 (a unit's lines of the next block are 8 of its 768;
          // measured at 10^6 coordinates: 0.38-0.42 of the FMA peak, against
          // 0.37-0.42 into L2 and 0.34-0.35 with every line fetched at the
          // start of the block).
          for (int s : cellStates(cell))
            prefetchLines(bases[rule.getStateSlot(s)], next, lanes,
                          /*hint=*/3);
        }
        store(rowGroup(cell.getWeights(), cols, rows, {x, h}), zBuf);
        auto parts = countedLoop(lanes / sub);
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(parts.getBody());
        Value q = i64Of(parts.getInductionVar());
        auto loadSub = [&](Value buf, Value component) -> Value {
          return LLVM::LoadOp::create(b, loc, subType,
                                      subAddr(buf, component, q), subAlign);
        };
        SmallVector<Value> z;
        for (int64_t which = 0; which < 4; ++which)
          z.push_back(loadSub(zBuf, i64Const(b, which)));
        Value cj = LLVM::LoadOp::create(
            b, loc, subType,
            gep(b, elt, c.ptr,
                arith::AddIOp::create(
                    b, loc, arith::MulIOp::create(b, loc, j, c.step),
                    arith::MulIOp::create(b, loc, q, i64Const(b, sub)))),
            align);
        auto [cNew, hNew] = elt.isF32() ? lstmCellUpdate(b, loc, z, cj)
                                        : std::pair<Value, Value>{};
        if (!cNew) {
          // f64: the activations of f64math (LearnedMath.h).
          Value ig = f64math::sigmoid(b, loc, z[0]),
                fg = f64math::sigmoid(b, loc, z[1]);
          Value gg = f64math::tanh(b, loc, z[2]),
                og = f64math::sigmoid(b, loc, z[3]);
          cNew = math::FmaOp::create(b, loc, fg, cj,
                                     arith::MulFOp::create(b, loc, ig, gg));
          hNew = arith::MulFOp::create(b, loc, og, f64math::tanh(b, loc, cNew));
        }
        // Component j of the state, lanes q * sub.., of this block.
        auto stateAddr = [&](int target) {
          Value at = arith::AddIOp::create(
              b, loc,
              arith::AddIOp::create(b, loc, i,
                                    arith::MulIOp::create(b, loc, j, stride)),
              arith::MulIOp::create(b, loc, q, i64Const(b, sub)));
          return gep(b, elt, bases[rule.getStateSlot(target)], at);
        };
        for (auto [value, result, buf, target] :
             {std::tuple{cNew, cell.getCOut(), cOut, cTarget},
              std::tuple{hNew, cell.getHOut(), hOut, hTarget}}) {
          if (target >= 0)
            LLVM::StoreOp::create(b, loc, value, stateAddr(target), align);
          if (target < 0 || !result.hasOneUse())
            LLVM::StoreOp::create(b, loc, value, subAddr(buf, j, q), subAlign);
        }
      }
      for (auto [result, buf, target] :
           {std::tuple{cell.getCOut(), cOut, cTarget},
            std::tuple{cell.getHOut(), hOut, hTarget}}) {
        if (target >= 0)
          written.insert(target);
        // Loaded where used, when used by more than the yield.
        if (target < 0 || !result.hasOneUse())
          bufferedValues[result] = {buf, hidden};
      }
      continue;
    }
    mapCoordinateOp(b, op, lanes, map, operand);
  }

  // Outputs: new p (index 0 of the yield, input 0) and states (inputs
  // after p, g and the rule's inputs).
  for (auto [k, value] : llvm::enumerate(yield.getValues())) {
    Value input = k == 0 ? rule.getParam() : rule.getState(k - 1);
    // Even unchanged: the runtime copies every next buffer to the current.
    if (k && axisOf.count(input)) {
      storeAxisState(b, k - 1, operand(value), lanes, i);
      continue;
    }
    if (value == input || (k && written.count(k - 1)))
      continue; // Unchanged or already written: nothing to write.
    Comps comps = operand(value);
    for (auto [j, addr] :
         llvm::enumerate(addrs[k == 0 ? 0 : rule.getStateSlot(k - 1)]))
      LLVM::StoreOp::create(b, loc, comps.size() == 1 ? comps[0] : comps[j],
                            addr, align);
  }
}

func::FuncOp
RuleLowering::beginKernel(OpBuilder &b, StringRef name, TypeRange extra,
                          llvm::function_ref<bool(Operation *)> needed) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  SmallVector<Type> args = {ptrType, ptrType, ptrType, i64,
                            i64,     ptrType, i64,     ptrType};
  args.append(extra.begin(), extra.end());
  args.push_back(ptrType); // const uint64_t *rng, last (version 8).
  auto func = func::FuncOp::create(b, loc, name, b.getFunctionType(args, {}));
  Block *entry = func.addEntryBlock();
  funcEntry = entry;
  uniform.clear();
  reciprocals.clear();
  weightPtrs.clear();
  b.setInsertionPointToStart(entry);
  Value hypers = entry->getArgument(5), step = entry->getArgument(6);
  Value weights = entry->getArgument(7);
  // The seed, once per call, only when this kernel computes a draw: for a
  // rule that draws nothing rng may be NULL.
  rngArg = entry->getArguments().back();
  rngSeed = rngChunkBase = drawIndex = Value();
  if (llvm::any_of(varyingOps, [&](Operation *op) {
        return isa<RandomOp>(op) && needed(op);
      }))
    rngSeed = LLVM::LoadOp::create(b, loc, i64, rngArg, 8);

  // Uniform inputs: hyperparameters (const ones are compiled in) and t.
  for (unsigned h = 0, e = rule.getNumHypers(); h < e; ++h) {
    BlockArgument arg = rule.getHyper(h);
    if (llvm::none_of(arg.getUsers(), needed))
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
    if (llvm::any_of(rule.getWeight(w).getUsers(), needed))
      weightPtrs[rule.getWeight(w)] = LLVM::LoadOp::create(
          b, loc, ptrType, gep(b, ptrType, weights, i64Const(b, w)), 8);
  // Uniform computations, once per call.
  for (Operation &op : rule.getBodyBlock().without_terminator())
    if (needed(&op) && !llvm::is_contained(varyingOps, &op) &&
        !llvm::is_contained(perChunkOps, &op) && !isAxisReduction(&op))
      b.clone(op, uniform);

  // Only scalar divisors have one (a vector divisor of a vector state's
  // update divides per component).
  if (relaxed)
    for (Operation *op : varyingOps)
      if (auto div = dyn_cast<arith::DivFOp>(op))
        if (needed(op) && uniform.contains(div.getRhs()) &&
            !isa<VectorType>(div.getRhs().getType()) &&
            !reciprocals.count(div.getRhs()))
          reciprocals[div.getRhs()] = arith::DivFOp::create(
              b, loc,
              arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 1.0)),
              uniform.lookup(div.getRhs()));
  return func;
}

void RuleLowering::emitRuleKernel(OpBuilder &b) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  // A rule with reductions takes their values: `const double *reduced`.
  SmallVector<Type> extra;
  if (!reductions.empty())
    extra.push_back(ptrType);
  func::FuncOp func =
      beginKernel(b, (kSymbolPrefix + rule.getSymName()).str(), extra,
                  [](Operation *) { return true; });
  Block *entry = &func.front();
  Value ptrs = entry->getArgument(0), lengths = entry->getArgument(1),
        strides = entry->getArgument(2), begin = entry->getArgument(3),
        end = entry->getArgument(4);

  if (axes) {
    emitAxisRuleKernel(b, func);
    func::ReturnOp::create(b, loc);
    return;
  }

  // The chunk loop.
  unsigned numPtrs = 2 + rule.getNumInputs() + rule.getNumStates();
  auto chunks = scf::ForOp::create(b, loc, index(b, begin), index(b, end),
                                   arith::ConstantIndexOp::create(b, loc, 1));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(chunks.getBody());
    Value c = arith::IndexCastOp::create(b, loc, i64, chunks.getInductionVar());
    ChunkView chunk = loadChunk(b, loc, ptrs, lengths, strides, c, numPtrs);
    loadRngChunkBase(b, c);
    ArrayRef<Value> bases = chunk.bases;
    Value n = chunk.length, stride = chunk.stride;

    // Per-chunk values: reduction r of chunk c is reduced[c * R + r], in
    // double; what is computed from them, once per chunk.
    if (!reductions.empty()) {
      emitPerChunk(
          b, entry->getArgument(8),
          arith::MulIOp::create(b, loc, c, i64Const(b, reductions.size())));
      emitPerChunkReciprocals(b);
    }
    emitLaneLoops(b, n, bases, stride);
  }
  func::ReturnOp::create(b, loc);
}

void RuleLowering::emitPerChunkReciprocals(OpBuilder &b) {
  Location loc = rule.getLoc();
  if (relaxed)
    for (Operation *op : varyingOps)
      if (auto div = dyn_cast<arith::DivFOp>(op))
        if (perChunk.contains(div.getRhs()) &&
            !isa<VectorType>(div.getRhs().getType()) &&
            !reciprocals.count(div.getRhs()))
          reciprocals[div.getRhs()] = arith::DivFOp::create(
              b, loc,
              arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 1.0)),
              uniform.lookup(div.getRhs()));
}

void RuleLowering::emitLaneLoops(OpBuilder &b, Value n, ArrayRef<Value> bases,
                                 Value stride) {
  Location loc = rule.getLoc();
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value nIdx = index(b, n);
  Value vectorEnd = zero;
  for (unsigned lanes : laneCounts()) {
    Value start = vectorEnd;
    Value lanesIdx = arith::ConstantIndexOp::create(b, loc, lanes);
    vectorEnd = arith::SubIOp::create(
        b, loc, nIdx, arith::RemUIOp::create(b, loc, nIdx, lanesIdx));
    // Short chunks (data that the hardware prefetchers or the caches
    // serve anyway) skip the prefetches and their micro-ops.
    int64_t ahead = prefetchBytes / (elt.getWidth() / 8);
    if (learned || lanes == 1 || ahead == 0) {
      emitCoordinateLoop(b, start, vectorEnd, lanes, bases, stride);
      continue;
    }
    Value isLong = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, n,
                                         i64Const(b, 4 * ahead));
    auto choice = scf::IfOp::create(b, loc, isLong, /*withElse=*/true);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&choice.getThenRegion().front());
    emitCoordinateLoop(b, start, vectorEnd, lanes, bases, stride,
                       /*prefetch=*/true);
    b.setInsertionPointToStart(&choice.getElseRegion().front());
    emitCoordinateLoop(b, start, vectorEnd, lanes, bases, stride);
  }
  emitCoordinateLoop(b, vectorEnd, nIdx, 1, bases, stride);
}

void RuleLowering::loadRngChunkBase(OpBuilder &b, Value c) {
  rngChunkBase = Value();
  if (!rngSeed)
    return;
  Location loc = rule.getLoc();
  Value slot = arith::AddIOp::create(b, loc, c, i64Const(b, 1));
  rngChunkBase = LLVM::LoadOp::create(b, loc, b.getI64Type(),
                                      gep(b, b.getI64Type(), rngArg, slot), 8);
}

/// optim_reductions_<name> (KernelABI.h), beside the rule's functions.
void RuleLowering::emitReductionsDescriptor(OpBuilder &b) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(rule);
  createReductionsDescriptor(b, rule, reductions, levels, /*addressSpace=*/0);
}

LogicalResult RuleLowering::run() {
  MLIRContext *ctx = rule.getContext();
  ptrType = LLVM::LLVMPointerType::get(ctx);
  elt = rule.getElementType();
  if (!elt || !(elt.isF32() || elt.isF64()))
    return rule.emitOpError("CPU code generation supports f32 and f64 rules");
  if (failed(classify()) || failed(checkReductions()))
    return failure();
  if (learned && learnedWidth)
    width = learnedWidth;

  OpBuilder b(rule);
  // The reduction passes (one call per level), then the rule kernel.
  if (!reductions.empty()) {
    emitReduceKernel(b);
    emitReductionsDescriptor(b);
  }
  b.setInsertionPoint(rule);
  emitRuleKernel(b);
  // optim_random_<name>, for rules that draw (KernelABI.h, version 8).
  b.setInsertionPoint(rule);
  createRandomDescriptor(b, rule, /*addressSpace=*/0);
  // optim_states_<name>, for rules with states (KernelABI.h, version 10).
  createStatesDescriptor(b, rule, /*addressSpace=*/0);
  rule.erase();
  // f32 only (f64 keeps libm); lstm_cell's tanh and sigmoid are rational
  // forms of their own (lstmCellUpdate). Errors of the whole step against a
  // double reference: LearnedRule tests and docs/benchmarks.md.
  approximateLogs(ctx, approximate);
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
                              learnedVectorWidth, relaxedFP, prefetchDistance)
                     .run()))
        return signalPassFailure();
    for (auto f : getOperation().getOps<func::FuncOp>())
      moveLargeBuffersToHeap(f);
  }
};
} // namespace
