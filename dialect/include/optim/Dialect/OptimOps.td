//===- OptimOps.td - optim dialect operations --------------*- tablegen -*-===//

#ifndef OPTIM_OPS
#define OPTIM_OPS

include "optim/Dialect/OptimDialect.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/IR/EnumAttr.td"

// Where an op may appear: nothing lowers a per-coordinate op outside a rule
// (or the step and VJP functions optim-differentiate derives from one), nor a
// layer op outside a layer, so the verifier rejects them there.
def Optim_PerCoordinate : NativeOpTrait<"PerCoordinate"> {
  let cppNamespace = "::mlir::optim";
}
def Optim_InLayer : NativeOpTrait<"InLayer"> {
  let cppNamespace = "::mlir::optim";
}

//===----------------------------------------------------------------------===//
// Programs: rules and layers
//===----------------------------------------------------------------------===//

def Optim_RuleOp : Optim_Op<"rule", [
    Symbol, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>
  ]> {
  let summary = "An update rule written for one coordinate";
  let description = [{
    An update rule. The body is written for ONE coordinate: the compiler maps
    it over every coordinate of every parameter tensor. Its single block takes,
    in this order:

    * `p`, `g`: the parameter and its gradient (scalars of the rule's element
      type, f32 or f64);
    * `t`: the 1-based step number (`i64`);
    * the hyperparameters, scalars of the element type. A hyperparameter is a
      runtime argument of the compiled kernel unless it is marked `const`,
      in which case its default is its value (`optim-fold-constant-hyperparameters`
      substitutes it);
    * the per-coordinate state: scalars or 1-D vectors of the element type,
      each with the value every coordinate starts from;
    * the learned weights (learned rules only): statically shaped tensors
      shared by all coordinates;
    * the per-coordinate inputs (`input h` in the language): read-only
      scalars of the element type, one stream per input that the host
      passes besides the gradient (a Hessian-diagonal estimate, a second
      gradient, noise). They come last so that rules without inputs keep
      every other argument's position.

    The body ends with `optim.yield` of the new `p` and the new value of each
    state, in declaration order.

    A state marked `row` (`%r: f32 = 0.0 row`) holds one value per row of
    the parameter's matrices instead of one per coordinate, `col` one per
    column (`row state r` and `col state c` in the language; KernelABI.h
    version 10): its block argument is the value of the coordinate's row
    (column), and the value the body yields for it must be the same along
    the row (column): computed from uniform values, `row` reductions and row
    states only (the verifier checks it, getValueAxes).

    A rule that draws random numbers lists the kind of each of its draw sites
    (`optim.random`), in site order, after its signature: `random(normal,
    uniform)`. The list is the rule's contract with the runtime (its
    `optim_random_<name>` descriptor, KernelABI.h version 8) and keeps the
    sites whose draws were erased as dead; every kernel of the rule takes the
    `rng` argument whether or not it draws.

    Example:

    ```mlir
    optim.rule @momentum(%p: f32, %g: f32, %t: i64)
        hyper(%lr: f32 = 1.000000e-02, %mu: f32 = 9.000000e-01)
        state(%buf: f32 = 0.000000e+00) {
      %0 = arith.mulf %mu, %buf : f32
      %1 = arith.addf %0, %g : f32
      %2 = arith.mulf %lr, %1 : f32
      %3 = arith.subf %p, %2 : f32
      optim.yield %3, %1 : f32, f32
    }
    ```
  }];
  let arguments = (ins
    SymbolNameAttr:$sym_name,
    StrArrayAttr:$hyper_names,
    DenseF64ArrayAttr:$hyper_defaults,
    DenseBoolArrayAttr:$hyper_const,
    StrArrayAttr:$state_names,
    DenseF64ArrayAttr:$state_inits,
    StrArrayAttr:$weight_names,
    // Absent (rather than empty) without inputs, so that rules without them
    // keep their generic form.
    OptionalAttr<StrArrayAttr>:$input_names,
    // The kind ("uniform" or "normal") of each draw site (optim.random
    // `site` k is entry k), recorded by the front end so that a site whose
    // draw is dead still counts (RuleInfo::random, KernelABI.h version 8).
    // Absent for rules that draw nothing.
    OptionalAttr<StrArrayAttr>:$random,
    // One entry per state: "none" (per coordinate), "row" or "col" (one
    // value per row or per column of the parameter's matrices; KernelABI.h
    // version 10). Absent when every state is per coordinate, so that such
    // rules keep their generic form.
    OptionalAttr<StrArrayAttr>:$state_axes
  );
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let hasRegionVerifier = 1;
  let extraClassDeclaration = [{
    /// Number of leading block arguments that are always present: p, g, t.
    static constexpr unsigned kNumBuiltinArgs = 3;

    ::mlir::Block &getBodyBlock() { return getBody().front(); }
    ::mlir::BlockArgument getParam() { return getBodyBlock().getArgument(0); }
    ::mlir::BlockArgument getGrad() { return getBodyBlock().getArgument(1); }
    ::mlir::BlockArgument getStep() { return getBodyBlock().getArgument(2); }
    unsigned getNumHypers() { return getHyperNames().size(); }
    unsigned getNumStates() { return getStateNames().size(); }
    unsigned getNumWeights() { return getWeightNames().size(); }
    unsigned getNumInputs() {
      ::mlir::ArrayAttr names = getInputNamesAttr();
      return names ? names.size() : 0;
    }
    /// The name of input i (i < getNumInputs()).
    ::llvm::StringRef getInputName(unsigned i) {
      return ::llvm::cast<::mlir::StringAttr>((*getInputNames())[i])
          .getValue();
    }
    ::mlir::BlockArgument getHyper(unsigned i) {
      return getBodyBlock().getArgument(kNumBuiltinArgs + i);
    }
    ::mlir::BlockArgument getState(unsigned i) {
      return getBodyBlock().getArgument(kNumBuiltinArgs + getNumHypers() + i);
    }
    ::mlir::BlockArgument getWeight(unsigned i) {
      return getBodyBlock().getArgument(kNumBuiltinArgs + getNumHypers() +
                                        getNumStates() + i);
    }
    /// Input i: the last block arguments, after the weights.
    ::mlir::BlockArgument getInput(unsigned i) {
      return getBodyBlock().getArgument(kNumBuiltinArgs + getNumHypers() +
                                        getNumStates() + getNumWeights() + i);
    }
    /// The per-coordinate streams of a chunk table, in the order of its
    /// pointers (KernelABI.h): p, g, the inputs, then the states.
    ::llvm::SmallVector<::mlir::Value> getChunkStreams() {
      ::llvm::SmallVector<::mlir::Value> streams = {getParam(), getGrad()};
      for (unsigned i = 0, e = getNumInputs(); i < e; ++i)
        streams.push_back(getInput(i));
      for (unsigned i = 0, e = getNumStates(); i < e; ++i)
        streams.push_back(getState(i));
      return streams;
    }
    /// The chunk-table slot of state i: after p, g and the inputs.
    unsigned getStateSlot(unsigned i) { return 2 + getNumInputs() + i; }
    /// True when `v` is g or an input: read per coordinate, never written,
    /// constants for the reverse mode.
    bool isReadOnlyStream(::mlir::Value v) {
      if (v == getGrad())
        return true;
      for (unsigned i = 0, e = getNumInputs(); i < e; ++i)
        if (v == getInput(i))
          return true;
      return false;
    }
    /// What state i is shared along: "none", "row" or "col".
    ::llvm::StringRef getStateAxis(unsigned i) {
      ::mlir::ArrayAttr axes = getStateAxesAttr();
      if (!axes || i >= axes.size())
        return "none";
      return ::llvm::cast<::mlir::StringAttr>(axes[i]).getValue();
    }
    /// Whether any state is a row or column state, or any reduction is along
    /// rows or columns: the step needs the chunk table of KernelABI.h
    /// version 10 ("Axes").
    bool hasAxes();
    /// The number of draw sites (`random`), dead ones included.
    unsigned getNumRandomSites() {
      ::mlir::ArrayAttr kinds = getRandomAttr();
      return kinds ? kinds.size() : 0;
    }
    /// The element type of the rule: the type of `p`.
    ::mlir::FloatType getElementType();
    /// True when the rule declares learned weights.
    bool isLearned() { return getNumWeights() != 0; }
  }];
}

