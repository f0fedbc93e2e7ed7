//===- Describe.h - the runtime's view of a rule's signature ----*- C++ -*-===//

#ifndef OPTIM_COMPILER_DESCRIBE_H
#define OPTIM_COMPILER_DESCRIBE_H

#include "optim/Dialect/OptimOps.h"
#include "optim/Rule.h"

namespace optim {

/// The signature of an optim.rule as the runtime and manifests describe it.
RuleInfo describeRule(mlir::optim::RuleOp rule);

} // namespace optim

#endif // OPTIM_COMPILER_DESCRIBE_H
