//===- CacheTest.cpp - the on-disk kernel cache ---------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Optimizer.h"

#include "gtest/gtest.h"

#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

using namespace optim;

namespace {

std::string freshDir(const char *name) {
  std::string dir = std::string(::testing::TempDir()) + "/optim-cache-" +
                    std::to_string(::getpid()) + "-" + name;
  std::string cmd = "rm -rf '" + dir + "'";
  EXPECT_EQ(0, std::system(cmd.c_str()));
  return dir;
}

std::vector<std::string> filesIn(const std::string &dir) {
  std::vector<std::string> names;
  if (DIR *d = ::opendir(dir.c_str())) {
    while (dirent *e = ::readdir(d))
      if (e->d_name[0] != '.')
        names.push_back(dir + "/" + e->d_name);
    ::closedir(d);
  }
  return names;
}

float runSteps(const Rule &rule) {
  std::vector<float> p(100, 1.0f), g(100, 0.25f);
  Optimizer opt(rule, {Param(p.data(), 100)});
  for (int t = 0; t < 3; ++t)
    opt.step({Grad(g.data(), 100)});
  return p[99];
}

const char *kSource = "rule r(lr = 0.1, mu = 0.9) {\n"
                      "  state b = 0\n  b = mu * b + g\n  p -= lr * b\n}\n";

TEST(KernelCache, SecondCompilationLoadsTheCachedKernel) {
  CompileOptions options;
  options.cacheDirectory = freshDir("hit");
  Compiler first(options);
  Rule a = first.compileSource(kSource, "r.optim");
  EXPECT_FALSE(first.lastWasCached());
  EXPECT_EQ(filesIn(options.cacheDirectory).size(), 2u); // .o + manifest

  Compiler second(options);
  Rule b = second.compileSource(kSource, "r.optim");
  EXPECT_TRUE(second.lastWasCached());
  EXPECT_EQ(b.info().name, "r");
  ASSERT_EQ(b.info().hypers.size(), 2u);
  EXPECT_DOUBLE_EQ(b.info().hypers[1].defaultValue, 0.9);
  EXPECT_EQ(runSteps(a), runSteps(b));

  // Any change to the text or the options is another kernel.
  Rule c = second.compileSource(std::string(kSource) + "\n", "r.optim");
  EXPECT_FALSE(second.lastWasCached());
  CompileOptions f64 = options;
  f64.precision = DType::F64;
  Compiler third(f64);
  third.compileSource(kSource, "r.optim");
  EXPECT_FALSE(third.lastWasCached());
}

TEST(KernelCache, CorruptEntriesAreRecompiled) {
  CompileOptions options;
  options.cacheDirectory = freshDir("corrupt");
  Compiler compiler(options);
  float expected = runSteps(compiler.compileSource(kSource, "r.optim"));
  for (const std::string &file : filesIn(options.cacheDirectory))
    std::ofstream(file, std::ios::trunc) << "garbage";
  Rule again = compiler.compileSource(kSource, "r.optim");
  EXPECT_FALSE(compiler.lastWasCached());
  EXPECT_EQ(runSteps(again), expected);
  Rule third = compiler.compileSource(kSource, "r.optim");
  EXPECT_TRUE(compiler.lastWasCached()); // The entry was rewritten.
}

// The JIT runs whatever code an object holds: an object damaged on disk
// (one byte changed anywhere, in .text too) must not be loaded, and neither
// must an entry whose manifest has no hash of its object to check.
TEST(KernelCache, DamagedObjectsAreRecompiled) {
  CompileOptions options;
  options.cacheDirectory = freshDir("damaged");
  Compiler compiler(options);
  float expected = runSteps(compiler.compileSource(kSource, "r.optim"));
  auto edit = [&](const char *suffix, auto change) {
    for (const std::string &file : filesIn(options.cacheDirectory)) {
      if (file.size() < std::strlen(suffix) ||
          file.compare(file.size() - std::strlen(suffix), std::string::npos,
                       suffix) != 0)
        continue;
      std::ifstream in(file, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)),
                        std::istreambuf_iterator<char>());
      in.close();
      change(bytes);
      std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    }
  };
  for (size_t at : {size_t(0), size_t(64), size_t(1000), size_t(2000)}) {
    SCOPED_TRACE(at);
    edit(".o", [&](std::string &bytes) {
      ASSERT_LT(at, bytes.size());
      bytes[at] = char(bytes[at] ^ 0x5a);
    });
    Rule again = compiler.compileSource(kSource, "r.optim");
    EXPECT_FALSE(compiler.lastWasCached());
    EXPECT_EQ(runSteps(again), expected);
  }
  edit(".json", [](std::string &text) {
    size_t at = text.find("\"object_sha256\"");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, 15, "\"object_sha257\"");
  });
  compiler.compileSource(kSource, "r.optim");
  EXPECT_FALSE(compiler.lastWasCached());
  compiler.compileSource(kSource, "r.optim");
  EXPECT_TRUE(compiler.lastWasCached());
}

