//===- Lexer.cpp - tokens of the .optim language --------------------------===//

#include "optim/Frontend/Lexer.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/Format.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/Support/Error.h"

#include <string>

using namespace optim;

llvm::StringRef optim::spell(TokenKind kind) {
  switch (kind) {
  case TokenKind::Eof:
    return "end of file";
  case TokenKind::Error:
    return "invalid token";
  case TokenKind::Identifier:
    return "identifier";
  case TokenKind::Number:
    return "number";
  case TokenKind::KwRule:
    return "'rule'";
  case TokenKind::KwLearned:
    return "'learned'";
  case TokenKind::KwLayer:
    return "'layer'";
  case TokenKind::KwConst:
    return "'const'";
  case TokenKind::KwState:
    return "'state'";
  case TokenKind::KwWeights:
    return "'weights'";
  case TokenKind::KwInput:
    return "'input'";
  case TokenKind::KwOutput:
    return "'output'";
  case TokenKind::KwLet:
    return "'let'";
  case TokenKind::LParen:
    return "'('";
  case TokenKind::RParen:
    return "')'";
  case TokenKind::LBrace:
    return "'{'";
  case TokenKind::RBrace:
    return "'}'";
  case TokenKind::LBracket:
    return "'['";
  case TokenKind::RBracket:
    return "']'";
  case TokenKind::Comma:
    return "','";
  case TokenKind::Colon:
    return "':'";
  case TokenKind::Semicolon:
    return "';'";
  case TokenKind::Equal:
    return "'='";
  case TokenKind::PlusEqual:
    return "'+='";
  case TokenKind::MinusEqual:
    return "'-='";
  case TokenKind::StarEqual:
    return "'*='";
  case TokenKind::SlashEqual:
    return "'/='";
  case TokenKind::Plus:
    return "'+'";
  case TokenKind::Minus:
    return "'-'";
  case TokenKind::Star:
    return "'*'";
  case TokenKind::StarStar:
    return "'**'";
  case TokenKind::Slash:
    return "'/'";
  case TokenKind::At:
    return "'@'";
  case TokenKind::Less:
    return "'<'";
  case TokenKind::LessEqual:
    return "'<='";
  case TokenKind::Greater:
    return "'>'";
  case TokenKind::GreaterEqual:
    return "'>='";
  case TokenKind::EqualEqual:
    return "'=='";
  case TokenKind::NotEqual:
    return "'!='";
  case TokenKind::KwAnd:
    return "'and'";
  case TokenKind::KwOr:
    return "'or'";
  case TokenKind::KwNot:
    return "'not'";
  }
  return "token";
}

Token Lexer::make(TokenKind kind, const char *start) {
  Token tok;
  tok.kind = kind;
  tok.text = llvm::StringRef(start, cur - start);
  return tok;
}

bool Lexer::skipTrivia() {
  const char *end = buffer.end();
  while (cur < end) {
    char c = *cur;
    if (c == '\r' && (cur + 1 == end || cur[1] != '\n')) {
      // A carriage return alone ends a line for the diagnostics' printer
      // (llvm::SourceMgr) but not for their line numbers, nor for '//'
      // comments: refused rather than misread (classic Mac OS line ends).
      diags.error(llvm::SMLoc::getFromPointer(cur),
                  "a carriage return (CR) without a line feed: this file's "
                  "lines must end with LF or CRLF");
      cur = end;
      return false;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
        c == '\v') {
      ++cur;
    } else if (c == '/' && cur + 1 < end && cur[1] == '/') {
      while (cur < end && *cur != '\n' &&
             !(*cur == '\r' && (cur + 1 == end || cur[1] != '\n')))
        ++cur;
    } else if (c == '/' && cur + 1 < end && cur[1] == '*') {
      const char *start = cur;
      cur += 2;
      while (cur + 1 < end && !(cur[0] == '*' && cur[1] == '/'))
        ++cur;
      if (cur + 1 >= end) {
        cur = end;
        diags.error(llvm::SMLoc::getFromPointer(start),
                    "unterminated comment: '/*' without a matching '*/'");
        return false;
      }
      cur += 2;
    } else {
      break;
    }
  }
  return true;
}

