//===- LearnedBench.cpp - the learned LSTM optimizer against the FMA peak -===//
//
// Prints one JSON object that bench/run turns into ratios. In one process,
// interleaved round by round (each figure the median of its repetitions):
//   learned: one step of examples/l2l.optim (optim::Optimizer::step, chunks
//            of 1024) on N coordinates of one tensor, for each N of --sizes
//            (fresh zero state, random weights), counting
//            2 (4*20*22 + 4*20*40 + 20) flops per coordinate as issue 4 does;
//   fma:     an FMA-bound microkernel: 24 independent accumulator chains of
//            one native vector per thread with AVX-512, 12 with 16 vector
//            registers (enough to cover the FMA latency on every FMA pipe,
//            and no spill), compiled with -O3 -march=native;
//   sgemm:   OpenBLAS's cblas_sgemm on a 2048^3 product, row-major, with
//            openblas_set_num_threads(threads) (when built with OpenBLAS);
//   activations: the part of the learned step that is not a matrix product,
//            alone: the two layers' LSTM cell updates (the rational tanh of
//            lib/Conversion/LearnedMath.h, two divisions per cell) with the
//            c and h state streams, on 4,096 coordinates per thread (in L2:
//            no memory stall, a lower bound on its time), gate
//            pre-activations read from a buffer instead of computed. It
//            runs on the same vector ports as the FMAs, so its time plus
//            that of the 4,980 FMAs per coordinate at the microkernel's
//            rate bounds any kernel that computes the products with those
//            FMAs (bench/run prints that ceiling).
// All use the same number of threads. Besides GFLOP/s (wall clock), each
// figure is also given per CPU-second of the process (all its threads): on a
// shared machine, that rate is that of the cores while they run this work,
// which time slicing disturbs far less than the wall clock.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#if OPTIM_BENCH_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace optim;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kFlopsPerCoordinate = 2.0 * (4 * 20 * 22 + 4 * 20 * 40 + 20);

double seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// CPU time of the whole process (all threads), in seconds.
double cpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The widest vector of the target: 16 floats with AVX-512.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
// Enough independent chains to cover the FMA latency of two pipes (4 or 5
// cycles), few enough to stay in registers: AVX-512 has 32 vector
// registers, AVX2 16 (24 chains there spill: 48 instead of 180-200 GFLOP/s on
// two Zen 3 cores).
constexpr int kChains = kLanes == 16 ? 24 : 12;

/// kChains independent chains acc = acc * m + a (each one FMA): 2 * kLanes *
/// kChains flops per iteration. The result is returned so that nothing is
/// optimized away.
__attribute__((noinline)) float fmaChains(int64_t iterations, float seed) {
  Vec acc[kChains];
  for (int k = 0; k < kChains; ++k)
    acc[k] = Vec{} + seed * float(k + 1);
  Vec m = Vec{} + 0.999999f, a = Vec{} + 1e-7f;
  // The empty asm hides m and a from the optimizer, so that the loop is
  // not reassociated or folded.
  asm volatile("" : "+v"(m), "+v"(a));
  for (int64_t i = 0; i < iterations; ++i)
    for (int k = 0; k < kChains; ++k)
      acc[k] = __builtin_elementwise_fma(acc[k], m, a);
  float sum = 0;
  for (int k = 0; k < kChains; ++k)
    for (int l = 0; l < kLanes; ++l)
      sum += acc[k][l];
  return sum;
}

/// GFLOP/s of `threads` threads each running fmaChains; `perCpuSecond`,
/// if given, receives GFLOP per CPU-second (the rate of one core while it
/// runs, whatever else the machine runs).
double fmaPeak(unsigned threads, double *perCpuSecond = nullptr) {
  const int64_t iterations = 20'000'000;
  std::vector<std::thread> pool;
  std::vector<float> sinks(threads);
  std::atomic<unsigned> ready{0};
  std::vector<double> times(threads);
  double cpuStart = cpuSeconds();
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ++ready;
      while (ready.load() < threads) {
      }
      auto begin = Clock::now();
      sinks[t] = fmaChains(iterations, 1e-3f * float(t + 1));
      times[t] = seconds(begin);
    });
  for (std::thread &th : pool)
    th.join();
  double flops = 2.0 * kLanes * kChains * double(iterations) * threads;
  if (perCpuSecond)
    *perCpuSecond = flops / (cpuSeconds() - cpuStart) / 1e9;
  if (sinks[0] == 12345.0f)
    std::fprintf(stderr, "unlikely\n");
  return flops / *std::max_element(times.begin(), times.end()) / 1e9;
}

