// tessera-guard-load: keep-alive POST load through tessera's guard plugin, signed or unsigned.
//
// The guard's macro benchmark (bench/guard.sh) compares signed POSTs to a protected path with the
// same POSTs, unsigned, to an unprotected path. It speaks plain HTTP/1.1, so that TLS does not
// dilute what the guard costs. Each of --connections keep-alive connections has one request in
// flight at a time:
//   signed:   the connection first agrees a key as plugins/guard/client.js does: POST
//             {prefix}keys with its own ephemeral P-256 key, under its own session cookie (the
//             plugin does not check that the session exists, so any value will do), then
//             K = HKDF-SHA256(ECDH Z, salt SHA-256(cookie value), info "tessera guard v1").
//             Every POST then carries Content-Digest (sha-256) and an RFC 9421 hmac-sha256
//             signature over "@method", "@target-uri" (http://HOST:PORT/path, and the Host header
//             is HOST:PORT) and "content-digest", with a fresh random nonce.
//   unsigned: the same POSTs (same cookie, body and other headers) without those three headers.
//
// The clock starts once every connection is ready (connected, and with its key when signed), or
// --timeout after the start, whichever comes first. After --duration, or once --max-requests
// POSTs have been sent, no request starts; those in flight may finish for at most --timeout more
// (not counted, but their failures are), and the tool always ends. stdout gets one JSON line:
//   {"requests":..,"rps":..,"errors":..,"p50_ms":..,"p99_ms":..,"non_2xx":..,"io_errors":..}
// requests counts 2xx responses; errors = non_2xx + io_errors (connect, I/O, timeouts, bad
// responses, failed key agreements); latency runs from the request's first byte written to the
// last byte of its 2xx response read. Details go to stderr. The exit status is 1 when errors > 0:
// a refused signature means the run measured refusals, not the guard.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kHkdfInfo = "tessera guard v1";
constexpr size_t kKeyBytes = 32;
constexpr size_t kCoordinateBytes = 32;
constexpr size_t kNonceBytes = 16;  // as client.js
// A response head longer than this is refused as a protocol error.
constexpr size_t kMaxHeadBytes = 16384;
// After a failure the connection waits this long: a refusing server must not turn the run into a
// busy loop.
constexpr auto kErrorBackoff = std::chrono::milliseconds(10);

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

timeval toTimeval(Clock::duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  if (us < 0) us = 0;
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  int connections = 50;
  int threads = 1;
  double duration = 10;
  std::string path = "/api/orders";
  size_t body_bytes = 256;
  std::string mode = "signed";
  std::string cookie_name = "SESSIONID";
  std::string cookie_prefix = "guard-load-";
  std::string endpoint_prefix = "/_tessera/";
  double timeout = 5;
  uint64_t max_requests = 10'000'000;
};

// --- Crypto, as client.js does it with WebCrypto -------------------------------------------------

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct KdfFree {
  void operator()(EVP_KDF* kdf) const { EVP_KDF_free(kdf); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* ctx) const { EVP_KDF_CTX_free(ctx); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

// The OpenSSL error queue as one line; drains it.
std::string opensslErrors() {
  std::string out;
  char buffer[256];
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    ERR_error_string_n(e, buffer, sizeof(buffer));
    out += (out.empty() ? "" : "; ") + std::string(buffer);
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

const unsigned char* bytes(std::string_view text) {
  return reinterpret_cast<const unsigned char*>(text.data());
}

std::string base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(raw),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// RFC 4648 section 5, unpadded: JWK members and client.js's nonces.
std::string base64Url(std::string_view raw) {
  std::string out = base64(raw);
  while (!out.empty() && out.back() == '=') out.pop_back();
  std::replace(out.begin(), out.end(), '+', '-');
  std::replace(out.begin(), out.end(), '/', '_');
  return out;
}

std::optional<std::string> base64UrlDecode(std::string_view text) {
  std::string padded(text);
  std::replace(padded.begin(), padded.end(), '-', '+');
  std::replace(padded.begin(), padded.end(), '_', '/');
  size_t pad = (4 - padded.size() % 4) % 4;
  if (pad == 3) return std::nullopt;
  padded.append(pad, '=');
  std::string out(padded.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(padded),
                          static_cast<int>(padded.size()));
  if (n < 0 || static_cast<size_t>(n) < pad) return std::nullopt;
  out.resize(static_cast<size_t>(n) - pad);  // EVP_DecodeBlock counts the padding as zeros
  return out;
}

std::optional<std::string> sha256(std::string_view data) {
  std::string out(EVP_MAX_MD_SIZE, '\0');
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &n,
                 EVP_sha256(), nullptr) != 1) {
    return std::nullopt;
  }
  out.resize(n);
  return out;
}

std::optional<std::string> hmacSha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int n = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), bytes(data), data.size(),
           out.data(), &n) == nullptr) {
    return std::nullopt;
  }
  return std::string(reinterpret_cast<const char*>(out.data()), n);
}

