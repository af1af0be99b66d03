// The RFC 8941 (Structured Field Values) parsing here is hand-written: Debian ships no maintained
// C or C++ library for it, and tessera needs only a small subset (Dictionaries of Inner Lists of
// Strings with parameters, and of Byte Sequences). Each step names the RFC 8941 section whose
// algorithm it follows. It is strict (anything outside the subset is refused, not skipped),
// single-pass over input of bounded size, and allocates only for the values it keeps.

#include "plugins/guard/signature.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plugins/encoding.h"

namespace tessera::plugins::guard {
namespace {

// nullopt: no failure. For steps that produce nothing but may fail.
using Error = std::optional<Failure>;

// --- OpenSSL handles ----------------------------------------------------------------------------

struct EvpMdFree {
  void operator()(EVP_MD* md) const { EVP_MD_free(md); }
};
struct EvpMacFree {
  void operator()(EVP_MAC* mac) const { EVP_MAC_free(mac); }
};
struct EvpMacCtxFree {
  void operator()(EVP_MAC_CTX* ctx) const { EVP_MAC_CTX_free(ctx); }
};
using EvpMdPtr = std::unique_ptr<EVP_MD, EvpMdFree>;
using EvpMacPtr = std::unique_ptr<EVP_MAC, EvpMacFree>;
using EvpMacCtxPtr = std::unique_ptr<EVP_MAC_CTX, EvpMacCtxFree>;

// A failed call leaves OpenSSL's error queue filled; a stale entry would be misread by the next
// SSL_get_error() on this worker thread.
template <typename T>
T cleared(T value) {
  ERR_clear_error();
  return value;
}

EvpMdPtr fetchDigest(const char* name) {
  EvpMdPtr md(EVP_MD_fetch(nullptr, name, nullptr));
  if (!md) ERR_clear_error();
  return md;
}

// Fetched once per process: an implicit fetch (EVP_sha256(), a digest by name) takes a lock on
// every call. Null if the provider configuration offers no such digest.
const EVP_MD* digestMd(DigestAlgorithm algorithm) {
  static const EvpMdPtr sha256 = fetchDigest("SHA2-256");
  static const EvpMdPtr sha512 = fetchDigest("SHA2-512");
  return algorithm == DigestAlgorithm::kSha256 ? sha256.get() : sha512.get();
}

size_t digestSize(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::kSha256 ? 32 : 64;
}

// EVP_MAC_CTX_new takes it non-const; it only counts a reference.
EVP_MAC* hmacMac() {
  static const EvpMacPtr hmac = [] {
    EvpMacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (!mac) ERR_clear_error();
    return mac;
  }();
  return hmac.get();
}

EvpMacCtxPtr newHmacSha256Context() {
  EVP_MAC* hmac = hmacMac();
  if (hmac == nullptr) return nullptr;
  EvpMacCtxPtr ctx(EVP_MAC_CTX_new(hmac));
  if (!ctx) return cleared(nullptr);
  char digest[] = "SHA2-256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_MAC_CTX_set_params(ctx.get(), params) != 1) return cleared(nullptr);
  return ctx;
}

// One context per worker thread, re-keyed by each EVP_MAC_init: a request then costs no
// allocation and no fetch. Null for good if OpenSSL could not make one.
EVP_MAC_CTX* threadHmacContext() {
  thread_local const EvpMacCtxPtr ctx = newHmacSha256Context();
  return ctx.get();
}

// --- Characters ---------------------------------------------------------------------------------

bool isLcalpha(char c) { return c >= 'a' && c <= 'z'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 8941, 3.1.2: key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
bool isKeyChar(char c) {
  return isLcalpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*';
}

// RFC 9110, 5.6.2 tchar, less the upper-case letters: RFC 9421, 2.1 names a field by its
// lower-cased name, and a signer that did not lower-case it signed something else.
bool isLowerTchar(char c) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return isLcalpha(c) || isDigit(c) || kSymbols.find(c) != std::string_view::npos;
}

// RFC 8941, 4.1.6: only a backslash and a double quote are escaped.
void appendQuoted(std::string& out, std::string_view text) {
  out.push_back('"');
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

// --- RFC 8941 parsing ---------------------------------------------------------------------------

class Cursor {
 public:
  explicit Cursor(std::string_view text) : text_(text) {}

  bool atEnd() const { return pos_ >= text_.size(); }
  // '\0' at the end: no caller accepts it, so it needs no separate test.
  char peek() const { return atEnd() ? '\0' : text_[pos_]; }
  char next() { return text_[pos_++]; }
  bool consume(char c) {
    if (atEnd() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void skipSp() {
    while (!atEnd() && text_[pos_] == ' ') ++pos_;
  }
  // OWS: RFC 8941 allows HTAB as well as SP around a Dictionary's commas.
  void skipOws() {
    while (!atEnd() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  size_t pos() const { return pos_; }
  std::string_view since(size_t start) const { return text_.substr(start, pos_ - start); }

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

// RFC 8941, 4.2.3.3.
std::optional<std::string_view> parseKey(Cursor& in) {
  if (!isLcalpha(in.peek()) && in.peek() != '*') return std::nullopt;
  size_t start = in.pos();
  while (!in.atEnd() && isKeyChar(in.peek())) in.next();
  return in.since(start);
}

// RFC 8941, 4.2.5.
std::optional<std::string> parseString(Cursor& in) {
  if (!in.consume('"')) return std::nullopt;
  std::string out;
  while (!in.atEnd()) {
    auto c = static_cast<unsigned char>(in.next());
    if (c == '"') return out;
    if (c == '\\') {
      if (in.atEnd() || (in.peek() != '"' && in.peek() != '\\')) return std::nullopt;
      c = static_cast<unsigned char>(in.next());
    } else if (c < 0x20 || c > 0x7e) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(c));
  }
  return std::nullopt;  // no closing quote
}

// RFC 8941, 4.2.4, Integers only: no parameter here is a Decimal, so "1.5" is refused whole.
std::optional<int64_t> parseInteger(Cursor& in) {
  bool negative = in.consume('-');
  int64_t value = 0;
  size_t digits = 0;
  while (isDigit(in.peek())) {
    if (++digits > 15) return std::nullopt;
    value = value * 10 + (in.next() - '0');
  }
  if (digits == 0 || in.peek() == '.') return std::nullopt;
  return negative ? -value : value;
}

// RFC 8941, 4.2.7.
std::optional<std::string> parseByteSequence(Cursor& in) {
  if (!in.consume(':')) return std::nullopt;
  size_t start = in.pos();
  while (!in.atEnd() && in.peek() != ':') in.next();
  std::string_view encoded = in.since(start);
  if (!in.consume(':')) return std::nullopt;
  return base64Decode(encoded);
}

// RFC 8941, 4.2.2, for Dictionaries whose members all have a value ("key=…"): a bare key (a
// Boolean true) is refused. `member` parses the value after "key=" and stores it.
template <typename Member>
Error parseDictionary(std::string_view text, Failure malformed, Member&& member) {
  if (text.size() > kMaxFieldBytes) return Failure::kTooLarge;
  Cursor in(text);
  in.skipSp();
  // An empty Dictionary is valid RFC 8941, but an empty header here only ever means a broken
  // client.
  if (in.atEnd()) return malformed;
  for (size_t count = 1;; ++count) {
    if (count > kMaxDictionaryMembers) return Failure::kTooLarge;
    std::optional<std::string_view> key = parseKey(in);
    if (!key || !in.consume('=')) return malformed;
    if (Error error = member(in, *key)) return error;
    in.skipOws();
    if (in.atEnd()) return std::nullopt;
    if (!in.consume(',')) return malformed;
    in.skipOws();
    if (in.atEnd()) return malformed;  // a trailing comma
  }
}

struct BytesMember {
  std::string key;
  std::string bytes;
};

std::string_view keyOf(const BytesMember& member) { return member.key; }
std::string_view keyOf(const SignatureInput& input) { return input.label; }

// RFC 8941, 4.2.2: a repeated key keeps its place and takes the new value.
template <typename Member>
void upsert(std::vector<Member>& members, Member member) {
  for (Member& existing : members) {
    if (keyOf(existing) == keyOf(member)) {
      existing = std::move(member);
      return;
    }
  }
  members.push_back(std::move(member));
}

// A Dictionary whose members are Byte Sequences without parameters (Signature, Content-Digest).
Result<std::vector<BytesMember>> parseBytesDictionary(std::string_view text, Failure malformed) {
  std::vector<BytesMember> members;
  Error error = parseDictionary(text, malformed, [&](Cursor& in, std::string_view key) -> Error {
    std::optional<std::string> bytes = parseByteSequence(in);
    // Neither RFC 9421 nor RFC 9530 defines a parameter here.
    if (!bytes || in.peek() == ';') return malformed;
    upsert(members, BytesMember{std::string(key), std::move(*bytes)});
    return std::nullopt;
  });
  if (error) return *error;
  return members;
}

// --- Signature-Input (RFC 9421, 4.1) ------------------------------------------------------------

enum class Component {
  kInvalid,      // neither a derived name nor a lower-case field name
  kUnsupported,  // a derived name not resolved here
  kField,
  kMethod,
  kTargetUri,
  kAuthority,
  kScheme,
  kRequestTarget,
  kPath,
  kQuery,
};

// RFC 9421, 2.2, less @query-param (it needs ;name) and @status (responses only).
Component classify(std::string_view name) {
  static constexpr std::pair<std::string_view, Component> kDerived[] = {
      {"@method", Component::kMethod},
      {"@target-uri", Component::kTargetUri},
      {"@authority", Component::kAuthority},
      {"@scheme", Component::kScheme},
      {"@request-target", Component::kRequestTarget},
      {"@path", Component::kPath},
      {"@query", Component::kQuery},
  };
  if (name.starts_with('@')) {
    for (const auto& [derived, component] : kDerived) {
      if (name == derived) return component;
    }
    return Component::kUnsupported;
  }
  if (name.empty() || !std::all_of(name.begin(), name.end(), isLowerTchar)) {
    return Component::kInvalid;
  }
  return Component::kField;
}

Error checkComponent(std::string_view name, const std::vector<std::string>& seen) {
  switch (classify(name)) {
    case Component::kInvalid:
      return Failure::kMalformedSignatureInput;
    case Component::kUnsupported:
      return Failure::kUnsupportedComponent;
    default:
      break;
  }
  // RFC 9421, 2.5: a verifier must refuse a component covered twice. The list is at most
  // kMaxCoveredComponents long, so the quadratic scan stays small.
  if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
    return Failure::kDuplicateComponent;
  }
  return std::nullopt;
}

// RFC 8941, 4.2.1.2, for an Inner List of Strings without parameters. Also starts the canonical
// serialization (RFC 8941, 4.1.1.1) of the list in out.signature_params.
Error parseCoveredComponents(Cursor& in, SignatureInput& out) {
  if (!in.consume('(')) return Failure::kMalformedSignatureInput;
  out.signature_params.push_back('(');
  while (true) {
    in.skipSp();
    if (in.consume(')')) break;
    if (out.components.size() == kMaxCoveredComponents) return Failure::kTooLarge;
    std::optional<std::string> name = parseString(in);
    if (!name) return Failure::kMalformedSignatureInput;
    if (in.peek() == ';') return Failure::kUnsupportedComponentParameter;
    if (Error error = checkComponent(*name, out.components)) return error;
    if (in.peek() != ' ' && in.peek() != ')') return Failure::kMalformedSignatureInput;
    if (!out.components.empty()) out.signature_params.push_back(' ');
    appendQuoted(out.signature_params, *name);
    out.components.push_back(std::move(*name));
  }
  out.signature_params.push_back(')');
  return std::nullopt;
}

// The parameters of RFC 9421, 2.3. A bit each, to refuse a repeated one.
enum ParameterBit : unsigned {
  kCreatedBit = 1,
  kExpiresBit = 2,
  kKeyidBit = 4,
  kNonceBit = 8,
  kAlgBit = 16,
  kTagBit = 32,
};

struct ParameterSlot {
  std::string_view name;
  ParameterBit bit;
  std::optional<int64_t> SignatureInput::*integer;
  std::optional<std::string> SignatureInput::*string;
};

constexpr ParameterSlot kParameters[] = {
    {"created", kCreatedBit, &SignatureInput::created, nullptr},
    {"expires", kExpiresBit, &SignatureInput::expires, nullptr},
    {"keyid", kKeyidBit, nullptr, &SignatureInput::keyid},
    {"nonce", kNonceBit, nullptr, &SignatureInput::nonce},
    {"alg", kAlgBit, nullptr, &SignatureInput::alg},
    {"tag", kTagBit, nullptr, &SignatureInput::tag},
};

// One parameter's value after "key=", stored in `out` and serialized canonically.
Error parseParameterValue(Cursor& in, const ParameterSlot& slot, SignatureInput& out) {
  out.signature_params.append(";").append(slot.name).append("=");
  if (slot.integer != nullptr) {
    std::optional<int64_t> value = parseInteger(in);
    // A time before 1970 is no real signature's; a negative one would only confuse the clock
    // arithmetic of the caller.
    if (!value || *value < 0) return Failure::kMalformedSignatureInput;
    out.*slot.integer = *value;
    out.signature_params.append(std::to_string(*value));
    return std::nullopt;
  }
  std::optional<std::string> value = parseString(in);
  if (!value) return Failure::kMalformedSignatureInput;
  appendQuoted(out.signature_params, *value);
  out.*slot.string = std::move(*value);
  return std::nullopt;
}

// RFC 8941, 4.2.3.2. A parameter repeated is refused rather than "last wins": its canonical
// serialization would differ from what was received, and no honest signer sends one.
Error parseSignatureParameters(Cursor& in, SignatureInput& out) {
  unsigned seen = 0;
  while (in.consume(';')) {
    in.skipSp();
    std::optional<std::string_view> key = parseKey(in);
    if (!key) return Failure::kMalformedSignatureInput;
    const ParameterSlot* slot = nullptr;
    for (const ParameterSlot& candidate : kParameters) {
      if (candidate.name == *key) slot = &candidate;
    }
    if (slot == nullptr) return Failure::kUnsupportedSignatureParameter;
    // No parameter of RFC 9421, 2.3 is a Boolean, so a bare key is malformed.
    if ((seen & slot->bit) != 0 || !in.consume('=')) return Failure::kMalformedSignatureInput;
    seen |= slot->bit;
    if (Error error = parseParameterValue(in, *slot, out)) return error;
  }
  return std::nullopt;
}

// One member: "label=(…);params".
Error parseSignatureInputMember(Cursor& in, std::string_view label,
                                std::vector<SignatureInput>& inputs) {
  SignatureInput input;
  input.label = label;
  if (Error error = parseCoveredComponents(in, input)) return error;
  if (Error error = parseSignatureParameters(in, input)) return error;
  upsert(inputs, std::move(input));
  return std::nullopt;
}

Result<std::vector<SignatureInput>> parseSignatureInputs(std::string_view text) {
  std::vector<SignatureInput> inputs;
  Error error = parseDictionary(text, Failure::kMalformedSignatureInput,
                                [&inputs](Cursor& in, std::string_view label) {
                                  return parseSignatureInputMember(in, label, inputs);
                                });
  if (error) return *error;
  return inputs;
}

// --- Component values (RFC 9421, 2.1 and 2.2) ---------------------------------------------------

void appendLower(std::string& out, std::string_view text) {
  for (char c : text) out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
}

bool equalsLower(std::string_view text, std::string_view lower) {
  return std::equal(text.begin(), text.end(), lower.begin(), lower.end(), [](char a, char b) {
    return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
  });
}

// RFC 9421, 2.2.3 normalizes as RFC 9110, 4.2.3 does: a lower-case host, no default port.
Error appendAuthority(std::string& out, const MessageView& message) {
  if (message.authority.empty()) return Failure::kMissingComponent;
  std::string_view authority = message.authority;
  std::string_view default_port = equalsLower(message.scheme, "https")  ? ":443"
                                  : equalsLower(message.scheme, "http") ? ":80"
                                                                        : "";
  if (!default_port.empty() && authority.size() > default_port.size() &&
      authority.ends_with(default_port)) {
    authority.remove_suffix(default_port.size());
  }
  appendLower(out, authority);
  return std::nullopt;
}

// The path and query of the request-target (RFC 9110, 7.1): origin-form splits at the first "?";
// asterisk-form has neither. Absolute-form and authority-form are refused, not guessed at.
Error splitTarget(std::string_view target, std::string_view& path, std::string_view& query) {
  if (target == "*") {
    path = {};
    query = {};
    return std::nullopt;
  }
  if (target.empty()) return Failure::kMissingComponent;
  if (target.front() != '/') return Failure::kUnsupportedRequestTarget;
  size_t mark = target.find('?');
  path = target.substr(0, mark);
  query = mark == std::string_view::npos ? std::string_view() : target.substr(mark + 1);
  return std::nullopt;
}

std::string_view trimSpHtab(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t") - begin + 1);
}

// RFC 9421, 2.1: every line, trimmed, joined with ", ".
Error appendField(std::string& out, std::string_view name, const MessageView& message) {
  if (!message.fields) return Failure::kMissingComponent;
  std::vector<std::string_view> lines = message.fields(name);
  if (lines.empty()) return Failure::kMissingComponent;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out.append(", ");
    out.append(trimSpHtab(lines[i]));
  }
  return std::nullopt;
}

Error appendTargetComponent(std::string& out, Component component, const MessageView& message) {
  std::string_view path;
  std::string_view query;
  if (Error error = splitTarget(message.target, path, query)) return error;
  switch (component) {
    case Component::kTargetUri:
      if (message.scheme.empty()) return Failure::kMissingComponent;
      appendLower(out, message.scheme);
      out.append("://");
      if (Error error = appendAuthority(out, message)) return error;
      if (message.target != "*") out.append(message.target);
      return std::nullopt;
    case Component::kPath:
      // RFC 9421, 2.2.6: an empty path is "/".
      out.append(path.empty() ? "/" : path);
      return std::nullopt;
    default:  // Component::kQuery; RFC 9421, 2.2.7: "?" alone when there is no query.
      out.push_back('?');
      out.append(query);
      return std::nullopt;
  }
}

Error appendValue(std::string& out, std::string_view name, const MessageView& message) {
  Component component = classify(name);
  switch (component) {
    case Component::kField:
      return appendField(out, name, message);
    case Component::kMethod:
      if (message.method.empty()) return Failure::kMissingComponent;
      out.append(message.method);
      return std::nullopt;
    case Component::kScheme:
      if (message.scheme.empty()) return Failure::kMissingComponent;
      appendLower(out, message.scheme);
      return std::nullopt;
    case Component::kAuthority:
      return appendAuthority(out, message);
    case Component::kRequestTarget:
      if (message.target.empty()) return Failure::kMissingComponent;
      out.append(message.target);
      return std::nullopt;
    case Component::kTargetUri:
    case Component::kPath:
    case Component::kQuery:
      return appendTargetComponent(out, component, message);
    default:
      return Failure::kUnsupportedComponent;
  }
}

// A CR or LF inside a value would end its line of the signature base early: the rest could pass
// for another component's line. The request parser should have refused such a value already.
Error appendCheckedValue(std::string& out, std::string_view name, const MessageView& message) {
  size_t start = out.size();
  if (Error error = appendValue(out, name, message)) return error;
  if (out.find_first_of(std::string_view("\r\n\0", 3), start) != std::string::npos) {
    return Failure::kBadComponentValue;
  }
  return std::nullopt;
}

}  // namespace

std::string_view failureName(Failure failure) {
  switch (failure) {
    case Failure::kTooLarge:
      return "too_large";
    case Failure::kMalformedSignatureInput:
      return "malformed_signature_input";
    case Failure::kMalformedSignature:
      return "malformed_signature";
    case Failure::kUnsupportedComponent:
      return "unsupported_component";
    case Failure::kUnsupportedComponentParameter:
      return "unsupported_component_parameter";
    case Failure::kUnsupportedSignatureParameter:
      return "unsupported_signature_parameter";
    case Failure::kDuplicateComponent:
      return "duplicate_component";
    case Failure::kLabelMismatch:
      return "label_mismatch";
    case Failure::kMissingComponent:
      return "missing_component";
    case Failure::kBadComponentValue:
      return "bad_component_value";
    case Failure::kUnsupportedRequestTarget:
      return "unsupported_request_target";
    case Failure::kMalformedContentDigest:
      return "malformed_content_digest";
    case Failure::kUnsupportedDigestAlgorithm:
      return "unsupported_digest_algorithm";
    case Failure::kCryptoError:
      return "crypto_error";
  }
  return "unknown";
}

Result<ParsedSignature> parseSignature(std::string_view signature_input,
                                       std::string_view signature) {
  Result<std::vector<SignatureInput>> inputs = parseSignatureInputs(signature_input);
  if (!inputs) return inputs.failure();
  auto chosen = std::find_if(inputs->begin(), inputs->end(),
                             [](const SignatureInput& input) { return input.alg == kHmacSha256; });
  if (chosen == inputs->end()) chosen = inputs->begin();
  Result<std::vector<BytesMember>> signatures =
      parseBytesDictionary(signature, Failure::kMalformedSignature);
  if (!signatures) return signatures.failure();
  for (BytesMember& member : *signatures) {
    if (member.key == chosen->label) {
      return ParsedSignature{std::move(*chosen), std::move(member.bytes)};
    }
  }
  return Failure::kLabelMismatch;
}

Result<std::string> componentValue(std::string_view component, const MessageView& message) {
  std::string value;
  if (Error error = appendCheckedValue(value, component, message)) return *error;
  return value;
}

Result<std::string> signatureBase(const SignatureInput& input, const MessageView& message) {
  std::string base;
  base.reserve(64 * (input.components.size() + 1) + input.signature_params.size());
  for (const std::string& name : input.components) {
    // Quoted as they came: classify() lets through no name that needs an escape.
    base.push_back('"');
    base.append(name).append("\": ");
    if (Error error = appendCheckedValue(base, name, message)) return *error;
    base.push_back('\n');
  }
  base.append("\"@signature-params\": ").append(input.signature_params);
  return base;
}

std::string hmacSha256(std::string_view key, std::string_view data) {
  EVP_MAC_CTX* ctx = threadHmacContext();
  if (key.empty() || ctx == nullptr) return {};
  std::array<unsigned char, kHmacSha256Bytes> mac{};
  size_t size = 0;
  if (EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), nullptr) !=
          1 ||
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1 ||
      EVP_MAC_final(ctx, mac.data(), &size, mac.size()) != 1 || size != mac.size()) {
    return cleared(std::string());
  }
  std::string out(reinterpret_cast<const char*>(mac.data()), size);
  OPENSSL_cleanse(mac.data(), mac.size());
  return out;
}

bool verifyHmacSha256(std::string_view key, std::string_view base, std::string_view signature) {
  // The length is no secret (every HMAC-SHA256 has 32 bytes): no need to hide this early exit.
  if (signature.size() != kHmacSha256Bytes) return false;
  std::string expected = hmacSha256(key, base);
  if (expected.size() != kHmacSha256Bytes) return false;
  return CRYPTO_memcmp(expected.data(), signature.data(), kHmacSha256Bytes) == 0;
}

bool cryptoAvailable() {
  return threadHmacContext() != nullptr && digestMd(DigestAlgorithm::kSha256) != nullptr &&
         digestMd(DigestAlgorithm::kSha512) != nullptr;
}

std::string_view digestAlgorithmName(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::kSha256 ? "sha-256" : "sha-512";
}

Result<ContentDigest> parseContentDigest(std::string_view value) {
  Result<std::vector<BytesMember>> members =
      parseBytesDictionary(value, Failure::kMalformedContentDigest);
  if (!members) return members.failure();
  std::optional<ContentDigest> chosen;
  // sha-256 first: the cheaper digest of the two, and the one clients send most.
  for (DigestAlgorithm algorithm : {DigestAlgorithm::kSha256, DigestAlgorithm::kSha512}) {
    for (BytesMember& member : *members) {
      if (member.key != digestAlgorithmName(algorithm)) continue;
      // Checked for the digest not used too: a wrong length means a broken client either way.
      if (member.bytes.size() != digestSize(algorithm)) return Failure::kMalformedContentDigest;
      if (!chosen) chosen = ContentDigest{algorithm, std::move(member.bytes)};
    }
  }
  if (!chosen) return Failure::kUnsupportedDigestAlgorithm;
  return std::move(*chosen);
}

std::string contentDigestHeader(std::string_view body) {
  const EVP_MD* md = digestMd(DigestAlgorithm::kSha256);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (md == nullptr ||
      EVP_Digest(body.data(), body.size(), digest.data(), &size, md, nullptr) != 1) {
    return cleared(std::string());
  }
  std::string header = "sha-256=:";
  header.append(base64Encode(std::string_view(reinterpret_cast<const char*>(digest.data()), size)));
  header.push_back(':');
  return header;
}

void EvpMdCtxFree::operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }

Result<DigestCheck> DigestCheck::fromHeader(std::string_view value) {
  Result<ContentDigest> expected = parseContentDigest(value);
  if (!expected) return expected.failure();
  const EVP_MD* md = digestMd(expected->algorithm);
  if (md == nullptr) return Failure::kCryptoError;
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) return cleared(Failure::kCryptoError);
  return DigestCheck(std::move(ctx), std::move(*expected));
}

bool DigestCheck::update(std::string_view chunk) {
  if (failed_ || matched_) return false;
  if (EVP_DigestUpdate(ctx_.get(), chunk.data(), chunk.size()) != 1) {
    failed_ = cleared(true);
    return false;
  }
  return true;
}

bool DigestCheck::matches() {
  if (matched_) return *matched_;
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (!failed_ && EVP_DigestFinal_ex(ctx_.get(), digest.data(), &size) != 1)
    failed_ = cleared(true);
  // The expected digest came from the client, so timing tells an attacker nothing it lacks; the
  // constant-time compare just leaves no reason to think about it.
  matched_ = !failed_ && size == expected_.size() &&
             CRYPTO_memcmp(digest.data(), expected_.data(), size) == 0;
  return *matched_;
}

}  // namespace tessera::plugins::guard
