#include "conf/config.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace tessera::conf {
namespace {

using std::chrono::milliseconds;

// Loads `yaml`, which must be invalid, and returns every error as Error::str().
std::vector<std::string> errorsOf(const std::string& yaml) {
  try {
    loadString(yaml, "test.yaml");
  } catch (const ConfigError& e) {
    std::vector<std::string> out;
    for (const Error& error : e.errors()) out.push_back(error.str());
    return out;
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << yaml;
  return {};
}

// The smallest valid config; tests append sections to it. Occupies lines 1-6.
constexpr const char* kMinimal = R"(listeners:
  - listen: 127.0.0.1:8080
upstreams:
  app:
    servers: [127.0.0.1:9000]
)";

std::shared_ptr<const Config> load(const std::string& yaml) {
  return loadString(yaml, "test.yaml");
}

TEST(ConfigTest, FullExample) {
  auto config = load(R"(workers: 4
listeners:
  - name: public
    listen: 127.0.0.1:8443
    trust_forwarded_headers: true
    tls:
      certificates:
        - { cert: a.crt, key: a.key }
        - { cert: b.crt, key: b.key }
      min_version: "1.3"
      alpn: [h2, http/1.1]
    routes:
      - { host: "*.Example.com", path_prefix: /api, upstream: api }
      - { upstream: app }
upstreams:
  app:
    servers: [127.0.0.1:9000, "[::1]:9001", localhost:9002]
    keepalive: 8
    connect_timeout: 500ms
    read_timeout: 1m
    fail_timeout: 1h
  api:
    servers: [10.0.0.1:80]
limits:
  max_header_bytes: 8KiB
  header_timeout: 5s
  idle_timeout: 90
  send_timeout: 2m
  max_body_bytes: 1GB
  drain_timeout: 250ms
admin: { listen: "[::1]:9999" }
log: { level: debug, access_log: /var/log/tessera.log, format: common }
)");
  EXPECT_EQ(config->file, "test.yaml");
  EXPECT_EQ(config->workers, 4);
  EXPECT_EQ(config->effectiveWorkers(), 4);

  ASSERT_EQ(config->listeners.size(), 1u);
  const Listener& l = config->listeners[0];
  EXPECT_EQ(l.name, "public");
  EXPECT_EQ(l.listen.host, "127.0.0.1");
  EXPECT_EQ(l.listen.port, 8443);
  EXPECT_EQ(l.listen.mark.line, 4);
  EXPECT_EQ(l.listen.mark.column, 13);
  EXPECT_EQ(l.listen.key_path, "listeners[0].listen");
  EXPECT_TRUE(l.trust_forwarded_headers);

  ASSERT_TRUE(l.tls.has_value());
  ASSERT_EQ(l.tls->certificates.size(), 2u);
  EXPECT_EQ(l.tls->certificates[0].cert, "a.crt");
  EXPECT_EQ(l.tls->certificates[0].key, "a.key");
  EXPECT_EQ(l.tls->certificates[1].cert, "b.crt");
  EXPECT_EQ(l.tls->certificates[1].key, "b.key");
  EXPECT_EQ(l.tls->certificates[1].key_path, "listeners[0].tls.certificates[1]");
  EXPECT_EQ(l.tls->certificates[1].mark.line, 9);
  EXPECT_EQ(l.tls->certificates[1].mark.column, 11);
  EXPECT_EQ(l.tls->min_version, TlsVersion::k1_3);
  EXPECT_EQ(l.tls->alpn, (std::vector<std::string>{"h2", "http/1.1"}));

  ASSERT_EQ(l.routes.size(), 2u);
  EXPECT_EQ(l.routes[0].host, "*.example.com");  // lowercased
  EXPECT_EQ(l.routes[0].path_prefix, "/api");
  EXPECT_EQ(l.routes[0].upstream, "api");
  EXPECT_EQ(l.routes[1].host, "*");
  EXPECT_EQ(l.routes[1].path_prefix, "/");
  EXPECT_EQ(l.routes[1].upstream, "app");

  ASSERT_EQ(config->upstreams.size(), 2u);
  const Upstream& app = config->upstreams.at("app");
  EXPECT_EQ(app.name, "app");
  ASSERT_EQ(app.servers.size(), 3u);
  EXPECT_EQ(app.servers[0].str(), "127.0.0.1:9000");
  EXPECT_EQ(app.servers[1].host, "::1");
  EXPECT_EQ(app.servers[1].str(), "[::1]:9001");
  EXPECT_EQ(app.servers[2].str(), "localhost:9002");
  EXPECT_EQ(app.servers[2].key_path, "upstreams.app.servers[2]");
  EXPECT_EQ(app.keepalive, 8);
  EXPECT_EQ(app.connect_timeout, milliseconds(500));
  EXPECT_EQ(app.read_timeout, milliseconds(60'000));
  EXPECT_EQ(app.fail_timeout, milliseconds(3'600'000));
  EXPECT_EQ(config->upstreams.at("api").servers.at(0).str(), "10.0.0.1:80");

  EXPECT_EQ(config->limits.max_header_bytes, 8192u);
  EXPECT_EQ(config->limits.header_timeout, milliseconds(5000));
  EXPECT_EQ(config->limits.idle_timeout, milliseconds(90'000));
  EXPECT_EQ(config->limits.send_timeout, milliseconds(120'000));
  EXPECT_EQ(config->limits.max_body_bytes, 1'000'000'000u);
  EXPECT_EQ(config->limits.drain_timeout, milliseconds(250));

  ASSERT_TRUE(config->admin.listen.has_value());
  EXPECT_EQ(config->admin.listen->str(), "[::1]:9999");
  EXPECT_EQ(config->admin.listen->key_path, "admin.listen");
  EXPECT_EQ(config->log.level, "debug");
  EXPECT_EQ(config->log.access_log, "/var/log/tessera.log");
  EXPECT_EQ(config->log.format, "common");
}

TEST(ConfigTest, Defaults) {
  auto config = load(kMinimal);
  EXPECT_EQ(config->workers, 0);
  EXPECT_GE(config->effectiveWorkers(), 1);

  ASSERT_EQ(config->listeners.size(), 1u);
  const Listener& l = config->listeners[0];
  EXPECT_EQ(l.name, "listener0");
  EXPECT_EQ(l.listen.str(), "127.0.0.1:8080");
  EXPECT_FALSE(l.tls.has_value());
  EXPECT_FALSE(l.trust_forwarded_headers);
  ASSERT_EQ(l.routes.size(), 1u);
  EXPECT_EQ(l.routes[0].host, "*");
  EXPECT_EQ(l.routes[0].path_prefix, "/");
  EXPECT_EQ(l.routes[0].upstream, "app");

  const Upstream& app = config->upstreams.at("app");
  EXPECT_EQ(app.keepalive, 64);
  EXPECT_EQ(app.connect_timeout, milliseconds(2000));
  EXPECT_EQ(app.read_timeout, milliseconds(30'000));
  EXPECT_EQ(app.fail_timeout, milliseconds(10'000));

  EXPECT_EQ(config->limits.max_header_bytes, 16384u);
  EXPECT_EQ(config->limits.header_timeout, milliseconds(10'000));
  EXPECT_EQ(config->limits.idle_timeout, milliseconds(60'000));
  EXPECT_EQ(config->limits.send_timeout, milliseconds(60'000));
  EXPECT_EQ(config->limits.max_body_bytes, 10u << 20);
  EXPECT_EQ(config->limits.drain_timeout, milliseconds(10'000));

  ASSERT_TRUE(config->admin.listen.has_value());
  EXPECT_EQ(config->admin.listen->str(), "127.0.0.1:9901");
  EXPECT_EQ(config->log.level, "info");
  EXPECT_EQ(config->log.access_log, "stdout");
  EXPECT_EQ(config->log.format, "json");
}

TEST(ConfigTest, TlsDefaults) {
  auto config = load(std::string(kMinimal) + R"(    keepalive: 0
)");
  EXPECT_EQ(config->upstreams.at("app").keepalive, 0);

  config = load(R"(listeners:
  - listen: 127.0.0.1:8443
    tls: { certificates: [{ cert: c.pem, key: k.pem }] }
upstreams: { app: { servers: [127.0.0.1:9000] } }
)");
  const Tls& tls = config->listeners.at(0).tls.value();
  EXPECT_EQ(tls.min_version, TlsVersion::k1_2);
  EXPECT_EQ(tls.alpn, std::vector<std::string>{"http/1.1"});
  EXPECT_TRUE(tls.session_resumption);
}

TEST(ConfigTest, Workers) {
  EXPECT_EQ(load(std::string(kMinimal) + "workers: auto\n")->workers, 0);
  EXPECT_EQ(load(std::string(kMinimal) + "workers: 3\n")->workers, 3);
  const std::string expected =
      "test.yaml:6:10: workers: expected \"auto\" or a number from 1 to 1024";
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "workers: 0\n"), std::vector{expected});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "workers: -2\n"), std::vector{expected});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "workers: many\n"), std::vector{expected});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "workers: 1025\n"), std::vector{expected});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "workers: [1]\n"), std::vector{expected});
}

TEST(ConfigTest, EffectiveWorkers) {
  Config config;
  config.workers = 7;
  EXPECT_EQ(config.effectiveWorkers(), 7);
  config.workers = 0;
  EXPECT_GE(config.effectiveWorkers(), 1);
}

TEST(ParseTest, Duration) {
  EXPECT_EQ(parseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(parseDuration("2s"), milliseconds(2000));
  EXPECT_EQ(parseDuration("2"), milliseconds(2000));
  EXPECT_EQ(parseDuration("0"), milliseconds(0));
  EXPECT_EQ(parseDuration("3m"), milliseconds(180'000));
  EXPECT_EQ(parseDuration("2h"), milliseconds(7'200'000));
  for (const char* bad : {"", "s", "ms", "1.5s", "-1s", "+1s", "1 s", " 1s", "1S", "1d", "1sec",
                          "99999999999999999999", "9999999999999999h"}) {
    EXPECT_EQ(parseDuration(bad), std::nullopt) << bad;
  }
}

TEST(ParseTest, Size) {
  EXPECT_EQ(parseSize("512"), 512u);
  EXPECT_EQ(parseSize("0"), 0u);
  EXPECT_EQ(parseSize("16KiB"), 16384u);
  EXPECT_EQ(parseSize("10MiB"), 10485760u);
  EXPECT_EQ(parseSize("1GiB"), 1073741824u);
  EXPECT_EQ(parseSize("2KB"), 2000u);
  EXPECT_EQ(parseSize("3MB"), 3'000'000u);
  EXPECT_EQ(parseSize("4GB"), 4'000'000'000u);
  for (const char* bad : {"", "KiB", "1.5MiB", "-1", "1 KiB", "1kib", "1K", "1TiB", "10MiBs",
                          "99999999999999999999", "99999999999GiB"}) {
    EXPECT_EQ(parseSize(bad), std::nullopt) << bad;
  }
}

TEST(ParseTest, HostPort) {
  auto v4 = parseHostPort("127.0.0.1:80");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 80);
  EXPECT_EQ(v4->str(), "127.0.0.1:80");

  auto v6 = parseHostPort("[::1]:65535");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 65535);
  EXPECT_EQ(v6->str(), "[::1]:65535");

  auto name = parseHostPort("localhost:1");
  ASSERT_TRUE(name.has_value());
  EXPECT_EQ(name->host, "localhost");
  EXPECT_EQ(name->port, 1);

  for (const char* bad : {"", "localhost", ":80", "localhost:", "localhost:0", "localhost:65536",
                          "localhost:-1", "localhost:+80", "localhost:8o", "::1:80", "[::1]80",
                          "[::1]", "[]:80", "[zz]:80", "a b:80", "http://x:80"}) {
    EXPECT_EQ(parseHostPort(bad), std::nullopt) << bad;
  }
}

TEST(ConfigTest, DurationsAndSizesInConfig) {
  auto config = load(std::string(kMinimal) + R"(limits:
  max_header_bytes: 1024
  header_timeout: 3
  max_body_bytes: 64KiB
)");
  EXPECT_EQ(config->limits.max_header_bytes, 1024u);
  EXPECT_EQ(config->limits.header_timeout, milliseconds(3000));
  EXPECT_EQ(config->limits.max_body_bytes, 65536u);

  EXPECT_EQ(errorsOf(std::string(kMinimal) + R"(limits:
  max_header_bytes: 0
  header_timeout: 0ms
  idle_timeout: soon
  max_body_bytes: 10 MiB
  drain_timeout: { s: 1 }
)"),
            (std::vector<std::string>{
                "test.yaml:7:21: limits.max_header_bytes: must be greater than 0",
                "test.yaml:8:19: limits.header_timeout: must be greater than 0",
                "test.yaml:9:17: limits.idle_timeout: expected a duration like 250ms or 2s",
                "test.yaml:10:19: limits.max_body_bytes: expected a size like 16384, 64KiB or "
                "10MiB",
                "test.yaml:11:18: limits.drain_timeout: expected a duration like 250ms or 2s",
            }));
}

TEST(ConfigTest, UnknownKeyTopLevel) {
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "listners: []\n"),
            std::vector<std::string>{"test.yaml:6:1: listners: unknown key"});
}

TEST(ConfigTest, UnknownKeyNested) {
  EXPECT_EQ(errorsOf(R"(listeners:
  - listen: 127.0.0.1:8443
    tls:
      certificates: [{ cert: c.pem, key: k.pem, chain: x.pem }]
      ciphers: ALL
upstreams:
  app:
    servers: [127.0.0.1:9000]
    weight: 2
)"),
            (std::vector<std::string>{
                "test.yaml:4:49: listeners[0].tls.certificates[0].chain: unknown key",
                "test.yaml:5:7: listeners[0].tls.ciphers: unknown key",
                "test.yaml:9:5: upstreams.app.weight: unknown key",
            }));
}

TEST(ConfigTest, MissingListen) {
  EXPECT_EQ(errorsOf(R"(listeners:
  - name: public
upstreams: { app: { servers: [127.0.0.1:9000] } }
)"),
            std::vector<std::string>{"test.yaml:2:5: listeners[0].listen: required"});
}

TEST(ConfigTest, MissingTopLevelSections) {
  EXPECT_EQ(errorsOf("workers: 2\n"),
            (std::vector<std::string>{"test.yaml:1:1: upstreams: required",
                                      "test.yaml:1:1: listeners: required"}));
}

TEST(ConfigTest, BadUpstreamServer) {
  EXPECT_EQ(errorsOf(R"(listeners: [{ listen: 127.0.0.1:8080 }]
upstreams:
  app:
    servers: [127.0.0.1, "127.0.0.1:70000"]
)"),
            (std::vector<std::string>{
                "test.yaml:4:15: upstreams.app.servers[0]: expected host:port",
                "test.yaml:4:26: upstreams.app.servers[1]: expected host:port",
            }));
}

TEST(ConfigTest, RouteToUnknownUpstream) {
  EXPECT_EQ(errorsOf(R"(listeners:
  - listen: 127.0.0.1:8080
    routes:
      - { host: shop.example, upstream: shop }
upstreams: { app: { servers: [127.0.0.1:9000] } }
)"),
            std::vector<std::string>{
                "test.yaml:4:41: listeners[0].routes[0].upstream: unknown upstream \"shop\""});
}

TEST(ConfigTest, RouteValues) {
  EXPECT_EQ(errorsOf(R"(listeners:
  - listen: 127.0.0.1:8080
    routes:
      - { host: "shop.*", upstream: app }
      - { host: "a b", path_prefix: api, upstream: app }
      - { host: "*.", upstream: "" }
      - { path_prefix: / }
upstreams: { app: { servers: [127.0.0.1:9000] } }
)"),
            (std::vector<std::string>{
                "test.yaml:4:17: listeners[0].routes[0].host: expected \"*\", a host name or "
                "\"*.suffix\"",
                "test.yaml:5:17: listeners[0].routes[1].host: expected \"*\", a host name or "
                "\"*.suffix\"",
                "test.yaml:5:37: listeners[0].routes[1].path_prefix: must start with \"/\"",
                "test.yaml:6:17: listeners[0].routes[2].host: expected \"*\", a host name or "
                "\"*.suffix\"",
                "test.yaml:6:33: listeners[0].routes[2].upstream: must not be empty",
                "test.yaml:7:9: listeners[0].routes[3].upstream: required",
            }));
}

TEST(ConfigTest, RoutesRequiredWithSeveralUpstreams) {
  EXPECT_EQ(errorsOf(R"(listeners:
  - listen: 127.0.0.1:8080
upstreams:
  a: { servers: [127.0.0.1:9000] }
  b: { servers: [127.0.0.1:9001] }
)"),
            std::vector<std::string>{"test.yaml:2:5: listeners[0].routes: required"});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "    routes: []\n"),
            std::vector<std::string>{"test.yaml:6:5: upstreams.app.routes: unknown key"});
  EXPECT_EQ(errorsOf(R"(listeners:
  - listen: 127.0.0.1:8080
    routes: []
upstreams: { app: { servers: [127.0.0.1:9000] } }
)"),
            std::vector<std::string>{"test.yaml:3:13: listeners[0].routes: must not be empty"});
}

TEST(ConfigTest, MultipleErrorsCollectedInFileOrder) {
  const std::string yaml = R"(workers: none
listeners:
  - listen: nowhere
    trust_forwarded_headers: maybe
upstreams:
  app:
    servers: []
    keepalive: -1
log: { level: loud, format: xml, color: true }
)";
  // In file order, although upstreams are checked before listeners.
  const std::vector<std::string> expected = {
      "test.yaml:1:10: workers: expected \"auto\" or a number from 1 to 1024",
      "test.yaml:3:13: listeners[0].listen: expected host:port",
      "test.yaml:4:30: listeners[0].trust_forwarded_headers: expected true or false",
      "test.yaml:7:14: upstreams.app.servers: must not be empty",
      "test.yaml:8:16: upstreams.app.keepalive: expected an integer >= 0",
      "test.yaml:9:15: log.level: expected one of trace, debug, info, warn, error, critical, off",
      "test.yaml:9:29: log.format: expected json or common",
      "test.yaml:9:34: log.color: unknown key",
  };
  EXPECT_EQ(errorsOf(yaml), expected);
  try {
    load(yaml);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    std::string joined;
    for (const std::string& line : expected) joined += (joined.empty() ? "" : "\n") + line;
    EXPECT_EQ(std::string(e.what()), joined);
    EXPECT_EQ(e.errors().size(), 8u);
  }
}

TEST(ConfigTest, YamlSyntaxError) {
  EXPECT_EQ(errorsOf("listeners: [\nupstreams: {}\n"),
            std::vector<std::string>{"test.yaml:3:1: end of sequence flow not found"});
  EXPECT_EQ(errorsOf("workers: a: b\n"),
            std::vector<std::string>{"test.yaml:1:11: illegal map value"});
}

TEST(ConfigTest, NotADocument) {
  EXPECT_EQ(errorsOf(""),
            std::vector<std::string>{"test.yaml:1:1: empty document: expected a map"});
  EXPECT_EQ(errorsOf("# only a comment\n"),
            std::vector<std::string>{"test.yaml:1:1: empty document: expected a map"});
  EXPECT_EQ(errorsOf("- a\n- b\n"), std::vector<std::string>{"test.yaml:1:1: expected a map"});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "---\nworkers: 2\n"),
            std::vector<std::string>{"test.yaml:7:1: expected a single YAML document"});
}

TEST(ConfigTest, WrongTypes) {
  EXPECT_EQ(errorsOf(R"(listeners:
  listen: 127.0.0.1:8080
upstreams:
  app:
    servers: 127.0.0.1:9000
limits: 5
admin:
log: [info]
)"),
            (std::vector<std::string>{
                "test.yaml:2:3: listeners: expected a list",
                "test.yaml:5:14: upstreams.app.servers: expected a list",
                "test.yaml:6:9: limits: expected a map",
                // A null value is blamed on its key: yaml-cpp gives it the next token's mark.
                "test.yaml:7:1: admin: expected a map",
                "test.yaml:8:6: log: expected a map",
            }));
  EXPECT_EQ(errorsOf(R"(listeners:
  - listen: { host: 127.0.0.1, port: 8080 }
    name:
upstreams: { app: { servers: [127.0.0.1:9000] } }
)"),
            (std::vector<std::string>{
                "test.yaml:2:13: listeners[0].listen: expected host:port",
                "test.yaml:3:5: listeners[0].name: expected a string",
            }));
}

TEST(ConfigTest, DuplicateKey) {
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "workers: 1\nworkers: 2\n"),
            std::vector<std::string>{"test.yaml:7:1: workers: duplicate key"});
}

TEST(ConfigTest, DuplicateListenerNameAndAddress) {
  // listeners[3] gets the default name "listener3", which listeners[2] already took.
  EXPECT_EQ(errorsOf(R"(listeners:
  - { name: a, listen: 127.0.0.1:8080 }
  - { name: a, listen: 127.0.0.1:8081 }
  - { name: listener3, listen: 127.0.0.1:8082 }
  - { listen: 127.0.0.1:8080 }
upstreams: { app: { servers: [127.0.0.1:9000] } }
)"),
            (std::vector<std::string>{
                "test.yaml:3:13: listeners[1].name: duplicate listener name \"a\" (also "
                "listeners[0].name)",
                "test.yaml:5:5: listeners[3].name: duplicate listener name \"listener3\" (also "
                "listeners[2].name)",
                "test.yaml:5:15: listeners[3].listen: duplicate address 127.0.0.1:8080 (also "
                "listeners[0].listen)",
            }));
}

TEST(ConfigTest, AdminOff) {
  auto config = load(std::string(kMinimal) + "admin: { listen: off }\n");
  EXPECT_FALSE(config->admin.listen.has_value());
  config = load(std::string(kMinimal) + "admin: {}\n");
  ASSERT_TRUE(config->admin.listen.has_value());
  EXPECT_EQ(config->admin.listen->str(), "127.0.0.1:9901");
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "admin: { listen: false }\n"),
            std::vector<std::string>{"test.yaml:6:18: admin.listen: expected host:port"});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "admin: { listen: \"127.0.0.1:8080\" }\n"),
            std::vector<std::string>{
                "test.yaml:2:13: listeners[0].listen: address 127.0.0.1:8080 is also used by "
                "admin.listen"});
}

