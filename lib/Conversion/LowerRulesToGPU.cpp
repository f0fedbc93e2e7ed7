//===- LowerRulesToGPU.cpp - optim.rule to one CUDA kernel per rule -------===//
//
// One rule becomes one `gpu.func` kernel with the GPU ABI of KernelABI.h:
// a launch covers a whole chunk table (block b = chunk begin + b), the
// block's threads stride over the chunk's coordinates. Values that do not
// depend on p, g or the state ("uniform") are computed once per thread
// before any loop; the rest is cloned into a loop that handles 128 bits of
// every input per thread and iteration (when the chunk's pointers allow it)
// and into a scalar loop for what remains. Every coordinate is read once and
// written once.
//
// Learned rules (weights: log_sign, lstm_cell, linear) take another path,
// emitLearned: their per-coordinate work is thousands of FMAs on ~5k shared
// weights, so the block first copies the weights into shared memory (one
// workgroup attribution, 16-byte aligned) and synchronizes; each thread
// then takes one coordinate at a time. The inputs of a matrix-vector
// product are loaded into registers once, a loop over hidden units
// accumulates each unit's four gate rows (weights read from shared memory,
// the same address for every thread: a broadcast), and each new state
// component goes to global memory as soon as it is computed (coalesced:
// component j of coordinate i is at base + j * stride + i). A later
// product that reads that state loads it back. The shared copy of an
// lstm_cell's weights [4H, cols] ([W | b]) is gate-interleaved:
// W[q * H + j][k] at ((j * cols + k) * 4 + q), so the four gate weights of
// unit j and input k are one 16-byte group (32 bytes in f64), read with one
// vector load for four FMAs (a warp issues one shared load per clock
// against four FMAs: scalar loads would cap the kernel at a quarter of the
// FMA peak). Every weights tensor starts at a multiple of 4 elements; the
// linear head's stay row-major. Nothing is indexed dynamically in
// registers, so nothing spills.
// A cell result that cannot go to its state as it is computed (a later op
// changes it or reads the state's old value, or it is no state) goes to an
// array in the thread's private memory instead, as does a c input that is
// in no memory; those arrays are local memory, cached in L1.
//
// An update rule with tensor reductions also gets its reduction passes,
// optim_reduce_<name> (ReduceKernelGPU.cpp, one launch per level of
// nesting); its rule kernel takes the
// reduced values as a last argument and computes what depends on them
// (per chunk) once per thread, after loading its chunk's pointers.
//
//===----------------------------------------------------------------------===//

#include "optim/Conversion/Passes.h"

#include "Components.h"
#include "GPURuleLowering.h"
#include "LearnedMath.h"
#include "Philox.h"
#include "RuleLowering.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::optim {
#define GEN_PASS_DEF_LOWERRULESTOGPU
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

namespace {

/// Must match OPTIM_RULE_SYMBOL_PREFIX and OPTIM_GPU_MODULE_NAME.
constexpr llvm::StringLiteral kSymbolPrefix = "optim_rule_";
constexpr llvm::StringLiteral kModuleName = "optim_kernels";
/// CUDA's global address space.
constexpr unsigned kGlobal = 1;
/// Learned rules: the shared copy of an lstm_cell's weights keeps the four
/// gate weights of a (unit, input) pair side by side, and every weights
/// tensor starts at a multiple of this many elements.
constexpr int64_t kGateGroup = 4;
/// The widest shared-memory load (ld.shared.v4.b32, .v2.b64) and the
/// alignment of the shared buffer.
constexpr unsigned kVectorBytes = 16;

} // namespace

/// NVVM's correctly rounded square root of `x` (scalar or vector), one lane
/// at a time: convert-gpu-to-nvvm refuses llvm.intr.sqrt, and libdevice's
/// __nv_sqrtf, which it calls for math.sqrt, is sqrt.approx.
static Value exactSqrt(OpBuilder &b, Location loc, Value x) {
  auto vec = dyn_cast<VectorType>(x.getType());
  Type elt = getElementTypeOrSelf(x.getType());
  StringAttr name = b.getStringAttr(elt.isF32() ? "llvm.nvvm.sqrt.rn.f"
                                                : "llvm.nvvm.sqrt.rn.d");
  if (!vec)
    return LLVM::CallIntrinsicOp::create(b, loc, elt, name, x).getResult(0);
  SmallVector<Value> roots;
  for (int64_t l = 0; l < vec.getNumElements(); ++l) {
    Value lane = vector::ExtractOp::create(b, loc, x, ArrayRef<int64_t>{l});
    roots.push_back(
        LLVM::CallIntrinsicOp::create(b, loc, elt, name, lane).getResult(0));
  }
  return vector::FromElementsOp::create(b, loc, vec, roots);
}

LogicalResult GPURuleLowering::classify() {
  varying.insert(rule.getParam());
  varying.insert(rule.getGrad());
  for (unsigned i = 0, e = rule.getNumInputs(); i < e; ++i)
    varying.insert(rule.getInput(i));
  if (rule.getNumWeights())
    return classifyLearned();
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i) {
    varying.insert(rule.getState(i));
    StringRef axis = rule.getStateAxis(i);
    if (axis == "none")
      continue;
    axisStates.push_back(i);
    axisOf[rule.getState(i)] =
        axis == "row" ? ValueAxis::Row : ValueAxis::Col;
  }
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    // log_sign of a value shared by the coordinates is still computed per
    // coordinate (or refused below): the op cannot live outside a rule.
    bool isVarying = isa<LogSignOp, RandomOp>(op) ||
                     llvm::any_of(op.getOperands(), [&](Value v) {
                       return varying.contains(v);
                     });
    // A row or column reduction (or a matrix function) has one slot among
    // the reductions, but its result is a row, column or coordinate value,
    // read per coordinate.
    auto red = dyn_cast<TensorReduceOp>(op);
    if (red && red.getAxis()) {
      if (red.getValue().getType() != elt)
        return red.emitOpError("reduces a value of type ")
               << red.getValue().getType() << " in a rule of element type "
               << elt;
      axisReductionIndices.push_back(reductions.size());
      // A matrix function's result is read per coordinate from its buffer.
      ReductionAxis axis = *red.getAxis();
      axisOf[red.getResult()] = axis == ReductionAxis::Row   ? ValueAxis::Row
                                : axis == ReductionAxis::Col ? ValueAxis::Col
                                                             : ValueAxis::Coordinate;
      reductions.push_back(red);
      varying.insert(red.getResult());
      continue;
    }
    if (isa<TensorReduceOp>(op) || !isVarying) {
      if (failed(classifyShared(op, elt, reductions, perChunk, perChunkOps)))
        return failure();
      continue;
    }
    // A vector<N> value is N components (Components.h), as on the CPU.
    auto isCoordinateValue = [&](Type t) { return isCoordinateType(t, elt); };
    bool supported =
        isa<RandomOp, LogSignOp>(op) ||
        (isComponentMove(&op) ? isSupportedComponentMove(&op)
                              : op.hasTrait<OpTrait::Elementwise>() &&
                                    !op.getNumRegions() &&
                                    llvm::all_of(op.getResultTypes(),
                                                 isCoordinateValue));
    if (!supported)
      return op.emitOpError("cannot be computed per coordinate by the GPU "
                            "code generator yet");
    varyingOps.push_back(&op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  return classifyReductions();
}

