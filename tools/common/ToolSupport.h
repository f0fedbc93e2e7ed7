//===- ToolSupport.h - command lines and errors of the tools ----*- C++ -*-===//
//
// optim-train, optim-layer and optim-sudoku parse their command lines by hand
// (plain C++ with exceptions, no llvm::cl); ArgParser gives them the
// conventions of optimc and optim-eval, whose llvm::cl options work so:
//
//  - a valued option takes its value as `--key value` or `--key=value`, the
//    next argument being the value even if it starts with '-' (`--batch -1`
//    is then refused by the option's own check, not taken for an option);
//  - a flag takes no value (`--quiet=1` is an error);
//  - `--help` (or `-h`) prints the usage to standard output and exits with 0;
//  - a usage error prints one line, "TOOL: error: MESSAGE", to standard
//    error and exits with 1, the status of llvm::cl's errors and of every
//    other error of the tools.
//
// printToolError prints an error the way optimc prints the compiler's
// diagnostics: optim::Compiler's messages that are already located
// ("file:line:col: error: ...", the source line and a caret) as they are,
// any other as "TOOL: error: MESSAGE".
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_COMMON_TOOLSUPPORT_H
#define OPTIM_TOOLS_COMMON_TOOLSUPPORT_H

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <initializer_list>
#include <new>
#include <string>
#include <vector>

namespace optim::tools {

/// The error for options of the MLP tasks (`given`: those on the command
/// line, as "--hidden") with `task` "quadratic", which has no width, depth,
/// activation, minibatch or images and would ignore them; "" when there is
/// nothing to refuse. A user who sets --hidden 40 on it expects a change.
inline std::string mlpOptionsUnused(const std::string &task,
                                    const std::vector<std::string> &given) {
  if (task != "quadratic" || given.empty())
    return "";
  std::string names;
  for (const std::string &g : given)
    names += (names.empty() ? "" : ", ") + g;
  return names + (given.size() == 1 ? " is an option" : " are options") +
         " of the MLP tasks (mnist, fashion-mnist); --task quadratic has "
         "none (it is the 10-d quadratic of Andrychowicz et al.)";
}

/// 'h', 'z' and 'w'.
inline std::string quotedList(const std::vector<std::string> &names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i)
    text += (i == 0 ? "'" : i + 1 == names.size() ? " and '" : ", '") +
            names[i] + "'";
  return text;
}

/// The error for rule `rule` with per-coordinate inputs `inputs` (`input h`:
/// RuleInfo::inputs) that a tool would run on its built-in tasks, which
/// compute gradients and nothing else: nothing would supply the inputs. ""
/// when it has none. `flag`, when not empty, is how the tool can supply
/// them after all (optimc run: "--input NAME=SOURCE (...)"), named in
/// place of the tasks' refusal (`inputs`: then those not given).
inline std::string inputsUnsupplied(const std::string &rule,
                                    const std::vector<std::string> &inputs,
                                    const std::string &flag = "") {
  if (inputs.empty())
    return "";
  std::string names = quotedList(inputs);
  return "rule '" + rule + "' takes the per-coordinate input" +
         (inputs.size() == 1 ? " " : "s ") + names +
         (flag.empty() ? " with every step, which the built-in tasks do not "
                         "supply (they compute gradients only); run it from "
                         "a program that computes "
                       : " with every step: supply " +
                             std::string(inputs.size() == 1 ? "it" : "each") +
                             " with " + flag +
                             ", or run the rule from a program that "
                             "computes ") +
         (inputs.size() == 1 ? "it" : "them") +
         ": Optimizer::step(grads, inputs) in C++, "
         "optim_optimizer_step_inputs_f32/_f64 in C, or "
         "Optimizer.step(grads, inputs={...}) in Python";
}

/// Whether `message` starts with a located diagnostic, "FILE:LINE:COL:
/// error: ..." (or a warning before the errors): it names its place itself,
/// and a tool's prefix before it would say "error" twice.
inline bool isLocatedDiagnostic(const std::string &message) {
  std::string first = message.substr(0, message.find('\n'));
  size_t at = std::string::npos;
  for (const char *severity : {": error: ", ": warning: "})
    at = std::min(at, first.find(severity));
  if (at == std::string::npos)
    return false;
  // Two runs of digits, each after a ':', just before the severity.
  size_t pos = at;
  for (int field = 0; field < 2; ++field) {
    size_t digits = pos;
    while (digits > 0 && first[digits - 1] >= '0' && first[digits - 1] <= '9')
      --digits;
    if (digits == pos || digits == 0 || first[digits - 1] != ':')
      return false;
    pos = digits - 1;
  }
  // A file name, not a message that quotes a location ("optim::Compiler:
  // cannot compile ...: f.optim:1:2: error: ...").
  return pos > 0 && first.substr(0, pos).find(": ") == std::string::npos;
}

