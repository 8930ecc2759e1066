#include "daemon/tls/server_tls.h"

#include <openssl/ssl.h>

#include <cstdio>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/test_certs.h"

namespace kpid::tls {
namespace {

using ::kpid::testing::ReadFileOrEmpty;
using ::kpid::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// One throwaway PKI for the suite (the openssl tool takes a while); tests
// write only files of their own names beside it.
class ServerTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (shared_certs_ != nullptr) return;  // IdentityWatcherTest shares them too
    shared_dir_ = new std::string(kpid::testing::MakeTempDir("server_tls"));
    absl::StatusOr<kpid::testing::TestCerts> certs = kpid::testing::MakeTestCerts(*shared_dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    shared_certs_ = new kpid::testing::TestCerts(*std::move(certs));
  }

  void SetUp() override {
    ASSERT_NE(shared_certs_, nullptr);
    dir_ = *shared_dir_;
    certs_ = *shared_certs_;
    config_.source_path = dir_ + "/kpid.yaml";
  }

  absl::StatusOr<std::optional<ServerTls>> Load(std::string cert, std::string key,
                                                std::string client_ca = "") {
    return LoadServerTls(config_,
                         {.cert_file = std::move(cert),
                          .key_file = std::move(key),
                          .client_ca_file = std::move(client_ca)},
                         "grpc.tls");
  }

  static std::string* shared_dir_;
  static kpid::testing::TestCerts* shared_certs_;
  std::string dir_;
  kpid::testing::TestCerts certs_;
  model::Config config_;
};

std::string* ServerTlsTest::shared_dir_ = nullptr;
kpid::testing::TestCerts* ServerTlsTest::shared_certs_ = nullptr;

TEST_F(ServerTlsTest, NotEnabledIsNoIdentity) {
  absl::StatusOr<std::optional<ServerTls>> tls = Load("", "");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_FALSE(tls->has_value());
}

TEST_F(ServerTlsTest, RelativePathsAreNextToTheConfig) {
  absl::StatusOr<std::optional<ServerTls>> tls = Load("server.crt", "server.key", "ca.crt");
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_TRUE(tls->has_value());
  const ServerTls& identity = **tls;
  EXPECT_EQ(identity.cert_file, certs_.server_cert);
  EXPECT_EQ(identity.key_file, certs_.server_key);
  EXPECT_EQ(identity.client_ca_file, certs_.ca_cert);
  EXPECT_EQ(identity.cert_chain_pem, ReadFileOrEmpty(certs_.server_cert));
  EXPECT_EQ(identity.private_key_pem, ReadFileOrEmpty(certs_.server_key));
  EXPECT_EQ(identity.client_ca_pem, ReadFileOrEmpty(certs_.ca_cert));
  EXPECT_TRUE(identity.requires_client_cert());
}

TEST_F(ServerTlsTest, WithoutClientCaNoClientCertificateIsAskedFor) {
  absl::StatusOr<std::optional<ServerTls>> tls = Load(certs_.server_cert, certs_.server_key);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_FALSE((*tls)->requires_client_cert());
}

TEST_F(ServerTlsTest, MissingFileIsNamed) {
  absl::StatusOr<std::optional<ServerTls>> tls = Load("nope.crt", "server.key");
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(std::string(tls.status().message()),
              ::testing::Eq(
                  dir_ + "/nope.crt: cannot open: No such file or directory (grpc.tls.cert_file)"));
  tls = Load("server.crt", "nope.key");
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(
      std::string(tls.status().message()),
      StartsWith(dir_ + "/nope.key: cannot open: No such file or directory (grpc.tls.key_file)"));
  tls = Load("server.crt", "server.key", "no.crt");
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(
      std::string(tls.status().message()),
      StartsWith(dir_ +
                 "/no.crt: cannot open: No such file or directory (grpc.tls.client_ca_file)"));
}

TEST_F(ServerTlsTest, FilesThatAreNotPemAreNamed) {
  WriteFileOrDie(dir_ + "/garbage.pem", "not a certificate\n");
  absl::StatusOr<std::optional<ServerTls>> tls = Load("garbage.pem", "server.key");
  ASSERT_FALSE(tls.ok());
  EXPECT_EQ(std::string(tls.status().message()),
            dir_ + "/garbage.pem: grpc.tls.cert_file: no PEM certificate in the file");
  // A certificate where the key should be.
  tls = Load("server.crt", "server.crt");
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(std::string(tls.status().message()),
              StartsWith(dir_ + "/server.crt: grpc.tls.key_file: no unencrypted PEM private key"));
  tls = Load("server.crt", "server.key", "garbage.pem");
  ASSERT_FALSE(tls.ok());
  EXPECT_EQ(std::string(tls.status().message()),
            dir_ + "/garbage.pem: grpc.tls.client_ca_file: no PEM certificate in the file");
}

TEST_F(ServerTlsTest, KeyOfAnotherCertificateIsRefused) {
  absl::StatusOr<std::optional<ServerTls>> tls = Load("server.crt", "client.key");
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(
      std::string(tls.status().message()),
      StartsWith(dir_ + "/client.key: grpc.tls.key_file: does not match the certificate in " +
                 dir_ + "/server.crt"));
}

TEST_F(ServerTlsTest, EncryptedKeyIsRefusedWithoutPrompting) {
  std::string output;
  ASSERT_EQ(
      kpid::testing::RunCommand({OPENSSL_BINARY, "pkey", "-in", certs_.server_key, "-out",
                                 dir_ + "/encrypted.key", "-aes256", "-passout", "pass:secret"},
                                &output),
      0)
      << output;
  absl::StatusOr<std::optional<ServerTls>> tls = Load("server.crt", "encrypted.key");
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(std::string(tls.status().message()),
              HasSubstr("grpc.tls.key_file: no unencrypted PEM"));
}

TEST_F(ServerTlsTest, WatcherSetsUpAServerContext) {
  absl::StatusOr<std::optional<ServerTls>> tls = Load("server.crt", "server.key", "ca.crt");
  ASSERT_TRUE(tls.ok()) << tls.status();
  IdentityWatcher watcher(**tls, "http.tls");
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(ctx, nullptr);
  EXPECT_TRUE(watcher.Install(ctx).ok());
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
  SSL_CTX_free(ctx);
}

// Rotation on a fake clock: files are looked at only once refresh_interval
// (1m) has passed since the last look.
class IdentityWatcherTest : public ServerTlsTest {
 protected:
  void SetUp() override {
    ServerTlsTest::SetUp();
    // Served from copies, which the tests rewrite.
    WriteFileOrDie(dir_ + "/served.crt", ReadFileOrEmpty(certs_.server_cert));
    WriteFileOrDie(dir_ + "/served.key", ReadFileOrEmpty(certs_.server_key));
    absl::StatusOr<std::optional<ServerTls>> tls = Load("served.crt", "served.key");
    ASSERT_TRUE(tls.ok()) << tls.status();
    watcher_ = std::make_unique<IdentityWatcher>(**tls, "http.tls", [this] { return now_; });
  }