void GPURuleLowering::emitCoordinateLoop(OpBuilder &b, Value lb, Value ub,
                                         Value step, unsigned lanes,
                                         const Chunk &chunk) {
  Location loc = rule.getLoc();
  auto loop = scf::ForOp::create(b, loc, lb, ub, step);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value k = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  drawIndex = rngChunkBase
                  ? Value(arith::AddIOp::create(b, loc, rngChunkBase, k))
                  : Value();
  // Rules with axes: the coordinate's row and column in the rectangle.
  Value r, j;
  if (axes) {
    r = arith::DivUIOp::create(b, loc, k, chunk.nc);
    j = arith::SubIOp::create(b, loc, k,
                              arith::MulIOp::create(b, loc, r, chunk.nc));
  }
  auto laneType = [&](Type scalar) -> Type {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  };
  unsigned align = lanes * elt.getWidth() / 8;

  // p, g, the rule's inputs, the states (component j of a vector state at
  // base + i + j * stride), and the row and column reductions' results: what
  // the rule kernel reads. With reductions, an input that only reduced
  // values read is the reduce kernel's (ruleOpSet then holds what the rule
  // kernel computes).
  CompMap map;
  auto readHere = [&](Value input) {
    if (reductions.empty())
      return !input.use_empty();
    return llvm::any_of(input.getUsers(), [&](Operation *user) {
      return isa<YieldOp>(user) || ruleOpSet.contains(user);
    });
  };
  for (Value input : rule.getChunkStreams())
    if (readHere(input))
      map[input] = loadStream(b, input, chunk, k, r, j, lanes);
  for (unsigned x : axisReductionIndices) {
    Value result = reductions[x].getResult();
    if (readHere(result))
      map[result] = loadStream(b, result, chunk, k, r, j, lanes);
  }

  CompMap broadcasts;
  auto operand = [&](Value v) -> Comps {
    if (varying.contains(v))
      return map.lookup(v);
    Comps &cached = broadcasts[v];
    if (cached.empty())
      cached = spreadUniform(b, loc, uniform.lookup(v), [&](Value u) -> Value {
        if (lanes == 1)
          return u;
        return vector::BroadcastOp::create(b, loc, laneType(u.getType()), u);
      });
    return cached;
  };
  for (Operation *op : varyingOps)
    if (reductions.empty() || ruleOpSet.contains(op))
      mapVaryingOp(b, op, lanes, map, operand);

  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  for (auto [y, value] : llvm::enumerate(yield.getValues())) {
    Value input = y == 0 ? rule.getParam() : rule.getState(y - 1);
    if (axes && y && axisOf.count(input)) {
      // A row state's new value goes to its next buffer from the chunk
      // holding the row's first column, at that column; a column state's
      // from the matrix's first row. Even unchanged: the runtime copies
      // every next buffer to the current one after the step.
      bool isRow = axisOf.lookup(input) == ValueAxis::Row;
      Value zero = i64Const(b, 0);
      auto eq = [&](Value x) {
        return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, zero);
      };
      Value write =
          isRow ? arith::AndIOp::create(b, loc, eq(chunk.c0), eq(j)).getResult()
                : eq(arith::AddIOp::create(b, loc, chunk.r0, r));
      unsigned a = llvm::find(axisStates, y - 1) - axisStates.begin();
      unsigned nextSlot = 2 + rule.getNumInputs() + rule.getNumStates() + a;
      auto guard = scf::IfOp::create(b, loc, write, /*withElse=*/false);
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(&guard.getThenRegion().front());
      LLVM::StoreOp::create(b, loc, operand(value).front(),
                            gep(b, elt, chunk.bases[nextSlot], isRow ? r : j),
                            elt.getWidth() / 8);
      continue;
    }
    if (value == input)
      continue; // Unchanged: nothing to write.
    Comps comps = operand(value);
    for (unsigned c = 0, e = numComponents(input.getType()); c < e; ++c)
      LLVM::StoreOp::create(b, loc, comps.size() == 1 ? comps[0] : comps[c],
                            streamAddr(b, input, c, chunk, k, r, j), align);
  }
}

unsigned GPURuleLowering::numChunkPtrs() {
  unsigned n = 2 + rule.getNumInputs() + rule.getNumStates();
  if (axes)
    n += axisStates.size() + 2 * axisReductionIndices.size();
  return n;
}

Value GPURuleLowering::streamAddr(OpBuilder &b, Value v, unsigned comp,
                                  const Chunk &chunk, Value k, Value r,
                                  Value j) {
  // Row and column values: the runtime offsets their pointers to the
  // chunk's first row or column (KernelABI.h, "Axes").
  auto axis = axisOf.find(v);
  if (axis != axisOf.end()) {
    Value at = axis->second == ValueAxis::Row   ? r
               : axis->second == ValueAxis::Col ? j
                                                : k;
    if (isa<BlockArgument>(v)) {
      for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s)
        if (rule.getState(s) == v)
          return gep(b, elt, chunk.bases[rule.getStateSlot(s)], at);
    }
    unsigned reducedFirst = 2 + rule.getNumInputs() + rule.getNumStates() +
                            axisStates.size() + axisReductionIndices.size();
    // Doubles, but a matrix function's T (KernelABI.h version 11).
    for (auto [x, index] : llvm::enumerate(axisReductionIndices))
      if (reductions[index].getResult() == v)
        return gep(b,
                   axis->second == ValueAxis::Coordinate ? Type(elt)
                                                         : b.getF64Type(),
                   chunk.bases[reducedFirst + x], at);
    return Value();
  }
  for (auto [slot, stream] : llvm::enumerate(rule.getChunkStreams()))
    if (stream == v)
      return componentAddr(b, chunk.bases[slot], k, comp, chunk.stride);
  return Value();
}

Comps GPURuleLowering::loadStream(OpBuilder &b, Value v, const Chunk &chunk,
                                  Value k, Value r, Value j, unsigned lanes) {
  Location loc = rule.getLoc();
  Comps comps;
  bool isResult = !isa<BlockArgument>(v);
  if (isResult) {
    // A row or column reduction's result: a double, rounded to the element
    // type as tensor reductions' results are (emitPerChunk).
    Value addr = streamAddr(b, v, 0, chunk, k, r, j);
    if (!addr)
      return comps;
    // A matrix function's result is already of the element type.
    if (axisOf.lookup(v) == ValueAxis::Coordinate) {
      comps.push_back(LLVM::LoadOp::create(b, loc, elt, addr,
                                           elt.getWidth() / 8));
      return comps;
    }
    Value x = LLVM::LoadOp::create(b, loc, b.getF64Type(), addr, 8);
    if (!elt.isF64())
      x = arith::TruncFOp::create(b, loc, elt, x);
    comps.push_back(x);
    return comps;
  }
  Type type = lanes == 1 ? Type(elt) : Type(VectorType::get({lanes}, elt));
  unsigned align = lanes * elt.getWidth() / 8;
  for (unsigned c = 0, e = numComponents(v.getType()); c < e; ++c) {
    Value addr = streamAddr(b, v, c, chunk, k, r, j);
    if (!addr)
      return {};
    comps.push_back(LLVM::LoadOp::create(b, loc, type, addr, align));
  }
  return comps;
}

