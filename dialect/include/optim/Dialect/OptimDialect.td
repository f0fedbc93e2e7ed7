//===- OptimDialect.td - the optim dialect -----------------*- tablegen -*-===//
//
// The `optim` dialect describes optimization algorithms for machine learning:
// update rules written for one coordinate, learned (LSTM) rules, and
// differentiable quadratic-program layers.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_DIALECT
#define OPTIM_DIALECT

include "mlir/IR/OpBase.td"

def Optim_Dialect : Dialect {
  let name = "optim";
  let cppNamespace = "::mlir::optim";
  let summary = "Update rules, learned optimizers and QP layers";
  let description = [{
    The `optim` dialect is the target of the `.optim` language. It holds three
    kinds of program:

    * `optim.rule`: an update rule (SGD, Adam, ...) written for ONE coordinate:
      scalar `p` and `g`, the 1-based step `t`, runtime hyperparameters and a
      per-coordinate state (scalars or small vectors). The compiler maps the
      body over every coordinate of every parameter tensor.
    * a learned rule: an `optim.rule` that also declares learned weights,
      shared by all coordinates, and uses `optim.log_sign`,
      `optim.lstm_cell` and `optim.linear`.
    * `optim.layer`: a differentiable layer whose body computes, for one
      element of a batch, the data of a quadratic program solved by `optim.qp`.

    Bodies use upstream `arith`, `math`, `vector` (small per-coordinate
    vectors) and `tensor` (layer data) operations.

    The per-coordinate ops (`log_sign`, `lstm_cell`, `linear` and their
    VJPs) are valid only in an `optim.rule` body or in the step and VJP
    functions that `optim-differentiate` derives from a rule (marked
    `optim.step_of` / `optim.vjp_of` with the rule's symbol); the layer ops
    (`eye`, `matvec`, `qp`) only in an `optim.layer` body. No lowering takes
    them anywhere else.

    Signed zeros are not significant in an `optim.rule` body: a rule may
    return +0.0 where IEEE 754 arithmetic would give -0.0 (a parameter, a
    state or a gradient of zero means the same whatever its sign). This lets
    the dialect's canonicalization fold `x + 0.0` to `x` in rule bodies,
    which upstream `arith` must keep since (-0.0) + 0.0 is +0.0. Layer
    bodies keep the IEEE semantics.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::math::MathDialect",
    "::mlir::vector::VectorDialect",
    "::mlir::tensor::TensorDialect"
  ];
  let hasConstantMaterializer = 1;
  let hasCanonicalizer = 1;
  // optim.step_of, optim.vjp_of and optim.vjp_layout on the functions
  // optim-differentiate derives from a rule.
  let hasOperationAttrVerify = 1;
}

class Optim_Op<string mnemonic, list<Trait> traits = []> :
    Op<Optim_Dialect, mnemonic, traits>;

#endif // OPTIM_DIALECT
