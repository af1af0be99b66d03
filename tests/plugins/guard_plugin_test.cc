// guard: the plugin behind a fake proxy, on a real MemoryStore driven by a stepped event loop (no
// sleeps) and a fake clock. Keys are agreed through the real POST /_tessera/keys (the client side
// made with cjose), requests are signed here as client.js signs them. Covered: the endpoints, the
// window's edges, replays, keys, components, bodies and their digests, malformed and random
// signature headers, the rate limit, the YAML and cluster blocklists, sealed replies, and logout.

#include <cjose/cjose.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/memory_store.h"
#include "cache/sealer.h"
#include "plugins/encoding.h"
#include "plugins/guard/blocklist.h"
#include "plugins/guard/guard.h"
#include "plugins/guard/key_agreement.h"
#include "plugins/guard/signature.h"
#include "tests/plugins/fakes.h"

namespace tessera::plugins::guard {
namespace {

using cache::Millis;
using cache::Seconds;
using Json = nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::AuditEvent;
using testing::equalsIgnoreCase;
using testing::FakeCallbacks;
using testing::FakeContext;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::Headers;
using testing::Reply;

// 2025-03-14 12:00:15.123 UTC: 15 s into a minute, and a millisecond part that shows.
constexpr int64_t kStartSeconds = 1'741'953'615;
constexpr int64_t kStartMillis = kStartSeconds * 1000 + 123;

constexpr std::string_view kDevice = "ip=10.0.0.1;user_agent=tessera-test";
constexpr std::string_view kBody = R"({"event":"final","tickets":2})";

constexpr const char* kConfig = R"(type: guard
session_cookie: SESSIONID
protect:
  - { method: POST, path_prefix: /api/orders }
window: 60s
max_signed_body: 1KiB
)";

// --- A fake proxy around the plugin --------------------------------------------------------------

struct EventBaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;

// The store does each operation at once and only defers the callback: stepping the loop without
// blocking delivers it. Gives up rather than hang a broken test.
template <typename Cond>
bool stepUntil(event_base* base, Cond cond, int max_steps = 1000) {
  for (int i = 0; i < max_steps && !cond(); ++i) {
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
  }
  return cond();
}

// Lets every callback already due run, for what must (or must not) happen afterwards.
void stepIdle(event_base* base) {
  for (int i = 0; i < 10; ++i) event_base_loop(base, EVLOOP_NONBLOCK);
}

// A request as the proxy hands it over: the head, then the body in pieces (none: no body), then,
// if it went upstream, a response: its head (these headers and Set-Cookie lines), then its body.
struct Call {
  Call(std::string method, std::string target, std::vector<HeaderField> headers = {})
      : method(std::move(method)), target(std::move(target)), headers(std::move(headers)) {}

  // The first value of a header, or "".
  std::string header(std::string_view name) const {
    return std::string(Headers(headers).first(name).value_or(""));
  }

  std::string method;
  std::string target;
  std::vector<HeaderField> headers;
  std::vector<std::string> body;
  std::vector<std::string> set_cookies;
  std::vector<HeaderField> response_headers;
  std::optional<std::string> response_body;  // nullopt: a response without a body
};

struct Outcome {
  Verdict head = Verdict::kContinue;  // what onRequestHeaders returned
  bool passed = false;                // the request went upstream
  std::optional<Reply> reply;
  Verdict response = Verdict::kContinue;
  std::vector<HeaderField> forwarded;               // the request head as it went upstream
  std::vector<HeaderField> response_headers;        // the response head as it went to the client
  std::optional<std::string> response_body;         // as it went to the client
  std::map<std::string, int, std::less<>> counted;  // during this request only
  std::vector<AuditEvent> audits;                   // during this request only

  int status() const { return reply ? reply->status : 0; }
  std::optional<std::string> header(std::string_view name) const {
    if (!reply) return std::nullopt;
    return find(reply->headers, name);
  }
  std::optional<std::string> responseHeader(std::string_view name) const {
    return find(response_headers, name);
  }
  static std::optional<std::string> find(const std::vector<HeaderField>& fields,
                                         std::string_view name) {
    for (const HeaderField& h : fields) {
      if (equalsIgnoreCase(h.name, name)) return h.value;
    }
    return std::nullopt;
  }
  int count(std::string_view event) const {
    auto it = counted.find(event);
    return it == counted.end() ? 0 : it->second;
  }
};

std::ostream& operator<<(std::ostream& os, const Outcome& out) {
  if (out.passed) return os << "passed";
  if (!out.reply) return os << "no answer";
  return os << out.reply->status << " " << out.reply->body;
}

// A refusal as guard.h describes it: the status, X-Tessera-Guard, a challenge naming the reason
// on a 401, one count of the reason and an audit event "guard_<reason>".
::testing::AssertionResult refused(const Outcome& out, int status, std::string_view reason) {
  if (out.passed || !out.reply) {
    return ::testing::AssertionFailure()
           << "expected " << status << " " << reason << ", got " << out;
  }
  if (out.status() != status) {
    return ::testing::AssertionFailure()
           << "expected " << status << " " << reason << ", got " << out;
  }
  if (out.header("X-Tessera-Guard") != std::string(reason)) {
    return ::testing::AssertionFailure()
           << "X-Tessera-Guard: " << out.header("X-Tessera-Guard").value_or("(none)")
           << ", expected " << reason;
  }
  std::optional<std::string> challenge = out.header("WWW-Authenticate");
  if (status == 401) {
    std::string error = "error=\"" + std::string(reason) + "\"";
    if (!challenge || !challenge->starts_with("Signature ") ||
        challenge->find(error) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "WWW-Authenticate: " << challenge.value_or("(none)") << ", expected " << error;
    }
  } else if (challenge) {
    return ::testing::AssertionFailure() << "a " << status << " with WWW-Authenticate";
  }
  if (out.count(reason) != 1) {
    return ::testing::AssertionFailure() << "count(" << reason << ") = " << out.count(reason);
  }
  std::string event = "guard_" + std::string(reason);
  bool audited = std::any_of(out.audits.begin(), out.audits.end(), [&](const AuditEvent& e) {
    auto s = e.fields.find("status");
    return e.event == event && s != e.fields.end() && s->second == std::to_string(status);
  });
  if (!audited) return ::testing::AssertionFailure() << "no audit event " << event;
  return ::testing::AssertionSuccess();
}

// A key agreed through POST /_tessera/keys.
struct AgreedKey {
  std::string keyid;
  std::string key;  // K, raw
};

// What a signed request carries; the defaults make one that passes.
struct Signing {
  std::string method = "POST";
  std::string target = "/api/orders";
  std::string body{kBody};
  std::optional<std::string> nonce = "nonce-1";
  std::optional<int64_t> created;  // nullopt: the clock's second
  bool with_created = true;
  std::optional<int64_t> expires;
  std::optional<std::string> keyid;  // nullopt: the agreed key's
  bool with_keyid = true;
  std::optional<std::string> alg = "hmac-sha256";
  std::vector<std::string> components = {"@method", "@target-uri", "content-digest"};
  bool with_digest = true;  // sends Content-Digest
  size_t pieces = 1;        // the body's pieces
};

std::string sfString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

// Deterministic pseudo-random numbers (splitmix64): the same sequence on every platform.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};

class GuardPluginTest : public ::testing::Test {
 protected:
  // The proxy's side: a clock the test moves, one fixed device fingerprint, real sealing.
  GuardPluginTest() {
    context_.wall_time = std::chrono::system_clock::time_point(milliseconds(kStartMillis));
    context_.device = std::string(kDevice);
    context_.on_post = [](std::string_view) { ADD_FAILURE() << "guard makes no HTTPS calls"; };
  }

  void SetUp() override {
    std::string error;
    crypto_ = GuardCrypto::create(&error);
    ASSERT_TRUE(crypto_) << error;
    factory_ = factory();
  }

  std::shared_ptr<const Factory> factory(const std::string& extra = "") {
    return makeGuardFactory("tickets_guard", YAML::Load(std::string(kConfig) + extra));
  }