std::string withTls(const std::string& tls) {
  return "listeners:\n  - listen: 127.0.0.1:8443\n    tls: " + tls +
         "\nupstreams: { app: { servers: [127.0.0.1:9000] } }\n";
}

TEST(ConfigTest, MinVersion) {
  const std::string certs = "certificates: [{ cert: c, key: k }]";
  auto version = [&](const std::string& value) {
    return load(withTls("{ " + certs + ", min_version: " + value + " }"))
        ->listeners[0]
        .tls->min_version;
  };
  EXPECT_EQ(version("\"1.2\""), TlsVersion::k1_2);
  EXPECT_EQ(version("1.2"), TlsVersion::k1_2);
  EXPECT_EQ(version("\"1.3\""), TlsVersion::k1_3);
  EXPECT_EQ(version("1.3"), TlsVersion::k1_3);
  const std::string expected =
      "test.yaml:3:62: listeners[0].tls.min_version: expected \"1.2\" or \"1.3\"";
  EXPECT_EQ(errorsOf(withTls("{ " + certs + ", min_version: 1.1 }")), std::vector{expected});
  EXPECT_EQ(errorsOf(withTls("{ " + certs + ", min_version: 1.20 }")), std::vector{expected});
  EXPECT_EQ(errorsOf(withTls("{ " + certs + ", min_version: TLSv1.3 }")), std::vector{expected});
}

