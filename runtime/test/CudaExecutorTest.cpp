//===- CudaExecutorTest.cpp - the CUDA launch path against a fake driver --===//
//
// The fake driver keeps "device" memory on the host and runs a host
// implementation of the GPU kernel ABI (KernelABI.h) at cuLaunchKernel: it
// decodes the launch exactly as a compiled kernel would (chunk table in
// "device" memory, grid = chunks, hyperparameters and step as arguments), so
// a wrong table, argument order or grid shows up as wrong numbers against an
// independent Adam reference computed on whole tensors. Tests on a real GPU
// skip, saying why, when there is no driver.
//
//===----------------------------------------------------------------------===//

#include "optim/Cuda.h"

#include "../lib/Sha256.h"
#include "FakeDriver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>

using namespace optim;
using namespace optim::cuda;

namespace {

struct FakeState : fakecuda::Memory {
  int launches = 0, tableUploads = 0;
  unsigned lastGrid = 0, lastBlock = 0;
  int64_t maxChunk = 0;
  CUresult failLaunch = CUDA_SUCCESS;
  // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK of the toy learned kernel (its
  // registers decide it on a real device).
  int toyMaxThreads = 400;
  std::string loadedImage;
  std::string requestedFunction;
  int major = 9, minor = 0;
  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, and what
  // cuOccupancyMaxActiveBlocksPerMultiprocessor answers (when the table
  // has it: occupancyDriver()) and the block it was asked about.
  int sms = 132, blocksPerSM = 1;
  int occupancyBlock = 0;
  // Images starting with this are refused (a driver older than the
  // toolkit that made the cubin says CUDA_ERROR_UNSUPPORTED_PTX_VERSION).
  std::string refusePrefix = "\x01";
  CUresult refuseWith = 222;
  std::vector<std::string> loadAttempts;
};
FakeState *fake = nullptr;
CUfunction kAdam = reinterpret_cast<CUfunction>(0x1234);
CUfunction kToy = reinterpret_cast<CUfunction>(0x2345);
CUfunction kVecToy = reinterpret_cast<CUfunction>(0x3456);
CUmodule kModule = reinterpret_cast<CUmodule>(0x5678);

CUresult fAttr(int *v, int attr, CUdevice) {
  *v = attr == kAttrMultiprocessorCount      ? fake->sms
       : attr == kAttrComputeCapabilityMajor ? fake->major
                                              : fake->minor;
  return 0;
}
CUresult fOccupancy(int *blocks, CUfunction f, int block, size_t shared) {
  if (f != kToy || shared)
    return 1;
  fake->occupancyBlock = block;
  *blocks = fake->blocksPerSM;
  return 0;
}
CUresult fFuncAttr(int *v, int attr, CUfunction f) {
  if (attr != kFuncAttrMaxThreadsPerBlock ||
      (f != kAdam && f != kToy && f != kVecToy))
    return 1; // CUDA_ERROR_INVALID_VALUE
  *v = f == kToy ? fake->toyMaxThreads : 1024;
  return 0;
}
CUresult fSetCurrent(CUcontext c) {
  return c == fakecuda::kContext ? 0 : 201;
}
CUresult fLoad(CUmodule *m, const void *image) {
  std::string bytes = static_cast<const char *>(image);
  fake->loadAttempts.push_back(bytes);
  if (bytes.rfind(fake->refusePrefix, 0) == 0)
    return fake->refuseWith;
  fake->loadedImage = bytes;
  *m = kModule;
  return 0;
}
CUresult fGetFunction(CUfunction *f, CUmodule m, const char *name) {
  fake->requestedFunction = name;
  if (m != kModule)
    return 500; // CUDA_ERROR_NOT_FOUND
  if (std::string(name) == "optim_rule_adam")
    *f = kAdam;
  else if (std::string(name) == "optim_rule_toy")
    *f = kToy;
  else if (std::string(name) == "optim_rule_vectoy")
    *f = kVecToy;
  else
    return 500;
  return 0;
}
CUresult fStreamCreate(CUstream *s, unsigned) {
  *s = reinterpret_cast<CUstream>(0x77);
  return 0;
}

/// Adam as the compiled kernel computes it (f32, IEEE, in formula order),
/// reading its launch as the GPU kernel ABI says.
CUresult fLaunch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                 unsigned bx, unsigned by, unsigned bz, unsigned shared,
                 CUstream stream, void **params, void **extra) {
  if (fake->failLaunch)
    return fake->failLaunch;
  if ((f != kAdam && f != kToy && f != kVecToy) || gy != 1 || gz != 1 || by != 1 ||
      bz != 1 || shared || extra ||
      stream != reinterpret_cast<CUstream>(0x77))
    return 1;
  ++fake->launches;
  fake->lastGrid = gx;
  fake->lastBlock = bx;
  if (f == kToy || f == kVecToy) {
    // A learned rule with one hyperparameter, a vector state h[2] and one
    // weights tensor w[1x3] (the argument after the hyperparameters):
    //   h[j] += w[j] g;  p -= scale (w[2] g + h[0] + h[1])
    // with h's component j at h + j * strides[c] + i (KernelABI.h). vectoy
    // is the update rule with w = (0.5, -2, 0) written into it (no weights
    // argument: rng follows the hyperparameter).
    auto ptrs = *static_cast<float **const *>(params[0]);
    auto lengths = *static_cast<const int64_t *const *>(params[1]);
    auto strides = *static_cast<const int64_t *const *>(params[2]);
    int64_t begin = *static_cast<int64_t *>(params[3]);
    float scale = *static_cast<float *>(params[5]);
    static const float fixed[3] = {0.5f, -2.0f, 0.0f};
    auto w = f == kVecToy ? fixed : *static_cast<const float *const *>(params[6]);
    for (unsigned blk = 0; blk < gx; ++blk) {
      int64_t c = begin + blk;
      float *p = ptrs[c * 3], *g = ptrs[c * 3 + 1], *h = ptrs[c * 3 + 2];
      for (int64_t i = 0; i < lengths[c]; ++i) {
        float &h0 = h[i], &h1 = h[strides[c] + i];
        h0 += w[0] * g[i];
        h1 += w[1] * g[i];
        p[i] -= scale * (w[2] * g[i] + h0 + h1);
      }
    }
    return 0;
  }
  auto ptrs = *static_cast<float **const *>(params[0]);
  auto lengths = *static_cast<const int64_t *const *>(params[1]);
  auto strides = *static_cast<const int64_t *const *>(params[2]);
  (void)strides;
  int64_t begin = *static_cast<int64_t *>(params[3]);
  int64_t t = *static_cast<int64_t *>(params[4]);
  float lr = *static_cast<float *>(params[5]);
  float b1 = *static_cast<float *>(params[6]);
  float b2 = *static_cast<float *>(params[7]);
  float eps = *static_cast<float *>(params[8]);
  for (unsigned blk = 0; blk < gx; ++blk) {
    int64_t c = begin + blk;
    float *p = ptrs[c * 4], *g = ptrs[c * 4 + 1], *m = ptrs[c * 4 + 2],
          *v = ptrs[c * 4 + 3];
    fake->maxChunk = std::max(fake->maxChunk, lengths[c]);
    for (int64_t i = 0; i < lengths[c]; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      float mhat = m[i] / (1 - std::pow(b1, float(t)));
      float vhat = v[i] / (1 - std::pow(b2, float(t)));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
  return 0;
}

std::shared_ptr<const DriverAPI> fakeDriver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = fAttr;
  d->cuCtxSetCurrent = fSetCurrent;
  d->cuModuleLoadData = fLoad;
  d->cuModuleGetFunction = fGetFunction;
  d->cuStreamCreate = fStreamCreate;
  d->cuLaunchKernel = fLaunch;
  d->cuFuncGetAttribute = fFuncAttr;
  return d;
}

/// fakeDriver() with the optional occupancy entry point.
std::shared_ptr<const DriverAPI> occupancyDriver() {
  auto d = std::make_shared<DriverAPI>(*fakeDriver());
  d->cuOccupancyMaxActiveBlocksPerMultiprocessor = fOccupancy;
  return d;
}

std::string manifest(const std::string &target = "nvptx64-nvidia-cuda sm_90",
                     int abi = OPTIM_KERNEL_ABI_VERSION) {
  return R"({"format": "optim-mlir rule manifest", "abi_version": )" +
         std::to_string(abi) + R"(, "rule": "adam",
    "symbol": "optim_rule_adam", "dtype": "f32", "target": ")" +
         target + R"(",
    "hyperparameters": [
      {"name": "lr", "default": 0.001, "const": false},
      {"name": "beta1", "default": 0.9, "const": false},
      {"name": "beta2", "default": 0.999, "const": false},
      {"name": "eps", "default": 1e-08, "const": false}],
    "states": [{"name": "m", "size": 1, "init": 0.0},
               {"name": "v", "size": 1, "init": 0.0}],
    "weights": []})";
}

