#pragma once

// Builds the session-cache store a config asks for: the embedded MemoryStore, or a MemcachedBackend
// on the configured ring. The proxy is where conf and cache meet, so the translation lives here.

#include <memory>
#include <string>

#include "cache/store.h"
#include "conf/config.h"

namespace tessera::proxy {

// Null with `error` set when the store cannot be made (e.g. libmemcached refused the servers).
std::unique_ptr<cache::StoreBackend> makeStoreBackend(const conf::Config& config,
                                                      std::string& error);

// The settings that need a restart to change, as one comparable string.
std::string storeSettings(const conf::Config& config);

}  // namespace tessera::proxy