def Optim_YieldOp : Optim_Op<"yield", [
    Pure, Terminator, HasParent<"RuleOp">, ReturnLike
  ]> {
  let summary = "Yields the new parameter and state of a rule";
  let description = [{
    Terminates an `optim.rule` body with the new value of `p` followed by the
    new value of each state, in declaration order.
  }];
  let arguments = (ins Variadic<AnyType>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
  let hasVerifier = 1;
}

def Optim_LayerOp : Optim_Op<"layer", [
    Symbol, IsolatedFromAbove,
    DeclareOpInterfaceMethods<OpAsmOpInterface, ["getAsmBlockArgumentNames"]>
  ]> {
  let summary = "A differentiable layer defined by a quadratic program";
  let description = [{
    A layer. The body is written for ONE element of a batch: its block takes
    the layer's inputs (per batch element), then its learned weights (shared
    by the batch), all statically shaped tensors, and ends with
    `optim.return` of the outputs, whose names and types the op declares.

    Example:

    ```mlir
    optim.layer @proj inputs(%y: tensor<3xf32>) -> (z: tensor<3xf32>) {
      %Q = optim.eye : tensor<3x3xf32>
      %q = arith.negf %y : tensor<3xf32>
      %z, %nu, %lam = optim.qp Q(%Q : tensor<3x3xf32>) q(%q : tensor<3xf32>)
          -> tensor<3xf32>, tensor<0xf32>, tensor<0xf32>
      optim.return %z : tensor<3xf32>
    }
    ```
  }];
  let arguments = (ins
    SymbolNameAttr:$sym_name,
    StrArrayAttr:$input_names,
    StrArrayAttr:$weight_names,
    StrArrayAttr:$output_names,
    TypeArrayAttr:$output_types
  );
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::Block &getBodyBlock() { return getBody().front(); }
    unsigned getNumInputs() { return getInputNames().size(); }
    unsigned getNumWeights() { return getWeightNames().size(); }
    ::mlir::BlockArgument getInput(unsigned i) {
      return getBodyBlock().getArgument(i);
    }
    ::mlir::BlockArgument getWeight(unsigned i) {
      return getBodyBlock().getArgument(getNumInputs() + i);
    }
  }];
}

