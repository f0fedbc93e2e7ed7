//===- FakeCuda.cpp - a libcuda.so.1 that runs CPU kernels (dry runs) ----===//
//
// bench/gpu/dry-run.sh builds this as libcuda.so.1 and puts it first on
// LD_LIBRARY_PATH, so that bench/gpu/run.sh runs end to end on a machine
// without a GPU: the runtime's dlopen("libcuda.so.1") finds it, "device"
// memory is host memory, and cuLaunchKernel of optim_rule_<name> runs the
// CPU kernel of the same rule ($OPTIM_FAKE_CUDA_DIR/<name>.so, optimc
// --emit=shared, and its manifest) over the chunk table the runtime built,
// decoding the GPU kernel's arguments (KernelABI.h, "GPU rule kernels"):
// table pointers, begin, t, the hyperparameters by value, the weights
// pointers. optim_fma_peak only writes its output. This checks everything
// the bench programs and run.sh do around the kernels (buffers, offsets,
// tables, weights, state read-back, comparisons, JSON, the summaries); the
// cubins themselves are not run (it reports sm_90 and accepts any ELF, or,
// as an old driver, refuses every ELF and accepts PTX).
// optim_layer_<name>_qp (a QP layer's forward) and _qp_grad (the solver's
// backward) run the block QP solver (optim/QPBlock.h, one thread per block)
// for layers whose inputs are their QP's operands (bench/gpu/qpbench.optim),
// described by $OPTIM_FAKE_CUDA_DIR/<name>.manifest.json (the cubin's layer
// manifest); for such layers _qp_reduce has nothing to sum and _qp_vjp
// copies the operands' cotangents to the inputs'.
// A rule with tensor reductions (KernelABI.h, version 6) has two kernels:
// optim_reduce_<name> runs the CPU's first pass (its partials per chunk;
// the lanes combine in another order than a GPU block's threads, so the
// sums differ from a device's in the last bits only; `reduced` and `stage`
// of nested reductions, version 9, go on as they are) and optim_rule_<name>
// the CPU's reduced rule kernel, with `reduced` after the hyperparameters;
// its descriptor optim_reductions_<name> is the CPU library's, as is a
// drawing rule's optim_random_<name>. Every rule kernel's last argument,
// `rng` (KernelABI.h, version 8), goes on to the CPU kernel as it is.
// The matrix kernels of a rule with newton_schulz (optim_matrix_gemm_<t>,
// _combine_<t>, _sumsq_<t>, _scale_<t>; KernelABI.h, "Matrix functions on
// CUDA"): the sum of squares, the combine of a split product's slices and
// the copies run their block code (optim/MatrixBlock.h) on one thread per
// block; a product (or slice) computes each entry's FMA chain directly, the
// bits the block code gives (runtime/test/CudaMatrixTest.cpp) without its
// 64 x 64 tile per block (a 1 x 1000003 matrix's Y Y^T is one tile).
// It must define every entry point runtime/lib/CudaDriver.cpp resolves.
//
//===----------------------------------------------------------------------===//

#include "optim/KernelABI.h"
#include "optim/MatrixBlock.h"
#include "optim/QPBlock.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

using CUresult = int;
using CUdeviceptr = unsigned long long;

struct Kernel {
  std::string name;
  optim_rule_kernel cpu = nullptr; // null: optim_fma_peak or a layer
  // A rule with tensor reductions: its first pass (the kernel named
  // optim_reduce_) or its second (cpu is then null).
  optim_reduce_kernel reduce = nullptr;
  optim_reduced_rule_kernel reduced = nullptr;
  bool f64 = false;
  size_t hypers = 0, weights = 0;
  // A QP layer's kernel (0: forward, 1: grad, 2: reduce, 3: vjp), its
  // dimensions and whether Q is given.
  bool layer = false, hasQ = true;
  int part = 0;
  int64_t n = 0, m = 0, p = 0;
  // The launch the layer was compiled for (its manifest): the workspace
  // layout depends on the shared memory budget of its architecture.
  int64_t threads = 0, sharedBytes = 0;
  // A matrix kernel: 'g' (gemm), 'k' (combine), 's' (sumsq), 'c' (scale);
  // 0 otherwise.
  char matrix = 0;
};
std::map<std::string, Kernel> kernels;
int moduleToken, contextToken, streamToken;

