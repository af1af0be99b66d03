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
};

// One Set-Cookie line; nullopt if a browser would ignore it (no '=').
std::optional<SetCookie> parseSetCookie(std::string_view line);

// The TTL of a cookie being set, capped at kMaxLifetime; nullopt if the Set-Cookie clears it (a
// logout). Max-Age wins over Expires, as in browsers; `fallback` when it has neither.
std::optional<cache::Seconds> lifetimeOf(const SetCookie& cookie,
                                         std::chrono::system_clock::time_point now,
                                         cache::Seconds fallback);

// Lower-case hex of SHA-256(value), or nullopt if OpenSSL fails (its error queue is cleared).
std::optional<std::string> sha256Hex(const EVP_MD* sha256, std::string_view value);

}  // namespace tessera::plugins::cookies
