// jwt: the plugin behind a fake proxy, with keys, JWKS files and tokens made at test time by
// cjose (the auth center's side): a valid token, every refusal the issue lists (each with its
// exact status, `error=` and metric), `required: false`, the verified-token cache, and the
// config errors that guard against alg confusion and unreadable key files.

#include "plugins/jwt/jwt.h"

#include <cjose/cjose.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/jwt/jwt_config.h"
#include "tests/plugins/fakes.h"

namespace tessera::plugins {
namespace {

using Json = nlohmann::json;
using std::chrono::seconds;
using std::chrono::sys_seconds;
using testing::equalsIgnoreCase;
using testing::FakeCallbacks;
using testing::FakeContext;
using testing::FakeRequest;
using testing::Reply;

constexpr std::string_view kIssuer = "https://auth.example";
constexpr int64_t kNow = 1'700'000'000;
constexpr std::string_view kIdCard = "ID-4711-0815";

// --- Keys and tokens, made with cjose -----------------------------------------------------------

struct JwkRelease {
  void operator()(cjose_jwk_t* jwk) const { cjose_jwk_release(jwk); }
};
using JwkPtr = std::unique_ptr<cjose_jwk_t, JwkRelease>;

// Strings cjose allocates for its caller.
std::string take(char* text) {
  std::string out = text == nullptr ? "" : text;
  cjose_get_dealloc()(text);
  return out;
}

JwkPtr withKid(cjose_jwk_t* jwk, std::string_view kid) {
  cjose_err err{};
  if (jwk == nullptr) ADD_FAILURE() << "key generation failed";
  if (jwk != nullptr && !kid.empty()) cjose_jwk_set_kid(jwk, kid.data(), kid.size(), &err);
  return JwkPtr(jwk);
}

JwkPtr ecKey(std::string_view kid) {
  cjose_err err{};
  return withKid(cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err), kid);
}

JwkPtr rsaKey(std::string_view kid) {
  static const uint8_t kExponent[] = {0x01, 0x00, 0x01};
  cjose_err err{};
  return withKid(cjose_jwk_create_RSA_random(2048, kExponent, sizeof(kExponent), &err), kid);
}

Json jwkJson(const cjose_jwk_t* jwk, bool with_private) {
  cjose_err err{};
  return Json::parse(take(cjose_jwk_to_json(jwk, with_private, &err)));
}

std::string base64url(std::string_view bytes) {
  cjose_err err{};
  char* out = nullptr;
  size_t size = 0;
  EXPECT_TRUE(cjose_base64url_encode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                     &out, &size, &err));
  return take(out);
}

std::string unbase64url(std::string_view text) {
  cjose_err err{};
  uint8_t* out = nullptr;
  size_t size = 0;
  EXPECT_TRUE(cjose_base64url_decode(text.data(), text.size(), &out, &size, &err));
  std::string bytes(reinterpret_cast<const char*>(out), size);
  cjose_get_dealloc()(out);
  return bytes;
}

cjose_header_t* header(std::initializer_list<std::pair<const char*, std::string_view>> members) {
  cjose_err err{};
  cjose_header_t* out = cjose_header_new(&err);
  for (const auto& [name, value] : members) {
    if (!value.empty()) cjose_header_set(out, name, std::string(value).c_str(), &err);
  }
  return out;
}

std::string sign(const cjose_jwk_t* key, std::string_view alg, std::string_view kid,
                 const Json& claims) {
  cjose_err err{};
  cjose_header_t* protected_header = header({{CJOSE_HDR_ALG, alg}, {CJOSE_HDR_KID, kid}});
  std::string payload = claims.dump();
  cjose_jws_t* jws =
      cjose_jws_sign(key, protected_header, reinterpret_cast<const uint8_t*>(payload.data()),
                     payload.size(), &err);
  cjose_header_release(protected_header);
  EXPECT_NE(jws, nullptr) << err.message;
  const char* compact = nullptr;
  EXPECT_TRUE(cjose_jws_export(jws, &compact, &err));
  std::string token = compact;  // owned by the JWS
  cjose_jws_release(jws);
  return token;
}

