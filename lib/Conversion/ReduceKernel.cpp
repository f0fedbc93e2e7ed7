//===- ReduceKernel.cpp - the first pass of a rule with reductions --------===//
//
// optim_reduce_<name> (KernelABI.h, version 6) computes, for each chunk, the
// partial of every optim.tensor_reduce of the rule: the sum of the reduced
// value (sum, mean), the sum of its squares (norm), its maximum or minimum.
// Only the ops that the reduced values depend on are computed, per
// coordinate, by the code that the rule kernel uses for them
// (RuleLowering::mapCoordinateOp), on the same paths (vector loops of the
// same lane counts, then the scalar tail), so that a value is reduced as the
// rule kernel computes it (with relaxed-fp, the ops of a reduced value
// neither contract nor divide by reciprocals, in either kernel: the reverse
// mode recomputes it exactly). Each value is extended to f64 before it is
// accumulated; the lanes of a vector loop accumulate separately and are
// combined in lane order after it, then the tail follows: a chunk's partial
// depends only on the chunk, never on how chunks are split among threads.
//
//===----------------------------------------------------------------------===//

#include "ChunkTable.h"
#include "RuleLowering.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace mlir::optim;

/// The prefix of reduce kernels; must match OPTIM_REDUCE_SYMBOL_PREFIX.
static constexpr llvm::StringLiteral kReducePrefix = "optim_reduce_";

LogicalResult mlir::optim::classifyShared(
    Operation &op, FloatType elt, SmallVectorImpl<TensorReduceOp> &reductions,
    llvm::DenseSet<Value> &perChunk, SmallVectorImpl<Operation *> &perChunkOps) {
  // A reduction's result is one value per chunk, whatever it reduces.
  if (auto red = dyn_cast<TensorReduceOp>(op)) {
    if (red.getValue().getType() != elt)
      return red.emitOpError("reduces a value of type ")
             << red.getValue().getType() << " in a rule of element type "
             << elt;
    reductions.push_back(red);
  } else if (llvm::none_of(op.getOperands(), [&](Value v) {
               return perChunk.contains(v);
             })) {
    return success();
  }
  perChunkOps.push_back(&op);
  for (Value r : op.getResults())
    perChunk.insert(r);
  return success();
}

void mlir::optim::collectRuleOps(Block &body,
                                 const llvm::DenseSet<Value> &varying,
                                 llvm::DenseSet<Operation *> &ruleOps) {
  SmallVector<Value> worklist(body.getTerminator()->getOperands());
  while (!worklist.empty()) {
    Value v = worklist.pop_back_val();
    Operation *def = v.getDefiningOp();
    if (!def || !varying.contains(v) || !ruleOps.insert(def).second)
      continue;
    llvm::append_range(worklist, def->getOperands());
  }
}

LogicalResult
mlir::optim::collectReductionSlices(ArrayRef<TensorReduceOp> reductions,
                                    llvm::DenseSet<Operation *> &slice,
                                    bool refuseLearned) {
  for (TensorReduceOp red : reductions) {
    // Backwards from the reduced value.
    SmallVector<Operation *> worklist;
    if (Operation *def = red.getValue().getDefiningOp())
      worklist.push_back(def);
    while (!worklist.empty()) {
      Operation *op = worklist.pop_back_val();
      if (!slice.insert(op).second)
        continue;
      if (isa<TensorReduceOp>(op)) {
        InFlightDiagnostic diag = red.emitOpError(
            "reduces a value that depends on another tensor reduction: that "
            "would need a third pass over memory");
        diag.attachNote(op->getLoc()) << "the other reduction";
        return diag;
      }
      if (refuseLearned && isa<LSTMCellOp, LinearOp>(op)) {
        InFlightDiagnostic diag =
            red.emitOpError("reduces a value computed by '")
            << op->getName()
            << "': the CPU code generator does not reduce the results of "
               "learned ops";
        diag.attachNote(op->getLoc()) << "computed here";
        return diag;
      }
      for (Value v : op->getOperands())
        if (Operation *def = v.getDefiningOp())
          worklist.push_back(def);
    }
  }
  return success();
}

