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
  EXPECT_EQ(defaultPath("http://h?x=/a/b"), "/");  // a query right after the authority
  EXPECT_EQ(defaultPath("http://h#/a/b"), "/");
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
  constexpr std::string_view kExpired = "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";
  EXPECT_EQ(expiredSetCookie("SID", "/", "", false, false), "SID=; Path=/" + std::string(kExpired));
  EXPECT_EQ(expiredSetCookie("SID", "/shop", "shop.example", false, false),
            "SID=; Path=/shop; Domain=shop.example" + std::string(kExpired));
  // Spaces and commas are path bytes too (RFC 6265 4.1.1).
  EXPECT_EQ(expiredSetCookie("SID", "/a b,c", "", false, false),
            "SID=; Path=/a b,c" + std::string(kExpired));
  // What an attribute cannot carry makes no line at all: without it, it would drop another cookie.
  EXPECT_EQ(expiredSetCookie("SID", "/a;b", "", false, false), "");
  EXPECT_EQ(expiredSetCookie("SID", "/", "x\r\ny", false, false), "");
  EXPECT_EQ(expiredSetCookie("SID", "/caf\xc3\xa9", "", false, false), "");
  EXPECT_EQ(expiredSetCookie("SID", "/ ", "", false, false), "");
  // A cleared cookie is no session, and its lifetime says so.
  std::optional<SetCookie> parsed = parseSetCookie(expiredSetCookie("SID", "/", "", false, false));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_FALSE(lifetimeOf(*parsed, std::chrono::system_clock::now(), cache::Seconds(60)));
}

// Browsers take a __Secure- or __Host- cookie, and a partitioned one, only with Secure.
TEST(CookiesTest, AnExpiredSetCookieIsSecureWhereBrowsersRequireIt) {
  constexpr std::string_view kExpired = "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";
  EXPECT_EQ(expiredSetCookie("SID", "/", "", true, false),
            "SID=; Path=/" + std::string(kExpired) + "; Secure");
  EXPECT_EQ(expiredSetCookie("__Host-sid", "/", "", false, false),
            "__Host-sid=; Path=/" + std::string(kExpired) + "; Secure");
  EXPECT_EQ(expiredSetCookie("__Secure-sid", "/app", "a.example", false, false),
            "__Secure-sid=; Path=/app; Domain=a.example" + std::string(kExpired) + "; Secure");
  EXPECT_EQ(expiredSetCookie("SID", "/", "", false, true),
            "SID=; Path=/" + std::string(kExpired) + "; Secure; Partitioned");
  std::optional<SetCookie> c = parseSetCookie("SID=x; Secure; Partitioned; Path=/");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->partitioned);
}

TEST(CookiesTest, ASessionCookieIsKeyedOnItsPercentDecodedForm) {
  EXPECT_EQ(sessionCookieValue("abc"), "abc");
  EXPECT_EQ(sessionCookieValue("%61bc"), "abc");
  EXPECT_EQ(sessionCookieValue("%61%62%63"), "abc");
  EXPECT_EQ(sessionCookieValue("s%3Aabc.sig"), "s:abc.sig");  // Express's signed session
  EXPECT_EQ(sessionCookieValue("s%3aabc"), "s:abc");          // either case of hex digit
  // Kept as they are: '+', and a '%' without two hex digits after it.
  EXPECT_EQ(sessionCookieValue("a+b"), "a+b");
  EXPECT_EQ(sessionCookieValue("100%"), "100%");
  EXPECT_EQ(sessionCookieValue("%6"), "%6");
  EXPECT_EQ(sessionCookieValue("%zz%4"), "%zz%4");
  EXPECT_EQ(sessionCookieValue("%2541"), "%41");  // one pass: decoded once, as backends do
  EXPECT_EQ(sessionCookieValue(""), "");
}

}  // namespace
}  // namespace tessera::plugins::cookies
