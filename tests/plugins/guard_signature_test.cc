// The guard plugin's signature logic (plugins/guard/signature.h): RFC 9421's own test vectors
// (Appendix B.2.5 with HMAC-SHA256, the derived components of section 2.2, the field values of
// section 2.1), RFC 9530's Content-Digest examples, a body changed after signing, every refusal
// with its reason, the size bounds, and a few hundred pseudo-random inputs that must be refused
// without a crash.

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "plugins/encoding.h"
#include "plugins/guard/signature.h"

namespace tessera::plugins::guard {

// Failures print "label_mismatch", not a number. Argument-dependent lookup skips the anonymous
// namespace, so this sits outside it, static so that it clashes with no other test file.
static void PrintTo(Failure failure, std::ostream* out) { *out << failureName(failure); }

namespace {

// RFC 9421, B.1.5: the key whose keyid is "test-shared-secret".
constexpr std::string_view kSharedSecretBase64 =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
constexpr std::string_view kBody = R"({"hello": "world"})";
// RFC 9530, B.1 and B.2: the digests of kBody.
constexpr std::string_view kBodySha256 = "X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=";
constexpr std::string_view kBodySha512 =
    "WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==";

// RFC 9421, B.2.5.
constexpr std::string_view kB25Input =
    R"(sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret")";
constexpr std::string_view kB25Signature = "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:";
constexpr std::string_view kB25Base =
    "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n"
    "\"@authority\": example.com\n"
    "\"content-type\": application/json\n"
    "\"@signature-params\": (\"date\" \"@authority\" \"content-type\")"
    ";created=1618884473;keyid=\"test-shared-secret\"";

// A request as the proxy would show it: header names lower-cased, each line kept apart.
struct FakeRequest {
  std::string method = "POST";
  std::string scheme = "https";
  std::string authority;
  std::string target;
  std::multimap<std::string, std::string> headers;

  FakeRequest& header(std::string name, std::string value) {
    headers.emplace(std::move(name), std::move(value));
    return *this;
  }

