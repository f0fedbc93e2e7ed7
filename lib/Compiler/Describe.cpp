//===- Describe.cpp - the runtime's view of a rule's signature -------------===//

#include "optim/Compiler/Describe.h"

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
    info.states.push_back(
        {mlir::cast<mlir::StringAttr>(rule.getStateNames()[i]).str(),
         vec ? vec.getNumElements() : 1, rule.getStateInits()[i]});
  }
  for (unsigned i = 0, e = rule.getNumWeights(); i < e; ++i) {
    auto type = mlir::cast<mlir::RankedTensorType>(rule.getWeight(i).getType());
    info.weights.push_back(
        {mlir::cast<mlir::StringAttr>(rule.getWeightNames()[i]).str(),
         std::vector<int64_t>(type.getShape().begin(), type.getShape().end())});
  }
  return info;
}
