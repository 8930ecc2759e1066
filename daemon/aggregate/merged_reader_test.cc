#include "daemon/aggregate/merged_reader.h"

#include <cmath>

#include "daemon/aggregate/test_config.h"
#include "daemon/cases/clock.h"
#include "gtest/gtest.h"

namespace kpid::aggregate {
namespace {

using cases::ExitOutcome;

constexpr int64_t kT0 = 1'008'000'000;
absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }
constexpr int kP = 0, kA = 0, kB = 1;
constexpr int k1m = 0, k1h = 1;

model::Config TestConfig() { return TwoStageTestConfig({absl::Minutes(1), absl::Hours(1)}); }

void Exit(AggregateShard& s, DimsId dims, int64_t at, int64_t cycle_s, bool advanced) {
  s.StageExited(kP, kA, dims, T(at), advanced ? ExitOutcome::kAdvanced : ExitOutcome::kFallout,
                absl::Seconds(cycle_s), cycle_s <= 600);
}

class MergedReaderTest : public ::testing::Test {
 protected:
  MergedReaderTest() : a_(TestConfig()), b_(TestConfig()), reader_({&a_, &b_}) {
    // Shard 0: dims 0 exits of 100, 200, 300 s; dims 1 one of 400 s.
    Exit(a_, 0, 1, 100, true);
    Exit(a_, 0, 2, 200, true);
    Exit(a_, 0, 3, 300, false);
    Exit(a_, 1, 3, 400, true);
    a_.CaseStarted(kP, 0, T(0));
    a_.CaseCompleted(kP, 1, T(3), 500, absl::Hours(1));
    a_.Transition(kP, kA, kB, T(3));
    a_.BacklogChanged(kP, kB, 0, +2, 0);
    // Shard 1: dims 0 exits of 500 and 600 s; dims 2 one of 700 s.
    Exit(b_, 0, 1, 500, true);
    Exit(b_, 0, 2, 600, false);
    Exit(b_, 2, 2, 700, true);
    b_.CaseStarted(kP, 2, T(0));
    b_.CaseCompleted(kP, 2, T(2), 1500, absl::Hours(3));
    b_.Transition(kP, kA, kB, T(2));
    b_.Transition(kP, kB, kA, T(2));
    b_.BacklogChanged(kP, kB, 2, +1, +1);
  }

