//===- RulesBench.cpp - compiled update rules against the memory limit ---===//
//
// Prints one JSON object of timings (seconds, medians over interleaved
// repetitions) that bench/run turns into ratios. Baselines, compiled with
// -O3 -march=native -fopenmp:
//   traffic: moves exactly Adam's bytes (read p, g, m, v; write p, m, v)
//            with trivial arithmetic: the memory limit of an Adam step;
//   fused:   a hand-written fused C++ Adam loop, as in DeepSpeed's CPU Adam;
//   traffic_prefetch: traffic with the compiled rules' software prefetches;
//   lamb:    LAMB (a rule with tensor reductions, two passes) against
//            Adam's compiled step and a hand-written two-pass C++ LAMB.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <omp.h>
#include <string>
#include <vector>

using namespace optim;
using Clock = std::chrono::steady_clock;

namespace {

struct Model {
  std::vector<std::vector<float>> p, g;
  int64_t total = 0;
  void add(int64_t n) {
    p.emplace_back(n, 0.01f);
    g.emplace_back(n);
    for (int64_t i = 0; i < n; ++i)
      g.back()[i] = 1e-3f * float((i * 7919) % 2001 - 1000) / 1000.0f;
    total += n;
  }
};

/// GPT-2 small's 148 tensors (wte, wpe, 12 blocks of 12, ln_f) with the
/// width scaled to 384 and the vocabulary to 8850: about 25M parameters.
Model gpt2Shaped() {
  const int64_t d = 384, ctx = 1024, vocab = 8850;
  Model model;
  model.add(vocab * d);
  model.add(ctx * d);
  for (int layer = 0; layer < 12; ++layer) {
    for (int64_t n : {d, d, d * 3 * d, 3 * d, d * d, d, d, d, d * 4 * d, 4 * d,
                      4 * d * d, d})
      model.add(n);
  }
  model.add(d);
  model.add(d);
  return model;
}

Model manySmall() {
  Model model;
  for (int i = 0; i < 2000; ++i)
    model.add(1000);
  return model;
}

struct Chunk {
  float *p, *m, *v;
  const float *g;
  int64_t n;
};

/// The baselines run on the very buffers the compiled step uses (the
/// parameters, the gradients and the optimizer's own m and v): with separate
/// copies, whichever kernel ran last would find its data in the (large) L3
/// cache and the others would not, which biases the ratios.
std::vector<Chunk> chunks(Model &model, const Optimizer &opt, int64_t size) {
  std::vector<Chunk> out;
  for (size_t k = 0; k < model.p.size(); ++k) {
    float *m = static_cast<float *>(const_cast<void *>(opt.state(k, "m")));
    float *v = static_cast<float *>(const_cast<void *>(opt.state(k, "v")));
    for (int64_t off = 0; off < int64_t(model.p[k].size()); off += size)
      out.push_back({model.p[k].data() + off, m + off, v + off,
                     model.g[k].data() + off,
                     std::min<int64_t>(size, model.p[k].size() - off)});
  }
  return out;
}

void trafficStep(const std::vector<Chunk> &cs) {
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < cs.size(); ++c) {
    const Chunk &k = cs[c];
#pragma omp simd
    for (int64_t i = 0; i < k.n; ++i) {
      float g = k.g[i];
      k.m[i] = k.m[i] + g;
      k.v[i] = k.v[i] + g;
      k.p[i] = k.p[i] - g;
    }
  }
}

/// The traffic kernel with the software prefetches the compiled rules use
/// (each stream 1 KiB ahead, clamped to the chunk): shows how much of the
/// compiled kernel's speed comes from prefetching alone.
void trafficPrefetchStep(const std::vector<Chunk> &cs) {
  constexpr int64_t ahead = 1024 / sizeof(float), line = 64 / sizeof(float);
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < cs.size(); ++c) {
    const Chunk &k = cs[c];
    const bool prefetch = k.n >= 4 * ahead;
    for (int64_t b = 0; b < k.n; b += line) {
      if (prefetch) {
        int64_t at = std::min(b + ahead, k.n - line);
        __builtin_prefetch(k.g + at, 0, 3);
        __builtin_prefetch(k.m + at, 0, 3);
        __builtin_prefetch(k.v + at, 0, 3);
        __builtin_prefetch(k.p + at, 0, 3);
      }
      int64_t e = std::min(b + line, k.n);
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        float g = k.g[i];
        k.m[i] = k.m[i] + g;
        k.v[i] = k.v[i] + g;
        k.p[i] = k.p[i] - g;
      }
    }
  }
}

