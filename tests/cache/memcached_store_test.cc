// MemcachedBackend against real memcached processes, started here on loopback ports picked at run
// time: results, key mapping, TTLs, ring placement, add atomicity across workers, and what a
// killed, stopped, restarted or absent node costs. The ring tests need no memcached: placement is
// pure hashing.

#include "cache/memcached_store.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <latch>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/loopback_socket.h"

extern char** environ;

namespace tessera::cache {
namespace {

using tessera::testing::LoopbackSocket;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr Millis kTimeout{3000};  // far above any expected reply; a wrong test fails, not hangs
constexpr Seconds kTtl{60};

struct EventBaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;

EventBasePtr makeBase() {
  // Results arrive from the I/O threads through event_active(): libevent's locking must be on
  // before any base exists.
  static const bool threads_on = [] { return evthread_use_pthreads() == 0; }();
  EXPECT_TRUE(threads_on);
  return EventBasePtr(event_base_new());
}

// Runs the loop until `done` holds. Every pending operation has a deadline timer, so each pass
// wakes up by itself; the wall-clock bound only stops a broken test.
template <typename Cond>
bool runUntil(event_base* base, Cond done, Millis limit = 10s) {
  Clock::time_point end = Clock::now() + limit;
  while (!done() && Clock::now() < end) event_base_loop(base, EVLOOP_ONCE);
  return done();
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A loopback port nothing listens on now: the kernel picks it, and closing frees it.
uint16_t freePort() { return LoopbackSocket().port(); }

int connectTo(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// `prefix` followed by `i`, built by appending: GCC 12 warns falsely (-Wrestrict, GCC bug 105651)
// about `literal + std::to_string(i)`, which inserts at the front.
std::string numbered(const char* prefix, size_t i) {
  std::string out(prefix);
  out += std::to_string(i);
  return out;
}

// What memcached's text protocol returns for `get key`: how another client sees copy 0.
std::string textGet(uint16_t port, const std::string& key) {
  int fd = connectTo(port);
  if (fd < 0) return "connect failed";
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string request = "get " + key + "\r\n";
  std::string reply;
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) == ssize_t(request.size())) {
    char buf[4096];
    while (reply.size() < 5 || reply.compare(reply.size() - 5, 5, "END\r\n") != 0) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return reply;
}

// One memcached process on a loopback port, always killed and reaped by its destructor.
class MemcachedProcess {
 public:
  MemcachedProcess() = default;
  MemcachedProcess(const MemcachedProcess&) = delete;
  MemcachedProcess& operator=(const MemcachedProcess&) = delete;
  ~MemcachedProcess() { kill(); }

  // On a port of its own choosing, or on `port` (a restart). False if it never accepted.
  bool start(uint16_t port = 0) {
    for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) {
      port_ = port != 0 ? port : freePort();
      if (!spawn() || !awaitAccepting()) kill();
    }
    return pid_ > 0;
  }
  // SIGCONT first: a stopped process does not act on SIGKILL until it is continued.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // SIGSTOP returns once the node has stopped: kill() only queues the signal, and a request sent
  // right after it could still be answered.
  void signal(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    if (sig == SIGSTOP) ::waitpid(pid_, &status, WUNTRACED);
  }
  uint16_t port() const { return port_; }

 private:
  bool spawn() {
    std::string port = std::to_string(port_);
    std::vector<const char*> argv = {"memcached", "-l", "127.0.0.1", "-p", port.c_str(), "-U",
                                     "0",         "-m", "16",        "-t", "1"};
    if (geteuid() == 0) {  // memcached refuses to run as root without a user to switch to
      argv.push_back("-u");
      argv.push_back("nobody");
    }
    argv.push_back(nullptr);
    return posix_spawnp(&pid_, "memcached", nullptr, nullptr, const_cast<char**>(argv.data()),
                        environ) == 0;
  }
  bool awaitAccepting() {
    for (Clock::time_point end = Clock::now() + 5s; Clock::now() < end;) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {  // exited: the port was taken meanwhile
        pid_ = -1;
        return false;
      }
      if (int fd = connectTo(port_); fd >= 0) {
        close(fd);
        return true;
      }
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

bool haveMemcached() {
  static const bool found = [] { return system("command -v memcached >/dev/null 2>&1") == 0; }();
  return found;
}

MemcachedOptions optionsFor(const std::vector<uint16_t>& ports, int replicas) {
  MemcachedOptions o;
  for (uint16_t p : ports) o.servers.push_back({"127.0.0.1", p, 1});
  o.replicas = replicas;
  o.io_threads = 2;
  o.retry_timeout = 2000ms;
  o.connect_timeout = 200ms;
  o.io_timeout = 200ms;
  return o;
}

std::unique_ptr<MemcachedBackend> makeBackend(const MemcachedOptions& o) {
  std::string error;
  std::unique_ptr<MemcachedBackend> b = MemcachedBackend::create(o, error);
  EXPECT_TRUE(b) << error;
  return b;
}

// Every byte value, NULs included.
std::string binaryValue(size_t size, int seed) {
  std::string v;
  for (size_t i = 0; i < size; ++i) v.push_back(static_cast<char>((i * 7 + seed) & 0xff));
  return v;
}

std::vector<std::string> keys(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

class MemcachedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // `make test` installs memcached; a machine without it must fail loudly, not pass silently.
    ASSERT_TRUE(haveMemcached()) << "memcached is not installed (make deps installs it)";
    base_ = makeBase();
  }

  void TearDown() override {
    for (auto& n : nodes_) n->signal(SIGCONT);  // so the I/O threads' calls end promptly
    store_.reset();                             // before the base: it frees its events
    backend_.reset();
    nodes_.clear();
  }

  void startNodes(int n) {
    for (int i = 0; i < n; ++i) {
      nodes_.push_back(std::make_unique<MemcachedProcess>());
      ASSERT_TRUE(nodes_.back()->start()) << "memcached did not start";
    }
  }
  std::vector<uint16_t> ports() const {
    std::vector<uint16_t> out;
    for (const auto& n : nodes_) out.push_back(n->port());
    return out;
  }
  void connectRing(int replicas, int io_threads = 2, Millis retry = 2000ms,
                   Millis io_timeout = 200ms) {
    MemcachedOptions o = optionsFor(ports(), replicas);
    o.io_threads = io_threads;
    o.retry_timeout = retry;
    o.io_timeout = io_timeout;
    backend_ = makeBackend(o);
    ASSERT_TRUE(backend_);
    store_ = backend_->connect(base_.get());
  }

  // Starts one operation, checks its callback did not run inside the call, and waits for it.
  template <typename Start>
  Result await(Start start) {
    std::optional<Result> got;
    start([&got](Result r) { got = std::move(r); });
    EXPECT_FALSE(got.has_value()) << "callback ran inside the call";
    EXPECT_TRUE(runUntil(base_.get(), [&] { return got.has_value(); })) << "no callback";
    return got.value_or(Result{Status::kError, {}});
  }
  Result get(const std::string& key, Millis timeout = kTimeout) {
    return await([&](Callback cb) { store_->get(key, timeout, std::move(cb)); });
  }
  Result set(const std::string& key, const std::string& value, Seconds ttl = kTtl) {
    return await([&](Callback cb) { store_->set(key, value, ttl, kTimeout, std::move(cb)); });
  }
  Result add(const std::string& key, const std::string& value) {
    return await([&](Callback cb) { store_->add(key, value, kTtl, kTimeout, std::move(cb)); });
  }
  Result remove(const std::string& key) {
    return await([&](Callback cb) { store_->remove(key, kTimeout, std::move(cb)); });
  }
  Result increment(const std::string& key, Seconds ttl = kTtl) {
    return await([&](Callback cb) { store_->increment(key, ttl, kTimeout, std::move(cb)); });
  }

  // Many operations at once, as a loaded worker starts them; results in the order of `ks`.
  template <typename Start>
  std::vector<Result> awaitAll(const std::vector<std::string>& ks, Start start) {
    std::vector<std::optional<Result>> got(ks.size());
    size_t done = 0;
    for (size_t i = 0; i < ks.size(); ++i) {
      start(i, [&got, &done, i](Result r) {
        got[i] = std::move(r);
        ++done;
      });
    }
    EXPECT_EQ(done, 0u) << "callback ran inside the call";
    EXPECT_TRUE(runUntil(base_.get(), [&] { return done == ks.size(); }));
    std::vector<Result> out;
    for (auto& g : got) out.push_back(g.value_or(Result{Status::kError, {}}));
    return out;
  }
  void setAll(const std::vector<std::string>& ks) {
    std::vector<Result> results = awaitAll(ks, [&](size_t i, Callback cb) {
      store_->set(ks[i], "value of " + ks[i], kTtl, kTimeout, std::move(cb));
    });
    for (const Result& r : results) ASSERT_EQ(r.status, Status::kOk);
  }

  EventBasePtr base_;
  std::vector<std::unique_ptr<MemcachedProcess>> nodes_;
  std::unique_ptr<MemcachedBackend> backend_;
  std::unique_ptr<Store> store_;
};

TEST_F(MemcachedStoreTest, GetSetAddRemove) {
  startNodes(3);
  connectRing(1);
  EXPECT_EQ(get("absent").status, Status::kNotFound);

  std::string value = binaryValue(600, 3);
  ASSERT_NE(value.find('\0'), std::string::npos);
  EXPECT_EQ(set("k1", value).status, Status::kOk);
  Result r = get("k1");
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.value, value);  // byte for byte

  EXPECT_EQ(add("k1", "other").status, Status::kExists);
  EXPECT_EQ(get("k1").value, value);  // a refused add wrote nothing
  EXPECT_EQ(add("k2", "first").status, Status::kOk);
  EXPECT_EQ(get("k2").value, "first");
  EXPECT_EQ(set("k2", "second").status, Status::kOk);
  EXPECT_EQ(get("k2").value, "second");

  EXPECT_EQ(remove("k1").status, Status::kOk);
  EXPECT_EQ(get("k1").status, Status::kNotFound);
  EXPECT_EQ(remove("k1").status, Status::kNotFound);
  EXPECT_EQ(add("k1", "again").status, Status::kOk);  // every copy went with the remove

  EXPECT_EQ(set("empty", "").status, Status::kOk);
  r = get("empty");
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.value, "");
}

TEST_F(MemcachedStoreTest, EveryCopyHoldsTheRecordAndCopyZeroIsTheKeyItself) {
  startNodes(3);
  connectRing(2);
  std::string value = "session bytes";
  ASSERT_EQ(set("tls:0a1b2c", value).status, Status::kOk);
  std::vector<MemcachedCopy> copies = backend_->placeCopies("tls:0a1b2c");
  ASSERT_EQ(copies.size(), 3u);
  EXPECT_EQ(copies[0].key, "tls:0a1b2c");  // other memcached clients find it under its name
  std::set<size_t> servers;
  for (const MemcachedCopy& c : copies) {
    servers.insert(c.server);
    std::string reply = textGet(nodes_[c.server]->port(), c.key);
    EXPECT_EQ(reply, "VALUE " + c.key + " 0 13\r\n" + value + "\r\nEND\r\n");
  }
  EXPECT_EQ(servers.size(), 3u);
}

TEST_F(MemcachedStoreTest, KeysMemcachedCannotTakeAreMappedWithoutCollisions) {
  startNodes(3);
  connectRing(1);
  std::string long_a(1000, 'a');
  std::string long_b = long_a;
  long_b.back() = 'b';  // same readable prefix, same length: only the hash tells them apart
  const std::vector<std::string> odd = {long_a,
                                        long_b,
                                        "with space",
                                        "ctl\x01\x7f",
                                        std::string("nul\0byte", 8),
                                        "",
                                        "hash#r1:0",
                                        "tilde~1",
                                        "\xc3\xa9t\xc3\xa9",
                                        std::string(240, 'p'),
                                        std::string(241, 'p')};
  for (size_t i = 0; i < odd.size(); ++i) {
    for (const MemcachedCopy& c : backend_->placeCopies(odd[i])) {
      EXPECT_LE(c.key.size(), 250u);
      for (char ch : c.key) EXPECT_TRUE(ch > 0x20 && ch < 0x7f) << "byte " << int(ch);
    }
    ASSERT_EQ(set(odd[i], numbered("v", i)).status, Status::kOk) << i;
  }
  for (size_t i = 0; i < odd.size(); ++i) {
    Result r = get(odd[i]);
    EXPECT_EQ(r.status, Status::kOk) << i;
    EXPECT_EQ(r.value, numbered("v", i)) << i;
  }
  EXPECT_EQ(backend_->placeCopies(std::string(240, 'p'))[0].key, std::string(240, 'p'));
  EXPECT_NE(backend_->placeCopies("hash#r1:0")[0].key, "hash#r1:0");  // '#' marks replicas only
}

TEST_F(MemcachedStoreTest, TtlsAreWholeSecondsAtLeastOneAndLongOnesStayRelative) {
  startNodes(1);
  connectRing(0);
  // 0 s is sent as 1 s; sent as 0 it would mean "never expires".
  ASSERT_EQ(set("short", "v", Seconds(0)).status, Status::kOk);
  // 40 days is past memcached's 30-day limit for relative times; sent as is, memcached would
  // read it as a date in 1970 and drop the record at once.
  ASSERT_EQ(set("long", "v", Seconds(40 * 24 * 3600)).status, Status::kOk);
  EXPECT_EQ(get("long").status, Status::kOk);
  bool expired = false;
  for (Clock::time_point end = Clock::now() + 4s; !expired && Clock::now() < end;) {
    expired = get("short").status == Status::kNotFound;
    if (!expired) std::this_thread::sleep_for(100ms);  // polling memcached's one-second clock
  }
  EXPECT_TRUE(expired);
  EXPECT_EQ(get("long").status, Status::kOk);
}

TEST_F(MemcachedStoreTest, CancelledAndDroppedCallbacksNeverRun) {
  startNodes(1);
  connectRing(0);
  int cancelled_ran = 0;
  OpId cancelled = store_->set("c", "v", kTtl, kTimeout, [&](Result) { ++cancelled_ran; });
  store_->cancel(cancelled);
  bool after = false;
  store_->get("c", kTimeout, [&](Result) { after = true; });
  ASSERT_TRUE(runUntil(base_.get(), [&] { return after; }));
  EXPECT_EQ(cancelled_ran, 0);
  int ran_after_reset = 0;
  for (int i = 0; i < 20; ++i) {
    store_->get("c", kTimeout, [&](Result) { ran_after_reset += store_ == nullptr ? 1 : 0; });
  }
  // One pass of the loop wakes the I/O threads, so results race with the reset below: those
  // delivered in this pass may run (the Store is still there); none may run after the reset.
  event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  store_.reset();    // drops the pending callbacks
  backend_.reset();  // joins the I/O threads: every job has finished or been dropped
  event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  EXPECT_EQ(cancelled_ran, 0);
  EXPECT_EQ(ran_after_reset, 0);
}

TEST_F(MemcachedStoreTest, WritesQueuedBeforeTheStoreGoesStillReachTheRing) {
  startNodes(3);
  connectRing(1);
  // The worker's loop never runs again after these calls (as in the last pass before a drain
  // ends), so the I/O threads were never woken for them: destroying the Store must still run them.
  for (int i = 0; i < 8; ++i) {
    store_->set(numbered("last-pass-", i), numbered("v", i), kTtl, kTimeout, [](Result) {});
  }
  store_.reset();
  store_ = backend_->connect(base_.get());
  for (int i = 0; i < 8; ++i) {
    Result r = get(numbered("last-pass-", i));
    EXPECT_EQ(r.status, Status::kOk) << i;
    EXPECT_EQ(r.value, numbered("v", i)) << i;
  }
}

// The worker's loop has stopped for good: flush() sends what the last pass queued, at once and
// without the loop (the Store is destroyed much later, after every worker has finished).
TEST_F(MemcachedStoreTest, FlushSendsTheLastPassesWritesWithoutTheLoop) {
  startNodes(1);
  connectRing(0);
  store_->set("flushed", "v", kTtl, kTimeout, [](Result) {});
  store_->flush();
  uint16_t port = nodes_[0]->port();
  std::string got;
  for (Clock::time_point end = Clock::now() + 3s; Clock::now() < end;) {
    got = textGet(port, "flushed");
    if (got != "END\r\n") break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(got, "VALUE flushed 0 1\r\nv\r\nEND\r\n");
}

TEST_F(MemcachedStoreTest, AStoreOutlivingItsBackendAnswersError) {
  startNodes(1);
  connectRing(0);
  backend_.reset();
  EXPECT_EQ(get("k").status, Status::kError);
}

TEST_F(MemcachedStoreTest, AddIsAtomicAcrossWorkers) {
  startNodes(3);
  connectRing(1);
  constexpr int kWorkers = 4;
  const std::vector<std::string> ks = keys("nonce:", 200);
  std::vector<std::array<std::atomic<int>, 3>> counts(ks.size());  // ok, exists, other
  std::latch go(kWorkers);
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      EventBasePtr base = makeBase();
      std::unique_ptr<Store> store = backend_->connect(base.get());
      size_t done = 0;
      go.arrive_and_wait();
      for (size_t i = 0; i < ks.size(); ++i) {
        store->add(ks[i], "worker " + std::to_string(w), kTtl, 10s, [&, i](Result r) {
          int slot = r.status == Status::kOk ? 0 : r.status == Status::kExists ? 1 : 2;
          ++counts[i][slot];
          ++done;
        });
      }
      runUntil(
          base.get(), [&] { return done == ks.size(); }, 20s);
      store.reset();
    });
  }
  for (std::thread& t : workers) t.join();
  for (size_t i = 0; i < ks.size(); ++i) {
    EXPECT_EQ(counts[i][0].load(), 1) << ks[i];
    EXPECT_EQ(counts[i][1].load(), kWorkers - 1) << ks[i];
    EXPECT_EQ(counts[i][2].load(), 0) << ks[i];
  }
}

