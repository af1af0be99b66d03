// The guard plugin end to end: tessera nodes sharing a memcached ring, each with a plain and a TLS
// listener in front of one backend. Clients: an independent RFC 9421 implementation (the npm
// package http-message-signatures, through tests/integration/guard_js/interop.mjs), curl,
// headless Chromium running the SDK (browser.mjs), and requests this test signs itself with a key
// it agrees through the real endpoint.

#include <cjose/cjose.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "plugins/encoding.h"
#include "plugins/guard/key_agreement.h"
#include "plugins/guard/signature.h"
#include "tests/integration/harness.h"

namespace tessera::testing {
namespace {

using json = nlohmann::json;

int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A key agreed with tessera as a client does it: an ephemeral P-256 key (made with cjose), the
// server's public key from POST /_tessera/keys, and K from GuardCrypto's test entry point, which
// runs ECDH from the other side (the roles of the ECDH are symmetric).
struct AgreedKey {
  std::string keyid;
  std::string key;  // K, raw
};

class GuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    crypto_ = plugins::guard::GuardCrypto::create(&error);
    ASSERT_TRUE(crypto_) << error;
    seal_ = dir_.file("seal.key");
    ASSERT_EQ(run({TESSERA_BINARY, "keygen", "seal", "--out", seal_}).exit_code, 0);
    cert_ = makeCertificate(dir_, "server", {"localhost", "127.0.0.1"});
    mc_port_ = freePort();
    std::vector<std::string> argv = {"memcached", "-l", "127.0.0.1", "-p", std::to_string(mc_port_),
                                     "-U",        "0",  "-m",        "16", "-t",
                                     "1"};
    if (geteuid() == 0) argv.insert(argv.end(), {"-u", "root"});
    memcached_ = std::make_unique<Process>(argv, dir_.file("mc.out"), dir_.file("mc.err"));
    ASSERT_TRUE(waitForPort(mc_port_));
  }

  struct Node {
    int port = 0;
    int tls_port = 0;
    int admin = 0;
    std::unique_ptr<TempDir> dir;
    std::unique_ptr<Tessera> tessera;
  };

  void startNode(const std::string& extra_plugin_yaml = "",
                 const std::string& protect = "[ { method: POST, path_prefix: /api/orders } ]",
                 const std::string& extra_yaml = "") {
    Node n;
    n.port = freePort();
    n.tls_port = freePort();
    n.admin = freePort();
    std::string routes =
        "    routes:\n"
        "      - { path_prefix: /, upstream: app, plugins: [tickets_guard] }\n";
    std::string yaml = "workers: 2\n" + extra_yaml +
                       "plugins:\n"
                       "  tickets_guard:\n"
                       "    type: guard\n"
                       "    timeout: 2s\n"  // store calls: generous on a loaded test machine
                       "    session_cookie: SESSIONID\n"
                       "    protect: " +
                       protect +
                       "\n"
                       "    window: 60s\n"
                       "    max_signed_body: 64KiB\n"
                       "    attributes: [ip, header:x-device-id]\n" +
                       extra_plugin_yaml +
                       "listeners:\n"
                       "  - name: plain\n"
                       "    listen: 127.0.0.1:" +
                       std::to_string(n.port) + "\n" + routes +
                       "  - name: tls\n"
                       "    listen: 127.0.0.1:" +
                       std::to_string(n.tls_port) +
                       "\n"
                       "    tls: { certificates: [ { cert: " +
                       cert_.cert + ", key: " + cert_.key + " } ] }\n" + routes +
                       "upstreams: { app: { servers: [" + backend_.address() +
                       "] } }\n"
                       "session_cache:\n  store: memcached\n  seal_keys: [ { id: k1, file: " +
                       seal_ +
                       " } ]\n  memcached: { servers: [127.0.0.1:" + std::to_string(mc_port_) +
                       "], io_timeout: 1s }\n"
                       "admin: { listen: 127.0.0.1:" +
                       std::to_string(n.admin) +
                       " }\n"
                       "log: { level: info, access_log: off, audit_log: " +
                       dir_.file("audit" + std::to_string(nodes_.size()) + ".log") + " }\n";
    n.dir = std::make_unique<TempDir>();
    n.tessera = std::make_unique<Tessera>(*n.dir, yaml, n.port, n.admin);
    ASSERT_TRUE(n.tessera->started()) << n.tessera->stderrText();
    nodes_.push_back(std::move(n));
  }

