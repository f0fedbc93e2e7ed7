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
#include <string>
#include <vector>

namespace optim {
namespace detail {

/// Throws an optim::Error naming `who` (e.g. "optim::Optimizer") when the
/// rule's kernels do not match its signature: a rule with reductions needs
/// both passes, one without needs the one-pass kernel. (A Rule built with
/// the constructor that does not match its RuleInfo would otherwise call a
/// null kernel.)
void checkKernelsMatchSignature(const Rule &rule, const char *who);

/// Row and column reductions (ReductionSpec::axis) are skipped: their slots
/// are never read (KernelABI.h, version 10).
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
/// The same for the reductions of level `level` only (KernelABI.h, version
/// 9, "Nested reductions"): the slots of other levels of `reduced` keep
/// their values.
void combineReductions(const std::vector<ReductionSpec> &reductions,
                       unsigned level, const std::vector<size_t> &chunkTensor,
                       const std::vector<int64_t> &tensorSize,
                       const double *partials, double *reduced);

/// The pieces of the combine above, for the row and column reductions of
/// rules with axes (KernelABI.h, version 10), which the Optimizer combines
/// per row and column: the value before any partial (0, -inf, +inf), one
/// partial more (sum, max or min; NaN propagates), and the result over
/// `coordinates` (mean divides, norm takes the square root).
double reductionIdentity(ReductionKind kind);
double combinePartial(ReductionKind kind, double acc, double partial);
double finishReduction(ReductionKind kind, double acc, int64_t coordinates);

/// Whether stage `level` of optim_reduce_ computes anything: some
/// reduction other than a shape value has that level (KernelABI.h, version
/// 11: a stage whose level has none is not run).
bool stageRuns(const std::vector<ReductionSpec> &reductions, unsigned level);

/// Whether any reduction is a shape value (rows, cols).
bool hasShapeValues(const std::vector<ReductionSpec> &reductions);

/// Writes the shape values (KernelABI.h, version 11): reduced[c * R + r] =
/// rows[c] for each `rows` reduction r and chunk c < chunks, cols[c] for
/// each `cols` one (R and C of chunk c's tensor, as doubles); other slots
/// are left alone.
void fillShapeValues(const std::vector<ReductionSpec> &reductions,
                     size_t chunks, const int64_t *rows, const int64_t *cols,
                     double *reduced);

/// The largest level of `reductions` (L: stages 0..L of optim_reduce_); 0
/// for none.
unsigned maxReductionLevel(const std::vector<ReductionSpec> &reductions);

/// The largest level a reduction may have; a descriptor or manifest that
/// states more is not from this compiler.
constexpr unsigned kMaxReductionLevel = 65535;

/// Why `reductions` cannot be a compiled rule's, or "" when they can: a
/// level over kMaxReductionLevel, or a level s > 0 without any reduction of
/// level s - 1 (a level is 1 + the largest level of the reductions its
/// operand depends on, so every level below the largest one occurs). The
/// text names the first offending entry as the descriptor spells it
/// ("reduction 1 ('norm:2') has level 2, but no reduction has level 1").
std::string checkReductionLevels(const std::vector<ReductionSpec> &reductions);

/// The most iterations a newton_schulz reduction may make (the compiler's
/// verifier refuses more).
constexpr int kMaxNewtonSchulzSteps = 100;

/// Why `spec` cannot be a compiled rule's reduction, or "" (KernelABI.h,
/// version 11): newton_schulz exactly with axis Matrix, never global, with
/// steps in [0, 100], three finite coefficients and a finite epsilon > 0;
/// the shape values rows and cols without axis, global or level; axis
/// Matrix for nothing else. The text says what is wrong ("newton_schulz
/// has 101 steps; ...").
std::string checkReductionSpec(const ReductionSpec &spec);

/// Whether two lists of reductions are the same as values (kinds, scopes,
/// levels, axes, newton_schulz's parameters): what the loaders compare a
/// manifest's list with the kernels' descriptor by, since descriptorNumber
/// may spell a parameter differently with another standard library.
bool sameReductions(const std::vector<ReductionSpec> &x,
                    const std::vector<ReductionSpec> &y);

/// Parses a descriptor optim_reductions_<name> (KernelABI.h): entries
/// separated by ',', each kind ["@global" | "@row" | "@col"] [":" level], level a decimal
/// integer 1..65535 without sign or leading zeros (":level" only for a
/// level > 0); "" is no reduction. Version 11: "rows" and "cols" alone, and
/// "newton_schulz(<steps>;<a>;<b>;<c>;<eps>)@matrix" [":" level], steps a
/// decimal integer 0..100 and the others numbers as strtod reads them
/// (optim::descriptorNumber spells them). Returns "" and sets `out`, or says what
/// is wrong, naming the entry (`out` is then unspecified). The levels are
/// also checked as checkReductionLevels does, each entry as
/// checkReductionSpec does.
std::string parseReductionsDescriptor(const std::string &text,
                                      std::vector<ReductionSpec> &out);

/// One step's reductions, stage by stage (KernelABI.h, version 9): for
/// s = 0 .. L, runStage(s) (which runs optim_reduce_ with `stage` s over
/// every chunk, writing `partials`), then the level-s slots of `partials`
/// are combined into `reduced`. Afterwards every slot of `reduced` holds
/// its value for optim_rule_. Stages without a reduction other than a
/// shape value are skipped (KernelABI.h, version 11).
template <typename RunStage>
void runReductionStages(const std::vector<ReductionSpec> &reductions,
                        const std::vector<size_t> &chunkTensor,
                        const std::vector<int64_t> &tensorSize,
                        const double *partials, double *reduced,
                        RunStage runStage) {
  unsigned last = maxReductionLevel(reductions);
  for (unsigned s = 0; s <= last; ++s) {
    // A stage of shape values only computes nothing (version 11).
    if (!stageRuns(reductions, s))
      continue;
    runStage(int64_t(s));
    combineReductions(reductions, s, chunkTensor, tensorSize, partials,
                      reduced);
  }
}

/// The factor u that turns a coordinate's operand of a reduction into its
/// cotangent (KernelABI.h, "Reverse mode of rules with tensor reductions"),
/// from the sum d of the cotangents of the reduced value rho over its
/// coordinates, the number n of them that tie with rho (max, min) and the
/// number of coordinates reduced over: d (sum), d / coordinates (mean),
/// rho > 0 ? d / rho : 0 (norm), n > 0 ? d / n : 0 (max, min), 0 for the
/// shape values and matrix functions.
double cotangentFactor(ReductionKind kind, double d, double rho, double n,
                       int64_t coordinates);

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

/// The same combine from per-chunk sums `d` and tie counts `n` (doubles,
/// c * R + r) for the reductions of one `level` only: the others get
/// u_r = 0 (and rho_r as above). Nested reductions (KernelABI.h) run
/// optim_vjp_reductions_kernel_ once per level, highest first: a level's D_r
/// is complete once every higher level has added what it sends back.
void combineReductionCotangents(const std::vector<ReductionSpec> &reductions,
                                const std::vector<size_t> &chunkTensor,
                                const std::vector<int64_t> &tensorSize,
                                const double *reduced, const double *d,
                                const double *n, unsigned level, double *ru);

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_REDUCTIONS_H
