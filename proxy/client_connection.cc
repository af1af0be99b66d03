#include "proxy/client_connection.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "proxy/worker.h"

namespace tessera::proxy {

namespace {

constexpr size_t kReadChunk = 16384;
constexpr int kReadsPerEvent = 4;        // then let other connections run
constexpr size_t kMaxPipelined = 65536;  // unparsed bytes held while a response is pending
constexpr std::chrono::milliseconds kLinger{2000};

timeval toTimeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

}  // namespace

// Feeds the response parser's events back to the connection.
class ClientConnection::ResponseSink : public HttpParser::Sink {
 public:
  explicit ResponseSink(ClientConnection& c) : c_(c) {}
  int onHeadComplete() override { return c_.onResponseHead(); }
  int onBody(const char* data, size_t len) override { return c_.onResponseBody(data, len); }
  int onMessageComplete() override { return c_.onResponseComplete(); }

 private:
  ClientConnection& c_;
};

ClientConnection::ClientConnection(Worker& worker, std::shared_ptr<const Snapshot> snapshot,
                                   size_t listener, int fd, const sockaddr_storage& peer)
    : worker_(worker),
      snapshot_(std::move(snapshot)),
      listener_(snapshot_->listeners()[listener]),
      limits_(snapshot_->config().limits),
      fd_(fd),
      peer_(peer),
      peer_ip_(peerIp(peer)),
      request_(HttpParser::Type::kRequest, *this),
      response_sink_(std::make_unique<ResponseSink>(*this)),
      response_(std::make_unique<HttpParser>(HttpParser::Type::kResponse, *response_sink_)) {
  read_ev_ =
      event_new(worker.base(), fd, EV_READ | EV_PERSIST, &ClientConnection::onClientEvent, this);
  write_ev_ =
      event_new(worker.base(), fd, EV_WRITE | EV_PERSIST, &ClientConnection::onClientEvent, this);
  timer_ev_ = evtimer_new(worker.base(), &ClientConnection::onTimer, this);
  send_ev_ = evtimer_new(worker.base(), &ClientConnection::onSendTimer, this);
  in_ = evbuffer_new();
  out_ = evbuffer_new();
  upstream_out_ = evbuffer_new();
  request_.setMaxHeadBytes(limits_.max_header_bytes);
  // A backend is trusted no more than a client: an endless response head must not grow memory
  // without bound. Set-Cookie-heavy apps send more than clients do, hence the larger cap.
  response_->setMaxHeadBytes(std::max<uint64_t>(4 * limits_.max_header_bytes, kMaxResponseHead));
  bump(worker_.counters().connections_open);
  bump(worker_.counters().connections_total);
}

ClientConnection::~ClientConnection() {
  event_free(read_ev_);
  event_free(write_ev_);
  event_free(timer_ev_);
  event_free(send_ev_);
  evbuffer_free(in_);
  evbuffer_free(out_);
  evbuffer_free(upstream_out_);
  upstream_.reset();
  glue_.reset();
  ssl_.reset();
  ::close(fd_);
  drop(worker_.counters().connections_open);
}

void ClientConnection::start() {
  if (listener_.tls) {
    ssl_.reset(SSL_new(listener_.tls->defaultContext()));
    if (!ssl_ || SSL_set_fd(ssl_.get(), fd_) != 1) {
      spdlog::error("cannot set up TLS for {}: {}", peer_ip_, opensslErrors());
      close();
      return;
    }
    SSL_set_accept_state(ssl_.get());
    if (listener_.conf->tls->session_resumption) {
      glue_ = std::make_unique<TlsSessionGlue>(worker_.sessionCache(), *snapshot_, listener_, peer_,
                                               peer_ip_, [this] { resumeHandshake(); });
      glue_->attach(ssl_.get());
    }
    phase_ = Phase::kHandshake;
  } else {
    phase_ = Phase::kWaitRequest;
  }
  wantClientRead(true);
  armTimer(limits_.header_timeout);
}

void ClientConnection::drain() {
  if (phase_ == Phase::kHandshake) {
    close();
    return;
  }
  if (phase_ == Phase::kWaitRequest && evbuffer_get_length(in_) == 0) {
    closeAfterSending();
    return;
  }
  close_after_ = true;
}

void ClientConnection::onClientEvent(evutil_socket_t, short what, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  if ((what & EV_READ) != 0) self->handleClientReadable();
  if ((what & EV_WRITE) != 0 && self->phase_ != Phase::kClosed) self->handleClientWritable();
}

void ClientConnection::onTimer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  // Handshake, idle keep-alive, slow header (slowloris), stalled body, or a linger that lasted
  // long enough: all end the same way.
  spdlog::debug("closing connection from {} on timeout", self->peer_ip_);
  self->close();
}

