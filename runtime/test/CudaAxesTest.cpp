//===- CudaAxesTest.cpp - rules with row and column states on CUDA --------===//
//
// The CUDA runtime's side of kernel ABI 10 ("Axes"): the chunk table of
// rectangles (four lengths per chunk, 2 + I + S + A + 2X pointers), the row
// and column states of B * R and B * C values with their next buffers
// (copied over the current ones after each step), the per-chunk row and
// column partials, combined on the host per row and column in chunk order,
// and the results each chunk reads from its first row or column. The fake
// driver runs the hand-written kernels of FactoredRule.h where the GPU
// kernels would run (one launch covers the chunks of the grid), so the
// CUDA optimizer must give optim::Optimizer's bits on the same kernels,
// shapes and chunk size.
//
//===----------------------------------------------------------------------===//

#include "CudaVsCpu.h"
#include "FactoredRule.h"
#include "FakeDriver.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

using namespace optim;
using namespace optim::cuda;
using factored::factoredInfo;
using json = nlohmann::json;

namespace {

const CUfunction kReduce = reinterpret_cast<CUfunction>(0x5100);
const CUfunction kRuleFn = reinterpret_cast<CUfunction>(0x5200);
const CUmodule kModule = reinterpret_cast<CUmodule>(0x5300);

struct AxesState : fakecuda::Memory {
  bool f32 = true;
  std::string descriptor;
  int launches = 0, copies = 0;
  std::vector<std::string> calls;
};
AxesState *fake = nullptr;

CUresult attr(int *v, int attribute, CUdevice) {
  *v = attribute == kAttrComputeCapabilityMajor ? 9 : 0;
  return 0;
}
CUresult setCurrent(CUcontext c) {
  return c == fakecuda::kContext ? 0 : 201;
}
CUresult load(CUmodule *m, const void *) {
  *m = kModule;
  return 0;
}
CUresult getFunction(CUfunction *f, CUmodule, const char *name) {
  std::string n = name;
  if (n == "optim_rule_factored")
    *f = kRuleFn;
  else if (n == "optim_reduce_factored")
    *f = kReduce;
  else
    return kErrorNotFound;
  return 0;
}
CUresult getGlobal(CUdeviceptr *ptr, size_t *bytes, CUmodule,
                   const char *name) {
  if (std::string(name) != "optim_reductions_factored")
    return kErrorNotFound;
  *ptr = reinterpret_cast<CUdeviceptr>(fake->descriptor.c_str());
  *bytes = fake->descriptor.size() + 1;
  return 0;
}
CUresult streamCreate(CUstream *s, unsigned) {
  *s = reinterpret_cast<CUstream>(0x77);
  return 0;
}
CUresult htodAsync(CUdeviceptr dst, const void *src, size_t bytes, CUstream) {
  fake->calls.push_back("upload");
  return fakecuda::htod(dst, src, bytes);
}
CUresult dtodAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                   CUstream) {
  ++fake->copies;
  fake->calls.push_back("copy");
  if (bytes)
    std::memcpy(reinterpret_cast<void *>(dst),
                reinterpret_cast<const void *>(src), bytes);
  return 0;
}

/// The GPU launch as the CPU kernel ABI: hyperparameters by value (T) become
/// the double array the hand-written kernels read.
template <typename T>
CUresult launchAs(CUfunction f, unsigned grid, void **params) {
  auto ptrs = *static_cast<void *const *const *>(params[0]);
  auto lengths = *static_cast<const int64_t *const *>(params[1]);
  auto strides = *static_cast<const int64_t *const *>(params[2]);
  int64_t begin = *static_cast<int64_t *>(params[3]);
  int64_t step = *static_cast<int64_t *>(params[4]);
  double h[3];
  for (int k = 0; k < 3; ++k)
    h[k] = double(*static_cast<T *>(params[5 + k]));
  if (f == kReduce) {
    auto partials = *static_cast<double *const *>(params[8]);
    auto reduced = *static_cast<const double *const *>(params[9]);
    int64_t stage = *static_cast<int64_t *>(params[10]);
    fake->calls.push_back("reduce " + std::to_string(stage));
    factored::reduceKernel<T>(ptrs, lengths, strides, begin, begin + grid, h,
                              step, nullptr, partials, reduced, stage,
                              nullptr);
    return 0;
  }
  auto reduced = *static_cast<const double *const *>(params[8]);
  fake->calls.push_back("rule");
  factored::ruleKernel<T>(ptrs, lengths, strides, begin, begin + grid, h, step,
                          nullptr, reduced, nullptr);
  return 0;
}

