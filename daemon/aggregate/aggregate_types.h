// What the aggregator's readers get back (see aggregate_shard.h): plain value
// types that add up across shards, with the ratios of DESIGN §3 computed the
// one way the contract says (a zero denominator gives an absent value, never
// 0 or NaN).
//
//   aggregate::StageWindowCounts c = shard.ReadStageWindow(p, s, dims, span);
//   absl::optional<double> conversion = c.conversion();   // advanced / exited
//   absl::optional<double> v = c.Value("sla_attainment"); // by KPI name
//
// Not thread-safe; each read returns its own copy.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"

namespace kpid::aggregate {

// num / den, or absent when den == 0.
inline absl::optional<double> Ratio(double num, double den) {
  if (den == 0) return absl::nullopt;
  return num / den;
}

// Which buckets a window read covers (WindowLayout::Resolve). Pass the same
// span to every shard of a merge so they all read the same buckets.
struct WindowSpan {
  int level = -1;     // index into WindowLayout::levels(); -1: nothing to read
  int64_t first = 0;  // first bucket index (bucket start / bucket width, Unix time)
  int64_t last = -1;  // last bucket index, inclusive
  absl::Time from;    // the time the buckets cover: [from, to)
  absl::Time to;
  bool empty() const { return level < 0 || first > last; }
};

// Window counts of one stage series, or of several added together.
struct StageWindowCounts {
  uint64_t entered = 0;
  uint64_t advanced = 0;      // exits that moved on (incl. CASE_COMPLETED)
  uint64_t fallout = 0;       // exits that fell out
  uint64_t sla_met = 0;       // exits within the stage SLA (either outcome)
  uint64_t rework = 0;        // entries into a stage the case had been in
  uint64_t sla_breaches = 0;  // open cases that passed their deadline

  uint64_t exited() const { return advanced + fallout; }
  absl::optional<double> conversion() const { return Ratio(advanced, exited()); }
  absl::optional<double> fallout_ratio() const { return Ratio(fallout, exited()); }
  absl::optional<double> sla_attainment() const { return Ratio(sla_met, exited()); }
  absl::optional<double> rework_ratio() const { return Ratio(rework, entered); }
  // A stage count or ratio KPI by its model/kpi.h name ("exited",
  // "throughput", "conversion", ...); absent for an unknown name, a zero
  // denominator, and the KPIs not held here (cycle_time_p*, backlog*).
  absl::optional<double> Value(absl::string_view kpi) const;

  void Merge(const StageWindowCounts& o);
  friend bool operator==(const StageWindowCounts&, const StageWindowCounts&) = default;
};

// Window counts of one process series, or of several added together.
struct ProcessWindowCounts {
  uint64_t started = 0;
  uint64_t completed = 0;
  uint64_t fallout = 0;
  double revenue = 0;  // sum of CASE_COMPLETED amounts
  double cost = 0;     // sum of COST amounts
  double score_sum = 0;
  uint64_t score_count = 0;
  uint64_t cost_count = 0;     // COST events
  uint64_t stage_entries = 0;  // STAGE_ENTERED events accepted, all stages

  // Accepted events of the process: each is exactly one stage entry,
  // completion, fallout, cost or feedback ("stale stream" alerts).
  uint64_t events() const { return stage_entries + completed + fallout + cost_count + score_count; }
  absl::optional<double> win_ratio() const {
    return Ratio(completed, static_cast<double>(completed + fallout));
  }
  absl::optional<double> avg_deal() const { return Ratio(revenue, completed); }
  absl::optional<double> cost_to_serve() const { return Ratio(cost, completed); }
  absl::optional<double> feedback_score() const { return Ratio(score_sum, score_count); }
  // A process count or ratio KPI by name; absent as StageWindowCounts::Value.
  absl::optional<double> Value(absl::string_view kpi) const;

  void Merge(const ProcessWindowCounts& o);
  friend bool operator==(const ProcessWindowCounts&, const ProcessWindowCounts&) = default;
};

// A process series and all its stage series for one dims (or summed).
struct SeriesWindow {
  ProcessWindowCounts process;
  std::vector<StageWindowCounts> stages;  // by stage index

