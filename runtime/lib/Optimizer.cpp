//===- Optimizer.cpp - apply a compiled rule to a model's parameters ----===//

#include "OptimizerImpl.h"
#include "QuotedList.h"
#include "Reductions.h"
#include "StateMemory.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>

using namespace optim;

AlignedBuffer AlignedBuffer::allocate(size_t bytes) {
  AlignedBuffer b;
  void *p = allocateStateMemory(bytes);
  if (!p)
    throw Error("out of memory allocating " + std::to_string(bytes) +
                " bytes of optimizer state");
  b.data.reset(p);
  b.bytes = bytes;
  return b;
}

int Optimizer::Impl::stateIndex(const std::string &name) const {
  const auto &states = info().states;
  for (size_t i = 0; i < states.size(); ++i)
    if (states[i].name == name)
      return static_cast<int>(i);
  return -1;
}

const Optimizer::Impl::Region *
Optimizer::Impl::writtenRegion(const void *data, size_t bytes) const {
  if (!bytes)
    return nullptr;
  uintptr_t begin = reinterpret_cast<uintptr_t>(data), end = begin + bytes;
  // The regions are disjoint and sorted, so the last one that starts before
  // `end` is the only candidate.
  auto it = std::lower_bound(
      written.begin(), written.end(), end,
      [](const Region &r, uintptr_t at) { return r.begin < at; });
  if (it == written.begin())
    return nullptr;
  --it;
  return it->end > begin ? &*it : nullptr;
}

template <typename T> static void fill(void *data, size_t count, double value) {
  std::fill_n(static_cast<T *>(data), count, static_cast<T>(value));
}

void Optimizer::Impl::resetState() {
  const RuleInfo &ri = info();
  for (Slot &slot : slots)
    for (size_t s = 0; s < ri.states.size(); ++s) {
      size_t count = slot.param.size * ri.states[s].size;
      if (ri.dtype == DType::F32)
        fill<float>(slot.states[s].data.get(), count, ri.states[s].init);
      else
        fill<double>(slot.states[s].data.get(), count, ri.states[s].init);
    }
  step = 0;
  skipped = 0;
}

static std::string paramName(size_t i) {
  return "parameter " + std::to_string(i);
}

Optimizer::Optimizer(Rule rule, std::vector<Param> params,
                     OptimizerOptions options)
    : Optimizer(std::move(rule),
                std::vector<ParamGroup>{ParamGroup{std::move(params), {}}},
                options) {}

