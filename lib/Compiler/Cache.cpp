//===- Cache.cpp - on-disk cache of compiled kernels ----------------------===//

#include "Cache.h"
#include "optim/Compiler/CodeGen.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/ExecutionEngine/Orc/ExecutionUtils.h"
#include "llvm/ExecutionEngine/Orc/LLJIT.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SHA256.h"

#include "CodegenHash.h"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

using namespace optim;

/// A hash of every source of the code generator (generated at build time by
/// cmake/CodegenHash.cmake): a kernel compiled by another build of the
/// compiler is never loaded, even when nobody remembered to bump a version.
static constexpr const char *kCompilerVersion =
    "optim-mlir 0.1 codegen " OPTIM_CODEGEN_HASH;

std::string optim::defaultCacheDirectory() {
  if (std::getenv("OPTIM_NO_CACHE"))
    return "";
  if (const char *dir = std::getenv("OPTIM_CACHE_DIR"))
    return dir;
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"))
    if (*xdg)
      return std::string(xdg) + "/optim-mlir";
  if (const char *home = std::getenv("HOME"))
    if (*home)
      return std::string(home) + "/.cache/optim-mlir";
  return "";
}

std::string KernelCache::key(std::string_view source, const std::string &rule,
                             const CompileOptions &options,
                             const std::string &target) const {
  llvm::SHA256 hash;
  auto add = [&](llvm::StringRef s) {
    hash.update(s);
    hash.update(llvm::StringRef("\0", 1)); // Unambiguous concatenation.
  };
  add(kCompilerVersion);
  add(LLVM_VERSION_STRING);
  add(std::to_string(OPTIM_KERNEL_ABI_VERSION));
  add(target);
  add(dtypeName(options.precision));
  add(std::to_string(options.vectorWidth));
  add("learned " + std::to_string(options.learnedVectorWidth));
  add("registers " + std::to_string(options.vectorRegisterBytes) + " x " +
      std::to_string(options.vectorRegisters));
  add(options.relaxedFP ? "relaxed-fp" : "exact-fp");
  add("prefetch " + std::to_string(options.prefetchDistance));
  add(rule);
  add(llvm::StringRef(source.data(), source.size()));
  return llvm::toHex(hash.final(), /*LowerCase=*/true);
}

std::string KernelCache::objectPath(const std::string &key) const {
  return dir + "/" + key + ".o";
}

std::string KernelCache::manifestPath(const std::string &key) const {
  return dir + "/" + key + ".manifest.json";
}

/// The field of an entry's manifest that holds the SHA-256 of its object:
/// the JIT links and runs whatever code the object holds, so an object
/// damaged on disk (a flipped bit in .text) would run, not fail to load.
static constexpr const char *kObjectHashField = "object_sha256";

static std::string hashOf(llvm::StringRef bytes) {
  return llvm::toHex(llvm::SHA256::hash(llvm::arrayRefFromStringRef(bytes)),
                     /*LowerCase=*/true);
}

