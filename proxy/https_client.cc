#include "proxy/https_client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <stdexcept>
#include <utility>

namespace tessera::proxy {

namespace {

struct EventFree {
  void operator()(event* e) const { event_free(e); }
};
using EventPtr = std::unique_ptr<event, EventFree>;

struct UriFree {
  void operator()(evhttp_uri* u) const { evhttp_uri_free(u); }
};

struct RequestFree {
  void operator()(evhttp_request* r) const { evhttp_request_free(r); }
};

timeval toTimeval(std::chrono::milliseconds ms) {
  if (ms.count() < 0) ms = std::chrono::milliseconds(0);
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>(ms.count() % 1000 * 1000)};
}

[[noreturn]] void throwFileError(const std::string& file, const std::string& what) {
  std::string errors = opensslErrors();
  throw std::runtime_error(file + ": " + what + (errors.empty() ? "" : ": " + errors));
}

SslCtxPtr newClientContext(const ClientTlsFiles& files) {
  if (files.ca.empty()) throw std::runtime_error("https client: a CA file is required");
  if (files.client_cert.empty() != files.client_key.empty()) {
    throw std::runtime_error("https client: client_cert and client_key go together");
  }
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw std::runtime_error("https client: SSL_CTX_new failed: " + opensslErrors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // Only the given CA: the peer is another tessera cluster, never a site vouched for by a public
  // root.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx.get(), files.ca.c_str(), nullptr) != 1) {
    throwFileError(files.ca, "cannot load CA certificates");
  }
  if (files.client_cert.empty()) return ctx;
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.client_cert.c_str()) != 1) {
    throwFileError(files.client_cert, "cannot load client certificate");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), files.client_key.c_str(), SSL_FILETYPE_PEM) != 1) {
    throwFileError(files.client_key, "cannot load client key");
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    throwFileError(files.client_key, "key does not match certificate " + files.client_cert);
  }
  return ctx;
}

// Where a URL points.
struct Target {
  std::string host;  // an IPv6 literal without its brackets
  bool is_ip = false;
  int port = 443;
  std::string path;         // path and query; "/" at least
  std::string host_header;  // the Host header's value
};

// Empty on success, else why the URL is refused.
std::string parseUrl(std::string_view url, Target& out) {
  std::unique_ptr<evhttp_uri, UriFree> uri(
      evhttp_uri_parse_with_flags(std::string(url).c_str(), 0));
  if (!uri) return "bad URL";
  const char* scheme = evhttp_uri_get_scheme(uri.get());
  if (scheme == nullptr || evutil_ascii_strcasecmp(scheme, "https") != 0) {
    return "not an https URL";
  }
  // Credentials in a URL would be sent nowhere; refuse them rather than drop them quietly.
  if (evhttp_uri_get_userinfo(uri.get()) != nullptr) return "credentials in URL";
  const char* host = evhttp_uri_get_host(uri.get());
  if (host == nullptr || *host == '\0') return "no host in URL";
  out.host = host;
  if (out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  unsigned char addr[16];
  out.is_ip = evutil_inet_pton(AF_INET, out.host.c_str(), addr) == 1 ||
              evutil_inet_pton(AF_INET6, out.host.c_str(), addr) == 1;
  int port = evhttp_uri_get_port(uri.get());
  if (port == 0 || port > 65535) return "bad port in URL";
  out.port = port < 0 ? 443 : port;
  const char* path = evhttp_uri_get_path(uri.get());
  out.path = path != nullptr && *path != '\0' ? path : "/";
  if (const char* query = evhttp_uri_get_query(uri.get()); query != nullptr) {
    out.path += "?";
    out.path += query;
  }
  bool v6 = out.host.find(':') != std::string::npos;
  out.host_header = v6 ? "[" + out.host + "]" : out.host;
  if (out.port != 443) out.host_header += ":" + std::to_string(out.port);
  return {};
}

// Makes the handshake check that the certificate names the host we meant to reach.
bool expectPeer(SSL* ssl, const Target& target) {
  if (target.is_ip) {
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), target.host.c_str()) == 1;
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set_tlsext_host_name(ssl, target.host.c_str()) == 1 &&
         SSL_set1_host(ssl, target.host.c_str()) == 1;
}

