// The migration plugin's pass endpoint, driven through the real PluginChain on a real MemoryStore
// and event loop, with keys made at test time: a login records the session, then pass requests
// are checked for their timestamp window and first-use nonce.

#include <cjose/cjose.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cache/memory_store.h"
#include "conf/config.h"
#include "proxy/outbound_calls.h"
#include "proxy/plugin_chain.h"
#include "proxy/snapshot.h"

namespace tessera::proxy {
namespace {

using State = PluginChain::State;

class Owner : public PluginChain::Owner {
 public:
  void chainResumed() override { ++resumed; }
  void responseResumed() override { ++response_resumed; }
  void chainReplied(LocalReply reply) override { replies.push_back(std::move(reply)); }
  int resumed = 0;
  int response_resumed = 0;
  std::vector<LocalReply> replies;
};

std::string writeEcKey(const std::filesystem::path& path) {
  cjose_err err{};
  cjose_jwk_t* jwk = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
  char* text = cjose_jwk_to_json(jwk, true, &err);
  std::ofstream(path) << text;
  cjose_get_dealloc()(text);
  cjose_jwk_release(jwk);
  return path.string();
}

class MigrationChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tessera-mig-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    std::string sign = writeEcKey(dir_ / "sign.jwk");
    std::string enc = writeEcKey(dir_ / "enc.jwk");
    snapshot_ = Snapshot::build(conf::loadString(R"(
plugins:
  mig:
    type: migration
    role: origin
    session_cookie: SESSIONID
    user_header: X-User-Id
    signing_key: )" + sign + R"(
    encryption_key: )" + enc + R"(
    request_window: 30s
listeners:
  - name: plain
    listen: 127.0.0.1:1
    routes: [ { host: "*", path_prefix: /, upstream: app, plugins: [mig] } ]
upstreams:
  app: { servers: [127.0.0.1:2] }
admin: { listen: "off" }
log: { access_log: "off", audit_log: "off" }
)"));
    base_ = event_base_new();
    backend_ = std::make_unique<cache::MemoryStoreBackend>(1000);
    store_ = backend_->connect(base_);
    outbound_ = std::make_unique<OutboundCalls>(base_);
    auto* in = reinterpret_cast<sockaddr_in*>(&peer_);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    route_ = &snapshot_->listeners()[0].routes[0];
  }
  void TearDown() override {
    chains_.clear();
    outbound_.reset();
    store_.reset();
    event_base_free(base_);
    std::filesystem::remove_all(dir_);
  }

  PluginChain& newChain() {
    PluginChain::Client client;
    client.peer = &peer_;
    client.ip = "127.0.0.1";
    client.listener = "plain";
    chains_.push_back(std::make_unique<PluginChain>(owner_, *route_, *snapshot_, *store_, metrics_,
                                                    *outbound_, client));
    return *chains_.back();
  }

  void stepUntil(const std::function<bool()>& cond) {
    for (int i = 0; i < 1000 && !cond(); ++i) event_base_loop(base_, EVLOOP_ONCE);
    ASSERT_TRUE(cond());
  }

  void login() {
    MessageHead request;
    request.method = "GET";
    request.url = "/login";
    request.headers.add("Host", "origin.test");
    PluginChain& chain = newChain();
    ASSERT_EQ(chain.runRequest(request, "origin.test"), State::kDone);
    MessageHead response;
    response.status = 200;
    response.headers.add("Set-Cookie", "SESSIONID=s1; Max-Age=3600; Path=/");
    response.headers.add("X-User-Id", "alice");
    int before = owner_.response_resumed;
    ASSERT_EQ(chain.runResponse(response), State::kWaiting);  // until the record is written
    stepUntil([&] { return owner_.response_resumed > before; });
    EXPECT_EQ(response.headers.find("x-user-id"), nullptr);  // never reaches the client
    chain.finish();
  }

  // One pass request; returns the status of the plugin's reply.
  int askPass(const nlohmann::json& ts, const std::string& nonce,
              const std::string& cookie = "SESSIONID=s1") {
    std::string body = nlohmann::json{{"ts", ts}, {"nonce", nonce}}.dump();
    MessageHead request;
    request.method = "POST";
    request.url = "/_tessera/migration/pass";
    request.headers.add("Host", "origin.test");
    request.headers.add("Cookie", cookie);
    request.headers.add("Content-Length", std::to_string(body.size()));
    request.content_length = body.size();  // as the parser frames it
    PluginChain& chain = newChain();
    size_t before = owner_.replies.size();
    EXPECT_EQ(chain.runRequest(request, "origin.test"), State::kNeedBody);
    State s = chain.addBody(body, true);
    if (s == State::kReplied) return chain.takeReply().status;
    EXPECT_EQ(s, State::kWaiting);
    stepUntil([&] { return owner_.replies.size() > before; });
    chain.finish();
    return owner_.replies.back().status;
  }

