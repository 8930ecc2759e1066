// Several partitions' workers admit overlapping dimension combinations into
// one SeriesAdmission at once. Meant to run under ThreadSanitizer as well as
// plainly: the admitted count never passes the limit, and every thread got
// the same verdict for each combination.
#include <atomic>
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

}  // namespace
}  // namespace kpid::cases
