#include "plugins/migration/migration_config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/config_fields.h"

namespace tessera::plugins::migration {
namespace {

using Config = MigrationConfig;
using fields::fail;
using fields::Item;

// A pass is a bearer credential until it is redeemed: a long life widens the window to steal it.
constexpr cache::Seconds kMaxPassTtl{60 * 60};
// A wider window lets a captured pass request be replayed for longer.
constexpr cache::Seconds kMaxRequestWindow{60 * 60};

constexpr std::string_view kKeys[] = {
    // Either role.
    "type", "role", "endpoint_prefix", "attributes", "ipv4_prefix", "ipv6_prefix", "timeout",
    // role: origin (kOriginKeys).
    "session_cookie", "user_header", "signing_key", "encryption_key", "pass_ttl", "request_window",
    "on_reissue", "session_lifetime",
    // role: target (kTargetKeys).
    "origin", "origin_plugin", "origin_tls", "origin_timeout", "permit_cookie", "permit_ttl",
    "identity_headers"};
constexpr std::string_view kOriginKeys[] = {"session_cookie", "user_header",     "signing_key",
                                            "encryption_key", "pass_ttl",        "request_window",
                                            "on_reissue",     "session_lifetime"};
constexpr std::string_view kTargetKeys[] = {"origin",          "origin_plugin", "origin_tls",
                                            "origin_timeout",  "permit_cookie", "permit_ttl",
                                            "identity_headers"};

// A DNS name (letters, digits, '-', dot-separated labels) or an IPv4 literal.
bool isHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '-') {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return label > 0;
}

bool isIpv6(std::string_view host) {
  in6_addr addr{};
  return inet_pton(AF_INET6, std::string(host).c_str(), &addr) == 1;
}

bool isPort(std::string_view text) {
  int port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  return !text.empty() && text.front() != '-' && ec == std::errc() &&
         end == text.data() + text.size() && port >= 1 && port <= 65535;
}

// "local", or https://HOST[:PORT]: the target appends the endpoint paths itself, so anything after
// the authority would end up in the middle of them.
std::string origin(const Item& item) {
  static const std::string kExpected = "expected local or https://HOST[:PORT]";
  std::string text = fields::scalar(item, kExpected);
  if (text == "local") return text;
  std::string_view view = text;
  if (view.starts_with("http://")) {
    fail(item.mark, item.path,
         "http:// is refused: the origin is called with mutual TLS; expected https://HOST[:PORT]");
  }
  if (!view.starts_with("https://")) fail(item.mark, item.path, kExpected);
  std::string_view authority = view.substr(8);
  if (authority.find_first_of("/?#") != std::string_view::npos) {
    fail(item.mark, item.path, "expected https://HOST[:PORT] with no path, query or fragment");
  }
  if (authority.find('@') != std::string_view::npos) {
    fail(item.mark, item.path, "expected https://HOST[:PORT] with no user name");
  }
  std::string_view host = authority;
  std::string_view rest;
  bool host_ok = false;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    host = authority.substr(1, close == std::string_view::npos ? 0 : close - 1);
    host_ok = close != std::string_view::npos && isIpv6(host);
    if (host_ok) rest = authority.substr(close + 1);
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    host_ok = isHostName(host);
    if (colon != std::string_view::npos) rest = authority.substr(colon);
  }
  if (!host_ok) {
    fail(item.mark, item.path, "expected a host name or an IP address (IPv6 in brackets)");
  }
  if (!rest.empty() && (rest.front() != ':' || !isPort(rest.substr(1)))) {
    fail(item.mark, item.path, "expected a port from 1 to 65535 after the host");
  }
  return text;
}

OutboundTls originTls(const Item& item) {
  OutboundTls tls;
  std::set<std::string> seen = fields::forEachKey(
      item, {"client_cert", "client_key", "ca"}, [&](const std::string& key, const Item& value) {
        std::string file = fields::nonEmpty(value, "expected a file name");
        if (key == "client_cert") {
          tls.client_cert = file;
        } else if (key == "client_key") {
          tls.client_key = file;
        } else {
          tls.ca = file;
        }
      });
  for (const char* required : {"client_cert", "client_key", "ca"}) {
    if (!seen.contains(required)) fail(item.mark, item.path + "." + required, "required");
  }
  return tls;
}

// Only `user` for now; the map leaves room for more identity fields.
std::string userIdentityHeader(const Item& item) {
  std::string header;
  std::set<std::string> seen = fields::forEachKey(
      item, {"user"},
      [&](const std::string&, const Item& value) { header = fields::forwardedHeaderName(value); });
  if (!seen.contains("user")) fail(item.mark, item.path + ".user", "required");
  return header;
}

void applyCommon(const std::string& key, const Item& item, Config& config) {
  if (key == "type") {
    if (fields::scalar(item, "expected migration") != "migration") {
      fail(item.mark, item.path, "expected migration");
    }
  } else if (key == "endpoint_prefix") {
    config.endpoint_prefix = fields::endpointPrefix(item);
  } else if (key == "attributes") {
    config.attributes = fields::stringList(item, fields::attribute);
  } else if (key == "ipv4_prefix") {
    config.ipv4_prefix = fields::prefix(item, 32);
  } else if (key == "ipv6_prefix") {
    config.ipv6_prefix = fields::prefix(item, 128);
  } else if (key == "timeout") {
    config.timeout = fields::duration(item);
  }
}

