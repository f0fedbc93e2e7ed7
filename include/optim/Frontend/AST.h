//===- AST.h - abstract syntax tree of the .optim language ------*- C++ -*-===//
//
// The parser builds the tree; Sema resolves names and fills in each
// expression's type (its shape); MLIRGen walks the checked tree.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_FRONTEND_AST_H
#define OPTIM_FRONTEND_AST_H

#include "optim/Frontend/Lexer.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Casting.h"
#include "llvm/Support/SMLoc.h"
#include "llvm/Support/raw_ostream.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace optim {
struct Symbol; // Sema.h
} // namespace optim

namespace optim::ast {

/// The type of a value: a number or boolean of some shape (rank 0: scalar,
/// 1: vector, 2: matrix), a tuple (what an LSTM cell or qp returns), or a set
/// of learned weights, which can only be called.
struct Type {
  enum Kind { Unknown, Number, Bool, Tuple, Weights };
  Kind kind = Unknown;
  llvm::SmallVector<int64_t, 2> shape;
  std::vector<Type> elements; // Tuple only.

  static Type unknown() { return Type(); }
  static Type scalar() { return number({}); }
  static Type number(llvm::ArrayRef<int64_t> shape) {
    Type t;
    t.kind = Number;
    t.shape.assign(shape.begin(), shape.end());
    return t;
  }
  static Type boolean(llvm::ArrayRef<int64_t> shape) {
    Type t = number(shape);
    t.kind = Bool;
    return t;
  }
  static Type tuple(std::vector<Type> elements) {
    Type t;
    t.kind = Tuple;
    t.elements = std::move(elements);
    return t;
  }
  bool isUnknown() const { return kind == Unknown; }
  bool isNumber() const { return kind == Number; }
  bool isScalar() const { return kind == Number && shape.empty(); }
  unsigned rank() const { return shape.size(); }
  bool operator==(const Type &o) const {
    return kind == o.kind && shape == o.shape && elements == o.elements;
  }
  bool operator!=(const Type &o) const { return !(*this == o); }
  /// `scalar`, `vector[20]`, `matrix[40x64]`, `bool`, ...
  std::string str() const;
};

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

class Expr {
public:
  enum Kind { NumberK, NameK, UnaryK, BinaryK, CallK, IndexK, ListK };
  Expr(Kind kind, llvm::SMLoc loc) : kind(kind), loc(loc) {}
  virtual ~Expr() = default;
  Kind getKind() const { return kind; }
  llvm::SMLoc getLoc() const { return loc; }

