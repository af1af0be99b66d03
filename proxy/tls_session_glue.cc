#include "proxy/tls_session_glue.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "cache/sealer.h"
#include "proxy/audit_log.h"
#include "proxy/device_fingerprint.h"
#include "proxy/ja4.h"
#include "proxy/snapshot.h"

namespace tessera::proxy {

namespace {

constexpr unsigned kExtSupportedVersions = 43;
constexpr unsigned kExtPreSharedKey = 41;

thread_local SessionCache* t_current = nullptr;

int exIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool offersTls13(SSL* ssl) {
  const unsigned char* p;
  size_t len;
  if (SSL_client_hello_get0_ext(ssl, kExtSupportedVersions, &p, &len) != 1 || len < 1) {
    return false;
  }
  size_t list = p[0];
  for (size_t i = 1; i + 1 < len && i + 1 <= list; i += 2) {
    if (p[i] == 0x03 && p[i + 1] == 0x04) return true;
  }
  return false;
}

// The first identity of a pre_shared_key extension: u16 identities length, then per identity a
// u16 length, the identity and a u32 obfuscated age. Empty if absent or malformed.
std::string firstPskIdentity(SSL* ssl) {
  const unsigned char* p;
  size_t len;
  if (SSL_client_hello_get0_ext(ssl, kExtPreSharedKey, &p, &len) != 1 || len < 4) return {};
  size_t identities = (size_t{p[0]} << 8) | p[1];
  size_t id_len = (size_t{p[2]} << 8) | p[3];
  if (identities > len - 2 || id_len == 0 || 4 + id_len + 4 > 2 + identities) return {};
  return std::string(reinterpret_cast<const char*>(p + 4), id_len);
}

// The id this ClientHello asks to resume, or "" when there is nothing to look up.
std::string resumptionId(SSL* ssl) {
  // A TLS 1.3 hello carries a random legacy session id for middleboxes; only its PSK identity can
  // resume, so looking up the legacy id would cost every new connection a ring miss.
  if (offersTls13(ssl)) return firstPskIdentity(ssl);
  const unsigned char* id;
  size_t len = SSL_client_hello_get0_session_id(ssl, &id);
  return std::string(reinterpret_cast<const char*>(id), len);
}

void bumpLookup(WorkerMetrics& m, LookupResult r) { bump(m.session_lookups[static_cast<int>(r)]); }

}  // namespace

// ---- SessionCache ------------------------------------------------------------------------------

SessionCache::SessionCache(std::unique_ptr<cache::Store> store, WorkerMetrics& metrics)
    : store_(std::move(store)), metrics_(metrics) {}

SessionCache::~SessionCache() {
  if (t_current == this) t_current = nullptr;
}

SessionCache* SessionCache::current() { return t_current; }
void SessionCache::makeCurrent() { t_current = this; }

const cache::SessionRecord* SessionCache::l1Get(const std::string& key) {
  auto it = l1_.find(key);
  if (it == l1_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->second;
}

void SessionCache::l1Put(const std::string& key, cache::SessionRecord record, uint64_t capacity) {
  if (capacity == 0) return;
  l1Erase(key);
  lru_.emplace_front(key, std::move(record));
  l1_[key] = lru_.begin();
  while (l1_.size() > capacity) {
    l1_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

void SessionCache::l1Erase(const std::string& key) {
  auto it = l1_.find(key);
  if (it == l1_.end()) return;
  lru_.erase(it->second);
  l1_.erase(it);
}

// ---- context set-up ----------------------------------------------------------------------------

std::string sessionIdContext(const std::string& cluster, const std::string& listener) {
  // SSL_MAX_SID_CTX_LENGTH is 32: a SHA-256 of the names fits exactly and never collides by
  // truncation of long names.
  std::string input = "tessera/" + cluster + "/" + listener;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(md), len);
}

void TlsSessionGlue::configureContext(SSL_CTX* ctx, const std::string& id_context,
                                      std::chrono::seconds lifetime) {
  SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>(id_context.data()),
                                 static_cast<unsigned int>(id_context.size()));
  SSL_CTX_set_session_cache_mode(
      ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL | SSL_SESS_CACHE_NO_AUTO_CLEAR);
  // No stateless tickets: TLS 1.3 then issues stateful tickets (cache keys). No anti-replay
  // deletion either: tessera accepts no early data, and a ticket must stay usable on every node.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_ANTI_REPLAY);
  // A connection that fails makes OpenSSL "remove" its session; only the L1 forgets it (see
  // onRemoveSession). Unexpected EOF is not such a failure (tls_context.cc sets the option).
  SSL_CTX_set_num_tickets(ctx, 1);  // one ring write per handshake, not two
  SSL_CTX_set_timeout(ctx, static_cast<long>(lifetime.count()));
  SSL_CTX_set_client_hello_cb(ctx, &TlsSessionGlue::onClientHello, nullptr);
  SSL_CTX_sess_set_new_cb(ctx, &TlsSessionGlue::onNewSession);
  SSL_CTX_sess_set_get_cb(ctx, &TlsSessionGlue::onGetSession);
  SSL_CTX_sess_set_remove_cb(ctx, &TlsSessionGlue::onRemoveSession);
}

// ---- per connection ----------------------------------------------------------------------------

TlsSessionGlue::TlsSessionGlue(SessionCache& cache, const Snapshot& snapshot,
                               const ListenerTarget& listener, const sockaddr_storage& peer,
                               std::string peer_ip, std::function<void()> resume)
    : cache_(cache),
      snapshot_(snapshot),
      listener_(listener),
      peer_(peer),
      peer_ip_(std::move(peer_ip)),
      resume_(std::move(resume)) {}

TlsSessionGlue::~TlsSessionGlue() {
  if (lookup_ == Lookup::kPending) cache_.store().cancel(op_);
  if (parked_ != nullptr) SSL_SESSION_free(parked_);
  if (ssl_ != nullptr) {
    SSL_set_ex_data(ssl_, exIndex(), nullptr);
    if (capturing_) stopClientHelloCapture(ssl_);
  }
}

void TlsSessionGlue::attach(SSL* ssl) {
  ssl_ = ssl;
  SSL_set_ex_data(ssl, exIndex(), this);
  // JA4 needs every extension type of the hello, which OpenSSL 3.0's ClientHello accessors do not
  // give (ja4.h): keep the message itself, only until the ClientHello callback has read it.
  if (snapshot_.needsJa4()) {
    captureClientHello(ssl, &raw_hello_);
    capturing_ = true;
  }
}

TlsSessionGlue* TlsSessionGlue::from(SSL* ssl) {
  return static_cast<TlsSessionGlue*>(SSL_get_ex_data(ssl, exIndex()));
}

int TlsSessionGlue::onClientHello(SSL* ssl, int* alert, void*) {
  TlsSessionGlue* glue = from(ssl);
  return glue == nullptr ? SSL_CLIENT_HELLO_SUCCESS : glue->clientHello(ssl);
}

int TlsSessionGlue::clientHello(SSL* ssl) {
  if (lookup_ != Lookup::kNone) return SSL_CLIENT_HELLO_SUCCESS;  // the second pass
  lookup_ = Lookup::kDone;
  const conf::TlsBinding& binding = snapshot_.config().device_binding.tls;
  if (capturing_) {  // ~1% of a resumed handshake: only when something binds to it
    stopClientHelloCapture(ssl);
    capturing_ = false;
    ClientHelloInfo hello;
    if (parseClientHello(raw_hello_, hello) || readClientHello(ssl, hello)) {
      ja4_ = proxy::ja4(hello);
    }
    std::string().swap(raw_hello_);
  }
  fingerprint_ = tlsDeviceFingerprint(binding, peer_, ja4_);
  std::string id = resumptionId(ssl);
  if (id.empty() || id.size() > SSL_MAX_SSL_SESSION_ID_LENGTH) return SSL_CLIENT_HELLO_SUCCESS;
  key_ = cache::sessionKey(id);
  if (const cache::SessionRecord* hit = cache_.l1Get(key_)) {
    park(*hit, /*from_l1=*/true);
    return SSL_CLIENT_HELLO_SUCCESS;
  }
  lookup_ = Lookup::kPending;
  auto began = std::chrono::steady_clock::now();
  op_ = cache_.store().get(key_, snapshot_.config().session_cache.timeout,
                           [this, began](cache::Result r) { lookupDone(std::move(r), began); });
  return SSL_CLIENT_HELLO_RETRY;
}

void TlsSessionGlue::lookupDone(cache::Result result, std::chrono::steady_clock::time_point began) {
  lookup_ = Lookup::kDone;
  WorkerMetrics& m = cache_.metrics();
  m.observeStoreLatency(std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now() - began)
                            .count());
  std::optional<cache::SessionRecord> record;
  if (result.status == cache::Status::kOk) {
    std::optional<std::string> plain = snapshot_.sealer().open(key_, result.value);
    if (!plain) bump(m.seal_open_failures);  // tampered, or sealed with a key we do not have
    if (plain) {
      record = cache::decodeSessionRecord(*plain);
      OPENSSL_cleanse(plain->data(), plain->size());  // it holds the master secret
    }
  }
  if (record) {
    park(*record, /*from_l1=*/false);
  } else if (result.status == cache::Status::kTimeout) {
    bumpLookup(m, LookupResult::kTimeout);
  } else if (result.status == cache::Status::kError) {
    bumpLookup(m, LookupResult::kError);
  } else {
    bumpLookup(m, LookupResult::kMiss);
  }
  resume_();  // may destroy this object (the handshake can fail): touch nothing after
}

bool TlsSessionGlue::park(const cache::SessionRecord& record, bool from_l1) {
  WorkerMetrics& m = cache_.metrics();
  if (record.expiry <= unixNow()) {
    bumpLookup(m, LookupResult::kMiss);
    // Expired in the L1: gone, so that it neither comes back to the front of the LRU on every
    // lookup nor holds a slot a live session could use. `record` is that entry: last use above.
    if (from_l1) cache_.l1Erase(key_);
    return false;
  }
  if (record.fingerprint.size() != fingerprint_.size() ||
      CRYPTO_memcmp(record.fingerprint.data(), fingerprint_.data(), fingerprint_.size()) != 0) {
    bumpLookup(m, LookupResult::kBindingMismatch);
    bump(m.tls_binding_mismatches);
    snapshot_.auditLog().record("tls_binding_mismatch",
                                {{"listener", listener_.conf->name},
                                 {"client", peer_ip_},
                                 {"reason", "session presented by a different device"},
                                 {"expected", record.fingerprint},
                                 {"presented", fingerprint_}});
    return false;
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(record.der.data());
  SSL_SESSION* session = d2i_SSL_SESSION(nullptr, &p, static_cast<long>(record.der.size()));
  if (session == nullptr) {
    ERR_clear_error();
    bumpLookup(m, LookupResult::kError);
    return false;
  }
  if (!from_l1) {
    cache_.l1Put(key_, record, snapshot_.config().session_cache.l1_entries);
  }
  if (parked_ != nullptr) SSL_SESSION_free(parked_);
  parked_ = session;
  bumpLookup(m, from_l1 ? LookupResult::kHitL1 : LookupResult::kHitStore);
  return true;
}

SSL_SESSION* TlsSessionGlue::onGetSession(SSL* ssl, const unsigned char* id, int len, int* copy) {
  // OpenSSL takes a reference of its own and the parked one stays here (freed with the glue):
  // after a HelloRetryRequest the second ClientHello asks for the same session again.
  *copy = 1;
  TlsSessionGlue* glue = from(ssl);
  if (glue == nullptr || glue->parked_ == nullptr) return nullptr;
  if (cache::sessionKey(std::string_view(reinterpret_cast<const char*>(id), len)) != glue->key_) {
    return nullptr;
  }
  return glue->parked_;
}

int TlsSessionGlue::onNewSession(SSL* ssl, SSL_SESSION* session) {
  TlsSessionGlue* glue = from(ssl);
  if (glue != nullptr && SSL_SESSION_is_resumable(session)) glue->storeNewSession(session);
  return 0;  // we keep no reference to `session`
}

void TlsSessionGlue::storeNewSession(SSL_SESSION* session) {
  unsigned int id_len = 0;
  const unsigned char* id = SSL_SESSION_get_id(session, &id_len);
  int der_len = i2d_SSL_SESSION(session, nullptr);
  if (id_len == 0 || der_len <= 0) return;
  cache::SessionRecord record;
  record.der.resize(static_cast<size_t>(der_len));
  unsigned char* p = reinterpret_cast<unsigned char*>(record.der.data());
  i2d_SSL_SESSION(session, &p);
  const conf::SessionCache& sc = snapshot_.config().session_cache;
  auto lifetime = std::chrono::duration_cast<std::chrono::seconds>(sc.lifetime);
  record.fingerprint = fingerprint_;
  record.created = unixNow();
  record.expiry = record.created + lifetime.count();
  std::string key = cache::sessionKey(std::string_view(reinterpret_cast<const char*>(id), id_len));
  std::string encoded = cache::encodeSessionRecord(record);
  std::string sealed = snapshot_.sealer().seal(key, encoded);
  OPENSSL_cleanse(encoded.data(), encoded.size());
  cache_.l1Put(key, std::move(record), sc.l1_entries);
  WorkerMetrics* m = &cache_.metrics();
  if (sealed.empty()) {  // OpenSSL failed to seal: never store the record unsealed
    bump(m->session_store_write_errors);
    return;
  }
  cache_.store().set(key, sealed, lifetime, std::max(sc.timeout, cache::Millis(1000)),
                     [m](cache::Result r) {
                       if (r.status != cache::Status::kOk) bump(m->session_store_write_errors);
                     });
}

void TlsSessionGlue::onRemoveSession(SSL_CTX*, SSL_SESSION* session) {
  // Only the local L1 forgets the session. Removing it from the ring would let anyone who saw a
  // session id in clear evict a client's session cluster-wide by failing a connection with it,
  // and would cost a ring round trip per aborted handshake; records expire by their TTL.
  SessionCache* cache = SessionCache::current();
  if (cache == nullptr) return;
  unsigned int id_len = 0;
  const unsigned char* id = SSL_SESSION_get_id(session, &id_len);
  if (id_len == 0) return;
  cache->l1Erase(cache::sessionKey(std::string_view(reinterpret_cast<const char*>(id), id_len)));
}

}  // namespace tessera::proxy
