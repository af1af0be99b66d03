// Micro benchmark for the plugin chain itself: what one request costs in PluginChain when its
// route runs 0, 1 or 5 plugins that do nothing. It measures the chain's own overhead (one Slot,
// Context and Callbacks per plugin, the HeadView, the hook loop, onDestroy), so that a plugin's
// cost in its own benchmark (jwt_bench.cc) can be read on top of it.
//
// A fresh chain is made for every iteration because the proxy makes one per request; the
// snapshot, store, metrics and request head are made once, as they outlive requests in the proxy.

#include <benchmark/benchmark.h>
#include <event2/event.h>

#include <memory>
#include <string>
#include <vector>

#include "cache/memory_store.h"
#include "conf/config.h"
#include "plugins/plugin.h"
#include "proxy/http_message.h"
#include "proxy/metrics.h"
#include "proxy/outbound_calls.h"
#include "proxy/plugin_chain.h"
#include "proxy/snapshot.h"

namespace {

using tessera::plugins::Callbacks;
using tessera::plugins::Context;
using tessera::plugins::Factory;
using tessera::plugins::Plugin;
using tessera::proxy::PluginChain;

// No registered plugin type does nothing, so the bench brings its own: the base class hooks all
// return kContinue.
class NoopPlugin : public Plugin {};

class NoopFactory : public Factory {
 public:
  std::unique_ptr<Plugin> create(Context&, Callbacks&) const override {
    return std::make_unique<NoopPlugin>();
  }
};

// No-op plugins never stop or reply, so the owner is never called.
class NullOwner : public PluginChain::Owner {
 public:
  void chainResumed() override {}
  void responseResumed() override {}
  void chainReplied(tessera::proxy::LocalReply) override {}
};

// The smallest config Snapshot::build accepts: the chain only reads the snapshot's sealer and
// audit log, which no-op plugins never touch, but it needs a real one.
constexpr const char* kConfig = R"(workers: 1
listeners:
  - name: bench
    listen: 127.0.0.1:18080
upstreams:
  app:
    servers: [127.0.0.1:19000]
log:
  level: warn
  access_log: off
)";

// A browser-sized request head: the HeadView and any header work scale with it.
void fillRequest(tessera::proxy::MessageHead& head) {
  head.method = "GET";
  head.url = "/api/orders?page=2";
  head.headers.add("Host", "shop.example");
  head.headers.add("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101");
  head.headers.add("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
  head.headers.add("Accept-Language", "en-US,en;q=0.5");
  head.headers.add("Accept-Encoding", "gzip, deflate, br");
  head.headers.add("Authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl");
  head.headers.add("Cookie", "SESSIONID=3f9a1c0e7b2d; theme=dark");
  head.headers.add("Referer", "https://shop.example/api/");
  head.headers.add("X-Request-Id", "6f1d2b7c-44a1-4e0b-9d3e-2a7c1f0b9e55");
  head.headers.add("Connection", "keep-alive");
}

void BM_PluginChain(benchmark::State& state) {
  const int plugin_count = static_cast<int>(state.range(0));
  auto snapshot = tessera::proxy::Snapshot::build(tessera::conf::loadString(kConfig));

  std::vector<tessera::proxy::PluginTarget> targets(plugin_count);
  tessera::proxy::RouteTarget route;
  for (int i = 0; i < plugin_count; ++i) {
    targets[i].name = "noop" + std::to_string(i);
    targets[i].factory = std::make_shared<NoopFactory>();
  }
  for (const auto& target : targets) route.plugins.push_back(&target);

  // connect() wants the loop its callbacks run on; no-op plugins never use the store, so the
  // loop is never run.
  std::unique_ptr<event_base, decltype(&event_base_free)> base(event_base_new(), event_base_free);
  tessera::cache::MemoryStoreBackend backend(1024);
  std::unique_ptr<tessera::cache::Store> store = backend.connect(base.get());
  tessera::proxy::OutboundCalls outbound(base.get());
  tessera::proxy::WorkerMetrics metrics;
  NullOwner owner;
  PluginChain::Client client{nullptr, "127.0.0.1", "", "bench"};

  tessera::proxy::MessageHead request;
  fillRequest(request);
  tessera::proxy::MessageHead response;
  response.status = 200;
  response.headers.add("Content-Type", "text/plain");
  response.headers.add("Content-Length", "23");

  for (auto _ : state) {
    PluginChain chain(owner, route, *snapshot, *store, metrics, outbound, client);
    benchmark::DoNotOptimize(chain.runRequest(request, "shop.example"));
    benchmark::DoNotOptimize(chain.runResponse(response));
    chain.finish();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PluginChain)->Arg(0)->Arg(1)->Arg(5);

}  // namespace
