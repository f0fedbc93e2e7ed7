//===- Cuda.h - run compiled rules on NVIDIA GPUs (driver API) --*- C++ -*-===//
//
// Part of the runtime: no LLVM, MLIR or CUDA header may be included here. The
// CUDA driver is loaded at run time with dlopen("libcuda.so.1"), so that the
// runtime builds, links and passes its tests on machines without CUDA.
//
//   auto driver = optim::cuda::loadDriver();        // throws if no driver
//   optim::cuda::Device gpu(driver, 0);
//   optim::cuda::Rule adam = gpu.loadRule("adam.cubin"); // + manifest
//   optim::cuda::Optimizer opt(adam, {{pW, nW}, {pB, nB}}); // device ptrs
//   opt.set("lr", 3e-3);
//   opt.step({{gW, nW}, {gB, nB}});                 // one launch, async
//   gpu.synchronize(opt.stream());
//
// Every failing driver call throws optim::Error naming the call and the
// driver's error name, e.g. "optim: CUDA: cuLaunchKernel failed:
// CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)".
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_CUDA_H
#define OPTIM_RUNTIME_CUDA_H

#include "optim/Rule.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace optim::cuda {

// The few driver API types used, declared with the driver's ABI (cuda.h).
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
constexpr CUresult CUDA_SUCCESS = 0;
/// What cuModuleLoadData answers for an image the driver cannot use:
/// CUDA_ERROR_INVALID_IMAGE, _NO_BINARY_FOR_GPU, _INVALID_PTX,
/// _UNSUPPORTED_PTX_VERSION.
constexpr CUresult kErrorInvalidImage = 200;
constexpr CUresult kErrorNoBinaryForGPU = 209;
constexpr CUresult kErrorInvalidPTX = 218;
constexpr CUresult kErrorUnsupportedPTXVersion = 222;
/// CUDA_ERROR_NOT_FOUND: what cuModuleGetFunction and cuModuleGetGlobal
/// answer for a name that the module does not define.
constexpr CUresult kErrorNotFound = 500;
/// CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
constexpr int kAttrComputeCapabilityMajor = 75;
constexpr int kAttrComputeCapabilityMinor = 76;
/// CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN.
constexpr int kAttrMaxSharedPerBlockOptin = 97;
/// CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT.
constexpr int kAttrMultiprocessorCount = 16;
/// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
constexpr int kFuncAttrMaxDynamicSharedBytes = 8;
/// CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: the largest block a launch of
/// the function can have on this device (its registers decide).
constexpr int kFuncAttrMaxThreadsPerBlock = 0;

/// The driver entry points the runtime calls, by pointer: loadDriver fills
/// them from libcuda.so.1, tests inject fakes.
struct DriverAPI {
  CUresult (*cuInit)(unsigned flags) = nullptr;
  CUresult (*cuDeviceGetCount)(int *count) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice *device, int ordinal) = nullptr;
  CUresult (*cuDeviceGetName)(char *name, int len, CUdevice dev) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int *value, int attribute,
                                   CUdevice dev) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice dev) = nullptr;
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice dev) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext ctx) = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule *module, const void *image) = nullptr;
  CUresult (*cuModuleUnload)(CUmodule module) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction *fn, CUmodule module,
                                  const char *name) = nullptr;
  CUresult (*cuModuleGetGlobal)(CUdeviceptr *ptr, size_t *bytes,
                                CUmodule module, const char *name) = nullptr;
  CUresult (*cuFuncSetAttribute)(CUfunction fn, int attribute,
                                 int value) = nullptr;
  CUresult (*cuFuncGetAttribute)(int *value, int attribute,
                                 CUfunction fn) = nullptr;
  CUresult (*cuMemAlloc)(CUdeviceptr *ptr, size_t bytes) = nullptr;
  CUresult (*cuMemFree)(CUdeviceptr ptr) = nullptr;
  CUresult (*cuMemcpyHtoD)(CUdeviceptr dst, const void *src,
                           size_t bytes) = nullptr;
  CUresult (*cuMemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes) = nullptr;
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes,
                                CUstream stream) = nullptr;
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                                CUstream stream) = nullptr;
  CUresult (*cuStreamCreate)(CUstream *stream, unsigned flags) = nullptr;
  CUresult (*cuStreamDestroy)(CUstream stream) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream stream) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction f, unsigned gridX, unsigned gridY,
                             unsigned gridZ, unsigned blockX, unsigned blockY,
                             unsigned blockZ, unsigned sharedBytes,
                             CUstream stream, void **params,
                             void **extra) = nullptr;
  /// Optional: null when the driver lacks it (then learned rules keep the
  /// plain default chunk size, OptimizerOptions::chunkSize).
  CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(
      int *blocks, CUfunction fn, int blockSize,
      size_t dynamicSharedBytes) = nullptr;
  CUresult (*cuGetErrorName)(CUresult error, const char **name) = nullptr;
  CUresult (*cuGetErrorString)(CUresult error, const char **text) = nullptr;

  /// Throws optim::Error "optim: CUDA: <call> failed: <NAME> (<text>)"
  /// unless `result` is CUDA_SUCCESS.
  void check(CUresult result, const char *call) const;
};

