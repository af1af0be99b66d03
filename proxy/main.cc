// tessera: command-line entry point.

#include <CLI/CLI.hpp>
#include <iostream>

#include "cache/sealer.h"
#include "conf/config.h"
#include "proxy/server.h"
#include "proxy/snapshot.h"

namespace {

// Parses the config and loads everything it names (certificates, addresses, log files), as a run
// would, without opening sockets.
int validate(const std::string& path) {
  try {
    tessera::proxy::Snapshot::build(tessera::conf::loadFile(path));
  } catch (const tessera::conf::ConfigError& e) {
    for (const auto& err : e.errors()) std::cout << err.str() << "\n";
    return 1;
  }
  std::cout << "ok\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera: a TLS-terminating reverse proxy"};
  app.require_subcommand(1);
  std::string config = "conf/tessera.yaml";

  CLI::App* run = app.add_subcommand("run", "Run the proxy in the foreground");
  run->add_option("-c,--config", config, "Config file")->capture_default_str();
  CLI::App* check = app.add_subcommand("validate", "Check a config file and what it names");
  check->add_option("-c,--config", config, "Config file")->capture_default_str();
  app.add_subcommand("version", "Print the version");
  CLI::App* keygen = app.add_subcommand("keygen", "Make keys");
  keygen->require_subcommand(1);
  CLI::App* seal = keygen->add_subcommand("seal", "A session-store seal key: 32 random bytes");
  std::string out;
  seal->add_option("--out", out, "New key file (mode 0600; never overwritten)")->required();

  CLI11_PARSE(app, argc, argv);
  if (*run) return tessera::proxy::Server(config).run();
  if (*check) return validate(config);
  if (*seal) {
    std::string error;
    if (!tessera::cache::writeSealKeyFile(out, error)) {
      std::cerr << "tessera keygen seal: " << error << "\n";
      return 1;
    }
    std::cout << "wrote " << out << "\n";
    return 0;
  }
  std::cout << "tessera " << TESSERA_VERSION << "\n";
  return 0;
}
