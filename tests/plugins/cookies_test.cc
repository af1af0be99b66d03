// Cookie syntax shared by the plugins: Set-Cookie attributes, where a browser files a cookie, the
// line that makes it drop one, and the percent-decoded form session cookies are keyed on.

#include "plugins/cookies.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <memory>
#include <optional>
#include <string>

#include "plugins/encoding.h"

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

TEST(CookiesTest, PercentDecodingIsOnePassOverTwoHexDigitEscapes) {
  EXPECT_EQ(percentDecode("abc"), "abc");
  EXPECT_EQ(percentDecode("%61bc"), "abc");
  EXPECT_EQ(percentDecode("%61%62%63"), "abc");
  EXPECT_EQ(percentDecode("s%3Aabc.sig"), "s:abc.sig");  // Express's signed session
  EXPECT_EQ(percentDecode("s%3aabc"), "s:abc");          // either case of hex digit
  // Kept as they are: '+', and a '%' without two hex digits after it.
  EXPECT_EQ(percentDecode("a+b"), "a+b");
  EXPECT_EQ(percentDecode("100%"), "100%");
  EXPECT_EQ(percentDecode("%6"), "%6");
  EXPECT_EQ(percentDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(percentDecode("%2541"), "%41");  // one pass: decoded once, as backends do
  EXPECT_EQ(percentDecode(""), "");
}

TEST(CookiesTest, ASessionCookieIsKeyedOnItsPercentDecodedForm) {
  std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> sha256(EVP_MD_fetch(nullptr, "SHA256", nullptr),
                                                         &EVP_MD_free);
  ASSERT_TRUE(sha256);
  std::optional<std::string> plain = sessionCookieSha256Hex(sha256.get(), "abc");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain, sha256Hex(sha256.get(), "abc"));  // no '%': the value as it is
  EXPECT_EQ(sessionCookieSha256Hex(sha256.get(), "%61bc"), plain);
  EXPECT_EQ(sessionCookieSha256Hex(sha256.get(), "%61%62%63"), plain);
  EXPECT_NE(sessionCookieSha256Hex(sha256.get(), "%2561bc"), plain);  // decoded once only
}

}  // namespace
}  // namespace tessera::plugins::cookies
