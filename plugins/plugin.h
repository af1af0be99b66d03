#pragma once

// The one plugin interface (Envoy's HTTP filter, cut down). Plugins run on a route's requests
// before they go upstream, in the order the route lists them.
//
// Shape.
//   - A Factory is made once per config snapshot from the plugin's YAML node. It parses and
//     validates the node then and keeps an immutable config; a bad node throws PluginConfigError
//     (the proxy reports it as FILE:LINE:COL: plugins.NAME.key: message and refuses the config).
//   - For every request on a route that lists it, the factory makes a cheap Plugin instance. The
//     instance lives until the request ends (response sent, or connection closed), then
//     onDestroy() runs and it is destroyed.
//
// Threads. Everything of one request (hooks, callbacks, store completions) runs on the worker
//   thread that owns the connection. Factories are shared by all workers: create() must be safe
//   to call concurrently (it is const, and the config it reads is immutable).
//
// Verdicts. Each hook returns Verdict::kContinue (the chain goes on at once) or Verdict::kStop.
//   kStop means "I have replied, or I will": the chain waits until the plugin calls exactly one
//   of Callbacks::resume() (go on with the next plugin) or Callbacks::sendLocalReply() (answer the
//   client; nothing goes upstream). They may be called from inside the hook or later, from a
//   store callback; never both, never twice. While a request waits, its connection reads nothing
//   more from the client, and other connections on the worker are not held up.
//
// Waiting for the store. A plugin reaches cache::Store through its Context. Store callbacks run
//   on the same worker thread; onDestroy() must cancel() every operation still pending, since the
//   request may end (client gone, timeout) while it waits.
//
// Ownership. Request and Response are owned by the proxy and valid only during a hook (and until
//   resume()/sendLocalReply() for the request that is waiting). Context and Callbacks outlive the
//   Plugin instance.

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/store.h"

namespace YAML {
class Node;
}

