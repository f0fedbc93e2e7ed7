//===- LearnedGpuBench.cpp - the learned rule on a CUDA GPU ---------------===//
//
// Runtime only (no LLVM/MLIR): the learned-rule row of bench/gpu/run.sh,
// for examples/l2l.optim (two 20-unit LSTM cells and a linear head per
// coordinate).
//   --write-reference DIR [--weights FILE] [--rule NAME]
//       on the machine where optimc runs (bench/gpu/prepare.sh): runs the CPU
//       kernel DIR/NAME.so (optimc --emit=shared; NAME defaults to l2l) for
//       20 steps on tensors of awkward sizes, with gradients from a
//       generator that gives the same bits on every machine, and writes the
//       final parameters, the final states of the small tensors and the
//       weights (FILE's, else drawn from the same generator) to
//       DIR/NAME.expected.safetensors;
//   --check DIR [--rule NAME] [--cubin STEM]
//       on the GPU: the same 20 steps with DIR/NAME.<arch>.cubin (or
//       STEM.<arch>.cubin, another build of the rule), compared with those
//       expected values (the CPU path, as issue 6 asks; the device machine
//       has no LLVM to compute them);
//   --bench DIR [--coordinates N] [--steps N] [--peak-cubin FILE]
//         [--cubin STEM]
//       on the GPU: one step on N coordinates (default 10M) for a few launch
//       shapes, median of N steps each, and the card's fp32 FMA rate from the
//       FmaPeak.cu kernel (FILE, else DIR/fma_peak.<arch>.cubin); prints one
//       JSON line;
//   --probe
//       says which GPU the driver sees, or why there is none (status 1).
// Exit status 1 when a check fails or anything goes wrong.
//
//===----------------------------------------------------------------------===//

#include "optim/Cuda.h"
#include "optim/Manifest.h"
#include "optim/Optimizer.h"
#include "optim/Safetensors.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace optim;

namespace {

// The check: 20 steps on tensors of sizes 1, 7, 1000, 4099 (placed one
// element into its allocation on the GPU), 65537 and 1000003. The final
// states are compared for the tensors up to kStateCheckMax coordinates (80
// floats each; all of them would make the expected file 350 MB).
const int kCheckSteps = 20;
const std::vector<int64_t> kCheckSizes = {1, 7, 1000, 4099, 65537, 1000003};
// Their shapes: the [B, R, C] views of rules with row and column states
// (KernelABI.h, "Axes"); one element count each, as kCheckSizes.
const std::vector<std::vector<int64_t>> kCheckShapes = {
    {1}, {7}, {2, 20, 25}, {4099}, {65537}, {1000003}};
const size_t kMisaligned = 3;

/// The values state `s` holds for check tensor t: N per coordinate, or one
/// per row (B * R) or column (B * C) of its view.
int64_t stateCount(const optim::StateSpec &s, size_t t) {
  const std::vector<int64_t> &shape = kCheckShapes[t];
  int64_t C = shape.back(), R = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
  int64_t B = 1;
  for (size_t d = 0; d + 2 < shape.size(); ++d)
    B *= shape[d];
  return s.axis == optim::Axis::Row   ? B * R
         : s.axis == optim::Axis::Col ? B * C
                                      : s.size * kCheckSizes[t];
}
const int64_t kStateCheckMax = 5000;
std::string expectedPath(const std::string &dir, const std::string &rule) {
  return dir + "/" + rule + ".expected.safetensors";
}
// Issue 4's count: the gate rows of both cells and the head, 2 flops per FMA.
const double kFlopsPerCoordinate = 2.0 * (4 * 20 * 22 + 4 * 20 * 40 + 20);
// FmaPeak.cu's chains per thread and threads per block.
const int kFmaPeakChains = 16;
const unsigned kFmaPeakBlock = 256;

// A hash of (seed, tensor, index, step): integer operations only, so that
// the generator gives the same bits here and on the device machine, with any
// compiler, and the gradients need not be stored.
uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}
uint32_t hash(uint32_t tensor, uint32_t index, uint32_t step, uint32_t salt) {
  return mix(mix(mix(salt ^ 0x9e3779b9U) ^ tensor) ^ mix(index) ^
             (step * 0x85ebca6bU));
}

