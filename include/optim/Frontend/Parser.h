//===- Parser.h - parser of the .optim language -----------------*- C++ -*-===//

#ifndef OPTIM_FRONTEND_PARSER_H
#define OPTIM_FRONTEND_PARSER_H

#include "optim/Frontend/AST.h"
#include "optim/Frontend/Diagnostics.h"

#include <optional>

namespace optim {

/// Parses the main buffer of the diagnostic engine's SourceMgr. Returns the
/// module, or nothing after reporting a syntax error. Never asserts on any
/// input: bad input only produces diagnostics.
std::optional<ast::Module> parseModule(DiagnosticEngine &diags);

} // namespace optim

#endif // OPTIM_FRONTEND_PARSER_H
