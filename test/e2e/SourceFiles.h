//===- SourceFiles.h - reading .optim sources in the e2e tests --*- C++ -*-===//
//
// Shared by the tests that compile the examples and the test inputs from
// their text (VJPKernelTest.cpp, VJPReductionsTest.cpp,
// TrajectoryReductionsTest.cpp, DifferentiateTest.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TEST_E2E_SOURCEFILES_H
#define OPTIM_TEST_E2E_SOURCEFILES_H

#include <fstream>
#include <sstream>
#include <string>

namespace optim {
namespace testsource {

/// The whole file at `path` (empty if it cannot be read: the compiler then
/// reports an empty program).
inline std::string readFile(const std::string &path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// examples/<name>.optim.
inline std::string readExample(const std::string &name) {
  return readFile(std::string(OPTIM_EXAMPLES_DIR) + "/" + name + ".optim");
}

} // namespace testsource
} // namespace optim

#endif // OPTIM_TEST_E2E_SOURCEFILES_H