Rule KernelCache::load(const std::string &key) const {
  if (!enabled())
    return Rule();
  // The manifest is written last: its presence means the entry is complete.
  std::ifstream in(manifestPath(key), std::ios::binary);
  if (!in)
    return Rule();
  std::stringstream text;
  text << in.rdbuf();
  Manifest manifest;
  try {
    manifest = readManifest(text.str(), manifestPath(key));
  } catch (const Error &) {
    return Rule(); // Unusable: recompile and overwrite.
  }
  auto object = llvm::MemoryBuffer::getFile(objectPath(key));
  if (!object)
    return Rule();
  llvm::Expected<llvm::json::Value> doc = llvm::json::parse(text.str());
  if (!doc) {
    llvm::consumeError(doc.takeError());
    return Rule();
  }
  const llvm::json::Object *fields = doc->getAsObject();
  std::optional<llvm::StringRef> hash =
      fields ? fields->getString(kObjectHashField) : std::nullopt;
  if (!hash || *hash != hashOf((*object)->getBuffer()))
    return Rule(); // Damaged, or from a build that did not hash.

  initializeNativeTarget();
  auto jit = llvm::orc::LLJITBuilder().create();
  if (!jit) {
    llvm::consumeError(jit.takeError());
    return Rule();
  }
  // The kernels call libm (powf, expf, ...), found in this process.
  auto generator =
      llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
          (*jit)->getDataLayout().getGlobalPrefix());
  if (!generator) {
    llvm::consumeError(generator.takeError());
    return Rule();
  }
  (*jit)->getMainJITDylib().addGenerator(std::move(*generator));
  if (llvm::Error err = (*jit)->addObjectFile(std::move(*object))) {
    llvm::consumeError(std::move(err));
    return Rule();
  }
  auto address = (*jit)->lookup(manifest.symbol);
  if (!address) {
    llvm::consumeError(address.takeError());
    return Rule();
  }
  // An entry whose manifest lists other reductions (kinds, @global or
  // levels, version 9) or draw sites than its kernels were compiled for
  // (KernelABI.h, optim_reductions_<name> and optim_random_<name>, defined
  // only when the list is not empty) is not used.
  auto compiledFor = [&](const std::string &prefix, const std::string &listed) {
    auto descriptor = (*jit)->lookup(prefix + manifest.info.name);
    if (!descriptor) {
      llvm::consumeError(descriptor.takeError());
      return listed.empty();
    }
    return listed == descriptor->toPtr<const char *>();
  };
  if (!compiledFor(OPTIM_REDUCTIONS_SYMBOL_PREFIX,
                   reductionsDescriptor(manifest.info.reductions)) ||
      !compiledFor(OPTIM_RANDOM_SYMBOL_PREFIX,
                   randomDescriptor(manifest.info.random)))
    return Rule();
  if (!manifest.info.reductions.empty()) {
    auto reduce =
        (*jit)->lookup(OPTIM_REDUCE_SYMBOL_PREFIX + manifest.info.name);
    if (!reduce) {
      llvm::consumeError(reduce.takeError());
      return Rule();
    }
    auto kernel = address->toPtr<optim_reduced_rule_kernel>();
    std::shared_ptr<llvm::orc::LLJIT> owner(std::move(*jit));
    return Rule(std::move(manifest.info),
                reduce->toPtr<optim_reduce_kernel>(), kernel,
                std::move(owner));
  }
  auto kernel = address->toPtr<optim_rule_kernel>();
  std::shared_ptr<llvm::orc::LLJIT> owner(std::move(*jit));
  return Rule(std::move(manifest.info), kernel, std::move(owner));
}

bool KernelCache::store(const std::string &key, const std::string &objectTmp,
                        const Manifest &manifest) const {
  if (!enabled())
    return false;
  // Hashed before the rename: another process storing the same key may
  // replace the object between our rename and a read-back, and its hash
  // would then describe our manifest's neighbour (a needless miss).
  auto object = llvm::MemoryBuffer::getFile(objectTmp);
  if (!object || llvm::sys::fs::rename(objectTmp, objectPath(key))) {
    llvm::sys::fs::remove(objectTmp);
    return false;
  }
  // writeManifest's text, and the object's hash (what load() checks).
  llvm::Expected<llvm::json::Value> doc =
      llvm::json::parse(writeManifest(manifest));
  if (!doc || !doc->getAsObject()) {
    if (!doc)
      llvm::consumeError(doc.takeError());
    return false;
  }
  (*doc->getAsObject())[kObjectHashField] = hashOf((*object)->getBuffer());
  std::string text;
  llvm::raw_string_ostream os(text);
  os << llvm::formatv("{0:2}", *doc) << "\n";
  try {
    writeFileAtomically(manifestPath(key), text);
  } catch (const Error &) {
    return false;
  }
  return true;
}
