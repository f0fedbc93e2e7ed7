//===- QPGpuBench.cpp - a compiled QP layer on a CUDA GPU ----------------===//
//
// Runtime only (no LLVM/MLIR): issue 6's QP row. Loads the cubin + manifest
// of bench/gpu/qpbench.optim (every operand an input: Q [n, n], q [n],
// G [p, n], h [p], no equalities) that bench/gpu/prepare.sh compiled, makes
// bench/qp's problems (OptNet's timing setup: Q = U^T U + 1e-3 I, G
// Gaussian, h = G z0 + s0 with s0 > 0, q Gaussian; all batched), and
//   - checks the GPU's solutions against the CPU solver's (optim::QPSolver,
//     the same algorithm in float64) on the same problems: every status
//     Solved, max |z_gpu - z_cpu| / max(1, max |z_cpu|) below --tolerance;
//   - times the forward pass (one launch of `batch` blocks, then the
//     stream synchronized; inputs already on the device), best and median of
//     --reps;
//   - the backward pass with dz = 1 (the gradient of sum(z), as bench/qp):
//     the gradients of Q, q, G, h against QPSolver::backward's (max error
//     relative to max(1, max |ref|) per tensor, below --grad-tolerance), and
//     its time (the statuses checked, three launches, then the stream
//     synchronized);
// and prints one JSON line. Exit status 1 when the check fails or anything
// goes wrong (the timing's targets are judged by run.sh).
//
//   optim-gpu-qp AOT_DIR [--batch 128] [--reps 20] [--tolerance X]
//                [--stem NAME]   (NAME.<arch>.cubin; default qpbench)
//
// The layer's dtype is its manifest's (prepare.sh compiles it in float64,
// as qpth is timed).
//
//===----------------------------------------------------------------------===//

#include "optim/CudaLayer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace optim;
using namespace optim::cuda;