// A connection that will check the server against `target`; null, with `error` set, on failure.
evhttp_connection* openConnection(event_base* base, evdns_base* dns, SSL_CTX* ctx,
                                  const Target& target, std::string& error) {
  SslPtr ssl(SSL_new(ctx));
  if (!ssl || !expectPeer(ssl.get(), target)) {
    error = "TLS setup failed: " + opensslErrors();
    return nullptr;
  }
  // From here the bufferevent owns the SSL and the connection owns the bufferevent. Each can fail
  // only out of memory, where libevent releases differ on what they free; a leak then is the
  // lesser harm than a double free.
  bufferevent* bev =
      bufferevent_openssl_socket_new(base, -1, ssl.release(), BUFFEREVENT_SSL_CONNECTING,
                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  if (bev == nullptr) {
    error = "cannot create a TLS connection";
    return nullptr;
  }
  evhttp_connection* conn = evhttp_connection_base_bufferevent_new(
      base, dns, bev, target.host.c_str(), static_cast<uint16_t>(target.port));
  if (conn == nullptr) {
    error = "cannot create an HTTP connection";
    return nullptr;
  }
  evhttp_connection_set_max_headers_size(conn, HttpsClient::kMaxReplyHead);
  evhttp_connection_set_max_body_size(conn, HttpsClient::kMaxReplyBody);
  return conn;
}

using RequestPtr = std::unique_ptr<evhttp_request, RequestFree>;

// A POST for `target`, not sent yet; null if `content_type` cannot be a header value.
RequestPtr newRequest(const Target& target, std::string_view body, std::string_view content_type,
                      void (*done)(evhttp_request*, void*), void* arg) {
  RequestPtr req(evhttp_request_new(done, arg));
  if (!req) return req;
  evkeyvalq* headers = evhttp_request_get_output_headers(req.get());
  evhttp_add_header(headers, "Host", target.host_header.c_str());
  // evhttp_add_header refuses a value with CR or LF in it: no header injection by the caller.
  if (evhttp_add_header(headers, "Content-Type", std::string(content_type).c_str()) != 0) {
    return nullptr;
  }
  evhttp_add_header(headers, "Connection", "close");
  evbuffer_add(evhttp_request_get_output_buffer(req.get()), body.data(), body.size());
  return req;
}

const char* errorName(evhttp_request_error error) {
  switch (error) {
    case EVREQ_HTTP_TIMEOUT:
      return "timeout";
    case EVREQ_HTTP_EOF:
      return "connection closed";
    case EVREQ_HTTP_INVALID_HEADER:
      return "invalid reply";
    case EVREQ_HTTP_BUFFER_ERROR:
      return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL:
      return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
      return "reply too large";
  }
  return "failed";
}

void appendDetail(std::string& out, std::string_view detail) {
  if (!out.empty()) out += "; ";
  out += detail;
}

// What the layers below HTTP know of a failure: a certificate that did not verify, TLS errors
// (the peer's alert among them), a failed lookup, or else the socket error.
std::string transportDetail(evhttp_connection* conn, int socket_error) {
  std::string detail;
  bufferevent* bev = conn != nullptr ? evhttp_connection_get_bufferevent(conn) : nullptr;
  if (bev == nullptr) return detail;
  if (SSL* ssl = bufferevent_openssl_get_ssl(bev); ssl != nullptr) {
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      appendDetail(detail, std::string("certificate verify failed: ") +
                               X509_verify_cert_error_string(verify));
    }
  }
  for (unsigned long e = bufferevent_get_openssl_error(bev); e != 0;
       e = bufferevent_get_openssl_error(bev)) {
    // libevent also queues SSL_get_error() codes here (library 0); errno says more than those.
    if (ERR_GET_LIB(e) == 0) continue;
    const char* reason = ERR_reason_error_string(e);
    char buf[256];
    if (reason == nullptr) ERR_error_string_n(e, buf, sizeof(buf));
    std::string_view text = reason != nullptr ? reason : buf;
    if (detail.find(text) == std::string::npos) appendDetail(detail, text);
  }
  if (int dns = bufferevent_socket_get_dns_error(bev); dns != 0) {
    appendDetail(detail, std::string("lookup failed: ") + evutil_gai_strerror(dns));
  }
  // errno is only worth reporting when nothing above explains the failure; a retriable value is
  // left over from an earlier read or write, not the cause.
  if (detail.empty() && socket_error != 0 && socket_error != EAGAIN &&
      socket_error != EINPROGRESS && socket_error != EINTR) {
    appendDetail(detail, evutil_socket_error_to_string(socket_error));
  }
  return detail;
}

}  // namespace

