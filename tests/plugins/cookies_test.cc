// Cookie syntax shared by the plugins: Set-Cookie attributes, where a browser files a cookie, and
// the line that makes it drop one.

#include "plugins/cookies.h"

#include <gtest/gtest.h>

namespace tessera::plugins::cookies {
namespace {

TEST(CookiesTest, SetCookieReadsPathAndDomainAndTheLastOneWins) {
  std::optional<SetCookie> c =
      parseSetCookie("SID=abc; Path=/first; domain=shop.example; HttpOnly; PATH=/app");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->name, "SID");
  EXPECT_EQ(c->value, "abc");
  EXPECT_EQ(c->path, "/app");
  EXPECT_EQ(c->domain, "shop.example");
  c = parseSetCookie("SID=abc; Max-Age=60");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->path, "");
  EXPECT_EQ(c->domain, "");
  EXPECT_EQ(c->max_age, 60);
}

TEST(CookiesTest, DefaultPathIsTheRequestsDirectory) {  // RFC 6265 5.1.4
  EXPECT_EQ(defaultPath("/shop/login"), "/shop");
  EXPECT_EQ(defaultPath("/shop/account/login?next=/x/y"), "/shop/account");
  EXPECT_EQ(defaultPath("/shop/"), "/shop");
  EXPECT_EQ(defaultPath("/login"), "/");
  EXPECT_EQ(defaultPath("/"), "/");
  EXPECT_EQ(defaultPath(""), "/");
  EXPECT_EQ(defaultPath("*"), "/");
  EXPECT_EQ(defaultPath("/login?next=https://a/b/c"), "/");
  EXPECT_EQ(defaultPath("https://shop.example/app/login?x=1"), "/app");
  EXPECT_EQ(defaultPath("https://shop.example"), "/");
}

TEST(CookiesTest, CookiePathTakesAPathAttributeOnlyIfItStartsWithASlash) {
  SetCookie c;
  EXPECT_EQ(cookiePath(c, "/shop"), "/shop");
  c.path = "/app";
  EXPECT_EQ(cookiePath(c, "/shop"), "/app");
  c.path = "app";  // ignored by browsers (RFC 6265 5.2.4)
  EXPECT_EQ(cookiePath(c, "/shop"), "/shop");
}

TEST(CookiesTest, AnExpiredSetCookieNamesThePathAndDomainAndNeverCarriesBadBytes) {
  EXPECT_EQ(expiredSetCookie("SID", "/", ""),
            "SID=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(expiredSetCookie("SID", "/shop", "shop.example"),
            "SID=; Path=/shop; Domain=shop.example; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 "
            "GMT");
  EXPECT_EQ(expiredSetCookie("SID", "/a;b", "x\r\ny"),
            "SID=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
  // A cleared cookie is no session, and its lifetime says so.
  std::optional<SetCookie> parsed = parseSetCookie(expiredSetCookie("SID", "/", ""));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_FALSE(lifetimeOf(*parsed, std::chrono::system_clock::now(), cache::Seconds(60)));
}

}  // namespace
}  // namespace tessera::plugins::cookies
