//===- TrajectoryAxes.cpp - forward steps of rules with axes --------------===//
//
// optim::Trajectory runs the forward steps of a rule with row or column
// states or reductions (KernelABI.h version 10) on an optim::Optimizer over
// its own θ: the chunk table of rectangles, the combine of row and column
// partials and the next buffers are the optimizer's. The tape records what
// the backward pass (TrajectoryAxes.h) reads: the inputs and states before
// the step, the reduced values after.
//
//===----------------------------------------------------------------------===//

#include "TrajectoryImpl.h"

#include <algorithm>
#include <cstring>
#include <memory>

using namespace optim;
using trajectory::Buffer;
using trajectory::Record;

void Trajectory::Impl::startAxes(unsigned threads) {
  std::vector<Param> params;
  for (size_t p = 0; p < sizes.size(); ++p) {
    Param q;
    q.data = theta.get() + offsets[p] * elt;
    q.size = sizes[p];
    q.dtype = info().dtype;
    if (!options.shapes.empty())
      q.shape = options.shapes[p];
    params.push_back(std::move(q));
  }
  OptimizerOptions o;
  o.threads = threads;
  o.chunkSize = options.chunkSize;
  o.seed = options.seed;
  try {
    axes = std::make_unique<Optimizer>(rule, std::move(params), o);
  } catch (const Error &e) {
    // Its refusals (a matrix whose rows or columns do not fit) name the
    // optimizer.
    std::string what = e.what();
    const std::string prefix = "optim::Optimizer";
    if (what.compare(0, prefix.size(), prefix) == 0)
      what = "optim::Trajectory" + what.substr(prefix.size());
    throw Error(what);
  }
  axesImpl = axes->impl.get();
  for (size_t s = 0; s < info().states.size(); ++s)
    if (info().states[s].axis != Axis::None)
      axisStates.push_back(s);
  for (size_t r = 0; r < info().reductions.size(); ++r)
    if (info().reductions[r].axis != Axis::None)
      axisReductions.push_back(r);
  // The matrix functions' operands, which their reverse mode reads.
  if (!axesImpl->matrixReductions.empty()) {
    for (Optimizer::Impl::Slot &slot : axesImpl->slots)
      for (const AlignedBuffer &m : slot.matrices)
        slot.operands.push_back(AlignedBuffer::allocate(m.bytes));
    axesImpl->keepMatrixOperands = true;
  }
}

void Trajectory::Impl::recordAndStepAxes(
    Record &rec, const std::function<void(int64_t)> &record,
    size_t numInputs) {
  // Before anything changes: a record from the spare list has them.
  const RuleInfo &ri = info();
  if (rec.matrixX.empty())
    for (size_t r : axisReductions) {
      bool matrix = ri.reductions[r].axis == Axis::Matrix;
      size_t bytes = matrix ? size_t(total) * elt : 0;
      rec.matrixX.push_back(matrix ? Buffer::allocate(bytes) : Buffer());
      rec.matrixY.push_back(matrix ? Buffer::allocate(bytes) : Buffer());
    }
  forChunks([&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      record(c);
  });
  for (size_t s : axisStates)
    for (size_t p = 0; p < sizes.size(); ++p)
      std::memcpy(rec.states[s].get() + stateOffset(s, p, 0), liveState(s, p),
                  axesImpl->stateCount(axesImpl->slots[p], s) * elt);
  // The optimizer reads the recorded copies: they are what backward()
  // differentiates, and a caller's gradient may not stay put.
  auto tensorOf = [&](const Buffer &b, size_t p) {
    Grad x;
    x.data = b.get() + offsets[p] * elt;
    x.size = sizes[p];
    x.dtype = ri.dtype;
    return x;
  };
  std::vector<Grad> g;
  for (size_t p = 0; p < sizes.size(); ++p)
    g.push_back(tensorOf(rec.grad, p));
  if (numInputs == 0) {
    axes->step(g);
  } else {
    std::vector<Input> in;
    for (size_t k = 0; k < numInputs; ++k) {
      in.push_back({ri.inputs[k], {}});
      for (size_t p = 0; p < sizes.size(); ++p)
        in.back().tensors.push_back(tensorOf(rec.inputs[k], p));
    }
    axes->step(g, in);
  }
  // The tensor reductions' values in the slots of this trajectory's chunks
  // (the same for every chunk of a tensor, or of all for a global one).
  const size_t R = ri.reductions.size();
  rec.reduced.assign(lengths.size() * R, 0.0);
  for (size_t c = 0; c < lengths.size() && R > 0; ++c) {
    const Optimizer::Impl::Slot &slot = axesImpl->slots[chunkParam[c]];
    std::copy_n(axesImpl->reduced.begin() + slot.firstChunk * R, R,
                rec.reduced.begin() + c * R);
  }
  rec.axisReduced = axesImpl->axisReduced;
  // Each matrix function's X and NS(X).
  for (size_t x = 0; x < axisReductions.size(); ++x) {
    const auto &matrices = axesImpl->matrixReductions;
    auto k = std::find(matrices.begin(), matrices.end(), axisReductions[x]);
    if (k == matrices.end())
      continue;
    size_t m = size_t(k - matrices.begin());
    for (size_t p = 0; p < sizes.size(); ++p) {
      const Optimizer::Impl::Slot &slot = axesImpl->slots[p];
      size_t at = size_t(offsets[p]) * elt, bytes = size_t(sizes[p]) * elt;
      if (bytes == 0)
        continue;
      std::memcpy(rec.matrixX[x].get() + at, slot.operands[m].data.get(),
                  bytes);
      std::memcpy(rec.matrixY[x].get() + at, slot.matrices[m].data.get(),
                  bytes);
    }
  }
}
