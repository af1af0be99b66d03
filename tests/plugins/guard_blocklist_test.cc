// guard: the cluster-wide blocklist document (plugins/guard/blocklist.h) as pure logic: entries
// checked by makeEntry, the round trip through serialize() and parse(), add/remove/prune, what
// blocks() matches (addresses, networks, IPv4-mapped clients, devices, users), expiry honoured
// before any prune, the entry cap, and the documents parse() refuses.

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plugins/guard/blocklist.h"

namespace tessera::plugins::guard {
namespace {

using Kind = BlockEntry::Kind;
using Json = nlohmann::json;

constexpr int64_t kNow = 1'741'953'600;  // 2025-03-14 12:00:00 UTC

BlockEntry entry(std::string_view kind, std::string_view value, int64_t expires = 0) {
  std::string error;
  std::optional<BlockEntry> e = Blocklist::makeEntry(kind, value, expires, error);
  EXPECT_TRUE(e.has_value()) << kind << " " << value << ": " << error;
  return e.value_or(BlockEntry{});
}

// The error makeEntry gives, or "" when it accepts.
std::string refusal(std::string_view kind, std::string_view value, int64_t expires = 0) {
  std::string error;
  std::optional<BlockEntry> e = Blocklist::makeEntry(kind, value, expires, error);
  if (e) return "";
  EXPECT_FALSE(error.empty()) << kind << " " << value;
  return error.empty() ? "(no error)" : error;
}

std::optional<IpAddress> ip(std::string_view text) {
  std::optional<IpAddress> address = parseIp(text);
  EXPECT_TRUE(address.has_value()) << text;
  return address;
}

bool blocksIp(const Blocklist& list, std::string_view text, int64_t now = kNow) {
  std::optional<IpAddress> address = ip(text);
  return address && list.blocks(&*address, "", "", now);
}

// A document of `n` permanent user entries u0, u1…
std::string usersDocument(size_t n) {
  Json entries = Json::array();
  for (size_t i = 0; i < n; ++i) {
    std::string user = "u";  // appended, not "u" + ...: GCC 12 warns falsely (-Wrestrict) on that
    user += std::to_string(i);
    entries.push_back({{"kind", "user"}, {"value", user}, {"expires", 0}});
  }
  return Json{{"entries", entries}}.dump();
}

Blocklist listOf(const std::vector<BlockEntry>& entries) {
  Blocklist list;
  for (const BlockEntry& e : entries) EXPECT_TRUE(list.add(e));
  return list;
}

// --- Kinds and entries ---------------------------------------------------------------------------

TEST(GuardBlocklistTest, KindNamesRoundTrip) {
  for (Kind kind : {Kind::kIp, Kind::kCidr, Kind::kDevice, Kind::kUser}) {
    EXPECT_EQ(parseKind(kindName(kind)), kind);
  }
  EXPECT_EQ(parseKind("IP"), std::nullopt);  // names are exact
  EXPECT_EQ(parseKind(""), std::nullopt);
  EXPECT_EQ(parseKind("network"), std::nullopt);
}

TEST(GuardBlocklistTest, MakeEntryAcceptsEachKind) {
  BlockEntry e = entry("ip", "192.0.2.7", kNow + 60);
  EXPECT_EQ(e.kind, Kind::kIp);
  EXPECT_EQ(e.value, "192.0.2.7");
  EXPECT_EQ(e.expires, kNow + 60);
  EXPECT_EQ(entry("ip", "2001:db8::7").kind, Kind::kIp);
  EXPECT_EQ(entry("ip", "::ffff:192.0.2.7").kind, Kind::kIp);
  EXPECT_EQ(entry("cidr", "203.0.113.0/24").kind, Kind::kCidr);
  EXPECT_EQ(entry("cidr", "2001:db8::/32").kind, Kind::kCidr);
  EXPECT_EQ(entry("cidr", "192.0.2.7").kind, Kind::kCidr);  // a bare address is a /32
  EXPECT_EQ(entry("device", "ip=192.0.2.0/24;user_agent=curl/8.5.0").kind, Kind::kDevice);
  EXPECT_EQ(entry("user", "mallory").kind, Kind::kUser);
  EXPECT_EQ(entry("user", "zoë").value, "zoë");    // bytes over 0x7f are not control characters
  EXPECT_EQ(entry("user", "mallory").expires, 0);  // 0: never expires
}

TEST(GuardBlocklistTest, MakeEntryTrimsTheValue) {
  EXPECT_EQ(entry("user", "  mallory\t").value, "mallory");
  EXPECT_EQ(entry("ip", " 192.0.2.7 ").value, "192.0.2.7");
}

// blocklist.h: values are kept "addresses as parsed, e.g. 10.0.0.0/8", and a cidr's host bits are
// zeroed. Two spellings of one network must be one entry, which the admin can remove by either.
TEST(GuardBlocklistTest, MakeEntryKeepsANetworkAsParsed) {
  EXPECT_EQ(entry("cidr", "10.1.2.3/8").value, "10.0.0.0/8");
  Blocklist list = listOf({entry("cidr", "10.1.2.3/8")});
  EXPECT_TRUE(list.add(entry("cidr", "10.0.0.0/8")));
  EXPECT_EQ(list.entries().size(), 1u);
  EXPECT_TRUE(list.remove(Kind::kCidr, "10.0.0.0/8"));
  EXPECT_TRUE(list.entries().empty());
}

TEST(GuardBlocklistTest, MakeEntryRefusesBadKinds) {
  EXPECT_NE(refusal("address", "192.0.2.7"), "");
  EXPECT_NE(refusal("", "192.0.2.7"), "");
  EXPECT_NE(refusal("Ip", "192.0.2.7"), "");
  EXPECT_NE(refusal("users", "mallory"), "");
}

TEST(GuardBlocklistTest, MakeEntryRefusesBadAddresses) {
  for (std::string_view bad : {"192.0.2", "192.0.2.256", "192.0.2.7/32", "[2001:db8::7]",
                               "192.0.2.7:443", "fe80::1%eth0", "host.example", "2001:db8:::7"}) {
    EXPECT_NE(refusal("ip", bad), "") << bad;
  }
  for (std::string_view bad : {"10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/-1",
                               "10.0.0.0/8/8", "/8", "host.example/8", "10.0.0.0/x"}) {
    EXPECT_NE(refusal("cidr", bad), "") << bad;
  }
}

TEST(GuardBlocklistTest, MakeEntryRefusesBadValues) {
  for (std::string_view kind : {"ip", "cidr", "device", "user"}) {
    EXPECT_NE(refusal(kind, ""), "") << kind;
    EXPECT_NE(refusal(kind, "   \t "), "") << kind;  // empty once trimmed
  }
  EXPECT_EQ(refusal("user", std::string(512, 'u')), "");
  EXPECT_NE(refusal("user", std::string(513, 'u')), "");
  EXPECT_NE(refusal("device", std::string(513, 'd')), "");
  EXPECT_EQ(refusal("device", std::string(512, 'd')), "");
  for (std::string_view bad : {std::string_view("mal\nlory"), std::string_view("mal\rlory"),
                               std::string_view("mal\0lory", 8), std::string_view("mal\x7flory"),
                               std::string_view("mal\x1blory"), std::string_view("a\tb")}) {
    EXPECT_NE(refusal("user", bad), "") << "control character refused";
    EXPECT_NE(refusal("device", bad), "") << "control character refused";
  }
}

TEST(GuardBlocklistTest, MakeEntryRefusesANegativeExpiry) {
  EXPECT_NE(refusal("user", "mallory", -1), "");
  EXPECT_NE(refusal("ip", "192.0.2.7", INT64_MIN), "");
  EXPECT_EQ(refusal("user", "mallory", 0), "");
  EXPECT_EQ(refusal("user", "mallory", 1), "");
}

// --- The document --------------------------------------------------------------------------------

TEST(GuardBlocklistTest, EmptyDocumentParses) {
  std::optional<Blocklist> list = Blocklist::parse("");
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->entries().empty());
  IpAddress client = ip("192.0.2.7").value_or(IpAddress{});
  EXPECT_FALSE(list->blocks(&client, "device", "user", kNow));
  std::optional<Blocklist> none = Blocklist::parse(R"({"entries":[]})");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->entries().empty());
}