/// A rule with hyperparameter scale, vector state h[2] and, for "toy",
/// weights w[1x3] (learned); "vectoy" is the update rule without them.
std::string toyManifest(const std::string &name = "toy") {
  bool learned = name == "toy";
  return R"({"format": "optim-mlir rule manifest", "abi_version": )" +
         std::to_string(OPTIM_KERNEL_ABI_VERSION) + R"(, "rule": ")" + name +
         R"(", "symbol": "optim_rule_)" + name + R"(", "dtype": "f32",
    "target": "nvptx64-nvidia-cuda sm_90",
    "hyperparameters": [{"name": "scale", "default": 0.5, "const": false}],
    "states": [{"name": "h", "size": 2, "init": 0.25}],
    "weights": )" +
         (learned ? R"([{"name": "w", "shape": [1, 3]}]})" : "[]}");
}

class CudaFake : public ::testing::Test {
protected:
  void SetUp() override { fake = &state; fakecuda::memory = &state; }
  void TearDown() override { fake = nullptr; fakecuda::memory = nullptr; }
  FakeState state;
};

/// Device memory of the fake: host memory from its cuMemAlloc.
std::vector<Buffer> upload(const std::shared_ptr<Device> &dev,
                           const std::vector<std::vector<float>> &host) {
  std::vector<Buffer> out;
  for (const auto &h : host) {
    Buffer b(dev, h.size() * 4);
    b.upload(h.data(), h.size() * 4);
    out.push_back(std::move(b));
  }
  return out;
}

/// What `f` throws, or "no error".
template <typename F> std::string message(F &&f) {
  try {
    f();
  } catch (const Error &e) {
    return std::string(e.what());
  }
  return std::string("no error");
}

/// Normal parameters and gradients of `sizes`, on the host and the device.
struct Model {
  std::vector<std::vector<float>> p, g;
  std::vector<Buffer> dp, dg;
  std::vector<DeviceTensor> params, grads;
};
Model randomModel(const std::shared_ptr<Device> &dev,
                  const std::vector<int64_t> &sizes, unsigned seed) {
  Model m;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  m.p.resize(sizes.size());
  m.g.resize(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t k = 0; k < sizes[i]; ++k) {
      m.p[i].push_back(normal(rng));
      m.g[i].push_back(normal(rng));
    }
  m.dp = upload(dev, m.p);
  m.dg = upload(dev, m.g);
  for (size_t i = 0; i < sizes.size(); ++i) {
    m.params.push_back({m.dp[i].get(), sizes[i]});
    m.grads.push_back({m.dg[i].get(), sizes[i]});
  }
  return m;
}

} // namespace

TEST_F(CudaFake, AdamOverAChunkTableMatchesAWholeTensorReference) {
  auto dev = Device::open(fakeDriver());
  EXPECT_EQ(dev->arch(), "sm_90");
  EXPECT_EQ(dev->name(), "Fake GPU");
  cuda::Rule adam = dev->loadRule("CUBIN-BYTES", manifest(), "adam.manifest");
  EXPECT_EQ(state.loadedImage, "CUBIN-BYTES");
  EXPECT_EQ(state.requestedFunction, "optim_rule_adam");

  // Awkward sizes: empty, one, below, at and above the chunk size.
  std::vector<int64_t> sizes = {0, 1, 1023, 1024, 1025, 5000, 7};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> p(sizes.size()), g(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t k = 0; k < sizes[i]; ++k) {
      p[i].push_back(normal(rng));
      g[i].push_back(normal(rng));
    }
  std::vector<Buffer> dp = upload(dev, p), dg = upload(dev, g);
  std::vector<DeviceTensor> params, grads;
  for (size_t i = 0; i < sizes.size(); ++i) {
    params.push_back({dp[i].get(), sizes[i]});
    grads.push_back({dg[i].get(), sizes[i]});
  }
  OptimizerOptions options;
  options.chunkSize = 1024;
  options.blockSize = 256;
  cuda::Optimizer opt(adam, params, options);
  opt.set("lr", 0.01);
  // 1+1+1+2+5+1 chunks (the empty tensor has none).
  EXPECT_EQ(opt.numChunks(), 0); // built at the first step
  const int steps = 25;
  for (int s = 0; s < steps; ++s)
    opt.step(grads);
  opt.synchronize();
  EXPECT_EQ(opt.numChunks(), 11);
  EXPECT_EQ(state.launches, steps); // one launch per step
  EXPECT_EQ(state.lastGrid, 11u);
  EXPECT_EQ(state.lastBlock, 256u);
  EXPECT_EQ(state.maxChunk, 1024);
  EXPECT_EQ(opt.stepCount(), steps);

  // Independent reference in double on whole tensors; f32 kernels agree to
  // a few ulps relative to the parameter's change.
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<float> got(sizes[i]), m(sizes[i]);
    dp[i].download(got.data(), got.size() * 4);
    opt.readState("m", i, m.data());
    for (int64_t k = 0; k < sizes[i]; ++k) {
      double x = p[i][k], mm = 0, vv = 0;
      for (int s = 1; s <= steps; ++s) {
        double gk = g[i][k];
        mm = 0.9 * mm + 0.1 * gk;
        vv = 0.999 * vv + 0.001 * gk * gk;
        x -= 0.01 * (mm / (1 - std::pow(0.9, s))) /
             (std::sqrt(vv / (1 - std::pow(0.999, s))) + 1e-8);
      }
      ASSERT_NEAR(got[k], x, 1e-4 * (1 + std::fabs(x)))
          << "tensor " << i << " element " << k;
      ASSERT_NEAR(m[k], mm, 1e-5 * (1 + std::fabs(mm)));
    }
  }
}

TEST_F(CudaFake, LearnedRulesGetWeightsAndComponentMajorVectorStates) {
  auto dev = Device::open(fakeDriver());
  cuda::Rule toy = dev->loadRule("X", toyManifest(), "toy.manifest");
  std::vector<int64_t> sizes = {1, 1023, 1025, 7};
  Model model = randomModel(dev, sizes, 11);
  const auto &p = model.p, &g = model.g;
  const auto &dp = model.dp;
  const auto &grads = model.grads;
  OptimizerOptions options;
  options.chunkSize = 1024;
  cuda::Optimizer opt(toy, model.params, options);
  // The automatic block: the largest whole number of warps the kernel's
  // registers allow (400 threads: 12 warps).
  EXPECT_EQ(opt.options().blockSize, 384u);
  EXPECT_EQ(opt.options().chunkSize, 1024);
  // Not set yet: no launch, and the message says which weights.
  EXPECT_EQ(message([&] { opt.step(grads); }),
            "optim: CUDA: rule 'toy' is learned: its weights 'w' were not "
            "set (Optimizer::setWeights)");
  EXPECT_EQ(state.launches, 0);
  const float w[3] = {0.5f, -2.0f, 0.125f};
  EXPECT_NE(message([&] { opt.setWeights("w", w, 2); })
                .find("weights 'w' of rule 'toy' have 3 elements, got 2"),
            std::string::npos);
  EXPECT_NE(message([&] { opt.setWeights("v", w, 3); })
                .find("rule 'toy' has no weights 'v'"),
            std::string::npos);
  opt.setWeights("w", w, 3);
  const int steps = 3;
  for (int s = 0; s < steps; ++s)
    opt.step(grads);
  opt.synchronize();
  EXPECT_EQ(state.launches, steps);
  EXPECT_EQ(opt.numChunks(), 1 + 1 + 2 + 1);
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<float> got(sizes[i]), h(2 * sizes[i]);
    dp[i].download(got.data(), got.size() * 4);
    opt.readState("h", i, h.data());
    for (int64_t k = 0; k < sizes[i]; ++k) {
      double x = p[i][k], h0 = 0.25, h1 = 0.25, gk = g[i][k];
      for (int s = 0; s < steps; ++s) {
        h0 += 0.5 * gk;
        h1 += -2.0 * gk;
        x -= 0.5 * (0.125 * gk + h0 + h1);
      }
      ASSERT_NEAR(got[k], x, 1e-5 * (1 + std::fabs(x))) << i << " " << k;
      ASSERT_NEAR(h[k], h0, 1e-5 * (1 + std::fabs(h0))) << i << " " << k;
      ASSERT_NEAR(h[sizes[i] + k], h1, 1e-5 * (1 + std::fabs(h1)))
          << i << " " << k;
    }
  }
}

