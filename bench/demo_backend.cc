// The demo backend that `make run` and the macro benchmark put behind tessera: an HTTP/1.1 server
// on libevent's evhttp that answers every request with its request line and headers as JSON.
// One event loop per thread, each on its own SO_REUSEPORT socket.

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <nlohmann/json.hpp>
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

void onRequest(evhttp_request* req, void*) {
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
  CLI::App app{"tessera demo backend: echoes the request line and headers as JSON"};
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
