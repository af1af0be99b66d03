#include "plugins/guard/guard.h"

#include <openssl/crypto.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "guard_client_js.h"  // generated from plugins/guard/client.js
#include "plugins/config_fields.h"
#include "plugins/cookies.h"
#include "plugins/encoding.h"
#include "plugins/guard/blocklist.h"
#include "plugins/guard/guard_config.h"
#include "plugins/guard/key_agreement.h"
#include "plugins/guard/signature.h"
#include "plugins/json_input.h"

namespace tessera::plugins::guard {

namespace {

using Json = nlohmann::json;
using Config = GuardConfig;

constexpr size_t kMaxKeysBody = 4096;
// Pages of one session that ran init() and keep working. Each key has a slot of its own in the
// store, and its keyid starts with the slot's digit, so that two agreements at once (two tabs)
// take different slots instead of both rewriting one list and losing a key.
constexpr size_t kKeysPerSession = 4;
constexpr size_t kMaxKeyIdBytes = 64;
constexpr size_t kMaxNonceBytes = 128;
constexpr cache::Seconds kNonceMargin{5};
constexpr size_t kMaxJsonDepth = 4;  // the keys body, the key records: {"a": {"b": ...}} at most

std::atomic<uint64_t> next_generation{1};

// What every instance made by one factory reads.
struct State {
  std::string name;
  Config config;
  std::unique_ptr<GuardCrypto> crypto;
  uint64_t generation = 0;
};

int64_t unixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

bool isToken68(std::string_view text, size_t max) {
  return !text.empty() && text.size() <= max && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_' || c == '.' || c == '~';
  });
}

// "/path?query" of a request target; an absolute-form one ("https://host/path?query"), which the
// proxy forwards in origin form, without its scheme and authority.
std::string_view originForm(std::string_view target) {
  if (target.starts_with("/")) return target;
  size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return target;
  size_t path = target.find_first_of("/?#", scheme_end + 3);
  if (path == std::string_view::npos) return "/";
  return target.substr(path);
}

// A member that is a string, or "": never throws on a value of another type.
std::string stringMember(const Json& object, const char* name) {
  if (!object.is_object()) return {};
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The path as a backend may read it: %-escapes decoded, "//" collapsed, "." and ".." resolved.
// A protect prefix is compared with this, so that /api/%6frders or /x/../api//orders are not a way
// around it.
std::string normalizedPath(std::string_view target) {
  std::string decoded = percentDecode(target.substr(0, target.find_first_of("?#")));
  // Some servers take a backslash for a slash, and drop ";parameters" from a segment.
  std::replace(decoded.begin(), decoded.end(), '\\', '/');
  std::vector<std::string_view> segments;
  std::string_view rest = decoded;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    segment = segment.substr(0, segment.find(';'));
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
      continue;
    }
    segments.push_back(segment);
  }
  std::string out;
  for (std::string_view segment : segments) out.append("/").append(segment);
  bool trailing = !decoded.empty() && decoded.back() == '/';
  if (out.empty() || trailing) out.push_back('/');
  return out;
}

// ---- The cluster-wide blocklist, as this worker last read it ------------------------------------

struct BlocklistView {
  std::optional<Blocklist> list;
  std::chrono::system_clock::time_point read_at{};  // when the read that gave `list` started
  // The sealed document `list` was parsed from: a read that brings back the same bytes (most of
  // them, every kBlocklistRefresh) is not opened and parsed again.
  std::string sealed;
  bool reading = false;  // a background read is under way
  // What a background read brought back, for the next request to open (it has a Context).
  std::optional<cache::Result> arrived;
  std::chrono::system_clock::time_point arrived_started{};
};

// ---- Session keys, as this worker last read them ------------------------------------------------

// A session's keys change only at the keys endpoint and at logout, yet every signed request needs
// them: a worker keeps the records it read for kKeyCopyMaxAge, which saves a store round trip per
// request. A new key or a logout on this worker updates its copy at once; one on another worker or
// node is seen here within kKeyCopyMaxAge, as the blocklist is.
constexpr std::chrono::milliseconds kKeyCopyMaxAge{800};
constexpr size_t kKeyCopies = 10000;

using SessionKeys = std::vector<std::pair<std::string, std::string>>;  // keyid, K

void wipe(SessionKeys& keys) {
  for (auto& [id, key] : keys) OPENSSL_cleanse(key.data(), key.size());
  keys.clear();
}

class KeyCopies {
 public:
  KeyCopies() = default;
  KeyCopies(const KeyCopies&) = delete;
  KeyCopies& operator=(const KeyCopies&) = delete;
  ~KeyCopies() { clear(); }