namespace {

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

/// The cubin for this device: its own architecture, else the newest older
/// minor version of the same major one (sm_80 runs on sm_86).
std::string pickCubin(const std::string &dir, const std::string &stem,
                      const std::string &arch) {
  int have = std::atoi(arch.c_str() + 3);
  for (int a = have; a >= have / 10 * 10; --a) {
    std::string path = dir + "/" + stem + ".sm_" + std::to_string(a) + ".cubin";
    if (exists(path))
      return path;
  }
  return "";
}

struct Problems {
  int64_t B, n, p;
  std::vector<double> Q, q, G, h;
};

/// bench/qp/qp_bench.py's make_problems, with this program's generator.
Problems makeProblems(int64_t B, int64_t n, int64_t p, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> N(0, 1);
  std::uniform_real_distribution<double> U01(0, 1);
  Problems P{B, n, p, {}, {}, {}, {}};
  P.Q.assign(B * n * n, 0);
  P.q.resize(B * n);
  P.G.resize(B * p * n);
  P.h.resize(B * p);
  std::vector<double> U(n * n), z0(n);
  for (int64_t e = 0; e < B; ++e) {
    for (auto &v : U)
      v = N(rng);
    double *Q = P.Q.data() + e * n * n;
    for (int64_t k = 0; k < n; ++k)
      for (int64_t i = 0; i < n; ++i) {
        const double u = U[k * n + i];
        for (int64_t j = 0; j < n; ++j)
          Q[i * n + j] += u * U[k * n + j];
      }
    for (int64_t i = 0; i < n; ++i)
      Q[i * n + i] += 1e-3;
    for (int64_t i = 0; i < n; ++i)
      P.q[e * n + i] = N(rng);
    for (int64_t k = 0; k < p * n; ++k)
      P.G[e * p * n + k] = N(rng);
    for (auto &v : z0)
      v = N(rng);
    for (int64_t k = 0; k < p; ++k) {
      double acc = U01(rng) + 0.1;
      for (int64_t j = 0; j < n; ++j)
        acc += P.G[(e * p + k) * n + j] * z0[j];
      P.h[e * p + k] = acc;
    }
  }
  return P;
}

int usage() {
  std::fprintf(stderr, "usage: optim-gpu-qp AOT_DIR [--batch N] [--reps N] "
                       "[--tolerance X] [--grad-tolerance X] [--stem NAME]\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  std::string dir;
  int64_t batch = 128, reps = 20;
  double tolerance = -1, gradTolerance = -1;
  // Other builds of the same layer (bench/gpu/prepare.sh: qpbench-t512 is
  // compiled with --gpu-layer-threads=512, qpbench-s99 with
  // --gpu-layer-shared-bytes=101376).
  std::string stem = "qpbench";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--batch" && i + 1 < argc)
      batch = std::atoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::atoll(argv[++i]);
    else if (a == "--tolerance" && i + 1 < argc)
      tolerance = std::atof(argv[++i]);
    else if (a == "--grad-tolerance" && i + 1 < argc)
      gradTolerance = std::atof(argv[++i]);
    else if (a == "--stem" && i + 1 < argc)
      stem = argv[++i];
    else if (dir.empty() && a[0] != '-')
      dir = a;
    else
      return usage();
  }
  if (dir.empty() || batch < 1 || reps < 1)
    return usage();
  try {
    std::string why;
    auto driver = tryLoadDriver(&why);
    if (!driver) {
      std::fprintf(stderr, "optim-gpu-qp: no GPU: %s\n", why.c_str());
      return 1;
    }
    auto dev = Device::open(driver, 0);
    std::string cubin = pickCubin(dir, stem, dev->arch());
    if (cubin.empty()) {
      std::fprintf(stderr, "optim-gpu-qp: no %s cubin for %s in %s\n",
                   stem.c_str(), dev->arch().c_str(), dir.c_str());
      return 1;
    }
    LayerKernel kernel = loadLayer(dev, cubin);
    const LayerInfo &info = kernel.manifest.info;
    const int64_t n = info.n, p = info.p, B = batch;
    if (info.inputs.size() != 4 || info.m != 0 || !info.hasQ)
      throw Error("'" + cubin + "' is not bench/gpu/qpbench.optim's layer");
    Problems P = makeProblems(B, n, p, 1);

    // Device inputs in the layer's dtype.
    const bool f32 = info.dtype == DType::F32;
    const std::string dtype = f32 ? "f32" : "f64";
    // Both solve in float64; f32 rounds the data and the solution once.
    if (tolerance < 0)
      tolerance = f32 ? 1e-3 : 1e-6;
    if (gradTolerance < 0)
      gradTolerance = f32 ? 1e-2 : 1e-5;
    const size_t elt = f32 ? 4 : 8;
    auto toDevice = [&](const std::vector<double> &host) {
      Buffer b(dev, host.size() * elt);
      if (f32) {
        std::vector<float> f(host.begin(), host.end());
        b.upload(f.data(), f.size() * 4);
      } else {
        b.upload(host.data(), host.size() * 8);
      }
      return b;
    };
    Buffer dQ = toDevice(P.Q), dq = toDevice(P.q), dG = toDevice(P.G),
           dh = toDevice(P.h);
    Buffer dz(dev, B * n * elt);
    LayerRunner run(kernel);
    auto forward = [&] {
      run.forward(B, {dQ.get(), dq.get(), dG.get(), dh.get()}, {},
                  {dz.get()});
      run.synchronize();
    };
    forward(); // warm-up (module load, first-touch of the workspace)
    std::vector<double> ms;
    for (int64_t r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      forward();
      auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::vector<QPStatus> status = run.statuses();
    // Backward, dz = 1: gradients of Q, q, G, h (every one batched).
    Buffer dones = toDevice(std::vector<double>(B * n, 1.0));
    Buffer gQ(dev, B * n * n * elt), gq(dev, B * n * elt),
        gG(dev, B * p * n * elt), gh(dev, B * p * elt);
    auto backward = [&] {
      run.backward({dones.get()}, {gQ.get(), gq.get(), gG.get(), gh.get()},
                   {});
      run.synchronize();
    };
    bool backwardRan = true;
    std::string backwardError;
    std::vector<double> bms;
    try {
      backward();
      for (int64_t r = 0; r < reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        backward();
        auto t1 = std::chrono::steady_clock::now();
        bms.push_back(
            std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::sort(bms.begin(), bms.end());
    } catch (const Error &e) {
      // Reported (and failed) below, after the forward's figures.
      backwardRan = false;
      backwardError = e.what();
    }
    std::vector<int32_t> its = run.iterations();
    std::vector<double> z(B * n);
    if (f32) {
      std::vector<float> f(B * n);
      dz.download(f.data(), f.size() * 4);
      std::copy(f.begin(), f.end(), z.begin());
    } else {
      dz.download(z.data(), z.size() * 8);
    }

    // The CPU solver on the same (rounded, for f32) data.
    auto rounded = [&](std::vector<double> v) {
      if (f32)
        for (double &x : v)
          x = double(float(x));
      return v;
    };
    std::vector<double> Q = rounded(P.Q), q = rounded(P.q), G = rounded(P.G),
                        h = rounded(P.h);
    QPProblem pb;
    pb.dtype = DType::F64;
    pb.Q = {Q.data(), {B, n, n}};
    pb.q = {q.data(), {B, n}};
    pb.G = {G.data(), {B, p, n}};
    pb.h = {h.data(), {B, p}};
    std::vector<double> zc(B * n), lc(B * p);
    std::vector<QPStatus> sc(B);
    auto c0 = std::chrono::steady_clock::now();
    QPSolver cpu({info.tol, info.maxIter, 0});
    cpu.forward(pb, {zc.data(), nullptr, lc.data(), sc.data()});
    auto c1 = std::chrono::steady_clock::now();
    double gradErr = 0;
    if (backwardRan && std::all_of(sc.begin(), sc.end(), [](QPStatus st) {
          return st == QPStatus::Solved;
        })) {
      std::vector<double> ones(B * n, 1.0), rQ(Q.size()), rq(q.size()),
          rG(G.size()), rh(h.size());
      cpu.backward(pb, {ones.data(), nullptr, nullptr, rQ.data(), rq.data(),
                        nullptr, nullptr, rG.data(), rh.data()});
      auto download = [&](const Buffer &b, size_t count) {
        std::vector<double> out(count);
        if (f32) {
          std::vector<float> f(count);
          b.download(f.data(), count * 4);
          std::copy(f.begin(), f.end(), out.begin());
        } else {
          b.download(out.data(), count * 8);
        }
        return out;
      };
      const std::vector<double> *refs[4] = {&rQ, &rq, &rG, &rh};
      const Buffer *got[4] = {&gQ, &gq, &gG, &gh};
      for (int t = 0; t < 4; ++t) {
        std::vector<double> g = download(*got[t], refs[t]->size());
        double d = 0, scale = 1;
        for (size_t k = 0; k < g.size(); ++k) {
          d = std::max(d, std::abs(g[k] - (*refs[t])[k]));
          scale = std::max(scale, std::abs((*refs[t])[k]));
        }
        gradErr = std::max(gradErr, d / scale);
      }
    }
    double err = 0;
    int64_t unsolved = 0, cpuUnsolved = 0;
    for (int64_t e = 0; e < B; ++e) {
      unsolved += status[e] != QPStatus::Solved;
      cpuUnsolved += sc[e] != QPStatus::Solved;
      double d = 0, s = 1;
      for (int64_t j = 0; j < n; ++j) {
        d = std::max(d, std::abs(z[e * n + j] - zc[e * n + j]));
        s = std::max(s, std::abs(zc[e * n + j]));
      }
      err = std::max(err, d / s);
    }
    const bool ok = unsolved == 0 && cpuUnsolved == 0 && err <= tolerance &&
                    backwardRan && gradErr <= gradTolerance;
    if (!backwardRan)
      std::fprintf(stderr, "optim-gpu-qp: backward: %s\n",
                   backwardError.c_str());
    std::printf(
        "{\"device\": \"%s\", \"arch\": \"%s\", \"cubin\": \"%s\", "
        "\"code\": \"%s\", \"dtype\": \"%s\", \"batch\": %lld, \"n\": %lld, "
        "\"p\": %lld, "
        "\"threads\": %lld, \"shared_bytes\": %lld, \"fwd_ms\": %.4f, "
        "\"fwd_ms_median\": %.4f, \"cpu_fwd_ms\": %.3f, "
        "\"max_rel_err_vs_cpu\": %.3g, \"tolerance\": %.3g, "
        "\"unsolved\": %lld, \"cpu_unsolved\": %lld, "
        "\"iterations_max\": %d, \"bwd_ms\": %.4f, \"bwd_ms_median\": %.4f, "
        "\"max_rel_grad_err_vs_cpu\": %.3g, \"grad_tolerance\": %.3g, "
        "\"numerics_ok\": %s}\n",
        dev->name().c_str(), dev->arch().c_str(), cubin.c_str(),
        cuda::toString(kernel.source), dtype.c_str(),
        (long long)B, (long long)n, (long long)p,
        (long long)kernel.manifest.threads,
        (long long)kernel.manifest.sharedBytes, ms.front(), ms[ms.size() / 2],
        std::chrono::duration<double, std::milli>(c1 - c0).count(), err,
        tolerance, (long long)unsolved, (long long)cpuUnsolved,
        *std::max_element(its.begin(), its.end()),
        bms.empty() ? -1.0 : bms.front(),
        bms.empty() ? -1.0 : bms[bms.size() / 2], gradErr, gradTolerance,
        ok ? "true" : "false");
    return ok ? 0 : 1;
  } catch (const Error &e) {
    std::fprintf(stderr, "optim-gpu-qp: %s\n", e.what());
    return 1;
  }
}
