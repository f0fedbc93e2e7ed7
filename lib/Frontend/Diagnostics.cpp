//===- Diagnostics.cpp - front-end diagnostics ----------------------------===//

#include "optim/Frontend/Diagnostics.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/ConvertUTF.h"
#include "llvm/Support/Unicode.h"

using namespace optim;

/// The source line as shown under a diagnostic whose line LLVM would not
/// print well: valid UTF-8 characters are kept, tabs expanded to stops of
/// 8, and control bytes and the bytes of invalid sequences shown as '?'
/// (nothing raw reaches the terminal). `caret` receives the display column
/// of byte `column` (0-based), where a character that the error falls
/// inside of is shown byte by byte.
static std::string displayLine(llvm::StringRef raw, size_t column,
                               size_t &caret) {
  std::string shown;
  size_t width = 0;
  caret = 0;
  for (size_t i = 0; i < raw.size();) {
    if (i == column)
      caret = width;
    unsigned char u = static_cast<unsigned char>(raw[i]);
    if (u == '\t') {
      size_t next = (width / 8 + 1) * 8;
      shown.append(next - width, ' ');
      width = next;
      ++i;
      continue;
    }
    if (u < 0x80) {
      shown += (u < 0x20 || u == 0x7f) ? '?' : char(u);
      ++width;
      ++i;
      continue;
    }
    unsigned n = llvm::getNumBytesForUTF8(u);
    auto *begin = reinterpret_cast<const llvm::UTF8 *>(raw.data() + i);
    llvm::StringRef ch = raw.substr(i, n);
    int w = (i + n <= raw.size() && !(column > i && column < i + n) &&
             llvm::isLegalUTF8Sequence(begin, begin + n))
                ? llvm::sys::unicode::columnWidthUTF8(ch)
                : -1;
    if (w < 0) {
      shown += '?';
      ++width;
      ++i;
      continue;
    }
    shown += ch.str();
    width += size_t(w);
    i += n;
  }
  if (column >= raw.size())
    caret = width + (column - raw.size());
  return shown;
}

void DiagnosticEngine::print(llvm::SMLoc loc, llvm::SourceMgr::DiagKind kind,
                             const llvm::Twine &message) {
  if (suppressed)
    return;
  llvm::SMDiagnostic diag = sourceMgr.GetMessage(loc, kind, message);
  llvm::StringRef raw = diag.getLineContents();
  bool plain = llvm::all_of(raw, [](char c) {
    return c == '\t' || (c >= 0x20 && c < 0x7f);
  });
  // LLVM prints no caret under a line with a byte outside ASCII (it cannot
  // tell the columns) and echoes control bytes as they are: such lines are
  // printed here instead.
  if (plain || diag.getLineNo() < 1 || diag.getColumnNo() < 0) {
    diag.print(nullptr, os);
    return;
  }
  static const char *const labels[] = {"error", "warning", "remark", "note"};
  size_t caret = 0;
  std::string shown = displayLine(raw, size_t(diag.getColumnNo()), caret);
  os << diag.getFilename() << ":" << diag.getLineNo() << ":"
     << diag.getColumnNo() + 1 << ": " << labels[diag.getKind()] << ": "
     << diag.getMessage() << "\n"
     << shown << "\n"
     << std::string(caret, ' ') << "^\n";
}

void DiagnosticEngine::error(llvm::SMLoc loc, const llvm::Twine &message) {
  if (tooManyErrors()) {
    reportStopped();
    return;
  }
  ++numErrors;
  print(loc, llvm::SourceMgr::DK_Error, message);
}

void DiagnosticEngine::reportStopped() {
  if (!tooManyErrors() || suppressed)
    return;
  os << "error: too many errors (" << kMaxErrors << "), stopping\n";
  suppressed = true;
}

void DiagnosticEngine::warning(llvm::SMLoc loc, const llvm::Twine &message) {
  print(loc, llvm::SourceMgr::DK_Warning, message);
}

void DiagnosticEngine::note(llvm::SMLoc loc, const llvm::Twine &message) {
  print(loc, llvm::SourceMgr::DK_Note, message);
}
