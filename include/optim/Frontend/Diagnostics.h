//===- Diagnostics.h - front-end diagnostics --------------------*- C++ -*-===//
//
// Every front-end error goes through here so that it is printed the same
// way: `file:line:col: error: message`, the source line and a caret.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_FRONTEND_DIAGNOSTICS_H
#define OPTIM_FRONTEND_DIAGNOSTICS_H

#include "llvm/ADT/Twine.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

namespace optim {

class DiagnosticEngine {
public:
  /// Stops reporting (and asks callers to stop) after this many errors, so
  /// that binary garbage does not flood the terminal.
  static constexpr unsigned kMaxErrors = 20;

  DiagnosticEngine(llvm::SourceMgr &sourceMgr,
                   llvm::raw_ostream &os = llvm::errs())
      : sourceMgr(sourceMgr), os(os) {}

  void error(llvm::SMLoc loc, const llvm::Twine &message);
  void warning(llvm::SMLoc loc, const llvm::Twine &message);
  void note(llvm::SMLoc loc, const llvm::Twine &message);

  unsigned getNumErrors() const { return numErrors; }
  bool hasErrors() const { return numErrors != 0; }
  /// True once kMaxErrors errors were reported: callers should give up.
  bool tooManyErrors() const { return numErrors >= kMaxErrors; }
  /// Says, once, that checking stopped at kMaxErrors errors (callers stop
  /// before reporting one more); nothing below that.
  void reportStopped();
  llvm::SourceMgr &getSourceMgr() { return sourceMgr; }

private:
  void print(llvm::SMLoc loc, llvm::SourceMgr::DiagKind kind,
             const llvm::Twine &message);

  llvm::SourceMgr &sourceMgr;
  llvm::raw_ostream &os;
  unsigned numErrors = 0;
  bool suppressed = false;
};

} // namespace optim

#endif // OPTIM_FRONTEND_DIAGNOSTICS_H
