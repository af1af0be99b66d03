#include "plugins/session_binding/session_binding.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::plugins {
namespace {

using Config = SessionBindingConfig;
using std::chrono::sys_seconds;

constexpr std::string_view kKeyPrefix = "bind:";
// Writes are fire and forget, so their deadline only bounds how long the store keeps the op.
constexpr cache::Millis kWriteTimeout{1000};
// Browsers keep no cookie longer (RFC 6265bis, 5.5); it also keeps the TTL far from overflow.
constexpr cache::Seconds kMaxLifetime{int64_t{400} * 24 * 60 * 60};
constexpr std::string_view kMismatchBody = "forbidden: session bound to another device\n";
constexpr std::string_view kUnknownBody = "forbidden: unknown session\n";

struct EvpMdFree {
  void operator()(EVP_MD* md) const { EVP_MD_free(md); }
};
using EvpMdPtr = std::unique_ptr<EVP_MD, EvpMdFree>;

// What every instance made by one factory reads. Instances hold it, so a request in flight keeps
// its config even if a reload drops the factory first.
struct FactoryState {
  std::string name;
  Config config;
  EvpMdPtr sha256;
};

// "bind:" + lower-case hex of SHA-256(value): the store never sees a session cookie.
std::optional<std::string> bindingKey(const EVP_MD* sha256, std::string_view value) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(value.data(), value.size(), digest, &size, sha256, nullptr) != 1) {
    // A stale entry would be misread by the next SSL_get_error() on this worker thread.
    ERR_clear_error();
    return std::nullopt;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key(kKeyPrefix);
  for (unsigned int i = 0; i < size; ++i) {
    key.push_back(kHex[digest[i] >> 4]);
    key.push_back(kHex[digest[i] & 0x0f]);
  }
  return key;
}

// --- Cookie syntax (RFC 6265, read leniently as browsers and backends do) ---------------------

std::string_view trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

// Backends read "abc" and abc as the same session; keying both alike keeps a client from
// dodging its binding by adding quotes.
std::string_view unquote(std::string_view value) {
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    return value.substr(1, value.size() - 2);
  }
  return value;
}

// Cuts `text` at the first ';': returns the part before, leaves the rest in `text`.
std::string_view nextPart(std::string_view& text) {
  size_t semi = text.find(';');
  std::string_view part = text.substr(0, semi);
  text = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
  return part;
}

// The first non-empty value of cookie `name` in one Cookie line ("a=b; c=d").
std::optional<std::string_view> cookieIn(std::string_view line, std::string_view name) {
  while (!line.empty()) {
    std::string_view pair = nextPart(line);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || trim(pair.substr(0, eq)) != name) continue;
    // An empty value carries no session: it is what a cleared cookie leaves behind.
    std::string_view value = unquote(trim(pair.substr(eq + 1)));
    if (!value.empty()) return value;
  }
  return std::nullopt;
}

// How many times the request carries a non-empty value for one of `names`, over every line.
int countSessionCookies(const std::vector<std::string_view>& lines,
                        const std::vector<std::string>& names) {
  int n = 0;
  for (std::string_view line : lines) {
    while (!line.empty()) {
      std::string_view pair = nextPart(line);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      std::string_view name = trim(pair.substr(0, eq));
      bool ours = std::find(names.begin(), names.end(), name) != names.end();
      if (ours && !unquote(trim(pair.substr(eq + 1))).empty()) ++n;
    }
  }
  return n;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
  });
}

// RFC 6265 5.2.2: "-"? DIGIT+, anything else and the attribute is ignored. Huge values saturate.
std::optional<int64_t> parseMaxAge(std::string_view text) {
  bool negative = text.starts_with('-');
  std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  if (negative) return -1;  // only "<= 0" matters
  int64_t value = 0;
  for (char c : digits) {
    value = std::min<int64_t>(value * 10 + (c - '0'), kMaxLifetime.count());
  }
  return value;
}

// Reads the fields of an HTTP date one by one.
class DateReader {
 public:
  explicit DateReader(std::string_view text) : text_(text) {}

