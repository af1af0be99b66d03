#pragma once

// TLS session resumption from a cache::Store shared by every node of a cluster.
//
// OpenSSL's external session cache, driven without ever blocking the worker:
// - The SSL_CTX keeps no internal cache (SSL_SESS_CACHE_NO_INTERNAL) and issues no stateless
//   tickets (SSL_OP_NO_TICKET): TLS 1.2 resumes by session id, TLS 1.3 by stateful tickets whose
//   PSK identity *is* the session id, so every resumption goes through this cache.
// - The ClientHello callback reads the session id (TLS 1.2) or the first PSK identity (TLS 1.3,
//   extension 41; the random legacy id of a TLS 1.3 hello is never looked up), checks the
//   worker's L1, and otherwise starts an asynchronous Store get with session_cache.timeout and
//   returns SSL_CLIENT_HELLO_RETRY: SSL_do_handshake() then returns SSL_ERROR_WANT_CLIENT_HELLO_CB
//   and the connection waits. When the get completes (or times out), the record is unsealed,
//   decoded and checked against the device fingerprint; a usable session is parked here and the
//   connection drives the handshake again. The ClientHello callback runs a second time (and says
//   go on), and the get-session callback hands out the parked session.
// - A miss, a timeout, an error, a record that fails to unseal or a device mismatch all mean a
//   full handshake, never a failed one.
// - New sessions (full handshakes, new TLS 1.3 tickets) are sealed (AAD = the cache key) and
//   written to the Store and to the worker's L1, fire and forget.
//
// Threads and ownership: SessionCache is per worker (its Store and L1 are used only on that
// thread). TlsSessionGlue is per connection, owned by the ClientConnection and reachable from the
// SSL through ex_data; its destructor cancels a lookup still in flight, so a completion never
// reaches a closed connection. The SSL_CTX callbacks are installed once per context and find all
// state through the SSL.

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "cache/session_record.h"
#include "cache/store.h"
#include "proxy/metrics.h"

namespace tessera::proxy {

class Snapshot;
struct ListenerTarget;

// The per-worker part: the Store handle and a bounded L1 of sessions this node made or saw.
class SessionCache {
 public:
  SessionCache(std::unique_ptr<cache::Store> store, WorkerMetrics& metrics);
  ~SessionCache();
  cache::Store& store() { return *store_; }
  WorkerMetrics& metrics() { return metrics_; }

  const cache::SessionRecord* l1Get(const std::string& key);
  void l1Put(const std::string& key, cache::SessionRecord record, uint64_t capacity);
  void l1Erase(const std::string& key);
  size_t l1Size() const { return l1_.size(); }

  // The cache of the worker running on this thread (for OpenSSL's remove callback, which gets no
  // SSL to find it through).
  static SessionCache* current();
  void makeCurrent();

 private:
  using Entry = std::pair<std::string, cache::SessionRecord>;
  std::unique_ptr<cache::Store> store_;
  WorkerMetrics& metrics_;
  std::list<Entry> lru_;  // front = most recent
  std::unordered_map<std::string, std::list<Entry>::iterator> l1_;
};

class TlsSessionGlue {
 public:
  // `resume` is called (on the worker thread) when a lookup that paused the handshake is done.
  TlsSessionGlue(SessionCache& cache, const Snapshot& snapshot, const ListenerTarget& listener,
                 const sockaddr_storage& peer, std::string peer_ip, std::function<void()> resume);
  ~TlsSessionGlue();
  TlsSessionGlue(const TlsSessionGlue&) = delete;
  TlsSessionGlue& operator=(const TlsSessionGlue&) = delete;

  void attach(SSL* ssl);
  // The JA4 fingerprint of the client's ClientHello ("" before the hello or if unreadable).
  const std::string& ja4() const { return ja4_; }

  // Installs the callbacks and cache mode on a server context. `id_context` must be the same on
  // every node of a cluster for a listener (cluster name + listener name).
  static void configureContext(SSL_CTX* ctx, const std::string& id_context,
                               std::chrono::seconds lifetime);

 private:
  enum class Lookup { kNone, kPending, kDone };

  static TlsSessionGlue* from(SSL* ssl);
  static int onClientHello(SSL* ssl, int* alert, void* arg);
  static int onNewSession(SSL* ssl, SSL_SESSION* session);
  static SSL_SESSION* onGetSession(SSL* ssl, const unsigned char* id, int len, int* copy);
  static void onRemoveSession(SSL_CTX* ctx, SSL_SESSION* session);

  int clientHello(SSL* ssl);
  void storeNewSession(SSL_SESSION* session);
  void lookupDone(cache::Result result, std::chrono::steady_clock::time_point began);
  // Checks and parks a record; returns the lookup result name for metrics.
  bool park(const cache::SessionRecord& record, bool from_l1);

  SessionCache& cache_;
  const Snapshot& snapshot_;
  const ListenerTarget& listener_;
  sockaddr_storage peer_;
  std::string peer_ip_;
  std::function<void()> resume_;
  SSL* ssl_ = nullptr;
  Lookup lookup_ = Lookup::kNone;
  cache::OpId op_ = 0;
  std::string key_;          // cache key of the session being looked up
  std::string fingerprint_;  // this client's device fingerprint
  std::string ja4_;
  std::string raw_hello_;   // the ClientHello message, kept for JA4 until clientHello() runs
  bool capturing_ = false;  // OpenSSL's message callback is set on ssl_
  SSL_SESSION* parked_ = nullptr;
};

// The session id context of a listener: same on every node of a cluster.
std::string sessionIdContext(const std::string& cluster, const std::string& listener);

}  // namespace tessera::proxy
