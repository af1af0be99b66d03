#include "plugins/guard/guard.h"
#include "plugins/jwt/jwt.h"
#include "plugins/migration/migration.h"
#include "plugins/plugin.h"
#include "plugins/session_binding/session_binding.h"

namespace tessera::plugins {

void Registry::add(std::string type, FactoryMaker maker) {
  makers_[std::move(type)] = std::move(maker);
}

const FactoryMaker* Registry::find(std::string_view type) const {
  auto it = makers_.find(type);
  return it == makers_.end() ? nullptr : &it->second;
}

std::vector<std::string> Registry::types() const {
  std::vector<std::string> out;
  for (const auto& [type, maker] : makers_) out.push_back(type);
  return out;
}

void registerBuiltinPlugins(Registry& registry) {
  registry.add("guard", &guard::makeGuardFactory);
  registry.add("jwt", &makeJwtFactory);
  registry.add("migration", &migration::makeMigrationFactory);
  registry.add("session_binding", &makeSessionBindingFactory);
}

}  // namespace tessera::plugins
