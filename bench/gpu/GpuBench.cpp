//===- GpuBench.cpp - compiled rules on a CUDA GPU: numerics and bandwidth ===//
//
// Runtime only (no LLVM/MLIR): loads the cubins + manifests that
// `optimc --target=cuda --emit=cubin` wrote, and
//   --check DIR   runs every example rule found in DIR for 20 steps on awkward
//                 sizes (aligned tensors: vector path; a tensor offset by one
//                 element: scalar path) and compares with a float reference
//                 that evaluates the published formula in the kernel's
//                 operation order (no FMA contraction), per coordinate (LAMB,
//                 with tensor reductions: its norms per tensor, in double);
//   --bench DIR   runs DIR's Adam on the GPT-2-small-shaped parameter
//                 list (~124M fp32 coordinates) and a device-to-device copy of
//                 the same number of bytes moved (read + write), timing both
//                 on the same stream, and prints one JSON line;
//   --bench-muon DIR  times DIR's muon (examples/muon.optim) on GPT-2 small's
//                 48 hidden matrices (--width D: of width D instead of 768)
//                 and prints one JSON line.
// Exit status 1 when a check fails or anything goes wrong.
//
//===----------------------------------------------------------------------===//

#include "optim/Cuda.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace optim;
using namespace optim::cuda;

namespace {

using Hypers = std::map<std::string, float>;
/// One coordinate's step: p, g, states (in manifest order), t.
using RefStep = std::function<void(float &p, float g, std::vector<float> &s,
                                   int64_t t, const Hypers &h)>;
/// One whole tensor's step, for rules with tensor reductions: p, g and
/// s[state][coordinate].
using TensorStep =
    std::function<void(std::vector<float> &p, const std::vector<float> &g,
                       std::vector<std::vector<float>> &s, int64_t t,
                       const Hypers &h)>;

float sgnf(float x) { return x > 0 ? 1.f : x < 0 ? -1.f : x; }

/// The examples' formulas, in the order the kernels evaluate them (the
/// front end's order), in float; powf for the bias corrections.
std::map<std::string, RefStep> references() {
  std::map<std::string, RefStep> r;
  r["sgd"] = [](float &p, float g, std::vector<float> &, int64_t,
                const Hypers &h) { p = p - h.at("lr") * g; };
  r["momentum"] = [](float &p, float g, std::vector<float> &s, int64_t,
                     const Hypers &h) {
    s[0] = h.at("mu") * s[0] + g;
    p = p - h.at("lr") * s[0];
  };
  r["nesterov"] = [](float &p, float g, std::vector<float> &s, int64_t,
                     const Hypers &h) {
    s[0] = h.at("mu") * s[0] + g;
    p = p - h.at("lr") * (g + h.at("mu") * s[0]);
  };
  r["rmsprop"] = [](float &p, float g, std::vector<float> &s, int64_t,
                    const Hypers &h) {
    float a = h.at("alpha");
    s[0] = a * s[0] + (1 - a) * g * g;
    p = p - h.at("lr") * g / (std::sqrt(s[0]) + h.at("eps"));
  };
  r["adagrad"] = [](float &p, float g, std::vector<float> &s, int64_t,
                    const Hypers &h) {
    s[0] = s[0] + g * g;
    p = p - h.at("lr") * g / (std::sqrt(s[0]) + h.at("eps"));
  };
  r["lion"] = [](float &p, float g, std::vector<float> &s, int64_t,
                 const Hypers &h) {
    float b1 = h.at("beta1"), b2 = h.at("beta2");
    float c = b1 * s[0] + (1 - b1) * g;
    p = p - h.at("lr") * (sgnf(c) + h.at("weight_decay") * p);
    s[0] = b2 * s[0] + (1 - b2) * g;
  };
  auto adamCore = [](float &p, float g, std::vector<float> &s, int64_t t,
                     const Hypers &h) {
    float b1 = h.at("beta1"), b2 = h.at("beta2");
    s[0] = b1 * s[0] + (1 - b1) * g;
    s[1] = b2 * s[1] + (1 - b2) * g * g;
    float mhat = s[0] / (1 - std::pow(b1, float(t)));
    float vhat = s[1] / (1 - std::pow(b2, float(t)));
    p = p - h.at("lr") * mhat / (std::sqrt(vhat) + h.at("eps"));
  };
  r["adam"] = adamCore;
  r["adamw"] = [adamCore](float &p, float g, std::vector<float> &s, int64_t t,
                          const Hypers &h) {
    p = p - h.at("lr") * h.at("weight_decay") * p;
    adamCore(p, g, s, t, h);
  };
  r["amsgrad"] = [](float &p, float g, std::vector<float> &s, int64_t t,
                    const Hypers &h) {
    float b1 = h.at("beta1"), b2 = h.at("beta2");
    s[0] = b1 * s[0] + (1 - b1) * g;
    s[1] = b2 * s[1] + (1 - b2) * g * g;
    s[2] = std::max(s[2], s[1]);
    float mhat = s[0] / (1 - std::pow(b1, float(t)));
    p = p - h.at("lr") * mhat /
                (std::sqrt(s[2]) / std::sqrt(1 - std::pow(b2, float(t))) +
                 h.at("eps"));
  };
  return r;
}

/// LAMB (examples/lamb.optim): u per coordinate as the kernels evaluate it,
/// the norms of p and u over the tensor in double (the kernels' f64
/// partials, summed in another order: the last bits may differ), rounded
/// to float, then the update.
void lambStep(std::vector<float> &p, const std::vector<float> &g,
              std::vector<std::vector<float>> &s, int64_t t, const Hypers &h) {
  float b1 = h.at("beta1"), b2 = h.at("beta2");
  std::vector<float> u(p.size());
  double pp = 0, uu = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    s[0][k] = b1 * s[0][k] + (1 - b1) * g[k];
    s[1][k] = b2 * s[1][k] + (1 - b2) * g[k] * g[k];
    u[k] = s[0][k] / (1 - std::pow(b1, float(t))) /
               (std::sqrt(s[1][k] / (1 - std::pow(b2, float(t)))) +
                h.at("eps")) +
           h.at("weight_decay") * p[k];
    pp += double(p[k]) * p[k];
    uu += double(u[k]) * u[k];
  }
  float wn = float(std::sqrt(pp)), un = float(std::sqrt(uu));
  float ratio = wn > 0 ? (un > 0 ? wn / un : 1.f) : 1.f;
  for (size_t k = 0; k < p.size(); ++k)
    p[k] = p[k] - h.at("lr") * ratio * u[k];
}

