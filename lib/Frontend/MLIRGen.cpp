//===- MLIRGen.cpp - checked syntax tree to the optim dialect -------------===//
//
// Sema has accepted the tree, so every name is resolved and every shape
// known: this file only builds IR. Rule bodies are straight-line code, so a
// name's current value is one map entry that assignments overwrite.
//
//===----------------------------------------------------------------------===//

#include "optim/Frontend/MLIRGen.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseMap.h"

#include <cmath>

using namespace optim;
using namespace optim::ast;
using mlir::Value;
namespace arith = mlir::arith;
namespace math = mlir::math;
namespace tensor = mlir::tensor;
namespace vector = mlir::vector;

namespace {

class ProgramGen {
public:
  ProgramGen(mlir::OpBuilder &builder, const CheckedProgram &checked,
             const llvm::SourceMgr &sm, mlir::FloatType elt)
      : b(builder), checked(checked), program(*checked.program), sm(sm),
        elt(elt), isLayer(program.kind == Program::Layer) {}

  void generate();

private:
  /// The kind of each draw site generated so far (rand(), randn()), in site
  /// order: the rule's `random` list.
  llvm::SmallVector<mlir::Attribute> randomKinds;
  mlir::Location loc(llvm::SMLoc l) {
    auto [line, col] = sm.getLineAndColumn(l);
    auto name = sm.getMemoryBuffer(sm.FindBufferContainingLoc(l))
                    ->getBufferIdentifier();
    return mlir::FileLineColLoc::get(b.getContext(), name, line, col);
  }
  mlir::StringAttr str(llvm::StringRef s) { return b.getStringAttr(s); }
  mlir::ArrayAttr names(const std::vector<Symbol *> &symbols) {
    llvm::SmallVector<mlir::Attribute> attrs;
    for (const Symbol *s : symbols)
      attrs.push_back(str(s->name));
    return b.getArrayAttr(attrs);
  }

  /// The IR type of a value of AST type `type`.
  mlir::Type irType(const Type &type) {
    mlir::Type scalar =
        type.kind == Type::Bool ? mlir::Type(b.getI1Type()) : elt;
    if (type.shape.empty())
      return scalar;
    if (isLayer)
      return mlir::RankedTensorType::get(type.shape, scalar);
    return mlir::VectorType::get(type.shape, scalar);
  }
  mlir::Type tensorType(llvm::ArrayRef<int64_t> shape) {
    return mlir::RankedTensorType::get(shape, elt);
  }

  Value constant(double value, const Type &type, mlir::Location l) {
    mlir::Type t = irType(Type::number(type.shape));
    mlir::TypedAttr attr;
    if (auto shaped = llvm::dyn_cast<mlir::ShapedType>(t))
      attr = mlir::DenseElementsAttr::get(shaped, b.getFloatAttr(elt, value));
    else
      attr = b.getFloatAttr(elt, value);
    return mlir::arith::ConstantOp::create(b, l, attr);
  }
  /// Broadcasts a scalar to `type` (a vector in rules, a tensor in layers).
  Value broadcastTo(Value v, const Type &type, mlir::Location l) {
    Type target = type;
    if (mlir::getElementTypeOrSelf(v.getType()).isInteger(1))
      target.kind = Type::Bool;
    mlir::Type want = irType(target);
    if (v.getType() == want)
      return v;
    if (isLayer)
      return mlir::tensor::SplatOp::create(b, l, v,
                                           llvm::cast<mlir::TensorType>(want));
    return mlir::vector::BroadcastOp::create(b, l, want, v);
  }

  /// t in the element type: converted once, at the top of the body, so
  /// that every use is dominated.
  Value step(mlir::Location l) {
    if (!stepAsFloat) {
      mlir::OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(b.getInsertionBlock());
      stepAsFloat =
          arith::SIToFPOp::create(b, l, elt, current.lookup(checked.step));
    }
    return stepAsFloat;
  }
  void genStmt(const Stmt &stmt);
  void genFirstStepInit(const DeclItem &item);
  llvm::SmallVector<Value> genValues(const Expr &expr);
  Value gen(const Expr &expr);
  Value genBinary(TokenKind op, Value lhs, Value rhs, const Type &type,
                  mlir::Location l);
  Value genCall(const CallExpr &call);
  Value genReduction(const CallExpr &call, Value arg, mlir::Location l);
  Value genMod(Value x, Value y, const Type &type, mlir::Location l);
  llvm::SmallVector<Value> genQP(const CallExpr &call);

