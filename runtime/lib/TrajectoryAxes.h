//===- TrajectoryAxes.h - backward of row and column values -----*- C++ -*-===//
//
// Internal to the runtime (not installed): optim::Trajectory's backward
// pass for rules with row or column states or reductions (KernelABI.h,
// "Reverse mode of rules with axes"). Their forward steps are in
// TrajectoryAxes.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_TRAJECTORYAXES_H
#define OPTIM_RUNTIME_LIB_TRAJECTORYAXES_H

#include "MatrixFunctions.h"
#include "Reductions.h"
#include "TrajectoryImpl.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace optim {
namespace trajectory {

/// The reverse mode of a rule with row or column states or reductions
/// (KernelABI.h, "Reverse mode of rules with axes"). The VJP kernels see
/// row and column values as per-coordinate ones on the trajectory's flat
/// chunk table: each row or column state's value and cotangent, and for
/// each row or column reduction two pseudo-states (its result, whose
/// returned cotangent is the coordinate's share of its cotangent; a tie
/// slot, whose returned value is the max / min tie indicator). Here they
/// are given to the coordinates of their row (column), and what comes back
/// is summed over it, in coordinate order (deterministic). A row state's
/// new value is computed alike at every coordinate of its row, but the
/// forward pass writes the one of column 0: its cotangent is given to that
/// coordinate only (a column state's to the matrix's first row). A matrix
/// function (newton_schulz) is a pseudo-state too, whose value NS(X) and
/// cotangent are per coordinate already: the runtime maps the cotangent of
/// each matrix's NS(X) to that of X (newtonSchulzVJP) for the reductions
/// kernel's pass of its level, which seeds the operand with it.
struct AxisBackward {
  using Slot = Optimizer::Impl::Slot;
  Trajectory::Impl &im;
  const std::vector<size_t> &states, &reductions; // Rule indices.
  /// Per coordinate: each row or column state's value and cotangent, each
  /// row or column reduction's value and cotangent and tie cotangent, and
  /// zeros (the tie slots' values).
  std::vector<Buffer> value, cotangent, rho, drho, ties;
  Buffer zeros;
  /// Per row or column reduction, at the optimizer's axisReducedOffset:
  /// the sums of the cotangents and tie indicators.
  std::vector<double> d, n;
  /// Per matrix function (empty for the others), per coordinate: the
  /// cotangent of its result so far.
  std::vector<std::vector<double>> dy;

  explicit AxisBackward(Trajectory::Impl &im)
      : im(im), states(im.axisStates), reductions(im.axisReductions) {
    size_t bytes = size_t(im.total) * im.elt;
    for (size_t k = 0; k < states.size(); ++k) {
      value.push_back(Buffer::allocate(bytes));
      cotangent.push_back(Buffer::allocate(bytes));
    }
    for (size_t k = 0; k < reductions.size(); ++k) {
      rho.push_back(Buffer::allocate(bytes));
      drho.push_back(Buffer::allocate(bytes));
      ties.push_back(Buffer::allocate(bytes));
    }
    zeros = Buffer::allocate(bytes);
    std::memset(zeros.get(), 0, bytes);
    d.assign(im.axesImpl->axisReduced.size(), 0.0);
    n.assign(d.size(), 0.0);
    dy.resize(reductions.size());
    for (size_t x = 0; x < reductions.size(); ++x)
      if (matrix(x))
        dy[x].assign(size_t(im.total), 0.0);
  }

  const Slot &slot(size_t p) const { return im.axesImpl->slots[p]; }
  const RuleInfo &info() const { return im.info(); }
  /// Row (of B * R) or column (of B * C) of coordinate j of a tensor.
  static int64_t along(const Slot &s, Axis axis, int64_t j) {
    return axis == Axis::Row ? j / s.C : (j / (s.R * s.C)) * s.C + j % s.C;
  }
  /// Whether the forward pass writes the row's (column's) new value from
  /// coordinate j.
  static bool writes(const Slot &s, Axis axis, int64_t j) {
    return axis == Axis::Row ? j % s.C == 0 : (j / s.C) % s.R == 0;
  }

