//===- CApiThreadsTest.cpp - the C API's handles used from several threads ===//
//
// The registry of live handles (HandleRegistry.cpp) under threads: distinct
// optimizers stepped at once while other handles come and go, and releases
// racing uses of the same handle, which must end in a completed call or the
// released-handle error, never in a use after free. Built on its own (no
// compiler: rules are hand-written kernels) so that sanitizer builds of the
// runtime alone run it cheaply (about a minute to build each), e.g. TSan:
//
//   cmake -G Ninja -S . -B build-tsan -DOPTIM_RUNTIME_ONLY=ON \
//     -DOPTIM_ENABLE_UNITTESTS=ON -DCMAKE_BUILD_TYPE=Debug \
//     -DCMAKE_CXX_COMPILER=clang++-22 -DCMAKE_C_COMPILER=clang-22 \
//     "-DCMAKE_CXX_FLAGS=-O1 -g -fsanitize=thread" \
//     -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread
//   ninja -C build-tsan OptimCApiThreadsTest
//   build-tsan/bin/OptimCApiThreadsTest
//
// and the same with -fsanitize=address,undefined for ASan and UBSan.
//
//===----------------------------------------------------------------------===//

#include "optim/CApiSupport.h"
#include "optim/KernelABI.h"
#include "optim/optim.h"

#include "gtest/gtest.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace optim;

