//===- ThreadPool.h - a fixed pool of workers for kernel calls --*- C++ -*-===//
//
// Kernel calls are short (a step of a small model takes microseconds), so
// the workers persist between calls and are woken, not spawned.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_THREADPOOL_H
#define OPTIM_RUNTIME_THREADPOOL_H

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace optim {

/// The most worker threads a pool may have: more is a mistake of the caller
/// (a negative count converted to unsigned, say), not a machine.
constexpr unsigned kMaxThreads = 1024;

/// Throws optim::Error, "<who>: threads must be at most 1024 ...", when
/// `threads` is above kMaxThreads. Callers check before changing anything.
void checkThreadCount(unsigned threads, const char *who);

class ThreadPool {
public:
  /// Throws optim::Error when the threads cannot be started (having joined
  /// those that were).
  explicit ThreadPool(unsigned threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  unsigned size() const { return numThreads; }

  /// Runs fn(i) for i in [0, size()) on the pool, the caller taking i = 0,
  /// and returns when all have finished.
  void run(const std::function<void(unsigned)> &fn);

private:
  void worker(unsigned index);
  /// Wakes the workers to exit and joins them.
  void stop();

  unsigned numThreads;
  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable wake, done;
  const std::function<void(unsigned)> *job = nullptr;
  unsigned long generation = 0;
  unsigned pending = 0;
  bool stopping = false;
};

} // namespace optim

#endif // OPTIM_RUNTIME_THREADPOOL_H