  MessageView view() const {
    return {method, scheme, authority, target, [this](std::string_view name) {
              std::vector<std::string_view> lines;
              auto [begin, end] = headers.equal_range(std::string(name));
              for (auto it = begin; it != end; ++it) lines.push_back(it->second);
              return lines;
            }};
  }
};

// A POST over https.
FakeRequest makeRequest(std::string authority, std::string target) {
  FakeRequest request;
  request.authority = std::move(authority);
  request.target = std::move(target);
  return request;
}

// RFC 9421, 2.5's test request (the body is kBody).
FakeRequest rfcTestRequest() {
  FakeRequest request = makeRequest("example.com", "/foo?param=Value&Pet=dog");
  request.header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
      .header("content-type", "application/json")
      .header("content-digest", "sha-512=:" + std::string(kBodySha512) + ":")
      .header("content-length", "18");
  return request;
}

std::string sharedSecret() { return base64Decode(kSharedSecretBase64).value_or(""); }

std::string signatureHeader(std::string_view label, std::string_view bytes) {
  return std::string(label) + "=:" + base64Encode(bytes) + ":";
}

// What a client does: the signature of `request` for the Signature-Input member `input`.
std::string sign(std::string_view input, const FakeRequest& request, std::string_view key) {
  // Signature is a placeholder: only the label matters to parseSignature.
  std::string label(input.substr(0, input.find('=')));
  Result<ParsedSignature> parsed = parseSignature(input, label + "=:AA==:");
  EXPECT_TRUE(parsed.ok()) << parsed.reason();
  if (!parsed) return {};
  Result<std::string> base = signatureBase(parsed->input, request.view());
  EXPECT_TRUE(base.ok()) << base.reason();
  return base ? signatureHeader(label, hmacSha256(key, *base)) : std::string();
}

// What the plugin does, short of the key lookup and its policy: "ok", "bad_signature", or the
// reason parsing or the signature base failed.
std::string verify(std::string_view input, std::string_view signature, const FakeRequest& request,
                   std::string_view key) {
  Result<ParsedSignature> parsed = parseSignature(input, signature);
  if (!parsed) return std::string(parsed.reason());
  Result<std::string> base = signatureBase(parsed->input, request.view());
  if (!base) return std::string(base.reason());
  return verifyHmacSha256(key, *base, parsed->signature) ? "ok" : "bad_signature";
}

// Why parseSignature refused the pair; nullopt if it did not.
std::optional<Failure> failureOf(std::string_view input,
                                 std::string_view signature = "sig=:AA==:") {
  Result<ParsedSignature> parsed = parseSignature(input, signature);
  if (parsed) return std::nullopt;
  return parsed.failure();
}

// --- RFC 9421, Appendix B.2.5 -------------------------------------------------------------------

TEST(GuardSignatureRfc9421, B25HmacSha256Vector) {
  Result<ParsedSignature> parsed = parseSignature(kB25Input, kB25Signature);
  ASSERT_TRUE(parsed.ok()) << parsed.reason();
  const SignatureInput& input = parsed->input;
  EXPECT_EQ(input.label, "sig-b25");
  EXPECT_EQ(input.components, (std::vector<std::string>{"date", "@authority", "content-type"}));
  EXPECT_EQ(input.created, 1618884473);
  EXPECT_EQ(input.keyid, "test-shared-secret");
  EXPECT_FALSE(input.expires || input.nonce || input.alg || input.tag);

  Result<std::string> base = signatureBase(input, rfcTestRequest().view());
  ASSERT_TRUE(base.ok()) << base.reason();
  EXPECT_EQ(*base, kB25Base);

  // The key is the decoded bytes of B.1.5; "test-shared-secret" is only its keyid.
  std::string key = sharedSecret();
  ASSERT_EQ(key.size(), 64u);
  EXPECT_EQ(parsed->signature, hmacSha256(key, *base));
  EXPECT_TRUE(verifyHmacSha256(key, *base, parsed->signature));
  EXPECT_FALSE(verifyHmacSha256("test-shared-secret", *base, parsed->signature));
}

TEST(GuardSignatureRfc9421, B25AnyFlippedBitFails) {
  Result<ParsedSignature> parsed = parseSignature(kB25Input, kB25Signature);
  ASSERT_TRUE(parsed.ok());
  std::string key = sharedSecret();
  std::string base = *signatureBase(parsed->input, rfcTestRequest().view());
  for (size_t bit = 0; bit < parsed->signature.size() * 8; ++bit) {
    std::string signature = parsed->signature;
    signature[bit / 8] = static_cast<char>(signature[bit / 8] ^ (1 << (bit % 8)));
    EXPECT_FALSE(verifyHmacSha256(key, base, signature)) << "signature bit " << bit;
  }
  std::string changed_base = base;
  changed_base[10] ^= 1;
  EXPECT_FALSE(verifyHmacSha256(key, changed_base, parsed->signature));
  std::string changed_key = key;
  changed_key[0] ^= 1;
  EXPECT_FALSE(verifyHmacSha256(changed_key, base, parsed->signature));
}

TEST(GuardSignatureRfc9421, B25ChangedCoveredHeaderFails) {
  FakeRequest request = rfcTestRequest();
  request.headers.find("date")->second = "Tue, 20 Apr 2021 02:07:56 GMT";
  EXPECT_EQ(verify(kB25Input, kB25Signature, request, sharedSecret()), "bad_signature");
  // A header the signature does not cover may change.
  request = rfcTestRequest();
  request.headers.find("content-length")->second = "19";
  EXPECT_EQ(verify(kB25Input, kB25Signature, request, sharedSecret()), "ok");
}

// --- Component values ---------------------------------------------------------------------------

// RFC 9421, 2.2's test request: POST /path?param=value, Host: www.example.com, over https.
TEST(GuardSignatureComponents, DerivedComponentsOfSection22) {
  FakeRequest request = makeRequest("www.example.com", "/path?param=value");
  MessageView view = request.view();
  EXPECT_EQ(*componentValue("@method", view), "POST");
  EXPECT_EQ(*componentValue("@target-uri", view), "https://www.example.com/path?param=value");
  EXPECT_EQ(*componentValue("@authority", view), "www.example.com");
  EXPECT_EQ(*componentValue("@scheme", view), "https");
  EXPECT_EQ(*componentValue("@request-target", view), "/path?param=value");
  EXPECT_EQ(*componentValue("@path", view), "/path");
  EXPECT_EQ(*componentValue("@query", view), "?param=value");
}

TEST(GuardSignatureComponents, QueryExamplesOfSection227) {
  FakeRequest request = makeRequest("www.example.com", "");
  for (auto [target, query] : std::vector<std::pair<std::string, std::string>>{
           {"/path?param=value&foo=bar&baz=bat%2Dman", "?param=value&foo=bar&baz=bat%2Dman"},
           {"/path?queryString", "?queryString"},
           {"/path?", "?"},
           {"/path", "?"},
           {"/?a=1?b", "?a=1?b"},
       }) {
    request.target = target;
    EXPECT_EQ(*componentValue("@query", request.view()), query) << target;
  }
}

TEST(GuardSignatureComponents, MethodIsCaseSensitiveAndSchemeLowerCased) {
  FakeRequest request = makeRequest("a.example", "/");
  request.method = "get";
  request.scheme = "HTTPS";
  EXPECT_EQ(*componentValue("@method", request.view()), "get");
  EXPECT_EQ(*componentValue("@scheme", request.view()), "https");
  EXPECT_EQ(*componentValue("@target-uri", request.view()), "https://a.example/");
}

TEST(GuardSignatureComponents, AuthorityIsNormalized) {
  FakeRequest request = makeRequest("WWW.Example.COM:443", "/x");
  EXPECT_EQ(*componentValue("@authority", request.view()), "www.example.com");
  EXPECT_EQ(*componentValue("@target-uri", request.view()), "https://www.example.com/x");
  request.authority = "www.example.com:8443";
  EXPECT_EQ(*componentValue("@authority", request.view()), "www.example.com:8443");
  request.authority = "[2001:DB8::1]:443";
  EXPECT_EQ(*componentValue("@authority", request.view()), "[2001:db8::1]");
  request.scheme = "http";
  request.authority = "www.example.com:80";
  EXPECT_EQ(*componentValue("@authority", request.view()), "www.example.com");
  request.authority = "www.example.com:443";
  EXPECT_EQ(*componentValue("@authority", request.view()), "www.example.com:443");
}

TEST(GuardSignatureComponents, AsteriskAndAbsoluteFormTargets) {
  FakeRequest request = makeRequest("www.example.com", "*");
  request.method = "OPTIONS";
  EXPECT_EQ(*componentValue("@request-target", request.view()), "*");
  EXPECT_EQ(*componentValue("@target-uri", request.view()), "https://www.example.com");
  EXPECT_EQ(*componentValue("@path", request.view()), "/");
  EXPECT_EQ(*componentValue("@query", request.view()), "?");
  request.target = "https://www.example.com/path";
  EXPECT_EQ(*componentValue("@request-target", request.view()), "https://www.example.com/path");
  for (std::string_view component : {"@target-uri", "@path", "@query"}) {
    EXPECT_EQ(componentValue(component, request.view()).failure(),
              Failure::kUnsupportedRequestTarget)
        << component;
  }
}

// RFC 9421, 2.1's example fields.
TEST(GuardSignatureComponents, FieldValuesOfSection21) {
  FakeRequest request = makeRequest("www.example.com", "/");
  request.header("x-ows-header", "   Leading and trailing whitespace.   ")
      .header("cache-control", "max-age=60")
      .header("cache-control", "   must-revalidate")
      .header("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)")
      .header("x-empty-header", "")
      .header("x-tabs", "\t value \t");
  MessageView view = request.view();
  EXPECT_EQ(*componentValue("x-ows-header", view), "Leading and trailing whitespace.");
  EXPECT_EQ(*componentValue("cache-control", view), "max-age=60, must-revalidate");
  EXPECT_EQ(*componentValue("example-dict", view), "a=1,    b=2;x=1;y=2,   c=(a   b   c)");
  EXPECT_EQ(*componentValue("x-empty-header", view), "");
  EXPECT_EQ(*componentValue("x-tabs", view), "value");
}

TEST(GuardSignatureComponents, EmptyFieldKeepsTheSpaceAfterTheColon) {
  FakeRequest request = makeRequest("a.example", "/");
  request.header("x-empty-header", "");
  Result<ParsedSignature> parsed = parseSignature(R"(s=("x-empty-header"))", "s=:AA==:");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*signatureBase(parsed->input, request.view()),
            "\"x-empty-header\": \n\"@signature-params\": (\"x-empty-header\")");
}

