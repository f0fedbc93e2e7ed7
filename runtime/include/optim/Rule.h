//===- Rule.h - a compiled update rule, as the runtime sees it --*- C++ -*-===//
//
// Part of the runtime: no LLVM or MLIR header may be included here. A Rule is
// the description of a compiled rule (its signature) plus its kernel; it keeps
// whatever owns the kernel's code (a JIT engine, a loaded library) alive.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_RULE_H
#define OPTIM_RUNTIME_RULE_H

#include "optim/KernelABI.h"

#include <charconv>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace optim {

/// Every error of the runtime and the compiler API: the message says what
/// was wrong. An operation that throws has changed nothing.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The system refused a resource (threads, memory) that a valid request
/// needs: the C API reports it as OPTIM_ERROR_OUT_OF_MEMORY, with this
/// message, not as the caller's mistake.
class ResourceError : public Error {
public:
  using Error::Error;
};

enum class DType { F32, F64 };

inline const char *dtypeName(DType t) {
  return t == DType::F32 ? "f32" : "f64";
}
inline size_t dtypeSize(DType t) { return t == DType::F32 ? 4 : 8; }

struct HyperParam {
  std::string name;
  double defaultValue = 0.0;
  /// Compiled in: changing it needs a recompilation.
  bool isConst = false;
};

/// What a state or a reduction is shared along (KernelABI.h, version 10,
/// "Axes"). A parameter is seen as a stack of matrices [batch, rows, cols]
/// (its shape's last two dimensions; a 1-D tensor is one row): a Row value
/// is one per row (the same at every coordinate of the row), a Col value
/// one per column of each matrix. None: per coordinate (states) or over the
/// whole tensor (reductions).
/// Matrix: a function of each whole matrix (a newton_schulz reduction,
/// KernelABI.h version 11), one result per coordinate; never a state's.
enum class Axis { None, Row, Col, Matrix };
inline const char *axisName(Axis a) {
  return a == Axis::Row      ? "row"
         : a == Axis::Col    ? "col"
         : a == Axis::Matrix ? "matrix"
                             : "none";
}

struct StateSpec {
  std::string name;
  /// Per-coordinate size: 1 for a scalar state, N for `state h[N]`.
  /// Always 1 for a row or column state.
  int64_t size = 1;
  /// The value every coordinate starts from.
  double init = 0.0;
  /// `row state r`: one value per row of the parameter (Axis::Row), or per
  /// column (`col state`), instead of one per coordinate.
  Axis axis = Axis::None;
};

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
};

/// A reduction over a tensor (or every tensor, `global`) that the rule's
/// step needs before it can update a coordinate (KernelABI.h, version 6).
/// NewtonSchulz (axis Matrix) and the shape values Rows and Cols are
/// version 11 (KernelABI.h, "Matrix functions", "Shape values").
enum class ReductionKind { Sum, Mean, Norm, Max, Min, NewtonSchulz, Rows, Cols };
inline const char *reductionKindName(ReductionKind k) {
  switch (k) {
  case ReductionKind::Sum:
    return "sum";
  case ReductionKind::Mean:
    return "mean";
  case ReductionKind::Norm:
    return "norm";
  case ReductionKind::Max:
    return "max";
  case ReductionKind::Min:
    return "min";
  case ReductionKind::NewtonSchulz:
    return "newton_schulz";
  case ReductionKind::Rows:
    return "rows";
  case ReductionKind::Cols:
    return "cols";
  }
  return "?";
}

/// Shape values are filled in by the runtime, never computed by a kernel.
inline bool isShapeValue(ReductionKind k) {
  return k == ReductionKind::Rows || k == ReductionKind::Cols;
}
struct ReductionSpec {
  ReductionKind kind = ReductionKind::Sum;
  /// Over every coordinate of every parameter of the optimizer, instead of
  /// the coordinate's own tensor.
  bool global = false;
  /// 0, or 1 + the largest level of the reductions this one's operand
  /// depends on (KernelABI.h, version 9, "Nested reductions"): the stage of
  /// optim_reduce_ that computes it.
  unsigned level = 0;
  /// row_*(x) / col_*(x): one result per row (per column) of the tensor,
  /// reducing x along it (KernelABI.h, version 10). Never with `global`.
  /// Axis::Matrix exactly for NewtonSchulz.
  Axis axis = Axis::None;
  /// NewtonSchulz only (KernelABI.h, version 11, "Matrix functions"): the
  /// number of iterations, (a, b, c) and the normalization's epsilon.
  int nsSteps = 5;
  double nsCoefficients[3] = {3.4445, -4.7750, 2.0315};
  double nsEps = 1e-7;
};

