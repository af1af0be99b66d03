// HeaderList, the token helpers and HttpParser (llhttp 8.1 as packaged): heads, bodies, pausing,
// the head size cap, and the malformed inputs the proxy relies on llhttp to refuse.

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "proxy/http_message.h"

namespace tessera::proxy {
namespace {

// Records what the parser reports; the return values of the callbacks are configurable.
struct RecordingSink : HttpParser::Sink {
  int onHeadComplete() override {
    ++heads;
    return head_result;
  }
  int onBody(const char* data, size_t len) override {
    body.append(data, len);
    return 0;
  }
  int onMessageComplete() override {
    ++messages;
    return pause_on_complete ? HPE_PAUSED : 0;
  }

  int head_result = 0;
  bool pause_on_complete = false;
  int heads = 0;
  int messages = 0;
  std::string body;
};

HttpParser::Result feedAll(HttpParser& parser, std::string_view input) {
  return parser.feed(input.data(), input.size());
}

// Feeds one byte per call; stops at the first error. `consumed` adds up over the calls.
HttpParser::Result feedBytewise(HttpParser& parser, std::string_view input) {
  HttpParser::Result total;
  for (char c : input) {
    HttpParser::Result r = parser.feed(&c, 1);
    total.consumed += r.consumed;
    total.error = r.error;
    if (r.error != HPE_OK) break;
  }
  return total;
}

void expectSameHead(const MessageHead& a, const MessageHead& b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.url, b.url);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.http_major, b.http_major);
  EXPECT_EQ(a.http_minor, b.http_minor);
  EXPECT_EQ(a.chunked, b.chunked);
  EXPECT_EQ(a.content_length, b.content_length);
  EXPECT_EQ(a.keep_alive, b.keep_alive);
  ASSERT_EQ(a.headers.size(), b.headers.size());
  for (size_t i = 0; i < a.headers.size(); ++i) {
    EXPECT_EQ(a.headers[i].name, b.headers[i].name) << "header " << i;
    EXPECT_EQ(a.headers[i].value, b.headers[i].value) << "header " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// HeaderList and helpers

TEST(HeaderListTest, FindIsCaseInsensitiveAndReturnsFirstValue) {
  HeaderList headers;
  headers.add("Content-Type", "text/plain");
  headers.add("X-Dup", "first");
  headers.add("x-dup", "second");

  ASSERT_NE(headers.find("content-type"), nullptr);
  EXPECT_EQ(*headers.find("content-type"), "text/plain");
  ASSERT_NE(headers.find("CONTENT-TYPE"), nullptr);
  EXPECT_EQ(*headers.find("CONTENT-TYPE"), "text/plain");
  ASSERT_NE(headers.find("X-DUP"), nullptr);
  EXPECT_EQ(*headers.find("X-DUP"), "first");
  EXPECT_EQ(headers.find("content"), nullptr);
  EXPECT_EQ(headers.find("content-type2"), nullptr);
}

TEST(HeaderListTest, ClearHidesOldEntriesAndReusesSlots) {
  HeaderList headers;
  headers.add("A-Rather-Long-Header-Name", "a value that does not fit in the small buffer");
  headers.add("B", "2");
  const Header* first_slot = &headers[0];
  size_t name_capacity = headers[0].name.capacity();
  size_t value_capacity = headers[0].value.capacity();

  headers.clear();
  EXPECT_EQ(headers.size(), 0u);
  EXPECT_TRUE(headers.empty());
  EXPECT_EQ(headers.begin(), headers.end());
  EXPECT_EQ(headers.find("b"), nullptr);

  Header& slot = headers.append();
  EXPECT_EQ(&slot, first_slot);  // same object, not a new allocation
  EXPECT_TRUE(slot.name.empty());
  EXPECT_TRUE(slot.value.empty());
  EXPECT_GE(slot.name.capacity(), name_capacity);
  EXPECT_GE(slot.value.capacity(), value_capacity);
  slot.name = "C";
  slot.value = "3";
  EXPECT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers.find("b"), nullptr);  // the old second slot stays hidden
  ASSERT_NE(headers.find("c"), nullptr);
  EXPECT_EQ(*headers.find("c"), "3");
  EXPECT_EQ(headers.end() - headers.begin(), 1);
}

TEST(EqualsIgnoreCaseTest, ComparesAsciiLettersOnly) {
  EXPECT_TRUE(equalsIgnoreCase("Content-Length", "content-LENGTH"));
  EXPECT_TRUE(equalsIgnoreCase("", ""));
  EXPECT_FALSE(equalsIgnoreCase("host", "hosts"));
  EXPECT_FALSE(equalsIgnoreCase("host", "hist"));
  // '@' and '`', '[' and '{' differ by 0x20 but are not letters.
  EXPECT_FALSE(equalsIgnoreCase("@", "`"));
  EXPECT_FALSE(equalsIgnoreCase("[", "{"));
}

TEST(HasTokenTest, FindsTrimmedCaseInsensitiveItems) {
  EXPECT_TRUE(hasToken("close", "close"));
  EXPECT_TRUE(hasToken("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(hasToken(" \tClose\t , x", "close"));
  EXPECT_TRUE(hasToken("a,,b", "b"));
  EXPECT_FALSE(hasToken("closed", "close"));
  EXPECT_FALSE(hasToken("keep-alive, upgraded", "upgrade"));
  EXPECT_FALSE(hasToken("", "close"));
  EXPECT_FALSE(hasToken("clo se", "close"));
}

TEST(IsHopByHopTest, ListsRfc9110Headers) {
  for (std::string_view name : {"Connection", "KEEP-ALIVE", "proxy-connection", "TE", "Trailer",
                                "Transfer-Encoding", "upgrade"}) {
    EXPECT_TRUE(isHopByHop(name)) << name;
  }
  for (std::string_view name : {"Content-Length", "Host", "Trailers", "Proxy-Authorization", ""}) {
    EXPECT_FALSE(isHopByHop(name)) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

constexpr std::string_view kPostRequest =
    "POST /submit?x=1 HTTP/1.1\r\n"
    "Host: Example.com:8443\r\n"
    "User-Agent: test\r\n"
    "Content-Length: 5\r\n"
    "X-Empty:\r\n"
    "\r\n"
    "hello";

TEST(HttpParserRequestTest, ParsesWholeRequest) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  HttpParser::Result r = feedAll(parser, kPostRequest);

  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_EQ(r.consumed, kPostRequest.size());
  const MessageHead& h = parser.head();
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(parser.methodCode(), HTTP_POST);
  EXPECT_EQ(h.url, "/submit?x=1");
  EXPECT_EQ(h.http_major, 1);
  EXPECT_EQ(h.http_minor, 1);
  ASSERT_EQ(h.headers.size(), 4u);
  EXPECT_EQ(h.headers[0].name, "Host");
  EXPECT_EQ(h.headers[0].value, "Example.com:8443");
  EXPECT_EQ(h.headers[1].name, "User-Agent");
  EXPECT_EQ(h.headers[1].value, "test");
  EXPECT_EQ(h.headers[2].name, "Content-Length");
  EXPECT_EQ(h.headers[2].value, "5");
  EXPECT_EQ(h.headers[3].name, "X-Empty");
  EXPECT_EQ(h.headers[3].value, "");
  EXPECT_FALSE(h.chunked);
  EXPECT_EQ(h.content_length, 5u);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(sink.heads, 1);
  EXPECT_EQ(sink.messages, 1);
  EXPECT_EQ(sink.body, "hello");
  EXPECT_FALSE(parser.inMessage());
}

TEST(HttpParserRequestTest, BytewiseGivesSameHeadAndBody) {
  RecordingSink whole_sink;
  HttpParser whole(HttpParser::Type::kRequest, whole_sink);
  ASSERT_EQ(feedAll(whole, kPostRequest).error, HPE_OK);

  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  HttpParser::Result r = feedBytewise(parser, kPostRequest);
  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_EQ(r.consumed, kPostRequest.size());
  expectSameHead(parser.head(), whole.head());
  EXPECT_EQ(sink.body, "hello");
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserRequestTest, InMessageWhileHeadIsIncomplete) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  EXPECT_FALSE(parser.inMessage());
  ASSERT_EQ(feedAll(parser, "GET / HTTP/1.1\r\nHo").error, HPE_OK);
  EXPECT_TRUE(parser.inMessage());
  EXPECT_EQ(sink.heads, 0);
  ASSERT_EQ(feedAll(parser, "st: a\r\n\r\n").error, HPE_OK);
  EXPECT_FALSE(parser.inMessage());
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserRequestTest, Http10KeepAliveFollowsConnectionHeader) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  ASSERT_EQ(feedAll(parser, "GET / HTTP/1.0\r\n\r\n").error, HPE_OK);
  EXPECT_EQ(parser.head().http_minor, 0);
  EXPECT_FALSE(parser.head().keep_alive);

  parser.reset();
  ASSERT_EQ(feedAll(parser, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").error, HPE_OK);
  EXPECT_TRUE(parser.head().keep_alive);

  parser.reset();
  ASSERT_EQ(feedAll(parser, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").error,
            HPE_OK);
  EXPECT_FALSE(parser.head().keep_alive);
}

constexpr std::string_view kChunkedRequest =
    "POST /up HTTP/1.1\r\n"
    "Host: a\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5\r\nhello\r\n"
    "6;ext=1\r\n world\r\n"
    "0\r\n\r\n";

TEST(HttpParserRequestTest, ChunkedBodyIsDelivered) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  HttpParser::Result r = feedAll(parser, kChunkedRequest);
  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_EQ(r.consumed, kChunkedRequest.size());
  EXPECT_TRUE(parser.head().chunked);
  EXPECT_FALSE(parser.head().content_length.has_value());
  EXPECT_EQ(sink.body, "hello world");
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserRequestTest, ChunkedBodyBytewise) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  HttpParser::Result r = feedBytewise(parser, kChunkedRequest);
  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_EQ(r.consumed, kChunkedRequest.size());
  EXPECT_TRUE(parser.head().chunked);
  EXPECT_EQ(sink.body, "hello world");
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserRequestTest, PipelinedRequestsPauseAfterEachMessage) {
  const std::string first = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string second = "POST /two HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz";
  const std::string input = first + second;
  RecordingSink sink;
  sink.pause_on_complete = true;
  HttpParser parser(HttpParser::Type::kRequest, sink);

  HttpParser::Result r = feedAll(parser, input);
  EXPECT_EQ(r.error, HPE_PAUSED);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(parser.head().method, "GET");
  EXPECT_EQ(parser.head().url, "/one");
  EXPECT_EQ(sink.messages, 1);
  EXPECT_FALSE(parser.inMessage());

  parser.resume();
  HttpParser::Result r2 = parser.feed(input.data() + r.consumed, input.size() - r.consumed);
  EXPECT_EQ(r2.error, HPE_PAUSED);
  EXPECT_EQ(r2.consumed, second.size());
  EXPECT_EQ(parser.head().method, "POST");
  EXPECT_EQ(parser.head().url, "/two");
  ASSERT_EQ(parser.head().headers.size(), 2u);  // the first request's headers are gone
  EXPECT_EQ(parser.head().headers[0].value, "b");
  EXPECT_EQ(parser.head().content_length, 3u);
  EXPECT_EQ(sink.body, "xyz");
  EXPECT_EQ(sink.messages, 2);
}

TEST(HttpParserRequestTest, PauseAfterHeadLeavesBodyUnread) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
  const std::string input = head + "xyz";
  RecordingSink sink;
  sink.head_result = HPE_PAUSED;
  HttpParser parser(HttpParser::Type::kRequest, sink);

  HttpParser::Result r = feedAll(parser, input);
  EXPECT_EQ(r.error, HPE_PAUSED);
  EXPECT_EQ(r.consumed, head.size());
  EXPECT_EQ(sink.body, "");

  parser.resume();
  HttpParser::Result r2 = parser.feed(input.data() + r.consumed, input.size() - r.consumed);
  EXPECT_EQ(r2.error, HPE_OK);
  EXPECT_EQ(r2.consumed, 3u);
  EXPECT_EQ(sink.body, "xyz");
  EXPECT_EQ(sink.messages, 1);
}

// Trailer fields of a chunked body land in head().headers, after the head callback has run.
TEST(HttpParserRequestTest, TrailerFieldsAreAppendedToHeaders) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  ASSERT_EQ(feedAll(parser,
                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\nX-Trailer: v\r\n\r\n")
                .error,
            HPE_OK);
  EXPECT_EQ(sink.messages, 1);
  ASSERT_EQ(parser.head().headers.size(), 3u);
  EXPECT_EQ(parser.head().headers[2].name, "X-Trailer");
  EXPECT_EQ(parser.head().headers[2].value, "v");
}

// ---------------------------------------------------------------------------------------------
// Head size cap

TEST(HttpParserHeadCapTest, HeadOverCapFails) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  parser.setMaxHeadBytes(64);
  std::string input = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + std::string(100, 'v') + "\r\n\r\n";
  HttpParser::Result r = feedAll(parser, input);
  EXPECT_NE(r.error, HPE_OK);
  EXPECT_NE(r.error, HPE_PAUSED);
  EXPECT_TRUE(parser.headTooLarge());
  EXPECT_EQ(sink.heads, 0);
  EXPECT_LT(r.consumed, input.size());
}

TEST(HttpParserHeadCapTest, HeadOverCapFailsBytewise) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  parser.setMaxHeadBytes(64);
  std::string input = "GET /" + std::string(100, 'p') + " HTTP/1.1\r\nHost: a\r\n\r\n";
  HttpParser::Result r = feedBytewise(parser, input);
  EXPECT_NE(r.error, HPE_OK);
  EXPECT_TRUE(parser.headTooLarge());
  EXPECT_EQ(sink.heads, 0);
}

