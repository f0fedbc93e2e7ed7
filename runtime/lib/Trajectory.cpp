//===- Trajectory.cpp - unrolled steps of a rule and their reverse mode ---===//

#include "optim/Trajectory.h"
#include "InputOrder.h"
#include "OptimizerImpl.h"
#include "Reductions.h"
#include "Shapes.h"
#include "StateMemory.h"
#include "ThreadPool.h"
#include "optim/Safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

using namespace optim;

namespace {
/// A 64-byte aligned array of elements of the rule's dtype (StateMemory.h).
struct Buffer {
  struct Free {
    void operator()(void *p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data;
  size_t bytes = 0;
  static Buffer allocate(size_t bytes) {
    Buffer b;
    b.data.reset(static_cast<char *>(allocateStateMemory(bytes)));
    if (!b.data)
      throw Error("optim::Trajectory: out of memory allocating " +
                  std::to_string(bytes) + " bytes");
    b.bytes = bytes;
    return b;
  }
  char *get() const { return data.get(); }
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
  int64_t t = 0;
};
} // namespace

struct Trajectory::Impl {
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
  /// "parameters" or "state" when the `count` elements at `data` overlap
  /// θ or a state buffer of the trajectory, else null.
  const char *ownMemory(const void *data, int64_t count) const {
    uintptr_t begin = reinterpret_cast<uintptr_t>(data);
    uintptr_t end = begin + size_t(count) * elt;
    auto overlaps = [&](const Buffer &b) {
      uintptr_t at = reinterpret_cast<uintptr_t>(b.get());
      return count > 0 && b.bytes > 0 && begin < at + b.bytes && at < end;
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

Trajectory::Trajectory(Rule rule, std::vector<int64_t> sizes,
                       TrajectoryOptions options)
    : impl(std::make_unique<Impl>()) {
  if (!rule)
    throw Error("optim::Trajectory: the rule is empty; compile one first");
  const RuleInfo &ri = rule.info();
  detail::checkKernelsMatchSignature(rule, "optim::Trajectory");
  // After the checks above the kernels match the signature, so this is
  // optim_vjp_kernel_ for a rule without reductions and both VJP kernels of
  // KernelABI.h for one with.
  if (!rule.hasVJP()) {
    std::string kernels =
        ri.reductions.empty()
            ? ""
            : " (its reductions need " OPTIM_REDUCED_VJP_SYMBOL_PREFIX +
                  ri.name + " and " OPTIM_REDUCTIONS_VJP_SYMBOL_PREFIX +
                  ri.name + ")";
    throw Error("optim::Trajectory: rule '" + ri.name +
                "' has no reverse mode" + kernels +
                "; compile it with CompileOptions::vjp");
  }
  if (options.chunkSize <= 0)
    throw Error("optim::Trajectory: chunkSize must be positive, got " +
                std::to_string(options.chunkSize));
  checkThreadCount(options.threads, "optim::Trajectory");
  Impl &im = *impl;
  im.rule = std::move(rule);
  im.options = options;
  im.elt = dtypeSize(im.info().dtype);
  // The byte counts of the buffers below (the largest is a state of
  // `maxState` components) must not overflow.
  int64_t maxState = 1;
  for (const StateSpec &s : im.info().states)
    maxState = std::max(maxState, s.size);
  const int64_t limit = int64_t(PTRDIFF_MAX / im.elt) / maxState;
  for (size_t p = 0; p < sizes.size(); ++p) {
    if (sizes[p] < 0)
      throw Error("optim::Trajectory: parameter " + std::to_string(p) +
                  " has a negative size");
    if (sizes[p] > limit - im.total)
      throw Error("optim::Trajectory: parameter " + std::to_string(p) +
                  " has " + std::to_string(sizes[p]) +
                  " elements, more than the address space holds");
    im.offsets.push_back(im.total);
    im.total += sizes[p];
  }
  if (!options.shapes.empty() && options.shapes.size() != sizes.size())
    throw Error("optim::Trajectory: TrajectoryOptions::shapes has " +
                std::to_string(options.shapes.size()) + " shapes for " +
                std::to_string(sizes.size()) +
                " parameters (one per parameter, or none)");
  for (size_t p = 0; p < options.shapes.size(); ++p)
    if (std::string why = detail::checkShape(options.shapes[p], sizes[p]);
        !why.empty())
      throw Error("optim::Trajectory: parameter " + std::to_string(p) + ": " +
                  why);
  im.sizes = std::move(sizes);
  unsigned threads = options.threads
                         ? options.threads
                         : std::max(1u, std::thread::hardware_concurrency());
  im.pool = std::make_unique<ThreadPool>(threads);
  // Allocated before the chunk table, whose length grows with the sizes: a
  // size too large for memory fails here, at once.
  im.theta = Buffer::allocate(size_t(im.total) * im.elt);
  im.adjTheta = Buffer::allocate(size_t(im.total) * im.elt);
  std::memset(im.theta.get(), 0, im.theta.bytes);
  std::memset(im.adjTheta.get(), 0, im.adjTheta.bytes);
  if (ri.hasAxes())
    im.startAxes(threads);
  for (size_t s = 0; s < im.numStates(); ++s) {
    const StateSpec &spec = im.info().states[s];
    im.stateBase.emplace_back();
    size_t count = 0;
    for (size_t p = 0; p < im.sizes.size(); ++p) {
      im.stateBase[s].push_back(count);
      if (spec.axis == Axis::None) {
        count += size_t(im.sizes[p] * spec.size);
      } else {
        const Optimizer::Impl::Slot &slot = im.axesImpl->slots[p];
        count += size_t(slot.B * (spec.axis == Axis::Row ? slot.R : slot.C));
      }
    }
    im.stateTotal.push_back(count);
    if (!im.axes)
      im.states.push_back(Buffer::allocate(count * im.elt));
    im.adjStates.push_back(Buffer::allocate(count * im.elt));
  }
  im.fillStates(im.adjStates, /*zero=*/true);
  const bool shapeValues = detail::hasShapeValues(im.info().reductions);
  for (size_t p = 0; p < im.sizes.size(); ++p) {
    int64_t R = 1, C = im.sizes[p];
    if (!options.shapes.empty())
      detail::rowsAndCols(options.shapes[p], im.sizes[p], R, C);
    for (int64_t off = 0; off < im.sizes[p]; off += options.chunkSize) {
      im.chunkParam.push_back(p);
      im.chunkOffset.push_back(off);
      im.lengths.push_back(std::min(options.chunkSize, im.sizes[p] - off));
      im.strides.push_back(im.sizes[p]);
      if (shapeValues) {
        im.chunkRows.push_back(R);
        im.chunkCols.push_back(C);
      }
    }
  }
  im.rng.push_back(options.seed);
  for (size_t c = 0; c < im.lengths.size(); ++c)
    im.rng.push_back(
        uint64_t(im.offsets[im.chunkParam[c]] + im.chunkOffset[c]));
  im.reducePartials.assign(im.lengths.size() * im.numReductions(), 0.0);
  for (const HyperParam &h : im.info().hypers)
    im.hypers.push_back(h.defaultValue);
  im.weights.resize(im.info().weights.size());
  im.weightPtrs.assign(im.info().weights.size(), nullptr);
  resetState();
}

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
}

void Trajectory::Impl::recordAndStepAxes(
    Record &rec, const std::function<void(int64_t)> &record,
    size_t numInputs) {
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
  const RuleInfo &ri = info();
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
}

Trajectory::~Trajectory() = default;

Trajectory::Impl &Trajectory::live(const char *fn) const {
  if (!impl)
    throw Error(std::string("optim::Trajectory::") + fn +
                ": the trajectory was moved from");
  return *impl;
}
Trajectory::Trajectory(Trajectory &&) noexcept = default;
Trajectory &Trajectory::operator=(Trajectory &&) noexcept = default;

const Rule &Trajectory::rule() const { return live("rule").rule; }
size_t Trajectory::numParams() const { return live("numParams").sizes.size(); }

static void checkParam(const Trajectory::Impl &im, size_t i, const char *fn) {
  if (i >= im.sizes.size())
    throw Error(std::string("optim::Trajectory::") + fn + ": parameter " +
                std::to_string(i) + " does not exist (there are " +
                std::to_string(im.sizes.size()) + ")");
}

int64_t Trajectory::paramSize(size_t i) const {
  const Impl &im = live("paramSize");
  checkParam(im, i, "paramSize");
  return im.sizes[i];
}
void *Trajectory::param(size_t i) {
  Impl &im = live("param");
  checkParam(im, i, "param");
  return im.theta.get() + im.offsets[i] * im.elt;
}
const void *Trajectory::param(size_t i) const {
  const Impl &im = live("param");
  checkParam(im, i, "param");
  return im.theta.get() + im.offsets[i] * im.elt;
}

/// The index of the rule's state `name`, or an optim::Error naming `fn`.
static size_t checkState(const Trajectory::Impl &im, const std::string &name,
                         const char *fn) {
  int s = im.stateIndex(name);
  if (s < 0)
    throw Error(std::string("optim::Trajectory::") + fn + ": rule '" +
                im.info().name + "' has no state '" + name + "'");
  return size_t(s);
}

void *Trajectory::state(size_t i, const std::string &name) {
  Impl &im = live("state");
  checkParam(im, i, "state");
  return im.liveState(checkState(im, name, "state"), i);
}

int64_t Trajectory::stateSize(size_t i, const std::string &name) const {
  const Impl &im = live("stateSize");
  checkParam(im, i, "stateSize");
  size_t s = checkState(im, name, "stateSize");
  size_t next = size_t(i) + 1 < im.sizes.size() ? im.stateBase[s][i + 1]
                                                 : im.stateTotal[s];
  return int64_t(next - im.stateBase[s][i]);
}

void Trajectory::set(const std::string &name, double value) {
  Impl &im = live("set");
  const RuleInfo &ri = im.info();
  int h = ri.findHyper(name);
  if (h < 0)
    throw Error("optim::Trajectory::set: rule '" + ri.name +
                "' has no hyperparameter '" + name + "'");
  if (!std::isfinite(value))
    throw Error("optim::Trajectory::set: '" + name + "' must be finite");
  if (ri.hypers[h].isConst)
    throw Error("optim::Trajectory::set: '" + name + "' is const in rule '" +
                ri.name + "'; its value is compiled in");
  im.hypers[h] = value;
  if (im.axes)
    im.axes->set(name, value);
}

double Trajectory::get(const std::string &name) const {
  const Impl &im = live("get");
  int h = im.info().findHyper(name);
  if (h < 0)
    throw Error("optim::Trajectory::get: rule '" + im.info().name +
                "' has no hyperparameter '" + name + "'");
  return im.hypers[h];
}

static int64_t countOf(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// The recorded steps ran with the weights in use; backward() differentiates
/// them with the same weights, which are not recorded per step.
static void checkNoTape(const Trajectory::Impl &im, const char *fn) {
  if (!im.tape.empty())
    throw Error(std::string("optim::Trajectory::") + fn + ": " +
                std::to_string(im.tape.size()) +
                " recorded steps ran with the current weights; call "
                "truncate() or resetState() before changing them");
}

void Trajectory::setSeed(uint64_t seed) {
  Impl &im = live("setSeed");
  if (!im.tape.empty())
    throw Error("optim::Trajectory::setSeed: " +
                std::to_string(im.tape.size()) +
                " recorded steps drew with the current seed; call "
                "truncate() or resetState() before changing it");
  im.rng[0] = seed;
  if (im.axesImpl)
    im.axesImpl->options.seed = seed;
}

uint64_t Trajectory::seed() const { return live("seed").rng[0]; }

void Trajectory::setWeights(const std::string &name, const void *data,
                            int64_t count) {
  Impl &im = live("setWeights");
  const RuleInfo &ri = im.info();
  for (size_t w = 0; w < ri.weights.size(); ++w) {
    if (ri.weights[w].name != name)
      continue;
    checkNoTape(im, "setWeights");
    int64_t expected = countOf(ri.weights[w].shape);
    if (count != expected)
      throw Error("optim::Trajectory::setWeights: '" + name + "' needs " +
                  std::to_string(expected) + " elements, got " +
                  std::to_string(count));
    if (!data)
      throw Error("optim::Trajectory::setWeights: '" + name +
                  "' is a null pointer");
    Buffer copy = Buffer::allocate(size_t(count) * im.elt);
    std::memcpy(copy.get(), data, copy.bytes);
    im.weights[w] = std::move(copy);
    im.weightPtrs[w] = im.weights[w].get();
    return;
  }
  throw Error("optim::Trajectory::setWeights: rule '" + ri.name +
              "' has no weights '" + name + "'");
}

void Trajectory::loadWeights(const std::string &path) {
  const RuleInfo &ri = live("loadWeights").info();
  // As Optimizer::loadWeights: a mistake, not a no-op.
  if (ri.weights.empty())
    throw Error("optim::Trajectory::loadWeights: rule '" + ri.name +
                "' has no learned weights");
  checkNoTape(*impl, "loadWeights");
  SafetensorsFile file = SafetensorsFile::read(path);
  std::vector<const void *> sources;
  for (const WeightSpec &w : ri.weights) // Check all before setting any.
    sources.push_back(file.tensor(w.name, ri.dtype, w.shape));
  for (size_t w = 0; w < ri.weights.size(); ++w)
    setWeights(ri.weights[w].name, sources[w], countOf(ri.weights[w].shape));
}

const void *Trajectory::weights(const std::string &name) const {
  const Impl &im = live("weights");
  const RuleInfo &ri = im.info();
  for (size_t w = 0; w < ri.weights.size(); ++w)
    if (ri.weights[w].name == name)
      return im.weightPtrs[w];
  throw Error("optim::Trajectory::weights: rule '" + ri.name +
              "' has no weights '" + name + "'");
}

void Trajectory::resetState() {
  Impl &im = live("resetState");
  if (im.axesImpl)
    im.axesImpl->resetState();
  else
    im.fillStates(im.states, /*zero=*/false);
  im.step = 0;
  im.dropTape();
}

void Trajectory::truncate() { live("truncate").dropTape(); }
size_t Trajectory::tapeLength() const { return live("tapeLength").tape.size(); }
int64_t Trajectory::stepCount() const { return live("stepCount").step; }

size_t Trajectory::tapeBytes() const {
  size_t bytes = 0;
  for (const Record &r : live("tapeBytes").tape) {
    bytes += r.theta.bytes + r.grad.bytes;
    for (const Buffer &in : r.inputs)
      bytes += in.bytes;
    for (const Buffer &s : r.states)
      bytes += s.bytes;
    bytes += (r.reduced.size() + r.axisReduced.size()) * sizeof(double);
  }
  return bytes;
}

void Trajectory::step(const std::vector<const void *> &grads) {
  Impl &im = live("step");
  // The kernels would read input pointers that nothing set.
  if (!im.info().inputs.empty())
    throw Error(detail::inputsRequired(
        im.info(), "optim::Trajectory::step",
        std::string("step(grads, inputs) with one tensor per parameter for ") +
            (im.info().inputs.size() == 1 ? "it" : "each")));
  im.runStep(grads, {});
}

void Trajectory::step(const std::vector<const void *> &grads,
                      const std::vector<TrajectoryInput> &inputs) {
  Impl &im = live("step");
  im.runStep(grads,
             detail::orderInputs(im.info(), inputs, "optim::Trajectory::step"));
}

void Trajectory::Impl::runStep(
    const std::vector<const void *> &grads,
    const std::vector<const std::vector<const void *> *> &inputs) {
  Impl &im = *this;
  const RuleInfo &ri = im.info();
  if (grads.size() != im.sizes.size())
    throw Error("optim::Trajectory::step: expected " +
                std::to_string(im.sizes.size()) + " gradients, got " +
                std::to_string(grads.size()));
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i] && im.sizes[i] > 0)
      throw Error("optim::Trajectory::step: gradient " + std::to_string(i) +
                  " is a null pointer");
    // θ and the state are written by other threads while chunks copy the
    // gradient: it must not lie in them.
    if (const char *where = im.ownMemory(grads[i], im.sizes[i]))
      throw Error("optim::Trajectory::step: gradient " + std::to_string(i) +
                  " overlaps the trajectory's own " + where +
                  " (copy it first)");
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::vector<const void *> &tensors = *inputs[k];
    std::string what = "optim::Trajectory::step: input '" + ri.inputs[k] + "'";
    if (tensors.size() != im.sizes.size())
      throw Error(what + " has " + std::to_string(tensors.size()) +
                  " tensors; expected " + std::to_string(im.sizes.size()) +
                  " (one per parameter)");
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (!tensors[i] && im.sizes[i] > 0)
        throw Error(what + " of parameter " + std::to_string(i) +
                    " is a null pointer");
      if (const char *where = im.ownMemory(tensors[i], im.sizes[i]))
        throw Error(what + " of parameter " + std::to_string(i) +
                    " overlaps the trajectory's own " + where +
                    " (copy it first)");
    }
  }
  for (size_t w = 0; w < im.weightPtrs.size(); ++w)
    if (!im.weightPtrs[w])
      throw Error("optim::Trajectory::step: weights '" + ri.weights[w].name +
                  "' are not set");