TEST(GuardBlocklistTest, SerializeParseRoundTrip) {
  Blocklist list = listOf({entry("ip", "192.0.2.7"), entry("cidr", "2001:db8::/32", kNow + 60),
                           entry("device", "ip=192.0.2.0/24;user_agent=\"quoted\\\"", kNow + 1),
                           entry("user", "zoë"), entry("user", "{\"json\": [1]}")});
  std::string text = list.serialize();
  std::optional<Blocklist> back = Blocklist::parse(text);
  ASSERT_TRUE(back.has_value()) << text;
  ASSERT_EQ(back->entries().size(), list.entries().size());
  for (size_t i = 0; i < list.entries().size(); ++i) {
    EXPECT_EQ(back->entries()[i].kind, list.entries()[i].kind) << i;
    EXPECT_EQ(back->entries()[i].value, list.entries()[i].value) << i;
    EXPECT_EQ(back->entries()[i].expires, list.entries()[i].expires) << i;
  }
  EXPECT_EQ(back->serialize(), text);
  EXPECT_TRUE(back->blocks(nullptr, "", "zoë", kNow));
  EXPECT_TRUE(blocksIp(*back, "2001:db8:1::1"));
  EXPECT_EQ(Blocklist::parse(Blocklist().serialize())->entries().size(), 0u);
}

