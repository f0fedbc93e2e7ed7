//===- Parser.cpp - parser of the .optim language -------------------------===//
//
// Recursive descent over a token vector. Statements need no separator: an
// expression ends at the first token that cannot continue it, and no
// statement starts with a token that could. The parser stops at the first
// syntax error; semantic errors are Sema's, which reports them all.
//
//===----------------------------------------------------------------------===//

#include "optim/Frontend/Parser.h"

#include "llvm/ADT/Twine.h"

using namespace optim;
using namespace optim::ast;

namespace {

class Parser {
public:
  Parser(std::vector<Token> tokens, DiagnosticEngine &diags)
      : tokens(std::move(tokens)), diags(diags) {}

  std::optional<Module> parseModule();

private:
  /// Nesting beyond this is refused, so that a hostile input cannot overflow
  /// the stack of the recursive descent.
  static constexpr unsigned kMaxDepth = 200;
  /// Statements beyond this in one body are refused: a chain of 100,000
  /// dependent statements compiled for an hour and then overflowed the stack
  /// in LLVM's loop vectorizer (measured; 40,000 took 140 s, 10,000 took 9 s,
  /// the longest rule of the literature has a few dozen).
  static constexpr size_t kMaxStatements = 20000;

  const Token &tok() const { return tokens[pos]; }
  const Token &peek(unsigned n = 1) const {
    return tokens[std::min<size_t>(pos + n, tokens.size() - 1)];
  }
  Token consume() {
    Token t = tokens[pos];
    if (pos + 1 < tokens.size())
      ++pos;
    return t;
  }
  bool consumeIf(TokenKind kind) {
    if (!tok().is(kind))
      return false;
    consume();
    return true;
  }
  /// Reports "expected X, got Y" and returns false unless the token is `kind`.
  bool expect(TokenKind kind, const llvm::Twine &what) {
    if (consumeIf(kind))
      return true;
    errorExpected(what);
    return false;
  }
  /// At the token, or just after the previous one when the token is on a
  /// later line: what is missing belongs to the line before (`state m`
  /// followed by the next statement), as in clang's "expected ';'". Not
  /// where a statement or a program starts (`atToken`): there the token
  /// itself is the mistake.
  void errorExpected(const llvm::Twine &what, bool atToken = false) {
    llvm::SMLoc at = tok().getLoc();
    if (pos > 0 && !atToken) {
      llvm::StringRef prev = tokens[pos - 1].text;
      const char *next = tok().text.data();
      if (prev.data() && next && prev.end() <= next &&
          llvm::StringRef(prev.end(), next - prev.end()).contains('\n'))
        at = llvm::SMLoc::getFromPointer(prev.end());
    }
    diags.error(at, "expected " + what + ", got " + describe(tok()));
  }
  static std::string describe(const Token &t) {
    if (t.is(TokenKind::Eof))
      return "end of file";
    if (t.is(TokenKind::Identifier))
      return ("identifier '" + t.text + "'").str();
    if (t.is(TokenKind::Number))
      return ("number " + t.text).str();
    return spell(t.kind).str();
  }

  bool parseProgram(Program &program);
  bool parseParams(Program &program);
  StmtPtr parseStmt(const Program &program);
  bool parseDeclItems(Stmt::Kind kind, std::vector<DeclItem> &items);
  bool parseDims(std::vector<ExprPtr> &dims);
  bool parseTargets(std::vector<DeclItem> &targets);

  ExprPtr parseExpr();
  ExprPtr parseOr();
  ExprPtr parseAnd();
  ExprPtr parseNot();
  ExprPtr parseComparison();
  ExprPtr parseAdditive();
  ExprPtr parseMultiplicative();
  ExprPtr parseUnary();
  ExprPtr parsePower();
  ExprPtr parsePostfix();
  ExprPtr parsePrimary();
  bool parseArguments(std::vector<Argument> &args);

  /// Guards one level of expression nesting.
  struct DepthGuard {
    Parser &p;
    bool ok;
    explicit DepthGuard(Parser &p) : p(p), ok(++p.depth <= kMaxDepth) {
      if (!ok)
        p.reportDepth();
    }
    ~DepthGuard() { --p.depth; }
  };

