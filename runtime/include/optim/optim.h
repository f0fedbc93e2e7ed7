/*===- optim.h - the runtime's C API, for foreign callers -----------------===*
 *
 * A plain C (C99 and C++) face of optim::Optimizer for FFI: Python ctypes,
 * Rust, Julia, ... No LLVM, MLIR or C++ type appears here. Rules come from
 * the compiler's C entry points (optim/Compiler/optim_compiler.h).
 *
 * Conventions, the same for every function (docs/c-api.md has more):
 * - Every function returns an optim_status; OPTIM_OK is 0. On failure,
 *   optim_last_error() gives the message on the calling thread, and nothing
 *   changed: parameters, state, hyperparameters, step counts and the `out`
 *   arguments keep their values.
 * - Handles and out-pointers must not be NULL (OPTIM_ERROR_INVALID_ARGUMENT),
 *   except where a comment says "may be NULL". The *_release functions
 *   accept NULL, like free(). A handle already released (or released
 *   twice), and the rule lent by optim_optimizer_rule given to
 *   optim_rule_release, get OPTIM_ERROR_INVALID_ARGUMENT: the library keeps
 *   a registry of live handles. (An address reused by a later handle is
 *   that handle's.)
 * - Arrays come as (pointer, count); a NULL array is allowed only with a
 *   count of 0. Sizes are numbers of elements, not bytes.
 * - Strings returned by the library are owned by the handle they come from
 *   and live as long as it does; strings passed in are copied if kept.
 * - An optimizer never owns parameters or gradients: they stay the caller's,
 *   who keeps them alive and in place while the optimizer exists. It owns
 *   its state. It shares the rule, so the rule handle may be released right
 *   after the optimizer is created.
 * - A rule handle is immutable and may be used from several threads at
 *   once. An optimizer handle must not be used by two threads at the same
 *   time (optim::Optimizer is not synchronized: a step racing a set or
 *   another step on the same optimizer is a data race); distinct optimizers
 *   are independent and do not wait for each other.
 * - The one exception: a handle may be released while other threads are
 *   inside calls that use it. The release waits for those calls to return
 *   before it frees anything; calls that begin once it has begun get
 *   OPTIM_ERROR_INVALID_ARGUMENT ("... (released already?)"), never a use
 *   of freed memory. (A call made after the release returned may still
 *   meet a later handle at the same address, and act on that one.)
 *
 *===----------------------------------------------------------------------===*/

#ifndef OPTIM_OPTIM_H
#define OPTIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a declaration below changes incompatibly.
   Version 2: optim_options gained `seed` (its size changed: a program built
   against version 1 must be recompiled). */
#define OPTIM_C_API_VERSION 2

/* In C++ the two enums below have int as their fixed underlying type, so
   that every int a C caller passes (optim_status_name(99), a dtype of 7) is
   a value of the type: out of the range of an enum without one it would be
   undefined behavior in the library, which UBSan reports and an optimizer
   may assume away. Size and calling convention are those of the C enums. */
#ifdef __cplusplus
#define OPTIM_ENUM_BASE_ : int
#else
#define OPTIM_ENUM_BASE_
#endif

typedef enum optim_status OPTIM_ENUM_BASE_ {
  OPTIM_OK = 0,
  /* A NULL handle or pointer, a wrong count or size, a wrong element type,
     misaligned or overlapping parameters, a non-finite hyperparameter. */
  OPTIM_ERROR_INVALID_ARGUMENT = 1,
  /* No hyperparameter or state of that name; an index (hyperparameter,
     state, parameter, group) out of range. */
  OPTIM_ERROR_NOT_FOUND = 2,
  /* The hyperparameter is `const`: its value is compiled into the kernel. */
  OPTIM_ERROR_CONST_HYPERPARAMETER = 3,
  /* The program does not compile (the message holds file:line:col
     diagnostics), its file cannot be read, or it has no such rule. */
  OPTIM_ERROR_COMPILE = 4,
  /* A checkpoint cannot be written or read, is corrupt or truncated, or was
     written by another rule or for other parameter sizes. */
  OPTIM_ERROR_IO = 5,
  /* The rule is valid but this runtime cannot run it. */
  OPTIM_ERROR_UNSUPPORTED = 6,
  /* Memory, or another resource of the system, ran out: the message says
     which (e.g. "cannot start 1023 worker threads: Resource temporarily
     unavailable"). */
  OPTIM_ERROR_OUT_OF_MEMORY = 7,
  /* A bug: an unexpected failure inside the library. */
  OPTIM_ERROR_INTERNAL = 8
} optim_status;