TEST(HttpParserHeadCapTest, ManyHeadersOverCapFail) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  parser.setMaxHeadBytes(100);
  std::string input = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 20; ++i) input += "X: y\r\n";  // 20 * 6 bytes
  input += "\r\n";
  EXPECT_NE(feedAll(parser, input).error, HPE_OK);
  EXPECT_TRUE(parser.headTooLarge());
}

TEST(HttpParserHeadCapTest, HeadUnderCapParsesAndCapIsPerMessage) {
  // Each head is about 50 bytes; together they are over the cap.
  const std::string one = "GET /first HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
  const std::string two = "GET /second HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  parser.setMaxHeadBytes(64);
  HttpParser::Result r = feedAll(parser, one + two);
  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_FALSE(parser.headTooLarge());
  EXPECT_EQ(sink.messages, 2);
  EXPECT_EQ(parser.head().url, "/second");
}

TEST(HttpParserHeadCapTest, ResetClearsTooLarge) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  parser.setMaxHeadBytes(32);
  ASSERT_NE(feedAll(parser, "GET /" + std::string(64, 'a') + " HTTP/1.1\r\n").error, HPE_OK);
  ASSERT_TRUE(parser.headTooLarge());

  parser.reset();
  EXPECT_FALSE(parser.headTooLarge());
  EXPECT_TRUE(parser.head().url.empty());
  EXPECT_EQ(feedAll(parser, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").error, HPE_OK);
  EXPECT_EQ(parser.head().url, "/");
  EXPECT_EQ(sink.messages, 1);
}

// ---------------------------------------------------------------------------------------------
// Malformed requests. The exact llhttp codes are those of llhttp 8.1 in its default (strict
// framing, non-lenient) mode; the proxy answers any of them with 400.

struct Outcome {
  llhttp_errno_t error;
  int heads;
  int messages;
  std::string body;
};

Outcome parseRequest(std::string_view input) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  HttpParser::Result r = feedAll(parser, input);
  return Outcome{r.error, sink.heads, sink.messages, sink.body};
}

