//===- QPBlock.h - one QP solved by a team of threads (the GPU solver) ----===//
//
// The interior-point method of runtime/lib/QP.cpp (docs/qp.md), written for
// a team of `nt` threads that solve ONE problem together: on a GPU the team
// is a thread block (one block per problem of the batch), on the CPU it is
// a set of std::threads with a barrier (the emulation that checks this code
// against QPSolver without a device, runtime/test/QPBlockTest.cpp).
//
// The same algorithm, constants and statuses as QP.cpp's dense mode, in
// float64: the problem scaled by powers of two (QPScale.h), Mehrotra's
// predictor-corrector, the reduced KKT system factored
// as Cholesky(H + rho I) and Cholesky of the Schur complement (+ delta I),
// rho and delta raised 100x until they factor, iterative refinement against
// the unregularized system, the stopping rule and the stall test, the
// infeasibility certificates from diverging iterates, and the polish on the
// active set (up to 3 corrections); the backward pass on the kept
// factorization, least squares where the KKT system is singular. Not here:
// QP.cpp's low-rank (Woodbury) mode, an optimization for 2p <= n without
// equalities whose answers agree with the dense mode's to the tolerance;
// the dense mode is its fallback.
// Reductions sum in another order than the CPU's kernels, so results agree
// to rounding, not bitwise.
//
// Work is split as: element-wise loops and matrix-vector products over the
// team (thread t takes indices t, t + nt, ...), the Cholesky factorization
// right-looking with the trailing update spread over the team (a barrier per
// column), triangular solves four columns per barrier. Every function that
// writes memory another thread reads ends with team.sync(); scalars come
// from reductions, so every thread takes the same branches.
//
// Memory: the buffers are carved in a fixed order (the reduction slots, the
// factor L, the vectors, then the other matrices); each goes to the shared
// memory budget while it fits, else to the block's global workspace
// (plan() sizes both; the compiler records them in the manifest).
//
// Freestanding C++17: no library, so that clang compiles it for NVPTX
// (runtime/device/QPBlockNVPTX.cpp) as well as for the host.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_QPBLOCK_H
#define OPTIM_QPBLOCK_H

#include "optim/QPScale.h"

#include <stdint.h>

