#include "cache/sealer.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace tessera::cache {
namespace {

constexpr size_t kHeaderFixedBytes = 2;  // version, key-id length
// EVP_CipherUpdate counts in int.
constexpr size_t kMaxChunk = static_cast<size_t>(std::numeric_limits<int>::max());

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

struct UniqueFd {
  int fd;
  ~UniqueFd() {
    if (fd >= 0) ::close(fd);
  }
};

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// The OpenSSL error queue as one line; drains it. Start-up paths only: the data path clears the
// queue instead, without formatting.
std::string drainErrors() {
  std::string out;
  char buf[256];
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

void cleanse(std::vector<SealKey>& keys) {
  for (SealKey& k : keys) OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
}

// Clears key bytes that never made it into a Sealer (a failed fromFiles).
struct KeysCleanser {
  std::vector<SealKey>& keys;
  ~KeysCleanser() { cleanse(keys); }
};

std::string keyListProblem(const std::vector<SealKey>& keys) {
  if (keys.empty()) return "no seal keys";
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string& id = keys[i].id;
    if (id.empty() || id.size() > Sealer::kMaxKeyIdBytes) {
      return "seal key id \"" + id + "\" must be 1 to " + std::to_string(Sealer::kMaxKeyIdBytes) +
             " bytes, has " + std::to_string(id.size());
    }
    for (size_t j = 0; j < i; ++j) {
      if (keys[j].id == id) return "seal key id \"" + id + "\" is listed twice";
    }
  }
  return {};
}

bool addAad(EVP_CIPHER_CTX* ctx, std::string_view aad) {
  int n = 0;
  return EVP_CipherUpdate(ctx, nullptr, &n, bytes(aad), static_cast<int>(aad.size())) == 1 &&
         n == static_cast<int>(aad.size());
}

// One AES-256-GCM pass over `in` into `out` (same length), with associated data header ‖ aad.
// Sealing writes the tag to `tag`; opening makes OpenSSL check `tag` (in constant time).
//
// A context per call rather than a thread_local one: EVP_CIPHER_CTX_free cleanses the expanded key
// schedule when the call ends, so no key lingers in some thread's context after its Sealer is
// gone, and no thread-exit destructor can run after OPENSSL_cleanup at shutdown. The price, an
// allocation and a key expansion, measured at 0-200 ns per call against a thread_local context
// (bench/seal_bench.cc), within the noise of a seal (~1.5 us, mostly RAND_bytes) and far below a
// store round trip. EVP_CipherInit_ex2 with the pre-fetched cipher takes no global lock.
bool gcm(const EVP_CIPHER* cipher, const SealKey& key, const unsigned char* nonce,
         std::string_view header, std::string_view aad, std::string_view in, unsigned char* out,
         unsigned char* tag, bool seal) {
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  if (!ctx ||
      EVP_CipherInit_ex2(ctx.get(), cipher, key.bytes.data(), nonce, seal ? 1 : 0, nullptr) != 1) {
    return false;
  }
  if (!addAad(ctx.get(), header) || !addAad(ctx.get(), aad)) return false;
  int n = 0;
  const int in_len = static_cast<int>(in.size());
  if (EVP_CipherUpdate(ctx.get(), out, &n, bytes(in), in_len) != 1 || n != in_len) return false;
  if (!seal && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG,
                                   static_cast<int>(Sealer::kTagBytes), tag) != 1) {
    return false;
  }
  if (EVP_CipherFinal_ex(ctx.get(), out + n, &n) != 1 || n != 0) return false;
  return !seal || EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG,
                                      static_cast<int>(Sealer::kTagBytes), tag) == 1;
}

bool readKeyFile(const std::string& path, std::array<unsigned char, Sealer::kKeyBytes>& out,
                 std::string& error) {
  UniqueFd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  struct stat st;
  if (f.fd < 0 || ::fstat(f.fd, &st) != 0) {
    error = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  // Checked before reading so that a key path pointing at /dev/urandom or a FIFO cannot hang us.
  if (!S_ISREG(st.st_mode)) {
    error = path + ": must be a regular file holding exactly 32 bytes";
    return false;
  }
  if (st.st_size != static_cast<off_t>(out.size())) {
    error = path + ": must hold exactly 32 bytes, has " + std::to_string(st.st_size);
    return false;
  }
  size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(f.fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      error = path + ": cannot read: " + std::strerror(errno);
      return false;
    }
    if (r == 0) {  // shrank since fstat
      error = path + ": must hold exactly 32 bytes, has " + std::to_string(got);
      return false;
    }
    got += static_cast<size_t>(r);
  }
  return true;
}

bool writeAll(int fd, const unsigned char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool writeNewFile(const std::string& path, const std::array<unsigned char, 32>& data,
                  std::string& error) {
  // O_EXCL also refuses a symlink planted at `path`, dangling or not.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = errno == EEXIST ? path + ": exists; remove it first"
                            : path + ": cannot create: " + std::strerror(errno);
    return false;
  }
  const char* failed = nullptr;
  if (!writeAll(fd, data.data(), data.size())) {
    failed = "cannot write";
  } else if (::fsync(fd) != 0) {
    failed = "cannot fsync";
  }
  int saved = errno;
  if (::close(fd) != 0 && failed == nullptr) {
    failed = "cannot close";
    saved = errno;
  }
  if (failed == nullptr) return true;
  error = path + ": " + failed + ": " + std::strerror(saved);
  // A short key file would only fail later, at start-up; the file is ours (O_EXCL).
  ::unlink(path.c_str());
  return false;
}

}  // namespace

