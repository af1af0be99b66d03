// PluginChain on its own: the order hooks run in, waiting and resuming on each phase, and body
// delivery. The plugins here are test plugins that script their verdicts; the store is a real
// MemoryStore on a real event loop.

#include "proxy/plugin_chain.h"

#include <event2/event.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/memory_store.h"
#include "conf/config.h"
#include "proxy/outbound_calls.h"
#include "proxy/snapshot.h"

namespace tessera::proxy {
namespace {

using plugins::Verdict;

// What every test plugin writes down, in order, as "name:hook[:detail]".
using Journal = std::vector<std::string>;

struct Script {
  std::function<Verdict(plugins::Context&, plugins::Callbacks&)> on_head;
  std::function<Verdict(plugins::Callbacks&, std::string_view, bool)> on_body;
  std::function<Verdict(plugins::Callbacks&, plugins::Response&)> on_response;
  std::function<void(plugins::Response&, std::string&)> on_response_body;  // set: wants it
  bool wants_this_body = true;
};

class ScriptedPlugin : public plugins::Plugin {
 public:
  ScriptedPlugin(std::string name, const Script& script, Journal& journal,
                 plugins::Context& context, plugins::Callbacks& callbacks)
      : name_(std::move(name)),
        script_(script),
        journal_(journal),
        context_(context),
        callbacks_(callbacks) {}
  Verdict onRequestHeaders(plugins::Request&) override {
    journal_.push_back(name_ + ":head");
    return script_.on_head ? script_.on_head(context_, callbacks_) : Verdict::kContinue;
  }
  Verdict onRequestBody(plugins::Request&, std::string_view chunk, bool last) override {
    journal_.push_back(name_ + ":body:" + std::string(chunk) + (last ? ":last" : ""));
    return script_.on_body ? script_.on_body(callbacks_, chunk, last) : Verdict::kContinue;
  }
  Verdict onResponseHeaders(plugins::Response& response) override {
    journal_.push_back(name_ + ":response");
    return script_.on_response ? script_.on_response(callbacks_, response) : Verdict::kContinue;
  }
  bool wantsBody() const override { return script_.wants_this_body; }
  bool wantsResponseBody() const override { return script_.on_response_body != nullptr; }
  void onResponseBody(plugins::Response& response, std::string& body) override {
    journal_.push_back(name_ + ":response_body:" + body);
    script_.on_response_body(response, body);
  }
  void onDestroy() override { journal_.push_back(name_ + ":destroy"); }

 private:
  std::string name_;
  const Script& script_;
  Journal& journal_;
  plugins::Context& context_;
  plugins::Callbacks& callbacks_;
};

class ScriptedFactory : public plugins::Factory {
 public:
  ScriptedFactory(std::string name, Journal& journal, bool wants_body)
      : name_(std::move(name)), journal_(journal), wants_body_(wants_body) {}
  std::unique_ptr<plugins::Plugin> create(plugins::Context& context,
                                          plugins::Callbacks& callbacks) const override {
    callbacks_ = &callbacks;
    return std::make_unique<ScriptedPlugin>(name_, script, journal_, context, callbacks);
  }
  bool wantsRequestBody() const override { return wants_body_; }

  Script script;
  mutable plugins::Callbacks* callbacks_ = nullptr;  // the last instance's, to call back later

 private:
  std::string name_;
  Journal& journal_;
  bool wants_body_;
};

class RecordingOwner : public PluginChain::Owner {
 public:
  void chainResumed() override { ++resumed; }
  void responseResumed() override { ++response_resumed; }
  void chainReplied(LocalReply reply) override { replies.push_back(std::move(reply)); }
  int resumed = 0;
  int response_resumed = 0;
  std::vector<LocalReply> replies;
};

class PluginChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    snapshot_ = Snapshot::build(conf::loadString(R"(
listeners:
  - name: plain
    listen: 127.0.0.1:1
    routes: [ { host: "*", path_prefix: /, upstream: app } ]
upstreams:
  app: { servers: [127.0.0.1:2] }
admin: { listen: "off" }
log: { access_log: "off", audit_log: "off" }
)"));
    base_ = event_base_new();
    backend_ = std::make_unique<cache::MemoryStoreBackend>(100);
    store_ = backend_->connect(base_);
    outbound_ = std::make_unique<OutboundCalls>(base_);
    head_.method = "POST";
    head_.url = "/orders";
    head_.headers.add("Host", "shop.example");
  }
  void TearDown() override {
    chain_.reset();
    store_.reset();
    outbound_.reset();
    event_base_free(base_);
  }

