#pragma once

// `tessera token`: the auth center's side of the jwt plugin. It makes key pairs, mints JWTs whose
// sensitive claims are encrypted to the proxy's key, and reads tokens back. proxy/main.cc is thin
// CLI glue over these functions; tests call them directly.
//
// File formats (tests/tools/jwcrypto_mint.py reads and writes the same ones):
//   private key  one private JWK (RFC 7517) with a "kid"; mode 0600.
//   public key   a JWKS {"keys": [<public JWK>]}: usable as-is as an issuer's `keys:` file in the
//                jwt plugin's config, and as `issue`'s --encrypt-to.
// Wherever a key file is read, a single JWK and a JWKS are both accepted.
//
// Algorithms are those the jwt plugin accepts and cjose 0.6 implements:
//   JWS  ES256 (EC P-256), RS256 and PS256 (RSA, 2048 bits or more);
//   JWE  ECDH-ES (EC key) or RSA-OAEP (RSA key), always with enc A256GCM.
//
// Contract for every function here: synchronous, on the caller's thread, no shared state, so any
// thread may call them. Failure is `false` plus a one-line `error` that names the option or file
// at fault and never contains key material or the plaintext of sensitive claims. Not for the data
// path: they read files and may take an RSA key generation's worth of time.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::plugins::jwt_tool {

// The algorithm names, as they appear in JOSE headers.
inline constexpr std::string_view kEs256 = "ES256";
inline constexpr std::string_view kRs256 = "RS256";
inline constexpr std::string_view kPs256 = "PS256";
inline constexpr std::string_view kEcdhEs = "ECDH-ES";
inline constexpr std::string_view kRsaOaep = "RSA-OAEP";
inline constexpr std::string_view kA256Gcm = "A256GCM";

struct KeygenOptions {
  std::string type;          // "ec" (P-256) or "rsa" (2048 bits)
  std::string private_path;  // created, never overwritten; mode 0600
  std::string public_path;   // created, never overwritten; mode 0644 whatever the umask
  std::string kid;           // empty: 16 random hex digits
};

// Writes both files or neither. `kid` receives the key's id.
bool keygen(const KeygenOptions& options, std::string& kid, std::string& error);

struct IssueOptions {
  std::string issuer;
  std::vector<std::string> audiences;   // one: "aud" is a string; several: an array
  std::string sign_key_path;            // a private JWK (or JWKS: its first key)
  std::string alg;                      // empty: ES256 for an EC key, RS256 for an RSA key
  std::string claims_json = "{}";       // a JSON object; must not set iss/aud/iat/nbf/exp
  std::string sensitive_json;           // empty: none; else a JSON object, encrypted
  std::string sensitive_claim = "pii";  // the claim that holds the JWE compact string
  std::string encrypt_to_path;          // the proxy's public JWK or JWKS (first key)
  std::string ttl = "300s";             // see parseTtl
  std::int64_t now = 0;                 // Unix seconds for iat; 0: the system clock
};

// Mints a compact JWS: header {alg, kid (the signing key's, if it has one), typ: "JWT"}, payload
// = claims + iss + aud + iat + nbf (= iat) + exp (= iat + ttl), with the sensitive JSON as a JWE
// compact string (header alg, enc, kid = the recipient key's kid) under `sensitive_claim`.
bool issue(const IssueOptions& options, std::string& token, std::string& error);

struct InspectOptions {
  std::string token;             // surrounding blanks and a "Bearer " prefix are ignored
  std::string decrypt_key_path;  // empty: encrypted claims are shown as JWE strings
  std::int64_t now = 0;          // for the "expires:" line; 0: the system clock
};

// Renders the JWS header and the claims as pretty JSON, followed by a line about expiry, a line
// naming the encrypted (or decrypted) claims, and always "signature: not verified": inspect
// never checks the signature, so its output must never be mistaken for a verification. A claim is
// taken to be encrypted when it is a string in JWE compact form; with a key it is replaced by its
// decrypted JSON, and a claim that fails to decrypt is an error.
bool inspect(const InspectOptions& options, std::string& report, std::string& error);

struct VerifyOptions {
  std::string token;
  std::string keys_path;  // the issuer's public JWKS (or one JWK)
  std::vector<std::string> algorithms{std::string(kEs256), std::string(kRs256),
                                      std::string(kPs256)};
  std::string issuer;            // empty: not checked
  std::string audience;          // empty: not checked; else "aud" must be it or contain it
  std::string decrypt_key_path;  // empty: encrypted claims stay JWE strings
  std::vector<std::string> encrypted_claims{"pii"};  // decrypted when present and a key is given
  std::int64_t clock_skew = 60;
  std::int64_t now = 0;  // 0: the system clock
};

// Full verification as an independent reference for tests and tools (interop with other JOSE
// implementations): alg pinned before cjose sees the token, signature by the key named by kid,
// exp (required), nbf, iss, aud, then decryption of the listed claims. The jwt plugin has its own
// data-path implementation; this one is not used by the proxy.
bool verify(const VerifyOptions& options, nlohmann::json& claims, std::string& error);

// "300", "300s", "5m", "1h", "1d" → seconds; from 1 s to 400 days.
bool parseTtl(std::string_view text, std::int64_t& seconds, std::string& error);

}  // namespace tessera::plugins::jwt_tool
