//===- OptimOps.cpp - optim dialect operations ----------------------------===//

#include "optim/Dialect/OptimOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"

#include <cmath>

using namespace mlir;
using namespace mlir::optim;

#include "optim/Dialect/OptimEnums.cpp.inc"

#define GET_OP_CLASSES
#include "optim/Dialect/OptimOps.cpp.inc"

/// The size of a per-coordinate value: 1 for a scalar, N for vector<N x T>.
static int64_t coordinateSize(Type type) {
  if (auto vec = dyn_cast<VectorType>(type))
    return vec.getNumElements();
  return 1;
}

static Type elementTypeOf(Type type) { return getElementTypeOrSelf(type); }

/// Checked first by every op that derives weight shapes from the sizes of
/// its per-coordinate operands: beyond kMaxExtent, 4 H or I + H + 1 could
/// overflow.
static LogicalResult checkCoordinateSizes(Operation *op, TypeRange types) {
  for (Type type : types)
    if (auto vec = dyn_cast<VectorType>(type))
      if (vec.getNumElements() > kMaxExtent)
        return op->emitOpError("per-coordinate vectors have at most ")
               << kMaxExtent << " values, got " << type;
  return success();
}

//===----------------------------------------------------------------------===//
// RandomOp
//===----------------------------------------------------------------------===//

LogicalResult RandomOp::verify() {
  // In a rule, the site must be one the rule declares, of the same kind: the
  // runtime learns the sites from the rule's list (RuleInfo::random), which
  // a dead draw erased by DCE still counts. Functions derived from a rule
  // (optim-differentiate) keep the rule's ops and sites.
  auto rule = (*this)->getParentOfType<RuleOp>();
  if (!rule)
    return success();
  FloatType elt = rule.getElementType();
  if (elt && getResult().getType() != elt)
    return emitOpError("result must have the rule's element type ")
           << elt << ", got " << getResult().getType();
  ArrayAttr kinds = rule.getRandomAttr();
  unsigned site = getSite();
  if (!kinds || site >= kinds.size())
    return emitOpError("site ")
           << site << " is not declared by the rule (it declares "
           << rule.getNumRandomSites() << " draw sites in 'random(...)')";
  StringRef declared = cast<StringAttr>(kinds[site]).getValue();
  if (declared != stringifyRandomKind(getKind()))
    return emitOpError("draws ")
           << stringifyRandomKind(getKind()) << " at site " << site
           << ", but the rule declares that site " << declared;
  return success();
}

//===----------------------------------------------------------------------===//
// LogSignOp
//===----------------------------------------------------------------------===//

LogicalResult LogSignOp::verify() {
  auto vec = getResult().getType();
  auto expected = VectorType::get({2}, getG().getType());
  if (vec != expected)
    return emitOpError("result must be ") << expected << ", got " << vec;
  return success();
}

