// writeUpstreamRequestHead, writeClientResponseHead and reasonPhrase: the heads tessera writes.

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http_message.h"

namespace tessera::proxy {
namespace {

MessageHead request(std::string method, std::string url,
                    std::vector<std::pair<std::string, std::string>> headers) {
  MessageHead h;
  h.method = std::move(method);
  h.url = std::move(url);
  for (const auto& [name, value] : headers) h.headers.add(name, value);
  return h;
}

MessageHead response(int status, std::string reason,
                     std::vector<std::pair<std::string, std::string>> headers) {
  MessageHead h;
  h.status = status;
  h.reason = std::move(reason);
  for (const auto& [name, value] : headers) h.headers.add(name, value);
  return h;
}

ForwardInfo forward(bool trust = false) {
  ForwardInfo fwd;
  fwd.client_ip = "192.0.2.7";
  fwd.proto = "https";
  fwd.trust_forwarded = trust;
  return fwd;
}

std::string upstreamHead(const MessageHead& req, const ForwardInfo& fwd) {
  std::string out;
  writeUpstreamRequestHead(req, fwd, out);
  return out;
}

std::string clientHead(const MessageHead& resp, const ResponseFraming& framing) {
  std::string out;
  writeClientResponseHead(resp, framing, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Request head sent upstream

TEST(UpstreamRequestHeadTest, PlainGet) {
  MessageHead req = request("GET", "/path?q=1", {{"Host", "example.com"}, {"Accept", "*/*"}});
  EXPECT_EQ(upstreamHead(req, forward()),
            "GET /path?q=1 HTTP/1.1\r\n"
            "Host: example.com\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: example.com\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, RequestLineIsAlwaysHttp11) {
  MessageHead req = request("HEAD", "/", {});
  req.http_major = 1;
  req.http_minor = 0;
  ForwardInfo fwd = forward();
  fwd.proto = "http";
  EXPECT_EQ(upstreamHead(req, fwd),
            "HEAD / HTTP/1.1\r\n"
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: http\r\n"
            "\r\n");  // no Host header: no X-Forwarded-Host either
}

TEST(UpstreamRequestHeadTest, DropsHopByHopHeaders) {
  MessageHead req = request("GET", "/",
                            {{"Host", "h"},
                             {"Connection", "keep-alive"},
                             {"Keep-Alive", "timeout=5"},
                             {"Proxy-Connection", "keep-alive"},
                             {"TE", "trailers"},
                             {"Trailer", "X-T"},
                             {"Transfer-Encoding", "chunked"},
                             {"Upgrade", "websocket"},
                             {"Accept", "a"}});
  EXPECT_EQ(upstreamHead(req, forward()),
            "GET / HTTP/1.1\r\n"
            "Host: h\r\n"
            "Accept: a\r\n"
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, DropsHeadersNamedInConnection) {
  MessageHead req = request("GET", "/",
                            {{"Host", "h"},
                             {"X-Secret", "s"},
                             {"connection", "close, x-secret"},
                             {"X-Other", "o"},
                             {"Connection", "X-OTHER"},
                             {"X-Kept", "k"}});
  EXPECT_EQ(upstreamHead(req, forward()),
            "GET / HTTP/1.1\r\n"
            "Host: h\r\n"
            "X-Kept: k\r\n"
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, ReplacesExpectAndClientForwardedHeaders) {
  MessageHead req = request("POST", "/",
                            {{"Host", "h"},
                             {"Expect", "100-continue"},
                             {"X-Forwarded-For", "6.6.6.6"},
                             {"x-forwarded-proto", "http"},
                             {"X-Forwarded-Host", "evil"},
                             {"X-Forwarded-Port", "1"}});
  EXPECT_EQ(upstreamHead(req, forward()),
            "POST / HTTP/1.1\r\n"
            "Host: h\r\n"
            "X-Forwarded-Port: 1\r\n"  // not one tessera writes: passed through
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, TrustedForwardedForIsAppendedTo) {
  MessageHead req =
      request("GET", "/", {{"Host", "h"}, {"x-forwarded-for", "203.0.113.1, 198.51.100.2"}});
  std::string out = upstreamHead(req, forward(/*trust=*/true));
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\n"
            "Host: h\r\n"
            "X-Forwarded-For: 203.0.113.1, 198.51.100.2, 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, TrustedWithoutPriorOrEmptyForwardedFor) {
  MessageHead none = request("GET", "/", {{"Host", "h"}});
  EXPECT_NE(upstreamHead(none, forward(true)).find("\r\nX-Forwarded-For: 192.0.2.7\r\n"),
            std::string::npos);
  MessageHead empty = request("GET", "/", {{"Host", "h"}, {"X-Forwarded-For", ""}});
  EXPECT_NE(upstreamHead(empty, forward(true)).find("\r\nX-Forwarded-For: 192.0.2.7\r\n"),
            std::string::npos);
}

TEST(UpstreamRequestHeadTest, ForwardedHostKeepsHostAsSent) {
  MessageHead req = request("GET", "/", {{"HOST", "Shop.Example:8443"}});
  EXPECT_EQ(upstreamHead(req, forward()),
            "GET / HTTP/1.1\r\n"
            "HOST: Shop.Example:8443\r\n"
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: Shop.Example:8443\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, ContentLengthFramingReplacesClientHeader) {
  MessageHead req = request("PUT", "/f", {{"Host", "h"}, {"content-length", "0012"}});
  ForwardInfo fwd = forward();
  fwd.content_length = 12;
  EXPECT_EQ(upstreamHead(req, fwd),
            "PUT /f HTTP/1.1\r\n"
            "Host: h\r\n"
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\n"
            "Content-Length: 12\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, ZeroContentLengthIsWritten) {
  MessageHead req = request("POST", "/", {});
  ForwardInfo fwd = forward();
  fwd.content_length = 0;
  EXPECT_NE(upstreamHead(req, fwd).find("\r\nContent-Length: 0\r\n\r\n"), std::string::npos);
}

TEST(UpstreamRequestHeadTest, ChunkedFramingWinsOverContentLength) {
  MessageHead req =
      request("POST", "/", {{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"X-A", "1"}});
  ForwardInfo fwd = forward();
  fwd.chunked = true;
  fwd.content_length = 7;
  EXPECT_EQ(upstreamHead(req, fwd),
            "POST / HTTP/1.1\r\n"
            "Host: h\r\n"
            "X-A: 1\r\n"
            "X-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: h\r\n"
            "Transfer-Encoding: chunked\r\n"
            "\r\n");
}

TEST(UpstreamRequestHeadTest, NoFramingWithoutBody) {
  MessageHead req = request("GET", "/", {{"Host", "h"}, {"Content-Length", "5"}});
  std::string out = upstreamHead(req, forward());
  EXPECT_EQ(out.find("Content-Length"), std::string::npos);
  EXPECT_EQ(out.find("Transfer-Encoding"), std::string::npos);
}

TEST(UpstreamRequestHeadTest, AppendsToOutput) {
  std::string out = "previous";
  writeUpstreamRequestHead(request("GET", "/", {}), forward(), out);
  EXPECT_EQ(out.rfind("previousGET / HTTP/1.1\r\n", 0), 0u);
}

// ---------------------------------------------------------------------------------------------
// Response head sent to the client

TEST(ClientResponseHeadTest, PassesEndToEndHeadersAndContentLength) {
  MessageHead resp = response(200, "OK",
                              {{"Content-Type", "text/html"},
                               {"Content-Length", "42"},
                               {"Connection", "keep-alive, X-Hop"},
                               {"Keep-Alive", "timeout=5"},
                               {"X-Hop", "1"},
                               {"Transfer-Encoding", "identity"},
                               {"Upgrade", "h2c"},
                               {"Trailer", "X"},
                               {"Proxy-Connection", "x"},
                               {"Set-Cookie", "a=b"}});
  EXPECT_EQ(clientHead(resp, ResponseFraming{}),
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/html\r\n"
            "Content-Length: 42\r\n"
            "Set-Cookie: a=b\r\n"
            "\r\n");
}

TEST(ClientResponseHeadTest, ReasonFromUpstreamOrTable) {
  EXPECT_EQ(clientHead(response(200, "Fine", {}), {}), "HTTP/1.1 200 Fine\r\n\r\n");
  EXPECT_EQ(clientHead(response(404, "", {}), {}), "HTTP/1.1 404 Not Found\r\n\r\n");
  EXPECT_EQ(clientHead(response(299, "", {}), {}), "HTTP/1.1 299 Unknown\r\n\r\n");
}

TEST(ClientResponseHeadTest, ChunkedReplacesContentLength) {
  MessageHead resp = response(200, "OK", {{"content-length", "10"}, {"ETag", "\"x\""}});
  ResponseFraming framing;
  framing.chunked = true;
  EXPECT_EQ(clientHead(resp, framing),
            "HTTP/1.1 200 OK\r\n"
            "ETag: \"x\"\r\n"
            "Transfer-Encoding: chunked\r\n"
            "\r\n");
}

TEST(ClientResponseHeadTest, UpstreamTransferEncodingIsDroppedWithoutChunkedFraming) {
  MessageHead resp = response(304, "Not Modified", {{"Transfer-Encoding", "chunked"}});
  ResponseFraming framing;
  framing.no_body = true;
  EXPECT_EQ(clientHead(resp, framing), "HTTP/1.1 304 Not Modified\r\n\r\n");
}

TEST(ClientResponseHeadTest, ConnectionCloseWhenNotKeepAlive) {
  ResponseFraming framing;
  framing.chunked = true;
  framing.keep_alive = false;
  EXPECT_EQ(clientHead(response(500, "", {{"Connection", "keep-alive"}}), framing),
            "HTTP/1.1 500 Internal Server Error\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n"
            "\r\n");
}

TEST(ClientResponseHeadTest, Http10ClientKeepAlive) {
  ResponseFraming framing;
  framing.http10_client = true;
  EXPECT_EQ(clientHead(response(200, "OK", {{"Content-Length", "3"}}), framing),
            "HTTP/1.0 200 OK\r\n"
            "Content-Length: 3\r\n"
            "Connection: keep-alive\r\n"
            "\r\n");
}

TEST(ClientResponseHeadTest, Http10ClientClose) {
  ResponseFraming framing;
  framing.http10_client = true;
  framing.keep_alive = false;
  EXPECT_EQ(clientHead(response(200, "OK", {}), framing),
            "HTTP/1.0 200 OK\r\n"
            "Connection: close\r\n"
            "\r\n");
}

TEST(ReasonPhraseTest, KnownAndUnknownCodes) {
  const std::vector<std::pair<int, std::string_view>> known = {
      {100, "Continue"},
      {200, "OK"},
      {201, "Created"},
      {204, "No Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {304, "Not Modified"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {408, "Request Timeout"},
      {413, "Content Too Large"},
      {417, "Expectation Failed"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
  };
  for (const auto& [status, phrase] : known) EXPECT_EQ(reasonPhrase(status), phrase) << status;
  EXPECT_EQ(reasonPhrase(0), "Unknown");
  EXPECT_EQ(reasonPhrase(299), "Unknown");
  EXPECT_EQ(reasonPhrase(999), "Unknown");
}

}  // namespace
}  // namespace tessera::proxy