  mlir::OpBuilder &b;
  const CheckedProgram &checked;
  const Program &program;
  const llvm::SourceMgr &sm;
  mlir::FloatType elt;
  bool isLayer;
  llvm::DenseMap<const Symbol *, Value> current;
  Value stepAsFloat;
};

} // namespace

void ProgramGen::generate() {
  mlir::Location l = loc(program.loc);
  llvm::SmallVector<mlir::Type> argTypes;
  llvm::SmallVector<const Symbol *> argSymbols;
  mlir::Operation *op;
  mlir::Region *body;
  if (isLayer) {
    for (const Symbol *s : checked.inputs) {
      argTypes.push_back(irType(s->type));
      argSymbols.push_back(s);
    }
    for (const Symbol *s : checked.weights) {
      argTypes.push_back(tensorType(s->tensorShape));
      argSymbols.push_back(s);
    }
    llvm::SmallVector<mlir::Attribute> outTypes;
    for (const Symbol *s : checked.outputs)
      outTypes.push_back(mlir::TypeAttr::get(irType(s->type)));
    auto layer = mlir::optim::LayerOp::create(
        b, l, str(program.name), names(checked.inputs), names(checked.weights),
        names(checked.outputs), b.getArrayAttr(outTypes));
    op = layer;
    body = &layer.getBody();
  } else {
    argTypes = {elt, elt, b.getI64Type()};
    argSymbols = {checked.param, checked.grad, checked.step};
    llvm::SmallVector<double> defaults, inits;
    llvm::SmallVector<bool> consts;
    for (const Symbol *s : checked.hypers) {
      argTypes.push_back(elt);
      argSymbols.push_back(s);
      defaults.push_back(s->value);
      consts.push_back(s->isConst);
    }
    for (const Symbol *s : checked.states) {
      argTypes.push_back(irType(s->type));
      argSymbols.push_back(s);
      inits.push_back(s->init);
    }
    for (const Symbol *s : checked.weights) {
      argTypes.push_back(tensorType(s->tensorShape));
      argSymbols.push_back(s);
    }
    // Per-coordinate inputs come last (RuleOp's block arguments).
    for (const Symbol *s : checked.inputs) {
      argTypes.push_back(elt);
      argSymbols.push_back(s);
    }
    // Unset when every state is per coordinate: the IR of such rules is
    // what it always was.
    mlir::ArrayAttr stateAxes;
    if (llvm::any_of(checked.states, [](const Symbol *s) {
          return s->axis != AxisKind::None;
        })) {
      llvm::SmallVector<mlir::Attribute> axes;
      for (const Symbol *s : checked.states)
        axes.push_back(str(s->axis == AxisKind::Row   ? "row"
                           : s->axis == AxisKind::Col ? "col"
                                                      : "none"));
      stateAxes = b.getArrayAttr(axes);
    }
    auto rule = mlir::optim::RuleOp::create(
        b, l, str(program.name), names(checked.hypers),
        b.getDenseF64ArrayAttr(defaults), b.getDenseBoolArrayAttr(consts),
        names(checked.states), b.getDenseF64ArrayAttr(inits),
        names(checked.weights),
        // Unset without inputs: the IR of such rules is what it always was.
        checked.inputs.empty() ? mlir::ArrayAttr() : names(checked.inputs),
        /*random=*/mlir::ArrayAttr(), // Set after the body: its sites.
        stateAxes);
    op = rule;
    body = &rule.getBody();
  }
  llvm::SmallVector<mlir::Location> argLocs;
  for (const Symbol *s : argSymbols)
    argLocs.push_back(loc(s->loc));
  mlir::Block *block = b.createBlock(body, {}, argTypes, argLocs);
  for (auto [symbol, arg] : llvm::zip(argSymbols, block->getArguments()))
    current[symbol] = arg;

  for (const StmtPtr &stmt : program.body)
    genStmt(*stmt);

  mlir::Location end = loc(program.bodyEnd);
  if (isLayer) {
    llvm::SmallVector<Value> outs;
    for (const Symbol *s : checked.outputs)
      outs.push_back(current.lookup(s));
    mlir::optim::ReturnOp::create(b, end, outs);
  } else {
    llvm::SmallVector<Value> outs = {current.lookup(checked.param)};
    for (const Symbol *s : checked.states)
      outs.push_back(current.lookup(s));
    mlir::optim::YieldOp::create(b, end, outs);
    // Unset for rules that draw nothing: their IR is what it always was.
    if (!randomKinds.empty())
      llvm::cast<mlir::optim::RuleOp>(op).setRandomAttr(
          b.getArrayAttr(randomKinds));
  }
  b.setInsertionPointAfter(op);
}

