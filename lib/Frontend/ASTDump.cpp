//===- ASTDump.cpp - print the syntax tree for --emit=ast -----------------===//

#include "optim/Frontend/AST.h"

#include "llvm/ADT/Twine.h"
#include "llvm/Support/SourceMgr.h"

using namespace optim;
using namespace optim::ast;

std::string Type::str() const {
  switch (kind) {
  case Unknown:
    return "<error>";
  case Weights:
    return "weights";
  case Tuple: {
    std::string s = "(";
    for (size_t i = 0; i < elements.size(); ++i)
      s += (i ? ", " : "") + elements[i].str();
    return s + ")";
  }
  case Number:
  case Bool:
    break;
  }
  std::string base = kind == Bool ? "bool" : "";
  if (shape.empty())
    return kind == Bool ? "bool" : "scalar";
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i)
    dims += (i ? "x" : "") + std::to_string(shape[i]);
  std::string name = shape.size() == 1 ? "vector" : "matrix";
  if (kind == Bool)
    name = "bool " + name;
  return name + "[" + dims + "]";
}

namespace {
class Dumper {
public:
  Dumper(const llvm::SourceMgr &sm, llvm::raw_ostream &os) : sm(sm), os(os) {}

  void dump(const Program &program) {
    os << program.kindName() << " " << program.name << " " << loc(program.loc)
       << "\n";
    for (const Param &param : program.params)
      line(1) << "param " << (param.isConst ? "const " : "") << param.name
              << " = " << param.value << " " << loc(param.loc) << "\n";
    for (const StmtPtr &stmt : program.body)
      dump(*stmt, 1);
  }

private:
  std::string loc(llvm::SMLoc l) const {
    if (!l.isValid())
      return "";
    auto [line, col] = sm.getLineAndColumn(l);
    return ("@" + llvm::Twine(line) + ":" + llvm::Twine(col)).str();
  }
  llvm::raw_ostream &line(unsigned depth) { return os.indent(2 * depth); }

  void dump(const Stmt &stmt, unsigned depth) {
    static const char *const names[] = {"state", "weights", "input",
                                        "let",   "output",  "assign"};
    line(depth);
    if (auto *decl = llvm::dyn_cast<DeclStmt>(&stmt))
      if (decl->axis != AxisKind::None)
        os << (decl->axis == AxisKind::Row ? "row " : "col ");
    os << names[stmt.getKind()] << " " << loc(stmt.getLoc()) << "\n";
    if (auto *decl = llvm::dyn_cast<DeclStmt>(&stmt)) {
      for (const DeclItem &item : decl->items) {
        line(depth + 1) << item.name << " " << loc(item.loc) << "\n";
        for (const ExprPtr &dim : item.dims) {
          line(depth + 2) << "size\n";
          dump(*dim, depth + 3);
        }
        if (item.init) {
          line(depth + 2) << "init\n";
          dump(*item.init, depth + 3);
        }
      }
      return;
    }
    auto &bind = llvm::cast<BindStmt>(stmt);
    for (const DeclItem &target : bind.targets)
      line(depth + 1) << "target " << target.name << " : " << target.type.str()
                      << " " << loc(target.loc) << "\n";
    line(depth + 1) << "op " << spell(bind.op) << "\n";
    dump(*bind.value, depth + 1);
  }

  void dump(const Expr &expr, unsigned depth) {
    auto &o = line(depth);
    switch (expr.getKind()) {
    case Expr::NumberK:
      o << "number " << llvm::cast<NumberExpr>(expr).value;
      break;
    case Expr::NameK:
      o << "name " << llvm::cast<NameExpr>(expr).name;
      break;
    case Expr::UnaryK:
      o << "unary " << spell(llvm::cast<UnaryExpr>(expr).op);
      break;
    case Expr::BinaryK:
      o << "binary " << spell(llvm::cast<BinaryExpr>(expr).op);
      break;
    case Expr::CallK:
      o << "call " << llvm::cast<CallExpr>(expr).callee;
      break;
    case Expr::IndexK:
      o << "index";
      break;
    case Expr::ListK:
      o << "list";
      break;
    }
    o << " : " << expr.type.str() << " " << loc(expr.getLoc()) << "\n";
    switch (expr.getKind()) {
    case Expr::UnaryK:
      dump(*llvm::cast<UnaryExpr>(expr).operand, depth + 1);
      break;
    case Expr::BinaryK:
      dump(*llvm::cast<BinaryExpr>(expr).lhs, depth + 1);
      dump(*llvm::cast<BinaryExpr>(expr).rhs, depth + 1);
      break;
    case Expr::CallK:
      for (const Argument &arg : llvm::cast<CallExpr>(expr).args) {
        if (!arg.name.empty())
          line(depth + 1) << "arg " << arg.name << "\n";
        dump(*arg.value, depth + 1 + !arg.name.empty());
      }
      break;
    case Expr::IndexK:
      dump(*llvm::cast<IndexExpr>(expr).base, depth + 1);
      dump(*llvm::cast<IndexExpr>(expr).index, depth + 1);
      break;
    case Expr::ListK:
      for (const ExprPtr &element : llvm::cast<ListExpr>(expr).elements)
        dump(*element, depth + 1);
      break;
    default:
      break;
    }
  }

  const llvm::SourceMgr &sm;
  llvm::raw_ostream &os;
};
} // namespace

void ast::dump(const Module &module, const llvm::SourceMgr &sm,
               llvm::raw_ostream &os) {
  Dumper dumper(sm, os);
  for (const Program &program : module.programs)
    dumper.dump(program);
}
