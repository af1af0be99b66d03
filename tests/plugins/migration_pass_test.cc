// The migration pass codec (plugins/migration/pass.h): round trips with both encryption key types,
// the format checked with raw cjose calls, every tampering and forgery the format has to survive
// (changed bytes, foreign keys, a re-wrapped inner token, alg none), expiry, what a pass shows
// without a key, peekJti on bad input, key loading, and one codec shared by several threads.

#include <cjose/cjose.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "plugins/migration/pass.h"

namespace tessera::plugins::migration {

// Failures print "bad_signature", not a byte dump. Argument-dependent lookup skips the anonymous
// namespace, so this sits outside it, static so that it clashes with no other test file.
static void PrintTo(PassStatus status, std::ostream* out) { *out << passStatusName(status); }

namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'000;
constexpr const char* kUser = "user-4711@shop.example";
constexpr const char* kDevice = "fp:Mozilla/5.0 (X11; Linux x86_64) de-DE";
constexpr const char* kSessionRef = "9f86d081884c7d659a2feaa0c55ad015";

// --- Keys and raw cjose helpers ------------------------------------------------------------------

std::string take(char* text) {
  std::string out = text == nullptr ? "" : text;
  cjose_get_dealloc()(text);
  return out;
}

JwkPtr ecKey() {
  cjose_err err{};
  return JwkPtr(cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err));
}

JwkPtr rsaKey(size_t bits) {
  static const uint8_t kExponent[] = {0x01, 0x00, 0x01};
  cjose_err err{};
  return JwkPtr(cjose_jwk_create_RSA_random(bits, kExponent, sizeof kExponent, &err));
}

std::string jwkJson(const cjose_jwk_t* jwk, bool with_private) {
  cjose_err err{};
  return take(cjose_jwk_to_json(jwk, with_private, &err));
}

// Made once: RSA key generation takes a while.
struct Keys {
  JwkPtr sig_a = ecKey();
  JwkPtr sig_b = ecKey();
  JwkPtr enc_ec_a = ecKey();
  JwkPtr enc_ec_b = ecKey();
  JwkPtr enc_rsa_a = rsaKey(2048);
  JwkPtr enc_rsa_b = rsaKey(2048);
  JwkPtr rsa_1024 = rsaKey(1024);

  const cjose_jwk_t* enc(bool rsa, bool b = false) const {
    return (rsa ? (b ? enc_rsa_b : enc_rsa_a) : (b ? enc_ec_b : enc_ec_a)).get();
  }
};

const Keys& keys() {
  static const Keys instance;
  return instance;
}

std::unique_ptr<PassCodec> codec(const cjose_jwk_t* sig, const cjose_jwk_t* enc) {
  std::string error;
  std::unique_ptr<PassCodec> out =
      PassCodec::fromJwks(jwkJson(sig, true), jwkJson(enc, true), error);
  EXPECT_NE(out, nullptr) << error;
  return out;
}

std::string b64urlEncode(std::string_view bytes) {
  cjose_err err{};
  char* out = nullptr;
  size_t len = 0;
  cjose_base64url_encode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &out, &len,
                         &err);
  return take(out);
}

std::string b64urlDecode(std::string_view text) {
  cjose_err err{};
  uint8_t* out = nullptr;
  size_t len = 0;
  if (!cjose_base64url_decode(text.data(), text.size(), &out, &len, &err)) return "";
  std::string bytes(reinterpret_cast<char*>(out), len);
  cjose_get_dealloc()(out);
  return bytes;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == '.') {
      parts.emplace_back();
    } else {
      parts.back().push_back(c);
    }
  }
  return parts;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : ".") + parts[i];
  return out;
}

// An ES256 JWS of `claims`, made with cjose directly.
std::string signRaw(const cjose_jwk_t* key, const json& claims) {
  cjose_err err{};
  cjose_header_t* header = cjose_header_new(&err);
  cjose_header_set(header, CJOSE_HDR_ALG, CJOSE_HDR_ALG_ES256, &err);
  cjose_header_set(header, "typ", "JWT", &err);
  std::string payload = claims.dump();
  cjose_jws_t* jws = cjose_jws_sign(key, header, reinterpret_cast<const uint8_t*>(payload.data()),
                                    payload.size(), &err);
  const char* compact = nullptr;
  std::string out = jws != nullptr && cjose_jws_export(jws, &compact, &err) ? compact : "";
  cjose_jws_release(jws);
  cjose_header_release(header);
  return out;
}