/// Loads libcuda.so.1 (or `library`) and resolves every entry point; throws
/// optim::Error saying why when there is no usable driver.
std::shared_ptr<const DriverAPI> loadDriver(const char *library = nullptr);
/// Like loadDriver, but returns null and sets `why` instead of throwing:
/// what tests use to skip with a reason.
std::shared_ptr<const DriverAPI> tryLoadDriver(std::string *why);

class Device;

/// What a loaded module's code came from: the cubin ptxas made, or the PTX
/// it was assembled from, compiled by the driver's JIT when the driver
/// cannot use that cubin (a driver older than the toolkit that made it, a
/// device of a newer architecture), as a fatbin's PTX would be.
enum class CodeSource { Cubin, PTX };
const char *toString(CodeSource source);

/// A cubin loaded on a device and its manifest: one rule's kernel.
class Rule {
public:
  const RuleInfo &info() const { return *info_; }
  CUfunction function() const { return function_; }
  /// A rule with tensor reductions (info().reductions non-empty): its first
  /// pass, optim_reduce_<name> (KernelABI.h, version 6); null otherwise.
  CUfunction reduceFunction() const { return reduceFunction_; }
  /// A rule with newton_schulz: the module's matrix kernels
  /// optim_matrix_{gemm,combine,sumsq,scale}_<t> (KernelABI.h, "Matrix
  /// functions on CUDA"); null otherwise.
  struct MatrixKernels {
    CUfunction gemm = nullptr, combine = nullptr, sumSquares = nullptr,
               scale = nullptr;
  };
  const MatrixKernels &matrixKernels() const { return matrixKernels_; }
  /// "nvptx64-nvidia-cuda sm_90": what the cubin was compiled for.
  const std::string &target() const { return target_; }
  const std::shared_ptr<Device> &device() const { return device_; }
  CodeSource source() const { return source_; }

private:
  friend class Device;
  std::shared_ptr<const RuleInfo> info_;
  std::string target_;
  std::shared_ptr<Device> device_;
  std::shared_ptr<CUmod_st> module_;
  CUfunction function_ = nullptr;
  CUfunction reduceFunction_ = nullptr;
  MatrixKernels matrixKernels_;
  CodeSource source_ = CodeSource::Cubin;
};

/// One GPU: its primary context, made current by every call of the runtime
/// that needs it.
class Device : public std::enable_shared_from_this<Device> {
public:
  static std::shared_ptr<Device> open(std::shared_ptr<const DriverAPI> driver,
                                      int ordinal = 0);
  ~Device();
  Device(const Device &) = delete;
  Device &operator=(const Device &) = delete;

  const DriverAPI &driver() const { return *driver_; }
  const std::string &name() const { return name_; }
  /// "sm_90" for compute capability 9.0.
  const std::string &arch() const { return arch_; }
  void makeCurrent() const;
  /// For destructors: never throws; false when the driver refused.
  bool tryMakeCurrent() const noexcept;

  /// Loads a cubin compiled by `optimc --emit=cubin` and its manifest
  /// (default: the cubin's path with ".manifest.json" for its extension),
  /// and the PTX optimc writes next to the cubin (".ptx") when it is there.
  /// Refuses a kernel compiled for another architecture than the device's,
  /// unless its PTX can be compiled for the device (an older one), and a
  /// cubin or PTX whose SHA-256 is not the one the manifest records (or a
  /// manifest that records none: Manifest::artifactSha256).
  Rule loadRule(const std::string &cubinPath,
                const std::string &manifestPath = "");
  /// The same from bytes already in memory; `origin` names them in errors;
  /// `ptx` may be empty. The hashes are checked where the manifest records
  /// them.
  Rule loadRule(const std::string &cubin, const std::string &manifestJSON,
                const std::string &origin, const std::string &ptx = "");