  /// Filled in by Sema.
  Type type;

private:
  Kind kind;
  llvm::SMLoc loc;
};
using ExprPtr = std::unique_ptr<Expr>;

class NumberExpr : public Expr {
public:
  NumberExpr(llvm::SMLoc loc, double value, bool isInteger)
      : Expr(NumberK, loc), value(value), isInteger(isInteger) {}
  double value;
  bool isInteger;
  static bool classof(const Expr *e) { return e->getKind() == NumberK; }
};

class NameExpr : public Expr {
public:
  NameExpr(llvm::SMLoc loc, std::string name)
      : Expr(NameK, loc), name(std::move(name)) {}
  std::string name;
  /// The declaration this name refers to (Sema).
  const Symbol *symbol = nullptr;
  /// Set by Sema when the name is a built-in constant (`pi`, `inf`) that no
  /// declaration shadows: its value.
  std::optional<double> builtinValue;
  static bool classof(const Expr *e) { return e->getKind() == NameK; }
};

class UnaryExpr : public Expr {
public:
  UnaryExpr(llvm::SMLoc loc, TokenKind op, ExprPtr operand)
      : Expr(UnaryK, loc), op(op), operand(std::move(operand)) {}
  TokenKind op;
  ExprPtr operand;
  static bool classof(const Expr *e) { return e->getKind() == UnaryK; }
};

class BinaryExpr : public Expr {
public:
  BinaryExpr(llvm::SMLoc loc, TokenKind op, ExprPtr lhs, ExprPtr rhs)
      : Expr(BinaryK, loc), op(op), lhs(std::move(lhs)), rhs(std::move(rhs)) {}
  TokenKind op; // loc is the operator's.
  ExprPtr lhs, rhs;
  static bool classof(const Expr *e) { return e->getKind() == BinaryK; }
};

struct Argument {
  std::string name; // Empty for a positional argument.
  llvm::SMLoc nameLoc;
  ExprPtr value;
};

/// The built-in functions, resolved by Sema.
enum class Builtin {
  None, // A call of learned weights.
  Sqrt,
  Exp,
  Log,
  Abs,
  Tanh,
  Sigmoid,
  Sign,
  Floor,
  Ceil,
  Cos,
  Sin,
  Cbrt,
  Atan,
  IsFinite,
  Max,
  Min,
  Pow,
  Mod,
  Atan2,
  Clamp,
  Select,
  Sum,
  Mean,
  Dot,
  LogSign,
  Eye,
  Zeros,
  Ones,
  Transpose,
  Diag,
  VStack,
  QP,
  // Reductions over the coordinate's parameter tensor (tensor_*) or over
  // every parameter of the optimizer (global_*): optim.tensor_reduce.
  TensorSum,
  TensorMean,
  TensorNorm,
  TensorMax,
  TensorMin,
  GlobalSum,
  GlobalMean,
  GlobalNorm,
  GlobalMax,
  GlobalMin,
  // Reductions along each row (row_*) or column (col_*) of the coordinate's
  // parameter tensor, seen as matrices (KernelABI.h version 10, "Axes"):
  // optim.tensor_reduce with `row` or `col`.
  RowSum,
  RowMean,
  RowNorm,
  RowMax,
  RowMin,
  ColSum,
  ColMean,
  ColNorm,
  ColMax,
  ColMin,
  // Muon's orthogonalization of each matrix of the parameter (KernelABI.h
  // version 11, "Matrix functions"): optim.tensor_reduce newton_schulz with
  // `matrix`. Not a reduction: the result varies per coordinate.
  NewtonSchulz,
  // The number of rows / columns of the parameter's matrices (version 11,
  // "Shape values"): optim.tensor_reduce rows / cols, uniform.
  Rows,
  Cols,
  // Random draws (optim.random): one draw site per call.
  Rand,
  Randn,
};

/// tensor_sum ... global_min, row_sum ... col_min.
inline bool isReduction(Builtin b) {
  return b >= Builtin::TensorSum && b <= Builtin::ColMin;
}
/// global_sum ... global_min.
inline bool isGlobalReduction(Builtin b) {
  return b >= Builtin::GlobalSum && b <= Builtin::GlobalMin;
}

/// rows() and cols(): known before any pass, the same at every coordinate.
inline bool isShapeValue(Builtin b) {
  return b == Builtin::Rows || b == Builtin::Cols;
}

/// What a state or a value is shared along (KernelABI.h version 10): one
/// per coordinate (None), one per row or one per column of the parameter's
/// matrices.
enum class AxisKind { None, Row, Col };

/// row_sum ... row_min: Row; col_sum ... col_min: Col; others None.
inline AxisKind reductionAxis(Builtin b) {
  if (b >= Builtin::RowSum && b <= Builtin::RowMin)
    return AxisKind::Row;
  if (b >= Builtin::ColSum && b <= Builtin::ColMin)
    return AxisKind::Col;
  return AxisKind::None;
}

class CallExpr : public Expr {
public:
  CallExpr(llvm::SMLoc loc, std::string callee, std::vector<Argument> args)
      : Expr(CallK, loc), callee(std::move(callee)), args(std::move(args)) {}
  std::string callee;
  std::vector<Argument> args;
  Builtin builtin = Builtin::None; // Sema.
  const Symbol *weights = nullptr; // Sema, when callee names weights.
  double qpTol = 1e-8;             // Sema, for qp(..., tol: x).
  int64_t qpMaxIter = 100;         // Sema, for qp(..., max_iter: n).
  // Sema, for newton_schulz(x, steps, a, b, c, eps): torch.optim.Muon's
  // defaults where the call leaves them out.
  int32_t nsSteps = 5;
  double nsCoefficients[3] = {3.4445, -4.7750, 2.0315};
  double nsEps = 1e-7;
  static bool classof(const Expr *e) { return e->getKind() == CallK; }
};

class IndexExpr : public Expr {
public:
  IndexExpr(llvm::SMLoc loc, ExprPtr base, ExprPtr index)
      : Expr(IndexK, loc), base(std::move(base)), index(std::move(index)) {}
  ExprPtr base, index;
  int64_t position = 0; // Sema.
  static bool classof(const Expr *e) { return e->getKind() == IndexK; }
};

/// `[g, m, p]`: a vector of its elements' components, in order; a vector
/// element contributes all of its own (`[x, h]` with `h` a `vector[3]` is a
/// `vector[4]`).
class ListExpr : public Expr {
public:
  ListExpr(llvm::SMLoc loc, std::vector<ExprPtr> elements)
      : Expr(ListK, loc), elements(std::move(elements)) {}
  std::vector<ExprPtr> elements;
  static bool classof(const Expr *e) { return e->getKind() == ListK; }
};

//===----------------------------------------------------------------------===//
// Statements
//===----------------------------------------------------------------------===//

/// A declared name: `m = 0` in `state`, `h[20] = 0`, `A[neq, n]`,
/// `lstm1 = lstm(in: 2, hidden: 20)`, or a plain target of `let`/`output`.
struct DeclItem {
  std::string name;
  llvm::SMLoc loc;
  std::vector<ExprPtr> dims;      // `[20]`, `[neq, n]`.
  ExprPtr init;                   // `= 0` (state) or `= lstm(...)` (weights).
  Type type;                      // Sema.
  const Symbol *symbol = nullptr; // Sema.
};

class Stmt {
public:
  enum Kind { StateK, WeightsK, InputK, LetK, OutputK, AssignK };
  Stmt(Kind kind, llvm::SMLoc loc) : kind(kind), loc(loc) {}
  virtual ~Stmt() = default;
  Kind getKind() const { return kind; }
  llvm::SMLoc getLoc() const { return loc; }

private:
  Kind kind;
  llvm::SMLoc loc;
};
using StmtPtr = std::unique_ptr<Stmt>;

/// `state`, `weights` and `input` declarations: a list of items.
class DeclStmt : public Stmt {
public:
  DeclStmt(Kind kind, llvm::SMLoc loc, std::vector<DeclItem> items,
           AxisKind axis = AxisKind::None)
      : Stmt(kind, loc), items(std::move(items)), axis(axis) {}
  std::vector<DeclItem> items;
  /// `row state` / `col state` (loc is then the `row` or `col` word).
  AxisKind axis;
  static bool classof(const Stmt *s) {
    return s->getKind() == StateK || s->getKind() == WeightsK ||
           s->getKind() == InputK;
  }
};

/// `let a, b = e`, `output z = e`, `a, b = e`, `p -= e`.
class BindStmt : public Stmt {
public:
  BindStmt(Kind kind, llvm::SMLoc loc, std::vector<DeclItem> targets,
           TokenKind op, llvm::SMLoc opLoc, ExprPtr value)
      : Stmt(kind, loc), targets(std::move(targets)), op(op), opLoc(opLoc),
        value(std::move(value)) {}
  std::vector<DeclItem> targets;
  TokenKind op; // Equal, or a compound assignment for AssignK.
  llvm::SMLoc opLoc;
  ExprPtr value;
  static bool classof(const Stmt *s) {
    return s->getKind() == LetK || s->getKind() == OutputK ||
           s->getKind() == AssignK;
  }
};

//===----------------------------------------------------------------------===//
// Programs
//===----------------------------------------------------------------------===//

struct Param {
  std::string name;
  llvm::SMLoc loc;
  bool isConst = false;
  double value = 0.0;
  bool isInteger = false;
  llvm::SMLoc valueLoc;
};

struct Program {
  enum Kind { Rule, LearnedRule, Layer };
  Kind kind = Rule;
  std::string name;
  llvm::SMLoc loc; // The name.
  std::vector<Param> params;
  std::vector<StmtPtr> body;
  llvm::SMLoc bodyEnd;

  llvm::StringRef kindName() const {
    return kind == Rule          ? "rule"
           : kind == LearnedRule ? "learned rule"
                                 : "layer";
  }
  bool isRule() const { return kind != Layer; }
};

struct Module {
  std::vector<Program> programs;
};

/// Prints the tree (with the types Sema found, if it ran) for --emit=ast.
void dump(const Module &module, const llvm::SourceMgr &sourceMgr,
          llvm::raw_ostream &os);

} // namespace optim::ast

#endif // OPTIM_FRONTEND_AST_H
