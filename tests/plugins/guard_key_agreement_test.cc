// The guard plugin's key agreement and sealed replies (plugins/guard/key_agreement.h): agree()
// against a client side computed here by other OpenSSL paths, a fixed vector computed with
// WebCrypto as the browser SDK computes it, every refusal of a client key, sealed replies that
// open only untouched and under their own key and keyid, keyids, and concurrent use.

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "plugins/encoding.h"
#include "plugins/guard/key_agreement.h"

namespace tessera::plugins::guard {
namespace {

// --- The fixed vector ----------------------------------------------------------------------------
// Computed once with Node 20's WebCrypto, the calls client.js makes: each private key d is
// SHA-256 of a label ("tessera guard test vector: client" / "... server"), its x and y as
// exportKey('jwk') writes them; Z = deriveBits({name: 'ECDH', public: server}, client, 256);
// salt = digest('SHA-256', "s3cret-session"); K = deriveBits({name: 'HKDF', hash: 'SHA-256',
// salt, info: "tessera guard v1"}, Z, 256). kSealedVectorHex is the IV 00 01 .. 0b, then
// encrypt({name: 'AES-GCM', iv, additionalData: "kid-1"}, K, 'application/json\r\n{"ok":true}').
constexpr std::string_view kClientD = "_5846k13YVJghko3ycDSudZn3WvTvYE-Umy_BnxOq_Q";
constexpr std::string_view kClientX = "gEX7X_Y3kFZGG0K1FqKwuf2YLQPL8NBe41eA5wwM7MU";
constexpr std::string_view kClientY = "rdkjv8Yxt_TxdtI4L18RMqe6A-PeCTaqiZhMugrxXPg";
constexpr std::string_view kServerD = "k_I4Zjongy4rjwi8h3eCDsSH-egI5eem4zzbz7sbjlg";
constexpr std::string_view kServerX = "ePWbHEXLdLZmewIbpBKopfQEi7nYIKgm9BOESExhSu8";
constexpr std::string_view kServerY = "OcL-KoBJTpNsZLRsDhChkriyjhyiFDP5bGiNlGJ3nX8";
constexpr std::string_view kCookie = "s3cret-session";
constexpr std::string_view kZHex =
    "390c0fd8243a920ff0aab334a369e09bfc40af15c0f07ea7bab1396335ec4b95";
constexpr std::string_view kSaltHex =
    "6f8c447853807638e5919636df46765f78c176c61bc40df0437a0174dc489f94";
constexpr std::string_view kKHex =
    "565a6c68a45f9b6a2642979fc905fbdc945a5bfab2a651c5e211e64721fc0251";
constexpr std::string_view kSealedVectorHex =
    "000102030405060708090a0bdb1b17d4c7fe8e7d5c82918de032f3a8ab4b2efc2c18731b220fa9b5b358e79f"
    "b10a014e24ed7da6593b2bd37b";

// P-256's field prime.
constexpr std::string_view kPrimeHex =
    "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff";

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct BnFree {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

std::string fromHex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::string toHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// The test's own base64url, through EVP_EncodeBlock rather than the code under test.
std::string b64url(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

std::string b64urlDecode(std::string_view text) {
  std::string padded(text);
  for (char& c : padded) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (padded.size() % 4 != 0) padded.push_back('=');
  std::string out(padded.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(padded.data()),
                          static_cast<int>(padded.size()));
  if (n < 0) return {};
  out.resize(static_cast<size_t>(n) - (padded.size() - text.size()));
  return out;
}

std::string coordinate(const BIGNUM* bn) {
  std::string out(32, '\0');
  EXPECT_EQ(BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), 32), 32);
  return out;
}

// The client's side, written apart from the code under test: a key pair from EVP_PKEY_Q_keygen,
// the peer's key through EVP_PKEY_set1_encoded_public_key, HKDF through EVP_PKEY_HKDF.
struct ClientKey {
  PkeyPtr key;
  std::string x;  // base64url
  std::string y;
};

ClientKey makeClientKey() {
  ClientKey client{PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")), {}, {}};
  EXPECT_TRUE(client.key);
  BIGNUM* x = nullptr;
  BIGNUM* y = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(client.key.get(), OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
  EXPECT_EQ(EVP_PKEY_get_bn_param(client.key.get(), OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
  client.x = b64url(coordinate(x));
  client.y = b64url(coordinate(y));
  BN_free(x);
  BN_free(y);
  return client;
}

// `text` with the character at `pos` changed to `c` (a same-length change; GCC 12 warns falsely,
// -Wrestrict, on std::string::replace here).
std::string withCharAt(std::string text, size_t pos, char c) {
  text[pos] = c;
  return text;
}

// 0x04 || x || y from base64url coordinates. Appended rather than "\x04" + ...: GCC 12 warns
// falsely (-Wrestrict) on a literal plus a string.
std::string uncompressedPoint(std::string_view x, std::string_view y) {
  std::string point = "\x04";
  point += b64urlDecode(x);
  point += b64urlDecode(y);
  return point;
}

// A client private key from its JWK d (the vector's).
PkeyPtr clientKeyFromD(std::string_view d, std::string_view x, std::string_view y) {
  std::string priv = b64urlDecode(d);
  std::string point = uncompressedPoint(x, y);
  BnPtr bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(priv.data()), 32, nullptr));
  OSSL_PARAM_BLD* builder = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
  OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  OSSL_PARAM_BLD_push_BN(builder, OSSL_PKEY_PARAM_PRIV_KEY, bn.get());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(builder);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  EXPECT_EQ(EVP_PKEY_fromdata_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_KEYPAIR, params), 1);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(builder);
  return PkeyPtr(key);
}

std::string clientEcdh(EVP_PKEY* client, std::string_view server_x, std::string_view server_y) {
  std::string point = uncompressedPoint(server_x, server_y);
  PkeyPtr peer(EVP_PKEY_new());
  EXPECT_EQ(EVP_PKEY_copy_parameters(peer.get(), client), 1);
  EXPECT_EQ(EVP_PKEY_set1_encoded_public_key(
                peer.get(), reinterpret_cast<const unsigned char*>(point.data()), point.size()),
            1);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(client, nullptr));
  std::string z(32, '\0');
  size_t size = z.size();
  EXPECT_EQ(EVP_PKEY_derive_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_derive_set_peer(ctx.get(), peer.get()), 1);
  EXPECT_EQ(EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(z.data()), &size), 1);
  EXPECT_EQ(size, 32u);
  return z;
}

std::string clientHkdf(std::string_view z, std::string_view cookie) {
  unsigned char salt[32];
  unsigned int salt_size = 0;
  EXPECT_EQ(EVP_Digest(cookie.data(), cookie.size(), salt, &salt_size, EVP_sha256(), nullptr), 1);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  std::string k(32, '\0');
  size_t size = k.size();
  EXPECT_EQ(EVP_PKEY_derive_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), salt, static_cast<int>(salt_size)), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), reinterpret_cast<const unsigned char*>(z.data()),
                                       static_cast<int>(z.size())),
            1);
  EXPECT_EQ(EVP_PKEY_CTX_add1_hkdf_info(
                ctx.get(), reinterpret_cast<const unsigned char*>("tessera guard v1"), 16),
            1);
  EXPECT_EQ(EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(k.data()), &size), 1);
  return k;
}

class GuardKeyAgreementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    crypto_ = GuardCrypto::create(&error);
    ASSERT_TRUE(crypto_) << error;
    EXPECT_EQ(ERR_peek_error(), 0u);
  }
  void TearDown() override {
    // Every failure must leave the error queue empty.
    EXPECT_EQ(ERR_peek_error(), 0u);
  }

  std::unique_ptr<GuardCrypto> crypto_;
};

// --- Agreement -----------------------------------------------------------------------------------

TEST_F(GuardKeyAgreementTest, ClientDerivesTheSameKey) {
  for (int i = 0; i < 20; ++i) {
    ClientKey client = makeClientKey();
    std::optional<GuardCrypto::Agreement> agreement = crypto_->agree(client.x, client.y, kCookie);
    ASSERT_TRUE(agreement);
    ASSERT_EQ(agreement->key.size(), kGuardKeyBytes);
    EXPECT_EQ(agreement->server_x.size(), 43u);
    EXPECT_EQ(agreement->server_y.size(), 43u);
    std::string z = clientEcdh(client.key.get(), agreement->server_x, agreement->server_y);
    EXPECT_EQ(toHex(clientHkdf(z, kCookie)), toHex(agreement->key));
    // Another cookie value: another K from the same Z.
    EXPECT_NE(clientHkdf(z, "other-session"), agreement->key);
  }
}

