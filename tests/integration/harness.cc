#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "proxy/http_message.h"

extern char** environ;

namespace tessera::testing {

namespace {

std::vector<char*> cArgv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

int connectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sockets and pipes alike (send() would refuse a pipe); SIGPIPE is ignored by run().
bool writeAll(int fd, const char* p, size_t n) {
  signal(SIGPIPE, SIG_IGN);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads what is available within `ms`; returns bytes read, 0 on EOF, -1 on timeout or error.
ssize_t readSome(int fd, char* buf, size_t n, int ms) {
  pollfd p{fd, POLLIN, 0};
  int rc = ::poll(&p, 1, ms);
  if (rc <= 0) return -1;
  ssize_t r = ::read(fd, buf, n);  // pipes too, not only sockets
  return r < 0 ? -1 : r;
}

std::string queryValue(const std::string& url, const std::string& key) {
  size_t q = url.find('?');
  if (q == std::string::npos) return "";
  std::string query = url.substr(q + 1);
  std::string needle = key + "=";
  size_t at = query.find(needle);
  if (at == std::string::npos) return "";
  return query.substr(at + needle.size(), query.find('&', at) - at - needle.size());
}

}  // namespace

// The kernel may hand out the same free port twice in a row, and a test that asks for several
// ports (listener, admin, memcached, a dead upstream) needs them distinct: no port is handed out
// twice in one process.
LoopbackSocket refusingPort() {
  static std::mutex mutex;
  static std::set<int> handed_out;
  std::lock_guard lock(mutex);
  for (;;) {
    LoopbackSocket bound;
    if (handed_out.insert(bound.port()).second) return bound;
  }
}

int freePort() { return refusingPort().port(); }  // free again once the socket closes

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/tessera-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  std::string p = file(name);
  std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  return p;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

CommandResult run(const std::vector<std::string>& argv, const std::string& input,
                  std::chrono::milliseconds timeout) {
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 2);
  pid_t pid = -1;
  auto args = cArgv(argv);
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  CommandResult result;
  if (rc != 0) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    result.output = "cannot start " + argv[0];
    return result;
  }
  signal(SIGPIPE, SIG_IGN);
  writeAll(in_pipe[1], input.data(), input.size());
  ::close(in_pipe[1]);
  auto until = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    ssize_t n = readSome(out_pipe[0], buf, sizeof(buf), static_cast<int>(left.count()));
    if (n == 0) break;
    if (n > 0) result.output.append(buf, static_cast<size_t>(n));
  }
  ::close(out_pipe[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = (!timed_out && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  return result;
}

Process::Process(const std::vector<std::string>& argv, const std::string& out_file,
                 const std::string& err_file) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  auto args = cArgv(argv);
  if (posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
  posix_spawn_file_actions_destroy(&fa);
}

Process::~Process() {
  if (!running()) return;
  signal(SIGTERM);
  if (wait(5s) == -1 && running()) {
    signal(SIGKILL);
    wait(5s);
  }
}

void Process::signal(int sig) const {
  if (pid_ <= 0) return;
  ::kill(pid_, sig);
  // SIGSTOP returns once the process has stopped: kill() only queues the signal, and a request
  // sent right after it could still be answered.
  int status = 0;
  if (sig == SIGSTOP) ::waitpid(pid_, &status, WUNTRACED);
}

int Process::wait(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0 && status_ < 0) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (std::chrono::steady_clock::now() >= until) return -1;
    std::this_thread::sleep_for(10ms);
  }
  return status_;
}

bool Process::running() {
  if (pid_ <= 0 || status_ >= 0) return false;
  return wait(0ms) == -1;
}

bool waitForPort(int port, std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        int fd = connectLoopback(port);
        if (fd < 0) return false;
        ::close(fd);
        return true;
      },
      timeout);
}

int connectFrom(const std::string& source_ip, int port);

RawClient::RawClient(int port, const std::string& source_ip)
    : fd_(source_ip == "127.0.0.1" ? connectLoopback(port) : connectFrom(source_ip, port)) {}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

void RawClient::send(const std::string& bytes) {
  if (fd_ >= 0) writeAll(fd_, bytes.data(), bytes.size());
}