bool GPURuleLowering::hasVectorState() {
  for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s)
    if (isa<VectorType>(rule.getState(s).getType()))
      return true;
  return false;
}

Value GPURuleLowering::componentAddr(OpBuilder &b, Value base, Value i,
                                     unsigned j, Value stride) {
  Value at = i;
  if (j)
    at = arith::AddIOp::create(
        b, rule.getLoc(), i,
        arith::MulIOp::create(b, rule.getLoc(), stride, i64Const(b, j)));
  return gep(b, elt, base, at);
}

void GPURuleLowering::mapVaryingOp(OpBuilder &b, Operation *op,
                                   unsigned lanes, CompMap &map,
                                   llvm::function_ref<Comps(Value)> operand) {
  Location loc = rule.getLoc();
  auto laneType = [&](Type scalar) -> Type {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  };
  // LLVM contracts a multiply and an add depending on the code around them,
  // which differs between the two kernels: a value that is reduced must be
  // rounded alike in both, so its ops never contract (as on the CPU).
  bool contract = relaxed && !reductionSlice.contains(op);
  auto fastmath = [&] {
    return contract ? arith::FastMathFlags::contract
                    : arith::FastMathFlags::none;
  };
  // Nor do they divide by reciprocals (as on the CPU): the reduce kernel's
  // stages read lower reductions and must compute what depends on them as
  // the rule kernel does. (Only scalar divisors have one.)
  if (auto div = dyn_cast<arith::DivFOp>(op);
      div && !reductionSlice.contains(op)) {
    auto it = reciprocals.find(div.getRhs());
    if (it != reciprocals.end()) {
      Value r = it->second;
      if (lanes > 1)
        r = vector::BroadcastOp::create(b, loc, laneType(elt), r);
      Comps out;
      for (Value x : operand(div.getLhs()))
        out.push_back(arith::MulFOp::create(b, loc, x, r, fastmath()));
      map[div.getResult()] = out;
      return;
    }
  }
  if (auto draw = dyn_cast<RandomOp>(op)) {
    map[draw.getResult()] = {emitDraw(b, draw, lanes)};
    return;
  }
  if (auto ls = dyn_cast<LogSignOp>(op)) {
    // (log|g| / k, sign g) if |g| >= exp(-k), else (-1, exp(k) g), as the
    // CPU's update rules compute it (libdevice's log: learned rules take
    // the CPU's polynomial instead, emitLearned).
    auto cst = [&](double v) -> Value {
      if (lanes == 1)
        return arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, v));
      return arith::ConstantOp::create(
          b, loc,
          DenseElementsAttr::get(cast<ShapedType>(laneType(elt)),
                                 b.getFloatAttr(elt, v)));
    };
    auto mul = [&](Value x, Value y) -> Value {
      return arith::MulFOp::create(b, loc, x, y, fastmath());
    };
    LogSign f = emitLogSign(b, loc, operand(ls.getG()).front(),
                            operand(ls.getK()).front(), cst, mul);
    map[ls.getResult()] = {f.first, f.second};
    return;
  }
  // A vector.reduction's sum of components rounds as written, like the
  // arith ops of the rule (contracting only when they may).
  if (mapComponentMoves(op, map, operand, [&](Value x, Value y) -> Value {
        return arith::AddFOp::create(b, loc, x, y, fastmath());
      }))
    return;
  mapElementwise(b, op, map, operand, laneType, contract,
                 [&](Operation *op, IRMapping &opMap) -> Value {
                   // libdevice's __nv_sqrtf, what convert-gpu-to-nvvm calls,
                   // is sqrt.approx; the intrinsic is the correctly rounded
                   // sqrt.rn.
                   if (auto sqrt = dyn_cast<math::SqrtOp>(op); sqrt && !relaxed)
                     return exactSqrt(b, loc,
                                      opMap.lookup(sqrt.getOperand()));
                   return Value();
                 });
}

LogicalResult GPURuleLowering::classifyLearned() {
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    varying.insert(rule.getState(i));
  llvm::DenseSet<Value> weights;
  for (unsigned w = 0, e = rule.getNumWeights(); w < e; ++w) {
    Value weight = rule.getWeight(w);
    weights.insert(weight);
    auto type = dyn_cast<RankedTensorType>(weight.getType());
    if (!type || !type.hasStaticShape() || type.getElementType() != elt)
      return rule.emitOpError("has weights of type ")
             << weight.getType()
             << ": the GPU code generator needs static shapes of the rule's "
                "element type";
    // Every tensor starts at a multiple of kGateGroup elements: the four
    // gate weights of an lstm_cell's (unit, input) pair are one aligned
    // vector load.
    weightOffsets.push_back(llvm::alignTo(weightElements, kGateGroup));
    weightElements = weightOffsets.back() + type.getNumElements();
  }
  // The shared-memory copy (padding included) must fit the 48 KiB that a
  // kernel gets without opting in to more (which the runtime's launch does
  // not do).
  int64_t bytes = weightElements * (elt.getWidth() / 8);
  if (bytes > 48 * 1024)
    return rule.emitError("learned rule '")
           << rule.getSymName() << "' has " << bytes
           << " bytes of weights: the GPU code generator keeps them in "
              "shared memory, at most 49152 bytes (use --target=cpu, or "
              "smaller weights)";
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    bool isVarying =
        isa<LogSignOp, RandomOp>(op) ||
        llvm::any_of(op.getOperands(), [&](Value v) {
          return varying.contains(v) || weights.contains(v);
        });
    if (!isVarying)
      continue;
    auto isCoordinateValue = [&](Type t) { return isCoordinateType(t, elt); };
    bool supported = false;
    if (isa<LogSignOp, RandomOp>(op))
      supported = true;
    else if (auto cell = dyn_cast<LSTMCellOp>(op)) {
      supported = weights.contains(cell.getWeights());
      gateInterleaved.insert(cell.getWeights());
    } else if (auto lin = dyn_cast<LinearOp>(op))
      supported = weights.contains(lin.getWeights());
    else if (isComponentMove(&op))
      supported = isSupportedComponentMove(&op);
    else
      supported = op.hasTrait<OpTrait::Elementwise>() &&
                  op.getNumRegions() == 0 &&
                  llvm::all_of(op.getResultTypes(), isCoordinateValue);
    if (!supported)
      return op.emitOpError("cannot be computed per coordinate by the GPU "
                            "code generator yet");
    varyingOps.push_back(&op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  return success();
}

Value GPURuleLowering::sharedWeightIndex(OpBuilder &b, unsigned w, Value row,
                                         Value col) {
  Location loc = rule.getLoc();
  Value weight = rule.getWeight(w);
  auto shape = cast<RankedTensorType>(weight.getType()).getShape();
  auto idx = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, loc, v);
  };
  auto mulAdd = [&](Value x, int64_t y, Value z) -> Value {
    return arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, x, idx(y)), z);
  };
  if (gateInterleaved.contains(weight)) {
    // Row q * H + j of [4H, cols]: element q of group (j, col).
    int64_t hidden = shape[0] / kGateGroup;
    Value unit = arith::RemUIOp::create(b, loc, row, idx(hidden));
    Value gate = arith::DivUIOp::create(b, loc, row, idx(hidden));
    return arith::AddIOp::create(
        b, loc,
        arith::AddIOp::create(b, loc, gateGroupIndex(b, w, unit, col), gate),
        idx(weightOffsets[w]));
  }
  return arith::AddIOp::create(b, loc, mulAdd(row, shape[1], col),
                               idx(weightOffsets[w]));
}