Token Lexer::next() {
  if (!skipTrivia())
    return make(TokenKind::Error, cur);
  const char *start = cur;
  if (cur >= buffer.end())
    return make(TokenKind::Eof, cur);

  char c = *cur++;
  auto peekIs = [&](char expected) {
    if (cur < buffer.end() && *cur == expected) {
      ++cur;
      return true;
    }
    return false;
  };
  switch (c) {
  case '(':
    return make(TokenKind::LParen, start);
  case ')':
    return make(TokenKind::RParen, start);
  case '{':
    return make(TokenKind::LBrace, start);
  case '}':
    return make(TokenKind::RBrace, start);
  case '[':
    return make(TokenKind::LBracket, start);
  case ']':
    return make(TokenKind::RBracket, start);
  case ',':
    return make(TokenKind::Comma, start);
  case ':':
    return make(TokenKind::Colon, start);
  case ';':
    return make(TokenKind::Semicolon, start);
  case '@':
    return make(TokenKind::At, start);
  case '=':
    return make(peekIs('=') ? TokenKind::EqualEqual : TokenKind::Equal, start);
  case '+':
    return make(peekIs('=') ? TokenKind::PlusEqual : TokenKind::Plus, start);
  case '-':
    return make(peekIs('=') ? TokenKind::MinusEqual : TokenKind::Minus, start);
  case '/':
    return make(peekIs('=') ? TokenKind::SlashEqual : TokenKind::Slash, start);
  case '*':
    if (peekIs('*'))
      return make(TokenKind::StarStar, start);
    return make(peekIs('=') ? TokenKind::StarEqual : TokenKind::Star, start);
  case '<':
    return make(peekIs('=') ? TokenKind::LessEqual : TokenKind::Less, start);
  case '>':
    return make(peekIs('=') ? TokenKind::GreaterEqual : TokenKind::Greater,
                start);
  case '!':
    if (peekIs('='))
      return make(TokenKind::NotEqual, start);
    diags.error(llvm::SMLoc::getFromPointer(start),
                "unexpected character '!'; did you mean '!='?");
    return make(TokenKind::Error, start);
  case '^':
    diags.error(llvm::SMLoc::getFromPointer(start),
                "unexpected character '^'; a power is written 'x ** y'");
    return make(TokenKind::Error, start);
  case '%':
    diags.error(llvm::SMLoc::getFromPointer(start),
                "unexpected character '%'; the remainder is 'mod(x, y)'");
    return make(TokenKind::Error, start);
  case '&':
  case '|': {
    // '&&' and '||' are one mistake, reported once.
    bool doubled = peekIs(c);
    std::string op = doubled ? std::string(2, c) : std::string(1, c);
    diags.error(llvm::SMLoc::getFromPointer(start),
                "unexpected '" + op + "'; the logical operators are 'and', "
                "'or' and 'not', e.g. 'select(a > 0 and b > 0, x, y)'");
    return make(TokenKind::Error, start);
  }
  default:
    break;
  }
  if (llvm::isDigit(c) ||
      (c == '.' && cur < buffer.end() && llvm::isDigit(*cur)))
    return lexNumber(start);
  if (llvm::isAlpha(c) || c == '_')
    return lexIdentifier(start);

  std::string shown;
  if (llvm::isPrint(c))
    shown = std::string("'") + c + "'";
  else
    shown = "with code " + llvm::utohexstr(static_cast<unsigned char>(c),
                                           /*LowerCase=*/false,
                                           /*Width=*/2)
                               .insert(0, "0x");
  diags.error(llvm::SMLoc::getFromPointer(start),
              "unexpected character " + shown);
  return make(TokenKind::Error, start);
}

Token Lexer::lexNumber(const char *start) {
  const char *end = buffer.end();
  bool isInteger = true;
  cur = start;
  while (cur < end && llvm::isDigit(*cur))
    ++cur;
  if (cur < end && *cur == '.') {
    isInteger = false;
    ++cur;
    while (cur < end && llvm::isDigit(*cur))
      ++cur;
  }
  if (cur < end && (*cur == 'e' || *cur == 'E')) {
    isInteger = false;
    ++cur;
    if (cur < end && (*cur == '+' || *cur == '-'))
      ++cur;
    if (cur >= end || !llvm::isDigit(*cur)) {
      diags.error(llvm::SMLoc::getFromPointer(start),
                  "malformed number '" + llvm::StringRef(start, cur - start) +
                      "': expected digits in the exponent");
      return make(TokenKind::Error, start);
    }
    while (cur < end && llvm::isDigit(*cur))
      ++cur;
  }
  // A letter glued to a number ('3x', '1.5f') is a typo, not two tokens.
  if (cur < end && (llvm::isAlpha(*cur) || *cur == '_')) {
    while (cur < end && (llvm::isAlnum(*cur) || *cur == '_'))
      ++cur;
    diags.error(llvm::SMLoc::getFromPointer(start),
                "malformed number '" + llvm::StringRef(start, cur - start) +
                    "'");
    return make(TokenKind::Error, start);
  }
  Token tok = make(TokenKind::Number, start);
  tok.isInteger = isInteger;
  // APFloat rather than strtod: the result must not depend on the locale of
  // the host program that embeds the compiler.
  llvm::APFloat value(llvm::APFloat::IEEEdouble());
  auto status =
      value.convertFromString(tok.text, llvm::APFloat::rmNearestTiesToEven);
  if (!status || (*status & llvm::APFloat::opOverflow)) {
    if (!status)
      llvm::consumeError(status.takeError());
    diags.error(tok.getLoc(), "number '" + tok.text +
                                  "' is out of range (larger than the "
                                  "largest double, about 1.8e308)");
    tok.kind = TokenKind::Error;
    return tok;
  }
  // Underflow to a denormal or zero is the nearest double: keep it.
  tok.number = value.convertToDouble();
  return tok;
}

Token Lexer::lexIdentifier(const char *start) {
  const char *end = buffer.end();
  while (cur < end && (llvm::isAlnum(*cur) || *cur == '_'))
    ++cur;
  Token tok = make(TokenKind::Identifier, start);
  tok.kind = llvm::StringSwitch<TokenKind>(tok.text)
                 .Case("rule", TokenKind::KwRule)
                 .Case("learned", TokenKind::KwLearned)
                 .Case("layer", TokenKind::KwLayer)
                 .Case("const", TokenKind::KwConst)
                 .Case("state", TokenKind::KwState)
                 .Case("weights", TokenKind::KwWeights)
                 .Case("input", TokenKind::KwInput)
                 .Case("output", TokenKind::KwOutput)
                 .Case("let", TokenKind::KwLet)
                 .Case("and", TokenKind::KwAnd)
                 .Case("or", TokenKind::KwOr)
                 .Case("not", TokenKind::KwNot)
                 .Default(TokenKind::Identifier);
  return tok;
}
