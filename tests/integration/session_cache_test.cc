// The TLS session cache end to end: sessions stored through the cache::Store (the embedded memory
// store here; the memcached ring in cluster_test.cc), resumed by session id (TLS 1.2) and by
// stateful ticket (TLS 1.3), and bound to the device that made them.

#include <gtest/gtest.h>

#include <regex>

#include "tests/integration/harness.h"

namespace tessera::testing {
namespace {

class SessionCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = makeCertificate(dir_, "main", {"localhost"});
    port_ = freePort();
    admin_ = freePort();
  }

  void start(const std::string& session_cache, const std::string& binding = "[ip]",
             int workers = 2) {
    std::string yaml = "workers: " + std::to_string(workers) +
                       "\n"
                       "listeners:\n  - name: edge\n    listen: 127.0.0.1:" +
                       std::to_string(port_) +
                       "\n    tls: { certificates: [ { cert: " + cert_.cert +
                       ", key: " + cert_.key +
                       " } ] }\n"
                       "upstreams: { app: { servers: [" +
                       backend_.address() +
                       "] } }\n"
                       "session_cache: " +
                       session_cache +
                       "\n"
                       "device_binding: { tls: { attributes: " +
                       binding +
                       " } }\n"
                       "admin: { listen: 127.0.0.1:" +
                       std::to_string(admin_) +
                       " }\n"
                       "log: { level: info, access_log: off, audit_log: " +
                       dir_.file("audit.log") + log_extra_ + " }\n";
    tessera_ = std::make_unique<Tessera>(dir_, yaml, port_, admin_);
    ASSERT_TRUE(tessera_->started()) << tessera_->stderrText();
  }

  // Offers `session_pem` in `times` TLS 1.2 connections from `source_ip`; every one must succeed
  // (a refused session means a full handshake, never a failed one). Returns how many resumed.
  int resumptions(int times, const std::string& source_ip, const std::string& session_pem) {
    int resumed = 0;
    for (int i = 0; i < times; ++i) {
      TlsVisit visit = tlsVisit(port_, source_ip, session_pem, "1.2");
      EXPECT_TRUE(visit.ok) << i << ": " << visit.error;
      resumed += visit.reused;
    }
    return resumed;
  }

  double lookups(const std::string& result) const {
    return tessera_->metric("tessera_tls_session_lookups_total{result=\"" + result + "\"}");
  }

  std::string log_extra_;  // more keys for the log block, each after ", "
  TempDir dir_;
  TestBackend backend_;
  CertFiles cert_;
  int port_ = 0;
  int admin_ = 0;
  std::unique_ptr<Tessera> tessera_;
};

TEST_F(SessionCacheTest, Tls12ResumesThroughTheStore) {
  start("{ l1_entries: 0 }");  // no L1: every lookup goes to the store
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.2");
  ASSERT_TRUE(first.ok) << first.error;
  EXPECT_FALSE(first.reused);
  EXPECT_NE(first.response.find("200 OK"), std::string::npos);
  EXPECT_EQ(resumptions(5, "127.0.0.1", first.session_pem), 5);
  EXPECT_EQ(lookups("hit_store"), 5);
  EXPECT_EQ(lookups("hit_l1"), 0);
  EXPECT_EQ(tessera_->metric("tessera_tls_handshakes_total{kind=\"resumed\"}"), 5);
}

TEST_F(SessionCacheTest, Tls13ResumesByStatefulTicket) {
  start("{ l1_entries: 0 }");
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.3");
  ASSERT_TRUE(first.ok) << first.error;
  ASSERT_FALSE(first.session_pem.empty());
  TlsVisit again = tlsVisit(port_, "127.0.0.1", first.session_pem, "1.3");
  EXPECT_TRUE(again.reused);
  // The same ticket works again: tessera keeps it for its lifetime (no single-use deletion), so
  // a client may present it to any node of the cluster.
  TlsVisit third = tlsVisit(port_, "127.0.0.1", first.session_pem, "1.3");
  EXPECT_TRUE(third.reused);
  EXPECT_EQ(lookups("hit_store"), 2);
}

