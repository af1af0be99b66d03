#include "plugins/jwt/token_tool.h"

#include <cjose/cjose.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include "plugins/cjose_handles.h"

namespace tessera::plugins::jwt_tool {
namespace {

using nlohmann::json;

struct JanssonFree {
  void operator()(json_t* p) const { json_decref(p); }
};
using JanssonPtr = std::unique_ptr<json_t, JanssonFree>;

constexpr std::size_t kMaxKeyFileBytes = 1 << 20;
constexpr std::int64_t kMaxTtlSeconds = 400LL * 24 * 60 * 60;
constexpr std::size_t kMaxKidBytes = 128;
constexpr std::size_t kRsaBits = 2048;

// Registered claims that `issue` sets from its own options, each with the option that sets it.
constexpr std::array<std::pair<std::string_view, std::string_view>, 5> kReservedClaims{{
    {"iss", "--issuer"},
    {"aud", "--audience"},
    {"iat", "the clock"},
    {"nbf", "the clock"},
    {"exp", "--ttl"},
}};

std::string cjoseMessage(const cjose_err& err) {
  std::string msg = err.message != nullptr ? err.message : "unknown error";
  // cjose's own messages are generic ("crypto error"); OpenSSL's last reason says which step
  // failed. Clearing the queue keeps it from being blamed on a later, unrelated call.
  if (unsigned long code = ERR_peek_last_error(); code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    msg += std::string(" (") + buf + ")";
  }
  ERR_clear_error();
  return msg;
}

std::int64_t nowOr(std::int64_t now) { return now != 0 ? now : std::time(nullptr); }

// --- Keys ---------------------------------------------------------------------------------

struct Key {
  JwkPtr jwk;
  cjose_jwk_kty_t kty = CJOSE_JWK_KTY_OCT;
  std::string kid;
  bool is_private = false;
  std::size_t bits = 0;
  bool p256 = false;
};

std::string describe(const Key& key) {
  switch (key.kty) {
    case CJOSE_JWK_KTY_EC:
      return key.p256 ? "an EC P-256 key" : "an EC key on another curve than P-256";
    case CJOSE_JWK_KTY_RSA:
      return "an RSA " + std::to_string(key.bits) + "-bit key";
    default:
      return "a symmetric (oct) key";
  }
}

bool readKeyFile(const std::string& path, std::string& text, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad() || text.size() > kMaxKeyFileBytes) {
    OPENSSL_cleanse(text.data(), text.size());
    error = path + (in.bad() ? ": cannot read" : ": larger than 1 MiB; not a key file");
    return false;
  }
  return true;
}

// cjose derives an EC key's public point from "d" and ignores "x" and "y". A private JWK whose
// halves disagree would then sign tokens that its own public JWKS cannot verify.
bool ecPublicMatches(const Key& key, json_t* object, const std::string& where, std::string& error) {
  cjose_err err{};
  std::unique_ptr<char, CjoseFree> pub(cjose_jwk_to_json(key.jwk.get(), false, &err));
  JanssonPtr derived(pub ? json_loads(pub.get(), 0, nullptr) : nullptr);
  for (const char* name : {"x", "y"}) {
    if (!derived ||
        !json_equal(json_object_get(derived.get(), name), json_object_get(object, name))) {
      error = where + ": \"d\" does not match \"x\" and \"y\"; the private JWK is inconsistent";
      return false;
    }
  }
  return true;
}

bool importKey(json_t* object, const std::string& where, Key& key, std::string& error) {
  if (!json_is_object(object)) {
    error = where + ": not a JSON object";
    return false;
  }
  cjose_err err{};
  key.jwk.reset(cjose_jwk_import_json(object, &err));
  if (!key.jwk) {
    error = where + ": not a usable JWK: " + cjoseMessage(err);
    return false;
  }
  key.kty = cjose_jwk_get_kty(key.jwk.get(), &err);
  if (const char* kid = cjose_jwk_get_kid(key.jwk.get(), &err); kid != nullptr) key.kid = kid;
  // Every private JWK type (EC, RSA) carries "d"; a public one never does.
  key.is_private = json_object_get(object, "d") != nullptr;
  key.bits = cjose_jwk_get_keysize(key.jwk.get(), &err);
  if (key.kty == CJOSE_JWK_KTY_EC) {
    key.p256 = cjose_jwk_EC_get_curve(key.jwk.get(), &err) == CJOSE_JWK_EC_P_256;
  }
  return !key.is_private || key.kty != CJOSE_JWK_KTY_EC ||
         ecPublicMatches(key, object, where, error);
}

// `what` names the option the path came from, so that errors point at the command line.
bool loadKeys(const std::string& path, std::string_view what, std::vector<Key>& keys,
              std::string& error) {
  std::string where = std::string(what) + " " + path;
  std::string text;
  if (!readKeyFile(path, text, error)) {
    error = std::string(what) + " " + error;
    return false;
  }
  json_error_t jerr;
  JanssonPtr root(json_loadb(text.data(), text.size(), 0, &jerr));
  OPENSSL_cleanse(text.data(), text.size());
  if (!root) {
    // jansson's message quotes the input near the error, and the input may be a private key.
    error = where + ": not valid JSON (line " + std::to_string(jerr.line) + ", column " +
            std::to_string(jerr.column) + ")";
    return false;
  }
  json_t* list = json_is_object(root.get()) ? json_object_get(root.get(), "keys") : nullptr;
  if (list == nullptr) {
    keys.emplace_back();
    return importKey(root.get(), where, keys.back(), error);
  }
  if (!json_is_array(list) || json_array_size(list) == 0) {
    error = where + ": \"keys\" must be a non-empty array";
    return false;
  }
  for (std::size_t i = 0; i < json_array_size(list); ++i) {
    keys.emplace_back();
    std::string at = where + ": keys[" + std::to_string(i) + "]";
    if (!importKey(json_array_get(list, i), at, keys.back(), error)) return false;
  }
  return true;
}

bool loadFirstKey(const std::string& path, std::string_view what, Key& key, std::string& error) {
  std::vector<Key> keys;
  if (path.empty()) {
    error = std::string(what) + " is required";
    return false;
  }
  if (!loadKeys(path, what, keys, error)) return false;
  key = std::move(keys.front());
  return true;
}

bool isSigningAlg(std::string_view alg) { return alg == kEs256 || alg == kRs256 || alg == kPs256; }

// Empty when `key` can make and check `alg` signatures; otherwise why not.
std::string misfit(const Key& key, std::string_view alg) {
  if (alg == kEs256) {
    if (key.kty == CJOSE_JWK_KTY_EC && key.p256) return "";
    return "ES256 needs an EC P-256 key, not " + describe(key);
  }
  if (key.kty == CJOSE_JWK_KTY_RSA && key.bits >= kRsaBits) return "";
  return std::string(alg) + " needs an RSA key of 2048 bits or more, not " + describe(key);
}

// --- Key generation -----------------------------------------------------------------------

JwkPtr generateKey(const std::string& type, std::string& error) {
  cjose_err err{};
  JwkPtr jwk;
  if (type == "ec") {
    jwk.reset(cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err));
  } else if (type == "rsa") {
    // e = 65537, the only exponent other JOSE libraries all accept.
    static constexpr uint8_t kE[] = {0x01, 0x00, 0x01};
    jwk.reset(cjose_jwk_create_RSA_random(kRsaBits, kE, sizeof kE, &err));
  } else {
    error = "--type " + type + ": expected ec or rsa";
    return nullptr;
  }
  if (!jwk) error = "cannot generate a key: " + cjoseMessage(err);
  return jwk;
}

