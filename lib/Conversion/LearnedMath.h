//===- LearnedMath.h - f32 activations of the learned ops -------*- C++ -*-===//
//
// The rational tanh that the forward kernel (LowerRulesToKernels.cpp) and the
// VJP kernel (LowerVJPToKernels.cpp) of learned rules share, so that the
// reverse mode recomputes the same activations as the step it differentiates.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_CONVERSION_LEARNEDMATH_H
#define OPTIM_LIB_CONVERSION_LEARNEDMATH_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"

namespace mlir::optim {

/// tanh(x) ~ P(x) / Q(x) on x clamped to [-c, c], P odd of degree 13 and
/// Q even of degree 6: the rational interpolant of Eigen's float tanh, which
/// MLIR's TanhApproximation also uses; past c, tanh rounds to +-1 in f32.
/// Returns {P, Q}; Q lies in [0.0049, 0.96], so products of a few Q are
/// safe from underflow and overflow.
inline std::pair<Value, Value> tanhRational(OpBuilder &b, Location loc,
                                            Value x) {
  Type type = x.getType();
  auto cst = [&](double v) -> Value {
    Value c = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
    if (auto vec = dyn_cast<VectorType>(type))
      c = vector::BroadcastOp::create(b, loc, vec, c);
    return c;
  };
  const double clampAt = 7.99881172180175781;
  // Compare and select, which x86 does in one vminps/vmaxps.
  Value hi = cst(clampAt), lo = cst(-clampAt);
  x = arith::SelectOp::create(
      b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, hi),
      x, hi);
  x = arith::SelectOp::create(
      b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, lo),
      x, lo);
  Value x2 = arith::MulFOp::create(b, loc, x, x);
  auto horner = [&](ArrayRef<double> coefficients) {
    Value acc = cst(coefficients.front());
    for (double c : coefficients.drop_front())
      acc = math::FmaOp::create(b, loc, x2, acc, cst(c));
    return acc;
  };
  Value p =
      horner({-2.76076847742355e-16, 2.00018790482477e-13,
              -8.60467152213735e-11, 5.12229709037114e-08, 1.48572235717979e-05,
              6.37261928875436e-04, 4.89352455891786e-03});
  Value q = horner({1.19825839466702e-06, 1.18534705686654e-04,
                    2.26843463243900e-03, 4.89352518554385e-03});
  return {arith::MulFOp::create(b, loc, x, p), q};
}

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_LEARNEDMATH_H
