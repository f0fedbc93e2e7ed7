//===- OptimOps.h - optim dialect operations --------------------*- C++ -*-===//

#ifndef OPTIM_DIALECT_OPTIMOPS_H
#define OPTIM_DIALECT_OPTIMOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "optim/Dialect/OptimDialect.h"
#include "llvm/ADT/DenseMap.h"

#include <string>
#include <utility>

#include "optim/Dialect/OptimEnums.h.inc"

namespace mlir::optim {
/// The largest per-coordinate vector, and the largest extent of a layer's
/// tensors: the language's limit (Sema's kMaxSize), which keeps every size
/// that the verifiers and the lowerings derive from them (4 H, I + H + 1,
/// n * n, element counts) far from int64_t overflow.
constexpr int64_t kMaxExtent = 65536;
/// The most elements of one learned weight tensor: an LSTM of the largest
/// sizes has 4 * 65536 * (2 * 65536 + 1).
constexpr int64_t kMaxWeightElements = int64_t(1) << 40;

/// optim-differentiate copies a rule's body into functions of one coordinate
/// (its step and its VJP) and marks each with the rule it comes from
/// (a FlatSymbolRefAttr); the VJP also carries its layout (numbers of
/// hyperparameters, states and weights, and of tensor reductions when the
/// rule has any). These functions are, besides rule bodies, the only place
/// where per-coordinate ops may appear. A rule with reductions has a second
/// VJP function, the one through the reduced operands, also marked
/// optim.vjp_reductions (a unit attribute).
inline constexpr llvm::StringLiteral kStepOfAttrName = "optim.step_of";
inline constexpr llvm::StringLiteral kVJPOfAttrName = "optim.vjp_of";
inline constexpr llvm::StringLiteral kVJPLayoutAttrName = "optim.vjp_layout";
inline constexpr llvm::StringLiteral kVJPReductionsAttrName =
    "optim.vjp_reductions";

/// The rule a per-coordinate function was derived from (its optim.step_of
/// or optim.vjp_of), or null for any other op.
FlatSymbolRefAttr getDerivedFromRule(Operation *fn);

/// Only the lowerings of rules (and of the functions derived from them)
/// compute per-coordinate ops, and only those of layers compute layer ops:
/// anywhere else nothing would lower them. Checked against the nearest
/// enclosing op that is isolated from above (a rule, a layer, a function).
LogicalResult verifyInPerCoordinateBody(Operation *op);
LogicalResult verifyInLayerBody(Operation *op);

// The op traits that check these (in this namespace: a nested OpTrait would
// make mlir::OpTrait ambiguous wherever both namespaces are open).

/// An op of one coordinate: log_sign, lstm_cell, linear and their VJPs.
template <typename ConcreteType>
class PerCoordinate
    : public ::mlir::OpTrait::TraitBase<ConcreteType, PerCoordinate> {
public:
  static LogicalResult verifyTrait(Operation *op) {
    return verifyInPerCoordinateBody(op);
  }
};

/// A building block of a layer's QP data: eye, matvec, qp.
template <typename ConcreteType>
class InLayer : public ::mlir::OpTrait::TraitBase<ConcreteType, InLayer> {
public:
  static LogicalResult verifyTrait(Operation *op) {
    return verifyInLayerBody(op);
  }
};
} // namespace mlir::optim

#define GET_OP_CLASSES
#include "optim/Dialect/OptimOps.h.inc"

namespace mlir::optim {
/// The level of every optim.tensor_reduce op nested in `body` (a rule, or a
/// function derived from one), KernelABI.h version 9, "Nested reductions":
/// 0 when the reduced value depends on no reduction's result, else 1 + the
/// largest level of the reductions it depends on, through any chain of ops
/// (a state started from a reduction is a select of it, so reading the
/// state afterwards depends on it too). The one definition that the CPU and
/// GPU lowerings, the descriptors, describeRule and the reverse mode share.
/// A reduction that carries kReductionLevelAttr (describeRule records it
/// before the pipelines fold constant hyperparameters and canonicalize)
/// keeps at least that level: folding a select away can lower the level the
/// dependences give, and RuleInfo, the manifest and the runtime's stages
/// must agree with the kernels. Shape values (`rows`, `cols`; version 11)
/// have level 0 and do not raise the level of what depends on them.
llvm::DenseMap<Operation *, unsigned> getReductionLevels(Operation *body);

/// The discardable attribute (an i64) that records a reduction's level.
inline constexpr llvm::StringLiteral kReductionLevelAttr = "optim.level";

/// What a value of a rule body is shared along (KernelABI.h version 10,
/// "Axes"): the same at every coordinate (t, hyperparameters, weights,
/// tensor and global reductions), along each row (row states, row
/// reductions), along each column, or per coordinate.
enum class ValueAxis { Uniform, Row, Col, Coordinate };
/// The least axis that holds both: Row and Col give Coordinate.
inline ValueAxis joinAxes(ValueAxis a, ValueAxis b) {
  if (a == b || b == ValueAxis::Uniform)
    return a;
  if (a == ValueAxis::Uniform)
    return b;
  return ValueAxis::Coordinate;
}
/// The axis of every value defined in `rule`'s body (block arguments and op
/// results); a value computed from others takes the join of what it reads
/// (ops with regions: of everything inside). The one definition the
/// verifier, the front end's checks and the CPU lowering share.
llvm::DenseMap<Value, ValueAxis> getValueAxes(RuleOp rule);

} // namespace mlir::optim

#endif // OPTIM_DIALECT_OPTIMOPS_H
