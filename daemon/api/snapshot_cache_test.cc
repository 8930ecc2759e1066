// SnapshotCache with a manual clock for freshness and real threads for the
// single flight and build slots (they are about waiting); no test sleeps
// for time to pass.
#include "daemon/api/snapshot_cache.h"

#include <atomic>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include "daemon/api/proto_time.h"
#include "gtest/gtest.h"

namespace kpid::api {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1767225600);

// A build that records when it ran, so answers tell which build they came from.
class Builds {
 public:
  explicit Builds(const absl::Time* now) : now_(now) {}
  SnapshotCache::Build Counting() {
    return [this]() -> absl::StatusOr<v1::Snapshot> {
      ++count;
      v1::Snapshot s;
      ToProto(*now_, s.mutable_as_of());
      return s;
    };
  }
  std::atomic<int> count{0};

 private:
  const absl::Time* now_;
};

// Spins (yielding) until `condition`: the other threads only need to reach
// a wait, not for time to pass.
template <typename F>
void AwaitTrue(F condition) {
  while (!condition()) std::this_thread::yield();
}

TEST(SnapshotCacheTest, SharedForLessThanTheTtlThenReadAgain) {
  absl::Time now = kT0;
  SnapshotCache cache({.ttl = absl::Seconds(1), .now = [&] { return now; }});
  Builds builds(&now);
  const auto first = cache.Get("k", builds.Counting());
  ASSERT_TRUE(first.ok());
  now = kT0 + absl::Milliseconds(999);  // still less than 1 s after the build started
  const auto second = cache.Get("k", builds.Counting());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first);  // the same message, not a copy
  EXPECT_EQ(builds.count, 1);
  now = kT0 + absl::Seconds(1);  // 1 s: no longer fresh
  const auto third = cache.Get("k", builds.Counting());
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(builds.count, 2);
  EXPECT_EQ(FromProto((*third)->as_of()), kT0 + absl::Seconds(1));
}

TEST(SnapshotCacheTest, ZeroTtlReadsEveryTime) {
  absl::Time now = kT0;
  SnapshotCache cache({.ttl = absl::ZeroDuration(), .now = [&] { return now; }});
  Builds builds(&now);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cache.Get("k", builds.Counting()).ok());
  EXPECT_EQ(builds.count, 3);
}

TEST(SnapshotCacheTest, KeysSeparateEveryPartOfTheRequest) {
  std::vector<v1::GetSnapshotRequest> requests(7);
  requests[1].set_process("sales");
  requests[2].set_process("support");
  requests[3].add_windows()->set_seconds(3600);
  requests[4].mutable_offset()->set_seconds(3600);
  (*requests[5].mutable_dimensions())["region"] = "eu";
  (*requests[6].mutable_dimensions())["region"] = "us";
  std::set<std::string> keys;
  for (const v1::GetSnapshotRequest& r : requests) keys.insert(SnapshotCache::KeyOf(r));
  EXPECT_EQ(keys.size(), requests.size());

  // A filter on another dimension with the same value is another request.
  v1::GetSnapshotRequest channel;
  (*channel.mutable_dimensions())["channel"] = "eu";
  EXPECT_NE(SnapshotCache::KeyOf(channel), SnapshotCache::KeyOf(requests[5]));

  // Equal requests are equal keys whatever order the map was filled in.
  v1::GetSnapshotRequest ab, ba;
  (*ab.mutable_dimensions())["region"] = "eu";
  (*ab.mutable_dimensions())["channel"] = "web";
  (*ba.mutable_dimensions())["channel"] = "web";
  (*ba.mutable_dimensions())["region"] = "eu";
  EXPECT_EQ(SnapshotCache::KeyOf(ab), SnapshotCache::KeyOf(ba));
}

TEST(SnapshotCacheTest, DifferentKeysAreNotMixed) {
  absl::Time now = kT0;
  SnapshotCache cache({.ttl = absl::Seconds(1), .now = [&] { return now; }});
  auto tagged = [](const std::string& process) {
    return [process]() -> absl::StatusOr<v1::Snapshot> {
      v1::Snapshot s;
      s.add_processes()->set_process(process);
      return s;
    };
  };
  for (int round = 0; round < 2; ++round) {  // the second round from the cache
    for (const char* p : {"sales", "support"}) {
      v1::GetSnapshotRequest r;
      r.set_process(p);
      const auto s = cache.Get(SnapshotCache::KeyOf(r), tagged(p));
      ASSERT_TRUE(s.ok());
      ASSERT_EQ((*s)->processes_size(), 1);
      EXPECT_EQ((*s)->processes(0).process(), p);
    }
  }
  EXPECT_EQ(cache.builds(), 2);
}

