//===- CudaExecutor.cpp - devices, cubins, buffers and the GPU optimizer --===//
//
// The launch follows the GPU kernel ABI of KernelABI.h: one launch covers
// the whole chunk table (grid = chunks, block b takes chunk begin + b); the
// table lives in device memory and is rebuilt only when the gradients move.
//
//===----------------------------------------------------------------------===//

#include "optim/Cuda.h"
#include "optim/Manifest.h"
#include "optim/MatrixBlock.h"

#include "ManifestCommon.h"
#include "InputOrder.h"
#include "CudaMatrix.h"
#include "Reductions.h"
#include "Shapes.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

using namespace optim;
using namespace optim::cuda;

//===----------------------------------------------------------------------===//
// Device
//===----------------------------------------------------------------------===//

std::shared_ptr<Device> Device::open(std::shared_ptr<const DriverAPI> driver,
                                     int ordinal) {
  if (!driver)
    throw Error("optim: CUDA: no driver");
  const DriverAPI &d = *driver;
  int count = 0;
  d.check(d.cuDeviceGetCount(&count), "cuDeviceGetCount");
  if (ordinal < 0 || ordinal >= count)
    throw Error("optim: CUDA: no device " + std::to_string(ordinal) +
                " (the driver reports " + std::to_string(count) + ")");
  std::shared_ptr<Device> dev(new Device);
  dev->driver_ = std::move(driver);
  d.check(d.cuDeviceGet(&dev->device_, ordinal), "cuDeviceGet");
  char name[256] = {0};
  d.check(d.cuDeviceGetName(name, sizeof(name) - 1, dev->device_),
          "cuDeviceGetName");
  dev->name_ = name;
  int major = 0, minor = 0;
  d.check(
      d.cuDeviceGetAttribute(&major, kAttrComputeCapabilityMajor, dev->device_),
      "cuDeviceGetAttribute");
  d.check(
      d.cuDeviceGetAttribute(&minor, kAttrComputeCapabilityMinor, dev->device_),
      "cuDeviceGetAttribute");
  dev->arch_ = "sm_" + std::to_string(major * 10 + minor);
  d.check(d.cuDevicePrimaryCtxRetain(&dev->context_, dev->device_),
          "cuDevicePrimaryCtxRetain");
  return dev;
}

Device::~Device() {
  if (context_)
    driver_->cuDevicePrimaryCtxRelease(device_);
}

bool Device::tryMakeCurrent() const noexcept {
  return driver_->cuCtxSetCurrent(context_) == CUDA_SUCCESS;
}

void Device::makeCurrent() const {
  driver_->check(driver_->cuCtxSetCurrent(context_), "cuCtxSetCurrent");
}

cuda::Rule Device::loadRule(const std::string &cubinPath,
                            const std::string &manifestPath) {
  std::string path =
      manifestPath.empty() ? detail::manifestPathFor(cubinPath) : manifestPath;
  std::string manifest = detail::readFile(path);
  // From files, the manifest must record the cubin's SHA-256 (the loader
  // from bytes checks it): nothing else ties a manifest to the cubin
  // beside it.
  detail::requireArtifactHash(readManifest(manifest, path).artifactSha256,
                              cubinPath, path);
  return loadRule(detail::readFile(cubinPath), manifest, path,
                  detail::readPTXFor(cubinPath));
}

const char *optim::cuda::toString(CodeSource source) {
  return source == CodeSource::PTX ? "ptx" : "cubin";
}

/// Throws unless `ptx` was compiled for `target` (its `.target` line) and
/// defines the entry `symbol`.
static void requirePTXMatches(const std::string &ptx, const std::string &target,
                              const std::string &symbol,
                              const std::string &origin) {
  std::string arch = target.substr(target.rfind(' ') + 1);
  std::string ptxArch;
  size_t at = ptx.find("\n.target ");
  if (at != std::string::npos) {
    size_t begin = at + 9, end = ptx.find_first_of(" ,\r\n", begin);
    ptxArch = ptx.substr(begin, end == std::string::npos ? end : end - begin);
  }
  if (ptxArch != arch)
    throw Error("optim: '" + origin + "': the PTX beside the cubin is for '" +
                ptxArch + "', the manifest for '" + arch +
                "' (left over from another build?)");
  if (ptx.find(".entry " + symbol + "(") == std::string::npos)
    throw Error("optim: '" + origin + "': the PTX beside the cubin has no "
                "kernel '" + symbol + "' (left over from another build?)");
}

/// The text of the descriptor `name` (a NUL-terminated char array in global
/// memory: optim_reductions_<rule>, optim_random_<rule>), or nullopt when the
/// module has none. `what` names it in errors; anything over `maxBytes` is
/// not one.
static std::optional<std::string>
readDescriptor(const DriverAPI &d, CUmodule module, const std::string &name,
               size_t maxBytes, const char *what, const std::string &origin) {
  if (!d.cuModuleGetGlobal)
    throw Error("optim: CUDA: the driver table has no cuModuleGetGlobal");
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
  CUresult rc = d.cuModuleGetGlobal(&ptr, &bytes, module, name.c_str());
  if (rc == kErrorNotFound)
    return std::nullopt;
  d.check(rc, ("cuModuleGetGlobal(" + name + ")").c_str());
  if (bytes == 0 || bytes > maxBytes)
    throw Error("optim: '" + origin + "': '" + name + "' has " +
                std::to_string(bytes) + " bytes, not a " + what);
  std::string text(bytes, '\0');
  d.check(d.cuMemcpyDtoH(text.data(), ptr, bytes),
          ("cuMemcpyDtoH(" + name + ")").c_str());
  text.resize(::strnlen(text.c_str(), bytes));
  return text;
}

/// Throws unless the kernels of `module` were compiled for the tensor
/// reductions that the manifest lists (KernelABI.h, the descriptor
/// optim_reductions_<name>): they write and read one value per reduction and
/// chunk, so a manifest listing fewer would make the buffers that the
/// runtime sizes from it too small, and the kernels write past them.
static void requireCompiledReductions(const DriverAPI &d, CUmodule module,
                                      const RuleInfo &info,
                                      const std::string &origin) {
  std::string listed = reductionsDescriptor(info.reductions);
  std::string name = OPTIM_REDUCTIONS_SYMBOL_PREFIX + info.name;
  // A few bytes per reduction; anything larger is not a descriptor.
  std::optional<std::string> compiled = readDescriptor(
      d, module, name, 4096, "reductions descriptor", origin);
  if (!compiled) {
    if (!listed.empty())
      throw Error("optim: '" + origin + "' lists the tensor reductions '" +
                  listed + "' but its module has no '" + name +
                  "', which a rule with tensor reductions defines (does the "
                  "manifest belong to it?)");
    // Without the descriptor, the first pass tells a rule with reductions.
    std::string reduceName = OPTIM_REDUCE_SYMBOL_PREFIX + info.name;
    CUfunction reduce = nullptr;
    if (d.cuModuleGetFunction(&reduce, module, reduceName.c_str()) ==
        CUDA_SUCCESS)
      throw Error("optim: '" + origin +
                  "' lists no tensor reductions but its module has '" +
                  reduceName + "', the first pass of a rule with tensor "
                  "reductions (does the manifest belong to it?)");
    return;
  }
  std::vector<ReductionSpec> compiledSpecs;
  std::string why = detail::parseReductionsDescriptor(*compiled, compiledSpecs);
  if (!why.empty())
    throw Error("optim: '" + origin + "': the module's '" + name + "' (\"" +
                *compiled + "\") is malformed: " + why +
                "; was it compiled by optimc?");
  if (!detail::sameReductions(info.reductions, compiledSpecs))
    throw Error("optim: '" + origin + "' lists " +
                (listed.empty() ? std::string("no tensor reductions")
                                : "the tensor reductions '" + listed + "'") +
                " but its kernels were compiled for '" + *compiled +
                "' (does the manifest belong to them?)");
}