TEST(GuardBlocklistTest, ParseRefusesMalformedDocuments) {
  const std::string good = R"({"kind":"ip","value":"192.0.2.7","expires":0})";
  ASSERT_TRUE(Blocklist::parse(R"({"entries":[)" + good + "]}").has_value());
  for (const std::string& bad : std::vector<std::string>{
           "not json",
           "{",
           "[]",
           "null",
           "42",
           R"("entries")",
           "{}",
           R"({"entries":null})",
           R"({"entries":{}})",
           R"({"entries":"192.0.2.7"})",
           R"({"entries":[42]})",
           R"({"entries":[[]]})",
           R"({"entries":[)" + good + ",null]}",
           R"({"entries":[{"value":"192.0.2.7","expires":0}]})",
           R"({"entries":[{"kind":"ip","expires":0}]})",
           R"({"entries":[{"kind":"ip","value":"192.0.2.7"}]})",
           R"({"entries":[{"kind":"host","value":"192.0.2.7","expires":0}]})",
           R"({"entries":[{"kind":1,"value":"192.0.2.7","expires":0}]})",
           R"({"entries":[{"kind":"ip","value":7,"expires":0}]})",
           R"({"entries":[{"kind":"ip","value":"192.0.2.7","expires":"0"}]})",
           R"({"entries":[{"kind":"ip","value":"192.0.2.7","expires":1.5}]})",
           R"({"entries":[{"kind":"ip","value":"192.0.2.7","expires":null}]})",
           R"({"entries":[{"kind":"ip","value":"192.0.2.7","expires":-5}]})",
           R"({"entries":[{"kind":"ip","value":"192.0.2.999","expires":0}]})",
           R"({"entries":[{"kind":"cidr","value":"10.0.0.0/40","expires":0}]})",
           R"({"entries":[{"kind":"user","value":"","expires":0}]})",
           R"({"entries":[{"kind":"user","value":"a\nb","expires":0}]})",
           R"({"entries":[{"kind":"device","value":")" + std::string(513, 'd') +
               R"(","expires":0}]})",
       }) {
    EXPECT_FALSE(Blocklist::parse(bad).has_value()) << bad;
  }
}

TEST(GuardBlocklistTest, ParseRefusesMoreThanTheCap) {
  std::optional<Blocklist> full = Blocklist::parse(usersDocument(kMaxBlocklistEntries));
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(full->entries().size(), kMaxBlocklistEntries);
  EXPECT_TRUE(full->blocks(nullptr, "", "u9999", kNow));
  EXPECT_FALSE(Blocklist::parse(usersDocument(kMaxBlocklistEntries + 1)).has_value());
}

