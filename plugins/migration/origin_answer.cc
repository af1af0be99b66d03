#include "plugins/migration/origin_answer.h"

#include <algorithm>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "plugins/json_input.h"

namespace tessera::plugins::migration {

namespace {

constexpr size_t kMaxIdentityBytes = 4096;  // a user id or a session reference
constexpr size_t kMaxReasonBytes = 64;
// Verification::finish's reasons and the verify endpoint's own checks (migration.cc).
constexpr std::string_view kVerifyReasons[] = {"malformed_pass",
                                               "store_unavailable",
                                               "pass_not_live",
                                               "device_mismatch",
                                               "no_origin_session",
                                               "replay",
                                               "malformed_body",
                                               "body_too_large",
                                               "method_not_allowed",
                                               "unknown_endpoint",
                                               "verify_without_client_certificate"};

}  // namespace

Outcome readOriginAnswer(const OutboundReply& reply) {
  Outcome v;
  v.status = reply.status;
  std::optional<nlohmann::json> answer = parseJsonObject(reply.body, 4);
  if (reply.status == 0 || !answer) {
    v.status = 502;
    v.reason = "origin_unreachable";
  } else if (reply.status == 200) {
    v.user = stringMember(*answer, "user", kMaxIdentityBytes).value_or("");
    v.session_ref = stringMember(*answer, "sid", kMaxIdentityBytes).value_or("");
    if (v.user.empty()) v.status = 502;
    v.reason = v.user.empty() ? "origin_unreachable" : "redeemed";
  } else {
    std::optional<std::string> error = stringMember(*answer, "error", kMaxReasonBytes);
    bool known = error && std::find(std::begin(kVerifyReasons), std::end(kVerifyReasons), *error) !=
                              std::end(kVerifyReasons);
    v.reason = known ? *error : "refused_by_origin";
    if (v.status != 400 && v.status != 401 && v.status != 403 && v.status != 409) v.status = 502;
  }
  return v;
}

}  // namespace tessera::plugins::migration
