//===- AxisKernelsTest.cpp - raw kernels of rules with axes (ABI 10) ------===//
//
// The CPU kernels of rules with row and column states and reductions
// (KernelABI.h version 10, "Axes"), without the runtime's Optimizer: rules
// written in the optim dialect are lowered by the CPU pipeline and JIT-
// compiled here, and their kernels are called on rectangle chunk tables built
// here (lengths nr, nc, r0, c0 per chunk; pointers p, g, the states, the next
// buffers of the row and column states, the partials and the combined results
// of the row and column reductions), stage by stage, with the combine of
// KernelABI.h written out (a row over the chunks holding it, a column over
// its matrix's chunks, in chunk order; mean = sum / C or / R).
//
// Parameters of several [B, R, C] shapes at once (odd column counts, rows
// shorter than the lanes, a 1 x 1 matrix, stacked matrices), chunked as the
// runtime does for chunk sizes from "everything" to 1 (whole rows, several
// rows a chunk, rows cut into parts, single coordinates), f32 and f64,
// vector widths 16 and 4, two steps (the next buffers copied to the current
// ones between them). Checked:
//   - the combined reductions (row, column and tensor, nested up to level 2)
//     and the new p, per-coordinate states and row and column states against
//     a straightforward double precision reference written below, within
//     1e-12 (f64) or 2e-5 (f32) of the magnitude of the values;
//   - stage s writes the partials of level-s reductions only (every row or
//     column partial of the chunk; the others keep a NaN sentinel, bit for
//     bit), and never reads a result of level >= s (they hold the sentinel
//     until combined);
//   - partials do not depend on how chunks are split between calls;
//   - the rule kernel writes every next value (none keeps the sentinel) and
//     leaves the current buffers of row and column states as they were;
//   - rand() draws at the coordinate's global index (rng[1 + c] + r * nc +
//     j);
//   - the descriptor optim_reductions_<name> ("mean@row,...").
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
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace optim;

namespace {

//===----------------------------------------------------------------------===//
// An independent Philox4x32-10 (Random123's philox4x32_10), for rand().
//===----------------------------------------------------------------------===//

using Words = std::array<uint32_t, 4>;

Words philox(Words ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint64_t p0 = uint64_t(0xD2511F53u) * ctr[0];
    uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr[2];
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = {hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0};
  }
  return ctr;
}

constexpr uint64_t kSeed = 0x0123456789ABCDEFull;
/// The global index of the first coordinate (near 2^32: the counter's high
/// word changes inside the parameters).
constexpr uint64_t kFirst = (uint64_t(1) << 32) - 101;

/// rand() of site 0 at global index i and step t, in T, as a double.
template <typename T> double uniformAt(uint64_t i, int64_t t) {
  Words w = philox({uint32_t(i), uint32_t(i >> 32), uint32_t(uint64_t(t)), 0},
                   uint32_t(kSeed), uint32_t(kSeed >> 32));
  if constexpr (std::is_same_v<T, float>)
    return double(float(w[0] >> 8) * 0x1p-24f);
  else
    return double(((uint64_t(w[1]) << 32) | w[0]) >> 11) * 0x1p-53;
}

//===----------------------------------------------------------------------===//
// The rules and their references.
//===----------------------------------------------------------------------===//

/// A parameter seen as B matrices of R x C (KernelABI.h, "Axes").
struct Shape {
  int64_t B, R, C;
  int64_t size() const { return B * R * C; }
  int64_t rows() const { return B * R; }
  int64_t cols() const { return B * C; }
  int64_t rowOf(int64_t k) const { return k / C; }
  int64_t colOf(int64_t k) const { return (k / (R * C)) * C + k % C; }
};

/// A row, column or tensor reduction of a rule: what the kernels compute.
struct Red {
  ReductionKind kind;
  Axis axis;
  unsigned level;
};

/// One step of a rule on one parameter, in double: updates p and the states
/// (state i: size() values, or rows() / cols() for a row / column state) and
/// gives each reduction's results (1 value, rows() or cols()).
using Reference = std::function<void(
    const Shape &s, const std::vector<double> &hypers, std::vector<double> &p,
    const std::vector<double> &g, const std::vector<double> &u,
    std::vector<std::vector<double>> &states,
    std::vector<std::vector<double>> &reduced)>;

struct Case {
  const char *name;
  /// The rule in the optim dialect, `$T` for its element type.
  const char *mlir;
  std::vector<Axis> stateAxes;
  std::vector<double> stateInits;
  std::vector<Red> reductions;
  const char *descriptor;
  std::vector<double> hypers;
  Reference reference;
};

std::vector<double> rowMean(const Shape &s, const std::vector<double> &x) {
  std::vector<double> out(s.rows(), 0.0);
  for (int64_t k = 0; k < s.size(); ++k)
    out[s.rowOf(k)] += x[k];
  for (double &v : out)
    v /= double(s.C);
  return out;
}
std::vector<double> colMean(const Shape &s, const std::vector<double> &x) {
  std::vector<double> out(s.cols(), 0.0);
  for (int64_t k = 0; k < s.size(); ++k)
    out[s.colOf(k)] += x[k];
  for (double &v : out)
    v /= double(s.R);
  return out;
}

