#include "daemon/tls/server_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/common/file_util.h"

namespace kpid::tls {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Without a callback OpenSSL would prompt on the terminal for the
// passphrase of an encrypted key; a daemon has nobody to ask.
int NoPassphrase(char*, int, int, void*) { return -1; }

// OpenSSL's reason for the last failure, and the error queue emptied (it is
// per thread, and a stale entry would confuse the next caller).
std::string OpenSslReason() {
  const unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "";
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof(buffer));
  return absl::StrCat(" (", buffer, ")");
}

// Every certificate of a PEM text, in order.
std::vector<X509Ptr> ParseCertificates(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the text reads as an error
  return certs;
}

PkeyPtr ParsePrivateKey(const std::string& pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
}

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view key) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(text.status().message(), " (", key, ")"));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::optional<ServerTls>> LoadServerTls(const model::Config& config,
                                                       const model::TlsConfig& tls,
                                                       absl::string_view what) {
  if (!tls.enabled()) return std::nullopt;
  ServerTls out;
  out.cert_file = model::PathNextToConfig(config, tls.cert_file);
  out.key_file = model::PathNextToConfig(config, tls.key_file);
  const std::string cert_key = absl::StrCat(what, ".cert_file");
  const std::string key_key = absl::StrCat(what, ".key_file");

  absl::StatusOr<std::string> cert_pem = ReadPem(out.cert_file, cert_key);
  if (!cert_pem.ok()) return cert_pem.status();
  const std::vector<X509Ptr> chain = ParseCertificates(*cert_pem);
  if (chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(out.cert_file, ": ", cert_key, ": no PEM certificate in the file"));
  }
  absl::StatusOr<std::string> key_pem = ReadPem(out.key_file, key_key);
  if (!key_pem.ok()) return key_pem.status();
  const PkeyPtr key = ParsePrivateKey(*key_pem);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(out.key_file, ": ", key_key,
                                                   ": no unencrypted PEM private key in the file",
                                                   OpenSslReason()));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(out.key_file, ": ", key_key,
                                                   ": does not match the certificate in ",
                                                   out.cert_file, OpenSslReason()));
  }
  out.cert_chain_pem = *std::move(cert_pem);
  out.private_key_pem = *std::move(key_pem);

  if (!tls.client_ca_file.empty()) {
    out.client_ca_file = model::PathNextToConfig(config, tls.client_ca_file);
    const std::string ca_key = absl::StrCat(what, ".client_ca_file");
    absl::StatusOr<std::string> ca_pem = ReadPem(out.client_ca_file, ca_key);
    if (!ca_pem.ok()) return ca_pem.status();
    if (ParseCertificates(*ca_pem).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(out.client_ca_file, ": ", ca_key, ": no PEM certificate in the file"));
    }
    out.client_ca_pem = *std::move(ca_pem);
  }
  return out;
}

absl::Status ConfigureServerContext(const ServerTls& tls, SSL_CTX* ctx) {
  std::vector<X509Ptr> chain = ParseCertificates(tls.cert_chain_pem);
  const PkeyPtr key = ParsePrivateKey(tls.private_key_pem);
  if (chain.empty() || key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(tls.cert_file, ": unchecked TLS identity"));
  }
  bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
            SSL_CTX_use_certificate(ctx, chain.front().get()) == 1 &&
            SSL_CTX_use_PrivateKey(ctx, key.get()) == 1;
  for (size_t i = 1; ok && i < chain.size(); ++i) {
    // add0: the context takes the reference on success.
    ok = SSL_CTX_add0_chain_cert(ctx, chain[i].get()) == 1;
    if (ok) (void)chain[i].release();
  }
  if (ok && tls.requires_client_cert()) {
    X509_STORE* store = X509_STORE_new();
    ok = store != nullptr;
    for (const X509Ptr& ca : ParseCertificates(tls.client_ca_pem)) {
      // Both take their own reference.
      ok = ok && X509_STORE_add_cert(store, ca.get()) == 1 &&
           SSL_CTX_add_client_CA(ctx, ca.get()) == 1;
    }
    if (ok) {
      SSL_CTX_set_cert_store(ctx, store);  // the context owns the store now
    } else {
      X509_STORE_free(store);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!ok) {
    return absl::InternalError(absl::StrCat(tls.cert_file, ": cannot set up TLS", OpenSslReason()));
  }
  return absl::OkStatus();
}

}  // namespace kpid::tls
