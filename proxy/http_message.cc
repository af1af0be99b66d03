#include "proxy/http_message.h"

#include <event2/buffer.h>

#include <charconv>
#include <cstdio>
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

// Header names listed in the Connection headers of a message: hop-by-hop too (RFC 9110 7.6.1).
// Collected once per head, so rewriting stays linear in the number of headers.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const HeaderList& headers) {
    for (const Header& h : headers) {
      if (equalsIgnoreCase(h.name, "connection")) add(h.value);
    }
  }
  bool contains(std::string_view name) const {
    for (std::string_view t : tokens_) {
      if (equalsIgnoreCase(t, name)) return true;
    }
    return false;
  }

 private:
  void add(std::string_view list) {
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view item = trim(list.substr(0, comma));
      if (!item.empty()) tokens_.push_back(item);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  std::vector<std::string_view> tokens_;
};

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

size_t HeaderList::removeAll(std::string_view name) {
  size_t kept = 0;
  for (size_t i = 0; i < size_; ++i) {
    if (equalsIgnoreCase(slots_[i].name, name)) continue;
    if (kept != i) std::swap(slots_[kept], slots_[i]);
    ++kept;
  }
  size_t removed = size_ - kept;
  size_ = kept;
  return removed;
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
  feed_start_ = data;
  r.error = llhttp_execute(&parser_, data, len);
  if (r.error == HPE_PAUSED_UPGRADE && !in_message_) {
    // The message before asked to switch protocols (Upgrade, CONNECT). tessera never forwards
    // that, so no switch happened and what follows is the next message, in HTTP/1.1.
    const char* pos = llhttp_get_error_pos(&parser_);
    if (pos == nullptr || pos < data || pos > data + len) pos = data;
    llhttp_resume_after_upgrade(&parser_);
    r.error = llhttp_execute(&parser_, pos, len - static_cast<size_t>(pos - data));
  }
  if (r.error == HPE_OK) {
    r.consumed = len;
  } else {
    const char* pos = llhttp_get_error_pos(&parser_);
    r.consumed = (pos != nullptr && pos >= data && pos <= data + len) ? pos - data : 0;
  }
  size_t i = r.consumed;
  while (i > 0 && (data[i - 1] == ' ' || data[i - 1] == '\t')) --i;
  if (i > 0) fed_lf_then_blank_ = data[i - 1] == '\n';  // else all blank: it stays as it was
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
  rejection_ = nullptr;
  fed_lf_then_blank_ = false;
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
  s.rejection_ = nullptr;
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
  // llhttp keeps whitespace before the colon in the name ("Host : x"); RFC 9112 5.1 says reject,
  // or "Host " would slip past every check that looks for "host".
  for (size_t i = 0; i < len; ++i) {
    if (at[i] == ' ' || at[i] == '\t') {
      s.rejection_ = "whitespace in a header name";
      return HPE_USER;
    }
  }
  s.current_->name.append(at, len);
  return 0;
}

int HttpParser::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  HttpParser& s = self(p);
  if (!s.countHead(len)) return HPE_USER;
  // A value span that starts after a line feed and blanks is an obs-fold continuation line
  // (llhttp unfolds them silently: after a non-empty first line the span starts right after the
  // line feed, after an empty one past the blanks); RFC 9112 5.2 lets a server reject it, and a
  // proxy should, so that tessera and the backend can never read the header differently.
  const char* q = at;
  while (q > s.feed_start_ && (q[-1] == ' ' || q[-1] == '\t')) --q;
  bool after_lf = q > s.feed_start_ ? q[-1] == '\n' : s.fed_lf_then_blank_;
  if (len > 0 && after_lf) {  // (an empty value comes as a 0-byte span after its CRLF)
    s.rejection_ = "obs-fold (header continuation line)";
    return HPE_USER;
  }
  s.in_value_ = true;
  s.current_->value.append(at, len);
  return 0;
}