std::string encrypt(const cjose_jwk_t* key, std::string_view alg, std::string_view kid,
                    std::string_view plaintext) {
  cjose_err err{};
  cjose_header_t* protected_header =
      header({{CJOSE_HDR_ALG, alg}, {CJOSE_HDR_ENC, CJOSE_HDR_ENC_A256GCM}, {CJOSE_HDR_KID, kid}});
  cjose_jwe_t* jwe =
      cjose_jwe_encrypt(key, protected_header, reinterpret_cast<const uint8_t*>(plaintext.data()),
                        plaintext.size(), &err);
  cjose_header_release(protected_header);
  EXPECT_NE(jwe, nullptr) << err.message;
  std::string compact = take(cjose_jwe_export(jwe, &err));
  cjose_jwe_release(jwe);
  return compact;
}

// Every key of the suite, and the JWKS files the proxy reads, in a directory made for the run.
struct Keys {
  Keys() {
    char dir_template[] = "/tmp/jwt_test.XXXXXX";
    dir = mkdtemp(dir_template);
    write("auth.jwks.json", {sig_ec.get(), sig_rsa.get()}, false);
    write("proxy.jwks.json", {enc_ec.get(), enc_rsa.get()}, true);
  }
  ~Keys() { std::filesystem::remove_all(dir); }

  void write(const std::string& name, std::vector<const cjose_jwk_t*> keys, bool with_private) {
    Json jwks = {{"keys", Json::array()}};
    for (const cjose_jwk_t* key : keys) jwks["keys"].push_back(jwkJson(key, with_private));
    std::ofstream(dir + "/" + name) << jwks.dump(2);
  }

  JwkPtr sig_ec = ecKey("sig-ec");
  JwkPtr sig_rsa = rsaKey("sig-rsa");
  JwkPtr enc_ec = ecKey("enc-ec");
  JwkPtr enc_rsa = rsaKey("enc-rsa");
  // Not in any file: the proxy cannot decrypt what is encrypted to it, under the same kid.
  JwkPtr stranger = ecKey("enc-ec");
  std::string dir;
};

const Keys& keys() {
  static const Keys instance;
  return instance;
}

// --- The fixture --------------------------------------------------------------------------------

std::string configYaml(std::string_view extra = "") {
  const std::string& dir = keys().dir;
  return R"(type: jwt
from: [header:Authorization, cookie:access_token]
issuers:
  - issuer: https://auth.example
    audiences: [shop]
    keys: )" +
         dir + R"(/auth.jwks.json
    algorithms: [ES256, RS256, PS256]
decrypt_keys: )" +
         dir + R"(/proxy.jwks.json
encrypted_claims: [pii]
claims_to_headers: { sub: X-User-Id, role: X-User-Role, pii.id_card: X-User-Id-Card }
forward_payload_header: X-Jwt-Claims
clock_skew: 60s
)" + std::string(extra);
}

// What one request through the plugin came to.
struct Outcome {
  Verdict verdict = Verdict::kContinue;
  std::optional<Reply> reply;
  std::shared_ptr<FakeRequest> request;

  std::optional<std::string_view> header(std::string_view name) const {
    return request->header(name);
  }
  // The `error` parameter of the WWW-Authenticate challenge, or "" without one.
  std::string error() const {
    if (!reply) return "";
    for (const HeaderField& h : reply->headers) {
      if (!equalsIgnoreCase(h.name, "WWW-Authenticate")) continue;
      size_t begin = h.value.find("error=\"");
      if (begin == std::string::npos) return "";
      begin += 7;
      return h.value.substr(begin, h.value.find('"', begin) - begin);
    }
    return "";
  }
};

class JwtTest : public ::testing::Test {
 protected:
  // The proxy's side: a clock the test moves, no store.
  JwtTest() {
    context_.wall_time = sys_seconds(seconds(kNow));
    context_.on_post = [](std::string_view) { ADD_FAILURE() << "jwt makes no HTTPS calls"; };
  }

  void SetUp() override { factory_ = makeJwtFactory("api_jwt", YAML::Load(configYaml())); }

  void reconfigure(std::string_view extra) {
    factory_ = makeJwtFactory("api_jwt", YAML::Load(configYaml(extra)));
  }

  Outcome send(std::vector<HeaderField> headers) {
    Outcome outcome;
    outcome.request = std::make_shared<FakeRequest>("GET", "/api/orders", std::move(headers));
    FakeCallbacks callbacks;
    std::unique_ptr<Plugin> plugin = factory_->create(context_, callbacks);
    outcome.verdict = plugin->onRequestHeaders(*outcome.request);
    plugin->onDestroy();
    EXPECT_EQ(callbacks.resumes, 0u);  // synchronous: nothing to resume
    EXPECT_LE(callbacks.replies.size(), 1u);
    if (!callbacks.replies.empty()) {
      outcome.reply = callbacks.replies.front();
      // A reply from inside the hook comes with kStop: the chain must not go on.
      EXPECT_EQ(outcome.verdict, Verdict::kStop);
    }
    return outcome;
  }

