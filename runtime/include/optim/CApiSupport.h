//===- CApiSupport.h - shared by the C API's implementations ---*- C++ -*-===//
//
// Not for users of the C API (they include optim.h): the compiler's C entry
// points create rule handles and report errors exactly as the runtime's do,
// so both implementations share these definitions. C++17, no LLVM or MLIR;
// the including file must be compiled with -fexceptions.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_CAPISUPPORT_H
#define OPTIM_RUNTIME_CAPISUPPORT_H

#include "optim/Layer.h"
#include "optim/Rule.h"
#include "optim/optim.h"

#include <atomic>
#include <cstdint>
#include <exception>
#include <new>

struct optim_rule {
  optim::Rule rule;
};

struct optim_layer {
  optim::Layer layer;
};

namespace optim {
namespace capi {

/// Records `prefix` + `message` as the calling thread's last error and
/// returns `status`. Never throws, because its callers are about to return
/// across the C ABI: a message that cannot be stored becomes a static one.
optim_status fail(optim_status status, const char *message,
                  const char *prefix = "") noexcept;

/// What a live handle is. A foreign caller may pass anything as a handle: a
/// released one, one released twice, the rule its optimizer lent it, one
/// that another thread is releasing. Every entry point looks its handles up
/// in a registry of live ones (HandleRegistry.cpp), so that these mistakes
/// get an error instead of undefined behavior.
enum class HandleKind {
  Rule,       ///< from optim_compile_*: the caller releases it
  LentRule,   ///< from optim_optimizer_rule: its optimizer owns it
  Optimizer,  ///< from optim_optimizer_create_*
  QPSolver,   ///< from optim_qp_create (KernelABI.h)
  Trajectory, ///< from optim_trajectory_create
  Layer,      ///< from optim_compile_layer_*
};

/// Records a live handle; throws std::bad_alloc (recording nothing).
void trackHandle(const void *handle, HandleKind kind);
/// Forgets a handle live as `kind`, after waiting for the calls using it
/// (HandleUse) on other threads to return; from its start, new calls are
/// refused. False (forgetting nothing) unless it is live as `kind` and not
/// being retired already. The caller frees the object after it returns true.
bool retireHandle(const void *handle, HandleKind kind) noexcept;
/// Whether `handle` is live as `kind` (a LentRule counts as a Rule) and not
/// being retired. Only a hint once it returns; use HandleUse to use it.
bool isLiveHandle(const void *handle, HandleKind kind) noexcept;

/// A call's hold on a handle: while one exists, retireHandle (and so the
/// release) of that handle waits. Converts to false, holding nothing, when
/// the handle is not live as `kind` (a LentRule counts as a Rule).
class HandleUse {
public:
  HandleUse(const void *handle, HandleKind kind) noexcept;
  ~HandleUse();
  HandleUse(const HandleUse &) = delete;
  HandleUse &operator=(const HandleUse &) = delete;
  explicit operator bool() const noexcept { return state_ != nullptr; }

private:
  std::atomic<uint32_t> *state_ = nullptr; ///< the handle's entry's count
  void *shard_ = nullptr;                  ///< the registry shard holding it
};

/// Runs `fn`, which returns optim_status, turning any exception into a
/// status: optim::Error into `onError` (the caller knows what kind of
/// failure its C++ call can report), ResourceError and std::bad_alloc into
/// out-of-memory,
/// anything else into an internal error. No exception may cross the C ABI.
template <typename Fn>
optim_status guard(optim_status onError, Fn &&fn) noexcept {
  try {
    return fn();
  } catch (const ResourceError &e) {
    return fail(OPTIM_ERROR_OUT_OF_MEMORY, e.what());
  } catch (const Error &e) {
    return fail(onError, e.what());
  } catch (const std::bad_alloc &) {
    return fail(OPTIM_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception &e) {
    return fail(OPTIM_ERROR_INTERNAL, e.what(), "internal error: ");
  } catch (...) {
    return fail(OPTIM_ERROR_INTERNAL, "internal error: unknown exception");
  }
}

} // namespace capi
} // namespace optim

#endif // OPTIM_RUNTIME_CAPISUPPORT_H