/// Initial parameter: uniform on [-1, 1) in steps of 2^-23 (exact).
float initialParam(uint32_t tensor, uint32_t index) {
  uint32_t h = hash(tensor, index, 0, 1);
  return float(h >> 8) * 0x1p-23f - 1.f;
}

/// Gradient of step `step`: zero one time in 64, else +-m 2^e with m in
/// [1, 2) and e in [-22, 0], so that both branches of log_sign (|g| below
/// and above e^-10 ~ 2^-14.4) are taken often. Every operation is exact.
float gradient(uint32_t tensor, uint32_t index, uint32_t step) {
  uint32_t a = hash(tensor, index, step, 2), b = hash(tensor, index, step, 3);
  if ((b & 63) == 0)
    return 0.f;
  float m = 1.f + float(a >> 9) * 0x1p-23f;
  int e = -int((b >> 6) & 15) - int((b >> 10) & 7);
  float g = std::ldexp(m, e);
  return (b >> 13) & 1 ? -g : g;
}

std::string sizesText() {
  std::string s;
  for (int64_t n : kCheckSizes)
    s += (s.empty() ? "" : ",") + std::to_string(n);
  return s;
}

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

/// DIR/<name>.<arch>.cubin, else the same major architecture's .0 (an sm_80
/// cubin runs on sm_86 and sm_89); empty when neither exists. (GpuBench.cpp
/// has the same rule for the update rules.)
std::string pickCubin(const std::string &dir, const std::string &name,
                      const std::string &arch) {
  std::string exact = dir + "/" + name + "." + arch + ".cubin";
  if (exists(exact))
    return exact;
  if (arch.size() >= 5) {
    std::string base =
        dir + "/" + name + "." + arch.substr(0, arch.size() - 1) + "0.cubin";
    if (exists(base))
      return base;
  }
  return "";
}

/// Weights drawn from the generator: uniform on [-0.5, 0.5) in steps of
/// 2^-24 (exact), for rules without trained weights.
std::vector<std::vector<float>> generatedWeights(const RuleInfo &info) {
  std::vector<std::vector<float>> all;
  for (size_t w = 0; w < info.weights.size(); ++w) {
    size_t count = 1;
    for (int64_t d : info.weights[w].shape)
      count *= size_t(d);
    std::vector<float> values(count);
    for (size_t i = 0; i < count; ++i)
      values[i] = float(hash(uint32_t(w), uint32_t(i), 0, 4) >> 8) * 0x1p-24f -
                  0.5f;
    all.push_back(std::move(values));
  }
  return all;
}

