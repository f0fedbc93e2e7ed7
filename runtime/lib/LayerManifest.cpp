//===- LayerManifest.cpp - describe a QP layer's CUDA kernel --------------===//

#include "optim/LayerManifest.h"

#include "ManifestCommon.h"

#include <nlohmann/json.hpp>

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
  return doc.dump(2) + "\n";
}

LayerManifest optim::readLayerManifest(const std::string &text,
                                       const std::string &origin) {
  auto fail = [&](const std::string &why) {
    return Error("optim: layer manifest '" + origin + "': " + why);
  };
  json doc = detail::parseManifest(text, fail);
  if (doc.value("format", "") != kFormat)
    throw fail(doc.value("format", "") == "optim-mlir rule manifest"
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
    auto read = [](const json &list, std::vector<LayerTensor> &out) {
      for (const json &t : list)
        out.push_back({t.at("name").get<std::string>(),
                       t.at("shape").get<std::vector<int64_t>>()});
    };
    read(doc.at("inputs"), i.inputs);
    read(doc.at("weights"), i.weights);
    read(doc.at("outputs"), i.outputs);
    i.outputKinds = doc.at("output_kinds").get<std::vector<int>>();
    const json &qp = doc.at("qp");
    i.n = qp.at("n").get<int64_t>();
    i.m = qp.at("m").get<int64_t>();
    i.p = qp.at("p").get<int64_t>();
    i.hasQ = qp.at("has_Q").get<bool>();
    std::vector<bool> batched = qp.at("batched").get<std::vector<bool>>();
    if (batched.size() != 6)
      throw fail("qp.batched must have 6 entries (Q, q, A, b, G, h)");
    for (int k = 0; k < 6; ++k)
      i.batched[k] = batched[k];
    i.tol = qp.at("tol").get<double>();
    i.maxIter = qp.at("max_iter").get<int64_t>();
    const json &launch = doc.at("launch");
    m.threads = launch.at("threads").get<int64_t>();
    m.sharedBytes = launch.at("shared_bytes").get<int64_t>();
    m.workDoubles = launch.at("work_doubles").get<int64_t>();
    m.dataDoubles = launch.at("data_doubles").get<int64_t>();
  } catch (const json::exception &e) {
    throw fail(std::string("missing or malformed field: ") + e.what());
  }
  if (m.symbol != OPTIM_LAYER_SYMBOL_PREFIX + i.name + OPTIM_LAYER_GPU_SUFFIX)
    throw fail("symbol '" + m.symbol + "' does not name layer '" + i.name +
               "'");
  if (i.n < 1 || i.m < 0 || i.p < 0)
    throw fail("bad QP dimensions");
  if (m.threads < 32 || m.threads > 1024 || m.threads % 32 ||
      m.sharedBytes < 0 || m.dataDoubles < 1 ||
      m.workDoubles <= m.dataDoubles)
    throw fail("bad launch (threads " + std::to_string(m.threads) +
               ", shared bytes " + std::to_string(m.sharedBytes) +
               ", workspace " + std::to_string(m.workDoubles) + ", data " +
               std::to_string(m.dataDoubles) + ")");
  if (i.outputs.size() != i.outputKinds.size())
    throw fail("outputs and output_kinds differ in length");
  for (int k : i.outputKinds)
    if (k < 0 || k > 2)
      throw fail("output kind " + std::to_string(k) + " is not z, nu or lam");
  return m;
}
