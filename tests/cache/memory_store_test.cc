// MemoryStoreBackend and its per-worker Store: results, deferred and cancelled callbacks, TTL on a
// fake clock, LRU eviction, add atomicity across worker threads, binary values.

#include "cache/memory_store.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tessera::cache {
namespace {

using std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

constexpr Millis kTimeout{5000};  // never reached: the loop is stepped without waiting
constexpr Seconds kTtl{60};

struct EventBaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;

EventBasePtr makeBase() {
  // Bases are driven from several threads in the contention test; libevent needs its locking
  // switched on before any base exists.
  static const bool threads_on = [] { return evthread_use_pthreads() == 0; }();
  EXPECT_TRUE(threads_on);
  return EventBasePtr(event_base_new());
}

// Steps the loop without blocking until `cond` holds; gives up rather than hang a broken test.
template <typename Cond>
bool stepUntil(event_base* base, Cond cond, int max_steps = 10000) {
  for (int i = 0; i < max_steps && !cond(); ++i) {
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
  }
  return cond();
}

// Lets every already-due event run, for tests that check something did NOT happen.
void stepIdle(event_base* base) {
  for (int i = 0; i < 10; ++i) event_base_loop(base, EVLOOP_NONBLOCK);
}

// Shared state, so a backend holding `fn()` never points into a destroyed fixture.
class FakeClock {
 public:
  MemoryStoreBackend::Clock fn() const {
    return [now = now_] { return *now; };
  }
  void advance(Millis d) { *now_ += d; }

 private:
  std::shared_ptr<TimePoint> now_ = std::make_shared<TimePoint>();
};

// One worker: a base and a Store from `backend`. Calls return the Result once delivered.
class MemoryStoreTest : public ::testing::Test {
 protected:
  void use(std::unique_ptr<MemoryStoreBackend> backend) {
    store_.reset();
    backend_ = std::move(backend);
    store_ = backend_->connect(base_.get());
  }

  Result wait(std::optional<Result>& slot) {
    EXPECT_TRUE(stepUntil(base_.get(), [&] { return slot.has_value(); }));
    return slot.value_or(Result{});
  }
  Callback into(std::optional<Result>& slot) {
    return [&slot](Result r) { slot = std::move(r); };
  }

  Result get(std::string_view key) {
    std::optional<Result> r;
    store_->get(key, kTimeout, into(r));
    return wait(r);
  }
  Status set(std::string_view key, std::string_view value, Seconds ttl = kTtl) {
    std::optional<Result> r;
    store_->set(key, value, ttl, kTimeout, into(r));
    return wait(r).status;
  }
  Status add(std::string_view key, std::string_view value, Seconds ttl = kTtl) {
    std::optional<Result> r;
    store_->add(key, value, ttl, kTimeout, into(r));
    return wait(r).status;
  }
  Result increment(std::string_view key, Seconds ttl = kTtl) {
    std::optional<Result> r;
    store_->increment(key, ttl, kTimeout, into(r));
    return wait(r);
  }
  Status remove(std::string_view key) {
    std::optional<Result> r;
    store_->remove(key, kTimeout, into(r));
    return wait(r).status;
  }

  // Declared before the store so that the store goes first, as the contract requires.
  EventBasePtr base_ = makeBase();
  std::unique_ptr<MemoryStoreBackend> backend_ = std::make_unique<MemoryStoreBackend>(1000);
  std::unique_ptr<Store> store_ = backend_->connect(base_.get());
};

TEST_F(MemoryStoreTest, SetGetRemove) {
  EXPECT_EQ(get("k").status, Status::kNotFound);
  EXPECT_EQ(set("k", "v1"), Status::kOk);
  Result r = get("k");
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.value, "v1");

  EXPECT_EQ(set("k", "v2"), Status::kOk);  // overwrites
  EXPECT_EQ(get("k").value, "v2");
  EXPECT_EQ(backend_->entryCount(), 1u);

  EXPECT_EQ(remove("k"), Status::kOk);
  EXPECT_EQ(get("k").status, Status::kNotFound);
  EXPECT_EQ(remove("k"), Status::kNotFound);
  EXPECT_EQ(backend_->entryCount(), 0u);
}

TEST_F(MemoryStoreTest, AddWritesOnlyIfAbsent) {
  EXPECT_EQ(add("k", "first"), Status::kOk);
  EXPECT_EQ(add("k", "second"), Status::kExists);
  EXPECT_EQ(get("k").value, "first");  // the refused add wrote nothing

  EXPECT_EQ(remove("k"), Status::kOk);
  EXPECT_EQ(add("k", "third"), Status::kOk);
  EXPECT_EQ(get("k").value, "third");
}

