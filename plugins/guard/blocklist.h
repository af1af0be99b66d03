#pragma once

// The cluster-wide blocklist of the `guard` plugin: entries added and removed while tessera runs,
// through the admin API (POST/DELETE/GET /blocklist), on any node.
//
// Where it lives. One document in the store under kBlocklistKey, sealed like every other record
// (the AAD is the key), so that memcached can neither read nor forge an entry. Every guard
// instance of every node enforces it, on top of its own YAML `blocklist:`.
//
// Writers. The admin API of any node: it takes kBlocklistLockKey with an atomic `add` (so two
// nodes never overwrite each other's change), reads the document, changes it, writes it back and
// drops the lock. The lock has a short TTL, so a node that dies holding it blocks nobody for long.
//
// Readers. Each worker keeps the document it last read and reads it again once it is older than
// kBlocklistRefresh; a request that finds it older than kBlocklistMaxAge waits for a fresh read.
// A block made on one node therefore holds on every node within kBlocklistMaxAge.
//
// Pure logic here (parse, change, match); the store calls are the plugin's and the admin API's.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plugins/guard/guard_config.h"

namespace tessera::plugins::guard {

inline constexpr std::string_view kBlocklistKey = "guard:blocklist";
inline constexpr std::string_view kBlocklistLockKey = "guard:blocklist:lock";
inline constexpr size_t kMaxBlocklistEntries = 10000;
inline constexpr std::chrono::milliseconds kBlocklistRefresh{400};
inline constexpr std::chrono::milliseconds kBlocklistMaxAge{800};

struct BlockEntry {
  enum class Kind { kIp, kCidr, kDevice, kUser };
  Kind kind = Kind::kIp;
  std::string value;    // as the admin gave it (trimmed); addresses as parsed, e.g. "10.0.0.0/8"
  int64_t expires = 0;  // seconds since the epoch; 0: never
};

std::optional<BlockEntry::Kind> parseKind(std::string_view text);  // "ip", "cidr", "device", "user"
std::string_view kindName(BlockEntry::Kind kind);

class Blocklist {
 public:
  // An empty document parses; anything not written by serialize() is nullopt.
  static std::optional<Blocklist> parse(std::string_view json);
  std::string serialize() const;

  // A checked entry: an ip must parse as an address, a cidr as a network (host bits are zeroed);
  // devices and users are 1..512 bytes without control characters. nullopt with `error` set.
  static std::optional<BlockEntry> makeEntry(std::string_view kind, std::string_view value,
                                             int64_t expires, std::string& error);

  // Adds or replaces (same kind and value) an entry; false when the list is full.
  bool add(BlockEntry entry);
  // True if there was such an entry.
  bool remove(BlockEntry::Kind kind, std::string_view value);
  // Drops the entries expired at `now`.
  void prune(int64_t now);
  const std::vector<BlockEntry>& entries() const { return entries_; }

  // Whether a live entry (at `now`) matches the client's address, device or user. An empty
  // device or user matches nothing; `ip` may be null (an address that did not parse).
  bool blocks(const IpAddress* ip, std::string_view device, std::string_view user,
              int64_t now) const;

 private:
  void index();

  std::vector<BlockEntry> entries_;
  // For matching, each with its entry's `expires` (0: never), so that an entry that has expired
  // since the document was read stops matching without a scan of the entries: exact values, and
  // the networks (single addresses are /32 or /128 networks), parsed once here.
  // Looked up by string_view (transparent hash): a guarded request's check allocates nothing.
  struct ViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  using Values = std::unordered_map<std::string, int64_t, ViewHash, std::equal_to<>>;
  Values devices_;
  Values users_;
  std::vector<std::pair<Cidr, int64_t>> networks_;
};

}  // namespace tessera::plugins::guard