  Record rec;
  if (!im.spare.empty()) {
    rec = std::move(im.spare.back());
    im.spare.pop_back();
  } else {
    rec.theta = Buffer::allocate(im.theta.bytes);
    rec.grad = Buffer::allocate(im.theta.bytes);
    for (size_t k = 0; k < inputs.size(); ++k)
      rec.inputs.push_back(Buffer::allocate(im.theta.bytes));
    for (size_t count : im.stateTotal)
      rec.states.push_back(Buffer::allocate(count * im.elt));
  }
  rec.t = im.step + 1;
  rec.hypers = im.hypers;

  // Each chunk records its own coordinates, then steps them while they are
  // in cache: the copies run in parallel, and the kernel reads what was
  // just copied. (Chunks cover every coordinate; a vector state of S
  // components is S runs of the chunk's length.)
  std::vector<void *> ptrs;
  for (size_t c = 0; c < im.lengths.size() && !im.axes; ++c) {
    size_t p = im.chunkParam[c];
    int64_t off = im.chunkOffset[c];
    size_t at = size_t(im.offsets[p] + off) * im.elt;
    ptrs.push_back(im.theta.get() + at);
    ptrs.push_back(rec.grad.get() + at);
    for (const Buffer &in : rec.inputs)
      ptrs.push_back(in.get() + at);
    for (size_t s = 0; s < im.numStates(); ++s)
      ptrs.push_back(im.states[s].get() + im.stateOffset(s, p, off));
  }
  auto record = [&](int64_t c) {
    size_t p = im.chunkParam[c];
    int64_t off = im.chunkOffset[c];
    size_t at = size_t(im.offsets[p] + off) * im.elt;
    size_t bytes = size_t(im.lengths[c]) * im.elt;
    std::memcpy(rec.theta.get() + at, im.theta.get() + at, bytes);
    std::memcpy(rec.grad.get() + at,
                static_cast<const char *>(grads[p]) + off * im.elt, bytes);
    for (size_t k = 0; k < inputs.size(); ++k)
      std::memcpy(rec.inputs[k].get() + at,
                  static_cast<const char *>((*inputs[k])[p]) + off * im.elt,
                  bytes);
    for (size_t s = 0; s < im.numStates(); ++s) {
      if (im.info().states[s].axis != Axis::None)
        continue; // Recorded whole, below.
      int64_t comps = im.info().states[s].size;
      for (int64_t j = 0; j < comps; ++j) {
        size_t from = size_t(j * im.sizes[p] + off) * im.elt;
        std::memcpy(rec.states[s].get() + im.stateOffset(s, p, 0) + from,
                    im.liveState(s, p) + from, bytes);
      }
    }
  };
  if (im.axes) {
    im.recordAndStepAxes(rec, record, inputs.size());
    im.tape.push_back(std::move(rec));
    im.step += 1;
    return;
  }
  const void *const *w = im.weightPtrs.empty() ? nullptr : im.weightPtrs.data();
  if (im.numReductions() == 0) {
    optim_rule_kernel kernel = im.rule.kernel();
    im.forChunks([&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        record(c);
        kernel(ptrs.data(), im.lengths.data(), im.strides.data(), c, c + 1,
               im.hypers.data(), rec.t, w, im.rng.data());
      }
    });
  } else {
    // L + 2 passes, as optim::Optimizer (KernelABI.h, versions 6, 9 and
    // 11): each chunk is recorded and reduced (stage 0) while in cache, the
    // partials are combined in chunk order into the values the step runs
    // with (kept in the record for backward), each higher level's stage
    // reads the lower levels' values, then the rule runs with all of them.
    // The shape values are in place before stage 0, which may read them;
    // a stage of shape values only is not run.
    optim_reduce_kernel reduce = im.rule.reduceKernel();
    const std::vector<ReductionSpec> &reductions = im.info().reductions;
    rec.reduced.assign(im.reducePartials.size(), 0.0);
    if (!im.chunkRows.empty())
      detail::fillShapeValues(reductions, im.lengths.size(),
                              im.chunkRows.data(), im.chunkCols.data(),
                              rec.reduced.data());
    const bool stage0 = detail::stageRuns(reductions, 0);
    im.forChunks([&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        record(c);
        if (stage0)
          reduce(ptrs.data(), im.lengths.data(), im.strides.data(), c, c + 1,
                 im.hypers.data(), rec.t, w, im.reducePartials.data(),
                 rec.reduced.data(), /*stage=*/0, im.rng.data());
      }
    });
    if (stage0)
      detail::combineReductions(reductions, 0, im.chunkParam, im.sizes,
                                im.reducePartials.data(), rec.reduced.data());
    for (unsigned s = 1, last = detail::maxReductionLevel(reductions);
         s <= last; ++s) {
      if (!detail::stageRuns(reductions, s))
        continue;
      im.forChunks([&](int64_t begin, int64_t end) {
        reduce(ptrs.data(), im.lengths.data(), im.strides.data(), begin, end,
               im.hypers.data(), rec.t, w, im.reducePartials.data(),
               rec.reduced.data(), int64_t(s), im.rng.data());
      });
      detail::combineReductions(reductions, s, im.chunkParam, im.sizes,
                                im.reducePartials.data(), rec.reduced.data());
    }
    optim_reduced_rule_kernel kernel = im.rule.reducedKernel();
    im.forChunks([&](int64_t begin, int64_t end) {
      kernel(ptrs.data(), im.lengths.data(), im.strides.data(), begin, end,
             im.hypers.data(), rec.t, w, rec.reduced.data(), im.rng.data());
    });
  }
  im.tape.push_back(std::move(rec));
  im.step += 1;
}