bool randomKid(std::string& kid, std::string& error) {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    error = "cannot generate a kid: " + cjoseMessage(cjose_err{});
    return false;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  kid.clear();
  for (unsigned char b : bytes) {
    kid += kHex[b >> 4];
    kid += kHex[b & 0xf];
  }
  return true;
}

bool validKid(std::string_view kid) {
  if (kid.empty() || kid.size() > kMaxKidBytes) return false;
  for (unsigned char c : kid) {
    if (c < 0x21 || c > 0x7e) return false;  // printable ASCII: it travels in headers and logs
  }
  return true;
}

// An open, newly created file that is removed again unless commit() succeeds.
class NewFile {
 public:
  NewFile() = default;
  NewFile(const NewFile&) = delete;
  NewFile& operator=(const NewFile&) = delete;
  ~NewFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_ && !path_.empty()) ::unlink(path_.c_str());
  }

  bool create(const std::string& path, mode_t mode, std::string& error) {
    // O_EXCL refuses to overwrite, and also refuses a symlink planted at `path`.
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd_ < 0) {
      error = errno == EEXIST ? path + ": exists; refusing to overwrite it"
                              : path + ": cannot create: " + std::strerror(errno);
      return false;
    }
    path_ = path;
    // The umask would otherwise decide, and a JWKS that only its owner can read is no use.
    if (::fchmod(fd_, mode) != 0) return fail("cannot set its mode", error);
    return true;
  }

  bool write(std::string_view data, std::string& error) {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail("cannot write", error);
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    if (::fsync(fd_) != 0) return fail("cannot fsync", error);
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return fail("cannot close", error);
    return true;
  }

  void commit() { committed_ = true; }

 private:
  bool fail(const char* what, std::string& error) {
    error = path_ + ": " + what + ": " + std::strerror(errno);
    return false;
  }

  int fd_ = -1;
  std::string path_;
  bool committed_ = false;
};

