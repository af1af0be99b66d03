#include "cache/memcached_store.h"

#include <libmemcached/memcached.h>
#include <libmemcachedutil-1.0/pool.h>
#include <openssl/evp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <charconv>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "cache/pending_ops.h"

namespace tessera::cache {
namespace {

using Clock = std::chrono::steady_clock;

// libmemcached's ketama continuum is sized for at most 100 servers (MEMCACHED_CONTINUUM_SIZE).
constexpr size_t kMaxServers = 100;
constexpr int kMaxIoThreads = 64;
// Longest key stored as is: leaves room for the longest replica suffix, "#r99:99" (copy indexes
// stay below kMaxServers, attempts below kMaxPlacementAttempts), under memcached's 250 bytes.
constexpr size_t kMaxPlainKey = 240;
constexpr size_t kHashedKeyPrefix = 64;
constexpr int kMaxPlacementAttempts = 100;
// Past this many waiting jobs the nodes are not keeping up; failing at once beats growing a
// backlog whose deadlines have all passed anyway.
constexpr size_t kMaxQueuedJobs = 16384;
// Bound of the handle pool: io_threads handles per worker, for up to this many workers.
constexpr uint32_t kMaxLanes = 256;
// memcached reads an expiration above 30 days as a Unix time.
constexpr int64_t kMaxRelativeExpiry = 60 * 60 * 24 * 30;
constexpr int64_t kMaxTtlSeconds = int64_t{60} * 60 * 24 * 365 * 10;

enum class OpKind { kGet, kSet, kAdd, kRemove, kIncrement };

struct Job {
  OpKind kind = OpKind::kGet;
  std::shared_ptr<PendingOps> pending;
  OpId id = 0;
  std::string key;
  std::string value;
  Seconds ttl{0};
  Clock::time_point deadline;
};

// What a libmemcached result says about the node that was asked.
enum class NodeVerdict {
  kAnswered,      // the node replied, whatever the reply: it is up
  kRequestError,  // refused before reaching a node (bad key, no memory here): says nothing
  kNodeFailed,    // refused, reset, timed out, or already left out by libmemcached
};

NodeVerdict verdictOf(memcached_return_t rc) {
  switch (rc) {
    case MEMCACHED_SUCCESS:
    case MEMCACHED_STORED:
    case MEMCACHED_DELETED:
    case MEMCACHED_END:
    case MEMCACHED_NOTFOUND:
    case MEMCACHED_NOTSTORED:
    case MEMCACHED_DATA_EXISTS:
    case MEMCACHED_E2BIG:
    case MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE:
    case MEMCACHED_SERVER_ERROR:
    case MEMCACHED_CLIENT_ERROR:
      return NodeVerdict::kAnswered;
    case MEMCACHED_BAD_KEY_PROVIDED:
    case MEMCACHED_KEY_TOO_BIG:
    case MEMCACHED_NO_KEY_PROVIDED:
    case MEMCACHED_INVALID_ARGUMENTS:
    case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
    case MEMCACHED_NOT_SUPPORTED:
      return NodeVerdict::kRequestError;
    default:
      return NodeVerdict::kNodeFailed;
  }
}

bool isPlainKeyByte(unsigned char c) { return c >= 0x21 && c <= 0x7e && c != '#' && c != '~'; }

time_t expirationFor(Seconds ttl) {
  int64_t seconds = std::clamp<int64_t>(ttl.count(), 1, kMaxTtlSeconds);
  if (seconds > kMaxRelativeExpiry) return std::time(nullptr) + seconds;
  return static_cast<time_t>(seconds);
}

int64_t steadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

void appendNumber(std::string& out, size_t n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), n);
  out.append(buf, end);
}

std::string nodeName(const MemcachedServerSpec& s) {
  bool v6 = s.host.find(':') != std::string::npos;
  return (v6 ? "[" + s.host + "]" : s.host) + ":" + std::to_string(s.port);
}

