//===- TrajectoryImpl.h - the state behind optim::Trajectory ----*- C++ -*-===//
//
// Internal to the runtime (not installed): shared by Trajectory.cpp (the
// steps and the backward pass) and TrajectoryAxes.cpp (rules with row or
// column states or reductions).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_TRAJECTORYIMPL_H
#define OPTIM_RUNTIME_LIB_TRAJECTORYIMPL_H

#include "OptimizerImpl.h"
#include "StateMemory.h"
#include "ThreadPool.h"
#include "optim/Trajectory.h"

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace optim {
namespace trajectory {

/// The tape's arrays: elements of the rule's dtype, 64-byte aligned, whose
/// allocation failures name optim::Trajectory.
struct Buffer : AlignedBuffer {
  Buffer() = default;
  Buffer(AlignedBuffer b) : AlignedBuffer(std::move(b)) {}
  static Buffer allocate(size_t bytes) {
    return AlignedBuffer::allocate(bytes, "optim::Trajectory");
  }
};

/// θ, g and the state before one recorded step, and the hyperparameters it
/// ran with (a schedule may change them between steps; the backward pass
/// differentiates each step as it ran).
///
/// For a rule with tensor reductions also the reduced values the step ran
/// with (R per chunk, as passed to the reduced rule kernel), which both VJP
/// kernels read. Kept rather than recomputed from θ, g and the state: R
/// doubles per chunk are a sliver of the tape (chunks hold thousands of
/// coordinates), where recomputing them would cost backward one more pass
/// over the recorded step's memory, and a second copy of the forward's
/// combine that would have to stay bit for bit the same as it.
struct Record {
  Buffer theta, grad;
  std::vector<Buffer> inputs; // Per input (declaration order), as grad.
  std::vector<Buffer> states;
  std::vector<double> hypers;
  std::vector<double> reduced;
  /// Rules with axes: the row and column reductions' results the step ran
  /// with (the optimizer's, Optimizer::Impl::axisReduced).
  std::vector<double> axisReduced;
  /// Rules with matrix functions: per row, column or matrix reduction
  /// (Trajectory::Impl::axisReductions; empty buffers but for the matrix
  /// ones), each coordinate's operand X and result NS(X), laid out as θ.
  std::vector<Buffer> matrixX, matrixY;
  int64_t t = 0;
};

} // namespace trajectory

struct Trajectory::Impl {
  using Buffer = trajectory::Buffer;
  using Record = trajectory::Record;

  Rule rule;
  TrajectoryOptions options;
  std::unique_ptr<ThreadPool> pool;
  size_t elt = 4;
  std::vector<int64_t> sizes, offsets; // Per parameter, in coordinates.
  int64_t total = 0;
  Buffer theta, adjTheta;
  /// Per state, all parameters (stateBase). A rule with axes keeps its
  /// state in `axes` instead: `states` is then empty.
  std::vector<Buffer> states, adjStates;
  /// Per state and parameter: where the parameter's values start in a
  /// state buffer, in elements (offsets[p] * size for a per-coordinate
  /// state, a running sum of B * R or B * C for a row or column state);
  /// per state: the elements of all parameters.
  std::vector<std::vector<size_t>> stateBase;
  std::vector<size_t> stateTotal;
  /// Rules with row or column states or reductions (KernelABI.h, version
  /// 10): an optim::Optimizer over θ runs the forward steps (its chunk
  /// table of rectangles, the combine of row and column partials, the next
  /// buffers) and holds the state, which its Impl exposes; backward()
  /// gives each coordinate of the chunk table below its row's and column's
  /// values (KernelABI.h, "Reverse mode of rules with axes"). Null for
  /// other rules.
  std::unique_ptr<Optimizer> axes;
  Optimizer::Impl *axesImpl = nullptr;
  /// The rule's row and column states and reductions (indices, in order).
  std::vector<size_t> axisStates, axisReductions;
  std::vector<double> hypers;
  std::vector<Buffer> weights;
  std::vector<const void *> weightPtrs;
  // The chunk table: parameter, offset in it and length of each chunk.
  std::vector<size_t> chunkParam;
  std::vector<int64_t> chunkOffset, lengths, strides;
  /// The kernels' `rng` (KernelABI.h, version 8): the seed, then the global
  /// index of each chunk's first coordinate; the same for every step and
  /// for the forward and VJP kernels, which recompute the same draws.
  std::vector<uint64_t> rng;
  /// Each chunk's tensor's R and C (rules that read rows() or cols()).
  std::vector<int64_t> chunkRows, chunkCols;
  /// The reduce pass's partials (R per chunk), reused by every step.
  std::vector<double> reducePartials;
  std::vector<Record> tape;
  /// Records of dropped tapes, reused by step(): a tape of T steps of a
  /// large rule is hundreds of MiB, and fresh buffers cost a page fault per
  /// 4 KiB on first touch at every truncation.
  std::vector<Record> spare;
  int64_t step = 0;

  const RuleInfo &info() const { return rule.info(); }
  size_t numStates() const { return info().states.size(); }
  size_t numReductions() const { return info().reductions.size(); }
  /// Where coordinate `off` of parameter `p` (row or column `off` for a
  /// row or column state) lies in a state buffer, in bytes.
  size_t stateOffset(size_t s, size_t p, int64_t off) const {
    return (stateBase[s][p] + size_t(off)) * elt;
  }
  /// The live state s of parameter p.
  char *liveState(size_t s, size_t p) {
    if (axesImpl)
      return static_cast<char *>(axesImpl->slots[p].states[s].data.get());
    return states[s].get() + stateOffset(s, p, 0);
  }
  int stateIndex(const std::string &name) const {
    for (size_t s = 0; s < numStates(); ++s)
      if (info().states[s].name == name)
        return int(s);
    return -1;
  }
  template <typename Fn> void forChunks(Fn fn) {
    int64_t numChunks = int64_t(lengths.size());
    unsigned workers = pool->size();
    pool->run([&](unsigned w) {
      int64_t begin = numChunks * w / workers;
      int64_t end = numChunks * (w + 1) / workers;
      if (begin < end)
        fn(begin, end);
    });
  }
  /// Whether `b` shares a byte with [begin, end).
  static bool overlap(const Buffer &b, uintptr_t begin, uintptr_t end) {
    uintptr_t at = reinterpret_cast<uintptr_t>(b.get());
    return b.bytes > 0 && begin < at + b.bytes && at < end;
  }
  /// Whether the `count` elements at `data` overlap the adjoints of θ or of
  /// a state, which backward zeroes and writes.
  bool inAdjoints(const void *data, int64_t count) const {
    uintptr_t begin = reinterpret_cast<uintptr_t>(data);
    uintptr_t end = begin + size_t(count) * elt;
    if (count <= 0)
      return false;
    if (overlap(adjTheta, begin, end))
      return true;
    for (const Buffer &b : adjStates)
      if (overlap(b, begin, end))
        return true;
    return false;
  }
  /// "parameters" or "state" when the `count` elements at `data` overlap
  /// θ or a state buffer of the trajectory, else null.
  const char *ownMemory(const void *data, int64_t count) const {
    uintptr_t begin = reinterpret_cast<uintptr_t>(data);
    uintptr_t end = begin + size_t(count) * elt;
    auto overlaps = [&](const Buffer &b) {
      return count > 0 && overlap(b, begin, end);
    };
    if (overlaps(theta))
      return "parameters";
    for (const Buffer &b : states)
      if (overlaps(b))
        return "state";
    if (axesImpl)
      for (const Optimizer::Impl::Slot &slot : axesImpl->slots)
        for (const AlignedBuffer &b : slot.states) {
          uintptr_t at = reinterpret_cast<uintptr_t>(b.data.get());
          if (count > 0 && b.bytes > 0 && begin < at + b.bytes && at < end)
            return "state";
        }
    return nullptr;
  }
  /// Creates `axes` over θ with the parameters' shapes.
  void startAxes(unsigned threads);
  /// The forward step of a rule with axes into `rec`: `record(c)` copies
  /// chunk c's θ, g, inputs and per-coordinate states; then `axes` steps
  /// with the recorded g and inputs, and `rec` keeps its reduced values.
  void recordAndStepAxes(Record &rec,
                         const std::function<void(int64_t)> &record,
                         size_t numInputs);
  /// Trajectory::step with the inputs in declaration order.
  void runStep(const std::vector<const void *> &grads,
               const std::vector<const std::vector<const void *> *> &inputs);
  void dropTape() {
    for (Record &r : tape)
      spare.push_back(std::move(r));
    tape.clear();
  }
  void fillStates(std::vector<Buffer> &bufs, bool zero) {
    for (size_t s = 0; s < numStates(); ++s) {
      size_t count = stateTotal[s];
      double v = zero ? 0.0 : info().states[s].init;
      if (info().dtype == DType::F32)
        std::fill_n(reinterpret_cast<float *>(bufs[s].get()), count, float(v));
      else
        std::fill_n(reinterpret_cast<double *>(bufs[s].get()), count, v);
    }
  }
};

} // namespace optim

#endif // OPTIM_RUNTIME_LIB_TRAJECTORYIMPL_H
