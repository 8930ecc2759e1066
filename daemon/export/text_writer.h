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
  size_t end() const { return flushed_ + staged_; }
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
  std::vector<char> stage_;  // the text after flushed_, in [0, staged_)
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

}  // namespace kpid::exporter
