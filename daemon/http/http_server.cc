#include "daemon/http/http_server.h"

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/log.h"
#include "daemon/export/text_writer.h"

namespace kpid::http {

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(Options options) {
  const size_t colon = options.listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(options.listen).substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("http: bad listen address ", options.listen));
  }
  std::string host = options.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";

  std::unique_ptr<tls::IdentityWatcher> identity;
  std::unique_ptr<httplib::Server> listener;
  if (options.tls) {
    identity = std::make_unique<tls::IdentityWatcher>(*options.tls, "http.tls");
    absl::Status setup;
    listener = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
      setup = identity->Install(&ctx);
      return setup.ok();
    });
    if (!listener->is_valid()) {
      return setup.ok() ? absl::InternalError("http: cannot create the TLS context") : setup;
    }
  } else {
    listener = std::make_unique<httplib::Server>();
  }
  std::unique_ptr<HttpServer> server(
      new HttpServer(std::move(options), std::move(identity), std::move(listener)));
  httplib::Server& s = *server->server_;
  HttpServer* self = server.get();
  s.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    // Served from the rendered body itself, part by part (set_content would
    // copy it into one string); its own text goes back to be reused once
    // sent. A known length: httplib then neither chunks nor compresses.
    auto body = std::make_shared<exporter::TextBody>(self->RenderMetrics());
    res.set_content_provider(
        body->size(), "text/plain; version=0.0.4; charset=utf-8",
        [body](size_t offset, size_t, httplib::DataSink& sink) {
          return body->Write(
              offset, [&](absl::string_view part) { return sink.write(part.data(), part.size()); });
        },
        [self, body](bool) { self->RecycleBody(std::move(*body).TakeText()); });
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    const std::string reason =
        self->options_.not_ready_reason ? self->options_.not_ready_reason() : "";
    if (reason.empty()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(absl::StrCat("not ready: ", reason, "\n"), "text/plain");
    }
  });

  if (self->options_.reload) {
    auto reload = [self](const httplib::Request& req, httplib::Response& res) {
      const HttpReply reply = self->options_.reload(req.get_header_value("Authorization"));
      res.status = reply.status;
      if (reply.status == 401) res.set_header("WWW-Authenticate", "Bearer");
      res.set_content(reply.body, "text/plain");
    };
    // `curl -X POST .../-/reload` (Prometheus' own form) sends neither
    // Content-Length nor Transfer-Encoding: a request with an empty body
    // (RFC 9112 6.3), which httplib's routing would refuse with a 400
    // before any handler runs. Pre-routing comes before that body read, and
    // with no body there is nothing left on the connection to read.
    s.set_pre_routing_handler([reload](const httplib::Request& req, httplib::Response& res) {
      if (req.method != "POST" || req.path != "/-/reload" || req.has_header("Content-Length") ||
          req.has_header("Transfer-Encoding")) {
        return httplib::Server::HandlerResponse::Unhandled;
      }
      reload(req, res);
      return httplib::Server::HandlerResponse::Handled;
    });
    s.Post("/-/reload", reload);
    s.Get("/-/reload", [](const httplib::Request&, httplib::Response& res) {
      res.status = 405;
      res.set_header("Allow", "POST");
      res.set_content("method not allowed: use POST /-/reload\n", "text/plain");
    });
  }

  server->port_ = port == 0 ? s.bind_to_any_port(host) : (s.bind_to_port(host, port) ? port : -1);
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("http: cannot listen on ", server->options_.listen,
                                               " (address in use or not local?)"));
  }
  server->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  log::Info("http listening", {{"address", absl::StrCat(host, ":", server->port_)},
                               {"tls", server->options_.tls ? "on" : "off"}});
  return server;
}

HttpServer::HttpServer(Options options, std::unique_ptr<tls::IdentityWatcher> identity,
                       std::unique_ptr<httplib::Server> server)
    : options_(std::move(options)), identity_(std::move(identity)), server_(std::move(server)) {
  // kpid_tls_reloads_total: owned here, which outlives every scrape.
  if (identity_ != nullptr) {
    options_.collectables.push_back(
        std::shared_ptr<prometheus::Collectable>(std::shared_ptr<void>(), identity_.get()));
  }
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

exporter::TextBody HttpServer::RenderMetrics() const {
  std::string buffer;
  {
    MutexLock lock(&spare_mu_);
    buffer.swap(spare_body_);
  }
  return exporter::RenderBody(options_.collectables, std::move(buffer));
}

void HttpServer::RecycleBody(std::string text) const {
  MutexLock lock(&spare_mu_);
  // Two scrapes at once: keep the larger.
  if (text.capacity() > spare_body_.capacity()) spare_body_.swap(text);
}

}  // namespace kpid::http
