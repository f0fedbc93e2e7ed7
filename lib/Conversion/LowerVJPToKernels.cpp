//===- LowerVJPToKernels.cpp - a rule's VJP to one fused CPU kernel -------===//
//
// optim-differentiate writes the reverse mode of a rule as a per-coordinate
// function (@optim_vjp_<rule>) whose weight cotangents are tensors: one
// coordinate's contribution. Here that function becomes one kernel over the
// chunk table (KernelABI.h, optim_vjp_kernel_<rule>): each coordinate
// recomputes its forward step, overwrites its cotangent buffers with the
// cotangents of its inputs, and adds its weight and hyperparameter
// contributions to per-chunk accumulators, reduced in a fixed order into the
// chunk's own slot of `partials`: the sum does not depend on which thread ran
// which chunk; the runtime adds the chunks in chunk order.
//
// A rule with R tensor reductions has two VJP functions, each of which
// becomes a kernel with one more argument, `const double *reduced`
// (KernelABI.h, "Reverse mode of rules with tensor reductions"): the
// reduced values (rho, then the cotangents u for the second kernel) are
// loaded once per chunk and broadcast to the coordinates like any other
// per-coordinate input. @optim_vjp_<rule> becomes
// optim_vjp_reduced_kernel_<rule>, whose per-coordinate cotangents of rho and
// tie indicators are summed like hyperparameter cotangents into 2R more
// partials per chunk; @optim_vjp_reductions_<rule> becomes
// optim_vjp_reductions_kernel_<rule>, a VJP kernel like the others whose
// per-coordinate cotangents of rho (what flows back to the lower levels of
// nested reductions) are summed into R more partials per chunk.
//
// Tensors never reach the kernel: a weight-cotangent tensor is a sum (addf)
// of the contributions of lstm_cell_vjp / linear_vjp ops (and zeros), so each
// of those ops accumulates straight into the slots of the weights it belongs
// to.
//
// Learned rules are compute-bound and follow the forward kernel
// (LowerRulesToKernels.cpp): blocks of four vectors of coordinates, the four
// gate rows of a hidden unit accumulated side by side, inputs read where they
// lie, the rational f32 activations (whose derivatives come from the saved
// activations), and prefetching of the next block. The backward products of
// an LSTM cell are register-tiled too:
//
//  - dIn = W^T dZ: tiles of input columns, each a set of independent
//    accumulators fed by one load of a dZ row and one broadcast weight each.
//  - dW += dZ [in; 1]^T, a reduction over coordinates: the block's dZ (lanes
//    = coordinates) is transposed in registers, width x width at a time, so
//    that a vector holds `width` gate rows of one coordinate; then every tile
//    of (row vectors x input columns) of dW is loaded from the chunk's
//    accumulator (column-major, an L1-sized buffer), updated with one FMA per
//    coordinate, row vector and column (the input broadcast), and stored
//    back. Coordinates are added in order, so the rounding depends only on
//    the chunk.
//
//===----------------------------------------------------------------------===//

#include "HeapBuffers.h"
#include "optim/Conversion/Passes.h"

#include "ChunkTable.h"
#include "Components.h"
#include "LearnedMath.h"
#include "Philox.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::optim {
#define GEN_PASS_DEF_LOWERVJPTOKERNELS
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

namespace {

/// Must match OPTIM_VJP_SYMBOL_PREFIX, OPTIM_REDUCED_VJP_SYMBOL_PREFIX and
/// OPTIM_REDUCTIONS_VJP_SYMBOL_PREFIX of KernelABI.h.
constexpr llvm::StringLiteral kSymbolPrefix = "optim_vjp_kernel_";
constexpr llvm::StringLiteral kReducedPrefix = "optim_vjp_reduced_kernel_";
constexpr llvm::StringLiteral kReductionsPrefix =
    "optim_vjp_reductions_kernel_";

/// The alignment a buffer access of `bytes` bytes at a multiple of `bytes`
/// from a 64-byte aligned base may claim: its largest power-of-two divisor,
/// at most 64 (vectors of 3 lanes are only element-aligned).
unsigned alignOf(unsigned bytes) { return std::min(64u, bytes & -bytes); }

/// How a weights tensor's gradient is accumulated within a chunk.
struct WeightAcc {
  /// Per-lane accumulators (linear_vjp): slots [laneSlot, laneSlot + size)
  /// of the lane accumulators. -1: transposed (lstm_cell_vjp).
  int64_t laneSlot = -1;
  /// Transposed: the column-major [cols][rowsPad] accumulator buffer.
  Value colMajor;
  int64_t rows = 0, cols = 0, rowsPad = 0;
};

class VJPLowering {
public:
  /// `width` lanes; the tiles of the products are sized for `registers`
  /// vector registers of `registerBytes` each.
  VJPLowering(func::FuncOp func, unsigned width, unsigned registerBytes,
              unsigned registers)
      : func(func), width(width), registerBytes(std::max(16u, registerBytes)),
        registers(std::max(8u, registers)) {}
  LogicalResult run();

private:
  LogicalResult analyze();
  LogicalResult traceWeightCotangent(Value v, unsigned slot);
  void emitCoordinateLoop(OpBuilder &b, Value lb, Value ub, unsigned lanes,
                          ArrayRef<Value> bases, Value stride, Value laneAcc);
  Value i64Const(OpBuilder &b, int64_t v) {
    return arith::ConstantIntOp::create(b, loc, v, 64);
  }
  Value gep(OpBuilder &b, Type type, Value base, Value i64Index) {
    return LLVM::GEPOp::create(b, loc, ptrType, type, base,
                               ValueRange{i64Index});
  }

  func::FuncOp func;
  unsigned width, registerBytes, registers;
  Location loc = func.getLoc();
  Type ptrType;
  FloatType elt;
  unsigned numHypers = 0, numStates = 0, numWeights = 0;
  /// Per-coordinate inputs of the rule (`input h`): constants like g, read
  /// from the chunk table after g (KernelABI.h, version 7).
  unsigned numInputs = 0;
  /// Tensor reductions of the rule (R), and whether this is the VJP through
  /// the reduced operands (optim.vjp_reductions), which takes their
  /// cotangents too: 2R per-chunk arguments instead of R.
  unsigned numReductions = 0;
  bool throughReductions = false;
  unsigned numReducedArgs() const {
    return throughReductions ? 2 * numReductions : numReductions;
  }
  /// Results per coordinate summed into partials after the hyperparameters
  /// and weights: the cotangents of rho and the tie indicators (2R) in the
  /// VJP with the reduced values held constant; the cotangents of rho that
  /// flow back from the operands of higher levels (R) in the VJP through
  /// the reduced operands.
  unsigned numReducedResults() const {
    return throughReductions ? numReductions : 2 * numReductions;
  }
  /// Their first lane slot and first partial.
  int64_t reducedSlot = 0, reducedPartial = 0;
  /// Partial sums per chunk: hyperparameters, then each weights tensor,
  /// then the reduced results.
  int64_t numPartials = 0;
  SmallVector<int64_t> weightOffset, weightSize;
  /// Per weights tensor; lane slots are hyperparameters first.
  SmallVector<WeightAcc> weightAcc;
  int64_t numLaneSlots = 0;
  /// Whether the rule has lstm_cell / linear ops: compute-bound.
  bool learned = false;
  /// Random draws (KernelABI.h, version 8): the seed rng[0] (only when the
  /// function draws), chunk c's first global index rng[1 + c], and the
  /// global index of the current loop iteration's first lane. The kernel
  /// recomputes the forward step's draws: they are constants here.
  Value rngSeed, rngChunkBase, drawIndex;

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
  BlockArgument input(unsigned i) {
    return func.getArgument(3 + numHypers + numStates + numWeights + i);
  }
  /// The cotangent of the new p (i = 0) or of new state i - 1.
  BlockArgument cotangent(unsigned i) {
    return func.getArgument(3 + numHypers + numStates + numWeights +
                            numInputs + i);
  }
  /// Per-chunk value k: rho_k, then (throughReductions) u_{k - R}.
  BlockArgument reducedArg(unsigned k) {
    return func.getArgument(3 + numHypers + 2 * numStates + numWeights +
                            numInputs + 1 + k);
  }

