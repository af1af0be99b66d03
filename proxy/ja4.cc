#include "proxy/ja4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string_view>
#include <utility>

// Section names below ("JA4 Algorithm", "TLS and DTLS Version", ...) refer to
// https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md

namespace tessera::proxy {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::string_view kEmptyHash = "000000000000";

constexpr uint16_t kExtServerName = 0x0000;
constexpr uint16_t kExtSignatureAlgorithms = 0x000d;
constexpr uint16_t kExtAlpn = 0x0010;
constexpr uint16_t kExtSupportedVersions = 0x002b;

// RFC 8701 reserves 0x?a?a with both bytes equal; "Details": GREASE is ignored everywhere.
bool isGrease(uint16_t v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

std::vector<uint16_t> withoutGrease(const std::vector<uint16_t>& values) {
  std::vector<uint16_t> out;
  out.reserve(values.size());
  for (uint16_t v : values) {
    if (!isGrease(v)) out.push_back(v);
  }
  return out;
}

// "TLS and DTLS Version": the highest non-GREASE supported_versions entry wins over
// legacy_version. A supported_versions holding only GREASE says nothing, so legacy_version is
// used then as well (the spec leaves that case open).
std::string_view versionCode(const ClientHelloInfo& hello) {
  uint16_t version = hello.legacy_version;
  std::vector<uint16_t> supported = withoutGrease(hello.supported_versions);
  if (!supported.empty()) version = *std::max_element(supported.begin(), supported.end());
  switch (version) {
    case 0x0304:
      return "13";
    case 0x0303:
      return "12";
    case 0x0302:
      return "11";
    case 0x0301:
      return "10";
    case 0x0300:
      return "s3";
    case 0x0002:
      return "s2";
    case 0xfeff:
      return "d1";
    case 0xfefd:
      return "d2";
    case 0xfefc:
      return "d3";
    default:
      return "00";
  }
}

// "Number of Ciphers" / "Number of Extensions": two decimal digits, capped at 99.
void appendCount(std::string& out, size_t n) {
  n = std::min<size_t>(n, 99);
  out.push_back(static_cast<char>('0' + n / 10));
  out.push_back(static_cast<char>('0' + n % 10));
}

bool isAsciiAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// "ALPN Extension Value": first and last character of the first protocol name; a one-character
// name supplies both. If either end byte is not ASCII alphanumeric, the first and last
// characters of the name's hex rendering are used instead, i.e. the high nibble of the first
// byte and the low nibble of the last.
void appendAlpn(std::string& out, const std::vector<std::string>& alpn) {
  if (alpn.empty() || alpn.front().empty()) {
    out += "00";
    return;
  }
  const auto first = static_cast<unsigned char>(alpn.front().front());
  const auto last = static_cast<unsigned char>(alpn.front().back());
  if (isAsciiAlnum(first) && isAsciiAlnum(last)) {
    out.push_back(static_cast<char>(first));
    out.push_back(static_cast<char>(last));
  } else {
    out.push_back(kHexDigits[first >> 4]);
    out.push_back(kHexDigits[last & 0x0f]);
  }
}

// Lower-case 4-digit hex values joined by commas, as every hashed JA4 list is written.
void appendHexList(std::string& out, const std::vector<uint16_t>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    const uint16_t v = values[i];
    out.push_back(kHexDigits[(v >> 12) & 0x0f]);
    out.push_back(kHexDigits[(v >> 8) & 0x0f]);
    out.push_back(kHexDigits[(v >> 4) & 0x0f]);
    out.push_back(kHexDigits[v & 0x0f]);
  }
}

// The first 12 lower-case hex characters of SHA-256(text).
std::string hash12(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &digest_len, EVP_sha256(), nullptr) != 1 ||
      digest_len < 6) {
    // Only reachable if no provider supplies SHA-256, when no TLS handshake could complete
    // either; a fixed marker keeps the fingerprint well-formed for logs.
    return "ffffffffffff";
  }
  std::string out;
  out.reserve(12);
  for (size_t i = 0; i < 6; ++i) {
    out.push_back(kHexDigits[digest[i] >> 4]);
    out.push_back(kHexDigits[digest[i] & 0x0f]);
  }
  return out;
}

