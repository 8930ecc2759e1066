#include "daemon/export/text_writer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace kpid::exporter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricType;

// Integers up to here are exact doubles: printed as integers they read back
// as the same double.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

// Bytes a value, an integer or a timestamp can take (to_chars of a double:
// at most 24).
constexpr size_t kMaxNumber = 32;

char* PutRaw(absl::string_view text, char* p) {
  if (text.empty()) return p;  // its data() may be null: not for memcpy
  std::memcpy(p, text.data(), text.size());
  return p + text.size();
}

char* WriteInteger(uint64_t value, char* p) { return std::to_chars(p, p + kMaxNumber, value).ptr; }

// Label values escape \\, " and newline; HELP text only \\ and newline. At
// most 2 * text.size() bytes.
char* WriteEscaped(absl::string_view text, bool quotes, char* p) {
  // Almost every value has nothing to escape: one scan, one copy.
  bool plain_text = true;
  for (const char c : text) plain_text &= c != '\\' && c != '\n' && (c != '"' || !quotes);
  if (plain_text) return PutRaw(text, p);
  size_t plain = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char* escaped = c == '\\'            ? "\\\\"
                          : c == '\n'          ? "\\n"
                          : c == '"' && quotes ? "\\\""
                                               : nullptr;
    if (escaped == nullptr) continue;
    p = PutRaw(text.substr(plain, i - plain), p);
    *p++ = escaped[0];
    *p++ = escaped[1];
    plain = i + 1;
  }
  return PutRaw(text.substr(plain), p);
}

// A sample value as the text format wants it (see the header); at most
// kMaxNumber bytes.
char* WriteSampleValue(double value, char* p) {
  if (std::isnan(value)) return PutRaw("NaN", p);
  if (std::isinf(value)) return PutRaw(value > 0 ? "+Inf" : "-Inf", p);
  // Counts are most samples; integer formatting is the cheaper path for them.
  if (std::fabs(value) <= kMaxExactInteger && value == std::trunc(value) && !std::signbit(value)) {
    return WriteInteger(static_cast<uint64_t>(value), p);
  }
  return std::to_chars(p, p + kMaxNumber, value).ptr;  // shortest round-trip form
}

// Appends through fn(char* p) -> end, given at most `max` bytes.
template <typename Fn>
void AppendWith(size_t max, std::string* out, Fn&& fn) {
  const size_t size = out->size();
  out->resize(size + max);
  char* begin = out->data();
  out->resize(static_cast<size_t>(fn(begin + size) - begin));
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
  AppendWith(kMaxNumber, out, [&](char* p) { return WriteSampleValue(value, p); });
}

void AppendLabelPairs(const Labels& labels, std::string* out) {
  for (size_t i = 0; i < labels.size(); ++i) {
    const size_t max = 4 + labels[i].name.size() + 2 * labels[i].value.size();
    AppendWith(max, out, [&](char* p) {
      if (i > 0) *p++ = ',';
      p = PutRaw(labels[i].name, p);
      *p++ = '=';
      *p++ = '"';
      p = WriteEscaped(labels[i].value, /*quotes=*/true, p);
      *p++ = '"';
      return p;
    });
  }
}

namespace {

// Copies `n` bytes to `dst` around the caches where it can: the body
// (~90 MB at 10k series) is far larger than the last-level cache, so plain
// stores would first read every line of it from memory and then evict what
// the scrape reads next (the label text, the shards' buckets).
void StreamCopy(char* dst, const char* src, size_t n) {
#if defined(__SSE2__)
  constexpr size_t kLine = sizeof(__m128i);
  const size_t head = std::min(n, (kLine - reinterpret_cast<uintptr_t>(dst) % kLine) % kLine);
  std::memcpy(dst, src, head);
  size_t i = head;
  for (; i + kLine <= n; i += kLine) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
  }
  std::memcpy(dst + i, src + i, n - i);
  // Streaming stores are weakly ordered: visible before whatever publishes
  // the body to another thread.
  _mm_sfence();
#else
  std::memcpy(dst, src, n);
#endif
}

}  // namespace

// The staging buffer is not zeroed: it is written before it is read, and a
// scrape that rebuilds many chunks makes a TextWriter per chunk (zeroing 64
// KB each was ~10% of such a scrape's CPU).
TextWriter::TextWriter(std::string buffer)
    : out_(std::move(buffer)),
      stage_(std::make_unique_for_overwrite<char[]>(kStageBytes)),
      stage_size_(kStageBytes) {}

char* TextWriter::Reserve(size_t bytes) {
  if (stage_size_ - staged_ < bytes) {
    Flush();
    if (stage_size_ < bytes) {
      stage_ = std::make_unique_for_overwrite<char[]>(bytes);  // empty after Flush
      stage_size_ = bytes;
    }
  }
  return stage_.get() + staged_;
}

