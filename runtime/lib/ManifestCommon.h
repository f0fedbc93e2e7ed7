//===- ManifestCommon.h - what rule and layer manifests share ---*- C++ -*-===//
//
// Internal to the runtime (not installed): the file handling and the header
// fields that the rule manifest (Manifest.cpp), the layer manifest
// (LayerManifest.cpp) and the CUDA loaders read the same way, so that their
// error messages and defaults cannot drift apart.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_MANIFESTCOMMON_H
#define OPTIM_RUNTIME_LIB_MANIFESTCOMMON_H

#include "optim/Rule.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace optim {
namespace detail {

/// The whole file at `path`; an Error naming it when it cannot be read.
std::string readFile(const std::string &path);

/// `artifact` with the extension of its last component (if it has one)
/// replaced by `extension` (".ptx").
std::string withExtension(const std::string &artifact,
                          const std::string &extension);

/// The manifest that belongs to a compiled artifact: its path with the
/// extension replaced by ".manifest.json".
std::string manifestPathFor(const std::string &artifact);

/// The PTX optimc writes next to a cubin (its path with ".ptx"), or ""
/// when there is none; an Error when it is there but cannot be read.
std::string readPTXFor(const std::string &cubinPath);

/// Builds the Error for a manifest that is wrong in the way it names.
using ManifestFail = std::function<Error(const std::string &why)>;

/// Parses `text` as a JSON object; throws fail("not valid JSON") otherwise.
nlohmann::json parseManifest(const std::string &text,
                             const ManifestFail &fail);

/// The fields every manifest starts with.
struct ManifestHeader {
  int abiVersion = 0;
  std::string name, symbol, target;
  DType dtype = DType::F32;
};

/// Reads the header fields (the name under `nameKey`) and checks the ABI
/// version and the dtype. Missing or mistyped fields throw the json
/// exceptions of nlohmann::json::at and get, for the caller to report.
ManifestHeader readManifestHeader(const nlohmann::json &doc,
                                  const char *nameKey,
                                  const ManifestFail &fail);

/// doc["format"] when it is a string, else "": a corrupt manifest's format
/// may be anything.
std::string manifestFormat(const nlohmann::json &doc);

/// The integer `object[key]`, which must be a JSON integer that fits
/// int64_t: a float such as 1e300 is refused, not converted (undefined
/// behavior in nlohmann::json's get). Throws fail(...) naming `what`.
int64_t integerField(const nlohmann::json &object, const char *key,
                     const std::string &what, const ManifestFail &fail);

/// The tensor shape `object[key]`: non-negative integer extents whose
/// element count, at 8 bytes each, fits int64_t, so that no size computed
/// from it overflows. Throws fail(...) naming `what`.
std::vector<int64_t> shapeField(const nlohmann::json &object, const char *key,
                                const std::string &what,
                                const ManifestFail &fail);

/// The keys of the SHA-256 (64 lowercase hex digits) of the artifact that
/// optimc wrote with a manifest (the library, object or cubin) and of the
/// PTX it wrote beside a cubin. A loader reading an artifact from a file
/// requires the first and refuses a mismatch: optimc renames the artifact
/// into place before its manifest, so a failed manifest write (or a
/// library copied over after compiling) would otherwise leave a new
/// artifact beside a stale manifest that the loader trusts.
constexpr const char *kArtifactHashKey = "artifact_sha256";
constexpr const char *kPTXHashKey = "ptx_sha256";

/// doc[key] when present, which must be 64 lowercase hex digits (else
/// fail(...)); "" when absent.
std::string hashField(const nlohmann::json &doc, const char *key,
                      const ManifestFail &fail);

/// Throws unless a manifest read from `manifestPath` records the SHA-256 of
/// its artifact (`recorded` not empty); `artifact` names it.
void requireArtifactHash(const std::string &recorded,
                         const std::string &artifact,
                         const std::string &manifestPath);

/// Throws unless `bytes` have the SHA-256 `recorded` (nothing is checked
/// when `recorded` is empty); `what` names the bytes ("the library 'a.so'",
/// "the cubin"), `manifest` the manifest that recorded the hash.
void requireHashMatches(const std::string &recorded, const std::string &bytes,
                        const std::string &what, const std::string &manifest);

/// The kind a manifest spells `name` ("norm"; reductionKindName's
/// inverse); false when there is none.
bool parseReductionKind(const std::string &name, ReductionKind &kind);

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_MANIFESTCOMMON_H