// Big-endian reader over one extension body; every read fails once the data runs out.
class Reader {
 public:
  Reader(const unsigned char* data, size_t len) : data_(data), len_(len) {}
  size_t remaining() const { return len_ - pos_; }
  bool u8(size_t& v) {
    if (remaining() < 1) return false;
    v = data_[pos_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (remaining() < 2) return false;
    v = static_cast<uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool bytes(size_t n, std::string& v) {
    if (remaining() < n) return false;
    v.assign(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return true;
  }
  bool skip(size_t n) {
    if (remaining() < n) return false;
    pos_ += n;
    return true;
  }
  const unsigned char* here() const { return data_ + pos_; }

 private:
  const unsigned char* data_;
  size_t len_;
  size_t pos_ = 0;
};

// A whole extension body that is `prefix_len`-byte length, then that many bytes of uint16s.
bool readU16List(const unsigned char* data, size_t len, size_t prefix_len,
                 std::vector<uint16_t>& out) {
  Reader r(data, len);
  size_t list_len = 0;
  if (prefix_len == 1) {
    if (!r.u8(list_len)) return false;
  } else {
    uint16_t l = 0;
    if (!r.u16(l)) return false;
    list_len = l;
  }
  if (list_len != r.remaining() || list_len % 2 != 0) return false;
  while (r.remaining() > 0) {
    uint16_t v = 0;
    r.u16(v);
    out.push_back(v);
  }
  return true;
}

// RFC 7301 section 3.1: uint16 list length, then uint8-length-prefixed protocol names. Empty names
// are left for ja4() to render as "00" rather than rejected here; OpenSSL rejects them later.
bool readAlpn(const unsigned char* data, size_t len, std::vector<std::string>& out) {
  Reader r(data, len);
  uint16_t list_len = 0;
  if (!r.u16(list_len) || list_len != r.remaining()) return false;
  while (r.remaining() > 0) {
    size_t name_len = 0;
    std::string name;
    if (!r.u8(name_len) || !r.bytes(name_len, name)) return false;
    out.push_back(std::move(name));
  }
  return true;
}

struct OpensslFree {
  void operator()(int* p) const { OPENSSL_free(p); }
};

}  // namespace

// "JA4 Algorithm": a = protocol, version, SNI, cipher count, extension count, ALPN;
// b = hash of sorted ciphers; c = hash of sorted extensions (no SNI/ALPN) "_" signature
// algorithms in wire order.
std::string ja4(const ClientHelloInfo& hello) {
  std::vector<uint16_t> ciphers = withoutGrease(hello.ciphers);
  std::vector<uint16_t> extensions = withoutGrease(hello.extensions);
  const std::vector<uint16_t> sigalgs = withoutGrease(hello.signature_algorithms);

  std::string out;
  out.reserve(36);
  out.push_back(hello.quic ? 'q' : 't');
  out += versionCode(hello);
  out.push_back(hello.has_sni ? 'd' : 'i');
  // "Number of Ciphers": SCSVs and reserved values count; only GREASE is left out.
  appendCount(out, ciphers.size());
  // "Number of Extensions": SNI and ALPN count here although part c leaves them out.
  appendCount(out, extensions.size());
  appendAlpn(out, hello.alpn);

  // "Cipher hash": sorted in hex order; an empty list is all zeros rather than sha256("").
  out.push_back('_');
  if (ciphers.empty()) {
    out += kEmptyHash;
  } else {
    std::sort(ciphers.begin(), ciphers.end());
    std::string list;
    appendHexList(list, ciphers);
    out += hash12(list);
  }

  // "Extension hash": SNI and ALPN are already in part a, and leaving them out keeps part c the
  // same whether the client dialled a name or an IP, or changed its ALPN offer. Signature
  // algorithms keep wire order; with none, the underscore is omitted too.
  out.push_back('_');
  std::erase_if(extensions, [](uint16_t e) { return e == kExtServerName || e == kExtAlpn; });
  if (extensions.empty()) {
    out += kEmptyHash;
  } else {
    std::sort(extensions.begin(), extensions.end());
    std::string list;
    appendHexList(list, extensions);
    if (!sigalgs.empty()) {
      list.push_back('_');
      appendHexList(list, sigalgs);
    }
    out += hash12(list);
  }
  return out;
}

bool parseClientHello(std::string_view message, ClientHelloInfo& out) {
  out = ClientHelloInfo{};
  Reader r(reinterpret_cast<const unsigned char*>(message.data()), message.size());
  // RFC 8446 4: msg_type client_hello (1), a uint24 length, then the ClientHello (4.1.2).
  size_t type = 0, len_hi = 0;
  uint16_t len_lo = 0;
  if (!r.u8(type) || type != 1 || !r.u8(len_hi) || !r.u16(len_lo) ||
      ((len_hi << 16) | len_lo) != r.remaining()) {
    return false;
  }
  size_t session_id_len = 0, compression_len = 0;
  uint16_t ciphers_len = 0;
  if (!r.u16(out.legacy_version) || !r.skip(32) || !r.u8(session_id_len) || session_id_len > 32 ||
      !r.skip(session_id_len) || !r.u16(ciphers_len) || ciphers_len % 2 != 0 ||
      ciphers_len > r.remaining()) {
    return false;
  }
  for (size_t i = 0; i < ciphers_len; i += 2) {
    uint16_t c = 0;
    r.u16(c);
    out.ciphers.push_back(c);
  }
  if (!r.u8(compression_len) || compression_len == 0 || !r.skip(compression_len)) return false;
  if (r.remaining() == 0) return true;  // no extensions at all (a TLS 1.2-or-older client)
  uint16_t extensions_len = 0;
  if (!r.u16(extensions_len) || extensions_len != r.remaining()) return false;
  while (r.remaining() > 0) {
    uint16_t type16 = 0, len = 0;
    if (!r.u16(type16) || !r.u16(len) || len > r.remaining()) return false;
    const unsigned char* ext = r.here();
    r.skip(len);
    out.extensions.push_back(type16);
    if (type16 == kExtServerName) {
      out.has_sni = true;
    } else if (type16 == kExtSupportedVersions) {
      if (!readU16List(ext, len, 1, out.supported_versions)) return false;
    } else if (type16 == kExtAlpn) {
      if (!readAlpn(ext, len, out.alpn)) return false;
    } else if (type16 == kExtSignatureAlgorithms) {
      if (!readU16List(ext, len, 2, out.signature_algorithms)) return false;
    }
  }
  return true;
}

namespace {

// OpenSSL's message callback: runs for every record and message this SSL reads or writes, and
// for a handshake message it has read, before processing it (so before the client_hello
// callback). Keeps the first ClientHello.
void onMessage(int write_p, int, int content_type, const void* buf, size_t len, SSL*, void* arg) {
  auto* into = static_cast<std::string*>(arg);
  if (write_p != 0 || content_type != SSL3_RT_HANDSHAKE || len < 4 || into == nullptr ||
      !into->empty() || static_cast<const unsigned char*>(buf)[0] != SSL3_MT_CLIENT_HELLO) {
    return;
  }
  into->assign(static_cast<const char*>(buf), len);
}

}  // namespace

void captureClientHello(SSL* ssl, std::string* into) {
  SSL_set_msg_callback_arg(ssl, into);
  SSL_set_msg_callback(ssl, &onMessage);
}

void stopClientHelloCapture(SSL* ssl) {
  SSL_set_msg_callback(ssl, nullptr);
  SSL_set_msg_callback_arg(ssl, nullptr);
}

bool readClientHello(SSL* ssl, ClientHelloInfo& out) {
  out = ClientHelloInfo{};
  out.legacy_version = static_cast<uint16_t>(SSL_client_hello_get0_legacy_version(ssl));

  const unsigned char* ciphers = nullptr;
  const size_t ciphers_len = SSL_client_hello_get0_ciphers(ssl, &ciphers);
  if (SSL_client_hello_isv2(ssl)) {
    // An SSLv2-format hello lists 3-byte cipher specs; those with a zero first byte are the TLS
    // suites (RFC 5246 appendix E.2). SSLv2-only specs have no 16-bit code JA4 could list.
    if (ciphers_len % 3 != 0) return false;
    for (size_t i = 0; i < ciphers_len; i += 3) {
      if (ciphers[i] == 0) {
        out.ciphers.push_back(static_cast<uint16_t>((ciphers[i + 1] << 8) | ciphers[i + 2]));
      }
    }
  } else {
    if (ciphers_len % 2 != 0) return false;
    for (size_t i = 0; i < ciphers_len; i += 2) {
      out.ciphers.push_back(static_cast<uint16_t>((ciphers[i] << 8) | ciphers[i + 1]));
    }
  }

  // OpenSSL returns these sorted by the order received, i.e. wire order.
  int* present = nullptr;
  size_t present_len = 0;
  if (SSL_client_hello_get1_extensions_present(ssl, &present, &present_len) != 1) return false;
  std::unique_ptr<int, OpensslFree> present_owner(present);
  for (size_t i = 0; i < present_len; ++i) {
    out.extensions.push_back(static_cast<uint16_t>(present[i]));
  }

  const unsigned char* ext = nullptr;
  size_t ext_len = 0;
  out.has_sni = SSL_client_hello_get0_ext(ssl, kExtServerName, &ext, &ext_len) == 1;
  // RFC 8446 section 4.2.1: uint8 length, then uint16 versions.
  if (SSL_client_hello_get0_ext(ssl, kExtSupportedVersions, &ext, &ext_len) == 1 &&
      !readU16List(ext, ext_len, 1, out.supported_versions)) {
    return false;
  }
  if (SSL_client_hello_get0_ext(ssl, kExtAlpn, &ext, &ext_len) == 1 &&
      !readAlpn(ext, ext_len, out.alpn)) {
    return false;
  }
  // RFC 8446 section 4.2.3: uint16 length, then uint16 schemes.
  if (SSL_client_hello_get0_ext(ssl, kExtSignatureAlgorithms, &ext, &ext_len) == 1 &&
      !readU16List(ext, ext_len, 2, out.signature_algorithms)) {
    return false;
  }
  return true;
}

}  // namespace tessera::proxy
