//===- Philox.h - the draws of optim.random, per coordinate -----*- C++ -*-===//
//
// Every kernel that computes a draw (the CPU rule, reduce and VJP kernels,
// the GPU rule and reduce kernels) builds it here, so that a coordinate's
// value is the same in all of them: Philox4x32-10 of (seed, global index,
// step, site), then the conversion of KernelABI.h (version 8, "Random
// numbers"). Lanes are coordinates: on vectors of i32 the whole generator is
// SIMD, and a lane computes exactly what a scalar loop computes for it.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_CONVERSION_PHILOX_H
#define OPTIM_LIB_CONVERSION_PHILOX_H

#include "optim/Dialect/OptimOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"


namespace mlir::optim {

/// Box-Muller for the CPU: sqrt(-2 log(1 - ua)) * cos(2 pi ub) from
/// arithmetic, comparisons and bit operations only, so that it stays in
/// SIMD lanes (math.log and math.cos of a vector become one libm call per
/// lane, which made a normal draw cost ~20 ns per coordinate). Evaluated in
/// f64 and rounded once to `elt`: log by exponent and mantissa, the mantissa
/// in [sqrt(1/2), sqrt(2)) through the atanh series of s = (m-1)/(m+1); the
/// cosine by quarter turns, x = phase / (pi/2), q = the nearest integer, and
/// the Taylor series of sin and cos of (pi/2)(x - q), |x - q| <= 1/2. Both
/// series are cut where their next term is below 2^-60 of the result:
/// within an ulp or two of f64, far below f32's. The phase is that of the
/// contract: the product 2 pi ub rounded to elt (as cos(2 pi ub) in C reads
/// it).
inline Value emitVectorBoxMuller(OpBuilder &b, Location loc, FloatType elt,
                                 Value ua, Value ub, unsigned lanes) {
  Type f64 = b.getF64Type(), i64 = b.getI64Type();
  auto type = [&](Type scalar) -> Type {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  };
  auto cst = [&](Type scalar, TypedAttr attr) -> Value {
    if (lanes == 1)
      return arith::ConstantOp::create(b, loc, attr);
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(cast<ShapedType>(type(scalar)), attr));
  };
  auto real = [&](double v) { return cst(f64, b.getF64FloatAttr(v)); };
  auto integer = [&](int64_t v) { return cst(i64, b.getI64IntegerAttr(v)); };
  auto add = [&](Value x, Value y) -> Value {
    return arith::AddFOp::create(b, loc, x, y);
  };
  auto mul = [&](Value x, Value y) -> Value {
    return arith::MulFOp::create(b, loc, x, y);
  };
  auto horner = [&](ArrayRef<double> c, Value x) -> Value {
    Value acc = real(c.back());
    for (size_t k = c.size() - 1; k-- > 0;)
      acc = add(mul(acc, x), real(c[k]));
    return acc;
  };
  Type wide = type(f64);
  auto toF64 = [&](Value v) -> Value {
    return elt.isF64() ? v : Value(arith::ExtFOp::create(b, loc, wide, v));
  };