TEST_F(SessionCacheTest, ResumesAfterAHelloRetryRequest) {
  start("{ l1_entries: 0 }");
  // P-521 is not among the server's groups: the first ClientHello gets a HelloRetryRequest and
  // the second one must find the same session again.
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.3", "P-521:P-256");
  ASSERT_TRUE(first.ok) << first.error;
  TlsVisit again = tlsVisit(port_, "127.0.0.1", first.session_pem, "1.3", "P-521:P-256");
  EXPECT_TRUE(again.reused);
}

TEST_F(SessionCacheTest, AClientThatClosesWithoutCloseNotifyKeepsItsSession) {
  start("{ l1_entries: 0 }");
  std::string session;
  {
    TlsKeepAlive conn(port_);
    ASSERT_EQ(conn.get("/echo"), 200);  // the TLS 1.3 ticket comes before the response
    session = conn.sessionPem();
  }  // closed with a bare FIN
  ASSERT_FALSE(session.empty());
  {
    TlsKeepAlive conn(port_, session);
    ASSERT_EQ(conn.get("/echo"), 200);
    EXPECT_TRUE(conn.reused());
  }
  TlsKeepAlive later(port_, session);  // the ticket was not evicted by either unclean close
  EXPECT_TRUE(later.reused());
}

TEST_F(SessionCacheTest, L1ServesSessionsThisNodeMade) {
  start("{ l1_entries: 100 }");
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.2");
  EXPECT_EQ(resumptions(4, "127.0.0.1", first.session_pem), 4);
  // Connections land on either of the two workers; each worker's L1 learns the session once,
  // from its own handshake or from the store.
  EXPECT_GE(lookups("hit_l1"), 2);
  EXPECT_EQ(lookups("hit_l1") + lookups("hit_store"), 4);
}

// A session found expired in the L1 leaves it: presented again, it is looked up in the store (and
// missed there too) instead of being found, expired, in the L1 forever.
TEST_F(SessionCacheTest, ASessionFoundExpiredInTheL1LeavesIt) {
  start("{ lifetime: 1s, l1_entries: 100 }", "[ip]", /*workers=*/1);
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.2");
  ASSERT_TRUE(first.ok) << first.error;
  std::this_thread::sleep_for(2200ms);  // records carry whole-second expiry times
  EXPECT_EQ(resumptions(3, "127.0.0.1", first.session_pem), 0);
  EXPECT_EQ(lookups("miss"), 3);
  EXPECT_EQ(lookups("hit_l1"), 0);
  // The first late visit found it in the L1; the other two asked the store.
  EXPECT_EQ(tessera_->metric("tessera_store_latency_seconds_count"), 2);
}

TEST_F(SessionCacheTest, AnotherSourceAddressGetsAFullHandshakeAndAnAuditEvent) {
  start("{ l1_entries: 0 }");
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.3");
  ASSERT_TRUE(first.ok) << first.error;
  TlsVisit stolen = tlsVisit(port_, "127.0.0.2", first.session_pem, "1.3");
  ASSERT_TRUE(stolen.ok) << stolen.error;  // a full handshake, never a failed one
  EXPECT_FALSE(stolen.reused);
  EXPECT_NE(stolen.response.find("200 OK"), std::string::npos);
  EXPECT_EQ(tessera_->metric("tessera_tls_binding_mismatch_total"), 1);
  EXPECT_EQ(lookups("binding_mismatch"), 1);
  std::string audit = readFile(dir_.file("audit.log"));
  EXPECT_NE(audit.find("\"event\":\"tls_binding_mismatch\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"client\":\"127.0.0.2\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"listener\":\"edge\""), std::string::npos) << audit;
  // The owner still resumes.
  EXPECT_TRUE(tlsVisit(port_, "127.0.0.1", first.session_pem, "1.3").reused);
}