Value GPURuleLowering::gateGroupIndex(OpBuilder &b, unsigned w, Value unit,
                                      Value col) {
  Location loc = rule.getLoc();
  auto idx = [&](int64_t v) -> Value {
    return arith::ConstantIndexOp::create(b, loc, v);
  };
  int64_t cols =
      cast<RankedTensorType>(rule.getWeight(w).getType()).getShape()[1];
  Value group = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, unit, idx(cols)), col);
  return arith::MulIOp::create(b, loc, group, idx(kGateGroup));
}

LogicalResult GPURuleLowering::emitLearned(OpBuilder &b, gpu::GPUFuncOp func,
                                           ArrayRef<Value> bases, Value stride,
                                           Value coordinate) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  unsigned align = elt.getWidth() / 8;
  Value shared = func.getWorkgroupAttributions()[0];
  Value i = arith::IndexCastOp::create(b, loc, i64, coordinate);
  drawIndex = rngChunkBase
                  ? Value(arith::AddIOp::create(b, loc, rngChunkBase, i))
                  : Value();
  auto cst = [&](double v) -> Value {
    return arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, v));
  };
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulFOp::create(b, loc, x, y);
  };

  SmallVector<Value> inputs = rule.getChunkStreams();
  llvm::DenseMap<Value, unsigned> inputIndex;
  for (auto [k, input] : llvm::enumerate(inputs))
    inputIndex[input] = k;
  // Component j of input k for this coordinate: coalesced across threads.
  auto addr = [&](unsigned k, Value j) -> Value {
    Value at = i;
    if (j)
      at = arith::AddIOp::create(b, loc, i,
                                 arith::MulIOp::create(b, loc, j, stride));
    return gep(b, elt, bases[k], at);
  };

  // Which op reads each state's old value last (the yield counts as after
  // every op when it moves a state's old value elsewhere).
  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  llvm::DenseMap<Value, unsigned> lastRead;
  for (auto [k, op] : llvm::enumerate(varyingOps))
    for (Value v : op->getOperands())
      if (inputIndex.count(v))
        lastRead[v] = k;
  for (auto [k, value] : llvm::enumerate(yield.getValues()))
    if (inputIndex.count(value) &&
        value != (k == 0 ? rule.getParam() : rule.getState(k - 1)))
      lastRead[value] = varyingOps.size();

  llvm::DenseMap<Value, Comps> map;
  // Results of lstm_cell, which live in the memory of a state (its index
  // among the inputs).
  llvm::DenseMap<Value, unsigned> inState;
  // Results of lstm_cell that cannot go straight to a state (a later op
  // changes them, or still reads the state's old value, or they are no
  // state at all), and c inputs that are in no memory: one array of the
  // thread's private memory each, indexed by hidden unit.
  llvm::DenseMap<Value, Value> inScratch;
  auto newScratch = [&](int64_t size) -> Value {
    auto type = MemRefType::get(
        {size}, elt, MemRefLayoutAttrInterface{},
        gpu::AddressSpaceAttr::get(b.getContext(),
                                   gpu::AddressSpace::Private));
    return func.addPrivateAttribution(type, loc);
  };
  llvm::SmallDenseSet<unsigned> written;
  // Loads a value's components into registers at first use. A state is
  // only read before it is overwritten (the targets of lstm_cell are chosen
  // so), and lstm_cell results are read back from the state they went to.
  auto operand = [&](Value v) -> Comps {
    auto it = map.find(v);
    if (it != map.end())
      return it->second;
    Comps comps;
    std::optional<unsigned> from;
    if (auto in = inputIndex.find(v); in != inputIndex.end())
      from = in->second;
    else if (auto st = inState.find(v); st != inState.end())
      from = st->second;
    if (from) {
      for (int64_t j = 0, e = numComponents(v.getType()); j < e; ++j)
        comps.push_back(LLVM::LoadOp::create(
            b, loc, elt, addr(*from, j ? i64Const(b, j) : Value()), align));
    } else if (auto sc = inScratch.find(v); sc != inScratch.end()) {
      for (int64_t j = 0, e = numComponents(v.getType()); j < e; ++j)
        comps.push_back(memref::LoadOp::create(
            b, loc, sc->second,
            ValueRange{arith::ConstantIndexOp::create(b, loc, j)}));
    } else {
      Value u = uniform.lookup(v);
      if (auto vec = dyn_cast<VectorType>(u.getType()))
        for (int64_t j = 0; j < vec.getNumElements(); ++j)
          comps.push_back(
              vector::ExtractOp::create(b, loc, u, ArrayRef<int64_t>{j}));
      else
        comps.push_back(u);
    }
    map[v] = comps;
    return comps;
  };
  auto weightIndex = [&](Value w) -> unsigned {
    unsigned k = 0;
    while (rule.getWeight(k) != w)
      ++k;
    return k;
  };
  // Element (r, k) of weights `w`, from the shared copy. Row r of W [in; 1]
  // (W laid out [W | b]) is the bias, then one FMA per input in order, as
  // the CPU kernel does.
  auto weight = [&](Value w, int64_t r, int64_t k) -> Value {
    return memref::LoadOp::create(
        b, loc, shared,
        sharedWeightIndex(b, weightIndex(w),
                          arith::ConstantIndexOp::create(b, loc, r),
                          arith::ConstantIndexOp::create(b, loc, k)));
  };
  for (unsigned opIndex = 0, e = varyingOps.size(); opIndex < e; ++opIndex) {
    Operation *op = varyingOps[opIndex];
    // The state that receives `result` as soon as it is computed.
    auto target = [&](Value result) -> int {
      for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s) {
        Value state = rule.getState(s);
        if (yield.getValues()[s + 1] == result && !written.count(s) &&
            (!lastRead.count(state) || lastRead[state] <= opIndex))
          return s;
      }
      return -1;
    };
    if (mapComponentMoves(op, map, operand, [&](Value x, Value y) -> Value {
          return arith::AddFOp::create(b, loc, x, y);
        }))
      continue;
    if (auto draw = dyn_cast<RandomOp>(op)) {
      map[draw.getResult()] = {emitDraw(b, draw, 1)};
      continue;
    }
    if (auto ls = dyn_cast<LogSignOp>(op)) {
      // (log|g| / k, sign g) if |g| >= exp(-k), else (-1, exp(k) g).
      LogSign f = emitLogSign(b, loc, operand(ls.getG()).front(),
                              operand(ls.getK()).front(), cst, mul);
      approximate.push_back(f.log);
      map[ls.getResult()] = {f.first, f.second};
      continue;
    }
    if (auto lin = dyn_cast<LinearOp>(op)) {
      auto shape = lin.getWeights().getType().getShape();
      int64_t rows = shape[0], cols = shape[1];
      Comps x = operand(lin.getX());
      Comps out;
      // Unrolled: the outputs stay in registers (the head has one row).
      for (int64_t r = 0; r < rows; ++r) {
        Value acc = weight(lin.getWeights(), r, cols - 1);
        for (auto [k, xk] : llvm::enumerate(x))
          acc = math::FmaOp::create(b, loc, weight(lin.getWeights(), r, k), xk,
                                    acc);
        out.push_back(acc);
      }
      map[lin.getResult()] = out;
      continue;
    }
    if (auto cell = dyn_cast<LSTMCellOp>(op)) {
      int64_t cols = cell.getWeights().getType().getShape()[1];
      int64_t hidden = numComponents(cell.getH().getType());
      int cTarget = target(cell.getCOut());
      int hTarget = target(cell.getHOut());
      // A result that cannot go to its state as it is computed goes to
      // scratch; what reads it later loads it from there.
      Value cScratch, hScratch;
      if (cTarget < 0 && !cell.getCOut().use_empty())
        cScratch = newScratch(hidden);
      if (hTarget < 0 && !cell.getHOut().use_empty())
        hScratch = newScratch(hidden);
      // c is read one component per hidden unit, from memory: a state, a
      // scratch array, or (a value in registers) one filled here.
      std::optional<unsigned> cFrom;
      Value cFromScratch;
      if (auto in = inputIndex.find(cell.getC()); in != inputIndex.end())
        cFrom = in->second;
      else if (auto st = inState.find(cell.getC()); st != inState.end())
        cFrom = st->second;
      else if (auto sc = inScratch.find(cell.getC()); sc != inScratch.end())
        cFromScratch = sc->second;
      else {
        Comps c = operand(cell.getC());
        cFromScratch = newScratch(hidden);
        for (int64_t j = 0; j < hidden; ++j)
          memref::StoreOp::create(
              b, loc, c.size() == 1 ? c[0] : c[j], cFromScratch,
              ValueRange{arith::ConstantIndexOp::create(b, loc, j)});
      }
      // x and h in registers before any component is overwritten.
      Comps in = operand(cell.getX());
      Comps h = operand(cell.getH());
      in.append(h.begin(), h.end());
      // A c read from a state in global memory is loaded one unit ahead
      // (an iteration argument): its latency then hides behind unit j's
      // FMAs instead of stalling them (on an H200, ncu counted 44% of the
      // kernel's stall cycles waiting for global loads before this).
      auto loadC = [&](Value at) -> Value {
        return LLVM::LoadOp::create(b, loc, elt, addr(*cFrom, at), align);
      };
      SmallVector<Value> cFirst;
      if (cFrom)
        cFirst.push_back(loadC(Value()));
      auto units = scf::ForOp::create(
          b, loc, arith::ConstantIndexOp::create(b, loc, 0),
          arith::ConstantIndexOp::create(b, loc, hidden),
          arith::ConstantIndexOp::create(b, loc, 1), cFirst);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(units.getBody());
        Value j = arith::IndexCastOp::create(b, loc, i64,
                                             units.getInductionVar());
        Value unit = units.getInductionVar();
        // The last unit reloads its own c (never read past the state).
        Value cNext;
        if (cFrom)
          cNext = loadC(arith::MinSIOp::create(
              b, loc, arith::AddIOp::create(b, loc, j, i64Const(b, 1)),
              i64Const(b, hidden - 1)));
        // Unit j's four gate rows (input, forget, cell, output) side by
        // side: four independent FMA chains per input. The four gate
        // weights of input k are one 16-byte aligned group of the shared
        // copy (two for f64): one vector load instead of four scalar ones,
        // as a warp issues one shared load per clock against four FMAs.
        unsigned cellWeights = weightIndex(cell.getWeights());
        Value unitGroups = arith::AddIOp::create(
            b, loc,
            gateGroupIndex(b, cellWeights, unit,
                           arith::ConstantIndexOp::create(b, loc, 0)),
            arith::ConstantIndexOp::create(b, loc,
                                           weightOffsets[cellWeights]));
        int64_t perLoad = kVectorBytes * 8 / elt.getWidth();
        auto loadType = VectorType::get({perLoad}, elt);
        auto gateWeights = [&](int64_t k) -> SmallVector<Value, 4> {
          SmallVector<Value, 4> gates;
          for (int64_t q = 0; q < kGateGroup; q += perLoad) {
            Value at = arith::AddIOp::create(
                b, loc, unitGroups,
                arith::ConstantIndexOp::create(b, loc, k * kGateGroup + q));
            Value v = vector::LoadOp::create(
                b, loc, loadType, shared, ValueRange{at},
                /*nontemporal=*/false, llvm::Align(kVectorBytes));
            for (int64_t l = 0; l < perLoad; ++l)
              gates.push_back(
                  vector::ExtractOp::create(b, loc, v, ArrayRef<int64_t>{l}));
          }
          return gates;
        };
        SmallVector<Value, 4> z = gateWeights(cols - 1);
        for (auto [k, xk] : llvm::enumerate(in)) {
          SmallVector<Value, 4> w = gateWeights(k);
          for (int64_t q = 0; q < kGateGroup; ++q)
            z[q] = math::FmaOp::create(b, loc, w[q], xk, z[q]);
        }
        Value cj = cFrom ? units.getRegionIterArgs()[0]
                         : memref::LoadOp::create(b, loc, cFromScratch,
                                                  ValueRange{unit})
                               .getResult();
        Value cNew, hNew;
        if (elt.isF32()) {
          std::tie(cNew, hNew) = lstmCellUpdate(b, loc, z, cj);
        } else {
          // f64: the CPU kernel's formulas, libdevice's exp and tanh.
          auto sigmoid = [&](Value x) -> Value {
            Value e =
                math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
            return arith::DivFOp::create(
                b, loc, cst(1.0), arith::AddFOp::create(b, loc, cst(1.0), e));
          };
          Value ig = sigmoid(z[0]), fg = sigmoid(z[1]);
          Value gg = math::TanhOp::create(b, loc, z[2]), og = sigmoid(z[3]);
          cNew = math::FmaOp::create(b, loc, fg, cj, mul(ig, gg));
          hNew = mul(og, math::TanhOp::create(b, loc, cNew));
        }
        if (cTarget >= 0)
          LLVM::StoreOp::create(b, loc, cNew, addr(rule.getStateSlot(cTarget), j), align);
        else if (cScratch)
          memref::StoreOp::create(b, loc, cNew, cScratch, ValueRange{unit});
        if (hTarget >= 0)
          LLVM::StoreOp::create(b, loc, hNew, addr(rule.getStateSlot(hTarget), j), align);
        else if (hScratch)
          memref::StoreOp::create(b, loc, hNew, hScratch, ValueRange{unit});
        if (cFrom)
          scf::YieldOp::create(b, loc, cNext);
      }
      for (auto [result, t] : {std::pair{cell.getCOut(), cTarget},
                               std::pair{cell.getHOut(), hTarget}})
        if (t >= 0) {
          written.insert(t);
          inState[result] = rule.getStateSlot(t);
        }
      if (cScratch)
        inScratch[cell.getCOut()] = cScratch;
      if (hScratch)
        inScratch[cell.getHOut()] = hScratch;
      continue;
    }
    // Elementwise arith and math: once per component; sqrt correctly
    // rounded unless relaxed.
    mapElementwise(
        b, op, map, operand, [](Type t) { return t; }, relaxed,
        [&](Operation *op, IRMapping &opMap) -> Value {
          auto sqrt = dyn_cast<math::SqrtOp>(op);
          if (!sqrt || relaxed)
            return nullptr;
          return exactSqrt(b, loc, opMap.lookup(sqrt.getOperand()));
        });
  }

  // The new parameter and the states not written yet, every value loaded
  // before the first store (a yield may swap two states).
  SmallVector<std::pair<unsigned, Comps>> outputs;
  for (auto [k, value] : llvm::enumerate(yield.getValues())) {
    Value input = k == 0 ? rule.getParam() : rule.getState(k - 1);
    if (value == input || (k && written.count(k - 1)))
      continue;
    outputs.push_back({unsigned(k), operand(value)});
  }
  for (auto &[k, comps] : outputs) {
    Value input = k == 0 ? rule.getParam() : rule.getState(k - 1);
    unsigned to = k == 0 ? 0 : rule.getStateSlot(k - 1);
    for (int64_t j = 0, e = numComponents(input.getType()); j < e; ++j)
      LLVM::StoreOp::create(b, loc, comps.size() == 1 ? comps[0] : comps[j],
                            addr(to, j ? i64Const(b, j) : Value()), align);
  }
  return success();
}

