// Two writer threads, each the single writer of its own shard, while two
// reader threads merge and read both continuously. Meant to run under
// ThreadSanitizer (KPID_SANITIZE=thread) as well as plainly: TSan checks the
// memory orders; the assertions check that no read ever returns more than
// will finally be there, a broken invariant, or garbage.
#include <atomic>
#include <thread>
#include <vector>

#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/aggregate/series_read_cache.h"
#include "daemon/aggregate/test_config.h"
#include "gtest/gtest.h"

namespace kpid::aggregate {
namespace {

using cases::ExitOutcome;

constexpr int64_t kT0 = 1'008'000'000;
constexpr int kP = 0, kA = 0;
constexpr int k1m = 0, k1h = 1;
// Per writer: one iteration every 100 ms of event time, 2000 s in all (so
// everything stays in the 1h window while the 1 s level rotates ~33 times).
constexpr int kIterations = 20000;
constexpr int kWriters = 2;
constexpr int kDims = 8;

absl::Time At(int i) { return absl::FromUnixSeconds(kT0) + absl::Milliseconds(100) * i; }

model::Config TestConfig() { return TwoStageTestConfig({absl::Minutes(1), absl::Hours(1)}); }

// The first shard's writer reports one fact per call; the second the same
// facts as the tracker does, in CaseSteps (a start with its entry, an exit
// with its completion).
void Write(AggregateShard* s, bool as_steps) {
  for (int i = 0; i < kIterations; ++i) {
    const DimsId dims = static_cast<DimsId>(i % kDims);
    const ExitOutcome outcome = i % 3 == 0 ? ExitOutcome::kFallout : ExitOutcome::kAdvanced;
    if (as_steps) {
      s->CaseStepped({.process = kP,
                      .dims = dims,
                      .at = At(i),
                      .started = true,
                      .entry_stage = kA,
                      .rework = i % 5 == 0});
      s->CaseStepped(
          {.process = kP,
           .dims = dims,
           .at = At(i),
           .exit_stage = kA,
           .outcome = outcome,
           .sla_met = i % 2 == 0,
           .cycle_time = absl::Seconds(1 + i % 1000),
           .close = i % 4 == 0 ? cases::CaseStep::Close::kCompleted : cases::CaseStep::Close::kNone,
           .amount = 10,
           .lead_time = absl::Seconds(100)});
    } else {
      s->CaseStarted(kP, dims, At(i));
      s->StageEntered(kP, kA, dims, At(i), i % 5 == 0);
      s->StageExited(kP, kA, dims, At(i), outcome, absl::Seconds(1 + i % 1000), i % 2 == 0);
      if (i % 4 == 0) s->CaseCompleted(kP, dims, At(i), 10, absl::Seconds(100));
    }
    if (i % 10 == 0) s->Cost(kP, dims, At(i), 1.5);
  }
}

// Final numbers, by hand. Per writer: i % 3 == 0 for 6667 of 0..19999 (0,
// 3, ..., 19998), so 13333 advanced; i % 5 == 0: 4000 rework; i % 2 == 0:
// 10000 within SLA; i % 4 == 0: 5000 completed.
constexpr uint64_t kEntered = uint64_t{kWriters} * kIterations;
constexpr uint64_t kAdvanced = uint64_t{kWriters} * 13333;
constexpr uint64_t kFallout = uint64_t{kWriters} * 6667;
constexpr uint64_t kRework = uint64_t{kWriters} * 4000;
constexpr uint64_t kSlaMet = uint64_t{kWriters} * 10000;
constexpr uint64_t kCompleted = uint64_t{kWriters} * 5000;
// i % 10 == 0: 2000 costs of 1.5.
constexpr uint64_t kCosts = uint64_t{kWriters} * 2000;
// Accepted events: every entry, completion and cost (no fallout or feedback).
constexpr uint64_t kEvents = kEntered + kCompleted + kCosts;
// The 1m window at T0 + 2000 s: buckets T0 + 1940 .. T0 + 2000, i.e.
// iterations 19400..19999: 600 per writer.
constexpr uint64_t kLastMinute = uint64_t{kWriters} * 600;
// Any 61 one-second buckets hold at most 610 iterations per writer.
constexpr uint64_t kMaxPerMinute = uint64_t{kWriters} * 610;

TEST(AggregateShardStressTest, ConcurrentWritersAndReaders) {
  const model::Config config = TestConfig();
  AggregateShard shards[kWriters] = {AggregateShard(config), AggregateShard(config)};
  const absl::Time end = absl::FromUnixSeconds(kT0 + 2000);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> reads_while_writing{0};

  auto read = [&] {
    MergedReader reader({&shards[0], &shards[1]});
    uint64_t last_entered_1h = 0, last_exited_total = 0;
    // At least a few reads after the writers are done, too.
    for (int after = 0; after < 3; after += done.load(std::memory_order_acquire) ? 1 : 0) {
      bool ok = true;
      const SeriesWindow h = reader.ReadAllDimsWindow(kP, reader.Resolve(k1h, end));
      const StageWindowCounts& a = h.stages[kA];
      ok &= a.entered <= kEntered && a.exited() <= kEntered && a.advanced <= kAdvanced &&
            a.fallout <= kFallout && a.rework <= kRework && a.sla_met <= kSlaMet;
      ok &= a.sla_met <= a.exited() && a.rework <= a.entered;
      ok &= h.process.started <= kEntered && h.process.completed <= kCompleted;
      ok &= h.process.revenue >= 0 && h.process.revenue <= 10.0 * kCompleted;
      // cost_count is stored after cost: the cost read covers every one counted.
      ok &= h.process.cost_count <= kCosts && h.process.cost >= 1.5 * h.process.cost_count;
      ok &= h.process.events() <= kEvents;
      // Nothing leaves the 1h window during the run: it only grows.
      ok &= a.entered >= last_entered_1h;
      last_entered_1h = a.entered;

      // The 1m window as it slides with the writers' head: rotating buckets.
      // One span for both reads: resolved again later, the head could have
      // moved on by more than a minute and the span fall back to history.
      const absl::optional<int64_t> latest = reader.latest();
      const absl::Time now = latest ? absl::FromUnixSeconds(*latest) : end;
      const WindowSpan span = reader.Resolve(k1m, now);
      // Each writer writes 10 iterations per second of event time.
      const uint64_t max_in_span =
          kWriters * 10 * static_cast<uint64_t>(absl::ToInt64Seconds(span.to - span.from));
      // (At level 0 a head that moved meanwhile may clip the oldest buckets.)
      ok &= span.level == 0 ? max_in_span <= kMaxPerMinute : span.level == 1;
      const SeriesWindow m = reader.ReadAllDimsWindow(kP, span);
      const StageWindowCounts& ma = m.stages[kA];
      ok &= ma.entered <= max_in_span && ma.exited() <= max_in_span;
      ok &= ma.sla_met <= ma.exited() && ma.rework <= ma.entered;
      const Distribution d = reader.ReadCycleTimes(kP, kA, span);
      ok &= d.count() <= max_in_span;
      const Distribution dh = reader.ReadCycleTimes(kP, kA, reader.Resolve(k1h, end));
      ok &= dh.count() <= kEntered;

      const SeriesTotals t = reader.ReadAllDimsTotals(kP);
      const uint64_t exited = t.stages[kA].exited_advanced + t.stages[kA].exited_fallout;
      ok &= t.stages[kA].entered <= kEntered && exited <= kEntered &&
            t.stages[kA].cycle_time.count() <= kEntered && t.process.completed <= kCompleted;
      ok &= exited >= last_exited_total;  // counters never go back
      last_exited_total = exited;
      ok &= reader.ListSeries(kP).size() <= kWriters * kDims;
      if (!ok) failures.fetch_add(1, std::memory_order_relaxed);
      reads.fetch_add(1, std::memory_order_relaxed);
      if (!done.load(std::memory_order_relaxed)) {
        reads_while_writing.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };

  std::vector<std::thread> threads;
  threads.emplace_back(read);
  threads.emplace_back(read);
  // The writers start once both readers are reading, so the two overlap.
  auto write = [&](AggregateShard* shard) {
    while (reads.load(std::memory_order_relaxed) < 2) std::this_thread::yield();
    Write(shard, /*as_steps=*/shard == &shards[1]);
  };
  std::thread w0(write, &shards[0]);
  std::thread w1(write, &shards[1]);
  w0.join();
  w1.join();
  done.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(reads.load(), 6u);
  EXPECT_GE(reads_while_writing.load(), 2u);

  MergedReader reader({&shards[0], &shards[1]});
  const SeriesTotals t = reader.ReadAllDimsTotals(kP);
  EXPECT_EQ(t.stages[kA].entered, kEntered);
  EXPECT_EQ(t.stages[kA].exited_advanced, kAdvanced);
  EXPECT_EQ(t.stages[kA].exited_fallout, kFallout);
  EXPECT_EQ(t.stages[kA].rework, kRework);
  EXPECT_EQ(t.stages[kA].sla_met, kSlaMet);
  EXPECT_EQ(t.stages[kA].sla_missed, kEntered - kSlaMet);
  EXPECT_EQ(t.stages[kA].cycle_time.count(), kEntered);
  EXPECT_EQ(t.process.started, kEntered);
  EXPECT_EQ(t.process.completed, kCompleted);

  const SeriesWindow h = reader.ReadAllDimsWindow(kP, reader.Resolve(k1h, end));
  EXPECT_EQ(h.stages[kA].entered, kEntered);
  EXPECT_EQ(h.stages[kA].advanced, kAdvanced);
  EXPECT_EQ(h.stages[kA].fallout, kFallout);
  EXPECT_EQ(h.stages[kA].rework, kRework);
  EXPECT_EQ(h.stages[kA].sla_met, kSlaMet);
  EXPECT_EQ(h.process.completed, kCompleted);
  EXPECT_EQ(h.process.cost_count, kCosts);
  EXPECT_EQ(h.process.events(), kEvents);
  EXPECT_EQ(reader.ReadCycleTimes(kP, kA, reader.Resolve(k1h, end)).count(), kEntered);

  const SeriesWindow m = reader.ReadAllDimsWindow(kP, reader.Resolve(k1m, end));
  EXPECT_EQ(m.stages[kA].entered, kLastMinute);
  EXPECT_EQ(reader.ReadCycleTimes(kP, kA, reader.Resolve(k1m, end)).count(), kLastMinute);
  EXPECT_EQ(reader.ListSeries(kP).size(), size_t{kWriters * kDims});
}

// One pass as a scrape makes it: every (shard, dims) through the cache, the
// 1h window ending at `end` and the 1m window at `now`, summed over all dims.
struct CachedPass {
  SeriesWindow hour;
  SeriesWindow minute;
  SeriesTotals totals;
};

CachedPass ReadThrough(SeriesReadCache& cache, AggregateShard (&shards)[kWriters],
                       const std::vector<WindowSpan>& spans) {
  cache.Begin(/*generation=*/1, spans);
  std::vector<SeriesWindow> windows(2);
  CachedPass pass;
  pass.totals.stages.resize(2);
  pass.hour.stages.resize(2);
  pass.minute.stages.resize(2);
  for (int s = 0; s < kWriters; ++s) {
    cache.LoadVersions(s, shards[s], kP);
    for (DimsId dims = 0; dims < kDims; ++dims) {
      for (SeriesWindow& w : windows) w = SeriesWindow{{}, std::vector<StageWindowCounts>(2)};
      cache.AddSeries(s, shards[s], kP, dims, absl::MakeSpan(windows), &pass.totals);
      pass.hour.Merge(windows[0]);
      pass.minute.Merge(windows[1]);
    }
  }
  return pass;
}

// The same writers while a reader scrapes through a SeriesReadCache, which
// keeps reads from one pass to the next: no pass may see a torn or
// impossible value, and once the writers are done a pass through the same
// cache must see every fact (no read kept from before a fact it missed).
TEST(AggregateShardStressTest, CachedReadsWhileWriting) {
  const model::Config config = TestConfig();
  AggregateShard shards[kWriters] = {AggregateShard(config), AggregateShard(config)};
  const absl::Time end = absl::FromUnixSeconds(kT0 + 2000);
  SeriesReadCache cache;
  std::atomic<bool> writing{true};
  std::atomic<uint64_t> passes{0};
  int failures = 0;
  unsigned failed_checks = 0;  // bit i: check(i, ...) failed at least once
  uint64_t hits_while_writing = 0;

  std::thread scraper([&] {
    uint64_t last_entered_1h = 0, last_exited_total = 0;
    MergedReader reader({&shards[0], &shards[1]});
    while (writing.load(std::memory_order_acquire)) {
      // The 1m window follows the writers' head, as in the test above.
      const absl::optional<int64_t> latest = reader.latest();
      const absl::Time now = latest ? absl::FromUnixSeconds(*latest) : end;
      const WindowSpan minute = reader.Resolve(k1m, now);
      const CachedPass pass = ReadThrough(cache, shards, {reader.Resolve(k1h, end), minute});
      const StageWindowCounts& a = pass.hour.stages[kA];
      unsigned failed = 0;
      auto check = [&failed](int bit, bool ok) { failed |= ok ? 0u : 1u << bit; };
      check(0, a.entered <= kEntered && a.advanced <= kAdvanced && a.fallout <= kFallout &&
                   a.rework <= kRework && a.sla_met <= kSlaMet);
      check(1, a.sla_met <= a.exited() && a.rework <= a.entered);
      check(2, a.entered >= last_entered_1h);  // nothing leaves the 1h window
      check(3, pass.hour.process.cost >= 1.5 * pass.hour.process.cost_count);
      const StageWindowCounts& m = pass.minute.stages[kA];
      const uint64_t max_in_span =
          kWriters * 10 * static_cast<uint64_t>(absl::ToInt64Seconds(minute.to - minute.from));
      check(4, minute.level == 0 ? max_in_span <= kMaxPerMinute : minute.level == 1);
      check(5, m.entered <= max_in_span);
      check(6, m.sla_met <= m.exited() && m.rework <= m.entered);
      const uint64_t exited =
          pass.totals.stages[kA].exited_advanced + pass.totals.stages[kA].exited_fallout;
      check(7, pass.totals.stages[kA].entered <= kEntered);
      check(8, exited >= last_exited_total);  // counters never go back
      last_entered_1h = a.entered;
      last_exited_total = exited;
      if (failed != 0) ++failures;
      failed_checks |= failed;
      hits_while_writing += cache.hits();
      passes.fetch_add(1, std::memory_order_relaxed);
    }
  });
  auto write = [&](AggregateShard* shard) {
    while (passes.load(std::memory_order_relaxed) < 1) std::this_thread::yield();
    Write(shard, /*as_steps=*/shard == &shards[1]);
  };
  std::thread w0(write, &shards[0]);
  std::thread w1(write, &shards[1]);
  w0.join();
  w1.join();
  writing.store(false, std::memory_order_release);
  scraper.join();

  EXPECT_EQ(failures, 0) << "failed checks (bits): " << failed_checks;
  EXPECT_GE(passes.load(), 2u);
  // Reads are kept between passes (series the writers did not reach since).
  EXPECT_GT(hits_while_writing, 0u);

  MergedReader reader({&shards[0], &shards[1]});
  const std::vector<WindowSpan> spans = {reader.Resolve(k1h, end), reader.Resolve(k1m, end)};
  const CachedPass final_pass = ReadThrough(cache, shards, spans);
  EXPECT_EQ(final_pass.hour.stages[kA].entered, kEntered);
  EXPECT_EQ(final_pass.hour.stages[kA].advanced, kAdvanced);
  EXPECT_EQ(final_pass.hour.stages[kA].fallout, kFallout);
  EXPECT_EQ(final_pass.hour.stages[kA].rework, kRework);
  EXPECT_EQ(final_pass.hour.stages[kA].sla_met, kSlaMet);
  EXPECT_EQ(final_pass.hour.process.completed, kCompleted);
  EXPECT_EQ(final_pass.hour.process.cost_count, kCosts);
  EXPECT_EQ(final_pass.minute.stages[kA].entered, kLastMinute);
  EXPECT_EQ(final_pass.totals.stages[kA].entered, kEntered);
  EXPECT_EQ(final_pass.totals.stages[kA].exited_advanced, kAdvanced);
  EXPECT_EQ(final_pass.totals.process.completed, kCompleted);
  // And exactly what reading everything afresh gives.
  SeriesReadCache fresh(/*keep_reads=*/false);
  const CachedPass uncached = ReadThrough(fresh, shards, spans);
  EXPECT_EQ(final_pass.hour, uncached.hour);
  EXPECT_EQ(final_pass.minute, uncached.minute);
  EXPECT_EQ(final_pass.totals, uncached.totals);
}

}  // namespace
}  // namespace kpid::aggregate