template <typename T>
static void addInto(char *dst, const void *src, int64_t n) {
  T *d = reinterpret_cast<T *>(dst);
  const T *s = static_cast<const T *>(src);
  for (int64_t i = 0; i < n; ++i)
    d[i] += s[i];
}

/// Adds the first sum.size() of each chunk's `stride` partials (of the
/// rule's dtype) to `sum`, in chunk order, whatever thread computed each
/// chunk: the result does not depend on the number of threads.
static void addPartials(std::vector<double> &sum, DType dtype,
                        const char *partials, size_t numChunks,
                        size_t stride) {
  for (size_t c = 0; c < numChunks; ++c) {
    if (dtype == DType::F32) {
      const float *p = reinterpret_cast<const float *>(partials) + c * stride;
      for (size_t j = 0; j < sum.size(); ++j)
        sum[j] += p[j];
    } else {
      const double *p = reinterpret_cast<const double *>(partials) + c * stride;
      for (size_t j = 0; j < sum.size(); ++j)
        sum[j] += p[j];
    }
  }
}

namespace {
/// The reverse mode of a rule with row or column states or reductions
/// (KernelABI.h, "Reverse mode of rules with axes"). The VJP kernels see
/// row and column values as per-coordinate ones on the trajectory's flat
/// chunk table: each row or column state's value and cotangent, and for
/// each row or column reduction two pseudo-states (its result, whose
/// returned cotangent is the coordinate's share of its cotangent; a tie
/// slot, whose returned value is the max / min tie indicator). Here they
/// are given to the coordinates of their row (column), and what comes back
/// is summed over it, in coordinate order (deterministic). A row state's
/// new value is computed alike at every coordinate of its row, but the
/// forward pass writes the one of column 0: its cotangent is given to that
/// coordinate only (a column state's to the matrix's first row).
struct AxisBackward {
  using Slot = Optimizer::Impl::Slot;
  Trajectory::Impl &im;
  const std::vector<size_t> &states, &reductions; // Rule indices.
  /// Per coordinate: each row or column state's value and cotangent, each
  /// row or column reduction's value and cotangent and tie cotangent, and
  /// zeros (the tie slots' values).
  std::vector<Buffer> value, cotangent, rho, drho, ties;
  Buffer zeros;
  /// Per row or column reduction, at the optimizer's axisReducedOffset:
  /// the sums of the cotangents and tie indicators.
  std::vector<double> d, n;