  const SessionKeys* find(const std::string& key, std::chrono::system_clock::time_point now) {
    auto it = copies_.find(key);
    if (it == copies_.end()) return nullptr;
    if (now - it->second.read_at >= kKeyCopyMaxAge || now < it->second.read_at) {
      erase(key);
      return nullptr;
    }
    return &it->second.keys;
  }
  void put(const std::string& key, SessionKeys keys, std::chrono::system_clock::time_point now) {
    if (copies_.size() >= kKeyCopies && !copies_.contains(key)) clear();  // rare; all refill
    Copy& copy = copies_[key];
    wipe(copy.keys);
    copy = Copy{std::move(keys), now};
  }
  void erase(const std::string& key) {
    auto it = copies_.find(key);
    if (it == copies_.end()) return;
    wipe(it->second.keys);
    copies_.erase(it);
  }

 private:
  void clear() {
    for (auto& [key, copy] : copies_) wipe(copy.keys);
    copies_.clear();
  }
  struct Copy {
    SessionKeys keys;
    std::chrono::system_clock::time_point read_at;
  };
  std::unordered_map<std::string, Copy> copies_;
};

struct WorkerState {
  BlocklistView blocklist;
  KeyCopies keys;
};

// One per worker thread and factory (jwt's token cache does the same): workers never share it.
WorkerState& workerState(const std::shared_ptr<const State>& state) {
  struct Slot {
    std::weak_ptr<const State> owner;
    std::unique_ptr<WorkerState> worker;
  };
  thread_local std::unordered_map<uint64_t, Slot> slots;
  auto it = slots.find(state->generation);
  if (it != slots.end()) return *it->second.worker;
  std::erase_if(slots, [](const auto& entry) { return entry.second.owner.expired(); });
  Slot slot{state, std::make_unique<WorkerState>()};
  return *slots.emplace(state->generation, std::move(slot)).first->second.worker;
}

BlocklistView& workerBlocklist(const std::shared_ptr<const State>& state) {
  return workerState(state).blocklist;
}

// Bytes wiped (OPENSSL_cleanse) by every copy of the holder when it goes: K and the key record on
// their way through the agreement's store callbacks. cache::Callback is a std::function, which
// may copy the lambda that holds them, and a callback dropped unrun (the client went away) is
// destroyed, never run: neither may leave K in freed memory.
class WipedBytes {
 public:
  explicit WipedBytes(std::string bytes) : bytes_(std::move(bytes)) {}
  WipedBytes(const WipedBytes& other) : bytes_(other.bytes_) {}
  // Copies, then wipes the source: a moved-from short string would keep its bytes in place.
  WipedBytes(WipedBytes&& other) : bytes_(other.bytes_) { other.wipe(); }
  WipedBytes& operator=(const WipedBytes&) = delete;
  WipedBytes& operator=(WipedBytes&&) = delete;
  ~WipedBytes() { wipe(); }
  const std::string& bytes() const { return bytes_; }

 private:
  void wipe() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
  std::string bytes_;
};

// The keys of a session record as stored (sealed JSON {"keys": [{"id", "k"}]}, opened).
SessionKeys parseSessionKeys(std::optional<std::string_view> text) {  // a view: no copy of K
  SessionKeys out;
  Json record = text ? parseJsonObject(*text, kMaxJsonDepth).value_or(Json()) : Json();
  auto keys = record.is_object() ? record.find("keys") : record.end();
  if (keys == record.end() || !keys->is_array()) return out;
  for (const Json& k : *keys) {
    std::optional<std::string> key = base64Decode(stringMember(k, "k"));
    if (key) out.emplace_back(stringMember(k, "id"), std::move(*key));
  }
  return out;
}

// ---- One request --------------------------------------------------------------------------------

class Guard : public Plugin {
 public:
  Guard(std::shared_ptr<const State> state, Context& context, Callbacks& callbacks)
      : state_(std::move(state)),
        config_(state_->config),
        context_(context),
        callbacks_(callbacks) {}
  ~Guard() override {
    cancel();
    OPENSSL_cleanse(key_.data(), key_.size());
  }

  Verdict onRequestHeaders(Request& request) override;
  bool wantsBody() const override { return endpoint_ == Endpoint::kKeys || digest_.has_value(); }
  Verdict onRequestBody(Request& request, std::string_view chunk, bool last) override;
  Verdict onResponseHeaders(Response& response) override;
  bool wantsResponseBody() const override { return !key_.empty(); }
  void onResponseBody(Response& response, std::string& body) override;
  void onDestroy() override { cancel(); }

 private:
  enum class Endpoint { kNone, kTime, kClientJs, kKeys };

  void cancel() {
    if (pending_ != 0) context_.store().cancel(std::exchange(pending_, 0));
    for (cache::OpId& id : removals_) {
      if (id != 0) context_.store().cancel(std::exchange(id, 0));
    }
  }

  template <typename Fn>
  cache::Callback tracked(Fn fn) {
    return [this, fn = std::move(fn)](cache::Result r) mutable {
      pending_ = 0;
      fn(std::move(r));
    };
  }

