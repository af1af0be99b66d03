#include "plugins/session_binding/session_binding_config.h"

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>

#include "plugins/config_fields.h"
#include "plugins/plugin.h"

namespace tessera::plugins {
namespace {

using fields::Item;

void apply(const std::string& key, const Item& item, SessionBindingConfig& config) {
  using Config = SessionBindingConfig;
  if (key == "type") {
    if (fields::scalar(item, "expected session_binding") != "session_binding") {
      fields::fail(item.mark, item.path, "expected session_binding");
    }
  } else if (key == "cookies") {
    config.cookies = fields::stringList(item, fields::cookieName);
  } else if (key == "attributes") {
    config.attributes = fields::stringList(item, fields::attribute);
  } else if (key == "ipv4_prefix") {
    config.ipv4_prefix = fields::prefix(item, 32);
  } else if (key == "ipv6_prefix") {
    config.ipv6_prefix = fields::prefix(item, 128);
  } else if (key == "on_mismatch") {
    config.on_mismatch = fields::choice(item, "reject", Config::OnMismatch::kReject, "log",
                                        Config::OnMismatch::kLog);
  } else if (key == "unknown") {
    config.unknown =
        fields::choice(item, "allow", Config::Unknown::kAllow, "reject", Config::Unknown::kReject);
  } else if (key == "default_lifetime") {
    config.default_lifetime = fields::cookieLifetime(item);
  } else if (key == "timeout") {
    config.timeout = fields::duration(item);
  }
}

}  // namespace

SessionBindingConfig parseSessionBindingConfig(const YAML::Node& node) {
  SessionBindingConfig config;
  std::set<std::string> seen = fields::forEachKey(
      Item{node, "", node.Mark()},
      {"type", "cookies", "attributes", "ipv4_prefix", "ipv6_prefix", "on_mismatch", "unknown",
       "default_lifetime", "timeout"},
      [&](const std::string& key, const Item& item) { apply(key, item, config); });
  if (!seen.contains("cookies")) fields::fail(node.Mark(), "cookies", "required");
  return config;
}

}  // namespace tessera::plugins