TEST_F(MemcachedStoreTest, IncrementCountsOnceForEveryWorkerAndExpires) {
  startNodes(3);
  connectRing(1);
  EXPECT_EQ(increment("rate:a").value, "1");
  EXPECT_EQ(increment("rate:a").value, "2");
  constexpr int kWorkers = 3, kEach = 50;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&] {
      EventBasePtr base = makeBase();
      std::unique_ptr<Store> store = backend_->connect(base.get());
      int done = 0;
      for (int i = 0; i < kEach; ++i) {
        store->increment("rate:b", kTtl, 10s, [&](Result r) {
          EXPECT_EQ(r.status, Status::kOk);
          ++done;
        });
      }
      runUntil(
          base.get(), [&] { return done == kEach; }, 20s);
      store.reset();
    });
  }
  for (std::thread& t : workers) t.join();
  EXPECT_EQ(increment("rate:b").value, std::to_string(kWorkers * kEach + 1));
  EXPECT_EQ(increment("rate:c", Seconds(1)).value, "1");
  std::this_thread::sleep_for(2100ms);  // memcached's clock ticks in whole seconds
  EXPECT_EQ(increment("rate:c", Seconds(1)).value, "1");
}

TEST_F(MemcachedStoreTest, KillingOneNodeLosesNoRecord) {
  startNodes(3);
  connectRing(1);
  const std::vector<std::string> ks = keys("session:", 100);
  setAll(ks);
  nodes_[1]->kill();  // kill -9: the node and everything it held are gone
  std::vector<Result> results =
      awaitAll(ks, [&](size_t i, Callback cb) { store_->get(ks[i], kTimeout, std::move(cb)); });
  int readable = 0;
  for (size_t i = 0; i < ks.size(); ++i) {
    readable += results[i].status == Status::kOk && results[i].value == "value of " + ks[i];
  }
  EXPECT_EQ(readable, 100);
  std::vector<std::pair<std::string, bool>> states = backend_->nodeStates();
  ASSERT_EQ(states.size(), 3u);
  EXPECT_EQ(states[1].first, "127.0.0.1:" + std::to_string(nodes_[1]->port()));
  EXPECT_FALSE(states[1].second);
  EXPECT_TRUE(states[0].second);
  EXPECT_TRUE(states[2].second);
}

