// ja4() against the published JA4 vectors and the spec's edge cases, readClientHello on
// hand-built ClientHello bytes, and both together on live in-process OpenSSL handshakes.
//
// Spec: https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md

#include "proxy/ja4.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <regex>
#include <string>
#include <utility>
#include <vector>

namespace tessera::proxy {
namespace {

// ---------------------------------------------------------------------------------------------
// ja4()

// The spec's worked example ("Example" and "Raw Output" in JA4.md; the same inputs are the unit
// test in FoxIO's rust/ja4/src/tls.rs): ciphers, extensions and signature algorithms in the order
// the client sent them.
ClientHelloInfo specExample() {
  ClientHelloInfo h;
  h.legacy_version = 0x0303;
  h.supported_versions = {0x0304, 0x0303};
  h.ciphers = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9,
               0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035};
  h.extensions = {0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d,
                  0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015};
  h.has_sni = true;
  h.alpn = {"h2", "http/1.1"};
  h.signature_algorithms = {0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601};
  return h;
}

void removeValue(std::vector<uint16_t>& v, uint16_t value) { std::erase(v, value); }

TEST(Ja4Test, SpecExample) {
  EXPECT_EQ(ja4(specExample()), "t13d1516h2_8daaf6152771_e5627efa2ab1");
}

TEST(Ja4Test, SpecExampleWithoutSignatureAlgorithmsDropsTheUnderscore) {
  // "Extension hash": the extension list alone hashes to 6d807ffa2a79.
  ClientHelloInfo h = specExample();
  h.signature_algorithms.clear();
  EXPECT_EQ(ja4(h), "t13d1516h2_8daaf6152771_6d807ffa2a79");
}

// FoxIO's python/test/testdata/sigalg-grease.pcapng.json (a Chrome hello to
// optimizationguide-pa.googleapis.com): wire order from its JA4_ro, expected from its JA4. The
// GREASE that a real Chrome sends is put back in every list, since ja4() must drop it.
TEST(Ja4Test, PublishedChromeCaptureWithGrease) {
  ClientHelloInfo h;
  h.legacy_version = 0x0303;
  h.supported_versions = {0x3a3a, 0x0304, 0x0303};
  h.ciphers = {0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030,
               0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035};
  h.extensions = {0x4a4a, 0xfe0d, 0x0010, 0x0017, 0x0033, 0x44cd, 0xff01, 0x000a, 0x000d, 0x0023,
                  0x002b, 0x000b, 0xca34, 0x002d, 0x0000, 0x0005, 0x001b, 0x0012, 0xdada};
  h.has_sni = true;
  h.alpn = {"h2", "http/1.1"};
  h.signature_algorithms = {0x8a8a, 0x0904, 0x0905, 0x0906, 0x0403, 0x0804,
                            0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601};
  EXPECT_EQ(ja4(h), "t13d1517h2_8daaf6152771_cb7bf5808d99");
}

TEST(Ja4Test, GreaseIsIgnoredEverywhere) {
  ClientHelloInfo h = specExample();
  const std::string plain = ja4(h);
  const std::vector<uint16_t> grease = {0x0a0a, 0x1a1a, 0x2a2a, 0x3a3a, 0x4a4a, 0x5a5a,
                                        0x6a6a, 0x7a7a, 0x8a8a, 0x9a9a, 0xaaaa, 0xbaba,
                                        0xcaca, 0xdada, 0xeaea, 0xfafa};
  for (uint16_t g : grease) {
    h.ciphers.insert(h.ciphers.begin() + 3, g);
    h.extensions.push_back(g);
    h.signature_algorithms.insert(h.signature_algorithms.begin(), g);
    h.supported_versions.push_back(g);  // numerically above 0x0304, yet not a version
  }
  EXPECT_EQ(ja4(h), plain);
}

TEST(Ja4Test, NearGreaseValuesAreNotGrease) {
  // 0x0a1a and 0x0b0b fail the "both bytes equal, low nibble a" pattern and must be counted.
  ClientHelloInfo h = specExample();
  h.ciphers.push_back(0x0a1a);
  h.ciphers.push_back(0x0b0b);
  EXPECT_EQ(ja4(h).substr(0, 10), "t13d1716h2");
}

TEST(Ja4Test, NoSniIsIpAndLeavesExtensionHashAlone) {
  // "SNI": 'i'. SNI is not in the extension hash, so part c is the same as with SNI.
  ClientHelloInfo h = specExample();
  h.has_sni = false;
  removeValue(h.extensions, 0x0000);
  EXPECT_EQ(ja4(h), "t13i1515h2_8daaf6152771_e5627efa2ab1");
}

TEST(Ja4Test, NoAlpnIsDoubleZero) {
  ClientHelloInfo h = specExample();
  h.alpn.clear();
  removeValue(h.extensions, 0x0010);
  EXPECT_EQ(ja4(h), "t13d151500_8daaf6152771_e5627efa2ab1");
}

TEST(Ja4Test, TlsOnePointTwoOnly) {
  // No supported_versions, so legacy_version decides. Expected hashes computed with
  //   printf '%s' 009e,009f,c02b,c02c,c02f,c030 | sha256sum
  //   printf '%s' 000a,000b,000d,0016,0017,0023_0403,0503,0603,0804 | sha256sum
  ClientHelloInfo h;
  h.legacy_version = 0x0303;
  h.ciphers = {0xc02b, 0xc02f, 0xc02c, 0xc030, 0x009e, 0x009f};
  h.extensions = {0x0000, 0x000b, 0x000a, 0x0023, 0x0016, 0x0017, 0x000d};
  h.has_sni = true;
  h.signature_algorithms = {0x0403, 0x0503, 0x0603, 0x0804};
  EXPECT_EQ(ja4(h), "t12d060700_c18558ec87bf_451565b6eb5b");
}

std::string versionOf(uint16_t legacy, std::vector<uint16_t> supported = {}) {
  ClientHelloInfo h = specExample();
  h.legacy_version = legacy;
  h.supported_versions = std::move(supported);
  return ja4(h).substr(1, 2);
}

TEST(Ja4Test, Versions) {
  EXPECT_EQ(versionOf(0x0303, {0x0303, 0x0304}), "13");  // highest, not first
  EXPECT_EQ(versionOf(0x0303, {0x0303}), "12");          // extension beats legacy_version
  EXPECT_EQ(versionOf(0x0303, {0x2a2a}), "12");          // GREASE only: legacy_version
  EXPECT_EQ(versionOf(0x0304), "13");
  EXPECT_EQ(versionOf(0x0302), "11");
  EXPECT_EQ(versionOf(0x0301), "10");
  EXPECT_EQ(versionOf(0x0300), "s3");
  EXPECT_EQ(versionOf(0x0002), "s2");
  EXPECT_EQ(versionOf(0x0305), "00");
  EXPECT_EQ(versionOf(0x0000), "00");
}

TEST(Ja4Test, CountsAreCappedAtNinetyNine) {
  ClientHelloInfo h = specExample();
  for (uint16_t i = 0; i < 150; ++i) {
    h.ciphers.push_back(static_cast<uint16_t>(0xe000 + i));
    h.extensions.push_back(static_cast<uint16_t>(0xe000 + i));
  }
  EXPECT_EQ(ja4(h).substr(0, 10), "t13d9999h2");
}

TEST(Ja4Test, ScsvAndReservedCiphersCount) {
  // "Number of Ciphers": SCSVs (0x00ff, 0x5600) and 0xfe00-0xfeff count; they are not GREASE.
  ClientHelloInfo h = specExample();
  h.ciphers.push_back(0x00ff);
  h.ciphers.push_back(0x5600);
  h.ciphers.push_back(0xfe10);
  const std::string fp = ja4(h);
  EXPECT_EQ(fp.substr(0, 10), "t13d1816h2");
  EXPECT_NE(fp.substr(11, 12), "8daaf6152771");
}

TEST(Ja4Test, EmptyListsHashToZeros) {
  ClientHelloInfo h;
  h.legacy_version = 0x0303;
  EXPECT_EQ(ja4(h), "t12i000000_000000000000_000000000000");

  // Only SNI and ALPN: both are counted but leave nothing for the extension hash.
  h.extensions = {0x0000, 0x0010};
  h.has_sni = true;
  h.alpn = {"h2"};
  h.ciphers = {0x0a0a};  // GREASE only is as good as none
  EXPECT_EQ(ja4(h), "t12d0002h2_000000000000_000000000000");
}

TEST(Ja4Test, CipherAndExtensionOrderDoNotMatterButSignatureOrderDoes) {
  ClientHelloInfo h = specExample();
  const std::string base = ja4(h);
  std::reverse(h.ciphers.begin(), h.ciphers.end());
  std::reverse(h.extensions.begin(), h.extensions.end());
  EXPECT_EQ(ja4(h), base);
  std::reverse(h.signature_algorithms.begin(), h.signature_algorithms.end());
  EXPECT_EQ(ja4(h).substr(0, 24), base.substr(0, 24));
  EXPECT_NE(ja4(h).substr(24), base.substr(24));
}

std::string alpnOf(std::vector<std::string> alpn) {
  ClientHelloInfo h = specExample();
  h.alpn = std::move(alpn);
  return ja4(h).substr(8, 2);
}

TEST(Ja4Test, AlpnCharacters) {
  // "ALPN Extension Value", including each of its byte examples.
  EXPECT_EQ(alpnOf({"h2"}), "h2");
  EXPECT_EQ(alpnOf({"http/1.1", "h2"}), "h1");  // first value only
  EXPECT_EQ(alpnOf({"h3"}), "h3");
  EXPECT_EQ(alpnOf({"a"}), "aa");  // one character is both first and last
  EXPECT_EQ(alpnOf({""}), "00");   // empty first value
  EXPECT_EQ(alpnOf({}), "00");
  EXPECT_EQ(alpnOf({"\xab"}), "ab");
  EXPECT_EQ(alpnOf({"\xab\xcd"}), "ad");
  EXPECT_EQ(alpnOf({"\x30\xab"}), "3b");
  EXPECT_EQ(alpnOf({"\x30\x31\xab\xcd"}), "3d");
  EXPECT_EQ(alpnOf({"\x30\xab\xcd\x31"}), "01");
  EXPECT_EQ(alpnOf({"/x"}), "28");  // ASCII but not alphanumeric: hex "2f78", too
}

// ---------------------------------------------------------------------------------------------
// OpenSSL plumbing shared by the readClientHello tests

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// What the client_hello callback saw, one entry per ClientHello.
struct Seen {
  bool ok = false;
  ClientHelloInfo info;
  std::string fingerprint;
};

int recordHello(SSL* ssl, int* /*al*/, void* arg) {
  Seen seen;
  seen.ok = readClientHello(ssl, seen.info);
  if (seen.ok) seen.fingerprint = ja4(seen.info);
  static_cast<std::vector<Seen>*>(arg)->push_back(std::move(seen));
  return SSL_CLIENT_HELLO_SUCCESS;
}

// A server context with a fresh self-signed P-256 certificate that records every ClientHello.
SslCtxPtr serverContext(std::vector<Seen>* seen) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return nullptr;
  std::unique_ptr<EVP_PKEY, EvpPkeyFree> key(EVP_EC_gen("P-256"));
  std::unique_ptr<X509, X509Free> cert(X509_new());
  if (!key || !cert) return nullptr;
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("ja4.test"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0 ||
      SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1) {
    return nullptr;
  }
  SSL_CTX_set_client_hello_cb(ctx.get(), recordHello, seen);
  return ctx;
}

