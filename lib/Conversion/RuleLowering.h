//===- RuleLowering.h - one optim.rule to its CPU kernels -------*- C++ -*-===//
//
// A rule becomes the kernel optim_rule_<name> (LowerRulesToKernels.cpp) and,
// when it has tensor reductions, the reduction passes optim_reduce_<name>
// (ReduceKernel.cpp; one call per level of nesting, `stage`). Both kernels
// split the body the same way and must compute a reduced value bit for bit as
// the rule kernel would compute it at the same coordinate, so they share this
// class: the classification of the body, the per-call prologue, the lane counts
// of the coordinate loops and the mapping of one per-coordinate op to lanes.
// Rules with row and column states or reductions (version 10) iterate
// rectangles row by row in both kernels (AxisKernels.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_CONVERSION_RULELOWERING_H
#define OPTIM_LIB_CONVERSION_RULELOWERING_H

#include "Components.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::optim {

/// Classifies an op of a rule body that is not per coordinate, for the CPU
/// and GPU lowerings alike: a tensor_reduce (of the rule's element type
/// `elt`, else an error) gives a per-chunk value, and an op reading one is
/// per-chunk too; anything else is per call and left alone.
LogicalResult classifyShared(Operation &op, FloatType elt,
                             SmallVectorImpl<TensorReduceOp> &reductions,
                             llvm::DenseSet<Value> &perChunk,
                             SmallVectorImpl<Operation *> &perChunkOps);

/// Adds to `ruleOps` the varying ops that the rule's yield depends on: what
/// the rule kernel computes (a value only reductions read is the reduce
/// kernel's).
void collectRuleOps(Block &body, const llvm::DenseSet<Value> &varying,
                    llvm::DenseSet<Operation *> &ruleOps);

/// The level of each of `reductions` (getReductionLevels of `rule`, in the
/// order of `reductions`; KernelABI.h version 9).
SmallVector<unsigned> reductionLevelsOf(RuleOp rule,
                                        ArrayRef<TensorReduceOp> reductions);

/// Adds to `stageSlices[s]` the ops that the values reduced by the
/// reductions of level s depend on (what stage s of the reduce kernel
/// computes; a lower reduction is in it, its operand not: its result is read
/// from `reduced`), and to `slice` those of every level. With
/// `refuseLearned`, refuses a reduced value that depends on an lstm_cell or
/// linear. Shared by the CPU and GPU lowerings.
LogicalResult collectReductionSlices(
    ArrayRef<TensorReduceOp> reductions, ArrayRef<unsigned> levels,
    SmallVectorImpl<llvm::DenseSet<Operation *>> &stageSlices,
    llvm::DenseSet<Operation *> &slice, bool refuseLearned);

/// Whether `red` is a shape value, rows() or cols() (KernelABI.h version 11,
/// "Shape values"): the runtime fills its reduced slot before any pass, no
/// kernel computes or writes its partial, and every kernel may read it.
inline bool isShapeValue(TensorReduceOp red) {
  return red.getKind() == ReductionKind::Rows ||
         red.getKind() == ReductionKind::Cols;
}

/// The partial of no coordinate: 0, -inf or +inf (KernelABI.h, version 6).
double reductionIdentity(ReductionKind kind);
/// Creates `const char optim_reductions_<name>[]` (KernelABI.h): the rule's
/// reductions as the kernels were compiled for them ("norm,sum@global:1",
/// spelled by optim::reductionsDescriptor of optim/Rule.h), in
/// `addressSpace`, at the builder's insertion point. Loaders refuse a
/// manifest that disagrees: the kernels write and read R values per chunk,
/// and a manifest listing fewer would make the runtime's buffers too small.
/// The CPU and GPU lowerings share it.
void createReductionsDescriptor(OpBuilder &b, RuleOp rule,
                                ArrayRef<TensorReduceOp> reductions,
                                ArrayRef<unsigned> levels,
                                unsigned addressSpace);
/// Creates `const char optim_states_<name>[]` (KernelABI.h, version 10):
/// the rule's states as the kernels were compiled for them, each its
/// per-coordinate size, "@row" / "@col" for an axis state ("1,1@row,20"),
/// in `addressSpace`, at the builder's insertion point; nothing for a rule
/// without states. Library loaders refuse a manifest that disagrees: the
/// chunk table and the state buffers follow from the states.
void createStatesDescriptor(OpBuilder &b, RuleOp rule, unsigned addressSpace);
/// Combines two partials of `kind` (add, maximum or minimum); NaN
/// propagates through max and min. The CPU and GPU reduce kernels share it.
Value mergeReduction(OpBuilder &b, Location loc, ReductionKind kind,
                     Value acc, Value x);

