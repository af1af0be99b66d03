#pragma once

// Fakes of the proxy's side of the plugin API (plugins/plugin.h), for driving one plugin in a unit
// test or a micro benchmark. No gtest here: the benchmarks use them too. What differs between
// users is a public member, set by the test; the defaults are noted where each is declared.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/sealer.h"
#include "cache/store.h"
#include "plugins/cookies.h"
#include "plugins/plugin.h"

namespace tessera::plugins::testing {

using cookies::equalsIgnoreCase;

// Header lines, names compared case-insensitively, as Request and Response promise.
class Headers {
 public:
  explicit Headers(std::vector<HeaderField> fields) : fields_(std::move(fields)) {}
  std::optional<std::string_view> first(std::string_view name) const {
    std::vector<std::string_view> all = every(name);
    if (all.empty()) return std::nullopt;
    return all.front();
  }
  std::vector<std::string_view> every(std::string_view name) const {
    std::vector<std::string_view> out;
    for (const HeaderField& f : fields_) {
      if (equalsIgnoreCase(f.name, name)) out.push_back(f.value);
    }
    return out;
  }
  void set(std::string_view name, std::string_view value) {
    remove(name);
    fields_.push_back({std::string(name), std::string(value)});
  }
  void remove(std::string_view name) {
    std::erase_if(fields_, [&](const HeaderField& f) { return equalsIgnoreCase(f.name, name); });
  }
  const std::vector<HeaderField>& fields() const { return fields_; }

 private:
  std::vector<HeaderField> fields_;
};

// The header lines of a fake Request or Response (`Head`), kept with the plugin's changes: fields()
// is the head as it would go on.
template <typename Head>
class FakeHead : public Head {
 public:
  explicit FakeHead(std::vector<HeaderField> fields) : headers_(std::move(fields)) {}
  std::optional<std::string_view> header(std::string_view name) const override {
    return headers_.first(name);
  }
  std::vector<std::string_view> headers(std::string_view name) const override {
    return headers_.every(name);
  }
  void setHeader(std::string_view name, std::string_view value) override {
    headers_.set(name, value);
  }
  void removeHeader(std::string_view name) override { headers_.remove(name); }
  const std::vector<HeaderField>& fields() const { return headers_.fields(); }

 private:
  Headers headers_;
};

// A request head with a fixed method, target and host. The body is framed from the headers as the
// proxy's parser frames it: a decimal Content-Length, or a chunked Transfer-Encoding; neither: no
// body.
class FakeRequest : public FakeHead<Request> {
 public:
  FakeRequest(std::string method, std::string target, std::vector<HeaderField> fields,
              std::string host = "shop.example")
      : FakeHead(std::move(fields)),
        method_(std::move(method)),
        target_(std::move(target)),
        host_(std::move(host)) {}
  std::string_view method() const override { return method_; }
  std::string_view target() const override { return target_; }
  std::string_view host() const override { return host_; }
  bool hasBody() const override { return chunked() || contentLength().value_or(0) > 0; }
  std::optional<uint64_t> contentLength() const override {
    std::optional<std::string_view> text = header("content-length");
    if (chunked() || !text) return std::nullopt;
    uint64_t n = 0;
    for (char c : *text) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + static_cast<uint64_t>(c - '0');
    }
    return n;
  }
  bool chunked() const {
    std::optional<std::string_view> te = header("transfer-encoding");
    return te && te->find("chunked") != std::string_view::npos;
  }

 private:
  std::string method_;
  std::string target_;
  std::string host_;
};

// A 200 response head from the upstream.
class FakeResponse : public FakeHead<Response> {
 public:
  using FakeHead::FakeHead;
  int status() const override { return 200; }
};

struct Reply {
  int status = 0;
  std::vector<HeaderField> headers;
  std::string body;
};

// Records every resume() and every local reply, in order.
class FakeCallbacks : public Callbacks {
 public:
  void resume() override { ++resumes; }
  void sendLocalReply(int status, std::vector<HeaderField> headers, std::string body) override {
    replies.push_back({status, std::move(headers), std::move(body)});
  }
  size_t answers() const { return resumes + replies.size(); }

  size_t resumes = 0;
  std::vector<Reply> replies;
};