TEST(GuardSignatureComponents, MissingAndBadValues) {
  FakeRequest request = makeRequest("a.example", "/");
  EXPECT_EQ(componentValue("x-missing", request.view()).failure(), Failure::kMissingComponent);
  request.authority.clear();
  EXPECT_EQ(componentValue("@authority", request.view()).failure(), Failure::kMissingComponent);
  request.authority = "a.example";
  request.target.clear();
  EXPECT_EQ(componentValue("@path", request.view()).failure(), Failure::kMissingComponent);
  request.target = "/";
  request.header("x-split", "one\r\n\"@method\": GET");
  EXPECT_EQ(componentValue("x-split", request.view()).failure(), Failure::kBadComponentValue);
  request.header("x-nul", std::string("a\0b", 3));
  EXPECT_EQ(componentValue("x-nul", request.view()).failure(), Failure::kBadComponentValue);
  EXPECT_EQ(componentValue("@status", request.view()).failure(), Failure::kUnsupportedComponent);
  MessageView no_fields{"GET", "https", "a.example", "/", nullptr};
  EXPECT_EQ(componentValue("date", no_fields).failure(), Failure::kMissingComponent);
}

TEST(GuardSignatureComponents, MissingCoveredHeaderFailsTheBase) {
  FakeRequest request = rfcTestRequest();
  request.headers.erase("content-type");
  Result<ParsedSignature> parsed = parseSignature(kB25Input, kB25Signature);
  ASSERT_TRUE(parsed.ok());
  Result<std::string> base = signatureBase(parsed->input, request.view());
  ASSERT_FALSE(base.ok());
  EXPECT_EQ(base.failure(), Failure::kMissingComponent);
  EXPECT_EQ(base.reason(), "missing_component");
}

