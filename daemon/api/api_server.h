// kpid's gRPC server (DESIGN §5, default :50051): kpid.v1.KpiService,
// grpc.health.v1.Health and server reflection on one port.
//
//   auto server = ApiServer::Start({.listen = config.grpc_listen, .service = service_options,
//                                   .ready = [&] { return ingest->ready(); }});
//   ...
//   (*server)->Stop();
//
// Health: the overall service ("") and "kpid.v1.KpiService" are NOT_SERVING
// until `ready` returns true (partitions assigned, as /readyz), SERVING
// while it does, and NOT_SERVING again when it stops (a rebalance took every
// partition) or the server stops. `ready` is polled every 100 ms on the
// server's own thread.
//
// With options.tls every service on the port is served over TLS only, and
// with a client CA only to clients presenting a certificate it signed; the
// files are re-read every tls.refresh_interval, so new connections get a
// rotated certificate without a restart.
//
// Start and Stop from one thread (main).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/api/kpi_service.h"
#include "daemon/tls/server_tls.h"
#include "grpcpp/server.h"

namespace kpid::api {

class ApiServer {
 public:
  struct Options {
    std::string listen;                 // host:port; port 0 picks a free one
    std::optional<tls::ServerTls> tls;  // unset: plaintext
    KpiService::Options service;
    std::function<bool()> ready;  // empty: always ready
    // Open streams get this long to end when the server stops.
    absl::Duration shutdown_grace = absl::Seconds(2);
  };

  static absl::StatusOr<std::unique_ptr<ApiServer>> Start(Options options);
  ~ApiServer();  // Stop()

  // Idempotent: ends WatchSnapshots streams, then waits for calls in flight
  // (at most shutdown_grace) and stops listening.
  void Stop();

  int port() const { return port_; }
  const KpiService& service() const { return service_; }

 private:
  explicit ApiServer(Options options);
  void WatchReadiness();

  Options options_;
  KpiService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread readiness_thread_;
};

}  // namespace kpid::api
