#include "conf/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string_view>
#include <thread>
#include <utility>

namespace tessera::conf {

// ---------------------------------------------------------------------------------------------
// Public value types
// ---------------------------------------------------------------------------------------------

std::string Error::str() const {
  std::string out = file;
  // Line 0 means the problem is not at a place in the file (e.g. it could not be read).
  if (mark.line > 0) {
    out += ':' + std::to_string(mark.line) + ':' + std::to_string(mark.column);
  }
  out += ": ";
  if (!key_path.empty()) out += key_path + ": ";
  return out + message;
}

namespace {

std::string joinErrors(const std::vector<Error>& errors) {
  std::string out;
  for (const Error& error : errors) {
    if (!out.empty()) out += '\n';
    out += error.str();
  }
  return out;
}

}  // namespace

ConfigError::ConfigError(std::vector<Error> errors)
    : std::runtime_error(joinErrors(errors)), errors_(std::move(errors)) {}

std::string HostPort::str() const {
  // A bare IPv6 address would make the port separator ambiguous.
  if (host.find(':') != std::string::npos) return '[' + host + "]:" + std::to_string(port);
  return host + ':' + std::to_string(port);
}

int Config::effectiveWorkers() const {
  if (workers > 0) return workers;
  // hardware_concurrency() may return 0 when the count is unknown.
  return std::max(1u, std::thread::hardware_concurrency());
}

// ---------------------------------------------------------------------------------------------
// Scalar parsers
// ---------------------------------------------------------------------------------------------

namespace {

// Digits only: from_chars alone would also accept a leading '-' for signed types.
std::optional<uint64_t> parseUnsigned(std::string_view text) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;  // overflow
  return value;
}

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

// "<digits><suffix>" where suffix is one of `units`; nullopt on overflow of `max`.
std::optional<uint64_t> parseWithUnit(std::string_view text, std::initializer_list<Unit> units,
                                      uint64_t max) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::optional<uint64_t> number = parseUnsigned(text.substr(0, digits));
  if (!number) return std::nullopt;
  std::string_view suffix = text.substr(digits);
  for (const Unit& unit : units) {
    if (unit.suffix != suffix) continue;
    if (*number > max / unit.factor) return std::nullopt;
    return *number * unit.factor;
  }
  return std::nullopt;
}

bool isHostNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

bool isHostName(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), isHostNameChar);
}

// Syntax only; the proxy's resolver rejects what is not a real address.
bool isIpv6Literal(std::string_view host) {
  auto ok = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.';
  };
  return host.find(':') != std::string_view::npos && std::all_of(host.begin(), host.end(), ok);
}

std::optional<uint16_t> parsePort(std::string_view text) {
  std::optional<uint64_t> port = parseUnsigned(text);
  // Port 0 would mean "any free port", which is useless in a config.
  if (!port || *port == 0 || *port > 65535) return std::nullopt;
  return static_cast<uint16_t>(*port);
}

}  // namespace

std::optional<Millis> parseDuration(const std::string& text) {
  static constexpr uint64_t kMax = std::numeric_limits<Millis::rep>::max();
  std::optional<uint64_t> ms = parseWithUnit(
      text, {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}}, kMax);
  if (!ms) return std::nullopt;
  return Millis(static_cast<Millis::rep>(*ms));
}