typedef enum optim_dtype OPTIM_ENUM_BASE_ {
  OPTIM_F32 = 0,
  OPTIM_F64 = 1
} optim_dtype;
#undef OPTIM_ENUM_BASE_

typedef struct optim_rule optim_rule;
typedef struct optim_optimizer optim_optimizer;

/* The message of the last failure on the calling thread ("" if none). It is
   not cleared by calls that succeed, and stays valid until the next failure
   on this thread. */
const char *optim_last_error(void);

/* A constant name for a status, e.g. "OPTIM_ERROR_NOT_FOUND"; never NULL. */
const char *optim_status_name(optim_status status);

/*===--- Rules ------------------------------------------------------------===*/

typedef struct optim_hyper_info {
  const char *name;
  double default_value;
  int is_const; /* 1 when compiled in: optim_optimizer_set refuses it */
} optim_hyper_info;

typedef struct optim_state_info {
  const char *name;
  int64_t size; /* per coordinate: 1, or N for `state x[N]` */
  double init;  /* the value every coordinate starts from */
} optim_state_info;

optim_status optim_rule_name(const optim_rule *rule, const char **out);
optim_status optim_rule_dtype(const optim_rule *rule, optim_dtype *out);
optim_status optim_rule_num_hypers(const optim_rule *rule, size_t *out);
/* Hyperparameters in declaration order. */
optim_status optim_rule_hyper(const optim_rule *rule, size_t index,
                              optim_hyper_info *out);
/* OPTIM_ERROR_NOT_FOUND when the rule has no hyperparameter `name`. */
optim_status optim_rule_find_hyper(const optim_rule *rule, const char *name,
                                   size_t *index);
optim_status optim_rule_num_states(const optim_rule *rule, size_t *out);
optim_status optim_rule_state(const optim_rule *rule, size_t index,
                              optim_state_info *out);
optim_status optim_rule_release(optim_rule *rule);

/* The learned weights of a learned rule (none for an update rule), in
   declaration order: `size` elements of the rule's dtype, row-major in
   `shape` (`rank` dimensions; the array lives as long as the rule). */
typedef struct optim_weights_info {
  const char *name;
  const int64_t *shape;
  size_t rank;
  int64_t size;
} optim_weights_info;

optim_status optim_rule_num_weights(const optim_rule *rule, size_t *out);
optim_status optim_rule_weights(const optim_rule *rule, size_t index,
                                optim_weights_info *out);

/* The tensor reductions of a rule (tensor_norm, global_sum, ...), one per
   call in its body order; none for most rules. A rule with reductions steps
   like any other (optim_optimizer_step_*), in two passes over memory (more
   for nested ones: optim_rule_reduction_level). */
typedef struct optim_reduction_info {
  const char *kind; /* "sum", "mean", "norm", "max" or "min"; kernel ABI 11:
                       "newton_schulz" (axis "matrix"), "rows" or "cols"
                       (the shape values rows() and cols()) */
  int global; /* 1: over every parameter of the optimizer; 0: over the
                 coordinate's own tensor */
} optim_reduction_info;

optim_status optim_rule_num_reductions(const optim_rule *rule, size_t *out);
optim_status optim_rule_reduction(const optim_rule *rule, size_t index,
                                  optim_reduction_info *out);
/* The level of reduction `index` (kernel ABI 9, "Nested reductions"): 0 when
   what it reduces depends on no reduction's result, else 1 + the largest
   level among the reductions it depends on. A rule whose largest level is L
   makes L + 2 passes over memory per step. Errors as optim_rule_reduction
   (OPTIM_ERROR_NOT_FOUND for an index out of range). */
optim_status optim_rule_reduction_level(const optim_rule *rule, size_t index,
                                        unsigned *out);

