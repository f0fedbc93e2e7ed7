//===- ParserTest.cpp - unit tests of the .optim parser and Sema ----------===//

#include "optim/Frontend/Parser.h"
#include "optim/Frontend/Sema.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "gtest/gtest.h"

#include <string>

using namespace optim;
using namespace optim::ast;

namespace {

struct Parsed {
  llvm::SourceMgr sm;
  std::string diagnostics;
  std::optional<Module> module;
  CheckedModule checked;
  bool checkedOk = false;
};

std::unique_ptr<Parsed> parse(llvm::StringRef source) {
  auto p = std::make_unique<Parsed>();
  p->sm.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(source, "t.optim"), llvm::SMLoc());
  llvm::raw_string_ostream os(p->diagnostics);
  DiagnosticEngine diags(p->sm, os);
  p->module = parseModule(diags);
  if (p->module)
    p->checkedOk = checkModule(*p->module, p->checked, diags);
  return p;
}

TEST(Parser, RuleWithParamsStateAndStatements) {
  auto p = parse("rule adam(lr = 1e-3, const beta1 = 0.9) {\n"
                 "  state m = 0, v = 0\n"
                 "  m = beta1 * m + (1 - beta1) * g\n"
                 "  let mhat = m / (1 - beta1 ** t)\n"
                 "  p -= lr * mhat\n"
                 "}\n");
  ASSERT_TRUE(p->module) << p->diagnostics;
  ASSERT_EQ(p->module->programs.size(), 1u);
  const Program &rule = p->module->programs[0];
  EXPECT_EQ(rule.kind, Program::Rule);
  EXPECT_EQ(rule.name, "adam");
  ASSERT_EQ(rule.params.size(), 2u);
  EXPECT_FALSE(rule.params[0].isConst);
  EXPECT_TRUE(rule.params[1].isConst);
  EXPECT_DOUBLE_EQ(rule.params[1].value, 0.9);
  ASSERT_EQ(rule.body.size(), 4u);
  EXPECT_EQ(rule.body[0]->getKind(), Stmt::StateK);
  EXPECT_EQ(llvm::cast<DeclStmt>(*rule.body[0]).items.size(), 2u);
  EXPECT_EQ(rule.body[2]->getKind(), Stmt::LetK);
  auto &update = llvm::cast<BindStmt>(*rule.body[3]);
  EXPECT_EQ(update.op, TokenKind::MinusEqual);
  EXPECT_TRUE(p->checkedOk) << p->diagnostics;
  EXPECT_EQ(p->checked.programs[0].states.size(), 2u);
  EXPECT_EQ(p->checked.programs[0].hypers.size(), 2u);
}

TEST(Parser, PrecedenceAndAssociativity) {
  // -a ** b ** c + d * e parses as (-(a ** (b ** c))) + (d * e).
  auto p = parse("rule r(a = 1, b = 2, c = 3, d = 4, e = 5) { p = -a ** b ** c "
                 "+ d * e }");
  ASSERT_TRUE(p->module) << p->diagnostics;
  auto &bind = llvm::cast<BindStmt>(*p->module->programs[0].body[0]);
  auto *add = llvm::dyn_cast<BinaryExpr>(bind.value.get());
  ASSERT_TRUE(add);
  EXPECT_EQ(add->op, TokenKind::Plus);
  auto *neg = llvm::dyn_cast<UnaryExpr>(add->lhs.get());
  ASSERT_TRUE(neg);
  auto *pow = llvm::dyn_cast<BinaryExpr>(neg->operand.get());
  ASSERT_TRUE(pow);
  EXPECT_EQ(pow->op, TokenKind::StarStar);
  auto *inner = llvm::dyn_cast<BinaryExpr>(pow->rhs.get());
  ASSERT_TRUE(inner);
  EXPECT_EQ(inner->op, TokenKind::StarStar);
  auto *mul = llvm::dyn_cast<BinaryExpr>(add->rhs.get());
  ASSERT_TRUE(mul);
  EXPECT_EQ(mul->op, TokenKind::Star);
}

TEST(Parser, StatementsNeedNoSeparator) {
  auto p = parse("rule r() { state a = 0 a = a + g p -= a; }");
  ASSERT_TRUE(p->module) << p->diagnostics;
  EXPECT_EQ(p->module->programs[0].body.size(), 3u);
  EXPECT_TRUE(p->checkedOk) << p->diagnostics;
}

TEST(Parser, VectorLiteralsConcatenateTheirElements) {
  // [g, h, 1] with h a vector[3] is a vector[5]; a literal can be indexed
  // and nested, and a trailing comma is allowed.
  auto p = parse("rule r(lr = 0.1) {\n"
                 "  state h[3] = 0\n"
                 "  let x = [g, h, 1]\n"
                 "  let y = [[g, p][1], x,]\n"
                 "  h = h + g\n"
                 "  p -= lr * sum(y)\n"
                 "}\n");
  ASSERT_TRUE(p->module) << p->diagnostics;
  EXPECT_TRUE(p->checkedOk) << p->diagnostics;
  const Program &rule = p->module->programs[0];
  auto &x = llvm::cast<BindStmt>(*rule.body[1]);
  auto *list = llvm::dyn_cast<ListExpr>(x.value.get());
  ASSERT_TRUE(list);
  EXPECT_EQ(list->elements.size(), 3u);
  EXPECT_EQ(list->type.str(), "vector[5]");
  auto &y = llvm::cast<BindStmt>(*rule.body[2]);
  auto *outer = llvm::dyn_cast<ListExpr>(y.value.get());
  ASSERT_TRUE(outer);
  ASSERT_EQ(outer->elements.size(), 2u);
  EXPECT_TRUE(llvm::isa<IndexExpr>(outer->elements[0].get()));
  EXPECT_EQ(outer->type.str(), "vector[6]");
}

