#include "plugins/migration/migration.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>

#include "plugins/cookies.h"
#include "plugins/json_input.h"
#include "plugins/migration/migration_config.h"
#include "plugins/migration/origin_answer.h"
#include "plugins/migration/pass.h"

namespace tessera::plugins::migration {
namespace {

using Config = MigrationConfig;
using json = nlohmann::json;

// Pass requests and redeems are a few hundred bytes; anything far larger is not one.
constexpr size_t kMaxEndpointBody = 16 * 1024;
// How long a used jti stays marked. A pass is worthless after its exp anyway; the slack covers
// the clock drift that open() allows for iat.
constexpr cache::Seconds kUsedSlack{120};
// How long a remote target trusts the origin's word that a permit's session is live.
constexpr cache::Seconds kRemoteCheckInterval{5};

struct EvpMdFree {
  void operator()(EVP_MD* md) const { EVP_MD_free(md); }
};

// What every instance made by one factory reads; instances hold it, so a request in flight keeps
// its config even if a reload drops the factory first.
struct State {
  std::string name;
  Config config;
  std::unique_ptr<PassCodec> codec;  // origin only
  std::unique_ptr<EVP_MD, EvpMdFree> sha256;
};

// Origins of this process by instance name, for targets with origin: local. The newest factory
// of a name wins (a reload builds the new one before the old goes).
class OriginDirectory {
 public:
  static OriginDirectory& get() {
    static OriginDirectory directory;
    return directory;
  }
  void add(const std::shared_ptr<const State>& state) {
    std::lock_guard lock(mu_);
    origins_[state->name] = state;
  }
  // `name` empty: the only live origin, if there is exactly one.
  std::shared_ptr<const State> find(const std::string& name) {
    std::lock_guard lock(mu_);
    if (!name.empty()) {
      auto it = origins_.find(name);
      return it == origins_.end() ? nullptr : it->second.lock();
    }
    std::shared_ptr<const State> found;
    for (auto& [n, weak] : origins_) {
      std::shared_ptr<const State> s = weak.lock();
      if (!s) continue;
      if (found) return nullptr;
      found = std::move(s);
    }
    return found;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<const State>> origins_;
};

std::string hashed(const State& state, std::string_view value) {
  return cookies::sha256Hex(state.sha256.get(), value).value_or("");
}

// The reference of a session cookie's value, in its decoded form: a percent-encoded spelling of a
// revoked session is the same session (cookies::sessionCookieSha256Hex).
std::string sessionRefOf(const State& state, std::string_view cookie_value) {
  return cookies::sessionCookieSha256Hex(state.sha256.get(), cookie_value).value_or("");
}

std::string sessionKey(std::string_view sid) { return "mig:s:" + std::string(sid); }
std::string livePassKey(std::string_view sid) { return "mig:i:" + std::string(sid); }
std::string usedKey(std::string_view jti) { return "mig:u:" + std::string(jti); }
std::string nonceKey(std::string_view nonce_hash) { return "mig:n:" + std::string(nonce_hash); }
std::string permitKey(std::string_view permit_hash) { return "mig:p:" + std::string(permit_hash); }

// Endpoint bodies and records are flat objects; anything nested deeper is refused unparsed.
std::optional<json> parseObject(std::string_view text) { return parseJsonObject(text, 4); }

// A sealed JSON record the store returned for `key`; nullopt if absent, unreadable or not an
// object (every one of those is treated as "no record").
std::optional<json> openRecord(const Context& context, const std::string& key,
                               const cache::Result& r) {
  if (r.status != cache::Status::kOk) return std::nullopt;
  std::optional<std::string> plain = context.open(key, r.value);
  return plain ? parseObject(*plain) : std::nullopt;
}

int64_t unixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// One answer of the plugin's own: JSON, never cached.
struct Answer {
  int status = 200;
  json body;
  std::vector<HeaderField> headers;
};

// ---- Verification, the origin's side ---------------------------------------------------------

// The ordered checks of one verification, each a store call: used mark, then the session's live
// pass, then the session. Runs on the worker thread of the request that asked; `context` is that
// request's. The owner cancels it through cancel() when the request ends.
class Verification {
 public:
  using Done = std::function<void(Outcome)>;

  Verification(std::shared_ptr<const State> origin, Context& context, std::string pass,
               std::string device, std::string ip, Done done)
      : origin_(std::move(origin)),
        context_(context),
        pass_(std::move(pass)),
        device_(std::move(device)),
        ip_(std::move(ip)),
        done_(std::move(done)) {}

