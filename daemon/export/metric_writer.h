// One way for a collectable to emit its metrics, two outputs: prometheus-cpp
// MetricFamily objects (Collect(), for code and tests that want them) or the
// Prometheus text format written straight into a string (TextWriter,
// text_writer.h, what /metrics serves). The walk over the data is written
// once, against MetricWriter, so the two outputs cannot disagree.
//
//   class MyMetrics : public WriterCollectable {
//     void WriteMetrics(MetricWriter* out) const override {
//       const SeriesLabels labels(Labels{{"process", "lead_to_cash"}});  // once per series
//       out->Family("kpid_x_total", "Things.", prometheus::MetricType::Counter);
//       out->Sample(labels, 3);
//       out->Sample(labels, {"outcome", "fallout"}, 1);   // one more label
//     }
//   };
//   std::vector<prometheus::MetricFamily> families = my_metrics.Collect();
//
// Why labels come as SeriesLabels: a series is written many times (one
// sample per family, window and bucket), so its labels are escaped and
// rendered once, not once per sample.
//
// Not thread-safe: one writer per scrape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "daemon/export/metric_builder.h"
#include "prometheus/client_metric.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace kpid::exporter {

// The labels of one series, as prometheus-cpp labels and as their text form.
class SeriesLabels {
 public:
  SeriesLabels() = default;
  explicit SeriesLabels(Labels labels);

  // These labels, then name="value".
  SeriesLabels With(std::string name, std::string value) const;

  const Labels& labels() const { return labels_; }
  // `a="x",b="y\"z"`: label values escaped as the text format wants; empty
  // when there are no labels.
  const std::string& text() const { return text_; }

 private:
  Labels labels_;
  std::string text_;
};

// A series' labels as a writer takes them: those of a SeriesLabels, or the
// same kept elsewhere (EngineMetrics renders the label text of every series
// of a scrape into one string, in the order the families write them, so a
// family reads it front to back instead of chasing ~10k separate strings:
// bench/RESULTS.md §4). Refers to storage that outlives the call.
class LabelsRef {
 public:
  LabelsRef(const SeriesLabels& labels)  // NOLINT(google-explicit-constructor): a view of it
      : labels_(&labels.labels()), text_(labels.text()) {}
  // `text`: `labels` rendered as SeriesLabels::text() renders them.
  LabelsRef(const Labels& labels, absl::string_view text) : labels_(&labels), text_(text) {}

  const Labels& labels() const { return *labels_; }
  absl::string_view text() const { return text_; }

 private:
  const Labels* labels_;
  absl::string_view text_;
};

// One label after a series' labels (window="5m", outcome="fallout"), for
// samples whose label set differs from the series' by one label only.
struct ExtraLabel {
  absl::string_view name;
  absl::string_view value;
};

class MetricWriter {
 public:
  virtual ~MetricWriter() = default;

  // Starts a family: the samples written next belong to it. A name should be
  // started once per writer; if it is started again, the text output still
  // has it once (TextWriter merges), Collect() has it twice.
  virtual void Family(absl::string_view name, absl::string_view help,
                      prometheus::MetricType type) = 0;
  // A counter, gauge or untyped sample of the current family.
  virtual void Sample(LabelsRef labels, double value) = 0;
  virtual void Sample(LabelsRef labels, ExtraLabel extra, double value) = 0;
  // `buckets`: cumulative counts by ascending upper bound; a +Inf bucket
  // equal to `count` is added when the last bound is not +Inf.
  virtual void Histogram(LabelsRef labels, uint64_t count, double sum,
                         absl::Span<const prometheus::ClientMetric::Bucket> buckets) = 0;
  virtual void Summary(LabelsRef labels, uint64_t count, double sum,
                       absl::Span<const prometheus::ClientMetric::Quantile> quantiles) = 0;
};

// Builds MetricFamily objects.
class FamilyWriter final : public MetricWriter {
 public:
  void Family(absl::string_view name, absl::string_view help, prometheus::MetricType type) override;
  void Sample(LabelsRef labels, double value) override;
  void Sample(LabelsRef labels, ExtraLabel extra, double value) override;
  void Histogram(LabelsRef labels, uint64_t count, double sum,
                 absl::Span<const prometheus::ClientMetric::Bucket> buckets) override;
  void Summary(LabelsRef labels, uint64_t count, double sum,
               absl::Span<const prometheus::ClientMetric::Quantile> quantiles) override;

  std::vector<prometheus::MetricFamily> Take() && { return std::move(families_); }

 private:
  prometheus::ClientMetric& NewMetric(Labels labels);

  std::vector<prometheus::MetricFamily> families_;
};

// A Collectable whose metrics come from WriteMetrics: Collect() runs it
// through a FamilyWriter; /metrics runs it through a TextWriter
// (RenderText, text_writer.h) and so skips the MetricFamily objects.
class WriterCollectable : public prometheus::Collectable {
 public:
  // Must be safe to call from any thread, as Collect().
  virtual void WriteMetrics(MetricWriter* out) const = 0;

  std::vector<prometheus::MetricFamily> Collect() const final;
};

}  // namespace kpid::exporter
