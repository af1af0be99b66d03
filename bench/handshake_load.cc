// tessera-handshake-load: a TLS handshake load generator that resumes sessions on purpose.
//
// wrk cannot say which of its handshakes were resumed, nor move a session to another server, so
// it cannot measure a cluster session cache. This tool keeps N connection slots busy, each one
// looping TCP connect -> TLS handshake -> (optional request) -> close. In resume mode a slot's
// first handshake is full and every later one offers the newest session the servers gave it, to
// the next address of the --connect list: with several nodes every resumption is cross-node.
//
// With --rate the slots start connections on a fixed schedule instead of back to back (open
// loop, as wrk2 does): connection k of a thread is due at start + k * threads / rate. A slot
// that is free before its connection is due waits for it. One that is free only later starts at
// once, and the handshake's latency still counts from when it was due: a server that falls
// behind shows as latency instead of slowing the schedule down ("coordinated omission"). That
// measures latency at a given load below saturation; without --rate the server is saturated and
// p99 is mostly queueing. In resume mode the schedule starts once every slot has made its first
// (full) handshake.
//
// One libevent base per thread; every connection is non-blocking and each of its phases bounded
// by --timeout. After --duration no connection starts; those in flight may finish (for at most
// --timeout more) so that the servers see clean closes, and the tool always ends. The last line
// of the output is machine-readable:
//   RESULT hs_per_s=... p50_ms=... p99_ms=... max_ms=... resumed_pct=... errors=... ...

#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kRequest[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
// After a failed connect the slot waits this long: a server that is down must not turn the run
// into a busy loop of refused connects.
constexpr auto kErrorBackoff = std::chrono::milliseconds(10);
// Bytes of a response kept to find its status and length; the rest is only counted.
constexpr size_t kMaxHeadBytes = 16384;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

struct Options {
  std::vector<std::string> connect;
  int concurrency = 50;
  double duration = 10;
  std::string mode = "resume";
  std::string tls = "1.3";
  bool request = false;  // the default depends on --tls: see main()
  int threads = 1;
  double timeout = 5;
  std::string sni = "localhost";
  double rate = 0;  // connections started per second over all threads; 0: as fast as they end
};

struct Address {
  std::string text;
  sockaddr_storage addr{};
  socklen_t len = 0;
};

enum ErrorKind { kConnect, kHandshake, kTimeout, kIo, kStatus, kErrorKinds };
constexpr std::array<const char*, kErrorKinds> kErrorNames = {"connect", "handshake", "timeout",
                                                              "io", "status"};

struct Stats {
  uint64_t handshakes = 0;   // completed, full or resumed
  uint64_t after_first = 0;  // completed handshakes that were not a slot's first one
  uint64_t offered = 0;      // ... of which offered a saved session
  uint64_t resumed = 0;      // ... of which the server resumed
  uint64_t requests = 0;     // complete responses read
  // Longest ticket of a saved session. A TLS 1.3 identity of 32 bytes or less is an id the
  // server looks up in its cache (stateful); a longer one is a stateless ticket.
  size_t ticket_bytes = 0;
  std::array<uint64_t, kErrorKinds> errors{};
  std::array<std::string, kErrorKinds> first_error;  // one example message per kind
  std::vector<uint32_t> latency_us;                  // handshakes that count for the percentiles
};

// Resolves "host:port" or "[v6]:port" once, before the run: no DNS inside the measured loop.
std::optional<Address> resolve(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
  std::string host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return std::nullopt;
  }
  Address a;
  a.text = text;
  std::memcpy(&a.addr, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  freeaddrinfo(res);
  return a;
}

std::string sslErrorText(int ssl_error, int saved_errno) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
  }
  if (ssl_error == SSL_ERROR_SYSCALL) {
    return saved_errno != 0 ? std::strerror(saved_errno) : "connection closed by the server";
  }
  return "SSL_get_error " + std::to_string(ssl_error);
}

class Worker;

