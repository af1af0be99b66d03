#include "plugins/guard/key_agreement.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "plugins/encoding.h"

namespace tessera::plugins::guard {
namespace {

// An uncompressed SEC 1 point: 0x04 || x || y.
constexpr size_t kPointBytes = 1 + 2 * kP256CoordinateBytes;
constexpr unsigned char kUncompressed = 0x04;
// EVP_CipherUpdate counts in int: longer input goes in slices of this size.
constexpr size_t kMaxCipherSlice = size_t{1} << 30;

struct EvpPkeyCtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct EvpKdfCtxFree {
  void operator()(EVP_KDF_CTX* ctx) const { EVP_KDF_CTX_free(ctx); }
};
struct EvpCipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
struct EvpKeyexchFree {
  void operator()(EVP_KEYEXCH* exchange) const { EVP_KEYEXCH_free(exchange); }
};
struct OsslParamFree {
  void operator()(OSSL_PARAM* params) const { OSSL_PARAM_free(params); }
};
struct OsslParamBldFree {
  void operator()(OSSL_PARAM_BLD* builder) const { OSSL_PARAM_BLD_free(builder); }
};
struct BignumClearFree {
  void operator()(BIGNUM* bn) const { BN_clear_free(bn); }
};
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxFree>;
using EvpKdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, EvpKdfCtxFree>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, EvpCipherCtxFree>;

// Z, K and the like: cleared however the function holding them returns.
template <size_t N>
struct SecretBytes {
  std::array<unsigned char, N> bytes{};
  SecretBytes() = default;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
  unsigned char* data() { return bytes.data(); }
  const unsigned char* data() const { return bytes.data(); }
  static constexpr size_t size() { return N; }
};

// A failed call leaves OpenSSL's error queue filled; a stale entry would be misread by the next
// SSL_get_error() on this worker thread.
template <typename T>
T cleared(T value) {
  ERR_clear_error();
  return value;
}

// The OpenSSL error queue as one line; drains it. For create() only: the data path clears the
// queue instead, without formatting.
std::string drainErrors() {
  std::string out;
  char buffer[256];
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    ERR_error_string_n(e, buffer, sizeof(buffer));
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

const unsigned char* bytes(std::string_view text) {
  return reinterpret_cast<const unsigned char*>(text.data());
}

// Exactly `size` bytes, in their one canonical base64url spelling (encoding.h): a key then has a
// single spelling, and whatever is refused here never reaches OpenSSL.
bool base64UrlDecodeExact(std::string_view text, unsigned char* out, size_t size) {
  std::optional<std::string> decoded = base64urlDecode(text);
  bool fits = decoded && decoded->size() == size;
  if (fits) std::copy(decoded->begin(), decoded->end(), out);
  if (decoded) OPENSSL_cleanse(decoded->data(), decoded->size());
  return fits;
}

std::string base64UrlEncode(const unsigned char* data, size_t size) {
  return base64urlEncode(std::string_view(reinterpret_cast<const char*>(data), size));
}

// 0x04 || x || y from the JWK members.
bool decodePoint(std::string_view x, std::string_view y,
                 std::array<unsigned char, kPointBytes>& point) {
  point[0] = kUncompressed;
  return base64UrlDecodeExact(x, point.data() + 1, kP256CoordinateBytes) &&
         base64UrlDecodeExact(y, point.data() + 1 + kP256CoordinateBytes, kP256CoordinateBytes);
}

// --- OpenSSL steps -------------------------------------------------------------------------------

// The OSSL_PARAM API takes names as non-const char*, though it only reads them.
char* paramName(const char* name) { return const_cast<char*>(name); }

bool cipherUpdate(EVP_CIPHER_CTX* ctx, unsigned char* out, std::string_view in) {
  while (!in.empty()) {
    const size_t slice = std::min(in.size(), kMaxCipherSlice);
    int written = 0;
    if (EVP_CipherUpdate(ctx, out, &written, bytes(in), static_cast<int>(slice)) != 1 ||
        written != static_cast<int>(slice)) {
      return false;
    }
    in.remove_prefix(slice);
    if (out != nullptr) out += slice;  // null: additional data, nothing written
  }
  return true;
}

// Z: the x coordinate of server * client, 32 bytes (OpenSSL pads it to the field's size). The
// client key is checked already, hence no second check by EVP_PKEY_derive_set_peer_ex.
bool ecdh(EVP_PKEY* server, EVP_PKEY* client, SecretBytes<kP256CoordinateBytes>& z) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, server, nullptr));
  size_t size = z.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer_ex(ctx.get(), client, 0) != 1 ||
      EVP_PKEY_derive(ctx.get(), z.data(), &size) != 1 || size != z.size()) {
    return cleared(false);
  }
  return true;
}