// An update rule (no weights) with a vector state: its buffers hold N
// components per coordinate, component-major, and readState/writeState move
// all of them.
TEST_F(CudaFake, UpdateRulesWithVectorStatesAreComponentMajorToo) {
  auto dev = Device::open(fakeDriver());
  cuda::Rule rule = dev->loadRule("X", toyManifest("vectoy"), "vectoy.manifest");
  ASSERT_EQ(rule.info().states.size(), 1u);
  EXPECT_EQ(rule.info().states[0].size, 2);
  std::vector<int64_t> sizes = {0, 1, 1023, 1025, 7};
  Model model = randomModel(dev, sizes, 12);
  const auto &p = model.p, &g = model.g;
  const auto &dp = model.dp;
  const auto &grads = model.grads;
  OptimizerOptions options;
  options.chunkSize = 1024;
  cuda::Optimizer opt(rule, model.params, options);
  // The second component of tensor 4 starts elsewhere: written through
  // writeState, it is what the kernel reads.
  std::vector<float> h4(2 * 7, 0.25f);
  for (int k = 0; k < 7; ++k)
    h4[7 + k] = float(k);
  opt.writeState("h", 4, h4.data());
  EXPECT_EQ(message([&] { opt.writeState("m", 4, h4.data()); }),
            "optim: rule 'vectoy' has no state 'm'");
  EXPECT_EQ(message([&] { opt.writeState("h", 5, h4.data()); }),
            "optim: CUDA: no parameter tensor 5");
  EXPECT_EQ(message([&] { opt.writeState("h", 4, nullptr); }),
            "optim: CUDA: writeState('h', 4): null host pointer");
  opt.writeState("h", 0, nullptr); // empty: nothing to read
  const int steps = 3;
  for (int s = 0; s < steps; ++s)
    opt.step(grads);
  opt.synchronize();
  EXPECT_EQ(state.launches, steps);
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<float> got(sizes[i]), h(2 * sizes[i]);
    if (sizes[i])
      dp[i].download(got.data(), got.size() * 4);
    opt.readState("h", i, h.data());
    for (int64_t k = 0; k < sizes[i]; ++k) {
      double x = p[i][k], h0 = 0.25, h1 = i == 4 ? double(k) : 0.25;
      double gk = g[i][k];
      for (int s = 0; s < steps; ++s) {
        h0 += 0.5 * gk;
        h1 += -2.0 * gk;
        x -= 0.5 * (h0 + h1);
      }
      ASSERT_NEAR(got[k], x, 1e-5 * (1 + std::fabs(x))) << i << " " << k;
      ASSERT_NEAR(h[k], h0, 1e-5 * (1 + std::fabs(h0))) << i << " " << k;
      ASSERT_NEAR(h[sizes[i] + k], h1, 1e-5 * (1 + std::fabs(h1)))
          << i << " " << k;
    }
  }
}

TEST_F(CudaFake, AutomaticLaunchShapesFollowTheKernel) {
  auto dev = Device::open(fakeDriver());
  cuda::Rule adam = dev->loadRule("X", manifest(), "m");
  cuda::Rule toy = dev->loadRule("X", toyManifest(), "toy.manifest");
  std::vector<std::vector<float>> p = {std::vector<float>(10, 1.f)};
  auto dp = upload(dev, p), dg = upload(dev, p);
  // Update rules: 16384 coordinates a chunk, 256 threads a block.
  cuda::Optimizer a(adam, {{dp[0].get(), 10}});
  EXPECT_EQ(a.options().chunkSize, 16384);
  EXPECT_EQ(a.options().blockSize, 256u);
  a.step({{dg[0].get(), 10}});
  EXPECT_EQ(state.lastBlock, 256u);
  // Learned rules: the largest block in whole warps, 16 coordinates a
  // thread.
  for (auto [most, block] : {std::pair{400, 384u}, std::pair{1024, 1024u},
                             std::pair{2048, 1024u}, std::pair{32, 32u}}) {
    state.toyMaxThreads = most;
    cuda::Optimizer l(toy, {{dp[0].get(), 10}});
    EXPECT_EQ(l.options().blockSize, block) << most;
    EXPECT_EQ(l.options().chunkSize, 16 * int64_t(block)) << most;
  }
  // An explicit shape the kernel can take is taken as it is.
  state.toyMaxThreads = 400;
  OptimizerOptions o;
  o.chunkSize = 64;
  o.blockSize = 64;
  cuda::Optimizer l(toy, {{dp[0].get(), 10}}, o);
  EXPECT_EQ(l.options().chunkSize, 64);
  EXPECT_EQ(l.options().blockSize, 64u);
  // An explicit block the kernel's registers cannot take is refused up
  // front, not at the first launch.
  o.blockSize = 512;
  try {
    cuda::Optimizer bad(toy, {{dp[0].get(), 10}}, o);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: CUDA: blockSize 512 is more than the 384 "
                           "threads that rule 'toy' can be launched with (its "
                           "registers decide)");
  }
  // A bad explicit block is named as such, also with an automatic chunk.
  OptimizerOptions huge;
  huge.blockSize = 1u << 28;
  try {
    cuda::Optimizer bad(toy, {{dp[0].get(), 10}}, huge);
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: CUDA: blockSize must be 0 (automatic) or a "
                           "multiple of 32 in [32, 1024], got 268435456");
  }
  // A kernel that cannot run one warp per block is refused by name.
  state.toyMaxThreads = 20;
  try {
    cuda::Optimizer bad(toy, {{dp[0].get(), 10}});
    ADD_FAILURE() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: CUDA: rule 'toy' cannot be launched with "
                           "even one warp per block (the driver allows 20 "
                           "threads)");
  }
}

TEST(CudaChunks, BalancedChunksFillWholeWaves) {
  // l2l on 10M coordinates, blocks of 384, one an SM on 132 SMs: 16 a
  // thread make 1,628 chunks, 13 waves of 16 rounds (208); 11 a thread,
  // 2,368 chunks, 18 waves of 11 (198, and 10M / (384 * 132) = 197.3).
  EXPECT_EQ(balancedChunkSize({10000000}, 384, 16, 132), 384 * 11);
  // 500k: one wave of 10 rounds (1, 2 and 5 a thread also make 10 rounds,
  // in more waves, each with its copy of the weights).
  EXPECT_EQ(balancedChunkSize({500000}, 384, 16, 132), 3840);
  // A few coordinates: one round.
  EXPECT_EQ(balancedChunkSize({1000}, 384, 16, 132), 384);
  // Exact waves and no work keep the largest; so does no concurrency.
  EXPECT_EQ(balancedChunkSize({132 * 6144 * 12}, 384, 16, 132), 6144);
  EXPECT_EQ(balancedChunkSize({}, 384, 16, 132), 6144);
  EXPECT_EQ(balancedChunkSize({10000000}, 384, 16, 0), 6144);
  // Against brute force, on many tensors (each one's last chunk partial).
  std::vector<int64_t> sizes;
  for (int i = 0; i < 148; ++i)
    sizes.push_back((int64_t(1) << (10 + i % 12)) + 3 * i);
  for (int64_t concurrent : {1, 7, 132, 264}) {
    auto cost = [&](int64_t rounds) {
      int64_t n = 0;
      for (int64_t s : sizes)
        n += (s + 384 * rounds - 1) / (384 * rounds);
      return (n + concurrent - 1) / concurrent * (10 * rounds + 1);
    };
    const int64_t chunk = balancedChunkSize(sizes, 384, 16, concurrent);
    ASSERT_EQ(chunk % 384, 0);
    for (int64_t r = 1; r <= 16; ++r) {
      EXPECT_LE(cost(chunk / 384), cost(r)) << concurrent << " " << r;
      if (r > chunk / 384)
        EXPECT_LT(cost(chunk / 384), cost(r)) << concurrent << " " << r;
    }
  }
}

TEST_F(CudaFake, LearnedChunksAreBalancedOverTheDevicesBlocks) {
  auto dev = Device::open(occupancyDriver());
  cuda::Rule toy = dev->loadRule("X", toyManifest(), "toy.manifest");
  Buffer p(dev, 1000000 * 4), g(dev, 1000000 * 4);
  // 400 threads allowed: blocks of 384; two blocks an SM on 132 SMs.
  state.blocksPerSM = 2;
  cuda::Optimizer opt(toy, {{p.get(), 1000000}});
  EXPECT_EQ(state.occupancyBlock, 384);
  EXPECT_EQ(opt.options().chunkSize,
            balancedChunkSize({1000000}, 384, 16, 264));
  EXPECT_NE(opt.options().chunkSize, 6144);
  // A driver that cannot answer leaves 16 coordinates a thread.
  state.sms = 0;
  cuda::Optimizer plain(toy, {{p.get(), 1000000}});
  EXPECT_EQ(plain.options().chunkSize, 6144);
  // An explicit chunk size is kept.
  state.sms = 132;
  OptimizerOptions o;
  o.chunkSize = 1024;
  cuda::Optimizer fixed(toy, {{p.get(), 1000000}}, o);
  EXPECT_EQ(fixed.options().chunkSize, 1024);
}

