//===- Optimizer.cpp - apply a compiled rule to a model's parameters ----===//

#include "OptimizerImpl.h"
#include "InputOrder.h"
#include "MatrixFunctions.h"
#include "Reductions.h"
#include "Shapes.h"
#include "StateMemory.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>

using namespace optim;

AlignedBuffer AlignedBuffer::allocate(size_t bytes, const char *owner) {
  AlignedBuffer b;
  void *p = allocateStateMemory(bytes);
  if (!p)
    throw ResourceError(std::string(owner) + ": out of memory allocating " +
                        std::to_string(bytes) + " bytes");
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

size_t Optimizer::Impl::stateCount(const Slot &slot, size_t s) const {
  const StateSpec &spec = info().states[s];
  if (spec.axis == Axis::Row)
    return size_t(slot.B) * size_t(slot.R);
  if (spec.axis == Axis::Col)
    return size_t(slot.B) * size_t(slot.C);
  return size_t(slot.param.size) * size_t(spec.size);
}

void Optimizer::Impl::resetState() {
  const RuleInfo &ri = info();
  for (Slot &slot : slots)
    for (size_t s = 0; s < ri.states.size(); ++s) {
      size_t count = stateCount(slot, s);
      // A row or column state's next buffer too: for a tensor without
      // coordinates no step writes it.
      for (AlignedBuffer *b : {&slot.states[s], &slot.next[s]}) {
        if (!b->data)
          continue;
        if (ri.dtype == DType::F32)
          fill<float>(b->data.get(), count, ri.states[s].init);
        else
          fill<double>(b->data.get(), count, ri.states[s].init);
      }
    }
  step = 0;
  skipped = 0;
}

static std::string paramName(size_t i) {
  return "parameter " + std::to_string(i);
}

using detail::shapeText;

/// The view [B, R, C] of a parameter for a rule with axes (KernelABI.h,
/// version 10): C the last dimension, R the one before (1 for 1-D), B the
/// product of the others; [1, 1, size] without a shape. The shape was
/// checked. False (matrixView: throws) when B * R or B * C (a row or column
/// state's length, possibly past the size when a dimension is 0) does not
/// fit the address space.
static bool paramViewFits(const Param &p, int64_t &B, int64_t &R,
                          int64_t &C) {
  return detail::viewFits(p.shape, p.size, B, R, C);
}

static void matrixView(const Param &p, int64_t &B, int64_t &R, int64_t &C,
                       size_t index = 0) {
  if (!paramViewFits(p, B, R, C))
    throw Error("optim::Optimizer: " + paramName(index) + ": shape " +
                shapeText(p.shape) +
                " has more rows or columns than the address space holds");
}

bool detail::paramShapeIsValid(const Param &p, bool axes) {
  int64_t B, R, C;
  return detail::checkShape(p.shape, p.size).empty() &&
         (!axes || paramViewFits(p, B, R, C));
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
      // Checked for every rule, so that a wrong shape is found before a
      // rule with axes meets it; rules without axes ignore it.
      std::string shapeError = detail::checkShape(p.shape, p.size);
      if (!shapeError.empty())
        throw Error(what + ": " + shapeError);
      if (ri.hasAxes()) {
        int64_t B, R, C;
        matrixView(p, B, R, C, index);
        // A matrix function multiplies R x C matrices with int dimensions
        // (CBLAS).
        for (const ReductionSpec &r : ri.reductions)
          if (r.kind == ReductionKind::NewtonSchulz && p.size > 0 &&
              std::max(R, C) > int64_t(std::numeric_limits<int>::max()))
            throw Error(what + ": shape " + shapeText(p.shape) +
                        " has matrices of more than 2^31 - 1 rows or "
                        "columns, which newton_schulz does not support");
      }
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
  im.hasAxes = ri.hasAxes();
  const bool colReductions =
      std::any_of(ri.reductions.begin(), ri.reductions.end(),
                  [](const ReductionSpec &r) { return r.axis == Axis::Col; });
  for (size_t s = 0; s < ri.states.size(); ++s)
    if (ri.states[s].axis != Axis::None)
      im.axisStates.push_back(s);
  for (size_t r = 0; r < ri.reductions.size(); ++r) {
    if (ri.reductions[r].axis != Axis::None)
      im.axisReductions.push_back(r);
    if (ri.reductions[r].kind == ReductionKind::NewtonSchulz)
      im.matrixReductions.push_back(r);
  }
  const size_t X = im.axisReductions.size();
  const bool shapeValues = detail::hasShapeValues(ri.reductions);
  size_t matrixWork = 0; // Elements of T for the largest matrix's NS(X).
  im.rng.push_back(options.seed);
  uint64_t globalIndex = 0; // Of the current parameter's first coordinate.
  size_t axisPartialCount = 0, axisReducedCount = 0;
  for (ParamGroup &group : groups) {
    Impl::Group g;
    for (const HyperParam &h : ri.hypers)
      g.hypers.push_back(h.defaultValue);
    for (const auto &[name, value] : group.hypers)
      g.hypers[ri.findHyper(name)] = value;
    g.firstParam = im.slots.size();
    g.firstChunk = im.numChunks();
    for (const Param &p : group.params) {
      Impl::Slot slot;
      slot.param = p;
      if (im.hasAxes)
        matrixView(p, slot.B, slot.R, slot.C);
      else if (shapeValues)
        detail::rowsAndCols(p.shape, p.size, slot.R, slot.C);
      else
        slot.C = p.size;
      // A matrix buffer per newton_schulz reduction (KernelABI.h, version
      // 11), and room for NS(X) of the tensor's matrices.
      for (size_t k = 0; k < im.matrixReductions.size(); ++k)
        slot.matrices.push_back(
            AlignedBuffer::allocate(size_t(p.size) * elt));
      if (!im.matrixReductions.empty() && p.size > 0)
        matrixWork = std::max(matrixWork,
                              detail::newtonSchulzWorkCount(slot.R, slot.C));
      for (size_t s = 0; s < ri.states.size(); ++s) {
        size_t bytes = im.stateCount(slot, s) * elt;
        slot.states.push_back(AlignedBuffer::allocate(bytes));
        slot.next.push_back(ri.states[s].axis == Axis::None
                                ? AlignedBuffer()
                                : AlignedBuffer::allocate(bytes));
      }
      for (size_t r : im.axisReductions) {
        slot.axisReducedOffset.push_back(axisReducedCount);
        Axis axis = ri.reductions[r].axis;
        axisReducedCount += axis == Axis::Row   ? size_t(slot.B * slot.R)
                            : axis == Axis::Col ? size_t(slot.B * slot.C)
                                                : 0;
      }
      size_t pi = im.slots.size();
      slot.firstChunk = im.numChunks();
      // One chunk: coordinates [off, off + nr * nc) of the tensor, rows
      // [r0, r0 + nr) x columns [c0, c0 + nc) of matrix b for a rule with
      // axes (KernelABI.h, version 10).
      auto addChunk = [&](int64_t off, int64_t b, int64_t nr, int64_t nc,
                          int64_t r0, int64_t c0) {
        im.ptrs.push_back(static_cast<char *>(p.data) + off * elt);
        im.ptrs.push_back(nullptr); // The gradient, set by step().
        // The per-coordinate inputs (KernelABI.h, version 7), set by step().
        im.ptrs.insert(im.ptrs.end(), ri.inputs.size(), nullptr);
        // Where a state's value for the chunk's first coordinate is.
        auto at = [&](const StateSpec &spec, const AlignedBuffer &buf) {
          int64_t first = spec.axis == Axis::Row   ? b * slot.R + r0
                          : spec.axis == Axis::Col ? b * slot.C + c0
                                                   : off;
          return static_cast<char *>(buf.data.get()) + first * elt;
        };
        for (size_t s = 0; s < ri.states.size(); ++s)
          im.ptrs.push_back(at(ri.states[s], slot.states[s]));
        for (size_t s : im.axisStates)
          im.ptrs.push_back(at(ri.states[s], slot.next[s]));
        // The partial areas and the combined results, set once all are
        // sized (below).
        im.ptrs.insert(im.ptrs.end(), 2 * X, nullptr);
        for (size_t r : im.axisReductions) {
          im.axisPartialOffset.push_back(axisPartialCount);
          Axis axis = ri.reductions[r].axis;
          // A matrix function's pointers go to its matrix buffer instead.
          axisPartialCount += axis == Axis::Row   ? size_t(nr)
                              : axis == Axis::Col ? size_t(nc)
                                                  : 0;
        }
        if (im.hasAxes)
          im.lengths.insert(im.lengths.end(), {nr, nc, r0, c0});
        else
          im.lengths.push_back(nc);
        im.strides.push_back(p.size);
        if (shapeValues) {
          im.chunkRows.push_back(slot.R);
          im.chunkCols.push_back(slot.C);
        }
        im.chunkParam.push_back(pi);
        im.chunkOffset.push_back(off);
        im.rng.push_back(globalIndex + uint64_t(off));
      };
      // A column reduction's partials are one double per column of each
      // chunk, so chunks of few rows would write (and the combine read)
      // up to a double per coordinate; a rule with one takes chunks of 16
      // times chunkSize (still from the shapes and chunkSize only).
      const int64_t chunk =
          colReductions ? std::min(options.chunkSize,
                                   std::numeric_limits<int64_t>::max() / 16) *
                              16
                        : options.chunkSize;
      if (!im.hasAxes) {
        for (int64_t off = 0; off < p.size; off += chunk)
          addChunk(off, 0, 1, std::min(chunk, p.size - off), 0, 0);
      } else if (p.size > 0) {
        // Rectangles inside one matrix, from the shape and chunkSize only:
        // floor(chunk / C) whole rows, or parts of chunk of a row longer
        // than chunk.
        const int64_t R = slot.R, C = slot.C;
        for (int64_t b = 0; b < slot.B; ++b) {
          if (C <= chunk) {
            int64_t rows = chunk / C;
            for (int64_t r0 = 0; r0 < R; r0 += rows)
              addChunk((b * R + r0) * C, b, std::min(rows, R - r0), C, r0, 0);
          } else {
            for (int64_t r = 0; r < R; ++r)
              for (int64_t c0 = 0; c0 < C; c0 += chunk)
                addChunk((b * R + r) * C + c0, b, 1, std::min(chunk, C - c0), r,
                         c0);
          }
        }
      }
      globalIndex += uint64_t(p.size);
      slot.numChunks = im.numChunks() - slot.firstChunk;
      im.slots.push_back(std::move(slot));
    }
    g.numParams = im.slots.size() - g.firstParam;
    g.numChunks = im.numChunks() - g.firstChunk;
    im.groups.push_back(std::move(g));
  }
  if (X > 0) {
    try {
      im.axisPartials.assign(axisPartialCount, 0.0);
      im.axisReduced.assign(axisReducedCount, 0.0);
    } catch (const std::bad_alloc &) {
      throw ResourceError(
          "optim::Optimizer: out of memory allocating " +
          std::to_string((axisPartialCount + axisReducedCount) * 8) +
          " bytes for row and column reductions");
    }
    size_t perChunk = im.pointersPerChunk();
    size_t first = perChunk - 2 * X; // The first partial pointer.
    for (size_t c = 0; c < im.numChunks(); ++c) {
      const Impl::Slot &slot = im.slots[im.chunkParam[c]];
      int64_t r0 = im.lengths[4 * c + 2], c0 = im.lengths[4 * c + 3];
      int64_t b = im.chunkOffset[c] / (slot.R * slot.C);
      size_t matrix = 0; // The matrix functions before x.
      for (size_t x = 0; x < X; ++x) {
        Axis axis = ri.reductions[im.axisReductions[x]].axis;
        if (axis == Axis::Matrix) {
          // Both pointers at the chunk's first coordinate of the matrix
          // buffer (KernelABI.h, version 11).
          void *at = static_cast<char *>(slot.matrices[matrix++].data.get()) +
                     size_t(im.chunkOffset[c]) * elt;
          im.ptrs[c * perChunk + first + x] = at;
          im.ptrs[c * perChunk + first + X + x] = at;
          continue;
        }
        bool row = axis == Axis::Row;
        im.ptrs[c * perChunk + first + x] =
            im.axisPartials.data() + im.axisPartialOffset[c * X + x];
        im.ptrs[c * perChunk + first + X + x] =
            im.axisReduced.data() + slot.axisReducedOffset[x] +
            (row ? b * slot.R + r0 : b * slot.C + c0);
      }
    }
  }
  for (size_t pi = 0; pi < im.slots.size(); ++pi) {
    const Impl::Slot &slot = im.slots[pi];
    auto add = [&](const void *data, size_t bytes, std::string what) {
      if (bytes > 0)
        im.written.push_back({reinterpret_cast<uintptr_t>(data),
                              reinterpret_cast<uintptr_t>(data) + bytes,
                              std::move(what)});
    };
    add(slot.param.data, size_t(slot.param.size) * elt, paramName(pi));
    for (size_t s = 0; s < ri.states.size(); ++s) {
      add(slot.states[s].data.get(), slot.states[s].bytes,
          "state '" + ri.states[s].name + "' of " + paramName(pi));
      add(slot.next[s].data.get(), slot.next[s].bytes,
          "the next values of state '" + ri.states[s].name + "' of " +
              paramName(pi));
    }
  }
  std::sort(im.written.begin(), im.written.end(),
            [](const Impl::Region &a, const Impl::Region &b) {
              return a.begin < b.begin;
            });
  im.weights.resize(ri.weights.size());
  im.weightPtrs.assign(ri.weights.size(), nullptr);
  if (matrixWork > 0) {
    // m * n + 2 * m * m elements: up to 3 times the largest tensor.
    if (matrixWork > SIZE_MAX / elt)
      throw Error("optim::Optimizer: newton_schulz needs more scratch "
                  "memory than the address space holds");
    im.matrixWork = AlignedBuffer::allocate(matrixWork * elt);
  }
  if (!ri.reductions.empty()) {
    im.partials.assign(im.numChunks() * ri.reductions.size(), 0.0);
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

/// Combines the chunks' partials of the row and column reductions of level
/// `level` (KernelABI.h, version 10): each row's over the chunks holding it,
/// each column's over the chunks of its matrix, in chunk order; then mean
/// divides by the row's (column's) coordinates and norm takes the root.
/// Deterministic: the chunking depends on the shapes and chunkSize only.
static void combineAxisReductions(Optimizer::Impl &im, unsigned level) {
  const RuleInfo &ri = im.info();
  const size_t X = im.axisReductions.size();
  const unsigned workers = im.pool->size();
  for (size_t x = 0; x < X; ++x) {
    const ReductionSpec &spec = ri.reductions[im.axisReductions[x]];
    // Matrix functions are computed by runMatrixFunctions.
    if (spec.level != level || spec.axis == Axis::Matrix)
      continue;
    const bool row = spec.axis == Axis::Row;
    const ReductionKind kind = spec.kind;
    // Each worker owns a part of each tensor's results (a whole small
    // tensor, or a share of a large one) and combines into it every
    // chunk's partials in chunk order: the same order for any number of
    // workers.
    im.pool->run([&](unsigned w) {
      for (size_t k = 0; k < im.slots.size(); ++k) {
        const Optimizer::Impl::Slot &slot = im.slots[k];
        // No chunk reads the results of an empty tensor (its rows or
        // columns may still be many: [2^24, 0]).
        if (slot.numChunks == 0)
          continue;
        const int64_t count = slot.B * (row ? slot.R : slot.C);
        int64_t lo = 0, hi = count;
        if (count < 4096) {
          if (k % workers != w)
            continue;
        } else {
          lo = count * int64_t(w) / int64_t(workers);
          hi = count * int64_t(w + 1) / int64_t(workers);
        }
        if (lo >= hi)
          continue;
        double *out = im.axisReduced.data() + slot.axisReducedOffset[x];
        std::fill(out + lo, out + hi, detail::reductionIdentity(kind));
        for (size_t c = slot.firstChunk; c < slot.firstChunk + slot.numChunks;
             ++c) {
          const int64_t *len = &im.lengths[4 * c];
          int64_t b = im.chunkOffset[c] / (slot.R * slot.C);
          int64_t first = row ? b * slot.R + len[2] : b * slot.C + len[3];
          int64_t n = row ? len[0] : len[1];
          int64_t from = std::max(first, lo), to = std::min(first + n, hi);
          const double *part =
              im.axisPartials.data() + im.axisPartialOffset[c * X + x];
          for (int64_t i = from; i < to; ++i)
            out[i] = detail::combinePartial(kind, out[i], part[i - first]);
        }
        // A row has C coordinates, a column R.
        const int64_t along = row ? slot.C : slot.R;
        for (int64_t i = lo; i < hi; ++i)
          out[i] = detail::finishReduction(kind, out[i], along);
      }
    });
  }
}

/// Replaces each non-empty matrix of each tensor's buffer of every
/// newton_schulz reduction of level `level` by NS(X) (KernelABI.h, version
/// 11), after the stage that wrote X. One matrix at a time, each product
/// split over the pool (or left to the CBLAS): the result does not depend
/// on the number of threads.
static void runMatrixFunctions(Optimizer::Impl &im, unsigned level) {
  const RuleInfo &ri = im.info();
  for (size_t k = 0; k < im.matrixReductions.size(); ++k) {
    const ReductionSpec &spec = ri.reductions[im.matrixReductions[k]];
    if (spec.level != level)
      continue;
    for (Optimizer::Impl::Slot &slot : im.slots) {
      if (slot.param.size == 0)
        continue;
      // Allocated by whoever asked for them (optim::Trajectory).
      if (im.keepMatrixOperands)
        std::memcpy(slot.operands[k].data.get(), slot.matrices[k].data.get(),
                    slot.matrices[k].bytes);
      const int64_t R = slot.R, C = slot.C;
      for (int64_t b = 0; b < slot.B; ++b) {
        size_t first = size_t(b) * size_t(R) * size_t(C);
        if (ri.dtype == DType::F32)
          detail::newtonSchulz(
              static_cast<float *>(slot.matrices[k].data.get()) + first, R, C,
              spec, static_cast<float *>(im.matrixWork.data.get()),
              im.pool.get());
        else
          detail::newtonSchulz(
              static_cast<double *>(slot.matrices[k].data.get()) + first, R,
              C, spec, static_cast<double *>(im.matrixWork.data.get()),
              im.pool.get());
      }
    }
  }
}

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
  size_t numChunks = im.numChunks();
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

  // Counters at their limit (2^63 - 1 steps: only a forged checkpoint gets
  // there) would wrap: refused before anything changes.
  if (im.step == std::numeric_limits<int64_t>::max() ||
      im.skipped == std::numeric_limits<int64_t>::max())
    throw Error("optim::Optimizer::step: the step counter is at its limit "
                "(2^63 - 1)");
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
                           ? allFinite<float>(g, im.chunkLength(c))
                           : allFinite<double>(g, im.chunkLength(c));
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
    // The shape values rows() and cols() (KernelABI.h, version 11), which
    // every stage may read: no combine writes their slots.
    if (!im.chunkRows.empty())
      detail::fillShapeValues(ri.reductions, numChunks, im.chunkRows.data(),
                              im.chunkCols.data(), im.reduced.data());
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
          // The row and column reductions of the stage's level (the tensor
          // ones are combined by runReductionStages), and its matrix
          // functions.
          combineAxisReductions(im, unsigned(stage));
          runMatrixFunctions(im, unsigned(stage));
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
  // The new values of the row and column states, written apart so that
  // every chunk read the old ones (KernelABI.h, version 10). A tensor
  // without coordinates has no chunk, and its next buffers hold nothing new.
  for (Optimizer::Impl::Slot &slot : im.slots)
    if (slot.param.size > 0)
      for (size_t s : im.axisStates)
        std::memcpy(slot.states[s].data.get(), slot.next[s].data.get(),
                    slot.states[s].bytes);
  im.step = t;
  return true;
}

bool Optimizer::step(const std::vector<Grad> &grads) {
  Impl &im = live("step");
  const RuleInfo &ri = im.info();
  // The kernel would read input pointers that nothing set.
  if (!ri.inputs.empty())
    throw Error(detail::inputsRequired(
        ri, "optim::Optimizer::step",
        std::string("step(grads, inputs) with one tensor per parameter for ") +
            (ri.inputs.size() == 1 ? "it" : "each") + ", e.g. {{\"" +
            ri.inputs[0] + "\", {...}}}"));
  return runStep(im, grads, {});
}

bool Optimizer::step(const std::vector<Grad> &grads,
                     const std::vector<Input> &inputs) {
  Impl &im = live("step");
  return runStep(im, grads,
                 detail::orderInputs(im.info(), inputs,
                                     "optim::Optimizer::step"));
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
    // As set() refuses a non-finite hyperparameter: a NaN weight makes
    // every step NaN.
    for (int64_t i = 0; i < count; ++i) {
      const double v = dtype == DType::F32
                           ? double(static_cast<const float *>(data)[i])
                           : static_cast<const double *>(data)[i];
      if (!std::isfinite(v))
        throw Error(what + " has a non-finite value (" + std::to_string(v) +
                    ") at index " + std::to_string(i));
    }
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

int64_t Optimizer::stateSize(size_t param, const std::string &name) const {
  const Impl &im = live("stateSize");
  if (param >= im.slots.size())
    throw Error("optim::Optimizer::stateSize: parameter " +
                std::to_string(param) + " does not exist (there are " +
                std::to_string(im.slots.size()) + ")");
  int s = im.stateIndex(name);
  if (s < 0)
    throw Error("optim::Optimizer::stateSize: rule '" + im.info().name +
                "' has no state '" + name + "'");
  return int64_t(im.stateCount(im.slots[param], size_t(s)));
}
