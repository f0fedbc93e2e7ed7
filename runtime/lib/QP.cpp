//===- QP.cpp - batched interior-point QP solver and its KKT backward -----===//
//
// One problem per batch element, each solved independently by one thread
// (problems are split into contiguous ranges; nothing is shared between
// them), so the results do not depend on the number of threads. Gradients
// of shared operands are reduced over the batch afterwards, row by row, in
// batch order, for the same reason. docs/qp.md derives the formulas.
//
//===----------------------------------------------------------------------===//

#include "optim/QP.h"
#include "optim/KernelABI.h"
#include "optim/QPScale.h"

#include "DenseKernels.h"
#include "ThreadPool.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>
#include <type_traits>

namespace optim {

const char *qpStatusName(QPStatus status) {
  switch (status) {
  case QPStatus::Solved:
    return "solved";
  case QPStatus::IterationLimit:
    return "iteration limit";
  case QPStatus::PrimalInfeasible:
    return "primal infeasible";
  case QPStatus::DualInfeasible:
    return "dual infeasible (unbounded)";
  case QPStatus::NumericalError:
    return "numerical error";
  }
  return "unknown";
}

namespace {

enum Operand { OpQ, Opq, OpA, Opb, OpG, Oph, NumOperands };
const char *const operandNames[NumOperands] = {"Q", "q", "A", "b", "G", "h"};

/// A validated problem: dimensions, and for each operand its data (null if
/// absent), its per-element size and whether it is batched.
struct Layout {
  int64_t batch = 0, n = 0, m = 0, p = 0;
  const void *data[NumOperands] = {};
  int64_t size[NumOperands] = {};
  bool batched[NumOperands] = {};
  DType dtype = DType::F64;
};

std::string shapeString(const std::vector<int64_t> &shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

[[noreturn]] void fail(const std::string &message) {
  throw Error("qp: " + message);
}

/// Whether all of x is finite: a branch-free pass (it vectorizes) over the
/// exponent bits, which are all ones exactly for infinities and NaNs.
template <class T> bool allFiniteBits(const T *x, int64_t count) {
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  const Bits expMask =
      sizeof(T) == 8 ? Bits(0x7ff0000000000000ull) : Bits(0x7f800000u);
  Bits bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    Bits b;
    std::memcpy(&b, x + i, sizeof b);
    bad |= Bits((b & expMask) == expMask);
  }
  return bad == 0;
}

template <class T>
void checkFinite(const T *data, int64_t count, const char *name,
                 int64_t perElement, bool batched) {
  if (allFiniteBits(data, count))
    return;
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(data[i])) {
      std::ostringstream os;
      os << name << " has a non-finite value (" << data[i] << ") at ";
      if (batched)
        os << "batch element " << i / perElement << ", ";
      os << "flat index " << i % perElement;
      fail(os.str());
    }
}

/// A caller's buffer: its bytes, for the overlap checks.
struct Span {
  const char *begin, *end;
  const char *name;
};

/// Refuses a buffer not aligned to its element, and two buffers of `spans`
/// that overlap where one of them is written (`writes` first in `spans`):
/// the solver would read what it had written, or write one result over
/// another (dq over q, measured).
void checkBuffers(const std::vector<Span> &spans, size_t writes, size_t element,
                  const char *what) {
  for (const Span &s : spans)
    if (reinterpret_cast<uintptr_t>(s.begin) % element)
      fail(std::string(what) + ": " + s.name + " is not aligned to its " +
           std::to_string(element) + "-byte elements");
  for (size_t i = 0; i < writes; ++i)
    for (size_t j = 0; j < spans.size(); ++j)
      if (j != i && spans[i].begin < spans[j].end &&
          spans[j].begin < spans[i].end)
        fail(std::string(what) + ": " + spans[i].name + " overlaps " +
             spans[j].name + " (each output needs its own memory)");
}

Layout validate(const QPProblem &pb) {
  Layout L;
  if (pb.dtype != DType::F32 && pb.dtype != DType::F64)
    fail("dtype must be F32 or F64, got " + std::to_string(int(pb.dtype)));
  L.dtype = pb.dtype;
  const QPOperand *ops[NumOperands] = {&pb.Q, &pb.q, &pb.A,
                                       &pb.b, &pb.G, &pb.h};
  for (int i = 0; i < NumOperands; ++i)
    if ((ops[i]->data == nullptr) != ops[i]->shape.empty())
      fail(std::string("operand ") + operandNames[i] +
           (ops[i]->data ? " has data but no shape"
                         : " has a shape but no data"));
  if (!pb.q.data)
    fail("q is required");
  if (!pb.A.data != !pb.b.data)
    fail("A and b must be given together");
  if (!pb.G.data != !pb.h.data)
    fail("G and h must be given together");
  if (pb.batch < 0)
    fail("the batch size is negative");

  // Vectors: rank 1 shared or rank 2 batched; matrices: rank 2 or 3.
  auto rankOf = [](int i) {
    return (i == OpQ || i == OpA || i == OpG) ? 2 : 1;
  };
  int64_t batch = -1;
  for (int i = 0; i < NumOperands; ++i) {
    if (!ops[i]->data)
      continue;
    const auto &s = ops[i]->shape;
    int r = rankOf(i);
    if ((int)s.size() != r && (int)s.size() != r + 1)
      fail(std::string(operandNames[i]) + " has shape " + shapeString(s) +
           "; expected rank " + std::to_string(r) + " (shared) or " +
           std::to_string(r + 1) + " (batched)");
    for (int64_t d : s)
      if (d < 0)
        fail(std::string(operandNames[i]) +
             " has a negative dimension: " + shapeString(s));
    L.batched[i] = (int)s.size() == r + 1;
    if (L.batched[i]) {
      if (batch >= 0 && s[0] != batch)
        fail(std::string(operandNames[i]) + " has batch size " +
             std::to_string(s[0]) + " but an earlier operand has " +
             std::to_string(batch));
      batch = s[0];
    }
  }
  if (pb.batch > 0 && batch >= 0 && pb.batch != batch)
    fail("the batch size " + std::to_string(pb.batch) +
         " disagrees with the operands' " + std::to_string(batch));
  if (batch < 0) // nothing batched: pb.batch copies, one by default
    batch = pb.batch > 0 ? pb.batch : 1;
  if (batch == 0)
    fail("the batch is empty (batch size 0)");
  L.batch = batch;

  auto dims = [&](int i) {
    const auto &s = ops[i]->shape;
    return std::vector<int64_t>(s.begin() + (L.batched[i] ? 1 : 0), s.end());
  };
  std::vector<int64_t> qd = dims(Opq);
  L.n = qd[0];
  if (L.n == 0)
    fail("q has no variables (n = 0)");
  auto expect = [&](int i, std::vector<int64_t> want) {
    std::vector<int64_t> got = dims(i);
    if (got != want)
      fail(std::string(operandNames[i]) + " has shape " +
           shapeString(ops[i]->shape) + "; expected " + shapeString(want) +
           " or with a leading batch dimension, for n = " +
           std::to_string(L.n) + " (from q)");
  };
  if (pb.Q.data)
    expect(OpQ, {L.n, L.n});
  if (pb.b.data) {
    L.m = dims(Opb)[0];
    expect(OpA, {L.m, L.n});
  }
  if (pb.h.data) {
    L.p = dims(Oph)[0];
    expect(OpG, {L.p, L.n});
  }
  const int64_t sizes[NumOperands] = {L.n * L.n, L.n,       L.m * L.n,
                                      L.m,       L.p * L.n, L.p};
  for (int i = 0; i < NumOperands; ++i) {
    L.data[i] = ops[i]->data;
    L.size[i] = ops[i]->data ? sizes[i] : 0;
  }
  {
    std::vector<Span> spans;
    const size_t element = L.dtype == DType::F64 ? 8 : 4;
    for (int i = 0; i < NumOperands; ++i)
      if (L.data[i]) {
        const char *at = static_cast<const char *>(L.data[i]);
        spans.push_back({at, at, operandNames[i]});
      }
    checkBuffers(spans, 0, element, "qp");
  }
  for (int i = 0; i < NumOperands; ++i) {
    if (!L.data[i])
      continue;
    int64_t count = L.size[i] * (L.batched[i] ? L.batch : 1);
    if (L.dtype == DType::F64)
      checkFinite(static_cast<const double *>(L.data[i]), count,
                  operandNames[i], L.size[i], L.batched[i]);
    else
      checkFinite(static_cast<const float *>(L.data[i]), count, operandNames[i],
                  L.size[i], L.batched[i]);
  }
  return L;
}

//===----------------------------------------------------------------------===//
// Dense kernels (row-major, float64: DenseKernels.h)
//===----------------------------------------------------------------------===//

inline double dot(const double *x, const double *y, int64_t n) {
  return dense::dot(n, x, y);
}

template <class T> T normInf(const T *x, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i)
    s = std::max(s, std::abs(x[i]));
  return s;
}

/// y = M x for M of shape [r, c].
inline void gemv(const double *M, const double *x, double *y, int64_t r,
                 int64_t c) {
  dense::gemv(r, c, M, c, x, y);
}

/// y += M^T x for M of shape [r, c].
inline void gemvTAdd(const double *M, const double *x, double *y, int64_t r,
                     int64_t c) {
  dense::gemvTAdd(r, c, M, c, x, y);
}

// Solver constants per arithmetic type (only float64 today: float32 problems
// are solved in float64 arithmetic).
template <class T> struct Consts;
template <> struct Consts<double> {
  static constexpr double tol = 1e-8;
  static constexpr double reg = 1e-10;    // relative static regularization
  static constexpr double certRes = 1e-9; // certificate residual, relative
  static constexpr double certObj = 1e-5; // certificate objective, relative
  static constexpr int refine = 4;
};

//===----------------------------------------------------------------------===//
// One problem
//===----------------------------------------------------------------------===//

/// The data of one batch element.
template <class T> struct Prob {
  int64_t n, m, p;
  const T *Q, *q, *A, *b, *G, *h; // Q may be null (LP)
};

