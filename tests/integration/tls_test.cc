// TLS on both listeners (issue 7): a real kpid serving /metrics over HTTPS
// and the gRPC API over TLS, with certificates made by the openssl tool at
// test time. Checks what an operator relies on: clients that trust the CA
// get in, plaintext and untrusted clients do not, mutual TLS turns away a
// client without a certificate from the CA, kpictl's --tls-* flags work, a
// rotated certificate is served without a restart, and a key that does not
// match its certificate stops kpid at the start.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "kpid/v1/kpi_service.grpc.pb.h"
#include "tests/testing/process.h"
#include "tests/testing/test_certs.h"

namespace kpid::testing {
namespace {

using ::testing::HasSubstr;

// $HTTP_TLS and $GRPC_TLS are each a `tls:` flow mapping, or "null".
// Certificate paths are relative: next to the config file.
constexpr char kConfig[] = R"(
kafka: {brokers: embedded, topic: events, group_id: tls, partitions: 1}
http: {listen: "127.0.0.1:$HTTP", tls: $HTTP_TLS}
grpc: {listen: "127.0.0.1:$GRPC", tls: $GRPC_TLS}
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}]
)";
constexpr char kServerTls[] = "{cert_file: server.crt, key_file: server.key}";
constexpr char kMutualTls[] =
    "{cert_file: server.crt, key_file: server.key, client_ca_file: ca.crt}";

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("tls_test");
    absl::StatusOr<TestCerts> certs = MakeTestCerts(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
    http_port_ = FreePort();
    grpc_port_ = FreePort();
  }

  void TearDown() override {
    if (kpid_ == nullptr) return;
    kpid_->Signal(SIGTERM);
    EXPECT_EQ(kpid_->Wait(absl::Seconds(10)), 0);
  }

  std::string WriteConfig(const std::string& http_tls, const std::string& grpc_tls) {
    const std::string path = dir_ + "/kpid.yaml";
    WriteFileOrDie(path, absl::StrReplaceAll(kConfig, {{"$HTTP", absl::StrCat(http_port_)},
                                                       {"$GRPC", absl::StrCat(grpc_port_)},
                                                       {"$HTTP_TLS", http_tls},
                                                       {"$GRPC_TLS", grpc_tls}}));
    return path;
  }

  // Starts kpid and waits until /healthz answers over HTTPS (as a client
  // with the CA and the client certificate, which any server config accepts).
  void StartKpid(const std::string& http_tls, const std::string& grpc_tls) {
    const std::string config = WriteConfig(http_tls, grpc_tls);
    kpid_ = std::make_unique<Subprocess>(std::vector<std::string>{KPID_BINARY, "--config", config},
                                         dir_ + "/kpid.log");
    ASSERT_TRUE(
        WaitFor([&] { return HttpsGet(http_port_, "/healthz", MutualClient()).status == 200; },
                absl::Seconds(20)))
        << ReadFileOrEmpty(dir_ + "/kpid.log");
  }

  // A client without a certificate of its own.
  static TlsClientFiles Trusting(const std::string& ca) {
    return {.ca_cert = ca, .client_cert = "", .client_key = ""};
  }
  TlsClientFiles CaOnly() const { return Trusting(certs_.ca_cert); }
  TlsClientFiles MutualClient() const {
    return {.ca_cert = certs_.ca_cert,
            .client_cert = certs_.client_cert,
            .client_key = certs_.client_key};
  }

  std::string GrpcAddr() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

  // GetSnapshot for every process over `credentials`; on success the
  // snapshot must hold the one configured process.
  grpc::Status GetSnapshot(const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
    auto stub = v1::KpiService::NewStub(grpc::CreateChannel(GrpcAddr(), credentials));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::Snapshot snapshot;
    const grpc::Status status = stub->GetSnapshot(&context, v1::GetSnapshotRequest(), &snapshot);
    if (status.ok()) {
      EXPECT_EQ(snapshot.processes_size(), 1);
    }
    return status;
  }

  grpc::SslCredentialsOptions Pem(const TlsClientFiles& files) const {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadFileOrEmpty(files.ca_cert);
    if (!files.client_cert.empty()) {
      options.pem_cert_chain = ReadFileOrEmpty(files.client_cert);
      options.pem_private_key = ReadFileOrEmpty(files.client_key);
    }
    return options;
  }

  int Kpictl(const std::vector<std::string>& tls_flags, std::string* out) {
    std::vector<std::string> argv = {KPICTL_BINARY, "snapshot", "--addr",   GrpcAddr(),
                                     "--format",    "csv",      "--window", "1h"};
    argv.insert(argv.end(), tls_flags.begin(), tls_flags.end());
    return RunCommand(argv, out, absl::Seconds(30));
  }

  std::string dir_;
  TestCerts certs_;
  int http_port_ = 0;
  int grpc_port_ = 0;
  std::unique_ptr<Subprocess> kpid_;
};

