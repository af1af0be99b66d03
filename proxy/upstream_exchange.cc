// The upstream half of ClientConnection: connecting (with retry over the upstream's servers and
// passive health), streaming the request up, parsing the response with llhttp and streaming it
// back with the framing the client needs.

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "proxy/client_connection.h"
#include "proxy/socket_util.h"
#include "proxy/worker.h"

namespace tessera::proxy {

namespace {

constexpr int kReadsPerEvent = 4;
// A pooled connection the server closed while idle shows up as EOF on first use. Requests with no
// body are sent again on a fresh connection this many times.
constexpr int kMaxStaleRetries = 2;

}  // namespace

void ClientConnection::connectUpstream() {
  const UpstreamTarget& up = *route_->upstream;
  int error = 0;
  server_index_ = up.servers.size();  // stays so when no server is left to try
  upstream_ = worker_.pool().acquire(up, tried_servers_, server_index_, error);
  if (!upstream_) {
    if (server_index_ < up.servers.size() && !isLocalSocketShortage(error)) {
      upstreamConnectFailed(error, false);  // connect() failed at once (no route, no address)
      return;
    }
    // Nothing left to try, or this machine is out of sockets: another server would not help.
    bump(worker_.counters().upstream_connect_errors);
    spdlog::warn("upstream {}: no server to connect to: {}", up.conf->name, strerror(error));
    upstreamFailed(502);
    return;
  }
  if (server_index_ < 64) tried_servers_ |= 1ull << server_index_;
  upstream_name_ = upstream_->server().text;
  upstream_->setHandler(this);
  upstream_timer_off_ = false;
  response_->reset();
  if (upstream_->reused) {
    upstream_->connecting = false;
    onUpstreamConnected();
    return;
  }
  upstream_->wantWrite(true);
  upstream_->armTimer(up.conf->connect_timeout);
}

// The connect to server_index_ failed (at once, later, or timed out): skip that server for a
// while and try the next one, each server once per request (the count also bounds upstreams of
// more than 64 servers, which the tried bits cannot cover).
void ClientConnection::upstreamConnectFailed(int error, bool timeout) {
  const UpstreamTarget& up = *route_->upstream;
  const SocketAddress& server = up.servers[server_index_];
  bump(worker_.counters().upstream_connect_errors);
  spdlog::warn("upstream {}: connect to {} failed: {}", up.conf->name, server.text,
               timeout ? "timed out" : strerror(error));
  worker_.pool().markFailed(server, up.conf->fail_timeout);
  if (server_index_ < 64) tried_servers_ |= 1ull << server_index_;
  upstream_.reset();
  if (++connect_failures_ < up.servers.size()) {
    connectUpstream();
    return;
  }
  upstreamFailed(timeout ? 504 : 502);
}

void ClientConnection::onUpstreamEvent(UpstreamConn& conn, short what) {
  if ((what & EV_TIMEOUT) != 0) {
    if (conn.connecting) {
      upstreamConnectFailed(ETIMEDOUT, true);
      return;
    }
    bump(worker_.counters().upstream_timeouts);
    spdlog::warn("upstream {}: no response from {} within read_timeout",
                 route_->upstream->conf->name, upstream_name_);
    upstreamFailed(504);
    return;
  }
  if (conn.connecting) {
    if ((what & EV_WRITE) == 0) return;
    if (int err = conn.connectResult(); err != 0) {
      upstreamConnectFailed(err, false);
      return;
    }
    conn.connecting = false;
    onUpstreamConnected();
    return;
  }
  if ((what & EV_READ) != 0) readUpstream();
  if ((what & EV_WRITE) != 0 && upstream_ && phase_ == Phase::kExchange) writeUpstream();
}

void ClientConnection::onUpstreamConnected() {
  upstream_->disarmTimer();
  upstream_->wantRead(true);
  upstream_->armTimer(route_->upstream->conf->read_timeout);
  writeUpstream();
}

// The upstream's read_timeout runs while it has to do something: take request bytes (re-armed
// on each write that makes progress) or answer (once the whole request is out, and between reads
// of the response). While tessera waits for more of the body from the client, the client's
// idle_timeout runs instead, so a slow upload is not cut off with a 504.
void ClientConnection::writeUpstream() {
  bool progressed = false;
  while (evbuffer_get_length(upstream_out_) > 0) {
    int n = evbuffer_write(upstream_out_, upstream_->fd());
    if (n > 0) {
      progressed = true;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      upstream_->wantWrite(true);  // bytes wait on the upstream now: it is the side that must act
      if (progressed || upstream_timer_off_) armUpstreamTimer();
      return;
    }
    upstreamBroke();
    return;
  }
  upstream_->wantWrite(false);
  if (request_done_) {
    if (progressed || upstream_timer_off_) armUpstreamTimer();
  } else if (!response_->inMessage()) {
    upstream_->disarmTimer();  // waiting for the client's body, not for the upstream
    upstream_timer_off_ = true;
  }
  if (client_read_paused_ && phase_ == Phase::kExchange) {
    client_read_paused_ = false;
    wantClientRead(true);
    event_active(read_ev_, EV_READ, 0);  // bytes may already wait in `in_` or inside TLS
  }
}

// Arms the upstream's read_timeout, unless reading from it is paused for a slow client (then
// send_timeout watches the client, and resuming the reads arms it again).
void ClientConnection::armUpstreamTimer() {
  upstream_timer_off_ = false;
  if (!upstream_read_paused_) upstream_->armTimer(route_->upstream->conf->read_timeout);
}

void ClientConnection::readUpstream() {
  for (int i = 0; i < kReadsPerEvent && upstream_ && !upstream_read_paused_; ++i) {
    ssize_t n = ::read(upstream_->fd(), worker_.scratch(), worker_.scratchSize());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      upstreamEof();
      return;
    }
    bool short_read = static_cast<size_t>(n) < worker_.scratchSize();
    if (!feedResponse(worker_.scratch(), static_cast<size_t>(n))) return;
    if (short_read) break;  // drained; level-triggered events bring the rest
  }
  if (!upstream_) return;
  upstream_->armTimer(route_->upstream->conf->read_timeout);
  flushClient();
  if (phase_ != Phase::kClosed && upstream_ && evbuffer_get_length(out_) > kHighWater) {
    upstream_read_paused_ = true;  // the client is slower than the upstream
    upstream_->wantRead(false);
    upstream_->disarmTimer();  // send_timeout watches the client; reading resumes the timer
  }
}

