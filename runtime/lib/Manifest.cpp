//===- Manifest.cpp - describe and load ahead-of-time compiled rules ------===//

#include "optim/Manifest.h"

#include "ManifestCommon.h"
#include "Reductions.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <memory>
#include <unistd.h>

using namespace optim;
using json = nlohmann::json;

static constexpr const char *kFormat = "optim-mlir rule manifest";

std::string optim::writeManifest(const Manifest &m) {
  json hypers = json::array(), states = json::array(), weights = json::array();
  for (const HyperParam &h : m.info.hypers)
    hypers.push_back(
        {{"name", h.name}, {"default", h.defaultValue}, {"const", h.isConst}});
  for (const StateSpec &s : m.info.states) {
    json entry = {{"name", s.name}, {"size", s.size}, {"init", s.init}};
    // Row and column states (version 10); absent for per-coordinate ones.
    if (s.axis != Axis::None)
      entry["axis"] = axisName(s.axis);
    states.push_back(entry);
  }
  for (const WeightSpec &w : m.info.weights)
    weights.push_back({{"name", w.name}, {"shape", w.shape}});
  json reductions = json::array();
  for (const ReductionSpec &r : m.info.reductions) {
    json entry = {{"kind", reductionKindName(r.kind)}, {"global", r.global}};
    // Nested reductions (version 9): the stage that computes it, present
    // iff above 0, as in the descriptor ("mean:1").
    if (r.level > 0)
      entry["level"] = r.level;
    // Row and column reductions (version 10) and matrix functions (version
    // 11, "matrix"); absent for the others.
    if (r.axis != Axis::None)
      entry["axis"] = axisName(r.axis);
    // A matrix function's parameters (version 11).
    if (r.kind == ReductionKind::NewtonSchulz)
      entry["ns"] = {{"steps", r.nsSteps},
                     {"coefficients",
                      {r.nsCoefficients[0], r.nsCoefficients[1],
                       r.nsCoefficients[2]}},
                     {"eps", r.nsEps}};
    reductions.push_back(entry);
  }
  json doc = {{"format", kFormat},
              {"abi_version", m.abiVersion},
              {"rule", m.info.name},
              {"symbol", m.symbol},
              {"dtype", dtypeName(m.info.dtype)},
              {"target", m.target},
              {"hyperparameters", hypers},
              {"states", states},
              {"weights", weights}};
  // Absent for rules without reductions: their manifests read as before.
  if (!reductions.empty())
    doc["reductions"] = reductions;
  // The per-coordinate inputs, in declaration order (version 7): the chunk
  // table has one pointer per input after g. Absent for rules without.
  if (!m.info.inputs.empty())
    doc["inputs"] = m.info.inputs;
  // The kinds of the random draw sites, in body order (version 8). Absent
  // for rules that draw nothing.
  if (!m.info.random.empty()) {
    json random = json::array();
    for (RandomKind k : m.info.random)
      random.push_back(randomKindName(k));
    doc["random"] = random;
  }
  if (!m.artifactSha256.empty())
    doc[detail::kArtifactHashKey] = m.artifactSha256;
  if (!m.ptxSha256.empty())
    doc[detail::kPTXHashKey] = m.ptxSha256;
  return doc.dump(2) + "\n";
}

