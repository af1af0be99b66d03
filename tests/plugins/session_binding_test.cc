// session_binding: its config, and the plugin on a real MemoryStore driven by a stepped event loop
// (no sleeps), behind a fake proxy: binding at login, the device check, logout, cookie lifetimes,
// cookie syntax, store failures, and a request that ends while its lookup is pending.

#include "plugins/session_binding/session_binding.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cache/memory_store.h"
#include "cache/pending_ops.h"
#include "plugins/session_binding/session_binding_config.h"
#include "tests/plugins/fakes.h"

namespace tessera::plugins {
namespace {

using cache::Millis;
using cache::Seconds;
using std::chrono::hours;
using std::chrono::minutes;
using Config = SessionBindingConfig;
using testing::FakeCallbacks;
using testing::FakeContext;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::Reply;

// SHA-256("abc"), the FIPS 180-2 test vector: the store key of the cookie value "abc".
constexpr std::string_view kAbcKey =
    "bind:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

// --- Config -----------------------------------------------------------------------------------

Config parse(const std::string& yaml) { return parseSessionBindingConfig(YAML::Load(yaml)); }

TEST(SessionBindingConfigTest, Defaults) {
  Config config = parse("type: session_binding\ncookies: [SESSIONID]\n");
  EXPECT_EQ(config.cookies, std::vector<std::string>{"SESSIONID"});
  EXPECT_EQ(config.attributes, (std::vector<std::string>{"ip", "user_agent"}));
  EXPECT_EQ(config.ipv4_prefix, 32);
  EXPECT_EQ(config.ipv6_prefix, 64);
  EXPECT_EQ(config.on_mismatch, Config::OnMismatch::kReject);
  EXPECT_EQ(config.unknown, Config::Unknown::kAllow);
  EXPECT_EQ(config.default_lifetime, hours(24));
  EXPECT_EQ(config.timeout, Millis(50));
}

TEST(SessionBindingConfigTest, EveryKey) {
  Config config = parse(R"(type: session_binding
cookies: [SESSIONID, remember_me]
attributes: [ja4, ip, user_agent, header:X-Device-Id]
ipv4_prefix: 24
ipv6_prefix: 48
on_mismatch: log
unknown: reject
default_lifetime: 90m
timeout: 2s
)");
  EXPECT_EQ(config.cookies, (std::vector<std::string>{"SESSIONID", "remember_me"}));
  // The header's name is lower-cased: its spelling in the config must not change fingerprints.
  EXPECT_EQ(config.attributes,
            (std::vector<std::string>{"ja4", "ip", "user_agent", "header:x-device-id"}));
  EXPECT_EQ(config.ipv4_prefix, 24);
  EXPECT_EQ(config.ipv6_prefix, 48);
  EXPECT_EQ(config.on_mismatch, Config::OnMismatch::kLog);
  EXPECT_EQ(config.unknown, Config::Unknown::kReject);
  EXPECT_EQ(config.default_lifetime, minutes(90));
  EXPECT_EQ(config.timeout, Millis(2000));
}

TEST(SessionBindingConfigTest, DurationUnitsAndBounds) {
  Config config = parse("cookies: [S]\ndefault_lifetime: 1500ms\ntimeout: 1\nipv4_prefix: 0\n");
  EXPECT_EQ(config.default_lifetime, Seconds(2));  // the store counts whole seconds: rounded up
  EXPECT_EQ(config.timeout, Millis(1000));         // bare digits are seconds, as in conf/
  EXPECT_EQ(config.ipv4_prefix, 0);
  EXPECT_EQ(parse("cookies: [S]\nipv6_prefix: 128\n").ipv6_prefix, 128);
  EXPECT_EQ(parse("cookies: [S]\ndefault_lifetime: 9600h\n").default_lifetime, hours(9600));
}

struct BadConfig {
  const char* name;
  const char* yaml;
  const char* path;
  int line;
  int column;
  const char* message;  // a substring of what()
};

class SessionBindingConfigErrorTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(SessionBindingConfigErrorTest, NamesKeyLineAndColumn) {
  const BadConfig& bad = GetParam();
  try {
    parse(bad.yaml);
    ADD_FAILURE() << "accepted:\n" << bad.yaml;
  } catch (const PluginConfigError& e) {
    EXPECT_EQ(e.key_path, bad.path);
    EXPECT_EQ(e.line, bad.line);
    EXPECT_EQ(e.column, bad.column);
    EXPECT_NE(std::string(e.what()).find(bad.message), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SessionBindingConfigErrorTest,
    ::testing::Values(
        BadConfig{"UnknownKey", "type: session_binding\ncookies: [S]\n  \ncookie_name: S\n",
                  "cookie_name", 4, 1, "unknown key"},
        BadConfig{"BadAttribute", "cookies: [S]\nattributes: [ip, mac]\n", "attributes[1]", 2, 18,
                  "expected ip, ja4, user_agent or header:NAME"},
        BadConfig{"HeaderWithoutName", "cookies: [S]\nattributes: [\"header:\"]\n", "attributes[0]",
                  2, 14, "header name"},
        BadConfig{"EmptyAttributes", "cookies: [S]\nattributes: []\n", "attributes", 2, 13,
                  "must not be empty"},
        BadConfig{"EmptyCookies", "type: session_binding\ncookies: []\n", "cookies", 2, 10,
                  "must not be empty"},
        BadConfig{"MissingCookies", "type: session_binding\nunknown: allow\n", "cookies", 1, 1,
                  "required"},
        BadConfig{"CookiesNotAList", "cookies: SESSIONID\n", "cookies", 1, 10, "expected a list"},
        BadConfig{"BadCookieName", "cookies:\n  - SESSIONID\n  - \"a;b\"\n", "cookies[1]", 3, 5,
                  "cookie name"},
        BadConfig{"EmptyCookieItem", "cookies:\n  - SESSIONID\n  -\n", "cookies[1]", 2, 3,
                  "expected a cookie name"},
        BadConfig{"DuplicateCookie", "cookies: [S, T, S]\n", "cookies[2]", 1, 17, "duplicate"},
        BadConfig{"DuplicateKey", "cookies: [S]\nunknown: allow\nunknown: reject\n", "unknown", 3,
                  1, "duplicate key"},
        BadConfig{"Ipv4PrefixTooLong", "cookies: [S]\nipv4_prefix: 33\n", "ipv4_prefix", 2, 14,
                  "0 to 32"},
        BadConfig{"Ipv6PrefixTooLong", "cookies: [S]\nipv6_prefix: 129\n", "ipv6_prefix", 2, 14,
                  "0 to 128"},
        BadConfig{"NegativePrefix", "cookies: [S]\nipv4_prefix: -1\n", "ipv4_prefix", 2, 14,
                  "0 to 32"},
        BadConfig{"OnMismatch", "cookies: [S]\non_mismatch: drop\n", "on_mismatch", 2, 14,
                  "expected reject or log"},
        BadConfig{"Unknown", "cookies: [S]\nunknown: yes\n", "unknown", 2, 10,
                  "expected allow or reject"},
        BadConfig{"LifetimeUnit", "cookies: [S]\ndefault_lifetime: 1d\n", "default_lifetime", 2, 19,
                  "duration"},
        BadConfig{"LifetimeTooLong", "cookies: [S]\ndefault_lifetime: 9601h\n", "default_lifetime",
                  2, 19, "400 days"},
        BadConfig{"ZeroTimeout", "cookies: [S]\ntimeout: 0ms\n", "timeout", 2, 10,
                  "greater than 0"},
        BadConfig{"NullTimeout", "cookies: [S]\ntimeout:\n", "timeout", 2, 1, "duration"},
        BadConfig{"OtherType", "type: jwt\ncookies: [S]\n", "type", 1, 7, "session_binding"},
        BadConfig{"NotAMap", "- cookies\n", "", 1, 1, "expected a map"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) { return std::string(info.param.name); });

TEST(SessionBindingConfigTest, FactoryMakerRefusesABadNode) {
  EXPECT_THROW(makeSessionBindingFactory("b", YAML::Load("cookies: []\n")), PluginConfigError);
  EXPECT_NE(makeSessionBindingFactory("b", YAML::Load("cookies: [S]\n")), nullptr);
}

// --- A fake proxy around the plugin -----------------------------------------------------------

struct EventBaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;

// Steps the loop (blocking until the next event) until `cond` holds; gives up rather than hang.
template <typename Cond>
bool stepUntil(event_base* base, Cond cond, int max_steps = 1000) {
  for (int i = 0; i < max_steps && !cond(); ++i) event_base_loop(base, EVLOOP_ONCE);
  return cond();
}

// Runs the loop until `d` has passed on it: every timer due by then (op deadlines) has fired.
void runFor(event_base* base, Millis d) {
  bool done = false;
  event* timer = evtimer_new(
      base, [](evutil_socket_t, short, void* flag) { *static_cast<bool*>(flag) = true; }, &done);
  timeval tv{0, static_cast<suseconds_t>(std::chrono::microseconds(d).count())};
  evtimer_add(timer, &tv);
  EXPECT_TRUE(stepUntil(base, [&] { return done; }));
  event_free(timer);
}

// The real store underneath, with a count of the calls made to it. In kStall mode gets are never
// answered (they time out); in kFail mode they fail. Either way the callback comes from the loop.
class ProbeStore : public cache::Store {
 public:
  enum class Mode { kForward, kStall, kFail };

  ProbeStore(std::unique_ptr<cache::Store> inner, event_base* base)
      : inner_(std::move(inner)), own_(cache::PendingOps::create(base)) {}
  ~ProbeStore() override { own_->shutdown(); }

  cache::OpId get(std::string_view key, Millis timeout, cache::Callback done) override {
    ++gets;
    if (mode == Mode::kForward) return inner_->get(key, timeout, std::move(done));
    cache::OpId id = own_->start(timeout, std::move(done));
    own_ids_.insert(id);
    if (mode == Mode::kFail) own_->complete(id, cache::Result{cache::Status::kError, {}});
    return id;
  }
  cache::OpId set(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
                  cache::Callback done) override {
    ++sets;
    last_ttl = ttl;
    return inner_->set(key, value, ttl, timeout, std::move(done));
  }
  cache::OpId add(std::string_view key, std::string_view value, Seconds ttl, Millis timeout,
                  cache::Callback done) override {
    return inner_->add(key, value, ttl, timeout, std::move(done));
  }
  cache::OpId remove(std::string_view key, Millis timeout, cache::Callback done) override {
    ++removes;
    return inner_->remove(key, timeout, std::move(done));
  }
  cache::OpId increment(std::string_view key, cache::Seconds ttl, Millis timeout,
                        cache::Callback done) override {
    return inner_->increment(key, ttl, timeout, std::move(done));
  }
  void cancel(cache::OpId id) override {
    cancels.push_back(id);
    // Ids of the two op tables may collide: cancel only in the one that issued it.
    if (own_ids_.erase(id)) {
      own_->cancel(id);
    } else {
      inner_->cancel(id);
    }
  }

  Mode mode = Mode::kForward;
  int gets = 0;
  int sets = 0;
  int removes = 0;
  std::optional<Seconds> last_ttl;
  std::vector<cache::OpId> cancels;

 private:
  std::unique_ptr<cache::Store> inner_;
  std::shared_ptr<cache::PendingOps> own_;
  std::set<cache::OpId> own_ids_;
};

// "Fri, 14 Mar 2025 12:00:00 GMT"
std::string httpDate(std::chrono::system_clock::time_point t) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto day = std::chrono::floor<std::chrono::days>(t);
  std::chrono::year_month_day ymd(day);
  std::chrono::hh_mm_ss hms(std::chrono::floor<std::chrono::seconds>(t - day));
  char out[64];
  std::snprintf(out, sizeof out, "%s, %02u %s %d %02d:%02d:%02d GMT",
                kDays[std::chrono::weekday(day).c_encoding()], unsigned(ymd.day()),
                kMonths[unsigned(ymd.month()) - 1], int(ymd.year()), int(hms.hours().count()),
                int(hms.minutes().count()), int(hms.seconds().count()));
  return out;
}

struct Outcome {
  Verdict verdict = Verdict::kContinue;
  Verdict response_verdict = Verdict::kContinue;
  size_t resumes = 0;
  std::vector<Reply> replies;

  bool passed() const { return verdict == Verdict::kContinue || resumes == 1; }
  bool forbidden() const { return replies.size() == 1 && replies[0].status == 403; }
};

class SessionBindingTest : public ::testing::Test {
 protected:
  // The proxy's side: the device is whatever `ip` says; sealing is the fake's strict transform.
  SessionBindingTest() {
    context_.on_post = [](std::string_view) {
      ADD_FAILURE() << "session_binding makes no HTTPS calls";
    };
  }

  std::shared_ptr<const Factory> factory(const std::string& extra = "",
                                         const std::string& cookies = "[SESSIONID]") {
    return makeSessionBindingFactory(
        "shop_binding", YAML::Load("type: session_binding\ncookies: " + cookies + "\n" + extra));
  }

  // One request through a fresh instance, as the proxy runs it: the request hook (and the wait
  // for the store), then, if the request went upstream, the response hook with `set_cookies`,
  // then onDestroy(). Afterwards the loop runs on, so a late callback would be seen.
  Outcome run(const Factory& factory, std::vector<HeaderField> request_headers,
              std::vector<std::string> set_cookies = {}) {
    FakeCallbacks callbacks;  // outlives the plugin, as the contract says
    std::unique_ptr<Plugin> plugin = factory.create(context_, callbacks);
    FakeRequest request("GET", "/account", std::move(request_headers));
    Outcome out;
    out.verdict = plugin->onRequestHeaders(request);
    // A refusal decided from the head alone may come inside the hook; a store answer never does.
    if (out.verdict == Verdict::kStop && callbacks.answers() == 0) {
      EXPECT_TRUE(stepUntil(base_.get(), [&] { return callbacks.answers() > 0; }));
    }
    out.resumes = callbacks.resumes;
    out.replies = callbacks.replies;
    if (out.passed() && !set_cookies.empty()) {
      std::vector<HeaderField> lines;
      for (const std::string& line : set_cookies) lines.push_back({"Set-Cookie", line});
      FakeResponse response(std::move(lines));
      // The response waits for its binding writes, and resumes once they are done.
      out.response_verdict = plugin->onResponseHeaders(response);
      if (out.response_verdict == Verdict::kStop) {
        EXPECT_EQ(callbacks.resumes, out.resumes);  // never inside the hook
        EXPECT_TRUE(stepUntil(base_.get(), [&] { return callbacks.resumes > out.resumes; }));
      }
    }
    plugin->onDestroy();
    plugin.reset();
    runFor(base_.get(), Millis(2));
    size_t waits = (out.verdict == Verdict::kStop) + (out.response_verdict == Verdict::kStop);
    EXPECT_EQ(callbacks.answers(), waits);
    return out;
  }

  Outcome withCookie(const Factory& f, const std::string& cookie) {
    return run(f, {{"Cookie", cookie}});
  }
  // A login: a request without the cookie whose response sets it.
  void login(const Factory& f, const std::string& set_cookie) {
    EXPECT_TRUE(run(f, {}, {set_cookie}).passed());
  }

  std::optional<std::string> stored(std::string_view key) {
    std::optional<cache::Result> result;
    store_.get(key, Millis(5000), [&](cache::Result r) { result = std::move(r); });
    EXPECT_TRUE(stepUntil(base_.get(), [&] { return result.has_value(); }));
    if (!result || result->status != cache::Status::kOk) return std::nullopt;
    return result->value;
  }

  // Both clocks: the store's (binding expiry) and the proxy's (Expires).
  void advance(std::chrono::seconds d) {
    *store_now_ += d;
    context_.wall_time += d;
  }

  // Declared first, so it is destroyed last: the stores deliver on it.
  EventBasePtr base_{event_base_new()};
  std::shared_ptr<std::chrono::steady_clock::time_point> store_now_ =
      std::make_shared<std::chrono::steady_clock::time_point>();
  cache::MemoryStoreBackend backend_{1000, [now = store_now_] { return *now; }};
  ProbeStore store_{backend_.connect(base_.get()), base_.get()};
  FakeContext context_{store_};
};

// --- Binding and checking ---------------------------------------------------------------------

TEST_F(SessionBindingTest, NoConfiguredCookieContinuesWithoutTheStore) {
  auto f = factory();
  EXPECT_EQ(run(*f, {}).verdict, Verdict::kContinue);
  EXPECT_EQ(run(*f, {{"Cookie", "theme=dark; lang=en"}}).verdict, Verdict::kContinue);
  EXPECT_EQ(run(*f, {{"Cookie", "sessionid=abc"}}).verdict, Verdict::kContinue);  // case matters
  EXPECT_EQ(run(*f, {{"Cookie", "SESSIONIDX=abc; XSESSIONID=abc"}}).verdict, Verdict::kContinue);
  EXPECT_EQ(run(*f, {{"Cookie", "SESSIONID=; SESSIONID=\"\""}}).verdict, Verdict::kContinue);
  EXPECT_EQ(run(*f, {{"Cookie", "SESSIONID"}}).verdict, Verdict::kContinue);
  EXPECT_EQ(store_.gets, 0);
  EXPECT_EQ(context_.fingerprints, 0);
  EXPECT_TRUE(context_.counts.empty());
}

TEST_F(SessionBindingTest, LoginStoresSealedFingerprintUnderHashedKey) {
  auto f = factory("attributes: [ip, header:X-Device-Id]\nipv4_prefix: 24\nipv6_prefix: 48\n");
  login(*f, "SESSIONID=abc; Path=/; HttpOnly; Secure; SameSite=Lax");
  EXPECT_EQ(context_.counted("bound"), 1);
  EXPECT_EQ(stored(kAbcKey), "sealed|" + std::string(kAbcKey) + "|ip=10.0.0.1");
  EXPECT_EQ(store_.last_ttl, hours(24));  // no Max-Age, no Expires: default_lifetime
  EXPECT_EQ(context_.last_attributes, (std::vector<std::string>{"ip", "header:x-device-id"}));
  EXPECT_EQ(context_.last_prefixes, std::make_pair(24, 48));
}

TEST_F(SessionBindingTest, TheLoginResponseWaitsUntilTheBindingIsStored) {
  auto f = factory();
  FakeCallbacks callbacks;
  std::unique_ptr<Plugin> plugin = f->create(context_, callbacks);
  FakeRequest request("GET", "/account", {});
  ASSERT_EQ(plugin->onRequestHeaders(request), Verdict::kContinue);
  FakeResponse response(std::vector<HeaderField>{{"Set-Cookie", "SESSIONID=abc"}});
  ASSERT_EQ(plugin->onResponseHeaders(response), Verdict::kStop);
  EXPECT_EQ(callbacks.answers(), 0u);
  EXPECT_TRUE(stepUntil(base_.get(), [&] { return callbacks.answers() > 0; }));
  EXPECT_EQ(callbacks.resumes, 1u);
  plugin->onDestroy();
  EXPECT_TRUE(stored(kAbcKey).has_value());  // the write landed before the response went on
}

TEST_F(SessionBindingTest, AResponseWithoutSessionCookiesDoesNotWait) {
  auto f = factory();
  FakeCallbacks callbacks;
  std::unique_ptr<Plugin> plugin = f->create(context_, callbacks);
  FakeResponse response(std::vector<HeaderField>{{"Set-Cookie", "theme=dark"}});
  EXPECT_EQ(plugin->onResponseHeaders(response), Verdict::kContinue);
}

TEST_F(SessionBindingTest, DestroyWhileBindingWritePendingCancelsIt) {
  auto f = factory();
  FakeCallbacks callbacks;
  std::unique_ptr<Plugin> plugin = f->create(context_, callbacks);
  FakeResponse response(
      std::vector<HeaderField>{{"Set-Cookie", "SESSIONID=abc"}, {"Set-Cookie", "SESSIONID=def"}});
  ASSERT_EQ(plugin->onResponseHeaders(response), Verdict::kStop);
  plugin->onDestroy();  // the client went away
  plugin.reset();
  EXPECT_EQ(store_.cancels.size(), 2u);
  runFor(base_.get(), Millis(5));
  EXPECT_EQ(callbacks.answers(), 0u);
}

TEST_F(SessionBindingTest, SameDevicePasses) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  Outcome out = withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(out.verdict, Verdict::kStop);
  EXPECT_EQ(out.resumes, 1u);
  EXPECT_EQ(context_.counted("match"), 1);
  EXPECT_TRUE(context_.audits.empty());
}

// Backends that percent-decode cookie values read "%61bc" as the session "abc": so does the
// binding, and a stolen session does not get through under another spelling.
TEST_F(SessionBindingTest, APercentEncodedSpellingIsTheSameBinding) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  EXPECT_EQ(withCookie(*f, "SESSIONID=%61b%63").resumes, 1u);  // the owner, spelled otherwise
  context_.ip = "10.0.0.2";
  EXPECT_TRUE(withCookie(*f, "SESSIONID=%61bc").forbidden());
  EXPECT_EQ(context_.counted("mismatch"), 1);
  EXPECT_EQ(context_.counted("unknown"), 0);
}

TEST_F(SessionBindingTest, OtherDeviceIsRefusedAndAudited) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  context_.ip = "10.0.0.2";
  Outcome out = withCookie(*f, "SESSIONID=abc");
  ASSERT_TRUE(out.forbidden());
  EXPECT_EQ(out.resumes, 0u);
  ASSERT_EQ(out.replies[0].headers.size(), 1u);
  EXPECT_EQ(out.replies[0].headers[0].name, "Content-Type");
  EXPECT_EQ(out.replies[0].headers[0].value, "text/plain");
  EXPECT_EQ(out.replies[0].body, "forbidden: session bound to another device\n");
  ASSERT_EQ(context_.audits.size(), 1u);
  EXPECT_EQ(context_.audits[0].event, "session_binding_mismatch");
  EXPECT_EQ(context_.audits[0].fields, (std::map<std::string, std::string, std::less<>>{
                                           {"plugin", "shop_binding"},
                                           {"cookie", "SESSIONID"},
                                           {"reason", "cookie presented by a different device"}}));
  EXPECT_EQ(context_.counted("mismatch"), 1);
  EXPECT_EQ(context_.counted("match"), 0);
}

TEST_F(SessionBindingTest, OnMismatchLogPassesAndAudits) {
  auto f = factory("on_mismatch: log\n");
  login(*f, "SESSIONID=abc");
  context_.ip = "10.0.0.2";
  Outcome out = withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(out.resumes, 1u);
  EXPECT_TRUE(out.replies.empty());
  ASSERT_EQ(context_.audits.size(), 1u);
  EXPECT_EQ(context_.audits[0].event, "session_binding_mismatch");
  EXPECT_EQ(context_.counted("mismatch"), 1);
}

TEST_F(SessionBindingTest, LoggedMismatchDoesNotRebindOnRefresh) {
  auto f = factory("on_mismatch: log\n");
  login(*f, "SESSIONID=abc");
  context_.ip = "10.0.0.2";
  // The backend refreshes the cookie it was shown (sliding expiry) for the other device.
  run(*f, {{"Cookie", "SESSIONID=abc"}}, {"SESSIONID=abc; Max-Age=3600"});
  EXPECT_EQ(context_.counted("rebind_refused"), 1);
  EXPECT_EQ(context_.counted("bound"), 1);  // the login only
  context_.ip = "10.0.0.1";
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("match"), 1);  // still the device that logged in
}

