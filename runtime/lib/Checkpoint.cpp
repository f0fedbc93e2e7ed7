//===- Checkpoint.cpp - optimizer state as safetensors ---------------===//
//
// A checkpoint is a safetensors file (optim/Safetensors.h, readable from
// Python): one tensor per state of each parameter, and metadata (strings, as
// the format requires) that lets load() refuse another rule's checkpoint.
//
//===----------------------------------------------------------------------===//

#include "OptimizerImpl.h"

#include "optim/Safetensors.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

using namespace optim;
using json = nlohmann::json;

static constexpr const char *kFormat = "optim-mlir optimizer state";

static std::string tensorName(size_t param, const std::string &state) {
  return "param" + std::to_string(param) + "." + state;
}

/// A state tensor's shape in a checkpoint: [n], or [size, n] for a vector
/// state (component-major, as the kernels keep it).
static std::vector<int64_t> stateShape(const StateSpec &state, int64_t n) {
  if (state.size == 1)
    return {n};
  return {state.size, n};
}

/// The same for state s of parameter p of the optimizer: a row or column
/// state is [B * R] or [B * C] (KernelABI.h, version 10).
static std::vector<int64_t> stateShape(const Optimizer::Impl &im, size_t p,
                                       size_t s) {
  const StateSpec &state = im.info().states[s];
  if (state.axis != Axis::None)
    return {int64_t(im.stateCount(im.slots[p], s))};
  return stateShape(state, im.slots[p].param.size);
}

static std::string joinStates(const RuleInfo &ri) {
  std::string s;
  for (const StateSpec &st : ri.states)
    s += (s.empty() ? "" : ",") + st.name;
  return s;
}

void Optimizer::save(const std::string &path) const {
  const Impl &im = live("save");
  const RuleInfo &ri = im.info();
  json groups = json::array();
  for (const Impl::Group &g : im.groups)
    groups.push_back(g.hypers);
  std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"abi", std::to_string(OPTIM_KERNEL_ABI_VERSION)},
      {"rule", ri.name},
      {"dtype", dtypeName(ri.dtype)},
      {"states", joinStates(ri)},
      {"params", std::to_string(im.slots.size())},
      {"step", std::to_string(im.step)},
      {"skipped", std::to_string(im.skipped)},
      {"hypers", groups.dump()},
      // The key of the rule's random numbers (KernelABI.h, version 8), so
      // that a resumed run draws what the uninterrupted one would have.
      {"seed", std::to_string(im.options.seed)},
  };
  std::vector<TensorRef> tensors;
  for (size_t p = 0; p < im.slots.size(); ++p)
    for (size_t s = 0; s < ri.states.size(); ++s)
      tensors.push_back({tensorName(p, ri.states[s].name), ri.dtype,
                         stateShape(im, p, s),
                         im.slots[p].states[s].data.get()});
  writeSafetensors(path, tensors, metadata, "optim::Optimizer::save");
}

