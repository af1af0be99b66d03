#include "proxy/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "proxy/client_connection.h"
#include "proxy/outbound_calls.h"
#include "proxy/socket_util.h"

namespace tessera::proxy {

namespace {

constexpr int kAcceptsPerEvent = 64;  // then let the loop serve existing connections
constexpr size_t kScratchBytes = 64 * 1024;
constexpr timeval kTick{0, 200 * 1000};
constexpr std::chrono::milliseconds kAcceptRetry{100};

}  // namespace

Worker::Worker(int id, std::shared_ptr<const Snapshot> snapshot, ListenFds fds,
               cache::StoreBackend& store)
    : id_(id), store_backend_(store), scratch_(kScratchBytes) {
  base_ = event_base_new();
  pool_ = std::make_unique<UpstreamPool>(base_, metrics_);
  mailbox_ev_ = event_new(base_, -1, 0, &Worker::onMailbox, this);
  cleanup_ev_ = event_new(base_, -1, 0, &Worker::onCleanup, this);
  tick_ev_ = event_new(base_, -1, EV_PERSIST, &Worker::onTick, this);
  accept_retry_ev_ = evtimer_new(base_, &Worker::onAcceptRetry, this);
  applySnapshot(std::move(snapshot), std::move(fds));
}

Worker::~Worker() {
  if (thread_.joinable()) {  // start-up failed after the workers started (admin port in use)
    stop();
    join();
  }
  for (auto& [key, slot] : slots_) closeSlot(slot);
  connections_.clear();  // before the session cache: they cancel their lookups in it
  retired_.clear();
  session_cache_.reset();
  outbound_.reset();
  pool_.reset();
  access_log_.flush();
  event_free(mailbox_ev_);
  event_free(cleanup_ev_);
  event_free(tick_ev_);
  event_free(accept_retry_ev_);
  event_base_free(base_);
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  // Named by role so that `top -H` and the session bench tell workers from store I/O threads.
  pthread_setname_np(pthread_self(), ("tessera:w" + std::to_string(id_)).c_str());
  session_cache_ = std::make_unique<SessionCache>(store_backend_.connect(base_), metrics_);
  outbound_ = std::make_unique<OutboundCalls>(base_);
  session_cache_->makeCurrent();
  event_add(tick_ev_, &kTick);
  event_base_dispatch(base_);
  session_cache_->store().flush();  // writes of the last pass (new sessions) still go out
  access_log_.flush();
  finished_.store(true, std::memory_order_release);
}

void Worker::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    mailbox_.push_back(std::move(fn));
  }
  event_active(mailbox_ev_, 0, 0);
}

void Worker::onMailbox(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Worker*>(arg);
  std::vector<std::function<void()>> work;
  {
    std::lock_guard<std::mutex> lock(self->mailbox_mu_);
    work.swap(self->mailbox_);
  }
  for (auto& fn : work) fn();
}

void Worker::reload(std::shared_ptr<const Snapshot> snapshot, ListenFds added) {
  post([this, snapshot = std::move(snapshot), added = std::move(added)]() mutable {
    applySnapshot(std::move(snapshot), std::move(added));
  });
}

void Worker::drain() {
  post([this] { beginDrain(); });
}

void Worker::stop() {
  post([this] { event_base_loopbreak(base_); });
}

void Worker::applySnapshot(std::shared_ptr<const Snapshot> snapshot, ListenFds added) {
  snapshot_ = std::move(snapshot);
  if (outbound_) outbound_->reload();  // certificates may have changed on disk
  access_log_.setSink(snapshot_->accessLog());
  std::map<std::string, ListenSlot> next;
  const auto& listeners = snapshot_->listeners();
  for (size_t i = 0; i < listeners.size(); ++i) {
    const std::string& key = listeners[i].address.text;
    ListenSlot slot;
    if (auto old = slots_.find(key); old != slots_.end()) {
      slot = old->second;
      slots_.erase(old);
    } else if (auto fresh = added.find(key); fresh != added.end()) {
      slot.fd = fresh->second;
      added.erase(fresh);
      slot.ev = event_new(base_, slot.fd, EV_READ | EV_PERSIST, &Worker::onAccept, this);
      if (!draining_ && !accept_paused_) event_add(slot.ev, nullptr);
    } else {
      continue;  // cannot happen: the server opens a socket for every new address
    }
    slot.listener = i;
    next.emplace(key, slot);
  }
  for (auto& [key, slot] : slots_) closeSlot(slot);  // addresses the new config dropped
  for (auto& [key, fd] : added) ::close(fd);
  slots_ = std::move(next);
}

void Worker::closeSlot(ListenSlot& slot) {
  if (slot.ev != nullptr) event_free(slot.ev);
  if (slot.fd >= 0) ::close(slot.fd);
  slot.ev = nullptr;
  slot.fd = -1;
}

void Worker::onAccept(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<Worker*>(arg);
  for (auto& [key, slot] : self->slots_) {
    if (slot.fd == fd) {
      self->acceptFrom(slot);
      return;
    }
  }
}

void Worker::acceptFrom(ListenSlot& slot) {
  for (int i = 0; i < kAcceptsPerEvent; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    int fd =
        ::accept4(slot.fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (isLocalSocketShortage(errno)) {
        pauseAccepting(errno);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::warn("worker {}: accept: {}", id_, strerror(errno));
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto conn = std::make_unique<ClientConnection>(*this, snapshot_, slot.listener, fd, peer);
    ClientConnection* raw = conn.get();
    connections_.emplace(raw, std::move(conn));
    raw->start();
  }
}

void Worker::pauseAccepting(int error) {
  if (accept_paused_) return;
  accept_paused_ = true;
  spdlog::warn("worker {}: accept: {}; not accepting for {} ms", id_, strerror(error),
               kAcceptRetry.count());
  for (auto& [key, slot] : slots_) {
    if (slot.ev != nullptr) event_del(slot.ev);
  }
  timeval tv{0, static_cast<suseconds_t>(kAcceptRetry.count() * 1000)};
  event_add(accept_retry_ev_, &tv);
}

void Worker::onAcceptRetry(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Worker*>(arg);
  self->accept_paused_ = false;
  if (self->draining_) return;
  for (auto& [key, slot] : self->slots_) {
    if (slot.ev != nullptr) event_add(slot.ev, nullptr);
  }
}

void Worker::retire(ClientConnection* conn) {
  auto it = connections_.find(conn);
  if (it == connections_.end()) return;
  retired_.push_back(std::move(it->second));
  connections_.erase(it);
  event_active(cleanup_ev_, 0, 0);
}

void Worker::onCleanup(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Worker*>(arg);
  self->retired_.clear();
  self->maybeFinishDrain();
}

void Worker::onTick(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->access_log_.flush();
}

void Worker::beginDrain() {
  draining_ = true;
  for (auto& [key, slot] : slots_) closeSlot(slot);
  slots_.clear();
  pool_->clear();
  // Collect first: drain() may retire the connection, which edits the map.
  std::vector<ClientConnection*> conns;
  for (auto& [raw, conn] : connections_) conns.push_back(raw);
  for (ClientConnection* c : conns) c->drain();
  maybeFinishDrain();
}

void Worker::maybeFinishDrain() {
  if (draining_ && connections_.empty()) {
    access_log_.flush();
    event_base_loopexit(base_, nullptr);
  }
}

}  // namespace tessera::proxy