/// The CPU kernel's 20 steps, written for --check to compare with.
int writeReference(const std::string &dir, const std::string &weightsPath,
                   const std::string &name) {
  optim::Rule rule = loadRule(dir + "/" + name + ".so");
  const RuleInfo &info = rule.info();
  if (info.name != name || info.dtype != DType::F32)
    throw Error(dir + "/" + name + ".so: expected the f32 rule " + name +
                ", got '" + info.name + "'");
  size_t n = kCheckSizes.size();
  std::vector<std::vector<float>> p(n), g(n);
  std::vector<Param> params;
  for (size_t t = 0; t < n; ++t) {
    p[t].resize(kCheckSizes[t]);
    g[t].resize(kCheckSizes[t]);
    for (int64_t i = 0; i < kCheckSizes[t]; ++i)
      p[t][i] = initialParam(t, i);
    params.push_back(
        Param(p[t].data(), kCheckSizes[t]).shaped(kCheckShapes[t]));
  }
  optim::Optimizer opt(rule, params);
  std::vector<std::vector<float>> generated;
  if (weightsPath.empty()) {
    generated = generatedWeights(info);
    for (size_t w = 0; w < info.weights.size(); ++w)
      opt.setWeights(info.weights[w].name, generated[w].data(),
                     int64_t(generated[w].size()));
  } else {
    opt.loadWeights(weightsPath);
  }
  for (int s = 1; s <= kCheckSteps; ++s) {
    std::vector<Grad> grads;
    for (size_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < kCheckSizes[t]; ++i)
        g[t][i] = gradient(t, i, s);
      grads.emplace_back(g[t].data(), kCheckSizes[t]);
    }
    opt.step(grads);
  }
  // Names are "p.<tensor>", "<state>.<tensor>" and "weights.<name>".
  std::vector<std::string> names;
  std::vector<TensorRef> refs;
  names.reserve(n * (1 + info.states.size()) + info.weights.size());
  for (size_t t = 0; t < n; ++t) {
    names.push_back("p." + std::to_string(t));
    refs.push_back({names.back(), DType::F32, {kCheckSizes[t]}, p[t].data()});
    if (kCheckSizes[t] > kStateCheckMax)
      continue;
    for (const StateSpec &s : info.states) {
      names.push_back(s.name + "." + std::to_string(t));
      refs.push_back({names.back(),
                      DType::F32,
                      {stateCount(s, t)},
                      opt.state(t, s.name)});
    }
  }
  std::optional<SafetensorsFile> weights;
  if (!weightsPath.empty())
    weights = SafetensorsFile::read(weightsPath);
  for (size_t w = 0; w < info.weights.size(); ++w) {
    const WeightSpec &spec = info.weights[w];
    names.push_back("weights." + spec.name);
    refs.push_back({names.back(), DType::F32, spec.shape,
                    weights ? weights->tensor(spec.name, DType::F32, spec.shape)
                            : generated[w].data()});
  }
  writeSafetensors(expectedPath(dir, name), refs,
                   {{"rule", name},
                    {"steps", std::to_string(kCheckSteps)},
                    {"sizes", sizesText()},
                    {"weights", weightsPath.empty() ? "generated" : weightsPath},
                    {"generator", "LearnedGpuBench.cpp hash v1"}});
  std::printf("wrote %s (CPU kernel %s.so, %d steps, sizes %s)\n",
              expectedPath(dir, name).c_str(), name.c_str(), kCheckSteps,
              sizesText().c_str());
  return 0;
}

/// Loads rule `name`'s cubin for the device.
cuda::Rule loadLearned(const std::shared_ptr<cuda::Device> &dev,
                       const std::string &dir, const std::string &name) {
  std::string cubin = pickCubin(dir, name, dev->arch());
  if (cubin.empty())
    throw Error("no " + name + " cubin for " + dev->arch() + " in " + dir +
                " (bench/gpu/prepare.sh writes sm_80 and sm_90)");
  return dev->loadRule(cubin);
}

void setWeights(cuda::Optimizer &opt, const RuleInfo &info,
                const SafetensorsFile &ref) {
  for (const WeightSpec &w : info.weights) {
    size_t count = 1;
    for (int64_t d : w.shape)
      count *= size_t(d);
    opt.setWeights(w.name, ref.tensor("weights." + w.name, DType::F32, w.shape),
                   count);
  }
}