/// Scratch of one thread, sized for the batch's dimensions.
template <class T> struct Scratch {
  std::vector<T> Qs, rd, re, ri, D, f, g, x, y, rx, ry, cx, cy, tn, tp, dz, dnu,
      dlam, ds, dlamA, dsA, rc, C, pz, py, pl, ps, bz, bnu, blam, bs, H, DG, ts,
      atn, gtl, gz, Wt, M0, S, sp;
  // The problem's data scaled (QPScale.h): q, b, h, A, G; Qs holds Q's.
  std::vector<T> qh, bh, hh, Ah, Gh;
  // Each row's equilibration factor rho (rowScale): G's row i and h_i are
  // also divided by it.
  std::vector<T> rs, rsA; // and A's rows and b's
  // The variables' factors e (columnScales): z = e z^.
  std::vector<T> cs;

  // G's structure when each of its rows has at most one nonzero (G = -I,
  // bounds): the column of each row's nonzero, -1 for an empty row.
  std::vector<int64_t> gCol;
  void resize(int64_t n, int64_t m, int64_t p) {
    Qs.assign(n * n, 0);
    for (auto *v : {&rd, &f, &x, &rx, &cx, &tn, &dz, &pz, &bz, &ts, &atn, &gtl})
      v->assign(n, 0);
    // Sized m + p: the active-set system has up to m + p equalities.
    for (auto *v : {&g, &y, &ry, &cy, &py})
      v->assign(m + p, 0);
    for (auto *v : {&re, &dnu, &bnu})
      v->assign(m, 0);
    for (auto *v : {&ri, &D, &tp, &dlam, &ds, &dlamA, &dsA, &rc, &pl, &ps,
                    &blam, &bs, &gz})
      v->assign(p, 0);
    H.assign(p ? n * n : 0, 0);
    DG.assign(p * n, 0);
    const bool lowRank = m == 0 && p > 0 && 2 * p <= n;
    Wt.assign(lowRank ? n * p : 0, 0);
    M0.assign(lowRank ? p * p : 0, 0);
    S.assign(lowRank ? p * p : 0, 0);
    sp.assign(p, 0);
    gCol.assign(p, -1);
    qh.assign(n, 0);
    bh.assign(m, 0);
    hh.assign(p, 0);
    Ah.assign(m * n, 0);
    Gh.assign(p * n, 0);
    rs.assign(p, 1);
    rsA.assign(m, 1);
    cs.assign(n, 1);
  }
};

/// Max row sum of |M| for M [r, c] (the infinity norm), and of |M^T|.
template <class T>
void matNorms(const T *M, int64_t r, int64_t c, T &rows, T &cols, T *colAcc) {
  rows = 0;
  std::fill(colAcc, colAcc + c, T(0));
  for (int64_t i = 0; i < r; ++i) {
    T s = 0;
    for (int64_t j = 0; j < c; ++j) {
      s += std::abs(M[i * c + j]);
      colAcc[j] += std::abs(M[i * c + j]);
    }
    rows = std::max(rows, s);
  }
  cols = normInf(colAcc, c);
}

/// The reduced KKT system of one problem for a diagonal D = lam / s:
///
///   [ H  A^T ] [x]   [f]      H = Q + G^T D G
///   [ A   0  ] [y] = [g]
///
/// factored as H + rho I = U^T U and the Schur complement
/// A (H + rho I)^{-1} A^T + delta I = US^T US (both positive definite for
/// any PSD H and any A), then solved with iterative refinement against the
/// unregularized system. U, Yt = U^{-T} A^T (stored [n, m]) and US live in
/// `fac` so that the backward pass can reuse them. Symmetric matrices and
/// the factors are upper triangles, row-major (DenseKernels.h).
template <class T> struct KKT {
  const Prob<T> &P;
  const T *Qs; // symmetric part of Q, or null
  const T *D;  // [p]
  T *L, *Y, *LS;
  // H as formed (upper triangle), for the refinement's residuals: Qs when
  // p = 0 (null for an LP), else the scratch `Hbuf` that factor() fills.
  const T *Hf = nullptr;
  T *Hbuf = nullptr, *DG = nullptr; // scratch [n, n] and [p, n] when p > 0
  T *sp = nullptr;                  // scratch [p]
  const int64_t *gCol = nullptr;    // G's structure (Scratch::gCol) or null
  // Low-rank mode, for few inequalities (2p <= n), no equalities and a
  // given Q: A = Q + rho I is factored once per problem (U in L), with
  // Wt = U^{-T} G^T [n, p] and M0 = Wt^T Wt = G A^{-1} G^T [p, p]; per
  // iteration only S = D^{-1} + M0 [p, p] is factored, and
  // (A + G^T D G)^{-1} = A^{-1} - A^{-1} G^T S^{-1} G A^{-1} (Woodbury):
  // p^3/6 instead of p n^2/2 + n^3/6 multiply-adds per iteration. Refinement
  // against Q + G^T D G (not formed) keeps the accuracy; a problem on which
  // it does not (A badly conditioned) goes back to the dense mode.
  bool lowRank = false, lowRankReady = false;
  // L already holds the factor of Q + rho I (the low-rank mode's, reused by
  // the polish, whose H is Q): factor() does only the Schur complement.
  bool haveL = false;
  T *Wt = nullptr, *M0 = nullptr, *S = nullptr; // scratch [n p], [p p], [p p]
  T normQ = 0, normGt = 0; // ||Q||_inf, ||G^T||_inf (low-rank mode)
  T rho = 0, delta = 0;
  T rhoBase = 0; // static regularization: reg * max(1, max_i Q_ii)

  KKT(const Prob<T> &P, const T *Qs, const T *D, T *fac)
      : P(P), Qs(Qs), D(D), L(fac), Y(fac + P.n * P.n),
        LS(fac + P.n * P.n + P.m * P.n), Hf(P.p ? nullptr : Qs) {}

  static int64_t factorSize(int64_t n, int64_t m) {
    return n * n + m * n + m * m;
  }

  /// H = Q + G^T D G into Hbuf (upper triangle).
  void formH() {
    const int64_t n = P.n, p = P.p;
    for (int64_t i = 0; i < n; ++i) {
      T *row = Hbuf + i * n;
      if (Qs)
        std::copy(Qs + i * n + i, Qs + (i + 1) * n, row + i);
      else
        std::fill(row + i, row + n, T(0));
    }
    if (gCol) {
      // One nonzero per row of G: G^T D G is diagonal.
      for (int64_t k = 0; k < p; ++k)
        if (gCol[k] >= 0) {
          T g = P.G[k * n + gCol[k]];
          Hbuf[gCol[k] * (n + 1)] += D[k] * g * g;
        }
      return;
    }
    for (int64_t k = 0; k < p; ++k) {
      const T *gk = P.G + k * n;
      T *dg = DG + k * n;
      const T dk = D[k];
      for (int64_t j = 0; j < n; ++j)
        dg[j] = dk * gk[j];
    }
    dense::gemmTN(n, n, p, DG, n, P.G, n, Hbuf, n, T(1), /*upper=*/true);
  }

  /// Forms H + rho I and factors it; false if even the largest
  /// regularization fails (a non-finite D, say).
  bool factor() {
    const int64_t n = P.n, m = P.m, p = P.p;
    if (lowRank) {
      if (factorLowRank())
        return true;
      lowRank = false; // S or A did not factor: the dense mode from now on
    }
    if (p) {
      formH();
      Hf = Hbuf;
    }
    T maxDiag = 0;
    for (int64_t i = 0; Hf && i < n; ++i)
      maxDiag = std::max(maxDiag, std::abs(Hf[i * n + i]));
    if (!std::isfinite(maxDiag))
      return false;
    // Relative to Q, not to H: G^T D G grows without bound near the
    // solution, and a rho that grows with it swamps the small curvatures of
    // Q, which refinement then cannot recover.
    if (!haveL)
      rho = rhoBase;
    for (int attempt = 0; !haveL; ++attempt) {
      for (int64_t i = 0; i < n; ++i) {
        T *row = L + i * n;
        if (Hf)
          std::copy(Hf + i * n + i, Hf + (i + 1) * n, row + i);
        else
          std::fill(row + i, row + n, T(0));
        row[i] += rho;
      }
      T minPivot = std::numeric_limits<T>::epsilon() * rho;
      if (dense::choleskyUpper(n, L, n, minPivot))
        break;
      rho *= 100;
      if (attempt == 9)
        return false;
    }
    if (m == 0)
      return true;
    // Yt = U^{-T} A^T, then LS = Yt^T Yt + delta I.
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < m; ++k)
        Y[j * m + k] = P.A[k * n + j];
    dense::solveUpperTMulti(n, m, L, n, Y, m);
    delta = Consts<T>::reg;
    for (int attempt = 0; attempt < 10; ++attempt) {
      if (attempt) // larger delta
        delta *= 100;
      for (int64_t i = 0; i < m; ++i)
        std::fill(LS + i * m + i, LS + (i + 1) * m, T(0));
      dense::gemmTN(m, m, n, Y, m, Y, m, LS, m, T(1), /*upper=*/true);
      for (int64_t i = 0; i < m; ++i)
        LS[i * m + i] += delta;
      if (dense::choleskyUpper(m, LS, m,
                               std::numeric_limits<T>::epsilon() * delta))
        return true;
    }
    return false;
  }

  /// The low-rank mode's factorization (see lowRank); false if A or S does
  /// not factor.
  bool factorLowRank() {
    const int64_t n = P.n, p = P.p;
    if (!lowRankReady) {
      rho = rhoBase;
      for (int attempt = 0;; ++attempt) {
        for (int64_t i = 0; i < n; ++i) {
          std::copy(Qs + i * n + i, Qs + (i + 1) * n, L + i * n + i);
          L[i * n + i] += rho;
        }
        if (dense::choleskyUpper(n, L, n,
                                 std::numeric_limits<T>::epsilon() * rho))
          break;
        rho *= 100;
        if (attempt == 9)
          return false;
      }
      for (int64_t j = 0; j < n; ++j)
        for (int64_t k = 0; k < p; ++k)
          Wt[j * p + k] = P.G[k * n + j];
      dense::solveUpperTMulti(n, p, L, n, Wt, p);
      for (int64_t i = 0; i < p; ++i)
        std::fill(M0 + i * p + i, M0 + (i + 1) * p, T(0));
      dense::gemmTN(p, p, n, Wt, p, Wt, p, M0, p, T(1), /*upper=*/true);
      T unused;
      matNorms(Qs, n, n, normQ, unused, DG);
      matNorms(P.G, p, n, unused, normGt, DG);
      lowRankReady = true;
    }
    for (int64_t i = 0; i < p; ++i) {
      const T inv = T(1) / D[i];
      if (!(D[i] > 0) || !std::isfinite(inv))
        return false;
      std::copy(M0 + i * p + i, M0 + (i + 1) * p, S + i * p + i);
      S[i * p + i] += inv;
    }
    return dense::choleskyUpper(p, S, p, T(0));
  }

  /// The regularized solve (x, y) = K_reg^{-1} (f, g). t: scratch [n].
  void solveReg(const T *f, const T *g, T *x, T *y, T *t) const {
    const int64_t n = P.n, m = P.m;
    if (lowRank) {
      const int64_t p = P.p;
      std::copy(f, f + n, x);
      dense::solveUpperT(n, L, n, x); // u = U^{-T} f
      std::fill(sp, sp + p, T(0));
      dense::gemvTAdd(n, p, Wt, p, x, sp); // Wt^T u
      dense::solveUpperT(p, S, p, sp);
      dense::solveUpper(p, S, p, sp);
      dense::gemv(n, p, Wt, p, sp, t); // u - Wt S^{-1} Wt^T u
      for (int64_t j = 0; j < n; ++j)
        x[j] -= t[j];
      dense::solveUpper(n, L, n, x);
      return;
    }
    std::copy(f, f + n, x);
    dense::solveUpperT(n, L, n, x); // u = U^{-T} f
    if (m) {
      for (int64_t k = 0; k < m; ++k) // y = Yt^T u - g
        y[k] = -g[k];
      dense::gemvTAdd(n, m, Y, m, x, y);
      dense::solveUpperT(m, LS, m, y);
      dense::solveUpper(m, LS, m, y);
      dense::gemv(n, m, Y, m, y, t); // u - Yt y
      for (int64_t j = 0; j < n; ++j)
        x[j] -= t[j];
    }
    dense::solveUpper(n, L, n, x);
  }

  /// (rx, ry) = (f, g) - K (x, y) with the unregularized K.
  void residual(const T *f, const T *g, const T *x, const T *y, T *rx,
                T *ry) const {
    const int64_t n = P.n, m = P.m;
    if (lowRank) { // Q x + G^T D G x, H not formed
      gemv(Qs, x, rx, n, n);
      gemv(P.G, x, sp, P.p, n);
      for (int64_t k = 0; k < P.p; ++k)
        sp[k] *= D[k];
      gemvTAdd(P.G, sp, rx, P.p, n);
    } else if (Hf) {
      dense::symvUpper(n, Hf, n, x, rx);
    } else {
      std::fill(rx, rx + n, T(0));
    }
    if (m)
      gemvTAdd(P.A, y, rx, m, n);
    for (int64_t j = 0; j < n; ++j)
      rx[j] = f[j] - rx[j];
    if (m) {
      gemv(P.A, x, ry, m, n);
      for (int64_t k = 0; k < m; ++k)
        ry[k] = g[k] - ry[k];
    }
  }

  /// Solves K (x, y) = (f, g) with iterative refinement: while the residual
  /// decreases, or, for the interior-point directions (`direction`), only
  /// while it decreases by 4x and is above 1e-13 of the right-hand side:
  /// a direction needs far less accuracy than the tolerance, and further
  /// steps at the level of rounding only cost time.
  void solve(const T *f, const T *g, T *x, T *y, Scratch<T> &W,
             bool direction = false) {
    const int64_t n = P.n, m = P.m;
    solveReg(f, g, x, y, W.ts.data());
    const T floor =
        direction ? T(1e-13) * std::max(normInf(f, n), normInf(g, m)) : T(0);
    const T shrink = direction ? T(0.25) : T(1);
    T last = std::numeric_limits<T>::infinity();
    T r = std::numeric_limits<T>::infinity(); // of the current (x, y)
    for (int it = 0;; ++it) {
      residual(f, g, x, y, W.rx.data(), W.ry.data());
      r = std::max(normInf(W.rx.data(), n), normInf(W.ry.data(), m));
      if (it == Consts<T>::refine || !(r < last * shrink) || r <= floor)
        break;
      last = r;
      solveReg(W.rx.data(), W.ry.data(), W.cx.data(), W.cy.data(), W.ts.data());
      for (int64_t j = 0; j < n; ++j)
        x[j] += W.cx[j];
      for (int64_t k = 0; k < m; ++k)
        y[k] += W.cy[k];
    }
    // The low-rank mode's solution must be about as good as the dense
    // mode's: a residual near the rounding of its terms, bounded by
    // ||f|| + ||Q|| ||x|| + ||G^T|| ||D G x|| (D G x from the last
    // residual). If it is not (A = Q + rho I badly conditioned, say), this
    // problem goes on in the dense mode.
    if (lowRank && !(r <= T(1e-9) * (normInf(f, n) + normQ * normInf(x, n) +
                                     normGt * normInf(sp, P.p)))) {
      lowRank = false;
      if (factor())
        solve(f, g, x, y, W, direction);
    }
  }
};