Manifest optim::readManifest(const std::string &text,
                             const std::string &origin) {
  auto fail = [&](const std::string &why) {
    return Error("optim: manifest '" + origin + "': " + why);
  };
  json doc = detail::parseManifest(text, fail);
  if (detail::manifestFormat(doc) != kFormat)
    throw fail("not a rule manifest of optim-mlir");
  Manifest m;
  try {
    detail::ManifestHeader h = detail::readManifestHeader(doc, "rule", fail);
    m.abiVersion = h.abiVersion;
    m.info.name = std::move(h.name);
    m.symbol = std::move(h.symbol);
    m.target = std::move(h.target);
    m.info.dtype = h.dtype;
    for (const json &h : doc.at("hyperparameters")) {
      HyperParam hyper{h.at("name").get<std::string>(),
                       h.at("default").get<double>(),
                       h.at("const").get<bool>()};
      // JSON has no inf, but 1e999 parses as one; set() refuses it too.
      if (!std::isfinite(hyper.defaultValue))
        throw fail("hyperparameter '" + hyper.name +
                   "' has a non-finite default");
      m.info.hypers.push_back(hyper);
    }
    for (const json &s : doc.at("states")) {
      StateSpec spec{s.at("name").get<std::string>(), 0,
                     s.at("init").get<double>()};
      spec.size = detail::integerField(s, "size",
                                       "the size of state '" + spec.name + "'",
                                       fail);
      if (spec.size < 1)
        throw fail("state '" + spec.name + "' has size " +
                   std::to_string(spec.size));
      if (!std::isfinite(spec.init))
        throw fail("state '" + spec.name + "' has a non-finite initial value");
      // Row and column states (version 10): "axis" is "row" or "col",
      // absent for a per-coordinate state; always scalars.
      if (auto axis = s.find("axis"); axis != s.end()) {
        std::string entry = "state " + std::to_string(m.info.states.size()) +
                            " ('" + spec.name + "')";
        if (!axis->is_string() || (*axis != "row" && *axis != "col"))
          throw fail(entry + " has axis " + axis->dump() +
                     "; an axis is \"row\" or \"col\", absent for a "
                     "per-coordinate state");
        spec.axis = *axis == "row" ? Axis::Row : Axis::Col;
        if (spec.size != 1)
          throw fail(entry + " is a " + axisName(spec.axis) +
                     " state of size " + std::to_string(spec.size) +
                     "; row and column states are scalars");
      }
      m.info.states.push_back(spec);
    }
    for (const json &w : doc.at("weights")) {
      std::string name = w.at("name").get<std::string>();
      m.info.weights.push_back(
          {name,
           detail::shapeField(w, "shape", "weights '" + name + "'", fail)});
    }
    if (auto it = doc.find("reductions"); it != doc.end()) {
      if (!it->is_array())
        throw fail("\"reductions\" must be a list");
      for (const json &r : *it) {
        std::string kind = r.at("kind").get<std::string>();
        ReductionSpec spec;
        if (!detail::parseReductionKind(kind, spec.kind))
          throw fail("reduction " + std::to_string(m.info.reductions.size()) +
                     " has an unknown kind '" + kind +
                     "' (known: sum, mean, norm, max, min, newton_schulz, "
                     "rows, cols)");
        spec.global = r.at("global").get<bool>();
        const bool matrix = spec.kind == ReductionKind::NewtonSchulz;
        // Row and column reductions (version 10): "axis" is "row" or "col",
        // absent for a tensor or global one; never with "global": true.
        // Matrix functions (version 11): "axis" is "matrix".
        if (auto axis = r.find("axis"); axis != r.end()) {
          // A matrix function's parameters come later: its kind names it.
          std::string entry = "reduction " +
                              std::to_string(m.info.reductions.size()) + " ('" +
                              (matrix ? std::string(reductionKindName(spec.kind))
                                      : reductionsDescriptor({spec})) +
                              "')";
          if (matrix) {
            if (*axis != "matrix")
              throw fail(entry + " has axis " + axis->dump() +
                         "; a newton_schulz reduction has axis \"matrix\"");
            spec.axis = Axis::Matrix;
          } else {
            if (!axis->is_string() || (*axis != "row" && *axis != "col"))
              throw fail(entry + " has axis " + axis->dump() +
                         "; an axis is \"row\" or \"col\", absent for a "
                         "tensor or global reduction");
            if (spec.global)
              throw fail(entry + " has axis " + axis->dump() +
                         " and is global; a row or column reduction is "
                         "per tensor");
            spec.axis = *axis == "row" ? Axis::Row : Axis::Col;
          }
        } else if (matrix) {
          throw fail("reduction " + std::to_string(m.info.reductions.size()) +
                     " ('newton_schulz') has no axis; a newton_schulz "
                     "reduction has axis \"matrix\"");
        }
        // The parameters of a matrix function (version 11): "ns":
        // {"steps": 0..100, "coefficients": [a, b, c], "eps": > 0}.
        if (auto ns = r.find("ns"); ns != r.end()) {
          std::string entry = "reduction " +
                              std::to_string(m.info.reductions.size()) + " ('" +
                              reductionKindName(spec.kind) + "')";
          if (!matrix)
            throw fail(entry + " has \"ns\", the parameters of a "
                       "newton_schulz reduction");
          const std::string form =
              "; \"ns\" is {\"steps\": an integer 0.." +
              std::to_string(detail::kMaxNewtonSchulzSteps) +
              ", \"coefficients\": [a, b, c], \"eps\": a positive number}";
          if (!ns->is_object() || ns->size() != 3 || !ns->contains("steps") ||
              !ns->contains("coefficients") || !ns->contains("eps"))
            throw fail(entry + " has malformed \"ns\" " + ns->dump() + form);
          const json &steps = ns->at("steps"), &coefficients =
                                                  ns->at("coefficients"),
                     &eps = ns->at("eps");
          if (!steps.is_number_integer() || steps.get<int64_t>() < 0 ||
              steps.get<int64_t>() > detail::kMaxNewtonSchulzSteps)
            throw fail(entry + " has steps " + steps.dump() + form);
          spec.nsSteps = int(steps.get<int64_t>());
          if (!coefficients.is_array() || coefficients.size() != 3)
            throw fail(entry + " has coefficients " + coefficients.dump() +
                       form);
          for (size_t i = 0; i < 3; ++i) {
            if (!coefficients[i].is_number() ||
                !std::isfinite(coefficients[i].get<double>()))
              throw fail(entry + " has coefficients " + coefficients.dump() +
                         " (three finite numbers)" + form);
            spec.nsCoefficients[i] = coefficients[i].get<double>();
          }
          if (!eps.is_number() || !std::isfinite(eps.get<double>()) ||
              !(eps.get<double>() > 0))
            throw fail(entry + " has eps " + eps.dump() + form);
          spec.nsEps = eps.get<double>();
        } else if (matrix) {
          throw fail("reduction " + std::to_string(m.info.reductions.size()) +
                     " ('newton_schulz') has no \"ns\" (its steps, "
                     "coefficients and eps)");
        }
        if (auto level = r.find("level"); level != r.end()) {
          // As the descriptor's ":<level>": 1..65535, absent for 0.
          std::string entry = "reduction " +
                              std::to_string(m.info.reductions.size()) + " ('" +
                              reductionsDescriptor({spec}) + "')";
          bool ok =
              level->is_number_unsigned()
                  ? level->get<uint64_t>() >= 1 &&
                        level->get<uint64_t>() <= detail::kMaxReductionLevel
                  : level->is_number_integer() && level->get<int64_t>() >= 1 &&
                        level->get<int64_t>() <=
                            int64_t(detail::kMaxReductionLevel);
          if (!ok)
            throw fail(entry + " has level " + level->dump() +
                       "; a level is an integer 1.." +
                       std::to_string(detail::kMaxReductionLevel) +
                       ", absent for level 0");
          spec.level = unsigned(level->get<int64_t>());
        }
        // Shape values take no axis, global or level (version 11).
        if (std::string why = detail::checkReductionSpec(spec); !why.empty())
          throw fail("reduction " + std::to_string(m.info.reductions.size()) +
                     " ('" + reductionKindName(spec.kind) + "'): " + why);
        m.info.reductions.push_back(spec);
      }
      std::string levels = detail::checkReductionLevels(m.info.reductions);
      if (!levels.empty())
        throw fail(levels + " (not a manifest of optimc)");
    }
    if (auto it = doc.find("inputs"); it != doc.end()) {
      if (!it->is_array())
        throw fail("\"inputs\" must be a list of names");
      for (const json &in : *it) {
        if (!in.is_string())
          throw fail("input " + std::to_string(m.info.inputs.size()) +
                     " is not a name (a string)");
        std::string name = in.get<std::string>();
        if (name.empty())
          throw fail("input " + std::to_string(m.info.inputs.size()) +
                     " has an empty name");
        for (const std::string &other : m.info.inputs)
          if (other == name)
            throw fail("input '" + name + "' is listed twice");
        m.info.inputs.push_back(std::move(name));
      }
    }
    if (auto it = doc.find("random"); it != doc.end()) {
      if (!it->is_array())
        throw fail("\"random\" must be a list of \"uniform\" or \"normal\"");
      for (const json &k : *it) {
        std::string site = std::to_string(m.info.random.size());
        if (!k.is_string())
          throw fail("random draw site " + site +
                     " is not \"uniform\" or \"normal\" (a string)");
        std::string kind = k.get<std::string>();
        if (kind == "uniform")
          m.info.random.push_back(RandomKind::Uniform);
        else if (kind == "normal")
          m.info.random.push_back(RandomKind::Normal);
        else
          throw fail("random draw site " + site + " has an unknown kind '" +
                     kind + "' (known: uniform, normal)");
      }
    }
    m.artifactSha256 = detail::hashField(doc, detail::kArtifactHashKey, fail);
    m.ptxSha256 = detail::hashField(doc, detail::kPTXHashKey, fail);
  } catch (const json::exception &e) {
    throw fail(std::string("missing or malformed field: ") + e.what());
  }
  if (m.symbol != OPTIM_RULE_SYMBOL_PREFIX + m.info.name)
    throw fail("symbol '" + m.symbol + "' does not name rule '" + m.info.name +
               "'");
  return m;
}