std::optional<uint64_t> parseSize(const std::string& text) {
  return parseWithUnit(text,
                       {{"", 1},
                        {"KiB", 1ull << 10},
                        {"MiB", 1ull << 20},
                        {"GiB", 1ull << 30},
                        {"KB", 1'000},
                        {"MB", 1'000'000},
                        {"GB", 1'000'000'000}},
                       std::numeric_limits<uint64_t>::max());
}

std::optional<HostPort> parseHostPort(const std::string& text) {
  std::string_view view = text;
  std::string_view host;
  std::string_view port;
  if (view.starts_with('[')) {
    size_t close = view.find(']');
    if (close == std::string_view::npos || view.substr(close + 1, 1) != ":") return std::nullopt;
    host = view.substr(1, close - 1);
    port = view.substr(close + 2);
    if (!isIpv6Literal(host)) return std::nullopt;
  } else {
    size_t colon = view.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = view.substr(0, colon);
    port = view.substr(colon + 1);
    if (!isHostName(host)) return std::nullopt;  // also rejects an unbracketed IPv6 address
  }
  std::optional<uint16_t> number = parsePort(port);
  if (!number) return std::nullopt;
  HostPort result;
  result.host = std::string(host);
  result.port = *number;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Loader
// ---------------------------------------------------------------------------------------------

namespace {

constexpr int kMaxWorkers = 1024;
constexpr int kDefaultAdminPort = 9901;
constexpr int kMaxIoThreads = 64;
constexpr uint64_t kMaxServerWeight = 1000;
constexpr size_t kMaxSealKeyId = 32;

std::string joinPath(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + '.' + std::string(key);
}

std::string indexPath(const std::string& path, size_t index) {
  return path + '[' + std::to_string(index) + ']';
}

// yaml-cpp marks are 0-based, and -1 for "no position", which maps to our 0.
Mark markOf(const YAML::Mark& mark) { return Mark{mark.line + 1, mark.column + 1}; }
Mark markOf(const YAML::Node& node) { return markOf(node.Mark()); }

// A value and where to blame it.
struct Item {
  YAML::Node node;
  std::string path;
  Mark mark;
};

// The entries of a YAML map whose keys were already checked against the allowed set.
struct Fields {
  std::string path;
  Mark mark;
  std::vector<std::pair<std::string, Item>> entries;

  const Item* find(std::string_view key) const {
    for (const auto& [name, item] : entries) {
      if (name == key) return &item;
    }
    return nullptr;
  }
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  Config load(const YAML::Node& root);
  void fail(Mark mark, std::string path, std::string message);
  std::vector<Error> takeErrors();

 private:
  template <class T>
  using Reader = std::optional<T> (Loader::*)(const Item&);

  void fail(const Item& item, std::string message) {
    fail(item.mark, item.path, std::move(message));
  }

  // Structure.
  std::optional<Fields> fields(const Item& item, std::initializer_list<std::string_view> allowed);
  const Item* need(const Fields& fields, std::string_view key);
  bool isList(const Item& item, bool non_empty);
  std::vector<Item> elements(const Item& item);

  // Assign `out` only when the key is present and valid, so that defaults survive.
  template <class T>
  void readOptional(const Fields& fields, std::string_view key, T& out, Reader<T> read) {
    if (const Item* item = fields.find(key)) {
      if (std::optional<T> value = (this->*read)(*item)) out = std::move(*value);
    }
  }
  template <class T>
  void readRequired(const Fields& fields, std::string_view key, T& out, Reader<T> read) {
    if (const Item* item = need(fields, key)) {
      if (std::optional<T> value = (this->*read)(*item)) out = std::move(*value);
    }
  }

  // Scalars. Each reports its own error and returns nullopt on a bad value.
  std::optional<std::string> scalar(const Item& item, std::string_view expected);
  std::optional<std::string> nonEmpty(const Item& item);
  std::optional<bool> boolean(const Item& item);
  std::optional<int> count(const Item& item);
  std::optional<int> workers(const Item& item);
  std::optional<int> intInRange(const Item& item, int min, int max);
  std::optional<int> ioThreads(const Item& item);
  std::optional<int> ipv4Prefix(const Item& item);
  std::optional<int> ipv6Prefix(const Item& item);
  std::optional<uint64_t> entries(const Item& item);
  std::optional<uint64_t> maxEntries(const Item& item);
  std::optional<Millis> duration(const Item& item);
  std::optional<uint64_t> size(const Item& item);
  std::optional<HostPort> hostPort(const Item& item);
  std::optional<std::optional<HostPort>> adminListen(const Item& item);
  std::optional<TlsVersion> tlsVersion(const Item& item);
  std::optional<std::vector<std::string>> alpn(const Item& item);
  std::optional<std::string> logLevel(const Item& item);
  std::optional<std::string> accessLog(const Item& item);
  std::optional<std::string> logFormat(const Item& item);
  std::optional<std::string> auditLog(const Item& item);
  std::optional<StoreKind> storeKind(const Item& item);
  std::optional<std::string> sealKeyId(const Item& item);
  std::optional<MemcachedServer> memcachedServer(const Item& item);
  std::optional<std::vector<DeviceAttribute>> deviceAttributes(const Item& item);
  std::optional<std::string> choice(const Item& item, std::initializer_list<std::string_view> ok,
                                    std::string_view expected);

  // Sections.
  void upstreams(const Item& item, Config& config);
  void plugins(const Item& item, Config& config);
  Upstream upstream(const std::string& name, const Item& item);
  void listeners(const Item& item, Config& config);
  Listener listener(const Item& item, size_t index, Config& config);
  std::optional<Tls> tls(const Item& item);
  std::optional<Certificate> certificate(const Item& item);
  std::vector<Route> routes(const Fields& fields, const Config& config);
  std::optional<Route> route(const Item& item, const Config& config);
  std::optional<std::string> routeHost(const Item& item);
  std::optional<std::string> pathPrefix(const Item& item);
  void checkUnique(const Fields& fields, const Listener& listener);
  void checkAdminAddress(const Config& config);
  void limits(const Item& item, Limits& limits);
  void admin(const Item& item, Admin& admin);
  void log(const Item& item, Log& log);
  void cluster(const Item& item, Cluster& cluster);
  void sessionCache(const Item& item, SessionCache& cache);
  void sealKeys(const Fields& fields, SessionCache& cache, bool required);
  std::optional<SealKeyRef> sealKey(const Item& item, std::map<std::string, std::string>& ids);
  void memcached(const Fields& fields, Memcached& out, bool required);
  void deviceBinding(const Item& item, DeviceBinding& binding);
  void tlsBinding(const Item& item, TlsBinding& binding);

  std::string file_;
  std::vector<Error> errors_;
  std::map<std::string, std::string> listener_names_;    // name -> key path that set it
  std::map<std::string, std::string> listen_addresses_;  // host:port -> key path
};

void Loader::fail(Mark mark, std::string path, std::string message) {
  errors_.push_back(Error{file_, mark, std::move(path), std::move(message)});
}

std::vector<Error> Loader::takeErrors() {
  // Sections are checked in dependency order, not file order; report in file order.
  std::stable_sort(errors_.begin(), errors_.end(), [](const Error& a, const Error& b) {
    return std::pair(a.mark.line, a.mark.column) < std::pair(b.mark.line, b.mark.column);
  });
  return std::move(errors_);
}

// --- Structure --------------------------------------------------------------------------------

std::optional<Fields> Loader::fields(const Item& item,
                                     std::initializer_list<std::string_view> allowed) {
  if (!item.node.IsMap()) {
    fail(item, "expected a map");
    return std::nullopt;
  }
  Fields fields{item.path, item.mark, {}};
  for (const auto& pair : item.node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar()) {
      fail(markOf(key), item.path, "expected a string key");
      continue;
    }
    std::string path = joinPath(item.path, key.Scalar());
    if (std::find(allowed.begin(), allowed.end(), key.Scalar()) == allowed.end()) {
      fail(markOf(key), path, "unknown key");
    } else if (fields.find(key.Scalar())) {
      fail(markOf(key), path, "duplicate key");
    } else {
      // A null value has no position of its own (yaml-cpp reports the next token): blame the key.
      Mark mark = pair.second.IsNull() ? markOf(key) : markOf(pair.second);
      fields.entries.emplace_back(key.Scalar(), Item{pair.second, std::move(path), mark});
    }
  }
  return fields;
}

const Item* Loader::need(const Fields& fields, std::string_view key) {
  const Item* item = fields.find(key);
  if (!item) fail(fields.mark, joinPath(fields.path, key), "required");
  return item;
}

bool Loader::isList(const Item& item, bool non_empty) {
  if (!item.node.IsSequence()) {
    fail(item, "expected a list");
    return false;
  }
  if (non_empty && item.node.size() == 0) {
    fail(item, "must not be empty");
    return false;
  }
  return true;
}

std::vector<Item> Loader::elements(const Item& item) {
  std::vector<Item> out;
  size_t index = 0;
  for (const YAML::Node& node : item.node) {
    // An empty list item ("- ") is null and, like a null map value, has no position of its own.
    Mark mark = node.IsNull() ? item.mark : markOf(node);
    out.push_back(Item{node, indexPath(item.path, index++), mark});
  }
  return out;
}

// --- Scalars ----------------------------------------------------------------------------------

std::optional<std::string> Loader::scalar(const Item& item, std::string_view expected) {
  if (!item.node.IsScalar()) {
    fail(item, std::string(expected));
    return std::nullopt;
  }
  return item.node.Scalar();
}

std::optional<std::string> Loader::nonEmpty(const Item& item) {
  std::optional<std::string> text = scalar(item, "expected a string");
  if (text && text->empty()) {
    fail(item, "must not be empty");
    return std::nullopt;
  }
  return text;
}

std::optional<bool> Loader::boolean(const Item& item) {
  bool value = false;
  if (!item.node.IsScalar() || !YAML::convert<bool>::decode(item.node, value)) {
    fail(item, "expected true or false");
    return std::nullopt;
  }
  return value;
}

std::optional<int> Loader::count(const Item& item) {
  std::optional<std::string> text = scalar(item, "expected an integer >= 0");
  if (!text) return std::nullopt;
  std::optional<uint64_t> value = parseUnsigned(*text);
  if (!value || *value > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
    fail(item, "expected an integer >= 0");
    return std::nullopt;
  }
  return static_cast<int>(*value);
}

std::optional<int> Loader::workers(const Item& item) {
  const std::string expected =
      "expected \"auto\" or a number from 1 to " + std::to_string(kMaxWorkers);
  std::optional<std::string> text = scalar(item, expected);
  if (!text) return std::nullopt;
  if (*text == "auto") return 0;
  std::optional<uint64_t> value = parseUnsigned(*text);
  if (!value || *value < 1 || *value > kMaxWorkers) {
    fail(item, expected);
    return std::nullopt;
  }
  return static_cast<int>(*value);
}

std::optional<int> Loader::intInRange(const Item& item, int min, int max) {
  const std::string expected =
      "expected an integer from " + std::to_string(min) + " to " + std::to_string(max);
  std::optional<std::string> text = scalar(item, expected);
  if (!text) return std::nullopt;
  std::optional<uint64_t> value = parseUnsigned(*text);
  if (!value || *value < static_cast<uint64_t>(min) || *value > static_cast<uint64_t>(max)) {
    fail(item, expected);
    return std::nullopt;
  }
  return static_cast<int>(*value);
}

std::optional<int> Loader::ioThreads(const Item& item) {
  return intInRange(item, 1, kMaxIoThreads);
}
std::optional<int> Loader::ipv4Prefix(const Item& item) { return intInRange(item, 0, 32); }
std::optional<int> Loader::ipv6Prefix(const Item& item) { return intInRange(item, 0, 128); }

std::optional<uint64_t> Loader::entries(const Item& item) {
  std::optional<std::string> text = scalar(item, "expected an integer >= 0");
  if (!text) return std::nullopt;
  std::optional<uint64_t> value = parseUnsigned(*text);
  if (!value) fail(item, "expected an integer >= 0");
  return value;
}

std::optional<uint64_t> Loader::maxEntries(const Item& item) {
  std::optional<uint64_t> value = entries(item);
  if (value && *value == 0) {
    fail(item, "must be greater than 0");
    return std::nullopt;
  }
  return value;
}

std::optional<Millis> Loader::duration(const Item& item) {
  static constexpr std::string_view kExpected = "expected a duration like 250ms or 2s";
  std::optional<std::string> text = scalar(item, kExpected);
  if (!text) return std::nullopt;
  std::optional<Millis> value = parseDuration(*text);
  if (!value) {
    fail(item, std::string(kExpected));
    return std::nullopt;
  }
  // Every duration in the config is a timeout; zero would expire everything at once.
  if (value->count() == 0) {
    fail(item, "must be greater than 0");
    return std::nullopt;
  }
  return value;
}

std::optional<uint64_t> Loader::size(const Item& item) {
  static constexpr std::string_view kExpected = "expected a size like 16384, 64KiB or 10MiB";
  std::optional<std::string> text = scalar(item, kExpected);
  if (!text) return std::nullopt;
  std::optional<uint64_t> value = parseSize(*text);
  if (!value) {
    fail(item, std::string(kExpected));
    return std::nullopt;
  }
  // Every size in the config is a limit; zero would reject every request.
  if (*value == 0) {
    fail(item, "must be greater than 0");
    return std::nullopt;
  }
  return value;
}

std::optional<HostPort> Loader::hostPort(const Item& item) {
  std::optional<std::string> text = scalar(item, "expected host:port");
  if (!text) return std::nullopt;
  std::optional<HostPort> value = parseHostPort(*text);
  if (!value) {
    fail(item, "expected host:port");
    return std::nullopt;
  }
  // Kept so the proxy can report a failed bind or connect at the right place.
  value->mark = item.mark;
  value->key_path = item.path;
  return value;
}

std::optional<std::optional<HostPort>> Loader::adminListen(const Item& item) {
  if (item.node.IsScalar() && item.node.Scalar() == "off") {
    return std::optional<HostPort>();
  }
  std::optional<HostPort> value = hostPort(item);
  if (!value) return std::nullopt;
  return value;
}

std::optional<std::string> Loader::choice(const Item& item,
                                          std::initializer_list<std::string_view> ok,
                                          std::string_view expected) {
  std::optional<std::string> text = scalar(item, expected);
  if (!text) return std::nullopt;
  if (std::find(ok.begin(), ok.end(), *text) == ok.end()) {
    fail(item, std::string(expected));
    return std::nullopt;
  }
  return text;
}

std::optional<TlsVersion> Loader::tlsVersion(const Item& item) {
  // Unquoted 1.2 is a YAML float, but yaml-cpp keeps the scalar text, so both forms match.
  std::optional<std::string> text = choice(item, {"1.2", "1.3"}, "expected \"1.2\" or \"1.3\"");
  if (!text) return std::nullopt;
  return *text == "1.2" ? TlsVersion::k1_2 : TlsVersion::k1_3;
}

std::optional<std::vector<std::string>> Loader::alpn(const Item& item) {
  if (!isList(item, false)) return std::nullopt;
  std::vector<std::string> protocols;
  bool ok = true;
  for (const Item& element : elements(item)) {
    std::optional<std::string> protocol = nonEmpty(element);
    // The ALPN wire format stores each name's length in one byte.
    if (protocol && protocol->size() > 255) {
      fail(element, "must be at most 255 bytes");
      protocol.reset();
    }
    ok = ok && protocol.has_value();
    if (protocol) protocols.push_back(std::move(*protocol));
  }
  if (!ok) return std::nullopt;
  return protocols;
}

std::optional<std::string> Loader::logLevel(const Item& item) {
  return choice(item, {"trace", "debug", "info", "warn", "error", "critical", "off"},
                "expected one of trace, debug, info, warn, error, critical, off");
}

std::optional<std::string> Loader::accessLog(const Item& item) {
  std::optional<std::string> text = scalar(item, "expected stdout, stderr, off or a file path");
  if (text && text->empty()) {
    fail(item, "expected stdout, stderr, off or a file path");
    return std::nullopt;
  }
  return text;
}

std::optional<std::string> Loader::logFormat(const Item& item) {
  return choice(item, {"json", "common"}, "expected json or common");
}

std::optional<std::string> Loader::auditLog(const Item& item) {
  static constexpr std::string_view kExpected = "expected stderr, off or a file path";
  std::optional<std::string> text = scalar(item, kExpected);
  if (text && text->empty()) {
    fail(item, std::string(kExpected));
    return std::nullopt;
  }
  // Not silently a file named "stdout" in the working directory.
  if (text && *text == "stdout") {
    fail(item, std::string(kExpected) + "; stdout is not supported");
    return std::nullopt;
  }
  return text;
}

std::optional<StoreKind> Loader::storeKind(const Item& item) {
  std::optional<std::string> text =
      choice(item, {"memory", "memcached"}, "expected memory or memcached");
  if (!text) return std::nullopt;
  return *text == "memory" ? StoreKind::kMemory : StoreKind::kMemcached;
}

std::optional<std::string> Loader::sealKeyId(const Item& item) {
  std::optional<std::string> text = nonEmpty(item);
  if (!text) return std::nullopt;
  // Stored in every sealed record, so kept short and printable.
  auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  };
  if (text->size() > kMaxSealKeyId || !std::all_of(text->begin(), text->end(), ok)) {
    fail(item, "expected at most " + std::to_string(kMaxSealKeyId) +
                   " characters of A-Z, a-z, 0-9, '_', '.' and '-'");
    return std::nullopt;
  }
  return text;
}

std::optional<MemcachedServer> Loader::memcachedServer(const Item& item) {
  static constexpr std::string_view kExpected = "expected host:port[/weight]";
  std::optional<std::string> text = scalar(item, kExpected);
  if (!text) return std::nullopt;
  // Neither a host name nor a bracketed IPv6 address contains '/'.
  size_t slash = text->find('/');
  std::optional<HostPort> address = parseHostPort(text->substr(0, slash));
  if (!address) {
    fail(item, std::string(kExpected));
    return std::nullopt;
  }
  MemcachedServer result;
  if (slash != std::string::npos) {
    std::optional<uint64_t> weight = parseUnsigned(std::string_view(*text).substr(slash + 1));
    if (!weight || *weight < 1 || *weight > kMaxServerWeight) {
      fail(item, "weight must be an integer from 1 to " + std::to_string(kMaxServerWeight));
      return std::nullopt;
    }
    result.weight = static_cast<uint32_t>(*weight);
  }
  // Kept so the proxy can report a failed connect at the right place.
  address->mark = item.mark;
  address->key_path = item.path;
  result.address = std::move(*address);
  return result;
}

std::optional<std::vector<DeviceAttribute>> Loader::deviceAttributes(const Item& item) {
  if (!isList(item, false)) return std::nullopt;
  std::vector<DeviceAttribute> result;
  std::map<DeviceAttribute, std::string> seen;  // attribute -> key path that named it
  bool ok = true;
  for (const Item& element : elements(item)) {
    std::optional<std::string> text = choice(element, {"ip", "ja4"}, "expected ip or ja4");
    if (!text) {
      ok = false;
      continue;
    }
    DeviceAttribute attribute = *text == "ip" ? DeviceAttribute::kIp : DeviceAttribute::kJa4;
    auto [it, added] = seen.emplace(attribute, element.path);
    if (!added) {
      fail(element, "duplicate attribute " + *text + " (also " + it->second + ")");
      ok = false;
      continue;
    }
    result.push_back(attribute);
  }
  if (!ok) return std::nullopt;
  return result;
}

// --- Sections ---------------------------------------------------------------------------------

Config Loader::load(const YAML::Node& root) {
  Config config;
  config.file = file_;
  std::optional<Fields> top = fields(Item{root, "", markOf(root)},
                                     {"workers", "listeners", "upstreams", "limits", "admin", "log",
                                      "cluster", "session_cache", "device_binding", "plugins"});
  if (!top) return config;
  readOptional(*top, "workers", config.workers, &Loader::workers);
  // Upstreams and plugins first: routes refer to them.
  if (const Item* item = need(*top, "upstreams")) upstreams(*item, config);
  if (const Item* item = top->find("plugins")) plugins(*item, config);
  if (const Item* item = need(*top, "listeners")) listeners(*item, config);
  if (const Item* item = top->find("limits")) limits(*item, config.limits);
  if (const Item* item = top->find("admin")) {
    admin(*item, config.admin);
  } else {
    config.admin.listen = HostPort{"127.0.0.1", kDefaultAdminPort, {}, "admin.listen"};
  }
  if (const Item* item = top->find("log")) log(*item, config.log);
  if (const Item* item = top->find("cluster")) cluster(*item, config.cluster);
  if (const Item* item = top->find("session_cache")) sessionCache(*item, config.session_cache);
  if (const Item* item = top->find("device_binding")) {
    deviceBinding(*item, config.device_binding);
  }
  checkAdminAddress(config);
  return config;
}

void Loader::plugins(const Item& item, Config& config) {
  if (!item.node.IsMap()) {
    fail(item, "expected a map of plugin instances");
    return;
  }
  for (const auto& pair : item.node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar() || key.Scalar().empty()) {
      fail(markOf(key), item.path, "expected a plugin name");
      continue;
    }
    std::string path = joinPath(item.path, key.Scalar());
    Item entry{pair.second, path, markOf(pair.second)};
    if (!pair.second.IsMap()) {
      fail(entry, "expected a map with a type");
      continue;
    }
    const YAML::Node type = pair.second["type"];
    if (!type || !type.IsScalar() || type.Scalar().empty()) {
      fail(entry.mark, joinPath(path, "type"), "required");
      continue;
    }
    config.plugins[key.Scalar()] =
        PluginInstance{key.Scalar(), type.Scalar(), pair.second, entry.mark, path};
  }
}

void Loader::upstreams(const Item& item, Config& config) {
  if (!item.node.IsMap()) {
    fail(item, "expected a map");
    return;
  }
  if (item.node.size() == 0) fail(item, "must not be empty");
  for (const auto& pair : item.node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar() || key.Scalar().empty()) {
      fail(markOf(key), item.path, "expected an upstream name");
      continue;
    }
    const std::string& name = key.Scalar();
    std::string path = joinPath(item.path, name);
    if (config.upstreams.count(name)) {
      fail(markOf(key), path, "duplicate key");
      continue;
    }
    Mark mark = pair.second.IsNull() ? markOf(key) : markOf(pair.second);
    config.upstreams.emplace(name, upstream(name, Item{pair.second, path, mark}));
  }
}

Upstream Loader::upstream(const std::string& name, const Item& item) {
  // Returned even when invalid, so that routes naming it do not also report "unknown upstream".
  Upstream result;
  result.name = name;
  std::optional<Fields> f =
      fields(item, {"servers", "keepalive", "connect_timeout", "read_timeout", "fail_timeout"});
  if (!f) return result;
  if (const Item* servers = need(*f, "servers"); servers && isList(*servers, true)) {
    for (const Item& element : elements(*servers)) {
      if (std::optional<HostPort> server = hostPort(element)) result.servers.push_back(*server);
    }
  }
  readOptional(*f, "keepalive", result.keepalive, &Loader::count);
  readOptional(*f, "connect_timeout", result.connect_timeout, &Loader::duration);
  readOptional(*f, "read_timeout", result.read_timeout, &Loader::duration);
  readOptional(*f, "fail_timeout", result.fail_timeout, &Loader::duration);
  return result;
}

void Loader::listeners(const Item& item, Config& config) {
  if (!isList(item, true)) return;
  size_t index = 0;
  for (const Item& element : elements(item)) {
    config.listeners.push_back(listener(element, index++, config));
  }
}

Listener Loader::listener(const Item& item, size_t index, Config& config) {
  Listener result;
  result.name = "listener" + std::to_string(index);
  std::optional<Fields> f =
      fields(item, {"name", "listen", "trust_forwarded_headers", "tls", "routes"});
  if (!f) return result;
  readOptional(*f, "name", result.name, &Loader::nonEmpty);
  readRequired(*f, "listen", result.listen, &Loader::hostPort);
  readOptional(*f, "trust_forwarded_headers", result.trust_forwarded_headers, &Loader::boolean);
  if (const Item* block = f->find("tls")) {
    result.tls = tls(*block);
    // Keep the listener marked as TLS even when the block is broken: never fall back to plain.
    if (!result.tls) result.tls.emplace();
  }
  result.routes = routes(*f, config);
  checkUnique(*f, result);
  return result;
}

std::optional<Tls> Loader::tls(const Item& item) {
  std::optional<Fields> f =
      fields(item, {"certificates", "min_version", "alpn", "session_resumption", "client_ca"});
  if (!f) return std::nullopt;
  Tls result;
  if (const Item* list = need(*f, "certificates"); list && isList(*list, true)) {
    for (const Item& element : elements(*list)) {
      if (std::optional<Certificate> cert = certificate(element)) {
        result.certificates.push_back(std::move(*cert));
      }
    }
  }
  readOptional(*f, "min_version", result.min_version, &Loader::tlsVersion);
  readOptional(*f, "alpn", result.alpn, &Loader::alpn);
  readOptional(*f, "session_resumption", result.session_resumption, &Loader::boolean);
  readOptional(*f, "client_ca", result.client_ca, &Loader::nonEmpty);
  return result;
}

std::optional<Certificate> Loader::certificate(const Item& item) {
  std::optional<Fields> f = fields(item, {"cert", "key"});
  if (!f) return std::nullopt;
  Certificate result;
  result.mark = item.mark;
  result.key_path = item.path;
  readRequired(*f, "cert", result.cert, &Loader::nonEmpty);
  readRequired(*f, "key", result.key, &Loader::nonEmpty);
  return result;
}

std::vector<Route> Loader::routes(const Fields& fields, const Config& config) {
  const Item* item = fields.find("routes");
  if (!item) {
    if (config.upstreams.size() == 1) {
      Route everything;  // host "*", path_prefix "/"
      everything.upstream = config.upstreams.begin()->first;
      return {everything};
    }
    // With no upstreams at all, "upstreams: required" already explains the problem.
    if (!config.upstreams.empty()) fail(fields.mark, joinPath(fields.path, "routes"), "required");
    return {};
  }
  std::vector<Route> result;
  if (!isList(*item, true)) return result;
  for (const Item& element : elements(*item)) {
    if (std::optional<Route> r = route(element, config)) result.push_back(std::move(*r));
  }
  return result;
}

std::optional<Route> Loader::route(const Item& item, const Config& config) {
  std::optional<Fields> f = fields(item, {"host", "path_prefix", "upstream", "plugins"});
  if (!f) return std::nullopt;
  Route result;
  result.key_path = item.path;
  readOptional(*f, "host", result.host, &Loader::routeHost);
  readOptional(*f, "path_prefix", result.path_prefix, &Loader::pathPrefix);
  if (const Item* list = f->find("plugins"); list && isList(*list, false)) {
    for (const Item& element : elements(*list)) {
      std::optional<std::string> name = nonEmpty(element);
      if (!name) continue;
      if (!config.plugins.count(*name)) fail(element, "unknown plugin \"" + *name + "\"");
      result.plugins.push_back(std::move(*name));
      result.plugin_marks.push_back(element.mark);
    }
  }
  const Item* upstream = need(*f, "upstream");
  if (std::optional<std::string> name = upstream ? nonEmpty(*upstream) : std::nullopt) {
    // Without any upstreams every name would be reported; "upstreams: required" says it all.
    if (!config.upstreams.empty() && !config.upstreams.count(*name)) {
      fail(*upstream, "unknown upstream \"" + *name + "\"");
    }
    result.upstream = std::move(*name);
  }
  return result;
}

std::optional<std::string> Loader::routeHost(const Item& item) {
  static constexpr std::string_view kExpected = "expected \"*\", a host name or \"*.suffix\"";
  std::optional<std::string> text = scalar(item, kExpected);
  if (!text) return std::nullopt;
  std::string_view name = *text;
  if (name == "*") return text;
  if (name.starts_with("*.")) name.remove_prefix(2);
  if (!isHostName(name)) {
    fail(item, std::string(kExpected));
    return std::nullopt;
  }
  // Host names are case-insensitive; the proxy compares against a lowercased Host header.
  return lower(std::move(*text));
}

std::optional<std::string> Loader::pathPrefix(const Item& item) {
  std::optional<std::string> text = scalar(item, "expected a string");
  if (text && !text->starts_with('/')) {
    fail(item, "must start with \"/\"");
    return std::nullopt;
  }
  return text;
}

void Loader::checkUnique(const Fields& fields, const Listener& listener) {
  const Item* name = fields.find("name");
  std::string name_path = joinPath(fields.path, "name");
  auto [it, added] = listener_names_.emplace(listener.name, name_path);
  if (!added) {
    fail(name ? name->mark : fields.mark, name_path,
         "duplicate listener name \"" + listener.name + "\" (also " + it->second + ")");
  }
  if (listener.listen.port == 0) return;  // missing or invalid: already reported
  auto [at, fresh] = listen_addresses_.emplace(listener.listen.str(), listener.listen.key_path);
  if (!fresh) {
    fail(listener.listen.mark, listener.listen.key_path,
         "duplicate address " + listener.listen.str() + " (also " + at->second + ")");
  }
}

void Loader::checkAdminAddress(const Config& config) {
  if (!config.admin.listen) return;
  // Blame the listener: the admin address may be a default with no place in the file.
  for (const Listener& listener : config.listeners) {
    if (listener.listen.port != 0 && listener.listen.str() == config.admin.listen->str()) {
      fail(listener.listen.mark, listener.listen.key_path,
           "address " + listener.listen.str() + " is also used by admin.listen");
    }
  }
}

void Loader::limits(const Item& item, Limits& limits) {
  std::optional<Fields> f = fields(item, {"max_header_bytes", "header_timeout", "idle_timeout",
                                          "send_timeout", "max_body_bytes", "drain_timeout"});
  if (!f) return;
  readOptional(*f, "max_header_bytes", limits.max_header_bytes, &Loader::size);
  readOptional(*f, "header_timeout", limits.header_timeout, &Loader::duration);
  readOptional(*f, "idle_timeout", limits.idle_timeout, &Loader::duration);
  readOptional(*f, "send_timeout", limits.send_timeout, &Loader::duration);
  readOptional(*f, "max_body_bytes", limits.max_body_bytes, &Loader::size);
  readOptional(*f, "drain_timeout", limits.drain_timeout, &Loader::duration);
}

void Loader::admin(const Item& item, Admin& admin) {
  admin.listen = HostPort{"127.0.0.1", kDefaultAdminPort, {}, "admin.listen"};
  std::optional<Fields> f = fields(item, {"listen"});
  if (!f) return;
  readOptional(*f, "listen", admin.listen, &Loader::adminListen);
}

void Loader::log(const Item& item, Log& log) {
  std::optional<Fields> f =
      fields(item, {"level", "access_log", "format", "audit_log", "audit_rate_limit"});
  if (!f) return;
  readOptional(*f, "level", log.level, &Loader::logLevel);
  readOptional(*f, "access_log", log.access_log, &Loader::accessLog);
  readOptional(*f, "format", log.format, &Loader::logFormat);
  readOptional(*f, "audit_log", log.audit_log, &Loader::auditLog);
  readOptional(*f, "audit_rate_limit", log.audit_rate_limit, &Loader::count);
}

void Loader::cluster(const Item& item, Cluster& cluster) {
  std::optional<Fields> f = fields(item, {"name"});
  if (!f) return;
  readOptional(*f, "name", cluster.name, &Loader::nonEmpty);
}

void Loader::sessionCache(const Item& item, SessionCache& cache) {
  std::optional<Fields> f = fields(
      item, {"store", "lifetime", "timeout", "l1_entries", "memory", "seal_keys", "memcached"});
  if (!f) return;
  // With a bad store value, the memcached requirements are not checked: "store: expected ..."
  // already says what is wrong.
  bool store_ok = true;
  if (const Item* store = f->find("store")) {
    std::optional<StoreKind> kind = storeKind(*store);
    if (kind) cache.store = *kind;
    store_ok = kind.has_value();
  }
  const bool shared = store_ok && cache.store == StoreKind::kMemcached;
  readOptional(*f, "lifetime", cache.lifetime, &Loader::duration);
  readOptional(*f, "timeout", cache.timeout, &Loader::duration);
  readOptional(*f, "l1_entries", cache.l1_entries, &Loader::entries);
  if (const Item* memory = f->find("memory")) {
    if (std::optional<Fields> m = fields(*memory, {"max_entries"})) {
      readOptional(*m, "max_entries", cache.memory_max_entries, &Loader::maxEntries);
    }
  }
  sealKeys(*f, cache, shared);
  // Accepted and checked with either store, so switching back and forth needs no other edit.
  if (const Item* block = f->find("memcached")) {
    if (std::optional<Fields> m =
            fields(*block, {"servers", "replicas", "io_threads", "retry_timeout", "connect_timeout",
                            "io_timeout"})) {
      memcached(*m, cache.memcached, shared);
    }
  } else if (shared) {
    fail(f->mark, joinPath(f->path, "memcached"), "required when store is memcached");
  }
}

void Loader::sealKeys(const Fields& fields, SessionCache& cache, bool required) {
  const Item* list = fields.find("seal_keys");
  if (!list) {
    // Without keys the memory store seals with a random key made at startup; records shared
    // with other processes need keys every node has.
    if (required) {
      fail(fields.mark, joinPath(fields.path, "seal_keys"), "required when store is memcached");
    }
    return;
  }
  if (!isList(*list, false)) return;
  if (required && list->node.size() == 0) {
    fail(*list, "must not be empty when store is memcached");
  }
  std::map<std::string, std::string> ids;  // id -> key path that set it
  for (const Item& element : elements(*list)) {
    if (std::optional<SealKeyRef> key = sealKey(element, ids)) {
      cache.seal_keys.push_back(std::move(*key));
    }
  }
}

std::optional<SealKeyRef> Loader::sealKey(const Item& item,
                                          std::map<std::string, std::string>& ids) {
  std::optional<Fields> f = fields(item, {"id", "file"});
  if (!f) return std::nullopt;
  SealKeyRef result;
  result.mark = item.mark;
  result.key_path = item.path;
  readRequired(*f, "id", result.id, &Loader::sealKeyId);
  readRequired(*f, "file", result.file, &Loader::nonEmpty);
  const Item* id = f->find("id");
  if (id && !result.id.empty()) {
    // Records name the key that sealed them: two keys with one id could not be told apart.
    auto [it, added] = ids.emplace(result.id, id->path);
    if (!added) {
      fail(*id, "duplicate seal key id \"" + result.id + "\" (also " + it->second + ")");
    }
  }
  return result;
}

void Loader::memcached(const Fields& fields, Memcached& out, bool required) {
  const Item* servers = fields.find("servers");
  bool servers_ok = false;  // present, a list, and every entry accepted
  if (!servers) {
    if (required) {
      fail(fields.mark, joinPath(fields.path, "servers"), "required when store is memcached");
    }
  } else if (isList(*servers, false)) {
    servers_ok = true;
    if (required && servers->node.size() == 0) {
      fail(*servers, "must not be empty when store is memcached");
    }
    std::map<std::string, std::string> addresses;  // host:port -> key path
    for (const Item& element : elements(*servers)) {
      std::optional<MemcachedServer> server = memcachedServer(element);
      if (!server) {
        servers_ok = false;
        continue;
      }
      // A duplicate would hold two points of the ring, and a "replica" could land on it.
      auto [it, added] = addresses.emplace(server->address.str(), element.path);
      if (!added) {
        fail(element, "duplicate server " + server->address.str() + " (also " + it->second + ")");
        servers_ok = false;
        continue;
      }
      out.servers.push_back(std::move(*server));
    }
  }
  const int server_count = static_cast<int>(out.servers.size());
  if (const Item* replicas = fields.find("replicas")) {
    std::optional<int> value = count(*replicas);
    if (value) {
      out.replicas = *value;
      // Only meaningful once the server list is valid; a broken list is reported already.
      if (required && servers_ok && server_count > 0 && *value >= server_count) {
        fail(*replicas, "must be less than the number of servers");
      }
    }
  } else if (server_count > 0) {
    // The default of 1 extra copy needs two servers; with a single one there is nowhere to put it.
    out.replicas = std::min(out.replicas, server_count - 1);
  }
  readOptional(fields, "io_threads", out.io_threads, &Loader::ioThreads);
  readOptional(fields, "retry_timeout", out.retry_timeout, &Loader::duration);
  readOptional(fields, "connect_timeout", out.connect_timeout, &Loader::duration);
  readOptional(fields, "io_timeout", out.io_timeout, &Loader::duration);
}

void Loader::deviceBinding(const Item& item, DeviceBinding& binding) {
  std::optional<Fields> f = fields(item, {"tls"});
  if (!f) return;
  if (const Item* tls = f->find("tls")) tlsBinding(*tls, binding.tls);
}

void Loader::tlsBinding(const Item& item, TlsBinding& binding) {
  std::optional<Fields> f = fields(item, {"attributes", "ipv4_prefix", "ipv6_prefix"});
  if (!f) return;
  readOptional(*f, "attributes", binding.attributes, &Loader::deviceAttributes);
  readOptional(*f, "ipv4_prefix", binding.ipv4_prefix, &Loader::ipv4Prefix);
  readOptional(*f, "ipv6_prefix", binding.ipv6_prefix, &Loader::ipv6Prefix);
}

// --- Entry points -----------------------------------------------------------------------------

// Returns the single document, or records why there is none.
std::optional<YAML::Node> parseDocument(const std::string& yaml, Loader& loader) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(yaml);
  } catch (const YAML::Exception& e) {
    loader.fail(markOf(e.mark), "", e.msg);
    return std::nullopt;
  }
  if (documents.empty() || documents[0].IsNull()) {
    loader.fail(Mark{1, 1}, "", "empty document: expected a map");
    return std::nullopt;
  }
  if (documents.size() > 1) {
    loader.fail(markOf(documents[1]), "", "expected a single YAML document");
    return std::nullopt;
  }
  return documents[0];
}

[[noreturn]] void throwCannotRead(const std::string& path, int error) {
  throw ConfigError({Error{path, Mark{}, "", std::string("cannot read: ") + std::strerror(error)}});
}

}  // namespace

std::shared_ptr<const Config> loadString(const std::string& yaml, const std::string& name) {
  Loader loader(name);
  Config config;
  if (std::optional<YAML::Node> root = parseDocument(yaml, loader)) {
    try {
      config = loader.load(*root);
    } catch (const YAML::Exception& e) {
      // Not expected: the loader checks node types before reading them. Report, don't crash.
      loader.fail(markOf(e.mark), "", e.msg);
    }
  }
  std::vector<Error> errors = loader.takeErrors();
  if (!errors.empty()) throw ConfigError(std::move(errors));
  return std::make_shared<const Config>(std::move(config));
}

std::shared_ptr<const Config> loadFile(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) throwCannotRead(path, errno);
  std::string text;
  char buffer[8192];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, file.get())) text.append(buffer, n);
  // A directory opens fine on Linux; the read is what fails (EISDIR).
  if (std::ferror(file.get())) throwCannotRead(path, errno);
  return loadString(text, path);
}

}  // namespace tessera::conf