void ProgramGen::genStmt(const Stmt &stmt) {
  if (stmt.getKind() == Stmt::StateK) {
    for (const DeclItem &item : llvm::cast<DeclStmt>(stmt).items)
      if (item.symbol->initAtFirstStep)
        genFirstStepInit(item);
    return;
  }
  auto *bind = llvm::dyn_cast<BindStmt>(&stmt);
  if (!bind)
    return; // Declarations were turned into the signature.
  mlir::Location l = loc(bind->opLoc);
  llvm::SmallVector<Value> values = genValues(*bind->value);
  if (bind->op != TokenKind::Equal) {
    const DeclItem &target = bind->targets.front();
    TokenKind op = bind->op == TokenKind::PlusEqual    ? TokenKind::Plus
                   : bind->op == TokenKind::MinusEqual ? TokenKind::Minus
                   : bind->op == TokenKind::StarEqual  ? TokenKind::Star
                                                       : TokenKind::Slash;
    values[0] =
        genBinary(op, current.lookup(target.symbol), values[0], target.type, l);
  }
  for (auto [target, value] : llvm::zip(bind->targets, values))
    current[target.symbol] = broadcastTo(value, target.type, l);
}

/// `state z = e` with a value known only at run time: exactly what
/// `z = select(t == 1, e, z)` at the declaration gives, the buffer having
/// started at 0. One spelling, one IR: passes and the reverse mode see
/// nothing new.
void ProgramGen::genFirstStepInit(const DeclItem &item) {
  mlir::Location l = loc(item.init->getLoc());
  Value first = genBinary(TokenKind::EqualEqual, step(l),
                          constant(1.0, Type::scalar(), l), Type::scalar(), l);
  Value value = gen(*item.init);
  Value select = arith::SelectOp::create(
      b, l, broadcastTo(first, item.type, l), broadcastTo(value, item.type, l),
      broadcastTo(current.lookup(item.symbol), item.type, l));
  current[item.symbol] = select;
}

llvm::SmallVector<Value> ProgramGen::genValues(const Expr &expr) {
  if (auto *call = llvm::dyn_cast<CallExpr>(&expr)) {
    if (call->builtin == Builtin::QP)
      return genQP(*call);
    if (call->weights && call->weights->weightsKind == Symbol::LSTM) {
      mlir::Location l = loc(call->getLoc());
      Value x = gen(*call->args[0].value);
      Value h = gen(*call->args[1].value);
      Value c = gen(*call->args[2].value);
      auto cell =
          mlir::optim::LSTMCellOp::create(b, l, h.getType(), c.getType(), x, h,
                                          c, current.lookup(call->weights));
      return {cell.getHOut(), cell.getCOut()};
    }
  }
  return {gen(expr)};
}

Value ProgramGen::genBinary(TokenKind op, Value lhs, Value rhs,
                            const Type &type, mlir::Location l) {
  lhs = broadcastTo(lhs, type, l);
  rhs = broadcastTo(rhs, type, l);
  switch (op) {
  case TokenKind::Plus:
    return arith::AddFOp::create(b, l, lhs, rhs);
  case TokenKind::Minus:
    return arith::SubFOp::create(b, l, lhs, rhs);
  case TokenKind::Star:
    return arith::MulFOp::create(b, l, lhs, rhs);
  case TokenKind::Slash:
    return arith::DivFOp::create(b, l, lhs, rhs);
  case TokenKind::StarStar:
    return math::PowFOp::create(b, l, lhs, rhs);
  case TokenKind::KwAnd: // Booleans: i1, or vectors of i1.
    return arith::AndIOp::create(b, l, lhs, rhs);
  case TokenKind::KwOr:
    return arith::OrIOp::create(b, l, lhs, rhs);
  default:
    break;
  }
  arith::CmpFPredicate pred;
  switch (op) {
  case TokenKind::Less:
    pred = arith::CmpFPredicate::OLT;
    break;
  case TokenKind::LessEqual:
    pred = arith::CmpFPredicate::OLE;
    break;
  case TokenKind::Greater:
    pred = arith::CmpFPredicate::OGT;
    break;
  case TokenKind::GreaterEqual:
    pred = arith::CmpFPredicate::OGE;
    break;
  case TokenKind::EqualEqual:
    pred = arith::CmpFPredicate::OEQ;
    break;
  default:
    pred = arith::CmpFPredicate::UNE;
    break;
  }
  return arith::CmpFOp::create(b, l, pred, lhs, rhs);
}