  void start() {
    std::optional<std::string> jti = PassCodec::peekJti(pass_);
    if (!jti) return finish(400, "malformed_pass");
    jti_ = *jti;
    std::string record =
        json{{"d", device_}, {"ip", ip_}}.dump(-1, ' ', false, json::error_handler_t::replace);
    std::string key = usedKey(jti_);
    cache::Seconds ttl = origin_->config.pass_ttl + kUsedSlack;
    pending_ = context_.store().add(key, context_.seal(key, record), ttl, timeout(),
                                    [this](cache::Result r) { onMarked(std::move(r)); });
  }

  void cancel() {
    if (pending_ != 0) context_.store().cancel(std::exchange(pending_, 0));
  }

 private:
  cache::Millis timeout() const { return origin_->config.timeout; }

  void finish(int status, std::string reason) {
    Outcome v;
    v.status = status;
    v.reason = std::move(reason);
    if (status == 200) {
      v.user = claims_.user;
      v.session_ref = claims_.session_ref;
    }
    done_(std::move(v));  // last step: may destroy this object
  }

  void onMarked(cache::Result r) {
    pending_ = 0;
    if (r.status == cache::Status::kExists) return onReplay();
    if (r.status != cache::Status::kOk) return finish(502, "store_unavailable");
    PassStatus s = origin_->codec->open(pass_, unixSeconds(context_.now()), claims_);
    switch (s) {
      case PassStatus::kOk:
        break;
      case PassStatus::kMalformed:
        return finish(400, "malformed_pass");
      default:
        return finish(401, std::string(passStatusName(s)));
    }
    std::string key = livePassKey(claims_.session_ref);
    pending_ = context_.store().get(key, timeout(), [this, key](cache::Result r) {
      pending_ = 0;
      onLivePass(key, std::move(r));
    });
  }

  void onLivePass(const std::string& key, cache::Result r) {
    if (r.status == cache::Status::kTimeout || r.status == cache::Status::kError) {
      return finish(502, "store_unavailable");
    }
    std::optional<json> live = openRecord(context_, key, r);
    // Redeemed already, replaced by a newer pass, or the session ended.
    if (!live || live->value("j", "") != jti_) return finish(401, "pass_not_live");
    std::string issued_to = live->value("d", "");
    if (issued_to != claims_.device || claims_.device != device_) {
      context_.audit(
          "migration_device_mismatch",
          {{"issued_to", issued_to}, {"pass_device", claims_.device}, {"redeemer", device_}});
      return finish(403, "device_mismatch");
    }
    std::string skey = sessionKey(claims_.session_ref);
    pending_ = context_.store().get(skey, timeout(), [this, skey](cache::Result r) {
      pending_ = 0;
      onSession(skey, std::move(r));
    });
  }

  void onSession(const std::string& key, cache::Result r) {
    if (r.status == cache::Status::kTimeout || r.status == cache::Status::kError) {
      return finish(502, "store_unavailable");
    }
    std::optional<json> session = openRecord(context_, key, r);
    if (!session) return finish(401, "no_origin_session");
    // Revoked because this very pass was replayed while this, the first use, was on its way: the
    // first use still wins (exactly one of many parallel redeems succeeds), and its permit dies
    // with the session at once. Revoked for any other reason: refused.
    if (session->value("r", 0) != 0 && session->value("rj", "") != jti_) {
      return finish(401, "no_origin_session");
    }
    // The pass is spent: the session may ask for another one.
    pending_ =
        context_.store().remove(livePassKey(claims_.session_ref), timeout(), [this](cache::Result) {
          pending_ = 0;
          finish(200, "redeemed");
        });
  }

  // A second verification of a used jti: the pass leaked. Revoke its session (and so every permit
  // made from it) and report both devices.
  void onReplay() {
    std::string key = usedKey(jti_);
    pending_ = context_.store().get(key, timeout(), [this, key](cache::Result r) {
      pending_ = 0;
      std::optional<json> first = openRecord(context_, key, r);
      first_device_ = first ? first->value("d", "") : "";
      first_ip_ = first ? first->value("ip", "") : "";
      // Only a pass that opens names a session to revoke (open() fills no claims for an expired
      // one; by then the session's live-pass record is gone too).
      if (origin_->codec->open(pass_, unixSeconds(context_.now()), claims_) != PassStatus::kOk) {
        audit("");
        return finish(409, "replay");
      }
      revoke();
    });
  }

