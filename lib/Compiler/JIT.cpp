//===- JIT.cpp - steps shared by the rule and layer JIT compilers ---------===//

#include "JIT.h"
#include "optim/Frontend/Frontend.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Location.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <cstdlib>

using namespace optim;

namespace {
/// `source` in a SourceMgr of its own and a DiagnosticEngine printing into
/// `text`: what the front end's entry points take.
struct FrontendInput {
  FrontendInput(std::string_view source, const std::string &bufferName,
                DType precision)
      : stream(text), diags(sourceMgr, stream) {
    sourceMgr.AddNewSourceBuffer(
        llvm::MemoryBuffer::getMemBufferCopy(
            llvm::StringRef(source.data(), source.size()), bufferName),
        llvm::SMLoc());
    options.precision =
        precision == DType::F64 ? Precision::F64 : Precision::F32;
  }
  llvm::SourceMgr sourceMgr;
  std::string text;
  llvm::raw_string_ostream stream;
  DiagnosticEngine diags;
  FrontendOptions options;
};
} // namespace

mlir::OwningOpRef<mlir::ModuleOp>
optim::parseProgram(mlir::MLIRContext &context, std::string_view source,
                    const std::string &bufferName, DType precision,
                    std::string *warnings) {
  FrontendInput in(source, bufferName, precision);
  context.printOpOnDiagnostic(false);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileToMLIR(context, in.diags, in.options);
  if (!module)
    throw Error(in.text.empty() ? "optim::Compiler: compilation failed"
                                : in.text);
  if (warnings)
    *warnings = in.text;
  return module;
}

std::string optim::frontendWarnings(std::string_view source,
                                    const std::string &bufferName,
                                    DType precision) {
  FrontendInput in(source, bufferName, precision);
  // The cached kernel compiled: only warnings can come out.
  if (!parseAndCheck(in.diags, in.options))
    return "";
  return in.text;
}

PassErrors::PassErrors(mlir::MLIRContext &context, std::string_view source,
                       const std::string &bufferName)
    : handler(&context, [this, bufferName](mlir::Diagnostic &d) {
        if (d.getSeverity() != mlir::DiagnosticSeverity::Error)
          return mlir::success();
        bool first = text.empty();
        llvm::raw_string_ostream os(text);
        auto flc = mlir::dyn_cast<mlir::FileLineColLoc>(d.getLocation());
        llvm::SMLoc at;
        if (flc && flc.getFilename() == bufferName)
          at = sourceMgr.FindLocForLineAndColumn(1, flc.getLine(),
                                                 flc.getColumn());
        if (at.isValid()) {
          sourceMgr.PrintMessage(os, at, llvm::SourceMgr::DK_Error, d.str());
        } else if (flc) {
          os << flc.getFilename() << ":" << flc.getLine() << ":"
             << flc.getColumn() << ": error: " << d.str() << "\n";
        } else {
          os << d.getLocation() << ": error: " << d.str() << "\n";
        }
        if (first)
          firstLocated = at.isValid();
        return mlir::success();
      }) {
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(source.data(), source.size()), bufferName),
      llvm::SMLoc());
}

void PassErrors::run(mlir::PassManager &pm, mlir::ModuleOp module,
                     const std::string &what) {
  if (mlir::succeeded(pm.run(module)))
    return;
  fail(what);
}

void PassErrors::fail(const std::string &what) {
  if (text.empty())
    throw Error(what + ": lowering failed\n");
  throw Error(firstLocated ? text : what + ": " + text);
}

std::unique_ptr<mlir::ExecutionEngine>
optim::createJIT(mlir::ModuleOp module, std::unique_ptr<llvm::TargetMachine> tm,
                 bool enableObjectDump, const std::string &what) {
  mlir::MLIRContext &context = *module->getContext();
  mlir::registerBuiltinDialectTranslation(context);
  mlir::registerLLVMDialectTranslation(context);
  // ExecutionEngineOptions holds the transformer by reference.
  std::function<llvm::Error(llvm::Module *)> transformer =
      mlir::makeOptimizingTransformer(/*optLevel=*/3, /*sizeLevel=*/0,
                                      tm.get());
  mlir::ExecutionEngineOptions engineOptions;
  engineOptions.transformer = transformer;
  engineOptions.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  engineOptions.enableObjectDump = enableObjectDump;
  // MLIR's default writes a perf jitdump per compile (a folder under
  // ~/.debug/jit or /tmp/.debug/jit each time: 2,400 folders, 90 MB, on a
  // development machine). Profiling with perf asks for it.
  engineOptions.enablePerfNotificationListener =
      std::getenv("OPTIM_PERF_JITDUMP") != nullptr;
  auto engine =
      mlir::ExecutionEngine::create(module, engineOptions, std::move(tm));
  if (!engine)
    throw Error("optim::Compiler: JIT compilation of " + what +
                " failed: " + llvm::toString(engine.takeError()));
  return std::move(*engine);
}

void *optim::lookupSymbol(mlir::ExecutionEngine &engine,
                          const std::string &symbol) {
  auto address = engine.lookup(symbol);
  if (!address)
    throw Error("optim::Compiler: the JIT has no symbol '" + symbol +
                "': " + llvm::toString(address.takeError()));
  return *address;
}
