// The TLS identity of a listener (`http.tls`, `grpc.tls`): its certificate
// chain, private key and the CAs its clients' certificates must chain to,
// read from the configured PEM files and checked before anything listens.
//
//   absl::StatusOr<std::optional<ServerTls>> tls = LoadServerTls(config, config.grpc_tls,
//                                                                "grpc.tls");
//   if (!tls.ok()) ...  // "/etc/kpid/server.key: grpc.tls.key_file: does not match ..."
//   grpc::SslServerCredentialsOptions options = ...(*tls)->cert_chain_pem ...;
//
// The files are read once; the PEM text kept here is what is served, so a
// file changed after the check cannot slip an unchecked key in.
// Plain data: safe to copy and to share read-only across threads.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/model/config.h"

// OpenSSL's type, forward-declared so that users need not include it.
typedef struct ssl_ctx_st SSL_CTX;

namespace kpid::tls {

struct ServerTls {
  // As opened: relative paths resolved next to the config file.
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: no client certificate asked for

  std::string cert_chain_pem;   // the leaf first, then intermediates
  std::string private_key_pem;  // matches the leaf
  std::string client_ca_pem;    // one or more CA certificates, or empty

  bool requires_client_cert() const { return !client_ca_pem.empty(); }
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

// Makes `ctx` serve `tls`: certificate chain and key, TLS 1.2 at least, and
// with client CAs, a verified client certificate required (the handshake
// fails without one).
absl::Status ConfigureServerContext(const ServerTls& tls, SSL_CTX* ctx);

}  // namespace kpid::tls
