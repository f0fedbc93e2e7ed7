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

    Rules with vector states or learned weights are not lowered yet: the pass
    reports them and fails.
  }];
  let dependentDialects = [
    "::mlir::LLVM::LLVMDialect", "::mlir::func::FuncDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::arith::ArithDialect"
  ];
  let options = [
    Option<"vectorWidth", "vector-width", "unsigned", /*default=*/"16",
           "Coordinates processed together (SIMD lanes); 1 disables vectors">
  ];
}

#endif // OPTIM_CONVERSION_PASSES