// --- Changes -------------------------------------------------------------------------------------

TEST(GuardBlocklistTest, AddReplacesTheSameKindAndValue) {
  Blocklist list;
  EXPECT_TRUE(list.add(entry("user", "mallory", kNow + 10)));
  EXPECT_TRUE(list.add(entry("device", "mallory")));  // another kind: another entry
  EXPECT_TRUE(list.add(entry("user", "mallory", kNow + 3600)));
  ASSERT_EQ(list.entries().size(), 2u);
  EXPECT_EQ(list.entries()[0].kind, Kind::kUser);
  EXPECT_EQ(list.entries()[0].expires, kNow + 3600);
  // The replacement's expiry is what counts: blocked past the first one's.
  EXPECT_TRUE(list.blocks(nullptr, "", "mallory", kNow + 100));
  // And a permanent block may become temporary.
  EXPECT_TRUE(list.add(entry("device", "mallory", kNow + 5)));
  EXPECT_EQ(list.entries().size(), 2u);
  EXPECT_FALSE(list.blocks(nullptr, "mallory", "", kNow + 5));
}

TEST(GuardBlocklistTest, Remove) {
  Blocklist list = listOf({entry("user", "mallory"), entry("device", "mallory"),
                           entry("ip", "192.0.2.7"), entry("cidr", "203.0.113.0/24")});
  EXPECT_FALSE(list.remove(Kind::kUser, "trudy"));
  EXPECT_FALSE(list.remove(Kind::kIp, "203.0.113.0/24"));  // the kind must match too
  EXPECT_EQ(list.entries().size(), 4u);
  EXPECT_TRUE(list.remove(Kind::kUser, " mallory "));  // trimmed, as makeEntry trims
  EXPECT_FALSE(list.blocks(nullptr, "", "mallory", kNow));
  EXPECT_TRUE(list.blocks(nullptr, "mallory", "", kNow));
  EXPECT_FALSE(list.remove(Kind::kUser, "mallory"));
  EXPECT_TRUE(list.remove(Kind::kIp, "192.0.2.7"));
  EXPECT_FALSE(blocksIp(list, "192.0.2.7"));
  EXPECT_TRUE(blocksIp(list, "203.0.113.9"));
  EXPECT_TRUE(list.remove(Kind::kCidr, "203.0.113.0/24"));
  EXPECT_FALSE(blocksIp(list, "203.0.113.9"));
  EXPECT_EQ(list.entries().size(), 1u);
}

TEST(GuardBlocklistTest, PruneDropsExpiredEntriesOnly) {
  Blocklist list = listOf({entry("user", "forever"), entry("user", "early", kNow + 10),
                           entry("user", "late", kNow + 20)});
  list.prune(kNow + 9);
  EXPECT_EQ(list.entries().size(), 3u);
  list.prune(kNow + 10);  // expires is the first second it no longer holds
  ASSERT_EQ(list.entries().size(), 2u);
  EXPECT_EQ(list.entries()[0].value, "forever");
  EXPECT_EQ(list.entries()[1].value, "late");
  EXPECT_TRUE(list.blocks(nullptr, "", "late", kNow + 19));
  list.prune(kNow + 1'000'000);
  ASSERT_EQ(list.entries().size(), 1u);
  EXPECT_TRUE(list.blocks(nullptr, "", "forever", kNow + 1'000'000));
}

