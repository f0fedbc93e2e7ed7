//===- Safetensors.cpp - read and write named tensors ---------------------===//

#include "optim/Safetensors.h"
#include "optim/AtomicFile.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
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
  im.header = json::parse(im.bytes.begin() + 8, im.bytes.begin() + 8 + length,
                          nullptr, /*allow_exceptions=*/false);
  if (im.header.is_discarded() || !im.header.is_object())
    throw im.fail("the header is not valid JSON");
  im.dataOffset = 8 + length;
  return file;
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
