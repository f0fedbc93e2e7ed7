//===- Sema.cpp - semantic checks of the .optim language ------------------===//

#include "optim/Frontend/Sema.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"

#include <cfloat>
#include <charconv>
#include <cmath>
#include <optional>

using namespace optim;
using namespace optim::ast;
using llvm::SMLoc;
using llvm::Twine;

namespace {

/// Sizes of per-coordinate vectors and layer tensors are capped so that a
/// typo such as `state h[200000000]` is reported rather than compiled.
constexpr int64_t kMaxSize = 65536;
/// Every coordinate reads all of a learned rule's weights at every step, so
/// a rule whose weights approach this (256 MiB in f32) is a typo, and a
/// larger one would fail at run time allocating them.
constexpr int64_t kMaxLearnedWeights = int64_t(1) << 26;

struct BuiltinInfo {
  Builtin id;
  const char *name;
  int minArgs, maxArgs;
  enum Where { Anywhere, RulesOnly, LayersOnly } where;
};

const BuiltinInfo kBuiltins[] = {
    {Builtin::Sqrt, "sqrt", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Exp, "exp", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Log, "log", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Abs, "abs", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Tanh, "tanh", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Sigmoid, "sigmoid", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Sign, "sign", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Floor, "floor", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Ceil, "ceil", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Cos, "cos", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Sin, "sin", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Cbrt, "cbrt", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Atan, "atan", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::IsFinite, "isfinite", 1, 1, BuiltinInfo::Anywhere},
    {Builtin::Max, "max", 2, 2, BuiltinInfo::Anywhere},
    {Builtin::Min, "min", 2, 2, BuiltinInfo::Anywhere},
    {Builtin::Pow, "pow", 2, 2, BuiltinInfo::Anywhere},
    {Builtin::Mod, "mod", 2, 2, BuiltinInfo::Anywhere},
    {Builtin::Atan2, "atan2", 2, 2, BuiltinInfo::Anywhere},
    {Builtin::Clamp, "clamp", 3, 3, BuiltinInfo::Anywhere},
    {Builtin::Select, "select", 3, 3, BuiltinInfo::Anywhere},
    {Builtin::Sum, "sum", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::Mean, "mean", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::Dot, "dot", 2, 2, BuiltinInfo::RulesOnly},
    {Builtin::LogSign, "log_sign", 2, 2, BuiltinInfo::RulesOnly},
    {Builtin::Eye, "eye", 1, 1, BuiltinInfo::LayersOnly},
    {Builtin::Zeros, "zeros", 1, 2, BuiltinInfo::LayersOnly},
    {Builtin::Ones, "ones", 1, 2, BuiltinInfo::LayersOnly},
    {Builtin::Transpose, "transpose", 1, 1, BuiltinInfo::LayersOnly},
    {Builtin::Diag, "diag", 1, 1, BuiltinInfo::LayersOnly},
    {Builtin::VStack, "vstack", 1, 1024, BuiltinInfo::LayersOnly},
    {Builtin::QP, "qp", 0, 8, BuiltinInfo::LayersOnly},
    {Builtin::TensorSum, "tensor_sum", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::TensorMean, "tensor_mean", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::TensorNorm, "tensor_norm", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::TensorMax, "tensor_max", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::TensorMin, "tensor_min", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::GlobalSum, "global_sum", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::GlobalMean, "global_mean", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::GlobalNorm, "global_norm", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::GlobalMax, "global_max", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::GlobalMin, "global_min", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::RowSum, "row_sum", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::RowMean, "row_mean", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::RowNorm, "row_norm", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::RowMax, "row_max", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::RowMin, "row_min", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::ColSum, "col_sum", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::ColMean, "col_mean", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::ColNorm, "col_norm", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::ColMax, "col_max", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::ColMin, "col_min", 1, 1, BuiltinInfo::RulesOnly},
    {Builtin::NewtonSchulz, "newton_schulz", 1, 6, BuiltinInfo::RulesOnly},
    {Builtin::Rows, "rows", 0, 0, BuiltinInfo::RulesOnly},
    {Builtin::Cols, "cols", 0, 0, BuiltinInfo::RulesOnly},
    {Builtin::Rand, "rand", 0, 0, BuiltinInfo::RulesOnly},
    {Builtin::Randn, "randn", 0, 0, BuiltinInfo::RulesOnly},
};

/// What a value is shared along (KernelABI.h version 10, "Axes"), as the
/// dialect's getValueAxes: the same at every coordinate (numbers, t,
/// hyperparameters, tensor and global reductions), one per row (row states,
/// row reductions), one per column, or per coordinate (p, g, inputs, other
/// states, draws, and anything mixing rows and columns).
enum class ValueAxis { Uniform, Row, Col, Coordinate };

ValueAxis joinAxes(ValueAxis a, ValueAxis b) {
  if (a == b || b == ValueAxis::Uniform)
    return a;
  if (a == ValueAxis::Uniform)
    return b;
  return ValueAxis::Coordinate;
}

/// A value read by an expression that makes it vary, for the diagnostic of
/// a row or column state: what the user wrote ("'g'", "'rand()'",
/// "'col_mean(...)'"), where, and what that varies along.
struct Witness {
  std::string text;
  SMLoc loc;
  ValueAxis axis = ValueAxis::Uniform;
  bool empty() const { return text.empty(); }
};

/// What a per-coordinate value depends on, among the things the reduction
/// passes of a rule (optim_reduce_<name>, KernelABI.h) cannot compute: the
/// result of learned weights (they do not run the network). The first such
/// call found, for the diagnostic. (A reduction's result is computed by an
/// earlier pass: a reduction of it is nested, KernelABI.h version 9.)
/// Also what the value is shared along, with the first value read that
/// varies along a row (per coordinate or per column) and along a column.
struct Dependence {
  const CallExpr *learned = nullptr;
  ValueAxis axis = ValueAxis::Uniform;
  Witness alongRow, alongCol;

  void merge(const Dependence &other) {
    if (!learned)
      learned = other.learned;
    axis = joinAxes(axis, other.axis);
    if (alongRow.empty())
      alongRow = other.alongRow;
    if (alongCol.empty())
      alongCol = other.alongCol;
  }
  /// The value is `text` (a name, a call) at `loc`, varying as `a`.
  void setWitness(llvm::StringRef text, SMLoc loc, ValueAxis a) {
    if (a == ValueAxis::Col || a == ValueAxis::Coordinate)
      alongRow = {text.str(), loc, a};
    if (a == ValueAxis::Row || a == ValueAxis::Coordinate)
      alongCol = {text.str(), loc, a};
  }
};

/// The built-in constants: names that any declaration shadows.
std::optional<double> builtinConstant(llvm::StringRef name) {
  if (name == "pi")
    return 3.141592653589793238462643383279502884;
  if (name == "inf")
    return HUGE_VAL;
  return std::nullopt;
}

const BuiltinInfo *lookupBuiltin(llvm::StringRef name) {
  for (const BuiltinInfo &b : kBuiltins)
    if (name == b.name)
      return &b;
  return nullptr;
}

/// "state " for a name declared by `state`, to prefix to the name.
llvm::StringRef declarationNoun(Stmt::Kind kind) {
  switch (kind) {
  case Stmt::StateK:
    return "state ";
  case Stmt::WeightsK:
    return "weights ";
  case Stmt::InputK:
    return "input ";
  case Stmt::OutputK:
    return "output ";
  case Stmt::LetK:
  case Stmt::AssignK:
    return "";
  }
  return "";
}

std::string plural(int64_t n, llvm::StringRef word) {
  return (Twine(n) + " " + word + (n == 1 ? "" : "s")).str();
}

/// The shortest spelling that reads back as `value` ("2.5", "1e+39"), not
/// to_string's "2.500000"; to_chars is also independent of the locale.
std::string formatNumber(double value) {
  // Whole numbers as integers: a size of 100000, not 1e+05.
  if (std::floor(value) == value && std::fabs(value) < 1e15)
    return std::to_string(static_cast<int64_t>(value));
  char buf[32];
  auto result = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, result.ptr);
}

/// The source text of the number literal at `loc`: what the user wrote
/// ("1e39"), which the tree does not keep.
llvm::StringRef numberSpelling(SMLoc loc) {
  const char *start = loc.getPointer(), *end = start;
  while (llvm::isDigit(*end) || *end == '.')
    ++end;
  if (*end == 'e' || *end == 'E') {
    ++end;
    if (*end == '+' || *end == '-')
      ++end;
    while (llvm::isDigit(*end))
      ++end;
  }
  return llvm::StringRef(start, end - start);
}

class ProgramChecker {
public:
  ProgramChecker(Program &program, CheckedProgram &out, DiagnosticEngine &diags,
                 const SemaOptions &options)
      : program(program), out(out), diags(diags), options(options) {}

  void run();

private:
  // Declarations.
  Symbol *declare(Symbol::Kind kind, llvm::StringRef name, SMLoc loc,
                  Type type);
  Symbol *lookup(llvm::StringRef name) {
    auto it = scope.find(name);
    return it == scope.end() ? nullptr : it->second;
  }
  /// Declares the name of a failed declaration with an unknown type, so that
  /// its uses are not reported again (as undeclared, or as never updated).
  void declarePoisoned(Symbol::Kind kind, llvm::StringRef name, SMLoc loc);
  /// Reports a name that is not in scope at `loc`: used before a declaration
  /// further down (with a note), or not declared at all.
  void reportUndeclared(llvm::StringRef name, SMLoc loc, bool isCall);
  /// Numbers of the learned weights declared so far (kMaxLearnedWeights).
  int64_t learnedWeights = 0;
  /// Whether `name` is declared after `loc` in this program.
  bool declaredLater(llvm::StringRef name, SMLoc loc) const {
    auto it = declarations.find(name);
    return it != declarations.end() &&
           it->second.loc.getPointer() > loc.getPointer();
  }
  /// "; did you mean 'x'?" for the closest visible name, or "".
  std::string suggestion(llvm::StringRef name, bool functions);
  void checkParams();
  void checkStmt(Stmt &stmt);
  /// The first `//` that follows code on its line and is followed by
  /// `name`, if any.
  llvm::SMLoc floorDivisionComment(llvm::StringRef name);
  void checkStateDecl(DeclStmt &stmt);
  /// `state z = p`: an initial value that is not a constant, assigned at
  /// the first step. Declares the state when the value fits `type`.
  void checkRuntimeStateInit(DeclItem &item, const Type &type, AxisKind axis);
  void checkWeightsDecl(DeclStmt &stmt);
  void checkInputDecl(DeclStmt &stmt);
  void checkRuleInputDecl(DeclStmt &stmt);
  void checkBind(BindStmt &stmt);
  void checkAssignTarget(DeclItem &target, const Type &valueType,
                         SMLoc valueLoc);

  // Constants and sizes.
  /// The value of a constant expression (numbers, constant parameters), or
  /// nullopt; types the nodes it folds.
  std::optional<double> evalConstant(Expr &expr);
  std::optional<double> foldConstant(Expr &expr);
  /// Whether `expr` is a vector literal of constants (nested ones too).
  bool isConstantList(Expr &expr);
  /// The first element of the vector literal `expr` (nested ones too) that
  /// folds to NaN, or null.
  const Expr *nanInList(Expr &expr);
  std::optional<int64_t> evalSize(Expr &expr, llvm::StringRef what);
  bool checkShape(std::vector<ExprPtr> &dims, unsigned maxRank,
                  llvm::SmallVectorImpl<int64_t> &shape, llvm::StringRef what);
  /// Reports `what` ("number 1e39") when it does not fit the precision.
  bool checkNumberRange(double value, SMLoc loc, const Twine &what);