TEST_F(GuardKeyAgreementTest, EachAgreementUsesAFreshServerKey) {
  ClientKey client = makeClientKey();
  std::optional<GuardCrypto::Agreement> first = crypto_->agree(client.x, client.y, kCookie);
  std::optional<GuardCrypto::Agreement> second = crypto_->agree(client.x, client.y, kCookie);
  ASSERT_TRUE(first && second);
  EXPECT_NE(first->server_x, second->server_x);
  EXPECT_NE(first->key, second->key);
}

TEST_F(GuardKeyAgreementTest, WebCryptoVector) {
  EXPECT_EQ(toHex(crypto_->sha256(kCookie)), kSaltHex);
  // The test's client side against WebCrypto's Z and K.
  PkeyPtr client = clientKeyFromD(kClientD, kClientX, kClientY);
  ASSERT_TRUE(client);
  std::string z = clientEcdh(client.get(), kServerX, kServerY);
  EXPECT_EQ(toHex(z), kZHex);
  EXPECT_EQ(toHex(clientHkdf(z, kCookie)), kKHex);
  // The server side, through the code agree() runs.
  std::optional<GuardCrypto::Agreement> agreement = crypto_->agreeWithServerKeyForTesting(
      {kServerD, kServerX, kServerY}, kClientX, kClientY, kCookie);
  ASSERT_TRUE(agreement);
  EXPECT_EQ(toHex(agreement->key), kKHex);
  EXPECT_EQ(agreement->server_x, kServerX);
  EXPECT_EQ(agreement->server_y, kServerY);
  // Another cookie value, another K.
  agreement = crypto_->agreeWithServerKeyForTesting({kServerD, kServerX, kServerY}, kClientX,
                                                    kClientY, "s3cret-session2");
  ASSERT_TRUE(agreement);
  EXPECT_NE(toHex(agreement->key), kKHex);
}

TEST_F(GuardKeyAgreementTest, TestingEntryRefusesAMismatchedServerKey) {
  // The client's public key with the server's d.
  EXPECT_FALSE(crypto_->agreeWithServerKeyForTesting({kServerD, kClientX, kClientY}, kClientX,
                                                     kClientY, kCookie));
  EXPECT_FALSE(
      crypto_->agreeWithServerKeyForTesting({"", kServerX, kServerY}, kClientX, kClientY, kCookie));
}

TEST_F(GuardKeyAgreementTest, OpensWhatWebCryptoSealed) {
  std::string key = fromHex(kKHex);
  std::optional<std::pair<std::string, std::string>> opened =
      crypto_->openReply(key, "kid-1", fromHex(kSealedVectorHex));
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->first, "application/json");
  EXPECT_EQ(opened->second, R"({"ok":true})");
  // The same layout out of sealReply: IV, then ciphertext and tag of the same lengths.
  std::string sealed = crypto_->sealReply(key, "kid-1", "application/json", R"({"ok":true})");
  EXPECT_EQ(sealed.size(), fromHex(kSealedVectorHex).size());
}

// --- Refused client keys -------------------------------------------------------------------------

// The same 32 bytes as `text` encodes, with an unused low bit of its last character set.
std::string withUnusedBitsSet(std::string text) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t value = kAlphabet.find(text.back());
  text.back() = kAlphabet[value | 1];
  return text;
}

