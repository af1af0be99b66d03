// A remote target's reading of the origin's migration/verify answer
// (plugins/migration/origin_answer.h): what passes through, and what a misbehaving origin or a
// gateway in front of it turns into.

#include <gtest/gtest.h>

#include <string>

#include "plugins/migration/origin_answer.h"

namespace tessera::plugins::migration {
namespace {

Outcome read(int status, std::string body) {
  return readOriginAnswer(OutboundReply{status, std::move(body), {}});
}

TEST(OriginAnswerTest, AVerifiedPassGivesTheUserAndSession) {
  Outcome v = read(200, R"({"user":"ivan","sid":"s-ivan"})");
  EXPECT_EQ(v.status, 200);
  EXPECT_EQ(v.reason, "redeemed");
  EXPECT_EQ(v.user, "ivan");
  EXPECT_EQ(v.session_ref, "s-ivan");
}

TEST(OriginAnswerTest, TheOriginsOwnRefusalsPassThrough) {
  Outcome replay = read(409, R"({"error":"replay"})");
  EXPECT_EQ(replay.status, 409);
  EXPECT_EQ(replay.reason, "replay");
  Outcome mismatch = read(403, R"({"error":"device_mismatch"})");
  EXPECT_EQ(mismatch.status, 403);
  EXPECT_EQ(mismatch.reason, "device_mismatch");
  Outcome unavailable = read(502, R"({"error":"store_unavailable"})");
  EXPECT_EQ(unavailable.status, 502);
  EXPECT_EQ(unavailable.reason, "store_unavailable");
}

TEST(OriginAnswerTest, NoAnswerOrNoObjectIsOriginUnreachable) {
  for (const Outcome& v : {read(0, ""), read(200, "not json"), read(200, "[1,2]"),
                           read(502, "<html>Bad Gateway</html>")}) {
    EXPECT_EQ(v.status, 502);
    EXPECT_EQ(v.reason, "origin_unreachable");
  }
}

// Members of the wrong type read as absent: they must not throw out of the reply callback, which
// would leave the client's request without an answer.
TEST(OriginAnswerTest, FieldsOfAnotherTypeReadAsAbsent) {
  Outcome numbers = read(200, R"({"user":42,"sid":["s"]})");
  EXPECT_EQ(numbers.status, 502);
  EXPECT_EQ(numbers.reason, "origin_unreachable");
  EXPECT_EQ(numbers.user, "");
  Outcome gateway = read(503, R"({"error":{"code":503,"message":"upstream down"}})");
  EXPECT_EQ(gateway.status, 502);
  EXPECT_EQ(gateway.reason, "refused_by_origin");
  Outcome nulls = read(401, R"({"error":null})");
  EXPECT_EQ(nulls.status, 401);
  EXPECT_EQ(nulls.reason, "refused_by_origin");
}

// The reason names a metric series and an audit event: an origin cannot add new ones.
TEST(OriginAnswerTest, UnknownReasonsAreRefusedByOrigin) {
  Outcome v = read(403, R"({"error":"anything at all"})");
  EXPECT_EQ(v.status, 403);
  EXPECT_EQ(v.reason, "refused_by_origin");
  EXPECT_EQ(read(418, R"({"error":"replay"})").status, 502);
  EXPECT_EQ(read(400, "{\"error\":\"" + std::string(100, 'a') + "\"}").reason, "refused_by_origin");
}

TEST(OriginAnswerTest, OversizedIdentitiesAreRefused) {
  Outcome v = read(200, "{\"user\":\"" + std::string(5000, 'u') + "\",\"sid\":\"s\"}");
  EXPECT_EQ(v.status, 502);
  EXPECT_EQ(v.reason, "origin_unreachable");
}

}  // namespace
}  // namespace tessera::plugins::migration
