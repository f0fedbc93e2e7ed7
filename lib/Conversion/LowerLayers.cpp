//===- LowerLayers.cpp - optim.layer to data functions and their VJP -----===//
//
// A layer's body computes the operands of one optim.qp from its inputs (per
// batch element) and weights (shared), and returns results of the qp. The
// solve itself is the runtime's (KernelABI.h, optim_qp_*); what is compiled
// is the data: two functions with the ABI of KernelABI.h,
//
//   optim_layer_<name>_data:  inputs, weights -> the qp's operands
//   optim_layer_<name>_vjp:   the operands' cotangents -> the inputs' and
//                             weights' cotangents
//
// Each element of an operand is computed by evaluating its expression at
// that element's index, and each element of a cotangent by summing, over the
// uses of the value, the use's contribution at that index. Nothing is
// materialized between ops: a layer's data expressions are short (Q = 0.1 I,
// q = -puzzle, b = A exp(log_z0)), and an element of a matrix-vector product
// is a loop over its row. An operand that does not depend on the inputs is
// computed once per call ("shared"); the rest once per batch element.
//
//===----------------------------------------------------------------------===//

#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimOps.h"

#include "optim/QPBlock.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseSet.h"

#include <array>

namespace mlir::optim {
#define GEN_PASS_DEF_LOWERLAYERS
#define GEN_PASS_DEF_LOWERLAYERSTOGPU
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

QPOp mlir::optim::findCompilableQP(LayerOp layer) {
  Block &body = layer.getBodyBlock();
  QPOp qp;
  for (Operation &op : body.without_terminator()) {
    if (auto q = dyn_cast<QPOp>(op)) {
      if (qp) {
        emitError(q.getLoc(), "a layer solves one qp; this is a second "
                              "(compose two layers instead)");
        return {};
      }
      qp = q;
    }
  }
  if (!qp) {
    emitError(layer.getLoc(), "layer '")
        << layer.getSymName()
        << "' solves no qp: a compiled layer's outputs are the results of "
           "one qp(...)";
    return {};
  }
  for (Value v : body.getTerminator()->getOperands())
    if (v.getDefiningOp() != qp.getOperation()) {
      // At the output's computation (the source line that made it), not
      // the layer's name.
      Location at = v.getDefiningOp() ? v.getDefiningOp()->getLoc()
                                      : body.getTerminator()->getLoc();
      emitError(at, "every output of a layer must be a result of its qp "
                    "(z, nu or lam), not a value computed from them");
      return {};
    }
  return qp;
}

namespace {

/// Must match OPTIM_LAYER_SYMBOL_PREFIX and the suffixes of KernelABI.h.
constexpr llvm::StringLiteral kPrefix = "optim_layer_";
/// The GPU kernels' module (as optim-lower-rules-to-gpu's) and the block
/// solver linked from bitcode (lib/Device/QPBlockNVPTX.cpp).
constexpr llvm::StringLiteral kGPUModuleName = "optim_kernels";
constexpr llvm::StringLiteral kSolveSymbol = "optim_qp_block_solve";
constexpr llvm::StringLiteral kBackwardSymbol = "optim_qp_block_backward";

class LayerLowering {
public:
  explicit LayerLowering(LayerOp layer) : layer(layer) {}
  LogicalResult run();
  /// The CUDA kernel of the layer (optim-lower-layers-to-gpu) in `module`.
  LogicalResult runGPU(gpu::GPUModuleOp module, int64_t threads,
                       int64_t sharedBytes);

private:
  LogicalResult check();
  void emitData(OpBuilder &b);
  void emitVJP(OpBuilder &b);
  void emitGPUKernel(gpu::GPUModuleOp module, int64_t threads,
                     int64_t sharedBytes);
  /// The backward kernels: _qp_grad (the solver's backward, a block per
  /// problem), _qp_reduce (shared operands' cotangents summed over the
  /// batch), _qp_vjp (the layer's VJP, elements over the whole grid).
  void emitGPUBackward(gpu::GPUModuleOp module, int64_t threads,
                       int64_t sharedBytes);
  /// The qp's sizes (n unknowns, m equalities, p inequalities) and the
  /// layout of its GPU kernels' workspace for them.
  struct GPUSizes {
    int64_t n, m, p;
    ::optim::qpblock::KernelLayout layout;
  };
  GPUSizes gpuSizes(int64_t threads, int64_t sharedBytes) {
    GPUSizes s;
    s.n = shapeOf(qp.getQvec())[0];
    s.m = qp.getB() ? shapeOf(qp.getB())[0] : 0;
    s.p = qp.getH() ? shapeOf(qp.getH())[0] : 0;
    s.layout = ::optim::qpblock::kernelLayout(s.n, s.m, s.p,
                                              bool(qp.getQmat()), threads,
                                              sharedBytes);
    return s;
  }

  /// The value of tensor `v` at `idx` (index values, one per dimension) for
  /// batch element `e` (an index; null where `v` is shared). A scalar (an
  /// element `x[k]`, constants, arithmetic on them) has an empty `idx`.
  Value at(OpBuilder &b, Value v, ValueRange idx, Value e);
  /// The positions of a tensor.extract (constants, as the front end
  /// writes `x[k]`), as index values of the function being emitted.
  SmallVector<Value> extractPositions(OpBuilder &b, tensor::ExtractOp op);
  /// The cotangent of tensor `v` at `idx` for batch element `e` (null for a
  /// shared value: then summed over the batch where a batched use needs it).
  Value adjoint(OpBuilder &b, Value v, ValueRange idx, Value e);
  /// The contribution of one use (operand `use` of its owner) of a value to
  /// the value's cotangent at `idx`, for batch element `e` (not null when
  /// the owner is batched).
  Value contribution(OpBuilder &b, OpOperand &use, ValueRange idx, Value e);

