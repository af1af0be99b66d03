// The proxy end to end: the real tessera binary between real clients (curl, openssl s_client, raw
// sockets) and a real backend.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/integration/harness.h"

namespace tessera::testing {
namespace {

struct Options {
  int port = 0;
  int admin_port = 0;
  bool tls = true;
  std::vector<CertFiles> certs;
  std::vector<std::string> servers;
  std::string limits = "{ header_timeout: 2s, drain_timeout: 5s }";
  std::string upstream_extra = "read_timeout: 5s";
  int workers = 1;
  std::string routes;  // YAML list; default: everything to "app"
  std::string extra_upstreams;
  std::string tls_extra;  // more keys of the tls block, e.g. "session_resumption: false"
};

std::string makeConfig(const Options& o) {
  std::string y = "workers: " + std::to_string(o.workers) + "\nlisteners:\n  - name: main\n";
  y += "    listen: 127.0.0.1:" + std::to_string(o.port) + "\n";
  if (o.tls) {
    y += "    tls:\n      certificates:\n";
    for (const CertFiles& c : o.certs) {
      y += "        - { cert: " + c.cert + ", key: " + c.key + " }\n";
    }
    if (!o.tls_extra.empty()) y += "      " + o.tls_extra + "\n";
  }
  y += "    routes: " + (o.routes.empty() ? std::string("[ { upstream: app } ]") : o.routes) + "\n";
  y += "upstreams:\n  app:\n    servers: [";
  for (size_t i = 0; i < o.servers.size(); ++i) y += (i ? ", " : "") + o.servers[i];
  y += "]\n    " + o.upstream_extra + "\n" + o.extra_upstreams;
  y += "limits: " + o.limits + "\n";
  y += "admin: { listen: 127.0.0.1:" + std::to_string(o.admin_port) + " }\n";
  y += "log: { level: info, access_log: stdout }\n";
  return y;
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = makeCertificate(dir_, "main", {"localhost"});
    opts_.port = freePort();
    opts_.admin_port = freePort();
    opts_.certs = {cert_};
    opts_.servers = {backend_.address()};
  }

  Tessera& start() {
    tessera_ = std::make_unique<Tessera>(dir_, makeConfig(opts_), opts_.port, opts_.admin_port);
    EXPECT_TRUE(tessera_->started()) << tessera_->stderrText();
    return *tessera_;
  }

  std::string url(const std::string& path) const {
    return std::string(opts_.tls ? "https" : "http") +
           "://127.0.0.1:" + std::to_string(opts_.port) + path;
  }

  CommandResult curl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"curl", "-sS", "-k", "--max-time", "20"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }

  TempDir dir_;
  TestBackend backend_;
  CertFiles cert_;
  Options opts_;
  std::unique_ptr<Tessera> tessera_;
};

