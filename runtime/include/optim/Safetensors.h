//===- Safetensors.h - read and write named tensors -------------*- C++ -*-===//
//
// Part of the runtime: no LLVM or MLIR header may be included here.
//
// The safetensors layout (an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the data),
// for weights and checkpoints written by tools such as optim-train; readable
// from Python. Only F32 and F64 tensors; metadata values are strings, as the
// format requires.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_SAFETENSORS_H
#define OPTIM_RUNTIME_SAFETENSORS_H

#include "optim/Rule.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace optim {

struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;
};

/// Writes `tensors` and `metadata` to `path` atomically: a temporary file in
/// the same folder, flushed to disk, then renamed over `path`. Throws
/// optim::Error, leaving `path` as it was, on any failure; its message starts
/// with `context` (the caller's name, e.g. "optim::Optimizer::save").
void writeSafetensors(const std::string &path,
                      const std::vector<TensorRef> &tensors,
                      const std::map<std::string, std::string> &metadata = {},
                      const std::string &context = "writeSafetensors");

/// A safetensors file read whole. Every accessor checks what it reads and
/// throws optim::Error naming the file on a missing tensor, another shape or
/// dtype, or a truncated or corrupt file: "safetensors 'PATH': why", or
/// "CONTEXT: 'PATH': why" when read() is given a `context`.
class SafetensorsFile {
public:
  static SafetensorsFile read(const std::string &path,
                              const std::string &context = "");
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile &&) noexcept;
  SafetensorsFile &operator=(SafetensorsFile &&) noexcept;

  bool has(const std::string &name) const;
  /// The data of tensor `name`, which must have `dtype` and `shape`.
  const void *tensor(const std::string &name, DType dtype,
                     const std::vector<int64_t> &shape) const;
  /// The shape of tensor `name`.
  std::vector<int64_t> shape(const std::string &name) const;
  /// The metadata value `key`; throws if absent.
  std::string metadata(const std::string &key) const;
  /// Whether the metadata has a string value `key`.
  bool hasMetadata(const std::string &key) const;

  struct Impl;

private:
  SafetensorsFile();
  std::unique_ptr<Impl> impl;
};

} // namespace optim

#endif // OPTIM_RUNTIME_SAFETENSORS_H
