// The Prometheus text exposition format (version 0.0.4), written straight
// into one std::string: what /metrics serves.
//
//   std::string body = RenderText(collectables);   // one scrape
//
// or by hand:
//
//   TextWriter out(std::move(last_body));     // reuses its memory
//   engine_metrics.WriteMetrics(&out);        // a WriterCollectable: no MetricFamily objects
//   out.AddFamilies(ingest_metrics.Collect());  // any other Collectable
//   std::string body = std::move(out).Finish();
//
// Why not prometheus-cpp's TextSerializer: it formats through std::ostream,
// per metric, from MetricFamily objects, ~2 µs a sample; a scrape of 10k
// stage series has ~740k samples (bench/RESULTS.md §4). Here a series'
// labels are rendered once (SeriesLabels) and every line is appends to one
// string. Numbers: integers as integers; other doubles in their shortest
// form that parses back to the same double (std::to_chars; prometheus-cpp
// 1.0 prints 16 significant digits, which does not round-trip); NaN, +Inf,
// -Inf as Prometheus spells them. Label values are escaped (\\, \", \n), as
// HELP text is (\\, \n).
//
// A family name written more than once (two collectables exporting the same
// family, or one starting it twice) comes out once: one HELP/TYPE, then the
// samples of every occurrence in order. An occurrence whose type differs
// from the first one's is dropped (its lines would be invalid under the
// first TYPE and Prometheus would reject the whole scrape).
//
// Not thread-safe: one writer per scrape.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "daemon/export/metric_writer.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::exporter {

// A /metrics body: the writer's own text with lines kept elsewhere inserted
// as they are (TextWriter::SharedLines): EngineMetrics keeps the lines of
// its families between scrapes, and a body refers to them instead of
// copying ~90 MB per scrape at 10k stage series. HttpServer sends the parts
// one after the other.
class TextBody {
 public:
  size_t size() const { return size_; }
  // Calls fn(absl::string_view) on the parts of bytes [offset, size()), in
  // order, until fn returns false; returns whether it never did.
  template <typename Fn>
  bool Write(size_t offset, Fn&& fn) const;
  // The body as one string (a copy of the shared lines, if any).
  std::string Flatten() &&;
  // The writer's own text, whose memory the next TextWriter reuses.
  std::string TakeText() && { return std::move(text_); }

 private:
  friend class TextWriter;
  struct Shared {
    size_t at;  // inserted before text_[at]
    std::shared_ptr<const std::string> lines;
  };

  std::string text_;
  std::vector<Shared> shared_;  // by `at`
  size_t size_ = 0;
};

template <typename Fn>
bool TextBody::Write(size_t offset, Fn&& fn) const {
  size_t part_begin = 0;  // in the body
  size_t text_begin = 0;  // in text_
  auto part = [&](absl::string_view bytes) {
    const size_t part_end = part_begin + bytes.size();
    bool ok = true;
    if (part_end > offset && !bytes.empty()) {
      const size_t skip = offset > part_begin ? offset - part_begin : 0;
      ok = fn(bytes.substr(skip));
    }
    part_begin = part_end;
    return ok;
  };
  const absl::string_view text = text_;
  for (const Shared& s : shared_) {
    if (!part(text.substr(text_begin, s.at - text_begin)) || !part(*s.lines)) return false;
    text_begin = s.at;
  }
  return part(text.substr(text_begin));
}

class TextWriter final : public MetricWriter {
 public:
  // Writes into `buffer`, keeping its capacity but not its contents. Pass
  // the previous scrape's string: a scrape of 10k stage series is ~90 MB,
  // and a fresh string grows by copies and page-faults every page in
  // (a third of a scrape's CPU time, bench/scrape_benchmark BM_ScrapeFresh).
  explicit TextWriter(std::string buffer = {});

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

  // Sample lines of the current family rendered earlier (each ending in a
  // newline), copied as they are: EngineMetrics keeps the lines of series
  // that did not change between scrapes (engine_metrics.h).
  void Lines(absl::string_view lines);
  // The same, not copied: FinishBody() refers to `lines`, which must not
  // change while the body lives (Finish() copies them).
  void SharedLines(std::shared_ptr<const std::string> lines);