  // Where the request goes once the blocklist has passed it: kContinue, or kStop when this
  // plugin has answered or will.
  Verdict afterBlocklist();
  Verdict proceed(Verdict v);  // from afterBlocklist(), inside the hook or after a wait
  bool blocked();
  bool blockedByConfig();
  void readBlocklist(bool wait);
  void applyBlocklist(cache::Result r, std::chrono::system_clock::time_point started);

  Verdict endpoint();
  Verdict checkSignature();
  void verify();
  void onCount(cache::Result r);
  void lookUpKeys();
  void onKeys(const std::string& where, cache::Result r);
  void checkKey(const SessionKeys& keys);
  SessionKeys::const_iterator findKey(const SessionKeys& keys) const;
  void onNonce(cache::Result r);
  void handleKeys();
  void storeKey(cache::Result r, const std::string& random_id, Json server, WipedBytes key);
  void removeKeys(const std::string& new_ref, cache::Seconds ttl);
  void forgetKeyCopies();

  Verdict refuse(int status, std::string_view reason);
  Verdict reply(int status, std::string content_type, std::string body,
                std::vector<HeaderField> extra = {});

  const std::string& device() {
    if (!device_) {
      device_ =
          context_.deviceFingerprint(config_.attributes, config_.ipv4_prefix, config_.ipv6_prefix);
    }
    return *device_;
  }
  // Where the session's key in `slot` is kept, and the count of keys it agreed (which picks the
  // slot of the next one).
  std::string keysKey(size_t slot) const {
    return "guard:k:" + session_ref_ + ":" + std::to_string(slot);
  }
  std::string keyCountKey() const { return "guard:kn:" + session_ref_; }
  // The slot a keyid names, or none for a keyid this plugin did not make.
  static_assert(kKeysPerSession <= 10, "a slot is one digit");
  static std::optional<size_t> slotOf(std::string_view keyid) {
    if (keyid.empty() || keyid[0] < '0' || keyid[0] >= '0' + char(kKeysPerSession)) return {};
    return static_cast<size_t>(keyid[0] - '0');
  }
  std::string sessionRef(std::string_view cookie) const {
    return hexEncode(state_->crypto->sha256("guard key ref\n" + std::string(cookie)));
  }
  static std::string lifetimeKey(const std::string& ref) { return "guard:l:" + ref; }
  void noteLifetime(const std::string& ref, cache::Seconds ttl);

  std::shared_ptr<const State> state_;
  const Config& config_;
  Context& context_;
  Callbacks& callbacks_;
  Request* request_ = nullptr;  // valid in hooks and while the request waits
  cache::OpId pending_ = 0;
  // A logout's removes of every key slot and of the count, all sent at once; 0 once done.
  std::array<cache::OpId, kKeysPerSession + 1> removals_{};
  bool waited_ = false;  // a hook returned kStop for the blocklist read
  Endpoint endpoint_ = Endpoint::kNone;
  std::optional<std::string> device_;
  std::string user_;         // as user_header names it
  std::string shared_user_;  // as a migration plugin before this one shares it
  std::string cookie_;       // the session cookie's value, if any
  std::string session_ref_;  // hex(sha256("guard key ref" + cookie))
  std::string body_;         // the keys endpoint's body
  // A protected request's signature, checked on the way.
  std::optional<ParsedSignature> signature_;
  std::string base_;
  std::optional<DigestCheck> digest_;
  uint64_t body_bytes_ = 0;
  std::string key_;            // K of a verified request whose reply is to be sealed
  cache::Seconds key_ttl_{0};  // how long a key agreed now lives
};

Verdict Guard::onRequestHeaders(Request& request) {
  request_ = &request;
  if (std::optional<std::string_view> cookie =
          cookies::findCookie(request.headers("Cookie"), config_.session_cookie)) {
    cookie_ = *cookie;
    session_ref_ = sessionRef(cookie_);
  }
  if (!config_.user_header.empty()) {
    if (std::optional<std::string_view> user = request.header(config_.user_header)) user_ = *user;
  }
  // The session's user, as a migration plugin before this one knows it: checked as well as the
  // header, which a client may have set itself where nothing before this plugin overwrites it.
  if (std::optional<std::string_view> user = context_.shared("user")) shared_user_ = *user;
  // A copy too old to decide with is read again first, whatever it says: an entry removed since
  // must not keep blocking, any more than an entry added since may let through.
  BlocklistView& view = workerBlocklist(state_);
  if (view.arrived) {
    cache::Result arrived = std::move(*view.arrived);
    view.arrived.reset();
    applyBlocklist(std::move(arrived), view.arrived_started);
  }
  auto age = context_.now() - view.read_at;
  if (age >= kBlocklistMaxAge || !view.list) {
    if (blockedByConfig()) return refuse(403, "blocked");
    readBlocklist(true);
    waited_ = true;
    return Verdict::kStop;
  }
  if (blocked()) return refuse(403, "blocked");
  if (age >= kBlocklistRefresh && !view.reading) readBlocklist(false);
  return afterBlocklist();
}