TEST(GuardBlocklistTest, TheEntryCap) {
  // Filled through parse(), which indexes once: add() re-indexes the whole list each time.
  std::optional<Blocklist> parsed = Blocklist::parse(usersDocument(kMaxBlocklistEntries - 1));
  ASSERT_TRUE(parsed.has_value());
  Blocklist list = std::move(*parsed);
  EXPECT_TRUE(list.add(entry("user", "last")));
  ASSERT_EQ(list.entries().size(), kMaxBlocklistEntries);
  EXPECT_FALSE(list.add(entry("user", "one-too-many")));
  EXPECT_EQ(list.entries().size(), kMaxBlocklistEntries);
  EXPECT_FALSE(list.blocks(nullptr, "", "one-too-many", kNow));
  // Replacing an entry of a full list is no new entry.
  EXPECT_TRUE(list.add(entry("user", "u7", kNow + 60)));
  EXPECT_EQ(list.entries().size(), kMaxBlocklistEntries);
  // Room again once one goes.
  EXPECT_TRUE(list.remove(Kind::kUser, "u0"));
  EXPECT_TRUE(list.add(entry("user", "one-too-many")));
  EXPECT_TRUE(list.blocks(nullptr, "", "one-too-many", kNow));
  std::optional<Blocklist> back = Blocklist::parse(list.serialize());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->entries().size(), kMaxBlocklistEntries);
}

// --- Matching ------------------------------------------------------------------------------------

TEST(GuardBlocklistTest, BlocksAnAddress) {
  Blocklist list = listOf({entry("ip", "192.0.2.7"), entry("ip", "2001:db8::7")});
  EXPECT_TRUE(blocksIp(list, "192.0.2.7"));
  EXPECT_FALSE(blocksIp(list, "192.0.2.8"));
  EXPECT_FALSE(blocksIp(list, "192.0.2.70"));
  EXPECT_TRUE(blocksIp(list, "2001:db8::7"));
  EXPECT_TRUE(blocksIp(list, "2001:DB8:0:0:0:0:0:7"));  // any spelling of the address
  EXPECT_FALSE(blocksIp(list, "2001:db8::8"));
  EXPECT_FALSE(list.blocks(nullptr, "", "", kNow));  // an address that did not parse
}

TEST(GuardBlocklistTest, BlocksANetwork) {
  Blocklist list = listOf({entry("cidr", "203.0.113.0/24"), entry("cidr", "2001:db8::/32"),
                           entry("cidr", "198.51.100.64/26")});
  EXPECT_TRUE(blocksIp(list, "203.0.113.0"));
  EXPECT_TRUE(blocksIp(list, "203.0.113.255"));
  EXPECT_FALSE(blocksIp(list, "203.0.114.0"));
  EXPECT_FALSE(blocksIp(list, "198.51.100.63"));
  EXPECT_TRUE(blocksIp(list, "198.51.100.64"));
  EXPECT_TRUE(blocksIp(list, "198.51.100.127"));
  EXPECT_FALSE(blocksIp(list, "198.51.100.128"));
  EXPECT_TRUE(blocksIp(list, "2001:db8:ffff::1"));
  EXPECT_FALSE(blocksIp(list, "2001:db9::1"));
  // An address of the other family never matches.
  EXPECT_FALSE(blocksIp(listOf({entry("cidr", "::/0")}), "192.0.2.7"));
  EXPECT_TRUE(blocksIp(listOf({entry("cidr", "::/0")}), "2001:db8::1"));
  EXPECT_TRUE(blocksIp(listOf({entry("cidr", "0.0.0.0/0")}), "192.0.2.7"));
  EXPECT_FALSE(blocksIp(listOf({entry("cidr", "0.0.0.0/0")}), "2001:db8::1"));
}

// A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; a block written either way holds.
TEST(GuardBlocklistTest, BlocksIpv4MappedClients) {
  Blocklist by_v4 = listOf({entry("ip", "192.0.2.7"), entry("cidr", "203.0.113.0/24")});
  EXPECT_TRUE(blocksIp(by_v4, "::ffff:192.0.2.7"));
  EXPECT_TRUE(blocksIp(by_v4, "::ffff:203.0.113.9"));
  EXPECT_FALSE(blocksIp(by_v4, "::ffff:192.0.2.8"));
  Blocklist by_mapped = listOf({entry("ip", "::ffff:192.0.2.7"), entry("cidr", "::ffff:0:0/104")});
  EXPECT_TRUE(blocksIp(by_mapped, "192.0.2.7"));
  EXPECT_TRUE(blocksIp(by_mapped, "0.1.2.3"));  // ::ffff:0:0/104 is 0.0.0.0/8
  EXPECT_FALSE(blocksIp(by_mapped, "1.2.3.4"));
}