template <class T> bool allFinite(const T *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      return false;
  return true;
}

/// The floor of an inequality's residual tests: its row's largest |entry|
/// (1 for a zero row), so that a row of small entries is held to its own
/// scale (with 1, the block's largest entry, rows scaled 1e-8 passed with
/// their constraint missed).
template <class T> T rowFloor(const T *row, int64_t n) {
  T m = 0;
  for (int64_t j = 0; j < n; ++j)
    m = std::max(m, std::abs(row[j]));
  return m > 0 ? m : T(1);
}

/// Residuals of an iterate: rd = Q z + q + A^T nu + G^T lam, re = A z - b,
/// ri = G z + s - h (into W; also A^T nu, G^T lam and G z, which the
/// infeasibility tests reuse), and the merit: the largest of the relative
/// residuals and the relative gap, which the tolerance bounds.
template <class T> struct Res {
  T nQz = 0, nAz = 0, zQz = 0, gap = 0, pobj = 0, merit = 0;
  T raw = 0; // max of the absolute residuals and |gap|
  bool finite = true;
};

template <class T>
Res<T> residuals(const Prob<T> &P, const T *Qs, const T *z, const T *nu,
                 const T *lam, const T *s, Scratch<T> &W) {
  const int64_t n = P.n, m = P.m, p = P.p;
  Res<T> r;
  T nAtnu = 0, nGtlam = 0;
  // The inequalities' residuals relative to their own row's terms: one
  // large entry of h (1e20 written for "no bound") must not loosen the test
  // of every other constraint (measured: z1 >= -0.5 beside z1 <= 1e20,
  // "solved" 0.5 outside it). The equalities' stay relative to the largest
  // (redundant rows of float32 data are inconsistent by the rounding of
  // the largest entries, which a row's own scale would not allow).
  T relRi = 0;
  T *rd = W.rd.data(), *re = W.re.data(), *ri = W.ri.data();
  if (Qs)
    gemv(Qs, z, rd, n, n);
  else
    std::fill(rd, rd + n, T(0));
  r.nQz = normInf(rd, n);
  const T zQz = r.zQz = dot(z, rd, n);
  if (m) {
    std::fill(W.atn.begin(), W.atn.end(), T(0));
    gemvTAdd(P.A, nu, W.atn.data(), m, n);
    nAtnu = normInf(W.atn.data(), n);
    for (int64_t j = 0; j < n; ++j)
      rd[j] += W.atn[j];
    gemv(P.A, z, re, m, n);
    r.nAz = normInf(re, m);
    for (int64_t k = 0; k < m; ++k)
      re[k] -= P.b[k];
  }
  if (p) {
    std::fill(W.gtl.begin(), W.gtl.end(), T(0));
    gemvTAdd(P.G, lam, W.gtl.data(), p, n);
    nGtlam = normInf(W.gtl.data(), n);
    for (int64_t j = 0; j < n; ++j)
      rd[j] += W.gtl[j];
    gemv(P.G, z, W.gz.data(), p, n);
    for (int64_t k = 0; k < p; ++k) {
      ri[k] = W.gz[k] + s[k] - P.h[k];
      relRi = std::max(relRi, std::abs(ri[k]) / (rowFloor(P.G + k * n, n) +
                                                 std::max({std::abs(P.h[k]),
                                                           std::abs(W.gz[k]),
                                                           std::abs(s[k])})));
    }
  }
  for (int64_t j = 0; j < n; ++j)
    rd[j] += P.q[j];
  r.gap = p ? dot(s, lam, p) : T(0);
  r.pobj = zQz / 2 + dot(P.q, z, n);
  r.finite = allFinite(z, n) && allFinite(nu, m) && allFinite(lam, p) &&
             allFinite(s, p) && std::isfinite(r.gap) && std::isfinite(r.pobj);
  const T nq = normInf(P.q, n), nb = normInf(P.b, m);
  r.merit =
      std::max({normInf(rd, n) / (1 + std::max({nq, r.nQz, nAtnu, nGtlam})),
                normInf(re, m) / (1 + std::max(nb, r.nAz)), relRi,
                std::abs(r.gap) / std::max(T(1), std::abs(r.pobj))});
  r.raw = std::max(
      {normInf(rd, n), normInf(re, m), normInf(ri, p), std::abs(r.gap)});
  if (!r.finite)
    r.merit = r.raw = std::numeric_limits<T>::infinity();
  return r;
}

struct Config {
  double tol;
  int64_t maxIter;
  /// The largest regularization of Q + rho I, relative to its base, that
  /// still counts Q as positive semidefinite (see the polish).
  double maxRho;
};

/// Qs = (Q + Q^T) / 2 times `scale` (a power of two: exact); returns the
/// largest |entry| of (Q + Q^T) / 2.
template <class T>
T symmetricPart(const T *Q, int64_t n, T scale, T *Qs) {
  T maxAbs = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const T v = (Q[i * n + j] + Q[j * n + i]) / 2;
      maxAbs = std::max(maxAbs, std::abs(v));
      Qs[i * n + j] = v * scale;
    }
  return maxAbs;
}

/// The equilibration factor of an inequality row, given in the caller's
/// units with the block's factor ig = 1/g: the power of two rho <= 1 that
/// takes the row's largest |entry| of G ig to [1, 2) (1 for a zero row, or
/// where h ig / rho would come near overflowing). The forward pass and the
/// backward pass compute it alike, bit for bit.
template <class T> T rowScale(const T *row, int64_t n, T h, T ig) {
  T m = 0;
  for (int64_t j = 0; j < n; ++j)
    m = std::max(m, std::abs(row[j] * ig));
  T rho = T(qpscale::pow2Floor(double(m)));
  if (!(rho > 0) ||
      !(std::abs(h * ig) / rho <= std::numeric_limits<T>::max() / 4))
    rho = 1;
  return rho;
}