  Outcome sendToken(std::string_view token) {
    return send({{"Authorization", "Bearer " + std::string(token)}});
  }

  // The claims of a good token: `pii` encrypted to the proxy's EC key.
  static Json claims() {
    return {{"iss", kIssuer},
            {"aud", "shop"},
            {"sub", "u1"},
            {"role", "buyer"},
            {"exp", kNow + 300},
            {"pii", encrypt(keys().enc_ec.get(), CJOSE_HDR_ALG_ECDH_ES, "enc-ec",
                            Json{{"id_card", kIdCard}, {"phone", "+49 30 1234"}}.dump())}};
  }

  static std::string token(const Json& claims) {
    return sign(keys().sig_ec.get(), CJOSE_HDR_ALG_ES256, "sig-ec", claims);
  }

  // Asserts the exact answer of a refusal, and the metric that counted it.
  void expectRefused(const Outcome& outcome, std::string_view error, std::string_view metric) {
    ASSERT_TRUE(outcome.reply) << "expected a 401 for " << metric;
    EXPECT_EQ(outcome.reply->status, 401);
    EXPECT_EQ(outcome.error(), error);
    EXPECT_EQ(outcome.reply->body, "unauthorized\n");
    EXPECT_EQ(context_.counts[std::string(metric)], 1) << metric;
    EXPECT_EQ(context_.counts["ok"], 0);
    EXPECT_FALSE(outcome.header("X-User-Id"));
    context_.counts.clear();
    // Forgery and tampering are audited; a client's own mistakes are only counted.
    static const std::set<std::string_view> kAudited = {"alg_not_allowed",     "bad_issuer",
                                                        "unknown_kid",         "bad_signature",
                                                        "bad_encrypted_claim", "decrypt_failed"};
    if (kAudited.count(metric) != 0) {
      ASSERT_EQ(context_.audits.size(), 1u) << metric;
      EXPECT_EQ(context_.audits[0].event, "jwt_" + std::string(metric));
    } else {
      EXPECT_TRUE(context_.audits.empty()) << metric << ": " << context_.audits[0].event;
    }
    context_.audits.clear();
  }

  void expectPassed(const Outcome& outcome) {
    EXPECT_FALSE(outcome.reply) << (outcome.reply ? outcome.error() : "");
    EXPECT_EQ(outcome.verdict, Verdict::kContinue);
    EXPECT_EQ(context_.counts["ok"], 1);
    context_.counts.clear();
  }

  FakeContext context_;
  std::shared_ptr<const Factory> factory_;
};

// --- A valid token ------------------------------------------------------------------------------

struct Signer {
  const char* alg;
  bool rsa;          // signed with the RSA key, else the EC one
  bool encrypt_rsa;  // `pii` encrypted with RSA-OAEP, else ECDH-ES
};

class JwtValidTokenTest : public JwtTest, public ::testing::WithParamInterface<Signer> {};

TEST_P(JwtValidTokenTest, SetsTheMappedHeadersAndDropsTheClientsOwn) {
  const Signer& signer = GetParam();
  const Keys& k = keys();
  Json body = claims();
  body["aud"] = {"billing", "shop"};
  body["pii"] = signer.encrypt_rsa ? encrypt(k.enc_rsa.get(), CJOSE_HDR_ALG_RSA_OAEP, "enc-rsa",
                                             Json{{"id_card", kIdCard}}.dump())
                                   : encrypt(k.enc_ec.get(), CJOSE_HDR_ALG_ECDH_ES, "",
                                             Json{{"id_card", kIdCard}}.dump());
  std::string jwt = signer.rsa ? sign(k.sig_rsa.get(), signer.alg, "sig-rsa", body)
                               : sign(k.sig_ec.get(), signer.alg, "sig-ec", body);

  Outcome outcome = send({{"authorization", "bearer " + jwt},
                          {"x-user-id", "admin"},
                          {"X-User-Id-Card", "forged"},
                          {"X-Jwt-Claims", "e30"}});
  expectPassed(outcome);
  EXPECT_EQ(outcome.request->headers("X-User-Id"), std::vector<std::string_view>{"u1"});
  EXPECT_EQ(outcome.header("X-User-Role"), "buyer");
  EXPECT_EQ(outcome.request->headers("X-User-Id-Card"), std::vector<std::string_view>{kIdCard});
  Json forwarded = Json::parse(unbase64url(*outcome.header("X-Jwt-Claims")));
  EXPECT_EQ(forwarded["pii"]["id_card"], kIdCard);  // decrypted, not the JWE string
  EXPECT_EQ(forwarded["sub"], "u1");
  EXPECT_EQ(outcome.header("Authorization"), "bearer " + jwt);  // the backend may want it too
}