/// One LSTM cell update per lane, the operations of lstmCellUpdate and
/// tanhRational (lib/Conversion/LearnedMath.h): sigmoid(z) = (1 +
/// tanh(z/2)) / 2, tanh = P/Q on a clamped argument, two divisions.
inline void tanhPQ(Vec x, Vec &p, Vec &q) {
  const Vec hi = Vec{} + 7.99881172180175781f, lo = -hi;
  x = __builtin_elementwise_max(__builtin_elementwise_min(x, hi), lo);
  Vec x2 = x * x;
  auto fma = [](Vec a, Vec b, float c) {
    return __builtin_elementwise_fma(a, b, Vec{} + c);
  };
  Vec a = Vec{} + -2.76076847742355e-16f;
  a = fma(x2, a, 2.00018790482477e-13f);
  a = fma(x2, a, -8.60467152213735e-11f);
  a = fma(x2, a, 5.12229709037114e-08f);
  a = fma(x2, a, 1.48572235717979e-05f);
  a = fma(x2, a, 6.37261928875436e-04f);
  a = fma(x2, a, 4.89352455891786e-03f);
  Vec b = Vec{} + 1.19825839466702e-06f;
  b = fma(x2, b, 1.18534705686654e-04f);
  b = fma(x2, b, 2.26843463243900e-03f);
  b = fma(x2, b, 4.89352518554385e-03f);
  p = x * a;
  q = b;
}

inline void lstmCell(Vec zi, Vec zf, Vec zg, Vec zo, Vec &c, Vec &h) {
  Vec pi, qi, pf, qf, pg, qg, po, qo, pc, qc;
  tanhPQ(zi * 0.5f, pi, qi);
  tanhPQ(zf * 0.5f, pf, qf);
  tanhPQ(zg, pg, qg);
  tanhPQ(zo * 0.5f, po, qo);
  Vec qiqg = qi * qg;
  Vec num = __builtin_elementwise_fma((pi + qi) * pg, qf, (pf + qf) * c * qiqg);
  c = num / (qf * qiqg * 2.0f);
  tanhPQ(c, pc, qc);
  h = (po + qo) * pc / (qo * qc * 2.0f);
}

