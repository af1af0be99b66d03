#include "plugins/json_input.h"

namespace tessera::plugins {

// Counts brackets outside strings; cheaper than a parse, and run before it.
bool jsonNestingWithin(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

std::optional<nlohmann::json> parseJson(std::string_view text, size_t max_depth) {
  if (!jsonNestingWithin(text, max_depth)) return std::nullopt;
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

std::optional<nlohmann::json> parseJsonObject(std::string_view text, size_t max_depth) {
  std::optional<nlohmann::json> value = parseJson(text, max_depth);
  if (!value || !value->is_object()) return std::nullopt;
  return value;
}

std::optional<std::string> stringMember(const nlohmann::json& object, const char* name,
                                        size_t max) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  const std::string& s = it->get_ref<const std::string&>();
  if (s.empty() || s.size() > max) return std::nullopt;
  return s;
}

}  // namespace tessera::plugins
