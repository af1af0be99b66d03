#include "plugins/jwt/jwt_config.h"

#include <cjose/error.h>
#include <openssl/err.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "plugins/cjose_handles.h"
#include "plugins/config_fields.h"
#include "plugins/plugin.h"

namespace tessera::plugins {
namespace {

using fields::boolean;
using fields::child;
using fields::contains;
using fields::fail;
using fields::forEachEntry;
using fields::forEachKey;
using fields::isToken;
using fields::Item;
using fields::lowerCase;
using fields::nonEmpty;
using fields::parseDuration;
using fields::scalar;
using fields::stringList;
using Json = nlohmann::json;

// A JWKS is a few kilobytes; anything far larger is the wrong file.
constexpr size_t kMaxKeyFileBytes = 1 << 20;
// Below this, RSA signatures and RSA-OAEP are breakable in practice (NIST SP 800-131A).
constexpr size_t kMinRsaBits = 2048;
// A larger skew keeps expired tokens alive for longer than any clock drift explains.
constexpr std::chrono::milliseconds kMaxClockSkew{60 * 60 * 1000};
constexpr uint64_t kMaxCacheEntries = 10'000'000;

constexpr std::string_view kSigningAlgorithms[] = {"ES256", "ES384", "ES512", "RS256", "RS384",
                                                   "RS512", "PS256", "PS384", "PS512"};
// What cjose decrypts with a key of ours; RSA1_5 is left out on purpose (Bleichenbacher).
constexpr std::string_view kKeyAgreementAlgorithms[] = {"ECDH-ES", "RSA-OAEP"};

std::chrono::milliseconds clockSkew(const Item& item) {
  static const std::string kExpected = "expected a duration like 0s, 30s or 2m";
  std::optional<std::chrono::milliseconds> value = parseDuration(scalar(item, kExpected));
  if (!value) fail(item.mark, item.path, kExpected);
  if (*value > kMaxClockSkew) {
    fail(item.mark, item.path, "must be at most 1h (a larger skew keeps expired tokens alive)");
  }
  return *value;
}

size_t cacheEntries(const Item& item) {
  static const std::string kExpected = "expected a number of entries from 0 to 10000000";
  std::string text = scalar(item, kExpected);
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  // from_chars on an unsigned type refuses a leading '-', so digits only get through.
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      value > kMaxCacheEntries) {
    fail(item.mark, item.path, kExpected);
  }
  return static_cast<size_t>(value);
}

JwtTokenSource tokenSource(const Item& item) {
  static const std::string kExpected = "expected header:NAME or cookie:NAME";
  std::string text = scalar(item, kExpected);
  std::string_view view = text;
  JwtTokenSource source;
  if (view.starts_with("header:")) {
    source.name = std::string(view.substr(7));
    source.bearer = lowerCase(source.name) == "authorization";
  } else if (view.starts_with("cookie:")) {
    source.kind = JwtTokenSource::Kind::kCookie;
    source.name = std::string(view.substr(7));
  } else {
    fail(item.mark, item.path, kExpected);
  }
  if (!isToken(source.name)) fail(item.mark, item.path, "expected a name (a token) after the ':'");
  return source;
}

std::vector<JwtTokenSource> tokenSources(const Item& item) {
  std::vector<JwtTokenSource> out;
  forEachEntry(item, [&](const Item& entry) {
    JwtTokenSource source = tokenSource(entry);
    for (const JwtTokenSource& earlier : out) {
      bool header = source.kind == JwtTokenSource::Kind::kHeader;
      if (earlier.kind == source.kind && (header ? lowerCase(earlier.name) == lowerCase(source.name)
                                                 : earlier.name == source.name)) {
        fail(entry.mark, entry.path, "duplicate source");
      }
    }
    out.push_back(std::move(source));
  });
  return out;
}

std::string signingAlgorithm(const Item& item) {
  std::string alg = scalar(item, "expected a JWS algorithm");
  if (alg == "none") fail(item.mark, item.path, "\"none\" is refused: tokens must be signed");
  if (alg.starts_with("HS")) {
    fail(item.mark, item.path,
         alg +
             " is refused: the issuer keys are public, and an HMAC keyed with public bytes "
             "proves nothing (alg confusion)");
  }
  if (!contains(kSigningAlgorithms, alg)) {
    fail(item.mark, item.path,
         "expected one of ES256, ES384, ES512, RS256, RS384, RS512, PS256, "
         "PS384, PS512");
  }
  return alg;
}

// --- Key files ----------------------------------------------------------------------------------

enum class KeyUse { kVerify, kDecrypt };

std::string readFile(const Item& item, const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(item.mark, item.path, "cannot read " + file + ": " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxKeyFileBytes) fail(item.mark, item.path, file + ": larger than 1 MiB");
  }
  if (in.bad()) fail(item.mark, item.path, "cannot read " + file);
  return text;
}