  AgreedKey agree(size_t node, const std::string& session) {
    cjose_err err{};
    cjose_jwk_t* jwk = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
    char* text = cjose_jwk_to_json(jwk, true, &err);
    json mine = json::parse(text);
    cjose_get_dealloc()(text);
    cjose_jwk_release(jwk);
    json request = {{"jwk", {{"kty", "EC"}, {"crv", "P-256"}, {"x", mine["x"]}, {"y", mine["y"]}}}};
    HttpReply r = httpCall(nodes_[node].port, "POST", "shop.test", "/_tessera/keys",
                           {"Cookie: SESSIONID=" + session, "Content-Type: application/json"},
                           request.dump());
    EXPECT_EQ(r.status, 200) << r.head << r.body;
    json answer = json::parse(r.body, nullptr, false);
    if (!answer.is_object() || !answer.contains("jwk")) return {};
    EXPECT_EQ(answer["cookie"], "SESSIONID");
    std::string d = mine["d"], x = mine["x"], y = mine["y"];
    auto k = crypto_->agreeWithServerKeyForTesting({d, x, y}, answer["jwk"]["x"].get<std::string>(),
                                                   answer["jwk"]["y"].get<std::string>(), session);
    EXPECT_TRUE(k);
    return {answer["keyid"], k ? k->key : ""};
  }

  // The header lines of a request signed as client.js signs it.
  std::vector<std::string> sign(const AgreedKey& k, const std::string& session,
                                const std::string& authority, const std::string& target,
                                const std::string& body, const std::string& nonce,
                                int64_t created = 0, const std::string& method = "POST") {
    std::string digest = plugins::guard::contentDigestHeader(body);
    std::string params = "(\"@method\" \"@target-uri\" \"content-digest\");created=" +
                         std::to_string(created == 0 ? nowSeconds() : created) + ";keyid=\"" +
                         k.keyid + "\";nonce=\"" + nonce + "\";alg=\"hmac-sha256\"";
    std::string base = "\"@method\": " + method + "\n\"@target-uri\": http://" + authority +
                       target + "\n\"content-digest\": " + digest +
                       "\n\"@signature-params\": " + params;
    std::string mac = plugins::guard::hmacSha256(k.key, base);
    return {"Cookie: SESSIONID=" + session, "Content-Digest: " + digest,
            "Signature-Input: sig1=" + params,
            "Signature: sig1=:" + plugins::base64Encode(mac) + ":"};
  }

  HttpReply post(size_t node, const std::vector<std::string>& headers, const std::string& body,
                 const std::string& ip = "127.0.0.1") {
    return httpCall(nodes_[node].port, "POST", "shop.test", "/api/orders", headers, body, ip);
  }

  HttpReply admin(size_t node, const std::string& method, const std::string& body) {
    return httpCall(nodes_[node].admin, method, "localhost", "/blocklist",
                    {"Content-Type: application/json"}, body);
  }

  std::string audit(size_t node) const {
    return readFile(dir_.file("audit" + std::to_string(node) + ".log"));
  }

  // Runs a script of tests/integration/guard_js with its npm packages; "" when it failed.
  std::string node(const std::string& script, std::vector<std::string> args) {
    std::vector<std::string> argv = {"env", "NODE_PATH=" TESSERA_NODE_DIR "/node_modules",
                                     "NODE_EXTRA_CA_CERTS=" + cert_.cert, "node",
                                     TESSERA_SOURCE_DIR "/tests/integration/guard_js/" + script};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << script << ": " << r.output;
    return r.exit_code == 0 ? r.output : "";
  }