std::optional<std::string> hkdfSha256(std::string_view ikm, std::string_view salt,
                                      std::string_view info) {
  std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  std::unique_ptr<EVP_KDF_CTX, KdfCtxFree> ctx(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  auto octets = [](const char* name, std::string_view v) {
    return OSSL_PARAM_construct_octet_string(name, const_cast<char*>(v.data()), v.size());
  };
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      octets(OSSL_KDF_PARAM_KEY, ikm),
      octets(OSSL_KDF_PARAM_SALT, salt),
      octets(OSSL_KDF_PARAM_INFO, info),
      OSSL_PARAM_construct_end(),
  };
  std::string out(kKeyBytes, '\0');
  if (!ctx || EVP_KDF_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), out.size(),
                             params) != 1) {
    return std::nullopt;
  }
  return out;
}

// A P-256 public key from its uncompressed SEC 1 point.
PkeyPtr importPublicKey(std::string point) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>("P-256"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return nullptr;
  }
  return PkeyPtr(key);
}

// One key agreement's ephemeral client key, as client.js makes one per agreement.
class EphemeralKey {
 public:
  // nullopt with `error` set when OpenSSL fails.
  static std::optional<EphemeralKey> make(std::string& error) {
    EphemeralKey k;
    k.key_.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    std::array<unsigned char, 1 + 2 * kCoordinateBytes> point{};
    size_t size = 0;
    if (!k.key_ ||
        EVP_PKEY_get_octet_string_param(k.key_.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size(), &size) != 1 ||
        size != point.size() || point[0] != 0x04) {
      error = "cannot make a P-256 key: " + opensslErrors();
      return std::nullopt;
    }
    std::string_view raw(reinterpret_cast<const char*>(point.data()), point.size());
    k.x_ = base64Url(raw.substr(1, kCoordinateBytes));
    k.y_ = base64Url(raw.substr(1 + kCoordinateBytes));
    return k;
  }

  const std::string& x() const { return x_; }
  const std::string& y() const { return y_; }

  // K for the server's public key (its JWK x and y), under the session cookie's value.
  std::optional<std::string> agree(std::string_view server_x, std::string_view server_y,
                                   std::string_view cookie_value, std::string& error) const {
    std::optional<std::string> x = base64UrlDecode(server_x);
    std::optional<std::string> y = base64UrlDecode(server_y);
    if (!x || !y || x->size() != kCoordinateBytes || y->size() != kCoordinateBytes) {
      error = "the server's jwk x/y are not 32-byte base64url coordinates";
      return std::nullopt;
    }
    PkeyPtr peer = importPublicKey("\x04" + *x + *y);
    PkeyCtxPtr ctx(peer ? EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr) : nullptr);
    std::string z(kCoordinateBytes, '\0');
    size_t size = z.size();
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
        EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
        EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(z.data()), &size) != 1 ||
        size != z.size()) {
      error = "ECDH with the server's key failed: " + opensslErrors();
      return std::nullopt;
    }
    std::optional<std::string> salt = sha256(cookie_value);
    std::optional<std::string> k = salt ? hkdfSha256(z, *salt, kHkdfInfo) : std::nullopt;
    if (!k) error = "HKDF failed: " + opensslErrors();
    return k;
  }

 private:
  EphemeralKey() = default;

  PkeyPtr key_;
  std::string x_;
  std::string y_;
};