struct HttpsClient::Call {
  HttpsClient* client = nullptr;
  CallId id = 0;
  Callback callback;
  // Open while the request runs. Freeing it drops the request without calling back.
  ConnectionPtr conn;
  EventPtr deadline;
  bool finished = false;  // `reply` is final and waits for deliver_ev_
  Reply reply;
  std::string failure;  // what onRequestError saw, for the request callback that follows it
};

void HttpsClient::ConnectionFree::operator()(evhttp_connection* c) const {
  evhttp_connection_free(c);
}

HttpsClient::HttpsClient(event_base* base, const ClientTlsFiles& files,
                         const std::string& resolv_conf)
    : base_(base), ctx_(newClientContext(files)) {
  // Without DISABLE_WHEN_INACTIVE the resolver's sockets would keep event_base_dispatch() from
  // ever returning, even with nothing to resolve.
  dns_ = evdns_base_new(base_, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
  if (dns_ == nullptr) throw std::runtime_error("https client: cannot create a DNS resolver");
  // 1 (no such file) and 6 (no name servers in it) leave libevent's default, a resolver on
  // 127.0.0.1, as the C library does. Anything else is a file we could not read.
  int rc = evdns_base_resolv_conf_parse(dns_, DNS_OPTIONS_ALL, resolv_conf.c_str());
  if (rc != 0 && rc != 1 && rc != 6) {
    evdns_base_free(dns_, 0);
    throw std::runtime_error(resolv_conf + ": cannot read resolver configuration (evdns error " +
                             std::to_string(rc) + ")");
  }
  deliver_ev_ = event_new(base_, -1, 0, &HttpsClient::onDeliver, this);
}

HttpsClient::~HttpsClient() {
  alive_.reset();
  calls_.clear();  // frees each open connection with its request; no callback runs
  retired_.clear();
  event_free(deliver_ev_);
  // Lookups still running belong to connections freed above; failing them lets libevent release
  // what it holds for them.
  evdns_base_free(dns_, 1);
}

HttpsClient::CallId HttpsClient::post(std::string_view url, std::string_view body,
                                      std::string_view content_type,
                                      std::chrono::milliseconds timeout, Callback callback) {
  auto owned = std::make_unique<Call>();
  Call& call = *owned;
  call.client = this;
  call.id = next_id_++;
  call.callback = std::move(callback);
  calls_.emplace(call.id, std::move(owned));
  std::string error = start(call, url, body, content_type, timeout);
  if (!error.empty()) finish(call, Reply{0, {}, std::move(error)});
  return call.id;
}

// Empty once the request is under way (or already over: libevent may fail it synchronously);
// otherwise why it could not start.
std::string HttpsClient::start(Call& call, std::string_view url, std::string_view body,
                               std::string_view content_type, std::chrono::milliseconds timeout) {
  Target target;
  if (std::string error = parseUrl(url, target); !error.empty()) return error;
  std::string error;
  call.conn.reset(openConnection(base_, dns_, ctx_.get(), target, error));
  if (!call.conn) return error;
  RequestPtr req = newRequest(target, body, content_type, &HttpsClient::onRequestDone, &call);
  if (!req) return "bad content type";
  evhttp_request_set_error_cb(req.get(), &HttpsClient::onRequestError);

  timeval tv = toTimeval(timeout);
  call.deadline.reset(evtimer_new(base_, &HttpsClient::onDeadline, &call));
  evtimer_add(call.deadline.get(), &tv);
  // The request belongs to the connection from here, even when it fails at once. Only out of
  // memory does evhttp_make_request return -1, and then who frees the request differs between
  // libevent releases: leak it rather than free it twice.
  if (evhttp_make_request(call.conn.get(), req.release(), EVHTTP_REQ_POST, target.path.c_str()) !=
      0) {
    return "cannot send the request";
  }
  return {};
}

void HttpsClient::finish(Call& call, Reply reply) {
  if (call.finished) return;
  call.finished = true;
  call.reply = std::move(reply);
  call.deadline.reset();
  // We may be inside one of the connection's callbacks, and libevent goes on using the connection
  // after that returns; deliver_ev_ frees it.
  if (call.conn) retired_.push_back(std::move(call.conn));
  finished_.push_back(call.id);
  event_active(deliver_ev_, 0, 0);
}

void HttpsClient::onRequestError(evhttp_request_error error, void* arg) {
  auto* call = static_cast<Call*>(arg);
  int socket_error = EVUTIL_SOCKET_ERROR();  // libevent restores it for this callback
  call->failure = errorName(error);
  std::string detail = transportDetail(call->conn.get(), socket_error);
  if (!detail.empty()) call->failure += ": " + detail;
}

void HttpsClient::onRequestDone(evhttp_request* req, void* arg) {
  auto* call = static_cast<Call*>(arg);
  if (call->finished) return;
  Reply reply;
  reply.status = req != nullptr ? evhttp_request_get_response_code(req) : 0;
  if (reply.status == 0) {
    // libevent reports a failed connection with no request, or with one that has no reply; the
    // error callback, when it ran first, said how. Without it (refused or reset while
    // connecting), libevent has closed the socket since, so errno no longer tells why.
    if (!call->failure.empty()) {
      reply.error = std::move(call->failure);
    } else {
      std::string detail = transportDetail(call->conn.get(), 0);
      reply.error = detail.empty() ? "connection failed" : "connection failed: " + detail;
    }
  } else {
    evbuffer* in = evhttp_request_get_input_buffer(req);
    reply.body.resize(evbuffer_get_length(in));
    evbuffer_copyout(in, reply.body.data(), reply.body.size());
  }
  call->client->finish(*call, std::move(reply));
}

void HttpsClient::onDeadline(evutil_socket_t, short, void* arg) {
  auto* call = static_cast<Call*>(arg);
  // A timer is outside the connection's own callbacks, so it can be freed right away; that drops
  // the request without calling back.
  call->conn.reset();
  call->client->finish(*call, Reply{0, {}, "timeout"});
}

void HttpsClient::cancel(CallId id) {
  // Callers run from deliver_ev_ or from other events, never inside this client's connection
  // callbacks (those call no user code), so erasing the call may free its connection at once.
  calls_.erase(id);
}

void HttpsClient::onDeliver(evutil_socket_t, short, void* arg) {
  static_cast<HttpsClient*>(arg)->deliverFinished();
}

void HttpsClient::deliverFinished() {
  retired_.clear();  // no connection callback is on the stack here
  std::vector<CallId> ready;
  ready.swap(finished_);
  std::weak_ptr<bool> alive = alive_;
  for (CallId id : ready) {
    auto it = calls_.find(id);
    if (it == calls_.end()) continue;  // cancelled after it finished
    std::unique_ptr<Call> call = std::move(it->second);
    calls_.erase(it);
    try {
      call->callback(std::move(call->reply));
    } catch (const std::exception& e) {
      spdlog::error("https client: a callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("https client: a callback threw");
    }
    if (alive.expired()) return;  // the callback destroyed the client: deliver nothing more
  }
}

}  // namespace tessera::proxy