/// Every rule the check runs, as whole-tensor steps.
std::map<std::string, TensorStep> tensorReferences() {
  std::map<std::string, TensorStep> r;
  for (auto &[name, ref] : references())
    r[name] = [ref = ref](std::vector<float> &p, const std::vector<float> &g,
                          std::vector<std::vector<float>> &s, int64_t t,
                          const Hypers &h) {
      std::vector<float> st(s.size());
      for (size_t k = 0; k < p.size(); ++k) {
        for (size_t j = 0; j < s.size(); ++j)
          st[j] = s[j][k];
        ref(p[k], g[k], st, t, h);
        for (size_t j = 0; j < s.size(); ++j)
          s[j][k] = st[j];
      }
    };
  r["lamb"] = lambStep;
  return r;
}

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

/// DIR/<rule>.<arch>.cubin for the device's architecture, else the same
/// major architecture's .0 (sm_80 cubins run on sm_86 and sm_89); empty when
/// neither exists.
std::string pickCubin(const std::string &dir, const std::string &rule,
                      const std::string &arch) {
  std::string exact = dir + "/" + rule + "." + arch + ".cubin";
  if (exists(exact))
    return exact;
  if (arch.size() >= 5) {
    std::string base =
        dir + "/" + rule + "." + arch.substr(0, arch.size() - 1) + "0.cubin";
    if (exists(base))
      return base;
  }
  return "";
}