bool Guard::blockedByConfig() {
  const Config::Blocklist& fixed = config_.blocklist;
  std::optional<IpAddress> ip = parseIp(context_.clientIp());
  if (ip && fixed.blocksIp(*ip)) return true;
  if (!user_.empty() && fixed.blocksUser(user_)) return true;
  if (!shared_user_.empty() && fixed.blocksUser(shared_user_)) return true;
  return !fixed.devices.empty() && fixed.blocksDevice(device());
}

bool Guard::blocked() {
  if (blockedByConfig()) return true;
  std::optional<IpAddress> ip = parseIp(context_.clientIp());
  const BlocklistView& view = workerBlocklist(state_);
  if (!view.list || view.list->entries().empty()) return false;
  int64_t now = unixSeconds(context_.now());
  const IpAddress* address = ip ? &*ip : nullptr;
  return view.list->blocks(address, device(), user_, now) ||
         (!shared_user_.empty() && view.list->blocks(nullptr, "", shared_user_, now));
}

// `wait`: this request waits for the document (the copy it has is too old to decide with).
// Otherwise the read refreshes the copy for later requests. It is not this request's, which may
// end first: its callback touches nothing of the request, and leaves the result in the worker's
// view for the next request to open.
void Guard::readBlocklist(bool wait) {
  auto started = context_.now();
  if (!wait) {
    workerBlocklist(state_).reading = true;
    context_.store().get(kBlocklistKey, config_.timeout,
                         [state = state_, started](cache::Result r) {
                           BlocklistView& view = workerBlocklist(state);
                           view.reading = false;
                           view.arrived = std::move(r);
                           view.arrived_started = started;
                         });
    return;
  }
  pending_ = context_.store().get(kBlocklistKey, config_.timeout,
                                  tracked([this, started](cache::Result r) {
                                    applyBlocklist(std::move(r), started);
                                    if (blocked()) {
                                      refuse(403, "blocked");
                                      return;
                                    }
                                    proceed(afterBlocklist());
                                  }));
}

void Guard::applyBlocklist(cache::Result r, std::chrono::system_clock::time_point started) {
  BlocklistView& view = workerBlocklist(state_);
  if (view.list && started < view.read_at) return;  // a later read already answered
  view.read_at = started;
  if (r.status == cache::Status::kNotFound) {
    view.list = Blocklist();
    view.sealed.clear();
  } else if (r.status == cache::Status::kOk) {
    if (view.list && r.value == view.sealed) return;  // unchanged: the parsed copy stands
    std::optional<std::string> text = context_.open(kBlocklistKey, r.value);
    std::optional<Blocklist> list = text ? Blocklist::parse(*text) : std::nullopt;
    if (list) {
      view.list = std::move(list);
      view.sealed = std::move(r.value);
    } else {
      context_.count("blocklist_unreadable");
    }
  } else {
    context_.count("blocklist_unavailable");  // the copy read last stays in force
  }
  if (!view.list) view.list = Blocklist();
}

Verdict Guard::proceed(Verdict v) {
  if (waited_ && v == Verdict::kContinue) callbacks_.resume();
  return v;
}

Verdict Guard::afterBlocklist() {
  std::string_view target = originForm(request_->target());
  std::string_view path = target.substr(0, target.find('?'));
  if (path.starts_with(config_.endpoint_prefix)) {
    std::string_view name = path.substr(config_.endpoint_prefix.size());
    if (name == "time") endpoint_ = Endpoint::kTime;
    if (name == "client.js") endpoint_ = Endpoint::kClientJs;
    if (name == "keys") endpoint_ = Endpoint::kKeys;
    if (endpoint_ != Endpoint::kNone) return endpoint();
  }
  std::string normal = normalizedPath(target);
  std::string_view method = request_->method();
  bool guarded = std::any_of(config_.protect.begin(), config_.protect.end(), [&](const auto& p) {
    return (p.method.empty() || p.method == method) && normal.starts_with(p.path_prefix);
  });
  if (!guarded) return Verdict::kContinue;
  return checkSignature();
}

Verdict Guard::endpoint() {
  std::string_view method = request_->method();
  if (endpoint_ == Endpoint::kKeys) {
    if (method != "POST") {
      endpoint_ = Endpoint::kNone;
      return reply(405, "text/plain", "POST only\n", {{"Allow", "POST"}});
    }
    if (cookie_.empty()) return refuse(401, "no_session");
    if (request_->contentLength().value_or(0) > kMaxKeysBody) {
      return refuse(413, "body_too_large");
    }
    if (!request_->hasBody()) return refuse(400, "malformed_body");
    return Verdict::kContinue;  // the body follows
  }
  if (method != "GET" && method != "HEAD") {
    return reply(405, "text/plain", "GET only\n", {{"Allow", "GET, HEAD"}});
  }
  if (endpoint_ == Endpoint::kTime) {
    int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(context_.now().time_since_epoch())
            .count();
    return reply(200, "application/json", Json{{"now", ms}}.dump() + "\n");
  }
  return reply(200, "text/javascript; charset=utf-8", std::string(kGuardClientJs),
               {{"Cache-Control", "no-cache"}});
}