// The private JWK and the public JWKS, as file contents.
bool exportKeyPair(const cjose_jwk_t* jwk, std::string& private_json, std::string& public_json,
                   std::string& error) {
  cjose_err err{};
  std::unique_ptr<char, CjoseFree> priv(cjose_jwk_to_json(jwk, true, &err));
  std::unique_ptr<char, CjoseFree> pub(priv ? cjose_jwk_to_json(jwk, false, &err) : nullptr);
  if (!priv || !pub) {
    error = "cannot export the key: " + cjoseMessage(err);
    if (priv) OPENSSL_cleanse(priv.get(), std::strlen(priv.get()));
    return false;
  }
  private_json = std::string(priv.get()) + "\n";
  OPENSSL_cleanse(priv.get(), std::strlen(priv.get()));
  json jwks = {{"keys", json::array({json::parse(pub.get())})}};
  public_json = jwks.dump(2) + "\n";
  return true;
}

// --- Token pieces -------------------------------------------------------------------------

std::vector<std::string_view> splitDots(std::string_view s) {
  std::vector<std::string_view> parts;
  for (std::size_t dot; (dot = s.find('.')) != std::string_view::npos; s.remove_prefix(dot + 1)) {
    parts.push_back(s.substr(0, dot));
  }
  parts.push_back(s);
  return parts;
}

std::optional<std::string> base64urlDecode(std::string_view in) {
  cjose_err err{};
  uint8_t* out = nullptr;
  std::size_t len = 0;
  if (!cjose_base64url_decode(in.data(), in.size(), &out, &len, &err)) {
    ERR_clear_error();
    return std::nullopt;
  }
  std::unique_ptr<uint8_t, CjoseFree> owned(out);
  return std::string(reinterpret_cast<const char*>(out), len);
}

// A base64url segment holding a JSON object (a JOSE header or a JWT payload).
std::optional<json> decodeObject(std::string_view segment) {
  std::optional<std::string> text = base64urlDecode(segment);
  if (!text) return std::nullopt;
  json value = json::parse(*text, nullptr, false);
  if (!value.is_object()) return std::nullopt;
  return value;
}