TEST_F(MemcachedStoreTest, AStoppedNodeCostsAtMostTheIoTimeout) {
  startNodes(3);
  connectRing(1);
  const std::vector<std::string> ks = keys("stalled:", 50);
  setAll(ks);
  int on_stopped = 0;
  for (const std::string& k : ks) {
    for (const MemcachedCopy& c : backend_->placeCopies(k)) on_stopped += c.server == 0;
  }
  ASSERT_GT(on_stopped, 5);
  // The kernel still accepts connections for a stopped process: every call waits for replies.
  nodes_[0]->signal(SIGSTOP);
  std::vector<Clock::duration> took(ks.size());
  Clock::time_point began = Clock::now();
  std::vector<Result> results = awaitAll(ks, [&](size_t i, Callback cb) {
    store_->get(ks[i], 2000ms, [&, i, cb = std::move(cb)](Result r) {
      took[i] = Clock::now() - began;
      cb(std::move(r));
    });
  });
  int ok = 0;
  for (size_t i = 0; i < ks.size(); ++i) {
    Status s = results[i].status;
    EXPECT_TRUE(s == Status::kOk || s == Status::kNotFound || s == Status::kTimeout)
        << statusName(s);
    EXPECT_LT(took[i], 1s) << ks[i];
    ok += s == Status::kOk;
  }
  EXPECT_EQ(ok, 50);  // the replicas answer
  EXPECT_FALSE(backend_->nodeStates()[0].second);
}