  // One request through a fresh instance, as the proxy runs it. A kStop is answered (resume or
  // reply) exactly once, inside the hook or from the loop; a reply ends the request. A request
  // that went upstream lives on a while (the loop runs) before onDestroy(), so a background read
  // it started completes; afterwards nothing more may be answered.
  Outcome run(const Factory& factory, const Call& call) {
    std::map<std::string, int, std::less<>> counts_before = context_.counts;
    size_t audits_before = context_.audits.size();
    FakeCallbacks callbacks;
    std::unique_ptr<Plugin> plugin = factory.create(context_, callbacks);
    FakeRequest request(call.method, call.target, call.headers, "shop.test");
    size_t stops = 0;
    auto settle = [&](Verdict v) {
      if (v == Verdict::kStop) {
        ++stops;
        EXPECT_TRUE(stepUntil(base_.get(), [&] { return callbacks.answers() >= stops; }))
            << call.method << " " << call.target << ": a kStop never answered";
      }
      return callbacks.replies.empty();
    };
    Outcome out;
    out.head = plugin->onRequestHeaders(request);
    bool going = settle(out.head);
    if (going && !call.body.empty() && plugin->wantsBody()) {
      for (size_t i = 0; going && i < call.body.size(); ++i) {
        going = settle(plugin->onRequestBody(request, call.body[i], i + 1 == call.body.size()));
      }
    }
    out.passed = going;
    out.forwarded = request.fields();
    if (going &&
        (!call.set_cookies.empty() || !call.response_headers.empty() || call.response_body)) {
      std::vector<HeaderField> lines = call.response_headers;
      for (const std::string& line : call.set_cookies) lines.push_back({"Set-Cookie", line});
      FakeResponse response(std::move(lines));
      out.response = plugin->onResponseHeaders(response);
      if (settle(out.response) && call.response_body) {
        out.response_body = call.response_body;
        if (plugin->wantsResponseBody()) plugin->onResponseBody(response, *out.response_body);
      }
      out.response_headers = response.fields();
    }
    if (going) stepIdle(base_.get());
    plugin->onDestroy();
    plugin.reset();
    stepIdle(base_.get());
    EXPECT_EQ(callbacks.answers(), stops) << call.method << " " << call.target;
    EXPECT_LE(callbacks.replies.size(), 1u);
    if (!callbacks.replies.empty()) out.reply = callbacks.replies.front();
    for (const auto& [event, n] : context_.counts) {
      auto before = counts_before.find(event);
      int delta = n - (before == counts_before.end() ? 0 : before->second);
      if (delta != 0) out.counted[event] = delta;
    }
    out.audits.assign(context_.audits.begin() + static_cast<std::ptrdiff_t>(audits_before),
                      context_.audits.end());
    return out;
  }
  Outcome run(const Call& call) { return run(*factory_, call); }

  Outcome get(const std::string& target, const std::string& session = "") {
    Call call{"GET", target, {{"Host", "shop.test"}}};
    if (!session.empty()) call.headers.push_back({"Cookie", "SESSIONID=" + session});
    return run(call);
  }

  // POST {prefix}keys with `body`, as the SDK sends it.
  Call keysCall(const std::string& session, const std::string& body) {
    Call call{
        "POST", "/_tessera/keys", {{"Host", "shop.test"}, {"Content-Type", "application/json"}}};
    if (!session.empty()) call.headers.push_back({"Cookie", "SESSIONID=" + session});
    call.headers.push_back({"Content-Length", std::to_string(body.size())});
    call.body = {body};
    return call;
  }

  // Where the guard keeps the key `keyid` of `session`: its slot is the keyid's first digit.
  std::string keySlotKey(const std::string& session, const std::string& keyid) const {
    return "guard:k:" + hexEncode(crypto_->sha256("guard key ref\n" + session)) + ":" +
           keyid.substr(0, 1);
  }

  // A client's side of an agreement: its key pair, and the body it posts to the keys endpoint.
  struct ClientKey {
    std::string d, x, y;
    std::string body;
  };
  ClientKey newClientKey() {
    cjose_err err{};
    cjose_jwk_t* jwk = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
    EXPECT_NE(jwk, nullptr);
    if (jwk == nullptr) return {};
    char* text = cjose_jwk_to_json(jwk, true, &err);
    Json mine = Json::parse(text);
    cjose_get_dealloc()(text);
    cjose_jwk_release(jwk);
    Json request = {{"jwk", {{"kty", "EC"}, {"crv", "P-256"}, {"x", mine["x"]}, {"y", mine["y"]}}}};
    return {mine["d"], mine["x"], mine["y"], request.dump()};
  }
  // The key the client derives from the endpoint's answer.
  AgreedKey finishAgreement(const ClientKey& mine, const std::string& reply_body,
                            const std::string& session, int64_t expires_in) {
    Json answer = Json::parse(reply_body, nullptr, false);
    if (!answer.is_object() || !answer.contains("jwk") || !answer["keyid"].is_string()) {
      ADD_FAILURE() << "no agreement: " << reply_body;
      return {};
    }
    EXPECT_EQ(answer["cookie"], "SESSIONID");
    EXPECT_EQ(answer["expires_in"], expires_in);
    EXPECT_EQ(answer["jwk"]["kty"], "EC");
    EXPECT_EQ(answer["jwk"]["crv"], "P-256");
    std::optional<GuardCrypto::Agreement> k = crypto_->agreeWithServerKeyForTesting(
        {mine.d, mine.x, mine.y}, answer["jwk"]["x"].get<std::string>(),
        answer["jwk"]["y"].get<std::string>(), session);
    EXPECT_TRUE(k.has_value());
    return {answer["keyid"].get<std::string>(), k ? k->key : ""};
  }
  // A key agreed as a client does it: an ephemeral P-256 key made with cjose, the plugin's public
  // key from the endpoint, and K from the other side of the ECDH (its two roles are symmetric).
  AgreedKey agree(const Factory& factory, const std::string& session,
                  int64_t expires_in = 24 * 60 * 60) {
    ClientKey mine = newClientKey();
    Outcome out = run(factory, keysCall(session, mine.body));
    EXPECT_EQ(out.status(), 200) << out;
    EXPECT_EQ(out.header("Content-Type"), "application/json");
    EXPECT_EQ(out.header("Cache-Control"), "no-store");
    EXPECT_EQ(out.count("key_agreed"), 1);
    return finishAgreement(mine, out.reply ? out.reply->body : "", session, expires_in);
  }
  AgreedKey agree(const std::string& session) { return agree(*factory_, session); }

  int64_t nowSeconds() const {
    return std::chrono::duration_cast<seconds>(context_.wall_time.time_since_epoch()).count();
  }

  // Both clocks: the proxy's and the store's (record expiry).
  void advance(milliseconds d) {
    context_.wall_time += d;
    *store_now_ += d;
  }

  // The Signature-Input member value (after "sig1=") for `s`.
  std::string params(const AgreedKey& k, const Signing& s) const {
    std::string out = "(";
    for (size_t i = 0; i < s.components.size(); ++i) {
      out += (i == 0 ? "" : " ") + sfString(s.components[i]);
    }
    out += ")";
    if (s.with_created) out += ";created=" + std::to_string(s.created.value_or(nowSeconds()));
    if (s.expires) out += ";expires=" + std::to_string(*s.expires);
    if (s.with_keyid) out += ";keyid=" + sfString(s.keyid.value_or(k.keyid));
    if (s.nonce) out += ";nonce=" + sfString(*s.nonce);
    if (s.alg) out += ";alg=" + sfString(*s.alg);
    return out;
  }

  // A request signed as client.js signs it (RFC 9421, hmac-sha256 under K), with the session
  // cookie it was agreed under unless `session` says otherwise.
  Call signedCall(const AgreedKey& k, const std::string& session, const Signing& s = {}) {
    Call call{s.method, s.target, {{"Host", "shop.test"}, {"Content-Type", "application/json"}}};
    if (!session.empty()) call.headers.push_back({"Cookie", "SESSIONID=" + session});
    call.headers.push_back({"Content-Length", std::to_string(s.body.size())});
    std::string digest = contentDigestHeader(s.body);
    if (s.with_digest) call.headers.push_back({"Content-Digest", digest});
    std::string signature_params = params(k, s);
    std::string base;
    for (const std::string& c : s.components) {
      std::string value;
      if (c == "@method") value = s.method;
      if (c == "@target-uri") value = "https://shop.test" + s.target;
      if (c == "@authority") value = "shop.test";
      if (c == "@path") value = s.target.substr(0, s.target.find('?'));
      if (c == "content-digest") value = digest;
      base += sfString(c) + ": " + value + "\n";
    }
    base += "\"@signature-params\": " + signature_params;
    call.headers.push_back({"Signature-Input", "sig1=" + signature_params});
    call.headers.push_back({"Signature", "sig1=:" + base64Encode(hmacSha256(k.key, base)) + ":"});
    size_t size = s.body.size(), pieces = std::max<size_t>(1, s.pieces);
    for (size_t i = 0; i < pieces && size > 0; ++i) {
      size_t from = size * i / pieces, to = size * (i + 1) / pieces;
      call.body.push_back(s.body.substr(from, to - from));
    }
    return call;
  }

  static void setHeader(Call& call, std::string_view name, std::string value) {
    std::erase_if(call.headers,
                  [&](const HeaderField& h) { return equalsIgnoreCase(h.name, name); });
    call.headers.push_back({std::string(name), std::move(value)});
  }

  void writeStore(std::string_view key, std::string_view value) {
    std::optional<cache::Result> r;
    store_->set(key, value, Seconds(3600), Millis(5000),
                [&](cache::Result x) { r = std::move(x); });
    ASSERT_TRUE(stepUntil(base_.get(), [&] { return r.has_value(); }));
    ASSERT_EQ(r->status, cache::Status::kOk);
  }

  // The cluster-wide document, as the admin API writes it: sealed under its own key.
  void writeBlocklist(const std::vector<BlockEntry>& entries) {
    Blocklist list;
    for (const BlockEntry& e : entries) ASSERT_TRUE(list.add(e));
    writeStore(kBlocklistKey, sealer_->seal(kBlocklistKey, list.serialize()));
  }