TEST_F(MemoryStoreTest, IncrementCountsFromOne) {
  EXPECT_EQ(increment("c").value, "1");
  EXPECT_EQ(increment("c").value, "2");
  EXPECT_EQ(get("c").value, "2");
  EXPECT_EQ(set("text", "abc"), Status::kOk);
  EXPECT_EQ(increment("text").status, Status::kError);  // no number: not counted
  EXPECT_EQ(get("text").value, "abc");
}

TEST_F(MemoryStoreTest, WorkersShareTheTable) {
  EventBasePtr other_base = makeBase();
  std::unique_ptr<Store> other = backend_->connect(other_base.get());
  std::optional<Result> r;
  other->set("shared", "x", kTtl, kTimeout, into(r));
  ASSERT_TRUE(stepUntil(other_base.get(), [&] { return r.has_value(); }));
  EXPECT_EQ(get("shared").value, "x");
  other.reset();
}

TEST_F(MemoryStoreTest, CallbackNeverRunsInsideTheCall) {
  bool ran = false;
  auto flag = [&ran](Result) { ran = true; };
  auto check = [&](auto start) {
    ran = false;
    start();
    EXPECT_FALSE(ran);  // even though the result was known at once
    EXPECT_TRUE(stepUntil(base_.get(), [&] { return ran; }));
  };
  check([&] { store_->set("k", "v", kTtl, kTimeout, flag); });
  check([&] { store_->get("k", kTimeout, flag); });
  check([&] { store_->add("k", "v", kTtl, kTimeout, flag); });
  check([&] { store_->remove("k", kTimeout, flag); });
  check([&] { store_->get("absent", kTimeout, flag); });
}

TEST_F(MemoryStoreTest, OpIdsAreDistinctAndNonZero) {
  OpId a = store_->get("k", kTimeout, [](Result) {});
  OpId b = store_->set("k", "v", kTtl, kTimeout, [](Result) {});
  EXPECT_NE(a, 0u);
  EXPECT_NE(b, 0u);
  EXPECT_NE(a, b);
  stepIdle(base_.get());
}

TEST_F(MemoryStoreTest, CancelledCallbackNeverRuns) {
  bool cancelled_ran = false;
  std::optional<Result> later;
  OpId id = store_->set("k", "v", kTtl, kTimeout, [&](Result) { cancelled_ran = true; });
  store_->get("k", kTimeout, into(later));
  store_->cancel(id);
  // Results are delivered in order, so once the later one is in, the cancelled one had its turn.
  EXPECT_EQ(wait(later).value, "v");  // the cancelled write still happened
  stepIdle(base_.get());
  EXPECT_FALSE(cancelled_ran);

  store_->cancel(id);         // finished: ignored
  store_->cancel(id + 1000);  // unknown: ignored
}

TEST_F(MemoryStoreTest, DestroyingTheStoreDropsPendingCallbacks) {
  int ran = 0;
  store_->set("k", "v", kTtl, kTimeout, [&](Result) { ++ran; });
  store_->get("k", kTimeout, [&](Result) { ++ran; });
  store_.reset();
  stepIdle(base_.get());
  EXPECT_EQ(ran, 0);

  store_ = backend_->connect(base_.get());
  EXPECT_EQ(get("k").value, "v");  // the operations themselves were done at the call
}

TEST_F(MemoryStoreTest, CallbackMayDestroyTheStore) {
  int ran = 0;
  store_->get("a", kTimeout, [&](Result) {
    ++ran;
    store_.reset();
  });
  store_->get("b", kTimeout, [&](Result) { ++ran; });  // same batch: must be dropped
  EXPECT_TRUE(stepUntil(base_.get(), [&] { return ran > 0; }));
  stepIdle(base_.get());
  EXPECT_EQ(ran, 1);
}

TEST_F(MemoryStoreTest, StoreMayOutliveItsBackend) {
  use(std::make_unique<MemoryStoreBackend>(10));
  backend_.reset();
  EXPECT_EQ(set("k", "v"), Status::kOk);
  EXPECT_EQ(get("k").value, "v");
}

TEST_F(MemoryStoreTest, ValuesRoundTripByteExact) {
  std::string value;
  for (int i = 0; i < 256; ++i) value.push_back(static_cast<char>(i));
  value += std::string("\0\0tail\0", 7);
  const std::string key("k\0ey", 4);
  const std::string prefix("k", 1);  // what a C string would have cut `key` to

  EXPECT_EQ(set(key, value), Status::kOk);
  Result r = get(key);
  ASSERT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.value.size(), value.size());
  EXPECT_EQ(r.value, value);
  EXPECT_EQ(get(prefix).status, Status::kNotFound);

  EXPECT_EQ(set("empty", ""), Status::kOk);
  r = get("empty");
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.value, "");
}