// One connection slot: runs connections back to back until the worker stops it.
class Slot {
 public:
  Slot(Worker& worker, size_t first_address) : worker_(worker), next_address_(first_address) {}
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot();

  void start();
  // At the end of the run: a slot waiting out an error backoff or its next due time starts
  // nothing more.
  void stopIfIdle();
  bool idle() const { return phase_ == Phase::kIdle; }

 private:
  enum class Phase { kIdle, kBackoff, kPacing, kConnecting, kHandshake, kWriting, kReading };

  static void onEvent(evutil_socket_t, short what, void* arg);
  void handle(short what);
  void waitUntilDue();
  void connectNow();
  void handshake();
  void handshakeDone();
  void afterHandshake();
  void write();
  void read();
  bool responseComplete();
  void wait(short what);
  // The slot's one event: `what` on `fd` (-1 and 0: a plain timer), or EV_TIMEOUT after `timeout`.
  void arm(evutil_socket_t fd, short what, Clock::duration timeout);
  void fail(ErrorKind kind, const std::string& message);
  void finish();
  void close(bool clean);

  Worker& worker_;
  size_t next_address_;
  SSL_SESSION* saved_ = nullptr;  // newest resumable session the servers gave this slot
  bool had_handshake_ = false;    // a handshake completed: later ones are not "first"
  Phase phase_ = Phase::kIdle;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  event* ev_ = nullptr;
  Clock::time_point began_;  // latency counts from here: the connect, or the due time with --rate
  Clock::time_point deadline_;
  std::string head_;
  bool status_checked_ = false;
  size_t body_bytes_ = 0;
};

class Worker {
 public:
  Worker(const Options& options, const std::vector<Address>& addresses, SSL_CTX* ctx, int slots,
         size_t first_slot)
      : options_(options),
        addresses_(addresses),
        ctx_(ctx),
        base_(newBase()),
        interval_(options.rate > 0 ? options.threads / options.rate : 0) {
    for (int i = 0; i < slots; ++i) {
      slots_.push_back(std::make_unique<Slot>(*this, (first_slot + i) % addresses.size()));
    }
  }
  ~Worker() {
    slots_.clear();  // before the base their events belong to
    if (base_ != nullptr) event_base_free(base_);
  }

  // Runs every slot for `duration`, then lets the connections in flight end for at most
  // `timeout` (their handshakes are not counted, their failures are), so that servers do not log
  // the end of a run as failed handshakes.
  void run() {
    event* stop = evtimer_new(base_, &Worker::onStop, this);
    hard_stop_ = evtimer_new(base_, &Worker::onHardStop, this);
    timeval tv = toTimeval(seconds(options_.duration));
    evtimer_add(stop, &tv);
    began_ = Clock::now();
    schedule_start_ = began_;
    scheduled_ = !paced() || !resume();
    for (auto& s : slots_) s->start();
    event_base_dispatch(base_);
    if (!stopping_) stopped_at_ = Clock::now();
    elapsed_ = std::chrono::duration<double>(stopped_at_ - began_).count();
    for (auto& s : slots_) {
      if (!s->idle() && stats_.errors[kTimeout]++ == 0) {
        stats_.first_error[kTimeout] = "still in flight when the drain after the run ended";
      }
    }
    event_free(stop);
    event_free(hard_stop_);
    slots_.clear();  // abandons what the drain did not finish
  }

  // A slot has nothing in flight any more; once all are so after the stop, the run is over.
  void slotIdle() {
    if (!stopping_) return;
    for (auto& s : slots_) {
      if (!s->idle()) return;
    }
    event_base_loopbreak(base_);
  }

  // A base whose timers use the precise monotonic clock: libevent's default on Linux is the
  // coarse one (a few ms per tick), which would fire --rate's due times early or late.
  static event_base* newBase() {
    event_config* config = event_config_new();
    event_config_set_flag(config, EVENT_BASE_FLAG_PRECISE_TIMER);
    event_base* base = event_base_new_with_config(config);
    event_config_free(config);
    return base;
  }

