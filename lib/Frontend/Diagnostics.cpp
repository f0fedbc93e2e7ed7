//===- Diagnostics.cpp - front-end diagnostics ----------------------------===//

#include "optim/Frontend/Diagnostics.h"

using namespace optim;

void DiagnosticEngine::print(llvm::SMLoc loc, llvm::SourceMgr::DiagKind kind,
                             const llvm::Twine &message) {
  if (suppressed)
    return;
  llvm::SMDiagnostic diag = sourceMgr.GetMessage(loc, kind, message);
  // LLVM prints no caret under a line with a byte outside ASCII (it cannot
  // tell the columns), and echoes control bytes (NUL, escapes) to the
  // terminal as they are. Each such byte is shown as '?' instead: one
  // column per byte, so the caret lines up, and nothing raw is printed.
  std::string line = diag.getLineContents().str();
  bool changed = false;
  for (char &c : line) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x7f || (u < 0x20 && c != '\t')) {
      c = '?';
      changed = true;
    }
  }
  if (!changed) {
    diag.print(nullptr, os);
    return;
  }
  llvm::SMDiagnostic(sourceMgr, diag.getLoc(), diag.getFilename(),
                     diag.getLineNo(), diag.getColumnNo(), diag.getKind(),
                     diag.getMessage(), line, diag.getRanges())
      .print(nullptr, os);
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