// A pass-shaped JWE around any content, made with cjose directly.
std::string encryptRaw(const cjose_jwk_t* key, bool rsa, const std::string& jti,
                       const std::string& content) {
  cjose_err err{};
  cjose_header_t* header = cjose_header_new(&err);
  cjose_header_set(header, CJOSE_HDR_ALG, rsa ? CJOSE_HDR_ALG_RSA_OAEP : CJOSE_HDR_ALG_ECDH_ES,
                   &err);
  cjose_header_set(header, CJOSE_HDR_ENC, CJOSE_HDR_ENC_A256GCM, &err);
  cjose_header_set(header, CJOSE_HDR_CTY, "JWT", &err);
  cjose_header_set(header, "jti", jti.c_str(), &err);
  cjose_jwe_t* jwe = cjose_jwe_encrypt(
      key, header, reinterpret_cast<const uint8_t*>(content.data()), content.size(), &err);
  std::string out = jwe != nullptr ? take(cjose_jwe_export(jwe, &err)) : "";
  cjose_jwe_release(jwe);
  cjose_header_release(header);
  return out;
}

std::optional<std::string> decryptRaw(const cjose_jwk_t* key, const std::string& pass) {
  cjose_err err{};
  cjose_jwe_t* jwe = cjose_jwe_import(pass.data(), pass.size(), &err);
  size_t len = 0;
  uint8_t* plain = jwe != nullptr ? cjose_jwe_decrypt(jwe, key, &len, &err) : nullptr;
  cjose_jwe_release(jwe);
  if (plain == nullptr) return std::nullopt;
  std::string out(reinterpret_cast<char*>(plain), len);
  cjose_get_dealloc()(plain);
  return out;
}

PassClaims sampleClaims() {
  return PassClaims{kUser, kSessionRef, kDevice, newJti(), kNow, kNow + 300};
}

json claimsJson(const PassClaims& c) {
  return {{"sub", c.user}, {"sid", c.session_ref}, {"dev", c.device},
          {"jti", c.jti},  {"iat", c.iat},         {"exp", c.exp}};
}

// --- Round trips, tampering and foreign keys, for both encryption key types ----------------------

class MigrationPassByKeyType : public ::testing::TestWithParam<bool> {
 protected:
  bool rsa() const { return GetParam(); }
  const cjose_jwk_t* enc(bool b = false) const { return keys().enc(rsa(), b); }
};

INSTANTIATE_TEST_SUITE_P(MigrationPass, MigrationPassByKeyType, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "RsaOaep" : "EcdhEs";
                         });

TEST_P(MigrationPassByKeyType, RoundTrip) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), enc());
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->encryptionAlg(), rsa() ? "RSA-OAEP" : "ECDH-ES");
  PassClaims claims = sampleClaims();
  std::string pass = a->issue(claims);
  ASSERT_FALSE(pass.empty());
  EXPECT_LE(pass.size(), kMaxPassBytes);
  EXPECT_EQ(PassCodec::peekJti(pass), claims.jti);
  PassClaims out;
  ASSERT_EQ(a->open(pass, kNow, out), PassStatus::kOk);
  EXPECT_EQ(out.user, claims.user);
  EXPECT_EQ(out.session_ref, claims.session_ref);
  EXPECT_EQ(out.device, claims.device);
  EXPECT_EQ(out.jti, claims.jti);
  EXPECT_EQ(out.iat, claims.iat);
  EXPECT_EQ(out.exp, claims.exp);
  // Fresh randomness per pass (content key, IV, ECDSA nonce): the same claims never repeat.
  EXPECT_NE(a->issue(claims), pass);
}

