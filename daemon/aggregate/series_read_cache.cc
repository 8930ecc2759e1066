#include "daemon/aggregate/series_read_cache.h"

#include <algorithm>

namespace kpid::aggregate {
namespace {

bool SameSpan(const WindowSpan& a, const WindowSpan& b) {
  return a.level == b.level && a.first == b.first && a.last == b.last && a.from == b.from &&
         a.to == b.to;
}

}  // namespace

void SeriesReadCache::Begin(uint64_t generation, absl::Span<const WindowSpan> spans) {
  if (!started_ || generation != generation_) {
    entries_.clear();
    generation_ = generation;
    started_ = true;
  }
  if (span_generations_.size() < spans.size()) span_generations_.resize(spans.size(), 0);
  if (spans_.size() < spans.size()) spans_.resize(spans.size());
  for (size_t w = 0; w < spans.size(); ++w) {
    if (span_generations_[w] == 0 || !SameSpan(spans_[w], spans[w])) {
      spans_[w] = spans[w];
      ++span_generations_[w];
    }
  }
  ++pass_;
  hits_ = 0;
  misses_ = 0;
}

void SeriesReadCache::LoadVersions(int shard_index, const AggregateShard& shard, int process) {
  if (!keep_reads_ || shard_index < 0 || process < 0 || process >= shard.process_count()) return;
  shard.SeriesVersions(process, &versions_);
  for (DimsId d = 0; d < versions_.size(); ++d) {
    Entry& e = EntryFor(shard_index, process, d);
    e.loaded_version = versions_[d];
    e.loaded_pass = pass_;
  }
}

SeriesReadCache::Entry& SeriesReadCache::EntryFor(int shard_index, int process, DimsId dims) {
  const size_t s = static_cast<size_t>(shard_index);
  const size_t p = static_cast<size_t>(process);
  if (entries_.size() <= s) entries_.resize(s + 1);
  std::vector<std::vector<Entry>>& processes = entries_[s];
  if (processes.size() <= p) processes.resize(p + 1);
  std::vector<Entry>& by_dims = processes[p];
  if (by_dims.size() <= dims) by_dims.resize(static_cast<size_t>(dims) + 1);
  return by_dims[dims];
}

bool SeriesReadCache::Unchanged(int shard_index, int process, DimsId dims,
                                size_t window_count) const {
  if (!keep_reads_ || shard_index < 0 || process < 0) return false;
  const size_t s = static_cast<size_t>(shard_index);
  const size_t p = static_cast<size_t>(process);
  if (s >= entries_.size() || p >= entries_[s].size() || dims >= entries_[s][p].size()) {
    return false;
  }
  const Entry& e = entries_[s][p][dims];
  if (e.loaded_pass != pass_ || e.loaded_version != e.version || !e.totals_read ||
      window_count > e.windows.size() || window_count > spans_.size()) {
    return false;
  }
  for (size_t w = 0; w < window_count; ++w) {
    if (e.windows[w].span_generation != span_generations_[w]) return false;
  }
  return true;
}

void SeriesReadCache::AddSeries(int shard_index, const AggregateShard& shard, int process,
                                DimsId dims, absl::Span<SeriesWindow> windows,
                                SeriesTotals* totals) {
  if (shard_index < 0 || process < 0 || process >= shard.process_count() ||
      dims >= AggregateShard::kMaxDims) {
    return;
  }
  const size_t stages = static_cast<size_t>(shard.stage_count(process));
  const size_t window_count = std::min(windows.size(), spans_.size());
  if (!keep_reads_) {
    for (size_t w = 0; w < window_count; ++w) {
      ++misses_;
      scratch_.process = {};
      scratch_.stages.assign(stages, {});
      shard.AddSeriesWindow(process, dims, spans_[w], &scratch_);
      windows[w].Merge(scratch_);
    }
    ++misses_;
    shard.AddSeriesTotals(process, dims, totals);
    return;
  }
  Entry& e = EntryFor(shard_index, process, dims);
  // Before any read (see AggregateShard::SeriesVersion).
  const uint64_t version =
      e.loaded_pass == pass_ ? e.loaded_version : shard.SeriesVersion(process, dims);
  if (version != e.version) {
    e.version = version;
    e.totals_read = false;
    for (Window& w : e.windows) w.span_generation = 0;
  }
  if (e.windows.size() < window_count) e.windows.resize(window_count);
  for (size_t w = 0; w < window_count; ++w) {
    Window& cached = e.windows[w];
    if (cached.span_generation == span_generations_[w]) {
      ++hits_;
    } else {
      ++misses_;
      cached.read.process = {};
      cached.read.stages.assign(stages, {});
      if (version != 0) shard.AddSeriesWindow(process, dims, spans_[w], &cached.read);
      cached.span_generation = span_generations_[w];
    }
    windows[w].Merge(cached.read);
  }
  if (e.totals_read) {
    ++hits_;
  } else {
    ++misses_;
    e.totals = {};
    e.totals.stages.resize(stages);
    if (version != 0) shard.AddSeriesTotals(process, dims, &e.totals);
    e.totals_read = true;
  }
  totals->Merge(e.totals);
}

}  // namespace kpid::aggregate
