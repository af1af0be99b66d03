#pragma once

// Record sealing: every value tessera writes to a store goes through Sealer::seal(), and every
// value it reads back through Sealer::open(). memcached has no authentication and the records hold
// TLS master secrets, so a record must be unreadable and unforgeable for whoever can reach the
// store, and must not be replayable under another cache key.
//
// Record format (all of it is what the store holds):
//
//   0x01 | u8 L | key id (L bytes, 1..32) | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)
//
// AES-256-GCM under the key named by the id, with a random nonce per record. The associated data
// is the header (0x01, L, key id) followed by the cache key the caller passes, so neither the key
// id nor the cache key can be swapped without failing the tag. The header is self-delimiting,
// which keeps "header ‖ cache key" unambiguous.
//
// Rotation: a Sealer holds a list of keys. The first one seals; every one of them opens. To rotate,
// deploy {new, old} everywhere, wait for the records sealed under old to expire, then drop old.
// Random 96-bit nonces stay safe for about 2^32 seals per key (NIST SP 800-38D); rotate well
// before that.
//
// Threading: a Sealer is immutable after construction. seal() and open() may be called
// concurrently from any number of threads; each call uses its own cipher context.
//
// OpenSSL error queue: seal() and open() leave the calling thread's error queue empty on failure,
// as the proxy's I/O paths expect (they call SSL_get_error without clearing the queue first).
// Failed opens are expected input (expired key, corrupt or forged record): count them, do not log
// each one.
//
// Key material: the Sealer clears its copies of the keys with OPENSSL_cleanse when destroyed.
// Copies the caller keeps (for instance the SealKeys it passed in) are the caller's to clear.
// Nothing here logs or prints key bytes.

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::cache {

struct SealKey {
  std::string id;                       // 1..32 bytes; written in clear into every record
  std::array<unsigned char, 32> bytes;  // AES-256 key
};

class Sealer {
 public:
  static constexpr unsigned char kVersion = 0x01;
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kMaxKeyIdBytes = 32;
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;

  // `keys` must be non-empty, with ids of 1..32 bytes and no id twice; the first key seals. Throws
  // std::invalid_argument if not, and std::runtime_error if OpenSSL has no AES-256-GCM (start-up
  // only: it never throws afterwards).
  explicit Sealer(std::vector<SealKey> keys);
  ~Sealer();

  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;

  // Keys read from files, in the given order (the first seals). Each file must hold exactly 32
  // raw bytes. On any problem returns nullptr and sets `error`, naming the file or the key id:
  //   "/etc/tessera/seal.key: cannot read: No such file or directory"
  //   "/etc/tessera/seal.key: must hold exactly 32 bytes, has 31"
  // Does not throw.
  static std::unique_ptr<Sealer> fromFiles(
      const std::vector<std::pair<std::string, std::string>>& id_and_path, std::string& error);

  // One random key with id "ephemeral", for the in-process MemoryStore when no keys are
  // configured: its records die with the process anyway. Throws std::runtime_error if the random
  // generator or OpenSSL fails (start-up only).
  static std::unique_ptr<Sealer> ephemeral();

  // The record for `plaintext` stored under cache key `aad`, sealed with the first key. Returns ""
  // (never a valid record) only if OpenSSL fails, or if `plaintext` or `aad` exceeds INT_MAX
  // bytes.
  std::string seal(std::string_view aad, std::string_view plaintext) const;

  // The plaintext of `record` if it was sealed by one of this Sealer's keys under cache key `aad`
  // and is intact. nullopt for anything else: short or truncated record, unknown version, unknown
  // key id, wrong cache key, any modified byte. The tag check is OpenSSL's (constant time).
  std::optional<std::string> open(std::string_view aad, std::string_view record) const;

  // The id new records are sealed with (not secret: it is in every record).
  const std::string& sealingKeyId() const { return keys_.front().id; }

 private:
  struct CipherFree {
    void operator()(EVP_CIPHER* c) const { EVP_CIPHER_free(c); }
  };

  const SealKey* findKey(std::string_view id) const;

  std::vector<SealKey> keys_;
  std::unique_ptr<EVP_CIPHER, CipherFree> cipher_;
};

// Writes 32 random bytes (RAND_bytes) to a new file at `path`, created with mode 0600, and fsyncs
// it. Refuses to overwrite: if `path` exists, returns false with error "PATH: exists; remove it
// first". On other failures returns false with `error` naming the path and the cause, and removes
// whatever it created.
bool writeSealKeyFile(const std::string& path, std::string& error);

}  // namespace tessera::cache