// A point on the curve whose x is small: then x + p still fits in 32 bytes, an encoding of the
// same point that is not reduced modulo p.
std::pair<std::string, std::string> unreducedPoint() {
  std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)> group(
      EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1), EC_GROUP_free);
  std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)> point(EC_POINT_new(group.get()),
                                                            EC_POINT_free);
  BnPtr x(BN_new());
  BnPtr y(BN_new());
  for (BN_ULONG candidate = 1; candidate < 100; ++candidate) {
    BN_set_word(x.get(), candidate);
    if (EC_POINT_set_compressed_coordinates(group.get(), point.get(), x.get(), 0, nullptr) == 1) {
      EC_POINT_get_affine_coordinates(group.get(), point.get(), nullptr, y.get(), nullptr);
      BIGNUM* prime = nullptr;
      BN_hex2bn(&prime, std::string(kPrimeHex).c_str());
      BN_add(x.get(), x.get(), prime);
      BN_free(prime);
      return {coordinate(x.get()), coordinate(y.get())};
    }
    ERR_clear_error();
  }
  ADD_FAILURE() << "no point with a small x";
  return {};
}

TEST_F(GuardKeyAgreementTest, RefusesMalformedClientKeys) {
  ClientKey client = makeClientKey();
  ASSERT_TRUE(crypto_->agree(client.x, client.y, kCookie));  // the control
  const std::string zero(32, '\0');
  const std::string one = std::string(31, '\0') + "\x01";
  const std::string prime = fromHex(kPrimeHex);
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"", ""},
      {client.x, ""},
      {"", client.y},
      {client.x + "=", client.y},                   // padding
      {client.x, client.y + "="},                   //
      {withCharAt(client.x, 0, '+'), client.y},     // base64, not base64url
      {withCharAt(client.x, 5, '/'), client.y},     //
      {withCharAt(client.x, 5, ' '), client.y},     //
      {withCharAt(client.x, 5, '\xc3'), client.y},  //
      {withCharAt(client.x, 5, '\0'), client.y},
      {client.x.substr(0, 42), client.y},                                      // 31 bytes
      {b64url(std::string(31, '\x07')), client.y},                             //
      {b64url(std::string(33, '\x07')), client.y},                             // 33 bytes
      {client.x, b64url(std::string("\x01").append(b64urlDecode(client.y)))},  // 33, y left-padded
      {withUnusedBitsSet(client.x), client.y},                                 // not canonical
      {client.x, withUnusedBitsSet(client.y)},                                 //
      {b64url(one), b64url(one)},                                              // off the curve
      {b64url(zero), b64url(zero)},                                            // no point at all
      {b64url(zero), client.y},                                                //
      {client.x, b64url(zero)},                                                //
      {client.y, client.x},                                                    //
      {b64url(prime), b64url(zero)},                                           // x = p
      {b64url(std::string(32, '\xff')), b64url(std::string(32, '\xff'))},
  };
  for (const auto& [x, y] : refused) {
    EXPECT_FALSE(crypto_->agree(x, y, kCookie)) << "x=" << x << " y=" << y;
    EXPECT_EQ(ERR_peek_error(), 0u);
  }
  // x + p for a point's x: the same point, not reduced. The reduced x is the control.
  auto [x, y] = unreducedPoint();
  ASSERT_EQ(x.size(), 32u);
  EXPECT_FALSE(crypto_->agree(b64url(x), b64url(y), kCookie));
  std::string reduced;
  {
    BnPtr unreduced(BN_bin2bn(reinterpret_cast<const unsigned char*>(x.data()), 32, nullptr));
    BnPtr p(BN_bin2bn(reinterpret_cast<const unsigned char*>(prime.data()), 32, nullptr));
    ASSERT_EQ(BN_sub(unreduced.get(), unreduced.get(), p.get()), 1);
    reduced = coordinate(unreduced.get());
  }
  EXPECT_TRUE(crypto_->agree(b64url(reduced), b64url(y), kCookie));
}

