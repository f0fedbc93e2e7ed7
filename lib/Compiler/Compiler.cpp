//===- Compiler.cpp - JIT-compile .optim programs
//--------------------------===//

#include "optim/Compiler/Compiler.h"
#include "Cache.h"
#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Describe.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Dialect/OptimOps.h"
#include "optim/Frontend/Frontend.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <functional>
#include <unistd.h>

using namespace optim;

struct Compiler::Impl {
  CompileOptions options;
  bool lastWasCached = false;
};

Compiler::Compiler(CompileOptions options) : impl(std::make_unique<Impl>()) {
  if (options.vectorWidth == 0 || options.vectorWidth > 64)
    throw Error("optim::Compiler: vectorWidth must be between 1 and 64, got " +
                std::to_string(options.vectorWidth));
  impl->options = options;
  if (impl->options.useCache && impl->options.cacheDirectory.empty())
    impl->options.cacheDirectory = defaultCacheDirectory();
}

bool Compiler::lastWasCached() const { return impl->lastWasCached; }

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
      return cached;
    }
  }

  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(source.data(), source.size()), bufferName),
      llvm::SMLoc());
  std::string diagnostics;
  llvm::raw_string_ostream diagStream(diagnostics);
  DiagnosticEngine diags(sourceMgr, diagStream);

  mlir::MLIRContext context;
  context.printOpOnDiagnostic(false);
  FrontendOptions frontend;
  frontend.precision =
      impl->options.precision == DType::F64 ? Precision::F64 : Precision::F32;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileToMLIR(context, diags, frontend);
  if (!module)
    throw Error(diagnostics.empty() ? "optim::Compiler: compilation failed"
                                    : diagnostics);

  // Keep only the requested rule.
  mlir::optim::RuleOp selected;
  std::string available;
  unsigned numRules = 0;
  for (auto rule : module->getOps<mlir::optim::RuleOp>()) {
    available += (available.empty() ? "" : ", ") + rule.getSymName().str();
    ++numRules;
    if (ruleName.empty() ? !selected : rule.getSymName() == ruleName)
      selected = rule;
  }
  if (ruleName.empty() && numRules > 1)
    throw Error("optim::Compiler: '" + bufferName +
                "' defines several rules (" + available +
                "); name the one to compile");
  if (!selected)
    throw Error(
        "optim::Compiler: '" + bufferName + "' has no rule" +
        (ruleName.empty() ? std::string() : " named '" + ruleName + "'") +
        (available.empty() ? "" : " (it has: " + available + ")"));
  for (mlir::Operation &op :
       llvm::make_early_inc_range(module->getBody()->getOperations()))
    if (&op != selected.getOperation())
      op.erase();
  RuleInfo info = describeRule(selected);
  std::string symbol = OPTIM_RULE_SYMBOL_PREFIX + info.name;

  // Lowering; MLIR diagnostics become the error message.
  std::string passErrors;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    if (d.getSeverity() == mlir::DiagnosticSeverity::Error) {
      std::string loc;
      llvm::raw_string_ostream(loc) << d.getLocation();
      passErrors += loc + ": error: " + d.str() + "\n";
    }
    return mlir::success();
  });
  mlir::PassManager pm(&context);
  CPUPipelineOptions cpu;
  cpu.vectorWidth = impl->options.vectorWidth;
  cpu.relaxedFP = impl->options.relaxedFP;
  cpu.vjp = impl->options.vjp;
  buildLowerRulesPipeline(pm, cpu);
  buildKernelsToLLVMPipeline(pm);
  if (mlir::failed(pm.run(*module)))
    throw Error("optim::Compiler: cannot compile rule '" + info.name + "': " +
                (passErrors.empty() ? "lowering failed\n" : passErrors));

  mlir::registerBuiltinDialectTranslation(context);
  mlir::registerLLVMDialectTranslation(context);
  // ExecutionEngineOptions holds the transformer by reference.
  std::function<llvm::Error(llvm::Module *)> transformer =
      mlir::makeOptimizingTransformer(/*optLevel=*/3, /*sizeLevel=*/0,
                                      tm->get());
  mlir::ExecutionEngineOptions engineOptions;
  engineOptions.transformer = transformer;
  engineOptions.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  engineOptions.enableObjectDump = cache.enabled();
  auto engine =
      mlir::ExecutionEngine::create(*module, engineOptions, std::move(*tm));
  if (!engine)
    throw Error("optim::Compiler: JIT compilation of rule '" + info.name +
                "' failed: " + llvm::toString(engine.takeError()));
  auto address = (*engine)->lookup(symbol);
  if (!address)
    throw Error("optim::Compiler: the JIT has no symbol '" + symbol +
                "': " + llvm::toString(address.takeError()));
  auto kernel = reinterpret_cast<optim_rule_kernel>(*address);
  optim_vjp_kernel vjpKernel = nullptr;
  if (impl->options.vjp) {
    std::string vjpSymbol = OPTIM_VJP_SYMBOL_PREFIX + info.name;
    auto vjpAddress = (*engine)->lookup(vjpSymbol);
    if (!vjpAddress)
      throw Error("optim::Compiler: the JIT has no symbol '" + vjpSymbol +
                  "': " + llvm::toString(vjpAddress.takeError()));
    vjpKernel = reinterpret_cast<optim_vjp_kernel>(*vjpAddress);
  }

  if (cache.enabled() &&
      !llvm::sys::fs::create_directories(impl->options.cacheDirectory)) {
    // A cache that cannot be written only costs time: no error.
    std::string tmp =
        cache.objectPath(key) + ".tmp." + std::to_string(::getpid());
    (*engine)->dumpToObjectFile(tmp);
    Manifest manifest{info, symbol, targetName, OPTIM_KERNEL_ABI_VERSION};
    if (!cache.store(key, tmp, manifest))
      llvm::sys::fs::remove(tmp);
  }
  std::shared_ptr<mlir::ExecutionEngine> owner(std::move(*engine));
  return Rule(std::move(info), kernel, vjpKernel, std::move(owner));
}
