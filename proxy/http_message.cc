#include "proxy/http_message.h"

#include <charconv>
#include <cstring>

namespace tessera::proxy {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

HttpParser& self(llhttp_t* p) { return *static_cast<HttpParser*>(p->data); }

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, end);
}

void appendHeader(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ", 2);
  out.append(value);
  out.append("\r\n", 2);
}

// True if `name` is listed in a Connection header of `headers` (those are hop-by-hop too).
bool namedByConnection(const HeaderList& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (equalsIgnoreCase(h.name, "connection") && hasToken(h.value, name)) return true;
  }
  return false;
}

}  // namespace

Header& HeaderList::append() {
  if (size_ == slots_.size()) slots_.emplace_back();
  Header& h = slots_[size_++];
  h.name.clear();
  h.value.clear();
  return h;
}

void HeaderList::add(std::string_view name, std::string_view value) {
  Header& h = append();
  h.name.assign(name);
  h.value.assign(value);
}

const std::string* HeaderList::find(std::string_view name) const {
  for (const Header& h : *this) {
    if (equalsIgnoreCase(h.name, name)) return &h.value;
  }
  return nullptr;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool hasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    if (equalsIgnoreCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void MessageHead::clear() {
  method.clear();
  url.clear();
  status = 0;
  reason.clear();
  http_major = 1;
  http_minor = 1;
  headers.clear();
  chunked = false;
  content_length.reset();
  keep_alive = true;
}

const llhttp_settings_t* HttpParser::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = &HttpParser::onMessageBegin;
    st.on_url = &HttpParser::onUrl;
    st.on_status = &HttpParser::onStatus;
    st.on_method = &HttpParser::onMethod;
    st.on_header_field = &HttpParser::onHeaderField;
    st.on_header_value = &HttpParser::onHeaderValue;
    st.on_header_value_complete = &HttpParser::onHeaderValueComplete;
    st.on_headers_complete = &HttpParser::onHeadersComplete;
    st.on_body = &HttpParser::onBodyCb;
    st.on_message_complete = &HttpParser::onMessageCompleteCb;
    return st;
  }();
  return &s;
}

HttpParser::HttpParser(Type type, Sink& sink) : sink_(sink) {
  llhttp_init(&parser_, type == Type::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, settings());
  parser_.data = this;
}

HttpParser::Result HttpParser::feed(const char* data, size_t len) {
  Result r;
  r.error = llhttp_execute(&parser_, data, len);
  if (r.error == HPE_OK) {
    r.consumed = len;
  } else {
    const char* pos = llhttp_get_error_pos(&parser_);
    r.consumed = (pos != nullptr && pos >= data && pos <= data + len) ? pos - data : 0;
  }
  return r;
}

llhttp_errno_t HttpParser::finish() { return llhttp_finish(&parser_); }

void HttpParser::resume() {
  if (llhttp_get_errno(&parser_) == HPE_PAUSED_UPGRADE) {
    llhttp_resume_after_upgrade(&parser_);
  } else {
    llhttp_resume(&parser_);
  }
}

void HttpParser::reset() {
  llhttp_reset(&parser_);
  head_.clear();
  current_ = nullptr;
  in_value_ = false;
  in_message_ = false;
  head_bytes_ = 0;
  head_too_large_ = false;
}

bool HttpParser::countHead(size_t len) {
  head_bytes_ += len;
  if (max_head_bytes_ == 0 || head_bytes_ <= max_head_bytes_) return true;
  head_too_large_ = true;
  return false;
}

int HttpParser::onMessageBegin(llhttp_t* p) {
  HttpParser& s = self(p);
  s.head_bytes_ = 0;
  s.head_too_large_ = false;
  s.head_.clear();
  s.current_ = nullptr;
  s.in_value_ = false;
  s.in_message_ = true;
  return 0;
}

int HttpParser::onUrl(llhttp_t* p, const char* at, size_t len) {
  HttpParser& s = self(p);
  if (!s.countHead(len)) return HPE_USER;
  s.head_.url.append(at, len);
  return 0;
}

int HttpParser::onStatus(llhttp_t* p, const char* at, size_t len) {
  HttpParser& s = self(p);
  if (!s.countHead(len)) return HPE_USER;
  s.head_.reason.append(at, len);
  return 0;
}

int HttpParser::onMethod(llhttp_t* p, const char* at, size_t len) {
  HttpParser& s = self(p);
  if (!s.countHead(len)) return HPE_USER;
  s.head_.method.append(at, len);
  return 0;
}

int HttpParser::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  HttpParser& s = self(p);
  if (!s.countHead(len)) return HPE_USER;
  if (s.current_ == nullptr || s.in_value_) {
    s.current_ = &s.head_.headers.append();
    s.in_value_ = false;
  }
  s.current_->name.append(at, len);
  return 0;
}

