//===- AxisKernels.cpp - rules with row and column states -----------------===//
//
// A rule with row or column states or reductions (KernelABI.h version 10,
// "Axes") takes chunks that are rectangles of a matrix: nr rows of nc
// columns from row r0 and column c0. Both kernels iterate a chunk row by row,
// and each row as the chunks of other rules are iterated (the vector loops of
// the same lane counts, then the scalar tail, over the columns), so that a
// coordinate's values are computed by the same code everywhere.
//
// Row and column values (row and column states, the results of row and
// column reductions) are per-coordinate values with addressing of their own
// (loadAxisValue): a row's is one number, broadcast to the lanes; a column's
// are contiguous, one per lane. Their new values go to the states' next
// buffers, once per row (from column 0 of chunks with c0 == 0) or once per
// column (from the matrix's first row), never to the current buffers, which
// other chunks of the same row or column still read.
//
// The reduce kernel accumulates a row reduction in registers, lanes apart,
// over the vector iterations of each row, combines the lanes in lane order
// and adds the row's tail, and overwrites the row's partial; a column
// reduction merges each row's values into the chunk's partials in memory, row
// after row; tensor reductions accumulate over the whole rectangle, row after
// row, into partials[c * R + r] as in other rules.
//
// A matrix function (newton_schulz; version 11, "Matrix functions") counts
// among the row and column reductions of the chunk table, but its pointers
// are of the element type and address the chunk's coordinates: its stage
// stores the operand at every coordinate (the runtime then replaces each
// matrix by its function), and later stages and the rule kernel read the
// result at the coordinate, per lane, like a per-coordinate stream. Shape
// values (rows(), cols()) are tensor reductions' slots that the runtime
// fills: read as the tensor reductions' results, never written.
//
//===----------------------------------------------------------------------===//

#include "ChunkTable.h"
#include "RuleLowering.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

using namespace mlir;
using namespace mlir::optim;

LogicalResult RuleLowering::classifyAxes() {
  axes = rule.hasAxes();
  if (!axes)
    return success();
  for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s) {
    StringRef axis = rule.getStateAxis(s);
    if (axis == "none")
      continue;
    axisStates.push_back(s);
    axisOf[rule.getState(s)] = axis == "row" ? ValueAxis::Row : ValueAxis::Col;
  }
  unsigned slot = 0;
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    // The learned loops read their operands where they lie in memory, per
    // coordinate: they know nothing of rows.
    if (isa<LSTMCellOp, LinearOp>(op))
      return op.emitOpError("cannot be computed by the CPU code generator "
                            "in a rule with row or column states or "
                            "reductions");
    auto red = dyn_cast<TensorReduceOp>(op);
    if (!red)
      continue;
    if (std::optional<ReductionAxis> axis = red.getAxis()) {
      axisReductionIndices.push_back(slot);
      // A matrix function's result is read per coordinate.
      axisOf[red.getResult()] =
          *axis == ReductionAxis::Row   ? ValueAxis::Row
          : *axis == ReductionAxis::Col ? ValueAxis::Col
                                        : ValueAxis::Coordinate;
    }
    ++slot;
  }
  return success();
}

unsigned RuleLowering::numChunkPtrs() {
  unsigned n = 2 + rule.getNumInputs() + rule.getNumStates();
  if (axes)
    n += axisStates.size() + 2 * axisReductionIndices.size();
  return n;
}