  static timeval toTimeval(Clock::duration d) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    if (us < 0) us = 0;
    return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  }

  const Options& options() const { return options_; }
  const std::vector<Address>& addresses() const { return addresses_; }
  SSL_CTX* ctx() const { return ctx_; }
  event_base* base() const { return base_; }
  bool stopping() const { return stopping_; }
  bool paced() const { return options_.rate > 0; }
  // With --rate in resume mode the schedule starts once every slot has made its first (full,
  // uncounted) handshake, so that the burst of full handshakes at start-up does not show as
  // queueing in the latency of the resumed ones. False: `slot` waits, and is started again when
  // the schedule starts.
  bool scheduleStarted(Slot* slot) {
    if (scheduled_) return true;
    waiting_.push_back(slot);
    if (waiting_.size() < slots_.size()) return false;
    scheduled_ = true;
    schedule_start_ = Clock::now();
    std::vector<Slot*> ready;
    ready.swap(waiting_);
    for (Slot* s : ready) {
      if (s != slot) s->start();
    }
    return true;
  }
  // With --rate: when the next connection of this thread is due (then it is taken).
  Clock::time_point takeDueTime() {
    auto offset = interval_ * static_cast<double>(started_++);
    return schedule_start_ + std::chrono::duration_cast<Clock::duration>(offset);
  }
  bool resume() const { return options_.mode == "resume"; }
  Stats& stats() { return stats_; }
  double elapsed() const { return elapsed_; }

 private:
  static void onStop(evutil_socket_t, short, void* arg) {
    auto* w = static_cast<Worker*>(arg);
    w->stopping_ = true;
    w->stopped_at_ = Clock::now();
    for (auto& s : w->slots_) s->stopIfIdle();
    timeval tv = toTimeval(seconds(w->options_.timeout));
    evtimer_add(w->hard_stop_, &tv);
    w->slotIdle();
  }

  static void onHardStop(evutil_socket_t, short, void* arg) {
    event_base_loopbreak(static_cast<Worker*>(arg)->base_);
  }

  const Options& options_;
  const std::vector<Address>& addresses_;
  SSL_CTX* ctx_;
  event_base* base_;
  std::vector<std::unique_ptr<Slot>> slots_;
  Stats stats_;
  event* hard_stop_ = nullptr;
  Clock::time_point began_;
  Clock::time_point stopped_at_;
  std::chrono::duration<double> interval_;  // between due times with --rate
  uint64_t started_ = 0;                    // connections due so far with --rate
  bool scheduled_ = true;                   // the --rate schedule has started
  Clock::time_point schedule_start_;        // when the first connection of it was due
  std::vector<Slot*> waiting_;              // slots waiting for the schedule to start
  double elapsed_ = 0;
  bool stopping_ = false;  // the measured time is over: count no handshake, start nothing
};

Slot::~Slot() {
  close(/*clean=*/false);
  if (ev_ != nullptr) event_free(ev_);
  if (saved_ != nullptr) SSL_SESSION_free(saved_);
}

void Slot::stopIfIdle() {
  if (phase_ != Phase::kBackoff && phase_ != Phase::kPacing) return;
  event_del(ev_);
  phase_ = Phase::kIdle;
}

void Slot::start() {
  if (worker_.stopping()) return worker_.slotIdle();
  if (ev_ == nullptr) ev_ = event_new(worker_.base(), -1, 0, &Slot::onEvent, this);
  if (!worker_.paced() || (worker_.resume() && !had_handshake_)) {
    began_ = Clock::now();
    return connectNow();
  }
  if (!worker_.scheduleStarted(this)) {
    phase_ = Phase::kPacing;  // no timer: the worker starts it again
    event_del(ev_);
    return;
  }
  began_ = worker_.takeDueTime();
  waitUntilDue();
}

void Slot::waitUntilDue() {
  Clock::time_point now = Clock::now();
  if (began_ <= now) return connectNow();
  phase_ = Phase::kPacing;
  arm(-1, 0, began_ - now);
}

