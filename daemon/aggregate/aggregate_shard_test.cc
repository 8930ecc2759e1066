#include "daemon/aggregate/aggregate_shard.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/aggregate/distribution.h"
#include "gtest/gtest.h"

namespace kpid::aggregate {
namespace {

using cases::ExitOutcome;

// Divisible by 60: 1 s and 60 s bucket indexes are round.
constexpr int64_t kT0 = 1'008'000'000;
constexpr int64_t kMinute = kT0 / 60;  // the 60 s bucket of T0

absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }

constexpr int kP = 0;  // process p: stages a, b, c
constexpr int kQ = 1;  // process q: stage x
constexpr int kA = 0, kB = 1, kC = 2;
constexpr int k1m = 0, k1h = 1;  // window indexes

// Windows 1m (61 buckets of 1 s) and 1h (its buckets are 60 s, the history
// width: it reads the history level, 121 buckets = 2h retention + 1).
model::Config TestConfig() {
  model::Config c;
  c.windows = {absl::Minutes(1), absl::Hours(1)};
  c.retention = absl::Hours(2);
  model::ProcessConfig p;
  p.id = "p";
  p.stages = {{"a", absl::Minutes(10), {}}, {"b", absl::Hours(1), {}}, {"c", absl::Hours(2), {}}};
  c.processes.push_back(p);
  model::ProcessConfig q;
  q.id = "q";
  q.stages = {{"x", absl::Hours(1), {}}};
  c.processes.push_back(q);
  return c;
}

void Exit(AggregateShard& s, int stage, DimsId dims, int64_t at, bool advanced, int64_t cycle_s,
          bool sla_met, int process = kP) {
  s.StageExited(process, stage, dims, T(at),
                advanced ? ExitOutcome::kAdvanced : ExitOutcome::kFallout, absl::Seconds(cycle_s),
                sla_met);
}

::testing::AssertionResult Near(absl::optional<double> got, double want, double rel) {
  if (!got.has_value()) return ::testing::AssertionFailure() << "absent, want " << want;
  if (std::abs(*got - want) <= rel * want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << *got << " is not within " << rel * 100 << "% of " << want;
}

TEST(AggregateShardTest, LayoutFromConfig) {
  AggregateShard shard(TestConfig());
  const auto& levels = shard.layout().levels();
  ASSERT_EQ(levels.size(), 2u);
  EXPECT_EQ(levels[0].width, 1);
  EXPECT_EQ(levels[0].slots, 61);
  EXPECT_EQ(levels[1].width, 60);
  EXPECT_EQ(levels[1].slots, 121);  // 7200 / 60 + 1
  EXPECT_EQ(shard.process_count(), 2);
  EXPECT_EQ(shard.stage_count(kP), 3);
  EXPECT_EQ(shard.process_id(kQ), "q");
  EXPECT_EQ(shard.stage_id(kP, kC), "c");
  EXPECT_FALSE(shard.latest().has_value());
}

TEST(AggregateShardTest, WindowSumsFactsInSeveralBuckets) {
  AggregateShard shard(TestConfig());
  // Four exits of stage a in four 1 s buckets, within one minute.
  Exit(shard, kA, 0, 1, true, 100, true);
  Exit(shard, kA, 0, 2, false, 700, false);
  Exit(shard, kA, 0, 30, true, 50, true);
  Exit(shard, kA, 0, 59, true, 900, false);
  shard.StageEntered(kP, kB, 0, T(1), false);
  shard.StageEntered(kP, kB, 0, T(30), true);
  EXPECT_EQ(shard.latest(), kT0 + 59);

  // 1m window at T0 + 59: buckets T0 - 1 .. T0 + 59 hold all of them.
  StageWindowCounts a = shard.ReadStageWindow(kP, kA, 0, k1m, T(59));
  EXPECT_EQ(a.exited(), 4u);
  EXPECT_EQ(a.advanced, 3u);
  EXPECT_EQ(a.fallout, 1u);
  EXPECT_EQ(a.sla_met, 2u);
  EXPECT_EQ(a.entered, 0u);
  EXPECT_EQ(a.conversion(), 0.75);
  EXPECT_EQ(a.fallout_ratio(), 0.25);
  EXPECT_EQ(a.sla_attainment(), 0.5);
  EXPECT_FALSE(a.rework_ratio().has_value());  // nothing entered a
  EXPECT_EQ(a.Value("throughput"), 4.0);
  EXPECT_EQ(a.Value("sla_attainment"), 0.5);
  EXPECT_FALSE(a.Value("cycle_time_p50").has_value());

  StageWindowCounts b = shard.ReadStageWindow(kP, kB, 0, k1m, T(59));
  EXPECT_EQ(b.entered, 2u);
  EXPECT_EQ(b.rework, 1u);
  EXPECT_EQ(b.rework_ratio(), 0.5);
  EXPECT_FALSE(b.conversion().has_value());  // no exits: absent, not 0

  // The same facts in the 1h window (one 60 s bucket, T0/60).
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 0, k1h, T(59)), a);
  // One pass over all series of the dims gives the same.
  SeriesWindow w = shard.ReadSeriesWindow(kP, 0, shard.Resolve(k1m, T(59)));
  ASSERT_EQ(w.stages.size(), 3u);
  EXPECT_EQ(w.stages[kA], a);
  EXPECT_EQ(w.stages[kB], b);
  EXPECT_EQ(w.stages[kC], StageWindowCounts{});

  // At T0 + 30 the 1m window holds only the first three exits (T0 + 59 is
  // after its end).
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 0, k1m, T(30)).exited(), 3u);
}

TEST(AggregateShardTest, WindowSlidesPastAnExit) {
  AggregateShard shard(TestConfig());
  Exit(shard, kA, 0, 10, true, 5, true);  // at = T0 + 10
  auto exits = [&](int window, absl::Time now) {
    return shard.ReadStageWindow(kP, kA, 0, window, now).exited();
  };
  // Before it happened: not yet in the window.
  EXPECT_EQ(exits(k1m, T(9)), 0u);
  EXPECT_EQ(exits(k1m, T(10)), 1u);
  // 1m window, 1 s buckets: counted through now = at + W (T0 + 70, also its
  // last fraction of a second), gone one bucket later, at T0 + 71.
  EXPECT_EQ(exits(k1m, T(70)), 1u);
  EXPECT_EQ(exits(k1m, T(70) + absl::Milliseconds(999)), 1u);
  EXPECT_EQ(exits(k1m, T(71)), 0u);
  // 1h window, 60 s buckets: the exit is in bucket T0/60 (T0 .. T0 + 60), so
  // it is counted until that bucket is 61 buckets old: through T0 + 3659
  // (= at + W + 49 s), gone at T0 + 3660 (= at + W + 50 s, within one bucket).
  EXPECT_EQ(exits(k1h, T(3610)), 1u);  // at + W
  EXPECT_EQ(exits(k1h, T(3659)), 1u);
  EXPECT_EQ(exits(k1h, T(3660)), 0u);
}

TEST(AggregateShardTest, RotationClearsBuckets) {
  AggregateShard shard(TestConfig());
  // T0 and T0 + 61 share a slot of the 1 s level (61 slots).
  Exit(shard, kA, 0, 0, true, 5, true);
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 0, k1m, T(0)).exited(), 1u);
  Exit(shard, kA, 0, 61, false, 5, false);
  StageWindowCounts c = shard.ReadStageWindow(kP, kA, 0, k1m, T(61));
  // Only the second: the first's bucket was cleared when the slot was reused.
  EXPECT_EQ(c.exited(), 1u);
  EXPECT_EQ(c.fallout, 1u);
  EXPECT_EQ(c.sla_met, 0u);
  EXPECT_EQ(shard.ReadCycleTimes(kP, kA, k1m, T(61)).count(), 1u);

  // One exit a second for 200 s: the 1m window at T0 + 261 holds the 61
  // buckets T0 + 201 .. T0 + 261, i.e. the exits at 201..260 (60) and the one
  // at 61 is long gone.
  for (int64_t s = 201; s <= 260; ++s) Exit(shard, kB, 1, s, true, 5, true);
  EXPECT_EQ(shard.ReadStageWindow(kP, kB, 1, k1m, T(261)).exited(), 60u);
  EXPECT_EQ(shard.ReadStageWindow(kP, kB, 1, k1m, T(230)).exited(), 30u);  // 201..230
}