// The format as other JOSE libraries will see it, checked with raw cjose calls.
TEST_P(MigrationPassByKeyType, FormatIsANestedJwt) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), enc());
  ASSERT_NE(a, nullptr);
  PassClaims claims = sampleClaims();
  std::string pass = a->issue(claims);
  std::vector<std::string> parts = split(pass);
  ASSERT_EQ(parts.size(), 5u);
  json header = json::parse(b64urlDecode(parts[0]));
  EXPECT_EQ(header["alg"], rsa() ? "RSA-OAEP" : "ECDH-ES");
  EXPECT_EQ(header["enc"], "A256GCM");
  EXPECT_EQ(header["cty"], "JWT");
  EXPECT_EQ(header["jti"], claims.jti);
  EXPECT_EQ(parts[1].empty(), !rsa());  // ECDH-ES wraps no key
  std::optional<std::string> inner = decryptRaw(enc(), pass);
  ASSERT_TRUE(inner.has_value());
  std::vector<std::string> jws_parts = split(*inner);
  ASSERT_EQ(jws_parts.size(), 3u);
  EXPECT_EQ(json::parse(b64urlDecode(jws_parts[0])), json({{"alg", "ES256"}, {"typ", "JWT"}}));
  EXPECT_EQ(json::parse(b64urlDecode(jws_parts[1])), claimsJson(claims));
  cjose_err err{};
  cjose_jws_t* jws = cjose_jws_import(inner->data(), inner->size(), &err);
  ASSERT_NE(jws, nullptr);
  EXPECT_TRUE(cjose_jws_verify(jws, keys().sig_a.get(), &err));
  cjose_jws_release(jws);
}

// One changed character in each of the five segments, at the start, the middle and the end; an
// empty segment (ECDH-ES wraps no key) gets four characters instead.
TEST_P(MigrationPassByKeyType, EveryChangedSegmentIsRefused) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), enc());
  ASSERT_NE(a, nullptr);
  const std::string pass = a->issue(sampleClaims());
  const std::vector<std::string> parts = split(pass);
  ASSERT_EQ(parts.size(), 5u);
  PassClaims out;
  for (size_t segment = 0; segment < 5; ++segment) {
    if (parts[segment].empty()) {
      std::vector<std::string> changed = parts;
      changed[segment] = "AAAA";
      EXPECT_EQ(a->open(join(changed), kNow, out), PassStatus::kMalformed) << segment;
      continue;
    }
    const size_t size = parts[segment].size();
    for (size_t at : {size_t{0}, size / 2, size - 1}) {
      std::vector<std::string> changed = parts;
      char& c = changed[segment][at];
      c = c == 'A' ? 'B' : 'A';
      PassStatus status = a->open(join(changed), kNow, out);
      EXPECT_NE(status, PassStatus::kOk) << "segment " << segment << " at " << at;
      // Inside the key, IV, ciphertext or tag, a changed byte is GCM's (or OAEP's) to catch.
      if (segment > 0 && at == size / 2) {
        EXPECT_EQ(status, PassStatus::kUndecryptable) << "segment " << segment;
      }
    }
  }
  EXPECT_EQ(a->open(pass, kNow, out), PassStatus::kOk);  // the original, untouched
}

// The tag's last character carries four unused bits, which a lax decoder ignores: setting them
// would spell the same pass another way, as a new string.
TEST_P(MigrationPassByKeyType, RespelledPassIsRefused) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), enc());
  ASSERT_NE(a, nullptr);
  std::vector<std::string> parts = split(a->issue(sampleClaims()));
  ASSERT_EQ(parts.size(), 5u);
  ASSERT_EQ(parts[4].size(), 22u);
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const std::string tag = b64urlDecode(parts[4]);
  char& last = parts[4].back();
  last = kAlphabet[kAlphabet.find(last) | 1];
  ASSERT_EQ(b64urlDecode(parts[4]), tag);  // cjose's own decoder reads the same 16 bytes
  PassClaims out;
  EXPECT_EQ(PassCodec::peekJti(join(parts)), std::nullopt);
  EXPECT_EQ(a->open(join(parts), kNow, out), PassStatus::kMalformed);
}

TEST_P(MigrationPassByKeyType, EncryptedToAnotherKeyIsUndecryptable) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), enc());
  std::unique_ptr<PassCodec> b = codec(keys().sig_a.get(), enc(/*b=*/true));
  ASSERT_TRUE(a && b);
  PassClaims out;
  EXPECT_EQ(b->open(a->issue(sampleClaims()), kNow, out), PassStatus::kUndecryptable);
  // A codec of the other key type refuses the alg before it tries anything.
  std::unique_ptr<PassCodec> other = codec(keys().sig_a.get(), keys().enc(!rsa()));
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->open(a->issue(sampleClaims()), kNow, out), PassStatus::kUndecryptable);
}