  Value load(OpBuilder &b, Value base, Value linear) {
    Value p =
        LLVM::GEPOp::create(b, loc, ptrType, elt, base, ValueRange{linear});
    return LLVM::LoadOp::create(b, loc, elt, p);
  }
  void store(OpBuilder &b, Value v, Value base, Value linear) {
    Value p =
        LLVM::GEPOp::create(b, loc, ptrType, elt, base, ValueRange{linear});
    LLVM::StoreOp::create(b, loc, v, p);
  }
  /// Row-major linear index (i64) of `idx` in `shape`, plus `e * size`.
  Value linear(OpBuilder &b, ArrayRef<int64_t> shape, ValueRange idx, Value e);
  Value cst(OpBuilder &b, double v) {
    return arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, v));
  }
  Value idxCst(OpBuilder &b, int64_t v) {
    return arith::ConstantIndexOp::create(b, loc, v);
  }
  /// Loops over every index of `shape` (and over the batch when `batch` is
  /// given), calling body(idx, e).
  void forEach(OpBuilder &b, ArrayRef<int64_t> shape, Value batch,
               function_ref<void(OpBuilder &, ValueRange, Value)> body);
  /// The row-major index (index values) of linear position `rest` in
  /// `shape`; `rest` is left holding what is beyond the shape (the batch
  /// element of a batched loop).
  SmallVector<Value> delinearize(OpBuilder &b, ArrayRef<int64_t> shape,
                                 Value &rest) {
    SmallVector<Value> idx(shape.size());
    for (int d = int(shape.size()) - 1; d >= 0; --d) {
      Value dim = idxCst(b, shape[d]);
      idx[d] = arith::RemUIOp::create(b, loc, rest, dim);
      rest = arith::DivUIOp::create(b, loc, rest, dim);
    }
    return idx;
  }
  /// sum_{i < n} f(i), as an scf.for with an accumulator.
  Value sum(OpBuilder &b, Value n, function_ref<Value(OpBuilder &, Value)> f);
  /// A pointer loaded from entry `i` of an array of pointers.
  Value pointer(OpBuilder &b, Value array, int64_t i) {
    Value p = LLVM::GEPOp::create(b, loc, ptrType, ptrType, array,
                                  ArrayRef<LLVM::GEPArg>{int32_t(i)});
    return LLVM::LoadOp::create(b, loc, ptrType, p);
  }
  bool isBatched(Value v) const { return batched.contains(v); }
  /// `idx` for a tensor operand of an elementwise op, none for a scalar one.
  static ValueRange indexOf(Value operand, ValueRange idx) {
    return isa<RankedTensorType>(operand.getType()) ? idx : ValueRange{};
  }
  static ArrayRef<int64_t> shapeOf(Value v) {
    return cast<RankedTensorType>(v.getType()).getShape();
  }

  LayerOp layer;
  Location loc = layer.getLoc();
  QPOp qp;
  Type ptrType;
  FloatType elt;
  /// Values that depend on the layer's inputs.
  llvm::DenseSet<Value> batched;
  /// In the function being emitted: pointers to the inputs, the weights, the
  /// qp operands' data or cotangents (by operand number of the qp); the
  /// batch size (index).
  SmallVector<Value> inputPtrs, weightPtrs;
  DenseMap<unsigned, Value> operandPtrs;
  /// The GPU VJP's operand cotangents: float64, batched ones of element e
  /// at dops + e * dataDoubles + offset, shared ones at dshared + offset
  /// (offsets of optim::qpblock::kernelLayout, by qp operand number).
  Value gpuDops, gpuDshared;
  int64_t gpuDataDoubles = 0;
  DenseMap<unsigned, int64_t> gpuOffsets;
  Value batchSize;
  bool hadError = false;
};

LogicalResult LayerLowering::check() {
  Block &body = layer.getBodyBlock();
  qp = findCompilableQP(layer);
  if (!qp)
    return failure();
  elt = dyn_cast<FloatType>(getElementTypeOrSelf(qp.getQvec().getType()));
  if (!elt || !(elt.isF32() || elt.isF64()))
    return qp.emitOpError("optim-lower-layers: only f32 and f64 layers");
  // Inputs make values batched; so does anything computed from them.
  for (unsigned i = 0; i < layer.getNumInputs(); ++i)
    batched.insert(layer.getInput(i));
  for (Operation &op : body.without_terminator())
    if (llvm::any_of(op.getOperands(),
                     [&](Value v) { return batched.contains(v); }))
      for (Value r : op.getResults())
        batched.insert(r);
  return success();
}

Value LayerLowering::linear(OpBuilder &b, ArrayRef<int64_t> shape,
                            ValueRange idx, Value e) {
  Value lin = idxCst(b, 0);
  for (auto [d, i] : llvm::zip(shape, idx))
    lin = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, lin, idxCst(b, d)), i);
  if (e) {
    int64_t size = 1;
    for (int64_t d : shape)
      size *= d;
    lin = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, e, idxCst(b, size)), lin);
  }
  return arith::IndexCastOp::create(b, loc, b.getI64Type(), lin);
}

void LayerLowering::forEach(
    OpBuilder &b, ArrayRef<int64_t> shape, Value batch,
    function_ref<void(OpBuilder &, ValueRange, Value)> body) {
  SmallVector<Value> ubs;
  if (batch)
    ubs.push_back(batch);
  for (int64_t d : shape)
    ubs.push_back(idxCst(b, d));
  SmallVector<Value> ivs;
  std::function<void(OpBuilder &, unsigned)> nest = [&](OpBuilder &ob,
                                                        unsigned k) {
    if (k == ubs.size()) {
      ValueRange all(ivs);
      body(ob, batch ? all.drop_front() : all, batch ? ivs[0] : Value());
      return;
    }
    auto loop =
        scf::ForOp::create(ob, loc, idxCst(ob, 0), ubs[k], idxCst(ob, 1));
    OpBuilder inner = OpBuilder::atBlockBegin(loop.getBody());
    inner.setInsertionPoint(loop.getBody()->getTerminator());
    ivs.push_back(loop.getInductionVar());
    nest(inner, k + 1);
    ivs.pop_back();
  };
  nest(b, 0);
}

Value LayerLowering::sum(OpBuilder &b, Value n,
                         function_ref<Value(OpBuilder &, Value)> f) {
  auto loop = scf::ForOp::create(b, loc, idxCst(b, 0), n, idxCst(b, 1),
                                 ValueRange{cst(b, 0.0)});
  OpBuilder inner = OpBuilder::atBlockBegin(loop.getBody());
  Value term = f(inner, loop.getInductionVar());
  Value acc =
      arith::AddFOp::create(inner, loc, loop.getRegionIterArgs()[0], term);
  scf::YieldOp::create(inner, loc, acc);
  return loop.getResult(0);
}

