#include "daemon/tls/server_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/common/file_util.h"
#include "daemon/common/log.h"
#include "daemon/export/metric_builder.h"

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
struct X509StackFree {
  void operator()(STACK_OF(X509) * stack) const { sk_X509_pop_free(stack, X509_free); }
};
struct X509StoreFree {
  void operator()(X509_STORE* store) const { X509_STORE_free(store); }
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

// The paths of `tls`, resolved next to the config.
ServerTls Paths(const model::Config& config, const model::TlsConfig& tls) {
  ServerTls out;
  out.cert_file = model::PathNextToConfig(config, tls.cert_file);
  out.key_file = model::PathNextToConfig(config, tls.key_file);
  out.client_ca_file = model::PathNextToConfig(config, tls.client_ca_file);
  out.refresh_interval = tls.refresh_interval;
  return out;
}

// What changes when a file is rewritten or replaced: "" when one is missing.
std::string FilesStamp(const ServerTls& tls) {
  std::string stamp;
  for (const std::string* path : {&tls.cert_file, &tls.key_file, &tls.client_ca_file}) {
    if (path->empty()) continue;
    struct stat st;
    if (::stat(path->c_str(), &st) != 0) return "";
    absl::StrAppend(&stamp, st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                    st.st_mtim.tv_nsec, ";");
  }
  return stamp;
}

}  // namespace