SmallVector<Value> RuleLowering::beginAxisRow(OpBuilder &b,
                                              const ChunkView &chunk, Value r,
                                              Value chunkRng) {
  Location loc = rule.getLoc();
  Type f64 = b.getF64Type();
  Value rowStart = arith::MulIOp::create(b, loc, r, chunk.nc);
  // Row r of the chunk starts r * nc coordinates past its first.
  SmallVector<Value> bases;
  for (auto [k, stream] : llvm::enumerate(rule.getChunkStreams()))
    bases.push_back(axisOf.count(stream)
                        ? chunk.bases[k]
                        : gep(b, elt, chunk.bases[k], rowStart));
  rngChunkBase = chunkRng
                     ? Value(arith::AddIOp::create(b, loc, chunkRng, rowStart))
                     : Value();
  // A row value at [r] of its pointer, a column value at [j], a matrix
  // function's result at [r * nc + j] (elements of the rule's type).
  axisRow.ptr.clear();
  axisRow.next.clear();
  auto atRow = [&](Type type, Value ptr, Value value) {
    switch (axisOf.lookup(value)) {
    case ValueAxis::Row:
      return gep(b, type, ptr, r);
    case ValueAxis::Coordinate:
      return gep(b, elt, ptr, rowStart);
    default:
      return ptr;
    }
  };
  unsigned first = 2 + rule.getNumInputs() + rule.getNumStates();
  for (auto [a, s] : llvm::enumerate(axisStates)) {
    Value state = rule.getState(s);
    axisRow.ptr[state] = atRow(elt, chunk.bases[rule.getStateSlot(s)], state);
    axisRow.next.push_back(atRow(elt, chunk.bases[first + a], state));
  }
  unsigned reducedFirst =
      first + axisStates.size() + axisReductionIndices.size();
  for (auto [x, k] : llvm::enumerate(axisReductionIndices)) {
    Value result = reductions[k].getResult();
    axisRow.ptr[result] = atRow(f64, chunk.bases[reducedFirst + x], result);
  }
  axisRow.writeCols = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::eq,
      arith::AddIOp::create(b, loc, chunk.r0, r), i64Const(b, 0));
  // Row values go before the row's last setup op, after what they read.
  rowValues.clear();
  rowAnchor = axisRow.writeCols.getDefiningOp();
  return bases;
}

void RuleLowering::classifyRowOps() {
  if (!axes)
    return;
  llvm::DenseMap<Value, ValueAxis> valueAxes = getValueAxes(rule);
  auto isRow = [&](Value v) { return valueAxes.lookup(v) == ValueAxis::Row; };
  for (Operation *op : varyingOps) {
    // The other math functions may be approximated differently in vectors
    // and scalars: those stay per coordinate, on the row values' lanes.
    bool exact = isa<arith::ArithDialect>(op->getDialect()) ||
                 isa<math::SqrtOp, math::AbsFOp, math::CopySignOp>(op);
    if (!exact || op->getNumRegions() || !llvm::all_of(op->getResults(), isRow))
      continue;
    if (llvm::all_of(op->getOperands(), [&](Value v) {
          return !varying.contains(v) ||
                 (axisOf.lookup(v) == ValueAxis::Row && axisOf.count(v)) ||
                 isRowOpResult(v);
        }))
      rowOps.insert(op);
  }
}

Comps RuleLowering::rowValue(OpBuilder &b, Value v) {
  auto it = rowValues.find(v);
  if (it != rowValues.end())
    return it->second;
  Location loc = rule.getLoc();
  if (axisOf.count(v)) {
    // States hold the rule's element type; reductions' results are doubles,
    // rounded to it as tensor reductions' are (emitPerChunk).
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(rowAnchor);
    Type scalar = isa<BlockArgument>(v) ? Type(elt) : Type(b.getF64Type());
    Value x = LLVM::LoadOp::create(b, loc, scalar, axisRow.ptr.lookup(v),
                                   scalar.getIntOrFloatBitWidth() / 8);
    if (scalar != elt)
      x = arith::TruncFOp::create(b, loc, elt, x);
    return rowValues[v] = Comps{x};
  }
  Operation *op = v.getDefiningOp();
  for (Value operand : op->getOperands())
    if (varying.contains(operand))
      rowValue(b, operand);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(rowAnchor);
  CompMap scalars;
  mapCoordinateOp(b, op, 1, scalars, [&](Value operand) -> Comps {
    if (varying.contains(operand))
      return rowValues.lookup(operand);
    return spreadUniform(b, loc, uniform.lookup(operand),
                         [](Value x) { return x; });
  });
  for (auto &[result, comps] : scalars)
    rowValues[result] = comps;
  return rowValues.lookup(v);
}

