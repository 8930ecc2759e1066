#include "tests/testing/test_certs.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

absl::Status Run(const std::vector<std::string>& argv) {
  std::string output;
  if (RunCommand(argv, &output) != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), " failed:\n", output));
  }
  return absl::OkStatus();
}

// A new EC key and a certificate request for it.
absl::Status NewKeyAndRequest(const std::string& key, const std::string& csr,
                              const std::string& subject) {
  return Run({OPENSSL_BINARY, "req", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj",
              subject});
}

absl::Status SelfSignedCa(const std::string& key, const std::string& cert,
                          const std::string& subject) {
  return Run({OPENSSL_BINARY,
              "req",
              "-x509",
              "-newkey",
              "ec",
              "-pkeyopt",
              "ec_paramgen_curve:prime256v1",
              "-nodes",
              "-keyout",
              key,
              "-out",
              cert,
              "-days",
              "2",
              "-subj",
              subject,
              "-addext",
              "basicConstraints=critical,CA:TRUE",
              "-addext",
              "keyUsage=critical,keyCertSign,cRLSign"});
}

// Signs `csr` with the CA whose files are `ca`.crt and `ca`.key.
absl::Status SignWithCa(const std::string& ca, const std::string& csr, const std::string& cert,
                        const std::string& extensions) {
  const std::string ext_file = absl::StrCat(cert, ".ext");
  WriteFileOrDie(ext_file, extensions);
  return Run({OPENSSL_BINARY, "x509", "-req", "-in", csr, "-CA", absl::StrCat(ca, ".crt"), "-CAkey",
              absl::StrCat(ca, ".key"), "-CAcreateserial", "-out", cert, "-days", "2", "-extfile",
              ext_file});
}

constexpr char kServerExtensions[] =
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "extendedKeyUsage=serverAuth\n";

}  // namespace

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir) {
  TestCerts certs{
      .ca_cert = absl::StrCat(dir, "/ca.crt"),
      .server_cert = absl::StrCat(dir, "/server.crt"),
      .server_key = absl::StrCat(dir, "/server.key"),
      .client_cert = absl::StrCat(dir, "/client.crt"),
      .client_key = absl::StrCat(dir, "/client.key"),
      .other_ca_cert = absl::StrCat(dir, "/other-ca.crt"),
      .other_ca_key = absl::StrCat(dir, "/other-ca.key"),
      .other_server_cert = absl::StrCat(dir, "/other-server.crt"),
      .other_server_key = absl::StrCat(dir, "/other-server.key"),
  };
  const std::string ca = absl::StrCat(dir, "/ca");
  const std::string other_ca = absl::StrCat(dir, "/other-ca");
  for (absl::Status s : {
           SelfSignedCa(absl::StrCat(ca, ".key"), certs.ca_cert, "/CN=kpid-test-ca"),
           SelfSignedCa(certs.other_ca_key, certs.other_ca_cert, "/CN=kpid-test-other-ca"),
           NewKeyAndRequest(certs.server_key, absl::StrCat(dir, "/server.csr"), "/CN=localhost"),
           SignWithCa(ca, absl::StrCat(dir, "/server.csr"), certs.server_cert, kServerExtensions),
           NewKeyAndRequest(certs.client_key, absl::StrCat(dir, "/client.csr"),
                            "/CN=kpid-test-client"),
           SignWithCa(ca, absl::StrCat(dir, "/client.csr"), certs.client_cert,
                      "extendedKeyUsage=clientAuth\n"),
           NewKeyAndRequest(certs.other_server_key, absl::StrCat(dir, "/other-server.csr"),
                            "/CN=localhost"),
           SignWithCa(other_ca, absl::StrCat(dir, "/other-server.csr"), certs.other_server_cert,
                      kServerExtensions),
       }) {
    if (!s.ok()) return s;
  }
  return certs;
}

}  // namespace kpid::testing