Value ProgramGen::gen(const Expr &expr) {
  mlir::Location l = loc(expr.getLoc());
  switch (expr.getKind()) {
  case Expr::NumberK:
    return constant(llvm::cast<NumberExpr>(expr).value, Type::scalar(), l);
  case Expr::NameK: {
    auto &name = llvm::cast<NameExpr>(expr);
    if (name.builtinValue) // pi, inf.
      return constant(*name.builtinValue, Type::scalar(), l);
    const Symbol *symbol = name.symbol;
    if (symbol->kind == Symbol::LayerParam)
      return constant(symbol->value, Type::scalar(), l);
    if (symbol->kind == Symbol::Step)
      return step(l);
    return current.lookup(symbol);
  }
  case Expr::UnaryK: {
    auto &unary = llvm::cast<UnaryExpr>(expr);
    Value operand = gen(*unary.operand);
    if (unary.op != TokenKind::KwNot)
      return arith::NegFOp::create(b, l, operand);
    // not c = c xor true, elementwise on a vector of i1.
    mlir::Type type = operand.getType();
    mlir::TypedAttr ones = b.getBoolAttr(true);
    if (auto shaped = llvm::dyn_cast<mlir::ShapedType>(type))
      ones = mlir::DenseElementsAttr::get(shaped, true);
    Value allTrue = arith::ConstantOp::create(b, l, ones);
    return arith::XOrIOp::create(b, l, operand, allTrue);
  }
  case Expr::BinaryK: {
    auto &binary = llvm::cast<BinaryExpr>(expr);
    Value lhs = gen(*binary.lhs), rhs = gen(*binary.rhs);
    if (binary.op == TokenKind::At && binary.rhs->type.rank() == 2)
      return mlir::optim::MatMulOp::create(b, l, irType(expr.type), lhs, rhs);
    if (binary.op == TokenKind::At)
      return mlir::optim::MatVecOp::create(b, l, irType(expr.type), lhs, rhs);
    Type operandType = Type::number(expr.type.shape);
    return genBinary(binary.op, lhs, rhs, operandType, l);
  }
  case Expr::CallK:
    return genCall(llvm::cast<CallExpr>(expr));
  case Expr::IndexK: {
    auto &index = llvm::cast<IndexExpr>(expr);
    Value base = gen(*index.base);
    if (isLayer) {
      Value pos = arith::ConstantIndexOp::create(b, l, index.position);
      return tensor::ExtractOp::create(b, l, base, mlir::ValueRange{pos});
    }
    return vector::ExtractOp::create(b, l, base,
                                     llvm::ArrayRef<int64_t>{index.position});
  }
  case Expr::ListK: {
    // Scalars as they are, vectors component by component: the ops that
    // every kernel maps as moves of components (Components.h).
    llvm::SmallVector<Value> elements;
    for (const ExprPtr &element : llvm::cast<ListExpr>(expr).elements) {
      Value v = gen(*element);
      auto vec = llvm::dyn_cast<mlir::VectorType>(v.getType());
      if (!vec) {
        elements.push_back(v);
        continue;
      }
      for (int64_t j = 0; j < vec.getNumElements(); ++j)
        elements.push_back(vector::ExtractOp::create(
            b, loc(element->getLoc()), v, llvm::ArrayRef<int64_t>{j}));
    }
    return vector::FromElementsOp::create(
        b, l, llvm::cast<mlir::VectorType>(irType(expr.type)), elements);
  }
  }
  return {};
}