// Parses response bytes from the upstream. Returns false once they ended the exchange (or a
// response hook now waits), so the caller stops reading.
bool ClientConnection::feedResponse(const char* data, size_t len) {
  HttpParser::Result r = response_->feed(data, len);
  if (r.error == HPE_PAUSED && response_waiting_) {
    // A response hook waits: keep what came after the head, read nothing more until it is done.
    response_pending_.assign(data + r.consumed, len - r.consumed);
    upstream_read_paused_ = true;
    upstream_->wantRead(false);
    return false;
  }
  if (r.error == HPE_PAUSED) {
    // Bytes after the response would be a protocol violation: do not reuse the connection.
    endExchange(r.consumed == len);
    return false;
  }
  if (r.error != HPE_OK && plugin_reply_) {
    upstream_.reset();  // its response was replaced: the rest of it is never read
    LocalReply reply = std::move(*plugin_reply_);
    plugin_reply_.reset();
    chainReplied(std::move(reply));
    return false;
  }
  if (r.error != HPE_OK) {
    spdlog::warn("upstream {}: bad response from {}: {}", route_->upstream->conf->name,
                 upstream_name_, response_->errorReason());
    upstreamFailed(502);
    return false;
  }
  return true;
}

// Every response hook went on after one of them waited: the held head goes out, then the bytes
// that came with it, then reading resumes.
void ClientConnection::responseResumed() {
  if (!response_waiting_ || !upstream_) return;
  response_waiting_ = false;
  startResponse();  // a HEAD's bodiless framing was set when the parser paused
  response_->resume();
  std::string pending;
  pending.swap(response_pending_);
  // Fed even when empty: the parser then completes a bodiless message (HEAD, 204, 304, length 0)
  // without waiting for bytes that will never come.
  if (!feedResponse(pending.data(), pending.size())) {
    flushClient();
    return;
  }
  flushClient();
  if (phase_ == Phase::kClosed || !upstream_) return;
  if (evbuffer_get_length(out_) <= kHighWater) resumeUpstreamRead();
}

void ClientConnection::resumeUpstreamRead() {
  if (response_waiting_) return;  // a response hook still holds the head
  upstream_read_paused_ = false;
  if (upstream_) {
    upstream_->wantRead(true);
    readUpstream();
  }
}

// The upstream closed (or reset) the connection.
void ClientConnection::upstreamEof() {
  // A body that ends at the close: streamed, or whole for a plugin that wanted it.
  if ((response_started_ || capture_response_) && response_->messageNeedsEof()) {
    llhttp_errno_t e = response_->finish();
    if (e == HPE_OK || e == HPE_PAUSED) {  // a read-until-close body just ended
      endExchange(false);
      return;
    }
  }
  upstreamBroke();
}

// The connection failed before or during the response.
void ClientConnection::upstreamBroke() {
  if (response_started_) {
    close();  // a truncated body cannot be repaired; the client sees the connection end
    return;
  }
  bool no_body = !request_chunked_ && request_.head().content_length.value_or(0) == 0;
  if (upstream_->reused && !response_->inMessage() && no_body && request_done_ &&
      stale_retries_ < kMaxStaleRetries) {
    // The server closed a pooled connection as we sent on it. Nothing was processed.
    ++stale_retries_;
    upstream_.reset();
    evbuffer_drain(upstream_out_, evbuffer_get_length(upstream_out_));
    evbuffer_add(upstream_out_, upstream_head_.data(), upstream_head_.size());
    if (server_index_ < 64) tried_servers_ &= ~(1ull << server_index_);
    connectUpstream();
    return;
  }
  spdlog::warn("upstream {}: {} closed the connection before a full response",
               route_->upstream->conf->name, upstream_name_);
  upstreamFailed(502);
}

