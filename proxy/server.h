#pragma once

// The process: loads the config, opens the listening sockets, starts the workers, and on the main
// thread runs the admin listener and the signal handlers.
//
// Signals (handled on the main thread's event base, never in a signal context):
// - SIGHUP: re-read the config file. A valid one becomes the snapshot for new connections (new
//   routes, upstreams, certificates, listeners); connections already open finish on the old one.
//   An invalid one is logged, FILE:LINE:COL per problem, and the old config keeps serving.
// - SIGTERM/SIGINT: stop accepting, let in-flight requests finish within limits.drain_timeout,
//   then exit 0.

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cache/store.h"
#include "conf/config.h"
#include "proxy/admin_blocklist.h"
#include "proxy/snapshot.h"
#include "proxy/worker.h"

namespace tessera::proxy {

class Server {
 public:
  explicit Server(std::string config_path);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Runs until stopped by a signal. Returns the process exit code.
  int run();

 private:
  bool startStore();
  bool startWorkers();
  bool startAdmin();
  bool openListenFds(const Snapshot& snap, const std::set<std::string>& skip,
                     std::vector<Worker::ListenFds>& out);
  void reload();
  void beginShutdown();
  void checkShutdown();
  std::string renderMetrics() const;
  static void onSignal(evutil_socket_t sig, short what, void* arg);
  static void onShutdownTick(evutil_socket_t fd, short what, void* arg);
  static void onAdminAcceptError(evconnlistener* listener, void* arg);
  static void onAdminRequest(evhttp_request* req, void* arg);

  std::string config_path_;
  std::unique_ptr<cache::StoreBackend> store_;  // outlives the workers
  std::shared_ptr<const Snapshot> snapshot_;
  std::set<std::string> listen_addresses_;
  std::vector<std::unique_ptr<Worker>> workers_;
  event_base* base_ = nullptr;
  evhttp* admin_ = nullptr;
  std::unique_ptr<AdminBlocklist> blocklist_;  // the guard plugin's admin API
  std::vector<event*> signal_events_;
  event* shutdown_tick_ = nullptr;
  bool shutting_down_ = false;
  std::chrono::steady_clock::time_point drain_deadline_;
};

// Sets up spdlog: asynchronous, to stderr, at `level`.
void setupLogging(const std::string& level);

}  // namespace tessera::proxy
