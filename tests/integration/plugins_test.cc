// Plugins end to end: session_binding on the real binary, with the embedded store and with two
// nodes sharing a memcached.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "tests/integration/harness.h"

namespace tessera::testing {
namespace {

std::string request(const std::string& path, const std::string& cookie,
                    const std::string& agent = "agent-A") {
  std::string r = "GET " + path + " HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: " + agent + "\r\n";
  if (!cookie.empty()) r += "Cookie: theme=dark; SESSIONID=" + cookie + "\r\n";
  return r + "\r\n";
}

// One request on a fresh connection from `source_ip`; returns the status (0: no answer).
int statusOf(int port, const std::string& req, const std::string& source_ip = "127.0.0.1") {
  RawClient c(port, source_ip);
  c.send(req);
  std::vector<int> codes = statusCodes(c.readResponses(1, 5s));
  return codes.empty() ? 0 : codes.front();
}

std::string bindingConfig(int port, int admin, const std::string& backend, const std::string& store,
                          const std::string& unknown, const std::string& audit,
                          const std::string& timeout = "300ms") {
  return "workers: 2\n"
         "plugins:\n"
         "  shop_binding:\n"
         "    type: session_binding\n"
         "    cookies: [SESSIONID]\n"
         "    attributes: [ip, user_agent]\n"
         "    on_mismatch: reject\n"
         "    unknown: " +
         unknown +
         "\n"
         "    timeout: " +
         timeout +
         "\n"
         "listeners:\n  - listen: 127.0.0.1:" +
         std::to_string(port) +
         "\n"
         "    routes:\n"
         "      - { path_prefix: /free, upstream: app }\n"
         "      - { path_prefix: /, upstream: app, plugins: [shop_binding] }\n"
         "upstreams: { app: { servers: [" +
         backend + "] } }\n" + store + "admin: { listen: 127.0.0.1:" + std::to_string(admin) +
         " }\n"
         "log: { level: info, access_log: off, audit_log: " +
         audit + " }\n";
}

class SessionBindingTest : public ::testing::Test {
 protected:
  void start(const std::string& unknown = "allow") {
    port_ = freePort();
    admin_ = freePort();
    std::string yaml =
        bindingConfig(port_, admin_, backend_.address(), "", unknown, dir_.file("audit.log"));
    tessera_ = std::make_unique<Tessera>(dir_, yaml, port_, admin_);
    ASSERT_TRUE(tessera_->started()) << tessera_->stderrText();
  }

  TempDir dir_;
  TestBackend backend_;
  int port_ = 0;
  int admin_ = 0;
  std::unique_ptr<Tessera> tessera_;
};

TEST_F(SessionBindingTest, ACookieWorksOnlyOnTheDeviceThatLoggedIn) {
  start();
  ASSERT_EQ(statusOf(port_, request("/login?sid=s3cr3t", "")), 200);
  EXPECT_EQ(statusOf(port_, request("/account", "s3cr3t")), 200);
  int seen = backend_.requests();
  EXPECT_EQ(statusOf(port_, request("/account", "s3cr3t"), "127.0.0.2"), 403);
  EXPECT_EQ(statusOf(port_, request("/account", "s3cr3t", "agent-B")), 403);
  EXPECT_EQ(backend_.requests(), seen);  // refused requests never reach the backend
  std::string audit = readFile(dir_.file("audit.log"));
  EXPECT_NE(audit.find("\"event\":\"session_binding_mismatch\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"client\":\"127.0.0.2\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"plugin\":\"shop_binding\""), std::string::npos) << audit;
  EXPECT_EQ(
      tessera_->metric("tessera_plugin_events_total{plugin=\"shop_binding\",event=\"mismatch\"}"),
      2);
  // The owner keeps working, on a kept-alive connection too.
  RawClient c(port_);
  c.send(request("/a", "s3cr3t") + request("/b", "s3cr3t"));
  EXPECT_EQ(statusCodes(c.readResponses(2, 5s)), (std::vector<int>{200, 200}));
}

TEST_F(SessionBindingTest, TwoSessionCookiesAreRefused) {
  start();
  ASSERT_EQ(statusOf(port_, request("/login?sid=mine", "")), 200);
  // A junk value first, a stolen one second: a backend reading the second must never see it.
  std::string req =
      "GET /account HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: agent-A\r\n"
      "Cookie: SESSIONID=junk\r\nCookie: SESSIONID=mine\r\n\r\n";
  EXPECT_EQ(statusOf(port_, req, "127.0.0.2"), 403);
  EXPECT_NE(readFile(dir_.file("audit.log")).find("session_binding_ambiguous"), std::string::npos);
}

TEST_F(SessionBindingTest, LogoutRemovesTheBinding) {
  start("reject");
  ASSERT_EQ(statusOf(port_, request("/login?sid=abc", "")), 200);
  EXPECT_EQ(statusOf(port_, request("/account", "abc")), 200);
  ASSERT_EQ(statusOf(port_, request("/logout", "abc")), 200);
  // With `unknown: reject`, a cookie tessera holds no binding for is refused.
  EXPECT_EQ(statusOf(port_, request("/account", "abc")), 403);
  EXPECT_EQ(statusOf(port_, request("/account", "never-set")), 403);
}

TEST_F(SessionBindingTest, RoutesWithoutThePluginAndRequestsWithoutTheCookiePass) {
  start("reject");
  EXPECT_EQ(statusOf(port_, request("/free/x", "forged"), "127.0.0.2"), 200);
  EXPECT_EQ(statusOf(port_, request("/account", "")), 200);
}

// Two nodes sharing one memcached: a binding made on one is enforced on the other.
class SharedBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = dir_.file("seal.key");
    ASSERT_EQ(run({TESSERA_BINARY, "keygen", "seal", "--out", key_}).exit_code, 0);
    mc_port_ = freePort();
    std::vector<std::string> argv = {"memcached", "-l", "127.0.0.1", "-p", std::to_string(mc_port_),
                                     "-U",        "0",  "-m",        "16", "-t",
                                     "1"};
    if (geteuid() == 0) argv.insert(argv.end(), {"-u", "root"});
    memcached_ = std::make_unique<Process>(argv, dir_.file("mc.out"), dir_.file("mc.err"));
    ASSERT_TRUE(waitForPort(mc_port_));
    std::string store =
        "session_cache:\n  store: memcached\n  seal_keys: [ { id: k1, file: " + key_ +
        " } ]\n  memcached: { servers: [127.0.0.1:" + std::to_string(mc_port_) +
        "], io_timeout: " + kStoreTimeout + " }\n";
    for (int i = 0; i < 2; ++i) {
      int port = freePort(), admin = freePort();
      dirs_.push_back(std::make_unique<TempDir>());
      std::string yaml =
          bindingConfig(port, admin, backend_.address(), store, "allow",
                        dir_.file("audit" + std::to_string(i) + ".log"), kStoreTimeout);
      nodes_.push_back(std::make_unique<Tessera>(*dirs_.back(), yaml, port, admin));
      ASSERT_TRUE(nodes_.back()->started()) << nodes_.back()->stderrText();
      ports_.push_back(port);
    }
  }
  void TearDown() override {
    if (memcached_) memcached_->signal(SIGCONT);
  }

