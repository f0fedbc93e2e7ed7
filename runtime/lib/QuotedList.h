//===- QuotedList.h - names listed in an error message (runtime-internal) -===//
//
// Internal to the runtime (not installed): the CPU and CUDA optimizers name
// a rule's inputs the same way in their errors.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_QUOTEDLIST_H
#define OPTIM_RUNTIME_LIB_QUOTEDLIST_H

#include <string>
#include <vector>

namespace optim {
namespace detail {

/// 'h', 'z' and 'w'.
inline std::string quotedList(const std::vector<std::string> &names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0)
      text += i + 1 == names.size() ? " and " : ", ";
    text += "'" + names[i] + "'";
  }
  return text;
}

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_QUOTEDLIST_H