  // Expressions.
  Type check(Expr &expr, bool allowTuple = false);
  Type checkBinary(BinaryExpr &expr);
  Type checkCall(CallExpr &expr);
  Type checkBuiltin(CallExpr &call, const BuiltinInfo &info);
  Type checkQP(CallExpr &call);
  /// newton_schulz(x[, steps[, a, b, c[, eps]]]): a scalar x and number
  /// literals, recorded in the call.
  Type checkNewtonSchulz(CallExpr &call);
  Type checkWeightsCall(CallExpr &call, const Symbol &weights);
  /// The argument of tensor_sum ... global_min: a scalar that the first pass
  /// can compute.
  Type checkReduction(CallExpr &call, const Type &arg);
  /// What `expr` depends on, through the current values of the names it
  /// reads.
  Dependence dependenceOf(const Expr &expr);
  /// What the current value of `symbol` depends on: its last assignment's,
  /// or what it is before any (a state's buffer, p, g, an input).
  Dependence currentDependence(const Symbol &symbol);
  /// Reports a new value of row or column state `state` that varies along
  /// its rows (columns); `valueLoc` is the value's.
  bool checkStateAxis(const Symbol &state, const Dependence &value,
                      SMLoc valueLoc);
  /// Requires a number (not a comparison, tuple or weights); Unknown passes
  /// through silently (an error was already reported).
  bool requireNumber(const Type &type, SMLoc loc, llvm::StringRef context);
  /// Requires a boolean (a comparison, or 'and', 'or', 'not' of booleans)
  /// as an operand of `op`; Unknown passes through.
  bool requireBoolean(const Type &type, SMLoc loc, llvm::StringRef op);
  std::optional<Type> broadcast(llvm::ArrayRef<const Type *> types,
                                llvm::ArrayRef<SMLoc> locs, SMLoc opLoc,
                                llvm::StringRef action);

  Program &program;
  CheckedProgram &out;
  DiagnosticEngine &diags;
  /// The unknown tensor-wide functions already given a note
  /// (reportUndeclared).
  llvm::StringSet<> notedTensorWide;
  /// The dependence of the current value of each name assigned so far (the
  /// body is straight-line code; a name not in the map depends on nothing).
  llvm::DenseMap<const Symbol *, Dependence> dependences;
  const SemaOptions &options;
  llvm::StringMap<Symbol *> scope;
  /// The state whose runtime initial value is being checked: reading it
  /// there is reported as such, not as an undeclared name.
  llvm::StringRef declaringState;
  /// The targets of the `let` whose value is being checked.
  const std::vector<DeclItem> *declaringLet = nullptr;
  /// The first declaration of every name the body declares, wherever it is.
  struct Declaration {
    SMLoc loc;
    Stmt::Kind kind;
  };
  llvm::StringMap<Declaration> declarations;
};

} // namespace

//===----------------------------------------------------------------------===//
// Declarations
//===----------------------------------------------------------------------===//

Symbol *ProgramChecker::declare(Symbol::Kind kind, llvm::StringRef name,
                                SMLoc loc, Type type) {
  if (Symbol *previous = lookup(name)) {
    if (previous->kind == Symbol::Param || previous->kind == Symbol::Grad ||
        previous->kind == Symbol::Step)
      diags.error(loc, "'" + name +
                           "' is a built-in input of every rule and "
                           "cannot be redeclared");
    else {
      diags.error(loc, "redefinition of '" + name + "'");
      diags.note(previous->loc, "'" + name + "' was first declared here");
    }
    return nullptr;
  }
  auto symbol = std::make_unique<Symbol>();
  symbol->kind = kind;
  symbol->name = name.str();
  symbol->loc = loc;
  symbol->type = std::move(type);
  Symbol *raw = symbol.get();
  out.storage.push_back(std::move(symbol));
  scope[name] = raw;
  return raw;
}

void ProgramChecker::declarePoisoned(Symbol::Kind kind, llvm::StringRef name,
                                     SMLoc loc) {
  // A name already in scope was the cause (a redefinition), or a later
  // failure of the same name: nothing to add.
  if (lookup(name))
    return;
  if (Symbol *symbol = declare(kind, name, loc, Type::unknown()))
    symbol->assigned = true;
}

void ProgramChecker::reportUndeclared(llvm::StringRef name, SMLoc loc,
                                      bool isCall) {
  if (!declaringState.empty() && name == declaringState) {
    diags.error(loc, "the initial value of state '" + name +
                         "' cannot read '" + name +
                         "' itself; it is what the state starts from");
    return;
  }
  if (declaringLet && llvm::any_of(*declaringLet, [&](const DeclItem &item) {
        return item.name == name;
      })) {
    // `let m = 0.9 * m + g`: a momentum written as a let, whose closest
    // name ('p') would be no help.
    diags.error(loc, "'" + name + "' is used in its own definition" +
                         (program.isRule()
                              ? "; a 'let' is computed anew at every step: "
                                "to carry a value from one step to the next, "
                                "declare 'state " +
                                    name + " = 0' and update it with '" + name +
                                    " = ...'"
                              : ""));
    return;
  }
  if (declaredLater(name, loc)) {
    auto it = declarations.find(name);
    diags.error(loc, "use of " + declarationNoun(it->second.kind) + "'" + name +
                         "' before its declaration");
    diags.note(it->second.loc, "'" + name + "' is declared here");
    return;
  }
  if (isCall) {
    // Someone writing LAMB, LARS or global-norm clipping under another
    // name: point at the built-in reductions (once per name and program)
    // rather than at the closest name ('rms': 'abs').
    struct TensorWide {
      llvm::StringRef name, tensor, global;
    };
    static const TensorWide tensorWide[] = {
        {"norm", "tensor_norm(x)", "global_norm(x)"},
        {"l2norm", "tensor_norm(x)", "global_norm(x)"},
        {"norm2", "tensor_norm(x)", "global_norm(x)"},
        {"grad_norm", "tensor_norm(g)", "global_norm(g)"},
        {"clip_grad_norm", "tensor_norm(g)", "global_norm(g)"},
        {"reduce_sum", "tensor_sum(x)", "global_sum(x)"},
        {"reduce_mean", "tensor_mean(x)", "global_mean(x)"},
        {"reduce_max", "tensor_max(x)", "global_max(x)"},
        {"reduce_min", "tensor_min(x)", "global_min(x)"},
        {"amax", "tensor_max(abs(x))", "global_max(abs(x))"},
        {"rms", "sqrt(tensor_mean(x * x))", "sqrt(global_mean(x * x))"},
        {"tensor_rms", "sqrt(tensor_mean(x * x))", "sqrt(global_mean(x * x))"},
        {"global_rms", "sqrt(tensor_mean(x * x))",
         "sqrt(global_mean(x * x))"}};
    const TensorWide *known = nullptr;
    if (program.kind != Program::Layer)
      for (const TensorWide &t : tensorWide)
        if (t.name == name)
          known = &t;
    // NumPy's other tests of a float: 'isfinite', the closest name, is not
    // their meaning.
    if (name == "isnan" || name == "isinf") {
      diags.error(loc, "unknown function '" + name + "'; write " +
                           (name == "isnan"
                                ? "'x != x' (true only for NaN)"
                                : "'not isfinite(x) and x == x'"));
      return;
    }
    // What an author of an MLP optimizer types first.
    static const std::pair<llvm::StringRef, llvm::StringRef> spelled[] = {
        {"relu", "'max(x, 0)'"},
        {"softplus", "'log(1 + exp(x))'"},
        {"leaky_relu", "'max(x, 0.01 * x)'"},
        {"elu", "'select(x > 0, x, exp(x) - 1)'"},
        {"concat", "a vector literal, '[a, b]' (a vector element gives all "
                   "of its components)"},
        {"cat", "a vector literal, '[a, b]'"},
        {"stack", "a vector literal, '[a, b]'"},
        {"vector", "a vector literal, '[a, b]'"},
        {"vec", "a vector literal, '[a, b]'"},
        {"array", "a vector literal, '[a, b]'"},
        {"square", "'x * x'"},
        {"rsqrt", "'1 / sqrt(x)'"}};
    for (const auto &[known, spelling] : spelled)
      if (name == known &&
          (program.isRule() || !spelling.contains("vector literal"))) {
        diags.error(loc, "unknown function '" + name + "'; write " + spelling);
        return;
      }
    if (builtinConstant(name)) {
      diags.error(loc, "'" + name + "' is a constant, not a function");
      return;
    }
    diags.error(loc, "unknown function '" + name + "'" +
                         (known ? "" : suggestion(name, true)));
    if (known && notedTensorWide.insert(name).second)
      diags.note(loc, "a rule is written for one coordinate; to reduce over "
                      "its whole parameter tensor, write " +
                          known->tensor + ", or " + known->global +
                          " over every parameter of the optimizer");
  } else {
    // 'PI', 'Inf', 'infinity': the constants, before names of the body
    // ('p') that are as close.
    llvm::StringRef constant = name.equals_insensitive("pi") ? "pi"
                               : name.equals_insensitive("inf") ||
                                       name.equals_insensitive("infinity")
                                   ? "inf"
                                   : "";
    diags.error(loc, "use of undeclared identifier '" + name + "'" +
                         (constant.empty()
                              ? suggestion(name, false)
                              : ("; did you mean '" + constant + "'?").str()));
  }
}

std::string ProgramChecker::suggestion(llvm::StringRef name, bool functions) {
  llvm::StringRef best;
  unsigned bestDistance = 3;
  auto consider = [&](llvm::StringRef candidate) {
    unsigned d = name.edit_distance(candidate, true, bestDistance);
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  };
  // In declaration order, so that ties go to the first declared name.
  for (const std::unique_ptr<Symbol> &symbol : out.storage)
    if (lookup(symbol->name) == symbol.get() &&
        functions == (symbol->kind == Symbol::Weights))
      consider(symbol->name);
  if (functions)
    for (const BuiltinInfo &b : kBuiltins)
      consider(b.name);
  // As far as the name's own length ('m' -> 'p'): no resemblance, unless
  // only the case differs ('P' -> 'p').
  if (best.empty() ||
      (bestDistance >= name.size() && !name.equals_insensitive(best)))
    return "";
  return ("; did you mean '" + best + "'?").str();
}

bool ProgramChecker::checkNumberRange(double value, SMLoc loc,
                                      const Twine &what) {
  if (options.precision == Precision::F32 && std::isfinite(value) &&
      std::fabs(value) > FLT_MAX) {
    diags.error(loc, what + " is out of range for f32 (largest: about 3.4e38); "
                            "compile with --precision=f64 to use it");
    return false;
  }
  return true;
}

void ProgramChecker::checkParams() {
  for (Param &param : program.params) {
    Symbol::Kind kind = program.isRule() ? Symbol::Hyper : Symbol::LayerParam;
    Symbol *symbol = declare(kind, param.name, param.loc, Type::scalar());
    if (!symbol)
      continue;
    checkNumberRange(param.value, param.valueLoc,
                     "the default value of '" + param.name + "' (" +
                         formatNumber(param.value) + ")");
    symbol->value = param.value;
    symbol->isInteger = param.isInteger;
    // Layer parameters are compile-time values (they size tensors).
    symbol->isConst = param.isConst || kind == Symbol::LayerParam;
    if (kind == Symbol::Hyper) {
      symbol->index = out.hypers.size();
      out.hypers.push_back(symbol);
    } else {
      symbol->index = out.layerParams.size();
      out.layerParams.push_back(symbol);
    }
  }
}