/// Adafactor-like factored second moments: row and column means of
/// g * g + eps into a row and a column state, the tensor mean of the new row
/// state (level 1), a column max of the normalized update (level 2), and a
/// per-coordinate momentum.
const Case kFactored = {
    "factored",
    R"(
optim.rule @factored(%p: $T, %g: $T, %t: i64) hyper(%lr: $T = 0.01, %b2: $T = 0.9, %b1: $T = 0.8, %eps: $T = 1.0e-3) state(%m: $T = 0.0, %r: $T = 0.0 row, %c: $T = 0.0 col) {
  %g2a = arith.mulf %g, %g : $T
  %g2 = arith.addf %g2a, %eps : $T
  %rm = optim.tensor_reduce mean %g2 row : $T
  %cm = optim.tensor_reduce mean %g2 col : $T
  %one = arith.constant 1.0 : $T
  %ib2 = arith.subf %one, %b2 : $T
  %r1 = arith.mulf %b2, %r : $T
  %r2 = arith.mulf %ib2, %rm : $T
  %rn = arith.addf %r1, %r2 : $T
  %c1 = arith.mulf %b2, %c : $T
  %c2 = arith.mulf %ib2, %cm : $T
  %cn = arith.addf %c1, %c2 : $T
  %tm = optim.tensor_reduce mean %rn : $T
  %v0 = arith.mulf %rn, %cn : $T
  %v = arith.divf %v0, %tm : $T
  %sv = math.sqrt %v : $T
  %u = arith.divf %g, %sv : $T
  %au = math.absf %u : $T
  %cx = optim.tensor_reduce max %au col : $T
  %ib1 = arith.subf %one, %b1 : $T
  %m1 = arith.mulf %b1, %m : $T
  %m2 = arith.mulf %ib1, %u : $T
  %mn = arith.addf %m1, %m2 : $T
  %d = arith.maximumf %one, %cx : $T
  %st = arith.divf %mn, %d : $T
  %ls = arith.mulf %lr, %st : $T
  %pn = arith.subf %p, %ls : $T
  optim.yield %pn, %mn, %rn, %cn : $T, $T, $T, $T
}
)",
    {Axis::None, Axis::Row, Axis::Col},
    {0.0, 0.0, 0.0},
    {{ReductionKind::Mean, Axis::Row, 0},
     {ReductionKind::Mean, Axis::Col, 0},
     {ReductionKind::Mean, Axis::None, 1},
     {ReductionKind::Max, Axis::Col, 2}},
    "mean@row,mean@col,mean:1,max@col:2",
    {0.01, 0.9, 0.8, 1e-3},
    [](const Shape &s, const std::vector<double> &h, std::vector<double> &p,
       const std::vector<double> &g, const std::vector<double> &,
       std::vector<std::vector<double>> &st,
       std::vector<std::vector<double>> &red) {
      double lr = h[0], b2 = h[1], b1 = h[2], eps = h[3];
      std::vector<double> g2(s.size());
      for (int64_t k = 0; k < s.size(); ++k)
        g2[k] = g[k] * g[k] + eps;
      std::vector<double> rm = rowMean(s, g2), cm = colMean(s, g2);
      std::vector<double> rn(s.rows()), cn(s.cols());
      for (int64_t i = 0; i < s.rows(); ++i)
        rn[i] = b2 * st[1][i] + (1 - b2) * rm[i];
      for (int64_t j = 0; j < s.cols(); ++j)
        cn[j] = b2 * st[2][j] + (1 - b2) * cm[j];
      double tm = 0;
      for (int64_t k = 0; k < s.size(); ++k)
        tm += rn[s.rowOf(k)];
      tm /= double(s.size());
      std::vector<double> u(s.size());
      std::vector<double> cx(s.cols(), -INFINITY);
      for (int64_t k = 0; k < s.size(); ++k) {
        u[k] = g[k] / std::sqrt(rn[s.rowOf(k)] * cn[s.colOf(k)] / tm);
        cx[s.colOf(k)] = std::max(cx[s.colOf(k)], std::fabs(u[k]));
      }
      for (int64_t k = 0; k < s.size(); ++k) {
        st[0][k] = b1 * st[0][k] + (1 - b1) * u[k];
        p[k] -= lr * st[0][k] / std::max(1.0, cx[s.colOf(k)]);
      }
      st[1] = rn;
      st[2] = cn;
      red = {rm, cm, {tm}, cx};
    }};