TEST(HttpParserRejectTest, ContentLengthWithChunked) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n");
  EXPECT_EQ(o.error, HPE_UNEXPECTED_CONTENT_LENGTH);
  EXPECT_EQ(o.heads, 0);
  EXPECT_EQ(o.messages, 0);
}

TEST(HttpParserRejectTest, ChunkedWithContentLength) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
      "0\r\n\r\n");
  EXPECT_EQ(o.error, HPE_UNEXPECTED_CONTENT_LENGTH);
  EXPECT_EQ(o.heads, 0);
}

TEST(HttpParserRejectTest, TwoDifferentContentLengths) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
  EXPECT_EQ(o.error, HPE_UNEXPECTED_CONTENT_LENGTH);
  EXPECT_EQ(o.heads, 0);
  EXPECT_EQ(o.body, "");
}

TEST(HttpParserRejectTest, TwoEqualContentLengths) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(o.error, HPE_UNEXPECTED_CONTENT_LENGTH);
}

TEST(HttpParserRejectTest, ContentLengthList) {
  Outcome o = parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello");
  EXPECT_EQ(o.error, HPE_INVALID_CONTENT_LENGTH);
}

TEST(HttpParserRejectTest, TransferEncodingNotEndingInChunked) {
  Outcome o = parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc");
  EXPECT_EQ(o.error, HPE_INVALID_TRANSFER_ENCODING);
  EXPECT_EQ(o.heads, 1);  // llhttp refuses it only after the head callback has run
  EXPECT_EQ(o.messages, 0);
  EXPECT_EQ(o.body, "");
}

