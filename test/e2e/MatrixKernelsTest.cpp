//===- MatrixKernelsTest.cpp - raw kernels of matrix functions (ABI 11) ---===//
//
// The CPU kernels of rules with matrix functions (newton_schulz) and the
// shape values rows() and cols() (KernelABI.h version 11, "Matrix functions
// and shape values"), without the runtime's Optimizer: rules written in the
// optim dialect are lowered by the CPU pipeline and JIT-compiled here, and
// their kernels are called on chunk tables built here, stage by stage, with
// the runtime's part (the shape values' slots filled before anything runs,
// the combine of the tensor reductions' partials, and the matrix function
// itself, replaced by a known "result" written into the buffer) done by
// hand. Checked, for f32 and f64, vector widths 16 and 4 (vector loops and
// scalar tails), odd shapes (37 columns, rows shorter than the lanes, 1 x 1,
// stacked matrices) and chunk sizes from "everything" to 1:
//   - a matrix function's stage stores the operand, bit for bit as the
//     kernel computes it, at every coordinate of the chunk through the
//     table's first pointer (element type, at r * nc + j) and writes no
//     partial slot, neither its own nor a shape value's;
//   - later stages and the rule kernel read the buffer per coordinate (the
//     fake result differs at every coordinate) through the second pointer,
//     and nothing writes the buffer after its stage;
//   - stage 0 and the rule kernel read rows() and cols() from
//     reduced[c * R + r] (filled as the runtime fills them), with either
//     chunk table (with axes or without); no kernel writes their partials;
//     a rule whose reductions are all shape values has a reduce kernel
//     whose stage 0 writes nothing;
//   - a stage outside [0, L] writes nothing, and split calls write the same
//     partials;
//   - the descriptors optim_reductions_<name> equal
//     optim::reductionsDescriptor of the specs (newton_schulz's parameters).
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Dialect/OptimDialect.h"
#include "optim/KernelABI.h"
#include "optim/Rule.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace optim;

namespace {

struct Kernels {
  std::unique_ptr<mlir::ExecutionEngine> engine;
  optim_reduced_rule_kernel rule = nullptr;
  optim_reduce_kernel reduce = nullptr;
  std::string descriptor;
};

/// Lowers `mlir` (`$T` for the element type) with the CPU pipelines and
/// JIT-compiles it as optim::Compiler does (-O3, the host's features).
Kernels compile(const std::string &name, const char *mlir, const char *type,
                unsigned width) {
  std::string text = mlir;
  for (size_t at; (at = text.find("$T")) != std::string::npos;)
    text.replace(at, 2, type);
  mlir::DialectRegistry registry;
  registry.insert<mlir::optim::OptimDialect, mlir::arith::ArithDialect,
                  mlir::math::MathDialect, mlir::vector::VectorDialect,
                  mlir::func::FuncDialect, mlir::scf::SCFDialect,
                  mlir::LLVM::LLVMDialect>();
  mlir::registerBuiltinDialectTranslation(registry);
  mlir::registerLLVMDialectTranslation(registry);
  mlir::MLIRContext context(registry);
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    llvm::raw_string_ostream(diagnostics) << d << "\n";
    return mlir::success();
  });
  Kernels out;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceString<mlir::ModuleOp>(text, &context);
  EXPECT_TRUE(module) << diagnostics;
  if (!module)
    return out;
  mlir::PassManager pm(&context);
  CPUPipelineOptions options;
  options.vectorWidth = width;
  buildLowerRulesPipeline(pm, options);
  buildKernelsToLLVMPipeline(pm);
  bool lowered = mlir::succeeded(pm.run(*module));
  EXPECT_TRUE(lowered) << diagnostics;
  if (!lowered)
    return out;
  initializeNativeTarget();
  auto tm = createHostTargetMachine();
  EXPECT_TRUE(bool(tm));
  if (!tm) {
    llvm::consumeError(tm.takeError());
    return out;
  }
  std::function<llvm::Error(llvm::Module *)> transformer =
      mlir::makeOptimizingTransformer(3, 0, tm->get());
  mlir::ExecutionEngineOptions engineOptions;
  engineOptions.transformer = transformer;
  engineOptions.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  auto engine =
      mlir::ExecutionEngine::create(*module, engineOptions, std::move(*tm));
  EXPECT_TRUE(bool(engine));
  if (!engine) {
    llvm::consumeError(engine.takeError());
    return out;
  }
  out.engine = std::move(*engine);
  auto lookup = [&](const std::string &symbol) -> void * {
    auto address = out.engine->lookup(symbol);
    if (!address) {
      llvm::consumeError(address.takeError());
      return nullptr;
    }
    return *address;
  };
  out.rule = reinterpret_cast<optim_reduced_rule_kernel>(
      lookup("optim_rule_" + name));
  out.reduce =
      reinterpret_cast<optim_reduce_kernel>(lookup("optim_reduce_" + name));
  EXPECT_TRUE(out.rule && out.reduce);
  if (auto *d =
          static_cast<const char *>(lookup("optim_reductions_" + name)))
    out.descriptor = d;
  return out;
}