absl::StatusOr<ServerTls> ReloadServerTls(const ServerTls& paths, absl::string_view what) {
  ServerTls out;
  out.cert_file = paths.cert_file;
  out.key_file = paths.key_file;
  out.client_ca_file = paths.client_ca_file;
  out.refresh_interval = paths.refresh_interval;
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

  if (!out.client_ca_file.empty()) {
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

absl::StatusOr<std::optional<ServerTls>> LoadServerTls(const model::Config& config,
                                                       const model::TlsConfig& tls,
                                                       absl::string_view what) {
  if (!tls.enabled()) return std::nullopt;
  return ReloadServerTls(Paths(config, tls), what);
}

// A checked ServerTls as the objects a handshake hands to OpenSSL.
struct IdentityWatcher::Identity {
  ServerTls source;
  X509Ptr leaf;
  std::unique_ptr<STACK_OF(X509), X509StackFree> chain;  // the intermediates
  PkeyPtr key;
  std::unique_ptr<X509_STORE, X509StoreFree> client_cas;  // null: none asked for

  static absl::StatusOr<std::shared_ptr<const Identity>> Parse(ServerTls tls) {
    auto identity = std::make_shared<Identity>();
    std::vector<X509Ptr> certs = ParseCertificates(tls.cert_chain_pem);
    identity->key = ParsePrivateKey(tls.private_key_pem);
    identity->chain.reset(sk_X509_new_null());
    bool ok = !certs.empty() && identity->key != nullptr && identity->chain != nullptr;
    for (size_t i = 0; ok && i < certs.size(); ++i) {
      if (i == 0) {
        identity->leaf = std::move(certs[0]);
      } else if (sk_X509_push(identity->chain.get(), certs[i].get()) > 0) {
        (void)certs[i].release();  // the stack owns it now
      } else {
        ok = false;
      }
    }
    if (ok && tls.requires_client_cert()) {
      identity->client_cas.reset(X509_STORE_new());
      ok = identity->client_cas != nullptr;
      for (const X509Ptr& ca : ParseCertificates(tls.client_ca_pem)) {
        ok = ok && X509_STORE_add_cert(identity->client_cas.get(), ca.get()) == 1;
      }
    }
    if (!ok) {
      return absl::InternalError(
          absl::StrCat(tls.cert_file, ": cannot set up the TLS identity", OpenSslReason()));
    }
    identity->source = std::move(tls);
    return identity;
  }
};

IdentityWatcher::IdentityWatcher(ServerTls initial, std::string what,
                                 std::function<absl::Time()> now)
    : what_(std::move(what)), now_(std::move(now)) {
  absl::MutexLock lock(&mu_);
  files_stamp_ = FilesStamp(initial);
  next_check_ = now_() + initial.refresh_interval;
  absl::StatusOr<std::shared_ptr<const Identity>> identity = Identity::Parse(std::move(initial));
  // LoadServerTls checked what Parse reads again: a failure is a bug.
  if (!identity.ok()) {
    log::Error("TLS identity unusable", {{"key", what_}, {"error", identity.status().message()}});
    std::abort();
  }
  identity_ = *std::move(identity);
}

IdentityWatcher::~IdentityWatcher() = default;

absl::Status IdentityWatcher::Install(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return absl::InternalError(absl::StrCat(what_, ": cannot set up TLS", OpenSslReason()));
  }
  SSL_CTX_set_cert_cb(ctx, &IdentityWatcher::OnHandshake, this);
  if (Current()->client_cas != nullptr) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return absl::OkStatus();
}

int IdentityWatcher::OnHandshake(SSL* ssl, void* arg) {
  auto* self = static_cast<IdentityWatcher*>(arg);
  self->RefreshIfDue();
  const std::shared_ptr<const Identity> identity = self->Current();
  // Each call takes its own references: the connection keeps its identity
  // however long it lives, whatever the watcher swaps in meanwhile.
  const bool ok = SSL_use_certificate(ssl, identity->leaf.get()) == 1 &&
                  SSL_use_PrivateKey(ssl, identity->key.get()) == 1 &&
                  SSL_set1_chain(ssl, identity->chain.get()) == 1 &&
                  (identity->client_cas == nullptr ||
                   SSL_set1_verify_cert_store(ssl, identity->client_cas.get()) == 1);
  if (!ok) ERR_clear_error();
  return ok ? 1 : 0;  // 0 fails the handshake
}

void IdentityWatcher::RefreshIfDue() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = now_();
  if (now < next_check_) return;
  next_check_ = now + identity_->source.refresh_interval;
  const std::string stamp = FilesStamp(identity_->source);
  if (stamp == files_stamp_) return;
  files_stamp_ = stamp;  // a refused set of files is not retried until it changes again
  absl::StatusOr<ServerTls> loaded = ReloadServerTls(identity_->source, what_);
  absl::StatusOr<std::shared_ptr<const Identity>> identity =
      loaded.ok() ? Identity::Parse(*std::move(loaded)) : loaded.status();
  if (!identity.ok()) {
    reloads_failed_.fetch_add(1, std::memory_order_relaxed);
    log::Warn("TLS files changed but do not load: the previous certificate stays",
              {{"key", what_}, {"error", identity.status().message()}});
    return;
  }
  if ((*identity)->source == identity_->source) return;  // touched, not changed
  identity_ = *std::move(identity);
  reloads_succeeded_.fetch_add(1, std::memory_order_relaxed);
  log::Info("TLS certificate reloaded",
            {{"key", what_}, {"cert_file", identity_->source.cert_file}});
}

ServerTls IdentityWatcher::current() const { return Current()->source; }

std::vector<prometheus::MetricFamily> IdentityWatcher::Collect() const {
  prometheus::MetricFamily f = exporter::Family(
      "kpid_tls_reloads_total",
      "Rotated TLS certificate files of a listener: put in force (success) or refused, the "
      "previous certificate kept (failure).",
      prometheus::MetricType::Counter);
  const std::string listener(absl::StripSuffix(what_, ".tls"));
  exporter::AddCounter(&f, {{"listener", listener}, {"result", "success"}},
                       static_cast<double>(reloads_succeeded()));
  exporter::AddCounter(&f, {{"listener", listener}, {"result", "failure"}},
                       static_cast<double>(reloads_failed()));
  std::vector<prometheus::MetricFamily> families;
  families.push_back(std::move(f));
  return families;
}

std::shared_ptr<const IdentityWatcher::Identity> IdentityWatcher::Current() const {
  absl::MutexLock lock(&mu_);
  return identity_;
}

}  // namespace kpid::tls