/// Throws unless the kernels of `module` draw the random numbers that the
/// manifest lists (KernelABI.h, version 8, the descriptor
/// optim_random_<name>, defined only by rules that draw): site k of the
/// kernels is site k of RuleInfo::random, and a rule listed as drawing
/// nothing may be passed no rng at all.
static void requireCompiledRandom(const DriverAPI &d, CUmodule module,
                                  const RuleInfo &info,
                                  const std::string &origin) {
  std::string listed = randomDescriptor(info.random);
  std::string name = OPTIM_RANDOM_SYMBOL_PREFIX + info.name;
  // At most eight bytes per draw site; anything larger is not one.
  std::optional<std::string> compiled =
      readDescriptor(d, module, name, 65536, "random descriptor", origin);
  if (!compiled) {
    if (!listed.empty())
      throw Error("optim: '" + origin + "' lists the random draws '" +
                  listed + "' but its module has no '" + name +
                  "', which a rule that draws random numbers defines (does "
                  "the manifest belong to it?)");
    return;
  }
  if (*compiled != listed)
    throw Error("optim: '" + origin + "' lists " +
                (listed.empty() ? std::string("no random draws")
                                : "the random draws '" + listed + "'") +
                " but its kernels were compiled to draw '" + *compiled +
                "' (does the manifest belong to them?)");
}

