#pragma once

// One client connection: TLS handshake, request parsing with llhttp, routing, the exchange with
// an upstream connection, and the response back, request after request (keep-alive, pipelining in
// order).
//
// Threading: lives on one worker's thread from accept to close.
// Ownership: the Worker owns it; close() asks the worker to retire it, and it is destroyed after
// the current libevent callback returns. The upstream connection of the current exchange is owned
// here and goes back to the worker's pool when the exchange ends cleanly.
//
// Flow control: at most one exchange at a time. Bytes of a pipelined next request wait in `in_`
// until the current response is done. Reading from the client pauses while the upstream is behind
// (kHighWater bytes queued for it), and reading from the upstream pauses while the client is.

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "proxy/http_message.h"
#include "proxy/plugin_chain.h"
#include "proxy/snapshot.h"
#include "proxy/tls_context.h"
#include "proxy/tls_session_glue.h"
#include "proxy/upstream_pool.h"

namespace tessera::proxy {

class Worker;

// Bytes queued towards one side before tessera stops reading from the other.
inline constexpr size_t kHighWater = 1 << 20;
// Floor of the cap on an upstream response head (4 x limits.max_header_bytes if larger).
inline constexpr uint64_t kMaxResponseHead = 64 * 1024;

class ClientConnection : private HttpParser::Sink,
                         private UpstreamConn::Handler,
                         private PluginChain::Owner {
 public:
  ClientConnection(Worker& worker, std::shared_ptr<const Snapshot> snapshot, size_t listener,
                   int fd, const sockaddr_storage& peer);
  ~ClientConnection() override;
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  void start();
  // Worker is draining: close now if idle, else after the current response.
  void drain();

 private:
  using Clock = std::chrono::steady_clock;
  enum class Phase { kHandshake, kWaitRequest, kHead, kExchange, kClosing, kClosed };
  enum class IoStatus { kOk, kWouldBlock, kEof, kError };
  class ResponseSink;

  // Client I/O (client_connection.cc).
  static void onClientEvent(evutil_socket_t fd, short what, void* arg);
  static void onTimer(evutil_socket_t fd, short what, void* arg);
  static void onSendTimer(evutil_socket_t fd, short what, void* arg);
  void handleClientReadable();
  void handleClientWritable();
  void doHandshake();
  void resumeHandshake();  // a session lookup that paused the handshake is done
  IoStatus readClient();
  IoStatus writeClient();
  void flushClient();
  void startLinger();
  // Closes once what is queued for the client is out (at once when nothing is).
  void closeAfterSending();
  void beginClosing();
  void discardInput();
  void onClientEof();
  void wantClientRead(bool on);
  void wantClientWrite(bool on);
  void armTimer(std::chrono::milliseconds after);
  void close();

  // Requests (client_connection.cc).
  void processInput();
  int onHeadComplete() override;
  int onBody(const char* data, size_t len) override;
  int onMessageComplete() override;
  int rejectHead();
  void rejectRequest(int status, const char* why);
  void sendLocalReply(int status, std::string_view body, bool close_after,
                      std::string_view extra_headers = {});
  void beginUpstreamRequest();

  // The route's plugins (plugin_chain.h).
  void startRequestChain();
  void chainResumed() override;
  void responseResumed() override;
  void chainReplied(LocalReply reply) override;
  void onChainState(PluginChain::State state);
  void feedChainBody();
  void sendContinue();
  void endChain();
  void finishRequest(int status, bool close_after);
  void nextRequest();
  void logRequest(int status);

  // The upstream side (upstream_exchange.cc).
  void onUpstreamEvent(UpstreamConn& conn, short what) override;
  void connectUpstream();
  void onUpstreamConnected();
  void writeUpstream();
  void readUpstream();
  void upstreamConnectFailed(int error, bool timeout);
  void upstreamEof();
  void upstreamBroke();
  void upstreamFailed(int status);
  void endExchange(bool reusable);
  void resumeUpstreamRead();
  void armUpstreamTimer();
  int onResponseHead();
  // The response to this request has no body: a HEAD request, or a 204 or 304 response.
  bool bodilessStatus() const;
  int beginResponse();
  int startResponse();
  void sendCapturedResponse();
  bool feedResponse(const char* data, size_t len);
  int onResponseBody(const char* data, size_t len);
  int onResponseComplete();

  Worker& worker_;
  std::shared_ptr<const Snapshot> snapshot_;
  const ListenerTarget& listener_;
  const conf::Limits& limits_;
  int fd_;
  sockaddr_storage peer_;
  std::string peer_ip_;
  SslPtr ssl_;
  std::unique_ptr<TlsSessionGlue> glue_;  // cluster session cache; destroyed before ssl_
  event* read_ev_;
  event* write_ev_;
  event* timer_ev_;  // the phase's timeout: handshake, head, idle, mid-body, linger
  // limits.send_timeout while bytes for the client wait in `out_`: re-armed whenever a write
  // makes progress, off once `out_` is empty. The phase timer above does not run meanwhile for
  // what only starts once the response is out (keep-alive idle, linger).
  event* send_ev_;
  bool send_armed_ = false;
  bool idle_after_send_ = false;  // arm idle_timeout once `out_` is empty
  bool reading_ = false;
  bool writing_ = false;
  bool client_eof_ = false;
  bool client_read_paused_ = false;  // the upstream is behind
  bool lingering_ = false;
  Phase phase_ = Phase::kHandshake;
  evbuffer* in_;   // client bytes not parsed yet
  evbuffer* out_;  // bytes for the client
  uint64_t requests_ = 0;

  // The current request.
  HttpParser request_;
  Clock::time_point request_start_;
  std::string upstream_head_;  // kept to resend on a fresh connection
  std::string upstream_head_scratch_;
  const RouteTarget* route_ = nullptr;
  bool request_done_ = false;     // the whole request was parsed
  bool request_chunked_ = false;  // forwarding the body chunked
  bool expect_continue_ = false;
  bool head_request_ = false;
  bool close_after_ = false;     // close once the response is done
  int reject_status_ = 0;        // set by a Sink callback that refuses the request
  uint64_t head_raw_bytes_ = 0;  // bytes of the request head consumed so far
  uint64_t body_bytes_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;

  std::unique_ptr<PluginChain> chain_;                      // the current request's plugins
  std::vector<std::unique_ptr<PluginChain>> spent_chains_;  // finished; freed when safe
  bool head_held_ = false;  // the plugins have not agreed yet: nothing goes upstream
  bool hold_body_ = false;  // a plugin reads the body: keep it (raw) for the chain, uncapped by
                            // kHighWater (max_body_bytes bounds it)
  std::string held_body_;   // body bytes parsed but not yet given to the chain
  bool continue_sent_ = false;
  bool response_waiting_ = false;           // a response hook waits; the upstream's head is held
  std::string response_pending_;            // upstream bytes after that head
  std::optional<LocalReply> plugin_reply_;  // a response hook's answer, replacing the upstream's
  bool capture_response_ = false;  // a plugin wants the whole response body before it goes out
  std::string captured_body_;

  // The exchange with the upstream.
  std::unique_ptr<UpstreamConn> upstream_;
  evbuffer* upstream_out_;  // request bytes not yet written upstream
  uint64_t tried_servers_ = 0;
  size_t connect_failures_ = 0;  // connects that failed for this request
  size_t server_index_ = 0;
  int stale_retries_ = 0;  // pooled connections found closed by the server for this request
  std::unique_ptr<ResponseSink> response_sink_;
  std::unique_ptr<HttpParser> response_;
  bool response_started_ = false;
  bool response_done_ = false;
  bool response_chunked_ = false;
  bool skipping_interim_ = false;
  bool upstream_read_paused_ = false;
  bool upstream_timer_off_ = false;  // read_timeout stopped while the client's body is awaited
  std::string upstream_name_;        // "host:port" of the server used, for the access log
};

}  // namespace tessera::proxy
