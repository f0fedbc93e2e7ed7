//===- Checkpoint.cpp - optimizer state as safetensors ---------------===//
//
// safetensors: an 8-byte little-endian header length, a JSON header naming
// each tensor's dtype, shape and byte range, then the raw data. Readable from
// Python (safetensors, or a few lines of numpy). Metadata values are strings,
// as the format requires.
//
//===----------------------------------------------------------------------===//

#include "OptimizerImpl.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <sstream>
#include <unistd.h>

using namespace optim;
using json = nlohmann::json;

static constexpr const char *kFormat = "optim-mlir optimizer state";

namespace {
/// Makes the error of the calling operation from a reason.
using Fail = std::function<Error(const std::string &)>;

/// A safetensors file, read whole, its header parsed; tensors are checked
/// against what the caller expects before any byte is used.
struct Safetensors {
  std::string bytes;
  json header;
  size_t dataOffset = 0;

  static Safetensors read(const std::string &path, const Fail &fail);
  /// The data of tensor `name`: `bytes` bytes of `dtype` in `shape`.
  const char *tensor(const std::string &name, const json &shape, DType dtype,
                     size_t size, const Fail &fail) const;
};
} // namespace

Safetensors Safetensors::read(const std::string &path, const Fail &fail) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw fail(std::string("cannot open: ") + std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  Safetensors file;
  file.bytes = buffer.str();
  const std::string &b = file.bytes;
  if (b.size() < 8)
    throw fail("truncated (no safetensors header)");
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i)
    length = (length << 8) | static_cast<unsigned char>(b[i]);
  if (length > b.size() - 8)
    throw fail("truncated (the header says " + std::to_string(length) +
               " bytes, the file has " + std::to_string(b.size() - 8) + ")");
  file.header = json::parse(b.begin() + 8, b.begin() + 8 + length,
                            /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (file.header.is_discarded() || !file.header.is_object())
    throw fail("the header is not valid JSON");
  file.dataOffset = 8 + length;
  return file;
}

/// e[key], or null when absent. Not operator[]: on a const json and a
/// missing key it is undefined behavior; not value(): it copies, recursively,
/// what may be nested deeply enough in a corrupt file to overflow the stack.
static const json &field(const json &e, const char *key) {
  static const json null;
  auto it = e.find(key);
  return it == e.end() ? null : *it;
}

const char *Safetensors::tensor(const std::string &name, const json &shape,
                                DType dtype, size_t size,
                                const Fail &fail) const {
  auto it = header.find(name);
  if (it == header.end() || !it->is_object())
    throw fail("missing tensor '" + name + "'");
  const json &got = field(*it, "shape");
  if (got != shape) {
    // Only a list of integers is shown: a corrupt value may be long, or
    // nested deeply enough that dump() would overflow the stack.
    bool integers = got.is_array() && got.size() <= 8 &&
                    std::all_of(got.begin(), got.end(), [](const json &d) {
                      return d.is_number_integer();
                    });
    throw fail("tensor '" + name + "' has " +
               (integers ? "shape " + got.dump() : "a corrupt shape") +
               ", expected " + shape.dump());
  }
  const char *expected = dtype == DType::F32 ? "F32" : "F64";
  if (field(*it, "dtype") != expected)
    throw fail("tensor '" + name + "' is not " + expected);
  const json &off = field(*it, "data_offsets");
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    throw fail("tensor '" + name + "' has corrupt offsets");
  uint64_t begin = off[0], end = off[1];
  if (end < begin || end - begin != size || end > bytes.size() - dataOffset)
    throw fail("tensor '" + name + "' lies outside the file (truncated?)");
  return bytes.data() + dataOffset + begin;
}

static std::string tensorName(size_t param, const std::string &state) {
  return "param" + std::to_string(param) + "." + state;
}

static std::string joinStates(const RuleInfo &ri) {
  std::string s;
  for (const StateSpec &st : ri.states)
    s += (s.empty() ? "" : ",") + st.name;
  return s;
}

static void writeAll(int fd, const void *data, size_t bytes,
                     const std::string &path) {
  const char *p = static_cast<const char *>(data);
  while (bytes) {
    ssize_t n = ::write(fd, p, bytes);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw Error("cannot write '" + path + "': " + std::strerror(errno));
    }
    p += n;
    bytes -= size_t(n);
  }
}

