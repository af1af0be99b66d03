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

#include "plugins/cookies.h"

namespace tessera::plugins {
namespace {

using Config = SessionBindingConfig;
using cookies::cookieIn;
using cookies::countSessionCookies;
using cookies::lifetimeOf;
using cookies::parseSetCookie;
using cookies::SetCookie;

constexpr std::string_view kKeyPrefix = "bind:";
// Writes are fire and forget, so their deadline only bounds how long the store keeps the op.
constexpr cache::Millis kWriteTimeout{1000};
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

// "bind:" + lower-case hex of SHA-256(value): the store never sees a session cookie. The value is
// taken in its decoded form, so that a percent-encoded spelling of a bound session is the same
// binding (cookies::sessionCookieSha256Hex).
std::optional<std::string> bindingKey(const EVP_MD* sha256, std::string_view value) {
  std::optional<std::string> hex = cookies::sessionCookieSha256Hex(sha256, value);
  if (!hex) return std::nullopt;
  return std::string(kKeyPrefix) + *hex;
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
  bool mismatched_ = false;          // the lookup found another device's binding
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
  if (!bound) {
    // Audited whatever `unknown` says: a record that fails authentication is a security event
    // (someone wrote to the store) or a lost seal key, and either needs a person.
    if (config_.unknown == Config::Unknown::kAllow) {
      context_.audit("session_binding_seal_open_failed",
                     {{"plugin", state_->name},
                      {"cookie", cookie_name_},
                      {"reason", "binding record cannot be opened"}});
    }
    return onUnknown("seal_open_failed", "binding record cannot be opened");
  }
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