Sealer::Sealer(std::vector<SealKey> keys) : keys_(std::move(keys)) {
  // The destructor does not run when a constructor throws: clear the keys here.
  std::string problem = keyListProblem(keys_);
  if (!problem.empty()) {
    cleanse(keys_);
    throw std::invalid_argument(problem);
  }
  // Fetched once: an OpenSSL 3 fetch searches the provider store under a lock, which the data
  // path must not do per record.
  cipher_.reset(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
  if (!cipher_) {
    cleanse(keys_);
    throw std::runtime_error("cannot fetch AES-256-GCM: " + drainErrors());
  }
}

Sealer::~Sealer() { cleanse(keys_); }

std::unique_ptr<Sealer> Sealer::fromFiles(
    const std::vector<std::pair<std::string, std::string>>& id_and_path, std::string& error) {
  std::vector<SealKey> keys;
  KeysCleanser cleanser{keys};
  // Reserved so the vector never reallocates: a reallocation would leave uncleared key copies.
  keys.reserve(id_and_path.size());
  for (const auto& [id, path] : id_and_path) {
    keys.push_back(SealKey{id, {}});
    if (!readKeyFile(path, keys.back().bytes, error)) return nullptr;
  }
  try {
    return std::make_unique<Sealer>(std::move(keys));
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

std::unique_ptr<Sealer> Sealer::ephemeral() {
  std::vector<SealKey> keys(1);
  keys[0].id = "ephemeral";
  if (RAND_bytes(keys[0].bytes.data(), static_cast<int>(kKeyBytes)) != 1) {
    cleanse(keys);
    throw std::runtime_error("cannot generate the ephemeral seal key: " + drainErrors());
  }
  return std::make_unique<Sealer>(std::move(keys));
}

const SealKey* Sealer::findKey(std::string_view id) const {
  // A handful of keys at most, and ids are public: a plain scan and compare is right.
  for (const SealKey& k : keys_) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

std::string Sealer::seal(std::string_view aad, std::string_view plaintext) const {
  if (aad.size() > kMaxChunk || plaintext.size() > kMaxChunk) return {};
  const SealKey& key = keys_.front();
  const size_t header_len = kHeaderFixedBytes + key.id.size();
  std::string record(header_len + kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* p = reinterpret_cast<unsigned char*>(record.data());
  p[0] = kVersion;
  p[1] = static_cast<unsigned char>(key.id.size());
  std::memcpy(p + kHeaderFixedBytes, key.id.data(), key.id.size());
  unsigned char* nonce = p + header_len;
  unsigned char* ciphertext = nonce + kNonceBytes;
  unsigned char* tag = ciphertext + plaintext.size();
  if (RAND_bytes(nonce, static_cast<int>(kNonceBytes)) != 1 ||
      !gcm(cipher_.get(), key, nonce, std::string_view(record).substr(0, header_len), aad,
           plaintext, ciphertext, tag, /*seal=*/true)) {
    ERR_clear_error();  // the proxy's I/O paths rely on an empty queue
    return {};
  }
  return record;
}

std::optional<std::string> Sealer::open(std::string_view aad, std::string_view record) const {
  if (record.size() < kHeaderFixedBytes || static_cast<unsigned char>(record[0]) != kVersion) {
    return std::nullopt;
  }
  const size_t id_len = static_cast<unsigned char>(record[1]);
  const size_t header_len = kHeaderFixedBytes + id_len;
  if (id_len == 0 || id_len > kMaxKeyIdBytes ||
      record.size() < header_len + kNonceBytes + kTagBytes) {
    return std::nullopt;
  }
  const SealKey* key = findKey(record.substr(kHeaderFixedBytes, id_len));
  const size_t text_len = record.size() - header_len - kNonceBytes - kTagBytes;
  if (key == nullptr || text_len > kMaxChunk || aad.size() > kMaxChunk) return std::nullopt;

  const unsigned char* nonce = bytes(record) + header_len;
  std::string_view ciphertext = record.substr(header_len + kNonceBytes, text_len);
  std::array<unsigned char, kTagBytes> tag;  // a copy: OpenSSL's SET_TAG takes a non-const pointer
  std::memcpy(tag.data(), ciphertext.data() + text_len, kTagBytes);
  std::string plaintext(text_len, '\0');
  if (!gcm(cipher_.get(), *key, nonce, record.substr(0, header_len), aad, ciphertext,
           reinterpret_cast<unsigned char*>(plaintext.data()), tag.data(), /*seal=*/false)) {
    // With the right key but the wrong cache key, the buffer holds the real secret: clear it.
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    ERR_clear_error();
    return std::nullopt;
  }
  return plaintext;
}

bool writeSealKeyFile(const std::string& path, std::string& error) {
  std::array<unsigned char, Sealer::kKeyBytes> key;
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    error = path + ": cannot generate a key: " + drainErrors();
    return false;
  }
  bool ok = writeNewFile(path, key, error);
  OPENSSL_cleanse(key.data(), key.size());
  return ok;
}

}  // namespace tessera::cache
