//===- HeapBuffers.cpp - large kernel buffers on the heap, not the stack --===//

#include "HeapBuffers.h"

#include "mlir/Dialect/LLVMIR/FunctionCallUtils.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;

/// Bytes of one element of an alloca, 0 when it is not a plain scalar or
/// vector (such buffers stay where they are).
static uint64_t elementBytes(Type t) {
  if (auto v = dyn_cast<VectorType>(t))
    return v.isScalable() ? 0 : v.getNumElements() * elementBytes(v.getElementType());
  if (t.isIntOrFloat())
    return (t.getIntOrFloatBitWidth() + 7) / 8;
  return 0;
}

void mlir::optim::moveLargeBuffersToHeap(func::FuncOp func,
                                         uint64_t limitBytes) {
  if (func.isExternal())
    return;
  struct Buffer {
    LLVM::AllocaOp op;
    uint64_t offset;
  };
  SmallVector<Buffer> buffers;
  uint64_t total = 0;
  for (auto alloca : func.front().getOps<LLVM::AllocaOp>()) {
    APInt count;
    const uint64_t bytes = elementBytes(alloca.getElemType());
    if (!bytes || !matchPattern(alloca.getArraySize(), m_ConstantInt(&count)))
      continue;
    const uint64_t align =
        std::max<uint64_t>(alloca.getAlignment().value_or(1), 1);
    total = (total + align - 1) / align * align;
    buffers.push_back({alloca, total});
    total += count.getZExtValue() * bytes;
  }
  if (total <= limitBytes || buffers.empty())
    return;

  auto module = func->getParentOfType<ModuleOp>();
  OpBuilder b(func.getContext());
  Location loc = func.getLoc();
  Type i64 = b.getI64Type(), i8 = b.getI8Type();
  auto ptrType = LLVM::LLVMPointerType::get(b.getContext());
  auto allocFn = LLVM::lookupOrCreateAlignedAllocFn(b, module, i64);
  auto freeFn = LLVM::lookupOrCreateFreeFn(b, module);
  if (failed(allocFn) || failed(freeFn))
    return;

  b.setInsertionPointToStart(&func.front());
  const uint64_t rounded = (total + 63) / 64 * 64; // aligned_alloc's rule
  Value align = LLVM::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(64));
  Value size =
      LLVM::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(rounded));
  Value base = LLVM::CallOp::create(b, loc, *allocFn, ValueRange{align, size})
                   .getResult();
  Value null = LLVM::ZeroOp::create(b, loc, ptrType);
  Value failedAlloc =
      LLVM::ICmpOp::create(b, loc, LLVM::ICmpPredicate::eq, base, null);
  auto check = scf::IfOp::create(b, loc, failedAlloc, /*withElse=*/false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(check.thenBlock());
    LLVM::Trap::create(b, loc);
  }
  for (Buffer &buf : buffers) {
    Value offset =
        LLVM::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(buf.offset));
    Value slice = LLVM::GEPOp::create(b, loc, ptrType, i8, base,
                                      ArrayRef<LLVM::GEPArg>{offset});
    buf.op.getResult().replaceAllUsesWith(slice);
    buf.op.erase();
  }
  func.walk([&](func::ReturnOp ret) {
    OpBuilder at(ret);
    LLVM::CallOp::create(at, ret.getLoc(), *freeFn, ValueRange{base});
  });
}
