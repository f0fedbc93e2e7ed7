//===- CApi.cpp - the runtime's C API on top of optim::Optimizer ----------===//
//
// Each entry point checks what only the C side can get wrong (NULL handles,
// arrays and out-pointers), then calls the C++ API inside capi::guard, which
// turns its exceptions into a status. The C++ API already guarantees that a
// call that throws changed nothing; out-pointers are written last, after
// everything that can fail, to keep that guarantee here.
//
// optim::Error does not say what kind of failure it is, so where one call
// can fail in several ways the status is predicted by re-running the C++
// API's own checks in the same order (see classify*): the status then always
// names the failure the message describes.
//
//===----------------------------------------------------------------------===//

#include "optim/optim.h"

#include "optim/CApiSupport.h"
#include "optim/Optimizer.h"

#include "CApiMacros.h"
#include "OptimizerImpl.h"
#include "QuotedList.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

using namespace optim;

struct optim_optimizer {
  Optimizer opt;
  // Returned by optim_optimizer_rule, so it must live as long as `opt`.
  optim_rule rule;
  // The C++ API does not expose parameter sizes, which state counts need.
  std::vector<int64_t> sizes;
};

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

namespace {
thread_local std::string lastError;
// Set when lastError could not hold a message (no memory to copy it).
thread_local const char *lastErrorFallback = nullptr;
} // namespace

optim_status optim::capi::fail(optim_status status, const char *message,
                               const char *prefix) noexcept {
  try {
    lastError.assign(prefix);
    lastError.append(message ? message : "");
    lastErrorFallback = nullptr;
  } catch (...) {
    lastErrorFallback = "out of memory while recording an error message";
  }
  return status;
}

extern "C" const char *optim_last_error(void) {
  return lastErrorFallback ? lastErrorFallback : lastError.c_str();
}

extern "C" const char *optim_status_name(optim_status status) {
  // A foreign caller may pass any int. Loading it as the enum would be
  // undefined behavior for values outside the enum's range (UBSan's enum
  // check says so), so its bits are read as the int they are.
  static_assert(sizeof(optim_status) == sizeof(int), "C enums are ints here");
  int value;
  std::memcpy(&value, &status, sizeof value);
  switch (value) {
  case OPTIM_OK:
    return "OPTIM_OK";
  case OPTIM_ERROR_INVALID_ARGUMENT:
    return "OPTIM_ERROR_INVALID_ARGUMENT";
  case OPTIM_ERROR_NOT_FOUND:
    return "OPTIM_ERROR_NOT_FOUND";
  case OPTIM_ERROR_CONST_HYPERPARAMETER:
    return "OPTIM_ERROR_CONST_HYPERPARAMETER";
  case OPTIM_ERROR_COMPILE:
    return "OPTIM_ERROR_COMPILE";
  case OPTIM_ERROR_IO:
    return "OPTIM_ERROR_IO";
  case OPTIM_ERROR_UNSUPPORTED:
    return "OPTIM_ERROR_UNSUPPORTED";
  case OPTIM_ERROR_OUT_OF_MEMORY:
    return "OPTIM_ERROR_OUT_OF_MEMORY";
  case OPTIM_ERROR_INTERNAL:
    return "OPTIM_ERROR_INTERNAL";
  }
  // A value a foreign caller made up: still a valid string.
  return "OPTIM_ERROR_UNKNOWN_STATUS";
}

//===----------------------------------------------------------------------===//
// Rules
//===----------------------------------------------------------------------===//

namespace {
/// What every accessor of a rule's description does around its query: the
/// rule must be live and `out` (called `outName` in the error) not NULL;
/// `query(info, *out)` runs with exceptions turned into statuses.
template <class Out, class Query>
optim_status queryRule(const char *fn, const optim_rule *rule, Out *out,
                       const char *outName, Query query) {
  OPTIM_USE_RULE(rule, fn);
  if (!out) {
    char message[64];
    std::snprintf(message, sizeof message, ": %s is NULL", outName);
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT, message, fn);
  }
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT,
                     [&] { return query(rule->rule.info(), *out); });
}

/// How many `items(info)` a rule has.
template <class Items>
optim_status countRule(const char *fn, const optim_rule *rule, size_t *out,
                       Items items) {
  return queryRule(fn, rule, out, "out", [&](const RuleInfo &ri, size_t &o) {
    o = items(ri).size();
    return OPTIM_OK;
  });
}

