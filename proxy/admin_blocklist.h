#pragma once

// The admin API of the guard plugin's cluster-wide blocklist (plugins/guard/blocklist.h), on the
// admin listener:
//   GET    /blocklist  {"entries": [{"kind", "value", "expires"}]} (expires: seconds since the
//                      epoch, 0 for never), the live entries of the whole cluster.
//   POST   /blocklist  {"kind": "ip|cidr|device|user", "value": "...", "ttl": "10m"} (ttl
//                      optional: without it the entry stays until deleted). 201, or 200 when it
//                      replaced an entry of the same kind and value.
//   DELETE /blocklist  {"kind", "value"} (or ?kind=&value=). 200, or 404 when there was none.
// Bad input is a 400 naming the problem; a store that does not answer, 503.
//
// Threads. Everything runs on the main thread's event loop, with a Store of its own. Changes are
// made one at a time on this node, and across nodes under the document's lock (an atomic `add`
// with a short TTL), so no change overwrites another.

#include <event2/event.h>
#include <event2/http.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "cache/store.h"
#include "plugins/guard/blocklist.h"

namespace tessera::cache {
class Sealer;
}

namespace tessera::proxy {

class AdminBlocklist {
 public:
  AdminBlocklist(cache::StoreBackend& backend, event_base* base);
  ~AdminBlocklist();
  AdminBlocklist(const AdminBlocklist&) = delete;
  AdminBlocklist& operator=(const AdminBlocklist&) = delete;

  // Answers `req` (now, or later from the event loop). `sealer` must outlive the answer: the
  // caller passes the current snapshot's.
  void handle(evhttp_request* req, std::shared_ptr<const cache::Sealer> sealer);

 private:
  // A request being answered. evhttp keeps it until it is answered, even if the client goes
  // first (it is then detached from its connection, and evhttp_send_reply frees it).
  struct Change {
    evhttp_request* req = nullptr;
    bool remove = false;  // else add
    plugins::guard::BlockEntry entry;
    std::shared_ptr<const cache::Sealer> sealer;
    // Until when it waits for another holder's lock (set at its first try).
    std::chrono::steady_clock::time_point lock_deadline;
  };

  void list(evhttp_request* req, std::shared_ptr<const cache::Sealer> sealer);
  void next();
  void lock();
  void change(cache::Result document);
  // Answers the change in progress; `unlock` false leaves the lock to its TTL (a write that
  // timed out may still land, and nobody else may write before it would).
  void finish(int status, std::string body, bool unlock = true);
  static void onRetry(evutil_socket_t, short, void* arg);

  std::unique_ptr<cache::Store> store_;
  event* retry_ = nullptr;
  std::deque<Change> queue_;  // the front one is in progress when busy_
  bool busy_ = false;
  std::string lock_token_;  // this node's lock value: random, so it is told from another's
};

// One JSON reply with its status (the admin API's replies, also for errors).
void sendJson(evhttp_request* req, int status, const std::string& body);

}  // namespace tessera::proxy