/// "sm_86" -> 86; -1 when malformed.
static int archNumber(const std::string &arch) {
  if (arch.rfind("sm_", 0) != 0)
    return -1;
  std::string digits = arch.substr(3);
  if (!digits.empty() && digits.back() == 'a')
    digits.pop_back();
  if (digits.empty() || digits.size() > 4 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return std::stoi(digits);
}

CodeSource Device::requireCompatible(const std::string &target,
                                     const std::string &symbol,
                                     const std::string &origin,
                                     const std::string &ptx) const {
  const bool hasPTX = !ptx.empty();
  if (hasPTX)
    requirePTXMatches(ptx, target, symbol, origin);
  const std::string prefix = "nvptx64-nvidia-cuda ";
  if (target.rfind(prefix, 0) != 0)
    throw Error("optim: manifest '" + origin + "': compiled for '" + target +
                "', not for a CUDA GPU (use optimc --target=cuda "
                "--emit=cubin)");
  std::string arch = target.substr(prefix.size());
  int want = archNumber(arch), have = archNumber(arch_);
  // A cubin runs on its own major architecture, same or newer minor
  // version; "a" (architecture-specific) cubins only on their own.
  bool specific = !arch.empty() && arch.back() == 'a';
  if (want >= 0 && want / 10 == have / 10 && want % 10 <= have % 10 &&
      (!specific || want == have))
    return CodeSource::Cubin;
  // PTX runs on its own architecture and every newer one, through the
  // driver's JIT; an architecture-specific one only on its own.
  if (hasPTX && want >= 0 && have >= want && !specific)
    return CodeSource::PTX;
  throw Error("optim: '" + origin + "' was compiled for " + arch +
              ", the device (" + name_ + ") is " + arch_ +
              (hasPTX || want < 0 || have < want || specific
                   ? ""
                   : " and its PTX is not at hand (optimc --emit=cubin "
                     "writes it next to the cubin)") +
              "; recompile with --gpu-arch=" + arch_);
}

std::shared_ptr<CUmod_st> Device::loadModule(const std::string &cubin,
                                             const std::string &origin,
                                             const std::string &ptx,
                                             CodeSource *source) {
  if (cubin.empty() && ptx.empty())
    throw Error("optim: '" + origin + "': the cubin is empty");
  makeCurrent();
  CUmodule module = nullptr;
  CodeSource used = CodeSource::Cubin;
  std::string cubinFailure;
  if (!cubin.empty()) {
    CUresult rc = driver_->cuModuleLoadData(&module, cubin.data());
    // Only a refusal of the image itself is worth the PTX: an invalid or
    // too new image, or none for this GPU. Out of memory or a lost context
    // would fail the JIT as well, and is reported as it is.
    bool imageRefused =
        rc == kErrorInvalidImage || rc == kErrorNoBinaryForGPU ||
        rc == kErrorInvalidPTX || rc == kErrorUnsupportedPTXVersion;
    try {
      driver_->check(rc, "cuModuleLoadData");
    } catch (const Error &e) {
      if (ptx.empty() || !imageRefused)
        throw Error(std::string(e.what()) + " (loading '" + origin +
                    "'s cubin)");
      cubinFailure = e.what();
      module = nullptr;
    }
  }
  if (!module) {
    // The driver compiles PTX text (NUL-terminated: std::string's data()).
    used = CodeSource::PTX;
    try {
      driver_->check(driver_->cuModuleLoadData(&module, ptx.c_str()),
                     "cuModuleLoadData");
    } catch (const Error &e) {
      throw Error(std::string(e.what()) + " (JIT-compiling '" + origin +
                  "'s PTX" +
                  (cubinFailure.empty()
                       ? ""
                       : ", after its cubin failed: " + cubinFailure) +
                  ")");
    }
  }
  if (source)
    *source = used;
  auto self = shared_from_this();
  return std::shared_ptr<CUmod_st>(module, [self](CUmod_st *mod) {
    if (self->tryMakeCurrent())
      self->driver_->cuModuleUnload(mod);
  });
}

int Device::attribute(int attribute) const {
  int value = 0;
  driver_->check(driver_->cuDeviceGetAttribute(&value, attribute, device_),
                 "cuDeviceGetAttribute");
  return value;
}

cuda::Rule Device::loadRule(const std::string &cubin, const std::string &json,
                            const std::string &origin,
                            const std::string &ptx) {
  Manifest m = readManifest(json, origin);
  CodeSource runs = requireCompatible(m.target, m.symbol, origin, ptx);
  // Matrix functions (KernelABI.h, "Matrix functions on CUDA") run on the
  // module's matrix kernels, which a PTX beside the cubin must have too.
  std::string matrixSuffix = m.info.dtype == DType::F32 ? "f32" : "f64";
  bool matrixFunctions = false;
  for (const ReductionSpec &r : m.info.reductions)
    matrixFunctions |= r.kind == ReductionKind::NewtonSchulz;
  const char *matrixOps[] = {"gemm_", "combine_", "sumsq_", "scale_"};
  if (matrixFunctions)
    for (const char *op : matrixOps)
      requireCompatible(m.target,
                        OPTIM_MATRIX_SYMBOL_PREFIX + std::string(op) +
                            matrixSuffix,
                        origin, ptx);
  // The bytes must be the ones the manifest was written for, when it
  // records their SHA-256 (optimc's always do; loading from files requires
  // it).
  detail::requireHashMatches(m.artifactSha256, cubin, "the cubin", origin);
  if (!ptx.empty())
    detail::requireHashMatches(m.ptxSha256, ptx, "the PTX beside the cubin",
                               origin);
  // A rule with tensor reductions has a first pass (KernelABI.h, GPU
  // kernels of version 6), which a PTX beside the cubin must have too.
  std::string reduceSymbol;
  if (!m.info.reductions.empty()) {
    if (!m.info.weights.empty())
      throw Error("optim: '" + origin + "': rule '" + m.info.name +
                  "' has weights and tensor reductions: not a GPU rule "
                  "kernel");
    reduceSymbol = OPTIM_REDUCE_SYMBOL_PREFIX + m.info.name;
    requireCompatible(m.target, reduceSymbol, origin, ptx);
  }
  CodeSource source = CodeSource::Cubin;
  std::shared_ptr<CUmod_st> owner = loadModule(
      runs == CodeSource::Cubin ? cubin : std::string(), origin, ptx, &source);
  requireCompiledReductions(*driver_, owner.get(), m.info, origin);
  requireCompiledRandom(*driver_, owner.get(), m.info, origin);
  CUfunction fn = nullptr;
  driver_->check(
      driver_->cuModuleGetFunction(&fn, owner.get(), m.symbol.c_str()),
      "cuModuleGetFunction");
  CUfunction reduce = nullptr;
  if (!reduceSymbol.empty())
    driver_->check(
        driver_->cuModuleGetFunction(&reduce, owner.get(),
                                     reduceSymbol.c_str()),
        ("cuModuleGetFunction(" + reduceSymbol + ")").c_str());
  cuda::Rule rule;
  if (matrixFunctions) {
    CUfunction *fns[] = {
        &rule.matrixKernels_.gemm, &rule.matrixKernels_.combine,
        &rule.matrixKernels_.sumSquares, &rule.matrixKernels_.scale};
    for (int k = 0; k < 4; ++k) {
      std::string symbol =
          OPTIM_MATRIX_SYMBOL_PREFIX + std::string(matrixOps[k]) + matrixSuffix;
      driver_->check(
          driver_->cuModuleGetFunction(fns[k], owner.get(), symbol.c_str()),
          ("cuModuleGetFunction(" + symbol + ")").c_str());
    }
  }
  rule.info_ = std::make_shared<const RuleInfo>(std::move(m.info));
  rule.target_ = m.target;
  rule.device_ = shared_from_this();
  rule.module_ = std::move(owner);
  rule.function_ = fn;
  rule.reduceFunction_ = reduce;
  rule.source_ = source;
  return rule;
}

//===----------------------------------------------------------------------===//
// Buffer
//===----------------------------------------------------------------------===//

Buffer::Buffer(std::shared_ptr<Device> device, size_t bytes)
    : device_(std::move(device)), bytes_(bytes) {
  device_->makeCurrent();
  device_->driver().check(
      device_->driver().cuMemAlloc(&ptr_, bytes ? bytes : 1), "cuMemAlloc");
}

Buffer::~Buffer() {
  if (ptr_ && device_->tryMakeCurrent())
    device_->driver().cuMemFree(ptr_);
}

void Buffer::upload(const void *host, size_t bytes, size_t offset) {
  if (offset + bytes > bytes_)
    throw Error("optim: CUDA: upload past the end of a buffer");
  device_->makeCurrent();
  device_->driver().check(
      device_->driver().cuMemcpyHtoD(ptr_ + offset, host, bytes),
      "cuMemcpyHtoD");
}

void Buffer::download(void *host, size_t bytes, size_t offset) const {
  if (offset + bytes > bytes_)
    throw Error("optim: CUDA: download past the end of a buffer");
  device_->makeCurrent();
  device_->driver().check(
      device_->driver().cuMemcpyDtoH(host, ptr_ + offset, bytes),
      "cuMemcpyDtoH");
}

//===----------------------------------------------------------------------===//
// Optimizer
//===----------------------------------------------------------------------===//

namespace {
/// The largest block a learned rule's kernel can be launched with (its
/// registers decide), in whole warps.
unsigned largestBlock(const cuda::Rule &rule) {
  const DriverAPI &d = rule.device()->driver();
  if (!d.cuFuncGetAttribute)
    throw Error("optim: CUDA: the driver table has no cuFuncGetAttribute");
  int most = 0;
  rule.device()->makeCurrent();
  d.check(d.cuFuncGetAttribute(&most, kFuncAttrMaxThreadsPerBlock,
                               rule.function()),
          "cuFuncGetAttribute(CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)");
  if (most < 32)
    throw Error("optim: CUDA: rule '" + rule.info().name +
                "' cannot be launched with even one warp per block (the "
                "driver allows " +
                std::to_string(most) + " threads)");
  return unsigned(std::min(most, 1024)) / 32 * 32;
}

/// A learned rule's automatic chunk size: at most 16 coordinates a thread,
/// balanced over the blocks the device runs at once (the occupancy the
/// driver computes for this kernel and block, times the SMs). Without the
/// occupancy entry point, or if the driver cannot answer, 16 a thread.
int64_t learnedChunkSize(const cuda::Rule &rule, unsigned block,
                         const std::vector<DeviceTensor> &params) {
  const int64_t largest = int64_t(block) * 16;
  const DriverAPI &d = rule.device()->driver();
  if (!d.cuOccupancyMaxActiveBlocksPerMultiprocessor)
    return largest;
  int perSM = 0, sms = 0;
  rule.device()->makeCurrent();
  if (d.cuOccupancyMaxActiveBlocksPerMultiprocessor(&perSM, rule.function(),
                                                    int(block), 0) != 0)
    return largest;
  try {
    sms = rule.device()->attribute(kAttrMultiprocessorCount);
  } catch (const Error &) {
    return largest;
  }
  if (perSM <= 0 || sms <= 0)
    return largest;
  std::vector<int64_t> sizes;
  for (const DeviceTensor &t : params)
    sizes.push_back(t.size);
  return balancedChunkSize(sizes, block, 16, int64_t(perSM) * sms);
}
} // namespace

int64_t cuda::balancedChunkSize(const std::vector<int64_t> &sizes,
                                int64_t block, int64_t maxRounds,
                                int64_t concurrent) {
  const int64_t largest = block * maxRounds;
  if (block <= 0 || maxRounds <= 0 || concurrent <= 0)
    return largest;
  int64_t best = largest, bestCost = -1;
  for (int64_t rounds = maxRounds; rounds >= 1; --rounds) {
    const int64_t chunk = block * rounds;
    int64_t chunks = 0;
    for (int64_t size : sizes)
      chunks += (std::max<int64_t>(size, 0) + chunk - 1) / chunk;
    // Blocks of equal chunks take equal times: each wave of `concurrent`
    // costs `rounds`, a partial last wave as much as a full one, plus about
    // a tenth of a round for the block's copy of the weights into shared
    // memory (in tenths of a round).
    const int64_t cost =
        (chunks + concurrent - 1) / concurrent * (10 * rounds + 1);
    if (bestCost < 0 || cost < bestCost) {
      best = chunk;
      bestCost = cost;
    }
  }
  return best;
}

Optimizer::Optimizer(cuda::Rule rule, std::vector<DeviceTensor> params,
                     OptimizerOptions options)
    : rule_(std::move(rule)), params_(std::move(params)), options_(options) {
  if (!rule_.function())
    throw Error("optim: CUDA: the optimizer needs a loaded rule");
  const RuleInfo &info = rule_.info();
  // Explicit values first, so that an error names what the caller set.
  if (options_.chunkSize != 0 &&
      (options_.chunkSize < 0 || options_.chunkSize % 4 ||
       options_.chunkSize > (int64_t(1) << 31)))
    throw Error("optim: CUDA: chunkSize must be 0 (automatic) or a positive "
                "multiple of 4 up to 2^31, got " +
                std::to_string(options_.chunkSize));
  if (options_.blockSize != 0 &&
      (options_.blockSize < 32 || options_.blockSize > 1024 ||
       options_.blockSize % 32))
    throw Error("optim: CUDA: blockSize must be 0 (automatic) or a multiple "
                "of 32 in [32, 1024], got " +
                std::to_string(options_.blockSize));
  if (!info.weights.empty()) {
    // Learned kernels take ~170 registers a thread: a block larger than
    // the register file allows would only fail at the first launch.
    unsigned most = largestBlock(rule_);
    if (options_.blockSize == 0)
      options_.blockSize = most;
    else if (options_.blockSize > most)
      throw Error("optim: CUDA: blockSize " +
                  std::to_string(options_.blockSize) + " is more than the " +
                  std::to_string(most) + " threads that rule '" + info.name +
                  "' can be launched with (its registers decide)");
  } else if (options_.blockSize == 0) {
    options_.blockSize = 256;
  }
  if (options_.chunkSize == 0)
    options_.chunkSize = info.weights.empty()
                             ? 16384
                             : learnedChunkSize(rule_, options_.blockSize,
                                                params_);
  size_t elt = dtypeSize(info.dtype);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].size < 0 || (params_[i].size && !params_[i].data))
      throw Error("optim: CUDA: parameter tensor " + std::to_string(i) +
                  " has no data or a negative size");
    if (params_[i].data % elt)
      throw Error("optim: CUDA: parameter tensor " + std::to_string(i) +
                  " is not aligned to its element type");
    // The shape, when given, as optim::Optimizer checks it.
    const std::vector<int64_t> &shape = params_[i].shape;
    if (!shape.empty()) {
      int64_t count = 1;
      bool bad = shape.size() > 64, overflow = false;
      for (int64_t d : shape)
        bad |= d < 0;
      if (std::find(shape.begin(), shape.end(), 0) != shape.end())
        count = 0;
      else if (!bad)
        for (int64_t d : shape)
          overflow |= __builtin_mul_overflow(count, d, &count);
      if (bad || overflow || count != params_[i].size)
        throw Error("optim: CUDA: parameter tensor " + std::to_string(i) +
                    " has a shape of " + std::to_string(shape.size()) +
                    " dimensions that is not one of its " +
                    std::to_string(params_[i].size) +
                    " elements (a negative dimension, more than 64 "
                    "dimensions or another element count)");
    }
  }
  for (const HyperParam &h : info.hypers)
    hypers_.push_back(h.defaultValue);
  for (const DeviceTensor &p : params_)
    tensorSizes_.push_back(p.size);
  // Rules with row or column states or reductions (KernelABI.h, version
  // 10): each tensor's [B, R, C] view, as optim::Optimizer takes it.
  axes_ = info.hasAxes();
  for (size_t s = 0; s < info.states.size(); ++s)
    if (info.states[s].axis != Axis::None)
      axisStates_.push_back(s);
  for (size_t r = 0; r < info.reductions.size(); ++r)
    if (info.reductions[r].axis != Axis::None)
      axisReductions_.push_back(r);
  for (size_t i = 0; i < params_.size(); ++i) {
    View v;
    if (!detail::viewFits(params_[i].shape, params_[i].size, v.B, v.R, v.C) &&
        axes_)
      throw Error("optim: CUDA: parameter tensor " + std::to_string(i) +
                  ": shape " + detail::shapeText(params_[i].shape) +
                  " has more rows or columns than the address space holds");
    views_.push_back(v);
  }
  // A product launch has ceil(M / 64) blocks in y, at most 65535, where M
  // is a matrix's smaller dimension (KernelABI.h, "Matrix functions on
  // CUDA").
  bool matrixFunctions = false;
  for (size_t r : axisReductions_)
    matrixFunctions |= info.reductions[r].axis == Axis::Matrix;
  const int64_t mostRows = int64_t(65535) * matrixblock::kTile;
  // The scratch of the largest group of matrices NS(X) takes at once
  // (CudaMatrix.h), its partials, and the slices of its split products.
  int64_t largestWork = 0, largestGroup = 0;
  if (matrixFunctions)
    multiprocessors_ =
        rule_.device()->attribute(kAttrMultiprocessorCount);
  if (matrixFunctions)
    for (size_t i = 0; i < params_.size(); ++i) {
      const View &v = views_[i];
      if (params_[i].size == 0)
        continue;
      if (std::min(v.R, v.C) > mostRows)
        throw Error("optim: CUDA: parameter tensor " + std::to_string(i) +
                    ": shape " + detail::shapeText(params_[i].shape) +
                    " has matrices of more than " + std::to_string(mostRows) +
                    " rows and columns, more than newton_schulz's products "
                    "take on CUDA");
      const int64_t group = newtonSchulzGroup(v.B, v.R, v.C);
      matrixGroups_.push_back(group);
      largestGroup = std::max(largestGroup, group);
      largestWork = std::max(largestWork, group * newtonSchulzWork(v.R, v.C));
      matrixSlices_ =
          std::max(matrixSlices_, newtonSchulzSlices(group, v.R, v.C,
                                                     multiprocessors_));
    }
  weights_.resize(info.weights.size());
  weightSet_.assign(info.weights.size(), false);
  const std::shared_ptr<Device> &dev = rule_.device();
  dev->makeCurrent();
  if (options_.stream) {
    stream_ = options_.stream;
  } else {
    dev->driver().check(dev->driver().cuStreamCreate(&stream_, 0),
                        "cuStreamCreate");
    ownsStream_ = true;
  }
  try {
    for (const StateSpec &s : info.states) {
      std::vector<Buffer> perTensor, perTensorNext;
      for (size_t t = 0; t < params_.size(); ++t) {
        const DeviceTensor &p = params_[t];
        // A vector state h[N]: N components of p.size coordinates each
        // (component-major, KernelABI.h); a row state B * R values, a
        // column state B * C (version 10).
        const View &v = views_[t];
        int64_t count = s.axis == Axis::Row   ? v.B * v.R
                        : s.axis == Axis::Col ? v.B * v.C
                                              : s.size * p.size;
        // The kernels write a row or column state's new values here; the
        // step copies them over the current ones.
        if (s.axis != Axis::None)
          perTensorNext.emplace_back(dev, size_t(count) * elt);
        Buffer buf(dev, size_t(count) * elt);
        // The initial value, uploaded once; f32 states from a double.
        std::vector<char> host(size_t(count) * elt);
        for (int64_t i = 0; i < count; ++i) {
          if (info.dtype == DType::F32) {
            float v = float(s.init);
            std::memcpy(host.data() + i * 4, &v, 4);
          } else {
            std::memcpy(host.data() + i * 8, &s.init, 8);
          }
        }
        buf.upload(host.data(), host.size());
        perTensor.push_back(std::move(buf));
      }
      states_.push_back(std::move(perTensor));
      if (s.axis != Axis::None)
        next_.push_back(std::move(perTensorNext));
    }
    for (size_t r : axisReductions_) {
      std::vector<Buffer> perTensor;
      if (info.reductions[r].axis == Axis::Matrix)
        for (const DeviceTensor &p : params_)
          perTensor.emplace_back(dev, size_t(p.size) * elt);
      matrices_.push_back(std::move(perTensor));
    }
    if (largestWork > 0) {
      matrixWork_ = Buffer(dev, size_t(largestWork + matrixSlices_) * elt);
      matrixPartials_ =
          Buffer(dev, size_t(largestGroup) * matrixblock::kSumBlocks * 8);
    }
  } catch (...) {
    states_.clear();
    next_.clear();
    matrices_.clear();
    if (ownsStream_)
      dev->driver().cuStreamDestroy(stream_);
    throw;
  }
}

