//===- ChunkTable.h - reading the kernel ABI's chunk table ------*- C++ -*-===//
//
// The CPU rule kernel and the CPU VJP kernel read the same chunk table
// (runtime/include/optim/KernelABI.h); its layout is decoded here only, so the
// two cannot drift apart. The order of a rule's pointers in a chunk (p, g,
// the inputs, the states; version 7) is RuleOp::getChunkStreams().
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_CONVERSION_CHUNKTABLE_H
#define OPTIM_LIB_CONVERSION_CHUNKTABLE_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"

namespace mlir::optim {

/// Chunk c of the table: its `numPtrs` base pointers, its length and the
/// stride of its tensor's vector-state components (all i64 / !llvm.ptr).
struct ChunkView {
  SmallVector<Value> bases;
  Value length;
  Value stride;
};

/// Loads chunk `c` (an i64) of the table `ptrs`, `lengths`, `strides`, whose
/// chunks have `numPtrs` pointers each.
inline ChunkView loadChunk(OpBuilder &b, Location loc, Value ptrs,
                           Value lengths, Value strides, Value c,
                           unsigned numPtrs) {
  Type i64 = b.getI64Type();
  Type ptrType = ptrs.getType();
  auto gep = [&](Type elt, Value base, Value index) -> Value {
    return LLVM::GEPOp::create(b, loc, ptrType, elt, base, ValueRange{index});
  };
  auto i64Const = [&](int64_t v) -> Value {
    return arith::ConstantIntOp::create(b, loc, v, 64);
  };
  ChunkView chunk;
  Value first = arith::MulIOp::create(b, loc, c, i64Const(numPtrs));
  for (unsigned k = 0; k < numPtrs; ++k) {
    Value slot =
        gep(ptrType, ptrs, arith::AddIOp::create(b, loc, first, i64Const(k)));
    chunk.bases.push_back(LLVM::LoadOp::create(b, loc, ptrType, slot, 8));
  }
  chunk.length = LLVM::LoadOp::create(b, loc, i64, gep(i64, lengths, c), 8);
  chunk.stride = LLVM::LoadOp::create(b, loc, i64, gep(i64, strides, c), 8);
  return chunk;
}

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_CHUNKTABLE_H