TEST_F(SessionBindingTest, RotationBindsTheNewValue) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  run(*f, {{"Cookie", "SESSIONID=abc"}}, {"SESSIONID=def; Path=/"});
  EXPECT_EQ(context_.counted("bound"), 2);
  EXPECT_TRUE(withCookie(*f, "SESSIONID=def").passed());
  context_.ip = "10.0.0.2";
  EXPECT_TRUE(withCookie(*f, "SESSIONID=def").forbidden());
}

TEST_F(SessionBindingTest, UnknownCookieAllowed) {
  auto f = factory("unknown: allow\n");
  Outcome out = withCookie(*f, "SESSIONID=never-set");
  EXPECT_EQ(out.resumes, 1u);
  EXPECT_EQ(context_.counted("unknown"), 1);
  EXPECT_TRUE(context_.audits.empty());
}

TEST_F(SessionBindingTest, UnknownCookieRejected) {
  auto f = factory("unknown: reject\n");
  Outcome out = withCookie(*f, "SESSIONID=never-set");
  ASSERT_TRUE(out.forbidden());
  EXPECT_EQ(out.replies[0].body, "forbidden: unknown session\n");
  EXPECT_EQ(context_.counted("unknown"), 1);
  ASSERT_EQ(context_.audits.size(), 1u);
  EXPECT_EQ(context_.audits[0].event, "session_binding_unknown");
  EXPECT_EQ(context_.audits[0].fields.at("plugin"), "shop_binding");
  EXPECT_EQ(context_.audits[0].fields.at("cookie"), "SESSIONID");
  EXPECT_EQ(context_.audits[0].fields.at("reason"), "cookie never bound");
}