Value ProgramGen::genCall(const CallExpr &call) {
  mlir::Location l = loc(call.getLoc());
  const Type &type = call.type;
  if (call.weights) { // A linear map (LSTM cells return two values).
    Value x = gen(*call.args[0].value);
    return mlir::optim::LinearOp::create(b, l, irType(type), x,
                                         current.lookup(call.weights));
  }
  switch (call.builtin) {
  case Builtin::NewtonSchulz: {
    // Its other arguments are numbers Sema recorded in the call: attributes,
    // not values.
    Value x = gen(*call.args[0].value);
    auto axis = mlir::optim::ReductionAxisAttr::get(
        b.getContext(), mlir::optim::ReductionAxis::Matrix);
    return mlir::optim::TensorReduceOp::create(
        b, l, x.getType(), x, mlir::optim::ReductionKind::NewtonSchulz,
        /*global=*/false, axis, call.nsSteps,
        llvm::ArrayRef<double>(call.nsCoefficients),
        llvm::APFloat(call.nsEps));
  }
  case Builtin::Rows:
  case Builtin::Cols: {
    // The op ignores its operand (the runtime fills the value in); it is
    // one of the rule's reductions, numbered in body order with the others.
    Value zero = constant(0.0, Type::scalar(), l);
    return mlir::optim::TensorReduceOp::create(
        b, l, zero.getType(), zero,
        call.builtin == Builtin::Rows ? mlir::optim::ReductionKind::Rows
                                      : mlir::optim::ReductionKind::Cols,
        /*global=*/false, mlir::optim::ReductionAxisAttr());
  }
  case Builtin::Eye:
    return mlir::optim::EyeOp::create(b, l, irType(type));
  case Builtin::Zeros:
    return constant(0.0, type, l);
  case Builtin::Ones:
    return constant(1.0, type, l);
  case Builtin::Transpose:
    return mlir::optim::TransposeOp::create(b, l, irType(type),
                                            gen(*call.args[0].value));
  case Builtin::Diag:
    return mlir::optim::DiagOp::create(b, l, irType(type),
                                       gen(*call.args[0].value));
  case Builtin::VStack: {
    llvm::SmallVector<Value> parts;
    for (const Argument &arg : call.args)
      parts.push_back(gen(*arg.value));
    return mlir::optim::VStackOp::create(b, l, irType(type), parts);
  }
  default:
    break;
  }
  llvm::SmallVector<Value> args;
  for (const Argument &arg : call.args)
    args.push_back(gen(*arg.value));
  auto unaryArg = [&]() { return broadcastTo(args[0], type, l); };
  switch (call.builtin) {
  case Builtin::Sqrt:
    return math::SqrtOp::create(b, l, unaryArg());
  case Builtin::Exp:
    return math::ExpOp::create(b, l, unaryArg());
  case Builtin::Log:
    return math::LogOp::create(b, l, unaryArg());
  case Builtin::Abs:
    return math::AbsFOp::create(b, l, unaryArg());
  case Builtin::Tanh:
    return math::TanhOp::create(b, l, unaryArg());
  case Builtin::Sigmoid: {
    Value one = constant(1.0, type, l);
    Value e = math::ExpOp::create(b, l, arith::NegFOp::create(b, l, args[0]));
    return arith::DivFOp::create(b, l, one,
                                 arith::AddFOp::create(b, l, one, e));
  }
  case Builtin::Sign: {
    // sign(0) = 0 and sign(NaN) = NaN, as torch.sign.
    Value x = args[0], zero = constant(0.0, type, l);
    Value pos = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OGT, x, zero);
    Value neg = arith::CmpFOp::create(b, l, arith::CmpFPredicate::OLT, x, zero);
    Value inner =
        arith::SelectOp::create(b, l, neg, constant(-1.0, type, l), x);
    return arith::SelectOp::create(b, l, pos, constant(1.0, type, l), inner);
  }
  case Builtin::Floor:
    return math::FloorOp::create(b, l, unaryArg());
  case Builtin::Ceil:
    return math::CeilOp::create(b, l, unaryArg());
  case Builtin::Cos:
    return math::CosOp::create(b, l, unaryArg());
  case Builtin::Sin:
    return math::SinOp::create(b, l, unaryArg());
  case Builtin::Atan:
    return math::AtanOp::create(b, l, unaryArg());
  case Builtin::Cbrt: // The real cube root: cbrt(-8) = -2 (libm, libdevice).
    return math::CbrtOp::create(b, l, unaryArg());
  case Builtin::IsFinite: {
    // |x| < inf is ordered: false for NaN, and for +-inf.
    Value x = args[0];
    Value inf = constant(HUGE_VAL, type, l);
    return arith::CmpFOp::create(b, l, arith::CmpFPredicate::OLT,
                                 math::AbsFOp::create(b, l, x), inf);
  }
  case Builtin::Max:
  case Builtin::Min:
  case Builtin::Pow:
  case Builtin::Mod:
  case Builtin::Atan2: {
    Value x = broadcastTo(args[0], type, l), y = broadcastTo(args[1], type, l);
    // atan2(y, x): the angle of (x, y), in [-pi, pi], as libm's.
    if (call.builtin == Builtin::Atan2)
      return math::Atan2Op::create(b, l, x, y);
    if (call.builtin == Builtin::Max)
      return arith::MaximumFOp::create(b, l, x, y);
    if (call.builtin == Builtin::Min)
      return arith::MinimumFOp::create(b, l, x, y);
    if (call.builtin == Builtin::Mod)
      return genMod(x, y, type, l);
    return math::PowFOp::create(b, l, x, y);
  }
  case Builtin::Clamp: {
    Value x = broadcastTo(args[0], type, l);
    Value lo = broadcastTo(args[1], type, l);
    Value hi = broadcastTo(args[2], type, l);
    return arith::MinimumFOp::create(
        b, l, arith::MaximumFOp::create(b, l, x, lo), hi);
  }
  case Builtin::Select:
    return arith::SelectOp::create(b, l, broadcastTo(args[0], type, l),
                                   broadcastTo(args[1], type, l),
                                   broadcastTo(args[2], type, l));
  case Builtin::Sum:
  case Builtin::Mean:
  case Builtin::Dot: {
    Value v = args[0];
    if (call.builtin == Builtin::Dot)
      v = arith::MulFOp::create(b, l, args[0], args[1]);
    Value sum =
        vector::ReductionOp::create(b, l, vector::CombiningKind::ADD, v);
    if (call.builtin != Builtin::Mean)
      return sum;
    auto n = llvm::cast<mlir::VectorType>(v.getType()).getNumElements();
    return arith::DivFOp::create(b, l, sum,
                                 constant(double(n), Type::scalar(), l));
  }
  case Builtin::LogSign:
    return mlir::optim::LogSignOp::create(b, l, irType(type), args[0], args[1]);
  case Builtin::Rand:
  case Builtin::Randn: {
    // One site per call, numbered in the order gen() visits the body
    // (source order); the rule records every site's kind, so that the
    // numbers stay put when a dead draw is erased.
    auto kind = call.builtin == Builtin::Randn
                    ? mlir::optim::RandomKind::Normal
                    : mlir::optim::RandomKind::Uniform;
    unsigned site = randomKinds.size();
    randomKinds.push_back(str(mlir::optim::stringifyRandomKind(kind)));
    return mlir::optim::RandomOp::create(b, l, elt, kind, site);
  }
  default:
    break;
  }
  if (isReduction(call.builtin))
    return genReduction(call, args[0], l);
  llvm_unreachable("Sema accepted a call MLIRGen does not know");
}