Optimizer::~Optimizer() {
  const std::shared_ptr<Device> &dev = rule_.device();
  if (!dev->tryMakeCurrent())
    return;
  // State and table buffers must not be freed under a running kernel.
  dev->driver().cuStreamSynchronize(stream_);
  if (ownsStream_)
    dev->driver().cuStreamDestroy(stream_);
}

void Optimizer::set(const std::string &hyper, double value) {
  int i = rule_.info().findHyper(hyper);
  if (i < 0)
    throw Error("optim: rule '" + rule_.info().name +
                "' has no hyperparameter '" + hyper + "'");
  if (rule_.info().hypers[i].isConst)
    throw Error("optim: hyperparameter '" + hyper +
                "' is const (compiled in); recompile to change it");
  hypers_[i] = value;
}

double Optimizer::get(const std::string &hyper) const {
  int i = rule_.info().findHyper(hyper);
  if (i < 0)
    throw Error("optim: rule '" + rule_.info().name +
                "' has no hyperparameter '" + hyper + "'");
  return hypers_[i];
}

void Optimizer::setWeights(const std::string &name, const void *host,
                           size_t count) {
  const RuleInfo &info = rule_.info();
  for (size_t w = 0; w < info.weights.size(); ++w) {
    if (info.weights[w].name != name)
      continue;
    size_t want = 1;
    for (int64_t d : info.weights[w].shape)
      want *= size_t(d);
    if (count != want)
      throw Error("optim: CUDA: weights '" + name + "' of rule '" +
                  info.name + "' have " + std::to_string(want) +
                  " elements, got " + std::to_string(count));
    size_t bytes = want * dtypeSize(info.dtype);
    const std::shared_ptr<Device> &dev = rule_.device();
    dev->makeCurrent();
    // A running step may still read the old weights.
    dev->driver().check(dev->driver().cuStreamSynchronize(stream_),
                        "cuStreamSynchronize");
    if (weights_[w].size() != bytes)
      weights_[w] = Buffer(dev, bytes);
    if (bytes)
      weights_[w].upload(host, bytes);
    weightSet_[w] = true;
    return;
  }
  throw Error("optim: rule '" + info.name + "' has no weights '" + name +
              "'");
}