  /// dst[j] = src[along(j)] (or 0 off the writers) for chunk c's
  /// coordinates.
  template <typename T, typename Src>
  void expand(size_t c, Axis axis, const Src *src, char *dst,
              bool writersOnly) const {
    size_t p = im.chunkParam[c];
    int64_t off = im.chunkOffset[c], len = im.lengths[c];
    T *out = reinterpret_cast<T *>(dst + size_t(im.offsets[p] + off) * im.elt);
    for (int64_t j = off; j < off + len; ++j)
      out[j - off] = writersOnly && !writes(slot(p), axis, j)
                         ? T(0)
                         : T(src[along(slot(p), axis, j)]);
  }
  /// out[along(j)] += v[j] over parameter p's coordinates, in order.
  template <typename T>
  void sum(size_t p, Axis axis, const char *v, double *out) const {
    const T *x =
        reinterpret_cast<const T *>(v + size_t(im.offsets[p]) * im.elt);
    for (int64_t j = 0; j < im.sizes[p]; ++j)
      out[along(slot(p), axis, j)] += double(x[j]);
  }
  Axis stateAxis(size_t k) const { return info().states[states[k]].axis; }
  const ReductionSpec &spec(size_t x) const {
    return info().reductions[reductions[x]];
  }
  bool matrix(size_t x) const { return spec(x).axis == Axis::Matrix; }
  /// The bytes of chunk c's coordinates in a per-coordinate buffer: where
  /// they start, how many.
  size_t chunkAt(size_t c) const {
    return size_t(im.offsets[im.chunkParam[c]] + im.chunkOffset[c]) * im.elt;
  }
  size_t chunkBytes(size_t c) const { return size_t(im.lengths[c]) * im.elt; }
  double *at(std::vector<double> &v, size_t x, size_t p) {
    return v.data() + slot(p).axisReducedOffset[x];
  }

