//===- Reductions.cpp - combine the partials of tensor reductions ---------===//

#include "Reductions.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <string>

using namespace optim;

static double identity(ReductionKind kind) {
  switch (kind) {
  case ReductionKind::Max:
    return -std::numeric_limits<double>::infinity();
  case ReductionKind::Min:
    return std::numeric_limits<double>::infinity();
  default:
    return 0.0;
  }
}

static double combine(ReductionKind kind, double acc, double x) {
  switch (kind) {
  // Once acc is NaN neither comparison holds, so it stays NaN.
  case ReductionKind::Max:
    return x > acc || std::isnan(x) ? x : acc;
  case ReductionKind::Min:
    return x < acc || std::isnan(x) ? x : acc;
  default: // Sum, and the sums of Mean and Norm.
    return acc + x;
  }
}

static double finish(ReductionKind kind, double acc, int64_t coordinates) {
  switch (kind) {
  case ReductionKind::Mean:
    // No chunk reads the mean of nothing: a tensor without coordinates has
    // no chunk.
    return acc / double(coordinates);
  case ReductionKind::Norm:
    return std::sqrt(acc);
  default:
    return acc;
  }
}

/// Calls fn(first, last, coordinates) for each run of chunks [first, last)
/// whose partials make up one value of a reduction, in chunk order: all
/// chunks for a global one, else the chunks of each tensor, `coordinates`
/// being the number of coordinates the run covers. The forward combine and
/// the reverse one group alike, so that a cotangent goes back over exactly
/// the coordinates its value was reduced over.
template <typename Fn>
static void forEachGroup(bool global, const std::vector<size_t> &chunkTensor,
                         const std::vector<int64_t> &tensorSize, Fn fn) {
  size_t chunks = chunkTensor.size();
  if (chunks == 0)
    return;
  if (global) {
    int64_t total = 0;
    for (int64_t n : tensorSize)
      total += n;
    fn(size_t(0), chunks, total);
    return;
  }
  for (size_t first = 0; first < chunks;) {
    size_t tensor = chunkTensor[first], last = first;
    while (last < chunks && chunkTensor[last] == tensor)
      ++last;
    fn(first, last, tensorSize[tensor]);
    first = last;
  }
}

/// Combines the slots r of `reductions` for which `wanted(r)` holds.
template <typename Wanted>
static void combineSlots(const std::vector<ReductionSpec> &reductions,
                         const std::vector<size_t> &chunkTensor,
                         const std::vector<int64_t> &tensorSize,
                         const double *partials, double *reduced,
                         Wanted wanted) {
  size_t R = reductions.size();
  for (size_t r = 0; r < R; ++r) {
    // Row and column reductions are combined per row and column by the
    // Optimizer (KernelABI.h, version 10); their slots here are unused.
    // Shape values (version 11) are filled in by the runtime: no kernel
    // writes their partials.
    if (!wanted(r) || reductions[r].axis != Axis::None ||
        isShapeValue(reductions[r].kind))
      continue;
    ReductionKind kind = reductions[r].kind;
    forEachGroup(reductions[r].global, chunkTensor, tensorSize,
                 [&](size_t first, size_t last, int64_t coordinates) {
                   double acc = identity(kind);
                   for (size_t c = first; c < last; ++c)
                     acc = combine(kind, acc, partials[c * R + r]);
                   acc = finish(kind, acc, coordinates);
                   for (size_t c = first; c < last; ++c)
                     reduced[c * R + r] = acc;
                 });
  }
}

void detail::combineReductions(const std::vector<ReductionSpec> &reductions,
                               const std::vector<size_t> &chunkTensor,
                               const std::vector<int64_t> &tensorSize,
                               const double *partials, double *reduced) {
  combineSlots(reductions, chunkTensor, tensorSize, partials, reduced,
               [](size_t) { return true; });
}

void detail::combineReductions(const std::vector<ReductionSpec> &reductions,
                               unsigned level,
                               const std::vector<size_t> &chunkTensor,
                               const std::vector<int64_t> &tensorSize,
                               const double *partials, double *reduced) {
  combineSlots(reductions, chunkTensor, tensorSize, partials, reduced,
               [&](size_t r) { return reductions[r].level == level; });
}

