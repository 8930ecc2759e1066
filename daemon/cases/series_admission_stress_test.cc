// Several partitions' workers admit overlapping dimension combinations into
// one SeriesAdmission at once, and partitions come and go (references
// released while others admit). Meant to run under ThreadSanitizer as well
// as plainly: the admitted count never passes the limit, every thread got
// the same verdict for each combination while none was released, and the
// count is always the number of combinations some thread holds.
#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/cases/series_admission.h"
#include "daemon/cases/stable_hash.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

constexpr int kThreads = 4;
constexpr int kCombinations = 3000;  // more than the limit: some are refused
constexpr int kLimit = 1000;

TEST(SeriesAdmissionStress, ThreadsAgreeAndTheLimitHolds) {
  const model::Config config = *model::ParseConfig(
      absl::StrCat("dimensions: {names: [region], max_series_per_process: ", kLimit,
                   "}\nprocesses: [{id: a, stages: [{id: s, sla: 1h}]}]\n"),
      "t.yaml");
  for (int round = 0; round < 20; ++round) {
    SeriesAdmission admission(config);
    std::vector<uint64_t> hashes;
    for (int c = 0; c < kCombinations; ++c) {
      hashes.push_back(StableHash64(absl::StrCat("region-", round, "-", c)));
    }
    // verdicts[t][c]: what thread t was told about combination c.
    std::vector<std::vector<char>> verdicts(kThreads, std::vector<char>(kCombinations));
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        // Threads walk the combinations twice, in pairs from the same start
        // (the same combination decided by two threads at once), the pairs
        // half-way apart (the limit reached from two places).
        for (int pass = 0; pass < 2; ++pass) {
          for (int i = 0; i < kCombinations; ++i) {
            const int c = (i + (t % 2) * kCombinations / 2) % kCombinations;
            const bool admitted = admission.Admit(0, hashes[static_cast<size_t>(c)]);
            char& v = verdicts[static_cast<size_t>(t)][static_cast<size_t>(c)];
            if (pass == 0) {
              v = admitted ? 1 : 2;
            } else if (v != (admitted ? 1 : 2)) {
              v = 3;  // changed its mind
            }
          }
        }
      });
    }
    go.store(true);
    for (std::thread& th : threads) th.join();

    EXPECT_EQ(admission.Admitted(0), static_cast<uint64_t>(kLimit));
    int admitted = 0;
    for (int c = 0; c < kCombinations; ++c) {
      const char first = verdicts[0][static_cast<size_t>(c)];
      for (int t = 1; t < kThreads; ++t) {
        ASSERT_EQ(verdicts[static_cast<size_t>(t)][static_cast<size_t>(c)], first)
            << "combination " << c << ", thread " << t;
      }
      ASSERT_NE(first, 3) << "combination " << c;
      admitted += first == 1;
    }
    // Every thread saw every combination, so exactly the limit were admitted.
    EXPECT_EQ(admitted, kLimit);
  }
}

// Threads stand for partitions' tables: each admits combinations from a
// small shared pool (so several hold the same one and an Admit races the
// Release of its last reference) and releases them again at random. A
// watcher reads the count all along; between rounds, with every thread
// stopped, the count must be exactly the combinations held by some thread.
TEST(SeriesAdmissionStress, ReleasesMakeRoomAndTheLimitHolds) {
  constexpr int kPool = 48;
  constexpr int kSmallLimit = 16;
  constexpr int kRounds = 20;
  constexpr int kOperations = 20000;
  const model::Config config = *model::ParseConfig(
      absl::StrCat("dimensions: {names: [region], max_series_per_process: ", kSmallLimit,
                   "}\nprocesses: [{id: a, stages: [{id: s, sla: 1h}]}]\n"),
      "t.yaml");
  SeriesAdmission admission(config);
  std::vector<uint64_t> hashes;
  for (int c = 0; c < kPool; ++c) hashes.push_back(StableHash64(absl::StrCat("region-", c)));
  // held[t][c]: thread t holds a reference to combination c.
  std::vector<std::vector<char>> held(kThreads, std::vector<char>(kPool));
  std::vector<int> admitted(kThreads);
  std::atomic<uint64_t> most{0};
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<bool> go{false};
    std::atomic<int> running{kThreads};
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
      while (running.load() > 0) {
        const uint64_t now = admission.Admitted(0);
        uint64_t seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
      }
    });
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        uint64_t x = static_cast<uint64_t>(round * kThreads + t) * 0x9E3779B97F4A7C15ull + 1;
        for (int i = 0; i < kOperations; ++i) {
          x ^= x << 13;
          x ^= x >> 7;
          x ^= x << 17;
          const size_t c = static_cast<size_t>(x % kPool);
          char& mine = held[static_cast<size_t>(t)][c];
          if (mine) {
            admission.Release(0, hashes[c]);
            mine = 0;
          } else if (admission.Admit(0, hashes[c])) {
            mine = 1;
            ++admitted[static_cast<size_t>(t)];
          }
        }
        running.fetch_sub(1);
      });
    }
    go.store(true);
    for (std::thread& th : threads) th.join();

    std::set<size_t> in_use;
    for (const std::vector<char>& of_thread : held) {
      for (size_t c = 0; c < of_thread.size(); ++c) {
        if (of_thread[c]) in_use.insert(c);
      }
    }
    ASSERT_EQ(admission.Admitted(0), in_use.size()) << "round " << round;
    ASSERT_LE(in_use.size(), static_cast<size_t>(kSmallLimit)) << "round " << round;
  }
  EXPECT_LE(most.load(), static_cast<uint64_t>(kSmallLimit));
  // Released combinations made room for others: far more admissions than the limit.
  for (int t = 0; t < kThreads; ++t) EXPECT_GT(admitted[static_cast<size_t>(t)], 10 * kSmallLimit);

  // Everything given back: the count is 0 and a whole new limit's worth is admitted.
  for (size_t t = 0; t < held.size(); ++t) {
    for (size_t c = 0; c < held[t].size(); ++c) {
      if (held[t][c]) admission.Release(0, hashes[c]);
    }
  }
  EXPECT_EQ(admission.Admitted(0), 0u);
  for (int c = 0; c < kSmallLimit; ++c) {
    EXPECT_TRUE(admission.Admit(0, StableHash64(absl::StrCat("fresh-", c)))) << c;
  }
  EXPECT_FALSE(admission.Admit(0, StableHash64("one too many")));
}

}  // namespace
}  // namespace kpid::cases