Rule optim::loadRule(const std::string &library, const std::string &path) {
  std::string manifestPath =
      path.empty() ? detail::manifestPathFor(library) : path;
  Manifest m = readManifest(detail::readFile(manifestPath), manifestPath);
  // optimc writes NAME.manifest.json for obj, shared and cubin alike, so a
  // cubin's manifest may sit beside the library: its signature would match
  // and its dtype may not.
  if (m.target.rfind("nvptx", 0) == 0)
    throw Error("optim: manifest '" + manifestPath +
                "' describes kernels for '" + m.target +
                "', a CUDA GPU, not the library '" + library +
                "' (rewrite it with optimc --emit=shared; give --emit=cubin "
                "another -o name)");
  // dlopen searches the library path, not the current folder, for a name
  // without a slash; the manifest was read from the current folder.
  std::string dlPath =
      library.find('/') == std::string::npos ? "./" + library : library;
  // The manifest must describe this very library: optimc records its
  // SHA-256, and a library rebuilt or copied over after compiling (or left
  // beside a stale manifest by a failed write) is refused, not trusted.
  detail::requireArtifactHash(m.artifactSha256, library, manifestPath);
  detail::requireHashMatches(m.artifactSha256, detail::readFile(dlPath),
                             "the library '" + library + "'", manifestPath);
  void *handle = ::dlopen(dlPath.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    throw Error(std::string("optim: cannot load '") + library +
                "': " + ::dlerror());
  std::shared_ptr<void> owner(handle, [](void *h) { ::dlclose(h); });
  void *fn = ::dlsym(handle, m.symbol.c_str());
  if (!fn)
    throw Error("optim: '" + library + "' has no symbol '" + m.symbol +
                "' (does the manifest belong to it?)");
  // The kernels write and read one value per reduction and chunk: a
  // manifest that lists other reductions than they were compiled for would
  // size the runtime's buffers wrongly.
  std::string descSymbol = OPTIM_REDUCTIONS_SYMBOL_PREFIX + m.info.name;
  const char *compiled =
      static_cast<const char *>(::dlsym(handle, descSymbol.c_str()));
  std::string listed = reductionsDescriptor(m.info.reductions);
  std::vector<ReductionSpec> compiledSpecs;
  if (compiled) {
    std::string why =
        detail::parseReductionsDescriptor(compiled, compiledSpecs);
    if (!why.empty())
      throw Error("optim: '" + library + "' has a malformed '" + descSymbol +
                  "' (\"" + compiled + "\"): " + why +
                  "; was it compiled by optimc?");
  }
  // Compared as values, not spellings (detail::sameReductions).
  if (compiled && !detail::sameReductions(m.info.reductions, compiledSpecs))
    throw Error("optim: '" + manifestPath + "' lists " +
                (listed.empty() ? std::string("no tensor reductions")
                                : "the tensor reductions '" + listed + "'") +
                " but the kernels of '" + library +
                "' were compiled for '" + compiled +
                "' (does the manifest belong to it?)");
  if (!compiled && !listed.empty())
    throw Error("optim: '" + library + "' has no symbol '" + descSymbol +
                "', which a rule with tensor reductions defines (does the "
                "manifest belong to it?)");
  // The chunk table has one pointer per state (and a next buffer per row or
  // column state) and the runtime sizes each state's buffer from the
  // manifest: states other than the kernels' would make them read and
  // write past the buffers (KernelABI.h, version 10).
  std::string statesSymbol = OPTIM_STATES_SYMBOL_PREFIX + m.info.name;
  const char *compiledStates =
      static_cast<const char *>(::dlsym(handle, statesSymbol.c_str()));
  std::string listedStates = statesDescriptor(m.info.states);
  if (compiledStates && listedStates != compiledStates)
    throw Error("optim: '" + manifestPath + "' lists " +
                (listedStates.empty()
                     ? std::string("no states")
                     : "the states '" + listedStates + "'") +
                " but the kernels of '" + library + "' were compiled for '" +
                compiledStates + "' (does the manifest belong to it?)");
  if (!compiledStates && !listedStates.empty())
    throw Error("optim: '" + library + "' has no symbol '" + statesSymbol +
                "', which the library of a rule with states defines since "
                "ABI version 10 (recompile it with optimc; does the manifest "
                "belong to it?)");
  // The kernels draw at the sites they were compiled with: a manifest that
  // lists others describes another rule, and one that lists none lets the
  // runtime pass kernels that do draw a null rng (KernelABI.h, version 8).
  std::string randomSymbol = OPTIM_RANDOM_SYMBOL_PREFIX + m.info.name;
  const char *drawn =
      static_cast<const char *>(::dlsym(handle, randomSymbol.c_str()));
  std::string sites = randomDescriptor(m.info.random);
  if (drawn && sites != drawn)
    throw Error("optim: '" + manifestPath + "' lists " +
                (sites.empty() ? std::string("no random draws")
                               : "the random draws '" + sites + "'") +
                " but the kernels of '" + library +
                "' were compiled to draw '" + drawn +
                "' (does the manifest belong to it?)");
  if (!drawn && !sites.empty())
    throw Error("optim: '" + library + "' has no symbol '" + randomSymbol +
                "', which a rule that draws random numbers defines (does the "
                "manifest belong to it?)");
  if (!m.info.reductions.empty()) {
    std::string reduceSymbol = OPTIM_REDUCE_SYMBOL_PREFIX + m.info.name;
    void *reduce = ::dlsym(handle, reduceSymbol.c_str());
    if (!reduce)
      throw Error("optim: '" + library + "' has no symbol '" + reduceSymbol +
                  "', the first pass of a rule with tensor reductions (does "
                  "the manifest belong to it?)");
    return Rule(std::move(m.info),
                reinterpret_cast<optim_reduce_kernel>(reduce),
                reinterpret_cast<optim_reduced_rule_kernel>(fn),
                std::move(owner));
  }
  return Rule(std::move(m.info), reinterpret_cast<optim_rule_kernel>(fn),
              std::move(owner));
}
