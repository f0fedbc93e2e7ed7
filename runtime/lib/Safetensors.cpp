//===- Safetensors.cpp - read and write named tensors ---------------------===//

#include "optim/Safetensors.h"
#include "optim/AtomicFile.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace optim;
using json = nlohmann::json;

static const char *dtypeTag(DType t) { return t == DType::F32 ? "F32" : "F64"; }

static size_t countOf(const std::vector<int64_t> &shape) {
  size_t n = 1;
  for (int64_t d : shape)
    n *= size_t(d);
  return n;
}

void optim::writeSafetensors(const std::string &path,
                             const std::vector<TensorRef> &tensors,
                             const std::map<std::string, std::string> &meta,
                             const std::string &context) {
  json header = json::object();
  if (!meta.empty())
    header["__metadata__"] = meta;
  size_t offset = 0;
  for (const TensorRef &t : tensors) {
    size_t bytes = countOf(t.shape) * dtypeSize(t.dtype);
    if (header.contains(t.name))
      throw Error(context + ": '" + path + "': tensor '" + t.name +
                  "' given twice");
    header[t.name] = {{"dtype", dtypeTag(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // The data must start 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  AtomicFile file(path, context);
  unsigned char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<unsigned char>(n >> (8 * i));
  file.write(len, 8);
  file.write(text.data(), text.size());
  for (const TensorRef &t : tensors)
    file.write(t.data, countOf(t.shape) * dtypeSize(t.dtype));
  file.commit();
}

/// e[key], or null when absent. Not operator[]: on a const json and a
/// missing key it is undefined behavior; not value(): it throws when the
/// type differs from the default's, and copies, recursively, what may be
/// nested deeply enough in a corrupt header to overflow the stack.
static const json &field(const json &e, const char *key) {
  static const json null;
  auto it = e.find(key);
  return it == e.end() ? null : *it;
}

struct SafetensorsFile::Impl {
  std::string path, context, bytes;
  json header;
  size_t dataOffset = 0;
  Error fail(const std::string &why) const {
    return Error((context.empty() ? "safetensors" : context + ":") + " '" +
                 path + "': " + why);
  }
  void validateLayout() const;
  const json &entry(const std::string &name) const {
    auto it = header.find(name);
    if (it == header.end() || !it->is_object() || name == "__metadata__")
      throw fail("missing tensor '" + name + "'");
    return *it;
  }
};

SafetensorsFile::SafetensorsFile() : impl(std::make_unique<Impl>()) {}
SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile &&) noexcept = default;
SafetensorsFile &
SafetensorsFile::operator=(SafetensorsFile &&) noexcept = default;

SafetensorsFile SafetensorsFile::read(const std::string &path,
                                      const std::string &context) {
  SafetensorsFile file;
  Impl &im = *file.impl;
  im.path = path;
  im.context = context;
  // A FIFO would block, a device (/dev/zero) be read without end.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw im.fail("not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw im.fail(std::string("cannot open: ") + std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  im.bytes = buffer.str();
  if (im.bytes.size() < 8)
    throw im.fail("truncated (no safetensors header)");
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i)
    length = (length << 8) | static_cast<unsigned char>(im.bytes[i]);
  if (length > im.bytes.size() - 8)
    throw im.fail("truncated (the header says " + std::to_string(length) +
                  " bytes, the file has " + std::to_string(im.bytes.size() - 8) +
                  ")");
  // Keys of the top level seen twice (JSON lets the last one win: a second
  // entry for a tensor would silently replace the first).
  std::set<std::string> keys;
  std::string duplicate;
  json::parser_callback_t noteKeys = [&](int depth, json::parse_event_t event,
                                         json &parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string() &&
        !keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  im.header = json::parse(im.bytes.begin() + 8, im.bytes.begin() + 8 + length,
                          noteKeys, /*allow_exceptions=*/false);
  if (im.header.is_discarded() || !im.header.is_object())
    throw im.fail("the header is not valid JSON");
  if (!duplicate.empty())
    throw im.fail("the header names '" + duplicate + "' twice");
  im.dataOffset = 8 + length;
  im.validateLayout();
  return file;
}

/// Bytes per element of a safetensors dtype tag, 0 for an unknown one.
static size_t tagSize(const std::string &tag) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
      {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(tag);
  return it == sizes.end() ? 0 : it->second;
}

/// Every tensor of the header, whether it is read or not, as the format
/// defines them (as Hugging Face's reader checks): a known dtype, a shape of
/// non-negative sizes, offsets whose length is the shape's bytes, and the
/// data covered exactly, without overlaps, holes or trailing bytes (an
/// overlap loaded one tensor's bytes into another, unnoticed).
void SafetensorsFile::Impl::validateLayout() const {
  const uint64_t dataSize = bytes.size() - dataOffset;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> names;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      continue;
    const std::string &name = it.key();
    const json &e = *it;
    if (!e.is_object())
      throw fail("entry '" + name + "' is not a tensor");
    const json &tag = field(e, "dtype");
    const size_t elt = tag.is_string() ? tagSize(tag.get<std::string>()) : 0;
    if (!elt)
      throw fail("tensor '" + name + "' has " +
                 (tag.is_string()
                      ? "an unknown dtype '" + tag.get<std::string>() + "'"
                      : std::string("no dtype")));
    const json &shape = field(e, "shape");
    if (!shape.is_array())
      throw fail("tensor '" + name + "' has no shape");
    // The count in 128 bits' worth of checks: a product past 2^64 would
    // wrap to a small size.
    uint64_t count = 1;
    bool overflow = false;
    for (const json &d : shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw fail("tensor '" + name + "' has a corrupt shape");
      const uint64_t v = d.get<uint64_t>();
      if (v && count > UINT64_MAX / v)
        overflow = true;
      count *= v;
    }
    const json &off = field(e, "data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw fail("tensor '" + name + "' has corrupt offsets");
    const uint64_t begin = off[0], end = off[1];
    if (end < begin || end > dataSize)
      throw fail("tensor '" + name + "' lies outside the file (truncated?)");
    if (overflow || count > UINT64_MAX / elt || end - begin != count * elt)
      throw fail("tensor '" + name + "' holds " + std::to_string(end - begin) +
                 " bytes, but its shape " + shape.dump() + " of " +
                 tag.get<std::string>() + " needs " +
                 (overflow || count > UINT64_MAX / elt
                      ? std::string("more than 2^64")
                      : std::to_string(count * elt)));
    ranges.push_back({begin, end});
    names.push_back(name);
  }
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t at = 0;
  for (size_t i : order) {
    if (ranges[i].first < at)
      throw fail("tensor '" + names[i] + "' overlaps another tensor's bytes");
    if (ranges[i].first > at)
      throw fail("bytes " + std::to_string(at) + ".." +
                 std::to_string(ranges[i].first) +
                 " of the data belong to no tensor");
    at = ranges[i].second;
  }
  if (at != dataSize)
    throw fail(std::to_string(dataSize - at) +
               " bytes after the last tensor's data");
}

bool SafetensorsFile::has(const std::string &name) const {
  return name != "__metadata__" && impl->header.contains(name);
}

std::vector<int64_t> SafetensorsFile::shape(const std::string &name) const {
  const json &e = impl->entry(name);
  if (!e.contains("shape") || !e["shape"].is_array())
    throw impl->fail("tensor '" + name + "' has no shape");
  std::vector<int64_t> out;
  for (const json &d : e["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      throw impl->fail("tensor '" + name + "' has a corrupt shape");
    out.push_back(d.get<int64_t>());
  }
  return out;
}

const void *SafetensorsFile::tensor(const std::string &name, DType dtype,
                                    const std::vector<int64_t> &want) const {
  const json &e = impl->entry(name);
  std::vector<int64_t> got;
  try {
    got = shape(name);
  } catch (const Error &) {
    throw impl->fail("tensor '" + name + "' has a corrupt shape, expected " +
                     json(want).dump());
  }
  if (got != want)
    throw impl->fail("tensor '" + name + "' has " +
                     (got.size() <= 8 ? "shape " + json(got).dump()
                                      : std::to_string(got.size()) +
                                            " dimensions") +
                     ", expected " + json(want).dump());
  if (field(e, "dtype") != dtypeTag(dtype))
    throw impl->fail("tensor '" + name + "' is not " + dtypeTag(dtype));
  const json &off = field(e, "data_offsets");
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    throw impl->fail("tensor '" + name + "' has corrupt offsets");
  uint64_t begin = off[0], end = off[1];
  size_t size = countOf(want) * dtypeSize(dtype);
  if (end < begin || end - begin != size ||
      end > impl->bytes.size() - impl->dataOffset)
    throw impl->fail("tensor '" + name +
                     "' lies outside the file (truncated?)");
  return impl->bytes.data() + impl->dataOffset + begin;
}

bool SafetensorsFile::hasMetadata(const std::string &key) const {
  auto it = impl->header.find("__metadata__");
  return it != impl->header.end() && it->is_object() && it->contains(key) &&
         (*it)[key].is_string();
}

std::string SafetensorsFile::metadata(const std::string &key) const {
  auto it = impl->header.find("__metadata__");
  if (it == impl->header.end() || !it->is_object() || !it->contains(key) ||
      !(*it)[key].is_string())
    throw impl->fail("no metadata '" + key + "'");
  return (*it)[key].get<std::string>();
}