  // Replaces a served file the way Kubernetes and cert-manager do: a new
  // file renamed over the old one.
  void Replace(const std::string& name, const std::string& contents) {
    WriteFileOrDie(dir_ + "/" + name + ".new", contents);
    ASSERT_EQ(std::rename((dir_ + "/" + name + ".new").c_str(), (dir_ + "/" + name).c_str()), 0);
  }

  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  std::unique_ptr<IdentityWatcher> watcher_;
};

TEST_F(IdentityWatcherTest, ServesRotatedFilesOnceTheIntervalPassed) {
  const std::string old_cert = ReadFileOrEmpty(certs_.server_cert);
  const std::string new_cert = ReadFileOrEmpty(certs_.other_server_cert);
  Replace("served.key", ReadFileOrEmpty(certs_.other_server_key));
  Replace("served.crt", new_cert);
  now_ += absl::Seconds(59);
  watcher_->RefreshIfDue();
  EXPECT_EQ(watcher_->current().cert_chain_pem, old_cert);  // not looked at yet
  now_ += absl::Seconds(1);
  watcher_->RefreshIfDue();
  EXPECT_EQ(watcher_->current().cert_chain_pem, new_cert);
  EXPECT_EQ(watcher_->current().private_key_pem, ReadFileOrEmpty(certs_.other_server_key));
  EXPECT_EQ(watcher_->reloads_succeeded(), 1u);
  EXPECT_EQ(watcher_->reloads_failed(), 0u);
}

TEST_F(IdentityWatcherTest, FilesThatDoNotLoadLeaveThePreviousIdentity) {
  const std::string old_cert = ReadFileOrEmpty(certs_.server_cert);
  // Half a rotation: the new certificate beside the old key.
  Replace("served.crt", ReadFileOrEmpty(certs_.other_server_cert));
  now_ += absl::Minutes(1);
  watcher_->RefreshIfDue();
  EXPECT_EQ(watcher_->current().cert_chain_pem, old_cert);
  EXPECT_EQ(watcher_->reloads_failed(), 1u);
  // Not retried while the files stay as they are.
  now_ += absl::Minutes(1);
  watcher_->RefreshIfDue();
  EXPECT_EQ(watcher_->reloads_failed(), 1u);
  // The rest of it, a check later: now the pair loads.
  Replace("served.key", ReadFileOrEmpty(certs_.other_server_key));
  now_ += absl::Minutes(1);
  watcher_->RefreshIfDue();
  EXPECT_EQ(watcher_->current().cert_chain_pem, ReadFileOrEmpty(certs_.other_server_cert));
  // As scraped: one failure, then one success, of the http listener.
  const std::vector<prometheus::MetricFamily> families = watcher_->Collect();
  ASSERT_EQ(families.size(), 1u);
  EXPECT_EQ(families[0].name, "kpid_tls_reloads_total");
  ASSERT_EQ(families[0].metric.size(), 2u);
  for (const prometheus::ClientMetric& m : families[0].metric) {
    ASSERT_EQ(m.label.size(), 2u);
    EXPECT_EQ(m.label[0].value, "http");
    EXPECT_EQ(m.counter.value, 1) << m.label[1].value;
  }
}

TEST_F(IdentityWatcherTest, MissingFilesLeaveThePreviousIdentity) {
  const std::string old_cert = ReadFileOrEmpty(certs_.server_cert);
  ASSERT_EQ(std::remove((dir_ + "/served.key").c_str()), 0);
  now_ += absl::Minutes(1);
  watcher_->RefreshIfDue();
  EXPECT_EQ(watcher_->current().cert_chain_pem, old_cert);
}

}  // namespace
}  // namespace kpid::tls