// ---------------------------------------------------------------------------------------------
// readClientHello on hand-built ClientHello bytes, so GREASE and malformed bodies can be sent.

void put16(std::vector<unsigned char>& b, size_t v) {
  b.push_back(static_cast<unsigned char>(v >> 8));
  b.push_back(static_cast<unsigned char>(v));
}

void putExtension(std::vector<unsigned char>& b, uint16_t type,
                  const std::vector<unsigned char>& body) {
  put16(b, type);
  put16(b, body.size());
  b.insert(b.end(), body.begin(), body.end());
}

struct HelloBytes {
  std::vector<unsigned char> alpn = {0x00, 0x0c, 0x02, 'h', '2', 0x08, 'h',
                                     't',  't',  'p',  '/', '1', '.',  '1'};
  std::vector<unsigned char> sigalgs = {0x00, 0x06, 0x2a, 0x2a, 0x04, 0x03, 0x08, 0x04};
  std::vector<unsigned char> versions = {0x04, 0x1a, 0x1a, 0x03, 0x04};

  // One TLS record holding a ClientHello with GREASE in the ciphers, extensions, versions and
  // signature algorithms, plus an extension (0x4469) OpenSSL 3.0 does not know.
  std::vector<unsigned char> record() const {
    std::vector<unsigned char> ext;
    putExtension(ext, 0x0a0a, {});
    putExtension(ext, 0x0000, {0x00, 0x09, 0x00, 0x00, 0x06, 'a', '.', 't', 'e', 's', 't'});
    putExtension(ext, 0x0010, alpn);
    putExtension(ext, 0x4469, {0x00, 0x00});
    putExtension(ext, 0x002b, versions);
    putExtension(ext, 0x000d, sigalgs);
    putExtension(ext, 0x000a, {0x00, 0x02, 0x00, 0x1d});

    std::vector<unsigned char> body = {0x03, 0x03};  // legacy_version
    body.insert(body.end(), 32, 0x42);               // random
    body.push_back(0);                               // session id
    const std::vector<uint16_t> ciphers = {0x0a0a, 0x1301, 0x1302, 0xc02b, 0x00ff};
    put16(body, ciphers.size() * 2);
    for (uint16_t c : ciphers) put16(body, c);
    body.push_back(1);  // one compression method: null
    body.push_back(0);
    put16(body, ext.size());
    body.insert(body.end(), ext.begin(), ext.end());

    std::vector<unsigned char> out = {0x16, 0x03, 0x01};
    put16(out, body.size() + 4);
    out.push_back(0x01);  // client_hello
    out.push_back(static_cast<unsigned char>(body.size() >> 16));
    put16(out, body.size() & 0xffff);
    out.insert(out.end(), body.begin(), body.end());
    return out;
  }
};