TEST(ConfigTest, SessionResumption) {
  const std::string certs = "certificates: [{ cert: c, key: k }]";
  EXPECT_FALSE(load(withTls("{ " + certs + ", session_resumption: false }"))
                   ->listeners[0]
                   .tls->session_resumption);
  EXPECT_EQ(errorsOf(withTls("{ " + certs + ", session_resumption: maybe }")),
            std::vector<std::string>{
                "test.yaml:3:69: listeners[0].tls.session_resumption: expected true or false"});
}

TEST(ConfigTest, TlsCertificates) {
  EXPECT_EQ(
      errorsOf(withTls("{ certificates: [] }")),
      std::vector<std::string>{"test.yaml:3:26: listeners[0].tls.certificates: must not be empty"});
  EXPECT_EQ(errorsOf(withTls("{ alpn: [h2] }")),
            std::vector<std::string>{"test.yaml:3:10: listeners[0].tls.certificates: required"});
  EXPECT_EQ(errorsOf(withTls("{ certificates: [{ cert: c.pem }, x.pem], alpn: [\"\"] }")),
            (std::vector<std::string>{
                "test.yaml:3:27: listeners[0].tls.certificates[0].key: required",
                "test.yaml:3:44: listeners[0].tls.certificates[1]: expected a map",
                "test.yaml:3:59: listeners[0].tls.alpn[0]: must not be empty",
            }));
}

