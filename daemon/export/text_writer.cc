#include "daemon/export/text_writer.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace kpid::exporter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricType;

// Integers up to here are exact doubles: printed as integers they read back
// as the same double.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

void Put(absl::string_view text, std::string* out) { out->append(text.data(), text.size()); }

void AppendInteger(uint64_t value, std::string* out) {
  char buf[24];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, value);
  out->append(buf, static_cast<size_t>(r.ptr - buf));
}

// Label values escape \, " and newline; HELP text only \ and newline.
void AppendEscaped(absl::string_view text, bool quotes, std::string* out) {
  size_t plain = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char* escaped = c == '\\'            ? "\\\\"
                          : c == '\n'          ? "\\n"
                          : c == '"' && quotes ? "\\\""
                                               : nullptr;
    if (escaped == nullptr) continue;
    out->append(text.data() + plain, i - plain);
    out->append(escaped, 2);
    plain = i + 1;
  }
  out->append(text.data() + plain, text.size() - plain);
}

absl::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Summary:
      return "summary";
    case MetricType::Histogram:
      return "histogram";
    case MetricType::Untyped:
      break;
  }
  return "untyped";
}

}  // namespace

void AppendSampleValue(double value, std::string* out) {
  if (std::isnan(value)) {
    Put("NaN", out);
    return;
  }
  if (std::isinf(value)) {
    Put(value > 0 ? "+Inf" : "-Inf", out);
    return;
  }
  char buf[32];
  std::to_chars_result r;
  // Counts are most samples; integer formatting is the cheaper path for them.
  if (std::fabs(value) <= kMaxExactInteger && value == std::trunc(value) && !std::signbit(value)) {
    r = std::to_chars(buf, buf + sizeof buf, static_cast<uint64_t>(value));
  } else {
    r = std::to_chars(buf, buf + sizeof buf, value);  // shortest round-trip form
  }
  out->append(buf, static_cast<size_t>(r.ptr - buf));
}

void AppendLabelPairs(const Labels& labels, std::string* out) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out->push_back(',');
    Put(labels[i].name, out);
    Put("=\"", out);
    AppendEscaped(labels[i].value, /*quotes=*/true, out);
    out->push_back('"');
  }
}

TextWriter::TextWriter(std::string buffer) : out_(std::move(buffer)) { out_.clear(); }

void TextWriter::CloseFamily() {
  if (!families_.empty()) families_.back().end = out_.size();
}

void TextWriter::Family(absl::string_view name, absl::string_view help, MetricType type) {
  CloseFamily();
  FamilySpan& family = families_.emplace_back();
  family.name = std::string(name);
  family.type = type;
  family.begin = out_.size();
  if (!help.empty()) {
    Put("# HELP ", &out_);
    Put(name, &out_);
    out_.push_back(' ');
    AppendEscaped(help, /*quotes=*/false, &out_);
    out_.push_back('\n');
  }
  Put("# TYPE ", &out_);
  Put(name, &out_);
  out_.push_back(' ');
  Put(TypeName(type), &out_);
  out_.push_back('\n');
  family.body = out_.size();
}

void TextWriter::Line(absl::string_view suffix, absl::string_view labels, ExtraLabel extra) {
  Put(families_.back().name, &out_);
  Put(suffix, &out_);
  const bool has_extra = !extra.name.empty();
  if (!labels.empty() || has_extra) {
    out_.push_back('{');
    Put(labels, &out_);
    if (has_extra) {
      if (!labels.empty()) out_.push_back(',');
      Put(extra.name, &out_);
      Put("=\"", &out_);
      AppendEscaped(extra.value, /*quotes=*/true, &out_);
      out_.push_back('"');
    }
    out_.push_back('}');
  }
  out_.push_back(' ');
}

void TextWriter::EndLine(int64_t timestamp_ms) {
  if (timestamp_ms != 0) {
    out_.push_back(' ');
    if (timestamp_ms < 0) out_.push_back('-');
    AppendInteger(timestamp_ms < 0 ? 0 - static_cast<uint64_t>(timestamp_ms)
                                   : static_cast<uint64_t>(timestamp_ms),
                  &out_);
  }
  out_.push_back('\n');
}

void TextWriter::Sample(const SeriesLabels& labels, double value) {
  Sample(labels, ExtraLabel{}, value);
}

void TextWriter::Sample(const SeriesLabels& labels, ExtraLabel extra, double value) {
  Line("", labels.text(), extra);
  AppendSampleValue(value, &out_);
  out_.push_back('\n');
}

void TextWriter::Histogram(const SeriesLabels& labels, uint64_t count, double sum,
                           absl::Span<const ClientMetric::Bucket> buckets) {
  WriteHistogram(labels.text(), count, sum, buckets, 0);
}