/// The activation part of the learned step, `sweeps` times over 4,096
/// coordinates per thread (see the file comment): returns the step's
/// GFLOP/s as if the whole step took this long (kFlopsPerCoordinate per
/// coordinate), the median of `reps` passes; `perCpuSecond` receives the
/// same per CPU-second of the process.
double activationsOnly(unsigned threads, int reps, double *perCpuSecond,
                       int sweeps = 200) {
  constexpr int kHidden = 20, kLayers = 2;
  const int64_t n = 4096 * int64_t(threads);
  // State component u of layer l at [(l * kHidden + u) * n], as the
  // kernels keep a vector state (one stream per component).
  std::vector<float> c(size_t(kLayers) * kHidden * n, 0.5f),
      h(size_t(kLayers) * kHidden * n, 0.0f);
  // Gate pre-activations as a trained LSTM sees them: both signs, most
  // within a few units of 0, some saturated.
  Vec gates[kLayers][4][kHidden];
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (auto &layer : gates)
    for (auto &gate : layer)
      for (Vec &v : gate)
        for (int l = 0; l < kLanes; ++l)
          v[l] = normal(rng);
  auto block = [&](int64_t i) {
    for (int l = 0; l < kLayers; ++l)
      for (int u = 0; u < kHidden; ++u) {
        Vec zi = gates[l][0][u], zf = gates[l][1][u], zg = gates[l][2][u],
            zo = gates[l][3][u];
        // The gates change from block to block in the real step: keep the
        // compiler from hoisting the activations out of the loop.
        asm volatile("" : "+v"(zi), "+v"(zf), "+v"(zg), "+v"(zo));
        float *cp = &c[(size_t(l) * kHidden + u) * n + i];
        float *hp = &h[(size_t(l) * kHidden + u) * n + i];
        Vec cv, hv;
        __builtin_memcpy(&cv, cp, sizeof(Vec));
        lstmCell(zi, zf, zg, zo, cv, hv);
        __builtin_memcpy(cp, &cv, sizeof(Vec));
        __builtin_memcpy(hp, &hv, sizeof(Vec));
      }
  };
  auto pass = [&](int64_t begin, int64_t end) {
    for (int sweep = 0; sweep < sweeps; ++sweep)
      for (int64_t i = begin; i < end; i += kLanes)
        block(i);
  };
  std::vector<double> times, cpuTimes;
  for (int r = 0; r <= reps; ++r) {
    std::fill(c.begin(), c.end(), 0.5f);
    std::vector<std::thread> pool;
    int64_t per = (n / kLanes + threads - 1) / threads * kLanes;
    auto start = Clock::now();
    double cpuStart = cpuSeconds();
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back(pass, std::min<int64_t>(n, t * per),
                        std::min<int64_t>(n, (t + 1) * per));
    for (std::thread &th : pool)
      th.join();
    if (r > 0) { // The first pass faults the pages in.
      times.push_back(seconds(start));
      cpuTimes.push_back(cpuSeconds() - cpuStart);
    }
  }
  if (c[n / 2] == 12345.0f)
    std::fprintf(stderr, "unlikely\n");
  double flops = kFlopsPerCoordinate * double(n) * sweeps;
  *perCpuSecond = flops / median(cpuTimes) / 1e9;
  return flops / median(times) / 1e9;
}

#if OPTIM_BENCH_OPENBLAS
struct Sgemm {
  const int n = 2048;
  std::vector<float> a, b, c;
  Sgemm() : a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n) {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float &v : a)
      v = u(rng);
    for (float &v : b)
      v = u(rng);
  }
  double gflops(int reps) {
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      auto start = Clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f,
                  a.data(), n, b.data(), n, 0.0f, c.data(), n);
      times.push_back(seconds(start));
    }
    return 2.0 * double(n) * n * n / median(times) / 1e9;
  }
};
#endif

struct Learned {
  int64_t n;
  std::vector<float> p, g;
  Optimizer opt;
  Learned(const Rule &rule, int64_t n, unsigned threads,
          const std::vector<std::vector<float>> &weights)
      : n(n), p(n, 0.0f), g(n), opt(rule, {Param(p.data(), n)}, [&] {
          OptimizerOptions options;
          options.threads = threads;
          // Chunks of 1024 coordinates (the default is 32768), so that even
          // 10^4 coordinates keep both threads busy; a multiple of the
          // kernel's 64-coordinate blocks.
          options.chunkSize = 1024;
          return options;
        }()) {
    // Gradients over many magnitudes, so that both branches of log_sign run.
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < n; ++i)
      g[i] = normal(rng) * (i % 3 == 0 ? 1e-6f : 1e-2f);
    for (size_t w = 0; w < weights.size(); ++w)
      opt.setWeights(rule.info().weights[w].name, weights[w].data(),
                     int64_t(weights[w].size()));
  }
  /// Steps for about `budget` seconds (at least `minReps` of them) after
  /// one warm-up step; returns the median step's GFLOP/s.
  double gflops(int minReps, double budget, double *perCpuSecond) {
    opt.step({Grad(g.data(), n)});
    std::vector<double> times, cpuTimes;
    auto begin = Clock::now();
    while (int(times.size()) < minReps || seconds(begin) < budget) {
      auto start = Clock::now();
      double cpuStart = cpuSeconds();
      opt.step({Grad(g.data(), n)});
      times.push_back(seconds(start));
      cpuTimes.push_back(cpuSeconds() - cpuStart);
      if (times.size() >= 2000)
        break;
    }
    double flops = kFlopsPerCoordinate * double(n);
    *perCpuSecond = flops / median(cpuTimes) / 1e9;
    return flops / median(times) / 1e9;
  }
};

} // namespace