bool validate(const MemcachedOptions& o, std::string& error) {
  if (o.servers.empty() || o.servers.size() > kMaxServers) {
    error = "memcached: between 1 and " + std::to_string(kMaxServers) + " servers are needed";
    return false;
  }
  std::set<std::string> seen;
  for (const MemcachedServerSpec& s : o.servers) {
    std::string name = nodeName(s);
    if (s.host.empty() || s.port == 0) {
      error = "memcached: server '" + name + "' needs a host and a port";
    } else if (s.weight == 0) {
      error = "memcached: server " + name + " has weight 0";
    } else if (!seen.insert(name).second) {
      error = "memcached: server " + name + " is listed twice";
    }
    if (!error.empty()) return false;
  }
  if (o.replicas < 0) {
    error = "memcached: replicas must be 0 or more";
  } else if (o.io_threads < 1 || o.io_threads > kMaxIoThreads) {
    error = "memcached: io_threads must be 1.." + std::to_string(kMaxIoThreads);
  } else if (o.retry_timeout.count() <= 0 || o.connect_timeout.count() <= 0 ||
             o.io_timeout.count() <= 0) {
    error = "memcached: retry, connect and io timeouts must be positive";
  }
  return error.empty();
}

struct MemcachedFree {
  void operator()(memcached_st* m) const { memcached_free(m); }
};
struct PoolDestroy {
  // memcached_pool_create() leaves the master to us; destroy returns it, and master_ frees it.
  void operator()(memcached_pool_st* p) const { memcached_pool_destroy(p); }
};
struct MdFree {
  void operator()(EVP_MD* md) const { EVP_MD_free(md); }
};
struct MallocFree {
  void operator()(char* p) const { free(p); }
};

// One node's state as tessera sees it, shared by the I/O threads and read by nodeStates().
struct NodeHealth {
  std::atomic<bool> up{true};
  // While down: calls skip the node until this steady-clock time; the first call after it probes.
  std::atomic<int64_t> next_probe_ms{0};
};

}  // namespace

class MemcachedBackend::Ring {
 public:
  ~Ring() { stop(); }

  bool init(const MemcachedOptions& options, std::string& error);
  // After stop(), every job fails with kError (the backend is gone; Stores may outlive it).
  void stop() { stopped_.store(true); }
  bool stopped() const { return stopped_.load(); }
  int ioThreads() const { return options_.io_threads; }
  // I/O thread: runs one job with a pooled handle and delivers its result.
  void execute(Job& job);

  std::vector<MemcachedCopy> placeCopies(std::string_view key) const;
  size_t serverFor(std::string_view key) const;
  std::vector<std::pair<std::string, bool>> nodeStates() const;
  std::string describe() const;

 private:
  std::optional<std::string> wireKey(std::string_view key) const;
  size_t placementNode(const std::string& key) const;
  bool configure(std::string& error);

  Result run(memcached_st* mc, const Job& job);
  Result runGet(memcached_st* mc, const std::vector<MemcachedCopy>& copies,
                Clock::time_point deadline);
  Result runSet(memcached_st* mc, const std::vector<MemcachedCopy>& copies, const Job& job);
  Result runAdd(memcached_st* mc, const std::vector<MemcachedCopy>& copies, const Job& job);
  Result runRemove(memcached_st* mc, const std::vector<MemcachedCopy>& copies);
  Result runIncrement(memcached_st* mc, const std::vector<MemcachedCopy>& copies, const Job& job);
  template <typename Call>
  memcached_return_t callCopy(memcached_st* mc, const std::string& key, Call call);
  bool admit(size_t node);
  void report(size_t node, memcached_return_t rc);

  MemcachedOptions options_;
  int64_t retry_ms_ = 0;
  std::vector<std::string> names_;
  std::unique_ptr<NodeHealth[]> health_;
  std::unique_ptr<EVP_MD, MdFree> sha256_;  // fetched once: EVP_sha256() would fetch per call
  std::unique_ptr<memcached_st, MemcachedFree> master_;  // the settings the pool clones
  // Never used for I/O and only through const calls, so its ring keeps every node and any thread
  // may hash on it.
  std::unique_ptr<memcached_st, MemcachedFree> placement_;
  std::unique_ptr<memcached_pool_st, PoolDestroy> pool_;  // after master_: destroyed before it

  std::atomic<bool> stopped_{false};
};

