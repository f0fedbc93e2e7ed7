//===- Reductions.h - combine the partials of tensor reductions -*- C++ -*-===//
//
// Internal to the runtime. A rule with tensor reductions (KernelABI.h,
// version 6) first runs optim_reduce_<name>, which leaves R partials per
// chunk; this turns them into the value of each reduction for each chunk's
// tensor (or for all tensors), which optim_rule_<name> then reads. Kept
// apart from the executor so that every executor combines the same way.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_REDUCTIONS_H
#define OPTIM_RUNTIME_LIB_REDUCTIONS_H

#include "optim/Rule.h"

#include <cstdint>
#include <vector>

namespace optim {
namespace detail {

/// `partials` and `reduced` hold reductions.size() doubles per chunk
/// (chunk c, reduction r at c * R + r). chunkTensor[c] is the tensor of
/// chunk c: non-decreasing, the chunks of a tensor being consecutive;
/// tensorSize[i] is the number of coordinates of tensor i. The partials are
/// combined in chunk order (sum, max or min; NaN propagates through max and
/// min), over the chunks of one tensor or, for a global reduction, of all
/// of them; then mean divides the sum by the coordinates it covers and norm
/// takes its square root. The result does not depend on how the partials
/// were computed in parallel.
void combineReductions(const std::vector<ReductionSpec> &reductions,
                       const std::vector<size_t> &chunkTensor,
                       const std::vector<int64_t> &tensorSize,
                       const double *partials, double *reduced);

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_REDUCTIONS_H
