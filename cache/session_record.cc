#include "cache/session_record.h"

#include <openssl/crypto.h>

#include <utility>

namespace tessera::cache {

SessionRecord::~SessionRecord() { OPENSSL_cleanse(der.data(), der.size()); }

SessionRecord& SessionRecord::operator=(const SessionRecord& other) {
  if (this == &other) return *this;
  OPENSSL_cleanse(der.data(), der.size());  // the old buffer may be freed by the copy
  der = other.der;
  fingerprint = other.fingerprint;
  created = other.created;
  expiry = other.expiry;
  return *this;
}

SessionRecord& SessionRecord::operator=(SessionRecord&& other) noexcept {
  if (this == &other) return *this;
  OPENSSL_cleanse(der.data(), der.size());  // the old buffer is freed by the move
  der = std::move(other.der);
  fingerprint = std::move(other.fingerprint);
  created = other.created;
  expiry = other.expiry;
  return *this;
}

namespace {

constexpr uint8_t kVersion = 1;
// A DER session is a few hundred bytes; anything far larger is not one of ours.
constexpr size_t kMaxDer = 64 * 1024;

void putInt(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool getInt(std::string_view& in, int bytes, uint64_t& v) {
  if (in.size() < static_cast<size_t>(bytes)) return false;
  v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  in.remove_prefix(static_cast<size_t>(bytes));
  return true;
}

bool getBytes(std::string_view& in, size_t n, std::string& out) {
  if (in.size() < n) return false;
  out.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

}  // namespace

std::string sessionKey(std::string_view session_id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "tls:";
  for (char c : session_id) {
    key.push_back(kHex[static_cast<uint8_t>(c) >> 4]);
    key.push_back(kHex[static_cast<uint8_t>(c) & 15]);
  }
  return key;
}

std::string encodeSessionRecord(const SessionRecord& r) {
  std::string out;
  out.reserve(1 + 4 + r.der.size() + 2 + r.fingerprint.size() + 16);
  out.push_back(static_cast<char>(kVersion));
  putInt(out, r.der.size(), 4);
  out += r.der;
  putInt(out, r.fingerprint.size(), 2);
  out += r.fingerprint;
  putInt(out, static_cast<uint64_t>(r.created), 8);
  putInt(out, static_cast<uint64_t>(r.expiry), 8);
  return out;
}

std::optional<SessionRecord> decodeSessionRecord(std::string_view in) {
  SessionRecord r;
  uint64_t version, der_len, fp_len, created, expiry;
  if (!getInt(in, 1, version) || version != kVersion) return std::nullopt;
  if (!getInt(in, 4, der_len) || der_len == 0 || der_len > kMaxDer) return std::nullopt;
  if (!getBytes(in, der_len, r.der)) return std::nullopt;
  if (!getInt(in, 2, fp_len) || !getBytes(in, fp_len, r.fingerprint)) return std::nullopt;
  if (!getInt(in, 8, created) || !getInt(in, 8, expiry) || !in.empty()) return std::nullopt;
  r.created = static_cast<int64_t>(created);
  r.expiry = static_cast<int64_t>(expiry);
  return r;
}

}  // namespace tessera::cache