  ScriptedFactory& addPlugin(const std::string& name, bool wants_body = false) {
    factories_.push_back(std::make_shared<ScriptedFactory>(name, journal_, wants_body));
    targets_.push_back(std::make_unique<PluginTarget>(PluginTarget{name, factories_.back()}));
    route_.plugins.push_back(targets_.back().get());
    return *factories_.back();
  }

  // head_ with a chunked body, as the parser frames it.
  MessageHead& withBody() {
    head_.chunked = true;
    return head_;
  }

  PluginChain& chain() {
    if (!chain_) {
      PluginChain::Client client;
      client.peer = &peer_;
      client.ip = "127.0.0.1";
      client.listener = "plain";
      chain_ = std::make_unique<PluginChain>(owner_, route_, *snapshot_, *store_, metrics_,
                                             *outbound_, client);
    }
    return *chain_;
  }

  std::shared_ptr<const Snapshot> snapshot_;
  event_base* base_ = nullptr;
  std::unique_ptr<cache::MemoryStoreBackend> backend_;
  std::unique_ptr<cache::Store> store_;
  std::unique_ptr<OutboundCalls> outbound_;
  WorkerMetrics metrics_;
  sockaddr_storage peer_{};
  std::vector<std::shared_ptr<ScriptedFactory>> factories_;
  std::vector<std::unique_ptr<PluginTarget>> targets_;
  RouteTarget route_;
  Journal journal_;
  RecordingOwner owner_;
  MessageHead head_;
  MessageHead response_head_;
  std::unique_ptr<PluginChain> chain_;
};

using State = PluginChain::State;

TEST_F(PluginChainTest, RequestHooksInRouteOrderResponseHooksInReverse) {
  addPlugin("a");
  addPlugin("b");
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kDone);
  EXPECT_EQ(chain().runResponse(response_head_), State::kDone);
  chain().finish();
  EXPECT_EQ(journal_,
            (Journal{"a:head", "b:head", "b:response", "a:response", "a:destroy", "b:destroy"}));
}

TEST_F(PluginChainTest, AHeadHookThatWaitsHoldsTheRestUntilResume) {
  ScriptedFactory& a = addPlugin("a");
  addPlugin("b");
  a.script.on_head = [](auto&, auto&) { return Verdict::kStop; };
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kWaiting);
  EXPECT_EQ(journal_, (Journal{"a:head"}));
  a.callbacks_->resume();
  EXPECT_EQ(owner_.resumed, 1);
  EXPECT_EQ(chain().requestState(), State::kDone);
  EXPECT_EQ(journal_, (Journal{"a:head", "b:head"}));
  a.callbacks_->resume();  // a second resume is ignored
  EXPECT_EQ(owner_.resumed, 1);
}

TEST_F(PluginChainTest, AHeadHookWaitsOnTheRealStoreAndResumesFromItsCallback) {
  ScriptedFactory& a = addPlugin("a");
  addPlugin("b");
  a.script.on_head = [](plugins::Context& context, plugins::Callbacks& callbacks) {
    context.store().add("nonce-1", "x", cache::Seconds(60), std::chrono::milliseconds(100),
                        [&callbacks](cache::Result r) {
                          if (r.status == cache::Status::kOk) callbacks.resume();
                        });
    return Verdict::kStop;
  };
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kWaiting);
  EXPECT_EQ(owner_.resumed, 0);  // the store answers on the loop, never inside the call
  event_base_loop(base_, EVLOOP_NONBLOCK);
  EXPECT_EQ(owner_.resumed, 1);
  EXPECT_EQ(journal_, (Journal{"a:head", "b:head"}));
}

TEST_F(PluginChainTest, BodyHooksGetTheBodyOnlyAfterEveryHeadHookWentOn) {
  ScriptedFactory& a = addPlugin("a");
  addPlugin("reader", true);
  a.script.on_head = [](auto&, auto&) { return Verdict::kStop; };
  EXPECT_EQ(chain().runRequest(withBody(), "shop.example"), State::kWaiting);
  EXPECT_EQ(chain().addBody("abc", false), State::kWaiting);
  EXPECT_EQ(chain().addBody("def", true), State::kWaiting);
  a.callbacks_->resume();
  EXPECT_EQ(owner_.resumed, 1);
  EXPECT_EQ(chain().requestState(), State::kDone);
  EXPECT_EQ(journal_, (Journal{"a:head", "reader:head", "reader:body:abcdef:last"}));
}

