// migration: its config, for both roles: defaults, every key, and every refusal naming its key
// path, line and column.

#include "plugins/migration/migration_config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <string>
#include <vector>

#include "plugins/migration/migration.h"
#include "plugins/plugin.h"

namespace tessera::plugins::migration {
namespace {

using cache::Millis;
using cache::Seconds;
using std::chrono::hours;
using std::chrono::minutes;
using Config = MigrationConfig;

// The smallest valid node of each role (6 and 4 lines): a test appends its keys from line 7 or 5.
constexpr const char* kOrigin = R"(type: migration
role: origin
session_cookie: SESSIONID
user_header: X-User-Id
signing_key: conf/keys/origin-sign.jwk
encryption_key: conf/keys/origin-enc.jwk
)";
constexpr const char* kTarget = R"(type: migration
role: target
permit_cookie: TPERMIT
identity_headers: { user: X-User-Id }
)";

std::string origin(const std::string& extra = "") { return kOrigin + extra; }
std::string target(const std::string& extra = "") { return kTarget + extra; }

Config parse(const std::string& yaml) { return parseMigrationConfig(YAML::Load(yaml)); }

void expectCommonDefaults(const Config& config) {
  EXPECT_EQ(config.endpoint_prefix, "/_tessera/");
  EXPECT_EQ(config.attributes, std::vector<std::string>{"ip"});
  EXPECT_EQ(config.ipv4_prefix, 32);
  EXPECT_EQ(config.ipv6_prefix, 64);
  EXPECT_EQ(config.timeout, Millis(200));
}

TEST(MigrationConfigTest, OriginDefaults) {
  Config config = parse(origin());
  EXPECT_EQ(config.role, Config::Role::kOrigin);
  expectCommonDefaults(config);
  EXPECT_EQ(config.session_cookie, "SESSIONID");
  EXPECT_EQ(config.user_header, "X-User-Id");
  // Paths as written: the factory loads the files, not the parser.
  EXPECT_EQ(config.signing_key, "conf/keys/origin-sign.jwk");
  EXPECT_EQ(config.encryption_key, "conf/keys/origin-enc.jwk");
  EXPECT_EQ(config.pass_ttl, Seconds(60));
  EXPECT_EQ(config.request_window, Seconds(30));
  EXPECT_EQ(config.on_reissue, Config::OnReissue::kRevoke);
  EXPECT_EQ(config.session_lifetime, hours(24));
}

TEST(MigrationConfigTest, TargetDefaults) {
  Config config = parse(target());
  EXPECT_EQ(config.role, Config::Role::kTarget);
  expectCommonDefaults(config);
  EXPECT_EQ(config.origin, "local");
  EXPECT_EQ(config.origin_plugin, "");
  EXPECT_EQ(config.origin_tls.client_cert, "");
  EXPECT_EQ(config.origin_tls.ca, "");
  EXPECT_EQ(config.origin_timeout, Millis(2000));
  EXPECT_EQ(config.permit_cookie, "TPERMIT");
  EXPECT_EQ(config.permit_ttl, minutes(15));
  EXPECT_EQ(config.user_identity_header, "X-User-Id");
}

TEST(MigrationConfigTest, OriginEveryKey) {
  Config config = parse(R"(type: migration
role: origin
endpoint_prefix: /.well-known/tessera/
attributes: [ja4, ip, header:X-Device-Id]
ipv4_prefix: 24
ipv6_prefix: 48
timeout: 1s
session_cookie: sid
user_header: X-Login-User
signing_key: sign.jwk
encryption_key: enc.jwk
pass_ttl: 2m
request_window: 10s
on_reissue: replace
session_lifetime: 90m
)");
  EXPECT_EQ(config.endpoint_prefix, "/.well-known/tessera/");
  // The header's name is lower-cased, as session_binding's: spelling must not change fingerprints.
  EXPECT_EQ(config.attributes, (std::vector<std::string>{"ja4", "ip", "header:x-device-id"}));
  EXPECT_EQ(config.ipv4_prefix, 24);
  EXPECT_EQ(config.ipv6_prefix, 48);
  EXPECT_EQ(config.timeout, Millis(1000));
  EXPECT_EQ(config.session_cookie, "sid");
  EXPECT_EQ(config.user_header, "X-Login-User");
  EXPECT_EQ(config.signing_key, "sign.jwk");
  EXPECT_EQ(config.encryption_key, "enc.jwk");
  EXPECT_EQ(config.pass_ttl, minutes(2));
  EXPECT_EQ(config.request_window, Seconds(10));
  EXPECT_EQ(config.on_reissue, Config::OnReissue::kReplace);
  EXPECT_EQ(config.session_lifetime, minutes(90));
}

