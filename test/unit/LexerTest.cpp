//===- LexerTest.cpp - unit tests of the .optim lexer ---------------------===//

#include "optim/Frontend/Lexer.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "gtest/gtest.h"

#include <string>
#include <vector>

using namespace optim;

namespace {

struct Lexed {
  std::vector<Token> tokens;
  std::string diagnostics;
  unsigned errors = 0;
};

/// Lexes `source` to the end, keeping the buffer alive in `sm`.
Lexed lex(llvm::SourceMgr &sm, llvm::StringRef source) {
  sm.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(source, "t.optim"),
                        llvm::SMLoc());
  llvm::StringRef buffer = sm.getMemoryBuffer(sm.getMainFileID())->getBuffer();
  Lexed result;
  llvm::raw_string_ostream os(result.diagnostics);
  DiagnosticEngine diags(sm, os);
  Lexer lexer(buffer, diags);
  for (unsigned i = 0; i < 1000; ++i) { // Bounded: a lexer bug must not hang.
    Token t = lexer.next();
    result.tokens.push_back(t);
    if (t.is(TokenKind::Eof))
      break;
  }
  result.errors = diags.getNumErrors();
  return result;
}

std::vector<TokenKind> kinds(const Lexed &l) {
  std::vector<TokenKind> k;
  for (const Token &t : l.tokens)
    k.push_back(t.kind);
  return k;
}

TEST(Lexer, KeywordsIdentifiersAndPunctuation) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "learned rule r(const k = 1) { state s[2] = 0 }");
  std::vector<TokenKind> expected = {
      TokenKind::KwLearned, TokenKind::KwRule,  TokenKind::Identifier,
      TokenKind::LParen,    TokenKind::KwConst, TokenKind::Identifier,
      TokenKind::Equal,     TokenKind::Number,  TokenKind::RParen,
      TokenKind::LBrace,    TokenKind::KwState, TokenKind::Identifier,
      TokenKind::LBracket,  TokenKind::Number,  TokenKind::RBracket,
      TokenKind::Equal,     TokenKind::Number,  TokenKind::RBrace,
      TokenKind::Eof};
  EXPECT_EQ(kinds(l), expected);
  EXPECT_EQ(l.errors, 0u);
  EXPECT_EQ(l.tokens[2].text, "r");
}

TEST(Lexer, OperatorsAreLongestMatch) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "** * *= -= += /= <= >= == != < > @ -");
  std::vector<TokenKind> expected = {
      TokenKind::StarStar,   TokenKind::Star,         TokenKind::StarEqual,
      TokenKind::MinusEqual, TokenKind::PlusEqual,    TokenKind::SlashEqual,
      TokenKind::LessEqual,  TokenKind::GreaterEqual, TokenKind::EqualEqual,
      TokenKind::NotEqual,   TokenKind::Less,         TokenKind::Greater,
      TokenKind::At,         TokenKind::Minus,        TokenKind::Eof};
  EXPECT_EQ(kinds(l), expected);
}

TEST(Lexer, Numbers) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "20 0.5 1e-3 .25 2.5E+2 4.");
  ASSERT_EQ(l.tokens.size(), 7u);
  EXPECT_TRUE(l.tokens[0].isInteger);
  EXPECT_DOUBLE_EQ(l.tokens[0].number, 20.0);
  EXPECT_FALSE(l.tokens[1].isInteger);
  EXPECT_DOUBLE_EQ(l.tokens[1].number, 0.5);
  EXPECT_DOUBLE_EQ(l.tokens[2].number, 1e-3);
  EXPECT_DOUBLE_EQ(l.tokens[3].number, 0.25);
  EXPECT_DOUBLE_EQ(l.tokens[4].number, 250.0);
  EXPECT_DOUBLE_EQ(l.tokens[5].number, 4.0);
  EXPECT_EQ(l.errors, 0u);
}

TEST(Lexer, NumberOutOfRangeIsAnError) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "1e999");
  EXPECT_EQ(l.tokens[0].kind, TokenKind::Error);
  EXPECT_EQ(l.errors, 1u);
  EXPECT_NE(l.diagnostics.find("t.optim:1:1: error: number '1e999' is out of "
                               "range"),
            std::string::npos)
      << l.diagnostics;
}

TEST(Lexer, MalformedNumbers) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "1e+ 3x");
  EXPECT_EQ(l.errors, 2u);
  EXPECT_NE(l.diagnostics.find("expected digits in the exponent"),
            std::string::npos);
  EXPECT_NE(l.diagnostics.find("malformed number '3x'"), std::string::npos);
}

TEST(Lexer, CommentsAreSkipped) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "a // line comment\n/* block\n comment */ b");
  std::vector<TokenKind> expected = {TokenKind::Identifier,
                                     TokenKind::Identifier, TokenKind::Eof};
  EXPECT_EQ(kinds(l), expected);
}

TEST(Lexer, UnterminatedCommentIsReportedAtItsStart) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "a\n  /* never closed");
  EXPECT_EQ(l.errors, 1u);
  EXPECT_NE(l.diagnostics.find("t.optim:2:3: error: unterminated comment"),
            std::string::npos)
      << l.diagnostics;
  EXPECT_EQ(l.tokens.back().kind, TokenKind::Eof);
}

TEST(Lexer, StrayAndBinaryCharacters) {
  llvm::SourceMgr sm;
  std::string source = "a $ b";
  source += '\0';
  source += "\x01\xff";
  Lexed l = lex(sm, source);
  EXPECT_EQ(l.errors, 4u) << l.diagnostics;
  EXPECT_NE(l.diagnostics.find("unexpected character '$'"), std::string::npos);
  EXPECT_NE(l.diagnostics.find("unexpected character with code 0x00"),
            std::string::npos);
  EXPECT_NE(l.diagnostics.find("unexpected character with code 0xFF"),
            std::string::npos);
  EXPECT_EQ(l.tokens.back().kind, TokenKind::Eof);
}

TEST(Lexer, EmptyInput) {
  llvm::SourceMgr sm;
  Lexed l = lex(sm, "");
  ASSERT_EQ(l.tokens.size(), 1u);
  EXPECT_EQ(l.tokens[0].kind, TokenKind::Eof);
}

} // namespace
