// Three tessera nodes sharing TLS sessions through a ring of three real memcached processes,
// all started by the test on loopback ports chosen at run time.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <regex>

#include "tests/integration/harness.h"

namespace tessera::testing {
namespace {

std::string hexToBytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string field(const std::string& text, const std::string& name) {
  std::smatch m;
  std::regex re(name + ": ([0-9A-F]+)");
  return std::regex_search(text, m, re) ? m[1].str() : "";
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = makeCertificate(dir_, "edge", {"localhost"});
    key_file_ = dir_.file("seal-k1.key");
    CommandResult k = run({TESSERA_BINARY, "keygen", "seal", "--out", key_file_});
    ASSERT_EQ(k.exit_code, 0) << k.output;
    for (int i = 0; i < 3; ++i) startMemcached(i);
    for (int i = 0; i < 3; ++i) startNode(i);
  }

  void TearDown() override {
    for (auto& m : memcached_) {
      if (m) m->signal(SIGCONT);  // a stopped process cannot die of SIGTERM
    }
  }

  void startMemcached(int i) {
    int port = freePort();
    std::vector<std::string> argv = {"memcached", "-l", "127.0.0.1", "-p", std::to_string(port),
                                     "-U",        "0",  "-m",        "16", "-t",
                                     "1"};
    if (geteuid() == 0) argv.insert(argv.end(), {"-u", "root"});
    memcached_ports_.push_back(port);
    memcached_.push_back(std::make_unique<Process>(argv,
                                                   dir_.file("mc" + std::to_string(i) + ".out"),
                                                   dir_.file("mc" + std::to_string(i) + ".err")));
    ASSERT_TRUE(waitForPort(port)) << readFile(dir_.file("mc" + std::to_string(i) + ".err"));
  }

  void startNode(int i) {
    int port = freePort(), admin = freePort();
    std::string servers;
    for (int p : memcached_ports_)
      servers += (servers.empty() ? "" : ", ") + ("127.0.0.1:" + std::to_string(p));
    std::string yaml =
        "workers: 1\n"
        "cluster: { name: shop-edge }\n"
        "listeners:\n  - name: public\n    listen: 127.0.0.1:" +
        std::to_string(port) + "\n    tls: { certificates: [ { cert: " + cert_.cert +
        ", key: " + cert_.key +
        " } ] }\n"
        "upstreams: { app: { servers: [" +
        backend_.address() +
        "] } }\n"
        "session_cache:\n"
        "  store: memcached\n"
        "  timeout: " +
        lookup_timeout_ +
        "\n"
        "  seal_keys: [ { id: k1, file: " +
        key_file_ +
        " } ]\n"
        "  memcached: { servers: [" +
        servers + "], replicas: 1, io_threads: 2, retry_timeout: 2s" + memcached_extra_ +
        " }\n"
        "device_binding: { tls: { attributes: [ip] } }\n"
        "admin: { listen: 127.0.0.1:" +
        std::to_string(admin) +
        " }\n"
        "log: { level: info, access_log: off, audit_log: " +
        dir_.file("audit" + std::to_string(i) + ".log") + " }\n";
    node_dirs_.push_back(std::make_unique<TempDir>());
    nodes_.push_back(std::make_unique<Tessera>(*node_dirs_.back(), yaml, port, admin));
    ASSERT_TRUE(nodes_.back()->started()) << nodes_.back()->stderrText();
    ports_.push_back(port);
  }

  std::string addr(int node) const { return "127.0.0.1:" + std::to_string(ports_[node]); }

  // s_client against `node`; with -sess_out or -sess_in `sess`. Returns its output.
  std::string sClient(int node, const std::string& version, const std::string& flag,
                      const std::string& sess) {
    std::string req = "GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n";
    return run({"openssl", "s_client", "-connect", addr(node), version, "-ign_eof", flag, sess},
               req, 10s)
        .output;
  }

