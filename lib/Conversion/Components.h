//===- Components.h - rule bodies split into per-element values -*- C++ -*-===//
//
// The CPU forward kernel (LowerRulesToKernels.cpp), the CPU VJP kernel
// (LowerVJPToKernels.cpp) and the GPU kernel (LowerRulesToGPU.cpp) all lower
// a rule body the same way: every vector<N> value becomes N components (a
// vector of lanes on the CPU, one scalar per thread on the GPU). The ops that
// only move components and the elementwise ops are mapped here once, so that
// the three kernels cannot disagree on them; each lowering keeps the ops it
// emits its own way (the LSTM cell, the linear map, log_sign, divisions by a
// uniform value).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_CONVERSION_COMPONENTS_H
#define OPTIM_LIB_CONVERSION_COMPONENTS_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir::optim {

/// A value's components: one for a scalar, N for a vector<N>.
using Comps = SmallVector<Value, 4>;
using CompMap = llvm::DenseMap<Value, Comps>;

/// The number of per-coordinate components of a value: N for vector<N>.
inline unsigned numComponents(Type type) {
  if (auto vec = dyn_cast<VectorType>(type))
    return vec.getNumElements();
  return 1;
}

/// Whether values of type `t` can be per-coordinate values of a rule of
/// element type `elt`: a scalar or a fixed rank-1 vector of `elt`, or of i1
/// (comparisons).
inline bool isCoordinateType(Type t, Type elt) {
  Type scalar = getElementTypeOrSelf(t);
  auto vec = dyn_cast<VectorType>(t);
  return (scalar == elt || scalar.isInteger(1)) &&
         (!vec || (vec.getRank() == 1 && !vec.isScalable()));
}

/// The components of a uniform value (the same for every coordinate, e.g. a
/// hyperparameter or a bias correction): `spread(x)` of each element of a
/// vector, or of a scalar itself.
inline Comps spreadUniform(OpBuilder &b, Location loc, Value u,
                           llvm::function_ref<Value(Value)> spread) {
  Comps comps;
  if (auto vec = dyn_cast<VectorType>(u.getType())) {
    for (int64_t j = 0; j < vec.getNumElements(); ++j)
      comps.push_back(
          spread(vector::ExtractOp::create(b, loc, u, ArrayRef<int64_t>{j})));
  } else {
    comps.push_back(spread(u));
  }
  return comps;
}

/// Whether `op` only moves components: vector.broadcast, vector.reduction,
/// vector.extract, vector.insert or vector.from_elements.
inline bool isComponentMove(Operation *op) {
  return isa<vector::BroadcastOp, vector::ReductionOp, vector::ExtractOp,
             vector::InsertOp, vector::FromElementsOp>(op);
}

/// Whether mapComponentMoves can map such an op: the forms the front end
/// emits (a broadcast of a scalar, an additive reduction without
/// accumulator, one constant position of a scalar in a vector).
inline bool isSupportedComponentMove(Operation *op) {
  if (auto bc = dyn_cast<vector::BroadcastOp>(op))
    return !isa<VectorType>(bc.getSource().getType());
  if (auto red = dyn_cast<vector::ReductionOp>(op))
    return red.getKind() == vector::CombiningKind::ADD && !red.getAcc();
  // The verifier keeps static positions in range, but allows -1 (poison).
  if (auto ex = dyn_cast<vector::ExtractOp>(op))
    return ex.getDynamicPosition().empty() &&
           ex.getStaticPosition().size() == 1 &&
           ex.getStaticPosition()[0] >= 0 &&
           !isa<VectorType>(ex.getResult().getType());
  if (auto ins = dyn_cast<vector::InsertOp>(op))
    return ins.getDynamicPosition().empty() &&
           ins.getStaticPosition().size() == 1 &&
           ins.getStaticPosition()[0] >= 0 &&
           !isa<VectorType>(ins.getValueToStore().getType());
  return isa<vector::FromElementsOp>(op);
}

/// Maps an op that only moves components (isSupportedComponentMove): its
/// results' components from its operands' (`operand`), summing with `add`.
/// Returns false, mapping nothing, for any other op.
inline bool mapComponentMoves(Operation *op, CompMap &map,
                              llvm::function_ref<Comps(Value)> operand,
                              llvm::function_ref<Value(Value, Value)> add) {
  if (auto bc = dyn_cast<vector::BroadcastOp>(op)) {
    Comps src = operand(bc.getSource());
    map[bc.getResult()] =
        Comps(numComponents(bc.getResult().getType()), src.front());
    return true;
  }
  if (auto red = dyn_cast<vector::ReductionOp>(op)) {
    Comps src = operand(red.getVector());
    Value sum = src.front();
    for (Value x : ArrayRef<Value>(src).drop_front())
      sum = add(sum, x);
    map[red.getResult()] = {sum};
    return true;
  }
  if (auto ex = dyn_cast<vector::ExtractOp>(op)) {
    map[ex.getResult()] = {operand(ex.getSource())[ex.getStaticPosition()[0]]};
    return true;
  }
  if (auto ins = dyn_cast<vector::InsertOp>(op)) {
    Comps dest = operand(ins.getDest());
    dest[ins.getStaticPosition()[0]] = operand(ins.getValueToStore()).front();
    map[ins.getResult()] = dest;
    return true;
  }
  if (auto fe = dyn_cast<vector::FromElementsOp>(op)) {
    Comps out;
    for (Value v : fe.getElements())
      out.push_back(operand(v).front());
    map[fe.getResult()] = out;
    return true;
  }
  return false;
}

/// Emits an elementwise arith or math op once per component: component j of
/// each result from component j of each operand (a scalar operand's only
/// component for every j). `componentType` gives a component's type from
/// the element type (itself on the GPU, a vector of lanes on the CPU);
/// `relaxed` lets the clones contract into FMAs. `emitComponent`, if given,
/// may emit component j of a one-result op itself from the mapped operands
/// (returning null leaves it to the clone).
inline void mapElementwise(
    OpBuilder &b, Operation *op, CompMap &map,
    llvm::function_ref<Comps(Value)> operand,
    llvm::function_ref<Type(Type)> componentType, bool relaxed,
    llvm::function_ref<Value(Operation *, IRMapping &)> emitComponent =
        nullptr) {
  unsigned n = numComponents(op->getResult(0).getType());
  SmallVector<Comps> operands;
  for (Value v : op->getOperands())
    operands.push_back(operand(v));
  SmallVector<Comps> results(op->getNumResults());
  for (unsigned j = 0; j < n; ++j) {
    IRMapping opMap;
    for (auto [v, comps] : llvm::zip(op->getOperands(), operands))
      opMap.map(v, comps.size() == 1 ? comps.front() : comps[j]);
    if (emitComponent)
      if (Value v = emitComponent(op, opMap)) {
        results[0].push_back(v);
        continue;
      }
    Operation *clone = b.clone(*op, opMap);
    if (relaxed)
      if (auto fmi = dyn_cast<arith::ArithFastMathInterface>(clone))
        clone->setAttr(fmi.getFastMathAttrName(),
                       arith::FastMathFlagsAttr::get(
                           b.getContext(), arith::FastMathFlags::contract));
    for (auto [k, r] : llvm::enumerate(clone->getResults())) {
      r.setType(componentType(getElementTypeOrSelf(r.getType())));
      results[k].push_back(r);
    }
  }
  for (auto [r, comps] : llvm::zip(op->getResults(), results))
    map[r] = comps;
}

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_COMPONENTS_H
