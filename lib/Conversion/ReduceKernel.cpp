//===- ReduceKernel.cpp - the reduction passes of a rule ------------------===//
//
// optim_reduce_<name> (KernelABI.h, versions 6 and 9) computes, for each
// chunk, the partials of the optim.tensor_reduce ops of the rule of one
// level, `stage`: the sum of the reduced value (sum, mean), the sum of its
// squares (norm), its maximum or minimum. Only the ops that those reduced
// values depend on are computed, per coordinate, by the code that the rule
// kernel uses for them (RuleLowering::mapCoordinateOp), on the same paths
// (vector loops of the same lane counts, then the scalar tail), so that a
// value is reduced as the rule kernel computes it (with relaxed-fp, the ops
// of a reduced value neither contract nor divide by reciprocals, in either
// kernel: the reverse mode recomputes it exactly). The results of
// reductions of lower levels are read from `reduced` once per chunk and what
// depends on them alone is computed from them as the rule kernel does (the
// same ops, cloned in the same order). Each value is extended to f64 before
// it is accumulated; the lanes of a vector loop accumulate separately and
// are combined in lane order after it, then the tail follows: a chunk's
// partial depends only on the chunk, never on how chunks are split among
// threads.
//
//===----------------------------------------------------------------------===//

#include "ChunkTable.h"
#include "RuleLowering.h"
#include "optim/Conversion/ReductionSpecs.h"
#include "optim/Rule.h"

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
    // A row or column reduction's result is read, not computed (its operand
    // is the reduce kernel's).
    if (!def || !varying.contains(v) || isa<TensorReduceOp>(def) ||
        !ruleOps.insert(def).second)
      continue;
    llvm::append_range(worklist, def->getOperands());
  }
}

SmallVector<unsigned>
mlir::optim::reductionLevelsOf(RuleOp rule,
                               ArrayRef<TensorReduceOp> reductions) {
  llvm::DenseMap<Operation *, unsigned> all = getReductionLevels(rule);
  SmallVector<unsigned> levels;
  for (TensorReduceOp red : reductions)
    levels.push_back(all.lookup(red));
  return levels;
}