  // log(u1), u1 = 1 - ua in [2^-53, 1] (exact in elt): u1 = m 2^e.
  Value u1 = toF64(arith::SubFOp::create(
      b, loc, cst(elt, b.getFloatAttr(elt, 1.0)), ua));
  Value bits = arith::BitcastOp::create(b, loc, type(i64), u1);
  Value e = arith::SubIOp::create(
      b, loc, arith::ShRUIOp::create(b, loc, bits, integer(52)),
      integer(1023));
  Value m = arith::BitcastOp::create(
      b, loc, wide,
      arith::OrIOp::create(
          b, loc,
          arith::AndIOp::create(b, loc, bits, integer(0x000FFFFFFFFFFFFFll)),
          integer(0x3FF0000000000000ll)));
  Value big = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, m,
                                    real(1.4142135623730951));
  m = arith::SelectOp::create(b, loc, big, mul(m, real(0.5)), m);
  e = arith::SelectOp::create(
      b, loc, big, arith::AddIOp::create(b, loc, e, integer(1)), e);
  // log m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), |s| <= 0.1716.
  Value s = arith::DivFOp::create(b, loc, add(m, real(-1.0)),
                                  add(m, real(1.0)));
  SmallVector<double> atanh;
  for (int k = 0; k <= 10; ++k)
    atanh.push_back(2.0 / double(2 * k + 1));
  Value logm = mul(s, horner(atanh, mul(s, s)));
  Value ed = arith::SIToFPOp::create(b, loc, wide, e);
  // e ln 2 in two parts (fdlibm's split): the high part has 21 trailing
  // zero bits, so e * ln2Hi is exact for |e| <= 2^21.
  Value log = add(mul(ed, real(6.93147180369123816490e-01)),
                  add(mul(ed, real(1.90821492927058770002e-10)), logm));
  Value radius = math::SqrtOp::create(b, loc, mul(log, real(-2.0)));

  // cos of the phase 2 pi ub (2 pi and the product rounded to elt, as the
  // contract has it), in quarter turns x = phase * 2/pi, with 2/pi in two
  // parts and the product's rounding error recovered by an fma, so that the
  // remainder r below is exact to ~2^-100: in f64 the phase's own rounding
  // is then the only difference from cos(2 pi ub) as libm computes it.
  Value phase = toF64(arith::MulFOp::create(
      b, loc, cst(elt, b.getFloatAttr(elt, 6.283185307179586476925286766559)),
      ub));
  Value twoOverPiHi = real(0x1.45f306dc9c883p-1),
        twoOverPiLo = real(-3.935735335036497e-17);
  Value xHi = mul(phase, twoOverPiHi);
  Value xLo = add(math::FmaOp::create(b, loc, phase, twoOverPiHi,
                                      arith::NegFOp::create(b, loc, xHi)),
                  mul(phase, twoOverPiLo));
  Value q = math::FloorOp::create(b, loc, add(xHi, real(0.5)));
  // xHi - q is exact (Sterbenz: q is the integer nearest to xHi >= 0).
  Value r = add(arith::SubFOp::create(b, loc, xHi, q), xLo);
  Value r2 = mul(r, r);
  SmallVector<double> sinc, cosc;
  {
    // sin((pi/2) r) = sum_j (-1)^j (pi/2)^(2j+1) / (2j+1)! r^(2j+1),
    // cos((pi/2) r) = sum_j (-1)^j (pi/2)^(2j) / (2j)! r^(2j); |(pi/2) r|
    // <= pi/4, where the terms past j = 9 are below 2^-60.
    long double h = 1.57079632679489661923132169163975144L, term = 1;
    for (int n = 0; n <= 19; ++n) {
      if (n)
        term *= h / n;
      long double signed_ = (n / 2) % 2 ? -term : term;
      (n % 2 ? sinc : cosc).push_back(double(signed_));
    }
  }
  Value sinv = mul(r, horner(sinc, r2));
  Value cosv = horner(cosc, r2);
  Value k = arith::AndIOp::create(
      b, loc, arith::FPToSIOp::create(b, loc, type(i64), q), integer(3));
  Value odd = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::ne,
      arith::AndIOp::create(b, loc, k, integer(1)), integer(0));
  // cos(q pi/2 + a): cos a, -sin a, -cos a, sin a for q mod 4 = 0, 1, 2, 3.
  Value negate = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::ne,
      arith::AndIOp::create(b, loc,
                            arith::AddIOp::create(b, loc, k, integer(1)),
                            integer(2)),
      integer(0));
  Value c = arith::SelectOp::create(b, loc, odd, sinv, cosv);
  c = arith::SelectOp::create(b, loc, negate,
                              arith::NegFOp::create(b, loc, c), c);
  Value z = mul(radius, c);
  if (elt.isF64())
    return z;
  return arith::TruncFOp::create(b, loc, type(elt), z);
}