/// The GPU's 20 steps against the CPU kernel's. Parameters are compared in
/// units of how far each coordinate moved, floored at 0.01 (the median
/// coordinate moves 0.29, 1% of them less than 0.003, where the ratio says
/// nothing), states relative to max(|x|, 1) (h lies in (-1, 1); c grows by
/// at most 1 a step).
int check(const std::shared_ptr<cuda::Device> &dev, const std::string &dir,
          const std::string &name, const std::string &stem) {
  SafetensorsFile ref = SafetensorsFile::read(expectedPath(dir, name));
  if (ref.metadata("sizes") != sizesText() ||
      ref.metadata("steps") != std::to_string(kCheckSteps))
    throw Error(expectedPath(dir, name) + " was written for sizes " +
                ref.metadata("sizes") + ", " + ref.metadata("steps") +
                " steps; this build checks " + sizesText() +
                ": rerun bench/gpu/prepare.sh");
  cuda::Rule rule = loadLearned(dev, dir, stem);
  const RuleInfo &info = rule.info();
  size_t n = kCheckSizes.size();
  std::vector<std::vector<float>> p0(n), g(n);
  std::vector<cuda::Buffer> dp, dg;
  std::vector<cuda::DeviceTensor> params, grads;
  for (size_t t = 0; t < n; ++t) {
    int64_t size = kCheckSizes[t];
    size_t off = t == kMisaligned ? 4 : 0;
    for (int64_t i = 0; i < size; ++i)
      p0[t].push_back(initialParam(t, i));
    g[t].resize(size);
    dp.emplace_back(dev, size * 4 + off);
    dg.emplace_back(dev, size * 4 + off);
    dp.back().upload(p0[t].data(), size * 4, off);
    params.push_back({dp.back().get() + off, size, kCheckShapes[t]});
    grads.push_back({dg.back().get() + off, size});
  }
  cuda::OptimizerOptions options;
  options.chunkSize = 2048; // many chunks, several per tensor
  options.blockSize = 256;
  cuda::Optimizer opt(rule, params, options);
  setWeights(opt, info, ref);
  for (int s = 1; s <= kCheckSteps; ++s) {
    // The previous step must have read the gradients before they change.
    opt.synchronize();
    for (size_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < kCheckSizes[t]; ++i)
        g[t][i] = gradient(t, i, s);
      dg[t].upload(g[t].data(), kCheckSizes[t] * 4, t == kMisaligned ? 4 : 0);
    }
    opt.step(grads);
  }
  opt.synchronize();
  double worstP = 0, worstState = 0;
  int64_t sameP = 0, countP = 0, sameState = 0, countState = 0, bad = 0;
  for (size_t t = 0; t < n; ++t) {
    int64_t size = kCheckSizes[t];
    std::vector<float> got(size);
    dp[t].download(got.data(), size * 4, t == kMisaligned ? 4 : 0);
    const float *want =
        static_cast<const float *>(ref.tensor("p." + std::to_string(t),
                                              DType::F32, {size}));
    for (int64_t i = 0; i < size; ++i) {
      double moved = std::fabs(double(want[i]) - p0[t][i]);
      double err =
          std::fabs(double(got[i]) - want[i]) / std::max(moved, 1e-2);
      if (!(err <= worstP)) // NaN counts as the worst
        worstP = std::isnan(err) ? INFINITY : err;
      bad += !std::isfinite(got[i]);
      sameP += got[i] == want[i];
      ++countP;
    }
    if (size > kStateCheckMax)
      continue;
    for (const StateSpec &s : info.states) {
      const int64_t count = stateCount(s, t);
      std::vector<float> state(count);
      opt.readState(s.name, t, state.data());
      const float *wantState = static_cast<const float *>(
          ref.tensor(s.name + "." + std::to_string(t), DType::F32, {count}));
      for (int64_t i = 0; i < count; ++i) {
        double err = std::fabs(double(state[i]) - wantState[i]) /
                     std::max(1.0, std::fabs(double(wantState[i])));
        if (!(err <= worstState))
          worstState = std::isnan(err) ? INFINITY : err;
        sameState += state[i] == wantState[i];
        ++countState;
      }
    }
  }
  // The same operations in the same order on both (LearnedMath.h; exp(k)
  // is folded, the log is the same polynomial, no contraction), so the bits
  // should agree. The tolerances leave room for rounding differences: every
  // weight one ulp up, on the CPU, moves p by at most 5.1e-4 and the states
  // by at most 2.8e-5 in these units; a wrong table, layout or weight is
  // off by O(0.1) or more.
  const double tolP = 3e-3, tolState = 1e-3;
  bool ok = worstP <= tolP && worstState <= tolState && bad == 0;
  std::printf("check %-9s %s  p: max error %.3g of max(movement, "
              "0.01) (tolerance %.0e), %.2f%% bit-identical; states of the "
              "tensors up to %lld: max error %.3g of max(|x|, 1) (tolerance "
              "%.0e), %.2f%% "
              "bit-identical; %lld coordinates, %d steps, %s (%s), %lld "
              "chunks\n",
              stem.c_str(), ok ? "OK  " : "FAIL", worstP, tolP, 100.0 * sameP / countP,
              (long long)kStateCheckMax, worstState, tolState,
              100.0 * sameState / countState, (long long)countP, kCheckSteps,
              dev->arch().c_str(), cuda::toString(rule.source()),
              (long long)opt.numChunks());
  if (bad)
    std::printf("check %-9s %lld non-finite parameters\n", name.c_str(),
                (long long)bad);
  return ok ? 0 : 1;
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/// `text` without the characters that would end or escape a JSON string.
std::string jsonSafe(std::string text) {
  for (char &c : text)
    if (c == '"' || c == '\\' || (unsigned char)c < 0x20)
      c = '\'';
  return text;
}

