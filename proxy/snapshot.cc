#include "proxy/snapshot.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "proxy/tls_session_glue.h"

namespace tessera::proxy {

namespace {

conf::Error addressError(const conf::Config& c, const conf::HostPort& hp, const std::string& what) {
  return conf::Error{c.file, hp.mark, hp.key_path, what};
}

bool hostMatches(std::string_view pattern, std::string_view host) {
  if (pattern == "*") return true;
  if (pattern.size() > 1 && pattern[0] == '*') {  // "*.example" covers "a.example", not "example"
    std::string_view suffix = pattern.substr(1);
    return host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix;
  }
  return pattern == host;
}

bool usesJa4(const conf::Config& c) {
  for (conf::DeviceAttribute a : c.device_binding.tls.attributes) {
    if (a == conf::DeviceAttribute::kJa4) return true;
  }
  for (const auto& [name, instance] : c.plugins) {
    const YAML::Node attributes = instance.node["attributes"];
    if (!attributes || !attributes.IsSequence()) continue;
    for (const YAML::Node& a : attributes) {
      if (a.IsScalar() && a.Scalar() == "ja4") return true;
    }
  }
  return false;
}

// Each plugin instance's factory parses its own YAML node; its errors come back in the same
// FILE:LINE:COL: plugins.NAME.key form as the rest of the config.
void buildPlugins(const conf::Config& c, std::map<std::string, PluginTarget>& out,
                  std::vector<conf::Error>& errors) {
  static const plugins::Registry registry = [] {
    plugins::Registry r;
    plugins::registerBuiltinPlugins(r);
    return r;
  }();
  for (const auto& [name, instance] : c.plugins) {
    const plugins::FactoryMaker* maker = registry.find(instance.type);
    if (maker == nullptr) {
      std::string known;
      for (const std::string& t : registry.types()) known += (known.empty() ? "" : ", ") + t;
      errors.push_back(
          conf::Error{c.file, instance.mark, instance.key_path + ".type",
                      "unknown plugin type \"" + instance.type + "\" (known: " + known + ")"});
      continue;
    }
    try {
      out[name] = PluginTarget{name, (*maker)(name, instance.node)};
    } catch (const plugins::PluginConfigError& e) {
      std::string path = instance.key_path + (e.key_path.empty() ? "" : "." + e.key_path);
      errors.push_back(conf::Error{c.file, conf::Mark{e.line, e.column}, path, e.what()});
    }
  }
}

bool sharesName(const plugins::Factory& factory, const std::string& name) {
  for (const std::string& pattern : factory.shares()) {
    if (pattern == name) return true;
    if (pattern.ends_with('*') &&
        name.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1))) {
      return true;
    }
  }
  return false;
}

// Every name a plugin reads must be shared by a plugin listed before it on the route: otherwise
// the plugin would wait, on every request, for something that never comes.
void checkSharedNames(const conf::Config& c, const conf::Route& r, RouteTarget& route,
                      std::vector<conf::Error>& errors) {
  if (route.plugins.size() != r.plugins.size()) return;  // an unknown plugin, reported already
  for (size_t i = 0; i < route.plugins.size(); ++i) {
    for (const std::string& name : route.plugins[i]->factory->reads()) {
      bool shared = std::any_of(
          route.plugins.begin(), route.plugins.begin() + i,
          [&](const PluginTarget* before) { return sharesName(*before->factory, name); });
      if (!shared) {
        errors.push_back(conf::Error{
            c.file, r.plugin_marks[i], r.key_path + ".plugins[" + std::to_string(i) + "]",
            "plugin \"" + route.plugins[i]->name + "\" reads " + name +
                ", which no plugin listed before it shares" +
                (name.starts_with("claim:") ? " (list a jwt plugin before it)" : "")});
      }
      if (std::find(route.shared_reads.begin(), route.shared_reads.end(), name) ==
          route.shared_reads.end()) {
        route.shared_reads.push_back(name);
      }
    }
    for (const std::string& name : route.plugins[i]->factory->readsIfShared()) {
      if (std::find(route.shared_reads.begin(), route.shared_reads.end(), name) ==
          route.shared_reads.end()) {
        route.shared_reads.push_back(name);
      }
    }
  }
}