Optimizer::Optimizer(Rule rule, std::vector<ParamGroup> groups,
                     OptimizerOptions options)
    : impl(std::make_unique<Impl>()) {
  if (!rule)
    throw Error("optim::Optimizer: the rule is empty; compile or load one "
                "first");
  const RuleInfo &ri = rule.info();
  detail::checkKernelsMatchSignature(rule, "optim::Optimizer");
  if (options.chunkSize <= 0)
    throw Error("optim::Optimizer: chunkSize must be positive, got " +
                std::to_string(options.chunkSize));
  if (groups.empty())
    throw Error("optim::Optimizer: no parameter group given");
  checkThreadCount(options.threads, "optim::Optimizer");

  size_t elt = dtypeSize(ri.dtype);
  // The largest state per coordinate: a parameter's biggest state buffer is
  // `size * maxState * elt` bytes, which must not overflow.
  int64_t maxState = 1;
  for (const StateSpec &s : ri.states)
    maxState = std::max(maxState, s.size);
  struct Range {
    uintptr_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  size_t index = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    for (const Param &p : groups[gi].params) {
      std::string what = "optim::Optimizer: " + paramName(index);
      if (p.dtype != ri.dtype)
        throw Error(what + " is " + dtypeName(p.dtype) + " but rule '" +
                    ri.name + "' is compiled for " + dtypeName(ri.dtype));
      if (p.size < 0)
        throw Error(what + " has a negative size (" + std::to_string(p.size) +
                    ")");
      if (p.size > 0 && !p.data)
        throw Error(what + " is a null pointer with " + std::to_string(p.size) +
                    " elements");
      if (reinterpret_cast<uintptr_t>(p.data) % elt)
        throw Error(what + " is not aligned to its " + std::to_string(elt) +
                    "-byte elements");
      // Sizes that overflow the byte counts below cannot be real tensors (a
      // negative count converted, say); refused before any arithmetic.
      const uint64_t limit = uint64_t(PTRDIFF_MAX) / elt / uint64_t(maxState);
      if (p.size > 0 && (uint64_t(p.size) > limit ||
                         reinterpret_cast<uintptr_t>(p.data) >
                             UINTPTR_MAX - uint64_t(p.size) * elt))
        throw Error(what + " has " + std::to_string(p.size) +
                    " elements, more than the address space holds");
      if (p.size > 0)
        ranges.push_back({reinterpret_cast<uintptr_t>(p.data),
                          reinterpret_cast<uintptr_t>(p.data) + p.size * elt,
                          index});
      ++index;
    }
    for (const auto &[name, value] : groups[gi].hypers) {
      int h = ri.findHyper(name);
      if (h < 0)
        throw Error("optim::Optimizer: group " + std::to_string(gi) +
                    " sets '" + name +
                    "', which is not a hyperparameter of "
                    "rule '" +
                    ri.name + "'");
      if (!std::isfinite(value))
        throw Error("optim::Optimizer: group " + std::to_string(gi) +
                    " sets '" + name + "' to a non-finite value");
      if (ri.hypers[h].isConst && value != ri.hypers[h].defaultValue)
        throw Error("optim::Optimizer: '" + name + "' is const in rule '" +
                    ri.name + "'; its value is compiled in");
    }
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range &a, const Range &b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      throw Error("optim::Optimizer: " + paramName(ranges[i - 1].index) +
                  " and " + paramName(ranges[i].index) + " overlap in memory");

  Impl &im = *impl;
  im.rule = std::move(rule);
  im.options = options;
  unsigned threads = options.threads
                         ? options.threads
                         : std::max(1u, std::thread::hardware_concurrency());
  im.pool = std::make_unique<ThreadPool>(threads);
  size_t perChunk = im.pointersPerChunk();
  im.rng.push_back(options.seed);
  uint64_t globalIndex = 0; // Of the current parameter's first coordinate.
  for (ParamGroup &group : groups) {
    Impl::Group g;
    for (const HyperParam &h : ri.hypers)
      g.hypers.push_back(h.defaultValue);
    for (const auto &[name, value] : group.hypers)
      g.hypers[ri.findHyper(name)] = value;
    g.firstParam = im.slots.size();
    g.firstChunk = im.lengths.size();
    for (const Param &p : group.params) {
      Impl::Slot slot;
      slot.param = p;
      for (const StateSpec &s : ri.states)
        slot.states.push_back(
            AlignedBuffer::allocate(size_t(p.size) * s.size * elt));
      size_t pi = im.slots.size();
      for (int64_t off = 0; off < p.size; off += options.chunkSize) {
        int64_t n = std::min(options.chunkSize, p.size - off);
        im.ptrs.push_back(static_cast<char *>(p.data) + off * elt);
        im.ptrs.push_back(nullptr); // The gradient, set by step().
        // The per-coordinate inputs (KernelABI.h, version 7), set by step().
        im.ptrs.insert(im.ptrs.end(), ri.inputs.size(), nullptr);
        for (AlignedBuffer &b : slot.states)
          im.ptrs.push_back(static_cast<char *>(b.data.get()) + off * elt);
        im.lengths.push_back(n);
        im.strides.push_back(p.size);
        im.chunkParam.push_back(pi);
        im.chunkOffset.push_back(off);
        im.rng.push_back(globalIndex + uint64_t(off));
      }
      globalIndex += uint64_t(p.size);
      im.slots.push_back(std::move(slot));
    }
    g.numParams = im.slots.size() - g.firstParam;
    g.numChunks = im.lengths.size() - g.firstChunk;
    im.groups.push_back(std::move(g));
  }
  (void)perChunk;
  for (size_t pi = 0; pi < im.slots.size(); ++pi) {
    const Impl::Slot &slot = im.slots[pi];
    auto add = [&](const void *data, size_t bytes, std::string what) {
      if (bytes > 0)
        im.written.push_back({reinterpret_cast<uintptr_t>(data),
                              reinterpret_cast<uintptr_t>(data) + bytes,
                              std::move(what)});
    };
    add(slot.param.data, size_t(slot.param.size) * elt, paramName(pi));
    for (size_t s = 0; s < ri.states.size(); ++s)
      add(slot.states[s].data.get(), slot.states[s].bytes,
          "state '" + ri.states[s].name + "' of " + paramName(pi));
  }
  std::sort(im.written.begin(), im.written.end(),
            [](const Impl::Region &a, const Impl::Region &b) {
              return a.begin < b.begin;
            });
  im.weights.resize(ri.weights.size());
  im.weightPtrs.assign(ri.weights.size(), nullptr);
  if (!ri.reductions.empty()) {
    im.partials.assign(im.lengths.size() * ri.reductions.size(), 0.0);
    im.reduced.assign(im.partials.size(), 0.0);
    for (const Impl::Slot &slot : im.slots)
      im.paramSizes.push_back(slot.param.size);
  }
  im.resetState();
}

Optimizer::~Optimizer() = default;

Optimizer::Impl &Optimizer::live(const char *fn) const {
  if (!impl)
    throw Error(std::string("optim::Optimizer::") + fn +
                ": the optimizer was moved from");
  return *impl;
}
Optimizer::Optimizer(Optimizer &&) noexcept = default;
Optimizer &Optimizer::operator=(Optimizer &&) noexcept = default;

static void checkHyperValue(const RuleInfo &ri, const std::string &name,
                            double value, int &index) {
  index = ri.findHyper(name);
  if (index < 0) {
    std::string known;
    for (const HyperParam &h : ri.hypers)
      known += (known.empty() ? "" : ", ") + h.name;
    throw Error("optim::Optimizer::set: rule '" + ri.name +
                "' has no hyperparameter '" + name +
                "' (it has: " + (known.empty() ? "none" : known) + ")");
  }
  if (!std::isfinite(value))
    throw Error("optim::Optimizer::set: '" + name + "' must be finite, got " +
                std::to_string(value));
  if (ri.hypers[index].isConst)
    throw Error("optim::Optimizer::set: '" + name + "' is const in rule '" +
                ri.name + "'; its value is compiled in");
}

void Optimizer::set(const std::string &name, double value) {
  Impl &im = live("set");
  int h;
  checkHyperValue(im.info(), name, value, h);
  for (Impl::Group &g : im.groups)
    g.hypers[h] = value;
}

void Optimizer::set(size_t group, const std::string &name, double value) {
  Impl &im = live("set");
  if (group >= im.groups.size())
    throw Error("optim::Optimizer::set: group " + std::to_string(group) +
                " does not exist (there are " +
                std::to_string(im.groups.size()) + ")");
  int h;
  checkHyperValue(im.info(), name, value, h);
  im.groups[group].hypers[h] = value;
}

double Optimizer::get(const std::string &name, size_t group) const {
  const Impl &im = live("get");
  if (group >= im.groups.size())
    throw Error("optim::Optimizer::get: group " + std::to_string(group) +
                " does not exist");
  int h = im.info().findHyper(name);
  if (h < 0)
    throw Error("optim::Optimizer::get: rule '" + im.info().name +
                "' has no hyperparameter '" + name + "'");
  return im.groups[group].hypers[h];
}

template <typename T> static bool allFinite(const void *data, int64_t n) {
  const T *p = static_cast<const T *>(data);
  bool ok = true;
  for (int64_t i = 0; i < n; ++i)
    ok &= std::isfinite(p[i]);
  return ok;
}

/// Runs `pass(begin, end, hypers)` over the chunks of every group, with the
/// group's hyperparameters, each thread taking a contiguous range.
template <typename Pass>
static void forEachGroup(Optimizer::Impl &im, const Pass &pass) {
  for (const Optimizer::Impl::Group &g : im.groups) {
    if (g.numChunks == 0)
      continue;
    const double *hypers = g.hypers.data();
    size_t first = g.firstChunk, count = g.numChunks;
    unsigned workers = im.pool->size();
    // Contiguous, deterministic ranges: each coordinate is computed the same
    // way whatever the number of threads.
    im.pool->run([&](unsigned w) {
      int64_t begin = first + count * w / workers;
      int64_t end = first + count * (w + 1) / workers;
      if (begin < end)
        pass(begin, end, hypers);
    });
  }
}

/// Checks a tensor the step reads (a gradient or an input) against its
/// parameter `i`: dtype, size, pointer, alignment, and no overlap with the
/// memory the step writes. `what` names it in the message; `reads` says what
/// the step reads there ("the gradient", "the input").
static void checkReadTensor(const Optimizer::Impl &im, const Grad &g, size_t i,
                            const std::string &what, const char *reads) {
  const RuleInfo &ri = im.info();
  size_t elt = dtypeSize(ri.dtype);
  const Param &p = im.slots[i].param;
  if (g.dtype != ri.dtype)
    throw Error(what + " is " + dtypeName(g.dtype) + ", the rule is " +
                dtypeName(ri.dtype));
  if (g.size != p.size)
    throw Error(what + " has " + std::to_string(g.size) +
                " elements but its parameter has " + std::to_string(p.size));
  if (g.size > 0 && !g.data)
    throw Error(what + " is a null pointer");
  if (reinterpret_cast<uintptr_t>(g.data) % elt)
    throw Error(what + " is not aligned to its " + std::to_string(elt) +
                "-byte elements");
  if (const Optimizer::Impl::Region *r =
          im.writtenRegion(g.data, size_t(g.size) * elt))
    throw Error(what + " overlaps " + r->what +
                " in memory (the step writes there while it reads " + reads +
                ")");
}

using detail::quotedList;

/// One step; `inputs[k]` holds the tensors of the rule's input k
/// (declaration order), already matched by name. Checks everything before
/// it writes anything.
static bool runStep(Optimizer::Impl &im, const std::vector<Grad> &grads,
                    const std::vector<const std::vector<Grad> *> &inputs) {
  const RuleInfo &ri = im.info();
  if (grads.size() != im.slots.size())
    throw Error("optim::Optimizer::step: expected " +
                std::to_string(im.slots.size()) +
                " gradients (one per "
                "parameter), got " +
                std::to_string(grads.size()));
  size_t elt = dtypeSize(ri.dtype);
  for (size_t i = 0; i < grads.size(); ++i)
    checkReadTensor(im, grads[i], i,
                    "optim::Optimizer::step: gradient " + std::to_string(i),
                    "the gradient");
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::vector<Grad> &tensors = *inputs[k];
    std::string what = "optim::Optimizer::step: input '" + ri.inputs[k] + "'";
    if (tensors.size() != im.slots.size())
      throw Error(what + " has " + std::to_string(tensors.size()) +
                  " tensors; expected " + std::to_string(im.slots.size()) +
                  " (one per parameter)");
    for (size_t i = 0; i < tensors.size(); ++i)
      checkReadTensor(im, tensors[i], i,
                      what + " of parameter " + std::to_string(i),
                      "the input");
  }

  for (size_t w = 0; w < im.weightPtrs.size(); ++w)
    if (!im.weightPtrs[w])
      throw Error("optim::Optimizer::step: weights '" + ri.weights[w].name +
                  "' of rule '" + ri.name + "' are not set (setWeights)");
  // The table's gradient and input slots: p, g, inputs, states per chunk.
  size_t perChunk = im.pointersPerChunk();
  size_t numChunks = im.lengths.size();
  size_t numRead = 1 + inputs.size();
  for (size_t c = 0; c < numChunks; ++c) {
    size_t param = im.chunkParam[c];
    size_t offset = size_t(im.chunkOffset[c]) * elt;
    im.ptrs[c * perChunk + 1] = const_cast<char *>(
        static_cast<const char *>(grads[param].data) + offset);
    for (size_t k = 0; k < inputs.size(); ++k)
      im.ptrs[c * perChunk + 2 + k] = const_cast<char *>(
          static_cast<const char *>((*inputs[k])[param].data) + offset);
  }

  if (im.options.skipNonFinite) {
    // The gradients and the inputs: all that the step reads from the caller.
    std::vector<char> finite(im.pool->size(), 1);
    im.pool->run([&](unsigned w) {
      size_t begin = numChunks * w / im.pool->size();
      size_t end = numChunks * (w + 1) / im.pool->size();
      for (size_t c = begin; c < end; ++c)
        for (size_t k = 0; k < numRead; ++k) {
          const void *g = im.ptrs[c * perChunk + 1 + k];
          finite[w] &= ri.dtype == DType::F32
                           ? allFinite<float>(g, im.lengths[c])
                           : allFinite<double>(g, im.lengths[c]);
        }
    });
    if (std::find(finite.begin(), finite.end(), 0) != finite.end()) {
      ++im.skipped;
      return false;
    }
  }

  int64_t t = im.step + 1;
  const void *const *weights =
      im.weightPtrs.empty() ? nullptr : im.weightPtrs.data();
  // The seed may have changed since the table was built (load()).
  im.rng[0] = im.options.seed;
  const uint64_t *rng = im.rng.data();
  if (!ri.reductions.empty()) {
    // L + 2 passes (KernelABI.h, versions 6 and 9): stage s of the first
    // pass leaves every chunk's partials of the level-s reductions, which
    // are combined in chunk order before stage s + 1 reads them; then the
    // rule with every reduced value. Each stage is a barrier: no chunk
    // reads a value of level s before every chunk's partial of it is in.
    optim_reduce_kernel reduce = im.rule.reduceKernel();
    detail::runReductionStages(
        ri.reductions, im.chunkParam, im.paramSizes, im.partials.data(),
        im.reduced.data(), [&](int64_t stage) {
          forEachGroup(
              im, [&](int64_t begin, int64_t end, const double *hypers) {
                reduce(im.ptrs.data(), im.lengths.data(), im.strides.data(),
                       begin, end, hypers, t, weights, im.partials.data(),
                       im.reduced.data(), stage, rng);
              });
        });
    optim_reduced_rule_kernel kernel = im.rule.reducedKernel();
    forEachGroup(im, [&](int64_t begin, int64_t end, const double *hypers) {
      kernel(im.ptrs.data(), im.lengths.data(), im.strides.data(), begin, end,
             hypers, t, weights, im.reduced.data(), rng);
    });
  } else {
    optim_rule_kernel kernel = im.rule.kernel();
    forEachGroup(im, [&](int64_t begin, int64_t end, const double *hypers) {
      kernel(im.ptrs.data(), im.lengths.data(), im.strides.data(), begin, end,
             hypers, t, weights, rng);
    });
  }
  im.step = t;
  return true;
}

