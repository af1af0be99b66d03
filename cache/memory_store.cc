#include "cache/memory_store.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <list>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "cache/pending_ops.h"

namespace tessera::cache {

using TimePoint = std::chrono::steady_clock::time_point;

class MemoryTable {
 public:
  MemoryTable(size_t max_entries, MemoryStoreBackend::Clock now, size_t shard_count);

  Result get(std::string_view key);
  Result set(std::string_view key, std::string_view value, Seconds ttl);
  Result add(std::string_view key, std::string_view value, Seconds ttl);
  Result remove(std::string_view key);
  Result increment(std::string_view key, Seconds ttl);
  size_t size() const;

 private:
  struct Entry {
    std::string key;
    std::string value;
    TimePoint expires;
  };
  using Lru = std::list<Entry>;  // front: most recently used

  // Aligned so that two shards' mutexes never share a cache line.
  struct alignas(64) Shard {
    mutable std::mutex mu;
    Lru lru;
    // Keys view the Entry's own string: list nodes never move, and it saves a second copy.
    std::unordered_map<std::string_view, Lru::iterator> index;
    size_t capacity = 1;

    // Null if absent; an expired entry is erased here, so every caller sees it as absent.
    Lru::iterator* find(std::string_view key, TimePoint now);
    void touch(Lru::iterator it) { lru.splice(lru.begin(), lru, it); }
    void erase(Lru::iterator it);
    void insert(std::string_view key, std::string_view value, TimePoint expires);
  };

  Shard& shardFor(std::string_view key);
  static TimePoint expiry(TimePoint now, Seconds ttl) { return now + std::max(ttl, Seconds(1)); }

  MemoryStoreBackend::Clock now_;
  size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
};

MemoryTable::MemoryTable(size_t max_entries, MemoryStoreBackend::Clock now, size_t shard_count)
    : now_(std::move(now)),
      shard_count_(std::max<size_t>(shard_count, 1)),
      shards_(new Shard[shard_count_]) {
  // Spread the remainder so that the shards add up to max_entries whenever it allows one each.
  for (size_t i = 0; i < shard_count_; ++i) {
    size_t share = max_entries / shard_count_ + (i < max_entries % shard_count_ ? 1 : 0);
    shards_[i].capacity = std::max<size_t>(share, 1);
  }
}

MemoryTable::Shard& MemoryTable::shardFor(std::string_view key) {
  // The maps inside a shard bucket by the low bits of the same hash; mix and take the high bits
  // so that the keys of one shard still spread over its buckets.
  uint64_t h = std::hash<std::string_view>{}(key)*0x9e3779b97f4a7c15ull;
  return shards_[(h >> 32) % shard_count_];
}

MemoryTable::Lru::iterator* MemoryTable::Shard::find(std::string_view key, TimePoint now) {
  auto it = index.find(key);
  if (it == index.end()) return nullptr;
  if (now >= it->second->expires) {
    erase(it->second);
    return nullptr;
  }
  return &it->second;
}

void MemoryTable::Shard::erase(Lru::iterator it) {
  index.erase(std::string_view(it->key));  // before the list node that owns the key goes
  lru.erase(it);
}

void MemoryTable::Shard::insert(std::string_view key, std::string_view value, TimePoint expires) {
  if (lru.size() >= capacity) erase(std::prev(lru.end()));
  lru.push_front(Entry{std::string(key), std::string(value), expires});
  index.emplace(std::string_view(lru.front().key), lru.begin());
}

Result MemoryTable::get(std::string_view key) {
  TimePoint now = now_();  // outside the lock: a clock may be slower than the operation
  Shard& shard = shardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  Lru::iterator* it = shard.find(key, now);
  if (it == nullptr) return Result{Status::kNotFound, {}};
  shard.touch(*it);
  return Result{Status::kOk, (*it)->value};
}

Result MemoryTable::set(std::string_view key, std::string_view value, Seconds ttl) {
  TimePoint now = now_();
  Shard& shard = shardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (Lru::iterator* it = shard.find(key, now)) {
    (*it)->value.assign(value);
    (*it)->expires = expiry(now, ttl);
    shard.touch(*it);
  } else {
    shard.insert(key, value, expiry(now, ttl));
  }
  return Result{Status::kOk, {}};
}

Result MemoryTable::add(std::string_view key, std::string_view value, Seconds ttl) {
  TimePoint now = now_();
  Shard& shard = shardFor(key);
  // Check and insert under one lock: this is what makes add atomic across workers.
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.find(key, now) != nullptr) return Result{Status::kExists, {}};
  shard.insert(key, value, expiry(now, ttl));
  return Result{Status::kOk, {}};
}