// --- Parsing Signature-Input and Signature ------------------------------------------------------

TEST(GuardSignatureParse, AllParametersInOrderReceived) {
  Result<ParsedSignature> parsed = parseSignature(
      R"(sig1=(  "@method"   "@target-uri" "content-digest" );keyid="client-1";alg="hmac-sha256")"
      R"(;created=1700000000;expires=1700000300;nonce="n\"o\\nce";tag="app")",
      "sig1=:AAAA:");
  ASSERT_TRUE(parsed.ok()) << parsed.reason();
  const SignatureInput& input = parsed->input;
  EXPECT_EQ(input.components,
            (std::vector<std::string>{"@method", "@target-uri", "content-digest"}));
  EXPECT_EQ(input.created, 1700000000);
  EXPECT_EQ(input.expires, 1700000300);
  EXPECT_EQ(input.keyid, "client-1");
  EXPECT_EQ(input.nonce, R"(n"o\nce)");
  EXPECT_EQ(input.alg, "hmac-sha256");
  EXPECT_EQ(input.tag, "app");
  // Canonical: single spaces, no padding inside the parentheses, escapes kept.
  EXPECT_EQ(input.signature_params,
            R"(("@method" "@target-uri" "content-digest");keyid="client-1";alg="hmac-sha256")"
            R"(;created=1700000000;expires=1700000300;nonce="n\"o\\nce";tag="app")");
  EXPECT_EQ(parsed->signature, std::string(3, '\0'));
}

TEST(GuardSignatureParse, CanonicalIntegersAndEmptyList) {
  Result<ParsedSignature> parsed = parseSignature("s=();created=0001618884473", "s=:AA==:");
  ASSERT_TRUE(parsed.ok()) << parsed.reason();
  EXPECT_TRUE(parsed->input.components.empty());
  EXPECT_EQ(parsed->input.signature_params, "();created=1618884473");
}

TEST(GuardSignatureParse, PicksTheFirstHmacLabel) {
  std::string inputs = R"(rsa=("@method");alg="rsa-pss-sha512", mac=("@path");alg="hmac-sha256", )"
                       R"(mac2=("@query");alg="hmac-sha256")";
  Result<ParsedSignature> parsed = parseSignature(inputs, "rsa=:AAAA:, mac=:BBBB:, mac2=:CCCC:");
  ASSERT_TRUE(parsed.ok()) << parsed.reason();
  EXPECT_EQ(parsed->input.label, "mac");
  EXPECT_EQ(parsed->signature, *base64Decode("BBBB"));
}

TEST(GuardSignatureParse, OtherAlgIsReportedForTheCallerToRefuse) {
  Result<ParsedSignature> parsed =
      parseSignature(R"(sig=("@method");alg="rsa-pss-sha512";keyid="k")", "sig=:AAAA:");
  ASSERT_TRUE(parsed.ok()) << parsed.reason();
  EXPECT_EQ(parsed->input.alg, "rsa-pss-sha512");
  // Without any hmac-sha256 label, the first label is the one picked.
  parsed = parseSignature(R"(a=("@method");alg="ed25519", b=("@path"))", "a=:AAAA:, b=:AAAA:");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->input.label, "a");
  EXPECT_EQ(parsed->input.alg, "ed25519");
}

TEST(GuardSignatureParse, LabelMismatch) {
  Result<ParsedSignature> parsed = parseSignature(kB25Input, "sig-b26=:AAAA:");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.failure(), Failure::kLabelMismatch);
  EXPECT_EQ(parsed.reason(), "label_mismatch");
  EXPECT_EQ(verify(kB25Input, "other=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
                   rfcTestRequest(), sharedSecret()),
            "label_mismatch");
}

TEST(GuardSignatureParse, RepeatedLabelLastValueWins) {
  Result<ParsedSignature> parsed = parseSignature(
      R"(sig=("date"), other=("@path"), sig=("@method");created=5)", "sig=:AAAA:, sig=:BBBB:");
  ASSERT_TRUE(parsed.ok()) << parsed.reason();
  EXPECT_EQ(parsed->input.label, "sig");
  EXPECT_EQ(parsed->input.components, std::vector<std::string>{"@method"});
  EXPECT_EQ(parsed->input.created, 5);
  EXPECT_EQ(parsed->signature, *base64Decode("BBBB"));
}

