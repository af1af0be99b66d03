// The migration plugin end to end: tessera nodes sharing a memcached ring play the origin app
// (origin.test) and the target app (target.test) in front of one backend; a second tessera
// cluster is a target that verifies passes over HTTPS with mutual TLS.

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/harness.h"

namespace tessera::testing {
namespace {

using json = nlohmann::json;

using Reply = HttpReply;

Reply call(int port, const std::string& method, const std::string& host, const std::string& path,
           const std::vector<std::string>& headers, const std::string& body = "",
           const std::string& source_ip = "127.0.0.1") {
  return httpCall(port, method, host, path, headers, body, source_ip);
}

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string passRequest(int64_t ts, const std::string& nonce) {
  return json{{"ts", ts}, {"nonce", nonce}}.dump();
}

std::string permitOf(const Reply& r) {
  std::string cookie = r.header("Set-Cookie");
  if (cookie.rfind("TPERMIT=", 0) != 0) return "";
  return cookie.substr(8, cookie.find(';') - 8);
}

class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seal_ = dir_.file("seal.key");
    ASSERT_EQ(run({TESSERA_BINARY, "keygen", "seal", "--out", seal_}).exit_code, 0);
    for (const char* k : {"sign", "enc"}) {
      ASSERT_EQ(run({TESSERA_BINARY, "token", "keygen", "--type", "ec", "--out",
                     dir_.file(std::string(k) + ".jwk"), "--public",
                     dir_.file(std::string(k) + ".pub.json")})
                    .exit_code,
                0);
    }
    mc_port_ = freePort();
    std::vector<std::string> argv = {"memcached", "-l", "127.0.0.1", "-p", std::to_string(mc_port_),
                                     "-U",        "0",  "-m",        "16", "-t",
                                     "1"};
    if (geteuid() == 0) argv.insert(argv.end(), {"-u", "root"});
    memcached_ = std::make_unique<Process>(argv, dir_.file("mc.out"), dir_.file("mc.err"));
    ASSERT_TRUE(waitForPort(mc_port_));
  }

  std::string originPlugin() const {
    return "  mig_origin:\n"
           "    type: migration\n"
           "    timeout: 2s\n"  // store calls: generous on a loaded test machine
           "    role: origin\n"
           "    session_cookie: SESSIONID\n"
           "    user_header: " +
           user_header_ +
           "\n"
           "    signing_key: " +
           dir_.file("sign.jwk") +
           "\n"
           "    encryption_key: " +
           dir_.file("enc.jwk") +
           "\n"
           "    pass_ttl: 60s\n"
           "    request_window: 30s\n"
           "    attributes: [ip, header:X-Device-Id]\n";
  }

  // With user_header claim:sub, the origin learns the user from a token checked by `auth`.
  std::string jwtPlugin() const {
    if (user_header_ != "claim:sub") return "";
    return "  auth:\n"
           "    type: jwt\n"
           "    required: false\n"
           "    issuers:\n"
           "      - issuer: https://auth.test\n"
           "        audiences: [shop]\n"
           "        keys: " +
           dir_.file("auth.jwks.json") +
           "\n"
           "        algorithms: [ES256]\n";
  }

