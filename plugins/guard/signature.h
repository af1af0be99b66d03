#pragma once

// HTTP Message Signatures (RFC 9421) and Content-Digest (RFC 9530) for the `guard` plugin, as
// pure logic: no proxy types, no clock, no key lookup, no I/O. The plugin drives it per request:
//   1. parseSignature(Signature-Input, Signature) picks one signature and checks its syntax;
//   2. the plugin applies its policy to the result (alg is hmac-sha256, the components it
//      requires are covered, created/expires against its clock, keyid and nonce present);
//   3. it looks the key up by keyid (asynchronously, elsewhere), then signatureBase() and
//      verifyHmacSha256();
//   4. when content-digest is covered, a DigestCheck follows the body, and matches() decides.
//
// Only what that needs is supported: request signatures with HMAC-SHA256, the derived components
// of a request (RFC 9421, 2.2) but @query-param, and header fields without component parameters
// (no ;sf, ;key, ;bs, ;req, ;tr, ;name). Anything else is refused, never ignored: a component or
// parameter this code skipped would be one the signer thinks is protected and is not.
//
// Errors are values (Failure), never exceptions. Their names are short, stable snake_case: they
// go into the reason the client sees, the audit log and metric names.
//
// Threads: every function may run on any number of threads at once. A DigestCheck belongs to one
// request, and is used by one thread at a time.

#include <openssl/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::plugins::guard {

// Far above a real Signature-Input, Signature or Content-Digest (a few hundred bytes); it bounds
// what an unauthenticated client makes the parser read. A longer value is refused unread.
inline constexpr size_t kMaxFieldBytes = 8 * 1024;
// Members of one Dictionary (labels, digest algorithms), counting repeated keys.
inline constexpr size_t kMaxDictionaryMembers = 8;
// Components covered by one signature.
inline constexpr size_t kMaxCoveredComponents = 32;

inline constexpr std::string_view kHmacSha256 = "hmac-sha256";
inline constexpr size_t kHmacSha256Bytes = 32;

// Why a header, a signature base or a digest was refused.
enum class Failure {
  // "too_large": a value over kMaxFieldBytes, a Dictionary over kMaxDictionaryMembers, or an
  // Inner List over kMaxCoveredComponents.
  kTooLarge,
  // "malformed_signature_input": Signature-Input is empty, is not an RFC 8941 Dictionary of Inner
  // Lists of Strings, or breaks RFC 9421: a field name not in lower case, a parameter repeated,
  // created or expires not a non-negative Integer, keyid/nonce/alg/tag not a String.
  kMalformedSignatureInput,
  // "malformed_signature": Signature is empty or not a Dictionary of Byte Sequences without
  // parameters.
  kMalformedSignature,
  // "unsupported_component": a derived component this code does not resolve (@status,
  // @query-param, any unknown @name), or @signature-params listed as covered (RFC 9421, 2.3).
  kUnsupportedComponent,
  // "unsupported_component_parameter": a component identifier with any parameter: ;sf, ;key,
  // ;bs, ;tr (RFC 9421, 2.1.1 to 2.1.4), ;name (2.2.8), ;req (2.4), or one of no RFC.
  kUnsupportedComponentParameter,
  // "unsupported_signature_parameter": a signature parameter other than created, expires, keyid,
  // nonce, alg and tag (RFC 9421, 2.3).
  kUnsupportedSignatureParameter,
  // "duplicate_component": one signature covers a component twice (RFC 9421, 2.5).
  kDuplicateComponent,
  // "label_mismatch": Signature has no member under the label picked from Signature-Input.
  kLabelMismatch,
  // "missing_component": a covered header field the request lacks, or an empty authority or
  // request-target.
  kMissingComponent,
  // "bad_component_value": a component value holding CR, LF or NUL, which would forge a line of
  // the signature base.
  kBadComponentValue,
  // "unsupported_request_target": @target-uri, @path or @query of a request-target in
  // absolute-form or authority-form; only origin-form and asterisk-form are resolved.
  kUnsupportedRequestTarget,
  // "malformed_content_digest": Content-Digest is empty, not a Dictionary of Byte Sequences
  // without parameters, or holds a sha-256 or sha-512 digest of the wrong length.
  kMalformedContentDigest,
  // "unsupported_digest_algorithm": Content-Digest names neither sha-256 nor sha-512.
  kUnsupportedDigestAlgorithm,
  // "crypto_error": OpenSSL failed (its error queue is cleared). Not the client's fault.
  kCryptoError,
};

std::string_view failureName(Failure failure);

// A value or the Failure that prevented it, in the manner of C++23's std::expected.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}   // NOLINT: implicit, as std::expected
  Result(Failure failure) : failure_(failure) {}  // NOLINT: implicit, as std::unexpected
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  // Only when ok().
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  // Only when !ok().
  Failure failure() const { return failure_; }
  std::string_view reason() const { return failureName(failure_); }

 private:
  std::optional<T> value_;
  Failure failure_ = Failure::kCryptoError;
};

// One member of Signature-Input (RFC 9421, 4.1): what a signature covers, and its parameters.
struct SignatureInput {
  std::string label;                    // the Dictionary key
  std::vector<std::string> components;  // in order: "@method", "content-digest"…; no duplicates
  std::optional<int64_t> created;       // Unix seconds
  std::optional<int64_t> expires;       // Unix seconds
  std::optional<std::string> keyid;
  std::optional<std::string> nonce;
  std::optional<std::string> alg;
  std::optional<std::string> tag;
  // The @signature-params value (RFC 9421, 2.3): the canonical serialization (RFC 8941, 4.1) of
  // the Inner List and its parameters, in the order received. parseSignature writes it from the
  // same text as the fields above; changing those fields does not change it.
  std::string signature_params;
};

