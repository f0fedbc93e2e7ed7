/*===- CApiTest.c - the C API, used from C ---------------------------------===*
 *
 * A C99 program that includes only the two C headers, as a foreign caller
 * would. It trains with the C API and compares with a reference computed
 * here, and checks that every wrong call returns the right status, leaves a
 * useful message in optim_last_error() and changes nothing.
 *
 * Usage: OptimCApiTest <examples directory>
 *
 *===----------------------------------------------------------------------===*/

/* getpid() and pthreads are POSIX, not C99. */
#define _POSIX_C_SOURCE 200809L

#include "optim/Compiler/optim_compiler.h"
#include "optim/optim.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;
static const char *examplesDir;

static void check(int ok, const char *what, int line) {
  if (ok) {
    ++passed;
    return;
  }
  ++failed;
  fprintf(stderr, "CApiTest.c:%d: FAILED: %s\n  last error: %s\n", line, what,
          optim_last_error());
}
#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

/* Checks that `call` returns `status` and leaves a message containing
   `needle`. */
static void checkError(optim_status got, optim_status want, const char *needle,
                       const char *call, int line) {
  const char *msg = optim_last_error();
  if (got == want && msg && strstr(msg, needle)) {
    ++passed;
    return;
  }
  ++failed;
  fprintf(stderr,
          "CApiTest.c:%d: FAILED: %s\n  returned %s, expected %s\n"
          "  message: %s\n  expected it to contain: %s\n",
          line, call, optim_status_name(got), optim_status_name(want),
          msg ? msg : "(null)", needle);
}
#define CHECK_ERROR(call, want, needle)                                        \
  checkError((call), (want), (needle), #call, __LINE__)

#define CHECK_OK(call)                                                         \
  do {                                                                         \
    optim_status s_ = (call);                                                  \
    check(s_ == OPTIM_OK, #call, __LINE__);                                    \
  } while (0)

static optim_rule *compileExample(const char *name, int f64) {
  char path[4096];
  optim_rule *rule = NULL;
  snprintf(path, sizeof path, "%s/%s.optim", examplesDir, name);
  CHECK_OK(optim_compile_file(path, NULL, f64, &rule));
  if (!rule) {
    fprintf(stderr, "cannot go on without %s\n", path);
    exit(1);
  }
  return rule;
}

static void tempPath(char *out, size_t n, const char *name) {
  const char *dir = getenv("TMPDIR");
  snprintf(out, n, "%s/optim-capi-%ld-%s", dir && *dir ? dir : "/tmp",
           (long)getpid(), name);
}

/* Equal up to a relative error of `rtol` (absolute near 0). */
static int near(double a, double b, double rtol) {
  return fabs(a - b) <= rtol * (fabs(b) + 1e-3);
}

static double gradAt(int t, int tensor, int i) {
  return sin(0.37 * i + t + 0.5 * tensor);
}

/*===--- Rules and the compiler ------------------------------------------===*/

static void testRuleInfo(void) {
  optim_rule *adam = compileExample("adam", 0);
  const char *name = NULL;
  optim_dtype dtype = OPTIM_F64;
  size_t n = 0, index = 99;
  optim_hyper_info h;
  optim_state_info s;

  CHECK_OK(optim_rule_name(adam, &name));
  CHECK(name && strcmp(name, "adam") == 0);
  CHECK_OK(optim_rule_dtype(adam, &dtype));
  CHECK(dtype == OPTIM_F32);
  CHECK_OK(optim_rule_num_hypers(adam, &n));
  CHECK(n == 4);
  CHECK_OK(optim_rule_hyper(adam, 0, &h));
  CHECK(strcmp(h.name, "lr") == 0 && near(h.default_value, 1e-3, 1e-15) &&
        !h.is_const);
  CHECK_OK(optim_rule_hyper(adam, 2, &h));
  CHECK(strcmp(h.name, "beta2") == 0 && near(h.default_value, 0.999, 1e-15));
  CHECK_OK(optim_rule_find_hyper(adam, "eps", &index));
  CHECK(index == 3);
  CHECK_OK(optim_rule_num_states(adam, &n));
  CHECK(n == 2);
  CHECK_OK(optim_rule_state(adam, 1, &s));
  CHECK(strcmp(s.name, "v") == 0 && s.size == 1 && s.init == 0.0);

  /* Errors leave the out-arguments alone. */
  index = 99;
  CHECK_ERROR(optim_rule_find_hyper(adam, "lrr", &index), OPTIM_ERROR_NOT_FOUND,
              "rule 'adam' has no hyperparameter 'lrr'");
  CHECK(index == 99);
  h.name = "untouched";
  CHECK_ERROR(optim_rule_hyper(adam, 4, &h), OPTIM_ERROR_NOT_FOUND,
              "index 4 is out of range: rule 'adam' has 4 hyperparameters");
  CHECK(strcmp(h.name, "untouched") == 0);
  CHECK_ERROR(optim_rule_state(adam, 2, &s), OPTIM_ERROR_NOT_FOUND,
              "has 2 states");
  CHECK_ERROR(optim_rule_name(NULL, &name), OPTIM_ERROR_INVALID_ARGUMENT,
              "optim_rule_name: rule is NULL");
  CHECK_ERROR(optim_rule_name(adam, NULL), OPTIM_ERROR_INVALID_ARGUMENT,
              "optim_rule_name: out is NULL");
  CHECK_ERROR(optim_rule_dtype(NULL, &dtype), OPTIM_ERROR_INVALID_ARGUMENT,
              "rule is NULL");
  CHECK_ERROR(optim_rule_num_hypers(adam, NULL), OPTIM_ERROR_INVALID_ARGUMENT,
              "out is NULL");
  CHECK_ERROR(optim_rule_find_hyper(adam, NULL, &index),
              OPTIM_ERROR_INVALID_ARGUMENT, "name is NULL");
  CHECK_ERROR(optim_rule_state(NULL, 0, &s), OPTIM_ERROR_INVALID_ARGUMENT,
              "rule is NULL");
  CHECK_OK(optim_rule_release(adam));
  CHECK_OK(optim_rule_release(NULL));

  optim_rule *adam64 = compileExample("adam", 1);
  CHECK_OK(optim_rule_dtype(adam64, &dtype));
  CHECK(dtype == OPTIM_F64);
  CHECK_OK(optim_rule_release(adam64));
}

static void testCompileErrors(void) {
  optim_rule *sentinel = (optim_rule *)&passed; /* never dereferenced */
  optim_rule *rule = sentinel;
  CHECK_ERROR(optim_compile_source("rule r() {\n  p -= q\n}\n", "bad.optim",
                                   NULL, 0, &rule),
              OPTIM_ERROR_COMPILE,
              "bad.optim:2:8: error: use of undeclared identifier 'q'");
  CHECK(rule == sentinel);
  CHECK_ERROR(optim_compile_file("/nonexistent/x.optim", NULL, 0, &rule),
              OPTIM_ERROR_COMPILE, "cannot read '/nonexistent/x.optim'");
  CHECK_ERROR(optim_compile_source("rule a() { p -= g }\nrule b() { p += g }",
                                   NULL, NULL, 0, &rule),
              OPTIM_ERROR_COMPILE, "defines several rules (a, b)");
  CHECK_ERROR(optim_compile_source("rule a() { p -= g }", NULL, "zz", 0, &rule),
              OPTIM_ERROR_COMPILE, "has no rule named 'zz' (it has: a)");
  CHECK_ERROR(optim_compile_file(NULL, NULL, 0, &rule),
              OPTIM_ERROR_INVALID_ARGUMENT, "optim_compile_file: path is NULL");
  CHECK_ERROR(optim_compile_source(NULL, NULL, NULL, 0, &rule),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "optim_compile_source: source is NULL");
  CHECK_ERROR(optim_compile_source("rule a() { p -= g }", NULL, NULL, 0, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK(rule == sentinel);

  /* A named rule out of several; the default buffer name. */
  rule = NULL;
  CHECK_OK(optim_compile_source("rule a() { p -= g }\nrule b() { p += g }",
                                NULL, "b", 0, &rule));
  const char *name = NULL;
  CHECK_OK(optim_rule_name(rule, &name));
  CHECK(name && strcmp(name, "b") == 0);
  CHECK_OK(optim_rule_release(rule));
  CHECK_ERROR(optim_compile_source("rule r() { p -= q }", NULL, NULL, 0, &rule),
              OPTIM_ERROR_COMPILE, "<source>:1:");
}

/*===--- Training -------------------------------------------------------===*/

enum { kTensors = 3 };
static const int64_t kSizes[kTensors] = {5, 17, 1000};

/* Adam as in torch.optim.Adam, in double: the reference. */
static void adamReference(double *p, double *m, double *v, const double *g,
                          int64_t n, int t, double lr) {
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int64_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    double mhat = m[i] / (1 - pow(b1, t)), vhat = v[i] / (1 - pow(b2, t));
    p[i] -= lr * mhat / (sqrt(vhat) + eps);
  }
}

/* Trains three tensors (the largest over several chunks and threads) for
   six steps, in f32 and in f64, against adamReference. */
static void testTraining(int f64) {
  optim_rule *adam = compileExample("adam", f64);
  float *pf[kTensors], *gf[kTensors];
  double *pd[kTensors], *gd[kTensors];
  double *ref[kTensors], *mref[kTensors], *vref[kTensors];
  for (int k = 0; k < kTensors; ++k) {
    pf[k] = malloc(kSizes[k] * sizeof(float));
    gf[k] = malloc(kSizes[k] * sizeof(float));
    pd[k] = malloc(kSizes[k] * sizeof(double));
    gd[k] = malloc(kSizes[k] * sizeof(double));
    ref[k] = malloc(kSizes[k] * sizeof(double));
    mref[k] = calloc(kSizes[k], sizeof(double));
    vref[k] = calloc(kSizes[k], sizeof(double));
    for (int64_t i = 0; i < kSizes[k]; ++i) {
      pf[k][i] = (float)(0.1 * k + 0.01 * (double)i);
      pd[k][i] = ref[k][i] = pf[k][i];
    }
  }

  optim_options options;
  CHECK_OK(optim_options_init(&options));
  CHECK(options.chunk_size > 0 && options.threads == 0 &&
        !options.skip_non_finite);
  options.chunk_size = 64;
  options.threads = 2;
  optim_optimizer *opt = NULL;
  if (f64)
    CHECK_OK(
        optim_optimizer_create_f64(adam, pd, kSizes, kTensors, &options, &opt));
  else
    CHECK_OK(
        optim_optimizer_create_f32(adam, pf, kSizes, kTensors, &options, &opt));
  /* The optimizer shares the rule: the caller's handle can go. */
  CHECK_OK(optim_rule_release(adam));
  if (!opt)
    return;

  const optim_rule *own = NULL;
  const char *name = NULL;
  size_t n = 0;
  int64_t size = 0, count = -1;
  double lr = 0;
  CHECK_OK(optim_optimizer_rule(opt, &own));
  CHECK_OK(optim_rule_name(own, &name));
  CHECK(name && strcmp(name, "adam") == 0);
  CHECK_OK(optim_optimizer_num_params(opt, &n));
  CHECK(n == kTensors);
  CHECK_OK(optim_optimizer_param_size(opt, 2, &size));
  CHECK(size == 1000);
  CHECK_OK(optim_optimizer_num_groups(opt, &n));
  CHECK(n == 1);
  CHECK_OK(optim_optimizer_set(opt, "lr", 0.01));
  CHECK_OK(optim_optimizer_get(opt, 0, "lr", &lr));
  CHECK(lr == 0.01);

  for (int t = 1; t <= 6; ++t) {
    for (int k = 0; k < kTensors; ++k)
      for (int64_t i = 0; i < kSizes[k]; ++i) {
        double g = gradAt(t, k, (int)i);
        gf[k][i] = (float)g;
        /* The f32 kernel sees the rounded gradient, so must the reference. */
        gd[k][i] = f64 ? g : (double)gf[k][i];
      }
    int stepped = -1;
    if (f64)
      CHECK_OK(optim_optimizer_step_f64(opt, (const double *const *)gd, kSizes,
                                        kTensors, &stepped));
    else
      CHECK_OK(optim_optimizer_step_f32(opt, (const float *const *)gf, kSizes,
                                        kTensors, &stepped));
    CHECK(stepped == 1);
    for (int k = 0; k < kTensors; ++k)
      adamReference(ref[k], mref[k], vref[k], gd[k], kSizes[k], t, 0.01);
  }

  int64_t steps = 0;
  CHECK_OK(optim_optimizer_step_count(opt, &steps));
  CHECK(steps == 6);
  double rtol = f64 ? 1e-12 : 2e-5;
  int bad = 0, badState = 0;
  for (int k = 0; k < kTensors; ++k) {
    const void *m = NULL;
    CHECK_OK(optim_optimizer_state(opt, (size_t)k, "m", &m, &count));
    CHECK(count == kSizes[k]);
    for (int64_t i = 0; i < kSizes[k]; ++i) {
      double p = f64 ? pd[k][i] : pf[k][i];
      double mv = f64 ? ((const double *)m)[i] : ((const float *)m)[i];
      bad += !near(p, ref[k][i], rtol);
      badState += !near(mv, mref[k][i], rtol);
    }
  }
  CHECK(bad == 0);
  CHECK(badState == 0);
  /* The parameters did move: a no-op kernel would not pass above anyway,
     but the reference would also be wrong if it did not move them. */
  CHECK(fabs(ref[2][500] - 0.1 * 2 - 5.0) > 1e-3);
  if (f64) {
    /* Wrong element type for this optimizer. */
    CHECK_ERROR(optim_optimizer_step_f32(opt, (const float *const *)gf, kSizes,
                                         kTensors, NULL),
                OPTIM_ERROR_INVALID_ARGUMENT,
                "gradient 0 is f32, the rule is f64");
  }

  CHECK_OK(optim_optimizer_release(opt));
  for (int k = 0; k < kTensors; ++k) {
    free(pf[k]);
    free(gf[k]);
    free(pd[k]);
    free(gd[k]);
    free(ref[k]);
    free(mref[k]);
    free(vref[k]);
  }
}

static void testGroups(void) {
  optim_rule *sgd = compileExample("sgd", 0);
  float a[4] = {1, 1, 1, 1}, b[4] = {1, 1, 1, 1}, g[4] = {1, 1, 1, 1};
  void *pa[1] = {a}, *pb[1] = {b};
  int64_t sizes[1] = {4};
  optim_hyper_value half = {"lr", 0.5};
  optim_group groups[2] = {{pa, sizes, 1, &half, 1}, {pb, sizes, 1, NULL, 0}};
  optim_optimizer *opt = NULL;
  CHECK_OK(
      optim_optimizer_create_groups(sgd, OPTIM_F32, groups, 2, NULL, &opt));
  if (!opt) {
    optim_rule_release(sgd);
    return;
  }
  size_t n = 0;
  double lr = 0;
  CHECK_OK(optim_optimizer_num_groups(opt, &n));
  CHECK(n == 2);
  CHECK_OK(optim_optimizer_get(opt, 1, "lr", &lr));
  CHECK(lr == 0.01);
  CHECK_OK(optim_optimizer_set_group(opt, 1, "lr", 0.0));
  const float *grads[2] = {g, g};
  int64_t gsizes[2] = {4, 4};
  CHECK_OK(optim_optimizer_step_f32(opt, grads, gsizes, 2, NULL));
  CHECK(a[0] == 0.5f && a[3] == 0.5f);
  CHECK(b[0] == 1.0f);

  /* Bad groups: unknown hyperparameter, wrong dtype, NULL arrays. */
  optim_optimizer *other = NULL;
  optim_hyper_value typo = {"lrr", 1};
  optim_group bad = {pa, sizes, 1, &typo, 1};
  CHECK_ERROR(
      optim_optimizer_create_groups(sgd, OPTIM_F32, &bad, 1, NULL, &other),
      OPTIM_ERROR_NOT_FOUND,
      "group 0 sets 'lrr', which is not a hyperparameter of rule 'sgd'");
  CHECK_ERROR(optim_optimizer_create_groups(sgd, OPTIM_F64, groups + 1, 1, NULL,
                                            &other),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "parameter 0 is f64 but rule 'sgd' is compiled for f32");
  optim_group nullParams = {NULL, sizes, 1, NULL, 0};
  CHECK_ERROR(optim_optimizer_create_groups(sgd, OPTIM_F32, &nullParams, 1,
                                            NULL, &other),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "group 0: params is NULL but num_params is not 0");
  optim_hyper_value nameless = {NULL, 1};
  optim_group nullName = {pa, sizes, 1, &nameless, 1};
  CHECK_ERROR(
      optim_optimizer_create_groups(sgd, OPTIM_F32, &nullName, 1, NULL, &other),
      OPTIM_ERROR_INVALID_ARGUMENT, "is NULL");
  CHECK_ERROR(
      optim_optimizer_create_groups(sgd, OPTIM_F32, NULL, 2, NULL, &other),
      OPTIM_ERROR_INVALID_ARGUMENT, "groups is NULL");
  CHECK_ERROR(
      optim_optimizer_create_groups(sgd, OPTIM_F32, groups, 0, NULL, &other),
      OPTIM_ERROR_INVALID_ARGUMENT, "no parameter group given");
  CHECK_ERROR(optim_optimizer_create_groups(sgd, (optim_dtype)7, groups, 2,
                                            NULL, &other),
              OPTIM_ERROR_INVALID_ARGUMENT, "dtype");
  CHECK(other == NULL);
  CHECK_ERROR(optim_optimizer_set_group(opt, 2, "lr", 0.1),
              OPTIM_ERROR_NOT_FOUND, "group 2 does not exist");
  /* SIZE_MAX is a group like any other past the last (it was taken for
     "every group" and reported as an invalid argument). */
  CHECK_ERROR(optim_optimizer_set_group(opt, SIZE_MAX, "lr", 0.1),
              OPTIM_ERROR_NOT_FOUND, "does not exist");
  CHECK_ERROR(optim_optimizer_get(opt, 5, "lr", &lr), OPTIM_ERROR_NOT_FOUND,
              "group 5 does not exist");
  CHECK_OK(optim_optimizer_get(opt, 0, "lr", &lr));
  CHECK(lr == 0.5);
  CHECK_OK(optim_optimizer_release(opt));
  CHECK_OK(optim_rule_release(sgd));
}

static void testConstHyperparameter(void) {
  optim_rule *rule = NULL;
  CHECK_OK(
      optim_compile_source("rule r(lr = 0.5, const k = 2) { p -= lr * k * g }",
                           "c.optim", NULL, 0, &rule));
  if (!rule)
    return;
  optim_hyper_info h;
  CHECK_OK(optim_rule_hyper(rule, 1, &h));
  CHECK(strcmp(h.name, "k") == 0 && h.is_const && h.default_value == 2);

  float w[5] = {1, 1, 1, 1, 1}, g[5] = {1, 1, 1, 1, 1};
  float *params[1] = {w};
  const float *grads[1] = {g};
  int64_t sizes[1] = {5};
  optim_optimizer *opt = NULL;
  CHECK_OK(optim_optimizer_create_f32(rule, params, sizes, 1, NULL, &opt));
  if (!opt) {
    optim_rule_release(rule);
    return;
  }
  double k = 0;
  CHECK_ERROR(optim_optimizer_set(opt, "k", 3),
              OPTIM_ERROR_CONST_HYPERPARAMETER, "'k' is const in rule 'r'");
  CHECK_ERROR(optim_optimizer_set_group(opt, 0, "k", 3),
              OPTIM_ERROR_CONST_HYPERPARAMETER, "'k' is const in rule 'r'");
  CHECK_OK(optim_optimizer_get(opt, 0, "k", &k));
  CHECK(k == 2);
  /* A group may restate a const value, not change it. */
  void *vparams[1] = {w};
  optim_hyper_value three = {"k", 3};
  optim_group group = {vparams, sizes, 1, &three, 1};
  optim_optimizer *other = NULL;
  CHECK_ERROR(
      optim_optimizer_create_groups(rule, OPTIM_F32, &group, 1, NULL, &other),
      OPTIM_ERROR_CONST_HYPERPARAMETER, "'k' is const in rule 'r'");
  CHECK(other == NULL);
  CHECK_OK(optim_optimizer_step_f32(opt, grads, sizes, 1, NULL));
  CHECK(w[0] == 0.0f); /* 1 - 0.5 * 2 * 1 */
  CHECK_OK(optim_optimizer_release(opt));
  CHECK_OK(optim_rule_release(rule));
}

static void testSkipNonFinite(void) {
  optim_rule *adam = compileExample("adam", 0);
  float w[50], g[50];
  for (int i = 0; i < 50; ++i) {
    w[i] = 1.0f;
    g[i] = 0.1f;
  }
  float *params[1] = {w};
  const float *grads[1] = {g};
  int64_t sizes[1] = {50};
  optim_options options;
  optim_options_init(&options);
  options.skip_non_finite = 1;
  optim_optimizer *opt = NULL;
  CHECK_OK(optim_optimizer_create_f32(adam, params, sizes, 1, &options, &opt));
  optim_rule_release(adam);
  if (!opt)
    return;
  int stepped = -1;
  int64_t steps = -1, skipped = -1;
  CHECK_OK(optim_optimizer_step_f32(opt, grads, sizes, 1, &stepped));
  CHECK(stepped == 1);
  float before[50];
  memcpy(before, w, sizeof w);
  g[37] = NAN;
  CHECK_OK(optim_optimizer_step_f32(opt, grads, sizes, 1, &stepped));
  CHECK(stepped == 0);
  g[37] = INFINITY;
  CHECK_OK(optim_optimizer_step_f32(opt, grads, sizes, 1, &stepped));
  CHECK(stepped == 0);
  CHECK(memcmp(before, w, sizeof w) == 0);
  CHECK_OK(optim_optimizer_step_count(opt, &steps));
  CHECK_OK(optim_optimizer_skipped_steps(opt, &skipped));
  CHECK(steps == 1 && skipped == 2);
  g[37] = 0.1f;
  CHECK_OK(optim_optimizer_step_f32(opt, grads, sizes, 1, &stepped));
  CHECK(stepped == 1);
  CHECK_OK(optim_optimizer_release(opt));
}

/*===--- Errors change nothing -------------------------------------------===*/

/* What an optimizer looks like from outside, to show a failed call changed
   nothing. */
typedef struct Snapshot {
  float w[100], b[3], m[100];
  int64_t steps;
  double lr;
} Snapshot;

static void snapshot(const optim_optimizer *opt, const float *w, const float *b,
                     Snapshot *s) {
  const void *m = NULL;
  memcpy(s->w, w, sizeof s->w);
  memcpy(s->b, b, sizeof s->b);
  if (optim_optimizer_state(opt, 0, "m", &m, NULL) == OPTIM_OK)
    memcpy(s->m, m, sizeof s->m);
  optim_optimizer_step_count(opt, &s->steps);
  optim_optimizer_get(opt, 0, "lr", &s->lr);
}

static int sameSnapshot(const Snapshot *a, const Snapshot *b) {
  return memcmp(a->w, b->w, sizeof a->w) == 0 &&
         memcmp(a->b, b->b, sizeof a->b) == 0 &&
         memcmp(a->m, b->m, sizeof a->m) == 0 && a->steps == b->steps &&
         a->lr == b->lr;
}

static void testErrorsChangeNothing(void) {
  optim_rule *adam = compileExample("adam", 0);
  optim_rule *sgd = compileExample("sgd", 0);
  float w[100], b[3], gw[100], gb[3], wrong[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  for (int i = 0; i < 100; ++i) {
    w[i] = 1.0f;
    gw[i] = 0.5f;
  }
  for (int i = 0; i < 3; ++i) {
    b[i] = 2.0f;
    gb[i] = 0.5f;
  }
  float *params[2] = {w, b};
  int64_t sizes[2] = {100, 3};
  const float *grads[2] = {gw, gb};
  optim_optimizer *opt = NULL;
  CHECK_OK(optim_optimizer_create_f32(adam, params, sizes, 2, NULL, &opt));
  if (!opt)
    return;
  CHECK_OK(optim_optimizer_step_f32(opt, grads, sizes, 2, NULL));

  Snapshot before, after;
  snapshot(opt, w, b, &before);

  /* NULL handles and out-pointers. */
  int64_t i64 = 42;
  double d = 42;
  size_t z = 42;
  const void *data = NULL;
  CHECK_ERROR(optim_optimizer_step_f32(NULL, grads, sizes, 2, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "optim_optimizer_step_f32: opt is NULL");
  CHECK_ERROR(optim_optimizer_set(NULL, "lr", 0.1),
              OPTIM_ERROR_INVALID_ARGUMENT, "optim_optimizer_set: opt is NULL");
  CHECK_ERROR(optim_optimizer_set(opt, NULL, 0.1), OPTIM_ERROR_INVALID_ARGUMENT,
              "name is NULL");
  CHECK_ERROR(optim_optimizer_get(NULL, 0, "lr", &d),
              OPTIM_ERROR_INVALID_ARGUMENT, "opt is NULL");
  CHECK_ERROR(optim_optimizer_get(opt, 0, "lr", NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK_ERROR(optim_optimizer_step_count(NULL, &i64),
              OPTIM_ERROR_INVALID_ARGUMENT, "opt is NULL");
  CHECK_ERROR(optim_optimizer_step_count(opt, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK_ERROR(optim_optimizer_skipped_steps(NULL, &i64),
              OPTIM_ERROR_INVALID_ARGUMENT, "opt is NULL");
  CHECK_ERROR(optim_optimizer_num_params(opt, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK_ERROR(optim_optimizer_num_groups(NULL, &z),
              OPTIM_ERROR_INVALID_ARGUMENT, "opt is NULL");
  CHECK_ERROR(optim_optimizer_rule(NULL, (const optim_rule **)&data),
              OPTIM_ERROR_INVALID_ARGUMENT, "opt is NULL");
  CHECK_ERROR(optim_optimizer_state(NULL, 0, "m", &data, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "opt is NULL");
  CHECK_ERROR(optim_optimizer_state(opt, 0, "m", NULL, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "data is NULL");
  CHECK_ERROR(optim_optimizer_save(NULL, "x"), OPTIM_ERROR_INVALID_ARGUMENT,
              "opt is NULL");
  CHECK_ERROR(optim_optimizer_load(opt, NULL), OPTIM_ERROR_INVALID_ARGUMENT,
              "path is NULL");
  CHECK_ERROR(optim_options_init(NULL), OPTIM_ERROR_INVALID_ARGUMENT,
              "options is NULL");
  CHECK(i64 == 42 && d == 42 && z == 42 && data == NULL);

  /* Wrong gradients. */
  CHECK_ERROR(optim_optimizer_step_f32(opt, grads, sizes, 1, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "expected 2 gradients (one per parameter), got 1");
  const float *withWrong[2] = {gw, wrong};
  int64_t wrongSizes[2] = {100, 4};
  CHECK_ERROR(optim_optimizer_step_f32(opt, withWrong, wrongSizes, 2, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "gradient 1 has 4 elements but its parameter has 3");
  const float *withNull[2] = {gw, NULL};
  CHECK_ERROR(optim_optimizer_step_f32(opt, withNull, sizes, 2, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "gradient 1 is a null pointer");
  CHECK_ERROR(optim_optimizer_step_f32(opt, NULL, sizes, 2, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "grads is NULL but");
  CHECK_ERROR(optim_optimizer_step_f32(opt, grads, NULL, 2, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "sizes is NULL but");
  double gd[3] = {0, 0, 0};
  const double *dgrads[2] = {gd, gd};
  CHECK_ERROR(optim_optimizer_step_f64(opt, dgrads, sizes, 2, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "gradient 0 is f64, the rule is f32");

  /* Hyperparameters and state that do not exist, bad values. */
  CHECK_ERROR(optim_optimizer_set(opt, "learning_rate", 0.1),
              OPTIM_ERROR_NOT_FOUND,
              "rule 'adam' has no hyperparameter 'learning_rate' (it has: lr, "
              "beta1, beta2, eps)");
  CHECK_ERROR(optim_optimizer_get(opt, 0, "learning_rate", &d),
              OPTIM_ERROR_NOT_FOUND, "no hyperparameter 'learning_rate'");
  CHECK_ERROR(optim_optimizer_set(opt, "lr", NAN), OPTIM_ERROR_INVALID_ARGUMENT,
              "'lr' must be finite");
  CHECK_ERROR(optim_optimizer_set_group(opt, 3, "lr", 0.1),
              OPTIM_ERROR_NOT_FOUND, "group 3 does not exist");
  CHECK_ERROR(optim_optimizer_state(opt, 5, "m", &data, &i64),
              OPTIM_ERROR_NOT_FOUND, "parameter 5 does not exist");
  CHECK_ERROR(optim_optimizer_state(opt, 0, "q", &data, &i64),
              OPTIM_ERROR_NOT_FOUND, "rule 'adam' has no state 'q'");
  CHECK_ERROR(optim_optimizer_param_size(opt, 2, &i64), OPTIM_ERROR_NOT_FOUND,
              "parameter 2 does not exist");
  CHECK(i64 == 42 && d == 42 && data == NULL);

  /* Bad checkpoints. */
  char good[4096], sgdPath[4096], garbage[4096];
  tempPath(good, sizeof good, "good.safetensors");
  tempPath(sgdPath, sizeof sgdPath, "sgd.safetensors");
  tempPath(garbage, sizeof garbage, "garbage.safetensors");
  CHECK_OK(optim_optimizer_save(opt, good));
  CHECK_ERROR(optim_optimizer_save(opt, "/nonexistent/dir/ckpt"),
              OPTIM_ERROR_IO, "/nonexistent/dir/ckpt");
  CHECK_ERROR(optim_optimizer_load(opt, "/nonexistent/ckpt"), OPTIM_ERROR_IO,
              "cannot open");
  FILE *f = fopen(garbage, "wb");
  if (f) {
    fputs("this is not a checkpoint at all", f);
    fclose(f);
  }
  CHECK_ERROR(optim_optimizer_load(opt, garbage), OPTIM_ERROR_IO,
              "optim::Optimizer::load");
  float v[100];
  float *vp[1] = {v};
  int64_t vs[1] = {100};
  optim_optimizer *other = NULL;
  CHECK_OK(optim_optimizer_create_f32(sgd, vp, vs, 1, NULL, &other));
  if (other) {
    CHECK_OK(optim_optimizer_save(other, sgdPath));
    CHECK_ERROR(optim_optimizer_load(opt, sgdPath), OPTIM_ERROR_IO,
                "written by rule 'sgd', not 'adam'");
    optim_optimizer_release(other);
  }

  /* Bad parameters at creation; `out` stays as it was. */
  other = NULL;
  float *nullParam[1] = {NULL};
  int64_t three[1] = {3}, negative[1] = {-1};
  CHECK_ERROR(
      optim_optimizer_create_f32(adam, nullParam, three, 1, NULL, &other),
      OPTIM_ERROR_INVALID_ARGUMENT, "parameter 0 is a null pointer");
  CHECK_ERROR(optim_optimizer_create_f32(adam, vp, negative, 1, NULL, &other),
              OPTIM_ERROR_INVALID_ARGUMENT, "negative size");
  float *overlapping[2] = {v, v + 50};
  int64_t overlapSizes[2] = {60, 50};
  CHECK_ERROR(optim_optimizer_create_f32(adam, overlapping, overlapSizes, 2,
                                         NULL, &other),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "parameter 0 and parameter 1 overlap in memory");
  double dv[4];
  double *dp[1] = {dv};
  int64_t four[1] = {4};
  CHECK_ERROR(optim_optimizer_create_f64(adam, dp, four, 1, NULL, &other),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "parameter 0 is f64 but rule 'adam' is compiled for f32");
  optim_options options;
  optim_options_init(&options);
  options.chunk_size = 0;
  CHECK_ERROR(optim_optimizer_create_f32(adam, vp, vs, 1, &options, &other),
              OPTIM_ERROR_INVALID_ARGUMENT, "chunkSize must be positive");
  CHECK_ERROR(optim_optimizer_create_f32(NULL, vp, vs, 1, NULL, &other),
              OPTIM_ERROR_INVALID_ARGUMENT, "rule is NULL");
  CHECK_ERROR(optim_optimizer_create_f32(adam, NULL, vs, 1, NULL, &other),
              OPTIM_ERROR_INVALID_ARGUMENT, "params is NULL but");
  CHECK_ERROR(optim_optimizer_create_f32(adam, vp, vs, 1, NULL, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK(other == NULL);

  snapshot(opt, w, b, &after);
  CHECK(sameSnapshot(&before, &after));

  /* The good checkpoint still loads, and restores what it saved. */
  CHECK_OK(optim_optimizer_step_f32(opt, grads, sizes, 2, NULL));
  CHECK_OK(optim_optimizer_set(opt, "lr", 0.5));
  CHECK_OK(optim_optimizer_load(opt, good));
  memcpy(w, before.w, sizeof w);
  memcpy(b, before.b, sizeof b);
  snapshot(opt, w, b, &after);
  CHECK(sameSnapshot(&before, &after));

  remove(good);
  remove(sgdPath);
  remove(garbage);
  CHECK_OK(optim_optimizer_release(opt));
  CHECK_OK(optim_optimizer_release(NULL));
  CHECK_OK(optim_rule_release(adam));
  CHECK_OK(optim_rule_release(sgd));
}

/* Resuming from a checkpoint gives the same bits as not stopping. */
static void testCheckpointResumes(void) {
  optim_rule *adam = compileExample("adam", 0);
  enum { n = 1000 };
  static float a[n], b[n], g[n];
  for (int i = 0; i < n; ++i)
    a[i] = b[i] = 0.5f;
  float *pa[1] = {a}, *pb[1] = {b};
  const float *grads[1] = {g};
  int64_t sizes[1] = {n};
  char path[4096];
  tempPath(path, sizeof path, "resume.safetensors");

  optim_optimizer *straight = NULL, *first = NULL, *resumed = NULL;
  CHECK_OK(optim_optimizer_create_f32(adam, pa, sizes, 1, NULL, &straight));
  CHECK_OK(optim_optimizer_create_f32(adam, pb, sizes, 1, NULL, &first));
  if (!straight || !first)
    return;
  optim_optimizer_set(straight, "lr", 0.01);
  optim_optimizer_set(first, "lr", 0.01);
  for (int t = 1; t <= 10; ++t) {
    for (int i = 0; i < n; ++i)
      g[i] = (float)gradAt(t, 0, i);
    CHECK_OK(optim_optimizer_step_f32(straight, grads, sizes, 1, NULL));
    CHECK_OK(optim_optimizer_step_f32(first ? first : resumed, grads, sizes, 1,
                                      NULL));
    if (t == 5) {
      CHECK_OK(optim_optimizer_save(first, path));
      CHECK_OK(optim_optimizer_release(first));
      first = NULL;
      CHECK_OK(optim_optimizer_create_f32(adam, pb, sizes, 1, NULL, &resumed));
      if (!resumed)
        return;
      CHECK_OK(optim_optimizer_load(resumed, path));
      int64_t steps = 0;
      double lr = 0;
      CHECK_OK(optim_optimizer_step_count(resumed, &steps));
      CHECK_OK(optim_optimizer_get(resumed, 0, "lr", &lr));
      CHECK(steps == 5 && lr == 0.01);
    }
  }
  CHECK(memcmp(a, b, sizeof a) == 0);
  remove(path);
  optim_optimizer_release(straight);
  optim_optimizer_release(resumed);
  optim_rule_release(adam);
}

/*===--- Misc ------------------------------------------------------------===*/

static void *failOnOtherThread(void *arg) {
  char *seen = arg;
  /* A fresh thread has no error yet, whatever the main thread did. */
  strncpy(seen, optim_last_error(), 255);
  optim_optimizer_set(NULL, "from the other thread", 0);
  return NULL;
}

static void testLastErrorIsPerThread(void) {
  char seen[256] = "not run";
  optim_rule_name(NULL, NULL);
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, failOnOtherThread, seen) == 0);
  pthread_join(thread, NULL);
  CHECK(seen[0] == '\0');
  CHECK(strstr(optim_last_error(), "optim_rule_name") != NULL);
}

static void *compileOnOtherThread(void *arg) {
  optim_rule *rule = NULL;
  optim_status *status = arg;
  *status = optim_compile_source("rule s(lr = 0.5) { p -= lr * g }", NULL, NULL,
                                 0, &rule);
  if (*status == OPTIM_OK) {
    /* Use the kernel, so that a broken concurrent compilation shows. */
    float w[3] = {1, 1, 1}, g[3] = {1, 1, 1};
    float *params[1] = {w};
    const float *grads[1] = {g};
    int64_t sizes[1] = {3};
    optim_optimizer *opt = NULL;
    *status = optim_optimizer_create_f32(rule, params, sizes, 1, NULL, &opt);
    if (*status == OPTIM_OK)
      *status = optim_optimizer_step_f32(opt, grads, sizes, 1, NULL);
    if (*status == OPTIM_OK && w[2] != 0.5f)
      *status = OPTIM_ERROR_INTERNAL;
    optim_optimizer_release(opt);
  }
  optim_rule_release(rule);
  return NULL;
}

/* The documentation promises that compiling is thread-safe. */
static void testConcurrentCompiles(void) {
  enum { kThreads = 4 };
  pthread_t threads[kThreads];
  optim_status statuses[kThreads];
  int started[kThreads];
  for (int i = 0; i < kThreads; ++i)
    started[i] = pthread_create(&threads[i], NULL, compileOnOtherThread,
                                &statuses[i]) == 0;
  for (int i = 0; i < kThreads; ++i) {
    CHECK(started[i]);
    if (started[i]) {
      pthread_join(threads[i], NULL);
      CHECK(statuses[i] == OPTIM_OK);
    }
  }
}

/*===--- Learned rules: weights from memory and from a file ---------------===*/

/* The l2l step of examples/l2l.optim in double, written from docs/language.md
   (lstm weights [4H, I+H+1] = [W_ih | W_hh | b], gates i, f, g, o; linear
   [O, I+1] = [W | b]; log_sign with k = 10; scale 0.1). */
enum { kHidden = 20 };
typedef struct L2LCoord {
  double p, h1[kHidden], c1[kHidden], h2[kHidden], c2[kHidden];
} L2LCoord;

static double sigmoidRef(double z) { return 1.0 / (1.0 + exp(-z)); }

static void lstmRef(const float *w, const double *x, int in, double *h,
                    double *c) {
  int cols = in + kHidden + 1;
  double input[kHidden + kHidden], z[4 * kHidden];
  for (int j = 0; j < in; ++j)
    input[j] = x[j];
  for (int j = 0; j < kHidden; ++j)
    input[in + j] = h[j];
  for (int r = 0; r < 4 * kHidden; ++r) {
    double acc = w[r * cols + cols - 1];
    for (int j = 0; j + 1 < cols; ++j)
      acc += w[r * cols + j] * input[j];
    z[r] = acc;
  }
  for (int j = 0; j < kHidden; ++j) {
    double i = sigmoidRef(z[j]), f = sigmoidRef(z[kHidden + j]);
    double g = tanh(z[2 * kHidden + j]), o = sigmoidRef(z[3 * kHidden + j]);
    c[j] = f * c[j] + i * g;
    h[j] = o * tanh(c[j]);
  }
}

static void l2lRef(L2LCoord *s, double g, const float *w1, const float *w2,
                   const float *head) {
  const double k = 10;
  double x[2], out;
  if (fabs(g) >= exp(-k)) {
    x[0] = log(fabs(g)) / k;
    x[1] = g > 0 ? 1.0 : g < 0 ? -1.0 : 0.0;
  } else {
    x[0] = -1;
    x[1] = exp(k) * g;
  }
  lstmRef(w1, x, 2, s->h1, s->c1);
  lstmRef(w2, s->h1, kHidden, s->h2, s->c2);
  out = head[kHidden];
  for (int j = 0; j < kHidden; ++j)
    out += head[j] * s->h2[j];
  s->p += 0.1 * out;
}

enum { kW1 = 80 * 23, kW2 = 80 * 41, kHead = 21, kCoords = 37 };

/* Deterministic weights of a spread that exercises the nonlinearities. */
static void fillWeights(float *w, int n, int salt) {
  for (int i = 0; i < n; ++i)
    w[i] = (float)(0.4 * sin(1.3 * i + 0.7 * salt));
}

/* Writes the three tensors in the safetensors layout (8-byte little-endian
   header size, JSON header, data); `truncate` drops the last bytes. */
static int writeWeights(const char *path, const float *w1, const float *w2,
                        const float *head, int truncate) {
  char header[512];
  int n = snprintf(header, sizeof header,
                   "{\"lstm1\":{\"dtype\":\"F32\",\"shape\":[80,23],"
                   "\"data_offsets\":[0,%d]},"
                   "\"lstm2\":{\"dtype\":\"F32\",\"shape\":[80,41],"
                   "\"data_offsets\":[%d,%d]},"
                   "\"head\":{\"dtype\":\"F32\",\"shape\":[1,21],"
                   "\"data_offsets\":[%d,%d]}}",
                   4 * kW1, 4 * kW1, 4 * (kW1 + kW2), 4 * (kW1 + kW2),
                   4 * (kW1 + kW2 + kHead));
  unsigned char size[8];
  FILE *f = fopen(path, "wb");
  if (!f)
    return 0;
  for (int i = 0; i < 8; ++i)
    size[i] = (unsigned char)((uint64_t)n >> (8 * i));
  fwrite(size, 1, 8, f);
  fwrite(header, 1, (size_t)n, f);
  fwrite(w1, sizeof(float), kW1, f);
  fwrite(w2, sizeof(float), kW2, f);
  fwrite(head, sizeof(float), (size_t)(kHead - (truncate ? 3 : 0)), f);
  return fclose(f) == 0;
}

static void testLearnedWeights(void) {
  optim_rule *l2l = compileExample("l2l", 0);
  optim_rule *adam = compileExample("adam", 0);
  static float w1[kW1], w2[kW2], head[kHead], other[kW2];
  double w1d[kW1];
  size_t n = 99;
  optim_weights_info info;
  fillWeights(w1, kW1, 1);
  fillWeights(w2, kW2, 2);
  fillWeights(head, kHead, 3);
  fillWeights(other, kW2, 4);
  for (int i = 0; i < kW1; ++i)
    w1d[i] = w1[i];

  /* The rule's weights. */
  CHECK_OK(optim_rule_num_weights(l2l, &n));
  CHECK(n == 3);
  CHECK_OK(optim_rule_weights(l2l, 1, &info));
  CHECK(strcmp(info.name, "lstm2") == 0 && info.rank == 2 &&
        info.shape[0] == 80 && info.shape[1] == 41 && info.size == kW2);
  CHECK_OK(optim_rule_weights(l2l, 2, &info));
  CHECK(strcmp(info.name, "head") == 0 && info.size == kHead);
  CHECK_OK(optim_rule_num_weights(adam, &n));
  CHECK(n == 0);
  info.name = "unchanged";
  CHECK_ERROR(optim_rule_weights(l2l, 3, &info), OPTIM_ERROR_NOT_FOUND,
              "3 weights tensors");
  CHECK(strcmp(info.name, "unchanged") == 0);
  CHECK_ERROR(optim_rule_num_weights(NULL, &n), OPTIM_ERROR_INVALID_ARGUMENT,
              "rule is NULL");

  float p[kCoords], q[kCoords], grad[kCoords];
  L2LCoord ref[kCoords];
  memset(ref, 0, sizeof ref);
  for (int i = 0; i < kCoords; ++i)
    p[i] = q[i] = (float)(ref[i].p = 0.25 * i - 3.0);
  float *pp[1] = {p}, *qq[1] = {q};
  const float *gg[1] = {grad};
  int64_t size[1] = {kCoords};
  optim_optimizer *opt = NULL, *fromFile = NULL;
  CHECK_OK(optim_optimizer_create_f32(l2l, pp, size, 1, NULL, &opt));
  CHECK_OK(optim_optimizer_create_f32(l2l, qq, size, 1, NULL, &fromFile));
  if (!opt || !fromFile)
    return;

  /* No step before the weights; nothing moves. */
  for (int i = 0; i < kCoords; ++i)
    grad[i] = (float)gradAt(1, 0, i);
  CHECK_ERROR(optim_optimizer_step_f32(opt, gg, size, 1, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "are not set");
  CHECK(p[0] == -3.0f);

  CHECK_OK(optim_optimizer_set_weights_f32(opt, "lstm1", w1, kW1));
  CHECK_OK(optim_optimizer_set_weights_f32(opt, "lstm2", w2, kW2));
  CHECK_OK(optim_optimizer_set_weights_f32(opt, "head", head, kHead));
  /* Wrong calls change nothing: `other` must never reach the kernel. */
  CHECK_ERROR(optim_optimizer_set_weights_f32(opt, "lstm3", other, kW2),
              OPTIM_ERROR_NOT_FOUND, "no weights 'lstm3'");
  CHECK_ERROR(optim_optimizer_set_weights_f32(opt, "lstm2", other, kW2 - 1),
              OPTIM_ERROR_INVALID_ARGUMENT, "needs 3280 elements, got 3279");
  CHECK_ERROR(optim_optimizer_set_weights_f32(opt, "lstm2", NULL, kW2),
              OPTIM_ERROR_INVALID_ARGUMENT, "data is NULL");
  CHECK_ERROR(optim_optimizer_set_weights_f32(opt, NULL, other, kW2),
              OPTIM_ERROR_INVALID_ARGUMENT, "name is NULL");
  CHECK_ERROR(optim_optimizer_set_weights_f32(NULL, "lstm2", other, kW2),
              OPTIM_ERROR_INVALID_ARGUMENT, "opt is NULL");
  CHECK_ERROR(optim_optimizer_set_weights_f64(opt, "lstm1", w1d, kW1),
              OPTIM_ERROR_INVALID_ARGUMENT, "f64");

  /* The same weights from a file; bad files change nothing either. */
  char path[4096], bad[4096];
  tempPath(path, sizeof path, "l2l.safetensors");
  tempPath(bad, sizeof bad, "l2l-truncated.safetensors");
  CHECK(writeWeights(path, w1, w2, head, 0));
  CHECK(writeWeights(bad, w1, other, head, 1));
  CHECK_OK(optim_optimizer_load_weights(fromFile, path));
  CHECK_ERROR(optim_optimizer_load_weights(fromFile, bad), OPTIM_ERROR_IO,
              "l2l-truncated.safetensors");
  CHECK_ERROR(optim_optimizer_load_weights(fromFile, "/nonexistent/w"),
              OPTIM_ERROR_IO, "/nonexistent/w");
  CHECK_ERROR(optim_optimizer_load_weights(fromFile, NULL),
              OPTIM_ERROR_INVALID_ARGUMENT, "path is NULL");
  CHECK_ERROR(optim_optimizer_load_weights(opt, bad), OPTIM_ERROR_IO,
              "truncated");

  /* Three steps against the reference; both optimizers agree bit for bit. */
  double worst = 0;
  for (int t = 1; t <= 3; ++t) {
    for (int i = 0; i < kCoords; ++i) {
      /* Magnitudes from 1e-6 (the e^-k branch of log_sign) to ~1. */
      grad[i] = (float)(gradAt(t, 0, i) * pow(10.0, -(i % 7)));
      l2lRef(&ref[i], grad[i], w1, w2, head);
    }
    CHECK_OK(optim_optimizer_step_f32(opt, gg, size, 1, NULL));
    CHECK_OK(optim_optimizer_step_f32(fromFile, gg, size, 1, NULL));
  }
  for (int i = 0; i < kCoords; ++i) {
    double err = fabs(p[i] - ref[i].p) / (fabs(ref[i].p) + 1e-2);
    worst = err > worst ? err : worst;
  }
  /* float kernels against a double reference: a few ulps per operation. */
  CHECK(worst < 2e-5);
  CHECK(memcmp(p, q, sizeof p) == 0);

  /* A rule without weights has none to load. */
  float a[3] = {1, 2, 3};
  float *aa[1] = {a};
  int64_t asize[1] = {3};
  optim_optimizer *adamOpt = NULL;
  CHECK_OK(optim_optimizer_create_f32(adam, aa, asize, 1, NULL, &adamOpt));
  CHECK_ERROR(optim_optimizer_load_weights(adamOpt, path),
              OPTIM_ERROR_NOT_FOUND, "no learned weights");
  CHECK_ERROR(optim_optimizer_set_weights_f32(adamOpt, "head", head, kHead),
              OPTIM_ERROR_NOT_FOUND, "has no weights 'head'");

  remove(path);
  remove(bad);
  optim_optimizer_release(adamOpt);
  optim_optimizer_release(opt);
  optim_optimizer_release(fromFile);
  optim_rule_release(adam);
  optim_rule_release(l2l);
}

/*===--- Rules with tensor reductions -------------------------------------===*/

/* Global-norm clipping and a tensor mean, in f64, over three tensors in two
   groups, chunks of 4 on 3 threads: two passes over memory, stepped like
   any other rule. */
static void testTensorReductions(void) {
  static const char *source =
      "rule clipmean(lr = 0.1) {\n"
      "  p -= lr * g / global_norm(g) + 0.01 * tensor_mean(g)\n"
      "}\n";
  optim_rule *rule = NULL;
  CHECK_OK(optim_compile_source(source, "clipmean.optim", NULL, 1, &rule));
  if (!rule)
    return;
  size_t n = 0;
  optim_reduction_info info = {NULL, -1};
  CHECK_OK(optim_rule_num_reductions(rule, &n));
  CHECK(n == 2);
  CHECK_OK(optim_rule_reduction(rule, 0, &info));
  CHECK(info.kind && strcmp(info.kind, "norm") == 0 && info.global == 1);
  CHECK_OK(optim_rule_reduction(rule, 1, &info));
  CHECK(info.kind && strcmp(info.kind, "mean") == 0 && info.global == 0);
  CHECK_ERROR(optim_rule_reduction(rule, 2, &info), OPTIM_ERROR_NOT_FOUND,
              "index 2 is out of range: rule 'clipmean' has 2 reductions");
  CHECK_ERROR(optim_rule_num_reductions(NULL, &n),
              OPTIM_ERROR_INVALID_ARGUMENT, "rule is NULL");

  enum { K = 3 };
  static const int64_t sizes[K] = {7, 1, 30};
  double p[K][30], ref[K][30];
  double *ptrs[K];
  for (int k = 0; k < K; ++k) {
    ptrs[k] = p[k];
    for (int i = 0; i < sizes[k]; ++i)
      p[k][i] = ref[k][i] = 0.1 * i - k;
  }
  optim_hyper_value lr = {"lr", 0.2};
  optim_group groups[2] = {{(void *const *)ptrs, sizes, 2, NULL, 0},
                           {(void *const *)(ptrs + 2), sizes + 2, 1, &lr, 1}};
  optim_options options;
  CHECK_OK(optim_options_init(&options));
  options.threads = 3;
  options.chunk_size = 4;
  optim_optimizer *opt = NULL;
  CHECK_OK(optim_optimizer_create_groups(rule, OPTIM_F64, groups, 2, &options,
                                         &opt));
  CHECK_OK(optim_rule_release(rule));
  if (!opt)
    return;
  double g[K][30];
  const double *gptrs[K] = {g[0], g[1], g[2]};
  int bad = 0;
  for (int t = 1; t <= 3; ++t) {
    double sumsq = 0, mean[K];
    for (int k = 0; k < K; ++k) {
      mean[k] = 0;
      for (int i = 0; i < sizes[k]; ++i) {
        g[k][i] = gradAt(t, k, i);
        sumsq += g[k][i] * g[k][i];
        mean[k] += g[k][i];
      }
      mean[k] /= (double)sizes[k];
    }
    int stepped = 0;
    CHECK_OK(optim_optimizer_step_f64(opt, gptrs, sizes, K, &stepped));
    CHECK(stepped == 1);
    for (int k = 0; k < K; ++k)
      for (int i = 0; i < sizes[k]; ++i) {
        ref[k][i] -= (k == 2 ? 0.2 : 0.1) * g[k][i] / sqrt(sumsq) +
                     0.01 * mean[k];
        bad += !near(p[k][i], ref[k][i], 1e-12);
      }
  }
  CHECK(bad == 0);
  CHECK(fabs(ref[2][29] - (2.9 - 2)) > 1e-3); /* the steps moved p */
  CHECK_OK(optim_optimizer_release(opt));
}

/* A rule with a per-coordinate input (`input noise`): SGLD, in f64, stepped
   with optim_optimizer_step_inputs_f64 against a reference in C; the plain
   step refuses it, naming the input. */
static void testRuleInputs(void) {
  optim_rule *sgld = NULL, *adam = compileExample("adam", 0);
  size_t n = 99;
  const char *name = NULL;
  CHECK_OK(optim_rule_num_inputs(adam, &n));
  CHECK(n == 0);
  CHECK_OK(optim_compile_source(
      "rule sgld(lr = 0.01) {\n  input noise\n"
      "  p -= lr / 2 * g + sqrt(lr) * noise\n}\n",
      "sgld.optim", NULL, 1, &sgld));
  if (!sgld) {
    optim_rule_release(adam);
    return;
  }
  CHECK_OK(optim_rule_num_inputs(sgld, &n));
  CHECK(n == 1);
  CHECK_OK(optim_rule_input(sgld, 0, &name));
  CHECK(name && strcmp(name, "noise") == 0);
  CHECK_ERROR(optim_rule_input(sgld, 1, &name), OPTIM_ERROR_NOT_FOUND,
              "rule 'sgld' has 1 inputs");

  enum { N = 37 };
  double p[N], ref[N], g[N], noise[N];
  for (int i = 0; i < N; ++i)
    p[i] = ref[i] = 0.1 * i;
  double *params[1] = {p};
  int64_t sizes[1] = {N};
  optim_optimizer *opt = NULL;
  CHECK_OK(optim_optimizer_create_f64(sgld, params, sizes, 1, NULL, &opt));
  const double *grads[1] = {g}, *noises[1] = {noise};
  optim_input_f64 in = {"noise", noises, sizes};
  optim_input_f64 bogus = {"h", noises, sizes};
  int stepped = -1;
  CHECK_ERROR(optim_optimizer_step_f64(opt, grads, sizes, 1, &stepped),
              OPTIM_ERROR_INVALID_ARGUMENT,
              "takes the per-coordinate input 'noise' with every step, "
              "besides the gradients: call optim_optimizer_step_inputs_f64");
  CHECK_ERROR(
      optim_optimizer_step_inputs_f64(opt, grads, sizes, 1, &bogus, 1, NULL),
      OPTIM_ERROR_NOT_FOUND, "rule 'sgld' has no input 'h'");
  CHECK_ERROR(
      optim_optimizer_step_inputs_f64(opt, grads, sizes, 1, NULL, 0, NULL),
      OPTIM_ERROR_INVALID_ARGUMENT, "needs its input 'noise'");
  CHECK(stepped == -1);
  int bad = 0;
  for (int t = 0; t < 5; ++t) {
    for (int i = 0; i < N; ++i) {
      g[i] = gradAt(t, 0, i);
      noise[i] = cos(1.3 * i + t);
      ref[i] -= 0.01 / 2 * g[i] + sqrt(0.01) * noise[i];
    }
    CHECK_OK(optim_optimizer_step_inputs_f64(opt, grads, sizes, 1, &in, 1,
                                             &stepped));
    CHECK(stepped == 1);
  }
  for (int i = 0; i < N; ++i)
    bad += !near(p[i], ref[i], 1e-12);
  CHECK(bad == 0);
  CHECK_OK(optim_optimizer_release(opt));
  CHECK_OK(optim_rule_release(sgld));
  CHECK_OK(optim_rule_release(adam));
}

static void testStatusNames(void) {
  CHECK(strcmp(optim_status_name(OPTIM_OK), "OPTIM_OK") == 0);
  CHECK(strcmp(optim_status_name(OPTIM_ERROR_IO), "OPTIM_ERROR_IO") == 0);
  CHECK(optim_status_name((optim_status)1234) != NULL);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <examples directory>\n", argv[0]);
    return 2;
  }
  examplesDir = argv[1];
  CHECK(strcmp(optim_last_error(), "") == 0);
  testRuleInfo();
  testCompileErrors();
  testTraining(0);
  testTraining(1);
  testGroups();
  testConstHyperparameter();
  testSkipNonFinite();
  testErrorsChangeNothing();
  testCheckpointResumes();
  testLastErrorIsPerThread();
  testConcurrentCompiles();
  testLearnedWeights();
  testTensorReductions();
  testRuleInputs();
  testStatusNames();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