// The runtime's combining (runtime/lib/Reductions.cpp) starts from the same
// values; it cannot include this file (no MLIR in the runtime), so the two
// are kept in step by hand (KernelABI.h states them).
double mlir::optim::reductionIdentity(ReductionKind kind) {
  switch (kind) {
  case ReductionKind::Max:
    return -std::numeric_limits<double>::infinity();
  case ReductionKind::Min:
    return std::numeric_limits<double>::infinity();
  default:
    return 0.0;
  }
}

void mlir::optim::createReductionsDescriptor(
    OpBuilder &b, RuleOp rule, ArrayRef<TensorReduceOp> reductions,
    unsigned addressSpace) {
  std::string text;
  for (TensorReduceOp red : reductions) {
    if (!text.empty())
      text += ',';
    text += stringifyReductionKind(red.getKind()).str();
    if (red.getGlobal())
      text += "@global";
  }
  text.push_back('\0');
  auto type = LLVM::LLVMArrayType::get(b.getI8Type(), text.size());
  LLVM::GlobalOp::create(b, rule.getLoc(), type, /*isConstant=*/true,
                         LLVM::Linkage::External,
                         ("optim_reductions_" + rule.getSymName()).str(),
                         b.getStringAttr(text), /*alignment=*/0,
                         addressSpace);
}

Value mlir::optim::mergeReduction(OpBuilder &b, Location loc,
                                  ReductionKind kind, Value acc, Value x) {
  switch (kind) {
  case ReductionKind::Max:
    return arith::MaximumFOp::create(b, loc, acc, x);
  case ReductionKind::Min:
    return arith::MinimumFOp::create(b, loc, acc, x);
  default:
    return arith::AddFOp::create(b, loc, acc, x);
  }
}

SmallVector<Value> RuleLowering::emitReduceLoop(OpBuilder &b, Value lb,
                                                Value ub, unsigned lanes,
                                                ArrayRef<Value> bases,
                                                Value stride, ValueRange init) {
  Location loc = rule.getLoc();
  Value step = arith::ConstantIndexOp::create(b, loc, lanes);
  auto loop = scf::ForOp::create(b, loc, lb, ub, step, init);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  setDrawIndex(b, i);
  Type valueType = laneType(elt, lanes);
  unsigned align = elt.getWidth() / 8;

  // p, g, the inputs and the states are loaded where first used (component
  // j of a vector state at base + i + j * stride), and only if used.
  llvm::DenseMap<Value, unsigned> inputIndex;
  for (auto [k, stream] : llvm::enumerate(rule.getChunkStreams()))
    inputIndex[stream] = k;
  CompMap map, broadcasts;
  auto operand = [&](Value v) -> Comps {
    if (!varying.contains(v)) {
      Comps &cached = broadcasts[v];
      if (cached.empty())
        cached = spreadUniform(b, loc, uniform.lookup(v), [&](Value scalar) {
          return broadcast(b, scalar, lanes);
        });
      return cached;
    }
    auto input = inputIndex.find(v);
    if (input != inputIndex.end() && !map.count(v)) {
      for (unsigned j = 0, n = numComponents(v.getType()); j < n; ++j) {
        Value offset = i;
        if (j)
          offset = arith::AddIOp::create(
              b, loc, i,
              arith::MulIOp::create(b, loc, stride, i64Const(b, j)));
        map[v].push_back(LLVM::LoadOp::create(
            b, loc, valueType, gep(b, elt, bases[input->second], offset),
            align));
      }
    }
    return map.lookup(v);
  };
  for (Operation *op : varyingOps)
    if (reductionSlice.contains(op))
      mapCoordinateOp(b, op, lanes, map, operand);

  Type f64 = laneType(b.getF64Type(), lanes);
  SmallVector<Value> next;
  for (auto [red, acc] : llvm::zip(reductions, loop.getRegionIterArgs())) {
    Value x = operand(red.getValue()).front();
    if (!elt.isF64())
      x = arith::ExtFOp::create(b, loc, f64, x);
    if (red.getKind() == ReductionKind::Norm)
      x = arith::MulFOp::create(b, loc, x, x);
    next.push_back(mergeReduction(b, loc, red.getKind(), acc, x));
  }
  scf::YieldOp::create(b, loc, next);
  return SmallVector<Value>(loop.getResults());
}