  /// Guards the operators of a left-associative chain ('a + b + c', 'v[0][1]'):
  /// each one nests the tree a level deeper without any recursion here, but
  /// Sema, MLIRGen and the destructors recurse through it.
  struct ChainGuard {
    Parser &p;
    unsigned levels = 0;
    explicit ChainGuard(Parser &p) : p(p) {}
    /// Accounts for one more operator; false (reported) past the limit.
    bool step() {
      ++levels;
      if (++p.depth <= kMaxDepth)
        return true;
      p.reportDepth();
      return false;
    }
    ~ChainGuard() { p.depth -= levels; }
  };

  void reportDepth() {
    if (reportedDepth)
      return;
    reportedDepth = true;
    diags.error(tok().getLoc(), "expression nested too deeply (more than " +
                                    llvm::Twine(kMaxDepth) + " levels)");
  }

  std::vector<Token> tokens;
  size_t pos = 0;
  unsigned depth = 0;
  bool reportedDepth = false;
  DiagnosticEngine &diags;
};

} // namespace

std::optional<Module> Parser::parseModule() {
  Module module;
  while (!tok().is(TokenKind::Eof)) {
    Program program;
    if (!parseProgram(program))
      return std::nullopt;
    module.programs.push_back(std::move(program));
  }
  if (module.programs.empty()) {
    diags.error(tok().getLoc(),
                "expected a 'rule', 'learned rule' or 'layer'; the file "
                "defines nothing");
    return std::nullopt;
  }
  return module;
}

bool Parser::parseProgram(Program &program) {
  if (consumeIf(TokenKind::KwLearned)) {
    if (!expect(TokenKind::KwRule, "'rule' after 'learned'"))
      return false;
    program.kind = Program::LearnedRule;
  } else if (consumeIf(TokenKind::KwRule)) {
    program.kind = Program::Rule;
  } else if (consumeIf(TokenKind::KwLayer)) {
    program.kind = Program::Layer;
  } else {
    errorExpected("'rule', 'learned rule' or 'layer'", /*atToken=*/true);
    return false;
  }
  if (!tok().is(TokenKind::Identifier)) {
    errorExpected(llvm::Twine("the name of the ") + program.kindName());
    return false;
  }
  program.loc = tok().getLoc();
  program.name = consume().text.str();
  if (!parseParams(program))
    return false;

  llvm::SMLoc open = tok().getLoc();
  if (!expect(TokenKind::LBrace, llvm::Twine("'{' to open the body of ") +
                                     program.kindName() + " '" + program.name +
                                     "'"))
    return false;
  while (!tok().is(TokenKind::RBrace)) {
    if (tok().is(TokenKind::Eof)) {
      diags.error(tok().getLoc(), llvm::Twine("expected '}' to close the body "
                                              "of ") +
                                      program.kindName() + " '" + program.name +
                                      "'");
      diags.note(open, "the body was opened here");
      return false;
    }
    if (consumeIf(TokenKind::Semicolon))
      continue;
    if (program.body.size() == kMaxStatements) {
      diags.error(tok().getLoc(),
                  llvm::Twine("too many statements in the body of ") +
                      program.kindName() + " '" + program.name +
                      "' (the limit is " + llvm::Twine(kMaxStatements) + ")");
      return false;
    }
    StmtPtr stmt = parseStmt(program);
    if (!stmt)
      return false;
    program.body.push_back(std::move(stmt));
  }
  program.bodyEnd = tok().getLoc();
  consume();
  return true;
}