TEST_F(MemcachedStoreTest, ADeadlineThatPassesFirstGivesTimeoutOnce) {
  startNodes(1);
  // io_timeout far past the deadline, so that a test thread descheduled for a while still sees
  // the deadline's answer before the I/O thread's.
  connectRing(0, /*io_threads=*/1, 2000ms, /*io_timeout=*/1000ms);
  ASSERT_EQ(set("k", "v").status, Status::kOk);
  nodes_[0]->signal(SIGSTOP);
  int calls = 0;
  Status first = Status::kOk;
  Clock::time_point began = Clock::now();
  store_->get("k", 50ms, [&](Result r) {
    if (calls++ == 0) first = r.status;
  });
  ASSERT_TRUE(runUntil(base_.get(), [&] { return calls > 0; }));
  // kTimeout is the deadline's answer; the I/O thread, which gives up on the node after
  // io_timeout, would have answered kError. The time bound only catches a hang: on a loaded
  // machine the worker's timer may fire late.
  EXPECT_EQ(first, Status::kTimeout);
  EXPECT_LT(Clock::now() - began, 2s);
  // The one I/O thread gives up on the node after io_timeout and hands in the first get's late
  // result, which must be dropped; the second get, queued behind it, then skips the node.
  Result second = get("k");
  EXPECT_EQ(second.status, Status::kError);
  EXPECT_EQ(calls, 1);
}