namespace optim {
namespace qpblock {

/// QPStatus's values (QP.h, OPTIM_QP_* of KernelABI.h).
enum : int32_t {
  Solved = 0,
  IterationLimit = 1,
  PrimalInfeasible = 2,
  DualInfeasible = 3,
  NumericalError = 4,
};

// QP.cpp's Consts<double>.
constexpr double kTol = 1e-8, kReg = 1e-10, kCertRes = 1e-9, kCertObj = 1e-5;
constexpr int kRefine = 4;
constexpr double kEps = 2.220446049250313e-16;

// std::max / std::min semantics (a NaN second argument is ignored).
inline double mx(double a, double b) { return a < b ? b : a; }
inline double mn(double a, double b) { return b < a ? b : a; }
inline double fabsd(double x) { return __builtin_fabs(x); }
inline bool finite(double x) { return __builtin_isfinite(x); }
inline double inf() { return __builtin_inf(); }

/// The buffers of one problem (float64).
struct Work {
  double *red = nullptr, *L = nullptr;
  double *z, *rd, *f, *rx, *cx, *tn, *dz, *pz, *bz, *ts, *atn, *gtl, *cs; // [n]
  double *g, *y, *ry, *cy, *py;                                      // [m+p]
  double *nu, *re, *dnu, *bnu, *rsA;                                 // [m]
  double *lam, *s, *active, *rowOf, *ri, *D, *tp, *dlam, *ds, *dlamA, *dsA, *rc,
      *pl, *ps, *blam, *bs, *gz, *gcol, *rs; // [p]
  double *H, *Y, *LS, *C; // [n n], [n (m+p)], [(m+p)^2], [(m+p) n]
  // The scaled data (QPScale.h): q [n], b [m], h [p], A [m n], G [p n].
  double *qh, *bh, *hh, *Ah, *Gh;
};

/// The partials of a team reduction (Solver::fold): the largest power of two
/// g with g^2 <= nt, so that the first g threads fold nt / g parts each and
/// every thread then folds g partials.
inline int64_t reductionGroups(int64_t nt) {
  int64_t g = 1;
  while ((2 * g) * (2 * g) <= nt)
    g *= 2;
  return g;
}

/// Calls take(pointer, count) for every buffer, in the carving order: the
/// most used first (they get the shared memory).
template <class F>
void forEachBuffer(Work &w, int64_t n, int64_t m, int64_t p, int64_t nt,
                   F take) {
  const int64_t k = m + p;
  // The parts, then the partials: 32 slots for them, the most a block
  // of 1024 threads needs (the layout measured on a device), or more for
  // the larger teams of the CPU emulation.
  const int64_t partials = reductionGroups(nt);
  take(w.red, nt + (partials > 32 ? partials : 32));
  take(w.L, n * n);
  double **vn[] = {&w.z,  &w.rd, &w.f,  &w.rx,  &w.cx,  &w.tn, &w.dz,
                   &w.pz, &w.bz, &w.ts, &w.atn, &w.gtl, &w.cs};
  for (double **v : vn)
    take(*v, n);
  double **vk[] = {&w.g, &w.y, &w.ry, &w.cy, &w.py};
  for (double **v : vk)
    take(*v, k);
  double **vm[] = {&w.nu, &w.re, &w.dnu, &w.bnu, &w.rsA};
  for (double **v : vm)
    take(*v, m);
  double **vp[] = {&w.lam,  &w.s,  &w.active, &w.rowOf, &w.ri, &w.D,  &w.tp,
                   &w.dlam, &w.ds, &w.dlamA,  &w.dsA,   &w.rc, &w.pl, &w.ps,
                   &w.blam, &w.bs, &w.gz,     &w.gcol,  &w.rs};
  for (double **v : vp)
    take(*v, p);
  // The scaled data before the scratch matrices: G (and A) are read by
  // every interior-point iteration (G^T D G, the residuals' products), H
  // only by the refinement's residuals, Y, LS and C mostly by the polish.
  take(w.qh, n);
  take(w.bh, m);
  take(w.hh, p);
  take(w.Gh, p * n);
  take(w.Ah, m * n);
  take(w.H, n * n);
  take(w.Y, n * k);
  take(w.LS, k * k);
  take(w.C, k * n);
}

/// Doubles of shared memory (at most `sharedCap`) and of global workspace
/// that one problem takes.
struct Footprint {
  int64_t sharedDoubles = 0, globalDoubles = 0;
};

inline Footprint plan(int64_t n, int64_t m, int64_t p, int64_t nt,
                      int64_t sharedCap) {
  Footprint fp;
  Work w;
  forEachBuffer(w, n, m, p, nt, [&](double *&ptr, int64_t count) {
    ptr = nullptr;
    if (fp.sharedDoubles + count <= sharedCap)
      fp.sharedDoubles += count;
    else
      fp.globalDoubles += count;
  });
  return fp;
}

/// plan()'s layout on actual memory.
inline void carve(Work &w, int64_t n, int64_t m, int64_t p, int64_t nt,
                  double *shared, int64_t sharedCap, double *global) {
  int64_t s = 0, g = 0;
  forEachBuffer(w, n, m, p, nt, [&](double *&ptr, int64_t count) {
    if (s + count <= sharedCap) {
      ptr = shared + s;
      s += count;
    } else {
      ptr = global + g;
      g += count;
    }
  });
}

/// Dynamic shared memory a layer kernel asks for at most: 99 KiB, what
/// every architecture from sm_80 on grants a block that opts in (sm_86 and
/// sm_89 have no more; sm_80 has 163 KiB, sm_90 227 KiB).
constexpr int64_t kSharedCapBytes = 99 * 1024;

/// The dynamic shared memory a layer kernel compiled for sm_<sm> asks for
/// at most: what every device that can run that cubin lets a block opt in
/// to (the CUDA programming guide's table,
/// cudaDevAttrMaxSharedMemoryPerBlockOptin). A cubin runs on its major
/// version's later minor versions too, so sm_80 and sm_87 code gets the
/// 99 KiB of sm_86 and sm_89; sm_90 and sm_100/sm_103 code runs only on
/// devices with 227 KiB, sm_75 only on 64 KiB ones. The solver's registers
/// already limit an SM to one block of 256 threads, so more shared memory
/// costs no occupancy, and every buffer in it is read at shared rather than
/// L1/L2 latency. (The PTX beside a cubin, which a driver compiles for a
/// newer architecture, asks the same: on one that grants less, such as
/// sm_120, the runtime refuses the layer and says what it needs.)
inline int64_t sharedCapBytesFor(int sm) {
  switch (sm) {
  case 75:
    return 64 * 1024;
  case 90:
  case 100:
  case 103:
    return 227 * 1024;
  default:
    return kSharedCapBytes;
  }
}

/// Threads per block for a problem of these dimensions: a warp for tiny
/// problems, else eight warps (the Cholesky's trailing update and the products
/// have ~n^2 independent elements; more threads make each reduction and
/// barrier dearer). On an H200, n = p = 100 in float64, batch 128: 128
/// threads 14.7 ms, 256 11.0, 512 13.2, 1024 18.8 (docs/benchmarks.md);
/// at 255 registers a thread, 256 is also the largest block that fits.
inline int64_t defaultThreads(int64_t n, int64_t m, int64_t p) {
  return mx(double(n), double(m + p)) <= 32 ? 32 : 256;
}

/// The launch and memory of a compiled layer's kernel: `threads` per block,
/// one block per problem; per problem `workDoubles` of global workspace
/// (the operands Q, q, A, b, G, h in float64 at `offset[k]` (-1: absent),
/// then the solver's buffers that do not fit in shared memory) and
/// `sharedBytes` of dynamic shared memory. The compiler (the kernel's
/// constants, the manifest) and the tests compute it with this one
/// function.
struct KernelLayout {
  int64_t threads = 0, sharedDoubles = 0, sharedBytes = 0, dataDoubles = 0,
          workDoubles = 0;
  int64_t offset[6] = {-1, -1, -1, -1, -1, -1};
  /// Where the solver keeps, per problem, what the backward pass needs
  /// (after the operands and the scratch; keepDoubles()).
  int64_t keepOffset = 0;
};

/// What a solved problem keeps for the backward pass: z [n], nu [m],
/// lam [p], the active set (rowOf [p]: the row of C = [A; G_act] of each
/// active inequality, -1 otherwise), m + k, the regularizations rho and
/// delta of the factorization (the backward's least-squares correction at
/// a singular system needs them), and the factorization of the active-set
/// system (L [n n], Y [n (m + k)], LS [(m + k)^2]), at most m + k = m + p.
inline int64_t keepDoubles(int64_t n, int64_t m, int64_t p) {
  const int64_t k = m + p;
  return n + m + 2 * p + 3 + n * n + n * k + k * k;
}

inline KernelLayout kernelLayout(int64_t n, int64_t m, int64_t p, bool hasQ,
                                 int64_t threads, int64_t sharedCapBytes) {
  KernelLayout k;
  k.threads = threads > 0 ? threads : defaultThreads(n, m, p);
  const int64_t sizes[6] = {hasQ ? n * n : 0, n, m * n, m, p * n, p};
  const bool present[6] = {hasQ, true, m > 0, m > 0, p > 0, p > 0};
  for (int i = 0; i < 6; ++i)
    if (present[i]) {
      k.offset[i] = k.dataDoubles;
      k.dataDoubles += sizes[i];
    }
  Footprint fp = plan(n, m, p, k.threads, sharedCapBytes / 8);
  k.sharedDoubles = fp.sharedDoubles;
  k.sharedBytes = fp.sharedDoubles * 8;
  k.keepOffset = k.dataDoubles + fp.globalDoubles;
  k.workDoubles = k.keepOffset + keepDoubles(n, m, p);
  return k;
}

/// A team's thread index and size, as the solver reads them: the fields by
/// default; a team may overload these (found by argument-dependent lookup)
/// to read them from where they are free. The GPU's block team reads the
/// hardware's thread registers, which the compiler may keep or re-read at
/// will: the fields of a team object that the solver's non-inlined
/// functions reach through a pointer were reloaded from local memory after
/// every store through a generic pointer, on every loop's bound.
template <class Team> int teamTid(const Team &T) { return T.tid; }
template <class Team> int teamSize(const Team &T) { return T.nt; }

/// Folds the parts of a team's nt threads with op, through `red` (nt slots
/// for the parts, then the partials: reductionGroups(nt) of them), and
/// gives every thread the same value. In two levels, so that no thread
/// reads all nt parts one after another (a chain of dependent
/// shared-memory loads, the longest wait of a reduction): the first g
/// threads each fold the parts g apart, then every thread folds those g
/// partials in order. A fixed shape: the same value on every thread, on
/// every run. Starts and ends with a barrier.
template <class Team, class Op>
double teamFold(Team &T, double *red, double part, Op op) {
  double *partial = red + teamSize(T);
  const int g = int(reductionGroups(teamSize(T)));
  red[teamTid(T)] = part;
  T.sync();
  if (teamTid(T) < g) {
    double s = red[teamTid(T)];
    for (int i = teamTid(T) + g; i < teamSize(T); i += g)
      s = op(s, red[i]);
    partial[teamTid(T)] = s;
  }
  T.sync();
  double s = partial[0];
  for (int i = 1; i < g; ++i)
    s = op(s, partial[i]);
  T.sync();
  return s;
}

/// (row, col) of e = t, t + step, ... in a row-major [*, cols] index
/// space, advanced without dividing: the loops over matrix elements would
/// otherwise divide per element, and on the GPU a 64-bit division and
/// remainder take ~30 instructions, more than the Cholesky update's one
/// multiply-add they index.
/// 32-bit: rows and columns of a matrix in one block's memory are far below
/// 2^31, and half the registers leave the solver without spills on sm_80.
struct Walk {
  int32_t i = 0, j = 0, di = 0, dj = 0, cols = 0;
  Walk(int64_t start, int64_t step, int64_t columns) : cols(int32_t(columns)) {
    if (cols > 0) {
      i = int32_t(start / cols);
      j = int32_t(start % cols);
      di = int32_t(step / cols);
      dj = int32_t(step % cols);
    }
  }
  void next() {
    i += di;
    j += dj;
    if (j >= cols) {
      j -= cols;
      ++i;
    }
  }
};

/// The upper triangle (diagonal included) of a [w, w] matrix as
/// e = t, t + step, ... < triangle(w): a Walk over a [*, w] rectangle whose
/// row r holds the triangle's row r (w - r elements) followed by its row
/// w - r (r elements), so that a team walks only the elements it updates
/// (half the iterations of a walk over the square that skips j < i).
struct TriWalk {
  Walk at;
  int32_t w;
  TriWalk(int64_t start, int64_t step, int64_t width)
      : at(start, step, width), w(int32_t(width)) {}
  bool first() const { return at.j < w - at.i; }
  int32_t i() const { return first() ? at.i : w - at.i; }
  int32_t j() const { return first() ? at.i + at.j : at.j; }
  void next() { at.next(); }
};
inline int64_t triangle(int64_t w) { return w * (w + 1) / 2; }

/// out[i, j] = fin(i, j, s), s = sum over r in order of
/// (wr[r] X[r, i]) X[r, j] (X[r, i] alone when wr is null), for the
/// upper triangle of out [c, c] (row-major), X [rows, c]. Each thread
/// takes 4 x 4 tiles of the upper triangle of tiles: per r it loads 8
/// values of X for 16 independent multiply-adds (element by element it
/// would load 2 values per multiply-add, in one chain of dependent adds).
/// Each element's sum is the element-by-element loop's, in the same order:
/// the same bits. With `mirror`, each value also goes to out[j, i], so that
/// both triangles hold the matrix. No barrier.
template <class Team, class Fin>
void teamSyrkUpper(Team &T, const double *X, const double *wr, int64_t rows,
                   int64_t c, double *out, Fin fin, bool mirror = false) {
  const int64_t tiles = (c + 3) / 4;
  TriWalk at(teamTid(T), teamSize(T), tiles);
  for (int64_t e = teamTid(T); e < triangle(tiles);
       e += teamSize(T), at.next()) {
    const int64_t i0 = 4 * int64_t(at.i()), j0 = 4 * int64_t(at.j());
    int64_t ii[4], jj[4]; // clamped: edge tiles compute some twice
    for (int a = 0; a < 4; ++a) {
      ii[a] = i0 + a < c ? i0 + a : c - 1;
      jj[a] = j0 + a < c ? j0 + a : c - 1;
    }
    double s[4][4] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const double *xr = X + r * c;
      double xi[4], xj[4];
      for (int a = 0; a < 4; ++a) {
        xi[a] = wr ? wr[r] * xr[ii[a]] : xr[ii[a]];
        xj[a] = xr[jj[a]];
      }
      for (int a = 0; a < 4; ++a)
        for (int b = 0; b < 4; ++b)
          s[a][b] += xi[a] * xj[b];
    }
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) {
        const int64_t i = i0 + a, j = j0 + b;
        if (i < c && j < c && j >= i) {
          const double v = fin(i, j, s[a][b]);
          out[i * c + j] = v;
          if (mirror)
            out[j * c + i] = v;
        }
      }
  }
}

/// Y = U^{-T} Y for Y [n, c] (row stride c), every column by forward
/// substitution: at step k the team updates the elements (j > k, col)
/// with row k, and whoever updates row k + 1's element also finishes it
/// (divides by its pivot), since nobody reads row k + 1 during step k.
/// One barrier per row; each element sees the updates and the division
/// of a column-at-a-time solve in the same order (the same bits). (One
/// column per thread left most threads idle and the others in a chain of
/// n^2 / 2 dependent updates: the polish's Y has as many columns as
/// active constraints.)
template <class Team>
void teamSolveUpperTMulti(Team &T, const double *U, double *Y, int64_t n,
                          int64_t c) {
  if (n == 0)
    return T.sync();
  for (int64_t col = teamTid(T); col < c; col += teamSize(T))
    Y[col] /= U[0];
  T.sync();
  for (int64_t k = 0; k + 1 < n; ++k) {
    const double *uk = U + k * n, *yk = Y + k * c;
    const double pivot = U[(k + 1) * (n + 1)];
    Walk at(teamTid(T), teamSize(T), c);
    for (int64_t e = teamTid(T); e < (n - k - 1) * c;
         e += teamSize(T), at.next()) {
      const int64_t j = k + 1 + at.i, col = at.j;
      double v = Y[j * c + col] - uk[j] * yk[col];
      if (j == k + 1)
        v /= pivot;
      Y[j * c + col] = v;
    }
    T.sync();
  }
}