bool Optimizer::step(const std::vector<Grad> &grads) {
  Impl &im = live("step");
  const RuleInfo &ri = im.info();
  // The kernel would read input pointers that nothing set.
  if (!ri.inputs.empty())
    throw Error("optim::Optimizer::step: rule '" + ri.name +
                "' takes the per-coordinate input" +
                (ri.inputs.size() == 1 ? " " : "s ") + quotedList(ri.inputs) +
                " with every step, besides the gradients: call "
                "step(grads, inputs) with one tensor per parameter for " +
                (ri.inputs.size() == 1 ? "it" : "each") + ", e.g. {{\"" +
                ri.inputs[0] + "\", {...}}}");
  return runStep(im, grads, {});
}

bool Optimizer::step(const std::vector<Grad> &grads,
                     const std::vector<Input> &inputs) {
  Impl &im = live("step");
  const RuleInfo &ri = im.info();
  // Matched by name to the declaration order of the chunk table.
  std::vector<const std::vector<Grad> *> ordered(ri.inputs.size(), nullptr);
  for (const Input &in : inputs) {
    auto it = std::find(ri.inputs.begin(), ri.inputs.end(), in.name);
    if (it == ri.inputs.end())
      throw Error("optim::Optimizer::step: rule '" + ri.name +
                  "' has no input '" + in.name + "' (" +
                  (ri.inputs.empty() ? std::string("it has none")
                                     : "its inputs: " + quotedList(ri.inputs)) +
                  ")");
    size_t k = size_t(it - ri.inputs.begin());
    if (ordered[k])
      throw Error("optim::Optimizer::step: input '" + in.name +
                  "' is given twice");
    ordered[k] = &in.tensors;
  }
  std::vector<std::string> missing;
  for (size_t k = 0; k < ordered.size(); ++k)
    if (!ordered[k])
      missing.push_back(ri.inputs[k]);
  if (!missing.empty())
    throw Error("optim::Optimizer::step: rule '" + ri.name +
                "' needs its input" + (missing.size() == 1 ? " " : "s ") +
                quotedList(missing) + " with every step; " +
                (missing.size() == 1 ? "it is" : "they are") +
                " missing");
  return runStep(im, grads, ordered);
}