// The synchronous checks of a protected request: what the headers alone can refuse.
Verdict Guard::checkSignature() {
  if (cookie_.empty()) return refuse(401, "no_session");
  std::optional<std::string_view> input = request_->header("signature-input");
  std::optional<std::string_view> signature = request_->header("signature");
  if (!input || !signature) return refuse(401, "missing_signature");
  if (request_->headers("signature-input").size() > 1 ||
      request_->headers("signature").size() > 1) {
    return refuse(401, "malformed_signature_input");
  }
  Result<ParsedSignature> parsed = parseSignature(*input, *signature);
  if (!parsed) return refuse(401, parsed.reason());
  const SignatureInput& in = parsed->input;
  if (in.alg != std::string(kHmacSha256)) return refuse(401, "unsupported_alg");
  for (const std::string& required : config_.require_components) {
    if (std::find(in.components.begin(), in.components.end(), required) == in.components.end()) {
      return refuse(401, "component_not_covered");
    }
  }
  if (!in.keyid || !isToken68(*in.keyid, kMaxKeyIdBytes)) return refuse(401, "unknown_key");
  if (!in.nonce || in.nonce->empty() || in.nonce->size() > kMaxNonceBytes) {
    return refuse(401, "missing_nonce");
  }
  if (!in.created) return refuse(401, "missing_created");
  int64_t now = unixSeconds(context_.now());
  int64_t window = config_.window.count();
  if (*in.created > now + window || *in.created < now - window) return refuse(401, "stale");
  if (in.expires && *in.expires <= now) return refuse(401, "stale");

  std::optional<std::string_view> host = request_->header("host");
  MessageView message{request_->method(), context_.scheme(), host ? *host : std::string_view(),
                      request_->target(),
                      [this](std::string_view name) { return request_->headers(name); }};
  Result<std::string> base = signatureBase(in, message);
  if (!base) return refuse(401, base.reason());
  base_ = std::move(*base);
  signature_ = std::move(*parsed);

  std::optional<std::string_view> digest = request_->header("content-digest");
  bool has_body = request_->hasBody();
  // The digest binds the body to the signature only if the signature covers it.
  const std::vector<std::string>& covered = signature_->input.components;
  if (has_body && std::find(covered.begin(), covered.end(), "content-digest") == covered.end()) {
    return refuse(401, "component_not_covered");
  }
  if (digest) {
    Result<DigestCheck> check = DigestCheck::fromHeader(*digest);
    if (!check) return refuse(401, check.reason());
    digest_ = std::move(*check);
  } else if (has_body) {
    return refuse(401, "missing_content_digest");
  }
  // A sealed reply must be the body the backend meant, not a compressed form of it that the SDK
  // could not undo.
  if (config_.seal_responses) request_->removeHeader("Accept-Encoding");
  if (has_body) {
    if (request_->contentLength().value_or(0) > config_.max_signed_body) {
      return refuse(413, "body_too_large");
    }
    return Verdict::kContinue;  // the body comes through onRequestBody before anything else
  }
  if (digest_ && !digest_->matches()) return refuse(401, "digest_mismatch");
  verify();
  return Verdict::kStop;
}

Verdict Guard::onRequestBody(Request&, std::string_view chunk, bool last) {
  if (endpoint_ == Endpoint::kKeys) {
    if (body_.size() + chunk.size() > kMaxKeysBody) return refuse(413, "body_too_large");
    body_.append(chunk);
    if (!last) return Verdict::kContinue;
    handleKeys();
    return Verdict::kStop;
  }
  if (!digest_) return Verdict::kContinue;
  body_bytes_ += chunk.size();
  if (body_bytes_ > config_.max_signed_body) return refuse(413, "body_too_large");
  if (!digest_->update(chunk)) return refuse(500, "crypto_error");
  if (!last) return Verdict::kContinue;
  if (!digest_->matches()) return refuse(401, "digest_mismatch");
  verify();
  return Verdict::kStop;
}

// ---- The asynchronous checks: rate limit, key, HMAC, nonce -------------------------------------

void Guard::verify() {
  if (!config_.rate_limit) {
    lookUpKeys();
    return;
  }
  const Config::RateLimit& limit = *config_.rate_limit;
  std::string who;
  switch (limit.per) {
    case Config::RateLimit::Per::kDevice:
      who = "d:" + hexEncode(state_->crypto->sha256(device()));
      break;
    case Config::RateLimit::Per::kSession:
      who = "s:" + session_ref_;
      break;
    case Config::RateLimit::Per::kIp:
      who = "i:" + std::string(context_.clientIp());
      break;
  }
  int64_t now = unixSeconds(context_.now());
  int64_t interval = limit.interval.count();
  std::string key = "guard:r:" + state_->name + ":" + who + ":" + std::to_string(now / interval);
  pending_ =
      context_.store().increment(key, limit.interval + cache::Seconds(1), config_.timeout,
                                 tracked([this](cache::Result r) { onCount(std::move(r)); }));
}

