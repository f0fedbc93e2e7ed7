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

def Differentiate : Pass<"optim-differentiate", "::mlir::ModuleOp"> {
  let summary = "Generate the per-coordinate step and its reverse-mode derivative";
  let description = [{
    For every `optim.rule`, adds two functions that work on ONE coordinate:

    * `@optim_step_<rule>(p, g, t, hypers..., states...) -> (p', states'...)`:
      the step itself;
    * `@optim_vjp_<rule>(p, g, t, hypers..., states..., dp', dstates'...)
      -> (dp, dstates..., dhypers...)`: its vector-Jacobian product, the
      cotangents of the incoming parameter, state and hyperparameters given
      those of the outgoing parameter and state.

    The gradient `g` is treated as a constant (its derivative is not
    produced): meta-training drops the second derivatives of the optimizee,
    as Andrychowicz et al. (2016) do. The adjoint of a hyperparameter is per
    coordinate; summing it over the coordinates is the caller's reduction.

    Rules with R tensor reductions (`optim.tensor_reduce`) get R more
    arguments, the reduced values rho_0..rho_{R-1} (in body order), after
    the last argument above: the per-coordinate functions read each
    reduction's result from its argument instead of reducing. The adjoint of
    a reduction depends on every coordinate of the tensor, so their reverse
    mode is split in two around a combine by the runtime (KernelABI.h,
    "Reverse mode of rules with tensor reductions"):

    * `@optim_vjp_<rule>(..., rho...) -> (dp, dstates..., dhypers...,
      dweights..., drho..., ties...)` holds the reduced values constant and
      also returns, per reduction, this coordinate's cotangent of rho_r and,
      for max and min, 1.0 where the reduction's operand equals rho_r
      (0.0 otherwise, and for the other kinds): the counts that share a
      tie's cotangent. `optim.vjp_layout` is then [H, S, W, R] (or
    [H, S, W, R, I] with inputs);
    * `@optim_vjp_reductions_<rule>(p, g, t, hypers..., states...,
      weights..., dp, dstates..., rho..., u...) -> (dp, dstates...,
      dhypers..., dweights..., drho...)`, marked `optim.vjp_reductions`,
      seeds each reduction's operand x_r with its cotangent (u_r for sum and
      mean, u_r * x_r for norm, u_r where x_r == rho_r for max and min) and
      returns dp and dstates plus what flows back from there, this path's
      hyperparameter and weight cotangents, and what reaches each reduced
      value rho_r (0 unless some reduction's operand is computed from it).

    A nested reduction (of a value computed from another reduction's
    result, level 1 or more: KernelABI.h version 9) sends part of its
    operand's cotangent to the lower levels' reduced values. The runtime
    calls the reductions function once per level, highest first, with u_r
    of that level only (0 for the others: in rules with nested reductions
    every seed is a strong zero, see below), and adds the drho it returns
    for lower levels to their cotangents before their own call.

    The shape values `rows()` and `cols()` are reduced values like the
    others but constants: nothing is seeded through their operands.
    Row and column values (KernelABI.h, "Reverse mode of rules with axes")
    are per-coordinate values: a row or column state is a state like the
    others (the runtime gives each coordinate its row's value and sums the
    cotangents back over the row), and each row or column reduction adds two
    pseudo-states after the states, counted in the layout's S: its result
    (argument: rho at the coordinate; result: the coordinate's share of its
    cotangent; in the reductions function its carried cotangent is u at the
    coordinate, and its result what reaches rho from higher levels) and a
    tie slot (result: the max / min tie indicator). Their rho, drho and tie
    slots among the R reductions stay 0. A matrix function (`newton_schulz`)
    has the same two pseudo-states, its result being NS(X) at the coordinate;
    in the reductions function the carried cotangent is X's at the
    coordinate (the runtime's VJP of NS over the whole matrix), which seeds
    the operand as it is.

    Derivatives at points where the function is not differentiable follow
    one convention each: |x|' = sign(x) (0 at 0), max/min send the cotangent
    to the first operand on ties, and sqrt' at 0 and the exponent term of
    pow at a base <= 0 are taken as 0 rather than infinity or NaN (the
    "NaN from differentiating sqrt at 0" that Adam-like rules otherwise
    meet at zero gradients). floor and ceil have derivative 0, fmod (the
    `mod` built-in) 1 in x and -trunc(x / y) in y. The side a select, max or
    min did not take gets an exactly zero cotangent, and what flows back from
    it is forced to 0 wherever that cotangent is 0 (a "strong zero"): the
    untaken side may be inf or NaN (RAdam's rectifier before its warm-up
    ends), and 0 * NaN must not reach the taken side's gradient.

    Learned rules get weights among the arguments of both functions, after
    the states, and their cotangents among the results of the VJP, after the
    hyperparameters': `-> (dp, dstates..., dhypers..., dweights...)`. The
    weight cotangent is one coordinate's contribution. A rule's
    per-coordinate inputs (`input h`) come after the weights in both
    functions' arguments (before the cotangents), and are constants like `g`:
    no cotangent. `optim.lstm_cell` and
    `optim.linear` are differentiated into `optim.lstm_cell_vjp` and
    `optim.linear_vjp`, vector states and indexing into vector-dialect
    insert/broadcast/reduction, `log_sign` with respect to both operands.
    The VJP functions carry `optim.vjp_of` (the rule) and `optim.vjp_layout`
    (numbers of hyperparameters, states and weights, then of reductions if
    the rule has any or has inputs, then of inputs if any: [H, S, W],
    [H, S, W, R] or [H, S, W, R, I] with R possibly 0), which `optim-lower-vjp-to-kernels` reads; the step
    function carries `optim.step_of` (the rule). With these marks, and only
    in a rule or such a function, the verifier accepts per-coordinate ops
    (`lstm_cell`, ...).
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::vector::VectorDialect"
  ];
}

#endif // OPTIM_TRANSFORMS_PASSES