std::string stringField(const json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// The protected header of a JWE compact string, or nullopt when `value` is not one.
std::optional<json> jweHeader(const json& value) {
  if (!value.is_string()) return std::nullopt;
  std::vector<std::string_view> parts = splitDots(value.get_ref<const std::string&>());
  if (parts.size() != 5) return std::nullopt;
  std::optional<json> header = decodeObject(parts[0]);
  if (!header || stringField(*header, "enc").empty()) return std::nullopt;
  return header;
}

bool parseObject(const std::string& text, std::string_view what, bool quote_input, json& out,
                 std::string& error) {
  try {
    out = json::parse(text);
  } catch (const json::parse_error& e) {
    // nlohmann's message quotes the input near the error: fine for public claims, not for the
    // sensitive ones.
    error =
        std::string(what) + ": not valid JSON" +
        (quote_input ? std::string(": ") + e.what() : " (at byte " + std::to_string(e.byte) + ")");
    return false;
  }
  if (!out.is_object()) {
    error = std::string(what) + ": must be a JSON object";
    return false;
  }
  return true;
}

bool setHeader(cjose_header_t* header, const char* name, const std::string& value,
               std::string& error) {
  cjose_err err{};
  if (cjose_header_set(header, name, value.c_str(), &err)) return true;
  error = std::string("cannot set the \"") + name + "\" header: " + cjoseMessage(err);
  return false;
}

// --- Encryption ---------------------------------------------------------------------------

bool encryptJwe(const Key& to, const std::string& plaintext, std::string& compact,
                std::string& error) {
  std::string alg;
  if (to.kty == CJOSE_JWK_KTY_EC) {
    alg = kEcdhEs;
  } else if (to.kty == CJOSE_JWK_KTY_RSA && to.bits >= kRsaBits) {
    alg = kRsaOaep;
  } else {
    error = "--encrypt-to: " + describe(to) + " cannot receive encrypted claims (EC, or RSA of " +
            "2048 bits or more)";
    return false;
  }
  cjose_err err{};
  HeaderPtr header(cjose_header_new(&err));
  if (!header) {
    error = "cannot make a JWE header: " + cjoseMessage(err);
    return false;
  }
  if (!setHeader(header.get(), CJOSE_HDR_ALG, alg, error) ||
      !setHeader(header.get(), CJOSE_HDR_ENC, std::string(kA256Gcm), error)) {
    return false;
  }
  // Without a kid the proxy has to try each of its decrypt keys; with one it picks directly.
  if (!to.kid.empty() && !setHeader(header.get(), CJOSE_HDR_KID, to.kid, error)) return false;
  JwePtr jwe(cjose_jwe_encrypt(to.jwk.get(), header.get(),
                               reinterpret_cast<const uint8_t*>(plaintext.data()), plaintext.size(),
                               &err));
  std::unique_ptr<char, CjoseFree> out(jwe ? cjose_jwe_export(jwe.get(), &err) : nullptr);
  if (!out) {
    error = "cannot encrypt to --encrypt-to: " + cjoseMessage(err);
    return false;
  }
  compact = out.get();
  return true;
}

// One attempt with one key. The JWE is imported afresh for each attempt: cjose keeps the
// unwrapped content key inside the object, and a failed attempt must not leave one behind.
bool tryDecrypt(const std::string& compact, const Key& key, json& value, std::string& error) {
  cjose_err err{};
  JwePtr jwe(cjose_jwe_import(compact.data(), compact.size(), &err));
  std::size_t len = 0;
  uint8_t* plain = jwe ? cjose_jwe_decrypt(jwe.get(), key.jwk.get(), &len, &err) : nullptr;
  if (plain == nullptr) {
    error = cjoseMessage(err);
    return false;
  }
  std::unique_ptr<uint8_t, CjoseFree> owned(plain);
  std::string text(reinterpret_cast<const char*>(plain), len);
  OPENSSL_cleanse(plain, len);
  value = json::parse(text, nullptr, false);
  if (value.is_discarded()) value = text;  // not JSON: shown as the string it is
  OPENSSL_cleanse(text.data(), text.size());
  return true;
}

bool decryptJwe(const std::string& compact, const std::vector<Key>& keys, json& value,
                std::string& error) {
  std::optional<json> header = jweHeader(json(compact));
  if (!header) {
    error = "not a JWE compact string";
    return false;
  }
  const std::string alg = stringField(*header, "alg");
  const std::string enc = stringField(*header, "enc");
  const std::string kid = stringField(*header, "kid");
  // Only what the jwt plugin accepts; RSA1_5 in particular is a padding oracle.
  if (alg != kEcdhEs && alg != kRsaOaep) {
    error = "JWE alg \"" + alg + "\" refused (ECDH-ES or RSA-OAEP)";
    return false;
  }
  if (enc != kA256Gcm) {
    error = "JWE enc \"" + enc + "\" refused (A256GCM)";
    return false;
  }
  cjose_jwk_kty_t want = alg == kEcdhEs ? CJOSE_JWK_KTY_EC : CJOSE_JWK_KTY_RSA;
  std::string last = "no private " + std::string(want == CJOSE_JWK_KTY_EC ? "EC" : "RSA") + " key" +
                     (kid.empty() ? "" : " with kid \"" + kid + "\"") + " in the key file";
  for (const Key& key : keys) {
    if (!kid.empty() && key.kid != kid) continue;
    if (key.kty != want || !key.is_private) continue;
    if (tryDecrypt(compact, key, value, last)) return true;
    last = "cannot decrypt (" + alg + ", kid \"" + kid + "\"): " + last;
  }
  error = last;
  return false;
}

// --- Signing ------------------------------------------------------------------------------

bool signJws(const Key& key, const std::string& alg, const std::string& payload, std::string& token,
             std::string& error) {
  cjose_err err{};
  HeaderPtr header(cjose_header_new(&err));
  if (!header) {
    error = "cannot make a JWS header: " + cjoseMessage(err);
    return false;
  }
  if (!setHeader(header.get(), CJOSE_HDR_ALG, alg, error) ||
      (!key.kid.empty() && !setHeader(header.get(), CJOSE_HDR_KID, key.kid, error)) ||
      !setHeader(header.get(), "typ", "JWT", error)) {
    return false;
  }
  JwsPtr jws(cjose_jws_sign(key.jwk.get(), header.get(),
                            reinterpret_cast<const uint8_t*>(payload.data()), payload.size(),
                            &err));
  const char* compact = nullptr;
  if (!jws || !cjose_jws_export(jws.get(), &compact, &err)) {
    error = "cannot sign: " + cjoseMessage(err);
    return false;
  }
  // cjose signs RSA with the CRT members (p, q, dp, dq, qi) and never checks them against "n": a
  // private JWK whose halves disagree would make tokens that fail at the proxy instead of here.
  if (!cjose_jws_verify(jws.get(), key.jwk.get(), &err)) {
    ERR_clear_error();
    error =
        "--sign-key: the signature does not verify with the key's own public part; the "
        "private JWK is inconsistent";
    return false;
  }
  token = compact;
  return true;
}

// --- issue --------------------------------------------------------------------------------

bool checkIssueOptions(const IssueOptions& o, std::int64_t& ttl, json& claims, std::string& error) {
  if (o.issuer.empty()) {
    error = "--issuer is required";
    return false;
  }
  if (o.audiences.empty()) {
    error = "--audience is required";
    return false;
  }
  for (const std::string& aud : o.audiences) {
    if (aud.empty()) {
      error = "--audience must not be empty";
      return false;
    }
  }
  if (!o.alg.empty() && !isSigningAlg(o.alg)) {
    error = "--alg " + o.alg + ": unsupported; expected ES256, RS256 or PS256";
    return false;
  }
  if (!parseTtl(o.ttl, ttl, error)) return false;
  if (!parseObject(o.claims_json, "--claims", true, claims, error)) return false;
  for (const auto& [name, source] : kReservedClaims) {
    if (claims.contains(name)) {
      error = "--claims: \"" + std::string(name) + "\" is set by " + std::string(source);
      return false;
    }
  }
  return true;
}

bool addSensitive(const IssueOptions& o, json& claims, std::string& error) {
  if (o.sensitive_json.empty()) {
    if (o.encrypt_to_path.empty()) return true;
    error = "--encrypt-to without --sensitive: there is nothing to encrypt";
    return false;
  }
  const std::string& name = o.sensitive_claim;
  if (name.empty() || claims.contains(name)) {
    error = "--sensitive-claim \"" + name + "\": " + (name.empty() ? "empty" : "also in --claims");
    return false;
  }
  for (const auto& reserved : kReservedClaims) {
    if (name == reserved.first) {
      error = "--sensitive-claim \"" + name + "\": a registered claim that issue sets itself";
      return false;
    }
  }
  if (o.encrypt_to_path.empty()) {
    error = "--sensitive needs --encrypt-to (the proxy's public key)";
    return false;
  }
  json sensitive;
  Key to;
  if (!parseObject(o.sensitive_json, "--sensitive", false, sensitive, error) ||
      !loadFirstKey(o.encrypt_to_path, "--encrypt-to", to, error)) {
    return false;
  }
  std::string plaintext = sensitive.dump();
  std::string compact;
  bool ok = encryptJwe(to, plaintext, compact, error);
  OPENSSL_cleanse(plaintext.data(), plaintext.size());
  if (ok) claims[name] = compact;
  return ok;
}

bool loadSigningKey(const IssueOptions& o, Key& key, std::string& alg, std::string& error) {
  if (!loadFirstKey(o.sign_key_path, "--sign-key", key, error)) return false;
  if (!key.is_private) {
    error = "--sign-key " + o.sign_key_path + ": a public key; signing needs the private JWK";
    return false;
  }
  alg = o.alg;
  if (alg.empty()) alg = key.kty == CJOSE_JWK_KTY_RSA ? kRs256 : kEs256;
  if (std::string why = misfit(key, alg); !why.empty()) {
    error = "--alg " + alg + " does not fit --sign-key " + o.sign_key_path + ": " + why;
    return false;
  }
  return true;
}

// --- inspect ------------------------------------------------------------------------------

std::string expiryLine(const json& claims, std::int64_t now) {
  auto it = claims.find("exp");
  if (it == claims.end() || !it->is_number_integer()) return "expires: never (no integer exp)\n";
  std::int64_t exp = it->get<std::int64_t>();
  std::time_t t = static_cast<std::time_t>(exp);
  std::tm tm{};
  char when[32] = "?";
  if (gmtime_r(&t, &tm) != nullptr) std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string rel = exp >= now ? "in " + std::to_string(exp - now) + " s"
                               : "expired " + std::to_string(now - exp) + " s ago";
  return std::string("expires: ") + when + " (" + rel + ")\n";
}

// Replaces each encrypted claim by its plaintext when `keys` is non-empty; returns the lines that
// say which claims were encrypted.
bool renderEncrypted(json& claims, const std::vector<Key>& keys, std::string& lines,
                     std::string& error) {
  std::string names;
  for (auto& [name, value] : claims.items()) {
    std::optional<json> header = jweHeader(value);
    if (!header) continue;
    if (keys.empty()) {
      names += (names.empty() ? "" : ", ") + name + " (" + stringField(*header, "alg") + " " +
               stringField(*header, "enc") + ", kid \"" + stringField(*header, "kid") + "\")";
      continue;
    }
    json plain;
    if (!decryptJwe(value.get<std::string>(), keys, plain, error)) {
      error = "claim \"" + name + "\": " + error;
      return false;
    }
    value = std::move(plain);
    names += (names.empty() ? "" : ", ") + name;
  }
  if (names.empty()) return true;
  lines = keys.empty() ? "encrypted claims: " + names + "; --decrypt-key shows them\n"
                       : "decrypted claims: " + names + "\n";
  return true;
}

std::string_view trimToken(std::string_view token) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!token.empty() && blank(token.front())) token.remove_prefix(1);
  while (!token.empty() && blank(token.back())) token.remove_suffix(1);
  if (token.substr(0, 7) == "Bearer ") token.remove_prefix(7);
  return token;
}

