#pragma once

// Counters of one worker, rendered together by the admin listener in Prometheus text format.
//
// Threading: each WorkerMetrics is written by exactly one worker thread and read by the admin
// thread. Values are relaxed atomics, bumped with load+store (single writer), so the data path
// takes no lock and no locked instruction; a reader may see a count a moment late, never torn.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::proxy {

using Counter = std::atomic<uint64_t>;

inline void bump(Counter& c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void drop(Counter& c) {
  c.store(c.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

// Request duration buckets, in seconds (upper bounds), as Prometheus "le" labels.
inline constexpr std::array<double, 12> kDurationBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};

// Store latency buckets, in seconds.
inline constexpr std::array<double, 10> kStoreLatencyBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1};

// How a TLS session lookup ended.
enum class LookupResult { kHitL1, kHitStore, kMiss, kTimeout, kError, kBindingMismatch };
inline constexpr int kLookupResults = 6;

struct alignas(64) WorkerMetrics {
  Counter connections_open{0};
  Counter connections_total{0};
  Counter tls_handshakes_full{0};
  Counter tls_handshakes_resumed{0};
  Counter tls_handshake_errors{0};
  Counter requests_by_class[6] = {};         // index 1..5 = 1xx..5xx; 0 = no status (aborted)
  Counter downstream_keepalive_requests{0};  // requests that were not the first on a connection
  Counter bad_requests{0};                   // rejected before routing: 400/413/431
  Counter upstream_connects{0};
  Counter upstream_reuses{0};
  Counter upstream_connect_errors{0};
  Counter upstream_timeouts{0};
  Counter duration_buckets[kDurationBuckets.size() + 1] = {};  // last: +Inf
  Counter duration_sum_us{0};
  Counter duration_count{0};
  // TLS session cache.
  Counter session_lookups[kLookupResults] = {};
  Counter tls_binding_mismatches{0};
  Counter seal_open_failures{0};
  Counter session_store_write_errors{0};
  Counter store_latency_buckets[kStoreLatencyBuckets.size() + 1] = {};
  Counter store_latency_sum_us{0};
  Counter store_latency_count{0};

  // Plugin events (tessera_plugin_events_total{plugin, event}). A map, so under a mutex that only
  // this worker and the admin thread take.
  std::mutex plugin_mu;
  // Transparent, so that counting looks an event up by views without building its key.
  struct EventLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::pair<std::string_view, std::string_view>(a.first, a.second) <
             std::pair<std::string_view, std::string_view>(b.first, b.second);
    }
  };
  std::map<std::pair<std::string, std::string>, uint64_t, EventLess> plugin_events;
  void countPluginEvent(std::string_view plugin, std::string_view event);

  void observeRequest(int status, uint64_t duration_us);
  void observeStoreLatency(uint64_t us);
};

// Prometheus text exposition of the sum over all workers, plus the state of each store node.
std::string renderPrometheus(const std::vector<const WorkerMetrics*>& workers,
                             const std::vector<std::pair<std::string, bool>>& store_nodes = {});

}  // namespace tessera::proxy