  std::unique_ptr<GuardCrypto> crypto_;
  // Declared first, so it is destroyed last: the store delivers on it.
  EventBasePtr base_{event_base_new()};
  std::shared_ptr<std::chrono::steady_clock::time_point> store_now_ =
      std::make_shared<std::chrono::steady_clock::time_point>();
  cache::MemoryStoreBackend backend_{10000, [now = store_now_] { return *now; }};
  std::unique_ptr<cache::Store> store_ = backend_.connect(base_.get());
  std::unique_ptr<cache::Sealer> sealer_ = cache::Sealer::ephemeral();
  FakeContext context_{*store_, *sealer_};
  std::shared_ptr<const Factory> factory_;
};

// --- Endpoints -----------------------------------------------------------------------------------

TEST_F(GuardPluginTest, TimeIsTheClocksMilliseconds) {
  for (const char* target : {"/_tessera/time", "/_tessera/time?t=1"}) {
    Outcome out = get(target);
    ASSERT_EQ(out.status(), 200) << out;
    EXPECT_EQ(out.header("Content-Type"), "application/json");
    EXPECT_EQ(out.header("Cache-Control"), "no-store");
    Json body = Json::parse(out.reply->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << out.reply->body;
    EXPECT_EQ(body["now"], kStartMillis);
  }
  advance(milliseconds(2500));
  Outcome later = get("/_tessera/time");
  ASSERT_EQ(later.status(), 200);
  EXPECT_EQ(Json::parse(later.reply->body)["now"], kStartMillis + 2500);
  EXPECT_EQ(run({"HEAD", "/_tessera/time", {{"Host", "shop.test"}}}).status(), 200);
  EXPECT_TRUE(context_.audits.empty());
}

TEST_F(GuardPluginTest, ClientJsIsServedAsJavaScript) {
  Outcome out = get("/_tessera/client.js");
  ASSERT_EQ(out.status(), 200) << out;
  EXPECT_EQ(out.header("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(out.header("Cache-Control"), "no-cache");
  std::ifstream file(TESSERA_SOURCE_DIR "/plugins/guard/client.js", std::ios::binary);
  ASSERT_TRUE(file.good());
  std::stringstream script;
  script << file.rdbuf();
  EXPECT_EQ(out.reply->body, script.str());
}

TEST_F(GuardPluginTest, EndpointsRefuseOtherMethods) {
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    for (const char* target : {"/_tessera/time", "/_tessera/client.js"}) {
      Outcome out = run({method, target, {{"Host", "shop.test"}, {"Content-Length", "0"}}});
      EXPECT_EQ(out.status(), 405) << method << " " << target;
      EXPECT_EQ(out.header("Allow"), "GET, HEAD") << method << " " << target;
    }
  }
  for (const char* method : {"GET", "HEAD", "PUT", "DELETE"}) {
    Outcome out =
        run({method, "/_tessera/keys", {{"Host", "shop.test"}, {"Cookie", "SESSIONID=sess-A"}}});
    EXPECT_EQ(out.status(), 405) << method;
    EXPECT_EQ(out.header("Allow"), "POST") << method;
  }
  EXPECT_TRUE(context_.audits.empty());
}

TEST_F(GuardPluginTest, OtherPathsUnderThePrefixGoUpstream) {
  EXPECT_TRUE(get("/_tessera/other").passed);
  EXPECT_TRUE(get("/_tessera/").passed);
  EXPECT_TRUE(get("/_tessera/time/x").passed);
  EXPECT_TRUE(get("/").passed);
}

// --- Key agreement -------------------------------------------------------------------------------

TEST_F(GuardPluginTest, AgreedKeySignsARequest) {
  AgreedKey k = agree("sess-A");
  ASSERT_EQ(k.key.size(), kGuardKeyBytes);
  EXPECT_FALSE(k.keyid.empty());
  Outcome out = run(signedCall(k, "sess-A"));
  EXPECT_TRUE(out.passed) << out;
  EXPECT_EQ(out.head, Verdict::kContinue);  // checked once the body has been digested
  EXPECT_EQ(out.count("verified"), 1);
  EXPECT_TRUE(out.audits.empty());
  // The body in several pieces, digested as it streams.
  Signing pieces;
  pieces.nonce = "nonce-2";
  pieces.pieces = 5;
  EXPECT_TRUE(run(signedCall(k, "sess-A", pieces)).passed);
  // A request without a body signs the empty body's digest.
  Signing empty;
  empty.nonce = "nonce-3";
  empty.body = "";
  Outcome no_body = run(signedCall(k, "sess-A", empty));
  EXPECT_TRUE(no_body.passed) << no_body;
  EXPECT_EQ(no_body.head, Verdict::kStop);  // the key and the nonce are in the store
}

TEST_F(GuardPluginTest, KeysEndpointRefusals) {
  std::string good =
      R"({"jwk":{"kty":"EC","crv":"P-256","x":"gEX7X_Y3kFZGG0K1FqKwuf2YLQPL8NBe41eA5wwM7MU",)"
      R"("y":"rdkjv8Yxt_TxdtI4L18RMqe6A-PeCTaqiZhMugrxXPg"}})";
  EXPECT_EQ(run(keysCall("sess-A", good)).status(), 200);
  EXPECT_TRUE(refused(run(keysCall("", good)), 401, "no_session"));
  EXPECT_TRUE(refused(run(keysCall("sess-A", "not json")), 400, "malformed_body"));
  EXPECT_TRUE(refused(run(keysCall("sess-A", R"({"jwk":{"kty":"RSA","n":"AQAB"}})")), 400,
                      "malformed_body"));
  EXPECT_TRUE(refused(run(keysCall("sess-A", R"({"jwk":"EC"})")), 400, "malformed_body"));
  // Deep nesting is refused before it is parsed.
  std::string deep = R"({"jwk":)" + std::string(1500, '[') + std::string(1500, ']') + "}";
  EXPECT_TRUE(refused(run(keysCall("sess-A", deep)), 400, "malformed_body"));
  std::string off_curve =
      R"({"jwk":{"kty":"EC","crv":"P-256","x":"gEX7X_Y3kFZGG0K1FqKwuf2YLQPL8NBe41eA5wwM7MU",)"
      R"("y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}})";
  EXPECT_TRUE(refused(run(keysCall("sess-A", off_curve)), 400, "bad_client_key"));
  Call large = keysCall("sess-A", good);
  setHeader(large, "Content-Length", "5000");
  EXPECT_TRUE(refused(run(large), 413, "body_too_large"));
  Call unframed = keysCall("sess-A", good);
  std::erase_if(unframed.headers, [](const HeaderField& h) { return h.name == "Content-Length"; });
  EXPECT_TRUE(refused(run(unframed), 400, "malformed_body"));
  // Streamed (chunked) past the bound.
  Call streamed = keysCall("sess-A", "");
  std::erase_if(streamed.headers, [](const HeaderField& h) { return h.name == "Content-Length"; });
  streamed.headers.push_back({"Transfer-Encoding", "chunked"});
  streamed.body = {std::string(3000, ' '), std::string(3000, ' '), ""};
  EXPECT_TRUE(refused(run(streamed), 413, "body_too_large"));
}

// A JWK whose members have other types is malformed input like any other: a 400, never an
// exception out of a hook.
TEST_F(GuardPluginTest, KeysEndpointRefusesJwkMembersOfOtherTypes) {
  for (const char* body : {R"({"jwk":{"kty":1}})", R"({"jwk":{"kty":"EC","crv":256}})",
                           R"({"jwk":{"kty":null,"crv":"P-256","x":"a","y":"b"}})"}) {
    Outcome out;
    EXPECT_NO_THROW(out = run(keysCall("sess-A", body))) << body;
    EXPECT_TRUE(refused(out, 400, "malformed_body")) << body;
  }
}

// A JWK without its coordinates. Run in a child process: reading a missing member of a const JSON
// object is undefined behaviour (an assertion in debug builds), which would end the test binary.
using GuardPluginDeathTest = GuardPluginTest;
TEST_F(GuardPluginDeathTest, KeysEndpointRefusesAJwkWithoutCoordinates) {
  for (
      const char* body :
      {R"({"jwk":{"kty":"EC","crv":"P-256"}})",
       R"({"jwk":{"kty":"EC","crv":"P-256","x":"gEX7X_Y3kFZGG0K1FqKwuf2YLQPL8NBe41eA5wwM7MU"}})"}) {
    EXPECT_EXIT(
        {
          Outcome out = run(keysCall("sess-A", body));
          std::exit(out.status() == 400 && out.header("X-Tessera-Guard") == "malformed_body" ? 0
                                                                                             : 1);
        },
        ::testing::ExitedWithCode(0), "")
        << body;
  }
}