/// Runs one rule on the GPU and the reference; returns the largest error in
/// units of max(|p|, 1e-3) (relative, floored).
int checkRule(const std::shared_ptr<Device> &dev, const std::string &dir,
              const std::string &name, const TensorStep &ref) {
  std::string cubin = pickCubin(dir, name, dev->arch());
  if (cubin.empty()) {
    std::printf("check %-9s FAIL (no cubin for %s in %s)\n", name.c_str(),
                dev->arch().c_str(), dir.c_str());
    return 1;
  }
  cuda::Rule rule = dev->loadRule(cubin);
  const RuleInfo &info = rule.info();
  // Aligned tensors of awkward sizes, and one that starts one element into
  // an allocation (scalar path): 1, 3, 1023, 4097, 100003, and 4099 at +1.
  std::vector<int64_t> sizes = {1, 3, 1023, 4097, 100003, 4099};
  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> p(sizes.size()), g(sizes.size());
  std::vector<Buffer> dp, dg;
  std::vector<DeviceTensor> params, grads;
  for (size_t i = 0; i < sizes.size(); ++i) {
    bool misaligned = i + 1 == sizes.size();
    for (int64_t k = 0; k < sizes[i]; ++k) {
      p[i].push_back(normal(rng));
      g[i].push_back(normal(rng) * 0.1f);
    }
    size_t off = misaligned ? 4 : 0;
    dp.emplace_back(dev, sizes[i] * 4 + off);
    dg.emplace_back(dev, sizes[i] * 4 + off);
    dp.back().upload(p[i].data(), sizes[i] * 4, off);
    dg.back().upload(g[i].data(), sizes[i] * 4, off);
    params.push_back({dp.back().get() + off, sizes[i]});
    grads.push_back({dg.back().get() + off, sizes[i]});
  }
  OptimizerOptions options;
  options.chunkSize = 2048; // several chunks per tensor
  options.blockSize = 256;
  cuda::Optimizer opt(rule, params, options);
  Hypers h;
  for (const HyperParam &hp : info.hypers)
    h[hp.name] = float(hp.defaultValue);
  // A learning rate that moves p visibly in 20 steps.
  if (h.count("lr")) {
    h["lr"] = 0.01f;
    opt.set("lr", 0.01);
  }
  const int steps = 20;
  for (int s = 0; s < steps; ++s)
    opt.step(grads);
  opt.synchronize();
  // Error relative to how far the coordinate moved: the bias corrections
  // (libdevice's powf against libm's, an ulp or two apart) scale whole
  // steps; everything else rounds identically (IEEE, no FMA), so most
  // coordinates are bit-identical.
  double worst = 0;
  int64_t identical = 0, count = 0;
  size_t numStates = info.states.size();
  for (size_t i = 0; i < sizes.size(); ++i) {
    bool misaligned = i + 1 == sizes.size();
    std::vector<float> got(sizes[i]);
    dp[i].download(got.data(), sizes[i] * 4, misaligned ? 4 : 0);
    std::vector<float> want = p[i];
    std::vector<std::vector<float>> st;
    for (size_t s = 0; s < numStates; ++s)
      st.emplace_back(sizes[i], float(info.states[s].init));
    for (int t = 1; t <= steps; ++t)
      ref(want, g[i], st, t, h);
    for (int64_t k = 0; k < sizes[i]; ++k) {
      float x = want[k];
      double moved = std::fabs(double(x) - p[i][k]);
      double err = std::fabs(double(got[k]) - x) /
                   (moved + 1e-7 * std::fabs(double(x)) + 1e-30);
      worst = std::max(worst, err);
      identical += got[k] == x;
      ++count;
    }
  }
  const double tol = 2e-3;
  bool ok = worst <= tol;
  std::printf("check %-9s %s  max error %.3g of the movement (tolerance "
              "%.0e), %.2f%% bit-identical, %s (%s), %lld chunks\n",
              name.c_str(), ok ? "OK  " : "FAIL", worst, tol,
              100.0 * identical / count, dev->arch().c_str(),
              cuda::toString(rule.source()), (long long)opt.numChunks());
  return ok ? 0 : 1;
}

/// GPT-2 small (124M): the shapes of its parameter tensors.
std::vector<int64_t> gpt2Sizes() {
  const int64_t d = 768, vocab = 50257, ctx = 1024, layers = 12;
  std::vector<int64_t> s = {vocab * d, ctx * d};
  for (int64_t l = 0; l < layers; ++l) {
    int64_t layer[] = {d, d, d * 3 * d, 3 * d, d * d,     d,
                       d, d, d * 4 * d, 4 * d, 4 * d * d, d};
    s.insert(s.end(), std::begin(layer), std::end(layer));
  }
  s.push_back(d);
  s.push_back(d);
  return s;
}

