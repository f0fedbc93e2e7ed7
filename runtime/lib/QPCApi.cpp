//===- QPCApi.cpp - the C ABI of the QP solver (KernelABI.h) --------------===//
//
// Thin wrappers over optim::QPSolver: C callers (compiled layers, ctypes)
// get return codes and a message instead of exceptions.
//
//===----------------------------------------------------------------------===//

#include "optim/CApiSupport.h"
#include "optim/KernelABI.h"
#include "optim/QP.h"

#include <memory>
#include <new>
#include <stdexcept>
#include <string>

struct optim_qp_solver {
  optim::QPSolver solver;
  std::string error;
  explicit optim_qp_solver(optim::QPOptions o) : solver(o) {}
};

namespace {

optim::QPProblem toProblem(const optim_qp_problem &c) {
  if (c.dtype != OPTIM_QP_F32 && c.dtype != OPTIM_QP_F64)
    throw optim::Error("qp: dtype must be OPTIM_QP_F32 or OPTIM_QP_F64");
  if (c.n < 0 || c.m < 0 || c.p < 0 || c.batch < 0)
    throw optim::Error("qp: negative dimension");
  const unsigned known = OPTIM_QP_BATCHED_Q | OPTIM_QP_BATCHED_q |
                         OPTIM_QP_BATCHED_A | OPTIM_QP_BATCHED_b |
                         OPTIM_QP_BATCHED_G | OPTIM_QP_BATCHED_h;
  if (unsigned(c.batched) & ~known)
    throw optim::Error("qp: batched has unknown bits (" +
                       std::to_string(unsigned(c.batched) & ~known) +
                       "); only the OPTIM_QP_BATCHED_* flags");
  // Operands given for constraints that the dimensions say are absent
  // would be silently ignored.
  if (!c.m && (c.A || c.b))
    throw optim::Error("qp: A or b is given but m = 0");
  if (!c.p && (c.G || c.h))
    throw optim::Error("qp: G or h is given but p = 0");
  optim::QPProblem p;
  p.dtype = c.dtype == OPTIM_QP_F64 ? optim::DType::F64 : optim::DType::F32;
  p.batch = c.batch;
  auto set = [&](optim::QPOperand &op, const void *data, unsigned bit,
                 std::vector<int64_t> shape) {
    if (!data)
      return;
    op.data = data;
    if (c.batched & bit)
      shape.insert(shape.begin(), c.batch);
    op.shape = std::move(shape);
  };
  set(p.Q, c.Q, OPTIM_QP_BATCHED_Q, {c.n, c.n});
  set(p.q, c.q, OPTIM_QP_BATCHED_q, {c.n});
  if (c.m) {
    set(p.A, c.A, OPTIM_QP_BATCHED_A, {c.m, c.n});
    set(p.b, c.b, OPTIM_QP_BATCHED_b, {c.m});
    if (!c.A || !c.b)
      throw optim::Error("qp: m > 0 but A or b is NULL");
  }
  if (c.p) {
    set(p.G, c.G, OPTIM_QP_BATCHED_G, {c.p, c.n});
    set(p.h, c.h, OPTIM_QP_BATCHED_h, {c.p});
    if (!c.G || !c.h)
      throw optim::Error("qp: p > 0 but G or h is NULL");
  }
  return p;
}

/// The message of a failure that has no live solver to hold it (a failed
/// create, a NULL, destroyed or made-up handle), per thread.
thread_local std::string noSolverError = "qp: no solver (NULL)";

void failWithoutSolver(const char *message) noexcept {
  try {
    noSolverError = message;
  } catch (...) { // Keeps the previous message; nothing may escape to C.
  }
}

/// Holds `s` for a call (a destroy on another thread waits for it), or
/// records why it cannot: NULL, destroyed, or no solver at all. Every entry
/// point checks, so that a destroyed handle gets an error, not a use after
/// free.
struct SolverUse {
  explicit SolverUse(const optim_qp_solver *s)
      : use(s, optim::capi::HandleKind::QPSolver) {
    if (!s)
      failWithoutSolver("qp: no solver (NULL)");
    else if (!use)
      failWithoutSolver("qp: not a live solver (destroyed already?)");
  }
  optim::capi::HandleUse use;
};

template <class F> int guard(optim_qp_solver *s, F &&f) {
  SolverUse use(s);
  if (!use.use)
    return -1;
  try {
    f();
    s->error.clear();
    return 0;
  } catch (const std::bad_alloc &) {
    s->error = "qp: out of memory (the batch's solutions and factorizations)";
    return -1;
  } catch (const std::length_error &) {
    s->error = "qp: out of memory (the batch's solutions and factorizations)";
    return -1;
  } catch (const std::exception &e) {
    s->error = e.what();
    return -1;
  } catch (...) { // Nothing may escape to C.
    s->error = "qp: unknown error";
    return -1;
  }
}

} // namespace