using Clock = std::chrono::steady_clock;
double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

/// GFLOP/s of FmaPeak.cu on this card: 8 waves of full-occupancy blocks,
/// median of 5 launches after one. Also returns the SM count.
double measurePeak(const std::shared_ptr<cuda::Device> &dev,
                   const std::string &path, int *sms) {
  const cuda::DriverAPI &d = dev->driver();
  // Its PTX (prepare.sh's nvcc -ptx) stands in for a cubin the driver
  // refuses, as for the compiler's kernels.
  size_t dot = path.rfind('.'), slash = path.rfind('/');
  bool hasExtension =
      dot != std::string::npos && (slash == std::string::npos || dot > slash);
  std::string ptxPath = path.substr(0, hasExtension ? dot : path.size()) +
                        ".ptx";
  std::string ptx = std::ifstream(ptxPath) ? readFile(ptxPath) : "";
  std::shared_ptr<cuda::CUmod_st> owner =
      dev->loadModule(readFile(path), path, ptx);
  cuda::CUmodule module = owner.get();
  double gflops = 0;
  {
    cuda::CUfunction fn = nullptr;
    d.check(d.cuModuleGetFunction(&fn, module, "optim_fma_peak"),
            "cuModuleGetFunction(optim_fma_peak)");
    cuda::CUdevice device = 0;
    d.check(d.cuDeviceGet(&device, 0), "cuDeviceGet");
    // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    d.check(d.cuDeviceGetAttribute(sms, 16, device), "cuDeviceGetAttribute");
    unsigned grid = unsigned(*sms) * 8 * 8;
    int iters = 1 << 14;
    float b = 0.999f, c = 1e-3f;
    cuda::Buffer out(dev, size_t(grid) * kFmaPeakBlock * 4);
    cuda::CUdeviceptr outPtr = out.get();
    void *args[] = {&outPtr, &iters, &b, &c};
    auto launch = [&] {
      auto t0 = Clock::now();
      d.check(d.cuLaunchKernel(fn, grid, 1, 1, kFmaPeakBlock, 1, 1, 0,
                               nullptr, args, nullptr),
              "cuLaunchKernel(optim_fma_peak)");
      d.check(d.cuStreamSynchronize(nullptr), "cuStreamSynchronize");
      return msSince(t0);
    };
    launch();
    std::vector<double> ms;
    for (int i = 0; i < 5; ++i)
      ms.push_back(launch());
    double flops = 2.0 * kFmaPeakChains * iters * double(grid) * kFmaPeakBlock;
    gflops = flops / median(ms) / 1e6;
  }
  return gflops;
}

