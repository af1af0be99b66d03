#pragma once

// Runs a route's plugins for one request, and gives them what plugins/plugin.h promises: views of
// the request and response heads, a Context (store, clock, device fingerprint, sealing, audit,
// metrics) and Callbacks (resume, sendLocalReply) per plugin instance.
//
// Threading: one chain per request, on the connection's worker thread.
// Ownership: the ClientConnection owns the chain for the length of one request; the chain owns
// the plugin instances and calls onDestroy() on each before they go.
//
// Phases of one request: request-head hooks in route order; then, if any plugin wants the body
// and the request has one, body hooks in route order, piece by piece as the body arrives; then
// (once the upstream's head is in) response hooks in reverse order. Nothing goes upstream until
// the request phases are over, so a body plugin sees the whole body before the backend does.
//
// Verdicts: runRequest()/addBody()/runResponse() return kDone (the phase is over: for a request,
// it may go upstream), kNeedBody (every hook so far went on; feed more body), kWaiting (a hook
// returned kStop; the Owner hears later through chainResumed(), responseResumed() or
// chainReplied()) or kReplied (a plugin answered during the hook; take it with takeReply()).
// A resume() called inside the hook that returned kStop counts as going on.

#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plugins/plugin.h"
#include "proxy/http_message.h"
#include "proxy/metrics.h"

namespace tessera::proxy {

class OutboundCalls;
class Snapshot;
struct ListenerTarget;
struct RouteTarget;

class HeadView : public plugins::Request, public plugins::Response {
 public:
  HeadView(MessageHead& head, std::string host) : head_(head), host_(std::move(host)) {}
  std::string_view method() const override { return head_.method; }
  std::string_view target() const override { return head_.url; }
  std::string_view host() const override { return host_; }
  bool hasBody() const override { return head_.chunked || head_.content_length.value_or(0) > 0; }
  std::optional<uint64_t> contentLength() const override {
    return head_.chunked ? std::nullopt : head_.content_length;
  }
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
  enum class State { kDone, kNeedBody, kWaiting, kReplied };

  class Owner {
   public:
    virtual ~Owner() = default;
    // A request-side wait ended with resume(): requestState() tells whether the request may go
    // upstream (kDone) or more body is wanted (kNeedBody).
    virtual void chainResumed() = 0;
    // A response-side wait ended with resume(): the upstream's head may go to the client.
    virtual void responseResumed() = 0;
    // A plugin answered the client while the request (or the response) was waiting.
    virtual void chainReplied(LocalReply reply) = 0;
  };

  struct Client {
    const sockaddr_storage* peer = nullptr;
    std::string_view ip;
    std::string_view ja4;
    std::string_view listener;
    bool certificate_verified = false;  // a client certificate chained to tls.client_ca
    bool tls = false;                   // the listener terminates TLS
  };

  PluginChain(Owner& owner, const RouteTarget& route, const Snapshot& snapshot, cache::Store& store,
              WorkerMetrics& metrics, OutboundCalls& outbound, Client client);
  ~PluginChain();
  PluginChain(const PluginChain&) = delete;
  PluginChain& operator=(const PluginChain&) = delete;

  // Whether any plugin of the route may read request bodies.
  bool wantsBody() const { return wants_body_; }
  // Whether a body follows comes from the head's framing (chunked, or a Content-Length above 0).
  State runRequest(MessageHead& head, std::string host);
  // The next piece of the request body (raw, without chunk framing); `last` with the final piece
  // (which may be empty). Pieces that arrive while a plugin waits are kept and delivered later.
  State addBody(std::string_view piece, bool last);
  State requestState() const;
  // The request is over: every plugin's onDestroy() runs now (cancelling its store calls), and
  // later callbacks from plugins are ignored. The object may be destroyed later, once no plugin
  // code is on the stack.
  void finish();
  // Response hooks run once the upstream's head is in; a plugin may change the head, answer
  // instead, or wait (the head must then stay valid until the Owner hears back).
  State runResponse(MessageHead& head);
  // After runResponse() left kDone: whether a plugin wants the response body (asked once).
  bool wantsResponseBody();
  // The whole response body, through the plugins that wanted it; they may change `body` and the
  // head given to runResponse().
  void runResponseBody(std::string& body);
  LocalReply takeReply() { return std::move(*reply_); }

 private:
  class Slot;
  enum class Phase { kHead, kBody, kAgreed, kResponse, kResponded };
  State advanceRequest();
  State advanceResponse();
  // A hook returned: the state it leaves the chain in, or nullopt to go on with the next hook.
  std::optional<State> afterHook(plugins::Verdict v);
  void resumed();
  void share(std::string_view name, std::string_view value);
  std::string fingerprint(const std::vector<std::string>& attributes, int v4, int v6) const;

  Owner& owner_;
  const Snapshot& snapshot_;
  cache::Store& store_;
  WorkerMetrics& metrics_;
  OutboundCalls& outbound_;
  Client client_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unique_ptr<HeadView> request_;
  std::unique_ptr<HeadView> response_;
  Phase phase_ = Phase::kHead;
  bool wants_body_ = false;
  size_t next_ = 0;   // the hook to run next (response hooks count down from the end)
  std::string body_;  // the piece being delivered
  bool body_last_ = false;
  std::string body_queue_;      // pieces that arrived while a plugin waited
  bool body_complete_ = false;  // the final piece has been queued
  bool in_hook_ = false;        // a hook is on the stack
  bool resumed_ = false;        // resume() came inside the running hook
  bool waiting_ = false;        // a hook returned kStop and has not resumed or replied
  bool finished_ = false;
  std::optional<LocalReply> reply_;
  const std::vector<std::string>& shared_reads_;  // the route's: what share() keeps
  std::vector<std::pair<std::string, std::string>> shared_;
};

}  // namespace tessera::proxy