Value LayerLowering::at(OpBuilder &b, Value v, ValueRange idx, Value e) {
  if (auto arg = dyn_cast<BlockArgument>(v)) {
    unsigned i = arg.getArgNumber();
    if (i < layer.getNumInputs())
      return load(b, inputPtrs[i], linear(b, shapeOf(v), idx, e));
    return load(b, weightPtrs[i - layer.getNumInputs()],
                linear(b, shapeOf(v), idx, Value()));
  }
  Operation *op = v.getDefiningOp();
  if (auto c = dyn_cast<arith::ConstantOp>(op)) {
    // A scalar (a number, a parameter, `true`), or a splat tensor.
    if (auto f = dyn_cast<FloatAttr>(c.getValue()))
      return cst(b, f.getValueAsDouble());
    if (auto i = dyn_cast<IntegerAttr>(c.getValue());
        i && i.getType().isInteger(1))
      return arith::ConstantOp::create(b, loc, b.getBoolAttr(i.getInt() != 0));
    auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
    // `not c` is `c xor true` on a tensor of i1.
    if (dense && dense.isSplat() && dense.getElementType().isInteger(1))
      return arith::ConstantOp::create(
          b, loc, b.getBoolAttr(dense.getSplatValue<bool>()));
    if (dense && dense.isSplat())
      return cst(b, dense.getSplatValue<APFloat>().convertToDouble());
    op->emitOpError("optim-lower-layers: only splat constants are supported "
                    "in a layer's data");
    hadError = true;
    return cst(b, 0.0);
  }
  if (auto splat = dyn_cast<tensor::SplatOp>(op)) {
    Value x = splat.getInput();
    return at(b, x, ValueRange{}, isBatched(x) ? e : Value());
  }
  if (auto ex = dyn_cast<tensor::ExtractOp>(op)) {
    Value x = ex.getTensor();
    return at(b, x, extractPositions(b, ex), isBatched(x) ? e : Value());
  }
  if (isa<EyeOp>(op)) {
    Value same =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, idx[0], idx[1]);
    return arith::SelectOp::create(b, loc, same, cst(b, 1.0), cst(b, 0.0));
  }
  if (auto mv = dyn_cast<MatVecOp>(op)) {
    Value M = mv.getMatrix(), x = mv.getVector();
    Value i = idx[0];
    Value eM = isBatched(M) ? e : Value(), ex = isBatched(x) ? e : Value();
    return sum(b, idxCst(b, shapeOf(M)[1]), [&](OpBuilder &ib, Value k) {
      return arith::MulFOp::create(ib, loc, at(ib, M, ValueRange{i, k}, eM),
                                   at(ib, x, ValueRange{k}, ex));
    });
  }
  if (auto mm = dyn_cast<MatMulOp>(op)) {
    Value A = mm.getLhs(), B = mm.getRhs();
    Value eA = isBatched(A) ? e : Value(), eB = isBatched(B) ? e : Value();
    return sum(b, idxCst(b, shapeOf(A)[1]), [&](OpBuilder &ib, Value k) {
      return arith::MulFOp::create(ib, loc,
                                   at(ib, A, ValueRange{idx[0], k}, eA),
                                   at(ib, B, ValueRange{k, idx[1]}, eB));
    });
  }
  if (auto tr = dyn_cast<TransposeOp>(op)) {
    Value M = tr.getMatrix();
    return at(b, M, ValueRange{idx[1], idx[0]}, isBatched(M) ? e : Value());
  }
  if (auto dg = dyn_cast<DiagOp>(op)) {
    Value v = dg.getVector();
    Value same =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, idx[0], idx[1]);
    Value x = at(b, v, ValueRange{idx[0]}, isBatched(v) ? e : Value());
    return arith::SelectOp::create(b, loc, same, x, cst(b, 0.0));
  }
  if (auto vs = dyn_cast<VStackOp>(op)) {
    // Part k holds rows [offset, offset + rows_k): only its element is
    // computed (an index past another part's end would read out of it).
    std::function<Value(OpBuilder &, unsigned, int64_t)> pick =
        [&](OpBuilder &ob, unsigned k, int64_t offset) -> Value {
      Value part = vs.getParts()[k];
      int64_t rows = shapeOf(part)[0];
      auto element = [&](OpBuilder &ib) {
        SmallVector<Value> in(idx.begin(), idx.end());
        in[0] = arith::SubIOp::create(ib, loc, idx[0], idxCst(ib, offset));
        return at(ib, part, in, isBatched(part) ? e : Value());
      };
      if (k + 1 == vs.getParts().size())
        return element(ob);
      Value inside = arith::CmpIOp::create(ob, loc, arith::CmpIPredicate::slt,
                                           idx[0], idxCst(ob, offset + rows));
      auto branch = scf::IfOp::create(ob, loc, TypeRange{elt}, inside,
                                      /*withElseRegion=*/true);
      OpBuilder thenB = branch.getThenBodyBuilder();
      scf::YieldOp::create(thenB, loc, element(thenB));
      OpBuilder elseB = branch.getElseBodyBuilder();
      scf::YieldOp::create(elseB, loc, pick(elseB, k + 1, offset + rows));
      return branch.getResult(0);
    };
    return pick(b, 0, 0);
  }
  // Elementwise ops on tensors of one shape or on scalars; a scalar operand
  // of a tensor op (select's condition between whole tensors) is the same
  // at every index.
  if (op->hasTrait<OpTrait::Elementwise>() && op->getNumResults() == 1 &&
      op->getNumRegions() == 0) {
    OperationState state(loc, op->getName());
    for (Value o : op->getOperands())
      state.addOperands(at(b, o, indexOf(o, idx), isBatched(o) ? e : Value()));
    state.addTypes(getElementTypeOrSelf(op->getResult(0).getType()));
    state.addAttributes(op->getAttrs());
    return b.create(state)->getResult(0);
  }
  op->emitOpError("optim-lower-layers: cannot compute this op in a layer's "
                  "data");
  hadError = true;
  return cst(b, 0.0);
}

SmallVector<Value> LayerLowering::extractPositions(OpBuilder &b,
                                                   tensor::ExtractOp op) {
  SmallVector<Value> positions;
  for (Value i : op.getIndices())
    positions.push_back(idxCst(b, getConstantIntValue(i).value_or(0)));
  return positions;
}

Value LayerLowering::adjoint(OpBuilder &b, Value v, ValueRange idx, Value e) {
  Value total;
  for (OpOperand &use : v.getUses()) {
    Operation *user = use.getOwner();
    bool userBatched = user->getNumResults() && isBatched(user->getResult(0));
    Value c;
    if (!isa<QPOp>(user) && !e && userBatched) {
      // A shared value used by batched computations: their sum.
      c = sum(b, batchSize, [&](OpBuilder &ib, Value ee) {
        return contribution(ib, use, idx, ee);
      });
    } else {
      c = contribution(b, use, idx, e);
    }
    if (!c)
      continue;
    total = total ? arith::AddFOp::create(b, loc, total, c).getResult() : c;
  }
  return total ? total : cst(b, 0.0);
}