/// The problem (float64, row-major, the operands of one batch element; Q,
/// A/b and G/h may be null) and the options.
struct Problem {
  int64_t n = 0, m = 0, p = 0;
  const double *Q = nullptr, *q = nullptr, *A = nullptr, *b = nullptr,
               *G = nullptr, *h = nullptr;
  double tol = kTol;
  int64_t maxIter = 100;
};

struct Res {
  double nQz = 0, nAz = 0, zQz = 0, gap = 0, pobj = 0, merit = 0, raw = 0;
  bool finite = true;
};

/// Team: { int tid, nt; void sync(); } with team.sync() a barrier of all nt
/// threads. Every thread of the team calls solve() with the same arguments.
///
/// The problem is solved scaled, as QP.cpp scales it (QPScale.h): a Solver
/// of the caller's problem computes the scale factors and the scaled
/// problem (scale()), and a Solver of the scaled problem, given the factors,
/// solves it and differentiates through it. solveProblem() and
/// backwardProblem() do both steps. (The scaled Problem lives in the
/// caller's frame, as the caller's own does: a Problem held by value in the
/// Solver made ptxas spill registers in the layer kernels.)
template <class Team> class Solver {
public:
  /// `keep` (keepDoubles(), or null): where a solved problem leaves what
  /// backward() needs. `f32`: the data was rounded to float32, which may
  /// leave a positive semidefinite Q with eigenvalues near -1e-7 max Q_ii.
  /// `sc`: the factors P was scaled by (scale()); P.Q is the caller's Q,
  /// read divided by sc.obj.
  Solver(Team &team, const Problem &P, Work &w, double *keep = nullptr,
         bool f32 = false, qpscale::Scales sc = {})
      : T(team), P(P), W(w), keep(keep), maxRho(f32 ? 1e7 : 1e5), sc(sc),
        qScale(1 / sc.obj) {}

  /// The scale factors of this Solver's (caller's) problem, and into S the
  /// scaled problem: q, b, h, A and G scaled into W's buffers, Q as it is.
  qpscale::Scales scale(Problem &S);

  /// Solves the scaled problem; z, nu, lam (f64 internal, of the scaled
  /// problem: unscale() gives the caller's) are in W.z, W.nu, W.lam
  /// afterwards, and `keep` holds the scaled problem's.
  int32_t solve(int32_t &iterations);

  /// W.nu and W.lam of the scaled problem (status: solve()'s) as the
  /// caller's problem's multipliers: times c/a and c/g (a Farkas
  /// certificate, a direction, is normalized to max |.| = 1 again).
  void unscale(int32_t status);

  /// The backward pass of a problem that solve() solved with this `keep`:
  /// with incoming gradients gz [n], gnu [m], glam [p] of the caller's
  /// problem (null: zero; float32 when `f32`), solves the scaled active-set
  /// KKT system with the kept factorization (QP.cpp's backward; its
  /// least-squares solution where the system is singular) and writes
  /// the caller's operands' cotangents, float64, at dops + offset[k] (Q, q,
  /// A, b, G, h; those with offset -1 absent): dQ = (dz z^T + z dz^T) / 2,
  /// dq = dz, dA = dnu z^T + nu dz^T, db = -dnu, dG = dls z^T + lam dz^T,
  /// dh = -dls.
  void backward(const void *gz, const void *gnu, const void *glam, bool f32,
                double *dops, const int64_t offset[6]);

private:
  Team &T;
  const Problem &P;
  Work &W;
  double *keep;
  /// The largest regularization of Q + rho I, relative to rhoBase, that
  /// still counts Q as positive semidefinite (QP.cpp's Config::maxRho).
  double maxRho;
  /// The scale factors (c, a, g) of the problem, and 1 / c for qs().
  qpscale::Scales sc;
  double qScale;

  // The KKT system being factored: the IPM's (A, m, G, p, D) or the
  // polish's (C, m + k, no G).
  struct KKT {
    int64_t m = 0, p = 0;
    const double *A = nullptr;
    bool gcol = false; // G has at most one nonzero per row (W.gcol)
    double rho = 0, delta = 0, rhoBase = 0;
  };

  int tid() const { return teamTid(T); }
  int nt() const { return teamSize(T); }

  // ---- reductions (all threads get the same value; teamFold) ----
  template <class Op> double fold(double part, Op op) {
    return teamFold(T, W.red, part, op);
  }
  double sum(double part) {
    return fold(part, [](double a, double b) { return a + b; });
  }
  double maxr(double part) {
    return fold(part, [](double a, double b) { return mx(a, b); });
  }
  double minr(double part) {
    return fold(part, [](double a, double b) { return mn(a, b); });
  }
  double dot(const double *x, const double *y, int64_t n) {
    double s = 0;
    for (int64_t i = tid(); i < n; i += nt())
      s += x[i] * y[i];
    return sum(s);
  }
  /// The floor of inequality i's residual tests: its row's largest |entry|,
  /// 1 for a zero row (QP.cpp's rowFloor).
  double rowFloor(int64_t i) {
    double m = 0;
    for (int64_t j = 0; j < P.n; ++j)
      m = mx(m, fabsd(P.G[i * P.n + j]));
    return m > 0 ? m : 1.0;
  }
  double normInf(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = tid(); i < n; i += nt())
      s = mx(s, fabsd(x[i]));
    return maxr(s);
  }
  bool allFinite(const double *x, int64_t n) {
    double bad = 0;
    for (int64_t i = tid(); i < n; i += nt())
      if (!finite(x[i]))
        bad = 1;
    return sum(bad) == 0;
  }

  // ---- element-wise (end with a barrier) ----
  void copy(const double *x, double *y, int64_t n) {
    for (int64_t i = tid(); i < n; i += nt())
      y[i] = x[i];
    T.sync();
  }
  void fill(double *y, int64_t n, double v) {
    for (int64_t i = tid(); i < n; i += nt())
      y[i] = v;
    T.sync();
  }
  double qs(int64_t i, int64_t j) const { // E Q's symmetric part E, / c
    const int64_t n = P.n;
    const double v = (P.Q[i * n + j] + P.Q[j * n + i]) / 2 * qScale;
    return sc.columns ? v * W.cs[i] * W.cs[j] : v;
  }

  /// The variables' factors into W.cs (QP.cpp's columnScales: the same
  /// expressions, and maxima are exact in any order, so the same factors).
  /// Returns whether any is not 1.
  bool columnScales();

  // ---- dense kernels (row-major; end with a barrier) ----
  /// y = M x, M [r, c].
  void gemv(const double *M, const double *x, double *y, int64_t r,
            int64_t c) {
    for (int64_t i = tid(); i < r; i += nt()) {
      double s = 0;
      for (int64_t j = 0; j < c; ++j)
        s += M[i * c + j] * x[j];
      y[i] = s;
    }
    T.sync();
  }
  /// y += M^T x, M [r, c].
  void gemvTAdd(const double *M, const double *x, double *y, int64_t r,
                int64_t c) {
    for (int64_t j = tid(); j < c; j += nt()) {
      double s = 0;
      for (int64_t i = 0; i < r; ++i)
        s += M[i * c + j] * x[i];
      y[j] += s;
    }
    T.sync();
  }
  /// y = S x for S symmetric [n, n] with both triangles stored: thread i
  /// reads column i, so a warp's loads are consecutive (row i's were n
  /// doubles apart, a cache line each). The same terms in the same order as
  /// reading the upper triangle alone.
  void symv(const double *S, const double *x, double *y, int64_t n) {
    for (int64_t i = tid(); i < n; i += nt()) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j)
        s += S[j * n + i] * x[j];
      y[i] = s;
    }
    T.sync();
  }
  /// a = U^T U, U upper, in place (row-major [n, n]); false (on every
  /// thread) when a pivot is not above minPivot (or NaN), as
  /// dense::choleskyUpper. One barrier per column: the trailing update of
  /// column k scales row k's entries as it reads them, and row k itself is
  /// scaled (and its pivot written) during column k + 1, when nobody reads
  /// it any more.
  bool cholesky(double *a, int64_t n, double minPivot) {
    double prevInv = 0, prevU = 0;
    int64_t prevK = -1;
    for (int64_t k = 0; k < n; ++k) {
      const double *rk = a + k * n;
      const double d = rk[k];
      if (!(d > minPivot)) {
        T.sync();
        return false;
      }
      const double u = __builtin_sqrt(d), inv = 1.0 / u;
      // Trailing update, upper triangle: a[i, j] -= u_ki u_kj, i <= j, in
      // 4 x 4 tiles of the trailing triangle: each thread scales 8 values
      // of row k for 16 updates (an element at a time took ~20
      // instructions of indexing and loads for one multiply-add).
      const int64_t w = n - k - 1, tiles = (w + 3) / 4;
      TriWalk at(tid(), nt(), tiles);
      for (int64_t e = tid(); e < triangle(tiles); e += nt(), at.next()) {
        const int64_t i0 = k + 1 + 4 * int64_t(at.i()),
                      j0 = k + 1 + 4 * int64_t(at.j());
        double ri[4], rj[4];
        for (int c = 0; c < 4; ++c) {
          ri[c] = rk[i0 + c < n ? i0 + c : n - 1] * inv;
          rj[c] = rk[j0 + c < n ? j0 + c : n - 1] * inv;
        }
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) {
            const int64_t i = i0 + r, j = j0 + c;
            if (i < n && j < n && j >= i)
              a[i * n + j] -= ri[r] * rj[c];
          }
      }
      if (prevK >= 0)
        finishRow(a, n, prevK, prevU, prevInv);
      prevU = u;
      prevInv = inv;
      prevK = k;
      T.sync();
    }
    if (prevK >= 0)
      finishRow(a, n, prevK, prevU, prevInv);
    T.sync();
    return true;
  }
  /// Row k of the Cholesky factor: its pivot u and the rest scaled by 1/u.
  void finishRow(double *a, int64_t n, int64_t k, double u, double inv) {
    double *rk = a + k * n;
    for (int64_t j = k + 1 + tid(); j < n; j += nt())
      rk[j] *= inv;
    if (tid() == 0)
      rk[k] = u;
  }
  /// Thread 0 writes the w solved unknowns v into x[k, k + w).
  void storeSolved(double *x, const double *v, int64_t k, int64_t w) {
    if (tid() == 0)
      for (int c = 0; c < 4; ++c)
        if (c < w)
          x[k + c] = v[c];
  }
  // The substitutions' loops over a block's four unknowns have the constant
  // bound 4 and a guard for the last, narrower block, so that they unroll
  // and v, prev stay in registers: with the bound w, v was an array in
  // local memory, stored and reloaded within the chain of dependent
  // divisions each step waits on. The same operations in the same order.
  /// x = U^{-T} x (forward substitution), U upper [n, n] with row stride n,
  /// four unknowns per barrier: every thread solves the 4 x 4 diagonal block
  /// (the same values in the same order, so they agree), then the threads
  /// update the rest of x. The block's values are written one step later,
  /// by thread 0, when nobody reads them any more.
  void solveUpperT(const double *U, double *x, int64_t n) {
    double prev[4] = {0, 0, 0, 0};
    int64_t prevK = 0, prevW = 0;
    for (int64_t k = 0; k < n; k += 4) {
      const int64_t w = n - k < 4 ? n - k : 4;
      double v[4] = {0, 0, 0, 0};
      for (int a = 0; a < 4; ++a)
        if (a < w) {
          double t = x[k + a];
          for (int c = 0; c < a; ++c)
            t -= U[(k + c) * n + k + a] * v[c];
          v[a] = t / U[(k + a) * n + k + a];
        }
      for (int64_t j = k + w + tid(); j < n; j += nt()) {
        double t = x[j];
        for (int c = 0; c < 4; ++c)
          if (c < w)
            t -= U[(k + c) * n + j] * v[c];
        x[j] = t;
      }
      storeSolved(x, prev, prevK, prevW);
      for (int c = 0; c < 4; ++c)
        prev[c] = v[c];
      prevK = k;
      prevW = w;
      T.sync();
    }
    storeSolved(x, prev, prevK, prevW);
    T.sync();
  }
  /// x = U^{-1} x (back substitution), four unknowns per barrier as above.
  void solveUpper(const double *U, double *x, int64_t n) {
    double prev[4] = {0, 0, 0, 0};
    int64_t prevK = 0, prevW = 0;
    for (int64_t end = n; end > 0; end -= 4) {
      const int64_t w = end < 4 ? end : 4, k = end - w;
      double v[4] = {0, 0, 0, 0};
      for (int a = 3; a >= 0; --a)
        if (a < w) {
          double t = x[k + a];
          for (int c = a + 1; c < 4; ++c)
            if (c < w)
              t -= U[(k + a) * n + k + c] * v[c];
          v[a] = t / U[(k + a) * n + k + a];
        }
      for (int64_t i = tid(); i < k; i += nt()) {
        double t = x[i];
        for (int c = 0; c < 4; ++c)
          if (c < w)
            t -= U[i * n + k + c] * v[c];
        x[i] = t;
      }
      storeSolved(x, prev, prevK, prevW);
      for (int c = 0; c < 4; ++c)
        prev[c] = v[c];
      prevK = k;
      prevW = w;
      T.sync();
    }
    storeSolved(x, prev, prevK, prevW);
    T.sync();
  }
  void solveUpperTMulti(const double *U, double *Y, int64_t n, int64_t c) {
    teamSolveUpperTMulti(T, U, Y, n, c);
  }

  /// C = [A; G_act]: A's rows, then the active rows of G (W.rowOf) where
  /// rowOf puts them. No sync: the caller fills the right-hand side first.
  void buildActiveC() {
    const int64_t n = P.n, m = P.m, p = P.p;
    for (int64_t e = tid(); e < m * n; e += nt())
      W.C[e] = P.A[e];
    Walk at(tid(), nt(), n);
    for (int64_t e = tid(); e < p * n; e += nt(), at.next()) {
      const int64_t i = at.i, j = at.j;
      if (W.rowOf[i] >= 0)
        W.C[int64_t(W.rowOf[i]) * n + j] = P.G[e];
    }
  }

  // ---- the reduced KKT system (QP.cpp's KKT, dense mode) ----
  /// H = Qs + G^T D G (both triangles, for symv); p = 0 for the polish
  /// (H = Qs).
  void formH(const KKT &k) {
    const int64_t n = P.n;
    const bool dense = k.p && !k.gcol;
    teamSyrkUpper(
        T, P.G, W.D, dense ? k.p : 0, n, W.H,
        [&](int64_t i, int64_t j, double s) {
          return (P.Q ? qs(i, j) : 0.0) + s;
        },
        /*mirror=*/true);
    T.sync();
    if (k.p && k.gcol && tid() == 0) { // diagonal G^T D G, in row order
      for (int64_t r = 0; r < k.p; ++r)
        if (W.gcol[r] >= 0) {
          const int64_t c = int64_t(W.gcol[r]);
          const double gv = P.G[r * n + c];
          W.H[c * (n + 1)] += W.D[r] * gv * gv;
        }
    }
    T.sync();
  }

  bool factor(KKT &k) {
    const int64_t n = P.n, m = k.m;
    formH(k);
    double md = 0;
    for (int64_t i = tid(); i < n; i += nt())
      md = mx(md, fabsd(W.H[i * n + i]));
    const double maxDiag = maxr(md);
    if (!finite(maxDiag))
      return false;
    k.rho = k.rhoBase;
    for (int attempt = 0;; ++attempt) {
      TriWalk at(tid(), nt(), n);
      for (int64_t e = tid(); e < triangle(n); e += nt(), at.next()) {
        const int64_t i = at.i(), j = at.j();
        W.L[i * n + j] = W.H[i * n + j] + (i == j ? k.rho : 0.0);
      }
      T.sync();
      if (cholesky(W.L, n, kEps * k.rho))
        break;
      k.rho *= 100;
      if (attempt == 9)
        return false;
    }
    if (m == 0)
      return true;
    Walk at(tid(), nt(), m);
    for (int64_t e = tid(); e < n * m; e += nt(), at.next()) {
      const int64_t j = at.i, r = at.j;
      W.Y[e] = k.A[r * n + j];
    }
    T.sync();
    solveUpperTMulti(W.L, W.Y, n, m);
    k.delta = kReg;
    for (int attempt = 0; attempt < 10; ++attempt) {
      if (attempt)
        k.delta *= 100;
      const double delta = k.delta;
      teamSyrkUpper(T, W.Y, nullptr, n, m, W.LS,
                [&](int64_t i, int64_t j, double s) {
                  return s + (i == j ? delta : 0.0);
                });
      T.sync();
      if (cholesky(W.LS, m, kEps * k.delta))
        return true;
    }
    return false;
  }

  void solveReg(const KKT &k, const double *f, const double *g, double *x,
                double *y, double *t) {
    const int64_t n = P.n, m = k.m;
    copy(f, x, n);
    solveUpperT(W.L, x, n);
    if (m) {
      for (int64_t i = tid(); i < m; i += nt())
        y[i] = -g[i];
      T.sync();
      gemvTAdd(W.Y, x, y, n, m);
      solveUpperT(W.LS, y, m);
      solveUpper(W.LS, y, m);
      gemv(W.Y, y, t, n, m);
      for (int64_t j = tid(); j < n; j += nt())
        x[j] -= t[j];
      T.sync();
    }
    solveUpper(W.L, x, n);
  }

  void residual(const KKT &k, const double *f, const double *g,
                const double *x, const double *y, double *rx, double *ry) {
    const int64_t n = P.n, m = k.m;
    symv(W.H, x, rx, n);
    if (m)
      gemvTAdd(k.A, y, rx, m, n);
    for (int64_t j = tid(); j < n; j += nt())
      rx[j] = f[j] - rx[j];
    T.sync();
    if (m) {
      gemv(k.A, x, ry, m, n);
      for (int64_t i = tid(); i < m; i += nt())
        ry[i] = g[i] - ry[i];
      T.sync();
    }
  }

  void solveKKT(const KKT &k, const double *f, const double *g, double *x,
                double *y, bool direction = false) {
    const int64_t n = P.n, m = k.m;
    solveReg(k, f, g, x, y, W.ts);
    const double floor =
        direction ? 1e-13 * mx(normInf(f, n), normInf(g, m)) : 0.0;
    const double shrink = direction ? 0.25 : 1.0;
    double last = inf();
    for (int it = 0;; ++it) {
      residual(k, f, g, x, y, W.rx, W.ry);
      const double r = mx(normInf(W.rx, n), normInf(W.ry, m));
      if (it == kRefine || !(r < last * shrink) || r <= floor)
        break;
      last = r;
      solveReg(k, W.rx, W.ry, W.cx, W.cy, W.ts);
      for (int64_t j = tid(); j < n; j += nt())
        x[j] += W.cx[j];
      for (int64_t i = tid(); i < m; i += nt())
        y[i] += W.cy[i];
      T.sync();
    }
  }

  /// QP.cpp's leastSquaresAtSingularKKT, the same rule and steps (see its
  /// comment): where the active-set system is singular (the solution not
  /// unique: an LP tie, a PSD Q flat on the active constraints' face,
  /// dependent rows of [A; G_act]) and the right-hand side (W.f, W.g) has a
  /// component along its null space, the refined residual stays above 1e-6
  /// of the right-hand side; (x, y) is then replaced by the least-squares,
  /// minimum-norm solution, as diffcp (cvxpylayers) returns, instead of that
  /// component divided by rho. A consistent system leaves (x, y) as it is
  /// (one residual more than before, nothing written). Overwrites W.f and
  /// W.g; scratch W.rx, W.ry, W.cx, W.cy, W.ts. Not inlined, and `k`
  /// used by reference: inlined into backward() (128 registers a thread in
  /// the backward kernel), or with `k` by value or copied (then LLVM passes
  /// solveKKT's KKT in registers), ptxas spilled 50 to 870 bytes in it,
  /// solveKKT and backward() (sm_80, sm_90; the Sudoku layer). This way
  /// nothing spills; the KKTs of both kernels live in local memory (the
  /// stack frames grow by 112 and 120 bytes).
  __attribute__((noinline)) void
  leastSquaresAtSingularKKT(const KKT &k, double *x, double *y) {
    const int64_t n = P.n, m = k.m;
    double *f = W.f, *g = W.g;
    residual(k, f, g, x, y, W.rx, W.ry);
    const double r = mx(normInf(W.rx, n), normInf(W.ry, m));
    const double rhs = mx(normInf(f, n), normInf(g, m));
    if (!(r > 1e-6 * rhs))
      return;
    // The right-hand side's null-space component is rho/delta times the
    // regularized solution's: removed, then the system solved again.
    solveReg(k, f, g, W.cx, W.cy, W.ts);
    for (int64_t j = tid(); j < n; j += nt())
      f[j] -= k.rho * W.cx[j];
    for (int64_t i = tid(); i < m; i += nt())
      g[i] += k.delta * W.cy[i];
    T.sync();
    solveKKT(k, f, g, x, y);
    // Then the solution's null-space component, while what is removed
    // halves (QP.cpp: each removal is exact only to eps |S| / delta).
    double last = inf();
    for (int pass = 0; pass < 8; ++pass) {
      for (int64_t j = tid(); j < n; j += nt())
        W.rx[j] = k.rho * x[j];
      for (int64_t i = tid(); i < m; i += nt())
        W.ry[i] = -k.delta * y[i];
      T.sync();
      solveReg(k, W.rx, W.ry, W.cx, W.cy, W.ts);
      const double removed = mx(normInf(W.cx, n), normInf(W.cy, m));
      if (!(removed < last / 2))
        break;
      last = removed;
      for (int64_t j = tid(); j < n; j += nt())
        x[j] -= W.cx[j];
      for (int64_t i = tid(); i < m; i += nt())
        y[i] -= W.cy[i];
      T.sync();
    }
  }

  /// Row and column sums' maxima of |M| for M [r, c].
  void matNorms(const double *M, int64_t r, int64_t c, bool symQ,
                double &rows, double &cols) {
    double pr = 0, pc = 0;
    for (int64_t i = tid(); i < r; i += nt()) {
      double s = 0;
      for (int64_t j = 0; j < c; ++j)
        s += fabsd(symQ ? qs(i, j) : M[i * c + j]);
      pr = mx(pr, s);
    }
    for (int64_t j = tid(); j < c; j += nt()) {
      double s = 0;
      for (int64_t i = 0; i < r; ++i)
        s += fabsd(symQ ? qs(i, j) : M[i * c + j]);
      pc = mx(pc, s);
    }
    rows = maxr(pr);
    cols = maxr(pc);
  }

  /// max_j sum_i |M_ij| rho_i: the column norm of M's rows times rho
  /// (the rows before their equilibration; QP.cpp's colNorm).
  double colNormRows(const double *M, int64_t r, int64_t c, const double *rho) {
    double pc = 0;
    for (int64_t j = tid(); j < c; j += nt()) {
      double s = 0;
      for (int64_t i = 0; i < r; ++i)
        s += fabsd(M[i * c + j]) * rho[i];
      pc = mx(pc, s);
    }
    return maxr(pc);
  }
  /// max_i |x_i| * rho_i, or / rho_i with `divide`.
  double normRows(const double *x, int64_t r, const double *rho, bool divide) {
    double v = 0;
    for (int64_t i = tid(); i < r; i += nt())
      v = mx(v, divide ? fabsd(x[i]) / rho[i] : fabsd(x[i]) * rho[i]);
    return maxr(v);
  }

  Res residuals(const double *z, const double *nu, const double *lam,
                const double *s) {
    const int64_t n = P.n, m = P.m, p = P.p;
    Res r;
    double nAtnu = 0, nGtlam = 0;
    // The inequalities' residuals relative to their own row's terms
    // (QP.cpp).
    double relRi = 0;
    for (int64_t i = tid(); i < n; i += nt()) {
      double acc = 0;
      for (int64_t j = 0; P.Q && j < n; ++j)
        acc += qs(i, j) * z[j];
      W.rd[i] = acc;
    }
    T.sync();
    r.nQz = normInf(W.rd, n);
    const double zQz = r.zQz = dot(z, W.rd, n);
    if (m) {
      fill(W.atn, n, 0);
      gemvTAdd(P.A, nu, W.atn, m, n);
      nAtnu = normInf(W.atn, n);
      gemv(P.A, z, W.re, m, n);
      r.nAz = normInf(W.re, m);
      for (int64_t i = tid(); i < m; i += nt())
        W.re[i] -= P.b[i];
    }
    if (p) {
      fill(W.gtl, n, 0);
      gemvTAdd(P.G, lam, W.gtl, p, n);
      nGtlam = normInf(W.gtl, n);
      gemv(P.G, z, W.gz, p, n);
      for (int64_t i = tid(); i < p; i += nt()) {
        W.ri[i] = W.gz[i] + s[i] - P.h[i];
        relRi =
            mx(relRi, fabsd(W.ri[i]) /
                          (rowFloor(i) +
                           mx(mx(fabsd(P.h[i]), fabsd(W.gz[i])), fabsd(s[i]))));
      }
      relRi = maxr(relRi);
    }
    for (int64_t j = tid(); j < n; j += nt())
      W.rd[j] = W.rd[j] + (m ? W.atn[j] : 0.0) + (p ? W.gtl[j] : 0.0) +
                P.q[j];
    T.sync();
    r.gap = p ? dot(s, lam, p) : 0.0;
    r.pobj = zQz / 2 + dot(P.q, z, n);
    r.finite = allFinite(z, n) && allFinite(nu, m) && allFinite(lam, p) &&
               allFinite(s, p) && finite(r.gap) && finite(r.pobj);
    const double nq = normInf(P.q, n), nb = normInf(P.b, m);
    const double nrd = normInf(W.rd, n), nre = normInf(W.re, m),
                 nri = normInf(W.ri, p);
    r.merit = mx(mx(nrd / (1 + mx(mx(nq, r.nQz), mx(nAtnu, nGtlam))),
                    nre / (1 + mx(nb, r.nAz))),
                 mx(relRi, fabsd(r.gap) / mx(1.0, fabsd(r.pobj))));
    r.raw = mx(mx(nrd, nre), mx(nri, fabsd(r.gap)));
    if (!r.finite)
      r.merit = r.raw = inf();
    return r;
  }

  void direction(const KKT &k, const double *rc, double *dz, double *dnu,
                 double *dlam, double *ds) {
    const int64_t n = P.n, m = P.m, p = P.p;
    for (int64_t j = tid(); j < n; j += nt())
      W.f[j] = -W.rd[j];
    for (int64_t i = tid(); i < p; i += nt())
      W.tp[i] = -(W.D[i] * W.ri[i] - rc[i] / W.s[i]);
    for (int64_t i = tid(); i < m; i += nt())
      W.g[i] = -W.re[i];
    T.sync();
    if (p)
      gemvTAdd(P.G, W.tp, W.f, p, n);
    solveKKT(k, W.f, W.g, dz, dnu, /*direction=*/true);
    if (p) {
      gemv(P.G, dz, dlam, p, n);
      for (int64_t i = tid(); i < p; i += nt()) {
        dlam[i] = W.D[i] * (dlam[i] + W.ri[i]) - rc[i] / W.s[i];
        ds[i] = -(rc[i] + W.s[i] * dlam[i]) / W.lam[i];
      }
      T.sync();
    }
  }

  double maxStep(const double *ds, const double *dlam) {
    double a = 1;
    for (int64_t i = tid(); i < P.p; i += nt()) {
      if (ds[i] < 0)
        a = mn(a, -W.s[i] / ds[i]);
      if (dlam[i] < 0)
        a = mn(a, -W.lam[i] / dlam[i]);
    }
    return minr(a);
  }
};