// A store for plugins that must not use one: every call is a no-op that never calls back.
class NullStore : public cache::Store {
 public:
  cache::OpId get(std::string_view, cache::Millis, cache::Callback) override { return 1; }
  cache::OpId set(std::string_view, std::string_view, cache::Seconds, cache::Millis,
                  cache::Callback) override {
    return 1;
  }
  cache::OpId add(std::string_view, std::string_view, cache::Seconds, cache::Millis,
                  cache::Callback) override {
    return 1;
  }
  cache::OpId remove(std::string_view, cache::Millis, cache::Callback) override { return 1; }
  cache::OpId increment(std::string_view, cache::Seconds, cache::Millis, cache::Callback) override {
    return 1;
  }
  void cancel(cache::OpId) override {}
};

struct AuditEvent {
  std::string event;
  std::map<std::string, std::string, std::less<>> fields;
};

// The proxy's side of one client, on an https listener without a client certificate. The store is
// the one given, or a NullStore of its own. Sealing is the given Sealer's; without one, a strict
// reversible transform bound to the aad, so that a record moved to another key, or a value never
// sealed, does not open. Kept for the test to read: counts, audit events, shared values, and what
// deviceFingerprint() was asked.
class FakeContext : public Context {
 public:
  FakeContext() : store_(null_store_) {}
  explicit FakeContext(cache::Store& store) : store_(store) {}
  FakeContext(cache::Store& store, const cache::Sealer& sealer) : store_(store), sealer_(&sealer) {}
  // A copy would point at the original's NullStore.
  FakeContext(const FakeContext&) = delete;
  FakeContext& operator=(const FakeContext&) = delete;

  cache::Store& store() override { return store_; }
  std::chrono::system_clock::time_point now() const override { return wall_time; }
  std::string_view clientIp() const override { return ip; }
  std::string_view scheme() const override { return "https"; }
  std::string deviceFingerprint(const std::vector<std::string>& attributes, int ipv4_prefix,
                                int ipv6_prefix) const override {
    ++fingerprints;
    last_attributes = attributes;
    last_prefixes = {ipv4_prefix, ipv6_prefix};
    return device ? *device : "ip=" + ip;
  }
  std::string seal(std::string_view aad, std::string_view plaintext) const override {
    if (sealer_ != nullptr) return sealer_->seal(aad, plaintext);
    return "sealed|" + std::string(aad) + "|" + std::string(plaintext);
  }
  std::optional<std::string> open(std::string_view aad, std::string_view sealed) const override {
    if (sealer_ != nullptr) return sealer_->open(aad, sealed);
    std::string prefix = "sealed|" + std::string(aad) + "|";
    if (!sealed.starts_with(prefix)) return std::nullopt;
    return std::string(sealed.substr(prefix.size()));
  }
  void audit(std::string_view event,
             std::initializer_list<std::pair<std::string_view, std::string_view>> fields) override {
    AuditEvent e{std::string(event), {}};
    for (const auto& [k, v] : fields) e.fields.emplace(k, v);
    audits.push_back(std::move(e));
  }
  void count(std::string_view event) override { ++counts[std::string(event)]; }
  bool clientCertificateVerified() const override { return false; }
  // No plugin under test calls out: a call goes to `on_post`, and aborts without one.
  uint64_t post(std::string_view url, const OutboundTls&, std::string, std::string_view,
                std::chrono::milliseconds, OutboundCallback) override {
    if (!on_post) std::abort();
    on_post(url);
    return 1;
  }
  void cancelPost(uint64_t) override {}
  void share(std::string_view name, std::string_view value) override {
    shared_values[std::string(name)] = value;
  }
  std::optional<std::string_view> shared(std::string_view name) const override {
    auto it = shared_values.find(name);
    if (it == shared_values.end()) return std::nullopt;
    return it->second;
  }

  int counted(std::string_view event) const {
    auto it = counts.find(event);
    return it == counts.end() ? 0 : it->second;
  }

  // Set by the test: the clock (it moves only when told), the client, its device fingerprint
  // (nullopt: "ip=" + ip, the device is whatever `ip` says), and what an unexpected post() does.
  std::chrono::system_clock::time_point wall_time =
      std::chrono::sys_days(std::chrono::year(2025) / 3 / 14) + std::chrono::hours(12);
  std::string ip = "10.0.0.1";
  std::optional<std::string> device;
  std::function<void(std::string_view url)> on_post;

  std::map<std::string, int, std::less<>> counts;
  std::vector<AuditEvent> audits;
  std::map<std::string, std::string, std::less<>> shared_values;
  mutable int fingerprints = 0;
  mutable std::vector<std::string> last_attributes;
  mutable std::pair<int, int> last_prefixes;

 private:
  NullStore null_store_;
  cache::Store& store_;
  const cache::Sealer* sealer_ = nullptr;
};

}  // namespace tessera::plugins::testing