Value LayerLowering::contribution(OpBuilder &b, OpOperand &use, ValueRange idx,
                                  Value e) {
  Operation *user = use.getOwner();
  unsigned k = use.getOperandNumber();
  Value v = use.get();
  if (isa<QPOp>(user) && gpuDops) {
    Type f64 = b.getF64Type(), i64 = b.getI64Type();
    Value lin = linear(b, shapeOf(v), idx, Value());
    lin = arith::AddIOp::create(
        b, loc, lin,
        arith::ConstantIntOp::create(b, loc, i64, gpuOffsets.lookup(k)));
    Value base = gpuDshared;
    if (isBatched(v)) {
      Value e64 = arith::IndexCastOp::create(b, loc, i64, e);
      lin = arith::AddIOp::create(
          b, loc, lin,
          arith::MulIOp::create(
              b, loc, e64,
              arith::ConstantIntOp::create(b, loc, i64, gpuDataDoubles)));
      base = gpuDops;
    }
    Value p = LLVM::GEPOp::create(b, loc, ptrType, f64, base, ValueRange{lin});
    Value d = LLVM::LoadOp::create(b, loc, f64, p);
    return elt.isF64() ? d : arith::TruncFOp::create(b, loc, elt, d);
  }
  if (isa<QPOp>(user)) {
    // Shared operands' cotangents are already summed over the batch.
    return load(b, operandPtrs.lookup(k),
                linear(b, shapeOf(v), idx, isBatched(v) ? e : Value()));
  }
  auto valueAt = [&](OpBuilder &ob, Value x, ValueRange i) {
    return at(ob, x, i, isBatched(x) ? e : Value());
  };
  if (auto mv = dyn_cast<MatVecOp>(user)) {
    Value y = mv.getResult(), M = mv.getMatrix(), x = mv.getVector();
    if (k == 0) { // dM[i, j] = dy[i] x[j]
      Value dy = adjoint(b, y, ValueRange{idx[0]}, isBatched(y) ? e : Value());
      return arith::MulFOp::create(b, loc, dy, valueAt(b, x, {idx[1]}));
    }
    // dx[j] = sum_i M[i, j] dy[i]
    return sum(b, idxCst(b, shapeOf(M)[0]), [&](OpBuilder &ib, Value i) {
      Value dy = adjoint(ib, y, ValueRange{i}, isBatched(y) ? e : Value());
      return arith::MulFOp::create(ib, loc, valueAt(ib, M, {i, idx[0]}), dy)
          .getResult();
    });
  }
  if (auto mm = dyn_cast<MatMulOp>(user)) {
    Value C = mm.getResult(), A = mm.getLhs(), B = mm.getRhs();
    Value eC = isBatched(C) ? e : Value();
    if (k == 0) { // dA[i, l] = sum_j dC[i, j] B[l, j]
      return sum(b, idxCst(b, shapeOf(C)[1]), [&](OpBuilder &ib, Value j) {
        Value dc = adjoint(ib, C, ValueRange{idx[0], j}, eC);
        return arith::MulFOp::create(ib, loc, dc, valueAt(ib, B, {idx[1], j}))
            .getResult();
      });
    }
    // dB[l, j] = sum_i A[i, l] dC[i, j]
    return sum(b, idxCst(b, shapeOf(C)[0]), [&](OpBuilder &ib, Value i) {
      Value dc = adjoint(ib, C, ValueRange{i, idx[1]}, eC);
      return arith::MulFOp::create(ib, loc, valueAt(ib, A, {i, idx[0]}), dc)
          .getResult();
    });
  }
  if (auto splat = dyn_cast<tensor::SplatOp>(user)) {
    // A scalar broadcast: the sum of the cotangents of every element.
    Value r = splat.getResult();
    Value er = isBatched(r) ? e : Value();
    ArrayRef<int64_t> shape = shapeOf(r);
    std::function<Value(OpBuilder &, SmallVector<Value>)> over =
        [&](OpBuilder &ob, SmallVector<Value> at) -> Value {
      if (at.size() == shape.size())
        return adjoint(ob, r, at, er);
      return sum(ob, idxCst(ob, shape[at.size()]), [&](OpBuilder &ib, Value i) {
        SmallVector<Value> next = at;
        next.push_back(i);
        return over(ib, next);
      });
    };
    return over(b, {});
  }
  if (auto ex = dyn_cast<tensor::ExtractOp>(user)) {
    // The element x[k]'s cotangent at k, 0 elsewhere (computed only there).
    Value r = ex.getResult();
    Value hit;
    for (auto [i, k] : llvm::zip(idx, extractPositions(b, ex))) {
      Value same =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, i, k);
      hit = hit ? arith::AndIOp::create(b, loc, hit, same).getResult() : same;
    }
    auto branch = scf::IfOp::create(b, loc, TypeRange{elt}, hit,
                                    /*withElseRegion=*/true);
    OpBuilder thenB = branch.getThenBodyBuilder();
    scf::YieldOp::create(thenB, loc,
                         adjoint(thenB, r, {}, isBatched(r) ? e : Value()));
    OpBuilder elseB = branch.getElseBodyBuilder();
    scf::YieldOp::create(elseB, loc, cst(elseB, 0.0));
    return branch.getResult(0);
  }
  if (auto dg = dyn_cast<DiagOp>(user)) {
    Value D = dg.getResult();
    return adjoint(b, D, ValueRange{idx[0], idx[0]},
                   isBatched(D) ? e : Value());
  }
  if (auto vs = dyn_cast<VStackOp>(user)) {
    // Operand k's rows are the result's from the parts before it on.
    int64_t offset = 0;
    for (unsigned i = 0; i < k; ++i)
      offset += shapeOf(vs.getParts()[i])[0];
    Value R = vs.getResult();
    SmallVector<Value> in(idx.begin(), idx.end());
    in[0] = arith::AddIOp::create(b, loc, idx[0], idxCst(b, offset));
    return adjoint(b, R, in, isBatched(R) ? e : Value());
  }
  if (auto tr = dyn_cast<TransposeOp>(user)) {
    Value T = tr.getResult();
    return adjoint(b, T, ValueRange{idx[1], idx[0]},
                   isBatched(T) ? e : Value());
  }
  if (user->getNumResults() != 1 || !user->hasTrait<OpTrait::Elementwise>()) {
    user->emitOpError("optim-lower-layers: cannot differentiate this op in a "
                      "layer's data");
    hadError = true;
    return Value();
  }
  // Piecewise constant (derivative 0 almost everywhere): floor, ceil, and
  // comparisons (the conditions of select, and of mod's expansion). Their
  // results' adjoints are not needed, nor computed.
  if (isa<math::FloorOp, math::CeilOp, arith::CmpFOp>(user))
    return cst(b, 0.0);
  Value r = user->getResult(0);
  Value d = adjoint(b, r, idx, isBatched(r) ? e : Value());
  auto operand = [&](unsigned i) {
    Value o = user->getOperand(i);
    return valueAt(b, o, indexOf(o, idx));
  };
  auto mul = [&](Value a, Value c) {
    return arith::MulFOp::create(b, loc, a, c).getResult();
  };
  // The side a select did not take gets a zero cotangent, and may be inf or
  // NaN there (sqrt of a negative number): a contribution that multiplies
  // the cotangent by such a value is 0 where the cotangent is 0 (a "strong
  // zero", as optim-differentiate does for rules).
  auto strong = [&](Value c) -> Value {
    Value zero = cst(b, 0.0);
    Value isZero =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, d, zero);
    return arith::SelectOp::create(b, loc, isZero, zero, c);
  };
  if (isa<arith::AddFOp>(user))
    return d;
  if (isa<arith::SubFOp>(user))
    return k == 0 ? d : arith::NegFOp::create(b, loc, d).getResult();
  if (isa<arith::NegFOp>(user))
    return arith::NegFOp::create(b, loc, d);
  if (isa<arith::MulFOp>(user))
    return strong(mul(d, operand(1 - k)));
  if (isa<arith::DivFOp>(user)) {
    Value den = operand(1);
    Value q = arith::DivFOp::create(b, loc, d, den);
    if (k == 0)
      return strong(q);
    Value res = arith::DivFOp::create(b, loc, operand(0), den);
    return strong(arith::NegFOp::create(b, loc, mul(q, res)));
  }
  if (isa<math::ExpOp>(user))
    return strong(mul(d, math::ExpOp::create(b, loc, operand(0))));
  if (isa<math::LogOp>(user))
    return strong(arith::DivFOp::create(b, loc, d, operand(0)));
  // sqrt, cbrt and atan2 have an infinite (or no) slope where their
  // result is 0 (at the origin for atan2): taken as 0 there, as
  // optim-differentiate does for rules (docs/language.md section 6), so
  // that a weight still at 0 gives no NaN or infinite gradient.
  auto zeroWhere = [&](Value keep, Value slopeArg,
                       function_ref<Value(Value)> slope) -> Value {
    Value safe = arith::SelectOp::create(b, loc, keep, slopeArg, cst(b, 1.0));
    return arith::SelectOp::create(b, loc, keep, slope(safe), cst(b, 0.0));
  };
  if (isa<math::SqrtOp>(user)) {
    Value r = math::SqrtOp::create(b, loc, operand(0));
    Value positive =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, r, cst(b, 0));
    return zeroWhere(positive, r, [&](Value safe) -> Value {
      return arith::DivFOp::create(b, loc, mul(d, cst(b, 0.5)), safe);
    });
  }
  if (isa<math::CbrtOp>(user)) {
    // d cbrt(x) = d / (3 cbrt(x)^2).
    Value r = math::CbrtOp::create(b, loc, operand(0));
    Value nonzero =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE, r, cst(b, 0));
    return zeroWhere(nonzero, r, [&](Value safe) -> Value {
      return arith::DivFOp::create(b, loc, d,
                                   mul(cst(b, 3.0), mul(safe, safe)));
    });
  }
  if (isa<math::TanhOp>(user)) {
    Value t = math::TanhOp::create(b, loc, operand(0));
    return strong(
        mul(d, arith::SubFOp::create(b, loc, cst(b, 1.0), mul(t, t))));
  }
  if (isa<math::CosOp>(user))
    return strong(arith::NegFOp::create(
        b, loc, mul(d, math::SinOp::create(b, loc, operand(0)))));
  if (isa<math::SinOp>(user))
    return strong(mul(d, math::CosOp::create(b, loc, operand(0))));
  if (isa<math::AtanOp>(user)) {
    Value x = operand(0);
    return arith::DivFOp::create(
        b, loc, d, arith::AddFOp::create(b, loc, cst(b, 1.0), mul(x, x)));
  }
  if (isa<math::Atan2Op>(user)) {
    // atan2(y, x): d x / r2 for y (k = 0), -d y / r2 for x, r2 = x^2 + y^2.
    Value y = operand(0), x = operand(1);
    Value r2 = arith::AddFOp::create(b, loc, mul(x, x), mul(y, y));
    Value nonzero =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE, r2, cst(b, 0));
    return zeroWhere(nonzero, r2, [&](Value safe) -> Value {
      Value q = arith::DivFOp::create(b, loc, d, safe);
      return k == 0 ? mul(q, x)
                    : arith::NegFOp::create(b, loc, mul(q, y)).getResult();
    });
  }
  if (isa<math::AbsFOp>(user)) {
    // sign(x) d, and 0 at x = 0, as optim-differentiate's for rules.
    Value x = operand(0), zero = cst(b, 0.0);
    Value pos =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, zero);
    Value neg =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, zero);
    return arith::SelectOp::create(
        b, loc, pos, d,
        arith::SelectOp::create(b, loc, neg, arith::NegFOp::create(b, loc, d),
                                zero));
  }
  if (isa<arith::MaximumFOp, arith::MinimumFOp>(user)) {
    // The operand that was taken gets the cotangent; on a tie the first
    // does, as in rules (clamp(x, lo, hi) passes it to x at its bounds).
    auto pred = isa<arith::MaximumFOp>(user) ? arith::CmpFPredicate::OGE
                                             : arith::CmpFPredicate::OLE;
    Value first = arith::CmpFOp::create(b, loc, pred, operand(0), operand(1));
    Value zero = cst(b, 0.0);
    return k == 0 ? arith::SelectOp::create(b, loc, first, d, zero)
                  : arith::SelectOp::create(b, loc, first, zero, d);
  }
  if (isa<math::PowFOp>(user)) {
    // As optim-differentiate's: d(a^b)/da = b a^(b-1), taken as 0 at a = 0
    // for b < 1 (infinite there); d(a^b)/db = a^b log a, 0 for a <= 0.
    Value a = operand(0), ex = operand(1), zero = cst(b, 0.0);
    if (k == 0) {
      Value da =
          mul(d, mul(ex, math::PowFOp::create(
                             b, loc, a,
                             arith::SubFOp::create(b, loc, ex, cst(b, 1.0)))));
      Value steepAtZero = arith::AndIOp::create(
          b, loc,
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, a, zero),
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, ex,
                                cst(b, 1.0)));
      return strong(arith::SelectOp::create(b, loc, steepAtZero, zero, da));
    }
    Value positive =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, a, zero);
    Value safeA = arith::SelectOp::create(b, loc, positive, a, cst(b, 1.0));
    Value db = mul(d, mul(math::PowFOp::create(b, loc, a, ex),
                          math::LogOp::create(b, loc, safeA)));
    return strong(arith::SelectOp::create(b, loc, positive, db, zero));
  }
  if (isa<arith::SelectOp>(user)) {
    // The condition (operand 0) is a comparison: no adjoint is asked of it.
    Value zero = cst(b, 0.0), cond = operand(0);
    return k == 1 ? arith::SelectOp::create(b, loc, cond, d, zero)
                  : arith::SelectOp::create(b, loc, cond, zero, d);
  }
  if (isa<arith::RemFOp>(user)) {
    // fmod(x, y) = x - trunc(x / y) y, trunc constant almost everywhere.
    if (k == 0)
      return d;
    Value q = math::TruncOp::create(
        b, loc, arith::DivFOp::create(b, loc, operand(0), operand(1)));
    return strong(arith::NegFOp::create(b, loc, mul(d, q)));
  }
  user->emitOpError("optim-lower-layers: no derivative for this op in a "
                    "layer's data");
  hadError = true;
  return Value();
}