  /// Before the first kernel of recorded step `rec`: the values, the
  /// states' cotangents (carried from the step after, im.adjStates) at
  /// their writers, zeros for the reductions' cotangents.
  template <typename T> void begin(const Record &rec) {
    im.forChunks([&](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) {
        size_t p = im.chunkParam[c];
        for (size_t k = 0; k < states.size(); ++k) {
          size_t s = states[k];
          const T *old = reinterpret_cast<const T *>(
              rec.states[s].get() + im.stateOffset(s, p, 0));
          const T *adj = reinterpret_cast<const T *>(
              im.adjStates[s].get() + im.stateOffset(s, p, 0));
          expand<T>(size_t(c), stateAxis(k), old, value[k].get(), false);
          expand<T>(size_t(c), stateAxis(k), adj, cotangent[k].get(), true);
        }
        for (size_t x = 0; x < reductions.size(); ++x) {
          size_t at = chunkAt(size_t(c)), bytes = chunkBytes(size_t(c));
          if (matrix(x)) {
            std::memcpy(rho[x].get() + at, rec.matrixY[x].get() + at, bytes);
          } else {
            const double *r =
                rec.axisReduced.data() + slot(p).axisReducedOffset[x];
            expand<T>(size_t(c), spec(x).axis, r, rho[x].get(), false);
          }
          std::memset(drho[x].get() + at, 0, bytes);
          std::memset(ties[x].get() + at, 0, bytes);
        }
      }
    });
  }
  /// After the first kernel: the sums of the reductions' cotangents and
  /// tie indicators over their rows (columns).
  template <typename T> void gather() {
    std::fill(d.begin(), d.end(), 0.0);
    std::fill(n.begin(), n.end(), 0.0);
    for (size_t x = 0; x < reductions.size(); ++x) {
      if (matrix(x)) {
        const T *v = reinterpret_cast<const T *>(drho[x].get());
        for (int64_t i = 0; i < im.total; ++i)
          dy[x][size_t(i)] = double(v[i]);
        continue;
      }
      for (size_t p = 0; p < im.sizes.size(); ++p) {
        sum<T>(p, spec(x).axis, drho[x].get(), at(d, x, p));
        sum<T>(p, spec(x).axis, ties[x].get(), at(n, x, p));
      }
    }
  }
  /// Before the reductions kernel's pass for `level`: u of that level's
  /// row and column reductions at their coordinates, 0 for the others.
  template <typename T> void seed(const Record &rec, unsigned level) {
    std::vector<double> u(d.size(), 0.0);
    for (size_t x = 0; x < reductions.size(); ++x) {
      if (spec(x).level != level || matrix(x))
        continue;
      for (size_t p = 0; p < im.sizes.size(); ++p) {
        const Slot &sl = slot(p);
        bool row = spec(x).axis == Axis::Row;
        int64_t count = sl.B * (row ? sl.R : sl.C);
        size_t o = sl.axisReducedOffset[x];
        for (int64_t i = 0; i < count; ++i)
          u[o + size_t(i)] = detail::cotangentFactor(
              spec(x).kind, d[o + size_t(i)], rec.axisReduced[o + size_t(i)],
              n[o + size_t(i)], row ? sl.C : sl.R);
      }
    }
    im.forChunks([&](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) {
        size_t p = im.chunkParam[c];
        for (size_t x = 0; x < reductions.size(); ++x) {
          size_t at = chunkAt(size_t(c)), bytes = chunkBytes(size_t(c));
          if (matrix(x))
            std::memset(drho[x].get() + at, 0, bytes); // Below.
          else
            expand<T>(size_t(c), spec(x).axis,
                      u.data() + slot(p).axisReducedOffset[x], drho[x].get(),
                      false);
          std::memset(ties[x].get() + at, 0, bytes);
        }
      }
    });
    // The cotangent of each matrix's X, from that of NS(X), in double.
    for (size_t x = 0; x < reductions.size(); ++x) {
      if (!matrix(x) || spec(x).level != level)
        continue;
      for (size_t p = 0; p < im.sizes.size(); ++p) {
        const Slot &sl = slot(p);
        if (im.sizes[p] == 0)
          continue;
        size_t mn = size_t(sl.R) * size_t(sl.C);
        std::vector<double> X(mn), dx(mn);
        for (int64_t b = 0; b < sl.B; ++b) {
          size_t first = size_t(im.offsets[p]) + size_t(b) * mn;
          const T *xs = reinterpret_cast<const T *>(rec.matrixX[x].get());
          for (size_t i = 0; i < mn; ++i)
            X[i] = double(xs[first + i]);
          detail::newtonSchulzVJP(X.data(), dy[x].data() + first, dx.data(),
                                  sl.R, sl.C, spec(x));
          T *out = reinterpret_cast<T *>(drho[x].get());
          for (size_t i = 0; i < mn; ++i)
            out[first + i] = T(dx[i]);
        }
      }
    }
  }
  /// After the pass for `level`: what reached the results of lower levels'
  /// row and column reductions, added to their sums.
  template <typename T> void addLower(unsigned level) {
    for (size_t x = 0; x < reductions.size(); ++x) {
      if (spec(x).level >= level)
        continue;
      if (matrix(x)) {
        const T *v = reinterpret_cast<const T *>(drho[x].get());
        for (int64_t i = 0; i < im.total; ++i)
          dy[x][size_t(i)] += double(v[i]);
        continue;
      }
      for (size_t p = 0; p < im.sizes.size(); ++p)
        sum<T>(p, spec(x).axis, drho[x].get(), at(d, x, p));
    }
  }
  /// At the end of the step: each row (column) state's cotangent, the sum
  /// of its coordinates'. A tensor without coordinates keeps its rows'
  /// and columns' values through the step, and their cotangents.
  template <typename T> void end() {
    for (size_t k = 0; k < states.size(); ++k) {
      size_t s = states[k];
      for (size_t p = 0; p < im.sizes.size(); ++p) {
        if (im.sizes[p] == 0)
          continue;
        const Slot &sl = slot(p);
        size_t count =
            size_t(sl.B * (stateAxis(k) == Axis::Row ? sl.R : sl.C));
        std::vector<double> acc(count, 0.0);
        sum<T>(p, stateAxis(k), cotangent[k].get(), acc.data());
        T *adj = reinterpret_cast<T *>(im.adjStates[s].get() +
                                       im.stateOffset(s, p, 0));
        for (size_t i = 0; i < count; ++i)
          adj[i] = T(acc[i]);
      }
    }
  }
};

/// Calls fn.template operator()<T>() with T the rule's element type.
template <typename Fn> void withElement(DType dtype, Fn &&fn) {
  if (dtype == DType::F32)
    fn(float());
  else
    fn(double());
}

} // namespace trajectory
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_TRAJECTORYAXES_H