INSTANTIATE_TEST_SUITE_P(Algorithms, JwtValidTokenTest,
                         ::testing::Values(Signer{"ES256", false, false},
                                           Signer{"RS256", true, true},
                                           Signer{"PS256", true, false}),
                         [](const ::testing::TestParamInfo<Signer>& info) {
                           return std::string(info.param.alg);
                         });

// --- Refusals -----------------------------------------------------------------------------------

TEST_F(JwtTest, AlgNone) {
  std::string header = base64url(R"({"alg":"none","kid":"sig-ec"})");
  std::string payload = base64url(claims().dump());
  expectRefused(sendToken(header + "." + payload + "."), "invalid_token", "alg_not_allowed");
  // The same, with a signature part that cjose would ignore for none.
  expectRefused(sendToken(header + "." + payload + ".c2ln"), "invalid_token", "alg_not_allowed");
}

TEST_F(JwtTest, AlgNotInTheIssuersList) {
  // RS384 with a key the issuer does have: only the pin stops it.
  std::string jwt = sign(keys().sig_rsa.get(), CJOSE_HDR_ALG_RS384, "sig-rsa", claims());
  uint64_t before = jwtPublicKeyOperations();
  expectRefused(sendToken(jwt), "invalid_token", "alg_not_allowed");
  EXPECT_EQ(jwtPublicKeyOperations(), before);  // refused before cjose verifies anything
}

TEST_F(JwtTest, Hs256KeyedWithTheRsaPublicKeyIsRefused) {
  // The classic alg confusion: an HMAC whose key is the bytes anyone can read in the JWKS.
  std::string public_key = jwkJson(keys().sig_rsa.get(), false).dump();
  cjose_err err{};
  JwkPtr hmac_key(cjose_jwk_create_oct_spec(reinterpret_cast<const uint8_t*>(public_key.data()),
                                            public_key.size(), &err));
  ASSERT_TRUE(hmac_key);
  std::string jwt = sign(hmac_key.get(), CJOSE_HDR_ALG_HS256, "sig-rsa", claims());
  expectRefused(sendToken(jwt), "invalid_token", "alg_not_allowed");
}

TEST_F(JwtTest, ExpOnBothSidesOfTheSkew) {
  Json body = claims();
  body["exp"] = kNow - 59;  // expired 59 s ago, within the 60 s skew
  expectPassed(sendToken(token(body)));
  body["exp"] = kNow - 60;
  expectRefused(sendToken(token(body)), "invalid_token", "expired");
}

TEST_F(JwtTest, NbfOnBothSidesOfTheSkew) {
  Json body = claims();
  body["nbf"] = kNow + 60;  // valid in 60 s: the clocks may be that far apart
  expectPassed(sendToken(token(body)));
  body["nbf"] = kNow + 61;
  expectRefused(sendToken(token(body)), "invalid_token", "not_yet_valid");
}

TEST_F(JwtTest, WrongAudience) {
  Json body = claims();
  body["aud"] = {"billing", "admin"};
  expectRefused(sendToken(token(body)), "invalid_token", "bad_audience");
  body["aud"] = "shop-admin";
  expectRefused(sendToken(token(body)), "invalid_token", "bad_audience");
}

TEST_F(JwtTest, WrongIssuer) {
  Json body = claims();
  body["iss"] = "https://auth.example.evil";
  expectRefused(sendToken(token(body)), "invalid_token", "bad_issuer");
}