void Guard::onCount(cache::Result r) {
  if (r.status != cache::Status::kOk) {
    refuse(502, "store_unavailable");
    return;
  }
  uint64_t count = std::strtoull(r.value.c_str(), nullptr, 10);
  if (count > config_.rate_limit->requests) {
    int64_t interval = config_.rate_limit->interval.count();
    int64_t left = interval - unixSeconds(context_.now()) % interval;
    context_.count("rate_limited");
    context_.audit("guard_rate_limited", {{"device", device()}, {"user", user_}});
    reply(429, "text/plain", "too many requests\n",
          {{"Retry-After", std::to_string(std::max<int64_t>(left, 1))},
           {"X-Tessera-Guard", "rate_limited"}});
    return;
  }
  lookUpKeys();
}

void Guard::lookUpKeys() {
  std::optional<size_t> slot = slotOf(*signature_->input.keyid);
  if (!slot) {
    refuse(401, "unknown_key");
    return;
  }
  // A copy without this keyid may predate a key agreed since on another worker: the store says.
  std::string where = keysKey(*slot);
  const SessionKeys* keys = workerState(state_).keys.find(where, context_.now());
  if (keys != nullptr && findKey(*keys) != keys->end()) {
    checkKey(*keys);
    return;
  }
  pending_ = context_.store().get(where, config_.timeout, tracked([this, where](cache::Result r) {
                                    onKeys(where, std::move(r));
                                  }));
}

void Guard::onKeys(const std::string& where, cache::Result r) {
  if (r.status == cache::Status::kTimeout || r.status == cache::Status::kError) {
    refuse(502, "store_unavailable");
    return;
  }
  std::optional<std::string> text =
      r.status == cache::Status::kOk ? context_.open(where, r.value) : std::nullopt;
  SessionKeys keys = parseSessionKeys(text);
  if (text) text->assign(text->size(), '\0');
  checkKey(keys);
  workerState(state_).keys.put(where, std::move(keys), context_.now());
}

SessionKeys::const_iterator Guard::findKey(const SessionKeys& keys) const {
  const std::string& keyid = *signature_->input.keyid;
  return std::find_if(keys.begin(), keys.end(),
                      [&](const auto& entry) { return entry.first == keyid; });
}

void Guard::checkKey(const SessionKeys& keys) {
  auto found = findKey(keys);
  // Another session's keyid is not in this session's record: it is as unknown as a made-up one.
  if (found == keys.end()) {
    refuse(401, "unknown_key");
    return;
  }
  bool good = verifyHmacSha256(found->second, base_, signature_->signature);
  if (good && config_.seal_responses) key_ = found->second;
  if (!good) {
    refuse(401, "bad_signature");
    return;
  }
  // Only now, so that a client without the key cannot use up nonces of the real one.
  std::string nonce_key =
      "guard:n:" + found->first + ":" + hexEncode(state_->crypto->sha256(*signature_->input.nonce));
  // Twice the window, and a margin for clocks that differ between nodes: a signature is good
  // from created - window to created + window, and its nonce must outlive that.
  pending_ =
      context_.store().add(nonce_key, "1", config_.window * 2 + kNonceMargin, config_.timeout,
                           tracked([this](cache::Result r) { onNonce(std::move(r)); }));
}

void Guard::onNonce(cache::Result r) {
  if (r.status == cache::Status::kExists) {
    refuse(401, "replay");
    return;
  }
  if (r.status != cache::Status::kOk) {
    OPENSSL_cleanse(key_.data(), key_.size());
    key_.clear();
    refuse(502, "store_unavailable");
    return;
  }
  context_.count("verified");
  callbacks_.resume();
}

// ---- Key agreement ------------------------------------------------------------------------------

