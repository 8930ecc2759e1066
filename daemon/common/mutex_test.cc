#include "daemon/common/mutex.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kpid {
namespace {

struct Counter {
  Mutex mu;
  int value ABSL_GUARDED_BY(mu) = 0;
};

// Unguarded, 4 x 100,000 read-modify-writes lose updates (and TSan reports
// the race); guarded, the total is exactly 400,000.
TEST(MutexTest, MutexLockExcludes) {
  Counter counter;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&counter] {
      for (int i = 0; i < 100'000; ++i) {
        MutexLock lock(&counter.mu);
        ++counter.value;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  MutexLock lock(&counter.mu);
  EXPECT_EQ(counter.value, 400'000);
}

TEST(MutexTest, WaitReturnsHoldingTheLockOnceSignalled) {
  Counter counter;
  CondVar cv;
  std::thread setter([&] {
    MutexLock lock(&counter.mu);
    counter.value = 7;
    cv.SignalAll();
  });
  counter.mu.Lock();
  // An infinite deadline waits like Wait: false, never "timed out".
  bool timed_out = false;
  while (counter.value == 0) timed_out = cv.WaitWithDeadline(&counter.mu, absl::InfiniteFuture());
  EXPECT_EQ(counter.value, 7);
  EXPECT_FALSE(timed_out);
  counter.value = 8;  // held again: the setter is done with it or waits
  counter.mu.Unlock();
  setter.join();
}

TEST(MutexTest, WaitWithDeadlineReportsAPassedDeadline) {
  Mutex mu;
  CondVar cv;
  MutexLock lock(&mu);
  EXPECT_TRUE(cv.WaitWithDeadline(&mu, absl::Now() - absl::Seconds(1)));
  // Nobody signals: it returns true once the deadline has passed (maybe
  // after spurious wake-ups, hence the loop).
  const absl::Time deadline = absl::Now() + absl::Milliseconds(20);
  while (!cv.WaitWithDeadline(&mu, deadline)) {
  }
  EXPECT_GE(absl::Now(), deadline);
}

}  // namespace
}  // namespace kpid