TEST_F(JwtTest, PayloadChangedByOneByte) {
  std::string jwt = token(claims());
  size_t first = jwt.find('.');
  size_t second = jwt.find('.', first + 1);
  std::string payload = unbase64url(jwt.substr(first + 1, second - first - 1));
  size_t at = payload.find("\"u1\"");
  ASSERT_NE(at, std::string::npos);
  payload[at + 2] = '2';  // sub u1 -> u2: still JSON, still the same issuer
  std::string forged = jwt.substr(0, first + 1) + base64url(payload) + jwt.substr(second);
  expectRefused(sendToken(forged), "invalid_token", "bad_signature");
}

TEST_F(JwtTest, UnknownKid) {
  std::string jwt = sign(keys().sig_ec.get(), CJOSE_HDR_ALG_ES256, "sig-ec-2024", claims());
  expectRefused(sendToken(jwt), "invalid_token", "unknown_kid");
}

TEST_F(JwtTest, JweWithATruncatedGcmTag) {
  std::string jwe = claims()["pii"];
  // 22 characters are the 16-byte tag; 16 are 12 bytes, which cjose 0.6.2.1 as released took.
  jwe.resize(jwe.size() - 6);
  Json body = claims();
  body["pii"] = jwe;
  std::string jwt = token(body);
  uint64_t before = jwtPublicKeyOperations();
  expectRefused(sendToken(jwt), "invalid_token", "decrypt_failed");
  // The signature was checked; cjose was never asked to decrypt with the short tag.
  EXPECT_EQ(jwtPublicKeyOperations(), before + 1);
}

TEST_F(JwtTest, JweEncryptedToAnotherKey) {
  Json body = claims();
  body["pii"] = encrypt(keys().stranger.get(), CJOSE_HDR_ALG_ECDH_ES, "enc-ec",
                        Json{{"id_card", kIdCard}}.dump());
  expectRefused(sendToken(token(body)), "invalid_token", "decrypt_failed");
}

TEST_F(JwtTest, NonStringEncryptedClaim) {
  Json body = claims();
  body["pii"] = {{"id_card", "forged by whoever had the signing key, not the encryption key"}};
  expectRefused(sendToken(token(body)), "invalid_token", "bad_encrypted_claim");
}

TEST_F(JwtTest, Oversized64KibTokenAndGarbage) {
  std::string huge = token(claims());
  huge.insert(huge.find('.') + 1, std::string(64 * 1024, 'A'));
  expectRefused(sendToken(huge), "invalid_token", "too_large");

  std::string valid = token(claims());
  for (std::string garbage : {std::string("garbage"), std::string("a.b"),
                              valid + ".x",                        // four parts
                              std::string("!!!.???.***"),          // not base64url
                              std::string("e30.e30.e30"),          // {} has no alg
                              std::string("bm90IGpzb24.e30.e30"),  // "not json"
                              std::string(".e30.e30"),             // empty header
                              std::string("\x01\x02\xff.\x80.\x7f")}) {
    SCOPED_TRACE(garbage);
    expectRefused(sendToken(garbage), "invalid_token", "malformed");
  }
}

// --- Without a token ----------------------------------------------------------------------------

TEST_F(JwtTest, NoTokenWhenRequired) {
  Outcome outcome = send({{"Authorization", "Basic dXNlcjpwYXNz"}, {"X-User-Id", "admin"}});
  expectRefused(outcome, "invalid_request", "no_token");
  EXPECT_EQ(outcome.reply->headers.front().value,
            "Bearer error=\"invalid_request\", error_description=\"no token\"");
}

TEST_F(JwtTest, NotRequiredWithoutTokenPassesWithHeadersStripped) {
  reconfigure("required: false\n");
  Outcome outcome = send({{"X-User-Id", "admin"},
                          {"x-user-role", "staff"},
                          {"X-User-Id-Card", "forged"},
                          {"X-Jwt-Claims", "e30"}});
  EXPECT_FALSE(outcome.reply);
  EXPECT_EQ(outcome.verdict, Verdict::kContinue);
  for (const char* name : {"X-User-Id", "X-User-Role", "X-User-Id-Card", "X-Jwt-Claims"}) {
    EXPECT_FALSE(outcome.header(name)) << name;
  }
  // A token that is there but bad is still refused.
  Json body = claims();
  body["exp"] = kNow - 3600;
  expectRefused(sendToken(token(body)), "invalid_token", "expired");
}

// --- The verified-token cache -------------------------------------------------------------------