void Optimizer::load(const std::string &path) {
  Impl &im = live("load");
  const RuleInfo &ri = im.info();
  auto fail = [&](const std::string &why) {
    return Error("optim::Optimizer::load: '" + path + "': " + why);
  };
  SafetensorsFile file = SafetensorsFile::read(path, "optim::Optimizer::load");
  auto text = [&](const char *key) -> std::string {
    if (!file.hasMetadata(key))
      throw fail(std::string("missing metadata '") + key +
                 "' (not an optimizer checkpoint of optim-mlir?)");
    return file.metadata(key);
  };
  if (text("format") != kFormat)
    throw fail("not an optimizer checkpoint of optim-mlir");
  if (text("rule") != ri.name)
    throw fail("written by rule '" + text("rule") + "', not '" + ri.name + "'");
  if (text("dtype") != dtypeName(ri.dtype))
    throw fail("holds " + text("dtype") + " state, the rule is " +
               dtypeName(ri.dtype));
  if (text("states") != joinStates(ri))
    throw fail("holds states '" + text("states") + "', the rule has '" +
               joinStates(ri) + "'");
  if (text("params") != std::to_string(im.slots.size()))
    throw fail("holds " + text("params") + " parameters, this optimizer has " +
               std::to_string(im.slots.size()));
  // Decimal digits only, as written: stoll took "1e3" as 1 and "2 junk"
  // as 2.
  auto counter = [&](const char *key) {
    const std::string &digits = text(key);
    bool ok = !digits.empty() && digits.size() <= 19 &&
              digits.find_first_not_of("0123456789") == std::string::npos;
    long long v = 0;
    if (ok) {
      errno = 0;
      char *end = nullptr;
      v = std::strtoll(digits.c_str(), &end, 10);
      ok = errno == 0 && end == digits.c_str() + digits.size();
    }
    if (!ok)
      throw fail("corrupt step counter " + std::string(key) + " '" + digits +
                 "' (a decimal integer in [0, 2^63) expected)");
    return int64_t(v);
  };
  const int64_t step = counter("step"), skipped = counter("skipped");
  // Checkpoints written before random numbers (ABI 8) have no seed: the
  // optimizer keeps the one it was constructed with. One written since
  // always has it, so a missing seed there is damage, which would silently
  // change the draws of the resumed run.
  uint64_t seed = im.options.seed;
  if (!file.hasMetadata("seed") && file.hasMetadata("abi")) {
    const std::string &abi = file.metadata("abi");
    bool old = abi.size() == 1 && abi[0] >= '0' && abi[0] < '8';
    if (!old)
      throw fail("missing metadata 'seed' (a checkpoint of kernel ABI " +
                 abi + " records the seed of the rule's random numbers)");
  }
  if (file.hasMetadata("seed")) {
    const std::string &digits = file.metadata("seed");
    bool ok = !digits.empty() && digits.size() <= 20 &&
              digits.find_first_not_of("0123456789") == std::string::npos;
    if (ok) {
      errno = 0;
      char *end = nullptr;
      unsigned long long v = std::strtoull(digits.c_str(), &end, 10);
      ok = errno == 0 && end == digits.c_str() + digits.size();
      seed = uint64_t(v);
    }
    if (!ok)
      throw fail("corrupt seed '" + digits +
                 "' (a decimal integer in [0, 2^64) expected)");
  }
  json hypers = json::parse(text("hypers"), nullptr, false);
  if (!hypers.is_array())
    throw fail("corrupt hyperparameters");
  if (hypers.size() != im.groups.size())
    throw fail("holds hyperparameters for " + std::to_string(hypers.size()) +
               " groups, this optimizer has " +
               std::to_string(im.groups.size()));
  std::vector<std::vector<double>> groupHypers;
  for (const json &g : hypers) {
    if (!g.is_array() || g.size() != ri.hypers.size())
      throw fail("corrupt hyperparameters");
    std::vector<double> values;
    for (const json &v : g) {
      if (!v.is_number() || !std::isfinite(v.get<double>()))
        throw fail("corrupt hyperparameters");
      // set() refuses these, and so does a checkpoint: the kernel has the
      // value compiled in, so another one would be a lie.
      const HyperParam &h = ri.hypers[values.size()];
      if (h.isConst && v.get<double>() != h.defaultValue)
        throw fail("sets the const hyperparameter '" + h.name + "' to " +
                   v.dump() + "; rule '" + ri.name + "' has it compiled in");
      values.push_back(v.get<double>());
    }
    groupHypers.push_back(std::move(values));
  }

  // Check every tensor before touching any state.
  struct Copy {
    void *dst;
    const void *src;
    size_t bytes;
  };
  std::vector<Copy> copies;
  for (size_t p = 0; p < im.slots.size(); ++p)
    for (size_t s = 0; s < ri.states.size(); ++s) {
      std::string name = tensorName(p, ri.states[s].name);
      std::vector<int64_t> want = stateShape(im, p, s);
      // A row or column state's length follows the parameter's shape, not
      // only its size: say so rather than "another shape" of a tensor.
      if (ri.states[s].axis != Axis::None && file.has(name)) {
        std::vector<int64_t> got;
        try {
          got = file.shape(name);
        } catch (const Error &) {
          // Corrupt: file.tensor below says how.
          got = want;
        }
        if (got != want) {
          std::string param = "parameter " + std::to_string(p);
          std::string held = got.size() == 1
                                 ? std::to_string(got[0]) + " values"
                                 : "another shape";
          bool row = ri.states[s].axis == Axis::Row;
          throw fail(std::string(row ? "row" : "col") + " state '" +
                     ri.states[s].name + "' of " + param + " holds " + held +
                     ", this optimizer has " + std::to_string(want[0]) +
                     (row ? " (one per row)" : " (one per column)") +
                     ": the checkpoint was written for another shape of " +
                     param);
        }
      }
      const void *src = file.tensor(name, ri.dtype, want);
      copies.push_back({im.slots[p].states[s].data.get(), src,
                        im.slots[p].states[s].bytes});
    }
  for (const Copy &c : copies)
    std::memcpy(c.dst, c.src, c.bytes);
  for (size_t g = 0; g < im.groups.size(); ++g)
    im.groups[g].hypers = groupHypers[g];
  im.step = step;
  im.skipped = skipped;
  im.options.seed = seed;
}

void Optimizer::loadWeights(const std::string &path) {
  Impl &im = live("loadWeights");
  const RuleInfo &ri = im.info();
  // Loading weights into a rule that has none is a mistake, not a no-op.
  if (ri.weights.empty())
    throw Error("optim::Optimizer::loadWeights: rule '" + ri.name +
                "' has no learned weights");
  SafetensorsFile file =
      SafetensorsFile::read(path, "optim::Optimizer::loadWeights");
  // Check every tensor before setting any.
  std::vector<std::pair<const void *, int64_t>> sources;
  for (const WeightSpec &w : ri.weights) {
    int64_t count = 1;
    for (int64_t d : w.shape)
      count *= d;
    sources.push_back({file.tensor(w.name, ri.dtype, w.shape), count});
  }
  for (size_t w = 0; w < ri.weights.size(); ++w)
    im.setWeights(ri.weights[w].name, sources[w].first, sources[w].second,
                  ri.dtype);
}