namespace tessera::plugins {

enum class Verdict {
  // Go on: the next plugin's hook runs now.
  kContinue,
  // The plugin has called, or will call, resume() or sendLocalReply().
  kStop,
};

struct HeaderField {
  std::string name;
  std::string value;
};

// A request head as a plugin sees it. Header names compare case-insensitively.
class Request {
 public:
  virtual ~Request() = default;
  virtual std::string_view method() const = 0;
  virtual std::string_view target() const = 0;  // as sent: "/path?query"
  virtual std::string_view host() const = 0;    // lower case, without the port
  // The body as the proxy framed it (llhttp read Content-Length and Transfer-Encoding; a
  // malformed one never reaches a plugin): whether one follows, and its length when declared
  // (nullopt for a chunked body, or none).
  virtual bool hasBody() const = 0;
  virtual std::optional<uint64_t> contentLength() const = 0;
  // First value of a header, or nullopt.
  virtual std::optional<std::string_view> header(std::string_view name) const = 0;
  // Every value of a header, in order (several Cookie or X-Forwarded-For lines).
  virtual std::vector<std::string_view> headers(std::string_view name) const = 0;
  // Replaces every line of `name` with one line (adds it if absent).
  virtual void setHeader(std::string_view name, std::string_view value) = 0;
  virtual void removeHeader(std::string_view name) = 0;
};

// A response head from the upstream, before it goes to the client.
class Response {
 public:
  virtual ~Response() = default;
  virtual int status() const = 0;
  virtual std::optional<std::string_view> header(std::string_view name) const = 0;
  virtual std::vector<std::string_view> headers(std::string_view name) const = 0;  // Set-Cookie
  virtual void setHeader(std::string_view name, std::string_view value) = 0;
  virtual void removeHeader(std::string_view name) = 0;
};

// A plugin's way back into the request it is handling.
class Callbacks {
 public:
  virtual ~Callbacks() = default;
  // After kStop: go on with the next plugin (or upstream).
  virtual void resume() = 0;
  // After kStop, or instead of returning kContinue from a hook: answer the client now.
  virtual void sendLocalReply(int status, std::vector<HeaderField> headers, std::string body) = 0;
};

// A call a plugin makes to another HTTPS service (another tessera cluster), with mutual TLS.
struct OutboundTls {
  std::string client_cert;  // PEM files; the certificate tessera presents
  std::string client_key;
  std::string ca;  // the server's certificate must chain to this
};
struct OutboundReply {
  int status = 0;    // 0: no HTTP answer (connect, TLS or timeout); `error` says which
  std::string body;  // capped at 64 KiB
  std::string error;
};
using OutboundCallback = std::function<void(OutboundReply)>;

// What a plugin may use of the proxy, per request.
class Context {
 public:
  virtual ~Context() = default;
  virtual cache::Store& store() = 0;
  virtual std::chrono::system_clock::time_point now() const = 0;
  virtual std::string_view clientIp() const = 0;
  // "https" on a TLS listener, else "http": the scheme the client used to reach tessera.
  virtual std::string_view scheme() const = 0;
  // The device fingerprint of this client over the given attributes: "ip" (masked with the
  // prefixes), "ja4", "user_agent", "header:NAME". Empty list: empty string.
  virtual std::string deviceFingerprint(const std::vector<std::string>& attributes, int ipv4_prefix,
                                        int ipv6_prefix) const = 0;
  // Sealing for values kept in the store (AES-256-GCM; `aad` = the store key).
  virtual std::string seal(std::string_view aad, std::string_view plaintext) const = 0;
  virtual std::optional<std::string> open(std::string_view aad, std::string_view sealed) const = 0;
  // A security event: one JSON line in the audit log (time, event, client and listener added).
  virtual void audit(
      std::string_view event,
      std::initializer_list<std::pair<std::string_view, std::string_view>> fields) = 0;
  // A counter in /metrics: tessera_plugin_events_total{plugin="<instance>",event="<event>"}.
  virtual void count(std::string_view event) = 0;
  // The client presented a certificate that chains to the listener's tls.client_ca.
  virtual bool clientCertificateVerified() const = 0;
  // POST `body` to an https:// URL (an IP literal, or a name resolved asynchronously). The server
  // must chain to tls.ca and name the host. The callback runs once, on this worker's thread,
  // never inside post(); onDestroy() must cancelPost() a call still pending. Returns the call's id
  // (never 0).
  virtual uint64_t post(std::string_view url, const OutboundTls& tls, std::string body,
                        std::string_view content_type, std::chrono::milliseconds timeout,
                        OutboundCallback callback) = 0;
  virtual void cancelPost(uint64_t id) = 0;
  // What a plugin learned about this request, told to the plugins after it on the route (and to
  // every response hook): name → value, for this request only. A value nobody on the route reads
  // (Factory::reads) is dropped at once, so sharing costs nothing where it is not wanted. A second
  // share() of a name replaces the value. Names in use:
  //   "claim:NAME"  the jwt plugin: each top-level claim of a verified token whose value is a
  //                 string, a number or a boolean (as JSON writes it; strings without quotes).
  //   "user"        the migration plugin: the user of a live origin session, or of a valid
  //                 permit on a target.
  virtual void share(std::string_view name, std::string_view value) = 0;
  // nullopt when no plugin before this one shared `name` on this request.
  virtual std::optional<std::string_view> shared(std::string_view name) const = 0;
};

class Plugin {
 public:
  virtual ~Plugin() = default;
  virtual Verdict onRequestHeaders(Request&) { return Verdict::kContinue; }
  // For plugins whose factory says wantsRequestBody(): asked once every head hook has gone on.
  // True: this request's body comes through onRequestBody() before anything goes upstream.
  virtual bool wantsBody() const { return true; }
  // The body as it arrives, in pieces (without chunked framing), bounded by limits.max_body_bytes
  // (over it, the client gets 413 and the plugin nothing more). `last` is true for the final
  // piece, which may be empty. A request without a body gets no call. kStop here waits like a
  // head hook; later pieces are kept meanwhile.
  virtual Verdict onRequestBody(Request&, std::string_view /*chunk*/, bool /*last*/) {
    return Verdict::kContinue;
  }
  // The upstream's response head, in the reverse of the route's order. kStop waits: the head and
  // whatever follows it are held until resume() (or replaced by sendLocalReply()).
  virtual Verdict onResponseHeaders(Response&) { return Verdict::kContinue; }
  // Asked once every response hook has gone on, for a response that has a body: true to get the
  // whole body in onResponseBody() before anything of the response reaches the client. The proxy
  // keeps it, up to limits.max_body_bytes (a longer one ends the exchange with a 502).
  virtual bool wantsResponseBody() const { return false; }
  // The whole upstream response body, in the reverse of the route's order. The plugin may replace
  // `body` and change the head (Content-Type...); the proxy frames what it leaves (Content-Length).
  // Synchronous: nothing may wait here.
  virtual void onResponseBody(Response&, std::string& /*body*/) {}
  // The request is over: cancel pending store operations and timers here.
  virtual void onDestroy() {}
};

class PluginConfigError : public std::runtime_error {
 public:
  // `key_path` is relative to the plugin's node ("cookies[0]"); `line`/`column` 1-based.
  PluginConfigError(std::string key_path, int line, int column, const std::string& message)
      : std::runtime_error(message), key_path(std::move(key_path)), line(line), column(column) {}
  std::string key_path;
  int line;
  int column;
};

class Factory {
 public:
  virtual ~Factory() = default;
  virtual std::unique_ptr<Plugin> create(Context& context, Callbacks& callbacks) const = 0;
  // True if this plugin may read request bodies (then Plugin::wantsBody() decides per request).
  // Routes that list such a plugin keep each request's body until the plugins have agreed.
  virtual bool wantsRequestBody() const { return false; }
  // The names this plugin's instances share(): exact, or a prefix ending in '*' ("claim:*").
  virtual std::vector<std::string> shares() const { return {}; }
  // The names they read with shared(). A route that lists this plugin must list, before it, a
  // plugin that shares each of them, or the config is refused.
  virtual std::vector<std::string> reads() const { return {}; }
  // Names read when some plugin before this one shares them, and done without otherwise: kept for
  // this plugin like reads(), but not required of the route.
  virtual std::vector<std::string> readsIfShared() const { return {}; }
};

// Makes a Factory from the plugin's YAML node (its map, `type` key included). `name` is the
// instance name under `plugins:`. Throws PluginConfigError.
using FactoryMaker =
    std::function<std::shared_ptr<const Factory>(const std::string& name, const YAML::Node& node)>;

class Registry {
 public:
  void add(std::string type, FactoryMaker maker);
  const FactoryMaker* find(std::string_view type) const;
  std::vector<std::string> types() const;

 private:
  std::map<std::string, FactoryMaker, std::less<>> makers_;
};

// Explicit registration of every plugin type tessera ships (no static-init self-registration:
// its order is undefined and the linker drops unused objects).
void registerBuiltinPlugins(Registry& registry);

}  // namespace tessera::plugins