void Optimizer::Impl::setWeights(const std::string &name, const void *data,
                                 int64_t count, DType dtype) {
  const RuleInfo &ri = info();
  for (size_t w = 0; w < ri.weights.size(); ++w) {
    if (ri.weights[w].name != name)
      continue;
    int64_t expected = 1;
    for (int64_t d : ri.weights[w].shape)
      expected *= d;
    std::string what = "optim::Optimizer::setWeights: '" + name + "'";
    if (dtype != ri.dtype)
      throw Error(what + " is " + dtypeName(dtype) + ", the rule is " +
                  dtypeName(ri.dtype));
    if (count != expected)
      throw Error(what + " needs " + std::to_string(expected) +
                  " elements, got " + std::to_string(count));
    if (!data)
      throw Error(what + " is a null pointer");
    size_t bytes = size_t(count) * dtypeSize(dtype);
    AlignedBuffer copy = AlignedBuffer::allocate(bytes);
    std::memcpy(copy.data.get(), data, bytes);
    weights[w] = std::move(copy);
    weightPtrs[w] = weights[w].data.get();
    return;
  }
  std::string known;
  for (const WeightSpec &w : ri.weights)
    known += (known.empty() ? "" : ", ") + w.name;
  throw Error("optim::Optimizer::setWeights: rule '" + ri.name +
              "' has no weights '" + name +
              "' (it has: " + (known.empty() ? "none" : known) + ")");
}

