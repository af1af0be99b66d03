// tessera: command-line entry point.

#include <CLI/CLI.hpp>
#include <iostream>
#include <iterator>
#include <string>

#include "cache/sealer.h"
#include "conf/config.h"
#include "plugins/jwt/token_tool.h"
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

namespace jwt_tool = tessera::plugins::jwt_tool;

// `tessera token …`: the auth center's side of the jwt plugin. CLI11 fills the options in place.
struct TokenCommands {
  CLI::App* token = nullptr;
  CLI::App* keygen = nullptr;
  CLI::App* issue = nullptr;
  CLI::App* inspect = nullptr;
  jwt_tool::KeygenOptions keygen_options;
  jwt_tool::IssueOptions issue_options;
  jwt_tool::InspectOptions inspect_options;
};

void addTokenCommands(CLI::App& app, TokenCommands& t) {
  t.token =
      app.add_subcommand("token", "Make keys and tokens for the jwt plugin (auth center side)");
  t.token->require_subcommand(1);

  t.keygen = t.token->add_subcommand("keygen", "A key pair: private JWK and public JWKS");
  jwt_tool::KeygenOptions& k = t.keygen_options;
  t.keygen->add_option("--type", k.type, "ec (P-256) or rsa (2048 bits)")->required();
  t.keygen->add_option("--out", k.private_path, "New private JWK (mode 0600; never overwritten)")
      ->required();
  t.keygen->add_option("--public", k.public_path, "New public JWKS (mode 0644; never overwritten)")
      ->required();
  t.keygen->add_option("--kid", k.kid, "Key id (default: 16 random hex digits)");

  t.issue = t.token->add_subcommand("issue", "Print a signed JWT, sensitive claims encrypted");
  jwt_tool::IssueOptions& i = t.issue_options;
  t.issue->add_option("--issuer", i.issuer, "iss")->required();
  t.issue->add_option("--audience", i.audiences, "aud (repeat for several)")->required();
  t.issue->add_option("--sign-key", i.sign_key_path, "Issuer's private JWK")->required();
  t.issue->add_option("--alg", i.alg, "ES256, RS256 or PS256 (default: from the key)");
  t.issue->add_option("--claims", i.claims_json, "Public claims, a JSON object")
      ->capture_default_str();
  t.issue->add_option("--sensitive", i.sensitive_json, "Claims to encrypt, a JSON object");
  t.issue->add_option("--sensitive-claim", i.sensitive_claim, "Claim that holds them, as a JWE")
      ->capture_default_str();
  t.issue->add_option("--encrypt-to", i.encrypt_to_path, "The proxy's public JWK or JWKS");
  t.issue->add_option("--ttl", i.ttl, "Lifetime: 300, 300s, 5m, 1h, 1d")->capture_default_str();

  t.inspect =
      t.token->add_subcommand("inspect", "Print a JWT's header and claims (no verification)");
  t.inspect->add_option("token", t.inspect_options.token, "The token, or - to read stdin")
      ->required();
  t.inspect->add_option("--decrypt-key", t.inspect_options.decrypt_key_path,
                        "The proxy's private JWK or JWKS, to show encrypted claims");
}

int runToken(TokenCommands& t) {
  std::string error;
  std::string out;
  const char* command = "keygen";
  bool ok = false;
  if (*t.keygen) {
    std::string kid;
    ok = jwt_tool::keygen(t.keygen_options, kid, error);
    out = "wrote " + t.keygen_options.private_path + " (private JWK) and " +
          t.keygen_options.public_path + " (public JWKS), kid " + kid + "\n";
  } else if (*t.issue) {
    command = "issue";
    ok = jwt_tool::issue(t.issue_options, out, error);
    out += "\n";
  } else {
    command = "inspect";
    // A token on the command line lands in shell history and `ps`; stdin keeps it out.
    if (t.inspect_options.token == "-") {
      t.inspect_options.token.assign(std::istreambuf_iterator<char>(std::cin), {});
    }
    ok = jwt_tool::inspect(t.inspect_options, out, error);
  }
  if (!ok) {
    std::cerr << "tessera token " << command << ": " << error << "\n";
    return 1;
  }
  std::cout << out;
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

  TokenCommands token;
  addTokenCommands(app, token);

  CLI11_PARSE(app, argc, argv);
  if (*run) return tessera::proxy::Server(config).run();
  if (*check) return validate(config);
  if (*token.token) return runToken(token);
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