  std::optional<int> number(size_t min_digits, size_t max_digits) {
    size_t n = 0;
    int value = 0;
    while (n < max_digits && n < text_.size() && text_[n] >= '0' && text_[n] <= '9') {
      value = value * 10 + (text_[n++] - '0');
    }
    if (n < min_digits) return std::nullopt;
    text_.remove_prefix(n);
    return value;
  }
  bool separator(std::string_view allowed) {
    if (text_.empty() || allowed.find(text_.front()) == std::string_view::npos) return false;
    text_.remove_prefix(1);
    return true;
  }
  std::optional<unsigned> month() {
    static constexpr std::string_view kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                   "jul", "aug", "sep", "oct", "nov", "dec"};
    for (unsigned i = 0; i < 12; ++i) {
      if (equalsIgnoreCase(text_.substr(0, 3), kMonths[i])) {
        text_.remove_prefix(3);
        return i + 1;
      }
    }
    return std::nullopt;
  }
  std::string_view rest() const { return text_; }

 private:
  std::string_view text_;
};

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and the dashed forms backends still send
// ("Sun, 06-Nov-1994 ..." from PHP, RFC 850's "Sunday, 06-Nov-94 ..."). Anything else: nullopt.
std::optional<sys_seconds> parseHttpDate(std::string_view text) {
  size_t comma = text.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  DateReader r(trim(text.substr(comma + 1)));
  std::optional<int> day = r.number(1, 2);
  std::optional<unsigned> month = day && r.separator(" -") ? r.month() : std::nullopt;
  std::optional<int> year = month && r.separator(" -") ? r.number(2, 4) : std::nullopt;
  std::optional<int> hour = year && r.separator(" ") ? r.number(2, 2) : std::nullopt;
  std::optional<int> minute = hour && r.separator(":") ? r.number(2, 2) : std::nullopt;
  std::optional<int> second = minute && r.separator(":") ? r.number(2, 2) : std::nullopt;
  if (!second || !r.separator(" ") || trim(r.rest()) != "GMT") return std::nullopt;
  if (*year < 100) *year += *year < 70 ? 2000 : 1900;  // RFC 6265 5.1.1
  std::chrono::year_month_day date{std::chrono::year(*year), std::chrono::month(*month),
                                   std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok() || *year < 1601 || *hour > 23 || *minute > 59 || *second > 59) {
    return std::nullopt;
  }
  return std::chrono::sys_days(date) + std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
         std::chrono::seconds(*second);
}

struct SetCookie {
  std::string_view name;
  std::string_view value;
  std::optional<int64_t> max_age;
  bool has_expires = false;
  std::optional<sys_seconds> expires;  // nullopt with has_expires: present but unparsable
};

std::optional<SetCookie> parseSetCookie(std::string_view line) {
  std::string_view pair = nextPart(line);
  size_t eq = pair.find('=');
  // RFC 6265 5.2: a set-cookie-string without '=' is ignored by the browser, so by us too.
  if (eq == std::string_view::npos) return std::nullopt;
  SetCookie cookie;
  cookie.name = trim(pair.substr(0, eq));
  cookie.value = unquote(trim(pair.substr(eq + 1)));
  while (!line.empty()) {
    std::string_view attribute = nextPart(line);
    size_t aeq = attribute.find('=');
    std::string_view name = trim(attribute.substr(0, aeq));
    std::string_view value =
        aeq == std::string_view::npos ? std::string_view() : trim(attribute.substr(aeq + 1));
    if (equalsIgnoreCase(name, "max-age")) {
      if (std::optional<int64_t> max_age = parseMaxAge(value)) cookie.max_age = max_age;
    } else if (equalsIgnoreCase(name, "expires")) {
      cookie.has_expires = true;
      cookie.expires = parseHttpDate(value);
    }
  }
  return cookie;
}

// The binding's TTL for a cookie being set; nullopt if the Set-Cookie clears it (a logout).
// Max-Age wins over Expires, as in browsers.
std::optional<cache::Seconds> lifetimeOf(const SetCookie& cookie,
                                         std::chrono::system_clock::time_point now,
                                         cache::Seconds fallback) {
  if (cookie.value.empty()) return std::nullopt;
  cache::Seconds ttl = fallback;
  if (cookie.max_age) {
    ttl = cache::Seconds(*cookie.max_age);
  } else if (cookie.expires) {
    // In whole seconds: a far Expires (year 9999) would overflow system_clock's nanoseconds.
    // Flooring `now` rounds the remaining time up.
    ttl = *cookie.expires - std::chrono::floor<cache::Seconds>(now);
  }
  if (ttl.count() <= 0) return std::nullopt;
  return std::min(ttl, kMaxLifetime);
}

// --- The per-request plugin -------------------------------------------------------------------

class SessionBinding : public Plugin {
 public:
  SessionBinding(std::shared_ptr<const FactoryState> state, Context& context, Callbacks& callbacks)
      : state_(std::move(state)),
        config_(state_->config),
        context_(context),
        callbacks_(callbacks) {}
  // onDestroy() always comes first; this is only the backstop against a callback on a dead object.
  ~SessionBinding() override {
    cancelLookup();
    cancelWrites();
  }