TEST_F(SessionBindingTest, UnreadableBindingFollowsUnknown) {
  auto f = factory("unknown: reject\n");
  // Sealed for another key: a record copied from one binding onto another must not open.
  store_.set(kAbcKey, "sealed|bind:other|ip=10.0.0.1", Seconds(60), Millis(5000),
             [](cache::Result) {});
  EXPECT_TRUE(withCookie(*f, "SESSIONID=abc").forbidden());
  EXPECT_EQ(context_.counted("seal_open_failed"), 1);
  EXPECT_EQ(context_.audits.at(0).fields.at("reason"), "binding record cannot be opened");
}

// With unknown: allow the request goes on, but a record that fails authentication is still
// audited: someone wrote to the store, or a seal key went missing.
TEST_F(SessionBindingTest, AnUnreadableBindingIsAuditedEvenWhenAllowed) {
  auto f = factory("");  // unknown: allow, the default
  store_.set(kAbcKey, "sealed|bind:other|ip=10.0.0.1", Seconds(60), Millis(5000),
             [](cache::Result) {});
  EXPECT_EQ(withCookie(*f, "SESSIONID=abc").resumes, 1u);
  EXPECT_EQ(context_.counted("seal_open_failed"), 1);
  ASSERT_EQ(context_.audits.size(), 1u);
  EXPECT_EQ(context_.audits[0].event, "session_binding_seal_open_failed");
  EXPECT_EQ(context_.audits[0].fields.at("cookie"), "SESSIONID");
  // A binding that was simply never written is not a security event.
  context_.audits.clear();
  EXPECT_EQ(withCookie(*f, "SESSIONID=never-set").resumes, 1u);
  EXPECT_TRUE(context_.audits.empty());
}

