//===- Passes.td - optim lowering passes -------------------*- tablegen -*-===//

#ifndef OPTIM_CONVERSION_PASSES
#define OPTIM_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def LowerRulesToKernels
    : Pass<"optim-lower-rules-to-kernels", "::mlir::ModuleOp"> {
  let summary = "Turn each optim.rule into one fused CPU kernel over a chunk table";
  let description = [{
    Replaces every `optim.rule` by a `func.func @optim_rule_<name>` with the
    ABI of runtime/include/optim/KernelABI.h: it loops over a range of chunks
    and, in each, over the chunk's coordinates, reading p, g and the state
    once and writing p and the state once.

    The body is split by a uniformity analysis: what depends only on the
    hyperparameters and the step (bias corrections, `1 - beta`, ...) is
    computed once per call, in scalar form, before any loop; what depends on
    p, g or the state is computed per coordinate, `vector-width` coordinates
    at a time (SIMD lanes = coordinates), with a scalar loop for the
    remainder of each chunk.

    A per-coordinate vector (`state h[N]`, `log_sign`) is N values per
    coordinate, each `vector-width` coordinates wide; a vector state is
    stored component-major (component j at `state + j * stride`).
    Reductions (`sum`, `mean`, `dot`) add the components in order.

    Learned rules: `lstm_cell` and `linear` read their weights (uniform,
    row-major, from the kernel's `weights` argument) in loops over rows and
    inputs, with the per-coordinate inputs and outputs in stack buffers: an
    unrolled 2x20 LSTM is ~10k instructions that LLVM needs close to a
    minute to optimize. z = b + W [x; h] sums the bias first, then the
    inputs in order. The loops are not tuned yet (no register blocking).

    By default every operation rounds as written (IEEE): `m / (1 - beta1 **
    t)` costs a division per coordinate, and no multiply-add is fused. With
    `relaxed-fp`, a division of a per-coordinate value by a uniform one
    becomes a multiplication by the reciprocal computed once per call (as
    PyTorch's own Adam arranges its formula), and the per-coordinate
    arithmetic may contract into fused multiply-adds; results then differ
    from the exact ones by about an ulp per operation.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::arith::ArithDialect"
  ];
  let options = [
    Option<"vectorWidth", "vector-width", "unsigned", /*default=*/"16",
           "Coordinates processed together (SIMD lanes); 1 disables vectors">,
    Option<"relaxedFP", "relaxed-fp", "bool",
           /*default=*/"false",
           "Relaxed rounding: divide by uniform values (bias corrections) by "
           "multiplying with reciprocals computed once per call, and let "
           "multiplies and adds fuse into FMAs; faster, about an ulp per "
           "operation from the exact formula">
  ];
}

#endif // OPTIM_CONVERSION_PASSES
