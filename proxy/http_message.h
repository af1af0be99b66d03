#pragma once

// HTTP/1.1 message heads and the llhttp-based parser that fills them.
//
// Threading: every object here belongs to one connection on one worker; nothing is shared.
// Ownership: a MessageHead owns copies of the bytes llhttp hands out, so a head stays valid after
// the read buffer it came from is drained. Slots are reused between messages on a connection, so
// a keep-alive connection stops allocating after its first requests.

#include <llhttp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct evbuffer;

namespace tessera::proxy {

struct Header {
  std::string name;
  std::string value;
};

// A header list that keeps its strings' capacity across clear().
class HeaderList {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const Header& operator[](size_t i) const { return slots_[i]; }
  Header& operator[](size_t i) { return slots_[i]; }
  const Header* begin() const { return slots_.data(); }
  const Header* end() const { return slots_.data() + size_; }

  Header& append();  // a new empty slot
  void add(std::string_view name, std::string_view value);
  void clear() { size_ = 0; }
  // Removes every header named `name` (case-insensitive) in place, keeping the others' order and
  // every slot's capacity. Returns how many went.
  size_t removeAll(std::string_view name);
  // First value of a header, case-insensitive name match; nullptr if absent.
  const std::string* find(std::string_view name) const;

 private:
  std::vector<Header> slots_;
  size_t size_ = 0;
};

bool equalsIgnoreCase(std::string_view a, std::string_view b);
// True if a comma-separated header value contains `token` (case-insensitive).
bool hasToken(std::string_view list, std::string_view token);

struct MessageHead {
  // Request line.
  std::string method;
  std::string url;
  // Status line.
  int status = 0;
  std::string reason;

  int http_major = 1;
  int http_minor = 1;
  HeaderList headers;

  // Framing, as llhttp understood it.
  bool chunked = false;
  std::optional<uint64_t> content_length;
  bool keep_alive = true;

  void clear();
};

// Wraps one llhttp parser. The owner gets three events through Sink; everything else (URL,
// headers) is collected into head().
class HttpParser {
 public:
  class Sink {
   public:
    virtual ~Sink() = default;
    // Return 0 to go on, 1 for "this message has no body" (HEAD responses), or HPE_PAUSED to
    // stop llhttp right after the head (feed() then returns HPE_PAUSED).
    virtual int onHeadComplete() = 0;
    virtual int onBody(const char* data, size_t len) = 0;  // 0 or -1 (error)
    // Return 0 to go on with a following message, HPE_PAUSED to stop after this one.
    virtual int onMessageComplete() = 0;
  };

  enum class Type { kRequest, kResponse };

  struct Result {
    llhttp_errno_t error = HPE_OK;
    size_t consumed = 0;  // bytes of the input that llhttp used
  };

  HttpParser(Type type, Sink& sink);
  HttpParser(const HttpParser&) = delete;
  HttpParser& operator=(const HttpParser&) = delete;

  Result feed(const char* data, size_t len);
  // The peer closed: completes a read-until-close message.
  llhttp_errno_t finish();
  void resume();  // after HPE_PAUSED
  // From inside on_headers_complete, before returning HPE_PAUSED: when resumed, treat the message
  // as bodiless (what returning 1 does without a pause; a response to HEAD).
  void skipBodyOnResume() { parser_.flags |= F_SKIPBODY; }
  void reset();  // start over (a fresh message; the head is cleared)

  MessageHead& head() { return head_; }
  const MessageHead& head() const { return head_; }
  bool messageNeedsEof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  bool shouldKeepAlive() const { return llhttp_should_keep_alive(&parser_) != 0; }
  uint8_t methodCode() const { return parser_.method; }
  const char* errorReason() const { return llhttp_get_error_reason(&parser_); }
  // True once a message has begun (some byte of it was parsed).
  bool inMessage() const { return in_message_; }
  // Caps the bytes of a message head (request or status line plus headers). Past it the parser
  // stops with an error and headTooLarge() is true. 0 = no cap.
  void setMaxHeadBytes(uint64_t max) { max_head_bytes_ = max; }
  bool headTooLarge() const { return head_too_large_; }
  // Why the last feed() failed, when it was a check of ours rather than llhttp's own.
  const char* rejection() const { return rejection_; }

 private:
  static int onMessageBegin(llhttp_t* p);
  static int onUrl(llhttp_t* p, const char* at, size_t len);
  static int onStatus(llhttp_t* p, const char* at, size_t len);
  static int onMethod(llhttp_t* p, const char* at, size_t len);
  static int onHeaderField(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersComplete(llhttp_t* p);
  static int onBodyCb(llhttp_t* p, const char* at, size_t len);
  static int onMessageCompleteCb(llhttp_t* p);
  static const llhttp_settings_t* settings();

  llhttp_t parser_;
  Sink& sink_;
  MessageHead head_;
  Header* current_ = nullptr;
  bool in_value_ = false;
  bool in_message_ = false;
  const char* feed_start_ = nullptr;
  // The bytes fed so far end with a line feed and then only spaces or tabs (maybe none).
  bool fed_lf_then_blank_ = false;
  const char* rejection_ = nullptr;
  uint64_t max_head_bytes_ = 0;
  uint64_t head_bytes_ = 0;
  bool head_too_large_ = false;

  // Counts head bytes as llhttp hands them out; false once over the cap.
  bool countHead(size_t len);
};

// What the proxy adds to a request it forwards.
struct ForwardInfo {
  std::string_view client_ip;
  std::string_view proto;  // "https" or "http"
  bool trust_forwarded = false;
  // Body framing towards the upstream. Set from the request by the caller.
  bool chunked = false;
  std::optional<uint64_t> content_length;
};

// A request target in absolute-form ("http://host:port/path?q"), split. `absolute` is false for
// origin-form ("/path"), and then the other fields are empty.
struct AbsoluteTarget {
  bool absolute = false;
  std::string_view authority;  // host[:port], userinfo removed
  std::string path;            // origin-form "/..."
};
AbsoluteTarget splitAbsoluteForm(std::string_view url);

// Hop-by-hop headers (RFC 9110 7.6.1): never forwarded in either direction.
bool isHopByHop(std::string_view name);

// Writes the request head sent upstream: request line as HTTP/1.1, the client's end-to-end headers
// (hop-by-hop ones and those named in Connection removed, Expect removed because tessera answers
// 100-continue itself), X-Forwarded-For/-Proto/-Host, and the body framing in `fwd`.
void writeUpstreamRequestHead(const MessageHead& req, const ForwardInfo& fwd, std::string& out);

struct ResponseFraming {
  bool no_body = false;    // HEAD request, 1xx, 204, 304
  bool chunked = false;    // re-chunk the body for the client
  bool keep_alive = true;  // else "Connection: close"
  bool http10_client = false;
};

// Writes the response head sent to the client: status line, the upstream's end-to-end headers and
// the framing chosen by the caller.
void writeClientResponseHead(const MessageHead& resp, const ResponseFraming& framing,
                             std::string& out);

std::string_view reasonPhrase(int status);

// Appends `len` bytes to `out` as one chunk of a chunked body ("<hex len>\r\n" data "\r\n").
// Returns the bytes appended.
size_t appendChunk(evbuffer* out, const char* data, size_t len);

}  // namespace tessera::proxy