TEST(GuardSignatureParse, MalformedSignatureInput) {
  for (std::string_view input : {
           "",
           "   ",
           R"(sig=("date")",                            // unbalanced
           R"(sig=("date" "@method")))",                // unbalanced the other way
           R"(sig="date")",                             // an Item, not an Inner List
           R"(sig=("da\te"))",                          // \t is no escape
           R"(sig=("date\"))",                          // unterminated
           R"(sig=("date" "@method)",                   // unterminated
           "sig=(\"d\x01te\")",                         // control character
           "sig=(\"d\xc3\xa9te\")",                     // not ASCII
           R"(sig=("date""@method"))",                  // no space between items
           R"(sig=("date" 1))",                         // an Integer item
           R"(sig=("date" date))",                      // a Token item
           R"(sig=("Date"))",                           // field names are lower case
           R"(sig=(""))",                               // an empty name
           R"(sig=("x y"))",                            // not a field name
           R"(sig=("date");created=abc)",               // not an Integer
           R"(sig=("date");created=1.5)",               // a Decimal
           R"(sig=("date");created="1")",               // a String
           R"(sig=("date");created=-1)",                // before 1970
           R"(sig=("date");created=1234567890123456)",  // over 15 digits
           R"(sig=("date");created=)",                  // no value
           R"(sig=("date");created)",                   // a Boolean
           R"(sig=("date");keyid=k)",                   // a Token
           R"(sig=("date");created=1;created=2)",       // repeated
           R"(sig=("date");created=1 garbage)",         // trailing garbage
           R"(sig=("date")x)",                          // trailing garbage
           R"(sig=("date") ;created=1)",                // space before a parameter
           R"(sig=("date"),)",                          // trailing comma
           R"(sig=("date"),,b=())",                     // empty member
           "sig",                                       // a bare key
           R"(Sig=("date"))",                           // keys are lower case
           R"(1sig=("date"))",                          // keys start with a letter or *
           R"(sig ("date"))",                           // no "="
           "\tsig=()",                                  // only SP may lead
       }) {
    EXPECT_EQ(failureOf(input), Failure::kMalformedSignatureInput) << input;
  }
}

TEST(GuardSignatureParse, WhitespaceThatRfc8941Allows) {
  for (std::string_view input : {
           R"(  sig=( "date"  "@method" );created=1)",
           "sig=(\"date\")\t,\tother=()",
           R"(sig=("date");  created=1)",
           R"(sig=("date") ,  other=())",
       }) {
    Result<ParsedSignature> parsed = parseSignature(input, "sig=:AA==:");
    EXPECT_TRUE(parsed.ok()) << input << ": " << parsed.reason();
  }
}

TEST(GuardSignatureParse, ComponentParametersAreRefused) {
  for (std::string_view input : {
           R"(sig=("example-dict";sf))",
           R"(sig=("example-dict";key="a"))",
           R"(sig=("example-header";bs))",
           R"(sig=("@authority";req))",
           R"(sig=("trailer";tr))",
           R"(sig=("@query-param";name="pet"))",
           R"(sig=("date" "content-type";foo=1))",
       }) {
    EXPECT_EQ(failureOf(input), Failure::kUnsupportedComponentParameter) << input;
  }
}

TEST(GuardSignatureParse, UnsupportedComponentsAndParameters) {
  EXPECT_EQ(failureOf(R"(sig=("@status"))"), Failure::kUnsupportedComponent);
  EXPECT_EQ(failureOf(R"(sig=("@query-param"))"), Failure::kUnsupportedComponent);
  EXPECT_EQ(failureOf(R"(sig=("@signature-params"))"), Failure::kUnsupportedComponent);
  EXPECT_EQ(failureOf(R"(sig=("@Method"))"), Failure::kUnsupportedComponent);
  EXPECT_EQ(failureOf(R"(sig=("date");context="x")"), Failure::kUnsupportedSignatureParameter);
  EXPECT_EQ(failureOf(R"(sig=("date");created=1;foo)"), Failure::kUnsupportedSignatureParameter);
}

TEST(GuardSignatureParse, ReasonNames) {
  EXPECT_EQ(failureName(Failure::kUnsupportedComponentParameter),
            "unsupported_component_parameter");
  EXPECT_EQ(failureName(Failure::kMalformedSignatureInput), "malformed_signature_input");
  EXPECT_EQ(failureName(Failure::kMissingComponent), "missing_component");
  EXPECT_EQ(failureName(Failure::kLabelMismatch), "label_mismatch");
  EXPECT_EQ(failureName(Failure::kTooLarge), "too_large");
}