void Optimizer::setWeights(const std::string &name, const float *data,
                           int64_t count) {
  live("setWeights").setWeights(name, data, count, DType::F32);
}

void Optimizer::setWeights(const std::string &name, const double *data,
                           int64_t count) {
  live("setWeights").setWeights(name, data, count, DType::F64);
}

int64_t Optimizer::stepCount() const { return live("stepCount").step; }
int64_t Optimizer::skippedSteps() const {
  return live("skippedSteps").skipped;
}
uint64_t Optimizer::seed() const { return live("seed").options.seed; }
size_t Optimizer::numParams() const { return live("numParams").slots.size(); }
size_t Optimizer::numGroups() const {
  return live("numGroups").groups.size();
}
const Rule &Optimizer::rule() const { return live("rule").rule; }

const void *Optimizer::state(size_t param, const std::string &name) const {
  const Impl &im = live("state");
  if (param >= im.slots.size())
    throw Error("optim::Optimizer::state: parameter " + std::to_string(param) +
                " does not exist (there are " +
                std::to_string(im.slots.size()) + ")");
  int s = im.stateIndex(name);
  if (s < 0)
    throw Error("optim::Optimizer::state: rule '" + im.info().name +
                "' has no state '" + name + "'");
  return im.slots[param].states[s].data.get();
}
