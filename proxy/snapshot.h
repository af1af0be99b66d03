#pragma once

// A Snapshot is everything a worker needs from one version of the configuration, built once on
// the main thread: the parsed Config, resolved addresses, TLS contexts, routes pointing straight
// at their upstreams, and the access-log sink.
//
// Threading and lifetime: immutable after build() and shared as shared_ptr<const Snapshot>. A
// connection holds the snapshot it was accepted under until it closes, so a reload never changes
// what an in-flight request sees, and old TLS contexts live as long as their last connection.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cache/sealer.h"
#include "conf/config.h"
#include "plugins/plugin.h"
#include "proxy/access_log.h"
#include "proxy/audit_log.h"
#include "proxy/socket_util.h"
#include "proxy/tls_context.h"

namespace tessera::proxy {

struct UpstreamTarget {
  const conf::Upstream* conf = nullptr;
  std::vector<SocketAddress> servers;
};

struct PluginTarget {
  std::string name;  // the instance name under `plugins:`
  std::shared_ptr<const plugins::Factory> factory;
};

struct RouteTarget {
  const conf::Route* conf = nullptr;
  const UpstreamTarget* upstream = nullptr;
  std::vector<const PluginTarget*> plugins;  // in the route's order
  std::vector<std::string> shared_reads;     // every name its plugins read (Factory::reads)
};

struct ListenerTarget {
  const conf::Listener* conf = nullptr;
  SocketAddress address;
  std::unique_ptr<TlsContexts> tls;  // null for plain HTTP
  std::vector<RouteTarget> routes;
};

class Snapshot {
 public:
  // Resolves addresses, loads certificates and opens the access log. Throws conf::ConfigError
  // (FILE:LINE:COL form) for anything the YAML loader could not see, such as a missing file.
  static std::shared_ptr<const Snapshot> build(std::shared_ptr<const conf::Config> config);

  const conf::Config& config() const { return *config_; }
  const std::vector<ListenerTarget>& listeners() const { return listeners_; }
  const std::shared_ptr<const AccessLogSink>& accessLog() const { return access_log_; }
  const AuditLog& auditLog() const { return *audit_log_; }
  // Seals every record written to the session store. From session_cache.seal_keys; without keys,
  // a random key made once per process (fine for the in-process store only).
  const cache::Sealer& sealer() const { return *sealer_; }
  std::shared_ptr<const cache::Sealer> sharedSealer() const { return sealer_; }
  // Whether anything binds to the client's JA4 (TLS binding or a plugin's attributes): only
  // then is the ClientHello fingerprinted.
  bool needsJa4() const { return needs_ja4_; }

 private:
  std::shared_ptr<const conf::Config> config_;
  std::map<std::string, UpstreamTarget> upstreams_;
  std::map<std::string, PluginTarget> plugins_;
  std::vector<ListenerTarget> listeners_;
  std::shared_ptr<const AccessLogSink> access_log_;
  std::shared_ptr<const AuditLog> audit_log_;
  std::shared_ptr<const cache::Sealer> sealer_;
  bool needs_ja4_ = false;
};

// Splits a request target into host (from absolute-form, else the Host header) and path.
// The host comes back lower-case and without its port.
struct RequestTarget {
  std::string host;
  std::string_view path;
};
RequestTarget requestTarget(std::string_view url, const std::string* host_header);

// First route whose host and path prefix match, or null.
const RouteTarget* matchRoute(const ListenerTarget& listener, std::string_view host,
                              std::string_view path);

}  // namespace tessera::proxy