// --- cluster, session_cache, device_binding, log.audit_log -------------------------------------

TEST(ConfigTest, SessionCacheFullExample) {
  auto config = load(std::string(kMinimal) + R"(cluster: { name: shop-edge }
session_cache:
  store: memcached
  lifetime: 10m
  timeout: 80ms
  l1_entries: 0
  memory: { max_entries: 500 }
  seal_keys:
    - { id: k2, file: conf/keys/seal-k2.key }
    - { id: K_1.old-x, file: /etc/tessera/seal-k1.key }
  memcached:
    servers: [10.0.0.1:11211, "[::1]:11212/2", cache.local:11213/1000]
    replicas: 2
    io_threads: 64
    retry_timeout: 5s
    connect_timeout: 100ms
    io_timeout: 300ms
device_binding:
  tls:
    attributes: [ja4, ip]
    ipv4_prefix: 24
    ipv6_prefix: 0
log: { audit_log: /var/log/tessera-audit.log }
)");
  EXPECT_EQ(config->cluster.name, "shop-edge");

  const SessionCache& cache = config->session_cache;
  EXPECT_EQ(cache.store, StoreKind::kMemcached);
  EXPECT_EQ(cache.lifetime, milliseconds(600'000));
  EXPECT_EQ(cache.timeout, milliseconds(80));
  EXPECT_EQ(cache.l1_entries, 0u);
  EXPECT_EQ(cache.memory_max_entries, 500u);

  ASSERT_EQ(cache.seal_keys.size(), 2u);
  EXPECT_EQ(cache.seal_keys[0].id, "k2");
  EXPECT_EQ(cache.seal_keys[0].file, "conf/keys/seal-k2.key");
  EXPECT_EQ(cache.seal_keys[0].key_path, "session_cache.seal_keys[0]");
  EXPECT_EQ(cache.seal_keys[0].mark.line, 14);
  EXPECT_EQ(cache.seal_keys[0].mark.column, 7);
  EXPECT_EQ(cache.seal_keys[1].id, "K_1.old-x");
  EXPECT_EQ(cache.seal_keys[1].file, "/etc/tessera/seal-k1.key");
  EXPECT_EQ(cache.seal_keys[1].key_path, "session_cache.seal_keys[1]");
  EXPECT_EQ(cache.seal_keys[1].mark.line, 15);

  const Memcached& mc = cache.memcached;
  ASSERT_EQ(mc.servers.size(), 3u);
  EXPECT_EQ(mc.servers[0].address.str(), "10.0.0.1:11211");
  EXPECT_EQ(mc.servers[0].weight, 1u);
  EXPECT_EQ(mc.servers[0].address.key_path, "session_cache.memcached.servers[0]");
  EXPECT_EQ(mc.servers[0].address.mark.line, 17);
  EXPECT_EQ(mc.servers[0].address.mark.column, 15);
  EXPECT_EQ(mc.servers[1].address.host, "::1");
  EXPECT_EQ(mc.servers[1].address.port, 11212);
  EXPECT_EQ(mc.servers[1].weight, 2u);
  EXPECT_EQ(mc.servers[1].address.key_path, "session_cache.memcached.servers[1]");
  EXPECT_EQ(mc.servers[1].address.mark.column, 31);
  EXPECT_EQ(mc.servers[2].address.str(), "cache.local:11213");
  EXPECT_EQ(mc.servers[2].weight, 1000u);
  EXPECT_EQ(mc.replicas, 2);
  EXPECT_EQ(mc.io_threads, 64);
  EXPECT_EQ(mc.retry_timeout, milliseconds(5000));
  EXPECT_EQ(mc.connect_timeout, milliseconds(100));
  EXPECT_EQ(mc.io_timeout, milliseconds(300));

  const TlsBinding& binding = config->device_binding.tls;
  EXPECT_EQ(binding.attributes,
            (std::vector<DeviceAttribute>{DeviceAttribute::kJa4, DeviceAttribute::kIp}));
  EXPECT_EQ(binding.ipv4_prefix, 24);
  EXPECT_EQ(binding.ipv6_prefix, 0);
  EXPECT_EQ(config->log.audit_log, "/var/log/tessera-audit.log");
}

TEST(ConfigTest, SessionCacheDefaults) {
  for (const std::string& yaml :
       {std::string(kMinimal),
        std::string(kMinimal) + "cluster: {}\nsession_cache: {}\ndevice_binding: { tls: {} }\n"}) {
    auto config = load(yaml);
    EXPECT_EQ(config->cluster.name, "tessera");
    const SessionCache& cache = config->session_cache;
    EXPECT_EQ(cache.store, StoreKind::kMemory);
    EXPECT_EQ(cache.lifetime, milliseconds(300'000));
    EXPECT_EQ(cache.timeout, milliseconds(50));
    EXPECT_EQ(cache.l1_entries, 20000u);
    EXPECT_EQ(cache.memory_max_entries, 100000u);
    EXPECT_TRUE(cache.seal_keys.empty());
    EXPECT_TRUE(cache.memcached.servers.empty());
    EXPECT_EQ(cache.memcached.replicas, 1);
    EXPECT_EQ(cache.memcached.io_threads, 2);
    EXPECT_EQ(cache.memcached.retry_timeout, milliseconds(2000));
    EXPECT_EQ(cache.memcached.connect_timeout, milliseconds(200));
    EXPECT_EQ(cache.memcached.io_timeout, milliseconds(200));
    EXPECT_EQ(config->device_binding.tls.attributes,
              std::vector<DeviceAttribute>{DeviceAttribute::kIp});
    EXPECT_EQ(config->device_binding.tls.ipv4_prefix, 32);
    EXPECT_EQ(config->device_binding.tls.ipv6_prefix, 64);
    EXPECT_EQ(config->log.audit_log, "stderr");
    EXPECT_EQ(config->log.audit_rate_limit, 100);
  }
}

TEST(ConfigTest, MemoryStoreNeedsNoMemcachedOrKeys) {
  // The memcached block is accepted (and checked) with the memory store, servers or not.
  auto config = load(std::string(kMinimal) + R"(session_cache:
  store: memory
  seal_keys: []
  memcached: { replicas: 5, io_threads: 4 }
)");
  EXPECT_EQ(config->session_cache.store, StoreKind::kMemory);
  EXPECT_TRUE(config->session_cache.seal_keys.empty());
  EXPECT_EQ(config->session_cache.memcached.replicas, 5);
  EXPECT_EQ(config->session_cache.memcached.io_threads, 4);
  EXPECT_EQ(errorsOf(std::string(kMinimal) + R"(session_cache:
  memcached: { servers: [nowhere], io_threads: 0 }
)"),
            (std::vector<std::string>{
                "test.yaml:7:26: session_cache.memcached.servers[0]: expected host:port[/weight]",
                "test.yaml:7:48: session_cache.memcached.io_threads: expected an integer from 1 "
                "to 64",
            }));
}

TEST(ConfigTest, MemcachedRequiresServersAndSealKeys) {
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "session_cache:\n  store: memcached\n"),
            (std::vector<std::string>{
                "test.yaml:7:3: session_cache.seal_keys: required when store is memcached",
                "test.yaml:7:3: session_cache.memcached: required when store is memcached",
            }));
  EXPECT_EQ(errorsOf(std::string(kMinimal) + R"(session_cache:
  store: memcached
  seal_keys: [{ id: k1, file: k1.key }]
  memcached: { io_threads: 2 }
)"),
            std::vector<std::string>{"test.yaml:9:14: session_cache.memcached.servers: required "
                                     "when store is memcached"});
  EXPECT_EQ(errorsOf(std::string(kMinimal) + R"(session_cache:
  store: memcached
  seal_keys: []
  memcached: { servers: [] }
)"),
            (std::vector<std::string>{
                "test.yaml:8:14: session_cache.seal_keys: must not be empty when store is "
                "memcached",
                "test.yaml:9:25: session_cache.memcached.servers: must not be empty when store is "
                "memcached",
            }));
  // A bad store value is reported alone, without the memcached requirements.
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "session_cache: { store: redis }\n"),
            std::vector<std::string>{
                "test.yaml:6:25: session_cache.store: expected memory or memcached"});
}