std::string RawClient::readAtLeast(size_t bytes, std::chrono::milliseconds timeout) {
  std::string out = std::move(pending_);
  pending_.clear();
  auto until = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (fd_ >= 0 && out.size() < bytes) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    ssize_t n = readSome(fd_, buf, std::min(sizeof(buf), bytes - out.size()),
                         static_cast<int>(left.count()));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void RawClient::setReceiveBuffer(int bytes) {
  if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

std::string RawClient::readPaced(size_t per_step, std::chrono::milliseconds step,
                                 std::chrono::milliseconds timeout, std::string_view until_suffix) {
  std::string out = std::move(pending_);
  pending_.clear();
  auto until = std::chrono::steady_clock::now() + timeout;
  std::vector<char> buf(per_step);
  while (fd_ >= 0 && std::chrono::steady_clock::now() < until) {
    size_t got = 0;
    while (got < per_step) {  // this step's share, as far as it has come within the step
      ssize_t n = readSome(fd_, buf.data(), per_step - got, static_cast<int>(step.count()));
      if (n == 0) return out;  // closed
      if (n < 0) break;        // nothing more within the step
      out.append(buf.data(), static_cast<size_t>(n));
      got += static_cast<size_t>(n);
      if (!until_suffix.empty() && out.ends_with(until_suffix)) return out;
    }
    std::this_thread::sleep_for(step);
  }
  return out;
}

std::string RawClient::readAll(std::chrono::milliseconds timeout) {
  std::string out = std::move(pending_);
  pending_.clear();
  auto until = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (fd_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    ssize_t n = readSome(fd_, buf, sizeof(buf), static_cast<int>(left.count()));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

namespace {

// Length of the first complete response in `data` (Content-Length or no body), or 0.
size_t completeResponse(const std::string& data) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  std::string head = data.substr(0, end);
  size_t body = 0;
  for (std::string key : {"Content-Length: ", "content-length: "}) {
    size_t at = head.find(key);
    if (at != std::string::npos) body = std::stoul(head.substr(at + key.size()));
  }
  if (head.rfind("HTTP/1.1 1", 0) == 0) body = 0;  // interim response
  size_t total = end + 4 + body;
  return data.size() >= total ? total : 0;
}

}  // namespace

std::string RawClient::readResponses(int count, std::chrono::milliseconds timeout) {
  std::string out;
  auto until = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  int seen = 0;
  for (;;) {
    size_t n;
    while (seen < count && (n = completeResponse(pending_)) > 0) {
      out += pending_.substr(0, n);
      pending_.erase(0, n);
      ++seen;
    }
    if (seen >= count || fd_ < 0) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    ssize_t r = readSome(fd_, buf, sizeof(buf), static_cast<int>(left.count()));
    if (r <= 0) break;
    pending_.append(buf, static_cast<size_t>(r));
  }
  return out;
}

bool RawClient::waitClosed(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (fd_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
    if (r <= 0) return true;
  }
  return true;
}

std::string HttpReply::header(std::string name) const {
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t at = lower.find("\r\n" + name + ":");
  if (at == std::string::npos) return "";
  size_t begin = at + 3 + name.size();
  size_t end = head.find("\r\n", begin);
  std::string value = head.substr(begin, end - begin);
  size_t first = value.find_first_not_of(' ');
  return first == std::string::npos ? "" : value.substr(first);
}

HttpReply httpCall(int port, const std::string& method, const std::string& host,
                   const std::string& path, const std::vector<std::string>& headers,
                   const std::string& body, const std::string& source_ip) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n";
  for (const std::string& h : headers) r += h + "\r\n";
  if (!body.empty() || method == "POST") {
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  r += "Connection: close\r\n\r\n" + body;
  RawClient c(port, source_ip);
  c.send(r);
  std::string raw = c.readAll(10s);
  HttpReply out;
  size_t end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || end == std::string::npos) return out;
  out.status = std::atoi(raw.substr(9, 3).c_str());
  out.head = raw.substr(0, end + 2);
  out.body = raw.substr(end + 4);
  return out;
}

std::vector<int> statusCodes(const std::string& responses) {
  std::vector<int> codes;
  size_t at = 0;
  while ((at = responses.find("HTTP/1.", at)) != std::string::npos) {
    if (at == 0 || responses.compare(at - 2, 2, "\r\n") == 0 || responses[at - 1] == '\n') {
      codes.push_back(std::atoi(responses.c_str() + at + 9));
    }
    at += 8;
  }
  return codes;
}

unsigned char patternByte(uint64_t i) { return static_cast<unsigned char>((i * 31 + 7) % 251); }

std::string sha256Hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

// ---- TestBackend ---------------------------------------------------------------------------

TestBackend::TestBackend() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::listen(listen_fd_, 512);
  socklen_t len = sizeof(a);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { acceptLoop(); });
}

