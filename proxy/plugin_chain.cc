#include "proxy/plugin_chain.h"

#include <spdlog/spdlog.h>

#include "cache/sealer.h"
#include "proxy/audit_log.h"
#include "proxy/device_fingerprint.h"
#include "proxy/snapshot.h"

namespace tessera::proxy {

// ---- HeadView ----------------------------------------------------------------------------------

std::optional<std::string_view> HeadView::header(std::string_view name) const {
  const std::string* v = head_.headers.find(name);
  if (v == nullptr) return std::nullopt;
  return std::string_view(*v);
}

std::vector<std::string_view> HeadView::headers(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const Header& h : head_.headers) {
    if (equalsIgnoreCase(h.name, name)) out.emplace_back(h.value);
  }
  return out;
}

void HeadView::removeHeader(std::string_view name) { head_.headers.removeAll(name); }

void HeadView::setHeader(std::string_view name, std::string_view value) {
  removeHeader(name);
  head_.headers.add(name, value);
}

// ---- one plugin instance with its Context and Callbacks ----------------------------------------

class PluginChain::Slot : public plugins::Context, public plugins::Callbacks {
 public:
  Slot(PluginChain& chain, const PluginTarget& target) : chain_(chain), name_(target.name) {
    plugin = target.factory->create(*this, *this);
  }

  cache::Store& store() override { return chain_.store_; }
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
  std::string_view clientIp() const override { return chain_.client_.ip; }
  std::string deviceFingerprint(const std::vector<std::string>& attributes, int v4,
                                int v6) const override {
    return chain_.fingerprint(attributes, v4, v6);
  }
  std::string seal(std::string_view aad, std::string_view plaintext) const override {
    return chain_.snapshot_.sealer().seal(aad, plaintext);
  }
  std::optional<std::string> open(std::string_view aad, std::string_view sealed) const override {
    return chain_.snapshot_.sealer().open(aad, sealed);
  }
  void audit(std::string_view event,
             std::initializer_list<std::pair<std::string_view, std::string_view>> fields) override;
  void count(std::string_view event) override { chain_.metrics_.countPluginEvent(name_, event); }

  void resume() override;
  void sendLocalReply(int status, std::vector<plugins::HeaderField> headers,
                      std::string body) override;

  std::unique_ptr<plugins::Plugin> plugin;

 private:
  PluginChain& chain_;
  std::string name_;
};

void PluginChain::Slot::audit(
    std::string_view event,
    std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  // AuditLog::record takes one list: build it with the client's identity in front.
  std::vector<std::pair<std::string_view, std::string_view>> all = {
      {"listener", chain_.client_.listener}, {"client", chain_.client_.ip}, {"plugin", name_}};
  all.insert(all.end(), fields.begin(), fields.end());
  chain_.snapshot_.auditLog().recordAll(event, all);
}

void PluginChain::Slot::resume() {
  if (chain_.finished_) return;
  if (chain_.in_hook_) {
    chain_.resumed_ = true;
    return;
  }
  if (!chain_.waiting_) return;  // a second resume(), or after a reply: ignored
  chain_.waiting_ = false;
  ++chain_.next_;
  State s = chain_.runRequestHooks();
  if (s == State::kDone) chain_.owner_.chainResumed();
  if (s == State::kReplied) chain_.owner_.chainReplied(chain_.takeReply());
}

void PluginChain::Slot::sendLocalReply(int status, std::vector<plugins::HeaderField> headers,
                                       std::string body) {
  if (chain_.finished_ || chain_.reply_) return;  // one answer per request
  chain_.reply_ = LocalReply{status, std::move(headers), std::move(body)};
  if (chain_.in_hook_) return;  // the running hook's caller picks it up
  chain_.waiting_ = false;
  chain_.owner_.chainReplied(chain_.takeReply());
}

// ---- the chain ---------------------------------------------------------------------------------

PluginChain::PluginChain(Owner& owner, const RouteTarget& route, const Snapshot& snapshot,
                         cache::Store& store, WorkerMetrics& metrics, Client client)
    : owner_(owner), snapshot_(snapshot), store_(store), metrics_(metrics), client_(client) {
  for (const PluginTarget* target : route.plugins) {
    slots_.push_back(std::make_unique<Slot>(*this, *target));
  }
}

PluginChain::~PluginChain() { finish(); }

void PluginChain::finish() {
  if (finished_) return;
  finished_ = true;
  for (auto& slot : slots_) slot->plugin->onDestroy();
}

PluginChain::State PluginChain::runRequest(MessageHead& head, std::string host) {
  request_ = std::make_unique<HeadView>(head, std::move(host));
  next_ = 0;
  return runRequestHooks();
}

PluginChain::State PluginChain::runRequestHooks() {
  while (next_ < slots_.size()) {
    in_hook_ = true;
    resumed_ = false;
    plugins::Verdict v = slots_[next_]->plugin->onRequestHeaders(*request_);
    in_hook_ = false;
    if (reply_) return State::kReplied;
    if (v == plugins::Verdict::kStop && !resumed_) {
      waiting_ = true;
      return State::kWaiting;
    }
    ++next_;
  }
  return State::kDone;
}

PluginChain::State PluginChain::runResponse(MessageHead& head) {
  HeadView view(head, "");
  for (size_t i = slots_.size(); i-- > 0;) {  // the reverse of the request order, as Envoy does
    in_hook_ = true;
    resumed_ = false;
    plugins::Verdict v = slots_[i]->plugin->onResponseHeaders(view);
    in_hook_ = false;
    if (reply_) return State::kReplied;
    if (v == plugins::Verdict::kStop && !resumed_) {
      spdlog::error("a plugin stopped a response without replying; answering 502");
      reply_ = LocalReply{502, {}, "bad gateway\n"};
      return State::kReplied;
    }
  }
  return State::kDone;
}

std::string PluginChain::fingerprint(const std::vector<std::string>& attributes, int v4,
                                     int v6) const {
  std::string fp;
  for (const std::string& a : attributes) {
    if (!fp.empty()) fp.push_back(';');
    fp += a + "=";
    if (a == "ip") {
      fp += maskedIp(*client_.peer, v4, v6);
    } else if (a == "ja4") {
      fp += client_.ja4;
    } else if (a == "user_agent") {
      fp += request_ ? request_->header("user-agent").value_or("") : "";
    } else if (a.rfind("header:", 0) == 0) {
      fp += request_ ? request_->header(a.substr(7)).value_or("") : "";
    }
  }
  return fp;
}

}  // namespace tessera::proxy