/* Row and column states and reductions (kernel ABI 10; `row state r`,
   `col state c`, row_mean(x), col_max(x), ...): `*out` is "none" (per
   coordinate; over the whole tensor), "row" (one value per row of the
   parameter) or "col" (one per column), a string that outlives the rule.
   Such a rule needs each parameter's shape (optim_optimizer_create_shaped;
   without one a parameter is a single row). A newton_schulz reduction
   (kernel ABI 11) has axis "matrix": a function of each whole matrix. Rules
   that read rows() or cols() use the shapes too, with axes or without.
   OPTIM_ERROR_NOT_FOUND for an index out of range. */
optim_status optim_rule_state_axis(const optim_rule *rule, size_t index,
                                   const char **out);
optim_status optim_rule_reduction_axis(const optim_rule *rule, size_t index,
                                       const char **out);

/* The per-coordinate inputs of a rule (`input h`: a Hessian estimate, a
   noise sample, a second gradient), in declaration order; none for most
   rules. A rule with inputs steps with optim_optimizer_step_inputs_* only
   (optim_optimizer_step_* refuses it with OPTIM_ERROR_INVALID_ARGUMENT,
   naming them). `*name` lives as long as the rule. */
optim_status optim_rule_num_inputs(const optim_rule *rule, size_t *out);
optim_status optim_rule_input(const optim_rule *rule, size_t index,
                              const char **name);

/* The random draw sites of a rule (each call of `rand()` or `randn()` in its
   body, in body order; none for most rules): `*kind` is "uniform" or
   "normal" and lives as long as the rule. The draws depend on the seed
   (optim_options.seed), the coordinate, the step and the site only. */
optim_status optim_rule_num_random(const optim_rule *rule, size_t *out);
optim_status optim_rule_random(const optim_rule *rule, size_t index,
                               const char **kind);

/*===--- Optimizers -------------------------------------------------------===*/

typedef struct optim_options {
  uint32_t threads;    /* worker threads; 0: one per hardware thread; at
                          most 1024 */
  int64_t chunk_size;  /* coordinates per unit of work; > 0 */
  int skip_non_finite; /* 1: skip (and count) steps whose gradients hold
                          a NaN or an infinity, changing nothing */
  uint64_t seed;       /* the key of the rule's random numbers (`rand()`,
                          `randn()`); any value; recorded by
                          optim_optimizer_save, restored by _load; default 0.
                          Ignored by rules that draw nothing. */
} optim_options;

/* Fills `options` with the defaults (those used when NULL is passed). */
optim_status optim_options_init(optim_options *options);

/* One parameter group: parameters sharing hyperparameter values. */
typedef struct optim_hyper_value {
  const char *name;
  double value;
} optim_hyper_value;

typedef struct optim_group {
  void *const *params;  /* num_params pointers, of the rule's dtype */
  const int64_t *sizes; /* num_params element counts */
  size_t num_params;
  const optim_hyper_value *hypers; /* values differing from the defaults */
  size_t num_hypers;
} optim_group;

/* An optimizer over `num_params` tensors of the rule's dtype, updated in
   place. A parameter with 0 elements may be NULL. `options` may be NULL. */
optim_status optim_optimizer_create_f32(const optim_rule *rule,
                                        float *const *params,
                                        const int64_t *sizes, size_t num_params,
                                        const optim_options *options,
                                        optim_optimizer **out);
optim_status optim_optimizer_create_f64(const optim_rule *rule,
                                        double *const *params,
                                        const int64_t *sizes, size_t num_params,
                                        const optim_options *options,
                                        optim_optimizer **out);
/* With parameter groups, whose parameters are of element type `dtype` (which
   must be the rule's). Parameters are numbered across groups, in order. */
optim_status optim_optimizer_create_groups(
    const optim_rule *rule, optim_dtype dtype, const optim_group *groups,
    size_t num_groups, const optim_options *options, optim_optimizer **out);

/* A parameter's dimensions, row-major: `rank` values at `dims` (rank 0 with
   dims NULL: not given). */
typedef struct optim_shape {
  const int64_t *dims;
  size_t rank;
} optim_shape;

