//===- Reductions.h - combine the partials of tensor reductions -*- C++ -*-===//
//
// Internal to the runtime. A rule with tensor reductions (KernelABI.h,
// version 6) first runs optim_reduce_<name>, which leaves R partials per
// chunk; this turns them into the value of each reduction for each chunk's
// tensor (or for all tensors), which optim_rule_<name> then reads; and, in
// the reverse mode, the chunks' cotangents of those values into the
// cotangents the second VJP kernel reads. Kept apart from the executors so
// that every executor (and optim::Trajectory) combines the same way.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_REDUCTIONS_H
#define OPTIM_RUNTIME_LIB_REDUCTIONS_H

#include "optim/Rule.h"

#include <cstdint>
#include <vector>

namespace optim {
namespace detail {

/// Throws an optim::Error naming `who` (e.g. "optim::Optimizer") when the
/// rule's kernels do not match its signature: a rule with reductions needs
/// both passes, one without needs the one-pass kernel. (A Rule built with
/// the constructor that does not match its RuleInfo would otherwise call a
/// null kernel.)
void checkKernelsMatchSignature(const Rule &rule, const char *who);

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

/// The runtime's step of the reverse mode of a rule with reductions
/// (KernelABI.h, "Reverse mode of rules with tensor reductions"), between
/// its two VJP kernels. `partials` holds `perChunk` values of `dtype` per
/// chunk, as optim_vjp_reduced_kernel_ leaves them, whose last 2R are the
/// chunk's sums of dL/drho_r, then its counts of ties with rho_r; `reduced`
/// holds the values rho the step ran with (c * R + r, as for
/// combineReductions). Sums and counts are added in double, in chunk order,
/// over the same chunks as combineReductions combines, into D_r and n_r;
/// `ru` (2R doubles per chunk) gets ru[c * 2R + r] = rho_r and
/// ru[c * 2R + R + r] = u_r: D_r (sum), D_r / N (mean, N the coordinates
/// reduced over), rho_r > 0 ? D_r / rho_r : 0 (norm), n_r > 0 ? D_r / n_r : 0
/// (max, min: ties share the cotangent).
void combineReductionCotangents(const std::vector<ReductionSpec> &reductions,
                                const std::vector<size_t> &chunkTensor,
                                const std::vector<int64_t> &tensorSize,
                                const double *reduced, DType dtype,
                                const void *partials, size_t perChunk,
                                double *ru);

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_REDUCTIONS_H
