#pragma once

// The `guard` plugin: signed requests against ticket scalping, on the routes that list it.
//
// Endpoints (under endpoint_prefix, default /_tessera/):
//   GET  {prefix}time       {"now": ms since the epoch}, for the client's clock offset.
//   GET  {prefix}client.js  the browser SDK (plugins/guard/client.js), an ES module.
//   POST {prefix}keys       {"jwk": client's P-256 public JWK}, with the session cookie: ECDH with
//                           a fresh server key, K = HKDF-SHA256(Z, salt = SHA-256(cookie value),
//                           "tessera guard v1"). Answers {"jwk", "keyid", "expires_in", "cookie"}.
// Keys. The session's newest four keys (one per page that ran init()), each in a slot of its own:
//   "guard:k:" + ref(session cookie) + ":" + slot -> sealed {keyid -> K}. The slot is the atomic
//   count "guard:kn:" + ref of the session's agreements, modulo four, so agreements at the same
//   time keep both keys; the keyid starts with the slot's digit. Keys live for the session's life:
//   a login response that sets the cookie leaves "guard:l:" + ref -> its expiry; without one,
//   key_lifetime. A keyid is only found through the cookie it was agreed under, so another
//   session's keyid is unknown. A response that clears the cookie (logout) or sets a new value (a
//   new login) deletes the old session's keys (every slot, and the count). Each
//   worker keeps the records it read for 800 ms (one store round trip less per request), so a
//   logout on another worker or node holds everywhere within that.
// Protected requests (a `protect` entry matches the method and the normalised path) need an
//   RFC 9421 signature: alg hmac-sha256, keyid, created within `window`, a nonce, covering
//   require_components; a body needs Content-Digest (RFC 9530), checked as it streams (at most
//   max_signed_body, else 413). Then, in this order: the rate limit (a ring counter per device,
//   session or ip and interval; over it: 429 with Retry-After), the key, the HMAC (constant time),
//   and the nonce (ring add, TTL 2 x window + 5 s; a second use is a replay). Every refusal is a
//   401 with `X-Tessera-Guard: <reason>` and a WWW-Authenticate challenge, a metric and an audit
//   event.
// Blocklist. The YAML entries, plus the cluster-wide entries of the admin API (blocklist.h): a
//   blocked ip, device or user gets 403 on every request of the route, the endpoints included.
// Sealed replies (seal_responses: true). The reply to a verified protected request becomes
//   Content-Type: application/tessera-sealed, body = IV || AES-256-GCM(K, original content type
//   || CRLF || body, AAD = keyid) || tag (key_agreement.h); the SDK opens it. The request goes
//   upstream without Accept-Encoding, and a reply the backend compressed all the same is replaced
//   by a plain-text notice (X-Tessera-Guard: seal_refused_encoded), never sent unsealed.

#include <memory>
#include <string>

#include "plugins/plugin.h"

namespace tessera::plugins::guard {

// The FactoryMaker registered as "guard" (throws PluginConfigError).
std::shared_ptr<const Factory> makeGuardFactory(const std::string& name, const YAML::Node& node);

}  // namespace tessera::plugins::guard
