//===- JIT.h - steps shared by the rule and layer JIT compilers -*- C++ -*-===//
//
// Compiler::compileSource (rules) and Compiler::compileLayerSource (QP layers)
// parse a program, keep one of its symbols, lower it with the CPU pipelines
// and JIT it; only what they keep and which functions they look up differ.
// Every failure throws optim::Error with a message for the user.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_COMPILER_JIT_H
#define OPTIM_LIB_COMPILER_JIT_H

#include "optim/Compiler/Compiler.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Target/TargetMachine.h"

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace optim {

/// Parses `source` into the optim dialect; front-end diagnostics
/// (file:line:col, source line, caret) become the Error's message. On
/// success, `warnings` (if given) receives the front end's warnings, as
/// printed.
mlir::OwningOpRef<mlir::ModuleOp> parseProgram(mlir::MLIRContext &context,
                                               std::string_view source,
                                               const std::string &bufferName,
                                               DType precision,
                                               std::string *warnings = nullptr);

/// The front end's warnings for `source` (parsed and checked only), as
/// printed; for a kernel loaded from the cache, which was not parsed.
std::string frontendWarnings(std::string_view source,
                             const std::string &bufferName, DType precision);

/// Erases every top-level op of `module` except the OpT named `name` (or the
/// only OpT when `name` is empty) and returns it; `kind` ("rule", "layer")
/// names OpT in the errors, which list the symbols the program has.
template <typename OpT>
OpT keepOnly(mlir::ModuleOp module, const std::string &name,
             const std::string &bufferName, const char *kind) {
  OpT selected;
  std::string available;
  unsigned count = 0;
  for (auto op : module.getOps<OpT>()) {
    available += (available.empty() ? "" : ", ") + op.getSymName().str();
    ++count;
    if (name.empty() ? !selected : op.getSymName() == name)
      selected = op;
  }
  if (name.empty() && count > 1)
    throw Error("optim::Compiler: '" + bufferName + "' defines several " +
                kind + "s (" + available + "); name the one to compile");
  if (!selected)
    throw Error("optim::Compiler: '" + bufferName + "' has no " + kind +
                (name.empty() ? std::string() : " named '" + name + "'") +
                (available.empty() ? "" : " (it has: " + available + ")"));
  for (mlir::Operation &op :
       llvm::make_early_inc_range(module.getBody()->getOperations()))
    if (&op != selected.getOperation())
      op.erase();
  return selected;
}

/// Collects the errors the passes report while it lives. An error located
/// in `source` reads as the front end's do ("file:line:col: error: message",
/// the source line, a caret), so that tools print both kinds alike; any
/// other as a "location: error: message" line.
class PassErrors {
public:
  PassErrors(mlir::MLIRContext &context, std::string_view source,
             const std::string &bufferName);
  /// Runs `pm` on `module`; on failure throws the errors, after "<what>: "
  /// unless the first is located in the source.
  void run(mlir::PassManager &pm, mlir::ModuleOp module,
           const std::string &what);
  /// Throws the errors reported so far, as run() does after a failure.
  [[noreturn]] void fail(const std::string &what);

private:
  std::string text;
  bool firstLocated = false;
  llvm::SourceMgr sourceMgr;
  mlir::ScopedDiagnosticHandler handler;
};

/// JIT-compiles a module lowered to the LLVM dialect for `tm` (optimized at
/// -O3); `what` names it in the error.
std::unique_ptr<mlir::ExecutionEngine>
createJIT(mlir::ModuleOp module, std::unique_ptr<llvm::TargetMachine> tm,
          bool enableObjectDump, const std::string &what);

/// The address of `symbol` in `engine`, or an Error naming it.
void *lookupSymbol(mlir::ExecutionEngine &engine, const std::string &symbol);

} // namespace optim

#endif // OPTIM_LIB_COMPILER_JIT_H