  // A node of the origin cluster: origin.test and target.test (origin: local) on a plain
  // listener; with `tls_port`, the origin also on an HTTPS listener that asks for client
  // certificates from the test CA.
  void startNode(int tls_port = 0) {
    int port = freePort(), admin = freePort();
    std::string yaml =
        "workers: 2\nplugins:\n" + originPlugin() + jwtPlugin() +
        "  mig_target:\n"
        "    type: migration\n"
        "    timeout: 2s\n"  // store calls: generous on a loaded test machine
        "    role: target\n"
        "    origin: local\n"
        "    permit_cookie: TPERMIT\n"
        "    permit_ttl: 15m\n"
        "    identity_headers: { user: X-User-Id }\n"
        "    attributes: [ip, header:X-Device-Id]\n"
        "listeners:\n"
        "  - name: plain\n"
        "    listen: 127.0.0.1:" +
        std::to_string(port) +
        "\n"
        "    routes:\n"
        "      - { host: origin.test, path_prefix: /, upstream: app, plugins: [" +
        std::string(user_header_ == "claim:sub" ? "auth, " : "") +
        "mig_origin] }\n"
        "      - { host: target.test, path_prefix: /, upstream: app, plugins: [mig_target] }\n";
    if (tls_port != 0) {
      yaml +=
          "  - name: verify\n"
          "    listen: 127.0.0.1:" +
          std::to_string(tls_port) +
          "\n"
          "    tls:\n"
          "      certificates: [ { cert: " +
          dir_.file("server.crt") + ", key: " + dir_.file("server.key") +
          " } ]\n"
          "      client_ca: " +
          dir_.file("ca.crt") +
          "\n"
          "    routes: [ { path_prefix: /, upstream: app, plugins: [mig_origin] } ]\n";
    }
    yaml += "upstreams: { app: { servers: [" + backend_.address() +
            "] } }\n"
            "session_cache:\n  store: memcached\n  seal_keys: [ { id: k1, file: " +
            seal_ + " } ]\n  memcached: { servers: [127.0.0.1:" + std::to_string(mc_port_) +
            "], io_timeout: 1s }\n"
            "admin: { listen: 127.0.0.1:" +
            std::to_string(admin) +
            " }\n"
            "log: { level: info, access_log: off, audit_log: " +
            dir_.file("audit" + std::to_string(ports_.size()) + ".log") + " }\n";
    dirs_.push_back(std::make_unique<TempDir>());
    nodes_.push_back(std::make_unique<Tessera>(*dirs_.back(), yaml, port, admin));
    ASSERT_TRUE(nodes_.back()->started()) << nodes_.back()->stderrText();
    ports_.push_back(port);
  }

  // Logs `user` in on the origin through node `node`, from device `device`; returns the cookie.
  std::string login(size_t node, const std::string& sid, const std::string& user,
                    const std::string& device) {
    Reply r = call(ports_[node], "GET", "origin.test", "/login?sid=" + sid + "&user=" + user,
                   {"X-Device-Id: " + device});
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("X-User-Id"), "");  // meant for tessera, never for the client
    return sid;
  }

  Reply askPass(size_t node, const std::string& sid, const std::string& device,
                const std::string& nonce, int64_t ts = 0, const std::string& ip = "127.0.0.1") {
    return call(
        ports_[node], "POST", "origin.test", "/_tessera/migration/pass",
        {"Cookie: SESSIONID=" + sid, "X-Device-Id: " + device, "Content-Type: application/json"},
        passRequest(ts == 0 ? nowMs() : ts, nonce), ip);
  }

  Reply redeem(int port, const std::string& pass, const std::string& device,
               const std::string& ip = "127.0.0.1", const std::string& host = "target.test") {
    return call(port, "POST", host, "/_tessera/migration/redeem", {"X-Device-Id: " + device},
                json{{"pass", pass}}.dump(), ip);
  }

  // A live pass for a fresh session of `user` on `device`.
  std::string passFor(const std::string& sid, const std::string& user, const std::string& device) {
    login(0, sid, user, device);
    Reply r = askPass(0, sid, device, "nonce-" + sid);
    EXPECT_EQ(r.status, 200) << r.body;
    json j = json::parse(r.body, nullptr, false);
    return j.is_object() ? j.value("pass", "") : "";
  }

  std::string audit(size_t node) const {
    return readFile(dir_.file("audit" + std::to_string(node) + ".log"));
  }

  TempDir dir_;
  TestBackend backend_;
  std::string user_header_ = "X-User-Id";
  std::string seal_;
  int mc_port_ = 0;
  std::unique_ptr<Process> memcached_;
  std::vector<std::unique_ptr<TempDir>> dirs_;
  std::vector<std::unique_ptr<Tessera>> nodes_;
  std::vector<int> ports_;
};