void fusedAdamStep(const std::vector<Chunk> &cs, int64_t t) {
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  const float bc1 = 1 - std::pow(b1, float(t)),
              bc2 = 1 - std::pow(b2, float(t));
  const float step = lr / bc1, rbc2 = 1 / std::sqrt(bc2);
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < cs.size(); ++c) {
    const Chunk &k = cs[c];
#pragma omp simd
    for (int64_t i = 0; i < k.n; ++i) {
      float g = k.g[i];
      float m = b1 * k.m[i] + (1 - b1) * g;
      float v = b2 * k.v[i] + (1 - b2) * g * g;
      k.m[i] = m;
      k.v[i] = v;
      k.p[i] -= step * m / (std::sqrt(v) * rbc2 + eps);
    }
  }
}

/// LAMB (examples/lamb.optim) written by hand in two passes, as a careful
/// C++ implementation would: the first updates m and v and accumulates each
/// tensor's |w|^2 and |u|^2 per chunk (in double, as the compiled rule), the
/// second recomputes u from the stored moments and steps p. Its traffic
/// (read p, g, m, v, write m, v; read p, m, v, write p: 10 streams) is one
/// stream less than the compiled rule's (4, then 7), which recomputes the
/// moments instead of storing them in the first pass.
struct LambChunk {
  Chunk c;
  size_t tensor;
};

void lambStep(const std::vector<LambChunk> &cs, size_t tensors, int64_t t,
              std::vector<double> &partials, std::vector<float> &ratio) {
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-6f, wd = 0.01f;
  const float bc1 = 1 - std::pow(b1, float(t)),
              bc2 = 1 - std::pow(b2, float(t));
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < cs.size(); ++c) {
    const Chunk &k = cs[c].c;
    double ww = 0, uu = 0;
#pragma omp simd reduction(+ : ww, uu)
    for (int64_t i = 0; i < k.n; ++i) {
      float g = k.g[i];
      float m = b1 * k.m[i] + (1 - b1) * g;
      float v = b2 * k.v[i] + (1 - b2) * g * g;
      k.m[i] = m;
      k.v[i] = v;
      float u = m / bc1 / (std::sqrt(v / bc2) + eps) + wd * k.p[i];
      ww += double(k.p[i]) * k.p[i];
      uu += double(u) * u;
    }
    partials[2 * c] = ww;
    partials[2 * c + 1] = uu;
  }
  std::vector<double> norms(2 * tensors, 0.0);
  for (size_t c = 0; c < cs.size(); ++c) {
    norms[2 * cs[c].tensor] += partials[2 * c];
    norms[2 * cs[c].tensor + 1] += partials[2 * c + 1];
  }
  for (size_t k = 0; k < tensors; ++k) {
    double wn = std::sqrt(norms[2 * k]), un = std::sqrt(norms[2 * k + 1]);
    ratio[k] = wn > 0 && un > 0 ? float(wn / un) : 1.0f;
  }
#pragma omp parallel for schedule(static)
  for (size_t c = 0; c < cs.size(); ++c) {
    const Chunk &k = cs[c].c;
    const float step = lr * ratio[cs[c].tensor];
#pragma omp simd
    for (int64_t i = 0; i < k.n; ++i) {
      float u = k.m[i] / bc1 / (std::sqrt(k.v[i] / bc2) + eps) + wd * k.p[i];
      k.p[i] -= step * u;
    }
  }
}

double seconds(const std::function<void()> &fn) {
  auto start = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

} // namespace