  // Installs the test's node packages (and Chromium); false with a skip reason when the package
  // archive is out of reach, which is the only case these tests may skip.
  bool setUpNode(bool browser, std::string& skip) {
    std::vector<std::string> argv = {"bash",
                                     TESSERA_SOURCE_DIR "/tests/integration/guard_js/setup.sh"};
    if (browser) argv.push_back("--browser");
    argv.push_back(TESSERA_NODE_DIR);
    CommandResult r = run(argv);
    if (r.exit_code == 77) {
      skip = r.output;
      return false;
    }
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0;
  }

  TempDir dir_;
  TestBackend backend_;
  CertFiles cert_;
  std::string seal_;
  int mc_port_ = 0;
  std::unique_ptr<Process> memcached_;
  std::vector<Node> nodes_;
  std::unique_ptr<plugins::guard::GuardCrypto> crypto_;
};

TEST_F(GuardTest, TimeClientJsAndKeyAgreement) {
  startNode();
  HttpReply time = httpCall(nodes_[0].port, "GET", "shop.test", "/_tessera/time", {});
  ASSERT_EQ(time.status, 200);
  json now = json::parse(time.body, nullptr, false);
  ASSERT_TRUE(now.is_object() && now["now"].is_number_integer()) << time.body;
  EXPECT_NEAR(now["now"].get<int64_t>() / 1000.0, nowSeconds(), 5);

  HttpReply js = httpCall(nodes_[0].port, "GET", "shop.test", "/_tessera/client.js", {});
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.header("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(js.body, readFile(TESSERA_SOURCE_DIR "/plugins/guard/client.js"));

  HttpReply bare = httpCall(nodes_[0].port, "POST", "shop.test", "/_tessera/keys", {}, "{}");
  EXPECT_EQ(bare.status, 401);
  EXPECT_EQ(bare.header("X-Tessera-Guard"), "no_session");
  for (const char* body :
       {"{}", "not json", R"({"jwk":{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}})"}) {
    HttpReply r = httpCall(nodes_[0].port, "POST", "shop.test", "/_tessera/keys",
                           {"Cookie: SESSIONID=s1"}, body);
    EXPECT_EQ(r.status, 400) << body;
  }
  AgreedKey k = agree(0, "s1");
  EXPECT_EQ(k.keyid.size(), 23u);  // the slot digit and 128 random bits
  EXPECT_EQ(k.key.size(), 32u);
  // Unprotected paths pass untouched.
  EXPECT_EQ(httpCall(nodes_[0].port, "POST", "shop.test", "/api/cart", {}, "x").status, 200);
}

TEST_F(GuardTest, SignedRequestsAreCheckedAndEachRefusalSaysWhy) {
  startNode();
  AgreedKey k = agree(0, "s1");
  std::string body = R"({"item":"ticket-42","qty":2})";
  HttpReply ok = post(0, sign(k, "s1", "shop.test", "/api/orders", body, "n-1"), body);
  ASSERT_EQ(ok.status, 200) << ok.head << ok.body;
  EXPECT_NE(ok.body.find("body_bytes: " + std::to_string(body.size())), std::string::npos);

  struct Case {
    std::string what;
    std::vector<std::string> headers;
    std::string body;
    std::string reason;
  };
  std::vector<std::string> replay = sign(k, "s1", "shop.test", "/api/orders", body, "n-1");
  std::vector<std::string> changed = sign(k, "s1", "shop.test", "/api/orders", body, "n-2");
  std::vector<std::string> other_session = sign(k, "s1", "shop.test", "/api/orders", body, "n-3");
  other_session[0] = "Cookie: SESSIONID=s2";
  std::vector<std::string> other_target =
      sign(k, "s1", "shop.test", "/api/orders?x=1", body, "n-4");
  std::vector<Case> cases = {
      {"replay", replay, body, "replay"},
      {"body changed after signing", changed, body + " ", "digest_mismatch"},
      {"another session's cookie", other_session, body, "unknown_key"},
      {"signed for another target", other_target, body, "bad_signature"},
      {"created past the window",
       sign(k, "s1", "shop.test", "/api/orders", body, "n-5", nowSeconds() - 120), body, "stale"},
      {"created ahead of the window",
       sign(k, "s1", "shop.test", "/api/orders", body, "n-6", nowSeconds() + 120), body, "stale"},
      {"no signature", {"Cookie: SESSIONID=s1"}, body, "missing_signature"},
      {"no session", {"Content-Digest: x"}, body, "no_session"},
      {"garbage",
       {"Cookie: SESSIONID=s1", "Signature-Input: sig1=((", "Signature: sig1=:AA==:"},
       body,
       "malformed_signature_input"},
  };
  // A signature that leaves out content-digest, which require_components names.
  std::vector<std::string> partial = sign(k, "s1", "shop.test", "/api/orders", body, "n-7");
  partial[2] = "Signature-Input: sig1=(\"@method\" \"@target-uri\");created=" +
               std::to_string(nowSeconds()) + ";keyid=\"" + k.keyid +
               "\";nonce=\"n-7\";alg=\"hmac-sha256\"";
  cases.push_back({"a required component left out", partial, body, "component_not_covered"});
  for (const Case& c : cases) {
    HttpReply r = post(0, c.headers, c.body);
    EXPECT_EQ(r.status, 401) << c.what << "\n" << r.head;
    EXPECT_EQ(r.header("X-Tessera-Guard"), c.reason) << c.what;
    EXPECT_NE(r.header("WWW-Authenticate").find("error=\"" + c.reason + "\""), std::string::npos)
        << c.what;
  }
  EXPECT_EQ(backend_.requests(), 1);
  std::string log = audit(0);
  EXPECT_NE(log.find("guard_replay"), std::string::npos) << log;
  EXPECT_NE(log.find("guard_digest_mismatch"), std::string::npos);
  EXPECT_GE(nodes_[0].tessera->metric(
                "tessera_plugin_events_total{plugin=\"tickets_guard\",event=\"replay\"}"),
            1);
  // Over max_signed_body: 413 before anything goes upstream.
  std::string big(65 * 1024, 'x');
  EXPECT_EQ(post(0, sign(k, "s1", "shop.test", "/api/orders", big, "n-8"), big).status, 413);
  EXPECT_EQ(backend_.requests(), 1);
}

TEST_F(GuardTest, TwoNodesShareNoncesAndTheBlocklist) {
  startNode();
  startNode();
  AgreedKey k = agree(0, "s1");
  std::string body = "{}";
  std::vector<std::string> headers = sign(k, "s1", "shop.test", "/api/orders", body, "n-1");
  EXPECT_EQ(post(0, headers, body).status, 200);  // agreed on node 0, used on node 0
  HttpReply replay = post(1, headers, body);
  EXPECT_EQ(replay.status, 401);
  EXPECT_EQ(replay.header("X-Tessera-Guard"), "replay");
  EXPECT_EQ(post(1, sign(k, "s1", "shop.test", "/api/orders", body, "n-2"), body).status, 200);

  // A block made through node 0's admin API holds on node 1 within a second.
  EXPECT_EQ(httpCall(nodes_[1].port, "GET", "shop.test", "/", {}, "", "127.0.0.7").status, 200);
  HttpReply added = admin(0, "POST", R"({"kind":"ip","value":"127.0.0.7","ttl":"10m"})");
  ASSERT_EQ(added.status, 201) << added.body;
  auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (std::chrono::steady_clock::now() - start < 2s) {
    status = httpCall(nodes_[1].port, "GET", "shop.test", "/", {}, "", "127.0.0.7").status;
    if (status == 403) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(status, 403);
  // Workers reread the list at least every 800 ms; the slack is for a loaded test machine.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  // Soon every worker of node 1 holds it, for the endpoints too: a blocked client gets no key.
  // Four requests in a row give `status`: each of the node's two workers has seen the change.
  auto everyWorkerGives = [&](size_t node, const std::string& ip, int status) {
    return [&, node, ip, status] {
      for (int i = 0; i < 4; ++i) {
        if (httpCall(nodes_[node].port, "GET", "shop.test", "/", {}, "", ip).status != status) {
          return false;
        }
      }
      return true;
    };
  };
  EXPECT_TRUE(eventually(everyWorkerGives(1, "127.0.0.7", 403), 3s));
  // Four in a row may all have gone to one worker: past the reread bound, the other one has it.
  std::this_thread::sleep_until(start + 1s);
  HttpReply keys;
  EXPECT_TRUE(eventually([&] {
    keys = httpCall(nodes_[1].port, "POST", "shop.test", "/_tessera/keys", {"Cookie: SESSIONID=s9"},
                    "{}", "127.0.0.7");
    return keys.status == 403;
  }));
  EXPECT_EQ(keys.header("X-Tessera-Guard"), "blocked");
  EXPECT_EQ(httpCall(nodes_[1].port, "GET", "shop.test", "/", {}, "", "127.0.0.8").status, 200);

  json listed = json::parse(admin(1, "GET", "").body, nullptr, false);
  ASSERT_TRUE(listed.is_object());
  ASSERT_EQ(listed["entries"].size(), 1u);
  EXPECT_EQ(listed["entries"][0]["value"], "127.0.0.7");
  EXPECT_GT(listed["entries"][0]["expires"].get<int64_t>(), nowSeconds() + 500);

  // A device and a network; bad input is a 400 that says why.
  EXPECT_EQ(admin(1, "POST", R"({"kind":"device","value":"nope"})").status, 201);
  EXPECT_EQ(admin(0, "POST", R"({"kind":"cidr","value":"127.0.1.0/24"})").status, 201);
  EXPECT_EQ(admin(0, "POST", R"({"kind":"cidr","value":"127.0.1.0/33"})").status, 400);
  EXPECT_EQ(admin(0, "POST", R"({"kind":"planet","value":"mars"})").status, 400);
  EXPECT_EQ(admin(0, "POST", "not json").status, 400);
  EXPECT_EQ(admin(0, "POST", R"({"kind":"ip","value":"127.0.0.9","ttl":"soon"})").status, 400);

  HttpReply removed = admin(1, "DELETE", R"({"kind":"ip","value":"127.0.0.7"})");
  EXPECT_EQ(removed.status, 200) << removed.body;
  EXPECT_EQ(admin(1, "DELETE", R"({"kind":"ip","value":"127.0.0.7"})").status, 404);
  EXPECT_TRUE(eventually(everyWorkerGives(0, "127.0.0.7", 200), 3s));
  EXPECT_TRUE(eventually(everyWorkerGives(0, "127.0.1.5", 403), 3s));
  EXPECT_NE(audit(1).find("guard_blocked"), std::string::npos);
}

TEST_F(GuardTest, YamlBlocklistAndRateLimit) {
  startNode(
      "    blocklist: { ips: [127.0.0.9], users: [mallory] }\n"
      "    user_header: X-User-Id\n"
      "    rate_limit: { per: session, requests: 3, interval: 60s }\n");
  EXPECT_EQ(httpCall(nodes_[0].port, "GET", "shop.test", "/", {}, "", "127.0.0.9").status, 403);
  EXPECT_EQ(httpCall(nodes_[0].port, "GET", "shop.test", "/", {"X-User-Id: mallory"}).status, 403);
  EXPECT_EQ(httpCall(nodes_[0].port, "GET", "shop.test", "/", {"X-User-Id: alice"}).status, 200);

  // The limit counts in fixed windows of the interval: start early in a minute, so that the four
  // requests below fall in one window.
  if (nowSeconds() % 60 >= 45) {
    std::this_thread::sleep_for(std::chrono::seconds(61 - nowSeconds() % 60));
  }
  AgreedKey k = agree(0, "s1");
  std::string body = "{}";
  for (int i = 0; i < 3; ++i) {
    HttpReply r =
        post(0, sign(k, "s1", "shop.test", "/api/orders", body, "n-" + std::to_string(i)), body);
    EXPECT_EQ(r.status, 200) << i << r.head;
  }
  HttpReply limited = post(0, sign(k, "s1", "shop.test", "/api/orders", body, "n-3"), body);
  EXPECT_EQ(limited.status, 429);
  int retry = std::atoi(limited.header("Retry-After").c_str());
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 60);
  // Per session: another session of the same client is not held back.
  AgreedKey k2 = agree(0, "s2");
  EXPECT_EQ(post(0, sign(k2, "s2", "shop.test", "/api/orders", body, "m-1"), body).status, 200);
}

TEST_F(GuardTest, SealedRepliesOpenOnlyUnderTheSessionKey) {
  startNode("    seal_responses: true\n");
  AgreedKey k = agree(0, "s1");
  std::string body = "{}";
  std::vector<std::string> headers = sign(k, "s1", "shop.test", "/api/orders", body, "n-1");
  headers.push_back("Accept-Encoding: gzip");
  HttpReply r = post(0, headers, body);
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.header("Content-Type"), "application/tessera-sealed");
  EXPECT_EQ(std::to_string(r.body.size()), r.header("Content-Length"));
  EXPECT_EQ(r.body.find("POST /api/orders"), std::string::npos);  // nothing readable
  auto opened = crypto_->openReply(k.key, k.keyid, r.body);
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->first, "text/plain; charset=utf-8");
  EXPECT_NE(opened->second.find("POST /api/orders"), std::string::npos) << opened->second;
  EXPECT_EQ(opened->second.find("accept-encoding"), std::string::npos);  // not asked upstream
  AgreedKey other = agree(0, "s2");
  EXPECT_FALSE(crypto_->openReply(other.key, k.keyid, r.body));
  // Unprotected replies stay as they are.
  HttpReply plain = httpCall(nodes_[0].port, "GET", "shop.test", "/", {"Cookie: SESSIONID=s1"});
  EXPECT_EQ(plain.header("Content-Type"), "text/plain; charset=utf-8");
}