TEST_F(MigrationTest, IssueOnOneNodeRedeemOnAnotherUseThePermitOnEither) {
  startNode();
  startNode();
  std::string pass = passFor("s-alice", "alice", "phone-1");
  ASSERT_FALSE(pass.empty());
  EXPECT_EQ(pass.find("alice"), std::string::npos);
  Reply r = redeem(ports_[1], pass, "phone-1");
  ASSERT_EQ(r.status, 200) << r.body;
  std::string permit = permitOf(r);
  ASSERT_EQ(permit.size(), 44u) << r.head;
  EXPECT_NE(r.header("Set-Cookie").find("HttpOnly"), std::string::npos);
  for (int port : ports_) {
    Reply use = call(port, "GET", "target.test", "/account",
                     {"Cookie: TPERMIT=" + permit, "X-Device-Id: phone-1", "X-User-Id: mallory"});
    EXPECT_EQ(use.status, 200);
    EXPECT_NE(use.body.find("X-User-Id: alice"), std::string::npos) << use.body;
    EXPECT_EQ(use.body.find("mallory"), std::string::npos) << use.body;
  }
  // Without a permit the target's backend never sees a client-sent identity.
  Reply bare = call(ports_[0], "GET", "target.test", "/account", {"X-User-Id: mallory"});
  EXPECT_EQ(bare.status, 200);
  EXPECT_EQ(bare.body.find("mallory"), std::string::npos) << bare.body;
}

// The origin app says nothing about the user: the login request's token does (claim:sub), as
// checked by the jwt plugin listed before the migration plugin.
TEST_F(MigrationTest, TheUserCanComeFromAJwtClaimOfTheLogin) {
  user_header_ = "claim:sub";
  ASSERT_EQ(run({TESSERA_BINARY, "token", "keygen", "--type", "ec", "--kid", "a1", "--out",
                 dir_.file("auth.jwk"), "--public", dir_.file("auth.jwks.json")})
                .exit_code,
            0);
  startNode();
  startNode();
  CommandResult issued =
      run({TESSERA_BINARY, "token", "issue", "--issuer", "https://auth.test", "--audience", "shop",
           "--sign-key", dir_.file("auth.jwk"), "--claims", R"({"sub":"carol"})", "--ttl", "300s"});
  ASSERT_EQ(issued.exit_code, 0) << issued.output;
  std::string token = issued.output.substr(0, issued.output.find_first_of("\r\n"));
  // A login without a token names nobody: migration never recorded that session.
  call(ports_[0], "GET", "origin.test", "/login?sid=s-anon", {"X-Device-Id: phone-3"});
  EXPECT_EQ(askPass(0, "s-anon", "phone-3", "nonce-anon").status, 403);

  Reply login = call(ports_[0], "GET", "origin.test", "/login?sid=s-carol",
                     {"X-Device-Id: phone-3", "Authorization: Bearer " + token});
  ASSERT_EQ(login.status, 200);
  Reply r = askPass(0, "s-carol", "phone-3", "nonce-carol");
  ASSERT_EQ(r.status, 200) << r.body;
  std::string pass = json::parse(r.body, nullptr, false).value("pass", "");
  Reply redeemed = redeem(ports_[1], pass, "phone-3");
  ASSERT_EQ(redeemed.status, 200) << redeemed.body;
  Reply use = call(ports_[1], "GET", "target.test", "/account",
                   {"Cookie: TPERMIT=" + permitOf(redeemed), "X-Device-Id: phone-3"});
  EXPECT_EQ(use.status, 200);
  EXPECT_NE(use.body.find("X-User-Id: carol"), std::string::npos) << use.body;
}

TEST_F(MigrationTest, AReplayIsRefusedAndRevokesTheSessionAndItsPermits) {
  startNode();
  startNode();
  std::string pass = passFor("s-bob", "bob", "phone-2");
  Reply first = redeem(ports_[1], pass, "phone-2");
  ASSERT_EQ(first.status, 200) << first.body;
  std::string permit = permitOf(first);
  // The leaked pass, replayed from another address.
  Reply replay = redeem(ports_[0], pass, "laptop-9", "127.0.0.2");
  EXPECT_EQ(replay.status, 409) << replay.body;
  Reply revoked = call(ports_[1], "GET", "origin.test", "/account",
                       {"Cookie: SESSIONID=s-bob", "X-Device-Id: phone-2"});
  EXPECT_EQ(revoked.status, 401);
  // The browser is told to drop the cookie, which can never work again, so that it can reach the
  // login page.
  EXPECT_EQ(revoked.header("Set-Cookie"),
            "SESSIONID=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(call(ports_[0], "GET", "target.test", "/account",
                 {"Cookie: TPERMIT=" + permit, "X-Device-Id: phone-2"})
                .status,
            401);
  std::string log = audit(0);
  EXPECT_NE(log.find("migration_replay"), std::string::npos) << log;
  EXPECT_NE(log.find("phone-2"), std::string::npos) << log;
  EXPECT_NE(log.find("laptop-9"), std::string::npos) << log;
  EXPECT_GE(
      nodes_[0]->metric("tessera_plugin_events_total{plugin=\"mig_target\",event=\"replay\"}"), 1);
}

