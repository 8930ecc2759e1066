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
// The text of /metrics is cached too: a scrape into a TextWriter keeps each
// family's sample lines and where every series' lines end, and the next
// scrape copies the lines of a series whose values are bit for bit those it
// rendered last time (same labels, same windows) instead of formatting them
// again. The values are compared, not what changed in the shards, so a
// window that slid without a new fact, a new series or other shards (a
// reshape, a config reload) re-render exactly the lines whose text differs.
// A family's lines are kept in chunks of ~128 KB: a chunk none of whose
// series changed is not even copied, the body refers to it (TextBody,
// text_writer.h). The labels, the grouping of partitions' series and the
// sums of series none of whose reads changed are kept from the last scrape
// as well. Costs: the kept lines twice (~2 x 90 MB at 10k stage series).
//
// Thread-safe: WriteMetrics/Collect take the current shards and tables from
// their source once per scrape and read them through their reader APIs,
// never blocking the workers. Concurrent scrapes share the caches one at a
// time; one that finds them taken reads and renders without them (same
// bytes), never waits.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "daemon/aggregate/merged_reader.h"
#include "daemon/aggregate/series_read_cache.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/common/mutex.h"
#include "daemon/export/metric_writer.h"
#include "daemon/export/text_writer.h"
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
  ~EngineMetrics() override;

  void WriteMetrics(MetricWriter* out) const override;

  // False: every scrape reads every series from the shards (the baseline
  // the cache is tested and measured against; same output). Any thread.
  void set_cache_window_reads(bool on) { cache_window_reads_.store(on); }
  // False: every scrape formats every line (with the reads still cached
  // unless turned off above). Any thread.
  void set_cache_text(bool on) { cache_text_.store(on); }
  // The text cache keeps a family's lines in chunks of about this many
  // bytes: a change rebuilds (copies) the chunks of the changed series, and
  // a body is sent in as many parts. Any thread; tests use small ones.
  void set_text_chunk_bytes(size_t bytes) { text_chunk_bytes_.store(bytes); }

  // The last scrape through the text cache: series (process and stage
  // series) whose lines it formatted, and those whose lines it kept; and
  // how many scrapes went through it so far (the others found it taken).
  struct TextCacheStats {
    uint64_t rendered = 0;
    uint64_t kept = 0;
    uint64_t scrapes = 0;
  };
  TextCacheStats text_cache_stats() const {
    MutexLock lock(&cache_mu_);
    return text_stats_;
  }

 private:
  struct Snapshot;
  struct RenderedText;
  // `before`: the snapshot of the last text scrape, whose labels, series
  // grouping and sums this one takes (moves) where they are the same; null:
  // builds and reads everything.
  Snapshot Read(aggregate::SeriesReadCache* cache, Snapshot* before) const;
  // Renders the lines of the series that differ from the last scrape
  // through the text cache, copies the others.
  void WriteText(Snapshot snap, TextWriter* out) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(cache_mu_);

  const model::Config* config_;
  aggregate::ShardSource shards_;
  const cases::Clock* clock_;
  std::atomic<bool> cache_window_reads_{true};
  std::atomic<bool> cache_text_{true};
  std::atomic<size_t> text_chunk_bytes_{128 << 10};
  mutable Mutex cache_mu_;
  mutable aggregate::SeriesReadCache cache_ ABSL_GUARDED_BY(cache_mu_);
  mutable std::unique_ptr<RenderedText> rendered_ ABSL_GUARDED_BY(cache_mu_);
  mutable TextCacheStats text_stats_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace kpid::exporter
