// The demo backend that `make run` and the macro benchmark put behind tessera: an HTTP/1.1 server
// on libevent's evhttp that answers every request with its request line and headers as JSON (so
// a reader sees what tessera forwarded, e.g. the X-User-Id of a migration permit).
// One event loop per thread, each on its own SO_REUSEPORT socket.
//
// Two pages play the origin app of the migration demo (README, "Session migration"):
//   GET /login?user=NAME  200, Set-Cookie: SESSIONID=<32 random hex digits>; Path=/; HttpOnly;
//                         Max-Age=3600, and X-User-Id: NAME (read, and removed, by tessera)
//   GET /logout           200, Set-Cookie: SESSIONID=; Path=/; HttpOnly; Max-Age=0
// and the guard demo (README, "Signed requests from a web page") adds:
//   GET /login?user=NAME&js=1  the same, but a cookie without HttpOnly: the guard SDK hashes the
//                              session cookie into its key, so the page's script must read it
//   GET /guard.html            the README's ten-line page that signs a POST with client.js

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>
#include <vector>

namespace {

const char* methodName(evhttp_cmd_type cmd) {
  switch (cmd) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
    default:
      return "OTHER";
  }
}

void echo(evhttp_request* req) {
  nlohmann::json j;
  j["method"] = methodName(evhttp_request_get_command(req));
  j["uri"] = evhttp_request_get_uri(req);
  nlohmann::json headers = nlohmann::json::object();
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  for (evkeyval* h = in->tqh_first; h != nullptr; h = h->next.tqe_next) headers[h->key] = h->value;
  j["headers"] = headers;
  j["body_bytes"] = evbuffer_get_length(evhttp_request_get_input_buffer(req));
  std::string text = j.dump() + "\n";
  evbuffer* out = evbuffer_new();
  evbuffer_add(out, text.data(), text.size());
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, 200, "OK", out);
  evbuffer_free(out);
}

void sendJson(evhttp_request* req, int status, const char* reason, const nlohmann::json& body) {
  std::string text = body.dump() + "\n";
  evbuffer* out = evbuffer_new();
  evbuffer_add(out, text.data(), text.size());
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", "application/json");
  evhttp_add_header(headers, "Cache-Control", "no-store");
  evhttp_send_reply(req, status, reason, out);
  evbuffer_free(out);
}

// A user name that is safe in a header and a log line.
bool plainName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.' || c == '@';
    if (!ok) return false;
  }
  return true;
}

std::string randomHex(size_t bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string raw(bytes, '\0');
  if (getrandom(raw.data(), raw.size(), 0) != static_cast<ssize_t>(raw.size())) return "";
  std::string hex;
  for (unsigned char b : raw) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return hex;
}

void login(evhttp_request* req, const char* query) {
  evkeyvalq params{};
  std::string user;
  bool for_scripts = false;
  if (query != nullptr && evhttp_parse_query_str(query, &params) == 0) {
    const char* value = evhttp_find_header(&params, "user");
    if (value != nullptr) user = value;
    const char* js = evhttp_find_header(&params, "js");
    for_scripts = js != nullptr && strcmp(js, "1") == 0;
  }
  evhttp_clear_headers(&params);
  if (!plainName(user)) {
    return sendJson(req, 400, "Bad Request", {{"error", "expected ?user=NAME (A-Z a-z 0-9 -_.@)"}});
  }
  std::string sid = randomHex(16);
  if (sid.empty()) return sendJson(req, 500, "Internal Server Error", {{"error", "getrandom"}});
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  std::string cookie =
      "SESSIONID=" + sid + "; Path=/; Max-Age=3600" + (for_scripts ? "" : "; HttpOnly");
  evhttp_add_header(headers, "Set-Cookie", cookie.c_str());
  evhttp_add_header(headers, "X-User-Id", user.c_str());
  sendJson(req, 200, "OK", {{"logged_in", user}});
}

void logout(evhttp_request* req) {
  evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie",
                    "SESSIONID=; Path=/; HttpOnly; Max-Age=0");
  sendJson(req, 200, "OK", {{"logged_out", true}});
}

// The login pages; false for any other path.
bool loginPage(evhttp_request* req) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  bool is_login = path != nullptr && strcmp(path, "/login") == 0;
  bool is_logout = path != nullptr && strcmp(path, "/logout") == 0;
  if (!is_login && !is_logout) return false;
  if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
    sendJson(req, 405, "Method Not Allowed", {{"error", "GET only"}});
  } else if (is_login) {
    login(req, evhttp_uri_get_query(uri));
  } else {
    logout(req);
  }
  return true;
}

// The page of the README's guard walk-through.
constexpr std::string_view kGuardPage = R"(<!doctype html>
<script type="module">
  import {Guard} from '/_tessera/client.js';              // served by tessera's guard plugin
  await fetch('/login?user=alice&js=1');                     // the app's login sets SESSIONID
  await Guard.init();                                        // clock offset + key agreement
  const res = await Guard.fetch('/api/orders', {method: 'POST', body: {item: 'ticket-42'}});
  document.body.textContent = `${res.status} ${await res.text()}`;   // signed; sealed reply opened
</script>
)";

bool guardPage(evhttp_request* req) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  if (path == nullptr || strcmp(path, "/guard.html") != 0) return false;
  evbuffer* body = evbuffer_new();
  evbuffer_add(body, kGuardPage.data(), kGuardPage.size());
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/html; charset=utf-8");
  evhttp_send_reply(req, 200, "OK", body);
  evbuffer_free(body);
  return true;
}

void onRequest(evhttp_request* req, void*) {
  // The benchmarks ask for "/": one byte of the target keeps them off the login pages, so their
  // answer and its cost are the echo's alone.
  const char* uri = evhttp_request_get_uri(req);
  if (uri[0] == '/' && uri[1] == 'l' && loginPage(req)) return;
  if (uri[0] == '/' && uri[1] == 'g' && guardPage(req)) return;
  echo(req);
}

int listenSocket(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (evutil_inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
      bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 4096) != 0) {
    std::cerr << "demo backend: cannot listen on " << host << ":" << port << "\n";
    exit(1);
  }
  return fd;
}

void serve(int fd) {
  event_base* base = event_base_new();
  evhttp* http = evhttp_new(base);
  evhttp_set_gencb(http, onRequest, nullptr);
  evhttp_set_allowed_methods(http, 0xffff);
  evhttp_accept_socket(http, fd);
  event_base_dispatch(base);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera demo backend: echoes requests as JSON; /login, /logout"};
  std::string host = "127.0.0.1";
  int port = 9000;
  int threads = 1;
  app.add_option("--host", host)->capture_default_str();
  app.add_option("--port", port)->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    int fd = listenSocket(host, port);
    pool.emplace_back([fd] { serve(fd); });
  }
  std::cerr << "demo backend listening on " << host << ":" << port << "\n";
  for (auto& t : pool) t.join();
}
