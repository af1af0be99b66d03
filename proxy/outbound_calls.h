#pragma once

// The HTTPS calls plugins make (Context::post), for one worker: an HttpsClient per distinct set of
// TLS files, made on first use on the worker's thread, and one id space over all of them. Files
// are read once per config: a set that cannot be loaded fails every call with the loader's
// message until the next reload, and a reload (new certificates on disk) makes the clients again
// on next use.
//
// Threading: one worker's thread only. Callbacks run from its event loop, never inside post().
// Ownership: the Worker owns it; it must go before the worker's event_base.

#include <event2/event.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "plugins/plugin.h"
#include "proxy/https_client.h"

namespace tessera::proxy {

class OutboundCalls {
 public:
  explicit OutboundCalls(event_base* base);
  ~OutboundCalls();
  OutboundCalls(const OutboundCalls&) = delete;
  OutboundCalls& operator=(const OutboundCalls&) = delete;

  // A client whose files cannot be loaded fails the call (status 0, the loader's message).
  uint64_t post(std::string_view url, const plugins::OutboundTls& tls, std::string body,
                std::string_view content_type, std::chrono::milliseconds timeout,
                plugins::OutboundCallback callback);
  void cancel(uint64_t id);
  // A new config was applied: clients are made again from their files on next use. The old ones
  // go once their calls have called back.
  void reload();

 private:
  struct Route {
    HttpsClient* client = nullptr;  // null: failed before it started, waiting in failed_
    HttpsClient::CallId call = 0;
  };
  struct Client {
    std::unique_ptr<HttpsClient> client;  // null when the files could not be loaded
    std::string error;                    // then why
  };
  static void onFailed(evutil_socket_t, short, void* arg);
  void failLater(uint64_t id, std::string error, plugins::OutboundCallback callback);
  void dropIdleRetired();

  event_base* base_;
  event* failed_ev_;
  std::map<std::string, Client> clients_;              // by cert, key and CA
  std::vector<std::unique_ptr<HttpsClient>> retired_;  // of an older config, with calls pending
  std::unordered_map<uint64_t, Route> routes_;
  std::vector<std::pair<uint64_t, plugins::OutboundCallback>> failed_;
  std::map<uint64_t, std::string> failed_errors_;
  uint64_t next_id_ = 1;
};

}  // namespace tessera::proxy