void ClientConnection::onSendTimer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<ClientConnection*>(arg);
  spdlog::debug("closing connection from {}: it took no response bytes within send_timeout",
                self->peer_ip_);
  self->close();
}

void ClientConnection::armTimer(std::chrono::milliseconds after) {
  timeval tv = toTimeval(after);
  event_add(timer_ev_, &tv);
}

void ClientConnection::wantClientRead(bool on) {
  if (on == reading_) return;
  reading_ = on;
  on ? event_add(read_ev_, nullptr) : event_del(read_ev_);
}

void ClientConnection::wantClientWrite(bool on) {
  if (on == writing_) return;
  writing_ = on;
  on ? event_add(write_ev_, nullptr) : event_del(write_ev_);
}

void ClientConnection::doHandshake() {
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    bump(SSL_session_reused(ssl_.get()) ? worker_.counters().tls_handshakes_resumed
                                        : worker_.counters().tls_handshakes_full);
    phase_ = Phase::kWaitRequest;
    wantClientWrite(false);
    handleClientReadable();  // the request may have come in the same flight as the Finished
    return;
  }
  int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ) {
    wantClientWrite(false);
    return;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    wantClientWrite(true);
    return;
  }
  if (err == SSL_ERROR_WANT_CLIENT_HELLO_CB) {
    // The session lookup is in flight: nothing to read or write until resumeHandshake().
    wantClientRead(false);
    wantClientWrite(false);
    return;
  }
  bump(worker_.counters().tls_handshake_errors);
  if (spdlog::should_log(spdlog::level::debug)) {
    std::string why = opensslErrors();
    if (why.empty() && err == SSL_ERROR_SYSCALL) {
      why = errno != 0 ? strerror(errno) : "the client closed the connection";
    }
    spdlog::debug("TLS handshake with {} failed (SSL error {}): {}", peer_ip_, err, why);
  }
  ERR_clear_error();
  close();
}

void ClientConnection::resumeHandshake() {
  if (phase_ != Phase::kHandshake) return;
  wantClientRead(true);
  doHandshake();
}

ClientConnection::IoStatus ClientConnection::readClient() {
  for (int i = 0; i < kReadsPerEvent; ++i) {
    evbuffer_iovec v;
    if (evbuffer_reserve_space(in_, kReadChunk, &v, 1) < 1) return IoStatus::kError;
    size_t n = 0;
    if (ssl_) {
      // The thread's error queue is kept empty (every failure below clears it), so there is no
      // ERR_clear_error() before each call on this hot path.
      int rc = SSL_read_ex(ssl_.get(), v.iov_base, v.iov_len, &n);
      if (rc != 1) {
        int err = SSL_get_error(ssl_.get(), rc);
        if (err == SSL_ERROR_WANT_READ) return IoStatus::kWouldBlock;
        if (err == SSL_ERROR_WANT_WRITE) {
          wantClientWrite(true);
          return IoStatus::kWouldBlock;
        }
        bool eof = err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0);
        ERR_clear_error();
        return eof ? IoStatus::kEof : IoStatus::kError;
      }
    } else {
      ssize_t r = ::read(fd_, v.iov_base, v.iov_len);
      if (r == 0) return IoStatus::kEof;
      if (r < 0) {
        if (errno == EINTR) continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? IoStatus::kWouldBlock : IoStatus::kError;
      }
      n = static_cast<size_t>(r);
    }
    bool short_read = n < v.iov_len;
    v.iov_len = n;
    evbuffer_commit_space(in_, &v, 1);
    // A short read drained the socket: skip the read that would only say EAGAIN. Events are
    // level-triggered, so anything that arrives later wakes us again.
    if (short_read && !(ssl_ && SSL_has_pending(ssl_.get()))) return IoStatus::kOk;
  }
  // Stopped with plaintext still inside OpenSSL, where no socket event will announce it.
  if (ssl_ && SSL_has_pending(ssl_.get())) event_active(read_ev_, EV_READ, 0);
  return IoStatus::kOk;
}