/// A NaN whose payload no kernel produces: a slot that still holds it was
/// not written.
double sentinel() {
  uint64_t bits = 0x7FF8DEADBEEF1234ull;
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}
template <typename T> T sentinelT() {
  if constexpr (std::is_same_v<T, float>) {
    uint32_t bits = 0x7FC0BEEFu;
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
  } else {
    return sentinel();
  }
}
template <typename T> bool sameBits(T a, T b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}
template <typename T> bool sameAll(const std::vector<T> &a,
                                   const std::vector<T> &b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// A parameter seen as B matrices of R x C (KernelABI.h, "Axes").
struct Shape {
  int64_t B, R, C;
  int64_t size() const { return B * R * C; }
};

/// A chunk of tensor `tensor`: with axes, rows [r0, r0 + nr) x columns
/// [c0, c0 + nc) of matrix b; without, `nc` coordinates from flat index
/// `first` (nr = 1).
struct Chunk {
  size_t tensor;
  int64_t b, r0, c0, nr, nc;
  int64_t first;
};

/// As the runtime (KernelABI.h, "Axes"): rows of C <= chunkSize coordinates
/// go floor(chunkSize / C) to a chunk, longer rows are cut into parts.
std::vector<Chunk> rectangles(const std::vector<Shape> &shapes,
                              int64_t chunkSize) {
  std::vector<Chunk> chunks;
  for (size_t k = 0; k < shapes.size(); ++k) {
    const Shape &s = shapes[k];
    for (int64_t b = 0; b < s.B; ++b) {
      if (s.C <= chunkSize) {
        int64_t per = std::max<int64_t>(1, chunkSize / s.C);
        for (int64_t r0 = 0; r0 < s.R; r0 += per)
          chunks.push_back({k, b, r0, 0, std::min(per, s.R - r0), s.C,
                            (b * s.R + r0) * s.C});
        continue;
      }
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t c0 = 0; c0 < s.C; c0 += chunkSize)
          chunks.push_back({k, b, r, c0, 1, std::min(chunkSize, s.C - c0),
                            (b * s.R + r) * s.C + c0});
    }
  }
  return chunks;
}

/// Contiguous runs of chunkSize coordinates (the table of rules without
/// axes).
std::vector<Chunk> runs(const std::vector<Shape> &shapes, int64_t chunkSize) {
  std::vector<Chunk> chunks;
  for (size_t k = 0; k < shapes.size(); ++k)
    for (int64_t first = 0; first < shapes[k].size(); first += chunkSize)
      chunks.push_back(
          {k, 0, 0, 0, 1, std::min(chunkSize, shapes[k].size() - first),
           first});
  return chunks;
}