double detail::reductionIdentity(ReductionKind kind) { return identity(kind); }
double detail::combinePartial(ReductionKind kind, double acc, double partial) {
  return combine(kind, acc, partial);
}
double detail::finishReduction(ReductionKind kind, double acc,
                               int64_t coordinates) {
  return finish(kind, acc, coordinates);
}

bool detail::stageRuns(const std::vector<ReductionSpec> &reductions,
                       unsigned level) {
  for (const ReductionSpec &r : reductions)
    if (r.level == level && !isShapeValue(r.kind))
      return true;
  return false;
}

bool detail::hasShapeValues(const std::vector<ReductionSpec> &reductions) {
  for (const ReductionSpec &r : reductions)
    if (isShapeValue(r.kind))
      return true;
  return false;
}

void detail::fillShapeValues(const std::vector<ReductionSpec> &reductions,
                             size_t chunks, const int64_t *rows,
                             const int64_t *cols, double *reduced) {
  size_t R = reductions.size();
  for (size_t r = 0; r < R; ++r) {
    ReductionKind kind = reductions[r].kind;
    if (!isShapeValue(kind))
      continue;
    const int64_t *value = kind == ReductionKind::Rows ? rows : cols;
    for (size_t c = 0; c < chunks; ++c)
      reduced[c * R + r] = double(value[c]);
  }
}

unsigned
detail::maxReductionLevel(const std::vector<ReductionSpec> &reductions) {
  unsigned last = 0;
  for (const ReductionSpec &r : reductions)
    last = std::max(last, r.level);
  return last;
}

static bool kindNamed(const std::string &name, ReductionKind &kind) {
  for (ReductionKind k :
       {ReductionKind::Sum, ReductionKind::Mean, ReductionKind::Norm,
        ReductionKind::Max, ReductionKind::Min, ReductionKind::NewtonSchulz,
        ReductionKind::Rows, ReductionKind::Cols})
    if (name == reductionKindName(k)) {
      kind = k;
      return true;
    }
  return false;
}

/// Entry r as the descriptor spells it: "norm@global:2".
static std::string entryText(const std::vector<ReductionSpec> &reductions,
                             size_t r) {
  return reductionsDescriptor({reductions[r]});
}

std::string
detail::checkReductionLevels(const std::vector<ReductionSpec> &reductions) {
  std::vector<bool> present;
  for (const ReductionSpec &r : reductions)
    // A shape value does not raise the level of what depends on it
    // (version 11): it makes no level present.
    if (r.level <= kMaxReductionLevel && !isShapeValue(r.kind)) {
      if (present.size() <= r.level)
        present.resize(r.level + 1, false);
      present[r.level] = true;
    }
  for (size_t r = 0; r < reductions.size(); ++r) {
    unsigned level = reductions[r].level;
    std::string entry = "reduction " + std::to_string(r) + " ('" +
                        entryText(reductions, r) + "')";
    if (level > kMaxReductionLevel)
      return entry + " has level " + std::to_string(level) + ", more than " +
             std::to_string(kMaxReductionLevel);
    // A level is 1 + the largest level its operand depends on: every level
    // below it occurs, or the reductions are not a compiler's.
    if (level > 0 && !present[level - 1])
      return entry + " has level " + std::to_string(level) +
             ", but no reduction has level " + std::to_string(level - 1);
  }
  return "";
}

std::string detail::checkReductionSpec(const ReductionSpec &spec) {
  const char *kind = reductionKindName(spec.kind);
  if (spec.kind == ReductionKind::NewtonSchulz) {
    if (spec.axis != Axis::Matrix || spec.global)
      return std::string("newton_schulz is ") +
             (spec.global ? "global" : std::string("per ") +
                                           axisName(spec.axis)) +
             "; a matrix function has axis matrix and is not global";
    if (spec.nsSteps < 0 || spec.nsSteps > kMaxNewtonSchulzSteps)
      return "newton_schulz has " + std::to_string(spec.nsSteps) +
             " steps; the steps are 0.." +
             std::to_string(kMaxNewtonSchulzSteps);
    for (double c : spec.nsCoefficients)
      if (!std::isfinite(c))
        return "newton_schulz has a non-finite coefficient";
    if (!std::isfinite(spec.nsEps) || !(spec.nsEps > 0))
      return "newton_schulz has epsilon " + descriptorNumber(spec.nsEps) +
             "; it must be finite and positive";
    return "";
  }
  if (spec.axis == Axis::Matrix)
    return std::string(kind) +
           " has axis matrix; only newton_schulz is a matrix function";
  if (isShapeValue(spec.kind) &&
      (spec.axis != Axis::None || spec.global || spec.level != 0))
    return std::string(kind) +
           " is a shape value: it has no axis, is not global and has level "
           "0";
  return "";
}

