//===- Passes.td - optim dialect passes --------------------*- tablegen -*-===//

#ifndef OPTIM_TRANSFORMS_PASSES
#define OPTIM_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def FoldConstantHyperparameters
    : Pass<"optim-fold-constant-hyperparameters", "::mlir::ModuleOp"> {
  let summary = "Replace uses of `const` hyperparameters by their values";
  let description = [{
    A hyperparameter marked `const` is a compile-time constant: this pass
    replaces every use of it in a rule body by an `arith.constant` holding its
    default, so that canonicalization can fold what depends on it (`1 - beta`,
    `exp(k)`, ...). The hyperparameter stays in the signature, marked `const`,
    so that the rule's interface does not change.

    With `all=true` every hyperparameter is treated as constant: this
    specializes a rule for fixed hyperparameters (at the price of a recompile
    whenever one changes).
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
  let options = [
    Option<"all", "all", "bool", /*default=*/"false",
           "Fold every hyperparameter, not only those marked const">
  ];
}

#endif // OPTIM_TRANSFORMS_PASSES