bool Parser::parseParams(Program &program) {
  if (!expect(TokenKind::LParen, llvm::Twine("'(' after the name of ") +
                                     program.kindName() + " '" + program.name +
                                     "'"))
    return false;
  while (!tok().is(TokenKind::RParen)) {
    Param param;
    param.isConst = consumeIf(TokenKind::KwConst);
    if (!tok().is(TokenKind::Identifier)) {
      errorExpected(program.isRule() ? "a hyperparameter name"
                                     : "a parameter name");
      return false;
    }
    param.loc = tok().getLoc();
    param.name = consume().text.str();
    if (!expect(TokenKind::Equal,
                "'=' and a default value after '" + param.name + "'"))
      return false;
    param.valueLoc = tok().getLoc();
    bool negative = false;
    if (tok().is(TokenKind::Minus) || tok().is(TokenKind::Plus))
      negative = consume().is(TokenKind::Minus);
    if (!tok().is(TokenKind::Number)) {
      errorExpected("a number as the default of '" + param.name + "'");
      return false;
    }
    Token number = consume();
    param.value = negative ? -number.number : number.number;
    param.isInteger = number.isInteger;
    program.params.push_back(std::move(param));
    if (!consumeIf(TokenKind::Comma) && !tok().is(TokenKind::RParen)) {
      errorExpected("',' or ')' in the parameter list");
      return false;
    }
  }
  consume();
  return true;
}

bool Parser::parseDims(std::vector<ExprPtr> &dims) {
  if (!consumeIf(TokenKind::LBracket))
    return true;
  do {
    ExprPtr dim = parseExpr();
    if (!dim)
      return false;
    dims.push_back(std::move(dim));
  } while (consumeIf(TokenKind::Comma));
  return expect(TokenKind::RBracket, "']' after the sizes");
}

bool Parser::parseDeclItems(Stmt::Kind kind, std::vector<DeclItem> &items) {
  do {
    if (!tok().is(TokenKind::Identifier)) {
      errorExpected("a name to declare");
      return false;
    }
    DeclItem item;
    item.loc = tok().getLoc();
    item.name = consume().text.str();
    if (!parseDims(item.dims))
      return false;
    if (kind == Stmt::StateK) {
      if (!expect(TokenKind::Equal,
                  "'=' and the initial value of state '" + item.name + "'"))
        return false;
    } else if (!consumeIf(TokenKind::Equal)) {
      items.push_back(std::move(item));
      continue;
    }
    item.init = parseExpr();
    if (!item.init)
      return false;
    items.push_back(std::move(item));
  } while (consumeIf(TokenKind::Comma));
  return true;
}

bool Parser::parseTargets(std::vector<DeclItem> &targets) {
  do {
    if (!tok().is(TokenKind::Identifier)) {
      errorExpected("a name");
      return false;
    }
    DeclItem item;
    item.loc = tok().getLoc();
    item.name = consume().text.str();
    targets.push_back(std::move(item));
  } while (consumeIf(TokenKind::Comma));
  return true;
}

/// Words that begin a branch or a loop in the languages that papers' rules
/// are written in (pseudocode, Python, C).
static bool isControlWord(llvm::StringRef name) {
  return name == "if" || name == "else" || name == "for" || name == "while";
}