// Sealing needs the whole body first: a chunked reply goes out with a Content-Length, and one over
// limits.max_body_bytes is a 502 rather than a reply sent unsealed.
TEST_F(GuardTest, ASealedReplyIsFramedAnewAndAnOversizedOneIs502) {
  startNode("    seal_responses: true\n", "[ { path_prefix: /download }, { path_prefix: /close } ]",
            "limits: { max_body_bytes: 256KiB }\n");
  AgreedKey k = agree(0, "s1");
  auto get = [&](const std::string& target, const std::string& nonce) {
    return httpCall(nodes_[0].port, "GET", "shop.test", target,
                    sign(k, "s1", "shop.test", target, "", nonce, 0, "GET"));
  };
  HttpReply r = get("/download?bytes=200000", "n-1");
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.header("Transfer-Encoding"), "");
  EXPECT_EQ(r.header("Content-Length"), std::to_string(r.body.size()));
  auto opened = crypto_->openReply(k.key, k.keyid, r.body);
  ASSERT_TRUE(opened);
  ASSERT_EQ(opened->second.size(), 200000u);
  for (size_t i = 0; i < opened->second.size(); i += 4999) {
    ASSERT_EQ(static_cast<unsigned char>(opened->second[i]), patternByte(i)) << i;
  }
  EXPECT_EQ(get("/download?bytes=300000", "n-2").status, 502);
  // A body that ends when the backend closes the connection.
  HttpReply closed = get("/close", "n-3");
  ASSERT_EQ(closed.status, 200) << closed.head;
  auto until_close = crypto_->openReply(k.key, k.keyid, closed.body);
  ASSERT_TRUE(until_close);
  EXPECT_EQ(until_close->second, "until-close body");
}