TEST_F(ProxyTest, GetThroughTlsReplacesForwardedHeaders) {
  start();
  CommandResult r = curl({"-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-Host: evil", "-w",
                          "\nstatus=%{http_code}", url("/echo?a=1")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("GET /echo?a=1 HTTP/1.1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("X-Forwarded-For: 127.0.0.1\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("X-Forwarded-Proto: https\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("X-Forwarded-Host: 127.0.0.1:" + std::to_string(opts_.port)),
            std::string::npos);
  EXPECT_EQ(r.output.find("6.6.6.6"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("evil"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("status=200"), std::string::npos);
  // One JSON access-log line with the fields users grep for.
  ASSERT_TRUE(
      eventually([&] { return tessera_->stdoutText().find("/echo?a=1") != std::string::npos; }));
  std::string log = tessera_->stdoutText();
  for (const char* field :
       {"\"time\":", "\"client\":\"127.0.0.1\"", "\"method\":\"GET\"", "\"status\":200",
        "\"bytes_in\":", "\"bytes_out\":", "\"duration_us\":", "\"upstream\":\"127.0.0.1:",
        "\"tls_version\":\"TLSv1.3\"", "\"tls_resumed\":false"}) {
    EXPECT_NE(log.find(field), std::string::npos) << field << " missing in " << log;
  }
}

TEST_F(ProxyTest, FiveMebibyteChunkedUploadAndDownloadAreByteExact) {
  start();
  const uint64_t kSize = 5 * 1024 * 1024;
  std::string data;
  data.reserve(kSize);
  for (uint64_t i = 0; i < kSize; ++i) data.push_back(static_cast<char>(patternByte(i)));
  std::string file = dir_.write("upload.bin", data);

  CommandResult up =
      curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + file, url("/upload")});
  ASSERT_EQ(up.exit_code, 0) << up.output;
  EXPECT_EQ(up.output, "len=" + std::to_string(kSize) + " sha256=" + sha256Hex(data));

  std::string out = dir_.file("download.bin");
  CommandResult down =
      curl({"-o", out, "-w", "%{http_code}", url("/download?bytes=" + std::to_string(kSize))});
  ASSERT_EQ(down.exit_code, 0) << down.output;
  EXPECT_EQ(down.output, "200");
  std::string got = readFile(out);
  EXPECT_EQ(got.size(), kSize);
  EXPECT_EQ(sha256Hex(got), sha256Hex(data));
}

TEST_F(ProxyTest, AdminAnswersHealthAndPrometheusMetrics) {
  start();
  EXPECT_EQ(statusCodes(httpGet(opts_.admin_port, "/healthz")), std::vector<int>{200});
  EXPECT_EQ(statusCodes(httpGet(opts_.admin_port, "/nope")), std::vector<int>{404});
  curl({"-o", "/dev/null", url("/echo")});
  std::string metrics = httpGet(opts_.admin_port, "/metrics");
  for (const char* family :
       {"# TYPE tessera_connections_open gauge", "# TYPE tessera_connections_total counter",
        "# TYPE tessera_tls_handshakes_total counter",
        "# TYPE tessera_upstream_connect_errors_total counter",
        "# TYPE tessera_upstream_timeouts_total counter",
        "# TYPE tessera_request_duration_seconds histogram",
        "tessera_request_duration_seconds_bucket{le=\"+Inf\"} 1",
        "tessera_request_duration_seconds_count 1", "tessera_requests_total{class=\"2xx\"} 1"}) {
    EXPECT_NE(metrics.find(family), std::string::npos) << family << " missing in\n" << metrics;
  }
}

TEST_F(ProxyTest, TheAdminListenerRefusesAnOversizedBodyBeforeReadingIt) {
  start();
  RawClient c(opts_.admin_port);
  c.send(
      "POST /blocklist HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
      "Content-Length: 10000000000\r\n\r\n{");
  EXPECT_EQ(statusCodes(c.readResponses(1, 3s)), std::vector<int>{413});
  // And the admin still answers (metric() is -1 when it does not).
  EXPECT_GE(tessera_->metric("tessera_connections_total"), 0);
}

TEST_F(ProxyTest, VersionPrintsTheVersion) {
  CommandResult r = run({TESSERA_BINARY, "version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind("tessera ", 0), 0u) << r.output;
}

TEST_F(ProxyTest, KeepAliveReusesConnectionsOnBothSides) {
  start();
  // start() probed the port; the worker may accept that probe only after start() returned.
  ASSERT_TRUE(eventually([&] { return tessera_->metric("tessera_connections_total") >= 1; }, 5s));
  double before = tessera_->metric("tessera_connections_total");
  std::vector<std::string> args = {"-w", "%{http_code}%{num_connects} "};
  for (int i = 0; i < 5; ++i) {
    args.push_back("-o");
    args.push_back("/dev/null");
    args.push_back(url("/echo"));
  }
  CommandResult r = curl(args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "2001 2000 2000 2000 2000 ");  // one client connection for five requests
  EXPECT_EQ(backend_.connections(), 1);              // and one upstream connection
  EXPECT_EQ(tessera_->metric("tessera_connections_total") - before, 1);
  EXPECT_EQ(tessera_->metric("tessera_downstream_keepalive_requests_total"), 4);
  EXPECT_EQ(tessera_->metric("tessera_upstream_connects_total"), 1);
  EXPECT_EQ(tessera_->metric("tessera_upstream_reuses_total"), 4);
  EXPECT_EQ(tessera_->metric("tessera_requests_total{class=\"2xx\"}"), 5);
  EXPECT_EQ(tessera_->metric("tessera_tls_handshakes_total{kind=\"full\"}"), 1);
}

// The certificate subject CN that tessera presents for SNI `name`, as openssl s_client shows it.
std::string presentedCn(int port, const std::string& name) {
  CommandResult r = run(
      {"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-servername", name},
      "", 10s);
  std::smatch m;
  std::regex re("subject=CN ?= ?([^\\n]+)");
  return std::regex_search(r.output, m, re) ? m[1].str() : "none: " + r.output;
}

TEST_F(ProxyTest, SniPicksTheCertificateNamingTheHost) {
  CertFiles shop = makeCertificate(dir_, "shop", {"shop.test", "*.shop.test"});
  CertFiles rsa = makeCertificate(dir_, "legacy", {"legacy.test"}, /*rsa=*/true);
  opts_.certs = {cert_, shop, rsa};
  start();
  EXPECT_EQ(presentedCn(opts_.port, "shop.test"), "shop.test");
  EXPECT_EQ(presentedCn(opts_.port, "www.shop.test"), "shop.test");
  EXPECT_EQ(presentedCn(opts_.port, "localhost"), "localhost");
  EXPECT_EQ(presentedCn(opts_.port, "legacy.test"), "legacy.test");  // an RSA certificate
  EXPECT_EQ(presentedCn(opts_.port, "other.test"), "localhost");     // unknown: the first one
  std::string port = std::to_string(opts_.port);
  CommandResult r = curl({"--resolve", "legacy.test:" + port + ":127.0.0.1", "-w", "|%{http_code}",
                          "https://legacy.test:" + port + "/echo"});
  EXPECT_NE(r.output.find("|200"), std::string::npos) << r.output;
}

TEST_F(ProxyTest, SighupLoadsNewCertificates) {
  start();
  EXPECT_EQ(presentedCn(opts_.port, "localhost"), "localhost");
  opts_.certs = {makeCertificate(dir_, "renewed", {"renewed.test"})};
  dir_.write("tessera.yaml", makeConfig(opts_));
  tessera_->process().signal(SIGHUP);
  ASSERT_TRUE(
      eventually([&] { return tessera_->stderrText().find("reloaded") != std::string::npos; }));
  EXPECT_EQ(presentedCn(opts_.port, "localhost"), "renewed.test");
}

// s_client -sess_out, then -sess_in: what the second handshake says ("Reused" or "New"), or
// that the server handed out nothing resumable.
std::string secondHandshake(const TempDir& dir, int port, const std::string& version) {
  std::string sess = dir.file("session" + version + ".pem");
  std::string addr = "127.0.0.1:" + std::to_string(port);
  run({"openssl", "s_client", "-connect", addr, version, "-sess_out", sess}, "", 10s);
  if (readFile(sess).empty()) return "no session to resume";  // no session id, no ticket
  CommandResult r =
      run({"openssl", "s_client", "-connect", addr, version, "-sess_in", sess}, "", 10s);
  if (r.output.find("Reused,") != std::string::npos) return "Reused";
  if (r.output.find("New,") != std::string::npos) return "New";
  return r.output;
}

TEST_F(ProxyTest, TlsSessionsResume) {
  start();
  EXPECT_EQ(secondHandshake(dir_, opts_.port, "-tls1_2"), "Reused");
  // The server counts the handshake once it has read the client's Finished, which s_client may
  // not wait for.
  EXPECT_TRUE(eventually(
      [&] { return tessera_->metric("tessera_tls_handshakes_total{kind=\"resumed\"}") == 1; }));
}

TEST_F(ProxyTest, SessionResumptionCanBeTurnedOff) {
  opts_.tls_extra = "session_resumption: false";
  start();
  EXPECT_EQ(secondHandshake(dir_, opts_.port, "-tls1_2"), "no session to resume");
  EXPECT_EQ(secondHandshake(dir_, opts_.port, "-tls1_3"), "no session to resume");
  EXPECT_EQ(tessera_->metric("tessera_tls_handshakes_total{kind=\"resumed\"}"), 0);
}

TEST_F(ProxyTest, AlpnNegotiatesHttp11) {
  start();
  CommandResult r = run({"openssl", "s_client", "-connect",
                         "127.0.0.1:" + std::to_string(opts_.port), "-alpn", "h2,http/1.1"},
                        "", 10s);
  EXPECT_NE(r.output.find("ALPN protocol: http/1.1"), std::string::npos) << r.output;
}

// ---- bad input: a clear status, and the backend sees nothing --------------------------------

class BadInputTest : public ProxyTest {
 protected:
  void SetUp() override {
    ProxyTest::SetUp();
    opts_.tls = false;
    opts_.limits = "{ max_header_bytes: 1024, max_body_bytes: 1000, header_timeout: 2s }";
    start();
  }

  // Sends `request` on a fresh connection; returns the status and whether tessera closed.
  std::pair<int, bool> exchange(const std::string& request) {
    RawClient c(opts_.port);
    c.send(request);
    std::string resp = c.readResponses(1, 5s);
    bool closed = c.waitClosed(3s);
    std::vector<int> codes = statusCodes(resp);
    return {codes.empty() ? 0 : codes.front(), closed};
  }

  void expectRefused(const std::string& request, int status) {
    auto [code, closed] = exchange(request);
    EXPECT_EQ(code, status) << request;
    EXPECT_TRUE(closed) << request;
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(backend_.bytesReceived(), 0u) << request;
    EXPECT_EQ(backend_.connections(), 0) << request;
  }
};

TEST_F(BadInputTest, ContentLengthWithTransferEncoding) {
  expectRefused(
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      400);
}

TEST_F(BadInputTest, TwoDifferentContentLengths) {
  expectRefused(
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      400);
}

TEST_F(BadInputTest, BadChunkSize) {
  expectRefused(
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
      "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      400);
}

TEST_F(BadInputTest, ObsFold) {
  expectRefused("GET /echo HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", 400);
}

TEST_F(BadInputTest, BareCarriageReturn) {
  expectRefused("GET /echo HTTP/1.1\r\nHost: a\rX-Evil: 1\r\n\r\n", 400);
}

TEST_F(BadInputTest, RequestLineNotHttp1) {
  expectRefused("GET /echo HTTP/2.0\r\nHost: a\r\n\r\n", 400);
  expectRefused("GET /echo FOO/1.1\r\nHost: a\r\n\r\n", 400);
  expectRefused("GET /echo\r\n\r\n", 400);
}

TEST_F(BadInputTest, HeaderBlockOverTheLimit) {
  expectRefused("GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n",
                431);
}

TEST_F(BadInputTest, DeclaredBodyOverTheLimit) {
  expectRefused(
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'),
      413);
  EXPECT_EQ(tessera_->metric("tessera_bad_requests_total"), 1);
}

TEST_F(BadInputTest, ChunkedBodyOverTheLimit) {
  std::string body;
  for (int i = 0; i < 5; ++i) body += "190\r\n" + std::string(400, 'x') + "\r\n";
  auto [code, closed] =
      exchange("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body +
               "0\r\n\r\n");
  EXPECT_EQ(code, 413);
  EXPECT_TRUE(closed);
  EXPECT_EQ(backend_.bytesReceived(), 0u);  // the whole request came in one write
}

TEST_F(BadInputTest, WhitespaceBeforeTheColon) {
  // "Host : evil" would otherwise slip past every check that looks for "host".
  expectRefused("GET /echo HTTP/1.1\r\nHost: a\r\nHost : evil\r\n\r\n", 400);
}

TEST_F(BadInputTest, TransferEncodingThatIsNotChunked) {
  expectRefused("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxxxx", 400);
}

TEST_F(BadInputTest, TransferCodingsOtherThanALoneChunked) {
  // The body goes upstream de-chunked and chunked again: a gzip coding would reach the backend
  // without the header naming it.
  expectRefused(
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, "
      "chunked\r\n\r\n4\r\nxxxx\r\n0\r\n\r\n",
      400);
  expectRefused(
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      400);
}

TEST_F(BadInputTest, ObsFoldAfterAnEmptyValue) {
  expectRefused("GET /echo HTTP/1.1\r\nHost: a\r\nX-A:\r\n  folded\r\n\r\n", 400);
}

TEST_F(BadInputTest, ConnectIsNotAllowed) {
  // No tunnels; and llhttp would read a CONNECT's body as the next request.
  expectRefused("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nContent-Length: 5\r\n\r\nGET /",
                405);
}

TEST_F(BadInputTest, MissingHostOnHttp11) {
  expectRefused("GET /echo HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400);
}

TEST_F(BadInputTest, SlowlorisIsCutOffAfterHeaderTimeout) {
  RawClient c(opts_.port);
  auto began = std::chrono::steady_clock::now();
  c.send("GET /echo HTTP/1.1\r\nHost: a\r\n");
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {  // one header byte every 100 ms, never finishing
    c.send("X");
    closed = c.waitClosed(100ms);
  }
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_TRUE(closed);
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 3500ms);
  EXPECT_EQ(backend_.bytesReceived(), 0u);
}

// ---- HTTP/1.1 semantics ---------------------------------------------------------------------

class PlainProxyTest : public ProxyTest {
 protected:
  void SetUp() override {
    ProxyTest::SetUp();
    opts_.tls = false;
  }
};

TEST_F(PlainProxyTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  RawClient c(opts_.port);
  c.send(
      "GET /echo?n=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /status?code=201 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /echo?n=3 HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string resp = c.readResponses(3, 5s);
  EXPECT_EQ(statusCodes(resp), (std::vector<int>{200, 201, 200}));
  size_t first = resp.find("GET /echo?n=1");
  size_t third = resp.find("GET /echo?n=3");
  ASSERT_NE(first, std::string::npos);
  ASSERT_NE(third, std::string::npos);
  EXPECT_LT(first, third);
}

TEST_F(PlainProxyTest, ExpectContinueIsAnsweredBeforeTheBody) {
  start();
  RawClient c(opts_.port);
  c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  std::string interim = c.readResponses(1, 3s);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  c.send("hello");
  std::string resp = c.readResponses(1, 3s);
  EXPECT_NE(resp.find("HTTP/1.1 200"), std::string::npos) << resp;
  EXPECT_NE(resp.find("len=5 sha256=" + sha256Hex("hello")), std::string::npos) << resp;
  EXPECT_EQ(backend_.lastHead().find("Expect"), std::string::npos);

  CommandResult r =
      curl({"-H", "Expect: 100-continue", "--data-binary", std::string(3000, 'a'), url("/upload")});
  EXPECT_NE(r.output.find("len=3000"), std::string::npos) << r.output;
}

TEST_F(PlainProxyTest, HeadAnd204And304HaveNoBody) {
  start();
  RawClient c(opts_.port);
  c.send(
      "HEAD /echo HTTP/1.1\r\nHost: a\r\n\r\nGET /status?code=204 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /status?code=304 HTTP/1.1\r\nHost: a\r\n\r\nGET /status?code=200 HTTP/1.1\r\nHost: "
      "a\r\nConnection: close\r\n\r\n");
  std::string all = c.readAll(10s);  // until the close after the fourth response
  EXPECT_EQ(statusCodes(all), (std::vector<int>{200, 204, 304, 200}));
  // The HEAD reply keeps the GET's Content-Length but carries no body: the next status line
  // follows its blank line directly.
  size_t head_end = all.find("\r\n\r\n");
  EXPECT_EQ(all.compare(head_end + 4, 12, "HTTP/1.1 204"), 0) << all;
  EXPECT_NE(all.find("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304"), std::string::npos) << all;
}

TEST_F(PlainProxyTest, A304ThatStatesALengthHasNoBodyAndTheConnectionGoesOn) {
  start();
  RawClient c(opts_.port);
  auto began = std::chrono::steady_clock::now();
  c.send(
      "GET /status?code=304&length=5120 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /status?code=204&length=7 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  std::string all = c.readAll(8s);  // until the close after the third response
  EXPECT_LT(std::chrono::steady_clock::now() - began, 3s);  // read_timeout is 5s
  EXPECT_EQ(statusCodes(all), (std::vector<int>{304, 204, 200})) << all;
  EXPECT_NE(all.find("Content-Length: 5120\r\n\r\nHTTP/1.1 204"), std::string::npos) << all;
  EXPECT_EQ(tessera_->metric("tessera_upstream_timeouts_total"), 0);
  EXPECT_EQ(backend_.connections(), 1);  // the upstream connection was reused each time
}

TEST_F(PlainProxyTest, ARequestAskingForAnUpgradeIsAnsweredAndTheNextOneToo) {
  start();
  RawClient c(opts_.port);
  c.send(
      "GET /echo?n=1 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
      "GET /echo?n=2 HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string resp = c.readResponses(2, 5s);
  EXPECT_EQ(statusCodes(resp), (std::vector<int>{200, 200})) << resp;
  EXPECT_NE(resp.find("GET /echo?n=2"), std::string::npos) << resp;
  EXPECT_EQ(backend_.lastHead().find("Upgrade"), std::string::npos);
}

TEST_F(PlainProxyTest, HopByHopHeadersAreNotForwarded) {
  start();
  RawClient c(opts_.port);
  c.send(
      "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
      "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: "
      "websocket\r\n"
      "X-Kept: yes\r\n\r\n");
  std::string resp = c.readResponses(1, 3s);
  for (const char* gone : {"X-Secret", "Keep-Alive", "Proxy-Connection", "TE:", "Upgrade"}) {
    EXPECT_EQ(backend_.lastHead().find(gone), std::string::npos) << gone;
  }
  EXPECT_NE(backend_.lastHead().find("X-Kept: yes"), std::string::npos);
}

TEST_F(PlainProxyTest, AbsoluteFormTargetIsForwardedInOriginFormWithItsHost) {
  start();
  RawClient c(opts_.port);
  c.send("GET http://user@inner.test:81/p?q=1 HTTP/1.1\r\nHost: outer.test\r\n\r\n");
  ASSERT_EQ(statusCodes(c.readResponses(1)), std::vector<int>{200});
  std::string head = backend_.lastHead();
  EXPECT_EQ(head.rfind("GET /p?q=1 HTTP/1.1\n", 0), 0u) << head;
  EXPECT_NE(head.find("Host: inner.test:81\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("outer.test"), std::string::npos) << head;
  EXPECT_EQ(head.find("user@"), std::string::npos) << head;
}

TEST_F(PlainProxyTest, ReadUntilCloseResponseIsRechunkedForTheClient) {
  start();
  RawClient c(opts_.port);
  c.send("GET /close HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string resp = c.readAll(1500ms);
  EXPECT_NE(resp.find("Transfer-Encoding: chunked"), std::string::npos) << resp;
  EXPECT_NE(resp.find("10\r\nuntil-close body\r\n0\r\n\r\n"), std::string::npos) << resp;
}

TEST_F(PlainProxyTest, RoutesByHostAndPathPrefix) {
  TestBackend api;
  opts_.routes =
      "[ { host: \"*.shop.test\", path_prefix: /api/, upstream: api },"
      " { host: www.example.test, upstream: api }, { upstream: app } ]";
  opts_.extra_upstreams = "  api:\n    servers: [" + api.address() + "]\n";
  start();
  auto hit = [&](const std::string& host, const std::string& path) {
    RawClient c(opts_.port);
    c.send("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
    return c.readAll(3s);
  };
  hit("a.shop.test", "/api/x");
  EXPECT_EQ(api.requests(), 1);
  hit("a.shop.test:8080", "/other");
  EXPECT_EQ(api.requests(), 1);
  EXPECT_EQ(backend_.requests(), 1);
  hit("shop.test", "/api/x");  // "*.shop.test" does not cover shop.test itself
  EXPECT_EQ(backend_.requests(), 2);
  hit("WWW.Example.Test", "/");
  EXPECT_EQ(api.requests(), 2);
}

// ---- upstream failures -------------------------------------------------------------------

TEST_F(ProxyTest, RefusedUpstreamGives502) {
  LoopbackSocket dead = refusingPort();
  opts_.servers = {dead.address()};
  start();
  CommandResult r = curl({"-w", "|%{http_code}", url("/echo")});
  EXPECT_NE(r.output.find("|502"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("upstream unavailable"), std::string::npos) << r.output;
  EXPECT_EQ(tessera_->metric("tessera_upstream_connect_errors_total"), 1);
  ASSERT_TRUE(eventually(
      [&] { return tessera_->stdoutText().find("\"status\":502") != std::string::npos; }));
}

TEST_F(ProxyTest, AnOversizedResponseHeadGives502) {
  start();
  CommandResult r = curl({"-w", "|%{http_code}", url("/hugehead")});
  EXPECT_NE(r.output.find("|502"), std::string::npos) << r.output.substr(0, 200);
  // The worker is fine afterwards.
  CommandResult ok = curl({"-o", "/dev/null", "-w", "%{http_code}", url("/echo")});
  EXPECT_EQ(ok.output, "200");
}

TEST_F(ProxyTest, SilentUpstreamGives504AfterReadTimeout) {
  opts_.upstream_extra = "read_timeout: 500ms";
  start();
  auto began = std::chrono::steady_clock::now();
  CommandResult r = curl({"-w", "|%{http_code}", url("/sleep?ms=3000")});
  auto took = std::chrono::steady_clock::now() - began;
  EXPECT_NE(r.output.find("|504"), std::string::npos) << r.output;
  EXPECT_LT(took, 2500ms);
  EXPECT_EQ(tessera_->metric("tessera_upstream_timeouts_total"), 1);
  ASSERT_TRUE(eventually(
      [&] { return tessera_->stdoutText().find("\"status\":504") != std::string::npos; }));
}

TEST_F(PlainProxyTest, ASlowButSteadyUploadIsNotCutOffByTheReadTimeout) {
  opts_.upstream_extra = "read_timeout: 500ms";
  start();
  RawClient c(opts_.port);
  std::string body;
  for (int i = 0; i < 30000; ++i) body.push_back(static_cast<char>(patternByte(i)));
  c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 30000\r\n\r\n");
  for (size_t at = 0; at < body.size(); at += 3000) {  // 10 pieces over 2 s
    c.send(body.substr(at, 3000));
    std::this_thread::sleep_for(200ms);
  }
  std::string resp = c.readResponses(1, 5s);
  EXPECT_EQ(statusCodes(resp), std::vector<int>{200}) << resp;
  EXPECT_NE(resp.find("len=30000 sha256=" + sha256Hex(body)), std::string::npos) << resp;
  EXPECT_EQ(tessera_->metric("tessera_upstream_timeouts_total"), 0);
}

// The body of a chunked response (after its head); "" when the framing is broken.
std::string dechunk(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  if (at == std::string::npos) return "";
  at += 4;
  std::string body;
  for (;;) {
    size_t eol = response.find("\r\n", at);
    if (eol == std::string::npos) return "";
    size_t len = std::stoul(response.substr(at, eol - at), nullptr, 16);
    at = eol + 2;
    if (len == 0) return response.compare(at, 2, "\r\n") == 0 ? body : "";
    if (at + len + 2 > response.size()) return "";
    body.append(response, at, len);
    at += len + 2;
  }
}

TEST_F(PlainProxyTest, AnUpstreamThatTakesNoneOfTheBodyGives504) {
  LoopbackSocket silent;  // connects complete, nobody reads
  silent.listen();
  opts_.servers = {silent.address()};
  opts_.upstream_extra = "read_timeout: 1s";
  start();
  RawClient c(opts_.port);
  const size_t kBody = 900 * 1024;  // under 1 MiB: tessera takes all of it from the client
  c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(kBody) +
         "\r\n\r\n" + std::string(kBody, 'x'));
  auto sent = std::chrono::steady_clock::now();
  std::string resp = c.readResponses(1, 10s);
  EXPECT_EQ(statusCodes(resp), std::vector<int>{504}) << resp.substr(0, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - sent, 5s);
  EXPECT_EQ(tessera_->metric("tessera_upstream_timeouts_total"), 1);
}

TEST_F(PlainProxyTest, AReaderThatPausesGetsTheWholeResponse) {
  // The client stops reading for longer than the upstream's read_timeout, the keep-alive idle
  // time and the linger before a close, but less than send_timeout. tessera queues 1 MiB for it,
  // then stops reading from the upstream: only send_timeout may cut the client off, not the
  // upstream's read_timeout (it is not the upstream that is slow), nor the others.
  opts_.upstream_extra = "read_timeout: 500ms";
  opts_.limits = "{ header_timeout: 2s, idle_timeout: 1s, send_timeout: 4s }";
  start();
  const uint64_t kSize = 16 * 1024 * 1024;
  std::string data;
  for (uint64_t i = 0; i < kSize; ++i) data.push_back(static_cast<char>(patternByte(i)));
  for (bool keep_alive : {true, false}) {
    RawClient c(opts_.port);
    c.setReceiveBuffer(32 * 1024);
    c.send("GET /download?bytes=" + std::to_string(kSize) + " HTTP/1.1\r\nHost: a\r\n" +
           (keep_alive ? "" : "Connection: close\r\n") + "\r\n");
    std::string resp = c.readAtLeast(2 * 1024 * 1024, 10s);
    std::this_thread::sleep_for(2500ms);
    resp += c.readPaced(1024 * 1024, 1ms, 20s, keep_alive ? "\r\n0\r\n\r\n" : "");
    std::string body = dechunk(resp);
    EXPECT_EQ(body.size(), kSize) << "keep-alive: " << keep_alive << ", got " << resp.size();
    EXPECT_TRUE(body == data) << "keep-alive: " << keep_alive;
    if (keep_alive) {  // and the connection is still there for the next request
      c.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");
      EXPECT_EQ(statusCodes(c.readResponses(1, 3s)), std::vector<int>{200});
    }
  }
  EXPECT_EQ(tessera_->metric("tessera_upstream_timeouts_total"), 0);
}

TEST_F(PlainProxyTest, AClientThatStopsReadingIsCutOffAfterSendTimeout) {
  opts_.limits = "{ header_timeout: 2s, send_timeout: 1s }";
  start();
  const uint64_t kSize = 8 * 1024 * 1024;
  RawClient c(opts_.port);
  c.setReceiveBuffer(32 * 1024);
  c.send("GET /download?bytes=" + std::to_string(kSize) + " HTTP/1.1\r\nHost: a\r\n\r\n");
  std::this_thread::sleep_for(2500ms);  // reads nothing
  std::string got = c.readAll(5s);      // what was queued, then the close
  EXPECT_GT(got.size(), 0u);
  EXPECT_LT(got.size(), kSize);
  // The worker is fine afterwards.
  CommandResult ok = curl({"-o", "/dev/null", "-w", "%{http_code}", url("/echo")});
  EXPECT_EQ(ok.output, "200");
}

// utime + stime of a process, in clock ticks.
long cpuTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; fields >> f; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stol(f);
    if (i == 15) {
      stime = std::stol(f);
      break;
    }
  }
  return utime + stime;
}

TEST_F(PlainProxyTest, OutOfDescriptorsPausesAcceptingInsteadOfSpinning) {
  start();
  pid_t pid = tessera_->process().pid();
  auto fds =
      std::distance(std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"),
                    std::filesystem::directory_iterator{});
  rlimit old{};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, nullptr, &old), 0);
  rlimit few{static_cast<rlim_t>(fds + 3), old.rlim_max};  // the soft limit only: it goes back
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &few, nullptr), 0);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 10; ++i) clients.push_back(std::make_unique<RawClient>(opts_.port));
  // The admin listener too (libevent's own listener there).
  for (int i = 0; i < 3; ++i) clients.push_back(std::make_unique<RawClient>(opts_.admin_port));
  std::this_thread::sleep_for(300ms);  // accepted what it could; the rest wait in the backlog
  long before = cpuTicks(pid);
  std::this_thread::sleep_for(1s);
  long used = cpuTicks(pid) - before;
  // A worker spinning on accept(2) would take the whole second (sysconf(_SC_CLK_TCK) ticks).
  EXPECT_LT(used, sysconf(_SC_CLK_TCK) / 4) << tessera_->stderrText().substr(0, 2000);
  std::string err = tessera_->stderrText();
  size_t pauses = 0;
  for (size_t at = 0; (at = err.find("not accepting for", at)) != std::string::npos; ++at) ++pauses;
  EXPECT_GE(pauses, 2u);   // a worker and the admin listener
  EXPECT_LE(pauses, 60u);  // about one per 100 ms each, not one per loop turn
  EXPECT_EQ(err.find("Error from accept() call"), std::string::npos);
  // With descriptors again, the connections that waited are served.
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &old, nullptr), 0);
  clients[9]->send("GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(statusCodes(clients[9]->readResponses(1, 3s)), std::vector<int>{200});
  clients.back()->send("GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(statusCodes(clients.back()->readResponses(1, 3s)), std::vector<int>{200});
}

TEST_F(ProxyTest, AServerThatCannotBeReachedAtAllIsSkippedLikeARefusingOne) {
  // A multicast address: connect() fails at once (ENETUNREACH), before any packet leaves.
  opts_.servers = {"224.0.0.1:9", backend_.address()};
  opts_.upstream_extra = "fail_timeout: 30s";
  start();
  for (int i = 0; i < 4; ++i) {
    CommandResult r = curl({"-o", "/dev/null", "-w", "%{http_code}", url("/echo")});
    EXPECT_EQ(r.output, "200") << i;
  }
  EXPECT_EQ(backend_.requests(), 4);
  EXPECT_EQ(tessera_->metric("tessera_upstream_connect_errors_total"), 1);  // then skipped
}

TEST_F(ProxyTest, FailedServerIsSkippedForAWhile) {
  LoopbackSocket dead = refusingPort();
  opts_.servers = {dead.address(), backend_.address()};
  opts_.upstream_extra = "fail_timeout: 30s";
  start();
  for (int i = 0; i < 6; ++i) {
    CommandResult r = curl({"-o", "/dev/null", "-w", "%{http_code}", url("/echo")});
    EXPECT_EQ(r.output, "200") << i;
  }
  // The dead server was tried once, then skipped: one connect error for six requests.
  EXPECT_EQ(tessera_->metric("tessera_upstream_connect_errors_total"), 1);
  EXPECT_EQ(backend_.requests(), 6);
}

// ---- signals --------------------------------------------------------------------------------

TEST_F(PlainProxyTest, SighupWithAValidConfigSwitchesNewConnectionsOnly) {
  start();
  RawClient old_conn(opts_.port);
  old_conn.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(statusCodes(old_conn.readResponses(1)), std::vector<int>{200});

  TestBackend next;
  opts_.servers = {next.address()};
  dir_.write("tessera.yaml", makeConfig(opts_));
  tessera_->process().signal(SIGHUP);
  ASSERT_TRUE(
      eventually([&] { return tessera_->stderrText().find("reloaded") != std::string::npos; }));

  std::string fresh = httpGet(opts_.port, "/echo");
  EXPECT_EQ(statusCodes(fresh), std::vector<int>{200});
  EXPECT_EQ(next.requests(), 1);
  old_conn.send(
      "GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");  // the old connection keeps the old config
  ASSERT_EQ(statusCodes(old_conn.readResponses(1)), std::vector<int>{200});
  EXPECT_EQ(backend_.requests(), 2);
  EXPECT_EQ(next.requests(), 1);
}

TEST_F(PlainProxyTest, SighupWithABrokenConfigKeepsServing) {
  start();
  dir_.write("tessera.yaml", makeConfig(opts_) + "bogus_key: 1\n");
  tessera_->process().signal(SIGHUP);
  ASSERT_TRUE(
      eventually([&] { return tessera_->stderrText().find("refused") != std::string::npos; }));
  // The error lines follow the "refused" line.
  EXPECT_TRUE(eventually([&] {
    return tessera_->stderrText().find("bogus_key: unknown key") != std::string::npos;
  })) << tessera_->stderrText();
  EXPECT_NE(tessera_->stderrText().find(tessera_->configPath() + ":"), std::string::npos);
  EXPECT_TRUE(tessera_->process().running());
  EXPECT_EQ(statusCodes(httpGet(opts_.port, "/echo")), std::vector<int>{200});
}

TEST_F(PlainProxyTest, SigtermDrainsInFlightRequestsThenExitsZero) {
  start();
  RawClient busy(opts_.port);
  busy.send("GET /sleep?ms=1000 HTTP/1.1\r\nHost: a\r\n\r\n");
  RawClient idle(opts_.port);
  idle.send("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(statusCodes(idle.readResponses(1)), std::vector<int>{200});
  std::this_thread::sleep_for(200ms);
  tessera_->process().signal(SIGTERM);
  EXPECT_TRUE(idle.waitClosed(2s));  // idle keep-alive connections go at once
  EXPECT_TRUE(eventually([&] { return RawClient(opts_.port).connected() == false; }, 2s));
  std::string resp = busy.readResponses(1, 5s);
  EXPECT_EQ(statusCodes(resp), std::vector<int>{200});
  EXPECT_NE(resp.find("Connection: close"), std::string::npos) << resp;
  EXPECT_EQ(tessera_->process().wait(5s), 0);
}

// ---- validate -------------------------------------------------------------------------------

TEST_F(ProxyTest, ValidateAcceptsAGoodConfig) {
  std::string path = dir_.write("good.yaml", makeConfig(opts_));
  CommandResult r = run({TESSERA_BINARY, "validate", "--config", path});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "ok\n");
}

TEST_F(ProxyTest, ValidatePrintsEachErrorWithFileLineAndColumn) {
  std::string yaml =
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    tls:\n"
      "      certificates:\n"
      "        - { cert: missing.crt, key: missing.key }\n"
      "    routes: [ { upstream: app } ]\n"
      "upstreams:\n"
      "  app:\n"
      "    servers: [not-an-address]\n"
      "    colour: blue\n";
  std::string path = dir_.write("bad.yaml", yaml);
  CommandResult r = run({TESSERA_BINARY, "validate", "--config", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(path + ":9:15: upstreams.app.servers[0]: expected host:port\n"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(path + ":10:5: upstreams.app.colour: unknown key\n"), std::string::npos)
      << r.output;

  // Files the YAML names are checked too, with the position of the entry that names them.
  std::string yaml2 =
      "listeners:\n"
      "  - listen: 127.0.0.1:8443\n"
      "    tls:\n"
      "      certificates:\n"
      "        - { cert: missing.crt, key: missing.key }\n"
      "upstreams:\n"
      "  app: { servers: [127.0.0.1:9000] }\n";
  std::string path2 = dir_.write("bad2.yaml", yaml2);
  CommandResult r2 = run({TESSERA_BINARY, "validate", "--config", path2});
  EXPECT_EQ(r2.exit_code, 1);
  EXPECT_EQ(
      r2.output.rfind(
          path2 + ":5:11: listeners[0].tls.certificates[0]: cannot load certificate missing.crt",
          0),
      0u)
      << r2.output;
}

}  // namespace
}  // namespace tessera::testing