TEST(AggregateShardTest, LateFactsBeyondHistory) {
  AggregateShard shard(TestConfig());
  shard.StageEntered(kP, kA, 0, T(0), false);
  // History: 121 buckets of 60 s ending with T0/60, the oldest starting at
  // T0 - 7200. A fact at T0 - 7200 is kept; one at T0 - 7201 is late.
  shard.StageEntered(kP, kA, 0, T(-7200), false);
  EXPECT_EQ(shard.late(), 0u);
  shard.StageEntered(kP, kA, 0, T(-7201), false);
  EXPECT_EQ(shard.late(), 1u);
  // Totals count all three.
  EXPECT_EQ(shard.ReadStageTotals(kP, kA, 0).entered, 3u);
  // Windows at T0 count only T0.
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 0, k1m, T(0)).entered, 1u);
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 0, k1h, T(0)).entered, 1u);
  // The 1m window ending at T0 - 7190 is far behind the 1 s level (which
  // keeps T0 - 60 .. T0), so it reads history: buckets (T0 - 7250)/60 =
  // T0/60 - 121 (too old, clipped) and (T0 - 7190)/60 = T0/60 - 120, which
  // holds the fact at T0 - 7200 and only it.
  const WindowSpan span = shard.Resolve(k1m, T(-7190));
  EXPECT_EQ(span.level, 1);
  EXPECT_EQ(span.first, kMinute - 120);
  EXPECT_EQ(span.last, kMinute - 120);
  EXPECT_EQ(span.from, T(-7200));
  EXPECT_EQ(span.to, T(-7140));
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 0, span).entered, 1u);
}

TEST(AggregateShardTest, FactsInTheFuture) {
  AggregateShard shard(TestConfig());
  shard.CaseStarted(kP, 0, T(0));
  shard.CaseStarted(kP, 0, T(30));  // 30 s ahead of a reader at T0
  EXPECT_EQ(shard.latest(), kT0 + 30);
  // A read at T0 counts up to its own bucket only.
  EXPECT_EQ(shard.ReadProcessWindow(kP, 0, k1m, T(0)).started, 1u);
  EXPECT_EQ(shard.ReadProcessWindow(kP, 0, k1m, T(30)).started, 2u);
  // The head moved to T0 + 30, so the 1 s level now keeps T0 - 30 .. T0 + 30:
  // a fact at T0 - 40 goes to history only (and is not late).
  shard.CaseStarted(kP, 0, T(-40));
  EXPECT_EQ(shard.late(), 0u);
  EXPECT_EQ(shard.ReadProcessWindow(kP, 0, k1m, T(0)).started, 1u);
  // History: bucket (T0 - 40)/60 = T0/60 - 1, inside the 1h window at T0;
  // so is T0 + 30, in the same 60 s bucket as T0.
  EXPECT_EQ(shard.ReadProcessWindow(kP, 0, k1h, T(0)).started, 3u);
  EXPECT_EQ(shard.ReadProcessTotals(kP, 0).started, 3u);
}

// le is inclusive: a value equal to a bound is in that bound's bucket.
TEST(LatencyHistogramTest, BucketOfEveryBound) {
  for (int i = 0; i < 16; ++i) {
    const double bound = LatencyHistogram::kBounds[static_cast<size_t>(i)];
    EXPECT_EQ(LatencyHistogram::BucketOf(bound), i) << bound;
    EXPECT_EQ(LatencyHistogram::BucketOf(std::nextafter(bound, 0.0)), i) << bound;
    EXPECT_EQ(LatencyHistogram::BucketOf(std::nextafter(bound, 1e300)), i + 1) << bound;
  }
  EXPECT_EQ(LatencyHistogram::BucketOf(-1), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(0), 0);
  EXPECT_EQ(LatencyHistogram::BucketOf(299), 1);    // (60, 300]
  EXPECT_EQ(LatencyHistogram::BucketOf(86400), 9);  // (43200, 86400]
  EXPECT_EQ(LatencyHistogram::BucketOf(3e6), 16);   // past 30 d: +Inf
  EXPECT_EQ(LatencyHistogram::BucketOf(INFINITY), 16);
  EXPECT_EQ(LatencyHistogram::BucketOf(std::nan("")), 16);
}

// The write path's bucket from the distribution bin must be BucketOf's for
// every value: at both ends of every bin, around every bound, and at random.
TEST(LatencyHistogramTest, BucketOfBinnedIsBucketOf) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> values = {-kInf, -1, 0, 0.5, 1, kInf, std::nan(""), 1e300};
  for (int bin = 1; bin < Distribution::kNumBins; ++bin) {
    const double lower = Distribution::LowerBound(bin);
    values.push_back(lower);
    values.push_back(std::nextafter(lower, 0.0));
    values.push_back(std::nextafter(lower, kInf));
  }
  for (const double bound : LatencyHistogram::kBounds) {
    values.push_back(bound);
    values.push_back(std::nextafter(bound, 0.0));
    values.push_back(std::nextafter(bound, kInf));
  }
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exponent(-3, 10);
  for (int i = 0; i < 200000; ++i) values.push_back(std::pow(10.0, exponent(rng)));
  for (const double v : values) {
    ASSERT_EQ(LatencyHistogram::BucketOfBinned(v, Distribution::BinOf(v)),
              LatencyHistogram::BucketOf(v))
        << v;
  }
  // By hand: le = 60 is inclusive, so 60 s is in bucket 0 and 60.5 s in 1.
  EXPECT_EQ(LatencyHistogram::BucketOfBinned(60, Distribution::BinOf(60)), 0);
  EXPECT_EQ(LatencyHistogram::BucketOfBinned(60.5, Distribution::BinOf(60.5)), 1);
}

TEST(AggregateShardTest, TotalsAndHistograms) {
  AggregateShard shard(TestConfig());
  // Cycle times 30, 60, 61, 3600 and 3,000,000 s (beyond the last bound).
  Exit(shard, kA, 2, 0, true, 30, true);
  Exit(shard, kA, 2, 1, true, 60, true);
  Exit(shard, kA, 2, 2, false, 61, true);
  Exit(shard, kA, 2, 3, true, 3600, false);
  Exit(shard, kA, 2, 4, false, 3'000'000, false);
  shard.StageEntered(kP, kA, 2, T(0), false);
  shard.StageEntered(kP, kA, 2, T(1), true);
  shard.SlaBreached(kP, kA, 2, T(5));
  shard.CaseExpired(kP, kB, 2, T(6));
  shard.BacklogChanged(kP, kA, 2, +1, 0);
  shard.BacklogChanged(kP, kA, 2, +1, 0);
  shard.BacklogChanged(kP, kA, 2, +1, 0);
  shard.BacklogChanged(kP, kA, 2, -1, 0);
  shard.BacklogChanged(kP, kA, 2, 0, +1);
  shard.BacklogChanged(kP, kB, 2, +1, 0);

  const StageTotals a = shard.ReadStageTotals(kP, kA, 2);
  EXPECT_EQ(a.entered, 2u);
  EXPECT_EQ(a.rework, 1u);
  EXPECT_EQ(a.exited_advanced, 3u);
  EXPECT_EQ(a.exited_fallout, 2u);
  EXPECT_EQ(a.sla_met, 3u);
  EXPECT_EQ(a.sla_missed, 2u);
  EXPECT_EQ(a.sla_breaches, 1u);
  EXPECT_EQ(a.backlog, 2);
  EXPECT_EQ(a.backlog_over_sla, 1);
  // le is inclusive: 30 and 60 in le=60, 61 in le=300, 3600 in le=3600
  // (index 4), 3e6 in +Inf (index 16).
  const LatencyHistogram& h = a.cycle_time;
  EXPECT_EQ(h.buckets[0], 2u);
  EXPECT_EQ(h.buckets[1], 1u);
  EXPECT_EQ(h.buckets[4], 1u);
  EXPECT_EQ(h.buckets[16], 1u);
  EXPECT_EQ(h.cumulative(0), 2u);
  EXPECT_EQ(h.cumulative(1), 3u);
  EXPECT_EQ(h.cumulative(3), 3u);
  EXPECT_EQ(h.cumulative(4), 4u);
  EXPECT_EQ(h.cumulative(15), 4u);
  EXPECT_EQ(h.cumulative(16), 5u);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum, 30 + 60 + 61 + 3600 + 3'000'000);
  EXPECT_EQ(shard.ReadStageTotals(kP, kB, 2).expired, 1u);
  EXPECT_EQ(shard.ReadProcessTotals(kP, 2).expired, 1u);
  EXPECT_EQ(shard.ReadSeriesTotals(kP, 2).open_cases(), 3);  // 2 in a + 1 in b

  // The window has the breach too.
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 2, k1m, T(6)).sla_breaches, 1u);
  EXPECT_EQ(shard.ReadStageWindow(kP, kA, 2, k1m, T(6)).Value("sla_breaches"), 1.0);

  shard.Transition(kP, kA, kB, T(0));
  shard.Transition(kP, kA, kB, T(1));
  shard.Transition(kP, kB, kA, T(2));
  EXPECT_EQ(shard.ReadTransitions(kP, kA, kB), 2u);
  EXPECT_EQ(shard.ReadTransitions(kP, kB, kA), 1u);
  EXPECT_EQ(shard.ReadTransitions(kP, kA, kC), 0u);
  EXPECT_EQ(shard.ReadTransitions(kP, kA, 3), 0u);  // out of range
}

