#include "proxy/plugin_chain.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "cache/sealer.h"
#include "proxy/audit_log.h"
#include "proxy/device_fingerprint.h"
#include "proxy/outbound_calls.h"
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
  Slot(PluginChain& chain, const PluginTarget& target)
      : may_read_body(target.factory->wantsRequestBody()), chain_(chain), name_(target.name) {
    plugin = target.factory->create(*this, *this);
  }

  cache::Store& store() override { return chain_.store_; }
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
  std::string_view clientIp() const override { return chain_.client_.ip; }
  std::string_view scheme() const override { return chain_.client_.tls ? "https" : "http"; }
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
  bool clientCertificateVerified() const override { return chain_.client_.certificate_verified; }
  uint64_t post(std::string_view url, const plugins::OutboundTls& tls, std::string body,
                std::string_view content_type, std::chrono::milliseconds timeout,
                plugins::OutboundCallback callback) override {
    return chain_.outbound_.post(url, tls, std::move(body), content_type, timeout,
                                 std::move(callback));
  }
  void cancelPost(uint64_t id) override { chain_.outbound_.cancel(id); }
  void share(std::string_view name, std::string_view value) override { chain_.share(name, value); }
  std::optional<std::string_view> shared(std::string_view name) const override {
    for (const auto& [key, value] : chain_.shared_) {
      if (key == name) return value;
    }
    return std::nullopt;
  }

  void resume() override;
  void sendLocalReply(int status, std::vector<plugins::HeaderField> headers,
                      std::string body) override;

  const bool may_read_body;          // its factory's wantsRequestBody()
  bool reads_body = false;           // and this request's plugin said wantsBody()
  bool reads_response_body = false;  // this request's plugin said wantsResponseBody()
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
  chain_.resumed();
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
                         cache::Store& store, WorkerMetrics& metrics, OutboundCalls& outbound,
                         Client client)
    : owner_(owner),
      snapshot_(snapshot),
      store_(store),
      metrics_(metrics),
      outbound_(outbound),
      client_(client),
      shared_reads_(route.shared_reads) {
  for (const PluginTarget* target : route.plugins) {
    slots_.push_back(std::make_unique<Slot>(*this, *target));
    wants_body_ = wants_body_ || slots_.back()->may_read_body;
  }
}

PluginChain::~PluginChain() { finish(); }

void PluginChain::share(std::string_view name, std::string_view value) {
  if (std::find(shared_reads_.begin(), shared_reads_.end(), name) == shared_reads_.end()) return;
  for (auto& [key, kept] : shared_) {
    if (key == name) {
      kept = value;
      return;
    }
  }
  shared_.emplace_back(name, value);
}

void PluginChain::finish() {
  if (finished_) return;
  finished_ = true;
  for (auto& slot : slots_) slot->plugin->onDestroy();
}

PluginChain::State PluginChain::runRequest(MessageHead& head, std::string host) {
  request_ = std::make_unique<HeadView>(head, std::move(host));
  phase_ = Phase::kHead;
  next_ = 0;
  if (!request_->hasBody()) body_complete_ = true;  // body hooks never run without a body
  return advanceRequest();
}

PluginChain::State PluginChain::addBody(std::string_view piece, bool last) {
  if (finished_ || reply_ || body_complete_) return requestState();
  body_queue_.append(piece);
  body_complete_ = last;
  if (waiting_ || in_hook_ || phase_ != Phase::kBody) return requestState();
  return advanceRequest();
}

PluginChain::State PluginChain::requestState() const {
  if (reply_) return State::kReplied;
  if (waiting_) return State::kWaiting;
  if (phase_ == Phase::kBody) return State::kNeedBody;
  return phase_ == Phase::kHead ? State::kWaiting : State::kDone;
}

std::optional<PluginChain::State> PluginChain::afterHook(plugins::Verdict v) {
  in_hook_ = false;
  if (reply_) return State::kReplied;
  if (v == plugins::Verdict::kStop && !resumed_) {
    waiting_ = true;
    return State::kWaiting;
  }
  return std::nullopt;
}

PluginChain::State PluginChain::advanceRequest() {
  for (; phase_ == Phase::kHead && next_ < slots_.size(); ++next_) {
    in_hook_ = true;
    resumed_ = false;
    if (auto s = afterHook(slots_[next_]->plugin->onRequestHeaders(*request_))) return *s;
  }
  if (phase_ == Phase::kHead) {
    bool reads = false;
    for (auto& slot : slots_) {
      slot->reads_body = request_->hasBody() && slot->may_read_body && slot->plugin->wantsBody();
      reads = reads || slot->reads_body;
    }
    phase_ = reads ? Phase::kBody : Phase::kAgreed;
    next_ = slots_.size();  // no piece is being delivered yet
  }
  while (phase_ == Phase::kBody) {
    if (next_ == slots_.size()) {  // the current piece has been through every plugin
      if (body_last_) {
        phase_ = Phase::kAgreed;
        break;
      }
      if (body_queue_.empty() && !body_complete_) return State::kNeedBody;
      body_.swap(body_queue_);
      body_queue_.clear();
      body_last_ = body_complete_;
      next_ = 0;
    }
    for (; next_ < slots_.size(); ++next_) {
      if (!slots_[next_]->reads_body) continue;
      in_hook_ = true;
      resumed_ = false;
      plugins::Verdict v = slots_[next_]->plugin->onRequestBody(*request_, body_, body_last_);
      if (auto s = afterHook(v)) return *s;
    }
  }
  return State::kDone;
}

bool PluginChain::wantsResponseBody() {
  if (finished_ || reply_ || !response_) return false;
  bool wants = false;
  for (auto& slot : slots_) {
    slot->reads_response_body = slot->plugin->wantsResponseBody();
    wants = wants || slot->reads_response_body;
  }
  return wants;
}

void PluginChain::runResponseBody(std::string& body) {
  if (finished_ || !response_) return;
  for (size_t i = slots_.size(); i-- > 0;) {
    if (slots_[i]->reads_response_body) slots_[i]->plugin->onResponseBody(*response_, body);
  }
}

PluginChain::State PluginChain::runResponse(MessageHead& head) {
  response_ = std::make_unique<HeadView>(head, "");
  phase_ = Phase::kResponse;
  next_ = slots_.size();
  return advanceResponse();
}

PluginChain::State PluginChain::advanceResponse() {
  for (; next_ > 0; --next_) {  // the reverse of the request order, as Envoy does
    in_hook_ = true;
    resumed_ = false;
    if (auto s = afterHook(slots_[next_ - 1]->plugin->onResponseHeaders(*response_))) return *s;
  }
  phase_ = Phase::kResponded;
  return State::kDone;
}

// A hook that waited called resume(): go on after it.
void PluginChain::resumed() {
  if (phase_ == Phase::kResponse) {
    --next_;
    State s = advanceResponse();
    if (s == State::kDone) owner_.responseResumed();
    if (s == State::kReplied) owner_.chainReplied(takeReply());
    return;
  }
  ++next_;
  State s = advanceRequest();
  if (s == State::kDone || s == State::kNeedBody) owner_.chainResumed();
  if (s == State::kReplied) owner_.chainReplied(takeReply());
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
