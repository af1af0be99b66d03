// WorkerMetrics::observeRequest and renderPrometheus.

#include "proxy/metrics.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace tessera::proxy {
namespace {

uint64_t get(const Counter& c) { return c.load(std::memory_order_relaxed); }

// Index of the only non-zero duration bucket after one observation of `duration_us`.
int bucketOf(uint64_t duration_us) {
  auto m = std::make_unique<WorkerMetrics>();
  m->observeRequest(200, duration_us);
  int found = -1;
  for (size_t i = 0; i <= kDurationBuckets.size(); ++i) {
    if (get(m->duration_buckets[i]) == 0) continue;
    EXPECT_EQ(found, -1) << "two buckets bumped for " << duration_us;
    EXPECT_EQ(get(m->duration_buckets[i]), 1u);
    found = static_cast<int>(i);
  }
  return found;
}

TEST(WorkerMetricsTest, StatusClasses) {
  auto m = std::make_unique<WorkerMetrics>();
  for (int status : {100, 101, 200, 204, 299, 301, 304, 400, 404, 499, 500, 503, 599}) {
    m->observeRequest(status, 1);
  }
  for (int status : {0, 99, 600, 999, -1}) m->observeRequest(status, 1);
  EXPECT_EQ(get(m->requests_by_class[0]), 5u);
  EXPECT_EQ(get(m->requests_by_class[1]), 2u);
  EXPECT_EQ(get(m->requests_by_class[2]), 3u);
  EXPECT_EQ(get(m->requests_by_class[3]), 2u);
  EXPECT_EQ(get(m->requests_by_class[4]), 3u);
  EXPECT_EQ(get(m->requests_by_class[5]), 3u);
  EXPECT_EQ(get(m->duration_count), 18u);
  EXPECT_EQ(get(m->duration_sum_us), 18u);
}

TEST(WorkerMetricsTest, DurationBucketUpperBoundsAreInclusive) {
  EXPECT_EQ(bucketOf(0), 0);
  EXPECT_EQ(bucketOf(500), 0);  // exactly 0.0005 s
  EXPECT_EQ(bucketOf(501), 1);
  EXPECT_EQ(bucketOf(1000), 1);
  EXPECT_EQ(bucketOf(2500), 2);
  EXPECT_EQ(bucketOf(3000), 3);
  EXPECT_EQ(bucketOf(100000), 7);  // 0.1 s
  EXPECT_EQ(bucketOf(1000000), 10);
  EXPECT_EQ(bucketOf(5000000), 11);
  EXPECT_EQ(bucketOf(5000001), 12);  // +Inf
  EXPECT_EQ(bucketOf(3600000000ull), 12);
}

TEST(WorkerMetricsTest, SumAndCount) {
  auto m = std::make_unique<WorkerMetrics>();
  m->observeRequest(200, 1500);
  m->observeRequest(500, 2500000);
  EXPECT_EQ(get(m->duration_sum_us), 2501500u);
  EXPECT_EQ(get(m->duration_count), 2u);
}

class RenderPrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = std::make_unique<WorkerMetrics>();
    b_ = std::make_unique<WorkerMetrics>();
    // Worker a: two 2xx and a 4xx.
    a_->observeRequest(200, 400);      // bucket le=0.0005
    a_->observeRequest(204, 3000);     // le=0.005
    a_->observeRequest(404, 2000000);  // le=5
    // Worker b: one 2xx, a 5xx, one aborted.
    b_->observeRequest(201, 700);       // le=0.001
    b_->observeRequest(502, 10000000);  // +Inf
    b_->observeRequest(0, 100);         // le=0.0005
    bump(a_->connections_open, 2);
    bump(b_->connections_open, 3);
    bump(a_->connections_total, 10);
    bump(b_->connections_total, 7);
    bump(a_->tls_handshakes_full, 4);
    bump(b_->tls_handshakes_resumed, 6);
    bump(b_->bad_requests);
    bump(a_->upstream_connects, 2);
    bump(b_->upstream_connects, 3);
    text_ = renderPrometheus({a_.get(), b_.get()});
  }

  void expectContains(const std::string& block) const {
    EXPECT_NE(text_.find(block), std::string::npos) << "missing:\n" << block << "in:\n" << text_;
  }

  std::unique_ptr<WorkerMetrics> a_;
  std::unique_ptr<WorkerMetrics> b_;
  std::string text_;
};