  Verdict onRequestHeaders(Request& request) override;
  Verdict onResponseHeaders(Response& response) override;
  void onDestroy() override {
    cancelLookup();
    cancelWrites();
  }

 private:
  bool findCookie(const Request& request);
  void cancelLookup();
  // The lookup's outcomes. Each ends in exactly one resume() or sendLocalReply(), as its last
  // step: either may run the rest of the request and destroy this instance before returning.
  void onLookup(cache::Result result);
  void onBinding(std::string_view sealed);
  void onUnknown(std::string_view counter, std::string_view reason);
  void reject(std::string_view body);

  void onSetCookie(const SetCookie& cookie);
  void cancelWrites();
  // The completion of the write about to be pushed onto writes_.
  cache::Callback onWritten();
  void bind(std::string_view value, cache::Seconds ttl);
  void unbind();
  const std::string& fingerprint();

  std::shared_ptr<const FactoryState> state_;
  const Config& config_;
  Context& context_;
  Callbacks& callbacks_;
  std::string cookie_name_;  // the configured cookie the request carried; empty if none
  std::string cookie_value_;
  std::string key_;  // its binding's store key
  std::optional<std::string> fingerprint_;
  cache::OpId pending_ = 0;
  std::vector<cache::OpId> writes_;  // binding writes of the response; 0 once done
  bool mismatched_ = false;  // the lookup found another device's binding
};

Verdict SessionBinding::onRequestHeaders(Request& request) {
  if (!findCookie(request)) return Verdict::kContinue;
  // Only one value is checked. Two session cookies (the same name twice, or two configured names)
  // could let a backend that reads another occurrence accept a stolen one: refuse the ambiguity.
  if (countSessionCookies(request.headers("Cookie"), config_.cookies) > 1) {
    context_.count("ambiguous");
    context_.audit("session_binding_ambiguous",
                   {{"cookie", cookie_name_}, {"reason", "more than one session cookie"}});
    callbacks_.sendLocalReply(403, {{"Content-Type", "text/plain"}},
                              "forbidden: more than one session cookie\n");
    return Verdict::kStop;
  }
  std::optional<std::string> key = bindingKey(state_->sha256.get(), cookie_value_);
  if (!key) {
    onUnknown("error", "cannot hash the cookie");
    return Verdict::kStop;
  }
  key_ = std::move(*key);
  // Store callbacks never run inside the call, so pending_ is set before the callback can clear
  // it; onDestroy() cancels it, so `this` is alive whenever it runs.
  pending_ = context_.store().get(key_, config_.timeout, [this](cache::Result result) {
    pending_ = 0;
    onLookup(std::move(result));
  });
  return Verdict::kStop;
}

// Config order, not the client's: the client must not choose which of its cookies is checked.
bool SessionBinding::findCookie(const Request& request) {
  std::vector<std::string_view> lines = request.headers("Cookie");
  for (const std::string& name : config_.cookies) {
    for (std::string_view line : lines) {
      if (std::optional<std::string_view> value = cookieIn(line, name)) {
        cookie_name_ = name;
        cookie_value_ = *value;
        return true;
      }
    }
  }
  return false;
}

void SessionBinding::cancelLookup() {
  if (pending_ != 0) context_.store().cancel(std::exchange(pending_, 0));
}

void SessionBinding::onLookup(cache::Result result) {
  switch (result.status) {
    case cache::Status::kOk:
      return onBinding(result.value);
    case cache::Status::kNotFound:
      return onUnknown("unknown", "cookie never bound");
    case cache::Status::kTimeout:
      return onUnknown("timeout", "binding store timed out");
    default:
      return onUnknown("error", "binding store failed");
  }
}

void SessionBinding::onBinding(std::string_view sealed) {
  std::optional<std::string> bound = context_.open(key_, sealed);
  // Tampered with, or sealed under a key this node no longer has: nothing to compare against.
  if (!bound) return onUnknown("seal_open_failed", "binding record cannot be opened");
  const std::string& device = fingerprint();
  // Constant time, so response timing tells nothing about how much of a fingerprint matched.
  if (bound->size() == device.size() &&
      CRYPTO_memcmp(bound->data(), device.data(), device.size()) == 0) {
    context_.count("match");
    return callbacks_.resume();
  }
  mismatched_ = true;
  context_.audit("session_binding_mismatch",
                 {{"plugin", state_->name},
                  {"cookie", cookie_name_},
                  {"reason", "cookie presented by a different device"}});
  context_.count("mismatch");
  if (config_.on_mismatch == Config::OnMismatch::kReject) return reject(kMismatchBody);
  callbacks_.resume();
}

