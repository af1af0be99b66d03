#include "plugins/session_binding/session_binding_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <iterator>
#include <optional>
#include <set>
#include <string_view>

#include "plugins/plugin.h"

namespace tessera::plugins {
namespace {

// Browsers keep no cookie longer (RFC 6265bis, 5.5), so a longer binding would only fill the store.
constexpr int64_t kMaxLifetimeSeconds = int64_t{400} * 24 * 60 * 60;

[[noreturn]] void fail(const YAML::Mark& mark, std::string path, const std::string& message) {
  throw PluginConfigError(std::move(path), mark.line + 1, mark.column + 1, message);
}

// A key's value, with where to blame it: a null value has no position of its own (yaml-cpp
// reports the next token's), so its key's position is used instead.
struct Item {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;
};

std::string scalar(const Item& item, const std::string& expected) {
  if (!item.node.IsScalar()) fail(item.mark, item.path, expected);
  return item.node.Scalar();
}

// RFC 9110 tchar: header names and cookie names (RFC 6265 cookie-name is a token) are made of it.
bool isToken(std::string_view text) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           kSpecials.find(c) != std::string_view::npos;
  });
}

std::string lowerCase(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return text;
}

// A non-empty list of distinct strings, each checked by `element`.
template <typename Element>
std::vector<std::string> stringList(const Item& item, Element element) {
  if (!item.node.IsSequence()) fail(item.mark, item.path, "expected a list");
  if (item.node.size() == 0) fail(item.mark, item.path, "must not be empty");
  std::vector<std::string> out;
  for (size_t i = 0; i < item.node.size(); ++i) {
    YAML::Node node = item.node[i];
    // An empty list item ("- ") is null and has no position of its own either.
    Item entry{node, item.path + "[" + std::to_string(i) + "]",
               node.IsNull() ? item.mark : node.Mark()};
    std::string value = element(entry);
    if (std::find(out.begin(), out.end(), value) != out.end()) {
      fail(entry.mark, entry.path, "duplicate \"" + value + "\"");
    }
    out.push_back(std::move(value));
  }
  return out;
}

std::string cookieName(const Item& item) {
  std::string name = scalar(item, "expected a cookie name");
  if (!isToken(name)) fail(item.mark, item.path, "expected a cookie name (an RFC 6265 token)");
  return name;
}

std::string attribute(const Item& item) {
  static const std::string kExpected = "expected ip, ja4, user_agent or header:NAME";
  std::string text = scalar(item, kExpected);
  if (text == "ip" || text == "ja4" || text == "user_agent") return text;
  std::string_view view = text;
  if (!view.starts_with("header:")) fail(item.mark, item.path, kExpected);
  std::string_view name = view.substr(7);
  if (!isToken(name)) fail(item.mark, item.path, "expected a header name after header:");
  return "header:" + lowerCase(std::string(name));
}

int prefix(const Item& item, int max) {
  std::string expected = "expected a prefix length from 0 to " + std::to_string(max);
  std::string text = scalar(item, expected);
  int value = 0;
  // Digits only: from_chars alone would take a leading '-'.
  bool digits = !text.empty() &&
                std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (!digits || ec != std::errc() || end != text.data() + text.size() || value > max) {
    fail(item.mark, item.path, expected);
  }
  return value;
}

// "<digits><unit>", unit ms, s, m or h; bare digits are seconds, as everywhere in tessera's config.
std::optional<cache::Millis> parseDuration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  if (digits == 0 || ec != std::errc()) return std::nullopt;
  std::string_view unit = text.substr(digits);
  uint64_t factor = unit == "ms"                ? 1
                    : unit == "s" || unit == "" ? 1'000
                    : unit == "m"               ? 60'000
                    : unit == "h"               ? 3'600'000
                                                : 0;
  // Anything near the overflow limit is far beyond every bound checked below anyway.
  if (factor == 0 || number > uint64_t{1} << 40) return std::nullopt;
  return cache::Millis(static_cast<int64_t>(number * factor));
}

cache::Millis duration(const Item& item) {
  static const std::string kExpected = "expected a duration like 50ms, 30s, 10m or 24h";
  std::optional<cache::Millis> value = parseDuration(scalar(item, kExpected));
  if (!value) fail(item.mark, item.path, kExpected);
  // Zero would expire the binding, or the lookup, at once.
  if (value->count() == 0) fail(item.mark, item.path, "must be greater than 0");
  return *value;
}

cache::Seconds lifetime(const Item& item) {
  auto seconds = std::chrono::ceil<cache::Seconds>(duration(item));
  if (seconds.count() > kMaxLifetimeSeconds) {
    fail(item.mark, item.path, "must be at most 400 days (browsers keep no cookie longer)");
  }
  return seconds;
}

template <typename Enum>
Enum choice(const Item& item, std::string_view first, Enum first_value, std::string_view second,
            Enum second_value) {
  std::string expected = "expected " + std::string(first) + " or " + std::string(second);
  std::string text = scalar(item, expected);
  if (text == first) return first_value;
  if (text == second) return second_value;
  fail(item.mark, item.path, expected);
}

void apply(const std::string& key, const Item& item, SessionBindingConfig& config) {
  using Config = SessionBindingConfig;
  if (key == "type") {
    if (scalar(item, "expected session_binding") != "session_binding") {
      fail(item.mark, item.path, "expected session_binding");
    }
  } else if (key == "cookies") {
    config.cookies = stringList(item, cookieName);
  } else if (key == "attributes") {
    config.attributes = stringList(item, attribute);
  } else if (key == "ipv4_prefix") {
    config.ipv4_prefix = prefix(item, 32);
  } else if (key == "ipv6_prefix") {
    config.ipv6_prefix = prefix(item, 128);
  } else if (key == "on_mismatch") {
    config.on_mismatch =
        choice(item, "reject", Config::OnMismatch::kReject, "log", Config::OnMismatch::kLog);
  } else if (key == "unknown") {
    config.unknown =
        choice(item, "allow", Config::Unknown::kAllow, "reject", Config::Unknown::kReject);
  } else if (key == "default_lifetime") {
    config.default_lifetime = lifetime(item);
  } else if (key == "timeout") {
    config.timeout = duration(item);
  }
}

bool isKnownKey(std::string_view key) {
  static constexpr std::string_view kKeys[] = {"type",        "cookies",          "attributes",
                                               "ipv4_prefix", "ipv6_prefix",      "on_mismatch",
                                               "unknown",     "default_lifetime", "timeout"};
  return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
}

}  // namespace

SessionBindingConfig parseSessionBindingConfig(const YAML::Node& node) {
  if (!node.IsMap()) fail(node.Mark(), "", "expected a map");
  SessionBindingConfig config;
  std::set<std::string> seen;
  for (const auto& pair : node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar()) fail(key.Mark(), "", "expected a string key");
    const std::string& name = key.Scalar();
    if (!isKnownKey(name)) fail(key.Mark(), name, "unknown key");
    // yaml-cpp keeps both entries of a repeated key; the second would silently win.
    if (!seen.insert(name).second) fail(key.Mark(), name, "duplicate key");
    apply(name, Item{pair.second, name, pair.second.IsNull() ? key.Mark() : pair.second.Mark()},
          config);
  }
  if (!seen.contains("cookies")) fail(node.Mark(), "cookies", "required");
  return config;
}

}  // namespace tessera::plugins
