#pragma once

// JA4 TLS client fingerprint (FoxIO, BSD 3-Clause part of JA4+ only), used to bind TLS sessions to
// the device that made them: a resumed or continued session whose ClientHello fingerprints
// differently from the one that created it most likely comes from another client stack.
//
// Spec: https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md
//
// Threading: pure functions; readClientHello and the capture only touch the SSL they are given,
// which the caller owns.

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::proxy {

// The parts of a ClientHello JA4 needs, in wire order (GREASE values included; ja4() drops them).
struct ClientHelloInfo {
  bool quic = false;                           // always false here ('t' = TCP)
  uint16_t legacy_version = 0;                 // ClientHello.legacy_version
  std::vector<uint16_t> supported_versions;    // extension 43, empty if absent
  std::vector<uint16_t> ciphers;               // cipher suites, wire order
  std::vector<uint16_t> extensions;            // extension types in wire order
  bool has_sni = false;                        // extension 0 present ('d' domain vs 'i' ip/none)
  std::vector<std::string> alpn;               // extension 16 protocol names, in order
  std::vector<uint16_t> signature_algorithms;  // extension 13, in wire order
};

// The JA4 fingerprint, e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1".
std::string ja4(const ClientHelloInfo& hello);

// Parses a ClientHello handshake message as it came on the wire: msg_type 1, a 24-bit length, then
// the body. Unlike readClientHello() it sees every extension, GREASE and types OpenSSL does not
// know included, so the fingerprint is the one packet-capture tools compute. False if malformed.
bool parseClientHello(std::string_view message, ClientHelloInfo& out);

// Keeps a copy of the first ClientHello message `ssl` receives in `*into`, through OpenSSL's
// message callback, which runs before the client_hello callback; an SSLv2-format hello is not
// kept. stopClientHelloCapture() removes the callback: until then OpenSSL calls it for every
// record, so remove it as soon as the hello is read, and before `*into` goes away.
void captureClientHello(SSL* ssl, std::string* into);
void stopClientHelloCapture(SSL* ssl);

// Reads the ClientHello of a server-side SSL from inside a client_hello callback
// (SSL_CTX_set_client_hello_cb). Returns false if the hello is malformed (odd-length lists,
// lengths that overrun their extension), leaving `out` in an unspecified state.
//
// Limitation (OpenSSL 3.0): SSL_client_hello_get1_extensions_present() only reports extension
// types OpenSSL itself (or a registered custom extension) knows, so GREASE and unknown types such
// as ALPS (0x44cd) or ECH (0xfe0d) are missing from `extensions`. tessera therefore parses the
// captured message (captureClientHello, parseClientHello) and uses this only for an SSLv2-format
// hello, which the capture does not keep.
bool readClientHello(SSL* ssl, ClientHelloInfo& out);

}  // namespace tessera::proxy
