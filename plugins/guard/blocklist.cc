#include "plugins/guard/blocklist.h"

#include <arpa/inet.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "plugins/json_input.h"

namespace tessera::plugins::guard {

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxValueBytes = 512;

std::string_view trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

bool printable(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
}

// The canonical text of an address (inet_ntop's): one entry per address however it was written.
std::string formatIp(const IpAddress& ip) {
  char text[INET6_ADDRSTRLEN] = {};
  int family = ip.family == IpAddress::Family::kV4 ? AF_INET : AF_INET6;
  if (inet_ntop(family, ip.bytes.data(), text, sizeof(text)) == nullptr) return {};
  return text;
}

}  // namespace

std::optional<BlockEntry::Kind> parseKind(std::string_view text) {
  if (text == "ip") return BlockEntry::Kind::kIp;
  if (text == "cidr") return BlockEntry::Kind::kCidr;
  if (text == "device") return BlockEntry::Kind::kDevice;
  if (text == "user") return BlockEntry::Kind::kUser;
  return std::nullopt;
}

std::string_view kindName(BlockEntry::Kind kind) {
  switch (kind) {
    case BlockEntry::Kind::kIp:
      return "ip";
    case BlockEntry::Kind::kCidr:
      return "cidr";
    case BlockEntry::Kind::kDevice:
      return "device";
    case BlockEntry::Kind::kUser:
      return "user";
  }
  return "ip";
}

std::optional<BlockEntry> Blocklist::makeEntry(std::string_view kind_text, std::string_view value,
                                               int64_t expires, std::string& error) {
  std::optional<BlockEntry::Kind> kind = parseKind(kind_text);
  if (!kind) {
    error = "kind must be ip, cidr, device or user";
    return std::nullopt;
  }
  value = trim(value);
  if (value.empty() || value.size() > kMaxValueBytes || !printable(value)) {
    error = "value must be 1 to 512 printable bytes";
    return std::nullopt;
  }
  if (expires < 0) {
    error = "ttl must be positive";
    return std::nullopt;
  }
  std::string text(value);
  if (*kind == BlockEntry::Kind::kIp) {
    std::optional<IpAddress> ip = parseIp(value);
    if (!ip) {
      error = "value is not an IP address";
      return std::nullopt;
    }
    text = formatIp(*ip);
  } else if (*kind == BlockEntry::Kind::kCidr) {
    std::optional<Cidr> network = parseCidr(value);
    if (!network) {
      error = "value is not a network like 203.0.113.0/24";
      return std::nullopt;
    }
    text = formatIp(network->network) + "/" + std::to_string(network->prefix);
  }
  return BlockEntry{*kind, std::move(text), expires};
}

std::optional<Blocklist> Blocklist::parse(std::string_view text) {
  Blocklist out;
  if (text.empty()) return out;
  std::optional<Json> parsed = parseJsonObject(text, 4);
  if (!parsed) return std::nullopt;
  const Json& doc = *parsed;
  auto entries = doc.find("entries");
  if (entries == doc.end() || !entries->is_array() || entries->size() > kMaxBlocklistEntries) {
    return std::nullopt;
  }
  for (const Json& e : *entries) {
    if (!e.is_object()) return std::nullopt;
    auto kind = e.find("kind");
    auto value = e.find("value");
    auto expires = e.find("expires");
    if (kind == e.end() || !kind->is_string() || value == e.end() || !value->is_string() ||
        expires == e.end() || !expires->is_number_integer()) {
      return std::nullopt;
    }
    std::string error;
    std::optional<BlockEntry> entry =
        makeEntry(kind->get_ref<const std::string&>(), value->get_ref<const std::string&>(),
                  expires->get<int64_t>(), error);
    if (!entry) return std::nullopt;
    out.entries_.push_back(std::move(*entry));
  }
  out.index();
  return out;
}

std::string Blocklist::serialize() const {
  Json entries = Json::array();
  for (const BlockEntry& e : entries_) {
    entries.push_back({{"kind", kindName(e.kind)}, {"value", e.value}, {"expires", e.expires}});
  }
  return Json{{"entries", std::move(entries)}}.dump(-1, ' ', false, Json::error_handler_t::replace);
}

bool Blocklist::add(BlockEntry entry) {
  auto same = std::find_if(entries_.begin(), entries_.end(), [&](const BlockEntry& e) {
    return e.kind == entry.kind && e.value == entry.value;
  });
  if (same != entries_.end()) {
    *same = std::move(entry);
  } else {
    if (entries_.size() >= kMaxBlocklistEntries) return false;
    entries_.push_back(std::move(entry));
  }
  index();
  return true;
}

bool Blocklist::remove(BlockEntry::Kind kind, std::string_view value) {
  std::string error;
  std::optional<BlockEntry> canonical = makeEntry(kindName(kind), value, 0, error);
  if (canonical) value = canonical->value;
  size_t before = entries_.size();
  std::erase_if(entries_, [&](const BlockEntry& e) { return e.kind == kind && e.value == value; });
  if (entries_.size() == before) return false;
  index();
  return true;
}

void Blocklist::prune(int64_t now) {
  size_t before = entries_.size();
  std::erase_if(entries_, [&](const BlockEntry& e) { return e.expires != 0 && e.expires <= now; });
  if (entries_.size() != before) index();
}

void Blocklist::index() {
  devices_.clear();
  users_.clear();
  networks_.clear();
  for (const BlockEntry& e : entries_) {
    if (e.kind == BlockEntry::Kind::kDevice) devices_.emplace(e.value, e.expires);
    if (e.kind == BlockEntry::Kind::kUser) users_.emplace(e.value, e.expires);
    if (e.kind == BlockEntry::Kind::kIp || e.kind == BlockEntry::Kind::kCidr) {
      if (std::optional<Cidr> network = parseCidr(e.value))
        networks_.emplace_back(*network, e.expires);
    }
  }
}

bool Blocklist::blocks(const IpAddress* ip, std::string_view device, std::string_view user,
                       int64_t now) const {
  auto live = [now](int64_t expires) { return expires == 0 || now < expires; };
  auto listed = [&](const Values& values, std::string_view v) {
    if (v.empty()) return false;
    auto it = values.find(v);
    return it != values.end() && live(it->second);
  };
  if (listed(devices_, device) || listed(users_, user)) return true;
  if (ip == nullptr) return false;
  return std::any_of(networks_.begin(), networks_.end(), [&](const auto& network) {
    return live(network.second) && network.first.contains(*ip);
  });
}

}  // namespace tessera::plugins::guard
