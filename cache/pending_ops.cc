#include "cache/pending_ops.h"

namespace tessera::cache {

const char* statusName(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kNotFound:
      return "not_found";
    case Status::kExists:
      return "exists";
    case Status::kTimeout:
      return "timeout";
    case Status::kError:
      return "error";
  }
  return "unknown";
}

std::shared_ptr<PendingOps> PendingOps::create(event_base* base) {
  return std::shared_ptr<PendingOps>(new PendingOps(base));
}

PendingOps::PendingOps(event_base* base) : base_(base) {
  ready_ev_ = event_new(base, -1, 0, &PendingOps::onReady, this);
}

// May run on an I/O thread, after the worker's base is gone: shutdown() has freed every event.
PendingOps::~PendingOps() { shutdown(); }

void PendingOps::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    ready_.clear();
    event_free(ready_ev_);  // under the lock: complete() must not activate a freed event
    ready_ev_ = nullptr;
  }
  for (auto& [id, op] : ops_) event_free(op->timer);
  ops_.clear();
}

OpId PendingOps::start(Millis timeout, Callback done) {
  auto op = std::make_unique<Op>();
  op->id = next_id_++;
  op->owner = this;
  op->done = std::move(done);
  op->timer = evtimer_new(base_, &PendingOps::onTimeout, op.get());
  if (timeout.count() < 0) timeout = Millis(0);
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  evtimer_add(op->timer, &tv);
  OpId id = op->id;
  ops_.emplace(id, std::move(op));
  return id;
}

void PendingOps::cancel(OpId id) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;
  event_free(it->second->timer);
  ops_.erase(it);
}

void PendingOps::complete(OpId id, Result result) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  bool was_empty = ready_.empty();
  ready_.emplace_back(id, std::move(result));
  // One wake-up per batch: the worker drains every result that arrived meanwhile.
  if (was_empty) event_active(ready_ev_, 0, 0);
}

void PendingOps::onTimeout(evutil_socket_t, short, void* arg) {
  Op* op = static_cast<Op*>(arg);
  op->owner->deliver(op->id, Result{Status::kTimeout, {}});
}

void PendingOps::onReady(evutil_socket_t, short, void* arg) {
  static_cast<PendingOps*>(arg)->drain();
}

void PendingOps::drain() {
  std::vector<std::pair<OpId, Result>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(ready_);
  }
  // A callback may destroy the Store that owns this object; keep it alive for the loop.
  std::shared_ptr<PendingOps> self = shared_from_this();
  for (auto& [id, result] : batch) {
    if (closed_) return;
    deliver(id, std::move(result));
  }
}

void PendingOps::deliver(OpId id, Result result) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;  // timed out, cancelled, or answered already
  Callback done = std::move(it->second->done);
  event_free(it->second->timer);
  ops_.erase(it);
  done(std::move(result));
}

}  // namespace tessera::cache