extern "C" {

optim_qp_solver *optim_qp_create(double tol, int64_t max_iter,
                                 int32_t threads) {
  if (max_iter < 0 || threads < 0 || !(tol == tol)) {
    failWithoutSolver(max_iter < 0  ? "qp: max_iter must be >= 0"
                      : threads < 0 ? "qp: threads must be >= 0"
                                    : "qp: tol is NaN");
    return nullptr;
  }
  optim::QPOptions o;
  o.tol = tol > 0 ? tol : 0;
  o.maxIter = max_iter;
  o.threads = unsigned(threads);
  try {
    auto solver = std::make_unique<optim_qp_solver>(o);
    optim::capi::trackHandle(solver.get(), optim::capi::HandleKind::QPSolver);
    return solver.release();
  } catch (const std::exception &e) {
    failWithoutSolver(e.what());
    return nullptr;
  } catch (...) { // Nothing may escape to C.
    failWithoutSolver("qp: unknown error");
    return nullptr;
  }
}

void optim_qp_destroy(optim_qp_solver *solver) {
  // A second destroy is refused (its message in optim_qp_error(solver)),
  // not a double free. Waits for calls using the solver on other threads.
  if (!solver)
    return;
  if (!optim::capi::retireHandle(solver, optim::capi::HandleKind::QPSolver)) {
    failWithoutSolver("qp: not a live solver (destroyed already?)");
    return;
  }
  delete solver;
}

const char *optim_qp_error(const optim_qp_solver *solver) {
  // Where the handle is no solver, the message of the last failure without
  // one on this thread (a failed create, a destroyed handle). The solver's
  // own message lives until its next call or its destroy.
  optim::capi::HandleUse use(solver, optim::capi::HandleKind::QPSolver);
  if (!solver || !use)
    return noSolverError.c_str();
  return solver->error.c_str();
}

int optim_qp_forward(optim_qp_solver *solver, const optim_qp_problem *problem,
                     void *z, void *nu, void *lam, int32_t *status,
                     int32_t *iterations) {
  return guard(solver, [&] {
    if (!problem || !status)
      throw optim::Error("qp: problem and status must not be NULL");
    static_assert(sizeof(optim::QPStatus) == sizeof(int32_t), "");
    optim::QPSolutionBuffers out;
    out.z = z;
    out.nu = nu;
    out.lam = lam;
    out.status = reinterpret_cast<optim::QPStatus *>(status);
    out.iterations = iterations;
    solver->solver.forward(toProblem(*problem), out);
  });
}

int optim_qp_backward(optim_qp_solver *solver, const optim_qp_problem *problem,
                      const void *dz, const void *dnu, const void *dlam,
                      void *dQ, void *dq, void *dA, void *db, void *dG,
                      void *dh) {
  return guard(solver, [&] {
    if (!problem)
      throw optim::Error("qp: problem must not be NULL");
    optim::QPGradientBuffers g;
    g.dz = dz;
    g.dnu = dnu;
    g.dlam = dlam;
    g.dQ = dQ;
    g.dq = dq;
    g.dA = dA;
    g.db = db;
    g.dG = dG;
    g.dh = dh;
    solver->solver.backward(toProblem(*problem), g);
  });
}

} // extern "C"