ClientConnection::IoStatus ClientConnection::writeClient() {
  while (evbuffer_get_length(out_) > 0) {
    if (!ssl_) {
      int n = evbuffer_write(out_, fd_);
      if (n > 0) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return IoStatus::kWouldBlock;
      }
      return IoStatus::kError;
    }
    // Coalesce into one TLS record's worth: many small evbuffer chunks would otherwise each
    // become a record of their own.
    size_t len = std::min<size_t>(evbuffer_get_length(out_), kReadChunk);
    unsigned char* p = evbuffer_pullup(out_, static_cast<ssize_t>(len));
    size_t n = 0;
    int rc = SSL_write_ex(ssl_.get(), p, len, &n);  // error queue empty: see readClient()
    if (rc == 1) {
      evbuffer_drain(out_, n);
      continue;
    }
    int err = SSL_get_error(ssl_.get(), rc);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) return IoStatus::kWouldBlock;
    ERR_clear_error();
    return IoStatus::kError;
  }
  return IoStatus::kOk;
}

void ClientConnection::flushClient() {
  if (phase_ == Phase::kClosed) return;
  size_t queued = evbuffer_get_length(out_);
  if (writeClient() == IoStatus::kError) {
    close();
    return;
  }
  size_t left = evbuffer_get_length(out_);
  bool pending = left > 0;
  wantClientWrite(pending);
  if (pending && (left < queued || !send_armed_)) {
    timeval tv = toTimeval(limits_.send_timeout);
    event_add(send_ev_, &tv);
    send_armed_ = true;
  } else if (!pending && send_armed_) {
    event_del(send_ev_);
    send_armed_ = false;
  }
  if (!pending && phase_ == Phase::kClosing) {
    startLinger();
    return;
  }
  if (!pending && idle_after_send_) {
    idle_after_send_ = false;
    if (phase_ == Phase::kWaitRequest) armTimer(limits_.idle_timeout);
  }
  if (upstream_read_paused_ && evbuffer_get_length(out_) < kHighWater / 2) resumeUpstreamRead();
}

void ClientConnection::startLinger() {
  // The client may still be sending a body we refused; closing with unread data would make the
  // kernel send a reset that can destroy our reply before the client reads it. Half-close, then
  // read and discard for a short while (nginx's lingering close).
  if (request_done_ && evbuffer_get_length(in_) == 0) {
    close();
    return;
  }
  if (lingering_) return;
  lingering_ = true;
  if (ssl_) {
    SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }
  ::shutdown(fd_, SHUT_WR);
  wantClientRead(true);
  armTimer(kLinger);
}

void ClientConnection::discardInput() {
  for (;;) {
    ssize_t r = ::read(fd_, worker_.scratch(), worker_.scratchSize());
    if (r > 0) continue;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    close();
    return;
  }
}

void ClientConnection::handleClientReadable() {
  if (phase_ == Phase::kHandshake) {
    doHandshake();
    return;
  }
  if (phase_ == Phase::kClosing) {
    if (lingering_) discardInput();
    return;
  }
  if (phase_ == Phase::kClosed) return;
  // Not reading (paused, or the client half-closed): still parse what is buffered.
  IoStatus st = reading_ ? readClient() : IoStatus::kWouldBlock;
  if (st == IoStatus::kError) {
    close();
    return;
  }
  if (st == IoStatus::kEof) {
    client_eof_ = true;
    wantClientRead(false);
  }
  processInput();
  if (phase_ == Phase::kClosed) return;
  if (phase_ == Phase::kExchange && request_done_ && evbuffer_get_length(in_) > kMaxPipelined) {
    wantClientRead(false);  // resumed by nextRequest()
  }
  if (client_eof_) onClientEof();
}