CUresult launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                unsigned bx, unsigned, unsigned, unsigned shared, CUstream,
                void **params, void **extra) {
  if ((f != kReduce && f != kRuleFn) || gy != 1 || gz != 1 || bx % 32 ||
      shared || extra)
    return 1;
  ++fake->launches;
  return fake->f32 ? launchAs<float>(f, gx, params)
                   : launchAs<double>(f, gx, params);
}

std::shared_ptr<const DriverAPI> axesDriver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = attr;
  d->cuCtxSetCurrent = setCurrent;
  d->cuModuleLoadData = load;
  d->cuModuleGetFunction = getFunction;
  d->cuModuleGetGlobal = getGlobal;
  d->cuStreamCreate = streamCreate;
  d->cuMemcpyHtoDAsync = htodAsync;
  d->cuMemcpyDtoDAsync = dtodAsync;
  d->cuLaunchKernel = launch;
  return d;
}

/// The factored rule's manifest for a CUDA module: "axis" on its row and
/// column states and reductions, as the front end writes them.
std::string manifestFor(DType dtype) {
  Manifest m;
  m.info = factoredInfo(dtype);
  m.symbol = "optim_rule_factored";
  m.target = "nvptx64-nvidia-cuda sm_90";
  json doc = json::parse(writeManifest(m));
  doc["states"][0]["axis"] = "row";
  doc["states"][1]["axis"] = "col";
  doc["reductions"][0]["axis"] = "row";
  doc["reductions"][1]["axis"] = "col";
  return doc.dump();
}

class CudaAxes : public ::testing::Test {
protected:
  void SetUp() override {
    fake = &state;
    fakecuda::memory = &state;
  }
  void TearDown() override {
    EXPECT_TRUE(state.live.empty()) << state.live.size() << " buffers leaked";
    fake = nullptr;
    fakecuda::memory = nullptr;
  }
  AxesState state;
};

/// Shapes of every kind: empty, 1-D, unshaped, matrices both ways, a batch,
/// rows longer than the chunk, many short rows.
const std::vector<std::vector<int64_t>> kShapes = {
    {0}, {1}, {7}, {3, 5}, {5, 3}, {2, 3, 4}, {3, 0}, {0, 4},
    {1, 9001}, {4097, 3}, {}};
const int64_t kUnshaped = 333; // the size of the last, unshaped tensor

// Hyperparameters a float holds exactly, so that the f32 kernels' T
// arguments, widened back to double, are the CPU runtime's values.
const double kLr = 0.0625, kBeta = 0.875, kEps = 1.0 / 1024;

template <typename T> void expectSameAsTheCpuRuntime(int64_t chunkSize) {
  const bool f32 = std::is_same_v<T, float>;
  const DType dtype = f32 ? DType::F32 : DType::F64;
  AxesState &state = *fake;
  state.f32 = f32;
  RuleInfo info = factoredInfo(dtype);
  state.descriptor = reductionsDescriptor(info.reductions);
  auto dev = Device::open(axesDriver());
  const int steps = 3;
  cudavscpu::CudaVsCpu<T> both(
      kShapes, kUnshaped, steps, 7,
      optim::Rule(info, factored::reduceKernel<T>, factored::ruleKernel<T>,
                  nullptr),
      dev->loadRule("X", manifestFor(dtype), "factored.json"), chunkSize,
      /*cpuThreads=*/2);
  both.set("lr", kLr);
  both.set("beta", kBeta);
  both.set("eps", kEps);
  both.run();
  // Three stages a step (levels 0 and 1, then the rule), and a copy of each
  // row and column state of each non-empty tensor.
  EXPECT_EQ(state.launches, 3 * steps);
  EXPECT_EQ(state.copies, 2 * steps * 8);
  for (size_t k = 0; k < kShapes.size(); ++k) {
    std::vector<T> got = both.gpuParam(k);
    EXPECT_EQ(0, std::memcmp(got.data(), both.cpuParams[k].data(),
                             got.size() * sizeof(T)))
        << "parameter " << k;
    for (const StateSpec &spec : info.states) {
      size_t n = both.cpu->stateSize(k, spec.name);
      std::vector<T> want(n), have(n);
      if (n)
        std::memcpy(want.data(), both.cpu->state(k, spec.name), n * sizeof(T));
      both.gpu->readState(spec.name, k, have.data());
      EXPECT_EQ(0, std::memcmp(have.data(), want.data(), n * sizeof(T)))
          << "state " << spec.name << " of parameter " << k;
    }
  }
}