StmtPtr Parser::parseStmt(const Program &program) {
  llvm::SMLoc loc = tok().getLoc();
  Stmt::Kind kind;
  switch (tok().kind) {
  case TokenKind::KwState:
  case TokenKind::KwWeights:
  case TokenKind::KwInput: {
    kind = tok().is(TokenKind::KwState)     ? Stmt::StateK
           : tok().is(TokenKind::KwWeights) ? Stmt::WeightsK
                                            : Stmt::InputK;
    consume();
    std::vector<DeclItem> items;
    if (!parseDeclItems(kind, items))
      return nullptr;
    return std::make_unique<DeclStmt>(kind, loc, std::move(items));
  }
  case TokenKind::KwLet:
  case TokenKind::KwOutput:
    kind = tok().is(TokenKind::KwLet) ? Stmt::LetK : Stmt::OutputK;
    consume();
    break;
  case TokenKind::Identifier:
    // `row state r = 0`, `col state c = 0`: contextual words, only before
    // 'state' (no assignment target is followed by 'state'), so that `row`
    // and `col` stay free as names.
    if ((tok().text == "row" || tok().text == "col") &&
        peek().is(TokenKind::KwState)) {
      AxisKind axis = tok().text == "row" ? AxisKind::Row : AxisKind::Col;
      consume();
      consume();
      std::vector<DeclItem> items;
      if (!parseDeclItems(Stmt::StateK, items))
        return nullptr;
      return std::make_unique<DeclStmt>(Stmt::StateK, loc, std::move(items),
                                        axis);
    }
    kind = Stmt::AssignK;
    break;
  default:
    errorExpected("a statement ('state', 'weights', 'input', 'let', "
                  "'output' or an assignment)",
                  /*atToken=*/true);
    return nullptr;
  }
  std::vector<DeclItem> targets;
  if (!parseTargets(targets))
    return nullptr;
  TokenKind op = tok().kind;
  llvm::SMLoc opLoc = tok().getLoc();
  bool compound = op == TokenKind::PlusEqual || op == TokenKind::MinusEqual ||
                  op == TokenKind::StarEqual || op == TokenKind::SlashEqual;
  if (op != TokenKind::Equal && !(compound && kind == Stmt::AssignK)) {
    if (kind == Stmt::AssignK && targets.size() == 1 &&
        isControlWord(targets.back().name))
      // Not keywords (a state may be named 'if'), but never followed by an
      // assignment: the user reached for control flow the language lacks.
      diags.error(targets.back().loc,
                  "'" + targets.back().name +
                      "' statements do not exist: a body is straight-line "
                      "code, without branches or loops; choose between "
                      "values with select(condition, a, b)");
    else if (kind == Stmt::AssignK && targets.size() == 1 &&
             op == TokenKind::LParen)
      diags.error(opLoc, "a call is not a statement: bind its value, e.g. "
                         "'let x = " +
                             targets.back().name + "(...)'");
    else if (kind == Stmt::AssignK && targets.size() == 1 &&
             op == TokenKind::LBracket)
      diags.error(opLoc, "cannot assign to one element of '" +
                             targets.back().name +
                             "': a vector is assigned as a whole (select() "
                             "can change some of its elements)");
    else
      errorExpected(kind == Stmt::AssignK
                        ? "'=', '+=', '-=', '*=' or '/=' after '" +
                              targets.back().name + "'"
                        : llvm::Twine("'=' after '") + targets.back().name +
                              "'");
    return nullptr;
  }
  consume();
  if (compound && targets.size() != 1) {
    diags.error(opLoc,
                "'" + spell(op).trim('\'') + "' takes exactly one target");
    return nullptr;
  }
  ExprPtr value = parseExpr();
  if (!value)
    return nullptr;
  return std::make_unique<BindStmt>(kind, loc, std::move(targets), op, opLoc,
                                    std::move(value));
}

//===----------------------------------------------------------------------===//
// Expressions
//===----------------------------------------------------------------------===//

ExprPtr Parser::parseExpr() {
  DepthGuard guard(*this);
  if (!guard.ok)
    return nullptr;
  return parseOr();
}

// Python's precedence: 'or' < 'and' < 'not' < comparisons, so that
// 'not a < b and c > d' is '(not (a < b)) and (c > d)'.
ExprPtr Parser::parseOr() {
  ExprPtr lhs = parseAnd();
  ChainGuard chain(*this);
  while (lhs && tok().is(TokenKind::KwOr)) {
    if (!chain.step())
      return nullptr;
    Token op = consume();
    ExprPtr rhs = parseAnd();
    if (!rhs)
      return nullptr;
    lhs = std::make_unique<BinaryExpr>(op.getLoc(), op.kind, std::move(lhs),
                                       std::move(rhs));
  }
  return lhs;
}

ExprPtr Parser::parseAnd() {
  ExprPtr lhs = parseNot();
  ChainGuard chain(*this);
  while (lhs && tok().is(TokenKind::KwAnd)) {
    if (!chain.step())
      return nullptr;
    Token op = consume();
    ExprPtr rhs = parseNot();
    if (!rhs)
      return nullptr;
    lhs = std::make_unique<BinaryExpr>(op.getLoc(), op.kind, std::move(lhs),
                                       std::move(rhs));
  }
  return lhs;
}

