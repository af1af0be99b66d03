#include "plugins/config_fields.h"

#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>

#include "plugins/plugin.h"

namespace tessera::plugins::fields {
namespace {

// The proxy frames the request with these, or a plugin reads its credentials from them (a token,
// a session or permit cookie): a value written into one would corrupt the request or erase the
// credential before it is read.
constexpr std::string_view kReservedHeaders[] = {
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection",
    "te",   "trailer",        "upgrade",           "cookie"};

}  // namespace

void fail(const YAML::Mark& mark, std::string path, const std::string& message) {
  throw PluginConfigError(std::move(path), mark.line + 1, mark.column + 1, message);
}

Item child(const Item& parent, const YAML::Node& node, std::string path) {
  return Item{node, std::move(path), node.IsNull() ? parent.mark : node.Mark()};
}

namespace {

// Checks each key before the next is read, and hands it on at once: a parser that applies values
// as it goes reports the first problem in document order, whether in a key or in a value.
void walkMap(const Item& item, std::span<const std::string_view> known,
             const std::function<void(Entry&&)>& each) {
  if (!item.node.IsMap()) fail(item.mark, item.path, "expected a map");
  std::string prefix = item.path.empty() ? "" : item.path + ".";
  std::set<std::string> seen;
  for (const auto& pair : item.node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar()) fail(key.Mark(), item.path, "expected a string key");
    const std::string& name = key.Scalar();
    if (!contains(known, name)) fail(key.Mark(), prefix + name, "unknown key");
    if (!seen.insert(name).second) fail(key.Mark(), prefix + name, "duplicate key");
    // A null value is blamed on its key, as child() blames it on its parent.
    each(Entry{
        name, key.Mark(),
        Item{pair.second, prefix + name, pair.second.IsNull() ? key.Mark() : pair.second.Mark()}});
  }
}

}  // namespace

std::vector<Entry> mapEntries(const Item& item, std::span<const std::string_view> known) {
  std::vector<Entry> entries;
  walkMap(item, known, [&](Entry&& entry) { entries.push_back(std::move(entry)); });
  return entries;
}

std::set<std::string> forEachKey(
    const Item& item, std::initializer_list<std::string_view> known,
    const std::function<void(const std::string&, const Item&)>& apply) {
  std::set<std::string> seen;
  walkMap(item, std::span(known.begin(), known.size()), [&](Entry&& entry) {
    apply(entry.key, entry.value);
    seen.insert(entry.key);
  });
  return seen;
}

void forEachEntry(const Item& item, const std::function<void(const Item&)>& element) {
  if (!item.node.IsSequence()) fail(item.mark, item.path, "expected a list");
  if (item.node.size() == 0) fail(item.mark, item.path, "must not be empty");
  for (size_t i = 0; i < item.node.size(); ++i) {
    // An empty list item ("- ") is null and has no position of its own either.
    element(child(item, item.node[i], item.path + "[" + std::to_string(i) + "]"));
  }
}

std::string scalar(const Item& item, const std::string& expected) {
  if (!item.node.IsScalar()) fail(item.mark, item.path, expected);
  return item.node.Scalar();
}

std::string nonEmpty(const Item& item, const std::string& expected) {
  std::string text = scalar(item, expected);
  if (text.empty()) fail(item.mark, item.path, expected);
  return text;
}

bool isToken(std::string_view text) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           kSpecials.find(c) != std::string_view::npos;
  });
}

std::string lowerCase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string cookieName(const Item& item) {
  std::string name = scalar(item, "expected a cookie name");
  if (!isToken(name)) fail(item.mark, item.path, "expected a cookie name (an RFC 6265 token)");
  return name;
}

std::string headerName(const Item& item) {
  std::string name = scalar(item, "expected a header name");
  if (!isToken(name)) fail(item.mark, item.path, "expected a header name (an RFC 9110 token)");
  return name;
}

std::string forwardedHeaderName(const Item& item) {
  std::string name = headerName(item);
  if (contains(kReservedHeaders, lowerCase(name))) {
    fail(item.mark, item.path, "\"" + name + "\" is reserved for the proxy");
  }
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
  return "header:" + lowerCase(name);
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

std::string endpointPrefix(const Item& item) {
  static const std::string kExpected =
      "expected a path that starts and ends with '/', like /_tessera/";
  std::string text = scalar(item, kExpected);
  if (text.size() < 2 || text.front() != '/' || text.back() != '/') {
    fail(item.mark, item.path,
         text == "/" ? "must not be / alone (the endpoints would mix with the application's paths)"
                     : kExpected);
  }
  bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '/';
  });
  if (!plain) fail(item.mark, item.path, "expected letters, digits, '-', '.', '_', '~' and '/'");
  std::string_view segments = std::string_view(text).substr(1, text.size() - 2);
  while (true) {
    size_t slash = segments.find('/');
    std::string_view segment = segments.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") {
      fail(item.mark, item.path, "must not hold an empty, '.' or '..' segment");
    }
    if (slash == std::string_view::npos) return text;
    segments = segments.substr(slash + 1);
  }
}

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
  // Anything near the overflow limit is far beyond every bound the callers check anyway.
  if (factor == 0 || number > uint64_t{1} << 40) return std::nullopt;
  return cache::Millis(static_cast<int64_t>(number * factor));
}

cache::Millis duration(const Item& item) {
  static const std::string kExpected = "expected a duration like 50ms, 30s, 10m or 24h";
  std::optional<cache::Millis> value = parseDuration(scalar(item, kExpected));
  if (!value) fail(item.mark, item.path, kExpected);
  // Zero would expire what it bounds (a binding, a pass, a lookup) at once.
  if (value->count() == 0) fail(item.mark, item.path, "must be greater than 0");
  return *value;
}

cache::Seconds wholeSeconds(const Item& item, cache::Seconds max, const std::string& too_long) {
  auto seconds = std::chrono::ceil<cache::Seconds>(duration(item));
  if (seconds > max) fail(item.mark, item.path, too_long);
  return seconds;
}

cache::Seconds cookieLifetime(const Item& item) {
  return wholeSeconds(item, kMaxCookieLifetime,
                      "must be at most 400 days (browsers keep no cookie longer)");
}

std::optional<uint64_t> parseSize(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, number);
  if (digits == 0 || ec != std::errc()) return std::nullopt;
  std::string_view unit = text.substr(digits);
  uint64_t factor = unit == ""      ? 1
                    : unit == "KiB" ? uint64_t{1} << 10
                    : unit == "MiB" ? uint64_t{1} << 20
                    : unit == "GiB" ? uint64_t{1} << 30
                    : unit == "KB"  ? 1'000
                    : unit == "MB"  ? 1'000'000
                    : unit == "GB"  ? 1'000'000'000
                                    : 0;
  if (factor == 0 || number > std::numeric_limits<uint64_t>::max() / factor) return std::nullopt;
  return number * factor;
}

uint64_t size(const Item& item, uint64_t max, const std::string& too_large) {
  static const std::string kExpected = "expected a size like 16384, 64KiB or 10MiB";
  std::optional<uint64_t> value = parseSize(scalar(item, kExpected));
  if (!value) fail(item.mark, item.path, kExpected);
  // Every size is a limit: zero would refuse everything it bounds.
  if (*value == 0) fail(item.mark, item.path, "must be greater than 0");
  if (*value > max) fail(item.mark, item.path, too_large);
  return *value;
}

bool boolean(const Item& item) {
  std::string text = scalar(item, "expected true or false");
  if (text == "true") return true;
  if (text == "false") return false;
  fail(item.mark, item.path, "expected true or false");
}

}  // namespace tessera::plugins::fields