TEST(HttpParserRejectTest, BadChunkSize) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(o.error, HPE_INVALID_CHUNK_SIZE);
  EXPECT_EQ(o.heads, 1);  // the head itself was fine
  EXPECT_EQ(o.messages, 0);
  EXPECT_EQ(o.body, "");
}

TEST(HttpParserRejectTest, NegativeChunkSize) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(o.error, HPE_INVALID_CHUNK_SIZE);
  EXPECT_EQ(o.body, "");
}

TEST(HttpParserRejectTest, OverflowingChunkSize) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n");
  EXPECT_EQ(o.error, HPE_INVALID_CHUNK_SIZE);
}

TEST(HttpParserRejectTest, BareCrEndingHeaderLine) {
  Outcome o = parseRequest("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n");
  EXPECT_EQ(o.error, HPE_LF_EXPECTED);
  EXPECT_EQ(o.heads, 0);
}

TEST(HttpParserRejectTest, BareCrInsideHeaderValue) {
  Outcome o = parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n");
  EXPECT_EQ(o.error, HPE_LF_EXPECTED);
  EXPECT_EQ(o.heads, 0);
}

TEST(HttpParserRejectTest, VersionFoo) {
  Outcome o = parseRequest("GET / FOO/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(o.error, HPE_INVALID_CONSTANT);
  EXPECT_EQ(o.heads, 0);
}

TEST(HttpParserRejectTest, VersionHttp12) {
  Outcome o = parseRequest("GET / HTTP/1.2\r\nHost: a\r\n\r\n");
  EXPECT_EQ(o.error, HPE_INVALID_VERSION);
}

TEST(HttpParserRejectTest, WhitespaceBeforeColonInFramingHeaders) {
  EXPECT_EQ(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
                         "Content-Length: 5\r\n\r\nhello")
                .error,
            HPE_INVALID_HEADER_TOKEN);
  EXPECT_EQ(parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello").error,
            HPE_INVALID_HEADER_TOKEN);
}

