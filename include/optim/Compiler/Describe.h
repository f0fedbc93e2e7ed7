//===- Describe.h - the runtime's view of a rule's signature ----*- C++ -*-===//

#ifndef OPTIM_COMPILER_DESCRIBE_H
#define OPTIM_COMPILER_DESCRIBE_H

#include "optim/Dialect/OptimOps.h"
#include "optim/Layer.h"
#include "optim/Rule.h"

namespace optim {

/// The signature of an optim.rule as the runtime and manifests describe it.
/// Call it on the IR that is then lowered: it records each tensor
/// reduction's level on the op (mlir::optim::kReductionLevelAttr), which the
/// lowerings keep when folding would lower it, so that the kernels' stages
/// are the ones RuleInfo lists.
RuleInfo describeRule(mlir::optim::RuleOp rule);

/// The signature of an optim.layer (and its qp's dimensions) as optim::Layer
/// and layer manifests describe it; mirrors optim-lower-layers' choice of
/// which operands are batched (those computed from an input). The layer
/// must solve a qp.
LayerInfo describeLayer(mlir::optim::LayerOp layer);

} // namespace optim

#endif // OPTIM_COMPILER_DESCRIBE_H