template <class Team> bool Solver<Team>::columnScales() {
  const int64_t n = P.n, m = P.m, p = P.p;
  double *e = W.cs, *f = W.tn, *rmax = W.g; // rmax: A's rows, then G's
  fill(e, n, 1.0);
  // Each row's largest |entry| of M E, negative for a row with one nonzero
  // (a bound: left out of the columns' norms, as on the CPU).
  auto rows = [&]() {
    for (int64_t r = tid(); r < m + p; r += nt()) {
      const double *row = r < m ? P.A + r * n : P.G + (r - m) * n;
      double v = 0;
      int64_t nonzeros = 0;
      for (int64_t j = 0; j < n; ++j) {
        v = mx(v, fabsd(row[j]) * e[j]);
        nonzeros += row[j] != 0;
      }
      rmax[r] = nonzeros > 1 ? v : -v;
    }
    T.sync();
  };
  auto maxEQE = [&]() {
    double v = 0;
    Walk at(tid(), nt(), n);
    for (int64_t k = tid(); P.Q && k < n * n; k += nt(), at.next())
      v = mx(v, fabsd(qs(at.i, at.j)) * e[at.i] * e[at.j]);
    return maxr(v);
  };
  // Q's part: its positive diagonal (QP.cpp's columnScales says why).
  auto maxDiag = [&]() {
    double v = 0;
    for (int64_t j = tid(); P.Q && j < n; j += nt())
      v = mx(v, qs(j, j) * e[j] * e[j]);
    return maxr(v);
  };
  bool any = false;
  for (int pass = 0; pass < qpscale::kColumnPasses; ++pass) {
    rows();
    const double md = maxDiag();
    double moved = 0;
    for (int64_t j = tid(); j < n; j += nt()) {
      double nrm = 0;
      if (md > 0)
        nrm = mx(nrm, qs(j, j) * e[j] * e[j] / md);
      for (int64_t r = 0; r < m + p; ++r) {
        const double a = r < m ? P.A[r * n + j] : P.G[(r - m) * n + j];
        if (rmax[r] > 0)
          nrm = mx(nrm, fabsd(a) * e[j] / rmax[r]);
      }
      f[j] = qpscale::columnStep(nrm, e[j], P.q[j]);
      if (f[j] != 1)
        moved = 1;
    }
    if (sum(moved) == 0)
      break;
    for (int64_t j = tid(); j < n; j += nt())
      e[j] *= f[j];
    T.sync();
    any = true;
  }
  // The common factor (QPScale.h's rhsScale), from the right-hand sides.
  rows();
  const double mq = maxEQE();
  double rhs = 0;
  if (mq > 0) {
    const double c = qpscale::pow2Floor(mq);
    for (int64_t j = tid(); j < n; j += nt())
      rhs = mx(rhs, fabsd(P.q[j]) * e[j] / c);
  }
  for (int64_t r = tid(); r < m + p; r += nt())
    if (rmax[r] != 0)
      rhs = mx(rhs, fabsd(r < m ? P.b[r] : P.h[r - m]) /
                        qpscale::pow2Floor(fabsd(rmax[r])));
  const double sigma = qpscale::rhsScale(maxr(rhs));
  if (sigma != 1) {
    for (int64_t j = tid(); j < n; j += nt())
      e[j] *= sigma;
    T.sync();
  }
  return any || sigma != 1;
}

