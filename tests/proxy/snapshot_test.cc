// requestTarget and matchRoute, on listeners built by hand (no resolving, no certificates).

#include "proxy/snapshot.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>

namespace tessera::proxy {
namespace {

// ---------------------------------------------------------------------------------------------
// requestTarget

TEST(RequestTargetTest, OriginFormTakesHostHeaderWithoutPortLowerCased) {
  const std::string host = "Shop.EXAMPLE.com:8443";
  RequestTarget t = requestTarget("/Cart/Items?id=7", &host);
  EXPECT_EQ(t.host, "shop.example.com");
  EXPECT_EQ(t.path, "/Cart/Items?id=7");  // the path keeps its case
}

TEST(RequestTargetTest, OriginFormHostWithoutPort) {
  const std::string host = "example.com";
  RequestTarget t = requestTarget("/", &host);
  EXPECT_EQ(t.host, "example.com");
  EXPECT_EQ(t.path, "/");
}

TEST(RequestTargetTest, OriginFormWithoutHostHeader) {
  RequestTarget t = requestTarget("/x", nullptr);
  EXPECT_EQ(t.host, "");
  EXPECT_EQ(t.path, "/x");
}

TEST(RequestTargetTest, PathThatContainsSchemeIsStillOriginForm) {
  const std::string host = "a.example";
  RequestTarget t = requestTarget("/redirect?to=http://b.example/", &host);
  EXPECT_EQ(t.host, "a.example");
  EXPECT_EQ(t.path, "/redirect?to=http://b.example/");
}

TEST(RequestTargetTest, AbsoluteFormOverridesHostHeader) {
  const std::string host = "other.example";
  RequestTarget t = requestTarget("http://API.Example:8080/v1/users?x=1", &host);
  EXPECT_EQ(t.host, "api.example");
  EXPECT_EQ(t.path, "/v1/users?x=1");
}

TEST(RequestTargetTest, AbsoluteFormWithoutPathIsRoot) {
  RequestTarget t = requestTarget("https://a.example", nullptr);
  EXPECT_EQ(t.host, "a.example");
  EXPECT_EQ(t.path, "/");
}

TEST(RequestTargetTest, Ipv6HostHeaderKeepsBrackets) {
  const std::string with_port = "[2001:DB8::1]:8443";
  RequestTarget t = requestTarget("/a", &with_port);
  EXPECT_EQ(t.host, "[2001:db8::1]");
  EXPECT_EQ(t.path, "/a");

  const std::string without_port = "[::1]";
  EXPECT_EQ(requestTarget("/", &without_port).host, "[::1]");
}

TEST(RequestTargetTest, Ipv6AbsoluteForm) {
  RequestTarget t = requestTarget("http://[FE80::1]:80/p", nullptr);
  EXPECT_EQ(t.host, "[fe80::1]");
  EXPECT_EQ(t.path, "/p");
}

TEST(RequestTargetTest, AsteriskFormUsesHostHeader) {
  const std::string host = "a.example";
  RequestTarget t = requestTarget("*", &host);
  EXPECT_EQ(t.host, "a.example");
  EXPECT_EQ(t.path, "*");
}

// ---------------------------------------------------------------------------------------------
// matchRoute

class MatchRouteTest : public ::testing::Test {
 protected:
  // Adds a route; conf::Route objects live in a deque so their addresses stay put.
  void addRoute(const std::string& host, const std::string& prefix, const UpstreamTarget* up) {
    conf::Route& r = routes_.emplace_back();
    r.host = host;
    r.path_prefix = prefix;
    r.upstream = "up";
    RouteTarget& target = listener_.routes.emplace_back();
    target.conf = &r;
    target.upstream = up;
  }

  // Index of the matched route in listener_.routes, or -1.
  int match(const std::string& host, const std::string& path) const {
    const RouteTarget* r = matchRoute(listener_, host, path);
    if (r == nullptr) return -1;
    return static_cast<int>(r - listener_.routes.data());
  }