TEST(SnapshotCacheTest, ConcurrentCallsOfOneKeyShareOneBuild) {
  SnapshotCache cache({.ttl = absl::Seconds(1)});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> builds{0};
  auto slow = [&]() -> absl::StatusOr<v1::Snapshot> {
    ++builds;
    released.wait();
    return v1::Snapshot();
  };
  constexpr int kCallers = 4;
  std::vector<SnapshotCache::Shared> got(kCallers);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { got[0] = *cache.Get("k", slow); });
  AwaitTrue([&] { return builds == 1; });
  for (int i = 1; i < kCallers; ++i) {
    threads.emplace_back([&, i] { got[i] = *cache.Get("k", slow); });
  }
  AwaitTrue([&] { return cache.waiting() == kCallers - 1; });
  release.set_value();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(builds, 1);
  ASSERT_NE(got[0], nullptr);
  for (int i = 1; i < kCallers; ++i) EXPECT_EQ(got[i], got[0]) << i;
}

TEST(SnapshotCacheTest, AWaiterBuildsWhatAnAbandonedBuildDidNot) {
  SnapshotCache cache({.ttl = absl::Seconds(1)});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> builds{0};
  // The first build's caller goes away (its read returns CANCELLED); the
  // waiter has not, and must get a snapshot rather than the cancellation.
  auto first = [&]() -> absl::StatusOr<v1::Snapshot> {
    ++builds;
    released.wait();
    return absl::CancelledError("call cancelled");
  };
  auto second = [&]() -> absl::StatusOr<v1::Snapshot> {
    ++builds;
    return v1::Snapshot();
  };
  absl::Status first_status;
  std::thread abandoned([&] { first_status = cache.Get("k", first).status(); });
  AwaitTrue([&] { return builds == 1; });
  absl::StatusOr<SnapshotCache::Shared> waited;
  std::thread waiter([&] { waited = cache.Get("k", second); });
  AwaitTrue([&] { return cache.waiting() == 1; });
  release.set_value();
  abandoned.join();
  waiter.join();
  EXPECT_TRUE(absl::IsCancelled(first_status)) << first_status;
  EXPECT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(builds, 2);
}

TEST(SnapshotCacheTest, ErrorsAreSharedButNotKept) {
  absl::Time now = kT0;
  SnapshotCache cache({.ttl = absl::Seconds(1), .now = [&] { return now; }});
  int builds = 0;
  auto bad = [&]() -> absl::StatusOr<v1::Snapshot> {
    ++builds;
    return absl::InvalidArgumentError("unknown process \"x\"");
  };
  EXPECT_EQ(cache.Get("k", bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.Get("k", bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(builds, 2);
}

TEST(SnapshotCacheTest, BuildsBeyondTheLimitWaitForASlot) {
  SnapshotCache cache({.ttl = absl::Seconds(1), .max_concurrent_builds = 1});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  auto build = [&]() -> absl::StatusOr<v1::Snapshot> {
    const int now_running = ++running;
    most = std::max(most.load(), now_running);
    released.wait();
    --running;
    return v1::Snapshot();
  };
  std::thread a([&] { ASSERT_TRUE(cache.Get("a", build).ok()); });
  AwaitTrue([&] { return cache.builds() == 1; });
  std::thread b([&] { ASSERT_TRUE(cache.Get("b", build).ok()); });
  AwaitTrue([&] { return cache.waiting() == 1; });
  // A cancelled call stops waiting for a slot.
  EXPECT_TRUE(absl::IsCancelled(cache.Get("c", build, [] { return true; }).status()));
  EXPECT_EQ(cache.builds(), 1);  // b still waits
  release.set_value();
  a.join();
  b.join();
  EXPECT_EQ(cache.builds(), 2);
  EXPECT_EQ(most, 1);
}

TEST(SnapshotCacheTest, FullCacheDropsStaleEntriesFirst) {
  absl::Time now = kT0;
  SnapshotCache cache({.ttl = absl::Seconds(1), .max_entries = 2, .now = [&] { return now; }});
  Builds builds(&now);
  ASSERT_TRUE(cache.Get("old", builds.Counting()).ok());
  now = kT0 + absl::Seconds(2);
  ASSERT_TRUE(cache.Get("fresh", builds.Counting()).ok());
  ASSERT_TRUE(cache.Get("new", builds.Counting()).ok());  // full: "old" goes
  ASSERT_TRUE(cache.Get("fresh", builds.Counting()).ok());
  EXPECT_EQ(builds.count, 3);  // "fresh" stayed
}

}  // namespace
}  // namespace kpid::api
