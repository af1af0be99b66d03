#pragma once

// tessera's configuration: YAML in, plain immutable structs out.
//
// Contract:
// - loadFile()/loadString() parse *and* validate. They either return a complete Config in which
//   every field holds a usable value (defaults filled in), or throw ConfigError listing every
//   problem found, each with file, line, column and key path.
// - Unknown keys are errors. Nothing is silently ignored.
// - The result is shared as `shared_ptr<const Config>`: a snapshot that never changes. A reload
//   builds a new one; connections keep the snapshot they started with.
// - This layer knows nothing of the proxy. It does not open sockets or load certificates; it
//   keeps the Mark of every value the proxy may still reject (certificate files, listen
//   addresses), so the proxy can report those errors in the same FILE:LINE:COL form.

#include <yaml-cpp/node/node.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::conf {

using Millis = std::chrono::milliseconds;

// Where a value sits in its file. 1-based; 0 means "not from a file" (a default).
struct Mark {
  int line = 0;
  int column = 0;
};

// One problem found in a config file.
struct Error {
  std::string file;
  Mark mark;
  std::string key_path;  // e.g. "upstreams.app.servers[0]"
  std::string message;   // e.g. "expected host:port"

  // "FILE:LINE:COL: key.path: message"
  std::string str() const;
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Error> errors);
  const std::vector<Error>& errors() const { return errors_; }

 private:
  std::vector<Error> errors_;
};

struct HostPort {
  std::string host;  // numeric IPv4/IPv6 or a name; IPv6 written as [::1]:80 in YAML
  uint16_t port = 0;
  Mark mark;
  std::string key_path;

  std::string str() const;  // "host:port", IPv6 in brackets
};

struct Certificate {
  std::string cert;      // PEM chain path, as written (relative to the working directory)
  std::string key;       // PEM private key path
  Mark mark;             // of the list item
  std::string key_path;  // "listeners[0].tls.certificates[0]"
};

enum class TlsVersion { k1_2, k1_3 };

struct Tls {
  std::vector<Certificate> certificates;  // at least one; the first is the default for SNI
  TlsVersion min_version = TlsVersion::k1_2;
  std::vector<std::string> alpn = {"http/1.1"};
  // false: no session cache and no tickets, so every handshake is a full one (like nginx's
  // `ssl_session_cache off; ssl_session_tickets off;`).
  bool session_resumption = true;
  // PEM CA bundle: clients are asked for a certificate, which is optional; plugins learn whether
  // one that chains to these CAs was presented (the migration plugin's verify endpoint needs it).
  std::string client_ca;
};

struct Route {
  std::string host = "*";            // "*" (any), "shop.example" (exact), "*.example" (suffix)
  std::string path_prefix = "/";     // must start with '/'
  std::string upstream;              // a key of Config::upstreams
  std::vector<std::string> plugins;  // keys of Config::plugins, run in this order
  std::vector<Mark> plugin_marks;    // where each of `plugins` is written
  std::string key_path;              // "listeners[0].routes[1]"
};

// A named plugin instance under `plugins:`. This layer checks only `type`; the plugin's own
// factory parses the rest of `node` (proxy side), reporting errors with `mark`/`key_path`.
struct PluginInstance {
  std::string name;
  std::string type;
  YAML::Node node;  // the whole map, `type` included
  Mark mark;
  std::string key_path;  // "plugins.<name>"
};

struct Listener {
  std::string name;                      // defaults to "listener<N>"; unique
  HostPort listen;                       // required
  std::optional<Tls> tls;                // absent: plain HTTP
  std::vector<Route> routes;             // at least one; first match wins
  bool trust_forwarded_headers = false;  // true: append to client-sent X-Forwarded-For
};

struct Upstream {
  std::string name;
  std::vector<HostPort> servers;  // required, at least one; round robin
  int keepalive = 64;             // idle connections kept per worker
  Millis connect_timeout{2000};
  Millis read_timeout{30000};
  Millis fail_timeout{10000};  // a server that failed to connect is skipped this long
};