TEST_F(CudaFake, TableIsRebuiltOnlyWhenGradientsMove) {
  auto dev = Device::open(fakeDriver());
  cuda::Rule adam = dev->loadRule("X", manifest(), "m");
  std::vector<std::vector<float>> p = {std::vector<float>(10, 1.f)};
  std::vector<std::vector<float>> g = {std::vector<float>(10, 0.5f)};
  auto dp = upload(dev, p), dg = upload(dev, g), dg2 = upload(dev, g);
  cuda::Optimizer opt(adam, {{dp[0].get(), 10}});
  opt.step({{dg[0].get(), 10}});
  opt.step({{dg[0].get(), 10}});
  opt.step({{dg2[0].get(), 10}});
  opt.synchronize();
  std::vector<float> got(10);
  dp[0].download(got.data(), 40);
  // Three Adam steps with a constant gradient: each moves p by about lr.
  EXPECT_NEAR(got[0], 1.f - 3e-3f, 1e-5f);
}

TEST_F(CudaFake, FailingCallsAreNamedAndChangeNothing) {
  auto dev = Device::open(fakeDriver());
  cuda::Rule adam = dev->loadRule("X", manifest(), "m");
  auto dp = upload(dev, {std::vector<float>(8, 1.f)});
  auto dg = upload(dev, {std::vector<float>(8, 1.f)});
  cuda::Optimizer opt(adam, {{dp[0].get(), 8}});
  state.failLaunch = 700;
  try {
    opt.step({{dg[0].get(), 8}});
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: CUDA: cuLaunchKernel failed: "
                           "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory "
                           "access was encountered)");
  }
  EXPECT_EQ(opt.stepCount(), 0);
  state.failLaunch = CUDA_SUCCESS;
  EXPECT_THROW(opt.step({}), Error);
  EXPECT_THROW(opt.step({{dg[0].get(), 7}}), Error);
  EXPECT_THROW(opt.step({{dg[0].get() + 2, 8}}), Error); // misaligned
  EXPECT_THROW(opt.set("nope", 1), Error);
  EXPECT_THROW(opt.readState("nope", 0, nullptr), Error);
  EXPECT_EQ(opt.stepCount(), 0);
  auto make = [&](int64_t chunk, unsigned block) {
    OptimizerOptions o;
    o.chunkSize = chunk;
    o.blockSize = block;
    cuda::Optimizer bad(adam, {{dp[0].get(), 8}}, o);
  };
  EXPECT_THROW(make(102, 256), Error);  // not a multiple of 4
  EXPECT_THROW(make(1024, 100), Error); // not a multiple of 32
  EXPECT_NO_THROW(make(1024, 1024));
}

namespace {
// A rule with two tensor reductions (KernelABI.h, version 6), f32, one
// hyperparameter lr, no state:
//   let wn = tensor_norm(p); let gs = global_sum(g)
//   p -= lr * wn * g + 1e-3 * gs
// optim_reduce_lars writes each chunk's partials (sum of p^2, sum of g) in
// double; optim_rule_lars reads reduced[c * 2 + r] after the hypers.
CUfunction kLarsReduce = reinterpret_cast<CUfunction>(0x3456);
CUfunction kLars = reinterpret_cast<CUfunction>(0x4567);
struct LarsLog {
  std::vector<std::string> calls;
  bool refuseReduceFunction = false;
  CUresult failReduceLaunch = CUDA_SUCCESS;
  /// optim_reductions_lars, as the module's global (empty: none).
  std::string descriptor = "norm,sum@global";
  /// reduced[c * 2] as each chunk's first pass read it (NaN: null).
  std::vector<double> firstSlotAtStage0;
};
LarsLog *larsLog = nullptr;

CUresult fLarsGetGlobal(CUdeviceptr *ptr, size_t *bytes, CUmodule m,
                        const char *name) {
  if (m != kModule || std::string(name) != "optim_reductions_lars" ||
      larsLog->descriptor.empty())
    return kErrorNotFound;
  // "Device" memory is host memory: the string itself, with its NUL.
  *ptr = reinterpret_cast<CUdeviceptr>(larsLog->descriptor.c_str());
  *bytes = larsLog->descriptor.size() + 1;
  return 0;
}

CUresult fLarsGetFunction(CUfunction *f, CUmodule m, const char *name) {
  larsLog->calls.push_back(std::string("get ") + name);
  if (m != kModule)
    return 500;
  std::string n = name;
  if (n == "optim_rule_lars")
    *f = kLars;
  else if (n == "optim_reduce_lars" && !larsLog->refuseReduceFunction)
    *f = kLarsReduce;
  else
    return 500; // CUDA_ERROR_NOT_FOUND
  return 0;
}
CUresult fLarsLaunch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                     unsigned bx, unsigned, unsigned, unsigned shared,
                     CUstream, void **params, void **extra) {
  if (gy != 1 || gz != 1 || shared || extra || bx != 128)
    return 1;
  auto ptrs = *static_cast<float **const *>(params[0]);
  auto lengths = *static_cast<const int64_t *const *>(params[1]);
  int64_t begin = *static_cast<int64_t *>(params[3]);
  float lr = *static_cast<float *>(params[5]);
  if (f == kLarsReduce) {
    larsLog->calls.push_back("launch reduce");
    if (larsLog->failReduceLaunch)
      return larsLog->failReduceLaunch;
    // partials, reduced, stage, rng (KernelABI.h, version 9): every
    // reduction of lars has level 0, so stage 0 is the only launch.
    if (*static_cast<int64_t *>(params[8]) != 0)
      return 1;
    auto partials = *static_cast<double *const *>(params[6]);
    auto reducedIn = *static_cast<const double *const *>(params[7]);
    for (unsigned blk = 0; blk < gx; ++blk) {
      int64_t c = begin + blk;
      larsLog->firstSlotAtStage0.push_back(
          reducedIn ? reducedIn[c * 2] : std::nan(""));
      const float *p = ptrs[c * 2], *g = ptrs[c * 2 + 1];
      double sq = 0, sum = 0;
      for (int64_t i = 0; i < lengths[c]; ++i) {
        sq += double(p[i]) * double(p[i]);
        sum += double(g[i]);
      }
      partials[c * 2] = sq;
      partials[c * 2 + 1] = sum;
    }
    return 0;
  }
  if (f != kLars)
    return 1;
  larsLog->calls.push_back("launch rule");
  auto reduced = *static_cast<const double *const *>(params[6]);
  for (unsigned blk = 0; blk < gx; ++blk) {
    int64_t c = begin + blk;
    float *p = ptrs[c * 2];
    const float *g = ptrs[c * 2 + 1];
    float wn = float(reduced[c * 2]), gs = float(reduced[c * 2 + 1]);
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] -= lr * wn * g[i] + 1e-3f * gs;
  }
  return 0;
}
CUresult fLarsSync(CUstream) {
  larsLog->calls.push_back("sync");
  return 0;
}
CUresult fLarsDtoH(void *dst, CUdeviceptr src, size_t bytes) {
  larsLog->calls.push_back("download");
  return fakecuda::dtoh(dst, src, bytes);
}
CUresult fLarsHtoDAsync(CUdeviceptr dst, const void *src, size_t bytes,
                        CUstream) {
  larsLog->calls.push_back("upload reduced");
  return fakecuda::htod(dst, src, bytes);
}

std::shared_ptr<const DriverAPI> larsDriver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = fAttr;
  d->cuCtxSetCurrent = fSetCurrent;
  d->cuModuleLoadData = fLoad;
  d->cuModuleGetFunction = fLarsGetFunction;
  d->cuModuleGetGlobal = fLarsGetGlobal;
  d->cuStreamCreate = fStreamCreate;
  d->cuLaunchKernel = fLarsLaunch;
  d->cuStreamSynchronize = fLarsSync;
  d->cuMemcpyDtoH = fLarsDtoH;
  d->cuMemcpyHtoDAsync = fLarsHtoDAsync;
  return d;
}

std::string larsManifest() {
  return R"({"format": "optim-mlir rule manifest", "abi_version": )" +
         std::to_string(OPTIM_KERNEL_ABI_VERSION) + R"(, "rule": "lars",
    "symbol": "optim_rule_lars", "dtype": "f32",
    "target": "nvptx64-nvidia-cuda sm_90",
    "hyperparameters": [{"name": "lr", "default": 0.01, "const": false}],
    "states": [], "weights": [],
    "reductions": [{"kind": "norm", "global": false},
                   {"kind": "sum", "global": true}]})";
}
} // namespace

