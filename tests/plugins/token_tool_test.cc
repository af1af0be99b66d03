// `tessera token` (plugins/jwt/token_tool.h): keygen file formats and modes, issue checked with
// raw cjose calls rather than the tool's own reader, inspect with and without a key, the reference
// verifier, bad input, and interop both ways with python3-jwcrypto (tests/tools/jwcrypto_mint.py).

#include "plugins/jwt/token_tool.h"

#include <cjose/cjose.h>
#include <gtest/gtest.h>
#include <jansson.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

extern char** environ;

namespace tessera::plugins::jwt_tool {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::int64_t kNow = 1'700'000'000;
constexpr const char* kIssuer = "https://auth.example";
constexpr const char* kSensitive =
    R"({"id_card":"110101199003077777","phone":"+86 138 0000 0000"})";

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

mode_t fileMode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

std::string b64urlDecode(const std::string& in) {
  uint8_t* out = nullptr;
  size_t len = 0;
  cjose_err err{};
  if (!cjose_base64url_decode(in.data(), in.size(), &out, &len, &err)) return "";
  std::string s(reinterpret_cast<char*>(out), len);
  cjose_get_dealloc()(out);
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts(1);
  for (char c : s) {
    if (c == '.') {
      parts.emplace_back();
    } else {
      parts.back().push_back(c);
    }
  }
  return parts;
}

// The first key of a JWK or JWKS file, imported by cjose directly: the checks below must not
// lean on the reader under test.
struct JwkFree {
  void operator()(cjose_jwk_t* k) const { cjose_jwk_release(k); }
};
using JwkPtr = std::unique_ptr<cjose_jwk_t, JwkFree>;

JwkPtr rawKey(const std::string& path) {
  json j = json::parse(readFile(path));
  if (j.contains("keys")) j = j["keys"][0];
  std::string text = j.dump();
  cjose_err err{};
  return JwkPtr(cjose_jwk_import(text.data(), text.size(), &err));
}

// Raw cjose signature check; the verified payload, or nullopt.
std::optional<json> cjoseVerify(const std::string& token, const std::string& jwks_path) {
  JwkPtr key = rawKey(jwks_path);
  cjose_err err{};
  cjose_jws_t* jws = cjose_jws_import(token.data(), token.size(), &err);
  if (key == nullptr || jws == nullptr) return std::nullopt;
  std::optional<json> payload;
  uint8_t* plain = nullptr;
  size_t len = 0;
  if (cjose_jws_verify(jws, key.get(), &err) && cjose_jws_get_plaintext(jws, &plain, &len, &err)) {
    payload = json::parse(std::string(reinterpret_cast<char*>(plain), len));
  }
  cjose_jws_release(jws);
  return payload;
}

// Raw cjose decryption of a JWE compact string; the plaintext, or nullopt.
std::optional<std::string> cjoseDecrypt(const std::string& compact, const std::string& key_path) {
  JwkPtr key = rawKey(key_path);
  cjose_err err{};
  cjose_jwe_t* jwe = cjose_jwe_import(compact.data(), compact.size(), &err);
  if (key == nullptr || jwe == nullptr) return std::nullopt;
  size_t len = 0;
  uint8_t* plain = cjose_jwe_decrypt(jwe, key.get(), &len, &err);
  cjose_jwe_release(jwe);
  if (plain == nullptr) return std::nullopt;
  std::string s(reinterpret_cast<char*>(plain), len);
  cjose_get_dealloc()(plain);
  return s;
}

struct RunResult {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string out;  // stdout; stderr goes to the test's log
};

// Runs argv[0] with argv directly (no shell, so JSON arguments need no quoting).
RunResult run(const std::vector<std::string>& args) {
  RunResult r;
  int pipefd[2];
  if (::pipe(pipefd) != 0) return r;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipefd[0]);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  char buf[4096];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) r.out.append(buf, n);
  ::close(pipefd[0]);
  int wstatus = 0;
  if (rc == 0 && ::waitpid(pid, &wstatus, 0) == pid && WIFEXITED(wstatus)) {
    r.status = WEXITSTATUS(wstatus);
  }
  return r;
}

const std::string kPython = "/usr/bin/python3";
const std::string kMint = std::string(TESSERA_SOURCE_DIR) + "/tests/tools/jwcrypto_mint.py";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Key pairs shared by the suite (RSA generation is slow): an issuer's signing keys and the
// proxy's decryption keys, made by `keygen` itself.
class TokenToolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tessera-token-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* name : {"sign_ec", "sign_rsa", "proxy_ec", "proxy_rsa"}) {
      KeygenOptions o{std::string(name).ends_with("ec") ? "ec" : "rsa", path(name) + ".jwk",
                      path(name) + ".jwks", std::string("kid-") + name};
      std::string kid, error;
      ASSERT_TRUE(keygen(o, kid, error)) << error;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string path(const std::string& name) { return dir_ + "/" + name; }

