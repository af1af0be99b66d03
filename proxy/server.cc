#include "proxy/server.h"

#include <event2/buffer.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <iostream>

#include "proxy/metrics.h"
#include "proxy/store_factory.h"

namespace tessera::proxy {

namespace {

constexpr timeval kShutdownTick{0, 50 * 1000};
constexpr std::chrono::milliseconds kAdminAcceptRetry{100};
constexpr ev_ssize_t kAdminMaxBody = 4096;  // a blocklist change is a few hundred bytes
constexpr ev_ssize_t kAdminMaxHeaders = 16384;
// Between two reads or writes; evhttp also runs it while a request waits for its answer, and
// blocklist changes wait in turn for the store's lock (up to 6 s each, plus the store's calls).
constexpr int kAdminTimeoutSeconds = 60;

void printErrors(const conf::ConfigError& e) {
  for (const conf::Error& err : e.errors()) spdlog::error("{}", err.str());
}

}  // namespace

void setupLogging(const std::string& level) {
  if (!spdlog::thread_pool()) {
    spdlog::init_thread_pool(8192, 1, [] { pthread_setname_np(pthread_self(), "tessera:log"); });
  }
  if (!spdlog::get("tessera")) {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto logger = std::make_shared<spdlog::async_logger>(
        "tessera", sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
    spdlog::register_logger(logger);
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::flush_on(spdlog::level::warn);
  }
  spdlog::set_level(spdlog::level::from_str(level));
}

Server::Server(std::string config_path) : config_path_(std::move(config_path)) {}

Server::~Server() {
  for (event* ev : signal_events_) event_free(ev);
  if (shutdown_tick_ != nullptr) event_free(shutdown_tick_);
  if (admin_ != nullptr) evhttp_free(admin_);
  blocklist_.reset();  // its Store goes before the backend
  workers_.clear();
  store_.reset();
  if (base_ != nullptr) event_base_free(base_);
}

int Server::run() {
  evthread_use_pthreads();
  signal(SIGPIPE, SIG_IGN);
  OPENSSL_init_ssl(0, nullptr);
  try {
    snapshot_ = Snapshot::build(conf::loadFile(config_path_));
  } catch (const conf::ConfigError& e) {
    setupLogging("info");
    printErrors(e);
    spdlog::shutdown();
    return 1;
  }
  setupLogging(snapshot_->config().log.level);
  base_ = event_base_new();
  if (!startStore() || !startWorkers() || !startAdmin()) {
    spdlog::shutdown();
    return 1;
  }
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    event* ev = evsignal_new(base_, sig, &Server::onSignal, this);
    event_add(ev, nullptr);
    signal_events_.push_back(ev);
  }
  spdlog::info("tessera {} running with {} workers, config {}", TESSERA_VERSION, workers_.size(),
               config_path_);
  event_base_dispatch(base_);
  for (auto& w : workers_) w->join();
  spdlog::info("tessera stopped");
  spdlog::shutdown();
  return 0;
}

bool Server::openListenFds(const Snapshot& snap, const std::set<std::string>& skip,
                           std::vector<Worker::ListenFds>& out) {
  size_t n = out.size();
  for (const ListenerTarget& l : snap.listeners()) {
    if (skip.count(l.address.text) != 0) continue;
    for (size_t w = 0; w < n; ++w) {
      std::string error;
      int fd = openListener(l.address, error);
      if (fd < 0) {
        conf::Error e{snap.config().file, l.conf->listen.mark, l.conf->listen.key_path, error};
        spdlog::error("{}", e.str());
        for (auto& fds : out) {
          for (auto& [key, f] : fds) ::close(f);
        }
        return false;
      }
      out[w][l.address.text] = fd;
    }
  }
  return true;
}

bool Server::startWorkers() {
  int n = snapshot_->config().effectiveWorkers();
  std::vector<Worker::ListenFds> fds(static_cast<size_t>(n));
  if (!openListenFds(*snapshot_, {}, fds)) return false;
  for (const ListenerTarget& l : snapshot_->listeners()) {
    listen_addresses_.insert(l.address.text);
    spdlog::info("listening on {} ({})", l.address.text, l.tls ? "https" : "http");
  }
  for (int i = 0; i < n; ++i) {
    workers_.push_back(
        std::make_unique<Worker>(i, snapshot_, std::move(fds[static_cast<size_t>(i)]), *store_));
  }
  for (auto& w : workers_) w->start();
  return true;
}

bool Server::startStore() {
  std::string error;
  store_ = makeStoreBackend(snapshot_->config(), error);
  if (!store_) {
    spdlog::error("{}: session_cache: {}", snapshot_->config().file, error);
    return false;
  }
  spdlog::info("session cache: {}", store_->describe());
  return true;
}

bool Server::startAdmin() {
  const auto& listen = snapshot_->config().admin.listen;
  if (!listen) return true;
  admin_ = evhttp_new(base_);
  evhttp_set_gencb(admin_, &Server::onAdminRequest, this);
  evhttp_set_allowed_methods(
      admin_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
  // evhttp reads a whole request before the handler sees it, with no limits of its own: cap it
  // (413 or 400 from evhttp) so the admin port cannot fill memory, and drop a client that stalls.
  evhttp_set_max_body_size(admin_, kAdminMaxBody);
  evhttp_set_max_headers_size(admin_, kAdminMaxHeaders);
  evhttp_set_timeout(admin_, kAdminTimeoutSeconds);
  blocklist_ = std::make_unique<AdminBlocklist>(*store_, base_);
  std::string host = listen->host;
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(admin_, host.c_str(), listen->port);
  if (bound == nullptr) {
    conf::Error e{snapshot_->config().file, listen->mark, "admin.listen",
                  "cannot listen on " + listen->str()};
    spdlog::error("{}", e.str());
    return false;
  }
  // Out of descriptors, libevent's listener would retry accept(2) on every loop turn (its socket
  // stays readable): pause it instead, as the workers do.
  evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bound), &Server::onAdminAcceptError);
  spdlog::info("admin listening on {}", listen->str());
  return true;
}

