#pragma once

// The `guard` plugin's key agreement and sealed replies, as pure crypto: no proxy types, no store,
// no clock, no I/O. The browser SDK (plugins/guard/client.js) is the other side of every function
// here, and the two must agree byte for byte:
//
//   POST {prefix}keys carries the client's ephemeral P-256 public key as a JWK; agree() checks it,
//   makes an ephemeral server key and derives
//     Z = ECDH(server private key, client public key): the x coordinate, 32 bytes;
//     K = HKDF-SHA256(IKM = Z, salt = SHA-256(session cookie value, its bytes as sent),
//                     info = "tessera guard v1"): 32 bytes.
//   K is the HMAC-SHA256 key of the client's request signatures (signature.h), and the
//   AES-256-GCM key of the replies sealReply() makes:
//     IV (12 random bytes) || AES-256-GCM(K, content type || "\r\n" || body, AAD = keyid) || tag
//     (16 bytes).
//
// Threads: a GuardCrypto is made once per plugin config and is immutable afterwards; every member
// function is const and may run on any number of threads at once. Each call makes its own OpenSSL
// contexts. The digest, the KDF, the cipher and the P-256 parameters are fetched once, by
// create(): sealReply(), openReply(), sha256() and randomToken() take no OpenSSL lock. agree()
// still makes OpenSSL look up its ECDH exchange and HKDF's digest per call (OpenSSL 3.0 offers no
// way to hand either over pre-fetched); it runs once per key agreement, not per request.
//
// Errors: no exceptions. A failure is an empty string or nullopt, and leaves the calling thread's
// OpenSSL error queue empty (the proxy's I/O paths read it with SSL_get_error). Bad client input
// is expected: nothing here logs it.
//
// Key material: K is returned to the caller, who stores it and clears its copies
// (OPENSSL_cleanse) when done. The transient copies made here (Z, K, the ephemeral private key)
// are cleared before each call returns. Nothing here logs or prints key bytes.

#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace tessera::plugins::guard {

inline constexpr std::string_view kGuardHkdfInfo = "tessera guard v1";
// A P-256 coordinate, the ECDH secret Z and K.
inline constexpr size_t kP256CoordinateBytes = 32;
inline constexpr size_t kGuardKeyBytes = 32;
inline constexpr size_t kSealIvBytes = 12;
inline constexpr size_t kSealTagBytes = 16;
// The bound of randomToken().
inline constexpr size_t kMaxTokenBytes = 256;

class GuardCrypto {
 public:
  // nullptr, and `error` set (when not null) to a message naming what is missing with OpenSSL's
  // reasons, if the provider configuration lacks SHA2-256, HKDF, AES-256-GCM, ECDH or P-256 keys.
  // For the plugin's factory: a config is refused at load rather than every request later.
  static std::unique_ptr<GuardCrypto> create(std::string* error);
  ~GuardCrypto();

  GuardCrypto(const GuardCrypto&) = delete;
  GuardCrypto& operator=(const GuardCrypto&) = delete;

  struct Agreement {
    std::string key;       // K: kGuardKeyBytes raw bytes, secret
    std::string server_x;  // the server's public key, as its JWK members: base64url without
    std::string server_y;  // padding of the 32-byte big-endian coordinates (zero-padded left)
  };

  // The agreement for a client's public key, given as its JWK members x and y, and the session
  // cookie's value, as the client read it (its bytes, nothing decoded). nullopt when the client
  // key is refused: a coordinate that is not base64url without padding (RFC 7515, 2) of exactly
  // 32 bytes, or a non-canonical one (unused low bits set), a coordinate not below the field
  // prime, a point not on the curve; the caller answers 400. Also nullopt, rarely, when OpenSSL
  // fails (out of memory); the two are not told apart, as neither leaves anything to retry.
  // `session_cookie_value` is not checked: the caller refuses a request without the cookie first.
  std::optional<Agreement> agree(std::string_view client_x, std::string_view client_y,
                                 std::string_view session_cookie_value) const;

  // The reply body for `content_type` and `body` under K = `key` (kGuardKeyBytes) and `keyid` (the
  // additional data), with a fresh random IV: two seals of one body differ. Empty (never a valid
  // reply) when `key` has the wrong size, `content_type` holds CR or LF (the client splits at the
  // first CRLF), or OpenSSL or the random generator fails.
  std::string sealReply(std::string_view key, std::string_view keyid, std::string_view content_type,
                        std::string_view body) const;

  // The inverse of sealReply(), as the SDK's unseal() does it: {content type, body}. nullopt for a
  // key of the wrong size, a reply shorter than IV and tag, any byte changed, another key or
  // keyid, or a plaintext without CRLF. The tag check is OpenSSL's (constant time). For tests and
  // tools: the proxy only seals.
  std::optional<std::pair<std::string, std::string>> openReply(std::string_view key,
                                                               std::string_view keyid,
                                                               std::string_view sealed) const;

  // `bytes` random bytes (RAND_bytes) as base64url without padding: ceil(4 * bytes / 3)
  // characters of [A-Za-z0-9_-]. For keyids. Empty when `bytes` is 0 or over kMaxTokenBytes, or
  // when the random generator fails.
  std::string randomToken(size_t bytes) const;

  // SHA-256 of `data`: 32 raw bytes. Empty if OpenSSL fails.
  std::string sha256(std::string_view data) const;

  // For tests only: agree() with a given server key instead of a fresh one, so that a vector
  // computed elsewhere can be checked. The key is given as its JWK members d, x and y; nullopt
  // when any is malformed, or x and y are not d's public key (EVP_PKEY_pairwise_check).
  struct ServerKeyForTesting {
    std::string_view d;
    std::string_view x;
    std::string_view y;
  };
  std::optional<Agreement> agreeWithServerKeyForTesting(
      const ServerKeyForTesting& server, std::string_view client_x, std::string_view client_y,
      std::string_view session_cookie_value) const;

 private:
  struct EvpMdFree {
    void operator()(EVP_MD* md) const;
  };
  struct EvpKdfFree {
    void operator()(EVP_KDF* kdf) const;
  };
  struct EvpCipherFree {
    void operator()(EVP_CIPHER* cipher) const;
  };
  struct EvpPkeyFree {
    void operator()(EVP_PKEY* pkey) const;
  };
  using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;

  GuardCrypto() = default;

  EvpPkeyPtr importPublicKey(std::string_view x, std::string_view y) const;
  EvpPkeyPtr importKeyPair(const ServerKeyForTesting& server) const;
  EvpPkeyPtr generateKey() const;
  bool deriveKey(EVP_PKEY* server, EVP_PKEY* client, std::string_view session_cookie_value,
                 unsigned char* key) const;
  std::optional<Agreement> agreeWith(EVP_PKEY* server, EVP_PKEY* client,
                                     std::string_view session_cookie_value) const;

  std::unique_ptr<EVP_MD, EvpMdFree> sha256_;
  std::unique_ptr<EVP_KDF, EvpKdfFree> hkdf_;
  std::unique_ptr<EVP_CIPHER, EvpCipherFree> aes_gcm_;
  // The P-256 group alone, no key: the template every key is made from, so that making one
  // reuses its key management rather than looking it up again.
  EvpPkeyPtr p256_;
};

}  // namespace tessera::plugins::guard