TestBackend::~TestBackend() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
}

std::string TestBackend::lastHead() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_head_;
}

void TestBackend::acceptLoop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    ++connections_;
    std::lock_guard<std::mutex> lock(mu_);
    conn_fds_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

namespace {

// Collects one request at a time for the backend.
class RequestCollector : public proxy::HttpParser::Sink {
 public:
  std::string body;
  bool complete = false;
  int onHeadComplete() override { return 0; }
  int onBody(const char* data, size_t len) override {
    body.append(data, len);
    return 0;
  }
  int onMessageComplete() override {
    complete = true;
    return HPE_PAUSED;
  }
};

std::string describe(const proxy::MessageHead& h) {
  std::string s = h.method + " " + h.url + " HTTP/" + std::to_string(h.http_major) + "." +
                  std::to_string(h.http_minor) + "\n";
  for (const proxy::Header& hd : h.headers) s += hd.name + ": " + hd.value + "\n";
  return s;
}

std::string simpleResponse(int status, const std::string& body, bool with_length = true) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " +
                  std::string(proxy::reasonPhrase(status)) + "\r\n";
  if (with_length) r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

}  // namespace

void TestBackend::serve(int fd) {
  RequestCollector sink;
  proxy::HttpParser parser(proxy::HttpParser::Type::kRequest, sink);
  std::string pending;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    bytes_received_ += static_cast<uint64_t>(n);
    pending.append(buf, static_cast<size_t>(n));
    bool close_now = false;
    while (!pending.empty() && !close_now) {
      auto r = parser.feed(pending.data(), pending.size());
      pending.erase(0, r.consumed);
      if (r.error != HPE_OK && r.error != HPE_PAUSED) {
        close_now = true;
        break;
      }
      if (!sink.complete) break;
      const proxy::MessageHead& h = parser.head();
      ++requests_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        last_head_ = describe(h);
      }
      std::string path = h.url.substr(0, h.url.find('?'));
      std::string out;
      if (path == "/download") {
        uint64_t total = std::stoull("0" + queryValue(h.url, "bytes"));
        out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        writeAll(fd, out.data(), out.size());
        std::string chunk;
        for (uint64_t i = 0; i < total;) {
          uint64_t len = std::min<uint64_t>(65536, total - i);
          chunk.clear();
          char size_line[32];
          snprintf(size_line, sizeof(size_line), "%llx\r\n", static_cast<unsigned long long>(len));
          chunk += size_line;
          for (uint64_t k = 0; k < len; ++k) chunk.push_back(static_cast<char>(patternByte(i + k)));
          chunk += "\r\n";
          writeAll(fd, chunk.data(), chunk.size());
          i += len;
        }
        out = "0\r\n\r\n";
      } else if (path == "/upload") {
        out = simpleResponse(
            200, "len=" + std::to_string(sink.body.size()) + " sha256=" + sha256Hex(sink.body));
      } else if (path == "/status") {
        int code = std::atoi(queryValue(h.url, "code").c_str());
        bool no_body = code == 204 || code == 304;
        out = simpleResponse(code, "", !no_body);
        // ?length=N: a 304 (or 204) that states a Content-Length and still has no body, as RFC
        // 9110 8.6 allows a 304 to.
        if (std::string length = queryValue(h.url, "length"); no_body && !length.empty()) {
          out.insert(out.find("\r\n") + 2, "Content-Length: " + length + "\r\n");
        }
      } else if (path == "/hugehead") {  // a backend gone wrong: a 200 KiB response head
        out = "HTTP/1.1 200 OK\r\n";
        for (int k = 0; k < 2000; ++k)
          out += "X-Pad-" + std::to_string(k) + ": " + std::string(90, 'p') + "\r\n";
        out += "Content-Length: 0\r\n\r\n";
        close_now = true;
      } else if (path == "/login" || path.ends_with("/login")) {
        // ?bytes=N: a body of N pattern bytes instead of "ok\n".
        std::string body = "ok\n";
        if (uint64_t n = std::stoull("0" + queryValue(h.url, "bytes")); n > 0) {
          body.clear();
          for (uint64_t k = 0; k < n; ++k) body.push_back(static_cast<char>(patternByte(k)));
        }
        // ?user=ID: the app says who logged in, in X-User-Id (as the migration plugin learns it).
        std::string user = queryValue(h.url, "user");
        // ?js=1: a cookie that scripts may read (the guard SDK hashes it into its key).
        std::string flags = queryValue(h.url, "js") == "1" ? "" : "; HttpOnly";
        // ?path=none: no Path attribute (the browser files the cookie under the login's
        // directory); ?domain=D: a Domain attribute.
        if (queryValue(h.url, "path") != "none") flags += "; Path=/";
        if (std::string domain = queryValue(h.url, "domain"); !domain.empty()) {
          flags += "; Domain=" + domain;
        }
        out = "HTTP/1.1 200 OK\r\nSet-Cookie: SESSIONID=" + queryValue(h.url, "sid") +
              "; Max-Age=3600" + flags + "\r\n" +
              (user.empty() ? "" : "X-User-Id: " + user + "\r\n") +
              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
              (h.method == "HEAD" ? "" : body);
      } else if (path == "/guard/page.html") {  // the guard SDK's test page
        std::string page = readFile(TESSERA_SOURCE_DIR "/tests/integration/guard_js/page.html");
        out = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " +
              std::to_string(page.size()) + "\r\n\r\n" + page;
      } else if (path == "/logout") {
        out =
            "HTTP/1.1 200 OK\r\nSet-Cookie: SESSIONID=; Max-Age=0; Path=/\r\n"
            "Content-Length: 3\r\n\r\nok\n";
      } else if (path == "/close") {
        out = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close body";
        close_now = true;
      } else {
        if (path == "/sleep") {
          std::this_thread::sleep_for(
              std::chrono::milliseconds(std::atoi(queryValue(h.url, "ms").c_str())));
        }
        std::string body = describe(h) + "body_bytes: " + std::to_string(sink.body.size()) + "\n";
        out = simpleResponse(200, h.method == "HEAD" ? "" : body);
        out.insert(out.find("\r\n") + 2, "Content-Type: text/plain; charset=utf-8\r\n");
        if (h.method == "HEAD") {
          out = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        }
      }
      writeAll(fd, out.data(), out.size());
      sink.complete = false;
      sink.body.clear();
      parser.resume();
    }
    if (close_now) break;
  }
  ::shutdown(fd, SHUT_RDWR);
}

