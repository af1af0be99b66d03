#include "plugins/encoding.h"

#include <algorithm>
#include <cstdint>

namespace tessera::plugins {

namespace {

constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr char kStdAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The value of a base64 character in the alphabet whose last two are `c62` and `c63`; -1 if none.
int sextet(char c, char c62, char c63) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == c62) return 62;
  if (c == c63) return 63;
  return -1;
}

// Decodes the sextets of `text` (no padding left); nullopt on a character outside the alphabet or
// a length no encoding has. `canonical`: unused low bits must be zero.
std::optional<std::string> decode(std::string_view text, char c62, char c63, bool canonical) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int value = sextet(c, c62, c63);
    if (value < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  if (canonical && bits > 0 && (buffer & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

}  // namespace

std::string base64urlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : bytes) {
    buffer = (buffer << 8) | static_cast<uint8_t>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kUrlAlphabet[(buffer >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kUrlAlphabet[(buffer << (6 - bits)) & 63]);
  return out;
}

std::optional<std::string> base64urlDecode(std::string_view text) {
  return decode(text, '-', '_', true);
}

bool isBase64urlAlphabet(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return sextet(c, '-', '_') >= 0; });
}

bool isCanonicalBase64url(std::string_view text) {
  if (text.size() % 4 == 1 || !isBase64urlAlphabet(text)) return false;
  if (text.size() % 4 == 0) return true;
  int unused_bits = text.size() % 4 == 2 ? 4 : 2;
  return (sextet(text.back(), '-', '_') & ((1 << unused_bits) - 1)) == 0;
}

size_t base64urlDecodedSize(std::string_view text) {
  return text.size() / 4 * 3 + (text.size() % 4 == 0 ? 0 : text.size() % 4 - 1);
}

std::string base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    size_t rest = std::min<size_t>(3, bytes.size() - i);
    uint32_t n = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16;
    if (rest > 1) n |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8;
    if (rest > 2) n |= static_cast<uint8_t>(bytes[i + 2]);
    out.push_back(kStdAlphabet[(n >> 18) & 63]);
    out.push_back(kStdAlphabet[(n >> 12) & 63]);
    out.push_back(rest > 1 ? kStdAlphabet[(n >> 6) & 63] : '=');
    out.push_back(rest > 2 ? kStdAlphabet[n & 63] : '=');
  }
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  if (padding > 0 && text.size() % 4 != 0) return std::nullopt;
  text.remove_suffix(padding);
  return decode(text, '+', '/', false);
}

std::string hexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto byte = static_cast<unsigned char>(c);
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 15]);
  }
  return out;
}

std::string percentDecode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    int high = text[i] == '%' && i + 2 < text.size() ? hex(text[i + 1]) : -1;
    int low = high >= 0 ? hex(text[i + 2]) : -1;
    if (low >= 0) {
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace tessera::plugins
