//===- LearnedMath.h - activations of the learned ops -----------*- C++ -*-===//
//
// The rational tanh that the forward kernel (LowerRulesToKernels.cpp) and the
// VJP kernel (LowerVJPToKernels.cpp) of learned rules share, so that the
// reverse mode recomputes the same activations as the step it differentiates;
// the GPU kernel (LowerRulesToGPU.cpp) uses the same LSTM cell update.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_CONVERSION_LEARNEDMATH_H
#define OPTIM_LIB_CONVERSION_LEARNEDMATH_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

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
  // Compare and select, which x86 does in one vminps/vmaxps. Unordered
  // comparisons, so that a NaN stays NaN (ordered ones clamped it to +-c:
  // tanh(NaN) = -1, and a diverging f32 meta-training went on with finite
  // losses).
  Value hi = cst(clampAt), lo = cst(-clampAt);
  x = arith::SelectOp::create(
      b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ULT, x, hi),
      x, hi);
  x = arith::SelectOp::create(
      b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UGT, x, lo),
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

/// The f32 LSTM cell update c' = f c + i g, h' = o tanh(c') from the gate
/// pre-activations z = (i, f, g, o), with sigmoid(z) = (1 + tanh(z/2)) / 2.
/// Every activation is a ratio P/Q (tanhRational), and the ratios are
/// combined so that the cell needs two divisions, not five:
///   c' = [(Pf+Qf) c Qi Qg + (Pi+Qi) Pg Qf] / (2 Qf Qi Qg)
///   h' = (Po+Qo) Pc / (2 Qo Qc)
/// Divisions are the one expensive operation left (a divider that is not
/// pipelined); polynomials are fused multiply-adds. Same operations for any
/// number of lanes, so every coordinate gets the same result on every path
/// (and on the GPU, LowerRulesToGPU.cpp, as on the CPU).
inline std::pair<Value, Value> lstmCellUpdate(OpBuilder &b, Location loc,
                                              ArrayRef<Value> z, Value c) {
  Type type = c.getType();
  auto cst = [&](double v) -> Value {
    Value k = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
    if (auto vec = dyn_cast<VectorType>(type))
      k = vector::BroadcastOp::create(b, loc, vec, k);
    return k;
  };
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulFOp::create(b, loc, x, y);
  };
  auto add = [&](Value x, Value y) -> Value {
    return arith::AddFOp::create(b, loc, x, y);
  };
  Value half = cst(0.5), two = cst(2.0);
  auto [pi, qi] = tanhRational(b, loc, mul(z[0], half));
  auto [pf, qf] = tanhRational(b, loc, mul(z[1], half));
  auto [pg, qg] = tanhRational(b, loc, z[2]);
  auto [po, qo] = tanhRational(b, loc, mul(z[3], half));
  Value qiqg = mul(qi, qg);
  Value num = math::FmaOp::create(b, loc, mul(add(pi, qi), pg), qf,
                                  mul(mul(add(pf, qf), c), qiqg));
  Value cNew = arith::DivFOp::create(b, loc, num, mul(mul(qf, qiqg), two));
  auto [pc, qc] = tanhRational(b, loc, cNew);
  Value hNew = arith::DivFOp::create(b, loc, mul(add(po, qo), pc),
                                     mul(mul(qo, qc), two));
  return {cNew, hNew};
}

/// The f64 activations of the learned ops, in arithmetic that vectorizes
/// (libm's exp and tanh are one call per lane: f64 learned steps ran ~10x
/// slower than f32) and gives the same bits for any number of lanes. All
/// three rest on expm1 of r = x - n ln 2, |r| <= ln(2)/2: its Taylor
/// polynomial of degree 13 (truncation below 1e-17 relative), evaluated as
/// r + r^2 P(r) so that the leading term is exact.
namespace f64math {
inline Value cst(OpBuilder &b, Location loc, Type type, double v) {
  Value c = arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v));
  if (auto vec = dyn_cast<VectorType>(type))
    c = vector::BroadcastOp::create(b, loc, vec, c);
  return c;
}