/// SM3-like covers: nu = min(row state, column state) + g * g, the new row
/// (column) state its row (column) max; a row min of p, a column norm of g
/// times rand(), a row sum of g; every kind, no tensor reduction.
const Case kCovers = {
    "covers",
    R"(
optim.rule @covers(%p: $T, %g: $T, %t: i64) hyper(%lr: $T = 0.1, %eps: $T = 1.0e-2, %wd: $T = 0.01) state(%a: $T = 0.5 row, %b: $T = 0.25 col) random(uniform) {
  %mab = arith.minimumf %a, %b : $T
  %gg = arith.mulf %g, %g : $T
  %nu = arith.addf %mab, %gg : $T
  %an = optim.tensor_reduce max %nu row : $T
  %bn = optim.tensor_reduce max %nu col : $T
  %pm = optim.tensor_reduce min %p row : $T
  %gn = optim.tensor_reduce norm %g col : $T
  %gs = optim.tensor_reduce sum %g row : $T
  %ne = arith.addf %nu, %eps : $T
  %sq = math.sqrt %ne : $T
  %q = arith.divf %g, %sq : $T
  %lq = arith.mulf %lr, %q : $T
  %p1 = arith.subf %p, %lq : $T
  %w1 = arith.mulf %wd, %pm : $T
  %p2 = arith.subf %p1, %w1 : $T
  %u = optim.random uniform site 0 : $T
  %gu = arith.mulf %gn, %u : $T
  %w2 = arith.mulf %wd, %gu : $T
  %p3 = arith.addf %p2, %w2 : $T
  %w3 = arith.mulf %wd, %gs : $T
  %p4 = arith.subf %p3, %w3 : $T
  optim.yield %p4, %an, %bn : $T, $T, $T
}
)",
    {Axis::Row, Axis::Col},
    {0.5, 0.25},
    {{ReductionKind::Max, Axis::Row, 0},
     {ReductionKind::Max, Axis::Col, 0},
     {ReductionKind::Min, Axis::Row, 0},
     {ReductionKind::Norm, Axis::Col, 0},
     {ReductionKind::Sum, Axis::Row, 0}},
    "max@row,max@col,min@row,norm@col,sum@row",
    {0.1, 1e-2, 0.01},
    [](const Shape &s, const std::vector<double> &h, std::vector<double> &p,
       const std::vector<double> &g, const std::vector<double> &u,
       std::vector<std::vector<double>> &st,
       std::vector<std::vector<double>> &red) {
      double lr = h[0], eps = h[1], wd = h[2];
      std::vector<double> an(s.rows(), -INFINITY), bn(s.cols(), -INFINITY),
          pm(s.rows(), INFINITY), gn(s.cols(), 0.0), gs(s.rows(), 0.0);
      std::vector<double> nu(s.size());
      for (int64_t k = 0; k < s.size(); ++k) {
        int64_t i = s.rowOf(k), j = s.colOf(k);
        nu[k] = std::min(st[0][i], st[1][j]) + g[k] * g[k];
        an[i] = std::max(an[i], nu[k]);
        bn[j] = std::max(bn[j], nu[k]);
        pm[i] = std::min(pm[i], p[k]);
        gn[j] += g[k] * g[k];
        gs[i] += g[k];
      }
      for (double &v : gn)
        v = std::sqrt(v);
      for (int64_t k = 0; k < s.size(); ++k) {
        int64_t i = s.rowOf(k), j = s.colOf(k);
        p[k] = p[k] - lr * g[k] / std::sqrt(nu[k] + eps) - wd * pm[i] +
               wd * (gn[j] * u[k]) - wd * gs[i];
      }
      st[0] = an;
      st[1] = bn;
      red = {an, bn, pm, gn, gs};
    }};

/// Row and column states without reductions (the rule kernel without
/// `reduced`): counters kept per row and per column, one of them unchanged.
const Case kCounters = {
    "counters",
    R"(
optim.rule @counters(%p: $T, %g: $T, %t: i64) hyper(%lr: $T = 0.5) state(%r: $T = 1.0 row, %c: $T = 2.0 col, %k: $T = 3.0 col) {
  %half = arith.constant 0.5 : $T
  %one = arith.constant 1.0 : $T
  %r1 = arith.mulf %r, %half : $T
  %rn = arith.addf %r1, %one : $T
  %cn = arith.addf %c, %lr : $T
  %rc = arith.mulf %r, %c : $T
  %rck = arith.addf %rc, %k : $T
  %s = arith.mulf %g, %rck : $T
  %pn = arith.subf %p, %s : $T
  optim.yield %pn, %rn, %cn, %k : $T, $T, $T, $T
}
)",
    {Axis::Row, Axis::Col, Axis::Col},
    {1.0, 2.0, 3.0},
    {},
    "",
    {0.5},
    [](const Shape &s, const std::vector<double> &h, std::vector<double> &p,
       const std::vector<double> &g, const std::vector<double> &,
       std::vector<std::vector<double>> &st,
       std::vector<std::vector<double>> &) {
      for (int64_t k = 0; k < s.size(); ++k)
        p[k] -=
            g[k] * (st[0][s.rowOf(k)] * st[1][s.colOf(k)] + st[2][s.colOf(k)]);
      for (double &r : st[0])
        r = r * 0.5 + 1.0;
      for (double &c : st[1])
        c += h[0];
    }};

//===----------------------------------------------------------------------===//
// Compiling MLIR text with the CPU pipelines.
//===----------------------------------------------------------------------===//

struct Kernels {
  std::unique_ptr<mlir::ExecutionEngine> engine;
  optim_rule_kernel rule = nullptr;
  optim_reduced_rule_kernel reducedRule = nullptr;
  optim_reduce_kernel reduce = nullptr;
  std::string descriptor;
};