TEST_P(MigrationPassByKeyType, SignedByAnotherKeyIsABadSignature) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), enc());
  std::unique_ptr<PassCodec> b = codec(keys().sig_b.get(), enc());
  ASSERT_TRUE(a && b);
  PassClaims out;
  EXPECT_EQ(a->open(b->issue(sampleClaims()), kNow, out), PassStatus::kBadSignature);
  EXPECT_EQ(b->open(b->issue(sampleClaims()), kNow, out), PassStatus::kOk);
}

// Without the private key, a pass shows neither the user nor the device nor the session.
TEST_P(MigrationPassByKeyType, NothingReadableWithoutTheKey) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), enc());
  ASSERT_NE(a, nullptr);
  std::string pass = a->issue(sampleClaims());
  ASSERT_FALSE(pass.empty());
  for (std::string_view secret : {kUser, kDevice, kSessionRef}) {
    EXPECT_EQ(pass.find(secret), std::string::npos);
    for (const std::string& part : split(pass)) {
      std::string bytes = b64urlDecode(part);
      EXPECT_EQ(part.empty(), bytes.empty());  // every segment decodes
      EXPECT_EQ(bytes.find(secret), std::string::npos) << secret;
    }
  }
}

// --- Hand-made passes: what an attacker who can encrypt to the origin can build ------------------

class MigrationPassHandMade : public ::testing::Test {
 protected:
  void SetUp() override {
    codec_ = codec(keys().sig_a.get(), keys().enc_ec_a.get());
    ASSERT_NE(codec_, nullptr);
  }
  PassStatus open(const std::string& pass) {
    PassClaims out;
    return codec_->open(pass, kNow, out);
  }
  std::string wrap(const std::string& inner, const std::string& jti) {
    return encryptRaw(keys().enc_ec_a.get(), false, jti, inner);
  }

  std::unique_ptr<PassCodec> codec_;
  PassClaims claims_ = sampleClaims();
};

TEST_F(MigrationPassHandMade, BuiltRightIsAccepted) {
  // The builder itself is sound, so the refusals below come from what each one changes.
  EXPECT_EQ(open(wrap(signRaw(keys().sig_a.get(), claimsJson(claims_)), claims_.jti)),
            PassStatus::kOk);
}

TEST_F(MigrationPassHandMade, InnerSignedByAnotherKey) {
  EXPECT_EQ(open(wrap(signRaw(keys().sig_b.get(), claimsJson(claims_)), claims_.jti)),
            PassStatus::kBadSignature);
}

// A genuine inner token under a fresh header jti would escape the single-use mark.
TEST_F(MigrationPassHandMade, HeaderJtiDiffersFromInnerJti) {
  std::string other_jti = newJti();
  std::string pass = wrap(signRaw(keys().sig_a.get(), claimsJson(claims_)), other_jti);
  EXPECT_EQ(PassCodec::peekJti(pass), other_jti);
  EXPECT_EQ(open(pass), PassStatus::kBadSignature);
}

TEST_F(MigrationPassHandMade, InnerAlgOtherThanEs256) {
  std::string payload = b64urlEncode(claimsJson(claims_).dump());
  std::string none = b64urlEncode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  EXPECT_EQ(open(wrap(none, claims_.jti)), PassStatus::kBadSignature);
  std::string hs256 = b64urlEncode(R"({"alg":"HS256","typ":"JWT"})") + "." + payload + "." +
                      b64urlEncode(std::string(32, 'x'));
  EXPECT_EQ(open(wrap(hs256, claims_.jti)), PassStatus::kBadSignature);
  // A genuine signature under a header that names another alg: never handed to cjose.
  std::vector<std::string> genuine = split(signRaw(keys().sig_a.get(), claimsJson(claims_)));
  genuine[0] = b64urlEncode(R"({"alg":"ES384","typ":"JWT"})");
  EXPECT_EQ(open(wrap(join(genuine), claims_.jti)), PassStatus::kBadSignature);
}

TEST_F(MigrationPassHandMade, InnerIsNoJws) {
  EXPECT_EQ(open(wrap("not a token", claims_.jti)), PassStatus::kMalformed);
  EXPECT_EQ(open(wrap("", claims_.jti)), PassStatus::kMalformed);
}