TEST(KernelCache, RulesWithReductionsComeBackWithBothPasses) {
  // LAMB's trust ratio: two tensor norms, the first pass computing the new
  // moments without writing them.
  const char *lamb =
      "rule lamb(lr = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-6) {\n"
      "  state m = 0\n  state v = 0\n"
      "  m = beta1 * m + (1 - beta1) * g\n"
      "  v = beta2 * v + (1 - beta2) * g * g\n"
      "  let u = m / (sqrt(v) + eps) + 0.01 * p\n"
      "  p -= lr * tensor_norm(p) / tensor_norm(u) * u\n}\n";
  CompileOptions options;
  options.cacheDirectory = freshDir("reductions");
  Compiler first(options);
  Rule a = first.compileSource(lamb, "lamb.optim");
  EXPECT_FALSE(first.lastWasCached());
  Compiler second(options);
  Rule b = second.compileSource(lamb, "lamb.optim");
  EXPECT_TRUE(second.lastWasCached());
  for (const Rule *r : {&a, &b}) {
    ASSERT_EQ(r->info().reductions.size(), 2u);
    EXPECT_EQ(r->info().reductions[1].kind, ReductionKind::Norm);
    EXPECT_FALSE(r->info().reductions[1].global);
    EXPECT_TRUE(r->reduceKernel() && r->reducedKernel());
    EXPECT_EQ(r->kernel(), nullptr);
  }
  auto run = [](const Rule &rule) {
    std::vector<float> p(100), g(100);
    for (int i = 0; i < 100; ++i)
      p[i] = 0.01f * float(i) - 0.3f;
    OptimizerOptions o;
    o.chunkSize = 16;
    Optimizer opt(rule, {Param(p.data(), 100)}, o);
    for (int t = 0; t < 3; ++t) {
      for (int i = 0; i < 100; ++i)
        g[i] = float((i * 7 + t) % 11) - 5.0f;
      opt.step({Grad(g.data(), 100)});
    }
    return p;
  };
  std::vector<float> pa = run(a), pb = run(b);
  EXPECT_EQ(pa, pb);
  EXPECT_NE(pa[99], 0.01f * 99 - 0.3f);

  // An entry whose manifest lists other reductions than its kernels were
  // compiled for (KernelABI.h, optim_reductions_<name>) is not used: with
  // none listed the one-pass kernel would be called with one argument too
  // few, with one the runtime's buffers would be too small.
  for (const char *edit : {"none", "one"}) {
    SCOPED_TRACE(edit);
    for (const std::string &file : filesIn(options.cacheDirectory)) {
      if (file.find(".json") == std::string::npos)
        continue;
      std::ifstream in(file);
      std::string text((std::istreambuf_iterator<char>(in)),
                       std::istreambuf_iterator<char>());
      size_t at = text.find("\"reductions\"");
      ASSERT_NE(at, std::string::npos);
      size_t end = text.find(']', at);
      std::string replacement =
          std::string(edit) == "none"
              ? "\"reductions\": []"
              : "\"reductions\": [{\"global\": false, \"kind\": \"norm\"}]";
      text.replace(at, end + 1 - at, replacement);
      std::ofstream(file, std::ios::trunc) << text;
    }
    Compiler third(options);
    Rule c = third.compileSource(lamb, "lamb.optim");
    EXPECT_FALSE(third.lastWasCached());
    EXPECT_EQ(c.info().reductions.size(), 2u);
    EXPECT_EQ(run(c), pa);
  }
}

TEST(KernelCache, NestedReductionsKeepTheirLevels) {
  // The standardized gradient (KernelABI.h version 9): mean(g) at level 0,
  // the mean of (g - m)^2 at level 1. The cached entry comes back with the
  // levels; one whose manifest lists other levels than its kernels were
  // compiled for ("mean,mean:1") is not used.
  const char *source = "rule standardize(lr = 0.1, eps = 1e-8) {\n"
                       "  let m = tensor_mean(g)\n"
                       "  let sd = sqrt(tensor_mean((g - m) * (g - m)))\n"
                       "  p -= lr * (g - m) / (sd + eps)\n}\n";
  CompileOptions options;
  options.cacheDirectory = freshDir("nested");
  Compiler first(options);
  Rule a = first.compileSource(source, "standardize.optim");
  EXPECT_FALSE(first.lastWasCached());
  Compiler second(options);
  Rule b = second.compileSource(source, "standardize.optim");
  EXPECT_TRUE(second.lastWasCached());
  for (const Rule *r : {&a, &b}) {
    ASSERT_EQ(r->info().reductions.size(), 2u);
    EXPECT_EQ(r->info().reductions[0].level, 0u);
    EXPECT_EQ(r->info().reductions[1].level, 1u);
    EXPECT_EQ(reductionsDescriptor(r->info().reductions), "mean,mean:1");
    EXPECT_TRUE(r->reduceKernel() && r->reducedKernel());
  }
  // Both levels 0: a well-formed manifest that disagrees with the kernels.
  for (const std::string &file : filesIn(options.cacheDirectory)) {
    if (file.find(".json") == std::string::npos)
      continue;
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    size_t at = text.find("\"level\"");
    ASSERT_NE(at, std::string::npos);
    size_t end = text.find_first_of(",}", at);
    // Drop the field and the comma before it, if any.
    size_t from = text.rfind(',', at);
    if (from == std::string::npos || text.find('{', from) < at)
      from = at;
    text.erase(from, end - from);
    std::ofstream(file, std::ios::trunc) << text;
  }
  Compiler third(options);
  Rule c = third.compileSource(source, "standardize.optim");
  EXPECT_FALSE(third.lastWasCached());
  ASSERT_EQ(c.info().reductions.size(), 2u);
  EXPECT_EQ(c.info().reductions[1].level, 1u);
}

TEST(KernelCache, CanBeDisabled) {
  CompileOptions options;
  options.useCache = false;
  Compiler compiler(options);
  compiler.compileSource(kSource, "r.optim");
  compiler.compileSource(kSource, "r.optim");
  EXPECT_FALSE(compiler.lastWasCached());
}

} // namespace