  static IssueOptions issueOptions(const std::string& sign, const std::string& proxy) {
    IssueOptions o;
    o.issuer = kIssuer;
    o.audiences = {"shop"};
    o.sign_key_path = path(sign + ".jwk");
    o.claims_json = R"({"sub":"u1","role":"buyer"})";
    o.sensitive_json = kSensitive;
    o.encrypt_to_path = path(proxy + ".jwks");
    o.ttl = "300s";
    o.now = kNow;
    return o;
  }

  static std::string mustIssue(const IssueOptions& o) {
    std::string token, error;
    EXPECT_TRUE(issue(o, token, error)) << error;
    return token;
  }

  static std::string issueError(const IssueOptions& o) {
    std::string token, error;
    EXPECT_FALSE(issue(o, token, error)) << "issued " << token;
    EXPECT_TRUE(token.empty());
    return error;
  }

  static std::string dir_;
};

std::string TokenToolTest::dir_;

// --- keygen ---------------------------------------------------------------------------------

class KeygenTest : public TokenToolTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(KeygenTest, WritesPrivateJwkAndPublicJwksWithTheirModes) {
  const std::string type = GetParam();
  const std::string priv = path("kg-" + type + ".jwk"), pub = path("kg-" + type + ".jwks");
  // A strict umask must not make the public JWKS unreadable to the proxy's user.
  mode_t old = ::umask(077);
  std::string kid, error;
  bool ok = keygen({type, priv, pub, ""}, kid, error);
  ::umask(old);
  ASSERT_TRUE(ok) << error;
  EXPECT_EQ(fileMode(priv), 0600u);
  EXPECT_EQ(fileMode(pub), 0644u);
  EXPECT_EQ(kid.size(), 16u);
  EXPECT_EQ(kid.find_first_not_of("0123456789abcdef"), std::string::npos);

  json p = json::parse(readFile(priv));
  json k = json::parse(readFile(pub));
  EXPECT_EQ(p["kty"], type == "ec" ? "EC" : "RSA");
  EXPECT_EQ(p["kid"], kid);
  EXPECT_TRUE(p.contains("d"));
  ASSERT_EQ(k["keys"].size(), 1u);
  EXPECT_EQ(k["keys"][0]["kid"], kid);
  EXPECT_FALSE(k["keys"][0].contains("d"));
  if (type == "ec") {
    EXPECT_EQ(p["crv"], "P-256");
  } else {
    EXPECT_EQ(b64urlDecode(p["n"]).size(), 256u);  // 2048 bits
    EXPECT_EQ(p["e"], "AQAB");
  }
  cjose_err err{};
  JwkPtr imported = rawKey(pub);
  ASSERT_NE(imported, nullptr);
  EXPECT_EQ(cjose_jwk_get_keysize(imported.get(), &err), type == "ec" ? 256u : 2048u);
}

INSTANTIATE_TEST_SUITE_P(Types, KeygenTest, ::testing::Values("ec", "rsa"));

TEST_F(TokenToolTest, KeygenKeepsAGivenKid) {
  std::string kid, error;
  ASSERT_TRUE(keygen({"ec", path("kid.jwk"), path("kid.jwks"), "proxy-2024"}, kid, error));
  EXPECT_EQ(kid, "proxy-2024");
  EXPECT_EQ(json::parse(readFile(path("kid.jwks")))["keys"][0]["kid"], "proxy-2024");
}

TEST_F(TokenToolTest, KeygenRefusesToOverwriteAndLeavesNothingBehind) {
  std::string kid, error;
  writeFile(path("taken.jwk"), "precious");
  EXPECT_FALSE(keygen({"ec", path("taken.jwk"), path("new1.jwks"), ""}, kid, error));
  EXPECT_NE(error.find("exists"), std::string::npos) << error;
  EXPECT_EQ(readFile(path("taken.jwk")), "precious");
  EXPECT_FALSE(fs::exists(path("new1.jwks")));

  writeFile(path("taken.jwks"), "precious");
  error.clear();
  EXPECT_FALSE(keygen({"ec", path("new2.jwk"), path("taken.jwks"), ""}, kid, error));
  EXPECT_NE(error.find("exists"), std::string::npos) << error;
  EXPECT_EQ(readFile(path("taken.jwks")), "precious");
  EXPECT_FALSE(fs::exists(path("new2.jwk")));  // created first, removed on the refusal

  fs::create_symlink(path("elsewhere"), path("link.jwk"));
  EXPECT_FALSE(keygen({"ec", path("link.jwk"), path("new3.jwks"), ""}, kid, error));
  EXPECT_FALSE(fs::exists(path("elsewhere")));

  EXPECT_FALSE(keygen({"ec", path("same"), path("same"), ""}, kid, error));
  EXPECT_FALSE(fs::exists(path("same")));
}