TEST(GuardBlocklistTest, BlocksADeviceOrAUser) {
  const std::string device = "ip=192.0.2.0/24;user_agent=curl/8.5.0";
  Blocklist list = listOf({entry("device", device), entry("user", "mallory")});
  EXPECT_TRUE(list.blocks(nullptr, device, "", kNow));
  EXPECT_FALSE(list.blocks(nullptr, device + " ", "", kNow));  // exact
  EXPECT_FALSE(list.blocks(nullptr, "ip=192.0.2.0/24", "", kNow));
  EXPECT_TRUE(list.blocks(nullptr, "", "mallory", kNow));
  EXPECT_FALSE(list.blocks(nullptr, "", "Mallory", kNow));  // exact
  EXPECT_FALSE(list.blocks(nullptr, "mallory", "", kNow));  // a device is not a user
  EXPECT_FALSE(list.blocks(nullptr, "", device, kNow));
  IpAddress client = ip("192.0.2.7").value_or(IpAddress{});
  EXPECT_TRUE(list.blocks(&client, "other", "mallory", kNow));
  EXPECT_FALSE(list.blocks(&client, "", "", kNow));  // empty matches nothing
}

// An entry stops blocking the second it expires, before any prune and whether it is the only
// entry or not: the document a worker holds is up to kBlocklistMaxAge old.
TEST(GuardBlocklistTest, ExpiryHonouredBeforePrune) {
  Blocklist list = listOf({entry("user", "mallory", kNow + 10), entry("user", "trudy"),
                           entry("device", "dev-1", kNow + 20), entry("ip", "192.0.2.7", kNow + 5),
                           entry("cidr", "203.0.113.0/24")});
  EXPECT_TRUE(list.blocks(nullptr, "", "mallory", kNow + 9));
  EXPECT_FALSE(list.blocks(nullptr, "", "mallory", kNow + 10));
  EXPECT_FALSE(list.blocks(nullptr, "", "mallory", kNow + 11));
  EXPECT_TRUE(list.blocks(nullptr, "", "trudy", kNow + 11));  // permanent entries hold on
  EXPECT_TRUE(list.blocks(nullptr, "dev-1", "", kNow + 19));
  EXPECT_FALSE(list.blocks(nullptr, "dev-1", "", kNow + 20));
  EXPECT_TRUE(blocksIp(list, "192.0.2.7", kNow + 4));
  EXPECT_FALSE(blocksIp(list, "192.0.2.7", kNow + 5));
  EXPECT_TRUE(blocksIp(list, "203.0.113.1", kNow + 50));
  EXPECT_FALSE(blocksIp(list, "198.51.100.1", kNow + 50));
  EXPECT_EQ(list.entries().size(), 5u);  // nothing was pruned

  Blocklist single = listOf({entry("user", "mallory", kNow + 1)});
  EXPECT_TRUE(single.blocks(nullptr, "", "mallory", kNow));
  EXPECT_FALSE(single.blocks(nullptr, "", "mallory", kNow + 1));

  // Each network keeps its own expiry: an expired address inside a live network still matches
  // through the network, and stops matching once that expires too.
  Blocklist nested =
      listOf({entry("ip", "192.0.2.7", kNow + 5), entry("cidr", "192.0.2.0/24", kNow + 30)});
  EXPECT_TRUE(blocksIp(nested, "192.0.2.7", kNow + 10));
  EXPECT_TRUE(blocksIp(nested, "192.0.2.8", kNow + 10));
  EXPECT_FALSE(blocksIp(nested, "192.0.2.7", kNow + 30));

  // Also after a parse: the expiry travels with the document.
  std::optional<Blocklist> back = Blocklist::parse(list.serialize());
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(back->blocks(nullptr, "", "mallory", kNow + 9));
  EXPECT_FALSE(back->blocks(nullptr, "", "mallory", kNow + 10));
}

}  // namespace
}  // namespace tessera::plugins::guard