void TextWriter::Summary(const SeriesLabels& labels, uint64_t count, double sum,
                         absl::Span<const ClientMetric::Quantile> quantiles) {
  WriteSummary(labels.text(), count, sum, quantiles, 0);
}

void TextWriter::WriteCountAndSum(absl::string_view labels, uint64_t count, double sum,
                                  int64_t timestamp_ms) {
  Line("_count", labels, {});
  AppendInteger(count, &out_);
  EndLine(timestamp_ms);
  Line("_sum", labels, {});
  AppendSampleValue(sum, &out_);
  EndLine(timestamp_ms);
}

void TextWriter::WriteHistogram(absl::string_view labels, uint64_t count, double sum,
                                absl::Span<const ClientMetric::Bucket> buckets,
                                int64_t timestamp_ms) {
  WriteCountAndSum(labels, count, sum, timestamp_ms);
  for (const ClientMetric::Bucket& bucket : buckets) {
    value_scratch_.clear();
    AppendSampleValue(bucket.upper_bound, &value_scratch_);
    Line("_bucket", labels, {"le", value_scratch_});
    AppendInteger(bucket.cumulative_count, &out_);
    EndLine(timestamp_ms);
  }
  if (buckets.empty() || buckets.back().upper_bound != std::numeric_limits<double>::infinity()) {
    Line("_bucket", labels, {"le", "+Inf"});
    AppendInteger(count, &out_);
    EndLine(timestamp_ms);
  }
}

void TextWriter::WriteSummary(absl::string_view labels, uint64_t count, double sum,
                              absl::Span<const ClientMetric::Quantile> quantiles,
                              int64_t timestamp_ms) {
  WriteCountAndSum(labels, count, sum, timestamp_ms);
  for (const ClientMetric::Quantile& q : quantiles) {
    value_scratch_.clear();
    AppendSampleValue(q.quantile, &value_scratch_);
    Line("", labels, {"quantile", value_scratch_});
    AppendSampleValue(q.value, &out_);
    EndLine(timestamp_ms);
  }
}

void TextWriter::AddFamilies(const std::vector<prometheus::MetricFamily>& families) {
  for (const prometheus::MetricFamily& family : families) {
    Family(family.name, family.help, family.type);
    for (const ClientMetric& metric : family.metric) {
      label_scratch_.clear();
      AppendLabelPairs(metric.label, &label_scratch_);
      switch (family.type) {
        case MetricType::Histogram:
          WriteHistogram(label_scratch_, metric.histogram.sample_count, metric.histogram.sample_sum,
                         metric.histogram.bucket, metric.timestamp_ms);
          continue;
        case MetricType::Summary:
          WriteSummary(label_scratch_, metric.summary.sample_count, metric.summary.sample_sum,
                       metric.summary.quantile, metric.timestamp_ms);
          continue;
        case MetricType::Counter:
          Line("", label_scratch_, {});
          AppendSampleValue(metric.counter.value, &out_);
          break;
        case MetricType::Gauge:
          Line("", label_scratch_, {});
          AppendSampleValue(metric.gauge.value, &out_);
          break;
        case MetricType::Untyped:
          Line("", label_scratch_, {});
          AppendSampleValue(metric.untyped.value, &out_);
          break;
      }
      EndLine(metric.timestamp_ms);
    }
  }
}

std::string TextWriter::Finish() && {
  CloseFamily();
  // Occurrences of each name, in order of first appearance.
  absl::flat_hash_map<absl::string_view, size_t> group_of;
  std::vector<std::vector<const FamilySpan*>> groups;
  for (const FamilySpan& family : families_) {
    auto [it, inserted] = group_of.emplace(family.name, groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(&family);
  }
  if (groups.size() == families_.size()) return std::move(out_);

  std::string merged;
  merged.reserve(out_.size());
  const absl::string_view all = out_;
  for (const std::vector<const FamilySpan*>& group : groups) {
    const FamilySpan& first = *group.front();
    Put(all.substr(first.begin, first.end - first.begin), &merged);
    for (size_t i = 1; i < group.size(); ++i) {
      if (group[i]->type != first.type) continue;
      Put(all.substr(group[i]->body, group[i]->end - group[i]->body), &merged);
    }
  }
  return merged;
}

std::string RenderText(const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables,
                       std::string buffer) {
  TextWriter out(std::move(buffer));
  for (const std::shared_ptr<prometheus::Collectable>& collectable : collectables) {
    if (collectable == nullptr) continue;
    if (const auto* writer = dynamic_cast<const WriterCollectable*>(collectable.get())) {
      writer->WriteMetrics(&out);
    } else {
      out.AddFamilies(collectable->Collect());
    }
  }
  return std::move(out).Finish();
}

}  // namespace kpid::exporter