// The cookie is dropped where the browser filed it: a login under /shop whose Set-Cookie has no
// Path files it under /shop, with the Domain it named. A pass request with it is refused the same.
TEST_F(MigrationTest, ARevokedCookieIsClearedUnderThePathAndDomainItWasSetWith) {
  startNode();
  ASSERT_EQ(
      call(ports_[0], "GET", "origin.test",
           "/shop/login?sid=s-dan&user=dan&path=none&domain=origin.test", {"X-Device-Id: phone-4"})
          .status,
      200);
  Reply r = askPass(0, "s-dan", "phone-4", "nonce-dan-1");
  ASSERT_EQ(r.status, 200) << r.body;
  std::string pass = json::parse(r.body, nullptr, false).value("pass", "");
  ASSERT_EQ(redeem(ports_[0], pass, "phone-4").status, 200);
  ASSERT_EQ(redeem(ports_[0], pass, "laptop-1", "127.0.0.2").status, 409);
  const std::string cleared =
      "SESSIONID=; Path=/shop; Domain=origin.test; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 "
      "GMT";
  Reply page = call(ports_[0], "GET", "origin.test", "/shop/cart",
                    {"Cookie: SESSIONID=s-dan", "X-Device-Id: phone-4"});
  EXPECT_EQ(page.status, 401);
  EXPECT_EQ(page.header("Set-Cookie"), cleared);
  Reply again = askPass(0, "s-dan", "phone-4", "nonce-dan-2");
  EXPECT_EQ(again.status, 401);
  EXPECT_EQ(again.header("Set-Cookie"), cleared);
}

TEST_F(MigrationTest, ARedeemFromAnotherDeviceIsForbidden) {
  startNode();
  std::string pass = passFor("s-carol", "carol", "phone-3");
  EXPECT_EQ(redeem(ports_[0], pass, "tablet-1").status, 403);
  EXPECT_NE(audit(0).find("migration_device_mismatch"), std::string::npos);
}

TEST_F(MigrationTest, ExactlyOneOfTwentyParallelRedeemsOverThreeNodesWins) {
  for (int i = 0; i < 3; ++i) startNode();
  std::string pass = passFor("s-dave", "dave", "phone-4");
  std::vector<int> statuses(20);
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] { statuses[i] = redeem(ports_[i % 3], pass, "phone-4").status; });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), 200), 1);
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), 409), 19);
}

TEST_F(MigrationTest, PassRequestsAreChecked) {
  startNode();
  login(0, "s-erin", "erin", "phone-5");
  // Malformed bodies.
  EXPECT_EQ(call(ports_[0], "POST", "origin.test", "/_tessera/migration/pass",
                 {"Cookie: SESSIONID=s-erin", "X-Device-Id: phone-5"}, "{not json")
                .status,
            400);
  EXPECT_EQ(call(ports_[0], "POST", "origin.test", "/_tessera/migration/pass",
                 {"Cookie: SESSIONID=s-erin", "X-Device-Id: phone-5"}, "")
                .status,
            400);
  EXPECT_EQ(call(ports_[0], "GET", "origin.test", "/_tessera/migration/pass",
                 {"Cookie: SESSIONID=s-erin"})
                .status,
            405);
  // ts outside the window, either side.
  EXPECT_EQ(askPass(0, "s-erin", "phone-5", "nonce-old-1", nowMs() - 31000).status, 401);
  EXPECT_EQ(askPass(0, "s-erin", "phone-5", "nonce-new-1", nowMs() + 31000).status, 401);
  // No session cookie; a cookie tessera never saw logged in; another device.
  EXPECT_EQ(call(ports_[0], "POST", "origin.test", "/_tessera/migration/pass",
                 {"X-Device-Id: phone-5"}, passRequest(nowMs(), "nonce-none"))
                .status,
            401);
  EXPECT_EQ(askPass(0, "s-never", "phone-5", "nonce-never").status, 403);
  EXPECT_EQ(askPass(0, "s-erin", "laptop-5", "nonce-other").status, 403);
  // A nonce is good once.
  EXPECT_EQ(askPass(0, "s-erin", "phone-5", "nonce-once-1").status, 200);
  EXPECT_EQ(askPass(0, "s-erin", "phone-5", "nonce-once-1").status, 409);
  // A malformed pass at the target.
  EXPECT_EQ(redeem(ports_[0], "not.a.pass", "phone-5").status, 400);
  EXPECT_EQ(call(ports_[0], "POST", "target.test", "/_tessera/migration/redeem",
                 {"X-Device-Id: phone-5"}, "[]")
                .status,
            400);
}

