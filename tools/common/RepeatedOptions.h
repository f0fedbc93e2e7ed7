//===- RepeatedOptions.h - options given twice on an LLVM command line ----===//
//
// Since LLVM 15 a cl::opt given twice keeps the last value without a word
// (`--task quadratic --task mnist` ran mnist): the tools that parse with
// llvm::cl call this after parsing and refuse such command lines.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_COMMON_REPEATEDOPTIONS_H
#define OPTIM_TOOLS_COMMON_REPEATEDOPTIONS_H

#include "llvm/Support/CommandLine.h"

#include <initializer_list>
#include <string>

namespace optim::tools {

/// "--task is given 2 times; give it once" for the first single-valued
/// option of `subcommands` given more than once, else "". Lists
/// (cl::list) are repeatable by design.
inline std::string
repeatedOption(std::initializer_list<llvm::cl::SubCommand *> subcommands) {
  namespace cl = llvm::cl;
  for (cl::SubCommand *sub : subcommands)
    for (const auto &entry : cl::getRegisteredOptions(*sub)) {
      const cl::Option *opt = entry.second;
      if ((opt->getNumOccurrencesFlag() == cl::Optional ||
           opt->getNumOccurrencesFlag() == cl::Required) &&
          opt->getNumOccurrences() > 1 && !opt->isPositional())
        return (opt->ArgStr.size() == 1 ? "-" : "--") + opt->ArgStr.str() +
               " is given " + std::to_string(opt->getNumOccurrences()) +
               " times; give it once";
    }
  return "";
}

} // namespace optim::tools

#endif // OPTIM_TOOLS_COMMON_REPEATEDOPTIONS_H
