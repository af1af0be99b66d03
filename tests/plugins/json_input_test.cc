// plugins/json_input.h: outside JSON, parsed without exceptions and with its nesting bounded, and
// its string members read without exceptions.

#include "plugins/json_input.h"

#include <gtest/gtest.h>

#include <optional>
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

TEST(JsonInputTest, AStringMemberIsAStringOfBoundedSize) {
  nlohmann::json object = nlohmann::json::parse(
      R"({"user":"ivan","n":42,"o":{"a":"b"},"l":["x"],"z":null,"e":"","long":"abcdef"})");
  EXPECT_EQ(stringMember(object, "user", 16), "ivan");
  for (const char* name : {"n", "o", "l", "z", "e", "absent"}) {
    EXPECT_EQ(stringMember(object, name, 16), std::nullopt) << name;
  }
  EXPECT_EQ(stringMember(object, "long", 6), "abcdef");
  EXPECT_EQ(stringMember(object, "long", 5), std::nullopt);
}

}  // namespace
}  // namespace tessera::plugins