void Server::onAdminAcceptError(evconnlistener* listener, void*) {
  int error = EVUTIL_SOCKET_ERROR();
  spdlog::warn("admin: accept: {}; not accepting for {} ms", evutil_socket_error_to_string(error),
               kAdminAcceptRetry.count());
  evconnlistener_disable(listener);
  timeval tv{0, static_cast<suseconds_t>(kAdminAcceptRetry.count() * 1000)};
  // The admin listener lives as long as the loop: the timer cannot outlive it.
  event_base_once(
      evconnlistener_get_base(listener), -1, EV_TIMEOUT,
      [](evutil_socket_t, short, void* arg) {
        evconnlistener_enable(static_cast<evconnlistener*>(arg));
      },
      listener, &tv);
}

void Server::onAdminRequest(evhttp_request* req, void* arg) {
  auto* self = static_cast<Server*>(arg);
  const char* uri = evhttp_request_get_uri(req);
  std::string path = uri == nullptr ? "" : uri;
  path = path.substr(0, path.find('?'));
  if (path == "/blocklist") {
    self->blocklist_->handle(req, self->snapshot_->sharedSealer());
    return;
  }
  evbuffer* body = evbuffer_new();
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_cmd_type method = evhttp_request_get_command(req);
  if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
    evhttp_add_header(headers, "Allow", "GET, HEAD");
    evbuffer_add_printf(body, "method not allowed\n");
    evhttp_send_reply(req, 405, "Method Not Allowed", body);
  } else if (path == "/healthz") {
    evbuffer_add_printf(body, "%s\n", self->shutting_down_ ? "draining" : "ok");
    evhttp_add_header(headers, "Content-Type", "text/plain");
    evhttp_send_reply(req, self->shutting_down_ ? 503 : 200,
                      self->shutting_down_ ? "Service Unavailable" : "OK", body);
  } else if (path == "/metrics") {
    std::string text = self->renderMetrics();
    evbuffer_add(body, text.data(), text.size());
    evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", body);
  } else {
    evbuffer_add_printf(body, "not found\n");
    evhttp_send_reply(req, 404, "Not Found", body);
  }
  evbuffer_free(body);
}

std::string Server::renderMetrics() const {
  std::vector<const WorkerMetrics*> ms;
  for (const auto& w : workers_) ms.push_back(&w->metrics());
  return renderPrometheus(ms, store_->nodeStates());
}

void Server::onSignal(evutil_socket_t sig, short, void* arg) {
  auto* self = static_cast<Server*>(arg);
  if (sig == SIGHUP) {
    self->reload();
  } else {
    self->beginShutdown();
  }
}

void Server::reload() {
  std::shared_ptr<const Snapshot> next;
  try {
    next = Snapshot::build(conf::loadFile(config_path_));
  } catch (const conf::ConfigError& e) {
    spdlog::error("reload of {} refused; still serving the previous config:", config_path_);
    printErrors(e);
    return;
  }
  std::vector<Worker::ListenFds> fds(workers_.size());
  if (!openListenFds(*next, listen_addresses_, fds)) {
    spdlog::error("reload of {} refused; still serving the previous config", config_path_);
    return;
  }
  if (storeSettings(next->config()) != storeSettings(snapshot_->config())) {
    spdlog::warn(
        "reload: a new session_cache store or memcached ring takes effect on restart only");
  }
  if (next->config().effectiveWorkers() != static_cast<int>(workers_.size())) {
    spdlog::warn("reload: a new worker count takes effect on restart only");
  }
  if (next->config().admin.listen.has_value() != snapshot_->config().admin.listen.has_value() ||
      (next->config().admin.listen &&
       next->config().admin.listen->str() != snapshot_->config().admin.listen->str())) {
    spdlog::warn("reload: a new admin.listen takes effect on restart only");
  }
  listen_addresses_.clear();
  for (const ListenerTarget& l : next->listeners()) listen_addresses_.insert(l.address.text);
  for (size_t i = 0; i < workers_.size(); ++i) workers_[i]->reload(next, std::move(fds[i]));
  snapshot_ = next;
  spdlog::set_level(spdlog::level::from_str(snapshot_->config().log.level));
  spdlog::info("reloaded {}", config_path_);
}

void Server::beginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  spdlog::info("draining: no new connections; in-flight requests get {} ms",
               snapshot_->config().limits.drain_timeout.count());
  drain_deadline_ = std::chrono::steady_clock::now() + snapshot_->config().limits.drain_timeout;
  for (auto& w : workers_) w->drain();
  shutdown_tick_ = event_new(base_, -1, EV_PERSIST, &Server::onShutdownTick, this);
  event_add(shutdown_tick_, &kShutdownTick);
}

void Server::onShutdownTick(evutil_socket_t, short, void* arg) {
  static_cast<Server*>(arg)->checkShutdown();
}

void Server::checkShutdown() {
  bool all_done = true;
  for (auto& w : workers_) all_done = all_done && w->finished();
  if (!all_done && std::chrono::steady_clock::now() < drain_deadline_) return;
  if (!all_done) {
    spdlog::warn("drain timeout: closing the remaining connections");
    for (auto& w : workers_) w->stop();
  }
  event_base_loopexit(base_, nullptr);
}

}  // namespace tessera::proxy
