#pragma once

// Cookie syntax for plugins (RFC 6265, read leniently as browsers and backends do), and the
// hashed form under which plugins keep cookie-keyed records in the store.

#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.h"

namespace tessera::plugins::cookies {

// Browsers keep no cookie longer (RFC 6265bis, 5.5); it also keeps TTLs far from overflow.
inline constexpr cache::Seconds kMaxLifetime{int64_t{400} * 24 * 60 * 60};

// The first non-empty value of cookie `name` in one Cookie line ("a=b; c=d"). Quotes around a
// value are dropped: backends read "abc" and abc as the same session.
std::optional<std::string_view> cookieIn(std::string_view line, std::string_view name);

// The first non-empty value of cookie `name` over every Cookie line.
std::optional<std::string_view> findCookie(const std::vector<std::string_view>& lines,
                                           std::string_view name);

// How many times the request carries a non-empty value for one of `names`, over every line.
int countSessionCookies(const std::vector<std::string_view>& lines,
                        const std::vector<std::string>& names);

bool equalsIgnoreCase(std::string_view a, std::string_view b);

struct SetCookie {
  std::string_view name;
  std::string_view value;
  std::optional<int64_t> max_age;
  bool has_expires = false;
  std::optional<std::chrono::sys_seconds> expires;  // nullopt with has_expires: unparsable
  std::string_view path;     // the Path attribute as written; empty if absent
  std::string_view domain;   // the Domain attribute as written; empty if absent
  bool partitioned = false;  // CHIPS: the cookie is kept per top-level site
};

// One Set-Cookie line; nullopt if a browser would ignore it (no '=').
std::optional<SetCookie> parseSetCookie(std::string_view line);

// The TTL of a cookie being set, capped at kMaxLifetime; nullopt if the Set-Cookie clears it (a
// logout). Max-Age wins over Expires, as in browsers; `fallback` when it has neither.
std::optional<cache::Seconds> lifetimeOf(const SetCookie& cookie,
                                         std::chrono::system_clock::time_point now,
                                         cache::Seconds fallback);

// The path a browser files a cookie under when its Set-Cookie has no usable Path (RFC 6265 5.1.4):
// the path of the request it answered (`request_target`, origin or absolute form) up to, not
// including, its last '/'; "/" if that leaves nothing.
std::string defaultPath(std::string_view request_target);

// The path a browser files a cookie under (RFC 6265 5.2.4): its Path if that starts with '/',
// else `default_path` (see defaultPath()).
std::string_view cookiePath(const SetCookie& cookie, std::string_view default_path);

// A Set-Cookie value that makes a browser drop cookie `name` filed under `path` and `domain`
// (empty: a host-only cookie) and, if `partitioned`, in its partition: all as the cookie was set.
// It is Secure when `secure` or the name has a __Secure- or __Host- prefix (browsers refuse such a
// cookie without it). Empty if `path` or `domain` holds bytes a Set-Cookie attribute cannot carry:
// a line without them would drop another cookie, or none.
std::string expiredSetCookie(std::string_view name, std::string_view path, std::string_view domain,
                             bool secure, bool partitioned);

// Lower-case hex of SHA-256(value), or nullopt if OpenSSL fails (its error queue is cleared).
std::optional<std::string> sha256Hex(const EVP_MD* sha256, std::string_view value);

// sha256Hex() of a session cookie's value as the backend reads it, for keying records on it: PHP,
// Rack and Node's cookie package percent-decode cookie values (percentDecode(), encoding.h), so
// to such a backend "%61bc" is the session "abc"; keyed on the raw bytes, a bound or revoked
// session would come through under another spelling. A backend that does not decode loses
// nothing: two random session ids are never each other's percent-encoding. A value without '%'
// is hashed as it is, with no copy.
std::optional<std::string> sessionCookieSha256Hex(const EVP_MD* sha256, std::string_view value);

}  // namespace tessera::plugins::cookies
