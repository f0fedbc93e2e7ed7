//===- MetaEpisodeBench.cpp - one meta-training episode, timed ------------===//
//
// optim-bench-meta [--threads N] [--episodes N] [--warmup N] [--seed S]
//                  [--examples DIR] [--data-dir DIR] [--vector-width N]
//                  [--learned-vector-width N] [--vector-register-bytes N]
//                  [--vector-registers N]
//
// Times the episodes of `optim-train --task=mnist` with its defaults (the
// learned rule examples/l2l.optim, Adam from examples/adam.optim as the
// meta-optimizer with lr 1e-3, the MNIST MLP 784-20-10 with sigmoid units
// and minibatches of 128 from images 0-7999, 100 optimizee steps in 5
// truncations of 20, forward and backward): the same code
// (tools/optim-train/MetaEpisode.h), in-process, compile time excluded, the
// held-out evaluation (optim-train's log) timed apart. Weights: PyTorch's
// default initialization from the seed, as optim-train. Prints one JSON
// object: the median episode, each episode, and where the time went.
//
//===----------------------------------------------------------------------===//

#include "../../tools/optim-train/MetaEpisode.h"

#include "optim/Compiler/Compiler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace optim;

int main(int argc, char **argv) {
  unsigned threads = 2, vectorWidth = 0, learnedWidth = 0, registerBytes = 0,
           registers = 0;
  int episodes = 5, warmup = 1;
  uint64_t seed = 1;
  std::string examples = OPTIM_EXAMPLES_DIR, dataDir;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "optim-bench-meta: %s needs a value\n",
                     arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&]() -> long {
      std::string v = value();
      char *end = nullptr;
      long x = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || x < 0) {
        std::fprintf(stderr,
                     "optim-bench-meta: %s expects a non-negative integer, "
                     "got '%s'\n",
                     arg.c_str(), v.c_str());
        std::exit(2);
      }
      return x;
    };
    if (arg == "--threads")
      threads = unsigned(std::max(1L, number()));
    else if (arg == "--episodes")
      episodes = int(std::max(1L, number()));
    else if (arg == "--warmup")
      warmup = int(number());
    else if (arg == "--seed")
      seed = uint64_t(number());
    else if (arg == "--examples")
      examples = value();
    else if (arg == "--data-dir")
      dataDir = value();
    else if (arg == "--vector-width")
      vectorWidth = unsigned(std::max(1L, number()));
    else if (arg == "--learned-vector-width")
      learnedWidth = unsigned(number());
    else if (arg == "--vector-register-bytes")
      registerBytes = unsigned(number());
    else if (arg == "--vector-registers")
      registers = unsigned(number());
    else {
      std::fprintf(stderr, "optim-bench-meta: unknown argument '%s'\n",
                   arg.c_str());
      return 2;
    }
  }
  try {
    CompileOptions learnedOptions;
    learnedOptions.vjp = true;
    if (vectorWidth)
      learnedOptions.vectorWidth = vectorWidth;
    learnedOptions.learnedVectorWidth = learnedWidth;
    learnedOptions.vectorRegisterBytes = registerBytes;
    learnedOptions.vectorRegisters = registers;
    Rule rule = Compiler(learnedOptions).compileFile(examples + "/l2l.optim");
    Rule metaRule = Compiler().compileFile(examples + "/adam.optim");
    const RuleInfo &info = rule.info();

    tasks::TaskOptions taskOptions;
    taskOptions.dataDir = dataDir;
    std::vector<int64_t> sizes;
    {
      auto probe = tasks::makeTask("mnist", 0, taskOptions);
      for (auto &p : probe->parameters())
        sizes.push_back(int64_t(p.size()));
    }
    std::mt19937_64 rng(seed);
    std::vector<std::vector<float>> weights = train::randomWeights(info, rng);
    std::vector<Param> refs;
    for (auto &w : weights)
      refs.emplace_back(w.data(), int64_t(w.size()));
    OptimizerOptions metaOptions;
    metaOptions.threads = 1;
    Optimizer meta(metaRule, refs, metaOptions);
    meta.set("lr", 1e-3);
    TrajectoryOptions trajOptions;
    trajOptions.threads = threads;
    trajOptions.chunkSize = train::kChunkSize;
    Trajectory traj(rule, sizes, trajOptions);

    using Clock = std::chrono::steady_clock;
    std::vector<double> times;
    train::EpisodeTimes parts;
    double evalSeconds = 0, lossSum = 0, evalLossSum = 0;
    int64_t parameters = 0;
    for (int64_t n : sizes)
      parameters += n;
    for (int e = 0; e < warmup + episodes; ++e) {
      auto task = tasks::makeTask("mnist", rng(), taskOptions);
      train::EpisodeTimes episodeParts;
      auto a = Clock::now();
      train::EpisodeResult r = train::runEpisode(
          traj, *task, info, weights, meta, 100, 20, e, &episodeParts);
      auto b = Clock::now();
      double eval = task->evaluate();
      auto c = Clock::now();
      if (e < warmup)
        continue;
      times.push_back(std::chrono::duration<double>(b - a).count());
      evalSeconds += std::chrono::duration<double>(c - b).count();
      parts.forward += episodeParts.forward;
      parts.task += episodeParts.task;
      parts.backward += episodeParts.backward;
      parts.meta += episodeParts.meta;
      lossSum += r.lossSum / 100.0;
      evalLossSum += eval;
    }
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    double median = sorted[sorted.size() / 2];
    if (sorted.size() % 2 == 0)
      median = 0.5 * (median + sorted[sorted.size() / 2 - 1]);
    double n = double(episodes);
    std::printf("{\"threads\": %u, \"parameters\": %lld, \"steps\": 100, "
                "\"unroll\": 20, \"episodes\": %d, \"episode_s\": %.6f, "
                "\"episode_times_s\": [",
                threads, (long long)parameters, episodes, median);
    for (size_t k = 0; k < times.size(); ++k)
      std::printf("%s%.6f", k ? ", " : "", times[k]);
    std::printf("], \"forward_s\": %.6f, \"backward_s\": %.6f, \"task_s\": "
                "%.6f, \"meta_s\": %.6f, \"eval_s\": %.6f, "
                "\"mean_meta_loss\": %.6f, \"mean_eval_loss\": %.6f}\n",
                parts.forward / n, parts.backward / n, parts.task / n,
                parts.meta / n, evalSeconds / n, lossSum / n, evalLossSum / n);
  } catch (const Error &e) {
    std::fprintf(stderr, "optim-bench-meta: error: %s\n", e.what());
    return 1;
  }
}
