//===- LoaderFuzzTest.cpp - the runtime's loaders on mangled files --------===//
//
// Every file the runtime reads (safetensors weights, optimizer checkpoints,
// rule and layer manifests), mangled: truncated at every length, bits
// flipped, the header length oversized, each field of the header replaced by
// values of the wrong type, sign or size, nested deeply, or removed. Each
// load either succeeds or throws optim::Error naming the file; never
// anything else, and a load that fails changes nothing. Deterministic; the
// fuzzer build (ASan, UBSan) also catches what goes wrong silently.
//
//===----------------------------------------------------------------------===//

#include "optim/LayerManifest.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Safetensors.h"
#include "optim/Trajectory.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace optim;
using json = nlohmann::json;

namespace {

// The loaders never run a kernel.
void noKernel(void *const *, const int64_t *, const int64_t *, int64_t,
              int64_t, const double *, int64_t, const void *const *,
              const uint64_t *) {}
void noVJP(void *const *, const int64_t *, const int64_t *, int64_t, int64_t,
           const double *, int64_t, const void *const *, void *,
           const uint64_t *) {}

/// A learned rule's signature: a const hyperparameter, a scalar and a
/// vector state, two weights.
RuleInfo toyInfo() {
  RuleInfo info;
  info.name = "toy";
  info.hypers = {{"lr", 0.1, false}, {"k", 10.0, true}};
  info.states = {{"m", 1, 0.0}, {"h", 3, 0.5}};
  info.weights = {{"W", {2, 3}}, {"b", {2}}};
  return info;
}

Rule toyRule() { return Rule(toyInfo(), noKernel, noVJP, nullptr); }

std::string readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

/// A safetensors file's header and data, to mangle the header as JSON.
struct Parts {
  json header;
  std::string data;
};

Parts split(const std::string &bytes) {
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i)
    length = (length << 8) | static_cast<unsigned char>(bytes[i]);
  return {json::parse(bytes.substr(8, length)), bytes.substr(8 + length)};
}

std::string lengthPrefix(uint64_t length) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i)
    s[i] = char(length >> (8 * i));
  return s;
}

std::string join(const std::string &header, const std::string &data) {
  return lengthPrefix(header.size()) + header + data;
}