  /// How a kernel compiled for a manifest's target ("nvptx64-nvidia-cuda
  /// sm_80") can run on this device: its cubin (same major architecture,
  /// same or older minor one), or only its `ptx` (may be empty), when the
  /// target is older than the device; throws otherwise, and when the PTX
  /// is not for that target or lacks the kernel `symbol` (a PTX beside a
  /// cubin may be left over from another build).
  CodeSource requireCompatible(const std::string &target,
                               const std::string &symbol,
                               const std::string &origin,
                               const std::string &ptx = "") const;
  /// Loads a module (cuModuleLoadData) from the cubin, or from the PTX
  /// when the cubin is empty or the driver refuses the image (invalid, too
  /// new, none for this GPU; other errors are reported as they are);
  /// `source` (if not null) tells which. Errors name both attempts. The
  /// module is unloaded with the last copy of the pointer.
  std::shared_ptr<CUmod_st> loadModule(const std::string &cubin,
                                       const std::string &origin,
                                       const std::string &ptx = "",
                                       CodeSource *source = nullptr);
  /// An attribute of the device (cuDeviceGetAttribute).
  int attribute(int attribute) const;

private:
  Device() = default;
  std::shared_ptr<const DriverAPI> driver_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  std::string name_, arch_;
};

/// Device memory owned by the runtime (state, the chunk table).
class Buffer {
public:
  Buffer() = default;
  Buffer(std::shared_ptr<Device> device, size_t bytes);
  ~Buffer();
  Buffer(Buffer &&other) noexcept { swap(other); }
  Buffer &operator=(Buffer &&other) noexcept {
    swap(other);
    return *this;
  }
  CUdeviceptr get() const { return ptr_; }
  size_t size() const { return bytes_; }
  void upload(const void *host, size_t bytes, size_t offset = 0);
  void download(void *host, size_t bytes, size_t offset = 0) const;

private:
  void swap(Buffer &o) noexcept {
    std::swap(device_, o.device_);
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
  }
  std::shared_ptr<Device> device_;
  CUdeviceptr ptr_ = 0;
  size_t bytes_ = 0;
};

/// A tensor in device memory (not owned) of `size` elements of the rule's
/// dtype.
struct DeviceTensor {
  CUdeviceptr data = 0;
  int64_t size = 0;
  /// A parameter's dimensions, row-major; empty when not given. The shape
  /// values rows() and cols() (KernelABI.h, version 11) and the row and
  /// column states and reductions (version 10) read it: the [B, R, C] view,
  /// C the last dimension, R the one before (1 for 1-D), B the product of
  /// the others; [1, 1, size] without a shape. Given for a parameter, it
  /// must have `size` elements and no negative dimension; gradients and
  /// inputs ignore it.
  std::vector<int64_t> shape = {};
};

/// The tensors of one per-coordinate input of a rule (`input h`,
/// RuleInfo::inputs) for a step: one per parameter tensor, in device memory,
/// of its size, as the gradients.
struct DeviceInput {
  std::string name;
  std::vector<DeviceTensor> tensors;
};

struct OptimizerOptions {
  /// Coordinates per chunk (one thread block each), a multiple of 4 (every
  /// chunk of an aligned tensor stays 16-byte aligned); 0: automatic, 16384
  /// for update rules (many blocks, ~7,600 for a 124M-coordinate model,
  /// keep the last wave short), and for learned rules whole rounds of at
  /// most 16 coordinates per thread of a block (thousands of FMAs per
  /// coordinate), as many as fill the waves of blocks the device runs at
  /// once best (balancedChunkSize): with equal blocks a last wave one third
  /// full costs a whole wave's time.
  int64_t chunkSize = 0;
  /// Threads per block, a multiple of 32 up to 1024; 0: automatic, 256 for
  /// update rules, and for learned rules the largest block their registers
  /// allow (CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, rounded down to whole
  /// warps): the one block of an SM then holds as many warps as its
  /// register file can. On an H200 (docs/benchmarks.md) these were within
  /// 3% of the best launch shape bench/gpu/run.sh swept, for Adam on 124M
  /// coordinates and for l2l on 10M.
  unsigned blockSize = 0;
  /// The stream to launch on; null: the optimizer creates its own.
  CUstream stream = nullptr;
  /// The key of the rule's random numbers (KernelABI.h, version 8), as
  /// optim::OptimizerOptions::seed: the draws depend on the seed, the
  /// coordinate's global index, the step and the draw site only, so they do
  /// not change with chunkSize or blockSize (and are those of the CPU up to
  /// the rounding of log, sqrt and cos).
  uint64_t seed = 0;
};