/// The operand number of each qp operand in KernelABI order (Q, q, A, b, G,
/// h, which is also the ODS order); -1 for an absent one. Found from the
/// operand segments, not by value: one value may be several operands (a
/// layer whose q is also its h), and each use has its own cotangent slot.
static std::array<int, 6> qpOperandNumbers(QPOp qp) {
  std::array<int, 6> numbers;
  for (unsigned k = 0; k < 6; ++k) {
    auto [start, length] = qp.getODSOperandIndexAndLength(k);
    numbers[k] = length ? int(start) : -1;
  }
  return numbers;
}

/// The qp operands in KernelABI order (Q, q, A, b, G, h), with their operand
/// numbers in the qp op; absent ones skipped.
static SmallVector<std::pair<unsigned, Value>> qpOperands(QPOp qp) {
  SmallVector<std::pair<unsigned, Value>> out;
  for (int number : qpOperandNumbers(qp))
    if (number >= 0)
      out.push_back({unsigned(number), qp->getOperand(number)});
  return out;
}

void LayerLowering::emitData(OpBuilder &b) {
  // void optim_layer_<name>_data(const void *const *inputs,
  //     const void *const *weights, int64_t batch, void *const *data)
  Type i64 = b.getI64Type();
  auto type = b.getFunctionType({ptrType, ptrType, i64, ptrType}, {});
  auto func = func::FuncOp::create(
      b, loc, (kPrefix + layer.getSymName() + "_data").str(), type);
  Block *entry = func.addEntryBlock();
  OpBuilder fb = OpBuilder::atBlockBegin(entry);
  inputPtrs.clear();
  weightPtrs.clear();
  for (unsigned i = 0; i < layer.getNumInputs(); ++i)
    inputPtrs.push_back(pointer(fb, entry->getArgument(0), i));
  for (unsigned i = 0; i < layer.getNumWeights(); ++i)
    weightPtrs.push_back(pointer(fb, entry->getArgument(1), i));
  batchSize = arith::IndexCastOp::create(fb, loc, fb.getIndexType(),
                                         entry->getArgument(2));
  auto operands = qpOperands(qp);
  for (auto [slot, entryPair] : llvm::enumerate(operands)) {
    Value v = entryPair.second;
    Value out = pointer(fb, entry->getArgument(3), slot);
    bool isB = isBatched(v);
    forEach(fb, shapeOf(v), isB ? batchSize : Value(),
            [&](OpBuilder &ib, ValueRange idx, Value e) {
              store(ib, at(ib, v, idx, e), out, linear(ib, shapeOf(v), idx, e));
            });
  }
  func::ReturnOp::create(fb, loc);
}