CUresult loadKernel(const std::string &name, Kernel **out) {
  auto it = kernels.find(name);
  if (it != kernels.end()) {
    *out = &it->second;
    return 0;
  }
  Kernel k;
  k.name = name;
  const std::string layerPrefix = OPTIM_LAYER_SYMBOL_PREFIX;
  const char *const tails[4] = {"_qp", "_qp_grad", "_qp_reduce", "_qp_vjp"};
  int part = -1;
  size_t stem = 0;
  for (int t = 0; t < 4; ++t) {
    const size_t len = std::strlen(tails[t]);
    if (name.size() > layerPrefix.size() + len &&
        name.compare(name.size() - len, len, tails[t]) == 0) {
      part = t;
      stem = name.size() - len;
    }
  }
  if (name.compare(0, layerPrefix.size(), layerPrefix) == 0 && part >= 0) {
    k.part = part;
    const char *dir = std::getenv("OPTIM_FAKE_CUDA_DIR");
    std::string path = std::string(dir ? dir : ".") + "/" +
                       name.substr(layerPrefix.size(),
                                   stem - layerPrefix.size()) +
                       ".manifest.json";
    std::ifstream manifest(path);
    if (!manifest) {
      std::fprintf(stderr, "fake libcuda: no layer manifest %s\n",
                   path.c_str());
      return 500;
    }
    nlohmann::json m = nlohmann::json::parse(manifest);
    const nlohmann::json &qp = m.at("qp");
    k.layer = true;
    k.f64 = m.at("dtype") == "f64";
    k.n = qp.at("n");
    k.m = qp.at("m");
    k.p = qp.at("p");
    k.hasQ = qp.at("has_Q");
    k.threads = m.at("launch").at("threads");
    k.sharedBytes = m.at("launch").at("shared_bytes");
    // Only layers whose inputs are the operands themselves, in order.
    size_t operands = (k.hasQ ? 1 : 0) + 1 + (k.m ? 2 : 0) + (k.p ? 2 : 0);
    if (m.at("inputs").size() != operands || !m.at("weights").empty()) {
      std::fprintf(stderr, "fake libcuda: %s: only layers whose inputs are "
                           "their QP's operands are emulated\n",
                   name.c_str());
      return 500;
    }
    *out = &kernels.emplace(name, k).first->second;
    return 0;
  }
  const std::string matrixPrefix = OPTIM_MATRIX_SYMBOL_PREFIX;
  if (name.compare(0, matrixPrefix.size(), matrixPrefix) == 0) {
    const std::string op = name.substr(matrixPrefix.size());
    for (const char *t : {"f32", "f64"})
      for (auto [stem, code] : {std::pair<const char *, char>{"gemm_", 'g'},
                                {"combine_", 'k'},
                                {"sumsq_", 's'},
                                {"scale_", 'c'}})
        if (op == std::string(stem) + t) {
          k.matrix = code;
          k.f64 = std::string(t) == "f64";
        }
    if (!k.matrix)
      return 500;
    *out = &kernels.emplace(name, k).first->second;
    return 0;
  }
  const std::string rulePrefix = OPTIM_RULE_SYMBOL_PREFIX;
  const std::string reducePrefix = OPTIM_REDUCE_SYMBOL_PREFIX;
  bool firstPass = name.compare(0, reducePrefix.size(), reducePrefix) == 0;
  const std::string &prefix = firstPass ? reducePrefix : rulePrefix;
  if (name != "optim_fma_peak") {
    if (name.compare(0, prefix.size(), prefix) != 0)
      return 500; // CUDA_ERROR_NOT_FOUND
    const char *dir = std::getenv("OPTIM_FAKE_CUDA_DIR");
    std::string base =
        std::string(dir ? dir : ".") + "/" + name.substr(prefix.size());
    void *lib = ::dlopen((base + ".so").c_str(), RTLD_NOW | RTLD_LOCAL);
    std::ifstream manifest(base + ".manifest.json");
    if (!lib || !manifest) {
      std::fprintf(stderr, "fake libcuda: no CPU kernel %s.so + manifest\n",
                   base.c_str());
      return 500;
    }
    void *sym = ::dlsym(lib, name.c_str());
    nlohmann::json m = nlohmann::json::parse(manifest);
    k.f64 = m.at("dtype") == "f64";
    k.hypers = m.at("hyperparameters").size();
    k.weights = m.contains("weights") ? m.at("weights").size() : 0;
    bool reductions = m.contains("reductions") && !m.at("reductions").empty();
    if (firstPass && !reductions)
      return 500; // a rule without reductions has no first pass
    if (firstPass)
      k.reduce = reinterpret_cast<optim_reduce_kernel>(sym);
    else if (reductions)
      k.reduced = reinterpret_cast<optim_reduced_rule_kernel>(sym);
    else
      k.cpu = reinterpret_cast<optim_rule_kernel>(sym);
    if (!sym)
      return 500;
  }
  *out = &kernels.emplace(name, k).first->second;
  return 0;
}