void Slot::connectNow() {
  const std::vector<Address>& addresses = worker_.addresses();
  const Address& to = addresses[next_address_];
  // Every connection moves on to the next node, so that in resume mode each session is offered
  // to a node other than the one that issued it (when there are several).
  next_address_ = (next_address_ + 1) % addresses.size();
  head_.clear();
  status_checked_ = false;
  body_bytes_ = 0;
  deadline_ = Clock::now() + seconds(worker_.options().timeout);
  fd_ = socket(to.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return fail(kConnect, std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  phase_ = Phase::kConnecting;
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&to.addr), to.len) == 0) {
    return handle(EV_WRITE);
  }
  if (errno != EINPROGRESS) {
    return fail(kConnect, "connect " + to.text + ": " + std::strerror(errno));
  }
  wait(EV_WRITE);
}

void Slot::onEvent(evutil_socket_t, short what, void* arg) {
  static_cast<Slot*>(arg)->handle(what);
}

void Slot::handle(short what) {
  if (phase_ == Phase::kBackoff) {
    phase_ = Phase::kIdle;
    return start();
  }
  if (phase_ == Phase::kPacing) {
    if (worker_.stopping()) return;  // stopIfIdle() already made it idle
    return waitUntilDue();           // a timer may fire a little before its time
  }
  if (what & EV_TIMEOUT) {
    static constexpr std::array<const char*, 7> kPhase = {
        "idle", "backoff", "pacing", "connect", "handshake", "write", "read"};
    return fail(kTimeout, std::string("no progress in ") + kPhase[static_cast<int>(phase_)]);
  }
  switch (phase_) {
    case Phase::kConnecting: {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return fail(kConnect, std::string("connect: ") + std::strerror(err));
      ssl_ = SSL_new(worker_.ctx());
      SSL_set_fd(ssl_, fd_);
      SSL_set_tlsext_host_name(ssl_, worker_.options().sni.c_str());
      if (worker_.resume() && saved_ != nullptr) SSL_set_session(ssl_, saved_);
      SSL_set_connect_state(ssl_);
      phase_ = Phase::kHandshake;
      return handshake();
    }
    case Phase::kHandshake:
      return handshake();
    case Phase::kWriting:
      return write();
    case Phase::kReading:
      return read();
    default:
      return;
  }
}

void Slot::handshake() {
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return handshakeDone();
  int saved_errno = errno;
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ) return wait(EV_READ);
  if (e == SSL_ERROR_WANT_WRITE) return wait(EV_WRITE);
  fail(kHandshake, sslErrorText(e, saved_errno));
}

void Slot::handshakeDone() {
  // After the stop the connection still runs its course (a close in the middle of it would look
  // like a failure to the server), but it is not counted.
  if (worker_.stopping()) return afterHandshake();
  Stats& st = worker_.stats();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - began_).count();
  ++st.handshakes;
  // A slot's first handshake has nothing to resume: it is left out of the resumed share, and in
  // resume mode out of the latency percentiles too, so that the 50 or so full handshakes at
  // start-up (all queued at once) do not pose as the p99 of resumption.
  bool first = !had_handshake_;
  had_handshake_ = true;
  if (!first) {
    ++st.after_first;
    if (SSL_session_reused(ssl_)) ++st.resumed;
    if (saved_ != nullptr) ++st.offered;
  }
  if (!first || !worker_.resume()) st.latency_us.push_back(static_cast<uint32_t>(us));
  afterHandshake();
}

void Slot::afterHandshake() {
  if (!worker_.options().request) return finish();
  // The request phase gets its own budget: a slow backend is not a slow handshake.
  deadline_ = Clock::now() + seconds(worker_.options().timeout);
  phase_ = Phase::kWriting;
  write();
}

