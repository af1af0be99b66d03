#pragma once

// TLS server contexts of one listener: one SSL_CTX per configured certificate, SNI picking among
// them by the names in each certificate, ALPN, protocol versions and cipher defaults.
//
// Threading: built on the main thread, then read-only. OpenSSL's SSL_CTX is safe to share among
// the workers once configured; each connection gets its own SSL.

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"

namespace tessera::proxy {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

class TlsContexts {
 public:
  // Builds every context. Problems (unreadable files, key not matching its certificate) are added
  // to `errors` in FILE:LINE:COL form; the result is then unusable and nullptr is returned.
  // With session resumption on (the default), every context gets the cluster session cache
  // (proxy/tls_session_glue.h) under `session_id_context`, sessions living `lifetime`.
  static std::unique_ptr<TlsContexts> build(
      const conf::Tls& tls, const std::string& file, std::vector<conf::Error>& errors,
      const std::string& session_id_context = "tessera",
      std::chrono::seconds lifetime = std::chrono::seconds(300));

  SSL_CTX* defaultContext() const { return entries_.front().ctx.get(); }
  // The context whose certificate names `server_name` (exact, then wildcard); null if none.
  SSL_CTX* select(std::string_view server_name) const;

  // "name1,name2" of each certificate, for logs.
  std::vector<std::vector<std::string>> names() const;

 private:
  struct Entry {
    SslCtxPtr ctx;
    std::vector<std::string> names;  // lower-case DNS names from SAN (CN if no SAN)
  };
  std::vector<Entry> entries_;
  std::vector<unsigned char> alpn_;  // wire format
  friend int selectAlpn(SSL*, const unsigned char**, unsigned char*, const unsigned char*, unsigned,
                        void*);
};

// Whether a certificate name ("shop.example" or "*.example") covers a host name.
bool tlsNameMatches(std::string_view pattern, std::string_view host);

// The OpenSSL error queue as one line ("" if empty); clears it.
std::string opensslErrors();

}  // namespace tessera::proxy