// --- verify -------------------------------------------------------------------------------

bool verifySignature(const std::string& token, const std::string& alg, const std::string& kid,
                     const std::vector<Key>& keys, std::string& error) {
  bool tried = false;
  cjose_err err{};
  for (const Key& key : keys) {
    if (!kid.empty() && key.kid != kid) continue;
    if (!misfit(key, alg).empty()) continue;
    tried = true;
    JwsPtr jws(cjose_jws_import(token.data(), token.size(), &err));
    if (!jws) {
      error = "not a JWS: " + cjoseMessage(err);
      return false;
    }
    if (cjose_jws_verify(jws.get(), key.jwk.get(), &err)) return true;
    ERR_clear_error();
  }
  error = !tried ? "no key" + (kid.empty() ? "" : " with kid \"" + kid + "\"") + " fits " + alg
                 : "bad signature";
  return false;
}

bool checkClaims(const VerifyOptions& o, const json& claims, std::string& error) {
  std::int64_t now = nowOr(o.now);
  auto exp = claims.find("exp");
  auto nbf = claims.find("nbf");
  if (exp == claims.end() || !exp->is_number_integer()) {
    error = "no integer exp";
  } else if (now > exp->get<std::int64_t>() + o.clock_skew) {
    error = "expired";
  } else if (nbf != claims.end() &&
             (!nbf->is_number_integer() || now + o.clock_skew < nbf->get<std::int64_t>())) {
    error = "not valid yet (nbf)";
  } else if (!o.issuer.empty() && stringField(claims, "iss") != o.issuer) {
    error = "wrong iss";
  } else if (!o.audience.empty()) {
    auto aud = claims.find("aud");
    bool match =
        aud != claims.end() &&
        ((aud->is_string() && *aud == o.audience) ||
         (aud->is_array() && std::find(aud->begin(), aud->end(), o.audience) != aud->end()));
    if (!match) error = "wrong aud";
  }
  return error.empty();
}

