//===- ExamplesDir.h - where a tool finds the example programs --*- C++ -*-===//
//
// optim-train and optim-sudoku default to programs of examples/ (l2l.optim,
// adam.optim, sudoku.optim). The build compiles in the source tree's folder,
// which an installed tool must not depend on: `cmake --install` copies the
// examples to PREFIX/share/optim-mlir/examples (cmake/OptimInstall.cmake),
// and a tool run from PREFIX/bin takes them from there.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_COMMON_EXAMPLESDIR_H
#define OPTIM_TOOLS_COMMON_EXAMPLESDIR_H

#include <string>
#include <unistd.h>

namespace optim::tools {

/// BIN/../share/optim-mlir/examples when the running executable lies in an
/// installed BIN and that folder exists, else `builtIn` (the source tree's
/// examples/, for a tool run from the build tree).
inline std::string examplesDir(const char *builtIn) {
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return builtIn;
  std::string path(exe, static_cast<size_t>(n));
  std::string installed =
      path.substr(0, path.rfind('/')) + "/../share/optim-mlir/examples";
  if (::access(installed.c_str(), R_OK | X_OK) == 0)
    return installed;
  return builtIn;
}

} // namespace optim::tools

#endif // OPTIM_TOOLS_COMMON_EXAMPLESDIR_H