const std::vector<std::vector<Shape>> kShapeSets = {
    {{1, 5, 37}, {2, 3, 7}, {1, 1, 1}}, {{1, 2, 40}, {3, 2, 16}}, {{1, 9, 3}}};
const int64_t kChunkSizes[] = {int64_t(1) << 20, 64, 20, 7, 1};

/// Every per-coordinate buffer of the tensors, concatenated; offsets of each
/// tensor's first coordinate.
template <typename T> struct Buffers {
  std::vector<int64_t> off;
  std::vector<T> p, g, m, ns;
  explicit Buffers(const std::vector<Shape> &shapes) {
    int64_t n = 0;
    for (const Shape &s : shapes) {
      off.push_back(n);
      n += s.size();
    }
    p.resize(n);
    g.resize(n);
    m.resize(n);
    ns.assign(n, sentinelT<T>());
  }
};

/// The reduced values the runtime prepares before any pass: the shape
/// values' slots R and C, everything else the sentinel.
std::vector<double> prepareReduced(const std::vector<Chunk> &chunks,
                                   const std::vector<Shape> &shapes, size_t R,
                                   int rowsSlot, int colsSlot) {
  std::vector<double> reduced(chunks.size() * R, sentinel());
  for (size_t c = 0; c < chunks.size(); ++c) {
    const Shape &s = shapes[chunks[c].tensor];
    if (rowsSlot >= 0)
      reduced[c * R + rowsSlot] = double(s.R);
    if (colsSlot >= 0)
      reduced[c * R + colsSlot] = double(s.C);
  }
  return reduced;
}

/// The runtime's combine of tensor reduction `r` (a sum): the chunks'
/// partials of each tensor in chunk order, into every chunk's slot.
std::vector<double> combineSum(std::vector<double> &reduced,
                               const std::vector<double> &partials,
                               const std::vector<Chunk> &chunks,
                               size_t numTensors, size_t R, size_t r) {
  std::vector<double> total(numTensors, 0.0);
  for (size_t c = 0; c < chunks.size(); ++c)
    total[chunks[c].tensor] += partials[c * R + r];
  for (size_t c = 0; c < chunks.size(); ++c)
    reduced[c * R + r] = total[chunks[c].tensor];
  return total;
}

void expectClose(double got, double want, double tol, const std::string &what) {
  ASSERT_NEAR(got, want, tol * (1.0 + std::fabs(want))) << what;
}

/// Muon-like: x = mu m + g (the momentum, also the new m) goes through
/// newton_schulz (slot 0, level 0); rows() and cols() (slots 1 and 2); the
/// sum of g cols() (slot 3, level 0: stage 0 reads cols()); the sum of
/// o rows() (slot 4, level 1: stage 1 reads the matrix function's result
/// per coordinate and rows()); p -= lr (rows / cols) o + k (s3 + s4).
const char *kMuonRule = R"(
optim.rule @ns(%p: $T, %g: $T, %t: i64) hyper(%lr: $T = 0.5, %mu: $T = 0.75, %k: $T = 0.001) state(%m: $T = 0.0) {
  %m1 = arith.mulf %mu, %m : $T
  %x = arith.addf %m1, %g : $T
  %o = optim.tensor_reduce newton_schulz %x matrix {ns_steps = 3 : i32} : $T
  %c0 = arith.constant 0.0 : $T
  %nr = optim.tensor_reduce rows %c0 : $T
  %nc = optim.tensor_reduce cols %c0 : $T
  %gc = arith.mulf %g, %nc : $T
  %gs = optim.tensor_reduce sum %gc : $T
  %or = arith.mulf %o, %nr : $T
  %os = optim.tensor_reduce sum %or : $T
  %q = arith.divf %nr, %nc : $T
  %lq = arith.mulf %lr, %q : $T
  %d = arith.mulf %lq, %o : $T
  %e0 = arith.addf %gs, %os : $T
  %e = arith.mulf %k, %e0 : $T
  %d2 = arith.addf %d, %e : $T
  %pn = arith.subf %p, %d2 : $T
  optim.yield %pn, %x : $T, $T
}
)";