void ClientConnection::onClientEof() {
  bool idle = phase_ == Phase::kWaitRequest && evbuffer_get_length(in_) == 0;
  if (idle || phase_ == Phase::kHead) {
    closeAfterSending();  // the previous response may still be going out
    return;
  }
  if (phase_ == Phase::kExchange && !request_done_) {
    close();
    return;
  }
  close_after_ = true;  // half-closed after a whole request: answer it, then close
}

void ClientConnection::handleClientWritable() {
  if (phase_ == Phase::kHandshake) {
    doHandshake();
    return;
  }
  if (ssl_ && reading_) {
    // SSL_read may have asked for a write (TLS 1.3 key update); let it run again.
    event_active(read_ev_, EV_READ, 0);
  }
  flushClient();
}

void ClientConnection::processInput() {
  while (phase_ == Phase::kWaitRequest || phase_ == Phase::kHead ||
         (phase_ == Phase::kExchange && !request_done_)) {
    if (evbuffer_get_length(upstream_out_) > kHighWater && !(head_held_ && hold_body_)) {
      client_read_paused_ = true;
      wantClientRead(false);  // resumed once the upstream has taken the bytes
      break;
    }
    if (evbuffer_get_length(in_) == 0) break;
    evbuffer_iovec v;
    evbuffer_peek(in_, -1, nullptr, &v, 1);
    if (phase_ == Phase::kWaitRequest) {
      phase_ = Phase::kHead;
      request_start_ = Clock::now();
      armTimer(limits_.header_timeout);  // from the first byte of the head (slowloris)
    }
    // While in the head, feed at most one byte past the header limit: llhttp skips some bytes
    // (whitespace) without reporting them, so only counting what it consumes is exact.
    size_t len = v.iov_len;
    bool in_head = phase_ == Phase::kHead;
    if (in_head) len = std::min<size_t>(len, limits_.max_header_bytes - head_raw_bytes_ + 1);
    HttpParser::Result r = request_.feed(static_cast<const char*>(v.iov_base), len);
    evbuffer_drain(in_, r.consumed);
    bytes_in_ += r.consumed;
    if (in_head && phase_ == Phase::kHead) head_raw_bytes_ += r.consumed;
    if (r.error == HPE_OK && head_raw_bytes_ > limits_.max_header_bytes) {
      rejectRequest(431, "request head over max_header_bytes");
      return;
    }
    if (r.error == HPE_OK) continue;
    if (r.error == HPE_PAUSED) break;  // the whole request is in; the next waits its turn
    int status = reject_status_ != 0 ? reject_status_ : (request_.headTooLarge() ? 431 : 400);
    rejectRequest(status, request_.rejection() ? request_.rejection() : request_.errorReason());
    return;
  }
  if (phase_ != Phase::kExchange) return;
  if (!request_done_)
    armTimer(limits_.idle_timeout);  // a client that stops mid-body
  else
    event_del(timer_ev_);
  if (head_held_) {
    if (!chain_) {
      startRequestChain();
    } else if (hold_body_) {
      feedChainBody();
    }
    return;  // the plugins have the request
  }
  // Nothing goes upstream before this point: a request that turned out bad in this batch of
  // bytes has been answered above and never reaches the backend.
  if (!upstream_) {
    connectUpstream();
  } else if (!upstream_->connecting) {
    writeUpstream();
  }
}

int ClientConnection::onHeadComplete() {
  MessageHead& h = request_.head();
  phase_ = Phase::kExchange;
  if (requests_++ > 0) bump(worker_.counters().downstream_keepalive_requests);
  if (int status = rejectHead(); status != 0) {
    reject_status_ = status;
    return -1;
  }
  head_request_ = request_.methodCode() == HTTP_HEAD;
  close_after_ = close_after_ || !h.keep_alive || worker_.draining();
  request_chunked_ = h.chunked;
  if (!route_->plugins.empty()) {
    // The head goes upstream once the plugins agree (they may change it); body bytes parsed
    // meanwhile queue behind it in upstream_out_. Reading pauses only if a plugin waits.
    head_held_ = true;
    hold_body_ = std::any_of(route_->plugins.begin(), route_->plugins.end(),
                             [](const PluginTarget* p) { return p->factory->wantsRequestBody(); });
    return 0;
  }
  beginUpstreamRequest();
  return 0;
}