TEST_F(SessionBindingTest, StoreTimeoutFollowsUnknown) {
  store_.mode = ProbeStore::Mode::kStall;
  auto allow = factory("timeout: 1ms\n");
  EXPECT_EQ(withCookie(*allow, "SESSIONID=abc").resumes, 1u);
  auto reject = factory("timeout: 1ms\nunknown: reject\n");
  EXPECT_TRUE(withCookie(*reject, "SESSIONID=abc").forbidden());
  EXPECT_EQ(context_.counted("timeout"), 2);
  EXPECT_EQ(context_.audits.at(0).fields.at("reason"), "binding store timed out");
}

TEST_F(SessionBindingTest, StoreErrorFollowsUnknown) {
  store_.mode = ProbeStore::Mode::kFail;
  EXPECT_EQ(withCookie(*factory(), "SESSIONID=abc").resumes, 1u);
  EXPECT_TRUE(withCookie(*factory("unknown: reject\n"), "SESSIONID=abc").forbidden());
  EXPECT_EQ(context_.counted("error"), 2);
  EXPECT_EQ(context_.audits.at(0).fields.at("reason"), "binding store failed");
}

// --- Logout -----------------------------------------------------------------------------------

class SessionBindingLogoutTest : public SessionBindingTest,
                                 public ::testing::WithParamInterface<std::string> {};