TEST_F(MigrationPassHandMade, SignedClaimsMissingOrOfTheWrongType) {
  for (const char* name : {"sub", "sid", "dev", "jti", "iat", "exp"}) {
    json claims = claimsJson(claims_);
    claims.erase(name);
    EXPECT_EQ(open(wrap(signRaw(keys().sig_a.get(), claims), claims_.jti)), PassStatus::kMalformed)
        << name;
  }
  const std::vector<std::pair<const char*, json>> wrong = {
      {"sub", 4711}, {"dev", nullptr}, {"iat", "1700000000"}, {"exp", 1.7e9 + 300.5}};
  for (const auto& [name, value] : wrong) {
    json claims = claimsJson(claims_);
    claims[name] = value;
    EXPECT_EQ(open(wrap(signRaw(keys().sig_a.get(), claims), claims_.jti)), PassStatus::kMalformed)
        << name;
  }
}

// --- Time ----------------------------------------------------------------------------------------

TEST(MigrationPassTest, ExpiryAndIssuedInTheFuture) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), keys().enc_ec_a.get());
  ASSERT_NE(a, nullptr);
  PassClaims claims = sampleClaims();
  std::string pass = a->issue(claims);
  PassClaims out;
  EXPECT_EQ(a->open(pass, claims.exp - 1, out), PassStatus::kOk);
  out = PassClaims{"untouched", "", "", "", 0, 0};
  EXPECT_EQ(a->open(pass, claims.exp, out), PassStatus::kExpired);
  EXPECT_EQ(out.user, "untouched");  // only kOk fills the claims
  EXPECT_EQ(a->open(pass, claims.exp + 86400, out), PassStatus::kExpired);
  EXPECT_EQ(a->open(pass, claims.iat - kMaxIatAheadSeconds, out), PassStatus::kOk);
  EXPECT_EQ(a->open(pass, claims.iat - kMaxIatAheadSeconds - 1, out), PassStatus::kExpired);
}

// --- peekJti -------------------------------------------------------------------------------------

class MigrationPassPeekJti : public ::testing::Test {
 protected:
  void SetUp() override {
    codec_ = codec(keys().sig_a.get(), keys().enc_ec_a.get());
    ASSERT_NE(codec_, nullptr);
    pass_ = codec_->issue(claims_);
    parts_ = split(pass_);
    ASSERT_EQ(parts_.size(), 5u);
    header_ = json::parse(b64urlDecode(parts_[0]));
  }
  // Refused by peekJti, and by open() for the same reason.
  void expectRefused(const std::string& pass, const std::string& what) {
    EXPECT_EQ(PassCodec::peekJti(pass), std::nullopt) << what;
    PassClaims out;
    EXPECT_EQ(codec_->open(pass, kNow, out), PassStatus::kMalformed) << what;
  }
  std::string withHeader(const json& header) {
    std::vector<std::string> parts = parts_;
    parts[0] = b64urlEncode(header.dump());
    return join(parts);
  }
  std::string withSegment(size_t index, const std::string& value) {
    std::vector<std::string> parts = parts_;
    parts[index] = value;
    return join(parts);
  }

  std::unique_ptr<PassCodec> codec_;
  PassClaims claims_ = sampleClaims();
  std::string pass_;
  std::vector<std::string> parts_;
  json header_;
};

TEST_F(MigrationPassPeekJti, GoodPass) {
  EXPECT_EQ(PassCodec::peekJti(pass_), claims_.jti);
  // The re-encoded header is still the pass's, so the cases below fail for what they change.
  EXPECT_EQ(PassCodec::peekJti(withHeader(header_)), claims_.jti);
}

TEST_F(MigrationPassPeekJti, NotAPass) {
  expectRefused("", "empty");
  expectRefused("garbage", "garbage");
  expectRefused("a.b.c.d", "4 short segments");
  expectRefused(join({parts_[0], parts_[1], parts_[2], parts_[3]}), "4 segments");
  expectRefused(pass_ + ".AAAA", "6 segments");
  expectRefused(pass_ + ".", "6 segments, the last empty");
  expectRefused(std::string(1 << 20, 'A'), "1 MiB without dots");
  expectRefused(withSegment(0, b64urlEncode("not json")), "header not JSON");
  expectRefused(withSegment(0, b64urlEncode("[1,2]")), "header a JSON array");
  expectRefused(withSegment(0, parts_[0] + "="), "padding");
  expectRefused(withSegment(0, parts_[0] + "*"), "not base64url");
}

