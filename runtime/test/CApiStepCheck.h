//===- CApiStepCheck.h - the C API steps as optim::Optimizer does -*- C++ -*-===//
//
// Steps `params` through the C API (optim_optimizer_create_f64 with
// `threads` threads and `chunkSize`, optim_optimizer_step_f64 with each
// step's gradients) and checks that the result has the bits of
// optim::Optimizer with one thread and the same chunk size on a copy: the C
// API adds nothing to the numerics, whatever its threads. Releases `handle`
// (the C rule) once the optimizer holds it, as a C caller would.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_TEST_CAPISTEPCHECK_H
#define OPTIM_RUNTIME_TEST_CAPISTEPCHECK_H

#include "optim/Optimizer.h"
#include "optim/optim.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace optim::test {

inline void
expectCApiStepsMatch(optim_rule *handle, const Rule &rule,
                     const std::vector<std::vector<double>> &initial,
                     const std::vector<std::vector<std::vector<double>>> &grads,
                     unsigned threads, int64_t chunkSize) {
  std::vector<std::vector<double>> params = initial;
  std::vector<double *> ptrs;
  std::vector<int64_t> sizes;
  for (auto &p : params) {
    ptrs.push_back(p.data());
    sizes.push_back(int64_t(p.size()));
  }
  optim_options options;
  optim_options_init(&options);
  options.threads = threads;
  options.chunk_size = chunkSize;
  optim_optimizer *opt = nullptr;
  ASSERT_EQ(optim_optimizer_create_f64(handle, ptrs.data(), sizes.data(),
                                       ptrs.size(), &options, &opt),
            OPTIM_OK)
      << optim_last_error();
  EXPECT_EQ(optim_rule_release(handle), OPTIM_OK);
  for (const auto &step : grads) {
    std::vector<const double *> g;
    for (const auto &x : step)
      g.push_back(x.data());
    int stepped = 0;
    ASSERT_EQ(optim_optimizer_step_f64(opt, g.data(), sizes.data(), g.size(),
                                       &stepped),
              OPTIM_OK)
        << optim_last_error();
    EXPECT_EQ(stepped, 1);
  }
  EXPECT_EQ(optim_optimizer_release(opt), OPTIM_OK);

  std::vector<std::vector<double>> want = initial;
  std::vector<Param> refs;
  for (auto &p : want)
    refs.emplace_back(p.data(), int64_t(p.size()));
  OptimizerOptions o;
  o.threads = 1;
  o.chunkSize = chunkSize;
  Optimizer cpp(rule, refs, o);
  for (const auto &step : grads) {
    std::vector<Grad> g;
    for (const auto &x : step)
      g.emplace_back(x.data(), int64_t(x.size()));
    cpp.step(g);
  }
  for (size_t k = 0; k < want.size(); ++k) {
    ASSERT_EQ(params[k].size(), want[k].size());
    EXPECT_TRUE(want[k].empty() ||
                std::memcmp(params[k].data(), want[k].data(),
                            want[k].size() * sizeof(double)) == 0)
        << "param " << k;
  }
}

} // namespace optim::test

#endif // OPTIM_RUNTIME_TEST_CAPISTEPCHECK_H