bool decryptClaims(const VerifyOptions& o, json& claims, std::string& error) {
  if (o.decrypt_key_path.empty()) return true;
  std::vector<Key> keys;
  if (!loadKeys(o.decrypt_key_path, "decrypt key", keys, error)) return false;
  for (const std::string& name : o.encrypted_claims) {
    auto it = claims.find(name);
    if (it == claims.end()) continue;
    json plain;
    if (!it->is_string() || !decryptJwe(it->get<std::string>(), keys, plain, error)) {
      error = "claim \"" + name + "\": " + (it->is_string() ? error : "not a JWE string");
      return false;
    }
    *it = std::move(plain);
  }
  return true;
}

}  // namespace

bool parseTtl(std::string_view text, std::int64_t& seconds, std::string& error) {
  std::string_view digits = text;
  std::int64_t unit = 1;
  if (!digits.empty() && std::isdigit(static_cast<unsigned char>(digits.back())) == 0) {
    switch (digits.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 60 * 60;
        break;
      case 'd':
        unit = 24 * 60 * 60;
        break;
      default:
        unit = 0;
        break;
    }
    digits.remove_suffix(1);
  }
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (unit == 0 || digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
      n <= 0 || n > kMaxTtlSeconds / unit) {
    error = "--ttl " + std::string(text) +
            ": expected a duration from 1s to 400d, like 300s, 5m, " + "1h or 300";
    return false;
  }
  seconds = n * unit;
  return true;
}