TEST_F(MigrationPassPeekJti, Sizes) {
  // The ciphertext grown by whole quadruples (still canonical) to the cap, then past it.
  size_t room = (kMaxPassBytes - pass_.size()) / 4 * 4;
  std::string at_cap = withSegment(3, parts_[3] + std::string(room, 'A'));
  EXPECT_EQ(PassCodec::peekJti(at_cap), claims_.jti);
  expectRefused(withSegment(3, parts_[3] + std::string(room + 4, 'A')), "over 8 KiB");
  expectRefused(withSegment(3, ""), "no ciphertext");
  expectRefused(withSegment(2, b64urlEncode(std::string(16, 'i'))), "a 16-byte IV");
  expectRefused(withSegment(4, b64urlEncode(b64urlDecode(parts_[4]).substr(0, 15))), "short tag");
  expectRefused(withSegment(4, parts_[4].substr(0, 2)), "a one-byte tag");
  expectRefused(withSegment(1, "AAAA"), "a wrapped key with ECDH-ES");
}

TEST_F(MigrationPassPeekJti, HeaderMembers) {
  std::vector<std::pair<std::string, json>> cases;
  for (const char* alg : {"none", "dir", "A256KW", "RSA1_5", "ECDH-ES+A256KW", "RSA-OAEP-256"}) {
    json header = header_;
    header["alg"] = alg;
    cases.emplace_back(std::string("alg ") + alg, header);
  }
  for (const char* enc : {"A128GCM", "A192GCM", "A256CBC-HS512", "a256gcm"}) {
    json header = header_;
    header["enc"] = enc;
    cases.emplace_back(std::string("enc ") + enc, header);
  }
  for (const char* name : {"alg", "enc", "cty", "jti", "epk"}) {
    json header = header_;
    header.erase(name);
    cases.emplace_back(std::string("no ") + name, header);
  }
  const std::vector<std::pair<const char*, json>> members = {{"jti", "short"},
                                                             {"jti", std::string(65, 'j')},
                                                             {"jti", "has space in the middle"},
                                                             {"jti", "dots.are.not.ok"},
                                                             {"jti", 1234567890123456789},
                                                             {"cty", "json"},
                                                             {"zip", "DEF"},
                                                             {"crit", json::array({"exp"})},
                                                             {"alg", json::array({"ECDH-ES"})}};
  for (const auto& [name, value] : members) {
    json header = header_;
    header[name] = value;
    cases.emplace_back(std::string(name) + " " + value.dump(), header);
  }
  json epk = header_;
  epk["epk"]["crv"] = "P-384";
  cases.emplace_back("epk on P-384", epk);
  epk = header_;
  epk["epk"]["d"] = b64urlEncode(std::string(32, 'd'));
  cases.emplace_back("epk with a private part", epk);
  json rsa_alg = header_;
  rsa_alg["alg"] = "RSA-OAEP";
  cases.emplace_back("RSA-OAEP without a wrapped key", rsa_alg);
  for (const auto& [what, header] : cases) expectRefused(withHeader(header), what);
}

// --- newJti --------------------------------------------------------------------------------------

TEST(MigrationPassTest, NewJti) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string jti = newJti();
    ASSERT_EQ(jti.size(), 22u);
    EXPECT_EQ(
        jti.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        std::string::npos)
        << jti;
    EXPECT_EQ(b64urlDecode(jti).size(), 16u);
    seen.insert(jti);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(MigrationPassTest, StatusNames) {
  EXPECT_EQ(passStatusName(PassStatus::kOk), "ok");
  EXPECT_EQ(passStatusName(PassStatus::kMalformed), "malformed");
  EXPECT_EQ(passStatusName(PassStatus::kUndecryptable), "undecryptable");
  EXPECT_EQ(passStatusName(PassStatus::kBadSignature), "bad_signature");
  EXPECT_EQ(passStatusName(PassStatus::kExpired), "expired");
}

// --- issue's own refusals ------------------------------------------------------------------------

