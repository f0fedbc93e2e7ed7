//===- ChunkTable.h - reading the kernel ABI's chunk table ------*- C++ -*-===//
//
// The CPU rule kernel and the CPU VJP kernel read the same chunk table
// (runtime/include/optim/KernelABI.h); its layout is decoded here only, so the
// two cannot drift apart. The order of a rule's pointers in a chunk (p, g,
// the inputs, the states; version 7) is RuleOp::getChunkStreams(). Rules with
// row and column states or reductions (version 10) have rectangles.
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
/// A rectangle (rules with axes, KernelABI.h version 10) has no length but
/// nr rows of nc columns from row r0 and column c0 of its matrix.
struct ChunkView {
  SmallVector<Value> bases;
  Value length;
  Value stride;
  Value nr, nc, r0, c0;
};

/// Loads chunk `c` (an i64) of the table `ptrs`, `lengths`, `strides`, whose
/// chunks have `numPtrs` pointers each; with `rectangle`, four lengths per
/// chunk (nr, nc, r0, c0).
inline ChunkView loadChunk(OpBuilder &b, Location loc, Value ptrs,
                           Value lengths, Value strides, Value c,
                           unsigned numPtrs, bool rectangle = false) {
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
  if (rectangle) {
    Value four = arith::MulIOp::create(b, loc, c, i64Const(4));
    Value *fields[] = {&chunk.nr, &chunk.nc, &chunk.r0, &chunk.c0};
    for (auto [k, field] : llvm::enumerate(fields))
      *field = LLVM::LoadOp::create(
          b, loc, i64,
          gep(i64, lengths,
              k ? Value(arith::AddIOp::create(b, loc, four, i64Const(k)))
                : four),
          8);
  } else {
    chunk.length = LLVM::LoadOp::create(b, loc, i64, gep(i64, lengths, c), 8);
  }
  chunk.stride = LLVM::LoadOp::create(b, loc, i64, gep(i64, strides, c), 8);
  return chunk;
}

} // namespace mlir::optim

#endif // OPTIM_LIB_CONVERSION_CHUNKTABLE_H
