#pragma once

// The cluster store (`session_cache.store: memcached`): records live on a consistent-hash ring of
// memcached nodes, so that every tessera node of a cluster sees what any other node wrote. It
// follows the contract in cache/store.h. What is particular to it:
//
// Ring. libmemcached's ketama (MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA; the weighted variant when
//   the servers' weights differ) over the binary protocol. Ring positions are hashed from the
//   server names as written ("10.0.0.1:11211" and "cache1:11211" are different points), so every
//   tessera node must list the same servers spelled the same way; their order does not matter.
//   Adding or removing one of N nodes moves about 1/N of the keys, and only keys of that node.
//
// Replication. libmemcached's own NUMBER_OF_REPLICAS loses keys when a node dies (design.md:
//   71/100 keys readable after kill -9 of one of three nodes over text, 87/100 over binary), so
//   tessera replicates by itself. A record is written under `replicas + 1` keys placed on distinct
//   nodes (fewer if the ring has fewer nodes):
//     copy 0: the key itself (see Keys), on the node the ring gives it;
//     copy i: key + "#r<i>:<attempt>" for the first attempt in 0..99 that the ring puts on a
//             node no earlier copy uses; if none does, the copy is left out.
//   Placement is computed on a libmemcached handle that does no I/O, so it never drops a failed
//   node: writers and readers derive the same copies whatever is up. Each copy is then sent
//   through an I/O handle whose ring drops a node that refused a connection for a while
//   (REMOVE_FAILED_SERVERS, RETRY_TIMEOUT), so meanwhile a copy meant for it lands on another
//   node; a copy for a node that is down but still in that ring is skipped (see Failed nodes).
//     get:    copies in order; the first hit wins; a miss or an error goes on to the next.
//             No hit: kError if every copy failed, else kNotFound.
//     set:    every copy; kOk if at least one was stored, else kError.
//     add:    memcached add on copy 0 (the primary), then set on the other copies. Exists there:
//             kExists. Primary unreachable: add on the next copy as primary, and so on.
//     remove: every copy; kOk if any existed, kNotFound if none did, kError if all failed.
//   Exactly-once add holds while the primary's node is steady. When it fails or comes back, two
//   adders may see different primaries (one still reaches it, one has already failed over), and
//   an adder that wins on the primary sets the replicas a moment later: in those windows two adds
//   of one key can both get kOk. Single-use tokens keep short TTLs, which bounds the exposure.
//   memcached has no versions: a node that comes back with its old data (a paused process or a
//   healed partition, not a restart) may serve a record that was overwritten or removed while it
//   was away, until the record's TTL ends.
//
// Keys. memcached keys are at most 250 bytes of printable ASCII without spaces. A key of 1 to 240
//   bytes in 0x21..0x7e without '#' or '~' is used as is (so `get tls:...` in a memcached shell
//   finds copy 0). Any other key is stored as its first 64 bytes (each byte outside that set
//   replaced by '_') + '~' + hex(SHA-256 of the whole key): readable, within the limit, and
//   distinct keys stay distinct. Replica suffixes contain the only '#' of a stored key.
//
// TTL. memcached expirations are whole seconds; a TTL under 1 s counts as 1 s. Above 30 days
//   memcached reads the number as a Unix time, so such TTLs are sent as now + TTL.
//
// Threads and ownership. create() builds the ring. The backend is shared by the whole process;
//   nodeStates() and serverFor() may be called from any thread. connect() returns a Store for one
//   worker, with its own I/O lane: a job queue and `io_threads` I/O threads of that worker's own,
//   so a worker never takes a lock that another worker takes. A Store never calls libmemcached:
//   it registers the callback and deadline in its PendingOps, queues a job and returns. A lane
//   thread takes a memcached_st from the ring's memcached_pool (shared by I/O threads only), makes
//   the blocking calls, and hands the result back with PendingOps::complete(), which runs the
//   callback from the worker's loop (so the worker's event_base must be made after
//   evthread_use_pthreads()). Each Store shares ownership of the ring, so a Store may outlive its
//   backend; its operations after ~MemcachedBackend fail with kError. flush() wakes the lane at
//   once (the worker calls it when its loop has stopped). Destroying a Store drops its callbacks
//   but still runs the writes queued (each only until its deadline), so a write made in the
//   worker's last pass reaches the ring; then it joins its lane's threads. More than 16384
//   jobs waiting in one lane fail at once with kError. A Store wakes its I/O threads once per pass
//   of the worker's loop, after the events that were ready, not once per job: a woken thread would
//   preempt the worker mid-handshake.
//
// Timeouts. connect_timeout bounds a TCP connect, io_timeout each wait to send or receive (the
//   poll timeout); retry_timeout is how long a failed node is left out (libmemcached takes it in
//   whole seconds, rounded up). One operation touches at most replicas + 1 nodes in turn, so it
//   holds an I/O thread for at most about (replicas + 1) * (connect_timeout + io_timeout). The
//   caller's deadline is separate: when it passes the worker gets kTimeout; the job still finishes
//   if it has started (a timed-out write may happen), and is skipped if it is still queued.
//
// Failed nodes. libmemcached leaves a node out of an I/O handle's ring after a failed connect, but
//   not after a read timeout: a stopped process whose kernel still accepts connections costs the
//   full io_timeout on every call. So tessera also keeps its own per-node state, shared by all I/O
//   threads: a call that fails for a node's sake (timeout, refused, reset) marks the node down,
//   calls to a down node are skipped as failures, and after retry_timeout one call probes it;
//   an answer (hit, miss, stored, exists) marks it up. nodeStates() reports that state, as of the
//   last call to each node.
//
// Host names are resolved at the first connect, on an I/O thread, by getaddrinfo (no timeout):
// prefer addresses, or names in /etc/hosts.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/store.h"