/// mod(x, y) as NumPy's np.mod (npy_divmod): the remainder of a division
/// rounded toward minus infinity, with the sign of y. fmod (arith.remf) is
/// exact; where its result r is not zero and its sign differs from y's, the
/// result is r + y (rounded once, as NumPy does); a zero result takes y's
/// sign; NaN (from y = 0, x infinite, or a NaN argument) passes through.
/// x - y * floor(x / y) would round twice and lose r when x / y is large.
/// Built from float selects and compares only (no i1 logic), so that the
/// reverse mode needs one new derivative, arith.remf's.
Value ProgramGen::genMod(Value x, Value y, const Type &type,
                         mlir::Location l) {
  Value zero = constant(0.0, type, l);
  auto cmp = [&](arith::CmpFPredicate pred, Value a) -> Value {
    return arith::CmpFOp::create(b, l, pred, a, zero);
  };
  auto select = [&](Value c, Value a, Value other) -> Value {
    return arith::SelectOp::create(b, l, c, a, other);
  };
  Value r = arith::RemFOp::create(b, l, x, y);
  Value shifted = arith::AddFOp::create(b, l, r, y);
  Value yNeg = cmp(arith::CmpFPredicate::OLT, y);
  // r > 0 moves by y where y < 0; r < 0 (so y > 0: y = 0 gives NaN) where
  // y > 0; a zero is -0 where y < 0.
  Value ifPos = select(yNeg, shifted, r);
  Value ifNeg = select(yNeg, r, shifted);
  Value ifZero = select(yNeg, constant(-0.0, type, l), zero);
  Value orNaN = select(cmp(arith::CmpFPredicate::OEQ, r), ifZero, r);
  return select(cmp(arith::CmpFPredicate::OGT, r), ifPos,
                select(cmp(arith::CmpFPredicate::OLT, r), ifNeg, orNaN));
}

