#pragma once

// What the integration tests run against: the real tessera binary, a real HTTP backend inside the
// test binary, and real clients (curl, openssl s_client) started as processes. Everything binds to
// loopback ports chosen at run time, and everything a test starts is stopped by its destructor.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/loopback_socket.h"

namespace tessera::testing {

using namespace std::chrono_literals;

// A loopback TCP port that was free a moment ago.
int freePort();

// A loopback port that refuses connections for as long as the returned socket lives (bound, never
// listened on; tests/loopback_socket.h). A port from freePort() may be taken by another process,
// or picked by the kernel as the source port of a connect to it, before the test uses it; a bound
// port can be neither. Never a port freePort() handed out.
LoopbackSocket refusingPort();

// A fresh directory under TMPDIR, removed with everything in it by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

std::string readFile(const std::string& path);

struct CommandResult {
  int exit_code = -1;  // -1: killed on timeout
  std::string output;  // stdout and stderr together
};

// Runs a command to completion (killed after `timeout`), feeding it `input` on stdin.
CommandResult run(const std::vector<std::string>& argv, const std::string& input = "",
                  std::chrono::milliseconds timeout = 30s);

// A child process whose stdout/stderr go to files. The destructor stops it (SIGTERM, then SIGKILL).
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& out_file,
          const std::string& err_file);
  ~Process();
  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // Waits for exit; returns the exit status, or -1 on timeout (the process is left running).
  int wait(std::chrono::milliseconds timeout);
  bool running();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

// True once something accepts TCP connections on 127.0.0.1:port (polls until `timeout`).
bool waitForPort(int port, std::chrono::milliseconds timeout = 10s);

// A blocking plain-TCP client for hand-made requests.
class RawClient {
 public:
  explicit RawClient(int port, const std::string& source_ip = "127.0.0.1");
  ~RawClient();
  bool connected() const { return fd_ >= 0; }
  void send(const std::string& bytes);
  // Caps the socket's receive buffer (and so the window tessera may fill) at about `bytes`.
  void setReceiveBuffer(int bytes);
  // Reads until at least `bytes` have come (or the peer closes, or `timeout` passes).
  std::string readAtLeast(size_t bytes, std::chrono::milliseconds timeout);
  // A slow reader: takes at most `per_step` bytes every `step` until the peer closes, `timeout`
  // passes or what came ends with `until_suffix` (when not empty); returns what came.
  std::string readPaced(size_t per_step, std::chrono::milliseconds step,
                        std::chrono::milliseconds timeout, std::string_view until_suffix = {});
  // Reads until the peer closes or `timeout` passes; returns what came.
  std::string readAll(std::chrono::milliseconds timeout = 5s);
  // Reads until `bytes` complete HTTP responses have arrived (by counting "HTTP/1." status lines
  // and Content-Length bodies) or `timeout` passes.
  std::string readResponses(int count, std::chrono::milliseconds timeout = 5s);
  // True if the peer closed the connection within `timeout`.
  bool waitClosed(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  std::string pending_;
};

// One response, as httpCall() read it.
struct HttpReply {
  int status = 0;  // 0: no response
  std::string head;
  std::string body;
  // The first value of header `name` (any case), "" when absent.
  std::string header(std::string name) const;
};

// One request on a fresh plain-HTTP connection from `source_ip`, "Connection: close"; a POST (or
// any request with a body) gets a Content-Length.
HttpReply httpCall(int port, const std::string& method, const std::string& host,
                   const std::string& path, const std::vector<std::string>& headers,
                   const std::string& body = "", const std::string& source_ip = "127.0.0.1");

// Splits "HTTP/1.1 200 OK\r\n..." responses; returns the status codes in order.
std::vector<int> statusCodes(const std::string& responses);

// The HTTP backend tessera proxies to. One thread per connection, keep-alive, and behaviour by
// path:
//   /echo (and anything else)  200, body: the request line, headers and body size, one per line
//   /download?bytes=N          200, chunked, N bytes of patternByte(i)
//   /upload                    200, body "len=<n> sha256=<hex>" of the request body
//   /status?code=N[&length=L]  status N, empty body (a 204 or 304 with length=L states a
//                              Content-Length of L all the same)
//   /sleep?ms=N                waits N ms, then as /echo
//   /status?code=N             that status, empty body (Content-Length: 0 unless 204/304)
//   /close                     200, no Content-Length, body ends when the connection closes
//   /hugehead                  200 with a 200 KiB head (a misbehaving backend)
//   /login?sid=X               200, Set-Cookie: SESSIONID=X; Max-Age=3600 (a login); with
//                              &user=U also X-User-Id: U, with &bytes=N a body of N bytes
//   /logout                    200, Set-Cookie: SESSIONID=; Max-Age=0 (a logout)
class TestBackend {
 public:
  TestBackend();
  ~TestBackend();
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  uint64_t bytesReceived() const { return bytes_received_.load(); }
  int requests() const { return requests_.load(); }
  int connections() const { return connections_.load(); }
  // Raw head (request line + headers) of the most recent request.
  std::string lastHead() const;