/// The log of log_sign becomes MLIR's f32 polynomial, as in the CPU kernel
/// (f64 keeps libdevice's log), so that both compute the same features.
void GPURuleLowering::approximateLog() {
  if (approximate.empty() || !elt.isF32())
    return;
  RewritePatternSet patterns(rule.getContext());
  populateMathPolynomialApproximationPatterns(patterns, [](StringRef name) {
    return name == math::LogOp::getOperationName();
  });
  GreedyRewriteConfig config;
  config.setStrictness(GreedyRewriteStrictness::ExistingOps);
  // Each pattern applies once and creates no op it matches.
  (void)applyOpPatternsGreedily(approximate, std::move(patterns), config);
}

void GPURuleLowering::loadRng(OpBuilder &b, Value rng, Value c, bool draws) {
  rngSeed = rngChunkBase = drawIndex = Value();
  if (!draws)
    return; // rng may be NULL: never read.
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  auto seed = LLVM::LoadOp::create(b, loc, i64, rng, 8);
  seed.setInvariant(true);
  auto base = LLVM::LoadOp::create(
      b, loc, i64,
      gep(b, i64, rng, arith::AddIOp::create(b, loc, c, i64Const(b, 1))), 8);
  base.setInvariant(true);
  rngSeed = seed;
  rngChunkBase = base;
}

