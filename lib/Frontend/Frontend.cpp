//===- Frontend.cpp - .optim source to the optim dialect ------------------===//

#include "optim/Frontend/Frontend.h"
#include "optim/Frontend/MLIRGen.h"
#include "optim/Frontend/Parser.h"

#include "mlir/IR/Verifier.h"

using namespace optim;

std::unique_ptr<CheckedSource>
optim::parseAndCheck(DiagnosticEngine &diags, const FrontendOptions &options) {
  std::optional<ast::Module> module = parseModule(diags);
  if (!module) {
    diags.reportStopped();
    return nullptr;
  }
  auto result = std::make_unique<CheckedSource>();
  result->module = std::move(*module);
  SemaOptions semaOptions;
  semaOptions.precision = options.precision;
  if (!checkModule(result->module, result->checked, diags, semaOptions)) {
    diags.reportStopped();
    return nullptr;
  }
  return result;
}

mlir::OwningOpRef<mlir::ModuleOp>
optim::compileToMLIR(mlir::MLIRContext &context, DiagnosticEngine &diags,
                     const FrontendOptions &options) {
  std::unique_ptr<CheckedSource> source = parseAndCheck(diags, options);
  if (!source)
    return nullptr;
  mlir::OwningOpRef<mlir::ModuleOp> module = mlirGen(
      context, source->checked, diags.getSourceMgr(), options.precision);
  // Sema promises a valid module; a failure here is a compiler bug, reported
  // as such instead of handing invalid IR to later passes.
  if (failed(mlir::verify(*module))) {
    llvm::errs() << "internal error: the generated MLIR does not verify; "
                    "please report this program\n";
    return nullptr;
  }
  return module;
}