// Puts the (final) request head in front of whatever body bytes are already queued, and answers
// Expect: 100-continue.
void ClientConnection::beginUpstreamRequest() {
  MessageHead& h = request_.head();
  ForwardInfo fwd;
  fwd.client_ip = peer_ip_;
  fwd.proto = listener_.tls ? "https" : "http";
  fwd.trust_forwarded = listener_.conf->trust_forwarded_headers;
  fwd.chunked = h.chunked;
  fwd.content_length = h.content_length;
  upstream_head_.clear();
  writeUpstreamRequestHead(h, fwd, upstream_head_);
  evbuffer_prepend(upstream_out_, upstream_head_.data(), upstream_head_.size());
  sendContinue();
}

// Answers Expect: 100-continue once, when the body is wanted (by the upstream, or by a plugin);
// answered here rather than relayed: tessera reads the body either way.
void ClientConnection::sendContinue() {
  const MessageHead& h = request_.head();
  bool has_body = h.chunked || h.content_length.value_or(0) > 0;
  if (!expect_continue_ || continue_sent_ || !has_body || h.http_minor < 1 || request_done_) return;
  continue_sent_ = true;
  static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
  evbuffer_add(out_, k100.data(), k100.size());
  flushClient();
}

void ClientConnection::startRequestChain() {
  spent_chains_.clear();  // no plugin code of an earlier request is on the stack here
  PluginChain::Client client;
  client.peer = &peer_;
  client.ip = peer_ip_;
  client.ja4 = glue_ ? std::string_view(glue_->ja4()) : std::string_view();
  client.listener = listener_.conf->name;
  client.tls = ssl_ != nullptr;
  client.certificate_verified = ssl_ && SSL_get0_peer_certificate(ssl_.get()) != nullptr &&
                                SSL_get_verify_result(ssl_.get()) == X509_V_OK;
  chain_ = std::make_unique<PluginChain>(static_cast<PluginChain::Owner&>(*this), *route_,
                                         *snapshot_, worker_.sessionCache().store(),
                                         worker_.counters(), worker_.outbound(), client);
  const MessageHead& h = request_.head();
  RequestTarget target = requestTarget(h.url, h.headers.find("host"));
  PluginChain::State state = chain_->runRequest(request_.head(), target.host);
  if (state == PluginChain::State::kNeedBody) {
    feedChainBody();  // what the first batch of bytes held
    return;
  }
  onChainState(state);
}

// Gives the chain the body bytes parsed since the last call.
void ClientConnection::feedChainBody() {
  std::string piece;
  piece.swap(held_body_);
  onChainState(chain_->addBody(piece, request_done_));
}

void ClientConnection::onChainState(PluginChain::State state) {
  switch (state) {
    case PluginChain::State::kDone:
      chainResumed();
      break;
    case PluginChain::State::kNeedBody:
      sendContinue();
      break;
    case PluginChain::State::kReplied:
      chainReplied(chain_->takeReply());
      break;
    case PluginChain::State::kWaiting:
      // A plugin waits (for the store): read nothing more until it calls back through
      // chainResumed() or chainReplied(). Not toggled otherwise: two epoll_ctl calls per request.
      wantClientRead(false);
      break;
  }
}

void ClientConnection::chainResumed() {
  if (phase_ != Phase::kExchange || !head_held_) return;
  if (!client_eof_) wantClientRead(true);
  if (chain_->requestState() == PluginChain::State::kNeedBody) {
    sendContinue();
    processInput();  // parses what is buffered and hands the body on
    return;
  }
  head_held_ = false;
  held_body_.clear();
  beginUpstreamRequest();
  processInput();  // parses what is buffered, then sends the request upstream
}

