# tessera: `make run` and `make test` do all the set-up on a fresh Debian 12 machine.

SHELL := /bin/bash
BUILD ?= build
JOBS ?= 2
BUILD_TYPE ?= Release

# Everything the build and the tests need, as Debian packages.
PACKAGES := build-essential cmake pkg-config openssl libssl-dev libevent-dev libyaml-cpp-dev \
            libspdlog-dev libcli11-dev nlohmann-json3-dev node-llhttp libgtest-dev libgmock-dev \
            libbenchmark-dev libmemcached-dev memcached libcjose-dev libjansson-dev \
            python3-jwcrypto curl wrk procps
# Only the macro benchmarks need these: the proxies tessera is compared with.
BENCH_PACKAGES := nginx-light haproxy h2o

.PHONY: all deps bench-deps build run run-cluster test bench certs format clean

all: build

# Installs whatever of $(1) is missing: as root with apt-get, else through sudo, else it prints the
# command to run and stops.
define apt_install
	@missing=$$(for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "tessera: installing missing packages:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "tessera: run as root: apt-get install -y" $$missing; exit 1; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(PACKAGES))

bench-deps: deps
	$(call apt_install,$(BENCH_PACKAGES))

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD) -j$(JOBS)

# A self-signed certificate for the demo listener (never committed).
certs: conf/certs/demo.crt

conf/certs/demo.crt:
	@mkdir -p conf/certs
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
	  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	  -keyout conf/certs/demo.key -out conf/certs/demo.crt 2>/dev/null
	chmod 600 conf/certs/demo.key

# The migration demo's origin keys (conf/tessera.yaml, plugins.mig_origin; never committed).
MIGRATION_KEYS := conf/keys/origin-sign.jwk conf/keys/origin-enc.jwk

# The demo backend on 127.0.0.1:9000 behind tessera on https://127.0.0.1:8443 (admin :9901).
run: build certs $(MIGRATION_KEYS)
	@$(BUILD)/tessera-demo-backend --port 9000 & backend=$$!; \
	trap 'kill $$backend 2>/dev/null' EXIT; \
	$(BUILD)/tessera run --config conf/tessera.yaml

# Three nodes sharing sessions through three memcached (conf/cluster-3node.yaml), in the foreground.
run-cluster: build certs conf/keys/seal-k1.key
	@mkdir -p $(BUILD)/cluster
	@for n in 2 3; do \
	  sed -e "s/127.0.0.1:8443/127.0.0.1:844$$((n + 2))/" -e "s/127.0.0.1:9901/127.0.0.1:990$$n/" \
	    conf/cluster-3node.yaml > $(BUILD)/cluster/node$$n.yaml; \
	done
	@pids=; trap 'kill $$pids 2>/dev/null' EXIT; \
	for p in 11211 11212 11213; do memcached -l 127.0.0.1 -p $$p -U 0 -m 64 -u $$(id -un) & pids="$$pids $$!"; done; \
	$(BUILD)/tessera-demo-backend --port 9000 & pids="$$pids $$!"; \
	$(BUILD)/tessera run --config $(BUILD)/cluster/node2.yaml & pids="$$pids $$!"; \
	$(BUILD)/tessera run --config $(BUILD)/cluster/node3.yaml & pids="$$pids $$!"; \
	$(BUILD)/tessera run --config conf/cluster-3node.yaml

conf/keys/seal-k1.key: | build
	@mkdir -p conf/keys
	$(BUILD)/tessera keygen seal --out $@

# Made only when the private JWK is missing; its public half is then stale (keygen never
# overwrites), so it goes too.
$(MIGRATION_KEYS): conf/keys/%.jwk: | build
	@mkdir -p conf/keys
	@rm -f conf/keys/$*.pub.json
	$(BUILD)/tessera token keygen --type ec --out $@ --public conf/keys/$*.pub.json

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 300

bench: bench-deps build
	$(BUILD)/bench/tessera_micro_bench --benchmark_min_time=0.2
	RESULTS_FILE=bench/RESULTS.md bash bench/macro.sh $(BUILD)
	RESULTS_FILE=bench/RESULTS.md bash bench/sessions.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
