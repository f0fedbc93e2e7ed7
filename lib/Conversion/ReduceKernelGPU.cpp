//===- ReduceKernelGPU.cpp - the reduction passes of a rule ---------------===//
//
// optim_reduce_<name> for CUDA (KernelABI.h, GPU kernels of versions 6 and
// 9): block b takes chunk c = begin + b, as the rule kernel does; the launch
// computes the reductions of one level, `stage`. Each thread computes the
// reduced values of its coordinates (threadIdx.x, + blockDim.x, ...) by the
// rule kernel's per-coordinate code (GPURuleLowering::mapVaryingOp), one
// coordinate at a time, and accumulates them in f64 in order; the results
// of lower levels come from `reduced`, and what depends on them alone is
// computed once per thread as the rule kernel does (emitPerChunk). The
// block then combines its threads' accumulators by a tree of fixed shape in
// shared memory, so that a chunk's partial depends only on the chunk and
// blockDim.x. Thread 0 writes partials[c * R + r] for the reductions of the
// stage's level only. The CPU's lanes group the coordinates otherwise: the
// sums agree up to their order, not bit for bit.
//
//===----------------------------------------------------------------------===//

#include "GPURuleLowering.h"
#include "RuleLowering.h"

#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace mlir::optim;

/// Must match OPTIM_REDUCE_SYMBOL_PREFIX.
static constexpr llvm::StringLiteral kReducePrefix = "optim_reduce_";
/// CUDA's most threads per block: the tree has one slot per thread.
static constexpr int64_t kMaxThreads = 1024;

LogicalResult GPURuleLowering::classifyReductions() {
  if (reductions.empty())
    return success();
  collectRuleOps(rule.getBodyBlock(), varying, ruleOpSet);
  levels = reductionLevelsOf(rule, reductions);
  for (unsigned level : levels)
    maxLevel = std::max(maxLevel, level);
  // Learned rules with reductions were refused before.
  return collectReductionSlices(reductions, levels, stageSlices, reductionSlice,
                                /*refuseLearned=*/false);
}

void GPURuleLowering::emitReduceKernel(OpBuilder &b) {
  MLIRContext *ctx = rule.getContext();
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  uniform.clear();
  reciprocals.clear();
  // (ptrs, lengths, strides, begin, step, hyper_0 .. hyper_{H-1}, partials,
  // reduced, stage, rng)
  // and one double of shared memory per thread (blockDim.x <= 1024).
  SmallVector<Type> argTypes = {globalPtr, globalPtr, globalPtr, i64, i64};
  for (unsigned h = 0, e = rule.getNumHypers(); h < e; ++h)
    argTypes.push_back(elt);
  argTypes.push_back(globalPtr); // double *partials
  argTypes.push_back(globalPtr); // const double *reduced (version 9)
  argTypes.push_back(i64);       // int64_t stage (version 9)
  argTypes.push_back(globalPtr); // const uint64_t *rng, last (version 8).
  Type shared = MemRefType::get(
      {kMaxThreads}, f64, MemRefLayoutAttrInterface(),
      gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup));
  auto func = gpu::GPUFuncOp::create(
      b, loc, (kReducePrefix + rule.getSymName()).str(),
      b.getFunctionType(argTypes, {}), TypeRange{shared});
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  // (Workgroup attributions are block arguments after the function's.)
  unsigned afterHypers = 5 + rule.getNumHypers();
  Value partials = entry.getArgument(afterHypers);
  Value reduced = entry.getArgument(afterHypers + 1);
  Value stage = entry.getArgument(afterHypers + 2);
  emitUniform(b, entry, entry.getArgument(4));
  if (relaxed)
    emitReciprocals(b, [&](Value v) { return !perChunk.contains(v); });
  Chunk chunk =
      loadChunk(b, entry.getArgument(0), entry.getArgument(1),
                entry.getArgument(2), entry.getArgument(3));
  loadRng(b, entry.getArgument(afterHypers + 3), chunk.index,
          llvm::any_of(varyingOps, [&](Operation *op) {
            return isa<RandomOp>(op) && reductionSlice.contains(op);
          }));
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value threads = gpu::BlockDimOp::create(b, loc, gpu::Dimension::x);
  Value buffer = func.getWorkgroupAttributions()[0];
  // One branch per level (`stage` is the same for the whole launch, so the
  // barriers inside are reached by every thread); any other stage writes
  // nothing.
  for (unsigned s = 0; s <= maxLevel; ++s) {
    Value isStage = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                          stage, i64Const(b, s));
    auto choice = scf::IfOp::create(b, loc, isStage, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&choice.getThenRegion().front());
    emitReduceStage(b, s, chunk, tid, threads, buffer, partials, reduced);
  }
  gpu::ReturnOp::create(b, loc);
}

