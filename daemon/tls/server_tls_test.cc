#include "daemon/tls/server_tls.h"

#include <openssl/ssl.h>

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

class ServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = kpid::testing::MakeTempDir("server_tls");
    absl::StatusOr<kpid::testing::TestCerts> certs = kpid::testing::MakeTestCerts(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
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

  std::string dir_;
  kpid::testing::TestCerts certs_;
  model::Config config_;
};

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

TEST_F(ServerTlsTest, ConfiguresAServerContext) {
  absl::StatusOr<std::optional<ServerTls>> tls = Load("server.crt", "server.key", "ca.crt");
  ASSERT_TRUE(tls.ok()) << tls.status();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ASSERT_NE(ctx, nullptr);
  EXPECT_TRUE(ConfigureServerContext(**tls, ctx).ok());
  EXPECT_EQ(SSL_CTX_check_private_key(ctx), 1);
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
  SSL_CTX_free(ctx);
}

}  // namespace
}  // namespace kpid::tls