TEST_F(PluginChainTest, BodyPiecesReachEveryBodyPluginInOrderAndNoOtherPlugin) {
  addPlugin("r1", true);
  addPlugin("plain");
  addPlugin("r2", true);
  EXPECT_EQ(chain().runRequest(withBody(), "shop.example"), State::kNeedBody);
  EXPECT_EQ(chain().addBody("ab", false), State::kNeedBody);
  EXPECT_EQ(chain().addBody("", false), State::kNeedBody);  // nothing new: nothing delivered
  EXPECT_EQ(chain().addBody("c", true), State::kDone);
  EXPECT_EQ(journal_, (Journal{"r1:head", "plain:head", "r2:head", "r1:body:ab", "r2:body:ab",
                               "r1:body:c:last", "r2:body:c:last"}));
}

TEST_F(PluginChainTest, ARequestWithoutBodyNeverRunsBodyHooks) {
  addPlugin("reader", true);
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kDone);
  EXPECT_EQ(chain().addBody("", true), State::kDone);
  EXPECT_EQ(journal_, (Journal{"reader:head"}));
}

TEST_F(PluginChainTest, ABodyPluginMayDeclineThisRequestsBody) {
  ScriptedFactory& r = addPlugin("reader", true);
  addPlugin("other", true);
  r.script.wants_this_body = false;
  EXPECT_EQ(chain().runRequest(withBody(), "shop.example"), State::kNeedBody);
  EXPECT_EQ(chain().addBody("x", true), State::kDone);
  EXPECT_EQ(journal_, (Journal{"reader:head", "other:head", "other:body:x:last"}));
}

TEST_F(PluginChainTest, WhenNoPluginWantsThisBodyTheRequestGoesOnAtOnce) {
  ScriptedFactory& r = addPlugin("reader", true);
  r.script.wants_this_body = false;
  EXPECT_EQ(chain().runRequest(withBody(), "shop.example"), State::kDone);
  EXPECT_EQ(journal_, (Journal{"reader:head"}));
}

TEST_F(PluginChainTest, ABodyHookThatWaitsKeepsLaterPiecesThenRepliesLater) {
  ScriptedFactory& r = addPlugin("reader", true);
  addPlugin("after", true);
  r.script.on_body = [](auto&, std::string_view, bool last) {
    return last ? Verdict::kStop : Verdict::kContinue;
  };
  EXPECT_EQ(chain().runRequest(withBody(), "shop.example"), State::kNeedBody);
  EXPECT_EQ(chain().addBody("{\"a\":", true), State::kWaiting);
  EXPECT_EQ(journal_.back(), "reader:body:{\"a\"::last");
  r.callbacks_->sendLocalReply(409, {{"Content-Type", "application/json"}}, "{}");
  ASSERT_EQ(owner_.replies.size(), 1u);
  EXPECT_EQ(owner_.replies[0].status, 409);
  EXPECT_EQ(owner_.resumed, 0);
  // The later body plugin never saw the body.
  EXPECT_EQ(std::count(journal_.begin(), journal_.end(), "after:body:{\"a\"::last"), 0);
}

TEST_F(PluginChainTest, ABodyHookThatWaitsThenResumesLetsTheNextPluginSeeThePiece) {
  ScriptedFactory& r = addPlugin("reader", true);
  addPlugin("after", true);
  r.script.on_body = [](auto&, std::string_view, bool) { return Verdict::kStop; };
  EXPECT_EQ(chain().runRequest(withBody(), "shop.example"), State::kNeedBody);
  EXPECT_EQ(chain().addBody("x", false), State::kWaiting);
  EXPECT_EQ(chain().addBody("y", true), State::kWaiting);  // kept for later
  r.callbacks_->resume();
  EXPECT_EQ(owner_.resumed, 0);  // "y" went to reader, which waits again
  r.callbacks_->resume();
  EXPECT_EQ(owner_.resumed, 1);
  EXPECT_EQ(chain().requestState(), State::kDone);
  EXPECT_EQ(journal_, (Journal{"reader:head", "after:head", "reader:body:x", "after:body:x",
                               "reader:body:y:last", "after:body:y:last"}));
}

