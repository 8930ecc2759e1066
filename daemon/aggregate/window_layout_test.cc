#include "daemon/aggregate/window_layout.h"

#include "gtest/gtest.h"

namespace kpid::aggregate {
namespace {

// Divisible by 5, 60, 1440 and 10080, so bucket indexes are round.
constexpr int64_t kT0 = 1'008'000'000;

absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }

model::Config DefaultConfig() {
  model::Config c;
  c.windows = {absl::Minutes(5), absl::Hours(1), absl::Hours(24), absl::Hours(24 * 7)};
  c.retention = absl::Hours(24 * 15);
  return c;
}

TEST(WindowLayoutTest, DefaultLevels) {
  const WindowLayout layout(DefaultConfig());
  ASSERT_EQ(layout.levels().size(), 4u);
  // 5m/60 = 5 s, 1h/60 = 60 s, 24h/60 = 1440 s: 61 buckets each.
  EXPECT_EQ(layout.levels()[0].width, 5);
  EXPECT_EQ(layout.levels()[0].slots, 61);
  EXPECT_EQ(layout.levels()[0].offset, 0);
  EXPECT_EQ(layout.levels()[1].width, 60);
  EXPECT_EQ(layout.levels()[1].offset, 61);
  EXPECT_EQ(layout.levels()[2].width, 1440);
  EXPECT_EQ(layout.levels()[2].offset, 122);
  // History: 7d/60 = 10080 s; 15d = 1296000 s = 128.6 buckets -> 129, + 1.
  EXPECT_EQ(layout.levels()[3].width, 10080);
  EXPECT_EQ(layout.levels()[3].slots, 130);
  EXPECT_EQ(layout.levels()[3].offset, 183);
  EXPECT_EQ(layout.total_slots(), 313);
  EXPECT_EQ(layout.history_level(), 3);
  // The 7d window reads the history level.
  EXPECT_EQ(layout.level_of_window(0), 0);
  EXPECT_EQ(layout.level_of_window(3), 3);
  EXPECT_EQ(layout.LevelWithWidth(1440), 2);
  EXPECT_EQ(layout.LevelWithWidth(7), -1);
}

TEST(WindowLayoutTest, ResolveCurrentWindow) {
  const WindowLayout layout(DefaultConfig());
  // 5m window at T0 + 7 s: bucket (T0 + 7) / 5 = T0/5 + 1; 61 buckets back to T0/5 - 59.
  WindowSpan span = layout.Resolve(0, T(7), kT0 + 7);
  EXPECT_EQ(span.level, 0);
  EXPECT_EQ(span.last, kT0 / 5 + 1);
  EXPECT_EQ(span.first, kT0 / 5 - 59);
  EXPECT_EQ(span.from, T(-295));
  EXPECT_EQ(span.to, T(10));
  // 7d window at T0: history buckets T0/10080 - 60 .. T0/10080, exactly 7d + one bucket.
  span = layout.Resolve(3, T(0), kT0);
  EXPECT_EQ(span.level, 3);
  EXPECT_EQ(span.last, kT0 / 10080);
  EXPECT_EQ(span.first, kT0 / 10080 - 60);
  EXPECT_EQ(span.from, T(-604800));
  EXPECT_EQ(span.to, T(10080));
  // Nothing seen yet: the window's own level, 61 buckets.
  span = layout.Resolve(1, T(0), absl::nullopt);
  EXPECT_EQ(span.level, 1);
  EXPECT_EQ(span.last - span.first, 60);
}

TEST(WindowLayoutTest, ResolveInThePastFallsBackToHistory) {
  const WindowLayout layout(DefaultConfig());
  // The 1h window ending 2h ago: the 60 s level holds T0 - 3600 .. T0 only.
  // History: T0 - 7200 = 10080 * (T0/10080 - 1) + 2880 -> bucket T0/10080 - 1;
  // T0 - 10800 = 10080 * (T0/10080 - 2) + 9360 -> T0/10080 - 2.
  const WindowSpan span = layout.Resolve(1, T(-7200), kT0);
  EXPECT_EQ(span.level, 3);
  EXPECT_EQ(span.last, kT0 / 10080 - 1);
  EXPECT_EQ(span.first, kT0 / 10080 - 2);
  EXPECT_EQ(span.from, T(-20160));
  EXPECT_EQ(span.to, T(0));
}

TEST(WindowLayoutTest, ResolveClipsToRetention) {
  const WindowLayout layout(DefaultConfig());
  // 7d window ending 10 days ago: T0 - 864000 = 10080 * (T0/10080 - 86) + 2880,
  // so last = T0/10080 - 86, first would be 60 before; history keeps only
  // T0/10080 - 129 onwards.
  const WindowSpan span = layout.Resolve(3, T(-864000), kT0);
  EXPECT_EQ(span.level, 3);
  EXPECT_EQ(span.last, kT0 / 10080 - 86);
  EXPECT_EQ(span.first, kT0 / 10080 - 129);
  EXPECT_EQ(span.from, T(-129 * 10080));
}

TEST(WindowLayoutTest, BadWindowIsEmpty) {
  const WindowLayout layout(DefaultConfig());
  EXPECT_TRUE(layout.Resolve(4, T(0), kT0).empty());
  EXPECT_TRUE(layout.Resolve(-1, T(0), kT0).empty());
}

TEST(WindowLayoutTest, FloorDivision) {
  EXPECT_EQ(FloorDiv(7, 5), 1);
  EXPECT_EQ(FloorDiv(-7, 5), -2);
  EXPECT_EQ(FloorDiv(-10, 5), -2);
  EXPECT_EQ(FloorMod(-7, 5), 3);
  EXPECT_EQ(FloorMod(7, 5), 2);
}

}  // namespace
}  // namespace kpid::aggregate