/// x if x <= hi, else hi; NaN stays NaN (the comparison is false).
inline Value atMost(OpBuilder &b, Location loc, Value x, double hi) {
  Value h = cst(b, loc, x.getType(), hi);
  return arith::SelectOp::create(
      b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, h), h,
      x);
}

/// {n, expm1(r)} with n = round(x / ln 2) (an integer-valued double) and
/// r = x - n ln 2 (Cody and Waite: ln 2 in two parts, the first with
/// trailing zeros, so that n ln2hi is exact for |n| < 2^11).
inline std::pair<Value, Value> reduce(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  auto c = [&](double v) { return cst(b, loc, t, v); };
  Value n = math::RoundEvenOp::create(
      b, loc, arith::MulFOp::create(b, loc, x, c(1.4426950408889634074)));
  Value negN = arith::NegFOp::create(b, loc, n);
  Value r = math::FmaOp::create(b, loc, negN, c(6.93147180369123816490e-01), x);
  r = math::FmaOp::create(b, loc, negN, c(1.90821492927058770002e-10), r);
  // 1/k! for k = 13 down to 2.
  static constexpr double kInvFactorials[] = {
      1.6059043836821614599e-10, 2.0876756987868098979e-09,
      2.5052108385441718775e-08, 2.7557319223985890653e-07,
      2.7557319223985890653e-06, 2.4801587301587301587e-05,
      1.9841269841269841270e-04, 1.3888888888888888889e-03,
      8.3333333333333333333e-03, 4.1666666666666666667e-02,
      1.6666666666666666667e-01, 0.5};
  Value poly = c(kInvFactorials[0]);
  for (double k : ArrayRef<double>(kInvFactorials).drop_front())
    poly = math::FmaOp::create(b, loc, poly, r, c(k));
  Value em =
      math::FmaOp::create(b, loc, arith::MulFOp::create(b, loc, r, r), poly, r);
  return {n, em};
}

/// 2^n for an integer-valued double n in [-1022, 1023], from its bits: n +
/// 1.5 * 2^52 holds n in its low mantissa bits, and shifting n + 1023 to the
/// exponent field drops the rest (AVX2 has no vector double-to-int64
/// conversion; this is an add and two integer ops).
inline Value pow2(OpBuilder &b, Location loc, Value n) {
  Type t = n.getType();
  Type i64 = b.getI64Type();
  if (auto vec = dyn_cast<VectorType>(t))
    i64 = VectorType::get(vec.getShape(), i64);
  auto ic = [&](int64_t v) -> Value {
    Value c = arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(v));
    if (auto vec = dyn_cast<VectorType>(i64))
      c = vector::BroadcastOp::create(b, loc, vec, c);
    return c;
  };
  Value bits = arith::BitcastOp::create(
      b, loc, i64,
      arith::AddFOp::create(b, loc, n, cst(b, loc, t, 6755399441055744.0)));
  Value exponent = arith::ShLIOp::create(
      b, loc, arith::AddIOp::create(b, loc, bits, ic(1023)), ic(52));
  return arith::BitcastOp::create(b, loc, t, exponent);
}

/// e^x within about an ulp; +inf above 709.78, 0 below -745.2, NaN for NaN.
/// 2^n is applied in two halves so that n may leave the normal exponents.
inline Value exp(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  Value lo = cst(b, loc, t, -746.0);
  x = atMost(b, loc, x, 710.0);
  x = arith::SelectOp::create(
      b, loc, arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, lo),
      lo, x);
  auto [n, em] = reduce(b, loc, x);
  Value n1 = math::FloorOp::create(
      b, loc, arith::MulFOp::create(b, loc, n, cst(b, loc, t, 0.5)));
  Value s2 = pow2(b, loc, arith::SubFOp::create(b, loc, n, n1));
  return arith::MulFOp::create(b, loc, math::FmaOp::create(b, loc, s2, em, s2),
                               pow2(b, loc, n1));
}

