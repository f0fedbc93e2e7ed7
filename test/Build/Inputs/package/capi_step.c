/* The same step as jit_step.cpp through liboptim.so, from C. */
#include "optim/Compiler/optim_compiler.h"
#include "optim/optim.h"

#include <math.h>
#include <stdio.h>

static int fail(const char *what) {
  fprintf(stderr, "capi-step: %s: %s\n", what, optim_last_error());
  return 1;
}

int main(void) {
  optim_rule *rule = NULL;
  optim_optimizer *opt = NULL;
  float w[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.5f, -0.25f, 2.0f};
  const float before[3] = {1.0f, -2.0f, 0.5f};
  float *params[1] = {w};
  const float *grads[1] = {g};
  int64_t sizes[1] = {3};
  int stepped = 0, i;
  if (optim_compile_file(EXAMPLES_DIR "/adam.optim", NULL, 0, &rule))
    return fail("optim_compile_file");
  if (optim_optimizer_create_f32(rule, params, sizes, 1, NULL, &opt))
    return fail("optim_optimizer_create_f32");
  if (optim_optimizer_set(opt, "lr", 0.1) ||
      optim_optimizer_step_f32(opt, grads, sizes, 1, &stepped) || !stepped)
    return fail("step");
  for (i = 0; i < 3; ++i) {
    double want = before[i] - 0.1 * g[i] / (fabs(g[i]) + 1e-8);
    if (fabs(w[i] - want) > 1e-6) {
      printf("capi-step: w[%d] = %.9g, expected %.9g\n", i, w[i], want);
      return 1;
    }
  }
  printf("capi-step: stepped, w = %g %g %g\n", w[0], w[1], w[2]);
  optim_optimizer_release(opt);
  optim_rule_release(rule);
  return 0;
}
