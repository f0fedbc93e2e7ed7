//===- CompilerImpl.h - optim::Compiler's state, for its source files ----===//
//
// Shared by Compiler.cpp (rules) and CompileLayer.cpp (layers), which both
// record what the last compile* did.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_LIB_COMPILER_COMPILERIMPL_H
#define OPTIM_LIB_COMPILER_COMPILERIMPL_H

#include "optim/Compiler/Compiler.h"

#include <string>

namespace optim {

struct Compiler::Impl {
  CompileOptions options;
  bool lastWasCached = false;
  std::string lastWarnings;
};

} // namespace optim

#endif // OPTIM_LIB_COMPILER_COMPILERIMPL_H
