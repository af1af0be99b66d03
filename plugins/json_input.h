#pragma once

// JSON that comes from outside tessera (client bodies, token segments, store records), parsed
// without exceptions (nlohmann reports a bad document as a discarded value) and with its nesting
// bounded before the parse: a few KiB of "[[[[..." must cost a scan, not a deep tree that the
// parser, the destructor and dump() all walk.

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::plugins {

// Whether no bracket outside a string nests deeper than `max_depth`.
bool jsonNestingWithin(std::string_view text, size_t max_depth);

// Any JSON value; nullopt when malformed or nested deeper than `max_depth`.
std::optional<nlohmann::json> parseJson(std::string_view text, size_t max_depth);
// As parseJson(), and the value must be an object.
std::optional<nlohmann::json> parseJsonObject(std::string_view text, size_t max_depth);

// The member `name` of `object` when it is a string of 1 to `max` bytes; nullopt when it is absent,
// of another type (a number, an object: never an exception), empty or longer.
std::optional<std::string> stringMember(const nlohmann::json& object, const char* name, size_t max);

}  // namespace tessera::plugins
