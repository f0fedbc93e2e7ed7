//===- InputOrder.h - a step's inputs matched to a rule's (runtime-internal) -//
//
// Internal to the runtime (not installed): the CPU and CUDA optimizers and
// optim::Trajectory take a rule's per-coordinate inputs by name and refuse
// the same mistakes with the same words.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_INPUTORDER_H
#define OPTIM_RUNTIME_LIB_INPUTORDER_H

#include "QuotedList.h"
#include "optim/Rule.h"

#include <algorithm>
#include <string>
#include <vector>

namespace optim {
namespace detail {

/// The `tensors` of each of `inputs` (a list of {name, tensors}) in the
/// declaration order of the rule's inputs (RuleInfo::inputs, the order of
/// the chunk table's input pointers). Throws optim::Error, starting with
/// `fn`, for a name the rule does not declare, one given twice and one
/// missing.
template <typename Input>
std::vector<const decltype(Input::tensors) *>
orderInputs(const RuleInfo &ri, const std::vector<Input> &inputs,
            const std::string &fn) {
  std::vector<const decltype(Input::tensors) *> ordered(ri.inputs.size(),
                                                        nullptr);
  for (const Input &in : inputs) {
    auto it = std::find(ri.inputs.begin(), ri.inputs.end(), in.name);
    if (it == ri.inputs.end())
      throw Error(fn + ": rule '" + ri.name + "' has no input '" + in.name +
                  "' (" +
                  (ri.inputs.empty() ? std::string("it has none")
                                     : "its inputs: " + quotedList(ri.inputs)) +
                  ")");
    size_t k = size_t(it - ri.inputs.begin());
    if (ordered[k])
      throw Error(fn + ": input '" + in.name + "' is given twice");
    ordered[k] = &in.tensors;
  }
  std::vector<std::string> missing;
  for (size_t k = 0; k < ordered.size(); ++k)
    if (!ordered[k])
      missing.push_back(ri.inputs[k]);
  if (!missing.empty())
    throw Error(fn + ": rule '" + ri.name + "' needs its input" +
                (missing.size() == 1 ? " " : "s ") + quotedList(missing) +
                " with every step; " +
                (missing.size() == 1 ? "it is" : "they are") + " missing");
  return ordered;
}

/// The refusal of a step that takes gradients only, for a rule with inputs:
/// "<fn>: rule 'x' takes the per-coordinate input 'h' with every step,
/// besides the gradients: call <call>".
inline std::string inputsRequired(const RuleInfo &ri, const std::string &fn,
                                  const std::string &call) {
  return fn + ": rule '" + ri.name + "' takes the per-coordinate input" +
         (ri.inputs.size() == 1 ? " " : "s ") + quotedList(ri.inputs) +
         " with every step, besides the gradients: call " + call;
}

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_INPUTORDER_H