std::string withMemcached(const std::string& memcached) {
  return std::string(kMinimal) +
         "session_cache:\n  store: memcached\n  seal_keys: [{ id: k1, file: k1.key }]\n"
         "  memcached: " +
         memcached + "\n";
}

TEST(ConfigTest, MemcachedServerWeights) {
  auto config = load(withMemcached("{ servers: [a:1/7, \"[fe80::1]:2/1\", b:3] }"));
  const std::vector<MemcachedServer>& servers = config->session_cache.memcached.servers;
  ASSERT_EQ(servers.size(), 3u);
  EXPECT_EQ(servers[0].address.str(), "a:1");
  EXPECT_EQ(servers[0].weight, 7u);
  EXPECT_EQ(servers[1].address.str(), "[fe80::1]:2");
  EXPECT_EQ(servers[1].weight, 1u);
  EXPECT_EQ(servers[2].weight, 1u);

  EXPECT_EQ(
      errorsOf(withMemcached("{ servers: [a:1/0, a:2/1001, a:3/, a:4/x, a:5/2/3, a/2, \"a:6 /2\", "
                             "[a:7], a:8, a:8/3] }")),
      (std::vector<std::string>{
          "test.yaml:9:26: session_cache.memcached.servers[0]: weight must be an integer from 1 "
          "to 1000",
          "test.yaml:9:33: session_cache.memcached.servers[1]: weight must be an integer from 1 "
          "to 1000",
          "test.yaml:9:43: session_cache.memcached.servers[2]: weight must be an integer from 1 "
          "to 1000",
          "test.yaml:9:49: session_cache.memcached.servers[3]: weight must be an integer from 1 "
          "to 1000",
          "test.yaml:9:56: session_cache.memcached.servers[4]: weight must be an integer from 1 "
          "to 1000",
          "test.yaml:9:65: session_cache.memcached.servers[5]: expected host:port[/weight]",
          "test.yaml:9:70: session_cache.memcached.servers[6]: expected host:port[/weight]",
          "test.yaml:9:80: session_cache.memcached.servers[7]: expected host:port[/weight]",
          "test.yaml:9:92: session_cache.memcached.servers[9]: duplicate server a:8 (also "
          "session_cache.memcached.servers[8])",
      }));
}

