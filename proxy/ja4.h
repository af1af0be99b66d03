#pragma once

// JA4 TLS client fingerprint (FoxIO, BSD 3-Clause part of JA4+ only), used to bind TLS sessions to
// the device that made them: a resumed or continued session whose ClientHello fingerprints
// differently from the one that created it most likely comes from another client stack.
//
// Spec: https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md
//
// Threading: pure functions; readClientHello only touches the SSL it is given, which the caller
// owns for the duration of its client_hello callback.

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
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

// Reads the ClientHello of a server-side SSL from inside a client_hello callback
// (SSL_CTX_set_client_hello_cb). Returns false if the hello is malformed (odd-length lists,
// lengths that overrun their extension), leaving `out` in an unspecified state.
//
// Limitation (OpenSSL 3.0): SSL_client_hello_get1_extensions_present() only reports extension
// types OpenSSL itself (or a registered custom extension) knows, so GREASE and unknown types such
// as ALPS (0x44cd) or ECH (0xfe0d) are missing from `extensions`. The fingerprint stays stable
// per client, which is what session binding needs, but for such clients it differs from JA4 that
// packet-capture tools compute.
bool readClientHello(SSL* ssl, ClientHelloInfo& out);

}  // namespace tessera::proxy