LogicalResult mlir::optim::collectReductionSlices(
    ArrayRef<TensorReduceOp> reductions, ArrayRef<unsigned> levels,
    SmallVectorImpl<llvm::DenseSet<Operation *>> &stageSlices,
    llvm::DenseSet<Operation *> &slice, bool refuseLearned) {
  unsigned maxLevel = 0;
  for (unsigned level : levels)
    maxLevel = std::max(maxLevel, level);
  stageSlices.assign(reductions.empty() ? 0 : maxLevel + 1, {});
  for (auto [r, level] : llvm::enumerate(levels)) {
    TensorReduceOp red = reductions[r];
    llvm::DenseSet<Operation *> &stage = stageSlices[level];
    // Backwards from the reduced value, down to the results of lower
    // reductions (read from `reduced`, not recomputed).
    SmallVector<Operation *> worklist;
    if (Operation *def = red.getValue().getDefiningOp())
      worklist.push_back(def);
    while (!worklist.empty()) {
      Operation *op = worklist.pop_back_val();
      if (!stage.insert(op).second)
        continue;
      slice.insert(op);
      if (isa<TensorReduceOp>(op))
        continue;
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

/// `const char <prefix><rule name>[] = text` (NUL-terminated), external, in
/// `addressSpace`: a descriptor that loaders compare with the manifest.
static void createDescriptorGlobal(OpBuilder &b, RuleOp rule,
                                   StringRef prefix, std::string text,
                                   unsigned addressSpace) {
  text.push_back('\0');
  auto type = LLVM::LLVMArrayType::get(b.getI8Type(), text.size());
  LLVM::GlobalOp::create(b, rule.getLoc(), type, /*isConstant=*/true,
                         LLVM::Linkage::External,
                         (prefix + rule.getSymName()).str(),
                         b.getStringAttr(text), /*alignment=*/0,
                         addressSpace);
}

::optim::ReductionSpec mlir::optim::reductionSpecOf(TensorReduceOp red,
                                                   unsigned level) {
  ::optim::ReductionSpec spec;
  switch (red.getKind()) {
  case ReductionKind::Sum:
    spec.kind = ::optim::ReductionKind::Sum;
    break;
  case ReductionKind::Mean:
    spec.kind = ::optim::ReductionKind::Mean;
    break;
  case ReductionKind::Norm:
    spec.kind = ::optim::ReductionKind::Norm;
    break;
  case ReductionKind::Max:
    spec.kind = ::optim::ReductionKind::Max;
    break;
  case ReductionKind::Min:
    spec.kind = ::optim::ReductionKind::Min;
    break;
  case ReductionKind::NewtonSchulz:
    spec.kind = ::optim::ReductionKind::NewtonSchulz;
    break;
  case ReductionKind::Rows:
    spec.kind = ::optim::ReductionKind::Rows;
    break;
  case ReductionKind::Cols:
    spec.kind = ::optim::ReductionKind::Cols;
    break;
  }
  spec.global = red.getGlobal();
  spec.level = level;
  if (std::optional<ReductionAxis> axis = red.getAxis())
    spec.axis = *axis == ReductionAxis::Row   ? ::optim::Axis::Row
                : *axis == ReductionAxis::Col ? ::optim::Axis::Col
                                              : ::optim::Axis::Matrix;
  if (red.getKind() == ReductionKind::NewtonSchulz) {
    spec.nsSteps = red.getNsSteps();
    for (auto [i, c] : llvm::enumerate(red.getNsCoefficients()))
      spec.nsCoefficients[i] = c;
    spec.nsEps = red.getNsEps().convertToDouble();
  }
  return spec;
}

void mlir::optim::createReductionsDescriptor(
    OpBuilder &b, RuleOp rule, ArrayRef<TensorReduceOp> reductions,
    ArrayRef<unsigned> levels, unsigned addressSpace) {
  // Spelled by the runtime's own optim::reductionsDescriptor (optim/Rule.h,
  // header-only), from the specs describeRule (lib/Compiler/Describe.cpp)
  // would give: the loaders compare it with the manifest's list, printed by
  // the same function, so the two cannot drift apart (newton_schulz's
  // parameters are numbers spelled by optim::descriptorNumber).
  std::vector<::optim::ReductionSpec> specs;
  for (auto [r, level] : llvm::enumerate(levels))
    specs.push_back(reductionSpecOf(reductions[r], level));
  createDescriptorGlobal(b, rule, "optim_reductions_",
                         ::optim::reductionsDescriptor(specs), addressSpace);
}

void mlir::optim::createStatesDescriptor(OpBuilder &b, RuleOp rule,
                                         unsigned addressSpace) {
  unsigned numStates = rule.getNumStates();
  if (numStates == 0)
    return;
  // optim::statesDescriptor (optim/Rule.h) spells them alike, as
  // describeRule (lib/Compiler/Describe.cpp) fills the manifest's states.
  std::string text;
  for (unsigned s = 0; s < numStates; ++s) {
    if (!text.empty())
      text += ',';
    auto vec = dyn_cast<VectorType>(rule.getState(s).getType());
    text += std::to_string(vec ? vec.getNumElements() : 1);
    StringRef axis = rule.getStateAxis(s);
    if (axis != "none")
      text += ("@" + axis).str(); // "1@row".
  }
  createDescriptorGlobal(b, rule, "optim_states_", text, addressSpace);
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

SmallVector<Value> RuleLowering::emitReduceLoop(
    OpBuilder &b, Value lb, Value ub, unsigned lanes, ArrayRef<Value> bases,
    Value stride, ValueRange init, unsigned stage, ArrayRef<unsigned> which,
    ArrayRef<std::pair<unsigned, Value>> colPartials,
    ArrayRef<std::pair<unsigned, Value>> matrixValues) {
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
    if (rowAnchor && !map.count(v) && isRowOpResult(v))
      map[v] = broadcastRow(b, rowValue(b, v), lanes);
    if (axes && !map.count(v) && axisOf.count(v))
      map[v] = loadAxisValue(b, v, lanes, i);
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
    if (stageSlices[stage].contains(op) &&
        !(rowAnchor && rowOps.contains(op)))
      mapCoordinateOp(b, op, lanes, map, operand);

  Type f64 = laneType(b.getF64Type(), lanes);
  SmallVector<Value> next;
  for (auto [k, acc] : llvm::zip(which, loop.getRegionIterArgs())) {
    TensorReduceOp red = reductions[k];
    Value x = operand(red.getValue()).front();
    if (!elt.isF64())
      x = arith::ExtFOp::create(b, loc, f64, x);
    if (red.getKind() == ReductionKind::Norm)
      x = arith::MulFOp::create(b, loc, x, x);
    next.push_back(mergeReduction(b, loc, red.getKind(), acc, x));
  }
  // Column reductions: the iteration's columns of the chunk's partials.
  for (auto [k, ptr] : colPartials) {
    TensorReduceOp red = reductions[k];
    Value x = operand(red.getValue()).front();
    if (!elt.isF64())
      x = arith::ExtFOp::create(b, loc, f64, x);
    if (red.getKind() == ReductionKind::Norm)
      x = arith::MulFOp::create(b, loc, x, x);
    Value addr = gep(b, b.getF64Type(), ptr, i);
    Value acc = LLVM::LoadOp::create(b, loc, f64, addr, 8);
    Value merged = mergeReduction(b, loc, red.getKind(), acc, x);
    LLVM::StoreOp::create(b, loc, merged, addr, 8);
  }
  // Matrix functions: the iteration's operand values, in the element type,
  // overwrite the row's coordinates of the matrix buffer (KernelABI.h
  // version 11), one vector store per iteration.
  for (auto [k, ptr] : matrixValues) {
    Value x = operand(reductions[k].getValue()).front();
    LLVM::StoreOp::create(b, loc, x, gep(b, elt, ptr, i), align);
  }
  // A loop without accumulators (only column reductions or matrix
  // functions, rules with axes) has its yield already.
  if (!next.empty())
    scf::YieldOp::create(b, loc, next);
  return SmallVector<Value>(loop.getResults());
}

void RuleLowering::emitReduceKernel(OpBuilder &b) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  // (..., double *partials, const double *reduced, int64_t stage, rng).
  func::FuncOp func = beginKernel(b, (kReducePrefix + rule.getSymName()).str(),
                                  {ptrType, ptrType, i64}, [&](Operation *op) {
                                    // The reductions themselves read their
                                    // operand (a hyperparameter, say) but are
                                    // not computed here.
                                    return reductionSlice.contains(op) ||
                                           isa<TensorReduceOp>(op);
                                  });
  Block *entry = &func.front();
  Value stage = entry->getArgument(10);
  // One chunk loop per level; any other stage writes nothing.
  for (unsigned s = 0; s <= maxLevel; ++s) {
    Value isStage = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                          stage, i64Const(b, s));
    auto choice = scf::IfOp::create(b, loc, isStage, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&choice.getThenRegion().front());
    emitReduceStage(b, s, entry->getArgument(0), entry->getArgument(1),
                    entry->getArgument(2), entry->getArgument(3),
                    entry->getArgument(4), entry->getArgument(8),
                    entry->getArgument(9));
  }
  func::ReturnOp::create(b, loc);
}

void RuleLowering::emitPerChunk(OpBuilder &b, Value reduced, Value first,
                                const llvm::DenseSet<Operation *> *slice) {
  Location loc = rule.getLoc();
  Type f64 = b.getF64Type();
  for (Operation *op : perChunkOps) {
    // Slot r is the r-th reduction in body order (row and column ones
    // included: they are not per-chunk values).
    auto red = dyn_cast<TensorReduceOp>(op);
    unsigned slotIndex =
        red ? unsigned(llvm::find(reductions, red) - reductions.begin()) : 0;
    if (slice && !slice->contains(op))
      continue;
    if (!red) {
      b.clone(*op, uniform);
      continue;
    }
    Value slot = arith::AddIOp::create(b, loc, first, i64Const(b, slotIndex));
    Value value =
        LLVM::LoadOp::create(b, loc, f64, gep(b, f64, reduced, slot), 8);
    if (!elt.isF64())
      value = arith::TruncFOp::create(b, loc, elt, value);
    uniform.map(red.getResult(), value);
  }
}

void RuleLowering::emitReduceStage(OpBuilder &b, unsigned stage, Value ptrs,
                                   Value lengths, Value strides, Value begin,
                                   Value end, Value partials, Value reduced) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  if (axes)
    return emitAxisReduceStage(b, stage, ptrs, lengths, strides, begin, end,
                               partials, reduced);
  const llvm::DenseSet<Operation *> &slice = stageSlices[stage];
  // Shape values are the runtime's: never computed, never written.
  SmallVector<unsigned> which;
  for (auto [r, level] : llvm::enumerate(levels))
    if (level == stage && !isShapeValue(reductions[r]))
      which.push_back(r);
  // A stage of shape values only (a rule whose reductions are all shape
  // values: the runtime never runs it) writes nothing.
  if (which.empty())
    return;

  auto chunks = scf::ForOp::create(b, loc, index(b, begin), index(b, end),
                                   arith::ConstantIndexOp::create(b, loc, 1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(chunks.getBody());
  Value c = arith::IndexCastOp::create(b, loc, i64, chunks.getInductionVar());
  ChunkView chunk = loadChunk(b, loc, ptrs, lengths, strides, c,
                              2 + rule.getNumInputs() + rule.getNumStates());
  loadRngChunkBase(b, c);
  Value first =
      arith::MulIOp::create(b, loc, c, i64Const(b, reductions.size()));
  // The values of lower levels that this stage reads, and what is computed
  // from them once per chunk, as the rule kernel computes them.
  emitPerChunk(b, reduced, first, &slice);
  Value nIdx = index(b, chunk.length);
  auto constant = [&](ReductionKind kind, unsigned lanes) -> Value {
    FloatAttr value = b.getFloatAttr(f64, reductionIdentity(kind));
    if (lanes == 1)
      return arith::ConstantOp::create(b, loc, value);
    return arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(cast<ShapedType>(laneType(f64, lanes)), value));
  };
  SmallVector<Value> totals;
  for (unsigned k : which)
    totals.push_back(constant(reductions[k].getKind(), 1));
  Value vectorEnd = arith::ConstantIndexOp::create(b, loc, 0);
  for (unsigned lanes : laneCounts()) {
    Value start = vectorEnd;
    Value lanesIdx = arith::ConstantIndexOp::create(b, loc, lanes);
    vectorEnd = arith::SubIOp::create(
        b, loc, nIdx, arith::RemUIOp::create(b, loc, nIdx, lanesIdx));
    SmallVector<Value> init;
    for (unsigned k : which)
      init.push_back(constant(reductions[k].getKind(), lanes));
    SmallVector<Value> accs =
        emitReduceLoop(b, start, vectorEnd, lanes, chunk.bases, chunk.stride,
                       init, stage, which);
    // Lane 0 first, then 1, ...: a fixed order.
    for (auto [j, k] : llvm::enumerate(which))
      for (int64_t l = 0; l < int64_t(lanes); ++l)
        totals[j] = mergeReduction(
            b, loc, reductions[k].getKind(), totals[j],
            vector::ExtractOp::create(b, loc, accs[j], ArrayRef<int64_t>{l}));
  }
  totals = emitReduceLoop(b, vectorEnd, nIdx, 1, chunk.bases, chunk.stride,
                          totals, stage, which);
  // Overwrites partials[c * R + r] for the reductions of this level only.
  for (auto [k, total] : llvm::zip(which, totals)) {
    Value slot = arith::AddIOp::create(b, loc, first, i64Const(b, k));
    LLVM::StoreOp::create(b, loc, total, gep(b, f64, partials, slot), 8);
  }
}