struct OneThread {
  int tid = 0, nt = 1;
  void sync() {}
};

/// The workspace layout of layer kernel k's blocks (one thread each here),
/// as the compiler planned it: its threads and shared memory.
optim::qpblock::KernelLayout layoutOf(const Kernel &k) {
  return optim::qpblock::kernelLayout(k.n, k.m, k.p, k.hasQ, k.threads,
                                      k.sharedBytes);
}

/// A block's solver workspace: `shared` stands in for its shared memory,
/// the rest follows the operands in its slice `base` of the workspace.
optim::qpblock::Work blockWork(const Kernel &k,
                               const optim::qpblock::KernelLayout &lay,
                               double *base, std::vector<double> &shared) {
  optim::qpblock::Work w;
  optim::qpblock::carve(w, k.n, k.m, k.p, 1, shared.data(), lay.sharedDoubles,
                        base + lay.dataDoubles);
  return w;
}

/// A block's problem: its operands at the layout's offsets in `base` (null
/// where the layer has none).
optim::qpblock::Problem blockProblem(const Kernel &k,
                                     const optim::qpblock::KernelLayout &lay,
                                     const double *base) {
  optim::qpblock::Problem P;
  P.n = k.n;
  P.m = k.m;
  P.p = k.p;
  const double *d[6];
  for (int o = 0; o < 6; ++o)
    d[o] = lay.offset[o] >= 0 ? base + lay.offset[o] : nullptr;
  P.Q = d[0];
  P.q = d[1];
  P.A = d[2];
  P.b = d[3];
  P.G = d[4];
  P.h = d[5];
  return P;
}

/// A QP layer's backward kernels (Kernel::part 1-3) for layers whose inputs
/// are their QP's operands: every operand batched, so nothing to reduce.
CUresult layerBackward(const Kernel &k, unsigned gridX, unsigned blockX,
                       void **params) {
  const optim::qpblock::KernelLayout lay = layoutOf(k);
  const int64_t D = lay.dataDoubles;
  const int64_t sizes[6] = {k.n * k.n, k.n, k.m * k.n, k.m, k.p * k.n, k.p};
  auto ptr = [&](int i) { return *static_cast<void **>(params[i]); };
  if (k.part == 1) { // (gz, gnu, glam, dops, work)
    if (int64_t(blockX) != lay.threads)
      return 1;
    double *dops = static_cast<double *>(ptr(3));
    double *work = static_cast<double *>(ptr(4));
    std::vector<double> shared(lay.sharedDoubles);
    const size_t elt = k.f64 ? 8 : 4;
    auto at = [&](void *v, unsigned e, int64_t count) -> const void * {
      return v ? static_cast<char *>(v) + e * count * elt : nullptr;
    };
    for (unsigned e = 0; e < gridX; ++e) {
      double *base = work + e * lay.workDoubles;
      optim::qpblock::Work w = blockWork(k, lay, base, shared);
      optim::qpblock::Problem P = blockProblem(k, lay, base);
      OneThread team;
      // As the device kernel (QPBlockNVPTX.cpp): the backward pass of the
      // scaled problem the forward solved.
      optim::qpblock::backwardProblem(
          team, P, w, base + lay.keepOffset, at(ptr(0), e, k.n),
          at(ptr(1), e, k.m), at(ptr(2), e, k.p), !k.f64, dops + e * D,
          lay.offset);
    }
    return 0;
  }
  if (k.part == 2) // every operand batched: nothing is shared
    return 0;
  // vjp(inputs..., dops, dshared, dinputs..., batch): d input = its
  // operand's cotangent.
  size_t inputs = 0;
  for (int o = 0; o < 6; ++o)
    inputs += lay.offset[o] >= 0;
  const double *dops = static_cast<const double *>(ptr(int(inputs)));
  const int64_t batch = *static_cast<int64_t *>(params[2 * inputs + 2]);
  for (int o = 0, i = 0; o < 6; ++o) {
    if (lay.offset[o] < 0)
      continue;
    void *dst = ptr(int(inputs + 2 + i++));
    for (int64_t e = 0; e < batch; ++e)
      for (int64_t j = 0; j < sizes[o]; ++j) {
        const double v = dops[e * D + lay.offset[o] + j];
        if (k.f64)
          static_cast<double *>(dst)[e * sizes[o] + j] = v;
        else
          static_cast<float *>(dst)[e * sizes[o] + j] = float(v);
      }
  }
  return 0;
}

} // namespace

