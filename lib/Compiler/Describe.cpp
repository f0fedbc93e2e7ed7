//===- Describe.cpp - the runtime's view of a rule's signature -------------===//

#include "optim/Compiler/Describe.h"
#include "optim/Conversion/ReductionSpecs.h"

#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseSet.h"

using namespace optim;


RuleInfo optim::describeRule(mlir::optim::RuleOp rule) {
  RuleInfo info;
  info.name = rule.getSymName().str();
  info.dtype = rule.getElementType().isF64() ? DType::F64 : DType::F32;
  for (unsigned i = 0, e = rule.getNumHypers(); i < e; ++i)
    info.hypers.push_back(
        {mlir::cast<mlir::StringAttr>(rule.getHyperNames()[i]).str(),
         rule.getHyperDefaults()[i], rule.getHyperConst()[i]});
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i) {
    auto vec = mlir::dyn_cast<mlir::VectorType>(rule.getState(i).getType());
    StateSpec state;
    state.name = mlir::cast<mlir::StringAttr>(rule.getStateNames()[i]).str();
    state.size = vec ? vec.getNumElements() : 1;
    state.init = rule.getStateInits()[i];
    // `row state` / `col state` (KernelABI.h version 10); the verifier
    // allows only "none", "row" and "col", and scalars for the last two.
    llvm::StringRef axis = rule.getStateAxis(i);
    state.axis = axis == "row"   ? Axis::Row
                 : axis == "col" ? Axis::Col
                                 : Axis::None;
    info.states.push_back(std::move(state));
  }
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i) {
    auto type = mlir::cast<mlir::RankedTensorType>(rule.getWeight(i).getType());
    info.weights.push_back(
        {mlir::cast<mlir::StringAttr>(rule.getWeightNames()[i]).str(),
         std::vector<int64_t>(type.getShape().begin(), type.getShape().end())});
  }
  for (unsigned i = 0, e = rule.getNumInputs(); i < e; ++i)
    info.inputs.push_back(rule.getInputName(i).str());
  // The rule's list, not its ops: a site whose draw is dead still has its
  // number (Philox counter word 3), and the descriptor lists it.
  if (mlir::ArrayAttr kinds = rule.getRandomAttr())
    for (llvm::StringRef kind : kinds.getAsValueRange<mlir::StringAttr>())
      info.random.push_back(kind == "normal" ? RandomKind::Normal
                                             : RandomKind::Uniform);
  // One slot per op, in body order (pre-order: an op nested in a region
  // comes where its region is), the order the lowering numbers them in;
  // each with its level (KernelABI.h version 9). The level is recorded on
  // the op: the pipelines fold constant hyperparameters before they lower,
  // which can remove a dependence (`select(k > 0, tensor_mean(g), g)` with
  // `const k = 0`), and the kernels must then still run each reduction in
  // the stage this RuleInfo gives it.
  llvm::DenseMap<mlir::Operation *, unsigned> levels =
      mlir::optim::getReductionLevels(rule);
  mlir::Builder b(rule.getContext());
  rule.walk<mlir::WalkOrder::PreOrder>([&](mlir::optim::TensorReduceOp op) {
    unsigned level = levels.lookup(op);
    op->setAttr(mlir::optim::kReductionLevelAttr, b.getI64IntegerAttr(level));
    ReductionSpec spec = mlir::optim::reductionSpecOf(op, level);
    info.reductions.push_back(spec);
  });
  return info;
}

static std::vector<int64_t> shapeOf(mlir::Type t) {
  auto r = mlir::cast<mlir::RankedTensorType>(t);
  return {r.getShape().begin(), r.getShape().end()};
}

/// The runtime's view of a layer; mirrors optim-lower-layers' choice of
/// which operands are batched (those computed from an input).
LayerInfo optim::describeLayer(mlir::optim::LayerOp layer) {
  mlir::optim::QPOp qp;
  for (auto q : layer.getBodyBlock().getOps<mlir::optim::QPOp>())
    qp = q;
  LayerInfo info;
  info.name = layer.getSymName().str();
  info.dtype = mlir::getElementTypeOrSelf(qp.getQvec().getType()).isF64()
                   ? DType::F64
                   : DType::F32;
  for (unsigned i = 0; i < layer.getNumInputs(); ++i)
    info.inputs.push_back(
        {mlir::cast<mlir::StringAttr>(layer.getInputNames()[i]).str(),
         shapeOf(layer.getInput(i).getType())});
  for (unsigned i = 0; i < layer.getNumWeights(); ++i)
    info.weights.push_back(
        {mlir::cast<mlir::StringAttr>(layer.getWeightNames()[i]).str(),
         shapeOf(layer.getWeight(i).getType())});
  mlir::Operation *ret = layer.getBodyBlock().getTerminator();
  for (unsigned i = 0; i < ret->getNumOperands(); ++i) {
    mlir::Value v = ret->getOperand(i);
    info.outputs.push_back(
        {mlir::cast<mlir::StringAttr>(layer.getOutputNames()[i]).str(),
         shapeOf(v.getType())});
    info.outputKinds.push_back(
        int(mlir::cast<mlir::OpResult>(v).getResultNumber()));
  }
  info.n = shapeOf(qp.getQvec().getType())[0];
  info.m = qp.getB() ? shapeOf(qp.getB().getType())[0] : 0;
  info.p = qp.getH() ? shapeOf(qp.getH().getType())[0] : 0;
  info.hasQ = bool(qp.getQmat());
  info.tol = qp.getTol().convertToDouble();
  info.maxIter = qp.getMaxIter();
  llvm::DenseSet<mlir::Value> batched;
  for (unsigned i = 0; i < layer.getNumInputs(); ++i)
    batched.insert(layer.getInput(i));
  for (mlir::Operation &op : layer.getBodyBlock().without_terminator())
    if (llvm::any_of(op.getOperands(),
                     [&](mlir::Value v) { return batched.contains(v); }))
      for (mlir::Value r : op.getResults())
        batched.insert(r);
  mlir::Value ops[6] = {qp.getQmat(), qp.getQvec(), qp.getA(),
                        qp.getB(),    qp.getG(),    qp.getH()};
  for (int k = 0; k < 6; ++k)
    info.batched[k] = ops[k] && batched.contains(ops[k]);
  return info;
}