def Optim_ReturnOp : Optim_Op<"return", [
    Pure, Terminator, HasParent<"LayerOp">, ReturnLike
  ]> {
  let summary = "Returns the outputs of a layer";
  let arguments = (ins Variadic<AnyRankedTensor>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Learned-rule building blocks
//===----------------------------------------------------------------------===//

// A per-coordinate vector value. Fixed-length only: the weight shapes of the
// ops below are derived from its size, and a folded constant of a scalable
// vector type cannot be materialized.
def Optim_CoordinateVector : FixedVectorOfRankAndType<[1], [AnyFloat]>;

def Optim_LogSignOp : Optim_Op<"log_sign", [
    Pure, Optim_PerCoordinate, AllTypesMatch<["g", "k"]>]> {
  let summary = "Gradient preprocessing of Andrychowicz et al. (2016)";
  let description = [{
    Maps a gradient `g` to two features, with `k > 0` (the paper's p):

    ```
    (log|g| / k, sign g)   if |g| >= exp(-k)
    (-1, exp(k) * g)        otherwise
    ```

    following appendix A of "Learning to learn by gradient descent by
    gradient descent". The result is `vector<2xT>`.
  }];
  let arguments = (ins AnyFloat:$g, AnyFloat:$k);
  let results = (outs Optim_CoordinateVector:$result);
  let assemblyFormat = "$g `,` $k attr-dict `:` type($g) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Optim_LSTMCellOp : Optim_Op<"lstm_cell", [
    Pure, Optim_PerCoordinate, AllTypesMatch<["h", "c", "h_out", "c_out"]>
  ]> {
  let summary = "One step of an LSTM cell, per coordinate";
  let description = [{
    One step of a standard LSTM cell on the input `x` (a scalar or a vector of
    size I) with hidden state `h` and cell `c` (vectors of size H). The
    weights are one tensor of shape `[4H, I + H + 1]`, laid out as
    `[W_ih | W_hh | b]` with the gates in PyTorch's order (input, forget,
    cell, output):

    ```
    (i, f, c~, o) = W_ih x + W_hh h + b
    c' = sigmoid(f) * c + sigmoid(i) * tanh(c~)
    h' = sigmoid(o) * tanh(c')
    ```
  }];
  let arguments = (ins AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$x,
                       Optim_CoordinateVector:$h,
                       Optim_CoordinateVector:$c,
                       AnyStaticShapeTensor:$weights);
  let results = (outs Optim_CoordinateVector:$h_out,
                      Optim_CoordinateVector:$c_out);
  let assemblyFormat = [{
    $x `,` $h `,` $c `,` $weights attr-dict `:` type($x) `,` type($h) `,` type($weights)
  }];
  let hasVerifier = 1;
}

def Optim_LinearOp : Optim_Op<"linear", [Pure, Optim_PerCoordinate]> {
  let summary = "An affine map y = W x + b, per coordinate";
  let description = [{
    Applies an affine map to `x` (a scalar or a vector of size I). The weights
    are one tensor of shape `[O, I + 1]` laid out as `[W | b]`. The result is
    a vector of size O, or a scalar when O = 1 and a scalar result is asked.
  }];
  let arguments = (ins AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$x,
                       AnyStaticShapeTensor:$weights);
  let results = (outs AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$result);
  let assemblyFormat = [{
    $x `,` $weights attr-dict `:` type($x) `,` type($weights) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Reductions over a tensor
//===----------------------------------------------------------------------===//

def Optim_ReductionKind : I32EnumAttr<"ReductionKind",
    "what a tensor reduction computes", [
      I32EnumAttrCase<"Sum", 0, "sum">,
      I32EnumAttrCase<"Mean", 1, "mean">,
      I32EnumAttrCase<"Norm", 2, "norm">,
      I32EnumAttrCase<"Max", 3, "max">,
      I32EnumAttrCase<"Min", 4, "min">,
      I32EnumAttrCase<"NewtonSchulz", 5, "newton_schulz">,
      I32EnumAttrCase<"Rows", 6, "rows">,
      I32EnumAttrCase<"Cols", 7, "cols">
    ]> {
  let cppNamespace = "::mlir::optim";
}

def Optim_ReductionAxis : I32EnumAttr<"ReductionAxis",
    "what a row or column reduction reduces along", [
      I32EnumAttrCase<"Row", 0, "row">,
      I32EnumAttrCase<"Col", 1, "col">,
      I32EnumAttrCase<"Matrix", 2, "matrix">
    ]> {
  let cppNamespace = "::mlir::optim";
}

// Deliberately not Pure: the runtime's table of reduced values has one slot
// per tensor_reduce op of the rule as written, in body order, so no pass may
// erase, merge or reorder them (describeRule counts them before the
// pipeline, the lowering after it).
def Optim_TensorReduceOp : Optim_Op<"tensor_reduce", [
    Optim_PerCoordinate, AllTypesMatch<["value", "result"]>]> {
  let summary = "A reduction of a per-coordinate value over a whole tensor";
  let description = [{
    Reduces the scalar `value`, computed at every coordinate of the
    parameter tensor, to one value shared by all of them: its sum, mean,
    Euclidean norm (sqrt of the sum of squares), maximum or minimum. With
    `global`, over every coordinate of every parameter the optimizer holds
    instead of one tensor.

    The compiled step makes two passes over memory: the first computes
    `value` and accumulates it in f64 (per chunk, in a fixed order; the
    runtime adds the chunks in order, so the result does not depend on the
    number of threads), the second runs the rule with the result. `value`
    may depend on other reductions' results (a nested reduction): its level
    is then 1 + the largest level of those, and each level is one more pass
    over memory before the rule's (KernelABI.h, version 9); the reverse
    mode does not support nested reductions. NaN propagates through max and
    min.

    With `row` (`col`), the value is reduced along each row (column) of the
    parameter's matrices instead (KernelABI.h version 10, "Axes"): the
    result is one value per row (column), the same at every coordinate of
    it; `mean` divides by the row's (column's) length. Never with `global`.

    `newton_schulz` with `matrix` (KernelABI.h version 11, "Matrix
    functions") is not a reduction to fewer values but a function of each
    whole matrix of the parameter: the result at a coordinate is that
    coordinate's entry of NS(X), X the matrix of `value` holding it, where
    NS normalizes X by max(|X|_F, `ns_eps`) and applies `ns_steps`
    iterations X <- a X + (b A + c A A) X, A = X X^T, with (a, b, c) =
    `ns_coefficients`, on X^T when X has more rows than columns (Muon's
    orthogonalization, as torch.optim.Muon, in the element type). The
    result varies per coordinate.

    `rows` and `cols` (version 11, "Shape values") ignore `value` (the front
    end passes a constant) and give the number of rows or columns of the
    parameter's matrices ([batch, rows, cols] view): uniform over the
    tensor, filled in by the runtime before any pass, so they never cost a
    pass and do not raise the level of what depends on them.

    The op is not pure: every reduction of the rule as written is kept, in
    order, because the runtime's table of reduced values has one slot per
    op (its position among the rule's tensor_reduce ops).

    ```mlir
    %n = optim.tensor_reduce norm %p : f32
    %a = optim.tensor_reduce sum %x global : f64
    %r = optim.tensor_reduce mean %y row : f32
    %o = optim.tensor_reduce newton_schulz %u matrix : f32
    %o3 = optim.tensor_reduce newton_schulz %u matrix {ns_steps = 3 : i32} : f32
    %m = optim.tensor_reduce rows %c0 : f32
    ```
  }];
  let arguments = (ins AnyFloat:$value, Optim_ReductionKind:$kind,
                       UnitAttr:$global,
                       OptionalAttr<Optim_ReductionAxis>:$axis,
                       DefaultValuedAttr<I32Attr, "5">:$ns_steps,
                       DefaultValuedAttr<DenseF64ArrayAttr,
                           "{3.4445, -4.7750, 2.0315}">:$ns_coefficients,
                       DefaultValuedAttr<F64Attr, "1e-7">:$ns_eps);
  let results = (outs AnyFloat:$result);
  // The Newton-Schulz parameters at their defaults (torch.optim.Muon's).
  let builders = [
    OpBuilder<(ins "Type":$result, "Value":$value, "ReductionKind":$kind,
                   "bool":$global, "ReductionAxisAttr":$axis), [{
      build($_builder, $_state, result, value, kind, global, axis,
            /*ns_steps=*/5, ArrayRef<double>{3.4445, -4.7750, 2.0315},
            ::llvm::APFloat(1e-7));
    }]>
  ];
  let assemblyFormat = "$kind $value (`global` $global^)? ($axis^)? attr-dict `:` type($value)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Random numbers
//===----------------------------------------------------------------------===//

def Optim_RandomKind : I32EnumAttr<"RandomKind",
    "the distribution of a draw site", [
      I32EnumAttrCase<"Uniform", 0, "uniform">,
      I32EnumAttrCase<"Normal", 1, "normal">
    ]> {
  let cppNamespace = "::mlir::optim";
}

// Pure: a draw is a function of (seed, coordinate, step, site), all fixed
// for one call of the kernel, so an unused draw may be erased; two calls
// never merge because their `site` attributes differ.
def Optim_RandomOp : Optim_Op<"random", [Pure, Optim_PerCoordinate]> {
  let summary = "One random draw per coordinate (`rand()`, `randn()`)";
  let description = [{
    Draw site `site` of the rule: a value of the rule's element type, uniform
    on [0, 1) or standard normal, independent across coordinates, steps and
    sites, and a deterministic function of the optimizer's seed, the
    coordinate's global index, the step and the site (Philox4x32-10,
    KernelABI.h, version 8, "Random numbers"). The front end numbers the
    sites 0, 1, ... in source order and records their kinds on the rule
    (`random(...)`); the verifier checks each op against that list. The
    reverse mode treats the value as a constant.

    ```mlir
    optim.rule @sgld(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01)
        random(normal) {
      %z = optim.random normal site 0 : f32
      ...
    }
    ```
  }];
  let arguments = (ins Optim_RandomKind:$kind, I32Attr:$site);
  let results = (outs AnyFloat:$result);
  let assemblyFormat = "$kind `site` $site attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Adjoints of the learned-rule building blocks (reverse mode)
//===----------------------------------------------------------------------===//

def Optim_LSTMCellVJPOp : Optim_Op<"lstm_cell_vjp", [
    Pure, Optim_PerCoordinate, AllTypesMatch<["x", "dx"]>,
    AllTypesMatch<["h", "c", "dh_out", "dc_out", "dh", "dc"]>,
    AllTypesMatch<["weights", "dweights"]>
  ]> {
  let summary = "Vector-Jacobian product of one `optim.lstm_cell` step";
  let description = [{
    Given the operands of an `optim.lstm_cell` and the cotangents `dh_out`,
    `dc_out` of its two results, yields the cotangents of its input `x`,
    state `h`, cell `c` and weights, for ONE coordinate. The weight cotangent
    is this coordinate's contribution; summing it over the coordinates is the
    kernel's reduction (`optim-lower-vjp-to-kernels`). With z the gate
    pre-activations, (i, f, g, o) = (σ(z_i), σ(z_f), tanh(z_g), σ(z_o)) and
    c' = f c + i g:

    ```
    dc'  = dc_out + dh_out o (1 - tanh²c')
    dz_o = dh_out tanh(c') o (1 - o)      dz_i = dc' g i (1 - i)
    dz_g = dc' i (1 - g²)                 dz_f = dc' c f (1 - f)
    dc   = dc' f
    [dx; dh] = [W_ih | W_hh]^T dz         dweights = dz [x; h; 1]^T
    ```
  }];
  let arguments = (ins AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$x,
                       Optim_CoordinateVector:$h,
                       Optim_CoordinateVector:$c,
                       AnyStaticShapeTensor:$weights,
                       Optim_CoordinateVector:$dh_out,
                       Optim_CoordinateVector:$dc_out);
  let results = (outs AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$dx,
                      Optim_CoordinateVector:$dh,
                      Optim_CoordinateVector:$dc,
                      AnyStaticShapeTensor:$dweights);
  let assemblyFormat = [{
    $x `,` $h `,` $c `,` $weights `,` $dh_out `,` $dc_out attr-dict `:`
    type($x) `,` type($h) `,` type($weights)
  }];
  let hasVerifier = 1;
}

def Optim_LinearVJPOp : Optim_Op<"linear_vjp", [
    Pure, Optim_PerCoordinate, AllTypesMatch<["x", "dx"]>,
    AllTypesMatch<["weights", "dweights"]>
  ]> {
  let summary = "Vector-Jacobian product of `optim.linear`";
  let description = [{
    Given the operands of an `optim.linear` and the cotangent `dy` of its
    result, yields the cotangent of `x`, `W^T dy` (the bias column left out),
    and this coordinate's contribution `dy [x; 1]^T` to the cotangent of the
    weights.
  }];
  let arguments = (ins AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$x,
                       AnyStaticShapeTensor:$weights,
                       AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$dy);
  let results = (outs AnyTypeOf<[AnyFloat, Optim_CoordinateVector]>:$dx,
                      AnyStaticShapeTensor:$dweights);
  let assemblyFormat = [{
    $x `,` $weights `,` $dy attr-dict `:` type($x) `,` type($weights) `,` type($dy)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// QP-layer building blocks
//===----------------------------------------------------------------------===//

def Optim_EyeOp : Optim_Op<"eye", [Pure, Optim_InLayer]> {
  let summary = "The identity matrix";
  let description = [{
    A square identity matrix. Kept as an op rather than a dense constant so
    that large layers stay readable and lowering can exploit the structure.
  }];
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Optim_MatVecOp : Optim_Op<"matvec", [Pure, Optim_InLayer]> {
  let summary = "Matrix-vector product";
  let description = [{
    `y = A x` for a matrix `A` of shape `[m, n]` and a vector `x` of size n.
  }];
  let arguments = (ins AnyStaticShapeTensor:$matrix, AnyStaticShapeTensor:$vector);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $matrix `,` $vector attr-dict `:` type($matrix) `,` type($vector) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Optim_MatMulOp : Optim_Op<"matmul", [Pure, Optim_InLayer]> {
  let summary = "Matrix-matrix product";
  let description = [{
    `C = A B` for matrices `A` of shape `[m, k]` and `B` of shape `[k, n]`.
    A layer builds a positive semidefinite Q from learned factors with it,
    as OptNet does (`Q = L L^T + eps I`).
  }];
  let arguments = (ins AnyStaticShapeTensor:$lhs, AnyStaticShapeTensor:$rhs);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Optim_TransposeOp : Optim_Op<"transpose", [Pure, Optim_InLayer]> {
  let summary = "Matrix transpose";
  let description = [{
    `B = A^T`: `B[j, i] = A[i, j]` for a matrix `A` of shape `[m, n]`.
  }];
  let arguments = (ins AnyStaticShapeTensor:$matrix);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $matrix attr-dict `:` type($matrix) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Optim_DiagOp : Optim_Op<"diag", [Pure, Optim_InLayer]> {
  let summary = "Diagonal matrix of a vector";
  let description = [{
    `D[i, j] = v[i]` where `i == j`, 0 elsewhere, for a vector `v` of size
    n: a learned positive diagonal of Q is `diag(exp(d))`.
  }];
  let arguments = (ins AnyStaticShapeTensor:$vector);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $vector attr-dict `:` type($vector) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Optim_VStackOp : Optim_Op<"vstack", [Pure, Optim_InLayer]> {
  let summary = "Vectors or matrices stacked";
  let description = [{
    Vectors concatenated into one vector, or matrices with the same number
    of columns stacked row block after row block: a box's constraints are
    `G = vstack(eye(n), -eye(n))`, `h = vstack(hi, -lo)`.
  }];
  let arguments = (ins Variadic<AnyStaticShapeTensor>:$parts);
  let results = (outs AnyStaticShapeTensor:$result);
  let assemblyFormat = [{
    $parts attr-dict `:` type($parts) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Optim_QPOp : Optim_Op<"qp", [
    Pure, Optim_InLayer, AttrSizedOperandSegments
  ]> {
  let summary = "Solution of a convex quadratic program";
  let description = [{
    Solves, for one element of a batch,

    ```
    minimize 1/2 z^T Q z + q^T z   subject to   A z = b,  G z <= h
    ```

    `Q` (n x n, positive semidefinite; absent: a linear program) and the
    equality (`A`, `b`) and inequality (`G`, `h`) pairs are optional; `q` is
    not. The results are the primal solution `z` (n), the equality duals `nu`
    (m, empty without equalities) and the inequality duals `lam` (p, empty
    without inequalities). `tol` is the stopping tolerance of the solver and
    `max_iter` its iteration cap. The derivative of the results with respect
    to every operand is defined by the KKT conditions at the solution
    (OptNet, Amos & Kolter 2017).
  }];
  let arguments = (ins
    Optional<AnyStaticShapeTensor>:$Qmat,
    AnyStaticShapeTensor:$qvec,
    Optional<AnyStaticShapeTensor>:$A,
    Optional<AnyStaticShapeTensor>:$b,
    Optional<AnyStaticShapeTensor>:$G,
    Optional<AnyStaticShapeTensor>:$h,
    DefaultValuedAttr<F64Attr, "1.0e-8">:$tol,
    DefaultValuedAttr<I64Attr, "100">:$max_iter
  );
  let results = (outs AnyStaticShapeTensor:$z,
                      AnyStaticShapeTensor:$nu,
                      AnyStaticShapeTensor:$lam);
  let assemblyFormat = [{
    (`Q` `(` $Qmat^ `:` type($Qmat) `)`)?
    `q` `(` $qvec `:` type($qvec) `)`
    (`eq` `(` $A^ `,` $b `:` type($A) `,` type($b) `)`)?
    (`ineq` `(` $G^ `,` $h `:` type($G) `,` type($h) `)`)?
    attr-dict `->` type($z) `,` type($nu) `,` type($lam)
  }];
  let hasVerifier = 1;
}

#endif // OPTIM_OPS
