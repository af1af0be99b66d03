#pragma once

// Runs a route's plugins for one request, and gives them what plugins/plugin.h promises: views of
// the request and response heads, a Context (store, clock, device fingerprint, sealing, audit,
// metrics) and Callbacks (resume, sendLocalReply) per plugin instance.
//
// Threading: one chain per request, on the connection's worker thread.
// Ownership: the ClientConnection owns the chain for the length of one request; the chain owns
// the plugin instances and calls onDestroy() on each before they go.
//
// Verdicts: run*() returns kDone (every hook went on), kWaiting (a hook returned kStop; the
// Owner hears later through chainResumed()/chainReplied()) or kReplied (a plugin answered during
// the hook; take the reply with takeReply()). A resume() called inside the hook that returned
// kStop counts as going on.

#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "plugins/plugin.h"
#include "proxy/http_message.h"
#include "proxy/metrics.h"

namespace tessera::proxy {

class Snapshot;
struct ListenerTarget;
struct RouteTarget;

class HeadView : public plugins::Request, public plugins::Response {
 public:
  HeadView(MessageHead& head, std::string host) : head_(head), host_(std::move(host)) {}
  std::string_view method() const override { return head_.method; }
  std::string_view target() const override { return head_.url; }
  std::string_view host() const override { return host_; }
  int status() const override { return head_.status; }
  std::optional<std::string_view> header(std::string_view name) const override;
  std::vector<std::string_view> headers(std::string_view name) const override;
  void setHeader(std::string_view name, std::string_view value) override;
  void removeHeader(std::string_view name) override;

 private:
  MessageHead& head_;
  std::string host_;
};

struct LocalReply {
  int status = 500;
  std::vector<plugins::HeaderField> headers;
  std::string body;
};

class PluginChain {
 public:
  enum class State { kDone, kWaiting, kReplied };

  class Owner {
   public:
    virtual ~Owner() = default;
    // A waiting request may go on (every remaining request hook went on).
    virtual void chainResumed() = 0;
    // A plugin answered the client while the request was waiting.
    virtual void chainReplied(LocalReply reply) = 0;
  };

  struct Client {
    const sockaddr_storage* peer = nullptr;
    std::string_view ip;
    std::string_view ja4;
    std::string_view listener;
  };

  PluginChain(Owner& owner, const RouteTarget& route, const Snapshot& snapshot, cache::Store& store,
              WorkerMetrics& metrics, Client client);
  ~PluginChain();
  PluginChain(const PluginChain&) = delete;
  PluginChain& operator=(const PluginChain&) = delete;

  State runRequest(MessageHead& head, std::string host);
  // The request is over: every plugin's onDestroy() runs now (cancelling its store calls), and
  // later callbacks from plugins are ignored. The object may be destroyed later, once no plugin
  // code is on the stack.
  void finish();
  // Response hooks run once the upstream's head is in; a plugin may change the head or answer
  // instead. Waiting is not offered on responses yet: a kStop with neither resume() nor a reply
  // inside the hook is answered with 502 and logged.
  State runResponse(MessageHead& head);
  LocalReply takeReply() { return std::move(*reply_); }

 private:
  class Slot;
  State runRequestHooks();
  std::string fingerprint(const std::vector<std::string>& attributes, int v4, int v6) const;

  Owner& owner_;
  const Snapshot& snapshot_;
  cache::Store& store_;
  WorkerMetrics& metrics_;
  Client client_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unique_ptr<HeadView> request_;
  size_t next_ = 0;       // the request hook to run next
  bool in_hook_ = false;  // a hook is on the stack
  bool resumed_ = false;  // resume() came inside the running hook
  bool waiting_ = false;  // a hook returned kStop and has not resumed or replied
  bool finished_ = false;
  std::optional<LocalReply> reply_;
};

}  // namespace tessera::proxy
