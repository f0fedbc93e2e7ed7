//===- QP.h - batched differentiable quadratic programs (OptNet layers) ---===//
//
// Solves, for every element of a batch,
//
//   minimize 1/2 z^T Q z + q^T z   subject to   A z = b,  G z <= h
//
// with a dense primal-dual interior-point method (Mehrotra predictor-
// corrector), and differentiates the solution (z, nu, lam) with respect to
// Q, q, A, b, G, h through the KKT conditions at the solution (OptNet, Amos &
// Kolter 2017), reusing the factorization of the forward pass. docs/qp.md
// describes the method, its stopping and infeasibility tests and the
// backward formulas.
//
// Shapes (row-major, element type `dtype`, f32 or f64), for n variables, m
// equalities and p inequalities:
//
//   operand  shared   batched         gradient (backward)
//   Q        [n, n]   [B, n, n]       like the operand
//   q        [n]      [B, n]          like the operand
//   A        [m, n]   [B, m, n]       like the operand
//   b        [m]      [B, m]          like the operand
//   G        [p, n]   [B, p, n]       like the operand
//   h        [p]      [B, p]          like the operand
//
// A shared operand (no leading batch dimension) is used by every element and
// its gradient is the SUM over the batch (qpth averages instead). The batch
// size is the leading dimension of the batched operands (which must agree),
// or QPProblem::batch when none is batched (default 1). Q may be absent (a
// linear program: Q = 0); A and b are absent together (m = 0), and so are G
// and h (p = 0). Q is used through its symmetric part (Q + Q^T) / 2, which
// leaves the objective unchanged; it must be positive semidefinite.
//
// Ownership: QPSolver never owns the data. forward() reads the operands and
// writes the caller's output buffers; it keeps its own copy of what backward()
// needs (the solution and the factorization at it), so the caller may reuse
// its buffers, but backward() reads the operands again: they must be the same,
// unchanged, until backward() returns.
//
// Errors (shape mismatches, a batch of 0, non-finite data, backward() before
// forward() or on an unsolved problem) throw optim::Error and change nothing.
// A problem that is infeasible or unbounded is not an error: its status says
// so (see QPStatus), and QPSolver::requireSolved() turns that into an Error.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_QP_H
#define OPTIM_QP_H

#include "optim/Rule.h" // optim::Error, optim::DType

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace optim {

/// Per problem. The values are those of OPTIM_QP_* in KernelABI.h.
enum class QPStatus : int32_t {
  /// Residuals and duality gap below the tolerance: z, nu, lam solve it.
  Solved = 0,
  /// `maxIter` iterations without meeting the tolerance: z, nu, lam are the
  /// last iterate.
  IterationLimit = 1,
  /// No z satisfies the constraints. nu and lam hold a Farkas certificate,
  /// scaled to max(|nu|, |lam|) = 1: A^T nu + G^T lam ~ 0, lam >= 0 and
  /// b^T nu + h^T lam < 0. z is the last iterate.
  PrimalInfeasible = 2,
  /// The objective is unbounded below. z holds a direction d, scaled to
  /// max|d| = 1, with Q d ~ 0, A d ~ 0, G d <~ 0 and q^T d < 0.
  DualInfeasible = 3,
  /// The iteration broke down (a factorization failed even with the largest
  /// regularization, or an iterate was not finite), or Q is not positive
  /// semidefinite (docs/qp.md): the last finite iterate.
  NumericalError = 4,
};

const char *qpStatusName(QPStatus status);

struct QPOptions {
  /// Relative tolerance on the residuals and the duality gap (docs/qp.md);
  /// 0 means 1e-8. Float32 problems are solved in float64 arithmetic, so
  /// the same tolerances apply to them.
  double tol = 0;
  /// Iteration cap of the interior-point method.
  int64_t maxIter = 100;
  /// Worker threads over the batch; 0 means one per hardware thread, at
  /// most 1024. The results do not depend on it.
  unsigned threads = 0;
};

/// One operand: a pointer to its data (row-major, the problem's dtype) and
/// its shape, without (shared) or with (batched) a leading batch dimension.
/// An absent operand has data == nullptr and an empty shape.
struct QPOperand {
  const void *data = nullptr;
  std::vector<int64_t> shape;
};

struct QPProblem {
  DType dtype = DType::F64;
  QPOperand Q, q, A, b, G, h;
  /// The batch size when every operand is shared (0: 1). With batched
  /// operands: 0, or their batch size.
  int64_t batch = 0;
};

/// The solution of a batch: caller-owned buffers of the problem's dtype.
struct QPSolutionBuffers {
  void *z = nullptr;             ///< [B, n]
  void *nu = nullptr;            ///< [B, m] (may be null when m = 0)
  void *lam = nullptr;           ///< [B, p] (may be null when p = 0)
  QPStatus *status = nullptr;    ///< [B] (required)
  int32_t *iterations = nullptr; ///< [B] (optional)
};

/// Incoming gradients (caller-owned, [B, n], [B, m], [B, p]; null: zero) and
/// the gradients written (null: not wanted; each shaped like its operand).
struct QPGradientBuffers {
  const void *dz = nullptr, *dnu = nullptr, *dlam = nullptr;
  void *dQ = nullptr, *dq = nullptr, *dA = nullptr, *db = nullptr,
       *dG = nullptr, *dh = nullptr;
};

class QPSolver {
public:
  explicit QPSolver(QPOptions options = {});
  ~QPSolver();
  QPSolver(QPSolver &&) noexcept;
  QPSolver &operator=(QPSolver &&) noexcept;

  /// Solves every problem of the batch; statuses per problem in
  /// out.status. Keeps the factorization at each solution for backward().
  void forward(const QPProblem &problem, const QPSolutionBuffers &out);

  /// Gradients of a loss through the last forward() of `problem` (the same
  /// operands, unchanged). Throws if a problem of the batch was not Solved.
  /// Where the solution or its multipliers are not unique (the KKT system
  /// at it is singular) the gradients come from the least-squares solution
  /// of that system (docs/qp.md, "Non-unique solutions").
  void backward(const QPProblem &problem, const QPGradientBuffers &grads);

  /// Throws optim::Error naming the first problem of `status[0..batch)` that
  /// is not Solved, and its status.
  static void requireSolved(const QPStatus *status, int64_t batch);

  struct Dims {
    int64_t batch = 0, n = 0, m = 0, p = 0;
  };
  /// The dimensions of the last forward().
  Dims dims() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl;
  /// impl, or an optim::Error naming `what` for a moved-from solver.
  Impl &live(const char *what) const;
};

} // namespace optim

#endif // OPTIM_QP_H
