// Micro benchmarks for the CPU work of the memcached ring, done on the cache I/O threads before
// any network call: which server a key goes to (ketama hash and continuum search), and the copies
// a record is written under (the key mapping, SHA-256 for keys memcached cannot take as they are,
// and the extra hashes a replica needs to land on a node no other copy uses).
//
// Placement contacts no node, so nothing needs to listen on the ring's ports.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/memcached_store.h"

namespace {

using tessera::cache::MemcachedBackend;
using tessera::cache::MemcachedCopy;
using tessera::cache::MemcachedOptions;

std::unique_ptr<MemcachedBackend> threeNodeRing(int replicas) {
  MemcachedOptions o;
  for (uint16_t port : {41001, 41002, 41003}) o.servers.push_back({"10.0.0.1", port, 1});
  o.replicas = replicas;
  o.io_threads = 1;
  std::string error;
  return MemcachedBackend::create(o, error);
}

// 1024 distinct keys of `length` bytes shaped like TLS session keys ("tls:" + hex), so that the
// continuum search does not always walk the same path. Past 240 bytes a key is hashed first.
std::vector<std::string> sessionKeys(size_t length) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::vector<std::string> keys;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 1024; ++i) {
    std::string k = "tls:";
    while (k.size() < length) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      k.push_back(kHex[x & 0xf]);
    }
    k.resize(length);
    keys.push_back(std::move(k));
  }
  return keys;
}

void BM_ServerFor(benchmark::State& state) {
  std::unique_ptr<MemcachedBackend> ring = threeNodeRing(1);
  std::vector<std::string> keys = sessionKeys(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ring->serverFor(keys[i++ & 1023]));
  }
  state.SetItemsProcessed(state.iterations());
}
// 16: short tokens; 68: "tls:" + a 32-byte session id in hex; 250 and 1024: hashed keys.
BENCHMARK(BM_ServerFor)->Arg(16)->Arg(68)->Arg(250)->Arg(1024);

void BM_PlaceCopies(benchmark::State& state) {
  std::unique_ptr<MemcachedBackend> ring = threeNodeRing(static_cast<int>(state.range(1)));
  std::vector<std::string> keys = sessionKeys(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    std::vector<MemcachedCopy> copies = ring->placeCopies(keys[i++ & 1023]);
    benchmark::DoNotOptimize(copies.data());
  }
  state.SetItemsProcessed(state.iterations());
}
// Key length x replicas (0: the key alone; 2: a copy on every node of three).
BENCHMARK(BM_PlaceCopies)->ArgsProduct({{16, 68, 250, 1024}, {0, 1, 2}});

}  // namespace