TEST_F(GuardTest, AnIndependentRfc9421ImplementationIsAccepted) {
  std::string skip;
  if (!setUpNode(false, skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  startNode();
  std::string base = "https://localhost:" + std::to_string(nodes_[0].tls_port);
  std::string body = R"({"item":"ticket-7"})";
  auto signedBy = [&](const std::string& offset) {
    std::string out =
        node("interop.mjs", {"--base", base, "--cookie", "SESSIONID=s-node", "--path",
                             "/api/orders", "--body", body, "--created-offset", offset});
    return json::parse(out, nullptr, false);
  };
  auto send = [&](const json& s, const std::string& payload) {
    CommandResult r = run({"curl",
                           "-s",
                           "-o",
                           "/dev/null",
                           "-w",
                           "%{http_code}",
                           "--cacert",
                           cert_.cert,
                           "-X",
                           "POST",
                           "-H",
                           "Cookie: SESSIONID=s-node",
                           "-H",
                           "Content-Type: application/json",
                           "-H",
                           "Content-Digest: " + s["headers"]["content-digest"].get<std::string>(),
                           "-H",
                           "Signature-Input: " + s["headers"]["signature-input"].get<std::string>(),
                           "-H",
                           "Signature: " + s["headers"]["signature"].get<std::string>(),
                           "--data-binary",
                           payload,
                           s["url"].get<std::string>()});
    return r.output;
  };
  json s = signedBy("0");
  ASSERT_TRUE(s.is_object() && s.contains("headers"));
  EXPECT_EQ(send(s, body), "200");
  EXPECT_EQ(send(s, body), "401");  // the replay
  json fresh = signedBy("0");
  EXPECT_EQ(send(fresh, body + "\n"), "401");      // the body changed
  EXPECT_EQ(send(signedBy("-120"), body), "401");  // created beyond the 60 s window
  EXPECT_EQ(backend_.requests(), 1);
}

TEST_F(GuardTest, TheSdkSignsFromHeadlessChromium) {
  std::string skip;
  if (!setUpNode(true, skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  startNode("    seal_responses: true\n");
  std::string url =
      "https://localhost:" + std::to_string(nodes_[0].tls_port) + "/guard/page.html?login=1";
  std::string out = node("browser.mjs", {"--url", url});
  json result = json::parse(out, nullptr, false);
  ASSERT_TRUE(result.is_object()) << out;
  ASSERT_FALSE(result.contains("error")) << out;
  EXPECT_EQ(result["status"], 200) << out;
  EXPECT_NE(result["body"].get<std::string>().find("POST /api/orders"), std::string::npos) << out;
  EXPECT_EQ(result["keyid"].get<std::string>().size(), 23u);
  // The reply came sealed, and the SDK gave the page the backend's own.
  EXPECT_EQ(result["contentType"], "text/plain; charset=utf-8") << out;
  EXPECT_GE(nodes_[0].tessera->metric(
                "tessera_plugin_events_total{plugin=\"tickets_guard\",event=\"sealed\"}"),
            1);
}

// client.js against an independent implementation of each of its steps (Node's crypto and
// http-message-signatures), without a server.
TEST_F(GuardTest, TheSdkMatchesAnIndependentImplementation) {
  std::string skip;
  if (!setUpNode(false, skip)) {
    if (!skip.empty()) GTEST_SKIP() << skip;
    return;
  }
  json result = json::parse(node("selftest.mjs", {}), nullptr, false);
  EXPECT_TRUE(result.is_object() && result.value("ok", false)) << result;
}

}  // namespace
}  // namespace tessera::testing