ExprPtr Parser::parseNot() {
  if (!tok().is(TokenKind::KwNot))
    return parseComparison();
  DepthGuard guard(*this);
  if (!guard.ok)
    return nullptr;
  Token op = consume();
  ExprPtr operand = parseNot();
  if (!operand)
    return nullptr;
  return std::make_unique<UnaryExpr>(op.getLoc(), op.kind, std::move(operand));
}

static bool isComparison(TokenKind k) {
  return k == TokenKind::Less || k == TokenKind::LessEqual ||
         k == TokenKind::Greater || k == TokenKind::GreaterEqual ||
         k == TokenKind::EqualEqual || k == TokenKind::NotEqual;
}

ExprPtr Parser::parseComparison() {
  ExprPtr lhs = parseAdditive();
  if (!lhs || !isComparison(tok().kind))
    return lhs;
  Token op = consume();
  ExprPtr rhs = parseAdditive();
  if (!rhs)
    return nullptr;
  if (isComparison(tok().kind)) {
    diags.error(tok().getLoc(), "comparisons cannot be chained; combine them "
                                "with 'and', e.g. 'a < b and b < c'");
    return nullptr;
  }
  return std::make_unique<BinaryExpr>(op.getLoc(), op.kind, std::move(lhs),
                                      std::move(rhs));
}

ExprPtr Parser::parseAdditive() {
  ExprPtr lhs = parseMultiplicative();
  ChainGuard chain(*this);
  while (lhs && (tok().is(TokenKind::Plus) || tok().is(TokenKind::Minus))) {
    if (!chain.step())
      return nullptr;
    Token op = consume();
    ExprPtr rhs = parseMultiplicative();
    if (!rhs)
      return nullptr;
    lhs = std::make_unique<BinaryExpr>(op.getLoc(), op.kind, std::move(lhs),
                                       std::move(rhs));
  }
  return lhs;
}

ExprPtr Parser::parseMultiplicative() {
  ExprPtr lhs = parseUnary();
  ChainGuard chain(*this);
  while (lhs && (tok().is(TokenKind::Star) || tok().is(TokenKind::Slash) ||
                 tok().is(TokenKind::At))) {
    if (!chain.step())
      return nullptr;
    Token op = consume();
    ExprPtr rhs = parseUnary();
    if (!rhs)
      return nullptr;
    lhs = std::make_unique<BinaryExpr>(op.getLoc(), op.kind, std::move(lhs),
                                       std::move(rhs));
  }
  return lhs;
}

ExprPtr Parser::parseUnary() {
  if (tok().is(TokenKind::Minus) || tok().is(TokenKind::Plus)) {
    DepthGuard guard(*this);
    if (!guard.ok)
      return nullptr;
    Token op = consume();
    ExprPtr operand = parseUnary();
    if (!operand)
      return nullptr;
    if (op.is(TokenKind::Plus))
      return operand;
    return std::make_unique<UnaryExpr>(op.getLoc(), op.kind,
                                       std::move(operand));
  }
  return parsePower();
}

ExprPtr Parser::parsePower() {
  ExprPtr base = parsePostfix();
  if (!base || !tok().is(TokenKind::StarStar))
    return base;
  DepthGuard guard(*this);
  if (!guard.ok)
    return nullptr;
  Token op = consume();
  ExprPtr exponent = parseUnary(); // Right-associative: a ** b ** c.
  if (!exponent)
    return nullptr;
  return std::make_unique<BinaryExpr>(op.getLoc(), op.kind, std::move(base),
                                      std::move(exponent));
}

ExprPtr Parser::parsePostfix() {
  ExprPtr expr = parsePrimary();
  ChainGuard chain(*this);
  while (expr) {
    if ((tok().is(TokenKind::LParen) || tok().is(TokenKind::LBracket)) &&
        !chain.step())
      return nullptr;
    if (tok().is(TokenKind::LParen)) {
      auto *name = llvm::dyn_cast<NameExpr>(expr.get());
      if (!name) {
        diags.error(tok().getLoc(), "only functions and weights can be called");
        return nullptr;
      }
      consume();
      std::vector<Argument> args;
      if (!parseArguments(args))
        return nullptr;
      expr = std::make_unique<CallExpr>(name->getLoc(), name->name,
                                        std::move(args));
    } else if (tok().is(TokenKind::LBracket)) {
      llvm::SMLoc loc = consume().getLoc();
      ExprPtr index = parseExpr();
      if (!index || !expect(TokenKind::RBracket, "']' after the index"))
        return nullptr;
      expr =
          std::make_unique<IndexExpr>(loc, std::move(expr), std::move(index));
    } else {
      break;
    }
  }
  return expr;
}