TEST_F(GuardPluginTest, ASessionKeepsItsNewestFourKeys) {
  std::vector<AgreedKey> keys;
  for (int i = 0; i < 5; ++i) keys.push_back(agree("sess-A"));
  Signing s;
  s.nonce = "n-oldest";
  EXPECT_TRUE(refused(run(signedCall(keys[0], "sess-A", s)), 401, "unknown_key"));
  for (int i = 1; i < 5; ++i) {
    s.nonce = "n-" + std::to_string(i);
    Outcome out = run(signedCall(keys[i], "sess-A", s));
    EXPECT_TRUE(out.passed) << i << ": " << out;
  }
}

// --- The window ----------------------------------------------------------------------------------

TEST_F(GuardPluginTest, WindowEdges) {
  AgreedKey k = agree("sess-A");
  int64_t now = nowSeconds();
  Signing s;
  s.nonce = "past-edge";
  s.created = now - 60;
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);
  s.nonce = "future-edge";
  s.created = now + 60;
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);
  s.nonce = "too-old";
  s.created = now - 61;
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "stale"));
  s.nonce = "too-new";
  s.created = now + 61;
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "stale"));
  s.nonce = "zero";
  s.created = 0;
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "stale"));
  // The same signature, once the clock has moved past its edge.
  s.nonce = "aging";
  s.created = now;
  Call call = signedCall(k, "sess-A", s);
  advance(seconds(61));
  EXPECT_TRUE(refused(run(call), 401, "stale"));
}

TEST_F(GuardPluginTest, ExpiresIsHonoured) {
  AgreedKey k = agree("sess-A");
  Signing s;
  s.nonce = "expires-now";
  s.expires = nowSeconds();
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "stale"));
  s.nonce = "expires-later";
  s.expires = nowSeconds() + 1;
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);
}

// --- Nonces --------------------------------------------------------------------------------------

TEST_F(GuardPluginTest, ASecondUseOfANonceIsAReplay) {
  AgreedKey k = agree("sess-A");
  Call call = signedCall(k, "sess-A");
  EXPECT_TRUE(run(call).passed);
  EXPECT_TRUE(refused(run(call), 401, "replay"));
  EXPECT_TRUE(refused(run(call), 401, "replay"));
  // Signed again, with the same nonce: still a replay.
  advance(seconds(1));
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A")), 401, "replay"));
  Signing other;
  other.nonce = "nonce-2";
  EXPECT_TRUE(run(signedCall(k, "sess-A", other)).passed);
}

// Nonces are spent only after a good HMAC: a client without the key cannot use up the real one's.
TEST_F(GuardPluginTest, ABadSignatureDoesNotSpendTheNonce) {
  AgreedKey k = agree("sess-A");
  AgreedKey forged{k.keyid, std::string(kGuardKeyBytes, 'x')};
  EXPECT_TRUE(refused(run(signedCall(forged, "sess-A")), 401, "bad_signature"));
  EXPECT_TRUE(refused(run(signedCall(forged, "sess-A")), 401, "bad_signature"));
  // A signature of the wrong length, too.
  Call truncated = signedCall(k, "sess-A");
  setHeader(truncated, "Signature", "sig1=:" + base64Encode(std::string(16, 'x')) + ":");
  EXPECT_TRUE(refused(run(truncated), 401, "bad_signature"));
  EXPECT_TRUE(run(signedCall(k, "sess-A")).passed);
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A")), 401, "replay"));
}

// --- Keys ----------------------------------------------------------------------------------------

TEST_F(GuardPluginTest, UnknownKeys) {
  AgreedKey mine = agree("sess-A");
  AgreedKey theirs = agree("sess-B");
  Signing s;
  s.nonce = "n-1";
  s.keyid = "AAAAAAAAAAAAAAAAAAAAAA";
  EXPECT_TRUE(refused(run(signedCall(mine, "sess-A", s)), 401, "unknown_key"));
  // Another session's key and keyid, with this session's cookie.
  EXPECT_TRUE(refused(run(signedCall(theirs, "sess-A")), 401, "unknown_key"));
  EXPECT_TRUE(refused(run(signedCall(mine, "sess-B")), 401, "unknown_key"));
  // A session the store has never seen.
  EXPECT_TRUE(refused(run(signedCall(mine, "sess-C")), 401, "unknown_key"));
  // Each with its own cookie is fine.
  EXPECT_TRUE(run(signedCall(mine, "sess-A")).passed);
  EXPECT_TRUE(run(signedCall(theirs, "sess-B")).passed);
}

// A keyid's first character names its slot: one that names no slot, or another slot than the
// key's, is unknown too.
TEST_F(GuardPluginTest, KeyIdsNamingNoSlotOrAnotherSlotAreUnknown) {
  AgreedKey k = agree("sess-A");
  ASSERT_EQ(k.keyid[0], '0');
  Signing s;
  int n = 0;
  for (char first : {'1', '3', '4', '9', 'a', '-', '_'}) {
    s.keyid = first + k.keyid.substr(1);
    s.nonce = "slot-" + std::to_string(++n);
    EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key")) << *s.keyid;
  }
  s.keyid = k.keyid.substr(0, 1);  // the slot alone
  s.nonce = "slot-alone";
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key"));
  s.keyid = k.keyid.substr(1);  // the random part alone
  s.nonce = "random-alone";
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key"));
  s.keyid.reset();
  s.nonce = "right";
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);
}

TEST_F(GuardPluginTest, KeyIdsWithBadCharactersAreUnknown) {
  AgreedKey k = agree("sess-A");
  Signing s;
  for (std::string keyid :
       {std::string("key/1"), std::string("key id"), std::string("key\"1"), std::string("key:1"),
        std::string(""), std::string(65, 'k'), k.keyid + "=", "../" + k.keyid}) {
    s.keyid = keyid;
    EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key")) << keyid;
  }
  s.keyid.reset();
  s.with_keyid = false;
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key"));
  // None of these spent the nonce.
  EXPECT_TRUE(run(signedCall(k, "sess-A")).passed);
}

// --- Components and parameters -------------------------------------------------------------------

TEST_F(GuardPluginTest, EveryRequiredComponentMustBeCovered) {
  AgreedKey k = agree("sess-A");
  Signing s;
  for (std::vector<std::string> components :
       std::vector<std::vector<std::string>>{{"@method", "@target-uri"},
                                             {"@method", "content-digest"},
                                             {"@target-uri", "content-digest"},
                                             {"@method", "@path", "content-digest"},
                                             {}}) {
    s.components = components;
    EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "component_not_covered"));
  }
  // More than required is fine.
  s.components = {"@authority", "@method", "@target-uri", "content-digest"};
  Outcome out = run(signedCall(k, "sess-A", s));
  EXPECT_TRUE(out.passed) << out;
}

TEST_F(GuardPluginTest, AlgMustBeHmacSha256) {
  AgreedKey k = agree("sess-A");
  Signing s;
  for (const char* alg : {"rsa-pss-sha512", "hmac-sha512", "HMAC-SHA256", "ed25519", ""}) {
    s.alg = alg;
    EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unsupported_alg")) << alg;
  }
  s.alg.reset();
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unsupported_alg"));
}

TEST_F(GuardPluginTest, CreatedAndNonceAreRequired) {
  AgreedKey k = agree("sess-A");
  Signing s;
  s.with_created = false;
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "missing_created"));
  s = {};
  s.nonce.reset();
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "missing_nonce"));
  s.nonce = "";
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "missing_nonce"));
  s.nonce = std::string(129, 'n');
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "missing_nonce"));
  s.nonce = std::string(128, 'n');
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);
}

TEST_F(GuardPluginTest, NoSessionCookie) {
  AgreedKey k = agree("sess-A");
  EXPECT_TRUE(refused(run(signedCall(k, "")), 401, "no_session"));
  Call other_cookie = signedCall(k, "");
  other_cookie.headers.push_back({"Cookie", "sessionid=sess-A; theme=dark"});  // names are exact
  EXPECT_TRUE(refused(run(other_cookie), 401, "no_session"));
}

// --- Bodies --------------------------------------------------------------------------------------

TEST_F(GuardPluginTest, ABodyChangedAfterSigning) {
  AgreedKey k = agree("sess-A");
  Signing s;
  s.pieces = 3;
  Call call = signedCall(k, "sess-A", s);
  ASSERT_EQ(call.body.size(), 3u);
  call.body.back().back() = ' ';  // same length, last piece
  EXPECT_TRUE(refused(run(call), 401, "digest_mismatch"));
  call = signedCall(k, "sess-A", s);
  call.body[0][2] ^= 1;  // first piece
  EXPECT_TRUE(refused(run(call), 401, "digest_mismatch"));
  call = signedCall(k, "sess-A", s);
  call.body.push_back("x");  // a piece more than signed
  setHeader(call, "Content-Length", std::to_string(kBody.size() + 1));
  EXPECT_TRUE(refused(run(call), 401, "digest_mismatch"));
  // Nothing was spent: the body as signed still passes.
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);
}