Kernels compile(const Case &cs, const char *type, unsigned width) {
  std::string text = cs.mlir;
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
  // As optim::Compiler: -O3, the host's features.
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
  void *rule = lookup(std::string("optim_rule_") + cs.name);
  EXPECT_TRUE(rule);
  if (cs.reductions.empty()) {
    out.rule = reinterpret_cast<optim_rule_kernel>(rule);
  } else {
    out.reducedRule = reinterpret_cast<optim_reduced_rule_kernel>(rule);
    out.reduce = reinterpret_cast<optim_reduce_kernel>(
        lookup(std::string("optim_reduce_") + cs.name));
    EXPECT_TRUE(out.reduce);
    if (auto *d = static_cast<const char *>(
            lookup(std::string("optim_reductions_") + cs.name)))
      out.descriptor = d;
  }
  return out;
}

//===----------------------------------------------------------------------===//
// Rectangle chunk tables, and the runtime's combine, written out.
//===----------------------------------------------------------------------===//

struct Chunk {
  size_t tensor;
  int64_t b, r0, c0, nr, nc;
};

/// As the runtime (KernelABI.h): rows of C <= chunkSize coordinates go
/// floor(chunkSize / C) to a chunk, longer rows are cut into parts of
/// chunkSize.
std::vector<Chunk> makeChunks(const std::vector<Shape> &shapes,
                              int64_t chunkSize) {
  std::vector<Chunk> chunks;
  for (size_t k = 0; k < shapes.size(); ++k) {
    const Shape &s = shapes[k];
    for (int64_t b = 0; b < s.B; ++b) {
      if (s.C <= chunkSize) {
        int64_t per = std::max<int64_t>(1, chunkSize / s.C);
        for (int64_t r0 = 0; r0 < s.R; r0 += per)
          chunks.push_back({k, b, r0, 0, std::min(per, s.R - r0), s.C});
        continue;
      }
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t c0 = 0; c0 < s.C; c0 += chunkSize)
          chunks.push_back({k, b, r, c0, 1, std::min(chunkSize, s.C - c0)});
    }
  }
  return chunks;
}

double merge(ReductionKind kind, double acc, double x) {
  switch (kind) {
  case ReductionKind::Max:
    return std::isnan(acc) || std::isnan(x) ? NAN : std::max(acc, x);
  case ReductionKind::Min:
    return std::isnan(acc) || std::isnan(x) ? NAN : std::min(acc, x);
  default:
    return acc + x;
  }
}

double finish(ReductionKind kind, double acc, int64_t n) {
  if (kind == ReductionKind::Mean)
    return acc / double(n);
  if (kind == ReductionKind::Norm)
    return std::sqrt(acc);
  return acc;
}

