//===- ManifestCommon.cpp - what rule and layer manifests share -----------===//

#include "ManifestCommon.h"
#include "Sha256.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace optim;
using json = nlohmann::json;

std::string detail::readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error("optim: cannot read '" + path + "': " + std::strerror(errno));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string detail::withExtension(const std::string &artifact,
                                  const std::string &extension) {
  size_t dot = artifact.find_last_of('.');
  size_t slash = artifact.find_last_of('/');
  // A dot before the last slash belongs to a folder, not to the file.
  bool hasExtension =
      dot != std::string::npos && (slash == std::string::npos || dot > slash);
  return (hasExtension ? artifact.substr(0, dot) : artifact) + extension;
}

std::string detail::manifestPathFor(const std::string &artifact) {
  return withExtension(artifact, ".manifest.json");
}

std::string detail::readPTXFor(const std::string &cubinPath) {
  std::string path = withExtension(cubinPath, ".ptx");
  if (path == cubinPath)
    return "";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT)
      return "";
    throw Error("optim: cannot read '" + path + "': " + std::strerror(errno));
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

json detail::parseManifest(const std::string &text, const ManifestFail &fail) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    throw fail("not valid JSON");
  return doc;
}

detail::ManifestHeader detail::readManifestHeader(const json &doc,
                                                  const char *nameKey,
                                                  const ManifestFail &fail) {
  ManifestHeader h;
  int64_t abi = integerField(doc, "abi_version", "abi_version", fail);
  if (abi != OPTIM_KERNEL_ABI_VERSION)
    throw fail("compiled for kernel ABI " + std::to_string(abi) +
               ", this runtime implements " +
               std::to_string(OPTIM_KERNEL_ABI_VERSION) + "; recompile it");
  h.abiVersion = int(abi);
  h.name = doc.at(nameKey).get<std::string>();
  h.symbol = doc.at("symbol").get<std::string>();
  h.target = doc.value("target", "");
  std::string dtype = doc.at("dtype").get<std::string>();
  if (dtype != "f32" && dtype != "f64")
    throw fail("unknown dtype '" + dtype + "'");
  h.dtype = dtype == "f32" ? DType::F32 : DType::F64;
  return h;
}

/// What a JSON value is, for an error message: the number itself, or its
/// type. Never dump() a value of a corrupt file: a deeply nested one would
/// overflow the stack, a long one would flood the message.
static std::string describe(const json &v) {
  return v.is_number() ? v.dump() : std::string("a ") + v.type_name();
}

std::string detail::manifestFormat(const json &doc) {
  auto it = doc.find("format");
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

int64_t detail::integerField(const json &object, const char *key,
                             const std::string &what,
                             const ManifestFail &fail) {
  const json &v = object.at(key);
  if (!v.is_number_integer() ||
      (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    throw fail(what + " must be an integer, got " + describe(v));
  return v.get<int64_t>();
}

std::vector<int64_t> detail::shapeField(const json &object, const char *key,
                                        const std::string &what,
                                        const ManifestFail &fail) {
  const json &v = object.at(key);
  if (!v.is_array())
    throw fail(what + " must be a list of extents, got " + describe(v));
  std::vector<int64_t> shape;
  int64_t count = 1;
  for (const json &d : v) {
    if (!d.is_number_integer() ||
        (d.is_number_unsigned() ? d.get<uint64_t>() > uint64_t(INT64_MAX)
                                : d.get<int64_t>() < 0))
      throw fail(what + " has a bad extent: " + describe(d));
    int64_t extent = d.get<int64_t>();
    if (extent != 0 && count > INT64_MAX / 8 / extent)
      throw fail(what + " has too many elements");
    count *= extent;
    shape.push_back(extent);
  }
  return shape;
}

std::string detail::hashField(const json &doc, const char *key,
                              const ManifestFail &fail) {
  auto it = doc.find(key);
  if (it == doc.end())
    return "";
  if (!it->is_string())
    throw fail(std::string(key) + " must be a string of 64 hex digits, got " +
               describe(*it));
  std::string hash = it->get<std::string>();
  if (hash.size() != 64 ||
      hash.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw fail(std::string(key) + " is not a SHA-256 (64 lowercase hex digits)");
  return hash;
}

void detail::requireArtifactHash(const std::string &recorded,
                                 const std::string &artifact,
                                 const std::string &manifestPath) {
  if (recorded.empty())
    throw Error("optim: manifest '" + manifestPath + "' records no SHA-256 (\"" +
                kArtifactHashKey + "\") of '" + artifact +
                "', so nothing shows that they belong together; recompile it "
                "with optimc");
}

void detail::requireHashMatches(const std::string &recorded,
                                const std::string &bytes,
                                const std::string &what,
                                const std::string &manifest) {
  if (recorded.empty())
    return;
  std::string actual = sha256Hex(bytes);
  if (actual != recorded)
    throw Error("optim: " + what + " does not match its manifest '" +
                manifest + "' (SHA-256 " + actual + ", the manifest records " +
                recorded + "): one of them was replaced after compiling; "
                "recompile it with optimc");
}

bool detail::parseReductionKind(const std::string &name, ReductionKind &kind) {
  for (ReductionKind k :
       {ReductionKind::Sum, ReductionKind::Mean, ReductionKind::Norm,
        ReductionKind::Max, ReductionKind::Min, ReductionKind::NewtonSchulz,
        ReductionKind::Rows, ReductionKind::Cols})
    if (name == reductionKindName(k)) {
      kind = k;
      return true;
    }
  return false;
}
