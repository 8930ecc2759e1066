// What one shard's series read like at the last read pass (a scrape), kept
// for the next, so a pass re-reads only the series that changed:
//
//   SeriesReadCache cache;                        // one per reader, not shared
//   cache.Begin(set.generation, spans);           // spans[w]: window w of this pass
//   std::vector<SeriesWindow> windows(spans.size());  // each with the process's stages
//   SeriesTotals totals;                          // likewise
//   for (const MergedReader::SeriesRef& ref : refs) {
//     cache.AddSeries(ref.shard, *set.shards[ref.shard], process, ref.dims,
//                     absl::MakeSpan(windows), &totals);
//   }
//
// Why: a window read sums ~61 bucket slots per series, window and shard, and
// since session 3 there is one shard per Kafka partition, so a scrape of 10k
// series read each from every partition's shard (bucket slots and totals,
// ~45 KB per series and partition). Most series of most partitions get no
// fact between two scrapes, and a window's span changes only when its end
// crosses a bucket (every 5 s for a 5m window): then a read gives the same
// numbers as last time.
//
// An entry is (shard, process, dims): the series' SeriesVersion when read,
// its totals, and per window the span generation it was read for and the
// read. It is reused while the version (loaded before reading) is unchanged,
// and a window's read while the window's span is the one it was read for:
// a read would see exactly the same values (the writer bumps the version
// after every fact that changed the series; see aggregate_shard.h). A fact
// being written during the first read may be half in it, as in any read; it
// bumps the version when done, so the next pass reads again.
//
// Numbers: each shard's read of a series is added to the caller's sum as a
// whole, shard by shard, hit or miss alike, so a pass gives the same result
// as one with an empty cache. For totals that is what MergedReader does;
// for windows MergedReader::ReadSeriesWindow adds the shards' buckets into
// one sum instead, so the two can differ only in how floating-point sums
// (revenue, cost, feedback) of several shards are associated: not at all
// when amounts are whole numbers below 2^53.
//
// Memory: ~3 KB per (shard, process, dims) with 4 windows and 5 stages, as
// long as the shards' generation stays (a new generation, i.e. other
// engines, drops every entry).
//
// Thread safety: none; one reader thread at a time (EngineMetrics holds it
// under a mutex). It reads the shards as their readers do: never blocks the
// writers.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/aggregate/aggregate_types.h"

namespace kpid::aggregate {

class SeriesReadCache {
 public:
  // `keep_reads` false: every read goes to the shard and nothing is kept (a
  // reader that cannot use the shared cache, and the baseline the cache is
  // measured and tested against: same arithmetic, same numbers).
  explicit SeriesReadCache(bool keep_reads = true) : keep_reads_(keep_reads) {}

  // Starts a pass over the shards of ShardSet generation `generation`, with
  // spans[w] the span of window w. A generation other than the last pass's
  // drops every entry; a window whose span differs from the last pass's is
  // re-read for every series.
  void Begin(uint64_t generation, absl::Span<const WindowSpan> spans);

  // Loads the SeriesVersion of every series of `process` in `shard` at once
  // (their loads overlap), for the AddSeries calls of this pass that follow;
  // optional: AddSeries loads a version it does not have.
  void LoadVersions(int shard_index, const AggregateShard& shard, int process);

  // windows[w] += `shard`'s read of (process, dims) over the pass's
  // spans[w], for w < windows.size() <= spans.size(), and *totals += its
  // totals (AggregateShard::AddSeriesTotals). `shard_index` names the shard
  // within the generation (its index in the ShardSet).
  void AddSeries(int shard_index, const AggregateShard& shard, int process, DimsId dims,
                 absl::Span<SeriesWindow> windows, SeriesTotals* totals);

  // Whether AddSeries of (shard_index, process, dims) in this pass would
  // serve its totals and its first `window_count` windows from memory:
  // read in an earlier pass, with the version LoadVersions loaded for it in
  // this pass and each window's span unchanged since. (A reader that kept
  // what the last pass added up can then keep that instead of adding it up
  // again; EngineMetrics does.) False without LoadVersions this pass.
  bool Unchanged(int shard_index, int process, DimsId dims, size_t window_count) const;

  // Passes begun (Begin) so far.
  uint64_t pass() const { return pass_; }

  // Reads (one per window, or totals) served from memory / read from a shard
  // since Begin.
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

 private:
  struct Window {
    uint64_t span_generation = 0;  // 0: not read at this version
    SeriesWindow read;
  };
  struct Entry {
    uint64_t version = 0;         // of the reads kept
    uint64_t loaded_version = 0;  // by LoadVersions in pass loaded_pass
    uint64_t loaded_pass = 0;
    bool totals_read = false;  // at this version
    SeriesTotals totals;
    std::vector<Window> windows;
  };

  Entry& EntryFor(int shard_index, int process, DimsId dims);

  const bool keep_reads_;
  SeriesWindow scratch_;            // !keep_reads_: each window read, before it is added
  std::vector<uint64_t> versions_;  // LoadVersions' scratch
  bool started_ = false;
  uint64_t pass_ = 0;
  uint64_t generation_ = 0;
  std::vector<WindowSpan> spans_;
  // Per window, bumped whenever its span changes (from 1, so a new entry's
  // 0 never matches).
  std::vector<uint64_t> span_generations_;
  std::vector<std::vector<std::vector<Entry>>> entries_;  // [shard][process][dims]
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace kpid::aggregate