struct ChunkView;

class RuleLowering {
public:
  /// `width` lanes, `learnedWidth` for a learned rule (0: `width`).
  RuleLowering(RuleOp rule, unsigned width, unsigned learnedWidth, bool relaxed,
               unsigned prefetchBytes)
      : rule(rule), width(width), learnedWidth(learnedWidth), relaxed(relaxed),
        prefetchBytes(prefetchBytes) {}

  LogicalResult run();

private:
  //===--- LowerRulesToKernels.cpp ---------------------------------------===//
  LogicalResult classify();
  /// Computes the reductions' levels, refuses those that the reduce kernel
  /// cannot compute and collects the ops that each of its stages computes
  /// (stageSlices, reductionSlice).
  LogicalResult checkReductions();
  void emitRuleKernel(OpBuilder &b);
  /// The vector loops of every lane count over [0, n), then the scalar tail
  /// (the rule kernel's coordinates of a chunk, or of a row of one).
  void emitLaneLoops(OpBuilder &b, Value n, ArrayRef<Value> bases,
                     Value stride);
  /// Divisions by per-chunk values multiply by their reciprocal, computed
  /// once per chunk (relaxed-fp).
  void emitPerChunkReciprocals(OpBuilder &b);
  /// Whether the rule kernel reads `input` (p, g, an input or a state) per
  /// coordinate.
  bool readByRule(Value input);
  /// Emits the per-coordinate loop over [lb, ub) with `lanes` coordinates per
  /// iteration.
  void emitCoordinateLoop(OpBuilder &b, Value lb, Value ub, unsigned lanes,
                          ArrayRef<Value> bases, Value stride,
                          bool prefetch = false);
  /// Starts a kernel: func.func `name` with the ABI's eight arguments,
  /// `extra` more and `rng` last, before the rule; loads the hyperparameters that ops for
  /// which `needed` holds use, and clones those of the uniform ops (and the
  /// reciprocals of the uniform divisors of those of the varying ones) into
  /// its entry block, where the builder is left.
  func::FuncOp beginKernel(OpBuilder &b, StringRef name, TypeRange extra,
                           llvm::function_ref<bool(Operation *)> needed);
  /// The lane counts of the coordinate loops, widest first; every chunk ends
  /// with a scalar loop after them. The reduce kernel takes the same paths
  /// as the rule kernel, so that a coordinate's values are computed by the
  /// same code in both.
  SmallVector<unsigned> laneCounts() const;
  /// Maps one per-coordinate op other than lstm_cell and linear to `lanes`
  /// coordinates: `operand` gives the components of its operands.
  void mapCoordinateOp(OpBuilder &b, Operation *op, unsigned lanes,
                       CompMap &map, llvm::function_ref<Comps(Value)> operand);
  Type laneType(Type scalar, unsigned lanes) const {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  }
  Value broadcast(OpBuilder &b, Value scalar, unsigned lanes) {
    if (lanes == 1)
      return scalar;
    return vector::BroadcastOp::create(
        b, rule.getLoc(), VectorType::get({lanes}, scalar.getType()), scalar);
  }
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

