#pragma once

// The embedded store (`session_cache.store: memory`): one process, no memcached. Records live in a
// bounded in-memory table shared by every worker; the least recently used record is evicted when
// its part of the table is full, and a record past its TTL is a miss (and is removed when met).
//
// It follows the contract in cache/store.h. What is particular to it:
//
// Threads. The backend and its table are shared by the whole process and safe from any thread.
//   The table is split into shards by key hash, each with its own mutex, so workers rarely
//   contend; a shard's lock is held only for the in-memory operation, never across a callback.
//   Each Store is owned by one worker and used only on that worker's thread.
//
// Timing. The operation is done at once, inside the call (so an add is atomic across workers:
//   check-and-insert under the shard lock); only the callback is deferred, to the worker's loop.
//   A timed-out or cancelled write has still happened.
//
// Capacity. `max_entries` is split evenly across the shards, with at least one entry per shard,
//   so eviction is LRU within a shard, not across the whole table.
//
// Ownership. Each Store shares ownership of the table, so a Store may outlive its backend.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "cache/store.h"

namespace tessera::cache {

class MemoryTable;  // the sharded LRU table; defined in memory_store.cc

class MemoryStoreBackend : public StoreBackend {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  static constexpr size_t kDefaultShards = 16;

  // `now` is read on every operation, from any worker thread; tests pass a fake clock.
  // `shards` exists for tests that need every key in one shard; 0 means 1.
  explicit MemoryStoreBackend(size_t max_entries, Clock now = std::chrono::steady_clock::now,
                              size_t shards = kDefaultShards);
  ~MemoryStoreBackend() override;

  // Worker thread. The Store delivers its callbacks on `base`, which must outlive it.
  std::unique_ptr<Store> connect(event_base* base) override;
  // "memory (N entries)", N being `max_entries` as configured.
  std::string describe() const override;
  // Any thread. Records held now, expired ones not yet met included (for tests and metrics).
  size_t entryCount() const;

 private:
  size_t max_entries_;
  std::shared_ptr<MemoryTable> table_;
};

}  // namespace tessera::cache
