#pragma once

// Owning handles for what cjose hands out, shared by the plugins that use JOSE (jwt, migration):
// each object freed with its own release function, decrypted bytes wiped before cjose's allocator
// gets them back, and OpenSSL's error queue cleared where cjose leaves it filled.

#include <cjose/cjose.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace tessera::plugins {

struct JwsRelease {
  void operator()(cjose_jws_t* jws) const { cjose_jws_release(jws); }
};
struct JweRelease {
  void operator()(cjose_jwe_t* jwe) const { cjose_jwe_release(jwe); }
};
struct JwkRelease {
  void operator()(cjose_jwk_t* jwk) const { cjose_jwk_release(jwk); }
};
struct HeaderRelease {
  void operator()(cjose_header_t* header) const { cjose_header_release(header); }
};
// Buffers that cjose allocates for the caller.
struct CjoseFree {
  void operator()(void* data) const { cjose_get_dealloc()(data); }
};
using JwsPtr = std::unique_ptr<cjose_jws_t, JwsRelease>;
using JwePtr = std::unique_ptr<cjose_jwe_t, JweRelease>;
using JwkPtr = std::unique_ptr<cjose_jwk_t, JwkRelease>;
using HeaderPtr = std::unique_ptr<cjose_header_t, HeaderRelease>;
using CjoseText = std::unique_ptr<char, CjoseFree>;

// Bytes cjose decrypted: secret, so wiped before cjose's allocator gets them back.
class Plaintext {
 public:
  Plaintext(uint8_t* data, size_t size) : data_(data), size_(size) {}
  Plaintext(const Plaintext&) = delete;
  Plaintext& operator=(const Plaintext&) = delete;
  ~Plaintext() {
    if (data_ == nullptr) return;
    OPENSSL_cleanse(data_, size_);
    cjose_get_dealloc()(data_);
  }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(data_), data_ == nullptr ? 0 : size_};
  }

 private:
  uint8_t* data_;
  size_t size_;
};

// Returns `value` after clearing OpenSSL's error queue: cjose leaves it filled when a step fails,
// and a stale entry would be misread by the next SSL_get_error() on the worker thread.
template <typename T>
T cleared(T value) {
  ERR_clear_error();
  return value;
}

}  // namespace tessera::plugins