// A response header name, or "claim:NAME": a top-level claim of the token a jwt plugin verified
// earlier on the route (the name the jwt plugin shares it under, Context::share).
std::string userSource(const Item& item) {
  std::string text = fields::scalar(item, "expected a header name or claim:NAME");
  if (!text.starts_with("claim:")) return fields::headerName(item);
  if (text.size() == 6 || text.size() > 256) {
    fields::fail(item.mark, item.path, "expected a claim name after \"claim:\"");
  }
  return text;
}

void applyOrigin(const std::string& key, const Item& item, Config& config) {
  if (key == "session_cookie") {
    config.session_cookie = fields::cookieName(item);
  } else if (key == "user_header") {
    config.user_header = userSource(item);
  } else if (key == "signing_key") {
    config.signing_key = fields::nonEmpty(item, "expected a key file name");
  } else if (key == "encryption_key") {
    config.encryption_key = fields::nonEmpty(item, "expected a key file name");
  } else if (key == "pass_ttl") {
    config.pass_ttl = fields::wholeSeconds(
        item, kMaxPassTtl, "must be at most 1h (a pass is a bearer credential until redeemed)");
  } else if (key == "request_window") {
    config.request_window = fields::wholeSeconds(
        item, kMaxRequestWindow,
        "must be at most 1h (a wider window lets a captured request be replayed for longer)");
  } else if (key == "on_reissue") {
    config.on_reissue = fields::choice(item, "revoke", Config::OnReissue::kRevoke, "replace",
                                       Config::OnReissue::kReplace);
  } else if (key == "session_lifetime") {
    config.session_lifetime = fields::cookieLifetime(item);
  }
}

void applyTarget(const std::string& key, const Item& item, Config& config) {
  if (key == "origin") {
    config.origin = origin(item);
  } else if (key == "origin_plugin") {
    config.origin_plugin = fields::nonEmpty(item, "expected a plugin instance name");
  } else if (key == "origin_tls") {
    config.origin_tls = originTls(item);
  } else if (key == "origin_timeout") {
    config.origin_timeout = fields::duration(item);
  } else if (key == "permit_cookie") {
    config.permit_cookie = fields::cookieName(item);
  } else if (key == "permit_ttl") {
    config.permit_ttl = fields::cookieLifetime(item);
  } else if (key == "identity_headers") {
    config.user_identity_header = userIdentityHeader(item);
  }
}

const fields::Entry* find(const std::vector<fields::Entry>& entries, std::string_view key) {
  auto it = std::find_if(entries.begin(), entries.end(),
                         [&](const fields::Entry& entry) { return entry.key == key; });
  return it == entries.end() ? nullptr : &*it;
}

void checkRequired(const std::vector<fields::Entry>& entries, const YAML::Node& node,
                   bool is_origin) {
  static constexpr std::string_view kOrigin[] = {"session_cookie", "user_header", "signing_key",
                                                 "encryption_key"};
  static constexpr std::string_view kTarget[] = {"permit_cookie", "identity_headers"};
  for (std::string_view key : is_origin ? std::span<const std::string_view>(kOrigin)
                                        : std::span<const std::string_view>(kTarget)) {
    if (find(entries, key) == nullptr) {
      fail(node.Mark(), std::string(key),
           is_origin ? "required with role: origin" : "required with role: target");
    }
  }
}

// What only makes sense together: the TLS files with a remote origin, an instance name with a
// local one.
void checkOrigin(const std::vector<fields::Entry>& entries, const Config& config) {
  bool local = config.origin == "local";
  const fields::Entry* tls = find(entries, "origin_tls");
  if (local && tls != nullptr) fail(tls->key_mark, "origin_tls", "only with an https origin");
  if (!local && tls == nullptr) {
    fail(find(entries, "origin")->value.mark, "origin_tls", "required with an https origin");
  }
  const fields::Entry* plugin = find(entries, "origin_plugin");
  if (!local && plugin != nullptr) {
    fail(plugin->key_mark, "origin_plugin", "only with origin: local");
  }
}

}  // namespace

MigrationConfig parseMigrationConfig(const YAML::Node& node) {
  // Every key is checked before any value: a role written after its keys still decides them.
  std::vector<fields::Entry> entries = fields::mapEntries(Item{node, "", node.Mark()}, kKeys);
  const fields::Entry* role = find(entries, "role");
  if (role == nullptr) fail(node.Mark(), "role", "required");
  Config config;
  config.role =
      fields::choice(role->value, "origin", Config::Role::kOrigin, "target", Config::Role::kTarget);
  bool is_origin = config.role == Config::Role::kOrigin;
  for (const fields::Entry& entry : entries) {
    if (is_origin && fields::contains(kTargetKeys, entry.key)) {
      fail(entry.key_mark, entry.key, "only for role: target");
    }
    if (!is_origin && fields::contains(kOriginKeys, entry.key)) {
      fail(entry.key_mark, entry.key, "only for role: origin");
    }
    applyCommon(entry.key, entry.value, config);
    is_origin ? applyOrigin(entry.key, entry.value, config)
              : applyTarget(entry.key, entry.value, config);
  }
  checkRequired(entries, node, is_origin);
  if (!is_origin) checkOrigin(entries, config);
  return config;
}

}  // namespace tessera::plugins::migration
