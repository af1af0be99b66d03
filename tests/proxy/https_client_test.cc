// HttpsClient against a real HTTPS server in the test (evhttp on OpenSSL bufferevents, on its own
// thread, requiring a client certificate) and a real UDP name server on the client's loop. The CA,
// server and client certificates are made at test time.

#include "proxy/https_client.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "proxy/outbound_calls.h"
#include "tests/loopback_socket.h"

namespace tessera::proxy {
namespace {

using std::chrono::milliseconds;
using Reply = HttpsClient::Reply;

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << '"' << text << "\" does not contain \"" << part << '"';
}

// ---------------------------------------------------------------------------------------------
// Certificates: a CA, a server and a client certificate it signs, and a rogue server certificate
// it does not.

struct EvpPkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using CertPtr = std::unique_ptr<X509, X509Free>;

void addExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) throw std::runtime_error(std::string("extension ") + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` with subject CN `cn`, signed by `issuer_key` as `issuer` (self-signed
// when `issuer` is null). `san` ("IP:..,DNS:..") may be empty.
CertPtr makeCert(EVP_PKEY* key, const std::string& cn, bool ca, const std::string& san,
                 X509* issuer, EVP_PKEY* issuer_key) {
  static int serial = 1;
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  addExtension(cert.get(), signer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (ca) addExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (!san.empty()) addExtension(cert.get(), signer, NID_subject_alt_name, san.c_str());
  if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) {
    throw std::runtime_error("X509_sign");
  }
  return cert;
}

void writePem(const std::string& path, EVP_PKEY* key, X509* cert) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + path);
  if (key != nullptr) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  if (cert != nullptr) PEM_write_X509(f, cert);
  std::fclose(f);
}

// Writes ca.crt, server.{crt,key}, client.{crt,key} and rogue.{crt,key} into `dir`.
void makeCertificates(const std::string& dir) {
  KeyPtr ca_key(EVP_EC_gen("P-256"));
  CertPtr ca = makeCert(ca_key.get(), "tessera test CA", true, "", nullptr, nullptr);
  writePem(dir + "/ca.crt", nullptr, ca.get());

  KeyPtr server_key(EVP_EC_gen("P-256"));
  CertPtr server = makeCert(server_key.get(), "127.0.0.1", false,
                            "IP:127.0.0.1,IP:::1,DNS:verify.test", ca.get(), ca_key.get());
  writePem(dir + "/server.key", server_key.get(), nullptr);
  writePem(dir + "/server.crt", nullptr, server.get());

  KeyPtr client_key(EVP_EC_gen("P-256"));
  CertPtr client =
      makeCert(client_key.get(), "migration-client", false, "", ca.get(), ca_key.get());
  writePem(dir + "/client.key", client_key.get(), nullptr);
  writePem(dir + "/client.crt", nullptr, client.get());

  // Same names as the server's, but from a CA of its own.
  KeyPtr rogue_ca_key(EVP_EC_gen("P-256"));
  CertPtr rogue_ca = makeCert(rogue_ca_key.get(), "rogue CA", true, "", nullptr, nullptr);
  KeyPtr rogue_key(EVP_EC_gen("P-256"));
  CertPtr rogue = makeCert(rogue_key.get(), "127.0.0.1", false, "IP:127.0.0.1,DNS:verify.test",
                           rogue_ca.get(), rogue_ca_key.get());
  writePem(dir + "/rogue.key", rogue_key.get(), nullptr);
  writePem(dir + "/rogue.crt", nullptr, rogue.get());
}

// ---------------------------------------------------------------------------------------------
// The server: evhttp on 127.0.0.1 with an ephemeral port, on its own thread and event_base. It
// requires a client certificate from the CA. By path:
//   /status/<n>  replies <n> with body "echo:<request body>"
//   /big         replies 200 with a body over the client's cap
//   /silent      never replies

class TestServer {
 public:
  struct Seen {
    std::string path;
    std::string body;
    std::string content_type;
    std::string host;
    std::string client_subject;
    std::string sni;
  };

  // Throws if `address` cannot be bound (an IPv6 loopback on a host without IPv6).
  TestServer(const std::string& dir, const std::string& cert_stem,
             const std::string& address = "127.0.0.1")
      : address_(address) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_file(ctx_, (dir + "/" + cert_stem + ".crt").c_str(),
                                     SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, (dir + "/" + cert_stem + ".key").c_str(),
                                    SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx_, (dir + "/ca.crt").c_str(), nullptr) != 1) {
      throw std::runtime_error("server TLS setup");
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);

    base_ = event_base_new();
    http_ = evhttp_new(base_);
    evhttp_set_bevcb(http_, &TestServer::makeBev, ctx_);
    evhttp_set_gencb(http_, &TestServer::onRequest, this);
    evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(http_, address.c_str(), 0);
    if (bound == nullptr) {
      evhttp_free(http_);
      event_base_free(base_);
      SSL_CTX_free(ctx_);
      throw std::runtime_error("cannot bind " + address);
    }
    port_ = localPort(evhttp_bound_socket_get_fd(bound));
    // The stop signal crosses threads through a pipe, so the server's base needs no locking.
    if (pipe(stop_pipe_) != 0) throw std::runtime_error("pipe");
    stop_ev_ = event_new(base_, stop_pipe_[0], EV_READ, &TestServer::onStop, base_);
    event_add(stop_ev_, nullptr);
    thread_ = std::thread([this] { event_base_dispatch(base_); });
  }

  ~TestServer() {
    char byte = 0;
    ssize_t n = write(stop_pipe_[1], &byte, 1);
    (void)n;
    thread_.join();
    evhttp_free(http_);
    event_free(stop_ev_);
    event_base_free(base_);
    close(stop_pipe_[0]);
    close(stop_pipe_[1]);
    SSL_CTX_free(ctx_);
  }

  int port() const { return port_; }
  std::string url(const std::string& path) const {
    bool v6 = address_.find(':') != std::string::npos;
    std::string host = v6 ? "[" + address_ + "]" : address_;
    return "https://" + host + ":" + std::to_string(port_) + path;
  }
  int requests() const { return requests_.load(); }
  Seen last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

  static int localPort(evutil_socket_t fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }

 private:
  static bufferevent* makeBev(event_base* base, void* arg) {
    return bufferevent_openssl_socket_new(base, -1, SSL_new(static_cast<SSL_CTX*>(arg)),
                                          BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
  }

  static void onStop(evutil_socket_t, short, void* arg) {
    event_base_loopbreak(static_cast<event_base*>(arg));
  }

  static void onRequest(evhttp_request* req, void* arg) {
    static_cast<TestServer*>(arg)->handle(req);
  }

  void handle(evhttp_request* req) {
    Seen seen;
    seen.path = evhttp_request_get_uri(req);
    evbuffer* in = evhttp_request_get_input_buffer(req);
    seen.body.resize(evbuffer_get_length(in));
    evbuffer_copyout(in, seen.body.data(), seen.body.size());
    evkeyvalq* headers = evhttp_request_get_input_headers(req);
    const char* type = evhttp_find_header(headers, "Content-Type");
    seen.content_type = type != nullptr ? type : "";
    const char* host = evhttp_find_header(headers, "Host");
    seen.host = host != nullptr ? host : "";
    bufferevent* bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(req));
    SSL* ssl = bufferevent_openssl_get_ssl(bev);
    if (X509* peer = SSL_get0_peer_certificate(ssl); peer != nullptr) {
      char name[256];
      X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof(name));
      seen.client_subject = name;
    }
    const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    seen.sni = sni != nullptr ? sni : "";
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_ = seen;
    }
    requests_.fetch_add(1);

    if (seen.path == "/silent") return;
    evbuffer* out = evbuffer_new();
    int status = 200;
    if (seen.path == "/big") {
      std::string big(HttpsClient::kMaxReplyBody + 1000, 'x');
      evbuffer_add(out, big.data(), big.size());
    } else if (seen.path.rfind("/status/", 0) == 0) {
      status = std::stoi(seen.path.substr(8));
      evbuffer_add_printf(out, "echo:%s", seen.body.c_str());
    }
    evhttp_send_reply(req, status, "Whatever", out);
    evbuffer_free(out);
  }

  std::string address_;
  SSL_CTX* ctx_ = nullptr;
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  event* stop_ev_ = nullptr;
  int stop_pipe_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> requests_{0};
  std::mutex mu_;
  Seen last_;
};

// ---------------------------------------------------------------------------------------------
// A name server on the client's loop: answers A queries for the names it knows with 127.0.0.1,
// anything else with "no such name". Silent, it only counts queries; holding, it keeps its answers
// until release().

class FakeDns {
 public:
  explicit FakeDns(event_base* base) {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("dns bind");
    }
    port_ = TestServer::localPort(fd_);
    ev_ = event_new(base, fd_, EV_READ | EV_PERSIST, &FakeDns::onQuery, this);
    event_add(ev_, nullptr);
  }
  ~FakeDns() {
    event_free(ev_);
    close(fd_);
  }

  int port() const { return port_; }
  int queries() const { return queries_; }
  void setSilent(bool silent) { silent_ = silent; }
  void setHolding(bool holding) { holding_ = holding; }
  void release() {
    for (const Held& h : held_) {
      sendto(fd_, h.answer.data(), h.answer.size(), 0, reinterpret_cast<const sockaddr*>(&h.to),
             h.to_len);
    }
    held_.clear();
  }

 private:
  static void onQuery(evutil_socket_t fd, short, void* arg) {
    static_cast<FakeDns*>(arg)->answer(fd);
  }

  void answer(evutil_socket_t fd) {
    unsigned char q[512];
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    ssize_t n = recvfrom(fd, q, sizeof(q), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 12) return;
    ++queries_;
    if (silent_) return;
    // The question: labels up to the root, then type and class.
    size_t end = 12;
    std::string name;
    while (end < static_cast<size_t>(n) && q[end] != 0) {
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<char*>(q + end + 1), q[end]);
      end += q[end] + 1;
    }
    end += 5;
    if (end > static_cast<size_t>(n)) return;
    uint16_t type = (q[end - 4] << 8) | q[end - 3];
    // evdns mixes the case of names it asks for (0x20 hardening); compare without it.
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool known = name == "verify.test" || name == "other.test";
    bool with_answer = known && type == 1;

    std::vector<unsigned char> r(q, q + end);
    r[2] = 0x81;                 // response, recursion desired
    r[3] = known ? 0x80 : 0x83;  // recursion available; NXDOMAIN for unknown names
    r[6] = 0;
    r[7] = with_answer ? 1 : 0;  // answers
    r[8] = r[9] = r[10] = r[11] = 0;
    if (with_answer) {
      const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1};
      r.insert(r.end(), rr, rr + sizeof(rr));
    }
    if (holding_) {
      held_.push_back(Held{std::move(r), from, from_len});
      return;
    }
    sendto(fd, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
  }

  struct Held {
    std::vector<unsigned char> answer;
    sockaddr_storage to;
    socklen_t to_len;
  };

  evutil_socket_t fd_ = -1;
  int port_ = 0;
  event* ev_ = nullptr;
  int queries_ = 0;
  bool silent_ = false;
  bool holding_ = false;
  std::vector<Held> held_;
};

// A TCP listener that never accepts: the kernel completes the TCP handshake, TLS never starts.
class BlackHole {
 public:
  BlackHole() { socket_.listen(); }
  std::string url() const { return "https://" + socket_.address() + "/x"; }

 private:
  tessera::testing::LoopbackSocket socket_;
};

// ---------------------------------------------------------------------------------------------

constexpr const char* kJson = "application/json";
constexpr milliseconds kTimeout(5000);

class HttpsClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // As in tessera itself (proxy/server.cc): a peer that closes while we write must be an error,
    // not the end of the process. Here the client drops the oversized reply mid-send.
    signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/tessera_https_client_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    makeCertificates(*dir_);
  }

  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  static std::string path(const std::string& name) { return *dir_ + "/" + name; }

  void SetUp() override {
    base_ = event_base_new();
    dns_ = std::make_unique<FakeDns>(base_);
    resolv_conf_ = path("resolv-" + std::to_string(dns_->port()) + ".conf");
    std::ofstream(resolv_conf_) << "nameserver 127.0.0.1:" << dns_->port() << "\n";
  }

  void TearDown() override {
    client_.reset();
    // Let libevent finish what it deferred (closing sockets, failing lookups) before the base
    // goes, so that the sanitizers see every object released.
    runFor(milliseconds(50));
    dns_.reset();
    event_base_free(base_);
    std::filesystem::remove(resolv_conf_);
  }

  HttpsClient& makeClient(bool with_client_cert = true) {
    ClientTlsFiles files;
    files.ca = path("ca.crt");
    if (with_client_cert) {
      files.client_cert = path("client.crt");
      files.client_key = path("client.key");
    }
    client_ = std::make_unique<HttpsClient>(base_, files, resolv_conf_);
    return *client_;
  }

  // Steps the loop until `done` holds or `limit` passes; a ticking timer keeps each step short.
  bool runUntil(const std::function<bool()>& done, milliseconds limit = milliseconds(5000)) {
    event* tick = event_new(
        base_, -1, EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr);
    timeval tv{0, 10 * 1000};
    event_add(tick, &tv);
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end) {
      event_base_loop(base_, EVLOOP_ONCE);
    }
    event_free(tick);
    return done();
  }
  void runFor(milliseconds period) {
    runUntil([] { return false; }, period);
  }

  // Posts and steps the loop until the reply comes.
  Reply postAndWait(const std::string& url, const std::string& body = "{}",
                    milliseconds timeout = kTimeout) {
    std::optional<Reply> reply;
    client_->post(url, body, kJson, timeout, [&](Reply r) { reply = std::move(r); });
    EXPECT_TRUE(runUntil([&] { return reply.has_value(); }, timeout + milliseconds(5000)));
    return reply.value_or(Reply{-1, {}, "no callback"});
  }

  std::string nameUrl(const std::string& host, const TestServer& server,
                      const std::string& path) const {
    return "https://" + host + ":" + std::to_string(server.port()) + path;
  }

  static std::string* dir_;
  event_base* base_ = nullptr;
  std::unique_ptr<FakeDns> dns_;
  std::string resolv_conf_;
  std::unique_ptr<HttpsClient> client_;
};

std::string* HttpsClientTest::dir_ = nullptr;

// --- Replies

TEST_F(HttpsClientTest, PostGetsStatusAndBodyAndServerSeesClientCertificate) {
  TestServer server(*dir_, "server");
  makeClient();
  Reply reply = postAndWait(server.url("/status/201?x=1"), R"({"pass":"abc"})");
  EXPECT_EQ(reply.status, 201);
  EXPECT_EQ(reply.body, R"(echo:{"pass":"abc"})");
  EXPECT_EQ(reply.error, "");
  TestServer::Seen seen = server.last();
  EXPECT_EQ(seen.path, "/status/201?x=1");
  EXPECT_EQ(seen.body, R"({"pass":"abc"})");
  EXPECT_EQ(seen.content_type, kJson);
  EXPECT_EQ(seen.host, "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_TRUE(contains(seen.client_subject, "CN=migration-client"));
  EXPECT_EQ(seen.sni, "");  // no SNI for an IP literal
  EXPECT_EQ(client_->pending(), 0u);
}

TEST_F(HttpsClientTest, ErrorStatusIsAReplyNotAFailure) {
  TestServer server(*dir_, "server");
  makeClient();
  Reply reply = postAndWait(server.url("/status/403"), "no");
  EXPECT_EQ(reply.status, 403);
  EXPECT_EQ(reply.body, "echo:no");
  EXPECT_EQ(reply.error, "");
}

TEST_F(HttpsClientTest, EmptyBodyIsSent) {
  TestServer server(*dir_, "server");
  makeClient();
  Reply reply = postAndWait(server.url("/status/200"), "");
  EXPECT_EQ(reply.status, 200) << reply.error;
  EXPECT_EQ(reply.body, "echo:");
  EXPECT_EQ(server.last().body, "");
}

TEST_F(HttpsClientTest, HostNameIsResolvedWithoutBlockingAndSentAsSni) {
  TestServer server(*dir_, "server");
  makeClient();
  Reply reply = postAndWait(nameUrl("verify.test", server, "/status/200"), "hi");
  EXPECT_EQ(reply.status, 200) << reply.error;
  EXPECT_EQ(reply.body, "echo:hi");
  EXPECT_GE(dns_->queries(), 1);
  EXPECT_EQ(server.last().sni, "verify.test");
  EXPECT_EQ(server.last().host, "verify.test:" + std::to_string(server.port()));
}

TEST_F(HttpsClientTest, ReplyBodyOverTheCapFails) {
  TestServer server(*dir_, "server");
  makeClient();
  Reply reply = postAndWait(server.url("/big"));
  EXPECT_EQ(reply.status, 0);
  EXPECT_TRUE(contains(reply.error, "reply too large"));
  EXPECT_EQ(reply.body, "");
}

// --- Trust

TEST_F(HttpsClientTest, WithoutClientCertificateTheServerRefuses) {
  TestServer server(*dir_, "server");
  makeClient(/*with_client_cert=*/false);
  Reply reply = postAndWait(server.url("/status/200"));
  EXPECT_EQ(reply.status, 0);
  EXPECT_NE(reply.error, "");
  EXPECT_EQ(server.requests(), 0);
}

TEST_F(HttpsClientTest, ServerCertificateNotFromTheCaFails) {
  TestServer rogue(*dir_, "rogue");
  makeClient();
  Reply reply = postAndWait(rogue.url("/status/200"));
  EXPECT_EQ(reply.status, 0);
  EXPECT_TRUE(contains(reply.error, "certificate verify failed"));
  EXPECT_EQ(rogue.requests(), 0);
}

TEST_F(HttpsClientTest, ServerCertificateNotNamingTheHostFails) {
  TestServer server(*dir_, "server");
  makeClient();
  // other.test resolves to the same server, whose certificate does not name it.
  Reply reply = postAndWait(nameUrl("other.test", server, "/status/200"));
  EXPECT_EQ(reply.status, 0);
  EXPECT_TRUE(contains(reply.error, "certificate verify failed"));
  EXPECT_EQ(server.requests(), 0);
}

// --- Failures and deadlines

TEST_F(HttpsClientTest, ServerThatNeverAnswersTimesOut) {
  TestServer server(*dir_, "server");
  makeClient();
  auto start = std::chrono::steady_clock::now();
  // Long enough for the handshake and the request to arrive on a loaded machine; the bounds show
  // that the call's own deadline ended it (not one of evhttp's or evdns's defaults).
  Reply reply = postAndWait(server.url("/silent"), "{}", milliseconds(1500));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(reply.status, 0);
  EXPECT_EQ(reply.error, "timeout");
  EXPECT_EQ(server.requests(), 1);
  EXPECT_GE(elapsed, milliseconds(1490));
  EXPECT_LT(elapsed, milliseconds(4500));
}

TEST_F(HttpsClientTest, HandshakeThatNeverEndsTimesOut) {
  BlackHole hole;
  makeClient();
  auto start = std::chrono::steady_clock::now();
  Reply reply = postAndWait(hole.url(), "{}", milliseconds(300));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(reply.status, 0);
  EXPECT_EQ(reply.error, "timeout");
  EXPECT_GE(elapsed, milliseconds(290));
  EXPECT_LT(elapsed, milliseconds(4000));  // far below evhttp's own timeouts
}

TEST_F(HttpsClientTest, LookupThatNeverEndsTimesOut) {
  dns_->setSilent(true);
  makeClient();
  Reply reply = postAndWait("https://verify.test:1/x", "{}", milliseconds(300));
  EXPECT_EQ(reply.status, 0);
  EXPECT_EQ(reply.error, "timeout");
  EXPECT_GE(dns_->queries(), 1);
}

TEST_F(HttpsClientTest, UnknownHostNameFails) {
  makeClient();
  Reply reply = postAndWait("https://nowhere.test:1/x");
  EXPECT_EQ(reply.status, 0);
  EXPECT_NE(reply.error, "");
  EXPECT_NE(reply.error, "timeout");
}

TEST_F(HttpsClientTest, RefusedConnectionFails) {
  tessera::testing::LoopbackSocket refusing;  // bound, never listened on
  makeClient();
  Reply reply = postAndWait("https://" + refusing.address() + "/x");
  EXPECT_EQ(reply.status, 0);
  EXPECT_NE(reply.error, "");
  EXPECT_NE(reply.error, "timeout");
}

TEST_F(HttpsClientTest, BadUrlFailsThroughTheCallbackNeverInsidePost) {
  makeClient();
  for (const char* url : {"http://127.0.0.1:1/x", "https://", "not a url", "https://u:p@h.test/",
                          "https://127.0.0.1:70000/"}) {
    std::optional<Reply> reply;
    client_->post(url, "{}", kJson, kTimeout, [&](Reply r) { reply = std::move(r); });
    EXPECT_FALSE(reply.has_value()) << url;
    ASSERT_TRUE(runUntil([&] { return reply.has_value(); })) << url;
    EXPECT_EQ(reply->status, 0) << url;
    EXPECT_NE(reply->error, "") << url;
  }
}

TEST_F(HttpsClientTest, ContentTypeWithLineBreakIsRefused) {
  makeClient();
  std::optional<Reply> reply;
  client_->post("https://127.0.0.1:1/x", "{}", "text/plain\r\nX-Evil: 1", kTimeout,
                [&](Reply r) { reply = std::move(r); });
  ASSERT_TRUE(runUntil([&] { return reply.has_value(); }));
  EXPECT_EQ(reply->status, 0);
  EXPECT_TRUE(contains(reply->error, "content type"));
}

// --- Cancel and destruction

TEST_F(HttpsClientTest, CancelledCallNeverCallsBack) {
  TestServer server(*dir_, "server");
  makeClient();
  int cancelled_calls = 0;
  auto count = [&](Reply) { ++cancelled_calls; };
  // Before anything happened, after the request reached the server, after a failure that is
  // waiting to be delivered.
  client_->cancel(client_->post(server.url("/silent"), "{}", kJson, kTimeout, count));
  HttpsClient::CallId in_flight =
      client_->post(server.url("/silent"), "{}", kJson, kTimeout, count);
  ASSERT_TRUE(runUntil([&] { return server.requests() == 1; }));
  client_->cancel(in_flight);
  client_->cancel(client_->post("bad url", "{}", kJson, kTimeout, count));
  EXPECT_EQ(client_->pending(), 0u);

  // A later call goes through, and the cancelled ones stay silent.
  Reply reply = postAndWait(server.url("/status/200"), "after");
  EXPECT_EQ(reply.status, 200);
  client_->cancel(in_flight);  // finished or unknown ids are ignored
  client_->cancel(12345);
  runFor(milliseconds(200));
  EXPECT_EQ(cancelled_calls, 0);
}

TEST_F(HttpsClientTest, CancelDuringLookupNeverCallsBack) {
  dns_->setSilent(true);
  makeClient();
  bool called = false;
  HttpsClient::CallId id = client_->post("https://verify.test:1/x", "{}", kJson, milliseconds(1000),
                                         [&](Reply) { called = true; });
  ASSERT_TRUE(runUntil([&] { return dns_->queries() >= 1; }));
  client_->cancel(id);
  runFor(milliseconds(1500));  // past the would-be deadline
  EXPECT_FALSE(called);
}

// The lookup's answer still comes after the cancel: libevent must not use the freed connection.
TEST_F(HttpsClientTest, AnswerToACancelledLookupIsIgnored) {
  TestServer server(*dir_, "server");
  dns_->setHolding(true);
  makeClient();
  bool called = false;
  HttpsClient::CallId id = client_->post(nameUrl("verify.test", server, "/status/200"), "{}", kJson,
                                         kTimeout, [&](Reply) { called = true; });
  ASSERT_TRUE(runUntil([&] { return dns_->queries() >= 2; }));  // A and AAAA
  client_->cancel(id);
  dns_->release();
  runFor(milliseconds(300));
  EXPECT_FALSE(called);
  EXPECT_EQ(server.requests(), 0);

  // The client still works afterwards.
  dns_->setHolding(false);
  Reply reply = postAndWait(nameUrl("verify.test", server, "/status/200"), "again");
  EXPECT_EQ(reply.status, 200) << reply.error;
}

TEST_F(HttpsClientTest, DestroyingTheClientDropsEveryPendingCall) {
  TestServer server(*dir_, "server");
  BlackHole hole;
  dns_->setSilent(true);
  makeClient();
  int calls = 0;
  auto count = [&](Reply) { ++calls; };
  // Deadlines long enough that none passes before the reset on a loaded machine; the loop then
  // runs past them.
  constexpr milliseconds kDeadline(2000);
  client_->post(server.url("/silent"), "{}", kJson, kDeadline, count);      // awaiting reply
  client_->post(hole.url(), "{}", kJson, kDeadline, count);                 // in handshake
  client_->post("https://verify.test:1/x", "{}", kJson, kDeadline, count);  // in lookup
  ASSERT_TRUE(runUntil([&] { return server.requests() == 1 && dns_->queries() >= 1; }));
  client_->post("bad url", "{}", kJson, kDeadline, count);  // failed, not yet delivered
  EXPECT_EQ(client_->pending(), 4u);
  client_.reset();
  runFor(kDeadline + milliseconds(500));
  EXPECT_EQ(calls, 0);
}

TEST_F(HttpsClientTest, CallbackMayDestroyTheClient) {
  makeClient();
  int calls = 0;
  auto destroy = [&](Reply) {
    ++calls;
    client_.reset();
  };
  // Both fail at once and are delivered in one batch; the first destroys the client, so the
  // second must not run.
  client_->post("bad url", "{}", kJson, kTimeout, destroy);
  client_->post("bad url", "{}", kJson, kTimeout, destroy);
  runFor(milliseconds(100));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(client_, nullptr);
}

TEST_F(HttpsClientTest, CallbackMayPostAgain) {
  TestServer server(*dir_, "server");
  makeClient();
  std::optional<Reply> second;
  client_->post(server.url("/status/200"), "one", kJson, kTimeout, [&](Reply first) {
    EXPECT_EQ(first.body, "echo:one");
    client_->post(server.url("/status/202"), "two", kJson, kTimeout,
                  [&](Reply r) { second = std::move(r); });
  });
  ASSERT_TRUE(runUntil([&] { return second.has_value(); }));
  EXPECT_EQ(second->status, 202);
  EXPECT_EQ(second->body, "echo:two");
}

TEST_F(HttpsClientTest, ThrowingCallbackDoesNotEscapeIntoTheLoop) {
  makeClient();
  bool next = false;
  client_->post("bad url", "{}", kJson, kTimeout, [](Reply) { throw std::runtime_error("x"); });
  client_->post("bad url", "{}", kJson, kTimeout, [&](Reply) { next = true; });
  EXPECT_TRUE(runUntil([&] { return next; }));
}

// --- Construction

// OutboundCalls reads a set of TLS files once per config: a broken set fails each call without
// reading the files again, and a reload makes the client again from what is on disk by then.
TEST_F(HttpsClientTest, OutboundCallsReadTheFilesOncePerConfig) {
  TestServer server(*dir_, "server");
  OutboundCalls calls(base_);
  std::string ca = path("later-ca.crt");
  std::filesystem::remove(ca);
  plugins::OutboundTls tls{path("client.crt"), path("client.key"), ca};
  auto call = [&] {
    std::optional<plugins::OutboundReply> reply;
    calls.post(server.url("/status/201"), tls, "{}", kJson, kTimeout,
               [&](plugins::OutboundReply r) { reply = std::move(r); });
    EXPECT_TRUE(runUntil([&] { return reply.has_value(); }));
    return reply.value_or(plugins::OutboundReply{-1, "", "no callback"});
  };
  plugins::OutboundReply missing = call();
  EXPECT_EQ(missing.status, 0);
  EXPECT_TRUE(contains(missing.error, "later-ca.crt")) << missing.error;

  std::filesystem::copy_file(path("ca.crt"), ca);
  EXPECT_EQ(call().status, 0);  // the same config: the failure stands, nothing is read again

  calls.reload();
  plugins::OutboundReply after = call();
  EXPECT_EQ(after.status, 201) << after.error;
  std::filesystem::remove(ca);
  calls.reload();  // and a reload reads again: the file is gone now
  EXPECT_EQ(call().status, 0);
}

TEST_F(HttpsClientTest, ConstructorNamesTheFileThatFails) {
  auto message = [&](ClientTlsFiles files) -> std::string {
    try {
      HttpsClient client(base_, files, resolv_conf_);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_TRUE(contains(message({"", "", path("missing-ca.crt")}), "missing-ca.crt"));
  EXPECT_TRUE(contains(message({"", "", path("server.key")}), "server.key"));  // not a CA file
  EXPECT_TRUE(
      contains(message({path("client.crt"), path("nope.key"), path("ca.crt")}), "nope.key"));
  EXPECT_TRUE(contains(message({path("client.crt"), path("server.key"), path("ca.crt")}),
                       "server.key"));  // not the client certificate's key
  EXPECT_TRUE(contains(message({path("client.crt"), "", path("ca.crt")}), "go together"));
  EXPECT_TRUE(contains(message({"", "", ""}), "CA file is required"));
  EXPECT_EQ(message({"", "", path("ca.crt")}), "no error");
}

}  // namespace
}  // namespace tessera::proxy