TEST_P(SessionBindingLogoutTest, ClearingTheCookieRemovesTheBinding) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  std::string clear = GetParam();
  if (clear == "expires-now") clear = "SESSIONID=abc; Expires=" + httpDate(context_.wall_time);
  run(*f, {{"Cookie", "SESSIONID=abc"}}, {clear});
  EXPECT_EQ(context_.counted("logout"), 1);
  EXPECT_EQ(context_.counted("bound"), 1);
  EXPECT_EQ(stored(kAbcKey), std::nullopt);
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("unknown"), 1);
}

INSTANTIATE_TEST_SUITE_P(
    Forms, SessionBindingLogoutTest,
    ::testing::Values("SESSIONID=deleted; Max-Age=0; Path=/", "SESSIONID=x; max-age=-1",
                      "SESSIONID=deleted; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                      "SESSIONID=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Path=/",  // PHP
                      "expires-now", "SESSIONID=; Path=/", "SESSIONID=\"\"",
                      " SESSIONID = ; Max-Age=3600"));

TEST_F(SessionBindingTest, ClearingAnotherCookieKeepsTheBinding) {
  auto f = factory("", "[SESSIONID, remember]");
  login(*f, "SESSIONID=abc");
  run(*f, {{"Cookie", "SESSIONID=abc"}}, {"remember=; Max-Age=0"});
  EXPECT_EQ(context_.counted("logout"), 0);
  EXPECT_EQ(store_.removes, 0);
  EXPECT_TRUE(withCookie(*f, "SESSIONID=abc").passed());
  EXPECT_EQ(context_.counted("match"), 2);
}

