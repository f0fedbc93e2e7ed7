//===- ReductionManifestTest.cpp - manifests of rules with reductions -----===//
//
// The "reductions" of a rule manifest (KernelABI.h, version 6): written,
// read back, refused when malformed (naming the manifest), and loadRule
// with the library's two passes (ReductionKernels.c) or a clear error when
// the first is missing.
//
//===----------------------------------------------------------------------===//

#include "optim/Manifest.h"
#include "optim/Optimizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
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
                     "min)"),
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
  std::string writeManifestFile(const Manifest &m) {
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

} // namespace
