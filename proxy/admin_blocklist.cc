#include "proxy/admin_blocklist.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <utility>

#include "cache/sealer.h"
#include "plugins/config_fields.h"
#include "plugins/encoding.h"
#include "plugins/json_input.h"

namespace tessera::proxy {

namespace {

using Json = nlohmann::json;
using plugins::guard::BlockEntry;
using plugins::guard::Blocklist;

const std::chrono::milliseconds kStoreTimeout{1000};
const cache::Seconds kLockTtl{5};  // a node that dies holding the lock holds it this long at most
// Longer than the lock's TTL, so that a lock left behind (a node that died, or this node's own
// after a write that timed out) expires before a change gives up on it. Tries are 50 ms apart.
constexpr std::chrono::milliseconds kLockWait{6000};
const timeval kRetryDelay = {0, 50 * 1000};
// The document outlives every entry; a write renews it.
const cache::Seconds kDocumentTtl{int64_t{365} * 24 * 3600};
constexpr size_t kMaxBody = 4096;

int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string bodyOf(evhttp_request* req) {
  evbuffer* in = evhttp_request_get_input_buffer(req);
  size_t size = evbuffer_get_length(in);
  if (size > kMaxBody) return {};
  std::string out(size, '\0');
  evbuffer_copyout(in, out.data(), size);
  return out;
}

std::string error(const std::string& message) { return Json{{"error", message}}.dump() + "\n"; }

std::string listing(const Blocklist& list) {
  Json entries = Json::array();
  for (const BlockEntry& e : list.entries()) {
    entries.push_back(
        {{"kind", plugins::guard::kindName(e.kind)}, {"value", e.value}, {"expires", e.expires}});
  }
  return Json{{"entries", std::move(entries)}}.dump(-1, ' ', false,
                                                    Json::error_handler_t::replace) +
         "\n";
}

// The document as stored: sealed under its key. Missing: an empty list; unreadable: nullopt.
std::optional<Blocklist> openDocument(const cache::Sealer& sealer, const cache::Result& r) {
  if (r.status == cache::Status::kNotFound) return Blocklist();
  if (r.status != cache::Status::kOk) return std::nullopt;
  std::optional<std::string> text = sealer.open(plugins::guard::kBlocklistKey, r.value);
  return text ? Blocklist::parse(*text) : std::nullopt;
}

// The change a POST or DELETE asks for, or the 400 message.
std::optional<BlockEntry> parseChange(evhttp_request* req, bool remove, std::string& problem) {
  std::string kind, value, ttl;
  const char* uri = evhttp_request_get_uri(req);
  evkeyvalq query{};
  const char* q = uri == nullptr ? nullptr : std::strchr(uri, '?');
  if (remove && q != nullptr && evhttp_parse_query_str(q + 1, &query) == 0) {
    const char* k = evhttp_find_header(&query, "kind");
    const char* v = evhttp_find_header(&query, "value");
    if (k != nullptr) kind = k;
    if (v != nullptr) value = v;
    evhttp_clear_headers(&query);
  }
  if (kind.empty()) {
    Json body = plugins::parseJsonObject(bodyOf(req), 4).value_or(Json());
    if (!body.is_object() || !body["kind"].is_string() || !body["value"].is_string()) {
      problem = "expected a JSON object with string members kind and value";
      return std::nullopt;
    }
    kind = body["kind"].get<std::string>();
    value = body["value"].get<std::string>();
    if (!remove && body.contains("ttl")) {
      if (!body["ttl"].is_string()) {
        problem = "ttl must be a duration like \"30s\", \"10m\" or \"24h\"";
        return std::nullopt;
      }
      ttl = body["ttl"].get<std::string>();
    }
  }
  int64_t expires = 0;
  if (!ttl.empty()) {
    std::optional<cache::Millis> d = plugins::fields::parseDuration(ttl);
    if (!d || d->count() <= 0) {
      problem = "ttl must be a duration like \"30s\", \"10m\" or \"24h\"";
      return std::nullopt;
    }
    expires = nowSeconds() + std::max<int64_t>(1, (d->count() + 999) / 1000);
  }
  return Blocklist::makeEntry(kind, value, expires, problem);
}

}  // namespace

void sendJson(evhttp_request* req, int status, const std::string& body) {
  evbuffer* out = evbuffer_new();
  evbuffer_add(out, body.data(), body.size());
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evhttp_send_reply(req, status, nullptr, out);
  evbuffer_free(out);
}

AdminBlocklist::AdminBlocklist(cache::StoreBackend& backend, event_base* base)
    : store_(backend.connect(base)), retry_(evtimer_new(base, &AdminBlocklist::onRetry, this)) {
  unsigned char random[16] = {};
  if (RAND_bytes(random, sizeof(random)) != 1) {
    ERR_clear_error();  // the pid still tells nodes apart
  }
  lock_token_ =
      "admin-" + std::to_string(getpid()) + "-" +
      plugins::hexEncode(std::string_view(reinterpret_cast<char*>(random), sizeof(random)));
}

AdminBlocklist::~AdminBlocklist() {
  store_.reset();  // drops pending callbacks before what they point to goes
  if (retry_ != nullptr) event_free(retry_);
}

void AdminBlocklist::handle(evhttp_request* req, std::shared_ptr<const cache::Sealer> sealer) {
  evhttp_cmd_type method = evhttp_request_get_command(req);
  if (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD) {
    list(req, std::move(sealer));
    return;
  }
  if (method != EVHTTP_REQ_POST && method != EVHTTP_REQ_DELETE) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, POST, DELETE");
    sendJson(req, 405, error("GET, POST or DELETE"));
    return;
  }
  if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > kMaxBody) {
    sendJson(req, 413, error("body over 4096 bytes"));
    return;
  }
  std::string problem;
  std::optional<BlockEntry> entry = parseChange(req, method == EVHTTP_REQ_DELETE, problem);
  if (!entry) {
    sendJson(req, 400, error(problem));
    return;
  }
  queue_.push_back(
      Change{req, method == EVHTTP_REQ_DELETE, std::move(*entry), std::move(sealer), {}});
  if (!busy_) next();
}

