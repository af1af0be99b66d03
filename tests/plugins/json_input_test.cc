// plugins/json_input.h: outside JSON, parsed without exceptions and with its nesting bounded.

#include "plugins/json_input.h"

#include <gtest/gtest.h>

#include <string>

namespace tessera::plugins {
namespace {

TEST(JsonInputTest, NestingIsCountedOutsideStringsOnly) {
  EXPECT_TRUE(jsonNestingWithin(R"({"a":[1,{"b":2}]})", 3));
  EXPECT_FALSE(jsonNestingWithin(R"({"a":[1,{"b":2}]})", 2));
  // Brackets inside strings, escaped quotes included, do not count.
  EXPECT_TRUE(jsonNestingWithin(R"({"a":"[[[[{{{{\"[[["})", 1));
  EXPECT_TRUE(jsonNestingWithin("", 0));
}

TEST(JsonInputTest, DeepOrMalformedInputIsNoValue) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(parseJson(deep, 32));
  EXPECT_TRUE(parseJson("[[[]]]", 3));
  for (const char* bad : {"", "{", "{\"a\":}", "nul", "{\"a\":1}garbage", "\xff\xfe"}) {
    EXPECT_FALSE(parseJson(bad, 8)) << bad;
  }
}

TEST(JsonInputTest, AnObjectIsRequiredWhereOneIsAsked) {
  EXPECT_TRUE(parseJsonObject(R"({"a":1})", 2));
  for (const char* other : {"[1]", "1", "\"a\"", "null"}) {
    EXPECT_TRUE(parseJson(other, 2)) << other;
    EXPECT_FALSE(parseJsonObject(other, 2)) << other;
  }
}

}  // namespace
}  // namespace tessera::plugins