TEST_F(MemoryStoreTest, KeysAndValuesAreCopiedAtTheCall) {
  std::string key = "key", value = "value";
  std::optional<Result> r;
  store_->set(key, value, kTtl, kTimeout, into(r));
  key.assign("xxx");
  value.assign("xxxxx");
  wait(r);
  EXPECT_EQ(get("key").value, "value");
}

TEST(MemoryStoreBackendTest, Describe) {
  EXPECT_EQ(MemoryStoreBackend(100000).describe(), "memory (100000 entries)");
  EXPECT_EQ(MemoryStoreBackend(3).describe(), "memory (3 entries)");
}

class MemoryStoreTtlTest : public MemoryStoreTest {
 protected:
  void SetUp() override { use(std::make_unique<MemoryStoreBackend>(100, clock_.fn())); }

  FakeClock clock_;
};

TEST_F(MemoryStoreTtlTest, ExpiresAfterTtl) {
  EXPECT_EQ(set("k", "v", Seconds(1)), Status::kOk);
  clock_.advance(milliseconds(999));
  EXPECT_EQ(get("k").status, Status::kOk);
  clock_.advance(milliseconds(2));
  EXPECT_EQ(backend_->entryCount(), 1u);
  EXPECT_EQ(get("k").status, Status::kNotFound);
  EXPECT_EQ(backend_->entryCount(), 0u);  // removed when met
}

TEST_F(MemoryStoreTtlTest, LifetimeIsExactlyTheTtl) {
  EXPECT_EQ(set("k", "v", Seconds(5)), Status::kOk);
  clock_.advance(milliseconds(4999));
  EXPECT_EQ(get("k").status, Status::kOk);  // a get does not extend the TTL...
  clock_.advance(milliseconds(1));
  EXPECT_EQ(get("k").status, Status::kNotFound);  // ...and at ttl it is gone
}

TEST_F(MemoryStoreTtlTest, ZeroTtlMeansOneSecond) {
  EXPECT_EQ(set("k", "v", Seconds(0)), Status::kOk);
  EXPECT_EQ(add("a", "v", Seconds(-5)), Status::kOk);
  clock_.advance(milliseconds(999));
  EXPECT_EQ(get("k").status, Status::kOk);
  EXPECT_EQ(get("a").status, Status::kOk);
  clock_.advance(milliseconds(1));
  EXPECT_EQ(get("k").status, Status::kNotFound);
  EXPECT_EQ(get("a").status, Status::kNotFound);
}

TEST_F(MemoryStoreTtlTest, SetRefreshesTtl) {
  EXPECT_EQ(set("k", "v1", Seconds(1)), Status::kOk);
  clock_.advance(milliseconds(900));
  EXPECT_EQ(set("k", "v2", Seconds(1)), Status::kOk);
  clock_.advance(milliseconds(900));
  Result r = get("k");
  EXPECT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.value, "v2");
}

TEST_F(MemoryStoreTtlTest, ACounterKeepsTheExpiryOfItsFirstIncrement) {
  EXPECT_EQ(increment("c", Seconds(2)).value, "1");
  clock_.advance(milliseconds(1500));
  EXPECT_EQ(increment("c", Seconds(2)).value, "2");  // the window does not slide
  clock_.advance(milliseconds(500));
  EXPECT_EQ(increment("c", Seconds(2)).value, "1");  // a new window
}

TEST_F(MemoryStoreTtlTest, ExpiredKeyIsAbsentForAddAndRemove) {
  EXPECT_EQ(add("k", "old", Seconds(1)), Status::kOk);
  clock_.advance(Seconds(2));
  EXPECT_EQ(add("k", "new", Seconds(1)), Status::kOk);
  EXPECT_EQ(get("k").value, "new");
  clock_.advance(Seconds(2));
  EXPECT_EQ(remove("k"), Status::kNotFound);
  EXPECT_EQ(backend_->entryCount(), 0u);
}

// One shard, so every key competes for the same three places and the order of use alone decides.
class MemoryStoreLruTest : public MemoryStoreTest {
 protected:
  void SetUp() override {
    use(std::make_unique<MemoryStoreBackend>(3, std::chrono::steady_clock::now, 1));
    ASSERT_EQ(set("a", "1"), Status::kOk);
    ASSERT_EQ(set("b", "2"), Status::kOk);
    ASSERT_EQ(set("c", "3"), Status::kOk);  // least to most recent: a b c
  }
  // Checks misses first: a hit would itself change the order.
  void expectOnly(std::vector<std::string> present, std::string absent) {
    EXPECT_EQ(get(absent).status, Status::kNotFound) << absent;
    for (const std::string& k : present) EXPECT_EQ(get(k).status, Status::kOk) << k;
    EXPECT_EQ(backend_->entryCount(), 3u);
  }
};