extern "C" {

CUresult cuInit(unsigned) { return 0; }
CUresult cuDeviceGetCount(int *n) {
  *n = 1;
  return 0;
}
CUresult cuDeviceGet(int *d, int ordinal) {
  *d = ordinal;
  return ordinal == 0 ? 0 : 101; // CUDA_ERROR_INVALID_DEVICE
}
CUresult cuDeviceGetName(char *name, int len, int) {
  std::snprintf(name, len, "fake CUDA device (CPU kernels)");
  return 0;
}
CUresult cuDeviceGetAttribute(int *v, int attr, int) {
  // Compute capability 9.0; 4 SMs (a small FMA-peak grid); an H100's
  // 227 KiB of opt-in shared memory per block.
  *v = attr == 75   ? 9
       : attr == 76 ? 0
       : attr == 16 ? 4
       : attr == 97 ? 232448
                    : 0;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int) {
  *ctx = &contextToken;
  return 0;
}
CUresult cuDevicePrimaryCtxRelease_v2(int) { return 0; }
CUresult cuCtxSetCurrent(void *) { return 0; }
CUresult cuModuleLoadData(void **module, const void *image) {
  bool elf = std::memcmp(image, "\x7f" "ELF", 4) == 0;
  // OPTIM_FAKE_CUDA_OLD_DRIVER=1: a driver older than the cubins' ptxas,
  // which refuses them and JIT-compiles their PTX (text with .version).
  static const bool oldDriver = std::getenv("OPTIM_FAKE_CUDA_OLD_DRIVER");
  if (oldDriver && elf)
    return 222; // CUDA_ERROR_UNSUPPORTED_PTX_VERSION
  if (!elf && !(oldDriver && std::strstr(static_cast<const char *>(image),
                                         "\n.version ")))
    return 200; // CUDA_ERROR_INVALID_IMAGE
  *module = &moduleToken;
  return 0;
}
CUresult cuModuleUnload(void *) { return 0; }
CUresult cuModuleGetFunction(void **fn, void *, const char *name) {
  Kernel *k = nullptr;
  CUresult r = loadKernel(name, &k);
  *fn = k;
  return r;
}
// Only the descriptors of a rule's reductions and random draws, read from
// the CPU library of the rule, as "device" memory (host memory here).
CUresult cuModuleGetGlobal_v2(CUdeviceptr *ptr, size_t *bytes, void *,
                              const char *name) {
  std::string prefix = OPTIM_REDUCTIONS_SYMBOL_PREFIX;
  std::string n = name;
  if (n.compare(0, prefix.size(), prefix) != 0)
    prefix = OPTIM_RANDOM_SYMBOL_PREFIX;
  if (n.compare(0, prefix.size(), prefix) != 0)
    return 500; // CUDA_ERROR_NOT_FOUND
  const char *dir = std::getenv("OPTIM_FAKE_CUDA_DIR");
  std::string path =
      std::string(dir ? dir : ".") + "/" + n.substr(prefix.size()) + ".so";
  void *lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  const char *text = lib ? static_cast<const char *>(::dlsym(lib, name))
                         : nullptr;
  if (!text)
    return 500;
  *ptr = reinterpret_cast<CUdeviceptr>(text);
  *bytes = std::strlen(text) + 1;
  return 0;
}
CUresult cuFuncSetAttribute(void *, int, int) { return 0; }
// The largest block a learned kernel "fits": OPTIM_FAKE_CUDA_MAX_BLOCK, as
// the launch enforces (bench/gpu/dry-run.sh), else 1024.
CUresult cuFuncGetAttribute(int *value, int attribute, void *) {
  if (attribute != 0)
    return 1; // CUDA_ERROR_INVALID_VALUE
  const char *maxBlock = std::getenv("OPTIM_FAKE_CUDA_MAX_BLOCK");
  *value = maxBlock ? std::atoi(maxBlock) : 1024;
  return 0;
}
CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  void *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  *ptr = reinterpret_cast<CUdeviceptr>(p);
  return p ? 0 : 2; // CUDA_ERROR_OUT_OF_MEMORY
}
CUresult cuMemFree_v2(CUdeviceptr ptr) {
  std::free(reinterpret_cast<void *>(ptr));
  return 0;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes) {
  std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  return 0;
}
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes) {
  std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
  return 0;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes,
                              void *) {
  return cuMemcpyHtoD_v2(dst, src, bytes);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                              void *) {
  std::memcpy(reinterpret_cast<void *>(dst),
              reinterpret_cast<const void *>(src), bytes);
  return 0;
}
CUresult cuStreamCreate(void **stream, unsigned) {
  *stream = &streamToken;
  return 0;
}
CUresult cuStreamDestroy_v2(void *) { return 0; }
CUresult cuStreamSynchronize(void *) { return 0; }
extern "C++" {
/// All of a block's threads on the fake's one thread.
struct SerialTeam {
  static constexpr int kPer = optim::matrixblock::kThreads;
  int tid = 0;
  void sync() {}
};

template <typename A> A param(void **params, int k) {
  return *static_cast<A *>(params[k]);
}

/// A matrix kernel's launch, its arguments in KernelABI.h's order: matrix
/// z of the batch (grid z) at its operands' strides.
template <typename T>
CUresult matrixLaunch(const Kernel &k, unsigned gridX, unsigned gridY,
                      unsigned gridZ, unsigned shared, void **a) {
  namespace mb = optim::matrixblock;
  SerialTeam team;
  if (k.matrix == 'g') {
    if (shared < mb::gemmSharedBytes(sizeof(T)) ||
        int64_t(gridX) * mb::kTile < param<int64_t>(a, 1) ||
        int64_t(gridY) * mb::kTile < param<int64_t>(a, 0))
      return 1; // CUDA_ERROR_INVALID_VALUE: not the kernel's launch
    const int64_t M = param<int64_t>(a, 0), N = param<int64_t>(a, 1),
                  K = param<int64_t>(a, 2), kc = param<int64_t>(a, 17);
    const int64_t ars = param<int64_t>(a, 5), acs = param<int64_t>(a, 6),
                  brs = param<int64_t>(a, 9), bcs = param<int64_t>(a, 10);
    // As gemmSplitBlock: matrix z / S, and slice z % S of a split K.
    const int64_t S = kc > 0 && kc < K ? (K + kc - 1) / kc : 1;
    for (unsigned z = 0; z < gridZ; ++z) {
      const int64_t matrix = z / S, slice = z - matrix * S;
      const int64_t k0 = slice * (S > 1 ? kc : 0),
                    k1 = S > 1 ? std::min(K, k0 + kc) : K;
      const T *A = param<const T *>(a, 4) + matrix * param<int64_t>(a, 7);
      const T *B = param<const T *>(a, 8) + matrix * param<int64_t>(a, 11);
      const T *D = S > 1 ? nullptr : param<const T *>(a, 13);
      if (D)
        D += matrix * param<int64_t>(a, 14);
      T *C = S > 1 ? param<T *>(a, 18) + z * M * N
                   : param<T *>(a, 15) + matrix * param<int64_t>(a, 16);
      const T alpha = S > 1 ? T(1) : param<T>(a, 3), beta = param<T>(a, 12);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          T acc = T(0);
          for (int64_t q = k0; q < k1; ++q)
            acc = std::fma(A[i * ars + q * acs], B[q * brs + j * bcs], acc);
          T r = alpha * acc;
          if (D)
            r = std::fma(beta, D[i * N + j], r);
          C[i * N + j] = r;
        }
    }
    return 0;
  }
  if (k.matrix == 'k') {
    if (gridY != 1 || shared)
      return 1;
    for (unsigned z = 0; z < gridZ; ++z)
      for (unsigned b = 0; b < gridX; ++b)
        mb::combineBlock<T>(
            team, z, b, gridX, param<int64_t>(a, 0), param<int64_t>(a, 1),
            param<T>(a, 2), param<const T *>(a, 3), param<int64_t>(a, 4),
            param<T>(a, 5), param<const T *>(a, 6), param<int64_t>(a, 7),
            param<T *>(a, 8), param<int64_t>(a, 9));
    return 0;
  }
  if (gridY != 1)
    return 1;
  if (k.matrix == 's') {
    if (shared < mb::kSumSharedBytes)
      return 1;
    std::vector<double> smem(mb::kThreads);
    for (unsigned z = 0; z < gridZ; ++z)
      for (unsigned b = 0; b < gridX; ++b)
        mb::sumSquaresBlock<T>(
            team, b, gridX, param<const T *>(a, 0) + z * param<int64_t>(a, 2),
            param<int64_t>(a, 1), param<double *>(a, 3) + z * gridX,
            smem.data());
    return 0;
  }
  const double *partials = param<const double *>(a, 10);
  const int64_t numPartials = param<int64_t>(a, 11);
  for (unsigned z = 0; z < gridZ; ++z)
    for (unsigned b = 0; b < gridX; ++b)
      mb::scaleBlock<T>(
          team, b, gridX, param<T *>(a, 0) + z * param<int64_t>(a, 3),
          param<int64_t>(a, 1), param<int64_t>(a, 2),
          param<const T *>(a, 4) + z * param<int64_t>(a, 7),
          param<int64_t>(a, 5), param<int64_t>(a, 6), param<int64_t>(a, 8),
          param<int64_t>(a, 9),
          partials ? partials + z * numPartials : partials, numPartials,
          param<double>(a, 12));
  return 0;
}
} // extern "C++"