// Feeds `record` to a fresh server SSL and returns what the client_hello callback recorded.
std::vector<Seen> acceptHello(const std::vector<unsigned char>& record) {
  std::vector<Seen> seen;
  SslCtxPtr ctx = serverContext(&seen);
  EXPECT_NE(ctx, nullptr);
  if (!ctx) return seen;
  SslPtr ssl(SSL_new(ctx.get()));
  BIO* in = BIO_new_mem_buf(record.data(), static_cast<int>(record.size()));
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);
  SSL_set_accept_state(ssl.get());
  SSL_do_handshake(ssl.get());  // how it ends is beside the point: the callback runs first
  return seen;
}

TEST(ReadClientHelloTest, ReadsEveryFieldWireOrderWithGrease) {
  std::vector<Seen> seen = acceptHello(HelloBytes().record());
  ASSERT_EQ(seen.size(), 1u);
  ASSERT_TRUE(seen[0].ok);
  const ClientHelloInfo& h = seen[0].info;
  EXPECT_FALSE(h.quic);
  EXPECT_EQ(h.legacy_version, 0x0303);
  EXPECT_EQ(h.ciphers, (std::vector<uint16_t>{0x0a0a, 0x1301, 0x1302, 0xc02b, 0x00ff}));
  EXPECT_EQ(h.supported_versions, (std::vector<uint16_t>{0x1a1a, 0x0304}));
  EXPECT_TRUE(h.has_sni);
  EXPECT_EQ(h.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(h.signature_algorithms, (std::vector<uint16_t>{0x2a2a, 0x0403, 0x0804}));
  // The documented OpenSSL 3.0 limitation: GREASE (0x0a0a) and unknown (0x4469) extension types
  // never reach SSL_client_hello_get1_extensions_present(). If this starts failing, OpenSSL now
  // reports them, and stored fingerprints of clients that send such extensions will change.
  EXPECT_EQ(h.extensions, (std::vector<uint16_t>{0x0000, 0x0010, 0x002b, 0x000d, 0x000a}));
  // printf '%s' 00ff,1301,1302,c02b | sha256sum ;
  // printf '%s' 000a,000d,002b_0403,0804 | sha256sum
  EXPECT_EQ(seen[0].fingerprint, "t13d0405h2_d71680ff791e_fbabbea27ee8");
}

TEST(ReadClientHelloTest, RejectsAlpnNameOverrunningItsList) {
  HelloBytes hello;
  hello.alpn[2] = 0x20;  // "h2" claims 32 bytes
  std::vector<Seen> seen = acceptHello(hello.record());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].ok);
}