/// A NaN whose payload no kernel produces: a slot that still holds it was
/// not written.
double sentinel() {
  uint64_t bits = 0x7FF8DEADBEEF1234ull;
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}
bool sameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
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
template <typename T> bool sameBitsT(T a, T b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

/// Every buffer of a step over `shapes`, and the chunk table pointing into
/// them.
template <typename T> struct Problem {
  const Case &cs;
  std::vector<Shape> shapes;
  std::vector<Chunk> chunks;
  /// Per tensor: the offset of its first coordinate, row and column.
  std::vector<int64_t> coordOff, rowOff, colOff;
  int64_t coords = 0, rows = 0, cols = 0;
  std::vector<T> p, g;
  /// Per state: current and next buffers (next: row and column states).
  std::vector<std::vector<T>> cur, next;
  /// The row and column reductions (indices into cs.reductions), their
  /// per-chunk partials (offset per chunk) and combined results.
  std::vector<size_t> axisReds;
  std::vector<std::vector<double>> axisPartials, axisReduced;
  std::vector<std::vector<int64_t>> partialOff;
  /// Tensor reductions' slots: c * R + r.
  std::vector<double> partials, reduced;
  std::vector<void *> ptrs;
  std::vector<int64_t> lengths, strides;
  std::vector<uint64_t> rng;

  Problem(const Case &cs, std::vector<Shape> tensorShapes, int64_t chunkSize)
      : cs(cs), shapes(std::move(tensorShapes)),
        chunks(makeChunks(shapes, chunkSize)) {
    for (const Shape &s : shapes) {
      coordOff.push_back(coords);
      rowOff.push_back(rows);
      colOff.push_back(cols);
      coords += s.size();
      rows += s.rows();
      cols += s.cols();
    }
    p.resize(coords);
    g.resize(coords);
    for (size_t i = 0; i < cs.stateAxes.size(); ++i) {
      Axis a = cs.stateAxes[i];
      int64_t n = a == Axis::Row ? rows : a == Axis::Col ? cols : coords;
      cur.emplace_back(n, T(cs.stateInits[i]));
      next.emplace_back(a == Axis::None ? 0 : n, sentinelT<T>());
    }
    for (size_t r = 0; r < cs.reductions.size(); ++r)
      if (cs.reductions[r].axis != Axis::None)
        axisReds.push_back(r);
    for (size_t r : axisReds) {
      bool row = cs.reductions[r].axis == Axis::Row;
      std::vector<int64_t> off;
      int64_t total = 0;
      for (const Chunk &c : chunks) {
        off.push_back(total);
        total += row ? c.nr : c.nc;
      }
      partialOff.push_back(off);
      axisPartials.emplace_back(total, sentinel());
      axisReduced.emplace_back(row ? rows : cols, sentinel());
    }
    const size_t R = cs.reductions.size();
    partials.assign(chunks.size() * R, sentinel());
    reduced.assign(chunks.size() * R, sentinel());
    buildTable();
  }

  int64_t firstCoord(const Chunk &c) const {
    const Shape &s = shapes[c.tensor];
    return coordOff[c.tensor] + c.b * s.R * s.C + c.r0 * s.C + c.c0;
  }
  int64_t firstRow(const Chunk &c) const {
    return rowOff[c.tensor] + c.b * shapes[c.tensor].R + c.r0;
  }
  int64_t firstCol(const Chunk &c) const {
    return colOff[c.tensor] + c.b * shapes[c.tensor].C + c.c0;
  }

  void buildTable() {
    ptrs.clear();
    lengths.clear();
    strides.clear();
    rng = {kSeed};
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      const Chunk &c = chunks[ci];
      int64_t at = firstCoord(c);
      auto axisAt = [&](Axis a) {
        return a == Axis::Row ? firstRow(c) : firstCol(c);
      };
      ptrs.push_back(p.data() + at);
      ptrs.push_back(g.data() + at);
      for (size_t i = 0; i < cur.size(); ++i) {
        Axis a = cs.stateAxes[i];
        ptrs.push_back(cur[i].data() + (a == Axis::None ? at : axisAt(a)));
      }
      for (size_t i = 0; i < cur.size(); ++i)
        if (cs.stateAxes[i] != Axis::None)
          ptrs.push_back(next[i].data() + axisAt(cs.stateAxes[i]));
      for (size_t x = 0; x < axisReds.size(); ++x)
        ptrs.push_back(axisPartials[x].data() + partialOff[x][ci]);
      for (size_t x = 0; x < axisReds.size(); ++x)
        ptrs.push_back(axisReduced[x].data() +
                       axisAt(cs.reductions[axisReds[x]].axis));
      for (int64_t v : {c.nr, c.nc, c.r0, c.c0})
        lengths.push_back(v);
      strides.push_back(shapes[c.tensor].size());
      rng.push_back(kFirst + uint64_t(at));
    }
  }

  /// Combines the slots of the reductions of `level` (KernelABI.h).
  void combine(unsigned level) {
    const size_t R = cs.reductions.size();
    for (size_t r = 0; r < R; ++r) {
      const Red &red = cs.reductions[r];
      if (red.level != level || red.axis != Axis::None)
        continue;
      for (size_t k = 0; k < shapes.size(); ++k) {
        bool any = false;
        double acc = 0;
        for (size_t c = 0; c < chunks.size(); ++c) {
          if (chunks[c].tensor != k)
            continue;
          acc = any ? merge(red.kind, acc, partials[c * R + r])
                    : partials[c * R + r];
          any = true;
        }
        double value = finish(red.kind, acc, shapes[k].size());
        for (size_t c = 0; c < chunks.size(); ++c)
          if (chunks[c].tensor == k)
            reduced[c * R + r] = value;
      }
    }
    for (size_t x = 0; x < axisReds.size(); ++x) {
      const Red &red = cs.reductions[axisReds[x]];
      if (red.level != level)
        continue;
      bool row = red.axis == Axis::Row;
      std::vector<double> &out = axisReduced[x];
      std::vector<bool> seen(out.size(), false);
      for (size_t ci = 0; ci < chunks.size(); ++ci) {
        const Chunk &c = chunks[ci];
        int64_t n = row ? c.nr : c.nc, first = row ? firstRow(c) : firstCol(c);
        for (int64_t i = 0; i < n; ++i) {
          double v = axisPartials[x][partialOff[x][ci] + i];
          out[first + i] =
              seen[first + i] ? merge(red.kind, out[first + i], v) : v;
          seen[first + i] = true;
        }
      }
      for (size_t k = 0; k < shapes.size(); ++k) {
        const Shape &s = shapes[k];
        int64_t first = row ? rowOff[k] : colOff[k];
        for (int64_t i = 0; i < (row ? s.rows() : s.cols()); ++i)
          out[first + i] = finish(red.kind, out[first + i], row ? s.C : s.R);
      }
    }
  }
};

template <typename T>
void expectNear(const std::vector<double> &got, const std::vector<double> &want,
                double tol, const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0;
  for (double w : want)
    scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (std::fabs(want[i]) + scale) + 1e-300)
        << what << " at " << i;
}