/// `get` of the index-th of `items(info)`, the rule's `noun`; an index out
/// of range is OPTIM_ERROR_NOT_FOUND, naming their count.
template <class Out, class Items, class Get>
optim_status ruleItem(const char *fn, const optim_rule *rule, size_t index,
                      Out *out, const char *outName, const char *noun,
                      Items items, Get get) {
  return queryRule(fn, rule, out, outName, [&](const RuleInfo &ri, Out &o) {
    const auto &list = items(ri);
    if (index >= list.size())
      return capi::fail(OPTIM_ERROR_NOT_FOUND,
                        (": index " + std::to_string(index) +
                         " is out of range: rule '" + ri.name + "' has " +
                         std::to_string(list.size()) + " " + noun)
                            .c_str(),
                        fn);
    o = get(list[index]);
    return OPTIM_OK;
  });
}

const std::vector<HyperParam> &hypersOf(const RuleInfo &ri) {
  return ri.hypers;
}
const std::vector<StateSpec> &statesOf(const RuleInfo &ri) { return ri.states; }
const std::vector<WeightSpec> &weightsOf(const RuleInfo &ri) {
  return ri.weights;
}
const std::vector<ReductionSpec> &reductionsOf(const RuleInfo &ri) {
  return ri.reductions;
}
} // namespace

extern "C" optim_status optim_rule_name(const optim_rule *rule,
                                        const char **out) {
  return queryRule("optim_rule_name", rule, out, "out",
                   [](const RuleInfo &ri, const char *&o) {
                     o = ri.name.c_str();
                     return OPTIM_OK;
                   });
}

extern "C" optim_status optim_rule_dtype(const optim_rule *rule,
                                         optim_dtype *out) {
  return queryRule("optim_rule_dtype", rule, out, "out",
                   [](const RuleInfo &ri, optim_dtype &o) {
                     o = ri.dtype == DType::F64 ? OPTIM_F64 : OPTIM_F32;
                     return OPTIM_OK;
                   });
}

extern "C" optim_status optim_rule_num_hypers(const optim_rule *rule,
                                              size_t *out) {
  return countRule("optim_rule_num_hypers", rule, out, hypersOf);
}

extern "C" optim_status optim_rule_hyper(const optim_rule *rule, size_t index,
                                         optim_hyper_info *out) {
  return ruleItem("optim_rule_hyper", rule, index, out, "out",
                  "hyperparameters", hypersOf, [](const HyperParam &h) {
                    return optim_hyper_info{h.name.c_str(), h.defaultValue,
                                            h.isConst ? 1 : 0};
                  });
}