/* optim_optimizer_create_groups with each parameter's shape: `shapes` holds
   one entry per parameter, numbered across groups (or is NULL: none given).
   A rule with row or column states or reductions (optim_rule_state_axis)
   sees a parameter as B matrices of R rows and C columns (C the last
   dimension, R the one before, 1 for one dimension; B the product of the
   others; a single row without a shape), and so does one that reads rows()
   or cols() (kernel ABI 11); other rules ignore shapes. Every
   shape given is checked for every rule: OPTIM_ERROR_INVALID_ARGUMENT for a
   negative dimension, more than 64 dimensions (numpy's limit), a product other than the
   parameter's size, or dims NULL with a rank above 0. */
optim_status optim_optimizer_create_shaped(
    const optim_rule *rule, optim_dtype dtype, const optim_group *groups,
    size_t num_groups, const optim_shape *shapes, const optim_options *options,
    optim_optimizer **out);
optim_status optim_optimizer_release(optim_optimizer *opt);

/* The optimizer's rule, owned by the optimizer (do not release it). */
optim_status optim_optimizer_rule(const optim_optimizer *opt,
                                  const optim_rule **out);
optim_status optim_optimizer_num_params(const optim_optimizer *opt,
                                        size_t *out);
optim_status optim_optimizer_param_size(const optim_optimizer *opt,
                                        size_t param, int64_t *out);
optim_status optim_optimizer_num_groups(const optim_optimizer *opt,
                                        size_t *out);

/* Sets a hyperparameter in every group, or in one group. */
optim_status optim_optimizer_set(optim_optimizer *opt, const char *name,
                                 double value);
optim_status optim_optimizer_set_group(optim_optimizer *opt, size_t group,
                                       const char *name, double value);
optim_status optim_optimizer_get(const optim_optimizer *opt, size_t group,
                                 const char *name, double *out);

/* One step with one gradient per parameter, in parameter order. A gradient
   must not overlap a parameter or the optimizer's state (the memory the step
   writes; OPTIM_ERROR_INVALID_ARGUMENT). `stepped`
   may be NULL; it receives 1, or 0 when the step was skipped because of a
   non-finite gradient (skip_non_finite). A skipped step is not an error.
   A rule with per-coordinate inputs needs optim_optimizer_step_inputs_*
   below. */
optim_status optim_optimizer_step_f32(optim_optimizer *opt,
                                      const float *const *grads,
                                      const int64_t *sizes, size_t num_grads,
                                      int *stepped);
optim_status optim_optimizer_step_f64(optim_optimizer *opt,
                                      const double *const *grads,
                                      const int64_t *sizes, size_t num_grads,
                                      int *stepped);

/* One input of a rule for one step: `name` as the rule declares it, and one
   tensor per parameter (num_grads of them, in parameter order): data[i]
   holds sizes[i] elements of the rule's dtype, read only. */
typedef struct optim_input_f32 {
  const char *name;
  const float *const *data;
  const int64_t *sizes;
} optim_input_f32;
typedef struct optim_input_f64 {
  const char *name;
  const double *const *data;
  const int64_t *sizes;
} optim_input_f64;

/* One step of a rule with per-coordinate inputs: the gradients as for
   optim_optimizer_step_*, and every input of the rule exactly once, in any
   order (`num_inputs` of them; a rule without inputs takes 0). Each input's
   tensors are checked as the gradients are (sizes, dtype, NULL, alignment,
   no overlap with a parameter or the state; they may overlap a gradient or
   each other). OPTIM_ERROR_NOT_FOUND for a name the rule has no input of;
   OPTIM_ERROR_INVALID_ARGUMENT for a missing or repeated input, or a bad
   tensor. With skip_non_finite, a NaN or an infinity in an input skips the
   step as one in a gradient does (`stepped` 0). */
optim_status optim_optimizer_step_inputs_f32(optim_optimizer *opt,
                                             const float *const *grads,
                                             const int64_t *sizes,
                                             size_t num_grads,
                                             const optim_input_f32 *inputs,
                                             size_t num_inputs, int *stepped);