TEST_F(MemcachedStoreTest, NoMemcachedRunningFailsFastWithoutHanging) {
  // Ports held bound and never listened on, so that connects to them are refused.
  LoopbackSocket held[3];
  std::vector<uint16_t> dead;
  for (const LoopbackSocket& h : held) dead.push_back(h.port());
  // Two replicas: every operation asks all three nodes.
  MemcachedOptions o = optionsFor(dead, 2);
  backend_ = makeBackend(o);
  ASSERT_TRUE(backend_);
  store_ = backend_->connect(base_.get());
  Clock::time_point began = Clock::now();
  EXPECT_EQ(set("k", "v").status, Status::kError);
  Status g = get("k").status;
  EXPECT_TRUE(g == Status::kError || g == Status::kNotFound) << statusName(g);
  EXPECT_EQ(add("k", "v").status, Status::kError);
  EXPECT_EQ(remove("k").status, Status::kError);
  EXPECT_LT(Clock::now() - began, 1s);
  for (const auto& [name, up] : backend_->nodeStates()) EXPECT_FALSE(up) << name;
}

TEST_F(MemcachedStoreTest, ARestartedNodeComesBackAfterTheRetryTimeout) {
  startNodes(3);
  connectRing(1, /*io_threads=*/1, 1000ms);  // one handle: its ring is the one probed
  // Keys whose copy 0 is on node 2, so every set below asks that node first.
  std::vector<std::string> mine;
  for (int i = 0; mine.size() < 5; ++i) {
    std::string k = "probe:" + std::to_string(i);
    if (backend_->serverFor(k) == 2) mine.push_back(k);
  }
  uint16_t port = nodes_[2]->port();
  nodes_[2]->kill();
  EXPECT_EQ(set(mine[0], "v").status, Status::kOk);  // the replica takes it
  EXPECT_FALSE(backend_->nodeStates()[2].second);
  ASSERT_TRUE(nodes_[2]->start(port));
  // libmemcached 1.1.4 would answer SERVER_MARKED_DEAD for this node forever without a dead
  // timeout; with one it is asked again once retry_timeout has passed.
  bool up = false;
  for (Clock::time_point end = Clock::now() + 5s; !up && Clock::now() < end;) {
    for (const std::string& k : mine) EXPECT_EQ(set(k, "v").status, Status::kOk);
    up = backend_->nodeStates()[2].second;
    if (!up) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(up);
  EXPECT_EQ(set(mine[0], "again").status, Status::kOk);
  EXPECT_EQ(textGet(port, mine[0]), "VALUE " + mine[0] + " 0 5\r\nagain\r\nEND\r\n")
      << "copy 0 is written on its own node again";
}

// Placement only: nothing listens on these ports, and nothing is contacted.
MemcachedOptions fakeRing(const std::vector<uint16_t>& ports, int replicas = 1) {
  return optionsFor(ports, replicas);
}

TEST(MemcachedRingTest, SpreadsKeysEvenlyOverEqualNodes) {
  auto b = makeBackend(fakeRing({41001, 41002, 41003}));
  ASSERT_TRUE(b);
  std::array<int, 3> counts{};
  for (int i = 0; i < 30000; ++i) ++counts[b->serverFor("tls:" + std::to_string(i))];
  for (int c : counts) {
    EXPECT_GT(c, 9000);
    EXPECT_LT(c, 11000);
  }
}

TEST(MemcachedRingTest, WeightsSkewTheSpread) {
  MemcachedOptions o = fakeRing({41001, 41002, 41003});
  o.servers[2].weight = 2;
  auto b = makeBackend(o);
  ASSERT_TRUE(b);
  std::array<int, 3> counts{};
  for (int i = 0; i < 30000; ++i) ++counts[b->serverFor("tls:" + std::to_string(i))];
  EXPECT_GT(counts[2], 12500);  // about half
  EXPECT_LT(counts[2], 17500);
}

TEST(MemcachedRingTest, RemovingANodeMovesOnlyItsKeys) {
  auto three = makeBackend(fakeRing({41001, 41002, 41003}));
  auto two = makeBackend(fakeRing({41001, 41003}));
  ASSERT_TRUE(three && two);
  const size_t two_to_three[] = {0, 2};
  int moved = 0;
  int strays = 0;
  for (int i = 0; i < 30000; ++i) {
    std::string k = "tls:" + std::to_string(i);
    size_t before = three->serverFor(k);
    size_t after = two_to_three[two->serverFor(k)];
    if (before == 1) {
      ++moved;
    } else {
      strays += after != before;
    }
  }
  EXPECT_EQ(strays, 0);
  double fraction = moved / 30000.0;
  EXPECT_GT(fraction, 0.2);
  EXPECT_LT(fraction, 0.45);
}

TEST(MemcachedRingTest, CopiesLandOnDistinctNodes) {
  auto b = makeBackend(fakeRing({41001, 41002, 41003}, 2));
  ASSERT_TRUE(b);
  for (int i = 0; i < 1000; ++i) {
    std::string k = "bind:" + std::to_string(i);
    std::vector<MemcachedCopy> copies = b->placeCopies(k);
    ASSERT_EQ(copies.size(), 3u);
    EXPECT_EQ(copies[0].server, b->serverFor(k));
    std::set<size_t> servers;
    for (const MemcachedCopy& c : copies) servers.insert(c.server);
    EXPECT_EQ(servers.size(), 3u) << k;
    EXPECT_EQ(copies, b->placeCopies(k)) << "placement is deterministic";
  }
  auto more = makeBackend(fakeRing({41001, 41002}, 5));  // more replicas than nodes
  ASSERT_TRUE(more);
  EXPECT_EQ(more->placeCopies("k").size(), 2u);
  auto one = makeBackend(fakeRing({41001}, 1));
  ASSERT_TRUE(one);
  EXPECT_EQ(one->placeCopies("k").size(), 1u);
}

TEST(MemcachedRingTest, DescribesItselfAndRefusesBadOptions) {
  EXPECT_EQ(makeBackend(fakeRing({41001, 41002, 41003}, 1))->describe(),
            "memcached ring of 3 nodes, 1 replica");
  EXPECT_EQ(makeBackend(fakeRing({41001, 41002, 41003}, 2))->describe(),
            "memcached ring of 3 nodes, 2 replicas");
  EXPECT_EQ(makeBackend(fakeRing({41001}, 0))->describe(), "memcached ring of 1 node, no replicas");
  EXPECT_EQ(makeBackend(fakeRing({41001}))->nodeStates(),
            (std::vector<std::pair<std::string, bool>>{{"127.0.0.1:41001", true}}));

  std::vector<MemcachedOptions> bad(7, fakeRing({41001, 41002}));
  bad[0].servers.clear();
  bad[1].servers[0].port = 0;
  bad[2].servers[0].weight = 0;
  bad[3].servers[1] = bad[3].servers[0];
  bad[4].io_threads = 0;
  bad[5].replicas = -1;
  bad[6].io_timeout = 0ms;
  for (size_t i = 0; i < bad.size(); ++i) {
    std::string error;
    EXPECT_EQ(MemcachedBackend::create(bad[i], error), nullptr) << i;
    EXPECT_FALSE(error.empty()) << i;
  }
}

}  // namespace
}  // namespace tessera::cache