extern "C" optim_status optim_rule_find_hyper(const optim_rule *rule,
                                              const char *name, size_t *index) {
  OPTIM_USE_RULE(rule, "optim_rule_find_hyper");
  OPTIM_CHECK_NOT_NULL(name, "optim_rule_find_hyper");
  OPTIM_CHECK_NOT_NULL(index, "optim_rule_find_hyper");
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    const RuleInfo &ri = rule->rule.info();
    int h = ri.findHyper(name);
    if (h < 0)
      return capi::fail(OPTIM_ERROR_NOT_FOUND,
                        ("optim_rule_find_hyper: rule '" + ri.name +
                         "' has no hyperparameter '" + name + "'")
                            .c_str());
    *index = static_cast<size_t>(h);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_rule_num_states(const optim_rule *rule,
                                              size_t *out) {
  return countRule("optim_rule_num_states", rule, out, statesOf);
}

extern "C" optim_status optim_rule_state(const optim_rule *rule, size_t index,
                                         optim_state_info *out) {
  return ruleItem("optim_rule_state", rule, index, out, "out", "states",
                  statesOf, [](const StateSpec &s) {
                    return optim_state_info{s.name.c_str(), s.size, s.init};
                  });
}

extern "C" optim_status optim_rule_num_weights(const optim_rule *rule,
                                               size_t *out) {
  return countRule("optim_rule_num_weights", rule, out, weightsOf);
}

extern "C" optim_status optim_rule_weights(const optim_rule *rule, size_t index,
                                           optim_weights_info *out) {
  return ruleItem("optim_rule_weights", rule, index, out, "out",
                  "weights tensors", weightsOf, [](const WeightSpec &w) {
                    int64_t size = 1;
                    for (int64_t d : w.shape)
                      size *= d;
                    return optim_weights_info{w.name.c_str(), w.shape.data(),
                                              w.shape.size(), size};
                  });
}

extern "C" optim_status optim_rule_num_reductions(const optim_rule *rule,
                                                  size_t *out) {
  return countRule("optim_rule_num_reductions", rule, out, reductionsOf);
}

extern "C" optim_status optim_rule_reduction(const optim_rule *rule,
                                             size_t index,
                                             optim_reduction_info *out) {
  return ruleItem("optim_rule_reduction", rule, index, out, "out", "reductions",
                  reductionsOf, [](const ReductionSpec &r) {
                    return optim_reduction_info{reductionKindName(r.kind),
                                                r.global ? 1 : 0};
                  });
}

extern "C" optim_status optim_rule_reduction_level(const optim_rule *rule,
                                                   size_t index,
                                                   unsigned *out) {
  return ruleItem("optim_rule_reduction_level", rule, index, out, "out",
                  "reductions", reductionsOf,
                  [](const ReductionSpec &r) { return r.level; });
}

/// "none", "row" or "col" (string literals: they outlive the rule).
extern "C" optim_status optim_rule_state_axis(const optim_rule *rule,
                                              size_t index, const char **out) {
  return ruleItem("optim_rule_state_axis", rule, index, out, "out", "states",
                  statesOf,
                  [](const StateSpec &s) { return axisName(s.axis); });
}

extern "C" optim_status optim_rule_reduction_axis(const optim_rule *rule,
                                                  size_t index,
                                                  const char **out) {
  return ruleItem("optim_rule_reduction_axis", rule, index, out, "out",
                  "reductions", reductionsOf,
                  [](const ReductionSpec &r) { return axisName(r.axis); });
}

extern "C" optim_status optim_rule_num_inputs(const optim_rule *rule,
                                              size_t *out) {
  return countRule(
      "optim_rule_num_inputs", rule, out,
      [](const RuleInfo &ri) -> auto & { return ri.inputs; });
}

extern "C" optim_status optim_rule_input(const optim_rule *rule, size_t index,
                                         const char **name) {
  return ruleItem(
      "optim_rule_input", rule, index, name, "name", "inputs",
      [](const RuleInfo &ri) -> auto & { return ri.inputs; },
      [](const std::string &input) { return input.c_str(); });
}

extern "C" optim_status optim_rule_num_random(const optim_rule *rule,
                                              size_t *out) {
  return countRule(
      "optim_rule_num_random", rule, out,
      [](const RuleInfo &ri) -> auto & { return ri.random; });
}

/// A string literal: it outlives the rule.
extern "C" optim_status optim_rule_random(const optim_rule *rule, size_t index,
                                          const char **kind) {
  return ruleItem(
      "optim_rule_random", rule, index, kind, "kind", "random draw sites",
      [](const RuleInfo &ri) -> auto & { return ri.random; },
      [](const auto &site) { return randomKindName(site); });
}

extern "C" optim_status optim_rule_release(optim_rule *rule) {
  const char *fn = "optim_rule_release";
  if (!rule)
    return OPTIM_OK;
  // Waits for calls using the rule on other threads to return.
  if (capi::retireHandle(rule, capi::HandleKind::Rule)) {
    // Destroying a Rule only drops shared references; it does not throw.
    delete rule;
    return OPTIM_OK;
  }
  if (capi::isLiveHandle(rule, capi::HandleKind::Rule))
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": rule belongs to its optimizer (optim_optimizer_rule "
                      "lent it); release the optimizer instead",
                      fn);
  return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                    ": rule is not a live rule handle (released twice?)", fn);
}

//===----------------------------------------------------------------------===//
// Optimizers
//===----------------------------------------------------------------------===//

extern "C" optim_status optim_options_init(optim_options *options) {
  OPTIM_CHECK_NOT_NULL(options, "optim_options_init");
  OptimizerOptions defaults;
  options->threads = defaults.threads;
  options->chunk_size = defaults.chunkSize;
  options->skip_non_finite = defaults.skipNonFinite ? 1 : 0;
  options->seed = defaults.seed;
  return OPTIM_OK;
}

