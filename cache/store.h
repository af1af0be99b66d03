#pragma once

// cache::Store: the asynchronous key-value store that TLS sessions, device bindings and plugins
// keep their state in. The embedded MemoryStore serves one node; MemcachedStore spreads records
// over a consistent-hash ring of memcached nodes so that every node of a cluster sees them.
//
// The contract, for every implementation:
//
// Threads. A StoreBackend is shared by the whole process. Each worker thread calls
//   backend.connect(its event_base) once and gets its own Store. A Store is used only on that
//   worker's thread: every call is made there, and every callback runs there, from that worker's
//   event loop. A callback never runs inside the call that started it (not even for a result
//   known at once), so callers may start an operation in the middle of their own state changes.
//
// Never blocking. No call waits on the network or on a lock held across I/O. Implementations that
//   must block (libmemcached) do so on their own I/O threads and hand results back through the
//   worker's event loop.
//
// Deadlines. Every operation has a timeout. If no result has come when it passes, the callback
//   runs with Status::kTimeout and a late result is dropped. A timed-out write may still happen in
//   the store; a timed-out add may have succeeded. Callers treat kTimeout and kError like a miss
//   (a full TLS handshake, not a failed one).
//
// Callbacks. Each operation's callback runs exactly once, unless cancel() is called for it first;
//   after cancel() it never runs. Destroying a Store drops every pending callback without running
//   it (the objects those callbacks point to are usually being destroyed too).
//
// Buffers. Keys and values are copied at the call; the caller keeps nothing alive. The value in a
//   Result is owned by the callback.
//
// Sealing is not the Store's job: callers store sealed records (cache/sealer.h), so a Store never
//   sees a secret in clear.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct event_base;

namespace tessera::cache {

using Millis = std::chrono::milliseconds;
using Seconds = std::chrono::seconds;

enum class Status {
  kOk,        // get: found (value set); set, add, remove: done; increment: counted (value set)
  kNotFound,  // get: no such key, or it expired; remove: there was nothing to remove
  kExists,    // add: the key was already there, nothing was written
  kTimeout,   // the deadline passed first
  kError,     // the store failed (unreachable, protocol error, refused)
};

const char* statusName(Status s);

struct Result {
  Status status = Status::kError;
  std::string value;  // get with kOk only; increment with kOk: the new count, in decimal
};

using Callback = std::function<void(Result)>;
using OpId = uint64_t;  // never 0

class Store {
 public:
  virtual ~Store() = default;

  virtual OpId get(std::string_view key, Millis timeout, Callback done) = 0;
  // Writes unconditionally. `ttl` is rounded up to whole seconds (memcached's unit); minimum 1 s.
  virtual OpId set(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
                   Callback done) = 0;
  // Writes only if the key is absent, atomically across every worker and every node using the
  // same backend: of several concurrent adds of one key, exactly one gets kOk. This is what
  // single-use tokens (nonces, migration passes) rely on.
  virtual OpId add(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
                   Callback done) = 0;
  virtual OpId remove(std::string_view key, Millis timeout, Callback done) = 0;
  // Adds 1 to the counter `key` and gives back the new count. A counter that does not exist is
  // created at 1 and lives `ttl` from then; later increments keep its expiry (fixed windows, as a
  // rate limit wants). Atomic like add: concurrent increments from every worker and node each
  // count once. A distributed store keeps a counter on one node only: losing the node restarts
  // its counters, which errs towards letting requests through rather than refusing them.
  virtual OpId increment(std::string_view key, Seconds ttl, Millis timeout, Callback done) = 0;
  // The callback of `id` will not run. Unknown or finished ids are ignored.
  virtual void cancel(OpId id) = 0;
  // Worker thread, once its loop has stopped for good: starts at once what waits for the loop's
  // next pass (a Store may hand its work on once per pass), so that writes made in the last pass
  // still happen. Their callbacks do not run.
  virtual void flush() {}
};

class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  // Called on a worker thread; the returned Store delivers its callbacks on `base`, which must
  // outlive it.
  virtual std::unique_ptr<Store> connect(event_base* base) = 0;
  // One line for logs, e.g. "memory (100000 entries)" or "memcached ring of 3 nodes".
  virtual std::string describe() const = 0;
  // For metrics, any thread: each node of a distributed store and whether it is up now. An
  // in-process store has no nodes.
  virtual std::vector<std::pair<std::string, bool>> nodeStates() const { return {}; }
};

}  // namespace tessera::cache
