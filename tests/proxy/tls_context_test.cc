// tlsNameMatches and TlsContexts::build/select, with EC P-256 certificates made at test time.

#include "proxy/tls_context.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tessera::proxy {
namespace {

// ---------------------------------------------------------------------------------------------
// tlsNameMatches

TEST(TlsNameMatchesTest, Exact) {
  EXPECT_TRUE(tlsNameMatches("a.test", "a.test"));
  EXPECT_FALSE(tlsNameMatches("a.test", "b.test"));
  EXPECT_FALSE(tlsNameMatches("a.test", "x.a.test"));
  EXPECT_FALSE(tlsNameMatches("a.test", "a.test.evil"));
}

TEST(TlsNameMatchesTest, WildcardCoversOneLabel) {
  EXPECT_TRUE(tlsNameMatches("*.b.test", "x.b.test"));
  EXPECT_TRUE(tlsNameMatches("*.b.test", "www-1.b.test"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", "y.x.b.test"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", "xb.test"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", "x.c.test"));
}

TEST(TlsNameMatchesTest, WildcardDoesNotMatchBareDomain) {
  EXPECT_FALSE(tlsNameMatches("*.b.test", "b.test"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", ".b.test"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", ""));
}

// ---------------------------------------------------------------------------------------------
// Certificates

struct EvpPkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};

void writePem(const std::string& path, EVP_PKEY* key, X509* cert) {
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr) << path;
  if (key != nullptr) {
    EXPECT_EQ(PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  }
  if (cert != nullptr) {
    EXPECT_EQ(PEM_write_X509(f, cert), 1);
  }
  std::fclose(f);
}

// Writes `<dir>/<stem>.key` (EC P-256) and `<dir>/<stem>.crt`, self-signed, with subject CN `cn`
// and, unless `san` is empty, a subjectAltName extension such as "DNS:a.test,DNS:b.test".
void makeCertificate(const std::string& dir, const std::string& stem, const std::string& cn,
                     const std::string& san) {
  std::unique_ptr<EVP_PKEY, EvpPkeyFree> key(EVP_EC_gen("P-256"));
  ASSERT_NE(key, nullptr);
  std::unique_ptr<X509, X509Free> cert(X509_new());
  ASSERT_NE(cert, nullptr);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (!san.empty()) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str());
    ASSERT_NE(ext, nullptr);
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  ASSERT_GT(X509_sign(cert.get(), key.get(), EVP_sha256()), 0);
  writePem(dir + "/" + stem + ".key", key.get(), nullptr);
  writePem(dir + "/" + stem + ".crt", nullptr, cert.get());
}

constexpr const char* kFile = "tessera.yaml";

class TlsContextsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tessera_tls_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    makeCertificate(*dir_, "a", "a.test", "DNS:a.test");
    makeCertificate(*dir_, "b", "b wildcard", "DNS:*.b.test");
    makeCertificate(*dir_, "ab", "a.b.test", "DNS:a.b.test");
    makeCertificate(*dir_, "multi", "multi", "DNS:Mixed.Test,IP:127.0.0.1,DNS:second.test");
    makeCertificate(*dir_, "cn", "CN-Only.Test", "");
    makeCertificate(*dir_, "other", "other.test", "DNS:other.test");
  }

  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  static std::string path(const std::string& name) { return *dir_ + "/" + name; }

  // A certificate entry as the config loader would make it for listeners[0].
  static conf::Certificate entry(const std::string& cert, const std::string& key, int index) {
    conf::Certificate c;
    c.cert = path(cert);
    c.key = path(key);
    c.mark = conf::Mark{7 + index, 11};
    c.key_path = "listeners[0].tls.certificates[" + std::to_string(index) + "]";
    return c;
  }

  // Builds contexts for the "stem.crt"/"stem.key" pairs, in order; expects no errors.
  static std::unique_ptr<TlsContexts> buildOk(const std::vector<std::string>& stems) {
    conf::Tls tls;
    for (size_t i = 0; i < stems.size(); ++i) {
      tls.certificates.push_back(entry(stems[i] + ".crt", stems[i] + ".key", static_cast<int>(i)));
    }
    std::vector<conf::Error> errors;
    std::unique_ptr<TlsContexts> contexts = TlsContexts::build(tls, kFile, errors);
    for (const conf::Error& e : errors) ADD_FAILURE() << e.str();
    EXPECT_NE(contexts, nullptr);
    return contexts;
  }

  static std::string* dir_;
};

std::string* TlsContextsTest::dir_ = nullptr;

TEST_F(TlsContextsTest, NamesComeFromSubjectAltNames) {
  auto contexts = buildOk({"a", "b"});
  ASSERT_NE(contexts, nullptr);
  EXPECT_EQ(contexts->names(), (std::vector<std::vector<std::string>>{{"a.test"}, {"*.b.test"}}));
}

TEST_F(TlsContextsTest, DnsNamesAreLowerCasedAndOtherSansSkipped) {
  auto contexts = buildOk({"multi"});
  ASSERT_NE(contexts, nullptr);
  EXPECT_EQ(contexts->names(),
            (std::vector<std::vector<std::string>>{{"mixed.test", "second.test"}}));
}

TEST_F(TlsContextsTest, CommonNameWhenNoSubjectAltName) {
  auto contexts = buildOk({"cn"});
  ASSERT_NE(contexts, nullptr);
  EXPECT_EQ(contexts->names(), (std::vector<std::vector<std::string>>{{"cn-only.test"}}));
  EXPECT_EQ(contexts->select("cn-only.test"), contexts->defaultContext());
}