TEST_F(JwtTest, CachedTokenCostsNoPublicKeyOperation) {
  std::string jwt = token(claims());
  uint64_t before = jwtPublicKeyOperations();
  Outcome first = send({{"Cookie", "theme=dark; access_token=" + jwt}});
  expectPassed(first);
  EXPECT_EQ(jwtPublicKeyOperations(), before + 2);  // one signature, one decryption

  Outcome second = send({{"Cookie", "access_token=" + jwt}, {"X-User-Id", "admin"}});
  expectPassed(second);
  EXPECT_EQ(jwtPublicKeyOperations(), before + 2);
  EXPECT_EQ(second.request->headers("X-User-Id"), std::vector<std::string_view>{"u1"});
  EXPECT_EQ(second.header("X-User-Id-Card"), kIdCard);
  EXPECT_EQ(second.header("X-Jwt-Claims"), first.header("X-Jwt-Claims"));
}

TEST_F(JwtTest, SharesTheScalarClaimsForLaterPlugins) {
  Json body = claims();
  body["admin"] = false;
  body["tags"] = {"a", "b"};
  std::string jwt = token(body);
  for (int round = 0; round < 2; ++round) {  // verified, then from the cache
    context_.shared_values.clear();
    expectPassed(sendToken(jwt));
    EXPECT_EQ(context_.shared("claim:sub"), "u1") << round;
    EXPECT_EQ(context_.shared("claim:role"), "buyer");
    EXPECT_EQ(context_.shared("claim:exp"), std::to_string(kNow + 300));
    EXPECT_EQ(context_.shared("claim:admin"), "false");
    EXPECT_FALSE(context_.shared("claim:tags"));  // a list is no single value
    EXPECT_FALSE(context_.shared("claim:pii"));   // an object, once decrypted
  }
  context_.shared_values.clear();
  body["aud"] = "billing";
  expectRefused(sendToken(token(body)), "invalid_token", "bad_audience");
  EXPECT_TRUE(context_.shared_values.empty());  // a refused token tells nobody anything
}

// The cache keeps tokens up to 4 KiB, by their whole text; a longer one is verified each time.
TEST_F(JwtTest, ALongTokenIsVerifiedEveryTime) {
  Json body = claims();
  body["padding"] = std::string(4096, 'p');
  std::string jwt = token(body);
  ASSERT_GT(jwt.size(), 4096u);
  uint64_t before = jwtPublicKeyOperations();
  expectPassed(sendToken(jwt));
  expectPassed(sendToken(jwt));
  EXPECT_EQ(jwtPublicKeyOperations(), before + 4);  // signature and decryption, twice
  std::string other = token(claims());
  expectPassed(sendToken(other));
  before = jwtPublicKeyOperations();
  expectPassed(sendToken(other));
  EXPECT_EQ(jwtPublicKeyOperations(), before);  // a short one comes from the cache
}

TEST_F(JwtTest, CachedEntryExpiresWithTheToken) {
  Json body = claims();
  body["exp"] = kNow + 100;
  std::string jwt = token(body);
  expectPassed(sendToken(jwt));
  uint64_t before = jwtPublicKeyOperations();

  context_.wall_time += seconds(159);  // exp + skew - 1: still served from the cache
  expectPassed(sendToken(jwt));
  EXPECT_EQ(jwtPublicKeyOperations(), before);

  context_.wall_time += seconds(1);  // exp + skew: the entry is gone, and the token with it
  expectRefused(sendToken(jwt), "invalid_token", "expired");
  EXPECT_EQ(jwtPublicKeyOperations(), before + 1);  // verified again, not answered from memory
}

// --- Config -------------------------------------------------------------------------------------

std::string issuerYaml(std::string_view algorithms, std::string_view key_file = "auth.jwks.json") {
  return "issuers:\n  - issuer: https://auth.example\n    audiences: [shop]\n    keys: " +
         keys().dir + "/" + std::string(key_file) + "\n    algorithms: " + std::string(algorithms) +
         "\n";
}

// The same, with "@DIR@" for the key directory: parameter lists are built when the test binary
// starts, and generating the RSA keys then would slow every test process down.
std::string issuerYamlTemplate(std::string_view algorithms,
                               std::string_view key_file = "auth.jwks.json") {
  return "issuers:\n  - issuer: https://auth.example\n    audiences: [shop]\n    keys: @DIR@/" +
         std::string(key_file) + "\n    algorithms: " + std::string(algorithms) + "\n";
}