// The server's public key as the JWK members x and y.
bool publicCoordinates(EVP_PKEY* key, std::string& x, std::string& y) {
  std::array<unsigned char, kPointBytes> point{};
  size_t size = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(),
                                      &size) != 1) {
    return cleared(false);
  }
  if (size != point.size() || point[0] != kUncompressed) return false;
  x = base64UrlEncode(point.data() + 1, kP256CoordinateBytes);
  y = base64UrlEncode(point.data() + 1 + kP256CoordinateBytes, kP256CoordinateBytes);
  return true;
}

}  // namespace

void GuardCrypto::EvpMdFree::operator()(EVP_MD* md) const { EVP_MD_free(md); }
void GuardCrypto::EvpKdfFree::operator()(EVP_KDF* kdf) const { EVP_KDF_free(kdf); }
void GuardCrypto::EvpCipherFree::operator()(EVP_CIPHER* cipher) const { EVP_CIPHER_free(cipher); }
void GuardCrypto::EvpPkeyFree::operator()(EVP_PKEY* pkey) const { EVP_PKEY_free(pkey); }

GuardCrypto::~GuardCrypto() = default;

std::unique_ptr<GuardCrypto> GuardCrypto::create(std::string* error) {
  auto fail = [error](const char* what) {
    std::string reasons = drainErrors();
    if (error != nullptr) *error = std::string(what) + ": " + reasons;
    return std::unique_ptr<GuardCrypto>();
  };
  std::unique_ptr<GuardCrypto> crypto(new GuardCrypto());
  // Fetched once: an OpenSSL 3 fetch searches the provider store under a lock, which the data
  // path must not do per reply.
  crypto->sha256_.reset(EVP_MD_fetch(nullptr, "SHA2-256", nullptr));
  if (!crypto->sha256_) return fail("cannot fetch SHA2-256");
  crypto->hkdf_.reset(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!crypto->hkdf_) return fail("cannot fetch HKDF");
  crypto->aes_gcm_.reset(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
  if (!crypto->aes_gcm_) return fail("cannot fetch AES-256-GCM");
  // agree() looks the exchange up by itself; this only makes sure that it will find one.
  if (!std::unique_ptr<EVP_KEYEXCH, EvpKeyexchFree>(EVP_KEYEXCH_fetch(nullptr, "ECDH", nullptr))) {
    return fail("cannot fetch ECDH");
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, paramName("P-256"), 0),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY* group = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &group, EVP_PKEY_KEY_PARAMETERS, params) != 1) {
    return fail("cannot make the P-256 group");
  }
  crypto->p256_.reset(group);
  // A provider may offer the group and still fail to make keys in it.
  if (!crypto->generateKey()) return fail("cannot make a P-256 key");
  return crypto;
}

GuardCrypto::EvpPkeyPtr GuardCrypto::importPublicKey(std::string_view x, std::string_view y) const {
  std::array<unsigned char, kPointBytes> point{};
  if (!decodePoint(x, y, point)) return nullptr;
  // A context from the template reuses its key management; one made by name would look it up.
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, p256_.get(), nullptr));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, paramName("P-256"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
      OSSL_PARAM_construct_end(),
  };
  EVP_PKEY* imported = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &imported, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return cleared(EvpPkeyPtr());
  }
  EvpPkeyPtr key(imported);
  // The import already refuses a coordinate not below the prime and a point off the curve; this
  // says so explicitly. The full check would add n * point == infinity, which P-256's cofactor
  // of 1 makes redundant.
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_public_check_quick(check.get()) != 1) return cleared(EvpPkeyPtr());
  return key;
}