  llvm::DenseSet<Value> varying;
  SmallVector<Operation *> varyingOps;
  IRMapping uniform;
  /// Reduced-value arguments -> their scalar, loaded once per chunk (in the
  /// chunk loop, before the coordinate loops that broadcast it).
  // In insertion order: the broadcasts of these values are created by
  // iterating it, and the IR must not depend on pointer hashes.
  llvm::MapVector<Value, Value> perChunk;
  /// Weights arguments -> their data pointer, loaded once per call.
  llvm::DenseMap<Value, Value> weightPtrs;
  /// lstm_cell_vjp / linear_vjp ops -> the weights slot their weight
  /// cotangent is added to (absent: the contribution is unused).
  llvm::DenseMap<Operation *, unsigned> weightSlot;
  Block *funcEntry = nullptr;
  /// f32 logs of log_sign, replaced by MLIR's polynomial approximation.
  SmallVector<Operation *> approximate;
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
  auto layout = func->getAttrOfType<DenseI64ArrayAttr>(kVJPLayoutAttrName);
  if (!layout || layout.size() < 3 || layout.size() > 5)
    return func.emitOpError("has no valid optim.vjp_layout");
  numHypers = layout[0];
  numStates = layout[1];
  numWeights = layout[2];
  throughReductions = func->hasAttr(kVJPReductionsAttrName);
  if (layout.size() == 5) {
    // [H, S, W, R, I]: a rule with inputs, with or without reductions.
    numReductions = layout[3];
    numInputs = layout[4];
    if (throughReductions && numReductions == 0)
      return func.emitOpError("is marked optim.vjp_reductions but its "
                              "optim.vjp_layout counts no tensor reductions");
  } else if (layout.size() == 4) {
    numReductions = layout[3];
    if (numReductions == 0)
      return func.emitOpError("has an optim.vjp_layout that counts no "
                              "tensor reductions: without them it is "
                              "[hyperparameters, states, weights]");
  } else if (throughReductions) {
    return func.emitOpError("is marked optim.vjp_reductions but its "
                            "optim.vjp_layout counts no tensor reductions");
  }
  unsigned numArgs = 3 + numHypers + 2 * numStates + numWeights + numInputs +
                     1 + numReducedArgs();
  unsigned numResults =
      1 + numStates + numHypers + numWeights + numReducedResults();
  if (func.getNumArguments() != numArgs || func.getNumResults() != numResults)
    return func.emitOpError("signature does not match its optim.vjp_layout");
  elt = dyn_cast<FloatType>(param().getType());
  if (!elt || !(elt.isF32() || elt.isF64()))
    return func.emitOpError("CPU code generation supports f32 and f64 rules");
  // Read from the chunk table as the element type, like g.
  for (unsigned k = 0; k < numInputs; ++k)
    if (input(k).getType() != elt)
      return func.emitOpError("input ")
             << k << " must be of the element type " << elt << ", got "
             << input(k).getType();
  // The kernel reads them as doubles and rounds them to the element type.
  for (unsigned k = 0; k < numReducedArgs(); ++k)
    if (reducedArg(k).getType() != elt)
      return func.emitOpError("reduced value argument ")
             << k << " must be of the element type " << elt << ", got "
             << reducedArg(k).getType();
  for (unsigned k = 0; k < numReducedResults(); ++k) {
    Type t = func.getResultTypes()[numResults - numReducedResults() + k];
    if (t != elt)
      return func.emitOpError("result ")
             << numResults - numReducedResults() + k
             << " (a cotangent of a reduced value or a tie indicator) must "
                "be of the element type "
             << elt << ", got " << t;
  }

  numPartials = numHypers;
  for (unsigned w = 0; w < numWeights; ++w) {
    auto type = dyn_cast<RankedTensorType>(weight(w).getType());
    if (!type || !type.hasStaticShape() || type.getElementType() != elt ||
        type.getRank() != 2)
      return func.emitOpError("weights ")
             << w << " must be a static 2-d tensor";
    weightOffset.push_back(numPartials);
    weightSize.push_back(type.getNumElements());
    numPartials += type.getNumElements();
  }

  auto ret = cast<func::ReturnOp>(func.front().getTerminator());
  for (unsigned w = 0; w < numWeights; ++w)
    if (failed(traceWeightCotangent(
            ret.getOperand(1 + numStates + numHypers + w), w)))
      return failure();

  // lstm_cell_vjp contributions are accumulated transposed, linear_vjp ones
  // per lane (heads: a few weights).
  SmallVector<int> kind(numWeights, 0); // 1 transposed, 2 per lane.
  for (auto [op, slot] : weightSlot) {
    int k = isa<LSTMCellVJPOp>(op) ? 1 : 2;
    if (kind[slot] && kind[slot] != k)
      return op->emitOpError("shares its weights with another kind of op");
    kind[slot] = k;
  }
  numLaneSlots = numHypers;
  for (unsigned w = 0; w < numWeights; ++w) {
    WeightAcc acc;
    auto shape = cast<RankedTensorType>(weight(w).getType()).getShape();
    acc.rows = shape[0];
    acc.cols = shape[1];
    acc.rowsPad = (acc.rows + width - 1) / width * width;
    if (kind[w] == 2) {
      acc.laneSlot = numLaneSlots;
      numLaneSlots += weightSize[w];
    }
    weightAcc.push_back(acc);
  }
  // The cotangents of rho and the tie counts, summed like hyperparameter
  // cotangents.
  reducedSlot = numLaneSlots;
  numLaneSlots += numReducedResults();
  reducedPartial = numPartials;
  numPartials += numReducedResults();

  varying.insert(param());
  varying.insert(grad());
  for (unsigned k = 0; k < numInputs; ++k)
    varying.insert(input(k));
  for (unsigned s = 0; s < numStates; ++s)
    varying.insert(state(s));
  for (unsigned i = 0; i <= numStates; ++i)
    varying.insert(cotangent(i));
  // Reduced values change from chunk to chunk: broadcast per coordinate
  // block, and what depends on them is computed per coordinate.
  for (unsigned k = 0; k < numReducedArgs(); ++k)
    varying.insert(reducedArg(k));
  llvm::DenseSet<Value> weights;
  for (unsigned w = 0; w < numWeights; ++w)
    weights.insert(weight(w));