void Optimizer::planAxisChunks(std::vector<int64_t> &firsts) {
  const RuleInfo &info = rule_.info();
  // As optim::Optimizer chunks (KernelABI.h, "Axes"): rectangles inside one
  // matrix, floor(K / C) whole rows or parts of K of a longer row, from the
  // shapes and chunkSize only; K = 16 chunkSize with a column reduction,
  // whose partials are a double per column of each chunk.
  const bool colReductions =
      std::any_of(info.reductions.begin(), info.reductions.end(),
                  [](const ReductionSpec &r) { return r.axis == Axis::Col; });
  const int64_t K =
      colReductions ? std::min(options_.chunkSize,
                               std::numeric_limits<int64_t>::max() / 16) *
                          16
                    : options_.chunkSize;
  chunkTensor_.clear();
  chunkRect_.clear();
  chunkMatrix_.clear();
  axisPartialOffset_.clear();
  axisReducedOffset_.assign(params_.size(), {});
  size_t partialCount = 0, reducedCount = 0;
  for (size_t t = 0; t < params_.size(); ++t) {
    const View &v = views_[t];
    // A matrix function has no partials or results of its own: its slots
    // address its matrix buffer (KernelABI.h version 11).
    auto along = [&](size_t r, int64_t rows, int64_t cols) -> size_t {
      Axis axis = info.reductions[r].axis;
      return axis == Axis::Row ? size_t(rows)
             : axis == Axis::Col ? size_t(cols)
                                 : 0;
    };
    for (size_t r : axisReductions_) {
      axisReducedOffset_[t].push_back(reducedCount);
      reducedCount += along(r, v.B * v.R, v.B * v.C);
    }
    if (params_[t].size == 0)
      continue;
    auto add = [&](int64_t b, int64_t nr, int64_t nc, int64_t r0, int64_t c0) {
      chunkTensor_.push_back(t);
      firsts.push_back((b * v.R + r0) * v.C + c0);
      chunkRect_.insert(chunkRect_.end(), {nr, nc, r0, c0});
      chunkMatrix_.push_back(b);
      for (size_t r : axisReductions_) {
        axisPartialOffset_.push_back(partialCount);
        partialCount += along(r, nr, nc);
      }
    };
    for (int64_t b = 0; b < v.B; ++b) {
      if (v.C <= K) {
        const int64_t rows = K / v.C;
        for (int64_t r0 = 0; r0 < v.R; r0 += rows)
          add(b, std::min(rows, v.R - r0), v.C, r0, 0);
      } else {
        for (int64_t r = 0; r < v.R; ++r)
          for (int64_t c0 = 0; c0 < v.C; c0 += K)
            add(b, 1, std::min(K, v.C - c0), r, c0);
      }
    }
  }
  const std::shared_ptr<Device> &dev = rule_.device();
  if (hostAxisPartials_.size() != partialCount) {
    axisPartials_ = Buffer(dev, partialCount * 8);
    hostAxisPartials_.assign(partialCount, 0.0);
  }
  if (hostAxisReduced_.size() != reducedCount) {
    axisReduced_ = Buffer(dev, reducedCount * 8);
    hostAxisReduced_.assign(reducedCount, 0.0);
  }
}