optim_status optim_optimizer_step_inputs_f64(optim_optimizer *opt,
                                             const double *const *grads,
                                             const int64_t *sizes,
                                             size_t num_grads,
                                             const optim_input_f64 *inputs,
                                             size_t num_inputs, int *stepped);

/* Steps taken (t of the last one), and steps skipped. */
optim_status optim_optimizer_step_count(const optim_optimizer *opt,
                                        int64_t *out);
optim_status optim_optimizer_skipped_steps(const optim_optimizer *opt,
                                           int64_t *out);
/* The seed of the rule's random numbers: optim_options.seed, or the one the
   last optim_optimizer_load restored. */
optim_status optim_optimizer_seed(const optim_optimizer *opt, uint64_t *out);

/* The state `name` of parameter `param`, read only, of the rule's dtype:
   `*count` elements (size * parameter size, component-major for a vector
   state; B * R for a row state, B * C for a column state, the parameter
   seen as optim_optimizer_create_shaped says). The pointer stays valid, and
   sees every later step, for the optimizer's lifetime. `count` may be NULL. */
optim_status optim_optimizer_state(const optim_optimizer *opt, size_t param,
                                   const char *name, const void **data,
                                   int64_t *count);

/* Learned weights. Every weights tensor of a learned rule must be set before
   its first step (which otherwise fails with OPTIM_ERROR_INVALID_ARGUMENT);
   they may be replaced between steps. set_weights copies `count` elements
   (the rule's dtype, row-major): OPTIM_ERROR_NOT_FOUND when the rule has no
   weights `name`, OPTIM_ERROR_INVALID_ARGUMENT on another count or dtype.
   load_weights sets every tensor from a safetensors file holding one tensor
   per weights name, of the rule's dtype and shape: OPTIM_ERROR_IO on a
   missing, truncated or corrupt file, a missing tensor or another shape or
   dtype; OPTIM_ERROR_NOT_FOUND when the rule has no weights at all. */
optim_status optim_optimizer_set_weights_f32(optim_optimizer *opt,
                                             const char *name,
                                             const float *data, int64_t count);
optim_status optim_optimizer_set_weights_f64(optim_optimizer *opt,
                                             const char *name,
                                             const double *data, int64_t count);
optim_status optim_optimizer_load_weights(optim_optimizer *opt,
                                          const char *path);

/* Checkpoints: state, step counts and hyperparameters, in the safetensors
   layout. save replaces `path` atomically; load changes nothing unless the
   whole file is valid for this optimizer. */
optim_status optim_optimizer_save(const optim_optimizer *opt, const char *path);
optim_status optim_optimizer_load(optim_optimizer *opt, const char *path);

/*===--- Trajectories: meta-training and hypergradients ------------------===*/

/* The unrolled steps of a rule and their reverse mode (optim::Trajectory,
   docs/meta-training.md): a trajectory owns parameters θ and the rule's
   state, records each step, and backward gives dL/d(learned weights),
   dL/d(hyperparameters) and dL/dθ before the first recorded step for a loss
   L whose explicit derivatives dL/dθ_t the caller supplies (∇f(θ_t) for
   L = Σ f(θ_t)). The gradients fed to the steps are constants of the reverse
   mode (second derivatives of f dropped, as in Andrychowicz et al., 2016).
   The rule must be compiled with its reverse mode (OPTIM_COMPILE_REVERSE,
   optim_compiler.h). */
typedef struct optim_trajectory optim_trajectory;

/* Over `num_params` tensors of `sizes` elements of the rule's dtype, owned by
   the trajectory and set to 0 (write the initial θ through
   optim_trajectory_param). `shapes`: one per parameter as for
   optim_optimizer_create_shaped, or NULL. `options` (NULL: defaults):
   threads, chunk_size and seed as for optimizers (the gradients' rounding
   depends on chunk_size, never on threads); skip_non_finite must be 0. */
optim_status optim_trajectory_create(const optim_rule *rule,
                                     const int64_t *sizes, size_t num_params,
                                     const optim_shape *shapes,
                                     const optim_options *options,
                                     optim_trajectory **out);
optim_status optim_trajectory_release(optim_trajectory *traj);
optim_status optim_trajectory_num_params(const optim_trajectory *traj,
                                         size_t *out);