  void Merge(const SeriesWindow& o);
  friend bool operator==(const SeriesWindow&, const SeriesWindow&) = default;
};

// Cumulative latency histogram for kpid_stage_cycle_time_seconds and
// kpid_process_lead_time_seconds: fixed `le` bounds for business processes.
struct LatencyHistogram {
  static constexpr std::array<double, 16> kBounds = {
      60,    300,   900,    1800,   3600,   7200,   14400,   28800,
      43200, 86400, 172800, 259200, 432000, 604800, 1209600, 2592000};
  static constexpr int kBuckets = kBounds.size() + 1;  // the last is +Inf

  // Index of the first bucket whose upper bound is >= seconds (le is inclusive).
  static int BucketOf(double seconds);
  // BucketOf(seconds), given bin == Distribution::BinOf(seconds) (the
  // aggregator's write path has it already): a byte of a table instead of
  // four dependent halvings. A bin (ratio 1.02) is narrower than the gap
  // between two bounds (ratio 1.5 or more), so it holds at most one bound:
  // its values are in one bucket, or up to the bound in one and past it in
  // the next.
  static int BucketOfBinned(double seconds, int bin) {
    static const uint8_t* const kBinBuckets = BuildBinBuckets();
    if (seconds != seconds) return kBuckets - 1;  // NaN: BinOf's bin 0, but +Inf here
    const unsigned entry = kBinBuckets[bin];
    const unsigned below = entry & kBucketMask;
    // kBounds[below % 16]: a bin in the +Inf bucket has no bound inside.
    const bool past_bound = seconds > kBounds[below % kBounds.size()];
    return static_cast<int>(below + ((entry >> 7) & static_cast<unsigned>(past_bound)));
  }

  std::array<uint64_t, kBuckets> buckets{};  // per bucket, NOT cumulative
  double sum = 0;                            // seconds

  uint64_t count() const;
  // Observations <= kBounds[i] (i == kBounds.size(): all of them), as
  // Prometheus' cumulative bucket counts.
  uint64_t cumulative(int i) const;

  void Merge(const LatencyHistogram& o);
  friend bool operator==(const LatencyHistogram&, const LatencyHistogram&) = default;

 private:
  // Per Distribution bin: the bucket of its smallest value (bits 0-4), and
  // bit 7 when kBounds[that bucket] is inside the bin, whose values past it
  // are in the next bucket.
  static constexpr unsigned kBucketMask = 0x1f;
  static const uint8_t* BuildBinBuckets();
};

// Monotonic totals of a stage series (the `_total` counters) and its gauges.
struct StageTotals {
  uint64_t entered = 0;
  uint64_t exited_advanced = 0;
  uint64_t exited_fallout = 0;
  uint64_t sla_met = 0;
  uint64_t sla_missed = 0;
  uint64_t rework = 0;
  uint64_t sla_breaches = 0;
  uint64_t expired = 0;          // cases closed as expired while in the stage
  int64_t backlog = 0;           // gauge: open cases in the stage
  int64_t backlog_over_sla = 0;  // gauge: those past their deadline
  LatencyHistogram cycle_time;   // every exit, either outcome

  void Merge(const StageTotals& o);
  friend bool operator==(const StageTotals&, const StageTotals&) = default;
};

// Monotonic totals of a process series.
struct ProcessTotals {
  uint64_t started = 0;
  uint64_t completed = 0;
  uint64_t fallout = 0;
  uint64_t expired = 0;
  double revenue = 0;
  double cost = 0;
  double score_sum = 0;
  uint64_t score_count = 0;
  uint64_t cost_count = 0;     // COST events
  LatencyHistogram lead_time;  // completed cases

  void Merge(const ProcessTotals& o);
  friend bool operator==(const ProcessTotals&, const ProcessTotals&) = default;
};

struct SeriesTotals {
  ProcessTotals process;
  std::vector<StageTotals> stages;  // by stage index

  // Open cases of the process now: every open case is in exactly one stage.
  int64_t open_cases() const;

  void Merge(const SeriesTotals& o);
  friend bool operator==(const SeriesTotals&, const SeriesTotals&) = default;
};

}  // namespace kpid::aggregate
