//===- FrontendFuzzer.cpp - libFuzzer target for the .optim front end -----===//
//
// Any input must end in diagnostics or in a module that verifies: never a
// crash, a sanitizer report, a hang or a leak. The target runs the whole
// front end (lexer, parser, Sema, MLIRGen, verifier) and prints the module,
// so that the custom printers are exercised too.
//
//===----------------------------------------------------------------------===//

#include "optim/Frontend/Frontend.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // One context for the whole run: creating one per input would dominate the
  // time, and what it keeps (uniqued types and attributes) is bounded.
  static mlir::MLIRContext *context = [] {
    auto *c = new mlir::MLIRContext(mlir::MLIRContext::Threading::DISABLED);
    return c;
  }();

  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(reinterpret_cast<const char *>(data), size),
          "fuzz.optim"),
      llvm::SMLoc());
  std::string diagnostics;
  llvm::raw_string_ostream diagStream(diagnostics);
  optim::DiagnosticEngine diags(sourceMgr, diagStream);

  for (optim::Precision precision :
       {optim::Precision::F32, optim::Precision::F64}) {
    optim::FrontendOptions options;
    options.precision = precision;
    mlir::OwningOpRef<mlir::ModuleOp> module =
        optim::compileToMLIR(*context, diags, options);
    if (module) {
      std::string text;
      llvm::raw_string_ostream os(text);
      module->print(os);
    } else if (diags.getNumErrors() == 0) {
      // A rejected program must say why.
      __builtin_trap();
    }
    if (diags.hasErrors())
      break;
  }
  return 0;
}