TEST_F(CudaFake, RulesWithTensorReductionsRunBothPassesAndCombineInOrder) {
  LarsLog log;
  larsLog = &log;
  // Unset after everything that calls the driver (the optimizer's
  // destructor synchronizes) and before `log` goes.
  struct Unset {
    ~Unset() { larsLog = nullptr; }
  } unset;
  auto dev = Device::open(larsDriver());
  cuda::Rule lars = dev->loadRule("CUBIN", larsManifest(), "lars.manifest");
  EXPECT_NE(lars.reduceFunction(), nullptr);
  EXPECT_EQ(lars.info().reductions.size(), 2u);

  // Tensors of 1, 3 and 0 chunks (chunk size 64), and one of 1.
  std::vector<int64_t> sizes = {5, 130, 0, 64};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> p(sizes.size()), g(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t k = 0; k < sizes[i]; ++k) {
      p[i].push_back(normal(rng));
      g[i].push_back(normal(rng));
    }
  std::vector<Buffer> dp = upload(dev, p), dg = upload(dev, g);
  std::vector<DeviceTensor> params, grads;
  for (size_t i = 0; i < sizes.size(); ++i) {
    params.push_back({dp[i].get(), sizes[i]});
    grads.push_back({dg[i].get(), sizes[i]});
  }
  OptimizerOptions options;
  options.chunkSize = 64;
  options.blockSize = 128;
  cuda::Optimizer opt(lars, params, options);
  const int steps = 3;
  for (int s = 0; s < steps; ++s) {
    log.calls.clear();
    opt.step(grads);
    // The first pass, its partials to the host once it is done, the
    // combined values back, then the rule.
    std::vector<std::string> want = {"launch reduce", "sync", "download",
                                     "upload reduced", "launch rule"};
    if (s == 0) // buildTable waits for the stream first.
      want.insert(want.begin(), "sync");
    ASSERT_EQ(log.calls, want) << "step " << s;
  }
  opt.synchronize();
  EXPECT_EQ(opt.numChunks(), 5);

  // Reference on whole tensors in double: the norm of each tensor's p and
  // the sum of every g, before each step; then the f32 update.
  double gsum = 0;
  for (const auto &gi : g)
    for (float x : gi)
      gsum += x;
  std::vector<std::vector<float>> ref = p;
  for (int s = 0; s < steps; ++s)
    for (size_t i = 0; i < sizes.size(); ++i) {
      double sq = 0;
      for (float x : ref[i])
        sq += double(x) * double(x);
      float wn = float(std::sqrt(sq)), gs = float(gsum);
      for (int64_t k = 0; k < sizes[i]; ++k)
        ref[i][k] -= 0.01f * wn * g[i][k] + 1e-3f * gs;
    }
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<float> got(sizes[i]);
    dp[i].download(got.data(), got.size() * 4);
    for (int64_t k = 0; k < sizes[i]; ++k)
      ASSERT_NEAR(got[k], ref[i][k], 1e-5 * (1 + std::fabs(ref[i][k])))
          << "tensor " << i << " element " << k;
  }
}

// The shape values rows() and cols() (KernelABI.h, version 11), with the
// lars kernels: the host writes them into the reduced values before the
// first pass, which reads them as every later kernel does; a rule whose
// reductions are all shape values runs the rule kernel only.
std::string shapeValuesManifest(const std::string &reductions) {
  std::string m = larsManifest();
  size_t at = m.find(R"("reductions": [)");
  return m.substr(0, at) + R"("reductions": [)" + reductions + "]}";
}

TEST_F(CudaFake, ShapeValuesAreFilledOnTheHostBeforeTheFirstPass) {
  LarsLog log;
  larsLog = &log;
  struct Unset {
    ~Unset() { larsLog = nullptr; }
  } unset;
  auto dev = Device::open(larsDriver());
  // Tensors [2, 3], [13, 10] (3 chunks of 64), [5] without a shape, and
  // [4, 4, 4].
  std::vector<int64_t> sizes = {6, 130, 5, 64};
  std::vector<std::vector<int64_t>> shapes = {{2, 3}, {13, 10}, {}, {4, 4, 4}};
  const int64_t rows[] = {2, 13, 1, 4}, cols[] = {3, 10, 5, 4};
  for (bool withSum : {true, false}) {
    SCOPED_TRACE(withSum ? "rows, sum@global" : "rows, cols");
    log.descriptor = withSum ? "rows,sum@global" : "rows,cols";
    cuda::Rule rule = dev->loadRule(
        "CUBIN",
        shapeValuesManifest(withSum ? R"({"kind": "rows", "global": false},
                                        {"kind": "sum", "global": true})"
                                    : R"({"kind": "rows", "global": false},
                                        {"kind": "cols", "global": false})"),
        "lars.manifest");
    std::vector<std::vector<float>> p(sizes.size()), g(sizes.size());
    double gsum = 0;
    for (size_t i = 0; i < sizes.size(); ++i)
      for (int64_t k = 0; k < sizes[i]; ++k) {
        p[i].push_back(0.25f * float(k % 7));
        g[i].push_back(0.5f - 0.125f * float(k % 5));
        gsum += g[i].back();
      }
    std::vector<Buffer> dp = upload(dev, p), dg = upload(dev, g);
    std::vector<DeviceTensor> params, grads;
    for (size_t i = 0; i < sizes.size(); ++i) {
      params.push_back({dp[i].get(), sizes[i], shapes[i]});
      grads.push_back({dg[i].get(), sizes[i]});
    }
    OptimizerOptions options;
    options.chunkSize = 64;
    options.blockSize = 128;
    cuda::Optimizer opt(rule, params, options);
    for (int s = 0; s < 2; ++s) {
      log.calls.clear();
      log.firstSlotAtStage0.clear();
      opt.step(grads);
      std::vector<std::string> want =
          withSum ? std::vector<std::string>{"sync", "upload reduced",
                                             "launch reduce", "sync",
                                             "download", "upload reduced",
                                             "launch rule"}
                  : std::vector<std::string>{"sync", "upload reduced",
                                             "launch rule"};
      if (s == 0) // buildTable waits for the stream first.
        want.insert(want.begin(), "sync");
      ASSERT_EQ(log.calls, want) << "step " << s;
      if (withSum)
        EXPECT_EQ(log.firstSlotAtStage0,
                  (std::vector<double>{2, 13, 13, 13, 1, 4}));
    }
    opt.synchronize();
    // optim_rule_lars reads reduced[c * 2] as its norm and reduced[c * 2 +
    // 1] as its sum: p -= lr * rows * g + 1e-3 * (sum or cols).
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<float> got(sizes[i]);
      dp[i].download(got.data(), got.size() * 4);
      for (int64_t k = 0; k < sizes[i]; ++k) {
        float want = p[i][k];
        float second = withSum ? float(gsum) : float(cols[i]);
        for (int s = 0; s < 2; ++s)
          want -= 0.01f * float(rows[i]) * g[i][k] + 1e-3f * second;
        ASSERT_EQ(got[k], want) << "tensor " << i << " element " << k;
      }
    }
  }
  // A shape must be one of the tensor's elements.
  std::vector<std::vector<float>> p = {{1, 2, 3, 4, 5, 6}};
  std::vector<Buffer> dp = upload(dev, p);
  log.descriptor = "rows,cols";
  cuda::Rule rule = dev->loadRule(
      "CUBIN",
      shapeValuesManifest(R"({"kind": "rows", "global": false},
                             {"kind": "cols", "global": false})"),
      "lars.manifest");
  for (std::vector<int64_t> bad :
       {std::vector<int64_t>{2, 2}, std::vector<int64_t>{-2, -3}}) {
    try {
      cuda::Optimizer opt(rule, {{dp[0].get(), 6, bad}}, OptimizerOptions());
      ADD_FAILURE() << "accepted a shape of another size";
    } catch (const Error &e) {
      EXPECT_STREQ(e.what(),
                   "optim: CUDA: parameter tensor 0 has a shape of 2 "
                   "dimensions that is not one of its 6 elements (a negative "
                   "dimension, more than 64 dimensions or another element "
                   "count)");
    }
  }
}

TEST_F(CudaFake, TensorReductionFailuresNameTheFailingCall) {
  LarsLog log;
  larsLog = &log;
  // Unset after everything that calls the driver (the optimizer's
  // destructor synchronizes) and before `log` goes.
  struct Unset {
    ~Unset() { larsLog = nullptr; }
  } unset;
  auto dev = Device::open(larsDriver());
  // A module without the first pass.
  log.refuseReduceFunction = true;
  try {
    dev->loadRule("CUBIN", larsManifest(), "lars.manifest");
    ADD_FAILURE() << "loaded a rule without optim_reduce_lars";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(
                  "cuModuleGetFunction(optim_reduce_lars) failed"),
              std::string::npos)
        << e.what();
  }
  log.refuseReduceFunction = false;
  cuda::Rule lars = dev->loadRule("CUBIN", larsManifest(), "lars.manifest");
  std::vector<std::vector<float>> p = {{1, 2, 3, 4}}, g = {{1, 1, 1, 1}};
  std::vector<Buffer> dp = upload(dev, p), dg = upload(dev, g);
  OptimizerOptions options;
  options.blockSize = 128;
  cuda::Optimizer opt(lars, {{dp[0].get(), 4}}, options);
  log.failReduceLaunch = 700;
  try {
    opt.step({{dg[0].get(), 4}});
    ADD_FAILURE() << "a failing first pass went unnoticed";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(),
                 "optim: CUDA: cuLaunchKernel(optim_reduce_lars) failed: "
                 "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was "
                 "encountered)");
  }
  // Nothing else ran: no rule launch, p unchanged, t not advanced.
  EXPECT_EQ(std::count(log.calls.begin(), log.calls.end(), "launch rule"), 0);
  EXPECT_EQ(opt.stepCount(), 0);
  float got[4];
  dp[0].download(got, sizeof got);
  EXPECT_EQ(got[3], 4.0f);
  // Weights and reductions together are no GPU rule kernel.
  std::string both = larsManifest();
  both.replace(both.find(R"("weights": [])"), 13,
               R"("weights": [{"name": "w", "shape": [2]}])");
  try {
    dev->loadRule("CUBIN", both, "both.manifest");
    ADD_FAILURE() << "loaded a rule with weights and reductions";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("has weights and tensor reductions"),
              std::string::npos)
        << e.what();
  }
}

