#pragma once

// HttpsClient: asynchronous HTTPS POST with mutual TLS, on one worker's event loop. The migration
// plugin's target side uses it to ask another tessera cluster to check a pass
// (POST /_tessera/migration/verify), presenting a client certificate.
//
// The contract (the same as cache::Store's):
//
// Threads. A client belongs to one event_base and is used only on that base's thread: every call
//   is made there and every callback runs there, from the event loop. A callback never runs inside
//   the call that started it, not even for an error known at once (a malformed URL). Make one
//   client per worker and set of TLS files, when the worker starts (not per request): the
//   constructor reads files and opens the resolver's sockets.
//
// Never blocking. Lookup, connect, TLS handshake, request and reply are all driven by the event
//   loop. Host names go through libevent's asynchronous resolver (evdns), which reads its name
//   servers and the hosts file once, in the constructor; IP literals need no lookup. Writes to a
//   peer that has gone raise SIGPIPE, which the process must ignore (tessera's server does).
//
// Deadlines. `timeout` covers the whole call: lookup, connect, TLS handshake, request and reply.
//   When it passes first, the connection is closed and the callback gets status 0 and error
//   "timeout"; the request may or may not have reached the server.
//
// Callbacks. Each call's callback runs exactly once, unless cancel() is called for it first;
//   after cancel() it never runs. Destroying the client closes every connection still open and
//   drops every pending callback without running it. A callback may post(), cancel() or destroy
//   the client. Callbacks must not throw (libevent's C frames are below them); an exception that
//   escapes one is logged and dropped.
//
// Buffers. The URL, body and content type are copied at the call; the caller keeps nothing alive.
//
// Connections. One TLS connection per call, closed after the reply ("Connection: close"). The
//   calls this serves are rare (one per migrated session), so reusing connections per origin is
//   not worth the state it needs (idle timers, a server closing a connection under a new request).
//
// Abandoned lookups. libevent's TLS bufferevent does not withdraw its lookup when freed, so one
//   that cancel(), a timeout or the destructor cut short lingers in the event loop until the name
//   server answers or gives up (an answer then opens and at once closes a TCP connection to that
//   address, sending no request), or until the first loop pass after the destructor. Freeing the
//   event_base before then leaks a few KiB per such lookup, which only matters at exit.
//
// Trust. TLS 1.2 or newer. The server's certificate must chain to `ca` (and only to it: the
//   system's roots are not loaded) and name the URL's host: its DNS name, or its IP address for an
//   IP literal. A host name is also sent as SNI.
//
// Limits. A reply head over 16 KiB or a body over 64 KiB is an error (status 0), so a broken or
//   hostile peer cannot make a worker buffer without bound.

#include <event2/event.h>
#include <event2/http.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/tls_context.h"

struct evdns_base;

namespace tessera::proxy {

// PEM files. `ca` is required. `client_cert` (the chain, leaf first) and `client_key` go together:
// both set, or both empty for a client that presents no certificate.
struct ClientTlsFiles {
  std::string client_cert;
  std::string client_key;
  std::string ca;
};

class HttpsClient {
 public:
  struct Reply {
    int status = 0;    // the HTTP status; 0 if there is no reply (see `error`)
    std::string body;  // the reply body, whatever the status
    // Status 0 only: why, e.g. "timeout", "reply too large" or
    // "connection closed: certificate verify failed: hostname mismatch".
    std::string error;
  };
  using Callback = std::function<void(Reply)>;
  using CallId = uint64_t;  // never 0

  static constexpr size_t kMaxReplyHead = 16 * 1024;
  static constexpr size_t kMaxReplyBody = 64 * 1024;

  // Loads the certificate, key and CA once; throws std::runtime_error naming the file that fails.
  // Also reads `resolv_conf` (name servers; a missing file means a resolver on 127.0.0.1) and the
  // system hosts file. `base` must outlive the client.
  HttpsClient(event_base* base, const ClientTlsFiles& files,
              const std::string& resolv_conf = "/etc/resolv.conf");
  // Closes every open connection; no callback runs after this (nor during it).
  ~HttpsClient();
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  // POSTs `body` with `content_type` to an https:// URL ("https://host[:port]/path[?query]"; an
  // IPv6 literal in brackets). A URL that is not of that form fails through the callback.
  CallId post(std::string_view url, std::string_view body, std::string_view content_type,
              std::chrono::milliseconds timeout, Callback callback);
  // The callback of `id` will not run. Unknown or finished ids are ignored.
  void cancel(CallId id);

  size_t pending() const { return calls_.size(); }  // calls whose callback has not run yet

 private:
  struct Call;
  struct ConnectionFree {
    void operator()(evhttp_connection* c) const;
  };
  using ConnectionPtr = std::unique_ptr<evhttp_connection, ConnectionFree>;

  std::string start(Call& call, std::string_view url, std::string_view body,
                    std::string_view content_type, std::chrono::milliseconds timeout);
  void finish(Call& call, Reply reply);
  void deliverFinished();
  static void onRequestDone(evhttp_request* req, void* arg);
  static void onRequestError(evhttp_request_error error, void* arg);
  static void onDeadline(evutil_socket_t fd, short what, void* arg);
  static void onDeliver(evutil_socket_t fd, short what, void* arg);

  event_base* base_;
  SslCtxPtr ctx_;
  evdns_base* dns_ = nullptr;
  event* deliver_ev_ = nullptr;
  CallId next_id_ = 1;
  std::unordered_map<CallId, std::unique_ptr<Call>> calls_;
  std::vector<CallId> finished_;  // finished calls, in order, waiting for deliver_ev_
  // Connections whose request has ended inside one of their own callbacks, where libevent still
  // uses them after we return; deliver_ev_ frees them.
  std::vector<ConnectionPtr> retired_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // lets a delivery see destruction
};

}  // namespace tessera::proxy