/// A double as descriptors spell it: the shortest form that reads back to
/// the same double ("3.4445", "1e-07"), whatever the C locale (a host that
/// set LC_NUMERIC to a comma locale must not change a descriptor).
inline std::string descriptorNumber(double v) {
  char buf[40];
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  std::to_chars_result r = std::to_chars(buf, buf + sizeof buf - 1, v);
  *r.ptr = '\0';
#else
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  // The locale's decimal point, if it is not '.'.
  for (char *ch = buf; *ch; ++ch)
    if (*ch == ',')
      *ch = '.';
#endif
  return buf;
}

/// Reads what descriptorNumber wrote: the whole of `text`, a decimal or
/// scientific number (no blanks, no hex), locale-independent. False when it
/// is anything else.
inline bool parseDescriptorNumber(const std::string &text, double &value) {
  if (text.empty() || text.find_first_not_of("0123456789+-.eE") !=
                          std::string::npos)
    return false;
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  const char *last = text.data() + text.size();
  std::from_chars_result r = std::from_chars(text.data(), last, value);
  return r.ec == std::errc() && r.ptr == last;
#else
  // strtod reads the locale's decimal point: give it that one.
  std::string local = text;
  char point = *std::localeconv()->decimal_point;
  for (char &ch : local)
    if (ch == '.')
      ch = point;
  char *end = nullptr;
  value = std::strtod(local.c_str(), &end);
  return end && *end == '\0';
#endif
}

/// The reductions as optim_reductions_<name> spells them (KernelABI.h):
/// "norm,sum@global,mean:1,mean@row,max@col:2"; empty for none. A
/// newton_schulz entry spells its parameters:
/// "newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix", shape values are
/// "rows" and "cols".
inline std::string
reductionsDescriptor(const std::vector<ReductionSpec> &reductions) {
  std::string text;
  for (const ReductionSpec &r : reductions) {
    if (!text.empty())
      text += ',';
    text += reductionKindName(r.kind);
    if (r.kind == ReductionKind::NewtonSchulz)
      text += "(" + std::to_string(r.nsSteps) + ";" +
              descriptorNumber(r.nsCoefficients[0]) + ";" +
              descriptorNumber(r.nsCoefficients[1]) + ";" +
              descriptorNumber(r.nsCoefficients[2]) + ";" +
              descriptorNumber(r.nsEps) + ")";
    if (r.global)
      text += "@global";
    else if (r.axis != Axis::None)
      text += std::string("@") + axisName(r.axis);
    if (r.level > 0)
      text += ":" + std::to_string(r.level);
  }
  return text;
}

/// The states as optim_states_<name> spells them (KernelABI.h, version 10):
/// each its per-coordinate size, "@row" / "@col" for a row or column state,
/// in declaration order: "1,1@row,1@col,20"; empty for none.
inline std::string statesDescriptor(const std::vector<StateSpec> &states) {
  std::string text;
  for (const StateSpec &s : states) {
    if (!text.empty())
      text += ',';
    text += std::to_string(s.size);
    if (s.axis != Axis::None)
      text += std::string("@") + axisName(s.axis);
  }
  return text;
}

/// What a draw site of a rule (`rand()`, `randn()`) draws (KernelABI.h,
/// version 8, "Random numbers").
enum class RandomKind { Uniform, Normal };
inline const char *randomKindName(RandomKind k) {
  return k == RandomKind::Normal ? "normal" : "uniform";
}
/// The draw sites as optim_random_<name> spells them (KernelABI.h):
/// "normal,uniform"; empty for none.
inline std::string randomDescriptor(const std::vector<RandomKind> &sites) {
  std::string text;
  for (RandomKind k : sites) {
    if (!text.empty())
      text += ',';
    text += randomKindName(k);
  }
  return text;
}