GuardCrypto::EvpPkeyPtr GuardCrypto::importKeyPair(const ServerKeyForTesting& server) const {
  std::array<unsigned char, kPointBytes> point{};
  SecretBytes<kP256CoordinateBytes> d;
  if (!decodePoint(server.x, server.y, point) ||
      !base64UrlDecodeExact(server.d, d.data(), d.size())) {
    return nullptr;
  }
  std::unique_ptr<BIGNUM, BignumClearFree> private_key(BN_bin2bn(d.data(), d.size(), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, OsslParamBldFree> builder(OSSL_PARAM_BLD_new());
  if (!private_key || !builder ||
      OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_PRIV_KEY, private_key.get()) != 1) {
    return cleared(EvpPkeyPtr());
  }
  std::unique_ptr<OSSL_PARAM, OsslParamFree> params(OSSL_PARAM_BLD_to_param(builder.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, p256_.get(), nullptr));
  EVP_PKEY* imported = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &imported, EVP_PKEY_KEYPAIR, params.get()) != 1) {
    return cleared(EvpPkeyPtr());
  }
  EvpPkeyPtr key(imported);
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_pairwise_check(check.get()) != 1) return cleared(EvpPkeyPtr());
  return key;
}

GuardCrypto::EvpPkeyPtr GuardCrypto::generateKey() const {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, p256_.get(), nullptr));
  EVP_PKEY* generated = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_generate(ctx.get(), &generated) != 1) {
    return cleared(EvpPkeyPtr());
  }
  return EvpPkeyPtr(generated);
}

bool GuardCrypto::deriveKey(EVP_PKEY* server, EVP_PKEY* client,
                            std::string_view session_cookie_value, unsigned char* key) const {
  SecretBytes<kP256CoordinateBytes> z;
  if (!ecdh(server, client, z)) return false;
  std::array<unsigned char, EVP_MAX_MD_SIZE> salt{};
  unsigned int salt_size = 0;
  if (EVP_Digest(session_cookie_value.data(), session_cookie_value.size(), salt.data(), &salt_size,
                 sha256_.get(), nullptr) != 1) {
    return cleared(false);
  }
  // The digest goes by name: HKDF contexts cannot be copied in OpenSSL 3.0, so one set up at
  // create() could not serve several threads.
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, paramName("SHA2-256"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z.data(), z.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt.data(), salt_size),
      OSSL_PARAM_construct_octet_string(
          OSSL_KDF_PARAM_INFO, const_cast<char*>(kGuardHkdfInfo.data()), kGuardHkdfInfo.size()),
      OSSL_PARAM_construct_end(),
  };
  EvpKdfCtxPtr ctx(EVP_KDF_CTX_new(hkdf_.get()));
  if (!ctx || EVP_KDF_derive(ctx.get(), key, kGuardKeyBytes, params) != 1) return cleared(false);
  return true;
}

std::optional<GuardCrypto::Agreement> GuardCrypto::agreeWith(
    EVP_PKEY* server, EVP_PKEY* client, std::string_view session_cookie_value) const {
  SecretBytes<kGuardKeyBytes> key;
  Agreement agreement;
  if (!deriveKey(server, client, session_cookie_value, key.data()) ||
      !publicCoordinates(server, agreement.server_x, agreement.server_y)) {
    return std::nullopt;
  }
  agreement.key.assign(reinterpret_cast<const char*>(key.data()), key.size());
  return agreement;
}

std::optional<GuardCrypto::Agreement> GuardCrypto::agree(
    std::string_view client_x, std::string_view client_y,
    std::string_view session_cookie_value) const {
  // The client's key first: a refusal then costs no key generation.
  EvpPkeyPtr client = importPublicKey(client_x, client_y);
  if (!client) return std::nullopt;
  EvpPkeyPtr server = generateKey();
  if (!server) return std::nullopt;
  return agreeWith(server.get(), client.get(), session_cookie_value);
}

