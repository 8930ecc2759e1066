// The TLS identity of a listener (`http.tls`, `grpc.tls`): its certificate
// chain, private key and the CAs its clients' certificates must chain to,
// read from the configured PEM files and checked before anything listens,
// then kept current while kpid runs (certificate rotation without restart).
//
//   absl::StatusOr<std::optional<ServerTls>> tls = LoadServerTls(config, config.http_tls,
//                                                                "http.tls");
//   if (!tls.ok()) ...  // "/etc/kpid/server.key: http.tls.key_file: does not match ..."
//   IdentityWatcher watcher(**tls, "http.tls");
//   watcher.Install(ssl_ctx);  // every handshake presents the current identity
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/model/config.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

// OpenSSL's types, forward-declared so that users need not include it.
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace kpid::tls {

// What a listener's files held when read. Plain data.
struct ServerTls {
  // As opened: relative paths resolved next to the config file.
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: no client certificate asked for
  absl::Duration refresh_interval = absl::Minutes(1);

  std::string cert_chain_pem;   // the leaf first, then intermediates
  std::string private_key_pem;  // matches the leaf
  std::string client_ca_pem;    // one or more CA certificates, or empty

  bool requires_client_cert() const { return !client_ca_file.empty(); }
  bool operator==(const ServerTls&) const = default;
};

// Reads and checks the files `tls` names: each must be readable PEM, the
// certificate file must hold at least one certificate, the key must be an
// unencrypted private key matching the first certificate, and the client
// CA file, when set, at least one certificate. nullopt when `tls` is not
// enabled. Errors name the file and the key: "path: what.key_file: reason".
absl::StatusOr<std::optional<ServerTls>> LoadServerTls(const model::Config& config,
                                                       const model::TlsConfig& tls,
                                                       absl::string_view what);

// The same checks on the files `tls` names again (its paths as they are).
absl::StatusOr<ServerTls> ReloadServerTls(const ServerTls& tls, absl::string_view what);

// Presents a listener's current identity to OpenSSL, and picks up rotated
// files: at most once per refresh_interval, a handshake first checks whether
// the files changed (size, modification time, inode: a Kubernetes secret
// update swaps a symlink) and if so reads and checks them again; new
// handshakes then get the new certificate (and client CAs). Files that do
// not load are logged and the previous identity stays, so a half-written
// rotation never takes the listener down. Connections already open keep
// the identity they started with.
//
// kpid_tls_reloads_total{listener,result="success|failure"} (Collect):
// rotated files put in force, and changed files refused (the previous
// identity kept: alert on failure before the old certificate expires).
// listener is `what` without ".tls" ("http").
//
// Thread-safe: handshakes run on any thread; each takes a short lock.
class IdentityWatcher : public prometheus::Collectable {
 public:
  IdentityWatcher(
      ServerTls initial, std::string what,
      std::function<absl::Time()> now = [] { return absl::Now(); });
  ~IdentityWatcher() override;
  IdentityWatcher(const IdentityWatcher&) = delete;
  IdentityWatcher& operator=(const IdentityWatcher&) = delete;

  // Makes every handshake on `ctx` present the current identity, at TLS 1.2
  // or later, and with client CAs require a client certificate they signed.
  // `ctx` must not outlive this.
  absl::Status Install(SSL_CTX* ctx);

  // Re-reads the files if refresh_interval has passed since the last check
  // and they changed. Handshakes call it; public for tests.
  void RefreshIfDue();

  // What handshakes present now.
  ServerTls current() const;

  uint64_t reloads_succeeded() const { return reloads_succeeded_.load(std::memory_order_relaxed); }
  uint64_t reloads_failed() const { return reloads_failed_.load(std::memory_order_relaxed); }
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Identity;  // parsed OpenSSL objects (server_tls.cc)

  static int OnHandshake(SSL* ssl, void* self);
  std::shared_ptr<const Identity> Current() const;

  const std::string what_;
  const std::function<absl::Time()> now_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const Identity> identity_ ABSL_GUARDED_BY(mu_);
  std::string files_stamp_ ABSL_GUARDED_BY(mu_);  // of the files last read or refused
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> reloads_succeeded_{0};
  std::atomic<uint64_t> reloads_failed_{0};
};

}  // namespace kpid::tls