TEST_F(TlsContextsTest, SelectPicksCertificateBySni) {
  auto contexts = buildOk({"a", "b"});
  ASSERT_NE(contexts, nullptr);
  SSL_CTX* a = contexts->select("a.test");
  SSL_CTX* b = contexts->select("x.b.test");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, contexts->defaultContext());
  EXPECT_EQ(contexts->select("other.b.test"), b);
  EXPECT_EQ(contexts->select("A.TEST"), a);  // SNI is compared lower-cased
  EXPECT_EQ(contexts->select("X.B.Test"), b);

  // The certificates themselves are the right ones.
  X509* a_cert = SSL_CTX_get0_certificate(a);
  X509* b_cert = SSL_CTX_get0_certificate(b);
  ASSERT_NE(a_cert, nullptr);
  ASSERT_NE(b_cert, nullptr);
  EXPECT_EQ(X509_check_host(a_cert, "a.test", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(b_cert, "x.b.test", 0, 0, nullptr), 1);
}

TEST_F(TlsContextsTest, SelectUnknownNameIsNull) {
  auto contexts = buildOk({"a", "b"});
  ASSERT_NE(contexts, nullptr);
  EXPECT_EQ(contexts->select("unknown.test"), nullptr);
  EXPECT_EQ(contexts->select("b.test"), nullptr);  // the wildcard's bare domain
  EXPECT_EQ(contexts->select("y.x.b.test"), nullptr);
  EXPECT_EQ(contexts->select(""), nullptr);
}

TEST_F(TlsContextsTest, DefaultContextIsFirstCertificate) {
  auto contexts = buildOk({"b", "a"});
  ASSERT_NE(contexts, nullptr);
  EXPECT_EQ(contexts->defaultContext(), contexts->select("x.b.test"));
  EXPECT_NE(contexts->defaultContext(), contexts->select("a.test"));
}

TEST_F(TlsContextsTest, ExactNameBeatsEarlierWildcard) {
  auto contexts = buildOk({"b", "ab"});
  ASSERT_NE(contexts, nullptr);
  SSL_CTX* wildcard = contexts->select("x.b.test");
  SSL_CTX* exact = contexts->select("a.b.test");
  ASSERT_NE(wildcard, nullptr);
  ASSERT_NE(exact, nullptr);
  EXPECT_NE(exact, wildcard);
  EXPECT_EQ(wildcard, contexts->defaultContext());
}

TEST_F(TlsContextsTest, MissingCertificateFile) {
  conf::Tls tls;
  tls.certificates.push_back(entry("missing.crt", "a.key", 0));
  std::vector<conf::Error> errors;
  EXPECT_EQ(TlsContexts::build(tls, kFile, errors), nullptr);
  ASSERT_EQ(errors.size(), 1u);
  const std::string prefix = "tessera.yaml:7:11: listeners[0].tls.certificates[0]: ";
  EXPECT_EQ(errors[0].str().rfind(prefix + "cannot load certificate " + path("missing.crt"), 0), 0u)
      << errors[0].str();
  EXPECT_EQ(errors[0].file, kFile);
  EXPECT_EQ(errors[0].mark.line, 7);
  EXPECT_EQ(errors[0].mark.column, 11);
}

TEST_F(TlsContextsTest, MissingKeyFile) {
  conf::Tls tls;
  tls.certificates.push_back(entry("a.crt", "missing.key", 0));
  std::vector<conf::Error> errors;
  EXPECT_EQ(TlsContexts::build(tls, kFile, errors), nullptr);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].str().rfind("tessera.yaml:7:11: listeners[0].tls.certificates[0]: "
                                  "cannot load key " +
                                      path("missing.key"),
                                  0),
            0u)
      << errors[0].str();
}

TEST_F(TlsContextsTest, KeyNotMatchingCertificate) {
  conf::Tls tls;
  tls.certificates.push_back(entry("a.crt", "other.key", 0));
  std::vector<conf::Error> errors;
  EXPECT_EQ(TlsContexts::build(tls, kFile, errors), nullptr);
  ASSERT_EQ(errors.size(), 1u);
  const std::string text = errors[0].str();
  EXPECT_EQ(text.rfind("tessera.yaml:7:11: listeners[0].tls.certificates[0]: ", 0), 0u) << text;
  EXPECT_NE(text.find(path("other.key")), std::string::npos) << text;
}

TEST_F(TlsContextsTest, OneBadCertificateFailsTheListener) {
  conf::Tls tls;
  tls.certificates.push_back(entry("a.crt", "a.key", 0));
  tls.certificates.push_back(entry("b.crt", "a.key", 1));
  std::vector<conf::Error> errors;
  EXPECT_EQ(TlsContexts::build(tls, kFile, errors), nullptr);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].str().rfind("tessera.yaml:8:11: listeners[0].tls.certificates[1]: ", 0), 0u)
      << errors[0].str();
}

TEST_F(TlsContextsTest, EarlierErrorsOfOtherListenersDoNotFailThisOne) {
  conf::Tls tls;
  tls.certificates.push_back(entry("a.crt", "a.key", 0));
  std::vector<conf::Error> errors = {conf::Error{kFile, {1, 1}, "listeners[1]", "earlier"}};
  EXPECT_NE(TlsContexts::build(tls, kFile, errors), nullptr);
  EXPECT_EQ(errors.size(), 1u);
}

TEST_F(TlsContextsTest, NoCertificatesIsNull) {
  conf::Tls tls;
  std::vector<conf::Error> errors;
  EXPECT_EQ(TlsContexts::build(tls, kFile, errors), nullptr);
}

}  // namespace
}  // namespace tessera::proxy
