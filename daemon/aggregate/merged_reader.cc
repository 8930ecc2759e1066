#include "daemon/aggregate/merged_reader.h"

#include <algorithm>
#include <utility>

namespace kpid::aggregate {

MergedReader::MergedReader(std::vector<const AggregateShard*> shards)
    : shards_(std::move(shards)) {}

absl::optional<int64_t> MergedReader::latest() const {
  absl::optional<int64_t> latest;
  for (const AggregateShard* s : shards_) {
    const absl::optional<int64_t> l = s->latest();
    if (l.has_value() && (!latest.has_value() || *l > *latest)) latest = l;
  }
  return latest;
}

uint64_t MergedReader::ChangeCount(int process) const {
  uint64_t n = 0;
  for (const AggregateShard* s : shards_) n += s->ChangeCount(process);
  return n;
}

uint64_t MergedReader::late() const {
  uint64_t n = 0;
  for (const AggregateShard* s : shards_) n += s->late();
  return n;
}

uint64_t MergedReader::dropped() const {
  uint64_t n = 0;
  for (const AggregateShard* s : shards_) n += s->dropped();
  return n;
}

std::vector<MergedReader::SeriesRef> MergedReader::ListSeries(int process) const {
  std::vector<SeriesRef> refs;
  for (size_t i = 0; i < shards_.size(); ++i) {
    for (DimsId d : shards_[i]->ListDims(process)) refs.push_back({static_cast<int>(i), d});
  }
  return refs;
}

std::vector<MergedReader::SeriesRef> MergedReader::SameDimsEverywhere(DimsId dims) const {
  std::vector<SeriesRef> refs;
  for (size_t i = 0; i < shards_.size(); ++i) refs.push_back({static_cast<int>(i), dims});
  return refs;
}

SeriesWindow MergedReader::ReadSeriesWindow(int process, absl::Span<const SeriesRef> series,
                                            const WindowSpan& span) const {
  SeriesWindow w;
  ReadSeriesWindow(process, series, span, &w);
  return w;
}

void MergedReader::ReadSeriesWindow(int process, absl::Span<const SeriesRef> series,
                                    const WindowSpan& span, SeriesWindow* out) const {
  out->process = {};
  out->stages.assign(static_cast<size_t>(shards_.front()->stage_count(process)), {});
  for (const SeriesRef& ref : series) {
    if (ref.shard < 0 || ref.shard >= static_cast<int>(shards_.size())) continue;
    shards_[static_cast<size_t>(ref.shard)]->AddSeriesWindow(process, ref.dims, span, out);
  }
}

SeriesWindow MergedReader::ReadAllDimsWindow(int process, const WindowSpan& span) const {
  SeriesWindow w;
  w.stages.resize(static_cast<size_t>(shards_.front()->stage_count(process)));
  for (const AggregateShard* s : shards_) w.Merge(s->ReadAllDimsWindow(process, span));
  return w;
}

Distribution MergedReader::ReadCycleTimes(int process, int stage, const WindowSpan& span) const {
  Distribution d;
  for (const AggregateShard* s : shards_) d.Merge(s->ReadCycleTimes(process, stage, span));
  return d;
}

Distribution MergedReader::ReadLeadTimes(int process, const WindowSpan& span) const {
  Distribution d;
  for (const AggregateShard* s : shards_) d.Merge(s->ReadLeadTimes(process, span));
  return d;
}

SeriesTotals MergedReader::ReadSeriesTotals(int process, absl::Span<const SeriesRef> series) const {
  SeriesTotals t;
  ReadSeriesTotals(process, series, &t);
  return t;
}

void MergedReader::ReadSeriesTotals(int process, absl::Span<const SeriesRef> series,
                                    SeriesTotals* out) const {
  out->process = {};
  out->stages.assign(static_cast<size_t>(shards_.front()->stage_count(process)), {});
  for (const SeriesRef& ref : series) {
    if (ref.shard < 0 || ref.shard >= static_cast<int>(shards_.size())) continue;
    shards_[static_cast<size_t>(ref.shard)]->AddSeriesTotals(process, ref.dims, out);
  }
}

SeriesTotals MergedReader::ReadAllDimsTotals(int process) const {
  SeriesTotals t;
  t.stages.resize(static_cast<size_t>(shards_.front()->stage_count(process)));
  for (const AggregateShard* s : shards_) t.Merge(s->ReadAllDimsTotals(process));
  return t;
}

uint64_t MergedReader::ReadTransitions(int process, int from_stage, int to_stage) const {
  uint64_t n = 0;
  for (const AggregateShard* s : shards_) n += s->ReadTransitions(process, from_stage, to_stage);
  return n;
}

}  // namespace kpid::aggregate
