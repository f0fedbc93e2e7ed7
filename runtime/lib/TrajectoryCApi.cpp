//===- TrajectoryCApi.cpp - the C API of optim::Trajectory ----------------===//
//
// Meta-training and hypergradients from C and from the Python binding: the
// same conventions as CApi.cpp (checks of what only C can get wrong, then the
// C++ call inside capi::guard; out-pointers written last), over
// optim::Trajectory.
//
//===----------------------------------------------------------------------===//

#include "optim/optim.h"

#include "optim/CApiSupport.h"
#include "optim/Trajectory.h"

#include "CApiMacros.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

using namespace optim;

struct optim_trajectory {
  Trajectory traj;
  /// The last backward pass's result (empty before the first).
  RuleGradient gradient;
  bool haveGradient = false;
};

namespace {

const RuleInfo &infoOf(const optim_trajectory *t) {
  return t->traj.rule().info();
}

/// NOT_FOUND for a hyperparameter the rule lacks, INVALID_ARGUMENT for a
/// value that is not finite, CONST_HYPERPARAMETER for a const one: the
/// order of Trajectory::set's checks.
optim_status classifySet(const RuleInfo &ri, const char *name, double value) {
  int h = ri.findHyper(name);
  if (h < 0)
    return OPTIM_ERROR_NOT_FOUND;
  if (!std::isfinite(value))
    return OPTIM_ERROR_INVALID_ARGUMENT;
  if (ri.hypers[h].isConst)
    return OPTIM_ERROR_CONST_HYPERPARAMETER;
  return OPTIM_ERROR_INVALID_ARGUMENT;
}

bool hasWeights(const RuleInfo &ri, const char *name) {
  for (const WeightSpec &w : ri.weights)
    if (w.name == name)
      return true;
  return false;
}

/// The getters of a buffer of the trajectory (θ, a state, their adjoints):
/// `get()` the pointer and `size()` its elements, whose only failure is a
/// parameter or state that does not exist; out-pointers written last.
template <typename Ptr, typename Get, typename Size>
optim_status bufferOut(Get get, Size size, Ptr *data, int64_t *count) {
  return capi::guard(OPTIM_ERROR_NOT_FOUND, [&] {
    Ptr p = get();
    int64_t n = size();
    if (count)
      *count = n;
    *data = p;
    return OPTIM_OK;
  });
}

} // namespace

extern "C" optim_status optim_trajectory_create(const optim_rule *rule,
                                                const int64_t *sizes,
                                                size_t num_params,
                                                const optim_shape *shapes,
                                                const optim_options *options,
                                                optim_trajectory **out) {
  const char *fn = "optim_trajectory_create";
  OPTIM_USE_RULE(rule, fn);
  OPTIM_CHECK_ARRAY(sizes, num_params, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  if (options && options->skip_non_finite)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": skip_non_finite does not apply to a trajectory (a "
                      "skipped step would leave a hole in the tape); check "
                      "the gradients before stepping",
                      fn);
  if (!rule->rule.hasVJP())
    return capi::fail(
        OPTIM_ERROR_INVALID_ARGUMENT,
        (std::string(fn) + ": rule '" + rule->rule.info().name +
         "' was compiled without its reverse mode; compile it with "
         "OPTIM_COMPILE_REVERSE (optim_compile_file_flags)")
            .c_str());
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    TrajectoryOptions o;
    if (options) {
      o.threads = options->threads;
      o.chunkSize = options->chunk_size;
      o.seed = options->seed;
    }
    if (shapes) {
      o.shapes.resize(num_params);
      for (size_t i = 0; i < num_params; ++i) {
        if (!shapes[i].dims && shapes[i].rank > 0)
          throw Error(std::string(fn) + ": shape of parameter " +
                      std::to_string(i) + ": dims is NULL but rank is not 0");
        // Before the copy, which must not read a rank that is garbage.
        if (shapes[i].rank > 64)
          throw Error(std::string(fn) + ": shape of parameter " +
                      std::to_string(i) + " has " +
                      std::to_string(shapes[i].rank) +
                      " dimensions, more than 64");
        o.shapes[i].assign(shapes[i].dims, shapes[i].dims + shapes[i].rank);
      }
    }
    auto handle = std::unique_ptr<optim_trajectory>(new optim_trajectory{
        Trajectory(rule->rule, std::vector<int64_t>(sizes, sizes + num_params),
                   std::move(o)),
        {},
        false});
    capi::trackHandle(handle.get(), capi::HandleKind::Trajectory);
    *out = handle.release();
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_trajectory_release(optim_trajectory *traj) {
  if (!traj)
    return OPTIM_OK;
  if (!capi::retireHandle(traj, capi::HandleKind::Trajectory))
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": traj is not a live trajectory handle (released "
                      "twice?)",
                      "optim_trajectory_release");
  delete traj;
  return OPTIM_OK;
}