/* θ_param now, writable: `*count` elements of the rule's dtype. Write it (and
   the states) only while no step is recorded (after create, truncate or
   reset_state): the recorded steps ran from the values they recorded, and
   backward would differentiate a trajectory that never happened. The
   pointer stays valid for the trajectory's lifetime. `count` may be NULL. */
optim_status optim_trajectory_param(optim_trajectory *traj, size_t param,
                                    void **data, int64_t *count);
/* The state `name` of parameter `param` now, writable, laid out as
   optim_optimizer_state's. */
optim_status optim_trajectory_state(optim_trajectory *traj, size_t param,
                                    const char *name, void **data,
                                    int64_t *count);

/* Hyperparameters for the following steps (backward differentiates each step
   with the values it ran with). Errors as optim_optimizer_set. */
optim_status optim_trajectory_set(optim_trajectory *traj, const char *name,
                                  double value);
optim_status optim_trajectory_get(const optim_trajectory *traj,
                                  const char *name, double *out);
/* Learned weights, as optim_optimizer_set_weights_* and _load_weights, only
   while no step is recorded (after create, truncate or reset_state:
   OPTIM_ERROR_INVALID_ARGUMENT otherwise). Set them all before the first
   step. */
optim_status optim_trajectory_set_weights_f32(optim_trajectory *traj,
                                              const char *name,
                                              const float *data, int64_t count);
optim_status optim_trajectory_set_weights_f64(optim_trajectory *traj,
                                              const char *name,
                                              const double *data,
                                              int64_t count);
optim_status optim_trajectory_load_weights(optim_trajectory *traj,
                                           const char *path);
/* The seed of the rule's random numbers for the following steps; only while
   no step is recorded. */
optim_status optim_trajectory_set_seed(optim_trajectory *traj, uint64_t seed);

/* Every state back to its initial value, the step count to 0, the tape
   dropped (θ kept). */
optim_status optim_trajectory_reset_state(optim_trajectory *traj);
/* Drops the tape, keeping θ, the state and the step count: the start of the
   next truncation of truncated backpropagation through time. */
optim_status optim_trajectory_truncate(optim_trajectory *traj);

/* One recorded step: one gradient per parameter (num_grads must be the
   number of parameters, sizes theirs), and every per-coordinate input of the
   rule exactly once (NULL and 0 for a rule without inputs), as
   optim_optimizer_step_inputs_*. A gradient or input must not lie in the
   trajectory's θ or state. Nothing is recorded when a call fails. */
optim_status optim_trajectory_step_f32(optim_trajectory *traj,
                                       const float *const *grads,
                                       const int64_t *sizes, size_t num_grads,
                                       const optim_input_f32 *inputs,
                                       size_t num_inputs);
optim_status optim_trajectory_step_f64(optim_trajectory *traj,
                                       const double *const *grads,
                                       const int64_t *sizes, size_t num_grads,
                                       const optim_input_f64 *inputs,
                                       size_t num_inputs);
/* Steps recorded since the last truncate or reset_state; steps taken since
   the last reset_state (t of the last one). */
optim_status optim_trajectory_tape_length(const optim_trajectory *traj,
                                          size_t *out);
optim_status optim_trajectory_step_count(const optim_trajectory *traj,
                                         int64_t *out);

/* The backward pass over the recorded steps. `dl_dparams` holds
   `count` = tape_length * num_params pointers, step-major:
   dl_dparams[k * num_params + i] is the explicit dL/dθ_i after recorded step
   k (parameter i's size, the rule's dtype), or NULL for none. The results
   are kept until the next backward: optim_trajectory_weights_gradient,
   _hyper_gradient, _param_adjoint and _state_adjoint read them. The tape is
   kept (backward may run again). */
optim_status optim_trajectory_backward_f32(optim_trajectory *traj,
                                           const float *const *dl_dparams,
                                           size_t count);
optim_status optim_trajectory_backward_f64(optim_trajectory *traj,
                                           const double *const *dl_dparams,
                                           size_t count);
/* dL/d(weights `name`): `*count` doubles, row-major in the weights' shape
   (optim_rule_weights); valid until the next backward or the release. */
