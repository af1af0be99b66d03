// Micro benchmarks for the migration pass codec (plugins/migration/pass.h): what the origin pays
// to issue a pass, to open one, and to read a pass's jti before the store is asked. Keys are made
// at start-up with cjose; the signing key is always EC P-256 (ES256).
//
// By arg: 0 = the encryption key is EC P-256 (ECDH-ES), 1 = RSA 2048 (RSA-OAEP). Issuing with
// ECDH-ES makes an ephemeral key and one agreement, with RSA-OAEP one public-key operation;
// opening costs an agreement or an RSA private-key operation, plus the ECDSA verification.

#include <benchmark/benchmark.h>
#include <cjose/cjose.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "plugins/migration/pass.h"

namespace {

using tessera::plugins::JwkPtr;
using tessera::plugins::migration::newJti;
using tessera::plugins::migration::PassClaims;
using tessera::plugins::migration::PassCodec;
using tessera::plugins::migration::PassStatus;

constexpr int64_t kNow = 1'700'000'000;

std::string take(char* text) {
  std::string out = text == nullptr ? "" : text;
  cjose_get_dealloc()(text);
  return out;
}

std::string privateJwk(bool rsa) {
  static const uint8_t kExponent[] = {0x01, 0x00, 0x01};
  cjose_err err{};
  JwkPtr jwk(rsa ? cjose_jwk_create_RSA_random(2048, kExponent, sizeof kExponent, &err)
                 : cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err));
  return take(cjose_jwk_to_json(jwk.get(), true, &err));
}

// One codec per encryption key type, made once for the whole run.
struct Fixture {
  Fixture() {
    std::string signing = privateJwk(false);
    std::string error;
    codecs[0] = PassCodec::fromJwks(signing, privateJwk(false), error);
    codecs[1] = PassCodec::fromJwks(signing, privateJwk(true), error);
  }

  std::unique_ptr<PassCodec> codecs[2];
};

const Fixture& fixture() {
  static const Fixture instance;
  return instance;
}

PassClaims claims() {
  return PassClaims{"user-4711@shop.example",
                    "9f86d081884c7d659a2feaa0c55ad015",
                    "fp:Mozilla/5.0 (X11; Linux x86_64) de-DE",
                    newJti(),
                    kNow,
                    kNow + 300};
}

void BM_PassIssue(benchmark::State& state) {
  const PassCodec* codec = fixture().codecs[state.range(0)].get();
  if (codec == nullptr) {
    state.SkipWithError("no codec");
    return;
  }
  PassClaims pass_claims = claims();
  size_t bytes = 0;
  for (auto _ : state) {
    std::string pass = codec->issue(pass_claims);
    bytes = pass.size();
    benchmark::DoNotOptimize(pass);
  }
  if (bytes == 0) state.SkipWithError("issue failed");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["pass_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_PassIssue)->ArgName("rsa")->Arg(0)->Arg(1);

// A pass is single-use, so the same one is opened again only here: the codec keeps no state that
// would make a repeat cheaper.
void BM_PassOpen(benchmark::State& state) {
  const PassCodec* codec = fixture().codecs[state.range(0)].get();
  if (codec == nullptr) {
    state.SkipWithError("no codec");
    return;
  }
  const std::string pass = codec->issue(claims());
  for (auto _ : state) {
    PassClaims out;
    PassStatus status = codec->open(pass, kNow, out);
    benchmark::DoNotOptimize(status);
    if (status != PassStatus::kOk) {
      state.SkipWithError("open failed");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_PassOpen)->ArgName("rsa")->Arg(0)->Arg(1);

// The work done on every pass a client presents, before the store is asked whether it is used.
void BM_PassPeekJti(benchmark::State& state) {
  const PassCodec* codec = fixture().codecs[state.range(0)].get();
  if (codec == nullptr) {
    state.SkipWithError("no codec");
    return;
  }
  const std::string pass = codec->issue(claims());
  for (auto _ : state) {
    std::optional<std::string> jti = PassCodec::peekJti(pass);
    benchmark::DoNotOptimize(jti);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_PassPeekJti)->ArgName("rsa")->Arg(0)->Arg(1);

}  // namespace