Value GPURuleLowering::emitDraw(OpBuilder &b, RandomOp op, unsigned lanes) {
  Location loc = rule.getLoc();
  // One scalar call per lane.
  auto perLane = [&](Value x, llvm::function_ref<Value(Value)> f) -> Value {
    auto vec = dyn_cast<VectorType>(x.getType());
    if (!vec)
      return f(x);
    SmallVector<Value> out;
    for (int64_t l = 0; l < vec.getNumElements(); ++l)
      out.push_back(
          f(vector::ExtractOp::create(b, loc, x, ArrayRef<int64_t>{l})));
    return vector::FromElementsOp::create(b, loc, vec, out);
  };
  // cos(2 pi u) as libdevice's cospi(2 u): 2 u is exact, and cospi reduces
  // its argument exactly without the Payne-Hanek path (a local array) that
  // cos of an arbitrary argument needs. It differs from cos(fl(2 pi) u)
  // only by rounding (KernelABI.h allows the backends to differ so).
  auto cosTwoPi = [&](Value u) -> Value {
    StringRef name = elt.isF32() ? "__nv_cospif" : "__nv_cospi";
    // Declared as an llvm.func (libdevice is linked into the module later,
    // as for the calls that convert-gpu-to-nvvm makes).
    auto callee = gpuModule.lookupSymbol<LLVM::LLVMFuncOp>(name);
    if (!callee) {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(gpuModule.getBody());
      callee = LLVM::LLVMFuncOp::create(
          b, loc, name, LLVM::LLVMFunctionType::get(elt, {elt}));
    }
    Value two = arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 2.0));
    return perLane(u, [&](Value x) -> Value {
      return LLVM::CallOp::create(
                 b, loc, callee,
                 ValueRange{arith::MulFOp::create(b, loc, two, x)})
          .getResult();
    });
  };
  auto sqrt = [&](Value x) -> Value {
    return relaxed ? Value(math::SqrtOp::create(b, loc, x))
                   : exactSqrt(b, loc, x);
  };
  // mul.hi.u32 (with arith.muli's mul.lo.s32): from mului_extended, LLVM
  // keeps some products as 64-bit multiplies.
  auto mulHigh = [&](Value x, Value y) -> Value {
    Type i32 = b.getI32Type();
    StringAttr name = b.getStringAttr("llvm.nvvm.mulhi.ui");
    auto vec = dyn_cast<VectorType>(x.getType());
    if (!vec)
      return LLVM::CallIntrinsicOp::create(b, loc, i32, name, ValueRange{x, y})
          .getResult(0);
    SmallVector<Value> out;
    for (int64_t l = 0; l < vec.getNumElements(); ++l) {
      Value xl = vector::ExtractOp::create(b, loc, x, ArrayRef<int64_t>{l});
      Value yl = vector::ExtractOp::create(b, loc, y, ArrayRef<int64_t>{l});
      out.push_back(LLVM::CallIntrinsicOp::create(b, loc, i32, name,
                                                  ValueRange{xl, yl})
                        .getResult(0));
    }
    return vector::FromElementsOp::create(b, loc, vec, out);
  };
  return emitRandomDraw(b, loc, op.getKind(), op.getSite(), elt, rngSeed,
                        uniform.lookup(rule.getStep()), drawIndex, lanes, sqrt,
                        cosTwoPi, mulHigh);
}

void GPURuleLowering::emitUniform(OpBuilder &b, Block &entry, Value step) {
  Location loc = rule.getLoc();
  for (unsigned h = 0, e = rule.getNumHypers(); h < e; ++h) {
    BlockArgument arg = rule.getHyper(h);
    if (arg.use_empty())
      continue;
    uniform.map(
        arg, rule.getHyperConst()[h]
                 ? arith::ConstantOp::create(
                       b, loc, b.getFloatAttr(elt, rule.getHyperDefaults()[h]))
                       .getResult()
                 : Value(entry.getArgument(5 + h)));
  }
  uniform.map(rule.getStep(), step);
  // Uniform work (bias corrections), once per thread; per-chunk work waits
  // for the chunk's reduced values (emitPerChunk).
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    // Row and column reductions' results are read per coordinate.
    auto red = dyn_cast<TensorReduceOp>(op);
    if (llvm::is_contained(varyingOps, &op) ||
        llvm::is_contained(perChunkOps, &op) || (red && red.getAxis()))
      continue;
    if (auto sqrt = dyn_cast<math::SqrtOp>(op); sqrt && !relaxed)
      uniform.map(sqrt.getResult(),
                  exactSqrt(b, loc, uniform.lookup(sqrt.getOperand())));
    else
      b.clone(op, uniform);
  }
}

