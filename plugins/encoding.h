#pragma once

// Base64 (RFC 4648) and hex for the plugins: JOSE segments and JWK members (base64url, unpadded),
// RFC 8941 Byte Sequences (base64, padded), store keys (hex).
//
// Hand-written rather than OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock: those know no base64url,
// always pad, and decode whitespace and non-canonical spellings. Here a token has exactly one
// accepted spelling (unpadded base64url whose unused low bits are zero), so that no one can respell
// a signed or single-use value and have it accepted as another.

#include <optional>
#include <string>
#include <string_view>

namespace tessera::plugins {

// base64url without padding (RFC 4648, 5; RFC 7515, 2).
std::string base64urlEncode(std::string_view bytes);
// The bytes of unpadded, canonical base64url; nullopt for any other character, padding, a length
// no encoding has, or unused low bits that are not zero.
std::optional<std::string> base64urlDecode(std::string_view text);
// Whether every character of `text` is in the base64url alphabet.
bool isBase64urlAlphabet(std::string_view text);
// Whether base64urlDecode() would accept `text` (without decoding it).
bool isCanonicalBase64url(std::string_view text);
// How many bytes a text that base64urlDecode() accepts decodes to.
size_t base64urlDecodedSize(std::string_view text);

// Standard base64 (RFC 4648, 4), with padding.
std::string base64Encode(std::string_view bytes);
// Standard base64 with or without its padding, and with any unused low bits, as RFC 8941, 4.2.7
// asks of Byte Sequences. nullopt for any character outside the alphabet, padding anywhere but at
// the end, or a length no encoding has.
std::optional<std::string> base64Decode(std::string_view text);

// Lower-case hex.
std::string hexEncode(std::string_view bytes);

// Percent-decoding as backends do it for paths and cookie values: every "%XX" (two hex digits,
// either case) decoded, in one pass; every other byte, '+' and a '%' without two hex digits after
// it included, kept as it is. Hand-written: libevent's evhttp_uridecode() decodes the same way,
// but plugins do not link libevent (they see the proxy only through plugin.h), and it wants a
// NUL-terminated copy.
std::string percentDecode(std::string_view text);

}  // namespace tessera::plugins