template <typename T> void runCase(const Case &cs, unsigned width) {
  const bool f32 = std::is_same_v<T, float>;
  Kernels kernels = compile(cs, f32 ? "f32" : "f64", width);
  ASSERT_TRUE(kernels.rule || (kernels.reducedRule && kernels.reduce));
  EXPECT_EQ(kernels.descriptor, cs.descriptor);
  const size_t R = cs.reductions.size();
  unsigned L = 0;
  for (const Red &r : cs.reductions)
    L = std::max(L, r.level);
  const double tol = f32 ? 2e-5 : 1e-12;

  // Odd column counts (37: vector iterations and a tail), rows shorter than
  // the lanes (3, 7), a 1 x 1 matrix, stacked matrices (B = 2), one row.
  const std::vector<std::vector<Shape>> shapeSets = {
      {{1, 5, 37}, {2, 3, 7}, {1, 1, 1}},
      {{1, 1, 40}, {3, 2, 16}},
      {{1, 9, 3}}};
  for (const auto &shapes : shapeSets) {
    for (int64_t chunk :
         {int64_t(1) << 20, int64_t(64), int64_t(20), int64_t(7), int64_t(1)}) {
      SCOPED_TRACE(testing::Message()
                   << "shapes from [" << shapes[0].B << ", " << shapes[0].R
                   << ", " << shapes[0].C << "], chunk size " << chunk);
      Problem<T> pb(cs, shapes, chunk);
      const int64_t C = int64_t(pb.chunks.size());
      std::mt19937 gen(unsigned(chunk * 7 + shapes[0].C));
      std::uniform_real_distribution<double> dist(-1.0, 1.0);
      for (T &x : pb.p)
        x = T(dist(gen));
      for (size_t i = 0; i < pb.cur.size(); ++i)
        if (cs.stateAxes[i] == Axis::None)
          for (T &x : pb.cur[i])
            x = T(dist(gen) * 0.1);
      for (int64_t t = 1; t <= 2; ++t) {
        SCOPED_TRACE(testing::Message() << "step " << t);
        pb.buildTable();
        for (T &x : pb.g)
          x = T(dist(gen) + 0.25);
        // The reference, per tensor, from this step's inputs.
        std::vector<std::vector<double>> wantP, wantStates;
        std::vector<std::vector<std::vector<double>>> wantReduced;
        std::vector<std::vector<double>> newStates(pb.cur.size());
        for (size_t k = 0; k < shapes.size(); ++k) {
          const Shape &s = shapes[k];
          std::vector<double> p(pb.p.begin() + pb.coordOff[k],
                                pb.p.begin() + pb.coordOff[k] + s.size());
          std::vector<double> g(pb.g.begin() + pb.coordOff[k],
                                pb.g.begin() + pb.coordOff[k] + s.size());
          std::vector<double> u;
          for (int64_t i = 0; i < s.size(); ++i)
            u.push_back(uniformAt<T>(kFirst + uint64_t(pb.coordOff[k] + i), t));
          std::vector<std::vector<double>> states;
          for (size_t i = 0; i < pb.cur.size(); ++i) {
            Axis a = cs.stateAxes[i];
            int64_t first = a == Axis::Row   ? pb.rowOff[k]
                            : a == Axis::Col ? pb.colOff[k]
                                             : pb.coordOff[k];
            int64_t n = a == Axis::Row   ? s.rows()
                        : a == Axis::Col ? s.cols()
                                         : s.size();
            states.emplace_back(pb.cur[i].begin() + first,
                                pb.cur[i].begin() + first + n);
          }
          std::vector<std::vector<double>> red;
          cs.reference(s, cs.hypers, p, g, u, states, red);
          wantP.push_back(p);
          for (size_t i = 0; i < states.size(); ++i)
            newStates[i].insert(newStates[i].end(), states[i].begin(),
                                states[i].end());
          wantReduced.push_back(red);
        }

        // The reduce stages, each followed by the combine of its level.
        std::fill(pb.partials.begin(), pb.partials.end(), sentinel());
        std::fill(pb.reduced.begin(), pb.reduced.end(), sentinel());
        for (auto &v : pb.axisPartials)
          std::fill(v.begin(), v.end(), sentinel());
        for (auto &v : pb.axisReduced)
          std::fill(v.begin(), v.end(), sentinel());
        for (unsigned s = 0; kernels.reduce && s <= L; ++s) {
          std::vector<double> before = pb.partials;
          std::vector<std::vector<double>> axisBefore = pb.axisPartials;
          auto runStage = [&](int64_t b, int64_t e) {
            kernels.reduce(
                pb.ptrs.data(), pb.lengths.data(), pb.strides.data(), b, e,
                cs.hypers.data(), t, nullptr, pb.partials.data(),
                s == 0 ? nullptr : pb.reduced.data(), s, pb.rng.data());
          };
          runStage(0, C);
          for (int64_t c = 0; c < C; ++c)
            for (size_t r = 0; r < R; ++r) {
              if (cs.reductions[r].axis != Axis::None)
                continue;
              double now = pb.partials[c * R + r];
              if (cs.reductions[r].level == s)
                ASSERT_FALSE(sameBits(now, sentinel()))
                    << "stage " << s << " left slot " << r << " of chunk " << c
                    << " unwritten";
              else
                ASSERT_TRUE(sameBits(now, before[c * R + r]))
                    << "stage " << s << " wrote slot " << r << " of chunk "
                    << c;
            }
          for (size_t x = 0; x < pb.axisReds.size(); ++x) {
            bool mine = cs.reductions[pb.axisReds[x]].level == s;
            for (size_t i = 0; i < pb.axisPartials[x].size(); ++i) {
              double now = pb.axisPartials[x][i];
              if (mine)
                ASSERT_FALSE(sameBits(now, sentinel()))
                    << "stage " << s << " left partial " << i
                    << " of reduction " << pb.axisReds[x] << " unwritten";
              else
                ASSERT_TRUE(sameBits(now, axisBefore[x][i]))
                    << "stage " << s << " wrote partial " << i
                    << " of reduction " << pb.axisReds[x];
            }
          }
          // Split between two calls, every partial is the same.
          std::vector<double> whole = pb.partials;
          std::vector<std::vector<double>> axisWhole = pb.axisPartials;
          pb.partials = before;
          pb.axisPartials = axisBefore;
          pb.buildTable();
          runStage(0, C / 2);
          runStage(C / 2, C);
          for (size_t i = 0; i < whole.size(); ++i)
            ASSERT_TRUE(sameBits(whole[i], pb.partials[i])) << "slot " << i;
          for (size_t x = 0; x < axisWhole.size(); ++x)
            for (size_t i = 0; i < axisWhole[x].size(); ++i)
              ASSERT_TRUE(sameBits(axisWhole[x][i], pb.axisPartials[x][i]))
                  << "partial " << i << " of reduction " << pb.axisReds[x];
          pb.combine(s);
        }
        // The combined values against the reference.
        for (size_t r = 0; r < R; ++r) {
          const Red &red = cs.reductions[r];
          auto x = std::find(pb.axisReds.begin(), pb.axisReds.end(), r) -
                   pb.axisReds.begin();
          for (size_t k = 0; k < shapes.size(); ++k) {
            std::vector<double> got;
            if (red.axis == Axis::None) {
              for (int64_t c = 0; c < C; ++c)
                if (pb.chunks[c].tensor == k) {
                  got.push_back(pb.reduced[c * R + r]);
                  break;
                }
            } else {
              bool row = red.axis == Axis::Row;
              int64_t first = row ? pb.rowOff[k] : pb.colOff[k];
              int64_t n = row ? shapes[k].rows() : shapes[k].cols();
              got.assign(pb.axisReduced[x].begin() + first,
                         pb.axisReduced[x].begin() + first + n);
            }
            expectNear<T>(got, wantReduced[k][r], tol,
                          "reduction " + std::to_string(r) + " of tensor " +
                              std::to_string(k));
            if (::testing::Test::HasFatalFailure())
              return;
          }
        }

        // The rule kernel.
        std::vector<std::vector<T>> curBefore = pb.cur;
        for (size_t i = 0; i < pb.next.size(); ++i)
          std::fill(pb.next[i].begin(), pb.next[i].end(), sentinelT<T>());
        if (kernels.reducedRule)
          kernels.reducedRule(pb.ptrs.data(), pb.lengths.data(),
                              pb.strides.data(), 0, C, cs.hypers.data(), t,
                              nullptr, pb.reduced.data(), pb.rng.data());
        else
          kernels.rule(pb.ptrs.data(), pb.lengths.data(), pb.strides.data(), 0,
                       C, cs.hypers.data(), t, nullptr, pb.rng.data());
        for (size_t k = 0; k < shapes.size(); ++k) {
          std::vector<double> got(pb.p.begin() + pb.coordOff[k],
                                  pb.p.begin() + pb.coordOff[k] +
                                      shapes[k].size());
          expectNear<T>(got, wantP[k], tol, "p of tensor " + std::to_string(k));
          if (::testing::Test::HasFatalFailure())
            return;
        }
        for (size_t i = 0; i < pb.cur.size(); ++i) {
          std::string what = "state " + std::to_string(i);
          if (cs.stateAxes[i] == Axis::None) {
            std::vector<double> got(pb.cur[i].begin(), pb.cur[i].end());
            expectNear<T>(got, newStates[i], tol, what);
          } else {
            for (size_t j = 0; j < pb.cur[i].size(); ++j) {
              ASSERT_TRUE(sameBitsT(pb.cur[i][j], curBefore[i][j]))
                  << "the kernel wrote the current buffer of " << what << " at "
                  << j;
              ASSERT_FALSE(sameBitsT(pb.next[i][j], sentinelT<T>()))
                  << "the kernel did not write the next buffer of " << what
                  << " at " << j;
            }
            std::vector<double> got(pb.next[i].begin(), pb.next[i].end());
            expectNear<T>(got, newStates[i], tol, what);
            // As the runtime after a completed step.
            pb.cur[i] = pb.next[i];
          }
          if (::testing::Test::HasFatalFailure())
            return;
        }
      }
    }
  }
}