void RuleLowering::emitReduceKernel(OpBuilder &b) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  func::FuncOp func = beginKernel(
      b, (kReducePrefix + rule.getSymName()).str(), {ptrType},
      [&](Operation *op) {
        // The reductions themselves read their operand (a hyperparameter,
        // say) but are not computed here.
        return reductionSlice.contains(op) || isa<TensorReduceOp>(op);
      });
  Block *entry = &func.front();
  Value ptrs = entry->getArgument(0), lengths = entry->getArgument(1),
        strides = entry->getArgument(2), begin = entry->getArgument(3),
        end = entry->getArgument(4), partials = entry->getArgument(8);

  auto chunks = scf::ForOp::create(b, loc, index(b, begin), index(b, end),
                                   arith::ConstantIndexOp::create(b, loc, 1));
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(chunks.getBody());
    Value c = arith::IndexCastOp::create(b, loc, i64, chunks.getInductionVar());
    ChunkView chunk = loadChunk(b, loc, ptrs, lengths, strides, c,
                                2 + rule.getNumInputs() +
                                    rule.getNumStates());
    loadRngChunkBase(b, c);
    Value nIdx = index(b, chunk.length);
    auto constant = [&](ReductionKind kind, unsigned lanes) -> Value {
      FloatAttr value = b.getFloatAttr(f64, reductionIdentity(kind));
      if (lanes == 1)
        return arith::ConstantOp::create(b, loc, value);
      return arith::ConstantOp::create(
          b, loc,
          DenseElementsAttr::get(
              cast<ShapedType>(laneType(f64, lanes)), value));
    };
    SmallVector<Value> totals;
    for (TensorReduceOp red : reductions)
      totals.push_back(constant(red.getKind(), 1));
    Value vectorEnd = arith::ConstantIndexOp::create(b, loc, 0);
    for (unsigned lanes : laneCounts()) {
      Value start = vectorEnd;
      Value lanesIdx = arith::ConstantIndexOp::create(b, loc, lanes);
      vectorEnd = arith::SubIOp::create(
          b, loc, nIdx, arith::RemUIOp::create(b, loc, nIdx, lanesIdx));
      SmallVector<Value> init;
      for (TensorReduceOp red : reductions)
        init.push_back(constant(red.getKind(), lanes));
      SmallVector<Value> accs = emitReduceLoop(b, start, vectorEnd, lanes,
                                               chunk.bases, chunk.stride, init);
      // Lane 0 first, then 1, ...: a fixed order.
      for (auto [k, red] : llvm::enumerate(reductions))
        for (int64_t l = 0; l < int64_t(lanes); ++l)
          totals[k] = mergeReduction(
              b, loc, red.getKind(), totals[k],
              vector::ExtractOp::create(b, loc, accs[k], ArrayRef<int64_t>{l}));
    }
    totals = emitReduceLoop(b, vectorEnd, nIdx, 1, chunk.bases, chunk.stride,
                            totals);
    // Overwrites partials[c * R + r].
    Value first =
        arith::MulIOp::create(b, loc, c, i64Const(b, reductions.size()));
    for (auto [r, total] : llvm::enumerate(totals)) {
      Value slot = arith::AddIOp::create(b, loc, first, i64Const(b, r));
      LLVM::StoreOp::create(b, loc, total, gep(b, f64, partials, slot), 8);
    }
  }
  func::ReturnOp::create(b, loc);
}
