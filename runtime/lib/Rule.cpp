//===- Rule.cpp - a compiled update rule ----------------------------------===//

#include "optim/Rule.h"

using namespace optim;

int RuleInfo::findHyper(const std::string &hyperName) const {
  for (size_t i = 0; i < hypers.size(); ++i)
    if (hypers[i].name == hyperName)
      return static_cast<int>(i);
  return -1;
}

const RuleInfo &Rule::info() const {
  if (!info_)
    throw Error("empty optim::Rule: compile or load a rule first");
  return *info_;
}