// The string value of member `name` in the keys endpoint's answer. Its strings are base64url
// and token characters, never escaped, and "x" and "y" are only the jwk's: a search will do.
std::optional<std::string_view> jsonString(std::string_view json, std::string_view name) {
  std::string quoted = "\"" + std::string(name) + "\"";
  for (size_t at = json.find(quoted); at != std::string_view::npos;
       at = json.find(quoted, at + 1)) {
    size_t i = json.find_first_not_of(" \t\r\n", at + quoted.size());
    if (i == std::string_view::npos || json[i] != ':') continue;
    i = json.find_first_not_of(" \t\r\n", i + 1);
    if (i == std::string_view::npos || json[i] != '"') return std::nullopt;
    size_t end = json.find('"', i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    return json.substr(i + 1, end - i - 1);
  }
  return std::nullopt;
}

// --- HTTP ----------------------------------------------------------------------------------------

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// Resolved once, before the run: no DNS inside the measured loop.
std::optional<Address> resolve(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    return std::nullopt;
  }
  Address a;
  std::memcpy(&a.addr, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  freeaddrinfo(res);
  return a;
}

// What every request of the run shares.
struct Plan {
  Options options;
  Address address;
  std::string authority;   // HOST:PORT: the Host header, and the authority of @target-uri
  std::string target_uri;  // http://HOST:PORT/path
  std::string body;        // --body-bytes of JSON
  std::string digest;      // its Content-Digest value
  bool sign = false;
};

// A JSON object of exactly n bytes (n >= 10; shorter bodies are n letters).
std::string makeBody(size_t n) {
  if (n < 10) return std::string(n, 'x');
  return "{\"pad\":\"" + std::string(n - 10, 'x') + "\"}";
}

std::string requestHead(const Plan& plan, std::string_view path, std::string_view cookie,
                        size_t body_bytes, std::string_view extra_headers) {
  std::string head;
  head.reserve(256 + extra_headers.size());
  head.append("POST ").append(path).append(" HTTP/1.1\r\nHost: ").append(plan.authority);
  head.append("\r\nCookie: ").append(cookie);
  head.append("\r\nContent-Type: application/json\r\nContent-Length: ");
  head.append(std::to_string(body_bytes)).append("\r\n").append(extra_headers).append("\r\n");
  return head;
}

// Content-Digest, Signature-Input and Signature for one POST of the plan's body, as client.js's
// #send makes them; nullopt when the HMAC or the random nonce fails.
std::optional<std::string> signatureHeaders(const Plan& plan, std::string_view key,
                                            std::string_view keyid) {
  std::array<unsigned char, kNonceBytes> nonce{};
  if (RAND_bytes(nonce.data(), nonce.size()) != 1) return std::nullopt;
  auto created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  std::string params =
      "(\"@method\" \"@target-uri\" \"content-digest\");created=" + std::to_string(created) +
      ";keyid=\"" + std::string(keyid) + "\";nonce=\"" +
      base64Url({reinterpret_cast<const char*>(nonce.data()), nonce.size()}) +
      "\";alg=\"hmac-sha256\"";
  std::string base = "\"@method\": POST\n\"@target-uri\": " + plan.target_uri +
                     "\n\"content-digest\": " + plan.digest + "\n\"@signature-params\": " + params;
  std::optional<std::string> mac = hmacSha256(key, base);
  if (!mac) return std::nullopt;
  return "Content-Digest: " + plan.digest + "\r\nSignature-Input: sig1=" + params +
         "\r\nSignature: sig1=:" + base64(*mac) + ":\r\n";
}

struct ResponseHead {
  int status = 0;
  std::string status_line;
  size_t content_length = 0;
  bool close = false;
  std::string guard_reason;  // X-Tessera-Guard: why the guard refused
};

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// A head ending in CRLF CRLF. Everything tessera and the demo backend answer has a
// Content-Length, so a head without one (chunked or close-delimited) is refused, with `error`.
std::optional<ResponseHead> parseHead(std::string_view head, std::string& error) {
  ResponseHead h;
  size_t eol = head.find("\r\n");
  h.status_line = std::string(head.substr(0, eol));
  if (h.status_line.size() < 12 || h.status_line.compare(0, 7, "HTTP/1.") != 0) {
    error = "not an HTTP/1.x response: " + h.status_line;
    return std::nullopt;
  }
  h.status = std::atoi(h.status_line.c_str() + 9);
  h.close = h.status_line.compare(0, 8, "HTTP/1.0") == 0;
  bool has_length = false;
  for (size_t at = eol + 2; at < head.size();) {
    size_t end = head.find("\r\n", at);
    std::string_view line = head.substr(at, end - at);
    at = end + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (equalsIgnoreCase(name, "content-length")) {
      h.content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
      has_length = true;
    } else if (equalsIgnoreCase(name, "connection")) {
      h.close = equalsIgnoreCase(value, "close");
    } else if (equalsIgnoreCase(name, "x-tessera-guard")) {
      h.guard_reason = value;
    }
  }
  if (!has_length) error = "response without Content-Length: " + h.status_line;
  return has_length ? std::optional<ResponseHead>(std::move(h)) : std::nullopt;
}

// --- Load ----------------------------------------------------------------------------------------

enum ErrorKind { kConnect, kIo, kTimeout, kProtocol, kKey, kStatus, kErrorKinds };
constexpr std::array<const char*, kErrorKinds> kErrorNames = {
    "connect", "io", "timeout", "protocol", "key agreement", "non-2xx"};

struct Stats {
  uint64_t ok = 0;          // 2xx responses to measured POSTs
  uint64_t agreements = 0;  // keys agreed
  std::array<uint64_t, kErrorKinds> errors{};
  std::array<std::string, kErrorKinds> first_error;  // one example per kind
  std::vector<uint32_t> latency_us;                  // of the 2xx responses
};

class Worker;

// One keep-alive connection: (re)connects, agrees a key when signing and it has none, then sends
// POSTs back to back until the worker stops it. The key survives reconnects: it belongs to the
// session cookie, not to the connection.
class Connection {
 public:
  Connection(Worker& worker, std::string cookie_value);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  void start();
  // The clock started: a ready connection sends its first measured POST.
  void go();
  // At the stop: a connection that is waiting (backoff, or ready before the clock started)
  // starts nothing more.
  void stopIfWaiting();
  bool idle() const { return phase_ == Phase::kIdle; }

 private:
  enum class Phase { kIdle, kBackoff, kConnecting, kAgreeing, kReady, kPosting };

  static void onRead(bufferevent*, void* arg) { static_cast<Connection*>(arg)->readable(); }
  static void onEvent(bufferevent*, short what, void* arg);
  static void onBackoff(evutil_socket_t, short, void* arg);
  void connected();
  void sendKeys();
  void becomeReady();
  void sendPost();
  void readable();
  void agreed(const ResponseHead& head, std::string_view body);
  void posted(const ResponseHead& head);
  void countError(ErrorKind kind, const std::string& message);
  void fail(ErrorKind kind, const std::string& message);
  void rest();
  void close();

  Worker& worker_;
  std::string cookie_value_;
  std::string cookie_;  // NAME=value
  std::string unsigned_head_;
  std::optional<EphemeralKey> ephemeral_;
  std::string key_;  // K, raw; empty until agreed
  std::string keyid_;
  Phase phase_ = Phase::kIdle;
  bool reported_ready_ = false;
  bufferevent* bev_ = nullptr;
  event* backoff_ = nullptr;
  std::optional<ResponseHead> head_;  // of the response being read
  Clock::time_point sent_at_;
};

class Worker {
 public:
  Worker(const Plan& plan, std::atomic<uint64_t>& started, int first, int count)
      : plan_(plan), started_(started), base_(event_base_new()) {
    for (int i = 0; i < count; ++i) {
      connections_.push_back(std::make_unique<Connection>(
          *this, plan.options.cookie_prefix + std::to_string(first + i)));
    }
  }
  ~Worker() {
    connections_.clear();  // before the base their events belong to
    if (base_ != nullptr) event_base_free(base_);
  }

  void run() {
    event* setup = evtimer_new(base_, &Worker::onSetupTimeout, this);
    stop_ = evtimer_new(base_, &Worker::onStop, this);
    hard_stop_ = evtimer_new(base_, &Worker::onHardStop, this);
    timeval tv = toTimeval(seconds(plan_.options.timeout));
    evtimer_add(setup, &tv);
    for (auto& c : connections_) c->start();
    event_base_dispatch(base_);
    if (!stopping_) stopped_at_ = Clock::now();
    if (measuring_) elapsed_ = std::chrono::duration<double>(stopped_at_ - began_).count();
    for (auto& c : connections_) {
      if (!c->idle() && stats_.errors[kTimeout]++ == 0) {
        stats_.first_error[kTimeout] = "still in flight when the drain after the run ended";
      }
    }
    event_free(setup);
    event_free(stop_);
    event_free(hard_stop_);
    connections_.clear();  // abandons what the drain did not finish
  }

  void connectionReady() {
    if (++ready_ == connections_.size() && !measuring_) startMeasuring();
  }

  // A connection has nothing in flight any more; once all are so, the run is over.
  void connectionIdle() {
    for (auto& c : connections_) {
      if (!c->idle()) return;
    }
    if (!stopping_) {
      stopping_ = true;
      stopped_at_ = Clock::now();
    }
    event_base_loopbreak(base_);
  }

  // False once --max-requests POSTs have been started, by all workers together.
  bool takeRequest() { return started_.fetch_add(1) < plan_.options.max_requests; }

  const Plan& plan() const { return plan_; }
  event_base* base() const { return base_; }
  bool measuring() const { return measuring_; }
  bool stopping() const { return stopping_; }
  Stats& stats() { return stats_; }
  double elapsed() const { return elapsed_; }

 private:
  void startMeasuring() {
    measuring_ = true;
    began_ = Clock::now();
    timeval tv = toTimeval(seconds(plan_.options.duration));
    evtimer_add(stop_, &tv);
    for (auto& c : connections_) c->go();
  }

  // Connections still without a key by then join when they have one.
  static void onSetupTimeout(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    if (!w->measuring_) w->startMeasuring();
  }

  static void onStop(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    w->stopping_ = true;
    w->stopped_at_ = Clock::now();
    for (auto& c : w->connections_) c->stopIfWaiting();
    timeval tv = toTimeval(seconds(w->plan_.options.timeout));
    evtimer_add(w->hard_stop_, &tv);
    w->connectionIdle();
  }

  static void onHardStop(evutil_socket_t, short, void* arg) {
    event_base_loopbreak(static_cast<Worker*>(arg)->base_);
  }

  const Plan& plan_;
  std::atomic<uint64_t>& started_;
  event_base* base_;
  std::vector<std::unique_ptr<Connection>> connections_;
  Stats stats_;
  size_t ready_ = 0;
  event* stop_ = nullptr;
  event* hard_stop_ = nullptr;
  Clock::time_point began_;
  Clock::time_point stopped_at_;
  double elapsed_ = 0;
  bool measuring_ = false;
  bool stopping_ = false;  // the measured time is over: count no 2xx, start nothing
};

Connection::Connection(Worker& worker, std::string cookie_value)
    : worker_(worker),
      cookie_value_(std::move(cookie_value)),
      cookie_(worker.plan().options.cookie_name + "=" + cookie_value_) {
  const Plan& plan = worker_.plan();
  unsigned_head_ = requestHead(plan, plan.options.path, cookie_, plan.body.size(), "");
}

Connection::~Connection() {
  close();
  if (backoff_ != nullptr) event_free(backoff_);
}

void Connection::start() {
  if (worker_.stopping()) return worker_.connectionIdle();
  const Address& to = worker_.plan().address;
  bev_ = bufferevent_socket_new(worker_.base(), -1, BEV_OPT_CLOSE_ON_FREE);
  if (bev_ == nullptr) return fail(kConnect, "bufferevent_socket_new failed");
  bufferevent_setcb(bev_, &Connection::onRead, nullptr, &Connection::onEvent, this);
  timeval tv = toTimeval(seconds(worker_.plan().options.timeout));
  bufferevent_set_timeouts(bev_, &tv, &tv);
  phase_ = Phase::kConnecting;
  if (bufferevent_socket_connect(bev_, reinterpret_cast<const sockaddr*>(&to.addr),
                                 static_cast<int>(to.len)) != 0) {
    return fail(kConnect, std::string("connect: ") + std::strerror(errno));
  }
}

void Connection::onEvent(bufferevent*, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  if (what & BEV_EVENT_CONNECTED) return c->connected();
  if (what & BEV_EVENT_TIMEOUT) {
    return c->fail(kTimeout, what & BEV_EVENT_READING ? "no response in time" : "write stalled");
  }
  if (what & BEV_EVENT_EOF) return c->fail(kIo, "closed by the server");
  int err = EVUTIL_SOCKET_ERROR();
  c->fail(c->phase_ == Phase::kConnecting ? kConnect : kIo, evutil_socket_error_to_string(err));
}

void Connection::onBackoff(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  c->phase_ = Phase::kIdle;
  c->start();
}

void Connection::connected() {
  int one = 1;
  setsockopt(bufferevent_getfd(bev_), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  if (worker_.plan().sign && key_.empty()) return sendKeys();
  becomeReady();
}

void Connection::sendKeys() {
  std::string error;
  ephemeral_ = EphemeralKey::make(error);
  if (!ephemeral_) return fail(kKey, error);
  const Plan& plan = worker_.plan();
  std::string body = R"({"jwk":{"kty":"EC","crv":"P-256","x":")" + ephemeral_->x() + R"(","y":")" +
                     ephemeral_->y() + "\"}}";
  std::string head =
      requestHead(plan, plan.options.endpoint_prefix + "keys", cookie_, body.size(), "");
  evbuffer* out = bufferevent_get_output(bev_);
  evbuffer_add(out, head.data(), head.size());
  evbuffer_add(out, body.data(), body.size());
  phase_ = Phase::kAgreeing;
}

void Connection::becomeReady() {
  phase_ = Phase::kReady;
  if (!reported_ready_) {
    reported_ready_ = true;
    worker_.connectionReady();  // may start the clock, and with it go()
  }
  if (phase_ == Phase::kReady && worker_.measuring()) sendPost();
}

void Connection::go() {
  if (phase_ == Phase::kReady) sendPost();
}

void Connection::stopIfWaiting() {
  if (phase_ == Phase::kBackoff) {
    event_del(backoff_);
    phase_ = Phase::kIdle;
  } else if (phase_ == Phase::kReady) {
    close();
  }
}

void Connection::sendPost() {
  if (worker_.stopping() || !worker_.takeRequest()) {
    close();
    return worker_.connectionIdle();
  }
  const Plan& plan = worker_.plan();
  evbuffer* out = bufferevent_get_output(bev_);
  if (plan.sign) {
    std::optional<std::string> headers = signatureHeaders(plan, key_, keyid_);
    if (!headers) return fail(kKey, "cannot sign: " + opensslErrors());
    std::string head = requestHead(plan, plan.options.path, cookie_, plan.body.size(), *headers);
    evbuffer_add(out, head.data(), head.size());
  } else {
    evbuffer_add(out, unsigned_head_.data(), unsigned_head_.size());
  }
  // The body is the plan's, alive until every worker has ended: no copy per request.
  evbuffer_add_reference(out, plan.body.data(), plan.body.size(), nullptr, nullptr);
  sent_at_ = Clock::now();
  phase_ = Phase::kPosting;
}

void Connection::readable() {
  evbuffer* in = bufferevent_get_input(bev_);
  if (!head_) {
    evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
    if (end.pos < 0) {
      if (evbuffer_get_length(in) > kMaxHeadBytes) fail(kProtocol, "response head too long");
      return;
    }
    std::string text(static_cast<size_t>(end.pos) + 4, '\0');
    evbuffer_remove(in, text.data(), text.size());
    std::string error;
    head_ = parseHead(text, error);
    if (!head_) return fail(kProtocol, error);
  }
  if (evbuffer_get_length(in) < head_->content_length) return;
  ResponseHead head = std::move(*head_);
  head_.reset();
  if (phase_ == Phase::kAgreeing) {
    std::string body(head.content_length, '\0');
    evbuffer_remove(in, body.data(), body.size());
    return agreed(head, body);
  }
  evbuffer_drain(in, head.content_length);
  if (phase_ == Phase::kPosting) return posted(head);
  fail(kProtocol, "a response nothing asked for: " + head.status_line);
}

void Connection::agreed(const ResponseHead& head, std::string_view body) {
  if (head.status != 200) {
    return fail(kStatus,
                "keys: " + head.status_line +
                    (head.guard_reason.empty() ? "" : ", X-Tessera-Guard: " + head.guard_reason));
  }
  std::optional<std::string_view> x = jsonString(body, "x");
  std::optional<std::string_view> y = jsonString(body, "y");
  std::optional<std::string_view> keyid = jsonString(body, "keyid");
  if (!x || !y || !keyid || keyid->empty()) {
    return fail(kKey, "keys answer without jwk x/y or keyid: " + std::string(body));
  }
  std::string error;
  std::optional<std::string> k = ephemeral_->agree(*x, *y, cookie_value_, error);
  ephemeral_.reset();
  if (!k) return fail(kKey, error);
  key_ = std::move(*k);
  keyid_ = *keyid;
  ++worker_.stats().agreements;
  if (head.close) return rest();
  becomeReady();
}

void Connection::posted(const ResponseHead& head) {
  Stats& st = worker_.stats();
  if (head.status < 200 || head.status > 299) {
    countError(kStatus,
               head.status_line +
                   (head.guard_reason.empty() ? "" : ", X-Tessera-Guard: " + head.guard_reason));
  } else if (!worker_.stopping()) {
    ++st.ok;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent_at_);
    st.latency_us.push_back(static_cast<uint32_t>(us.count()));
  }
  if (head.close) {
    close();
    return start();
  }
  sendPost();
}