void LayerLowering::emitVJP(OpBuilder &b) {
  // void optim_layer_<name>_vjp(const void *const *inputs,
  //     const void *const *weights, int64_t batch,
  //     const void *const *ddata, void *const *dinputs, void *const *dweights)
  Type i64 = b.getI64Type();
  auto type =
      b.getFunctionType({ptrType, ptrType, i64, ptrType, ptrType, ptrType}, {});
  auto func = func::FuncOp::create(
      b, loc, (kPrefix + layer.getSymName() + "_vjp").str(), type);
  Block *entry = func.addEntryBlock();
  OpBuilder fb = OpBuilder::atBlockBegin(entry);
  inputPtrs.clear();
  weightPtrs.clear();
  operandPtrs.clear();
  for (unsigned i = 0; i < layer.getNumInputs(); ++i)
    inputPtrs.push_back(pointer(fb, entry->getArgument(0), i));
  for (unsigned i = 0; i < layer.getNumWeights(); ++i)
    weightPtrs.push_back(pointer(fb, entry->getArgument(1), i));
  batchSize = arith::IndexCastOp::create(fb, loc, fb.getIndexType(),
                                         entry->getArgument(2));
  for (auto [slot, entryPair] : llvm::enumerate(qpOperands(qp)))
    operandPtrs[entryPair.first] = pointer(fb, entry->getArgument(3), slot);
  for (unsigned i = 0; i < layer.getNumInputs(); ++i) {
    Value arg = layer.getInput(i);
    Value out = pointer(fb, entry->getArgument(4), i);
    forEach(fb, shapeOf(arg), batchSize,
            [&](OpBuilder &ib, ValueRange idx, Value e) {
              store(ib, adjoint(ib, arg, idx, e), out,
                    linear(ib, shapeOf(arg), idx, e));
            });
  }
  for (unsigned i = 0; i < layer.getNumWeights(); ++i) {
    Value arg = layer.getWeight(i);
    Value out = pointer(fb, entry->getArgument(5), i);
    forEach(fb, shapeOf(arg), Value(),
            [&](OpBuilder &ib, ValueRange idx, Value) {
              store(ib, adjoint(ib, arg, idx, Value()), out,
                    linear(ib, shapeOf(arg), idx, Value()));
            });
  }
  func::ReturnOp::create(fb, loc);
}

/// The layer's CUDA kernel: block e builds problem e's operands (float64)
/// in its slice of the workspace, then the block solves it
/// (optim_qp_block_solve). Layout: optim::qpblock::kernelLayout.
void LayerLowering::emitGPUKernel(gpu::GPUModuleOp module, int64_t threads,
                                  int64_t sharedBytes) {
  MLIRContext *ctx = layer.getContext();
  Type i64 = IntegerType::get(ctx, 64), i32 = IntegerType::get(ctx, 32);
  Type f64 = Float64Type::get(ctx);
  const GPUSizes sizes = gpuSizes(threads, sharedBytes);
  const int64_t n = sizes.n, m = sizes.m, p = sizes.p;
  const ::optim::qpblock::KernelLayout &lay = sizes.layout;

  OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
  auto solve = module.lookupSymbol<LLVM::LLVMFuncOp>(kSolveSymbol);
  if (!solve) {
    // void (Q, q, A, b, G, h, n, m, p, tol, maxIter, z, nu, lam, f32,
    //       status, iterations, work, keep, sharedDoubles):
    // QPBlockNVPTX.cpp.
    SmallVector<Type> args(6, ptrType);
    args.append({i64, i64, i64, f64, i64, ptrType, ptrType, ptrType, i32,
                 ptrType, ptrType, ptrType, ptrType, i64});
    auto type = LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx),
                                            args);
    solve = LLVM::LLVMFuncOp::create(mb, loc, kSolveSymbol, type);
  }
  const unsigned ni = layer.getNumInputs(), nw = layer.getNumWeights();
  // inputs..., weights..., z, nu, lam, status, iterations, work
  SmallVector<Type> argTypes(ni + nw + 6, ptrType);
  auto func = gpu::GPUFuncOp::create(
      mb, loc, (kPrefix + layer.getSymName() + "_qp").str(),
      FunctionType::get(ctx, argTypes, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), UnitAttr::get(ctx));
  func.setKnownBlockSizeAttr(
      DenseI32ArrayAttr::get(ctx, {int32_t(lay.threads), 1, 1}));
  Block &entry = func.getBody().front();
  OpBuilder b = OpBuilder::atBlockBegin(&entry);
  inputPtrs.assign(entry.getArguments().begin(),
                   entry.getArguments().begin() + ni);
  weightPtrs.assign(entry.getArguments().begin() + ni,
                    entry.getArguments().begin() + ni + nw);
  Value z = entry.getArgument(ni + nw), nu = entry.getArgument(ni + nw + 1),
        lam = entry.getArgument(ni + nw + 2),
        status = entry.getArgument(ni + nw + 3),
        iterations = entry.getArgument(ni + nw + 4),
        work = entry.getArgument(ni + nw + 5);
  Value e = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value ntid = gpu::BlockDimOp::create(b, loc, gpu::Dimension::x);
  Value e64 = arith::IndexCastOp::create(b, loc, i64, e);
  auto i64Cst = [&](int64_t v) {
    return arith::ConstantIntOp::create(b, loc, i64, v).getResult();
  };
  auto offsetPtr = [&](Type eltType, Value basePtr, Value offset) {
    return LLVM::GEPOp::create(b, loc, ptrType, eltType, basePtr,
                               ValueRange{offset})
        .getResult();
  };
  Value base = offsetPtr(
      f64, work,
      arith::MulIOp::create(b, loc, e64, i64Cst(lay.workDoubles)).getResult());

  // The operands, each element at its row-major index, spread over the
  // block's threads.
  Value kinds[6] = {qp.getQmat(), qp.getQvec(), qp.getA(),
                    qp.getB(),    qp.getG(),    qp.getH()};
  Value regions[6];
  for (int k = 0; k < 6; ++k) {
    Value v = kinds[k];
    if (!v) {
      regions[k] = LLVM::ZeroOp::create(b, loc, ptrType);
      continue;
    }
    regions[k] = offsetPtr(f64, base, i64Cst(lay.offset[k]));
    ArrayRef<int64_t> shape = shapeOf(v);
    auto loop = scf::ForOp::create(b, loc, tid,
                                   idxCst(b, ShapedType::getNumElements(shape)),
                                   ntid);
    OpBuilder ib = OpBuilder::atBlockBegin(loop.getBody());
    ib.setInsertionPoint(loop.getBody()->getTerminator());
    Value lin = loop.getInductionVar();
    Value rest = lin;
    SmallVector<Value> idx = delinearize(ib, shape, rest);
    Value val = at(ib, v, idx, isBatched(v) ? e : Value());
    if (!elt.isF64())
      val = arith::ExtFOp::create(ib, loc, f64, val);
    Value at64 = arith::IndexCastOp::create(ib, loc, i64, lin);
    Value ptr = LLVM::GEPOp::create(ib, loc, ptrType, f64, regions[k],
                                    ValueRange{at64});
    LLVM::StoreOp::create(ib, loc, val, ptr);
  }
  gpu::BarrierOp::create(b, loc);

  auto slice = [&](Value ptr, Type eltType, int64_t count) {
    return offsetPtr(
        eltType, ptr,
        arith::MulIOp::create(b, loc, e64, i64Cst(count)).getResult());
  };
  SmallVector<Value> args(regions, regions + 6);
  args.append({i64Cst(n), i64Cst(m), i64Cst(p),
               arith::ConstantOp::create(
                   b, loc, b.getF64FloatAttr(qp.getTol().convertToDouble())),
               i64Cst(int64_t(qp.getMaxIter())), slice(z, elt, n),
               slice(nu, elt, m), slice(lam, elt, p),
               arith::ConstantIntOp::create(b, loc, i32, elt.isF64() ? 0 : 1),
               slice(status, i32, 1), slice(iterations, i32, 1),
               offsetPtr(f64, base, i64Cst(lay.dataDoubles)),
               offsetPtr(f64, base, i64Cst(lay.keepOffset)),
               i64Cst(lay.sharedDoubles)});
  LLVM::CallOp::create(b, loc, solve, args);
  gpu::ReturnOp::create(b, loc);
}