TEST_F(SessionBindingTest, ClearingWithoutARequestCookieRemovesNothing) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  run(*f, {}, {"SESSIONID=; Max-Age=0"});
  EXPECT_EQ(store_.removes, 0);
  EXPECT_EQ(context_.counted("logout"), 0);
  EXPECT_TRUE(stored(kAbcKey).has_value());
}

TEST_F(SessionBindingTest, LogoutAndLoginInOneResponse) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  run(*f, {{"Cookie", "SESSIONID=abc"}}, {"SESSIONID=; Max-Age=0", "SESSIONID=def"});
  EXPECT_EQ(stored(kAbcKey), std::nullopt);
  EXPECT_EQ(context_.counted("logout"), 1);
  EXPECT_EQ(context_.counted("bound"), 2);
  EXPECT_TRUE(withCookie(*f, "SESSIONID=def").passed());
  EXPECT_EQ(context_.counted("match"), 2);  // abc before its logout, then def
}

// --- Lifetimes --------------------------------------------------------------------------------

TEST_F(SessionBindingTest, MaxAgeIsTheBindingsLifetime) {
  auto f = factory();
  login(*f, "SESSIONID=abc; Max-Age=60; Expires=" + httpDate(context_.wall_time + hours(5)));
  EXPECT_EQ(store_.last_ttl, Seconds(60));  // Max-Age wins over Expires, as in browsers
  advance(Seconds(59));
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("match"), 1);
  advance(Seconds(2));
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("unknown"), 1);
}