void GPURuleLowering::emitReduceStage(OpBuilder &b, unsigned stage,
                                      const Chunk &chunk, Value tid,
                                      Value threads, Value buffer,
                                      Value partials, Value reduced) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  const llvm::DenseSet<Operation *> &slice = stageSlices[stage];
  // Shape values (KernelABI.h version 11) are the runtime's: never computed,
  // never written. Row and column reductions (version 10) have partials of
  // their own.
  SmallVector<unsigned> which, rows, cols, mats;
  for (auto [r, level] : llvm::enumerate(levels)) {
    if (level != stage || isShapeValue(reductions[r]))
      continue;
    if (std::optional<ReductionAxis> axis = reductions[r].getAxis())
      (*axis == ReductionAxis::Row   ? rows
       : *axis == ReductionAxis::Col ? cols
                                     : mats)
          .push_back(r);
    else
      which.push_back(r);
  }
  // A stage of shape values only (a rule whose reductions are all shape
  // values: the runtime never launches it) writes nothing.
  if (which.empty() && rows.empty() && cols.empty() && mats.empty())
    return;
  // The values of lower levels this stage reads, and what depends on them
  // alone, as the rule kernel computes them; and the relaxed reciprocals of
  // per-chunk divisors, which slice ops never use (mapVaryingOp). Stage 0
  // reads only shape values, which the runtime filled before it.
  bool readsShapes = llvm::any_of(reductions, [&](TensorReduceOp red) {
    return isShapeValue(red) && slice.contains(red);
  });
  if (stage > 0 || readsShapes)
    emitPerChunk(b, reduced, chunk.index, &slice);
  if (!rows.empty() || !cols.empty())
    emitAxisReductions(b, stage, chunk, tid, threads, rows, cols);
  if (!mats.empty())
    emitMatrixStores(b, stage, chunk, tid, threads, mats);
  if (which.empty())
    return;

  // Each thread accumulates its coordinates (tid, tid + blockDim.x, ...) in
  // order, one coordinate at a time: the values are those of the rule
  // kernel's loops, whose lanes compute the same ops per coordinate.
  SmallVector<Value> init;
  for (unsigned k : which)
    init.push_back(arith::ConstantOp::create(
        b, loc,
        b.getFloatAttr(f64, reductionIdentity(reductions[k].getKind()))));
  auto loop = scf::ForOp::create(b, loc, tid, chunk.length, threads, init);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(loop.getBody());
    Value k = arith::IndexCastOp::create(b, loc, i64, loop.getInductionVar());
    Value r, j;
    if (axes) {
      r = arith::DivUIOp::create(b, loc, k, chunk.nc);
      j = arith::SubIOp::create(b, loc, k,
                                arith::MulIOp::create(b, loc, r, chunk.nc));
    }
    scf::YieldOp::create(b, loc,
                         stageValues(b, stage, chunk, k, r, j, which,
                                     loop.getRegionIterArgs()));
  }

  // Then a tree in shared memory, the same shape for every block of a
  // launch: at step s (512, 256, ..., 1) thread tid < s folds in the value
  // of thread tid + s, if there is one. Thread 0 writes the chunk's
  // partial, partials[c * R + r].
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value steps =
      arith::ConstantIndexOp::create(b, loc, llvm::Log2_64(kMaxThreads));
  Value half = arith::ConstantIndexOp::create(b, loc, kMaxThreads / 2);
  Value isFirst =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, zero);
  Value first = arith::MulIOp::create(b, loc, chunk.index,
                                      i64Const(b, reductions.size()));
  for (auto [j, k] : llvm::enumerate(which)) {
    ReductionKind kind = reductions[k].getKind();
    // Thread 0 has read the previous reduction's total.
    if (j)
      gpu::BarrierOp::create(b, loc);
    memref::StoreOp::create(b, loc, loop.getResult(j), buffer, ValueRange{tid});
    gpu::BarrierOp::create(b, loc);
    auto tree = scf::ForOp::create(b, loc, zero, steps, one);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(tree.getBody());
      Value s = arith::ShRUIOp::create(b, loc, half, tree.getInductionVar());
      Value other = arith::AddIOp::create(b, loc, tid, s);
      Value folds = arith::AndIOp::create(
          b, loc,
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, tid, s),
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, other,
                                threads));
      auto fold = scf::IfOp::create(b, loc, folds, /*withElse=*/false);
      {
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(&fold.getThenRegion().front());
        Value mine = memref::LoadOp::create(b, loc, buffer, ValueRange{tid});
        Value theirs =
            memref::LoadOp::create(b, loc, buffer, ValueRange{other});
        memref::StoreOp::create(b, loc,
                                mergeReduction(b, loc, kind, mine, theirs),
                                buffer, ValueRange{tid});
      }
      gpu::BarrierOp::create(b, loc);
    }
    auto write = scf::IfOp::create(b, loc, isFirst, /*withElse=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&write.getThenRegion().front());
    Value total = memref::LoadOp::create(b, loc, buffer, ValueRange{zero});
    Value slot = arith::AddIOp::create(b, loc, first, i64Const(b, k));
    LLVM::StoreOp::create(b, loc, total, gep(b, f64, partials, slot), 8);
  }
}

SmallVector<Value> GPURuleLowering::stageValues(OpBuilder &b, unsigned stage,
                                                const Chunk &chunk, Value k,
                                                Value r, Value j,
                                                ArrayRef<unsigned> which,
                                                ValueRange accs) {
  Location loc = rule.getLoc();
  Type f64 = b.getF64Type();
  SmallVector<Value> next;
  for (auto [w, acc, x] :
       llvm::zip(which, accs, stageInputs(b, stage, chunk, k, r, j, which))) {
    TensorReduceOp red = reductions[w];
    if (!elt.isF64())
      x = arith::ExtFOp::create(b, loc, f64, x);
    if (red.getKind() == ReductionKind::Norm)
      x = arith::MulFOp::create(b, loc, x, x);
    next.push_back(mergeReduction(b, loc, red.getKind(), acc, x));
  }
  return next;
}

SmallVector<Value> GPURuleLowering::stageInputs(OpBuilder &b, unsigned stage,
                                                const Chunk &chunk, Value k,
                                                Value r, Value j,
                                                ArrayRef<unsigned> which) {
  Location loc = rule.getLoc();
  drawIndex = rngChunkBase
                  ? Value(arith::AddIOp::create(b, loc, rngChunkBase, k))
                  : Value();
  // p, g, the inputs, the states and lower row and column results are
  // loaded where first used, and only if used (component j of a vector
  // state at base + i + j * stride).
  CompMap map, spread;
  auto operand = [&](Value v) -> Comps {
    if (!varying.contains(v)) {
      Comps &cached = spread[v];
      if (cached.empty())
        cached = spreadUniform(b, loc, uniform.lookup(v),
                               [](Value u) { return u; });
      return cached;
    }
    if (!map.count(v)) {
      Comps loaded = loadStream(b, v, chunk, k, r, j, 1);
      if (!loaded.empty())
        map[v] = loaded;
    }
    return map.lookup(v);
  };
  for (Operation *op : varyingOps)
    if (stageSlices[stage].contains(op))
      mapVaryingOp(b, op, 1, map, operand);
  // A reduced value is a scalar (the verifier's rule).
  SmallVector<Value> values;
  for (unsigned w : which)
    values.push_back(operand(reductions[w].getValue()).front());
  return values;
}

/// `x` (f64) of the lane `mask` away in the warp: two 32-bit shuffles.
static Value shuffleXor(OpBuilder &b, Location loc, Value x, int32_t mask) {
  Type i32 = b.getI32Type(), i64 = b.getI64Type();
  Value bits = arith::BitcastOp::create(b, loc, i64, x);
  Value lo = arith::TruncIOp::create(b, loc, i32, bits);
  Value hi = arith::TruncIOp::create(
      b, loc, i32,
      arith::ShRUIOp::create(
          b, loc, bits, arith::ConstantIntOp::create(b, loc, 32, 64)));
  Value offset = arith::ConstantIntOp::create(b, loc, mask, 32);
  Value width = arith::ConstantIntOp::create(b, loc, 32, 32);
  auto shuffle = [&](Value v) -> Value {
    return gpu::ShuffleOp::create(b, loc, v, offset, width,
                                  gpu::ShuffleMode::XOR)
        .getShuffleResult();
  };
  Value lo2 = arith::ExtUIOp::create(b, loc, i64, shuffle(lo));
  Value hi2 = arith::ShLIOp::create(
      b, loc, arith::ExtUIOp::create(b, loc, i64, shuffle(hi)),
      arith::ConstantIntOp::create(b, loc, 32, 64));
  return arith::BitcastOp::create(b, loc, b.getF64Type(),
                                  arith::OrIOp::create(b, loc, hi2, lo2));
}

void GPURuleLowering::emitAxisReductions(OpBuilder &b, unsigned stage,
                                         const Chunk &chunk, Value tid,
                                         Value threads,
                                         ArrayRef<unsigned> rows,
                                         ArrayRef<unsigned> cols) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  Type index = b.getIndexType();
  unsigned partialsFirst = 2 + rule.getNumInputs() + rule.getNumStates() +
                           axisStates.size();
  auto partialOf = [&](unsigned w) {
    unsigned x = llvm::find(axisReductionIndices, w) -
                 axisReductionIndices.begin();
    return chunk.bases[partialsFirst + x];
  };
  auto idx = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, loc, v);
  };
  auto identities = [&](ArrayRef<unsigned> which) {
    SmallVector<Value> init;
    for (unsigned w : which)
      init.push_back(arith::ConstantOp::create(
          b, loc,
          b.getFloatAttr(f64, reductionIdentity(reductions[w].getKind()))));
    return init;
  };
  Value nr = arith::IndexCastOp::create(b, loc, index, chunk.nr);
  Value nc = arith::IndexCastOp::create(b, loc, index, chunk.nc);
  if (!rows.empty()) {
    // A warp per row (rows warp, warp + warps, ...): its lanes take the
    // row's columns lane, lane + 32, ... in order, then combine by a
    // butterfly of shuffles (every lane ends with the same bits: the merges
    // commute), and lane 0 overwrites the row's partial. Deterministic for a
    // given chunk; blockDim.x is a multiple of 32 (KernelABI.h).
    Value warpSize = idx(32);
    Value lane = arith::RemUIOp::create(b, loc, tid, warpSize);
    Value warp = arith::DivUIOp::create(b, loc, tid, warpSize);
    Value warps = arith::DivUIOp::create(b, loc, threads, warpSize);
    auto rowLoop = scf::ForOp::create(b, loc, warp, nr, warps);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(rowLoop.getBody());
    Value r = arith::IndexCastOp::create(b, loc, i64, rowLoop.getInductionVar());
    auto colLoop =
        scf::ForOp::create(b, loc, lane, nc, warpSize, identities(rows));
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(colLoop.getBody());
      Value j =
          arith::IndexCastOp::create(b, loc, i64, colLoop.getInductionVar());
      Value k = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, r, chunk.nc), j);
      scf::YieldOp::create(b, loc,
                           stageValues(b, stage, chunk, k, r, j, rows,
                                       colLoop.getRegionIterArgs()));
    }
    SmallVector<Value> totals(colLoop.getResults());
    for (int32_t mask : {16, 8, 4, 2, 1})
      for (auto [w, total] : llvm::zip(rows, totals))
        total = mergeReduction(b, loc, reductions[w].getKind(), total,
                               shuffleXor(b, loc, total, mask));
    Value isLane0 =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, lane, idx(0));
    auto write = scf::IfOp::create(b, loc, isLane0, /*withElse=*/false);
    b.setInsertionPointToStart(&write.getThenRegion().front());
    for (auto [w, total] : llvm::zip(rows, totals))
      LLVM::StoreOp::create(b, loc, total, gep(b, f64, partialOf(w), r), 8);
  }
  if (!cols.empty()) {
    // A thread per column (tid, tid + blockDim.x, ...), over the chunk's
    // rows in order; consecutive threads read consecutive coordinates.
    auto colLoop = scf::ForOp::create(b, loc, tid, nc, threads);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(colLoop.getBody());
    Value j = arith::IndexCastOp::create(b, loc, i64, colLoop.getInductionVar());
    auto rowLoop = scf::ForOp::create(b, loc, idx(0), nr, idx(1),
                                      identities(cols));
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(rowLoop.getBody());
      Value r =
          arith::IndexCastOp::create(b, loc, i64, rowLoop.getInductionVar());
      Value k = arith::AddIOp::create(
          b, loc, arith::MulIOp::create(b, loc, r, chunk.nc), j);
      scf::YieldOp::create(b, loc,
                           stageValues(b, stage, chunk, k, r, j, cols,
                                       rowLoop.getRegionIterArgs()));
    }
    for (auto [w, total] : llvm::zip(cols, rowLoop.getResults()))
      LLVM::StoreOp::create(b, loc, total, gep(b, f64, partialOf(w), j), 8);
  }
}

void GPURuleLowering::emitMatrixStores(OpBuilder &b, unsigned stage,
                                       const Chunk &chunk, Value tid,
                                       Value threads, ArrayRef<unsigned> mats) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  // The first pointer of each one's pair: the matrix buffer at the chunk's
  // first coordinate, where row r column j of the rectangle is [r * nc + j].
  unsigned partialsFirst = 2 + rule.getNumInputs() + rule.getNumStates() +
                           axisStates.size();
  auto loop = scf::ForOp::create(b, loc, tid, chunk.length, threads);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value k = arith::IndexCastOp::create(b, loc, i64, loop.getInductionVar());
  Value r = arith::DivUIOp::create(b, loc, k, chunk.nc);
  Value j = arith::SubIOp::create(b, loc, k,
                                  arith::MulIOp::create(b, loc, r, chunk.nc));
  for (auto [w, x] : llvm::zip(mats, stageInputs(b, stage, chunk, k, r, j,
                                                 mats))) {
    unsigned slot = llvm::find(axisReductionIndices, w) -
                    axisReductionIndices.begin();
    LLVM::StoreOp::create(b, loc, x,
                          gep(b, elt, chunk.bases[partialsFirst + slot], k),
                          elt.getWidth() / 8);
  }
}
