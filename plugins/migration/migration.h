#pragma once

// The `migration` plugin: a user logged in to an origin app moves to a target app on the same
// device, once, through a pass that only the origin can read or vouch for.
//
// Origin role (on the origin app's routes).
//   Login. A response that sets `session_cookie` and carries `user_header` records the session:
//     "mig:s:" + hex(sha256(cookie)) -> sealed {user, device at login}, for the cookie's lifetime.
//     The header is removed before the response reaches the client. A response that clears the
//     cookie removes the record (and so every permit made from it).
//   POST {prefix}migration/pass {"ts": ms, "nonce": "..."}: ts within request_window, the session
//     recorded and live, the same device, the nonce first-use (ring add) and, with on_reissue:
//     revoke, no other live pass for the session. Answers {"pass": "...", "expires_in": N}.
//   POST {prefix}migration/verify {"pass", "device", "ip"}: for targets in other clusters; only
//     with a client certificate that chains to the listener's tls.client_ca (else 403).
//   POST {prefix}migration/session {"sid"}: for remote targets, whether a permit's origin session
//     is still live (200, else 401); the same client-certificate rule as verify.
//   Every other request with the session cookie: a revoked session gets 401.
// Target role (on the target app's routes).
//   POST {prefix}migration/redeem {"pass": "..."}: the origin verifies (in process with origin:
//     local, else over HTTPS with mutual TLS), then the client gets `permit_cookie`, device-bound
//     and linked to the origin session, for permit_ttl.
//   Every other request: client-sent identity headers are removed; with a valid permit from the
//     same device and a live origin session the user's id is forwarded. A remote origin is asked
//     about the session at most every 5 s per permit, so its revocations arrive within that.
// Verification (the origin's, in this order): the jti is marked used with an atomic ring add; the
//   pass is decrypted, its signature and expiry checked; it must still be the session's live pass;
//   the device at issue, the one in the pass and the redeemer's must agree; the session must be
//   live. A jti already used is a replay: 409, and the origin session is revoked (its cookie and
//   every permit from it then get 401), with a migration_replay audit event naming both devices.
//
// Every refusal has a metric (Context::count) and an audit event. Config: migration_config.h.

#include <memory>
#include <string>

#include "plugins/plugin.h"

namespace tessera::plugins::migration {

// The FactoryMaker registered as "migration". Parses `node` and loads the keys (throws
// PluginConfigError).
std::shared_ptr<const Factory> makeMigrationFactory(const std::string& name,
                                                    const YAML::Node& node);

}  // namespace tessera::plugins::migration
