#include "plugins/cookies.h"

#include <openssl/err.h>

#include <algorithm>

#include "plugins/encoding.h"

namespace tessera::plugins::cookies {
namespace {

using std::chrono::sys_seconds;

std::string_view trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

// Backends read "abc" and abc as the same session; keying both alike keeps a client from
// dodging its binding by adding quotes.
std::string_view unquote(std::string_view value) {
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    return value.substr(1, value.size() - 2);
  }
  return value;
}

// Cuts `text` at the first ';': returns the part before, leaves the rest in `text`.
std::string_view nextPart(std::string_view& text) {
  size_t semi = text.find(';');
  std::string_view part = text.substr(0, semi);
  text = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
  return part;
}

// RFC 6265 5.2.2: "-"? DIGIT+, anything else and the attribute is ignored. Huge values saturate.
std::optional<int64_t> parseMaxAge(std::string_view text) {
  bool negative = text.starts_with('-');
  std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  if (negative) return -1;  // only "<= 0" matters
  int64_t value = 0;
  for (char c : digits) {
    value = std::min<int64_t>(value * 10 + (c - '0'), kMaxLifetime.count());
  }
  return value;
}

// Reads the fields of an HTTP date one by one.
class DateReader {
 public:
  explicit DateReader(std::string_view text) : text_(text) {}

  std::optional<int> number(size_t min_digits, size_t max_digits) {
    size_t n = 0;
    int value = 0;
    while (n < max_digits && n < text_.size() && text_[n] >= '0' && text_[n] <= '9') {
      value = value * 10 + (text_[n++] - '0');
    }
    if (n < min_digits) return std::nullopt;
    text_.remove_prefix(n);
    return value;
  }
  bool separator(std::string_view allowed) {
    if (text_.empty() || allowed.find(text_.front()) == std::string_view::npos) return false;
    text_.remove_prefix(1);
    return true;
  }
  std::optional<unsigned> month() {
    static constexpr std::string_view kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                   "jul", "aug", "sep", "oct", "nov", "dec"};
    for (unsigned i = 0; i < 12; ++i) {
      if (equalsIgnoreCase(text_.substr(0, 3), kMonths[i])) {
        text_.remove_prefix(3);
        return i + 1;
      }
    }
    return std::nullopt;
  }
  std::string_view rest() const { return text_; }

 private:
  std::string_view text_;
};

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and the dashed forms backends still send
// ("Sun, 06-Nov-1994 ..." from PHP, RFC 850's "Sunday, 06-Nov-94 ..."). Anything else: nullopt.
std::optional<sys_seconds> parseHttpDate(std::string_view text) {
  size_t comma = text.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  DateReader r(trim(text.substr(comma + 1)));
  std::optional<int> day = r.number(1, 2);
  std::optional<unsigned> month = day && r.separator(" -") ? r.month() : std::nullopt;
  std::optional<int> year = month && r.separator(" -") ? r.number(2, 4) : std::nullopt;
  std::optional<int> hour = year && r.separator(" ") ? r.number(2, 2) : std::nullopt;
  std::optional<int> minute = hour && r.separator(":") ? r.number(2, 2) : std::nullopt;
  std::optional<int> second = minute && r.separator(":") ? r.number(2, 2) : std::nullopt;
  if (!second || !r.separator(" ") || trim(r.rest()) != "GMT") return std::nullopt;
  if (*year < 100) *year += *year < 70 ? 2000 : 1900;  // RFC 6265 5.1.1
  std::chrono::year_month_day date{std::chrono::year(*year), std::chrono::month(*month),
                                   std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok() || *year < 1601 || *hour > 23 || *minute > 59 || *second > 59) {
    return std::nullopt;
  }
  return std::chrono::sys_days(date) + std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
         std::chrono::seconds(*second);
}

}  // namespace

// The first non-empty value of cookie `name` in one Cookie line ("a=b; c=d").
std::optional<std::string_view> cookieIn(std::string_view line, std::string_view name) {
  while (!line.empty()) {
    std::string_view pair = nextPart(line);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || trim(pair.substr(0, eq)) != name) continue;
    // An empty value carries no session: it is what a cleared cookie leaves behind.
    std::string_view value = unquote(trim(pair.substr(eq + 1)));
    if (!value.empty()) return value;
  }
  return std::nullopt;
}

// How many times the request carries a non-empty value for one of `names`, over every line.
int countSessionCookies(const std::vector<std::string_view>& lines,
                        const std::vector<std::string>& names) {
  int n = 0;
  for (std::string_view line : lines) {
    while (!line.empty()) {
      std::string_view pair = nextPart(line);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      std::string_view name = trim(pair.substr(0, eq));
      bool ours = std::find(names.begin(), names.end(), name) != names.end();
      if (ours && !unquote(trim(pair.substr(eq + 1))).empty()) ++n;
    }
  }
  return n;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
  });
}