// A stolen session can be replayed as often as its thief likes. Past log.audit_rate_limit the
// mismatches are not written one by one but counted, in audit_suppressed lines (the last one when
// tessera stops); the metric counts every one.
TEST_F(SessionCacheTest, AFloodOfMismatchesIsCutToTheAuditRateLimit) {
  log_extra_ = ", audit_rate_limit: 1";
  start("{ l1_entries: 0 }");
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.2");
  ASSERT_TRUE(first.ok) << first.error;
  constexpr int kVisits = 20;
  EXPECT_EQ(resumptions(kVisits, "127.0.0.2", first.session_pem), 0);
  EXPECT_EQ(tessera_->metric("tessera_tls_binding_mismatch_total"), kVisits);
  tessera_.reset();  // stopping closes the audit log, which reports what it held back
  std::string audit = readFile(dir_.file("audit.log"));
  int written = 0, summaries = 0, suppressed = 0;
  std::regex total("\"total\":([0-9]+)");
  for (size_t at = 0, end; (end = audit.find('\n', at)) != std::string::npos; at = end + 1) {
    std::string line = audit.substr(at, end - at);
    std::smatch m;
    if (line.find("\"event\":\"tls_binding_mismatch\"") != std::string::npos) ++written;
    if (line.find("\"event\":\"audit_suppressed\"") != std::string::npos &&
        std::regex_search(line, m, total)) {
      ++summaries;
      suppressed += std::stoi(m[1].str());
    }
  }
  // One line a second at most: 20 handshakes take far less than the 19 s it would take to write
  // them all.
  EXPECT_LT(written, kVisits) << audit;
  EXPECT_GE(summaries, 1) << audit;
  EXPECT_EQ(written + suppressed, kVisits) << audit;
}

TEST_F(SessionCacheTest, PrefixBindingToleratesAMoveInsideTheNetwork) {
  start("{ l1_entries: 0 }", "[ip], ipv4_prefix: 24");
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.2");
  EXPECT_TRUE(tlsVisit(port_, "127.0.0.2", first.session_pem, "1.2").reused);
}

TEST_F(SessionCacheTest, BindingOffResumesFromAnywhere) {
  start("{ l1_entries: 0 }", "[]");
  TlsVisit first = tlsVisit(port_, "127.0.0.1", "", "1.2");
  EXPECT_TRUE(tlsVisit(port_, "127.0.0.2", first.session_pem, "1.2").reused);
}

TEST_F(SessionCacheTest, Ja4BindingRefusesADifferentTlsStack) {
  start("{ l1_entries: 0 }", "[ja4]");
  std::string sess = dir_.file("s.pem");
  std::string addr = "127.0.0.1:" + std::to_string(port_);
  run({"openssl", "s_client", "-connect", addr, "-tls1_2", "-sess_out", sess}, "", 10s);
  CommandResult same =
      run({"openssl", "s_client", "-connect", addr, "-tls1_2", "-sess_in", sess}, "", 10s);
  EXPECT_NE(same.output.find("Reused,"), std::string::npos) << same.output;
  // Another cipher list is another client fingerprint.
  CommandResult other =
      run({"openssl", "s_client", "-connect", addr, "-tls1_2", "-cipher",
           "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384", "-sess_in", sess},
          "", 10s);
  EXPECT_NE(other.output.find("New,"), std::string::npos) << other.output;
  EXPECT_EQ(tessera_->metric("tessera_tls_binding_mismatch_total"), 1);
}

TEST_F(SessionCacheTest, OpensslSessionReuseWithSessOutAndSessIn) {
  start("{}");
  std::string addr = "127.0.0.1:" + std::to_string(port_);
  for (std::string version : {"-tls1_2", "-tls1_3"}) {
    std::string sess = dir_.file("s" + version + ".pem");
    // -ign_eof and a request: s_client stays until tessera closes, so TLS 1.3 tickets arrive.
    std::string req = "GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n";
    CommandResult first =
        run({"openssl", "s_client", "-connect", addr, version, "-ign_eof", "-sess_out", sess}, req,
            10s);
    ASSERT_EQ(first.exit_code, 0) << first.output;
    CommandResult r = run(
        {"openssl", "s_client", "-connect", addr, version, "-ign_eof", "-sess_in", sess}, req, 10s);
    EXPECT_NE(r.output.find("Reused, TLSv1."), std::string::npos) << version << r.output;
  }
}

TEST_F(SessionCacheTest, OpensslStimeReuseResumes) {
  start("{}");
  CommandResult r = run({"openssl", "s_time", "-connect", "127.0.0.1:" + std::to_string(port_),
                         "-reuse", "-tls1_2", "-time", "1"},
                        "", 20s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(tessera_->metric("tessera_tls_handshakes_total{kind=\"resumed\"}"), 10) << r.output;
}

}  // namespace
}  // namespace tessera::testing
