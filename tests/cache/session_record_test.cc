#include "cache/session_record.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>

namespace tessera::cache {
namespace {

SessionRecord sample() {
  SessionRecord r;
  r.der = std::string("\x30\x82\x01\x00secret\0bytes", 16);
  r.fingerprint = "ip=127.0.0.1/32";
  r.created = 1700000000;
  r.expiry = 1700000300;
  return r;
}

TEST(SessionRecordTest, KeyIsPrefixedLowerHex) {
  EXPECT_EQ(sessionKey(std::string("\x00\xab\x10\xff", 4)), "tls:00ab10ff");
  EXPECT_EQ(sessionKey(""), "tls:");
}

TEST(SessionRecordTest, RoundTrip) {
  std::optional<SessionRecord> back = decodeSessionRecord(encodeSessionRecord(sample()));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->der, sample().der);
  EXPECT_EQ(back->fingerprint, sample().fingerprint);
  EXPECT_EQ(back->created, 1700000000);
  EXPECT_EQ(back->expiry, 1700000300);
}

// A record wipes its DER when destroyed or assigned over, so copying, moving and assigning are
// written by hand: each must still carry every field.
TEST(SessionRecordTest, CopiesMovesAndAssignmentsCarryEveryField) {
  auto same = [](const SessionRecord& r) {
    return r.der == sample().der && r.fingerprint == sample().fingerprint &&
           r.created == sample().created && r.expiry == sample().expiry;
  };
  SessionRecord original = sample();
  SessionRecord copied(original);
  EXPECT_TRUE(same(copied));
  EXPECT_TRUE(same(original));
  SessionRecord moved(std::move(copied));
  EXPECT_TRUE(same(moved));
  SessionRecord assigned;
  assigned.der = std::string(300, 'x');  // longer than the new DER: the buffer is reused
  assigned = original;
  EXPECT_TRUE(same(assigned));
  SessionRecord move_assigned;
  move_assigned.der = "old";
  move_assigned = std::move(assigned);
  EXPECT_TRUE(same(move_assigned));
  std::optional<SessionRecord> slot;
  slot = decodeSessionRecord(encodeSessionRecord(original));
  ASSERT_TRUE(slot.has_value());
  EXPECT_TRUE(same(*slot));
  move_assigned = *&move_assigned;  // self-assignment keeps the record
  EXPECT_TRUE(same(move_assigned));
}

TEST(SessionRecordTest, EmptyFingerprintRoundTrips) {
  SessionRecord r = sample();
  r.fingerprint.clear();
  ASSERT_TRUE(decodeSessionRecord(encodeSessionRecord(r)).has_value());
  EXPECT_EQ(decodeSessionRecord(encodeSessionRecord(r))->fingerprint, "");
}

TEST(SessionRecordTest, EveryTruncationIsRejected) {
  std::string bytes = encodeSessionRecord(sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decodeSessionRecord(bytes.substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(decodeSessionRecord(bytes + "x").has_value());  // trailing garbage
}

TEST(SessionRecordTest, UnknownVersionAndEmptyDerAreRejected) {
  std::string bytes = encodeSessionRecord(sample());
  bytes[0] = 2;
  EXPECT_FALSE(decodeSessionRecord(bytes).has_value());
  SessionRecord r = sample();
  r.der.clear();
  EXPECT_FALSE(decodeSessionRecord(encodeSessionRecord(r)).has_value());
}

}  // namespace
}  // namespace tessera::cache