std::shared_ptr<const cache::Sealer> buildSealer(const conf::Config& c,
                                                 std::vector<conf::Error>& errors) {
  const auto& keys = c.session_cache.seal_keys;
  if (keys.empty()) {
    // Records of the in-process store never leave the process; one key for its whole life keeps
    // sessions valid across reloads.
    static const std::shared_ptr<const cache::Sealer> ephemeral = cache::Sealer::ephemeral();
    return ephemeral;
  }
  std::vector<std::pair<std::string, std::string>> files;
  for (const conf::SealKeyRef& k : keys) files.emplace_back(k.id, k.file);
  std::string error;
  std::unique_ptr<cache::Sealer> sealer = cache::Sealer::fromFiles(files, error);
  if (!sealer) {
    // Point at the first key entry: the message names the file that failed.
    errors.push_back(conf::Error{c.file, keys.front().mark, "session_cache.seal_keys", error});
    return nullptr;
  }
  return sealer;
}

}  // namespace

std::shared_ptr<const Snapshot> Snapshot::build(std::shared_ptr<const conf::Config> config) {
  auto snap = std::shared_ptr<Snapshot>(new Snapshot());
  snap->config_ = config;
  std::vector<conf::Error> errors;
  for (const auto& [name, up] : config->upstreams) {
    UpstreamTarget& t = snap->upstreams_[name];
    t.conf = &up;
    for (const conf::HostPort& hp : up.servers) {
      SocketAddress a;
      std::string err;
      if (!resolve(hp, a, err)) errors.push_back(addressError(*config, hp, err));
      t.servers.push_back(a);
    }
  }
  buildPlugins(*config, snap->plugins_, errors);
  for (const conf::Listener& l : config->listeners) {
    ListenerTarget& t = snap->listeners_.emplace_back();
    t.conf = &l;
    std::string err;
    if (!resolve(l.listen, t.address, err)) errors.push_back(addressError(*config, l.listen, err));
    if (l.tls) {
      t.tls = TlsContexts::build(
          *l.tls, config->file, errors, sessionIdContext(config->cluster.name, l.name),
          std::chrono::duration_cast<std::chrono::seconds>(config->session_cache.lifetime));
    }
    for (const conf::Route& r : l.routes) {
      auto it = snap->upstreams_.find(r.upstream);
      RouteTarget& route = t.routes.emplace_back();
      route.conf = &r;
      route.upstream = it == snap->upstreams_.end() ? nullptr : &it->second;
      for (const std::string& name : r.plugins) {
        if (auto p = snap->plugins_.find(name); p != snap->plugins_.end()) {
          route.plugins.push_back(&p->second);
        }
      }
      checkSharedNames(*config, r, route, errors);
    }
  }
  try {
    snap->access_log_ = std::make_shared<AccessLogSink>(config->log.access_log, config->log.format);
  } catch (const std::exception& e) {
    errors.push_back(conf::Error{config->file, {}, "log.access_log", e.what()});
  }
  try {
    snap->audit_log_ = std::make_shared<AuditLog>(
        config->log.audit_log, static_cast<uint32_t>(config->log.audit_rate_limit));
  } catch (const std::exception& e) {
    errors.push_back(conf::Error{config->file, {}, "log.audit_log", e.what()});
  }
  snap->sealer_ = buildSealer(*config, errors);
  snap->needs_ja4_ = usesJa4(*config);
  if (!errors.empty()) throw conf::ConfigError(std::move(errors));
  return snap;
}

RequestTarget requestTarget(std::string_view url, const std::string* host_header) {
  RequestTarget t;
  std::string_view host;
  size_t scheme = url.find("://");
  if (!url.empty() && url[0] != '/' && scheme != std::string_view::npos) {
    std::string_view rest = url.substr(scheme + 3);
    size_t end = rest.find_first_of("/?#");
    host = rest.substr(0, end);
    if (size_t at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
    bool has_path = end != std::string_view::npos && rest[end] == '/';
    t.path = has_path ? rest.substr(end) : std::string_view("/");
  } else {
    t.path = url;
    if (host_header != nullptr) host = *host_header;
  }
  if (!host.empty() && host[0] == '[') {
    host = host.substr(0, host.find(']') + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  t.host.assign(host);
  std::transform(t.host.begin(), t.host.end(), t.host.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return t;
}

const RouteTarget* matchRoute(const ListenerTarget& listener, std::string_view host,
                              std::string_view path) {
  for (const RouteTarget& r : listener.routes) {
    if (!hostMatches(r.conf->host, host)) continue;
    if (path.substr(0, r.conf->path_prefix.size()) != r.conf->path_prefix) continue;
    return &r;
  }
  return nullptr;
}

}  // namespace tessera::proxy