/// Parses "<steps>;<a>;<b>;<c>;<eps>" into `spec`, or says why not.
static std::string parseNewtonSchulz(const std::string &params,
                                     ReductionSpec &spec) {
  std::vector<std::string> fields;
  for (size_t begin = 0;;) {
    size_t semi = params.find(';', begin);
    fields.push_back(params.substr(begin, semi == std::string::npos
                                              ? std::string::npos
                                              : semi - begin));
    if (semi == std::string::npos)
      break;
    begin = semi + 1;
  }
  if (fields.size() != 5)
    return "has " + std::to_string(fields.size()) +
           " parameters; newton_schulz has 5 (steps, a, b, c, eps)";
  const std::string &steps = fields[0];
  if (steps.empty() || steps.size() > 3 ||
      steps.find_first_not_of("0123456789") != std::string::npos ||
      (steps.size() > 1 && steps[0] == '0'))
    return "has malformed steps '" + steps +
           "' (an integer 0..100 in decimal without sign or leading zeros)";
  spec.nsSteps = std::stoi(steps);
  double values[4];
  for (size_t i = 1; i < 5; ++i) {
    const std::string &f = fields[i];
    if (!parseDescriptorNumber(f, values[i - 1]))
      return "has a malformed number '" + f + "'";
  }
  for (size_t i = 0; i < 3; ++i)
    spec.nsCoefficients[i] = values[i];
  spec.nsEps = values[3];
  std::string why = detail::checkReductionSpec(spec);
  return why.empty() ? "" : "is invalid: " + why;
}

std::string detail::parseReductionsDescriptor(const std::string &text,
                                              std::vector<ReductionSpec> &out) {
  out.clear();
  if (text.empty())
    return "";
  const std::string syntax =
      " (an entry is a kind, sum, mean, norm, max or min, then \"@global\" "
      "for a global one or \"@row\" / \"@col\" for a row or column one, "
      "then \":<level>\" for a level 1..65535 in decimal without sign or "
      "leading zeros)";
  // Version 11's entries (matrix functions, shape values) say what is
  // wrong with them in their own words.
  const std::string syntax11 =
      " (a matrix function is "
      "\"newton_schulz(<steps>;<a>;<b>;<c>;<eps>)@matrix\", then a level as "
      "above; a shape value is \"rows\" or \"cols\" alone)";
  size_t index = 0;
  for (size_t begin = 0;; ++index) {
    size_t comma = text.find(',', begin);
    std::string entry = text.substr(
        begin, comma == std::string::npos ? std::string::npos : comma - begin);
    std::string which = "entry " + std::to_string(index) + " '" + entry + "'";
    ReductionSpec spec;
    size_t colon = entry.find(':');
    std::string head = entry.substr(0, colon);
    auto suffix = [&](const std::string &tail) {
      if (head.size() > tail.size() &&
          head.compare(head.size() - tail.size(), tail.size(), tail) == 0) {
        head.resize(head.size() - tail.size());
        return true;
      }
      return false;
    };
    if (suffix("@global"))
      spec.global = true;
    else if (suffix("@row"))
      spec.axis = Axis::Row;
    else if (suffix("@col"))
      spec.axis = Axis::Col;
    else if (suffix("@matrix"))
      spec.axis = Axis::Matrix;
    // A matrix function's parameters (version 11).
    std::string params;
    bool hasParams = false;
    if (size_t open = head.find('('); open != std::string::npos) {
      if (head.back() != ')')
        return which + " is not a reduction" + syntax + syntax11;
      params = head.substr(open + 1, head.size() - open - 2);
      head.resize(open);
      hasParams = true;
    }
    if (!kindNamed(head, spec.kind))
      return which + " is not a reduction" + syntax +
             (hasParams || spec.axis == Axis::Matrix ? syntax11 : "");
    if (hasParams != (spec.kind == ReductionKind::NewtonSchulz))
      return which + (hasParams ? " has parameters; only newton_schulz has"
                                : " lacks its parameters") +
             syntax11;
    if (hasParams) {
      std::string why = parseNewtonSchulz(params, spec);
      if (!why.empty())
        return which + " " + why;
    }
    if (colon != std::string::npos) {
      std::string level = entry.substr(colon + 1);
      bool digits = !level.empty() && level.size() <= 5 &&
                    level.find_first_not_of("0123456789") == std::string::npos;
      unsigned value = digits ? unsigned(std::stoul(level)) : 0;
      if (!digits || level[0] == '0' || value > kMaxReductionLevel)
        return which + " has a malformed level '" + level + "'" + syntax;
      spec.level = value;
    }
    if (std::string why = checkReductionSpec(spec); !why.empty())
      return which + " is invalid: " + why;
    out.push_back(spec);
    if (comma == std::string::npos)
      break;
    begin = comma + 1;
  }
  return checkReductionLevels(out);
}

