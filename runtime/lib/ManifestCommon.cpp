//===- ManifestCommon.cpp - what rule and layer manifests share -----------===//

#include "ManifestCommon.h"

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
  h.abiVersion = doc.at("abi_version").get<int>();
  if (h.abiVersion != OPTIM_KERNEL_ABI_VERSION)
    throw fail("compiled for kernel ABI " + std::to_string(h.abiVersion) +
               ", this runtime implements " +
               std::to_string(OPTIM_KERNEL_ABI_VERSION) + "; recompile it");
  h.name = doc.at(nameKey).get<std::string>();
  h.symbol = doc.at("symbol").get<std::string>();
  h.target = doc.value("target", "");
  std::string dtype = doc.at("dtype").get<std::string>();
  if (dtype != "f32" && dtype != "f64")
    throw fail("unknown dtype '" + dtype + "'");
  h.dtype = dtype == "f32" ? DType::F32 : DType::F64;
  return h;
}