void ClientConnection::chainReplied(LocalReply reply) {
  if (phase_ != Phase::kExchange) return;
  if (response_waiting_) {
    // The upstream's answer is replaced; the rest of it is never read.
    response_waiting_ = false;
    response_pending_.clear();
    upstream_.reset();
  }
  head_held_ = false;
  held_body_.clear();
  evbuffer_drain(upstream_out_, evbuffer_get_length(upstream_out_));
  std::string extra;
  for (const plugins::HeaderField& f : reply.headers) {
    if (isHopByHop(f.name) || equalsIgnoreCase(f.name, "content-length")) continue;
    extra += f.name + ": " + f.value + "\r\n";
  }
  // A body the client may still be sending was never read: only a whole request keeps the
  // connection.
  sendLocalReply(reply.status, reply.body, !request_done_, extra);
}

void ClientConnection::endChain() {
  if (!chain_) return;
  chain_->finish();
  spent_chains_.push_back(std::move(chain_));
}

// Checks a complete request head. Returns the status that refuses it, or 0.
int ClientConnection::rejectHead() {
  const MessageHead& h = request_.head();
  if (h.http_major != 1) return 400;
  // A reverse proxy has no tunnels to offer; and llhttp would take any body of a CONNECT for the
  // next request.
  if (request_.methodCode() == HTTP_CONNECT) return 405;
  if (h.content_length && *h.content_length > limits_.max_body_bytes) return 413;
  const std::string* host = nullptr;
  int hosts = 0;
  expect_continue_ = false;
  int codings = 0;
  for (const Header& hd : h.headers) {
    if (equalsIgnoreCase(hd.name, "host")) {
      host = &hd.value;
      ++hosts;
    } else if (equalsIgnoreCase(hd.name, "expect")) {
      if (!equalsIgnoreCase(hd.value, "100-continue")) return 417;
      expect_continue_ = true;
    } else if (equalsIgnoreCase(hd.name, "transfer-encoding")) {
      // Only a lone "chunked", refused here, before any 100. Without chunked last the body length
      // is unknowable (RFC 9112 6.3); and the body goes upstream de-chunked and chunked again, so
      // another coding ("gzip, chunked") would reach the backend without the header naming it.
      if (++codings > 1 || !equalsIgnoreCase(hd.value, "chunked")) return 400;
    }
  }
  if (hosts > 1 || (hosts == 0 && h.http_minor >= 1)) return 400;  // RFC 9112 3.2
  RequestTarget target = requestTarget(h.url, host);
  route_ = matchRoute(listener_, target.host, target.path);
  if (route_ == nullptr || route_->upstream == nullptr) return 404;
  return 0;
}

int ClientConnection::onBody(const char* data, size_t len) {
  body_bytes_ += len;
  if (body_bytes_ > limits_.max_body_bytes) {
    reject_status_ = 413;
    return -1;
  }
  if (request_chunked_) {
    appendChunk(upstream_out_, data, len);
  } else {
    evbuffer_add(upstream_out_, data, len);
  }
  if (head_held_ && hold_body_) held_body_.append(data, len);
  return 0;
}

int ClientConnection::onMessageComplete() {
  if (request_chunked_) evbuffer_add(upstream_out_, "0\r\n\r\n", 5);
  request_done_ = true;
  return HPE_PAUSED;
}

void ClientConnection::rejectRequest(int status, const char* why) {
  if (status == 400 || status == 413 || status == 431) bump(worker_.counters().bad_requests);
  spdlog::debug("refusing request from {} with {}: {}", peer_ip_, status, why ? why : "");
  upstream_.reset();  // it may hold part of this request: never reuse it
  evbuffer_drain(upstream_out_, evbuffer_get_length(upstream_out_));
  if (response_started_) {
    close();
    return;
  }
  if (request_start_ == Clock::time_point{}) request_start_ = Clock::now();
  // The parser stopped inside this request (a 404 or 417 is refused from its head, before any
  // body): the rest of the connection cannot be resynced, so it closes after the answer.
  sendLocalReply(status, std::string(reasonPhrase(status)) + "\n", true);
}

