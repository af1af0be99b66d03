#include "plugins/guard/guard_config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/config_fields.h"
#include "plugins/plugin.h"

namespace tessera::plugins::guard {
namespace {

using Family = IpAddress::Family;

// ::ffff:0:0/96, the IPv4-mapped range.
constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// inet_pton wants a NUL-terminated string: a copy on the stack keeps the data path free of
// allocation. Mapped addresses are left as IPv6 here; parseIp and parseCidr unmap them.
std::optional<IpAddress> parseAddress(std::string_view text) {
  char buffer[INET6_ADDRSTRLEN];
  // An embedded NUL would end the text early for inet_pton: "1.2.3.4\0junk" is not an address.
  if (text.empty() || text.size() >= sizeof(buffer) || text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  IpAddress ip;
  ip.family = text.find(':') == std::string_view::npos ? Family::kV4 : Family::kV6;
  if (inet_pton(ip.family == Family::kV4 ? AF_INET : AF_INET6, buffer, ip.bytes.data()) != 1) {
    return std::nullopt;
  }
  return ip;
}

bool isMapped(const IpAddress& ip) {
  return ip.family == Family::kV6 &&
         std::memcmp(ip.bytes.data(), kMappedPrefix, sizeof(kMappedPrefix)) == 0;
}

IpAddress unmapped(const IpAddress& ip) {
  IpAddress v4;
  std::copy(ip.bytes.begin() + 12, ip.bytes.end(), v4.bytes.begin());
  return v4;
}

void zeroHostBits(IpAddress& ip, int prefix) {
  for (int i = 0; i < static_cast<int>(ip.bytes.size()); ++i) {
    int keep = prefix - i * 8;
    if (keep >= 8) continue;
    ip.bytes[i] = keep <= 0 ? 0 : static_cast<uint8_t>(ip.bytes[i] & (0xff << (8 - keep)));
  }
}

// Digits only (from_chars alone would take "-0"), at most three: no prefix length needs more.
std::optional<int> prefixLength(std::string_view text, int max) {
  if (text.empty() || text.size() > 3 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  if (value > max) return std::nullopt;
  return value;
}

}  // namespace

std::optional<IpAddress> parseIp(std::string_view text) {
  std::optional<IpAddress> ip = parseAddress(text);
  if (ip && isMapped(*ip)) return unmapped(*ip);
  return ip;
}

std::optional<Cidr> parseCidr(std::string_view text) {
  size_t slash = text.find('/');
  std::optional<IpAddress> address = parseAddress(text.substr(0, slash));
  if (!address) return std::nullopt;
  int max = address->family == Family::kV4 ? 32 : 128;
  std::optional<int> prefix =
      slash == std::string_view::npos ? max : prefixLength(text.substr(slash + 1), max);
  if (!prefix) return std::nullopt;
  Cidr cidr{*address, *prefix};
  zeroHostBits(cidr.network, cidr.prefix);
  // Zeroing leaves the mapped form only with a prefix of 96 or more.
  if (isMapped(cidr.network)) cidr = Cidr{unmapped(cidr.network), cidr.prefix - 96};
  return cidr;
}

bool Cidr::contains(const IpAddress& ip) const {
  if (ip.family != network.family) return false;
  size_t whole = static_cast<size_t>(prefix / 8);
  if (std::memcmp(ip.bytes.data(), network.bytes.data(), whole) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip.bytes[whole] & mask) == network.bytes[whole];
}

bool GuardConfig::Blocklist::blocksUser(std::string_view user) const {
  return fields::contains(users, user);
}

bool GuardConfig::Blocklist::blocksDevice(std::string_view fingerprint) const {
  return fields::contains(devices, fingerprint);
}

bool GuardConfig::Blocklist::blocksIp(const IpAddress& ip) const {
  return std::find(ips.begin(), ips.end(), ip) != ips.end() ||
         std::any_of(cidrs.begin(), cidrs.end(),
                     [&](const Cidr& cidr) { return cidr.contains(ip); });
}

bool GuardConfig::Blocklist::blocksIp(std::string_view ip) const {
  std::optional<IpAddress> address = parseIp(ip);
  return address && blocksIp(*address);
}

namespace {

using Config = GuardConfig;
using fields::fail;
using fields::Item;

// A wider window lets a captured request be replayed for longer.
constexpr cache::Seconds kMaxWindow{60 * 60};
// The runtime holds a signed body in memory until its digest is checked.
constexpr uint64_t kMaxSignedBody = uint64_t{64} << 20;
constexpr uint64_t kMaxRequests = 1'000'000'000;
// Longer than a day is no longer a rate limit but a quota, and keeps counters in the store for
// as long.
constexpr cache::Seconds kMaxInterval{24 * 60 * 60};

constexpr std::string_view kDerivedComponents[] = {
    "@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"};

// The runtime compares it with the request's path: a query or fragment would never match, and
// spaces or control characters cannot be in a request line at all.
std::string pathPrefix(const Item& item) {
  static const std::string kExpected = "expected a path that starts with '/', like /api/orders";
  std::string text = fields::scalar(item, kExpected);
  if (text.empty() || text.front() != '/') fail(item.mark, item.path, kExpected);
  bool plain = std::all_of(text.begin(), text.end(),
                           [](char c) { return c > ' ' && c < 0x7f && c != '?' && c != '#'; });
  if (!plain) fail(item.mark, item.path, "expected a path without spaces, query or fragment");
  return text;
}

// Methods are case-sensitive (RFC 9110, 9.1), and every standard one is upper case: "post" in
// the config is taken to mean POST rather than a method no client sends.
std::string method(const Item& item) {
  std::string text = fields::scalar(item, "expected an HTTP method");
  if (!fields::isToken(text)) {
    fail(item.mark, item.path, "expected an HTTP method (an RFC 9110 token)");
  }
  std::transform(text.begin(), text.end(), text.begin(), [](char c) {
    return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
  });
  return text;
}

std::vector<Config::ProtectedRoute> protect(const Item& item) {
  std::vector<Config::ProtectedRoute> routes;
  fields::forEachEntry(item, [&](const Item& entry) {
    Config::ProtectedRoute route;
    std::set<std::string> seen = fields::forEachKey(entry, {"method", "path_prefix"},
                                                    [&](const std::string& key, const Item& value) {
                                                      if (key == "method") {
                                                        route.method = method(value);
                                                      } else {
                                                        route.path_prefix = pathPrefix(value);
                                                      }
                                                    });
    if (!seen.contains("path_prefix")) fail(entry.mark, entry.path + ".path_prefix", "required");
    for (size_t i = 0; i < routes.size(); ++i) {
      if (routes[i].method == route.method && routes[i].path_prefix == route.path_prefix) {
        fail(entry.mark, entry.path, "duplicate of " + item.path + "[" + std::to_string(i) + "]");
      }
    }
    routes.push_back(std::move(route));
  });
  return routes;
}

// RFC 9421 component names are lower case; header names are case-insensitive, so any spelling
// of one is taken.
std::string component(const Item& item) {
  static const std::string kExpected =
      "expected a header name or a derived component (@method, @target-uri, @authority, "
      "@scheme, @request-target, @path or @query)";
  std::string name = fields::lowerCase(fields::scalar(item, kExpected));
  if (name.starts_with('@') ? !fields::contains(kDerivedComponents, name)
                            : !fields::isToken(name)) {
    fail(item.mark, item.path, kExpected);
  }
  return name;
}

// Distinct addresses, as parseIp() makes them: "::ffff:192.0.2.7" is 192.0.2.7.
std::vector<IpAddress> addresses(const Item& item) {
  std::vector<IpAddress> out;
  fields::forEachEntry(item, [&](const Item& entry) {
    std::string text = fields::scalar(entry, "expected an IPv4 or IPv6 address");
    std::optional<IpAddress> ip = parseIp(text);
    if (!ip) {
      fail(entry.mark, entry.path,
           text.find('/') == std::string::npos
               ? "expected an IPv4 or IPv6 address"
               : "expected a single address (networks go under blocklist.cidrs)");
    }
    auto same = std::find(out.begin(), out.end(), *ip);
    if (same != out.end()) {
      fail(entry.mark, entry.path,
           "duplicate of " + item.path + "[" + std::to_string(same - out.begin()) + "]");
    }
    out.push_back(*ip);
  });
  return out;
}

// Distinct networks, as parseCidr() makes them: 10.0.0.0/8 and 10.1.2.3/8 are the same.
std::vector<Cidr> networks(const Item& item) {
  static const std::string kExpected =
      "expected an IPv4 or IPv6 network, like 203.0.113.0/24 or 2001:db8::/32";
  std::vector<Cidr> out;
  fields::forEachEntry(item, [&](const Item& entry) {
    std::string text = fields::scalar(entry, kExpected);
    std::optional<Cidr> cidr = parseCidr(text);
    if (!cidr) {
      std::string_view address = std::string_view(text).substr(0, text.find('/'));
      if (!parseIp(address)) fail(entry.mark, entry.path, kExpected);
      bool v6 = address.find(':') != std::string_view::npos;
      fail(entry.mark, entry.path,
           std::string("expected a prefix length from 0 to ") + (v6 ? "128" : "32") + " after '/'");
    }
    auto same = std::find(out.begin(), out.end(), *cidr);
    if (same != out.end()) {
      fail(entry.mark, entry.path,
           "duplicate of " + item.path + "[" + std::to_string(same - out.begin()) + "]");
    }
    out.push_back(*cidr);
  });
  return out;
}

Config::Blocklist blocklist(const Item& item) {
  Config::Blocklist out;
  fields::forEachKey(
      item, {"users", "devices", "ips", "cidrs"}, [&](const std::string& key, const Item& value) {
        if (key == "users") {
          out.users = fields::stringList(
              value, [](const Item& e) { return fields::nonEmpty(e, "expected a user name"); });
        } else if (key == "devices") {
          out.devices = fields::stringList(value, [](const Item& e) {
            return fields::nonEmpty(e, "expected a device fingerprint");
          });
        } else if (key == "ips") {
          out.ips = addresses(value);
        } else {
          out.cidrs = networks(value);
        }
      });
  return out;
}

Config::RateLimit::Per per(const Item& item) {
  static const std::string kExpected = "expected device, session or ip";
  std::string text = fields::scalar(item, kExpected);
  if (text == "device") return Config::RateLimit::Per::kDevice;
  if (text == "session") return Config::RateLimit::Per::kSession;
  if (text == "ip") return Config::RateLimit::Per::kIp;
  fail(item.mark, item.path, kExpected);
}

uint64_t requests(const Item& item) {
  static const std::string kExpected = "expected a whole number of requests";
  std::string text = fields::scalar(item, kExpected);
  uint64_t value = 0;
  // Digits only: from_chars alone would take a leading '-'.
  bool digits = !text.empty() &&
                std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (!digits) fail(item.mark, item.path, kExpected);
  if (value == 0 && ec == std::errc()) fail(item.mark, item.path, "must be at least 1");
  if (ec != std::errc() || value > kMaxRequests) {
    fail(item.mark, item.path, "must be at most 1000000000");
  }
  return value;
}

// The store counts whole seconds: rounding would quietly change the rate.
cache::Seconds interval(const Item& item) {
  cache::Millis value = fields::duration(item);
  if (value.count() % 1000 != 0) {
    fail(item.mark, item.path, "must be a whole number of seconds (the store counts seconds)");
  }
  if (value > kMaxInterval) fail(item.mark, item.path, "must be at most 24h");
  return std::chrono::duration_cast<cache::Seconds>(value);
}

Config::RateLimit rateLimit(const Item& item) {
  Config::RateLimit limit;
  std::set<std::string> seen = fields::forEachKey(item, {"per", "requests", "interval"},
                                                  [&](const std::string& key, const Item& value) {
                                                    if (key == "per") {
                                                      limit.per = per(value);
                                                    } else if (key == "requests") {
                                                      limit.requests = requests(value);
                                                    } else {
                                                      limit.interval = interval(value);
                                                    }
                                                  });
  for (const char* required : {"per", "requests", "interval"}) {
    if (!seen.contains(required)) fail(item.mark, item.path + "." + required, "required");
  }
  return limit;
}

// What a request must carry, and who may send it.
void applyRequest(const std::string& key, const Item& item, Config& config) {
  if (key == "type") {
    if (fields::scalar(item, "expected guard") != "guard")
      fail(item.mark, item.path, "expected guard");
  } else if (key == "session_cookie") {
    config.session_cookie = fields::cookieName(item);
  } else if (key == "endpoint_prefix") {
    config.endpoint_prefix = fields::endpointPrefix(item);
  } else if (key == "protect") {
    config.protect = protect(item);
  } else if (key == "window") {
    config.window = fields::wholeSeconds(
        item, kMaxWindow,
        "must be at most 1h (a wider window lets a captured request be replayed for longer)");
  } else if (key == "require_components") {
    config.require_components = fields::stringList(item, component);
  } else if (key == "max_signed_body") {
    config.max_signed_body =
        fields::size(item, kMaxSignedBody,
                     "must be at most 64MiB (a signed body is held in memory until checked)");
  } else if (key == "blocklist") {
    config.blocklist = blocklist(item);
  } else if (key == "rate_limit") {
    config.rate_limit = rateLimit(item);
  } else if (key == "user_header") {
    config.user_header = fields::headerName(item);
  }
}

// How devices are told apart, and how the plugin keeps its state.
void applyState(const std::string& key, const Item& item, Config& config) {
  if (key == "seal_responses") {
    config.seal_responses = fields::boolean(item);
  } else if (key == "attributes") {
    config.attributes = fields::stringList(item, fields::attribute);
  } else if (key == "ipv4_prefix") {
    config.ipv4_prefix = fields::prefix(item, 32);
  } else if (key == "ipv6_prefix") {
    config.ipv6_prefix = fields::prefix(item, 128);
  } else if (key == "timeout") {
    config.timeout = fields::duration(item);
  } else if (key == "key_lifetime") {
    config.key_lifetime = fields::cookieLifetime(item);
  }
}

}  // namespace

GuardConfig parseGuardConfig(const YAML::Node& node) {
  Config config;
  std::set<std::string> seen = fields::forEachKey(
      Item{node, "", node.Mark()},
      {"type", "session_cookie", "endpoint_prefix", "protect", "window", "require_components",
       "max_signed_body", "blocklist", "rate_limit", "seal_responses", "attributes", "ipv4_prefix",
       "ipv6_prefix", "timeout", "key_lifetime", "user_header"},
      [&](const std::string& key, const Item& item) {
        applyRequest(key, item, config);
        applyState(key, item, config);
      });
  if (!seen.contains("session_cookie")) fail(node.Mark(), "session_cookie", "required");
  return config;
}

}  // namespace tessera::plugins::guard
