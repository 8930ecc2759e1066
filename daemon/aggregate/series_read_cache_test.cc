#include "daemon/aggregate/series_read_cache.h"

#include <vector>

#include "daemon/aggregate/merged_reader.h"
#include "daemon/aggregate/test_config.h"
#include "gtest/gtest.h"

namespace kpid::aggregate {
namespace {

using cases::ExitOutcome;

constexpr int64_t kT0 = 1'008'000'000;  // a multiple of 60: buckets start here
absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }
constexpr int kP = 0, kA = 0, kB = 1;
constexpr int k1m = 0, k1h = 1;

model::Config TestConfig() { return TwoStageTestConfig({absl::Minutes(1), absl::Hours(1)}); }

// One pass over (shard 0: dims 0 and 1; shard 1: dims 0) as a scrape reads
// them: both windows, then the totals.
struct Pass {
  std::vector<SeriesWindow> windows;
  SeriesTotals totals;
};

class SeriesReadCacheTest : public ::testing::Test {
 protected:
  SeriesReadCacheTest() : a_(TestConfig()), b_(TestConfig()), reader_({&a_, &b_}) {
    a_.StageEntered(kP, kA, 0, T(0), false);
    a_.StageExited(kP, kA, 0, T(1), ExitOutcome::kAdvanced, absl::Seconds(100), true);
    a_.CaseCompleted(kP, 0, T(2), 250.5, absl::Hours(1));
    a_.StageEntered(kP, kB, 1, T(2), false);
    b_.StageEntered(kP, kA, 0, T(2), false);
    b_.StageExited(kP, kA, 0, T(3), ExitOutcome::kFallout, absl::Seconds(900), false);
    b_.CaseCompleted(kP, 0, T(3), 100.25, absl::Hours(2));
    b_.BacklogChanged(kP, kB, 0, +3, +1);
  }

  Pass Read(SeriesReadCache& cache, int64_t now_s, uint64_t generation = 7) {
    const std::vector<WindowSpan> spans = {reader_.Resolve(k1m, T(now_s)),
                                           reader_.Resolve(k1h, T(now_s))};
    cache.Begin(generation, spans);
    for (int shard = 0; shard < 2; ++shard) cache.LoadVersions(shard, *reader_.shards()[shard], kP);
    Pass pass;
    pass.windows.resize(spans.size());
    for (SeriesWindow& w : pass.windows) w.stages.resize(2);
    pass.totals.stages.resize(2);
    cache.AddSeries(0, a_, kP, 0, absl::MakeSpan(pass.windows), &pass.totals);
    cache.AddSeries(1, b_, kP, 0, absl::MakeSpan(pass.windows), &pass.totals);
    return pass;
  }