int main(int argc, char **argv) {
  // Idle OpenMP threads must not spin while the compiled kernel runs.
  setenv("KMP_BLOCKTIME", "0", 1);
  unsigned threads = 2;
  int reps = 15;
  std::string examples = "examples";
  CompileOptions compileOptions;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (a == "--relaxed-fp")
      compileOptions.relaxedFP = true;
    else if (a == "--vector-width" && i + 1 < argc)
      compileOptions.vectorWidth = std::atoi(argv[++i]);
    else if (a == "--prefetch-distance" && i + 1 < argc)
      compileOptions.prefetchDistance = std::atoi(argv[++i]);
    else if (a == "--examples" && i + 1 < argc)
      examples = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--reps N] [--vector-width N] "
                   "[--relaxed-fp] [--prefetch-distance BYTES] "
                   "[--examples DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  omp_set_num_threads(threads);

  // Compile latency, without the on-disk cache: the first compilation in a
  // process (cold: LLVM's target initialization included), then the median
  // of later ones.
  CompileOptions uncached = compileOptions;
  uncached.useCache = false;
  const std::string adamPath = examples + "/adam.optim";
  Rule adam;
  double cold =
      seconds([&] { adam = Compiler(uncached).compileFile(adamPath); });
  // The same rule with relaxed rounding (reciprocals of the bias
  // corrections, fused multiply-adds), measured in a phase of its own.
  CompileOptions relaxedOptions = uncached;
  relaxedOptions.relaxedFP = true;
  Rule adamRelaxed = Compiler(relaxedOptions).compileFile(adamPath);
  std::vector<double> warmTimes;
  for (int i = 0; i < 5; ++i)
    warmTimes.push_back(
        seconds([&] { Compiler(uncached).compileFile(adamPath); }));

  // Cached compile latency: one miss fills a fresh cache directory, then
  // every compilation (a new Compiler each time) must be served by it.
  std::vector<double> cachedTimes;
  {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "optim-bench-cache-XXXXXX")
            .string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("optim-bench-rules: mkdtemp");
      return 1;
    }
    CompileOptions cachedOptions = compileOptions;
    cachedOptions.useCache = true;
    cachedOptions.cacheDirectory = tmpl;
    {
      Compiler miss(cachedOptions);
      miss.compileFile(adamPath);
      if (miss.lastWasCached()) {
        std::fprintf(stderr,
                     "optim-bench-rules: the first compilation into "
                     "the fresh cache %s was a hit\n",
                     tmpl.c_str());
        return 1;
      }
    }
    for (int i = 0; i < 7; ++i) {
      bool hit = false;
      cachedTimes.push_back(seconds([&] {
        Compiler compiler(cachedOptions);
        compiler.compileFile(adamPath);
        hit = compiler.lastWasCached();
      }));
      if (!hit) {
        std::fprintf(stderr,
                     "optim-bench-rules: compilation %d of adam.optim "
                     "was not served by the cache %s\n",
                     i + 1, tmpl.c_str());
        return 1;
      }
    }
    std::error_code ignored;
    std::filesystem::remove_all(tmpl, ignored);
  }

  auto measure = [&](const Rule &rule, Model &model, double &compiled,
                     double &traffic, double &fused, double &trafficPrefetch) {
    std::vector<Param> params;
    std::vector<Grad> grads;
    for (size_t k = 0; k < model.p.size(); ++k) {
      params.emplace_back(model.p[k].data(), int64_t(model.p[k].size()));
      grads.emplace_back(model.g[k].data(), int64_t(model.g[k].size()));
    }
    OptimizerOptions options;
    options.threads = threads;
    Optimizer opt(rule, params, options);
    std::vector<Chunk> cs = chunks(model, opt, options.chunkSize);
    std::vector<double> a, b, c, d;
    // Warm up every path once (page faults, thread start).
    opt.step(grads);
    trafficStep(cs);
    fusedAdamStep(cs, 1);
    trafficPrefetchStep(cs);
    for (int r = 0; r < reps; ++r) {
      a.push_back(seconds([&] { opt.step(grads); }));
      b.push_back(seconds([&] { trafficStep(cs); }));
      c.push_back(seconds([&] { fusedAdamStep(cs, r + 2); }));
      d.push_back(seconds([&] { trafficPrefetchStep(cs); }));
    }
    compiled = median(a);
    traffic = median(b);
    fused = median(c);
    trafficPrefetch = median(d);
  };

  Model big = gpt2Shaped();
  double bigCompiled, bigTraffic, bigFused, bigTrafficPrefetch;
  measure(adam, big, bigCompiled, bigTraffic, bigFused, bigTrafficPrefetch);
  double bigRelaxed, bigRelaxedTraffic, bigRelaxedFused;
  double bigRelaxedTrafficPrefetch;
  measure(adamRelaxed, big, bigRelaxed, bigRelaxedTraffic, bigRelaxedFused,
          bigRelaxedTrafficPrefetch);
  // LAMB (two passes over memory: examples/lamb.optim) on the same list,
  // against Adam's step on it, measured side by side, and the hand-written
  // two-pass loop above.
  double lambCompiled, lambAdam, lambCpp;
  {
    Rule lamb = Compiler(compileOptions).compileFile(examples + "/lamb.optim");
    std::vector<Param> params;
    std::vector<Grad> grads;
    for (size_t k = 0; k < big.p.size(); ++k) {
      params.emplace_back(big.p[k].data(), big.p[k].size());
      grads.emplace_back(big.g[k].data(), big.g[k].size());
    }
    OptimizerOptions options;
    options.threads = threads;
    Optimizer lambOpt(lamb, params, options), adamOpt(adam, params, options);
    std::vector<LambChunk> cs;
    for (size_t k = 0; k < big.p.size(); ++k) {
      float *m = static_cast<float *>(const_cast<void *>(lambOpt.state(k, "m")));
      float *v = static_cast<float *>(const_cast<void *>(lambOpt.state(k, "v")));
      for (int64_t off = 0; off < int64_t(big.p[k].size());
           off += options.chunkSize)
        cs.push_back({{big.p[k].data() + off, m + off, v + off,
                       big.g[k].data() + off,
                       std::min<int64_t>(options.chunkSize,
                                         big.p[k].size() - off)},
                      k});
    }
    std::vector<double> partials(2 * cs.size());
    std::vector<float> ratio(big.p.size());
    std::vector<double> a, b, c;
    lambOpt.step(grads);
    adamOpt.step(grads);
    lambStep(cs, big.p.size(), 1, partials, ratio);
    for (int r = 0; r < reps; ++r) {
      a.push_back(seconds([&] { lambOpt.step(grads); }));
      b.push_back(seconds([&] { adamOpt.step(grads); }));
      c.push_back(seconds(
          [&] { lambStep(cs, big.p.size(), r + 2, partials, ratio); }));
    }
    lambCompiled = median(a);
    lambAdam = median(b);
    lambCpp = median(c);
  }
  int64_t bigParams = big.total;
  size_t bigTensors = big.p.size();
  big = Model();
  Model small = manySmall();
  int64_t smallParams = small.total;
  size_t smallTensors = small.p.size();
  double smallCompiled, smallTraffic, smallFused, smallTrafficPrefetch;
  measure(adam, small, smallCompiled, smallTraffic, smallFused,
          smallTrafficPrefetch);

  std::printf("{\"threads\": %u, \"reps\": %d, \"gpt2_params\": %lld, "
              "\"gpt2_tensors\": %zu, "
              "\"gpt2_adam_s\": %.6g, \"gpt2_traffic_s\": %.6g, "
              "\"gpt2_fused_cpp_s\": %.6g, "
              "\"small_params\": %lld, \"small_tensors\": %zu, "
              "\"small_adam_s\": %.6g, "
              "\"small_traffic_s\": %.6g, \"small_fused_cpp_s\": %.6g, "
              "\"compile_cold_s\": %.6g, \"compile_warm_s\": %.6g, "
              "\"compile_cached_s\": %.6g, "
              "\"gpt2_adam_relaxed_s\": %.6g, "
              "\"gpt2_traffic_relaxed_phase_s\": %.6g, "
              "\"gpt2_traffic_prefetch_s\": %.6g, "
              "\"small_traffic_prefetch_s\": %.6g, "
              "\"gpt2_lamb_s\": %.6g, \"gpt2_lamb_adam_s\": %.6g, "
              "\"gpt2_lamb_cpp_s\": %.6g}\n",
              threads, reps, (long long)bigParams, bigTensors, bigCompiled,
              bigTraffic, bigFused, (long long)smallParams, smallTensors,
              smallCompiled, smallTraffic, smallFused, cold, median(warmTimes),
              median(cachedTimes), bigRelaxed, bigRelaxedTraffic,
              bigTrafficPrefetch, smallTrafficPrefetch, lambCompiled,
              lambAdam, lambCpp);
  return 0;
}