// ---- certificates, tessera -----------------------------------------------------------------

CertFiles makeCertificate(const TempDir& dir, const std::string& stem,
                          const std::vector<std::string>& names, bool rsa) {
  CertFiles f{dir.file(stem + ".crt"), dir.file(stem + ".key")};
  std::string san = "subjectAltName=";
  for (size_t i = 0; i < names.size(); ++i) san += (i ? ",DNS:" : "DNS:") + names[i];
  std::vector<std::string> argv = {"openssl", "req", "-x509", "-nodes", "-days", "2"};
  if (rsa) {
    argv.insert(argv.end(), {"-newkey", "rsa:2048"});
  } else {
    argv.insert(argv.end(), {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"});
  }
  argv.insert(argv.end(),
              {"-subj", "/CN=" + names.front(), "-addext", san, "-keyout", f.key, "-out", f.cert});
  CommandResult r = run(argv);
  if (r.exit_code != 0) throw std::runtime_error("openssl req failed: " + r.output);
  return f;
}

Tessera::Tessera(const TempDir& dir, const std::string& config, int wait_port, int admin_port)
    : config_path_(dir.write("tessera.yaml", config)),
      out_(dir.file("tessera.out")),
      err_(dir.file("tessera.err")),
      admin_port_(admin_port) {
  process_ = std::make_unique<Process>(
      std::vector<std::string>{TESSERA_BINARY, "run", "--config", config_path_}, out_, err_);
  started_ = waitForPort(wait_port) && (admin_port == 0 || waitForPort(admin_port));
}

Tessera::~Tessera() = default;

std::string httpGet(int port, const std::string& path) {
  RawClient c(port);
  c.send("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  return c.readAll(5s);
}

double Tessera::metric(const std::string& series) const {
  std::string text = httpGet(admin_port_, "/metrics");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

int connectFrom(const std::string& source_ip, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, source_ip.c_str(), &src.sin_addr);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(port));
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

namespace {

std::string sessionToPem(SSL_SESSION* session) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_SSL_SESSION(bio, session);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

SSL_SESSION* sessionFromPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  SSL_SESSION* s = PEM_read_bio_SSL_SESSION(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return s;
}

}  // namespace

TlsVisit tlsVisit(int port, const std::string& source_ip, const std::string& session_pem,
                  const std::string& version, const std::string& groups) {
  TlsVisit visit;
  int fd = connectFrom(source_ip, port);
  if (fd < 0) {
    visit.error = "cannot connect from " + source_ip;
    return visit;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  int v = version == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION;
  SSL_CTX_set_min_proto_version(ctx, v);
  SSL_CTX_set_max_proto_version(ctx, v);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
  if (!groups.empty()) SSL_CTX_set1_groups_list(ctx, groups.c_str());
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  if (!session_pem.empty()) {
    SSL_SESSION* s = sessionFromPem(session_pem);
    if (s != nullptr) SSL_set_session(ssl, s);
    SSL_SESSION_free(s);
  }
  if (SSL_connect(ssl) == 1) {
    visit.ok = true;
    visit.reused = SSL_session_reused(ssl) == 1;
    std::string req = "GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n";
    SSL_write(ssl, req.data(), static_cast<int>(req.size()));
    char buf[4096];
    int n;
    while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0)
      visit.response.append(buf, static_cast<size_t>(n));
    if (SSL_SESSION* s = SSL_get1_session(ssl)) {
      if (SSL_SESSION_is_resumable(s)) visit.session_pem = sessionToPem(s);
      SSL_SESSION_free(s);
    }
  } else {
    visit.error = "handshake failed";
  }
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return visit;
}

TlsKeepAlive::TlsKeepAlive(int port, const std::string& session_pem) {
  fd_ = connectFrom("127.0.0.1", port);
  if (fd_ < 0) return;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd_);
  if (!session_pem.empty()) {
    SSL_SESSION* s = sessionFromPem(session_pem);
    if (s != nullptr) SSL_set_session(ssl, s);
    SSL_SESSION_free(s);
  }
  ctx_ = ctx;
  if (SSL_connect(ssl) != 1) {
    ERR_clear_error();
    SSL_free(ssl);
    return;
  }
  ssl_ = ssl;
}

TlsKeepAlive::~TlsKeepAlive() {
  if (ssl_ != nullptr) SSL_free(static_cast<SSL*>(ssl_));
  if (ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  if (fd_ >= 0) ::close(fd_);
}

bool TlsKeepAlive::reused() const {
  return ssl_ != nullptr && SSL_session_reused(static_cast<SSL*>(ssl_)) == 1;
}

std::string TlsKeepAlive::sessionPem() const {
  if (ssl_ == nullptr) return "";
  SSL_SESSION* s = SSL_get1_session(static_cast<SSL*>(ssl_));
  std::string pem = s != nullptr ? sessionToPem(s) : "";
  SSL_SESSION_free(s);
  return pem;
}

int TlsKeepAlive::get(const std::string& path) {
  if (ssl_ == nullptr) return 0;
  SSL* ssl = static_cast<SSL*>(ssl_);
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  if (SSL_write(ssl, req.data(), static_cast<int>(req.size())) <= 0) return 0;
  char buf[16384];
  for (;;) {
    if (size_t n = completeResponse(pending_); n > 0) {
      int status = std::atoi(pending_.c_str() + 9);
      pending_.erase(0, n);
      return status;
    }
    int r = SSL_read(ssl, buf, sizeof(buf));
    if (r <= 0) return 0;
    pending_.append(buf, static_cast<size_t>(r));
  }
}

}  // namespace tessera::testing
