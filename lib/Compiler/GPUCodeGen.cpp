//===- GPUCodeGen.cpp - optim rules to PTX and cubins ---------------------===//

#include "optim/Compiler/GPUCodeGen.h"
#include "optim/Conversion/Passes.h"
#include "optim/Transforms/Passes.h"
#include "optim/KernelABI.h"
#include "optim/QPBlock.h"

#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVM.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/NVVMToLLVM/NVVMToLLVM.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVM.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Transforms/Passes.h"
#include "llvm-c/Target.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <mutex>
#include <optional>

// kQPBlockBitcode: lib/Device/QPBlockNVPTX.cpp compiled by clang for NVPTX;
// kMatrixBitcode: lib/Device/MatrixNVPTX.cpp.
#include "MatrixBitcode.inc"
#include "QPBlockBitcode.inc"

using namespace mlir;

namespace optim {

/// N of the names --gpu-arch takes, "sm_N" or "sm_Na"; nothing otherwise.
static std::optional<unsigned> archNumber(llvm::StringRef arch) {
  unsigned number = 0;
  if (!arch.consume_front("sm_") || arch.consumeInteger(10, number) ||
      !(arch.empty() || arch == "a"))
    return std::nullopt;
  return number;
}

int64_t layerSharedBytes(const GPUPipelineOptions &options) {
  if (options.layerSharedBytes > 0)
    return options.layerSharedBytes;
  std::optional<unsigned> number = archNumber(options.arch);
  return ::optim::qpblock::sharedCapBytesFor(number ? int(*number) : 0);
}

std::string checkGPUArch(const std::string &arch) {
  std::optional<unsigned> number = archNumber(arch);
  if (!number)
    return "'" + arch + "' is not a CUDA architecture (sm_80, sm_90, ...)";
  if (*number < 75)
    return "'" + arch +
           "' is older than sm_75, which CUDA 13's ptxas no longer targets";
  // Else LLVM would warn that it ignores the processor and emit PTX for
  // its default one, which ptxas then refuses.
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTargetMC();
  });
  llvm::Triple triple("nvptx64-nvidia-cuda");
  std::string error;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return "LLVM has no NVPTX backend: " + error;
  std::unique_ptr<llvm::MCSubtargetInfo> info(
      target->createMCSubtargetInfo(triple, "", ""));
  if (info && !info->isCPUStringValid(arch)) {
    std::vector<std::pair<unsigned, std::string>> names;
    for (const llvm::SubtargetSubTypeKV &kv :
         info->getAllProcessorDescriptions())
      if (std::optional<unsigned> n = archNumber(kv.Key); n && *n >= 75)
        names.push_back({*n, kv.Key});
    llvm::sort(names);
    std::string known;
    for (auto &[n, name] : names)
      known += (known.empty() ? "" : ", ") + name;
    return "'" + arch + "' is not a CUDA architecture that LLVM's NVPTX " +
           "backend knows (" + known + ")";
  }
  return "";
}

std::string gpuPTXFeatures(const std::string &arch) {
  std::optional<unsigned> number = archNumber(arch);
  return number && *number >= 100 ? "" : "+ptx80";
}

void registerGPUCodeGen(MLIRContext &context) {
  DialectRegistry registry;
  registry.insert<gpu::GPUDialect, NVVM::NVVMDialect, cf::ControlFlowDialect,
                  ub::UBDialect, memref::MemRefDialect>();
  arith::registerConvertArithToLLVMInterface(registry);
  cf::registerConvertControlFlowToLLVMInterface(registry);
  registerConvertFuncToLLVMInterface(registry);
  registerConvertMemRefToLLVMInterface(registry);
  vector::registerConvertVectorToLLVMInterface(registry);
  ub::registerConvertUBToLLVMInterface(registry);
  registerConvertNVVMToLLVMInterface(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  context.appendDialectRegistry(registry);
  context.loadAllAvailableDialects();
}

void buildLowerRulesToGPUPipeline(OpPassManager &pm,
                                  const GPUPipelineOptions &options) {
  pm.addPass(mlir::optim::createFoldConstantHyperparameters());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  mlir::optim::LowerRulesToGPUOptions lower;
  lower.vectorBits = options.vectorBits;
  lower.relaxedFP = options.relaxedFP;
  pm.addPass(mlir::optim::createLowerRulesToGPU(lower));
  mlir::optim::LowerLayersToGPUOptions layers;
  layers.threads = options.layerThreads;
  layers.sharedBytes = layerSharedBytes(options);
  pm.addPass(mlir::optim::createLowerLayersToGPU(layers));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createLoopInvariantCodeMotionPass());
  // What is left outside the gpu.module would be dropped from the binary.
  pm.addPass(mlir::optim::createCheckLowered());
}