  std::deque<conf::Route> routes_;
  UpstreamTarget api_;
  UpstreamTarget web_;
  ListenerTarget listener_;
};

TEST_F(MatchRouteTest, ExactHostAndPrefix) {
  addRoute("api.example", "/v1", &api_);
  addRoute("*", "/", &web_);
  EXPECT_EQ(match("api.example", "/v1"), 0);
  EXPECT_EQ(match("api.example", "/v1/users?x"), 0);
  EXPECT_EQ(match("api.example", "/v2"), 1);
  EXPECT_EQ(match("api.example", "/"), 1);
  EXPECT_EQ(match("www.api.example", "/v1"), 1);
  EXPECT_EQ(match("api.example.com", "/v1"), 1);
}

TEST_F(MatchRouteTest, ReturnsRouteWithItsUpstream) {
  addRoute("a.example", "/", &api_);
  addRoute("b.example", "/", &web_);
  const RouteTarget* r = matchRoute(listener_, "b.example", "/x");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r, &listener_.routes[1]);
  EXPECT_EQ(r->upstream, &web_);
  EXPECT_EQ(r->conf, &routes_[1]);
}

TEST_F(MatchRouteTest, WildcardSuffixDoesNotMatchBareSuffix) {
  addRoute("*.example.com", "/", &api_);
  EXPECT_EQ(match("a.example.com", "/"), 0);
  EXPECT_EQ(match("a.b.example.com", "/"), 0);  // any depth below the suffix
  EXPECT_EQ(match("example.com", "/"), -1);
  EXPECT_EQ(match(".example.com", "/"), -1);
  EXPECT_EQ(match("badexample.com", "/"), -1);
  EXPECT_EQ(match("a.example.com.evil", "/"), -1);
}

TEST_F(MatchRouteTest, StarMatchesAnyHostIncludingNone) {
  addRoute("*", "/", &web_);
  EXPECT_EQ(match("anything.example", "/"), 0);
  EXPECT_EQ(match("", "/x"), 0);
  EXPECT_EQ(match("[::1]", "/x"), 0);
}

TEST_F(MatchRouteTest, PathPrefixMustMatchFromStart) {
  addRoute("*", "/static/", &web_);
  EXPECT_EQ(match("h", "/static/app.js"), 0);
  EXPECT_EQ(match("h", "/static/"), 0);
  EXPECT_EQ(match("h", "/static"), -1);
  EXPECT_EQ(match("h", "/x/static/app.js"), -1);
  EXPECT_EQ(match("h", ""), -1);
}

TEST_F(MatchRouteTest, FirstMatchWins) {
  addRoute("*", "/", &web_);            // catches everything
  addRoute("api.example", "/", &api_);  // never reached
  EXPECT_EQ(match("api.example", "/v1"), 0);

  ListenerTarget reordered;
  reordered.routes = {listener_.routes[1], listener_.routes[0]};
  const RouteTarget* r = matchRoute(reordered, "api.example", "/v1");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->upstream, &api_);
}

TEST_F(MatchRouteTest, LongerPrefixListedFirstWins) {
  addRoute("*", "/api/admin", &web_);
  addRoute("*", "/api", &api_);
  EXPECT_EQ(match("h", "/api/admin/users"), 0);
  EXPECT_EQ(match("h", "/api/users"), 1);
}

TEST_F(MatchRouteTest, NoMatchIsNull) {
  addRoute("a.example", "/", &api_);
  addRoute("*.b.example", "/app", &web_);
  EXPECT_EQ(match("c.example", "/"), -1);
  EXPECT_EQ(match("x.b.example", "/other"), -1);
  EXPECT_EQ(match("A.example", "/"), -1);  // hosts arrive lower-cased from requestTarget
}

TEST_F(MatchRouteTest, EmptyListenerMatchesNothing) { EXPECT_EQ(match("a.example", "/"), -1); }

TEST_F(MatchRouteTest, RouteWithoutUpstreamIsStillReturned) {
  addRoute("*", "/", nullptr);  // the caller answers 404 for a route whose upstream is missing
  const RouteTarget* r = matchRoute(listener_, "h", "/");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->upstream, nullptr);
}

TEST_F(MatchRouteTest, WorksWithRequestTarget) {
  addRoute("*.example", "/v1", &api_);
  addRoute("*", "/", &web_);
  const std::string host = "API.Example:443";
  RequestTarget t = requestTarget("/v1/x", &host);
  EXPECT_EQ(match(t.host, std::string(t.path)), 0);
}

}  // namespace
}  // namespace tessera::proxy