TEST_F(TokenToolTest, KeygenRejectsBadTypeAndKid) {
  std::string kid, error;
  EXPECT_FALSE(keygen({"ed25519", path("t.jwk"), path("t.jwks"), ""}, kid, error));
  EXPECT_NE(error.find("--type"), std::string::npos) << error;
  error.clear();
  EXPECT_FALSE(keygen({"ec", path("t.jwk"), path("t.jwks"), "has space"}, kid, error));
  EXPECT_NE(error.find("--kid"), std::string::npos) << error;
  EXPECT_FALSE(fs::exists(path("t.jwk")));
  EXPECT_FALSE(keygen({"ec", "", path("t.jwks"), ""}, kid, error));
  EXPECT_FALSE(keygen({"ec", path("/no/such/dir/k.jwk"), path("t2.jwks"), ""}, kid, error));
  EXPECT_FALSE(fs::exists(path("t2.jwks")));
}

// --- issue ----------------------------------------------------------------------------------

struct IssueCase {
  const char* sign;   // key pair name
  const char* alg;    // "" → the key type's default
  const char* proxy;  // encryption key pair name
  const char* want_alg;
  const char* want_jwe_alg;
};

class IssueTest : public TokenToolTest, public ::testing::WithParamInterface<IssueCase> {};

TEST_P(IssueTest, SignsAndEncryptsSoThatRawCjoseVerifiesAndDecrypts) {
  const IssueCase& c = GetParam();
  IssueOptions o = issueOptions(c.sign, c.proxy);
  o.alg = c.alg;
  std::string token = mustIssue(o);
  std::vector<std::string> parts = split(token);
  ASSERT_EQ(parts.size(), 3u);

  json header = json::parse(b64urlDecode(parts[0]));
  EXPECT_EQ(header,
            json({{"alg", c.want_alg}, {"kid", std::string("kid-") + c.sign}, {"typ", "JWT"}}));

  std::optional<json> claims = cjoseVerify(token, path(std::string(c.sign) + ".jwks"));
  ASSERT_TRUE(claims) << "cjose did not verify the signature";
  EXPECT_EQ((*claims)["iss"], kIssuer);
  EXPECT_EQ((*claims)["aud"], "shop");
  EXPECT_EQ((*claims)["iat"], kNow);
  EXPECT_EQ((*claims)["nbf"], kNow);
  EXPECT_EQ((*claims)["exp"], kNow + 300);
  EXPECT_EQ((*claims)["sub"], "u1");
  EXPECT_EQ((*claims)["role"], "buyer");
  // The other issuer key must not verify it.
  std::string other = std::string(c.sign) == "sign_ec" ? "sign_rsa" : "sign_ec";
  EXPECT_FALSE(cjoseVerify(token, path(other + ".jwks")));

  ASSERT_TRUE((*claims)["pii"].is_string());
  const std::string jwe = (*claims)["pii"];
  ASSERT_EQ(split(jwe).size(), 5u);
  json jwe_header = json::parse(b64urlDecode(split(jwe)[0]));
  EXPECT_EQ(jwe_header["alg"], c.want_jwe_alg);
  EXPECT_EQ(jwe_header["enc"], "A256GCM");
  EXPECT_EQ(jwe_header["kid"], std::string("kid-") + c.proxy);
  EXPECT_EQ(token.find("110101199003077777"), std::string::npos);
  std::optional<std::string> plain = cjoseDecrypt(jwe, path(std::string(c.proxy) + ".jwk"));
  ASSERT_TRUE(plain) << "cjose did not decrypt the pii claim";
  EXPECT_EQ(json::parse(*plain), json::parse(kSensitive));
}

INSTANTIATE_TEST_SUITE_P(
    Algs, IssueTest,
    ::testing::Values(IssueCase{"sign_ec", "", "proxy_ec", "ES256", "ECDH-ES"},
                      IssueCase{"sign_ec", "ES256", "proxy_rsa", "ES256", "RSA-OAEP"},
                      IssueCase{"sign_rsa", "", "proxy_rsa", "RS256", "RSA-OAEP"},
                      IssueCase{"sign_rsa", "PS256", "proxy_ec", "PS256", "ECDH-ES"}));