std::optional<SetCookie> parseSetCookie(std::string_view line) {
  std::string_view pair = nextPart(line);
  size_t eq = pair.find('=');
  // RFC 6265 5.2: a set-cookie-string without '=' is ignored by the browser, so by us too.
  if (eq == std::string_view::npos) return std::nullopt;
  SetCookie cookie;
  cookie.name = trim(pair.substr(0, eq));
  cookie.value = unquote(trim(pair.substr(eq + 1)));
  while (!line.empty()) {
    std::string_view attribute = nextPart(line);
    size_t aeq = attribute.find('=');
    std::string_view name = trim(attribute.substr(0, aeq));
    std::string_view value =
        aeq == std::string_view::npos ? std::string_view() : trim(attribute.substr(aeq + 1));
    if (equalsIgnoreCase(name, "max-age")) {
      if (std::optional<int64_t> max_age = parseMaxAge(value)) cookie.max_age = max_age;
    } else if (equalsIgnoreCase(name, "expires")) {
      cookie.has_expires = true;
      cookie.expires = parseHttpDate(value);
    } else if (equalsIgnoreCase(name, "path")) {
      cookie.path = value;  // the last one wins, as in browsers
    } else if (equalsIgnoreCase(name, "domain")) {
      cookie.domain = value;
    } else if (equalsIgnoreCase(name, "partitioned")) {
      cookie.partitioned = true;
    }
  }
  return cookie;
}

std::string defaultPath(std::string_view request_target) {
  std::string_view path = request_target;
  if (size_t scheme = path.find("://"); scheme != std::string_view::npos && path.front() != '/') {
    // The authority ends at the first '/', '?' or '#'; only a '/' starts a path.
    size_t end = path.find_first_of("/?#", scheme + 3);
    path =
        end == std::string_view::npos || path[end] != '/' ? std::string_view() : path.substr(end);
  }
  path = path.substr(0, path.find_first_of("?#"));
  size_t last = path.rfind('/');
  if (path.empty() || path.front() != '/' || last == 0) return "/";
  return std::string(path.substr(0, last));
}

std::string_view cookiePath(const SetCookie& cookie, std::string_view default_path) {
  return !cookie.path.empty() && cookie.path.front() == '/' ? cookie.path : default_path;
}

namespace {

// What a Set-Cookie attribute value may hold (RFC 6265 4.1.1: any CHAR but CTLs and ';'), and
// no leading or trailing space, which a browser would trim away.
bool isAttributeValue(std::string_view value) {
  return (value.empty() || (value.front() != ' ' && value.back() != ' ')) &&
         std::all_of(value.begin(), value.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f && c != ';'; });
}

}  // namespace

std::string expiredSetCookie(std::string_view name, std::string_view path, std::string_view domain,
                             bool secure, bool partitioned) {
  if (!isAttributeValue(path) || !isAttributeValue(domain)) return {};
  std::string line(name);
  line += "=";
  if (!path.empty()) line.append("; Path=").append(path);
  if (!domain.empty()) line.append("; Domain=").append(domain);
  line += "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";
  if (secure || partitioned || name.starts_with("__Secure-") || name.starts_with("__Host-")) {
    line += "; Secure";
  }
  if (partitioned) line += "; Partitioned";
  return line;
}

// The binding's TTL for a cookie being set; nullopt if the Set-Cookie clears it (a logout).
// Max-Age wins over Expires, as in browsers.
std::optional<cache::Seconds> lifetimeOf(const SetCookie& cookie,
                                         std::chrono::system_clock::time_point now,
                                         cache::Seconds fallback) {
  if (cookie.value.empty()) return std::nullopt;
  cache::Seconds ttl = fallback;
  if (cookie.max_age) {
    ttl = cache::Seconds(*cookie.max_age);
  } else if (cookie.expires) {
    // In whole seconds: a far Expires (year 9999) would overflow system_clock's nanoseconds.
    // Flooring `now` rounds the remaining time up.
    ttl = *cookie.expires - std::chrono::floor<cache::Seconds>(now);
  }
  if (ttl.count() <= 0) return std::nullopt;
  return std::min(ttl, kMaxLifetime);
}

std::optional<std::string_view> findCookie(const std::vector<std::string_view>& lines,
                                           std::string_view name) {
  for (std::string_view line : lines) {
    if (std::optional<std::string_view> value = cookieIn(line, name)) return value;
  }
  return std::nullopt;
}

std::optional<std::string> sha256Hex(const EVP_MD* sha256, std::string_view value) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(value.data(), value.size(), digest, &size, sha256, nullptr) != 1) {
    // A stale entry would be misread by the next SSL_get_error() on this worker thread.
    ERR_clear_error();
    return std::nullopt;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

std::optional<std::string> sessionCookieSha256Hex(const EVP_MD* sha256, std::string_view value) {
  if (value.find('%') == std::string_view::npos) return sha256Hex(sha256, value);
  return sha256Hex(sha256, percentDecode(value));
}

}  // namespace tessera::plugins::cookies