struct Limits {
  uint64_t max_header_bytes = 16384;
  Millis header_timeout{10000};
  Millis idle_timeout{60000};
  // A client that takes none of the response's bytes for this long is cut off (nginx's
  // send_timeout: the time between two successful writes, not for the whole response).
  Millis send_timeout{60000};
  uint64_t max_body_bytes = 10ull << 20;
  Millis drain_timeout{10000};  // SIGTERM: how long in-flight requests may take to finish
};

struct Admin {
  std::optional<HostPort> listen;  // default 127.0.0.1:9901; "off" disables the admin listener
};

struct Log {
  std::string level = "info";         // trace | debug | info | warn | error | critical | off
  std::string access_log = "stdout";  // stdout | stderr | off | a file path
  std::string format = "json";        // json | common
  std::string audit_log = "stderr";   // security events, JSON lines: stderr | off | a file path
  int audit_rate_limit = 100;         // audit lines per second; 0 = no limit
};

struct Cluster {
  // Nodes with the same name (and listener name) share TLS sessions: it seeds the session id
  // context, so it must be equal on every node of a cluster.
  std::string name = "tessera";
};

enum class StoreKind { kMemory, kMemcached };

struct SealKeyRef {
  std::string id;        // short, unique; stored in every sealed record
  std::string file;      // 32 random bytes (`tessera keygen seal --out FILE`)
  Mark mark;             // of the list item
  std::string key_path;  // "session_cache.seal_keys[0]"
};

struct MemcachedServer {
  HostPort address;
  uint32_t weight = 1;  // "host:port/weight" in YAML
};

struct Memcached {
  std::vector<MemcachedServer> servers;  // required when store is memcached
  int replicas = 1;                      // extra copies, on distinct nodes; 0..servers-1
  int io_threads = 2;                    // per worker: threads that make the libmemcached calls
  Millis retry_timeout{2000};            // a failed node is retried after this
  Millis connect_timeout{200};           // per node connect
  Millis io_timeout{200};                // per request send/receive (poll) timeout
};

struct SessionCache {
  StoreKind store = StoreKind::kMemory;
  Millis lifetime{300000};               // how long a TLS session may be resumed
  Millis timeout{50};                    // deadline for a lookup during a handshake
  uint64_t l1_entries = 20000;           // per-worker L1; 0 turns it off
  uint64_t memory_max_entries = 100000;  // bound of the embedded store (`memory.max_entries`)
  std::vector<SealKeyRef> seal_keys;     // first seals, all open; required for memcached
  Memcached memcached;
};

enum class DeviceAttribute { kIp, kJa4 };

struct TlsBinding {
  std::vector<DeviceAttribute> attributes = {DeviceAttribute::kIp};  // [] turns binding off
  int ipv4_prefix = 32;                                              // 0..32
  int ipv6_prefix = 64;                                              // 0..128
};

struct DeviceBinding {
  TlsBinding tls;
};

struct Config {
  std::string file;                           // the path it was loaded from, for messages
  int workers = 0;                            // 0 = auto (number of cores)
  std::vector<Listener> listeners;            // at least one
  std::map<std::string, Upstream> upstreams;  // at least one
  Limits limits;
  Admin admin;
  Log log;
  Cluster cluster;
  SessionCache session_cache;
  DeviceBinding device_binding;
  std::map<std::string, PluginInstance> plugins;

  int effectiveWorkers() const;  // resolves auto
};

// Parse and validate. Throws ConfigError.
std::shared_ptr<const Config> loadFile(const std::string& path);
std::shared_ptr<const Config> loadString(const std::string& yaml,
                                         const std::string& name = "<inline>");

// "250ms", "2s", "1m", "1h" (a bare number is seconds). nullopt on bad syntax.
std::optional<Millis> parseDuration(const std::string& text);
// "512", "16KiB", "10MiB", "1GiB" (also KB/MB/GB as powers of 1000). nullopt on bad syntax.
std::optional<uint64_t> parseSize(const std::string& text);
// "127.0.0.1:80", "[::1]:80", "localhost:80". nullopt on bad syntax.
std::optional<HostPort> parseHostPort(const std::string& text);

}  // namespace tessera::conf
