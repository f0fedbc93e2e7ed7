//===- Compiler.cpp - JIT-compile .optim programs -------------------------===//

#include "optim/Compiler/Compiler.h"
#include "Cache.h"
#include "CompilerImpl.h"
#include "JIT.h"
#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Describe.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Process.h"

#include <unistd.h>

using namespace optim;

Compiler::Compiler(CompileOptions options) : impl(std::make_unique<Impl>()) {
  if (options.vectorWidth == 0 || options.vectorWidth > 64)
    throw Error("optim::Compiler: vectorWidth must be between 1 and 64, got " +
                std::to_string(options.vectorWidth));
  if (options.learnedVectorWidth > 64)
    throw Error("optim::Compiler: learnedVectorWidth must be at most 64 (0: "
                "chosen for this host), got " +
                std::to_string(options.learnedVectorWidth));
  HostVectorRegisters host = hostVectorRegisters();
  if (options.learnedVectorWidth == 0)
    options.learnedVectorWidth = hostLearnedVectorWidth(host);
  if (options.vectorRegisterBytes == 0)
    options.vectorRegisterBytes = host.bytes;
  if (options.vectorRegisters == 0)
    options.vectorRegisters = host.count;
  if (options.prefetchDistance > (1u << 20))
    throw Error("optim::Compiler: prefetchDistance must be at most 1048576 "
                "bytes, got " +
                std::to_string(options.prefetchDistance));
  impl->options = options;
  if (impl->options.useCache && impl->options.cacheDirectory.empty())
    impl->options.cacheDirectory = defaultCacheDirectory();
}

bool Compiler::lastWasCached() const { return impl->lastWasCached; }

const std::string &Compiler::lastWarnings() const { return impl->lastWarnings; }

const CompileOptions &Compiler::options() const { return impl->options; }

Compiler::~Compiler() = default;

Rule Compiler::compileFile(const std::string &path, Target target,
                           const std::string &rule) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (std::error_code ec = buffer.getError())
    throw Error("optim::Compiler: cannot read '" + path + "': " + ec.message());
  return compileSource((*buffer)->getBuffer(), path, target, rule);
}

Rule Compiler::compileSource(std::string_view source,
                             const std::string &bufferName, Target target,
                             const std::string &ruleName) {
  if (target.kind != Target::Kind::CPU)
    throw Error("optim::Compiler: only the CPU target is implemented");
  impl->lastWasCached = false;
  impl->lastWarnings.clear();
  auto tm = createHostTargetMachine();
  if (!tm)
    throw Error("optim::Compiler: no code generator for this host: " +
                llvm::toString(tm.takeError()));
  std::string targetName = describeTarget(**tm);
  KernelCache cache(impl->options.useCache && !impl->options.vjp
                        ? impl->options.cacheDirectory
                        : std::string());
  std::string key;
  if (cache.enabled()) {
    key = cache.key(source, ruleName, impl->options, targetName);
    if (Rule cached = cache.load(key)) {
      impl->lastWasCached = true;
      impl->lastWarnings =
          frontendWarnings(source, bufferName, impl->options.precision);
      return cached;
    }
  }

  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      parseProgram(context, source, bufferName, impl->options.precision,
                   &impl->lastWarnings);
  auto selected =
      keepOnly<mlir::optim::RuleOp>(*module, ruleName, bufferName, "rule");
  RuleInfo info = describeRule(selected);
  std::string symbol = OPTIM_RULE_SYMBOL_PREFIX + info.name;

  PassErrors errors(context, source, bufferName);
  mlir::PassManager pm(&context);
  CPUPipelineOptions cpu;
  cpu.vectorWidth = impl->options.vectorWidth;
  cpu.learnedVectorWidth = impl->options.learnedVectorWidth;
  cpu.vectorRegisterBytes = impl->options.vectorRegisterBytes;
  cpu.vectorRegisters = impl->options.vectorRegisters;
  cpu.relaxedFP = impl->options.relaxedFP;
  cpu.prefetchDistance = impl->options.prefetchDistance;
  cpu.vjp = impl->options.vjp;
  buildLowerRulesPipeline(pm, cpu);
  buildKernelsToLLVMPipeline(pm);
  errors.run(pm, *module,
             "optim::Compiler: cannot compile rule '" + info.name + "'");

  std::unique_ptr<mlir::ExecutionEngine> engine = createJIT(
      *module, std::move(*tm), cache.enabled(), "rule '" + info.name + "'");
  void *kernel = lookupSymbol(*engine, symbol);
  // The reduction passes of a rule with tensor reductions (KernelABI.h,
  // versions 6 and 9: one call per level).
  optim_reduce_kernel reduceKernel = nullptr;
  if (!info.reductions.empty())
    reduceKernel = reinterpret_cast<optim_reduce_kernel>(
        lookupSymbol(*engine, OPTIM_REDUCE_SYMBOL_PREFIX + info.name));
  // The reverse mode: one kernel, or two around the runtime's combine for a
  // rule with reductions (KernelABI.h).
  optim_vjp_kernel vjpKernel = nullptr;
  optim_reduced_vjp_kernel reducedVJP = nullptr, reductionsVJP = nullptr;
  if (impl->options.vjp && reduceKernel) {
    reducedVJP = reinterpret_cast<optim_reduced_vjp_kernel>(
        lookupSymbol(*engine, OPTIM_REDUCED_VJP_SYMBOL_PREFIX + info.name));
    reductionsVJP = reinterpret_cast<optim_reduced_vjp_kernel>(lookupSymbol(
        *engine, OPTIM_REDUCTIONS_VJP_SYMBOL_PREFIX + info.name));
  } else if (impl->options.vjp) {
    vjpKernel = reinterpret_cast<optim_vjp_kernel>(
        lookupSymbol(*engine, OPTIM_VJP_SYMBOL_PREFIX + info.name));
  }

  if (cache.enabled() &&
      !llvm::sys::fs::create_directories(impl->options.cacheDirectory)) {
    // A cache that cannot be written only costs time: no error. The
    // temporary name is unique (two threads compiling one rule must not
    // write into one file).
    llvm::SmallString<256> tmp;
    int tmpFd = -1;
    if (!llvm::sys::fs::createUniqueFile(cache.objectPath(key) + ".tmp.%%%%%%",
                                         tmpFd, tmp)) {
      llvm::sys::Process::SafelyCloseFileDescriptor(tmpFd);
      engine->dumpToObjectFile(std::string(tmp));
      Manifest manifest{info, symbol, targetName, OPTIM_KERNEL_ABI_VERSION};
      if (!cache.store(key, std::string(tmp), manifest))
        llvm::sys::fs::remove(tmp);
    }
  }
  std::shared_ptr<mlir::ExecutionEngine> owner(std::move(engine));
  if (reduceKernel && reducedVJP)
    return Rule(std::move(info), reduceKernel,
                reinterpret_cast<optim_reduced_rule_kernel>(kernel),
                reducedVJP, reductionsVJP, std::move(owner));
  if (reduceKernel)
    return Rule(std::move(info), reduceKernel,
                reinterpret_cast<optim_reduced_rule_kernel>(kernel),
                std::move(owner));
  return Rule(std::move(info), reinterpret_cast<optim_rule_kernel>(kernel),
              vjpKernel, std::move(owner));
}
