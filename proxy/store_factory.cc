#include "proxy/store_factory.h"

#include "cache/memcached_store.h"
#include "cache/memory_store.h"

namespace tessera::proxy {

std::unique_ptr<cache::StoreBackend> makeStoreBackend(const conf::Config& config,
                                                      std::string& error) {
  const conf::SessionCache& sc = config.session_cache;
  if (sc.store == conf::StoreKind::kMemory) {
    return std::make_unique<cache::MemoryStoreBackend>(sc.memory_max_entries);
  }
  cache::MemcachedOptions o;
  for (const conf::MemcachedServer& s : sc.memcached.servers) {
    o.servers.push_back({s.address.host, s.address.port, s.weight});
  }
  o.replicas = sc.memcached.replicas;
  o.io_threads = sc.memcached.io_threads;
  o.retry_timeout = sc.memcached.retry_timeout;
  o.connect_timeout = sc.memcached.connect_timeout;
  o.io_timeout = sc.memcached.io_timeout;
  return cache::MemcachedBackend::create(o, error);
}

std::string storeSettings(const conf::Config& config) {
  const conf::SessionCache& sc = config.session_cache;
  std::string s = sc.store == conf::StoreKind::kMemory ? "memory " : "memcached ";
  s += std::to_string(sc.memory_max_entries);
  // Appended piece by piece: GCC 12 misreads `" " + str` temporaries as overlapping copies.
  for (const conf::MemcachedServer& m : sc.memcached.servers) {
    s.append(1, ' ').append(m.address.str()).append(1, '/').append(std::to_string(m.weight));
  }
  s.append(" r").append(std::to_string(sc.memcached.replicas));
  s.append(" t").append(std::to_string(sc.memcached.io_threads));
  return s;
}

}  // namespace tessera::proxy