void buildGPUKernelsToNVVMPipeline(OpPassManager &pm,
                                   const GPUPipelineOptions &options,
                                   const std::vector<std::string> &linkLibs) {
  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  kernels.addPass(createSCFToControlFlowPass());
  // Transcendentals (exp, log, pow, tanh) become libdevice calls, which the
  // NVVM target links from the toolkit.
  kernels.addPass(createConvertGpuOpsToNVVMOps());
  pm.addPass(createReconcileUnrealizedCastsPass());
  GpuNVVMAttachTargetOptions target;
  target.chip = options.arch;
  target.features = gpuPTXFeatures(options.arch);
  target.optLevel = 3;
  target.linkLibs.assign(linkLibs.begin(), linkLibs.end());
  pm.addPass(createGpuNVVMAttachTarget(target));
}

std::string describeGPUTarget(const std::string &arch) {
  return "nvptx64-nvidia-cuda " + arch;
}

/// The toolkit folders to look in, in order.
static std::vector<std::string> toolkitCandidates() {
  std::vector<std::string> dirs;
  for (const char *var : {"CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"})
    if (std::optional<std::string> v = llvm::sys::Process::GetEnv(var))
      if (!v->empty())
        dirs.push_back(*v);
  dirs.push_back("/usr/local/cuda");
  return dirs;
}

/// Whether the lowered module declares a function whose name starts with
/// `prefix` (the block QP solver's, the matrix kernels' device functions).
static bool declares(ModuleOp module, llvm::StringRef prefix) {
  bool found = false;
  module.walk([&](LLVM::LLVMFuncOp f) {
    if (f.getName().starts_with(prefix))
      found = true;
  });
  return found;
}

/// Writes `size` bytes of embedded bitcode to a new temporary file, whose
/// path goes to `path`.
static llvm::Error writeBitcode(const unsigned char *data, size_t size,
                                llvm::StringRef name,
                                llvm::SmallVectorImpl<char> &path) {
  int fd;
  if (std::error_code ec =
          llvm::sys::fs::createTemporaryFile(name, "bc", fd, path))
    return llvm::createStringError("cannot create a temporary file: " +
                                   ec.message());
  llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
  os.write(reinterpret_cast<const char *>(data), size);
  os.close();
  if (os.has_error())
    return llvm::createStringError("cannot write '" +
                                   llvm::Twine(llvm::StringRef(
                                       path.data(), path.size())) +
                                   "': " + os.error().message());
  return llvm::Error::success();
}

llvm::Expected<std::string> compileToPTX(ModuleOp module,
                                         const GPUPipelineOptions &options) {
  if (std::string why = checkGPUArch(options.arch); !why.empty())
    return llvm::createStringError(why);
  registerGPUCodeGen(*module.getContext());
  PassManager lower(module.getContext());
  buildLowerRulesToGPUPipeline(lower, options);
  if (failed(lower.run(module)))
    return llvm::createStringError(
        "the GPU code generator failed (see the diagnostics above)");

  // A layer's kernel calls the block QP solver, the matrix kernels of a
  // rule with newton_schulz their block functions: their bitcode (embedded
  // in the compiler) is linked like libdevice, from temporary files.
  std::vector<std::string> linkLibs;
  llvm::SmallString<128> qpBitcode, matrixBitcode;
  llvm::scope_exit cleanup([&] {
    if (!qpBitcode.empty())
      llvm::sys::fs::remove(qpBitcode);
    if (!matrixBitcode.empty())
      llvm::sys::fs::remove(matrixBitcode);
  });
  if (declares(module, "optim_qp_block_")) {
    if (llvm::Error e = writeBitcode(kQPBlockBitcode, kQPBlockBitcode_size,
                                     "optim-qpblock", qpBitcode))
      return std::move(e);
    linkLibs.push_back(qpBitcode.str().str());
  }
  if (declares(module, OPTIM_MATRIX_SYMBOL_PREFIX)) {
    if (llvm::Error e = writeBitcode(kMatrixBitcode, kMatrixBitcode_size,
                                     "optim-matrix", matrixBitcode))
      return std::move(e);
    linkLibs.push_back(matrixBitcode.str().str());
  }
  PassManager pm(module.getContext());
  buildGPUKernelsToNVVMPipeline(pm, options, linkLibs);
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  for (const std::string &dir : toolkitCandidates())
    if (llvm::sys::fs::exists(dir + "/nvvm/libdevice/libdevice.10.bc")) {
      binary.toolkitPath = dir;
      break;
    }
  pm.addPass(createGpuModuleToBinaryPass(binary));
  if (failed(pm.run(module)))
    return llvm::createStringError(
        "the GPU code generator failed (see the diagnostics above)");
  std::string ptx;
  for (auto bin : module.getOps<gpu::BinaryOp>())
    for (Attribute attr : bin.getObjects())
      ptx += cast<gpu::ObjectAttr>(attr).getObject().getValue().str();
  if (ptx.empty())
    return llvm::createStringError(
        "the module has no rule or layer to compile");
  return ptx;
}