void Guard::handleKeys() {
  Json body = parseJsonObject(body_, kMaxJsonDepth).value_or(Json());
  auto member = body.is_object() ? body.find("jwk") : body.end();
  const Json& jwk = member != body.end() ? *member : Json();
  std::string x = stringMember(jwk, "x"), y = stringMember(jwk, "y");
  if (stringMember(jwk, "kty") != "EC" || stringMember(jwk, "crv") != "P-256" || x.empty() ||
      y.empty()) {
    refuse(400, "malformed_body");
    return;
  }
  std::optional<GuardCrypto::Agreement> agreed = state_->crypto->agree(x, y, cookie_);
  if (!agreed) {
    refuse(400, "bad_client_key");
    return;
  }
  std::string random_id = state_->crypto->randomToken(16);
  Json server = {{"kty", "EC"}, {"crv", "P-256"}, {"x", agreed->server_x}, {"y", agreed->server_y}};
  // The key lives as long as the session: its login, if it passed through this plugin, left
  // the cookie's expiry (onResponseHeaders); otherwise key_lifetime. The key goes from callback
  // to callback in a WipedBytes, so that no copy outlives its callback unwiped.
  std::string life_key = lifetimeKey(session_ref_);
  pending_ = context_.store().get(
      life_key, config_.timeout,
      tracked([this, life_key, random_id = std::move(random_id),
               key = WipedBytes(std::move(agreed->key)),
               server = std::move(server)](cache::Result r) mutable {
        key_ttl_ = config_.key_lifetime;
        std::optional<std::string> expiry =
            r.status == cache::Status::kOk ? context_.open(life_key, r.value) : std::nullopt;
        int64_t left =
            expiry ? std::strtoll(expiry->c_str(), nullptr, 10) - unixSeconds(context_.now()) : 0;
        if (left > 0) key_ttl_ = std::min(cache::Seconds(left), fields::kMaxCookieLifetime);
        // The session's count of agreed keys picks the slot: the count is atomic, so agreements
        // at the same time take different slots, and the newest kKeysPerSession keys stay.
        // The count outlives any key it numbers (an increment keeps the expiry it was made
        // with), so that numbering does not start again over a live key.
        pending_ = context_.store().increment(
            keyCountKey(), std::max(config_.key_lifetime, fields::kMaxCookieLifetime),
            config_.timeout,
            tracked([this, random_id = std::move(random_id), key = std::move(key),
                     server = std::move(server)](cache::Result r) mutable {
              storeKey(std::move(r), random_id, std::move(server), std::move(key));
            }));
      }));
}

void Guard::storeKey(cache::Result r, const std::string& random_id, Json server, WipedBytes key) {
  if (r.status != cache::Status::kOk) {
    refuse(502, "store_unavailable");
    return;
  }
  uint64_t agreed = std::strtoull(r.value.c_str(), nullptr, 10);
  size_t slot = static_cast<size_t>((agreed == 0 ? 0 : agreed - 1) % kKeysPerSession);
  std::string keyid = std::to_string(slot) + random_id;
  std::string where = keysKey(slot);
  // Built member by member: an initializer list would copy the encoded K into temporaries that
  // nothing wipes. The one copy in `record` is wiped once dumped.
  Json record = Json::object();
  Json& entry = record["keys"].emplace_back(Json::object());
  entry["id"] = keyid;
  entry["k"] = base64Encode(key.bytes());
  WipedBytes plain(record.dump());
  std::string& encoded = entry["k"].get_ref<std::string&>();
  OPENSSL_cleanse(encoded.data(), encoded.size());
  std::string sealed = context_.seal(where, plain.bytes());
  workerState(state_).keys.erase(where);
  body_ = Json{{"jwk", std::move(server)},
               {"keyid", keyid},
               {"expires_in", key_ttl_.count()},
               {"cookie", config_.session_cookie}}
              .dump() +
          "\n";
  pending_ = context_.store().set(where, sealed, key_ttl_, config_.timeout,
                                  tracked([this, where, plain = std::move(plain)](cache::Result r) {
                                    if (r.status != cache::Status::kOk) {
                                      refuse(502, "store_unavailable");
                                      return;
                                    }
                                    workerState(state_).keys.put(
                                        where, parseSessionKeys(plain.bytes()), context_.now());
                                    context_.count("key_agreed");
                                    reply(200, "application/json", std::move(body_));
                                  }));
}

// ---- Logout ------------------------------------------------------------------------------------

Verdict Guard::onResponseHeaders(Response& response) {
  if (endpoint_ != Endpoint::kNone) return Verdict::kContinue;
  for (std::string_view line : response.headers("Set-Cookie")) {
    std::optional<cookies::SetCookie> cookie = cookies::parseSetCookie(line);
    if (!cookie || cookie->name != config_.session_cookie) continue;
    std::optional<cache::Seconds> life =
        cookies::lifetimeOf(*cookie, context_.now(), config_.key_lifetime);
    if (life && cookie->value == cookie_) continue;  // the same session, renewed
    // A logout, or a new login: the keys agreed under the old cookie go, and a new session's
    // life is noted for the keys it will agree. The response waits, so that a key request right
    // after the login finds it.
    std::string new_ref = life ? sessionRef(cookie->value) : std::string();
    cache::Seconds ttl = life.value_or(cache::Seconds(0));
    if (session_ref_.empty()) {
      if (new_ref.empty()) return Verdict::kContinue;
      noteLifetime(new_ref, ttl);
      return Verdict::kStop;
    }
    removeKeys(new_ref, ttl);
    return Verdict::kStop;
  }
  return Verdict::kContinue;
}