TEST(MigrationConfigTest, TargetEveryKeyWithHttpsOrigin) {
  Config config = parse(R"(type: migration
role: target
endpoint_prefix: /mig/
attributes: [user_agent]
ipv4_prefix: 16
ipv6_prefix: 56
timeout: 75ms
origin: https://origin.example:8443
origin_tls:
  client_cert: certs/target.pem
  client_key: certs/target.key
  ca: certs/origin-ca.pem
origin_timeout: 500ms
permit_cookie: __Host-permit
permit_ttl: 1h
identity_headers:
  user: X-Migrated-User
)");
  EXPECT_EQ(config.endpoint_prefix, "/mig/");
  EXPECT_EQ(config.attributes, std::vector<std::string>{"user_agent"});
  EXPECT_EQ(config.ipv4_prefix, 16);
  EXPECT_EQ(config.ipv6_prefix, 56);
  EXPECT_EQ(config.timeout, Millis(75));
  EXPECT_EQ(config.origin, "https://origin.example:8443");
  EXPECT_EQ(config.origin_plugin, "");
  EXPECT_EQ(config.origin_tls.client_cert, "certs/target.pem");
  EXPECT_EQ(config.origin_tls.client_key, "certs/target.key");
  EXPECT_EQ(config.origin_tls.ca, "certs/origin-ca.pem");
  EXPECT_EQ(config.origin_timeout, Millis(500));
  EXPECT_EQ(config.permit_cookie, "__Host-permit");
  EXPECT_EQ(config.permit_ttl, hours(1));
  EXPECT_EQ(config.user_identity_header, "X-Migrated-User");
}

TEST(MigrationConfigTest, TargetWithLocalOriginPlugin) {
  Config config = parse(target("origin: local\norigin_plugin: mig_origin\n"));
  EXPECT_EQ(config.origin, "local");
  EXPECT_EQ(config.origin_plugin, "mig_origin");
}

TEST(MigrationConfigTest, HttpsOriginForms) {
  const std::string tls = "origin_tls: {client_cert: c, client_key: k, ca: a}\n";
  for (const char* url : {"https://origin.example", "https://10.0.0.5", "https://10.0.0.5:443",
                          "https://[::1]", "https://[2001:db8::7]:8443", "https://a-b.c.example"}) {
    EXPECT_EQ(parse(target("origin: \"" + std::string(url) + "\"\n" + tls)).origin, url);
  }
}

// The factory (not the parser) checks that the origin's TLS files can be read, and names the one
// that cannot.
TEST(MigrationConfigTest, FactoryNamesAnUnreadableOriginTlsFile) {
  const char* readable = "/dev/null";
  std::string yaml =
      target(std::string("origin: https://o.example\norigin_tls:\n  client_cert: ") + readable +
             "\n  client_key: " + readable + "\n  ca: no-such-dir/origin-ca.pem\n");
  try {
    makeMigrationFactory("mig", YAML::Load(yaml));
    ADD_FAILURE() << "accepted:\n" << yaml;
  } catch (const PluginConfigError& e) {
    EXPECT_EQ(e.key_path, "origin_tls.ca");
    EXPECT_EQ(e.line, 9);  // the four lines of target(), then origin, origin_tls, cert, key
    EXPECT_EQ(e.column, 7);
    EXPECT_NE(std::string(e.what()).find("cannot read no-such-dir/origin-ca.pem"),
              std::string::npos)
        << e.what();
  }
}

// The role decides which keys belong, wherever it is written.
TEST(MigrationConfigTest, RoleAfterItsKeys) {
  Config config = parse("permit_cookie: P\nidentity_headers: {user: U}\nrole: target\n");
  EXPECT_EQ(config.role, Config::Role::kTarget);
  EXPECT_EQ(config.permit_cookie, "P");
}

TEST(MigrationConfigTest, DurationUnitsAndBounds) {
  // The store counts whole seconds: rounded up.
  EXPECT_EQ(parse(origin("pass_ttl: 1500ms\n")).pass_ttl, Seconds(2));
  EXPECT_EQ(parse(origin("request_window: 1ms\n")).request_window, Seconds(1));
  // Bare digits are seconds, as in conf/.
  EXPECT_EQ(parse(origin("pass_ttl: 45\n")).pass_ttl, Seconds(45));
  EXPECT_EQ(parse(origin("pass_ttl: 1h\n")).pass_ttl, hours(1));
  EXPECT_EQ(parse(origin("request_window: 3600s\n")).request_window, hours(1));
  EXPECT_EQ(parse(origin("session_lifetime: 9600h\n")).session_lifetime, hours(9600));
  EXPECT_EQ(parse(target("permit_ttl: 9600h\n")).permit_ttl, hours(9600));
  EXPECT_EQ(parse(target("origin_timeout: 1\n")).origin_timeout, Millis(1000));
  EXPECT_EQ(parse(origin("ipv4_prefix: 0\nipv6_prefix: 128\n")).ipv6_prefix, 128);
}

