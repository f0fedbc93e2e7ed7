//===- WriteError.h - the reason of a failed writeToOutput ------*- C++ -*-===//
//
// optimc and optim-eval write their outputs with llvm::writeToOutput and
// report a failure as "cannot write 'PATH': REASON". Some of its errors (a
// FileError: the temporary file could not be made) already name the path,
// others (the final rename) do not, so the tools take the reason without
// the path and name the path once themselves.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_COMMON_WRITEERROR_H
#define OPTIM_TOOLS_COMMON_WRITEERROR_H

#include "llvm/Support/Error.h"

#include <string>

namespace optim::tools {

/// What went wrong in `err` (not success), without a FileError's path.
inline std::string writeErrorReason(llvm::Error err) {
  std::string reason;
  llvm::handleAllErrors(
      std::move(err),
      [&](const llvm::FileError &e) { reason = e.messageWithoutFileInfo(); },
      [&](const llvm::ErrorInfoBase &e) { reason = e.message(); });
  return reason;
}

} // namespace optim::tools

#endif // OPTIM_TOOLS_COMMON_WRITEERROR_H