// The kernels write and read R values per chunk: a manifest that lists
// other reductions than they were compiled for (fewer would leave the
// partials too small, and the reduce kernel would write past them) is
// refused before anything runs, as the CPU loader refuses it.
TEST_F(CudaFake, RefusesManifestsThatMisstateTheTensorReductions) {
  LarsLog log;
  larsLog = &log;
  struct Unset {
    ~Unset() { larsLog = nullptr; }
  } unset;
  auto dev = Device::open(larsDriver());
  auto message = [&](const std::string &m) {
    try {
      dev->loadRule("CUBIN", m, "lars.manifest");
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto listing = [](const std::string &reductions) {
    std::string m = larsManifest();
    size_t at = m.find(R"("reductions": [)");
    return m.substr(0, at) + R"("reductions": [)" + reductions + "]}";
  };
  EXPECT_EQ(message(listing(R"({"kind": "norm", "global": false})")),
            "optim: 'lars.manifest' lists the tensor reductions 'norm' but "
            "its kernels were compiled for 'norm,sum@global' (does the "
            "manifest belong to them?)");
  EXPECT_EQ(message(listing(R"({"kind": "sum", "global": true},
                               {"kind": "norm", "global": false})")),
            "optim: 'lars.manifest' lists the tensor reductions "
            "'sum@global,norm' but its kernels were compiled for "
            "'norm,sum@global' (does the manifest belong to them?)");
  EXPECT_EQ(message(listing("")),
            "optim: 'lars.manifest' lists no tensor reductions but its "
            "kernels were compiled for 'norm,sum@global' (does the manifest "
            "belong to them?)");
  // A module without the descriptor: its first pass still gives it away.
  log.descriptor.clear();
  EXPECT_EQ(message(listing("")),
            "optim: 'lars.manifest' lists no tensor reductions but its "
            "module has 'optim_reduce_lars', the first pass of a rule with "
            "tensor reductions (does the manifest belong to it?)");
  EXPECT_EQ(message(larsManifest()),
            "optim: 'lars.manifest' lists the tensor reductions "
            "'norm,sum@global' but its module has no 'optim_reductions_lars', "
            "which a rule with tensor reductions defines (does the manifest "
            "belong to it?)");
  log.descriptor = "norm,sum@global";
  EXPECT_EQ(message(larsManifest()), "no error");
}

namespace {
// A rule with nested tensor reductions (KernelABI.h, version 9), f32, one
// hyperparameter lr, no state:
//   let m = tensor_mean(g)                              // level 0
//   let v = tensor_mean((g - m) * (g - m))              // level 1
//   let n = global_norm(g - m)                          // level 1
//   p -= lr * (g - m) / (sqrt(v) + 1e-6) + 1e-3 * n
// optim_reduce_centre takes (..., lr, partials, reduced, stage, rng); stage
// 0 writes slot 0 of each chunk, stage 1 slots 1 and 2 (reading slot 0 of
// `reduced`), any other stage nothing. optim_rule_centre reads all three.
CUfunction kCentreReduce = reinterpret_cast<CUfunction>(0x5671);
CUfunction kCentre = reinterpret_cast<CUfunction>(0x5672);
struct CentreLog {
  std::vector<std::string> calls;
  /// `reduced` of each launch, reduce stages and rule alike.
  std::vector<CUdeviceptr> reducedPtrs;
  std::string descriptor = "mean,mean:1,norm@global:1";
};
CentreLog *centreLog = nullptr;

CUresult fCentreGetGlobal(CUdeviceptr *ptr, size_t *bytes, CUmodule m,
                          const char *name) {
  if (m != kModule || std::string(name) != "optim_reductions_centre")
    return kErrorNotFound;
  *ptr = reinterpret_cast<CUdeviceptr>(centreLog->descriptor.c_str());
  *bytes = centreLog->descriptor.size() + 1;
  return 0;
}
CUresult fCentreGetFunction(CUfunction *f, CUmodule m, const char *name) {
  if (m != kModule)
    return 500;
  std::string n = name;
  if (n == "optim_rule_centre")
    *f = kCentre;
  else if (n == "optim_reduce_centre")
    *f = kCentreReduce;
  else
    return 500;
  return 0;
}
CUresult fCentreLaunch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                       unsigned, unsigned, unsigned, unsigned shared, CUstream,
                       void **params, void **extra) {
  if (gy != 1 || gz != 1 || shared || extra)
    return 1;
  auto ptrs = *static_cast<float **const *>(params[0]);
  auto lengths = *static_cast<const int64_t *const *>(params[1]);
  int64_t begin = *static_cast<int64_t *>(params[3]);
  float lr = *static_cast<float *>(params[5]);
  if (f == kCentreReduce) {
    auto partials = *static_cast<double *const *>(params[6]);
    CUdeviceptr reducedPtr = *static_cast<CUdeviceptr *>(params[7]);
    auto reduced = reinterpret_cast<const double *>(reducedPtr);
    int64_t stage = *static_cast<int64_t *>(params[8]);
    centreLog->calls.push_back("launch reduce " + std::to_string(stage));
    centreLog->reducedPtrs.push_back(reducedPtr);
    for (unsigned blk = 0; blk < gx; ++blk) {
      int64_t c = begin + blk;
      const float *g = ptrs[c * 2 + 1];
      if (stage == 0) {
        double sum = 0;
        for (int64_t i = 0; i < lengths[c]; ++i)
          sum += double(g[i]);
        partials[c * 3] = sum;
      } else if (stage == 1) {
        float m = float(reduced[c * 3]);
        double sq = 0;
        for (int64_t i = 0; i < lengths[c]; ++i) {
          float d = g[i] - m;
          sq += double(d * d);
        }
        // norm: the sum of squares of g - m, the same value here.
        partials[c * 3 + 1] = sq;
        partials[c * 3 + 2] = sq;
      }
    }
    return 0;
  }
  if (f != kCentre)
    return 1;
  centreLog->calls.push_back("launch rule");
  CUdeviceptr reducedPtr = *static_cast<CUdeviceptr *>(params[6]);
  centreLog->reducedPtrs.push_back(reducedPtr);
  auto reduced = reinterpret_cast<const double *>(reducedPtr);
  for (unsigned blk = 0; blk < gx; ++blk) {
    int64_t c = begin + blk;
    float *p = ptrs[c * 2];
    const float *g = ptrs[c * 2 + 1];
    float m = float(reduced[c * 3]), v = float(reduced[c * 3 + 1]),
          n = float(reduced[c * 3 + 2]);
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] -= lr * (g[i] - m) / (std::sqrt(v) + 1e-6f) + 1e-3f * n;
  }
  return 0;
}
CUresult fCentreSync(CUstream) {
  centreLog->calls.push_back("sync");
  return 0;
}
CUresult fCentreDtoH(void *dst, CUdeviceptr src, size_t bytes) {
  centreLog->calls.push_back("download");
  return fakecuda::dtoh(dst, src, bytes);
}
CUresult fCentreHtoDAsync(CUdeviceptr dst, const void *src, size_t bytes,
                          CUstream) {
  centreLog->calls.push_back("upload reduced");
  return fakecuda::htod(dst, src, bytes);
}

std::shared_ptr<const DriverAPI> centreDriver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = fAttr;
  d->cuCtxSetCurrent = fSetCurrent;
  d->cuModuleLoadData = fLoad;
  d->cuModuleGetFunction = fCentreGetFunction;
  d->cuModuleGetGlobal = fCentreGetGlobal;
  d->cuStreamCreate = fStreamCreate;
  d->cuLaunchKernel = fCentreLaunch;
  d->cuStreamSynchronize = fCentreSync;
  d->cuMemcpyDtoH = fCentreDtoH;
  d->cuMemcpyHtoDAsync = fCentreHtoDAsync;
  return d;
}

std::string centreManifest(const std::string &reductions =
                               R"({"kind": "mean", "global": false},
                   {"kind": "mean", "global": false, "level": 1},
                   {"kind": "norm", "global": true, "level": 1})") {
  return R"({"format": "optim-mlir rule manifest", "abi_version": )" +
         std::to_string(OPTIM_KERNEL_ABI_VERSION) + R"(, "rule": "centre",
    "symbol": "optim_rule_centre", "dtype": "f32",
    "target": "nvptx64-nvidia-cuda sm_90",
    "hyperparameters": [{"name": "lr", "default": 0.01, "const": false}],
    "states": [], "weights": [],
    "reductions": [)" +
         reductions + "]}";
}
} // namespace