bool keygen(const KeygenOptions& options, std::string& kid, std::string& error) {
  if (options.private_path.empty() || options.public_path.empty()) {
    error = "--out and --public are both required";
    return false;
  }
  if (options.private_path == options.public_path) {
    error = "--out and --public name the same file";
    return false;
  }
  kid = options.kid;
  if (kid.empty() ? !randomKid(kid, error) : !validKid(kid)) {
    if (error.empty()) error = "--kid: 1 to 128 printable ASCII characters, no spaces";
    return false;
  }
  JwkPtr jwk = generateKey(options.type, error);
  cjose_err err{};
  if (!jwk) return false;
  if (!cjose_jwk_set_kid(jwk.get(), kid.data(), kid.size(), &err)) {
    error = "cannot set the kid: " + cjoseMessage(err);
    return false;
  }
  std::string private_json, public_json;
  if (!exportKeyPair(jwk.get(), private_json, public_json, error)) return false;
  // Both files are created before either is written, so a refusal leaves nothing behind.
  NewFile private_file, public_file;
  bool ok = private_file.create(options.private_path, 0600, error) &&
            public_file.create(options.public_path, 0644, error) &&
            private_file.write(private_json, error) && public_file.write(public_json, error);
  OPENSSL_cleanse(private_json.data(), private_json.size());
  if (!ok) return false;
  private_file.commit();
  public_file.commit();
  return true;
}