TEST(MigrationPassTest, IssueRefusesClaimsThatCannotMakeAPass) {
  std::unique_ptr<PassCodec> a = codec(keys().sig_a.get(), keys().enc_ec_a.get());
  ASSERT_NE(a, nullptr);
  std::vector<std::pair<const char*, PassClaims>> cases;
  auto add = [&](const char* what, auto change) {
    PassClaims claims = sampleClaims();
    change(claims);
    cases.emplace_back(what, claims);
  };
  add("no user", [](PassClaims& c) { c.user.clear(); });
  add("no session", [](PassClaims& c) { c.session_ref.clear(); });
  add("no jti", [](PassClaims& c) { c.jti.clear(); });
  add("short jti", [](PassClaims& c) { c.jti = "abc"; });
  add("jti with a space", [](PassClaims& c) { c.jti = "0123456789 abcdefghij"; });
  add("exp == iat", [](PassClaims& c) { c.exp = c.iat; });
  add("stray byte", [](PassClaims& c) { c.user = "user\xff"; });
  add("overlong slash", [](PassClaims& c) { c.device = "\xc0\xaf"; });
  add("surrogate", [](PassClaims& c) { c.session_ref = "\xed\xa0\x80"; });
  add("cut sequence", [](PassClaims& c) { c.user = "z\xc3"; });
  add("too large", [](PassClaims& c) { c.device = std::string(kMaxPassBytes, 'x'); });
  for (const auto& [what, claims] : cases) EXPECT_EQ(a->issue(claims), "") << what;

  PassClaims unicode = sampleClaims();
  unicode.user = "Zoë \xf0\x9f\xa6\x8a 用户";
  unicode.device = "";
  PassClaims out;
  ASSERT_EQ(a->open(a->issue(unicode), kNow, out), PassStatus::kOk);
  EXPECT_EQ(out.user, unicode.user);
  EXPECT_EQ(out.device, "");
}

// --- Keys ----------------------------------------------------------------------------------------

// Not a key member's value: an error ends up in logs.
void expectRefusedKeys(const std::string& signing, const std::string& encryption,
                       const std::string& expected_words) {
  std::string error;
  EXPECT_EQ(PassCodec::fromJwks(signing, encryption, error), nullptr) << expected_words;
  EXPECT_NE(error.find(expected_words), std::string::npos) << error;
  for (const std::string& text : {signing, encryption}) {
    json jwk = json::parse(text, nullptr, false);
    if (jwk.is_object() && jwk.contains("d")) {
      EXPECT_EQ(error.find(jwk["d"].get<std::string>()), std::string::npos) << error;
    }
  }
}

TEST(MigrationPassTest, KeysThatAreRefused) {
  const Keys& k = keys();
  std::string sig = jwkJson(k.sig_a.get(), true);
  std::string enc = jwkJson(k.enc_ec_a.get(), true);
  cjose_err err{};
  JwkPtr p384(cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_384, &err));
  JwkPtr oct(cjose_jwk_create_oct_random(32, &err));

  expectRefusedKeys(jwkJson(k.enc_rsa_a.get(), true), enc, "signing key: expected an EC P-256");
  expectRefusedKeys(jwkJson(p384.get(), true), enc, "signing key: expected an EC P-256");
  expectRefusedKeys(jwkJson(oct.get(), true), enc, "signing key: expected an EC P-256");
  expectRefusedKeys(sig, jwkJson(p384.get(), true), "encryption key: expected an EC P-256");
  expectRefusedKeys(sig, jwkJson(oct.get(), true), "encryption key: expected an EC P-256");
  expectRefusedKeys(jwkJson(k.sig_a.get(), false), enc, "signing key: a public key");
  expectRefusedKeys(sig, jwkJson(k.enc_ec_a.get(), false), "encryption key: a public key");
  expectRefusedKeys(sig, jwkJson(k.enc_rsa_a.get(), false), "encryption key: a public key");
  expectRefusedKeys(sig, jwkJson(k.rsa_1024.get(), true), "at least 2048 bits");
  expectRefusedKeys("{not json", enc, "signing key: not a JWK");
  expectRefusedKeys(sig, "[]", "encryption key: not a JWK");
  expectRefusedKeys(sig, sig, "one key for both");

  json sig_for_enc = json::parse(sig);
  sig_for_enc["use"] = "enc";
  expectRefusedKeys(sig_for_enc.dump(), enc, "signing key: its \"use\" or \"alg\"");
  json sig_es384 = json::parse(sig);
  sig_es384["alg"] = "ES384";
  expectRefusedKeys(sig_es384.dump(), enc, "signing key: its \"use\" or \"alg\"");
  json enc_for_sig = json::parse(enc);
  enc_for_sig["use"] = "sig";
  expectRefusedKeys(sig, enc_for_sig.dump(), "encryption key: its \"use\" or \"alg\"");
  json rsa_wrong_alg = json::parse(jwkJson(k.enc_rsa_a.get(), true));
  rsa_wrong_alg["alg"] = "RSA1_5";
  expectRefusedKeys(sig, rsa_wrong_alg.dump(), "encryption key: its \"use\" or \"alg\"");
}

