#pragma once

// Helpers shared by the plugins' config parsers (session_binding_config.cc, jwt_config.cc,
// migration_config.cc, guard_config.cc): they read one YAML value each and throw PluginConfigError,
// with the key path and the 1-based line and column of the value, when it is malformed. Start-up
// code only: exceptions are fine here, and nothing of this runs on the data path.
//
// Messages are part of the contract: tests and operators match on them, so a helper says the same
// thing for every plugin that uses it.

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/store.h"

namespace tessera::plugins::fields {

// Browsers keep no cookie longer (RFC 6265bis, 5.5): a longer binding or permit would only fill
// the store. It also keeps every TTL far from overflow.
inline constexpr cache::Seconds kMaxCookieLifetime{int64_t{400} * 24 * 60 * 60};

[[noreturn]] void fail(const YAML::Mark& mark, std::string path, const std::string& message);

// A key's value, with where to blame it: a null value has no position of its own (yaml-cpp
// reports the next token's), so its key's position is used instead.
struct Item {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;
};

// A value inside `parent` (a list entry, a map value), blamed on the parent when it is null.
Item child(const Item& parent, const YAML::Node& node, std::string path);

// One key of a map, in document order: `key_mark` is where the key itself is written.
struct Entry {
  std::string key;
  YAML::Mark key_mark;
  Item value;
};

// A map's entries in document order, refusing a non-map, a non-string key, a key not in `known`
// ("unknown key") and a repeated key ("duplicate key": yaml-cpp keeps both entries, and the second
// would silently win). Paths are `item.path` + "." + key, or the bare key at the root ("").
std::vector<Entry> mapEntries(const Item& item, std::span<const std::string_view> known);

// As mapEntries, but calls `apply` on each value as soon as its key has passed, so the first
// problem in document order is the one reported. Returns the keys seen.
std::set<std::string> forEachKey(const Item& item, std::initializer_list<std::string_view> known,
                                 const std::function<void(const std::string&, const Item&)>& apply);

// Calls `element` on each item of a non-empty list ("expected a list", "must not be empty").
void forEachEntry(const Item& item, const std::function<void(const Item&)>& element);

template <typename List>
bool contains(const List& list, std::string_view value) {
  return std::find(std::begin(list), std::end(list), value) != std::end(list);
}

// A non-empty list of distinct strings, each checked by `element`.
template <typename Element>
std::vector<std::string> stringList(const Item& item, Element element) {
  std::vector<std::string> out;
  forEachEntry(item, [&](const Item& entry) {
    std::string value = element(entry);
    if (contains(out, value)) fail(entry.mark, entry.path, "duplicate \"" + value + "\"");
    out.push_back(std::move(value));
  });
  return out;
}

// The value's text; `expected` is the message when it is a list, a map or null.
std::string scalar(const Item& item, const std::string& expected);
// As scalar(), and `expected` also for an empty string.
std::string nonEmpty(const Item& item, const std::string& expected);

// RFC 9110 tchar: header names and cookie names (RFC 6265 cookie-name is a token) are made of it.
bool isToken(std::string_view text);
std::string lowerCase(std::string_view text);

// A cookie name, exact (cookie names are case-sensitive).
std::string cookieName(const Item& item);
// A header name as written (any case).
std::string headerName(const Item& item);
// A header the plugin writes into the request going upstream: headerName(), minus the ones the
// proxy frames the request with or a plugin reads its credentials from (Host, Content-Length,
// Transfer-Encoding, Connection, Cookie…): a value written into one would corrupt the request.
std::string forwardedHeaderName(const Item& item);

// A device fingerprint attribute, as Context::deviceFingerprint takes them: ip, ja4, user_agent
// or header:NAME, with NAME lower-cased so that a change of spelling in the config does not
// change every device's fingerprint.
std::string attribute(const Item& item);
// An address prefix length from 0 to `max` (32 for IPv4, 128 for IPv6).
int prefix(const Item& item, int max);

// Where a plugin's endpoints live on its routes ("/_tessera/"): starts and ends with '/', letters,
// digits, '-', '.', '_', '~' and '/' only, no empty, '.' or '..' segment. The runtime matches
// request targets against prefix + endpoint name, so nothing a client could spell another way
// (%-escapes, dot segments, "//") is let in.
std::string endpointPrefix(const Item& item);

// "<digits><unit>", unit ms, s, m or h; bare digits are seconds, as everywhere in tessera's config.
// nullopt when malformed or absurdly large.
std::optional<cache::Millis> parseDuration(std::string_view text);
// A duration greater than 0.
cache::Millis duration(const Item& item);
// A duration greater than 0 in whole seconds (the store's unit), rounded up; `too_long` is the
// message when it is over `max`.
cache::Seconds wholeSeconds(const Item& item, cache::Seconds max, const std::string& too_long);
// wholeSeconds() up to kMaxCookieLifetime ("must be at most 400 days (browsers keep no cookie
// longer)").
cache::Seconds cookieLifetime(const Item& item);

// "<digits><unit>", unit KiB, MiB or GiB (powers of 1024) or KB, MB or GB (powers of 1000); bare
// digits are bytes. The same syntax as every size in tessera's config (docs/config.md). nullopt
// when malformed or over 2^64 - 1.
std::optional<uint64_t> parseSize(std::string_view text);
// A size greater than 0; `too_large` is the message when it is over `max`.
uint64_t size(const Item& item, uint64_t max, const std::string& too_large);

bool boolean(const Item& item);

// One of two words ("expected FIRST or SECOND").
template <typename Enum>
Enum choice(const Item& item, std::string_view first, Enum first_value, std::string_view second,
            Enum second_value) {
  std::string expected = "expected " + std::string(first) + " or " + std::string(second);
  std::string text = scalar(item, expected);
  if (text == first) return first_value;
  if (text == second) return second_value;
  fail(item.mark, item.path, expected);
}

}  // namespace tessera::plugins::fields
