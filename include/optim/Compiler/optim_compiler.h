/*===- optim_compiler.h - JIT-compile .optim rules from C ------------------===*
 *
 * The compiler's C entry points, for foreign callers (see optim/optim.h for
 * the conventions shared by the whole C API). They return a rule handle,
 * owned by the caller, who releases it with optim_rule_release(). A rule
 * handle is immutable and its kernel stays loaded as long as the handle or
 * any optimizer created from it exists.
 *
 * Compiling is thread-safe: each call compiles in its own context.
 *
 *===----------------------------------------------------------------------===*/

#ifndef OPTIM_COMPILER_OPTIM_COMPILER_H
#define OPTIM_COMPILER_OPTIM_COMPILER_H

#include "optim/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Compiles the rule `rule_name_or_null` of the file at `path` (NULL or "":
   the file's only rule) for f64 elements if `precision_f64` is non-zero,
   f32 otherwise. OPTIM_ERROR_COMPILE with located diagnostics when the
   program is wrong, the file unreadable or the rule absent. */
optim_status optim_compile_file(const char *path, const char *rule_name_or_null,
                                int precision_f64, optim_rule **out);

/* Same, from the NUL-terminated program text `source`; `buffer_name_or_null`
   names it in diagnostics (NULL: "<source>"). */
optim_status optim_compile_source(const char *source,
                                  const char *buffer_name_or_null,
                                  const char *rule_name_or_null,
                                  int precision_f64, optim_rule **out);

/* Flags of optim_compile_*_flags. */
enum {
  OPTIM_COMPILE_F64 = 1,    /* f64 elements (default f32) */
  OPTIM_COMPILE_REVERSE = 2 /* also the rule's reverse mode, which
                               optim_trajectory_create needs (meta-training,
                               hypergradients); such compilations are not
                               cached */
};

/* optim_compile_file and optim_compile_source with flags (OPTIM_COMPILE_*,
   or-ed; OPTIM_ERROR_INVALID_ARGUMENT for any other bit). */
optim_status optim_compile_file_flags(const char *path,
                                      const char *rule_name_or_null,
                                      unsigned flags, optim_rule **out);
optim_status optim_compile_source_flags(const char *source,
                                        const char *buffer_name_or_null,
                                        const char *rule_name_or_null,
                                        unsigned flags, optim_rule **out);

/* A QP layer of the file or source (`layer_name_or_null`: NULL for the
   only one), for the CPU: optim_layer_* in optim.h. `flags`:
   OPTIM_COMPILE_F64 or 0. OPTIM_ERROR_COMPILE with located diagnostics. */
optim_status optim_compile_layer_file(const char *path,
                                      const char *layer_name_or_null,
                                      unsigned flags, optim_layer **out);
optim_status optim_compile_layer_source(const char *source,
                                        const char *buffer_name_or_null,
                                        const char *layer_name_or_null,
                                        unsigned flags, optim_layer **out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OPTIM_COMPILER_OPTIM_COMPILER_H */