Value ProgramGen::genReduction(const CallExpr &call, Value arg,
                               mlir::Location l) {
  using mlir::optim::ReductionKind;
  ReductionKind kind;
  switch (call.builtin) {
  case Builtin::TensorSum:
  case Builtin::GlobalSum:
  case Builtin::RowSum:
  case Builtin::ColSum:
    kind = ReductionKind::Sum;
    break;
  case Builtin::TensorMean:
  case Builtin::GlobalMean:
  case Builtin::RowMean:
  case Builtin::ColMean:
    kind = ReductionKind::Mean;
    break;
  case Builtin::TensorNorm:
  case Builtin::GlobalNorm:
  case Builtin::RowNorm:
  case Builtin::ColNorm:
    kind = ReductionKind::Norm;
    break;
  case Builtin::TensorMax:
  case Builtin::GlobalMax:
  case Builtin::RowMax:
  case Builtin::ColMax:
    kind = ReductionKind::Max;
    break;
  default:
    kind = ReductionKind::Min;
    break;
  }
  // One op per call, in the order gen() visits the body (source order): the
  // runtime numbers the reduced values by the ops' positions. Norm stays one
  // op, not sqrt(sum(x * x)): the runtime squares and sums in f64. Row and
  // column reductions are numbered among the others (body order).
  mlir::optim::ReductionAxisAttr axis;
  if (AxisKind a = reductionAxis(call.builtin); a != AxisKind::None)
    axis = mlir::optim::ReductionAxisAttr::get(
        b.getContext(), a == AxisKind::Row ? mlir::optim::ReductionAxis::Row
                                           : mlir::optim::ReductionAxis::Col);
  return mlir::optim::TensorReduceOp::create(
      b, l, arg.getType(), arg, kind, isGlobalReduction(call.builtin), axis);
}

llvm::SmallVector<Value> ProgramGen::genQP(const CallExpr &call) {
  mlir::Location l = loc(call.getLoc());
  Value Q, q, A, bv, G, h;
  for (const Argument &arg : call.args) {
    if (arg.name == "tol" || arg.name == "max_iter")
      continue; // Sema folded them into call.qpTol and call.qpMaxIter.
    Value v = gen(*arg.value);
    llvm::StringRef n = arg.name;
    (n == "Q"   ? Q
     : n == "q" ? q
     : n == "A" ? A
     : n == "b" ? bv
     : n == "G" ? G
                : h) = v;
  }
  const Type &type = call.type;
  auto qp = mlir::optim::QPOp::create(
      b, l, irType(type.elements[0]), irType(type.elements[1]),
      irType(type.elements[2]), Q, q, A, bv, G, h,
      b.getF64FloatAttr(call.qpTol), b.getI64IntegerAttr(call.qpMaxIter));
  return {qp.getZ(), qp.getNu(), qp.getLam()};
}

mlir::OwningOpRef<mlir::ModuleOp> optim::mlirGen(mlir::MLIRContext &context,
                                                 const CheckedModule &module,
                                                 const llvm::SourceMgr &sm,
                                                 Precision precision) {
  context.loadDialect<mlir::optim::OptimDialect>();
  mlir::OpBuilder b(&context);
  auto fileLoc = mlir::FileLineColLoc::get(
      &context, sm.getMemoryBuffer(sm.getMainFileID())->getBufferIdentifier(),
      1, 1);
  mlir::OwningOpRef<mlir::ModuleOp> result = mlir::ModuleOp::create(fileLoc);
  b.setInsertionPointToEnd(result->getBody());
  mlir::FloatType elt = precision == Precision::F64
                            ? mlir::FloatType(b.getF64Type())
                            : mlir::FloatType(b.getF32Type());
  for (const CheckedProgram &program : module.programs)
    ProgramGen(b, program, sm, elt).generate();
  return result;
}