TEST(GuardSignatureParse, DuplicateComponent) {
  EXPECT_EQ(failureOf(R"(sig=("date" "@method" "date"))"), Failure::kDuplicateComponent);
  EXPECT_EQ(failureOf(R"(sig=("@path" "@path"))"), Failure::kDuplicateComponent);
  EXPECT_EQ(failureName(Failure::kDuplicateComponent), "duplicate_component");
}

TEST(GuardSignatureParse, MalformedSignature) {
  for (std::string_view signature : {
           "",
           "sig=:abc",        // unterminated
           "sig=:a$bc:",      // not base64
           "sig=:abcde:",     // a length no encoding has
           "sig=:ab=c:",      // padding inside
           "sig=:abc==:",     // wrong padding
           "sig=:AAAA:;x=1",  // a parameter
           R"(sig="AAAA")",   // a String
           "sig=(:AAAA:)",    // an Inner List
           "sig=:AAAA:,",     // trailing comma
           "sig",             // a bare key
       }) {
    Result<ParsedSignature> parsed = parseSignature(R"(sig=("date"))", signature);
    ASSERT_FALSE(parsed.ok()) << signature;
    EXPECT_EQ(parsed.failure(), Failure::kMalformedSignature) << signature;
  }
}

TEST(GuardSignatureParse, SizeBounds) {
  std::string members;
  for (int i = 0; i < 8; ++i) members += (i > 0 ? ", s" : "s") + std::to_string(i) + "=()";
  EXPECT_TRUE(parseSignature(members, "s0=:AA==:").ok());
  EXPECT_EQ(failureOf(members + ", s8=()"), Failure::kTooLarge);
  std::string signatures = "sig=:AA==:";
  for (int i = 0; i < 8; ++i) signatures += ", s" + std::to_string(i) + "=:AA==:";
  EXPECT_EQ(failureOf(R"(sig=("date"))", signatures), Failure::kTooLarge);

  auto components = [](int count) {
    std::string list = "sig=(";
    for (int i = 0; i < count; ++i) list += (i > 0 ? " \"x-h" : "\"x-h") + std::to_string(i) + "\"";
    return list + ")";
  };
  Result<ParsedSignature> parsed = parseSignature(components(32), "sig=:AA==:");
  ASSERT_TRUE(parsed.ok()) << parsed.reason();
  EXPECT_EQ(parsed->input.components.size(), 32u);
  EXPECT_EQ(failureOf(components(33)), Failure::kTooLarge);

  std::string huge = R"(sig=("date");keyid=")" + std::string(kMaxFieldBytes, 'k') + "\"";
  EXPECT_EQ(failureOf(huge), Failure::kTooLarge);
  EXPECT_EQ(failureName(Failure::kTooLarge), "too_large");
  std::string exact = R"(sig=("date");keyid=")";
  exact += std::string(kMaxFieldBytes - exact.size() - 1, 'k') + "\"";
  ASSERT_EQ(exact.size(), kMaxFieldBytes);
  EXPECT_TRUE(parseSignature(exact, "sig=:AA==:").ok());
  EXPECT_EQ(failureOf(R"(sig=("date"))", "sig=:" + std::string(kMaxFieldBytes, 'A') + ":"),
            Failure::kTooLarge);
}

// Pseudo-random bytes, then the same over the characters the grammar gives meaning to, then
// RFC 9421's own header cut and changed at random places: no crash, and (but for some of the
// mutations) a refusal.
TEST(GuardSignatureParse, PseudoRandomInputIsRefused) {
  std::mt19937 random(9421);
  auto garbage = [&](std::string_view alphabet) {
    std::string text(1 + random() % 200, '\0');
    for (char& c : text) {
      c = alphabet.empty() ? static_cast<char>(random() & 0xff)
                           : alphabet[random() % alphabet.size()];
    }
    return text;
  };
  for (int i = 0; i < 300; ++i) {
    std::string input = garbage(i < 150 ? "" : "sig=(\"@method date\");:AB+/*-_.,\t \\1");
    Result<ParsedSignature> parsed = parseSignature(input, input);
    EXPECT_FALSE(parsed.ok()) << testing::PrintToString(input);
    EXPECT_FALSE(parseContentDigest(input).ok()) << testing::PrintToString(input);
  }
  FakeRequest request = rfcTestRequest();
  for (int i = 0; i < 300; ++i) {
    std::string input(kB25Input);
    std::string signature(kB25Signature);
    for (int edits = 1 + static_cast<int>(random() % 3); edits > 0; --edits) {
      std::string& text = random() % 2 ? input : signature;
      size_t at = random() % (text.size() + 1);
      switch (random() % 3) {
        case 0:
          if (at < text.size()) text[at] = static_cast<char>(random() & 0xff);
          break;
        case 1:
          text.erase(at, 1 + random() % 8);
          break;
        default:
          text.insert(at, 1, "()\";=,:\\ "[random() % 9]);
      }
    }
    Result<ParsedSignature> parsed = parseSignature(input, signature);
    if (!parsed) continue;
    Result<std::string> base = signatureBase(parsed->input, request.view());
    if (base) verifyHmacSha256(sharedSecret(), *base, parsed->signature);
  }
}