  for (Operation &op : func.front().without_terminator()) {
    // optim-differentiate passes reduced values as arguments; a reduction
    // inside a VJP function has nothing that would compute it.
    if (isa<TensorReduceOp>(op))
      return op.emitOpError("cannot be lowered in a VJP function: the "
                            "reduced values are its arguments (optim."
                            "vjp_layout [hyperparameters, states, weights, "
                            "reductions])");
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
    bool isVarying =
        isa<RandomOp>(op) || llvm::any_of(op.getOperands(), [&](Value v) {
          return varying.contains(v) || weights.contains(v);
        });
    if (!isVarying)
      continue;
    bool supported = false;
    if (isa<LogSignOp, LSTMCellOp, LinearOp, LSTMCellVJPOp, LinearVJPOp,
            RandomOp>(op))
      supported = true;
    else if (isComponentMove(&op))
      supported = isSupportedComponentMove(&op);
    else
      supported =
          op.hasTrait<OpTrait::Elementwise>() && op.getNumRegions() == 0;
    if (!supported)
      return op.emitOpError("cannot be computed per coordinate by the VJP "
                            "kernel generator");
    learned |= isa<LSTMCellOp, LinearOp, LSTMCellVJPOp, LinearVJPOp>(op);
    varyingOps.push_back(&op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  return success();
}

/// Transposes `rows`, n vectors of n elements: out[k][q] = rows[q][k]. For a
/// power of two n, log2(n) rounds of n two-source shuffles, each swapping
/// the off-diagonal s x s blocks of every 2s x 2s block (x86: unpck, shuf,
/// vpermt2); otherwise element by element.
static SmallVector<Value> transposeSquare(OpBuilder &b, Location loc,
                                          ArrayRef<Value> rows) {
  int64_t n = rows.size();
  SmallVector<Value> v(rows.begin(), rows.end());
  if (llvm::isPowerOf2_64(n)) {
    for (int64_t s = 1; s < n; s *= 2) {
      SmallVector<int64_t> lowMask, highMask;
      for (int64_t j = 0; j < n; ++j) {
        bool upper = j & s;
        lowMask.push_back(upper ? n + j - s : j);
        highMask.push_back(upper ? n + j : j + s);
      }
      for (int64_t q = 0; q < n; ++q) {
        if (q & s)
          continue;
        Value x = v[q], y = v[q + s];
        v[q] = vector::ShuffleOp::create(b, loc, x, y, lowMask);
        v[q + s] = vector::ShuffleOp::create(b, loc, x, y, highMask);
      }
    }
    return v;
  }
  SmallVector<Value> out;
  for (int64_t k = 0; k < n; ++k) {
    SmallVector<Value> elements;
    for (int64_t q = 0; q < n; ++q)
      elements.push_back(
          vector::ExtractOp::create(b, loc, rows[q], ArrayRef<int64_t>{k}));
    out.push_back(vector::FromElementsOp::create(
        b, loc, cast<VectorType>(rows[0].getType()), elements));
  }
  return out;
}

void VJPLowering::emitCoordinateLoop(OpBuilder &b, Value lb, Value ub,
                                     unsigned lanes, ArrayRef<Value> bases,
                                     Value stride, Value laneAcc) {
  Value stepC = arith::ConstantIndexOp::create(b, loc, lanes);
  auto loop = scf::ForOp::create(b, loc, lb, ub, stepC);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  drawIndex = rngChunkBase
                  ? Value(arith::AddIOp::create(b, loc, rngChunkBase, i))
                  : Value();
  auto typeOf = [&](unsigned n) -> Type {
    return n == 1 ? Type(elt) : VectorType::get({n}, elt);
  };
  Type valueType = typeOf(lanes);
  unsigned align = elt.getWidth() / 8;
  unsigned valueAlign = alignOf(lanes * align);
  unsigned rowAlign = alignOf(width * align);
  auto splatOf = [&](Type type, double value) -> Value {
    if (type == elt)
      return arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, value));
    return arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(cast<ShapedType>(type),
                               b.getFloatAttr(elt, value)));
  };
  auto splat = [&](double value) { return splatOf(valueType, value); };
  auto broadcastTo = [&](Type type, Value scalar) -> Value {
    if (type == scalar.getType())
      return scalar;
    return vector::BroadcastOp::create(b, loc, type, scalar);
  };
  auto broadcast = [&](Value scalar) -> Value {
    return broadcastTo(lanes == 1 ? scalar.getType()
                                  : VectorType::get({lanes}, scalar.getType()),
                       scalar);
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
  auto fma = [&](Value x, Value y, Value z) -> Value {
    return math::FmaOp::create(b, loc, x, y, z);
  };
  auto i64Of = [&](Value idx) -> Value {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), idx);
  };
  auto muli = [&](Value x, int64_t c) -> Value {
    return arith::MulIOp::create(b, loc, x, i64Const(b, c));
  };
  auto addi = [&](Value x, Value y) -> Value {
    return arith::AddIOp::create(b, loc, x, y);
  };
  auto addc = [&](Value x, int64_t c) -> Value {
    return c ? addi(x, i64Const(b, c)) : x;
  };
  auto countedLoop = [&](int64_t n, ValueRange iterArgs = {}) {
    return scf::ForOp::create(b, loc, arith::ConstantIndexOp::create(b, loc, 0),
                              arith::ConstantIndexOp::create(b, loc, n),
                              arith::ConstantIndexOp::create(b, loc, 1),
                              iterArgs);
  };
  auto loadAt = [&](Type type, Value ptr, Value eltIndex, unsigned al) {
    return LLVM::LoadOp::create(b, loc, type, gep(b, elt, ptr, eltIndex), al)
        .getResult();
  };
  auto storeAt = [&](Value v, Value ptr, Value eltIndex, unsigned al) {
    LLVM::StoreOp::create(b, loc, v, gep(b, elt, ptr, eltIndex), al);
  };

  // Stack buffers of `count` lane values (component k at element k * lanes),
  // allocated once in the entry block.
  auto buffer = [&](int64_t count) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(funcEntry);
    return LLVM::AllocaOp::create(
               b, loc, ptrType, elt,
               i64Const(b, std::max<int64_t>(count, 1) * lanes), 64)
        .getResult();
  };
  // Where the components of a per-coordinate value lie for this block:
  // component k at ptr + k * step (elements), `lanes` contiguous lanes.
  struct Segment {
    Value ptr, step;
    int64_t count;
    bool inBuffer;
  };
  auto component = [&](const Segment &seg, Value k) -> Value {
    return arith::MulIOp::create(b, loc, k, seg.step);
  };
  auto loadComp = [&](const Segment &seg, Value k, unsigned n = 0,
                      Value part = {}) -> Value {
    n = n ? n : lanes;
    Value at = component(seg, k);
    if (part)
      at = addi(at, muli(part, n));
    return loadAt(typeOf(n), seg.ptr, at,
                  seg.inBuffer ? alignOf(n * align) : align);
  };
  auto storeComp = [&](Value v, const Segment &seg, Value k, unsigned n = 0,
                       Value part = {}) {
    n = n ? n : lanes;
    Value at = component(seg, k);
    if (part)
      at = addi(at, muli(part, n));
    storeAt(v, seg.ptr, at, seg.inBuffer ? alignOf(n * align) : align);
  };
  auto bufferSegment = [&](Value buf, int64_t first, int64_t count) {
    Value ptr = first ? gep(b, elt, buf, i64Const(b, first * lanes)) : buf;
    return Segment{ptr, i64Const(b, lanes), count, true};
  };

  // Inputs p, g, the rule's inputs, states, then cotangents of p' and
  // states' (component j of a vector at base + j * stride), the order of the
  // chunk table, read where first used: loaded up front, the ~160 state and
  // cotangent vectors of a learned rule would be spilled.
  SmallVector<Value> inputs = {param(), grad()};
  for (unsigned k = 0; k < numInputs; ++k)
    inputs.push_back(input(k));
  for (unsigned s = 0; s < numStates; ++s)
    inputs.push_back(state(s));
  for (unsigned s = 0; s <= numStates; ++s)
    inputs.push_back(cotangent(s));
  llvm::DenseMap<Value, unsigned> inputIndex;
  for (auto [k, input] : llvm::enumerate(inputs))
    inputIndex[input] = k;
  llvm::DenseMap<Value, Comps> map;
  /// Per-coordinate values that a learned op left in a buffer.
  llvm::DenseMap<Value, Segment> buffered;
  auto inputSegment = [&](unsigned k) {
    return Segment{gep(b, elt, bases[k], i), stride,
                   numComponents(inputs[k].getType()), false};
  };

  // A learned rule streams ~160 state and cotangent vectors per coordinate:
  // every block fetches the next block's lines into L2 itself, a whole
  // block of compute ahead of use.
  if (learned && lanes > width) {
    int64_t lineElts = 64 / align;
    for (auto [input, base] : llvm::zip(inputs, bases)) {
      if (input.use_empty())
        continue;
      auto comps = countedLoop(numComponents(input.getType()));
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(comps.getBody());
      Value next = addi(i, arith::MulIOp::create(
                               b, loc, i64Of(comps.getInductionVar()), stride));
      for (int64_t l = 0; l < int64_t(lanes); l += lineElts)
        LLVM::Prefetch::create(b, loc, gep(b, elt, base, addc(next, lanes + l)),
                               /*rw=*/0, /*hint=*/2, /*cache=*/1);
    }
  }

  // The chunk's reduced values, the same for every coordinate.
  for (auto [arg, scalar] : perChunk)
    map[arg] = {broadcast(scalar)};

  llvm::DenseMap<Value, Comps> broadcasts;
  // Must be called at the top level of the block's body: values it loads or
  // creates are reused by later ops.
  auto operand = [&](Value v) -> Comps {
    if (varying.contains(v)) {
      auto it = map.find(v);
      if (it != map.end())
        return it->second;
      Comps comps;
      Segment seg;
      auto in = inputIndex.find(v);
      if (in != inputIndex.end())
        seg = inputSegment(in->second);
      else
        seg = buffered.lookup(v);
      for (int64_t k = 0; k < seg.count; ++k)
        comps.push_back(loadComp(seg, i64Const(b, k)));
      map[v] = comps;
      return comps;
    }
    Comps &cached = broadcasts[v];
    if (cached.empty())
      cached = spreadUniform(b, loc, uniform.lookup(v), broadcast);
    return cached;
  };
  // Copies `seg` into a new buffer with a loop (straight-line copies get
  // their loads scheduled ahead of the stores, and spilled).
  auto copyInto = [&](const Segment &seg, const Segment &dst) {
    auto copy = countedLoop(seg.count);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(copy.getBody());
    Value k = i64Of(copy.getInductionVar());
    storeComp(loadComp(seg, k), dst, k);
  };
  // The per-coordinate value v in memory.
  auto segmentOf = [&](Value v) -> Segment {
    if (varying.contains(v) && !map.count(v)) {
      auto in = inputIndex.find(v);
      if (in != inputIndex.end())
        return inputSegment(in->second);
      auto it = buffered.find(v);
      if (it != buffered.end())
        return it->second;
    }
    Comps comps = operand(v);
    Segment seg = bufferSegment(buffer(comps.size()), 0, comps.size());
    for (auto [k, c] : llvm::enumerate(comps))
      storeComp(c, seg, i64Const(b, k));
    return seg;
  };

  // Lane accumulators (hyperparameters, linear_vjp weights): acc[slot] += v.
  auto accumulate = [&](Value slot, Value v) {
    Value at = arith::MulIOp::create(b, loc, slot, i64Const(b, lanes));
    storeAt(add(loadAt(valueType, laneAcc, at, valueAlign), v), laneAcc, at,
            valueAlign);
  };

  // Elementwise work on `sub` lanes at a time: enough independent work to
  // hide the latency of the activations, few enough registers not to spill.
  unsigned subLanes = lanes % (2 * width) == 0 ? 2 * width : lanes;
  // Register budget of the tiled products: half of the registers for the
  // accumulators of W^T dz (each a vector of `lanes`), and for dW's tiles
  // nr x dwCols accumulators plus nr cotangent rows and a broadcast input
  // within the registers (32 of 64 bytes: 5 x 4 + 5 + 1; 16 of 32 bytes:
  // 2 x 4 + 2 + 1). Larger tiles spill in the inner loop.
  unsigned regsPerValue = std::max(1u, lanes * align / registerBytes);
  int64_t colTile = std::clamp<int64_t>(registers / 2 / regsPerValue, 1, 8);
  Type rowVecType = typeOf(width);
  unsigned rowRegs = std::max(1u, width * align / registerBytes);
  int64_t dwCols = 4;
  int64_t rowGroup =
      std::max<int64_t>(1, (registers - 6) / ((dwCols + 1) * rowRegs));

  // z = W [in; 1] for `lanes` coordinates, rows given: the bias first, then
  // one fused multiply-add per weight, every input load and weight
  // broadcast feeding independent chains.
  auto rowProducts = [&](Value w, int64_t cols, ArrayRef<Value> rows,
                         const Segment &in) -> SmallVector<Value> {
    SmallVector<Value> rowPtrs, acc;
    for (Value r : rows) {
      Value rowPtr = gep(b, elt, w, muli(r, cols));
      rowPtrs.push_back(rowPtr);
      acc.push_back(
          broadcast(loadAt(elt, rowPtr, i64Const(b, cols - 1), align)));
    }
    auto colLoop = countedLoop(cols - 1, acc);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(colLoop.getBody());
    Value k = i64Of(colLoop.getInductionVar());
    Value x = loadComp(in, k);
    SmallVector<Value> next;
    for (auto [rowPtr, a] : llvm::zip(rowPtrs, colLoop.getRegionIterArgs()))
      next.push_back(fma(broadcast(loadAt(elt, rowPtr, k, align)), x, a));
    scf::YieldOp::create(b, loc, next);
    b.setInsertionPointAfter(colLoop);
    return SmallVector<Value>(colLoop.getResults());
  };

  // An LSTM cell's forward pass, recomputed once per (x, h, c, W): its
  // inputs [x; h; 1] (cols components), its old c, and per hidden unit j the
  // activations (i, f, g, o, c', tanh c') at rows j + k * hidden of `act`,
  // and h' in `hOut`.
  struct Cell {
    Segment in, c, act, hOut;
  };
  llvm::DenseMap<std::tuple<Value, Value, Value, Value>, Cell> cells;
  auto cellForward = [&](Value x, Value h, Value c, Value w) -> Cell {
    auto key = std::make_tuple(x, h, c, w);
    auto it = cells.find(key);
    if (it != cells.end())
      return it->second;
    auto shape = cast<RankedTensorType>(w.getType()).getShape();
    int64_t cols = shape[1], hidden = numComponents(h.getType());
    int64_t inCount = cols - 1 - hidden;
    Segment xs = segmentOf(x), hs = segmentOf(h);
    Cell cell;
    cell.c = segmentOf(c);
    Value inBuf = buffer(cols);
    cell.in = bufferSegment(inBuf, 0, cols);
    copyInto(xs, bufferSegment(inBuf, 0, inCount));
    copyInto(hs, bufferSegment(inBuf, inCount, hidden));
    // The constant input of the bias column, for the weight gradient.
    storeComp(splat(1.0), cell.in, i64Const(b, cols - 1));
    Value actBuf = buffer(6 * hidden), hBuf = buffer(hidden), zBuf = buffer(4);
    cell.act = bufferSegment(actBuf, 0, 6 * hidden);
    cell.hOut = bufferSegment(hBuf, 0, hidden);
    Segment zs = bufferSegment(zBuf, 0, 4);
    Value wPtr = weightPtrs.lookup(w);
    auto units = countedLoop(hidden);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(units.getBody());
      Value j = i64Of(units.getInductionVar());
      SmallVector<Value> rows;
      for (int64_t q = 0; q < 4; ++q)
        rows.push_back(addc(j, q * hidden));
      // Gates in PyTorch's order: input, forget, cell, output.
      for (auto [q, z] : llvm::enumerate(rowProducts(
               wPtr, cols, rows, bufferSegment(inBuf, 0, cols - 1))))
        storeComp(z, zs, i64Const(b, q));
      auto parts = countedLoop(lanes / subLanes);
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(parts.getBody());
      Value part = i64Of(parts.getInductionVar());
      SmallVector<Value> z;
      for (int64_t q = 0; q < 4; ++q)
        z.push_back(loadComp(zs, i64Const(b, q), subLanes, part));
      Value cOld = loadComp(cell.c, j, subLanes, part);
      Value ig, fg, gg, og, cNew, tc;
      if (elt.isF32()) {
        // Every activation is a ratio P/Q; the four gates share one
        // division: 1/Qi = Qf Qg Qo / (Qi Qf Qg Qo), and so on.
        Type t = z[0].getType();
        Value half = splatOf(t, 0.5);
        auto [pi, qi] = tanhRational(b, loc, mul(z[0], half));
        auto [pf, qf] = tanhRational(b, loc, mul(z[1], half));
        auto [pg, qg] = tanhRational(b, loc, z[2]);
        auto [po, qo] = tanhRational(b, loc, mul(z[3], half));
        Value qif = mul(qi, qf), qgo = mul(qg, qo);
        Value r = arith::DivFOp::create(b, loc, splatOf(t, 1.0), mul(qif, qgo));
        Value rif = mul(r, qgo), rgo = mul(r, qif);
        Value halfRif = mul(rif, half), halfRgo = mul(rgo, half);
        ig = mul(add(pi, qi), mul(halfRif, qf));
        fg = mul(add(pf, qf), mul(halfRif, qi));
        gg = mul(pg, mul(rgo, qo));
        og = mul(add(po, qo), mul(halfRgo, qg));
        cNew = fma(fg, cOld, mul(ig, gg));
        auto [pc, qcv] = tanhRational(b, loc, cNew);
        tc = arith::DivFOp::create(b, loc, pc, qcv);
      } else {
        // The forward kernel's f64 activations (LearnedMath.h).
        ig = f64math::sigmoid(b, loc, z[0]);
        fg = f64math::sigmoid(b, loc, z[1]);
        gg = f64math::tanh(b, loc, z[2]);
        og = f64math::sigmoid(b, loc, z[3]);
        cNew = fma(fg, cOld, mul(ig, gg));
        tc = f64math::tanh(b, loc, cNew);
      }
      Value acts[] = {ig, fg, gg, og, cNew, tc};
      for (auto [q, v] : llvm::enumerate(acts))
        storeComp(v, cell.act, addc(j, q * hidden), subLanes, part);
      storeComp(mul(og, tc), cell.hOut, j, subLanes, part);
    }
    cells[key] = cell;
    return cell;
  };

  // dIn[c] = sum_r W[r][first + c] dz[r] for c < count (rows in order), in
  // tiles of columns whose accumulators are independent chains.
  auto transposedProduct = [&](Value wPtr, int64_t rows, int64_t cols,
                               const Segment &dz, int64_t first, int64_t count,
                               const Segment &out) {
    auto tile = [&](Value col0, int64_t n) {
      SmallVector<Value> init(n, splat(0.0));
      auto rowLoop = countedLoop(rows, init);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(rowLoop.getBody());
        Value r = i64Of(rowLoop.getInductionVar());
        Value d = loadComp(dz, r);
        Value rowPtr = gep(b, elt, wPtr, addi(muli(r, cols), col0));
        SmallVector<Value> next;
        for (int64_t c = 0; c < n; ++c)
          next.push_back(
              fma(broadcast(loadAt(elt, rowPtr, i64Const(b, c), align)), d,
                  rowLoop.getRegionIterArgs()[c]));
        scf::YieldOp::create(b, loc, next);
      }
      Value outCol0 = arith::SubIOp::create(b, loc, col0, i64Const(b, first));
      for (int64_t c = 0; c < n; ++c)
        storeComp(rowLoop.getResult(c), out, addc(outCol0, c));
    };
    int64_t full = count / colTile;
    if (full) {
      auto tiles = countedLoop(full);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(tiles.getBody());
      tile(addc(muli(i64Of(tiles.getInductionVar()), colTile), first), colTile);
    }
    if (count % colTile)
      tile(i64Const(b, first + full * colTile), count % colTile);
  };

  // dW (column-major accumulator [cols][rowsPad]) += dz [in; 1]^T over the
  // block's coordinates, in order. `dzT` holds, per coordinate k, its rowsPad
  // gate cotangents at k * rowsPad.
  auto weightGradient = [&](const WeightAcc &acc, Value dzT,
                            const Segment &in) {
    int64_t rowVecs = acc.rowsPad / width;
    auto tile = [&](int64_t rv0, int64_t nr, Value col0, int64_t nc) {
      SmallVector<Value> init;
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t r = 0; r < nr; ++r)
          init.push_back(
              loadAt(rowVecType, acc.colMajor,
                     addc(muli(addc(col0, c), acc.rowsPad), (rv0 + r) * width),
                     rowAlign));
      auto coords = countedLoop(lanes, init);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(coords.getBody());
        Value k = i64Of(coords.getInductionVar());
        SmallVector<Value> dz;
        for (int64_t r = 0; r < nr; ++r)
          dz.push_back(loadAt(rowVecType, dzT,
                              addc(muli(k, acc.rowsPad), (rv0 + r) * width),
                              rowAlign));
        SmallVector<Value> next;
        for (int64_t c = 0; c < nc; ++c) {
          Value x = broadcastTo(
              rowVecType,
              loadAt(elt, in.ptr, addi(muli(addc(col0, c), lanes), k), align));
          for (int64_t r = 0; r < nr; ++r)
            next.push_back(
                fma(dz[r], x, coords.getRegionIterArgs()[c * nr + r]));
        }
        scf::YieldOp::create(b, loc, next);
      }
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t r = 0; r < nr; ++r)
          storeAt(coords.getResult(c * nr + r), acc.colMajor,
                  addc(muli(addc(col0, c), acc.rowsPad), (rv0 + r) * width),
                  rowAlign);
    };
    for (int64_t rv0 = 0; rv0 < rowVecs; rv0 += rowGroup) {
      int64_t nr = std::min(rowGroup, rowVecs - rv0);
      int64_t full = acc.cols / dwCols;
      if (full) {
        auto tiles = countedLoop(full);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(tiles.getBody());
        tile(rv0, nr, muli(i64Of(tiles.getInductionVar()), dwCols), dwCols);
      }
      if (acc.cols % dwCols)
        tile(rv0, nr, i64Const(b, full * dwCols), acc.cols % dwCols);
    }
  };

  // z[r] = W[r][cols - 1] + sum_j W[r][j] in[j] (bias first, as the forward
  // kernel), in a buffer of `rows` values.
  auto affine = [&](Value ptr, int64_t rows, int64_t cols, const Segment &in) {
    Segment out = bufferSegment(buffer(rows), 0, rows);
    auto rowLoop = countedLoop(rows);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(rowLoop.getBody());
    Value r = i64Of(rowLoop.getInductionVar());
    storeComp(rowProducts(ptr, cols, {r}, in).front(), out, r);
    return out;
  };
  // linear_vjp: din[j] = sum_r W[r][j] dz[r] and, with `slot` >= 0,
  // lane accumulators acc[slot + r * cols + j] += dz[r] [in; 1][j].
  auto linearBackward = [&](Value ptr, int64_t rows, int64_t cols,
                            const Segment &in, const Segment &dz,
                            int64_t slot) {
    Segment din = bufferSegment(buffer(cols - 1), 0, cols - 1);
    transposedProduct(ptr, rows, cols, dz, 0, cols - 1, din);
    if (slot < 0)
      return din;
    auto rowLoop = countedLoop(rows);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(rowLoop.getBody());
    Value r = i64Of(rowLoop.getInductionVar());
    Value d = loadComp(dz, r);
    Value rowSlot = addc(muli(r, cols), slot);
    auto colLoop = countedLoop(cols - 1);
    {
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(colLoop.getBody());
      Value j = i64Of(colLoop.getInductionVar());
      accumulate(addi(rowSlot, j), mul(d, loadComp(in, j)));
    }
    accumulate(addc(rowSlot, cols - 1), d);
    return din;
  };

  for (Operation *op : varyingOps) {
    if (mapComponentMoves(op, map, operand, add))
      continue;
    if (auto draw = dyn_cast<RandomOp>(op)) {
      map[draw.getResult()] = {emitRandomDraw(
          b, loc, draw.getKind(), draw.getSite(), elt, rngSeed,
          uniform.lookup(step()), drawIndex, lanes)};
      continue;
    }
    if (auto ls = dyn_cast<LogSignOp>(op)) {
      // (log|g| / k, sign g) if |g| >= exp(-k), else (-1, exp(k) g).
      Value g = operand(ls.getG()).front(), k = operand(ls.getK()).front();
      // exp(+-k) once per call when k is uniform (the usual const k).
      Value expNegK, expK;
      if (!varying.contains(ls.getK())) {
        Value ku = uniform.lookup(ls.getK());
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointAfterValue(ku);
        expNegK =
            math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, ku));
        expK = math::ExpOp::create(b, loc, ku);
      }
      expNegK = expNegK ? broadcast(expNegK)
                        : math::ExpOp::create(b, loc,
                                              arith::NegFOp::create(b, loc, k));
      expK = expK ? broadcast(expK) : math::ExpOp::create(b, loc, k);
      Value absG = math::AbsFOp::create(b, loc, g);
      Value big = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGE, absG,
                                        expNegK);
      auto log = math::LogOp::create(b, loc, absG);
      if (elt.isF32() && learned)
        approximate.push_back(log);
      auto [first, second] = logSignFeatures(
          b, loc, g, big, log, k, [&] { return expK; }, splat, mul);
      map[ls.getResult()] = {first, second};
      continue;
    }
    if (auto lin = dyn_cast<LinearOp>(op)) {
      auto shape = lin.getWeights().getType().getShape();
      Segment out = affine(weightPtrs.lookup(lin.getWeights()), shape[0],
                           shape[1], segmentOf(lin.getX()));
      buffered[lin.getResult()] = out;
      continue;
    }
    if (auto cell = dyn_cast<LSTMCellOp>(op)) {
      Cell fwd =
          cellForward(cell.getX(), cell.getH(), cell.getC(), cell.getWeights());
      int64_t hidden = numComponents(cell.getH().getType());
      buffered[cell.getHOut()] = fwd.hOut;
      Segment cOut = fwd.act;
      cOut.ptr = gep(b, elt, fwd.act.ptr, i64Const(b, 4 * hidden * lanes));
      cOut.count = hidden;
      buffered[cell.getCOut()] = cOut;
      continue;
    }
    if (auto lin = dyn_cast<LinearVJPOp>(op)) {
      auto shape = lin.getWeights().getType().getShape();
      Segment in = segmentOf(lin.getX()), dy = segmentOf(lin.getDy());
      auto it = weightSlot.find(op);
      int64_t slot =
          it == weightSlot.end() ? -1 : weightAcc[it->second].laneSlot;
      buffered[lin.getDx()] =
          linearBackward(weightPtrs.lookup(lin.getWeights()), shape[0],
                         shape[1], in, dy, slot);
      continue;
    }
    if (auto vjp = dyn_cast<LSTMCellVJPOp>(op)) {
      Cell fwd =
          cellForward(vjp.getX(), vjp.getH(), vjp.getC(), vjp.getWeights());
      int64_t hidden = numComponents(vjp.getH().getType());
      auto shape = vjp.getWeights().getType().getShape();
      int64_t rows = shape[0], cols = shape[1], inCount = cols - 1 - hidden;
      int64_t rowsPad = (rows + width - 1) / width * width;
      Segment dh = segmentOf(vjp.getDhOut()), dcIn = segmentOf(vjp.getDcOut());
      Value dzBuf = buffer(rowsPad);
      Segment dz = bufferSegment(dzBuf, 0, rowsPad);
      Segment dc = bufferSegment(buffer(hidden), 0, hidden);
      for (int64_t r = rows; r < rowsPad; ++r)
        storeComp(splat(0.0), dz, i64Const(b, r));
      auto units = countedLoop(hidden);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(units.getBody());
        Value j = i64Of(units.getInductionVar());
        auto parts = countedLoop(lanes / subLanes);
        OpBuilder::InsertionGuard inner(b);
        b.setInsertionPointToStart(parts.getBody());
        Value part = i64Of(parts.getInductionVar());
        auto act = [&](int64_t q) {
          return loadComp(fwd.act, addc(j, q * hidden), subLanes, part);
        };
        Value ig = act(0), fg = act(1), gg = act(2), og = act(3), tc = act(5);
        Value one = splatOf(ig.getType(), 1.0);
        Value dhj = loadComp(dh, j, subLanes, part);
        // dc' = dc_out + dh_out o (1 - tanh^2 c')
        Value dcp = fma(mul(dhj, og), sub(one, mul(tc, tc)),
                        loadComp(dcIn, j, subLanes, part));
        auto sigmoidSlope = [&](Value s) { return mul(s, sub(one, s)); };
        Value dzs[] = {
            mul(mul(dcp, gg), sigmoidSlope(ig)),
            mul(mul(dcp, loadComp(fwd.c, j, subLanes, part)), sigmoidSlope(fg)),
            mul(mul(dcp, ig), sub(one, mul(gg, gg))),
            mul(mul(dhj, tc), sigmoidSlope(og))};
        for (auto [q, v] : llvm::enumerate(dzs))
          storeComp(v, dz, addc(j, q * hidden), subLanes, part);
        storeComp(mul(dcp, fg), dc, j, subLanes, part);
      }
      Value wPtr = weightPtrs.lookup(vjp.getWeights());
      // dIn = W^T dz for the inputs whose cotangent is used.
      Segment din = bufferSegment(buffer(cols - 1), 0, cols - 1);
      bool needX = !vjp.getDx().use_empty(), needH = !vjp.getDh().use_empty();
      if (needX && needH)
        transposedProduct(wPtr, rows, cols, dz, 0, cols - 1, din);
      else if (needX)
        transposedProduct(wPtr, rows, cols, dz, 0, inCount, din);
      else if (needH)
        transposedProduct(wPtr, rows, cols, dz, inCount, hidden,
                          bufferSegment(din.ptr, inCount, hidden));
      buffered[vjp.getDx()] = bufferSegment(din.ptr, 0, inCount);
      buffered[vjp.getDh()] = bufferSegment(din.ptr, inCount, hidden);
      buffered[vjp.getDc()] = dc;
      auto it = weightSlot.find(op);
      if (it == weightSlot.end())
        continue;
      // The block's dz transposed: coordinate k's rowsPad gate cotangents
      // at k * rowsPad. A single coordinate's dz already is.
      Value dzT = dzBuf;
      if (lanes > 1) {
        dzT = buffer(rowsPad);
        int64_t rowVecs = rowsPad / width, laneVecs = lanes / width;
        auto blocks = countedLoop(rowVecs * laneVecs);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(blocks.getBody());
        Value blk = i64Of(blocks.getInductionVar());
        Value rv = arith::DivUIOp::create(b, loc, blk, i64Const(b, laneVecs));
        Value lv = arith::RemUIOp::create(b, loc, blk, i64Const(b, laneVecs));
        Value row0 = muli(rv, width), lane0 = muli(lv, width);
        SmallVector<Value> block;
        for (int64_t q = 0; q < int64_t(width); ++q)
          block.push_back(loadAt(rowVecType, dzBuf,
                                 addi(muli(addc(row0, q), lanes), lane0),
                                 rowAlign));
        for (auto [k, v] : llvm::enumerate(transposeSquare(b, loc, block)))
          storeAt(v, dzT, addi(muli(addc(lane0, k), rowsPad), row0), rowAlign);
      }
      weightGradient(weightAcc[it->second], dzT, fwd.in);
      continue;
    }
    // Elementwise arith and math: once per component.
    mapElementwise(
        b, op, map, operand,
        [&](Type t) -> Type {
          return lanes == 1 ? t : VectorType::get({lanes}, t);
        },
        /*relaxed=*/false);
  }

  // Outputs: the cotangents of p and of each state overwrite the incoming
  // ones; hyperparameter contributions go to their accumulators. An output
  // may be an incoming cotangent itself, loaded from its buffer when first
  // used: `s = tensor_sum(x)` makes drho the incoming ds', `p = m` makes dm
  // the incoming dp'. Each is loaded here, before any store overwrites it.
  auto ret = cast<func::ReturnOp>(func.front().getTerminator());
  for (auto [i, v] : llvm::enumerate(ret.getOperands()))
    for (unsigned k = 0; k <= numStates; ++k)
      if (v == cotangent(k) && i != k)
        (void)operand(v);
  for (unsigned k = 0; k <= numStates; ++k) {
    Value v = ret.getOperand(k);
    Segment dst = inputSegment(2 + numInputs + numStates + k);
    if (v == cotangent(k))
      continue; // Passed through unchanged.
    auto it = buffered.find(v);
    if (it != buffered.end() && !map.count(v)) {
      copyInto(it->second, dst);
      continue;
    }
    Comps comps = operand(v);
    for (int64_t j = 0; j < dst.count; ++j)
      storeComp(comps.size() == 1 ? comps[0] : comps[j], dst, i64Const(b, j));
  }
  for (unsigned h = 0; h < numHypers; ++h) {
    Value v = ret.getOperand(1 + numStates + h);
    if (matchPattern(v, m_AnyZeroFloat()))
      continue;
    accumulate(i64Const(b, h), operand(v).front());
  }
  // The cotangents of rho and the tie indicators.
  unsigned firstReduced = 1 + numStates + numHypers + numWeights;
  for (unsigned k = 0; k < numReducedResults(); ++k) {
    Value v = ret.getOperand(firstReduced + k);
    if (matchPattern(v, m_AnyZeroFloat()))
      continue;
    accumulate(i64Const(b, reducedSlot + k), operand(v).front());
  }
}