/// The variables' factors e into W.cs (QPScale.h's columnStep): passes over
/// the columns of Qs (Q's symmetric part, or null: its diagonal), A and G,
/// each entry relative to its block's (Q's diagonal) or its row's (A's,
/// G's) largest after the factors so far. Returns whether any factor is not 1.
/// The block solver (QPBlock.h) computes the same expressions: maxima are exact
/// in any order, so its factors are these, bit for bit.
template <class T>
bool columnScales(const Prob<T> &P, const T *Qs, Scratch<T> &W) {
  const int64_t n = P.n;
  T *e = W.cs.data(), *nrm = W.tn.data();
  std::fill(e, e + n, T(1));
  // Entries of a row of M E relative to the row's largest, into nrm. A row
  // with one nonzero (a bound) is left out: relative to itself it is 1
  // whatever the variable's scale, and would hide Q's (measured: bounds on
  // variables scaled by 10^+-4 left them unscaled and "solved" 0.9 off).
  auto rows = [&](const T *M, int64_t count) {
    for (int64_t k = 0; k < count; ++k) {
      const T *row = M + k * n;
      T r = 0;
      int64_t nonzeros = 0;
      for (int64_t j = 0; j < n; ++j) {
        r = std::max(r, std::abs(row[j]) * e[j]);
        nonzeros += row[j] != T(0);
      }
      for (int64_t j = 0; nonzeros > 1 && j < n; ++j)
        nrm[j] = std::max(nrm[j], std::abs(row[j]) * e[j] / r);
    }
  };
  bool any = false;
  for (int pass = 0; pass < qpscale::kColumnPasses; ++pass) {
    std::fill(nrm, nrm + n, T(0));
    // Q's part: its diagonal, the scale of a positive semidefinite Q's
    // columns (|Q_ij| <= sqrt(Q_ii Q_jj)). Not the off-diagonal entries nor
    // negative ones: a diagonal entry of -1e-12 (indefinite within
    // rounding) scaled up to -1 would make the problem nonconvex.
    if (Qs) {
      T md = 0;
      for (int64_t j = 0; j < n; ++j)
        md = std::max(md, Qs[j * n + j] * e[j] * e[j]);
      for (int64_t j = 0; md > 0 && j < n; ++j)
        nrm[j] = std::max(nrm[j], Qs[j * n + j] * e[j] * e[j] / md);
    }
    rows(P.A, P.m);
    rows(P.G, P.p);
    bool moved = false;
    for (int64_t j = 0; j < n; ++j) {
      const T f =
          T(qpscale::columnStep(double(nrm[j]), double(e[j]), double(P.q[j])));
      e[j] *= f;
      moved |= f != T(1);
    }
    if (!moved)
      break;
    any = true;
  }
  // The size of the solution: the right-hand sides (q, b, h) as the
  // scaled problem will hold them, each over its block's or row's
  // power-of-two scale (QPScale.h's rhsScale).
  T mq = 0, rhs = 0;
  for (int64_t i = 0; Qs && i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      mq = std::max(mq, std::abs(Qs[i * n + j]) * e[i] * e[j]);
  if (mq > 0) {
    const T c = T(qpscale::pow2Floor(double(mq)));
    for (int64_t j = 0; j < n; ++j)
      rhs = std::max(rhs, std::abs(P.q[j]) * e[j] / c);
  }
  auto rowsRhs = [&](const T *M, const T *v, int64_t count) {
    for (int64_t k = 0; k < count; ++k) {
      T r = 0;
      for (int64_t j = 0; j < n; ++j)
        r = std::max(r, std::abs(M[k * n + j]) * e[j]);
      if (r > 0)
        rhs = std::max(rhs, std::abs(v[k]) / T(qpscale::pow2Floor(double(r))));
    }
  };
  rowsRhs(P.A, P.b, P.m);
  rowsRhs(P.G, P.h, P.p);
  const T sigma = T(qpscale::rhsScale(double(rhs)));
  for (int64_t j = 0; sigma != T(1) && j < n; ++j)
    e[j] *= sigma;
  return any || sigma != T(1);
}

/// P scaled as the solver solves it (QPScale.h, docs/qp.md "Scaling"):
/// the variables by E (W.cs), then Q's symmetric part / c into W.Qs (S.Q
/// points to it), q / c, A / a, b / a, G / g, h / g into W, and the rows
/// of A and G equilibrated. Returns (c, a, g) and whether E != I.
template <class T>
qpscale::Scales scaleProblem(const Prob<T> &P0, Scratch<T> &W, Prob<T> &S) {
  const int64_t n = P0.n, m = P0.m, p = P0.p;
  T maxQ = P0.Q ? symmetricPart(P0.Q, n, T(1), W.Qs.data()) : T(0);
  // Variables on very different scales (Q of condition 1e12 from the
  // scaling alone) pass the stopping test far from the solution: they are
  // scaled first, E Q E, E q, A E, G E, into W (exact: powers of two).
  Prob<T> P = P0;
  const bool cols = columnScales(P0, P0.Q ? W.Qs.data() : nullptr, W);
  if (cols) {
    const T *e = W.cs.data();
    maxQ = 0;
    for (int64_t i = 0; P0.Q && i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        T &v = W.Qs[i * n + j];
        v = v * e[i] * e[j];
        maxQ = std::max(maxQ, std::abs(v));
      }
    for (int64_t j = 0; j < n; ++j)
      W.qh[j] = P0.q[j] * e[j];
    for (int64_t k = 0; k < m; ++k)
      for (int64_t j = 0; j < n; ++j)
        W.Ah[k * n + j] = P0.A[k * n + j] * e[j];
    for (int64_t k = 0; k < p; ++k)
      for (int64_t j = 0; j < n; ++j)
        W.Gh[k * n + j] = P0.G[k * n + j] * e[j];
    P.q = W.qh.data();
    P.A = m ? W.Ah.data() : P0.A;
    P.G = p ? W.Gh.data() : P0.G;
  }
  qpscale::Scales sc = qpscale::scalesOf(
      maxQ, normInf(P.q, n), normInf(P.A, m * n), normInf(P.G, p * n));
  sc.columns = cols;
  const T ic = T(1) / T(sc.obj), ia = T(1) / T(sc.eq), ig = T(1) / T(sc.ineq);
  // A factor of 1 (data whose largest entry is in [1, 2)) leaves the data
  // as it is: no copy. (x may be out's data, scaled by E: in place.)
  auto scale = [](const T *x, int64_t count, T f, std::vector<T> &out) {
    if (f == T(1) || !count)
      return x;
    for (int64_t i = 0; i < count; ++i)
      out[i] = x[i] * f;
    return static_cast<const T *>(out.data());
  };
  if (P.Q)
    for (int64_t i = 0; i < n * n; ++i)
      W.Qs[i] *= ic;
  S = Prob<T>{n,
              m,
              p,
              P.Q ? W.Qs.data() : nullptr,
              scale(P.q, n, ic, W.qh),
              scale(P.A, m * n, ia, W.Ah),
              scale(P.b, m, ia, W.bh),
              scale(P.G, p * n, ig, W.Gh),
              scale(P.h, p, ig, W.hh)};
  // Rows of G (and h) equilibrated too: the interior point's start (a
  // least-squares solve weighted by G's rows, then shifts of s and lam to
  // 1) is not invariant under row scaling, and a row far below the largest
  // is below the polish's regularization (measured with rows scaled 1e-4 to
  // 1e4: 69 of 100 problems stalled at the iteration limit; equilibrated
  // for the iterations only, one came back "solved" 0.3 off). Exact:
  // powers of two.
  // A's rows likewise (measured with rows scaled 1e-4 to 1e4: 54 of 100
  // problems unsolved, others "solved" 0.45 off).
  // One block of rows (M, v: A and b, or G and h) into rho, Mh and vh;
  // Sm and Sv point there when any row moved. (M may be Mh: in place.)
  auto equilibrate = [&](const T *M, const T *v, int64_t rows, T f,
                         std::vector<T> &rho, std::vector<T> &Mh,
                         std::vector<T> &vh, const T *&Sm, const T *&Sv) {
    bool any = false;
    for (int64_t k = 0; k < rows; ++k) {
      rho[k] = rowScale(M + k * n, n, v[k], f);
      any |= rho[k] != T(1);
    }
    if (!any)
      return;
    for (int64_t k = 0; k < rows; ++k) {
      for (int64_t j = 0; j < n; ++j)
        Mh[k * n + j] = M[k * n + j] * f / rho[k];
      vh[k] = v[k] * f / rho[k];
    }
    Sm = Mh.data();
    Sv = vh.data();
  };
  // From the block-scaled rows (the same values as rows times ia or ig).
  equilibrate(S.A, S.b, m, T(1), W.rsA, W.Ah, W.bh, S.A, S.b);
  equilibrate(S.G, S.h, p, T(1), W.rs, W.Gh, W.hh, S.G, S.h);
  return sc;
}

/// Mehrotra predictor-corrector on one problem, scaled by scaleProblem (P.Q
/// is the symmetric part of Q). Writes z, nu, lam, s (the slacks of the last
/// iterate) and, for a solved problem, the factorization of the KKT system
/// at the solution to `fac`.
template <class T>
QPStatus solveScaled(const Prob<T> &P, const Config &cfg, Scratch<T> &W, T *z,
                     T *nu, T *lam, T *s, std::vector<T> &fac, T *regs,
                     int32_t &iterations) {
  const int64_t n = P.n, m = P.m, p = P.p;
  const T tol = T(cfg.tol);
  const T *Qs = P.Q;
  fac.resize(KKT<T>::factorSize(n, m)); // every entry read is written
  KKT<T> kkt(P, Qs, W.D.data(), fac.data());
  kkt.Hbuf = W.H.data();
  kkt.DG = W.DG.data();
  kkt.sp = W.sp.data();
  if (Qs && m == 0 && p > 0 && 2 * p <= n) {
    kkt.lowRank = true;
    kkt.Wt = W.Wt.data();
    kkt.M0 = W.M0.data();
    kkt.S = W.S.data();
  }
  if (p) {
    // With at most one nonzero per row of G (G = -I, bounds on z), G^T D G
    // is diagonal: formed in O(p) rather than O(p n^2) per iteration.
    bool oneNonzero = true;
    for (int64_t k = 0; k < p && oneNonzero; ++k) {
      int64_t col = -1;
      for (int64_t j = 0; j < n; ++j)
        if (P.G[k * n + j] != 0) {
          if (col >= 0) {
            oneNonzero = false;
            break;
          }
          col = j;
        }
      W.gCol[k] = col;
    }
    kkt.gCol = oneNonzero ? W.gCol.data() : nullptr;
  }
  {
    T maxQ = 0;
    for (int64_t i = 0; Qs && i < n; ++i)
      maxQ = std::max(maxQ, Qs[i * n + i]);
    kkt.rhoBase = Consts<T>::reg * std::max(T(1), maxQ);
  }

  // Norms for the scale-invariant certificate tests.
  T nQ = 0, nQc = 0, nA = 0, nAtE = 0, nG = 0, nGtE = 0;
  if (Qs)
    matNorms(Qs, n, n, nQ, nQc, W.tn.data());
  if (m)
    matNorms(P.A, m, n, nA, nAtE, W.tn.data());
  if (p)
    matNorms(P.G, p, n, nG, nGtE, W.tn.data());
  const T nq = normInf(P.q, n);
  // The Farkas test in the units it was written for, the rows before their
  // equilibration (times W.rsA, W.rs; scaleProblem): a row of tiny entries
  // with a moderate bound, equilibrated, would raise max |h| by its factor
  // and hide a certificate (measured: z1 <= -1, z1 >= 1 beside 1e-6 z1 <= 1
  // went from "primal infeasible" to the iteration limit).
  T nb = 0, nh = 0, nAt = 0, nGt = 0;
  for (int64_t k = 0; k < m; ++k)
    nb = std::max(nb, std::abs(P.b[k]) * W.rsA[k]);
  for (int64_t k = 0; k < p; ++k)
    nh = std::max(nh, std::abs(P.h[k]) * W.rs[k]);
  auto colNorm = [&](const T *M, int64_t rows, const T *rho) {
    std::fill(W.tn.begin(), W.tn.end(), T(0));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < n; ++j)
        W.tn[j] += std::abs(M[i * n + j]) * rho[i];
    return normInf(W.tn.data(), n);
  };
  if (m)
    nAt = colNorm(P.A, m, W.rsA.data());
  if (p)
    nGt = colNorm(P.G, p, W.rs.data());

  // Start (as cvxopt's coneqp): solve with D = I,
  //   [Q + G^T G  A^T] [z ]   [-q + G^T h]
  //   [A          0  ] [nu] = [b         ],
  // then s = h - G z and lam = G z - h, each shifted to be >= 1 if needed.
  std::fill(W.D.begin(), W.D.end(), T(1));
  if (!kkt.factor()) {
    iterations = 0;
    std::fill(z, z + n, T(0));
    std::fill(nu, nu + m, T(0));
    std::fill(lam, lam + p, T(0));
    return QPStatus::NumericalError;
  }
  for (int64_t j = 0; j < n; ++j)
    W.f[j] = -P.q[j];
  if (p)
    gemvTAdd(P.G, P.h, W.f.data(), p, n);
  std::copy(P.b, P.b + m, W.g.begin());
  kkt.solve(W.f.data(), W.g.data(), z, nu, W);
  if (p) {
    gemv(P.G, z, s, p, n);
    T minS = std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < p; ++k) {
      lam[k] = s[k] - P.h[k];
      s[k] = P.h[k] - s[k];
      minS = std::min(minS, s[k]);
    }
    // lam = -s: they have the same minimum shift.
    T minL = std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < p; ++k)
      minL = std::min(minL, lam[k]);
    if (minS < T(1e-2))
      for (int64_t k = 0; k < p; ++k)
        s[k] += T(1) - minS;
    if (minL < T(1e-2))
      for (int64_t k = 0; k < p; ++k)
        lam[k] += T(1) - minL;
  }

  QPStatus status = QPStatus::IterationLimit;
  int64_t it = 0, bestIt = 0;
  T best = std::numeric_limits<T>::infinity();
  for (;; ++it) {
    Res<T> r = residuals(P, Qs, z, nu, lam, s, W);
    T *rd = W.rd.data(), *re = W.re.data(), *ri = W.ri.data();
    const T gap = r.gap, mu = p ? gap / T(p) : T(0);
    const T nQz = r.nQz, nAz = r.nAz;
    if (!r.finite) {
      status = QPStatus::NumericalError;
      break;
    }
    if (r.merit <= tol) {
      status = QPStatus::Solved;
      break;
    }
    if (r.merit < best) {
      if (r.merit < best * T(0.9))
        bestIt = it;
      best = r.merit;
      std::copy(z, z + n, W.bz.begin());
      std::copy(nu, nu + m, W.bnu.begin());
      std::copy(lam, lam + p, W.blam.begin());
      std::copy(s, s + p, W.bs.begin());
    } else if (it - bestIt >= 10) {
      status = QPStatus::IterationLimit; // stalled
      break;
    }

    // Infeasibility certificates from the iterates, which diverge along
    // them (docs/qp.md): A^T nu + G^T lam ~ 0 with b^T nu + h^T lam < 0, or
    // Q z ~ 0, A z ~ 0, G z <~ 0 with q^T z < 0.
    if (m || p) {
      // y in the rows' units before equilibration (b^T nu + h^T lam and
      // A^T nu + G^T lam do not change).
      T ny = 0;
      for (int64_t k = 0; k < m; ++k)
        ny = std::max(ny, std::abs(nu[k]) / W.rsA[k]);
      for (int64_t k = 0; k < p; ++k)
        ny = std::max(ny, std::abs(lam[k]) / W.rs[k]);
      T hy = dot(P.b, nu, m) + dot(P.h, lam, p);
      // A^T nu + G^T lam, from residuals().
      for (int64_t j = 0; j < n; ++j)
        W.tn[j] = (m ? W.atn[j] : T(0)) + (p ? W.gtl[j] : T(0));
      T res = normInf(W.tn.data(), n);
      if (ny > 0 && hy < -Consts<T>::certObj * ny * std::max(nb, nh) &&
          res <= Consts<T>::certRes * ny * std::max(nAt, nGt)) {
        for (int64_t k = 0; k < m; ++k)
          nu[k] /= ny;
        for (int64_t k = 0; k < p; ++k)
          lam[k] /= ny;
        status = QPStatus::PrimalInfeasible;
        break;
      }
    }
    {
      T nz = normInf(z, n);
      T qz = dot(P.q, z, n);
      T maxGz = 0;
      for (int64_t k = 0; k < p; ++k) // G z, from residuals()
        maxGz = std::max(maxGz, W.gz[k]);
      // The objective must still decrease along the ray beyond z
      // (z^T Q z + q^T z < q^T z / 2): at the minimizer of a positive
      // definite Q of condition 1e9 or more, z is large enough for
      // Q z ~ 0 relative to |z| |Q|, yet z^T Q z = -q^T z there (measured:
      // unconstrained problems of condition 1e10 came back unbounded).
      if (nz > 0 && qz < -Consts<T>::certObj * nz * nq &&
          r.zQz < -qz / 2 && nQz <= Consts<T>::certRes * nz * nQ &&
          nAz <= Consts<T>::certRes * nz * nA &&
          maxGz <= Consts<T>::certRes * nz * nG) {
        for (int64_t j = 0; j < n; ++j)
          z[j] /= nz;
        status = QPStatus::DualInfeasible;
        break;
      }
    }
    if (it >= cfg.maxIter) {
      status = QPStatus::IterationLimit;
      break;
    }

    // Newton system. With D = lam / s, eliminating ds and dlam from
    //   Q dz + A^T dnu + G^T dlam = -rd,  A dz = -re,  G dz + ds = -ri,
    //   lam ds + s dlam = -rc
    // leaves (Q + G^T D G) dz + A^T dnu = -rd - G^T (D ri - rc / s),
    // A dz = -re; then dlam = D (G dz + ri) - rc / s, ds = -(rc + s dlam)/lam.
    for (int64_t k = 0; k < p; ++k)
      W.D[k] = lam[k] / s[k];
    if (!kkt.factor()) {
      status = QPStatus::NumericalError;
      break;
    }
    auto direction = [&](const T *rc, T *dz, T *dnu, T *dlam, T *ds) {
      for (int64_t j = 0; j < n; ++j)
        W.f[j] = -rd[j];
      for (int64_t k = 0; k < p; ++k)
        W.tp[k] = -(W.D[k] * ri[k] - rc[k] / s[k]);
      gemvTAdd(P.G, W.tp.data(), W.f.data(), p, n);
      for (int64_t k = 0; k < m; ++k)
        W.g[k] = -re[k];
      kkt.solve(W.f.data(), W.g.data(), dz, dnu, W, /*direction=*/true);
      if (p) {
        gemv(P.G, dz, dlam, p, n);
        for (int64_t k = 0; k < p; ++k) {
          dlam[k] = W.D[k] * (dlam[k] + ri[k]) - rc[k] / s[k];
          ds[k] = -(rc[k] + s[k] * dlam[k]) / lam[k];
        }
      }
    };
    auto maxStep = [&](const T *ds, const T *dlam) {
      T a = 1;
      for (int64_t k = 0; k < p; ++k) {
        if (ds[k] < 0)
          a = std::min(a, -s[k] / ds[k]);
        if (dlam[k] < 0)
          a = std::min(a, -lam[k] / dlam[k]);
      }
      return a;
    };
    T alpha = 1;
    if (p) {
      // Predictor (affine scaling): rc = s * lam.
      for (int64_t k = 0; k < p; ++k)
        W.rc[k] = s[k] * lam[k];
      direction(W.rc.data(), W.dz.data(), W.dnu.data(), W.dlamA.data(),
                W.dsA.data());
      T aAff = maxStep(W.dsA.data(), W.dlamA.data());
      T muAff = 0;
      for (int64_t k = 0; k < p; ++k)
        muAff += (s[k] + aAff * W.dsA[k]) * (lam[k] + aAff * W.dlamA[k]);
      muAff /= T(p);
      T sigma = mu > 0 ? std::pow(std::max(T(0), muAff / mu), T(3)) : T(0);
      sigma = std::min(sigma, T(1));
      // Corrector: rc = s * lam + dsA * dlamA - sigma * mu.
      for (int64_t k = 0; k < p; ++k)
        W.rc[k] = s[k] * lam[k] + W.dsA[k] * W.dlamA[k] - sigma * mu;
      direction(W.rc.data(), W.dz.data(), W.dnu.data(), W.dlam.data(),
                W.ds.data());
      alpha = std::min(T(1), T(0.99) * maxStep(W.ds.data(), W.dlam.data()));
    } else {
      direction(nullptr, W.dz.data(), W.dnu.data(), nullptr, nullptr);
    }
    for (int64_t j = 0; j < n; ++j)
      z[j] += alpha * W.dz[j];
    for (int64_t k = 0; k < m; ++k)
      nu[k] += alpha * W.dnu[k];
    for (int64_t k = 0; k < p; ++k) {
      lam[k] += alpha * W.dlam[k];
      s[k] += alpha * W.ds[k];
    }
  }
  iterations = int32_t(it);
  bool polishOnly = false;
  if (status == QPStatus::IterationLimit ||
      status == QPStatus::NumericalError) {
    if (!(best < std::numeric_limits<T>::infinity()))
      return status;
    // Stalled or out of iterations (an unbounded set of multipliers, say):
    // back to the best iterate, and polish it; that may solve it.
    std::copy(W.bz.begin(), W.bz.end(), z);
    std::copy(W.bnu.begin(), W.bnu.end(), nu);
    std::copy(W.blam.begin(), W.blam.end(), lam);
    std::copy(W.bs.begin(), W.bs.end(), s);
    polishOnly = true;
  } else if (status != QPStatus::Solved) {
    return status;
  }

  // Polish (as OSQP does): with the active set {k : lam_k > s_k} as
  // equalities, solve the equality-constrained QP
  //   [Q  C^T] [z]   [-q]        C = [A; G_act], d = [b; h_act]
  //   [C   0 ] [y] = [ d],
  // and keep its solution if its merit is no worse. It removes the
  // O(sqrt(mu)) error of interior points near degenerate (weakly active)
  // constraints. Its factorization is the one the backward pass uses: the
  // limit of the IPM's KKT system as lam/s -> infinity on active and 0 on
  // inactive constraints (docs/qp.md).
  //
  // The active set read off an interior iterate can be wrong at a
  // constraint that is nearly weakly active (lam and s both small): the
  // polished z then violates a constraint left out, or a multiplier comes
  // out negative. Such constraints are added to (removed from) the set and
  // the polish repeated, up to 3 times (measured: at n = 500 the IPM's
  // dual residual stalls near 1e-10 relative, and a polish that missed one
  // of 51 active constraints violated it by 2e-3).
  T *active = s + p; // 1 or 0 per inequality
  for (int64_t i = 0; i < p; ++i)
    active[i] = lam[i] > s[i] ? T(1) : T(0);
  std::vector<T> &C = W.C;
  std::vector<T> &pz = W.pz, &py = W.py, &pl = W.pl, &ps = W.ps;
  // The polish with the active set `active`: pz, py (multipliers of A,
  // then of the active rows of G in order) and ps = G pz; false when Q is
  // not positive semidefinite or nothing factorizes.
  int64_t k = 0;
  auto polish = [&]() -> bool {
    k = 0;
    for (int64_t i = 0; i < p; ++i)
      k += active[i] != 0;
    const int64_t mc = m + k;
    C.resize(mc * n);
    std::copy(P.A, P.A + m * n, C.begin());
    for (int64_t i = 0, r = m; i < p; ++i)
      if (active[i] != 0) {
        std::copy(P.G + i * n, P.G + (i + 1) * n, C.begin() + r * n);
        W.g[r++] = P.h[i];
      }
    std::copy(P.b, P.b + m, W.g.begin());
    Prob<T> PC{n, mc, 0, P.Q, P.q, C.data(), W.g.data(), nullptr, nullptr};
    // Kept for the backward pass: sized for this active set only.
    fac.resize(KKT<T>::factorSize(n, mc));
    KKT<T> eq(PC, Qs, nullptr, fac.data());
    eq.rhoBase = kkt.rhoBase;
    if (kkt.lowRank && kkt.lowRankReady) {
      // fac's first n^2 numbers (kept by resize) are U with U^T U = Q + rho I.
      eq.haveL = true;
      eq.rho = kkt.rho;
    }
    if (!eq.factor())
      return false;
    // rho = rhoBase * 100^k, rhoBase = 1e-10 max(1, max Q_ii) of the scaled
    // Q (largest entry in [1, 2): scaleProblem): k = 0 for a
    // positive semidefinite Q (1 with rounding). A larger k means an
    // eigenvalue of Q below -1e-8 max(1, max Q_ii): beyond what the data's
    // rounding explains (cfg.maxRho: 1e-6 of it in float64, 1e-4 for data
    // rounded to float32), the problem is not convex, and a point meeting
    // the stopping test is only stationary (measured: Q = -I on a box
    // "solved" at z = 0, its maximum; Q = -I with sum z = 1, unbounded
    // below, "solved" at z = 1/n). Not a solution to return.
    if (eq.rho > T(cfg.maxRho) * kkt.rhoBase)
      return false;
    regs[0] = eq.rho;
    regs[1] = eq.delta;
    for (int64_t j = 0; j < n; ++j)
      W.f[j] = -P.q[j];
    eq.solve(W.f.data(), W.g.data(), pz.data(), py.data(), W);
    gemv(P.G, pz.data(), ps.data(), p, n);
    return true;
  };
  for (int round = 0;; ++round) {
    if (!polish())
      return QPStatus::NumericalError;
    if (round == 3)
      break;
    const T multTol = tol * (1 + normInf(py.data() + m, k));
    bool changed = false;
    for (int64_t i = 0, r = m; i < p; ++i) {
      // Relative to the row's own terms, as the stopping test.
      const T violTol = tol * (rowFloor(P.G + i * n, n) +
                               std::max(std::abs(P.h[i]), std::abs(ps[i])));
      if (active[i] == 0 && ps[i] - P.h[i] > violTol) {
        active[i] = 1;
        changed = true;
      } else if (active[i] != 0 && py[r++] < -multTol) {
        active[i] = 0;
        changed = true;
      }
    }
    if (!changed)
      break;
  }
  // The polished point, if it is no worse than the interior one; else, when
  // some multipliers of the set came out negative (within the tolerance
  // above), once more without those constraints. A constraint inactive at
  // the solution by a slack near the tolerance can look active at the
  // interior point (s and lam both ~1e-4, measured), and its multiplier
  // then comes out slightly negative: clipped to 0, it leaves a dual
  // residual that loses to the interior point's, whose z is O(sqrt(mu))
  // from the solution (1.4e-4 measured), and whose active set would
  // disagree with the factorization that the backward pass keeps.
  Res<T> before = residuals(P, Qs, z, nu, lam, s, W);
  Res<T> after;
  bool polished = false;
  // The absolute residuals' own scale: a polish whose residuals are within
  // the tolerance of it is a solution even when the interior point it
  // replaces had smaller ones (Q = 1e-14 I on a simplex: the interior point
  // stalled at sum z = 0, residual 1, and the right polish, residual 1e3
  // beside q / c ~ 1e14, was refused).
  const T dataScale =
      1 + std::max({normInf(P.q, n), normInf(P.b, m), normInf(P.h, p)});
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (int64_t i = 0, r = m; i < p; ++i) {
      ps[i] = std::max(T(0), P.h[i] - ps[i]);
      pl[i] = active[i] != 0 ? std::max(T(0), py[r++]) : T(0);
    }
    after = residuals(P, Qs, pz.data(), py.data(), pl.data(), ps.data(), W);
    // Relative residuals alone could accept a polish that blew up (an
    // incomplete active set of an LP gives z ~ 1/rho, whose residuals are
    // small relative to its own size): the absolute ones must not grow
    // either.
    if (after.merit <= before.merit &&
        (after.raw <= before.raw || after.raw <= tol * dataScale)) {
      polished = true;
      std::copy(pz.begin(), pz.begin() + n, z);
      std::copy(py.begin(), py.begin() + m, nu);
      std::copy(pl.begin(), pl.begin() + p, lam);
      std::copy(ps.begin(), ps.begin() + p, s);
      break;
    }
    // The flags must keep matching `fac` (the backward pass reads both).
    if (attempt == 1)
      break;
    std::vector<T> kept(active, active + p);
    bool negative = false;
    for (int64_t i = 0, r = m; i < p; ++i)
      if (active[i] != 0 && py[r++] < 0) {
        active[i] = 0;
        negative = true;
      }
    if (!negative)
      break;
    if (!polish()) {
      // Back to the first set, which factorized.
      std::copy(kept.begin(), kept.end(), active);
      if (!polish())
        return QPStatus::NumericalError;
      break;
    }
  }
  // The merit of the point returned: a refused polish's does not count
  // (it made the stalled interior point above "solved", 1.0 off).
  if (polishOnly && (polished ? after.merit : before.merit) > tol)
    return status;
  status = QPStatus::Solved;
  return status;
}