struct BadConfig {
  const char* name;
  std::string yaml;
  const char* path;
  int line;
  int column;
  const char* message;  // a substring of what()
};

class MigrationConfigErrorTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(MigrationConfigErrorTest, NamesKeyLineAndColumn) {
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

// The node itself, its keys, and the role.
INSTANTIATE_TEST_SUITE_P(
    Keys, MigrationConfigErrorTest,
    ::testing::Values(
        BadConfig{"NotAMap", "- role\n", "", 1, 1, "expected a map"},
        BadConfig{"MissingRole", "type: migration\npermit_cookie: P\n", "role", 1, 1, "required"},
        BadConfig{"BadRole", "type: migration\nrole: both\n", "role", 2, 7,
                  "expected origin or target"},
        BadConfig{"RoleNotAScalar", "role: [origin]\n", "role", 1, 7, "expected origin or target"},
        BadConfig{"OtherType", "type: jwt\nrole: origin\n", "type", 1, 7, "expected migration"},
        BadConfig{"UnknownKey", origin("pass_lifetime: 60s\n"), "pass_lifetime", 7, 1,
                  "unknown key"},
        // Key checks come first: a misspelt key is named even before the role is missing.
        BadConfig{"UnknownKeyWithoutRole", "permit_cookie: P\npermit_tll: 1m\n", "permit_tll", 2, 1,
                  "unknown key"},
        BadConfig{"DuplicateKey", target("permit_cookie: OTHER\n"), "permit_cookie", 5, 1,
                  "duplicate key"},
        BadConfig{"DuplicateRole", "role: target\nrole: origin\n", "role", 2, 1, "duplicate key"},
        BadConfig{"OriginKeyUnderTarget", target("pass_ttl: 60s\n"), "pass_ttl", 5, 1,
                  "only for role: origin"},
        BadConfig{"OriginKeyBeforeTargetRole", "signing_key: s.jwk\nrole: target\n", "signing_key",
                  1, 1, "only for role: origin"},
        BadConfig{"TargetKeyUnderOrigin", origin("permit_cookie: TPERMIT\n"), "permit_cookie", 7, 1,
                  "only for role: target"},
        BadConfig{"OriginTlsUnderOrigin", origin("origin_tls: {ca: a}\n"), "origin_tls", 7, 1,
                  "only for role: target"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    Required, MigrationConfigErrorTest,
    ::testing::Values(
        BadConfig{"OriginSessionCookie",
                  "role: origin\nuser_header: U\nsigning_key: s\nencryption_key: e\n",
                  "session_cookie", 1, 1, "required with role: origin"},
        BadConfig{"OriginUserHeader",
                  "role: origin\nsession_cookie: S\nsigning_key: s\nencryption_key: e\n",
                  "user_header", 1, 1, "required with role: origin"},
        BadConfig{"OriginSigningKey",
                  "role: origin\nsession_cookie: S\nuser_header: U\nencryption_key: e\n",
                  "signing_key", 1, 1, "required with role: origin"},
        BadConfig{"OriginEncryptionKey",
                  "role: origin\nsession_cookie: S\nuser_header: U\nsigning_key: s\n",
                  "encryption_key", 1, 1, "required with role: origin"},
        BadConfig{"TargetPermitCookie", "role: target\nidentity_headers: {user: U}\n",
                  "permit_cookie", 1, 1, "required with role: target"},
        BadConfig{"TargetIdentityHeaders", "role: target\npermit_cookie: P\n", "identity_headers",
                  1, 1, "required with role: target"},
        BadConfig{"TargetIdentityUser", "role: target\npermit_cookie: P\nidentity_headers: {}\n",
                  "identity_headers.user", 3, 19, "required"},
        BadConfig{
            "OriginTlsCa",
            target("origin: https://o.example\norigin_tls: {client_cert: c, client_key: k}\n"),
            "origin_tls.ca", 6, 13, "required"},
        BadConfig{"OriginTlsClientKeyBlockMap",
                  target("origin: https://o.example\norigin_tls:\n  client_cert: c\n  ca: a\n"),
                  "origin_tls.client_key", 7, 3, "required"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    Values, MigrationConfigErrorTest,
    ::testing::Values(
        BadConfig{"BadDuration", origin("pass_ttl: 1d\n"), "pass_ttl", 7, 11,
                  "expected a duration like 50ms, 30s, 10m or 24h"},
        BadConfig{"NegativeDuration", target("origin_timeout: -2s\n"), "origin_timeout", 5, 17,
                  "expected a duration"},
        BadConfig{"NullDuration", origin("request_window:\n"), "request_window", 7, 1,
                  "expected a duration"},
        BadConfig{"ZeroTimeout", origin("timeout: 0ms\n"), "timeout", 7, 10, "greater than 0"},
        BadConfig{"ZeroPermitTtl", target("permit_ttl: 0\n"), "permit_ttl", 5, 13,
                  "greater than 0"},
        BadConfig{"PassTtlOverAnHour", origin("pass_ttl: 3601s\n"), "pass_ttl", 7, 11,
                  "must be at most 1h"},
        BadConfig{"RequestWindowOverAnHour", origin("request_window: 61m\n"), "request_window", 7,
                  17, "must be at most 1h"},
        BadConfig{"SessionLifetimeTooLong", origin("session_lifetime: 9601h\n"), "session_lifetime",
                  7, 19, "400 days"},
        BadConfig{"PermitTtlTooLong", target("permit_ttl: 9601h\n"), "permit_ttl", 5, 13,
                  "400 days"},
        BadConfig{"OnReissue", origin("on_reissue: keep\n"), "on_reissue", 7, 13,
                  "expected revoke or replace"},
        BadConfig{"BadSessionCookie", "role: origin\nsession_cookie: \"a;b\"\n", "session_cookie",
                  2, 17, "cookie name"},
        BadConfig{"BadUserHeader", "role: origin\nuser_header: X User\n", "user_header", 2, 14,
                  "header name"},
        BadConfig{"EmptySigningKey", "role: origin\nsigning_key: \"\"\n", "signing_key", 2, 14,
                  "expected a key file name"},
        BadConfig{"NullEncryptionKey", "role: origin\nencryption_key:\n", "encryption_key", 2, 1,
                  "expected a key file name"},
        BadConfig{"BadPermitCookie", "role: target\npermit_cookie: a=b\n", "permit_cookie", 2, 16,
                  "cookie name"},
        BadConfig{"IdentityHeadersNotAMap", "role: target\nidentity_headers: X-User-Id\n",
                  "identity_headers", 2, 19, "expected a map"},
        BadConfig{"IdentityHeadersUnknownKey",
                  "role: target\nidentity_headers: {user: U, email: E}\n", "identity_headers.email",
                  2, 29, "unknown key"},
        BadConfig{"IdentityHeaderNotAToken", "role: target\nidentity_headers: {user: \"X:Y\"}\n",
                  "identity_headers.user", 2, 26, "header name"},
        // The plugin writes it into the request going upstream.
        BadConfig{"IdentityHeaderReserved", "role: target\nidentity_headers: {user: Host}\n",
                  "identity_headers.user", 2, 26, "reserved for the proxy"},
        BadConfig{"BadAttribute", origin("attributes: [ip, mac]\n"), "attributes[1]", 7, 18,
                  "expected ip, ja4, user_agent or header:NAME"},
        BadConfig{"EmptyAttributes", target("attributes: []\n"), "attributes", 5, 13,
                  "must not be empty"},
        BadConfig{"Ipv4PrefixTooLong", origin("ipv4_prefix: 33\n"), "ipv4_prefix", 7, 14,
                  "0 to 32"},
        BadConfig{"Ipv6PrefixTooLong", target("ipv6_prefix: 129\n"), "ipv6_prefix", 5, 14,
                  "0 to 128"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    EndpointPrefix, MigrationConfigErrorTest,
    ::testing::Values(BadConfig{"NoLeadingSlash", origin("endpoint_prefix: _tessera/\n"),
                                "endpoint_prefix", 7, 18, "starts and ends with '/'"},
                      BadConfig{"NoTrailingSlash", origin("endpoint_prefix: /_tessera\n"),
                                "endpoint_prefix", 7, 18, "starts and ends with '/'"},
                      BadConfig{"Empty", origin("endpoint_prefix: \"\"\n"), "endpoint_prefix", 7,
                                18, "starts and ends with '/'"},
                      BadConfig{"RootAlone", target("endpoint_prefix: /\n"), "endpoint_prefix", 5,
                                18, "must not be / alone"},
                      BadConfig{"EmptySegment", target("endpoint_prefix: /a//b/\n"),
                                "endpoint_prefix", 5, 18, "segment"},
                      BadConfig{"DotDotSegment", target("endpoint_prefix: /a/../\n"),
                                "endpoint_prefix", 5, 18, "segment"},
                      BadConfig{"PercentEscape", target("endpoint_prefix: /%5Ftessera/\n"),
                                "endpoint_prefix", 5, 18, "expected letters, digits"},
                      BadConfig{"Query", target("endpoint_prefix: /a?b/\n"), "endpoint_prefix", 5,
                                18, "expected letters, digits"}),
    testName);

INSTANTIATE_TEST_SUITE_P(
    Origin, MigrationConfigErrorTest,
    ::testing::Values(
        BadConfig{"Http", target("origin: http://o.example\n"), "origin", 5, 9,
                  "http:// is refused"},
        BadConfig{"OtherWord", target("origin: remote\n"), "origin", 5, 9,
                  "expected local or https://HOST[:PORT]"},
        BadConfig{"NotAScalar", target("origin: [local]\n"), "origin", 5, 9,
                  "expected local or https://HOST[:PORT]"},
        BadConfig{"WithPath", target("origin: https://o.example/api\n"), "origin", 5, 9,
                  "no path, query or fragment"},
        BadConfig{"WithTrailingSlash", target("origin: https://o.example/\n"), "origin", 5, 9,
                  "no path, query or fragment"},
        BadConfig{"WithQuery", target("origin: https://o.example?x=1\n"), "origin", 5, 9,
                  "no path, query or fragment"},
        BadConfig{"WithUser", target("origin: https://u@o.example\n"), "origin", 5, 9,
                  "no user name"},
        BadConfig{"NoHost", target("origin: https://\n"), "origin", 5, 9, "expected a host name"},
        BadConfig{"BadHost", target("origin: https://o_x.example\n"), "origin", 5, 9,
                  "expected a host name"},
        BadConfig{"BareIpv6", target("origin: https://::1\n"), "origin", 5, 9, "IPv6 in brackets"},
        BadConfig{"UnclosedIpv6", target("origin: https://[::1\n"), "origin", 5, 9,
                  "IPv6 in brackets"},
        BadConfig{"PortZero", target("origin: https://o.example:0\n"), "origin", 5, 9,
                  "port from 1 to 65535"},
        BadConfig{"PortTooLarge", target("origin: https://o.example:65536\n"), "origin", 5, 9,
                  "port from 1 to 65535"},
        BadConfig{"EmptyPort", target("origin: \"https://[::1]:\"\n"), "origin", 5, 9,
                  "port from 1 to 65535"},
        // Blamed on the https origin that needs it.
        BadConfig{"TlsMissingForHttps", target("origin: https://o.example\n"), "origin_tls", 5, 9,
                  "required with an https origin"},
        BadConfig{"TlsWithLocal", target("origin_tls: {client_cert: c, client_key: k, ca: a}\n"),
                  "origin_tls", 5, 1, "only with an https origin"},
        BadConfig{"TlsWithExplicitLocal",
                  target("origin_tls: {client_cert: c, client_key: k, ca: a}\norigin: local\n"),
                  "origin_tls", 5, 1, "only with an https origin"},
        BadConfig{"TlsNotAMap", target("origin: https://o.example\norigin_tls: certs/\n"),
                  "origin_tls", 6, 13, "expected a map"},
        BadConfig{"TlsUnknownKey",
                  target("origin: https://o.example\n"
                         "origin_tls: {client_cert: c, client_key: k, ca: a, crl: r}\n"),
                  "origin_tls.crl", 6, 52, "unknown key"},
        BadConfig{"TlsEmptyFile",
                  target("origin: https://o.example\n"
                         "origin_tls: {client_cert: c, client_key: \"\", ca: a}\n"),
                  "origin_tls.client_key", 6, 42, "expected a file name"},
        BadConfig{"PluginWithHttps",
                  target("origin: https://o.example\n"
                         "origin_tls: {client_cert: c, client_key: k, ca: a}\n"
                         "origin_plugin: mig_origin\n"),
                  "origin_plugin", 7, 1, "only with origin: local"},
        BadConfig{"EmptyPlugin", target("origin_plugin: \"\"\n"), "origin_plugin", 5, 16,
                  "expected a plugin instance name"}),
    testName);

}  // namespace
}  // namespace tessera::plugins::migration
