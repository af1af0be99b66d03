#pragma once

// The `guard` plugin's configuration: parsed once per config snapshot from the plugin's YAML node,
// then shared read-only by every worker (the runtime is guard.h). Also the address and network
// types the blocklist is matched with, which the runtime reuses for entries added while it runs.
//
//   type: guard
//   session_cookie: SESSIONID            # required: the application's session cookie
//   endpoint_prefix: /_tessera/          # where the plugin's endpoints live, on its routes
//   protect:                             # routes whose requests must be signed (none when absent)
//     - { method: POST, path_prefix: /api/orders }   # method: any when absent
//   window: 60s                          # |created - server time| allowed; at most 1h
//   require_components: ["@method", "@target-uri", "content-digest"]   # what a signature covers
//   max_signed_body: 1MiB                # a size, as everywhere in the config; at most 64MiB
//   blocklist:
//     users: [alice]                     # as user_header names them, or the session's user that a
//                                        # migration plugin listed before shares
//     devices: ["ip=192.0.2.0/24;user_agent=curl/8.5.0"]   # device fingerprints (`attributes`)
//     ips: [192.0.2.7, "2001:db8::7"]
//     cidrs: [203.0.113.0/24, "2001:db8::/32"]
//   rate_limit: { per: device, requests: 10, interval: 60s }   # per: device | session | ip
//   seal_responses: false
//   attributes: [ip, user_agent]         # the device fingerprint (as session_binding's)
//   ipv4_prefix: 32                      # 0..32
//   ipv6_prefix: 64                      # 0..128
//   timeout: 200ms                       # deadline of each store call
//   key_lifetime: 24h                    # an agreed key's life when the cookie's is unknown
//   user_header: X-User-Id               # request header naming the user (set by jwt or migration
//                                        # earlier on the route)

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.h"

namespace YAML {
class Node;
}

namespace tessera::plugins::guard {

// An IP address, in network byte order. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is kept as
// the IPv4 address it maps: a dual-stack listener reports IPv4 clients in that form.
struct IpAddress {
  enum class Family : uint8_t { kV4, kV6 };
  Family family = Family::kV4;
  std::array<uint8_t, 16> bytes{};  // IPv4: the first 4, the rest zero

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// An address as text, as the proxy reports a client ("192.0.2.7", "::1", "::ffff:192.0.2.7") and
// as inet_pton reads it: no port, brackets, zone id or prefix. nullopt on anything else.
// Allocation-free: it runs on the data path.
std::optional<IpAddress> parseIp(std::string_view text);

// A network: `network` has every bit past `prefix` zeroed (parseCidr makes sure of it).
struct Cidr {
  IpAddress network;
  int prefix = 0;  // 0..32 for IPv4, 0..128 for IPv6

  // An address of the other family never matches: 0.0.0.0/0 is every IPv4 client (IPv4-mapped
  // ones included), ::/0 every IPv6 client (IPv4-mapped ones excluded). Allocation-free.
  bool contains(const IpAddress& ip) const;

  friend bool operator==(const Cidr&, const Cidr&) = default;
};

// "ADDRESS/PREFIX", or a bare address (/32 or /128). Host bits are zeroed: "10.1.2.3/8" is
// 10.0.0.0/8. An IPv4-mapped network (::ffff:a.b.c.d/96..128) becomes the IPv4 network it maps
// (/0..32), so that it matches what parseIp() makes of the same clients. nullopt when malformed
// or when the prefix is over 32 (IPv4) or 128 (IPv6).
std::optional<Cidr> parseCidr(std::string_view text);

struct GuardConfig {
  // A route whose requests must carry a valid signature.
  struct ProtectedRoute {
    std::string method;       // upper case; empty: any method
    std::string path_prefix;  // starts with '/'; compared with the request's path
  };

  struct RateLimit {
    enum class Per { kDevice, kSession, kIp };
    // All three are required in the config.
    Per per = Per::kDevice;
    uint64_t requests = 0;       // 1..1e9 per interval
    cache::Seconds interval{0};  // whole seconds, 1s..24h
  };

  // Requests refused whatever they carry. The lists are short and matched by scanning them; the
  // matchers allocate nothing.
  struct Blocklist {
    std::vector<std::string> users;    // exact, as user_header carries them
    std::vector<std::string> devices;  // exact, as Context::deviceFingerprint makes them
    std::vector<IpAddress> ips;
    std::vector<Cidr> cidrs;

    bool blocksUser(std::string_view user) const;
    bool blocksDevice(std::string_view fingerprint) const;
    // In ips or in one of cidrs.
    bool blocksIp(const IpAddress& ip) const;
    // As above, for the client address as the proxy gives it (Context::clientIp()). A text
    // parseIp() refuses is blocked by nothing here.
    bool blocksIp(std::string_view ip) const;
  };

  std::string session_cookie;                  // exact (cookie names are case-sensitive)
  std::string endpoint_prefix = "/_tessera/";  // starts and ends with '/'
  std::vector<ProtectedRoute> protect;         // empty: no route needs a signature
  // |created - server time| a signature may show; whole seconds, rounded up; at most 1h.
  cache::Seconds window{60};
  // RFC 9421 component identifiers every signature must cover: derived components ("@method")
  // and header names, all lower case, distinct, never empty.
  std::vector<std::string> require_components{"@method", "@target-uri", "content-digest"};
  uint64_t max_signed_body = uint64_t{1} << 20;  // bytes; at most 64 MiB
  Blocklist blocklist;
  std::optional<RateLimit> rate_limit;  // nullopt: no limit
  bool seal_responses = false;
  // As Context::deviceFingerprint takes them ("header:NAME" with NAME lower-cased).
  std::vector<std::string> attributes{"ip", "user_agent"};
  int ipv4_prefix = 32;
  int ipv6_prefix = 64;
  cache::Millis timeout{200};
  // Whole seconds, rounded up; at most 400 days.
  cache::Seconds key_lifetime{24 * 60 * 60};
  std::string user_header;  // as written; empty: none
};

// Throws PluginConfigError (key path relative to `node`, 1-based line and column) on an unknown,
// duplicate, missing or malformed key.
GuardConfig parseGuardConfig(const YAML::Node& node);

}  // namespace tessera::plugins::guard
