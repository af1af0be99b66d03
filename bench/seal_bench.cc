// Micro benchmarks for record sealing: what every store write (seal) and every store hit (open)
// costs in CPU, for record sizes around a TLS session (a few hundred bytes) and larger values.
//
// The Sealer makes a cipher context per call (see cache/sealer.cc), so the numbers include that
// allocation and the AES key expansion, as the proxy pays them.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cache/sealer.h"

namespace {

using tessera::cache::Sealer;
using tessera::cache::SealKey;

// A session cache key: prefix and a hex session id, as the session glue builds it.
constexpr std::string_view kAad = "tls:sess:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";

Sealer makeSealer() {
  SealKey key{"k2025", {}};
  for (size_t i = 0; i < key.bytes.size(); ++i) key.bytes[i] = static_cast<unsigned char>(i * 37);
  return Sealer({key});
}

void BM_Seal(benchmark::State& state) {
  const Sealer sealer = makeSealer();
  const std::string plaintext(static_cast<size_t>(state.range(0)), 's');
  for (auto _ : state) {
    std::string record = sealer.seal(kAad, plaintext);
    if (record.empty()) {
      state.SkipWithError("seal failed");
      break;
    }
    benchmark::DoNotOptimize(record.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(plaintext.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Seal)->ArgName("bytes")->Arg(256)->Arg(1024)->Arg(4096);

void BM_Open(benchmark::State& state) {
  const Sealer sealer = makeSealer();
  const std::string plaintext(static_cast<size_t>(state.range(0)), 's');
  const std::string record = sealer.seal(kAad, plaintext);
  for (auto _ : state) {
    std::optional<std::string> opened = sealer.open(kAad, record);
    if (!opened) {
      state.SkipWithError("open failed");
      break;
    }
    benchmark::DoNotOptimize(opened->data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(plaintext.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Open)->ArgName("bytes")->Arg(256)->Arg(1024)->Arg(4096);

}  // namespace