// --- Content-Digest (RFC 9530) ------------------------------------------------------------------

std::string digestHeader(std::string_view algorithm, std::string_view base64) {
  return std::string(algorithm) + "=:" + std::string(base64) + ":";
}

TEST(GuardContentDigest, HeaderOfRfc9530Example) {
  EXPECT_EQ(contentDigestHeader(kBody), digestHeader("sha-256", kBodySha256));
}

TEST(GuardContentDigest, BothAlgorithmsMatchTheRfcBody) {
  for (auto [algorithm, value] :
       {std::pair{DigestAlgorithm::kSha256, digestHeader("sha-256", kBodySha256)},
        std::pair{DigestAlgorithm::kSha512, digestHeader("sha-512", kBodySha512)}}) {
    Result<DigestCheck> check = DigestCheck::fromHeader(value);
    ASSERT_TRUE(check.ok()) << check.reason();
    EXPECT_EQ(check->algorithm(), algorithm);
    EXPECT_TRUE(check->update(kBody));
    EXPECT_TRUE(check->matches()) << value;
  }
}

TEST(GuardContentDigest, StreamedInChunks) {
  for (size_t chunk : {1, 3, 7, 18}) {
    Result<DigestCheck> check = DigestCheck::fromHeader(digestHeader("sha-512", kBodySha512));
    ASSERT_TRUE(check.ok());
    for (size_t at = 0; at < kBody.size(); at += chunk) {
      EXPECT_TRUE(check->update(kBody.substr(at, chunk)));
    }
    EXPECT_TRUE(check->update(""));
    EXPECT_TRUE(check->matches()) << chunk;
  }
}

TEST(GuardContentDigest, ChangedBodyFails) {
  Result<DigestCheck> check = DigestCheck::fromHeader(digestHeader("sha-256", kBodySha256));
  ASSERT_TRUE(check.ok());
  check->update(R"({"hello": )");
  check->update(R"("World"})");
  EXPECT_FALSE(check->matches());
  EXPECT_FALSE(check->matches());  // the same answer again
  EXPECT_FALSE(check->update("x"));
  // Truncated, and extended.
  check = DigestCheck::fromHeader(digestHeader("sha-256", kBodySha256));
  check->update(kBody.substr(0, 17));
  EXPECT_FALSE(check->matches());
  check = DigestCheck::fromHeader(digestHeader("sha-256", kBodySha256));
  check->update(kBody);
  check->update("\n");
  EXPECT_FALSE(check->matches());
}

TEST(GuardContentDigest, MatchesEndsTheDigest) {
  Result<DigestCheck> check = DigestCheck::fromHeader(contentDigestHeader(""));
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->matches());
  EXPECT_FALSE(check->update("late"));
  EXPECT_TRUE(check->matches());
}

TEST(GuardContentDigest, AlgorithmChoice) {
  std::string both =
      digestHeader("sha-512", kBodySha512) + ", " + digestHeader("sha-256", kBodySha256);
  Result<ContentDigest> digest = parseContentDigest(both);
  ASSERT_TRUE(digest.ok()) << digest.reason();
  EXPECT_EQ(digest->algorithm, DigestAlgorithm::kSha256);
  EXPECT_EQ(digest->digest, *base64Decode(kBodySha256));

  digest = parseContentDigest("md5=:AAAA:, " + digestHeader("sha-512", kBodySha512) + ", x=:AA==:");
  ASSERT_TRUE(digest.ok()) << digest.reason();
  EXPECT_EQ(digest->algorithm, DigestAlgorithm::kSha512);

  digest = parseContentDigest("md5=:AAAA:, sha=:AAAA:, unixsum=:AAAA:");
  ASSERT_FALSE(digest.ok());
  EXPECT_EQ(digest.failure(), Failure::kUnsupportedDigestAlgorithm);
  EXPECT_EQ(digest.reason(), "unsupported_digest_algorithm");
}

