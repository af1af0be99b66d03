#pragma once

// The `session_binding` plugin: a session cookie set by the backend is bound to the device that
// received it, and a request presenting it from another device is refused (or logged).
//
// Binding. When a response sets one of the configured cookies (the login, or a rotation), the
//   store gets "bind:" + hex(sha256(cookie value)) -> Context::seal(key, device fingerprint), with
//   the cookie's lifetime (Max-Age, else Expires, else `default_lifetime`). The store is shared by
//   the cluster, so any node enforces a binding made on any other.
// Checking. A request carrying a configured cookie waits (kStop) for the lookup, up to `timeout`:
//   same fingerprint -> resume; another -> audit + `on_mismatch`; no binding, an unreadable one, a
//   store timeout or error -> `unknown`.
// Logout. A response that clears the cookie the request carried removes its binding.
//
// Config: session_binding_config.h. Metrics (Context::count): match, mismatch, unknown, timeout,
// error, seal_open_failed, bound, logout, rebind_refused.

#include <memory>
#include <string>

#include "plugins/plugin.h"
#include "plugins/session_binding/session_binding_config.h"

namespace tessera::plugins {

// The FactoryMaker registered as "session_binding". Parses `node` (throws PluginConfigError).
std::shared_ptr<const Factory> makeSessionBindingFactory(const std::string& name,
                                                         const YAML::Node& node);

}  // namespace tessera::plugins
