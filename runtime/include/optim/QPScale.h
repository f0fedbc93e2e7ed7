//===- QPScale.h - the QP solvers' scaling of a problem's data ------------===//
//
// Both QP solvers (runtime/lib/QP.cpp and the block solver of QPBlock.h)
// solve each problem scaled as
//
//   Q/c, q/c   (the objective)     A/a, b/a   (equalities)
//   G/g, h/g   (inequalities)
//
// with c, a, g powers of two (docs/qp.md, "Scaling"): the solution z is
// unchanged, nu and lam come back multiplied by c/a and c/g. Every
// tolerance, regularization and starting point of the solvers is then
// relative to the data, so a problem whose objective (or constraints) is
// multiplied by 1e-8 or 1e8 is solved as the unscaled one; powers of two
// make the scaling exact in floating point.
//
// Freestanding C++17 (no library), so that clang compiles it for NVPTX too.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_QPSCALE_H
#define OPTIM_QPSCALE_H

#include <stdint.h>

namespace optim {
namespace qpscale {

/// The power of two 2^k <= x < 2^(k+1), with k clamped to [-1000, 1000] so
/// that 1 / 2^k is a normal number too; 1 for x that is 0, subnormal, not
/// finite or negative (data without a scale: nothing to divide by).
inline double pow2Floor(double x) {
  if (!(x >= 2.2250738585072014e-308) || !(x <= 1.7976931348623157e308))
    return 1;
  uint64_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  int64_t k = int64_t((bits >> 52) & 0x7ff) - 1023;
  k = k < -1000 ? -1000 : k > 1000 ? 1000 : k;
  const uint64_t out = uint64_t(k + 1023) << 52;
  double r;
  __builtin_memcpy(&r, &out, sizeof r);
  return r;
}

/// The scale factors of one problem.
struct Scales {
  double obj = 1, eq = 1, ineq = 1; // c, a, g
  bool columns = false;             // the variables scaled too (E != I)
};

/// c from the largest |entry| of Q's symmetric part (of q for an LP: Q
/// absent or 0), a from that of A, g from that of G: each block's largest
/// entry in [1, 2) after scaling. A zero block keeps the scale 1.
inline Scales scalesOf(double maxAbsQ, double maxAbsq, double maxAbsA,
                       double maxAbsG) {
  Scales s;
  s.obj = pow2Floor(maxAbsQ > 0 ? maxAbsQ : maxAbsq);
  s.eq = pow2Floor(maxAbsA);
  s.ineq = pow2Floor(maxAbsG);
  return s;
}

/// The variables' (columns') equilibration, after the block scales: a
/// column j whose largest entry, relative to its block (Q's largest entry
/// of E Q E, or its row's largest of A E and G E), is below 1/8 is
/// multiplied by the power of two just below 1/sqrt of it, in passes (at
/// most kColumnPasses) until none is; E = diag(e) then scales the
/// variables, z = E z^ (docs/qp.md, "Scaling"). No column ever exceeds 2,
/// so the other direction is not needed; problems whose columns are all at
/// or above 1/8 are left as they were. Without it, variables scaled by
/// 10^+-3 (Q of condition ~1e12 from the scaling alone) came back "solved"
/// up to 0.7 off.
constexpr int kColumnPasses = 16;
constexpr double kColumnFloor = 0.125;

/// The factor of one pass for a column of relative norm `nrm`, whose factor
/// so far is `e` and whose entry of q is `q`: 1 at or above the floor (and
/// for an empty column), and where the factor would exceed 2^200 or q e
/// would come near overflowing.
inline double columnStep(double nrm, double e, double q) {
  if (!(nrm > 0) || !(nrm < kColumnFloor))
    return 1;
  const double f = pow2Floor(1 / __builtin_sqrt(nrm));
  if (!(e * f <= 0x1p200) ||
      !(__builtin_fabs(q) * (e * f) <= 1.7976931348623157e308 / 4))
    return 1;
  return f;
}

/// The variables' common factor, from the largest right-hand side of the
/// scaled problem (|q| over Q's scale, |b| and |h| over their rows'; q not
/// counted for an LP, whose scale c is q's own): below 1, the solution is
/// that small too, and the stopping test's absolute floor (the 1 in
/// 1 + |q|) would let it stop far from it (measured: z scaled by 1e-6,
/// "solved" 47x off); z is then scaled by the power of two of that size,
/// which divides q, b and h by it and leaves Q, A and G as they were.
inline double rhsScale(double rhs) {
  if (!(rhs > 0) || !(rhs < 1))
    return 1;
  return pow2Floor(rhs);
}

} // namespace qpscale
} // namespace optim

#endif // OPTIM_QPSCALE_H