/// SM3-II exactly as the literature's `sm3` (p -= lr select(nu > 0,
/// g / sqrt(nu), 0)) over 25 steps against a reference that runs on its own
/// (no resynchronisation: drift would show), gradients of scales 1e-3 to
/// 1e2 with zeros, in f64 within 1e-12 of the largest |p|.
TEST(AxisKernelsDrift, SM3TwentyFiveSteps) {
  const Case sm3 = {
      "sm3",
      R"(
optim.rule @sm3(%p: $T, %g: $T, %t: i64) hyper(%lr: $T = 0.1) state(%r: $T = 0.0 row, %c: $T = 0.0 col) {
  %0 = arith.minimumf %r, %c : $T
  %1 = arith.mulf %g, %g : $T
  %2 = arith.addf %0, %1 : $T
  %3 = optim.tensor_reduce max %2 row : $T
  %4 = optim.tensor_reduce max %2 col : $T
  %cst = arith.constant 0.000000e+00 : $T
  %5 = arith.cmpf ogt, %2, %cst : $T
  %6 = math.sqrt %2 : $T
  %7 = arith.divf %g, %6 : $T
  %8 = arith.select %5, %7, %cst : $T
  %9 = arith.mulf %lr, %8 : $T
  %10 = arith.subf %p, %9 : $T
  optim.yield %10, %3, %4 : $T, $T, $T
}
)",
      {Axis::Row, Axis::Col},
      {0.0, 0.0},
      {{ReductionKind::Max, Axis::Row, 0}, {ReductionKind::Max, Axis::Col, 0}},
      "max@row,max@col",
      {0.05},
      nullptr};
  Kernels kernels = compile(sm3, "f64", 16);
  ASSERT_TRUE(kernels.reduce && kernels.reducedRule);
  for (Shape shape : {Shape{1, 3, 5}, Shape{2, 3, 4}, Shape{1, 4, 1500}}) {
    SCOPED_TRACE(testing::Message() << "[" << shape.B << ", " << shape.R << ", "
                                    << shape.C << "]");
    Problem<double> pb(sm3, {shape}, 1000);
    std::mt19937_64 gen(424242u);
    std::normal_distribution<double> normal;
    for (double &v : pb.p)
      v = double(float(normal(gen)));
    std::vector<double> p(pb.p.begin(), pb.p.end());
    std::vector<double> r(shape.rows(), 0.0), c(shape.cols(), 0.0);
    const int64_t C = int64_t(pb.chunks.size());
    for (int64_t t = 1; t <= 25; ++t) {
      std::mt19937_64 gg(1000003u * uint64_t(t));
      for (int64_t i = 0; i < shape.size(); ++i) {
        double scale = std::pow(10.0, double(int64_t((i * 37) % 6)) - 3.0);
        pb.g[i] = double(float(normal(gg) * scale));
        if ((i * 7 + t) % 11 == 0)
          pb.g[i] = 0;
      }
      std::vector<double> rowMax(r.size(), -INFINITY),
          colMax(c.size(), -INFINITY);
      for (int64_t k = 0; k < shape.size(); ++k) {
        int64_t i = shape.rowOf(k), j = shape.colOf(k);
        double nu = std::min(r[i], c[j]) + pb.g[k] * pb.g[k];
        rowMax[i] = std::max(rowMax[i], nu);
        colMax[j] = std::max(colMax[j], nu);
        if (nu > 0)
          p[k] -= 0.05 * pb.g[k] / std::sqrt(nu);
      }
      r = rowMax;
      c = colMax;
      pb.buildTable();
      kernels.reduce(pb.ptrs.data(), pb.lengths.data(), pb.strides.data(), 0, C,
                     sm3.hypers.data(), t, nullptr, pb.partials.data(), nullptr,
                     0, pb.rng.data());
      pb.combine(0);
      kernels.reducedRule(pb.ptrs.data(), pb.lengths.data(), pb.strides.data(),
                          0, C, sm3.hypers.data(), t, nullptr,
                          pb.reduced.data(), pb.rng.data());
      pb.cur[0] = pb.next[0];
      pb.cur[1] = pb.next[1];
    }
    double scale = 0;
    for (double x : p)
      scale = std::max(scale, std::fabs(x));
    for (int64_t k = 0; k < shape.size(); ++k)
      ASSERT_LE(std::fabs(pb.p[k] - p[k]), 1e-12 * scale) << "p at " << k;
    for (int64_t i = 0; i < shape.rows(); ++i)
      ASSERT_EQ(pb.cur[0][i], r[i]) << "r at " << i;
    for (int64_t j = 0; j < shape.cols(); ++j)
      ASSERT_EQ(pb.cur[1][j], c[j]) << "c at " << j;
  }
}

class AxisKernels : public ::testing::TestWithParam<const Case *> {};

TEST_P(AxisKernels, F32Width16) { runCase<float>(*GetParam(), 16); }
TEST_P(AxisKernels, F64Width16) { runCase<double>(*GetParam(), 16); }
TEST_P(AxisKernels, F32Width4) { runCase<float>(*GetParam(), 4); }
TEST_P(AxisKernels, F64Width4) { runCase<double>(*GetParam(), 4); }

INSTANTIATE_TEST_SUITE_P(Rules, AxisKernels,
                         ::testing::Values(&kFactored, &kCovers, &kCounters),
                         [](const testing::TestParamInfo<const Case *> &i) {
                           return std::string(i.param->name);
                         });

} // namespace