CUresult cuLaunchKernel(void *fn, unsigned gridX, unsigned gridY,
                        unsigned gridZ, unsigned blockX, unsigned, unsigned,
                        unsigned shared, void *, void **params, void **) {
  const Kernel &k = *static_cast<Kernel *>(fn);
  if (k.matrix) {
    if (blockX != unsigned(optim::matrixblock::kThreads) || gridZ < 1 ||
        gridZ > 65535)
      return 1; // CUDA_ERROR_INVALID_VALUE: not the kernels' launch
    return k.f64
               ? matrixLaunch<double>(k, gridX, gridY, gridZ, shared, params)
               : matrixLaunch<float>(k, gridX, gridY, gridZ, shared, params);
  }
  if (k.layer && k.part > 0)
    return layerBackward(k, gridX, blockX, params);
  if (k.layer) {
    // inputs (the operands), z, nu, lam, status, iterations, work: each
    // block's operands widened to float64 at the layout's offsets, then
    // the block solver with one thread.
    const optim::qpblock::KernelLayout lay = layoutOf(k);
    if (int64_t(blockX) != lay.threads)
      return 1; // CUDA_ERROR_INVALID_VALUE: not the kernel's block size
    const int64_t sizes[6] = {k.n * k.n, k.n, k.m * k.n, k.m, k.p * k.n, k.p};
    size_t arg = 0;
    const void *operand[6] = {};
    for (int o = 0; o < 6; ++o)
      if (lay.offset[o] >= 0)
        operand[o] = *static_cast<void **>(params[arg++]);
    void *z = *static_cast<void **>(params[arg]);
    void *nu = *static_cast<void **>(params[arg + 1]);
    void *lam = *static_cast<void **>(params[arg + 2]);
    int32_t *status = *static_cast<int32_t **>(params[arg + 3]);
    int32_t *iterations = *static_cast<int32_t **>(params[arg + 4]);
    double *work = *static_cast<double **>(params[arg + 5]);
    OneThread team;
    std::vector<double> shared(lay.sharedDoubles);
    const size_t elt = k.f64 ? 8 : 4;
    for (unsigned e = 0; e < gridX; ++e) {
      double *base = work + e * lay.workDoubles;
      for (int o = 0; o < 6; ++o)
        for (int64_t i = 0; operand[o] && i < sizes[o]; ++i)
          base[lay.offset[o] + i] =
              k.f64 ? static_cast<const double *>(operand[o])[e * sizes[o] + i]
                    : static_cast<const float *>(operand[o])[e * sizes[o] + i];
      optim::qpblock::Work w = blockWork(k, lay, base, shared);
      optim::qpblock::Problem P = blockProblem(k, lay, base);
      auto at = [&](void *v, int64_t count) {
        return static_cast<void *>(static_cast<char *>(v) + e * count * elt);
      };
      optim::qpblock::solveProblem(team, P, w, at(z, k.n), at(nu, k.m),
                                   at(lam, k.p), !k.f64, status + e,
                                   iterations + e, base + lay.keepOffset);
    }
    return 0;
  }
  // A limit on the block size of learned kernels, as their registers (166
  // a thread) put one on a real GPU.
  const char *maxBlock = std::getenv("OPTIM_FAKE_CUDA_MAX_BLOCK");
  if (maxBlock && k.weights && blockX > unsigned(std::atoi(maxBlock)))
    return 701; // CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
  if (!k.cpu && !k.reduce && !k.reduced) {
    // optim_fma_peak(float *out, int iters, float b, float c)
    float *out = *static_cast<float **>(params[0]);
    std::memset(out, 0, size_t(gridX) * blockX * sizeof(float));
    return 0;
  }
  void *const *ptrs = *static_cast<void *const **>(params[0]);
  const int64_t *lengths = *static_cast<const int64_t **>(params[1]);
  const int64_t *strides = *static_cast<const int64_t **>(params[2]);
  int64_t begin = *static_cast<int64_t *>(params[3]);
  int64_t step = *static_cast<int64_t *>(params[4]);
  std::vector<double> hypers;
  for (size_t h = 0; h < k.hypers; ++h)
    hypers.push_back(k.f64 ? *static_cast<double *>(params[5 + h])
                           : *static_cast<float *>(params[5 + h]));
  std::vector<const void *> weights;
  for (size_t w = 0; w < k.weights; ++w)
    weights.push_back(*static_cast<void **>(params[5 + k.hypers + w]));
  // Rules with reductions: partials or reduced, after the hypers; the
  // first pass then takes reduced and its stage (KernelABI.h, version 9).
  void *last = k.reduce || k.reduced
                   ? *static_cast<void **>(params[5 + k.hypers])
                   : nullptr;
  const double *stageReduced =
      k.reduce ? *static_cast<const double **>(params[6 + k.hypers]) : nullptr;
  int64_t stage = k.reduce ? *static_cast<int64_t *>(params[7 + k.hypers]) : 0;
  // Then rng, the last argument of every rule kernel.
  const uint64_t *rng =
      *static_cast<const uint64_t **>(params[5 + k.hypers + k.weights +
                                             (k.reduce    ? 3
                                              : k.reduced ? 1
                                                          : 0)]);
  if (k.reduce)
    k.reduce(ptrs, lengths, strides, begin, begin + gridX, hypers.data(), step,
             nullptr, static_cast<double *>(last), stageReduced, stage, rng);
  else if (k.reduced)
    k.reduced(ptrs, lengths, strides, begin, begin + gridX, hypers.data(),
              step, nullptr, static_cast<const double *>(last), rng);
  else
    k.cpu(ptrs, lengths, strides, begin, begin + gridX, hypers.data(), step,
          weights.empty() ? nullptr : weights.data(), rng);
  return 0;
}
CUresult cuGetErrorName(CUresult, const char **name) {
  *name = "CUDA_ERROR_FAKE";
  return 0;
}
CUresult cuGetErrorString(CUresult, const char **text) {
  *text = "an error of the fake driver (bench/gpu/FakeCuda.cpp)";
  return 0;
}

} // extern "C"