 private:
  void acceptLoop();
  void serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> bytes_received_{0};
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::string last_head_;
  std::vector<int> conn_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

unsigned char patternByte(uint64_t i);
std::string sha256Hex(const std::string& data);

// A self-signed certificate for `names` (first is the CN), written as NAME.crt / NAME.key:
// ECDSA P-256, or RSA 2048 when `rsa`.
struct CertFiles {
  std::string cert;
  std::string key;
};
CertFiles makeCertificate(const TempDir& dir, const std::string& file_stem,
                          const std::vector<std::string>& names, bool rsa = false);

// The tessera binary, started with a config written to a temp dir.
class Tessera {
 public:
  // `config` is the YAML; it is written as tessera.yaml in `dir`. Waits until `wait_port` (and
  // the admin port, if given) accept connections.
  Tessera(const TempDir& dir, const std::string& config, int wait_port, int admin_port = 0);
  ~Tessera();
  Process& process() { return *process_; }
  std::string stdoutText() const { return readFile(out_); }
  std::string stderrText() const { return readFile(err_); }
  const std::string& configPath() const { return config_path_; }
  // The value of a metric line from the admin listener ("name" or "name{labels}"); -1 if absent.
  double metric(const std::string& series) const;
  bool started() const { return started_; }

 private:
  std::string config_path_;
  std::string out_;
  std::string err_;
  int admin_port_;
  bool started_ = false;
  std::unique_ptr<Process> process_;
};

// One TLS connection made in-process, so that the test can choose the source address (OpenSSL
// 3.0's s_client cannot): connects from `source_ip` to 127.0.0.1:port, offers `session_pem` (if
// not empty) for resumption, sends one HTTP/1.0 request and reads the answer (TLS 1.3 tickets
// come with it).
struct TlsVisit {
  bool ok = false;
  bool reused = false;
  std::string session_pem;  // the session to offer next time
  std::string response;
  std::string error;
};
// `groups` (e.g. "P-521:P-256") sets the client's key-share preference: a first group the
// server does not take forces a HelloRetryRequest.
TlsVisit tlsVisit(int port, const std::string& source_ip, const std::string& session_pem,
                  const std::string& version = "1.3", const std::string& groups = "");

// A TLS keep-alive connection made in-process: one handshake, then request after request.
class TlsKeepAlive {
 public:
  // `session_pem`: offer that session. The destructor closes the socket without close_notify,
  // as many clients do.
  explicit TlsKeepAlive(int port, const std::string& session_pem = "");
  bool reused() const;
  std::string sessionPem() const;
  ~TlsKeepAlive();
  bool connected() const { return ssl_ != nullptr; }
  // GET `path` (HTTP/1.1, keep-alive); returns the status code, or 0 on failure.
  int get(const std::string& path);

 private:
  int fd_ = -1;
  void* ctx_ = nullptr;  // SSL_CTX*
  void* ssl_ = nullptr;  // SSL*
  std::string pending_;
};

// GET http://127.0.0.1:port/path with a plain socket; returns the whole response.
std::string httpGet(int port, const std::string& path);

// Polls `pred` until it is true or `timeout` passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

}  // namespace tessera::testing