bool Parser::parseArguments(std::vector<Argument> &args) {
  while (!tok().is(TokenKind::RParen)) {
    Argument arg;
    // A keyword before ':' is a (wrong) argument name too ('output: 3',
    // 'input: 2'), which the callee then names as such.
    bool keyword =
        tok().kind >= TokenKind::KwRule && tok().kind <= TokenKind::KwNot;
    if ((tok().is(TokenKind::Identifier) || keyword) &&
        peek().is(TokenKind::Colon)) {
      arg.nameLoc = tok().getLoc();
      arg.name = consume().text.str();
      consume();
    }
    arg.value = parseExpr();
    if (!arg.value)
      return false;
    args.push_back(std::move(arg));
    if (!consumeIf(TokenKind::Comma) && !tok().is(TokenKind::RParen)) {
      errorExpected("',' or ')' in the argument list");
      return false;
    }
  }
  consume();
  return true;
}

ExprPtr Parser::parsePrimary() {
  const Token &t = tok();
  switch (t.kind) {
  case TokenKind::Number: {
    Token n = consume();
    return std::make_unique<NumberExpr>(n.getLoc(), n.number, n.isInteger);
  }
  case TokenKind::Identifier: {
    Token n = consume();
    return std::make_unique<NameExpr>(n.getLoc(), n.text.str());
  }
  case TokenKind::LParen: {
    // parseExpr guards the nesting: one level per parenthesis.
    consume();
    ExprPtr inner = parseExpr();
    if (!inner)
      return nullptr;
    if (tok().is(TokenKind::Comma)) {
      // Python's tuple: a feature vector is a vector literal here.
      diags.error(tok().getLoc(), "a parenthesized list is not a value; a "
                                  "vector of several values is written as a "
                                  "vector literal, e.g. '[g, p]'");
      return nullptr;
    }
    if (!expect(TokenKind::RParen, "')'"))
      return nullptr;
    return inner;
  }
  case TokenKind::LBracket: {
    // A vector literal; parseExpr guards the nesting of its elements.
    llvm::SMLoc loc = consume().getLoc();
    std::vector<ExprPtr> elements;
    while (!tok().is(TokenKind::RBracket)) {
      ExprPtr element = parseExpr();
      if (!element)
        return nullptr;
      elements.push_back(std::move(element));
      if (!consumeIf(TokenKind::Comma) && !tok().is(TokenKind::RBracket)) {
        errorExpected("',' or ']' in the vector literal");
        return nullptr;
      }
    }
    consume();
    if (elements.empty()) {
      diags.error(loc, "a vector literal needs at least one element, e.g. "
                       "'[g, m]'");
      return nullptr;
    }
    return std::make_unique<ListExpr>(loc, std::move(elements));
  }
  default:
    errorExpected("an expression");
    return nullptr;
  }
}

std::optional<Module> optim::parseModule(DiagnosticEngine &diags) {
  llvm::SourceMgr &sm = diags.getSourceMgr();
  llvm::StringRef buffer = sm.getMemoryBuffer(sm.getMainFileID())->getBuffer();
  Lexer lexer(buffer, diags);
  std::vector<Token> tokens;
  while (true) {
    tokens.push_back(lexer.next());
    if (tokens.back().is(TokenKind::Eof) || diags.tooManyErrors())
      break;
    if (tokens.back().is(TokenKind::Error) &&
        tokens.back().text.empty()) // Unterminated comment: nothing follows.
      break;
  }
  if (diags.hasErrors())
    return std::nullopt;
  Parser parser(std::move(tokens), diags);
  return parser.parseModule();
}