// One worker's I/O lane: its own job queue and its own io_threads threads. Each worker has its
// own, so a worker only ever takes the lock it shares with its own I/O threads, never one shared
// with other workers (the handles come from the ring's memcached_pool, which only I/O threads
// touch).
class Lane {
 public:
  Lane(std::shared_ptr<MemcachedBackend::Ring> ring, int threads);
  ~Lane();  // runs what is queued (each job until its deadline), then joins the threads
  // Worker thread. Queues `job`; an I/O thread that is awake takes it, a sleeping one only after
  // wake(). Returns false if the job was refused (and failed with kError).
  bool enqueue(Job job);
  void wake();  // worker thread

 private:
  void ioLoop();

  std::shared_ptr<MemcachedBackend::Ring> ring_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::vector<std::thread> threads_;
};

bool MemcachedBackend::Ring::init(const MemcachedOptions& options, std::string& error) {
  if (!validate(options, error)) return false;
  options_ = options;
  retry_ms_ = options.retry_timeout.count();
  for (const MemcachedServerSpec& s : options.servers) names_.push_back(nodeName(s));
  health_ = std::make_unique<NodeHealth[]>(names_.size());
  sha256_.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!sha256_) {
    error = "memcached: OpenSSL has no SHA256";
    return false;
  }
  master_.reset(memcached_create(nullptr));
  if (!master_ || !configure(error)) return false;
  placement_.reset(memcached_clone(nullptr, master_.get()));
  if (!placement_) {
    error = "memcached: cannot clone the ring";
    return false;
  }
  // Belt and braces: the placement handle does no I/O, so nothing could mark a node failed.
  memcached_behavior_set(placement_.get(), MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0);
  // io_threads per worker: the pool starts with one worker's worth of handles and grows (up to a
  // bound no machine reaches) as workers' lanes ask.
  uint32_t handles = static_cast<uint32_t>(options.io_threads);
  pool_.reset(memcached_pool_create(master_.get(), handles, handles * kMaxLanes));
  if (!pool_) {
    error = "memcached: cannot create the connection pool";
    return false;
  }
  return true;
}

bool MemcachedBackend::Ring::configure(std::string& error) {
  memcached_st* m = master_.get();
  auto ms = [](std::chrono::milliseconds d) {
    return static_cast<uint64_t>(std::min<int64_t>(d.count(), INT32_MAX));
  };
  uint64_t retry_s = static_cast<uint64_t>((options_.retry_timeout.count() + 999) / 1000);
  const std::pair<memcached_behavior_t, uint64_t> behaviors[] = {
      {MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA},
      // Binary: it lost fewer keys than text when a node died (design.md: 87 vs 71 of 100).
      {MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1},
      {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1},
      {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 1},
      {MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1},
      {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, retry_s},
      // Without a dead timeout, libmemcached 1.1.4 never connects to a node again once it has
      // failed: after RETRY_TIMEOUT it puts the node back in the ring but answers
      // SERVER_MARKED_DEAD for every key there, forever, even when the node is back up.
      {MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, retry_s},
      {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms(options_.connect_timeout)},  // milliseconds
      {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms(options_.io_timeout)},          // milliseconds
      // Microseconds. libmemcached's sockets are non-blocking, so poll does the waiting; these
      // only matter should a blocking socket call ever be made.
      {MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
       std::min<uint64_t>(ms(options_.io_timeout) * 1000, INT32_MAX)},
      {MEMCACHED_BEHAVIOR_SND_TIMEOUT,
       std::min<uint64_t>(ms(options_.io_timeout) * 1000, INT32_MAX)},
      // NO_BLOCK stays off: in 1.1 it only sets SO_LINGER 0 (I/O is always non-blocking), and
      // in older versions it made the connect poll wait forever.
  };
  for (const auto& [flag, value] : behaviors) {
    memcached_return_t rc = memcached_behavior_set(m, flag, value);
    if (memcached_failed(rc)) {
      error = std::string("memcached: behavior refused: ") + memcached_strerror(m, rc);
      return false;
    }
  }
  // Equal weights go in as 1: libmemcached turns weighted ketama on for any weight above 1, and
  // a weighted ring of equal weights would hash keys differently from the plain one.
  const auto& servers = options_.servers;
  bool weighted = std::any_of(servers.begin(), servers.end(),
                              [&](const auto& s) { return s.weight != servers.front().weight; });
  for (const MemcachedServerSpec& s : servers) {
    memcached_return_t rc =
        memcached_server_add_with_weight(m, s.host.c_str(), s.port, weighted ? s.weight : 1);
    if (memcached_failed(rc)) {
      error = "memcached: server " + nodeName(s) + " refused: " + memcached_strerror(m, rc);
      return false;
    }
  }
  // Set after the servers: setting DISTRIBUTION again would turn weighting off.
  if (weighted &&
      memcached_failed(memcached_behavior_set(m, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1))) {
    error = "memcached: weighted ketama refused";
    return false;
  }
  return true;
}

