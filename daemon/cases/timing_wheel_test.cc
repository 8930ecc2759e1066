#include "daemon/cases/timing_wheel.h"

#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

std::vector<uint32_t> AdvanceTo(TimingWheel& wheel, int64_t now) {
  std::vector<uint32_t> fired;
  wheel.Advance(now, [&](const TimerEntry& e) { fired.push_back(e.slot); });
  return fired;
}

TEST(TimingWheel, FiresAtOrAfterDueInDueOrder) {
  TimingWheel wheel(1000);
  wheel.Schedule({1, 0, 0, 1005});
  wheel.Schedule({2, 0, 0, 1003});
  wheel.Schedule({3, 0, 0, 1010});
  EXPECT_TRUE(AdvanceTo(wheel, 1002).empty());
  EXPECT_EQ(AdvanceTo(wheel, 1006), (std::vector<uint32_t>{2, 1}));
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_EQ(AdvanceTo(wheel, 1010), (std::vector<uint32_t>{3}));
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimingWheel, KeepsEntriesBeyondOneRevolution) {
  TimingWheel wheel(0);
  const int64_t far = 3 * TimingWheel::kSlots + 7;  // same slot as second 7
  wheel.Schedule({1, 0, 0, far});
  wheel.Schedule({2, 0, 0, 7});
  EXPECT_EQ(AdvanceTo(wheel, 10), (std::vector<uint32_t>{2}));
  for (int64_t t = 10; t < far - 1; t += 1000) EXPECT_TRUE(AdvanceTo(wheel, t).empty()) << t;
  EXPECT_TRUE(AdvanceTo(wheel, far - 1).empty());
  EXPECT_EQ(AdvanceTo(wheel, far), (std::vector<uint32_t>{1}));
}

TEST(TimingWheel, AJumpOfDaysFiresEverythingDueOnce) {
  TimingWheel wheel(100);
  for (uint32_t i = 0; i < 10000; ++i) wheel.Schedule({i, 0, 0, 100 + i * 37});
  // Seven days later, in one step: every entry due by then fires exactly once.
  const int64_t now = 100 + 7 * 86400;
  std::vector<uint32_t> fired = AdvanceTo(wheel, now);
  size_t expected = 0;
  for (uint32_t i = 0; i < 10000; ++i) expected += (100 + i * 37 <= now);
  EXPECT_EQ(fired.size(), expected);
  EXPECT_EQ(wheel.size(), 10000 - expected);
  std::vector<uint32_t> sorted = fired;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
}

TEST(TimingWheel, OverdueScheduleFiresOnNextAdvance) {
  TimingWheel wheel(500);
  AdvanceTo(wheel, 600);
  wheel.Schedule({9, 0, 0, 10});  // long overdue
  EXPECT_EQ(AdvanceTo(wheel, 601), (std::vector<uint32_t>{9}));
}

TEST(TimingWheel, EntriesScheduledWhileFiringWaitForTheNextAdvance) {
  TimingWheel wheel(0);
  wheel.Schedule({1, 0, 0, 5});
  std::vector<uint32_t> fired;
  wheel.Advance(5, [&](const TimerEntry& e) {
    fired.push_back(e.slot);
    if (e.slot == 1) wheel.Schedule({2, 0, 0, 5});
  });
  EXPECT_EQ(fired, (std::vector<uint32_t>{1}));
  EXPECT_EQ(AdvanceTo(wheel, 6), (std::vector<uint32_t>{2}));
}

// Against a plain model (every pending entry in a list): random schedules
// near and far (up to a day ahead, some overdue), advanced by steps from one
// second to past a revolution, dense and sparse in time (a sweep over
// mostly empty seconds skips them by the occupancy bits). Each Advance must
// fire exactly the entries due by then, by due time.
TEST(TimingWheel, FiresWhatAPlainListWouldAtEveryStep) {
  std::mt19937_64 rng(20261128);
  for (const int64_t max_step : {int64_t{3}, int64_t{70}, int64_t{5000}, int64_t{20000}}) {
    int64_t now = 1767225600 + static_cast<int64_t>(rng() % 10000);
    TimingWheel wheel(now + 1);
    std::vector<TimerEntry> pending;
    uint32_t next_id = 0;
    for (int step = 0; step < 3000; ++step) {
      const int schedules = static_cast<int>(rng() % 4);
      for (int i = 0; i < schedules; ++i) {
        const int64_t ahead = rng() % 8 == 0 ? static_cast<int64_t>(rng() % 86400)
                                             : static_cast<int64_t>(rng() % 4000) - 100;
        const TimerEntry entry{next_id++, 0, 0, now + ahead};
        wheel.Schedule(entry);
        pending.push_back(entry);
      }
      now += 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(max_step));
      std::vector<TimerEntry> fired;
      wheel.Advance(now, [&](const TimerEntry& e) { fired.push_back(e); });
      std::vector<uint32_t> expected;
      auto due = std::stable_partition(pending.begin(), pending.end(),
                                       [&](const TimerEntry& e) { return e.due > now; });
      for (auto it = due; it != pending.end(); ++it) expected.push_back(it->slot);
      pending.erase(due, pending.end());
      for (size_t i = 1; i < fired.size(); ++i) {
        ASSERT_LE(fired[i - 1].due, fired[i].due) << "step " << step;
      }
      std::vector<uint32_t> got;
      for (const TimerEntry& e : fired) got.push_back(e.slot);
      std::sort(got.begin(), got.end());
      std::sort(expected.begin(), expected.end());
      ASSERT_EQ(got, expected) << "max_step " << max_step << " step " << step;
      ASSERT_EQ(wheel.size(), pending.size());
    }
  }
}

}  // namespace
}  // namespace kpid::cases