int main(int argc, char **argv) {
  std::string examples = "examples";
  unsigned threads = 2, learnedWidth = 0;
  int reps = 5;
  std::vector<int64_t> sizes = {10000, 100000, 1000000, 10000000};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--examples" && i + 1 < argc) {
      examples = argv[++i];
    } else if (a == "--learned-vector-width" && i + 1 < argc) {
      learnedWidth = unsigned(std::atoi(argv[++i]));
    } else if (a == "--sizes" && i + 1 < argc) {
      sizes.clear();
      std::stringstream list(argv[++i]);
      std::string item;
      while (std::getline(list, item, ','))
        sizes.push_back(std::atoll(item.c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--reps N] [--sizes N,N,...] "
                   "[--examples DIR] [--learned-vector-width N]\n",
                   argv[0]);
      return 2;
    }
  }
  if (threads < 1 || reps < 1 || sizes.empty() ||
      std::any_of(sizes.begin(), sizes.end(),
                  [](int64_t n) { return n < 1; })) {
    std::fprintf(stderr, "%s: threads, reps and sizes must be positive\n",
                 argv[0]);
    return 2;
  }
  try {
    CompileOptions options;
    options.learnedVectorWidth = learnedWidth;
    Rule rule = Compiler(options).compileFile(examples + "/l2l.optim");
    std::mt19937 rng(2);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    std::vector<std::vector<float>> weights;
    for (const WeightSpec &w : rule.info().weights) {
      int64_t count = 1;
      for (int64_t d : w.shape)
        count *= d;
      weights.emplace_back(count);
      for (float &v : weights.back())
        v = normal(rng);
    }
    std::printf("{\"threads\": %u, \"flops_per_coordinate\": %.0f", threads,
                kFlopsPerCoordinate);
    double fmaCpu = 0;
    std::printf(", \"fma_peak_gflops\": %.6g", fmaPeak(threads, &fmaCpu));
    std::printf(", \"fma_peak_gflops_per_cpu_s\": %.6g", fmaCpu);
#if OPTIM_BENCH_OPENBLAS
    {
      openblas_set_num_threads(int(threads));
      Sgemm sgemm;
      sgemm.gflops(1);
      std::printf(", \"sgemm_n\": %d, \"sgemm_gflops\": %.6g", sgemm.n,
                  sgemm.gflops(reps));
    }
#endif
    double activationsCpu = 0;
    std::printf(", \"activations_only_gflops\": %.6g",
                activationsOnly(threads, reps, &activationsCpu));
    std::printf(", \"activations_only_gflops_per_cpu_s\": %.6g",
                activationsCpu);
    std::vector<double> perCpu(sizes.size());
    std::printf(", \"learned_gflops\": {");
    for (size_t s = 0; s < sizes.size(); ++s) {
      Learned learned(rule, sizes[s], threads, weights);
      // At 10^7 coordinates a step takes a large fraction of a second: at
      // most 3 repetitions (as bench/learned/torch_lstm.py).
      int minReps = sizes[s] < 10000000 ? reps : std::min(reps, 3);
      std::printf("%s\"%lld\": %.6g", s ? ", " : "", (long long)sizes[s],
                  learned.gflops(minReps, 0.5, &perCpu[s]));
      std::fflush(stdout);
    }
    std::printf("}, \"learned_gflops_per_cpu_s\": {");
    for (size_t s = 0; s < sizes.size(); ++s)
      std::printf("%s\"%lld\": %.6g", s ? ", " : "", (long long)sizes[s],
                  perCpu[s]);
    std::printf("}");
    // The peak again after the steps: the two show how steady the clock and
    // the machine were during the run.
    std::printf(", \"fma_peak_after_gflops\": %.6g}\n", fmaPeak(threads));
  } catch (const Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