  explicit AxisBackward(Trajectory::Impl &im)
      : im(im), states(im.axisStates), reductions(im.axisReductions) {
    size_t bytes = size_t(im.total) * im.elt;
    for (size_t k = 0; k < states.size(); ++k) {
      value.push_back(Buffer::allocate(bytes));
      cotangent.push_back(Buffer::allocate(bytes));
    }
    for (size_t k = 0; k < reductions.size(); ++k) {
      rho.push_back(Buffer::allocate(bytes));
      drho.push_back(Buffer::allocate(bytes));
      ties.push_back(Buffer::allocate(bytes));
    }
    zeros = Buffer::allocate(bytes);
    std::memset(zeros.get(), 0, bytes);
    d.assign(im.axesImpl->axisReduced.size(), 0.0);
    n.assign(d.size(), 0.0);
  }

  const Slot &slot(size_t p) const { return im.axesImpl->slots[p]; }
  const RuleInfo &info() const { return im.info(); }
  /// Row (of B * R) or column (of B * C) of coordinate j of a tensor.
  static int64_t along(const Slot &s, Axis axis, int64_t j) {
    return axis == Axis::Row ? j / s.C : (j / (s.R * s.C)) * s.C + j % s.C;
  }
  /// Whether the forward pass writes the row's (column's) new value from
  /// coordinate j.
  static bool writes(const Slot &s, Axis axis, int64_t j) {
    return axis == Axis::Row ? j % s.C == 0 : (j / s.C) % s.R == 0;
  }

