//===- OptimizerImpl.h - the state behind optim::Optimizer ------*- C++ -*-===//

#ifndef OPTIM_RUNTIME_OPTIMIZERIMPL_H
#define OPTIM_RUNTIME_OPTIMIZERIMPL_H

#include "ThreadPool.h"
#include "optim/Optimizer.h"

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace optim {

/// A 64-byte aligned buffer (StateMemory.h), freed with std::free: the
/// optimizer's state and scratch, and optim::Trajectory's tape.
struct AlignedBuffer {
  struct Free {
    void operator()(void *p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data;
  size_t bytes = 0;

  /// Throws optim::ResourceError "<owner>: out of memory allocating N bytes"
  /// (OPTIM_ERROR_OUT_OF_MEMORY in the C API) when
  /// the allocation fails.
  static AlignedBuffer allocate(size_t bytes,
                                const char *owner = "optim::Optimizer");
  char *get() const { return static_cast<char *>(data.get()); }
};

struct Optimizer::Impl {
  struct Group {
    std::vector<double> hypers;
    size_t firstParam = 0, numParams = 0;
    size_t firstChunk = 0, numChunks = 0;
  };
  struct Slot {
    Param param;
    std::vector<AlignedBuffer> states; // One per state of the rule.
    // Rules with axes (KernelABI.h, version 10): the view [B, R, C], and
    // the NEXT buffer of each row or column state (states[s] is the
    // current one); empty buffers for the other states.
    int64_t B = 1, R = 1, C = 0;
    std::vector<AlignedBuffer> next;
    // The offset of each row or column reduction's combined results in
    // axisReduced (B * R or B * C doubles), in body order of those.
    std::vector<size_t> axisReducedOffset;
    // Matrix functions (KernelABI.h, version 11): one buffer of a T per
    // coordinate for each newton_schulz reduction, in the order of
    // matrixReductions. Transient: rewritten by every step, never saved.
    std::vector<AlignedBuffer> matrices;
    // With keepMatrixOperands: each matrix buffer's X, as the stage wrote
    // it, before the runtime replaced it by NS(X).
    std::vector<AlignedBuffer> operands;
    // Its chunks: [firstChunk, firstChunk + numChunks) of the table.
    size_t firstChunk = 0, numChunks = 0;
  };
  /// Memory a step writes: a parameter or a state buffer.
  struct Region {
    uintptr_t begin, end;
    std::string what; // "parameter 0", "state 'm' of parameter 0"
  };

  Rule rule;
  OptimizerOptions options;
  std::vector<Group> groups;
  std::vector<Slot> slots;
  // The chunk table of KernelABI.h (p, g, the inputs, the states); the
  // gradient and input slots are rewritten by every step.
  std::vector<void *> ptrs;
  std::vector<int64_t> lengths, strides;
  std::vector<size_t> chunkParam;
  std::vector<int64_t> chunkOffset;
  // The kernels' `rng` (KernelABI.h, version 8): the seed, then the global
  // index of each chunk's first coordinate (its position in the parameters
  // concatenated in order). The indices depend on the partition only, so
  // the table is built once; rng[0] is rewritten before every step.
  std::vector<uint64_t> rng;
  std::vector<AlignedBuffer> weights; // One per weights tensor of the rule.
  std::vector<const void *> weightPtrs; // Null until set.
  // Every parameter and state buffer, sorted by address (they are
  // disjoint): a gradient must not overlap any of them.
  std::vector<Region> written;
  int64_t step = 0;
  int64_t skipped = 0;
  std::unique_ptr<ThreadPool> pool;
  // Rules with tensor reductions (KernelABI.h, version 6): the R partials
  // per chunk of the first pass and the reduced values the second reads;
  // paramSizes is every parameter's coordinate count. Empty for other rules.
  std::vector<double> partials, reduced;
  std::vector<int64_t> paramSizes;
  // Rules with axes: every chunk's partials of its row and column
  // reductions (nr or nc doubles each, at chunk c's offsets in
  // axisPartialOffset, X per chunk) and the combined results (per slot,
  // Slot::axisReducedOffset). Allocated once, reused by every step.
  std::vector<double> axisPartials, axisReduced;
  std::vector<size_t> axisPartialOffset;
  // The indices of the row and column states / reductions, in order.
  // axisReductions also holds the matrix functions (two pointers each in
  // the chunk table, as the others; KernelABI.h, version 11).
  std::vector<size_t> axisStates, axisReductions;
  // The newton_schulz reductions, in body order, and the scratch memory of
  // NS(X) for the largest matrix (MatrixFunctions.h), allocated once.
  std::vector<size_t> matrixReductions;
  AlignedBuffer matrixWork;
  // Whether each step keeps the matrix functions' operands X besides their
  // results (Slot::operands, allocated by the one who sets it):
  // optim::Trajectory's backward pass reads both.
  bool keepMatrixOperands = false;
  // The shape values rows() and cols() (version 11): R and C of each
  // chunk's tensor, written into `reduced` before every step. Empty when
  // the rule reads neither.
  std::vector<int64_t> chunkRows, chunkCols;

  const RuleInfo &info() const { return rule.info(); }
  bool hasAxes = false; // info().hasAxes(), cached.
  size_t pointersPerChunk() const {
    return 2 + info().inputs.size() + info().states.size() + axisStates.size() +
           2 * axisReductions.size();
  }
  size_t numChunks() const { return chunkParam.size(); }
  /// The coordinates of chunk c (nr * nc for a rule with axes).
  int64_t chunkLength(size_t c) const {
    return hasAxes ? lengths[4 * c] * lengths[4 * c + 1] : lengths[c];
  }
  /// The elements of state s's buffer of slot `slot`.
  size_t stateCount(const Slot &slot, size_t s) const;
  int stateIndex(const std::string &name) const;
  /// The region of `written` that [data, data + bytes) overlaps, or null.
  const Region *writtenRegion(const void *data, size_t bytes) const;
  void resetState();
  void setWeights(const std::string &name, const void *data, int64_t count,
                  DType dtype);
};

namespace detail {
/// Whether the Optimizer constructor accepts `p.shape` (none, or a valid
/// one; for a rule with axes also one whose rows and columns fit), so that
/// the C API can name the status of its error.
bool paramShapeIsValid(const Param &p, bool axes);
} // namespace detail

} // namespace optim

#endif // OPTIM_RUNTIME_OPTIMIZERIMPL_H
