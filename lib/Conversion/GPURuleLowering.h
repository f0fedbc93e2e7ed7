//===- GPURuleLowering.h - one optim.rule to its CUDA kernels ---*- C++ -*-===//
//
// A rule becomes the kernel optim_rule_<name> (LowerRulesToGPU.cpp) and,
// when it has tensor reductions, the reduction passes optim_reduce_<name>
// (ReduceKernelGPU.cpp; one launch per level of nesting, `stage`). Both take
// the chunk table as GPU rule kernels do (KernelABI.h) and must compute a
// reduced value bit for bit as the rule kernel computes it at the same
// coordinate, so they share this class: the classification of the body, the
// uniform prologue, the chunk's pointers and the mapping of one per-coordinate
// op.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_CONVERSION_GPURULELOWERING_H
#define OPTIM_LIB_CONVERSION_GPURULELOWERING_H

#include "Components.h"

#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::optim {

/// The matrix kernels of KernelABI.h ("Matrix functions on CUDA") for
/// element type `elt`, unless `gpuModule` has them (MatrixKernelsGPU.cpp).
void emitMatrixKernels(OpBuilder &b, gpu::GPUModuleOp gpuModule,
                       FloatType elt, Location loc);

class GPURuleLowering {
public:
  GPURuleLowering(RuleOp rule, gpu::GPUModuleOp gpuModule, unsigned vectorBits,
                  bool relaxed)
      : rule(rule), gpuModule(gpuModule), vectorBits(vectorBits),
        relaxed(relaxed) {}

  LogicalResult run();

private:
  LogicalResult classify();
  LogicalResult classifyLearned();
  void approximateLog();
  /// The kernel of a learned rule (weights), after the uniform work.
  LogicalResult emitLearned(OpBuilder &b, gpu::GPUFuncOp func,
                            ArrayRef<Value> bases, Value stride,
                            Value coordinate);
  /// Where element (row, col) of weights tensor `w` is in the shared copy
  /// (indices); row-major but for lstm_cell weights, whose four gate
  /// weights of (unit, col) are consecutive.
  Value sharedWeightIndex(OpBuilder &b, unsigned w, Value row, Value col);
  /// Where the four gate weights of (unit, col) of lstm_cell weights `w`
  /// start in their tensor's gate-interleaved shared copy (indices, from
  /// the tensor's offset).
  Value gateGroupIndex(OpBuilder &b, unsigned w, Value unit, Value col);
  Value i64Const(OpBuilder &b, int64_t v) {
    return arith::ConstantIntOp::create(b, rule.getLoc(), v, 64);
  }
  Value gep(OpBuilder &b, Type elt, Value base, Value i64Index) {
    return LLVM::GEPOp::create(b, rule.getLoc(), base.getType(), elt, base,
                               ValueRange{i64Index});
  }
  /// The kernel's chunk, c = begin + blockIdx.x: its index, base pointers
  /// (from the table, read once per thread), the OR of their addresses (and
  /// of the byte stride of vector states' components) and its length; the
  /// stride (i64) when the rule has a vector state.
  struct Chunk {
    Value index, misaligned, length, stride;
    SmallVector<Value> bases;
    /// Rules with axes (KernelABI.h version 10): the rectangle, i64.
    Value nr, nc, r0, c0;
  };
  Chunk loadChunk(OpBuilder &b, Value ptrs, Value lengths, Value strides,
                  Value begin);
  /// The coordinate loop over [lb, ub) with `step`, `lanes` coordinates per
  /// thread and iteration.
  void emitCoordinateLoop(OpBuilder &b, Value lb, Value ub, Value step,
                          unsigned lanes, const Chunk &chunk);
  /// Maps one varying op of an update rule to `lanes` coordinates; the
  /// reduce kernel and the rule kernel share it, so that a reduced value is
  /// computed bit for bit as the rule kernel computes it.
  /// A vector<N> value has N components (Components.h), each of `lanes`
  /// coordinates.
  void mapVaryingOp(OpBuilder &b, Operation *op, unsigned lanes, CompMap &map,
                    llvm::function_ref<Comps(Value)> operand);
  /// Reductions: what each of the two kernels computes.
  LogicalResult classifyReductions();
  /// Whether a state of the rule is a vector (components at base + i +
  /// j * stride).
  bool hasVectorState();
  /// The address of component j of chunk stream `base` at coordinate i.
  Value componentAddr(OpBuilder &b, Value base, Value i, unsigned j,
                      Value stride);
  /// Hyperparameters (arguments from `firstHyper` on), t and the uniform
  /// ops, once per thread, into `uniform`.
  void emitUniform(OpBuilder &b, Block &entry, Value step);
  /// The relaxed reciprocals of the divisors of varying divisions for which
  /// `pick` holds.
  void emitReciprocals(OpBuilder &b, llvm::function_ref<bool(Value)> pick);
  /// Loads this chunk's reduced values (reduced[c * R + r]) and computes the
  /// per-chunk ops from them; with `only`, just the ops in it (the reduce
  /// kernel's stage: the reductions of lower levels that it reads).
  void emitPerChunk(OpBuilder &b, Value reduced, Value c,
                    const llvm::DenseSet<Operation *> *only = nullptr);
  /// optim_reduce_<name> (KernelABI.h, GPU kernels of versions 6 and 9).
  void emitReduceKernel(OpBuilder &b);
  /// Stage `stage` of it: the reductions of that level of chunk `chunk`.
  void emitReduceStage(OpBuilder &b, unsigned stage, const Chunk &chunk,
                       Value tid, Value threads, Value buffer, Value partials,
                       Value reduced);