/// One problem: scaled (QPScale.h), solved, and its nu, lam and s scaled
/// back. regs: rho and delta of the kept factorization (of the scaled
/// system), then c, a, g for the backward pass.
template <class T>
QPStatus solveOne(const Prob<T> &P0, const Config &cfg, Scratch<T> &W, T *z,
                  T *nu, T *lam, T *s, std::vector<T> &fac, T *regs,
                  int32_t &iterations) {
  Prob<T> P;
  const qpscale::Scales sc = scaleProblem(P0, W, P);
  regs[2] = T(sc.obj);
  regs[3] = T(sc.eq);
  regs[4] = T(sc.ineq);
  const QPStatus status =
      solveScaled(P, cfg, W, z, nu, lam, s, fac, regs, iterations);
  const int64_t n = P.n, m = P.m, p = P.p;
  // z = E z^; a direction of unbounded descent is normalized again.
  if (sc.columns) {
    for (int64_t j = 0; j < n; ++j)
      z[j] *= W.cs[j];
    const T nz = normInf(z, n);
    if (status == QPStatus::DualInfeasible && nz > 0)
      for (int64_t j = 0; j < n; ++j)
        z[j] /= nz;
  }
  // The scaled problem's multipliers are a/c nu and g/c lam. A Farkas
  // certificate is only a direction: it is normalized again instead.
  const bool farkas = status == QPStatus::PrimalInfeasible;
  const T fnu = (farkas ? T(1) : T(sc.obj)) / T(sc.eq);
  const T flam = (farkas ? T(1) : T(sc.obj)) / T(sc.ineq);
  for (int64_t k = 0; k < m; ++k)
    nu[k] *= fnu / W.rsA[k];
  for (int64_t k = 0; k < p; ++k) {
    lam[k] *= flam / W.rs[k];
    s[k] *= T(sc.ineq) * W.rs[k];
  }
  if (farkas) {
    const T ny = std::max(normInf(nu, m), normInf(lam, p));
    for (int64_t k = 0; ny > 0 && k < m; ++k)
      nu[k] /= ny;
    for (int64_t k = 0; ny > 0 && k < p; ++k)
      lam[k] /= ny;
  }
  return status;
}