void Optimizer::combineAxisReductions(unsigned level) {
  const RuleInfo &info = rule_.info();
  const size_t X = axisReductions_.size();
  for (size_t x = 0; x < X; ++x) {
    const ReductionSpec &spec = info.reductions[axisReductions_[x]];
    if (spec.level != level || spec.axis == Axis::Matrix)
      continue;
    const bool row = spec.axis == Axis::Row;
    // As optim::Optimizer combines them: each row's or column's partials
    // in chunk order, then mean, norm, ... over its C or R coordinates. No
    // chunk reads the results of an empty tensor.
    for (size_t t = 0; t < params_.size(); ++t) {
      if (params_[t].size == 0)
        continue;
      const View &v = views_[t];
      double *out = hostAxisReduced_.data() + axisReducedOffset_[t][x];
      std::fill(out, out + (row ? v.B * v.R : v.B * v.C),
                detail::reductionIdentity(spec.kind));
    }
    for (size_t c = 0; c < chunkTensor_.size(); ++c) {
      const View &v = views_[chunkTensor_[c]];
      const int64_t *rect = &chunkRect_[4 * c];
      int64_t b = chunkMatrix_[c];
      int64_t first = row ? b * v.R + rect[2] : b * v.C + rect[3];
      int64_t n = row ? rect[0] : rect[1];
      double *out =
          hostAxisReduced_.data() + axisReducedOffset_[chunkTensor_[c]][x];
      const double *part =
          hostAxisPartials_.data() + axisPartialOffset_[c * X + x];
      for (int64_t i = 0; i < n; ++i)
        out[first + i] = detail::combinePartial(spec.kind, out[first + i],
                                                part[i]);
    }
    for (size_t t = 0; t < params_.size(); ++t) {
      if (params_[t].size == 0)
        continue;
      const View &v = views_[t];
      double *out = hostAxisReduced_.data() + axisReducedOffset_[t][x];
      const int64_t count = row ? v.B * v.R : v.B * v.C;
      for (int64_t i = 0; i < count; ++i)
        out[i] = detail::finishReduction(spec.kind, out[i], row ? v.C : v.R);
    }
  }
}

void Optimizer::runMatrixFunctions(unsigned level) {
  const RuleInfo &info = rule_.info();
  const DriverAPI &d = rule_.device()->driver();
  for (size_t x = 0; x < axisReductions_.size(); ++x) {
    const ReductionSpec &spec = info.reductions[axisReductions_[x]];
    if (spec.axis != Axis::Matrix || spec.level != level)
      continue;
    // matrixGroups_ has an entry per non-empty tensor, in order.
    size_t nonEmpty = 0;
    for (size_t t = 0; t < params_.size(); ++t) {
      if (params_[t].size == 0)
        continue;
      const View &v = views_[t];
      const int64_t group = matrixGroups_[nonEmpty++];
      // The split products' slices go after the group's own scratch.
      const size_t own = size_t(group * newtonSchulzWork(v.R, v.C));
      enqueueNewtonSchulz(d, rule_.matrixKernels(), stream_, info.dtype,
                          matrices_[x][t].get(), v.B, v.R, v.C, spec, group,
                          matrixWork_.get(), matrixPartials_.get(),
                          matrixWork_.get() + own * dtypeSize(info.dtype),
                          matrixWork_.size() / dtypeSize(info.dtype) - own,
                          multiprocessors_);
    }
  }
}

