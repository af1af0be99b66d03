#include "proxy/outbound_calls.h"

#include <stdexcept>
#include <utility>
#include <vector>

namespace tessera::proxy {

OutboundCalls::OutboundCalls(event_base* base)
    : base_(base), failed_ev_(event_new(base, -1, 0, &OutboundCalls::onFailed, this)) {}

OutboundCalls::~OutboundCalls() {
  event_free(failed_ev_);
  clients_.clear();  // drops every pending callback without running it
  retired_.clear();
}

uint64_t OutboundCalls::post(std::string_view url, const plugins::OutboundTls& tls,
                             std::string body, std::string_view content_type,
                             std::chrono::milliseconds timeout,
                             plugins::OutboundCallback callback) {
  uint64_t id = next_id_++;
  dropIdleRetired();
  std::string key = tls.client_cert + '\n' + tls.client_key + '\n' + tls.ca;
  auto it = clients_.find(key);
  if (it == clients_.end()) {
    Client made;
    try {
      ClientTlsFiles files{tls.client_cert, tls.client_key, tls.ca};
      made.client = std::make_unique<HttpsClient>(base_, files);
    } catch (const std::exception& e) {
      made.error = e.what();  // not read again (on every call) before the next reload
    }
    it = clients_.emplace(key, std::move(made)).first;
  }
  if (!it->second.client) {
    failLater(id, it->second.error, std::move(callback));
    return id;
  }
  HttpsClient* client = it->second.client.get();
  HttpsClient::CallId call = client->post(
      url, body, content_type, timeout,
      [this, id, callback = std::move(callback)](HttpsClient::Reply r) {
        routes_.erase(id);
        callback(plugins::OutboundReply{r.status, std::move(r.body), std::move(r.error)});
      });
  routes_[id] = Route{client, call};
  return id;
}

// Answered from the loop, as every other outcome is.
void OutboundCalls::failLater(uint64_t id, std::string error, plugins::OutboundCallback callback) {
  failed_.emplace_back(id, std::move(callback));
  failed_errors_[id] = std::move(error);
  routes_[id] = Route{};
  event_active(failed_ev_, EV_TIMEOUT, 0);
}

void OutboundCalls::reload() {
  for (auto& [key, c] : clients_) {
    if (c.client) retired_.push_back(std::move(c.client));
  }
  clients_.clear();
  dropIdleRetired();
}

void OutboundCalls::dropIdleRetired() {
  std::erase_if(retired_, [](const std::unique_ptr<HttpsClient>& c) { return c->pending() == 0; });
}

void OutboundCalls::cancel(uint64_t id) {
  auto it = routes_.find(id);
  if (it == routes_.end()) return;
  if (it->second.client != nullptr) it->second.client->cancel(it->second.call);
  routes_.erase(it);
}

void OutboundCalls::onFailed(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<OutboundCalls*>(arg);
  std::vector<std::pair<uint64_t, plugins::OutboundCallback>> failed;
  failed.swap(self->failed_);
  for (auto& [id, callback] : failed) {
    std::string error = std::move(self->failed_errors_[id]);
    self->failed_errors_.erase(id);
    if (self->routes_.erase(id) == 0) continue;  // cancelled meanwhile
    callback(plugins::OutboundReply{0, "", error});
  }
}

}  // namespace tessera::proxy
