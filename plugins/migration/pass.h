#pragma once

// The migration pass: a single-use credential that the origin issues and later redeems itself. It
// names a user, the origin session it was cut from and the device it was issued to. Only the
// origin can make one (signed with its signing key) and only the origin can read one (encrypted to
// its own encryption key): the client that carries it learns nothing from it.
//
// Format: a nested JWT (RFC 7519, 5.2) in compact serialization, at most kMaxPassBytes.
//   inner  JWS, alg ES256 with the origin's EC P-256 signing key, header
//          {"alg":"ES256","typ":"JWT"}, payload {"sub": user, "sid": session reference,
//          "dev": device, "jti", "iat", "exp"} (times in Unix seconds).
//   outer  JWE to the origin's encryption key: alg ECDH-ES (EC P-256) or RSA-OAEP (RSA of 2048 bits
//          or more), enc A256GCM; the protected header also carries "cty":"JWT" and the inner jti.
//
// The jti is in the outer header so that the pass can be marked used in the store (an atomic add)
// before any private-key work: peekJti needs no key. GCM authenticates that header, but anyone
// holding the public half of the encryption key can make a GCM key of their own, so the header jti
// is believed only when the signed inner jti says the same (open checks it).
//
// Threads: a PassCodec does not change after fromJwks/fromFiles returns it, and issue, open and
// peekJti may run on any number of threads at once on one codec. cjose only reads the two keys: an
// ECDSA signature, an ECDH agreement and RSA-OAEP on a shared OpenSSL key are safe concurrently
// (RSA blinding takes the key's own lock), and every other cjose object (headers, JWS, JWE) is
// made and released within one call.

#include <cjose/jwk.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "plugins/cjose_handles.h"

namespace tessera::plugins::migration {

// Far above a real pass (under 1 KiB with typical claims, either key type), and it bounds what an
// unauthenticated client can make the origin parse.
inline constexpr size_t kMaxPassBytes = 8 * 1024;
// How far ahead of the opener's clock a pass's iat may be: the clocks of the origin's nodes drift.
inline constexpr int64_t kMaxIatAheadSeconds = 60;

struct PassClaims {
  std::string user;         // "sub"; not empty
  std::string session_ref;  // "sid": an opaque reference to the origin session; not empty
  std::string device;       // "dev": the device fingerprint the pass was issued to
  std::string jti;          // 16 to 64 base64url characters; newJti() makes one
  int64_t iat = 0;          // Unix seconds
  int64_t exp = 0;          // Unix seconds; after iat
};

// What open() found. Nothing but kOk fills the claims.
enum class PassStatus {
  // Genuine and valid now.
  kOk,
  // Not a pass: over kMaxPassBytes, not five canonical base64url segments, wrong segment sizes, a
  // header that is not the pinned algorithms with a jti, or a decrypted content that is not a
  // compact JWS. Also a genuine pass whose signed claims lack one of the six or have a wrong type.
  kMalformed,
  // Well formed, but this codec cannot decrypt it: encrypted to another key or to the other key
  // type, or changed on the way (GCM refuses any changed byte, the header included).
  kUndecryptable,
  // Decrypted, but not signed by this codec's signing key: a signature that does not verify, an
  // inner alg other than ES256, or an inner jti that differs from the header jti. The last is a
  // genuine inner token re-wrapped under another jti (anyone can encrypt to the origin), which
  // would dodge the single-use mark: it is a forgery, not a damaged pass.
  kBadSignature,
  // Genuine, but outside its validity window: now >= exp, or iat more than kMaxIatAheadSeconds
  // ahead of now.
  kExpired,
};

// "ok", "malformed", "undecryptable", "bad_signature", "expired": for metrics and logs.
std::string_view passStatusName(PassStatus status);

// A fresh random jti: 16 bytes from RAND_bytes, base64url without padding (22 characters). Empty
// if OpenSSL's generator fails, which issue() then refuses.
std::string newJti();

class PassCodec {
 public:
  // Keys are private JWKs as JSON text: the signing key EC P-256 (use "sig" and alg "ES256" if
  // given), the encryption key EC P-256 (ECDH-ES) or RSA of 2048 bits or more (RSA-OAEP), use
  // "enc" if given, and not the same key as the signing key. The pair must open a pass it issued
  // (checked here once, which catches a private JWK whose halves disagree). On failure: null, and
  // `error` says which key and why, without quoting key material.
  static std::unique_ptr<PassCodec> fromJwks(std::string_view signing_jwk,
                                             std::string_view encryption_jwk, std::string& error);
  // The same, each file holding one JWK (at most 1 MiB); `error` names the file at fault.
  static std::unique_ptr<PassCodec> fromFiles(const std::string& signing_file,
                                              const std::string& encryption_file,
                                              std::string& error);

  // The pass for `claims`, or empty when the claims break the rules of PassClaims, a string is not
  // valid UTF-8, the pass would exceed kMaxPassBytes, or cjose fails.
  std::string issue(const PassClaims& claims) const;

  // The header jti of a well-formed pass, without any key: the checks open() makes before it
  // decrypts, short of the key type. nullopt means open() says kMalformed. The jti is not proven
  // yet: open() checks that the signed claims carry it.
  static std::optional<std::string> peekJti(std::string_view pass);

  // Decrypts and verifies `pass`; on kOk only, `out` gets its claims. `now_seconds` is Unix time.
  PassStatus open(std::string_view pass, int64_t now_seconds, PassClaims& out) const;

  // "ECDH-ES" or "RSA-OAEP": the only JWE alg this codec issues and opens.
  std::string_view encryptionAlg() const { return encryption_alg_; }

 private:
  PassCodec(JwkPtr signing, JwkPtr encryption, std::string_view encryption_alg)
      : signing_(std::move(signing)),
        encryption_(std::move(encryption)),
        encryption_alg_(encryption_alg) {}

  // fromJwks and fromFiles; the names are what errors call the two keys.
  static std::unique_ptr<PassCodec> load(std::string_view signing_jwk,
                                         std::string_view encryption_jwk,
                                         const std::string& signing_name,
                                         const std::string& encryption_name, std::string& error);

  std::string sign(const std::string& payload) const;
  std::string encrypt(const std::string& inner, const std::string& jti) const;

  JwkPtr signing_;
  JwkPtr encryption_;
  std::string_view encryption_alg_;  // a literal
};

}  // namespace tessera::plugins::migration