  void revoke() {
    std::string key = sessionKey(claims_.session_ref);
    pending_ = context_.store().get(key, timeout(), [this, key](cache::Result r) {
      pending_ = 0;
      std::optional<json> session = openRecord(context_, key, r);
      if (!session) {
        audit(claims_.session_ref);
        return finish(409, "replay");
      }
      (*session)["r"] = 1;
      (*session)["rj"] = jti_;  // revoked by a replay of this pass
      std::string sealed = context_.seal(key, session->dump());
      pending_ = context_.store().set(key, sealed, origin_->config.session_lifetime, timeout(),
                                      [this](cache::Result) {
                                        pending_ = 0;
                                        audit(claims_.session_ref);
                                        finish(409, "replay");
                                      });
    });
  }

  void audit(const std::string& revoked_session) {
    context_.audit("migration_replay", {{"jti", jti_},
                                        {"first_device", first_device_},
                                        {"first_ip", first_ip_},
                                        {"second_device", device_},
                                        {"second_ip", ip_},
                                        {"revoked_session", revoked_session}});
  }

  std::shared_ptr<const State> origin_;
  Context& context_;
  std::string pass_;
  std::string device_;
  std::string ip_;
  Done done_;
  std::string jti_;
  PassClaims claims_;
  std::string first_device_;
  std::string first_ip_;
  cache::OpId pending_ = 0;
};

// ---- The per-request plugin ------------------------------------------------------------------

class Migration : public Plugin {
 public:
  Migration(std::shared_ptr<const State> state, Context& context, Callbacks& callbacks)
      : state_(std::move(state)),
        config_(state_->config),
        context_(context),
        callbacks_(callbacks) {}
  ~Migration() override { cancelAll(); }

  plugins::Verdict onRequestHeaders(Request& request) override;
  bool wantsBody() const override { return endpoint_ != Endpoint::kNone; }
  plugins::Verdict onRequestBody(Request& request, std::string_view chunk, bool last) override;
  plugins::Verdict onResponseHeaders(Response& response) override;
  void onDestroy() override { cancelAll(); }

 private:
  enum class Endpoint { kNone, kPass, kVerify, kSession, kRedeem };

  std::string loginUser(Response& response);
  // A valid permit: the target's backend (identity header) and the plugins after this one (the
  // shared "user") learn who it is, and the request goes on.
  void forwardUser(const std::string& user) {
    request_->setHeader(config_.user_identity_header, user);
    context_.share("user", user);
    callbacks_.resume();
  }

  void cancelAll() {
    if (pending_ != 0) context_.store().cancel(std::exchange(pending_, 0));
    if (call_ != 0) context_.cancelPost(std::exchange(call_, 0));
    if (verification_) verification_->cancel();
  }

  const std::string& device() {
    if (!device_) {
      device_ =
          context_.deviceFingerprint(config_.attributes, config_.ipv4_prefix, config_.ipv6_prefix);
    }
    return *device_;
  }

  // Answers the client, with a metric and (for refusals) an audit event. Last step: the request
  // may end, and this instance go, before it returns.
  plugins::Verdict reply(int status, std::string_view reason, json body = nullptr);
  plugins::Verdict refuse(int status, std::string_view reason) {
    return reply(status, reason, json{{"error", reason}});
  }

  // 401 for a session a replay revoked, with a Set-Cookie that makes the browser drop the cookie:
  // it can never work again, and a browser that kept sending it could not even reach the login.
  void refuseRevoked(const json& session);
  plugins::Verdict originRequest(Request& request);
  plugins::Verdict targetRequest(Request& request);
  void handlePass();
  void handleVerify();
  void handleSession();
  void checkRemoteSession(const std::string& permit_key, const std::string& sid,
                          const std::string& user);
  void handleRedeem();
  void onVerified(Outcome v);
  void checkPermit(const std::string& token);
  void onPermit(const std::string& key, cache::Result r);

  // The pass request, step by step.
  void passSession(const std::string& key, cache::Result r);
  void passNonce(cache::Result r);
  void passLive(cache::Result r);
  void passIssue();

  // A store call of this request; pending_ tracks it so that onDestroy() can cancel it.
  template <typename Fn>
  cache::Callback tracked(Fn fn) {
    return [this, fn = std::move(fn)](cache::Result r) mutable {
      pending_ = 0;
      fn(std::move(r));
    };
  }

