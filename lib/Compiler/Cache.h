//===- Cache.h - on-disk cache of compiled kernels --------------*- C++ -*-===//
//
// A compiled rule is stored as the object file the JIT produced plus its
// manifest, under a key that hashes everything the code depends on: the
// program text, the rule, the options, the target and the compiler's
// version. A second process that compiles the same rule loads the object
// instead of running the compiler.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_COMPILER_CACHE_H
#define OPTIM_LIB_COMPILER_CACHE_H

#include "optim/Compiler/Compiler.h"
#include "optim/Manifest.h"

#include <string>
#include <string_view>

namespace optim {

class KernelCache {
public:
  /// An empty directory disables the cache.
  explicit KernelCache(std::string directory) : dir(std::move(directory)) {}

  bool enabled() const { return !dir.empty(); }
  std::string key(std::string_view source, const std::string &rule,
                  const CompileOptions &options,
                  const std::string &target) const;
  /// The cached rule, or an empty Rule on a miss or an unusable entry.
  Rule load(const std::string &key) const;
  /// Moves the object file at `objectPath` into the cache and writes the
  /// manifest; returns false (leaving no partial entry) on failure.
  bool store(const std::string &key, const std::string &objectPath,
             const Manifest &manifest) const;
  std::string objectPath(const std::string &key) const;

private:
  std::string manifestPath(const std::string &key) const;
  std::string dir;
};

/// $OPTIM_CACHE_DIR, else $XDG_CACHE_HOME/optim-mlir, else
/// $HOME/.cache/optim-mlir; empty (no cache) when OPTIM_NO_CACHE is set.
std::string defaultCacheDirectory();

} // namespace optim

#endif // OPTIM_LIB_COMPILER_CACHE_H