/// Prints `message` (trailing newlines dropped) to standard error, after
/// "TOOL: error: " unless it is a located diagnostic. Standard output is
/// flushed first so that the error comes after what was printed before it.
inline void printToolError(const char *tool, std::string message) {
  while (!message.empty() && message.back() == '\n')
    message.pop_back();
  std::fflush(stdout);
  if (isLocatedDiagnostic(message))
    std::fprintf(stderr, "%s\n", message.c_str());
  else
    std::fprintf(stderr, "%s: error: %s\n", tool, message.c_str());
}

/// The compiler's warnings of a program the tool runs (Compiler::
/// lastWarnings), to stderr as optimc prints them: a rule that compiles may
/// still never update a state, or never use weights that meta-training then
/// trains with a zero gradient.
inline void printWarnings(const std::string &warnings) {
  if (warnings.empty())
    return;
  std::fflush(stdout);
  std::fputs(warnings.c_str(), stderr);
}

/// The same for a caught exception; std::bad_alloc's what() ("std::bad_alloc")
/// says nothing to a user.
inline void printToolError(const char *tool, const std::exception &e) {
  if (dynamic_cast<const std::bad_alloc *>(&e))
    printToolError(tool, "out of memory: the run needs more memory than this "
                         "machine could give it (smaller sizes, fewer "
                         "threads or a larger machine)");
  else
    printToolError(tool, e.what());
}

/// Walks a command line: `while (args.next()) if (args.is("--out")) ...`.
class ArgParser {
public:
  ArgParser(const char *tool, const char *usage, int argc, char **argv)
      : tool(tool), usage(usage), argc(argc), argv(argv) {}

  /// Moves to the next argument; false after the last. Prints the usage and
  /// exits for --help and -h.
  bool next() {
    if (++index >= argc)
      return false;
    arg = argv[index];
    name = arg;
    inlineValue.clear();
    hasInlineValue = false;
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    // Only an option splits at '=': a file name may contain one.
    size_t eq = arg.find('=');
    if (arg.compare(0, 2, "--") == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      inlineValue = arg.substr(eq + 1);
      hasInlineValue = true;
    }
    // `--episodes 2 --episodes 3` kept the last: more likely a mistake.
    if (arg.compare(0, 2, "--") == 0 &&
        std::find(repeatable.begin(), repeatable.end(), name) ==
            repeatable.end()) {
      if (std::find(seen.begin(), seen.end(), name) != seen.end())
        error(name + " is given twice; give it once");
      seen.push_back(name);
    }
    return true;
  }

  /// Options that may be given several times (`--set a=1 --set b=2`).
  void allowRepeated(std::initializer_list<const char *> options) {
    repeatable.insert(repeatable.end(), options.begin(), options.end());
  }

  /// The whole argument, as given.
  const std::string &argument() const { return arg; }
  /// Whether the argument is the option `option` (with or without `=value`).
  bool is(const char *option) const { return name == option; }
  /// Whether the argument looks like an option rather than an operand
  /// ("-" alone names standard input, an operand).
  bool isOption() const { return arg.size() > 1 && arg[0] == '-'; }

  /// The value of a valued option: after its '=', else the next argument.
  std::string value() {
    if (hasInlineValue)
      return inlineValue;
    if (index + 1 >= argc)
      error(name + " needs a value (" + name + " VALUE or " + name +
            "=VALUE)");
    return argv[++index];
  }

  /// Checks that a flag was not given a value.
  void flag() const {
    if (hasInlineValue)
      error(name + " takes no value");
  }

  /// The value as an integer in [min, max].
  int64_t integer(int64_t min, int64_t max = INT64_MAX) {
    std::string v = value();
    char *end = nullptr;
    errno = 0;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || errno)
      error(name + " expects an integer, got '" + v + "'");
    if (x < min)
      error(name + " must be at least " + std::to_string(min) + ", got " + v);
    if (x > max)
      error(name + " must be at most " + std::to_string(max) + ", got " + v);
    return x;
  }

  /// The value as a finite number.
  double number() {
    std::string v = value();
    char *end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end || !std::isfinite(x))
      error(name + " expects a finite number, got '" + v + "'");
    return x;
  }

  /// A usage error: one line, exit status 1.
  [[noreturn]] void error(const std::string &message) const {
    std::fprintf(stderr, "%s: error: %s\n", tool, message.c_str());
    std::exit(1);
  }

  /// The usage error of an argument no option matched, with a hint where
  /// the options are listed.
  [[noreturn]] void unknown() const {
    error((isOption() ? "unknown option '" : "unexpected argument '") + arg +
          "' (see " + tool + " --help)");
  }

private:
  const char *tool;
  const char *usage;
  int argc;
  char **argv;
  int index = 0;
  std::string arg, name, inlineValue;
  std::vector<std::string> seen, repeatable;
  bool hasInlineValue = false;
};

} // namespace optim::tools

#endif // OPTIM_TOOLS_COMMON_TOOLSUPPORT_H