  std::shared_ptr<const State> state_;
  const Config& config_;
  Context& context_;
  Callbacks& callbacks_;
  Endpoint endpoint_ = Endpoint::kNone;
  std::string body_;
  std::optional<std::string> device_;
  std::string session_ref_;  // origin: hex(sha256(session cookie)) of this request
  std::string pass_jti_;
  json session_;  // origin: the session record read for a pass request
  std::string nonce_;
  Request* request_ = nullptr;
  std::string default_cookie_path_;  // of an origin request, for the cookie its response sets
  cache::OpId pending_ = 0;
  uint64_t call_ = 0;
  std::unique_ptr<Verification> verification_;
  std::vector<HeaderField> extra_headers_;  // added to the next reply (the permit cookie)
};

plugins::Verdict Migration::reply(int status, std::string_view reason, json body) {
  context_.count(reason);
  if (status >= 400) {
    context_.audit("migration_" + std::string(reason),
                   {{"status", std::to_string(status)}, {"device", device()}});
  }
  std::vector<HeaderField> headers = {{"Content-Type", "application/json"},
                                      {"Cache-Control", "no-store"}};
  if (status == 405) headers.push_back({"Allow", "POST"});
  for (HeaderField& h : extra_headers_) headers.push_back(std::move(h));
  extra_headers_.clear();
  callbacks_.sendLocalReply(
      status, std::move(headers),
      body.is_null() ? "" : body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
  return plugins::Verdict::kStop;
}

plugins::Verdict Migration::onRequestHeaders(Request& request) {
  request_ = &request;
  std::string_view target = request.target();
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view prefix = config_.endpoint_prefix;
  if (path.starts_with(prefix) && path.substr(prefix.size()).starts_with("migration/")) {
    std::string_view name = path.substr(prefix.size() + 10);
    bool origin = config_.role == Config::Role::kOrigin;
    if (origin && name == "pass") endpoint_ = Endpoint::kPass;
    if (origin && name == "verify") endpoint_ = Endpoint::kVerify;
    if (origin && name == "session") endpoint_ = Endpoint::kSession;
    if (!origin && name == "redeem") endpoint_ = Endpoint::kRedeem;
    if (endpoint_ == Endpoint::kNone) return refuse(404, "unknown_endpoint");
    if (request.method() != "POST") {
      endpoint_ = Endpoint::kNone;
      return refuse(405, "method_not_allowed");
    }
    if ((endpoint_ == Endpoint::kVerify || endpoint_ == Endpoint::kSession) &&
        !context_.clientCertificateVerified()) {
      endpoint_ = Endpoint::kNone;
      return refuse(403, "verify_without_client_certificate");
    }
    if (request.contentLength().value_or(0) > kMaxEndpointBody) {
      return refuse(413, "body_too_large");
    }
    if (!request.hasBody()) return refuse(400, "malformed_body");
    return plugins::Verdict::kContinue;  // the body follows
  }
  if (config_.role != Config::Role::kOrigin) return targetRequest(request);
  // The request is gone by the response hooks: keep where a login's cookie would be filed.
  default_cookie_path_ = cookies::defaultPath(target);
  return originRequest(request);
}

plugins::Verdict Migration::onRequestBody(Request&, std::string_view chunk, bool last) {
  if (body_.size() + chunk.size() > kMaxEndpointBody) return refuse(413, "body_too_large");
  body_.append(chunk);
  if (!last) return plugins::Verdict::kContinue;
  switch (endpoint_) {
    case Endpoint::kPass:
      handlePass();
      break;
    case Endpoint::kVerify:
      handleVerify();
      break;
    case Endpoint::kSession:
      handleSession();
      break;
    case Endpoint::kRedeem:
      handleRedeem();
      break;
    case Endpoint::kNone:
      return plugins::Verdict::kContinue;
  }
  return plugins::Verdict::kStop;
}

// ---- Origin ----------------------------------------------------------------------------------

// Every origin request with the session cookie: a revoked session is refused. Any other outcome
// (unknown session, store trouble) lets the request through: the app's own session check is
// still in force, and an outage of the store must not take the app down.
plugins::Verdict Migration::originRequest(Request& request) {
  std::optional<std::string_view> cookie =
      cookies::findCookie(request.headers("Cookie"), config_.session_cookie);
  if (!cookie) return plugins::Verdict::kContinue;
  session_ref_ = sessionRefOf(*state_, *cookie);
  std::string key = sessionKey(session_ref_);
  pending_ = context_.store().get(key, config_.timeout, tracked([this, key](cache::Result r) {
                                    std::optional<json> session = openRecord(context_, key, r);
                                    if (session && session->value("r", 0) != 0) {
                                      refuseRevoked(*session);
                                      return;
                                    }
                                    if (session) context_.share("user", session->value("u", ""));
                                    callbacks_.resume();
                                  }));
  return plugins::Verdict::kStop;
}

void Migration::refuseRevoked(const json& session) {
  auto text = [&](const char* name, const char* fallback) {
    auto it = session.find(name);
    return it != session.end() && it->is_string() ? it->get<std::string>() : std::string(fallback);
  };
  // Records written before the path was kept: "/", where most session cookies live.
  std::string line =
      cookies::expiredSetCookie(config_.session_cookie, text("cp", "/"), text("cd", ""),
                                context_.scheme() == "https", session.value("cpt", 0) != 0);
  if (!line.empty()) extra_headers_.push_back({"Set-Cookie", std::move(line)});
  refuse(401, "revoked_session");
}

void Migration::handlePass() {
  std::optional<json> body = parseObject(body_);
  std::optional<std::string> nonce = body ? stringMember(*body, "nonce", 128) : std::nullopt;
  auto ts = body ? body->find("ts") : json::iterator();
  if (!body || !nonce || nonce->size() < 8 || ts == body->end() || !ts->is_number_integer()) {
    refuse(400, "malformed_body");
    return;
  }
  nonce_ = *nonce;
  int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(context_.now().time_since_epoch())
          .count();
  // Far outside any window anyway, and bounded so that the subtraction cannot overflow.
  constexpr int64_t kMaxTsMs = int64_t{1} << 52;  // about 142,000 years after 1970
  int64_t sent_ms = ts->is_number_unsigned() && ts->get<uint64_t>() > uint64_t{kMaxTsMs}
                        ? kMaxTsMs
                        : std::clamp<int64_t>(ts->get<int64_t>(), -kMaxTsMs, kMaxTsMs);
  int64_t skew = sent_ms - now_ms;
  if (skew < 0) skew = -skew;
  if (skew >
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.request_window).count()) {
    refuse(401, "stale_request");
    return;
  }
  std::optional<std::string_view> cookie =
      cookies::findCookie(request_->headers("Cookie"), config_.session_cookie);
  if (!cookie) {
    refuse(401, "no_origin_session");
    return;
  }
  session_ref_ = sessionRefOf(*state_, *cookie);
  std::string key = sessionKey(session_ref_);
  pending_ = context_.store().get(key, config_.timeout, tracked([this, key](cache::Result r) {
                                    passSession(key, std::move(r));
                                  }));
}

void Migration::passSession(const std::string& key, cache::Result r) {
  if (r.status == cache::Status::kTimeout || r.status == cache::Status::kError) {
    refuse(502, "store_unavailable");
    return;
  }
  std::optional<json> session = openRecord(context_, key, r);
  // A cookie tessera never saw set at a login with a user id: the session is not bound.
  if (!session) {
    refuse(403, "session_not_bound");
    return;
  }
  if (session->value("r", 0) != 0) {
    refuseRevoked(*session);
    return;
  }
  if (session->value("d", "") != device()) {
    refuse(403, "device_mismatch");
    return;
  }
  session_ = std::move(*session);
  std::string nkey = nonceKey(hashed(*state_, nonce_));
  pending_ = context_.store().add(nkey, context_.seal(nkey, "1"), config_.request_window * 2,
                                  config_.timeout,
                                  tracked([this](cache::Result r) { passNonce(std::move(r)); }));
}

void Migration::passNonce(cache::Result r) {
  if (r.status == cache::Status::kExists) {
    refuse(409, "nonce_reuse");
    return;
  }
  if (r.status != cache::Status::kOk) {
    refuse(502, "store_unavailable");
    return;
  }
  pass_jti_ = newJti();
  std::string key = livePassKey(session_ref_);
  std::string sealed = context_.seal(key, json{{"j", pass_jti_}, {"d", device()}}.dump(
                                              -1, ' ', false, json::error_handler_t::replace));
  cache::Callback done = tracked([this](cache::Result r) { passLive(std::move(r)); });
  if (config_.on_reissue == Config::OnReissue::kReplace) {
    // The newest pass is the session's only live one: an older one no longer verifies.
    pending_ = context_.store().set(key, sealed, config_.pass_ttl, config_.timeout, done);
  } else {
    pending_ = context_.store().add(key, sealed, config_.pass_ttl, config_.timeout, done);
  }
}

void Migration::passLive(cache::Result r) {
  if (r.status == cache::Status::kOk) return passIssue();
  if (r.status != cache::Status::kExists) {
    refuse(502, "store_unavailable");
    return;
  }
  // on_reissue: revoke. A second pass while one is live: someone else may hold the first.
  std::string key = sessionKey(session_ref_);
  session_["r"] = 1;
  pending_ = context_.store().set(
      key, context_.seal(key, session_.dump(-1, ' ', false, json::error_handler_t::replace)),
      config_.session_lifetime, config_.timeout,
      tracked([this](cache::Result) { refuse(409, "reissue"); }));
}

void Migration::passIssue() {
  PassClaims claims;
  claims.user = session_.value("u", "");
  claims.session_ref = session_ref_;
  claims.device = device();
  claims.jti = pass_jti_;
  claims.iat = unixSeconds(context_.now());
  claims.exp = claims.iat + config_.pass_ttl.count();
  std::string pass = state_->codec->issue(claims);
  if (pass.empty()) {
    refuse(500, "issue_failed");
    return;
  }
  reply(200, "issued", json{{"pass", pass}, {"expires_in", config_.pass_ttl.count()}});
}

// A target in another cluster asks (mutual TLS checked in onRequestHeaders).
void Migration::handleVerify() {
  std::optional<json> body = parseObject(body_);
  std::optional<std::string> pass =
      body ? stringMember(*body, "pass", kMaxPassBytes) : std::nullopt;
  if (!pass) {
    refuse(400, "malformed_pass");
    return;
  }
  std::string redeemer = stringMember(*body, "device", 4096).value_or("");
  std::string ip = stringMember(*body, "ip", 64).value_or("");
  verification_ =
      std::make_unique<Verification>(state_, context_, *pass, redeemer, ip, [this](Outcome v) {
        if (v.status != 200) {
          refuse(v.status, v.reason);
          return;
        }
        reply(200, "verified", json{{"user", v.user}, {"sid", v.session_ref}});
      });
  verification_->start();
}

// A target in another cluster asks whether the origin session behind a permit is still live.
void Migration::handleSession() {
  std::optional<json> body = parseObject(body_);
  std::optional<std::string> sid = body ? stringMember(*body, "sid", 128) : std::nullopt;
  if (!sid) {
    refuse(400, "malformed_body");
    return;
  }
  std::string key = sessionKey(*sid);
  pending_ = context_.store().get(
      key, config_.timeout, tracked([this, key](cache::Result r) {
        if (r.status == cache::Status::kTimeout || r.status == cache::Status::kError) {
          refuse(502, "store_unavailable");
          return;
        }
        std::optional<json> session = openRecord(context_, key, r);
        if (!session || session->value("r", 0) != 0) {
          refuse(401, "no_origin_session");
          return;
        }
        reply(200, "session_live", json{{"live", true}});
      }));
}

// Who logged in: a claim of the request's token (shared by the jwt plugin before this one), or
// the backend's response header, which is meant for tessera and not for the client.
std::string Migration::loginUser(Response& response) {
  if (config_.user_header.starts_with("claim:")) {
    std::optional<std::string_view> claim = context_.shared(config_.user_header);
    return claim ? std::string(*claim) : std::string();
  }
  std::optional<std::string_view> user = response.header(config_.user_header);
  std::string user_id = user ? std::string(*user) : std::string();
  response.removeHeader(config_.user_header);
  return user_id;
}

plugins::Verdict Migration::onResponseHeaders(Response& response) {
  if (config_.role != Config::Role::kOrigin || endpoint_ != Endpoint::kNone) {
    return plugins::Verdict::kContinue;
  }
  std::string user_id = loginUser(response);
  for (std::string_view line : response.headers("Set-Cookie")) {
    std::optional<cookies::SetCookie> cookie = cookies::parseSetCookie(line);
    if (!cookie || cookie->name != config_.session_cookie) continue;
    std::optional<cache::Seconds> ttl =
        cookies::lifetimeOf(*cookie, context_.now(), config_.session_lifetime);
    if (!ttl) {
      // A logout: the session, and every permit made from it, ends.
      if (session_ref_.empty()) return plugins::Verdict::kContinue;
      pending_ = context_.store().remove(sessionKey(session_ref_), config_.timeout,
                                         tracked([this](cache::Result) {
                                           context_.count("logout");
                                           callbacks_.resume();
                                         }));
      return plugins::Verdict::kStop;
    }
    if (user_id.empty()) return plugins::Verdict::kContinue;  // not a login tessera can use
    std::string key = sessionKey(sessionRefOf(*state_, cookie->value));
    // Where the browser files the cookie, so that a revocation can make it drop the cookie.
    json fields{{"u", user_id}, {"d", device()}, {"r", 0}};
    fields["cp"] = std::string(cookies::cookiePath(*cookie, default_cookie_path_));
    if (!cookie->domain.empty()) fields["cd"] = std::string(cookie->domain);
    if (cookie->partitioned) fields["cpt"] = 1;
    std::string record = fields.dump(-1, ' ', false, json::error_handler_t::replace);
    // The response waits for the record: a pass request right after the login finds it.
    pending_ = context_.store().set(
        key, context_.seal(key, record), *ttl, config_.timeout, tracked([this](cache::Result r) {
          context_.count(r.status == cache::Status::kOk ? "session_recorded" : "record_failed");
          callbacks_.resume();
        }));
    return plugins::Verdict::kStop;
  }
  return plugins::Verdict::kContinue;
}

// ---- Target ----------------------------------------------------------------------------------

plugins::Verdict Migration::targetRequest(Request& request) {
  // Only tessera says who the user is.
  request.removeHeader(config_.user_identity_header);
  std::optional<std::string_view> permit =
      cookies::findCookie(request.headers("Cookie"), config_.permit_cookie);
  if (!permit) return plugins::Verdict::kContinue;
  checkPermit(std::string(*permit));
  return plugins::Verdict::kStop;
}

void Migration::checkPermit(const std::string& token) {
  std::string key = permitKey(hashed(*state_, token));
  pending_ = context_.store().get(
      key, config_.timeout, tracked([this, key](cache::Result r) { onPermit(key, std::move(r)); }));
}

void Migration::onPermit(const std::string& key, cache::Result r) {
  if (r.status == cache::Status::kTimeout || r.status == cache::Status::kError) {
    refuse(502, "store_unavailable");
    return;
  }
  std::optional<json> permit = openRecord(context_, key, r);
  if (!permit) {
    refuse(401, "unknown_permit");
    return;
  }
  if (permit->value("d", "") != device()) {
    refuse(403, "permit_device_mismatch");
    return;
  }
  std::string user = permit->value("u", "");
  if (config_.origin != "local") {
    checkRemoteSession(key, permit->value("s", ""), user);
    return;
  }
  // Permits die with their origin session, revoked or ended.
  std::string skey = sessionKey(permit->value("s", ""));
  pending_ = context_.store().get(
      skey, config_.timeout, tracked([this, skey, user](cache::Result r) {
        if (r.status == cache::Status::kTimeout || r.status == cache::Status::kError) {
          refuse(502, "store_unavailable");
          return;
        }
        std::optional<json> session = openRecord(context_, skey, r);
        if (!session || session->value("r", 0) != 0) {
          refuse(401, "revoked_permit");
          return;
        }
        forwardUser(user);
      }));
}

// The origin's session store is another cluster's: ask the origin whether the session is still
// live, at most once per kRemoteCheckInterval per permit (the answer is kept in this cluster's
// store), so a revocation there reaches this target within that interval.
void Migration::checkRemoteSession(const std::string& permit_key, const std::string& sid,
                                   const std::string& user) {
  std::string checked = "mig:c:" + permit_key.substr(6);
  pending_ = context_.store().get(
      checked, config_.timeout, tracked([this, checked, sid, user](cache::Result r) {
        if (r.status == cache::Status::kOk) {
          forwardUser(user);
          return;
        }
        std::string url = config_.origin + config_.endpoint_prefix + "migration/session";
        std::string body = json{{"sid", sid}}.dump(-1, ' ', false, json::error_handler_t::replace);
        call_ = context_.post(url, config_.origin_tls, body, "application/json",
                              config_.origin_timeout, [this, checked, user](OutboundReply reply) {
                                call_ = 0;
                                if (reply.status == 401) {
                                  refuse(401, "revoked_permit");
                                  return;
                                }
                                if (reply.status != 200) {
                                  refuse(502, "origin_unreachable");
                                  return;
                                }
                                pending_ = context_.store().set(
                                    checked, context_.seal(checked, "1"), kRemoteCheckInterval,
                                    config_.timeout,
                                    tracked([this, user](cache::Result) { forwardUser(user); }));
                              });
      }));
}

void Migration::handleRedeem() {
  std::optional<json> body = parseObject(body_);
  std::optional<std::string> pass =
      body ? stringMember(*body, "pass", kMaxPassBytes) : std::nullopt;
  if (!pass || !PassCodec::peekJti(*pass)) {
    refuse(400, "malformed_pass");
    return;
  }
  if (config_.origin == "local") {
    std::shared_ptr<const State> origin = OriginDirectory::get().find(config_.origin_plugin);
    if (!origin) {
      refuse(502, "origin_unreachable");
      return;
    }
    verification_ = std::make_unique<Verification>(origin, context_, *pass, device(),
                                                   std::string(context_.clientIp()),
                                                   [this](Outcome v) { onVerified(std::move(v)); });
    verification_->start();
    return;
  }
  json request = {{"pass", *pass}, {"device", device()}, {"ip", context_.clientIp()}};
  std::string url = config_.origin + config_.endpoint_prefix + "migration/verify";
  call_ = context_.post(url, config_.origin_tls,
                        request.dump(-1, ' ', false, json::error_handler_t::replace),
                        "application/json", config_.origin_timeout, [this](OutboundReply reply) {
                          call_ = 0;
                          onVerified(readOriginAnswer(reply));
                        });
}

void Migration::onVerified(Outcome v) {
  if (v.status != 200) {
    refuse(v.status, v.reason);
    return;
  }
  std::string token = newJti() + newJti();  // 32 random bytes
  if (token.size() != 44) {
    refuse(500, "permit_failed");
    return;
  }
  std::string key = permitKey(hashed(*state_, token));
  std::string record = json{{"u", v.user}, {"s", v.session_ref}, {"d", device()}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
  pending_ = context_.store().set(
      key, context_.seal(key, record), config_.permit_ttl, config_.timeout,
      tracked([this, token](cache::Result r) {
        if (r.status != cache::Status::kOk) {
          refuse(502, "store_unavailable");
          return;
        }
        extra_headers_.push_back({"Set-Cookie", config_.permit_cookie + "=" + token + "; Max-Age=" +
                                                    std::to_string(config_.permit_ttl.count()) +
                                                    "; Path=/; Secure; HttpOnly; SameSite=Lax"});
        reply(200, "redeemed", json{{"ok", true}, {"expires_in", config_.permit_ttl.count()}});
      }));
}

class MigrationFactory : public Factory {
 public:
  explicit MigrationFactory(std::shared_ptr<const State> state) : state_(std::move(state)) {}
  std::unique_ptr<Plugin> create(Context& context, Callbacks& callbacks) const override {
    return std::make_unique<Migration>(state_, context, callbacks);
  }
  bool wantsRequestBody() const override { return true; }
  std::vector<std::string> shares() const override { return {"user"}; }
  std::vector<std::string> reads() const override {
    const Config& config = state_->config;
    if (config.role == Config::Role::kOrigin && config.user_header.starts_with("claim:")) {
      return {config.user_header};
    }
    return {};
  }

 private:
  std::shared_ptr<const State> state_;
};

}  // namespace

std::shared_ptr<const Factory> makeMigrationFactory(const std::string& name,
                                                    const YAML::Node& node) {
  auto state = std::make_shared<State>();
  state->name = name;
  state->config = parseMigrationConfig(node);
  int line = node.Mark().line + 1, column = node.Mark().column + 1;
  state->sha256.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!state->sha256) {
    ERR_clear_error();
    throw PluginConfigError("", line, column, "OpenSSL offers no SHA-256");
  }
  if (state->config.role == Config::Role::kOrigin) {
    std::string error;
    state->codec =
        PassCodec::fromFiles(state->config.signing_key, state->config.encryption_key, error);
    if (!state->codec) {
      YAML::Mark mark = node["signing_key"].Mark();
      throw PluginConfigError("signing_key", mark.line + 1, mark.column + 1, error);
    }
  }
  if (!state->config.origin_tls.ca.empty()) {
    // The workers read these at their first call to the origin; a path that cannot be read is
    // named here, at load (and by `tessera validate`), not as a failed redeem later.
    const OutboundTls& tls = state->config.origin_tls;
    for (const auto& [key, file] :
         {std::pair<const char*, const std::string&>{"client_cert", tls.client_cert},
          {"client_key", tls.client_key},
          {"ca", tls.ca}}) {
      if (!std::ifstream(file).is_open()) {
        YAML::Mark mark = node["origin_tls"][key].Mark();
        throw PluginConfigError(std::string("origin_tls.") + key, mark.line + 1, mark.column + 1,
                                "cannot read " + file + ": " + std::strerror(errno));
      }
    }
  }
  std::shared_ptr<const State> shared = std::move(state);
  if (shared->config.role == Config::Role::kOrigin) OriginDirectory::get().add(shared);
  return std::make_shared<MigrationFactory>(std::move(shared));
}

}  // namespace tessera::plugins::migration
