#include "proxy/metrics.h"

#include <fmt/format.h>

namespace tessera::proxy {

namespace {

// One histogram observation: the first bucket whose bound is >= the value (last: +Inf).
template <size_t N>
void observe(const std::array<double, N>& bounds, Counter* buckets, Counter& sum_us, Counter& count,
             uint64_t us) {
  size_t i = 0;
  double seconds = static_cast<double>(us) / 1e6;
  while (i < N && seconds > bounds[i]) ++i;
  bump(buckets[i]);
  bump(sum_us, us);
  bump(count);
}

}  // namespace

void WorkerMetrics::countPluginEvent(std::string_view plugin, std::string_view event) {
  std::lock_guard<std::mutex> lock(plugin_mu);
  auto it = plugin_events.find(std::pair<std::string_view, std::string_view>(plugin, event));
  if (it == plugin_events.end()) {
    it = plugin_events.emplace(std::pair(std::string(plugin), std::string(event)), 0).first;
  }
  ++it->second;
}

void WorkerMetrics::observeRequest(int status, uint64_t duration_us) {
  int cls = (status >= 100 && status < 600) ? status / 100 : 0;
  bump(requests_by_class[cls]);
  observe(kDurationBuckets, duration_buckets, duration_sum_us, duration_count, duration_us);
}

void WorkerMetrics::observeStoreLatency(uint64_t us) {
  observe(kStoreLatencyBuckets, store_latency_buckets, store_latency_sum_us, store_latency_count,
          us);
}

namespace {

uint64_t sum(const std::vector<const WorkerMetrics*>& ws, const Counter WorkerMetrics::*field) {
  uint64_t total = 0;
  for (const WorkerMetrics* w : ws) total += (w->*field).load(std::memory_order_relaxed);
  return total;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void simple(std::string& out, const std::vector<const WorkerMetrics*>& ws, const char* name,
            const char* type, const char* help, const Counter WorkerMetrics::*field) {
  family(out, name, type, help);
  out += fmt::format("{} {}\n", name, sum(ws, field));
}

void requests(std::string& out, const std::vector<const WorkerMetrics*>& ws) {
  family(out, "tessera_requests_total", "counter", "Requests answered, by status class.");
  static const char* kClass[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (int c = 0; c < 6; ++c) {
    uint64_t n = 0;
    for (const WorkerMetrics* w : ws) n += w->requests_by_class[c].load(std::memory_order_relaxed);
    out += fmt::format("tessera_requests_total{{class=\"{}\"}} {}\n", kClass[c], n);
  }
}

void handshakes(std::string& out, const std::vector<const WorkerMetrics*>& ws) {
  family(out, "tessera_tls_handshakes_total", "counter", "Completed TLS handshakes, by kind.");
  out += fmt::format("tessera_tls_handshakes_total{{kind=\"full\"}} {}\n",
                     sum(ws, &WorkerMetrics::tls_handshakes_full));
  out += fmt::format("tessera_tls_handshakes_total{{kind=\"resumed\"}} {}\n",
                     sum(ws, &WorkerMetrics::tls_handshakes_resumed));
}

void histogram(std::string& out, const std::vector<const WorkerMetrics*>& ws) {
  family(out, "tessera_request_duration_seconds", "histogram",
         "Time from the first byte of a request head to the last byte of its response.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= kDurationBuckets.size(); ++i) {
    for (const WorkerMetrics* w : ws)
      cumulative += w->duration_buckets[i].load(std::memory_order_relaxed);
    std::string le = i < kDurationBuckets.size() ? fmt::format("{}", kDurationBuckets[i]) : "+Inf";
    out += fmt::format("tessera_request_duration_seconds_bucket{{le=\"{}\"}} {}\n", le, cumulative);
  }
  out += fmt::format("tessera_request_duration_seconds_sum {}\n",
                     static_cast<double>(sum(ws, &WorkerMetrics::duration_sum_us)) / 1e6);
  out += fmt::format("tessera_request_duration_seconds_count {}\n",
                     sum(ws, &WorkerMetrics::duration_count));
}

void sessionCache(std::string& out, const std::vector<const WorkerMetrics*>& ws) {
  family(out, "tessera_tls_session_lookups_total", "counter",
         "TLS session lookups by result (hit_l1, hit_store, miss, timeout, error, "
         "binding_mismatch).");
  static const char* kResult[] = {"hit_l1",  "hit_store", "miss",
                                  "timeout", "error",     "binding_mismatch"};
  for (int r = 0; r < kLookupResults; ++r) {
    uint64_t n = 0;
    for (const WorkerMetrics* w : ws) n += w->session_lookups[r].load(std::memory_order_relaxed);
    out += fmt::format("tessera_tls_session_lookups_total{{result=\"{}\"}} {}\n", kResult[r], n);
  }
  family(out, "tessera_store_latency_seconds", "histogram",
         "Time from a session-cache store request to its answer (or its deadline).");
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= kStoreLatencyBuckets.size(); ++i) {
    for (const WorkerMetrics* w : ws) {
      cumulative += w->store_latency_buckets[i].load(std::memory_order_relaxed);
    }
    std::string le =
        i < kStoreLatencyBuckets.size() ? fmt::format("{}", kStoreLatencyBuckets[i]) : "+Inf";
    out += fmt::format("tessera_store_latency_seconds_bucket{{le=\"{}\"}} {}\n", le, cumulative);
  }
  out += fmt::format("tessera_store_latency_seconds_sum {}\n",
                     static_cast<double>(sum(ws, &WorkerMetrics::store_latency_sum_us)) / 1e6);
  out += fmt::format("tessera_store_latency_seconds_count {}\n",
                     sum(ws, &WorkerMetrics::store_latency_count));
}

void pluginEvents(std::string& out, const std::vector<const WorkerMetrics*>& ws) {
  family(out, "tessera_plugin_events_total", "counter", "Plugin events, by plugin instance.");
  std::map<std::pair<std::string, std::string>, uint64_t> total;
  for (const WorkerMetrics* w : ws) {
    std::lock_guard<std::mutex> lock(const_cast<WorkerMetrics*>(w)->plugin_mu);
    for (const auto& [key, n] : w->plugin_events) total[key] += n;
  }
  for (const auto& [key, n] : total) {
    out += fmt::format("tessera_plugin_events_total{{plugin=\"{}\",event=\"{}\"}} {}\n", key.first,
                       key.second, n);
  }
}

void storeNodes(std::string& out, const std::vector<std::pair<std::string, bool>>& nodes) {
  family(out, "tessera_store_node_up", "gauge", "1 if a session-store node is up, else 0.");
  for (const auto& [name, up] : nodes) {
    out += fmt::format("tessera_store_node_up{{node=\"{}\"}} {}\n", name, up ? 1 : 0);
  }
}

}  // namespace

std::string renderPrometheus(const std::vector<const WorkerMetrics*>& ws,
                             const std::vector<std::pair<std::string, bool>>& store_nodes) {
  std::string out;
  using W = WorkerMetrics;
  simple(out, ws, "tessera_connections_open", "gauge", "Client connections open now.",
         &W::connections_open);
  simple(out, ws, "tessera_connections_total", "counter", "Client connections accepted.",
         &W::connections_total);
  handshakes(out, ws);
  simple(out, ws, "tessera_tls_handshake_errors_total", "counter", "Failed TLS handshakes.",
         &W::tls_handshake_errors);
  requests(out, ws);
  simple(out, ws, "tessera_downstream_keepalive_requests_total", "counter",
         "Requests that reused a client connection.", &W::downstream_keepalive_requests);
  simple(out, ws, "tessera_bad_requests_total", "counter",
         "Requests refused as malformed or over a limit (400, 413, 431).", &W::bad_requests);
  simple(out, ws, "tessera_upstream_connects_total", "counter",
         "New connections opened to upstream servers.", &W::upstream_connects);
  simple(out, ws, "tessera_upstream_reuses_total", "counter",
         "Requests sent on a kept-alive upstream connection.", &W::upstream_reuses);
  simple(out, ws, "tessera_upstream_connect_errors_total", "counter",
         "Upstream connections that failed or timed out while connecting.",
         &W::upstream_connect_errors);
  simple(out, ws, "tessera_upstream_timeouts_total", "counter",
         "Upstream responses that did not come within read_timeout.", &W::upstream_timeouts);
  histogram(out, ws);
  sessionCache(out, ws);
  simple(out, ws, "tessera_tls_binding_mismatch_total", "counter",
         "TLS resumptions refused because another device presented the session.",
         &W::tls_binding_mismatches);
  simple(out, ws, "tessera_seal_open_failures_total", "counter",
         "Store records that failed to unseal (tampered, or an unknown key): treated as misses.",
         &W::seal_open_failures);
  simple(out, ws, "tessera_tls_session_store_write_errors_total", "counter",
         "New TLS sessions the store did not accept (timeout or error).",
         &W::session_store_write_errors);
  storeNodes(out, store_nodes);
  pluginEvents(out, ws);
  return out;
}

}  // namespace tessera::proxy
