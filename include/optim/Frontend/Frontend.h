//===- Frontend.h - .optim source to the optim dialect ----------*- C++ -*-===//
//
// The one entry point that tools, the JIT and the fuzzer share: parse, check
// and generate, with every error reported through the SourceMgr.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_FRONTEND_FRONTEND_H
#define OPTIM_FRONTEND_FRONTEND_H

#include "optim/Frontend/AST.h"
#include "optim/Frontend/Sema.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <optional>

namespace optim {

struct FrontendOptions {
  Precision precision = Precision::F32;
};

/// A parsed and checked module. `checked` points into `module`.
struct CheckedSource {
  ast::Module module;
  CheckedModule checked;
};

/// Parses and checks the main buffer of `diags`' SourceMgr. Returns nothing
/// after printing diagnostics.
std::unique_ptr<CheckedSource> parseAndCheck(DiagnosticEngine &diags,
                                             const FrontendOptions &options);

/// Parses, checks and generates the optim dialect; the result verifies.
/// Returns null after printing diagnostics.
mlir::OwningOpRef<mlir::ModuleOp> compileToMLIR(mlir::MLIRContext &context,
                                                DiagnosticEngine &diags,
                                                const FrontendOptions &options);

} // namespace optim

#endif // OPTIM_FRONTEND_FRONTEND_H