TEST_F(RenderPrometheusTest, RequestsByClassAreSummed) {
  expectContains(
      "# HELP tessera_requests_total Requests answered, by status class.\n"
      "# TYPE tessera_requests_total counter\n"
      "tessera_requests_total{class=\"none\"} 1\n"
      "tessera_requests_total{class=\"1xx\"} 0\n"
      "tessera_requests_total{class=\"2xx\"} 3\n"
      "tessera_requests_total{class=\"3xx\"} 0\n"
      "tessera_requests_total{class=\"4xx\"} 1\n"
      "tessera_requests_total{class=\"5xx\"} 1\n");
}

TEST_F(RenderPrometheusTest, HistogramIsCumulativeAndInfIsCount) {
  expectContains(
      "# TYPE tessera_request_duration_seconds histogram\n"
      "tessera_request_duration_seconds_bucket{le=\"0.0005\"} 2\n"
      "tessera_request_duration_seconds_bucket{le=\"0.001\"} 3\n"
      "tessera_request_duration_seconds_bucket{le=\"0.0025\"} 3\n"
      "tessera_request_duration_seconds_bucket{le=\"0.005\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"0.01\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"0.025\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"0.05\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"0.1\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"0.25\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"0.5\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"1\"} 4\n"
      "tessera_request_duration_seconds_bucket{le=\"5\"} 5\n"
      "tessera_request_duration_seconds_bucket{le=\"+Inf\"} 6\n"
      "tessera_request_duration_seconds_sum 12.0042\n"
      "tessera_request_duration_seconds_count 6\n");
}

TEST_F(RenderPrometheusTest, SimpleCountersAndGauges) {
  expectContains(
      "# HELP tessera_connections_open Client connections open now.\n"
      "# TYPE tessera_connections_open gauge\n"
      "tessera_connections_open 5\n");
  expectContains(
      "# TYPE tessera_connections_total counter\n"
      "tessera_connections_total 17\n");
  expectContains(
      "tessera_tls_handshakes_total{kind=\"full\"} 4\n"
      "tessera_tls_handshakes_total{kind=\"resumed\"} 6\n");
  expectContains("\ntessera_tls_handshake_errors_total 0\n");
  expectContains("\ntessera_bad_requests_total 1\n");
  expectContains("\ntessera_upstream_connects_total 5\n");
  expectContains("\ntessera_upstream_reuses_total 0\n");
  expectContains("\ntessera_downstream_keepalive_requests_total 0\n");
}

TEST_F(RenderPrometheusTest, EveryFamilyHasHelpAndTypeOnce) {
  for (const char* name : {"tessera_connections_open", "tessera_connections_total",
                           "tessera_tls_handshakes_total", "tessera_tls_handshake_errors_total",
                           "tessera_requests_total", "tessera_downstream_keepalive_requests_total",
                           "tessera_bad_requests_total", "tessera_upstream_connects_total",
                           "tessera_upstream_reuses_total", "tessera_upstream_connect_errors_total",
                           "tessera_upstream_timeouts_total", "tessera_request_duration_seconds"}) {
    std::string type = std::string("# TYPE ") + name + " ";
    size_t at = text_.find(type);
    ASSERT_NE(at, std::string::npos) << name;
    EXPECT_EQ(text_.find(type, at + 1), std::string::npos) << name;
    EXPECT_NE(text_.find(std::string("# HELP ") + name + " "), std::string::npos) << name;
  }
  EXPECT_EQ(text_.back(), '\n');
}

TEST(RenderPrometheusEmptyTest, NoWorkersRendersZeros) {
  std::string text = renderPrometheus({});
  EXPECT_NE(text.find("tessera_requests_total{class=\"2xx\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("tessera_request_duration_seconds_bucket{le=\"+Inf\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("tessera_request_duration_seconds_sum 0\n"), std::string::npos);
  EXPECT_NE(text.find("tessera_request_duration_seconds_count 0\n"), std::string::npos);
  EXPECT_NE(text.find("tessera_connections_open 0\n"), std::string::npos);
}

TEST(RenderPrometheusEmptyTest, GaugeGoesBackDown) {
  auto m = std::make_unique<WorkerMetrics>();
  bump(m->connections_open);
  bump(m->connections_open);
  drop(m->connections_open);
  std::string text = renderPrometheus({m.get()});
  EXPECT_NE(text.find("\ntessera_connections_open 1\n"), std::string::npos);
}

}  // namespace
}  // namespace tessera::proxy
