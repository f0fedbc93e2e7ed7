//===- CApiMacros.h - argument checks of the C API's entry points -*- C++ -*-===//
//
// Private to the runtime: the checks every C entry point makes before its
// C++ call (CApi.cpp, TrajectoryCApi.cpp). Each is a statement of the
// calling function, which must return optim_status and see
// optim::capi (`using namespace optim;`).
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_CAPIMACROS_H
#define OPTIM_RUNTIME_LIB_CAPIMACROS_H

#include "optim/CApiSupport.h"

/// Fails with "<fn>: <what> is NULL" unless `p` is set.
#define OPTIM_CHECK_NOT_NULL(p, fn)                                            \
  do {                                                                         \
    if (!(p))                                                                  \
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT, ": " #p " is NULL", fn); \
  } while (false)

/// Arrays may be NULL only when empty.
#define OPTIM_CHECK_ARRAY(p, count, fn)                                        \
  do {                                                                         \
    if (!(p) && (count) > 0)                                                   \
      return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,                          \
                        ": " #p " is NULL but " #count " is not 0", fn);       \
  } while (false)

//===----------------------------------------------------------------------===//
// Live handles
//===----------------------------------------------------------------------===//

// The registry of live handles is in HandleRegistry.cpp. Each entry point
// that uses a handle holds it (capi::HandleUse) until it returns, so that a
// release on another thread waits for the call instead of freeing the object
// under it.

/// Fails unless `h` is a live handle of `kind` (capi::HandleKind; a lent
/// rule counts as a rule); holds it until the calling function returns. A
/// statement of the calling function, not a block: the hold lives in its
/// scope. `what` names the kind in the message.
#define OPTIM_USE_HANDLE(h, kind, what, fn)                                    \
  OPTIM_CHECK_NOT_NULL(h, fn);                                                 \
  capi::HandleUse h##InUse(h, capi::HandleKind::kind);                         \
  if (!h##InUse)                                                               \
  return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,                              \
                    ": " #h " is not a live " what " handle (released "        \
                    "already?)",                                               \
                    fn)

#define OPTIM_USE_RULE(rule, fn) OPTIM_USE_HANDLE(rule, Rule, "rule", fn)
#define OPTIM_USE_OPTIMIZER(opt, fn)                                           \
  OPTIM_USE_HANDLE(opt, Optimizer, "optimizer", fn)
#define OPTIM_USE_TRAJECTORY(traj, fn)                                         \
  OPTIM_USE_HANDLE(traj, Trajectory, "trajectory", fn)
#define OPTIM_USE_LAYER(layer, fn) OPTIM_USE_HANDLE(layer, Layer, "layer", fn)

#endif // OPTIM_RUNTIME_LIB_CAPIMACROS_H