TEST_F(SessionBindingTest, ExpiresIsTheBindingsLifetime) {
  auto f = factory();
  // Half a second into the current second: the lifetime is rounded up, never cut short.
  context_.wall_time += Millis(500);
  login(*f, "SESSIONID=abc; Expires=" + httpDate(context_.wall_time + Seconds(120)));
  EXPECT_EQ(store_.last_ttl, Seconds(120));
  advance(Seconds(119));
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("match"), 1);
  advance(Seconds(2));
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("unknown"), 1);
}

TEST_F(SessionBindingTest, DefaultLifetimeWhenNoneOrUnreadable) {
  auto f = factory("default_lifetime: 10m\n");
  login(*f, "SESSIONID=abc; Path=/");
  EXPECT_EQ(store_.last_ttl, minutes(10));
  login(*f, "SESSIONID=def; Expires=tomorrow");
  EXPECT_EQ(store_.last_ttl, minutes(10));
  login(*f, "SESSIONID=ghi; Expires=Fri, 31 Feb 2099 00:00:00 GMT");  // no such day
  EXPECT_EQ(store_.last_ttl, minutes(10));
  login(*f, "SESSIONID=jkl; Max-Age=soon");  // ignored, as browsers ignore it
  EXPECT_EQ(store_.last_ttl, minutes(10));
  advance(minutes(10) - Seconds(1));
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("match"), 1);
  advance(Seconds(2));
  withCookie(*f, "SESSIONID=abc");
  EXPECT_EQ(context_.counted("unknown"), 1);
}

TEST_F(SessionBindingTest, LifetimeIsCappedAt400Days) {
  auto f = factory();
  login(*f, "SESSIONID=abc; Max-Age=99999999999999999999999");
  EXPECT_EQ(store_.last_ttl, hours(24 * 400));
  login(*f, "SESSIONID=def; Expires=Fri, 31 Dec 9999 23:59:59 GMT");
  EXPECT_EQ(store_.last_ttl, hours(24 * 400));
  // RFC 850 form, two-digit year: 2049.
  login(*f, "SESSIONID=ghi; Expires=Friday, 31-Dec-49 23:59:59 GMT");
  EXPECT_EQ(store_.last_ttl, hours(24 * 400));
}

// --- Cookie syntax ----------------------------------------------------------------------------

TEST_F(SessionBindingTest, OtherSetCookiesAreIgnored) {
  auto f = factory();
  run(*f, {}, {"theme=dark; Max-Age=60", "SESSIONID", "sessionid=abc", "XSESSIONID=abc"});
  EXPECT_EQ(store_.sets, 0);
  EXPECT_TRUE(context_.counts.empty());
}