template <class Team> qpscale::Scales Solver<Team>::scale(Problem &S) {
  const int64_t n = P.n, m = P.m, p = P.p;
  // The variables first (E = diag(W.cs), QP.cpp's scaleProblem): E Q E
  // (read through qs() by the scaled problem's Solver), E q, A E, G E.
  const bool cols = columnScales();
  const double *e = W.cs;
  double mq = 0;
  {
    Walk at(tid(), nt(), n);
    for (int64_t k = tid(); P.Q && k < n * n; k += nt(), at.next())
      mq = mx(mq, fabsd(qs(at.i, at.j)) * e[at.i] * e[at.j]);
  }
  const double maxQ = maxr(mq);
  for (int64_t i = tid(); i < n; i += nt())
    W.qh[i] = P.q[i] * e[i];
  {
    Walk at(tid(), nt(), n);
    for (int64_t k = tid(); k < m * n; k += nt(), at.next())
      W.Ah[k] = P.A[k] * e[at.j];
  }
  {
    Walk at(tid(), nt(), n);
    for (int64_t k = tid(); k < p * n; k += nt(), at.next())
      W.Gh[k] = P.G[k] * e[at.j];
  }
  T.sync();
  qpscale::Scales f = qpscale::scalesOf(
      maxQ, normInf(W.qh, n), normInf(W.Ah, m * n), normInf(W.Gh, p * n));
  f.columns = cols;
  const double ic = 1 / f.obj, ia = 1 / f.eq, ig = 1 / f.ineq;
  for (int64_t i = tid(); i < n; i += nt())
    W.qh[i] *= ic;
  for (int64_t i = tid(); i < m; i += nt())
    W.bh[i] = P.b[i] * ia;
  for (int64_t i = tid(); i < p; i += nt())
    W.hh[i] = P.h[i] * ig;
  for (int64_t k = tid(); k < m * n; k += nt())
    W.Ah[k] *= ia;
  for (int64_t k = tid(); k < p * n; k += nt())
    W.Gh[k] *= ig;
  T.sync();
  // Each row of A (and b) and of G (and h) equilibrated too, by rsA, rs
  // <= 1 (QP.cpp's rowScale: the same factors, bit for bit).
  auto equilibrate = [&](double *M, double *v, int64_t rows, double *rs) {
    for (int64_t r = tid(); r < rows; r += nt()) {
      double mr = 0;
      for (int64_t j = 0; j < n; ++j)
        mr = mx(mr, fabsd(M[r * n + j]));
      double rho = qpscale::pow2Floor(mr);
      if (!(rho > 0) || !(fabsd(v[r]) / rho <= 1.7976931348623157e308 / 4))
        rho = 1;
      rs[r] = rho;
      if (rho != 1) {
        for (int64_t j = 0; j < n; ++j)
          M[r * n + j] /= rho;
        v[r] /= rho;
      }
    }
  };
  equilibrate(W.Ah, W.bh, m, W.rsA);
  equilibrate(W.Gh, W.hh, p, W.rs);
  T.sync();
  S = P;
  S.q = W.qh;
  if (m) {
    S.A = W.Ah;
    S.b = W.bh;
  }
  if (p) {
    S.G = W.Gh;
    S.h = W.hh;
  }
  return f;
}

