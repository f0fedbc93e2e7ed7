//===- Lexer.h - tokens of the .optim language ------------------*- C++ -*-===//

#ifndef OPTIM_FRONTEND_LEXER_H
#define OPTIM_FRONTEND_LEXER_H

#include "optim/Frontend/Diagnostics.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"

namespace optim {

enum class TokenKind {
  Eof,
  Error, // A malformed token; the lexer has reported it.
  Identifier,
  Number,
  // Keywords.
  KwRule,
  KwLearned,
  KwLayer,
  KwConst,
  KwState,
  KwWeights,
  KwInput,
  KwOutput,
  KwLet,
  KwAnd,
  KwOr,
  KwNot,
  // Punctuation.
  LParen,
  RParen,
  LBrace,
  RBrace,
  LBracket,
  RBracket,
  Comma,
  Colon,
  Semicolon,
  Equal,
  PlusEqual,
  MinusEqual,
  StarEqual,
  SlashEqual,
  Plus,
  Minus,
  Star,
  StarStar,
  Slash,
  At,
  Less,
  LessEqual,
  Greater,
  GreaterEqual,
  EqualEqual,
  NotEqual,
};

/// A short human-readable spelling of a token kind, for diagnostics.
llvm::StringRef spell(TokenKind kind);

struct Token {
  TokenKind kind = TokenKind::Eof;
  llvm::StringRef text;
  /// The value of a Number token (finite, or the lexer reported an error).
  double number = 0.0;
  /// True when a Number token was written without '.', exponent: 20, not 20.0.
  bool isInteger = false;

  llvm::SMLoc getLoc() const {
    return llvm::SMLoc::getFromPointer(text.data());
  }
  bool is(TokenKind k) const { return kind == k; }
};

class Lexer {
public:
  /// Lexes `buffer`, which must outlive the lexer and the tokens.
  Lexer(llvm::StringRef buffer, DiagnosticEngine &diags)
      : buffer(buffer), cur(buffer.begin()), diags(diags) {}

  Token next();

private:
  Token make(TokenKind kind, const char *start);
  Token lexNumber(const char *start);
  Token lexIdentifier(const char *start);
  /// Skips blanks and comments; false when a comment is unterminated.
  bool skipTrivia();

  llvm::StringRef buffer;
  const char *cur;
  DiagnosticEngine &diags;
};

} // namespace optim

#endif // OPTIM_FRONTEND_LEXER_H