// The key's own "use" and "alg" narrow what it is for; a JWKS published by an auth center often
// mixes signing and encryption keys, and each use takes only its own.
bool fitsUse(const Json& entry, KeyUse use) {
  auto use_it = entry.find("use");
  if (use_it != entry.end() && *use_it != (use == KeyUse::kVerify ? "sig" : "enc")) return false;
  auto alg_it = entry.find("alg");
  if (alg_it == entry.end()) return true;
  if (!alg_it->is_string()) return false;
  const std::string& alg = alg_it->get_ref<const std::string&>();
  return use == KeyUse::kVerify ? contains(kSigningAlgorithms, alg)
                                : contains(kKeyAgreementAlgorithms, alg);
}

// A member's text, or "" when it is absent or not a string (nlohmann's value() would throw).
std::string stringMember(const Json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// Never returns a half-checked key: every failure names the file and the entry, nothing more (a
// message must not echo key material into the logs).
JwtKey importKey(const Item& item, const std::string& where, const Json& entry, KeyUse use) {
  auto kty = entry.find("kty");
  bool ec = kty != entry.end() && *kty == "EC";
  if (!ec && (kty == entry.end() || *kty != "RSA")) {
    fail(item.mark, item.path,
         where + ": expected kty EC or RSA (symmetric keys are refused: HS* is never accepted)");
  }
  if (use == KeyUse::kDecrypt && !entry.contains("d")) {
    fail(item.mark, item.path, where + ": not a private key (decryption needs \"d\")");
  }
  std::string text = entry.dump();
  cjose_err err{};
  std::shared_ptr<cjose_jwk_t> jwk(cjose_jwk_import(text.data(), text.size(), &err), JwkRelease());
  if (!jwk) {
    // cjose leaves OpenSSL's queue filled; the next TLS call on this thread would misread it.
    ERR_clear_error();
    fail(item.mark, item.path,
         where + ": cannot import the key (" +
             (err.message != nullptr ? err.message : "rejected by cjose") + ")");
  }
  JwtKey key;
  key.type = ec ? JwtKey::Type::kEc : JwtKey::Type::kRsa;
  if (ec) {
    key.curve = stringMember(entry, "crv");
    if (key.curve != "P-256" && key.curve != "P-384" && key.curve != "P-521") {
      fail(item.mark, item.path, where + ": expected crv P-256, P-384 or P-521");
    }
  } else if (cjose_jwk_get_keysize(jwk.get(), &err) < kMinRsaBits) {
    fail(item.mark, item.path, where + ": RSA keys must have at least 2048 bits");
  }
  if (const char* kid = cjose_jwk_get_kid(jwk.get(), &err)) key.kid = kid;
  key.alg = stringMember(entry, "alg");
  key.jwk = std::move(jwk);
  return key;
}

std::vector<JwtKey> loadKeys(const Item& item, KeyUse use, std::string& file) {
  file = nonEmpty(item, "expected a key file name");
  Json document = Json::parse(readFile(item, file), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) fail(item.mark, item.path, file + ": not valid JSON");
  const Json* entries = nullptr;
  Json single = Json::array();
  if (document.is_object() && document.contains("keys") && document["keys"].is_array()) {
    entries = &document["keys"];
  } else if (document.is_object() && document.contains("kty")) {
    single.push_back(document);
    entries = &single;
  } else {
    fail(item.mark, item.path, file + ": expected a JWKS ({\"keys\": [...]}) or one JWK");
  }
  std::vector<JwtKey> keys;
  for (size_t i = 0; i < entries->size(); ++i) {
    const Json& entry = (*entries)[i];
    std::string where = file + ": keys[" + std::to_string(i) + "]";
    if (!entry.is_object()) fail(item.mark, item.path, where + ": expected a JWK object");
    if (fitsUse(entry, use)) keys.push_back(importKey(item, where, entry, use));
  }
  if (keys.empty()) {
    fail(item.mark, item.path,
         file + (use == KeyUse::kVerify ? ": no signing key" : ": no decryption key"));
  }
  return keys;
}

// --- Sections -----------------------------------------------------------------------------------

JwtIssuer issuer(const Item& item) {
  JwtIssuer out;
  std::set<std::string> seen =
      forEachKey(item, {"issuer", "audiences", "keys", "algorithms"},
                 [&](const std::string& key, const Item& value) {
                   if (key == "issuer") {
                     out.issuer = nonEmpty(value, "expected the issuer's `iss` value");
                   } else if (key == "audiences") {
                     out.audiences = stringList(
                         value, [](const Item& e) { return nonEmpty(e, "expected an audience"); });
                   } else if (key == "keys") {
                     out.keys = loadKeys(value, KeyUse::kVerify, out.keys_file);
                   } else if (key == "algorithms") {
                     out.algorithms = stringList(value, signingAlgorithm);
                   }
                 });
  for (const char* required : {"issuer", "audiences", "keys", "algorithms"}) {
    if (!seen.contains(required)) fail(item.mark, item.path + "." + required, "required");
  }
  return out;
}

std::vector<JwtIssuer> issuers(const Item& item) {
  std::vector<JwtIssuer> out;
  forEachEntry(item, [&](const Item& entry) {
    JwtIssuer parsed = issuer(entry);
    for (const JwtIssuer& earlier : out) {
      if (earlier.issuer == parsed.issuer) {
        fail(entry.mark, entry.path + ".issuer", "duplicate issuer \"" + parsed.issuer + "\"");
      }
    }
    out.push_back(std::move(parsed));
  });
  return out;
}

std::vector<std::string> claimPath(const YAML::Mark& mark, const std::string& path,
                                   std::string_view claim) {
  std::vector<std::string> segments;
  size_t begin = 0;
  while (true) {
    size_t dot = claim.find('.', begin);
    std::string_view segment = claim.substr(begin, dot - begin);
    if (segment.empty()) fail(mark, path, "expected a claim name, dots between nested names");
    segments.emplace_back(segment);
    if (dot == std::string_view::npos) return segments;
    begin = dot + 1;
  }
}

std::vector<JwtClaimHeader> claimsToHeaders(const Item& item) {
  if (!item.node.IsMap()) fail(item.mark, item.path, "expected a map of claim: Header-Name");
  std::vector<JwtClaimHeader> out;
  for (const auto& pair : item.node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar()) fail(key.Mark(), item.path, "expected a claim name");
    std::string path = item.path + "." + key.Scalar();
    JwtClaimHeader mapping;
    mapping.claim = key.Scalar();
    mapping.path = claimPath(key.Mark(), path, mapping.claim);
    for (const JwtClaimHeader& earlier : out) {
      if (earlier.claim == mapping.claim) fail(key.Mark(), path, "duplicate key");
    }
    mapping.header = fields::forwardedHeaderName(
        Item{pair.second, path, pair.second.IsNull() ? key.Mark() : pair.second.Mark()});
    out.push_back(std::move(mapping));
  }
  return out;
}

