#include "daemon/export/metric_writer.h"

#include <utility>

#include "daemon/export/text_writer.h"

namespace kpid::exporter {

using prometheus::ClientMetric;
using prometheus::MetricType;

SeriesLabels::SeriesLabels(Labels labels) : labels_(std::move(labels)) {
  AppendLabelPairs(labels_, &text_);
}

SeriesLabels SeriesLabels::With(std::string name, std::string value) const {
  Labels labels = labels_;
  labels.push_back({std::move(name), std::move(value)});
  return SeriesLabels(std::move(labels));
}

void FamilyWriter::Family(absl::string_view name, absl::string_view help, MetricType type) {
  prometheus::MetricFamily& family = families_.emplace_back();
  family.name = std::string(name);
  family.help = std::string(help);
  family.type = type;
}

ClientMetric& FamilyWriter::NewMetric(Labels labels) {
  ClientMetric& metric = families_.back().metric.emplace_back();
  metric.label = std::move(labels);
  return metric;
}

void FamilyWriter::Sample(LabelsRef labels, double value) {
  ClientMetric& metric = NewMetric(labels.labels());
  switch (families_.back().type) {
    case MetricType::Counter:
      metric.counter.value = value;
      break;
    case MetricType::Gauge:
      metric.gauge.value = value;
      break;
    default:
      metric.untyped.value = value;
      break;
  }
}

void FamilyWriter::Sample(LabelsRef labels, ExtraLabel extra, double value) {
  Sample(labels, value);
  families_.back().metric.back().label.push_back(
      {std::string(extra.name), std::string(extra.value)});
}

void FamilyWriter::Histogram(LabelsRef labels, uint64_t count, double sum,
                             absl::Span<const ClientMetric::Bucket> buckets) {
  ClientMetric& metric = NewMetric(labels.labels());
  metric.histogram.sample_count = count;
  metric.histogram.sample_sum = sum;
  metric.histogram.bucket.assign(buckets.begin(), buckets.end());
}

void FamilyWriter::Summary(LabelsRef labels, uint64_t count, double sum,
                           absl::Span<const ClientMetric::Quantile> quantiles) {
  ClientMetric& metric = NewMetric(labels.labels());
  metric.summary.sample_count = count;
  metric.summary.sample_sum = sum;
  metric.summary.quantile.assign(quantiles.begin(), quantiles.end());
}

std::vector<prometheus::MetricFamily> WriterCollectable::Collect() const {
  FamilyWriter writer;
  WriteMetrics(&writer);
  return std::move(writer).Take();
}

}  // namespace kpid::exporter