TEST_F(GuardPluginTest, ABodyNeedsContentDigest) {
  AgreedKey k = agree("sess-A");
  Signing s;
  s.with_digest = false;
  // Covered by the signature (the default requirement) but absent.
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "missing_component"));
  // A route that does not make every signature cover the digest still needs it for a body, and
  // covered by the signature: a digest outside it would bind nothing.
  auto f = factory("require_components: [\"@method\", \"@target-uri\"]\n");
  AgreedKey k2 = agree(*f, "sess-A");
  s.components = {"@method", "@target-uri"};
  EXPECT_TRUE(refused(run(*f, signedCall(k2, "sess-A", s)), 401, "component_not_covered"));
  Call chunked = signedCall(k2, "sess-A", s);
  std::erase_if(chunked.headers, [](const HeaderField& h) { return h.name == "Content-Length"; });
  chunked.headers.push_back({"Transfer-Encoding", "chunked"});
  EXPECT_TRUE(refused(run(*f, chunked), 401, "component_not_covered"));
  s.with_digest = true;
  s.nonce = "nonce-uncovered";
  EXPECT_TRUE(refused(run(*f, signedCall(k2, "sess-A", s)), 401, "component_not_covered"));
  s.components = {"@method", "@target-uri", "content-digest"};
  s.with_digest = false;
  s.nonce = "nonce-covered";
  EXPECT_TRUE(refused(run(*f, signedCall(k2, "sess-A", s)), 401, "missing_component"));
  s.with_digest = true;
  EXPECT_TRUE(run(*f, signedCall(k2, "sess-A", s)).passed);
  // Without a body, that route's signatures need no digest.
  Signing bodiless;
  bodiless.body = "";
  bodiless.with_digest = false;
  bodiless.components = {"@method", "@target-uri"};
  bodiless.nonce = "nonce-bodiless";
  EXPECT_TRUE(run(*f, signedCall(k2, "sess-A", bodiless)).passed);
}

TEST_F(GuardPluginTest, ABodyOverMaxSignedBody) {
  AgreedKey k = agree("sess-A");
  Signing s;
  s.nonce = "at-the-bound";
  s.body = std::string(1024, 'b');
  s.pieces = 4;
  Outcome at = run(signedCall(k, "sess-A", s));
  EXPECT_TRUE(at.passed) << at;
  s.nonce = "declared-over";
  s.body = std::string(1025, 'b');
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 413, "body_too_large"));
  // Streamed, its length unknown until it passes the bound.
  s.nonce = "streamed-over";
  s.body = std::string(1800, 'b');
  s.pieces = 3;
  Call streamed = signedCall(k, "sess-A", s);
  std::erase_if(streamed.headers, [](const HeaderField& h) { return h.name == "Content-Length"; });
  streamed.headers.push_back({"Transfer-Encoding", "chunked"});
  EXPECT_TRUE(refused(run(streamed), 413, "body_too_large"));
  Call huge = signedCall(k, "sess-A", s);
  setHeader(huge, "Content-Length", "99999999999999999999");
  EXPECT_TRUE(refused(run(huge), 413, "body_too_large"));
}

// --- Malformed and hostile headers ---------------------------------------------------------------

TEST_F(GuardPluginTest, MalformedSignatureHeaders) {
  AgreedKey k = agree("sess-A");
  Call call = signedCall(k, "sess-A");
  Call no_signature = call;
  std::erase_if(no_signature.headers, [](const HeaderField& h) { return h.name == "Signature"; });
  EXPECT_TRUE(refused(run(no_signature), 401, "missing_signature"));
  Call no_input = call;
  std::erase_if(no_input.headers, [](const HeaderField& h) { return h.name == "Signature-Input"; });
  EXPECT_TRUE(refused(run(no_input), 401, "missing_signature"));

  struct Case {
    const char* header;
    std::string value;
    const char* reason;
  };
  std::string sig = call.header("Signature");
  // Past the syntax, a signature as the plugin's policy wants it: what fails is the component.
  auto covering = [&](const std::string& components) {
    return "sig1=(" + components + ");created=" + std::to_string(nowSeconds()) +
           ";keyid=" + sfString(k.keyid) + ";nonce=\"n\";alg=\"hmac-sha256\"";
  };
  const std::string required = "\"@method\" \"@target-uri\" \"content-digest\"";
  for (const Case& c : std::vector<Case>{
           {"Signature-Input", "sig1=(", "malformed_signature_input"},
           {"Signature-Input", "", "malformed_signature_input"},
           {"Signature-Input", "sig1=\"@method\"", "malformed_signature_input"},
           {"Signature-Input", "sig1=(@method);created=1", "malformed_signature_input"},
           {"Signature-Input", "sig1=(\"Content-Digest\");created=1", "malformed_signature_input"},
           {"Signature-Input", "sig1=(\"@method\");created=-1", "malformed_signature_input"},
           {"Signature-Input", "sig1=(\"@method\");created=1;created=2",
            "malformed_signature_input"},
           {"Signature-Input", "sig1=(\"@method\");keyid=k", "malformed_signature_input"},
           {"Signature-Input", covering(required + " \"@status\""), "unsupported_component"},
           {"Signature-Input", covering(required + " \"@query-param\""), "unsupported_component"},
           {"Signature-Input", covering(required + " \"@signature-params\""),
            "unsupported_component"},
           {"Signature-Input", covering(required + " \"x-a\";sf"),
            "unsupported_component_parameter"},
           {"Signature-Input", covering(required + " \"x-a\";req"),
            "unsupported_component_parameter"},
           {"Signature-Input", covering(required) + ";foo=1", "unsupported_signature_parameter"},
           {"Signature-Input", covering(required + " \"@method\""), "duplicate_component"},
           {"Signature", "sig1=abc", "malformed_signature"},
           {"Signature", "", "malformed_signature"},
           {"Signature", "sig2=" + sig.substr(5), "label_mismatch"},
       }) {
    Call bad = call;
    setHeader(bad, c.header, c.value);
    EXPECT_TRUE(refused(run(bad), 401, c.reason)) << c.header << ": " << c.value;
  }
  // A field given twice.
  Call twice = call;
  twice.headers.push_back({"Signature-Input", "sig2=(\"@method\");created=1"});
  EXPECT_TRUE(refused(run(twice), 401, "malformed_signature_input"));
  twice = call;
  twice.headers.push_back({"Signature", sig});
  EXPECT_TRUE(refused(run(twice), 401, "malformed_signature_input"));
  // A covered header the request lacks.
  Signing s;
  s.components = {"@method", "@target-uri", "content-digest", "x-order-id"};
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "missing_component"));
  // None of this spent the nonce.
  EXPECT_TRUE(run(call).passed);
}

TEST_F(GuardPluginTest, HugeSignatureInputs) {
  AgreedKey k = agree("sess-A");
  Call call = signedCall(k, "sess-A");
  std::string input = call.header("Signature-Input");
  Call large = call;
  setHeader(large, "Signature-Input", input + ";tag=\"" + std::string(9 * 1024, 't') + "\"");
  EXPECT_TRUE(refused(run(large), 401, "too_large"));
  // 40 components, each a header the request carries.
  Signing s;
  for (int i = 0; i < 40; ++i) s.components.push_back("x-h" + std::to_string(i));
  Call many = signedCall(k, "sess-A", s);
  for (int i = 0; i < 40; ++i) many.headers.push_back({"X-H" + std::to_string(i), "v"});
  EXPECT_TRUE(refused(run(many), 401, "too_large"));
  // Many labels.
  std::string labels;
  for (int i = 0; i < 12; ++i) labels += (i ? ", " : "") + ("s" + std::to_string(i)) + "=()";
  Call members = call;
  setHeader(members, "Signature-Input", labels);
  EXPECT_TRUE(refused(run(members), 401, "too_large"));
  EXPECT_TRUE(run(call).passed);
}

// Random and mutated header values: each request is refused with a 401 that says why, and none
// crashes. The nonce of the mutated signature is spent first, so a mutation that still verifies is
// a replay rather than a pass.
TEST_F(GuardPluginTest, RandomSignatureHeadersAreRefused) {
  AgreedKey k = agree("sess-A");
  Call valid = signedCall(k, "sess-A");
  ASSERT_TRUE(run(valid).passed);
  const std::string input = valid.header("Signature-Input");
  const std::string sig = valid.header("Signature");
  static constexpr std::string_view kAlphabet =
      "()\";=:*,? -_.~/+abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%\\\t";
  Random random(9421);
  auto randomText = [&](size_t max) {
    std::string out(random.below(max + 1), ' ');
    for (char& c : out) {
      c = random.below(4) == 0 ? static_cast<char>(random.below(256))
                               : kAlphabet[random.below(kAlphabet.size())];
    }
    return out;
  };
  auto mutate = [&](std::string text) {
    for (size_t edits = 1 + random.below(4); edits > 0; --edits) {
      size_t at = random.below(text.size() + 1);
      switch (random.below(5)) {
        case 0:  // replace a byte
          if (at < text.size()) text[at] = kAlphabet[random.below(kAlphabet.size())];
          break;
        case 1:  // insert
          text.insert(at, randomText(6));
          break;
        case 2:  // delete
          text.erase(at, random.below(8));
          break;
        case 3:  // truncate
          text.resize(at);
          break;
        default:  // repeat a slice
          text.insert(at, text.substr(random.below(text.size() + 1), random.below(24)));
          break;
      }
    }
    return text;
  };
  for (int i = 0; i < 400; ++i) {
    Call call = valid;
    switch (i % 4) {
      case 0:
        setHeader(call, "Signature-Input", randomText(300));
        setHeader(call, "Signature", randomText(80));
        break;
      case 1:
        setHeader(call, "Signature-Input", mutate(input));
        break;
      case 2:
        setHeader(call, "Signature", mutate(sig));
        break;
      default:
        setHeader(call, "Signature-Input", mutate(input));
        setHeader(call, "Signature", mutate(sig));
        break;
    }
    Outcome out = run(call);
    std::optional<std::string> reason = out.header("X-Tessera-Guard");
    ASSERT_TRUE(reason.has_value()) << i << ": " << out;
    EXPECT_TRUE(refused(out, 401, *reason)) << i << ":\n"
                                            << call.header("Signature-Input") << "\n"
                                            << call.header("Signature");
  }
}

