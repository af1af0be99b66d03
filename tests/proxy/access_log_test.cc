// formatAccessJson and formatAccessCommon.

#include "proxy/access_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

namespace tessera::proxy {
namespace {

using nlohmann::json;

// 2023-11-14T22:13:20Z plus 123456 microseconds.
constexpr int64_t kTimeUs = 1700000000123456;

AccessRecord fullRecord() {
  AccessRecord r;
  r.time_us = kTimeUs;
  r.client = "192.0.2.7";
  r.method = "POST";
  r.path = "/api/v1/items?id=3";
  r.status = 201;
  r.bytes_in = 512;
  r.bytes_out = 1234;
  r.duration_us = 5678;
  r.upstream = "127.0.0.1:9000";
  r.tls_version = "TLSv1.3";
  r.tls_resumed = true;
  return r;
}

TEST(AccessLogJsonTest, EveryFieldParses) {
  std::string line;
  formatAccessJson(fullRecord(), line);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);

  json j = json::parse(line);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 11u);
  EXPECT_EQ(j.at("time"), "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(j.at("client"), "192.0.2.7");
  EXPECT_EQ(j.at("method"), "POST");
  EXPECT_EQ(j.at("path"), "/api/v1/items?id=3");
  EXPECT_TRUE(j.at("status").is_number_integer());
  EXPECT_EQ(j.at("status"), 201);
  EXPECT_EQ(j.at("bytes_in"), 512);
  EXPECT_EQ(j.at("bytes_out"), 1234);
  EXPECT_EQ(j.at("duration_us"), 5678);
  EXPECT_EQ(j.at("upstream"), "127.0.0.1:9000");
  EXPECT_EQ(j.at("tls_version"), "TLSv1.3");
  EXPECT_EQ(j.at("tls_resumed"), true);
}

TEST(AccessLogJsonTest, ExactLine) {
  std::string line;
  formatAccessJson(fullRecord(), line);
  EXPECT_EQ(line,
            "{\"time\":\"2023-11-14T22:13:20.123456Z\",\"client\":\"192.0.2.7\","
            "\"method\":\"POST\",\"path\":\"/api/v1/items?id=3\",\"status\":201,"
            "\"bytes_in\":512,\"bytes_out\":1234,\"duration_us\":5678,"
            "\"upstream\":\"127.0.0.1:9000\",\"tls_version\":\"TLSv1.3\","
            "\"tls_resumed\":true}\n");
}

TEST(AccessLogJsonTest, LocalReplyOnPlainHttp) {
  AccessRecord r;
  r.time_us = 1700000000000000;
  r.client = "::1";
  r.method = "GET";
  r.path = "/";
  r.status = 404;
  std::string line;
  formatAccessJson(r, line);
  json j = json::parse(line);
  EXPECT_EQ(j.at("time"), "2023-11-14T22:13:20.000000Z");
  EXPECT_EQ(j.at("upstream"), "");
  EXPECT_EQ(j.at("tls_version"), "");
  EXPECT_EQ(j.at("tls_resumed"), false);
  EXPECT_EQ(j.at("bytes_in"), 0);
}

TEST(AccessLogJsonTest, EscapesQuotesBackslashesAndControlCharacters) {
  const std::string path = std::string("/a\"b\\c\nd\re\tf") + '\x01' + "g" + '\x1f' + "h";
  AccessRecord r = fullRecord();
  r.path = path;
  std::string line;
  formatAccessJson(r, line);

  EXPECT_NE(line.find(R"("path":"/a\"b\\c\nd\re\tf\u0001g\u001fh")"), std::string::npos) << line;
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);  // only the terminator
  EXPECT_EQ(line.find('\r'), std::string::npos);
  json j = json::parse(line);
  EXPECT_EQ(j.at("path"), path);
}

TEST(AccessLogJsonTest, EscapesOtherStringFields) {
  AccessRecord r = fullRecord();
  r.method = "G\"ET";
  r.client = "a\\b";
  r.upstream = "x\ny";
  std::string line;
  formatAccessJson(r, line);
  json j = json::parse(line);
  EXPECT_EQ(j.at("method"), "G\"ET");
  EXPECT_EQ(j.at("client"), "a\\b");
  EXPECT_EQ(j.at("upstream"), "x\ny");
}

TEST(AccessLogJsonTest, AppendsOneLinePerRecord) {
  std::string out;
  formatAccessJson(fullRecord(), out);
  formatAccessJson(fullRecord(), out);
  size_t first_end = out.find('\n');
  ASSERT_NE(first_end, std::string::npos);
  EXPECT_EQ(out.substr(0, first_end + 1), out.substr(first_end + 1));
  EXPECT_NO_THROW(json::parse(out.substr(0, first_end)));
}

TEST(AccessLogCommonTest, ApacheCommonShape) {
  std::string line;
  formatAccessCommon(fullRecord(), line);
  EXPECT_EQ(line,
            "192.0.2.7 - - [14/Nov/2023:22:13:20 +0000] \"POST /api/v1/items?id=3 HTTP/1.1\" 201 "
            "1234\n");
}

TEST(AccessLogCommonTest, AppendsToOutput) {
  AccessRecord r;
  r.time_us = 0;
  r.client = "::1";
  r.method = "GET";
  r.path = "/";
  r.status = 304;
  std::string out = "x\n";
  formatAccessCommon(r, out);
  EXPECT_EQ(out, "x\n::1 - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 304 0\n");
}

}  // namespace
}  // namespace tessera::proxy