static OptimizerOptions toOptions(const optim_options *options) {
  OptimizerOptions result;
  if (options) {
    result.threads = options->threads;
    result.chunkSize = options->chunk_size;
    result.skipNonFinite = options->skip_non_finite != 0;
    result.seed = options->seed;
  }
  return result;
}

/// The status of the first error the Optimizer constructor would report,
/// following its order of checks.
static optim_status classifyCreate(const RuleInfo &ri,
                                   const std::vector<ParamGroup> &groups) {
  size_t elt = dtypeSize(ri.dtype);
  for (const ParamGroup &g : groups) {
    for (const Param &p : g.params)
      if (p.dtype != ri.dtype || p.size < 0 || (p.size > 0 && !p.data) ||
          reinterpret_cast<uintptr_t>(p.data) % elt ||
          !detail::paramShapeIsValid(p, ri.hasAxes()))
        return OPTIM_ERROR_INVALID_ARGUMENT;
    for (const auto &[name, value] : g.hypers) {
      int h = ri.findHyper(name);
      if (h < 0)
        return OPTIM_ERROR_NOT_FOUND;
      if (!std::isfinite(value))
        return OPTIM_ERROR_INVALID_ARGUMENT;
      if (ri.hypers[h].isConst && value != ri.hypers[h].defaultValue)
        return OPTIM_ERROR_CONST_HYPERPARAMETER;
    }
  }
  return OPTIM_ERROR_INVALID_ARGUMENT;
}

static optim_status createOptimizer(const optim_rule *rule,
                                    std::vector<ParamGroup> groups,
                                    const optim_options *options,
                                    optim_optimizer **out) {
  const RuleInfo &ri = rule->rule.info();
  std::vector<int64_t> sizes;
  for (const ParamGroup &g : groups)
    for (const Param &p : g.params)
      sizes.push_back(p.size);
  optim_status onError = classifyCreate(ri, groups);
  return capi::guard(onError, [&] {
    auto handle = std::unique_ptr<optim_optimizer>(new optim_optimizer{
        Optimizer(rule->rule, std::move(groups), toOptions(options)),
        optim_rule{rule->rule}, std::move(sizes)});
    capi::trackHandle(&handle->rule, capi::HandleKind::LentRule);
    try {
      capi::trackHandle(handle.get(), capi::HandleKind::Optimizer);
    } catch (...) {
      capi::retireHandle(&handle->rule, capi::HandleKind::LentRule);
      throw;
    }
    *out = handle.release();
    return OPTIM_OK;
  });
}

template <typename T>
static optim_status createFlat(const char *fn, const optim_rule *rule,
                               T *const *params, const int64_t *sizes,
                               size_t numParams, const optim_options *options,
                               optim_optimizer **out) {
  OPTIM_USE_RULE(rule, fn);
  OPTIM_CHECK_ARRAY(params, numParams, fn);
  OPTIM_CHECK_ARRAY(sizes, numParams, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    std::vector<ParamGroup> groups(1);
    for (size_t i = 0; i < numParams; ++i)
      groups[0].params.emplace_back(params[i], sizes[i]);
    return createOptimizer(rule, std::move(groups), options, out);
  });
}

extern "C" optim_status optim_optimizer_create_f32(
    const optim_rule *rule, float *const *params, const int64_t *sizes,
    size_t num_params, const optim_options *options, optim_optimizer **out) {
  return createFlat("optim_optimizer_create_f32", rule, params, sizes,
                    num_params, options, out);
}

extern "C" optim_status optim_optimizer_create_f64(
    const optim_rule *rule, double *const *params, const int64_t *sizes,
    size_t num_params, const optim_options *options, optim_optimizer **out) {
  return createFlat("optim_optimizer_create_f64", rule, params, sizes,
                    num_params, options, out);
}

