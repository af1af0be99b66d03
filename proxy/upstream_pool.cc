#include "proxy/upstream_pool.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace tessera::proxy {

namespace {

// How long an idle pooled connection is kept before tessera closes it itself; most servers close
// idle keep-alive connections after 60 s or more, and closing first avoids racing them.
constexpr std::chrono::milliseconds kPoolIdle{30000};

timeval toTimeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

}  // namespace

UpstreamConn::UpstreamConn(event_base* base, int fd, const SocketAddress& server,
                           std::string upstream)
    : fd_(fd), server_(server), upstream_(std::move(upstream)) {
  read_ev_ = event_new(base, fd, EV_READ | EV_PERSIST, &UpstreamConn::onEvent, this);
  write_ev_ = event_new(base, fd, EV_WRITE | EV_PERSIST, &UpstreamConn::onEvent, this);
  timer_ev_ = evtimer_new(base, &UpstreamConn::onEvent, this);
}

UpstreamConn::~UpstreamConn() {
  event_free(read_ev_);
  event_free(write_ev_);
  event_free(timer_ev_);
  ::close(fd_);
}

void UpstreamConn::onEvent(evutil_socket_t, short what, void* arg) {
  auto* self = static_cast<UpstreamConn*>(arg);
  if (self->handler_ != nullptr) self->handler_->onUpstreamEvent(*self, what);
}

void UpstreamConn::wantRead(bool on) {
  if (on == reading_) return;
  reading_ = on;
  on ? event_add(read_ev_, nullptr) : event_del(read_ev_);
}

void UpstreamConn::wantWrite(bool on) {
  if (on == writing_) return;
  writing_ = on;
  on ? event_add(write_ev_, nullptr) : event_del(write_ev_);
}

void UpstreamConn::armTimer(std::chrono::milliseconds after) {
  timeval tv = toTimeval(after);
  event_add(timer_ev_, &tv);
}

void UpstreamConn::disarmTimer() { event_del(timer_ev_); }

int UpstreamConn::connectResult() const {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

UpstreamPool::UpstreamPool(event_base* base, WorkerMetrics& metrics)
    : base_(base), metrics_(metrics) {}

UpstreamPool::~UpstreamPool() { clear(); }

void UpstreamPool::clear() {
  idle_.clear();
  idle_per_upstream_.clear();
}

size_t UpstreamPool::idleCount() const {
  size_t n = 0;
  for (const auto& [key, conns] : idle_) n += conns.size();
  return n;
}

int UpstreamPool::pickServer(const UpstreamTarget& up, uint64_t tried) {
  size_t n = up.servers.size();
  size_t& next = next_[up.conf->name];
  Clock::time_point now = Clock::now();
  int fallback = -1;
  Clock::time_point fallback_until = Clock::time_point::max();
  for (size_t k = 0; k < n; ++k) {
    size_t i = (next + k) % n;
    if (i < 64 && (tried & (1ull << i)) != 0) continue;
    auto down = down_until_.find(up.servers[i].text);
    if (down == down_until_.end() || down->second <= now) {
      next = i + 1;
      return static_cast<int>(i);
    }
    if (down->second < fallback_until) {
      fallback_until = down->second;
      fallback = static_cast<int>(i);
    }
  }
  if (fallback >= 0) next = fallback + 1;
  return fallback;
}

std::unique_ptr<UpstreamConn> UpstreamPool::acquire(const UpstreamTarget& up, uint64_t tried,
                                                    size_t& server_index, int& error) {
  int i = pickServer(up, tried);
  if (i < 0) {
    error = ECONNREFUSED;
    return nullptr;
  }
  server_index = static_cast<size_t>(i);
  const SocketAddress& server = up.servers[server_index];
  auto it = idle_.find(server.text);
  if (it != idle_.end() && !it->second.empty()) {
    std::unique_ptr<UpstreamConn> conn = std::move(it->second.back());
    it->second.pop_back();
    --idle_per_upstream_[conn->upstream()];
    conn->setHandler(nullptr);  // read interest stays on: the new owner wants it too
    conn->disarmTimer();
    conn->reused = true;
    bump(metrics_.upstream_reuses);
    return conn;
  }
  return connect(server, up.conf->name, error);
}

std::unique_ptr<UpstreamConn> UpstreamPool::connect(const SocketAddress& server,
                                                    const std::string& upstream, int& error) {
  int fd = ::socket(server.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errno;
    return nullptr;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, server.sa(), server.len) != 0 && errno != EINPROGRESS) {
    error = errno;
    ::close(fd);
    return nullptr;
  }
  bump(metrics_.upstream_connects);
  return std::make_unique<UpstreamConn>(base_, fd, server, upstream);
}

void UpstreamPool::release(std::unique_ptr<UpstreamConn> conn, int keepalive) {
  int& count = idle_per_upstream_[conn->upstream()];
  if (count >= keepalive) return;  // destroying it closes the socket
  ++count;
  conn->setHandler(this);
  conn->wantWrite(false);
  conn->wantRead(true);  // readable while idle means the server closed it (or sent garbage)
  conn->armTimer(kPoolIdle);
  idle_[conn->server().text].push_back(std::move(conn));
}

void UpstreamPool::markFailed(const SocketAddress& server, std::chrono::milliseconds fail_timeout) {
  down_until_[server.text] = Clock::now() + fail_timeout;
}

void UpstreamPool::onUpstreamEvent(UpstreamConn& conn, short) {
  auto it = idle_.find(conn.server().text);
  if (it == idle_.end()) return;
  auto& list = it->second;
  auto pos =
      std::find_if(list.begin(), list.end(), [&](const auto& p) { return p.get() == &conn; });
  if (pos == list.end()) return;
  --idle_per_upstream_[conn.upstream()];
  list.erase(pos);  // closes it; libevent allows freeing an event from its own callback
}

}  // namespace tessera::proxy