void Optimizer::buildTable(
    const std::vector<DeviceTensor> &grads,
    const std::vector<const std::vector<DeviceTensor> *> &inputs) {
  const RuleInfo &info = rule_.info();
  size_t elt = dtypeSize(info.dtype);
  std::vector<uint64_t> ptrs;
  std::vector<int64_t> lengths, strides;
  // Each chunk's tensor and first coordinate in it.
  std::vector<int64_t> firsts;
  if (axes_) {
    planAxisChunks(firsts);
  } else {
    chunkTensor_.clear();
    for (size_t t = 0; t < params_.size(); ++t)
      for (int64_t first = 0; first < params_[t].size;
           first += options_.chunkSize) {
        chunkTensor_.push_back(t);
        firsts.push_back(first);
      }
  }
  const size_t X = axisReductions_.size();
  for (size_t c = 0; c < chunkTensor_.size(); ++c) {
    size_t t = chunkTensor_[c];
    int64_t first = firsts[c];
    uint64_t offset = uint64_t(first) * elt;
    ptrs.push_back(params_[t].data + offset);
    ptrs.push_back(grads[t].data + offset);
    // The inputs, in declaration order (KernelABI.h, version 7).
    for (const std::vector<DeviceTensor> *in : inputs)
      ptrs.push_back((*in)[t].data + offset);
    if (!axes_) {
      for (const std::vector<Buffer> &s : states_)
        ptrs.push_back(s[t].get() + offset);
      lengths.push_back(std::min(options_.chunkSize, params_[t].size - first));
      strides.push_back(params_[t].size);
      continue;
    }
    // A row (column) value's pointers start at the chunk's first row
    // (column) of all the tensor's matrices (KernelABI.h, "Axes").
    const View &v = views_[t];
    const int64_t *rect = &chunkRect_[4 * c];
    const int64_t b = chunkMatrix_[c];
    auto at = [&](Axis axis) -> uint64_t {
      return axis == Axis::Row   ? uint64_t(b * v.R + rect[2])
             : axis == Axis::Col ? uint64_t(b * v.C + rect[3])
                                 : uint64_t(first);
    };
    for (size_t s = 0; s < states_.size(); ++s)
      ptrs.push_back(states_[s][t].get() + at(info.states[s].axis) * elt);
    for (size_t a = 0; a < axisStates_.size(); ++a)
      ptrs.push_back(next_[a][t].get() +
                     at(info.states[axisStates_[a]].axis) * elt);
    // A matrix function's pair: its buffer at the chunk's first coordinate.
    auto matrixAt = [&](size_t x) {
      return matrices_[x][t].get() + uint64_t(first) * elt;
    };
    for (size_t x = 0; x < X; ++x)
      ptrs.push_back(
          matrices_[x].empty()
              ? axisPartials_.get() + axisPartialOffset_[c * X + x] * 8
              : matrixAt(x));
    for (size_t x = 0; x < X; ++x)
      ptrs.push_back(matrices_[x].empty()
                         ? axisReduced_.get() +
                               (axisReducedOffset_[t][x] +
                                at(info.reductions[axisReductions_[x]].axis)) *
                                   8
                         : matrixAt(x));
    lengths.insert(lengths.end(), rect, rect + 4);
    strides.push_back(params_[t].size);
  }
  // The shape values (KernelABI.h, version 11): R and C of each chunk's
  // tensor.
  chunkRows_.clear();
  chunkCols_.clear();
  if (detail::hasShapeValues(info.reductions))
    for (size_t t : chunkTensor_) {
      chunkRows_.push_back(views_[t].R);
      chunkCols_.push_back(views_[t].C);
    }
  int64_t chunks = int64_t(strides.size());
  // The kernels' rng (KernelABI.h, version 8): the seed, then the global
  // index of each chunk's first coordinate (its position in the
  // parameters concatenated in order).
  std::vector<uint64_t> rng = {options_.seed};
  std::vector<uint64_t> before(params_.size() + 1, 0);
  for (size_t t = 0; t < params_.size(); ++t)
    before[t + 1] = before[t] + uint64_t(params_[t].size);
  for (size_t c = 0; c < chunkTensor_.size(); ++c)
    rng.push_back(before[chunkTensor_[c]] + uint64_t(firsts[c]));
  size_t bytes =
      (ptrs.size() + lengths.size() + strides.size() + rng.size()) * 8;
  const std::shared_ptr<Device> &dev = rule_.device();
  // The running step may still read the old table.
  dev->driver().check(dev->driver().cuStreamSynchronize(stream_),
                      "cuStreamSynchronize");
  if (table_.size() < bytes)
    table_ = Buffer(dev, bytes);
  std::vector<char> host(bytes);
  std::memcpy(host.data(), ptrs.data(), ptrs.size() * 8);
  // One length per chunk, four with axes (nr, nc, r0, c0).
  std::memcpy(host.data() + ptrs.size() * 8, lengths.data(),
              lengths.size() * 8);
  std::memcpy(host.data() + (ptrs.size() + lengths.size()) * 8,
              strides.data(), chunks * 8);
  std::memcpy(host.data() + (ptrs.size() + lengths.size() + chunks) * 8,
              rng.data(), rng.size() * 8);
  if (bytes)
    table_.upload(host.data(), bytes);
  numChunks_ = chunks;
  // Rules with reductions: R partials and R reduced values per chunk.
  size_t perChunk = info.reductions.size() * size_t(chunks) * 8;
  if (perChunk && partials_.size() < perChunk) {
    partials_ = Buffer(dev, perChunk);
    reduced_ = Buffer(dev, perChunk);
  }
  tableGrads_.clear();
  for (const DeviceTensor &g : grads)
    tableGrads_.push_back(g.data);
  for (const std::vector<DeviceTensor> *in : inputs)
    for (const DeviceTensor &x : *in)
      tableGrads_.push_back(x.data);
}

void Optimizer::step(const std::vector<DeviceTensor> &grads) {
  const RuleInfo &info = rule_.info();
  // The kernel would read input pointers that nothing set.
  if (!info.inputs.empty())
    throw Error(detail::inputsRequired(
        info, "optim: CUDA",
        std::string("step(grads, inputs) with one device tensor per "
                    "parameter for ") +
            (info.inputs.size() == 1 ? "it" : "each")));
  runStep(grads, {});
}

void Optimizer::step(const std::vector<DeviceTensor> &grads,
                     const std::vector<DeviceInput> &inputs) {
  runStep(grads, detail::orderInputs(rule_.info(), inputs, "optim: CUDA"));
}