//===----------------------------------------------------------------------===//
// The batch
//===----------------------------------------------------------------------===//

void parallelFor(unsigned threads, int64_t count,
                 const std::function<void(int64_t, int64_t, unsigned)> &fn) {
  unsigned t =
      threads ? threads : std::max(1u, std::thread::hardware_concurrency());
  t = unsigned(std::min<int64_t>(t, count));
  if (t <= 1) {
    fn(0, count, 0);
    return;
  }
  ThreadPool pool(t);
  pool.run([&](unsigned i) {
    int64_t begin = count * i / t, end = count * (i + 1) / t;
    fn(begin, end, i);
  });
}

template <class T> const T *at(const Layout &L, int op, int64_t e) {
  const T *base = static_cast<const T *>(L.data[op]);
  if (!base)
    return nullptr;
  return L.batched[op] ? base + e * L.size[op] : base;
}

template <class T> Prob<T> element(const Layout &L, int64_t e) {
  return Prob<T>{L.n,
                 L.m,
                 L.p,
                 at<T>(L, OpQ, e),
                 at<T>(L, Opq, e),
                 at<T>(L, OpA, e),
                 at<T>(L, Opb, e),
                 at<T>(L, OpG, e),
                 at<T>(L, Oph, e)};
}

/// The backward pass's KKT system K is singular where the solution is not
/// unique (Q singular on the face that the active constraints leave free: LP
/// ties, a PSD Q; dependent rows of [A; G_act]). A right-hand side with a
/// component r along K's null space has no solution; the regularized solve
/// (K + R, R = diag(rho I, -delta I)) turns r into a component r / rho of
/// (x, y) along that null space, and refinement only adds to it (measured:
/// gradients of 2e10 at an LP tie). The derivative does not exist there;
/// like diffcp (cvxpylayers), the backward pass returns the least-squares
/// solution instead. For v in K's null space (K + R) v = R v, so
/// R (K + R)^{-1} (f, g) is (f, g)'s null-space component (plus rho K^{-1}
/// of the rest, negligible): the system is solved again without it, and
/// (K + R)^{-1} R (x, y), (x, y)'s null-space component, is subtracted from
/// the solution, until it stops shrinking. Subtracting it from the first
/// solution instead would leave that solution's rounding, eps r / rho, in
/// its other components (measured: 2e-4). A consistent system (a unique
/// solution, or dependent rows whose right-hand sides agree) refines to a
/// residual near rounding and is left alone: the correction would move it
/// by rho K^{-1}.
template <class T>
void leastSquaresAtSingularKKT(KKT<T> &kkt, Scratch<T> &W, T *x, T *y) {
  const int64_t n = kkt.P.n, m = kkt.P.m;
  T *f = W.f.data(), *g = W.g.data();
  kkt.residual(f, g, x, y, W.rx.data(), W.ry.data());
  const T r = std::max(normInf(W.rx.data(), n), normInf(W.ry.data(), m));
  const T rhs = std::max(normInf(f, n), normInf(g, m));
  if (!(r > T(1e-6) * rhs))
    return;
  kkt.solveReg(f, g, W.cx.data(), W.cy.data(), W.ts.data());
  for (int64_t j = 0; j < n; ++j)
    f[j] -= kkt.rho * W.cx[j];
  for (int64_t k = 0; k < m; ++k)
    g[k] += kkt.delta * W.cy[k];
  kkt.solve(f, g, x, y, W);
  // Each subtraction is exact only to eps |S| / delta relative (S: the
  // Schur complement, singular here; measured: 3.5e-5 for dependent rows
  // of A), so it is repeated while what it removes shrinks by half (then
  // it is the rho K^{-1} part, not the null space's).
  T last = std::numeric_limits<T>::infinity();
  for (int pass = 0; pass < 8; ++pass) {
    for (int64_t j = 0; j < n; ++j)
      W.rx[j] = kkt.rho * x[j];
    for (int64_t k = 0; k < m; ++k)
      W.ry[k] = -kkt.delta * y[k];
    kkt.solveReg(W.rx.data(), W.ry.data(), W.cx.data(), W.cy.data(),
                 W.ts.data());
    const T removed =
        std::max(normInf(W.cx.data(), n), normInf(W.cy.data(), m));
    if (!(removed < last / 2))
      break;
    last = removed;
    for (int64_t j = 0; j < n; ++j)
      x[j] -= W.cx[j];
    for (int64_t k = 0; k < m; ++k)
      y[k] -= W.cy[k];
  }
}

} // namespace