/// optim_optimizer_create_groups, and _shaped with `shapes` (NULL: none).
static optim_status createGroups(const char *fn, const optim_rule *rule,
                                 optim_dtype dtype, const optim_group *groups,
                                 size_t num_groups, const optim_shape *shapes,
                                 const optim_options *options,
                                 optim_optimizer **out) {
  OPTIM_USE_RULE(rule, fn);
  OPTIM_CHECK_ARRAY(groups, num_groups, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  if (dtype != OPTIM_F32 && dtype != OPTIM_F64)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": dtype is neither OPTIM_F32 nor OPTIM_F64", fn);
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    std::vector<ParamGroup> cxxGroups(num_groups);
    for (size_t gi = 0; gi < num_groups; ++gi) {
      const optim_group &g = groups[gi];
      std::string what = std::string(fn) + ": group " + std::to_string(gi);
      if (!g.params && g.num_params > 0)
        return capi::fail(
            OPTIM_ERROR_INVALID_ARGUMENT,
            (what + ": params is NULL but num_params is not 0").c_str());
      if (!g.sizes && g.num_params > 0)
        return capi::fail(
            OPTIM_ERROR_INVALID_ARGUMENT,
            (what + ": sizes is NULL but num_params is not 0").c_str());
      if (!g.hypers && g.num_hypers > 0)
        return capi::fail(
            OPTIM_ERROR_INVALID_ARGUMENT,
            (what + ": hypers is NULL but num_hypers is not 0").c_str());
      for (size_t i = 0; i < g.num_params; ++i) {
        Param p;
        p.data = g.params[i];
        p.size = g.sizes[i];
        p.dtype = dtype == OPTIM_F64 ? DType::F64 : DType::F32;
        cxxGroups[gi].params.push_back(p);
      }
      for (size_t i = 0; i < g.num_hypers; ++i) {
        if (!g.hypers[i].name)
          return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                            (what + ": the name of hyperparameter value " +
                             std::to_string(i) + " is NULL")
                                .c_str());
        cxxGroups[gi].hypers.emplace_back(g.hypers[i].name, g.hypers[i].value);
      }
    }
    if (shapes) {
      // One per parameter, numbered across groups (optim.h).
      size_t index = 0;
      for (ParamGroup &g : cxxGroups)
        for (Param &p : g.params) {
          const optim_shape &shape = shapes[index];
          if (!shape.dims && shape.rank > 0)
            return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                              (std::string(fn) + ": shape of parameter " +
                               std::to_string(index) +
                               ": dims is NULL but rank is " +
                               std::to_string(shape.rank))
                                  .c_str());
          // Refused by the Optimizer with the shape in the message; the
          // copy below must not read a rank that is garbage.
          if (shape.rank > 64)
            return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                              (std::string(fn) + ": shape of parameter " +
                               std::to_string(index) + " has rank " +
                               std::to_string(shape.rank) + ", more than 64")
                                  .c_str());
          if (shape.rank > 0)
            p.shape.assign(shape.dims, shape.dims + shape.rank);
          ++index;
        }
    }
    return createOptimizer(rule, std::move(cxxGroups), options, out);
  });
}

extern "C" optim_status optim_optimizer_create_groups(
    const optim_rule *rule, optim_dtype dtype, const optim_group *groups,
    size_t num_groups, const optim_options *options, optim_optimizer **out) {
  return createGroups("optim_optimizer_create_groups", rule, dtype, groups,
                      num_groups, nullptr, options, out);
}

extern "C" optim_status optim_optimizer_create_shaped(
    const optim_rule *rule, optim_dtype dtype, const optim_group *groups,
    size_t num_groups, const optim_shape *shapes, const optim_options *options,
    optim_optimizer **out) {
  return createGroups("optim_optimizer_create_shaped", rule, dtype, groups,
                      num_groups, shapes, options, out);
}

extern "C" optim_status optim_optimizer_release(optim_optimizer *opt) {
  if (!opt)
    return OPTIM_OK;
  // Waits for calls using the optimizer on other threads to return; from
  // here on, new calls are refused.
  if (!capi::retireHandle(opt, capi::HandleKind::Optimizer))
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": opt is not a live optimizer handle (released twice?)",
                      "optim_optimizer_release");
  // The same for the rule it lent (optim_optimizer_rule), which lives in it.
  capi::retireHandle(&opt->rule, capi::HandleKind::LentRule);
  // The destructor joins the worker threads; it does not throw.
  delete opt;
  return OPTIM_OK;
}

extern "C" optim_status optim_optimizer_rule(const optim_optimizer *opt,
                                             const optim_rule **out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_rule");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_rule");
  *out = &opt->rule;
  return OPTIM_OK;
}