void GPURuleLowering::emitReciprocals(OpBuilder &b,
                                      llvm::function_ref<bool(Value)> pick) {
  Location loc = rule.getLoc();
  for (Operation *op : varyingOps)
    if (auto div = dyn_cast<arith::DivFOp>(op))
      if (!varying.contains(div.getRhs()) &&
          !isa<VectorType>(div.getRhs().getType()) && pick(div.getRhs()) &&
          !reciprocals.count(div.getRhs()))
        reciprocals[div.getRhs()] = arith::DivFOp::create(
            b, loc, arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 1.0)),
            uniform.lookup(div.getRhs()));
}

GPURuleLowering::Chunk GPURuleLowering::loadChunk(OpBuilder &b, Value ptrs,
                                                  Value lengths, Value strides,
                                                  Value begin) {
  Location loc = rule.getLoc();
  Type i64 = b.getI64Type();
  Type genericPtr = LLVM::LLVMPointerType::get(b.getContext());
  unsigned numPtrs = numChunkPtrs();
  Chunk chunk;
  Value block = arith::IndexCastOp::create(
      b, loc, i64, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x));
  chunk.index = arith::AddIOp::create(b, loc, begin, block);
  Value first = arith::MulIOp::create(b, loc, chunk.index, i64Const(b, numPtrs));
  chunk.misaligned = i64Const(b, 0);
  for (unsigned k = 0; k < numPtrs; ++k) {
    Value slot = gep(b, genericPtr, ptrs,
                     arith::AddIOp::create(b, loc, first, i64Const(b, k)));
    auto load = LLVM::LoadOp::create(b, loc, genericPtr, slot, 8);
    load.setInvariant(true);
    Value base = LLVM::AddrSpaceCastOp::create(b, loc, globalPtr, load);
    chunk.bases.push_back(base);
    chunk.misaligned = arith::OrIOp::create(
        b, loc, chunk.misaligned, LLVM::PtrToIntOp::create(b, loc, i64, base));
  }
  Value n64;
  if (axes) {
    // Four lengths per chunk: nr, nc, r0, c0 (KernelABI.h, "Axes").
    Value at = arith::MulIOp::create(b, loc, chunk.index, i64Const(b, 4));
    Value *fields[] = {&chunk.nr, &chunk.nc, &chunk.r0, &chunk.c0};
    for (auto [f, field] : llvm::enumerate(fields)) {
      auto load = LLVM::LoadOp::create(
          b, loc, i64,
          gep(b, i64, lengths,
              arith::AddIOp::create(b, loc, at, i64Const(b, f))),
          8);
      load.setInvariant(true);
      *field = load;
    }
    n64 = arith::MulIOp::create(b, loc, chunk.nr, chunk.nc);
  } else {
    auto load =
        LLVM::LoadOp::create(b, loc, i64, gep(b, i64, lengths, chunk.index), 8);
    load.setInvariant(true);
    n64 = load;
  }
  chunk.length = arith::IndexCastOp::create(b, loc, b.getIndexType(), n64);
  if (hasVectorState()) {
    auto stride =
        LLVM::LoadOp::create(b, loc, i64, gep(b, i64, strides, chunk.index), 8);
    stride.setInvariant(true);
    chunk.stride = stride;
    // Component j of a vector state is j * stride elements past its base:
    // the 128-bit loads need that offset aligned too.
    chunk.misaligned = arith::OrIOp::create(
        b, loc, chunk.misaligned,
        arith::MulIOp::create(b, loc, stride, i64Const(b, elt.getWidth() / 8)));
  }
  return chunk;
}

void GPURuleLowering::emitPerChunk(OpBuilder &b, Value reduced, Value c,
                                   const llvm::DenseSet<Operation *> *only) {
  Location loc = rule.getLoc();
  Type f64 = b.getF64Type();
  // Reduction r of chunk c is reduced[c * R + r], in double, the same for
  // every thread of the block.
  // (r counts the row and column reductions too, whose slots stay unused.)
  Value first = arith::MulIOp::create(b, loc, c, i64Const(b, reductions.size()));
  for (Operation *op : perChunkOps) {
    auto red = dyn_cast<TensorReduceOp>(op);
    if (only && !only->contains(op))
      continue;
    if (!red) {
      if (auto sqrt = dyn_cast<math::SqrtOp>(op); sqrt && !relaxed)
        uniform.map(sqrt.getResult(),
                    exactSqrt(b, loc, uniform.lookup(sqrt.getOperand())));
      else
        b.clone(*op, uniform);
      continue;
    }
    int64_t r = llvm::find(reductions, red) - reductions.begin();
    Value slot = arith::AddIOp::create(b, loc, first, i64Const(b, r));
    auto load = LLVM::LoadOp::create(b, loc, f64, gep(b, f64, reduced, slot), 8);
    load.setInvariant(true);
    Value value = load;
    if (!elt.isF64())
      value = arith::TruncFOp::create(b, loc, elt, value);
    uniform.map(red.getResult(), value);
  }
}