/// A loop over [0, count) spread over every thread of the grid.
static scf::ForOp gridStrideLoop(OpBuilder &b, Location loc, Value count) {
  Value gid = arith::AddIOp::create(
      b, loc,
      arith::MulIOp::create(b, loc,
                            gpu::BlockIdOp::create(b, loc, gpu::Dimension::x),
                            gpu::BlockDimOp::create(b, loc, gpu::Dimension::x)),
      gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x));
  Value stride = arith::MulIOp::create(
      b, loc, gpu::GridDimOp::create(b, loc, gpu::Dimension::x),
      gpu::BlockDimOp::create(b, loc, gpu::Dimension::x));
  return scf::ForOp::create(b, loc, gid, count, stride);
}

void LayerLowering::emitGPUBackward(gpu::GPUModuleOp module, int64_t threads,
                                    int64_t sharedBytes) {
  MLIRContext *ctx = layer.getContext();
  Type i64 = IntegerType::get(ctx, 64), i32 = IntegerType::get(ctx, 32);
  Type f64 = Float64Type::get(ctx);
  const GPUSizes sizes = gpuSizes(threads, sharedBytes);
  const int64_t n = sizes.n, m = sizes.m, p = sizes.p;
  const ::optim::qpblock::KernelLayout &lay = sizes.layout;
  const std::string prefix = (kPrefix + layer.getSymName() + "_qp").str();
  OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
  auto kernel = [&](StringRef suffix, ArrayRef<Type> args) {
    auto func = gpu::GPUFuncOp::create(mb, loc, prefix + suffix.str(),
                                       FunctionType::get(ctx, args, {}));
    func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(),
                  UnitAttr::get(ctx));
    return func;
  };

  // _qp_grad(gz, gnu, glam, dops, work): block e runs the solver's
  // backward on problem e with what its forward kept.
  auto backward = module.lookupSymbol<LLVM::LLVMFuncOp>(kBackwardSymbol);
  if (!backward) {
    // void (Q, q, A, b, G, h, n, m, p, gz, gnu, glam, f32, e, dops,
    //       offsets[6], work, keep, sharedDoubles): QPBlockNVPTX.cpp.
    SmallVector<Type> args(6, ptrType);
    args.append({i64, i64, i64, ptrType, ptrType, ptrType, i32, i64, ptrType,
                 i64, i64, i64, i64, i64, i64, ptrType, ptrType, i64});
    backward = LLVM::LLVMFuncOp::create(
        mb, loc, kBackwardSymbol,
        LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), args));
  }
  {
    auto func = kernel("_grad", SmallVector<Type>(5, ptrType));
    func.setKnownBlockSizeAttr(
        DenseI32ArrayAttr::get(ctx, {int32_t(lay.threads), 1, 1}));
    Block &entry = func.getBody().front();
    OpBuilder b = OpBuilder::atBlockBegin(&entry);
    auto c64 = [&](int64_t v) {
      return arith::ConstantIntOp::create(b, loc, i64, v).getResult();
    };
    Value e64 = arith::IndexCastOp::create(
        b, loc, i64, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x));
    auto elemPtr = [&](Value basePtr, Value offset) {
      return LLVM::GEPOp::create(b, loc, ptrType, f64, basePtr,
                                 ValueRange{offset})
          .getResult();
    };
    Value base = elemPtr(entry.getArgument(4),
                    arith::MulIOp::create(b, loc, e64, c64(lay.workDoubles)));
    SmallVector<Value> args;
    for (int k = 0; k < 6; ++k)
      args.push_back(lay.offset[k] >= 0
                         ? elemPtr(base, c64(lay.offset[k]))
                         : LLVM::ZeroOp::create(b, loc, ptrType).getResult());
    args.append({c64(n), c64(m), c64(p), entry.getArgument(0),
                 entry.getArgument(1), entry.getArgument(2),
                 arith::ConstantIntOp::create(b, loc, i32, elt.isF64() ? 0 : 1),
                 e64,
                 elemPtr(entry.getArgument(3),
                    arith::MulIOp::create(b, loc, e64, c64(lay.dataDoubles)))});
    for (int k = 0; k < 6; ++k)
      args.push_back(c64(lay.offset[k]));
    args.append({elemPtr(base, c64(lay.dataDoubles)),
                 elemPtr(base, c64(lay.keepOffset)), c64(lay.sharedDoubles)});
    LLVM::CallOp::create(b, loc, backward, args);
    gpu::ReturnOp::create(b, loc);
  }

  // The qp operands by kind (Q, q, A, b, G, h) and by operand number.
  Value kinds[6] = {qp.getQmat(), qp.getQvec(), qp.getA(),
                    qp.getB(),    qp.getG(),    qp.getH()};
  gpuOffsets.clear();
  std::array<int, 6> numbers = qpOperandNumbers(qp);
  for (int k = 0; k < 6; ++k)
    if (numbers[k] >= 0)
      gpuOffsets[numbers[k]] = lay.offset[k];

  // _qp_reduce(dops, dshared, batch): each shared operand's cotangent, the
  // sum over the batch in batch order (as the CPU solver sums them).
  {
    auto func = kernel("_reduce", {ptrType, ptrType, i64});
    Block &entry = func.getBody().front();
    OpBuilder b = OpBuilder::atBlockBegin(&entry);
    Value dops = entry.getArgument(0), dshared = entry.getArgument(1);
    Value batch =
        arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                   entry.getArgument(2));
    for (int k = 0; k < 6; ++k) {
      Value v = kinds[k];
      if (!v || isBatched(v))
        continue;
      int64_t size = 1;
      for (int64_t d : shapeOf(v))
        size *= d;
      scf::ForOp loop = gridStrideLoop(b, loc, idxCst(b, size));
      OpBuilder ib = OpBuilder::atBlockBegin(loop.getBody());
      ib.setInsertionPoint(loop.getBody()->getTerminator());
      Value j = arith::IndexCastOp::create(ib, loc, i64,
                                           loop.getInductionVar());
      Value slot = arith::AddIOp::create(
          ib, loc, j,
          arith::ConstantIntOp::create(ib, loc, i64, lay.offset[k]));
      // The sum in float64, whatever the layer's type.
      auto acc = scf::ForOp::create(
          ib, loc, idxCst(ib, 0), batch, idxCst(ib, 1),
          ValueRange{arith::ConstantOp::create(ib, loc, ib.getF64FloatAttr(0))
                         .getResult()});
      {
        OpBuilder sb = OpBuilder::atBlockBegin(acc.getBody());
        Value e64 =
            arith::IndexCastOp::create(sb, loc, i64, acc.getInductionVar());
        Value lin = arith::AddIOp::create(
            sb, loc, slot,
            arith::MulIOp::create(
                sb, loc, e64,
                arith::ConstantIntOp::create(sb, loc, i64, lay.dataDoubles)));
        Value ptr =
            LLVM::GEPOp::create(sb, loc, ptrType, f64, dops, ValueRange{lin});
        Value term = LLVM::LoadOp::create(sb, loc, f64, ptr);
        scf::YieldOp::create(
            sb, loc,
            arith::AddFOp::create(sb, loc, acc.getRegionIterArgs()[0], term)
                .getResult());
      }
      Value ptr =
          LLVM::GEPOp::create(ib, loc, ptrType, f64, dshared, ValueRange{slot});
      LLVM::StoreOp::create(ib, loc, acc.getResult(0), ptr);
    }
    gpu::ReturnOp::create(b, loc);
  }

  // _qp_vjp(inputs..., weights..., dops, dshared, dinputs..., dweights...,
  // batch): the layer's VJP (as optim_layer_<name>_vjp), every element of
  // every cotangent over the whole grid.
  {
    const unsigned ni = layer.getNumInputs(), nw = layer.getNumWeights();
    SmallVector<Type> args(2 * (ni + nw) + 2, ptrType);
    args.push_back(i64);
    auto func = kernel("_vjp", args);
    Block &entry = func.getBody().front();
    OpBuilder b = OpBuilder::atBlockBegin(&entry);
    inputPtrs.assign(entry.getArguments().begin(),
                     entry.getArguments().begin() + ni);
    weightPtrs.assign(entry.getArguments().begin() + ni,
                      entry.getArguments().begin() + ni + nw);
    gpuDops = entry.getArgument(ni + nw);
    gpuDshared = entry.getArgument(ni + nw + 1);
    gpuDataDoubles = lay.dataDoubles;
    batchSize = arith::IndexCastOp::create(b, loc, b.getIndexType(),
                                           entry.getArgument(args.size() - 1));
    auto each = [&](Value arg, Value out, bool perElement) {
      ArrayRef<int64_t> shape = shapeOf(arg);
      Value count = idxCst(b, ShapedType::getNumElements(shape));
      if (perElement)
        count = arith::MulIOp::create(b, loc, count, batchSize);
      scf::ForOp loop = gridStrideLoop(b, loc, count);
      OpBuilder ib = OpBuilder::atBlockBegin(loop.getBody());
      ib.setInsertionPoint(loop.getBody()->getTerminator());
      Value rest = loop.getInductionVar();
      SmallVector<Value> idx = delinearize(ib, shape, rest);
      Value e = perElement ? rest : Value();
      store(ib, adjoint(ib, arg, idx, e), out,
            linear(ib, shape, idx, e));
    };
    for (unsigned i = 0; i < ni; ++i)
      each(layer.getInput(i), entry.getArgument(ni + nw + 2 + i), true);
    for (unsigned w = 0; w < nw; ++w)
      each(layer.getWeight(w), entry.getArgument(2 * ni + nw + 2 + w), false);
    gpu::ReturnOp::create(b, loc);
    gpuDops = gpuDshared = Value();
  }
}