  //===--- AxisKernels.cpp -----------------------------------------------===//
  // Rules with row and column states and reductions (KernelABI.h version 10,
  // "Axes"): chunks are rectangles, iterated row by row.
  /// Records the row and column states and reductions; refuses learned ops.
  LogicalResult classifyAxes();
  /// Whether `op` is a row or column reduction or a matrix function: its
  /// result is read per coordinate from the chunk's reduced pointers, never
  /// computed.
  bool isAxisReduction(Operation *op) const {
    auto red = dyn_cast<TensorReduceOp>(op);
    return red && red.getAxis().has_value();
  }
  /// The chunk table's pointers per chunk: 2 + I + S (+ A + 2X with axes).
  unsigned numChunkPtrs();
  /// The chunk loop of the rule kernel of a rule with axes.
  void emitAxisRuleKernel(OpBuilder &b, func::FuncOp func);
  /// The chunk loop of stage `stage` of the reduce kernel of such a rule.
  void emitAxisReduceStage(OpBuilder &b, unsigned stage, Value ptrs,
                           Value lengths, Value strides, Value begin, Value end,
                           Value partials, Value reduced);
  /// Sets up `axisRow` (and the draw index base, from the chunk's
  /// `chunkRng`) for row `r` (i64) of `chunk`'s rectangle and returns the
  /// bases of the chunk streams at that row.
  SmallVector<Value> beginAxisRow(OpBuilder &b, const ChunkView &chunk, Value r,
                                  Value chunkRng);
  /// The components of a row or column value (a row or column state, the
  /// result of a row or column reduction) for the `lanes` coordinates at
  /// column `i` of the current row; empty for any other value.
  Comps loadAxisValue(OpBuilder &b, Value v, unsigned lanes, Value i);
  /// Stores the new value `comps` of row or column state `s` from the
  /// iteration at column `i` (KernelABI.h: a row's once, from column 0 of
  /// chunks with c0 == 0; a column's from the matrix's first row).
  void storeAxisState(OpBuilder &b, unsigned s, const Comps &comps,
                      unsigned lanes, Value i);
  /// Collects `rowOps`: the varying ops whose results are row values
  /// (getValueAxes) computed from row and uniform values by ops whose scalar
  /// code gives what each lane of their vector code gives (arith, sqrt,
  /// abs, copysign; not the other math functions).
  void classifyRowOps();
  bool isRowOpResult(Value v) const {
    Operation *def = v.getDefiningOp();
    return def && rowOps.contains(def);
  }
  /// The scalar components of row value `v` (a row state, a row reduction's
  /// result or a result of rowOps) in the current row: computed (or loaded)
  /// once per row, before `rowAnchor`, when first read, and reused by every
  /// lane loop of both kernels, so that every coordinate of the row (and
  /// the row state's stored value) sees the one value.
  Comps rowValue(OpBuilder &b, Value v);
  Comps broadcastRow(OpBuilder &b, const Comps &comps, unsigned lanes) {
    Comps out;
    for (Value x : comps)
      out.push_back(broadcast(b, x, lanes));
    return out;
  }

  //===--- ReduceKernel.cpp ----------------------------------------------===//
  /// Emits optim_reduce_<name> (KernelABI.h, versions 6 and 9).
  void emitReduceKernel(OpBuilder &b);
  /// A chunk's reduced values (reduced[first + r], first = c * R, in
  /// double, rounded to the element type) and what is computed from them
  /// alone, in body order, mapped in `uniform`: the rule kernel's, or
  /// (`slice`) only those of a reduce stage's slice, computed alike.
  void emitPerChunk(OpBuilder &b, Value reduced, Value first,
                    const llvm::DenseSet<Operation *> *slice = nullptr);
  /// The chunk loop of stage `stage` of the reduce kernel over [begin, end).
  void emitReduceStage(OpBuilder &b, unsigned stage, Value ptrs, Value lengths,
                       Value strides, Value begin, Value end, Value partials,
                       Value reduced);
  /// The constant optim_reductions_<name> (KernelABI.h).
  void emitReductionsDescriptor(OpBuilder &b);
  /// The loop over [lb, ub) that accumulates the values of the reductions
  /// `which` (indices into `reductions`, all of level `stage`) of `lanes`
  /// coordinates into `init` (one f64 accumulator of `lanes` lanes per
  /// reduction); returns the accumulators after it.
  /// `colPartials` (rules with axes): column reductions and the pointer to
  /// the chunk's partials of each, merged in memory at the iteration's
  /// columns (load, merge, store). `matrixValues`: matrix functions and the
  /// pointer (element type) to the current row of each one's matrix
  /// buffer, where the iteration's operand values are stored.
  SmallVector<Value>
  emitReduceLoop(OpBuilder &b, Value lb, Value ub, unsigned lanes,
                 ArrayRef<Value> bases, Value stride, ValueRange init,
                 unsigned stage, ArrayRef<unsigned> which,
                 ArrayRef<std::pair<unsigned, Value>> colPartials = {},
                 ArrayRef<std::pair<unsigned, Value>> matrixValues = {});