TEST(HttpParserRejectTest, ObsFoldAsFirstHeaderLine) {
  EXPECT_EQ(parseRequest("GET / HTTP/1.1\r\n x\r\nHost: a\r\n\r\n").error, HPE_UNEXPECTED_SPACE);
}

TEST(HttpParserRejectTest, ObsFoldInContentLength) {
  EXPECT_EQ(
      parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n 6\r\n\r\nhello").error,
      HPE_UNEXPECTED_CONTENT_LENGTH);
}

// ---------------------------------------------------------------------------------------------
// Malformed requests that llhttp 8.1 ACCEPTS: the proxy must refuse or neutralise them itself.

// HTTP/2.0 (and 0.9) parse; ClientConnection::rejectHead() refuses http_major != 1.
TEST(HttpParserAcceptsTest, Http20RequestLineParses) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  EXPECT_EQ(feedAll(parser, "GET / HTTP/2.0\r\nHost: a\r\n\r\n").error, HPE_OK);
  EXPECT_EQ(parser.head().http_major, 2);
  EXPECT_EQ(parser.head().http_minor, 0);
  EXPECT_EQ(sink.heads, 1);
}

TEST(HttpParserAcceptsTest, Http09RequestLineParses) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  EXPECT_EQ(feedAll(parser, "GET / HTTP/0.9\r\nHost: a\r\n\r\n").error, HPE_OK);
  EXPECT_EQ(parser.head().http_major, 0);
  EXPECT_EQ(parser.head().http_minor, 9);
}