LogicalResult VJPLowering::run() {
  MLIRContext *ctx = func.getContext();
  ptrType = LLVM::LLVMPointerType::get(ctx);
  if (failed(analyze()))
    return failure();
  std::string name =
      func->getAttrOfType<FlatSymbolRefAttr>(kVJPOfAttrName).getValue().str();
  StringRef prefix = !numReductions      ? kSymbolPrefix
                     : throughReductions ? kReductionsPrefix
                                         : kReducedPrefix;

  OpBuilder b(func);
  Type i64 = b.getI64Type();
  SmallVector<Type> argTypes = {ptrType, ptrType, ptrType, i64,    i64,
                                ptrType, i64,     ptrType, ptrType};
  // const double *reduced.
  if (numReductions)
    argTypes.push_back(ptrType);
  argTypes.push_back(ptrType); // const uint64_t *rng, last (version 8).
  auto fnType = b.getFunctionType(argTypes, {});
  auto kernel = func::FuncOp::create(b, loc, (prefix + name).str(), fnType);
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
  // The seed, once per call, only when the kernel draws (rng may be NULL
  // for a rule that draws nothing).
  Value rng = entry->getArguments().back();
  if (llvm::any_of(varyingOps, [](Operation *op) { return isa<RandomOp>(op); }))
    rngSeed = LLVM::LoadOp::create(b, loc, i64, rng, 8);
  for (unsigned w = 0; w < numWeights; ++w)
    weightPtrs[weight(w)] = LLVM::LoadOp::create(
        b, loc, ptrType, gep(b, ptrType, weights, i64Const(b, w)), 8);
  for (Operation &op : func.front().without_terminator())
    if (!llvm::is_contained(varyingOps, &op) &&
        llvm::none_of(op.getResultTypes(),
                      [](Type t) { return isa<TensorType>(t); }))
      b.clone(op, uniform);

  // Lane counts of the coordinate loops: learned rules take blocks of four
  // vectors first, then one vector; the tail one coordinate at a time. Each
  // has its own per-lane accumulators; the transposed weight accumulators
  // are shared by all.
  SmallVector<unsigned> laneCounts;
  if (width > 1 && learned)
    laneCounts.push_back(4 * width);
  if (width > 1)
    laneCounts.push_back(width);
  laneCounts.push_back(1);
  unsigned align = elt.getWidth() / 8;
  // Slot k's lanes at elements [k * lanes, (k + 1) * lanes), as the coordinate
  // loops address them.
  SmallVector<Value> laneAccs;
  for (unsigned lanes : laneCounts)
    laneAccs.push_back(LLVM::AllocaOp::create(
        b, loc, ptrType, elt,
        i64Const(b, std::max<int64_t>(numLaneSlots, 1) * lanes), 64));
  auto laneSlot = [&](Value acc, unsigned lanes, Value k) {
    return gep(b, elt, acc,
               arith::MulIOp::create(b, loc, k, i64Const(b, lanes)));
  };
  for (WeightAcc &acc : weightAcc)
    if (acc.laneSlot < 0)
      acc.colMajor = LLVM::AllocaOp::create(
          b, loc, ptrType, elt, i64Const(b, acc.cols * acc.rowsPad), 64);

  unsigned numPtrs = 3 + numInputs + 2 * numStates;
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
    if (rngSeed)
      rngChunkBase = LLVM::LoadOp::create(
          b, loc, i64,
          gep(b, i64, rng, arith::AddIOp::create(b, loc, c, i64Const(b, 1))),
          8);

    // Chunk c's reduced values at reduced[c * K + k] (K = R or 2R), in
    // double, rounded to the element type as the forward rule kernel does.
    if (numReductions) {
      Value reduced = entry->getArgument(9);
      Type f64 = b.getF64Type();
      Value first = arith::MulIOp::create(b, loc, c,
                                          i64Const(b, numReducedArgs()));
      for (unsigned k = 0; k < numReducedArgs(); ++k) {
        if (reducedArg(k).use_empty())
          continue;
        Value slot = arith::AddIOp::create(b, loc, first, i64Const(b, k));
        Value v =
            LLVM::LoadOp::create(b, loc, f64, gep(b, f64, reduced, slot), 8);
        if (!elt.isF64())
          v = arith::TruncFOp::create(b, loc, elt, v);
        perChunk[reducedArg(k)] = v;
      }
    }

    auto counted = [&](int64_t count, auto body) {
      auto loop =
          scf::ForOp::create(b, loc, arith::ConstantIndexOp::create(b, loc, 0),
                             arith::ConstantIndexOp::create(b, loc, count),
                             arith::ConstantIndexOp::create(b, loc, 1));
      OpBuilder::InsertionGuard inner(b);
      b.setInsertionPointToStart(loop.getBody());
      body(arith::IndexCastOp::create(b, loc, i64, loop.getInductionVar()));
    };
    Value zero = arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 0.0));
    // Zeroed per chunk.
    counted(numLaneSlots, [&](Value k) {
      for (auto [lanes, acc] : llvm::zip(laneCounts, laneAccs)) {
        Type t = lanes == 1 ? Type(elt) : VectorType::get({lanes}, elt);
        Value v =
            lanes == 1 ? zero : vector::BroadcastOp::create(b, loc, t, zero);
        LLVM::StoreOp::create(b, loc, v, laneSlot(acc, lanes, k),
                              alignOf(lanes * align));
      }
    });
    for (WeightAcc &acc : weightAcc)
      if (acc.colMajor)
        counted(acc.cols * acc.rowsPad, [&](Value k) {
          LLVM::StoreOp::create(b, loc, zero, gep(b, elt, acc.colMajor, k),
                                align);
        });

    Value nIdx = index(n);
    Value start = arith::ConstantIndexOp::create(b, loc, 0);
    for (auto [lanes, acc] : llvm::zip(laneCounts, laneAccs)) {
      Value stop = nIdx;
      if (lanes > 1)
        stop = arith::SubIOp::create(
            b, loc, nIdx,
            arith::RemUIOp::create(
                b, loc, nIdx, arith::ConstantIndexOp::create(b, loc, lanes)));
      emitCoordinateLoop(b, start, stop, lanes, bases, stride, acc);
      start = stop;
    }

    // partials[c * P + k]: lane slots sum their lanes in order, widest loop
    // first; transposed accumulators are copied back to row-major.
    Value chunkBase =
        arith::MulIOp::create(b, loc, c, i64Const(b, numPartials));
    auto partialAt = [&](Value k) {
      return gep(b, elt, partials, arith::AddIOp::create(b, loc, chunkBase, k));
    };
    auto laneSum = [&](Value k) {
      Value sum;
      for (auto [lanes, acc] : llvm::zip(laneCounts, laneAccs)) {
        Type t = lanes == 1 ? Type(elt) : VectorType::get({lanes}, elt);
        Value v = LLVM::LoadOp::create(b, loc, t, laneSlot(acc, lanes, k),
                                       alignOf(lanes * align));
        if (lanes > 1)
          v = vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD,
                                          v);
        sum = sum ? arith::AddFOp::create(b, loc, sum, v).getResult() : v;
      }
      return sum;
    };
    counted(numHypers, [&](Value k) {
      LLVM::StoreOp::create(b, loc, laneSum(k), partialAt(k), align);
    });
    counted(numReducedResults(), [&](Value k) {
      LLVM::StoreOp::create(
          b, loc,
          laneSum(arith::AddIOp::create(b, loc, k, i64Const(b, reducedSlot))),
          partialAt(
              arith::AddIOp::create(b, loc, k, i64Const(b, reducedPartial))),
          align);
    });
    for (unsigned w = 0; w < numWeights; ++w) {
      const WeightAcc &acc = weightAcc[w];
      int64_t offset = weightOffset[w];
      if (acc.laneSlot >= 0) {
        counted(weightSize[w], [&](Value k) {
          LLVM::StoreOp::create(
              b, loc,
              laneSum(
                  arith::AddIOp::create(b, loc, k, i64Const(b, acc.laneSlot))),
              partialAt(arith::AddIOp::create(b, loc, k, i64Const(b, offset))),
              align);
        });
        continue;
      }
      // Weights no contribution reaches (a colMajor of zeros otherwise).
      counted(weightSize[w], [&](Value k) {
        Value r = arith::DivUIOp::create(b, loc, k, i64Const(b, acc.cols));
        Value j = arith::RemUIOp::create(b, loc, k, i64Const(b, acc.cols));
        Value at = arith::AddIOp::create(
            b, loc, arith::MulIOp::create(b, loc, j, i64Const(b, acc.rowsPad)),
            r);
        Value v = LLVM::LoadOp::create(b, loc, elt,
                                       gep(b, elt, acc.colMajor, at), align);
        LLVM::StoreOp::create(
            b, loc, v,
            partialAt(arith::AddIOp::create(b, loc, k, i64Const(b, offset))),
            align);
      });
    }
  }
  func::ReturnOp::create(b, loc);

  // f32 logs of log_sign: MLIR's polynomial approximation, which vectorizes
  // (libm is one call per lane), as in the forward kernel.
  approximateLogs(ctx, approximate);
  return success();
}

