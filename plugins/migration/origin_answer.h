#pragma once

// What a remote target makes of the origin's answer to its migration/verify call (docs/config.md,
// "migration/verify"): 200 with {"user", "sid"}, or a refusal {"error": reason} with the status
// the origin chose. The answer crosses a network, so every field is checked to be a string of
// sensible size; a member of another type (a gateway's {"error": {"code": 503}}) reads as absent
// instead of throwing. The reason becomes a metric series and an audit event name, so only the
// reasons the origin's own verification gives are taken; any other is "refused_by_origin".

#include <string>

#include "plugins/plugin.h"

namespace tessera::plugins::migration {

// What the origin found, for the redeem (local) or the verify endpoint (remote).
struct Outcome {
  int status = 0;           // 200 or the refusal
  std::string reason;       // the refusal's metric/audit name
  std::string user;         // on 200
  std::string session_ref;  // on 200
};

// The refusals a remote target passes on as they are: 400, 401, 403 and 409; any other status is
// answered 502. No HTTP answer, a body that is not a JSON object, or a 200 without a user: 502
// "origin_unreachable".
Outcome readOriginAnswer(const OutboundReply& reply);

}  // namespace tessera::plugins::migration