/// One l2l step on `coords` coordinates (one tensor, as PyTorch's batch in
/// torch_lstm.py) for a few launch shapes, and the FMA peak.
int bench(const std::shared_ptr<cuda::Device> &dev, const std::string &dir,
          int64_t coords, int steps, const std::string &peakCubin,
          const std::string &stem) {
  SafetensorsFile ref = SafetensorsFile::read(expectedPath(dir, "l2l"));
  cuda::Rule rule = loadLearned(dev, dir, stem);
  const RuleInfo &info = rule.info();
  std::vector<float> host(coords);
  for (int64_t i = 0; i < coords; ++i)
    host[i] = initialParam(0, i);
  cuda::Buffer dp(dev, coords * 4), dg(dev, coords * 4);
  dp.upload(host.data(), coords * 4);
  for (int64_t i = 0; i < coords; ++i)
    host[i] = gradient(0, i, 1);
  dg.upload(host.data(), coords * 4);
  std::vector<cuda::DeviceTensor> params = {{dp.get(), coords}},
                                  grads = {{dg.get(), coords}};
  // The default shape first (what users get: the optimizer picks the
  // largest block the kernel's registers allow, up to 16 coordinates a
  // thread, balanced over the device's waves of blocks); {6144, 384} is
  // the shape that was the default before the balancing (l2l on an H200).
  cuda::OptimizerOptions defaults;
  std::vector<std::pair<int64_t, unsigned>> shapes = {
      {defaults.chunkSize, defaults.blockSize},
      {4096, 128},
      {8192, 128},
      {4096, 256},
      {65536, 256},
      {6144, 384}};
  std::string configs;
  double defaultMs = 0, bestMs = 1e30;
  int64_t defaultChunks = 0, nonFinite = -1, defaultChunk = 0;
  unsigned defaultBlock = 0;
  auto timeShape = [&](int64_t chunk, unsigned block, bool first) {
    cuda::OptimizerOptions o;
    o.chunkSize = chunk;
    o.blockSize = block;
    cuda::Optimizer opt(rule, params, o);
    if (first) {
      defaultChunk = opt.options().chunkSize;
      defaultBlock = opt.options().blockSize;
    }
    setWeights(opt, info, ref);
    for (int i = 0; i < 2; ++i)
      opt.step(grads);
    opt.synchronize();
    std::vector<double> ms;
    for (int i = 0; i < steps; ++i) {
      auto t0 = Clock::now();
      opt.step(grads);
      opt.synchronize();
      ms.push_back(msSince(t0));
    }
    if (first) {
      defaultChunks = opt.numChunks();
      // The parameters after 2 + steps steps: all finite, or the timing
      // measured something else than the rule.
      dp.download(host.data(), coords * 4);
      nonFinite = 0;
      for (float x : host)
        nonFinite += !std::isfinite(x);
    }
    return median(ms);
  };
  for (auto [chunk, block] : shapes) {
    bool first = configs.empty();
    char row[160];
    // The default shape's failure is the row's; another shape's (say, a
    // block too large for the registers) is reported in its entry.
    try {
      double m = timeShape(chunk, block, first);
      if (first)
        defaultMs = m;
      bestMs = std::min(bestMs, m);
      if (first) {
        chunk = defaultChunk;
        block = defaultBlock;
      }
      std::snprintf(row, sizeof(row),
                    "%s{\"chunk\": %lld, \"block\": %u, \"step_ms\": %.4f}",
                    first ? "" : ", ", (long long)chunk, block, m);
    } catch (const Error &e) {
      if (first)
        throw;
      std::fprintf(stderr, "optim-gpu-learned: chunk %lld x block %u: %s\n",
                   (long long)chunk, block, e.what());
      std::snprintf(row, sizeof(row),
                    ", {\"chunk\": %lld, \"block\": %u, \"error\": \"",
                    (long long)chunk, block);
      configs += row + jsonSafe(e.what()) + "\"}";
      continue;
    }
    configs += row;
  }
  double flops = kFlopsPerCoordinate * double(coords);
  // DRAM traffic if every new h is read back from L1/L2: p read + write, g,
  // the 80 state floats read and written.
  double bytes = 4.0 * (3 + 2 * 80) * double(coords);
  std::string peakPath = peakCubin;
  double peak = 0;
  int sms = 0;
  for (int attempt = 0; attempt < 2 && peak == 0; ++attempt) {
    if (attempt == 1)
      peakPath = pickCubin(dir, "fma_peak", dev->arch());
    if (peakPath.empty())
      continue;
    try {
      peak = measurePeak(dev, peakPath, &sms);
    } catch (const Error &e) {
      std::fprintf(stderr, "optim-gpu-learned: FMA peak: %s\n", e.what());
    }
  }
  std::printf("{\"device\": \"%s\", \"arch\": \"%s\", \"rule\": \"l2l\", "
              "\"cubin\": \"%s\", "
              "\"code\": \"%s\", \"coordinates\": %lld, \"chunks\": %lld, "
              "\"steps\": %d, "
              "\"step_ms\": %.4f, \"best_step_ms\": %.4f, "
              "\"flops_per_coordinate\": %.0f, \"gflops\": %.1f, "
              "\"best_gflops\": %.1f, \"state_GBps\": %.1f, "
              "\"non_finite\": %lld, \"sms\": %d, \"fma_peak_cubin\": \"%s\", "
              "\"fma_peak_gflops\": %.1f, \"peak_share\": %.4f, "
              "\"best_peak_share\": %.4f, \"configs\": [%s]}\n",
              jsonSafe(dev->name()).c_str(), dev->arch().c_str(),
              jsonSafe(stem).c_str(), cuda::toString(rule.source()),
              (long long)coords,
              (long long)defaultChunks, steps, defaultMs, bestMs,
              kFlopsPerCoordinate, flops / defaultMs / 1e6,
              flops / bestMs / 1e6, bytes / defaultMs / 1e6,
              (long long)nonFinite, sms,
              peak > 0 ? jsonSafe(peakPath).c_str() : "",
              peak, peak > 0 ? flops / defaultMs / 1e6 / peak : 0.0,
              peak > 0 ? flops / bestMs / 1e6 / peak : 0.0, configs.c_str());
  return nonFinite == 0 && peak > 0 ? 0 : 1;
}

