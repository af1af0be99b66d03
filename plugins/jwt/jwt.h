#pragma once

// The `jwt` plugin: verifies a signed JWT at the edge, decrypts the claims its issuer encrypted to
// the proxy, and hands the backend plain headers. It runs synchronously in onRequestHeaders: it
// either returns kContinue, or has answered 401 (and returns kStop); it never waits.
//
// Per request, in this order:
//   1. Every header the plugin may set (the claims_to_headers values, forward_payload_header) is
//      removed from the request, whatever happens next: a backend never sees a client's own
//      X-User-Id, not even when the token is missing and `required` is false.
//   2. The token is taken from the first `from` source that has one ("Bearer <token>" for
//      Authorization, any case of the scheme; the raw value of other headers and of cookies).
//      None: 401 invalid_request if `required`, else the request goes on without identity.
//   3. At most 16 KiB, three base64url parts: else 401, before anything is parsed.
//   4. The verified-token cache (below) may answer here.
//   5. The protected header and the payload are decoded by the plugin itself. `alg` none and HS*
//      are refused always; the payload's `iss` picks the issuer, whose `algorithms` must hold
//      `alg` before cjose sees the token (cjose takes the algorithm from the token). `kid` picks
//      the key (unknown kid: 401); without one, every key of the issuer that fits `alg` is tried.
//   6. cjose verifies the signature. Then `exp` (required) > now - clock_skew, `nbf` (if any) <=
//      now + clock_skew, and `aud` (a string or a list) holds one of the issuer's audiences.
//   7. Each `encrypted_claims` member present must be a JWE compact string: alg ECDH-ES or
//      RSA-OAEP, enc A256GCM, a 16-byte tag (checked before cjose decrypts); the key is the
//      decrypt key with the JWE's kid, else each decrypt key of the right type. The plaintext
//      must be JSON, and replaces the string.
//   8. claims_to_headers: nested claims by dots (an exact top-level name with dots wins); strings
//      as they are, numbers and booleans as JSON text, objects and arrays as compact JSON; a
//      missing or null claim sets nothing. A value with control characters refuses the token.
//      forward_payload_header: base64url (no padding) of the final claims' JSON.
//
// Failures: sendLocalReply(401, WWW-Authenticate: Bearer error="invalid_token",
//   error_description="<fixed text>") (RFC 6750, 3.1), never naming a key or echoing the token.
// Metrics (Context::count): ok, cache_hit, no_token, too_large, malformed, alg_not_allowed,
//   bad_issuer, unknown_kid, no_key, bad_signature, bad_claims, expired, not_yet_valid,
//   bad_audience, bad_encrypted_claim, decrypt_alg_not_allowed, decrypt_failed,
//   bad_header_value.
//
// Verified-token cache. Per worker thread (a thread_local LRU per factory: no lock, no sharing),
//   keyed by SHA-256 of the token, holding the headers to set (decrypted claims included) until
//   the token's exp + clock_skew, re-checked on every hit. A hit costs no public-key operation. A
//   config reload makes a new factory, whose cache starts empty; the old one's entries go when
//   the worker next makes a cache. Worst case per worker: cache_entries x (token-sized headers).
//
// Config: jwt_config.h.

#include <cstdint>
#include <memory>
#include <string>

#include "plugins/jwt/jwt_config.h"
#include "plugins/plugin.h"

namespace tessera::plugins {

// The FactoryMaker registered as "jwt". Parses `node` and reads its key files (throws
// PluginConfigError).
std::shared_ptr<const Factory> makeJwtFactory(const std::string& name, const YAML::Node& node);

// The number of public-key operations (cjose_jws_verify and cjose_jwe_decrypt calls) made on the
// calling thread so far, by every jwt plugin. For tests and benchmarks: they show that a cached
// token costs none.
uint64_t jwtPublicKeyOperations();

}  // namespace tessera::plugins