int bench(const std::shared_ptr<Device> &dev, const std::string &dir,
          int steps) {
  std::string cubin = pickCubin(dir, "adam", dev->arch());
  if (cubin.empty())
    throw Error("no adam cubin for " + dev->arch() + " in " + dir);
  cuda::Rule rule = dev->loadRule(cubin);
  const RuleInfo &info = rule.info();
  std::vector<int64_t> sizes = gpt2Sizes();
  int64_t total = 0;
  for (int64_t s : sizes)
    total += s;
  std::vector<Buffer> dp, dg;
  std::vector<DeviceTensor> params, grads;
  std::vector<float> host;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (int64_t s : sizes) {
    host.resize(s);
    for (float &x : host)
      x = normal(rng) * 0.02f;
    dp.emplace_back(dev, s * 4);
    dp.back().upload(host.data(), s * 4);
    for (float &x : host)
      x *= 0.1f;
    dg.emplace_back(dev, s * 4);
    dg.back().upload(host.data(), s * 4);
    params.push_back({dp.back().get(), s});
    grads.push_back({dg.back().get(), s});
  }
  // Bytes per coordinate: p read+write, g read, each state read+write.
  double bytesPerCoord = 4.0 * (3 + 2 * info.states.size());
  double bytes = bytesPerCoord * double(total);
  using clock = std::chrono::steady_clock;
  CUstream stream = nullptr;
  const DriverAPI &d = dev->driver();
  dev->makeCurrent();
  d.check(d.cuStreamCreate(&stream, 0), "cuStreamCreate");
  auto sync = [&] {
    d.check(d.cuStreamSynchronize(stream), "cuStreamSynchronize");
  };
  auto timeIt = [&](const std::function<void()> &body) {
    for (int i = 0; i < 3; ++i)
      body();
    sync();
    auto t0 = clock::now();
    for (int i = 0; i < steps; ++i)
      body();
    sync();
    return std::chrono::duration<double, std::milli>(clock::now() - t0)
               .count() /
           steps;
  };
  // The default launch shape first (what users get: chosen by the
  // optimizer), then a few others.
  OptimizerOptions defaults;
  std::vector<std::pair<int64_t, unsigned>> shapes = {
      {defaults.chunkSize, defaults.blockSize},
      {4096, 256},
      {65536, 256},
      {65536, 512},
      {16384, 512},
      {16384, 1024}};
  std::string configs;
  double defaultMs = 0, bestMs = 1e30;
  int64_t defaultChunks = 0;
  for (auto [chunk, block] : shapes) {
    OptimizerOptions o;
    o.chunkSize = chunk;
    o.blockSize = block;
    o.stream = stream;
    cuda::Optimizer opt(rule, params, o);
    double ms = timeIt([&] { opt.step(grads); });
    if (configs.empty()) {
      defaultMs = ms;
      defaultChunks = opt.numChunks();
      // The automatic shape, as resolved (0 means "automatic").
      chunk = opt.options().chunkSize;
      block = opt.options().blockSize;
    }
    bestMs = std::min(bestMs, ms);
    char row[160];
    std::snprintf(row, sizeof(row),
                  "%s{\"chunk\": %lld, \"block\": %u, \"step_ms\": %.4f}",
                  configs.empty() ? "" : ", ", (long long)chunk, block, ms);
    configs += row;
  }
  // A copy that moves the same bytes: half of them read, half written.
  size_t copyBytes = size_t(bytes / 2) / 16 * 16;
  Buffer src(dev, copyBytes), dst(dev, copyBytes);
  double copyMs = timeIt([&] {
    d.check(d.cuMemcpyDtoDAsync(dst.get(), src.get(), copyBytes, stream),
            "cuMemcpyDtoDAsync");
  });
  d.check(d.cuStreamDestroy(stream), "cuStreamDestroy");
  double copyBW = 2.0 * copyBytes / copyMs;
  std::printf("{\"device\": \"%s\", \"arch\": \"%s\", \"rule\": \"%s\", "
              "\"code\": \"%s\", \"coordinates\": %lld, \"tensors\": %zu, "
              "\"chunks\": %lld, "
              "\"steps\": %d, \"step_ms\": %.4f, \"step_GBps\": %.1f, "
              "\"best_step_ms\": %.4f, \"copy_ms\": %.4f, \"copy_GBps\": %.1f, "
              "\"step_vs_copy_bandwidth\": %.3f, "
              "\"best_vs_copy_bandwidth\": %.3f, \"configs\": [%s]}\n",
              dev->name().c_str(), dev->arch().c_str(), info.name.c_str(),
              cuda::toString(rule.source()), (long long)total, sizes.size(),
              (long long)defaultChunks, steps,
              defaultMs, bytes / defaultMs / 1e6, bestMs, copyMs, copyBW / 1e6,
              (bytes / defaultMs) / copyBW, (bytes / bestMs) / copyBW,
              configs.c_str());
  return 0;
}

/// GPT-2 small's hidden matrices, as Muon trains them: per layer the
/// attention's qkv [d, 3d] and projection [d, d], the MLP's [d, 4d] and
/// [4d, d], d = 768 (smaller for bench/gpu/dry-run.sh).
std::vector<std::vector<int64_t>> gpt2Matrices(int64_t d) {
  const int64_t layers = 12;
  std::vector<std::vector<int64_t>> m;
  for (int64_t l = 0; l < layers; ++l) {
    m.push_back({d, 3 * d});
    m.push_back({d, d});
    m.push_back({d, 4 * d});
    m.push_back({4 * d, d});
  }
  return m;
}

