//===- LayerManifest.cpp - describe a QP layer's CUDA kernel --------------===//

#include "optim/LayerManifest.h"

#include "ManifestCommon.h"

#include <nlohmann/json.hpp>

#include <cmath>

using namespace optim;
using json = nlohmann::json;

static constexpr const char *kFormat = "optim-mlir layer manifest";

static json tensors(const std::vector<LayerTensor> &list) {
  json out = json::array();
  for (const LayerTensor &t : list)
    out.push_back({{"name", t.name}, {"shape", t.shape}});
  return out;
}

std::string optim::writeLayerManifest(const LayerManifest &m) {
  const LayerInfo &i = m.info;
  json doc = {{"format", kFormat},
              {"abi_version", m.abiVersion},
              {"layer", i.name},
              {"symbol", m.symbol},
              {"dtype", dtypeName(i.dtype)},
              {"target", m.target},
              {"inputs", tensors(i.inputs)},
              {"weights", tensors(i.weights)},
              {"outputs", tensors(i.outputs)},
              {"output_kinds", i.outputKinds},
              {"qp",
               {{"n", i.n},
                {"m", i.m},
                {"p", i.p},
                {"has_Q", i.hasQ},
                {"batched", std::vector<bool>(i.batched, i.batched + 6)},
                {"tol", i.tol},
                {"max_iter", i.maxIter}}},
              {"launch",
               {{"threads", m.threads},
                {"shared_bytes", m.sharedBytes},
                {"work_doubles", m.workDoubles},
                {"data_doubles", m.dataDoubles}}}};
  if (!m.artifactSha256.empty())
    doc[detail::kArtifactHashKey] = m.artifactSha256;
  if (!m.ptxSha256.empty())
    doc[detail::kPTXHashKey] = m.ptxSha256;
  return doc.dump(2) + "\n";
}

LayerManifest optim::readLayerManifest(const std::string &text,
                                       const std::string &origin) {
  auto fail = [&](const std::string &why) {
    return Error("optim: layer manifest '" + origin + "': " + why);
  };
  json doc = detail::parseManifest(text, fail);
  std::string format = detail::manifestFormat(doc);
  if (format != kFormat)
    throw fail(format == "optim-mlir rule manifest"
                   ? "a rule's manifest, not a layer's (load it with loadRule)"
                   : "not a layer manifest of optim-mlir");
  LayerManifest m;
  LayerInfo &i = m.info;
  try {
    detail::ManifestHeader h = detail::readManifestHeader(doc, "layer", fail);
    m.abiVersion = h.abiVersion;
    i.name = std::move(h.name);
    m.symbol = std::move(h.symbol);
    m.target = std::move(h.target);
    i.dtype = h.dtype;
    auto read = [&](const json &list, std::vector<LayerTensor> &out) {
      for (const json &t : list) {
        std::string name = t.at("name").get<std::string>();
        out.push_back(
            {name, detail::shapeField(t, "shape", "'" + name + "'", fail)});
      }
    };
    read(doc.at("inputs"), i.inputs);
    read(doc.at("weights"), i.weights);
    read(doc.at("outputs"), i.outputs);
    // A list (iterating a number would visit it as one element) of
    // integers (get<int> of a float such as 1e300 is undefined).
    const json &kinds = doc.at("output_kinds");
    if (!kinds.is_array())
      throw fail("output_kinds must be a list");
    for (const json &k : kinds) {
      if (!k.is_number_integer() || k.get<int64_t>() < 0 ||
          k.get<int64_t>() > 2)
        throw fail("an output kind is not 0, 1 or 2 (z, nu or lam)");
      i.outputKinds.push_back(k.get<int>());
    }
    const json &qp = doc.at("qp");
    i.n = detail::integerField(qp, "n", "qp.n", fail);
    i.m = detail::integerField(qp, "m", "qp.m", fail);
    i.p = detail::integerField(qp, "p", "qp.p", fail);
    i.hasQ = qp.at("has_Q").get<bool>();
    std::vector<bool> batched = qp.at("batched").get<std::vector<bool>>();
    if (batched.size() != 6)
      throw fail("qp.batched must have 6 entries (Q, q, A, b, G, h)");
    for (int k = 0; k < 6; ++k)
      i.batched[k] = batched[k];
    i.tol = qp.at("tol").get<double>();
    i.maxIter = detail::integerField(qp, "max_iter", "qp.max_iter", fail);
    const json &launch = doc.at("launch");
    m.threads = detail::integerField(launch, "threads", "launch.threads", fail);
    m.sharedBytes = detail::integerField(launch, "shared_bytes",
                                         "launch.shared_bytes", fail);
    m.workDoubles = detail::integerField(launch, "work_doubles",
                                         "launch.work_doubles", fail);
    m.dataDoubles = detail::integerField(launch, "data_doubles",
                                         "launch.data_doubles", fail);
    m.artifactSha256 = detail::hashField(doc, detail::kArtifactHashKey, fail);
    m.ptxSha256 = detail::hashField(doc, detail::kPTXHashKey, fail);
  } catch (const json::exception &e) {
    throw fail(std::string("missing or malformed field: ") + e.what());
  }
  if (m.symbol != OPTIM_LAYER_SYMBOL_PREFIX + i.name + OPTIM_LAYER_GPU_SUFFIX)
    throw fail("symbol '" + m.symbol + "' does not name layer '" + i.name +
               "'");
  if (i.n < 1 || i.m < 0 || i.p < 0)
    throw fail("bad QP dimensions");
  if (!(i.tol > 0) || !std::isfinite(i.tol) || i.maxIter < 1)
    throw fail("bad solver settings (tol " + std::to_string(i.tol) +
               ", max_iter " + std::to_string(i.maxIter) + ")");
  if (m.threads < 32 || m.threads > 1024 || m.threads % 32 ||
      m.sharedBytes < 0 || m.dataDoubles < 1 ||
      m.workDoubles <= m.dataDoubles)
    throw fail("bad launch (threads " + std::to_string(m.threads) +
               ", shared bytes " + std::to_string(m.sharedBytes) +
               ", workspace " + std::to_string(m.workDoubles) + ", data " +
               std::to_string(m.dataDoubles) + ")");
  if (i.outputs.size() != i.outputKinds.size())
    throw fail("outputs and output_kinds differ in length");
  // The runtime copies each output from the solver's z, nu or lam: its
  // shape must be theirs ([n], [m], [p]).
  const int64_t sizes[3] = {i.n, i.m, i.p};
  const char *const kinds[3] = {"z", "nu", "lam"};
  for (size_t k = 0; k < i.outputs.size(); ++k) {
    int kind = i.outputKinds[k];
    if (i.outputs[k].shape != std::vector<int64_t>{sizes[kind]})
      throw fail("output '" + i.outputs[k].name + "' (" + kinds[kind] +
                 ") must have shape [" + std::to_string(sizes[kind]) + "]");
  }
  return m;
}