void MemcachedBackend::Ring::execute(Job& job) {
  // The worker has answered kTimeout already; skipping spares the nodes and the jobs behind.
  if (Clock::now() >= job.deadline) return;
  Result result{Status::kError, {}};
  memcached_return_t rc = MEMCACHED_SUCCESS;
  // Never waits: a null timeout makes an exhausted pool answer at once (it grows up to its bound).
  if (memcached_st* mc = memcached_pool_fetch(pool_.get(), nullptr, &rc)) {
    result = run(mc, job);
    memcached_pool_release(pool_.get(), mc);
  }
  job.pending->complete(job.id, std::move(result));
}

Lane::Lane(std::shared_ptr<MemcachedBackend::Ring> ring, int threads) : ring_(std::move(ring)) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { ioLoop(); });
}

Lane::~Lane() {
  // The threads run what is still queued before they exit, so writes made in the worker's last
  // pass (a session stored just before a drain ends) still reach the ring. Every job carries a
  // deadline and is skipped once it has passed (reads are skipped at once), so this takes at most
  // the longest deadline plus one operation's I/O bound, (replicas + 1) x (connect_timeout +
  // io_timeout), when nodes hang.
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

bool Lane::enqueue(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ && queue_.size() < kMaxQueuedJobs) {
      queue_.push_back(std::move(job));
      return true;
    }
  }
  // Delivered from the worker's loop like any result, so still never inside the caller's call.
  job.pending->complete(job.id, Result{Status::kError, {}});
  return false;
}

void Lane::wake() {
  size_t queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued = queue_.size();
  }
  if (queued > 1) {
    wake_.notify_all();
  } else if (queued == 1) {
    wake_.notify_one();
  }
}

void Lane::ioLoop() {
  pthread_setname_np(pthread_self(), "tessera:io");  // what `top -H` shows
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to run
      job = std::move(queue_.front());
      queue_.pop_front();
      // Once stopping, nobody waits for a read: only writes are worth their round trips.
      if (stopping_ && job.kind == OpKind::kGet) continue;
    }
    if (ring_->stopped()) {
      job.pending->complete(job.id, Result{Status::kError, {}});
      continue;
    }
    ring_->execute(job);
  }
}

Result MemcachedBackend::Ring::run(memcached_st* mc, const Job& job) {
  std::vector<MemcachedCopy> copies = placeCopies(job.key);
  if (copies.empty()) return Result{Status::kError, {}};
  switch (job.kind) {
    case OpKind::kGet:
      return runGet(mc, copies, job.deadline);
    case OpKind::kSet:
      return runSet(mc, copies, job);
    case OpKind::kAdd:
      return runAdd(mc, copies, job);
    case OpKind::kRemove:
      return runRemove(mc, copies);
    case OpKind::kIncrement:
      return runIncrement(mc, copies, job);
  }
  return Result{Status::kError, {}};
}