template <class Team> void Solver<Team>::unscale(int32_t status) {
  const int64_t n = P.n, m = P.m, p = P.p;
  // z = E z^; a direction of unbounded descent is normalized again.
  if (sc.columns) {
    for (int64_t j = tid(); j < n; j += nt())
      W.z[j] *= W.cs[j];
    T.sync();
    const double nz = normInf(W.z, n);
    for (int64_t j = tid(); status == DualInfeasible && nz > 0 && j < n;
         j += nt())
      W.z[j] /= nz;
    T.sync();
  }
  const bool farkas = status == PrimalInfeasible;
  const double fnu = (farkas ? 1.0 : sc.obj) / sc.eq;
  const double flam = (farkas ? 1.0 : sc.obj) / sc.ineq;
  for (int64_t i = tid(); i < m; i += nt())
    W.nu[i] *= fnu / W.rsA[i];
  for (int64_t i = tid(); i < p; i += nt())
    W.lam[i] *= flam / W.rs[i];
  T.sync();
  if (farkas) {
    const double ny = mx(normInf(W.nu, m), normInf(W.lam, p));
    for (int64_t i = tid(); ny > 0 && i < m; i += nt())
      W.nu[i] /= ny;
    for (int64_t i = tid(); ny > 0 && i < p; i += nt())
      W.lam[i] /= ny;
    T.sync();
  }
}

