//===- ThreadPool.cpp - a fixed pool of workers for kernel calls ----------===//

#include "ThreadPool.h"
#include "optim/Rule.h"

#include <string>
#include <system_error>

using namespace optim;

void optim::checkThreadCount(unsigned threads, const char *who) {
  if (threads > kMaxThreads)
    throw Error(std::string(who) + ": threads must be at most " +
                std::to_string(kMaxThreads) +
                " (0: one per hardware thread), got " +
                std::to_string(threads));
}

ThreadPool::ThreadPool(unsigned threads) : numThreads(threads ? threads : 1) {
  try {
    for (unsigned i = 1; i < numThreads; ++i)
      workers.emplace_back([this, i] { worker(i); });
  } catch (const std::system_error &e) {
    // The destructor does not run for a constructor that throws, and a
    // joinable std::thread destroyed would terminate the program.
    stop();
    throw ResourceError("cannot start " + std::to_string(numThreads - 1) +
                        " worker threads: " + e.what());
  } catch (...) {
    stop();
    throw;
  }
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (std::thread &t : workers)
    t.join();
  workers.clear();
}

void ThreadPool::worker(unsigned index) {
  unsigned long seen = 0;
  while (true) {
    const std::function<void(unsigned)> *fn;
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [&] { return stopping || generation != seen; });
      if (stopping)
        return;
      seen = generation;
      fn = job;
    }
    (*fn)(index);
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (--pending == 0)
        done.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(unsigned)> &fn) {
  if (numThreads == 1) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    job = &fn;
    pending = numThreads - 1;
    ++generation;
  }
  wake.notify_all();
  fn(0);
  std::unique_lock<std::mutex> lock(mutex);
  done.wait(lock, [&] { return pending == 0; });
  job = nullptr;
}
