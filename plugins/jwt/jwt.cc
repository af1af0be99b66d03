#include "plugins/jwt/jwt.h"

#include <cjose/cjose.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plugins/cjose_handles.h"
#include "plugins/cookies.h"
#include "plugins/encoding.h"
#include "plugins/json_input.h"

namespace tessera::plugins {
namespace {

using Config = JwtConfig;
using Json = nlohmann::json;

// Far above any real token (a few hundred bytes to a few KiB), far below the header block limit;
// it bounds the work an unauthenticated client can ask for before any signature is checked.
constexpr size_t kMaxTokenBytes = 16 * 1024;
// Tokens up to this size are cached under their own text (compared whole, so no hash collision
// can make one token answer for another); a longer one is verified every time. It bounds the
// cache's memory at cache_entries x 4 KiB, and real tokens are far shorter.
constexpr size_t kMaxCachedTokenBytes = 4 * 1024;
// JSON that nests deeper is no claim set; the bound keeps recursive walks off the stack's end.
constexpr size_t kMaxJsonDepth = 32;
constexpr size_t kGcmIvBytes = 12;
constexpr size_t kGcmTagBytes = 16;
constexpr std::string_view kBody = "unauthorized\n";

thread_local uint64_t public_key_operations = 0;
// Tells factories apart in the per-worker caches. An address could be reused by the factory of
// the next reload, whose config (issuers, mappings) may differ.
std::atomic<uint64_t> next_generation{1};

// Why a token was refused: the metric, and the fixed text the client sees. Neither names a key
// nor echoes a claim.
struct Failure {
  std::string_view reason;
  std::string_view description;
  // Forgery or tampering (a bad signature, an algorithm or key the issuer never uses, a claim that
  // does not decrypt) also goes to the audit log as "jwt_<reason>". A client's own mistakes
  // (expired, malformed, wrong audience) are only counted: they would drown the events that matter.
  bool audited = false;
};

constexpr Failure kTooLarge{"too_large", "token too large"};
constexpr Failure kMalformed{"malformed", "malformed token"};
constexpr Failure kAlgNotAllowed{"alg_not_allowed", "algorithm not allowed", true};
constexpr Failure kBadIssuer{"bad_issuer", "unknown issuer", true};
constexpr Failure kUnknownKid{"unknown_kid", "unknown key id", true};
constexpr Failure kNoKey{"no_key", "no key for this algorithm"};
constexpr Failure kBadSignature{"bad_signature", "bad signature", true};
constexpr Failure kBadClaims{"bad_claims", "malformed claims"};
constexpr Failure kExpired{"expired", "token expired"};
constexpr Failure kNotYetValid{"not_yet_valid", "token not yet valid"};
constexpr Failure kBadAudience{"bad_audience", "audience not allowed"};
constexpr Failure kBadEncryptedClaim{"bad_encrypted_claim", "malformed encrypted claim", true};
constexpr Failure kDecryptAlgNotAllowed{"decrypt_alg_not_allowed",
                                        "claim encryption algorithm not allowed"};
constexpr Failure kDecryptFailed{"decrypt_failed", "claim cannot be decrypted", true};
constexpr Failure kBadHeaderValue{"bad_header_value", "claim not valid in a header"};

// --- Encodings ----------------------------------------------------------------------------------

bool isBase64url(std::string_view text) {
  return text.size() % 4 != 1 && isBase64urlAlphabet(text);
}

std::optional<Json> parseJson(std::string_view text) {
  return plugins::parseJson(text, kMaxJsonDepth);
}

std::optional<Json> decodeJsonObject(std::string_view segment) {
  std::optional<std::string> bytes = base64urlDecode(segment);
  if (!bytes) return std::nullopt;
  std::optional<Json> value = parseJson(*bytes);
  if (!value || !value->is_object()) return std::nullopt;
  return value;
}

std::string compactJson(const Json& value) {
  // The parser only takes valid UTF-8, so `replace` never fires; it just rules out a throw.
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Splits a JOSE compact serialization into exactly N base64url parts.
template <size_t N>
std::optional<std::array<std::string_view, N>> splitCompact(std::string_view text) {
  std::array<std::string_view, N> parts;
  for (size_t i = 0; i < N; ++i) {
    size_t dot = i + 1 < N ? text.find('.') : text.size();
    if (dot == std::string_view::npos) return std::nullopt;
    parts[i] = text.substr(0, dot);
    if (!isBase64url(parts[i])) return std::nullopt;
    text.remove_prefix(i + 1 < N ? dot + 1 : dot);
  }
  return parts;
}

// A string member, if present and a string; `present` tells a wrong type from an absent member.
const std::string* stringMember(const Json& object, std::string_view name, bool* present) {
  auto it = object.find(name);
  *present = it != object.end();
  return *present && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

template <typename List>
bool contains(const List& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// --- Keys ---------------------------------------------------------------------------------------

std::string_view curveOf(std::string_view es_alg) {
  return es_alg == "ES256" ? "P-256" : es_alg == "ES384" ? "P-384" : "P-521";
}

// RFC 7518, 3.1: ESnnn names its curve; RSnnn and PSnnn take any RSA key.
bool servesSigning(const JwtKey& key, std::string_view alg) {
  if (!key.alg.empty() && key.alg != alg) return false;
  if (alg.starts_with("ES")) return key.type == JwtKey::Type::kEc && key.curve == curveOf(alg);
  return key.type == JwtKey::Type::kRsa;
}

struct JweHeader {
  std::string alg;
  std::string enc;
  std::optional<std::string> kid;
  std::string epk_curve;  // ECDH-ES only
};

bool servesDecryption(const JwtKey& key, const JweHeader& header) {
  if (!key.alg.empty() && key.alg != header.alg) return false;
  if (header.kid && key.kid != *header.kid) return false;
  if (header.alg == "ECDH-ES") {
    return key.type == JwtKey::Type::kEc && key.curve == header.epk_curve;
  }
  return key.type == JwtKey::Type::kRsa;
}

// --- Encrypted claims ---------------------------------------------------------------------------

// The JWE's own header, read before cjose sees it: cjose would decrypt whatever the header asks
// for, RSA1_5 included.
const Failure* readJweHeader(std::string_view segment, JweHeader& out) {
  std::optional<Json> header = decodeJsonObject(segment);
  if (!header) return &kBadEncryptedClaim;
  bool present = false;
  const std::string* alg = stringMember(*header, "alg", &present);
  const std::string* enc = stringMember(*header, "enc", &present);
  if (alg == nullptr || enc == nullptr) return &kBadEncryptedClaim;
  // zip would inflate before the JSON check (a bomb); crit names extensions nobody here knows.
  if ((*alg != "ECDH-ES" && *alg != "RSA-OAEP") || *enc != "A256GCM" || header->contains("zip") ||
      header->contains("crit")) {
    return &kDecryptAlgNotAllowed;
  }
  out.alg = *alg;
  out.enc = *enc;
  const std::string* kid = stringMember(*header, "kid", &present);
  if (present && kid == nullptr) return &kBadEncryptedClaim;
  if (kid != nullptr) out.kid = *kid;
  if (out.alg == "ECDH-ES") {
    auto epk = header->find("epk");
    if (epk == header->end() || !epk->is_object()) return &kBadEncryptedClaim;
    const std::string* curve = stringMember(*epk, "crv", &present);
    if (curve == nullptr) return &kBadEncryptedClaim;
    out.epk_curve = *curve;
  }
  return nullptr;
}

// cjose 0.6.2.1 as released takes a GCM tag of any length, down to one byte (CVE-2023-37464);
// the sizes are checked here rather than trusting the distribution's patch.
bool jweSizesFit(const std::array<std::string_view, 5>& parts, const JweHeader& header) {
  bool direct = header.alg == "ECDH-ES";  // the agreed key is the content key: nothing wrapped
  return parts[1].empty() == direct && base64urlDecodedSize(parts[2]) == kGcmIvBytes &&
         !parts[3].empty() && base64urlDecodedSize(parts[4]) == kGcmTagBytes;
}

std::optional<Json> decryptWith(std::string_view compact, const JweHeader& header,
                                const JwtKey& key) {
  cjose_err err{};
  // A fresh import per key: a failed decrypt leaves its working state in the object.
  JwePtr jwe(cjose_jwe_import(compact.data(), compact.size(), &err));
  if (!jwe) return cleared(std::nullopt);
  // cjose's own parse of the header must say what ours said, or a duplicate member read two ways
  // would have cjose use an algorithm never checked above.
  cjose_header_t* protected_header = cjose_jwe_get_protected(jwe.get());
  const char* alg = cjose_header_get(protected_header, CJOSE_HDR_ALG, &err);
  const char* enc = cjose_header_get(protected_header, CJOSE_HDR_ENC, &err);
  if (alg == nullptr || enc == nullptr || header.alg != alg || header.enc != enc) {
    return cleared(std::nullopt);
  }
  ++public_key_operations;
  // cjose 0.6.2.1 leaks the empty encrypted-key buffer of every ECDH-ES decryption (one byte;
  // fixed upstream in cisco/cjose#146). Only a validly signed token gets here, and the
  // verified-token cache makes that once per distinct token.
  size_t size = 0;
  uint8_t* data = cjose_jwe_decrypt(jwe.get(), key.jwk.get(), &size, &err);
  if (data == nullptr) return cleared(std::nullopt);
  Plaintext plaintext(data, size);
  return parseJson(plaintext.view());
}

const Failure* decryptClaim(std::string_view compact, const std::vector<JwtKey>& keys, Json& out) {
  std::optional<std::array<std::string_view, 5>> parts = splitCompact<5>(compact);
  if (!parts) return &kBadEncryptedClaim;
  JweHeader header;
  if (const Failure* failure = readJweHeader((*parts)[0], header)) return failure;
  if (!jweSizesFit(*parts, header)) return &kDecryptFailed;
  for (const JwtKey& key : keys) {
    if (!servesDecryption(key, header)) continue;
    if (std::optional<Json> value = decryptWith(compact, header, key)) {
      out = std::move(*value);
      return nullptr;
    }
  }
  return &kDecryptFailed;
}

// --- One token, from compact text to the headers to set -----------------------------------------

struct Verified {
  double valid_until = 0;  // exp + clock_skew, in seconds since the epoch
  std::vector<HeaderField> headers;
  // "claim:NAME" → value, for Context::share: the top-level claims that are strings, numbers or
  // booleans, encrypted ones decrypted.
  std::vector<std::pair<std::string, std::string>> shared;
};

// Each step returns the failure that ends the check, or nullptr to go on.
class TokenVerifier {
 public:
  TokenVerifier(const Config& config, double now)
      : config_(config),
        now_(now),
        skew_(std::chrono::duration<double>(config.clock_skew).count()) {}

  const Failure* run(std::string_view token, const std::array<std::string_view, 3>& parts,
                     Verified& out);

 private:
  const Failure* readProtectedHeader(std::string_view segment);
  const Failure* pickIssuer(std::string_view segment);
  const Failure* verifySignature(std::string_view token) const;
  const Failure* checkTimes();
  const Failure* checkAudience() const;
  const Failure* decryptClaims();
  const Failure* buildHeaders(std::vector<HeaderField>& out) const;
  void collectShared(std::vector<std::pair<std::string, std::string>>& out) const;

  const Config& config_;
  const double now_;
  const double skew_;
  std::string alg_;
  std::optional<std::string> kid_;
  Json claims_;
  const JwtIssuer* issuer_ = nullptr;
  double exp_ = 0;
};

const Failure* TokenVerifier::run(std::string_view token,
                                  const std::array<std::string_view, 3>& parts, Verified& out) {
  if (const Failure* failure = readProtectedHeader(parts[0])) return failure;
  if (const Failure* failure = pickIssuer(parts[1])) return failure;
  if (const Failure* failure = verifySignature(token)) return failure;
  if (const Failure* failure = checkTimes()) return failure;
  if (const Failure* failure = checkAudience()) return failure;
  if (const Failure* failure = decryptClaims()) return failure;
  if (const Failure* failure = buildHeaders(out.headers)) return failure;
  collectShared(out.shared);
  out.valid_until = exp_ + skew_;
  return nullptr;
}

const Failure* TokenVerifier::readProtectedHeader(std::string_view segment) {
  std::optional<Json> header = decodeJsonObject(segment);
  if (!header) return &kMalformed;
  bool present = false;
  const std::string* alg = stringMember(*header, "alg", &present);
  if (alg == nullptr) return &kMalformed;
  // Whatever the issuer's list says: with public keys, none and HS* are forgeries by design.
  if (*alg == "none" || alg->starts_with("HS")) return &kAlgNotAllowed;
  // crit (and b64, which needs it) change what the signature covers; cjose knows none of them.
  if (header->contains("crit")) return &kMalformed;
  alg_ = *alg;
  const std::string* kid = stringMember(*header, "kid", &present);
  if (present && kid == nullptr) return &kMalformed;
  if (kid != nullptr) kid_ = *kid;
  return nullptr;
}

// The issuer is chosen from the unverified payload, since its keys and algorithms are what the
// signature is checked with; nothing else of the payload is believed before that check.
const Failure* TokenVerifier::pickIssuer(std::string_view segment) {
  std::optional<Json> claims = decodeJsonObject(segment);
  if (!claims) return &kMalformed;
  claims_ = std::move(*claims);
  bool present = false;
  const std::string* iss = stringMember(claims_, "iss", &present);
  if (iss == nullptr) return &kBadIssuer;
  for (const JwtIssuer& issuer : config_.issuers) {
    if (issuer.issuer == *iss) {
      issuer_ = &issuer;
      break;
    }
  }
  if (issuer_ == nullptr) return &kBadIssuer;
  if (!contains(issuer_->algorithms, alg_)) return &kAlgNotAllowed;
  return nullptr;
}

const Failure* TokenVerifier::verifySignature(std::string_view token) const {
  std::vector<const JwtKey*> keys;
  for (const JwtKey& key : issuer_->keys) {
    if ((!kid_ || key.kid == *kid_) && servesSigning(key, alg_)) keys.push_back(&key);
  }
  if (keys.empty()) return kid_ ? &kUnknownKid : &kNoKey;
  cjose_err err{};
  JwsPtr jws(cjose_jws_import(token.data(), token.size(), &err));
  if (!jws) return cleared(&kMalformed);
  // cjose verifies with the alg of its own parse; it must be the one checked above.
  const char* alg = cjose_header_get(cjose_jws_get_protected(jws.get()), CJOSE_HDR_ALG, &err);
  if (alg == nullptr || alg_ != alg) return cleared(&kMalformed);
  for (const JwtKey* key : keys) {
    ++public_key_operations;
    // A key that failed before this one left OpenSSL errors behind.
    if (cjose_jws_verify(jws.get(), key->jwk.get(), &err)) return cleared(nullptr);
  }
  return cleared(&kBadSignature);
}

const Failure* TokenVerifier::checkTimes() {
  auto exp = claims_.find("exp");
  if (exp == claims_.end() || !exp->is_number()) return &kBadClaims;
  exp_ = exp->get<double>();
  if (!(exp_ > now_ - skew_)) return &kExpired;
  auto nbf = claims_.find("nbf");
  if (nbf == claims_.end()) return nullptr;
  if (!nbf->is_number()) return &kBadClaims;
  return nbf->get<double>() <= now_ + skew_ ? nullptr : &kNotYetValid;
}

const Failure* TokenVerifier::checkAudience() const {
  auto aud = claims_.find("aud");
  if (aud == claims_.end()) return &kBadAudience;
  auto allowed = [this](const Json& value) {
    return value.is_string() && contains(issuer_->audiences, value.get_ref<const std::string&>());
  };
  if (allowed(*aud)) return nullptr;
  if (aud->is_array() && std::any_of(aud->begin(), aud->end(), allowed)) return nullptr;
  return &kBadAudience;
}

const Failure* TokenVerifier::decryptClaims() {
  for (const std::string& name : config_.encrypted_claims) {
    auto claim = claims_.find(name);
    if (claim == claims_.end()) continue;
    if (!claim->is_string()) return &kBadEncryptedClaim;
    Json value;
    const std::string& compact = claim->get_ref<const std::string&>();
    if (const Failure* failure = decryptClaim(compact, config_.decrypt_keys, value)) {
      return failure;
    }
    *claim = std::move(value);
  }
  return nullptr;
}

// An exact top-level name wins, so that a namespaced claim ("https://shop.example/role") is
// reachable as it is; otherwise each dot goes one object down.
const Json* findClaim(const Json& claims, const JwtClaimHeader& mapping) {
  auto exact = claims.find(mapping.claim);
  if (exact != claims.end()) return &*exact;
  const Json* at = &claims;
  for (const std::string& name : mapping.path) {
    if (!at->is_object()) return nullptr;
    auto next = at->find(name);
    if (next == at->end()) return nullptr;
    at = &*next;
  }
  return at;
}

// A CR or LF would end the header line: whatever follows would reach the backend as a header of
// its own, or as a second request.
bool fitsHeader(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return (byte < 0x20 && byte != '\t') || byte == 0x7f;
  });
}

const Failure* TokenVerifier::buildHeaders(std::vector<HeaderField>& out) const {
  for (const JwtClaimHeader& mapping : config_.claims_to_headers) {
    const Json* claim = findClaim(claims_, mapping);
    if (claim == nullptr || claim->is_null()) continue;
    std::string value =
        claim->is_string() ? claim->get_ref<const std::string&>() : compactJson(*claim);
    if (!fitsHeader(value)) return &kBadHeaderValue;
    out.push_back({mapping.header, std::move(value)});
  }
  if (!config_.forward_payload_header.empty()) {
    out.push_back({config_.forward_payload_header, base64urlEncode(compactJson(claims_))});
  }
  return nullptr;
}

void TokenVerifier::collectShared(std::vector<std::pair<std::string, std::string>>& out) const {
  for (const auto& [name, value] : claims_.items()) {
    if (value.is_string()) {
      out.emplace_back("claim:" + name, value.get_ref<const std::string&>());
    } else if (value.is_number() || value.is_boolean()) {
      out.emplace_back("claim:" + name, compactJson(value));
    }
  }
}

// --- The verified-token cache -------------------------------------------------------------------
// Keyed by the token's text: hashing it with std::hash and comparing it whole is cheaper per
// request than a SHA-256 of it.

class TokenCache {
 public:
  explicit TokenCache(size_t capacity) : capacity_(capacity) {}

  // A live entry, which becomes the most recent; nullptr on a miss. An entry whose token has
  // expired since is dropped.
  const Verified* find(std::string_view token, double now) {
    auto it = index_.find(token);
    if (it == index_.end()) return nullptr;
    if (!(now < it->second->second.valid_until)) {
      lru_.erase(it->second);
      index_.erase(it);
      return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    return &it->second->second;
  }

  void insert(std::string token, Verified verified) {
    if (capacity_ == 0 || index_.contains(token)) return;
    if (lru_.size() >= capacity_) {
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
    lru_.emplace_front(std::move(token), std::move(verified));
    index_.emplace(lru_.front().first, lru_.begin());
  }

 private:
  using Entry = std::pair<std::string, Verified>;

  size_t capacity_;
  std::list<Entry> lru_;  // most recently used first
  // Keys are views of the tokens in lru_, whose nodes never move.
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
};

// --- The factory's state and the per-request plugin ---------------------------------------------

// What every instance made by one factory reads. Instances hold it, so a request in flight keeps
// its config even if a reload drops the factory first.
struct FactoryState {
  std::string name;
  Config config;
  uint64_t generation = 0;
  std::vector<std::string> set_headers;  // every header the plugin may set
};

// This worker's cache for the factory of `state`. A thread_local map, so workers never share an
// entry or a lock; entries of factories gone (an earlier reload) are swept when a new one comes.
TokenCache& workerCache(const std::shared_ptr<const FactoryState>& state) {
  struct Slot {
    std::weak_ptr<const FactoryState> owner;
    TokenCache cache;
  };
  thread_local std::unordered_map<uint64_t, Slot> caches;
  auto it = caches.find(state->generation);
  if (it != caches.end()) return it->second.cache;
  std::erase_if(caches, [](const auto& entry) { return entry.second.owner.expired(); });
  Slot slot{state, TokenCache(state->config.cache_entries)};
  return caches.emplace(state->generation, std::move(slot)).first->second.cache;
}

std::string_view trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

// RFC 6750, 2.1: "Bearer" (any case), one or more spaces, the token. Another scheme (Basic) is
// no bearer token at all, and the next source is tried.
std::optional<std::string_view> bearerToken(std::string_view value) {
  constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() ||
      !cookies::equalsIgnoreCase(value.substr(0, kScheme.size()), kScheme) ||
      value[kScheme.size()] != ' ') {
    return std::nullopt;
  }
  return trim(value.substr(kScheme.size()));
}

// A view into the request's headers: valid until the plugin sets a header.
std::optional<std::string_view> findToken(const Request& request, const Config& config) {
  for (const JwtTokenSource& source : config.from) {
    std::optional<std::string_view> token;
    if (source.kind == JwtTokenSource::Kind::kCookie) {
      token = cookies::findCookie(request.headers("Cookie"), source.name);
    } else if (std::optional<std::string_view> value = request.header(source.name)) {
      token = source.bearer ? bearerToken(trim(*value)) : trim(*value);
    }
    if (token && !token->empty()) return token;
  }
  return std::nullopt;
}

class JwtPlugin : public Plugin {
 public:
  JwtPlugin(std::shared_ptr<const FactoryState> state, Context& context, Callbacks& callbacks)
      : state_(std::move(state)),
        config_(state_->config),
        context_(context),
        callbacks_(callbacks) {}

  Verdict onRequestHeaders(Request& request) override;

 private:
  Verdict noToken();
  Verdict reject(const Failure& failure);
  Verdict forward(Request& request, const Verified& verified);

  std::shared_ptr<const FactoryState> state_;
  const Config& config_;
  Context& context_;
  Callbacks& callbacks_;
};

Verdict JwtPlugin::onRequestHeaders(Request& request) {
  for (const std::string& name : state_->set_headers) request.removeHeader(name);
  std::optional<std::string_view> token = findToken(request, config_);
  if (!token) return noToken();
  if (token->size() > kMaxTokenBytes) return reject(kTooLarge);
  std::optional<std::array<std::string_view, 3>> parts = splitCompact<3>(*token);
  if (!parts || (*parts)[0].empty() || (*parts)[1].empty()) return reject(kMalformed);
  double now = std::chrono::duration<double>(context_.now().time_since_epoch()).count();
  TokenCache* cache = config_.cache_entries > 0 ? &workerCache(state_) : nullptr;
  bool cacheable = cache != nullptr && token->size() <= kMaxCachedTokenBytes;
  if (cacheable) {
    if (const Verified* verified = cache->find(*token, now)) {
      context_.count("cache_hit");
      return forward(request, *verified);
    }
  }
  Verified verified;
  if (const Failure* failure = TokenVerifier(config_, now).run(*token, *parts, verified)) {
    return reject(*failure);
  }
  // Copied before forward() sets headers, which may move the storage `token` points into; only
  // on a miss, so a cache hit costs no copy of the token.
  std::string key = cacheable ? std::string(*token) : std::string();
  Verdict verdict = forward(request, verified);
  if (cacheable) cache->insert(std::move(key), std::move(verified));
  return verdict;
}

Verdict JwtPlugin::noToken() {
  context_.count("no_token");
  if (!config_.required) return Verdict::kContinue;
  callbacks_.sendLocalReply(
      401,
      {{"WWW-Authenticate", "Bearer error=\"invalid_request\", error_description=\"no token\""},
       {"Content-Type", "text/plain"}},
      std::string(kBody));
  return Verdict::kStop;
}

Verdict JwtPlugin::reject(const Failure& failure) {
  context_.count(failure.reason);
  if (failure.audited) {
    context_.audit(std::string("jwt_").append(failure.reason), {{"reason", failure.description}});
  }
  std::string challenge = "Bearer error=\"invalid_token\", error_description=\"";
  challenge.append(failure.description).append("\"");
  callbacks_.sendLocalReply(
      401, {{"WWW-Authenticate", std::move(challenge)}, {"Content-Type", "text/plain"}},
      std::string(kBody));
  // kStop, not kContinue: the request has its answer, and nothing may go upstream.
  return Verdict::kStop;
}

Verdict JwtPlugin::forward(Request& request, const Verified& verified) {
  for (const HeaderField& header : verified.headers) request.setHeader(header.name, header.value);
  for (const auto& [name, value] : verified.shared) context_.share(name, value);
  context_.count("ok");
  return Verdict::kContinue;
}

class JwtFactory : public Factory {
 public:
  explicit JwtFactory(std::shared_ptr<const FactoryState> state) : state_(std::move(state)) {}
  std::unique_ptr<Plugin> create(Context& context, Callbacks& callbacks) const override {
    return std::make_unique<JwtPlugin>(state_, context, callbacks);
  }
  std::vector<std::string> shares() const override { return {"claim:*"}; }

 private:
  std::shared_ptr<const FactoryState> state_;
};

}  // namespace

std::shared_ptr<const Factory> makeJwtFactory(const std::string& name, const YAML::Node& node) {
  auto state = std::make_shared<FactoryState>();
  state->name = name;
  state->config = parseJwtConfig(node);
  state->generation = next_generation.fetch_add(1, std::memory_order_relaxed);
  for (const JwtClaimHeader& mapping : state->config.claims_to_headers) {
    state->set_headers.push_back(mapping.header);
  }
  if (!state->config.forward_payload_header.empty()) {
    state->set_headers.push_back(state->config.forward_payload_header);
  }
  return std::make_shared<JwtFactory>(std::move(state));
}

uint64_t jwtPublicKeyOperations() { return public_key_operations; }

}  // namespace tessera::plugins