TEST(ConfigTest, MemcachedReplicas) {
  EXPECT_EQ(
      load(withMemcached("{ servers: [a:1, a:2], replicas: 1 }"))->session_cache.memcached.replicas,
      1);
  EXPECT_EQ(
      load(withMemcached("{ servers: [a:1, a:2], replicas: 0 }"))->session_cache.memcached.replicas,
      0);
  EXPECT_EQ(load(withMemcached("{ servers: [a:1, a:2] }"))->session_cache.memcached.replicas, 1);
  // The default of 1 is lowered to 0 when there is a single server...
  EXPECT_EQ(load(withMemcached("{ servers: [a:1] }"))->session_cache.memcached.replicas, 0);
  // ...but a value written in the file is checked.
  EXPECT_EQ(errorsOf(withMemcached("{ servers: [a:1], replicas: 1 }")),
            std::vector<std::string>{"test.yaml:9:42: session_cache.memcached.replicas: must be "
                                     "less than the number of servers"});
  EXPECT_EQ(errorsOf(withMemcached("{ servers: [a:1, a:2], replicas: 2 }")),
            std::vector<std::string>{"test.yaml:9:47: session_cache.memcached.replicas: must be "
                                     "less than the number of servers"});
  EXPECT_EQ(errorsOf(withMemcached("{ servers: [a:1, a:2], replicas: -1 }")),
            std::vector<std::string>{
                "test.yaml:9:47: session_cache.memcached.replicas: expected an integer >= 0"});
  // A broken server list is reported alone: its length says nothing.
  EXPECT_EQ(errorsOf(withMemcached("{ servers: [a:1, a], replicas: 1 }")),
            std::vector<std::string>{
                "test.yaml:9:31: session_cache.memcached.servers[1]: expected host:port[/weight]"});
}