void TextWriter::Commit(const char* end) { staged_ = static_cast<size_t>(end - stage_.get()); }

void TextWriter::Grow(size_t needed) {
  if (out_.size() >= needed) return;
  // Within the capacity, a little at a time: resize() zero-fills what it
  // adds, and a scrape ends about where the previous one (whose memory this
  // is) did. At most 64 KB past what is needed: a rebuilt chunk of lines
  // (~128 KB, in memory of twice that) filled the rest of its capacity with
  // zeros it never wrote, ~9% of a steady scrape's CPU. Past the capacity,
  // double (one copy).
  out_.resize(needed <= out_.capacity()
                  ? std::min(out_.capacity(), std::max(needed, std::min(out_.size() + (1 << 20),
                                                                        needed + (64 << 10))))
                  : std::max(needed, 2 * out_.size()));
}

void TextWriter::Flush() {
  const size_t needed = flushed_ + staged_;
  Grow(needed);
  StreamCopy(out_.data() + flushed_, stage_.get(), staged_);
  flushed_ = needed;
  staged_ = 0;
}

void TextWriter::Lines(absl::string_view lines) {
  // Small pieces (a few lines between changed series) join the staged text;
  // large ones go straight into the body.
  if (lines.size() <= stage_size_ / 4) {
    char* p = Reserve(lines.size());
    Commit(PutRaw(lines, p));
    return;
  }
  Flush();
  Grow(flushed_ + lines.size());
  StreamCopy(out_.data() + flushed_, lines.data(), lines.size());
  flushed_ += lines.size();
}

void TextWriter::CloseFamily() {
  if (!families_.empty()) families_.back().end = end();
}

void TextWriter::Family(absl::string_view name, absl::string_view help, MetricType type) {
  CloseFamily();
  FamilySpan& family = families_.emplace_back();
  family.name = std::string(name);
  family.type = type;
  family.begin = end();
  char* p = Reserve(2 * name.size() + 2 * help.size() + 32);
  if (!help.empty()) {
    p = PutRaw("# HELP ", p);
    p = PutRaw(name, p);
    *p++ = ' ';
    p = WriteEscaped(help, /*quotes=*/false, p);
    *p++ = '\n';
  }
  p = PutRaw("# TYPE ", p);
  p = PutRaw(name, p);
  *p++ = ' ';
  p = PutRaw(TypeName(type), p);
  *p++ = '\n';
  Commit(p);
  family.body = end();
}

void TextWriter::SharedLines(std::shared_ptr<const std::string> lines) {
  if (lines == nullptr || lines->empty()) return;
  Flush();
  shared_bytes_ += lines->size();
  shared_.push_back({flushed_, std::move(lines)});
}

void TextWriter::FamilyLines(absl::string_view name, MetricType type) {
  CloseFamily();
  FamilySpan& family = families_.emplace_back();
  family.name = std::string(name);
  family.type = type;
  family.begin = end();
  family.body = end();
}

char* TextWriter::Line(absl::string_view suffix, absl::string_view labels, ExtraLabel extra) {
  const absl::string_view name = families_.back().name;
  // The line up to its value, then a value, a timestamp, their separators
  // and the newline.
  char* p = Reserve(name.size() + suffix.size() + labels.size() + extra.name.size() +
                    2 * extra.value.size() + 6 + 2 * kMaxNumber + 3);
  p = PutRaw(name, p);
  p = PutRaw(suffix, p);
  const bool has_extra = !extra.name.empty();
  if (!labels.empty() || has_extra) {
    *p++ = '{';
    p = PutRaw(labels, p);
    if (has_extra) {
      if (!labels.empty()) *p++ = ',';
      p = PutRaw(extra.name, p);
      *p++ = '=';
      *p++ = '"';
      p = WriteEscaped(extra.value, /*quotes=*/true, p);
      *p++ = '"';
    }
    *p++ = '}';
  }
  *p++ = ' ';
  return p;
}

void TextWriter::EndLine(int64_t timestamp_ms, char* p) {
  if (timestamp_ms != 0) {
    *p++ = ' ';
    if (timestamp_ms < 0) *p++ = '-';
    p = WriteInteger(timestamp_ms < 0 ? 0 - static_cast<uint64_t>(timestamp_ms)
                                      : static_cast<uint64_t>(timestamp_ms),
                     p);
  }
  *p++ = '\n';
  Commit(p);
}

absl::string_view TextWriter::NumberText(std::vector<RenderedNumber>* cache, size_t i,
                                         double value) {
  if (i >= cache->size()) cache->resize(i + 1);
  RenderedNumber& n = (*cache)[i];
  if (n.text.empty() || n.value != value) {
    n.value = value;
    n.text.clear();
    AppendSampleValue(value, &n.text);
  }
  return n.text;
}

void TextWriter::Sample(LabelsRef labels, double value) { Sample(labels, ExtraLabel{}, value); }