int HttpParser::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  HttpParser& s = self(p);
  if (!s.countHead(len)) return HPE_USER;
  s.in_value_ = true;
  s.current_->value.append(at, len);
  return 0;
}

int HttpParser::onHeaderValueComplete(llhttp_t* p) {
  HttpParser& s = self(p);
  s.in_value_ = true;  // an empty value never calls onHeaderValue
  // ": " and CRLF are not reported as data; count them so the cap matches the wire.
  return s.countHead(4) ? 0 : HPE_USER;
}

int HttpParser::onHeadersComplete(llhttp_t* p) {
  HttpParser& s = self(p);
  MessageHead& h = s.head_;
  h.http_major = p->http_major;
  h.http_minor = p->http_minor;
  h.status = p->status_code;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  if ((p->flags & F_CONTENT_LENGTH) != 0) h.content_length = p->content_length;
  h.keep_alive = llhttp_should_keep_alive(p) != 0;
  return s.sink_.onHeadComplete();
}

int HttpParser::onBodyCb(llhttp_t* p, const char* at, size_t len) {
  return self(p).sink_.onBody(at, len);
}

int HttpParser::onMessageCompleteCb(llhttp_t* p) {
  HttpParser& s = self(p);
  s.in_message_ = false;
  return s.sink_.onMessageComplete();
}

bool isHopByHop(std::string_view name) {
  static constexpr std::string_view kHop[] = {
      "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
      "upgrade"};
  for (std::string_view h : kHop) {
    if (equalsIgnoreCase(name, h)) return true;
  }
  return false;
}

namespace {

// Headers of the client's request that tessera replaces with its own: the X-Forwarded-* set,
// Content-Length (framing is re-written from what llhttp parsed) and Expect (answered here).
bool isReplacedRequestHeader(std::string_view name) {
  return equalsIgnoreCase(name, "x-forwarded-for") || equalsIgnoreCase(name, "x-forwarded-proto") ||
         equalsIgnoreCase(name, "x-forwarded-host") || equalsIgnoreCase(name, "expect") ||
         equalsIgnoreCase(name, "content-length");
}

void writeForwarded(const MessageHead& req, const ForwardInfo& fwd, std::string& out) {
  const std::string* prior = fwd.trust_forwarded ? req.headers.find("x-forwarded-for") : nullptr;
  out.append("X-Forwarded-For: ");
  if (prior != nullptr && !prior->empty()) {
    out.append(*prior);
    out.append(", ");
  }
  out.append(fwd.client_ip);
  out.append("\r\n");
  appendHeader(out, "X-Forwarded-Proto", fwd.proto);
  if (const std::string* host = req.headers.find("host")) {
    appendHeader(out, "X-Forwarded-Host", *host);
  }
}

}  // namespace

void writeUpstreamRequestHead(const MessageHead& req, const ForwardInfo& fwd, std::string& out) {
  out.append(req.method);
  out.push_back(' ');
  out.append(req.url);
  out.append(" HTTP/1.1\r\n");
  bool has_connection = req.headers.find("connection") != nullptr;
  for (const Header& h : req.headers) {
    if (isHopByHop(h.name) || isReplacedRequestHeader(h.name)) continue;
    if (has_connection && namedByConnection(req.headers, h.name)) continue;
    appendHeader(out, h.name, h.value);
  }
  writeForwarded(req, fwd, out);
  if (fwd.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (fwd.content_length) {
    out.append("Content-Length: ");
    appendUint(out, *fwd.content_length);
    out.append("\r\n");
  }
  out.append("\r\n");
}

void writeClientResponseHead(const MessageHead& resp, const ResponseFraming& framing,
                             std::string& out) {
  out.append(framing.http10_client ? "HTTP/1.0 " : "HTTP/1.1 ");
  appendUint(out, static_cast<uint64_t>(resp.status));
  out.push_back(' ');
  out.append(resp.reason.empty() ? reasonPhrase(resp.status) : std::string_view(resp.reason));
  out.append("\r\n");
  bool has_connection = resp.headers.find("connection") != nullptr;
  for (const Header& h : resp.headers) {
    // Content-Length stays when the body is passed through as is (and on HEAD/304 replies).
    if (isHopByHop(h.name)) continue;
    if (framing.chunked && equalsIgnoreCase(h.name, "content-length")) continue;
    if (has_connection && namedByConnection(resp.headers, h.name)) continue;
    appendHeader(out, h.name, h.value);
  }
  if (framing.chunked) out.append("Transfer-Encoding: chunked\r\n");
  if (!framing.keep_alive) {
    out.append("Connection: close\r\n");
  } else if (framing.http10_client) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

}  // namespace tessera::proxy