TEST(ConfigTest, SealKeys) {
  EXPECT_EQ(errorsOf(std::string(kMinimal) + R"(session_cache:
  seal_keys:
    - { id: k1, file: a.key }
    - { id: k2, file: b.key }
    - { id: k1, file: c.key }
    - { id: "", file: d.key }
    - { id: has space, file: e.key }
    - { id: 123456789012345678901234567890123, file: f.key }
    - { file: g.key }
    - { id: k3, file: "" }
    - h.key
)"),
            (std::vector<std::string>{
                "test.yaml:10:13: session_cache.seal_keys[2].id: duplicate seal key id \"k1\" "
                "(also session_cache.seal_keys[0].id)",
                "test.yaml:11:13: session_cache.seal_keys[3].id: must not be empty",
                "test.yaml:12:13: session_cache.seal_keys[4].id: expected at most 32 characters "
                "of A-Z, a-z, 0-9, '_', '.' and '-'",
                "test.yaml:13:13: session_cache.seal_keys[5].id: expected at most 32 characters "
                "of A-Z, a-z, 0-9, '_', '.' and '-'",
                "test.yaml:14:7: session_cache.seal_keys[6].id: required",
                "test.yaml:15:23: session_cache.seal_keys[7].file: must not be empty",
                "test.yaml:16:7: session_cache.seal_keys[8]: expected a map",
            }));
  // Exactly 32 characters is fine.
  EXPECT_EQ(load(std::string(kMinimal) +
                 "session_cache: { seal_keys: [{ id: 12345678901234567890123456789012, file: f }] "
                 "}\n")
                ->session_cache.seal_keys.at(0)
                .id.size(),
            32u);
}

TEST(ConfigTest, SessionCacheValues) {
  EXPECT_EQ(errorsOf(std::string(kMinimal) + R"(session_cache:
  lifetime: 0s
  timeout: soon
  l1_entries: -1
  memory: { max_entries: 0, min_entries: 1 }
cluster: { name: "" }
log: { audit_log: "" }
)"),
            (std::vector<std::string>{
                "test.yaml:7:13: session_cache.lifetime: must be greater than 0",
                "test.yaml:8:12: session_cache.timeout: expected a duration like 250ms or 2s",
                "test.yaml:9:15: session_cache.l1_entries: expected an integer >= 0",
                "test.yaml:10:26: session_cache.memory.max_entries: must be greater than 0",
                "test.yaml:10:29: session_cache.memory.min_entries: unknown key",
                "test.yaml:11:18: cluster.name: must not be empty",
                "test.yaml:12:19: log.audit_log: expected stderr, off or a file path",
            }));
  EXPECT_EQ(errorsOf(std::string(kMinimal) + "log: { audit_log: stdout }\n"),
            std::vector<std::string>{"test.yaml:6:19: log.audit_log: expected stderr, off or a "
                                     "file path; stdout is not supported"});
  EXPECT_EQ(load(std::string(kMinimal) + "log: { audit_log: off }\n")->log.audit_log, "off");
  EXPECT_EQ(load(std::string(kMinimal) + "log: { audit_rate_limit: 0 }\n")->log.audit_rate_limit,
            0);
  EXPECT_EQ(
      errorsOf(std::string(kMinimal) + "log: { audit_rate_limit: -5 }\n"),
      std::vector<std::string>{"test.yaml:6:26: log.audit_rate_limit: expected an integer >= 0"});
}

TEST(ConfigTest, UnknownKeyInMemcached) {
  EXPECT_EQ(errorsOf(std::string(kMinimal) + R"(session_cache:
  memcached:
    servers: [127.0.0.1:11211]
    timeout: 1s
cluster: { name: a, id: 2 }
device_binding: { tls: { attributes: [ip] }, http: {} }
)"),
            (std::vector<std::string>{
                "test.yaml:9:5: session_cache.memcached.timeout: unknown key",
                "test.yaml:10:21: cluster.id: unknown key",
                "test.yaml:11:46: device_binding.http: unknown key",
            }));
}

TEST(ConfigTest, DeviceBindingAttributes) {
  auto attributes = [](const std::string& list) {
    return load(std::string(kMinimal) + "device_binding: { tls: { attributes: " + list + " } }\n")
        ->device_binding.tls.attributes;
  };
  EXPECT_EQ(attributes("[]"), std::vector<DeviceAttribute>{});
  EXPECT_EQ(attributes("[ja4]"), std::vector<DeviceAttribute>{DeviceAttribute::kJa4});
  EXPECT_EQ(attributes("[ip, ja4]"),
            (std::vector<DeviceAttribute>{DeviceAttribute::kIp, DeviceAttribute::kJa4}));
  EXPECT_EQ(errorsOf(std::string(kMinimal) +
                     "device_binding: { tls: { attributes: [ip, mac, IP, ip] } }\n"),
            (std::vector<std::string>{
                "test.yaml:6:43: device_binding.tls.attributes[1]: expected ip or ja4",
                "test.yaml:6:48: device_binding.tls.attributes[2]: expected ip or ja4",
                "test.yaml:6:52: device_binding.tls.attributes[3]: duplicate attribute ip (also "
                "device_binding.tls.attributes[0])",
            }));
  EXPECT_EQ(
      errorsOf(std::string(kMinimal) + "device_binding: { tls: { attributes: ip } }\n"),
      std::vector<std::string>{"test.yaml:6:38: device_binding.tls.attributes: expected a list"});
}