/// `depth` nested arrays: a parser, a copy or a dump() that recurses over
/// them overflows the stack.
std::string deeplyNested(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

/// Values of every wrong kind for a field of a header or manifest.
std::vector<json> badValues() {
  return {nullptr,
          true,
          -1,
          0,
          1,
          3,
          int64_t(1) << 40,
          INT64_MAX,
          UINT64_MAX,
          -1.5,
          1e300,
          -1e300,
          0.5,
          "",
          "F16",
          "BF16",
          "I64",
          "f64",
          json::array(),
          json::array({-1}),
          json::array({0}),
          json::array({1e300}),
          json::array({int64_t(1) << 62, int64_t(1) << 62}),
          json::array({UINT64_MAX, 8}),
          json::array({1, 2, 3}),
          json::array({json::array({2, 3})}),
          json::array({"2", "3"}),
          json::object(),
          json::object({{"a", 1}})};
}

/// Every variant of `doc` with one value (found by walking objects and
/// arrays) replaced by a bad one or removed.
std::vector<json> fieldMutants(const json &doc) {
  std::vector<json> out;
  std::vector<json::json_pointer> paths;
  std::function<void(const json &, const json::json_pointer &)> walk =
      [&](const json &v, const json::json_pointer &at) {
        if (!at.empty())
          paths.push_back(at);
        if (v.is_object())
          for (auto it = v.begin(); it != v.end(); ++it)
            walk(it.value(), at / it.key());
        else if (v.is_array())
          for (size_t i = 0; i < v.size(); ++i)
            walk(v[i], at / i);
      };
  walk(doc, json::json_pointer());
  for (const json::json_pointer &p : paths) {
    for (const json &bad : badValues()) {
      json m = doc;
      m[p] = bad;
      out.push_back(std::move(m));
    }
    json removed = doc;
    removed[p.parent_pointer()].is_object()
        ? (void)removed[p.parent_pointer()].erase(p.back())
        : removed[p.parent_pointer()].erase(std::stoul(p.back()));
    out.push_back(std::move(removed));
  }
  return out;
}

/// The mangled versions of a file: every truncation, bit flips (every bit
/// of the length prefix, random ones elsewhere), absurd header lengths.
std::vector<std::string> byteMutants(const std::string &bytes,
                                     unsigned seed) {
  std::vector<std::string> out;
  for (size_t n = 0; n < bytes.size(); ++n)
    out.push_back(bytes.substr(0, n));
  for (size_t bit = 0; bit < 64; ++bit) {
    std::string m = bytes;
    m[bit / 8] = char(m[bit / 8] ^ (1 << (bit % 8)));
    out.push_back(m);
  }
  std::mt19937 rng(seed);
  for (int i = 0; i < 400; ++i) {
    std::string m = bytes;
    for (int f = 0, e = 1 + int(rng() % 4); f < e; ++f) {
      size_t at = rng() % m.size();
      m[at] = char(m[at] ^ (1 << (rng() % 8)));
    }
    out.push_back(m);
  }
  for (uint64_t length : {uint64_t(0), uint64_t(1), uint64_t(bytes.size()),
                          uint64_t(bytes.size() - 7), uint64_t(1) << 40,
                          uint64_t(INT64_MAX), UINT64_MAX})
    out.push_back(lengthPrefix(length) + bytes.substr(8));
  return out;
}

/// Every mangled version of the safetensors file `bytes`: byte mutants,
/// header fields replaced or removed, deep nesting, data cut or padded.
std::vector<std::string> safetensorsMutants(const std::string &bytes,
                                            unsigned seed) {
  std::vector<std::string> out = byteMutants(bytes, seed);
  Parts parts = split(bytes);
  for (const json &h : fieldMutants(parts.header))
    out.push_back(join(h.dump(), parts.data));
  for (const std::string &value :
       {deeplyNested(200000), std::string("1e999"), std::string("-0"),
        std::string("18446744073709551616")})
    for (auto it = parts.header.begin(); it != parts.header.end(); ++it)
      for (const char *key : {"shape", "dtype", "data_offsets"}) {
        json h = parts.header;
        if (!h[it.key()].is_object())
          continue;
        h[it.key()][key] = "@";
        std::string text = h.dump();
        size_t at = text.find("\"@\"");
        out.push_back(
            join(text.substr(0, at) + value + text.substr(at + 3), parts.data));
      }
  out.push_back(join(deeplyNested(200000), parts.data));
  out.push_back(join(parts.header.dump(), parts.data.substr(1)));
  out.push_back(join(parts.header.dump(), parts.data + "extra"));
  out.push_back(join(parts.header.dump() + std::string(1000, ' '), ""));
  return out;
}

class LoaderFuzz : public ::testing::Test {
protected:
  void SetUp() override {
    dir = ::testing::TempDir() + "optim-loader-fuzz-" +
          std::to_string(::getpid());
    ASSERT_EQ(::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST, true);
    mangled = dir + "/mangled.safetensors";
  }
  void TearDown() override {
    std::remove(mangled.c_str());
    ::rmdir(dir.c_str());
  }

  /// Runs `load` on `path` holding each of `mutants`: success or an
  /// optim::Error naming the file; `unchanged` checks after a failure
  /// that nothing changed. Returns how many were refused.
  size_t sweep(const std::vector<std::string> &mutants,
               const std::function<void(const std::string &)> &load,
               const std::function<void()> &unchanged = nullptr) {
    size_t refused = 0;
    for (size_t i = 0; i < mutants.size(); ++i) {
      writeBytes(mangled, mutants[i]);
      try {
        load(mangled);
      } catch (const Error &e) {
        ++refused;
        EXPECT_NE(std::string(e.what()).find(mangled), std::string::npos)
            << "mutant " << i << ": " << e.what();
        if (unchanged)
          unchanged();
      } catch (const std::exception &e) {
        ADD_FAILURE() << "mutant " << i << " threw another exception: "
                      << e.what();
      }
    }
    return refused;
  }

  std::string dir, mangled;
};

} // namespace

