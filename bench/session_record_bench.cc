// Micro benchmarks of the TLS session record path: encode + seal on a full handshake, open +
// decode on a resumption from the store.

#include <benchmark/benchmark.h>

#include "cache/sealer.h"
#include "cache/session_record.h"

namespace {

tessera::cache::SessionRecord sampleRecord(size_t der_bytes) {
  tessera::cache::SessionRecord r;
  r.der.assign(der_bytes, '\x5a');  // a DER session is a few hundred bytes
  r.fingerprint = "ip=198.51.100.0/24;ja4=t13d1516h2_8daaf6152771_e5627efa2ab1";
  r.created = 1700000000;
  r.expiry = 1700000300;
  return r;
}

void BM_EncodeAndSeal(benchmark::State& state) {
  auto sealer = tessera::cache::Sealer::ephemeral();
  tessera::cache::SessionRecord r = sampleRecord(static_cast<size_t>(state.range(0)));
  std::string key = tessera::cache::sessionKey(std::string(32, '\x11'));
  for (auto _ : state) {
    std::string sealed = sealer->seal(key, tessera::cache::encodeSessionRecord(r));
    benchmark::DoNotOptimize(sealed);
  }
}
BENCHMARK(BM_EncodeAndSeal)->Arg(256)->Arg(512)->Arg(1024);

void BM_OpenAndDecode(benchmark::State& state) {
  auto sealer = tessera::cache::Sealer::ephemeral();
  std::string key = tessera::cache::sessionKey(std::string(32, '\x11'));
  std::string sealed = sealer->seal(
      key, tessera::cache::encodeSessionRecord(sampleRecord(static_cast<size_t>(state.range(0)))));
  for (auto _ : state) {
    auto plain = sealer->open(key, sealed);
    auto record = tessera::cache::decodeSessionRecord(*plain);
    benchmark::DoNotOptimize(record);
  }
}
BENCHMARK(BM_OpenAndDecode)->Arg(256)->Arg(512)->Arg(1024);

}  // namespace