TEST(JwtConfigTest, DefaultsAndKeyFileShapes) {
  const Keys& k = keys();
  // One JWK instead of a JWKS, with its own use and alg, as `tessera token keygen` may write it.
  Json one = jwkJson(k.sig_ec.get(), false);
  one["use"] = "sig";
  one["alg"] = "ES256";
  std::ofstream(k.dir + "/one.jwk.json") << one.dump();
  // An auth center's JWKS mixing signing and encryption keys: each use takes its own.
  Json mixed = {{"keys", {jwkJson(k.sig_rsa.get(), false), jwkJson(k.enc_ec.get(), true)}}};
  mixed["keys"][0]["use"] = "sig";
  mixed["keys"][1]["use"] = "enc";
  std::ofstream(k.dir + "/mixed.jwks.json") << mixed.dump();

  JwtConfig config = parseJwtConfig(YAML::Load(issuerYaml("[ES256]", "one.jwk.json") +
                                               "decrypt_keys: " + k.dir + "/mixed.jwks.json\n"));
  ASSERT_EQ(config.issuers.size(), 1u);
  ASSERT_EQ(config.issuers[0].keys.size(), 1u);
  EXPECT_EQ(config.issuers[0].keys[0].kid, "sig-ec");
  EXPECT_EQ(config.issuers[0].keys[0].alg, "ES256");
  EXPECT_EQ(config.issuers[0].keys[0].curve, "P-256");
  ASSERT_EQ(config.decrypt_keys.size(), 1u);  // the public signing key is skipped, not refused
  EXPECT_EQ(config.decrypt_keys[0].kid, "enc-ec");
  ASSERT_EQ(config.from.size(), 1u);
  EXPECT_EQ(config.from[0].name, "Authorization");
  EXPECT_TRUE(config.from[0].bearer);
  EXPECT_TRUE(config.required);
  EXPECT_EQ(config.clock_skew, std::chrono::seconds(60));
  EXPECT_EQ(config.cache_entries, 10000u);
}

struct BadConfig {
  const char* name;
  std::string yaml;
  const char* path;
  int line;
  int column;
  const char* message;  // a substring of what()
};

class JwtConfigErrorTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(JwtConfigErrorTest, NamesKeyLineAndColumn) {
  const BadConfig& bad = GetParam();
  std::string yaml = bad.yaml;
  for (size_t at; (at = yaml.find("@DIR@")) != std::string::npos;) yaml.replace(at, 5, keys().dir);
  try {
    parseJwtConfig(YAML::Load(yaml));
    ADD_FAILURE() << "accepted:\n" << bad.yaml;
  } catch (const PluginConfigError& e) {
    EXPECT_EQ(e.key_path, bad.path);
    EXPECT_EQ(e.line, bad.line);
    EXPECT_EQ(e.column, bad.column);
    EXPECT_NE(std::string(e.what()).find(bad.message), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, JwtConfigErrorTest,
    ::testing::Values(
        BadConfig{"AlgNone", issuerYamlTemplate("[ES256, none]"), "issuers[0].algorithms[1]", 5, 25,
                  "none"},
        BadConfig{"Hs256", issuerYamlTemplate("[HS256]"), "issuers[0].algorithms[0]", 5, 18,
                  "alg confusion"},
        BadConfig{"MissingKeyFile", issuerYamlTemplate("[ES256]", "missing.json"),
                  "issuers[0].keys", 4, 11, "missing.json"},
        BadConfig{"DecryptKeysArePublic",
                  issuerYamlTemplate("[ES256]") + "decrypt_keys: @DIR@/auth.jwks.json\n",
                  "decrypt_keys", 6, 15, "not a private key"},
        BadConfig{"EncryptedClaimsWithoutKeys",
                  issuerYamlTemplate("[ES256]") + "encrypted_claims: [pii]\n", "decrypt_keys", 6,
                  19, "required"},
        BadConfig{"HeaderTheTokenComesFrom",
                  issuerYamlTemplate("[ES256]") + "claims_to_headers: { sub: authorization }\n",
                  "claims_to_headers.sub", 6, 27, "token is read from"},
        BadConfig{"UnknownKey", issuerYamlTemplate("[ES256]") + "cache: 10\n", "cache", 6, 1,
                  "unknown key"},
        BadConfig{"MissingIssuers", "type: jwt\n", "issuers", 1, 1, "required"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace tessera::plugins