TEST_F(TlsTest, ServerTlsOnBothListeners) {
  StartKpid(kServerTls, kServerTls);

  // HTTPS with the CA: the exposition, as over plain HTTP.
  const HttpResponse metrics = HttpsGet(http_port_, "/metrics", CaOnly());
  EXPECT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr("kpid_build_info"));
  // Plain HTTP to the TLS port gets no HTTP answer.
  EXPECT_EQ(HttpGet(http_port_, "/metrics").status, 0);
  // A client that does not trust the issuer refuses the server.
  EXPECT_EQ(HttpsGet(http_port_, "/metrics", Trusting(certs_.other_ca_cert)).status, 0);

  // gRPC over TLS with the CA works; plaintext and untrusting clients fail.
  const grpc::Status tls = GetSnapshot(grpc::SslCredentials(Pem(CaOnly())));
  EXPECT_TRUE(tls.ok()) << tls.error_message();
  EXPECT_EQ(GetSnapshot(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(GetSnapshot(grpc::SslCredentials(Pem(Trusting(certs_.other_ca_cert)))).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  std::string out;
  EXPECT_EQ(Kpictl({"--tls-ca", certs_.ca_cert}, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("sales"));
  // The certificate names localhost and 127.0.0.1, not kpid.example.
  EXPECT_EQ(Kpictl({"--tls-ca", certs_.ca_cert, "--tls-server-name", "kpid.example"}, &out), 1)
      << out;
  EXPECT_EQ(Kpictl({"--tls-ca", certs_.ca_cert, "--tls-server-name", "localhost"}, &out), 0) << out;
  EXPECT_EQ(Kpictl({}, &out), 1) << out;  // plaintext
}

TEST_F(TlsTest, MutualTlsWantsAClientCertificateFromTheCa) {
  StartKpid(kMutualTls, kMutualTls);

  EXPECT_EQ(HttpsGet(http_port_, "/metrics", MutualClient()).status, 200);
  EXPECT_EQ(HttpsGet(http_port_, "/metrics", CaOnly()).status, 0);
  // A certificate, but from a CA kpid does not trust.
  EXPECT_EQ(HttpsGet(http_port_, "/metrics",
                     {.ca_cert = certs_.ca_cert,
                      .client_cert = certs_.other_ca_cert,
                      .client_key = certs_.other_ca_key})
                .status,
            0);

  const grpc::Status mutual = GetSnapshot(grpc::SslCredentials(Pem(MutualClient())));
  EXPECT_TRUE(mutual.ok()) << mutual.error_message();
  EXPECT_EQ(GetSnapshot(grpc::SslCredentials(Pem(CaOnly()))).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  std::string out;
  EXPECT_EQ(Kpictl({"--tls-ca", certs_.ca_cert}, &out), 1) << out;
  EXPECT_EQ(Kpictl({"--tls-ca", certs_.ca_cert, "--tls-cert", certs_.client_cert, "--tls-key",
                    certs_.client_key},
                   &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("sales"));
}

// Certificate rotation without a restart, the way a Kubernetes Secret
// volume does it: the files live in a directory reached through a symlink,
// and an update points the symlink at a new directory in one rename. Here
// the new certificate comes from another CA, so which one a client gets is
// plain: a client trusting only the new CA gets in once kpid serves it.
TEST_F(TlsTest, RotatedCertificateIsServedWithoutRestart) {
  const auto install = [&](const std::string& name, const std::string& cert,
                           const std::string& key) {
    ASSERT_EQ(::mkdir((dir_ + "/" + name).c_str(), 0755), 0);
    WriteFileOrDie(dir_ + "/" + name + "/tls.crt", ReadFileOrEmpty(cert));
    WriteFileOrDie(dir_ + "/" + name + "/tls.key", ReadFileOrEmpty(key));
    ASSERT_EQ(::symlink(name.c_str(), (dir_ + "/live.new").c_str()), 0);
    ASSERT_EQ(std::rename((dir_ + "/live.new").c_str(), (dir_ + "/live").c_str()), 0);
  };
  install("first", certs_.server_cert, certs_.server_key);
  constexpr char kLive[] =
      "{cert_file: live/tls.crt, key_file: live/tls.key, refresh_interval: 1s}";
  StartKpid(kLive, kLive);
  const TlsClientFiles trusts_new_ca = Trusting(certs_.other_ca_cert);
  EXPECT_EQ(HttpsGet(http_port_, "/metrics", trusts_new_ca).status, 0);
  EXPECT_FALSE(GetSnapshot(grpc::SslCredentials(Pem(trusts_new_ca))).ok());

  install("second", certs_.other_server_cert, certs_.other_server_key);
  // Checked every second; new connections get the new certificate.
  EXPECT_TRUE(WaitFor([&] { return HttpsGet(http_port_, "/metrics", trusts_new_ca).status == 200; },
                      absl::Seconds(10)))
      << ReadFileOrEmpty(dir_ + "/kpid.log");
  EXPECT_TRUE(WaitFor([&] { return GetSnapshot(grpc::SslCredentials(Pem(trusts_new_ca))).ok(); },
                      absl::Seconds(10)))
      << ReadFileOrEmpty(dir_ + "/kpid.log");
  EXPECT_EQ(HttpsGet(http_port_, "/metrics", CaOnly()).status, 0);
  EXPECT_FALSE(GetSnapshot(grpc::SslCredentials(Pem(CaOnly()))).ok());
}

TEST_F(TlsTest, PlainHttpBesideGrpcTls) {
  // Each listener has its own section: TLS on one does not imply the other.
  const std::string config = WriteConfig("null", kServerTls);
  kpid_ = std::make_unique<Subprocess>(std::vector<std::string>{KPID_BINARY, "--config", config},
                                       dir_ + "/kpid.log");
  ASSERT_TRUE(
      WaitFor([&] { return HttpGet(http_port_, "/healthz").status == 200; }, absl::Seconds(20)))
      << ReadFileOrEmpty(dir_ + "/kpid.log");
  const grpc::Status tls = GetSnapshot(grpc::SslCredentials(Pem(CaOnly())));
  EXPECT_TRUE(tls.ok()) << tls.error_message();
}

TEST_F(TlsTest, KeyThatDoesNotMatchStopsTheStart) {
  const std::string config =
      WriteConfig(kServerTls, "{cert_file: server.crt, key_file: client.key}");
  const std::string expected =
      absl::StrCat(dir_, "/client.key: grpc.tls.key_file: does not match the certificate in ", dir_,
                   "/server.crt");
  std::string out;
  EXPECT_EQ(RunCommand({KPID_BINARY, "--config", config}, &out, absl::Seconds(20)), 1);
  EXPECT_THAT(out, HasSubstr(expected));
  EXPECT_EQ(RunCommand({KPID_BINARY, "check-config", config}, &out), 1);
  EXPECT_THAT(out, HasSubstr(expected));
}

}  // namespace
}  // namespace kpid::testing