  // Generous deadlines, so that a loaded test machine does not turn a slow memcached reply into a
  // miss (a lookup timeout) or a node left out for retry_timeout (an I/O timeout).
  std::string lookup_timeout_ = "1s";
  std::string memcached_extra_ = ", io_timeout: 1s";

  TempDir dir_;
  TestBackend backend_;
  CertFiles cert_;
  std::string key_file_;
  std::vector<int> memcached_ports_;
  std::vector<std::unique_ptr<Process>> memcached_;
  std::vector<std::unique_ptr<TempDir>> node_dirs_;
  std::vector<std::unique_ptr<Tessera>> nodes_;
  std::vector<int> ports_;
};

// The stall test runs on the defaults' tight deadlines, which are what it measures.
class ClusterStallTest : public ClusterTest {
 protected:
  ClusterStallTest() {
    lookup_timeout_ = "50ms";
    memcached_extra_ = "";
  }
};

TEST_F(ClusterTest, AnyNodeResumesASessionAnotherNodeMade) {
  for (std::string version : {"-tls1_2", "-tls1_3"}) {
    std::string sess = dir_.file("sess" + version + ".pem");
    std::string first = sClient(0, version, "-sess_out", sess);
    ASSERT_NE(first.find("New, TLSv1."), std::string::npos) << first;
    for (int node : {1, 2}) {
      std::string again = sClient(node, version, "-sess_in", sess);
      EXPECT_NE(again.find("Reused, TLSv1."), std::string::npos)
          << version << " node " << node << "\n"
          << again;
    }
  }
  EXPECT_GE(nodes_[1]->metric("tessera_tls_session_lookups_total{result=\"hit_store\"}"), 2);
  EXPECT_EQ(nodes_[1]->metric("tessera_store_node_up{node=\"127.0.0.1:" +
                              std::to_string(memcached_ports_[0]) + "\"}"),
            1);
}

TEST_F(ClusterTest, AStolenSessionFromAnotherAddressIsRefusedOnAnyNode) {
  TlsVisit mine = tlsVisit(ports_[0], "127.0.0.1", "", "1.3");
  ASSERT_TRUE(mine.ok) << mine.error;
  // Node 0 writes the session behind the handshake: wait until the ring has it.
  ASSERT_TRUE(
      eventually([&] { return tlsVisit(ports_[2], "127.0.0.1", mine.session_pem, "1.3").reused; }));
  TlsVisit stolen = tlsVisit(ports_[1], "127.0.0.2", mine.session_pem, "1.3");
  ASSERT_TRUE(stolen.ok) << stolen.error;
  EXPECT_FALSE(stolen.reused);
  EXPECT_EQ(nodes_[1]->metric("tessera_tls_binding_mismatch_total"), 1);
  std::string audit = readFile(dir_.file("audit1.log"));
  EXPECT_NE(audit.find("\"event\":\"tls_binding_mismatch\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"client\":\"127.0.0.2\""), std::string::npos) << audit;
  EXPECT_TRUE(tlsVisit(ports_[2], "127.0.0.1", mine.session_pem, "1.3").reused);
}

TEST_F(ClusterTest, LosingOneMemcachedLosesNoSession) {
  std::vector<std::string> sessions;
  for (int i = 0; i < 20; ++i) {
    TlsVisit v = tlsVisit(ports_[0], "127.0.0.1", "", "1.2");
    ASSERT_TRUE(v.ok) << v.error;
    sessions.push_back(v.session_pem);
  }
  memcached_[1]->signal(SIGKILL);
  memcached_[1]->wait(5s);
  int reused = 0;
  for (const std::string& s : sessions) {
    TlsVisit v = tlsVisit(ports_[1], "127.0.0.1", s, "1.2");
    EXPECT_TRUE(v.ok) << v.error;  // handshakes still succeed
    reused += v.reused;
  }
  EXPECT_EQ(reused, 20);
}

TEST_F(ClusterStallTest, AStoppedMemcachedCostsAtMostTheLookupTimeout) {
  std::vector<std::string> sessions;
  for (int i = 0; i < 10; ++i)
    sessions.push_back(tlsVisit(ports_[0], "127.0.0.1", "", "1.2").session_pem);
  TlsKeepAlive open_conn(ports_[2]);  // a keep-alive connection opened before the stall
  ASSERT_TRUE(open_conn.connected());
  ASSERT_EQ(open_conn.get("/echo"), 200);
  memcached_[0]->signal(SIGSTOP);
  for (const std::string& s : sessions) {
    auto began = std::chrono::steady_clock::now();
    TlsVisit v = tlsVisit(ports_[2], "127.0.0.1", s, "1.2");
    auto took = std::chrono::steady_clock::now() - began;
    EXPECT_TRUE(v.ok) << v.error;  // resumed from the replica, or a full handshake: never failed
    EXPECT_LT(took, 600ms);        // lookup timeout 50 ms, plus a loaded machine's margin
  }
  // Requests on the open connection never wait for the cache.
  for (int i = 0; i < 20; ++i) {
    auto began = std::chrono::steady_clock::now();
    EXPECT_EQ(open_conn.get("/echo"), 200);
    EXPECT_LT(std::chrono::steady_clock::now() - began, 200ms) << i;
  }
  memcached_[0]->signal(SIGCONT);
}

TEST_F(ClusterTest, MemcachedNeverSeesTheMasterSecret) {
  std::string out = sClient(0, "-tls1_2", "-sess_out", dir_.file("s.pem"));
  std::string id = field(out, "Session-ID");
  std::string master = hexToBytes(field(out, "Master-Key"));
  ASSERT_EQ(id.size(), 64u) << out;
  ASSERT_EQ(master.size(), 48u) << out;
  std::string key = "tls:";
  for (char c : id) key.push_back(static_cast<char>(std::tolower(c)));
  std::vector<std::string> records;
  auto readRecords = [&] {  // the text protocol reads what the binary one wrote
    records.clear();
    for (int port : memcached_ports_) {
      RawClient c(port);
      c.send("get " + key + "\r\nquit\r\n");
      std::string raw = c.readAll(2s);
      if (raw.rfind("VALUE ", 0) == 0) records.push_back(raw);
    }
    // Copy 0 is stored under the key itself, written behind the handshake.
    return !records.empty();
  };
  EXPECT_TRUE(eventually(readRecords));
  ASSERT_FALSE(records.empty());
  for (const std::string& raw : records) {
    EXPECT_EQ(raw.find(master), std::string::npos) << "master secret readable in memcached";
    EXPECT_EQ(raw.find("ip=127.0.0.1"), std::string::npos) << "fingerprint readable in memcached";
  }
}

// `top -H`, and the session bench's split of CPU time, tell a node's threads apart by name: every
// thread but the main one is named by its role.
TEST_F(ClusterTest, EveryThreadIsNamedByItsRole) {
  std::map<std::string, int> names;
  auto readNames = [&] {
    names.clear();
    std::string tasks = "/proc/" + std::to_string(nodes_[0]->process().pid()) + "/task";
    for (const auto& task : std::filesystem::directory_iterator(tasks)) {
      std::string name = readFile(task.path().string() + "/comm");
      if (!name.empty() && name.back() == '\n') name.pop_back();
      ++names[name];
    }
    // The worker starts its store lane (io_threads: 2) when its loop starts.
    return names["tessera:io"] >= 2;
  };
  EXPECT_TRUE(eventually(readNames));
  EXPECT_EQ(names["tessera"], 1);  // the main thread (config, admin, signals) keeps the binary's
  EXPECT_EQ(names["tessera:w0"], 1);
  EXPECT_EQ(names["tessera:log"], 1);
  EXPECT_EQ(names["tessera:io"] % 2, 0);  // whole lanes of io_threads each
  for (const auto& [name, count] : names) {
    EXPECT_TRUE(name == "tessera" || name == "tessera:w0" || name == "tessera:io" ||
                name == "tessera:log")
        << "unexpected thread name: " << name;
  }
}

}  // namespace
}  // namespace tessera::testing
