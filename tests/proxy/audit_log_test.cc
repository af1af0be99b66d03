// AuditLog's rate limit, on a real file, with a clock the test moves.

#include "proxy/audit_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace tessera::proxy {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    path_ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/tessera-audit-XXXXXX";
    int fd = mkstemp(path_.data());
    ASSERT_GE(fd, 0);
    close(fd);
  }
  void TearDown() override { unlink(path_.c_str()); }

  std::unique_ptr<AuditLog> open(uint32_t rate_limit) {
    return std::make_unique<AuditLog>(path_, rate_limit, [this] { return now_; });
  }

  std::vector<json> lines() const {
    std::ifstream in(path_);
    std::vector<json> out;
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }

  void mismatch(const AuditLog& log, int times) {
    for (int i = 0; i < times; ++i) log.record("tls_binding_mismatch", {{"client", "192.0.2.7"}});
  }

  std::string path_;
  AuditLog::Clock::time_point now_ = AuditLog::Clock::time_point() + 1000s;
};

TEST_F(AuditLogTest, WithoutALimitEveryEventIsWritten) {
  auto log = open(0);
  mismatch(*log, 500);
  log.reset();
  std::vector<json> got = lines();
  ASSERT_EQ(got.size(), 500u);
  EXPECT_EQ(got[0]["event"], "tls_binding_mismatch");
  EXPECT_EQ(got[0]["client"], "192.0.2.7");
}

TEST_F(AuditLogTest, LongValuesAreCutSoThatALineStaysOneAtomicPipeWrite) {
  auto log = open(0);
  std::string agent(12 * 1024, 'a');
  log->record("guard_blocked", {{"device", agent}, {"user", agent}, {"client", "192.0.2.7"}});
  log.reset();
  std::ifstream in(path_);
  std::string line;
  std::getline(in, line);
  EXPECT_LT(line.size() + 1, 4096u);  // PIPE_BUF on Linux
  json got = json::parse(line);
  EXPECT_EQ(got["device"], std::string(AuditLog::kMaxValueBytes, 'a') + "...(12288 bytes)");
  EXPECT_EQ(got["client"], "192.0.2.7");
}

TEST_F(AuditLogTest, AFloodIsCutToTheLimitAndTheRestIsCountedAtClose) {
  auto log = open(10);
  mismatch(*log, 25);
  log->record("guard_bad_signature", {{"device", "d1"}});
  log.reset();  // a reload or shutdown closes the log: the counts go out then
  std::vector<json> got = lines();
  ASSERT_EQ(got.size(), 11u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(got[i]["event"], "tls_binding_mismatch") << i;
  const json& summary = got[10];
  EXPECT_EQ(summary["event"], "audit_suppressed");
  EXPECT_EQ(summary["suppressed"]["tls_binding_mismatch"], 15);
  EXPECT_EQ(summary["suppressed"]["guard_bad_signature"], 1);
  EXPECT_EQ(summary["total"], 16);
}

TEST_F(AuditLogTest, TheCountsGoOutAtMostOnceASecondBeforeTheNextEvent) {
  auto log = open(10);
  mismatch(*log, 12);  // 10 written, 2 counted
  now_ += 500ms;       // 5 tokens back, no summary yet: the last one (at open) is under 1 s old
  mismatch(*log, 7);   // 5 written, 2 more counted
  EXPECT_EQ(lines().size(), 15u);
  now_ += 600ms;      // 1.1 s since the open: the next event brings the summary first
  mismatch(*log, 1);  // and is itself written, on one of the 6 tokens back
  std::vector<json> got = lines();
  ASSERT_EQ(got.size(), 17u);
  EXPECT_EQ(got[15]["event"], "audit_suppressed");
  EXPECT_EQ(got[15]["total"], 4);
  EXPECT_EQ(got[16]["event"], "tls_binding_mismatch");
  mismatch(*log, 50);  // counted again, but the next summary is due a second later
  EXPECT_EQ(lines().size(), 22u);
  log.reset();
  got = lines();
  ASSERT_EQ(got.size(), 23u);
  EXPECT_EQ(got.back()["event"], "audit_suppressed");
  EXPECT_EQ(got.back()["total"], 45);
}

TEST_F(AuditLogTest, TheBucketHoldsAtMostOneSecondOfLines) {
  auto log = open(10);
  now_ += 1h;  // an idle hour earns no more than one second's burst
  mismatch(*log, 11);
  log.reset();
  std::vector<json> got = lines();
  ASSERT_EQ(got.size(), 11u);
  EXPECT_EQ(got.back()["event"], "audit_suppressed");
  EXPECT_EQ(got.back()["total"], 1);
}

}  // namespace
}  // namespace tessera::proxy
