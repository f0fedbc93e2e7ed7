//===- ReductionSpecs.h - the runtime's view of one reduction ---*- C++ -*-===//
//
// One mapping from an optim.tensor_reduce op to the runtime's ReductionSpec
// (optim/Rule.h), shared by describeRule (the manifest) and the lowerings
// (the optim_reductions_ descriptor), which the loaders compare: one
// definition, so that the two cannot drift apart.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_CONVERSION_REDUCTIONSPECS_H
#define OPTIM_CONVERSION_REDUCTIONSPECS_H

#include "optim/Dialect/OptimOps.h"
#include "optim/Rule.h"

namespace mlir::optim {

/// The spec of `op` at reduction level `level` (getReductionLevels).
::optim::ReductionSpec reductionSpecOf(TensorReduceOp op, unsigned level);

} // namespace mlir::optim

#endif // OPTIM_CONVERSION_REDUCTIONSPECS_H
