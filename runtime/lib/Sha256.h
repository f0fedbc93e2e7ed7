//===- Sha256.h - SHA-256 of a byte string (runtime-internal) ---*- C++ -*-===//
//
// Internal to the runtime (not installed). The runtime cannot use LLVM's
// llvm::SHA256, which optimc and the kernel cache use: it checks that an
// artifact is the one its manifest was written for (the manifest's
// "artifact_sha256", docs/gpu.md and Manifest.h), so it needs the same
// digest of its own. FIPS 180-4; checked against sha256sum by
// test/AOT/artifact-hash.test and the standard test vectors by
// runtime/test/ReductionManifestTest.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_SHA256_H
#define OPTIM_RUNTIME_LIB_SHA256_H

#include <cstddef>
#include <string>

namespace optim {
namespace detail {

/// The SHA-256 of `size` bytes at `data`, as 64 lowercase hex digits.
std::string sha256Hex(const void *data, size_t size);

inline std::string sha256Hex(const std::string &bytes) {
  return sha256Hex(bytes.data(), bytes.size());
}

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_SHA256_H