/// The chunk size, `rounds` (at most maxRounds) coordinates for each of a
/// block's `block` threads, that takes the fewest rounds to cover tensors of
/// these sizes (a chunk per block, each tensor's last chunk partial) with
/// `concurrent` blocks running at once: waves * (rounds + 1/10, the
/// block's copy of the weights), a partial last wave costing a whole one;
/// ties go to the larger chunk. l2l on 10M
/// coordinates with blocks of 384 on 132 SMs: 11 a thread, 198 rounds an SM
/// (the least possible: 10M / (384 * 132) = 197.3), against 208 at 16.
int64_t balancedChunkSize(const std::vector<int64_t> &sizes, int64_t block,
                          int64_t maxRounds, int64_t concurrent);

/// Applies a rule to a model's parameters in device memory: one kernel
/// launch per step over the whole chunk table (in device memory, rebuilt
/// only when the gradients move). Owns the state, in device memory.
class Optimizer {
public:
  Optimizer(Rule rule, std::vector<DeviceTensor> params,
            OptimizerOptions options = {});
  ~Optimizer();
  Optimizer(const Optimizer &) = delete;
  Optimizer &operator=(const Optimizer &) = delete;

  void set(const std::string &hyper, double value);
  double get(const std::string &hyper) const;
  /// Learned rules: copies weights tensor `name` (`count` elements of the
  /// rule's element type, row-major, from the host) to device memory that
  /// the optimizer owns. Every weights tensor must be set before step().
  void setWeights(const std::string &name, const void *host, size_t count);
  /// Enqueues one step on the stream (asynchronous): t advances by one.
  /// A rule with tensor reductions launches its first pass, waits for the
  /// stream, combines the chunks' partials on the host in chunk order (as
  /// the CPU executor does) and uploads the results before it enqueues the
  /// rule kernel: its step returns once the first pass is done. Nested
  /// reductions (version 9) do so once per stage, 0 .. L, combining that
  /// level's values before the next stage's launch.
  /// A rule with per-coordinate inputs refuses this form (it names them).
  void step(const std::vector<DeviceTensor> &grads);
  /// The same with the rule's per-coordinate inputs (KernelABI.h, version
  /// 7: the chunk table has 2 + I + S pointers per chunk): every input of
  /// the rule named exactly once, one device tensor per parameter of its
  /// size; a rule without inputs takes an empty list. Throws, launching
  /// nothing, on an unknown, repeated or missing name, a wrong count, size,
  /// null or misaligned pointer. The table is rebuilt when a gradient or an
  /// input moves.
  void step(const std::vector<DeviceTensor> &grads,
            const std::vector<DeviceInput> &inputs);
  int64_t stepCount() const { return step_; }
  /// The options in use: automatic chunk and block sizes resolved.
  const OptimizerOptions &options() const { return options_; }
  CUstream stream() const { return stream_; }
  void synchronize() const;
  int64_t numChunks() const { return numChunks_; }
  /// Copies state `name` of parameter tensor `index` to the host
  /// (synchronizes first): N * size elements for a vector state h[N],
  /// component-major (component j of coordinate i at j * size + i); B * R
  /// for a row state, B * C for a column state (the [B, R, C] view of
  /// DeviceTensor::shape).
  void readState(const std::string &name, size_t index, void *host) const;
  /// Overwrites it from the host, in the same layout and element type
  /// (restoring a checkpoint; synchronizes first). Throws, changing
  /// nothing, on an unknown name or index or a null pointer.
  void writeState(const std::string &name, size_t index, const void *host);

private:
  /// The index of state `name` (states_[s][index] is its buffer for
  /// parameter tensor `index`); throws on an unknown name or index.
  size_t stateSlot(const std::string &name, size_t index) const;
  /// `inputs[k]`: the tensors of the rule's input k (declaration order).
  void buildTable(const std::vector<DeviceTensor> &grads,
                  const std::vector<const std::vector<DeviceTensor> *> &inputs);
  void runStep(const std::vector<DeviceTensor> &grads,
               const std::vector<const std::vector<DeviceTensor> *> &inputs);
  Rule rule_;
  std::vector<DeviceTensor> params_;
  OptimizerOptions options_;
  CUstream stream_ = nullptr;
  bool ownsStream_ = false;
  std::vector<double> hypers_;
  /// states_[s][tensor]
  std::vector<std::vector<Buffer>> states_;
  /// Learned rules: one buffer per weights tensor, and whether it was set.
  std::vector<Buffer> weights_;
  std::vector<bool> weightSet_;
  /// The chunk table in device memory: the pointers, lengths and strides
  /// of KernelABI.h, then the kernels' `rng` (1 + chunks uint64 values:
  /// the seed, then each chunk's first global coordinate; version 8).
  Buffer table_;
  /// The gradients and then the inputs (input-major) the table points to.
  std::vector<CUdeviceptr> tableGrads_;
  /// Rules with tensor reductions: the chunks' partials and reduced values
  /// in device memory and on the host (hostReduced_ is the source of an
  /// asynchronous upload: it lives until the next step waits for it), the
  /// tensor of each chunk and the size of each tensor.
  Buffer partials_, reduced_;
  std::vector<double> hostPartials_, hostReduced_;
  std::vector<size_t> chunkTensor_;
  std::vector<int64_t> tensorSizes_;
  // The shape values (KernelABI.h, version 11): R and C of each chunk's
  // tensor, written into hostReduced_ before stage 0; empty for a rule that
  // reads neither.
  std::vector<int64_t> chunkRows_, chunkCols_;
  int64_t numChunks_ = 0, step_ = 0;
  /// Rules with row or column states or reductions (KernelABI.h, version
  /// 10, "Axes"): each tensor's [B, R, C] view; the row and column states
  /// (indices) and their NEXT buffers (next_[a][tensor]); the row and
  /// column reductions (indices); where each tensor's results of each of
  /// them start in axisReduced_ (B * R or B * C doubles, [tensor][x]) and
  /// where each chunk's partials start in axisPartials_ (nr or nc doubles,
  /// [chunk * X + x]); the chunks' rectangles (nr, nc, r0, c0) and
  /// matrices.
  struct View {
    int64_t B = 1, R = 1, C = 0;
  };
  bool axes_ = false;
  std::vector<View> views_;
  std::vector<size_t> axisStates_, axisReductions_;
  std::vector<std::vector<Buffer>> next_;
  std::vector<std::vector<size_t>> axisReducedOffset_;
  std::vector<size_t> axisPartialOffset_;
  std::vector<int64_t> chunkRect_, chunkMatrix_;
  Buffer axisPartials_, axisReduced_;
  std::vector<double> hostAxisPartials_, hostAxisReduced_;
  /// Matrix functions (newton_schulz; KernelABI.h, "Matrix functions on
  /// CUDA"): for each x of axisReductions_ that is one, a buffer of one T
  /// per coordinate of each tensor (matrices_[x][tensor]; empty vectors
  /// for row and column reductions), NS's scratch (2 m n + 2 m m elements
  /// per matrix of the largest group of matrices launched together) and
  /// its sum-of-squares partials.
  std::vector<std::vector<Buffer>> matrices_;
  Buffer matrixWork_, matrixPartials_;
  /// How many of each non-empty tensor's matrices go in one launch; the
  /// elements of matrixWork_ past the largest group's own scratch, for the
  /// slices of split products; the device's multiprocessors.
  std::vector<int64_t> matrixGroups_;
  int64_t matrixSlices_ = 0, multiprocessors_ = 0;
  /// Enqueues NS(X) over every matrix of every tensor's buffer of each
  /// matrix function of level `level`.
  void runMatrixFunctions(unsigned level);
  /// Chunk c's table of rectangles for a rule with axes (buildTable).
  void planAxisChunks(std::vector<int64_t> &firstCoordinate);
  /// Combines the level-`level` row and column reductions' partials of
  /// every chunk into hostAxisReduced_ (rows and columns in chunk order).
  void combineAxisReductions(unsigned level);
};

} // namespace optim::cuda

#endif // OPTIM_RUNTIME_CUDA_H