TEST_F(LoaderFuzz, SafetensorsWeights) {
  std::vector<float> W = {1, 2, 3, 4, 5, 6}, b = {7, 8};
  std::string path = dir + "/weights.safetensors";
  writeSafetensors(path, {{"W", DType::F32, {2, 3}, W.data()},
                          {"b", DType::F32, {2}, b.data()}},
                   {{"note", "weights"}});
  std::string bytes = readBytes(path);
  std::remove(path.c_str());
  std::vector<std::string> mutants = safetensorsMutants(bytes, 1);

  // The reader itself, every accessor.
  size_t refused = sweep(mutants, [](const std::string &p) {
    SafetensorsFile f = SafetensorsFile::read(p);
    for (const char *name : {"W", "b", "__metadata__", "missing"}) {
      if (!f.has(name))
        continue;
      std::vector<int64_t> shape = f.shape(name);
      (void)f.tensor(name, DType::F32, shape);
      (void)f.tensor(name, DType::F64, shape);
    }
    if (f.hasMetadata("note"))
      (void)f.metadata("note");
  });
  EXPECT_GT(refused, mutants.size() / 2);

  // Optimizer::loadWeights and Trajectory::loadWeights: all or nothing.
  float p[4] = {};
  Optimizer opt(toyRule(), {{p, 4}});
  Trajectory traj(toyRule(), {4});
  std::vector<float> w0(6, -1.0f);
  opt.setWeights("W", w0.data(), 6);
  traj.setWeights("W", w0.data(), 6);
  sweep(
      mutants,
      [&](const std::string &p) {
        opt.loadWeights(p);
        traj.loadWeights(p);
        opt.setWeights("W", w0.data(), 6); // Back to the reference.
        traj.setWeights("W", w0.data(), 6);
      },
      [&] {
        EXPECT_EQ(std::memcmp(traj.weights("W"), w0.data(), 24), 0);
      });
}

TEST_F(LoaderFuzz, Checkpoints) {
  std::vector<float> p0 = {1, 2, 3, 4, 5}, p1 = {6, 7};
  Optimizer writer(toyRule(), {{p0.data(), 5}, {p1.data(), 2}});
  writer.set("lr", 0.25);
  std::string path = dir + "/ckpt.safetensors";
  writer.save(path);
  std::string bytes = readBytes(path);
  std::remove(path.c_str());

  std::vector<std::string> mutants = safetensorsMutants(bytes, 2);
  // The metadata's values are JSON and numbers inside strings.
  Parts parts = split(bytes);
  for (const char *key : {"step", "skipped", "params", "hypers", "abi"})
    for (const char *value :
         {"", "-1", "9223372036854775808", "1e999", "12abc", "[[0.1, 10]]",
          "[[1e999, 10]]", "[[0.1, 11]]", "[[0.1]]", "[]", "[[\"a\", 10]]",
          "{}", "null"}) {
      json h = parts.header;
      h["__metadata__"][key] = value;
      mutants.push_back(join(h.dump(), parts.data));
    }

  std::vector<float> q0(5, 0.0f), q1(2, 0.0f);
  Optimizer opt(toyRule(), {{q0.data(), 5}, {q1.data(), 2}});
  opt.set("lr", 0.5);
  auto states = [&] {
    std::string s;
    for (size_t i = 0; i < 2; ++i)
      for (auto [name, n] : {std::pair<const char *, size_t>{"m", 1},
                             std::pair<const char *, size_t>{"h", 3}})
        s.append(static_cast<const char *>(opt.state(i, name)),
                 (i ? 2 : 5) * n * sizeof(float));
    return s;
  };
  const std::string before = states();
  size_t refused = sweep(
      mutants,
      [&](const std::string &p) {
        opt.load(p);
        // Accepted: back to the reference state for the next mutant.
        Optimizer fresh(toyRule(), {{q0.data(), 5}, {q1.data(), 2}});
        fresh.set("lr", 0.5);
        opt = std::move(fresh);
      },
      [&] {
        EXPECT_EQ(states(), before);
        EXPECT_EQ(opt.get("lr"), 0.5);
        EXPECT_EQ(opt.stepCount(), 0);
      });
  EXPECT_GT(refused, mutants.size() / 2);
}