TEST_F(MigrationTest, ASecondPassForALiveSessionRevokesIt) {
  startNode();
  login(0, "s-frank", "frank", "phone-6");
  EXPECT_EQ(askPass(0, "s-frank", "phone-6", "nonce-frank-1").status, 200);
  EXPECT_EQ(askPass(0, "s-frank", "phone-6", "nonce-frank-2").status, 409);
  EXPECT_EQ(call(ports_[0], "GET", "origin.test", "/account",
                 {"Cookie: SESSIONID=s-frank", "X-Device-Id: phone-6"})
                .status,
            401);
}

TEST_F(MigrationTest, APassRequestWithChunkedBodyAndExpectContinue) {
  startNode();
  login(0, "s-gina", "gina", "phone-7");
  std::string url = "http://127.0.0.1:" + std::to_string(ports_[0]) + "/_tessera/migration/pass";
  CommandResult r =
      run({"curl", "-s", "-H", "Host: origin.test", "-H", "Cookie: SESSIONID=s-gina", "-H",
           "X-Device-Id: phone-7", "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
           "--data-binary", passRequest(nowMs(), "nonce-gina-1"), "-w", "\n%{http_code}", url});
  EXPECT_NE(r.output.find("\"pass\""), std::string::npos) << r.output;
  EXPECT_EQ(r.output.substr(r.output.size() - 3), "200");
}

TEST_F(MigrationTest, LogoutEndsThePermits) {
  startNode();
  std::string pass = passFor("s-hank", "hank", "phone-8");
  Reply r = redeem(ports_[0], pass, "phone-8");
  ASSERT_EQ(r.status, 200);
  std::string permit = permitOf(r);
  EXPECT_EQ(call(ports_[0], "GET", "origin.test", "/logout",
                 {"Cookie: SESSIONID=s-hank", "X-Device-Id: phone-8"})
                .status,
            200);
  EXPECT_EQ(call(ports_[0], "GET", "target.test", "/account",
                 {"Cookie: TPERMIT=" + permit, "X-Device-Id: phone-8"})
                .status,
            401);
}