TEST_F(PluginChainTest, AResponseHookThatWaitsHoldsTheEarlierPluginsUntilResume) {
  addPlugin("a");
  ScriptedFactory& b = addPlugin("b");
  b.script.on_response = [](auto&, plugins::Response& response) {
    response.setHeader("X-Checked", "yes");
    return Verdict::kStop;
  };
  response_head_.status = 200;
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kDone);
  EXPECT_EQ(chain().runResponse(response_head_), State::kWaiting);
  EXPECT_EQ(journal_.back(), "b:response");
  b.callbacks_->resume();
  EXPECT_EQ(owner_.response_resumed, 1);
  EXPECT_EQ(owner_.resumed, 0);
  EXPECT_EQ(journal_.back(), "a:response");
  ASSERT_NE(response_head_.headers.find("x-checked"), nullptr);
}

TEST_F(PluginChainTest, ResponseBodiesReachOnlyThePluginsThatWantThemInReverseOrder) {
  ScriptedFactory& a = addPlugin("a");
  addPlugin("b");
  ScriptedFactory& c = addPlugin("c");
  a.script.on_response_body = [](plugins::Response& response, std::string& body) {
    response.setHeader("Content-Type", "application/x-a");
    body = "a(" + body + ")";
  };
  c.script.on_response_body = [](plugins::Response&, std::string& body) { body += "+c"; };
  response_head_.status = 200;
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kDone);
  EXPECT_EQ(chain().runResponse(response_head_), State::kDone);
  ASSERT_TRUE(chain().wantsResponseBody());
  std::string body = "x";
  chain().runResponseBody(body);
  EXPECT_EQ(body, "a(x+c)");
  EXPECT_EQ(journal_, (Journal{"a:head", "b:head", "c:head", "c:response", "b:response",
                               "a:response", "c:response_body:x", "a:response_body:x+c"}));
  ASSERT_NE(response_head_.headers.find("content-type"), nullptr);
  EXPECT_EQ(*response_head_.headers.find("content-type"), "application/x-a");
}

TEST_F(PluginChainTest, NoPluginWantsTheResponseBodyByDefault) {
  addPlugin("a");
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kDone);
  EXPECT_EQ(chain().runResponse(response_head_), State::kDone);
  EXPECT_FALSE(chain().wantsResponseBody());
}

TEST_F(PluginChainTest, AResponseHookThatWaitsMayReplyInstead) {
  ScriptedFactory& a = addPlugin("a");
  a.script.on_response = [](auto&, auto&) { return Verdict::kStop; };
  response_head_.status = 200;
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kDone);
  EXPECT_EQ(chain().runResponse(response_head_), State::kWaiting);
  a.callbacks_->sendLocalReply(503, {}, "later\n");
  ASSERT_EQ(owner_.replies.size(), 1u);
  EXPECT_EQ(owner_.replies[0].status, 503);
  EXPECT_EQ(owner_.response_resumed, 0);
}

TEST_F(PluginChainTest, AfterFinishCallbacksAreIgnored) {
  ScriptedFactory& a = addPlugin("a");
  a.script.on_head = [](auto&, auto&) { return Verdict::kStop; };
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kWaiting);
  chain().finish();
  a.callbacks_->resume();
  a.callbacks_->sendLocalReply(500, {}, "");
  EXPECT_EQ(owner_.resumed, 0);
  EXPECT_TRUE(owner_.replies.empty());
  EXPECT_EQ(journal_.back(), "a:destroy");
}

TEST_F(PluginChainTest, AReplyInsideAHookEndsTheChainThere) {
  ScriptedFactory& a = addPlugin("a");
  addPlugin("b");
  a.script.on_head = [](auto&, plugins::Callbacks& callbacks) {
    callbacks.sendLocalReply(401, {}, "no\n");
    return Verdict::kStop;
  };
  EXPECT_EQ(chain().runRequest(head_, "shop.example"), State::kReplied);
  EXPECT_EQ(chain().takeReply().status, 401);
  EXPECT_EQ(journal_, (Journal{"a:head"}));
}

}  // namespace
}  // namespace tessera::proxy