TEST_F(GuardKeyAgreementTest, RefusesRandomClientKeys) {
  std::mt19937 random(42);  // fixed: a failure replays
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 300; ++i) {
    std::string x(32, '\0');
    std::string y(32, '\0');
    for (char& c : x) c = static_cast<char>(byte(random));
    for (char& c : y) c = static_cast<char>(byte(random));
    // Right lengths, right alphabet: only the curve check refuses these.
    EXPECT_FALSE(crypto_->agree(b64url(x), b64url(y), kCookie));
    // Raw bytes of any length.
    std::string raw(static_cast<size_t>(byte(random) % 60), '\0');
    for (char& c : raw) c = static_cast<char>(byte(random));
    EXPECT_FALSE(crypto_->agree(raw, raw, kCookie));
  }
}

// --- Sealed replies ------------------------------------------------------------------------------

TEST_F(GuardKeyAgreementTest, SealedReplyRoundTrip) {
  std::string key = fromHex(kKHex);
  for (std::string body : {std::string(), std::string("{\"seats\":[\"A1\"]}"),
                           std::string("line\r\nline\r\n\r\n"), std::string(1 << 20, 'x')}) {
    std::string sealed = crypto_->sealReply(key, "kid-1", "application/json; charset=utf-8", body);
    ASSERT_EQ(sealed.size(), kSealIvBytes + 31 + 2 + body.size() + kSealTagBytes);
    std::optional<std::pair<std::string, std::string>> opened =
        crypto_->openReply(key, "kid-1", sealed);
    ASSERT_TRUE(opened);
    EXPECT_EQ(opened->first, "application/json; charset=utf-8");
    EXPECT_EQ(opened->second, body);
  }
  // An empty content type and an empty keyid are still well defined.
  std::optional<std::pair<std::string, std::string>> opened =
      crypto_->openReply(key, "", crypto_->sealReply(key, "", "", "body"));
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->first, "");
  EXPECT_EQ(opened->second, "body");
}

TEST_F(GuardKeyAgreementTest, SealedReplyOpensOnlyUntouched) {
  std::string key = fromHex(kKHex);
  std::string sealed = crypto_->sealReply(key, "kid-1", "text/plain", "two seats, row A");
  ASSERT_FALSE(sealed.empty());
  ASSERT_TRUE(crypto_->openReply(key, "kid-1", sealed));
  for (size_t i = 0; i < sealed.size(); ++i) {  // IV, ciphertext and tag alike
    std::string flipped = sealed;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    EXPECT_FALSE(crypto_->openReply(key, "kid-1", flipped)) << "byte " << i;
  }
  EXPECT_FALSE(crypto_->openReply(key, "kid-2", sealed));
  EXPECT_FALSE(crypto_->openReply(key, "", sealed));
  std::string other_key = key;
  other_key[0] = static_cast<char>(other_key[0] ^ 0x80);
  EXPECT_FALSE(crypto_->openReply(other_key, "kid-1", sealed));
  EXPECT_FALSE(crypto_->openReply(key.substr(0, 31), "kid-1", sealed));
  for (size_t size = 0; size < sealed.size(); ++size) {
    EXPECT_FALSE(crypto_->openReply(key, "kid-1", sealed.substr(0, size))) << "size " << size;
  }
  EXPECT_FALSE(crypto_->openReply(key, "kid-1", sealed + "x"));
}

TEST_F(GuardKeyAgreementTest, SealsOfOneBodyDiffer) {
  std::string key = fromHex(kKHex);
  std::string first = crypto_->sealReply(key, "kid-1", "text/plain", "same");
  std::string second = crypto_->sealReply(key, "kid-1", "text/plain", "same");
  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  EXPECT_NE(first.substr(0, kSealIvBytes), second.substr(0, kSealIvBytes));
  EXPECT_NE(first, second);
}

