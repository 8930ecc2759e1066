// A mutex and a condition variable that ThreadSanitizer understands, with
// Abseil's thread-safety annotations (clang's -Wthread-safety checks
// ABSL_GUARDED_BY against them as it does for absl::Mutex).
//
//   kpid::Mutex mu;
//   int count ABSL_GUARDED_BY(mu) = 0;
//   {
//     kpid::MutexLock lock(&mu);
//     ++count;
//   }
//   kpid::CondVar cv;
//   mu.Lock();
//   while (count == 0) cv.Wait(&mu);
//   mu.Unlock();
//
// Why not absl::Mutex: Debian's libabsl_synchronization is not built with
// ThreadSanitizer, so the ordering an absl::Mutex gives is invisible to it
// and every guarded access shows as a race. This is std::mutex and
// std::condition_variable (pthreads, which TSan intercepts) behind
// absl::Mutex's names, so code moves between them by changing the type.
// Not on the event path (which takes no mutex): for readers, reloads,
// notifiers.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kpid {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Waits release `mu` (held by the caller) and hold it again on return; they
// may return spuriously, so callers wait in a loop on their condition.
class CondVar {
 public:
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // still held: the caller's
  }
  // True when `deadline` passed, as absl::CondVar::WaitWithDeadline.
  bool WaitWithDeadline(Mutex* mu, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (deadline == absl::InfiniteFuture()) {
      Wait(mu);
      return false;
    }
    // A relative wait on the steady clock: libstdc++ converts an absolute
    // system_clock time to it and would overflow on far deadlines. Capped
    // at a day; callers loop.
    const absl::Duration left = std::min(deadline - absl::Now(), absl::Hours(24));
    if (left <= absl::ZeroDuration()) return true;
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(left));
    lock.release();
    return absl::Now() >= deadline;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace kpid