extern "C" optim_status optim_optimizer_num_params(const optim_optimizer *opt,
                                                   size_t *out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_num_params");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_num_params");
  *out = opt->sizes.size();
  return OPTIM_OK;
}

extern "C" optim_status optim_optimizer_param_size(const optim_optimizer *opt,
                                                   size_t param, int64_t *out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_param_size");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_param_size");
  return capi::guard(OPTIM_ERROR_NOT_FOUND, [&] {
    if (param >= opt->sizes.size())
      throw Error("optim_optimizer_param_size: parameter " +
                  std::to_string(param) + " does not exist (there are " +
                  std::to_string(opt->sizes.size()) + ")");
    *out = opt->sizes[param];
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_optimizer_num_groups(const optim_optimizer *opt,
                                                   size_t *out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_num_groups");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_num_groups");
  return capi::guard(OPTIM_ERROR_INTERNAL, [&] {
    *out = opt->opt.numGroups();
    return OPTIM_OK;
  });
}

/// The status of the error Optimizer::set would report, following its order
/// of checks. `group` is SIZE_MAX for "every group".
/// `group`: null for every group (optim_optimizer_set). A group index past
/// the last, SIZE_MAX included, is one that does not exist.
static optim_status classifySet(const optim_optimizer *opt, const size_t *group,
                                const char *name, double value) {
  const RuleInfo &ri = opt->rule.rule.info();
  if (group && *group >= opt->opt.numGroups())
    return OPTIM_ERROR_NOT_FOUND;
  int h = ri.findHyper(name);
  if (h < 0)
    return OPTIM_ERROR_NOT_FOUND;
  if (!std::isfinite(value))
    return OPTIM_ERROR_INVALID_ARGUMENT;
  if (ri.hypers[h].isConst)
    return OPTIM_ERROR_CONST_HYPERPARAMETER;
  return OPTIM_ERROR_INVALID_ARGUMENT;
}

extern "C" optim_status optim_optimizer_set(optim_optimizer *opt,
                                            const char *name, double value) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_set");
  OPTIM_CHECK_NOT_NULL(name, "optim_optimizer_set");
  return capi::guard(classifySet(opt, nullptr, name, value), [&] {
    opt->opt.set(name, value);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_optimizer_set_group(optim_optimizer *opt,
                                                  size_t group,
                                                  const char *name,
                                                  double value) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_set_group");
  OPTIM_CHECK_NOT_NULL(name, "optim_optimizer_set_group");
  return capi::guard(classifySet(opt, &group, name, value), [&] {
    opt->opt.set(group, name, value);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_optimizer_get(const optim_optimizer *opt,
                                            size_t group, const char *name,
                                            double *out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_get");
  OPTIM_CHECK_NOT_NULL(name, "optim_optimizer_get");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_get");
  // Its only failures are a group or a name that does not exist.
  return capi::guard(OPTIM_ERROR_NOT_FOUND, [&] {
    *out = opt->opt.get(name, group);
    return OPTIM_OK;
  });
}

template <typename T>
static optim_status stepImpl(const char *fn, optim_optimizer *opt,
                             const T *const *grads, const int64_t *sizes,
                             size_t numGrads, int *stepped) {
  OPTIM_USE_OPTIMIZER(opt, fn);
  OPTIM_CHECK_ARRAY(grads, numGrads, fn);
  OPTIM_CHECK_ARRAY(sizes, numGrads, fn);
  // Named here with the C call that takes them (the C++ message names the
  // C++ one).
  const RuleInfo &ri = opt->rule.rule.info();
  if (!ri.inputs.empty()) {
    std::string names = detail::quotedList(ri.inputs);
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      (std::string(fn) + ": rule '" + ri.name +
                       "' takes the per-coordinate input" +
                       (ri.inputs.size() == 1 ? " " : "s ") + names +
                       " with every step, besides the gradients: call "
                       "optim_optimizer_step_inputs_" +
                       (std::is_same_v<T, float> ? "f32" : "f64") + " instead")
                          .c_str());
  }
  // Every failure of Optimizer::step is a bad gradient list, or learned
  // weights not set yet: the caller's mistake either way.
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    std::vector<Grad> cxxGrads;
    cxxGrads.reserve(numGrads);
    for (size_t i = 0; i < numGrads; ++i)
      cxxGrads.emplace_back(grads[i], sizes[i]);
    bool took = opt->opt.step(cxxGrads);
    if (stepped)
      *stepped = took ? 1 : 0;
    return OPTIM_OK;
  });
}

extern "C" optim_status
optim_optimizer_step_f32(optim_optimizer *opt, const float *const *grads,
                         const int64_t *sizes, size_t num_grads, int *stepped) {
  return stepImpl("optim_optimizer_step_f32", opt, grads, sizes, num_grads,
                  stepped);
}

extern "C" optim_status
optim_optimizer_step_f64(optim_optimizer *opt, const double *const *grads,
                         const int64_t *sizes, size_t num_grads, int *stepped) {
  return stepImpl("optim_optimizer_step_f64", opt, grads, sizes, num_grads,
                  stepped);
}

template <typename T, typename InputT>
static optim_status stepInputsImpl(const char *fn, optim_optimizer *opt,
                                   const T *const *grads, const int64_t *sizes,
                                   size_t numGrads, const InputT *inputs,
                                   size_t numInputs, int *stepped) {
  OPTIM_USE_OPTIMIZER(opt, fn);
  OPTIM_CHECK_ARRAY(grads, numGrads, fn);
  OPTIM_CHECK_ARRAY(sizes, numGrads, fn);
  OPTIM_CHECK_ARRAY(inputs, numInputs, fn);
  const RuleInfo &ri = opt->rule.rule.info();
  // Optimizer::step matches the names first, in order: the first name it
  // does not know is its first failure, NOT_FOUND; any other is the
  // caller's mistake in the arrays.
  optim_status onError = OPTIM_ERROR_INVALID_ARGUMENT;
  for (size_t k = 0; k < numInputs; ++k) {
    std::string what = std::string(fn) + ": input " + std::to_string(k);
    if (!inputs[k].name)
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                        (what + ": name is NULL").c_str());
    if (!inputs[k].data && numGrads > 0)
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                        (what + " ('" + inputs[k].name +
                         "'): data is NULL but num_grads is not 0")
                            .c_str());
    if (!inputs[k].sizes && numGrads > 0)
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                        (what + " ('" + inputs[k].name +
                         "'): sizes is NULL but num_grads is not 0")
                            .c_str());
  }
  for (size_t k = 0; k < numInputs; ++k) {
    const char *name = inputs[k].name;
    if (std::find(ri.inputs.begin(), ri.inputs.end(), name) ==
        ri.inputs.end()) {
      onError = OPTIM_ERROR_NOT_FOUND;
      break;
    }
    bool repeated = false;
    for (size_t j = 0; j < k; ++j)
      repeated |= std::strcmp(inputs[j].name, name) == 0;
    if (repeated)
      break;
  }
  return capi::guard(onError, [&] {
    std::vector<Grad> cxxGrads;
    cxxGrads.reserve(numGrads);
    for (size_t i = 0; i < numGrads; ++i)
      cxxGrads.emplace_back(grads[i], sizes[i]);
    std::vector<Input> cxxInputs(numInputs);
    for (size_t k = 0; k < numInputs; ++k) {
      cxxInputs[k].name = inputs[k].name;
      cxxInputs[k].tensors.reserve(numGrads);
      for (size_t i = 0; i < numGrads; ++i)
        cxxInputs[k].tensors.emplace_back(inputs[k].data[i],
                                          inputs[k].sizes[i]);
    }
    bool took = opt->opt.step(cxxGrads, cxxInputs);
    if (stepped)
      *stepped = took ? 1 : 0;
    return OPTIM_OK;
  });
}