Comps RuleLowering::loadAxisValue(OpBuilder &b, Value v, unsigned lanes,
                                  Value i) {
  auto it = axisRow.ptr.find(v);
  if (it == axisRow.ptr.end())
    return {};
  // Loaded once per row.
  if (rowAnchor && axisOf.lookup(v) == ValueAxis::Row)
    return broadcastRow(b, rowValue(b, v), lanes);
  Location loc = rule.getLoc();
  // States and matrix functions' results hold the rule's element type;
  // reductions' results are doubles, rounded to it as tensor reductions'
  // are (emitPerChunk).
  bool isState = isa<BlockArgument>(v);
  Type scalar = isState || axisOf.lookup(v) == ValueAxis::Coordinate
                    ? Type(elt)
                    : Type(b.getF64Type());
  unsigned align = scalar.getIntOrFloatBitWidth() / 8;
  Value x;
  if (axisOf.lookup(v) == ValueAxis::Row) {
    x = LLVM::LoadOp::create(b, loc, scalar, it->second, align);
    if (scalar != elt)
      x = arith::TruncFOp::create(b, loc, elt, x);
    x = broadcast(b, x, lanes);
  } else {
    x = LLVM::LoadOp::create(b, loc, laneType(scalar, lanes),
                             gep(b, scalar, it->second, i), align);
    if (scalar != elt)
      x = arith::TruncFOp::create(b, loc, laneType(elt, lanes), x);
  }
  return {x};
}

void RuleLowering::storeAxisState(OpBuilder &b, unsigned s, const Comps &comps,
                                  unsigned lanes, Value i) {
  Location loc = rule.getLoc();
  unsigned a = llvm::find(axisStates, s) - axisStates.begin();
  Value value = comps.front();
  unsigned align = elt.getWidth() / 8;
  if (axisOf.lookup(rule.getState(s)) == ValueAxis::Row) {
    // The iteration holding column 0 (the first vector iteration, or the
    // tail when the row is shorter than the lanes), lane 0: every lane of
    // the row computes the same value.
    Value isFirst = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, i,
                                          i64Const(b, 0));
    Value write = arith::AndIOp::create(b, loc, axisRow.writeRows, isFirst);
    auto guard = scf::IfOp::create(b, loc, write, /*withElse=*/false);
    OpBuilder::InsertionGuard insertion(b);
    b.setInsertionPointToStart(&guard.getThenRegion().front());
    if (lanes > 1)
      value = vector::ExtractOp::create(b, loc, value, ArrayRef<int64_t>{0});
    LLVM::StoreOp::create(b, loc, value, axisRow.next[a], align);
    return;
  }
  auto guard = scf::IfOp::create(b, loc, axisRow.writeCols, /*withElse=*/false);
  OpBuilder::InsertionGuard insertion(b);
  b.setInsertionPointToStart(&guard.getThenRegion().front());
  LLVM::StoreOp::create(b, loc, value, gep(b, elt, axisRow.next[a], i), align);
}

void RuleLowering::emitAxisRuleKernel(OpBuilder &b, func::FuncOp func) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  Block *entry = &func.front();
  Value ptrs = entry->getArgument(0), lengths = entry->getArgument(1),
        strides = entry->getArgument(2), begin = entry->getArgument(3),
        end = entry->getArgument(4);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  auto chunks = scf::ForOp::create(b, loc, index(b, begin), index(b, end), one);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(chunks.getBody());
  Value c = arith::IndexCastOp::create(b, loc, i64, chunks.getInductionVar());
  ChunkView chunk = loadChunk(b, loc, ptrs, lengths, strides, c, numChunkPtrs(),
                              /*rectangle=*/true);
  loadRngChunkBase(b, c);
  Value chunkRng = rngChunkBase;
  // Tensor reductions: reduced[c * R + r], as in other rules.
  if (!perChunkOps.empty()) {
    emitPerChunk(
        b, entry->getArgument(8),
        arith::MulIOp::create(b, loc, c, i64Const(b, reductions.size())));
    emitPerChunkReciprocals(b);
  }
  // Row states are written by the chunk holding the row's first column.
  axisRow.writeRows = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            chunk.c0, i64Const(b, 0));
  auto rows =
      scf::ForOp::create(b, loc, arith::ConstantIndexOp::create(b, loc, 0),
                         index(b, chunk.nr), one);
  b.setInsertionPointToStart(rows.getBody());
  Value r = arith::IndexCastOp::create(b, loc, i64, rows.getInductionVar());
  SmallVector<Value> bases = beginAxisRow(b, chunk, r, chunkRng);
  emitLaneLoops(b, chunk.nc, bases, chunk.stride);
  rowAnchor = nullptr;
}

