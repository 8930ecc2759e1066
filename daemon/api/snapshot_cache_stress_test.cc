// SnapshotCache from many threads at once, also under ThreadSanitizer:
// answers never mix requests, and each request is read at most once per
// ttl however many threads ask (single flight).
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "daemon/api/snapshot_cache.h"
#include "gtest/gtest.h"

namespace kpid::api {
namespace {

TEST(SnapshotCacheStressTest, ManyCallersFewRequests) {
  constexpr int kThreads = 8;
  constexpr int kKeys = 4;
  constexpr absl::Duration kTtl = absl::Milliseconds(20);
  SnapshotCache cache({.ttl = kTtl, .max_concurrent_builds = 2});
  std::vector<std::string> keys;
  for (int k = 0; k < kKeys; ++k) {
    v1::GetSnapshotRequest request;
    request.set_process("p" + std::to_string(k));
    keys.push_back(SnapshotCache::KeyOf(request));
  }
  std::vector<std::atomic<int>> builds(kKeys);
  std::atomic<int> mixed{0};
  const absl::Time start = absl::Now();
  const absl::Time stop = start + absl::Milliseconds(300);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; absl::Now() < stop; ++i) {
        const int k = i % kKeys;
        auto snapshot =
            cache.Get(keys[static_cast<size_t>(k)], [&]() -> absl::StatusOr<v1::Snapshot> {
              ++builds[static_cast<size_t>(k)];
              v1::Snapshot s;
              s.add_processes()->set_process("p" + std::to_string(k));
              return s;
            });
        if (!snapshot.ok() || (*snapshot)->processes(0).process() != "p" + std::to_string(k)) {
          ++mixed;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(mixed, 0);
  // A key's builds start at least a ttl apart: at most elapsed / ttl + 1.
  const int64_t most = elapsed / kTtl + 1;
  for (int k = 0; k < kKeys; ++k) {
    EXPECT_GE(builds[static_cast<size_t>(k)], 1) << k;
    EXPECT_LE(builds[static_cast<size_t>(k)], most) << k;
  }
}

}  // namespace
}  // namespace kpid::api