void ClientConnection::sendLocalReply(int status, std::string_view body, bool close_after,
                                      std::string_view extra_headers) {
  close_after = close_after || close_after_;
  std::string head = fmt::format("HTTP/1.1 {} {}\r\n", status, reasonPhrase(status));
  if (extra_headers.find("Content-Type:") == std::string_view::npos) {
    head += "Content-Type: text/plain\r\n";
  }
  head += extra_headers;
  head += fmt::format("Content-Length: {}\r\n{}\r\n", body.size(),
                      close_after ? "Connection: close\r\n" : "");
  evbuffer_add(out_, head.data(), head.size());
  bytes_out_ += head.size();
  if (!head_request_) {
    evbuffer_add(out_, body.data(), body.size());
    bytes_out_ += body.size();
  }
  finishRequest(status, close_after);
}

void ClientConnection::finishRequest(int status, bool close_after) {
  logRequest(status);
  if (close_after || close_after_ || worker_.draining()) {
    beginClosing();
    flushClient();
    return;
  }
  nextRequest();
}

void ClientConnection::nextRequest() {
  endChain();
  head_held_ = hold_body_ = continue_sent_ = response_waiting_ = capture_response_ = false;
  held_body_.clear();
  response_pending_.clear();
  captured_body_.clear();
  request_.resume();
  route_ = nullptr;
  request_done_ = false;
  request_chunked_ = false;
  expect_continue_ = false;
  head_request_ = false;
  reject_status_ = 0;
  head_raw_bytes_ = 0;
  body_bytes_ = bytes_in_ = bytes_out_ = 0;
  tried_servers_ = 0;
  connect_failures_ = 0;
  stale_retries_ = 0;
  upstream_timer_off_ = false;
  response_started_ = response_done_ = response_chunked_ = skipping_interim_ = false;
  request_start_ = Clock::time_point{};
  phase_ = Phase::kWaitRequest;
  // The keep-alive idle time starts once the response is out; until then send_timeout runs.
  event_del(timer_ev_);
  idle_after_send_ = true;
  flushClient();
  if (phase_ == Phase::kClosed) return;
  if (!client_eof_) wantClientRead(true);
  // A pipelined request already buffered: handle it from the event loop, not recursively.
  if (evbuffer_get_length(in_) > 0)
    event_active(read_ev_, EV_READ, 0);
  else if (client_eof_)
    closeAfterSending();
}

void ClientConnection::closeAfterSending() {
  if (evbuffer_get_length(out_) == 0) {
    close();
    return;
  }
  beginClosing();
}

// flushClient() lingers, then closes, once `out_` is empty; until then only send_timeout runs,
// and nothing is read (it would not be used).
void ClientConnection::beginClosing() {
  phase_ = Phase::kClosing;
  event_del(timer_ev_);
  idle_after_send_ = false;
  wantClientRead(false);
}

void ClientConnection::logRequest(int status) {
  WorkerMetrics& m = worker_.counters();
  auto now = Clock::now();
  uint64_t us =
      request_start_ == Clock::time_point{}
          ? 0
          : std::chrono::duration_cast<std::chrono::microseconds>(now - request_start_).count();
  m.observeRequest(status, us);
  const MessageHead& h = request_.head();
  AccessRecord r;
  r.time_us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  r.client = peer_ip_;
  r.method = h.method;
  r.path = h.url;
  r.status = status;
  r.bytes_in = bytes_in_;
  r.bytes_out = bytes_out_;
  r.duration_us = us;
  r.upstream =
      response_started_ || upstream_ ? std::string_view(upstream_name_) : std::string_view();
  if (ssl_) {
    r.tls_version = SSL_get_version(ssl_.get());
    r.tls_resumed = SSL_session_reused(ssl_.get()) != 0;
  }
  worker_.accessLog().append(r);
}

void ClientConnection::close() {
  if (phase_ == Phase::kClosed) return;
  if (phase_ == Phase::kExchange) logRequest(0);  // aborted mid-exchange
  phase_ = Phase::kClosed;
  endChain();
  if (ssl_ && !lingering_ && SSL_is_init_finished(ssl_.get())) {
    SSL_set_quiet_shutdown(ssl_.get(), 0);
    SSL_shutdown(ssl_.get());  // best effort close_notify; never waits
    ERR_clear_error();
  }
  event_del(read_ev_);
  event_del(write_ev_);
  event_del(timer_ev_);
  event_del(send_ev_);
  upstream_.reset();
  worker_.retire(this);
}

}  // namespace tessera::proxy