// Removes the old session's keys (every slot) and its count of keys, all at once, then goes on
// with the response (noting the new session's life, if there is one). This worker's copies go at
// once, and again when the removes are done, in case a request read a slot meanwhile.
void Guard::removeKeys(const std::string& new_ref, cache::Seconds ttl) {
  forgetKeyCopies();
  for (size_t i = 0; i < removals_.size(); ++i) {
    std::string key = i < kKeysPerSession ? keysKey(i) : keyCountKey();
    // Callbacks never run inside the call, so removals_[i] is set before its callback runs.
    removals_[i] =
        context_.store().remove(key, config_.timeout, [this, i, new_ref, ttl](cache::Result) {
          removals_[i] = 0;
          if (std::ranges::any_of(removals_, [](cache::OpId id) { return id != 0; })) return;
          forgetKeyCopies();
          context_.count("keys_removed");
          if (new_ref.empty()) {
            callbacks_.resume();
          } else {
            noteLifetime(new_ref, ttl);
          }
        });
  }
}

void Guard::forgetKeyCopies() {
  for (size_t slot = 0; slot < kKeysPerSession; ++slot) {
    workerState(state_).keys.erase(keysKey(slot));
  }
}

void Guard::noteLifetime(const std::string& ref, cache::Seconds ttl) {
  std::string key = lifetimeKey(ref);
  std::string expiry = std::to_string(unixSeconds(context_.now()) + ttl.count());
  pending_ = context_.store().set(key, context_.seal(key, expiry), ttl, config_.timeout,
                                  tracked([this](cache::Result) { callbacks_.resume(); }));
}

// ---- Sealed replies ----------------------------------------------------------------------------

void Guard::onResponseBody(Response& response, std::string& body) {
  if (std::optional<std::string_view> encoding = response.header("Content-Encoding");
      encoding && *encoding != "identity") {
    // The backend compressed although the request no longer asked for it: the SDK would hand
    // the page compressed bytes. Refused rather than passed on unsealed.
    context_.count("seal_refused_encoded");
    response.removeHeader("Content-Encoding");
    response.setHeader("Content-Type", "text/plain");
    response.setHeader("X-Tessera-Guard", "seal_refused_encoded");
    body = "reply not sealed: the backend sent it compressed\n";
    return;
  }
  std::string content_type(response.header("Content-Type").value_or(""));
  std::string sealed =
      state_->crypto->sealReply(key_, *signature_->input.keyid, content_type, body);
  OPENSSL_cleanse(key_.data(), key_.size());
  key_.clear();
  if (sealed.empty()) {
    context_.count("seal_failed");
    response.setHeader("Content-Type", "text/plain");
    response.setHeader("X-Tessera-Guard", "seal_failed");
    body = "reply not sealed\n";
    return;
  }
  context_.count("sealed");
  response.setHeader("Content-Type", "application/tessera-sealed");
  body = std::move(sealed);
}

// ---- Answers -----------------------------------------------------------------------------------

Verdict Guard::refuse(int status, std::string_view reason) {
  context_.count(reason);
  if (status != 405) {
    context_.audit("guard_" + std::string(reason),
                   {{"status", std::to_string(status)}, {"device", device()}, {"user", user_}});
  }
  std::vector<HeaderField> extra = {{"X-Tessera-Guard", std::string(reason)}};
  if (status == 401) {
    extra.push_back(
        {"WWW-Authenticate", "Signature realm=\"tessera\", error=\"" + std::string(reason) + "\""});
  }
  return reply(status, "text/plain", std::to_string(status) + " " + std::string(reason) + "\n",
               std::move(extra));
}

Verdict Guard::reply(int status, std::string content_type, std::string body,
                     std::vector<HeaderField> extra) {
  std::vector<HeaderField> headers = {{"Content-Type", std::move(content_type)}};
  if (status != 200 || endpoint_ != Endpoint::kClientJs)
    headers.push_back({"Cache-Control", "no-store"});
  for (HeaderField& h : extra) headers.push_back(std::move(h));
  callbacks_.sendLocalReply(status, std::move(headers), std::move(body));
  return Verdict::kStop;
}

class GuardFactory : public Factory {
 public:
  explicit GuardFactory(std::shared_ptr<const State> state) : state_(std::move(state)) {}
  std::unique_ptr<Plugin> create(Context& context, Callbacks& callbacks) const override {
    return std::make_unique<Guard>(state_, context, callbacks);
  }
  bool wantsRequestBody() const override { return true; }
  std::vector<std::string> readsIfShared() const override { return {"user"}; }

 private:
  std::shared_ptr<const State> state_;
};

}  // namespace

std::shared_ptr<const Factory> makeGuardFactory(const std::string& name, const YAML::Node& node) {
  auto state = std::make_shared<State>();
  state->name = name;
  state->config = parseGuardConfig(node);
  state->generation = next_generation.fetch_add(1, std::memory_order_relaxed);
  std::string error;
  state->crypto = GuardCrypto::create(&error);
  if (!state->crypto || !cryptoAvailable()) {
    throw PluginConfigError("", node.Mark().line + 1, node.Mark().column + 1,
                            "OpenSSL lacks what guard needs: " + error);
  }
  return std::make_shared<GuardFactory>(std::move(state));
}

}  // namespace tessera::plugins::guard