void Slot::write() {
  // The request is far smaller than a TLS record, so one SSL_write sends all of it.
  int rc = SSL_write(ssl_, kRequest, sizeof(kRequest) - 1);
  if (rc > 0) {
    phase_ = Phase::kReading;
    return read();
  }
  int saved_errno = errno;
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ) return wait(EV_READ);
  if (e == SSL_ERROR_WANT_WRITE) return wait(EV_WRITE);
  fail(kIo, "write: " + sslErrorText(e, saved_errno));
}

void Slot::read() {
  char buf[16384];
  for (;;) {
    int rc = SSL_read(ssl_, buf, sizeof(buf));
    if (rc > 0) {
      size_t n = static_cast<size_t>(rc);
      size_t head_end = head_.find("\r\n\r\n");
      if (head_end == std::string::npos) {
        size_t take = std::min(n, kMaxHeadBytes - std::min(kMaxHeadBytes, head_.size()));
        head_.append(buf, take);
        head_end = head_.find("\r\n\r\n");
        if (head_end != std::string::npos) body_bytes_ = head_.size() - (head_end + 4);
        body_bytes_ += n - take;
      } else {
        body_bytes_ += n;
      }
      if (responseComplete()) return finish();
      continue;
    }
    int saved_errno = errno;
    int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ) return wait(EV_READ);
    if (e == SSL_ERROR_WANT_WRITE) return wait(EV_WRITE);
    // The server closed (close_notify, or a bare EOF, which SSL_OP_IGNORE_UNEXPECTED_EOF reports
    // as ZERO_RETURN): a response without Content-Length ends here.
    if (e == SSL_ERROR_ZERO_RETURN && head_.find("\r\n\r\n") != std::string::npos) {
      responseComplete();  // checks the status
      return finish();
    }
    if (e == SSL_ERROR_ZERO_RETURN) return fail(kIo, "closed before a complete response head");
    return fail(kIo, "read: " + sslErrorText(e, saved_errno));
  }
}

// True once the head and Content-Length bytes of body are in. Counts a non-2xx status once.
bool Slot::responseComplete() {
  size_t head_end = head_.find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  std::string head = head_.substr(0, head_end + 2);
  if (!status_checked_) {
    status_checked_ = true;
    if (head.size() < 12 || head.compare(0, 7, "HTTP/1.") != 0 || head[9] != '2') {
      Stats& st = worker_.stats();
      if (st.errors[kStatus]++ == 0) {
        st.first_error[kStatus] = head.substr(0, head.find('\r'));
      }
    }
  }
  std::string lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  size_t cl = lower.find("\r\ncontent-length:");
  if (cl == std::string::npos) return false;  // chunked or close-delimited: read to the end
  size_t length = std::strtoull(lower.c_str() + cl + 17, nullptr, 10);
  return body_bytes_ >= length;
}

void Slot::wait(short what) { arm(fd_, what, deadline_ - Clock::now()); }

void Slot::arm(evutil_socket_t fd, short what, Clock::duration timeout) {
  event_del(ev_);
  event_assign(ev_, worker_.base(), fd, what, &Slot::onEvent, this);
  timeval tv = Worker::toTimeval(timeout);
  event_add(ev_, &tv);
}

void Slot::fail(ErrorKind kind, const std::string& message) {
  Stats& st = worker_.stats();
  // Counted even after the stop: the connection was made during the run, and a failure must
  // never go unreported because it came late.
  if (st.errors[kind]++ == 0) st.first_error[kind] = message;
  close(/*clean=*/false);
  if (worker_.stopping()) return worker_.slotIdle();
  phase_ = Phase::kBackoff;
  arm(-1, 0, kErrorBackoff);
}

