// Reads several AggregateShards (one per ingest worker) as one, summing them:
// the flush side of Envoy-style thread-local stats, done at read time.
//
//   MergedReader reader({&shard0, &shard1});
//   WindowSpan span = reader.Resolve(/*window=*/1, absl::Now());  // one span for all
//   SeriesWindow all = reader.ReadAllDimsWindow(process, span);
//   for (const MergedReader::SeriesRef& ref : reader.ListSeries(process)) { ... }
//
// Each worker interns dimension values in its own DimensionTable, so the same
// DimsId may mean different values in two shards: per-dims reads take the
// (shard, DimsId) pairs to add up. A caller groups ListSeries() by the values
// DimensionTable::Values(process, dims) of each shard's table and reads each
// group. Dims-less reads (all dims, quantiles, transitions) need no grouping.
//
// Thread safety: as AggregateShard's readers (any thread, no locks). The
// shards must outlive the reader and come from the same config.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "absl/types/span.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/aggregate/aggregate_types.h"
#include "daemon/aggregate/distribution.h"

namespace kpid::aggregate {

class MergedReader {
 public:
  struct SeriesRef {
    int shard = 0;  // index into shards()
    DimsId dims = 0;
    friend bool operator==(const SeriesRef&, const SeriesRef&) = default;
  };

  // At least one shard.
  explicit MergedReader(std::vector<const AggregateShard*> shards);

  const std::vector<const AggregateShard*>& shards() const { return shards_; }
  const WindowLayout& layout() const { return shards_.front()->layout(); }

  // The latest fact time of any shard.
  absl::optional<int64_t> latest() const;
  uint64_t late() const;
  // Sum of AggregateShard::ChangeCount over the shards.
  uint64_t ChangeCount(int process) const;
  uint64_t dropped() const;

  // One span for every shard, against the latest head of all.
  WindowSpan Resolve(int window_index, absl::Time end) const {
    return layout().Resolve(window_index, end, latest());
  }

  // Every series of `process` in every shard, by shard then DimsId.
  std::vector<SeriesRef> ListSeries(int process) const;
  // The refs of `dims` in every shard: right when all workers share one
  // DimsId numbering (e.g. a single worker, or a shared DimensionTable).
  std::vector<SeriesRef> SameDimsEverywhere(DimsId dims) const;

  SeriesWindow ReadSeriesWindow(int process, absl::Span<const SeriesRef> series,
                                const WindowSpan& span) const;
  // The same into `out`, reusing its memory (a scrape reads every series).
  void ReadSeriesWindow(int process, absl::Span<const SeriesRef> series, const WindowSpan& span,
                        SeriesWindow* out) const;
  SeriesWindow ReadAllDimsWindow(int process, const WindowSpan& span) const;
  Distribution ReadCycleTimes(int process, int stage, const WindowSpan& span) const;
  Distribution ReadLeadTimes(int process, const WindowSpan& span) const;

  SeriesTotals ReadSeriesTotals(int process, absl::Span<const SeriesRef> series) const;
  void ReadSeriesTotals(int process, absl::Span<const SeriesRef> series, SeriesTotals* out) const;
  SeriesTotals ReadAllDimsTotals(int process) const;
  uint64_t ReadTransitions(int process, int from_stage, int to_stage) const;

 private:
  std::vector<const AggregateShard*> shards_;
};

}  // namespace kpid::aggregate
