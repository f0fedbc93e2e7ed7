//===- HandleRegistry.cpp - the C API's live handles ----------------------===//
//
// Every C entry point looks its handles up here (CApiSupport.h), so that a
// released handle, a second release or a lent rule given back gets an error
// instead of undefined behavior, also when the release runs on another
// thread while a call on the handle is in flight.
//
// Design: each live handle has a count of the calls using it (HandleUse) and
// a "releasing" bit, in one atomic word. A call pins the handle (count + 1)
// under the lock of the handle's shard, which fails once the bit is set; a
// release sets the bit under the same lock, so no call pins the handle after
// that, and then waits until the count falls to 0 before its caller frees
// the object. A call therefore either completes before the free or is
// refused with the released-handle error; it never touches freed memory.
//
// Why not one lock held for the whole of every call (a shared_mutex taken
// shared by calls and exclusively by create and release): libstdc++'s
// shared_mutex is a reader-preferring pthread rwlock, so threads stepping
// other optimizers back to back would starve a create or release forever;
// and a release would wait for every call in flight on every handle, not
// just on its own. Here a release waits only for its own handle's calls.
//
// Why shards: the registry lock is held only for a hash lookup and an
// increment, never during the call itself; spreading handles over 64 locks
// (by address) keeps threads that use different handles from contending
// for one lock and one cache line even for that moment. Unpinning takes no
// lock at all unless a release is waiting.
//
//===----------------------------------------------------------------------===//

#include "optim/CApiSupport.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <unordered_map>

using namespace optim::capi;

namespace {

constexpr uint32_t Releasing = 1u << 31;
constexpr uint32_t UsersMask = Releasing - 1;

/// Aligned to a cache line: every call writes its handle's count, and the
/// counts of two handles used by two threads must not share a line.
struct alignas(64) Entry {
  explicit Entry(HandleKind kind) : kind(kind) {}
  HandleKind kind;
  /// Calls in flight (UsersMask bits), and Releasing once a release began.
  std::atomic<uint32_t> state{0};
};

/// One shard of the registry; aligned so that two shards never share a
/// cache line.
struct alignas(64) Shard {
  std::mutex mutex;
  /// Woken when the last call on a handle being released returns.
  std::condition_variable unpinned;
  /// Entries are never moved (node-based map): HandleUse keeps a pointer to
  /// its entry's state while the entry cannot be erased (count > 0).
  std::unordered_map<const void *, Entry> live;
};

constexpr unsigned NumShards = 64;
static_assert(NumShards == 1u << 6, "shardOf keeps 6 bits of the hash");

Shard &shardOf(const void *handle) {
  // Never destroyed: handles may be released from other static destructors.
  static Shard *shards = new Shard[NumShards];
  // Heap addresses differ mostly in their middle bits: multiply (Fibonacci
  // hashing) and keep the top 6 bits.
  uint64_t h = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle)) *
               0x9E3779B97F4A7C15ull;
  return shards[h >> 58];
}

bool matches(HandleKind live, HandleKind wanted) {
  return live == wanted ||
         (wanted == HandleKind::Rule && live == HandleKind::LentRule);
}

} // namespace

void optim::capi::trackHandle(const void *handle, HandleKind kind) {
  Shard &s = shardOf(handle);
  std::lock_guard<std::mutex> lock(s.mutex);
  // An address is tracked again only after its previous object was retired
  // and freed, which erased its entry: emplace cannot find one.
  s.live.try_emplace(handle, kind);
}

bool optim::capi::retireHandle(const void *handle, HandleKind kind) noexcept {
  Shard &s = shardOf(handle);
  try {
    std::unique_lock<std::mutex> lock(s.mutex);
    auto it = s.live.find(handle);
    if (it == s.live.end() || it->second.kind != kind ||
        (it->second.state.load(std::memory_order_relaxed) & Releasing))
      return false;
    // Other handles of the shard may be tracked while this waits; a rehash
    // moves no entry, so the reference stays valid.
    Entry &e = it->second;
    e.state.fetch_or(Releasing, std::memory_order_relaxed);
    // Acquire: what the calls did to the object happens before its free.
    s.unpinned.wait(lock, [&] {
      return (e.state.load(std::memory_order_acquire) & UsersMask) == 0;
    });
    s.live.erase(handle);
    return true;
  } catch (...) {
    // std::mutex::lock may throw (it does not for a valid default mutex);
    // callers are extern "C". The handle is then treated as not live.
    return false;
  }
}

bool optim::capi::isLiveHandle(const void *handle, HandleKind kind) noexcept {
  Shard &s = shardOf(handle);
  try {
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.live.find(handle);
    return it != s.live.end() && matches(it->second.kind, kind) &&
           !(it->second.state.load(std::memory_order_relaxed) & Releasing);
  } catch (...) {
    return false;
  }
}

HandleUse::HandleUse(const void *handle, HandleKind kind) noexcept {
  Shard &s = shardOf(handle);
  try {
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.live.find(handle);
    if (it == s.live.end() || !matches(it->second.kind, kind))
      return;
    std::atomic<uint32_t> &state = it->second.state;
    // The releasing bit is only set under this lock: tested here, it stays
    // clear until the pin is counted.
    if (state.load(std::memory_order_relaxed) & Releasing)
      return;
    state.fetch_add(1, std::memory_order_relaxed);
    state_ = &state;
    shard_ = &s;
  } catch (...) {
    // As in retireHandle: treated as not live.
  }
}

HandleUse::~HandleUse() {
  if (!state_)
    return;
  // Release: this call's accesses to the object happen before the free.
  // After this decrement the entry may be erased at any moment; only the
  // shard (never destroyed) is touched below.
  uint32_t before = state_->fetch_sub(1, std::memory_order_acq_rel);
  if (before == (Releasing | 1)) {
    // The last call on a handle whose release waits. Taking the lock orders
    // the notification after the releaser's test of the count (it holds the
    // lock from setting the bit until it waits), so it cannot be lost.
    std::lock_guard<std::mutex> lock(static_cast<Shard *>(shard_)->mutex);
    static_cast<Shard *>(shard_)->unpinned.notify_all();
  }
}
