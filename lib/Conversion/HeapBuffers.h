//===- HeapBuffers.h - large kernel buffers on the heap, not the stack ----===//
//
// The CPU kernels keep their per-lane buffers (a learned rule's gate
// vectors, the VJP kernels' weight-gradient accumulators) in llvm.alloca
// buffers of the entry block. Their size grows with the rule's weights and
// hidden sizes: an LSTM of 750 units needs 9 MB of accumulators, past a
// thread's 8 MB stack (a segfault in Trajectory::backward). Beyond a few
// hundred KiB they are moved to one heap block per call.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_CONVERSION_HEAPBUFFERS_H
#define OPTIM_CONVERSION_HEAPBUFFERS_H

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::optim {

/// The stack bytes a kernel's buffers may take: beyond, all of them go to
/// the heap (far below a thread's 8 MB stack, far above the examples'
/// 2x20 LSTM, whose buffers take tens of KiB and stay on the stack).
constexpr uint64_t kStackBufferLimit = 256 * 1024;

/// When the llvm.alloca buffers of constant size in `func`'s entry block
/// take more than `limitBytes` together, replaces them by slices of one
/// 64-byte aligned heap block allocated at entry (aligned_alloc) and freed
/// before every func.return. A failed allocation traps: the kernels have
/// no error path, and a null block would be written through.
void moveLargeBuffersToHeap(func::FuncOp func,
                            uint64_t limitBytes = kStackBufferLimit);

} // namespace mlir::optim

#endif // OPTIM_CONVERSION_HEAPBUFFERS_H