void ProgramChecker::run() {
  out.program = &program;
  if (program.isRule()) {
    out.param = declare(Symbol::Param, "p", program.loc, Type::scalar());
    out.grad = declare(Symbol::Grad, "g", program.loc, Type::scalar());
    out.step = declare(Symbol::Step, "t", program.loc, Type::scalar());
  }
  checkParams();
  // Whether the body declares weights and outputs at all, failed ones
  // included: a failed declaration must not also be reported as missing.
  bool hasWeights = false, hasOutput = false;
  for (StmtPtr &stmt : program.body) {
    hasWeights |= stmt->getKind() == Stmt::WeightsK;
    hasOutput |= stmt->getKind() == Stmt::OutputK;
    if (auto *decl = llvm::dyn_cast<DeclStmt>(stmt.get())) {
      for (DeclItem &item : decl->items)
        declarations.try_emplace(item.name,
                                 Declaration{item.loc, stmt->getKind()});
    } else if (stmt->getKind() != Stmt::AssignK) {
      for (DeclItem &target : llvm::cast<BindStmt>(*stmt).targets)
        declarations.try_emplace(target.name,
                                 Declaration{target.loc, stmt->getKind()});
    }
  }
  for (StmtPtr &stmt : program.body) {
    if (diags.tooManyErrors())
      return;
    checkStmt(*stmt);
  }
  if (program.kind == Program::LearnedRule && !hasWeights)
    diags.error(program.loc, "learned rule '" + program.name +
                                 "' declares no weights; write 'weights name "
                                 "= lstm(in: I, hidden: H)' or 'rule' instead "
                                 "of 'learned rule'");
  if (program.kind == Program::Layer && !hasOutput)
    diags.error(program.loc, "layer '" + program.name +
                                 "' has no output; add 'output z = ...'");
  // Not said after an error either: the failed statement may be the
  // update (`m = 1` before `state m = 0` is an error, and m is updated).
  if (program.isRule() && out.param && !out.param->assigned &&
      !diags.hasErrors())
    diags.warning(program.loc, "rule '" + program.name + "' never updates p");
  for (Symbol *state : out.states)
    if (!state->assigned && !diags.hasErrors())
      diags.warning(state->loc, "state '" + state->name +
                                    "' is never updated; it stays at its "
                                    "initial value");
  // An unused input still has to be supplied with every step (and a NaN in
  // it skips the step under skipNonFinite): most likely a typo.
  if (!diags.hasErrors())
    for (Symbol *input : out.inputs)
      if (!input->used)
        diags.warning(input->loc,
                      "input '" + input->name + "' is never used; every " +
                          (program.isRule() ? "step" : "batch element") +
                          " must still supply it");
  // Most likely a typo, or Python's floor division `a // b`, which is a
  // comment here: say so where the name follows a `//` after code.
  if (program.isRule() && !diags.hasErrors())
    for (Symbol *hyper : out.hypers)
      if (!hyper->used) {
        diags.warning(hyper->loc, "hyperparameter '" + hyper->name +
                                      "' is never used; the rule does not "
                                      "depend on it");
        if (llvm::SMLoc slashes = floorDivisionComment(hyper->name);
            slashes.isValid())
          diags.note(slashes, "'//' starts a comment, which ends the "
                              "expression before it; floor division is "
                              "floor(a / b)");
      }
  // They stay in the signature (a weights file must still give them), but
  // nothing depends on them: optim-train would train them with a zero
  // gradient. Not said after an error, which may be why they look unused.
  for (Symbol *weights : out.weights)
    if (!weights->used && !diags.hasErrors())
      diags.warning(weights->loc, "weights '" + weights->name +
                                      "' are never used; the result does "
                                      "not depend on them");
}

llvm::SMLoc ProgramChecker::floorDivisionComment(llvm::StringRef name) {
  llvm::SourceMgr &sm = diags.getSourceMgr();
  unsigned id = sm.FindBufferContainingLoc(program.loc);
  if (!id || !program.bodyEnd.isValid())
    return {};
  llvm::StringRef text = sm.getMemoryBuffer(id)->getBuffer();
  const size_t begin = program.loc.getPointer() - text.data();
  const size_t end =
      std::min(text.size(), size_t(program.bodyEnd.getPointer() - text.data()));
  auto isIdent = [](char c) {
    return llvm::isAlnum(static_cast<unsigned char>(c)) || c == '_';
  };
  // The program's text, block comments skipped: each `//` that follows
  // code on its line and is followed by `name`.
  bool code = true; // Code seen on this line (the program's name is).
  for (size_t at = begin; at + 1 < end; ++at) {
    char c = text[at];
    if (c == '\n') {
      code = false;
    } else if (c == '/' && text[at + 1] == '*') {
      size_t close = text.find("*/", at + 2);
      if (close == llvm::StringRef::npos || close >= end)
        return {};
      at = close + 1;
    } else if (c == '/' && text[at + 1] == '/') {
      llvm::StringRef after = text.substr(at + 2).ltrim(" \t");
      if (code && after.starts_with(name) &&
          (after.size() == name.size() || !isIdent(after[name.size()])))
        return llvm::SMLoc::getFromPointer(text.data() + at);
      size_t eol = text.find('\n', at);
      if (eol == llvm::StringRef::npos)
        return {};
      at = eol - 1; // The newline is next.
    } else if (c != ' ' && c != '\t' && c != '\r') {
      code = true;
    }
  }
  return {};
}

void ProgramChecker::checkStmt(Stmt &stmt) {
  switch (stmt.getKind()) {
  case Stmt::StateK:
    checkStateDecl(llvm::cast<DeclStmt>(stmt));
    break;
  case Stmt::WeightsK:
    checkWeightsDecl(llvm::cast<DeclStmt>(stmt));
    break;
  case Stmt::InputK:
    checkInputDecl(llvm::cast<DeclStmt>(stmt));
    break;
  case Stmt::LetK:
  case Stmt::OutputK:
  case Stmt::AssignK:
    checkBind(llvm::cast<BindStmt>(stmt));
    break;
  }

  // Every item or target that failed has no symbol: keep one error per
  // mistake.
  if (auto *decl = llvm::dyn_cast<DeclStmt>(&stmt)) {
    Symbol::Kind kind = stmt.getKind() == Stmt::StateK     ? Symbol::State
                        : stmt.getKind() == Stmt::WeightsK ? Symbol::Weights
                                                           : Symbol::Input;
    for (DeclItem &item : decl->items)
      if (!item.symbol)
        declarePoisoned(kind, item.name, item.loc);
    return;
  }
  for (DeclItem &target : llvm::cast<BindStmt>(stmt).targets) {
    if (target.symbol)
      continue;
    if (stmt.getKind() != Stmt::AssignK)
      declarePoisoned(stmt.getKind() == Stmt::LetK ? Symbol::Let
                                                   : Symbol::Output,
                      target.name, target.loc);
    else if (Symbol *symbol = lookup(target.name))
      symbol->assigned = true; // It is updated, just wrongly.
  }
}

std::optional<double> ProgramChecker::evalConstant(Expr &expr) {
  std::optional<double> value = foldConstant(expr);
  // Sizes, initial values and indices are folded, never check()ed: give
  // them their type here, or --emit=ast shows them as <error>.
  if (value)
    expr.type = Type::scalar();
  return value;
}