template <class Team> int32_t Solver<Team>::solve(int32_t &iterations) {
  const int64_t n = P.n, m = P.m, p = P.p;
  const double tol = P.tol;
  double *z = W.z, *nu = W.nu, *lam = W.lam, *s = W.s;

  KKT kkt;
  kkt.m = m;
  kkt.p = p;
  kkt.A = P.A;
  if (p) {
    // At most one nonzero per row of G: G^T D G is diagonal.
    double many = 0;
    for (int64_t r = tid(); r < p; r += nt()) {
      int64_t col = -1;
      for (int64_t j = 0; j < n; ++j)
        if (P.G[r * n + j] != 0) {
          if (col >= 0) {
            many = 1;
            break;
          }
          col = j;
        }
      W.gcol[r] = double(col);
    }
    kkt.gcol = sum(many) == 0;
  }
  {
    double mq = 0;
    for (int64_t i = tid(); P.Q && i < n; i += nt())
      mq = mx(mq, qs(i, i));
    kkt.rhoBase = kReg * mx(1.0, maxr(mq));
  }
  double nQ = 0, nQc = 0, nA = 0, nAtE = 0, nG = 0, nGtE = 0;
  if (P.Q)
    matNorms(P.Q, n, n, true, nQ, nQc);
  if (m)
    matNorms(P.A, m, n, false, nA, nAtE);
  if (p)
    matNorms(P.G, p, n, false, nG, nGtE);
  const double nq = normInf(P.q, n);
  // The Farkas test in the rows' units before their equilibration (QP.cpp).
  const double nb = m ? normRows(P.b, m, W.rsA, false) : 0.0,
               nh = p ? normRows(P.h, p, W.rs, false) : 0.0;
  const double nAt = m ? colNormRows(P.A, m, n, W.rsA) : 0.0,
               nGt = p ? colNormRows(P.G, p, n, W.rs) : 0.0;

  // Start (cvxopt's): D = I, then s = h - Gz, lam = Gz - h, shifted.
  fill(W.D, p, 1.0);
  if (!factor(kkt)) {
    iterations = 0;
    fill(z, n, 0);
    fill(nu, m, 0);
    fill(lam, p, 0);
    return NumericalError;
  }
  for (int64_t j = tid(); j < n; j += nt())
    W.f[j] = -P.q[j];
  T.sync();
  if (p)
    gemvTAdd(P.G, P.h, W.f, p, n);
  copy(P.b, W.g, m);
  solveKKT(kkt, W.f, W.g, z, nu);
  if (p) {
    gemv(P.G, z, s, p, n);
    double ms = inf(), ml = inf();
    for (int64_t i = tid(); i < p; i += nt()) {
      lam[i] = s[i] - P.h[i];
      s[i] = P.h[i] - s[i];
      ms = mn(ms, s[i]);
      ml = mn(ml, lam[i]);
    }
    const double minS = minr(ms), minL = minr(ml);
    for (int64_t i = tid(); i < p; i += nt()) {
      if (minS < 1e-2)
        s[i] += 1.0 - minS;
      if (minL < 1e-2)
        lam[i] += 1.0 - minL;
    }
    T.sync();
  }

  int32_t status = IterationLimit;
  int64_t it = 0, bestIt = 0;
  double best = inf();
  for (;; ++it) {
    Res r = residuals(z, nu, lam, s);
    const double gap = r.gap, mu = p ? gap / double(p) : 0.0;
    if (!r.finite) {
      status = NumericalError;
      break;
    }
    if (r.merit <= tol) {
      status = Solved;
      break;
    }
    if (r.merit < best) {
      if (r.merit < best * 0.9)
        bestIt = it;
      best = r.merit;
      for (int64_t j = tid(); j < n; j += nt())
        W.bz[j] = z[j];
      for (int64_t i = tid(); i < m; i += nt())
        W.bnu[i] = nu[i];
      for (int64_t i = tid(); i < p; i += nt()) {
        W.blam[i] = lam[i];
        W.bs[i] = s[i];
      }
      T.sync();
    } else if (it - bestIt >= 10) {
      status = IterationLimit; // stalled
      break;
    }

    if (m || p) {
      const double ny =
          mx(normRows(nu, m, W.rsA, true), normRows(lam, p, W.rs, true));
      const double hy = dot(P.b, nu, m) + dot(P.h, lam, p);
      for (int64_t j = tid(); j < n; j += nt())
        W.tn[j] = (m ? W.atn[j] : 0.0) + (p ? W.gtl[j] : 0.0);
      T.sync();
      const double res = normInf(W.tn, n);
      if (ny > 0 && hy < -kCertObj * ny * mx(nb, nh) &&
          res <= kCertRes * ny * mx(nAt, nGt)) {
        for (int64_t i = tid(); i < m; i += nt())
          nu[i] /= ny;
        for (int64_t i = tid(); i < p; i += nt())
          lam[i] /= ny;
        T.sync();
        status = PrimalInfeasible;
        break;
      }
    }
    {
      const double nz = normInf(z, n);
      const double qz = dot(P.q, z, n);
      double mg = 0;
      for (int64_t i = tid(); i < p; i += nt())
        mg = mx(mg, W.gz[i]);
      const double maxGz = maxr(mg);
      // The objective must still decrease along the ray beyond z (QP.cpp:
      // the minimizer of a positive definite Q of condition 1e9 or more
      // otherwise passes for a direction of unbounded descent).
      if (nz > 0 && qz < -kCertObj * nz * nq && r.zQz < -qz / 2 &&
          r.nQz <= kCertRes * nz * nQ && r.nAz <= kCertRes * nz * nA &&
          maxGz <= kCertRes * nz * nG) {
        for (int64_t j = tid(); j < n; j += nt())
          z[j] /= nz;
        T.sync();
        status = DualInfeasible;
        break;
      }
    }
    if (it >= P.maxIter) {
      status = IterationLimit;
      break;
    }

    for (int64_t i = tid(); i < p; i += nt())
      W.D[i] = lam[i] / s[i];
    T.sync();
    if (!factor(kkt)) {
      status = NumericalError;
      break;
    }
    double alpha = 1;
    if (p) {
      for (int64_t i = tid(); i < p; i += nt())
        W.rc[i] = s[i] * lam[i];
      T.sync();
      direction(kkt, W.rc, W.dz, W.dnu, W.dlamA, W.dsA);
      const double aAff = maxStep(W.dsA, W.dlamA);
      double part = 0;
      for (int64_t i = tid(); i < p; i += nt())
        part += (s[i] + aAff * W.dsA[i]) * (lam[i] + aAff * W.dlamA[i]);
      const double muAff = sum(part) / double(p);
      double sigma = 0;
      if (mu > 0) {
        const double ratio = mx(0.0, muAff / mu);
        sigma = ratio * ratio * ratio;
      }
      sigma = mn(sigma, 1.0);
      for (int64_t i = tid(); i < p; i += nt())
        W.rc[i] = s[i] * lam[i] + W.dsA[i] * W.dlamA[i] - sigma * mu;
      T.sync();
      direction(kkt, W.rc, W.dz, W.dnu, W.dlam, W.ds);
      alpha = mn(1.0, 0.99 * maxStep(W.ds, W.dlam));
    } else {
      direction(kkt, W.rc, W.dz, W.dnu, W.dlam, W.ds);
    }
    for (int64_t j = tid(); j < n; j += nt())
      z[j] += alpha * W.dz[j];
    for (int64_t i = tid(); i < m; i += nt())
      nu[i] += alpha * W.dnu[i];
    for (int64_t i = tid(); i < p; i += nt()) {
      lam[i] += alpha * W.dlam[i];
      s[i] += alpha * W.ds[i];
    }
    T.sync();
  }
  iterations = int32_t(it);
  bool polishOnly = false;
  if (status == IterationLimit || status == NumericalError) {
    if (!(best < inf()))
      return status;
    copy(W.bz, z, n);
    copy(W.bnu, nu, m);
    copy(W.blam, lam, p);
    copy(W.bs, s, p);
    polishOnly = true;
  } else if (status != Solved) {
    return status;
  }

  // Polish on the active set {k : lam_k > s_k}, corrected up to 3 times.
  for (int64_t i = tid(); i < p; i += nt())
    W.active[i] = lam[i] > s[i] ? 1.0 : 0.0;
  T.sync();
  KKT eq;
  eq.rhoBase = kkt.rhoBase;
  eq.A = W.C;
  // The polish with the active set W.active: pz, py and ps = G pz (rowOf:
  // the row of C of each active inequality); false when Q is not positive
  // semidefinite or nothing factorizes.
  int64_t k = 0;
  auto polish = [&]() -> bool {
    // Rows of C: A's, then the active rows of G in order (rowOf).
    if (tid() == 0) {
      int64_t r = m;
      for (int64_t i = 0; i < p; ++i)
        W.rowOf[i] = W.active[i] != 0 ? double(r++) : -1.0;
    }
    T.sync();
    double part = 0;
    for (int64_t i = tid(); i < p; i += nt())
      part += W.active[i] != 0;
    k = int64_t(sum(part));
    const int64_t mc = m + k;
    buildActiveC();
    for (int64_t i = tid(); i < m; i += nt())
      W.g[i] = P.b[i];
    for (int64_t i = tid(); i < p; i += nt())
      if (W.rowOf[i] >= 0)
        W.g[int64_t(W.rowOf[i])] = P.h[i];
    T.sync();
    eq.m = mc;
    eq.p = 0;
    if (!factor(eq))
      return false;
    // As QP.cpp's polish: a Q + rho I that needed more than the data's
    // rounding explains means Q is not positive semidefinite, and the
    // point found only stationary.
    if (eq.rho > maxRho * kkt.rhoBase)
      return false;
    for (int64_t j = tid(); j < n; j += nt())
      W.f[j] = -P.q[j];
    T.sync();
    solveKKT(eq, W.f, W.g, W.pz, W.py);
    gemv(P.G, W.pz, W.ps, p, n);
    return true;
  };
  for (int round = 0;; ++round) {
    if (!polish())
      return NumericalError;
    if (round == 3)
      break;
    const double multTol = tol * (1 + normInf(W.py + m, k));
    double changed = 0;
    if (tid() == 0)
      for (int64_t i = 0; i < p; ++i) {
        const double violTol =
            tol * (rowFloor(i) + mx(fabsd(P.h[i]), fabsd(W.ps[i])));
        if (W.active[i] == 0 && W.ps[i] - P.h[i] > violTol) {
          W.active[i] = 1;
          changed = 1;
        } else if (W.active[i] != 0 &&
                   W.py[int64_t(W.rowOf[i])] < -multTol) {
          W.active[i] = 0;
          changed = 1;
        }
      }
    if (sum(changed) == 0)
      break;
  }
  // Kept if no worse than the interior point; else once more without the
  // constraints whose multipliers came out negative (QP.cpp).
  const Res before = residuals(z, nu, lam, s);
  Res after;
  bool polished = false;
  // A polish within the tolerance of the data's scale is kept even where
  // the interior point's residuals were smaller (QP.cpp).
  const double dq = normInf(P.q, n), db = normInf(P.b, m), dh = normInf(P.h, p);
  const double dataScale = 1 + mx(dq, mx(db, dh));
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (int64_t i = tid(); i < p; i += nt()) {
      W.ps[i] = mx(0.0, P.h[i] - W.ps[i]);
      W.pl[i] = W.rowOf[i] >= 0 ? mx(0.0, W.py[int64_t(W.rowOf[i])]) : 0.0;
    }
    T.sync();
    after = residuals(W.pz, W.py, W.pl, W.ps);
    if (after.merit <= before.merit &&
        (after.raw <= before.raw || after.raw <= tol * dataScale)) {
      polished = true;
      copy(W.pz, z, n);
      copy(W.py, nu, m);
      copy(W.pl, lam, p);
      copy(W.ps, s, p);
      break;
    }
    // The kept rows (rowOf) must keep matching eq (the backward pass).
    if (attempt == 1)
      break;
    double negative = 0;
    if (tid() == 0)
      for (int64_t i = 0; i < p; ++i) {
        W.pl[i] = W.active[i]; // the first set, should the retry fail
        if (W.rowOf[i] >= 0 && W.py[int64_t(W.rowOf[i])] < 0) {
          W.active[i] = 0;
          negative = 1;
        }
      }
    if (sum(negative) == 0)
      break;
    if (!polish()) {
      copy(W.pl, W.active, p);
      if (!polish())
        return NumericalError;
      break;
    }
  }
  if (polishOnly && (polished ? after.merit : before.merit) > tol)
    return status;
  if (keep) {
    // For backward(): the solution, the active set and the active-set
    // system's factorization (the limit of the IPM's; docs/qp.md).
    const int64_t mc = eq.m;
    double *kz = keep, *knu = kz + n, *klam = knu + m, *krow = klam + p;
    double *kL = krow + p + 3, *kY = kL + n * n, *kLS = kY + n * (m + p);
    copy(z, kz, n);
    copy(nu, knu, m);
    copy(lam, klam, p);
    copy(W.rowOf, krow, p);
    if (tid() == 0) {
      krow[p] = double(mc);
      krow[p + 1] = eq.rho;
      krow[p + 2] = eq.delta;
    }
    copy(W.L, kL, n * n);
    copy(W.Y, kY, n * mc);
    copy(W.LS, kLS, mc * mc);
  }
  return Solved;
}