void TextWriter::Sample(LabelsRef labels, ExtraLabel extra, double value) {
  EndLine(0, WriteSampleValue(value, Line("", labels.text(), extra)));
}

void TextWriter::Histogram(LabelsRef labels, uint64_t count, double sum,
                           absl::Span<const ClientMetric::Bucket> buckets) {
  WriteHistogram(labels.text(), count, sum, buckets, 0);
}

void TextWriter::Summary(LabelsRef labels, uint64_t count, double sum,
                         absl::Span<const ClientMetric::Quantile> quantiles) {
  WriteSummary(labels.text(), count, sum, quantiles, 0);
}

void TextWriter::WriteCountAndSum(absl::string_view labels, uint64_t count, double sum,
                                  int64_t timestamp_ms) {
  EndLine(timestamp_ms, WriteInteger(count, Line("_count", labels, {})));
  EndLine(timestamp_ms, WriteSampleValue(sum, Line("_sum", labels, {})));
}

void TextWriter::WriteHistogram(absl::string_view labels, uint64_t count, double sum,
                                absl::Span<const ClientMetric::Bucket> buckets,
                                int64_t timestamp_ms) {
  WriteCountAndSum(labels, count, sum, timestamp_ms);
  for (size_t i = 0; i < buckets.size(); ++i) {
    const absl::string_view le = NumberText(&le_text_, i, buckets[i].upper_bound);
    EndLine(timestamp_ms,
            WriteInteger(buckets[i].cumulative_count, Line("_bucket", labels, {"le", le})));
  }
  if (buckets.empty() || buckets.back().upper_bound != std::numeric_limits<double>::infinity()) {
    EndLine(timestamp_ms, WriteInteger(count, Line("_bucket", labels, {"le", "+Inf"})));
  }
}

void TextWriter::WriteSummary(absl::string_view labels, uint64_t count, double sum,
                              absl::Span<const ClientMetric::Quantile> quantiles,
                              int64_t timestamp_ms) {
  WriteCountAndSum(labels, count, sum, timestamp_ms);
  for (size_t i = 0; i < quantiles.size(); ++i) {
    const absl::string_view q = NumberText(&quantile_text_, i, quantiles[i].quantile);
    EndLine(timestamp_ms, WriteSampleValue(quantiles[i].value, Line("", labels, {"quantile", q})));
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
          EndLine(metric.timestamp_ms,
                  WriteSampleValue(metric.counter.value, Line("", label_scratch_, {})));
          break;
        case MetricType::Gauge:
          EndLine(metric.timestamp_ms,
                  WriteSampleValue(metric.gauge.value, Line("", label_scratch_, {})));
          break;
        case MetricType::Untyped:
          EndLine(metric.timestamp_ms,
                  WriteSampleValue(metric.untyped.value, Line("", label_scratch_, {})));
          break;
      }
    }
  }
}

std::string TextBody::Flatten() && {
  if (shared_.empty()) return std::move(text_);
  std::string flat;
  flat.reserve(size_);
  Write(0, [&](absl::string_view part) {
    absl::StrAppend(&flat, part);
    return true;
  });
  return flat;
}

std::string TextWriter::Finish() && { return std::move(*this).FinishBody().Flatten(); }

TextBody TextWriter::FinishBody() && {
  CloseFamily();
  Flush();
  out_.resize(flushed_);
  TextBody body;
  body.size_ = end();
  body.text_ = std::move(out_);
  body.shared_ = std::move(shared_);
  // Occurrences of each name, in order of first appearance.
  absl::flat_hash_map<absl::string_view, size_t> group_of;
  std::vector<std::vector<const FamilySpan*>> groups;
  for (const FamilySpan& family : families_) {
    auto [it, inserted] = group_of.emplace(family.name, groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(&family);
  }
  if (groups.size() == families_.size()) return body;

  // Family offsets count the shared lines: merged from the flat body.
  const size_t size = body.size_;
  const std::string flat = std::move(body).Flatten();
  const absl::string_view all = flat;
  TextBody merged;
  merged.text_.reserve(size);
  for (const std::vector<const FamilySpan*>& group : groups) {
    const FamilySpan& first = *group.front();
    absl::StrAppend(&merged.text_, all.substr(first.begin, first.end - first.begin));
    for (size_t i = 1; i < group.size(); ++i) {
      if (group[i]->type != first.type) continue;
      absl::StrAppend(&merged.text_, all.substr(group[i]->body, group[i]->end - group[i]->body));
    }
  }
  merged.size_ = merged.text_.size();
  return merged;
}

std::string RenderText(const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables,
                       std::string buffer) {
  return RenderBody(collectables, std::move(buffer)).Flatten();
}

TextBody RenderBody(const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables,
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
  return std::move(out).FinishBody();
}

}  // namespace kpid::exporter