std::optional<double> ProgramChecker::foldConstant(Expr &expr) {
  if (auto *number = llvm::dyn_cast<NumberExpr>(&expr))
    return number->value;
  if (auto *name = llvm::dyn_cast<NameExpr>(&expr)) {
    Symbol *symbol = lookup(name->name);
    if (symbol && (symbol->kind == Symbol::LayerParam ||
                   (symbol->kind == Symbol::Hyper && symbol->isConst))) {
      // Read at compile time (a size, an index, a state's initial value):
      // a use all the same.
      symbol->used = true;
      return symbol->value;
    }
    if (!symbol)
      return declaredLater(name->name, name->getLoc())
                 ? std::nullopt
                 : builtinConstant(name->name);
    return std::nullopt;
  }
  if (auto *unary = llvm::dyn_cast<UnaryExpr>(&expr)) {
    if (unary->op != TokenKind::Minus) // 'not': a boolean, never a constant.
      return std::nullopt;
    auto v = evalConstant(*unary->operand);
    return v ? std::optional<double>(-*v) : std::nullopt;
  }
  if (auto *binary = llvm::dyn_cast<BinaryExpr>(&expr)) {
    auto l = evalConstant(*binary->lhs), r = evalConstant(*binary->rhs);
    if (!l || !r)
      return std::nullopt;
    switch (binary->op) {
    case TokenKind::Plus:
      return *l + *r;
    case TokenKind::Minus:
      return *l - *r;
    case TokenKind::Star:
      return *l * *r;
    case TokenKind::Slash:
      return *l / *r;
    case TokenKind::StarStar:
      return std::pow(*l, *r);
    default:
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::optional<int64_t> ProgramChecker::evalSize(Expr &expr,
                                                llvm::StringRef what) {
  std::optional<double> value = evalConstant(expr);
  if (!value) {
    diags.error(expr.getLoc(), what + " must be a positive integer: a number "
                                      "or a constant parameter");
    return std::nullopt;
  }
  if (!(*value >= 1 && *value <= kMaxSize) || std::floor(*value) != *value) {
    diags.error(expr.getLoc(), what + " must be an integer between 1 and " +
                                   Twine(kMaxSize) + ", got " +
                                   formatNumber(*value));
    return std::nullopt;
  }
  return static_cast<int64_t>(*value);
}

bool ProgramChecker::checkShape(std::vector<ExprPtr> &dims, unsigned maxRank,
                                llvm::SmallVectorImpl<int64_t> &shape,
                                llvm::StringRef what) {
  if (dims.size() > maxRank) {
    diags.error(dims[maxRank]->getLoc(),
                what + " can have at most " + plural(maxRank, "size") +
                    (maxRank == 1 ? " (a vector)" : " (a matrix)"));
    return false;
  }
  for (ExprPtr &dim : dims) {
    std::optional<int64_t> size = evalSize(*dim, "a size");
    if (!size)
      return false;
    shape.push_back(*size);
  }
  return true;
}

void ProgramChecker::checkStateDecl(DeclStmt &stmt) {
  llvm::StringRef axisWord = stmt.axis == AxisKind::Row   ? "row "
                             : stmt.axis == AxisKind::Col ? "col "
                                                          : "";
  if (!program.isRule()) {
    diags.error(stmt.getLoc(),
                "'" + axisWord + "state' is only allowed in a rule; a layer " +
                    (axisWord.empty()
                         ? "has no per-coordinate state"
                         : "has no parameter tensor with rows and columns"));
    return;
  }
  // The learned kernels (CPU and GPU) keep every state per coordinate.
  if (stmt.axis != AxisKind::None && program.kind == Program::LearnedRule) {
    diags.error(stmt.getLoc(),
                "'" + axisWord +
                    "state' is not supported in learned rules: row and column "
                    "states and reductions compile for update rules ('rule') "
                    "only");
    return;
  }
  for (DeclItem &item : stmt.items) {
    // One number per row (column) in the runtime's buffers (KernelABI.h
    // version 10): no vector layout.
    if (stmt.axis != AxisKind::None && !item.dims.empty()) {
      diags.error(item.dims.front()->getLoc(),
                  axisWord + "state '" + item.name + "' holds one number per " +
                      (stmt.axis == AxisKind::Row ? "row" : "column") +
                      "; it cannot be a vector (write '" + axisWord +
                      "state " + item.name + " = ...')");
      continue;
    }
    llvm::SmallVector<int64_t, 1> shape;
    if (!checkShape(item.dims, 1, shape, "a state"))
      continue;
    std::optional<double> init = evalConstant(*item.init);
    if (!init) {
      // A literal of constants starts at its values at the first step, as
      // any runtime value; a NaN among them is an error as `= 0 / 0` is.
      if (const Expr *nan = nanInList(*item.init)) {
        diags.error(nan->getLoc(), "the initial value of state '" + item.name +
                                       "' is not a number");
        continue;
      }
      checkRuntimeStateInit(item, Type::number(shape), stmt.axis);
      continue;
    }
    if (std::isinf(*init)) {
      // `state lo = -inf`: buffers and manifests hold finite initial
      // values; assign this one at the first step, as a runtime value.
      checkRuntimeStateInit(item, Type::number(shape), stmt.axis);
      continue;
    }
    if (std::isnan(*init)) { // `0 / 0`: no state means to start so.
      diags.error(item.init->getLoc(), "the initial value of state '" +
                                           item.name + "' is not a number");
      continue;
    }
    if (!checkNumberRange(*init, item.init->getLoc(),
                          "the initial value of state '" + item.name + "' (" +
                              formatNumber(*init) + ")"))
      continue;
    Symbol *symbol =
        declare(Symbol::State, item.name, item.loc, Type::number(shape));
    if (!symbol)
      continue;
    symbol->init = *init;
    symbol->axis = stmt.axis;
    symbol->index = out.states.size();
    item.type = symbol->type;
    item.symbol = symbol;
    out.states.push_back(symbol);
  }
}

const Expr *ProgramChecker::nanInList(Expr &expr) {
  auto *list = llvm::dyn_cast<ListExpr>(&expr);
  if (!list)
    return nullptr;
  for (ExprPtr &element : list->elements) {
    if (const Expr *inner = nanInList(*element))
      return inner;
    if (std::optional<double> v = foldConstant(*element); v && std::isnan(*v))
      return element.get();
  }
  return nullptr;
}

bool ProgramChecker::isConstantList(Expr &expr) {
  auto *list = llvm::dyn_cast<ListExpr>(&expr);
  return list && llvm::all_of(list->elements, [&](ExprPtr &e) {
           return isConstantList(*e) || foldConstant(*e).has_value();
         });
}

void ProgramChecker::checkRuntimeStateInit(DeclItem &item, const Type &type,
                                           AxisKind axis) {
  // The state is not in scope in its own initial value; say so rather
  // than "undeclared".
  declaringState = item.name;
  Type initType = check(*item.init);
  declaringState = {};
  if (initType.isUnknown() ||
      !requireNumber(initType, item.init->getLoc(),
                     "the initial value of state '" + item.name + "'"))
    return;
  // As in an assignment: a scalar fills every element of a vector state.
  if (initType != type && !initType.isScalar()) {
    diags.error(item.init->getLoc(),
                "cannot start state '" + item.name + "', which is a " +
                    type.str() + ", from a " + initType.str());
    return;
  }
  Symbol *symbol = declare(Symbol::State, item.name, item.loc, type);
  if (!symbol)
    return;
  // The buffer starts at 0; the declaration is the assignment
  // `z = select(t == 1, value, z)`, so the state counts as updated and
  // depends on what its value depends on (a reduction, learned weights).
  symbol->init = 0.0;
  symbol->initAtFirstStep = true;
  // Except from a literal of constants (`state v[2] = [1, 2]`), which a
  // state never updated keeps for ever, as `state v[2] = 3`.
  symbol->assigned = !isConstantList(*item.init);
  symbol->axis = axis;
  symbol->index = out.states.size();
  item.type = symbol->type;
  item.symbol = symbol;
  out.states.push_back(symbol);
  // select(t == 1, value, buffer): what both depend on.
  Dependence value = dependenceOf(*item.init);
  Dependence current = currentDependence(*symbol);
  if (axis != AxisKind::None &&
      !checkStateAxis(*symbol, value, item.init->getLoc()))
    return;
  current.merge(value);
  dependences[symbol] = current;
}

void ProgramChecker::checkWeightsDecl(DeclStmt &stmt) {
  if (program.kind == Program::Rule) {
    diags.error(stmt.getLoc(), "'weights' are only allowed in a learned rule "
                               "or a layer; write 'learned rule " +
                                   program.name + "'");
    return;
  }
  for (DeclItem &item : stmt.items) {
    if (program.kind == Program::Layer) {
      if (item.init) {
        diags.error(item.init->getLoc(),
                    "weights of a layer are declared with a shape, e.g. "
                    "'weights A[m, n]', not initialized");
        continue;
      }
      llvm::SmallVector<int64_t, 2> shape;
      if (item.dims.empty()) {
        diags.error(item.loc, "weights '" + item.name +
                                  "' need a shape, e.g. 'weights " + item.name +
                                  "[10]'");
        continue;
      }
      if (!checkShape(item.dims, 2, shape, "weights"))
        continue;
      Symbol *symbol =
          declare(Symbol::Weights, item.name, item.loc, Type::number(shape));
      if (!symbol)
        continue;
      symbol->weightsKind = Symbol::Tensor;
      symbol->tensorShape = shape;
      symbol->index = out.weights.size();
      out.weights.push_back(symbol);
      item.symbol = symbol;
      continue;
    }
    // Learned rule: `name = lstm(in: I, hidden: H)` or `linear(in: I, out: O)`.
    if (!item.dims.empty()) {
      diags.error(item.dims.front()->getLoc(),
                  "weights of a learned rule are declared with a constructor, "
                  "e.g. 'weights " +
                      item.name + " = lstm(in: 2, hidden: 20)'");
      continue;
    }
    auto *ctor = llvm::dyn_cast_or_null<CallExpr>(item.init.get());
    if (!ctor) {
      diags.error(item.init ? item.init->getLoc() : item.loc,
                  "expected 'lstm(in: I, hidden: H)' or 'linear(in: I, out: "
                  "O)' as the value of weights '" +
                      item.name + "'");
      continue;
    }
    bool isLSTM = ctor->callee == "lstm";
    if (!isLSTM && ctor->callee != "linear") {
      diags.error(ctor->getLoc(), "unknown kind of weights '" + ctor->callee +
                                      "'; expected 'lstm' or 'linear'");
      continue;
    }
    const char *second = isLSTM ? "hidden" : "out";
    std::optional<int64_t> in, other;
    bool ok = true;
    for (Argument &arg : ctor->args) {
      if (arg.name != "in" && arg.name != second) {
        diags.error(arg.name.empty() ? arg.value->getLoc() : arg.nameLoc,
                    ctor->callee +
                        "(...) takes the named arguments 'in' and '" + second +
                        "'" +
                        (arg.name.empty() ? "" : ", not '" + arg.name + "'"));
        ok = false;
        break;
      }
      std::optional<int64_t> &slot = arg.name == "in" ? in : other;
      if (slot) {
        diags.error(arg.nameLoc, "argument '" + arg.name + "' given twice");
        ok = false;
        break;
      }
      slot = evalSize(*arg.value, "'" + arg.name + "'");
      if (!slot) {
        ok = false;
        break;
      }
    }
    if (!ok)
      continue;
    if (!in || !other) {
      diags.error(ctor->getLoc(),
                  ctor->callee + "(...) needs both 'in' and '" + second + "'");
      continue;
    }
    Type type;
    type.kind = Type::Weights;
    ctor->type = type;
    Symbol *symbol = declare(Symbol::Weights, item.name, item.loc, type);
    if (!symbol)
      continue;
    symbol->weightsKind = isLSTM ? Symbol::LSTM : Symbol::Linear;
    symbol->inSize = *in;
    symbol->outSize = *other;
    if (isLSTM)
      symbol->tensorShape = {4 * *other, *in + *other + 1};
    else
      symbol->tensorShape = {*other, *in + 1};
    // Sizes are at most 65536, so no product overflows.
    int64_t numbers = symbol->tensorShape[0] * symbol->tensorShape[1];
    bool within = learnedWeights <= kMaxLearnedWeights; // Report once.
    learnedWeights += numbers;
    if (learnedWeights > kMaxLearnedWeights && within) {
      diags.error(
          ctor->getLoc(),
          "the learned weights of a rule hold at most " +
              Twine(kMaxLearnedWeights) + " numbers in all; '" + item.name +
              "' is [" + Twine(symbol->tensorShape[0]) + ", " +
              Twine(symbol->tensorShape[1]) + "] (" + Twine(numbers) + ")" +
              (numbers == learnedWeights ? ""
                                         : ", " + Twine(learnedWeights) +
                                               " with the weights before it"));
      symbol->type = Type::unknown(); // Its uses report nothing more.
      continue;
    }
    symbol->index = out.weights.size();
    out.weights.push_back(symbol);
    item.symbol = symbol;
  }
}

void ProgramChecker::checkInputDecl(DeclStmt &stmt) {
  if (program.isRule()) {
    checkRuleInputDecl(stmt);
    return;
  }
  for (DeclItem &item : stmt.items) {
    if (item.init) {
      diags.error(item.init->getLoc(), "an input cannot be initialized");
      continue;
    }
    if (item.dims.empty()) {
      diags.error(item.loc, "input '" + item.name +
                                "' needs a shape, e.g. "
                                "'input " +
                                item.name + "[10]'");
      continue;
    }
    llvm::SmallVector<int64_t, 2> shape;
    if (!checkShape(item.dims, 2, shape, "an input"))
      continue;
    Symbol *symbol =
        declare(Symbol::Input, item.name, item.loc, Type::number(shape));
    if (!symbol)
      continue;
    symbol->index = out.inputs.size();
    out.inputs.push_back(symbol);
    item.symbol = symbol;
  }
}

/// `input h, z` in a rule: per-coordinate streams that the host passes with
/// the gradients (KernelABI.h, version 7), scalars read like g.
void ProgramChecker::checkRuleInputDecl(DeclStmt &stmt) {
  for (DeclItem &item : stmt.items) {
    if (!item.dims.empty()) {
      diags.error(item.dims.front()->getLoc(),
                  "a rule's input is one value per coordinate, like g; write "
                  "'input " +
                      item.name + "'");
      continue;
    }
    if (item.init) {
      diags.error(item.init->getLoc(),
                  "input '" + item.name +
                      "' cannot be initialized: the host passes its value "
                      "for every coordinate at each step");
      continue;
    }
    Symbol *symbol =
        declare(Symbol::Input, item.name, item.loc, Type::scalar());
    if (!symbol)
      continue;
    symbol->index = out.inputs.size();
    out.inputs.push_back(symbol);
    item.type = symbol->type;
    item.symbol = symbol;
  }
}

void ProgramChecker::checkAssignTarget(DeclItem &target, const Type &valueType,
                                       SMLoc valueLoc) {
  Symbol *symbol = lookup(target.name);
  if (!symbol)
    return; // checkBind reported it.
  switch (symbol->kind) {
  case Symbol::Param:
  case Symbol::Grad:
  case Symbol::State:
    break;
  case Symbol::Hyper:
    diags.error(target.loc, "cannot assign to hyperparameter '" + target.name +
                                "'; hyperparameters are read-only in the "
                                "body");
    return;
  case Symbol::LayerParam:
    diags.error(target.loc, "cannot assign to parameter '" + target.name + "'");
    return;
  case Symbol::Step:
    diags.error(target.loc, "cannot assign to the step counter 't'");
    return;
  case Symbol::Weights:
    diags.error(target.loc, "cannot assign to weights '" + target.name +
                                "'; they are learned, not computed");
    return;
  case Symbol::Input:
    diags.error(target.loc, "cannot assign to input '" + target.name +
                                "'; inputs are read only; copy it into a "
                                "state or a let");
    return;
  case Symbol::Let:
  case Symbol::Output:
    diags.error(target.loc,
                "cannot assign to '" + target.name +
                    "', which is bound once by '" +
                    (symbol->kind == Symbol::Let ? "let" : "output") +
                    "'; use a new name, or declare it as state");
    diags.note(symbol->loc, "'" + target.name + "' was bound here");
    return;
  }
  // An error was reported in the value, or in the declaration of the target.
  if (valueType.isUnknown() || symbol->type.isUnknown())
    return;
  // A scalar may be assigned to a vector state: every element gets it.
  if (valueType != symbol->type &&
      !(valueType.isScalar() && symbol->type.isNumber())) {
    diags.error(valueLoc, "cannot assign a " + valueType.str() + " to '" +
                              target.name + "', which is a " +
                              symbol->type.str());
    return;
  }
  symbol->assigned = true;
  target.symbol = symbol;
  target.type = symbol->type;
}

void ProgramChecker::checkBind(BindStmt &stmt) {
  bool isAssign = stmt.getKind() == Stmt::AssignK;
  if (stmt.getKind() == Stmt::OutputK && program.kind != Program::Layer) {
    diags.error(stmt.getLoc(), "'output' is only allowed in a layer; a rule "
                               "updates p instead");
    return;
  }
  if (isAssign && program.kind == Program::Layer) {
    diags.error(stmt.targets.front().loc,
                "a layer has no state to assign to; bind values with 'let' "
                "or 'output'");
    return;
  }

  // An undeclared target is one mistake, however often the value uses it:
  // report it once, here, and declare it so that later statements are quiet.
  if (isAssign) {
    bool ok = true;
    for (DeclItem &target : stmt.targets) {
      if (lookup(target.name))
        continue;
      ok = false;
      auto it = declarations.find(target.name);
      if (it != declarations.end()) {
        diags.error(target.loc, "assignment to " +
                                    declarationNoun(it->second.kind) + "'" +
                                    target.name + "' before its declaration");
        diags.note(it->second.loc, "'" + target.name + "' is declared here");
        continue;
      }
      diags.error(target.loc, "assignment to undeclared name '" + target.name +
                                  "'; declare it first with 'state " +
                                  target.name +
                                  " = 0', or bind a new value with 'let " +
                                  target.name + " = ...'");
      declarePoisoned(Symbol::State, target.name, target.loc);
    }
    if (!ok)
      return;
    // `h, h = cell(...)` would keep only the last value: a typo, not a
    // program.
    for (size_t i = 1; i < stmt.targets.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (stmt.targets[i].name == stmt.targets[j].name) {
          diags.error(stmt.targets[i].loc,
                      "'" + stmt.targets[i].name +
                          "' is assigned twice in one statement; each "
                          "target receives one of the values");
          diags.note(stmt.targets[j].loc, "first assigned here");
          return;
        }
  }

  if (!isAssign)
    declaringLet = &stmt.targets;
  Type valueType = check(*stmt.value, /*allowTuple=*/true);
  declaringLet = nullptr;
  if (valueType.isUnknown())
    return; // Reported; how many values it has is unknown.

  // Compound assignment: `p -= e` is `p = p - e`.
  if (isAssign && stmt.op != TokenKind::Equal && !valueType.isUnknown()) {
    Symbol *target = lookup(stmt.targets.front().name);
    if (target && target->type.isNumber()) {
      if (!requireNumber(valueType, stmt.value->getLoc(), "an update"))
        return;
      static const char *actions[] = {"add", "subtract", "multiply", "divide"};
      unsigned which = stmt.op == TokenKind::PlusEqual    ? 0
                       : stmt.op == TokenKind::MinusEqual ? 1
                       : stmt.op == TokenKind::StarEqual  ? 2
                                                          : 3;
      const Type *types[] = {&target->type, &valueType};
      SMLoc locs[] = {stmt.targets.front().loc, stmt.value->getLoc()};
      std::optional<Type> result =
          broadcast(types, locs, stmt.opLoc, actions[which]);
      if (!result)
        return;
      valueType = *result;
    }
  }

  // Destructuring.
  std::vector<Type> values;
  if (valueType.kind == Type::Tuple) {
    bool isQP = false;
    if (auto *call = llvm::dyn_cast<CallExpr>(stmt.value.get()))
      isQP = call->builtin == Builtin::QP;
    if (stmt.targets.size() == 1 && isQP) {
      values.push_back(valueType.elements.front()); // The primal solution.
    } else if (stmt.targets.size() != valueType.elements.size()) {
      diags.error(stmt.opLoc, "the right-hand side gives " +
                                  plural(valueType.elements.size(), "value") +
                                  " but there " +
                                  (stmt.targets.size() == 1 ? "is " : "are ") +
                                  plural(stmt.targets.size(), "target"));
      return;
    } else {
      values = valueType.elements;
      // The targets take z, nu, lam by position: a target named after
      // another of them (`lam, z, nu = qp(...)`) is most likely a mix-up.
      static const char *kResults[3] = {"z", "nu", "lam"};
      for (size_t i = 0; isQP && i < stmt.targets.size() && i < 3; ++i)
        for (size_t j = 0; j < 3; ++j)
          if (j != i && stmt.targets[i].name == kResults[j]) {
            diags.warning(stmt.targets[i].loc,
                          "'" + stmt.targets[i].name + "' receives the qp's " +
                              kResults[i] + ", not its " + kResults[j] +
                              ": the targets take z, nu, lam in this order");
            break;
          }
    }
  } else {
    if (stmt.targets.size() != 1) {
      diags.error(stmt.opLoc, "the right-hand side gives one value but there "
                              "are " +
                                  plural(stmt.targets.size(), "target"));
      return;
    }
    // 'let' may name a condition (`let even = mod(t, 2) == 0`); a state,
    // p, g and layer outputs hold numbers.
    bool namesCondition =
        stmt.getKind() == Stmt::LetK && valueType.kind == Type::Bool;
    if (!valueType.isUnknown() && !namesCondition &&
        !requireNumber(valueType, stmt.value->getLoc(),
                       isAssign ? "the value of an assignment" : "a value"))
      return;
    values.push_back(valueType);
  }

  // Each target's new value depends on what the value does, and, for a
  // compound assignment, on what the target did.
  Dependence dependence;
  if (program.isRule())
    dependence = dependenceOf(*stmt.value);
  for (auto [target, type] : llvm::zip(stmt.targets, values)) {
    if (isAssign) {
      checkAssignTarget(target, type, stmt.value->getLoc());
      if (target.symbol) {
        const Symbol &symbol = *target.symbol;
        Dependence next = dependence;
        if (stmt.op != TokenKind::Equal) {
          next = currentDependence(symbol);
          next.merge(dependence);
        }
        // A refused value leaves the state as it was: later reads are not
        // reported again.
        if (symbol.axis != AxisKind::None &&
            !checkStateAxis(symbol, next, stmt.value->getLoc()))
          continue;
        dependences[&symbol] = next;
      }
      continue;
    }
    bool isOutput = stmt.getKind() == Stmt::OutputK;
    if (isOutput && !type.isUnknown() && type.rank() == 0) {
      diags.error(stmt.value->getLoc(),
                  "a layer output must be a vector or a matrix, got a " +
                      type.str());
      continue;
    }
    Symbol *symbol = declare(isOutput ? Symbol::Output : Symbol::Let,
                             target.name, target.loc, type);
    if (!symbol)
      continue;
    target.symbol = symbol;
    target.type = type;
    dependences[symbol] = dependence;
    if (isOutput) {
      symbol->index = out.outputs.size();
      out.outputs.push_back(symbol);
    }
  }
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

bool ProgramChecker::requireNumber(const Type &type, SMLoc loc,
                                   llvm::StringRef context) {
  switch (type.kind) {
  case Type::Unknown:
  case Type::Number:
    return true;
  case Type::Bool:
    diags.error(loc, "a boolean (a comparison, 'and', 'or', 'not') cannot be "
                     "used as " +
                         context +
                         "; it is a condition: turn it into a number with "
                         "select(c, 1, 0)");
    return false;
  case Type::Tuple:
    // Only LSTM cells (h, c) and qp (z, nu, lam) return several values.
    diags.error(loc, "this call returns " +
                         plural(type.elements.size(), "value") +
                         "; bind them first, e.g. " +
                         (type.elements.size() == 3
                              ? "'z, nu, lam = qp(...)'"
                              : "'h, c = cell(x, h, c)'"));
    return false;
  case Type::Weights:
    diags.error(loc, "weights can only be called, e.g. 'head(h2)'");
    return false;
  }
  return false;
}

bool ProgramChecker::requireBoolean(const Type &type, SMLoc loc,
                                    llvm::StringRef op) {
  if (type.kind == Type::Bool || type.isUnknown())
    return true;
  if (type.kind == Type::Number) {
    diags.error(loc, "an operand of " + op + " must be a boolean (a "
                     "comparison such as 'g > 0'), not a " +
                         type.str());
    return false;
  }
  return requireNumber(type, loc, ("an operand of " + op).str());
}

std::optional<Type>
ProgramChecker::broadcast(llvm::ArrayRef<const Type *> types,
                          llvm::ArrayRef<SMLoc> locs, SMLoc opLoc,
                          llvm::StringRef action) {
  const Type *widest = nullptr;
  for (const Type *t : types) {
    if (t->isUnknown())
      return std::nullopt;
    if (t->rank() == 0)
      continue;
    if (!widest) {
      widest = t;
    } else if (widest->shape != t->shape) {
      std::string list;
      for (const Type *u : types)
        list += (list.empty() ? "" : " and ") + u->str();
      diags.error(opLoc, "cannot " + action + " " + list +
                             ": sizes differ (only a scalar combines with a "
                             "vector or a matrix)");
      return std::nullopt;
    }
  }
  return Type::number(widest ? llvm::ArrayRef<int64_t>(widest->shape)
                             : llvm::ArrayRef<int64_t>());
}

Type ProgramChecker::check(Expr &expr, bool allowTuple) {
  Type type;
  switch (expr.getKind()) {
  case Expr::NumberK: {
    auto &number = llvm::cast<NumberExpr>(expr);
    if (checkNumberRange(number.value, number.getLoc(),
                         "number " + numberSpelling(number.getLoc())))
      type = Type::scalar();
    break;
  }
  case Expr::NameK: {
    auto &name = llvm::cast<NameExpr>(expr);
    Symbol *symbol = lookup(name.name);
    if (symbol)
      symbol->used = true;
    if (!symbol) {
      // A later `let pi = ...` makes this a use before the declaration,
      // not the built-in constant: one name, one meaning in a body.
      if (std::optional<double> value =
              declaredLater(name.name, name.getLoc())
                  ? std::nullopt
                  : builtinConstant(name.name)) {
        name.builtinValue = *value;
        type = Type::scalar();
        break;
      }
      if (const BuiltinInfo *info = lookupBuiltin(name.name))
        diags.error(name.getLoc(), "'" + name.name +
                                       "' is a function; call it, e.g. '" +
                                       name.name +
                                       (info->maxArgs == 0 ? "()'" : "(...)'"));
      else if (program.kind == Program::Layer &&
               (name.name == "p" || name.name == "g" || name.name == "t"))
        diags.error(name.getLoc(), "'" + name.name +
                                       "' exists only in rules; a layer "
                                       "reads its inputs");
      else
        reportUndeclared(name.name, name.getLoc(), /*isCall=*/false);
      break;
    }
    if (symbol->kind == Symbol::Weights &&
        symbol->weightsKind != Symbol::Tensor) {
      diags.error(name.getLoc(),
                  "weights '" + name.name + "' can only be called, e.g. '" +
                      (symbol->weightsKind == Symbol::LSTM
                           ? name.name + "(x, h, c)', which returns h and c"
                           : name.name + "(x)'"));
      break;
    }
    name.symbol = symbol;
    type = symbol->type;
    break;
  }
  case Expr::UnaryK: {
    auto &unary = llvm::cast<UnaryExpr>(expr);
    Type operand = check(*unary.operand);
    if (unary.op == TokenKind::KwNot) {
      if (requireBoolean(operand, unary.operand->getLoc(), "'not'"))
        type = operand;
    } else if (requireNumber(operand, unary.operand->getLoc(),
                             "an operand of '-'")) {
      type = operand;
    }
    break;
  }
  case Expr::BinaryK:
    type = checkBinary(llvm::cast<BinaryExpr>(expr));
    break;
  case Expr::CallK:
    type = checkCall(llvm::cast<CallExpr>(expr));
    break;
  case Expr::IndexK: {
    auto &index = llvm::cast<IndexExpr>(expr);
    Type base = check(*index.base);
    if (!requireNumber(base, index.base->getLoc(), "an indexed value") ||
        base.isUnknown())
      break;
    if (base.rank() != 1) {
      diags.error(index.getLoc(),
                  "only a vector can be indexed, not a " + base.str());
      break;
    }
    std::optional<double> position = evalConstant(*index.index);
    if (!position || std::floor(*position) != *position) {
      diags.error(index.index->getLoc(), "an index must be a constant integer");
      break;
    }
    if (*position < 0 || *position >= base.shape[0]) {
      // Not through int64_t: the constant may be far outside its range.
      diags.error(index.index->getLoc(), "index " + formatNumber(*position) +
                                             " is out of range for a " +
                                             base.str() +
                                             " (indices start at 0)");
      break;
    }
    index.position = static_cast<int64_t>(*position);
    type = Type::scalar();
    break;
  }
  case Expr::ListK: {
    auto &list = llvm::cast<ListExpr>(expr);
    bool ok = true;
    int64_t size = 0;
    for (ExprPtr &element : list.elements) {
      Type t = check(*element);
      if (!requireNumber(t, element->getLoc(),
                         "an element of a vector literal") ||
          t.isUnknown()) {
        ok = false;
        continue;
      }
      if (t.rank() > 1) {
        diags.error(element->getLoc(),
                    "an element of a vector literal is a scalar or a "
                    "vector, not a " +
                        t.str());
        ok = false;
        continue;
      }
      size += t.rank() == 0 ? 1 : t.shape[0];
    }
    if (!ok)
      break;
    if (!program.isRule()) {
      // Layers' vectors are tensors, which the layer's lowering and reverse
      // mode build from inputs, weights and arithmetic only.
      diags.error(list.getLoc(), "vector literals '[...]' are only available "
                                 "in rules");
      break;
    }
    if (size > kMaxSize) {
      diags.error(list.getLoc(), "a vector literal has at most " +
                                     Twine(kMaxSize) + " elements, got " +
                                     Twine(size));
      break;
    }
    type = Type::number({size});
    break;
  }
  }
  if (type.kind == Type::Tuple && !allowTuple) {
    requireNumber(type, expr.getLoc(), "a value");
    type = Type::unknown();
  }
  expr.type = type;
  return type;
}

Type ProgramChecker::checkBinary(BinaryExpr &expr) {
  Type lhs = check(*expr.lhs), rhs = check(*expr.rhs);
  if (expr.op == TokenKind::KwAnd || expr.op == TokenKind::KwOr) {
    std::string what = spell(expr.op).str();
    if (!requireBoolean(lhs, expr.lhs->getLoc(), what) ||
        !requireBoolean(rhs, expr.rhs->getLoc(), what) || lhs.isUnknown() ||
        rhs.isUnknown())
      return Type::unknown();
    Type l = Type::number(lhs.shape), r = Type::number(rhs.shape);
    const Type *types[] = {&l, &r};
    SMLoc locs[] = {expr.lhs->getLoc(), expr.rhs->getLoc()};
    std::optional<Type> result = broadcast(
        types, locs, expr.getLoc(), "combine with " + spell(expr.op).str());
    if (!result)
      return Type::unknown();
    return Type::boolean(result->shape);
  }
  std::string context =
      ("an operand of '" + spell(expr.op).trim('\'') + "'").str();
  if (!requireNumber(lhs, expr.lhs->getLoc(), context) ||
      !requireNumber(rhs, expr.rhs->getLoc(), context) || lhs.isUnknown() ||
      rhs.isUnknown())
    return Type::unknown();

  if (expr.op == TokenKind::At) {
    if (lhs.rank() != 2 || rhs.rank() < 1 || rhs.rank() > 2 ||
        lhs.shape[1] != rhs.shape[0]) {
      diags.error(expr.getLoc(),
                  "'@' multiplies an m x n matrix by a vector of size n or by "
                  "an n x k matrix; got " +
                      lhs.str() + " @ " + rhs.str());
      return Type::unknown();
    }
    if (rhs.rank() == 2)
      return Type::number({lhs.shape[0], rhs.shape[1]});
    return Type::number({lhs.shape[0]});
  }

  llvm::StringRef action;
  bool comparison = false;
  switch (expr.op) {
  case TokenKind::Plus:
    action = "add";
    break;
  case TokenKind::Minus:
    action = "subtract";
    break;
  case TokenKind::Star:
    action = "multiply";
    break;
  case TokenKind::Slash:
    action = "divide";
    break;
  case TokenKind::StarStar:
    action = "raise";
    break;
  default:
    action = "compare";
    comparison = true;
    break;
  }
  const Type *types[] = {&lhs, &rhs};
  SMLoc locs[] = {expr.lhs->getLoc(), expr.rhs->getLoc()};
  std::optional<Type> result = broadcast(types, locs, expr.getLoc(), action);
  if (!result)
    return Type::unknown();
  if (comparison)
    return Type::boolean(result->shape);
  return *result;
}

Type ProgramChecker::checkCall(CallExpr &call) {
  if (Symbol *symbol = lookup(call.callee)) {
    symbol->used = true;
    if (symbol->type.isUnknown()) // Its declaration failed.
      return Type::unknown();
    if (symbol->kind == Symbol::Weights &&
        symbol->weightsKind != Symbol::Tensor) {
      call.weights = symbol;
      return checkWeightsCall(call, *symbol);
    }
    diags.error(call.getLoc(), "'" + call.callee + "' is a " +
                                   symbol->type.str() +
                                   ", not a function; only built-in functions "
                                   "and learned weights can be called");
    return Type::unknown();
  }
  const BuiltinInfo *info = lookupBuiltin(call.callee);
  if (!info) {
    if (call.callee == "lstm" || call.callee == "linear")
      diags.error(call.getLoc(),
                  "'" + call.callee +
                      "(...)' declares weights; use it as 'weights name = " +
                      call.callee + "(...)' in a learned rule");
    else
      reportUndeclared(call.callee, call.getLoc(), /*isCall=*/true);
    return Type::unknown();
  }
  call.builtin = info->id;
  AxisKind axis = reductionAxis(info->id);
  if (info->where == BuiltinInfo::RulesOnly && !program.isRule()) {
    diags.error(call.getLoc(),
                "'" + call.callee + "' is only available in rules" +
                    (axis == AxisKind::Row ? "; it reduces a value along the "
                                             "rows of parameter tensors"
                     : axis == AxisKind::Col
                         ? "; it reduces a value along the columns of "
                           "parameter tensors"
                     : isReduction(info->id)
                         ? "; it reduces a value over the coordinates of "
                           "parameter tensors"
                     : info->id == Builtin::NewtonSchulz
                         ? "; it is a function of each matrix of a parameter "
                           "tensor"
                     : isShapeValue(info->id)
                         ? std::string("; it is the number of ") +
                               (info->id == Builtin::Rows ? "rows"
                                                          : "columns") +
                               " of a parameter tensor's matrices"
                         : ""));
    return Type::unknown();
  }
  // The learned kernels have no matrix buffers nor shape values, as they
  // have no row and column states.
  if (program.kind == Program::LearnedRule &&
      (axis != AxisKind::None || info->id == Builtin::NewtonSchulz ||
       isShapeValue(info->id))) {
    diags.error(call.getLoc(),
                "'" + call.callee + "' is not supported in learned rules: " +
                    (axis != AxisKind::None
                         ? "row and column states and reductions"
                     : info->id == Builtin::NewtonSchulz
                         ? "matrix functions"
                         : "rows() and cols()") +
                    " compile for update rules ('rule') only");
    return Type::unknown();
  }
  if (info->where == BuiltinInfo::LayersOnly && program.isRule()) {
    diags.error(call.getLoc(),
                "'" + call.callee + "' is only available in layers" +
                    (info->id == Builtin::Zeros || info->id == Builtin::Ones
                         ? "; in a rule, write the number"
                         : ""));
    return Type::unknown();
  }
  if (info->id == Builtin::QP)
    return checkQP(call);
  if (info->maxArgs == 0 && !call.args.empty()) {
    diags.error(call.getLoc(), "'" + call.callee + "' takes no arguments");
    return Type::unknown();
  }
  for (Argument &arg : call.args)
    if (!arg.name.empty()) {
      diags.error(arg.nameLoc,
                  "'" + call.callee + "' takes no named arguments");
      return Type::unknown();
    }
  int n = call.args.size();
  // The Newton-Schulz parameters come in groups: the steps, then the three
  // coefficients together, then eps.
  if (info->id == Builtin::NewtonSchulz && n != 1 && n != 2 && n != 5 &&
      n != 6) {
    diags.error(call.getLoc(),
                "'newton_schulz' expects 1, 2, 5 or 6 arguments (x, then "
                "optionally steps, then the coefficients a, b, c together, "
                "then eps), got " +
                    Twine(n));
    return Type::unknown();
  }
  if (n < info->minArgs || n > info->maxArgs) {
    std::string expected = info->minArgs == info->maxArgs
                               ? plural(info->minArgs, "argument")
                               : (Twine(info->minArgs) + " or " +
                                  Twine(info->maxArgs) + " arguments")
                                     .str();
    diags.error(call.getLoc(), "'" + call.callee + "' expects " + expected +
                                   ", got " + Twine(n));
    return Type::unknown();
  }
  return checkBuiltin(call, *info);
}

Type ProgramChecker::checkBuiltin(CallExpr &call, const BuiltinInfo &info) {
  // Shapes of constructors are constants, not values.
  if (info.id == Builtin::Eye || info.id == Builtin::Zeros ||
      info.id == Builtin::Ones) {
    llvm::SmallVector<int64_t, 2> shape;
    for (Argument &arg : call.args) {
      std::optional<int64_t> size = evalSize(*arg.value, "a size");
      if (!size)
        return Type::unknown();
      shape.push_back(*size);
    }
    if (info.id == Builtin::Eye)
      return Type::number({shape[0], shape[0]});
    return Type::number(shape);
  }
  if (info.id == Builtin::NewtonSchulz)
    return checkNewtonSchulz(call);

  std::vector<Type> args;
  bool ok = true;
  for (auto [i, arg] : llvm::enumerate(call.args)) {
    args.push_back(check(*arg.value));
    bool isCondition = info.id == Builtin::Select && i == 0;
    if (!isCondition && !requireNumber(args.back(), arg.value->getLoc(),
                                       "an argument of '" + call.callee + "'"))
      ok = false;
    if (args.back().isUnknown())
      ok = false;
  }
  if (!ok)
    return Type::unknown();

  auto argLocs = [&]() {
    llvm::SmallVector<SMLoc, 3> locs;
    for (Argument &arg : call.args)
      locs.push_back(arg.value->getLoc());
    return locs;
  };

  switch (info.id) {
  case Builtin::Select: {
    if (args[0].kind != Type::Bool) {
      diags.error(call.args[0].value->getLoc(),
                  "the condition of select() must be a boolean (a "
                  "comparison, or 'and', 'or', 'not' of them), not a " +
                      args[0].str() + ", e.g. 'select(g > 0, a, b)'");
      return Type::unknown();
    }
    Type cond = Type::number(args[0].shape);
    const Type *types[] = {&cond, &args[1], &args[2]};
    return broadcast(types, argLocs(), call.getLoc(), "select between")
        .value_or(Type::unknown());
  }
  case Builtin::Max:
  case Builtin::Min:
  case Builtin::Pow:
  case Builtin::Mod:
  case Builtin::Atan2:
  case Builtin::Clamp: {
    llvm::SmallVector<const Type *, 3> types;
    for (Type &t : args)
      types.push_back(&t);
    return broadcast(types, argLocs(), call.getLoc(),
                     "apply '" + call.callee + "' to")
        .value_or(Type::unknown());
  }
  case Builtin::Sum:
  case Builtin::Mean:
    if (args[0].rank() != 1) {
      // sum(g) is most likely meant over the tensor.
      bool isSum = info.id == Builtin::Sum;
      diags.error(call.args[0].value->getLoc(),
                  "'" + call.callee + "' expects a vector, got a " +
                      args[0].str() +
                      (args[0].isScalar()
                           ? (isSum ? "; to sum over the whole tensor, write "
                                      "tensor_sum(x) (or global_sum(x) over "
                                      "every parameter)"
                                    : "; to average over the whole tensor, "
                                      "write tensor_mean(x) (or "
                                      "global_mean(x) over every parameter)")
                           : ""));
      return Type::unknown();
    }
    return Type::scalar();
  case Builtin::Dot:
    if (args[0].rank() != 1 || args[0] != args[1]) {
      diags.error(call.getLoc(), "'dot' expects two vectors of the same size, "
                                 "got " +
                                     args[0].str() + " and " + args[1].str());
      return Type::unknown();
    }
    return Type::scalar();
  case Builtin::LogSign:
    if (!args[0].isScalar() || !args[1].isScalar()) {
      diags.error(call.getLoc(), "'log_sign' expects two scalars (g, k), got " +
                                     args[0].str() + " and " + args[1].str());
      return Type::unknown();
    }
    // k scales log|g| and sets the threshold e^-k: a constant one must be
    // positive (a runtime k is the caller's to choose).
    if (std::optional<double> k = foldConstant(*call.args[1].value);
        k && !(*k > 0)) {
      diags.error(call.args[1].value->getLoc(),
                  "'log_sign' needs k > 0 (it divides log|g| by k and "
                  "switches at |g| = e^-k), got " +
                      formatNumber(*k));
      return Type::unknown();
    }
    return Type::number({2});
  case Builtin::IsFinite:
    return Type::boolean(args[0].shape);
  case Builtin::Diag:
    if (args[0].rank() != 1) {
      diags.error(call.args[0].value->getLoc(),
                  "'diag' expects a vector, got a " + args[0].str());
      return Type::unknown();
    }
    return Type::number({args[0].shape[0], args[0].shape[0]});
  case Builtin::VStack: {
    const Type &first = args[0];
    if (first.rank() < 1) {
      diags.error(call.args[0].value->getLoc(),
                  "'vstack' stacks vectors or matrices, got a " + first.str());
      return Type::unknown();
    }
    int64_t rows = 0;
    for (auto [i, t] : llvm::enumerate(args)) {
      if (t.rank() != first.rank() ||
          (first.rank() == 2 && t.shape[1] != first.shape[1])) {
        diags.error(call.args[i].value->getLoc(),
                    "'vstack' stacks vectors, or matrices with the same "
                    "number of columns; got a " +
                        first.str() + " and a " + t.str());
        return Type::unknown();
      }
      rows += t.shape[0];
    }
    if (first.rank() == 2)
      return Type::number({rows, first.shape[1]});
    return Type::number({rows});
  }
  case Builtin::Transpose:
    if (args[0].rank() != 2) {
      diags.error(call.args[0].value->getLoc(),
                  "'transpose' expects a matrix, got a " + args[0].str());
      return Type::unknown();
    }
    return Type::number({args[0].shape[1], args[0].shape[0]});
  case Builtin::Rand:
  case Builtin::Randn:
  case Builtin::Rows:
  case Builtin::Cols:
    return Type::scalar();
  default:
    if (isReduction(info.id))
      return checkReduction(call, args[0]);
    return args[0]; // Elementwise functions of one argument.
  }
}

Type ProgramChecker::checkReduction(CallExpr &call, const Type &arg) {
  const Expr &value = *call.args[0].value;
  if (!arg.isScalar()) {
    // tensor_norm(dot(v, v)) would be the norm of the squared norms: the
    // norm over every component is the root of a sum.
    std::string message = "'" + call.callee +
                          "' reduces a scalar (one per coordinate), got a " +
                          arg.str() + "; reduce the vector first, e.g. '" +
                          call.callee + "(sum(v))'";
    llvm::StringRef callee = call.callee;
    if (callee.ends_with("_norm"))
      message += ", or 'sqrt(" + callee.drop_back(4).str() +
                 "sum(dot(v, v)))' for the norm over every component";
    diags.error(value.getLoc(), message);
    return Type::unknown();
  }
  // The step computes the reductions in passes over memory before the rule
  // runs: one pass per level of nesting (a reduction of a value computed
  // from another reduction's result runs a pass later), but none of them
  // runs the learned network.
  Dependence dependence = dependenceOf(value);
  if (dependence.learned) {
    diags.error(call.getLoc(),
                "the argument of '" + call.callee +
                    "' depends on learned weights '" +
                    dependence.learned->callee +
                    "'; reductions are computed in a first pass over memory "
                    "that does not run the learned network");
    diags.note(dependence.learned->getLoc(),
               "'" + dependence.learned->callee + "' is called here");
    return Type::unknown();
  }
  return Type::scalar();
}

/// The value of a number literal, optionally negated (`5`, `-4.775`), or
/// nullopt: what a parameter fixed at compile time may be written as.
static std::optional<double> literalNumber(const Expr &expr) {
  if (auto *number = llvm::dyn_cast<NumberExpr>(&expr))
    return number->value;
  if (auto *unary = llvm::dyn_cast<UnaryExpr>(&expr))
    if (unary->op == TokenKind::Minus)
      if (auto *number = llvm::dyn_cast<NumberExpr>(unary->operand.get()))
        return -number->value;
  return std::nullopt;
}

/// What the user wrote for a literal of literalNumber ("-1e-400", which
/// reads as -0).
static std::string literalSpelling(const Expr &expr) {
  if (auto *unary = llvm::dyn_cast<UnaryExpr>(&expr))
    return "-" + numberSpelling(unary->operand->getLoc()).str();
  return numberSpelling(expr.getLoc()).str();
}

Type ProgramChecker::checkNewtonSchulz(CallExpr &call) {
  bool ok = true;
  const Expr &x = *call.args[0].value;
  Type xType = check(*call.args[0].value);
  if (!requireNumber(xType, x.getLoc(), "an argument of 'newton_schulz'") ||
      xType.isUnknown()) {
    ok = false;
  } else if (!xType.isScalar()) {
    // The matrix is the parameter's: one x per coordinate.
    diags.error(x.getLoc(), "'newton_schulz' takes one scalar per "
                            "coordinate (the matrices are the parameter's), "
                            "got a " +
                                xType.str());
    ok = false;
  }
  // The runtime runs the iteration with these numbers (the manifest and
  // the descriptor record them): no expression, no hyperparameter.
  static const char *const names[] = {"steps", "a", "b", "c", "eps"};
  double values[5] = {double(call.nsSteps), call.nsCoefficients[0],
                      call.nsCoefficients[1], call.nsCoefficients[2],
                      call.nsEps};
  for (size_t i = 1; i < call.args.size(); ++i) {
    Expr &arg = *call.args[i].value;
    llvm::StringRef name = names[i - 1];
    std::optional<double> value = literalNumber(arg);
    if (!value) {
      diags.error(arg.getLoc(),
                  "argument '" + name +
                      "' of 'newton_schulz' must be a number (a literal, "
                      "optionally negated): the iteration's parameters are "
                      "fixed when the rule compiles");
      ok = false;
      continue;
    }
    // Types the literal and checks it fits the precision.
    if (check(arg).isUnknown()) {
      ok = false;
      continue;
    }
    if (name == "steps" &&
        (!(*value >= 0 && *value <= 100) || std::floor(*value) != *value)) {
      diags.error(arg.getLoc(), "argument 'steps' of 'newton_schulz' must be "
                                "an integer between 0 and 100, got " +
                                    literalSpelling(arg));
      ok = false;
      continue;
    }
    if (name == "eps") {
      if (!(*value > 0)) {
        diags.error(arg.getLoc(),
                    "argument 'eps' of 'newton_schulz' must be positive (the "
                    "matrix is divided by max(norm, eps)), got " +
                        literalSpelling(arg));
        ok = false;
        continue;
      }
      // The runtime takes max(norm, eps) in the element type.
      if (options.precision == Precision::F32 && float(*value) == 0.0f) {
        diags.error(arg.getLoc(),
                    "argument 'eps' of 'newton_schulz' (" +
                        literalSpelling(arg) +
                        ") rounds to 0 in f32 (smallest: about 1.4e-45); "
                        "compile with --precision=f64 to use it");
        ok = false;
        continue;
      }
    }
    values[i - 1] = *value;
  }
  if (!ok)
    return Type::unknown();
  call.nsSteps = static_cast<int32_t>(values[0]);
  for (int k = 0; k < 3; ++k)
    call.nsCoefficients[k] = values[k + 1];
  call.nsEps = values[4];
  return Type::scalar();
}

Dependence ProgramChecker::currentDependence(const Symbol &symbol) {
  auto it = dependences.find(&symbol);
  if (it != dependences.end())
    return it->second;
  Dependence result;
  switch (symbol.kind) {
  case Symbol::Param:
  case Symbol::Grad:
  case Symbol::Input:
    result.axis = ValueAxis::Coordinate;
    break;
  case Symbol::State:
    // Before its first assignment: the buffer, as the last step left it.
    result.axis = symbol.axis == AxisKind::Row   ? ValueAxis::Row
                  : symbol.axis == AxisKind::Col ? ValueAxis::Col
                                                 : ValueAxis::Coordinate;
    break;
  default: // t, hyperparameters, weights: shared by every coordinate.
    break;
  }
  result.setWitness("'" + symbol.name + "'", symbol.loc, result.axis);
  return result;
}

bool ProgramChecker::checkStateAxis(const Symbol &state,
                                    const Dependence &value, SMLoc valueLoc) {
  bool row = state.axis == AxisKind::Row;
  ValueAxis allowed = row ? ValueAxis::Row : ValueAxis::Col;
  if (joinAxes(value.axis, allowed) == allowed)
    return true;
  llvm::StringRef along = row ? "row" : "column";
  // Set whenever the value varies along the row (column): see merge().
  const Witness &witness = row ? value.alongRow : value.alongCol;
  std::string what = witness.empty() ? "a per-coordinate value" : witness.text;
  if (witness.axis == ValueAxis::Row)
    what += ", one value per row,";
  else if (witness.axis == ValueAxis::Col)
    what += ", one value per column,";
  else
    what += ",";
  // The caret under what makes it vary (always read by the value itself:
  // a refused assignment leaves the state as it was).
  SMLoc loc = witness.loc.isValid() ? witness.loc : valueLoc;
  diags.error(loc, Twine(row ? "row" : "col") + " state '" + state.name +
                            "' holds one value per " + along +
                            ", but this value depends on " + what +
                            " which varies along the " + along +
                            "; reduce it with a " + along +
                            " reduction such as " +
                            (row ? "row_mean" : "col_mean") + "(...)");
  return false;
}

Dependence ProgramChecker::dependenceOf(const Expr &expr) {
  Dependence result;
  switch (expr.getKind()) {
  case Expr::NumberK:
    break;
  case Expr::NameK:
    if (const Symbol *symbol = llvm::cast<NameExpr>(expr).symbol) {
      result = currentDependence(*symbol);
      // Name what the user wrote here ('v'), not what 'v' was computed from.
      result.setWitness("'" + symbol->name + "'", expr.getLoc(), result.axis);
    }
    break;
  case Expr::UnaryK:
    result = dependenceOf(*llvm::cast<UnaryExpr>(expr).operand);
    break;
  case Expr::BinaryK: {
    auto &binary = llvm::cast<BinaryExpr>(expr);
    result = dependenceOf(*binary.lhs);
    result.merge(dependenceOf(*binary.rhs));
    break;
  }
  case Expr::CallK: {
    auto &call = llvm::cast<CallExpr>(expr);
    if (call.weights)
      result.learned = &call;
    for (const Argument &arg : call.args)
      result.merge(dependenceOf(*arg.value));
    if (isReduction(call.builtin)) {
      // One result per tensor, row or column, whatever it reduces; what it
      // reduces still matters for learned weights (checkReduction).
      AxisKind axis = reductionAxis(call.builtin);
      result.axis = axis == AxisKind::Row   ? ValueAxis::Row
                    : axis == AxisKind::Col ? ValueAxis::Col
                                            : ValueAxis::Uniform;
      result.alongRow = result.alongCol = Witness();
      result.setWitness("'" + call.callee + "(...)'", call.getLoc(),
                        result.axis);
    } else if (call.builtin == Builtin::NewtonSchulz) {
      // An entry of a function of the whole matrix: per coordinate, and
      // not the same along a row or a column whatever x is.
      result.axis = ValueAxis::Coordinate;
      result.alongRow = result.alongCol = Witness();
      result.setWitness("'newton_schulz(...)'", call.getLoc(), result.axis);
    } else if (call.builtin == Builtin::Rand ||
               call.builtin == Builtin::Randn) {
      // A draw per coordinate (Philox counter of the coordinate).
      result.axis = ValueAxis::Coordinate;
      result.setWitness("'" + call.callee + "()'", call.getLoc(), result.axis);
    }
    break;
  }
  case Expr::IndexK: // The index is a constant.
    result = dependenceOf(*llvm::cast<IndexExpr>(expr).base);
    break;
  case Expr::ListK:
    for (const ExprPtr &element : llvm::cast<ListExpr>(expr).elements)
      result.merge(dependenceOf(*element));
    break;
  }
  return result;
}

Type ProgramChecker::checkQP(CallExpr &call) {
  static const char *const names[] = {"Q", "q", "A",   "b",
                                      "G", "h", "tol", "max_iter"};
  llvm::StringMap<Argument *> given;
  for (Argument &arg : call.args) {
    if (arg.name.empty()) {
      diags.error(arg.value->getLoc(),
                  "qp takes named arguments, e.g. 'qp(Q: ..., q: ..., G: ..., "
                  "h: ...)'");
      return Type::unknown();
    }
    if (!llvm::is_contained(names, arg.name)) {
      diags.error(arg.nameLoc, "qp has no argument '" + arg.name +
                                   "'; expected Q, q, A, b, G, h, tol or "
                                   "max_iter");
      return Type::unknown();
    }
    if (!given.try_emplace(arg.name, &arg).second) {
      diags.error(arg.nameLoc, "argument '" + arg.name + "' given twice");
      return Type::unknown();
    }
  }
  if (!given.count("q")) {
    diags.error(call.getLoc(), "qp needs the linear term 'q' (it also sets "
                               "the number of variables)");
    return Type::unknown();
  }
  for (auto [a, b] : {std::pair{"A", "b"}, std::pair{"G", "h"}})
    if (given.count(a) != given.count(b)) {
      diags.error(call.getLoc(),
                  Twine("qp needs '") + a + "' and '" + b + "' together");
      return Type::unknown();
    }

  llvm::StringMap<Type> types;
  bool ok = true;
  for (auto &entry : given) {
    llvm::StringRef name = entry.first();
    Argument &arg = *entry.second;
    if (name == "tol" || name == "max_iter") {
      std::optional<double> value = evalConstant(*arg.value);
      bool isIter = name == "max_iter";
      if (!value || !(*value > 0) ||
          (isIter && (std::floor(*value) != *value || *value > 1e6))) {
        diags.error(arg.value->getLoc(),
                    isIter ? "max_iter must be a positive constant integer "
                             "(at most 1000000)"
                           : "tol must be a positive constant number");
        ok = false;
      } else if (isIter) {
        call.qpMaxIter = static_cast<int64_t>(*value);
      } else {
        call.qpTol = *value;
      }
      continue;
    }
    Type t = check(*arg.value);
    if (!requireNumber(t, arg.value->getLoc(), "qp data") || t.isUnknown())
      ok = false;
    types[name] = t;
  }
  if (!ok)
    return Type::unknown();

  const Type &q = types["q"];
  if (q.rank() != 1) {
    diags.error(given["q"]->value->getLoc(),
                "q must be a vector, got a " + q.str());
    return Type::unknown();
  }
  int64_t n = q.shape[0];
  // `why`: what sets the expected size (b and h follow A's and G's rows,
  // the matrices the number of variables).
  auto expectShape = [&](llvm::StringRef name, llvm::ArrayRef<int64_t> shape,
                         const std::string &why) -> bool {
    const Type &t = types[name];
    if (t.shape == llvm::SmallVector<int64_t, 2>(shape.begin(), shape.end()))
      return true;
    diags.error(given[name]->value->getLoc(),
                name + " must be a " + Type::number(shape).str() + " " + why +
                    ", got a " + t.str());
    return false;
  };
  const std::string forN = "for a problem with " + plural(n, "variable");
  int64_t m = 0, p = 0;
  if (types.count("Q") && !expectShape("Q", {n, n}, forN))
    return Type::unknown();
  if (types.count("A")) {
    const Type &A = types["A"];
    m = A.rank() == 2 ? A.shape[0] : 0;
    if (!expectShape("A", {std::max<int64_t>(m, 1), n}, forN) ||
        !expectShape("b", {m},
                     "(one value per row of A, which has " + plural(m, "row") +
                         ")"))
      return Type::unknown();
  }
  if (types.count("G")) {
    const Type &G = types["G"];
    p = G.rank() == 2 ? G.shape[0] : 0;
    if (!expectShape("G", {std::max<int64_t>(p, 1), n}, forN) ||
        !expectShape("h", {p},
                     "(one bound per row of G, which has " + plural(p, "row") +
                         ")"))
      return Type::unknown();
  }
  return Type::tuple({Type::number({n}), Type::number({m}), Type::number({p})});
}

Type ProgramChecker::checkWeightsCall(CallExpr &call, const Symbol &weights) {
  bool isLSTM = weights.weightsKind == Symbol::LSTM;
  size_t expected = isLSTM ? 3 : 1;
  if (call.args.size() != expected) {
    diags.error(call.getLoc(),
                "'" + call.callee + "' expects " +
                    (isLSTM ? "3 arguments (x, h, c)" : "1 argument (x)") +
                    ", got " + Twine(call.args.size()));
    return Type::unknown();
  }
  std::vector<Type> args;
  for (Argument &arg : call.args) {
    if (!arg.name.empty()) {
      diags.error(arg.nameLoc,
                  "'" + call.callee + "' takes no named arguments");
      return Type::unknown();
    }
    args.push_back(check(*arg.value));
    if (!requireNumber(args.back(), arg.value->getLoc(),
                       "an argument of '" + call.callee + "'") ||
        args.back().isUnknown())
      return Type::unknown();
  }
  const Type &x = args[0];
  bool xOk = (x.rank() == 0 && weights.inSize == 1) ||
             (x.rank() == 1 && x.shape[0] == weights.inSize);
  if (!xOk) {
    diags.error(call.args[0].value->getLoc(),
                "'" + call.callee + "' expects an input of size " +
                    Twine(weights.inSize) + ", got a " + x.str());
    return Type::unknown();
  }
  if (!isLSTM)
    return weights.outSize == 1 ? Type::scalar()
                                : Type::number({weights.outSize});
  Type state = Type::number({weights.outSize});
  for (unsigned i = 1; i < 3; ++i)
    if (args[i] != state) {
      diags.error(call.args[i].value->getLoc(),
                  "'" + call.callee + "' expects its " +
                      (i == 1 ? "hidden state" : "cell state") + " to be a " +
                      state.str() + ", got a " + args[i].str());
      return Type::unknown();
    }
  return Type::tuple({state, state});
}

//===----------------------------------------------------------------------===//
// Module
//===----------------------------------------------------------------------===//

bool optim::checkModule(Module &module, CheckedModule &result,
                        DiagnosticEngine &diags, const SemaOptions &options) {
  unsigned errorsBefore = diags.getNumErrors();
  llvm::StringMap<SMLoc> names;
  result.programs.clear();
  result.programs.reserve(module.programs.size());
  for (Program &program : module.programs) {
    auto [it, inserted] = names.try_emplace(program.name, program.loc);
    if (!inserted) {
      diags.error(program.loc, "redefinition of '" + program.name + "'");
      diags.note(it->second, "'" + program.name + "' was first defined here");
    }
    result.programs.emplace_back();
    ProgramChecker(program, result.programs.back(), diags, options).run();
    if (diags.tooManyErrors())
      break;
  }
  return diags.getNumErrors() == errorsBefore;
}