TEST(GuardContentDigest, MalformedHeaders) {
  for (std::string value : {
           std::string(),
           "sha-256=:" + std::string(kBodySha512) + ":",             // sha-512's length
           "sha-512=:" + std::string(kBodySha256) + ":",             // sha-256's length
           std::string("sha-256=:AAAA:"),                            // too short
           digestHeader("sha-256", kBodySha256) + ", sha-512=:AA:",  // the unused one is bad
           "sha-256=" + std::string(kBodySha256),                    // not a Byte Sequence
           "sha-256=\"" + std::string(kBodySha256) + "\"",           // a String
           digestHeader("sha-256", kBodySha256) + ";q=1",            // a parameter
           digestHeader("sha-256", kBodySha256) + ",",               // trailing comma
           "SHA-256=:" + std::string(kBodySha256) + ":",             // keys are lower case
           "md5=\"x\", " + digestHeader("sha-256", kBodySha256),     // any member malformed
       }) {
    Result<DigestCheck> check = DigestCheck::fromHeader(value);
    ASSERT_FALSE(check.ok()) << value;
    EXPECT_EQ(check.failure(), Failure::kMalformedContentDigest) << value;
  }
  EXPECT_EQ(DigestCheck::fromHeader(std::string(kMaxFieldBytes + 1, 'a')).failure(),
            Failure::kTooLarge);
}

// The whole of what the plugin checks: a signature over method, target URI and Content-Digest,
// then the body against the digest.
TEST(GuardContentDigest, BodyChangedAfterSigning) {
  std::string key = "a key of 32 bytes, for this test";
  FakeRequest request = makeRequest("api.example", "/v1/orders?id=42");
  request.header("content-digest", contentDigestHeader(kBody));
  std::string input =
      R"(sig1=("@method" "@target-uri" "content-digest");created=1700000000;keyid="client-1")"
      R"(;nonce="5b1f";alg="hmac-sha256")";
  std::string signature = sign(input, request, key);
  EXPECT_EQ(verify(input, signature, request, key), "ok");

  Result<DigestCheck> check =
      DigestCheck::fromHeader(request.headers.find("content-digest")->second);
  ASSERT_TRUE(check.ok());
  check->update(R"({"hello": "world!"})");
  EXPECT_FALSE(check->matches());

  // A new digest for the changed body breaks the signature instead.
  request.headers.find("content-digest")->second = contentDigestHeader(R"({"hello": "world!"})");
  EXPECT_EQ(verify(input, signature, request, key), "bad_signature");
  // So does another target.
  request = makeRequest("api.example", "/v1/orders?id=43");
  request.header("content-digest", contentDigestHeader(kBody));
  EXPECT_EQ(verify(input, signature, request, key), "bad_signature");
}

// --- HMAC and base64 ----------------------------------------------------------------------------

// RFC 4231, 4.3 (test case 2).
TEST(GuardHmac, Rfc4231Vector) {
  std::string mac = hmacSha256("Jefe", "what do ya want for nothing?");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : mac) hex += {kHex[c >> 4], kHex[c & 15]};
  EXPECT_EQ(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(GuardHmac, LengthMismatchAndEmptyKey) {
  std::string mac = hmacSha256("key", "data");
  ASSERT_EQ(mac.size(), kHmacSha256Bytes);
  EXPECT_TRUE(verifyHmacSha256("key", "data", mac));
  EXPECT_FALSE(verifyHmacSha256("key", "data", mac.substr(0, 31)));
  EXPECT_FALSE(verifyHmacSha256("key", "data", mac + '\0'));
  EXPECT_FALSE(verifyHmacSha256("key", "data", ""));
  EXPECT_EQ(hmacSha256("", "data"), "");
  EXPECT_FALSE(verifyHmacSha256("", "data", std::string(32, '\0')));
  EXPECT_TRUE(cryptoAvailable());
}

TEST(GuardHmac, ThreadsShareNothing) {
  std::string key = sharedSecret();
  std::string base(kB25Base);
  std::string expected = *base64Decode("pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=");
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int& failed : failures) {
    threads.emplace_back([&, counter = &failed] {
      for (int i = 0; i < 200; ++i) {
        if (!verifyHmacSha256(key, base, expected) || verifyHmacSha256("other", base, expected)) {
          ++*counter;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

TEST(GuardBase64, RoundTripAndPadding) {
  for (std::string_view bytes : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    std::string encoded = base64Encode(bytes);
    EXPECT_EQ(base64Decode(encoded), bytes) << encoded;
    std::string unpadded = encoded.substr(0, encoded.find('='));
    EXPECT_EQ(base64Decode(unpadded), bytes) << unpadded;
  }
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(base64Decode(base64Encode(all)), all);
}

TEST(GuardBase64, Refusals) {
  for (std::string_view text :
       {"Z", "Zm9vY", "Zm=v", "Zm9v=", "Zm8===", "Z===", "Zm-_", "Zm 8=", "=", "==", "Zm8=Zm8="}) {
    EXPECT_EQ(base64Decode(text), std::nullopt) << text;
  }
}

}  // namespace
}  // namespace tessera::plugins::guard