TEST(ConfigTest, DeviceBindingPrefixes) {
  auto config = load(std::string(kMinimal) +
                     "device_binding: { tls: { ipv4_prefix: 0, ipv6_prefix: 128 } }\n");
  EXPECT_EQ(config->device_binding.tls.ipv4_prefix, 0);
  EXPECT_EQ(config->device_binding.tls.ipv6_prefix, 128);
  EXPECT_EQ(errorsOf(std::string(kMinimal) +
                     "device_binding: { tls: { ipv4_prefix: 33, ipv6_prefix: 129 } }\n"),
            (std::vector<std::string>{
                "test.yaml:6:39: device_binding.tls.ipv4_prefix: expected an integer from 0 to 32",
                "test.yaml:6:56: device_binding.tls.ipv6_prefix: expected an integer from 0 to "
                "128",
            }));
  EXPECT_EQ(errorsOf(std::string(kMinimal) +
                     "device_binding: { tls: { ipv4_prefix: -1, ipv6_prefix: /64 } }\n"),
            (std::vector<std::string>{
                "test.yaml:6:39: device_binding.tls.ipv4_prefix: expected an integer from 0 to 32",
                "test.yaml:6:56: device_binding.tls.ipv6_prefix: expected an integer from 0 to "
                "128",
            }));
}

TEST(ConfigTest, ErrorStr) {
  EXPECT_EQ((Error{"f.yaml", {3, 7}, "a.b", "bad"}).str(), "f.yaml:3:7: a.b: bad");
  EXPECT_EQ((Error{"f.yaml", {3, 7}, "", "bad"}).str(), "f.yaml:3:7: bad");
  EXPECT_EQ((Error{"f.yaml", {}, "", "cannot read: x"}).str(), "f.yaml: cannot read: x");
}

TEST(ConfigTest, LoadFileMissing) {
  try {
    loadFile("/nonexistent/tessera.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.errors().size(), 1u);
    EXPECT_EQ(e.errors()[0].mark.line, 0);
    EXPECT_EQ(std::string(e.what()),
              "/nonexistent/tessera.yaml: cannot read: No such file or directory");
  }
}

TEST(ConfigTest, LoadFileDirectory) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/conf";
  try {
    loadFile(path);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot read: Is a directory");
  }
}

TEST(ConfigTest, ExampleFileLoads) {
  const std::string path = std::string(TESSERA_SOURCE_DIR) + "/conf/tessera.yaml";
  std::shared_ptr<const Config> config;
  try {
    config = loadFile(path);
  } catch (const ConfigError& e) {
    FAIL() << e.what();
  }
  EXPECT_EQ(config->file, path);
  EXPECT_EQ(config->workers, 0);
  ASSERT_EQ(config->listeners.size(), 1u);
  const Listener& l = config->listeners[0];
  EXPECT_EQ(l.name, "public");
  EXPECT_EQ(l.listen.str(), "127.0.0.1:8443");
  ASSERT_TRUE(l.tls.has_value());
  ASSERT_EQ(l.tls->certificates.size(), 1u);
  EXPECT_EQ(l.tls->certificates[0].cert, "conf/certs/demo.crt");
  EXPECT_EQ(l.tls->certificates[0].key, "conf/certs/demo.key");
  EXPECT_EQ(l.tls->min_version, TlsVersion::k1_2);
  EXPECT_EQ(l.tls->alpn, std::vector<std::string>{"http/1.1"});
  ASSERT_EQ(l.routes.size(), 4u);
  EXPECT_EQ(l.routes[0].upstream, "app");
  EXPECT_EQ(l.routes[2].plugins, std::vector<std::string>{"shop_guard"});
  EXPECT_EQ(config->plugins.at("shop_guard").type, "guard");
  const Upstream& app = config->upstreams.at("app");
  EXPECT_EQ(app.servers.at(0).str(), "127.0.0.1:9000");
  EXPECT_EQ(app.keepalive, 64);
  EXPECT_EQ(config->limits.max_body_bytes, 10u << 20);
  EXPECT_EQ(config->admin.listen->str(), "127.0.0.1:9901");
  EXPECT_EQ(config->log.format, "json");
  EXPECT_EQ(config->log.audit_log, "stderr");
  // `make run` must work without memcached and without key files.
  EXPECT_EQ(config->cluster.name, "tessera");
  EXPECT_EQ(config->session_cache.store, StoreKind::kMemory);
  EXPECT_TRUE(config->session_cache.seal_keys.empty());
  EXPECT_EQ(config->session_cache.lifetime, milliseconds(300'000));
  EXPECT_EQ(config->session_cache.memory_max_entries, 100000u);
  EXPECT_EQ(config->device_binding.tls.attributes,
            std::vector<DeviceAttribute>{DeviceAttribute::kIp});
}

}  // namespace
}  // namespace tessera::conf

namespace tessera::conf {
namespace {

TEST(ConfigPluginsTest, InstancesAndRoutesReferToThem) {
  auto c = loadString(R"(
plugins:
  shop_binding: { type: session_binding, cookies: [SESSIONID] }
listeners:
  - listen: 127.0.0.1:8443
    routes: [ { path_prefix: /api/, upstream: app, plugins: [shop_binding] }, { upstream: app } ]
upstreams: { app: { servers: [127.0.0.1:9000] } }
)",
                      "test.yaml");
  ASSERT_EQ(c->plugins.size(), 1u);
  const PluginInstance& p = c->plugins.at("shop_binding");
  EXPECT_EQ(p.type, "session_binding");
  EXPECT_EQ(p.key_path, "plugins.shop_binding");
  EXPECT_EQ(p.mark.line, 3);
  EXPECT_EQ(p.node["cookies"][0].as<std::string>(), "SESSIONID");
  EXPECT_EQ(c->listeners[0].routes[0].plugins, std::vector<std::string>{"shop_binding"});
  EXPECT_TRUE(c->listeners[0].routes[1].plugins.empty());
}

TEST(ConfigPluginsTest, UnknownPluginAndMissingTypeAreErrors) {
  try {
    loadString(R"(
plugins:
  nameless: { cookies: [A] }
listeners:
  - listen: 127.0.0.1:8443
    routes: [ { upstream: app, plugins: [ghost] } ]
upstreams: { app: { servers: [127.0.0.1:9000] } }
)",
               "test.yaml");
    FAIL() << "expected errors";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.errors().size(), 2u) << e.what();
    EXPECT_EQ(e.errors()[0].str(), "test.yaml:3:13: plugins.nameless.type: required");
    EXPECT_EQ(e.errors()[1].str(),
              "test.yaml:6:42: listeners[0].routes[0].plugins[0]: unknown plugin \"ghost\"");
  }
}

}  // namespace
}  // namespace tessera::conf