void Connection::countError(ErrorKind kind, const std::string& message) {
  Stats& st = worker_.stats();
  // Counted even after the stop: the request was sent during the run, and a failure must never
  // go unreported because it came late.
  if (st.errors[kind]++ == 0) st.first_error[kind] = message;
}

void Connection::fail(ErrorKind kind, const std::string& message) {
  countError(kind, message);
  rest();
}

// Closes and, unless the run is over, starts again after a pause.
void Connection::rest() {
  close();
  if (worker_.stopping()) return worker_.connectionIdle();
  if (backoff_ == nullptr) backoff_ = evtimer_new(worker_.base(), &Connection::onBackoff, this);
  phase_ = Phase::kBackoff;
  timeval tv = toTimeval(kErrorBackoff);
  evtimer_add(backoff_, &tv);
}

void Connection::close() {
  if (bev_ != nullptr) {
    bufferevent_free(bev_);
    bev_ = nullptr;
  }
  head_.reset();
  phase_ = Phase::kIdle;
}

uint32_t percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(p * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

Stats runWorkers(const Plan& plan, double& elapsed) {
  const Options& o = plan.options;
  std::atomic<uint64_t> started{0};
  std::vector<std::unique_ptr<Worker>> workers;
  int given = 0;
  for (int t = 0; t < o.threads; ++t) {
    int n = o.connections / o.threads + (t < o.connections % o.threads ? 1 : 0);
    workers.push_back(std::make_unique<Worker>(plan, started, given, n));
    given += n;
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  for (std::thread& t : threads) t.join();
  Stats total;
  elapsed = 0;
  for (auto& w : workers) {
    Stats& s = w->stats();
    total.ok += s.ok;
    total.agreements += s.agreements;
    for (int k = 0; k < kErrorKinds; ++k) {
      total.errors[k] += s.errors[k];
      if (total.first_error[k].empty()) total.first_error[k] = s.first_error[k];
    }
    total.latency_us.insert(total.latency_us.end(), s.latency_us.begin(), s.latency_us.end());
    elapsed = std::max(elapsed, w->elapsed());
  }
  return total;
}

void report(const Plan& plan, Stats& total, double elapsed) {
  const Options& o = plan.options;
  std::sort(total.latency_us.begin(), total.latency_us.end());
  uint64_t non_2xx = total.errors[kStatus];
  uint64_t io_errors = 0;
  for (int k = 0; k < kErrorKinds; ++k) io_errors += k == kStatus ? 0 : total.errors[k];
  double rps = elapsed > 0 ? static_cast<double>(total.ok) / elapsed : 0;
  auto ms = [](uint32_t us) { return static_cast<double>(us) / 1000.0; };
  double p50 = ms(percentile(total.latency_us, 0.50));
  double p99 = ms(percentile(total.latency_us, 0.99));
  double max = ms(total.latency_us.empty() ? 0 : total.latency_us.back());

  std::fprintf(stderr,
               "tessera-guard-load: %s POST %s, %zu-byte body, %d connections on %d thread(s), "
               "%.2f s measured\n",
               o.mode.c_str(), plan.target_uri.c_str(), plan.body.size(), o.connections, o.threads,
               elapsed);
  std::fprintf(
      stderr, "  keys agreed %llu; 2xx %llu (%.1f/s); non-2xx %llu; other errors %llu\n",
      static_cast<unsigned long long>(total.agreements), static_cast<unsigned long long>(total.ok),
      rps, static_cast<unsigned long long>(non_2xx), static_cast<unsigned long long>(io_errors));
  std::fprintf(stderr, "  latency of 2xx: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", p50, p99, max);
  for (int k = 0; k < kErrorKinds; ++k) {
    if (total.errors[k] != 0) {
      std::fprintf(stderr, "  error: %s %llu (first: %s)\n", kErrorNames[k],
                   static_cast<unsigned long long>(total.errors[k]), total.first_error[k].c_str());
    }
  }
  if (plan.sign && non_2xx > 0) {
    std::fprintf(stderr,
                 "  error: the guard refused %llu signed requests: this run measured refusals, "
                 "not verification\n",
                 static_cast<unsigned long long>(non_2xx));
  }
  std::printf(
      "{\"requests\":%llu,\"rps\":%.1f,\"errors\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
      "\"non_2xx\":%llu,\"io_errors\":%llu}\n",
      static_cast<unsigned long long>(total.ok), rps,
      static_cast<unsigned long long>(non_2xx + io_errors), p50, p99,
      static_cast<unsigned long long>(non_2xx), static_cast<unsigned long long>(io_errors));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Keep-alive POST load through tessera's guard plugin, signed or unsigned"};
  app.add_option("--host", o.host, "Host to connect to; also the Host header's host")
      ->capture_default_str();
  app.add_option("--port", o.port, "Port")->check(CLI::Range(1, 65535))->required();
  app.add_option("--connections,-c", o.connections, "Keep-alive connections")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--threads,-t", o.threads, "Threads, one event loop each")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--duration,-d", o.duration, "Seconds to measure")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--path", o.path, "Request target of the POSTs")->capture_default_str();
  app.add_option("--body-bytes", o.body_bytes, "Body size of each POST")
      ->check(CLI::Range(size_t{0}, size_t{64} << 20))
      ->capture_default_str();
  app.add_option("--mode", o.mode, "signed: agree a key, sign every POST; unsigned: do not")
      ->check(CLI::IsMember({"signed", "unsigned"}))
      ->capture_default_str();
  app.add_option("--cookie-name", o.cookie_name, "The guard's session_cookie")
      ->capture_default_str();
  app.add_option("--cookie-prefix", o.cookie_prefix,
                 "Session cookie values are this prefix and the connection's number")
      ->capture_default_str();
  app.add_option("--endpoint-prefix", o.endpoint_prefix, "The guard's endpoint_prefix")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout,
                 "Seconds a request may take, and the longest wait for the connections to be "
                 "ready")
      ->check(CLI::Range(0.01, 600.0))
      ->capture_default_str();
  app.add_option("--max-requests", o.max_requests, "Most POSTs sent in the run, all threads")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.threads > o.connections) o.threads = o.connections;
  if (o.path.empty() || o.path[0] != '/') {
    std::cerr << "tessera-guard-load: --path must start with '/'\n";
    return 2;
  }

  Plan plan;
  plan.options = o;
  plan.sign = o.mode == "signed";
  std::optional<Address> address = resolve(o.host, o.port);
  if (!address) {
    std::cerr << "tessera-guard-load: cannot resolve '" << o.host << "'\n";
    return 2;
  }
  plan.address = *address;
  plan.authority = o.host + ":" + std::to_string(o.port);
  plan.target_uri = "http://" + plan.authority + o.path;
  plan.body = makeBody(o.body_bytes);
  std::optional<std::string> digest = sha256(plan.body);
  if (!digest) {
    std::cerr << "tessera-guard-load: SHA-256 failed: " << opensslErrors() << "\n";
    return 2;
  }
  // The body is the same in every POST, so its digest is made once.
  plan.digest = "sha-256=:" + base64(*digest) + ":";

  // A server may close while a request is being written: an error to count, not death.
  std::signal(SIGPIPE, SIG_IGN);
  double elapsed = 0;
  Stats total = runWorkers(plan, elapsed);
  report(plan, total, elapsed);
  uint64_t errors = 0;
  for (uint64_t e : total.errors) errors += e;
  return errors == 0 ? 0 : 1;
}