int HttpParser::onHeaderValueComplete(llhttp_t* p) {
  HttpParser& s = self(p);
  s.in_value_ = true;  // an empty value never calls onHeaderValue
  if (s.current_ != nullptr) {
    std::string& v = s.current_->value;  // llhttp keeps trailing whitespace: drop it
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
  }
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
  static constexpr std::string_view kHop[] = {"connection", "keep-alive", "proxy-connection",
                                              "te",         "trailer",    "transfer-encoding",
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

void writeForwarded(const MessageHead& req, const ForwardInfo& fwd, std::string_view host,
                    std::string& out) {
  out.append("X-Forwarded-For: ");
  if (fwd.trust_forwarded) {  // every hop the client's side already recorded, in order
    for (const Header& h : req.headers) {
      if (!equalsIgnoreCase(h.name, "x-forwarded-for") || h.value.empty()) continue;
      out.append(h.value);
      out.append(", ");
    }
  }
  out.append(fwd.client_ip);
  out.append("\r\n");
  appendHeader(out, "X-Forwarded-Proto", fwd.proto);
  if (!host.empty()) appendHeader(out, "X-Forwarded-Host", host);
}

}  // namespace

void writeUpstreamRequestHead(const MessageHead& req, const ForwardInfo& fwd, std::string& out) {
  // An absolute-form target ("GET http://host/path") names the host itself; RFC 9112 3.2.2 says
  // it overrides Host. Backends get origin-form and a Host that agrees with the routing.
  AbsoluteTarget abs = splitAbsoluteForm(req.url);
  const std::string* host_header = req.headers.find("host");
  std::string_view host =
      abs.absolute ? abs.authority : (host_header ? std::string_view(*host_header) : "");
  out.append(req.method);
  out.push_back(' ');
  out.append(abs.absolute ? std::string_view(abs.path) : std::string_view(req.url));
  out.append(" HTTP/1.1\r\n");
  ConnectionTokens listed(req.headers);
  for (const Header& h : req.headers) {
    if (isHopByHop(h.name) || isReplacedRequestHeader(h.name)) continue;
    bool is_host = equalsIgnoreCase(h.name, "host");
    if (is_host && abs.absolute) continue;
    if (!is_host && listed.contains(h.name)) continue;
    appendHeader(out, h.name, h.value);
  }
  if (abs.absolute) appendHeader(out, "Host", abs.authority);
  writeForwarded(req, fwd, host, out);
  if (fwd.chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (fwd.content_length) {
    out.append("Content-Length: ");
    appendUint(out, *fwd.content_length);
    out.append("\r\n");
  }
  out.append("\r\n");
}

AbsoluteTarget splitAbsoluteForm(std::string_view url) {
  AbsoluteTarget t;
  size_t scheme = url.find("://");
  if (url.empty() || url[0] == '/' || scheme == std::string_view::npos) return t;
  std::string_view rest = url.substr(scheme + 3);
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);  // userinfo is never forwarded
  }
  t.absolute = true;
  t.authority = authority;
  // "http://h?q" has an empty path: origin-form needs the "/" (RFC 9112 3.2.1).
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (tail.empty() || tail.front() != '/') t.path.push_back('/');
  t.path.append(tail);
  return t;
}

void writeClientResponseHead(const MessageHead& resp, const ResponseFraming& framing,
                             std::string& out) {
  out.append(framing.http10_client ? "HTTP/1.0 " : "HTTP/1.1 ");
  appendUint(out, static_cast<uint64_t>(resp.status));
  out.push_back(' ');
  out.append(resp.reason.empty() ? reasonPhrase(resp.status) : std::string_view(resp.reason));
  out.append("\r\n");
  ConnectionTokens listed(resp.headers);
  for (const Header& h : resp.headers) {
    // Content-Length stays when the body is passed through as is (and on HEAD/304 replies).
    if (isHopByHop(h.name)) continue;
    if (framing.chunked && equalsIgnoreCase(h.name, "content-length")) continue;
    if (listed.contains(h.name)) continue;
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

size_t appendChunk(evbuffer* out, const char* data, size_t len) {
  char size_line[24];
  int n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
  evbuffer_add(out, size_line, static_cast<size_t>(n));
  evbuffer_add(out, data, len);
  evbuffer_add(out, "\r\n", 2);
  return static_cast<size_t>(n) + len + 2;
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

}  // namespace tessera::proxy