/// DIR's muon (examples/muon.optim, f32) on gpt2Matrices(): the time of a
/// step (the momentum pass, NS(X) of every matrix on the module's matrix
/// kernels, the update), as one JSON line; the products' rate counts
/// 5 (4 m^2 n + 2 m^3) flops per matrix (m <= n).
int benchMuon(const std::shared_ptr<Device> &dev, const std::string &dir,
              int steps, int64_t width) {
  std::string cubin = pickCubin(dir, "muon", dev->arch());
  if (cubin.empty())
    throw Error("no muon cubin for " + dev->arch() + " in " + dir);
  cuda::Rule rule = dev->loadRule(cubin);
  std::vector<Buffer> dp, dg;
  std::vector<DeviceTensor> params, grads;
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  int64_t total = 0;
  double flops = 0;
  for (const std::vector<int64_t> &shape : gpt2Matrices(width)) {
    int64_t n = shape[0] * shape[1];
    std::vector<float> host(n);
    for (float &x : host)
      x = normal(rng) * 0.02f;
    dp.emplace_back(dev, n * 4);
    dp.back().upload(host.data(), n * 4);
    for (float &x : host)
      x *= 0.1f;
    dg.emplace_back(dev, n * 4);
    dg.back().upload(host.data(), n * 4);
    params.push_back({dp.back().get(), n, shape});
    grads.push_back({dg.back().get(), n});
    total += n;
    double a = double(std::min(shape[0], shape[1])),
           b = double(std::max(shape[0], shape[1]));
    flops += 5 * (4 * a * a * b + 2 * a * a * a);
  }
  const DriverAPI &d = dev->driver();
  dev->makeCurrent();
  CUstream stream = nullptr;
  d.check(d.cuStreamCreate(&stream, 0), "cuStreamCreate");
  OptimizerOptions o;
  o.stream = stream;
  double ms;
  {
    cuda::Optimizer opt(rule, params, o);
    for (int i = 0; i < 2; ++i)
      opt.step(grads);
    d.check(d.cuStreamSynchronize(stream), "cuStreamSynchronize");
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i)
      opt.step(grads);
    d.check(d.cuStreamSynchronize(stream), "cuStreamSynchronize");
    ms = std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - t0)
             .count() /
         steps;
  }
  d.check(d.cuStreamDestroy(stream), "cuStreamDestroy");
  std::printf("{\"device\": \"%s\", \"arch\": \"%s\", \"rule\": "
              "\"muon\", \"code\": \"%s\", \"width\": %lld, \"matrices\": %zu, "
              "\"coordinates\": %lld, \"steps\": %d, \"step_ms\": %.3f, "
              "\"ns_tflops\": %.2f}\n",
              dev->name().c_str(), dev->arch().c_str(),
              cuda::toString(rule.source()), (long long)width, params.size(),
              (long long)total,
              steps, ms, flops / ms / 1e9);
  return 0;
}

int usage() {
  std::fprintf(stderr, "usage: optim-gpu-bench --check DIR | --bench "
                       "DIR [--steps N] | --bench-muon DIR [--steps N] "
                       "[--width D]\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  std::string check, cubin, muon;
  int steps = 50;
  int64_t width = 768;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--check" && i + 1 < argc)
      check = argv[++i];
    else if (a == "--bench" && i + 1 < argc)
      cubin = argv[++i];
    else if (a == "--bench-muon" && i + 1 < argc)
      muon = argv[++i];
    else if (a == "--steps" && i + 1 < argc)
      steps = std::atoi(argv[++i]);
    else if (a == "--width" && i + 1 < argc)
      width = std::atoll(argv[++i]);
    else
      return usage();
  }
  if (int(!check.empty()) + int(!cubin.empty()) + int(!muon.empty()) != 1 ||
      steps < 1 || width < 1)
    return usage();
  try {
    std::string why;
    auto driver = tryLoadDriver(&why);
    if (!driver) {
      std::fprintf(stderr, "optim-gpu-bench: no GPU: %s\n", why.c_str());
      return 1;
    }
    auto dev = Device::open(driver, 0);
    std::fprintf(stderr, "device: %s (%s)\n", dev->name().c_str(),
                 dev->arch().c_str());
    if (!cubin.empty())
      return bench(dev, cubin, steps);
    if (!muon.empty())
      return benchMuon(dev, muon, steps, width);
    int failures = 0;
    for (auto &[name, ref] : tensorReferences())
      failures += checkRule(dev, check, name, ref);
    return failures ? 1 : 0;
  } catch (const Error &e) {
    std::fprintf(stderr, "optim-gpu-bench: %s\n", e.what());
    return 1;
  }
}