namespace {
struct LowerVJPToKernels
    : public mlir::optim::impl::LowerVJPToKernelsBase<LowerVJPToKernels> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> vjps;
    for (auto f : module.getOps<func::FuncOp>()) {
      if (!f->hasAttr(kVJPOfAttrName))
        continue;
      if (f.isExternal()) {
        f.emitOpError("marked ") << kVJPOfAttrName << " has no body";
        return signalPassFailure();
      }
      if (f->hasAttr(kStepOfAttrName) ||
          f.getSymName().starts_with("optim_step_")) {
        f.emitOpError("is marked ")
            << kVJPOfAttrName << " but is named or marked as a step function";
        return signalPassFailure();
      }
      vjps.push_back(f);
    }
    // Erased after all are lowered: a rule's step function is shared by its
    // VJP functions.
    llvm::SetVector<Operation *> dead;
    for (func::FuncOp f : vjps) {
      if (failed(VJPLowering(f, std::max(1u, unsigned(vectorWidth)),
                             vectorRegisterBytes, vectorRegisters)
                     .run()))
        return signalPassFailure();
      // The per-coordinate step of the same rule has no use in a kernel
      // module (and its weights are tensors): drop it with the VJPs.
      auto rule = f->getAttrOfType<FlatSymbolRefAttr>(kVJPOfAttrName);
      if (auto stepFn = module.lookupSymbol<func::FuncOp>(
              ("optim_step_" + rule.getValue()).str()))
        dead.insert(stepFn);
      dead.insert(f);
    }
    for (Operation *op : dead)
      op->erase();
    for (auto f : module.getOps<func::FuncOp>())
      moveLargeBuffersToHeap(f);
  }
};
} // namespace