/// tanh x = sign(x) e / (e + 2), e = expm1(2|x|) = 2^n expm1(r) + (2^n - 1),
/// within a few ulps; |x| is capped at 20, where tanh rounds to 1.
inline Value tanh(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  Value u =
      atMost(b, loc,
             arith::MulFOp::create(b, loc, math::AbsFOp::create(b, loc, x),
                                   cst(b, loc, t, 2.0)),
             40.0);
  auto [n, em] = reduce(b, loc, u);
  Value s = pow2(b, loc, n);
  Value e = math::FmaOp::create(
      b, loc, s, em, arith::SubFOp::create(b, loc, s, cst(b, loc, t, 1.0)));
  Value ratio = arith::DivFOp::create(
      b, loc, e, arith::AddFOp::create(b, loc, e, cst(b, loc, t, 2.0)));
  return math::CopySignOp::create(b, loc, ratio, x);
}

/// The logistic function 1 / (1 + e^-z).
inline Value sigmoid(OpBuilder &b, Location loc, Value z) {
  Value one = cst(b, loc, z.getType(), 1.0);
  return arith::DivFOp::create(
      b, loc, one,
      arith::AddFOp::create(b, loc, one,
                            exp(b, loc, arith::NegFOp::create(b, loc, z))));
}
} // namespace f64math

/// The two features of optim.log_sign (appendix A of Andrychowicz et al.):
/// (log|g| / k, sign g) if |g| >= e^-k, else (-1, e^k g). The callers differ
/// only in how they get `big` (|g| >= e^-k), log|g| and e^k (a polynomial or
/// libm log; e^k per element or once per call), so those come in; `expK` is
/// called where e^k is needed, `cst` makes a constant of g's type and `mul`
/// multiplies with the caller's fast-math flags.
inline std::pair<Value, Value>
logSignFeatures(OpBuilder &b, Location loc, Value g, Value big, Value logAbsG,
                Value k, llvm::function_ref<Value()> expK,
                llvm::function_ref<Value(double)> cst,
                llvm::function_ref<Value(Value, Value)> mul) {
  Value first = arith::SelectOp::create(
      b, loc, big, arith::DivFOp::create(b, loc, logAbsG, k), cst(-1.0));
  Value zero = cst(0.0);
  Value sign = arith::SelectOp::create(
      b, loc,
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, g, zero),
      cst(1.0),
      arith::SelectOp::create(
          b, loc,
          arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, g, zero),
          cst(-1.0), g));
  Value second = arith::SelectOp::create(b, loc, big, sign, mul(expK(), g));
  return {first, second};
}

/// optim.log_sign of `g` as the forward kernels compute it: big is
/// |g| >= exp(-k), e^k is exp(k) where needed, and the math.log of |g| is
/// returned with the features so that learned rules can hand it to
/// approximateLogs (update rules keep libm's or libdevice's log).
struct LogSign {
  Value first, second;
  Operation *log;
};
inline LogSign emitLogSign(OpBuilder &b, Location loc, Value g, Value k,
                           llvm::function_ref<Value(double)> cst,
                           llvm::function_ref<Value(Value, Value)> mul) {
  Value absG = math::AbsFOp::create(b, loc, g);
  Value big = arith::CmpFOp::create(
      b, loc, arith::CmpFPredicate::OGE, absG,
      math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, k)));
  auto log = math::LogOp::create(b, loc, absG);
  auto [first, second] = logSignFeatures(
      b, loc, g, big, log, k,
      [&]() -> Value { return math::ExpOp::create(b, loc, k); }, cst, mul);
  return {first, second, log};
}

/// Replaces the given f32 math.log ops (log_sign's, in learned rules) by
/// MLIR's polynomial approximation, which vectorizes where libm is one call
/// per lane; the rules' own math ops are never passed here.
inline void approximateLogs(MLIRContext *ctx, ArrayRef<Operation *> logs) {
  if (logs.empty())
    return;
  RewritePatternSet patterns(ctx);
  populateMathPolynomialApproximationPatterns(patterns, [](StringRef name) {
    return name == math::LogOp::getOperationName();
  });
  GreedyRewriteConfig config;
  config.setStrictness(GreedyRewriteStrictness::ExistingOps);
  // Each pattern applies once and creates no op it matches: the result
  // (whether the driver converged) says nothing more.
  (void)applyOpPatternsGreedily(logs, std::move(patterns), config);
}

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_LEARNEDMATH_H