TEST(AggregateShardTest, ProcessKpis) {
  AggregateShard shard(TestConfig());
  shard.CaseStarted(kP, 1, T(0));
  shard.CaseStarted(kP, 1, T(1));
  shard.CaseStarted(kP, 1, T(2));
  shard.CaseCompleted(kP, 1, T(10), 1000, absl::Hours(2));
  shard.CaseCompleted(kP, 1, T(11), 3000, absl::Hours(4));
  shard.CaseFallout(kP, 1, T(12));
  shard.Cost(kP, 1, T(13), 50);
  shard.Cost(kP, 1, T(14), 70);
  shard.Feedback(kP, 1, T(15), 9);
  shard.Feedback(kP, 1, T(16), 7);
  shard.Feedback(kP, 1, T(17), 8);

  const ProcessWindowCounts w = shard.ReadProcessWindow(kP, 1, k1h, T(20));
  EXPECT_EQ(w.started, 3u);
  EXPECT_EQ(w.completed, 2u);
  EXPECT_EQ(w.fallout, 1u);
  EXPECT_DOUBLE_EQ(w.revenue, 4000);
  EXPECT_DOUBLE_EQ(w.cost, 120);
  EXPECT_NEAR(*w.win_ratio(), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(w.avg_deal(), 2000.0);
  EXPECT_EQ(w.cost_to_serve(), 60.0);
  EXPECT_EQ(w.feedback_score(), 8.0);
  EXPECT_EQ(w.Value("avg_deal"), 2000.0);
  EXPECT_FALSE(w.Value("lead_time_p50").has_value());

  const ProcessTotals t = shard.ReadProcessTotals(kP, 1);
  EXPECT_EQ(t.started, 3u);
  EXPECT_EQ(t.completed, 2u);
  EXPECT_EQ(t.fallout, 1u);
  EXPECT_DOUBLE_EQ(t.revenue, 4000);
  EXPECT_DOUBLE_EQ(t.cost, 120);
  EXPECT_DOUBLE_EQ(t.score_sum, 24);
  EXPECT_EQ(t.score_count, 3u);
  // 7200 s in le=7200 (index 5), 14400 s in le=14400 (index 6).
  EXPECT_EQ(t.lead_time.buckets[5], 1u);
  EXPECT_EQ(t.lead_time.buckets[6], 1u);
  EXPECT_EQ(t.lead_time.count(), 2u);

  // Lead-time quantiles of two values: rank q * (2 - 1); p50 -> rank 0.5,
  // and the first value already has 1 > 0.5 below it: 7200 s; p100 -> 14400 s.
  const Distribution lead = shard.ReadLeadTimes(kP, k1h, T(20));
  EXPECT_EQ(lead.count(), 2u);
  EXPECT_TRUE(Near(lead.Quantile(0.5), 7200, 0.01));
  EXPECT_TRUE(Near(lead.Quantile(1), 14400, 0.01));

  // No events: every ratio absent.
  const ProcessWindowCounts none = shard.ReadProcessWindow(kQ, 0, k1h, T(20));
  EXPECT_FALSE(none.win_ratio().has_value());
  EXPECT_FALSE(none.avg_deal().has_value());
  EXPECT_FALSE(none.cost_to_serve().has_value());
  EXPECT_FALSE(none.feedback_score().has_value());
}

TEST(AggregateShardTest, CycleTimeQuantilesOverAllDims) {
  AggregateShard shard(TestConfig());
  // Exits with cycle times 1..1000 s, spread over 4 dims and 50 s of event time.
  for (int i = 1; i <= 1000; ++i) Exit(shard, kC, i % 4, i % 50, true, i, true);
  const Distribution d = shard.ReadCycleTimes(kP, kC, k1m, T(50));
  EXPECT_EQ(d.count(), 1000u);
  // Ranks 0.5 * 999 = 499.5 -> 500; 0.9 * 999 = 899.1 -> 900; 0.99 * 999 = 989.01 -> 990.
  EXPECT_TRUE(Near(d.Quantile(0.5), 500, 0.02));
  EXPECT_TRUE(Near(d.Quantile(0.9), 900, 0.02));
  EXPECT_TRUE(Near(d.Quantile(0.99), 990, 0.02));
  // Other stages and processes: empty.
  EXPECT_FALSE(shard.ReadCycleTimes(kP, kA, k1m, T(50)).Quantile(0.5).has_value());
  EXPECT_EQ(shard.ReadCycleTimes(kQ, 0, k1m, T(50)).count(), 0u);
  EXPECT_EQ(shard.ReadLeadTimes(kP, k1m, T(50)).count(), 0u);
  // Counts per dims: dims 0 had i = 4, 8, ..., 1000: 250.
  EXPECT_EQ(shard.ReadStageWindow(kP, kC, 0, k1m, T(50)).exited(), 250u);
  EXPECT_EQ(shard.ReadAllDimsWindow(kP, shard.Resolve(k1m, T(50))).stages[kC].exited(), 1000u);
  // 60 s later the 1m window has slid past all of them (last at T0 + 49).
  EXPECT_EQ(shard.ReadCycleTimes(kP, kC, k1m, T(110)).count(), 0u);
  EXPECT_EQ(shard.ReadCycleTimes(kP, kC, k1h, T(110)).count(), 1000u);
}

TEST(AggregateShardTest, DistributionBucketsRotate) {
  AggregateShard shard(TestConfig());
  Exit(shard, kA, 0, 0, true, 100, true);
  Exit(shard, kA, 0, 61, true, 5000, true);  // same 1 s slot as T0
  const Distribution d = shard.ReadCycleTimes(kP, kA, k1m, T(61));
  EXPECT_EQ(d.count(), 1u);
  EXPECT_TRUE(Near(d.Quantile(0.5), 5000, 0.01));
  // Both are in the 1h window (history buckets T0/60 and T0/60 + 1).
  EXPECT_EQ(shard.ReadCycleTimes(kP, kA, k1h, T(61)).count(), 2u);
}

// A reused distribution slot prepares a series only for its first fact
// there: the series that got none must read empty, not the bins the slot
// held 61 buckets before, and so must the state they serialize to.
TEST(AggregateShardTest, SeriesWithoutFactsInAReusedBucketReadEmpty) {
  AggregateShard shard(TestConfig());
  Exit(shard, kA, 0, 0, true, 100, true);
  Exit(shard, kB, 0, 0, true, 200, true);
  shard.CaseCompleted(kP, 0, T(0), 1.0, absl::Seconds(300));
  Exit(shard, kB, 0, 61, true, 5000, true);  // same 1 s slot as T0, stage b only
  const absl::StatusOr<std::unique_ptr<AggregateShard>> restored =
      AggregateShard::Restore(TestConfig(), shard.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (const AggregateShard* s : {&shard, restored->get()}) {
    // 1m window at T0 + 61: buckets T0 + 1 .. T0 + 61; only the exit of b at 61.
    EXPECT_EQ(s->ReadCycleTimes(kP, kA, k1m, T(61)).count(), 0u);
    EXPECT_EQ(s->ReadCycleTimes(kP, kB, k1m, T(61)).count(), 1u);
    EXPECT_EQ(s->ReadLeadTimes(kP, k1m, T(61)).count(), 0u);
    // 1h window: all four facts (history buckets T0/60 and T0/60 + 1).
    EXPECT_EQ(s->ReadCycleTimes(kP, kA, k1h, T(61)).count(), 1u);
    EXPECT_EQ(s->ReadCycleTimes(kP, kB, k1h, T(61)).count(), 2u);
    EXPECT_EQ(s->ReadLeadTimes(kP, k1h, T(61)).count(), 1u);
  }
  // b's series of the slot is prepared again for T0 + 122: only its new bin.
  Exit(shard, kB, 0, 122, true, 200, true);
  const Distribution b = shard.ReadCycleTimes(kP, kB, shard.Resolve(k1m, T(122)));
  EXPECT_EQ(b.count(), 1u);
  EXPECT_TRUE(Near(b.Quantile(0.5), 200, 0.01));
  EXPECT_EQ(shard.ReadCycleTimes(kP, kA, k1m, T(122)).count(), 0u);
}

TEST(AggregateShardTest, EnumeratesSeries) {
  AggregateShard shard(TestConfig());
  EXPECT_TRUE(shard.ListDims(kP).empty());
  shard.CaseStarted(kP, 5, T(0));
  shard.CaseStarted(kP, 0, T(0));
  shard.CaseStarted(kP, 300, T(0));  // in the second chunk
  shard.CaseStarted(kQ, 2, T(0));
  EXPECT_EQ(shard.ListDims(kP), (std::vector<DimsId>{0, 5, 300}));
  EXPECT_EQ(shard.ListDims(kQ), (std::vector<DimsId>{2}));
  EXPECT_TRUE(shard.ListDims(7).empty());
  // Unknown dims read as zeros.
  EXPECT_EQ(shard.ReadProcessWindow(kP, 6, k1m, T(0)), ProcessWindowCounts{});
  EXPECT_EQ(shard.ReadProcessWindow(kP, 300, k1m, T(0)).started, 1u);
  const SeriesWindow all = shard.ReadAllDimsWindow(kP, shard.Resolve(k1m, T(0)));
  EXPECT_EQ(all.process.started, 3u);
  EXPECT_EQ(shard.ReadAllDimsTotals(kP).process.started, 3u);
  EXPECT_GT(shard.AllocatedBytes(), 0u);
}

TEST(AggregateShardTest, BadIndexesAreDroppedAndCounted) {
  AggregateShard shard(TestConfig());
  shard.CaseStarted(2, 0, T(0));              // no process 2
  shard.StageEntered(kQ, 1, 0, T(0), false);  // q has one stage
  shard.CaseStarted(kP, AggregateShard::kMaxDims, T(0));
  shard.Transition(kP, kA, 9, T(0));
  shard.CaseStarted(kP, 0, absl::InfiniteFuture());  // no bucket for it
  EXPECT_EQ(shard.dropped(), 5u);
  EXPECT_EQ(shard.ReadProcessTotals(kP, 0).started, 1u);  // totals still count it
  EXPECT_FALSE(shard.latest().has_value());
  // Reads with bad indexes return zeros.
  EXPECT_EQ(shard.ReadStageWindow(5, 0, 0, k1m, T(0)), StageWindowCounts{});
  EXPECT_EQ(shard.ReadStageWindow(kP, 3, 0, k1m, T(0)), StageWindowCounts{});
  EXPECT_EQ(shard.ReadStageWindow(kP, 0, 0, 2, T(0)), StageWindowCounts{});  // no window 2
  EXPECT_EQ(shard.ReadCycleTimes(kP, -1, k1m, T(0)).count(), 0u);
}

// Every read of `a` and `b` agrees, at several read times.
void ExpectSameReads(const AggregateShard& a, const AggregateShard& b) {
  EXPECT_EQ(a.latest(), b.latest());
  EXPECT_EQ(a.late(), b.late());
  EXPECT_EQ(a.dropped(), b.dropped());
  ASSERT_EQ(a.process_count(), b.process_count());
  for (int p = 0; p < a.process_count(); ++p) {
    ASSERT_EQ(a.ListDims(p), b.ListDims(p));
    for (int from = 0; from < a.stage_count(p); ++from) {
      for (int to = 0; to < a.stage_count(p); ++to) {
        EXPECT_EQ(a.ReadTransitions(p, from, to), b.ReadTransitions(p, from, to));
      }
    }
    EXPECT_EQ(a.ReadAllDimsTotals(p), b.ReadAllDimsTotals(p));
    for (DimsId d : a.ListDims(p)) EXPECT_EQ(a.ReadSeriesTotals(p, d), b.ReadSeriesTotals(p, d));
    for (int w = 0; w < a.layout().window_count(); ++w) {
      for (int64_t end : {-7000, -3000, -60, -30, 0, 10, 100, 3000}) {
        const WindowSpan span = a.Resolve(w, T(end));
        SCOPED_TRACE(::testing::Message() << "process " << p << " window " << w << " end " << end);
        EXPECT_EQ(a.ReadAllDimsWindow(p, span), b.ReadAllDimsWindow(p, span));
        for (DimsId d : a.ListDims(p)) {
          EXPECT_EQ(a.ReadSeriesWindow(p, d, span), b.ReadSeriesWindow(p, d, span));
        }
        EXPECT_EQ(a.ReadLeadTimes(p, span), b.ReadLeadTimes(p, span));
        for (int s = 0; s < a.stage_count(p); ++s) {
          EXPECT_EQ(a.ReadCycleTimes(p, s, span), b.ReadCycleTimes(p, s, span));
        }
      }
    }
  }
}

// Restores `shard`'s state into a new shard, which must read as `shard`
// does and serialize to the same bytes. Null (after a failure) if the state
// does not restore.
std::unique_ptr<AggregateShard> ExpectRoundTrip(const AggregateShard& shard) {
  const std::string bytes = shard.Serialize();
  absl::StatusOr<std::unique_ptr<AggregateShard>> restored =
      AggregateShard::Restore(TestConfig(), bytes);
  EXPECT_TRUE(restored.ok()) << restored.status();
  if (!restored.ok()) return nullptr;
  ExpectSameReads(shard, **restored);
  EXPECT_EQ((*restored)->Serialize(), bytes);
  return *std::move(restored);
}

// A bit of everything, over two hours of event time.
void Populate(AggregateShard& s, int64_t from, int64_t to) {
  for (int64_t t = from; t < to; t += 37) {
    const DimsId d = static_cast<DimsId>(((t % 3) + 3) % 3);
    s.CaseStarted(kP, d, T(t));
    s.StageEntered(kP, kA, d, T(t), t % 5 == 0);
    s.BacklogChanged(kP, kA, d, +1, 0);
    Exit(s, kA, d, t + 5, t % 2 == 0, 5 + t % 700, t % 3 != 0);
    s.Transition(kP, kA, kB, T(t + 5));
    s.StageEntered(kP, kB, d, T(t + 5), false);
    if (t % 7 == 0) s.SlaBreached(kP, kB, d, T(t + 6));
    if (t % 4 == 0) {
      Exit(s, kB, d, t + 20, true, 15, true);
      s.CaseCompleted(kP, d, T(t + 20), 100.0 + static_cast<double>(t % 13),
                      absl::Seconds(20 + t % 900));
    } else {
      s.CaseFallout(kP, d, T(t + 20));
    }
    s.Cost(kP, d, T(t + 21), 2.5);
    s.Feedback(kP, d, T(t + 22), static_cast<double>(t % 10));
    s.CaseStarted(kQ, 7, T(t));
    Exit(s, 0, 7, t + 3, true, 3, true, kQ);
  }
  s.StageEntered(kP, kC, 0, T(-9000), false);  // late
  s.CaseExpired(kP, kC, 1, T(to));
}

using cases::CaseStep;

CaseStep Step(int64_t at, DimsId dims = 4, int process = kP) {
  return CaseStep{.process = process, .dims = dims, .at = T(at)};
}
CaseStep WithExit(CaseStep s, int stage, bool advanced, int64_t cycle_s, bool sla_met,
                  bool over_sla = false) {
  s.exit_stage = stage;
  s.outcome = advanced ? ExitOutcome::kAdvanced : ExitOutcome::kFallout;
  s.cycle_time = absl::Seconds(cycle_s);
  s.sla_met = sla_met;
  s.exit_over_sla = over_sla;
  return s;
}
CaseStep WithEntry(CaseStep s, int stage, bool rework) {
  s.entry_stage = stage;
  s.rework = rework;
  return s;
}

// One case's life as steps: every fact of each step lands, in the windows
// and the totals.
TEST(AggregateShardTest, CaseStepPlacesEveryFact) {
  AggregateShard shard(TestConfig());
  CaseStep start = WithEntry(Step(0), kA, false);
  start.started = true;
  shard.CaseStepped(start);
  shard.CaseStepped(WithEntry(WithExit(Step(10), kA, true, 10, true), kB, false));
  shard.CaseStepped(WithEntry(WithExit(Step(20), kB, true, 10, true), kA, true));
  shard.SlaBreached(kP, kA, 4, T(30));
  shard.BacklogChanged(kP, kA, 4, 0, +1);
  CaseStep close = WithExit(Step(40), kA, true, 20, false, /*over_sla=*/true);
  close.close = CaseStep::Close::kCompleted;
  close.amount = 500;
  close.lead_time = absl::Seconds(40);
  shard.CaseStepped(close);

  // a: entered at 0 and 20 (the second a rework), exits at 10 (met) and 40
  // (missed), both advanced. b: entered at 10, exited at 20 (met).
  const SeriesWindow w = shard.ReadSeriesWindow(kP, 4, shard.Resolve(k1m, T(40)));
  EXPECT_EQ(w.stages[kA], (StageWindowCounts{.entered = 2,
                                             .advanced = 2,
                                             .fallout = 0,
                                             .sla_met = 1,
                                             .rework = 1,
                                             .sla_breaches = 1}));
  EXPECT_EQ(w.stages[kB], (StageWindowCounts{.entered = 1, .advanced = 1, .sla_met = 1}));
  EXPECT_EQ(w.process.started, 1u);
  EXPECT_EQ(w.process.completed, 1u);
  EXPECT_EQ(w.process.fallout, 0u);
  EXPECT_EQ(w.process.revenue, 500);
  // The history level has the same facts (one 60 s bucket).
  EXPECT_EQ(shard.ReadSeriesWindow(kP, 4, shard.Resolve(k1h, T(40))).stages[kA].entered, 2u);
  // Backlog of a: +1 -1 +1 -1 = 0; over SLA: +1 (breach) -1 (left) = 0.
  const StageTotals a = shard.ReadStageTotals(kP, kA, 4);
  EXPECT_EQ(a.backlog, 0);
  EXPECT_EQ(a.backlog_over_sla, 0);
  EXPECT_EQ(a.exited_advanced, 2u);
  EXPECT_EQ(a.sla_met, 1u);
  EXPECT_EQ(a.sla_missed, 1u);
  EXPECT_DOUBLE_EQ(a.cycle_time.sum, 10 + 20);
  EXPECT_EQ(shard.ReadStageTotals(kP, kB, 4).backlog, 0);  // +1 at 10, -1 at 20
  EXPECT_EQ(shard.ReadTransitions(kP, kA, kB), 1u);
  EXPECT_EQ(shard.ReadTransitions(kP, kB, kA), 1u);
  const ProcessTotals p = shard.ReadProcessTotals(kP, 4);
  EXPECT_EQ(p.started, 1u);
  EXPECT_EQ(p.completed, 1u);
  EXPECT_EQ(p.revenue, 500);
  EXPECT_EQ(p.lead_time.count(), 1u);
  EXPECT_EQ(shard.ReadCycleTimes(kP, kA, k1m, T(40)).count(), 2u);
  EXPECT_EQ(shard.ReadLeadTimes(kP, k1m, T(40)).count(), 1u);
  EXPECT_EQ(shard.late(), 0u);
  EXPECT_EQ(shard.dropped(), 0u);
}

// The aggregator's CaseStepped does what CaseSink's, one fact at a time,
// does: in order, out of order, late, ahead, with bad indexes.
TEST(AggregateShardTest, CaseStepIsItsFactsOneByOne) {
  const model::Config config = TestConfig();
  AggregateShard stepped(config);
  AggregateShard one_by_one(config);
  auto both = [&](const CaseStep& s) {
    stepped.CaseStepped(s);
    one_by_one.CaseSink::CaseStepped(s);
  };
  for (int64_t t = -7000; t < 400; t += 37) {
    const DimsId d = static_cast<DimsId>(((t % 3) + 3) % 3);
    CaseStep start = WithEntry(Step(t, d), kA, false);
    start.started = true;
    both(start);
    both(WithEntry(WithExit(Step(t + 5, d), kA, t % 2 == 0, 5 + t % 700, t % 3 != 0), kB,
                   t % 5 == 0));
    CaseStep close = WithExit(Step(t + 20, d), kB, t % 4 == 0, 15, true, t % 7 == 0);
    close.close = t % 4 == 0 ? CaseStep::Close::kCompleted : CaseStep::Close::kFallout;
    close.amount = 100.0 + static_cast<double>(t % 13);
    close.lead_time = absl::Seconds(20 + t % 900);
    both(close);
    both(WithExit(Step(t - 3000, d), kC, true, 1, true));  // behind the 1 s level
  }
  // Older than the history: its exit and its entry are late, one each.
  const uint64_t late = stepped.late();
  both(WithEntry(WithExit(Step(-9000), kA, true, 1, true), kB, false));
  EXPECT_EQ(stepped.late(), late + 2);
  // Out of range: each fact of the step is dropped and counted, as alone
  // (the transition of the first only counts: it needs no dims).
  both(WithEntry(WithExit(Step(500, AggregateShard::kMaxDims), kA, true, 1, true), kB, false));
  both(WithEntry(Step(500), 9, false));             // StageEntered, BacklogChanged
  both(WithEntry(Step(500, 4, kQ + 1), 0, false));  // no such process
  CaseStep forever = WithEntry(Step(0), kA, false);
  forever.at = absl::InfiniteFuture();
  forever.started = true;
  both(forever);  // two facts with no bucket; the backlog change is fine
  // 4 (exit, backlog, entry, backlog) + 2 + 2 + 2.
  EXPECT_EQ(stepped.dropped(), 10u);
  ExpectSameReads(stepped, one_by_one);
  EXPECT_EQ(stepped.Serialize(), one_by_one.Serialize());
}

TEST(AggregateShardTest, StepHintsChangeNothing) {
  const model::Config config = TestConfig();
  AggregateShard hinted(config);
  AggregateShard plain(config);
  EXPECT_FALSE(hinted.WantsStepHints());
  std::vector<CaseStep> steps;
  for (int64_t t = -7000; t < 400; t += 37) {
    const DimsId d = static_cast<DimsId>(((t % 3) + 3) % 3);
    CaseStep start = WithEntry(Step(t, d), kA, false);
    start.started = true;
    steps.push_back(start);
    steps.push_back(WithEntry(WithExit(Step(t + 5, d), kA, true, 5, true), kB, false));
    CaseStep close = WithExit(Step(t + 20, d), kB, true, 15, true);
    close.close = CaseStep::Close::kCompleted;
    close.amount = 100;
    close.lead_time = absl::Seconds(20);
    steps.push_back(close);
  }
  // Hints a few steps ahead, for steps of dims without a record, out of
  // range, of no process, and one never reported.
  CaseStep stray = WithEntry(Step(100, 7), kA, false);
  for (size_t i = 0; i < steps.size(); ++i) {
    if (i + 3 < steps.size()) hinted.PrefetchStep(steps[i + 3]);
    hinted.PrefetchStep(stray);
    hinted.PrefetchStep(WithEntry(Step(100, AggregateShard::kMaxDims), kA, false));
    hinted.PrefetchStep(WithEntry(Step(100, 0, kQ + 1), 0, false));
    hinted.CaseStepped(steps[i]);
    plain.CaseStepped(steps[i]);
  }
  EXPECT_EQ(hinted.Serialize(), plain.Serialize());
  EXPECT_EQ(hinted.ListDims(kP), plain.ListDims(kP));  // no record for dims 7
  // Wanted from kHintedRecords records on. 3 so far (dims 0-2 of kP);
  // dims 3 .. kHintedRecords - 2 make kHintedRecords - 4 more.
  for (DimsId d = 3; d + 1 < AggregateShard::kHintedRecords; ++d) {
    hinted.CaseStepped(WithEntry(Step(300, d), kA, false));
  }
  EXPECT_FALSE(hinted.WantsStepHints());  // kHintedRecords - 1 records
  hinted.CaseStepped(WithEntry(Step(300, AggregateShard::kHintedRecords), kA, false));
  EXPECT_TRUE(hinted.WantsStepHints());
}

// A distribution slot keeps its bucket's first 24 (series, bin) pairs in a
// pool and the rest in dense bins; a pair the full pool holds gets its later
// facts in the dense bins too. Reads and the state add both up: the same
// facts in another order (so split differently) read and serialize the same.
TEST(AggregateShardTest, DistributionPoolAndDenseBinsAddUp) {
  // 40 cycle times 5% apart: each its own bin (bins are 2% wide).
  std::vector<double> cycle(40);
  for (size_t i = 0; i < cycle.size(); ++i) cycle[i] = 100 * std::pow(1.05, i);
  // a: the 40 values, then the first one twice more (the pool is full by
  // then: they go to the dense bins beside the pool's entry); b: the first
  // value three times first, then the others; all in the 1 s bucket of T0,
  // in stage a, with a lead time between them (the pool is shared).
  AggregateShard a(TestConfig());
  AggregateShard b(TestConfig());
  Distribution want;
  for (size_t i = 0; i < cycle.size(); ++i) {
    a.StageExited(kP, kA, 0, T(0), ExitOutcome::kAdvanced, absl::Seconds(cycle[i]), true);
    if (i == 10) a.CaseCompleted(kP, 0, T(0), 1.0, absl::Seconds(7));
    want.Add(cycle[i]);
  }
  for (int k = 0; k < 2; ++k) {
    a.StageExited(kP, kA, 0, T(0), ExitOutcome::kAdvanced, absl::Seconds(cycle[0]), true);
    want.Add(cycle[0]);
  }
  for (int k = 0; k < 3; ++k) {
    b.StageExited(kP, kA, 0, T(0), ExitOutcome::kAdvanced, absl::Seconds(cycle[0]), true);
  }
  b.CaseCompleted(kP, 0, T(0), 1.0, absl::Seconds(7));
  for (size_t i = 1; i < cycle.size(); ++i) {
    b.StageExited(kP, kA, 0, T(0), ExitOutcome::kAdvanced, absl::Seconds(cycle[i]), true);
  }
  ASSERT_EQ(want.count(), 42u);
  for (const AggregateShard* s : {&a, &b}) {
    for (int w : {k1m, k1h}) {
      const Distribution got = s->ReadCycleTimes(kP, kA, w, T(0));
      EXPECT_EQ(got, want);
      EXPECT_EQ(got.bins()[static_cast<size_t>(Distribution::BinOf(cycle[0]))], 3u);
      EXPECT_EQ(s->ReadLeadTimes(kP, w, T(0)).count(), 1u);
      EXPECT_EQ(s->ReadCycleTimes(kP, kB, w, T(0)).count(), 0u);
    }
  }
  // The state lists each bin once, ascending, whatever the split.
  EXPECT_EQ(a.Serialize(), b.Serialize());
  EXPECT_NE(ExpectRoundTrip(a), nullptr);
}

// A slot whose bucket overflowed its pool takes the next bucket's facts to
// the dense bins at once, and one whose bucket would have fit gets the pool
// back: whichever, each bucket reads what it got, and no other bucket's.
TEST(AggregateShardTest, DistributionSlotsSwitchBetweenPoolAndDenseBins) {
  AggregateShard shard(TestConfig());
  Distribution all;
  int64_t at = 0;
  for (const int facts : {40, 3, 3, 40, 30, 2, 1}) {
    Distribution want;
    for (int i = 0; i < facts; ++i) {
      const double cycle = 10 * std::pow(1.05, i) + static_cast<double>(at);
      Exit(shard, kC, 0, at, true, static_cast<int64_t>(cycle), true);
      want.Add(static_cast<double>(static_cast<int64_t>(cycle)));
      all.Add(static_cast<double>(static_cast<int64_t>(cycle)));
    }
    SCOPED_TRACE(::testing::Message() << "at " << at);
    // The 1m window holds this bucket alone (the slot's last one was 61 s ago).
    EXPECT_EQ(shard.ReadCycleTimes(kP, kC, k1m, T(at)), want);
    EXPECT_EQ(shard.ReadCycleTimes(kP, kC, k1h, T(at)), all);
    const absl::StatusOr<std::unique_ptr<AggregateShard>> restored =
        AggregateShard::Restore(TestConfig(), shard.Serialize());
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ((*restored)->ReadCycleTimes(kP, kC, k1m, T(at)), want);
    at += 61;  // the same 1 s slot
  }
}

// A series' dense bins, prepared again for a later bucket of their slot,
// hold only that bucket's facts, also where its [lo, hi] covers bins the
// slot's last bucket wrote and this one does not: bucket T0 writes 40
// distinct bins (24 to the pool, 16 dense: its pool overflowed, so the
// slot's next bucket starts without a pool), bucket T0 + 61 (the same 1 s
// slot) writes only the lowest and highest of those 40 values, 20 times
// each, all dense, so its range spans every bin T0 wrote.
TEST(AggregateShardTest, ReusedDenseBinsHoldOnlyTheirBucket) {
  AggregateShard shard(TestConfig());
  // 100 s x 1.05^i: 40 values 5% apart, each its own bin (bins are 2% wide).
  std::vector<int64_t> cycle(40);
  for (size_t i = 0; i < cycle.size(); ++i) {
    cycle[i] = static_cast<int64_t>(100 * std::pow(1.05, static_cast<double>(i)));
  }
  for (const int64_t c : cycle) Exit(shard, kC, 0, 0, true, c, true);
  for (int k = 0; k < 20; ++k) {
    Exit(shard, kC, 0, 61, true, cycle.front(), true);
    Exit(shard, kC, 0, 61, true, cycle.back(), true);
  }
  const size_t lowest =
      static_cast<size_t>(Distribution::BinOf(static_cast<double>(cycle.front())));
  const size_t highest =
      static_cast<size_t>(Distribution::BinOf(static_cast<double>(cycle.back())));
  const absl::StatusOr<std::unique_ptr<AggregateShard>> restored =
      AggregateShard::Restore(TestConfig(), shard.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (const AggregateShard* s : {&shard, restored->get()}) {
    // 1m window at T0 + 61: buckets T0 + 1 .. T0 + 61, so T0 + 61 alone.
    const Distribution d = s->ReadCycleTimes(kP, kC, k1m, T(61));
    EXPECT_EQ(d.count(), 40u);
    EXPECT_EQ(d.bins()[lowest], 20u);
    EXPECT_EQ(d.bins()[highest], 20u);
    // 1h window: both buckets (history buckets T0/60 and T0/60 + 1).
    const Distribution h = s->ReadCycleTimes(kP, kC, k1h, T(61));
    EXPECT_EQ(h.count(), 80u);
    EXPECT_EQ(h.bins()[lowest], 21u);
    EXPECT_EQ(h.bins()[static_cast<size_t>(Distribution::BinOf(static_cast<double>(cycle[2])))],
              1u);
  }
}

// A pool entry counts up to 65535; past that a bin's facts go to its dense
// bin, and a restored count that large goes there at once.
TEST(AggregateShardTest, DistributionCountsPastAPoolEntry) {
  AggregateShard shard(TestConfig());
  for (int i = 0; i < 70'000; ++i) Exit(shard, kB, 0, 0, true, 30, true);
  Exit(shard, kB, 0, 0, true, 5000, true);
  const Distribution d = shard.ReadCycleTimes(kP, kB, k1m, T(0));
  EXPECT_EQ(d.count(), 70'001u);
  EXPECT_EQ(d.bins()[static_cast<size_t>(Distribution::BinOf(30))], 70'000u);
  EXPECT_EQ(d.bins()[static_cast<size_t>(Distribution::BinOf(5000))], 1u);
  EXPECT_NE(ExpectRoundTrip(shard), nullptr);
}

TEST(AggregateShardTest, SerializeRestoreRoundTrip) {
  const model::Config config = TestConfig();
  AggregateShard shard(config);
  Populate(shard, -7000, 200);
  const std::unique_ptr<AggregateShard> restored = ExpectRoundTrip(shard);
  ASSERT_NE(restored, nullptr);
  // Both go on identically: slot stamps and heads came back too.
  Populate(shard, 200, 400);
  Populate(*restored, 200, 400);
  ExpectSameReads(shard, *restored);
}

TEST(AggregateShardTest, RestoreEmpty) {
  const model::Config config = TestConfig();
  AggregateShard shard(config);
  absl::StatusOr<std::unique_ptr<AggregateShard>> restored =
      AggregateShard::Restore(config, shard.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_FALSE((*restored)->latest().has_value());
  EXPECT_TRUE((*restored)->ListDims(kP).empty());
}

TEST(AggregateShardTest, RestoreRejectsBadInput) {
  const model::Config config = TestConfig();
  AggregateShard shard(config);
  Populate(shard, 0, 400);
  const std::string bytes = shard.Serialize();
  EXPECT_EQ(AggregateShard::Restore(config, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AggregateShard::Restore(config, "nope").status().code(),
            absl::StatusCode::kInvalidArgument);
  // The version varint follows the 4-byte magic: 0 and any later version
  // than this build writes are refused.
  for (uint32_t version : {0u, AggregateShard::kStateVersion + 1}) {
    std::string other = bytes;
    other[4] = static_cast<char>(version);
    EXPECT_EQ(AggregateShard::Restore(config, other).status().code(),
              absl::StatusCode::kFailedPrecondition)
        << version;
  }
  // Every truncation is an error, never a crash.
  for (size_t n = 5; n < bytes.size(); n += 1 + n / 16) {
    EXPECT_FALSE(AggregateShard::Restore(config, bytes.substr(0, n)).ok()) << n;
  }
  EXPECT_EQ(AggregateShard::Restore(config, bytes + "x").status().code(),
            absl::StatusCode::kDataLoss);
}

// What a "stale stream" alert reads: every accepted event is one stage entry,
// completion, fallout, cost or feedback; breaches and expiries are not events.
TEST(AggregateShardTest, EventsOfAProcess) {
  AggregateShard shard(TestConfig());
  // Case 1 (dims 0): enters a at 1, b at 3, completes at 10.
  shard.CaseStarted(kP, 0, T(1));
  shard.StageEntered(kP, kA, 0, T(1), false);
  Exit(shard, kA, 0, 3, true, 2, true);
  shard.Transition(kP, kA, kB, T(3));
  shard.StageEntered(kP, kB, 0, T(3), false);
  shard.SlaBreached(kP, kB, 0, T(7));
  Exit(shard, kB, 0, 10, true, 7, true);
  shard.CaseCompleted(kP, 0, T(10), 100, absl::Seconds(9));
  // Case 2 (dims 0): enters a at 2, falls out at 5.
  shard.CaseStarted(kP, 0, T(2));
  shard.StageEntered(kP, kA, 0, T(2), false);
  Exit(shard, kA, 0, 5, false, 3, true);
  shard.CaseFallout(kP, 0, T(5));
  shard.Cost(kP, 0, T(4), 2.5);
  shard.Cost(kP, 0, T(6), 1.0);
  shard.Feedback(kP, 0, T(12), 4);
  shard.CaseExpired(kP, kC, 0, T(13));
  shard.Cost(kP, 1, T(8), 7.0);  // dims 1

  // dims 0: entries 3 (a, b, a) + completed 1 + fallout 1 + costs 2 +
  // feedback 1 = 8.
  const ProcessWindowCounts all = shard.ReadProcessWindow(kP, 0, k1m, T(30));
  EXPECT_EQ(all.stage_entries, 3u);
  EXPECT_EQ(all.cost_count, 2u);
  EXPECT_EQ(all.events(), 8u);
  EXPECT_EQ(all.Value("events"), 8.0);
  // The same through the series read, and over all dims: 8 + dims 1's cost.
  EXPECT_EQ(shard.ReadSeriesWindow(kP, 0, shard.Resolve(k1m, T(30))).process.events(), 8u);
  EXPECT_EQ(shard.ReadAllDimsWindow(kP, shard.Resolve(k1m, T(30))).process.events(), 9u);
  // The 1m window ending at 62 s covers the 1 s buckets 2..62: case 1's
  // entry at 1 s is out, 8 - 1 = 7.
  EXPECT_EQ(shard.ReadProcessWindow(kP, 0, k1m, T(62)).events(), 7u);
  // Ending at 70 s: buckets 10..70 keep the completion (10) and the
  // feedback (12): 2.
  EXPECT_EQ(shard.ReadProcessWindow(kP, 0, k1m, T(70)).events(), 2u);
  EXPECT_EQ(shard.ReadProcessTotals(kP, 0).cost_count, 2u);
  EXPECT_EQ(shard.ReadProcessTotals(kP, 1).cost_count, 1u);
  EXPECT_EQ(ProcessWindowCounts{}.Value("events"), 0.0);
}

// State written by the version-1 format (the shard as of 0a68fcc, frozen in
// bench/baseline/legacy_aggregate_shard.cc) after, on TestConfig, dims 0:
//   CaseStarted(0 s); StageEntered a (0 s); Cost 2.5 (1 s);
//   StageExited a (2 s, advanced, 30 s, SLA met); Transition a->b;
//   StageEntered b (2 s); StageExited b (3 s, advanced, 1 s, SLA met);
//   CaseCompleted (3 s, 100, lead time 3 s); backlog +1/-1 around each stay.
constexpr char kVersion1State[] =
    "\x4b\x50\x41\x47\x01\x02\x01\x3d\x3c\x79\x86\xf0\xa6\xc1\x07\x00\x00\x02\x01\x70\x03\x01\x61"
    "\x01"
    "\x62\x01\x63\x01\x00\x01\x01\x01\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x59\x40\x00"
    "\x00"
    "\x00\x00\x00\x00\x04\x40\x00\x00\x00\x00\x00\x00\x00\x00\x11\x01\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x40\x01\x01\x00\x01\x00\x00\x00"
    "\x00"
    "\x00\x00\x11\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x3e\x40\x01\x01\x00\x01\x00\x00\x00\x00\x00\x00\x11\x01\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x05\x01\x80\xf0\xa6\xc1\x07\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x82\xf0\xa6\xc1\x07\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x84\xf0\xa6\xc1\x07\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x01\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x86\xf0\xa6\xc1\x07"
    "\x00"
    "\x01\x00\x00\x00\x00\x00\x00\x00\x00\x59\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x3c\x80"
    "\xe4"
    "\x82\x10\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x59\x40\x00\x00\x00\x00\x00\x00\x04\x40\x00"
    "\x00"
    "\x00\x00\x00\x00\x00\x00\x01\x01\x00\x01\x00\x00\x01\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x03\x01\x84\xf0\xa6\xc1\x07\x01\xac\x01\x01\x00\x00\x00\x01\x86\xf0\xa6\xc1\x07\x00\x01\x01"
    "\x01"
    "\x00\x01\x38\x01\x3c\x80\xe4\x82\x10\x01\xac\x01\x01\x01\x01\x01\x00\x01\x38\x01\x01\x71\x01"
    "\x01"
    "\x78\x00\x00\x00";

TEST(AggregateShardTest, RestoresVersion1State) {
  const model::Config config = TestConfig();
  absl::StatusOr<std::unique_ptr<AggregateShard>> restored = AggregateShard::Restore(
      config, absl::string_view(kVersion1State, sizeof(kVersion1State) - 1));
  ASSERT_TRUE(restored.ok()) << restored.status();
  const AggregateShard& s = **restored;
  EXPECT_EQ(s.latest(), kT0 + 3);
  const SeriesWindow w = s.ReadSeriesWindow(kP, 0, s.Resolve(k1m, T(30)));
  EXPECT_EQ(w.process.started, 1u);
  EXPECT_EQ(w.process.completed, 1u);
  EXPECT_EQ(w.process.revenue, 100);
  EXPECT_EQ(w.process.cost, 2.5);
  // Version 1 kept no cost counts: the cost is there, its count is not.
  EXPECT_EQ(w.process.cost_count, 0u);
  // Entries a and b + the completion = 3.
  EXPECT_EQ(w.process.events(), 3u);
  EXPECT_EQ(w.stages[kA].entered, 1u);
  EXPECT_EQ(w.stages[kA].advanced, 1u);
  EXPECT_EQ(w.stages[kA].sla_met, 1u);
  EXPECT_EQ(w.stages[kB].entered, 1u);
  EXPECT_EQ(w.stages[kB].advanced, 1u);
  EXPECT_EQ(s.ReadTransitions(kP, kA, kB), 1u);
  const ProcessTotals totals = s.ReadProcessTotals(kP, 0);
  EXPECT_EQ(totals.completed, 1u);
  EXPECT_EQ(totals.cost, 2.5);
  EXPECT_EQ(totals.cost_count, 0u);
  EXPECT_EQ(s.ReadStageTotals(kP, kA, 0).backlog, 0);
  EXPECT_TRUE(Near(s.ReadCycleTimes(kP, kA, k1m, T(30)).Quantile(0.5), 30, 0.01));
  EXPECT_TRUE(Near(s.ReadLeadTimes(kP, k1m, T(30)).Quantile(0.5), 3, 0.01));
  // The 1h window reads the 60 s history level, restored too.
  EXPECT_EQ(s.ReadStageWindow(kP, kB, 0, k1h, T(30)).entered, 1u);
  // It goes on in the new format: a cost now counts.
  (*restored)->Cost(kP, 0, T(4), 1.0);
  EXPECT_EQ(s.ReadProcessWindow(kP, 0, k1m, T(30)).cost_count, 1u);
  absl::StatusOr<std::unique_ptr<AggregateShard>> again =
      AggregateShard::Restore(config, s.Serialize());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->ReadProcessWindow(kP, 0, k1m, T(30)).cost_count, 1u);
  EXPECT_EQ((*again)->ReadProcessTotals(kP, 0).cost_count, 1u);
}

TEST(AggregateShardTest, RestoreIntoChangedConfigKeepsWhatMatches) {
  AggregateShard shard(TestConfig());
  Exit(shard, kA, 0, 0, true, 100, true);
  Exit(shard, kC, 0, 1, false, 200, false);
  shard.Transition(kP, kA, kC, T(1));
  shard.CaseStarted(kQ, 0, T(0));

  // p now has stages c, a (b gone); q is gone; windows 1m and 1h as before.
  model::Config changed = TestConfig();
  changed.processes[0].stages = {{"c", absl::Hours(2), {}}, {"a", absl::Minutes(10), {}}};
  changed.processes.pop_back();
  absl::StatusOr<std::unique_ptr<AggregateShard>> restored =
      AggregateShard::Restore(changed, shard.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  const AggregateShard& r = **restored;
  EXPECT_EQ(r.process_count(), 1);
  EXPECT_EQ(r.ReadStageTotals(0, 1, 0).exited_advanced, 1u);  // a is index 1 now
  EXPECT_EQ(r.ReadStageTotals(0, 0, 0).exited_fallout, 1u);   // c is index 0
  EXPECT_EQ(r.ReadTransitions(0, 1, 0), 1u);                  // a -> c
  EXPECT_EQ(r.ReadStageWindow(0, 1, 0, k1m, T(1)).advanced, 1u);
  EXPECT_EQ(r.ReadCycleTimes(0, 0, k1m, T(1)).count(), 1u);
  EXPECT_TRUE(Near(r.ReadCycleTimes(0, 0, k1h, T(1)).Quantile(0.5), 200, 0.01));
}

// A reused slot holds nothing of its older bucket in any series, also in
// the stage series the new bucket's facts do not write (a lazier zeroing of
// a slot's stage buckets must keep this; RESULTS §32), in reads, in the
// state and in its restore; and a stage's first fact in the reused slot
// counts from zero.
TEST(AggregateShardTest, StageBucketsNotWrittenInAReusedSlotReadZero) {
  AggregateShard shard(TestConfig());
  // T0: a start, an entry of a, an exit of b (and its entry of c), a breach of c.
  CaseStep first = WithEntry(Step(0), kA, false);
  first.started = true;
  shard.CaseStepped(first);
  shard.CaseStepped(WithEntry(WithExit(Step(0), kB, true, 10, true), kC, true));
  shard.SlaBreached(kP, kC, 4, T(0));
  // T0 + 61 reuses T0's 1 s slot: one exit of b only.
  shard.CaseStepped(WithExit(Step(61), kB, false, 10, false));

  auto check = [](const AggregateShard& s, const std::string& what) {
    SCOPED_TRACE(what);
    // 1m window at T0 + 61: buckets T0 + 1 .. T0 + 61, so the exit at 61 only.
    const SeriesWindow w = s.ReadSeriesWindow(kP, 4, s.Resolve(k1m, T(61)));
    EXPECT_EQ(w.stages[kA], StageWindowCounts{});
    EXPECT_EQ(w.stages[kB], (StageWindowCounts{.fallout = 1}));
    EXPECT_EQ(w.stages[kC], StageWindowCounts{});
    EXPECT_EQ(w.process.started, 0u);
    EXPECT_EQ(w.process.stage_entries, 0u);
    EXPECT_EQ(s.ReadStageWindow(kP, kA, 4, k1m, T(61)), StageWindowCounts{});
    EXPECT_EQ(s.ReadStageWindow(kP, kC, 4, k1m, T(61)), StageWindowCounts{});
    EXPECT_EQ(s.ReadProcessWindow(kP, 4, k1m, T(61)).stage_entries, 0u);
    // The history level (60 s buckets T0/60 and T0/60 + 1) keeps all of them.
    const SeriesWindow h = s.ReadSeriesWindow(kP, 4, s.Resolve(k1h, T(61)));
    EXPECT_EQ(h.stages[kA], (StageWindowCounts{.entered = 1}));
    EXPECT_EQ(h.stages[kB], (StageWindowCounts{.advanced = 1, .fallout = 1, .sla_met = 1}));
    EXPECT_EQ(h.stages[kC], (StageWindowCounts{.entered = 1, .rework = 1, .sla_breaches = 1}));
    EXPECT_EQ(h.process.started, 1u);
    EXPECT_EQ(h.process.stage_entries, 2u);
  };
  check(shard, "written");
  const std::string state = shard.Serialize();
  absl::StatusOr<std::unique_ptr<AggregateShard>> restored =
      AggregateShard::Restore(TestConfig(), state);
  ASSERT_TRUE(restored.ok()) << restored.status();
  check(**restored, "restored");
  EXPECT_EQ((*restored)->Serialize(), state);

  // The first entry of a and breach of c at T0 + 61 zero their buckets of
  // T0 first: 1 each, not T0's count plus one.
  shard.CaseStepped(WithEntry(Step(61), kA, true));
  shard.SlaBreached(kP, kC, 4, T(61));
  const SeriesWindow w = shard.ReadSeriesWindow(kP, 4, shard.Resolve(k1m, T(61)));
  EXPECT_EQ(w.stages[kA], (StageWindowCounts{.entered = 1, .rework = 1}));
  EXPECT_EQ(w.stages[kB], (StageWindowCounts{.fallout = 1}));
  EXPECT_EQ(w.stages[kC], (StageWindowCounts{.sla_breaches = 1}));
  EXPECT_EQ(w.process.stage_entries, 1u);
}

// As above with 34 stages (past a 32-bit mask of stages), stages on either
// side of 32.
TEST(AggregateShardTest, ReusedSlotsOfManyStagesReadZero) {
  model::Config config = TestConfig();
  config.processes[0].stages.clear();
  for (int i = 0; i < 34; ++i) {
    config.processes[0].stages.push_back({absl::StrCat("s", i), absl::Hours(1), {}});
  }
  AggregateShard shard(config);
  shard.StageEntered(kP, 33, 0, T(0), false);
  shard.StageEntered(kP, 31, 0, T(0), false);
  shard.StageEntered(kP, 0, 0, T(0), false);
  shard.StageEntered(kP, 1, 0, T(61), false);  // T0's 1 s slot again
  SeriesWindow w = shard.ReadSeriesWindow(kP, 0, shard.Resolve(k1m, T(61)));
  for (int stage : {0, 31, 33}) EXPECT_EQ(w.stages[static_cast<size_t>(stage)].entered, 0u);
  EXPECT_EQ(w.stages[1].entered, 1u);
  EXPECT_EQ(w.process.stage_entries, 1u);
  shard.StageEntered(kP, 33, 0, T(61), false);
  shard.StageEntered(kP, 31, 0, T(61), false);
  w = shard.ReadSeriesWindow(kP, 0, shard.Resolve(k1m, T(61)));
  EXPECT_EQ(w.stages[33].entered, 1u);
  EXPECT_EQ(w.stages[31].entered, 1u);
  EXPECT_EQ(w.process.stage_entries, 3u);
  EXPECT_EQ(shard.ReadSeriesWindow(kP, 0, shard.Resolve(k1h, T(61))).process.stage_entries, 6u);
}

// The span of one bucket of a level.
WindowSpan OneBucket(int level, int64_t bucket) {
  WindowSpan span;
  span.level = level;
  span.first = bucket;
  span.last = bucket;
  return span;
}

// The head moves level by level: one bucket, a few (stepped), many
// (divided), and across the coarser levels' boundaries, alone or with them.
// Each fact must land in its own bucket at every level: read back one bucket
// at a time.
TEST(AggregateShardTest, HeadJumpsLandOnTheirBuckets) {
  // Levels: 1 s x 61, 5 s x 61, and history 60 s x 121.
  model::Config config = TestConfig();
  config.windows = {absl::Minutes(1), absl::Minutes(5), absl::Hours(1)};
  AggregateShard shard(config);
  const auto& levels = shard.layout().levels();
  ASSERT_EQ(levels.size(), 3u);
  ASSERT_EQ(levels[0].width, 1);
  ASSERT_EQ(levels[1].width, 5);
  ASSERT_EQ(levels[2].width, 60);
  // Offsets from T0 (T0 is divisible by 60): +1, +3 and +4 (stepped), +4
  // again, +58 (divided at 1 s; +3 at 5 s: stepped; same minute), +60 (every
  // level one on), +61, +64 (5 s boundary crossed by a 3-bucket jump at 1 s),
  // +65, +300 (every level several on), +302, +3000.
  const std::vector<int64_t> times = {0, 1, 3, 4, 4, 58, 60, 61, 64, 65, 300, 302, 3000};
  for (int64_t t : times) shard.StageEntered(kP, kA, 0, T(t), false);
  // The bucket of a level holding (kT0 + t) / width: how many facts fell in it.
  auto in_bucket = [&](int level, int64_t t) {
    const int64_t width = levels[static_cast<size_t>(level)].width;
    const int64_t bucket = (kT0 + t) / width;
    const WindowSpan span = OneBucket(level, bucket);
    return shard.ReadStageWindow(kP, kA, 0, span).entered;
  };
  // Only the buckets the head (T0 + 3000) still keeps: 1 s from +2940, 5 s
  // from +2700, 60 s all.
  EXPECT_EQ(in_bucket(0, 3000), 1u);
  EXPECT_EQ(in_bucket(0, 2999), 0u);
  EXPECT_EQ(in_bucket(1, 3000), 1u);
  EXPECT_EQ(in_bucket(1, 2995), 0u);
  EXPECT_EQ(in_bucket(2, 0), 6u);    // 0, 1, 3, 4, 4, 58
  EXPECT_EQ(in_bucket(2, 60), 4u);   // 60, 61, 64, 65
  EXPECT_EQ(in_bucket(2, 300), 2u);  // 300, 302
  EXPECT_EQ(in_bucket(2, 3000), 1u);
  EXPECT_EQ(in_bucket(2, 120), 0u);

  // The same facts read at each step, with the head where it was then.
  AggregateShard step_shard(config);
  for (size_t i = 0; i < times.size(); ++i) {
    const int64_t t = times[i];
    step_shard.StageEntered(kP, kA, 0, T(t), false);
    SCOPED_TRACE(absl::StrCat("after the fact at +", t));
    uint64_t same_second = 0, same_five = 0, same_minute = 0;
    for (size_t j = 0; j <= i; ++j) {
      same_second += times[j] == t;
      same_five += times[j] / 5 == t / 5;
      same_minute += times[j] / 60 == t / 60;
    }
    for (int level = 0; level < 3; ++level) {
      const int64_t width = levels[static_cast<size_t>(level)].width;
      const int64_t bucket = (kT0 + t) / width;
      const WindowSpan span = OneBucket(level, bucket);
      EXPECT_EQ(step_shard.ReadStageWindow(kP, kA, 0, span).entered, level == 0   ? same_second
                                                                     : level == 1 ? same_five
                                                                                  : same_minute)
          << "level " << level;
    }
    // And a fact one bucket behind the head at every level still lands
    // (the levels' slots agree with their buckets): a start, counted apart.
    step_shard.CaseStarted(kP, 1, T(t - 1));
  }
  // Every start at t - 1 is in its minute's history bucket.
  EXPECT_EQ(step_shard.ReadProcessWindow(kP, 1, OneBucket(2, (kT0 - 1) / 60)).started,
            1u);  // -1
  EXPECT_EQ(step_shard.ReadProcessWindow(kP, 1, OneBucket(2, kMinute)).started,
            6u);  // 0, 2, 3, 3, 57, 59
  EXPECT_EQ(step_shard.ReadProcessWindow(kP, 1, OneBucket(1, (kT0 + 2995) / 5)).started,
            1u);  // 2999
}

}  // namespace
}  // namespace kpid::aggregate