extern "C" optim_status optim_trajectory_num_params(const optim_trajectory *traj,
                                                    size_t *out) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_num_params");
  OPTIM_CHECK_NOT_NULL(out, "optim_trajectory_num_params");
  *out = traj->traj.numParams();
  return OPTIM_OK;
}

extern "C" optim_status optim_trajectory_param(optim_trajectory *traj,
                                               size_t param, void **data,
                                               int64_t *count) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_param");
  OPTIM_CHECK_NOT_NULL(data, "optim_trajectory_param");
  return bufferOut([&] { return traj->traj.param(param); },
                   [&] { return traj->traj.paramSize(param); }, data, count);
}

extern "C" optim_status optim_trajectory_state(optim_trajectory *traj,
                                               size_t param, const char *name,
                                               void **data, int64_t *count) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_state");
  OPTIM_CHECK_NOT_NULL(name, "optim_trajectory_state");
  OPTIM_CHECK_NOT_NULL(data, "optim_trajectory_state");
  return bufferOut([&] { return traj->traj.state(param, name); },
                   [&] { return traj->traj.stateSize(param, name); }, data,
                   count);
}

extern "C" optim_status optim_trajectory_set(optim_trajectory *traj,
                                             const char *name, double value) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_set");
  OPTIM_CHECK_NOT_NULL(name, "optim_trajectory_set");
  optim_status onError = classifySet(infoOf(traj), name, value);
  return capi::guard(onError, [&] {
    traj->traj.set(name, value);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_trajectory_get(const optim_trajectory *traj,
                                             const char *name, double *out) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_get");
  OPTIM_CHECK_NOT_NULL(name, "optim_trajectory_get");
  OPTIM_CHECK_NOT_NULL(out, "optim_trajectory_get");
  return capi::guard(OPTIM_ERROR_NOT_FOUND, [&] {
    *out = traj->traj.get(name);
    return OPTIM_OK;
  });
}

template <typename T>
static optim_status setWeightsImpl(const char *fn, optim_trajectory *traj,
                                   const char *name, const T *data,
                                   int64_t count) {
  OPTIM_USE_TRAJECTORY(traj, fn);
  OPTIM_CHECK_NOT_NULL(name, fn);
  OPTIM_CHECK_ARRAY(data, count, fn);
  optim_status onError = hasWeights(infoOf(traj), name)
                             ? OPTIM_ERROR_INVALID_ARGUMENT
                             : OPTIM_ERROR_NOT_FOUND;
  return capi::guard(onError, [&] {
    if (!std::is_same_v<T, float> != (infoOf(traj).dtype == DType::F64))
      throw Error(std::string(fn) + ": rule '" + infoOf(traj).name +
                  "' has " + dtypeName(infoOf(traj).dtype) + " weights");
    traj->traj.setWeights(name, data, count);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_trajectory_set_weights_f32(
    optim_trajectory *traj, const char *name, const float *data,
    int64_t count) {
  return setWeightsImpl("optim_trajectory_set_weights_f32", traj, name, data,
                        count);
}

extern "C" optim_status optim_trajectory_set_weights_f64(
    optim_trajectory *traj, const char *name, const double *data,
    int64_t count) {
  return setWeightsImpl("optim_trajectory_set_weights_f64", traj, name, data,
                        count);
}

extern "C" optim_status optim_trajectory_load_weights(optim_trajectory *traj,
                                                      const char *path) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_load_weights");
  OPTIM_CHECK_NOT_NULL(path, "optim_trajectory_load_weights");
  optim_status onError = infoOf(traj).weights.empty() ? OPTIM_ERROR_NOT_FOUND
                         : traj->traj.tapeLength()
                             ? OPTIM_ERROR_INVALID_ARGUMENT
                             : OPTIM_ERROR_IO;
  return capi::guard(onError, [&] {
    traj->traj.loadWeights(path);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_trajectory_set_seed(optim_trajectory *traj,
                                                  uint64_t seed) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_set_seed");
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    traj->traj.setSeed(seed);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_trajectory_reset_state(optim_trajectory *traj) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_reset_state");
  return capi::guard(OPTIM_ERROR_INTERNAL, [&] {
    traj->traj.resetState();
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_trajectory_truncate(optim_trajectory *traj) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_truncate");
  return capi::guard(OPTIM_ERROR_INTERNAL, [&] {
    traj->traj.truncate();
    return OPTIM_OK;
  });
}

template <typename T, typename InputT>
static optim_status stepImpl(const char *fn, optim_trajectory *traj,
                             const T *const *grads, const int64_t *sizes,
                             size_t numGrads, const InputT *inputs,
                             size_t numInputs) {
  OPTIM_USE_TRAJECTORY(traj, fn);
  OPTIM_CHECK_ARRAY(grads, numGrads, fn);
  OPTIM_CHECK_ARRAY(sizes, numGrads, fn);
  OPTIM_CHECK_ARRAY(inputs, numInputs, fn);
  const RuleInfo &ri = infoOf(traj);
  for (size_t k = 0; k < numInputs; ++k) {
    std::string what = std::string(fn) + ": input " + std::to_string(k);
    if (!inputs[k].name)
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                        (what + ": name is NULL").c_str());
    if ((!inputs[k].data || !inputs[k].sizes) && numGrads > 0)
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                        (what + " ('" + inputs[k].name +
                         "'): data or sizes is NULL but num_grads is not 0")
                            .c_str());
  }
  optim_status onError = OPTIM_ERROR_INVALID_ARGUMENT;
  for (size_t k = 0; k < numInputs; ++k)
    if (std::find(ri.inputs.begin(), ri.inputs.end(), inputs[k].name) ==
        ri.inputs.end()) {
      onError = OPTIM_ERROR_NOT_FOUND;
      break;
    }
  return capi::guard(onError, [&] {
    if (!std::is_same_v<T, float> != (ri.dtype == DType::F64))
      throw Error(std::string(fn) + ": rule '" + ri.name + "' steps " +
                  dtypeName(ri.dtype) + " parameters");
    if (numGrads != traj->traj.numParams())
      throw Error(std::string(fn) + ": " + std::to_string(numGrads) +
                  " gradients for " + std::to_string(traj->traj.numParams()) +
                  " parameters");
    std::vector<const void *> g(numGrads);
    for (size_t i = 0; i < numGrads; ++i) {
      if (sizes[i] != traj->traj.paramSize(i))
        throw Error(std::string(fn) + ": gradient " + std::to_string(i) +
                    " has " + std::to_string(sizes[i]) +
                    " elements, parameter " + std::to_string(i) + " has " +
                    std::to_string(traj->traj.paramSize(i)));
      g[i] = grads[i];
    }
    std::vector<TrajectoryInput> in(numInputs);
    for (size_t k = 0; k < numInputs; ++k) {
      in[k].name = inputs[k].name;
      for (size_t i = 0; i < numGrads; ++i) {
        if (inputs[k].sizes[i] != traj->traj.paramSize(i))
          throw Error(std::string(fn) + ": input '" + inputs[k].name +
                      "' of parameter " + std::to_string(i) + " has " +
                      std::to_string(inputs[k].sizes[i]) +
                      " elements, the parameter " +
                      std::to_string(traj->traj.paramSize(i)));
        in[k].tensors.push_back(inputs[k].data[i]);
      }
    }
    traj->traj.step(g, in);
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_trajectory_step_f32(
    optim_trajectory *traj, const float *const *grads, const int64_t *sizes,
    size_t num_grads, const optim_input_f32 *inputs, size_t num_inputs) {
  return stepImpl("optim_trajectory_step_f32", traj, grads, sizes, num_grads,
                  inputs, num_inputs);
}

extern "C" optim_status optim_trajectory_step_f64(
    optim_trajectory *traj, const double *const *grads, const int64_t *sizes,
    size_t num_grads, const optim_input_f64 *inputs, size_t num_inputs) {
  return stepImpl("optim_trajectory_step_f64", traj, grads, sizes, num_grads,
                  inputs, num_inputs);
}

extern "C" optim_status
optim_trajectory_tape_length(const optim_trajectory *traj, size_t *out) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_tape_length");
  OPTIM_CHECK_NOT_NULL(out, "optim_trajectory_tape_length");
  *out = traj->traj.tapeLength();
  return OPTIM_OK;
}

extern "C" optim_status
optim_trajectory_step_count(const optim_trajectory *traj, int64_t *out) {
  OPTIM_USE_TRAJECTORY(traj, "optim_trajectory_step_count");
  OPTIM_CHECK_NOT_NULL(out, "optim_trajectory_step_count");
  *out = traj->traj.stepCount();
  return OPTIM_OK;
}

template <typename T>
static optim_status backwardImpl(const char *fn, optim_trajectory *traj,
                                 const T *const *dLdParams, size_t count) {
  OPTIM_USE_TRAJECTORY(traj, fn);
  OPTIM_CHECK_ARRAY(dLdParams, count, fn);
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    const RuleInfo &ri = infoOf(traj);
    if (!std::is_same_v<T, float> != (ri.dtype == DType::F64))
      throw Error(std::string(fn) + ": rule '" + ri.name + "' steps " +
                  dtypeName(ri.dtype) + " parameters");
    size_t steps = traj->traj.tapeLength(), n = traj->traj.numParams();
    if (steps == 0)
      throw Error(std::string(fn) + ": no step is recorded since the last "
                                    "truncate or reset_state");
    if (count != steps * n)
      throw Error(std::string(fn) + ": count is " + std::to_string(count) +
                  ", but the tape holds " + std::to_string(steps) +
                  " steps of " + std::to_string(n) +
                  " parameters: give tape_length * num_params = " +
                  std::to_string(steps * n) + " pointers, step-major");
    std::vector<std::vector<const void *>> d(steps);
    for (size_t k = 0; k < steps; ++k)
      d[k].assign(dLdParams + k * n, dLdParams + (k + 1) * n);
    RuleGradient g = traj->traj.backward(d);
    traj->gradient = std::move(g);
    traj->haveGradient = true;
    return OPTIM_OK;
  });
}

extern "C" optim_status
optim_trajectory_backward_f32(optim_trajectory *traj,
                              const float *const *dl_dparams, size_t count) {
  return backwardImpl("optim_trajectory_backward_f32", traj, dl_dparams,
                      count);
}

extern "C" optim_status
optim_trajectory_backward_f64(optim_trajectory *traj,
                              const double *const *dl_dparams, size_t count) {
  return backwardImpl("optim_trajectory_backward_f64", traj, dl_dparams,
                      count);
}

extern "C" optim_status
optim_trajectory_weights_gradient(const optim_trajectory *traj,
                                  const char *name, const double **data,
                                  int64_t *count) {
  const char *fn = "optim_trajectory_weights_gradient";
  OPTIM_USE_TRAJECTORY(traj, fn);
  OPTIM_CHECK_NOT_NULL(name, fn);
  OPTIM_CHECK_NOT_NULL(data, fn);
  const RuleInfo &ri = infoOf(traj);
  for (size_t w = 0; w < ri.weights.size(); ++w) {
    if (ri.weights[w].name != name)
      continue;
    if (!traj->haveGradient)
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                        ": no backward pass has run yet", fn);
    const std::vector<double> &g = traj->gradient.weights[w];
    if (count)
      *count = int64_t(g.size());
    *data = g.data();
    return OPTIM_OK;
  }
  return capi::fail(OPTIM_ERROR_NOT_FOUND,
                    (std::string(fn) + ": rule '" + ri.name +
                     "' has no weights '" + name + "'")
                        .c_str());
}

extern "C" optim_status
optim_trajectory_hyper_gradient(const optim_trajectory *traj, const char *name,
                                double *out) {
  const char *fn = "optim_trajectory_hyper_gradient";
  OPTIM_USE_TRAJECTORY(traj, fn);
  OPTIM_CHECK_NOT_NULL(name, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  const RuleInfo &ri = infoOf(traj);
  int h = ri.findHyper(name);
  if (h < 0)
    return capi::fail(OPTIM_ERROR_NOT_FOUND,
                      (std::string(fn) + ": rule '" + ri.name +
                       "' has no hyperparameter '" + name + "'")
                          .c_str());
  if (!traj->haveGradient)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": no backward pass has run yet", fn);
  *out = traj->gradient.hypers[h];
  return OPTIM_OK;
}

extern "C" optim_status
optim_trajectory_param_adjoint(const optim_trajectory *traj, size_t param,
                               const void **data, int64_t *count) {
  const char *fn = "optim_trajectory_param_adjoint";
  OPTIM_USE_TRAJECTORY(traj, fn);
  OPTIM_CHECK_NOT_NULL(data, fn);
  if (!traj->haveGradient)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": no backward pass has run yet", fn);
  return bufferOut([&] { return traj->traj.paramAdjoint(param); },
                   [&] { return traj->traj.paramSize(param); }, data, count);
}

extern "C" optim_status
optim_trajectory_state_adjoint(const optim_trajectory *traj, size_t param,
                               const char *name, const void **data,
                               int64_t *count) {
  const char *fn = "optim_trajectory_state_adjoint";
  OPTIM_USE_TRAJECTORY(traj, fn);
  OPTIM_CHECK_NOT_NULL(name, fn);
  OPTIM_CHECK_NOT_NULL(data, fn);
  if (!traj->haveGradient)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      ": no backward pass has run yet", fn);
  return bufferOut([&] { return traj->traj.stateAdjoint(param, name); },
                   [&] { return traj->traj.stateSize(param, name); }, data,
                   count);
}