  // Starts writing samples of `name` without its HELP and TYPE lines: for
  // rendering a family's lines apart from the exposition, to add them to it
  // later with Lines(). Finish() then gives the lines alone.
  void FamilyLines(absl::string_view name, prometheus::MetricType type);

  // Bytes written so far.
  size_t size() const { return end(); }

  // The exposition, families of one name merged (see above).
  std::string Finish() &&;
  // The same, with SharedLines() referred to rather than copied (unless
  // families had to be merged).
  TextBody FinishBody() &&;

 private:
  struct FamilySpan {
    std::string name;
    prometheus::MetricType type;
    size_t begin;  // of the HELP/TYPE lines
    size_t body;   // of the first sample line
    size_t end;
  };

  // A rendered le or quantile: the same few bounds on every line.
  struct RenderedNumber {
    double value = 0;
    std::string text;
  };

  // Lines are written through a pointer into a small staging buffer after
  // one room check per line (appending piece by piece checks and updates a
  // string's size every time), and the staging buffer is copied to `out_`
  // with streaming stores (text_writer.cc StreamCopy). Reserve: room for
  // `bytes` more; Commit: the staged text now ends at `end`.
  char* Reserve(size_t bytes);
  void Commit(const char* end);
  void Flush();
  // Makes out_ at least `needed` bytes long.
  void Grow(size_t needed);
  size_t end() const { return flushed_ + staged_ + shared_bytes_; }
  void CloseFamily();
  // Writes a sample line up to its value (`labels`: rendered label pairs,
  // SeriesLabels::text()) and returns where the value goes; the room
  // reserved holds a value, a timestamp and the newline (EndLine).
  char* Line(absl::string_view suffix, absl::string_view labels, ExtraLabel extra);
  // A timestamp (when not 0) and the newline after the value ending at `p`.
  void EndLine(int64_t timestamp_ms, char* p);
  // `value` rendered, cached at `i` for the next line with the same bound.
  static absl::string_view NumberText(std::vector<RenderedNumber>* cache, size_t i, double value);
  // The _count and _sum lines histograms and summaries share.
  void WriteCountAndSum(absl::string_view labels, uint64_t count, double sum, int64_t timestamp_ms);
  void WriteHistogram(absl::string_view labels, uint64_t count, double sum,
                      absl::Span<const prometheus::ClientMetric::Bucket> buckets,
                      int64_t timestamp_ms);
  void WriteSummary(absl::string_view labels, uint64_t count, double sum,
                    absl::Span<const prometheus::ClientMetric::Quantile> quantiles,
                    int64_t timestamp_ms);

  static constexpr size_t kStageBytes = 64 << 10;  // stays in L2

  std::string out_;  // the text in [0, flushed_), then room
  size_t flushed_ = 0;
  std::vector<TextBody::Shared> shared_;  // SharedLines, at offsets of out_
  size_t shared_bytes_ = 0;
  std::unique_ptr<char[]> stage_;  // the text after flushed_, in [0, staged_)
  size_t stage_size_;
  size_t staged_ = 0;
  std::vector<FamilySpan> families_;
  std::string label_scratch_;                  // AddFamilies: a metric's rendered labels
  std::vector<RenderedNumber> le_text_;        // by bucket
  std::vector<RenderedNumber> quantile_text_;  // by quantile
};

// Appends `value` as a sample value of the text format (see above).
void AppendSampleValue(double value, std::string* out);
// Appends `a="x",b="y"` for `labels`, values escaped; nothing when empty.
void AppendLabelPairs(const Labels& labels, std::string* out);

// The /metrics body of `collectables`, in order: WriterCollectables write
// straight to text, the others go through Collect(). `buffer` as TextWriter.
std::string RenderText(const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables,
                       std::string buffer = {});
// The same as a TextBody: what HttpServer sends (`buffer`: a previous
// body's TakeText()).
TextBody RenderBody(const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables,
                    std::string buffer = {});

}  // namespace kpid::exporter