TEST_F(MemoryStoreLruTest, EvictsLeastRecentlySet) {
  EXPECT_EQ(set("d", "4"), Status::kOk);
  expectOnly({"b", "c", "d"}, "a");
}

TEST_F(MemoryStoreLruTest, GetTouches) {
  EXPECT_EQ(get("a").status, Status::kOk);  // order now: b c a
  EXPECT_EQ(set("d", "4"), Status::kOk);
  expectOnly({"a", "c", "d"}, "b");
}

TEST_F(MemoryStoreLruTest, SetTouches) {
  EXPECT_EQ(set("a", "1'"), Status::kOk);
  EXPECT_EQ(get("b").status, Status::kOk);  // order now: c a b
  EXPECT_EQ(set("d", "4"), Status::kOk);
  expectOnly({"a", "b", "d"}, "c");
}

TEST_F(MemoryStoreLruTest, MissAndRefusedAddDoNotTouch) {
  EXPECT_EQ(get("zz").status, Status::kNotFound);
  EXPECT_EQ(add("a", "x"), Status::kExists);  // a refused add is a check, not a use
  EXPECT_EQ(set("d", "4"), Status::kOk);
  expectOnly({"b", "c", "d"}, "a");
}

TEST_F(MemoryStoreLruTest, RemoveFreesAPlace) {
  EXPECT_EQ(remove("b"), Status::kOk);
  EXPECT_EQ(set("d", "4"), Status::kOk);
  EXPECT_EQ(get("a").status, Status::kOk);
  EXPECT_EQ(get("c").status, Status::kOk);
  EXPECT_EQ(get("d").status, Status::kOk);
}

TEST(MemoryStoreShardingTest, EveryShardHoldsAtLeastOneEntry) {
  EventBasePtr base = makeBase();
  MemoryStoreBackend backend(1);  // fewer entries than shards
  std::unique_ptr<Store> store = backend.connect(base.get());
  int done = 0;
  for (int i = 0; i < 200; ++i) {
    std::string key = "k";  // appended, not "k" + ...: GCC 12 warns falsely (-Wrestrict) on that
    key += std::to_string(i);
    store->set(key, "v", kTtl, kTimeout, [&](Result) { ++done; });
  }
  ASSERT_TRUE(stepUntil(base.get(), [&] { return done == 200; }));
  EXPECT_GE(backend.entryCount(), 2u);  // 200 keys surely reach two of the 16 shards
  EXPECT_LE(backend.entryCount(), MemoryStoreBackend::kDefaultShards);
}

// Eight workers, each with its own loop and Store, race to add the same keys: for each key exactly
// one add wins, and the value stored is the winner's.
TEST(MemoryStoreContentionTest, AddIsAtomicAcrossWorkers) {
  constexpr int kThreads = 8;
  constexpr int kKeys = 1000;
  MemoryStoreBackend backend(1 << 16);
  std::array<std::atomic<int>, kKeys> wins{};
  std::array<std::atomic<int>, kKeys> winner{};
  std::atomic<int> exists{0}, other{0}, unfinished{0};
  std::latch start(kThreads);

  auto worker = [&](int t) {
    EventBasePtr base = makeBase();
    std::unique_ptr<Store> store = backend.connect(base.get());
    int done = 0;
    start.arrive_and_wait();
    for (int k = 0; k < kKeys; ++k) {
      store->add("key" + std::to_string(k), std::to_string(t), kTtl, kTimeout, [&, k, t](Result r) {
        ++done;
        if (r.status == Status::kOk) {
          ++wins[k];
          winner[k] = t;
        } else if (r.status == Status::kExists) {
          ++exists;
        } else {
          ++other;
        }
      });
    }
    if (!stepUntil(
            base.get(), [&] { return done == kKeys; }, 1000000))
      ++unfinished;
    store.reset();
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (std::thread& th : threads) th.join();

  EXPECT_EQ(unfinished, 0);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(exists, (kThreads - 1) * kKeys);
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(wins[k], 1) << "key" << k;

  EventBasePtr base = makeBase();
  std::unique_ptr<Store> store = backend.connect(base.get());
  int checked = 0;
  for (int k = 0; k < kKeys; ++k) {
    store->get("key" + std::to_string(k), kTimeout, [&, k](Result r) {
      ++checked;
      EXPECT_EQ(r.value, std::to_string(winner[k].load())) << "key" << k;
    });
  }
  EXPECT_TRUE(stepUntil(base.get(), [&] { return checked == kKeys; }));
}

}  // namespace
}  // namespace tessera::cache