class SessionBindingCookieTest : public SessionBindingTest,
                                 public ::testing::WithParamInterface<std::vector<HeaderField>> {};

// Each request carries SESSIONID=abc somehow; each must be checked against the binding of "abc".
TEST_P(SessionBindingCookieTest, FindsTheSessionCookie) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  context_.ip = "10.0.0.2";
  EXPECT_TRUE(run(*f, GetParam()).forbidden());
  EXPECT_EQ(context_.counted("mismatch"), 1);
}

INSTANTIATE_TEST_SUITE_P(
    Forms, SessionBindingCookieTest,
    ::testing::Values(
        std::vector<HeaderField>{{"Cookie", "SESSIONID=abc"}},
        std::vector<HeaderField>{{"Cookie", "theme=dark; lang=en; SESSIONID=abc"}},
        std::vector<HeaderField>{{"Cookie", "  theme=dark ;SESSIONID = abc\t; lang=en  "}},
        std::vector<HeaderField>{{"Cookie", "SESSIONID=\"abc\""}},  // quoting dodges nothing
        std::vector<HeaderField>{{"Cookie", "SESSIONID=; SESSIONID=abc"}},
        std::vector<HeaderField>{{"Cookie", "flag; a=b=c; SESSIONID=abc"}},
        std::vector<HeaderField>{{"Cookie", "theme=dark"}, {"cookie", "SESSIONID=abc"}},
        std::vector<HeaderField>{
            {"Accept", "*/*"}, {"COOKIE", "x=1"}, {"Cookie", "SESSIONID=abc"}}));

TEST_F(SessionBindingTest, QuotedSetCookieBindsTheUnquotedValue) {
  auto f = factory();
  login(*f, "SESSIONID=\"abc\"; Path=/");
  EXPECT_TRUE(stored(kAbcKey).has_value());
  EXPECT_TRUE(withCookie(*f, "SESSIONID=abc").passed());
  EXPECT_EQ(context_.counted("match"), 1);
}

TEST_F(SessionBindingTest, MoreThanOneSessionCookieIsRefused) {
  auto f = factory("", "[SESSIONID, remember]");
  login(*f, "remember=r1");
  login(*f, "SESSIONID=s2");
  // Only one value could be checked; a backend might read another. Two of them: refused.
  EXPECT_TRUE(withCookie(*f, "remember=r1; SESSIONID=s2").forbidden());
  EXPECT_TRUE(withCookie(*f, "SESSIONID=s2; SESSIONID=zzz").forbidden());
  EXPECT_TRUE(run(*f, {{"Cookie", "SESSIONID=s2"}, {"Cookie", "SESSIONID=s2"}}).forbidden());
  EXPECT_EQ(context_.counted("ambiguous"), 3);
  EXPECT_TRUE(withCookie(*f, "remember=r1").passed());
}

// --- Lifecycle --------------------------------------------------------------------------------

TEST_F(SessionBindingTest, DestroyWhileLookupPendingCancelsIt) {
  for (ProbeStore::Mode mode : {ProbeStore::Mode::kForward, ProbeStore::Mode::kStall}) {
    store_.mode = mode;
    auto f = factory("timeout: 1ms\n");
    FakeCallbacks callbacks;
    std::unique_ptr<Plugin> plugin = f->create(context_, callbacks);
    FakeRequest request("GET", "/account", {{"Cookie", "SESSIONID=abc"}});
    ASSERT_EQ(plugin->onRequestHeaders(request), Verdict::kStop);
    plugin->onDestroy();  // the client went away
    plugin.reset();
    ASSERT_EQ(store_.cancels.size(), 1u);
    store_.cancels.clear();
    // Past the deadline: neither the result nor the timeout may reach the dead instance.
    runFor(base_.get(), Millis(5));
    EXPECT_EQ(callbacks.answers(), 0u);
    EXPECT_TRUE(context_.counts.empty());
  }
}

TEST_F(SessionBindingTest, FinishedLookupIsNotCancelled) {
  auto f = factory();
  withCookie(*f, "SESSIONID=abc");
  EXPECT_TRUE(store_.cancels.empty());
}

TEST_F(SessionBindingTest, InstancesOutliveTheirFactory) {
  auto f = factory();
  login(*f, "SESSIONID=abc");
  FakeCallbacks callbacks;
  std::unique_ptr<Plugin> plugin = f->create(context_, callbacks);
  f.reset();  // a config reload while the request waits
  FakeRequest request("GET", "/account", {{"Cookie", "SESSIONID=abc"}});
  ASSERT_EQ(plugin->onRequestHeaders(request), Verdict::kStop);
  EXPECT_TRUE(stepUntil(base_.get(), [&] { return callbacks.answers() > 0; }));
  EXPECT_EQ(callbacks.resumes, 1u);
  plugin->onDestroy();
}

}  // namespace
}  // namespace tessera::plugins
