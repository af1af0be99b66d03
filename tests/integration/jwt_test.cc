// The jwt plugin end to end: keys and tokens from `tessera token` and from an independent JOSE
// implementation (python3-jwcrypto), verified and decrypted by the real binary; the backend sees
// the mapped identity headers and nothing a client forged.

#include <gtest/gtest.h>

#include "tests/integration/harness.h"

namespace tessera::testing {
namespace {

const std::string kPython = "/usr/bin/python3";
const std::string kMint = std::string(TESSERA_SOURCE_DIR) + "/tests/tools/jwcrypto_mint.py";

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mustRun({TESSERA_BINARY, "token", "keygen", "--type", "ec", "--kid", "auth-1", "--out",
             dir_.file("auth.jwk"), "--public", dir_.file("auth.jwks.json")});
    mustRun({TESSERA_BINARY, "token", "keygen", "--type", "ec", "--kid", "proxy-1", "--out",
             dir_.file("proxy.jwk"), "--public", dir_.file("proxy.public.jwks.json")});
    // The proxy's decrypt_keys file is a JWKS of private keys.
    dir_.write("proxy.jwks.json", "{\"keys\":[" + readFile(dir_.file("proxy.jwk")) + "]}");
    port_ = freePort();
    admin_ = freePort();
    std::string yaml =
        "workers: 1\n"
        "plugins:\n"
        "  api_jwt:\n"
        "    type: jwt\n"
        "    from: [header:Authorization, cookie:access_token]\n"
        "    issuers:\n"
        "      - issuer: https://auth.example\n"
        "        audiences: [shop]\n"
        "        keys: " +
        dir_.file("auth.jwks.json") +
        "\n"
        "        algorithms: [ES256, RS256, PS256]\n"
        "    decrypt_keys: " +
        dir_.file("proxy.jwks.json") +
        "\n"
        "    encrypted_claims: [pii]\n"
        "    claims_to_headers: { sub: X-User-Id, role: X-User-Role, pii.id_card: X-User-Id-Card "
        "}\n"
        "    clock_skew: 60s\n"
        "listeners:\n  - listen: 127.0.0.1:" +
        std::to_string(port_) +
        "\n"
        "    routes:\n"
        "      - { path_prefix: /api/, upstream: app, plugins: [api_jwt] }\n"
        "      - { upstream: app }\n"
        "upstreams: { app: { servers: [" +
        backend_.address() +
        "] } }\n"
        "admin: { listen: 127.0.0.1:" +
        std::to_string(admin_) +
        " }\n"
        "log: { level: info, access_log: off }\n";
    tessera_ = std::make_unique<Tessera>(dir_, yaml, port_, admin_);
    ASSERT_TRUE(tessera_->started()) << tessera_->stderrText();
  }

  std::string mustRun(const std::vector<std::string>& argv) {
    CommandResult r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << argv[0] << " " << argv[1] << ": " << r.output;
    return r.output;
  }

  std::string issue(const std::string& audience = "shop") {
    std::vector<std::string> argv = {TESSERA_BINARY,
                                     "token",
                                     "issue",
                                     "--issuer",
                                     "https://auth.example",
                                     "--audience",
                                     audience,
                                     "--sign-key",
                                     dir_.file("auth.jwk"),
                                     "--claims",
                                     R"({"sub":"u1","role":"buyer"})",
                                     "--sensitive",
                                     R"({"id_card":"ID-4242","phone":"+1-555"})",
                                     "--sensitive-claim",
                                     "pii",
                                     "--encrypt-to",
                                     dir_.file("proxy.public.jwks.json"),
                                     "--ttl",
                                     "300s"};
    std::string out = mustRun(argv);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }

  // GET /api/orders with `auth` as the Authorization header (if any) and extra header lines.
  std::string call(const std::string& auth, const std::string& extra = "") {
    RawClient c(port_);
    std::string req = "GET /api/orders HTTP/1.1\r\nHost: shop.test\r\n" + extra;
    if (!auth.empty()) req += "Authorization: " + auth + "\r\n";
    c.send(req + "Connection: close\r\n\r\n");
    return c.readAll(5s);
  }

  TempDir dir_;
  TestBackend backend_;
  int port_ = 0;
  int admin_ = 0;
  std::unique_ptr<Tessera> tessera_;
};

TEST_F(JwtTest, ATokenFromTesseraTokenReachesTheBackendAsHeaders) {
  std::string resp = call("Bearer " + issue(), "X-User-Id: admin\r\nX-User-Id-Card: forged\r\n");
  ASSERT_EQ(statusCodes(resp), std::vector<int>{200}) << resp;
  std::string head = backend_.lastHead();
  EXPECT_NE(head.find("X-User-Id: u1\n"), std::string::npos) << head;
  EXPECT_NE(head.find("X-User-Role: buyer\n"), std::string::npos) << head;
  EXPECT_NE(head.find("X-User-Id-Card: ID-4242\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("admin"), std::string::npos) << head;  // the client's forgery is gone
  EXPECT_EQ(head.find("forged"), std::string::npos) << head;
}

TEST_F(JwtTest, ATokenFromJwcryptoIsAcceptedToo) {
  CommandResult r =
      run({kPython, kMint, "issue", "--issuer", "https://auth.example", "--audience", "shop",
           "--sign-key", dir_.file("auth.jwk"), "--claims", R"({"sub":"u7","role":"seller"})",
           "--sensitive", R"({"id_card":"JW-7"})", "--sensitive-claim", "pii", "--encrypt-to",
           dir_.file("proxy.public.jwks.json"), "--ttl", "300s"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string token = r.output.substr(0, r.output.find_first_of("\r\n"));
  std::string resp = call("Bearer " + token);
  ASSERT_EQ(statusCodes(resp), std::vector<int>{200}) << resp;
  EXPECT_NE(backend_.lastHead().find("X-User-Id-Card: JW-7\n"), std::string::npos);
  EXPECT_NE(backend_.lastHead().find("X-User-Role: seller\n"), std::string::npos);
}

TEST_F(JwtTest, BadTokensGet401WithAnRfc6750Challenge) {
  int before = backend_.requests();
  std::string token = issue();
  std::string tampered = token;
  size_t dot = tampered.find('.');
  tampered[dot + 5] = tampered[dot + 5] == 'A' ? 'B' : 'A';  // one payload byte
  std::string wrong_aud = issue("other");
  struct Case {
    std::string auth;
    std::string error;
  };
  std::vector<Case> cases = {
      {"", "invalid_request"},
      {"Bearer " + tampered, "invalid_token"},
      {"Bearer " + wrong_aud, "invalid_token"},
      {"Bearer not.a.token", "invalid_token"},
      {"Bearer " + std::string(12000, 'A'), "invalid_token"},  // garbage (64 KiB: 431 first)
  };
  for (const Case& c : cases) {
    std::string resp = call(c.auth);
    EXPECT_EQ(statusCodes(resp), std::vector<int>{401}) << c.auth.substr(0, 40);
    EXPECT_NE(resp.find("WWW-Authenticate: Bearer error=\"" + c.error + "\""), std::string::npos)
        << resp;
  }
  EXPECT_EQ(backend_.requests(), before);  // none of them went upstream
}

TEST_F(JwtTest, RoutesWithoutThePluginAreUntouched) {
  RawClient c(port_);
  c.send("GET /public HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(statusCodes(c.readAll(5s)), std::vector<int>{200});
}

}  // namespace
}  // namespace tessera::testing