  /// dst[j] = src[along(j)] (or 0 off the writers) for chunk c's
  /// coordinates.
  template <typename T, typename Src>
  void expand(size_t c, Axis axis, const Src *src, char *dst,
              bool writersOnly) const {
    size_t p = im.chunkParam[c];
    int64_t off = im.chunkOffset[c], len = im.lengths[c];
    T *out = reinterpret_cast<T *>(dst + size_t(im.offsets[p] + off) * im.elt);
    for (int64_t j = off; j < off + len; ++j)
      out[j - off] = writersOnly && !writes(slot(p), axis, j)
                         ? T(0)
                         : T(src[along(slot(p), axis, j)]);
  }
  /// out[along(j)] += v[j] over parameter p's coordinates, in order.
  template <typename T>
  void sum(size_t p, Axis axis, const char *v, double *out) const {
    const T *x = reinterpret_cast<const T *>(v + size_t(im.offsets[p]) * im.elt);
    for (int64_t j = 0; j < im.sizes[p]; ++j)
      out[along(slot(p), axis, j)] += double(x[j]);
  }
  Axis stateAxis(size_t k) const { return info().states[states[k]].axis; }
  const ReductionSpec &spec(size_t x) const {
    return info().reductions[reductions[x]];
  }
  double *at(std::vector<double> &v, size_t x, size_t p) {
    return v.data() + slot(p).axisReducedOffset[x];
  }