void AdminBlocklist::list(evhttp_request* req, std::shared_ptr<const cache::Sealer> sealer) {
  store_->get(plugins::guard::kBlocklistKey, kStoreTimeout, [req, sealer](cache::Result r) {
    std::optional<Blocklist> list = openDocument(*sealer, r);
    if (!list) {
      sendJson(req, 503, error("the blocklist cannot be read from the store"));
      return;
    }
    list->prune(nowSeconds());
    sendJson(req, 200, listing(*list));
  });
}

void AdminBlocklist::next() {
  busy_ = !queue_.empty();
  if (busy_) lock();
}

void AdminBlocklist::lock() {
  Change& first = queue_.front();
  if (first.lock_deadline == std::chrono::steady_clock::time_point{}) {
    first.lock_deadline = std::chrono::steady_clock::now() + kLockWait;
  }
  store_->add(plugins::guard::kBlocklistLockKey, lock_token_, kLockTtl, kStoreTimeout,
              [this](cache::Result r) {
                Change& c = queue_.front();
                if (r.status == cache::Status::kExists &&
                    std::chrono::steady_clock::now() < c.lock_deadline) {
                  evtimer_add(retry_, &kRetryDelay);  // another node is changing it
                  return;
                }
                if (r.status != cache::Status::kOk) {
                  sendJson(c.req, 503, error("the blocklist is locked or the store is down"));
                  queue_.pop_front();
                  next();
                  return;
                }
                store_->get(plugins::guard::kBlocklistKey, kStoreTimeout,
                            [this](cache::Result doc) { change(std::move(doc)); });
              });
}

void AdminBlocklist::onRetry(evutil_socket_t, short, void* arg) {
  static_cast<AdminBlocklist*>(arg)->lock();
}

void AdminBlocklist::change(cache::Result document) {
  Change& c = queue_.front();
  std::optional<Blocklist> list = openDocument(*c.sealer, document);
  if (!list) {
    finish(503, error("the blocklist cannot be read from the store"));
    return;
  }
  list->prune(nowSeconds());
  int status = 200;
  if (c.remove) {
    if (!list->remove(c.entry.kind, c.entry.value)) {
      finish(404, error("no such entry"));
      return;
    }
  } else {
    bool replaced = std::any_of(
        list->entries().begin(), list->entries().end(),
        [&](const BlockEntry& e) { return e.kind == c.entry.kind && e.value == c.entry.value; });
    if (!list->add(c.entry)) {
      finish(507, error("the blocklist is full"));
      return;
    }
    status = replaced ? 200 : 201;
  }
  std::string sealed = c.sealer->seal(plugins::guard::kBlocklistKey, list->serialize());
  std::string body = listing(*list);
  store_->set(plugins::guard::kBlocklistKey, sealed, kDocumentTtl, kStoreTimeout,
              [this, status, body](cache::Result r) {
                if (r.status != cache::Status::kOk) {
                  finish(503, error("the store did not take the change"),
                         r.status != cache::Status::kTimeout);
                  return;
                }
                const Change& done = queue_.front();
                spdlog::info("blocklist: {} {} {}", done.remove ? "removed" : "added",
                             plugins::guard::kindName(done.entry.kind), done.entry.value);
                finish(status, body);
              });
}

void AdminBlocklist::finish(int status, std::string body, bool unlock) {
  sendJson(queue_.front().req, status, body);
  queue_.pop_front();
  if (!unlock) {
    next();  // the next change waits for the lock's TTL
    return;
  }
  // Only this node's lock: one that expired meanwhile may be another node's by now. (The check
  // and the remove are two steps; the lock's TTL bounds what a race between them costs.)
  store_->get(plugins::guard::kBlocklistLockKey, kStoreTimeout, [this](cache::Result r) {
    if (r.status != cache::Status::kOk || r.value != lock_token_) {
      next();
      return;
    }
    store_->remove(plugins::guard::kBlocklistLockKey, kStoreTimeout,
                   [this](cache::Result) { next(); });
  });
}

}  // namespace tessera::proxy