TEST_F(LoaderFuzz, RuleManifests) {
  Manifest m;
  m.info = toyInfo();
  // Only in the manifest: toyRule's one-pass kernel goes with none.
  m.info.reductions = {{ReductionKind::Norm, false},
                       {ReductionKind::Max, true}};
  m.symbol = "optim_rule_toy";
  m.target = "x86_64-pc-linux-gnu";
  std::string text = writeManifest(m);
  std::vector<std::string> mutants;
  for (size_t n = 0; n < text.size(); n += 3)
    mutants.push_back(text.substr(0, n));
  for (const json &doc : fieldMutants(json::parse(text)))
    mutants.push_back(doc.dump());
  mutants.push_back(deeplyNested(200000));
  std::string nested = text;
  nested.insert(nested.find('[', nested.find("\"shape\"")) + 1,
                deeplyNested(200000) + ",");
  mutants.push_back(nested);

  size_t refused = 0;
  for (const std::string &t : mutants) {
    try {
      Manifest got = readManifest(t, "mangled.json");
      // Accepted: what the runtime sizes buffers from is sane.
      for (const StateSpec &s : got.info.states)
        EXPECT_GE(s.size, 1);
      for (const WeightSpec &w : got.info.weights)
        for (int64_t d : w.shape)
          EXPECT_GE(d, 0);
    } catch (const Error &e) {
      ++refused;
      EXPECT_NE(std::string(e.what()).find("mangled.json"), std::string::npos)
          << e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << "another exception: " << e.what() << " on " << t;
    }
  }
  EXPECT_GT(refused, mutants.size() / 2);
}

TEST_F(LoaderFuzz, LayerManifests) {
  LayerManifest m;
  LayerInfo &i = m.info;
  i.name = "toy";
  i.inputs = {{"q", {3}}};
  i.weights = {{"G", {2, 3}}};
  i.outputs = {{"z", {3}}, {"lam", {2}}};
  i.outputKinds = {0, 2};
  i.n = 3;
  i.p = 2;
  i.batched[1] = true;
  m.symbol = "optim_layer_toy_qp";
  m.target = "nvptx64-nvidia-cuda sm_90";
  m.threads = 32;
  m.sharedBytes = 4096;
  m.workDoubles = 100;
  m.dataDoubles = 20;
  std::string text = writeLayerManifest(m);
  std::vector<std::string> mutants;
  for (size_t n = 0; n < text.size(); n += 3)
    mutants.push_back(text.substr(0, n));
  for (const json &doc : fieldMutants(json::parse(text)))
    mutants.push_back(doc.dump());

  size_t refused = 0;
  for (const std::string &t : mutants) {
    try {
      LayerManifest got = readLayerManifest(t, "mangled.json");
      // Accepted: each output has the shape of what it copies.
      const int64_t sizes[3] = {got.info.n, got.info.m, got.info.p};
      for (size_t k = 0; k < got.info.outputs.size(); ++k)
        EXPECT_EQ(got.info.outputs[k].shape,
                  std::vector<int64_t>{sizes[got.info.outputKinds[k]]});
      EXPECT_GT(got.info.tol, 0.0);
      EXPECT_GE(got.info.maxIter, 1);
    } catch (const Error &e) {
      ++refused;
      EXPECT_NE(std::string(e.what()).find("mangled.json"), std::string::npos)
          << e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << "another exception: " << e.what() << " on " << t;
    }
  }
  EXPECT_GT(refused, mutants.size() / 2);
}

