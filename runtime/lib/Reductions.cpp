//===- Reductions.cpp - combine the partials of tensor reductions ---------===//

#include "Reductions.h"

#include <cmath>
#include <limits>

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

void detail::combineReductions(const std::vector<ReductionSpec> &reductions,
                               const std::vector<size_t> &chunkTensor,
                               const std::vector<int64_t> &tensorSize,
                               const double *partials, double *reduced) {
  size_t R = reductions.size(), chunks = chunkTensor.size();
  int64_t total = 0;
  for (int64_t n : tensorSize)
    total += n;
  for (size_t r = 0; r < R; ++r) {
    ReductionKind kind = reductions[r].kind;
    if (reductions[r].global) {
      double acc = identity(kind);
      for (size_t c = 0; c < chunks; ++c)
        acc = combine(kind, acc, partials[c * R + r]);
      acc = finish(kind, acc, total);
      for (size_t c = 0; c < chunks; ++c)
        reduced[c * R + r] = acc;
      continue;
    }
    for (size_t first = 0; first < chunks;) {
      size_t tensor = chunkTensor[first], last = first;
      double acc = identity(kind);
      for (; last < chunks && chunkTensor[last] == tensor; ++last)
        acc = combine(kind, acc, partials[last * R + r]);
      acc = finish(kind, acc, tensorSize[tensor]);
      for (size_t c = first; c < last; ++c)
        reduced[c * R + r] = acc;
      first = last;
    }
  }
}