LogicalResult LayerLowering::runGPU(gpu::GPUModuleOp module, int64_t threads,
                                    int64_t sharedBytes) {
  if (failed(check()))
    return failure();
  ptrType = LLVM::LLVMPointerType::get(layer.getContext());
  emitGPUKernel(module, threads, sharedBytes);
  emitGPUBackward(module, threads, sharedBytes);
  if (hadError)
    return failure();
  layer.erase();
  return success();
}

LogicalResult LayerLowering::run() {
  if (failed(check()))
    return failure();
  ptrType = LLVM::LLVMPointerType::get(layer.getContext());
  OpBuilder b(layer);
  emitData(b);
  emitVJP(b);
  if (hadError)
    return failure();
  layer.erase();
  return success();
}

struct LowerLayers : public mlir::optim::impl::LowerLayersBase<LowerLayers> {
  void runOnOperation() override {
    SmallVector<LayerOp> layers(getOperation().getOps<LayerOp>());
    for (LayerOp layer : layers)
      if (failed(LayerLowering(layer).run()))
        return signalPassFailure();
  }
};

struct LowerLayersToGPU
    : public mlir::optim::impl::LowerLayersToGPUBase<LowerLayersToGPU> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<LayerOp> layers(module.getOps<LayerOp>());
    if (layers.empty())
      return;
    if (threads < 0 || threads > 1024 || threads % 32) {
      module.emitError("optim-lower-layers-to-gpu: threads must be a "
                       "multiple of 32 up to 1024 (or 0)");
      return signalPassFailure();
    }
    if (sharedBytes < 0) {
      module.emitError("optim-lower-layers-to-gpu: shared-bytes must be >= 0");
      return signalPassFailure();
    }
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(module.getContext()));
    auto gpuModule = module.lookupSymbol<gpu::GPUModuleOp>(kGPUModuleName);
    if (!gpuModule) {
      OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
      gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), kGPUModuleName);
    }
    for (LayerOp layer : layers)
      if (failed(LayerLowering(layer).runGPU(gpuModule, threads, sharedBytes)))
        return signalPassFailure();
  }
};

} // namespace