TEST_F(CudaAxes, GivesTheCpuRuntimesBitsF32) {
  // 4096: rows of [1, 9001] (and, with the column reduction's 16x, none)
  // cut into parts; [4097, 3] in many rows per chunk.
  expectSameAsTheCpuRuntime<float>(4096);
}

TEST_F(CudaAxes, GivesTheCpuRuntimesBitsF64SmallChunks) {
  // 16 x 4: rows longer than 64 coordinates are cut; one row per chunk of
  // [1, 9001]'s 141 parts.
  expectSameAsTheCpuRuntime<double>(4);
}

TEST_F(CudaAxes, RowAndColumnStatesHoldAValuePerRowAndColumn) {
  state.descriptor = reductionsDescriptor(factoredInfo(DType::F32).reductions);
  auto dev = Device::open(axesDriver());
  cuda::Rule rule =
      dev->loadRule("X", manifestFor(DType::F32), "factored.json");
  Buffer p(dev, 24 * 4), g(dev, 24 * 4);
  std::vector<float> zeros(24, 0.f);
  p.upload(zeros.data(), 96);
  g.upload(zeros.data(), 96);
  cuda::Optimizer opt(rule, {{p.get(), 24, {2, 3, 4}}});
  // r: B * R = 6 values at 0.5; c: B * C = 8 at 0.25; m: 24.
  std::vector<float> r(6), c(8), m(24);
  opt.readState("r", 0, r.data());
  opt.readState("c", 0, c.data());
  opt.readState("m", 0, m.data());
  EXPECT_EQ(r, std::vector<float>(6, 0.5f));
  EXPECT_EQ(c, std::vector<float>(8, 0.25f));
  EXPECT_EQ(m, std::vector<float>(24, 0.f));
  // A row state written from the host is what the next step reads.
  std::vector<float> r2 = {1, 2, 3, 4, 5, 6};
  opt.writeState("r", 0, r2.data());
  opt.step({{g.get(), 24}});
  opt.synchronize();
  opt.readState("r", 0, r.data());
  // A zero gradient: r' = beta r (row means of g * g are 0).
  for (int i = 0; i < 6; ++i)
    EXPECT_FLOAT_EQ(r[i], float(0.9 * r2[i])) << i;
  // Stage 0, the combine's upload, stage 1, the rule kernel, then the copies
  // of r and c.
  std::vector<std::string> tail(state.calls.end() - 3, state.calls.end());
  EXPECT_EQ(tail, (std::vector<std::string>{"rule", "copy", "copy"}));
}

TEST_F(CudaAxes, RefusesShapesWhoseRowsDoNotFit) {
  state.descriptor = reductionsDescriptor(factoredInfo(DType::F32).reductions);
  auto dev = Device::open(axesDriver());
  cuda::Rule rule =
      dev->loadRule("X", manifestFor(DType::F32), "factored.json");
  Buffer p(dev, 4);
  const int64_t huge = int64_t(1) << 40;
  try {
    cuda::Optimizer opt(rule, {{p.get(), 0, {huge, huge, 0}}});
    ADD_FAILURE() << "accepted a row state of 2^80 values";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: CUDA: parameter tensor 0: shape "
                           "[1099511627776, 1099511627776, 0] has more rows "
                           "or columns than the address space holds");
  }
}

} // namespace
