#include "daemon/aggregate/kpi_reading.h"

#include "daemon/aggregate/test_config.h"
#include "gtest/gtest.h"

namespace kpid::aggregate {
namespace {

using cases::ExitOutcome;

constexpr int64_t kT0 = 1'008'000'000;
absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }
constexpr int kP = 0, kA = 0, kB = 1, kProcessLevel = -1;
constexpr int k1h = 0;

model::Config TestConfig() { return TwoStageTestConfig({absl::Hours(1)}); }

class KpiReadingTest : public ::testing::Test {
 protected:
  KpiReadingTest() : shard0_(TestConfig()), shard1_(TestConfig()), reader_({&shard0_, &shard1_}) {
    // Stage a: 4 entries (one rework) over both shards; exits of 100 s
    // (advanced), 300 s (advanced), 900 s (fallout, over the 600 s SLA).
    shard0_.StageEntered(kP, kA, 0, T(1), false);
    shard0_.StageEntered(kP, kA, 0, T(1), false);
    shard1_.StageEntered(kP, kA, 0, T(1), false);
    shard1_.StageEntered(kP, kA, 0, T(2), true);
    shard0_.StageExited(kP, kA, 0, T(10), ExitOutcome::kAdvanced, absl::Seconds(100), true);
    shard1_.StageExited(kP, kA, 0, T(10), ExitOutcome::kAdvanced, absl::Seconds(300), true);
    shard1_.StageExited(kP, kA, 1, T(10), ExitOutcome::kFallout, absl::Seconds(900), false);
    // Process: 3 started, 2 completed (1000 + 3000) in 1 h and 3 h, 1 fallout.
    for (int i = 0; i < 3; ++i) shard0_.CaseStarted(kP, 0, T(0));
    shard0_.CaseCompleted(kP, 0, T(20), 1000, absl::Hours(1));
    shard1_.CaseCompleted(kP, 0, T(20), 3000, absl::Hours(3));
    shard1_.CaseFallout(kP, 1, T(20));
    shard0_.Cost(kP, 0, T(20), 500);
  }

  KpiReading Read(int stage, absl::string_view kpi) {
    return ReadWindowKpi(reader_, kP, stage, kpi, reader_.Resolve(k1h, T(30)));
  }

  AggregateShard shard0_;
  AggregateShard shard1_;
  MergedReader reader_;
};

TEST_F(KpiReadingTest, StageRatiosRestOnExits) {
  // conversion 2 advanced / 3 exits; sla_attainment 2 within SLA / 3 exits.
  KpiReading r = Read(kA, "conversion");
  ASSERT_TRUE(r.value.has_value());
  EXPECT_DOUBLE_EQ(*r.value, 2.0 / 3);
  EXPECT_EQ(r.events, 3u);
  EXPECT_DOUBLE_EQ(*Read(kA, "sla_attainment").value, 2.0 / 3);
  EXPECT_DOUBLE_EQ(*Read(kA, "fallout_ratio").value, 1.0 / 3);
  EXPECT_DOUBLE_EQ(*Read(kA, "throughput").value, 3);
  // rework_ratio 1 rework / 4 entries, resting on the 4 entries.
  r = Read(kA, "rework_ratio");
  EXPECT_DOUBLE_EQ(*r.value, 0.25);
  EXPECT_EQ(r.events, 4u);
}

TEST_F(KpiReadingTest, ZeroDenominatorIsAbsent) {
  // Stage b saw nothing: its counts are 0, its ratios absent.
  EXPECT_EQ(Read(kB, "exited").value, absl::optional<double>(0));
  EXPECT_FALSE(Read(kB, "conversion").value.has_value());
  EXPECT_EQ(Read(kB, "conversion").events, 0u);
  EXPECT_FALSE(Read(kB, "cycle_time_p50").value.has_value());
  // A stage the window does not know (another config) reads as no events.
  EXPECT_FALSE(KpiFromCounts(SeriesWindow{}, 7, "conversion").value.has_value());
}

TEST_F(KpiReadingTest, ProcessKpis) {
  // win_ratio 2 / (2 + 1) on 3 events; avg_deal 4000 / 2 on 2; cost_to_serve 500 / 2.
  KpiReading r = Read(kProcessLevel, "win_ratio");
  EXPECT_DOUBLE_EQ(*r.value, 2.0 / 3);
  EXPECT_EQ(r.events, 3u);
  r = Read(kProcessLevel, "avg_deal");
  EXPECT_DOUBLE_EQ(*r.value, 2000);
  EXPECT_EQ(r.events, 2u);
  EXPECT_DOUBLE_EQ(*Read(kProcessLevel, "cost_to_serve").value, 250);
  r = Read(kProcessLevel, "started");
  EXPECT_DOUBLE_EQ(*r.value, 3);
  EXPECT_EQ(r.events, 3u);
  EXPECT_FALSE(Read(kProcessLevel, "feedback_score").value.has_value());
}

TEST_F(KpiReadingTest, EventsOfEveryKindForStaleStreamRules) {
  // 4 stage entries + 2 completions + 1 fallout + 1 cost = 8 events, resting on themselves.
  KpiReading r = Read(kProcessLevel, "events");
  EXPECT_DOUBLE_EQ(*r.value, 8);
  EXPECT_EQ(r.events, 8u);
  // Two hours later the 1h window holds none of them: 0, not absent.
  r = ReadWindowKpi(reader_, kP, kProcessLevel, "events",
                    reader_.Resolve(k1h, T(30) + absl::Hours(2)));
  EXPECT_EQ(r.value, absl::optional<double>(0));
}

TEST_F(KpiReadingTest, QuantilesFromDistributions) {
  // Cycle times 100, 300, 900: the median is 300 (within the distribution's
  // 1% relative error); lead times 1 h and 3 h: p99 is 3 h.
  KpiReading r = Read(kA, "cycle_time_p50");
  ASSERT_TRUE(r.value.has_value());
  EXPECT_NEAR(*r.value, 300, 3);
  EXPECT_EQ(r.events, 3u);
  r = Read(kProcessLevel, "lead_time_p99");
  ASSERT_TRUE(r.value.has_value());
  EXPECT_NEAR(*r.value, 10800, 108);
  EXPECT_EQ(r.events, 2u);
  EXPECT_EQ(QuantileOf("cycle_time_p90"), absl::optional<double>(0.9));
  EXPECT_FALSE(QuantileOf("conversion").has_value());
}

TEST_F(KpiReadingTest, CountsOfTheCallersSeries) {
  // Only shard 1's dims 1: the one fallout exit of stage a.
  const WindowSpan span = reader_.Resolve(k1h, T(30));
  const std::vector<MergedReader::SeriesRef> refs = {{1, 1}};
  const SeriesWindow counts = reader_.ReadSeriesWindow(kP, refs, span);
  const KpiReading r = ReadWindowKpi(reader_, kP, kA, "fallout_ratio", span, &counts);
  EXPECT_DOUBLE_EQ(*r.value, 1.0);
  EXPECT_EQ(r.events, 1u);
  // Quantiles still cover every series (3 exits).
  EXPECT_EQ(ReadWindowKpi(reader_, kP, kA, "cycle_time_p90", span, &counts).events, 3u);
}

}  // namespace
}  // namespace kpid::aggregate
