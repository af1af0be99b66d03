// Micro benchmarks for the guard plugin's signature logic (plugins/guard/signature.h): what one
// signed request costs before its body (parse both headers, build the signature base, verify the
// HMAC), and what Content-Digest costs per body byte.
//
// The request is a typical API POST signed over "@method" "@target-uri" "content-digest", with
// created, keyid, nonce and alg, as a client SDK sends it. ContentDigest, by arg: the body size in
// bytes, fed in chunks of at most 16 KiB as the proxy reads them.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/encoding.h"
#include "plugins/guard/signature.h"

namespace {

using tessera::plugins::base64Encode;
using namespace tessera::plugins::guard;  // NOLINT: the bench drives this namespace's interface

constexpr std::string_view kKey = "0123456789abcdef0123456789abcdef";
constexpr std::string_view kBody = R"({"sku":"A-4711","quantity":2,"note":"gift wrap"})";
constexpr std::string_view kSignatureInput =
    R"(sig1=("@method" "@target-uri" "content-digest");created=1700000000;keyid="client-1")"
    R"(;nonce="b3f1c2a9e8d74f6a";alg="hmac-sha256")";
constexpr size_t kChunkBytes = 16 * 1024;

struct SignedPost {
  std::string content_digest = contentDigestHeader(kBody);
  std::string signature;

  MessageView view() const {
    return {"POST", "https", "api.shop.example", "/v1/orders?customer=42",
            [this](std::string_view name) {
              std::vector<std::string_view> lines;
              if (name == "content-digest") lines.push_back(content_digest);
              return lines;
            }};
  }
};

SignedPost signedPost() {
  SignedPost post;
  Result<ParsedSignature> parsed = parseSignature(kSignatureInput, "sig1=:AA==:");
  if (!parsed) return post;
  Result<std::string> base = signatureBase(parsed->input, post.view());
  if (base) post.signature = "sig1=:" + base64Encode(hmacSha256(kKey, *base)) + ":";
  return post;
}

void BM_GuardSignatureVerify(benchmark::State& state) {
  const SignedPost post = signedPost();
  const MessageView view = post.view();
  for (auto _ : state) {
    Result<ParsedSignature> parsed = parseSignature(kSignatureInput, post.signature);
    if (!parsed) {
      state.SkipWithError(std::string(parsed.reason()).c_str());
      break;
    }
    Result<std::string> base = signatureBase(parsed->input, view);
    bool valid = base && verifyHmacSha256(kKey, *base, parsed->signature);
    benchmark::DoNotOptimize(valid);
    if (!valid) {
      state.SkipWithError("signature does not verify");
      break;
    }
  }
}
BENCHMARK(BM_GuardSignatureVerify);

void BM_ContentDigest(benchmark::State& state) {
  const std::string body(static_cast<size_t>(state.range(0)), 'x');
  const std::string header = contentDigestHeader(body);
  for (auto _ : state) {
    Result<DigestCheck> check = DigestCheck::fromHeader(header);
    if (!check) {
      state.SkipWithError(std::string(check.reason()).c_str());
      break;
    }
    for (size_t at = 0; at < body.size(); at += kChunkBytes) {
      check->update(std::string_view(body).substr(at, kChunkBytes));
    }
    bool matches = check->matches();
    benchmark::DoNotOptimize(matches);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ContentDigest)->Arg(1024)->Arg(65536);

}  // namespace