// llhttp unfolds obs-fold; HttpParser refuses it (RFC 9112 5.2 allows either), so a folded
// header can never be read one way by tessera and another way by a backend.
TEST(HttpParserRejectsTest, ObsFold) {
  for (std::string_view fold : {"\r\n c", "\r\n\tc"}) {
    RecordingSink sink;
    HttpParser parser(HttpParser::Type::kRequest, sink);
    std::string input = "GET / HTTP/1.1\r\nHost: a\r\nX: b" + std::string(fold) + "\r\n\r\n";
    EXPECT_EQ(feedAll(parser, input).error, HPE_USER);
    ASSERT_NE(parser.rejection(), nullptr);
    EXPECT_STREQ(parser.rejection(), "obs-fold (header continuation line)");
  }
}

TEST(HttpParserRejectsTest, ObsFoldFedByteByByte) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  std::string input = "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n";
  llhttp_errno_t err = HPE_OK;
  for (size_t i = 0; i < input.size() && err == HPE_OK; ++i) err = parser.feed(&input[i], 1).error;
  EXPECT_EQ(err, HPE_USER);
}

// A value split across two reads is not a fold.
TEST(HttpParserAcceptsTest, ValueSplitAcrossFeedsIsNotAFold) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  std::string a = "GET / HTTP/1.1\r\nHost: a\r\nX: one t";
  std::string b = "wo\r\n\r\n";
  ASSERT_EQ(parser.feed(a.data(), a.size()).error, HPE_OK);
  ASSERT_EQ(parser.feed(b.data(), b.size()).error, HPE_OK);
  EXPECT_EQ(parser.head().headers[1].value, "one two");
}

// RFC 9112 5.1: a server MUST reject whitespace between a field name and the colon. llhttp only
// does so for a few names, so HttpParser checks every name.
TEST(HttpParserRejectsTest, WhitespaceBeforeColon) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  EXPECT_EQ(feedAll(parser, "GET / HTTP/1.1\r\nHost : a\r\n\r\n").error, HPE_USER);
  EXPECT_STREQ(parser.rejection(), "whitespace in a header name");
}

TEST(HttpParserAcceptsTest, TrailingWhitespaceIsTrimmedFromValues) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  ASSERT_EQ(feedAll(parser, "GET / HTTP/1.1\r\nHost: a \t\r\nExpect: 100-continue \r\n\r\n").error,
            HPE_OK);
  EXPECT_EQ(parser.head().headers[0].value, "a");
  EXPECT_EQ(parser.head().headers[1].value, "100-continue");
}