  AggregateShard a_;
  AggregateShard b_;
  MergedReader reader_;
};

TEST_F(SeriesReadCacheTest, SumsTheShardsAsMergedReader) {
  SeriesReadCache cache;
  const Pass pass = Read(cache, 3);
  // dims 0: stage a entered twice (a at 0, b at 2), exited twice: one advanced
  // (100 s, within SLA), one fallout (900 s > 10m SLA); completed twice,
  // revenue 250.5 + 100.25 = 350.75 (exact in binary).
  const SeriesWindow& w = pass.windows[k1m];
  EXPECT_EQ(w.stages[kA].entered, 2u);
  EXPECT_EQ(w.stages[kA].advanced, 1u);
  EXPECT_EQ(w.stages[kA].fallout, 1u);
  EXPECT_EQ(w.stages[kA].sla_met, 1u);
  EXPECT_EQ(w.process.completed, 2u);
  EXPECT_EQ(w.process.revenue, 350.75);
  EXPECT_EQ(pass.totals.stages[kB].backlog, 3);
  EXPECT_EQ(pass.totals.stages[kB].backlog_over_sla, 1);
  EXPECT_EQ(pass.totals.process.completed, 2u);
  // The same as MergedReader's reads of the two refs.
  const std::vector<MergedReader::SeriesRef> refs = {{0, 0}, {1, 0}};
  EXPECT_EQ(w, reader_.ReadSeriesWindow(kP, refs, reader_.Resolve(k1m, T(3))));
  EXPECT_EQ(pass.windows[k1h], reader_.ReadSeriesWindow(kP, refs, reader_.Resolve(k1h, T(3))));
  EXPECT_EQ(pass.totals, reader_.ReadSeriesTotals(kP, refs));
  // 2 shards x (2 windows + totals), all read.
  EXPECT_EQ(cache.misses(), 6u);
  EXPECT_EQ(cache.hits(), 0u);
}

TEST_F(SeriesReadCacheTest, ReusesOnlyWhatDidNotChange) {
  SeriesReadCache cache;
  const Pass first = Read(cache, 3);
  const Pass again = Read(cache, 3);
  EXPECT_EQ(cache.misses(), 0u);
  EXPECT_EQ(cache.hits(), 6u);
  EXPECT_EQ(again.windows, first.windows);
  EXPECT_EQ(again.totals, first.totals);

  // A fact on shard 1's series: its 2 windows and totals are read again,
  // shard 0's are not.
  b_.StageEntered(kP, kA, 0, T(3), true);
  Pass after = Read(cache, 3);
  EXPECT_EQ(cache.misses(), 3u);
  EXPECT_EQ(cache.hits(), 3u);
  EXPECT_EQ(after.windows[k1m].stages[kA].entered, 3u);  // 2 + the new entry
  EXPECT_EQ(after.windows[k1m].stages[kA].rework, 1u);
  EXPECT_EQ(after.totals.stages[kA].entered, 3u);

  // A change to the totals alone (backlog) counts as a change too.
  a_.BacklogChanged(kP, kA, 0, +1, 0);
  after = Read(cache, 3);
  EXPECT_EQ(cache.misses(), 3u);
  EXPECT_EQ(after.totals.stages[kA].backlog, 1);

  // A fact on another series of shard 0 (dims 1) changes nothing read here.
  a_.StageEntered(kP, kB, 1, T(3), false);
  Read(cache, 3);
  EXPECT_EQ(cache.misses(), 0u);
}

TEST_F(SeriesReadCacheTest, AWindowThatMovesOnIsReadAgain) {
  SeriesReadCache cache;
  Read(cache, 3);
  // 30 s later the 1m window (buckets of 1 s) has moved on; the 1h window
  // (buckets of 60 s) has not: T(33) is in the same 60 s bucket as T(3).
  const Pass later = Read(cache, 33);
  EXPECT_EQ(cache.misses(), 2u);  // the 1m window of both shards
  EXPECT_EQ(cache.hits(), 4u);
  // The 1m window ending at T(33) covers buckets (33 - 60 .. 33]: the facts
  // at 0..3 s are all still in it.
  EXPECT_EQ(later.windows[k1m].stages[kA].entered, 2u);
  const Pass much_later = Read(cache, 90);
  // Buckets (30 .. 90]: nothing left in the 1m window; the 1h window keeps all.
  EXPECT_EQ(much_later.windows[k1m].stages[kA].entered, 0u);
  EXPECT_EQ(much_later.windows[k1h].stages[kA].entered, 2u);
}

TEST_F(SeriesReadCacheTest, ANewGenerationStartsOver) {
  SeriesReadCache cache;
  Read(cache, 3, /*generation=*/7);
  Read(cache, 3, /*generation=*/8);
  EXPECT_EQ(cache.misses(), 6u);
  EXPECT_EQ(cache.hits(), 0u);
}

TEST_F(SeriesReadCacheTest, WithoutKeepingReadsEverythingWithTheSameResult) {
  SeriesReadCache kept;
  SeriesReadCache not_kept(/*keep_reads=*/false);
  Read(kept, 3);
  const Pass cached = Read(kept, 3);
  ASSERT_EQ(kept.hits(), 6u);
  const Pass fresh = Read(not_kept, 3);
  EXPECT_EQ(not_kept.misses(), 6u);
  EXPECT_EQ(cached.windows, fresh.windows);
  EXPECT_EQ(cached.totals, fresh.totals);
}

TEST_F(SeriesReadCacheTest, ASeriesWithoutRecordReadsZeroUntilItHasOne) {
  SeriesReadCache cache;
  const std::vector<WindowSpan> spans = {reader_.Resolve(k1m, T(3))};
  std::vector<SeriesWindow> windows(1);
  windows[0].stages.resize(2);
  SeriesTotals totals;
  cache.Begin(1, spans);
  cache.AddSeries(1, b_, kP, 5, absl::MakeSpan(windows), &totals);
  EXPECT_EQ(windows[0].stages[kA].entered, 0u);
  b_.StageEntered(kP, kA, 5, T(3), false);
  cache.Begin(1, spans);
  cache.AddSeries(1, b_, kP, 5, absl::MakeSpan(windows), &totals);
  EXPECT_EQ(windows[0].stages[kA].entered, 1u);
  EXPECT_EQ(totals.stages[kA].entered, 1u);
}

TEST_F(SeriesReadCacheTest, UnchangedOnlyWhenEveryReadWouldBeKept) {
  SeriesReadCache cache;
  // Before any read: nothing kept.
  const std::vector<WindowSpan> spans = {reader_.Resolve(k1m, T(3)), reader_.Resolve(k1h, T(3))};
  cache.Begin(7, spans);
  cache.LoadVersions(0, a_, kP);
  EXPECT_FALSE(cache.Unchanged(0, kP, 0, 2));
  Read(cache, 3);
  // The next pass at the same time: (0, dims 0) and (1, dims 0) kept; dims 1
  // of shard 0 was never read, shard 2 does not exist.
  Read(cache, 3);
  EXPECT_TRUE(cache.Unchanged(0, kP, 0, 2));
  EXPECT_TRUE(cache.Unchanged(1, kP, 0, 2));
  EXPECT_FALSE(cache.Unchanged(0, kP, 1, 2));
  EXPECT_FALSE(cache.Unchanged(2, kP, 0, 2));
  // A fact in shard 1's series: its version moves, shard 0's does not.
  b_.CaseStarted(kP, 0, T(3));
  cache.Begin(7, spans);
  for (int shard = 0; shard < 2; ++shard) cache.LoadVersions(shard, *reader_.shards()[shard], kP);
  EXPECT_TRUE(cache.Unchanged(0, kP, 0, 2));
  EXPECT_FALSE(cache.Unchanged(1, kP, 0, 2));
  // Read at 63 s, then a second later the 1m window's span (1 s buckets)
  // moves on: every series is read again for it (the totals and the 1h
  // window alone would be kept).
  Read(cache, 63);
  Read(cache, 63);
  EXPECT_TRUE(cache.Unchanged(0, kP, 0, 2));
  const std::vector<WindowSpan> later = {reader_.Resolve(k1m, T(64)), reader_.Resolve(k1h, T(64))};
  EXPECT_NE(reader_.Resolve(k1m, T(63)).first, later[0].first);
  EXPECT_EQ(reader_.Resolve(k1h, T(63)).first, later[1].first);
  cache.Begin(7, later);
  for (int shard = 0; shard < 2; ++shard) cache.LoadVersions(shard, *reader_.shards()[shard], kP);
  EXPECT_FALSE(cache.Unchanged(0, kP, 0, 2));
  // Without LoadVersions in this pass nothing is known to be unchanged.
  cache.Begin(7, later);
  EXPECT_FALSE(cache.Unchanged(0, kP, 0, 2));
}

}  // namespace
}  // namespace kpid::aggregate