Result MemoryTable::increment(std::string_view key, Seconds ttl) {
  TimePoint now = now_();
  Shard& shard = shardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  Lru::iterator* it = shard.find(key, now);
  if (it == nullptr) {
    shard.insert(key, "1", expiry(now, ttl));
    return Result{Status::kOk, "1"};
  }
  uint64_t count = 0;
  const std::string& text = (*it)->value;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  // memcached refuses to count a value that is no number; so does this table.
  if (error != std::errc() || end != text.data() + text.size()) return Result{Status::kError, {}};
  (*it)->value = std::to_string(count + 1);
  shard.touch(*it);
  return Result{Status::kOk, (*it)->value};
}

Result MemoryTable::remove(std::string_view key) {
  TimePoint now = now_();
  Shard& shard = shardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  Lru::iterator* it = shard.find(key, now);  // an expired entry goes here, as a miss
  if (it == nullptr) return Result{Status::kNotFound, {}};
  shard.erase(*it);
  return Result{Status::kOk, {}};
}

size_t MemoryTable::size() const {
  size_t n = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    std::lock_guard<std::mutex> lock(shards_[i].mu);
    n += shards_[i].lru.size();
  }
  return n;
}

namespace {

// Does each operation at once on the shared table, then hands the result to PendingOps so that
// the callback runs later from the worker's loop, never inside the call.
class MemoryStore : public Store {
 public:
  MemoryStore(std::shared_ptr<MemoryTable> table, event_base* base)
      : table_(std::move(table)), ops_(PendingOps::create(base)) {}
  // Drops every pending callback and frees its events while the base is still alive.
  ~MemoryStore() override { ops_->shutdown(); }

  OpId get(std::string_view key, Millis timeout, Callback done) override {
    OpId id = ops_->start(timeout, std::move(done));
    ops_->complete(id, table_->get(key));
    return id;
  }
  OpId set(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
           Callback done) override {
    OpId id = ops_->start(timeout, std::move(done));
    ops_->complete(id, table_->set(key, value, ttl));
    return id;
  }
  OpId add(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
           Callback done) override {
    OpId id = ops_->start(timeout, std::move(done));
    ops_->complete(id, table_->add(key, value, ttl));
    return id;
  }
  OpId remove(std::string_view key, Millis timeout, Callback done) override {
    OpId id = ops_->start(timeout, std::move(done));
    ops_->complete(id, table_->remove(key));
    return id;
  }
  OpId increment(std::string_view key, Seconds ttl, Millis timeout, Callback done) override {
    OpId id = ops_->start(timeout, std::move(done));
    ops_->complete(id, table_->increment(key, ttl));
    return id;
  }
  void cancel(OpId id) override { ops_->cancel(id); }

 private:
  std::shared_ptr<MemoryTable> table_;
  std::shared_ptr<PendingOps> ops_;
};

}  // namespace

MemoryStoreBackend::MemoryStoreBackend(size_t max_entries, Clock now, size_t shards)
    : max_entries_(max_entries),
      table_(std::make_shared<MemoryTable>(max_entries, std::move(now), shards)) {}

MemoryStoreBackend::~MemoryStoreBackend() = default;

std::unique_ptr<Store> MemoryStoreBackend::connect(event_base* base) {
  return std::make_unique<MemoryStore>(table_, base);
}

std::string MemoryStoreBackend::describe() const {
  return "memory (" + std::to_string(max_entries_) + " entries)";
}

size_t MemoryStoreBackend::entryCount() const { return table_->size(); }

}  // namespace tessera::cache
