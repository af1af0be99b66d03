#pragma once

// The `session_binding` plugin's configuration: parsed once per config snapshot from the plugin's
// YAML node, then shared read-only by every worker (the runtime is session_binding.h).
//
//   type: session_binding
//   cookies: [SESSIONID]            # required, non-empty: names of the session cookies to bind
//   attributes: [ip, user_agent]    # the device fingerprint: ip | ja4 | user_agent | header:NAME
//   ipv4_prefix: 32                 # 0..32: how much of an IPv4 client address is the device
//   ipv6_prefix: 64                 # 0..128
//   on_mismatch: reject             # reject (403) | log (pass, audit)
//   unknown: allow                  # a cookie never seen set, or no answer from the store
//   default_lifetime: 24h           # binding TTL when Set-Cookie has neither Max-Age nor Expires
//   timeout: 50ms                   # store lookup deadline

#include <string>
#include <vector>

#include "cache/store.h"

namespace YAML {
class Node;
}

namespace tessera::plugins {

struct SessionBindingConfig {
  enum class OnMismatch { kReject, kLog };
  enum class Unknown { kAllow, kReject };

  // Cookie names, exact (cookie names are case-sensitive). When a request carries several, the
  // first in this list is the one checked.
  std::vector<std::string> cookies;
  // As Context::deviceFingerprint takes them; the NAME of "header:NAME" is lower-cased so that a
  // change of spelling in the config does not change every device's fingerprint.
  std::vector<std::string> attributes{"ip", "user_agent"};
  int ipv4_prefix = 32;
  int ipv6_prefix = 64;
  OnMismatch on_mismatch = OnMismatch::kReject;
  Unknown unknown = Unknown::kAllow;
  // Whole seconds (the store's unit), rounded up; at most 400 days.
  cache::Seconds default_lifetime{24 * 60 * 60};
  cache::Millis timeout{50};
};

// Throws PluginConfigError (key path relative to `node`, 1-based line and column) on an unknown,
// duplicate, missing or malformed key.
SessionBindingConfig parseSessionBindingConfig(const YAML::Node& node);

}  // namespace tessera::plugins