Result MemcachedBackend::Ring::runGet(memcached_st* mc, const std::vector<MemcachedCopy>& copies,
                                      Clock::time_point deadline) {
  size_t failed = 0;
  for (const MemcachedCopy& copy : copies) {
    // Past the deadline the result would be dropped; leave the other nodes alone.
    if (Clock::now() >= deadline) return Result{Status::kTimeout, {}};
    size_t length = 0;
    uint32_t flags = 0;
    std::unique_ptr<char, MallocFree> value;
    memcached_return_t rc = callCopy(mc, copy.key, [&] {
      memcached_return_t r = MEMCACHED_SUCCESS;
      value.reset(memcached_get(mc, copy.key.data(), copy.key.size(), &length, &flags, &r));
      return r;
    });
    if (rc == MEMCACHED_SUCCESS) {
      // An empty value comes back as a null pointer.
      return Result{Status::kOk, value ? std::string(value.get(), length) : std::string()};
    }
    if (rc != MEMCACHED_NOTFOUND) ++failed;
  }
  return Result{failed == copies.size() ? Status::kError : Status::kNotFound, {}};
}

Result MemcachedBackend::Ring::runSet(memcached_st* mc, const std::vector<MemcachedCopy>& copies,
                                      const Job& job) {
  time_t expiration = expirationFor(job.ttl);
  size_t stored = 0;
  for (const MemcachedCopy& copy : copies) {
    memcached_return_t rc = callCopy(mc, copy.key, [&] {
      return memcached_set(mc, copy.key.data(), copy.key.size(), job.value.data(), job.value.size(),
                           expiration, 0);
    });
    if (memcached_success(rc)) ++stored;
  }
  return Result{stored > 0 ? Status::kOk : Status::kError, {}};
}

Result MemcachedBackend::Ring::runAdd(memcached_st* mc, const std::vector<MemcachedCopy>& copies,
                                      const Job& job) {
  time_t expiration = expirationFor(job.ttl);
  // The first copy whose node answers is the primary: the add there decides. Replicas are set
  // only after it, so an adder that fails over to a replica finds the record there (the race
  // windows are in the header).
  for (size_t i = 0; i < copies.size(); ++i) {
    const MemcachedCopy& primary = copies[i];
    memcached_return_t rc = callCopy(mc, primary.key, [&] {
      return memcached_add(mc, primary.key.data(), primary.key.size(), job.value.data(),
                           job.value.size(), expiration, 0);
    });
    if (memcached_success(rc)) {
      for (size_t j = i + 1; j < copies.size(); ++j) {
        const MemcachedCopy& replica = copies[j];
        callCopy(mc, replica.key, [&] {
          return memcached_set(mc, replica.key.data(), replica.key.size(), job.value.data(),
                               job.value.size(), expiration, 0);
        });
      }
      return Result{Status::kOk, {}};
    }
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS)
      return Result{Status::kExists, {}};
    // A node that answered with an error (value too big) would answer the same on every copy.
    if (verdictOf(rc) != NodeVerdict::kNodeFailed) break;
  }
  return Result{Status::kError, {}};
}

// One round trip with the binary protocol's increment-with-initial; the first copy whose node
// answers holds the counter (see Store::increment for why counters are not replicated).
Result MemcachedBackend::Ring::runIncrement(memcached_st* mc,
                                            const std::vector<MemcachedCopy>& copies,
                                            const Job& job) {
  time_t expiration = expirationFor(job.ttl);
  for (const MemcachedCopy& copy : copies) {
    uint64_t count = 0;
    memcached_return_t rc = callCopy(mc, copy.key, [&] {
      return memcached_increment_with_initial(mc, copy.key.data(), copy.key.size(), 1, 1,
                                              expiration, &count);
    });
    if (memcached_success(rc)) return Result{Status::kOk, std::to_string(count)};
    if (verdictOf(rc) != NodeVerdict::kNodeFailed) break;
  }
  return Result{Status::kError, {}};
}

Result MemcachedBackend::Ring::runRemove(memcached_st* mc,
                                         const std::vector<MemcachedCopy>& copies) {
  bool existed = false;
  size_t failed = 0;
  for (const MemcachedCopy& copy : copies) {
    memcached_return_t rc = callCopy(
        mc, copy.key, [&] { return memcached_delete(mc, copy.key.data(), copy.key.size(), 0); });
    if (memcached_success(rc)) {
      existed = true;
    } else if (rc != MEMCACHED_NOTFOUND) {
      ++failed;
    }
  }
  if (existed) return Result{Status::kOk, {}};
  return Result{failed == copies.size() ? Status::kError : Status::kNotFound, {}};
}