namespace {

/// While set, the kernel waits (spinning) until it is cleared: a step held
/// inside the kernel, to release its optimizer meanwhile.
std::atomic<bool> holdKernel{false};
/// Steps that entered the kernel while holdKernel was set.
std::atomic<int> heldSteps{0};

/// SGD on f32: p -= lr * g (no states).
void sgdKernel(void *const *ptrs, const int64_t *lengths, const int64_t *,
               int64_t begin, int64_t end, const double *hypers, int64_t,
               const void *const *, const uint64_t *) {
  if (holdKernel.load()) {
    ++heldSteps;
    while (holdKernel.load())
      std::this_thread::yield();
  }
  float lr = static_cast<float>(hypers[0]);
  for (int64_t c = begin; c < end; ++c) {
    float *p = static_cast<float *>(ptrs[2 * c]);
    const float *g = static_cast<const float *>(ptrs[2 * c + 1]);
    for (int64_t i = 0; i < lengths[c]; ++i)
      p[i] -= lr * g[i];
  }
}

/// A rule handle as optim_compile_* makes one (the runtime alone has no
/// compiler), with the hand-written kernel.
optim_rule *makeRule() {
  RuleInfo info;
  info.name = "sgd";
  info.hypers = {{"lr", 0.5, false}};
  auto *rule = new optim_rule{Rule(std::move(info), sgdKernel, nullptr)};
  capi::trackHandle(rule, capi::HandleKind::Rule);
  return rule;
}

/// One thread per optimizer: the step runs on the caller's thread.
optim_options oneThread() {
  optim_options options;
  optim_options_init(&options);
  options.threads = 1;
  return options;
}

/// Parameters and gradients of one optimizer: steps of 0.5 * 1 are exact.
struct Model {
  explicit Model(int64_t n) : w(n, 100.0f), g(n, 1.0f) {}
  std::vector<float> w, g;
  optim_optimizer *create(const optim_rule *rule) {
    float *params[1] = {w.data()};
    int64_t sizes[1] = {static_cast<int64_t>(w.size())};
    optim_options options = oneThread();
    optim_optimizer *opt = nullptr;
    EXPECT_EQ(optim_optimizer_create_f32(rule, params, sizes, 1, &options,
                                         &opt),
              OPTIM_OK)
        << optim_last_error();
    return opt;
  }
  optim_status step(optim_optimizer *opt) {
    const float *grads[1] = {g.data()};
    int64_t sizes[1] = {static_cast<int64_t>(g.size())};
    return optim_optimizer_step_f32(opt, grads, sizes, 1, nullptr);
  }
  /// Whether every parameter is 100 - 0.5 * steps.
  bool tookSteps(int64_t steps) const {
    for (float x : w)
      if (x != 100.0f - 0.5f * static_cast<float>(steps))
        return false;
    return true;
  }
};

bool lastErrorIs(const char *message) {
  return std::strcmp(optim_last_error(), message) == 0;
}

/// A QP every call solves: minimize 1/2 |z|^2 + z_0 + z_1.
struct SmallQP {
  double q[2] = {1, 1};
  double z[2] = {0, 0};
  int32_t status = -1;
  optim_qp_problem problem = {};
  SmallQP() {
    problem.dtype = OPTIM_QP_F64;
    problem.batch = 1;
    problem.n = 2;
    problem.q = q;
  }
  int forward(optim_qp_solver *solver) {
    return optim_qp_forward(solver, &problem, z, nullptr, nullptr, &status,
                            nullptr);
  }
};

TEST(CApiThreads, DistinctOptimizersStepWhileOtherHandlesComeAndGo) {
  constexpr int Threads = 4, Steps = 2000;
  constexpr int64_t Size = 1000;
  optim_rule *rule = makeRule();
  std::vector<Model> models(Threads, Model(Size));
  std::vector<optim_optimizer *> opts;
  for (Model &m : models)
    opts.push_back(m.create(rule));

  std::atomic<int> running{Threads};
  std::vector<std::thread> steppers;
  std::vector<int> failures(Threads, 0);
  for (int t = 0; t < Threads; ++t)
    steppers.emplace_back([&, t] {
      for (int s = 0; s < Steps; ++s) {
        if (models[t].step(opts[t]) != OPTIM_OK)
          ++failures[t];
        // The shared rule is immutable: readable from every thread.
        const char *name = nullptr;
        if (s % 100 == 0 &&
            (optim_rule_name(rule, &name) != OPTIM_OK ||
             std::strcmp(name, "sgd") != 0))
          ++failures[t];
      }
      --running;
    });

  // Meanwhile: unrelated optimizers, rules and QP solvers created, used and
  // released, at least a few times even if the steppers finish first.
  int churned = 0, churnFailures = 0;
  Model churnModel(Size);
  SmallQP qp;
  while (running.load() > 0 || churned < 20) {
    optim_rule *other = makeRule();
    optim_optimizer *opt = churnModel.create(churned % 2 ? rule : other);
    if (optim_rule_release(other) != OPTIM_OK || !opt ||
        churnModel.step(opt) != OPTIM_OK ||
        optim_optimizer_release(opt) != OPTIM_OK)
      ++churnFailures;
    optim_qp_solver *solver = optim_qp_create(0, 50, 1);
    if (!solver || qp.forward(solver) != 0)
      ++churnFailures;
    optim_qp_destroy(solver);
    ++churned;
  }
  for (std::thread &t : steppers)
    t.join();

  EXPECT_EQ(churnFailures, 0) << optim_last_error();
  EXPECT_TRUE(churnModel.tookSteps(churned));
  for (int t = 0; t < Threads; ++t) {
    EXPECT_EQ(failures[t], 0) << "thread " << t;
    EXPECT_TRUE(models[t].tookSteps(Steps)) << "thread " << t;
    int64_t count = -1;
    EXPECT_EQ(optim_optimizer_step_count(opts[t], &count), OPTIM_OK);
    EXPECT_EQ(count, Steps);
    EXPECT_EQ(optim_optimizer_release(opts[t]), OPTIM_OK);
  }
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

struct RaceResult {
  int64_t succeeded = 0;
  /// False when a call begun after the release had returned succeeded.
  bool endedInFailure = false;
};

/// Runs `use` (true: the call succeeded) in a loop on another thread until
/// it fails, and meanwhile runs `release` once `use` succeeded `before`
/// times. The first call begun after `release` returned must fail.
template <class Use, class Release>
RaceResult raceReleaseWithUse(Use use, Release release, int before) {
  std::atomic<int64_t> succeeded{0};
  std::atomic<bool> released{false}, done{false};
  bool endedInFailure = false;
  std::thread user([&] {
    for (;;) {
      bool after = released.load();
      if (!use()) {
        endedInFailure = true;
        break;
      }
      ++succeeded;
      if (after)
        break;
    }
    done = true;
  });
  while (succeeded.load() < before && !done.load())
    std::this_thread::yield();
  release();
  released = true;
  user.join();
  return {succeeded.load(), endedInFailure};
}

TEST(CApiThreads, ReleaseRacingStepsEndsInStepsOrTheReleasedError) {
  optim_rule *rule = makeRule();
  for (int round = 0; round < 50; ++round) {
    Model model(64);
    optim_optimizer *opt = model.create(rule);
    optim_status last = OPTIM_OK;
    std::string message;
    RaceResult race = raceReleaseWithUse(
        [&] {
          last = model.step(opt);
          if (last != OPTIM_OK)
            message = optim_last_error();
          return last == OPTIM_OK;
        },
        [&] { EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK); },
        round % 5);
    EXPECT_TRUE(race.endedInFailure);
    EXPECT_GE(race.succeeded, round % 5);
    EXPECT_EQ(last, OPTIM_ERROR_INVALID_ARGUMENT);
    EXPECT_EQ(message, "optim_optimizer_step_f32: opt is not a live optimizer "
                       "handle (released already?)");
    // Every step that returned OPTIM_OK was whole; none ran after.
    EXPECT_TRUE(model.tookSteps(race.succeeded)) << "round " << round;
  }
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

TEST(CApiThreads, ReleaseRacingUsesOfTheLentRuleAndOfRules) {
  optim_rule *rule = makeRule();
  Model model(16);
  for (int round = 0; round < 20; ++round) {
    // The rule an optimizer lends dies with it.
    optim_optimizer *opt = model.create(rule);
    const optim_rule *lent = nullptr;
    ASSERT_EQ(optim_optimizer_rule(opt, &lent), OPTIM_OK);
    std::string message;
    RaceResult race = raceReleaseWithUse(
        [&] {
          size_t n = 0;
          if (optim_rule_num_hypers(lent, &n) == OPTIM_OK && n == 1)
            return true;
          message = optim_last_error();
          return false;
        },
        [&] { EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK); }, round % 3);
    EXPECT_TRUE(race.endedInFailure);
    EXPECT_GE(race.succeeded, round % 3);
    EXPECT_EQ(message, "optim_rule_num_hypers: rule is not a live rule handle "
                       "(released already?)");

    // A rule released while another thread creates optimizers from it: the
    // optimizers created keep working.
    optim_rule *own = makeRule();
    std::vector<optim_optimizer *> created;
    race = raceReleaseWithUse(
        [&] {
          float *params[1] = {model.w.data()};
          int64_t sizes[1] = {static_cast<int64_t>(model.w.size())};
          optim_optimizer *o = nullptr;
          if (optim_optimizer_create_f32(own, params, sizes, 1, nullptr, &o) !=
              OPTIM_OK) {
            message = optim_last_error();
            return false;
          }
          created.push_back(o);
          return true;
        },
        [&] { EXPECT_EQ(optim_rule_release(own), OPTIM_OK); }, round % 3);
    EXPECT_TRUE(race.endedInFailure);
    EXPECT_EQ(message, "optim_optimizer_create_f32: rule is not a live rule "
                       "handle (released already?)");
    EXPECT_GE(created.size(), static_cast<size_t>(round % 3));
    for (optim_optimizer *o : created) {
      EXPECT_EQ(model.step(o), OPTIM_OK) << optim_last_error();
      EXPECT_EQ(optim_optimizer_release(o), OPTIM_OK);
    }
  }
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

TEST(CApiThreads, DestroyRacingQPSolvesEndsInSolvesOrTheDestroyedError) {
  for (int round = 0; round < 20; ++round) {
    optim_qp_solver *solver = optim_qp_create(0, 50, 1);
    ASSERT_NE(solver, nullptr);
    SmallQP qp;
    std::string message;
    RaceResult race = raceReleaseWithUse(
        [&] {
          if (qp.forward(solver) == 0)
            return true;
          message = optim_qp_error(solver);
          return false;
        },
        [&] { optim_qp_destroy(solver); }, round % 3);
    EXPECT_TRUE(race.endedInFailure);
    EXPECT_EQ(message, "qp: not a live solver (destroyed already?)");
    EXPECT_GE(race.succeeded, round % 3);
    if (race.succeeded > 0)
      EXPECT_NEAR(qp.z[0], -1, 1e-8);
  }
}

TEST(CApiThreads, ReleaseWaitsForTheStepInFlightAndRefusesNewCalls) {
  optim_rule *rule = makeRule();
  Model model(8);
  optim_optimizer *opt = model.create(rule);
  holdKernel = true;
  heldSteps = 0;
  optim_status stepStatus = OPTIM_ERROR_INTERNAL;
  std::thread stepper([&] { stepStatus = model.step(opt); });
  while (heldSteps.load() == 0)
    std::this_thread::yield();

  std::atomic<bool> released{false};
  std::thread releaser([&] {
    EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK);
    released = true;
  });
  // Once the release has begun (the registry says so without touching the
  // object), new calls are refused although the object is still there; it
  // is not freed under the step.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (capi::isLiveHandle(opt, capi::HandleKind::Optimizer) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  size_t n = 7;
  EXPECT_EQ(optim_optimizer_num_params(opt, &n), OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(lastErrorIs("optim_optimizer_num_params: opt is not a live "
                          "optimizer handle (released already?)"))
      << optim_last_error();
  EXPECT_EQ(n, 7u);
  // A second release while the first one waits is refused.
  EXPECT_EQ(optim_optimizer_release(opt), OPTIM_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(lastErrorIs("optim_optimizer_release: opt is not a live "
                          "optimizer handle (released twice?)"));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(released.load()) << "released while a step was in flight";

  holdKernel = false;
  stepper.join();
  releaser.join();
  EXPECT_EQ(stepStatus, OPTIM_OK);
  EXPECT_TRUE(released.load());
  EXPECT_TRUE(model.tookSteps(1));
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

TEST(CApiThreads, RacingReleasesOfOneHandleFreeItOnce) {
  optim_rule *rule = makeRule();
  Model model(8);
  for (int round = 0; round < 50; ++round) {
    optim_optimizer *opt = model.create(rule);
    std::atomic<int> ready{0};
    optim_status status[2];
    std::vector<std::thread> releasers;
    for (int i = 0; i < 2; ++i)
      releasers.emplace_back([&, i] {
        ++ready;
        while (ready.load() < 2)
          std::this_thread::yield();
        status[i] = optim_optimizer_release(opt);
      });
    for (std::thread &t : releasers)
      t.join();
    EXPECT_EQ((status[0] == OPTIM_OK) + (status[1] == OPTIM_OK), 1);
    EXPECT_EQ((status[0] == OPTIM_ERROR_INVALID_ARGUMENT) +
                  (status[1] == OPTIM_ERROR_INVALID_ARGUMENT),
              1);
  }
  EXPECT_EQ(optim_rule_release(rule), OPTIM_OK);
}

} // namespace
