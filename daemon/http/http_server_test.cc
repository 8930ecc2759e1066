#include "daemon/http/http_server.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/export/metric_builder.h"
#include "daemon/export/metric_writer.h"
#include "daemon/export/text_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"

namespace kpid::http {
namespace {

using exporter::Labels;
using exporter::SeriesLabels;
using prometheus::MetricFamily;
using prometheus::MetricType;
using ::testing::HasSubstr;

// Writes `series` samples of kpid_test_value directly (a large body when
// `series` is large: it is served in many socket writes).
class DirectMetrics : public exporter::WriterCollectable {
 public:
  explicit DirectMetrics(int series) : series_(series) {}
  void WriteMetrics(exporter::MetricWriter* out) const override {
    out->Family("kpid_test_value", "A value.", MetricType::Gauge);
    for (int i = 0; i < series_; ++i) {
      out->Sample(SeriesLabels(Labels{{"series", absl::StrCat(i)}}), i + 0.5);
    }
  }

 private:
  int series_;
};

// The same family through plain Collect().
class PlainMetrics : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    MetricFamily f = exporter::Family("kpid_test_value", "A value.", MetricType::Gauge);
    exporter::AddGauge(&f, {{"series", "plain"}}, 7);
    return {f};
  }
};

// Lines kept between scrapes and sent from where they are
// (exporter::TextBody, as EngineMetrics' families), twice, around lines
// written into the body itself.
class SharedLinesMetrics : public exporter::WriterCollectable {
 public:
  explicit SharedLinesMetrics(std::shared_ptr<const std::string> lines)
      : lines_(std::move(lines)) {}
  void WriteMetrics(exporter::MetricWriter* out) const override {
    out->Family("kpid_test_shared", "Kept lines.", MetricType::Gauge);
    auto* text = dynamic_cast<exporter::TextWriter*>(out);
    if (text == nullptr) return;
    text->Sample(SeriesLabels(Labels{{"series", "own1"}}), 1);
    text->SharedLines(lines_);
    text->Sample(SeriesLabels(Labels{{"series", "own2"}}), 2);
    text->SharedLines(lines_);
  }

 private:
  std::shared_ptr<const std::string> lines_;
};

std::unique_ptr<HttpServer> Start(int series,
                                  std::vector<std::shared_ptr<prometheus::Collectable>> more = {}) {
  HttpServer::Options options;
  options.listen = "127.0.0.1:0";
  options.collectables = {std::make_shared<DirectMetrics>(series),
                          std::make_shared<PlainMetrics>()};
  for (auto& c : more) options.collectables.push_back(std::move(c));
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServerTest, MetricsFromDirectAndPlainCollectablesInOneFamily) {
  std::unique_ptr<HttpServer> server = Start(2);
  ASSERT_NE(server, nullptr);
  const testing::HttpResponse response = testing::HttpGet(server->port(), "/metrics");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body,
            "# HELP kpid_test_value A value.\n"
            "# TYPE kpid_test_value gauge\n"
            "kpid_test_value{series=\"0\"} 0.5\n"
            "kpid_test_value{series=\"1\"} 1.5\n"
            "kpid_test_value{series=\"plain\"} 7\n");
}

TEST(HttpServerTest, LargeBodiesWholeAndTheSameOnEveryScrape) {
  // ~100k lines, ~3.4 MB: the body is written to the socket in many pieces,
  // and later scrapes render into the memory of the one before.
  std::unique_ptr<HttpServer> server = Start(100000);
  ASSERT_NE(server, nullptr);
  const std::string expected = server->RenderMetrics().Flatten();
  for (int scrape = 0; scrape < 3; ++scrape) {
    const testing::HttpResponse response = testing::HttpGet(server->port(), "/metrics");
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body.size(), expected.size());
    EXPECT_TRUE(response.body == expected) << "scrape " << scrape;
  }
  EXPECT_THAT(expected, HasSubstr("kpid_test_value{series=\"99999\"} 99999.5\n"));
}

TEST(HttpServerTest, SharedLinesSentInPlaceBetweenOwnLines) {
  // ~1.2 MB of kept lines, sent twice per scrape from the same string.
  auto lines = std::make_shared<std::string>();
  for (int i = 0; i < 50000; ++i) {
    absl::StrAppend(lines.get(), "kpid_test_shared{series=\"", i, "\"} ", i, "\n");
  }
  std::unique_ptr<HttpServer> server = Start(1, {std::make_shared<SharedLinesMetrics>(lines)});
  ASSERT_NE(server, nullptr);
  const std::string expected = absl::StrCat(
      "# HELP kpid_test_value A value.\n"
      "# TYPE kpid_test_value gauge\n"
      "kpid_test_value{series=\"0\"} 0.5\n"
      "kpid_test_value{series=\"plain\"} 7\n"
      "# HELP kpid_test_shared Kept lines.\n"
      "# TYPE kpid_test_shared gauge\n"
      "kpid_test_shared{series=\"own1\"} 1\n",
      *lines, "kpid_test_shared{series=\"own2\"} 2\n", *lines);
  for (int scrape = 0; scrape < 3; ++scrape) {
    const testing::HttpResponse response = testing::HttpGet(server->port(), "/metrics");
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body.size(), expected.size());
    EXPECT_TRUE(response.body == expected) << "scrape " << scrape;
  }
}

}  // namespace
}  // namespace kpid::http