void Slot::finish() {
  if (worker_.options().request && !worker_.stopping()) ++worker_.stats().requests;
  if (worker_.resume()) {
    // The newest session: TLS 1.2 keeps the one it resumed; TLS 1.3 replaces it with each ticket
    // read after the handshake (tessera and nginx issue a fresh one per resumption).
    SSL_SESSION* s = SSL_get1_session(ssl_);
    if (s != nullptr && SSL_SESSION_is_resumable(s)) {
      if (saved_ != nullptr) SSL_SESSION_free(saved_);
      saved_ = s;
      const unsigned char* ticket = nullptr;
      size_t ticket_len = 0;
      SSL_SESSION_get0_ticket(s, &ticket, &ticket_len);
      Stats& st = worker_.stats();
      st.ticket_bytes = std::max(st.ticket_bytes, ticket_len);
    } else if (s != nullptr) {
      SSL_SESSION_free(s);
    }
  }
  close(/*clean=*/true);
  phase_ = Phase::kIdle;
  start();
}

void Slot::close(bool clean) {
  if (ev_ != nullptr) event_del(ev_);
  if (ssl_ != nullptr) {
    // OpenSSL marks the session of a connection freed without close_notify as not resumable
    // (SSL_free -> ssl_clear_bad_session), and that is the object saved_ shares: a clean close
    // must send close_notify. One SSL_shutdown call sends it; waiting for the server's reply
    // would only add a round trip per connection.
    if (clean) SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ssl_ = nullptr;
    ERR_clear_error();
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  phase_ = Phase::kIdle;
}

uint32_t percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(p * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"TLS handshake load: full or resumed handshakes, optionally across several nodes"};
  app.add_option("--connect", o.connect,
                 "host:port of a node; repeat for several (used round robin per connection)")
      ->required();
  app.add_option("--concurrency,-c", o.concurrency, "Connections in flight")
      ->check(CLI::Range(1, 100000));
  app.add_option("--duration,-d", o.duration, "Seconds to run")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--mode", o.mode, "full: never offer a session; resume: offer the newest one")
      ->check(CLI::IsMember({"full", "resume"}));
  app.add_option("--tls", o.tls, "TLS version")->check(CLI::IsMember({"1.2", "1.3"}));
  CLI::Option* request =
      app.add_flag("--request,!--no-request", o.request,
                   "Send a GET with Connection: close and read the response before closing "
                   "(default: on with TLS 1.3, whose tickets arrive after the handshake)");
  app.add_option("--threads,-t", o.threads, "Threads, one event loop each")
      ->check(CLI::Range(1, 256));
  app.add_option("--timeout", o.timeout,
                 "Seconds a connection may take per phase (handshake, "
                 "then request)")
      ->check(CLI::Range(0.01, 600.0));
  app.add_option("--sni", o.sni, "Server name sent in the ClientHello");
  app.add_option("--rate", o.rate,
                 "Connections started per second over all threads, on a fixed schedule whose "
                 "due times latency counts from (default 0: each slot starts its next connection "
                 "as soon as one ends)")
      ->check(CLI::Range(0.0, 1e7));
  CLI11_PARSE(app, argc, argv);
  if (request->count() == 0) o.request = o.tls == "1.3";
  if (o.threads > o.concurrency) o.threads = o.concurrency;

  std::vector<Address> addresses;
  for (const std::string& text : o.connect) {
    std::optional<Address> a = resolve(text);
    if (!a) {
      std::cerr << "tessera-handshake-load: cannot resolve '" << text << "' (want host:port)\n";
      return 2;
    }
    addresses.push_back(*a);
  }

  // A server may close before our close_notify is written: that must be an error code, not death.
  std::signal(SIGPIPE, SIG_IGN);

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  int version = o.tls == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION;
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  // A load tool, not a client to trust: the certificate is made at run time and not checked.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  // Servers answer "Connection: close" by closing, some without close_notify.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn));

  std::vector<std::unique_ptr<Worker>> workers;
  int given = 0;
  for (int t = 0; t < o.threads; ++t) {
    int n = o.concurrency / o.threads + (t < o.concurrency % o.threads ? 1 : 0);
    // Slots start on different nodes so that the load is spread from the first connection on.
    workers.push_back(std::make_unique<Worker>(o, addresses, ctx, n, static_cast<size_t>(given)));
    given += n;
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  for (std::thread& t : threads) t.join();

  Stats total;
  double elapsed = 0;
  for (auto& w : workers) {
    Stats& s = w->stats();
    total.handshakes += s.handshakes;
    total.after_first += s.after_first;
    total.offered += s.offered;
    total.resumed += s.resumed;
    total.requests += s.requests;
    total.ticket_bytes = std::max(total.ticket_bytes, s.ticket_bytes);
    for (int k = 0; k < kErrorKinds; ++k) {
      total.errors[k] += s.errors[k];
      if (total.first_error[k].empty()) total.first_error[k] = s.first_error[k];
    }
    total.latency_us.insert(total.latency_us.end(), s.latency_us.begin(), s.latency_us.end());
    elapsed = std::max(elapsed, w->elapsed());
  }
  workers.clear();
  SSL_CTX_free(ctx);

  std::sort(total.latency_us.begin(), total.latency_us.end());
  uint64_t errors = 0;
  for (uint64_t e : total.errors) errors += e;
  double hs_per_s = elapsed > 0 ? static_cast<double>(total.handshakes) / elapsed : 0;
  double resumed_pct =
      total.after_first > 0 ? 100.0 * static_cast<double>(total.resumed) / total.after_first : 0;
  auto ms = [](uint32_t us) { return static_cast<double>(us) / 1000.0; };
  double p50 = ms(percentile(total.latency_us, 0.50));
  double p99 = ms(percentile(total.latency_us, 0.99));
  double max = ms(total.latency_us.empty() ? 0 : total.latency_us.back());

  std::string nodes;
  for (const Address& a : addresses) nodes += (nodes.empty() ? "" : ",") + a.text;
  char pace[64] = "";
  if (o.rate > 0) std::snprintf(pace, sizeof(pace), ", paced at %.0f/s", o.rate);
  std::printf("target %s, TLS %s, mode %s, %d connections on %d thread(s)%s, request %s, %.2f s\n",
              nodes.c_str(), o.tls.c_str(), o.mode.c_str(), o.concurrency, o.threads, pace,
              o.request ? "on" : "off", elapsed);
  std::printf("handshakes %llu (%.1f/s), responses %llu\n",
              static_cast<unsigned long long>(total.handshakes), hs_per_s,
              static_cast<unsigned long long>(total.requests));
  std::printf("latency (%s -> handshake done%s): p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
              o.rate > 0 ? "due time" : "TCP connect start",
              o.mode == "resume" ? ", each slot's first handshake left out" : "", p50, p99, max);
  if (o.mode == "resume") {
    std::printf(
        "resumed %llu of %llu handshakes after each slot's first (%.2f%%); a session was "
        "offered in %llu\n",
        static_cast<unsigned long long>(total.resumed),
        static_cast<unsigned long long>(total.after_first), resumed_pct,
        static_cast<unsigned long long>(total.offered));
    std::printf("longest session ticket kept: %zu bytes%s\n", total.ticket_bytes,
                total.ticket_bytes == 0    ? " (none: TLS 1.2 session ids)"
                : total.ticket_bytes <= 32 ? " (an id the server looks up: stateful)"
                                           : " (a stateless ticket)");
  }
  std::printf("errors %llu", static_cast<unsigned long long>(errors));
  for (int k = 0; k < kErrorKinds; ++k) {
    if (total.errors[k] != 0) {
      std::printf("; %s %llu (first: %s)", kErrorNames[k],
                  static_cast<unsigned long long>(total.errors[k]), total.first_error[k].c_str());
    }
  }
  std::printf("\n");
  std::printf(
      "RESULT hs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f resumed_pct=%.2f "
      "errors=%llu handshakes=%llu resumed=%llu offered=%llu ticket_bytes=%zu\n",
      hs_per_s, p50, p99, max, o.mode == "resume" ? resumed_pct : 0.0,
      static_cast<unsigned long long>(errors), static_cast<unsigned long long>(total.handshakes),
      static_cast<unsigned long long>(total.resumed),
      static_cast<unsigned long long>(total.offered), total.ticket_bytes);
  return 0;
}
