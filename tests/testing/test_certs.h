// A throwaway PKI for TLS tests, made with the `openssl` command line tool at
// test time (no key material is checked in): a CA, a server certificate for
// localhost / 127.0.0.1 and a client certificate, both signed by the CA, and
// a second CA with a server certificate of its own (for a rotation to a new
// issuer, or a client that trusts the wrong CA).
//
//   absl::StatusOr<TestCerts> certs = MakeTestCerts(MakeTempDir("tls"));
//   ASSERT_TRUE(certs.ok()) << certs.status();
//   config += "  tls: {cert_file: " + certs->server_cert + ", key_file: " + ...;
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace kpid::testing {

struct TestCerts {
  std::string ca_cert;      // signed server_cert and client_cert
  std::string server_cert;  // CN=localhost, SAN DNS:localhost, IP:127.0.0.1
  std::string server_key;
  std::string client_cert;  // CN=kpid-test-client, for mutual TLS
  std::string client_key;
  std::string other_ca_cert;  // a CA unrelated to the others
  std::string other_ca_key;
  std::string other_server_cert;  // like server_cert, signed by other_ca_cert
  std::string other_server_key;
};

// Writes the files into `dir` (EC P-256 keys, PEM, valid for two days).
absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir);

}  // namespace kpid::testing
