// Micro benchmarks for the per-request CPU work tessera does outside TLS: parsing the client's
// request head, parsing the upstream's response head, and rewriting both heads.
//
// Objects are reused across iterations the way a keep-alive connection reuses them (one parser
// per connection, one output string per connection), so what is measured is the steady state the
// proxy reaches after its first requests, when HeaderList slots no longer allocate.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http_message.h"

namespace {

using tessera::proxy::ForwardInfo;
using tessera::proxy::HttpParser;
using tessera::proxy::MessageHead;
using tessera::proxy::ResponseFraming;

// Stops after each message as ClientConnection does (HPE_PAUSED from onMessageComplete), so one
// feed() consumes exactly one head and the benchmark sees the same llhttp state transitions.
class PausingSink : public HttpParser::Sink {
 public:
  int onHeadComplete() override { return 0; }
  int onBody(const char*, size_t) override { return 0; }
  int onMessageComplete() override { return HPE_PAUSED; }
};

struct HeaderLine {
  std::string_view name;
  std::string_view value;
};

// Roughly what a browser sends. Connection comes early so that every size but the smallest
// exercises the "names listed in Connection" path of the rewriter.
constexpr HeaderLine kRequestHeaders[] = {
    {"Host", "app.example.com"},
    {"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
    {"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
    {"Connection", "keep-alive"},
    {"Accept-Encoding", "gzip, deflate, br, zstd"},
    {"Accept-Language", "en-US,en;q=0.5"},
    {"Referer", "https://app.example.com/dashboard/orders?page=2"},
    {"Cookie",
     "session=9f86d081884c7d659a2feaa0c55ad015; theme=dark; _ga=GA1.2.1234567890.1700000000"},
    {"Cache-Control", "no-cache"},
    {"X-Request-Id", "5b2f6e0c-8d3e-4c1b-9a57-2f1e0d9c8b7a"},
    {"Authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"},
    {"Sec-Fetch-Dest", "document"},
    {"Sec-Fetch-Mode", "navigate"},
    {"Sec-Fetch-Site", "same-origin"},
    {"Upgrade-Insecure-Requests", "1"},
    {"Pragma", "no-cache"},
};

// What a typical application server answers with.
constexpr HeaderLine kResponseHeaders[] = {
    {"Content-Type", "application/json; charset=utf-8"},
    {"Content-Length", "1523"},
    {"Date", "Mon, 02 Jun 2025 10:00:00 GMT"},
    {"Connection", "keep-alive"},
    {"Server", "app/2.4.1"},
    {"Cache-Control", "private, max-age=0, must-revalidate"},
    {"ETag", "\"33a64df551425fcc55e4d42a148795d9f25f89d4\""},
    {"Last-Modified", "Mon, 02 Jun 2025 09:58:12 GMT"},
    {"Vary", "Accept-Encoding, Cookie"},
    {"Set-Cookie", "session=9f86d081884c7d659a2feaa0c55ad015; Path=/; Secure; HttpOnly"},
    {"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "strict-origin-when-cross-origin"},
    {"X-Request-Id", "5b2f6e0c-8d3e-4c1b-9a57-2f1e0d9c8b7a"},
    {"X-Runtime", "0.012345"},
};

// Appends `count` header lines: the realistic ones first, then numbered tracing-style headers
// once those run out (large heads in practice are mostly such application headers).
template <size_t N>
void appendHeaders(const HeaderLine (&pool)[N], int count, bool with_connection, std::string& out) {
  int written = 0;
  for (size_t i = 0; i < N && written < count; ++i) {
    if (!with_connection && pool[i].name == "Connection") continue;
    out.append(pool[i].name).append(": ").append(pool[i].value).append("\r\n");
    ++written;
  }
  for (int i = 0; written < count; ++i, ++written) {
    out.append("X-Trace-Attr-").append(std::to_string(i)).append(": ");
    out.append("k").append(std::to_string(i)).append("=0123456789abcdef\r\n");
  }
}

std::string requestHead(int headers, bool with_connection = true) {
  std::string s = "GET /api/v1/orders/12345/items?expand=product&limit=50 HTTP/1.1\r\n";
  appendHeaders(kRequestHeaders, headers, with_connection, s);
  s.append("\r\n");
  return s;
}

std::string responseHead(int headers, bool with_connection = true) {
  std::string s = "HTTP/1.1 200 OK\r\n";
  appendHeaders(kResponseHeaders, headers, with_connection, s);
  s.append("\r\n");
  return s;
}

// Parses `wire` once with a fresh parser, for the rewriting benchmarks' input. A request without
// a body completes (HPE_PAUSED); a response with Content-Length waits for its body (HPE_OK).
bool parseOnce(HttpParser::Type type, const std::string& wire, MessageHead& out) {
  PausingSink sink;
  HttpParser parser(type, sink);
  HttpParser::Result r = parser.feed(wire.data(), wire.size());
  if ((r.error != HPE_OK && r.error != HPE_PAUSED) || r.consumed != wire.size()) return false;
  out = parser.head();
  return true;
}

// Consecutive requests on one keep-alive connection: feed a head, resume, feed the next.
void BM_ParseRequestHead(benchmark::State& state) {
  const std::string wire = requestHead(static_cast<int>(state.range(0)));
  PausingSink sink;
  HttpParser parser(HttpParser::Type::kRequest, sink);
  parser.setMaxHeadBytes(16384);  // the default limits.max_header_bytes; the check is in the path
  for (auto _ : state) {
    HttpParser::Result r = parser.feed(wire.data(), wire.size());
    if (r.error != HPE_PAUSED || r.consumed != wire.size()) {
      state.SkipWithError(parser.errorReason());
      break;
    }
    benchmark::DoNotOptimize(parser.head().headers.size());
    parser.resume();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(wire.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["head_bytes"] = static_cast<double>(wire.size());
}
BENCHMARK(BM_ParseRequestHead)->ArgName("headers")->Arg(4)->Arg(16)->Arg(32);

// One response per upstream exchange: the proxy reset()s the response parser for each.
void BM_ParseResponseHead(benchmark::State& state) {
  const std::string wire = responseHead(static_cast<int>(state.range(0)));
  PausingSink sink;
  HttpParser parser(HttpParser::Type::kResponse, sink);
  for (auto _ : state) {
    parser.reset();
    HttpParser::Result r = parser.feed(wire.data(), wire.size());
    // The head declares a body that is not fed, so llhttp stops after the head without error.
    if (r.error != HPE_OK || parser.head().status != 200) {
      state.SkipWithError(parser.errorReason());
      break;
    }
    benchmark::DoNotOptimize(parser.head().headers.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(wire.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["head_bytes"] = static_cast<double>(wire.size());
}
BENCHMARK(BM_ParseResponseHead)->ArgName("headers")->Arg(4)->Arg(16)->Arg(32);

// The second argument says whether the head carries a Connection header: with one, every
// forwarded header is also checked against the Connection list, so the cost of that check shows.
void BM_WriteUpstreamRequestHead(benchmark::State& state) {
  const std::string wire = requestHead(static_cast<int>(state.range(0)), state.range(1) != 0);
  MessageHead head;
  if (!parseOnce(HttpParser::Type::kRequest, wire, head)) {
    state.SkipWithError("request head did not parse");
    return;
  }
  ForwardInfo fwd;
  fwd.client_ip = "203.0.113.57";
  fwd.proto = "https";
  std::string out;  // kept across requests, like ClientConnection::upstream_head_
  for (auto _ : state) {
    out.clear();
    tessera::proxy::writeUpstreamRequestHead(head, fwd, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(out.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_WriteUpstreamRequestHead)
    ->ArgNames({"headers", "connection"})
    ->ArgsProduct({{4, 16, 32}, {0, 1}});

void BM_WriteClientResponseHead(benchmark::State& state) {
  const std::string wire = responseHead(static_cast<int>(state.range(0)), state.range(1) != 0);
  MessageHead head;
  if (!parseOnce(HttpParser::Type::kResponse, wire, head)) {
    state.SkipWithError("response head did not parse");
    return;
  }
  ResponseFraming framing;  // body passed through as is, connection kept: the common case
  std::string out;
  for (auto _ : state) {
    out.clear();
    tessera::proxy::writeClientResponseHead(head, framing, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(out.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_WriteClientResponseHead)
    ->ArgNames({"headers", "connection"})
    ->ArgsProduct({{4, 16, 32}, {0, 1}});

}  // namespace