void Optimizer::runStep(
    const std::vector<DeviceTensor> &grads,
    const std::vector<const std::vector<DeviceTensor> *> &inputs) {
  const RuleInfo &info = rule_.info();
  if (grads.size() != params_.size())
    throw Error("optim: CUDA: step() got " + std::to_string(grads.size()) +
                " gradients for " + std::to_string(params_.size()) +
                " parameter tensors");
  size_t elt = dtypeSize(info.dtype);
  size_t numRead = grads.size() * (1 + inputs.size());
  bool moved = tableGrads_.size() != numRead || table_.size() == 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (grads[i].size != params_[i].size)
      throw Error("optim: CUDA: gradient " + std::to_string(i) + " has " +
                  std::to_string(grads[i].size) + " elements, its parameter " +
                  std::to_string(params_[i].size));
    if ((grads[i].size && !grads[i].data) || grads[i].data % elt)
      throw Error("optim: CUDA: gradient " + std::to_string(i) +
                  " is null or not aligned to its element type");
    if (!moved && tableGrads_[i] != grads[i].data)
      moved = true;
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    const std::vector<DeviceTensor> &tensors = *inputs[k];
    std::string what = "optim: CUDA: input '" + info.inputs[k] + "'";
    if (tensors.size() != params_.size())
      throw Error(what + " has " + std::to_string(tensors.size()) +
                  " tensors for " + std::to_string(params_.size()) +
                  " parameter tensors (one per parameter)");
    for (size_t i = 0; i < tensors.size(); ++i) {
      std::string which = what + " of parameter " + std::to_string(i);
      if (tensors[i].size != params_[i].size)
        throw Error(which + " has " + std::to_string(tensors[i].size) +
                    " elements, its parameter " +
                    std::to_string(params_[i].size));
      if ((tensors[i].size && !tensors[i].data) || tensors[i].data % elt)
        throw Error(which + " is null or not aligned to its element type");
      if (!moved &&
          tableGrads_[grads.size() * (1 + k) + i] != tensors[i].data)
        moved = true;
    }
  }
  for (size_t w = 0; w < info.weights.size(); ++w)
    if (!weightSet_[w])
      throw Error("optim: CUDA: rule '" + info.name +
                  "' is learned: its weights '" + info.weights[w].name +
                  "' were not set (Optimizer::setWeights)");
  const std::shared_ptr<Device> &dev = rule_.device();
  dev->makeCurrent();
  if (moved)
    buildTable(grads, inputs);
  if (numChunks_ == 0) {
    ++step_;
    return;
  }
  size_t numPtrs = 2 + info.inputs.size() + info.states.size();
  if (axes_)
    numPtrs += axisStates_.size() + 2 * axisReductions_.size();
  CUdeviceptr ptrs = table_.get();
  CUdeviceptr lengths = ptrs + numPtrs * numChunks_ * 8;
  CUdeviceptr strides = lengths + (axes_ ? 4 : 1) * numChunks_ * 8;
  CUdeviceptr rng = strides + numChunks_ * 8;
  int64_t t = step_ + 1;
  std::vector<float> f32(hypers_.begin(), hypers_.end());
  std::vector<void *> args = {&ptrs, &lengths, &strides, nullptr, &t};
  for (size_t h = 0; h < hypers_.size(); ++h)
    args.push_back(info.dtype == DType::F32 ? static_cast<void *>(&f32[h])
                                            : static_cast<void *>(&hypers_[h]));
  // Learned rules: one device pointer per weights tensor, after the hypers.
  std::vector<CUdeviceptr> weights;
  for (const Buffer &w : weights_)
    weights.push_back(w.get());
  for (CUdeviceptr &w : weights)
    args.push_back(&w);
  // A grid has at most 2^31 - 1 blocks: more chunks take more launches.
  const int64_t maxGrid = std::numeric_limits<int32_t>::max();
  auto launch = [&](CUfunction fn, const std::string &call) {
    for (int64_t begin = 0; begin < numChunks_; begin += maxGrid) {
      int64_t grid = std::min(maxGrid, numChunks_ - begin);
      args[3] = &begin;
      dev->driver().check(
          dev->driver().cuLaunchKernel(fn, unsigned(grid), 1, 1,
                                       options_.blockSize, 1, 1, 0, stream_,
                                       args.data(), nullptr),
          call.c_str());
    }
  };
  CUdeviceptr reduced = reduced_.get();
  if (!info.reductions.empty()) {
    // Stage s of the first pass leaves the level-s partials of every chunk;
    // they are combined on the host in chunk order, by the code the CPU
    // executor uses, and uploaded for the next stage, which reads them
    // from `reduced`; the rule kernel takes every result (KernelABI.h,
    // versions 6 and 9).
    CUdeviceptr partials = partials_.get();
    int64_t stage = 0;
    args.push_back(&partials);
    args.push_back(&reduced);
    args.push_back(&stage);
    args.push_back(&rng);
    size_t count = info.reductions.size() * size_t(numChunks_);
    hostPartials_.resize(count);
    hostReduced_.resize(count);
    if (!chunkRows_.empty()) {
      // The shape values, which every stage and the rule may read
      // (KernelABI.h, version 11): no combine writes their slots. The
      // previous step's last upload of hostReduced_ is done once the stream
      // is.
      dev->driver().check(dev->driver().cuStreamSynchronize(stream_),
                          "cuStreamSynchronize");
      detail::fillShapeValues(info.reductions, size_t(numChunks_),
                              chunkRows_.data(), chunkCols_.data(),
                              hostReduced_.data());
      dev->driver().check(dev->driver().cuMemcpyHtoDAsync(
                              reduced, hostReduced_.data(), count * 8, stream_),
                          "cuMemcpyHtoDAsync");
    }
    unsigned last = detail::maxReductionLevel(info.reductions);
    for (unsigned s = 0; s <= last; ++s) {
      // A stage of shape values only computes nothing (version 11).
      if (!detail::stageRuns(info.reductions, s))
        continue;
      stage = int64_t(s);
      launch(rule_.reduceFunction(),
             "cuLaunchKernel(" OPTIM_REDUCE_SYMBOL_PREFIX + info.name + ")");
      // The stage wrote X into the matrix buffers: NS(X) replaces it
      // before anything reads it, in stream order.
      runMatrixFunctions(s);
      // The previous upload of hostReduced_ (this step's last stage's, or
      // the previous step's) is done once the stream is.
      dev->driver().check(dev->driver().cuStreamSynchronize(stream_),
                          "cuStreamSynchronize");
      partials_.download(hostPartials_.data(), count * 8);
      detail::combineReductions(info.reductions, s, chunkTensor_, tensorSizes_,
                                hostPartials_.data(), hostReduced_.data());
      dev->driver().check(dev->driver().cuMemcpyHtoDAsync(
                              reduced, hostReduced_.data(), count * 8, stream_),
                          "cuMemcpyHtoDAsync");
      // Row and column reductions (version 10): each row's or column's
      // partials, combined alike (their results are read per row or column
      // through the chunk table's pointers).
      bool axisStage = std::any_of(
          axisReductions_.begin(), axisReductions_.end(),
          [&](size_t r) { return info.reductions[r].level == s; });
      if (axisStage && !hostAxisPartials_.empty()) {
        axisPartials_.download(hostAxisPartials_.data(),
                               hostAxisPartials_.size() * 8);
        combineAxisReductions(s);
        dev->driver().check(
            dev->driver().cuMemcpyHtoDAsync(axisReduced_.get(),
                                            hostAxisReduced_.data(),
                                            hostAxisReduced_.size() * 8,
                                            stream_),
            "cuMemcpyHtoDAsync");
      }
    }
    args.resize(args.size() - 4);
    args.push_back(&reduced);
  }
  // Every kernel's last argument (KernelABI.h, version 8).
  args.push_back(&rng);
  launch(rule_.function(), "cuLaunchKernel");
  // The rule kernel wrote each row and column state's new values to its
  // next buffer (version 10): they become the current ones, in stream
  // order, before anything reads them.
  for (size_t a = 0; a < axisStates_.size(); ++a)
    for (size_t t = 0; t < params_.size(); ++t)
      if (params_[t].size > 0 && next_[a][t].size() > 0)
        dev->driver().check(
            dev->driver().cuMemcpyDtoDAsync(states_[axisStates_[a]][t].get(),
                                            next_[a][t].get(),
                                            next_[a][t].size(), stream_),
            "cuMemcpyDtoDAsync");
  ++step_;
}

void Optimizer::synchronize() const {
  const std::shared_ptr<Device> &dev = rule_.device();
  dev->makeCurrent();
  dev->driver().check(dev->driver().cuStreamSynchronize(stream_),
                      "cuStreamSynchronize");
}

size_t Optimizer::stateSlot(const std::string &name, size_t index) const {
  const RuleInfo &info = rule_.info();
  for (size_t s = 0; s < info.states.size(); ++s)
    if (info.states[s].name == name) {
      if (index >= params_.size())
        throw Error("optim: CUDA: no parameter tensor " +
                    std::to_string(index));
      return s;
    }
  throw Error("optim: rule '" + info.name + "' has no state '" + name + "'");
}

void Optimizer::readState(const std::string &name, size_t index,
                          void *host) const {
  const Buffer &buf = states_[stateSlot(name, index)][index];
  synchronize();
  buf.download(host, buf.size());
}

void Optimizer::writeState(const std::string &name, size_t index,
                           const void *host) {
  Buffer &buf = states_[stateSlot(name, index)][index];
  if (!host && buf.size())
    throw Error("optim: CUDA: writeState('" + name + "', " +
                std::to_string(index) + "): null host pointer");
  // The stream may still be running a step that reads or writes it.
  synchronize();
  buf.upload(host, buf.size());
}