/// The fake result of the matrix function at flat coordinate i of tensor k:
/// different at every coordinate.
double fakeResult(size_t k, int64_t i) {
  return 0.01 * double(i % 13) - 0.05 + 0.003 * double(k) + 1e-4 * double(i);
}

template <typename T> void runMuon(unsigned width) {
  const bool f32 = std::is_same_v<T, float>;
  Kernels kernels = compile("ns", kMuonRule, f32 ? "f32" : "f64", width);
  ASSERT_TRUE(kernels.rule && kernels.reduce);
  // The descriptor is what the runtime's own function prints for the specs.
  std::vector<ReductionSpec> specs(5);
  specs[0].kind = ReductionKind::NewtonSchulz;
  specs[0].axis = Axis::Matrix;
  specs[0].nsSteps = 3;
  specs[1].kind = ReductionKind::Rows;
  specs[2].kind = ReductionKind::Cols;
  specs[4].level = 1;
  EXPECT_EQ(kernels.descriptor, reductionsDescriptor(specs));
  EXPECT_EQ(kernels.descriptor, "newton_schulz(3;3.4445;-4.775;2.0315;1e-07)"
                                "@matrix,rows,cols,sum,sum:1");
  const double lr = 0.5, mu = 0.75, k = 0.001;
  const std::vector<double> hypers = {lr, mu, k};
  const size_t R = 5;
  const double tol = f32 ? 2e-5 : 1e-12;

  for (const auto &shapes : kShapeSets) {
    for (int64_t chunkSize : kChunkSizes) {
      SCOPED_TRACE(testing::Message()
                   << "shapes from [" << shapes[0].B << ", " << shapes[0].R
                   << ", " << shapes[0].C << "], chunk size " << chunkSize);
      std::vector<Chunk> chunks = rectangles(shapes, chunkSize);
      const int64_t C = int64_t(chunks.size());
      Buffers<T> buf(shapes);
      std::mt19937 gen(unsigned(chunkSize * 7 + shapes[0].C));
      std::uniform_real_distribution<double> dist(-1.0, 1.0);
      for (size_t i = 0; i < buf.p.size(); ++i) {
        buf.p[i] = T(dist(gen));
        buf.g[i] = T(dist(gen) + 0.25);
        buf.m[i] = T(dist(gen) * 0.1);
      }
      // p, g, m, then the matrix buffer twice (S = 1, A = 0, X = 1).
      std::vector<void *> ptrs;
      std::vector<int64_t> lengths, strides;
      for (const Chunk &ch : chunks) {
        int64_t at = buf.off[ch.tensor] + ch.first;
        ptrs.insert(ptrs.end(), {&buf.p[at], &buf.g[at], &buf.m[at],
                                 &buf.ns[at], &buf.ns[at]});
        lengths.insert(lengths.end(), {ch.nr, ch.nc, ch.r0, ch.c0});
        strides.push_back(shapes[ch.tensor].size());
      }
      std::vector<double> reduced = prepareReduced(chunks, shapes, R, 1, 2);
      std::vector<double> partials(C * R, sentinel());
      const std::vector<T> p0 = buf.p, g0 = buf.g, m0 = buf.m;
      auto stage = [&](int64_t s, int64_t b, int64_t e) {
        kernels.reduce(ptrs.data(), lengths.data(), strides.data(), b, e,
                       hypers.data(), 1, nullptr, partials.data(),
                       reduced.data(), s, nullptr);
      };
      auto untouched = [&](const std::vector<double> &before,
                           size_t writtenSlot, const char *what) {
        for (int64_t c = 0; c < C; ++c)
          for (size_t r = 0; r < R; ++r) {
            double now = partials[c * R + r];
            if (r == writtenSlot)
              ASSERT_FALSE(sameBits(now, sentinel()))
                  << what << " left slot " << r << " of chunk " << c;
            else
              ASSERT_TRUE(sameBits(now, before[c * R + r]))
                  << what << " wrote slot " << r << " of chunk " << c;
          }
      };

      // Stage 0: x at every coordinate of the buffer, bit for bit (the
      // kernel never contracts a reduced value's ops); slot 3 only.
      std::vector<double> before = partials, reducedBefore = reduced;
      stage(0, 0, C);
      untouched(before, 3, "stage 0");
      ASSERT_TRUE(sameAll(reduced, reducedBefore));
      ASSERT_TRUE(sameAll(buf.p, p0) && sameAll(buf.g, g0) &&
                  sameAll(buf.m, m0));
      std::vector<T> x(buf.p.size());
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = T(T(mu) * buf.m[i]) + buf.g[i];
        ASSERT_TRUE(sameBits(buf.ns[i], x[i]))
            << "buffer at " << i << ": " << double(buf.ns[i]) << " against "
            << double(x[i]);
      }
      // Split between two calls: the same partials and buffer.
      {
        std::vector<double> whole = partials;
        partials = before;
        std::fill(buf.ns.begin(), buf.ns.end(), sentinelT<T>());
        stage(0, 0, C / 2);
        stage(0, C / 2, C);
        ASSERT_TRUE(sameAll(whole, partials));
        ASSERT_TRUE(sameAll(buf.ns, x));
      }
      std::vector<double> gs =
          combineSum(reduced, partials, chunks, shapes.size(), R, 3);
      for (size_t t = 0; t < shapes.size(); ++t) {
        double want = 0, scale = 0;
        for (int64_t i = 0; i < shapes[t].size(); ++i) {
          double v = double(T(g0[buf.off[t] + i] * T(shapes[t].C)));
          want += v;
          scale += std::fabs(v);
        }
        ASSERT_NEAR(gs[t], want, 1e-13 * scale) << "sum of g cols(), tensor "
                                                << t;
      }

      // The runtime's matrix function, faked: a known value per coordinate.
      for (size_t t = 0; t < shapes.size(); ++t)
        for (int64_t i = 0; i < shapes[t].size(); ++i)
          buf.ns[buf.off[t] + i] = T(fakeResult(t, i));
      const std::vector<T> result = buf.ns;

      // Stage 1 reads it per coordinate, and rows(); writes slot 4 only.
      before = partials;
      reducedBefore = reduced;
      stage(1, 0, C);
      untouched(before, 4, "stage 1");
      ASSERT_TRUE(sameAll(reduced, reducedBefore));
      ASSERT_TRUE(sameAll(buf.ns, result)) << "stage 1 wrote the buffer";
      std::vector<double> os =
          combineSum(reduced, partials, chunks, shapes.size(), R, 4);
      for (size_t t = 0; t < shapes.size(); ++t) {
        double want = 0, scale = 0;
        for (int64_t i = 0; i < shapes[t].size(); ++i) {
          double v = double(result[buf.off[t] + i] * T(shapes[t].R));
          want += v;
          scale += std::fabs(v);
        }
        ASSERT_NEAR(os[t], want, 1e-13 * scale) << "sum of o rows(), tensor "
                                                << t;
      }
      // Stage 2 is outside [0, L]: nothing.
      before = partials;
      stage(2, 0, C);
      ASSERT_TRUE(sameAll(partials, before));
      ASSERT_TRUE(sameAll(buf.ns, result));

      // The rule kernel: the result per coordinate, rows() / cols().
      kernels.rule(ptrs.data(), lengths.data(), strides.data(), 0, C,
                   hypers.data(), 1, nullptr, reduced.data(), nullptr);
      ASSERT_TRUE(sameAll(buf.ns, result)) << "the rule kernel wrote the "
                                               "buffer";
      ASSERT_TRUE(sameAll(buf.g, g0));
      for (size_t t = 0; t < shapes.size(); ++t) {
        const Shape &s = shapes[t];
        double e = k * (double(T(gs[t])) + double(T(os[t])));
        for (int64_t i = 0; i < s.size(); ++i) {
          int64_t at = buf.off[t] + i;
          double want = double(p0[at]) -
                        (lr * (double(s.R) / double(s.C)) *
                             double(result[at]) +
                         e);
          expectClose(double(buf.p[at]), want, tol,
                      "p of tensor " + std::to_string(t) + " at " +
                          std::to_string(i));
          ASSERT_TRUE(sameBits(buf.m[at], x[at])) << "m at " << at;
        }
      }
    }
  }
}