TEST(MigrationPassTest, KeysThatFitTheirUse) {
  json sig = json::parse(jwkJson(keys().sig_a.get(), true));
  sig["use"] = "sig";
  sig["alg"] = "ES256";
  json enc = json::parse(jwkJson(keys().enc_rsa_a.get(), true));
  enc["use"] = "enc";
  enc["alg"] = "RSA-OAEP";
  std::string error;
  std::unique_ptr<PassCodec> a = PassCodec::fromJwks(sig.dump(), enc.dump(), error);
  ASSERT_NE(a, nullptr) << error;
  EXPECT_EQ(a->encryptionAlg(), "RSA-OAEP");
}

// cjose decrypts with the CRT members and the private exponent without checking them against n;
// such a key must fail at load, not on the first pass.
TEST(MigrationPassTest, InconsistentPrivateKeyIsRefused) {
  json enc = json::parse(jwkJson(keys().enc_rsa_a.get(), true));
  for (const char* name : {"d", "dp", "dq"}) {
    std::string value = enc[name].get<std::string>();
    value[value.size() / 2] = value[value.size() / 2] == 'A' ? 'B' : 'A';
    enc[name] = value;
  }
  expectRefusedKeys(jwkJson(keys().sig_a.get(), true), enc.dump(), "does not open");
}

TEST(MigrationPassTest, FromFiles) {
  std::string dir = std::filesystem::temp_directory_path() /
                    ("migration_pass_test." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name, std::ios::binary) << text;
    return dir + "/" + name;
  };
  std::string sig = write("sig.jwk.json", jwkJson(keys().sig_a.get(), true));
  std::string enc = write("enc.jwk.json", jwkJson(keys().enc_ec_a.get(), true));
  std::string pub = write("enc.pub.json", jwkJson(keys().enc_ec_a.get(), false));
  std::string big = write("big.json", std::string((1 << 20) + 1, ' '));
  std::string error;

  std::unique_ptr<PassCodec> a = PassCodec::fromFiles(sig, enc, error);
  ASSERT_NE(a, nullptr) << error;
  PassClaims out;
  EXPECT_EQ(a->open(a->issue(sampleClaims()), kNow, out), PassStatus::kOk);

  EXPECT_EQ(PassCodec::fromFiles(sig, dir + "/missing.json", error), nullptr);
  EXPECT_NE(error.find(dir + "/missing.json: cannot open"), std::string::npos) << error;
  EXPECT_EQ(PassCodec::fromFiles(sig, pub, error), nullptr);
  EXPECT_NE(error.find(pub + ": a public key"), std::string::npos) << error;
  EXPECT_EQ(PassCodec::fromFiles(big, enc, error), nullptr);
  EXPECT_NE(error.find(big + ": larger than 1 MiB"), std::string::npos) << error;
  std::filesystem::remove_all(dir);
}

// --- Threads -------------------------------------------------------------------------------------

// One codec per key type, shared by four threads that issue and open at once, as workers do.
TEST(MigrationPassTest, OneCodecSharedByThreads) {
  for (bool rsa : {false, true}) {
    std::unique_ptr<PassCodec> shared = codec(keys().sig_a.get(), keys().enc(rsa));
    ASSERT_NE(shared, nullptr);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 25; ++i) {
          PassClaims claims = sampleClaims();
          claims.user = "user-" + std::to_string(t) + "-" + std::to_string(i);
          PassClaims out;
          if (shared->open(shared->issue(claims), kNow, out) != PassStatus::kOk ||
              out.user != claims.user || out.jti != claims.jti) {
            ++failures;
          }
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(failures.load(), 0) << (rsa ? "RSA-OAEP" : "ECDH-ES");
  }
}

}  // namespace
}  // namespace tessera::plugins::migration
