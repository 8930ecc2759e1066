// kpid's HTTP endpoint: /metrics (Prometheus text format), /healthz, /readyz,
// and POST /-/reload when a reload handler is given.
//
//   HttpServer::Options options{.listen = "0.0.0.0:9464", .ready = [&] { ... }};
//   options.collectables.push_back(std::make_shared<BuildInfo>());
//   auto server = HttpServer::Start(std::move(options));   // binds or fails now
//   int port = (*server)->port();                           // the bound port (listen :0)
//
// With options.tls the listener speaks HTTPS only (and with a client CA,
// only to clients presenting a certificate it signed), and serves rotated
// certificate files from new connections (tls::IdentityWatcher).
//
// Requests are served on cpp-httplib's thread pool; collectables must be
// safe to call from any thread and must not block event processing.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "daemon/common/mutex.h"
#include "daemon/export/text_writer.h"
#include "daemon/tls/server_tls.h"
#include "prometheus/collectable.h"

namespace httplib {
class Server;
}

namespace kpid::http {

// An answer computed outside the HTTP layer (text/plain).
struct HttpReply {
  int status = 200;
  std::string body;
};

class HttpServer {
 public:
  struct Options {
    std::string listen;                 // host:port; port 0 picks a free one
    std::optional<tls::ServerTls> tls;  // unset: plain HTTP
    // /readyz: empty string when ready, else why not (returned with a 503).
    std::function<std::string()> not_ready_reason;
    std::vector<std::shared_ptr<prometheus::Collectable>> collectables;
    // POST /-/reload, given the request's Authorization header (GET answers
    // 405). Unset: no such route.
    std::function<HttpReply(const std::string& authorization)> reload;
  };

  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(Options options);
  ~HttpServer();  // Stop()

  void Stop();
  int port() const { return port_; }

  // The /metrics body (exporter::RenderBody): collectables that are
  // exporter::WriterCollectables write the text directly; families of the
  // same name from several collectables come out once.
  exporter::TextBody RenderMetrics() const;

 private:
  // Hands a sent body's own text back for the next render to write into.
  void RecycleBody(std::string text) const;

  HttpServer(Options options, std::unique_ptr<tls::IdentityWatcher> identity,
             std::unique_ptr<httplib::Server> server);

  Options options_;
  // With options.tls; the server's TLS context points at it, so it goes last.
  std::unique_ptr<tls::IdentityWatcher> identity_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  // A sent /metrics body's own text, whose memory the next render reuses:
  // bodies can be large and a fresh one costs its growth and a page fault
  // per page (see exporter::TextWriter). Costs that much memory between
  // scrapes. (EngineMetrics' lines, most of a large body, are not in it:
  // the body refers to them, see exporter::TextBody.) A kpid::Mutex, which
  // ThreadSanitizer sees: the text moves from the thread that sent it to the
  // one that renders next (metrics_scrape_stress_test).
  mutable Mutex spare_mu_;
  mutable std::string spare_body_ ABSL_GUARDED_BY(spare_mu_);
};

}  // namespace kpid::http