// --- What is protected ---------------------------------------------------------------------------

TEST_F(GuardPluginTest, ProtectedPathsAreNormalised) {
  for (const char* target : {"/api/orders", "/api/orders/42", "/api/orders?x=1", "/api//orders",
                             "/api/%6frders", "/x/../api/orders", "/./api/orders", "//api/orders",
                             "/api%2forders", "/_tessera/../api/orders", "/api;v=1/orders",
                             "/api/orders;jsessionid=x", "/api\\orders", "/api%5corders"}) {
    Call call{"POST", target, {{"Host", "shop.test"}, {"Cookie", "SESSIONID=sess-A"}}};
    EXPECT_TRUE(refused(run(call), 401, "missing_signature")) << target;
  }
  EXPECT_TRUE(get("/api/orders", "sess-A").passed);  // POST only
  EXPECT_TRUE(run({"POST", "/api/order", {{"Host", "shop.test"}}}).passed);
  EXPECT_TRUE(run({"POST", "/shop/api/orders", {{"Host", "shop.test"}}}).passed);
}

// RFC 9112, 3.2.2: a server must accept a request-target in absolute-form, and tessera forwards it
// to the backend in origin-form. The path it names is as protected as in origin-form.
TEST_F(GuardPluginTest, AnAbsoluteFormTargetIsProtectedToo) {
  for (const char* target : {"https://shop.test/api/orders", "http://shop.test/api/orders?x=1"}) {
    Outcome out = run({"POST", target, {{"Host", "shop.test"}, {"Cookie", "SESSIONID=sess-A"}}});
    EXPECT_FALSE(out.passed) << target << " went upstream without a signature";
    EXPECT_EQ(out.status(), 401) << target;
  }
}

// "Content-Length: 00" is a valid zero (the proxy's parser reads it so, and gives the plugins no
// body call). A signature that nothing checked must not go upstream.
TEST_F(GuardPluginTest, AZeroLengthWrittenWithLeadingZerosIsStillVerified) {
  AgreedKey k = agree("sess-A");
  Signing s;
  s.body = "";
  s.keyid = "made-up-key";
  Call call = signedCall(k, "sess-A", s);
  setHeader(call, "Content-Length", "00");
  ASSERT_TRUE(call.body.empty());
  Outcome out = run(call);
  EXPECT_FALSE(out.passed) << "went upstream with an unchecked signature";
  EXPECT_TRUE(refused(out, 401, "unknown_key"));
}

// --- Rate limit ----------------------------------------------------------------------------------

TEST_F(GuardPluginTest, RateLimitWithRetryAfter) {
  auto f = factory("rate_limit: { per: session, requests: 3, interval: 60s }\n");
  AgreedKey a = agree(*f, "sess-A");
  AgreedKey b = agree(*f, "sess-B");
  Signing s;
  int n = 0;
  auto next = [&](const AgreedKey& k, const std::string& session) {
    s.nonce = "n-" + std::to_string(++n);
    return run(*f, signedCall(k, session, s));
  };
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(next(a, "sess-A").passed) << i;
  // 12:00:15: 45 s left in the minute.
  Outcome over = next(a, "sess-A");
  ASSERT_EQ(over.status(), 429) << over;
  EXPECT_EQ(over.header("Retry-After"), "45");
  EXPECT_EQ(over.header("X-Tessera-Guard"), "rate_limited");
  EXPECT_EQ(over.count("rate_limited"), 1);
  ASSERT_EQ(over.audits.size(), 1u);
  EXPECT_EQ(over.audits[0].event, "guard_rate_limited");
  EXPECT_EQ(over.audits[0].fields["device"], kDevice);
  // Another session has its own count.
  EXPECT_TRUE(next(b, "sess-B").passed);
  advance(seconds(10));
  over = next(a, "sess-A");
  EXPECT_EQ(over.status(), 429);
  EXPECT_EQ(over.header("Retry-After"), "35");
  advance(milliseconds(34'876));  // 12:00:59.999
  over = next(a, "sess-A");
  EXPECT_EQ(over.status(), 429);
  EXPECT_EQ(over.header("Retry-After"), "1");
  advance(milliseconds(1));  // 12:01:00.000: a new interval
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(next(a, "sess-A").passed) << i;
  over = next(a, "sess-A");
  EXPECT_EQ(over.status(), 429);
  EXPECT_EQ(over.header("Retry-After"), "60");
}

TEST_F(GuardPluginTest, RateLimitPerDevice) {
  auto f = factory("rate_limit: { per: device, requests: 1, interval: 10s }\n");
  AgreedKey a = agree(*f, "sess-A");
  AgreedKey b = agree(*f, "sess-B");
  Signing s;
  s.nonce = "n-1";
  EXPECT_TRUE(run(*f, signedCall(a, "sess-A", s)).passed);
  s.nonce = "n-2";  // another session, the same device
  Outcome over = run(*f, signedCall(b, "sess-B", s));
  EXPECT_EQ(over.status(), 429) << over;
  EXPECT_EQ(over.header("Retry-After"), "5");  // 12:00:15 in a 10 s interval
  context_.device = "another device";
  EXPECT_TRUE(run(*f, signedCall(b, "sess-B", s)).passed);
}

// --- Blocklists ----------------------------------------------------------------------------------

TEST_F(GuardPluginTest, YamlBlocklist) {
  auto f = factory(R"(user_header: X-User-Id
blocklist:
  ips: [10.0.0.9, "2001:db8::9"]
  cidrs: [192.0.2.0/24]
  users: [mallory]
  devices: ["ip=10.0.0.66;user_agent=bot"]
)");
  AgreedKey k = agree(*f, "sess-A");
  struct Client {
    std::string ip;
    std::string device;
    std::string user;
    bool blocked;
  };
  std::string good_key =
      R"({"jwk":{"kty":"EC","crv":"P-256","x":"gEX7X_Y3kFZGG0K1FqKwuf2YLQPL8NBe41eA5wwM7MU",)"
      R"("y":"rdkjv8Yxt_TxdtI4L18RMqe6A-PeCTaqiZhMugrxXPg"}})";
  int n = 0;
  for (const Client& c : std::vector<Client>{
           {"10.0.0.9", "d", "", true},
           {"::ffff:10.0.0.9", "d", "", true},
           {"2001:db8::9", "d", "", true},
           {"192.0.2.200", "d", "", true},
           {"::ffff:192.0.2.1", "d", "", true},
           {"10.0.0.1", "d", "mallory", true},
           {"10.0.0.1", "ip=10.0.0.66;user_agent=bot", "", true},
           {"10.0.0.1", "d", "", false},
           {"10.0.0.8", "d", "alice", false},
           {"192.0.3.1", "ip=10.0.0.66", "Mallory", false},
           {"not an address", "d", "", false},
       }) {
    context_.ip = c.ip;
    context_.device = c.device;
    std::vector<Call> calls;
    calls.push_back({"GET", "/", {{"Host", "shop.test"}}});
    calls.push_back(keysCall("sess-K", good_key));  // another session: sess-A keeps k
    calls.push_back({"GET", "/_tessera/time", {{"Host", "shop.test"}}});
    Signing s;
    s.nonce = "n-" + std::to_string(++n);
    calls.push_back(signedCall(k, "sess-A", s));
    for (Call& call : calls) {
      if (!c.user.empty()) call.headers.push_back({"X-User-Id", c.user});
      Outcome out = run(*f, call);
      if (c.blocked) {
        EXPECT_TRUE(refused(out, 403, "blocked"))
            << c.ip << " " << c.device << " " << c.user << " " << call.target;
        if (!out.audits.empty()) {
          EXPECT_EQ(out.audits.back().fields["user"], c.user);
        }
      } else {
        EXPECT_TRUE(out.passed || out.status() == 200)
            << c.ip << " " << c.device << " " << c.user << " " << call.target << ": " << out;
      }
    }
  }
}

TEST_F(GuardPluginTest, ClusterBlocklistHoldsWithinItsMaxAge) {
  ASSERT_TRUE(get("/").passed);  // the worker's first read: no document yet
  writeBlocklist({BlockEntry{BlockEntry::Kind::kIp, "10.0.0.1", 0}});
  Outcome fresh = get("/");  // the copy read a moment ago still decides
  EXPECT_TRUE(fresh.passed);
  EXPECT_EQ(fresh.head, Verdict::kContinue);
  advance(kBlocklistMaxAge);
  Outcome out = get("/");
  EXPECT_EQ(out.head, Verdict::kStop);  // it waited for the document
  EXPECT_TRUE(refused(out, 403, "blocked"));
  EXPECT_TRUE(refused(run(keysCall("sess-A", "{}")), 403, "blocked"));
  EXPECT_TRUE(refused(get("/_tessera/time"), 403, "blocked"));
  context_.ip = "::ffff:10.0.0.1";
  EXPECT_TRUE(refused(get("/"), 403, "blocked"));
  context_.ip = "10.0.0.2";
  EXPECT_TRUE(get("/").passed);
}

TEST_F(GuardPluginTest, ClusterBlocklistRefreshedInTheBackground) {
  ASSERT_TRUE(get("/").passed);
  writeBlocklist({BlockEntry{BlockEntry::Kind::kDevice, std::string(kDevice), 0}});
  advance(kBlocklistRefresh);
  // Old enough to read again, young enough to decide with: this one passes and starts the read.
  Outcome out = get("/");
  EXPECT_TRUE(out.passed);
  EXPECT_EQ(out.head, Verdict::kContinue);
  EXPECT_TRUE(refused(get("/"), 403, "blocked"));
}

// blocklist.h: "a request that finds it older than kBlocklistMaxAge waits for a fresh read". So an
// entry the admin removes stops blocking within kBlocklistMaxAge, also for the client it blocked.
// A worker keeps a session's keys for a short while: a change made elsewhere (another node's
// logout, here written straight into the store) holds here once the copy is older than 800 ms.
TEST_F(GuardPluginTest, AWorkersCopyOfTheKeysIsReadAgainAfterItsMaxAge) {
  AgreedKey k = agree("sess-A");
  std::string key = keySlotKey("sess-A", k.keyid);
  Signing s;
  s.nonce = "copy-1";
  ASSERT_TRUE(run(signedCall(k, "sess-A", s)).passed);
  writeStore(key, sealer_->seal(key, R"({"keys":[]})"));
  advance(milliseconds(799));
  s.nonce = "copy-2";
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);  // this worker's copy, not yet re-read
  advance(milliseconds(1));
  s.nonce = "copy-3";
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key"));
}

// A key agreed on another worker is not in this worker's copy yet: the store is asked again
// rather than refusing the key. That holds for a key in another slot, and for one that took the
// slot of this worker's copy (a session's fifth key takes the first one's slot).
TEST_F(GuardPluginTest, AKeyAgreedElsewhereIsFoundDespiteThisWorkersCopy) {
  AgreedKey k = agree("sess-A");
  ASSERT_EQ(k.keyid[0], '0');
  Signing s;
  s.nonce = "mine";
  ASSERT_TRUE(run(signedCall(k, "sess-A", s)).passed);  // this worker now holds a copy
  auto writeKey = [&](const AgreedKey& key) {
    std::string where = keySlotKey("sess-A", key.keyid);
    Json record = {{"keys", {{{"id", key.keyid}, {"k", base64Encode(key.key)}}}}};
    writeStore(where, sealer_->seal(where, record.dump()));
  };
  AgreedKey other{"1elsewhere", std::string(32, 'k')};
  writeKey(other);
  s.nonce = "theirs";
  EXPECT_TRUE(run(signedCall(other, "sess-A", s)).passed);
  s.nonce = "mine-again";
  EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed);

  AgreedKey newer{"0newer", std::string(32, 'n')};
  writeKey(newer);
  s.nonce = "newer";
  EXPECT_TRUE(run(signedCall(newer, "sess-A", s)).passed);
  s.nonce = "replaced";
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key"));
}