TEST_F(GuardKeyAgreementTest, SealRefusesWhatCannotBeOpened) {
  std::string key = fromHex(kKHex);
  EXPECT_EQ(crypto_->sealReply("", "kid-1", "text/plain", "x"), "");
  EXPECT_EQ(crypto_->sealReply(key + "x", "kid-1", "text/plain", "x"), "");
  EXPECT_EQ(crypto_->sealReply(key, "kid-1", "text/plain\r\nX-Evil: 1", "x"), "");
  EXPECT_EQ(crypto_->sealReply(key, "kid-1", "text/plain\n", "x"), "");
  EXPECT_EQ(crypto_->sealReply(key, "kid-1", "text/plain\r", "x"), "");
}

TEST_F(GuardKeyAgreementTest, OpenRefusesAPlaintextWithoutCrlf) {
  // A valid GCM message under the right key and keyid, but not a sealed reply.
  std::string key = fromHex(kKHex);
  std::string sealed = crypto_->sealReply(key, "kid-1", "text/plain", "body");
  ASSERT_TRUE(crypto_->openReply(key, "kid-1", sealed));
  std::string iv = std::string(kSealIvBytes, '\x01');
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  std::string ciphertext(4, '\0');
  std::string tag(kSealTagBytes, '\0');
  int n = 0;
  ASSERT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr,
                               reinterpret_cast<const unsigned char*>(key.data()),
                               reinterpret_cast<const unsigned char*>(iv.data())),
            1);
  ASSERT_EQ(EVP_EncryptUpdate(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>("kid-1"), 5),
            1);
  ASSERT_EQ(EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(ciphertext.data()), &n,
                              reinterpret_cast<const unsigned char*>("none"), 4),
            1);
  unsigned char final_block[16];
  ASSERT_EQ(EVP_EncryptFinal_ex(ctx, final_block, &n), 1);
  ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag.data()), 1);
  EVP_CIPHER_CTX_free(ctx);
  EXPECT_FALSE(crypto_->openReply(key, "kid-1", iv + ciphertext + tag));
}

// --- Tokens and digests --------------------------------------------------------------------------

TEST_F(GuardKeyAgreementTest, RandomTokens) {
  for (size_t bytes = 1; bytes <= 64; ++bytes) {
    std::string token = crypto_->randomToken(bytes);
    EXPECT_EQ(token.size(), (4 * bytes + 2) / 3) << bytes;
    EXPECT_EQ(
        token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        std::string::npos)
        << token;
    EXPECT_EQ(b64urlDecode(token).size(), bytes);
  }
  EXPECT_EQ(crypto_->randomToken(16).size(), 22u);
  EXPECT_NE(crypto_->randomToken(16), crypto_->randomToken(16));
  EXPECT_EQ(crypto_->randomToken(0), "");
  EXPECT_EQ(crypto_->randomToken(kMaxTokenBytes).size(), (4 * kMaxTokenBytes + 2) / 3);
  EXPECT_EQ(crypto_->randomToken(kMaxTokenBytes + 1), "");
}

TEST_F(GuardKeyAgreementTest, Sha256) {
  // FIPS 180-2, B.1.
  EXPECT_EQ(toHex(crypto_->sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(toHex(crypto_->sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// --- Threads -------------------------------------------------------------------------------------

TEST_F(GuardKeyAgreementTest, ConcurrentUse) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 50;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &failures] {
      for (int i = 0; i < kRounds; ++i) {
        ClientKey client = makeClientKey();
        std::optional<GuardCrypto::Agreement> agreement =
            crypto_->agree(client.x, client.y, kCookie);
        if (!agreement) {
          ++failures[t];
          continue;
        }
        std::string z = clientEcdh(client.key.get(), agreement->server_x, agreement->server_y);
        if (clientHkdf(z, kCookie) != agreement->key) ++failures[t];
        std::string keyid = crypto_->randomToken(12);
        std::string sealed = crypto_->sealReply(agreement->key, keyid, "text/plain", "hello");
        auto opened = crypto_->openReply(agreement->key, keyid, sealed);
        if (!opened || opened->second != "hello") ++failures[t];
        if (crypto_->agree("AAAA", "AAAA", kCookie)) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace tessera::plugins::guard