template <typename Call>
memcached_return_t MemcachedBackend::Ring::callCopy(memcached_st* mc, const std::string& key,
                                                    Call call) {
  // The node this handle sends the key to: the placement's node, or a stand-in while that node
  // is out of this handle's ring. Rebuild the ring first, as the call itself would.
  memcached_autoeject(mc);
  size_t node = memcached_generate_hash(mc, key.data(), key.size());
  if (node >= names_.size()) return MEMCACHED_NO_SERVERS;
  if (!admit(node)) return MEMCACHED_SERVER_TEMPORARILY_DISABLED;
  memcached_return_t rc = call();
  report(node, rc);
  return rc;
}

bool MemcachedBackend::Ring::admit(size_t node) {
  NodeHealth& health = health_[node];
  if (health.up.load()) return true;
  int64_t now = steadyMillis();
  int64_t due = health.next_probe_ms.load();
  // One call per retry period probes a down node; the others keep skipping it meanwhile.
  return now >= due && health.next_probe_ms.compare_exchange_strong(due, now + retry_ms_);
}

void MemcachedBackend::Ring::report(size_t node, memcached_return_t rc) {
  NodeHealth& health = health_[node];
  switch (verdictOf(rc)) {
    case NodeVerdict::kAnswered:
      health.up.store(true);
      break;
    case NodeVerdict::kRequestError:
      break;
    case NodeVerdict::kNodeFailed:
      // The probe time first, so that a caller who sees the node down reads when to retry it.
      health.next_probe_ms.store(steadyMillis() + retry_ms_);
      health.up.store(false);
      break;
  }
}