  AggregateShard a_;
  AggregateShard b_;
  MergedReader reader_;
};

TEST_F(MergedReaderTest, AllDimsAddExactly) {
  const WindowSpan span = reader_.Resolve(k1m, T(3));
  const SeriesWindow w = reader_.ReadAllDimsWindow(kP, span);
  // 4 + 3 exits; fallout: 300 and 600; within SLA (<= 600 s): all but 700.
  EXPECT_EQ(w.stages[kA].exited(), 7u);
  EXPECT_EQ(w.stages[kA].fallout, 2u);
  EXPECT_EQ(w.stages[kA].sla_met, 6u);
  EXPECT_EQ(w.stages[kB], StageWindowCounts{});
  EXPECT_EQ(w.process.started, 2u);
  EXPECT_EQ(w.process.completed, 2u);
  EXPECT_DOUBLE_EQ(w.process.revenue, 2000);
  EXPECT_EQ(w.process.avg_deal(), 1000.0);

  const SeriesTotals t = reader_.ReadAllDimsTotals(kP);
  EXPECT_EQ(t.stages[kA].exited_advanced, 5u);
  EXPECT_EQ(t.stages[kA].exited_fallout, 2u);
  EXPECT_EQ(t.stages[kA].cycle_time.count(), 7u);
  EXPECT_DOUBLE_EQ(t.stages[kA].cycle_time.sum, 2800);  // 100 + ... + 700
  EXPECT_EQ(t.open_cases(), 3);
  EXPECT_EQ(t.stages[kB].backlog_over_sla, 1);
  EXPECT_EQ(reader_.ReadTransitions(kP, kA, kB), 2u);
  EXPECT_EQ(reader_.ReadTransitions(kP, kB, kA), 1u);
}

TEST_F(MergedReaderTest, QuantilesMergeExactly) {
  const WindowSpan span = reader_.Resolve(k1m, T(3));
  const Distribution d = reader_.ReadCycleTimes(kP, kA, span);
  Distribution want;
  for (int v = 100; v <= 700; v += 100) want.Add(v);
  EXPECT_EQ(d, want);
  // Rank 0.5 * 6 = 3: the 4th value, 400.
  ASSERT_TRUE(d.Quantile(0.5).has_value());
  EXPECT_NEAR(*d.Quantile(0.5), 400, 4);
  const Distribution lead = reader_.ReadLeadTimes(kP, reader_.Resolve(k1h, T(3)));
  EXPECT_EQ(lead.count(), 2u);
  EXPECT_NEAR(*lead.Quantile(1), 10800, 108);
  EXPECT_FALSE(reader_.ReadCycleTimes(kP, kB, span).Quantile(0.5).has_value());
}

TEST_F(MergedReaderTest, SeriesByShardAndDims) {
  using Ref = MergedReader::SeriesRef;
  EXPECT_EQ(reader_.ListSeries(kP), (std::vector<Ref>{{0, 0}, {0, 1}, {1, 0}, {1, 2}}));
  // Say shard 0's dims 1 and shard 1's dims 2 are the same values (each
  // worker numbers its own): their series add up.
  const std::vector<Ref> same = {{0, 1}, {1, 2}};
  const SeriesWindow w = reader_.ReadSeriesWindow(kP, same, reader_.Resolve(k1m, T(3)));
  EXPECT_EQ(w.stages[kA].exited(), 2u);  // 400 and 700
  EXPECT_EQ(w.process.completed, 2u);
  EXPECT_EQ(w.process.started, 1u);
  const SeriesTotals t = reader_.ReadSeriesTotals(kP, same);
  EXPECT_EQ(t.stages[kA].exited_advanced, 2u);
  EXPECT_EQ(t.stages[kB].backlog, 1);
  // Dims 0 in both shards (a shared numbering).
  EXPECT_EQ(reader_.SameDimsEverywhere(0), (std::vector<Ref>{{0, 0}, {1, 0}}));
  const SeriesWindow zero =
      reader_.ReadSeriesWindow(kP, reader_.SameDimsEverywhere(0), reader_.Resolve(k1m, T(3)));
  EXPECT_EQ(zero.stages[kA].exited(), 5u);
}

TEST_F(MergedReaderTest, OneSpanForAllShards) {
  // Shard 1 moves on by two hours; shard 0 stays at T0 + 3.
  b_.CaseStarted(kP, 0, T(7200));
  EXPECT_EQ(reader_.latest(), kT0 + 7200);
  // The 1m window at T0 + 3 is gone from shard 1's 1 s level, so the merged
  // read resolves it in history for both shards, though shard 0 alone would
  // still have its 1 s buckets. History (60 s buckets) would read T0/60 - 1
  // and T0/60, but with the head at bucket T0/60 + 120 it keeps 121 buckets,
  // T0/60 onwards: the span is [T0, T0 + 60).
  const WindowSpan merged = reader_.Resolve(k1m, T(3));
  EXPECT_EQ(merged.level, 1);
  EXPECT_EQ(a_.Resolve(k1m, T(3)).level, 0);
  EXPECT_EQ(merged.from, T(0));
  EXPECT_EQ(merged.to, T(60));
  EXPECT_EQ(reader_.ReadAllDimsWindow(kP, merged).stages[kA].exited(), 7u);
}

TEST_F(MergedReaderTest, LateAndDroppedAdd) {
  a_.CaseStarted(kP, 0, T(-8000));  // beyond 2h of history
  b_.CaseStarted(7, 0, T(0));       // no process 7
  EXPECT_EQ(reader_.late(), 1u);
  EXPECT_EQ(reader_.dropped(), 1u);
}

// A wall clock set by hand that counts how often the writer reads it.
class CountingClock : public cases::ManualClock {
 public:
  using ManualClock::ManualClock;
  absl::Time Now() const override {
    ++reads;
    return ManualClock::Now();
  }
  mutable int reads = 0;
};

// The production windows: the 5m window reads 5 s buckets (61 kept), the 1h
// window 60 s buckets (61 kept), 24h 1440 s, and 7d the history level.
model::Config ProductionWindowsConfig() {
  model::Config c =
      TwoStageTestConfig({absl::Minutes(5), absl::Hours(1), absl::Hours(24), absl::Hours(24 * 7)});
  c.retention = absl::Hours(24 * 15);
  return c;
}

// clock: wall. One partition accepts an event a producer stamped 10 min ahead
// of the wall clock (within max_future_skew). Without a head limit its shard's
// head moves to now + 10 min: the 5 s level then keeps nothing of the last
// 5 min, so the 5m window fell back to the 10080 s history buckets, and the
// 1h level lost its 10 oldest minutes (DESIGN §3 allows one bucket).
TEST(MergedReaderFutureTest, EventAheadOfWallClockKeepsEveryWindow) {
  const model::Config config = ProductionWindowsConfig();
  constexpr int k5m = 0, k1hLevel = 1;
  CountingClock wall(T(0));  // now = T0 (a multiple of 5, 60 and 1440 s)
  AggregateShard a(config);
  AggregateShard b(config);
  a.LimitHeadTo(&wall);
  b.LimitHeadTo(&wall);
  for (const int64_t at : {-10, -60, -120, -200, -280, -1800, -1800, -7200}) {
    a.StageEntered(kP, kA, 0, T(at), false);
  }
  for (const int64_t at : {-30, -250, -3000, +600}) b.StageEntered(kP, kA, 0, T(at), false);
  MergedReader reader({&a, &b});

  // The +600 s entry is placed at now + the finest bucket (5 s): T0 + 5.
  EXPECT_EQ(reader.latest(), kT0 + 5);
  // 5m at T0: 5 s buckets T0/5 - 60 .. T0/5. The head's bucket T0/5 + 1
  // reuses the slot of T0/5 - 60, so [T0 - 295, T0 + 5) is read (one bucket
  // short, as DESIGN §3 allows). a: -10 -60 -120 -200 -280 = 5; b: -30 -250
  // = 2; the entry at T0 + 5 is after the window's last bucket. 5 + 2 = 7.
  EXPECT_EQ(reader.ReadAllDimsWindow(kP, reader.Resolve(k5m, T(0))).stages[kA].entered, 7u);
  // 1h at T0: 60 s buckets T0/60 - 60 .. T0/60, [T0 - 3600, T0 + 60); the
  // head T0 + 5 is in T0/60, so nothing is lost. a: 5 + two at -1800 = 7
  // (-7200 is older); b: -30 -250 -3000 = 3, plus the placed entry at T0 + 5
  // in the current bucket: 7 + 3 + 1 = 11.
  const WindowSpan hour = reader.Resolve(k1hLevel, T(0));
  EXPECT_EQ(hour.level, k1hLevel);
  EXPECT_EQ(hour.from, T(-3600));
  EXPECT_EQ(reader.ReadAllDimsWindow(kP, hour).stages[kA].entered, 11u);
  // Totals count every entry where it is: 8 + 4.
  EXPECT_EQ(reader.ReadAllDimsTotals(kP).stages[kA].entered, 12u);

  // 10 s later the placed entry is in the 5m window: [T0 - 290, T0 + 15)
  // holds the 7 and the entry at T0 + 5: 8.
  wall.Set(T(10));
  EXPECT_EQ(reader.ReadAllDimsWindow(kP, reader.Resolve(k5m, T(10))).stages[kA].entered, 8u);

  // b read the clock for its first fact (limit T0 + 5) and for the +600 s
  // one; -250 and -3000 were within the limit. Now at T0 + 10: the fact at
  // T0 + 10 re-reads it (limit T0 + 15), the one at T0 + 12 does not.
  b.StageEntered(kP, kA, 0, T(10), false);
  b.StageEntered(kP, kA, 0, T(12), false);
  // a read it once (its first fact); b 2 + 1.
  EXPECT_EQ(wall.reads, 1 + 3);
}

}  // namespace
}  // namespace kpid::aggregate
