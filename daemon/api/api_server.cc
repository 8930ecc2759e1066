#include "daemon/api/api_server.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/server_builder.h"

namespace kpid::api {
namespace {

constexpr const char kServiceName[] = "kpid.v1.KpiService";

void SetServing(grpc::Server* server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus(kServiceName, serving);
}

// gRPC's file-watching provider re-reads the files every refresh_interval
// and serves a rotated certificate to new connections, as the HTTP listener
// does (tls::IdentityWatcher). The files were checked by LoadServerTls.
std::shared_ptr<grpc::ServerCredentials> Credentials(const std::optional<tls::ServerTls>& tls) {
  if (!tls) return grpc::InsecureServerCredentials();
  const auto refresh_seconds = static_cast<unsigned int>(
      absl::ToInt64Seconds(absl::Ceil(tls->refresh_interval, absl::Seconds(1))));
  auto files = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls->key_file, tls->cert_file, tls->client_ca_file, refresh_seconds);
  grpc::experimental::TlsServerCredentialsOptions options(files);
  options.watch_identity_key_cert_pairs();
  if (tls->requires_client_cert()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace

ApiServer::ApiServer(Options options) : options_(std::move(options)), service_(options_.service) {}

absl::StatusOr<std::unique_ptr<ApiServer>> ApiServer::Start(Options options) {
  // Process-wide switches; they only take effect for servers built after them.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<ApiServer> server(new ApiServer(std::move(options)));
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default: a second kpid on the same port would
  // start and silently take half the calls. Fail like the HTTP listener does.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(server->options_.listen, Credentials(server->options_.tls),
                           &server->port_);
  builder.RegisterService(&server->service_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("grpc: cannot listen on ", server->options_.listen));
  }
  SetServing(server->server_.get(), false);
  server->readiness_thread_ = std::thread([s = server.get()] { s->WatchReadiness(); });
  log::Info("grpc server listening", {{"listen", server->options_.listen},
                                      {"port", absl::StrCat(server->port_)},
                                      {"tls", server->options_.tls ? "on" : "off"}});
  return server;
}

ApiServer::~ApiServer() { Stop(); }

void ApiServer::WatchReadiness() {
  bool serving = false;
  while (!stop_.load(std::memory_order_acquire)) {
    const bool ready = !options_.ready || options_.ready();
    if (ready != serving) {
      SetServing(server_.get(), ready);
      serving = ready;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

void ApiServer::Stop() {
  if (stop_.exchange(true, std::memory_order_acq_rel)) return;
  if (readiness_thread_.joinable()) readiness_thread_.join();
  service_.Shutdown();
  if (server_ != nullptr) {
    SetServing(server_.get(), false);
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(options_.shutdown_grace));
    server_->Wait();
  }
}

}  // namespace kpid::api