// Two pages of one session agree keys at the same time: both keys work (each agreement takes a
// slot of its own; a read-add-write of one list would keep only the later one).
TEST_F(GuardPluginTest, KeysAgreedAtTheSameTimeAreBothKept) {
  ClientKey mine[2] = {newClientKey(), newClientKey()};
  FakeCallbacks callbacks[2];
  std::unique_ptr<Plugin> plugins[2];
  std::vector<std::unique_ptr<FakeRequest>> requests;
  for (int i = 0; i < 2; ++i) {
    Call call = keysCall("sess-A", mine[i].body);
    plugins[i] = factory_->create(context_, callbacks[i]);
    requests.push_back(
        std::make_unique<FakeRequest>(call.method, call.target, call.headers, "shop.test"));
    if (plugins[i]->onRequestHeaders(*requests.back()) == Verdict::kStop) {  // the blocklist
      ASSERT_TRUE(stepUntil(base_.get(), [&] { return callbacks[i].resumes == 1; }));
    }
    ASSERT_TRUE(callbacks[i].replies.empty());
    ASSERT_TRUE(plugins[i]->wantsBody());
  }
  // Both wait on the store before either has finished.
  for (int i = 0; i < 2; ++i) {
    Call call = keysCall("sess-A", mine[i].body);
    ASSERT_EQ(plugins[i]->onRequestBody(*requests[i], call.body[0], true), Verdict::kStop);
  }
  ASSERT_TRUE(stepUntil(
      base_.get(), [&] { return !callbacks[0].replies.empty() && !callbacks[1].replies.empty(); }));
  AgreedKey keys[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(callbacks[i].replies.size(), 1u);
    ASSERT_EQ(callbacks[i].replies[0].status, 200) << callbacks[i].replies[0].body;
    keys[i] = finishAgreement(mine[i], callbacks[i].replies[0].body, "sess-A", 24 * 60 * 60);
  }
  EXPECT_NE(keys[0].keyid, keys[1].keyid);
  Signing s;
  for (int i = 0; i < 2; ++i) {
    s.nonce = "both-" + std::to_string(i);
    EXPECT_TRUE(run(signedCall(keys[i], "sess-A", s)).passed) << i;
  }
}

TEST_F(GuardPluginTest, ClusterBlocklistRemovalHoldsWithinItsMaxAge) {
  ASSERT_TRUE(get("/").passed);
  writeBlocklist({BlockEntry{BlockEntry::Kind::kIp, "10.0.0.1", 0}});
  advance(kBlocklistMaxAge);
  EXPECT_TRUE(refused(get("/"), 403, "blocked"));
  writeBlocklist({});
  advance(kBlocklistMaxAge);
  Outcome out = get("/");
  EXPECT_TRUE(out.passed) << out;
  EXPECT_EQ(out.head, Verdict::kStop);  // it waited for the document
}

TEST_F(GuardPluginTest, ClusterBlocklistEntriesExpire) {
  auto f = factory("user_header: X-User-Id\n");
  Call call{"GET", "/", {{"Host", "shop.test"}, {"X-User-Id", "mallory"}}};
  ASSERT_TRUE(run(*f, call).passed);
  // 12:00:15.123; the entry holds until 12:00:16.
  writeBlocklist({BlockEntry{BlockEntry::Kind::kUser, "mallory", kStartSeconds + 1}});
  advance(kBlocklistMaxAge);  // 15.923: read again, and blocked
  Outcome out = run(*f, call);
  EXPECT_TRUE(refused(out, 403, "blocked"));
  // 16.023: the copy read 100 ms ago still holds the entry, but it has expired.
  advance(milliseconds(100));
  out = run(*f, call);
  EXPECT_TRUE(out.passed) << out;
  EXPECT_EQ(out.head, Verdict::kContinue);  // decided without reading the document again
  advance(seconds(5));  // read again: the expired entry is still in the document
  out = run(*f, call);
  EXPECT_TRUE(out.passed) << out;
  EXPECT_EQ(out.head, Verdict::kStop);
  // A live entry for someone else does not block mallory.
  writeBlocklist({BlockEntry{BlockEntry::Kind::kUser, "trudy", kStartSeconds + 3600}});
  advance(kBlocklistMaxAge);
  EXPECT_TRUE(run(*f, call).passed);
}

TEST_F(GuardPluginTest, AnUnreadableBlocklistKeepsTheLastCopy) {
  ASSERT_TRUE(get("/").passed);
  writeBlocklist({BlockEntry{BlockEntry::Kind::kIp, "10.0.0.1", 0}});
  advance(kBlocklistMaxAge);
  EXPECT_EQ(get("/").status(), 403);
  // Not sealed, or sealed under another key: memcached can neither forge it nor lift a block.
  for (std::string forged :
       {Blocklist().serialize(), sealer_->seal("another key", Blocklist().serialize()),
        cache::Sealer::ephemeral()->seal(kBlocklistKey, Blocklist().serialize())}) {
    writeStore(kBlocklistKey, forged);
    advance(kBlocklistMaxAge);
    context_.ip = "10.0.0.2";  // a client the copy does not block reads the document again
    Outcome out = get("/");
    EXPECT_TRUE(out.passed) << out;
    EXPECT_EQ(out.head, Verdict::kStop);
    EXPECT_EQ(out.count("blocklist_unreadable"), 1);
    context_.ip = "10.0.0.1";
    EXPECT_TRUE(refused(get("/"), 403, "blocked"));
  }
}