double detail::cotangentFactor(ReductionKind kind, double d, double rho,
                               double n, int64_t coordinates) {
  switch (kind) {
  case ReductionKind::Sum:
    return d;
  case ReductionKind::Mean:
    return d / double(coordinates);
  case ReductionKind::Norm:
    // The norm's derivative x / rho is 0/0 at rho = 0, where every x is 0:
    // take the subgradient 0 (NaN fails rho > 0 too).
    return rho > 0 ? d / rho : 0.0;
  case ReductionKind::Max:
  case ReductionKind::Min:
    // Every coordinate that attains the extremum gets an equal share; none
    // does when rho is NaN.
    return n > 0 ? d / n : 0.0;
  case ReductionKind::NewtonSchulz:
    // No reverse mode (the compiler refuses it): no cotangent.
    return 0.0;
  case ReductionKind::Rows:
  case ReductionKind::Cols:
    // Constants of the tensor's shape: no cotangent.
    return 0.0;
  }
  return 0.0;
}

/// The combine of the reverse mode from per-chunk sums and tie counts;
/// `level` < 0: every reduction, else only those of that level.
static void combineCotangents(const std::vector<ReductionSpec> &reductions,
                              const std::vector<size_t> &chunkTensor,
                              const std::vector<int64_t> &tensorSize,
                              const double *reduced, const double *dChunk,
                              const double *nChunk, int level, double *ru) {
  size_t R = reductions.size();
  for (size_t r = 0; r < R; ++r) {
    ReductionKind kind = reductions[r].kind;
    bool active = level < 0 || reductions[r].level == unsigned(level);
    forEachGroup(
        reductions[r].global, chunkTensor, tensorSize,
        [&](size_t first, size_t last, int64_t coordinates) {
          double d = 0.0, n = 0.0;
          for (size_t c = first; c < last; ++c) {
            d += dChunk[c * R + r];
            n += nChunk[c * R + r];
          }
          double u = active ? detail::cotangentFactor(
                                  kind, d, reduced[first * R + r], n,
                                  coordinates)
                            : 0.0;
          for (size_t c = first; c < last; ++c) {
            ru[c * 2 * R + r] = reduced[c * R + r];
            ru[c * 2 * R + R + r] = u;
          }
        });
  }
}

template <typename T>
static void splitPartials(const T *partials, size_t numChunks, size_t R,
                          size_t perChunk, std::vector<double> &d,
                          std::vector<double> &n) {
  size_t sums = perChunk - 2 * R, ties = sums + R;
  for (size_t c = 0; c < numChunks; ++c)
    for (size_t r = 0; r < R; ++r) {
      d[c * R + r] = double(partials[c * perChunk + sums + r]);
      n[c * R + r] = double(partials[c * perChunk + ties + r]);
    }
}