// What the sweeps found, spelled out.
TEST_F(LoaderFuzz, ManifestIntegersMustBeIntegers) {
  Manifest m;
  m.info = toyInfo();
  m.symbol = "optim_rule_toy";
  json doc = json::parse(writeManifest(m));
  doc["states"][0]["size"] = 1e300; // get<int64_t> would be undefined
  EXPECT_THROW(
      {
        try {
          readManifest(doc.dump(), "f.json");
        } catch (const Error &e) {
          EXPECT_NE(std::string(e.what()).find(
                        "the size of state 'm' must be an integer"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  doc = json::parse(writeManifest(m));
  doc["weights"][0]["shape"] = {int64_t(1) << 62, int64_t(1) << 62};
  EXPECT_THROW(readManifest(doc.dump(), "f.json"), Error);
  doc["weights"][0]["shape"] = {-2, 3};
  EXPECT_THROW(readManifest(doc.dump(), "f.json"), Error);
  doc = json::parse(writeManifest(m));
  doc["format"] = 7; // a json type_error before
  EXPECT_THROW(readManifest(doc.dump(), "f.json"), Error);
  doc = json::parse(writeManifest(m));
  doc["hyperparameters"][0]["default"] = 1e300;
  std::string text = doc.dump();
  text.replace(text.find("1e+300"), 6, "1e999"); // parses as inf
  EXPECT_THROW(readManifest(text, "f.json"), Error);
}

TEST_F(LoaderFuzz, SafetensorsEntryWithoutOffsetsOrWithANumericDtype) {
  float W[6] = {};
  std::string path = dir + "/w.safetensors";
  writeSafetensors(path, {{"W", DType::F32, {2, 3}, W}});
  Parts parts = split(readBytes(path));
  std::remove(path.c_str());
  json h = parts.header;
  h["W"].erase("data_offsets"); // operator[] on a const json: undefined
  writeBytes(mangled, join(h.dump(), parts.data));
  // Every entry is checked when the file is read (SafetensorsFile::read).
  EXPECT_THROW(SafetensorsFile::read(mangled), Error);
  h = parts.header;
  h["W"]["dtype"] = 32; // value("dtype", "") threw a json type_error
  writeBytes(mangled, join(h.dump(), parts.data));
  EXPECT_THROW(SafetensorsFile::read(mangled), Error);
}

TEST_F(LoaderFuzz, SafetensorsLayoutIsTheFormatsExactly) {
  // The data covered exactly once, each tensor's bytes its shape's, each
  // key once, no bytes left over, a regular file: an overlap once loaded
  // one tensor's bytes into another, and /dev/zero was read for a GiB.
  float A[6] = {1, 2, 3, 4, 5, 6}, B[2] = {7, 8};
  std::string path = dir + "/w.safetensors";
  writeSafetensors(path,
                   {{"A", DType::F32, {2, 3}, A}, {"B", DType::F32, {2}, B}});
  Parts parts = split(readBytes(path));
  std::remove(path.c_str());
  auto expectRefused = [&](const std::string &header, const std::string &data,
                           const std::string &why) {
    writeBytes(mangled, join(header, data));
    try {
      SafetensorsFile::read(mangled);
      ADD_FAILURE() << "accepted: " << header;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  json h = parts.header;
  h["B"]["data_offsets"] = {16, 24}; // inside A's bytes
  expectRefused(h.dump(), parts.data, "overlaps another tensor's bytes");
  h = parts.header;
  h["A"]["shape"] = {2, 2}; // 16 bytes for 24
  expectRefused(h.dump(), parts.data,
                "tensor 'A' holds 24 bytes, but its shape [2,2] of F32 needs "
                "16");
  expectRefused(parts.header.dump(), parts.data + "xxxx",
                "4 bytes after the last tensor's data");
  h = parts.header;
  h["B"]["data_offsets"] = {28, 36};
  expectRefused(h.dump(), parts.data + "xxxx",
                "bytes 24..28 of the data belong to no tensor");
  h = parts.header;
  h["B"]["dtype"] = "Q7";
  expectRefused(h.dump(), parts.data, "tensor 'B' has an unknown dtype 'Q7'");
  // A key twice: JSON keeps the last one.
  std::string twice = parts.header.dump();
  twice.insert(1, "\"B\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[24,32]},");
  expectRefused(twice, parts.data, "the header names 'B' twice");
  try {
    SafetensorsFile::read("/dev/zero");
    ADD_FAILURE() << "/dev/zero accepted";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"),
              std::string::npos)
        << e.what();
  }
  // The file as written reads back.
  writeBytes(mangled, join(parts.header.dump(), parts.data));
  SafetensorsFile ok = SafetensorsFile::read(mangled);
  EXPECT_EQ(static_cast<const float *>(ok.tensor("B", DType::F32, {2}))[1],
            8.0f);
}