void apply(const std::string& key, const Item& item, JwtConfig& config) {
  if (key == "type") {
    if (scalar(item, "expected jwt") != "jwt") fail(item.mark, item.path, "expected jwt");
  } else if (key == "from") {
    config.from = tokenSources(item);
  } else if (key == "issuers") {
    config.issuers = issuers(item);
  } else if (key == "decrypt_keys") {
    config.decrypt_keys = loadKeys(item, KeyUse::kDecrypt, config.decrypt_keys_file);
  } else if (key == "encrypted_claims") {
    config.encrypted_claims = stringList(item, [](const Item& entry) {
      std::string name = nonEmpty(entry, "expected a claim name");
      // Top-level only: a JWE string nested inside another claim is not looked for.
      if (name.find('.') != std::string::npos)
        fail(entry.mark, entry.path, "top-level claims only");
      return name;
    });
  } else if (key == "claims_to_headers") {
    config.claims_to_headers = claimsToHeaders(item);
  } else if (key == "forward_payload_header") {
    config.forward_payload_header = fields::forwardedHeaderName(item);
  } else if (key == "clock_skew") {
    config.clock_skew = clockSkew(item);
  } else if (key == "required") {
    config.required = boolean(item);
  } else if (key == "cache_entries") {
    config.cache_entries = cacheEntries(item);
  }
}

// The plugin strips every header it may set before it reads the token, so a header both set and
// read from would lose the token; two claims into one header would make one of them vanish.
void checkHeaders(const JwtConfig& config, const YAML::Node& node) {
  std::set<std::string> read_from;
  for (const JwtTokenSource& source : config.from) {
    if (source.kind == JwtTokenSource::Kind::kHeader) read_from.insert(lowerCase(source.name));
  }
  std::set<std::string> written;
  auto check = [&](const std::string& header, const YAML::Node& at, const std::string& path) {
    std::string lower = lowerCase(header);
    if (read_from.contains(lower)) fail(at.Mark(), path, "the token is read from " + header);
    if (!written.insert(lower).second) fail(at.Mark(), path, "header " + header + " is set twice");
  };
  for (const JwtClaimHeader& mapping : config.claims_to_headers) {
    check(mapping.header, node["claims_to_headers"][mapping.claim],
          "claims_to_headers." + mapping.claim);
  }
  if (!config.forward_payload_header.empty()) {
    check(config.forward_payload_header, node["forward_payload_header"], "forward_payload_header");
  }
}

}  // namespace

JwtConfig parseJwtConfig(const YAML::Node& node) {
  Item root{node, "", node.Mark()};
  JwtConfig config;
  std::set<std::string> seen = forEachKey(
      root,
      {"type", "from", "issuers", "decrypt_keys", "encrypted_claims", "claims_to_headers",
       "forward_payload_header", "clock_skew", "required", "cache_entries"},
      [&](const std::string& key, const Item& item) { apply(key, item, config); });
  if (!seen.contains("issuers")) fail(node.Mark(), "issuers", "required");
  if (!config.encrypted_claims.empty() && config.decrypt_keys.empty()) {
    fail(node["encrypted_claims"].Mark(), "decrypt_keys", "required with encrypted_claims");
  }
  checkHeaders(config, node);
  return config;
}

}  // namespace tessera::plugins
