#include "daemon/cases/timing_wheel.h"

#include <algorithm>
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

}  // namespace
}  // namespace kpid::cases
