// Micro benchmarks for the jwt plugin: what one request with a token costs in onRequestHeaders,
// uncached (signature verification and claim decryption every time) and cached (the per-worker
// verified-token cache answers). Keys, JWKS files and tokens are made at start-up with cjose, as
// the auth center would; the plugin is driven through the unit tests' fakes of the proxy's objects
// (tests/plugins/fakes.h).
//
// Uncached, by arg: 0 = ES256 + ECDH-ES (P-256), 1 = RS256 + RSA-OAEP (2048 bits). The cached
// numbers are the same for both: a hash of the token and a map lookup.

#include <benchmark/benchmark.h>
#include <cjose/cjose.h>
#include <stdlib.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/jwt/jwt.h"
#include "tests/plugins/fakes.h"

namespace {

using nlohmann::json;
using namespace tessera::plugins;  // NOLINT: the bench drives this namespace's interface only
using tessera::plugins::testing::FakeCallbacks;
using tessera::plugins::testing::FakeContext;
using tessera::plugins::testing::FakeRequest;

constexpr int64_t kNow = 1'700'000'000;

struct JwkRelease {
  void operator()(cjose_jwk_t* jwk) const { cjose_jwk_release(jwk); }
};
using JwkPtr = std::unique_ptr<cjose_jwk_t, JwkRelease>;

std::string take(char* text) {
  std::string out = text == nullptr ? "" : text;
  cjose_get_dealloc()(text);
  return out;
}

JwkPtr key(bool rsa, const char* kid) {
  static const uint8_t kExponent[] = {0x01, 0x00, 0x01};
  cjose_err err{};
  cjose_jwk_t* jwk = rsa ? cjose_jwk_create_RSA_random(2048, kExponent, 3, &err)
                         : cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
  cjose_jwk_set_kid(jwk, kid, std::char_traits<char>::length(kid), &err);
  return JwkPtr(jwk);
}

cjose_header_t* header(const char* alg, const char* enc, const char* kid) {
  cjose_err err{};
  cjose_header_t* out = cjose_header_new(&err);
  cjose_header_set(out, CJOSE_HDR_ALG, alg, &err);
  if (enc != nullptr) cjose_header_set(out, CJOSE_HDR_ENC, enc, &err);
  cjose_header_set(out, CJOSE_HDR_KID, kid, &err);
  return out;
}

std::string encrypt(const cjose_jwk_t* jwk, const char* alg, const char* kid,
                    const std::string& plaintext) {
  cjose_err err{};
  cjose_header_t* h = header(alg, CJOSE_HDR_ENC_A256GCM, kid);
  cjose_jwe_t* jwe = cjose_jwe_encrypt(jwk, h, reinterpret_cast<const uint8_t*>(plaintext.data()),
                                       plaintext.size(), &err);
  std::string compact = take(cjose_jwe_export(jwe, &err));
  cjose_jwe_release(jwe);
  cjose_header_release(h);
  return compact;
}

std::string sign(const cjose_jwk_t* jwk, const char* alg, const char* kid, const json& claims) {
  cjose_err err{};
  cjose_header_t* h = header(alg, nullptr, kid);
  std::string payload = claims.dump();
  cjose_jws_t* jws = cjose_jws_sign(jwk, h, reinterpret_cast<const uint8_t*>(payload.data()),
                                    payload.size(), &err);
  const char* compact = nullptr;
  cjose_jws_export(jws, &compact, &err);
  std::string token = compact == nullptr ? "" : compact;
  cjose_jws_release(jws);
  cjose_header_release(h);
  return token;
}

// Keys, files and one token per signing/encryption pair, made once for the whole run.
struct Fixture {
  Fixture() {
    char dir_template[] = "/tmp/jwt_bench.XXXXXX";
    dir = mkdtemp(dir_template);
    writeJwks("auth.jwks.json", {sig_ec.get(), sig_rsa.get()}, false);
    writeJwks("proxy.jwks.json", {enc_ec.get(), enc_rsa.get()}, true);
    json pii = {{"id_card", "ID-4711-0815"}, {"phone", "+49 30 1234"}};
    json claims = {{"iss", "https://auth.example"},
                   {"aud", "shop"},
                   {"sub", "u1"},
                   {"role", "buyer"},
                   {"exp", kNow + 3600}};
    claims["pii"] = encrypt(enc_ec.get(), CJOSE_HDR_ALG_ECDH_ES, "enc-ec", pii.dump());
    tokens[0] = sign(sig_ec.get(), CJOSE_HDR_ALG_ES256, "sig-ec", claims);
    claims["pii"] = encrypt(enc_rsa.get(), CJOSE_HDR_ALG_RSA_OAEP, "enc-rsa", pii.dump());
    tokens[1] = sign(sig_rsa.get(), CJOSE_HDR_ALG_RS256, "sig-rsa", claims);
  }
  ~Fixture() { std::filesystem::remove_all(dir); }

