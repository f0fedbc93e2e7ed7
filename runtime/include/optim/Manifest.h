//===- Manifest.h - describe and load ahead-of-time compiled rules --------===//
//
// Part of the runtime: no LLVM or MLIR header may be included here.
//
// An AOT-compiled rule is a shared library (or an object file) exporting
// optim_rule_<name> (and, for a rule with tensor reductions, listed under
// "reductions", optim_reduce_<name>) with the ABI of KernelABI.h, plus a
// JSON manifest: the
// rule's signature (with "inputs", the names of its per-coordinate inputs in
// declaration order, for a rule that has some; absent: none; and "random",
// the kinds of its random draw sites, "uniform" or "normal", in body order,
// for a rule that draws, whose library then defines optim_random_<name>;
// KernelABI.h version 8), the kernel symbol, the ABI version and the target it was
// compiled for. A program that only runs precompiled rules links the runtime
// alone:
//
//   optim::Rule adam = optim::loadRule("adam.so", "adam.manifest.json");
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_MANIFEST_H
#define OPTIM_RUNTIME_MANIFEST_H

#include "optim/AtomicFile.h"
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
  /// The SHA-256 (64 lowercase hex digits) of the library, object or cubin
  /// that optimc wrote with this manifest ("artifact_sha256"), and of the
  /// PTX beside a cubin ("ptx_sha256"); empty: not recorded (not written).
  /// loadRule and the CUDA loaders refuse an artifact file whose hash is
  /// not the one recorded, or a manifest that records none: a library
  /// replaced after compiling, or a new one beside a stale manifest that
  /// a failed write left, is never run under the wrong description.
  std::string artifactSha256{}, ptxSha256{};
};

std::string writeManifest(const Manifest &manifest);
/// Parses and checks a manifest; throws optim::Error naming `origin` when it
/// is malformed or of another ABI version.
Manifest readManifest(const std::string &json, const std::string &origin);

/// Loads a shared library compiled by `optimc --emit=shared` and its manifest
/// (default: the library's path with ".manifest.json" for its extension).
/// Refuses a library whose SHA-256 is not the one its manifest records.
Rule loadRule(const std::string &sharedLibrary,
              const std::string &manifestPath = "");

} // namespace optim

#endif // OPTIM_RUNTIME_MANIFEST_H
