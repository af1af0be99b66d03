#pragma once

// The bookkeeping every Store implementation needs on the worker side: operation ids, deadlines,
// cancellation, and results handed in from any thread but delivered on the worker's event loop.
//
// Threads: start(), cancel() and the destructor run on the worker thread. complete() may run on
// any thread (memcached I/O threads), also after the worker has destroyed its Store: results for a
// PendingOps that is shut down are dropped. Hold it by shared_ptr from the I/O side.

#include <event2/event.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cache/store.h"

namespace tessera::cache {

class PendingOps : public std::enable_shared_from_this<PendingOps> {
 public:
  static std::shared_ptr<PendingOps> create(event_base* base);
  ~PendingOps();
  PendingOps(const PendingOps&) = delete;
  PendingOps& operator=(const PendingOps&) = delete;

  // Worker thread. Registers `done` with a deadline; returns its id.
  OpId start(Millis timeout, Callback done);
  // Worker thread.
  void cancel(OpId id);
  // Any thread. Delivers `result` for `id` from the worker's loop, unless it timed out, was
  // cancelled, or the PendingOps was shut down.
  void complete(OpId id, Result result);
  // Worker thread, while the event_base is alive: drop everything, free every event; later
  // complete() calls are ignored. A Store calls it from its destructor (the PendingOps itself may
  // live on, held by in-flight I/O jobs).
  void shutdown();
  size_t pending() const { return ops_.size(); }  // worker thread

 private:
  struct Op {
    Callback done;
    event* timer = nullptr;
    PendingOps* owner = nullptr;
    OpId id = 0;
  };

  explicit PendingOps(event_base* base);
  static void onTimeout(evutil_socket_t, short, void* arg);
  static void onReady(evutil_socket_t, short, void* arg);
  void deliver(OpId id, Result result);
  void drain();

  event_base* base_;
  event* ready_ev_;
  OpId next_id_ = 1;
  std::unordered_map<OpId, std::unique_ptr<Op>> ops_;  // worker thread only

  std::mutex mu_;  // guards the two below; never held while a callback runs
  bool closed_ = false;
  std::vector<std::pair<OpId, Result>> ready_;
};

}  // namespace tessera::cache
