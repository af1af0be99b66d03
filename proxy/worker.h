#pragma once

// A worker: one thread, one libevent base, its own SO_REUSEPORT listening sockets, its own
// upstream pool, metrics and access-log buffer. A connection lives and dies on one worker.
//
// Threading: the public methods marked "any thread" post work to the worker's own thread through
// a mailbox (mutex + event_active); that mutex is only taken on reload, drain and stop, never on
// the data path. Every other method is for the worker's thread only.

#include <event2/event.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/access_log.h"
#include "proxy/metrics.h"
#include "proxy/snapshot.h"
#include "proxy/tls_session_glue.h"
#include "proxy/upstream_pool.h"

namespace tessera::proxy {

class ClientConnection;

class OutboundCalls;

class Worker {
 public:
  // Listening sockets by listen address text ("127.0.0.1:8443"); the worker owns them.
  using ListenFds = std::map<std::string, int>;

  // `store` outlives the worker; each worker connects its own Store to it on its thread.
  Worker(int id, std::shared_ptr<const Snapshot> snapshot, ListenFds fds,
         cache::StoreBackend& store);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();  // any thread: spawns the thread
  void join();   // any thread
  // Any thread. New connections use `snapshot`; listeners it no longer names are closed and the
  // sockets in `added` start accepting.
  void reload(std::shared_ptr<const Snapshot> snapshot, ListenFds added);
  // Any thread. Stop accepting; connections finish their current request; the thread ends when
  // the last one closes.
  void drain();
  void stop();  // any thread: ends the loop now, dropping connections
  const WorkerMetrics& metrics() const { return metrics_; }
  bool finished() const { return finished_.load(std::memory_order_acquire); }  // any thread

  // Worker thread only.
  event_base* base() { return base_; }
  UpstreamPool& pool() { return *pool_; }
  WorkerMetrics& counters() { return metrics_; }
  AccessLogBuffer& accessLog() { return access_log_; }
  SessionCache& sessionCache() { return *session_cache_; }
  // Plugins' HTTPS calls (Context::post).
  OutboundCalls& outbound() { return *outbound_; }
  bool draining() const { return draining_; }
  // Scratch space for one read; valid until the next call that may read.
  char* scratch() { return scratch_.data(); }
  size_t scratchSize() const { return scratch_.size(); }
  // Destroys the connection once the current callback has returned.
  void retire(ClientConnection* conn);

 private:
  struct ListenSlot {
    int fd = -1;
    event* ev = nullptr;
    size_t listener = 0;  // index into the snapshot's listeners
  };

  void post(std::function<void()> fn);
  void run();
  void applySnapshot(std::shared_ptr<const Snapshot> snapshot, ListenFds added);
  void closeSlot(ListenSlot& slot);
  void beginDrain();
  void maybeFinishDrain();
  static void onAccept(evutil_socket_t fd, short what, void* arg);
  static void onMailbox(evutil_socket_t fd, short what, void* arg);
  static void onCleanup(evutil_socket_t fd, short what, void* arg);
  static void onTick(evutil_socket_t fd, short what, void* arg);
  static void onAcceptRetry(evutil_socket_t fd, short what, void* arg);
  void pauseAccepting(int error);
  void acceptFrom(ListenSlot& slot);

  int id_;
  event_base* base_;
  std::thread thread_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::map<std::string, ListenSlot> slots_;
  std::unique_ptr<UpstreamPool> pool_;
  cache::StoreBackend& store_backend_;
  std::unique_ptr<SessionCache> session_cache_;  // made on the worker thread
  std::unique_ptr<OutboundCalls> outbound_;      // made on the worker thread
  WorkerMetrics metrics_;
  AccessLogBuffer access_log_;
  std::vector<char> scratch_;
  std::unordered_map<ClientConnection*, std::unique_ptr<ClientConnection>> connections_;
  std::vector<std::unique_ptr<ClientConnection>> retired_;
  bool draining_ = false;
  std::atomic<bool> finished_{false};

  std::mutex mailbox_mu_;
  std::vector<std::function<void()>> mailbox_;
  event* mailbox_ev_;
  event* cleanup_ev_;
  event* tick_ev_;
  // Out of descriptors (EMFILE and friends): the listeners stay readable, so accepting pauses for
  // kAcceptRetry instead of spinning on accept(2) (nginx does the same).
  event* accept_retry_ev_;
  bool accept_paused_ = false;
};

}  // namespace tessera::proxy
