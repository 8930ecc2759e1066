#include "daemon/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
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

// One connection to 127.0.0.1:`port` that sends requests as written (so
// headers httplib's client would add are absent) and reads responses whole.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ =
        fd_ >= 0 && connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() {
    if (fd_ >= 0) close(fd_);
  }

  // The next response (status line to the end of its Content-Length body),
  // or what arrived before the connection closed.
  std::string Exchange(const std::string& request) {
    if (!connected_ || send(fd_, request.data(), request.size(), MSG_NOSIGNAL) !=
                           static_cast<ssize_t>(request.size())) {
      return "";
    }
    std::string received;
    char buffer[4096];
    while (true) {
      const size_t head_end = received.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        const size_t length_at = received.find("Content-Length: ");
        const size_t body_length =
            length_at < head_end ? std::stoul(received.substr(length_at + 16)) : 0;
        if (received.size() >= head_end + 4 + body_length) return received;
      }
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return received;
      received.append(buffer, n);
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

struct ReloadServer {
  std::unique_ptr<HttpServer> server;
  std::shared_ptr<std::atomic<int>> reloads = std::make_shared<std::atomic<int>>(0);
};

ReloadServer StartWithReload() {
  ReloadServer r;
  HttpServer::Options options;
  options.listen = "127.0.0.1:0";
  options.reload = [reloads = r.reloads](const std::string& authorization) {
    reloads->fetch_add(1);
    return HttpReply{200, absl::StrCat("reloaded as '", authorization, "'\n")};
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  if (server.ok()) r.server = std::move(*server);
  return r;
}

TEST(HttpServerTest, ReloadByPostWithoutContentLength) {
  // `curl -X POST http://host/-/reload`: no Content-Length, no body; the
  // connection stays usable.
  ReloadServer r = StartWithReload();
  ASSERT_NE(r.server, nullptr);
  RawConnection connection(r.server->port());
  const std::string response = connection.Exchange(
      "POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200 ")) << response;
  EXPECT_THAT(response, HasSubstr("reloaded as 'Bearer t'"));
  EXPECT_EQ(r.reloads->load(), 1);
  EXPECT_TRUE(absl::EndsWith(
      connection.Exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), "ok\n"));
}

TEST(HttpServerTest, ReloadWithABodyReadsItBeforeTheNextRequest) {
  // The body of a request must not be taken for the next one on the
  // connection, whether its length is given or it is chunked.
  ReloadServer r = StartWithReload();
  ASSERT_NE(r.server, nullptr);
  for (const std::string framing : {"Content-Length: 4\r\n\r\nabcd",
                                    "Transfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"}) {
    RawConnection connection(r.server->port());
    const std::string response = connection.Exchange(
        absl::StrCat("POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1\r\n", framing));
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200 ")) << response;
    EXPECT_THAT(response, HasSubstr("reloaded as ''"));
    const std::string next =
        connection.Exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    EXPECT_TRUE(absl::StartsWith(next, "HTTP/1.1 200 ")) << next;
    EXPECT_TRUE(absl::EndsWith(next, "\r\n\r\nok\n")) << next;
  }
  EXPECT_EQ(r.reloads->load(), 2);
}

TEST(HttpServerTest, ReloadByGetIsRefused) {
  ReloadServer r = StartWithReload();
  ASSERT_NE(r.server, nullptr);
  const testing::HttpResponse response = testing::HttpGet(r.server->port(), "/-/reload");
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(r.reloads->load(), 0);
}

}  // namespace
}  // namespace kpid::http