bool issue(const IssueOptions& options, std::string& token, std::string& error) {
  std::int64_t ttl = 0;
  json claims;
  Key key;
  std::string alg;
  if (!checkIssueOptions(options, ttl, claims, error) ||
      !loadSigningKey(options, key, alg, error) || !addSensitive(options, claims, error)) {
    return false;
  }
  const std::int64_t now = nowOr(options.now);
  claims["iss"] = options.issuer;
  claims["aud"] =
      options.audiences.size() == 1 ? json(options.audiences.front()) : json(options.audiences);
  claims["iat"] = now;
  claims["nbf"] = now;
  claims["exp"] = now + ttl;
  std::string payload;
  try {
    payload = claims.dump();
  } catch (const json::type_error&) {
    // Only the strings from the command line can get here unchecked.
    error = "--issuer and --audience must be valid UTF-8";
    return false;
  }
  return signJws(key, alg, payload, token, error);
}

bool inspect(const InspectOptions& options, std::string& report, std::string& error) {
  std::vector<std::string_view> parts = splitDots(trimToken(options.token));
  if (parts.size() == 5) {
    error = "a JWE (5 parts): whole-token encryption; inspect reads signed JWTs (3 parts)";
    return false;
  }
  std::optional<json> header = parts.size() == 3 ? decodeObject(parts[0]) : std::nullopt;
  std::optional<json> claims = header ? decodeObject(parts[1]) : std::nullopt;
  if (!claims) {
    error = parts.size() != 3 ? "not a JWT: expected 3 dot-separated parts"
            : header          ? "the payload is not a base64url JSON object"
                              : "the header is not a base64url JSON object";
    return false;
  }
  std::vector<Key> keys;
  std::string encrypted;
  if (!options.decrypt_key_path.empty() &&
      !loadKeys(options.decrypt_key_path, "--decrypt-key", keys, error)) {
    return false;
  }
  if (!renderEncrypted(*claims, keys, encrypted, error)) return false;
  report = "header:\n" + header->dump(2) + "\nclaims:\n" + claims->dump(2) + "\n" +
           expiryLine(*claims, nowOr(options.now)) + encrypted + "signature: not verified\n";
  return true;
}

bool verify(const VerifyOptions& options, json& claims, std::string& error) {
  const std::string token(trimToken(options.token));
  std::vector<std::string_view> parts = splitDots(token);
  std::optional<json> header = parts.size() == 3 ? decodeObject(parts[0]) : std::nullopt;
  if (!header) {
    error = "not a JWS compact token with a JSON header";
    return false;
  }
  // cjose takes the algorithm from the token, so the pin is enforced before cjose sees it.
  const std::string alg = stringField(*header, "alg");
  if (std::find(options.algorithms.begin(), options.algorithms.end(), alg) ==
          options.algorithms.end() ||
      !isSigningAlg(alg)) {
    error = "alg \"" + alg + "\" is not allowed";
    return false;
  }
  std::vector<Key> keys;
  if (!loadKeys(options.keys_path, "keys", keys, error) ||
      !verifySignature(token, alg, stringField(*header, "kid"), keys, error)) {
    return false;
  }
  std::optional<json> payload = decodeObject(parts[1]);
  if (!payload) {
    error = "the payload is not a JSON object";
    return false;
  }
  claims = std::move(*payload);
  return checkClaims(options, claims, error) && decryptClaims(options, claims, error);
}

}  // namespace tessera::plugins::jwt_tool