TEST_F(CudaFake, NestedReductionsLaunchOneStageAfterAnotherWithTheCombine) {
  CentreLog log;
  centreLog = &log;
  struct Unset {
    ~Unset() { centreLog = nullptr; }
  } unset;
  auto dev = Device::open(centreDriver());
  cuda::Rule centre =
      dev->loadRule("CUBIN", centreManifest(), "centre.manifest");
  EXPECT_EQ(reductionsDescriptor(centre.info().reductions),
            "mean,mean:1,norm@global:1");

  // Tensors of 1, 3 and 0 chunks (chunk size 64), and one of 1 coordinate.
  std::vector<int64_t> sizes = {5, 130, 0, 1};
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> p(sizes.size()), g(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t k = 0; k < sizes[i]; ++k) {
      p[i].push_back(normal(rng));
      g[i].push_back(normal(rng));
    }
  std::vector<Buffer> dp = upload(dev, p), dg = upload(dev, g);
  std::vector<DeviceTensor> params, grads;
  for (size_t i = 0; i < sizes.size(); ++i) {
    params.push_back({dp[i].get(), sizes[i]});
    grads.push_back({dg[i].get(), sizes[i]});
  }
  OptimizerOptions options;
  options.chunkSize = 64;
  options.blockSize = 128;
  cuda::Optimizer opt(centre, params, options);
  const int steps = 2;
  for (int s = 0; s < steps; ++s) {
    log.calls.clear();
    log.reducedPtrs.clear();
    opt.step(grads);
    // Stage 0, its level combined and uploaded, stage 1 reading it, its
    // level combined and uploaded, then the rule.
    std::vector<std::string> want = {
        "launch reduce 0", "sync", "download", "upload reduced",
        "launch reduce 1", "sync", "download", "upload reduced",
        "launch rule"};
    if (s == 0) // buildTable waits for the stream first.
      want.insert(want.begin(), "sync");
    ASSERT_EQ(log.calls, want) << "step " << s;
    // One `reduced` buffer, the one the rule reads, passed to every stage.
    ASSERT_EQ(log.reducedPtrs.size(), 3u);
    EXPECT_NE(log.reducedPtrs[0], 0u);
    EXPECT_EQ(log.reducedPtrs[1], log.reducedPtrs[0]);
    EXPECT_EQ(log.reducedPtrs[2], log.reducedPtrs[0]);
  }
  opt.synchronize();

  // Reference on whole tensors in double (g does not change between steps,
  // so neither do m, v and n).
  std::vector<double> mean(sizes.size()), var(sizes.size());
  double all = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!sizes[i])
      continue;
    double sum = 0;
    for (float x : g[i])
      sum += x;
    float m = float(sum / double(sizes[i]));
    mean[i] = m;
    double sq = 0;
    for (float x : g[i]) {
      float d = x - m;
      sq += double(d * d);
    }
    var[i] = sq / double(sizes[i]);
    all += sq;
  }
  float n = float(std::sqrt(all));
  std::vector<std::vector<float>> ref = p;
  for (int s = 0; s < steps; ++s)
    for (size_t i = 0; i < sizes.size(); ++i)
      for (int64_t k = 0; k < sizes[i]; ++k)
        ref[i][k] -= 0.01f * (g[i][k] - float(mean[i])) /
                         (std::sqrt(float(var[i])) + 1e-6f) +
                     1e-3f * n;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<float> got(sizes[i]);
    dp[i].download(got.data(), got.size() * 4);
    for (int64_t k = 0; k < sizes[i]; ++k)
      ASSERT_NEAR(got[k], ref[i][k], 1e-5 * (1 + std::fabs(ref[i][k])))
          << "tensor " << i << " element " << k;
  }
}

TEST_F(CudaFake, NestedReductionLevelsMustAgreeAndBeWellFormed) {
  CentreLog log;
  centreLog = &log;
  struct Unset {
    ~Unset() { centreLog = nullptr; }
  } unset;
  auto dev = Device::open(centreDriver());
  auto message = [&](const std::string &m) {
    try {
      dev->loadRule("CUBIN", m, "centre.manifest");
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(centreManifest()), "no error");
  // The manifest without the levels.
  EXPECT_EQ(message(centreManifest(R"({"kind": "mean", "global": false},
                                      {"kind": "mean", "global": false},
                                      {"kind": "norm", "global": true})")),
            "optim: 'centre.manifest' lists the tensor reductions "
            "'mean,mean,norm@global' but its kernels were compiled for "
            "'mean,mean:1,norm@global:1' (does the manifest belong to "
            "them?)");
  // A level no compiler writes, in the module's descriptor.
  log.descriptor = "mean,mean:1,norm@global:01";
  EXPECT_EQ(message(centreManifest()),
            "optim: 'centre.manifest': the module's 'optim_reductions_centre' "
            "(\"mean,mean:1,norm@global:01\") is malformed: entry 2 "
            "'norm@global:01' has a malformed level '01' (an entry is a kind, "
            "sum, mean, norm, max or min, then \"@global\" for a global one "
            "or \"@row\" / \"@col\" for a row or column one, then "
            "\":<level>\" for a level 1..65535 in decimal without sign or "
            "leading zeros); was it compiled by optimc?");
  log.descriptor = "mean:1,mean:1,norm@global:1";
  EXPECT_EQ(message(centreManifest()),
            "optim: 'centre.manifest': the module's 'optim_reductions_centre' "
            "(\"mean:1,mean:1,norm@global:1\") is malformed: reduction 0 "
            "('mean:1') has level 1, but no reduction has level 0; was it "
            "compiled by optimc?");
  // A gap in the manifest.
  log.descriptor = "mean,mean:1,norm@global:1";
  EXPECT_EQ(message(centreManifest(R"({"kind": "mean", "global": false},
                                      {"kind": "mean", "global": false,
                                       "level": 2})")),
            "optim: manifest 'centre.manifest': reduction 1 ('mean:2') has "
            "level 2, but no reduction has level 1 (not a manifest of "
            "optimc)");
  // A row reduction (ABI 10) the kernels were not compiled for.
  EXPECT_EQ(message(centreManifest(R"({"kind": "mean", "global": false,
                                       "axis": "row"})")),
            "optim: 'centre.manifest' lists the tensor reductions 'mean@row' "
            "but its kernels were compiled for 'mean,mean:1,norm@global:1' "
            "(does the manifest belong to them?)");
  // A matrix function (ABI 11) the kernels were not compiled with.
  EXPECT_EQ(message(centreManifest(
                R"({"kind": "newton_schulz", "global": false,
                    "axis": "matrix", "ns": {"steps": 5, "eps": 1e-7,
                    "coefficients": [3.4445, -4.775, 2.0315]}})")),
            "optim: 'centre.manifest' lists the tensor reductions "
            "'newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix' but its "
            "kernels were compiled for 'mean,mean:1,norm@global:1' (does the "
            "manifest belong to them?)");
}

TEST_F(CudaFake, RefusesCubinsOfOtherTargets) {
  auto dev = Device::open(fakeDriver());
  auto message = [&](const std::string &m) {
    try {
      dev->loadRule("X", m, "adam.manifest.json");
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(manifest("x86_64-pc-linux-gnu skylake"))
                .find("not for a CUDA GPU"),
            std::string::npos);
  EXPECT_NE(message(manifest("nvptx64-nvidia-cuda sm_80"))
                .find("compiled for sm_80, the device (Fake GPU) is sm_90"),
            std::string::npos);
  EXPECT_NE(message(manifest("nvptx64-nvidia-cuda sm_90", 999))
                .find("kernel ABI 999"),
            std::string::npos);
  // sm_80 cubins run on sm_86.
  state.major = 8;
  state.minor = 6;
  auto dev86 = Device::open(fakeDriver());
  EXPECT_NO_THROW(
      dev86->loadRule("X", manifest("nvptx64-nvidia-cuda sm_80"), "m"));
}

/// What optimc writes beside a cubin, in short.
std::string ptxFor(const std::string &arch) {
  return "//\n.version 8.0\n.target " + arch +
         "\n.visible .entry optim_rule_adam(\n";
}

TEST_F(CudaFake, ThePTXStandsInForACubinTheDriverCannotUse) {
  auto dev = Device::open(fakeDriver());
  const std::string ptx = ptxFor("sm_90");
  // A usable cubin is loaded as it is; the PTX is not touched.
  cuda::Rule direct = dev->loadRule("CUBIN", manifest(), "m", ptx);
  EXPECT_EQ(direct.source(), CodeSource::Cubin);
  EXPECT_EQ(state.loadAttempts, std::vector<std::string>{"CUBIN"});

  // A cubin the driver refuses: the driver compiles the PTX instead.
  state.refusePrefix = "NEWER-CUBIN";
  state.loadAttempts.clear();
  cuda::Rule jitted = dev->loadRule("NEWER-CUBIN", manifest(), "m", ptx);
  EXPECT_EQ(jitted.source(), CodeSource::PTX);
  EXPECT_EQ(state.loadAttempts,
            (std::vector<std::string>{"NEWER-CUBIN", ptx}));
  EXPECT_EQ(state.loadedImage, ptx);
  EXPECT_STREQ(toString(jitted.source()), "ptx");

  // Without a PTX the driver's refusal is the error, naming the cubin.
  try {
    dev->loadRule("NEWER-CUBIN", manifest(), "adam.manifest.json");
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("cuModuleLoadData failed"),
              std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'adam.manifest.json's cubin"),
              std::string::npos)
        << e.what();
  }
  // Not a refusal of the image (here out of memory): reported as it is,
  // not hidden behind the PTX.
  state.refuseWith = 2;
  state.loadAttempts.clear();
  EXPECT_THROW(dev->loadRule("NEWER-CUBIN", manifest(), "m", ptx), Error);
  EXPECT_EQ(state.loadAttempts, std::vector<std::string>{"NEWER-CUBIN"});
  state.refuseWith = 222;
  // A PTX of another build than the manifest's is refused, saying so.
  try {
    dev->loadRule("CUBIN", manifest(), "m", ptxFor("sm_80"));
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: 'm': the PTX beside the cubin is for "
                           "'sm_80', the manifest for 'sm_90' (left over from "
                           "another build?)");
  }
  std::string otherKernel = ptx;
  otherKernel.replace(otherKernel.find("adam"), 4, "sgd");
  EXPECT_THROW(dev->loadRule("CUBIN", manifest(), "m", otherKernel), Error);
  // Both refused: the error names both attempts.
  state.refusePrefix = "";
  try {
    dev->loadRule("NEWER-CUBIN", manifest(), "adam.manifest.json", ptx);
    FAIL() << "no error";
  } catch (const Error &e) {
    std::string what = e.what();
    EXPECT_NE(what.find("JIT-compiling 'adam.manifest.json's PTX, after its "
                        "cubin failed"),
              std::string::npos)
        << what;
  }

  // An older architecture's kernel runs on a newer device through its PTX
  // alone (the cubin cannot run there and is not tried); without the PTX
  // the error says what is missing.
  state.refusePrefix = "\x01";
  state.loadAttempts.clear();
  cuda::Rule older =
      dev->loadRule("SM80-CUBIN", manifest("nvptx64-nvidia-cuda sm_80"), "m",
                    ptxFor("sm_80"));
  EXPECT_EQ(older.source(), CodeSource::PTX);
  EXPECT_EQ(state.loadAttempts, std::vector<std::string>{ptxFor("sm_80")});
  try {
    dev->loadRule("SM80-CUBIN", manifest("nvptx64-nvidia-cuda sm_80"), "m");
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("its PTX is not at hand"),
              std::string::npos)
        << e.what();
  }
  // PTX does not run on an older architecture, nor an "a" target's on
  // another one.
  EXPECT_THROW(dev->loadRule("X", manifest("nvptx64-nvidia-cuda sm_100"),
                             "m", ptxFor("sm_100")),
               Error);
  EXPECT_THROW(dev->loadRule("X", manifest("nvptx64-nvidia-cuda sm_80a"),
                             "m", ptxFor("sm_80a")),
               Error);
}

/// `json` (a manifest) with the SHA-256 of `cubin` and of `ptx` (if not
/// empty), as optimc records them.
std::string withHashes(const std::string &json, const std::string &cubin,
                       const std::string &ptx = "") {
  std::string hashes =
      R"({"artifact_sha256": ")" + detail::sha256Hex(cubin) + "\"";
  if (!ptx.empty())
    hashes += R"(, "ptx_sha256": ")" + detail::sha256Hex(ptx) + "\"";
  return hashes + ", " + json.substr(json.find('{') + 1);
}