namespace tessera::cache {

struct MemcachedServerSpec {
  std::string host;  // address or name; IPv6 without brackets
  uint16_t port = 0;
  uint32_t weight = 1;  // share of the ring, relative to the other servers; >= 1
};

struct MemcachedOptions {
  std::vector<MemcachedServerSpec> servers;  // 1 to 100, no duplicates
  int replicas = 1;                          // extra copies on distinct nodes
  int io_threads = 2;                        // per worker: threads that make the blocking calls
  std::chrono::milliseconds retry_timeout{2000}, connect_timeout{200}, io_timeout{200};
};

// Where one copy of a record lives: its memcached key and the index of its server in
// MemcachedOptions::servers.
struct MemcachedCopy {
  std::string key;
  size_t server = 0;
  bool operator==(const MemcachedCopy&) const = default;
};

class MemcachedBackend : public StoreBackend {
 public:
  // Null with `error` set if the options are invalid or libmemcached refuses them. Connects to
  // nothing: nodes are reached at the first operation on them.
  static std::unique_ptr<MemcachedBackend> create(const MemcachedOptions& options,
                                                  std::string& error);
  ~MemcachedBackend() override;  // joins the I/O threads; queued operations fail with kError
  MemcachedBackend(const MemcachedBackend&) = delete;
  MemcachedBackend& operator=(const MemcachedBackend&) = delete;

  // Worker thread. The Store delivers its callbacks on `base`, which must outlive it.
  std::unique_ptr<Store> connect(event_base* base) override;
  // "memcached ring of 3 nodes, 1 replica" (the replicas the ring can hold).
  std::string describe() const override;

  // Any thread. Every node as "host:port" ("[v6]:port"), in configuration order, with whether it
  // is considered up (see "Failed nodes" above). Nodes not yet used count as up.
  std::vector<std::pair<std::string, bool>> nodeStates() const override;
  // Any thread. The server (index into MemcachedOptions::servers) that holds copy 0 of `key`.
  size_t serverFor(std::string_view key) const;
  // Any thread. Every copy of `key` in read order: the keys and servers the I/O threads use.
  std::vector<MemcachedCopy> placeCopies(std::string_view key) const;

  class Ring;  // the libmemcached handles, the node states and the I/O threads; in the .cc

 private:
  explicit MemcachedBackend(std::shared_ptr<Ring> ring);

  std::shared_ptr<Ring> ring_;
};

}  // namespace tessera::cache