struct QPSolver::Impl {
  QPOptions options;
  Layout layout;
  bool haveForward = false;
  // Per problem: z, nu, lam, s, the factorization, (rho, delta, c, a, g);
  // the dtype of the problem.
  std::vector<unsigned char> state;
  std::vector<QPStatus> status;
  std::vector<std::vector<double>> factors; // per problem

  int64_t stride() const {
    const Layout &L = layout;
    // z, nu, lam, s, the active set, (rho, delta, c, a, g); the
    // factorization is in `factors`, sized for each problem's active set.
    return L.n + L.m + 3 * L.p + 5;
  }

  // Float32 problems are solved in float64 arithmetic (docs/qp.md): their
  // operands converted, kept here for the backward pass.
  std::vector<double> data64[NumOperands];
  // backward32's incoming gradients and gradients in float64, kept between
  // calls so that their memory is reused.
  std::vector<double> in64[3], grads64[NumOperands];
  Layout layout64;

  void forward(const Layout &L, const QPSolutionBuffers &out);
  void backward(const Layout &L, const QPGradientBuffers &g);
  void forward32(const QPSolutionBuffers &out);
  void backward32(const QPGradientBuffers &g);
};

void QPSolver::Impl::forward(const Layout &L, const QPSolutionBuffers &out) {
  using T = double;
  const int64_t n = L.n, m = L.m, p = L.p, st = stride();
  state.assign(size_t(st * L.batch) * sizeof(T), 0);
  status.assign(L.batch, QPStatus::NumericalError);
  // Kept between calls: their memory is reused (no page faults anew).
  factors.resize(L.batch);
  // A Q rounded to float32 may have eigenvalues near -1e-7 max Q_ii: it is
  // accepted up to Q + 1e-4 max(1, max Q_ii) I (float64: 1e-6), see the
  // polish in solveOne.
  Config cfg{options.tol > 0 ? options.tol : double(Consts<T>::tol),
             options.maxIter, layout.dtype == DType::F32 ? 1e7 : 1e5};
  T *base = reinterpret_cast<T *>(state.data());
  parallelFor(options.threads, L.batch,
              [&](int64_t begin, int64_t end, unsigned) {
                Scratch<T> W;
                W.resize(n, m, p);
                for (int64_t e = begin; e < end; ++e) {
                  T *S = base + e * st;
                  T *z = S, *nu = z + n, *lam = nu + m, *s = lam + p;
                  T *regs = s + 2 * p;
                  int32_t iters = 0;
                  QPStatus stt = solveOne(element<T>(L, e), Config(cfg), W, z,
                                          nu, lam, s, factors[e], regs, iters);
                  status[e] = stt;
                  out.status[e] = stt;
                  if (out.iterations)
                    out.iterations[e] = iters;
                  std::copy(z, z + n, static_cast<T *>(out.z) + e * n);
                  if (m && out.nu)
                    std::copy(nu, nu + m, static_cast<T *>(out.nu) + e * m);
                  if (p && out.lam)
                    std::copy(lam, lam + p, static_cast<T *>(out.lam) + e * p);
                }
              });
  haveForward = true;
}

void QPSolver::Impl::backward(const Layout &L, const QPGradientBuffers &g) {
  using T = double;
  const int64_t n = L.n, m = L.m, p = L.p, st = stride(), B = L.batch;
  const T *base = reinterpret_cast<const T *>(state.data());
  // Per problem: dz [n], dnu [m], dlamScaled = D(lam) dlam [p] (OptNet's
  // notation), for the reduction of shared gradients afterwards.
  std::vector<T> adj(size_t(B * (n + m + p)));
  void *grads[NumOperands] = {g.dQ, g.dq, g.dA, g.db, g.dG, g.dh};
  parallelFor(options.threads, B, [&](int64_t begin, int64_t end, unsigned) {
    Scratch<T> W;
    W.resize(n, m, p);
    for (int64_t e = begin; e < end; ++e) {
      const T *S = base + e * st;
      const T *z = S, *nu = z + n, *lam = nu + m, *s = lam + p;
      const T *active = s + p, *regs = s + 2 * p;
      const T *fac = factors[e].data();
      Prob<T> P = element<T>(L, e);
      // The problem scaled as the forward pass scaled it (the same
      // computation, bit for bit): E Q E / c, C = Dc^{-1} [A; G_act] E with
      // Dc = diag(a rhoA_i, g rho_i) (the rows' equilibration, rowScale)
      // and E = diag(W.cs) (columnScales), powers of two, so that the
      // scaling is exact.
      Prob<T> Sp;
      const qpscale::Scales sc = scaleProblem(P, W, Sp);
      const T c = T(sc.obj), a = T(sc.eq), gs = T(sc.ineq);
      const T *Qs = Sp.Q, *cs = W.cs.data();
      // The forward pass's factorization of the active-set system
      //   [Q  C^T] [dz]   [-gz         ]     C = [A; G_act]
      //   [C   0 ] [y ] = [-(gnu; glam_act)],
      // the limit of OptNet's K^T system (docs/qp.md); y = (dnu, D(lam)
      // dlam on the active set), and D(lam) dlam = 0 off it. In the scaled
      // system's terms, with dz = E x and y^ = Dc y / c:
      //   [E Q E/c    E C^T/Dc] [x ]   [-E gz / c              ]
      //   [Dc^-1 C E  0       ] [y^] = [-Dc^{-1} (gnu; glam_act)].
      int64_t k = 0;
      for (int64_t i = 0; i < p; ++i)
        k += active[i] != 0;
      const int64_t mc = m + k;
      W.C.resize(mc * n);
      std::copy(Sp.A, Sp.A + m * n, W.C.begin());
      for (int64_t i = 0, r = m; i < p; ++i)
        if (active[i] != 0) {
          std::copy(Sp.G + i * n, Sp.G + (i + 1) * n, W.C.begin() + r * n);
          ++r;
        }
      Prob<T> PC{n, mc, 0, P.Q, P.q, W.C.data(), nullptr, nullptr, nullptr};
      KKT<T> kkt(PC, Qs, nullptr, const_cast<T *>(fac));
      kkt.rho = regs[0];
      kkt.delta = regs[1];
      const T *gz = g.dz ? static_cast<const T *>(g.dz) + e * n : nullptr;
      const T *gnu =
          g.dnu && m ? static_cast<const T *>(g.dnu) + e * m : nullptr;
      const T *glam =
          g.dlam && p ? static_cast<const T *>(g.dlam) + e * p : nullptr;
      for (int64_t j = 0; j < n; ++j)
        W.f[j] = gz ? -gz[j] * cs[j] / c : T(0);
      for (int64_t i = 0; i < m; ++i)
        W.g[i] = gnu ? -gnu[i] / (a * W.rsA[i]) : T(0);
      for (int64_t i = 0, r = m; i < p; ++i)
        if (active[i] != 0)
          W.g[r++] = glam ? -glam[i] / (gs * W.rs[i]) : T(0);
      T *dz = adj.data() + e * (n + m + p), *dnu = dz + n, *dls = dnu + m;
      kkt.solve(W.f.data(), W.g.data(), dz, W.y.data(), W);
      leastSquaresAtSingularKKT(kkt, W, dz, W.y.data());
      for (int64_t j = 0; j < n; ++j)
        dz[j] *= cs[j];
      for (int64_t i = 0; i < m; ++i)
        dnu[i] = W.y[i] * (c / (a * W.rsA[i]));
      for (int64_t i = 0, r = m; i < p; ++i)
        dls[i] = active[i] != 0 ? W.y[r++] * (c / (gs * W.rs[i])) : T(0);
      // Fused assembly of the gradients of batched operands.
      auto out = [&](int op) -> T * {
        return grads[op] && L.batched[op] && L.data[op]
                   ? static_cast<T *>(grads[op]) + e * L.size[op]
                   : nullptr;
      };
      if (T *dQ = out(OpQ))
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j)
            dQ[i * n + j] = (dz[i] * z[j] + z[i] * dz[j]) / 2;
      if (T *dq = out(Opq))
        std::copy(dz, dz + n, dq);
      if (T *dA = out(OpA))
        for (int64_t k = 0; k < m; ++k)
          for (int64_t j = 0; j < n; ++j)
            dA[k * n + j] = dnu[k] * z[j] + nu[k] * dz[j];
      if (T *db = out(Opb))
        for (int64_t k = 0; k < m; ++k)
          db[k] = -dnu[k];
      if (T *dG = out(OpG))
        for (int64_t k = 0; k < p; ++k)
          for (int64_t j = 0; j < n; ++j)
            dG[k * n + j] = dls[k] * z[j] + lam[k] * dz[j];
      if (T *dh = out(Oph))
        for (int64_t k = 0; k < p; ++k)
          dh[k] = -dls[k];
    }
  });

  // Shared operands: the sum over the batch, in batch order, row by row.
  auto shared = [&](int op) {
    return grads[op] && !L.batched[op] && L.data[op];
  };
  auto sol = [&](int64_t e) { return base + e * st; };
  auto adjOf = [&](int64_t e) { return adj.data() + e * (n + m + p); };
  struct Row {
    int op;
    int64_t row;
  };
  std::vector<Row> rows;
  if (shared(OpQ))
    for (int64_t i = 0; i < n; ++i)
      rows.push_back({OpQ, i});
  if (shared(OpA))
    for (int64_t i = 0; i < m; ++i)
      rows.push_back({OpA, i});
  if (shared(OpG))
    for (int64_t i = 0; i < p; ++i)
      rows.push_back({OpG, i});
  for (int op : {Opq, Opb, Oph})
    if (shared(op))
      rows.push_back({op, 0});
  parallelFor(options.threads, int64_t(rows.size()),
              [&](int64_t begin, int64_t end, unsigned) {
                for (int64_t r = begin; r < end; ++r) {
                  int op = rows[r].op;
                  int64_t i = rows[r].row;
                  T *dst = static_cast<T *>(grads[op]);
                  int64_t len = (op == Opb) ? m : (op == Oph) ? p : n;
                  T *out =
                      (op == OpQ || op == OpA || op == OpG) ? dst + i * n : dst;
                  std::fill(out, out + len, T(0));
                  for (int64_t e = 0; e < B; ++e) {
                    const T *z = sol(e), *nu = z + n, *lam = nu + m;
                    const T *dz = adjOf(e), *dnu = dz + n, *dls = dnu + m;
                    switch (op) {
                    case OpQ:
                      for (int64_t j = 0; j < n; ++j)
                        out[j] += (dz[i] * z[j] + z[i] * dz[j]) / 2;
                      break;
                    case OpA:
                      for (int64_t j = 0; j < n; ++j)
                        out[j] += dnu[i] * z[j] + nu[i] * dz[j];
                      break;
                    case OpG:
                      for (int64_t j = 0; j < n; ++j)
                        out[j] += dls[i] * z[j] + lam[i] * dz[j];
                      break;
                    case Opq:
                      for (int64_t j = 0; j < n; ++j)
                        out[j] += dz[j];
                      break;
                    case Opb:
                      for (int64_t k = 0; k < m; ++k)
                        out[k] -= dnu[k];
                      break;
                    case Oph:
                      for (int64_t k = 0; k < p; ++k)
                        out[k] -= dls[k];
                      break;
                    }
                  }
                }
              });
}