extern "C" optim_status
optim_optimizer_step_inputs_f32(optim_optimizer *opt, const float *const *grads,
                                const int64_t *sizes, size_t num_grads,
                                const optim_input_f32 *inputs,
                                size_t num_inputs, int *stepped) {
  return stepInputsImpl("optim_optimizer_step_inputs_f32", opt, grads, sizes,
                        num_grads, inputs, num_inputs, stepped);
}

extern "C" optim_status optim_optimizer_step_inputs_f64(
    optim_optimizer *opt, const double *const *grads, const int64_t *sizes,
    size_t num_grads, const optim_input_f64 *inputs, size_t num_inputs,
    int *stepped) {
  return stepInputsImpl("optim_optimizer_step_inputs_f64", opt, grads, sizes,
                        num_grads, inputs, num_inputs, stepped);
}

extern "C" optim_status optim_optimizer_step_count(const optim_optimizer *opt,
                                                   int64_t *out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_step_count");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_step_count");
  *out = opt->opt.stepCount();
  return OPTIM_OK;
}

extern "C" optim_status
optim_optimizer_skipped_steps(const optim_optimizer *opt, int64_t *out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_skipped_steps");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_skipped_steps");
  *out = opt->opt.skippedSteps();
  return OPTIM_OK;
}

extern "C" optim_status optim_optimizer_seed(const optim_optimizer *opt,
                                             uint64_t *out) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_seed");
  OPTIM_CHECK_NOT_NULL(out, "optim_optimizer_seed");
  *out = opt->opt.seed();
  return OPTIM_OK;
}

