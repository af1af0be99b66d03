#include "proxy/tls_context.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include "proxy/tls_session_glue.h"

namespace tessera::proxy {

namespace {

// Mozilla "intermediate" TLS 1.2 suites: forward secret AEADs only. TLS 1.3 keeps OpenSSL's
// defaults, which are all AEADs.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

std::string lowerCase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::vector<std::string> certificateNames(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = gn->d.dNSName;
    names.push_back(lowerCase(std::string(reinterpret_cast<const char*>(s->data), s->length)));
  }
  GENERAL_NAMES_free(sans);
  if (names.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) >
        0) {
      names.push_back(lowerCase(cn));
    }
  }
  return names;
}

int onServerName(SSL* ssl, int* alert, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  auto* contexts = static_cast<TlsContexts*>(arg);
  SSL_CTX* ctx = contexts->select(name);
  if (ctx != nullptr && ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  // An unknown name gets the default certificate, as nginx and HAProxy do.
  return SSL_TLSEXT_ERR_OK;
}

std::vector<unsigned char> alpnWire(const std::vector<std::string>& protos) {
  std::vector<unsigned char> wire;
  for (const std::string& p : protos) {
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

conf::Error certError(const conf::Certificate& c, const std::string& file,
                      const std::string& what) {
  return conf::Error{file, c.mark, c.key_path, what};
}

}  // namespace

int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned inlen, void* arg) {
  auto* contexts = static_cast<TlsContexts*>(arg);
  unsigned char* chosen = nullptr;
  int rc = SSL_select_next_proto(&chosen, outlen, contexts->alpn_.data(),
                                 static_cast<unsigned>(contexts->alpn_.size()), in, inlen);
  if (rc != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;  // no overlap: go on without ALPN
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

std::string opensslErrors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool tlsNameMatches(std::string_view pattern, std::string_view host) {
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    size_t dot = host.find('.');
    return dot != std::string_view::npos && dot > 0 && host.substr(dot) == pattern.substr(1);
  }
  return pattern == host;
}

SSL_CTX* TlsContexts::select(std::string_view server_name) const {
  std::string host = lowerCase(std::string(server_name));
  for (const Entry& e : entries_) {
    for (const std::string& n : e.names) {
      if (n == host) return e.ctx.get();
    }
  }
  for (const Entry& e : entries_) {
    for (const std::string& n : e.names) {
      if (tlsNameMatches(n, host)) return e.ctx.get();
    }
  }
  return nullptr;
}

std::vector<std::vector<std::string>> TlsContexts::names() const {
  std::vector<std::vector<std::string>> out;
  for (const Entry& e : entries_) out.push_back(e.names);
  return out;
}

namespace {

SslCtxPtr newServerContext(const conf::Tls& tls) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return ctx;
  SSL_CTX_set_min_proto_version(
      ctx.get(), tls.min_version == conf::TlsVersion::k1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                     SSL_OP_CIPHER_SERVER_PREFERENCE |
                                     // A client that closes without close_notify (most do) is an
                                     // ordinary end of stream (SSL_ERROR_ZERO_RETURN), not a fatal
                                     // error that poisons its session.
                                     SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers);
  SSL_CTX_set1_groups_list(ctx.get(), "X25519:P-256:P-384");
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read whole socket buffers rather than a record header then its body: one read(2) instead of
  // two per request. The connection checks SSL_has_pending() so buffered records are not missed.
  SSL_CTX_set_read_ahead(ctx.get(), 1);
  if (!tls.session_resumption) {
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
  }
  return ctx;
}

// Asks every client for a certificate that chains to `ca_file`, without requiring one: the
// verify callback lets the handshake finish either way, and SSL_get_verify_result() later tells a
// plugin whether a trusted certificate came (a bad one then gets a clear HTTP answer rather than a
// bare TLS alert).
bool requestClientCertificates(SSL_CTX* ctx, const std::string& ca_file) {
  if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) return false;
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca_file.c_str());
  if (names == nullptr) return false;
  SSL_CTX_set_client_CA_list(ctx, names);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  return true;
}

}  // namespace

std::unique_ptr<TlsContexts> TlsContexts::build(const conf::Tls& tls, const std::string& file,
                                                std::vector<conf::Error>& errors,
                                                const std::string& session_id_context,
                                                std::chrono::seconds lifetime) {
  auto out = std::unique_ptr<TlsContexts>(new TlsContexts());
  out->alpn_ = alpnWire(tls.alpn);
  size_t before = errors.size();
  for (const conf::Certificate& c : tls.certificates) {
    SslCtxPtr ctx = newServerContext(tls);
    if (!ctx) {
      errors.push_back(certError(c, file, "cannot create TLS context: " + opensslErrors()));
      continue;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.cert.c_str()) != 1) {
      errors.push_back(
          certError(c, file, "cannot load certificate " + c.cert + ": " + opensslErrors()));
      continue;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      errors.push_back(certError(c, file, "cannot load key " + c.key + ": " + opensslErrors()));
      continue;
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      errors.push_back(certError(c, file, "key " + c.key + " does not match " + c.cert));
      ERR_clear_error();
      continue;
    }
    if (!tls.client_ca.empty() && !requestClientCertificates(ctx.get(), tls.client_ca)) {
      errors.push_back(
          certError(c, file, "cannot load client_ca " + tls.client_ca + ": " + opensslErrors()));
      continue;
    }
    if (tls.session_resumption) {
      TlsSessionGlue::configureContext(ctx.get(), session_id_context, lifetime);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx.get(), onServerName);
    SSL_CTX_set_tlsext_servername_arg(ctx.get(), out.get());
    SSL_CTX_set_alpn_select_cb(ctx.get(), selectAlpn, out.get());
    std::vector<std::string> names = certificateNames(SSL_CTX_get0_certificate(ctx.get()));
    out->entries_.push_back(Entry{std::move(ctx), std::move(names)});
  }
  if (errors.size() != before || out->entries_.empty()) return nullptr;
  return out;
}

}  // namespace tessera::proxy