void SessionBinding::onUnknown(std::string_view counter, std::string_view reason) {
  context_.count(counter);
  if (config_.unknown == Config::Unknown::kAllow) return callbacks_.resume();
  context_.audit("session_binding_unknown",
                 {{"plugin", state_->name}, {"cookie", cookie_name_}, {"reason", reason}});
  reject(kUnknownBody);
}

void SessionBinding::reject(std::string_view body) {
  callbacks_.sendLocalReply(403, {{"Content-Type", "text/plain"}}, std::string(body));
}

// The response waits for its binding writes: a client that sends the new cookie at once, to any
// node, then finds the binding in the store. A failed or late write still lets the response go
// (the next request then follows on_unknown).
Verdict SessionBinding::onResponseHeaders(Response& response) {
  for (std::string_view line : response.headers("Set-Cookie")) {
    std::optional<SetCookie> cookie = parseSetCookie(line);
    if (!cookie) continue;
    const std::vector<std::string>& names = config_.cookies;
    if (std::find(names.begin(), names.end(), cookie->name) != names.end()) onSetCookie(*cookie);
  }
  return writes_.empty() ? Verdict::kContinue : Verdict::kStop;
}

void SessionBinding::cancelWrites() {
  for (cache::OpId id : writes_) context_.store().cancel(id);
  writes_.clear();
}

cache::Callback SessionBinding::onWritten() {
  return [this, id_slot = writes_.size()](cache::Result result) {
    if (result.status != cache::Status::kOk && result.status != cache::Status::kNotFound) {
      context_.count("write_failed");
    }
    writes_[id_slot] = 0;
    if (std::all_of(writes_.begin(), writes_.end(), [](cache::OpId id) { return id == 0; })) {
      writes_.clear();
      callbacks_.resume();  // last step: may end the request and destroy this instance
    }
  };
}

void SessionBinding::onSetCookie(const SetCookie& cookie) {
  std::optional<cache::Seconds> ttl = lifetimeOf(cookie, context_.now(), config_.default_lifetime);
  if (!ttl) {
    // Only the binding of the cookie this request presented is known to be the one cleared.
    if (cookie.name == cookie_name_) unbind();
    return;
  }
  // `on_mismatch: log` let another device through; if its response merely refreshes the cookie,
  // rebinding would hand the session to that device and lock out the one that logged in.
  if (mismatched_ && cookie.name == cookie_name_ && cookie.value == cookie_value_) {
    context_.count("rebind_refused");
    return;
  }
  bind(cookie.value, *ttl);
}

// Each write is tracked in writes_ until it completes; onDestroy() cancels what is left.
void SessionBinding::bind(std::string_view value, cache::Seconds ttl) {
  std::optional<std::string> key = bindingKey(state_->sha256.get(), value);
  if (!key) return context_.count("error");
  std::string sealed = context_.seal(*key, fingerprint());
  // AES-GCM output is never empty (the tag alone is 16 bytes): empty means sealing failed.
  if (sealed.empty()) return context_.count("error");
  cache::Callback done = onWritten();
  writes_.push_back(context_.store().set(*key, sealed, ttl, kWriteTimeout, std::move(done)));
  context_.count("bound");
}

void SessionBinding::unbind() {
  if (key_.empty()) return;
  cache::Callback done = onWritten();
  writes_.push_back(context_.store().remove(key_, kWriteTimeout, std::move(done)));
  context_.count("logout");
}

const std::string& SessionBinding::fingerprint() {
  if (!fingerprint_) {
    fingerprint_ =
        context_.deviceFingerprint(config_.attributes, config_.ipv4_prefix, config_.ipv6_prefix);
  }
  return *fingerprint_;
}

class SessionBindingFactory : public Factory {
 public:
  explicit SessionBindingFactory(std::shared_ptr<const FactoryState> state)
      : state_(std::move(state)) {}
  std::unique_ptr<Plugin> create(Context& context, Callbacks& callbacks) const override {
    return std::make_unique<SessionBinding>(state_, context, callbacks);
  }

 private:
  std::shared_ptr<const FactoryState> state_;
};

}  // namespace

std::shared_ptr<const Factory> makeSessionBindingFactory(const std::string& name,
                                                         const YAML::Node& node) {
  auto state = std::make_shared<FactoryState>();
  state->name = name;
  state->config = parseSessionBindingConfig(node);
  // Fetched once here rather than per digest: an implicit fetch takes a lock on every call.
  state->sha256.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!state->sha256) {
    ERR_clear_error();
    throw PluginConfigError("", node.Mark().line + 1, node.Mark().column + 1,
                            "OpenSSL offers no SHA-256 (check the provider configuration)");
  }
  return std::make_shared<SessionBindingFactory>(std::move(state));
}

}  // namespace tessera::plugins