void detail::combineReductionCotangents(
    const std::vector<ReductionSpec> &reductions,
    const std::vector<size_t> &chunkTensor,
    const std::vector<int64_t> &tensorSize, const double *reduced,
    DType dtype, const void *partials, size_t perChunk, double *ru) {
  size_t R = reductions.size();
  if (perChunk < 2 * R)
    throw Error("optim: " + std::to_string(perChunk) +
                " partials per chunk cannot hold the cotangents and tie "
                "counts of " +
                std::to_string(R) + " reductions");
  size_t numChunks = chunkTensor.size();
  std::vector<double> d(numChunks * R), n(numChunks * R);
  if (dtype == DType::F32)
    splitPartials(static_cast<const float *>(partials), numChunks, R, perChunk,
                  d, n);
  else
    splitPartials(static_cast<const double *>(partials), numChunks, R,
                  perChunk, d, n);
  combineCotangents(reductions, chunkTensor, tensorSize, reduced, d.data(),
                    n.data(), -1, ru);
}

void detail::combineReductionCotangents(
    const std::vector<ReductionSpec> &reductions,
    const std::vector<size_t> &chunkTensor,
    const std::vector<int64_t> &tensorSize, const double *reduced,
    const double *d, const double *n, unsigned level, double *ru) {
  combineCotangents(reductions, chunkTensor, tensorSize, reduced, d, n,
                    int(level), ru);
}

void detail::checkKernelsMatchSignature(const Rule &rule, const char *who) {
  const RuleInfo &ri = rule.info();
  // The step runs one stage per level up to the largest: a level no
  // compiler gives would be a runaway loop, or kernels that read values no
  // stage combined.
  std::string levels = checkReductionLevels(ri.reductions);
  if (!levels.empty())
    throw Error(std::string(who) + ": rule '" + ri.name +
                "' has reductions of inconsistent levels: " + levels);
  if (!ri.reductions.empty() && (!rule.reduceKernel() || !rule.reducedKernel()))
    throw Error(std::string(who) + ": rule '" + ri.name +
                "' has tensor reductions but not the kernels of both passes "
                "(" OPTIM_REDUCE_SYMBOL_PREFIX + ri.name +
                " and the reduced " OPTIM_RULE_SYMBOL_PREFIX + ri.name + ")");
  // Row and column states and reductions (KernelABI.h, version 10): scalar
  // states, reductions that are not global; a RuleInfo put together
  // otherwise describes no compiled rule.
  for (const StateSpec &s : ri.states)
    if (s.axis != Axis::None && s.size != 1)
      throw Error(std::string(who) + ": rule '" + ri.name + "': " +
                  axisName(s.axis) + " state '" + s.name + "' has size " +
                  std::to_string(s.size) +
                  "; row and column states are scalars");
  // Matrix functions and shape values (KernelABI.h, version 11).
  for (size_t r = 0; r < ri.reductions.size(); ++r)
    if (std::string why = checkReductionSpec(ri.reductions[r]); !why.empty())
      throw Error(std::string(who) + ": rule '" + ri.name + "': reduction " +
                  std::to_string(r) + ": " + why);
  for (size_t r = 0; r < ri.reductions.size(); ++r)
    if (ri.reductions[r].axis != Axis::None && ri.reductions[r].global)
      throw Error(std::string(who) + ": rule '" + ri.name + "': reduction " +
                  std::to_string(r) + " is global and per " +
                  (ri.reductions[r].axis == Axis::Row ? "row" : "column") +
                  "; a row or column reduction is per tensor");
  if (ri.reductions.empty() && !rule.kernel())
    throw Error(std::string(who) + ": rule '" + ri.name +
                "' has the kernels of a rule with tensor reductions but its "
                "signature lists none");
}

bool detail::sameReductions(const std::vector<ReductionSpec> &x,
                            const std::vector<ReductionSpec> &y) {
  if (x.size() != y.size())
    return false;
  for (size_t i = 0; i < x.size(); ++i) {
    const ReductionSpec &a = x[i], &b = y[i];
    if (a.kind != b.kind || a.global != b.global || a.level != b.level ||
        a.axis != b.axis)
      return false;
    if (a.kind == ReductionKind::NewtonSchulz &&
        (a.nsSteps != b.nsSteps || a.nsEps != b.nsEps ||
         a.nsCoefficients[0] != b.nsCoefficients[0] ||
         a.nsCoefficients[1] != b.nsCoefficients[1] ||
         a.nsCoefficients[2] != b.nsCoefficients[2]))
      return false;
  }
  return true;
}