template <class Team>
void Solver<Team>::backward(const void *gz, const void *gnu, const void *glam,
                            bool f32, double *dops, const int64_t offset[6]) {
  const int64_t n = P.n, m = P.m, p = P.p;
  const double *kz = keep, *knu = kz + n, *klam = knu + m, *krow = klam + p;
  const int64_t mc = int64_t(krow[p]);
  const double *kL = krow + p + 3, *kY = kL + n * n, *kLS = kY + n * (m + p);
  auto get = [&](const void *v, int64_t i) {
    if (!v)
      return 0.0;
    return f32 ? double(static_cast<const float *>(v)[i])
               : static_cast<const double *>(v)[i];
  };
  copy(kL, W.L, n * n);
  copy(kY, W.Y, n * mc);
  copy(kLS, W.LS, mc * mc);
  copy(krow, W.rowOf, p);
  // C = [A; G_act] and its right-hand side, as the polish built them. The
  // system is the scaled problem's: with y^ = Dc y / c for Dc = diag(a, g rs)
  // on C's rows, its right-hand side is (-gz / c, -Dc^{-1} (gnu; glam))
  // (QP.cpp's backward).
  buildActiveC();
  for (int64_t i = tid(); i < m; i += nt())
    W.g[i] = -get(gnu, i) / (sc.eq * W.rsA[i]);
  for (int64_t i = tid(); i < p; i += nt())
    if (W.rowOf[i] >= 0)
      W.g[int64_t(W.rowOf[i])] = -get(glam, i) / (sc.ineq * W.rs[i]);
  // With the variables' factors E: dz = E x, and x's right-hand side is
  // -E gz / c.
  for (int64_t j = tid(); j < n; j += nt())
    W.f[j] = -get(gz, j) * (sc.columns ? W.cs[j] : 1.0) / sc.obj;
  T.sync();
  KKT eq;
  eq.m = mc;
  eq.p = 0;
  eq.A = W.C;
  eq.rho = krow[p + 1];
  eq.delta = krow[p + 2];
  formH(eq); // H = Qs, for the refinement's residuals
  solveKKT(eq, W.f, W.g, W.dz, W.y);
  leastSquaresAtSingularKKT(eq, W.dz, W.y);
  // The kept z is the scaled problem's: E z^ is the caller's.
  if (sc.columns) {
    for (int64_t j = tid(); j < n; j += nt()) {
      W.dz[j] *= W.cs[j];
      W.z[j] = kz[j] * W.cs[j];
    }
  } else {
    for (int64_t j = tid(); j < n; j += nt())
      W.z[j] = kz[j];
  }
  // Back to the caller's problem: dnu = c/a y^_A, dls = c/g y^_G; the kept
  // nu and lam are the scaled problem's, times c/a and c/g likewise.
  const double fnu = sc.obj / sc.eq, flam = sc.obj / sc.ineq;
  for (int64_t i = tid(); i < m; i += nt()) {
    W.dnu[i] = W.y[i] * fnu / W.rsA[i];
    W.nu[i] = knu[i] * fnu / W.rsA[i];
  }
  for (int64_t i = tid(); i < p; i += nt()) {
    const double fr = flam / W.rs[i]; // the row's equilibration too
    W.dlam[i] = W.rowOf[i] >= 0 ? W.y[int64_t(W.rowOf[i])] * fr : 0.0;
    W.lam[i] = klam[i] * fr;
  }
  T.sync();
  const double *dz = W.dz, *dnu = W.dnu, *dls = W.dlam;
  kz = W.z;
  if (offset[0] >= 0) {
    Walk at(tid(), nt(), n);
    for (int64_t e = tid(); e < n * n; e += nt(), at.next()) {
      const int64_t i = at.i, j = at.j;
      dops[offset[0] + e] = (dz[i] * kz[j] + kz[i] * dz[j]) / 2;
    }
  }
  for (int64_t j = tid(); j < n; j += nt())
    dops[offset[1] + j] = dz[j];
  if (offset[2] >= 0) {
    Walk at(tid(), nt(), n);
    for (int64_t e = tid(); e < m * n; e += nt(), at.next()) {
      const int64_t k = at.i, j = at.j;
      dops[offset[2] + e] = dnu[k] * kz[j] + W.nu[k] * dz[j];
    }
  }
  if (offset[3] >= 0)
    for (int64_t k = tid(); k < m; k += nt())
      dops[offset[3] + k] = -dnu[k];
  if (offset[4] >= 0) {
    Walk at(tid(), nt(), n);
    for (int64_t e = tid(); e < p * n; e += nt(), at.next()) {
      const int64_t k = at.i, j = at.j;
      dops[offset[4] + e] = dls[k] * kz[j] + W.lam[k] * dz[j];
    }
  }
  if (offset[5] >= 0)
    for (int64_t k = tid(); k < p; k += nt())
      dops[offset[5] + k] = -dls[k];
  T.sync();
}

/// Solves one problem with the team and writes z [n], nu [m], lam [p] (as
/// float32 when `f32`, else float64), the status and the iterations; a
/// solved problem leaves what the backward pass needs in `keep` (if given).
template <class Team>
void solveProblem(Team &team, const Problem &P, Work &w, void *z, void *nu,
                  void *lam, bool f32, int32_t *status, int32_t *iterations,
                  double *keep = nullptr) {
  Problem S;
  const qpscale::Scales sc = Solver<Team>(team, P, w).scale(S);
  Solver<Team> solver(team, S, w, keep, f32, sc);
  int32_t its = 0;
  const int32_t st = solver.solve(its);
  solver.unscale(st);
  auto put = [&](const double *src, void *dst, int64_t count) {
    if (!dst)
      return;
    for (int64_t i = teamTid(team); i < count; i += teamSize(team)) {
      if (f32)
        static_cast<float *>(dst)[i] = float(src[i]);
      else
        static_cast<double *>(dst)[i] = src[i];
    }
  };
  put(w.z, z, P.n);
  put(w.nu, nu, P.m);
  put(w.lam, lam, P.p);
  if (teamTid(team) == 0) {
    if (status)
      *status = st;
    if (iterations)
      *iterations = its;
  }
  team.sync();
}

/// The backward pass of problem P, which solveProblem() solved and left
/// `keep` of (Solver::backward's arguments).
template <class Team>
void backwardProblem(Team &team, const Problem &P, Work &w, double *keep,
                     const void *gz, const void *gnu, const void *glam,
                     bool f32, double *dops, const int64_t offset[6]) {
  Problem S;
  const qpscale::Scales sc = Solver<Team>(team, P, w).scale(S);
  Solver<Team>(team, S, w, keep, f32, sc)
      .backward(gz, gnu, glam, f32, dops, offset);
}

} // namespace qpblock
} // namespace optim

#endif // OPTIM_QPBLOCK_H
