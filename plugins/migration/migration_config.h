#pragma once

// The `migration` plugin's configuration: parsed once per config snapshot from the plugin's YAML
// node, then shared read-only by every worker (the runtime is migration.h).
//
//   type: migration
//   role: origin | target
//   endpoint_prefix: /_tessera/            # where the plugin's endpoints live, on its routes
//   attributes: [ip, header:X-Device-Id]   # the device fingerprint (as session_binding's)
//   ipv4_prefix: 32                        # 0..32
//   ipv6_prefix: 64                        # 0..128
//   timeout: 200ms                         # deadline of each store call
//
//   # role: origin
//   session_cookie: SESSIONID              # required: the origin app's session cookie
//   user_header: X-User-Id                 # required: where the user id comes from at login:
//                                          # a response header (removed before the client sees
//                                          # it), or claim:NAME, a claim of the login request's
//                                          # token, verified by a jwt plugin listed before
//   signing_key: conf/keys/origin-sign.jwk      # required: EC P-256 private JWK (ES256)
//   encryption_key: conf/keys/origin-enc.jwk    # required: EC P-256 or RSA private JWK
//   pass_ttl: 60s
//   request_window: 30s                    # |client ts - server time| allowed on a pass request
//   on_reissue: revoke | replace           # a second pass while one is live for the session
//   session_lifetime: 24h                  # when the login's Set-Cookie has no Max-Age/Expires
//
//   # role: target
//   origin: local | https://host:port      # local: the origin role of this same config
//   origin_plugin: mig_origin              # with origin: local, which origin instance (optional
//                                          # when there is exactly one)
//   origin_tls: { client_cert: F, client_key: F, ca: F }   # required for an https origin
//   origin_timeout: 2s                     # a remote verify call's deadline
//   permit_cookie: TPERMIT                 # required
//   permit_ttl: 15m
//   identity_headers: { user: X-User-Id }  # required: forwarded with a valid permit

#include <chrono>
#include <string>
#include <vector>

#include "cache/store.h"
#include "plugins/plugin.h"

namespace YAML {
class Node;
}

namespace tessera::plugins::migration {

struct MigrationConfig {
  enum class Role { kOrigin, kTarget };
  enum class OnReissue { kRevoke, kReplace };

  Role role = Role::kOrigin;
  std::string endpoint_prefix = "/_tessera/";  // starts and ends with '/'
  // As Context::deviceFingerprint takes them ("header:NAME" with NAME lower-cased).
  std::vector<std::string> attributes{"ip"};
  int ipv4_prefix = 32;
  int ipv6_prefix = 64;
  cache::Millis timeout{200};

  // Origin.
  std::string session_cookie;
  std::string user_header;  // a header name, or "claim:NAME" (the name Context::shared takes)
  std::string signing_key;  // file paths, as written in the config
  std::string encryption_key;
  cache::Seconds pass_ttl{60};
  cache::Seconds request_window{30};
  OnReissue on_reissue = OnReissue::kRevoke;
  cache::Seconds session_lifetime{24 * 60 * 60};

  // Target.
  std::string origin = "local";  // "local" or an https:// URL without a path
  std::string origin_plugin;     // empty: the only origin instance
  OutboundTls origin_tls;
  cache::Millis origin_timeout{2000};
  std::string permit_cookie;
  cache::Seconds permit_ttl{15 * 60};
  std::string user_identity_header;  // identity_headers.user
};

// Throws PluginConfigError (key path relative to `node`, 1-based line and column) on an unknown,
// duplicate, missing or malformed key, or a key of the other role.
MigrationConfig parseMigrationConfig(const YAML::Node& node);

}  // namespace tessera::plugins::migration