TEST_F(TokenToolTest, IssueWithoutSensitiveClaimsAndWithSeveralAudiences) {
  IssueOptions o = issueOptions("sign_ec", "proxy_ec");
  o.sensitive_json.clear();
  o.encrypt_to_path.clear();
  o.audiences = {"shop", "admin"};
  o.ttl = "1h";
  std::optional<json> claims = cjoseVerify(mustIssue(o), path("sign_ec.jwks"));
  ASSERT_TRUE(claims);
  EXPECT_FALSE(claims->contains("pii"));
  EXPECT_EQ((*claims)["aud"], json({"shop", "admin"}));
  EXPECT_EQ((*claims)["exp"], kNow + 3600);
}

TEST_F(TokenToolTest, IssueTakesAPlainJwkAsRecipientAndAnotherClaimName) {
  writeFile(path("proxy_ec.pub.jwk"),
            json::parse(readFile(path("proxy_ec.jwks")))["keys"][0].dump());
  IssueOptions o = issueOptions("sign_ec", "proxy_ec");
  o.encrypt_to_path = path("proxy_ec.pub.jwk");
  o.sensitive_claim = "secret";
  std::optional<json> claims = cjoseVerify(mustIssue(o), path("sign_ec.jwks"));
  ASSERT_TRUE(claims);
  EXPECT_FALSE(claims->contains("pii"));
  std::optional<std::string> plain = cjoseDecrypt((*claims)["secret"], path("proxy_ec.jwk"));
  ASSERT_TRUE(plain);
  EXPECT_EQ(json::parse(*plain), json::parse(kSensitive));
}

TEST_F(TokenToolTest, IssueUsesTheClockWhenNowIsUnset) {
  IssueOptions o = issueOptions("sign_ec", "proxy_ec");
  o.now = 0;
  std::int64_t before = std::time(nullptr);
  std::optional<json> claims = cjoseVerify(mustIssue(o), path("sign_ec.jwks"));
  ASSERT_TRUE(claims);
  EXPECT_GE((*claims)["iat"].get<std::int64_t>(), before);
  EXPECT_LE((*claims)["iat"].get<std::int64_t>(), std::time(nullptr));
  EXPECT_EQ((*claims)["exp"].get<std::int64_t>(), (*claims)["iat"].get<std::int64_t>() + 300);
}