OpFoldResult LogSignOp::fold(FoldAdaptor adaptor) {
  auto g = dyn_cast_or_null<FloatAttr>(adaptor.getG());
  auto k = dyn_cast_or_null<FloatAttr>(adaptor.getK());
  if (!g || !k)
    return {};
  double gv = g.getValueAsDouble(), kv = k.getValueAsDouble();
  if (!(kv > 0.0) || !std::isfinite(gv))
    return {}; // Leave ill-defined cases to run time rather than fold them.
  double first, second;
  if (std::fabs(gv) >= std::exp(-kv)) {
    first = std::log(std::fabs(gv)) / kv;
    second = gv > 0 ? 1.0 : -1.0;
  } else {
    first = -1.0;
    second = std::exp(kv) * gv;
  }
  auto type = getResult().getType();
  auto elt = cast<FloatType>(type.getElementType());
  auto make = [&](double v) {
    APFloat f(v);
    bool lost;
    f.convert(elt.getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
    return f;
  };
  return DenseElementsAttr::get(type,
                                ArrayRef<APFloat>{make(first), make(second)});
}

//===----------------------------------------------------------------------===//
// LSTMCellOp, LinearOp
//===----------------------------------------------------------------------===//

LogicalResult LSTMCellOp::verify() {
  if (failed(checkCoordinateSizes(*this, (*this)->getOperandTypes())) ||
      failed(checkCoordinateSizes(*this, (*this)->getResultTypes())))
    return failure();
  Type elt = elementTypeOf(getH().getType());
  if (elementTypeOf(getX().getType()) != elt)
    return emitOpError("input and state element types differ: ")
           << getX().getType() << " vs " << getH().getType();
  int64_t in = coordinateSize(getX().getType());
  int64_t hidden = getH().getType().getNumElements();
  auto w = getWeights().getType();
  int64_t rows = 4 * hidden, cols = in + hidden + 1;
  auto expected = RankedTensorType::get({rows, cols}, elt);
  if (w != expected)
    return emitOpError("weights of an LSTM cell with input size ")
           << in << " and hidden size " << hidden << " must be " << expected
           << " ([W_ih | W_hh | b]), got " << w;
  return success();
}

LogicalResult LinearOp::verify() {
  if (failed(checkCoordinateSizes(*this, (*this)->getOperandTypes())) ||
      failed(checkCoordinateSizes(*this, (*this)->getResultTypes())))
    return failure();
  Type elt = elementTypeOf(getX().getType());
  int64_t in = coordinateSize(getX().getType());
  int64_t out = coordinateSize(getResult().getType());
  if (elementTypeOf(getResult().getType()) != elt)
    return emitOpError("result element type must be ") << elt;
  auto w = getWeights().getType();
  auto expected = RankedTensorType::get({out, in + 1}, elt);
  if (w != expected)
    return emitOpError("weights of a linear map from ")
           << in << " to " << out << " must be " << expected
           << " ([W | b]), got " << w;
  return success();
}

LogicalResult LSTMCellVJPOp::verify() {
  if (failed(checkCoordinateSizes(*this, (*this)->getOperandTypes())) ||
      failed(checkCoordinateSizes(*this, (*this)->getResultTypes())))
    return failure();
  Type elt = elementTypeOf(getH().getType());
  if (elementTypeOf(getX().getType()) != elt)
    return emitOpError("input and state element types differ: ")
           << getX().getType() << " vs " << getH().getType();
  int64_t in = coordinateSize(getX().getType());
  int64_t hidden = getH().getType().getNumElements();
  auto expected = RankedTensorType::get({4 * hidden, in + hidden + 1}, elt);
  if (getWeights().getType() != expected)
    return emitOpError("weights of an LSTM cell with input size ")
           << in << " and hidden size " << hidden << " must be " << expected
           << ", got " << getWeights().getType();
  return success();
}

LogicalResult LinearVJPOp::verify() {
  if (failed(checkCoordinateSizes(*this, (*this)->getOperandTypes())) ||
      failed(checkCoordinateSizes(*this, (*this)->getResultTypes())))
    return failure();
  Type elt = elementTypeOf(getX().getType());
  if (elementTypeOf(getDy().getType()) != elt)
    return emitOpError("cotangent element type must be ") << elt;
  auto expected = RankedTensorType::get(
      {coordinateSize(getDy().getType()), coordinateSize(getX().getType()) + 1},
      elt);
  if (getWeights().getType() != expected)
    return emitOpError("weights must be ")
           << expected << ", got " << getWeights().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// EyeOp, MatVecOp, MatMulOp, TransposeOp
//===----------------------------------------------------------------------===//

LogicalResult EyeOp::verify() {
  auto type = cast<RankedTensorType>(getResult().getType());
  if (type.getRank() != 2 || type.getDimSize(0) != type.getDimSize(1) ||
      !isa<FloatType>(type.getElementType()))
    return emitOpError("result must be a square float matrix, got ") << type;
  return success();
}

LogicalResult MatVecOp::verify() {
  auto a = cast<RankedTensorType>(getMatrix().getType());
  auto x = cast<RankedTensorType>(getVector().getType());
  auto y = cast<RankedTensorType>(getResult().getType());
  if (a.getRank() != 2 || x.getRank() != 1 || y.getRank() != 1)
    return emitOpError("expects a matrix, a vector and a vector result");
  if (a.getElementType() != x.getElementType() ||
      a.getElementType() != y.getElementType() ||
      !isa<FloatType>(a.getElementType()))
    return emitOpError("operands and result must share one float element type");
  if (a.getDimSize(1) != x.getDimSize(0))
    return emitOpError("matrix has ")
           << a.getDimSize(1) << " columns but the vector has "
           << x.getDimSize(0) << " elements";
  if (a.getDimSize(0) != y.getDimSize(0))
    return emitOpError("result must have ")
           << a.getDimSize(0) << " elements, got " << y.getDimSize(0);
  return success();
}

LogicalResult MatMulOp::verify() {
  auto a = cast<RankedTensorType>(getLhs().getType());
  auto b = cast<RankedTensorType>(getRhs().getType());
  auto c = cast<RankedTensorType>(getResult().getType());
  if (a.getRank() != 2 || b.getRank() != 2 || c.getRank() != 2)
    return emitOpError("expects two matrices and a matrix result");
  if (a.getElementType() != b.getElementType() ||
      a.getElementType() != c.getElementType() ||
      !isa<FloatType>(a.getElementType()))
    return emitOpError("operands and result must share one float element type");
  if (a.getDimSize(1) != b.getDimSize(0))
    return emitOpError("left matrix has ")
           << a.getDimSize(1) << " columns but the right one has "
           << b.getDimSize(0) << " rows";
  if (c.getDimSize(0) != a.getDimSize(0) || c.getDimSize(1) != b.getDimSize(1))
    return emitOpError("result must be ")
           << a.getDimSize(0) << "x" << b.getDimSize(1) << ", got " << c;
  return success();
}

LogicalResult DiagOp::verify() {
  auto v = cast<RankedTensorType>(getVector().getType());
  auto d = cast<RankedTensorType>(getResult().getType());
  if (v.getRank() != 1 || d.getRank() != 2)
    return emitOpError("expects a vector and a matrix result");
  if (v.getElementType() != d.getElementType() ||
      !isa<FloatType>(v.getElementType()))
    return emitOpError("operand and result must share one float element type");
  if (d.getDimSize(0) != v.getDimSize(0) || d.getDimSize(1) != v.getDimSize(0))
    return emitOpError("result must be ")
           << v.getDimSize(0) << "x" << v.getDimSize(0) << ", got " << d;
  return success();
}

LogicalResult VStackOp::verify() {
  auto r = cast<RankedTensorType>(getResult().getType());
  if (getParts().empty())
    return emitOpError("stacks at least one part");
  if (!isa<FloatType>(r.getElementType()) || r.getRank() < 1 || r.getRank() > 2)
    return emitOpError("result must be a float vector or matrix, got ") << r;
  int64_t rows = 0;
  for (Value part : getParts()) {
    auto t = cast<RankedTensorType>(part.getType());
    if (t.getRank() != r.getRank() || t.getElementType() != r.getElementType())
      return emitOpError("parts must all be ")
             << (r.getRank() == 1 ? "vectors" : "matrices")
             << " of the result's element type, got " << t;
    if (r.getRank() == 2 && t.getDimSize(1) != r.getDimSize(1))
      return emitOpError("parts must have the result's ")
             << r.getDimSize(1) << " columns, got " << t;
    rows += t.getDimSize(0);
  }
  if (rows != r.getDimSize(0))
    return emitOpError("result must have ")
           << rows << " rows (the parts'), got " << r.getDimSize(0);
  return success();
}

LogicalResult TransposeOp::verify() {
  auto a = cast<RankedTensorType>(getMatrix().getType());
  auto t = cast<RankedTensorType>(getResult().getType());
  if (a.getRank() != 2 || t.getRank() != 2)
    return emitOpError("expects a matrix and a matrix result");
  if (a.getElementType() != t.getElementType() ||
      !isa<FloatType>(a.getElementType()))
    return emitOpError("operand and result must share one float element type");
  if (t.getDimSize(0) != a.getDimSize(1) || t.getDimSize(1) != a.getDimSize(0))
    return emitOpError("result must be ")
           << a.getDimSize(1) << "x" << a.getDimSize(0) << ", got " << t;
  return success();
}

//===----------------------------------------------------------------------===//
// QPOp
//===----------------------------------------------------------------------===//

LogicalResult QPOp::verify() {
  auto q = cast<RankedTensorType>(getQvec().getType());
  if (q.getRank() != 1 || !isa<FloatType>(q.getElementType()))
    return emitOpError("q must be a float vector, got ") << q;
  int64_t n = q.getDimSize(0);
  Type elt = q.getElementType();
  if (n == 0)
    return emitOpError("must have at least one variable");

  auto checkShape = [&](Value v, StringRef name,
                        ArrayRef<int64_t> shape) -> LogicalResult {
    auto t = cast<RankedTensorType>(v.getType());
    if (t.getElementType() != elt)
      return emitOpError() << name << " must have element type " << elt
                           << ", got " << t;
    if (t.getShape() != shape) {
      auto diag = emitOpError() << name << " must have shape [";
      llvm::interleaveComma(shape, diag);
      return diag << "], got " << t;
    }
    return success();
  };

  if (Value Q = getQmat())
    if (failed(checkShape(Q, "Q", {n, n})))
      return failure();
  if (static_cast<bool>(getA()) != static_cast<bool>(getB()))
    return emitOpError("A and b must be given together");
  if (static_cast<bool>(getG()) != static_cast<bool>(getH()))
    return emitOpError("G and h must be given together");
  int64_t m = 0, p = 0;
  if (Value A = getA()) {
    auto t = cast<RankedTensorType>(A.getType());
    m = t.getRank() == 2 ? t.getDimSize(0) : -1;
    if (m <= 0 || failed(checkShape(A, "A", {m, n})) ||
        failed(checkShape(getB(), "b", {m})))
      return m <= 0 ? emitOpError("A must be a non-empty [m, ")
                          << n << "] matrix, got " << t
                    : failure();
  }
  if (Value G = getG()) {
    auto t = cast<RankedTensorType>(G.getType());
    p = t.getRank() == 2 ? t.getDimSize(0) : -1;
    if (p <= 0 || failed(checkShape(G, "G", {p, n})) ||
        failed(checkShape(getH(), "h", {p})))
      return p <= 0 ? emitOpError("G must be a non-empty [p, ")
                          << n << "] matrix, got " << t
                    : failure();
  }
  if (failed(checkShape(getZ(), "result z", {n})) ||
      failed(checkShape(getNu(), "result nu", {m})) ||
      failed(checkShape(getLam(), "result lam", {p})))
    return failure();
  if (!(getTol().convertToDouble() > 0.0))
    return emitOpError("tol must be positive");
  // getMaxIter() is unsigned (I64Attr): read the signed value, or -5 passes.
  if (getMaxIterAttr().getInt() <= 0)
    return emitOpError("max_iter must be positive");
  return success();
}

llvm::DenseMap<Operation *, unsigned>
mlir::optim::getReductionLevels(Operation *body) {
  // depth(v) = 0 when v depends on no reduction, else 1 + the largest level
  // of those it depends on; values not in the map have depth 0.
  llvm::DenseMap<Value, unsigned> depth;
  llvm::DenseMap<Operation *, unsigned> levels;
  auto depthOfOperands = [&](Operation *op) {
    unsigned d = 0;
    for (Value v : op->getOperands())
      d = std::max(d, depth.lookup(v));
    return d;
  };
  // Post-order: the ops in an op's regions come before it, and its results
  // depend on everything they read or compute.
  body->walk<WalkOrder::PostOrder>([&](Operation *op) {
    if (op == body)
      return;
    if (auto red = dyn_cast<TensorReduceOp>(op)) {
      unsigned level = depth.lookup(red.getValue());
      if (auto recorded = op->getAttrOfType<IntegerAttr>(kReductionLevelAttr))
        level = std::max<unsigned>(level, unsigned(recorded.getInt()));
      // Shape values ignore their operand: level 0 whatever it is.
      if (red.getKind() == ReductionKind::Rows ||
          red.getKind() == ReductionKind::Cols)
        level = 0;
      levels[op] = level;
      // Shape values are known before any pass: what depends on them
      // alone needs no later stage.
      bool shape = red.getKind() == ReductionKind::Rows ||
                   red.getKind() == ReductionKind::Cols;
      if (!shape)
        depth[red.getResult()] = level + 1;
      return;
    }
    unsigned d = depthOfOperands(op);
    if (op->getNumRegions())
      op->walk([&](Operation *inner) {
        d = std::max(d, depthOfOperands(inner));
        for (Value r : inner->getResults())
          d = std::max(d, depth.lookup(r));
      });
    if (d)
      for (Value r : op->getResults())
        depth[r] = d;
  });
  return levels;
}

LogicalResult TensorReduceOp::verify() {
  bool isNS = getKind() == ReductionKind::NewtonSchulz;
  bool isShape =
      getKind() == ReductionKind::Rows || getKind() == ReductionKind::Cols;
  bool onMatrix = getAxis() && *getAxis() == ReductionAxis::Matrix;
  if (isNS != onMatrix)
    return emitOpError(isNS ? "newton_schulz is a function of each matrix: "
                              "it needs the `matrix` axis"
                            : "only newton_schulz works on the `matrix` axis");
  if (isShape && (getAxis() || getGlobal()))
    return emitOpError("'")
           << stringifyReductionKind(getKind())
           << "' is the parameter's number of "
           << stringifyReductionKind(getKind())
           << "; it takes neither an axis nor `global`";
  if (isNS && getGlobal())
    return emitOpError("newton_schulz is a function of each matrix of one "
                       "parameter; it is never `global`");
  if (getAxis() && getGlobal())
    return emitOpError("reduces along ")
           << stringifyReductionAxis(*getAxis())
           << "s and over every parameter at once; a row or column "
              "reduction is never global";
  if (isNS) {
    // The accessor is unsigned: read the i32 signed, so that -1 is -1.
    int64_t steps = getNsStepsAttr().getValue().getSExtValue();
    if (steps < 0 || steps > 100)
      return emitOpError("ns_steps must be in [0, 100], not ") << steps;
    ArrayRef<double> c = getNsCoefficients();
    if (c.size() != 3 || llvm::any_of(c, [](double v) {
          return !std::isfinite(v);
        }))
      return emitOpError("ns_coefficients must be three finite numbers (a, "
                         "b, c)");
    double eps = getNsEps().convertToDouble();
    if (!(eps > 0) || !std::isfinite(eps))
      return emitOpError("ns_eps must be a positive finite number, not ")
             << eps;
    // NS divides by max(norm, T(eps)): an eps that rounds to 0 in T makes a
    // zero matrix (a frozen parameter's gradient) 0 / 0.
    if (getValue().getType().isF32() && float(eps) == 0.0f)
      return emitOpError("ns_eps ")
             << eps << " rounds to 0 in f32; it must be at least about 1e-45";
  } else {
    // The runtime never sees these for other kinds (RuleInfo keeps them for
    // newton_schulz only): a changed value would be silently ignored.
    ArrayRef<double> c = getNsCoefficients();
    if (getNsStepsAttr().getValue().getSExtValue() != 5 || c.size() != 3 ||
        c[0] != 3.4445 || c[1] != -4.7750 || c[2] != 2.0315 ||
        getNsEps().convertToDouble() != 1e-7)
      return emitOpError("ns_steps, ns_coefficients and ns_eps are "
                         "parameters of newton_schulz only; '")
             << stringifyReductionKind(getKind()) << "' takes none";
  }
  return success();
}

bool RuleOp::hasAxes() {
  for (unsigned i = 0, e = getNumStates(); i < e; ++i)
    if (getStateAxis(i) != "none")
      return true;
  bool found = false;
  getBody().walk([&](TensorReduceOp red) {
    if (red.getAxis())
      found = true;
  });
  return found;
}

llvm::DenseMap<Value, ValueAxis> mlir::optim::getValueAxes(RuleOp rule) {
  llvm::DenseMap<Value, ValueAxis> axes;
  if (rule.getBody().empty())
    return axes;
  auto axisOf = [&](Value v) {
    auto it = axes.find(v);
    return it == axes.end() ? ValueAxis::Uniform : it->second;
  };
  for (Value v : rule.getChunkStreams())
    axes[v] = ValueAxis::Coordinate;
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i) {
    StringRef axis = rule.getStateAxis(i);
    if (axis == "row")
      axes[rule.getState(i)] = ValueAxis::Row;
    else if (axis == "col")
      axes[rule.getState(i)] = ValueAxis::Col;
  }
  auto joinOperands = [&](Operation *op) {
    ValueAxis a = ValueAxis::Uniform;
    for (Value v : op->getOperands())
      a = joinAxes(a, axisOf(v));
    return a;
  };
  // Post-order, as getReductionLevels: an op with regions is after what it
  // holds, and takes the join of all of it.
  rule.getBody().walk<WalkOrder::PostOrder>([&](Operation *op) {
    ValueAxis a;
    if (auto red = dyn_cast<TensorReduceOp>(op)) {
      if (!red.getAxis())
        a = ValueAxis::Uniform;
      else if (*red.getAxis() == ReductionAxis::Matrix)
        a = ValueAxis::Coordinate;
      else
        a = *red.getAxis() == ReductionAxis::Row ? ValueAxis::Row
                                                 : ValueAxis::Col;
    } else if (isa<RandomOp>(op)) {
      a = ValueAxis::Coordinate;
    } else {
      a = joinOperands(op);
      if (op->getNumRegions())
        op->walk([&](Operation *inner) {
          a = joinAxes(a, joinOperands(inner));
          for (Value r : inner->getResults())
            a = joinAxes(a, axisOf(r));
        });
    }
    for (Value r : op->getResults())
      axes[r] = a;
  });
  return axes;
}