optim_status optim_trajectory_weights_gradient(const optim_trajectory *traj,
                                               const char *name,
                                               const double **data,
                                               int64_t *count);
/* dL/d(hyperparameter `name`); 0 for a const one. */
optim_status optim_trajectory_hyper_gradient(const optim_trajectory *traj,
                                             const char *name, double *out);
/* dL/dθ_param and dL/d(state `name` of parameter `param`) before the first
   recorded step, of the rule's dtype, laid out as _param and _state. */
optim_status optim_trajectory_param_adjoint(const optim_trajectory *traj,
                                            size_t param, const void **data,
                                            int64_t *count);
optim_status optim_trajectory_state_adjoint(const optim_trajectory *traj,
                                            size_t param, const char *name,
                                            const void **data, int64_t *count);

/*===--- QP layers
 * ---------------------------------------------------------===*/

/* A compiled `layer` (docs/qp.md), from optim_compile_layer_file or _source
   (optim_compiler.h): forward on a batch solves one QP per element, backward
   gives the gradients of the inputs and (summed over the batch) of the
   weights. Buffers are row-major of the layer's dtype: input i is [B, its
   shape...], weights w its shape, output o [B, its shape...]; gradients
   have the shape of what they are the gradient of. A layer is used by one
   thread at a time (optim_layer_release may run while another call is
   inside: it waits for it). */
typedef struct optim_layer optim_layer;

typedef enum optim_layer_tensor_kind {
  OPTIM_LAYER_INPUT = 0,
  OPTIM_LAYER_WEIGHTS = 1,
  OPTIM_LAYER_OUTPUT = 2
} optim_layer_tensor_kind;

typedef struct optim_layer_tensor_info {
  const char *name;
  const int64_t *shape; /* per batch element for inputs and outputs */
  size_t rank;
  int64_t size;    /* elements per batch element (inputs, outputs) */
  int output_kind; /* outputs: 0 = z, 1 = nu, 2 = lam; else -1 */
} optim_layer_tensor_info;

optim_status optim_layer_release(optim_layer *layer);
optim_status optim_layer_name(const optim_layer *layer, const char **out);
optim_status optim_layer_dtype(const optim_layer *layer, optim_dtype *out);
optim_status optim_layer_num_tensors(const optim_layer *layer,
                                     optim_layer_tensor_kind kind, size_t *out);
/* In declaration order; strings and shapes live as long as the layer. */
optim_status optim_layer_tensor(const optim_layer *layer,
                                optim_layer_tensor_kind kind, size_t index,
                                optim_layer_tensor_info *out);
/* The QP's sizes: n variables, m equalities, p inequalities. */
optim_status optim_layer_sizes(const optim_layer *layer, int64_t *n, int64_t *m,
                               int64_t *p);
/* Solver threads over the batch (0: one per hardware thread, at most 1024);
   results do not depend on it. Drops the last forward. */
optim_status optim_layer_set_threads(optim_layer *layer, unsigned threads);
/* The layer on `batch` elements. With `status` (int32 per element: 0
   solved, 1 iteration limit, 2 primal infeasible, 3 dual infeasible, 4
   numerical error) every problem's status is written; with NULL an
   unsolved problem is OPTIM_ERROR_INVALID_ARGUMENT naming it. The inputs
   and weights must stay valid and unchanged until the next backward. A
   failed call leaves the last forward as it was. */
optim_status optim_layer_forward(optim_layer *layer, int64_t batch,
                                 const void *const *inputs, size_t num_inputs,
                                 const void *const *weights, size_t num_weights,
                                 void *const *outputs, size_t num_outputs,
                                 int32_t *status);
/* Gradients of sum <doutput_o, output_o> through the last forward, whose
   problems must all be solved. A NULL doutput is zero; a NULL dinput or
   dweights is not computed. */
optim_status optim_layer_backward(optim_layer *layer,
                                  const void *const *doutputs,
                                  size_t num_outputs, void *const *dinputs,
                                  size_t num_inputs, void *const *dweights,
                                  size_t num_weights);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OPTIM_OPTIM_H */