std::optional<std::string> MemcachedBackend::Ring::wireKey(std::string_view key) const {
  if (!key.empty() && key.size() <= kMaxPlainKey &&
      std::all_of(key.begin(), key.end(), [](char c) { return isPlainKeyByte(c); })) {
    return std::string(key);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(key.data(), key.size(), digest, &digest_len, sha256_.get(), nullptr) != 1) {
    return std::nullopt;
  }
  std::string out(key.substr(0, kHashedKeyPrefix));
  for (char& c : out) {
    if (!isPlainKeyByte(c)) c = '_';
  }
  // '~' never appears in a key stored as is, so a hashed key cannot equal one of those.
  out.push_back('~');
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < digest_len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

size_t MemcachedBackend::Ring::placementNode(const std::string& key) const {
  uint32_t node = memcached_generate_hash(placement_.get(), key.data(), key.size());
  return node < names_.size() ? node : 0;
}

std::vector<MemcachedCopy> MemcachedBackend::Ring::placeCopies(std::string_view key) const {
  std::vector<MemcachedCopy> copies;
  std::optional<std::string> wire = wireKey(key);
  if (!wire) return copies;
  size_t wanted = std::min(static_cast<size_t>(options_.replicas) + 1, names_.size());
  copies.reserve(wanted);
  std::bitset<kMaxServers> used;
  size_t primary = placementNode(*wire);
  used.set(primary);
  copies.push_back({*wire, primary});
  std::string candidate;
  for (size_t i = 1; i < wanted; ++i) {
    for (int attempt = 0; attempt < kMaxPlacementAttempts; ++attempt) {
      candidate.assign(*wire);
      candidate.append("#r");
      appendNumber(candidate, i);
      candidate.push_back(':');
      appendNumber(candidate, static_cast<size_t>(attempt));
      size_t node = placementNode(candidate);
      if (!used.test(node)) {
        used.set(node);
        copies.push_back({candidate, node});
        break;
      }
    }
  }
  return copies;
}

size_t MemcachedBackend::Ring::serverFor(std::string_view key) const {
  std::optional<std::string> wire = wireKey(key);
  return wire ? placementNode(*wire) : 0;
}

std::vector<std::pair<std::string, bool>> MemcachedBackend::Ring::nodeStates() const {
  std::vector<std::pair<std::string, bool>> states;
  states.reserve(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) states.emplace_back(names_[i], health_[i].up.load());
  return states;
}

std::string MemcachedBackend::Ring::describe() const {
  std::string s = "memcached ring of " + std::to_string(names_.size());
  s += names_.size() == 1 ? " node, " : " nodes, ";
  // The replicas that can exist: one node cannot hold two copies.
  size_t replicas = std::min(static_cast<size_t>(options_.replicas), names_.size() - 1);
  if (replicas == 0) return s + "no replicas";
  return s + std::to_string(replicas) + (replicas == 1 ? " replica" : " replicas");
}

namespace {

class MemcachedStore final : public Store {
 public:
  MemcachedStore(std::shared_ptr<MemcachedBackend::Ring> ring, event_base* base)
      : pending_(PendingOps::create(base)),
        lane_(std::make_unique<Lane>(ring, ring->ioThreads())),
        wake_ev_(event_new(base, -1, 0, &MemcachedStore::onWake, this)) {}
  ~MemcachedStore() override {
    event_free(wake_ev_);
    pending_->shutdown();
    lane_.reset();  // runs the queued jobs (each until its deadline), joins the I/O threads
  }

  OpId get(std::string_view key, Millis timeout, Callback done) override {
    return submit(OpKind::kGet, key, {}, Seconds(0), timeout, std::move(done));
  }
  OpId set(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
           Callback done) override {
    return submit(OpKind::kSet, key, value, ttl, timeout, std::move(done));
  }
  OpId add(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
           Callback done) override {
    return submit(OpKind::kAdd, key, value, ttl, timeout, std::move(done));
  }
  OpId remove(std::string_view key, Millis timeout, Callback done) override {
    return submit(OpKind::kRemove, key, {}, Seconds(0), timeout, std::move(done));
  }
  OpId increment(std::string_view key, Seconds ttl, Millis timeout, Callback done) override {
    return submit(OpKind::kIncrement, key, {}, ttl, timeout, std::move(done));
  }
  void cancel(OpId id) override { pending_->cancel(id); }
  void flush() override {
    if (std::exchange(wake_pending_, false)) lane_->wake();
  }

 private:
  OpId submit(OpKind kind, std::string_view key, std::string_view value, Seconds ttl,
              Millis timeout, Callback done) {
    OpId id = pending_->start(timeout, std::move(done));
    Job job;
    job.kind = kind;
    job.pending = pending_;
    job.id = id;
    job.key.assign(key);
    job.value.assign(value);
    job.ttl = ttl;
    job.deadline = Clock::now() + timeout;
    // The I/O threads are woken once the worker's loop has run what is ready now, not per job:
    // a woken thread would otherwise preempt the worker in the middle of a handshake, and the
    // jobs that one pass over the ready connections makes go to the threads in one wake-up.
    if (lane_->enqueue(std::move(job)) && !wake_pending_) {
      wake_pending_ = true;
      event_active(wake_ev_, 0, 0);
    }
    return id;
  }

  static void onWake(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<MemcachedStore*>(arg);
    self->wake_pending_ = false;
    self->lane_->wake();
  }

  std::shared_ptr<PendingOps> pending_;
  std::unique_ptr<Lane> lane_;
  event* wake_ev_;
  bool wake_pending_ = false;
};

}  // namespace

std::unique_ptr<MemcachedBackend> MemcachedBackend::create(const MemcachedOptions& options,
                                                           std::string& error) {
  auto ring = std::make_shared<Ring>();
  if (!ring->init(options, error)) return nullptr;
  return std::unique_ptr<MemcachedBackend>(new MemcachedBackend(std::move(ring)));
}

MemcachedBackend::MemcachedBackend(std::shared_ptr<Ring> ring) : ring_(std::move(ring)) {}

MemcachedBackend::~MemcachedBackend() { ring_->stop(); }

std::unique_ptr<Store> MemcachedBackend::connect(event_base* base) {
  return std::make_unique<MemcachedStore>(ring_, base);
}

std::string MemcachedBackend::describe() const { return ring_->describe(); }

std::vector<std::pair<std::string, bool>> MemcachedBackend::nodeStates() const {
  return ring_->nodeStates();
}

size_t MemcachedBackend::serverFor(std::string_view key) const { return ring_->serverFor(key); }

std::vector<MemcachedCopy> MemcachedBackend::placeCopies(std::string_view key) const {
  return ring_->placeCopies(key);
}

}  // namespace tessera::cache
