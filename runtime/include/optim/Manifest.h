//===- Manifest.h - describe and load ahead-of-time compiled rules --------===//
//
// Part of the runtime: no LLVM or MLIR header may be included here.
//
// An AOT-compiled rule is a shared library (or an object file) exporting
// optim_rule_<name> (and, for a rule with tensor reductions, listed under
// "reductions", optim_reduce_<name>) with the ABI of KernelABI.h, plus a
// JSON manifest: the
// rule's signature, the kernel symbol, the ABI version and the target it was
// compiled for. A program that only runs precompiled rules links the runtime
// alone:
//
//   optim::Rule adam = optim::loadRule("adam.so", "adam.manifest.json");
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_MANIFEST_H
#define OPTIM_RUNTIME_MANIFEST_H

#include "optim/Rule.h"

#include <string>

namespace optim {

struct Manifest {
  RuleInfo info;
  /// The kernel's symbol, optim_rule_<name>.
  std::string symbol;
  /// What the kernel was compiled for, e.g. "x86_64-pc-linux-gnu
  /// skylake-avx512".
  std::string target;
  int abiVersion = OPTIM_KERNEL_ABI_VERSION;
};

std::string writeManifest(const Manifest &manifest);
/// Parses and checks a manifest; throws optim::Error naming `origin` when it
/// is malformed or of another ABI version.
Manifest readManifest(const std::string &json, const std::string &origin);

/// Loads a shared library compiled by `optimc --emit=shared` and its manifest
/// (default: the library's path with ".manifest.json" for its extension).
Rule loadRule(const std::string &sharedLibrary,
              const std::string &manifestPath = "");

/// Writes `bytes` to `path` through a temporary file and a rename, so that a
/// reader sees the old file or the new one, never a partial one.
void writeFileAtomically(const std::string &path, const std::string &bytes);

} // namespace optim

#endif // OPTIM_RUNTIME_MANIFEST_H