  /// Before the first kernel of recorded step `rec`: the values, the
  /// states' cotangents (carried from the step after, im.adjStates) at
  /// their writers, zeros for the reductions' cotangents.
  template <typename T> void begin(const Record &rec) {
    im.forChunks([&](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) {
        size_t p = im.chunkParam[c];
        for (size_t k = 0; k < states.size(); ++k) {
          size_t s = states[k];
          const T *old = reinterpret_cast<const T *>(
              rec.states[s].get() + im.stateOffset(s, p, 0));
          const T *adj = reinterpret_cast<const T *>(
              im.adjStates[s].get() + im.stateOffset(s, p, 0));
          expand<T>(size_t(c), stateAxis(k), old, value[k].get(), false);
          expand<T>(size_t(c), stateAxis(k), adj, cotangent[k].get(), true);
        }
        for (size_t x = 0; x < reductions.size(); ++x) {
          const double *r =
              rec.axisReduced.data() + slot(p).axisReducedOffset[x];
          expand<T>(size_t(c), spec(x).axis, r, rho[x].get(), false);
          size_t at = size_t(im.offsets[p] + im.chunkOffset[c]) * im.elt;
          std::memset(drho[x].get() + at, 0, size_t(im.lengths[c]) * im.elt);
          std::memset(ties[x].get() + at, 0, size_t(im.lengths[c]) * im.elt);
        }
      }
    });
  }
  /// After the first kernel: the sums of the reductions' cotangents and
  /// tie indicators over their rows (columns).
  template <typename T> void gather() {
    std::fill(d.begin(), d.end(), 0.0);
    std::fill(n.begin(), n.end(), 0.0);
    for (size_t x = 0; x < reductions.size(); ++x)
      for (size_t p = 0; p < im.sizes.size(); ++p) {
        sum<T>(p, spec(x).axis, drho[x].get(), at(d, x, p));
        sum<T>(p, spec(x).axis, ties[x].get(), at(n, x, p));
      }
  }
  /// Before the reductions kernel's pass for `level`: u of that level's
  /// row and column reductions at their coordinates, 0 for the others.
  template <typename T> void seed(const Record &rec, unsigned level) {
    std::vector<double> u(d.size(), 0.0);
    for (size_t x = 0; x < reductions.size(); ++x) {
      if (spec(x).level != level)
        continue;
      for (size_t p = 0; p < im.sizes.size(); ++p) {
        const Slot &sl = slot(p);
        bool row = spec(x).axis == Axis::Row;
        int64_t count = sl.B * (row ? sl.R : sl.C);
        size_t o = sl.axisReducedOffset[x];
        for (int64_t i = 0; i < count; ++i)
          u[o + size_t(i)] = detail::cotangentFactor(
              spec(x).kind, d[o + size_t(i)], rec.axisReduced[o + size_t(i)],
              n[o + size_t(i)], row ? sl.C : sl.R);
      }
    }
    im.forChunks([&](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) {
        size_t p = im.chunkParam[c];
        for (size_t x = 0; x < reductions.size(); ++x) {
          expand<T>(size_t(c), spec(x).axis,
                    u.data() + slot(p).axisReducedOffset[x], drho[x].get(),
                    false);
          size_t at = size_t(im.offsets[p] + im.chunkOffset[c]) * im.elt;
          std::memset(ties[x].get() + at, 0, size_t(im.lengths[c]) * im.elt);
        }
      }
    });
  }
  /// After the pass for `level`: what reached the results of lower levels'
  /// row and column reductions, added to their sums.
  template <typename T> void addLower(unsigned level) {
    for (size_t x = 0; x < reductions.size(); ++x)
      if (spec(x).level < level)
        for (size_t p = 0; p < im.sizes.size(); ++p)
          sum<T>(p, spec(x).axis, drho[x].get(), at(d, x, p));
  }
  /// At the end of the step: each row (column) state's cotangent, the sum
  /// of its coordinates'. A tensor without coordinates keeps its rows'
  /// and columns' values through the step, and their cotangents.
  template <typename T> void end() {
    for (size_t k = 0; k < states.size(); ++k) {
      size_t s = states[k];
      for (size_t p = 0; p < im.sizes.size(); ++p) {
        if (im.sizes[p] == 0)
          continue;
        const Slot &sl = slot(p);
        size_t count =
            size_t(sl.B * (stateAxis(k) == Axis::Row ? sl.R : sl.C));
        std::vector<double> acc(count, 0.0);
        sum<T>(p, stateAxis(k), cotangent[k].get(), acc.data());
        T *adj = reinterpret_cast<T *>(im.adjStates[s].get() +
                                       im.stateOffset(s, p, 0));
        for (size_t i = 0; i < count; ++i)
          adj[i] = T(acc[i]);
      }
    }
  }
};

