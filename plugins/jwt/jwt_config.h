#pragma once

// The `jwt` plugin's configuration: parsed once per config snapshot from the plugin's YAML node,
// key files included, then shared read-only by every worker (the runtime is jwt.h).
//
//   type: jwt
//   from: [header:Authorization, cookie:access_token]  # token sources, tried in this order
//   issuers:                                  # required, non-empty
//     - issuer: https://auth.example          # the exact `iss`
//       audiences: [shop]                     # the token's `aud` must hold one of these
//       keys: conf/keys/auth.jwks.json        # public JWKS (or one JWK), EC or RSA
//       algorithms: [ES256, RS256, PS256]     # pinned: ES/RS/PS 256/384/512 only
//   decrypt_keys: conf/keys/proxy.jwks.json   # private JWKS; required with encrypted_claims
//   encrypted_claims: [pii]                   # top-level claims holding a JWE compact string
//   claims_to_headers: { sub: X-User-Id, pii.id_card: X-User-Id-Card }
//   forward_payload_header: X-Jwt-Claims      # optional
//   clock_skew: 60s                           # 0 to 1h
//   required: true                            # false: a request without a token passes
//   cache_entries: 10000                      # per worker; 0 turns the cache off
//
// Key files are read when the config loads (relative paths from the proxy's working directory,
// since a plugin node does not know which file it came from); a SIGHUP reload makes a new factory,
// which reads them again.

#include <cjose/jwk.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace tessera::plugins {

// One imported JWK. cjose only reads a key while verifying or decrypting, so the handle is shared
// by every worker thread without a lock.
struct JwtKey {
  enum class Type { kEc, kRsa };

  std::shared_ptr<cjose_jwk_t> jwk;  // released with cjose_jwk_release
  Type type = Type::kEc;
  std::string curve;  // "P-256", "P-384" or "P-521" for EC; empty for RSA
  std::string kid;    // empty: the JWK has none
  std::string alg;    // the JWK's own "alg"; when set, the only algorithm the key serves
};

struct JwtIssuer {
  std::string issuer;
  std::vector<std::string> audiences;
  std::string keys_file;
  std::vector<JwtKey> keys;  // non-empty, public or private, never symmetric
  // JWS algorithms, each one of ES256..ES512, RS256..RS512, PS256..PS512. `none` and HS* are
  // refused at load: the keys are public, and an HMAC keyed with public bytes proves nothing.
  std::vector<std::string> algorithms;
};

struct JwtTokenSource {
  enum class Kind { kHeader, kCookie };

  Kind kind = Kind::kHeader;
  std::string name;     // header name (any case) or cookie name (exact)
  bool bearer = false;  // header:Authorization: the value is "Bearer <token>"
};

struct JwtClaimHeader {
  std::string claim;              // as written: "pii.id_card"
  std::vector<std::string> path;  // split on dots: {"pii", "id_card"}
  std::string header;
};

struct JwtConfig {
  std::vector<JwtTokenSource> from{{JwtTokenSource::Kind::kHeader, "Authorization", true}};
  std::vector<JwtIssuer> issuers;
  std::string decrypt_keys_file;     // empty: none
  std::vector<JwtKey> decrypt_keys;  // private keys only
  std::vector<std::string> encrypted_claims;
  std::vector<JwtClaimHeader> claims_to_headers;  // in config order
  std::string forward_payload_header;             // empty: none
  std::chrono::milliseconds clock_skew{60'000};
  bool required = true;
  size_t cache_entries = 10'000;
};

// Parses the node and reads the key files. Throws PluginConfigError (key path relative to `node`,
// 1-based line and column) on an unknown, duplicate, missing or malformed key, and on a key file
// that cannot be read or holds no usable key (the message names the file).
JwtConfig parseJwtConfig(const YAML::Node& node);

}  // namespace tessera::plugins