TEST(ReadClientHelloTest, RejectsOddSignatureAlgorithmsLength) {
  HelloBytes hello;
  hello.sigalgs = {0x00, 0x03, 0x04, 0x03, 0x08};
  std::vector<Seen> seen = acceptHello(hello.record());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].ok);
}

TEST(ReadClientHelloTest, RejectsSupportedVersionsLengthMismatch) {
  HelloBytes hello;
  hello.versions = {0x06, 0x03, 0x04, 0x03, 0x03};
  std::vector<Seen> seen = acceptHello(hello.record());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].ok);
}

// ---------------------------------------------------------------------------------------------
// parseClientHello on the same bytes: every extension, and the capture that feeds it.

// The handshake message inside a one-record ClientHello (the record header is 5 bytes).
std::string messageOf(const std::vector<unsigned char>& record) {
  return std::string(record.begin() + 5, record.end());
}

TEST(ParseClientHelloTest, SeesEveryExtensionGreaseAndUnknownIncluded) {
  ClientHelloInfo h;
  ASSERT_TRUE(parseClientHello(messageOf(HelloBytes().record()), h));
  EXPECT_EQ(h.legacy_version, 0x0303);
  EXPECT_EQ(h.ciphers, (std::vector<uint16_t>{0x0a0a, 0x1301, 0x1302, 0xc02b, 0x00ff}));
  EXPECT_EQ(h.extensions,
            (std::vector<uint16_t>{0x0a0a, 0x0000, 0x0010, 0x4469, 0x002b, 0x000d, 0x000a}));
  EXPECT_EQ(h.supported_versions, (std::vector<uint16_t>{0x1a1a, 0x0304}));
  EXPECT_TRUE(h.has_sni);
  EXPECT_EQ(h.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(h.signature_algorithms, (std::vector<uint16_t>{0x2a2a, 0x0403, 0x0804}));
  // printf '%s' 000a,000d,002b,4469_0403,0804 | sha256sum: 0x4469 counts, GREASE does not.
  EXPECT_EQ(ja4(h), "t13d0406h2_d71680ff791e_1a15fce277a6");
}

// The published Chrome capture of PublishedChromeCaptureWithGrease, as bytes on the wire: the
// fingerprint must be the one FoxIO's tools print for it, ECH (0xfe0d) and ALPS (0x44cd) included.
TEST(ParseClientHelloTest, PublishedChromeCaptureFromItsBytes) {
  const std::vector<uint16_t> ciphers = {0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f,
                                         0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
                                         0x009c, 0x009d, 0x002f, 0x0035};
  const std::vector<uint16_t> sigalgs = {0x8a8a, 0x0904, 0x0905, 0x0906, 0x0403, 0x0804,
                                         0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601};
  std::vector<unsigned char> ext;
  for (uint16_t type :
       {0x4a4a, 0xfe0d, 0x0010, 0x0017, 0x0033, 0x44cd, 0xff01, 0x000a, 0x000d, 0x0023, 0x002b,
        0x000b, 0xca34, 0x002d, 0x0000, 0x0005, 0x001b, 0x0012, 0xdada}) {
    std::vector<unsigned char> body;
    if (type == 0x0010) {
      body = {0x00, 0x0c, 0x02, 'h', '2', 0x08, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    } else if (type == 0x000d) {
      put16(body, sigalgs.size() * 2);
      for (uint16_t a : sigalgs) put16(body, a);
    } else if (type == 0x002b) {
      body = {0x06, 0x3a, 0x3a, 0x03, 0x04, 0x03, 0x03};
    } else if (type == 0x0000) {
      body = {0x00, 0x0b, 0x00, 0x00, 0x08, 'a', '.', 'g', 'o', 'o', 'g', 'l', 'e'};
    } else if (type == 0x4a4a || type == 0xdada) {
      body = {0x00};
    }
    putExtension(ext, type, body);
  }
  std::vector<unsigned char> hello = {0x03, 0x03};
  hello.insert(hello.end(), 32, 0x17);
  hello.push_back(32);  // a legacy session id, as Chrome sends
  hello.insert(hello.end(), 32, 0x55);
  put16(hello, ciphers.size() * 2);
  for (uint16_t c : ciphers) put16(hello, c);
  hello.insert(hello.end(), {0x01, 0x00});
  put16(hello, ext.size());
  hello.insert(hello.end(), ext.begin(), ext.end());
  std::string message = {0x01, 0x00};
  message.push_back(static_cast<char>(hello.size() >> 8));
  message.push_back(static_cast<char>(hello.size() & 0xff));
  message.append(hello.begin(), hello.end());

  ClientHelloInfo h;
  ASSERT_TRUE(parseClientHello(message, h));
  EXPECT_EQ(ja4(h), "t13d1517h2_8daaf6152771_cb7bf5808d99");
}

TEST(ParseClientHelloTest, RefusesWhatIsNotAWholeClientHello) {
  std::string good = messageOf(HelloBytes().record());
  ClientHelloInfo h;
  EXPECT_FALSE(parseClientHello("", h));
  EXPECT_FALSE(parseClientHello(good.substr(0, good.size() - 1), h));  // shorter than it says
  EXPECT_FALSE(parseClientHello(good + "x", h));                       // longer than it says
  std::string server_hello = good;
  server_hello[0] = 2;
  EXPECT_FALSE(parseClientHello(server_hello, h));
  HelloBytes bad_alpn;
  bad_alpn.alpn[2] = 0x20;
  EXPECT_FALSE(parseClientHello(messageOf(bad_alpn.record()), h));
  HelloBytes odd_sigalgs;
  odd_sigalgs.sigalgs = {0x00, 0x03, 0x04, 0x03, 0x08};
  EXPECT_FALSE(parseClientHello(messageOf(odd_sigalgs.record()), h));
  // An extension that claims more than is left.
  std::string overrun = good;
  overrun[overrun.size() - 5] = 0x7f;  // the last extension's (0x000a) length: 0x7f04
  EXPECT_FALSE(parseClientHello(overrun, h));
}

// The capture keeps the message before the client_hello callback runs, and only the first one.
TEST(ParseClientHelloTest, TheCaptureHasTheHelloWhenTheCallbackRuns) {
  std::vector<Seen> seen;
  SslCtxPtr ctx = serverContext(&seen);
  ASSERT_NE(ctx, nullptr);
  struct Probe {
    std::string captured;
    std::string at_callback;
  } probe;
  SSL_CTX_set_client_hello_cb(
      ctx.get(),
      [](SSL*, int*, void* arg) {
        auto* p = static_cast<Probe*>(arg);
        p->at_callback = p->captured;
        return SSL_CLIENT_HELLO_SUCCESS;
      },
      &probe);
  SslPtr ssl(SSL_new(ctx.get()));
  std::vector<unsigned char> record = HelloBytes().record();
  BIO* in = BIO_new_mem_buf(record.data(), static_cast<int>(record.size()));
  SSL_set_bio(ssl.get(), in, BIO_new(BIO_s_mem()));
  SSL_set_accept_state(ssl.get());
  captureClientHello(ssl.get(), &probe.captured);
  SSL_do_handshake(ssl.get());
  stopClientHelloCapture(ssl.get());
  EXPECT_EQ(probe.at_callback, messageOf(record));
  EXPECT_EQ(probe.captured, messageOf(record));  // the alert OpenSSL then wrote is not kept
}

// ---------------------------------------------------------------------------------------------
// Live handshakes: an OpenSSL client and server in this process, joined by a BIO pair.

SslCtxPtr clientContext(const char* tls12_ciphers) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return nullptr;
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn)) != 0 ||
      SSL_CTX_set_cipher_list(ctx.get(), tls12_ciphers) != 1) {
    return nullptr;
  }
  return ctx;
}