/// Calls fn.template operator()<T>() with T the rule's element type.
template <typename Fn> void withElement(DType dtype, Fn &&fn) {
  if (dtype == DType::F32)
    fn(float());
  else
    fn(double());
}
} // namespace

RuleGradient
Trajectory::backward(const std::vector<std::vector<const void *>> &dLdParams) {
  Impl &im = live("backward");
  const RuleInfo &ri = im.info();
  if (dLdParams.size() != im.tape.size())
    throw Error("optim::Trajectory::backward: expected " +
                std::to_string(im.tape.size()) +
                " lists of cotangents (one per recorded step), got " +
                std::to_string(dLdParams.size()));
  for (size_t k = 0; k < dLdParams.size(); ++k)
    if (dLdParams[k].size() != im.sizes.size())
      throw Error("optim::Trajectory::backward: step " + std::to_string(k) +
                  " has " + std::to_string(dLdParams[k].size()) +
                  " cotangents, expected one per parameter (" +
                  std::to_string(im.sizes.size()) + ")");

  std::memset(im.adjTheta.get(), 0, im.adjTheta.bytes);
  im.fillStates(im.adjStates, /*zero=*/true);
  int64_t numPartials = int64_t(ri.hypers.size());
  for (const WeightSpec &w : ri.weights)
    numPartials += countOf(w.shape);
  size_t numChunks = im.lengths.size();
  // A rule with reductions: its first VJP kernel leaves 2R more per chunk
  // (the cotangents of the reduced values and the tie counts); its second
  // reads ru, 2R per chunk, and leaves R more (what flows back to the
  // reduced values of lower levels: nested reductions; KernelABI.h).
  size_t R = im.numReductions();
  size_t firstPartials = size_t(numPartials) + 2 * R;
  size_t secondPartials = size_t(numPartials) + R;
  Buffer partials = Buffer::allocate(std::max<size_t>(numChunks, 1) *
                                     firstPartials * im.elt);
  std::vector<double> sum(numPartials, 0.0), ru(numChunks * 2 * R);
  // Per chunk and reduction: its sum of dL/drho_r (from the first kernel,
  // then from each higher level's pass), its tie count.
  std::vector<double> dRho(numChunks * R), ties(numChunks * R);
  unsigned maxLevel = detail::maxReductionLevel(ri.reductions);
  auto partialAt = [&](size_t index) {
    return ri.dtype == DType::F32
               ? double(reinterpret_cast<const float *>(partials.get())[index])
               : reinterpret_cast<const double *>(partials.get())[index];
  };

  // Rules with axes: two pseudo-states per row or column reduction.
  std::unique_ptr<AxisBackward> axes;
  if (im.axes)
    axes = std::make_unique<AxisBackward>(im);
  size_t X = im.axisReductions.size();
  size_t perChunk = 3 + ri.inputs.size() + 2 * (im.numStates() + 2 * X);
  std::vector<void *> ptrs(numChunks * perChunk);
  // The rule's states, then the pseudo-states, of chunk c (value or
  // cotangent).
  auto stateSlots = [&](void **slot, const Record &rec, size_t c,
                        bool cotangents) {
    size_t p = im.chunkParam[c];
    int64_t off = im.chunkOffset[c];
    size_t at = size_t(im.offsets[p] + off) * im.elt;
    size_t a = 0; // Row and column states, in order.
    for (size_t s = 0; s < im.numStates(); ++s) {
      if (ri.states[s].axis != Axis::None) {
        *slot++ = (cotangents ? axes->cotangent[a] : axes->value[a]).get() + at;
        ++a;
      } else {
        *slot++ = (cotangents ? im.adjStates[s] : rec.states[s]).get() +
                  im.stateOffset(s, p, off);
      }
    }
    for (size_t x = 0; x < X; ++x) {
      *slot++ = (cotangents ? axes->drho[x] : axes->rho[x]).get() + at;
      *slot++ = (cotangents ? axes->ties[x] : axes->zeros).get() + at;
    }
    return slot;
  };
  optim_vjp_kernel vjp = im.rule.vjpKernel();
  optim_reduced_vjp_kernel reducedVJP = im.rule.reducedVJPKernel();
  optim_reduced_vjp_kernel reductionsVJP = im.rule.reductionsVJPKernel();
  const void *const *w = im.weightPtrs.empty() ? nullptr : im.weightPtrs.data();
  for (size_t k = im.tape.size(); k-- > 0;) {
    const Record &rec = im.tape[k];
    for (size_t i = 0; i < im.sizes.size(); ++i) {
      if (!dLdParams[k][i] || !im.sizes[i])
        continue;
      char *dst = im.adjTheta.get() + im.offsets[i] * im.elt;
      if (ri.dtype == DType::F32)
        addInto<float>(dst, dLdParams[k][i], im.sizes[i]);
      else
        addInto<double>(dst, dLdParams[k][i], im.sizes[i]);
    }
    for (size_t c = 0; c < numChunks; ++c) {
      size_t p = im.chunkParam[c];
      int64_t off = im.chunkOffset[c];
      size_t at = size_t(im.offsets[p] + off) * im.elt;
      void **slot = &ptrs[c * perChunk];
      *slot++ = rec.theta.get() + at;
      *slot++ = rec.grad.get() + at;
      for (const Buffer &in : rec.inputs)
        *slot++ = in.get() + at;
      slot = stateSlots(slot, rec, c, /*cotangents=*/false);
      *slot++ = im.adjTheta.get() + at;
      stateSlots(slot, rec, c, /*cotangents=*/true);
    }
    if (axes)
      withElement(ri.dtype, [&](auto t) {
        axes->begin<decltype(t)>(rec);
      });
    if (R == 0) {
      im.forChunks([&](int64_t begin, int64_t end) {
        vjp(ptrs.data(), im.lengths.data(), im.strides.data(), begin, end,
            rec.hypers.data(), rec.t, w, partials.get(), im.rng.data());
      });
      addPartials(sum, ri.dtype, partials.get(), numChunks, numPartials);
      if (axes)
        withElement(ri.dtype, [&](auto t) { axes->end<decltype(t)>(); });
      continue;
    }
    // The reduced values held at those the step ran with, then the
    // cotangents of the reduced values combined over the chunks each was
    // reduced over, then back through the reductions' operands, which adds
    // to the cotangents of θ and the state the first kernel wrote.
    im.forChunks([&](int64_t begin, int64_t end) {
      reducedVJP(ptrs.data(), im.lengths.data(), im.strides.data(), begin,
                 end, rec.hypers.data(), rec.t, w, partials.get(),
                 rec.reduced.data(), im.rng.data());
    });
    addPartials(sum, ri.dtype, partials.get(), numChunks, firstPartials);
    for (size_t c = 0; c < numChunks; ++c)
      for (size_t r = 0; r < R; ++r) {
        dRho[c * R + r] = partialAt(c * firstPartials + numPartials + r);
        ties[c * R + r] = partialAt(c * firstPartials + numPartials + R + r);
      }
    if (axes)
      withElement(ri.dtype, [&](auto t) { axes->gather<decltype(t)>(); });
    // One pass per level, highest first: a level's operands send part of
    // their cotangents to the lower levels' reduced values, which must be
    // complete before their own pass.
    for (unsigned level = maxLevel + 1; level-- > 0;) {
      // Shape values have no cotangent: a level of them only sends nothing.
      if (!detail::stageRuns(ri.reductions, level))
        continue;
      detail::combineReductionCotangents(ri.reductions, im.chunkParam,
                                         im.sizes, rec.reduced.data(),
                                         dRho.data(), ties.data(), level,
                                         ru.data());
      if (axes)
        withElement(ri.dtype,
                    [&](auto t) { axes->seed<decltype(t)>(rec, level); });
      im.forChunks([&](int64_t begin, int64_t end) {
        reductionsVJP(ptrs.data(), im.lengths.data(), im.strides.data(), begin,
                      end, rec.hypers.data(), rec.t, w, partials.get(),
                      ru.data(), im.rng.data());
      });
      addPartials(sum, ri.dtype, partials.get(), numChunks, secondPartials);
      for (size_t c = 0; c < numChunks; ++c)
        for (size_t r = 0; r < R; ++r)
          if (ri.reductions[r].level < level)
            dRho[c * R + r] += partialAt(c * secondPartials + numPartials + r);
      if (axes)
        withElement(ri.dtype,
                    [&](auto t) { axes->addLower<decltype(t)>(level); });
    }
    if (axes)
      withElement(ri.dtype, [&](auto t) { axes->end<decltype(t)>(); });
  }

  RuleGradient out;
  size_t at = 0;
  for (size_t h = 0; h < ri.hypers.size(); ++h)
    out.hypers.push_back(sum[at++]);
  for (const WeightSpec &ws : ri.weights) {
    int64_t n = countOf(ws.shape);
    out.weights.emplace_back(sum.begin() + at, sum.begin() + at + n);
    at += n;
  }
  return out;
}

const void *Trajectory::paramAdjoint(size_t i) const {
  const Impl &im = live("paramAdjoint");
  checkParam(im, i, "paramAdjoint");
  return im.adjTheta.get() + im.offsets[i] * im.elt;
}

const void *Trajectory::stateAdjoint(size_t i, const std::string &name) const {
  const Impl &im = live("stateAdjoint");
  checkParam(im, i, "stateAdjoint");
  size_t s = checkState(im, name, "stateAdjoint");
  return im.adjStates[s].get() + im.stateOffset(s, i, 0);
}