TEST(Parser, NamedArgumentsAndMultipleTargets) {
  auto p = parse("learned rule l(const k = 10) {\n"
                 "  weights w = lstm(in: 2, hidden: 4)\n"
                 "  state h[4] = 0, c[4] = 0\n"
                 "  h, c = w(log_sign(g, k), h, c)\n"
                 "  p += sum(h)\n"
                 "}\n");
  ASSERT_TRUE(p->module) << p->diagnostics;
  ASSERT_TRUE(p->checkedOk) << p->diagnostics;
  const CheckedProgram &prog = p->checked.programs[0];
  ASSERT_EQ(prog.weights.size(), 1u);
  EXPECT_EQ(prog.weights[0]->weightsKind, Symbol::LSTM);
  EXPECT_EQ(prog.weights[0]->tensorShape[0], 16);
  EXPECT_EQ(prog.weights[0]->tensorShape[1], 7);
  auto &bind = llvm::cast<BindStmt>(*p->module->programs[0].body[2]);
  EXPECT_EQ(bind.targets.size(), 2u);
  EXPECT_EQ(bind.value->type.kind, Type::Tuple);
}

TEST(Parser, LayerShapesComeFromParameters) {
  auto p = parse("layer l(n = 3, m = 2) {\n"
                 "  weights A[m, n]\n"
                 "  input y[n]\n"
                 "  output z = qp(Q: eye(n), q: -y, A: A, b: zeros(m))\n"
                 "}\n");
  ASSERT_TRUE(p->module) << p->diagnostics;
  ASSERT_TRUE(p->checkedOk) << p->diagnostics;
  const CheckedProgram &prog = p->checked.programs[0];
  ASSERT_EQ(prog.outputs.size(), 1u);
  EXPECT_EQ(prog.outputs[0]->type.str(), "vector[3]");
  EXPECT_EQ(prog.weights[0]->type.str(), "matrix[2x3]");
}

TEST(Parser, StopsAtFirstSyntaxErrorWithLocation) {
  auto p = parse("rule r() {\n  p -= * g\n}\n");
  EXPECT_FALSE(p->module);
  EXPECT_NE(p->diagnostics.find("t.optim:2:8: error: expected an expression, "
                                "got '*'"),
            std::string::npos)
      << p->diagnostics;
}

TEST(Parser, UnterminatedBodyPointsAtTheOpeningBrace) {
  auto p = parse("rule r() {\n  p -= g\n");
  EXPECT_FALSE(p->module);
  EXPECT_NE(p->diagnostics.find("expected '}' to close the body of rule 'r'"),
            std::string::npos)
      << p->diagnostics;
  EXPECT_NE(p->diagnostics.find("t.optim:1:10: note: the body was opened here"),
            std::string::npos)
      << p->diagnostics;
}

TEST(Parser, DeepNestingIsRefusedNotOverflowed) {
  std::string deep = "rule r() { p = " + std::string(100000, '(') + "g" +
                     std::string(100000, ')') + " }";
  auto p = parse(deep);
  EXPECT_FALSE(p->module);
  EXPECT_NE(p->diagnostics.find("expression nested too deeply"),
            std::string::npos);
  std::string unary = "rule r() { p = " + std::string(100000, '-') + "g }";
  EXPECT_FALSE(parse(unary)->module);
}

TEST(Sema, ReportsEveryErrorNotJustTheFirst) {
  auto p = parse("rule r(lr = 1) {\n"
                 "  lr = 2\n"
                 "  p -= undefined_name\n"
                 "  state s[3] = 0\n"
                 "  s = s / s[0:1]\n"
                 "}\n");
  // The slice is a syntax error; fix it and count the semantic errors.
  p = parse("rule r(lr = 1) {\n"
            "  lr = 2\n"
            "  p -= undefined_name\n"
            "  t = 3\n"
            "}\n");
  ASSERT_TRUE(p->module);
  EXPECT_FALSE(p->checkedOk);
  EXPECT_NE(p->diagnostics.find("2:3: error: cannot assign to hyperparameter "
                                "'lr'"),
            std::string::npos)
      << p->diagnostics;
  EXPECT_NE(p->diagnostics.find("3:8: error: use of undeclared identifier "
                                "'undefined_name'"),
            std::string::npos)
      << p->diagnostics;
  EXPECT_NE(p->diagnostics.find("4:3: error: cannot assign to the step "
                                "counter 't'"),
            std::string::npos)
      << p->diagnostics;
}

} // namespace
