#include "daemon/export/text_writer.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "daemon/export/metric_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/testing/process.h"

namespace kpid::exporter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string Value(double v) {
  std::string out;
  AppendSampleValue(v, &out);
  return out;
}

TEST(AppendSampleValueTest, SpellsSpecialValuesAsPrometheus) {
  EXPECT_EQ(Value(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(Value(kInf), "+Inf");
  EXPECT_EQ(Value(-kInf), "-Inf");
}

TEST(AppendSampleValueTest, IntegersAsIntegers) {
  EXPECT_EQ(Value(0), "0");
  EXPECT_EQ(Value(42), "42");
  EXPECT_EQ(Value(-7), "-7");
  EXPECT_EQ(Value(2592000), "2592000");
  EXPECT_EQ(Value(9007199254740992.0), "9007199254740992");  // 2^53
}

TEST(AppendSampleValueTest, ShortestFormThatReadsBackTheSameDouble) {
  EXPECT_EQ(Value(0.5), "0.5");
  EXPECT_EQ(Value(0.1), "0.1");
  // 0.1 + 0.2 is not 0.3; 16 significant digits (prometheus-cpp 1.0) would
  // print "0.3".
  EXPECT_EQ(Value(0.1 + 0.2), "0.30000000000000004");
  const double values[] = {1.0 / 3,
                           1e-20,
                           2.5e-5,
                           1e300,
                           123456789012345678.0,
                           -1.0 / 7,
                           -0.0,
                           5e-324,
                           1e100,
                           9007199254740994.0,
                           1234.5678,
                           3.14159265358979,
                           std::numeric_limits<double>::max()};
  for (double v : values) {
    const std::string text = Value(v);
    char* end = nullptr;
    const double back = std::strtod(text.c_str(), &end);
    EXPECT_EQ(*end, '\0') << text;
    EXPECT_EQ(std::memcmp(&back, &v, sizeof v), 0) << text << " for " << v;
  }
}

TEST(AppendLabelPairsTest, EscapesBackslashQuoteAndNewline) {
  std::string out;
  AppendLabelPairs({{"a", "x"}, {"b", "say \"hi\"\\\nbye"}}, &out);
  EXPECT_EQ(out, R"(a="x",b="say \"hi\"\\\nbye")");
}

TEST(SeriesLabelsTest, RendersOnceAndExtends) {
  const SeriesLabels labels(Labels{{"process", "p"}});
  EXPECT_EQ(labels.text(), R"(process="p")");
  const SeriesLabels more = labels.With("stage", "a\"b");
  EXPECT_EQ(more.text(), R"(process="p",stage="a\"b")");
  EXPECT_EQ(more.labels().size(), 2u);
  EXPECT_EQ(SeriesLabels().text(), "");
}

TEST(TextWriterTest, WritesEachKindOfSample) {
  TextWriter out;
  const SeriesLabels labels(Labels{{"process", "p"}});
  out.Family("c_total", "A counter.", MetricType::Counter);
  out.Sample(labels, 3);
  out.Sample(SeriesLabels(), 4);
  out.Sample(labels, {"outcome", "fallout"}, 1);
  out.Sample(SeriesLabels(), {"outcome", "advanced"}, 2);
  out.Family("h_seconds", "Help with \\ and\nnewline.", MetricType::Histogram);
  out.Histogram(labels, 3, 0.25, std::vector<ClientMetric::Bucket>{{1, 60}, {2, 300}});
  out.Family("s_seconds", "", MetricType::Summary);
  out.Summary(labels, 2, 1.5, std::vector<ClientMetric::Quantile>{{0.5, 0.5}, {0.99, 1}});
  EXPECT_EQ(std::move(out).Finish(),
            "# HELP c_total A counter.\n"
            "# TYPE c_total counter\n"
            "c_total{process=\"p\"} 3\n"
            "c_total 4\n"
            "c_total{process=\"p\",outcome=\"fallout\"} 1\n"
            "c_total{outcome=\"advanced\"} 2\n"
            "# HELP h_seconds Help with \\\\ and\\nnewline.\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_count{process=\"p\"} 3\n"
            "h_seconds_sum{process=\"p\"} 0.25\n"
            "h_seconds_bucket{process=\"p\",le=\"60\"} 1\n"
            "h_seconds_bucket{process=\"p\",le=\"300\"} 2\n"
            "h_seconds_bucket{process=\"p\",le=\"+Inf\"} 3\n"
            "# TYPE s_seconds summary\n"
            "s_seconds_count{process=\"p\"} 2\n"
            "s_seconds_sum{process=\"p\"} 1.5\n"
            "s_seconds{process=\"p\",quantile=\"0.5\"} 0.5\n"
            "s_seconds{process=\"p\",quantile=\"0.99\"} 1\n");
}

// The writer stages lines in a 64 KB buffer before copying them into the
// body: a line longer than that, and lines across many stagings, must come
// out whole and in order.
TEST(TextWriterTest, LinesLongerThanItsStagingAndManyStagings) {
  const std::string long_value = std::string(100000, 'a') + "\"";
  TextWriter out;
  out.Family("x", "", MetricType::Gauge);
  out.Sample(SeriesLabels(Labels{{"v", long_value}}), 1);
  const SeriesLabels short_labels(Labels{{"i", "k"}});
  for (int i = 0; i < 20000; ++i) out.Sample(short_labels, i);

  // The long value's '"' escaped as \"; then 20000 lines of ~13 bytes,
  // ~260 KB: four stagings.
  std::string expected = "# TYPE x gauge\nx{v=\"" + std::string(100000, 'a') + "\\\"\"} 1\n";
  for (int i = 0; i < 20000; ++i) expected += "x{i=\"k\"} " + std::to_string(i) + "\n";
  EXPECT_EQ(std::move(out).Finish(), expected);
}

TEST(TextWriterTest, ReusesTheBufferButNotItsContents) {
  std::string buffer(1 << 16, 'x');
  const size_t capacity = buffer.capacity();
  TextWriter out(std::move(buffer));
  out.Family("g", "", MetricType::Gauge);
  out.Sample(SeriesLabels(), 1);
  const std::string text = std::move(out).Finish();
  EXPECT_EQ(text, "# TYPE g gauge\ng 1\n");
  EXPECT_GE(text.capacity(), capacity);
}

// Families as plain collectables give them: every kind, labels that need
// escaping, a timestamp, a histogram without its +Inf bucket.
std::vector<MetricFamily> SampleFamilies() {
  std::vector<MetricFamily> families;
  MetricFamily counter = Family("events_total", "Events.", MetricType::Counter);
  AddCounter(&counter, {{"reason", "bad \"quote\""}, {"path", "C:\\x\ny"}}, 7);
  AddCounter(&counter, {}, 12345678);
  counter.metric.back().timestamp_ms = 1700000000123;
  families.push_back(counter);
  MetricFamily gauge = Family("lag", "Lag.", MetricType::Gauge);
  AddGauge(&gauge, {{"partition", "3"}}, 0.5);
  families.push_back(gauge);
  MetricFamily untyped = Family("u", "Untyped.", MetricType::Untyped);
  untyped.metric.emplace_back().untyped.value = 2;
  families.push_back(untyped);
  MetricFamily histogram = Family("lat_seconds", "Latency.", MetricType::Histogram);
  ClientMetric& h = histogram.metric.emplace_back();
  h.label = {{"stage", "a"}};
  h.histogram.sample_count = 4;
  h.histogram.sample_sum = 90;
  h.histogram.bucket = {{1, 1}, {3, 60}};
  families.push_back(histogram);
  MetricFamily summary = Family("q_seconds", "Quantiles.", MetricType::Summary);
  ClientMetric& s = summary.metric.emplace_back();
  s.summary.sample_count = 2;
  s.summary.sample_sum = 3;
  s.summary.quantile = {{0.5, 1}, {0.9, 2}};
  families.push_back(summary);
  return families;
}

TEST(TextWriterTest, PlainFamiliesAsTextSerializerWritesThem) {
  // With values prometheus-cpp prints exactly (integers, halves), the text
  // is the library's byte for byte.
  TextWriter out;
  out.AddFamilies(SampleFamilies());
  EXPECT_EQ(std::move(out).Finish(), prometheus::TextSerializer().Serialize(SampleFamilies()));
}

class FakeCollectable : public prometheus::Collectable {
 public:
  explicit FakeCollectable(std::vector<MetricFamily> families) : families_(std::move(families)) {}
  std::vector<MetricFamily> Collect() const override { return families_; }

 private:
  std::vector<MetricFamily> families_;
};

class FakeWriterCollectable : public WriterCollectable {
 public:
  void WriteMetrics(MetricWriter* out) const override {
    ++writes;
    out->Family("lag", "Lag.", MetricType::Gauge);
    out->Sample(SeriesLabels(Labels{{"partition", "9"}}), 4);
  }
  mutable int writes = 0;
};

TEST(RenderTextTest, MergesFamiliesOfOneNameAcrossCollectables) {
  auto writer = std::make_shared<FakeWriterCollectable>();
  MetricFamily conflicting = Family("lag", "Other.", MetricType::Counter);
  AddCounter(&conflicting, {{"partition", "1"}}, 1);
  const std::string text =
      RenderText({std::make_shared<FakeCollectable>(SampleFamilies()), writer,
                  std::make_shared<FakeCollectable>(std::vector<MetricFamily>{conflicting})});
  EXPECT_EQ(writer->writes, 1);  // written directly
  // One HELP/TYPE for `lag`; its samples from both gauge collectables
  // together; the counter named `lag` dropped.
  EXPECT_THAT(text, HasSubstr("# HELP lag Lag.\n# TYPE lag gauge\nlag{partition=\"3\"} 0.5\n"
                              "lag{partition=\"9\"} 4\n# HELP u "));
  EXPECT_EQ(text.find("# TYPE lag"), text.rfind("# TYPE lag"));
  EXPECT_EQ(text.find("partition=\"1\""), std::string::npos);
  // Everything else as it was.
  const testing::MetricSamples samples = testing::ParseMetrics(text);
  // events 2, lag 2, u 1, lat_seconds 5 (count, sum, le 1, 60, +Inf), q_seconds 4.
  EXPECT_EQ(samples.size(), 14u);
}

}  // namespace
}  // namespace kpid::exporter