// Runs one full handshake; the certificate is not verified, only the ClientHello matters here.
bool handshake(SSL_CTX* client_ctx, SSL_CTX* server_ctx) {
  SslPtr client(SSL_new(client_ctx));
  SslPtr server(SSL_new(server_ctx));
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  if (!client || !server || BIO_new_bio_pair(&client_bio, 0, &server_bio, 0) != 1) return false;
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_tlsext_host_name(client.get(), "ja4.test");
  SSL_set_connect_state(client.get());
  SSL_set_accept_state(server.get());
  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
    if (!client_done) {
      int r = SSL_do_handshake(client.get());
      if (r == 1) {
        client_done = true;
      } else if (SSL_get_error(client.get(), r) != SSL_ERROR_WANT_READ) {
        return false;
      }
    }
    if (!server_done) {
      int r = SSL_do_handshake(server.get());
      if (r == 1) {
        server_done = true;
      } else if (SSL_get_error(server.get(), r) != SSL_ERROR_WANT_READ) {
        return false;
      }
    }
  }
  return client_done && server_done;
}

TEST(Ja4LiveTest, FingerprintOfOpensslClient) {
  std::vector<Seen> seen;
  SslCtxPtr server_ctx = serverContext(&seen);
  ASSERT_NE(server_ctx, nullptr);
  SslCtxPtr client_a = clientContext("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384");
  SslCtxPtr client_b = clientContext("ECDHE-ECDSA-AES128-GCM-SHA256");
  ASSERT_NE(client_a, nullptr);
  ASSERT_NE(client_b, nullptr);

  ASSERT_TRUE(handshake(client_a.get(), server_ctx.get()));
  ASSERT_TRUE(handshake(client_a.get(), server_ctx.get()));
  ASSERT_TRUE(handshake(client_b.get(), server_ctx.get()));
  ASSERT_EQ(seen.size(), 3u);
  for (const Seen& s : seen) ASSERT_TRUE(s.ok);

  const std::string& first = seen[0].fingerprint;
  EXPECT_TRUE(
      std::regex_match(first, std::regex(R"(^t13d\d{4}(h2|h1|00)_[0-9a-f]{12}_[0-9a-f]{12}$)")))
      << first;
  EXPECT_EQ(first.substr(8, 2), "h1") << first;
  EXPECT_EQ(seen[1].fingerprint, first);  // same client configuration, same device
  // A different cipher offer changes part b; the extensions, and so part c, stay as they were.
  EXPECT_NE(seen[2].fingerprint.substr(11, 12), first.substr(11, 12));
  EXPECT_EQ(seen[2].fingerprint.substr(24), first.substr(24));
}

}  // namespace
}  // namespace tessera::proxy