void Optimizer::save(const std::string &path) const {
  const Impl &im = live("save");
  const RuleInfo &ri = im.info();
  size_t elt = dtypeSize(ri.dtype);
  json header;
  json groups = json::array();
  for (const Impl::Group &g : im.groups)
    groups.push_back(g.hypers);
  header["__metadata__"] = {
      {"format", kFormat},
      {"abi", std::to_string(OPTIM_KERNEL_ABI_VERSION)},
      {"rule", ri.name},
      {"dtype", dtypeName(ri.dtype)},
      {"states", joinStates(ri)},
      {"params", std::to_string(im.slots.size())},
      {"step", std::to_string(im.step)},
      {"skipped", std::to_string(im.skipped)},
      {"hypers", groups.dump()},
  };
  size_t offset = 0;
  for (size_t p = 0; p < im.slots.size(); ++p)
    for (size_t s = 0; s < ri.states.size(); ++s) {
      int64_t n = im.slots[p].param.size;
      json shape = ri.states[s].size == 1 ? json::array({n})
                                          : json::array({ri.states[s].size, n});
      size_t bytes = im.slots[p].states[s].bytes;
      header[tensorName(p, ri.states[s].name)] = {
          {"dtype", ri.dtype == DType::F32 ? "F32" : "F64"},
          {"shape", shape},
          {"data_offsets", {offset, offset + bytes}}};
      offset += bytes;
    }
  (void)elt;
  std::string text = header.dump();
  // The data that follows is aligned to 8 bytes, as safetensors recommends.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t length = text.size();
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<unsigned char>(length >> (8 * i));

  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error("optim::Optimizer::save: cannot create '" + tmp +
                "': " + std::strerror(errno));
  try {
    writeAll(fd, prefix, 8, tmp);
    writeAll(fd, text.data(), text.size(), tmp);
    for (const Impl::Slot &slot : im.slots)
      for (const AlignedBuffer &b : slot.states)
        writeAll(fd, b.data.get(), b.bytes, tmp);
    if (::fsync(fd) != 0)
      throw Error("cannot sync '" + tmp + "': " + std::strerror(errno));
  } catch (const Error &e) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(std::string("optim::Optimizer::save: ") + e.what());
  }
  if (::close(fd) != 0) { // Some file systems report write errors here.
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error("optim::Optimizer::save: cannot write '" + tmp +
                "': " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error("optim::Optimizer::save: cannot rename '" + tmp + "' to '" +
                path + "': " + std::strerror(err));
  }
}

void Optimizer::load(const std::string &path) {
  Impl &im = live("load");
  const RuleInfo &ri = im.info();
  Fail fail = [&](const std::string &why) {
    return Error("optim::Optimizer::load: '" + path + "': " + why);
  };
  Safetensors file = Safetensors::read(path, fail);
  const json &header = file.header;

  auto meta = header.find("__metadata__");
  auto text = [&](const char *key) -> std::string {
    if (meta == header.end() || !meta->is_object() || !meta->contains(key) ||
        !(*meta)[key].is_string())
      throw fail(std::string("missing metadata '") + key +
                 "' (not an optimizer checkpoint of optim-mlir?)");
    return (*meta)[key].get<std::string>();
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
  int64_t step = 0, skipped = 0;
  try {
    step = std::stoll(text("step"));
    skipped = std::stoll(text("skipped"));
  } catch (const std::exception &) {
    throw fail("corrupt step counters");
  }
  if (step < 0 || skipped < 0)
    throw fail("corrupt step counters");
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
    const char *src;
    size_t bytes;
  };
  std::vector<Copy> copies;
  for (size_t p = 0; p < im.slots.size(); ++p)
    for (size_t s = 0; s < ri.states.size(); ++s) {
      int64_t n = im.slots[p].param.size;
      json shape = ri.states[s].size == 1 ? json::array({n})
                                          : json::array({ri.states[s].size, n});
      size_t bytes = im.slots[p].states[s].bytes;
      const char *src = file.tensor(tensorName(p, ri.states[s].name), shape,
                                    ri.dtype, bytes, fail);
      copies.push_back({im.slots[p].states[s].data.get(), src, bytes});
    }
  for (const Copy &c : copies)
    std::memcpy(c.dst, c.src, c.bytes);
  for (size_t g = 0; g < im.groups.size(); ++g)
    im.groups[g].hypers = groupHypers[g];
  im.step = step;
  im.skipped = skipped;
}

void Optimizer::loadWeights(const std::string &path) {
  Impl &im = live("loadWeights");
  const RuleInfo &ri = im.info();
  Fail fail = [&](const std::string &why) {
    return Error("optim::Optimizer::loadWeights: '" + path + "': " + why);
  };
  // Loading weights into a rule that has none is a mistake, not a no-op.
  if (ri.weights.empty())
    throw Error("optim::Optimizer::loadWeights: rule '" + ri.name +
                "' has no learned weights");
  Safetensors file = Safetensors::read(path, fail);
  // Check every tensor before setting any.
  std::vector<std::pair<const char *, int64_t>> sources;
  for (const WeightSpec &w : ri.weights) {
    int64_t count = 1;
    for (int64_t d : w.shape)
      count *= d;
    sources.push_back({file.tensor(w.name, json(w.shape), ri.dtype,
                                   size_t(count) * dtypeSize(ri.dtype), fail),
                       count});
  }
  for (size_t w = 0; w < ri.weights.size(); ++w)
    im.setWeights(ri.weights[w].name, sources[w].first, sources[w].second,
                  ri.dtype);
}