  static int64_t nowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  std::filesystem::path dir_;
  std::shared_ptr<const Snapshot> snapshot_;
  const RouteTarget* route_ = nullptr;
  event_base* base_ = nullptr;
  std::unique_ptr<cache::MemoryStoreBackend> backend_;
  std::unique_ptr<cache::Store> store_;
  std::unique_ptr<OutboundCalls> outbound_;
  WorkerMetrics metrics_;
  sockaddr_storage peer_{};
  Owner owner_;
  std::vector<std::unique_ptr<PluginChain>> chains_;
};

TEST_F(MigrationChainTest, APassIsIssuedOnceForANonce) {
  login();
  EXPECT_EQ(askPass(nowMs(), "nonce-aaaa-1"), 200);
  nlohmann::json reply = nlohmann::json::parse(owner_.replies.back().body);
  EXPECT_EQ(reply.value("expires_in", 0), 60);
  EXPECT_FALSE(reply.value("pass", "").empty());
}

// The session cookie is keyed in its percent-decoded form, as backends that decode it read it:
// "%731" is the session "s1", so a revocation cannot be stepped around by spelling.
TEST_F(MigrationChainTest, APercentEncodedSessionCookieIsTheSameSession) {
  login();
  // Found under the session the login recorded (an unknown session would be 401).
  EXPECT_EQ(askPass(nowMs(), "nonce-ffff-1", "SESSIONID=%731"), 200);
}

TEST_F(MigrationChainTest, ANonceUsedTwiceIsAReplay) {
  login();
  EXPECT_EQ(askPass(nowMs(), "nonce-bbbb-1"), 200);
  EXPECT_EQ(askPass(nowMs(), "nonce-bbbb-1"), 409);
}

TEST_F(MigrationChainTest, TheTimestampMustBeInsideTheWindow) {
  login();
  // The window is 30 s; the margins keep a stalled test machine from crossing its edges.
  EXPECT_EQ(askPass(nowMs() - 45'000, "nonce-cccc-1"), 401);
  EXPECT_EQ(askPass(nowMs() + 45'000, "nonce-cccc-2"), 401);
  EXPECT_EQ(askPass(nowMs() - 15'000, "nonce-cccc-3"), 200);
  // Timestamps at the ends of the integer range are outside the window too: the distance to now
  // must not overflow into "inside".
  EXPECT_EQ(askPass(std::numeric_limits<int64_t>::min() + nowMs(), "nonce-cccc-4"), 401);
  EXPECT_EQ(askPass(std::numeric_limits<int64_t>::max(), "nonce-cccc-5"), 401);
  EXPECT_EQ(askPass(std::numeric_limits<uint64_t>::max(), "nonce-cccc-6"), 401);
}

TEST_F(MigrationChainTest, AShortNonceOrAMissingTimestampIsMalformed) {
  login();
  EXPECT_EQ(askPass(nowMs(), "short"), 400);
  std::string body = R"({"nonce":"nonce-dddd-1"})";
  MessageHead request;
  request.method = "POST";
  request.url = "/_tessera/migration/pass";
  request.headers.add("Cookie", "SESSIONID=s1");
  request.headers.add("Content-Length", std::to_string(body.size()));
  request.content_length = body.size();
  PluginChain& chain = newChain();
  ASSERT_EQ(chain.runRequest(request, "origin.test"), State::kNeedBody);
  ASSERT_EQ(chain.addBody(body, true), State::kReplied);
  EXPECT_EQ(chain.takeReply().status, 400);
}

// The body as the proxy framed it decides: "Content-Length: 00" is no body, so no pass request.
TEST_F(MigrationChainTest, AZeroLengthWrittenWithLeadingZerosIsNoBody) {
  login();
  MessageHead request;
  request.method = "POST";
  request.url = "/_tessera/migration/pass";
  request.headers.add("Cookie", "SESSIONID=s1");
  request.headers.add("Content-Length", "00");
  request.content_length = 0;
  PluginChain& chain = newChain();
  ASSERT_EQ(chain.runRequest(request, "origin.test"), State::kReplied);
  EXPECT_EQ(chain.takeReply().status, 400);
}

// The migration plugin shares the session's user; a guard plugin after it blocks by it.
TEST_F(MigrationChainTest, AGuardAfterTheOriginBlocksTheSessionsUser) {
  snapshot_ = Snapshot::build(conf::loadString(R"(
plugins:
  mig:
    type: migration
    role: origin
    session_cookie: SESSIONID
    user_header: X-User-Id
    signing_key: )" + (dir_ / "sign.jwk").string() +
                                               R"(
    encryption_key: )" + (dir_ / "enc.jwk").string() +
                                               R"(
  shop_guard:
    type: guard
    session_cookie: SESSIONID
    blocklist: { users: [alice] }
    user_header: X-User-Id
listeners:
  - name: plain
    listen: 127.0.0.1:1
    routes: [ { path_prefix: /, upstream: app, plugins: [mig, shop_guard] } ]
upstreams:
  app: { servers: [127.0.0.1:2] }
admin: { listen: "off" }
log: { access_log: "off", audit_log: "off" }
)"));
  route_ = &snapshot_->listeners()[0].routes[0];
  EXPECT_EQ(route_->shared_reads, std::vector<std::string>{"user"});
  {  // alice logs in, through both plugins (the guard reads the cluster blocklist first)
    MessageHead login;
    login.method = "GET";
    login.url = "/login";
    PluginChain& chain = newChain();
    if (chain.runRequest(login, "origin.test") == State::kWaiting) {
      stepUntil([&] { return owner_.resumed > 0; });
    }
    MessageHead response;
    response.status = 200;
    response.headers.add("Set-Cookie", "SESSIONID=s1; Max-Age=3600; Path=/");
    response.headers.add("X-User-Id", "alice");
    ASSERT_EQ(chain.runResponse(response), State::kWaiting);
    stepUntil([&] { return owner_.response_resumed > 0; });
    chain.finish();
  }
  MessageHead request;
  request.method = "GET";
  request.url = "/account";
  request.headers.add("Cookie", "SESSIONID=s1");
  request.headers.add("X-User-Id", "someone-else");  // set by the client: no way around the block
  PluginChain& chain = newChain();
  size_t before = owner_.replies.size();
  State state = chain.runRequest(request, "origin.test");
  if (state == State::kReplied) {
    owner_.replies.push_back(chain.takeReply());
  } else {
    ASSERT_EQ(state, State::kWaiting);
    stepUntil([&] { return owner_.replies.size() > before; });
  }
  EXPECT_EQ(owner_.replies.back().status, 403);
  chain.finish();
}

// user_header: claim:sub reads what a jwt plugin shares: the route must list one before it.
TEST_F(MigrationChainTest, AUserClaimNeedsAJwtPluginBeforeTheMigrationPlugin) {
  cjose_err err{};
  cjose_jwk_t* jwk = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
  char* text = cjose_jwk_to_json(jwk, false, &err);
  std::ofstream(dir_ / "auth.jwks.json") << "{\"keys\":[" << text << "]}";
  cjose_get_dealloc()(text);
  cjose_jwk_release(jwk);
  auto config = [&](const std::string& plugins) {
    return conf::loadString(R"(
plugins:
  auth:
    type: jwt
    issuers: [ { issuer: https://auth.test, audiences: [shop], algorithms: [ES256],
                 keys: )" + (dir_ / "auth.jwks.json").string() +
                            R"( } ]
  mig:
    type: migration
    role: origin
    session_cookie: SESSIONID
    user_header: claim:sub
    signing_key: )" + (dir_ / "sign.jwk").string() +
                            R"(
    encryption_key: )" + (dir_ / "enc.jwk").string() +
                            R"(
listeners:
  - listen: 127.0.0.1:1
    routes:
      - { path_prefix: /a/, upstream: app, plugins: [auth] }
      - { path_prefix: /, upstream: app, plugins: )" +
                            plugins + R"( }
upstreams:
  app: { servers: [127.0.0.1:2] }
admin: { listen: "off" }
log: { access_log: "off", audit_log: "off" }
)");
  };
  std::shared_ptr<const Snapshot> good = Snapshot::build(config("[auth, mig]"));
  EXPECT_TRUE(good->listeners()[0].routes[0].shared_reads.empty());
  EXPECT_EQ(good->listeners()[0].routes[1].shared_reads, std::vector<std::string>{"claim:sub"});
  for (const char* plugins : {"[mig]", "[mig, auth]"}) {
    try {
      Snapshot::build(config(plugins));
      ADD_FAILURE() << plugins << " was accepted";
    } catch (const conf::ConfigError& e) {
      ASSERT_EQ(e.errors().size(), 1u);
      EXPECT_EQ(e.errors()[0].key_path, "listeners[0].routes[1].plugins[0]") << plugins;
      EXPECT_NE(e.errors()[0].message.find("reads claim:sub"), std::string::npos);
      EXPECT_EQ(e.errors()[0].mark.line, 18);
    }
  }
}

}  // namespace
}  // namespace tessera::proxy