void ClientConnection::upstreamFailed(int status) {
  upstream_.reset();
  evbuffer_drain(upstream_out_, evbuffer_get_length(upstream_out_));
  if (response_started_) {
    close();
    return;
  }
  std::string body = status == 504 ? "upstream timed out\n" : "upstream unavailable\n";
  sendLocalReply(status, body, !request_done_);
}

void ClientConnection::endExchange(bool reusable) {
  reusable = reusable && request_done_ && evbuffer_get_length(upstream_out_) == 0 &&
             response_->shouldKeepAlive();
  if (reusable) {
    worker_.pool().release(std::move(upstream_), route_->upstream->conf->keepalive);
  }
  upstream_.reset();
  upstream_read_paused_ = false;
  finishRequest(response_->head().status, !request_done_);
}

int ClientConnection::onResponseHead() {
  const MessageHead& h = response_->head();
  if (h.status >= 100 && h.status < 200) {
    // Interim responses (100, 103) are dropped: tessera answers Expect itself, and an HTTP/1.0
    // client could not take them. 101 never comes, since Upgrade is not forwarded.
    skipping_interim_ = true;
    return h.status == 101 ? -1 : 0;
  }
  if (chain_) {
    PluginChain::State s = chain_->runResponse(response_->head());
    if (s == PluginChain::State::kReplied) {
      plugin_reply_ = chain_->takeReply();
      return -1;  // readUpstream() drops the upstream's answer and sends this one
    }
    if (s == PluginChain::State::kWaiting) {
      response_waiting_ = true;
      if (bodilessStatus()) response_->skipBodyOnResume();
      return HPE_PAUSED;  // feedResponse() keeps the rest; responseResumed() goes on
    }
  }
  return startResponse();
}

bool ClientConnection::bodilessStatus() const {
  int status = response_->head().status;
  return head_request_ || status == 204 || status == 304;
}

// The response hooks have all gone on: the head goes out now, or, when a plugin wants the whole
// body first, once the body is in (sendCapturedResponse()).
int ClientConnection::startResponse() {
  const MessageHead& h = response_->head();
  bool bodiless = bodilessStatus() || (h.content_length == 0 && !h.chunked);
  if (chain_ && !bodiless && chain_->wantsResponseBody()) {
    capture_response_ = true;
    return 0;
  }
  return beginResponse();
}

void ClientConnection::sendCapturedResponse() {
  capture_response_ = false;
  chain_->runResponseBody(captured_body_);
  MessageHead& h = response_->head();
  h.headers.removeAll("content-length");
  h.headers.add("Content-Length", std::to_string(captured_body_.size()));
  h.content_length = captured_body_.size();
  h.chunked = false;
  beginResponse();
  evbuffer_add(out_, captured_body_.data(), captured_body_.size());
  bytes_out_ += captured_body_.size();
  captured_body_.clear();
}

// Sends the (final) response head to the client. Returns what on_headers_complete returns.
int ClientConnection::beginResponse() {
  const MessageHead& h = response_->head();
  response_started_ = true;
  ResponseFraming f;
  f.http10_client = request_.head().http_minor == 0;
  f.no_body = bodilessStatus();
  bool known_length = h.content_length.has_value() && !h.chunked;
  f.chunked = !f.no_body && !known_length && !f.http10_client;
  bool delimited = f.no_body || known_length || f.chunked;
  f.keep_alive = delimited && !close_after_ && request_.head().keep_alive && !worker_.draining();
  close_after_ = close_after_ || !f.keep_alive;
  response_chunked_ = f.chunked;
  std::string& head = upstream_head_scratch_;
  head.clear();
  writeClientResponseHead(h, f, head);
  evbuffer_add(out_, head.data(), head.size());
  bytes_out_ += head.size();
  // 1 = no body follows, whatever Content-Length or Transfer-Encoding say: llhttp knows that of
  // HEAD only from us, and of 204 and 304 only when they give no length (RFC 9110 8.6 lets a 304
  // carry the Content-Length of the representation it stands for).
  return f.no_body ? 1 : 0;
}

int ClientConnection::onResponseBody(const char* data, size_t len) {
  if (capture_response_) {
    if (captured_body_.size() + len > limits_.max_body_bytes) {
      spdlog::warn("upstream {}: a response body over limits.max_body_bytes for a plugin to read",
                   route_->upstream->conf->name);
      return -1;  // a bad response: 502, as nothing of it went out yet
    }
    captured_body_.append(data, len);
    return 0;
  }
  if (response_chunked_) {
    bytes_out_ += appendChunk(out_, data, len);
  } else {
    evbuffer_add(out_, data, len);
    bytes_out_ += len;
  }
  return 0;
}

int ClientConnection::onResponseComplete() {
  if (skipping_interim_) {
    skipping_interim_ = false;
    return 0;  // the real response follows on the same connection
  }
  if (capture_response_) sendCapturedResponse();
  if (response_chunked_) {
    evbuffer_add(out_, "0\r\n\r\n", 5);
    bytes_out_ += 5;
  }
  response_done_ = true;
  return HPE_PAUSED;
}

}  // namespace tessera::proxy
