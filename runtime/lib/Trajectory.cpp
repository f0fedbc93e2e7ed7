//===- Trajectory.cpp - unrolled steps of a rule and their reverse mode ---===//

#include "optim/Trajectory.h"
#include "InputOrder.h"
#include "Reductions.h"
#include "Shapes.h"
#include "TrajectoryAxes.h"
#include "TrajectoryImpl.h"
#include "optim/Safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

using namespace optim;
using trajectory::AxisBackward;
using trajectory::Buffer;
using trajectory::Record;
using trajectory::withElement;

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

/// As Optimizer::setWeights: a NaN or infinite weight makes every step
/// NaN.
static void checkFiniteWeights(const std::string &name, const void *data,
                               int64_t count, DType dtype) {
  for (int64_t i = 0; i < count; ++i) {
    const double v = dtype == DType::F32
                         ? double(static_cast<const float *>(data)[i])
                         : static_cast<const double *>(data)[i];
    if (!std::isfinite(v))
      throw Error("optim::Trajectory::setWeights: '" + name +
                  "' has a non-finite value (" + std::to_string(v) +
                  ") at index " + std::to_string(i));
  }
}

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
    checkFiniteWeights(name, data, count, ri.dtype);
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
  for (const WeightSpec &w : ri.weights) { // Check all before setting any.
    sources.push_back(file.tensor(w.name, ri.dtype, w.shape));
    checkFiniteWeights(w.name, sources.back(), countOf(w.shape), ri.dtype);
  }
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
    for (const std::vector<Buffer> *m : {&r.matrixX, &r.matrixY})
      for (const Buffer &b : *m)
        bytes += b.bytes;
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
  // The adjoints are zeroed and written below: a cotangent read from them
  // (a caller passing paramAdjoint back) would be read as it is written.
  for (size_t k = 0; k < dLdParams.size(); ++k)
    for (size_t i = 0; i < dLdParams[k].size(); ++i)
      if (dLdParams[k][i] && im.inAdjoints(dLdParams[k][i], im.sizes[i]))
        throw Error("optim::Trajectory::backward: the cotangent of step " +
                    std::to_string(k) + ", parameter " + std::to_string(i) +
                    " lies in the trajectory's own adjoints, which backward "
                    "overwrites; copy it out first");

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