int usage() {
  std::fprintf(stderr,
               "usage: optim-gpu-learned --write-reference DIR [--weights "
               "FILE] [--rule NAME]"
               "\n       optim-gpu-learned --check DIR [--rule NAME] [--cubin "
               "STEM]"
               "\n       optim-gpu-learned --bench DIR [--coordinates N] "
               "[--steps N] [--peak-cubin FILE] [--cubin STEM]"
               "\n       optim-gpu-learned --probe\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  std::string mode, dir, weights, peakCubin, ruleName = "l2l", stem;
  int64_t coords = 10000000;
  int steps = 20;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool hasValue = i + 1 < argc;
    if ((a == "--write-reference" || a == "--check" || a == "--bench") &&
        hasValue && mode.empty()) {
      mode = a;
      dir = argv[++i];
    } else if (a == "--probe" && mode.empty()) {
      mode = a;
    } else if (a == "--weights" && hasValue) {
      weights = argv[++i];
    } else if (a == "--rule" && hasValue) {
      ruleName = argv[++i];
    } else if (a == "--cubin" && hasValue) {
      stem = argv[++i];
    } else if (a == "--peak-cubin" && hasValue) {
      peakCubin = argv[++i];
    } else if (a == "--coordinates" && hasValue) {
      coords = std::atoll(argv[++i]);
    } else if (a == "--steps" && hasValue) {
      steps = std::atoi(argv[++i]);
    } else {
      return usage();
    }
  }
  // l2l's reference uses its trained weights; other rules draw theirs.
  if (mode.empty() || (mode != "--write-reference" && !weights.empty()) ||
      (mode == "--write-reference" && ruleName == "l2l" && weights.empty()) ||
      (mode == "--bench" && ruleName != "l2l") || ruleName.empty() ||
      coords < 1 || steps < 1)
    return usage();
  try {
    if (mode == "--write-reference")
      return writeReference(dir, weights, ruleName);
    std::string why;
    auto driver = cuda::tryLoadDriver(&why);
    if (!driver) {
      std::fprintf(stderr, "optim-gpu-learned: no GPU: %s\n", why.c_str());
      return 1;
    }
    auto dev = cuda::Device::open(driver, 0);
    std::fprintf(stderr, "device: %s (%s)\n", dev->name().c_str(),
                 dev->arch().c_str());
    if (mode == "--probe")
      return 0;
    if (stem.empty())
      stem = ruleName;
    if (mode == "--check")
      return check(dev, dir, ruleName, stem);
    return bench(dev, dir, coords, steps, peakCubin, stem);
  } catch (const Error &e) {
    std::fprintf(stderr, "optim-gpu-learned: %s\n", e.what());
    return 1;
  }
}