// A target in another cluster: it has its own store and verifies over HTTPS with mutual TLS.
TEST_F(MigrationTest, ARemoteTargetVerifiesOverMutualTls) {
  // A test CA, the origin's server certificate (for 127.0.0.1) and the target's client one.
  auto openssl = [&](std::vector<std::string> argv) {
    argv.insert(argv.begin(), "openssl");
    CommandResult r = run(argv);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  };
  openssl({"req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-keyout", dir_.file("ca.key"), "-out", dir_.file("ca.crt"), "-subj",
           "/CN=tessera test CA", "-days", "2"});
  dir_.write("server.ext", "subjectAltName=IP:127.0.0.1\n");
  for (const std::string name : {"server", "client"}) {
    openssl({"req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-keyout", dir_.file(name + ".key"), "-out", dir_.file(name + ".csr"), "-subj",
             "/CN=" + name});
    std::vector<std::string> sign = {"x509",
                                     "-req",
                                     "-in",
                                     dir_.file(name + ".csr"),
                                     "-CA",
                                     dir_.file("ca.crt"),
                                     "-CAkey",
                                     dir_.file("ca.key"),
                                     "-CAcreateserial",
                                     "-out",
                                     dir_.file(name + ".crt"),
                                     "-days",
                                     "2"};
    if (name == "server") sign.insert(sign.end(), {"-extfile", dir_.file("server.ext")});
    openssl(sign);
  }
  int tls_port = freePort();
  startNode(tls_port);

  int port = freePort(), admin = freePort();
  std::string yaml =
      "plugins:\n"
      "  remote_target:\n"
      "    type: migration\n"
      "    timeout: 2s\n"  // store calls: generous on a loaded test machine
      "    role: target\n"
      "    origin: https://127.0.0.1:" +
      std::to_string(tls_port) +
      "\n"
      "    origin_tls: { client_cert: " +
      dir_.file("client.crt") + ", client_key: " + dir_.file("client.key") +
      ", ca: " + dir_.file("ca.crt") +
      " }\n"
      "    permit_cookie: TPERMIT\n"
      "    identity_headers: { user: X-User-Id }\n"
      "    attributes: [ip, header:X-Device-Id]\n"
      "listeners:\n  - listen: 127.0.0.1:" +
      std::to_string(port) +
      "\n"
      "    routes: [ { path_prefix: /, upstream: app, plugins: [remote_target] } ]\n"
      "upstreams: { app: { servers: [" +
      backend_.address() +
      "] } }\n"
      "admin: { listen: 127.0.0.1:" +
      std::to_string(admin) +
      " }\n"
      "log: { level: info, access_log: off, audit_log: off }\n";
  TempDir target_dir;
  Tessera target(target_dir, yaml, port, admin);
  ASSERT_TRUE(target.started()) << target.stderrText();

  std::string pass = passFor("s-ivan", "ivan", "phone-9");
  Reply r = redeem(port, pass, "phone-9", "127.0.0.1", "shop.test");
  ASSERT_EQ(r.status, 200) << r.body << target.stderrText();
  std::string permit = permitOf(r);
  Reply use = call(port, "GET", "shop.test", "/account",
                   {"Cookie: TPERMIT=" + permit, "X-Device-Id: phone-9"});
  EXPECT_EQ(use.status, 200);
  EXPECT_NE(use.body.find("X-User-Id: ivan"), std::string::npos) << use.body;
  // The origin's refusal comes through: a replay is 409 at the remote target too.
  EXPECT_EQ(redeem(port, pass, "phone-9", "127.0.0.1", "shop.test").status, 409);
  // The replay revoked the origin session: the remote target learns it within its 5 s check.
  int status = 0;
  for (auto until = std::chrono::steady_clock::now() + 8s;
       status != 401 && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(250ms);
    status = call(port, "GET", "shop.test", "/account",
                  {"Cookie: TPERMIT=" + permit, "X-Device-Id: phone-9"})
                 .status;
  }
  EXPECT_EQ(status, 401);

  // Without a client certificate the origin refuses to verify.
  std::string url = "https://127.0.0.1:" + std::to_string(tls_port) + "/_tessera/migration/verify";
  CommandResult direct =
      run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", dir_.file("ca.crt"),
           "--data-binary", json{{"pass", pass}}.dump(), url});
  EXPECT_EQ(direct.output, "403");
}

TEST_F(MigrationTest, AnUnreachableRemoteOriginIs502) {
  int port = freePort(), admin = freePort();
  LoopbackSocket origin = refusingPort();
  // Files that load (tessera checks that at start): what fails is the connection to the origin.
  CertFiles client = makeCertificate(dir_, "origin-client", {"target.test"});
  std::string yaml =
      "plugins:\n"
      "  remote_target:\n"
      "    type: migration\n"
      "    timeout: 2s\n"  // store calls: generous on a loaded test machine
      "    role: target\n"
      "    origin: https://" +
      origin.address() +
      "\n"
      "    origin_tls: { client_cert: " +
      client.cert + ", client_key: " + client.key + ", ca: " + client.cert +
      " }\n"
      "    origin_timeout: 500ms\n"
      "    permit_cookie: TPERMIT\n"
      "    identity_headers: { user: X-User-Id }\n"
      "listeners:\n  - listen: 127.0.0.1:" +
      std::to_string(port) +
      "\n"
      "    routes: [ { path_prefix: /, upstream: app, plugins: [remote_target] } ]\n"
      "upstreams: { app: { servers: [" +
      backend_.address() +
      "] } }\n"
      "admin: { listen: 127.0.0.1:" +
      std::to_string(admin) +
      " }\n"
      "log: { level: info, access_log: off, audit_log: off }\n";
  Tessera target(dir_, yaml, port, admin);
  ASSERT_TRUE(target.started()) << target.stderrText();
  startNode();
  std::string pass = passFor("s-judy", "judy", "phone-10");
  EXPECT_EQ(redeem(port, pass, "phone-10", "127.0.0.1", "shop.test").status, 502);
}

}  // namespace
}  // namespace tessera::testing