TEST_F(CudaFake, LoadingFromAPathPicksUpThePTXBesideTheCubin) {
  std::string dir = ::testing::TempDir() + "optim-ptx-fallback";
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string &name, const std::string &text) {
    std::ofstream(dir + "/" + name, std::ios::binary) << text;
  };
  std::remove((dir + "/adam.sm_90.ptx").c_str()); // from an earlier run
  write("adam.sm_90.cubin", "REFUSED-CUBIN");
  write("adam.sm_90.manifest.json",
        withHashes(manifest(), "REFUSED-CUBIN", ptxFor("sm_90")));
  state.refusePrefix = "REFUSED";
  auto dev = Device::open(fakeDriver());
  EXPECT_THROW(dev->loadRule(dir + "/adam.sm_90.cubin"), Error);
  write("adam.sm_90.ptx", ptxFor("sm_90"));
  cuda::Rule adam = dev->loadRule(dir + "/adam.sm_90.cubin");
  EXPECT_EQ(adam.source(), CodeSource::PTX);
  EXPECT_EQ(state.loadedImage, ptxFor("sm_90"));
}

TEST_F(CudaFake, ACubinOrPTXThatIsNotTheManifestsIsRefused) {
  // optimc records the SHA-256 of the cubin and of its PTX in the manifest
  // and renames the manifest into place last: a cubin replaced after
  // compiling, or a new one beside a stale manifest (a failed write), must
  // not run under that manifest's description.
  std::string dir = ::testing::TempDir() + "optim-cubin-hash";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string &name, const std::string &text) {
    std::ofstream(dir + "/" + name, std::ios::binary) << text;
  };
  const std::string cubin = dir + "/adam.sm_90.cubin";
  const std::string json = dir + "/adam.sm_90.manifest.json";
  auto refusal = [&](const std::function<void()> &load) -> std::string {
    try {
      load();
    } catch (const Error &e) {
      return e.what();
    }
    return "(loaded)";
  };
  auto dev = Device::open(fakeDriver());
  write("adam.sm_90.cubin", "CUBIN");
  write("adam.sm_90.ptx", ptxFor("sm_90"));
  write("adam.sm_90.manifest.json",
        withHashes(manifest(), "CUBIN", ptxFor("sm_90")));
  EXPECT_EQ(dev->loadRule(cubin).source(), CodeSource::Cubin);
  EXPECT_EQ(state.loadedImage, "CUBIN");

  write("adam.sm_90.cubin", "ANOTHER-CUBIN");
  std::string why = refusal([&] { dev->loadRule(cubin); });
  EXPECT_EQ(why, "optim: the cubin does not match its manifest '" + json +
                     "' (SHA-256 " + detail::sha256Hex("ANOTHER-CUBIN") +
                     ", the manifest records " + detail::sha256Hex("CUBIN") +
                     "): one of them was replaced after compiling; "
                     "recompile it with optimc");
  write("adam.sm_90.cubin", "CUBIN");
  write("adam.sm_90.ptx", ptxFor("sm_90") + "// another build\n");
  EXPECT_NE(refusal([&] { dev->loadRule(cubin); })
                .find("the PTX beside the cubin does not match its manifest"),
            std::string::npos);
  // A manifest that records no hash ties nothing to the files beside it.
  write("adam.sm_90.ptx", ptxFor("sm_90"));
  write("adam.sm_90.manifest.json", manifest());
  EXPECT_EQ(refusal([&] { dev->loadRule(cubin); }),
            "optim: manifest '" + json +
                "' records no SHA-256 (\"artifact_sha256\") of '" + cubin +
                "', so nothing shows that they belong together; recompile "
                "it with optimc");
  // From bytes, the hash is checked where the manifest records it.
  EXPECT_EQ(refusal([&] {
              dev->loadRule("OTHER", withHashes(manifest(), "CUBIN"), "m");
            }).find("optim: the cubin does not match its manifest 'm'"),
            0u);
  EXPECT_NO_THROW(dev->loadRule("CUBIN", withHashes(manifest(), "CUBIN"), "m"));
  std::filesystem::remove_all(dir);
}

TEST_F(CudaFake, DeviceMemoryIsFreedExactlyOnce) {
  {
    auto dev = Device::open(fakeDriver());
    cuda::Rule adam = dev->loadRule("X", manifest(), "m");
    auto dp = upload(dev, {std::vector<float>(100, 1.f)});
    auto dg = upload(dev, {std::vector<float>(100, 1.f)});
    cuda::Optimizer opt(adam, {{dp[0].get(), 100}});
    opt.step({{dg[0].get(), 100}});
  }
  EXPECT_TRUE(state.live.empty());
}

TEST(CudaDriver, LoadsTheRealDriverOrSaysWhy) {
  std::string why;
  auto driver = tryLoadDriver(&why);
  if (!driver)
    GTEST_SKIP() << "no CUDA driver here: " << why;
  auto dev = Device::open(driver);
  EXPECT_EQ(dev->arch().rfind("sm_", 0), 0u);
}

TEST(CudaDriver, AMissingLibraryIsAClearError) {
  try {
    loadDriver("/nonexistent/libcuda.so.1");
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(
                  "no driver: cannot load '/nonexistent/libcuda.so.1'"),
              std::string::npos);
  }
}