TEST_F(TokenToolTest, IssueRejectsBadInput) {
  struct Case {
    const char* name;
    void (*change)(IssueOptions&);
    const char* want;  // a part of the error
  };
  const Case cases[] = {
      {"bad claims JSON", [](IssueOptions& o) { o.claims_json = R"({"sub":)"; }, "--claims"},
      {"claims not an object", [](IssueOptions& o) { o.claims_json = "[1]"; }, "object"},
      {"claims set exp", [](IssueOptions& o) { o.claims_json = R"({"exp":1})"; }, "--ttl"},
      {"claims set iss", [](IssueOptions& o) { o.claims_json = R"({"iss":"x"})"; }, "--issuer"},
      {"claims hold pii", [](IssueOptions& o) { o.claims_json = R"({"pii":"x"})"; }, "pii"},
      {"unknown alg", [](IssueOptions& o) { o.alg = "ES512"; }, "--alg ES512"},
      {"alg none", [](IssueOptions& o) { o.alg = "none"; }, "--alg none"},
      {"HS256", [](IssueOptions& o) { o.alg = "HS256"; }, "--alg HS256"},
      {"ES256 with RSA",
       [](IssueOptions& o) {
         o.alg = "ES256";
         o.sign_key_path = path("sign_rsa.jwk");
       },
       "ES256 needs an EC P-256 key"},
      {"RS256 with EC", [](IssueOptions& o) { o.alg = "RS256"; }, "needs an RSA key"},
      {"PS256 with EC", [](IssueOptions& o) { o.alg = "PS256"; }, "needs an RSA key"},
      {"missing sign key", [](IssueOptions& o) { o.sign_key_path = path("nope.jwk"); },
       "--sign-key"},
      {"no sign key", [](IssueOptions& o) { o.sign_key_path.clear(); }, "--sign-key"},
      {"public sign key", [](IssueOptions& o) { o.sign_key_path = path("sign_ec.jwks"); },
       "public key"},
      {"missing encrypt-to", [](IssueOptions& o) { o.encrypt_to_path = path("nope.jwks"); },
       "--encrypt-to"},
      {"sensitive alone", [](IssueOptions& o) { o.encrypt_to_path.clear(); }, "--encrypt-to"},
      {"encrypt-to alone", [](IssueOptions& o) { o.sensitive_json.clear(); }, "--sensitive"},
      {"bad sensitive", [](IssueOptions& o) { o.sensitive_json = R"({"id_card":12)"; },
       "--sensitive"},
      {"sensitive as exp", [](IssueOptions& o) { o.sensitive_claim = "exp"; }, "registered"},
      {"no issuer", [](IssueOptions& o) { o.issuer.clear(); }, "--issuer"},
      {"no audience", [](IssueOptions& o) { o.audiences.clear(); }, "--audience"},
      {"bad ttl", [](IssueOptions& o) { o.ttl = "5 minutes"; }, "--ttl"},
      {"zero ttl", [](IssueOptions& o) { o.ttl = "0s"; }, "--ttl"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    IssueOptions o = issueOptions("sign_ec", "proxy_ec");
    c.change(o);
    std::string error = issueError(o);
    EXPECT_NE(error.find(c.want), std::string::npos) << error;
  }
}

TEST_F(TokenToolTest, ErrorsNeverQuotePrivateKeysOrSensitiveValues) {
  // A private JWK cut short: the JSON parser's own message would quote text next to the error.
  std::string priv = readFile(path("sign_ec.jwk"));
  const std::string d = json::parse(priv)["d"];
  writeFile(path("cut.jwk"), priv.substr(0, priv.find(d) + d.size()));
  IssueOptions o = issueOptions("sign_ec", "proxy_ec");
  o.sign_key_path = path("cut.jwk");
  std::string error = issueError(o);
  EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;
  EXPECT_EQ(error.find(d.substr(0, 8)), std::string::npos) << error;

  o = issueOptions("sign_ec", "proxy_ec");
  o.sensitive_json = R"({"id_card":"110101199003077777")";
  error = issueError(o);
  EXPECT_EQ(error.find("1101011990"), std::string::npos) << error;

  // An EC key whose "d" is not a valid scalar for the curve: cjose's reason must not echo it.
  json bad = json::parse(priv);
  bad["x"] = "AAAA";
  writeFile(path("bad.jwk"), bad.dump());
  o = issueOptions("sign_ec", "proxy_ec");
  o.sign_key_path = path("bad.jwk");
  error = issueError(o);
  EXPECT_EQ(error.find(d.substr(0, 8)), std::string::npos) << error;
}

// A private JWK whose private members belong to another key: its tokens would not verify with
// its own public JWKS, so issue refuses it instead of minting them.
TEST_F(TokenToolTest, IssueRefusesAPrivateJwkWhoseHalvesDisagree) {
  for (const std::string type : {"ec", "rsa"}) {
    SCOPED_TRACE(type);
    json key = json::parse(readFile(path("sign_" + type + ".jwk")));
    json other = json::parse(readFile(path("proxy_" + type + ".jwk")));
    for (const char* member : {"d", "p", "q", "dp", "dq", "qi"}) {
      if (other.contains(member)) key[member] = other[member];
    }
    writeFile(path("mismatched.jwk"), key.dump());
    IssueOptions o = issueOptions("sign_" + type, "proxy_ec");
    o.sign_key_path = path("mismatched.jwk");
    std::string error = issueError(o);
    EXPECT_NE(error.find("inconsistent"), std::string::npos) << error;
    fs::remove(path("mismatched.jwk"));
  }
}

TEST(ParseTtl, AcceptsUnitsAndRejectsTheRest) {
  const std::map<std::string, std::int64_t> good = {
      {"300", 300}, {"300s", 300}, {"5m", 300}, {"1h", 3600}, {"2d", 172800}, {"400d", 34560000}};
  for (const auto& [text, want] : good) {
    std::int64_t got = 0;
    std::string error;
    EXPECT_TRUE(parseTtl(text, got, error)) << text << ": " << error;
    EXPECT_EQ(got, want) << text;
  }
  for (const char* text : {"", "s", "0", "-5", "+5", "5 m", "5x", "1.5h", "401d",
                           "99999999999999999999", "9223372036854775807s"}) {
    std::int64_t got = 0;
    std::string error;
    EXPECT_FALSE(parseTtl(text, got, error)) << text;
    EXPECT_NE(error.find("--ttl"), std::string::npos) << text;
  }
}

// --- inspect --------------------------------------------------------------------------------

TEST_F(TokenToolTest, InspectShowsClaimsAndLeavesEncryptedOnesEncryptedWithoutAKey) {
  const std::string token = mustIssue(issueOptions("sign_ec", "proxy_ec"));
  std::string report, error;
  ASSERT_TRUE(inspect({"Bearer " + token + "\n", "", kNow + 100}, report, error)) << error;
  EXPECT_NE(report.find("header:\n{\n  \"alg\": \"ES256\""), std::string::npos) << report;
  EXPECT_NE(report.find("\"kid\": \"kid-sign_ec\""), std::string::npos) << report;
  EXPECT_NE(report.find("claims:\n{"), std::string::npos) << report;
  EXPECT_NE(report.find("\"role\": \"buyer\""), std::string::npos) << report;
  EXPECT_NE(report.find("\"pii\": \"eyJ"), std::string::npos) << report;
  EXPECT_NE(report.find("(in 200 s)"), std::string::npos) << report;
  EXPECT_NE(report.find("encrypted claims: pii (ECDH-ES A256GCM, kid \"kid-proxy_ec\")"),
            std::string::npos)
      << report;
  EXPECT_EQ(report.find("110101199003077777"), std::string::npos) << report;
  EXPECT_TRUE(report.ends_with("signature: not verified\n")) << report;
}

TEST_F(TokenToolTest, InspectDecryptsWithAPrivateJwkOrJwks) {
  IssueOptions o = issueOptions("sign_rsa", "proxy_rsa");
  const std::string token = mustIssue(o);
  // A JWKS holding another key first: the JWE's kid picks the right one.
  json jwks = {{"keys",
                {json::parse(readFile(path("proxy_ec.jwk"))),
                 json::parse(readFile(path("proxy_rsa.jwk")))}}};
  writeFile(path("proxy_all.jwks"), jwks.dump());
  for (const std::string& key : {path("proxy_rsa.jwk"), path("proxy_all.jwks")}) {
    SCOPED_TRACE(key);
    std::string report, error;
    ASSERT_TRUE(inspect({token, key, kNow + 400}, report, error)) << error;
    EXPECT_NE(report.find("\"id_card\": \"110101199003077777\""), std::string::npos) << report;
    EXPECT_NE(report.find("\"phone\": \"+86 138 0000 0000\""), std::string::npos) << report;
    EXPECT_NE(report.find("expired 100 s ago"), std::string::npos) << report;
    EXPECT_NE(report.find("decrypted claims: pii\n"), std::string::npos) << report;
    EXPECT_TRUE(report.ends_with("signature: not verified\n")) << report;
  }
}

TEST_F(TokenToolTest, InspectFailsOnWrongKeyAndOnNonTokens) {
  const std::string token = mustIssue(issueOptions("sign_ec", "proxy_ec"));
  std::string report, error;
  // Same key type, other key: its kid does not match.
  ASSERT_FALSE(inspect({token, path("sign_ec.jwk"), kNow}, report, error));
  EXPECT_NE(error.find("claim \"pii\""), std::string::npos) << error;
  EXPECT_NE(error.find("kid-proxy_ec"), std::string::npos) << error;
  EXPECT_FALSE(inspect({token, path("proxy_rsa.jwk"), kNow}, report, error));
  EXPECT_FALSE(inspect({token, path("nope.jwk"), kNow}, report, error));
  EXPECT_NE(error.find("--decrypt-key"), std::string::npos) << error;

  // A key with the right kid but other key material: GCM's tag check fails.
  json impostor = json::parse(readFile(path("sign_ec.jwk")));
  impostor["kid"] = "kid-proxy_ec";
  writeFile(path("impostor.jwk"), impostor.dump());
  error.clear();
  EXPECT_FALSE(inspect({token, path("impostor.jwk"), kNow}, report, error));
  EXPECT_NE(error.find("cannot decrypt"), std::string::npos) << error;

  for (const char* bad : {"", "garbage", "a.b", "a.b.c", "eyJhbGciOiJub25lIn0.e30.x.y.z"}) {
    error.clear();
    EXPECT_FALSE(inspect({bad, "", kNow}, report, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

// --- verify (the reference verifier) ---------------------------------------------------------

TEST_F(TokenToolTest, VerifyChecksSignatureClaimsAndDecrypts) {
  const std::string token = mustIssue(issueOptions("sign_ec", "proxy_ec"));
  VerifyOptions v;
  v.token = token;
  v.keys_path = path("sign_ec.jwks");
  v.issuer = kIssuer;
  v.audience = "shop";
  v.decrypt_key_path = path("proxy_ec.jwk");
  v.now = kNow + 10;
  json claims;
  std::string error;
  ASSERT_TRUE(verify(v, claims, error)) << error;
  EXPECT_EQ(claims["pii"], json::parse(kSensitive));
  EXPECT_EQ(claims["sub"], "u1");

  auto refused = [&](VerifyOptions w, const std::string& want) {
    json c;
    std::string e;
    EXPECT_FALSE(verify(w, c, e));
    EXPECT_NE(e.find(want), std::string::npos) << e;
  };
  VerifyOptions w = v;
  w.now = kNow + 300 + 61;
  refused(w, "expired");
  w.now = kNow - 61;
  refused(w, "nbf");
  w = v;
  w.issuer = "https://evil";
  refused(w, "iss");
  w = v;
  w.audience = "other";
  refused(w, "aud");
  w = v;
  w.algorithms = {"RS256"};
  refused(w, "not allowed");
  w = v;
  w.keys_path = path("sign_rsa.jwks");
  refused(w, "no key with kid");
  w = v;
  w.decrypt_key_path = path("proxy_rsa.jwk");
  refused(w, "pii");

  // One byte of the payload changed.
  std::vector<std::string> parts = split(token);
  json payload = json::parse(b64urlDecode(parts[1]));
  payload["role"] = "admin";
  uint8_t* out = nullptr;
  size_t len = 0;
  cjose_err err{};
  std::string dumped = payload.dump();
  ASSERT_TRUE(cjose_base64url_encode(reinterpret_cast<const uint8_t*>(dumped.data()), dumped.size(),
                                     reinterpret_cast<char**>(&out), &len, &err));
  w = v;
  w.token = parts[0] + "." + std::string(reinterpret_cast<char*>(out), len) + "." + parts[2];
  cjose_get_dealloc()(out);
  refused(w, "bad signature");
}

// --- interop with python3-jwcrypto ------------------------------------------------------------

class InteropTest : public TokenToolTest {
 protected:
  void SetUp() override {
    // `make test` installs python3-jwcrypto: without it the interop check must fail, not pass.
    ASSERT_TRUE(::access(kPython.c_str(), X_OK) == 0 &&
                run({kPython, "-c", "import jwcrypto"}).status == 0)
        << "needs python3-jwcrypto for " << kPython << " (make deps installs it)";
  }

  // Token minted by the script; empty on failure.
  static std::string pyIssue(const std::string& sign, const std::string& alg,
                             const std::string& proxy) {
    RunResult r = run({kPython,
                       kMint,
                       "issue",
                       "--issuer",
                       kIssuer,
                       "--audience",
                       "shop",
                       "--sign-key",
                       sign,
                       "--alg",
                       alg,
                       "--claims",
                       R"({"sub":"u1","role":"buyer"})",
                       "--sensitive",
                       kSensitive,
                       "--sensitive-claim",
                       "pii",
                       "--encrypt-to",
                       proxy,
                       "--ttl",
                       "300s"});
    EXPECT_EQ(r.status, 0);
    return trim(r.out);
  }

  // The claims the script verified and decrypted; nullopt when it refused.
  static std::optional<json> pyVerify(const std::string& token, const std::string& keys,
                                      const std::string& decrypt_key) {
    RunResult r = run({kPython, kMint, "verify", token, "--keys", keys, "--decrypt-key",
                       decrypt_key, "--issuer", kIssuer, "--audience", "shop"});
    if (r.status != 0) return std::nullopt;
    return json::parse(r.out);
  }

  static std::optional<json> cxxVerify(const std::string& token, const std::string& keys,
                                       const std::string& decrypt_key) {
    VerifyOptions v;
    v.token = token;
    v.keys_path = keys;
    v.decrypt_key_path = decrypt_key;
    v.issuer = kIssuer;
    v.audience = "shop";
    json claims;
    std::string error;
    if (!verify(v, claims, error)) {
      ADD_FAILURE() << error;
      return std::nullopt;
    }
    return claims;
  }

  // A public JWKS with the kid of `sign` but the key material of another pair of the same type.
  static std::string impostorJwks(const std::string& sign) {
    const std::string other = sign == "sign_ec" ? "proxy_ec" : "proxy_rsa";
    json jwks = json::parse(readFile(path(other + ".jwks")));
    jwks["keys"][0]["kid"] = "kid-" + sign;
    writeFile(path("impostor-" + sign + ".jwks"), jwks.dump());
    return path("impostor-" + sign + ".jwks");
  }

  static void expectClaims(const std::optional<json>& claims) {
    ASSERT_TRUE(claims);
    EXPECT_EQ((*claims)["sub"], "u1");
    EXPECT_EQ((*claims)["role"], "buyer");
    EXPECT_EQ((*claims)["iss"], kIssuer);
    EXPECT_EQ((*claims)["aud"], "shop");
    EXPECT_EQ((*claims)["exp"].get<std::int64_t>() - (*claims)["iat"].get<std::int64_t>(), 300);
    EXPECT_EQ((*claims)["nbf"], (*claims)["iat"]);
    EXPECT_EQ((*claims)["pii"], json::parse(kSensitive));
  }
};

struct InteropCase {
  const char* sign;
  const char* alg;
  const char* proxy;
};

class InteropAlgTest : public InteropTest, public ::testing::WithParamInterface<InteropCase> {};

// Keys from tessera's keygen; the script mints; tessera's code verifies and decrypts.
TEST_P(InteropAlgTest, TokensMintedByJwcryptoVerifyAndDecryptInTessera) {
  const InteropCase& c = GetParam();
  const std::string sign = c.sign, proxy = c.proxy;
  std::string token = pyIssue(path(sign + ".jwk"), c.alg, path(proxy + ".jwks"));
  ASSERT_EQ(split(token).size(), 3u) << token;
  EXPECT_EQ(json::parse(b64urlDecode(split(token)[0]))["alg"], c.alg);
  expectClaims(cxxVerify(token, path(sign + ".jwks"), path(proxy + ".jwk")));
  VerifyOptions v;
  v.token = token;
  v.keys_path = impostorJwks(sign);
  json claims;
  std::string error;
  EXPECT_FALSE(verify(v, claims, error));
  EXPECT_EQ(error, "bad signature");
  std::string report;
  ASSERT_TRUE(inspect({token, path(proxy + ".jwk")}, report, error)) << error;
  EXPECT_NE(report.find("110101199003077777"), std::string::npos);
}

// Keys from tessera's keygen; tessera mints; the script verifies and decrypts.
TEST_P(InteropAlgTest, TokensMintedByTesseraVerifyAndDecryptInJwcrypto) {
  const InteropCase& c = GetParam();
  IssueOptions o = issueOptions(c.sign, c.proxy);
  o.alg = c.alg;
  o.now = 0;  // the script checks exp against its own clock
  const std::string token = mustIssue(o);
  expectClaims(
      pyVerify(token, path(std::string(c.sign) + ".jwks"), path(std::string(c.proxy) + ".jwk")));
  // And it refuses them under another key of the same type and kid, so the check above means
  // something.
  EXPECT_FALSE(pyVerify(token, impostorJwks(c.sign), path(std::string(c.proxy) + ".jwk")));
}

INSTANTIATE_TEST_SUITE_P(Algs, InteropAlgTest,
                         ::testing::Values(InteropCase{"sign_ec", "ES256", "proxy_ec"},
                                           InteropCase{"sign_ec", "ES256", "proxy_rsa"},
                                           InteropCase{"sign_rsa", "RS256", "proxy_rsa"},
                                           InteropCase{"sign_rsa", "PS256", "proxy_ec"}));

// Keys made by the script serve tessera both ways, and keys from either side mix.
TEST_F(InteropTest, KeysFromJwcryptoWorkInTesseraAndBack) {
  for (const char* type : {"ec", "rsa"}) {
    const std::string t = type;
    RunResult r = run({kPython, kMint, "keygen", "--type", t, "--private", path("py_" + t + ".jwk"),
                       "--public", path("py_" + t + ".jwks")});
    ASSERT_EQ(r.status, 0);
    EXPECT_EQ(fileMode(path("py_" + t + ".jwk")), 0600u);
    EXPECT_EQ(fileMode(path("py_" + t + ".jwks")), 0644u);
    // The script refuses to overwrite, like tessera.
    EXPECT_NE(run({kPython, kMint, "keygen", "--type", t, "--private", path("py_" + t + ".jwk"),
                   "--public", path("py_" + t + ".other")})
                  .status,
              0);
  }
  // tessera signs with a jwcrypto key and encrypts to a jwcrypto key; the script reads it.
  IssueOptions o = issueOptions("sign_ec", "proxy_ec");
  o.now = 0;
  o.sign_key_path = path("py_rsa.jwk");
  o.alg = "PS256";
  o.encrypt_to_path = path("py_ec.jwks");
  expectClaims(pyVerify(mustIssue(o), path("py_rsa.jwks"), path("py_ec.jwk")));
  o.sign_key_path = path("py_ec.jwk");
  o.alg = "";
  o.encrypt_to_path = path("py_rsa.jwks");
  const std::string token = mustIssue(o);
  expectClaims(pyVerify(token, path("py_ec.jwks"), path("py_rsa.jwk")));
  expectClaims(cxxVerify(token, path("py_ec.jwks"), path("py_rsa.jwk")));

  // The script signs with a jwcrypto key and encrypts to a tessera key, and the reverse.
  expectClaims(cxxVerify(pyIssue(path("py_ec.jwk"), "ES256", path("proxy_rsa.jwks")),
                         path("py_ec.jwks"), path("proxy_rsa.jwk")));
  expectClaims(cxxVerify(pyIssue(path("sign_rsa.jwk"), "RS256", path("py_ec.jwks")),
                         path("sign_rsa.jwks"), path("py_ec.jwk")));
}

}  // namespace
}  // namespace tessera::plugins::jwt_tool