void RuleLowering::emitAxisReduceStage(OpBuilder &b, unsigned stage, Value ptrs,
                                       Value lengths, Value strides,
                                       Value begin, Value end, Value partials,
                                       Value reduced) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  const llvm::DenseSet<Operation *> &slice = stageSlices[stage];
  // This stage's reductions: tensor ones, row ones (both accumulated in
  // registers, tensor ones first), column ones (in memory) and matrix
  // functions (stored per coordinate), each with its rank among the row and
  // column reductions (`x`: its pointers). Shape values are the runtime's.
  SmallVector<unsigned> tensorWhich, rowWhich, rowRank, colWhich, colRank,
      matrixWhich, matrixRank;
  for (auto [k, level] : llvm::enumerate(levels)) {
    if (level != stage || isShapeValue(reductions[k]))
      continue;
    auto rank = llvm::find(axisReductionIndices, k);
    unsigned x = rank - axisReductionIndices.begin();
    if (rank == axisReductionIndices.end()) {
      tensorWhich.push_back(k);
    } else if (*reductions[k].getAxis() == ReductionAxis::Row) {
      rowWhich.push_back(k);
      rowRank.push_back(x);
    } else if (*reductions[k].getAxis() == ReductionAxis::Col) {
      colWhich.push_back(k);
      colRank.push_back(x);
    } else {
      matrixWhich.push_back(k);
      matrixRank.push_back(x);
    }
  }
  // A stage of shape values only writes nothing.
  if (tensorWhich.empty() && rowWhich.empty() && colWhich.empty() &&
      matrixWhich.empty())
    return;
  SmallVector<unsigned> regWhich(tensorWhich);
  regWhich.append(rowWhich);
  auto constant = [&](ReductionKind kind, unsigned lanes) -> Value {
    FloatAttr value = b.getFloatAttr(f64, reductionIdentity(kind));
    if (lanes == 1)
      return arith::ConstantOp::create(b, loc, value);
    return arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(cast<ShapedType>(laneType(f64, lanes)), value));
  };

  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  auto chunks = scf::ForOp::create(b, loc, index(b, begin), index(b, end), one);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(chunks.getBody());
  Value c = arith::IndexCastOp::create(b, loc, i64, chunks.getInductionVar());
  ChunkView chunk = loadChunk(b, loc, ptrs, lengths, strides, c, numChunkPtrs(),
                              /*rectangle=*/true);
  loadRngChunkBase(b, c);
  Value chunkRng = rngChunkBase;
  Value first;
  if (!perChunkOps.empty()) {
    first = arith::MulIOp::create(b, loc, c, i64Const(b, reductions.size()));
    // The tensor reductions of lower levels that this stage reads, and what
    // is computed from them once per chunk, as the rule kernel computes
    // them.
    emitPerChunk(b, reduced, first, &slice);
  }
  unsigned partialsFirst =
      2 + rule.getNumInputs() + rule.getNumStates() + axisStates.size();
  // Column partials start at the identity; each row merges into them.
  SmallVector<std::pair<unsigned, Value>> colPartials;
  for (auto [k, x] : llvm::zip(colWhich, colRank))
    colPartials.push_back({k, chunk.bases[partialsFirst + x]});
  Value ncIdx = index(b, chunk.nc);
  if (!colPartials.empty()) {
    auto init = scf::ForOp::create(b, loc, zero, ncIdx, one);
    OpBuilder::InsertionGuard inner(b);
    b.setInsertionPointToStart(init.getBody());
    Value j = arith::IndexCastOp::create(b, loc, i64, init.getInductionVar());
    for (auto [k, ptr] : colPartials)
      LLVM::StoreOp::create(b, loc, constant(reductions[k].getKind(), 1),
                            gep(b, f64, ptr, j), 8);
  }

  SmallVector<Value> totals;
  for (unsigned k : tensorWhich)
    totals.push_back(constant(reductions[k].getKind(), 1));
  auto rows = scf::ForOp::create(b, loc, zero, index(b, chunk.nr), one, totals);
  {
    OpBuilder::InsertionGuard inner(b);
    b.setInsertionPointToStart(rows.getBody());
    Value r = arith::IndexCastOp::create(b, loc, i64, rows.getInductionVar());
    SmallVector<Value> bases = beginAxisRow(b, chunk, r, chunkRng);
    // Each matrix function's buffer at the row's first coordinate.
    SmallVector<std::pair<unsigned, Value>> matrixValues;
    if (!matrixWhich.empty()) {
      Value rowStart = arith::MulIOp::create(b, loc, r, chunk.nc);
      for (auto [k, x] : llvm::zip(matrixWhich, matrixRank))
        matrixValues.push_back(
            {k, gep(b, elt, chunk.bases[partialsFirst + x], rowStart)});
    }
    // Tensor totals carry over the rows; a row's start at the identity.
    SmallVector<Value> regTotals(rows.getRegionIterArgs());
    for (unsigned k : rowWhich)
      regTotals.push_back(constant(reductions[k].getKind(), 1));
    Value vectorEnd = zero;
    for (unsigned lanes : laneCounts()) {
      Value start = vectorEnd;
      Value lanesIdx = arith::ConstantIndexOp::create(b, loc, lanes);
      vectorEnd = arith::SubIOp::create(
          b, loc, ncIdx, arith::RemUIOp::create(b, loc, ncIdx, lanesIdx));
      SmallVector<Value> init;
      for (unsigned k : regWhich)
        init.push_back(constant(reductions[k].getKind(), lanes));
      SmallVector<Value> accs =
          emitReduceLoop(b, start, vectorEnd, lanes, bases, chunk.stride, init,
                         stage, regWhich, colPartials, matrixValues);
      // Lane 0 first, then 1, ...: a fixed order.
      for (auto [j, k] : llvm::enumerate(regWhich))
        for (int64_t l = 0; l < int64_t(lanes); ++l)
          regTotals[j] = mergeReduction(
              b, loc, reductions[k].getKind(), regTotals[j],
              vector::ExtractOp::create(b, loc, accs[j], ArrayRef<int64_t>{l}));
    }
    regTotals = emitReduceLoop(b, vectorEnd, ncIdx, 1, bases, chunk.stride,
                               regTotals, stage, regWhich, colPartials,
                               matrixValues);
    // Overwrites the row's partial of each row reduction of this level.
    for (auto [j, x] : llvm::enumerate(rowRank)) {
      Value ptr = gep(b, f64, chunk.bases[partialsFirst + x], r);
      LLVM::StoreOp::create(b, loc, regTotals[tensorWhich.size() + j], ptr, 8);
    }
    regTotals.resize(tensorWhich.size());
    // Without tensor reductions the loop has its (empty) yield already.
    if (!regTotals.empty())
      scf::YieldOp::create(b, loc, regTotals);
    rowAnchor = nullptr;
  }
  // Overwrites partials[c * R + r] for the tensor reductions of this level.
  for (auto [k, total] : llvm::zip(tensorWhich, rows.getResults())) {
    Value slot = arith::AddIOp::create(b, loc, first, i64Const(b, k));
    LLVM::StoreOp::create(b, loc, total, gep(b, f64, partials, slot), 8);
  }
}