void QPSolver::Impl::forward32(const QPSolutionBuffers &out) {
  const Layout &L = layout;
  layout64 = L;
  layout64.dtype = DType::F64;
  for (int i = 0; i < NumOperands; ++i) {
    const float *src = static_cast<const float *>(L.data[i]);
    int64_t count = L.size[i] * (L.batched[i] ? L.batch : 1);
    data64[i].assign(src, src + (src ? count : 0));
    layout64.data[i] = src ? data64[i].data() : nullptr;
  }
  std::vector<double> z(L.batch * L.n), nu(L.batch * L.m), lam(L.batch * L.p);
  QPSolutionBuffers o = out;
  o.z = z.data();
  o.nu = nu.data();
  o.lam = lam.data();
  forward(layout64, o);
  auto put = [](const std::vector<double> &v, void *dst) {
    if (dst)
      std::copy(v.begin(), v.end(), static_cast<float *>(dst));
  };
  put(z, out.z);
  put(nu, out.nu);
  put(lam, out.lam);
}

void QPSolver::Impl::backward32(const QPGradientBuffers &g) {
  const Layout &L = layout;
  auto widen = [](const void *src, int64_t count, std::vector<double> &dst) {
    if (!src)
      return (const void *)nullptr;
    const float *f = static_cast<const float *>(src);
    dst.assign(f, f + count);
    return (const void *)dst.data();
  };
  std::vector<double> *outs = grads64;
  QPGradientBuffers g64;
  g64.dz = widen(g.dz, L.batch * L.n, in64[0]);
  g64.dnu = widen(g.dnu, L.batch * L.m, in64[1]);
  g64.dlam = widen(g.dlam, L.batch * L.p, in64[2]);
  void *const wanted[NumOperands] = {g.dQ, g.dq, g.dA, g.db, g.dG, g.dh};
  void **dst64[NumOperands] = {&g64.dQ, &g64.dq, &g64.dA,
                               &g64.db, &g64.dG, &g64.dh};
  for (int i = 0; i < NumOperands; ++i)
    if (wanted[i] && L.data[i]) {
      // backward() writes every element (no need to clear).
      outs[i].resize(L.size[i] * (L.batched[i] ? L.batch : 1));
      *dst64[i] = outs[i].data();
    }
  backward(layout64, g64);
  for (int i = 0; i < NumOperands; ++i)
    if (*dst64[i])
      std::copy(outs[i].begin(), outs[i].end(),
                static_cast<float *>(wanted[i]));
}

QPSolver::QPSolver(QPOptions options) : impl(std::make_unique<Impl>()) {
  if (options.maxIter < 0)
    fail("maxIter must be >= 0");
  if (!(options.tol >= 0) || !std::isfinite(options.tol))
    fail("tol must be finite and >= 0");
  checkThreadCount(options.threads, "qp");
  impl->options = options;
}
QPSolver::~QPSolver() = default;
QPSolver::QPSolver(QPSolver &&) noexcept = default;
QPSolver &QPSolver::operator=(QPSolver &&) noexcept = default;

/// The operands' bytes, as read (the overlap checks).
static std::vector<Span> operandSpans(const Layout &L) {
  std::vector<Span> spans;
  const size_t element = L.dtype == DType::F64 ? 8 : 4;
  for (int i = 0; i < NumOperands; ++i)
    if (L.data[i]) {
      const char *at = static_cast<const char *>(L.data[i]);
      spans.push_back({at,
                       at + L.size[i] * (L.batched[i] ? L.batch : 1) * element,
                       operandNames[i]});
    }
  return spans;
}

QPSolver::Impl &QPSolver::live(const char *what) const {
  if (!impl)
    fail(std::string(what) + ": the QP solver was moved from");
  return *impl;
}

void QPSolver::forward(const QPProblem &problem, const QPSolutionBuffers &out) {
  live("forward");
  Layout L = validate(problem);
  if (!out.z || !out.status || (L.m && !out.nu) || (L.p && !out.lam))
    fail("forward: the output buffers z, status, and nu (m > 0) and lam "
         "(p > 0) are required");
  {
    const size_t element = L.dtype == DType::F64 ? 8 : 4;
    auto span = [&](const void *data, int64_t count, size_t bytes,
                    const char *name) {
      const char *at = static_cast<const char *>(data);
      return Span{at, at + (data ? count * int64_t(bytes) : 0), name};
    };
    std::vector<Span> spans = {
        span(out.z, L.batch * L.n, element, "z"),
        span(L.m ? out.nu : nullptr, L.batch * L.m, element, "nu"),
        span(L.p ? out.lam : nullptr, L.batch * L.p, element, "lam"),
        span(out.status, L.batch, sizeof(QPStatus), "status"),
        span(out.iterations, L.batch, sizeof(int32_t), "iterations")};
    const size_t writes = spans.size();
    for (const Span &s : operandSpans(L))
      spans.push_back(s);
    // Alignment per buffer: the outputs' elements, then the operands'.
    for (size_t i = 0; i < spans.size(); ++i) {
      const size_t a = i == 3   ? alignof(QPStatus)
                       : i == 4 ? alignof(int32_t)
                                : element;
      if (reinterpret_cast<uintptr_t>(spans[i].begin) % a)
        fail(std::string("forward: ") + spans[i].name +
             " is not aligned to its " + std::to_string(a) + "-byte elements");
    }
    checkBuffers(spans, writes, 1, "forward");
  }
  impl->layout = L;
  impl->haveForward = false;
  if (L.dtype == DType::F64)
    impl->forward(L, out);
  else
    impl->forward32(out);
}

void QPSolver::backward(const QPProblem &problem,
                        const QPGradientBuffers &grads) {
  live("backward");
  if (!impl->haveForward)
    fail("backward() called before forward()");
  Layout L = validate(problem);
  const Layout &F = impl->layout;
  for (int i = 0; i < NumOperands; ++i)
    if (L.data[i] != F.data[i] || L.batched[i] != F.batched[i] ||
        L.size[i] != F.size[i])
      fail(std::string("backward: operand ") + operandNames[i] +
           " is not the one of the last forward()");
  if (L.dtype != F.dtype || L.batch != F.batch)
    fail("backward: the problem is not the one of the last forward()");
  requireSolved(impl->status.data(), F.batch);
  {
    const size_t element = F.dtype == DType::F64 ? 8 : 4;
    auto span = [&](const void *data, int64_t count, const char *name) {
      const char *at = static_cast<const char *>(data);
      return Span{at, at + (data ? count * int64_t(element) : 0), name};
    };
    auto size = [&](int op) {
      return F.size[op] * (F.batched[op] ? F.batch : 1);
    };
    void *const outs[NumOperands] = {grads.dQ, grads.dq, grads.dA,
                                     grads.db, grads.dG, grads.dh};
    static const char *outNames[NumOperands] = {"dQ", "dq", "dA",
                                                "db", "dG", "dh"};
    std::vector<Span> spans;
    for (int i = 0; i < NumOperands; ++i)
      if (outs[i] && F.data[i])
        spans.push_back(span(outs[i], size(i), outNames[i]));
    const size_t writes = spans.size();
    spans.push_back(span(grads.dz, F.batch * F.n, "dz"));
    spans.push_back(span(F.m ? grads.dnu : nullptr, F.batch * F.m, "dnu"));
    spans.push_back(span(F.p ? grads.dlam : nullptr, F.batch * F.p, "dlam"));
    for (const Span &s : operandSpans(F))
      spans.push_back(s);
    checkBuffers(spans, writes, element, "backward");
    // The incoming gradients as the forward's data: finite (a NaN gave NaN
    // gradients of every operand).
    const void *in[3] = {grads.dz, F.m ? grads.dnu : nullptr,
                         F.p ? grads.dlam : nullptr};
    const int64_t counts[3] = {F.n, F.m, F.p};
    static const char *inNames[3] = {"dz", "dnu", "dlam"};
    for (int k = 0; k < 3; ++k)
      if (in[k]) {
        if (F.dtype == DType::F64)
          checkFinite(static_cast<const double *>(in[k]), F.batch * counts[k],
                      inNames[k], counts[k], true);
        else
          checkFinite(static_cast<const float *>(in[k]), F.batch * counts[k],
                      inNames[k], counts[k], true);
      }
  }
  if (F.dtype == DType::F64)
    impl->backward(F, grads);
  else
    impl->backward32(grads);
}

void QPSolver::requireSolved(const QPStatus *status, int64_t batch) {
  if (batch < 0 || (batch > 0 && !status))
    fail("requireSolved: " +
         std::string(batch < 0 ? "a negative batch size" : "status is null"));
  for (int64_t e = 0; e < batch; ++e)
    if (status[e] != QPStatus::Solved)
      fail("problem " + std::to_string(e) + " of the batch " +
           (status[e] == QPStatus::IterationLimit
                ? std::string("hit the iteration limit")
            : status[e] == QPStatus::NumericalError
                ? std::string("failed with a numerical error")
                : "is " + std::string(qpStatusName(status[e]))) +
           "; it has no solution to use" +
           (status[e] == QPStatus::IterationLimit
                ? " (raise the iteration limit, max_iter, or the tolerance, "
                  "tol)"
            : status[e] == QPStatus::NumericalError
                ? " (a factorization failed or an iterate was not finite: "
                  "is Q positive semidefinite? Are the data's scales within "
                  "about 1e15 of each other, q's beside Q's?)"
                : ""));
}

QPSolver::Dims QPSolver::dims() const {
  const Impl &im = live("dims");
  return {im.layout.batch, im.layout.n, im.layout.m, im.layout.p};
}

} // namespace optim