/// The signature of a compiled rule.
struct RuleInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<HyperParam> hypers;
  std::vector<StateSpec> states;
  std::vector<WeightSpec> weights;
  /// The per-coordinate inputs (`input h`), in declaration order: read-only
  /// tensors of the parameters' sizes that every step takes besides the
  /// gradients (KernelABI.h, version 7; chunk pointers p, g, inputs, states).
  std::vector<std::string> inputs;
  /// One per optim.tensor_reduce of the rule, in body order: the slots of
  /// the reduced values. Non-empty: the step runs Rule::reduceKernel, then
  /// Rule::reducedKernel (KernelABI.h); kernel() is null.
  std::vector<ReductionSpec> reductions;
  /// One per random draw site of the rule (optim.random), in body order:
  /// site k draws from Philox counter word 3 = k (KernelABI.h, version 8).
  /// Empty for a rule that draws nothing.
  std::vector<RandomKind> random;

  /// The index of a hyperparameter, or -1.
  int findHyper(const std::string &hyperName) const;
  /// Whether a state or a reduction is per row or per column (KernelABI.h,
  /// version 10): the step then needs each parameter's shape and uses the
  /// chunk table of "Axes".
  bool hasAxes() const {
    for (const StateSpec &s : states)
      if (s.axis != Axis::None)
        return true;
    for (const ReductionSpec &r : reductions)
      if (r.axis != Axis::None)
        return true;
    return false;
  }
};

class Rule {
public:
  Rule() = default;
  Rule(RuleInfo info, optim_rule_kernel kernel, std::shared_ptr<void> owner)
      : info_(std::make_shared<const RuleInfo>(std::move(info))),
        kernel_(kernel), owner_(std::move(owner)) {}
  /// With the reverse mode (KernelABI.h, optim_vjp_kernel_<name>).
  Rule(RuleInfo info, optim_rule_kernel kernel, optim_vjp_kernel vjp,
       std::shared_ptr<void> owner)
      : Rule(std::move(info), kernel, std::move(owner)) {
    vjp_ = vjp;
  }

  /// A rule with tensor reductions (info.reductions non-empty): its two
  /// passes over memory (KernelABI.h, version 6).
  Rule(RuleInfo info, optim_reduce_kernel reduce,
       optim_reduced_rule_kernel kernel, std::shared_ptr<void> owner)
      : info_(std::make_shared<const RuleInfo>(std::move(info))),
        reduce_(reduce), reduced_(kernel), owner_(std::move(owner)) {}

  /// A rule with tensor reductions and its reverse mode: the two VJP
  /// kernels of KernelABI.h ("Reverse mode of rules with tensor
  /// reductions").
  Rule(RuleInfo info, optim_reduce_kernel reduce,
       optim_reduced_rule_kernel kernel, optim_reduced_vjp_kernel reducedVJP,
       optim_reduced_vjp_kernel reductionsVJP, std::shared_ptr<void> owner)
      : Rule(std::move(info), reduce, kernel, std::move(owner)) {
    reducedVJP_ = reducedVJP;
    reductionsVJP_ = reductionsVJP;
  }

  explicit operator bool() const {
    return kernel_ != nullptr || reduced_ != nullptr;
  }
  const RuleInfo &info() const;
  optim_rule_kernel kernel() const { return kernel_; }
  /// The vector-Jacobian product of one step, or null when the rule was
  /// compiled without it (CompileOptions::vjp).
  optim_vjp_kernel vjpKernel() const { return vjp_; }
  /// The first pass of a rule with reductions, or null.
  optim_reduce_kernel reduceKernel() const { return reduce_; }
  /// The second pass of a rule with reductions, or null.
  optim_reduced_rule_kernel reducedKernel() const { return reduced_; }
  /// The reverse mode of a rule with reductions (compiled with
  /// CompileOptions::vjp), or null: the VJP with the reduced values held
  /// constant, then the VJP through the reductions.
  optim_reduced_vjp_kernel reducedVJPKernel() const { return reducedVJP_; }
  optim_reduced_vjp_kernel reductionsVJPKernel() const {
    return reductionsVJP_;
  }
  /// Whether the rule has its reverse mode, in either form.
  bool hasVJP() const { return vjp_ || (reducedVJP_ && reductionsVJP_); }

private:
  std::shared_ptr<const RuleInfo> info_;
  optim_rule_kernel kernel_ = nullptr;
  optim_vjp_kernel vjp_ = nullptr;
  optim_reduce_kernel reduce_ = nullptr;
  optim_reduced_rule_kernel reduced_ = nullptr;
  optim_reduced_vjp_kernel reducedVJP_ = nullptr;
  optim_reduced_vjp_kernel reductionsVJP_ = nullptr;
  std::shared_ptr<void> owner_;
};

} // namespace optim

#endif // OPTIM_RUNTIME_RULE_H