  // Long enough that a loaded test machine never hits it by chance, and that what the tests do
  // while memcached is stopped ends well before it.
  static constexpr const char* kStoreTimeout = "2s";

  TempDir dir_;
  TestBackend backend_;
  std::string key_;
  int mc_port_ = 0;
  std::unique_ptr<Process> memcached_;
  std::vector<std::unique_ptr<TempDir>> dirs_;
  std::vector<std::unique_ptr<Tessera>> nodes_;
  std::vector<int> ports_;
};

TEST_F(SharedBindingTest, ABindingMadeOnOneNodeIsEnforcedOnTheOther) {
  ASSERT_EQ(statusOf(ports_[0], request("/login?sid=cluster-sid", "")), 200);
  EXPECT_EQ(statusOf(ports_[1], request("/account", "cluster-sid")), 200);
  EXPECT_EQ(statusOf(ports_[1], request("/account", "cluster-sid"), "127.0.0.2"), 403);
  std::string audit = readFile(dir_.file("audit1.log"));
  EXPECT_NE(audit.find("session_binding_mismatch"), std::string::npos) << audit;
}

TEST_F(SharedBindingTest, AWaitingPluginDoesNotStallOtherRequests) {
  ASSERT_EQ(statusOf(ports_[0], request("/login?sid=slow", "")), 200);
  memcached_->signal(SIGSTOP);
  // This request's binding lookup waits for the stopped memcached (up to kStoreTimeout).
  auto began = std::chrono::steady_clock::now();
  RawClient waiting(ports_[0]);
  waiting.send(request("/account", "slow"));
  // Meanwhile the same node (two workers, so both of them) answers other requests, and all of
  // them come while the waiting one still waits.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(statusOf(ports_[0], request("/free/x", "")), 200);
  EXPECT_EQ(waiting.readResponses(1, 20ms), "");
  // The waiting request ends by the plugin's timeout (unknown: allow) rather than hanging.
  EXPECT_EQ(statusCodes(waiting.readResponses(1, 10s)), std::vector<int>{200});
  EXPECT_GE(std::chrono::steady_clock::now() - began, 1900ms);
  memcached_->signal(SIGCONT);
}

// The login response waits for its binding write. With the memcached stopped the write fails (or
// times out); the response, head and a body far larger than one read, is then released whole.
TEST_F(SharedBindingTest, ALoginResponseHeldForItsBindingWriteComesWhole) {
  memcached_->signal(SIGSTOP);
  std::string url =
      "http://127.0.0.1:" + std::to_string(ports_[0]) + "/login?sid=held&bytes=300000";
  CommandResult r = run({"curl", "-s", "-o", dir_.file("login.body"), "-w", "%{http_code}", url});
  memcached_->signal(SIGCONT);
  EXPECT_EQ(r.output, "200");
  EXPECT_EQ(nodes_[0]->metric(
                "tessera_plugin_events_total{plugin=\"shop_binding\",event=\"write_failed\"}"),
            1);
  std::string expected;
  for (uint64_t k = 0; k < 300000; ++k) expected.push_back(static_cast<char>(patternByte(k)));
  EXPECT_EQ(sha256Hex(readFile(dir_.file("login.body"))), sha256Hex(expected));
}

// A held response to HEAD has no body: the connection carries the next request, and the binding
// was written before the response left.
TEST_F(SharedBindingTest, AHeldResponseToHeadKeepsTheConnection) {
  std::string base = "http://127.0.0.1:" + std::to_string(ports_[0]);
  CommandResult r =
      run({"curl", "-s", "-I", "-A", "agent-A", "-o", "/dev/null", "-o", "/dev/null", "-w",
           "%{http_code} %{num_connects}\n", base + "/login?sid=head1", base + "/login?sid=head2"});
  EXPECT_EQ(r.output, "200 1\n200 0\n");
  EXPECT_EQ(statusOf(ports_[1], request("/account", "head2")), 200);
  EXPECT_EQ(statusOf(ports_[1], request("/account", "head2"), "127.0.0.2"), 403);
}

}  // namespace
}  // namespace tessera::testing