/// Shape values only, without axes: no pass computes anything (the reduce
/// kernel's stage 0 writes nothing); p -= lr (rows / cols) g.
const char *kShapesRule = R"(
optim.rule @shapes(%p: $T, %g: $T, %t: i64) hyper(%lr: $T = 0.1) {
  %c0 = arith.constant 0.0 : $T
  %nr = optim.tensor_reduce rows %c0 : $T
  %nc = optim.tensor_reduce cols %c0 : $T
  %q = arith.divf %nr, %nc : $T
  %lq = arith.mulf %lr, %q : $T
  %u = arith.mulf %lq, %g : $T
  %p2 = arith.subf %p, %u : $T
  optim.yield %p2 : $T
}
)";

/// Without axes: the norm of g rows() (slot 1, level 0: stage 0 reads
/// rows() from slot 0); p -= lr g / (n + cols()).
const char *kScaledRule = R"(
optim.rule @scaled(%p: $T, %g: $T, %t: i64) hyper(%lr: $T = 0.1) {
  %c0 = arith.constant 0.0 : $T
  %nr = optim.tensor_reduce rows %c0 : $T
  %gr = arith.mulf %g, %nr : $T
  %n = optim.tensor_reduce norm %gr : $T
  %nc = optim.tensor_reduce cols %c0 : $T
  %d = arith.addf %n, %nc : $T
  %u = arith.divf %g, %d : $T
  %lu = arith.mulf %lr, %u : $T
  %p2 = arith.subf %p, %lu : $T
  optim.yield %p2 : $T
}
)";