  void writeJwks(const std::string& name, std::vector<const cjose_jwk_t*> jwks, bool priv) {
    json out = {{"keys", json::array()}};
    cjose_err err{};
    for (const cjose_jwk_t* jwk : jwks) {
      out["keys"].push_back(json::parse(take(cjose_jwk_to_json(jwk, priv, &err))));
    }
    std::ofstream(dir + "/" + name) << out.dump();
  }

  std::shared_ptr<const Factory> factory(int cache_entries) const {
    return makeJwtFactory("bench_jwt", YAML::Load(R"(type: jwt
issuers:
  - issuer: https://auth.example
    audiences: [shop]
    keys: )" + dir + R"(/auth.jwks.json
    algorithms: [ES256, RS256]
decrypt_keys: )" + dir + R"(/proxy.jwks.json
encrypted_claims: [pii]
claims_to_headers: { sub: X-User-Id, role: X-User-Role, pii.id_card: X-User-Id-Card }
forward_payload_header: X-Jwt-Claims
cache_entries: )" + std::to_string(cache_entries) +
                                                  "\n"));
  }

  JwkPtr sig_ec = key(false, "sig-ec");
  JwkPtr sig_rsa = key(true, "sig-rsa");
  JwkPtr enc_ec = key(false, "enc-ec");
  JwkPtr enc_rsa = key(true, "enc-rsa");
  std::string dir;
  std::string tokens[2];
};

const Fixture& fixture() {
  static const Fixture instance;
  return instance;
}

// One request per iteration, as the proxy makes it: a fresh instance, the hook, onDestroy. The
// pk_ops counter shows the public-key operations per request (cached: only the first request's).
void runRequests(benchmark::State& state, const Factory& factory, const std::string& token) {
  uint64_t before = jwtPublicKeyOperations();
  FakeContext context;  // jwt makes no HTTPS calls: a post() aborts
  context.wall_time = std::chrono::system_clock::time_point(std::chrono::seconds(kNow));
  FakeCallbacks callbacks;
  const std::string authorization = "Bearer " + token;
  for (auto _ : state) {
    FakeRequest request("GET", "/api/orders",
                        {{"Authorization", authorization}, {"Accept", "*/*"}});
    std::unique_ptr<Plugin> plugin = factory.create(context, callbacks);
    Verdict verdict = plugin->onRequestHeaders(request);
    plugin->onDestroy();
    benchmark::DoNotOptimize(verdict);
    if (!callbacks.replies.empty()) {
      state.SkipWithError("the plugin refused the token");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["pk_ops"] = benchmark::Counter(
      static_cast<double>(jwtPublicKeyOperations() - before), benchmark::Counter::kAvgIterations);
}

void BM_JwtUncached(benchmark::State& state) {
  const std::string& token = fixture().tokens[state.range(0)];
  std::shared_ptr<const Factory> factory = fixture().factory(/*cache_entries=*/0);
  runRequests(state, *factory, token);
}
BENCHMARK(BM_JwtUncached)->ArgName("rsa")->Arg(0)->Arg(1);

void BM_JwtCached(benchmark::State& state) {
  const std::string& token = fixture().tokens[state.range(0)];
  std::shared_ptr<const Factory> factory = fixture().factory(/*cache_entries=*/10000);
  runRequests(state, *factory, token);  // the first request fills the cache
}
BENCHMARK(BM_JwtCached)->ArgName("rsa")->Arg(0)->Arg(1);

}  // namespace
