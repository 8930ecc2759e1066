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

absl::Status SignWithCa(const std::string& dir, const std::string& csr, const std::string& cert,
                        const std::string& extensions) {
  const std::string ext_file = absl::StrCat(cert, ".ext");
  WriteFileOrDie(ext_file, extensions);
  return Run({OPENSSL_BINARY, "x509", "-req", "-in", csr, "-CA", absl::StrCat(dir, "/ca.crt"),
              "-CAkey", absl::StrCat(dir, "/ca.key"), "-CAcreateserial", "-out", cert, "-days", "2",
              "-extfile", ext_file});
}

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
  };
  for (absl::Status s : {
           SelfSignedCa(absl::StrCat(dir, "/ca.key"), certs.ca_cert, "/CN=kpid-test-ca"),
           SelfSignedCa(certs.other_ca_key, certs.other_ca_cert, "/CN=kpid-test-other-ca"),
           NewKeyAndRequest(certs.server_key, absl::StrCat(dir, "/server.csr"), "/CN=localhost"),
           SignWithCa(dir, absl::StrCat(dir, "/server.csr"), certs.server_cert,
                      "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                      "extendedKeyUsage=serverAuth\n"),
           NewKeyAndRequest(certs.client_key, absl::StrCat(dir, "/client.csr"),
                            "/CN=kpid-test-client"),
           SignWithCa(dir, absl::StrCat(dir, "/client.csr"), certs.client_cert,
                      "extendedKeyUsage=clientAuth\n"),
       }) {
    if (!s.ok()) return s;
  }
  return certs;
}

}  // namespace kpid::testing
