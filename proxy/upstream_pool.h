#pragma once

// Connections from one worker to upstream servers: a keep-alive pool per server, round-robin
// choice among an upstream's servers, and passive health (a server that failed to connect is
// skipped for the upstream's fail_timeout).
//
// Threading: one UpstreamPool per worker, used only on that worker's thread. No locks.
// Ownership: acquire() hands the caller a unique_ptr; the caller gives a reusable connection back
// with release() or simply destroys it (which closes the socket).

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/metrics.h"
#include "proxy/snapshot.h"

namespace tessera::proxy {

class UpstreamConn {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // `what` is EV_READ, EV_WRITE or EV_TIMEOUT. The handler may destroy the connection.
    virtual void onUpstreamEvent(UpstreamConn& conn, short what) = 0;
  };

  UpstreamConn(event_base* base, int fd, const SocketAddress& server, std::string upstream);
  ~UpstreamConn();
  UpstreamConn(const UpstreamConn&) = delete;
  UpstreamConn& operator=(const UpstreamConn&) = delete;

  int fd() const { return fd_; }
  const SocketAddress& server() const { return server_; }
  const std::string& upstream() const { return upstream_; }
  void setHandler(Handler* h) { handler_ = h; }
  void wantRead(bool on);
  void wantWrite(bool on);
  void armTimer(std::chrono::milliseconds after);
  void disarmTimer();
  // SO_ERROR of a finished non-blocking connect (0 = connected).
  int connectResult() const;

  bool connecting = true;  // until the first writable event says the connect finished
  bool reused = false;     // taken from the pool, not freshly connected

 private:
  static void onEvent(evutil_socket_t fd, short what, void* arg);

  int fd_;
  SocketAddress server_;  // a copy: pooled connections outlive the snapshot that made them
  std::string upstream_;
  Handler* handler_ = nullptr;
  event* read_ev_;
  event* write_ev_;
  event* timer_ev_;
  bool reading_ = false;
  bool writing_ = false;
};

class UpstreamPool : private UpstreamConn::Handler {
 public:
  UpstreamPool(event_base* base, WorkerMetrics& metrics);
  ~UpstreamPool() override;

  // Picks a server of `up` by round robin, skipping servers inside their fail window and those
  // whose bit is set in `tried` (bit i = servers[i]); when every untried server is in its fail
  // window, the one whose window ends first is tried anyway, so recovery is noticed. Returns a
  // pooled idle connection to it, or a new connection whose connect is under way, or null with
  // `error` set (an errno) when no untried server is left or the socket could not be made.
  // `server_index` tells which server was picked.
  std::unique_ptr<UpstreamConn> acquire(const UpstreamTarget& up, uint64_t tried,
                                        size_t& server_index, int& error);
  // Keeps an idle connection for reuse, up to `keepalive` idle ones per upstream.
  void release(std::unique_ptr<UpstreamConn> conn, int keepalive);
  void markFailed(const SocketAddress& server, std::chrono::milliseconds fail_timeout);
  size_t idleCount() const;
  void clear();  // closes every idle connection (worker shutdown)

 private:
  using Clock = std::chrono::steady_clock;
  void onUpstreamEvent(UpstreamConn& conn, short what) override;
  int pickServer(const UpstreamTarget& up, uint64_t tried);
  std::unique_ptr<UpstreamConn> connect(const SocketAddress& server, const std::string& upstream,
                                        int& error);

  event_base* base_;
  WorkerMetrics& metrics_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConn>>> idle_;  // by server
  std::unordered_map<std::string, int> idle_per_upstream_;
  std::unordered_map<std::string, Clock::time_point> down_until_;  // by server
  std::unordered_map<std::string, size_t> next_;                   // round robin, by upstream
};

}  // namespace tessera::proxy
