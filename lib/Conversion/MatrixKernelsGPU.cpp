//===- MatrixKernelsGPU.cpp - newton_schulz's CUDA kernels ----------------===//
//
// A rule with a matrix function (KernelABI.h, "Matrix functions on CUDA")
// needs four kernels besides its own, the same for every such rule of an
// element type: optim_matrix_gemm_<t>, optim_matrix_combine_<t>,
// optim_matrix_sumsq_<t> and optim_matrix_scale_<t>. Each is a thin gpu.func
// that passes its block's coordinates and its arguments to a device function of
// lib/Device/MatrixNVPTX.cpp (optim/MatrixBlock.h), whose bitcode the NVVM
// target links in (lib/Compiler/GPUCodeGen.cpp): the block's work is C++
// that the runtime's tests also run on the CPU, bit for bit.
//
//===----------------------------------------------------------------------===//

#include "GPURuleLowering.h"

#include "optim/KernelABI.h"

using namespace mlir;

namespace mlir::optim {

/// One kernel `name` taking `args` (generic pointers for pointers) that
/// calls `name`_block with its block's coordinates before its own
/// arguments: blockIdx.z (the matrix of the batch), then blockIdx.y and
/// blockIdx.x (a product's tile) or blockIdx.x and gridDim.x (a slice of a
/// grid-stride loop).
static void emitMatrixKernel(OpBuilder &b, Location loc, StringRef name,
                             ArrayRef<Type> args, bool twoDimensional) {
  MLIRContext *ctx = b.getContext();
  Type i64 = b.getI64Type();
  SmallVector<Type> deviceArgs = {i64, i64, i64};
  deviceArgs.append(args.begin(), args.end());
  auto type =
      LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), deviceArgs);
  std::string device = (name + "_block").str();
  auto callee = LLVM::LLVMFuncOp::create(b, loc, device, type);
  auto func = gpu::GPUFuncOp::create(b, loc, name, b.getFunctionType(args, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  OpBuilder::InsertionGuard guard(b);
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto asI64 = [&](Value v) -> Value {
    return arith::IndexCastOp::create(b, loc, i64, v);
  };
  Value z = asI64(gpu::BlockIdOp::create(b, loc, gpu::Dimension::z));
  Value x = asI64(gpu::BlockIdOp::create(b, loc, gpu::Dimension::x));
  SmallVector<Value> operands;
  if (twoDimensional)
    operands = {z, asI64(gpu::BlockIdOp::create(b, loc, gpu::Dimension::y)), x};
  else
    operands = {z, x, asI64(gpu::GridDimOp::create(b, loc, gpu::Dimension::x))};
  operands.append(entry.getArguments().begin(), entry.getArguments().end());
  LLVM::CallOp::create(b, loc, callee, operands);
  gpu::ReturnOp::create(b, loc);
}

void emitMatrixKernels(OpBuilder &b, gpu::GPUModuleOp gpuModule, FloatType elt,
                       Location loc) {
  std::string suffix = elt.isF32() ? "f32" : "f64";
  std::string gemm = OPTIM_MATRIX_SYMBOL_PREFIX "gemm_" + suffix;
  if (gpuModule.lookupSymbol(gemm))
    return;
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(gpuModule.getBody());
  Type i64 = b.getI64Type(), f64 = b.getF64Type();
  Type ptr = LLVM::LLVMPointerType::get(b.getContext());
  // (M, N, K, alpha, A, ars, acs, sA, B, brs, bcs, sB, beta, D, sD, C, sC,
  // kc, P); grid (ceil(N / 64), ceil(M / 64), matrices x slices), s* the
  // strides between the batch's matrices, kc the slices' depth (P their
  // products) when K is split.
  emitMatrixKernel(b, loc, gemm,
                   {i64, i64, i64, elt, ptr, i64, i64, i64, ptr, i64, i64, i64,
                    elt, ptr, i64, ptr, i64, i64, ptr},
                   /*twoDimensional=*/true);
  // (M, N, alpha, P, S, beta, D, sD, C, sC): a split product's slices summed.
  emitMatrixKernel(b, loc, OPTIM_MATRIX_SYMBOL_PREFIX "combine_" + suffix,
                   {i64, i64, elt, ptr, i64, elt, ptr, i64, ptr, i64},
                   /*twoDimensional=*/false);
  // (x, n, sx, partials); one partial per block and matrix.
  emitMatrixKernel(b, loc, OPTIM_MATRIX_SYMBOL_PREFIX "sumsq_" + suffix,
                   {ptr, i64, i64, ptr}, /*twoDimensional=*/false);
  // (y, yrs, ycs, sy, x, xrs, xcs, sx, m, n, partials, numPartials, eps).
  emitMatrixKernel(
      b, loc, OPTIM_MATRIX_SYMBOL_PREFIX "scale_" + suffix,
      {ptr, i64, i64, i64, ptr, i64, i64, i64, i64, i64, ptr, i64, f64},
      /*twoDimensional=*/false);
}

} // namespace mlir::optim
