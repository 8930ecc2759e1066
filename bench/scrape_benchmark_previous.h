// The engine's /metrics rendering as it was before the scrape got cheaper
// in session 3 (daemon/export/engine_metrics.cc and text_writer.cc at
// 04da8cb, frozen): labels rebuilt every scrape, lines appended piece by
// piece, every histogram bound formatted on every line. scrape_benchmark
// compares the current path against it in the same run. Do not change: it
// is the yardstick (it reads the shards through today's MergedReader).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/export/metric_writer.h"
#include "daemon/model/config.h"

namespace kpid::bench_previous {

using exporter::ExtraLabel;
using exporter::LabelsRef;
using exporter::MetricWriter;
using exporter::SeriesLabels;
using exporter::WriterCollectable;

class PreviousTextWriter final : public MetricWriter {
 public:
  // Writes into `buffer`, keeping its capacity but not its contents. Pass
  // the previous scrape's string: a scrape of 10k stage series is ~90 MB,
  // and a fresh string grows by copies and page-faults every page in
  // (a third of a scrape's CPU time, bench/scrape_benchmark BM_ScrapeFresh).
  explicit PreviousTextWriter(std::string buffer = {});

  void Family(absl::string_view name, absl::string_view help, prometheus::MetricType type) override;
  void Sample(LabelsRef labels, double value) override;
  void Sample(LabelsRef labels, ExtraLabel extra, double value) override;
  void Histogram(LabelsRef labels, uint64_t count, double sum,
                 absl::Span<const prometheus::ClientMetric::Bucket> buckets) override;
  void Summary(LabelsRef labels, uint64_t count, double sum,
               absl::Span<const prometheus::ClientMetric::Quantile> quantiles) override;

  // Families of a plain Collectable, as prometheus-cpp's TextSerializer
  // would write them (timestamps included) but with the formatting above.
  void AddFamilies(const std::vector<prometheus::MetricFamily>& families);

  // The exposition, families of one name merged (see above).
  std::string Finish() &&;

 private:
  struct FamilySpan {
    std::string name;
    prometheus::MetricType type;
    size_t begin;  // of the HELP/TYPE lines
    size_t body;   // of the first sample line
    size_t end;
  };

  void CloseFamily();
  // `labels`: rendered label pairs (SeriesLabels::text()).
  void Line(absl::string_view suffix, absl::string_view labels, ExtraLabel extra);
  // The _count and _sum lines histograms and summaries share.
  void WriteCountAndSum(absl::string_view labels, uint64_t count, double sum, int64_t timestamp_ms);
  void WriteHistogram(absl::string_view labels, uint64_t count, double sum,
                      absl::Span<const prometheus::ClientMetric::Bucket> buckets,
                      int64_t timestamp_ms);
  void WriteSummary(absl::string_view labels, uint64_t count, double sum,
                    absl::Span<const prometheus::ClientMetric::Quantile> quantiles,
                    int64_t timestamp_ms);
  void EndLine(int64_t timestamp_ms);

  std::string out_;
  std::vector<FamilySpan> families_;
  std::string label_scratch_;  // AddFamilies: a metric's rendered labels
  std::string value_scratch_;  // a rendered le or quantile
};

class PreviousEngineMetrics : public WriterCollectable {
 public:
  // `shards[i]` and `dimensions[i]` belong to worker i. Everything must
  // outlive this collectable. `clock` gives the end of every window.
  PreviousEngineMetrics(const model::Config* config,
                        std::vector<const aggregate::AggregateShard*> shards,
                        std::vector<const cases::DimensionTable*> dimensions,
                        const cases::Clock* clock);

  void WriteMetrics(MetricWriter* out) const override;

 private:
  struct Snapshot;
  Snapshot Read() const;

  const model::Config* config_;
  aggregate::MergedReader reader_;
  std::vector<const cases::DimensionTable*> dimensions_;
  const cases::Clock* clock_;
};

// The /metrics body of `metrics` alone, rendered into `buffer`'s memory.
std::string PreviousRenderText(const PreviousEngineMetrics& metrics, std::string buffer);

}  // namespace kpid::bench_previous