std::optional<GuardCrypto::Agreement> GuardCrypto::agreeWithServerKeyForTesting(
    const ServerKeyForTesting& server, std::string_view client_x, std::string_view client_y,
    std::string_view session_cookie_value) const {
  EvpPkeyPtr client = importPublicKey(client_x, client_y);
  EvpPkeyPtr server_key = importKeyPair(server);
  if (!client || !server_key) return std::nullopt;
  return agreeWith(server_key.get(), client.get(), session_cookie_value);
}

std::string GuardCrypto::sealReply(std::string_view key, std::string_view keyid,
                                   std::string_view content_type, std::string_view body) const {
  if (key.size() != kGuardKeyBytes ||
      content_type.find_first_of("\r\n") != std::string_view::npos) {
    return {};
  }
  const size_t plain_size = content_type.size() + 2 + body.size();
  std::string sealed(kSealIvBytes + plain_size + kSealTagBytes, '\0');
  auto* iv = reinterpret_cast<unsigned char*>(sealed.data());
  unsigned char* out = iv + kSealIvBytes;
  unsigned char* tag = out + plain_size;
  // A context per call: EVP_CIPHER_CTX_free clears the expanded key when the call ends.
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (RAND_bytes(iv, static_cast<int>(kSealIvBytes)) != 1 || !ctx ||
      EVP_EncryptInit_ex2(ctx.get(), aes_gcm_.get(), bytes(key), iv, nullptr) != 1 ||
      !cipherUpdate(ctx.get(), nullptr, keyid) || !cipherUpdate(ctx.get(), out, content_type) ||
      !cipherUpdate(ctx.get(), out + content_type.size(), "\r\n") ||
      !cipherUpdate(ctx.get(), out + content_type.size() + 2, body)) {
    return cleared(std::string());
  }
  int written = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), tag, &written) != 1 || written != 0 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kSealTagBytes), tag) !=
          1) {
    return cleared(std::string());
  }
  return sealed;
}

std::optional<std::pair<std::string, std::string>> GuardCrypto::openReply(
    std::string_view key, std::string_view keyid, std::string_view sealed) const {
  if (key.size() != kGuardKeyBytes || sealed.size() < kSealIvBytes + kSealTagBytes) {
    return std::nullopt;
  }
  std::string_view ciphertext =
      sealed.substr(kSealIvBytes, sealed.size() - kSealIvBytes - kSealTagBytes);
  std::array<unsigned char, kSealTagBytes> tag{};
  std::copy_n(bytes(sealed) + sealed.size() - kSealTagBytes, tag.size(), tag.begin());
  std::string plain(ciphertext.size(), '\0');
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  std::array<unsigned char, 16> final_block{};  // GCM writes nothing at the end
  int written = 0;
  if (!ctx ||
      EVP_DecryptInit_ex2(ctx.get(), aes_gcm_.get(), bytes(key), bytes(sealed), nullptr) != 1 ||
      !cipherUpdate(ctx.get(), nullptr, keyid) ||
      !cipherUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), ciphertext) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag.size()),
                          tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), final_block.data(), &written) != 1 || written != 0) {
    return cleared(std::nullopt);
  }
  size_t crlf = plain.find("\r\n");
  if (crlf == std::string::npos) return std::nullopt;
  std::string content_type = plain.substr(0, crlf);
  plain.erase(0, crlf + 2);
  return std::make_pair(std::move(content_type), std::move(plain));
}

std::string GuardCrypto::randomToken(size_t bytes) const {
  if (bytes == 0 || bytes > kMaxTokenBytes) return {};
  std::array<unsigned char, kMaxTokenBytes> random{};
  if (RAND_bytes(random.data(), static_cast<int>(bytes)) != 1) return cleared(std::string());
  return base64UrlEncode(random.data(), bytes);
}

std::string GuardCrypto::sha256(std::string_view data) const {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, sha256_.get(), nullptr) != 1) {
    return cleared(std::string());
  }
  return std::string(reinterpret_cast<const char*>(digest.data()), size);
}

}  // namespace tessera::plugins::guard
