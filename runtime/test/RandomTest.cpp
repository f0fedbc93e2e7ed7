//===- RandomTest.cpp - the rng array of kernel ABI 8 ---------------------===//
//
// Random numbers drawn by rules (KernelABI.h, version 8, "Random numbers"):
// the runtime's half. Every kernel of a rule gets `rng` last: rng[0] the
// seed, rng[1 + c] the global index of chunk c's first coordinate. The
// hand-written kernels of RandomKernels.c (and the ones below, for the
// Trajectory and the CUDA executor against a fake driver) write what they
// were given, so that the tests check the array itself: the same global
// indices whatever the threads, chunk sizes and parameter groups, the same
// array for the forward and the VJP kernels, the seed restored by load().
// And the manifests' "random" (written, read, refused when malformed or
// when it disagrees with the library's optim_random_<name>).
//
//===----------------------------------------------------------------------===//

#include "optim/CApiSupport.h"
#include "optim/Cuda.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Safetensors.h"
#include "optim/Trajectory.h"
#include "optim/optim.h"

#include "../lib/Sha256.h"
#include "FakeDriver.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace optim;
using json = nlohmann::json;

namespace {

constexpr uint64_t kSeed = 0x9E3779B97F4A7C15ull;

template <typename F> std::string errorOf(F &&f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "no error";
}

uint64_t bitsOf(double x) {
  uint64_t b;
  std::memcpy(&b, &x, 8);
  return b;
}

Manifest stampManifest() {
  Manifest m;
  m.info.name = "stamp";
  m.info.dtype = DType::F64;
  m.info.random = {RandomKind::Normal, RandomKind::Uniform};
  m.symbol = "optim_rule_stamp";
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

Manifest stampsumManifest() {
  Manifest m;
  m.info.name = "stampsum";
  m.info.dtype = DType::F64;
  m.info.states = {{"s", 1, 0.0}};
  m.info.reductions = {{ReductionKind::Sum, false}};
  m.info.random = {RandomKind::Uniform};
  m.symbol = "optim_rule_stampsum";
  m.target = "x86_64-pc-linux-gnu";
  return m;
}

std::string readError(const std::string &text) {
  return errorOf([&] { readManifest(text, "noisy.manifest.json"); });
}

TEST(RandomManifest, RoundTripsInBodyOrderAndNoneIsAbsent) {
  Manifest m = stampManifest();
  m.info.random = {RandomKind::Uniform, RandomKind::Normal,
                   RandomKind::Normal};
  std::string text = writeManifest(m);
  json doc = json::parse(text);
  ASSERT_TRUE(doc.contains("random"));
  EXPECT_EQ(doc["random"], json::array({"uniform", "normal", "normal"}));
  EXPECT_EQ(doc["abi_version"], OPTIM_KERNEL_ABI_VERSION);
  Manifest back = readManifest(text, "m.json");
  EXPECT_EQ(back.info.random, m.info.random);
  EXPECT_EQ(writeManifest(back), text);
  EXPECT_EQ(randomDescriptor(back.info.random), "uniform,normal,normal");

  m.info.random.clear();
  text = writeManifest(m);
  EXPECT_FALSE(json::parse(text).contains("random"));
  EXPECT_TRUE(readManifest(text, "m.json").info.random.empty());
  doc = json::parse(text);
  doc["random"] = json::array();
  EXPECT_TRUE(readManifest(doc.dump(), "m.json").info.random.empty());
}

TEST(RandomManifest, MalformedDrawSitesNameTheManifest) {
  json doc = json::parse(writeManifest(stampManifest()));
  auto with = [&](json random) {
    json d = doc;
    d["random"] = std::move(random);
    return readError(d.dump());
  };
  EXPECT_EQ(with(json::array({"normal", "gamma"})),
            "optim: manifest 'noisy.manifest.json': random draw site 1 has an "
            "unknown kind 'gamma' (known: uniform, normal)");
  EXPECT_EQ(with(json::array({3})),
            "optim: manifest 'noisy.manifest.json': random draw site 0 is "
            "not \"uniform\" or \"normal\" (a string)");
  EXPECT_EQ(with("normal"),
            "optim: manifest 'noisy.manifest.json': \"random\" must be a list "
            "of \"uniform\" or \"normal\"");
  EXPECT_EQ(with(json::object({{"kind", "normal"}})),
            "optim: manifest 'noisy.manifest.json': \"random\" must be a list "
            "of \"uniform\" or \"normal\"");
}

TEST(RandomManifest, ManifestsOfABI7AreRefused) {
  // Their kernels take no rng: called with one more argument they would
  // run, but a rule that draws could not have been compiled for them.
  json doc = json::parse(writeManifest(stampManifest()));
  doc.erase("random");
  doc["abi_version"] = 7;
  EXPECT_EQ(readError(doc.dump()),
            "optim: manifest 'noisy.manifest.json': compiled for kernel ABI "
            "7, this runtime implements " +
                std::to_string(OPTIM_KERNEL_ABI_VERSION) + "; recompile it");
}

class RandomLibrary : public ::testing::Test {
protected:
  void SetUp() override {
    dir = ::testing::TempDir() + "optim-random-" + std::to_string(::getpid());
    ASSERT_EQ(system(("mkdir -p '" + dir + "'").c_str()), 0);
  }
  void TearDown() override { system(("rm -rf '" + dir + "'").c_str()); }
  static std::string libraryHash() {
    std::ifstream in(OPTIM_RANDOM_KERNELS, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    return detail::sha256Hex(bytes.str());
  }
  std::string writeManifestFile(Manifest m) {
    m.artifactSha256 = libraryHash();
    std::string path = dir + "/" + m.info.name + ".manifest.json";
    writeFileAtomically(path, writeManifest(m));
    return path;
  }
  Rule load(const Manifest &m) {
    return loadRule(OPTIM_RANDOM_KERNELS, writeManifestFile(m));
  }
  std::string dir;
};

TEST_F(RandomLibrary, LoadsTheDrawSites) {
  Rule stamp = load(stampManifest());
  ASSERT_TRUE(stamp.kernel());
  EXPECT_EQ(stamp.info().random,
            (std::vector<RandomKind>{RandomKind::Normal, RandomKind::Uniform}));
  Rule sum = load(stampsumManifest());
  ASSERT_TRUE(sum.reduceKernel() && sum.reducedKernel());
  EXPECT_EQ(sum.info().random, std::vector<RandomKind>{RandomKind::Uniform});
}

TEST_F(RandomLibrary, ADescriptorMismatchIsRefusedEitherWay) {
  // Other sites than the kernels draw.
  Manifest m = stampManifest();
  m.info.random = {RandomKind::Uniform, RandomKind::Normal};
  std::string path = writeManifestFile(m);
  EXPECT_EQ(errorOf([&] { loadRule(OPTIM_RANDOM_KERNELS, path); }),
            "optim: '" + path +
                "' lists the random draws 'uniform,normal' but the kernels "
                "of '" OPTIM_RANDOM_KERNELS
                "' were compiled to draw 'normal,uniform' (does the manifest "
                "belong to it?)");
  // None listed, but the kernels draw: the runtime may pass them no rng.
  m.info.random.clear();
  path = writeManifestFile(m);
  EXPECT_EQ(errorOf([&] { loadRule(OPTIM_RANDOM_KERNELS, path); }),
            "optim: '" + path +
                "' lists no random draws but the kernels of '" OPTIM_RANDOM_KERNELS
                "' were compiled to draw 'normal,uniform' (does the manifest "
                "belong to it?)");
  // Draws listed, but no descriptor in the library.
  m = stampManifest();
  m.info.name = "hidden";
  m.symbol = "optim_rule_hidden";
  path = writeManifestFile(m);
  EXPECT_EQ(errorOf([&] { loadRule(OPTIM_RANDOM_KERNELS, path); }),
            "optim: '" OPTIM_RANDOM_KERNELS
            "' has no symbol 'optim_random_hidden', which a rule that draws "
            "random numbers defines (does the manifest belong to it?)");
  // Without draws, the same kernel loads.
  m.info.random.clear();
  EXPECT_NO_THROW(load(m));
}

/// A model of 3 + 1 parameters in two groups: sizes 0, 1 and 7 (odd) in
/// the first, 13 in the second: global indices 0, 1..7 and 8..20.
struct Model {
  std::vector<std::vector<double>> p{{}, {0.5}, std::vector<double>(7, 1.0),
                                     std::vector<double>(13, 2.0)};
  std::vector<std::vector<double>> g{{}, {0.0}, std::vector<double>(7, 0.0),
                                     std::vector<double>(13, 0.0)};
  std::vector<ParamGroup> groups() {
    std::vector<ParamGroup> out(2);
    for (size_t i = 0; i < p.size(); ++i)
      out[i < 3 ? 0 : 1].params.push_back(
          Param(p[i].data(), int64_t(p[i].size())));
    return out;
  }
  std::vector<Grad> grads() {
    std::vector<Grad> out;
    for (auto &x : g)
      out.push_back(Grad(x.data(), int64_t(x.size())));
    return out;
  }
  /// Every parameter's bits, concatenated.
  std::vector<uint64_t> bits() const {
    std::vector<uint64_t> out;
    for (const auto &x : p)
      for (double v : x)
        out.push_back(bitsOf(v));
    return out;
  }
};

TEST_F(RandomLibrary, RngHoldsTheSeedAndGlobalIndicesWhateverThreadsAndChunks) {
  Rule stamp = load(stampManifest());
  std::vector<uint64_t> expected;
  for (uint64_t i = 0; i < 21; ++i)
    expected.push_back(kSeed ^ i);
  for (unsigned threads : {1u, 3u})
    for (int64_t chunk : {int64_t(2), int64_t(5), int64_t(32768)}) {
      Model model;
      OptimizerOptions o;
      o.threads = threads;
      o.chunkSize = chunk;
      o.seed = kSeed;
      Optimizer opt(stamp, model.groups(), o);
      EXPECT_EQ(opt.seed(), kSeed);
      ASSERT_TRUE(opt.step(model.grads()));
      EXPECT_EQ(model.bits(), expected)
          << threads << " threads, chunks of " << chunk;
    }
  // The default seed is 0.
  Model model;
  Optimizer opt(stamp, model.groups());
  EXPECT_EQ(opt.seed(), 0u);
  opt.step(model.grads());
  for (uint64_t i = 0; i < 21; ++i)
    EXPECT_EQ(model.bits()[i], i);
}

TEST_F(RandomLibrary, BothPassesOfARuleWithReductionsGetTheRng) {
  Rule rule = load(stampsumManifest());
  // Per tensor, the sum of its global indices: 0 (empty), 0, 1+..+7 = 28,
  // 8+..+20 = 182.
  const double sums[4] = {0, 0, 28, 182};
  for (unsigned threads : {1u, 3u})
    for (int64_t chunk : {int64_t(2), int64_t(5)}) {
      Model model;
      OptimizerOptions o;
      o.threads = threads;
      o.chunkSize = chunk;
      o.seed = kSeed;
      Optimizer opt(rule, model.groups(), o);
      ASSERT_TRUE(opt.step(model.grads()));
      uint64_t gi = 0;
      for (size_t t = 0; t < 4; ++t) {
        const double *s = static_cast<const double *>(opt.state(t, "s"));
        for (size_t i = 0; i < model.p[t].size(); ++i, ++gi) {
          EXPECT_EQ(bitsOf(model.p[t][i]), kSeed ^ gi);
          EXPECT_EQ(s[i], sums[t]) << "tensor " << t;
        }
      }
    }
}

TEST_F(RandomLibrary, SaveRecordsTheSeedAndLoadRestoresIt) {
  Rule rule = load(stampsumManifest());
  std::string ckpt = dir + "/ckpt.safetensors";
  {
    Model model;
    OptimizerOptions o;
    o.seed = ~uint64_t(0) - 1; // Beyond int64_t: all 20 digits.
    Optimizer opt(rule, model.groups(), o);
    opt.step(model.grads());
    opt.save(ckpt);
    EXPECT_EQ(SafetensorsFile::read(ckpt).metadata("seed"),
              "18446744073709551614");
  }
  Model model;
  OptimizerOptions o;
  o.seed = 3;
  Optimizer opt(rule, model.groups(), o);
  opt.load(ckpt);
  EXPECT_EQ(opt.seed(), ~uint64_t(0) - 1);
  EXPECT_EQ(opt.stepCount(), 1);
  // The next step draws with the restored seed.
  opt.step(model.grads());
  EXPECT_EQ(model.bits()[5], (~uint64_t(0) - 1) ^ 5);

  // A checkpoint written before seeds were recorded: the optimizer keeps
  // its own. One with a corrupt seed is refused, changing nothing.
  auto rewrite = [&](const char *seed, const char *abi = "7") {
    std::map<std::string, std::string> meta = {
        {"format", "optim-mlir optimizer state"},
        {"abi", abi},
        {"rule", "stampsum"},
        {"dtype", "f64"},
        {"states", "s"},
        {"params", "4"},
        {"step", "9"},
        {"skipped", "0"},
        {"hypers", "[[],[]]"}};
    if (seed)
      meta["seed"] = seed;
    std::vector<std::vector<double>> s = {
        {}, {1}, std::vector<double>(7, 2), std::vector<double>(13, 3)};
    std::vector<TensorRef> tensors;
    for (size_t t = 0; t < 4; ++t)
      tensors.push_back({"param" + std::to_string(t) + ".s", DType::F64,
                         {int64_t(s[t].size())}, s[t].data()});
    writeSafetensors(ckpt, tensors, meta);
  };
  rewrite(nullptr);
  Model other;
  o.seed = 77;
  Optimizer old(rule, other.groups(), o);
  old.load(ckpt);
  EXPECT_EQ(old.seed(), 77u);
  EXPECT_EQ(old.stepCount(), 9);
  for (const char *bad : {"-1", "18446744073709551616", "0x10", "", "1.5",
                          "12 ", "99999999999999999999999"}) {
    rewrite(bad);
    Model fresh;
    Optimizer victim(rule, fresh.groups(), o);
    EXPECT_EQ(errorOf([&] { victim.load(ckpt); }),
              "optim::Optimizer::load: '" + ckpt + "': corrupt seed '" + bad +
                  "' (a decimal integer in [0, 2^64) expected)");
    EXPECT_EQ(victim.seed(), 77u);
    EXPECT_EQ(victim.stepCount(), 0);
  }
  // A checkpoint of ABI 8 or later always records the seed: one without it
  // is damaged, and resuming it with another seed would change the draws.
  for (const char *abi : {"8", "9", "10"}) {
    rewrite(nullptr, abi);
    Model fresh;
    Optimizer victim(rule, fresh.groups(), o);
    EXPECT_EQ(errorOf([&] { victim.load(ckpt); }),
              "optim::Optimizer::load: '" + ckpt +
                  "': missing metadata 'seed' (a checkpoint of kernel ABI " +
                  abi + " records the seed of the rule's random numbers)");
    EXPECT_EQ(victim.stepCount(), 0);
  }
}

TEST_F(RandomLibrary, ThroughTheCApi) {
  auto handle = std::make_unique<optim_rule>();
  handle->rule = load(stampsumManifest());
  capi::trackHandle(handle.get(), capi::HandleKind::Rule);
  optim_rule *rule = handle.release();
  size_t n = 7;
  ASSERT_EQ(optim_rule_num_random(rule, &n), OPTIM_OK);
  EXPECT_EQ(n, 1u);
  const char *kind = nullptr;
  ASSERT_EQ(optim_rule_random(rule, 0, &kind), OPTIM_OK);
  EXPECT_STREQ(kind, "uniform");
  EXPECT_EQ(optim_rule_random(rule, 1, &kind), OPTIM_ERROR_NOT_FOUND);
  EXPECT_STREQ(optim_last_error(),
               "optim_rule_random: index 1 is out of range: rule 'stampsum' "
               "has 1 random draw sites");
  EXPECT_EQ(optim_rule_random(rule, 0, nullptr), OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(optim_rule_num_random(nullptr, &n), OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(optim_rule_num_random(rule, nullptr),
            OPTIM_ERROR_INVALID_ARGUMENT);

  optim_options options;
  std::memset(&options, 0xff, sizeof options);
  ASSERT_EQ(optim_options_init(&options), OPTIM_OK);
  EXPECT_EQ(options.seed, 0u);
  options.seed = kSeed;
  options.chunk_size = 3;
  options.threads = 2;
  std::vector<double> a = {9, 9, 9, 9}, b = {9, 9}, ga(4), gb(2);
  double *params[2] = {a.data(), b.data()};
  const double *grads[2] = {ga.data(), gb.data()};
  int64_t sizes[2] = {4, 2};
  optim_optimizer *opt = nullptr;
  ASSERT_EQ(optim_optimizer_create_f64(rule, params, sizes, 2, &options, &opt),
            OPTIM_OK)
      << optim_last_error();
  uint64_t seed = 0;
  ASSERT_EQ(optim_optimizer_seed(opt, &seed), OPTIM_OK);
  EXPECT_EQ(seed, kSeed);
  EXPECT_EQ(optim_optimizer_seed(opt, nullptr), OPTIM_ERROR_INVALID_ARGUMENT);
  int stepped = 0;
  ASSERT_EQ(optim_optimizer_step_f64(opt, grads, sizes, 2, &stepped),
            OPTIM_OK);
  for (uint64_t i = 0; i < 6; ++i)
    EXPECT_EQ(bitsOf(i < 4 ? a[i] : b[i - 4]), kSeed ^ i) << i;
  std::string ckpt = dir + "/capi.safetensors";
  ASSERT_EQ(optim_optimizer_save(opt, ckpt.c_str()), OPTIM_OK);
  optim_optimizer *other = nullptr;
  options.seed = 1;
  std::vector<double> c = {0, 0, 0, 0}, d = {0, 0};
  double *others[2] = {c.data(), d.data()};
  ASSERT_EQ(
      optim_optimizer_create_f64(rule, others, sizes, 2, &options, &other),
      OPTIM_OK);
  ASSERT_EQ(optim_optimizer_seed(other, &seed), OPTIM_OK);
  EXPECT_EQ(seed, 1u);
  ASSERT_EQ(optim_optimizer_load(other, ckpt.c_str()), OPTIM_OK);
  ASSERT_EQ(optim_optimizer_seed(other, &seed), OPTIM_OK);
  EXPECT_EQ(seed, kSeed);
  EXPECT_EQ(optim_optimizer_release(other), OPTIM_OK);
  EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK);
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

//===----------------------------------------------------------------------===//
// Trajectory: the forward and the VJP kernels get the same rng.
//===----------------------------------------------------------------------===//

/// What each kind of kernel saw: per global coordinate, seed ^ index (0
/// where never), and how many times it was covered.
struct Seen {
  std::vector<uint64_t> stamp;
  std::vector<int> count;
};
std::mutex seenMutex;
std::map<std::string, Seen> *seen = nullptr;
int64_t seenTotal = 0;

void record(const char *kind, const int64_t *lengths, int64_t begin,
            int64_t end, const uint64_t *rng) {
  std::lock_guard<std::mutex> lock(seenMutex);
  Seen &s = (*seen)[kind];
  s.stamp.resize(seenTotal);
  s.count.resize(seenTotal);
  for (int64_t c = begin; c < end; ++c)
    for (int64_t i = 0; i < lengths[c]; ++i) {
      uint64_t gi = rng[1 + c] + uint64_t(i);
      if (gi >= uint64_t(seenTotal)) {
        ADD_FAILURE() << kind << ": global index " << gi << " out of range";
        continue;
      }
      s.stamp[gi] = rng[0] ^ gi;
      ++s.count[gi];
    }
}

// A rule p -= lr * g with no state, f64, and its VJP (whose partials, one
// per chunk for lr, it leaves 0).
void fwd(void *const *, const int64_t *lengths, const int64_t *, int64_t begin,
         int64_t end, const double *, int64_t, const void *const *,
         const uint64_t *rng) {
  record("rule", lengths, begin, end, rng);
}
void vjp(void *const *, const int64_t *lengths, const int64_t *, int64_t begin,
         int64_t end, const double *, int64_t, const void *const *,
         void *partials, const uint64_t *rng) {
  record("vjp", lengths, begin, end, rng);
  for (int64_t c = begin; c < end; ++c)
    static_cast<double *>(partials)[c] = 0;
}
// With one reduction (sum): the two passes and the two VJP kernels
// (partials: H + 2R = 3 per chunk for the first, H = 1 for the second).
void reduce(void *const *, const int64_t *lengths, const int64_t *,
            int64_t begin, int64_t end, const double *, int64_t,
            const void *const *, double *partials, const double *,
            int64_t stage, const uint64_t *rng) {
  if (stage != 0) // Level 0 only: later stages write nothing.
    return;
  record("reduce", lengths, begin, end, rng);
  for (int64_t c = begin; c < end; ++c)
    partials[c] = 0;
}
void reducedRule(void *const *, const int64_t *lengths, const int64_t *,
                 int64_t begin, int64_t end, const double *, int64_t,
                 const void *const *, const double *, const uint64_t *rng) {
  record("reduced rule", lengths, begin, end, rng);
}
void reducedVJP(void *const *, const int64_t *lengths, const int64_t *,
                int64_t begin, int64_t end, const double *, int64_t,
                const void *const *, void *partials, const double *,
                const uint64_t *rng) {
  record("reduced vjp", lengths, begin, end, rng);
  for (int64_t c = begin; c < end; ++c)
    for (int j = 0; j < 3; ++j)
      static_cast<double *>(partials)[c * 3 + j] = 0;
}
void reductionsVJP(void *const *, const int64_t *lengths, const int64_t *,
                   int64_t begin, int64_t end, const double *, int64_t,
                   const void *const *, void *partials, const double *,
                   const uint64_t *rng) {
  record("reductions vjp", lengths, begin, end, rng);
  // H + R partials: lr's, then what flows back to rho (level 0: nothing).
  for (int64_t c = begin; c < end; ++c)
    for (int j = 0; j < 2; ++j)
      static_cast<double *>(partials)[c * 2 + j] = 0;
}

TEST(RandomTrajectory, ForwardAndVJPKernelsGetTheSameRng) {
  RuleInfo info;
  info.name = "drawn";
  info.dtype = DType::F64;
  info.hypers = {{"lr", 0.1, false}};
  info.random = {RandomKind::Normal};
  Rule plain(info, fwd, vjp, nullptr);
  info.reductions = {{ReductionKind::Sum, false}};
  Rule reduced(info, reduce, reducedRule, reducedVJP, reductionsVJP, nullptr);
  std::vector<int64_t> sizes = {0, 1, 7, 13};
  seenTotal = 21;
  std::vector<uint64_t> expected;
  for (uint64_t i = 0; i < 21; ++i)
    expected.push_back(kSeed ^ i);
  for (const Rule *rule : {&plain, &reduced})
    for (unsigned threads : {1u, 3u})
      for (int64_t chunk : {int64_t(2), int64_t(5), int64_t(32768)}) {
        std::map<std::string, Seen> log;
        seen = &log;
        TrajectoryOptions o;
        o.threads = threads;
        o.chunkSize = chunk;
        o.seed = kSeed;
        Trajectory traj(*rule, sizes, o);
        std::vector<std::vector<double>> g = {
            {}, {1}, std::vector<double>(7, 1), std::vector<double>(13, 1)};
        const int steps = 2;
        for (int s = 0; s < steps; ++s)
          traj.step({g[0].data(), g[1].data(), g[2].data(), g[3].data()});
        traj.backward(std::vector<std::vector<const void *>>(
            steps, std::vector<const void *>(4, nullptr)));
        seen = nullptr;
        std::vector<std::string> kinds =
            rule == &plain ? std::vector<std::string>{"rule", "vjp"}
                           : std::vector<std::string>{"reduce", "reduced rule",
                                                      "reduced vjp",
                                                      "reductions vjp"};
        ASSERT_EQ(log.size(), kinds.size());
        for (const std::string &k : kinds) {
          SCOPED_TRACE(k + ", " + std::to_string(threads) + " threads, chunks "
                       "of " + std::to_string(chunk));
          EXPECT_EQ(log[k].stamp, expected);
          EXPECT_EQ(log[k].count, std::vector<int>(21, steps));
        }
      }
}

TEST(RandomTrajectory, SetSeedChangesTheDrawsOnlyBetweenTapes) {
  RuleInfo info;
  info.name = "drawn";
  info.dtype = DType::F64;
  info.hypers = {{"lr", 0.1, false}};
  info.random = {RandomKind::Normal};
  Rule plain(info, fwd, vjp, nullptr);
  std::vector<int64_t> sizes = {3, 4};
  seenTotal = 7;
  TrajectoryOptions o;
  o.threads = 2;
  o.chunkSize = 2;
  o.seed = kSeed;
  Trajectory traj(plain, sizes, o);
  EXPECT_EQ(traj.seed(), kSeed);
  std::vector<double> g0(3, 1), g1(4, 1);
  std::map<std::string, Seen> log;
  seen = &log;
  traj.step({g0.data(), g1.data()});
  // A recorded step drew with the current seed: backward() must recompute
  // the same draws, so the seed cannot change under it.
  try {
    traj.setSeed(kSeed + 1);
    ADD_FAILURE() << "setSeed with a recorded step was accepted";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("1 recorded steps"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(traj.seed(), kSeed);
  traj.truncate();
  traj.setSeed(kSeed + 1);
  EXPECT_EQ(traj.seed(), kSeed + 1);
  log.clear();
  traj.step({g0.data(), g1.data()});
  traj.backward({{nullptr, nullptr}});
  seen = nullptr;
  for (const char *k : {"rule", "vjp"})
    for (uint64_t i = 0; i < 7; ++i) {
      EXPECT_EQ(log[k].stamp[i], (kSeed + 1) ^ i) << k << " at " << i;
      EXPECT_EQ(log[k].count[i], 1) << k << " at " << i;
    }
}

//===----------------------------------------------------------------------===//
// CUDA: the rng after the chunk table, the last launch argument.
//===----------------------------------------------------------------------===//

namespace gpu {
using namespace optim::cuda;

// gstamp (f32, one hyper lr): p[i] = rng[1 + c] + i; the seed each launch
// saw is logged. gsum (f32, one hyper, reductions "sum"): the first pass
// sums the chunk's global indices; the second sets p[i] = 1000 * reduced
// + rng[1 + c] + i.
CUfunction kStamp = reinterpret_cast<CUfunction>(0x5001);
CUfunction kSumReduce = reinterpret_cast<CUfunction>(0x5002);
CUfunction kSum = reinterpret_cast<CUfunction>(0x5003);
CUmodule kModule = reinterpret_cast<CUmodule>(0x5004);
struct State : fakecuda::Memory {
  std::map<std::string, std::string> globals; // name -> descriptor
  std::vector<uint64_t> seeds;                // rng[0] per launch
};
State *state = nullptr;

CUresult attr(int *v, int a, CUdevice) {
  *v = a == kAttrComputeCapabilityMajor ? 9 : 0;
  return 0;
}
CUresult setCurrent(CUcontext) { return 0; }
CUresult loadData(CUmodule *m, const void *) {
  *m = kModule;
  return 0;
}
CUresult getFunction(CUfunction *f, CUmodule, const char *name) {
  std::string n = name;
  if (n == "optim_rule_gstamp")
    *f = kStamp;
  else if (n == "optim_reduce_gsum")
    *f = kSumReduce;
  else if (n == "optim_rule_gsum")
    *f = kSum;
  else
    return kErrorNotFound;
  return 0;
}
CUresult getGlobal(CUdeviceptr *ptr, size_t *bytes, CUmodule,
                   const char *name) {
  auto it = state->globals.find(name);
  if (it == state->globals.end())
    return kErrorNotFound;
  *ptr = reinterpret_cast<CUdeviceptr>(it->second.c_str());
  *bytes = it->second.size() + 1;
  return 0;
}
CUresult streamCreate(CUstream *s, unsigned) {
  *s = reinterpret_cast<CUstream>(0x99);
  return 0;
}
CUresult asyncUpload(CUdeviceptr dst, const void *src, size_t bytes,
                     CUstream) {
  return fakecuda::htod(dst, src, bytes);
}
CUresult launch(CUfunction f, unsigned gx, unsigned, unsigned, unsigned,
                unsigned, unsigned, unsigned, CUstream, void **params,
                void **) {
  auto ptrs = *static_cast<float **const *>(params[0]);
  auto lengths = *static_cast<const int64_t *const *>(params[1]);
  int64_t begin = *static_cast<int64_t *>(params[3]);
  // ptrs, lengths, strides, begin, step, lr, [partials, reduced, stage |
  // reduced,] rng (KernelABI.h, version 9).
  size_t at = f == kStamp ? 6 : f == kSumReduce ? 9 : 7;
  auto rng = *static_cast<const uint64_t *const *>(params[at]);
  state->seeds.push_back(rng[0]);
  for (unsigned b = 0; b < gx; ++b) {
    int64_t c = begin + b;
    float *p = ptrs[c * 2];
    if (f == kSumReduce) {
      double sum = 0;
      for (int64_t i = 0; i < lengths[c]; ++i)
        sum += double(rng[1 + c] + uint64_t(i));
      (*static_cast<double *const *>(params[6]))[c] = sum;
      continue;
    }
    double reduced =
        f == kSum ? (*static_cast<const double *const *>(params[6]))[c] : 0;
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] = float(1000 * reduced + double(rng[1 + c] + uint64_t(i)));
  }
  return 0;
}

std::shared_ptr<const DriverAPI> driver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = attr;
  d->cuCtxSetCurrent = setCurrent;
  d->cuModuleLoadData = loadData;
  d->cuModuleGetFunction = getFunction;
  d->cuModuleGetGlobal = getGlobal;
  d->cuStreamCreate = streamCreate;
  d->cuMemcpyHtoDAsync = asyncUpload;
  d->cuLaunchKernel = launch;
  return d;
}

std::string manifest(const std::string &name, const std::string &random,
                     bool reductions) {
  json doc = {{"format", "optim-mlir rule manifest"},
              {"abi_version", OPTIM_KERNEL_ABI_VERSION},
              {"rule", name},
              {"symbol", "optim_rule_" + name},
              {"dtype", "f32"},
              {"target", "nvptx64-nvidia-cuda sm_90"},
              {"hyperparameters", json::array({{{"name", "lr"},
                                                {"default", 0.1},
                                                {"const", false}}})},
              {"states", json::array()},
              {"weights", json::array()}};
  if (!random.empty()) {
    json sites = json::array();
    std::stringstream in(random);
    for (std::string k; std::getline(in, k, ',');)
      sites.push_back(k);
    doc["random"] = sites;
  }
  if (reductions)
    doc["reductions"] =
        json::array({{{"kind", "sum"}, {"global", false}}});
  return doc.dump();
}

class CudaFakeRandom : public ::testing::Test {
protected:
  void SetUp() override {
    state = &s;
    fakecuda::memory = &s;
  }
  void TearDown() override {
    state = nullptr;
    fakecuda::memory = nullptr;
  }
  State s;
};

TEST_F(CudaFakeRandom, TheRngFollowsTheTableWhateverTheChunks) {
  s.globals["optim_random_gstamp"] = "normal";
  s.globals["optim_random_gsum"] = "uniform,uniform";
  s.globals["optim_reductions_gsum"] = "sum";
  auto dev = Device::open(driver());
  cuda::Rule stamp =
      dev->loadRule("CUBIN", manifest("gstamp", "normal", false), "g.json");
  EXPECT_EQ(stamp.info().random, std::vector<RandomKind>{RandomKind::Normal});
  cuda::Rule sum = dev->loadRule(
      "CUBIN", manifest("gsum", "uniform,uniform", true), "s.json");
  std::vector<int64_t> sizes = {0, 1, 7, 13};
  const double sums[4] = {0, 0, 28, 182};
  for (const cuda::Rule *rule : {&stamp, &sum})
    for (int64_t chunk : {int64_t(4), int64_t(8)}) {
      std::vector<Buffer> bufs;
      std::vector<DeviceTensor> params, grads;
      for (int64_t n : sizes) {
        bufs.emplace_back(dev, size_t(n) * 4);
        params.push_back({bufs.back().get(), n});
        grads.push_back({bufs.back().get(), n}); // never read
      }
      cuda::OptimizerOptions o;
      o.chunkSize = chunk;
      o.blockSize = 64;
      o.seed = kSeed;
      s.seeds.clear();
      {
        cuda::Optimizer opt(*rule, params, o);
        opt.step(grads);
        opt.step(grads);
        opt.synchronize();
      }
      EXPECT_EQ(s.seeds,
                std::vector<uint64_t>(rule == &sum ? 4 : 2, kSeed));
      uint64_t gi = 0;
      for (size_t t = 0; t < sizes.size(); ++t) {
        std::vector<float> host(sizes[t]);
        bufs[t].download(host.data(), host.size() * 4);
        for (int64_t i = 0; i < sizes[t]; ++i, ++gi)
          EXPECT_EQ(host[i], float((rule == &sum ? 1000 * sums[t] : 0) +
                                   double(gi)))
              << rule->info().name << " chunks of " << chunk << " tensor "
              << t << " element " << i;
      }
    }
}

TEST_F(CudaFakeRandom, ADescriptorMismatchIsRefusedEitherWay) {
  auto dev = Device::open(driver());
  // The module draws, the manifest lists other sites.
  s.globals["optim_random_gstamp"] = "normal,uniform";
  EXPECT_EQ(errorOf([&] {
              dev->loadRule("C", manifest("gstamp", "uniform,normal", false),
                            "g.json");
            }),
            "optim: 'g.json' lists the random draws 'uniform,normal' but its "
            "kernels were compiled to draw 'normal,uniform' (does the "
            "manifest belong to them?)");
  // The module draws, the manifest lists none.
  EXPECT_EQ(errorOf([&] {
              dev->loadRule("C", manifest("gstamp", "", false), "g.json");
            }),
            "optim: 'g.json' lists no random draws but its kernels were "
            "compiled to draw 'normal,uniform' (does the manifest belong to "
            "them?)");
  // The manifest lists draws, the module has no descriptor.
  s.globals.clear();
  EXPECT_EQ(errorOf([&] {
              dev->loadRule("C", manifest("gstamp", "normal", false),
                            "g.json");
            }),
            "optim: 'g.json' lists the random draws 'normal' but its module "
            "has no 'optim_random_gstamp', which a rule that draws random "
            "numbers defines (does the manifest belong to it?)");
  // Neither: a rule that draws nothing.
  EXPECT_NO_THROW(
      dev->loadRule("C", manifest("gstamp", "", false), "g.json"));
}
} // namespace gpu

} // namespace