template <typename T> void runShapes(bool scaled, unsigned width) {
  const bool f32 = std::is_same_v<T, float>;
  std::string name = scaled ? "scaled" : "shapes";
  Kernels kernels = compile(name, scaled ? kScaledRule : kShapesRule,
                            f32 ? "f32" : "f64", width);
  ASSERT_TRUE(kernels.rule && kernels.reduce);
  std::vector<ReductionSpec> specs(scaled ? 3 : 2);
  specs[0].kind = ReductionKind::Rows;
  specs[1].kind = scaled ? ReductionKind::Norm : ReductionKind::Cols;
  if (scaled)
    specs[2].kind = ReductionKind::Cols;
  EXPECT_EQ(kernels.descriptor, reductionsDescriptor(specs));
  EXPECT_EQ(kernels.descriptor, scaled ? "rows,norm,cols" : "rows,cols");
  const size_t R = specs.size();
  const int rowsSlot = 0, colsSlot = scaled ? 2 : 1;
  const double lr = 0.1;
  const std::vector<double> hypers = {lr};
  const double tol = f32 ? 2e-5 : 1e-12;

  for (const auto &shapes : kShapeSets) {
    for (int64_t chunkSize : kChunkSizes) {
      SCOPED_TRACE(testing::Message()
                   << "shapes from [" << shapes[0].B << ", " << shapes[0].R
                   << ", " << shapes[0].C << "], chunk size " << chunkSize);
      std::vector<Chunk> chunks = runs(shapes, chunkSize);
      const int64_t C = int64_t(chunks.size());
      Buffers<T> buf(shapes);
      std::mt19937 gen(unsigned(chunkSize * 5 + shapes[0].C));
      std::uniform_real_distribution<double> dist(-1.0, 1.0);
      for (size_t i = 0; i < buf.p.size(); ++i) {
        buf.p[i] = T(dist(gen));
        buf.g[i] = T(dist(gen) + 0.25);
      }
      std::vector<void *> ptrs;
      std::vector<int64_t> lengths, strides;
      for (const Chunk &ch : chunks) {
        int64_t at = buf.off[ch.tensor] + ch.first;
        ptrs.insert(ptrs.end(), {&buf.p[at], &buf.g[at]});
        lengths.push_back(ch.nc);
        strides.push_back(shapes[ch.tensor].size());
      }
      std::vector<double> reduced =
          prepareReduced(chunks, shapes, R, rowsSlot, colsSlot);
      std::vector<double> partials(C * R, sentinel());
      const std::vector<T> p0 = buf.p, g0 = buf.g;
      const std::vector<double> reducedBefore = reduced;
      kernels.reduce(ptrs.data(), lengths.data(), strides.data(), 0, C,
                     hypers.data(), 1, nullptr, partials.data(),
                     reduced.data(), 0, nullptr);
      ASSERT_TRUE(sameAll(reduced, reducedBefore));
      ASSERT_TRUE(sameAll(buf.p, p0));
      for (int64_t c = 0; c < C; ++c)
        for (size_t r = 0; r < R; ++r)
          ASSERT_EQ(sameBits(partials[c * R + r], sentinel()),
                    !(scaled && r == 1))
              << "stage 0, slot " << r << " of chunk " << c;
      std::vector<double> norms(shapes.size(), 0.0);
      if (scaled) {
        std::vector<double> sq =
            combineSum(reduced, partials, chunks, shapes.size(), R, 1);
        for (size_t t = 0; t < shapes.size(); ++t) {
          double want = 0;
          for (int64_t i = 0; i < shapes[t].size(); ++i) {
            double v = double(T(g0[buf.off[t] + i] * T(shapes[t].R)));
            want += v * v;
          }
          ASSERT_NEAR(sq[t], want, 1e-13 * want) << "tensor " << t;
          norms[t] = std::sqrt(sq[t]);
        }
        for (int64_t c = 0; c < C; ++c)
          reduced[c * R + 1] = norms[chunks[c].tensor];
      }
      kernels.rule(ptrs.data(), lengths.data(), strides.data(), 0, C,
                   hypers.data(), 1, nullptr, reduced.data(), nullptr);
      for (size_t t = 0; t < shapes.size(); ++t) {
        const Shape &s = shapes[t];
        for (int64_t i = 0; i < s.size(); ++i) {
          int64_t at = buf.off[t] + i;
          double g = double(g0[at]);
          double step = scaled ? lr * g / (double(T(norms[t])) + double(s.C))
                               : lr * (double(s.R) / double(s.C)) * g;
          expectClose(double(buf.p[at]), double(p0[at]) - step, tol,
                      "p of tensor " + std::to_string(t) + " at " +
                          std::to_string(i));
        }
      }
    }
  }
}

TEST(MatrixKernels, MuonF32Width16) { runMuon<float>(16); }
TEST(MatrixKernels, MuonF64Width16) { runMuon<double>(16); }
TEST(MatrixKernels, MuonF32Width4) { runMuon<float>(4); }
TEST(MatrixKernels, MuonF64Width4) { runMuon<double>(4); }
TEST(ShapeValueKernels, OnlyShapesF32) { runShapes<float>(false, 16); }
TEST(ShapeValueKernels, OnlyShapesF64) { runShapes<double>(false, 4); }
TEST(ShapeValueKernels, Stage0ReadsShapesF32Width16) {
  runShapes<float>(true, 16);
}
TEST(ShapeValueKernels, Stage0ReadsShapesF64Width4) {
  runShapes<double>(true, 4);
}

} // namespace
