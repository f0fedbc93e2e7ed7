//===- optimc.cpp - the optim compiler driver ------------------------------===//
//
//   optimc FILE.optim --emit=ast|mlir [-o OUT] [--precision=f32|f64]
//
// Exit status: 0 on success, 1 after diagnostics (a malformed program, an
// unreadable file), never a crash.
//
//===----------------------------------------------------------------------===//

#include "optim/Frontend/Frontend.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

namespace cl = llvm::cl;

namespace {
enum class Emit { AST, MLIR };

cl::OptionCategory category("optimc options");
cl::opt<std::string> inputFilename(cl::Positional,
                                   cl::desc("<input .optim file, or - for "
                                            "standard input>"),
                                   cl::Required, cl::cat(category));
cl::opt<std::string> outputFilename("o", cl::desc("Output file (default: -)"),
                                    cl::value_desc("filename"), cl::init("-"),
                                    cl::cat(category));
cl::opt<Emit> emit(
    "emit", cl::desc("What to produce"), cl::init(Emit::MLIR),
    cl::values(clEnumValN(Emit::AST, "ast", "the checked syntax tree"),
               clEnumValN(Emit::MLIR, "mlir", "the optim dialect")),
    cl::cat(category));
cl::opt<optim::Precision> precision(
    "precision", cl::desc("Floating-point type of parameters and state"),
    cl::init(optim::Precision::F32),
    cl::values(clEnumValN(optim::Precision::F32, "f32", "32-bit (default)"),
               clEnumValN(optim::Precision::F64, "f64", "64-bit")),
    cl::cat(category));
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv,
                              "optimc: the optim-mlir compiler driver\n");

  auto buffer = llvm::MemoryBuffer::getFileOrSTDIN(inputFilename,
                                                   /*IsText=*/true);
  if (std::error_code ec = buffer.getError()) {
    llvm::WithColor::error(llvm::errs(), "optimc")
        << "cannot read '" << inputFilename << "': " << ec.message() << "\n";
    return 1;
  }
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(*buffer), llvm::SMLoc());
  optim::DiagnosticEngine diags(sourceMgr);
  optim::FrontendOptions options;
  options.precision = precision;

  auto write = [&](llvm::function_ref<void(llvm::raw_ostream &)> body) {
    // Written to a temporary file and renamed: a failed run never leaves a
    // truncated output behind.
    if (llvm::Error err = llvm::writeToOutput(
            outputFilename, [&](llvm::raw_ostream &os) -> llvm::Error {
              body(os);
              return llvm::Error::success();
            })) {
      llvm::WithColor::error(llvm::errs(), "optimc")
          << "cannot write '" << outputFilename
          << "': " << llvm::toString(std::move(err)) << "\n";
      return 1;
    }
    return 0;
  };

  if (emit == Emit::AST) {
    std::unique_ptr<optim::CheckedSource> source =
        optim::parseAndCheck(diags, options);
    if (!source)
      return 1;
    return write([&](llvm::raw_ostream &os) {
      optim::ast::dump(source->module, sourceMgr, os);
    });
  }

  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      optim::compileToMLIR(context, diags, options);
  if (!module)
    return 1;
  return write([&](llvm::raw_ostream &os) { module->print(os); });
}