  /// Random draws (KernelABI.h, version 8): the seed rng[0] (only when the
  /// kernel draws), the chunk's first global index rng[1 + c] and the global
  /// index of the current iteration's first lane.
  Value rngSeed, rngChunkBase, drawIndex;
  /// Loads rng[0] and rng[1 + c] (`rng` the kernel's last argument) when
  /// `draws`.
  void loadRng(OpBuilder &b, Value rng, Value c, bool draws);
  /// The value of a draw for `lanes` coordinates from drawIndex on.
  Value emitDraw(OpBuilder &b, RandomOp op, unsigned lanes);

  RuleOp rule;
  gpu::GPUModuleOp gpuModule;
  unsigned vectorBits;
  bool relaxed;
  FloatType elt;
  Type globalPtr;
  llvm::DenseSet<Value> varying;
  SmallVector<Operation *> varyingOps;
  IRMapping uniform;
  llvm::DenseMap<Value, Value> reciprocals;
  /// Learned rules: the offset (in elements) of each weights tensor in the
  /// shared-memory copy, and their total.
  SmallVector<int64_t> weightOffsets;
  int64_t weightElements = 0;
  /// Learned rules: the weights of lstm_cell ops, whose shared copy is
  /// gate-interleaved (see sharedWeightIndex).
  llvm::SmallDenseSet<Value> gateInterleaved;
  /// Learned rules: the log of log_sign, replaced by MLIR's f32 polynomial
  /// as on the CPU.
  SmallVector<Operation *> approximate;
  /// Rules with tensor reductions (update rules only): the tensor_reduce ops
  /// in body order (reduction r has slot r of a chunk's partials and
  /// reduced values); the values computed once per chunk (their results and
  /// what depends on them and uniform values only) and their ops; the
  /// varying ops that the new p and states depend on (the rule kernel's) and
  /// those that the reduced values depend on (the reduce kernel's).
  SmallVector<TensorReduceOp> reductions;
  llvm::DenseSet<Value> perChunk;
  SmallVector<Operation *> perChunkOps;
  llvm::DenseSet<Operation *> ruleOpSet, reductionSlice;
  /// The level of each reduction (KernelABI.h version 9), the largest, and
  /// the ops that the reduced values of each level depend on (stage s).
  SmallVector<unsigned> levels;
  unsigned maxLevel = 0;
  SmallVector<llvm::DenseSet<Operation *>> stageSlices;

  /// Rules with row or column states or reductions (KernelABI.h version 10,
  /// "Axes"): their chunk table of rectangles, one coordinate per thread
  /// and iteration (no 128-bit path: a row value changes along the lanes).
  bool axes = false;
  /// The row and column states (indices among the states), the axis of each
  /// row or column value (those states, the results of row and column
  /// reductions) and the row and column reductions (indices into
  /// `reductions`), in the orders of the chunk table's pointers.
  SmallVector<unsigned> axisStates;
  llvm::DenseMap<Value, ValueAxis> axisOf;
  SmallVector<unsigned> axisReductionIndices;
  /// 2 + I + S pointers per chunk, and A + 2X more with axes.
  unsigned numChunkPtrs();
  /// Where `v`'s value for the coordinate at (r, j) of the chunk is read
  /// from, if it is a chunk stream (component `comp`), a row or column state
  /// or a row or column reduction's result (a double); null otherwise.
  Value streamAddr(OpBuilder &b, Value v, unsigned comp, const Chunk &chunk,
                   Value k, Value r, Value j);
  /// The components of `v` at coordinate k = r * nc + j of the chunk (r and
  /// j null without axes), loaded from where streamAddr says (`lanes`
  /// coordinates of a stream at once; row and column values are read with
  /// lanes == 1 only); empty for any other value.
  Comps loadStream(OpBuilder &b, Value v, const Chunk &chunk, Value k,
                   Value r, Value j, unsigned lanes);
  /// `accs` merged with the values reduced by `which` (indices into
  /// `reductions`, all of level `stage`) at coordinate k = r * nc + j of the
  /// chunk, in f64 (squared for norms), computed by the rule kernel's
  /// per-coordinate code.
  SmallVector<Value> stageValues(OpBuilder &b, unsigned stage,
                                 const Chunk &chunk, Value k, Value r, Value j,
                                 ArrayRef<unsigned> which, ValueRange accs);
  /// The values reduced by `which` at coordinate k = r * nc + j, in the
  /// element type, computed by the rule kernel's per-coordinate code.
  SmallVector<Value> stageInputs(OpBuilder &b, unsigned stage,
                                 const Chunk &chunk, Value k, Value r, Value j,
                                 ArrayRef<unsigned> which);
  /// Stage `stage`'s row and column reductions of a rule with axes.
  void emitAxisReductions(OpBuilder &b, unsigned stage, const Chunk &chunk,
                          Value tid, Value threads, ArrayRef<unsigned> rows,
                          ArrayRef<unsigned> cols);
  /// Stage `stage`'s matrix functions: x at every coordinate of the chunk
  /// into each one's matrix buffer (KernelABI.h version 11).
  void emitMatrixStores(OpBuilder &b, unsigned stage, const Chunk &chunk,
                        Value tid, Value threads, ArrayRef<unsigned> mats);
};

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_GPURULELOWERING_H