llvm::Expected<std::string> findPtxas() {
  // An explicit choice is taken or refused, never second-guessed.
  if (std::optional<std::string> v = llvm::sys::Process::GetEnv("OPTIM_PTXAS"))
    if (!v->empty()) {
      if (llvm::sys::fs::can_execute(*v))
        return *v;
      return llvm::createStringError("ptxas not found: OPTIM_PTXAS names '" +
                                     *v + "', which is not an executable");
    }
  std::string tried;
  for (const std::string &dir : toolkitCandidates()) {
    std::string path = dir + "/bin/ptxas";
    if (llvm::sys::fs::can_execute(path))
      return path;
    tried += (tried.empty() ? "" : ", ") + path;
  }
  if (llvm::ErrorOr<std::string> p = llvm::sys::findProgramByName("ptxas"))
    return *p;
  return llvm::createStringError(
      "ptxas (CUDA toolkit) not found: tried " + tried +
      " and PATH; install the CUDA toolkit or set CUDA_PATH");
}

static std::string readAll(llvm::StringRef path) {
  auto buf = llvm::MemoryBuffer::getFile(path, /*IsText=*/false);
  return buf ? (*buf)->getBuffer().str() : std::string();
}

llvm::Expected<std::string> assemblePTX(const std::string &ptx,
                                        const std::string &arch,
                                        std::string *info) {
  if (std::string why = checkGPUArch(arch); !why.empty())
    return llvm::createStringError(why);
  llvm::Expected<std::string> ptxas = findPtxas();
  if (!ptxas)
    return ptxas.takeError();
  llvm::SmallString<128> in, out, log;
  int fd;
  if (std::error_code ec =
          llvm::sys::fs::createTemporaryFile("optim", "ptx", fd, in))
    return llvm::createStringError("cannot create a temporary file: " +
                                   ec.message());
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << ptx;
  }
  llvm::sys::fs::createTemporaryFile("optim", "cubin", out);
  llvm::sys::fs::createTemporaryFile("optim", "log", log);
  llvm::scope_exit cleanup([&] {
    llvm::sys::fs::remove(in);
    llvm::sys::fs::remove(out);
    llvm::sys::fs::remove(log);
  });
  std::string archFlag = "-arch=" + arch;
  llvm::SmallVector<llvm::StringRef> args = {*ptxas, archFlag, "-O3"};
  if (info)
    args.push_back("-v");
  args.append({in.str(), "-o", out.str()});
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, log.str(),
                                                log.str()};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*ptxas, args, std::nullopt, redirects, 0,
                                     0, &message);
  std::string report = readAll(log);
  if (rc != 0)
    return llvm::createStringError("ptxas (" + *ptxas + ") failed for " + arch +
                                   (message.empty() ? "" : ": " + message) +
                                   (report.empty() ? "" : ":\n" + report));
  if (info)
    *info = report;
  std::string cubin = readAll(out);
  if (cubin.empty())
    return llvm::createStringError("ptxas wrote no cubin");
  return cubin;
}

} // namespace optim
