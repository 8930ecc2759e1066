// Renders the KPIs of DESIGN §3 under the names of DESIGN §4 at scrape time,
// from the aggregator shards of every worker:
//
//   counters   kpid_stage_{entered,exited,sla_met,sla_missed,rework,sla_breaches}_total,
//              kpid_transitions_total,
//              kpid_process_cases_{started,completed,fallout,expired}_total,
//              kpid_process_{revenue,cost}_total
//   histograms kpid_stage_cycle_time_seconds, kpid_process_lead_time_seconds
//   gauges     kpid_stage_backlog, kpid_stage_backlog_over_sla, kpid_process_open_cases
//   windows    kpid_window_stage_*, kpid_window_process_* {window}, and their
//              cycle/lead-time quantiles {window, quantile}
//   self       kpid_series_folded_total{process}
//
// Series carry `process`, `stage` (stage series) and the configured
// dimensions. Each worker interns dimension values separately, so series are
// grouped by their values across shards and summed. Window quantiles carry no
// dimension labels (the aggregator keeps distributions per stage and process
// only; see daemon/aggregate/aggregate_shard.h). A ratio whose denominator is
// zero is left out, never 0 or NaN.
//
// One scrape reads every series once (totals, then each window), then writes
// family by family through a MetricWriter (metric_writer.h): Collect() gets
// MetricFamily objects, /metrics the text written directly (TextWriter).
// Series labels are built once per series, not per sample.
//
// Series reads go through a SeriesReadCache (daemon/aggregate), so a scrape
// re-reads only the (partition, series) pairs that got a fact since the last
// one (and windows that moved on by a bucket); the others cost a copy.
//
// Thread-safe: WriteMetrics/Collect take the current shards and tables from
// their source once per scrape and read them through their reader APIs,
// never blocking the workers. Concurrent scrapes share the cache one at a
// time; one that finds it taken reads without it (same numbers), never waits.
#pragma once

#include <atomic>
#include <vector>

#include "daemon/aggregate/merged_reader.h"
#include "daemon/aggregate/series_read_cache.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/common/mutex.h"
#include "daemon/export/metric_writer.h"
#include "daemon/model/config.h"

namespace kpid::exporter {

class EngineMetrics : public WriterCollectable {
 public:
  // `config` and `clock` (the end of every window) must outlive this
  // collectable.
  EngineMetrics(const model::Config* config, aggregate::ShardSource shards,
                const cases::Clock* clock);
  // Fixed shards: `dimensions[i]` belongs to `shards[i]`; all must outlive this.
  EngineMetrics(const model::Config* config, std::vector<const aggregate::AggregateShard*> shards,
                std::vector<const cases::DimensionTable*> dimensions, const cases::Clock* clock);

  void WriteMetrics(MetricWriter* out) const override;

  // False: every scrape reads every series from the shards (the baseline
  // the cache is tested and measured against; same output). Any thread.
  void set_cache_window_reads(bool on) { cache_window_reads_.store(on); }

 private:
  struct Snapshot;
  Snapshot Read() const;
  Snapshot Read(aggregate::SeriesReadCache* cache) const;

  const model::Config* config_;
  aggregate::ShardSource shards_;
  const cases::Clock* clock_;
  std::atomic<bool> cache_window_reads_{true};
  mutable Mutex cache_mu_;
  mutable aggregate::SeriesReadCache cache_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace kpid::exporter