extern "C" optim_status optim_optimizer_state(const optim_optimizer *opt,
                                              size_t param, const char *name,
                                              const void **data,
                                              int64_t *count) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_state");
  OPTIM_CHECK_NOT_NULL(name, "optim_optimizer_state");
  OPTIM_CHECK_NOT_NULL(data, "optim_optimizer_state");
  // Its only failures are a parameter or a state that does not exist.
  return capi::guard(OPTIM_ERROR_NOT_FOUND, [&] {
    const void *p = opt->opt.state(param, name);
    // B * R or B * C for a row or column state (KernelABI.h, version 10).
    int64_t n = opt->opt.stateSize(param, name);
    if (count)
      *count = n;
    *data = p;
    return OPTIM_OK;
  });
}

template <typename T>
static optim_status setWeightsImpl(const char *fn, optim_optimizer *opt,
                                   const char *name, const T *data,
                                   int64_t count) {
  OPTIM_USE_OPTIMIZER(opt, fn);
  OPTIM_CHECK_NOT_NULL(name, fn);
  OPTIM_CHECK_ARRAY(data, count, fn);
  // Optimizer::setWeights looks the name up first; every later failure is a
  // bad array (dtype, count, NULL).
  const RuleInfo &ri = opt->rule.rule.info();
  optim_status onError = OPTIM_ERROR_NOT_FOUND;
  for (const WeightSpec &w : ri.weights)
    if (w.name == name)
      onError = OPTIM_ERROR_INVALID_ARGUMENT;
  return capi::guard(onError, [&] {
    opt->opt.setWeights(name, data, count);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_optimizer_set_weights_f32(optim_optimizer *opt,
                                                        const char *name,
                                                        const float *data,
                                                        int64_t count) {
  return setWeightsImpl("optim_optimizer_set_weights_f32", opt, name, data,
                        count);
}

extern "C" optim_status optim_optimizer_set_weights_f64(optim_optimizer *opt,
                                                        const char *name,
                                                        const double *data,
                                                        int64_t count) {
  return setWeightsImpl("optim_optimizer_set_weights_f64", opt, name, data,
                        count);
}

extern "C" optim_status optim_optimizer_load_weights(optim_optimizer *opt,
                                                     const char *path) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_load_weights");
  OPTIM_CHECK_NOT_NULL(path, "optim_optimizer_load_weights");
  // A rule without weights is refused before the file is read.
  optim_status onError = opt->rule.rule.info().weights.empty()
                             ? OPTIM_ERROR_NOT_FOUND
                             : OPTIM_ERROR_IO;
  return capi::guard(onError, [&] {
    opt->opt.loadWeights(path);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_optimizer_save(const optim_optimizer *opt,
                                             const char *path) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_save");
  OPTIM_CHECK_NOT_NULL(path, "optim_optimizer_save");
  return capi::guard(OPTIM_ERROR_IO, [&] {
    opt->opt.save(path);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_optimizer_load(optim_optimizer *opt,
                                             const char *path) {
  OPTIM_USE_OPTIMIZER(opt, "optim_optimizer_load");
  OPTIM_CHECK_NOT_NULL(path, "optim_optimizer_load");
  return capi::guard(OPTIM_ERROR_IO, [&] {
    opt->opt.load(path);
    return OPTIM_OK;
  });
}