// --- Sealed replies ------------------------------------------------------------------------------

TEST_F(GuardPluginTest, SealedRepliesOpenWithTheAgreedKey) {
  auto f = factory("seal_responses: true\n");
  AgreedKey k = agree(*f, "sess-A");
  Call call = signedCall(k, "sess-A");
  call.headers.push_back({"Accept-Encoding", "gzip, br"});
  call.response_headers = {{"Content-Type", "application/json"}};
  call.response_body = R"({"order":42})";
  Outcome out = run(*f, call);
  ASSERT_TRUE(out.passed) << out;
  // Asked for uncompressed, so that the SDK can use what it opens.
  EXPECT_FALSE(Outcome::find(out.forwarded, "Accept-Encoding").has_value());
  EXPECT_EQ(out.responseHeader("Content-Type"), "application/tessera-sealed");
  EXPECT_EQ(out.count("sealed"), 1);
  ASSERT_TRUE(out.response_body.has_value());
  auto opened = crypto_->openReply(k.key, k.keyid, *out.response_body);
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->first, "application/json");
  EXPECT_EQ(opened->second, R"({"order":42})");
  EXPECT_FALSE(crypto_->openReply(k.key, "another keyid", *out.response_body).has_value());

  // A reply compressed all the same is never sent unsealed.
  Signing s;
  s.nonce = "nonce-2";
  Call compressed = signedCall(k, "sess-A", s);
  compressed.response_headers = {{"Content-Type", "text/html"}, {"Content-Encoding", "gzip"}};
  compressed.response_body =
      std::string("\x1f\x8b\x08 secret order page");  // gzip magic, then text
  out = run(*f, compressed);
  ASSERT_TRUE(out.passed) << out;
  EXPECT_EQ(out.responseHeader("X-Tessera-Guard"), "seal_refused_encoded");
  EXPECT_FALSE(out.responseHeader("Content-Encoding").has_value());
  EXPECT_EQ(out.responseHeader("Content-Type"), "text/plain");
  EXPECT_EQ(out.response_body->find("secret"), std::string::npos);
  EXPECT_EQ(out.count("seal_refused_encoded"), 1);

  // Only the replies to verified requests are sealed.
  Call page{"GET", "/", {{"Host", "shop.test"}, {"Accept-Encoding", "gzip"}}};
  page.response_headers = {{"Content-Type", "text/html"}};
  page.response_body = "<p>hello</p>";
  out = run(*f, page);
  EXPECT_EQ(out.response_body, "<p>hello</p>");
  EXPECT_EQ(out.responseHeader("Content-Type"), "text/html");
  EXPECT_TRUE(Outcome::find(out.forwarded, "Accept-Encoding").has_value());
}

TEST_F(GuardPluginTest, RepliesAreNotSealedByDefault) {
  AgreedKey k = agree("sess-A");
  Call call = signedCall(k, "sess-A");
  call.headers.push_back({"Accept-Encoding", "gzip"});
  call.response_headers = {{"Content-Type", "application/json"}};
  call.response_body = R"({"order":42})";
  Outcome out = run(call);
  ASSERT_TRUE(out.passed) << out;
  EXPECT_EQ(out.response_body, R"({"order":42})");
  EXPECT_EQ(out.responseHeader("Content-Type"), "application/json");
  EXPECT_TRUE(Outcome::find(out.forwarded, "Accept-Encoding").has_value());
}

// --- Logout --------------------------------------------------------------------------------------

class GuardLogoutTest : public GuardPluginTest,
                        public ::testing::WithParamInterface<const char*> {};

// A response that clears the session cookie, or sets another value (a new login), deletes the keys
// agreed under the old one.
TEST_P(GuardLogoutTest, RemovesTheSessionsKeys) {
  AgreedKey k = agree("sess-A");
  AgreedKey second_page = agree("sess-A");  // in the next slot
  AgreedKey other = agree("sess-B");
  Signing s;
  s.nonce = "before";
  ASSERT_TRUE(run(signedCall(k, "sess-A", s)).passed);
  s.nonce = "before-2";
  ASSERT_TRUE(run(signedCall(second_page, "sess-A", s)).passed);
  Call logout{"POST", "/logout", {{"Host", "shop.test"}, {"Cookie", "SESSIONID=sess-A"}}};
  logout.set_cookies = {"theme=dark", GetParam()};
  Outcome out = run(logout);
  ASSERT_TRUE(out.passed);
  EXPECT_EQ(out.response, Verdict::kStop);
  EXPECT_EQ(out.count("keys_removed"), 1);
  s.nonce = "after";
  EXPECT_TRUE(refused(run(signedCall(k, "sess-A", s)), 401, "unknown_key"));
  s.nonce = "after-2";
  EXPECT_TRUE(refused(run(signedCall(second_page, "sess-A", s)), 401, "unknown_key"));
  EXPECT_TRUE(run(signedCall(other, "sess-B", s)).passed);  // only that session's
}

// The request ends while its logout response waits for the removes (the client went away): every
// key of the session goes all the same.
TEST_F(GuardPluginTest, ALogoutCutShortStillRemovesEveryKey) {
  std::vector<AgreedKey> keys;
  for (int i = 0; i < 3; ++i) keys.push_back(agree("sess-A"));
  FakeCallbacks callbacks;
  std::unique_ptr<Plugin> plugin = factory_->create(context_, callbacks);
  FakeRequest request("POST", "/logout", {{"Host", "shop.test"}, {"Cookie", "SESSIONID=sess-A"}},
                      "shop.test");
  if (plugin->onRequestHeaders(request) == Verdict::kStop) {  // the blocklist
    ASSERT_TRUE(stepUntil(base_.get(), [&] { return callbacks.resumes == 1; }));
  }
  FakeResponse response(std::vector<HeaderField>{{"Set-Cookie", "SESSIONID=; Max-Age=0"}});
  ASSERT_EQ(plugin->onResponseHeaders(response), Verdict::kStop);
  plugin->onDestroy();
  plugin.reset();
  stepIdle(base_.get());
  Signing s;
  for (size_t i = 0; i < keys.size(); ++i) {
    s.nonce = "gone-" + std::to_string(i);
    EXPECT_TRUE(refused(run(signedCall(keys[i], "sess-A", s)), 401, "unknown_key")) << i;
  }
  // The count went too: the next key takes the first slot again.
  EXPECT_EQ(agree("sess-A").keyid[0], '0');
}

INSTANTIATE_TEST_SUITE_P(
    Cookies, GuardLogoutTest,
    ::testing::Values("SESSIONID=; Path=/; Max-Age=0",
                      "SESSIONID=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                      "SESSIONID=deleted; Max-Age=0",
                      "SESSIONID=sess-NEW; Path=/; HttpOnly; Secure",
                      // The same value, expired: the cookie is cleared.
                      "SESSIONID=sess-A; Path=/; Max-Age=0",
                      "SESSIONID=sess-A; Expires=Thu, 01 Jan 1970 00:00:00 GMT"));

TEST_F(GuardPluginTest, OtherResponsesKeepTheKeys) {
  AgreedKey k = agree("sess-A");
  int n = 0;
  for (const char* line : {"SESSIONID=sess-A; Path=/; Max-Age=3600", "theme=; Max-Age=0",
                           "sessionid=; Max-Age=0", "SESSIONID"}) {
    Call call{"GET", "/account", {{"Host", "shop.test"}, {"Cookie", "SESSIONID=sess-A"}}};
    call.set_cookies = {line};
    Outcome out = run(call);
    EXPECT_TRUE(out.passed);
    EXPECT_EQ(out.response, Verdict::kContinue) << line;
    Signing s;
    s.nonce = "n-" + std::to_string(++n);
    EXPECT_TRUE(run(signedCall(k, "sess-A", s)).passed) << line;
  }
  // Without a session cookie on the request there is nothing to remove: a login only notes the
  // new session's life.
  Call login{"POST", "/login", {{"Host", "shop.test"}}};
  login.set_cookies = {"SESSIONID=sess-Z"};
  Outcome out = run(login);
  EXPECT_EQ(out.response, Verdict::kStop);
  EXPECT_EQ(out.count("keys_removed"), 0);
}

// A key lives as long as the session whose login went through the plugin; a session it never
// saw start gets key_lifetime.
TEST_F(GuardPluginTest, AKeyLivesAsLongAsItsSession) {
  Call login{"POST", "/login", {{"Host", "shop.test"}}};
  login.set_cookies = {"SESSIONID=sess-L; Path=/; Max-Age=120"};
  ASSERT_EQ(run(login).response, Verdict::kStop);
  advance(seconds(20));
  AgreedKey k = agree(*factory_, "sess-L", 100);
  Signing s;
  s.nonce = "alive";
  EXPECT_TRUE(run(signedCall(k, "sess-L", s)).passed);
  advance(seconds(100));
  s.nonce = "gone";
  EXPECT_TRUE(refused(run(signedCall(k, "sess-L", s)), 401, "unknown_key"));
  agree(*factory_, "sess-unseen");  // 24 h
}

}  // namespace
}  // namespace tessera::plugins::guard