LogicalResult GPURuleLowering::run() {
  MLIRContext *ctx = rule.getContext();
  Location loc = rule.getLoc();
  elt = rule.getElementType();
  if (!elt || !(elt.isF32() || elt.isF64()))
    return rule.emitOpError("GPU code generation supports f32 and f64 rules");
  // The runtime computes matrix functions between the passes with the
  // module's matrix kernels (KernelABI.h, "Matrix functions on CUDA").
  bool matrixFunctions = false;
  rule.walk([&](TensorReduceOp red) {
    matrixFunctions |= red.getKind() == ReductionKind::NewtonSchulz;
  });
  // Rules with axes take the chunk table of KernelABI.h version 10.
  axes = rule.hasAxes();
  if (axes && rule.getNumWeights())
    return rule.emitOpError("has weights and row or column states or "
                            "reductions: the GPU code generator lowers them "
                            "apart only");
  // The front end allows reductions in update rules only; the learned
  // kernel has no per-chunk values.
  if (rule.getNumWeights()) {
    WalkResult reduction = rule.walk([&](TensorReduceOp red) {
      // The user's words, at the call: the op's name means nothing there.
      red.emitError("learned rule '")
          << rule.getSymName()
          << "' reduces over tensors (tensor_*/global_*), which the CUDA "
             "code generator does not do for learned rules; use "
             "--target=cpu";
      return WalkResult::interrupt();
    });
    if (reduction.wasInterrupted())
      return failure();
  }
  if (failed(classify()))
    return failure();
  globalPtr = LLVM::LLVMPointerType::get(ctx, kGlobal);

  OpBuilder b(ctx);
  b.setInsertionPointToEnd(gpuModule.getBody());
  // The reduction passes of a rule with reductions, then the rule kernel. The
  // descriptor of the reductions goes with them, in global memory, where the
  // CUDA loader reads it (cuModuleGetGlobal) to check the manifest.
  if (!reductions.empty()) {
    createReductionsDescriptor(b, rule, reductions, levels, kGlobal);
    emitReduceKernel(b);
  }
  if (matrixFunctions)
    emitMatrixKernels(b, gpuModule, elt, loc);
  b.setInsertionPointToEnd(gpuModule.getBody());
  // optim_random_<name> beside them, in global memory as the reductions'.
  createRandomDescriptor(b, rule, kGlobal);
  uniform.clear();
  reciprocals.clear();
  Type i64 = b.getI64Type();
  bool learned = rule.getNumWeights() > 0;
  // (ptrs, lengths, strides, begin, step, hyper_0 .. hyper_{H-1}
  //  [, weights_0 .. weights_{W-1}] [, reduced]).
  SmallVector<Type> argTypes = {globalPtr, globalPtr, globalPtr, i64, i64};
  for (unsigned h = 0, e = rule.getNumHypers(); h < e; ++h)
    argTypes.push_back(elt);
  SmallVector<Type> workgroup;
  if (learned) {
    for (unsigned w = 0, e = rule.getNumWeights(); w < e; ++w)
      argTypes.push_back(globalPtr);
    workgroup.push_back(MemRefType::get(
        {weightElements}, elt, MemRefLayoutAttrInterface(),
        gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup)));
  }
  if (!reductions.empty())
    argTypes.push_back(globalPtr);
  argTypes.push_back(globalPtr); // const uint64_t *rng, last (version 8).
  auto func =
      gpu::GPUFuncOp::create(b, loc, (kSymbolPrefix + rule.getSymName()).str(),
                             b.getFunctionType(argTypes, {}), workgroup);
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  // The vector loads of gate groups need a 16-byte aligned buffer; the
  // lowering gives the buffer's global this alignment.
  if (learned)
    func.setWorkgroupAttributionAttr(0, LLVM::LLVMDialect::getAlignAttrName(),
                                     b.getI64IntegerAttr(kVectorBytes));
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value ptrs = entry.getArgument(0), lengths = entry.getArgument(1);
  Value begin = entry.getArgument(3), step = entry.getArgument(4);

  emitUniform(b, entry, step);
  if (relaxed && !learned)
    emitReciprocals(b, [&](Value v) { return !perChunk.contains(v); });

  Value tid, threads;
  if (learned) {
    tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
    threads = gpu::BlockDimOp::create(b, loc, gpu::Dimension::x);
    // The block copies the weights into shared memory, consecutive threads
    // reading consecutive elements, before any thread reads them. An
    // lstm_cell's weights go to their gate-interleaved places (an
    // integer division per element, once per block).
    Value shared = func.getWorkgroupAttributions()[0];
    unsigned firstWeight = 5 + rule.getNumHypers();
    for (unsigned w = 0, e = rule.getNumWeights(); w < e; ++w) {
      Value weight = rule.getWeight(w);
      auto type = cast<RankedTensorType>(weight.getType());
      int64_t size = type.getNumElements();
      auto copy = scf::ForOp::create(
          b, loc, tid, arith::ConstantIndexOp::create(b, loc, size), threads);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(copy.getBody());
      Value k = copy.getInductionVar();
      auto v = LLVM::LoadOp::create(
          b, loc, elt,
          gep(b, elt, entry.getArgument(firstWeight + w),
              arith::IndexCastOp::create(b, loc, i64, k)),
          elt.getWidth() / 8);
      v.setInvariant(true);
      Value to;
      if (gateInterleaved.contains(weight)) {
        Value cols =
            arith::ConstantIndexOp::create(b, loc, type.getShape()[1]);
        to = sharedWeightIndex(b, w, arith::DivUIOp::create(b, loc, k, cols),
                               arith::RemUIOp::create(b, loc, k, cols));
      } else {
        to = arith::AddIOp::create(
            b, loc, k,
            arith::ConstantIndexOp::create(b, loc, weightOffsets[w]));
      }
      memref::StoreOp::create(b, loc, v, shared, ValueRange{to});
    }
    gpu::BarrierOp::create(b, loc);
  }

  // This block's chunk: its pointers (from the table in device memory, read
  // once per thread) and length.
  Chunk chunk = loadChunk(b, ptrs, lengths, entry.getArgument(2), begin);
  SmallVector<Value> bases = chunk.bases;
  Value c = chunk.index, n = chunk.length, misaligned = chunk.misaligned;
  loadRng(b, entry.getArgument(func.getNumArguments() - 1), c,
          llvm::any_of(varyingOps, [&](Operation *op) {
            return isa<RandomOp>(op) &&
                   (reductions.empty() || ruleOpSet.contains(op));
          }));
  if (!reductions.empty()) {
    emitPerChunk(b, entry.getArgument(func.getNumArguments() - 2), c);
    if (relaxed)
      emitReciprocals(b, [&](Value v) { return perChunk.contains(v); });
  }
  if (!tid) {
    tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
    threads = gpu::BlockDimOp::create(b, loc, gpu::Dimension::x);
  }
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  if (learned) {
    // A learned rule without vector states never reads the stride.
    Value stride = chunk.stride ? chunk.stride : i64Const(b, 0);
    auto loop = scf::ForOp::create(b, loc, tid, n, threads);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(loop.getBody());
      if (failed(emitLearned(b, func, bases, stride, loop.getInductionVar())))
        return failure();
    }
    gpu::ReturnOp::create(b, loc);
    rule.erase();
    approximateLog();
    return success();
  }

  // With axes a row value changes along a vector's lanes: one coordinate
  // per thread and iteration.
  unsigned lanes = axes ? 1 : std::max(1u, vectorBits / elt.getWidth());
  Value vectorEnd = zero;
  if (lanes > 1) {
    unsigned bytes = lanes * elt.getWidth() / 8;
    Value aligned = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq,
        arith::AndIOp::create(b, loc, misaligned, i64Const(b, bytes - 1)),
        i64Const(b, 0));
    Value lanesIdx = arith::ConstantIndexOp::create(b, loc, lanes);
    Value whole = arith::SubIOp::create(
        b, loc, n, arith::RemUIOp::create(b, loc, n, lanesIdx));
    vectorEnd = arith::SelectOp::create(b, loc, aligned, whole, zero);
    emitCoordinateLoop(
        b, arith::MulIOp::create(b, loc, tid, lanesIdx), vectorEnd,
        arith::MulIOp::create(b, loc, threads, lanesIdx), lanes, chunk);
  }
  emitCoordinateLoop(b, arith::AddIOp::create(b, loc, vectorEnd, tid), n,
                     threads, 1, chunk);
  gpu::ReturnOp::create(b, loc);
  rule.erase();
  return success();
}

namespace {
struct LowerRulesToGPU
    : public mlir::optim::impl::LowerRulesToGPUBase<LowerRulesToGPU> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<RuleOp> rules(module.getOps<RuleOp>());
    if (rules.empty())
      return;
    if (vectorBits != 32 && vectorBits != 64 && vectorBits != 128) {
      module.emitError("vector-bits must be 32, 64 or 128");
      return signalPassFailure();
    }
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(module.getContext()));
    auto gpuModule = module.lookupSymbol<gpu::GPUModuleOp>(kModuleName);
    if (!gpuModule) {
      OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
      gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), kModuleName);
    }
    for (RuleOp rule : rules)
      if (failed(GPURuleLowering(rule, gpuModule, vectorBits, relaxedFP).run()))
        return signalPassFailure();
  }
};
} // namespace
