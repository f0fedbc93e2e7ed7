//===- ReductionManifestTest.cpp - manifests of rules with reductions -----===//
//
// The "reductions" of a rule manifest (KernelABI.h, version 6): written,
// read back, refused when malformed (naming the manifest), and loadRule
// with the library's two passes (ReductionKernels.c) or a clear error when
// the first is missing. And the manifest's SHA-256 of its library
// ("artifact_sha256"): the runtime's own SHA-256 on the standard vectors,
// loadRule refusing a library that is not the one recorded, or a manifest
// that records none.
//
//===----------------------------------------------------------------------===//

#include "optim/Manifest.h"
#include "optim/Optimizer.h"

#include "../lib/Sha256.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace optim;
using json = nlohmann::json;

namespace {

Manifest shrinkManifest() {
  Manifest m;
  m.info.name = "shrink";
  m.info.dtype = DType::F64;
  m.info.hypers = {{"lr", 0.5, false}};
  m.info.reductions = {{ReductionKind::Norm, false}};
  m.symbol = "optim_rule_shrink";
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

std::string message(const std::string &text) {
  try {
    readManifest(text, "lamb.manifest.json");
  } catch (const Error &e) {
    return e.what();
  }
  return "no error";
}

TEST(ReductionManifest, RoundTripsEveryKindInOrder) {
  Manifest m = shrinkManifest();
  m.info.reductions = {
      {ReductionKind::Sum, false}, {ReductionKind::Mean, true},
      {ReductionKind::Norm, false}, {ReductionKind::Max, true},
      {ReductionKind::Min, false}, {ReductionKind::Norm, true}};
  std::string text = writeManifest(m);
  json doc = json::parse(text);
  ASSERT_TRUE(doc.contains("reductions"));
  EXPECT_EQ(doc["reductions"][1]["kind"], "mean");
  EXPECT_EQ(doc["reductions"][1]["global"], true);
  Manifest back = readManifest(text, "m.json");
  ASSERT_EQ(back.info.reductions.size(), m.info.reductions.size());
  for (size_t r = 0; r < m.info.reductions.size(); ++r) {
    EXPECT_EQ(back.info.reductions[r].kind, m.info.reductions[r].kind) << r;
    EXPECT_EQ(back.info.reductions[r].global, m.info.reductions[r].global)
        << r;
  }
  EXPECT_EQ(writeManifest(back), text);
}

TEST(ReductionManifest, NoneIsAbsentAndAnEmptyListIsNone) {
  Manifest m = shrinkManifest();
  m.info.reductions.clear();
  std::string text = writeManifest(m);
  EXPECT_FALSE(json::parse(text).contains("reductions"));
  EXPECT_TRUE(readManifest(text, "m.json").info.reductions.empty());
  json doc = json::parse(text);
  doc["reductions"] = json::array();
  EXPECT_TRUE(readManifest(doc.dump(), "m.json").info.reductions.empty());
}

TEST(ReductionManifest, MalformedReductionsNameTheManifest) {
  json doc = json::parse(writeManifest(shrinkManifest()));
  auto with = [&](json reductions) {
    json d = doc;
    d["reductions"] = std::move(reductions);
    return message(d.dump());
  };
  std::string bad =
      with(json::array({{{"kind", "median"}, {"global", false}}}));
  EXPECT_NE(bad.find("optim: manifest 'lamb.manifest.json': reduction 0 has "
                     "an unknown kind 'median' (known: sum, mean, norm, max, "
                     "min, newton_schulz, rows, cols)"),
            std::string::npos)
      << bad;
  for (const json &r :
       {json("norm"), json::array({json::object({{"kind", "norm"}})}),
        json::array({json::object({{"global", true}})}),
        json::array({json::object({{"kind", 2}, {"global", true}})}),
        json::array({json::object({{"kind", "norm"}, {"global", "yes"}})}),
        json::array({json(3)})}) {
    std::string why = with(r);
    EXPECT_NE(why.find("lamb.manifest.json"), std::string::npos)
        << r.dump() << ": " << why;
  }
}

class ReductionLibrary : public ::testing::Test {
protected:
  void SetUp() override {
    dir = ::testing::TempDir() + "optim-reduction-" +
          std::to_string(::getpid());
    ASSERT_EQ(system(("mkdir -p '" + dir + "'").c_str()), 0);
  }
  void TearDown() override { system(("rm -rf '" + dir + "'").c_str()); }
  /// The SHA-256 of the test's library (loadRule requires it in the
  /// manifest, as optimc writes it).
  static std::string libraryHash() {
    std::ifstream in(OPTIM_REDUCTION_KERNELS, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    return detail::sha256Hex(bytes.str());
  }
  /// `m` with the library's hash, unless it has one.
  std::string writeManifestFile(Manifest m) {
    if (m.artifactSha256.empty())
      m.artifactSha256 = libraryHash();
    std::string path = dir + "/" + m.info.name + ".manifest.json";
    writeFileAtomically(path, writeManifest(m));
    return path;
  }
  std::string dir;
};

TEST_F(ReductionLibrary, LoadsBothPassesAndSteps) {
  Rule rule =
      loadRule(OPTIM_REDUCTION_KERNELS, writeManifestFile(shrinkManifest()));
  ASSERT_TRUE(rule.reduceKernel() && rule.reducedKernel());
  EXPECT_EQ(rule.kernel(), nullptr);
  ASSERT_EQ(rule.info().reductions.size(), 1u);
  EXPECT_EQ(rule.info().reductions[0].kind, ReductionKind::Norm);

  // Two tensors, each scaled by 1 - lr / its own norm.
  std::vector<double> a = {3, 4, 0, 0, 0}, b = {1, 1, 1, 1}, ga(5), gb(4);
  OptimizerOptions o;
  o.chunkSize = 2;
  Optimizer opt(rule, {Param(a.data(), 5), Param(b.data(), 4)}, o);
  opt.step({Grad(ga.data(), 5), Grad(gb.data(), 4)});
  EXPECT_DOUBLE_EQ(a[0], 3 - 0.5 * 3 / 5);
  EXPECT_DOUBLE_EQ(a[1], 4 - 0.5 * 4 / 5);
  for (double x : b)
    EXPECT_DOUBLE_EQ(x, 1 - 0.5 / 2);
}

TEST_F(ReductionLibrary, AMissingFirstPassIsNamed) {
  Manifest m = shrinkManifest();
  m.info.name = "lonely";
  m.symbol = "optim_rule_lonely";
  try {
    loadRule(OPTIM_REDUCTION_KERNELS, writeManifestFile(m));
    ADD_FAILURE() << "loaded a rule without its first pass";
  } catch (const Error &e) {
    std::string what = e.what();
    EXPECT_NE(what.find("has no symbol 'optim_reduce_lonely', the first pass "
                        "of a rule with tensor reductions"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find(OPTIM_REDUCTION_KERNELS), std::string::npos) << what;
  }
}

TEST(ArtifactHash, TheRuntimesSHA256GivesTheStandardDigests) {
  // FIPS 180-4's examples, and lengths around the padding's block edges
  // (against Python's hashlib).
  EXPECT_EQ(detail::sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(detail::sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      detail::sha256Hex(
          "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(detail::sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_EQ(detail::sha256Hex(std::string(55, 'a')),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(detail::sha256Hex(std::string(56, 'a')),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(detail::sha256Hex(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(ArtifactHash, RoundTripsAndMalformedHashesAreRefused) {
  Manifest m = shrinkManifest();
  EXPECT_FALSE(json::parse(writeManifest(m)).contains("artifact_sha256"));
  m.artifactSha256 = detail::sha256Hex("library");
  m.ptxSha256 = detail::sha256Hex("ptx");
  Manifest back = readManifest(writeManifest(m), "m.json");
  EXPECT_EQ(back.artifactSha256, m.artifactSha256);
  EXPECT_EQ(back.ptxSha256, m.ptxSha256);
  json doc = json::parse(writeManifest(m));
  for (json bad : {json(42), json("ABC"), json(std::string(64, 'g')),
                   json(std::string(63, 'a'))}) {
    doc["artifact_sha256"] = bad;
    std::string why = message(doc.dump());
    EXPECT_NE(why.find("artifact_sha256"), std::string::npos) << why;
    EXPECT_NE(why.find("lamb.manifest.json"), std::string::npos) << why;
  }
}

TEST_F(ReductionLibrary, ALibraryThatIsNotTheManifestsIsRefused) {
  Manifest m = shrinkManifest();
  m.artifactSha256 = detail::sha256Hex("another library");
  std::string path = writeManifestFile(m);
  try {
    loadRule(OPTIM_REDUCTION_KERNELS, path);
    ADD_FAILURE() << "loaded a library that is not the manifest's";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "optim: the library '" OPTIM_REDUCTION_KERNELS
              "' does not match its manifest '" +
                  path + "' (SHA-256 " + libraryHash() +
                  ", the manifest records " + m.artifactSha256 +
                  "): one of them was replaced after compiling; recompile "
                  "it with optimc");
  }
  // A manifest without the hash: nothing ties it to the library.
  path = dir + "/nohash.manifest.json";
  writeFileAtomically(path, writeManifest(shrinkManifest()));
  try {
    loadRule(OPTIM_REDUCTION_KERNELS, path);
    ADD_FAILURE() << "loaded through a manifest without a hash";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "optim: manifest '" + path +
                  "' records no SHA-256 (\"artifact_sha256\") of '"
                  OPTIM_REDUCTION_KERNELS
                  "', so nothing shows that they belong together; recompile "
                  "it with optimc");
  }
}

} // namespace
