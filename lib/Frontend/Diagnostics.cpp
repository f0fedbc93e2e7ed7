//===- Diagnostics.cpp - front-end diagnostics ----------------------------===//

#include "optim/Frontend/Diagnostics.h"

using namespace optim;

void DiagnosticEngine::print(llvm::SMLoc loc, llvm::SourceMgr::DiagKind kind,
                             const llvm::Twine &message) {
  if (suppressed)
    return;
  sourceMgr.PrintMessage(os, loc, kind, message);
}

void DiagnosticEngine::error(llvm::SMLoc loc, const llvm::Twine &message) {
  if (tooManyErrors()) {
    if (!suppressed)
      os << "error: too many errors, stopping\n";
    suppressed = true;
    return;
  }
  ++numErrors;
  print(loc, llvm::SourceMgr::DK_Error, message);
}

void DiagnosticEngine::warning(llvm::SMLoc loc, const llvm::Twine &message) {
  print(loc, llvm::SourceMgr::DK_Warning, message);
}

void DiagnosticEngine::note(llvm::SMLoc loc, const llvm::Twine &message) {
  print(loc, llvm::SourceMgr::DK_Note, message);
}
