// guard: its config (defaults, every key, every refusal naming its key path, line and column) and
// the address and network matchers its blocklist uses.

#include "plugins/guard/guard_config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin.h"

namespace tessera::plugins::guard {
namespace {

using cache::Millis;
using cache::Seconds;
using std::chrono::hours;
using std::chrono::minutes;
using Config = GuardConfig;
using Per = GuardConfig::RateLimit::Per;

// The smallest valid node (2 lines): a test appends its keys from line 3.
constexpr const char* kMinimal = "type: guard\nsession_cookie: SESSIONID\n";

std::string guard(const std::string& extra = "") { return kMinimal + extra; }

Config parse(const std::string& yaml) { return parseGuardConfig(YAML::Load(yaml)); }

IpAddress ip(std::string_view text) {
  std::optional<IpAddress> address = parseIp(text);
  EXPECT_TRUE(address.has_value()) << text;
  return address.value_or(IpAddress{});
}

Cidr cidr(std::string_view text) {
  std::optional<Cidr> network = parseCidr(text);
  EXPECT_TRUE(network.has_value()) << text;
  return network.value_or(Cidr{});
}

TEST(GuardConfigTest, Defaults) {
  Config config = parse(guard());
  EXPECT_EQ(config.session_cookie, "SESSIONID");
  EXPECT_EQ(config.endpoint_prefix, "/_tessera/");
  EXPECT_TRUE(config.protect.empty());
  EXPECT_EQ(config.window, Seconds(60));
  EXPECT_EQ(config.require_components,
            (std::vector<std::string>{"@method", "@target-uri", "content-digest"}));
  EXPECT_EQ(config.max_signed_body, 1u << 20);
  EXPECT_TRUE(config.blocklist.users.empty());
  EXPECT_TRUE(config.blocklist.devices.empty());
  EXPECT_TRUE(config.blocklist.ips.empty());
  EXPECT_TRUE(config.blocklist.cidrs.empty());
  EXPECT_FALSE(config.rate_limit.has_value());
  EXPECT_FALSE(config.seal_responses);
  EXPECT_EQ(config.attributes, (std::vector<std::string>{"ip", "user_agent"}));
  EXPECT_EQ(config.ipv4_prefix, 32);
  EXPECT_EQ(config.ipv6_prefix, 64);
  EXPECT_EQ(config.timeout, Millis(200));
  EXPECT_EQ(config.key_lifetime, hours(24));
  EXPECT_EQ(config.user_header, "");
}

TEST(GuardConfigTest, EveryKey) {
  Config config = parse(R"(type: guard
session_cookie: sid
endpoint_prefix: /.well-known/guard/
protect:
  - { method: POST, path_prefix: /api/orders }
  - path_prefix: /api/admin/
  - { method: delete, path_prefix: /api/orders }
window: 90s
require_components: ["@method", "@Path", "@query", Content-Digest, authorization]
max_signed_body: 256KiB
blocklist:
  users: [alice, bob]
  devices: ["ip=192.0.2.0/24;user_agent=curl/8.5.0"]
  ips: [192.0.2.7, "2001:db8::7", "::ffff:198.51.100.1"]
  cidrs: [203.0.113.0/24, 2001:db8::/32]
rate_limit: { per: session, requests: 100, interval: 1m }
seal_responses: true
attributes: [ja4, header:X-Device-Id]
ipv4_prefix: 24
ipv6_prefix: 48
timeout: 1s
key_lifetime: 90m
user_header: X-User-Id
)");
  EXPECT_EQ(config.session_cookie, "sid");
  EXPECT_EQ(config.endpoint_prefix, "/.well-known/guard/");
  ASSERT_EQ(config.protect.size(), 3u);
  EXPECT_EQ(config.protect[0].method, "POST");
  EXPECT_EQ(config.protect[0].path_prefix, "/api/orders");
  EXPECT_EQ(config.protect[1].method, "");  // any method
  EXPECT_EQ(config.protect[1].path_prefix, "/api/admin/");
  EXPECT_EQ(config.protect[2].method, "DELETE");
  EXPECT_EQ(config.window, Seconds(90));
  // Lower case, as RFC 9421 names components.
  EXPECT_EQ(
      config.require_components,
      (std::vector<std::string>{"@method", "@path", "@query", "content-digest", "authorization"}));
  EXPECT_EQ(config.max_signed_body, 256u * 1024);
  EXPECT_EQ(config.blocklist.users, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(config.blocklist.devices,
            std::vector<std::string>{"ip=192.0.2.0/24;user_agent=curl/8.5.0"});
  // The mapped address is kept as the IPv4 one.
  EXPECT_EQ(config.blocklist.ips,
            (std::vector<IpAddress>{ip("192.0.2.7"), ip("2001:db8::7"), ip("198.51.100.1")}));
  EXPECT_EQ(config.blocklist.cidrs,
            (std::vector<Cidr>{cidr("203.0.113.0/24"), cidr("2001:db8::/32")}));
  ASSERT_TRUE(config.rate_limit.has_value());
  EXPECT_EQ(config.rate_limit->per, Per::kSession);
  EXPECT_EQ(config.rate_limit->requests, 100u);
  EXPECT_EQ(config.rate_limit->interval, Seconds(60));
  EXPECT_TRUE(config.seal_responses);
  EXPECT_EQ(config.attributes, (std::vector<std::string>{"ja4", "header:x-device-id"}));
  EXPECT_EQ(config.ipv4_prefix, 24);
  EXPECT_EQ(config.ipv6_prefix, 48);
  EXPECT_EQ(config.timeout, Millis(1000));
  EXPECT_EQ(config.key_lifetime, minutes(90));
  EXPECT_EQ(config.user_header, "X-User-Id");
}

TEST(GuardConfigTest, SizesAndDurations) {
  // Bare digits are bytes; KiB/MiB are powers of 1024 and KB/MB of 1000, as everywhere in the
  // config.
  EXPECT_EQ(parse(guard("max_signed_body: 4096\n")).max_signed_body, 4096u);
  EXPECT_EQ(parse(guard("max_signed_body: 64KiB\n")).max_signed_body, 65536u);
  EXPECT_EQ(parse(guard("max_signed_body: 2MB\n")).max_signed_body, 2'000'000u);
  EXPECT_EQ(parse(guard("max_signed_body: 64MiB\n")).max_signed_body, 64u << 20);
  // Whole seconds, rounded up, as every TTL the store keeps.
  EXPECT_EQ(parse(guard("window: 1500ms\n")).window, Seconds(2));
  EXPECT_EQ(parse(guard("window: 1h\n")).window, hours(1));
  EXPECT_EQ(parse(guard("key_lifetime: 9600h\n")).key_lifetime, hours(9600));
  EXPECT_EQ(parse(guard("rate_limit: {per: ip, requests: 1000000000, interval: 24h}\n"))
                .rate_limit->requests,
            1'000'000'000u);
  EXPECT_EQ(
      parse(guard("rate_limit: {per: device, requests: 1, interval: 1}\n")).rate_limit->interval,
      Seconds(1));
}

TEST(GuardConfigTest, EmptyBlocklistBlocksNothing) {
  Config config = parse(guard("blocklist: {}\n"));
  EXPECT_FALSE(config.blocklist.blocksIp("192.0.2.7"));
  EXPECT_FALSE(config.blocklist.blocksUser("alice"));
}

TEST(GuardConfigTest, BlocklistMatchers) {
  Config config = parse(guard(R"(user_header: X-User-Id
blocklist:
  users: [alice]
  devices: [dev-1]
  ips: ["192.0.2.7", "2001:db8::7"]
  cidrs: ["203.0.113.99/24", "2001:db8:1::/48", "::ffff:198.51.100.0/120"]
)"));
  const Config::Blocklist& list = config.blocklist;
  EXPECT_TRUE(list.blocksUser("alice"));
  EXPECT_FALSE(list.blocksUser("Alice"));
  EXPECT_TRUE(list.blocksDevice("dev-1"));
  EXPECT_FALSE(list.blocksDevice("dev-2"));
  EXPECT_TRUE(list.blocksIp("192.0.2.7"));
  EXPECT_TRUE(list.blocksIp("::ffff:192.0.2.7"));  // as a dual-stack listener reports it
  EXPECT_FALSE(list.blocksIp("192.0.2.8"));
  EXPECT_TRUE(list.blocksIp("2001:db8:0:0::7"));
  EXPECT_TRUE(list.blocksIp("203.0.113.1"));
  EXPECT_TRUE(list.blocksIp("::ffff:203.0.113.254"));
  EXPECT_FALSE(list.blocksIp("203.0.114.1"));
  EXPECT_TRUE(list.blocksIp("2001:db8:1:ffff::1"));
  EXPECT_FALSE(list.blocksIp("2001:db8:2::1"));
  // A mapped network in the config matches IPv4 clients, however they are written.
  EXPECT_TRUE(list.blocksIp("198.51.100.42"));
  EXPECT_TRUE(list.blocksIp("::ffff:198.51.100.42"));
  // Not an address: nothing to match.
  EXPECT_FALSE(list.blocksIp("unknown"));
  EXPECT_FALSE(list.blocksIp(""));
}

TEST(IpAddressTest, Parses) {
  IpAddress v4 = ip("192.0.2.7");
  EXPECT_EQ(v4.family, IpAddress::Family::kV4);
  EXPECT_EQ(v4.bytes[0], 192);
  EXPECT_EQ(v4.bytes[3], 7);
  EXPECT_EQ(v4.bytes[4], 0);
  IpAddress v6 = ip("::1");
  EXPECT_EQ(v6.family, IpAddress::Family::kV6);
  EXPECT_EQ(v6.bytes[15], 1);
  EXPECT_EQ(ip("::ffff:192.0.2.7"), v4);
  EXPECT_EQ(ip("::FFFF:c000:0207"), v4);
  // IPv4-compatible (::a.b.c.d, deprecated) is not mapped: it stays IPv6.
  EXPECT_EQ(ip("::192.0.2.7").family, IpAddress::Family::kV6);
}

TEST(IpAddressTest, Refuses) {
  for (std::string_view text :
       {"", "192.0.2", "192.0.2.256", "192.0.2.7:443", "[::1]", "fe80::1%eth0", "192.0.2.0/24",
        " 192.0.2.7", "192.0.2.7 ", "localhost", "1:2:3:4:5:6:7:8:9",
        "0000:0000:0000:0000:0000:ffff:255.255.255.255x"}) {
    EXPECT_FALSE(parseIp(text).has_value()) << text;
  }
  // The NUL would end the text early for inet_pton.
  EXPECT_FALSE(parseIp(std::string_view("192.0.2.7\0junk", 14)).has_value());
}

TEST(CidrTest, Ipv4) {
  Cidr net = cidr("10.1.0.0/16");
  EXPECT_EQ(net.prefix, 16);
  EXPECT_TRUE(net.contains(ip("10.1.0.0")));
  EXPECT_TRUE(net.contains(ip("10.1.255.255")));
  EXPECT_FALSE(net.contains(ip("10.2.0.1")));
  EXPECT_FALSE(net.contains(ip("::a01:1")));  // the same bytes as IPv6: another family
  // A prefix that ends inside a byte.
  Cidr odd = cidr("192.0.2.64/26");
  EXPECT_TRUE(odd.contains(ip("192.0.2.64")));
  EXPECT_TRUE(odd.contains(ip("192.0.2.127")));
  EXPECT_FALSE(odd.contains(ip("192.0.2.63")));
  EXPECT_FALSE(odd.contains(ip("192.0.2.128")));
}

TEST(CidrTest, Ipv6) {
  // /47 ends inside the third group: abcc and abcd share its first 15 bits.
  Cidr net = cidr("2001:db8:abcc::/47");
  EXPECT_EQ(net.prefix, 47);
  EXPECT_TRUE(net.contains(ip("2001:db8:abcc::1")));
  EXPECT_TRUE(net.contains(ip("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(net.contains(ip("2001:db8:abcb::1")));
  EXPECT_FALSE(net.contains(ip("2001:db8:abce::1")));
  EXPECT_FALSE(net.contains(ip("2001:db9:abcc::1")));
  EXPECT_FALSE(net.contains(ip("192.0.2.7")));
}

TEST(CidrTest, BareAddressIsAHost) {
  EXPECT_EQ(cidr("192.0.2.7"), cidr("192.0.2.7/32"));
  EXPECT_EQ(cidr("2001:db8::7"), cidr("2001:db8::7/128"));
  EXPECT_TRUE(cidr("192.0.2.7").contains(ip("192.0.2.7")));
  EXPECT_FALSE(cidr("192.0.2.7").contains(ip("192.0.2.6")));
}

TEST(CidrTest, HostBitsAreZeroed) {
  Cidr net = cidr("10.1.2.3/8");
  EXPECT_EQ(net, cidr("10.0.0.0/8"));
  EXPECT_EQ(net.network, ip("10.0.0.0"));
  EXPECT_EQ(cidr("192.0.2.77/26").network, ip("192.0.2.64"));
  EXPECT_EQ(cidr("2001:db8:ffff:ffff::1/33").network, ip("2001:db8:8000::"));
  EXPECT_EQ(cidr("203.0.113.5/0").network, ip("0.0.0.0"));
}

TEST(CidrTest, IpvFourMapped) {
  // A mapped network is the IPv4 network it maps.
  Cidr net = cidr("::ffff:192.0.2.0/120");
  EXPECT_EQ(net, cidr("192.0.2.0/24"));
  EXPECT_TRUE(net.contains(ip("::ffff:192.0.2.9")));
  EXPECT_EQ(cidr("::ffff:0:0/96"), cidr("0.0.0.0/0"));
  EXPECT_EQ(cidr("::ffff:192.0.2.7"), cidr("192.0.2.7/32"));
  // Shorter prefixes leave the mapped range: an IPv6 network.
  EXPECT_EQ(cidr("::ffff:192.0.2.0/80").network.family, IpAddress::Family::kV6);
  // An IPv4 network matches an IPv4 client written in the mapped form.
  EXPECT_TRUE(cidr("192.0.2.0/24").contains(ip("::ffff:192.0.2.200")));
}

TEST(CidrTest, ZeroPrefix) {
  Cidr v4 = cidr("0.0.0.0/0");
  EXPECT_TRUE(v4.contains(ip("255.255.255.255")));
  EXPECT_TRUE(v4.contains(ip("::ffff:1.2.3.4")));
  EXPECT_FALSE(v4.contains(ip("::1")));
  Cidr v6 = cidr("::/0");
  EXPECT_TRUE(v6.contains(ip("::1")));
  EXPECT_TRUE(v6.contains(ip("ffff::1")));
  // IPv4 clients, mapped or not, are IPv4.
  EXPECT_FALSE(v6.contains(ip("1.2.3.4")));
  EXPECT_FALSE(v6.contains(ip("::ffff:1.2.3.4")));
}

TEST(CidrTest, Refuses) {
  for (std::string_view text :
       {"", "/24", "192.0.2.0/", "192.0.2.0/33", "192.0.2.0/-1", "192.0.2.0/+8", "192.0.2.0/8x",
        "192.0.2.0/1000", "192.0.2.0/24/8", "2001:db8::/129", "example.com/24", "192.0.2/24",
        "[2001:db8::]/32", "192.0.2.0 /24"}) {
    EXPECT_FALSE(parseCidr(text).has_value()) << text;
  }
}

struct BadConfig {
  const char* name;
  std::string yaml;
  const char* path;
  int line;
  int column;
  const char* message;  // a substring of what()
};

class GuardConfigErrorTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(GuardConfigErrorTest, NamesKeyLineAndColumn) {
  const BadConfig& bad = GetParam();
  try {
    parse(bad.yaml);
    ADD_FAILURE() << "accepted:\n" << bad.yaml;
  } catch (const PluginConfigError& e) {
    EXPECT_EQ(e.key_path, bad.path);
    EXPECT_EQ(e.line, bad.line);
    EXPECT_EQ(e.column, bad.column);
    EXPECT_NE(std::string(e.what()).find(bad.message), std::string::npos) << e.what();
  }
}

std::string testName(const ::testing::TestParamInfo<BadConfig>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    Keys, GuardConfigErrorTest,
    ::testing::Values(
        BadConfig{"NotAMap", "- guard\n", "", 1, 1, "expected a map"},
        BadConfig{"OtherType", "type: jwt\nsession_cookie: S\n", "type", 1, 7, "expected guard"},
        BadConfig{"UnknownKey", guard("windows: 60s\n"), "windows", 3, 1, "unknown key"},
        BadConfig{"DuplicateKey", guard("window: 1m\nwindow: 2m\n"), "window", 4, 1,
                  "duplicate key"},
        BadConfig{"MissingSessionCookie", "type: guard\nwindow: 30s\n", "session_cookie", 1, 1,
                  "required"},
        BadConfig{"BadSessionCookie", "session_cookie: \"a;b\"\n", "session_cookie", 1, 17,
                  "cookie name"},
        BadConfig{"BadUserHeader", guard("user_header: X User\n"), "user_header", 3, 14,
                  "header name"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    Values, GuardConfigErrorTest,
    ::testing::Values(
        BadConfig{"BadWindow", guard("window: 1d\n"), "window", 3, 9, "expected a duration"},
        BadConfig{"ZeroWindow", guard("window: 0s\n"), "window", 3, 9, "greater than 0"},
        BadConfig{"WindowTooLong", guard("window: 61m\n"), "window", 3, 9, "must be at most 1h"},
        BadConfig{"SizeLowerCaseUnit", guard("max_signed_body: 1mib\n"), "max_signed_body", 3, 18,
                  "expected a size like 16384, 64KiB or 10MiB"},
        BadConfig{"SizeWithSpace", guard("max_signed_body: 1 MiB\n"), "max_signed_body", 3, 18,
                  "expected a size"},
        BadConfig{"SizeUnknownUnit", guard("max_signed_body: 1TiB\n"), "max_signed_body", 3, 18,
                  "expected a size"},
        BadConfig{"SizeNegative", guard("max_signed_body: -1\n"), "max_signed_body", 3, 18,
                  "expected a size"},
        BadConfig{"SizeOverflow", guard("max_signed_body: 99999999999999999999\n"),
                  "max_signed_body", 3, 18, "expected a size"},
        BadConfig{"SizeZero", guard("max_signed_body: 0KiB\n"), "max_signed_body", 3, 18,
                  "greater than 0"},
        BadConfig{"SizeTooLarge", guard("max_signed_body: 65MiB\n"), "max_signed_body", 3, 18,
                  "must be at most 64MiB"},
        BadConfig{"BadComponent", guard("require_components: [\"@method\", \"@status\"]\n"),
                  "require_components[1]", 3, 33, "expected a header name or a derived component"},
        BadConfig{"ComponentNotAToken", guard("require_components: [\"content digest\"]\n"),
                  "require_components[0]", 3, 22, "expected a header name"},
        BadConfig{"DuplicateComponent",
                  guard("require_components: [\"@method\", Content-Digest, content-digest]\n"),
                  "require_components[2]", 3, 49, "duplicate \"content-digest\""},
        BadConfig{"EmptyComponents", guard("require_components: []\n"), "require_components", 3, 21,
                  "must not be empty"},
        BadConfig{"SealNotABoolean", guard("seal_responses: yes\n"), "seal_responses", 3, 17,
                  "expected true or false"},
        BadConfig{"BadAttribute", guard("attributes: [ip, mac]\n"), "attributes[1]", 3, 18,
                  "expected ip, ja4, user_agent or header:NAME"},
        BadConfig{"Ipv6PrefixTooLong", guard("ipv6_prefix: 129\n"), "ipv6_prefix", 3, 14,
                  "0 to 128"},
        BadConfig{"ZeroTimeout", guard("timeout: 0ms\n"), "timeout", 3, 10, "greater than 0"},
        BadConfig{"KeyLifetimeTooLong", guard("key_lifetime: 9601h\n"), "key_lifetime", 3, 15,
                  "400 days"},
        BadConfig{"EndpointPrefixNoTrailingSlash", guard("endpoint_prefix: /_tessera\n"),
                  "endpoint_prefix", 3, 18, "starts and ends with '/'"},
        BadConfig{"EndpointPrefixDotDot", guard("endpoint_prefix: /a/../\n"), "endpoint_prefix", 3,
                  18, "segment"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    Protect, GuardConfigErrorTest,
    ::testing::Values(
        BadConfig{"NotAList", guard("protect: /api\n"), "protect", 3, 10, "expected a list"},
        BadConfig{"Empty", guard("protect: []\n"), "protect", 3, 10, "must not be empty"},
        BadConfig{"EntryNotAMap", guard("protect:\n  - /api\n"), "protect[0]", 4, 5,
                  "expected a map"},
        BadConfig{"NoPathPrefix", guard("protect:\n  - { method: POST }\n"),
                  "protect[0].path_prefix", 4, 5, "required"},
        BadConfig{"NoPathPrefixBlockMap", guard("protect:\n  - method: POST\n"),
                  "protect[0].path_prefix", 4, 5, "required"},
        BadConfig{"PathNotStartingWithSlash",
                  guard("protect:\n  - { method: POST, path_prefix: api/orders }\n"),
                  "protect[0].path_prefix", 4, 34, "starts with '/'"},
        BadConfig{"PathWithQuery", guard("protect:\n  - { path_prefix: \"/api?x=1\" }\n"),
                  "protect[0].path_prefix", 4, 20, "without spaces, query or fragment"},
        BadConfig{"BadMethod", guard("protect:\n  - { method: \"PO ST\", path_prefix: /api }\n"),
                  "protect[0].method", 4, 15, "expected an HTTP method"},
        BadConfig{"MethodList", guard("protect:\n  - { method: [GET, POST], path_prefix: /a }\n"),
                  "protect[0].method", 4, 15, "expected an HTTP method"},
        BadConfig{"UnknownKey", guard("protect:\n  - { path: /api }\n"), "protect[0].path", 4, 7,
                  "unknown key"},
        BadConfig{"Duplicate",
                  guard("protect:\n  - { method: GET, path_prefix: /a }\n"
                        "  - { method: get, path_prefix: /a }\n"),
                  "protect[1]", 5, 5, "duplicate of protect[0]"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    Blocklist, GuardConfigErrorTest,
    ::testing::Values(
        BadConfig{"NotAMap", guard("blocklist: [alice]\n"), "blocklist", 3, 12, "expected a map"},
        BadConfig{"UnknownKey", guard("blocklist:\n  hosts: [a]\n"), "blocklist.hosts", 4, 3,
                  "unknown key"},
        BadConfig{"EmptyUser", guard("user_header: U\nblocklist:\n  users: [alice, \"\"]\n"),
                  "blocklist.users[1]", 5, 18, "expected a user name"},
        BadConfig{"DuplicateDevice", guard("blocklist:\n  devices: [d1, d1]\n"),
                  "blocklist.devices[1]", 4, 17, "duplicate \"d1\""},
        BadConfig{"BadIp", guard("blocklist:\n  ips: [192.0.2.300]\n"), "blocklist.ips[0]", 4, 9,
                  "expected an IPv4 or IPv6 address"},
        BadConfig{"NetworkUnderIps", guard("blocklist:\n  ips: [192.0.2.0/24]\n"),
                  "blocklist.ips[0]", 4, 9, "networks go under blocklist.cidrs"},
        // The same client written twice, once mapped.
        BadConfig{"DuplicateIp", guard("blocklist:\n  ips: [192.0.2.7, \"::ffff:192.0.2.7\"]\n"),
                  "blocklist.ips[1]", 4, 20, "duplicate of blocklist.ips[0]"},
        BadConfig{"CidrPrefix33", guard("blocklist:\n  cidrs: [192.0.2.0/33]\n"),
                  "blocklist.cidrs[0]", 4, 11, "prefix length from 0 to 32 after '/'"},
        BadConfig{"CidrPrefix129", guard("blocklist:\n  cidrs: [\"2001:db8::/129\"]\n"),
                  "blocklist.cidrs[0]", 4, 11, "prefix length from 0 to 128 after '/'"},
        BadConfig{"CidrHostGarbage", guard("blocklist:\n  cidrs: [10.0.0.0/8, example.com/24]\n"),
                  "blocklist.cidrs[1]", 4, 23, "expected an IPv4 or IPv6 network"},
        BadConfig{"CidrEmptyPrefix", guard("blocklist:\n  cidrs: [10.0.0.0/]\n"),
                  "blocklist.cidrs[0]", 4, 11, "prefix length"},
        // The same network once host bits are zeroed.
        BadConfig{"DuplicateCidr", guard("blocklist:\n  cidrs: [10.0.0.0/8, 10.1.2.3/8]\n"),
                  "blocklist.cidrs[1]", 4, 23, "duplicate of blocklist.cidrs[0]"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    RateLimit, GuardConfigErrorTest,
    ::testing::Values(
        BadConfig{"NotAMap", guard("rate_limit: 10/m\n"), "rate_limit", 3, 13, "expected a map"},
        BadConfig{"BadPer", guard("rate_limit: {per: user, requests: 10, interval: 60s}\n"),
                  "rate_limit.per", 3, 19, "expected device, session or ip"},
        BadConfig{"RequestsZero", guard("rate_limit: {per: ip, requests: 0, interval: 60s}\n"),
                  "rate_limit.requests", 3, 33, "must be at least 1"},
        BadConfig{"RequestsNegative", guard("rate_limit: {per: ip, requests: -5, interval: 1s}\n"),
                  "rate_limit.requests", 3, 33, "expected a whole number of requests"},
        BadConfig{"RequestsTooMany",
                  guard("rate_limit: {per: ip, requests: 1000000001, interval: 1s}\n"),
                  "rate_limit.requests", 3, 33, "must be at most 1000000000"},
        BadConfig{"RequestsOverflow",
                  guard("rate_limit: {per: ip, requests: 99999999999999999999, interval: 1s}\n"),
                  "rate_limit.requests", 3, 33, "must be at most 1000000000"},
        BadConfig{"IntervalZero", guard("rate_limit: {per: ip, requests: 5, interval: 0}\n"),
                  "rate_limit.interval", 3, 46, "greater than 0"},
        BadConfig{"IntervalNotWholeSeconds",
                  guard("rate_limit: {per: ip, requests: 5, interval: 1500ms}\n"),
                  "rate_limit.interval", 3, 46, "whole number of seconds"},
        BadConfig{"IntervalTooLong", guard("rate_limit: {per: ip, requests: 5, interval: 25h}\n"),
                  "rate_limit.interval", 3, 46, "must be at most 24h"},
        BadConfig{"MissingRequests", guard("rate_limit: {per: ip, interval: 1s}\n"),
                  "rate_limit.requests", 3, 13, "required"},
        BadConfig{"MissingPerBlockMap", guard("rate_limit:\n  requests: 5\n  interval: 1s\n"),
                  "rate_limit.per", 4, 3, "required"}),
    testName);

}  // namespace
}  // namespace tessera::plugins::guard