/// The value of draw site `site` of `kind` at global coordinates index,
/// index + 1, ..., index + lanes - 1 (one per lane; `index` an i64 scalar),
/// step `step` (i64) and seed `seed` (i64), in `elt` (f32 or f64): a scalar
/// for one lane, else vector<lanes x elt>. For targets whose math.sqrt or
/// math.cos is not what the contract needs, `sqrt` replaces math.sqrt and
/// `cosTwoPi(u)` replaces math.cos(2 pi u) (u in [0, 1)); `mulHigh(a, b)`,
/// the high word of a 32 x 32-bit product, replaces arith.mului_extended
/// (whose i64 product LLVM may keep as a 64-bit multiply on NVPTX).
inline Value
emitRandomDraw(OpBuilder &b, Location loc, RandomKind kind, unsigned site,
               FloatType elt, Value seed, Value step, Value index,
               unsigned lanes, llvm::function_ref<Value(Value)> sqrt = nullptr,
               llvm::function_ref<Value(Value)> cosTwoPi = nullptr,
               llvm::function_ref<Value(Value, Value)> mulHigh = nullptr) {
  Type i32 = b.getI32Type(), i64 = b.getI64Type();
  auto type = [&](Type scalar) -> Type {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  };
  auto spread = [&](Value scalar) -> Value {
    if (lanes == 1)
      return scalar;
    return vector::BroadcastOp::create(b, loc, type(scalar.getType()), scalar);
  };
  auto constant = [&](Type scalar, TypedAttr attr) -> Value {
    if (lanes == 1)
      return arith::ConstantOp::create(b, loc, attr);
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(cast<ShapedType>(type(scalar)), attr));
  };
  auto u32 = [&](uint32_t v) {
    return constant(i32, b.getIntegerAttr(i32, int64_t(int32_t(v))));
  };
  auto lo32 = [&](Value v) -> Value {
    Type t = isa<VectorType>(v.getType()) ? type(i32) : i32;
    return arith::TruncIOp::create(b, loc, t, v);
  };
  auto hi32 = [&](Value v) -> Value {
    Value c32 = arith::ConstantIntOp::create(b, loc, 32, 64);
    if (auto vec = dyn_cast<VectorType>(v.getType()))
      c32 = vector::BroadcastOp::create(b, loc, vec, c32);
    return lo32(arith::ShRUIOp::create(b, loc, v, c32));
  };

  // The counter: (i lo, i hi, t lo, site); lane l has i = index + l.
  Value idx = spread(index);
  if (lanes > 1) {
    SmallVector<int64_t> iota;
    for (unsigned l = 0; l < lanes; ++l)
      iota.push_back(l);
    idx = arith::AddIOp::create(
        b, loc, idx,
        arith::ConstantOp::create(
            b, loc,
            DenseElementsAttr::get(cast<ShapedType>(type(i64)),
                                   ArrayRef<int64_t>(iota))));
  }
  Value x[4];
  if (!mulHigh) {
    // The CPU: every word zero-extended in an i64 lane, so that M * x is
    // one 32 x 32 -> 64-bit multiply per lane (x86's vpmuludq) whose halves
    // are a shift and a mask; in i32 lanes the high halves need shuffles
    // around two such multiplies (~2x slower). Same words, same values.
    auto c64 = [&](uint64_t v) {
      return constant(i64, b.getIntegerAttr(i64, int64_t(v)));
    };
    auto mask = [&](Value v) -> Value {
      return arith::AndIOp::create(b, loc, v, c64(0xFFFFFFFFull));
    };
    auto shr32 = [&](Value v) -> Value {
      return arith::ShRUIOp::create(b, loc, v, c64(32));
    };
    auto scalarMask = [&](Value v) -> Value {
      return arith::AndIOp::create(
          b, loc, v, arith::ConstantIntOp::create(b, loc, 0xFFFFFFFFll, 64));
    };
    Value w[4] = {mask(idx), shr32(idx),
                  spread(scalarMask(step)), c64(site)};
    Value k0 = scalarMask(seed),
          k1 = arith::ShRUIOp::create(
              b, loc, seed, arith::ConstantIntOp::create(b, loc, 32, 64));
    for (int round = 0; round < 10; ++round) {
      if (round) {
        k0 = scalarMask(arith::AddIOp::create(
            b, loc, k0, arith::ConstantIntOp::create(b, loc, 0x9E3779B9, 64)));
        k1 = scalarMask(arith::AddIOp::create(
            b, loc, k1, arith::ConstantIntOp::create(b, loc, 0xBB67AE85, 64)));
      }
      Value p0 = arith::MulIOp::create(b, loc, c64(0xD2511F53), w[0]);
      Value p1 = arith::MulIOp::create(b, loc, c64(0xCD9E8D57), w[2]);
      Value y0 = arith::XOrIOp::create(
          b, loc, arith::XOrIOp::create(b, loc, shr32(p1), w[1]), spread(k0));
      Value y2 = arith::XOrIOp::create(
          b, loc, arith::XOrIOp::create(b, loc, shr32(p0), w[3]), spread(k1));
      w[0] = y0;
      w[1] = mask(p1);
      w[2] = y2;
      w[3] = mask(p0);
    }
    for (int j = 0; j < 4; ++j)
      x[j] = lo32(w[j]);
  } else {
  x[0] = lo32(idx);
  x[1] = hi32(idx);
  x[2] = spread(lo32(step));
  x[3] = u32(site);
  // The key, bumped between rounds: scalars, broadcast where used.
  Value k0 = lo32(seed), k1 = hi32(seed);
  for (int round = 0; round < 10; ++round) {
    if (round) {
      k0 = arith::AddIOp::create(
          b, loc, k0, arith::ConstantIntOp::create(b, loc, i32, 0x9E3779B9));
      k1 = arith::AddIOp::create(
          b, loc, k1, arith::ConstantIntOp::create(b, loc, i32, 0xBB67AE85));
    }
    // (lo, hi) of M * x, M a Philox multiplier.
    auto mulhilo = [&](uint32_t m, Value v) -> std::pair<Value, Value> {
      return {arith::MulIOp::create(b, loc, u32(m), v), mulHigh(u32(m), v)};
    };
    auto [lo0, hi0] = mulhilo(0xD2511F53, x[0]);
    auto [lo1, hi1] = mulhilo(0xCD9E8D57, x[2]);
    Value y0 = arith::XOrIOp::create(
        b, loc, arith::XOrIOp::create(b, loc, hi1, x[1]), spread(k0));
    Value y2 = arith::XOrIOp::create(
        b, loc, arith::XOrIOp::create(b, loc, hi0, x[3]), spread(k1));
    x[0] = y0;
    x[1] = lo1;
    x[2] = y2;
    x[3] = lo0;
  }
  }

  // Conversions to [0, 1): exact (24 or 53 bits), then a power of two.
  Type real = type(elt);
  auto scale = [&](double v) { return constant(elt, b.getFloatAttr(elt, v)); };
  auto uniform = [&](Value w0, Value w1) -> Value {
    if (elt.isF32()) {
      Value bits = arith::ShRUIOp::create(b, loc, w0, u32(8));
      return arith::MulFOp::create(
          b, loc, arith::UIToFPOp::create(b, loc, real, bits),
          scale(0x1p-24));
    }
    Type wide = type(i64);
    Value hi = arith::ExtUIOp::create(b, loc, wide, w1);
    Value lo = arith::ExtUIOp::create(b, loc, wide, w0);
    auto c64 = [&](int64_t v) {
      return constant(i64, b.getIntegerAttr(i64, v));
    };
    Value bits = arith::ShRUIOp::create(
        b, loc,
        arith::OrIOp::create(b, loc,
                             arith::ShLIOp::create(b, loc, hi, c64(32)), lo),
        c64(11));
    return arith::MulFOp::create(
        b, loc, arith::UIToFPOp::create(b, loc, real, bits), scale(0x1p-53));
  };
  bool f32 = elt.isF32();
  Value ua = f32 ? uniform(x[0], Value()) : uniform(x[0], x[1]);
  if (kind == RandomKind::Uniform)
    return ua;
  Value ub = f32 ? uniform(x[1], Value()) : uniform(x[2], x[3]);
  if (!cosTwoPi)
    return emitVectorBoxMuller(b, loc, elt, ua, ub, lanes);
  // Box-Muller, the cosine branch: sqrt(-2 log(1 - Ua)) * cos(2 pi Ub),
  // each op rounded in the element type (no contraction).
  Value u1 = arith::SubFOp::create(b, loc, scale(1.0), ua);
  Value square = arith::MulFOp::create(b, loc, scale(-2.0),
                                       math::LogOp::create(b, loc, u1));
  Value radius =
      sqrt ? sqrt(square) : Value(math::SqrtOp::create(b, loc, square));
  Value cos;
  if (cosTwoPi)
    cos = cosTwoPi(ub);
  else
    cos = math::CosOp::create(
        b, loc,
        arith::MulFOp::create(b, loc, scale(6.283185307179586476925286766559), ub));
  return arith::MulFOp::create(b, loc, radius, cos);
}

/// Creates `const char optim_random_<name>[]` (KernelABI.h, version 8): the
/// kinds of the rule's draw sites, in order ("normal,uniform"), in
/// `addressSpace`, at the builder's insertion point; nothing for a rule that
/// draws nothing.
inline void createRandomDescriptor(OpBuilder &b, RuleOp rule,
                                   unsigned addressSpace) {
  ArrayAttr kinds = rule.getRandomAttr();
  if (!kinds || kinds.empty())
    return;
  std::string text;
  for (StringRef kind : kinds.getAsValueRange<StringAttr>()) {
    if (!text.empty())
      text += ',';
    text += kind.str();
  }
  text.push_back('\0');
  auto type = LLVM::LLVMArrayType::get(b.getI8Type(), text.size());
  LLVM::GlobalOp::create(b, rule.getLoc(), type, /*isConstant=*/true,
                         LLVM::Linkage::External,
                         ("optim_random_" + rule.getSymName()).str(),
                         b.getStringAttr(text), /*alignment=*/0, addressSpace);
}

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_PHILOX_H