struct ParsedSignature {
  SignatureInput input;
  std::string signature;  // the Byte Sequence under input.label in Signature, decoded
};

// Parses both header values (each the field's lines joined with ", ", RFC 9110, 5.3) and picks
// one signature: when Signature-Input has several labels, the first (in Dictionary order) whose
// alg is "hmac-sha256", else the first. Signature must hold the same label (kLabelMismatch).
// Strict RFC 8941 parsing, in time linear in the input: the whole header is refused if any member
// is malformed, even one not picked. A repeated Dictionary key keeps its first position and its
// last value (RFC 8941, 4.2.2). Neither alg nor any time is checked here.
Result<ParsedSignature> parseSignature(std::string_view signature_input,
                                       std::string_view signature);

// What signatureBase() reads of a request. Views must outlive the call.
struct MessageView {
  std::string_view method;     // as sent: "POST"
  std::string_view scheme;     // "https"
  std::string_view authority;  // the Host header as sent: host[:port]
  std::string_view target;     // the request-target as sent: "/path?query", or "*"
  // Every line of the header field `lower_name`, in order; empty when the request has none.
  std::function<std::vector<std::string_view>(std::string_view lower_name)> fields;
};

// The value of one component (RFC 9421, 2.1 and 2.2):
//   @method          the method as sent (case-sensitive);
//   @scheme          the scheme, lower-cased;
//   @authority       the authority lower-cased, without the scheme's default port (:443 for
//                    https, :80 for http), as RFC 9110, 4.2.3 normalizes it;
//   @target-uri      scheme "://" @authority, then the request-target (nothing for "*");
//   @request-target  the request-target as sent;
//   @path            the target's path ("/" for "*"), percent-encoding untouched;
//   @query           "?" and the target's query: "?" alone when there is none or it is empty;
//   a field name     each line with leading and trailing SP and HTAB removed, joined with ", ".
// `component` is as in SignatureInput::components.
Result<std::string> componentValue(std::string_view component, const MessageView& message);

// The signature base (RFC 9421, 2.5): one line `"<component>": <value>` per covered component, in
// order, then `"@signature-params": <signature_params>`; lines joined with "\n", no final newline.
// `input` is as parseSignature() made it: components are not checked for duplicates again.
Result<std::string> signatureBase(const SignatureInput& input, const MessageView& message);

// HMAC-SHA256 (RFC 2104) of `data` under `key`: 32 bytes. Empty if `key` is empty (anyone can
// compute an HMAC under an empty key, so it is never a secret) or OpenSSL fails.
std::string hmacSha256(std::string_view key, std::string_view data);

// Whether `signature` is HMAC-SHA256(key, base), compared in constant time (CRYPTO_memcmp). False
// for a signature that is not 32 bytes long, an empty key, or when OpenSSL fails: an error never
// lets a request through.
bool verifyHmacSha256(std::string_view key, std::string_view base, std::string_view signature);

// Whether OpenSSL offers HMAC, SHA-256 and SHA-512 here (a provider configuration can take them
// away). For the plugin's factory, to refuse a config at start-up rather than every request later.
bool cryptoAvailable();

// --- Content-Digest (RFC 9530) ------------------------------------------------------------------

enum class DigestAlgorithm { kSha256, kSha512 };

// "sha-256", "sha-512": the keys of RFC 9530, 5.
std::string_view digestAlgorithmName(DigestAlgorithm algorithm);

struct ContentDigest {
  DigestAlgorithm algorithm;
  std::string digest;  // raw bytes: 32 for sha-256, 64 for sha-512
};

// The digest to check from a Content-Digest value: sha-256 if present, else sha-512. Keys of
// other algorithms are skipped (RFC 9530, 2), though their values must still be Byte Sequences.
Result<ContentDigest> parseContentDigest(std::string_view value);

// "sha-256=:<base64>:": what a client sends for `body`. Empty if OpenSSL fails.
std::string contentDigestHeader(std::string_view body);

struct EvpMdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const;
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxFree>;

// Checks a request body against its Content-Digest as the body streams through: update() per
// chunk, matches() once the body has ended. Move-only.
class DigestCheck {
 public:
  // parseContentDigest(), then a digest context for the chosen algorithm.
  static Result<DigestCheck> fromHeader(std::string_view value);

  DigestAlgorithm algorithm() const { return algorithm_; }

  // Feeds the next chunk. False, and the chunk ignored, once OpenSSL has failed (matches() is
  // then false) or once matches() has been called (its answer stands).
  bool update(std::string_view chunk);

  // Whether the chunks fed so far digest to the header's value, compared in constant time. The
  // first call ends the digest; later calls return the same answer.
  bool matches();

 private:
  DigestCheck(EvpMdCtxPtr ctx, ContentDigest expected)
      : ctx_(std::move(ctx)),
        algorithm_(expected.algorithm),
        expected_(std::move(expected.digest)) {}

  EvpMdCtxPtr ctx_;
  DigestAlgorithm algorithm_;
  std::string expected_;
  bool failed_ = false;
  std::optional<bool> matched_;  // set by the first matches()
};

}  // namespace tessera::plugins::guard