// llhttp 8.1 does not check that chunk data is followed by CRLF: it skips any two bytes.
TEST(HttpParserAcceptsTest, ChunkDataTerminatorIsNotChecked) {
  Outcome o = parseRequest(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n");
  EXPECT_EQ(o.error, HPE_OK);
  EXPECT_EQ(o.body, "hello");
  EXPECT_EQ(o.messages, 1);
}

// ---------------------------------------------------------------------------------------------
// Responses

constexpr std::string_view kResponse =
    "HTTP/1.1 404 Not Found\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 3\r\n"
    "\r\n"
    "abc";

TEST(HttpParserResponseTest, ParsesWholeResponse) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kResponse, sink);
  HttpParser::Result r = feedAll(parser, kResponse);
  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_EQ(r.consumed, kResponse.size());
  const MessageHead& h = parser.head();
  EXPECT_EQ(h.status, 404);
  EXPECT_EQ(h.reason, "Not Found");
  EXPECT_EQ(h.http_major, 1);
  EXPECT_EQ(h.http_minor, 1);
  EXPECT_EQ(h.content_length, 3u);
  EXPECT_FALSE(h.chunked);
  EXPECT_TRUE(h.keep_alive);
  ASSERT_EQ(h.headers.size(), 2u);
  EXPECT_EQ(h.headers[0].name, "Content-Type");
  EXPECT_EQ(h.headers[0].value, "text/plain");
  EXPECT_EQ(sink.body, "abc");
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserResponseTest, BytewiseGivesSameHead) {
  RecordingSink whole_sink;
  HttpParser whole(HttpParser::Type::kResponse, whole_sink);
  ASSERT_EQ(feedAll(whole, kResponse).error, HPE_OK);

  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kResponse, sink);
  HttpParser::Result r = feedBytewise(parser, kResponse);
  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_EQ(r.consumed, kResponse.size());
  expectSameHead(parser.head(), whole.head());
  EXPECT_EQ(sink.body, "abc");
}

TEST(HttpParserResponseTest, ChunkedResponseBody) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kResponse, sink);
  ASSERT_EQ(feedBytewise(parser,
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n")
                .error,
            HPE_OK);
  EXPECT_TRUE(parser.head().chunked);
  EXPECT_EQ(sink.body, "abc0123456789");
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserResponseTest, NoBodyFromHeadCallbackSkipsContentLength) {
  const std::string input = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  RecordingSink sink;
  sink.head_result = 1;  // a response to HEAD
  HttpParser parser(HttpParser::Type::kResponse, sink);
  HttpParser::Result r = feedAll(parser, input);
  EXPECT_EQ(r.error, HPE_OK);
  EXPECT_EQ(r.consumed, input.size());
  EXPECT_EQ(parser.head().content_length, 5u);
  EXPECT_EQ(sink.messages, 1);
  EXPECT_EQ(sink.body, "");
}

TEST(HttpParserResponseTest, ReadUntilCloseCompletesOnFinish) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kResponse, sink);
  ASSERT_EQ(feedAll(parser, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nabc").error, HPE_OK);
  EXPECT_TRUE(parser.messageNeedsEof());
  EXPECT_FALSE(parser.head().keep_alive);
  EXPECT_EQ(sink.messages, 0);
  EXPECT_EQ(sink.body, "abc");

  EXPECT_EQ(parser.finish(), HPE_OK);
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserResponseTest, NoContentNeedsNoEof) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kResponse, sink);
  ASSERT_EQ(feedAll(parser, "HTTP/1.1 204 No Content\r\n\r\n").error, HPE_OK);
  EXPECT_FALSE(parser.messageNeedsEof());
  EXPECT_EQ(parser.head().status, 204);
  EXPECT_EQ(sink.messages, 1);
}

TEST(HttpParserResponseTest, ResponseCapUsesReason) {
  RecordingSink sink;
  HttpParser parser(HttpParser::Type::kResponse, sink);
  parser.setMaxHeadBytes(32);
  EXPECT_NE(feedAll(parser, "HTTP/1.1 200 " + std::string(64, 'r') + "\r\n\r\n").error, HPE_OK);
  EXPECT_TRUE(parser.headTooLarge());
}

}  // namespace
}  // namespace tessera::proxy

namespace tessera::proxy {
namespace {

TEST(HeaderListTest, RemoveAllKeepsOrderAndSlots) {
  HeaderList h;
  h.add("A", "1");
  h.add("X-User-Id", "forged");
  h.add("B", "2");
  h.add("x-user-id", "again");
  h.add("C", "3");
  EXPECT_EQ(h.removeAll("X-USER-ID"), 2u);
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].name + h[1].name + h[2].name, "ABC");
  EXPECT_EQ(h[2].value, "3");
  EXPECT_EQ(h.removeAll("missing"), 0u);
  h.add("D", "4");  // a reused slot is reset
  EXPECT_EQ(h[3].name, "D");
  EXPECT_EQ(h[3].value, "4");
}

}  // namespace
}  // namespace tessera::proxy