  RuleOp rule;
  unsigned width, learnedWidth;
  /// Relaxed rounding (relaxed-fp).
  bool relaxed;
  /// How far ahead update rules prefetch their streams (prefetch-distance).
  unsigned prefetchBytes;
  Type ptrType;
  FloatType elt;
  /// Values computed per coordinate (from p, g, the inputs, the state or the
  /// weights),
  /// and the ops computing them, in body order.
  llvm::DenseSet<Value> varying;
  SmallVector<Operation *> varyingOps;
  /// Those of varyingOps that the new p and states depend on: what the rule
  /// kernel computes per coordinate.
  SmallVector<Operation *> ruleOps;
  llvm::DenseSet<Operation *> ruleOpSet;
  /// Values computed once per chunk: the results of tensor reductions and
  /// what is computed from them and uniform values only; the ops computing
  /// them, in body order. Every other value is uniform (once per call).
  llvm::DenseSet<Value> perChunk;
  SmallVector<Operation *> perChunkOps;
  /// The rule's tensor_reduce ops in body order: reduction r has slot r of
  /// each chunk's reduced values and partials.
  SmallVector<TensorReduceOp> reductions;
  /// The level of each reduction (KernelABI.h version 9), and the largest.
  SmallVector<unsigned> levels;
  unsigned maxLevel = 0;
  /// The ops (uniform, per-chunk and varying) that the values reduced by
  /// `reductions` depend on: what the reduce kernel computes; and those of
  /// the reductions of each level (stage s of the reduce kernel).
  llvm::DenseSet<Operation *> reductionSlice;
  SmallVector<llvm::DenseSet<Operation *>> stageSlices;

  // The kernel being emitted (each kernel starts them anew, beginKernel).
  /// Uniform and per-chunk rule values -> their scalar value in the kernel.
  IRMapping uniform;
  /// Uniform (or per-chunk) divisors of varying divisions -> their
  /// reciprocal (when `relaxed`), computed once per call (or chunk).
  llvm::DenseMap<Value, Value> reciprocals;
  /// Weights tensors -> the pointer to their data, loaded once per call.
  llvm::DenseMap<Value, Value> weightPtrs;
  /// The kernel's entry block, where stack buffers are allocated.
  Block *funcEntry = nullptr;
  /// Random draws (optim.random; KernelABI.h, version 8): the kernel's `rng`
  /// argument (its last), the seed rng[0] (loaded once per call, only when
  /// the kernel draws), the chunk's first global index rng[1 + c] (once per
  /// chunk) and the global index of the current iteration's first lane.
  Value rngArg, rngSeed, rngChunkBase, drawIndex;
  /// Loads rng[1 + c] when the kernel draws.
  void loadRngChunkBase(OpBuilder &b, Value c);
  /// drawIndex for the loop iteration at chunk offset `i` (i64).
  void setDrawIndex(OpBuilder &b, Value i) {
    drawIndex = rngChunkBase
                    ? Value(arith::AddIOp::create(b, rule.getLoc(),
                                                  rngChunkBase, i))
                    : Value();
  }

  /// Rules with axes (KernelABI.h version 10): whether the rule has any,
  /// its row and column states (indices, declaration order: A of them, whose
  /// next buffers follow the states in the chunk table) and the indices into
  /// `reductions` of its row and column reductions and matrix functions
  /// (body order: X of them, partials and reduced pointers after the next
  /// buffers; a matrix function's pair both address its matrix buffer, in
  /// the element type, KernelABI.h version 11).
  bool axes = false;
  SmallVector<unsigned> axisStates;
  SmallVector<unsigned> axisReductionIndices;
  /// Row or Col, for the row and column states and reductions' results;
  /// Coordinate for matrix functions' results (read per coordinate from
  /// their buffer).
  llvm::DenseMap<Value, ValueAxis> axisOf;
  /// The row being emitted: where each row or column value is read (a row
  /// value at [0], a column value and a matrix function's result at
  /// [column]; elements of the rule's type for states and matrix functions,
  /// doubles for reductions), where each row or column state's
  /// new value goes (next buffers, by index into axisStates, offset alike)
  /// and when (i1: c0 == 0 for row states, r0 + r == 0 for column states).
  struct AxisRow {
    llvm::DenseMap<Value, Value> ptr;
    SmallVector<Value> next;
    Value writeRows, writeCols;
  } axisRow;
  /// See classifyRowOps; rowValues holds the current row's scalars, computed
  /// before rowAnchor (the row's last setup op, before its column loops;
  /// null outside rows of rules with axes: nothing is hoisted).
  llvm::DenseSet<Operation *> rowOps;
  llvm::DenseMap<Value, Comps> rowValues;
  Operation *rowAnchor = nullptr;

  /// The log of log_sign in learned rules, to be replaced by a polynomial
  /// approximation; never the rule's own math ops.
  SmallVector<Operation *> approximate;
  /// Whether the rule has lstm_cell or linear ops: compute-bound.
  bool learned = false;
};

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_RULELOWERING_H
