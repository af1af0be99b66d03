#include "plugins/migration/pass.h"

#include <cjose/cjose.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "plugins/cjose_handles.h"
#include "plugins/encoding.h"
#include "plugins/json_input.h"

namespace tessera::plugins::migration {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kSigningAlg = "ES256";
constexpr std::string_view kEcdhEs = "ECDH-ES";
constexpr std::string_view kRsaOaep = "RSA-OAEP";
constexpr std::string_view kA256Gcm = "A256GCM";
constexpr std::string_view kNestedJwt = "JWT";  // the cty of a JWE whose content is a JWT
constexpr size_t kJtiBytes = 16;
// 96 bits at least: a jti that two passes share would make the second look already used.
constexpr size_t kMinJtiChars = 16;
constexpr size_t kMaxJtiChars = 64;
constexpr size_t kGcmIvBytes = 12;
constexpr size_t kGcmTagBytes = 16;
constexpr size_t kEs256SignatureBytes = 64;  // r and s, 32 bytes each
// A pass's JSON is flat but for the ephemeral key in the header; deeper nesting is no pass, and
// the bound keeps the parsers' recursion short.
constexpr size_t kMaxJsonDepth = 4;
// Below this, RSA-OAEP is breakable in practice (NIST SP 800-131A).
constexpr size_t kMinRsaBits = 2048;
// A JWK is a few kilobytes at most; anything far larger is the wrong file.
constexpr size_t kMaxKeyFileBytes = 1 << 20;

void wipe(std::string& text) { OPENSSL_cleanse(text.data(), text.size()); }

// --- Encodings (base64url: plugins/encoding.h) ---------------------------------------------------

// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. The JSON writer would
// otherwise replace a bad byte, and the pass would name another user than the one it was cut for.
bool isUtf8(std::string_view text) {
  static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  for (size_t i = 0; i < text.size();) {
    auto lead = static_cast<uint8_t>(text[i]);
    size_t length = lead < 0x80           ? 1
                    : (lead >> 5) == 0x6  ? 2
                    : (lead >> 4) == 0xe  ? 3
                    : (lead >> 3) == 0x1e ? 4
                                          : 0;
    if (length == 0 || text.size() - i < length) return false;
    uint32_t code = length == 1 ? lead : lead & (0x7f >> length);
    for (size_t k = 1; k < length; ++k) {
      auto next = static_cast<uint8_t>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    if (code < kSmallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
      return false;
    }
    i += length;
  }
  return true;
}

std::optional<Json> parseObject(std::string_view text) {
  return parseJsonObject(text, kMaxJsonDepth);
}

std::optional<Json> decodeObject(std::string_view segment) {
  return parseObject(base64urlDecode(segment).value_or(""));
}

// Splits a JOSE compact serialization into exactly N canonical base64url segments.
template <size_t N>
std::optional<std::array<std::string_view, N>> splitCompact(std::string_view text) {
  std::array<std::string_view, N> parts;
  for (size_t i = 0; i < N; ++i) {
    size_t dot = i + 1 < N ? text.find('.') : text.size();
    if (dot == std::string_view::npos) return std::nullopt;
    parts[i] = text.substr(0, dot);
    if (!isCanonicalBase64url(parts[i])) return std::nullopt;
    text.remove_prefix(i + 1 < N ? dot + 1 : dot);
  }
  return parts;
}

const std::string* stringMember(const Json& object, std::string_view name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

// A JSON integer that fits int64_t; a float, even a whole one, is not a time this issuer writes.
std::optional<int64_t> intMember(const Json& object, std::string_view name) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned() &&
      it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return std::nullopt;
  }
  return it->get<int64_t>();
}

// Base64url only: the jti becomes part of a store key, where a blank or a control character
// would change the key's meaning.
bool isJti(std::string_view jti) {
  return jti.size() >= kMinJtiChars && jti.size() <= kMaxJtiChars && isBase64urlAlphabet(jti);
}

// --- The outer JWE, read without a key -----------------------------------------------------------

struct OuterPass {
  std::string alg;
  std::string jti;
};

// ECDH-ES derives the content key from this ephemeral public key: it must be a public P-256 key,
// the only curve an origin's EC key has here.
bool isP256PublicKey(const Json& header) {
  auto epk = header.find("epk");
  if (epk == header.end() || !epk->is_object() || epk->contains("d")) return false;
  const std::string* kty = stringMember(*epk, "kty");
  const std::string* crv = stringMember(*epk, "crv");
  return kty != nullptr && *kty == "EC" && crv != nullptr && *crv == "P-256";
}

bool readOuterHeader(const Json& header, bool has_encrypted_key, OuterPass& out) {
  const std::string* alg = stringMember(header, "alg");
  const std::string* enc = stringMember(header, "enc");
  const std::string* cty = stringMember(header, "cty");
  const std::string* jti = stringMember(header, "jti");
  if (alg == nullptr || enc == nullptr || cty == nullptr || jti == nullptr) return false;
  // zip would inflate before anything is authenticated; crit names extensions nobody here knows.
  if (*enc != kA256Gcm || *cty != kNestedJwt || !isJti(*jti) || header.contains("zip") ||
      header.contains("crit")) {
    return false;
  }
  if (*alg == kEcdhEs) {
    // Direct key agreement: the agreed key is the content key, and nothing is wrapped.
    if (has_encrypted_key || !isP256PublicKey(header)) return false;
  } else if (*alg != kRsaOaep || !has_encrypted_key) {
    return false;
  }
  out.alg = *alg;
  out.jti = *jti;
  return true;
}

// cjose 0.6.2.1 as released takes a GCM tag of any length, down to one byte (CVE-2023-37464); the
// sizes are checked here rather than trusting the distribution's patch.
std::optional<OuterPass> readOuter(std::string_view pass) {
  if (pass.size() > kMaxPassBytes) return std::nullopt;
  std::optional<std::array<std::string_view, 5>> parts = splitCompact<5>(pass);
  if (!parts) return std::nullopt;
  const auto& [header, encrypted_key, iv, ciphertext, tag] = *parts;
  if (base64urlDecodedSize(iv) != kGcmIvBytes || ciphertext.empty() ||
      base64urlDecodedSize(tag) != kGcmTagBytes) {
    return std::nullopt;
  }
  std::optional<Json> json = decodeObject(header);
  OuterPass out;
  if (!json || !readOuterHeader(*json, !encrypted_key.empty(), out)) return std::nullopt;
  return out;
}

// cjose's own parse of the header must say what ours said: a member given twice, read one way by
// each parser, would have cjose decrypt with an algorithm never checked here, or the pass marked
// used under another jti than the one compared with the signed claims.
PassStatus importOuter(std::string_view pass, const OuterPass& outer, JwePtr& jwe) {
  cjose_err err{};
  jwe.reset(cjose_jwe_import(pass.data(), pass.size(), &err));
  if (!jwe) return cleared(PassStatus::kMalformed);
  cjose_header_t* header = cjose_jwe_get_protected(jwe.get());
  const char* alg = cjose_header_get(header, CJOSE_HDR_ALG, &err);
  const char* enc = cjose_header_get(header, CJOSE_HDR_ENC, &err);
  const char* jti = cjose_header_get(header, "jti", &err);
  if (alg == nullptr || enc == nullptr || jti == nullptr || outer.alg != alg || kA256Gcm != enc ||
      outer.jti != jti) {
    return cleared(PassStatus::kMalformed);
  }
  return PassStatus::kOk;
}

// --- The inner JWS and its claims ----------------------------------------------------------------

bool issuable(const PassClaims& claims) {
  return !claims.user.empty() && !claims.session_ref.empty() && isJti(claims.jti) &&
         claims.exp > claims.iat && isUtf8(claims.user) && isUtf8(claims.session_ref) &&
         isUtf8(claims.device);
}

std::string claimsJson(const PassClaims& claims) {
  Json json = {{"sub", claims.user}, {"sid", claims.session_ref}, {"dev", claims.device},
               {"jti", claims.jti},  {"iat", claims.iat},         {"exp", claims.exp}};
  // The strings were checked to be UTF-8, so `replace` never fires; it only rules out a throw.
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

PassStatus readClaims(std::string_view text, PassClaims& out) {
  std::optional<Json> claims = parseObject(text);
  if (!claims) return PassStatus::kMalformed;
  const std::string* sub = stringMember(*claims, "sub");
  const std::string* sid = stringMember(*claims, "sid");
  const std::string* dev = stringMember(*claims, "dev");
  const std::string* jti = stringMember(*claims, "jti");
  std::optional<int64_t> iat = intMember(*claims, "iat");
  std::optional<int64_t> exp = intMember(*claims, "exp");
  if (sub == nullptr || sid == nullptr || dev == nullptr || jti == nullptr || !iat || !exp) {
    return PassStatus::kMalformed;
  }
  out = PassClaims{*sub, *sid, *dev, *jti, *iat, *exp};
  return PassStatus::kOk;
}

// Anyone can encrypt to the origin, so a decrypted token proves nothing until its signature does.
PassStatus verifyInner(std::string_view token, const cjose_jwk_t* key, PassClaims& out) {
  std::optional<std::array<std::string_view, 3>> parts = splitCompact<3>(token);
  if (!parts) return PassStatus::kMalformed;
  std::optional<Json> header = decodeObject((*parts)[0]);
  // crit (and b64, which needs it) would change what the signature covers.
  if (!header || header->contains("crit")) return PassStatus::kMalformed;
  const std::string* alg = stringMember(*header, "alg");
  if (alg == nullptr) return PassStatus::kMalformed;
  // cjose verifies with whatever alg the token names: none, or HS256 keyed with public bytes,
  // would pass. Only ES256 is ever handed to it.
  if (*alg != kSigningAlg || base64urlDecodedSize((*parts)[2]) != kEs256SignatureBytes) {
    return PassStatus::kBadSignature;
  }
  cjose_err err{};
  JwsPtr jws(cjose_jws_import(token.data(), token.size(), &err));
  if (!jws) return cleared(PassStatus::kMalformed);
  const char* cjose_alg = cjose_header_get(cjose_jws_get_protected(jws.get()), CJOSE_HDR_ALG, &err);
  if (cjose_alg == nullptr || kSigningAlg != cjose_alg) return cleared(PassStatus::kMalformed);
  if (!cjose_jws_verify(jws.get(), key, &err)) return cleared(PassStatus::kBadSignature);
  uint8_t* payload = nullptr;  // owned by the JWS
  size_t size = 0;
  if (!cjose_jws_get_plaintext(jws.get(), &payload, &size, &err)) {
    return cleared(PassStatus::kMalformed);
  }
  return readClaims({reinterpret_cast<const char*>(payload), size}, out);
}

PassStatus checkTimes(const PassClaims& claims, int64_t now) {
  if (now >= claims.exp) return PassStatus::kExpired;
  // In unsigned arithmetic the difference is exact, where now + the leeway could overflow.
  if (claims.iat > now && static_cast<uint64_t>(claims.iat) - static_cast<uint64_t>(now) >
                              static_cast<uint64_t>(kMaxIatAheadSeconds)) {
    return PassStatus::kExpired;
  }
  return PassStatus::kOk;
}

// --- Keys ----------------------------------------------------------------------------------------

enum class Role { kSigning, kEncryption };

// The algorithm a key of this type serves in `role`; empty when it serves none.
std::string_view algFor(const Json& jwk, Role role) {
  const std::string* kty = stringMember(jwk, "kty");
  const std::string* crv = stringMember(jwk, "crv");
  bool p256 = kty != nullptr && *kty == "EC" && crv != nullptr && *crv == "P-256";
  if (role == Role::kSigning) return p256 ? kSigningAlg : "";
  if (p256) return kEcdhEs;
  return kty != nullptr && *kty == "RSA" ? kRsaOaep : "";
}

// The key's own "use" and "alg", when given, must agree with the role it is put to: a key
// published for encryption is not taken for signing.
bool fitsRole(const Json& jwk, Role role, std::string_view alg) {
  const std::string* use = stringMember(jwk, "use");
  const std::string* own_alg = stringMember(jwk, "alg");
  if (jwk.contains("use") && (use == nullptr || *use != (role == Role::kSigning ? "sig" : "enc"))) {
    return false;
  }
  return !jwk.contains("alg") || (own_alg != nullptr && *own_alg == alg);
}

std::nullptr_t fail(std::string& error, std::string message) {
  error = std::move(message);
  return nullptr;
}

// Every failure names the key and the reason, never a member's value.
JwkPtr importKey(std::string_view text, const Json& jwk, Role role, const std::string& where,
                 std::string_view& alg, std::string& error) {
  if (!jwk.is_object()) return fail(error, where + ": not a JWK (a JSON object)");
  alg = algFor(jwk, role);
  if (alg.empty()) {
    return fail(error,
                where + (role == Role::kSigning ? ": expected an EC P-256 key (kty EC, crv P-256)"
                                                : ": expected an EC P-256 key or an RSA key"));
  }
  if (stringMember(jwk, "d") == nullptr) return fail(error, where + ": a public key (no \"d\")");
  if (!fitsRole(jwk, role, alg)) {
    return fail(error, where + ": its \"use\" or \"alg\" is not " +
                           (role == Role::kSigning ? "sig" : "enc") + " / " + std::string(alg));
  }
  cjose_err err{};
  JwkPtr key(cjose_jwk_import(text.data(), text.size(), &err));
  if (!key) {
    return cleared(fail(error, where + ": cannot import the key (" +
                                   (err.message != nullptr ? err.message : "refused by cjose") +
                                   ")"));
  }
  if (alg == kRsaOaep && cjose_jwk_get_keysize(key.get(), &err) < kMinRsaBits) {
    return fail(error, where + ": RSA keys must have at least 2048 bits");
  }
  return key;
}

// The same private scalar is the same key. ECDSA and ECDH with one key is a known hazard, and it
// would make whoever holds one half of the origin's duties hold both.
bool sameKey(const Json& a, const Json& b) {
  const std::string* d_a = stringMember(a, "d");
  const std::string* d_b = stringMember(b, "d");
  return d_a != nullptr && d_b != nullptr && *d_a == *d_b;
}

// Reads at most one byte past the limit, so that a wrong path (a device, a log) costs nothing.
bool readKeyFile(const std::string& path, std::string& text, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  text.resize(kMaxKeyFileBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad() || text.size() > kMaxKeyFileBytes) {
    wipe(text);
    error = path + (in.bad() ? ": cannot read" : ": larger than 1 MiB; not a JWK");
    return false;
  }
  return true;
}

}  // namespace

std::string_view passStatusName(PassStatus status) {
  switch (status) {
    case PassStatus::kOk:
      return "ok";
    case PassStatus::kMalformed:
      return "malformed";
    case PassStatus::kUndecryptable:
      return "undecryptable";
    case PassStatus::kBadSignature:
      return "bad_signature";
    case PassStatus::kExpired:
      return "expired";
  }
  return "unknown";
}

std::string newJti() {
  unsigned char bytes[kJtiBytes];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return cleared(std::string());
  return base64urlEncode({reinterpret_cast<const char*>(bytes), sizeof bytes});
}

std::unique_ptr<PassCodec> PassCodec::fromJwks(std::string_view signing_jwk,
                                               std::string_view encryption_jwk,
                                               std::string& error) {
  return load(signing_jwk, encryption_jwk, "signing key", "encryption key", error);
}

std::unique_ptr<PassCodec> PassCodec::fromFiles(const std::string& signing_file,
                                                const std::string& encryption_file,
                                                std::string& error) {
  std::string signing, encryption;
  std::unique_ptr<PassCodec> codec;
  if (readKeyFile(signing_file, signing, error) &&
      readKeyFile(encryption_file, encryption, error)) {
    codec = load(signing, encryption, signing_file, encryption_file, error);
  }
  wipe(signing);
  wipe(encryption);
  return codec;
}

std::unique_ptr<PassCodec> PassCodec::load(std::string_view signing_text,
                                           std::string_view encryption_text,
                                           const std::string& signing_name,
                                           const std::string& encryption_name, std::string& error) {
  Json signing_json = Json::parse(signing_text, nullptr, /*allow_exceptions=*/false);
  Json encryption_json = Json::parse(encryption_text, nullptr, /*allow_exceptions=*/false);
  std::string_view signing_alg, encryption_alg;
  JwkPtr signing =
      importKey(signing_text, signing_json, Role::kSigning, signing_name, signing_alg, error);
  if (!signing) return nullptr;
  JwkPtr encryption = importKey(encryption_text, encryption_json, Role::kEncryption,
                                encryption_name, encryption_alg, error);
  if (!encryption) return nullptr;
  if (sameKey(signing_json, encryption_json)) {
    return fail(error, signing_name + ", " + encryption_name +
                           ": one key for both signing and encryption; give each its own");
  }
  std::unique_ptr<PassCodec> codec(
      new PassCodec(std::move(signing), std::move(encryption), encryption_alg));
  // cjose never checks a private JWK's members against each other: an RSA key whose d, p, q, dp,
  // dq and qi do not fit n (edited by hand, or spliced from two keys) fails here, not on the first
  // real pass.
  PassClaims probe{"probe", "probe", "", newJti(), 0, 1};
  PassClaims opened;
  if (codec->open(codec->issue(probe), 0, opened) != PassStatus::kOk) {
    return fail(error, signing_name + ", " + encryption_name +
                           ": a pass issued with these keys does not open with them (a private "
                           "JWK whose members disagree?)");
  }
  return codec;
}

std::string PassCodec::issue(const PassClaims& claims) const {
  if (!issuable(claims)) return "";
  std::string payload = claimsJson(claims);
  std::string inner = sign(payload);
  wipe(payload);
  std::string pass = inner.empty() ? "" : encrypt(inner, claims.jti);
  wipe(inner);
  return pass.size() <= kMaxPassBytes ? pass : "";
}

// A header per call: cjose keeps a reference to it in the JWS, and nothing here is shared between
// threads but the keys.
std::string PassCodec::sign(const std::string& payload) const {
  cjose_err err{};
  HeaderPtr header(cjose_header_new(&err));
  if (!header || !cjose_header_set(header.get(), CJOSE_HDR_ALG, CJOSE_HDR_ALG_ES256, &err) ||
      !cjose_header_set(header.get(), "typ", "JWT", &err)) {
    return cleared(std::string());
  }
  JwsPtr jws(cjose_jws_sign(signing_.get(), header.get(),
                            reinterpret_cast<const uint8_t*>(payload.data()), payload.size(),
                            &err));
  const char* compact = nullptr;  // owned by the JWS
  if (!jws || !cjose_jws_export(jws.get(), &compact, &err)) return cleared(std::string());
  return compact;
}

// cjose adds the ephemeral key ("epk") to the header it is given for ECDH-ES: one more reason for
// a header per call.
std::string PassCodec::encrypt(const std::string& inner, const std::string& jti) const {
  cjose_err err{};
  const std::string alg(encryption_alg_);
  const std::string cty(kNestedJwt);
  HeaderPtr header(cjose_header_new(&err));
  if (!header || !cjose_header_set(header.get(), CJOSE_HDR_ALG, alg.c_str(), &err) ||
      !cjose_header_set(header.get(), CJOSE_HDR_ENC, CJOSE_HDR_ENC_A256GCM, &err) ||
      !cjose_header_set(header.get(), CJOSE_HDR_CTY, cty.c_str(), &err) ||
      !cjose_header_set(header.get(), "jti", jti.c_str(), &err)) {
    return cleared(std::string());
  }
  JwePtr jwe(cjose_jwe_encrypt(encryption_.get(), header.get(),
                               reinterpret_cast<const uint8_t*>(inner.data()), inner.size(), &err));
  CjoseText compact(jwe ? cjose_jwe_export(jwe.get(), &err) : nullptr);
  if (!compact) return cleared(std::string());
  return compact.get();
}

std::optional<std::string> PassCodec::peekJti(std::string_view pass) {
  std::optional<OuterPass> outer = readOuter(pass);
  if (!outer) return std::nullopt;
  return std::move(outer->jti);
}

PassStatus PassCodec::open(std::string_view pass, int64_t now_seconds, PassClaims& out) const {
  std::optional<OuterPass> outer = readOuter(pass);
  if (!outer) return PassStatus::kMalformed;
  // Pinned per key type: the header's alg is never a choice offered to the client.
  if (outer->alg != encryption_alg_) return PassStatus::kUndecryptable;
  JwePtr jwe;
  if (PassStatus status = importOuter(pass, *outer, jwe); status != PassStatus::kOk) return status;
  // cjose 0.6.2.1 leaks the empty encrypted-key buffer of every ECDH-ES decryption (one byte;
  // fixed upstream in cisco/cjose#146).
  cjose_err err{};
  size_t size = 0;
  uint8_t* data = cjose_jwe_decrypt(jwe.get(), encryption_.get(), &size, &err);
  if (data == nullptr) return cleared(PassStatus::kUndecryptable);
  Plaintext inner(data, size);
  PassClaims claims;
  if (PassStatus status = verifyInner(inner.view(), signing_.get(), claims);
      status != PassStatus::kOk) {
    return status;
  }
  // The store was marked under the header jti, which only GCM vouches for, and anyone can make a
  // GCM key to the origin. A genuine inner token re-wrapped under fresh jtis would otherwise be
  // redeemable again and again: only the signature can tie the jti to this pass.
  if (claims.jti != outer->jti) return PassStatus::kBadSignature;
  if (PassStatus status = checkTimes(claims, now_seconds); status != PassStatus::kOk) {
    return status;
  }
  out = std::move(claims);
  return PassStatus::kOk;
}

}  // namespace tessera::plugins::migration
